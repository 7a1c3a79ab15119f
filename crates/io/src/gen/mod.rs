//! The seeded traffic generator: what a home router's two ports see.
//!
//! LAN clients talk to servers on the Internet (TCP with handshake, data both ways and a FIN or
//! RST close; DNS-like and QUIC-like UDP; ICMP echo), hosts on the Internet connect to the port
//! forwards, and a few deliberately malformed frames are mixed in. Each frame is written at the
//! port it *arrives* on: client → server packets on the LAN port, server → client packets on the
//! WAN port (tagged or PPPoE-encapsulated when the WAN interface is), all in time order. The
//! output is a pure function of [`GenConfig`]: the same seed gives the same bytes.
//!
//! Replies from the Internet are addressed to the router's WAN address, as they are after
//! masquerade, and to the *client's own source port*: Linux keeps the source port when it is free
//! on the WAN address, and the generator never gives two flows the same source port (or ICMP
//! identifier), so it always is. For IPv6, replies go to the router's WAN address only when
//! [`GenConfig::ipv6_nat`] is set; otherwise to the client itself, as without NAT66.
//!
//! Flow sizes are heavy-tailed (Pareto, shape 4/3): most flows are short, a few carry most
//! packets. Flows start at seeded, bursty gaps, and each has its own round-trip times, so many
//! flows overlap and their packets interleave.

mod build;
mod flows;
mod rng;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use nft_wire::ParseError;

use crate::capture::{CaptureError, Frame};
use crate::pcapng::PcapngWriter;
use rng::Rng;

pub type Mac = [u8; 6];

/// How an interface's frames are framed on its port, as the engine's topology describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encap {
    None,
    /// An 802.1Q tag over a parent port.
    Vlan {
        parent: String,
        id: u16,
    },
    /// 802.1ad outer and 802.1Q inner tags over a parent port.
    QinQ {
        parent: String,
        outer: u16,
        inner: u16,
    },
    /// A PPPoE session over a parent port (the peer's MAC is [`GenConfig::gateway_mac`]).
    Pppoe {
        parent: String,
        session: u16,
    },
}

/// One router interface, as much as the generator needs of it. The engine fills it from its
/// topology; [`GenConfig::home`] has a ready one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenInterface {
    pub name: String,
    pub mac: Mac,
    /// The router's own IPv4 address and prefix length on this interface.
    pub ipv4: Option<(Ipv4Addr, u8)>,
    pub ipv6: Option<(Ipv6Addr, u8)>,
    pub mtu: u16,
    pub encap: Encap,
}

impl GenInterface {
    /// The capture interface its frames are written on: the parent port for VLAN, QinQ and
    /// PPPoE (whose frames carry the tag or session header), else the interface itself.
    pub fn port(&self) -> &str {
        match &self.encap {
            Encap::None => &self.name,
            Encap::Vlan { parent, .. }
            | Encap::QinQ { parent, .. }
            | Encap::Pppoe { parent, .. } => parent,
        }
    }

    fn addr(&self, v6: bool) -> Option<IpAddr> {
        if v6 {
            self.ipv6.map(|(a, _)| a.into())
        } else {
            self.ipv4.map(|(a, _)| a.into())
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

/// A DNAT port forward: the router's WAN address and `wan_port` to `lan_addr:lan_port`. For an
/// IPv6 `lan_addr` without [`GenConfig::ipv6_nat`], connections go straight to `lan_addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortForward {
    pub proto: Transport,
    pub wan_port: u16,
    pub lan_addr: IpAddr,
    pub lan_port: u16,
}

/// Relative weights of the flow kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowMix {
    pub tcp: u32,
    pub dns: u32,
    pub quic: u32,
    pub icmp: u32,
    /// Connections from the Internet to a port forward (none when there are no forwards).
    pub inbound: u32,
    pub malformed: u32,
}

impl Default for FlowMix {
    fn default() -> FlowMix {
        FlowMix {
            tcp: 45,
            dns: 20,
            quic: 12,
            icmp: 6,
            inbound: 9,
            malformed: 8,
        }
    }
}

#[derive(Clone, Debug)]
pub struct GenConfig {
    pub seed: u64,
    /// How many flows (a malformed frame counts as a flow of one packet).
    pub flows: usize,
    pub lan: GenInterface,
    pub wan: GenInterface,
    /// The upstream router's MAC (for PPPoE, the access concentrator's): the source of every
    /// frame arriving on WAN.
    pub gateway_mac: Mac,
    pub forwards: Vec<PortForward>,
    /// LAN hosts (each with a MAC, an IPv4 and, if the LAN has IPv6, an IPv6 address).
    pub clients: u16,
    /// Share of flows over IPv6, when both sides have IPv6.
    pub ipv6_percent: u8,
    /// Whether the router masquerades IPv6 too.
    pub ipv6_nat: bool,
    pub mix: FlowMix,
    /// Time of the first flow, since the Unix epoch.
    pub start: Duration,
    /// Mean gap between flow starts.
    pub mean_flow_gap: Duration,
    /// Cap on one flow's packets, to bound the heavy tail.
    pub max_packets_per_flow: u32,
}

impl GenConfig {
    /// The home router the engine's topology tests use: LAN 192.168.1.1/24 and fd00:1::1/64,
    /// WAN 198.18.0.2/24 and 2001:db8:ffff::2/64 in a PPPoE session (0x1234) over `eth1`, one TCP
    /// forward (8080 → 192.168.1.10:80) and one UDP forward (51820 → 192.168.1.20:51820).
    pub fn home(seed: u64, flows: usize) -> GenConfig {
        GenConfig {
            seed,
            flows,
            lan: GenInterface {
                name: "lan".into(),
                mac: [0x02, 0, 0, 0, 0x01, 0x01],
                ipv4: Some((Ipv4Addr::new(192, 168, 1, 1), 24)),
                ipv6: Some(("fd00:1::1".parse().unwrap(), 64)),
                mtu: 1500,
                encap: Encap::None,
            },
            wan: GenInterface {
                name: "wan".into(),
                mac: [0x02, 0, 0, 0, 0x02, 0x01],
                ipv4: Some((Ipv4Addr::new(198, 18, 0, 2), 24)),
                ipv6: Some(("2001:db8:ffff::2".parse().unwrap(), 64)),
                mtu: 1492,
                encap: Encap::Pppoe {
                    parent: "eth1".into(),
                    session: 0x1234,
                },
            },
            gateway_mac: [0x02, 0, 0, 0, 0x02, 0xfe],
            forwards: vec![
                PortForward {
                    proto: Transport::Tcp,
                    wan_port: 8080,
                    lan_addr: Ipv4Addr::new(192, 168, 1, 10).into(),
                    lan_port: 80,
                },
                PortForward {
                    proto: Transport::Udp,
                    wan_port: 51820,
                    lan_addr: Ipv4Addr::new(192, 168, 1, 20).into(),
                    lan_port: 51820,
                },
            ],
            clients: 8,
            ipv6_percent: 30,
            ipv6_nat: true,
            mix: FlowMix::default(),
            start: Duration::from_secs(1_700_000_000),
            mean_flow_gap: Duration::from_millis(20),
            max_packets_per_flow: 2000,
        }
    }
}

/// What a flow is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FlowKind {
    /// LAN client to an Internet server.
    Tcp,
    /// A DNS-like query and response (UDP 53).
    Dns,
    /// A QUIC-like exchange, many packets both ways (UDP 443).
    Quic,
    /// ICMP or ICMPv6 echo request and reply.
    IcmpEcho,
    /// An Internet host to a TCP port forward.
    InboundTcp,
    /// An Internet host to a UDP port forward.
    InboundUdp,
    /// One deliberately malformed frame.
    Malformed,
}

impl FlowKind {
    pub const ALL: [FlowKind; 7] = [
        FlowKind::Tcp,
        FlowKind::Dns,
        FlowKind::Quic,
        FlowKind::IcmpEcho,
        FlowKind::InboundTcp,
        FlowKind::InboundUdp,
        FlowKind::Malformed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FlowKind::Tcp => "tcp",
            FlowKind::Dns => "dns",
            FlowKind::Quic => "quic",
            FlowKind::IcmpEcho => "icmp_echo",
            FlowKind::InboundTcp => "inbound_tcp",
            FlowKind::InboundUdp => "inbound_udp",
            FlowKind::Malformed => "malformed",
        }
    }
}

/// The defect of a malformed frame, each meeting a named [`ParseError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Malformation {
    /// IPv4 cut inside its 20-byte header.
    TruncatedIpv4Header,
    /// IPv4 header checksum off by a bit.
    BadIpv4Checksum,
    /// IPv4 IHL of 3 (12 bytes).
    BadIhl,
    /// IPv6 payload length 64 bytes past the packet's end.
    Ipv6PayloadTooLong,
    /// TCP data offset of 4 (16 bytes).
    TcpDataOffsetTooSmall,
    /// Fewer bytes than an Ethernet header.
    RuntEthernet,
}

impl Malformation {
    pub const ALL: [Malformation; 6] = [
        Malformation::TruncatedIpv4Header,
        Malformation::BadIpv4Checksum,
        Malformation::BadIhl,
        Malformation::Ipv6PayloadTooLong,
        Malformation::TcpDataOffsetTooSmall,
        Malformation::RuntEthernet,
    ];

    /// The reason `nft_wire::parse_frame` gives for such a frame.
    pub fn expected_error(self) -> ParseError {
        match self {
            Malformation::TruncatedIpv4Header => ParseError::TruncatedIpv4,
            Malformation::BadIpv4Checksum => ParseError::BadIpv4Checksum,
            Malformation::BadIhl => ParseError::BadIpv4HeaderLen,
            Malformation::Ipv6PayloadTooLong => ParseError::Ipv6PayloadLen,
            Malformation::TcpDataOffsetTooSmall => ParseError::BadTcpDataOffset,
            Malformation::RuntEthernet => ParseError::TruncatedEthernet,
        }
    }
}

/// Which way a packet goes, relative to the flow's initiator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    Original,
    Reply,
}

/// What the generator knows about one frame; `Generated::info[i]` describes `frames[i]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameInfo {
    /// The flow's number, in order of flow start.
    pub flow: u32,
    pub kind: FlowKind,
    pub dir: Dir,
    pub malformed: Option<Malformation>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GenSummary {
    pub flows: BTreeMap<FlowKind, usize>,
    pub packets: usize,
    pub bytes: u64,
    pub packets_by_iface: BTreeMap<String, usize>,
    pub malformed: usize,
    pub malformed_by_reason: BTreeMap<Malformation, usize>,
    pub ipv6_flows: usize,
    pub tcp_closed_by_fin: usize,
    pub tcp_closed_by_rst: usize,
    /// From the first frame to the last.
    pub duration: Duration,
}

impl fmt::Display for GenSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flows: usize = self.flows.values().sum();
        writeln!(
            f,
            "{flows} flows ({} IPv6), {} packets, {} bytes, {:.3} s",
            self.ipv6_flows,
            self.packets,
            self.bytes,
            self.duration.as_secs_f64()
        )?;
        for (k, n) in &self.flows {
            writeln!(f, "  {:<12} {n}", k.name())?;
        }
        writeln!(
            f,
            "  tcp closes: {} fin, {} rst",
            self.tcp_closed_by_fin, self.tcp_closed_by_rst
        )?;
        for (i, n) in &self.packets_by_iface {
            writeln!(f, "  on {i}: {n} packets")?;
        }
        write!(f, "  malformed: {}", self.malformed)?;
        for (m, n) in &self.malformed_by_reason {
            write!(f, ", {} {n}", m.expected_error().name())?;
        }
        Ok(())
    }
}

/// The generator's output: frames in time order, what each one is, and the totals.
#[derive(Clone, Debug)]
pub struct Generated {
    pub frames: Vec<Frame>,
    pub info: Vec<FrameInfo>,
    pub summary: GenSummary,
}

impl Generated {
    /// Writes the frames as pcapng; malformed frames carry a comment naming their defect, which
    /// Wireshark shows.
    pub fn write_pcapng<W: Write>(&self, writer: W) -> Result<W, CaptureError> {
        let mut w = PcapngWriter::new(writer)?;
        for (f, i) in self.frames.iter().zip(&self.info) {
            let comment = i
                .malformed
                .map(|m| format!("malformed: {}", m.expected_error().name()));
            w.write_packet(&f.iface, f.ts, &f.data, comment.as_deref())?;
        }
        w.finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenError {
    #[error("the LAN interface {0:?} has no IPv4 address")]
    LanWithoutIpv4(String),
    #[error("the WAN interface {0:?} has no IPv4 address")]
    WanWithoutIpv4(String),
    #[error("the LAN subnet is too small for {clients} clients")]
    SubnetTooSmall { clients: u16 },
    #[error("at least one client is needed")]
    NoClients,
    #[error("the flow mix has no weight")]
    EmptyMix,
    #[error("MTU {0} is too small: QUIC-like flows need 1280")]
    MtuTooSmall(u16),
    #[error("port forward {wan_port}: {what}")]
    Forward { wan_port: u16, what: &'static str },
}

/// First and last source port handed out; the IANA/Linux ephemeral range, where nothing listens.
const EPHEMERAL: (u16, u16) = (32768, 60999);

/// The hosts and endpoints shared by all flows.
pub(crate) struct World<'a> {
    pub cfg: &'a GenConfig,
    pub clients: Vec<Host>,
    pub servers_v4: Vec<IpAddr>,
    pub servers_v6: Vec<IpAddr>,
    pub v6: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Host {
    pub mac: Mac,
    pub v4: IpAddr,
    pub v6: Option<IpAddr>,
}

impl World<'_> {
    /// The MAC of a LAN address: a client's own, or one made from the address.
    pub fn lan_mac(&self, addr: IpAddr) -> Mac {
        if let Some(h) = self
            .clients
            .iter()
            .find(|h| h.v4 == addr || h.v6 == Some(addr))
        {
            return h.mac;
        }
        let b = match addr {
            IpAddr::V4(a) => a.octets()[2..4].try_into().unwrap(),
            IpAddr::V6(a) => <[u8; 2]>::try_from(&a.octets()[14..16]).unwrap(),
        };
        [0x02, 0, 0, 0x20, b[0], b[1]]
    }
}

fn in_subnet(a: IpAddr, net: Option<IpAddr>, len: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(x), Some(IpAddr::V4(y))) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len.min(32))
            };
            u32::from(x) & m == u32::from(y) & m
        }
        (IpAddr::V6(x), Some(IpAddr::V6(y))) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len.min(128))
            };
            u128::from(x) & m == u128::from(y) & m
        }
        _ => false,
    }
}

/// A public-looking address: IPv4 in 198.18.0.0/15, IPv6 in 2001:db8::/32, outside the WAN's own
/// subnets (which would be on-link, not behind the gateway).
pub(crate) fn internet_addr(rng: &mut Rng, wan: &GenInterface, v6: bool) -> IpAddr {
    loop {
        let a: IpAddr = if v6 {
            let r = rng.next_u64();
            let bits = (0x2001_0db8u128 << 96)
                | (u128::from(r & 0xffff_ffff_ffff) << 48)
                | u128::from(rng.next_u16() | 1);
            Ipv6Addr::from(bits).into()
        } else {
            let r = rng.next_u32() & 0x1_ffff;
            let host = r & 0xff;
            if host == 0 || host == 255 {
                continue;
            }
            Ipv4Addr::from(0xc612_0000 | r).into()
        };
        let own = match a {
            IpAddr::V4(_) => wan.ipv4.map(|(n, l)| (IpAddr::from(n), l)),
            IpAddr::V6(_) => wan.ipv6.map(|(n, l)| (IpAddr::from(n), l)),
        };
        if !own.is_some_and(|(n, l)| in_subnet(a, Some(n), l)) {
            return a;
        }
    }
}

fn make_clients(cfg: &GenConfig) -> Result<Vec<Host>, GenError> {
    let (lan4, len4) = cfg
        .lan
        .ipv4
        .ok_or_else(|| GenError::LanWithoutIpv4(cfg.lan.name.clone()))?;
    if cfg.clients == 0 {
        return Err(GenError::NoClients);
    }
    let size = 1u64 << (32 - u32::from(len4.min(32)));
    let n = u64::from(cfg.clients);
    // .100 upwards, as a DHCP pool would, when the subnet has room; else from .2.
    let first = if 100 + n < size - 1 { 100 } else { 2 };
    if first + n >= size - 1 {
        return Err(GenError::SubnetTooSmall {
            clients: cfg.clients,
        });
    }
    let net4 = u32::from(lan4) & !((size - 1) as u32);
    Ok((0..cfg.clients)
        .map(|i| {
            let v4 = Ipv4Addr::from(net4 + (first + u64::from(i)) as u32);
            let v6 = cfg.lan.ipv6.map(|(a, len)| {
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len.min(128))
                };
                Ipv6Addr::from((u128::from(a) & mask) | (0x100 + u128::from(i))).into()
            });
            Host {
                mac: [0x02, 0, 0, 0x10, (i >> 8) as u8, i as u8],
                v4: v4.into(),
                v6,
            }
        })
        .collect())
}

/// Ports (or ICMP identifiers) handed out once each, so that masquerade never has to remap.
/// Spaces: 0 TCP, 1 UDP, 2 ICMP identifiers.
pub(crate) struct PortPool {
    used: [HashSet<u16>; 3],
    reserved: [HashSet<u16>; 3],
}

impl PortPool {
    pub const TCP: usize = 0;
    pub const UDP: usize = 1;
    pub const ICMP: usize = 2;

    pub fn take(&mut self, rng: &mut Rng, space: usize) -> u16 {
        let capacity = usize::from(EPHEMERAL.1 - EPHEMERAL.0) + 1;
        if self.used[space].len() + self.reserved[space].len() >= capacity {
            // All used: start over. Flows that far apart have long ended.
            self.used[space].clear();
        }
        loop {
            let p = rng.range(u64::from(EPHEMERAL.0), u64::from(EPHEMERAL.1)) as u16;
            if !self.reserved[space].contains(&p) && self.used[space].insert(p) {
                return p;
            }
        }
    }
}

/// Generates the traffic described by `cfg`. See the module documentation.
pub fn generate(cfg: &GenConfig) -> Result<Generated, GenError> {
    let clients = make_clients(cfg)?;
    if cfg.wan.ipv4.is_none() {
        return Err(GenError::WanWithoutIpv4(cfg.wan.name.clone()));
    }
    let mtu = cfg.lan.mtu.min(cfg.wan.mtu);
    if mtu < 1280 {
        return Err(GenError::MtuTooSmall(mtu));
    }
    for f in &cfg.forwards {
        let fwd_err = |what| GenError::Forward {
            wan_port: f.wan_port,
            what,
        };
        if f.wan_port == 0 || f.lan_port == 0 {
            return Err(fwd_err("port 0"));
        }
        if f.lan_addr.is_ipv6() && (cfg.lan.ipv6.is_none() || cfg.wan.ipv6.is_none()) {
            return Err(fwd_err("IPv6 target, but LAN or WAN has no IPv6"));
        }
    }
    let m = cfg.mix;
    let has_inbound = !cfg.forwards.is_empty();
    let weights = [
        (FlowKind::Tcp, m.tcp),
        (FlowKind::Dns, m.dns),
        (FlowKind::Quic, m.quic),
        (FlowKind::IcmpEcho, m.icmp),
        (
            FlowKind::InboundTcp,
            if has_inbound { m.inbound } else { 0 },
        ),
        (FlowKind::Malformed, m.malformed),
    ];
    let total: u64 = weights.iter().map(|w| u64::from(w.1)).sum();
    if total == 0 {
        return Err(GenError::EmptyMix);
    }

    let mut rng = Rng::new(cfg.seed);
    let v6 = cfg.lan.ipv6.is_some() && cfg.wan.ipv6.is_some();
    let servers_v4 = (0..48)
        .map(|_| internet_addr(&mut rng, &cfg.wan, false))
        .collect();
    let servers_v6 = if v6 {
        (0..48)
            .map(|_| internet_addr(&mut rng, &cfg.wan, true))
            .collect()
    } else {
        vec![]
    };
    let world = World {
        cfg,
        clients,
        servers_v4,
        servers_v6,
        v6,
    };
    let mut ports = PortPool {
        used: Default::default(),
        reserved: Default::default(),
    };
    for f in &cfg.forwards {
        let space = if f.proto == Transport::Tcp {
            PortPool::TCP
        } else {
            PortPool::UDP
        };
        ports.reserved[space].insert(f.wan_port);
    }

    let mut events: Vec<flows::Event> = Vec::new();
    let mut summary = GenSummary::default();
    let mut t = cfg.start.as_nanos() as u64;
    let mean_gap = cfg.mean_flow_gap.as_nanos() as f64;
    for flow in 0..cfg.flows {
        // Bursty arrivals: Pareto gaps with the configured mean (xm = mean / 4 for shape 4/3).
        if flow > 0 {
            t += rng.pareto(mean_gap / 4.0, (mean_gap * 50.0) as u64 + 1);
        }
        let mut pick = rng.below(total);
        let mut kind = FlowKind::Tcp;
        for (k, w) in weights {
            if pick < u64::from(w) {
                kind = k;
                break;
            }
            pick -= u64::from(w);
        }
        if kind == FlowKind::InboundTcp {
            let f = &cfg.forwards[rng.below(cfg.forwards.len() as u64) as usize];
            if f.proto == Transport::Udp {
                kind = FlowKind::InboundUdp;
            }
        }
        let out = flows::flow(&world, &mut ports, flow as u32, kind, t);
        *summary.flows.entry(kind).or_default() += 1;
        summary.ipv6_flows += usize::from(out.ipv6);
        match out.tcp_close {
            Some(flows::Close::Fin) => summary.tcp_closed_by_fin += 1,
            Some(flows::Close::Rst) => summary.tcp_closed_by_rst += 1,
            None => {}
        }
        events.extend(out.events);
    }
    // Stable order: time, then flow, then the order the flow emitted them in.
    events.sort_by_key(|e| (e.t, e.info.flow, e.seq));

    let mut frames = Vec::with_capacity(events.len());
    let mut info = Vec::with_capacity(events.len());
    for e in events {
        let iface = if e.wan {
            cfg.wan.port()
        } else {
            cfg.lan.port()
        };
        summary.packets += 1;
        summary.bytes += e.data.len() as u64;
        *summary
            .packets_by_iface
            .entry(iface.to_string())
            .or_default() += 1;
        if let Some(m) = e.info.malformed {
            summary.malformed += 1;
            *summary.malformed_by_reason.entry(m).or_default() += 1;
        }
        frames.push(Frame {
            iface: iface.to_string(),
            ts: Duration::from_nanos(e.t),
            data: e.data,
        });
        info.push(e.info);
    }
    if let (Some(a), Some(b)) = (frames.first(), frames.last()) {
        summary.duration = b.ts - a.ts;
    }
    Ok(Generated {
        frames,
        info,
        summary,
    })
}

#[cfg(test)]
mod tests;
