//! One flow at a time: who talks to whom, and the script of its packets with their times at the
//! router. Times are in nanoseconds since the epoch; a leg's `rtt` is the round trip from the
//! router to that leg's sender, so an answer from the other side is seen one `rtt` after the
//! router forwarded what it answers.

use std::net::IpAddr;

use nft_wire::{Icmpv4Repr, Icmpv6Repr, TcpFlags, TcpRepr, UdpRepr};

use super::build::{ip_header_len, ip_packet, l2_frame, syn_options, IpFields, L4};
use super::rng::Rng;
use super::{
    internet_addr, Dir, FlowKind, FrameInfo, Mac, Malformation, PortPool, Transport, World,
};

pub(crate) struct Event {
    pub t: u64,
    /// Emission order inside the flow, to break ties in time.
    pub seq: u32,
    pub wan: bool,
    pub data: Vec<u8>,
    pub info: FrameInfo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Close {
    Fin,
    Rst,
}

pub(crate) struct FlowOut {
    pub events: Vec<Event>,
    pub ipv6: bool,
    pub tcp_close: Option<Close>,
}

/// One direction of a flow, as it arrives at the router.
#[derive(Clone, Debug)]
struct Leg {
    wan: bool,
    src_mac: Mac,
    dst_mac: Mac,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    ttl: u8,
    /// Next IPv4 identification.
    ident: u16,
    flow_label: u32,
    rtt: u64,
}

const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

struct Flow<'w, 'c> {
    world: &'w World<'c>,
    rng: Rng,
    id: u32,
    kind: FlowKind,
    legs: [Leg; 2],
    /// TCP: next sequence number of each side.
    next: [u32; 2],
    /// Random payload bytes the segments and datagrams are cut from.
    pattern: Vec<u8>,
    events: Vec<Event>,
}

fn other(d: usize) -> usize {
    1 - d
}

fn dir_of(d: usize) -> Dir {
    if d == 0 {
        Dir::Original
    } else {
        Dir::Reply
    }
}

impl Flow<'_, '_> {
    fn push(
        &mut self,
        t: u64,
        d: usize,
        wan: bool,
        data: Vec<u8>,
        malformed: Option<Malformation>,
    ) {
        let seq = self.events.len() as u32;
        let info = FrameInfo {
            flow: self.id,
            kind: self.kind,
            dir: dir_of(d),
            malformed,
        };
        self.events.push(Event {
            t,
            seq,
            wan,
            data,
            info,
        });
    }

    fn l3(&mut self, d: usize, l4: &L4<'_>) -> Vec<u8> {
        let leg = &mut self.legs[d];
        let ident = if leg.src.is_ipv6() {
            leg.flow_label
        } else {
            u32::from(leg.ident)
        };
        leg.ident = leg.ident.wrapping_add(1);
        ip_packet(
            &IpFields {
                src: leg.src,
                dst: leg.dst,
                ttl: leg.ttl,
                ident,
            },
            l4,
        )
    }

    fn emit(&mut self, t: u64, d: usize, l4: L4<'_>) {
        let l3 = self.l3(d, &l4);
        let leg = &self.legs[d];
        let cfg = self.world.cfg;
        let encap = if leg.wan {
            &cfg.wan.encap
        } else {
            &cfg.lan.encap
        };
        let data = l2_frame(encap, leg.src_mac, leg.dst_mac, &l3, true);
        let wan = leg.wan;
        self.push(t, d, wan, data, None);
    }

    fn v6(&self) -> bool {
        self.legs[0].src.is_ipv6()
    }

    /// The largest TCP payload both links carry (what MSS clamping leaves).
    fn mss(&self) -> usize {
        let cfg = self.world.cfg;
        usize::from(cfg.lan.mtu.min(cfg.wan.mtu)) - ip_header_len(self.legs[0].src) - 20
    }

    fn max_udp_payload(&self) -> usize {
        let cfg = self.world.cfg;
        usize::from(cfg.lan.mtu.min(cfg.wan.mtu)) - ip_header_len(self.legs[0].src) - 8
    }

    fn tcp_seg(&mut self, t: u64, d: usize, flags: TcpFlags, len: usize) {
        let pattern = std::mem::take(&mut self.pattern);
        let opts = syn_options(self.mss() as u16);
        let leg = &self.legs[d];
        let repr = TcpRepr {
            src_port: leg.sport,
            dst_port: leg.dport,
            seq_number: self.next[d],
            ack_number: if flags.contains(TcpFlags::ACK) {
                self.next[other(d)]
            } else {
                0
            },
            flags,
            window_len: if d == 0 { 64240 } else { 65160 },
            urgent_at: 0,
            options: if flags.contains(TcpFlags::SYN) {
                &opts
            } else {
                &[]
            },
            payload: &pattern[..len],
        };
        self.emit(t, d, L4::Tcp(repr));
        self.pattern = pattern;
        let phantom = u32::from(flags.intersects(TcpFlags(TcpFlags::SYN.0 | TcpFlags::FIN.0)));
        self.next[d] = self.next[d].wrapping_add(len as u32 + phantom);
    }

    fn udp(&mut self, t: u64, d: usize, payload: &[u8]) {
        let leg = &self.legs[d];
        let repr = UdpRepr {
            src_port: leg.sport,
            dst_port: leg.dport,
            payload,
        };
        self.emit(t, d, L4::Udp(repr));
    }

    /// Gap between back-to-back packets of `len` bytes on a link of `mbps`.
    fn wire_gap(len: usize, mbps: u64) -> u64 {
        ((len as u64 + 40) * 8 * 1_000 / mbps).max(US)
    }

    /// Sends `bytes` from side `d` in slow-start flights; the receiver ACKs every second
    /// segment and the last. Returns the time of the last packet.
    fn tcp_transfer(&mut self, d: usize, bytes: usize, t0: u64, mbps: u64) -> u64 {
        let to = other(d);
        let mss = self.mss();
        let (mut sent, mut segs, mut flight, mut t_flight, mut last) =
            (0usize, 0u32, 10usize, t0, t0);
        while sent < bytes {
            let mut ts = t_flight;
            for _ in 0..flight {
                if sent >= bytes {
                    break;
                }
                let len = mss.min(bytes - sent);
                sent += len;
                segs += 1;
                let flags = if sent == bytes {
                    TcpFlags(TcpFlags::ACK.0 | TcpFlags::PSH.0)
                } else {
                    TcpFlags::ACK
                };
                self.tcp_seg(ts, d, flags, len);
                last = last.max(ts);
                if segs % 2 == 0 || sent == bytes {
                    let ta = ts + self.legs[to].rtt;
                    self.tcp_seg(ta, to, TcpFlags::ACK, 0);
                    last = last.max(ta);
                }
                ts += Self::wire_gap(len, mbps);
            }
            t_flight = (t_flight + self.legs[to].rtt + self.legs[d].rtt).max(ts + US);
            flight *= 2;
        }
        last
    }

    fn tcp(&mut self, t0: u64) -> Close {
        let max = u64::from(self.world.cfg.max_packets_per_flow.max(8));
        let budget = self.rng.pareto(8.0, max) as usize;
        let mbps = self.rng.range(5, 500);
        self.next = [self.rng.next_u32(), self.rng.next_u32()];
        let mss = self.mss();
        let mut t = t0;
        self.tcp_seg(t, 0, TcpFlags::SYN, 0);
        t += self.legs[1].rtt;
        self.tcp_seg(t, 1, TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0), 0);
        t += self.legs[0].rtt;
        self.tcp_seg(t, 0, TcpFlags::ACK, 0);

        // What is left after handshake and close, shared out over request/response rounds.
        let data_packets = budget.saturating_sub(6).max(2);
        let rounds = 1 + self.rng.below(1 + (data_packets / 40).min(15) as u64) as usize;
        let per_round = data_packets / rounds;
        let upload = self.rng.percent(10);
        for _ in 0..rounds {
            // Segments of the big side; the receiver's ACKs take a third of the packets.
            let big_segs = (per_round * 2 / 3).max(1);
            let big = (big_segs * mss)
                .saturating_sub(self.rng.below(mss as u64) as usize)
                .max(1);
            let small = self.rng.range(40, 900) as usize;
            let (req, resp) = if upload { (big, small) } else { (small, big) };
            t += self.rng.range(20 * US, 2 * MS);
            t = self.tcp_transfer(0, req, t, mbps);
            // The server answers after the request reached it, plus a little thinking.
            t += self.legs[1].rtt + self.rng.range(0, 5 * MS);
            t = self.tcp_transfer(1, resp, t, mbps);
            t += self.rng.range(MS, 300 * MS);
        }

        if self.rng.percent(80) {
            let c = if self.rng.percent(60) { 0 } else { 1 };
            let o = other(c);
            let fin_ack = TcpFlags(TcpFlags::FIN.0 | TcpFlags::ACK.0);
            self.tcp_seg(t, c, fin_ack, 0);
            t += self.legs[o].rtt;
            self.tcp_seg(t, o, fin_ack, 0);
            t += self.legs[c].rtt;
            self.tcp_seg(t, c, TcpFlags::ACK, 0);
            Close::Fin
        } else {
            let r = self.rng.below(2) as usize;
            self.tcp_seg(t, r, TcpFlags(TcpFlags::RST.0 | TcpFlags::ACK.0), 0);
            Close::Rst
        }
    }

    fn dns(&mut self, t0: u64) {
        const NAMES: [&str; 6] = [
            "www.example.com",
            "api.example.net",
            "cdn.example.org",
            "time.example.com",
            "mail.example.net",
            "updates.example.org",
        ];
        let name = NAMES[self.rng.below(NAMES.len() as u64) as usize];
        let mut t = t0;
        let qtypes: &[u16] = if self.rng.percent(60) { &[1, 28] } else { &[1] };
        for &qtype in qtypes {
            let txid = self.rng.next_u16();
            let query = dns_message(txid, name, qtype, 0);
            self.udp(t, 0, &query);
            let answers = self.rng.range(1, 4) as u16;
            let mut resp = dns_message(txid, name, qtype, answers);
            let rdata_len = if qtype == 28 { 16 } else { 4 };
            for _ in 0..answers {
                resp.extend_from_slice(&[0xc0, 0x0c]);
                resp.extend_from_slice(&qtype.to_be_bytes());
                resp.extend_from_slice(&[0, 1, 0, 0, 0x0e, 0x10, 0, rdata_len as u8]);
                let mut rdata = vec![0u8; rdata_len];
                self.rng.fill(&mut rdata);
                resp.extend_from_slice(&rdata);
            }
            let t_resp = t + self.legs[1].rtt + self.rng.range(0, 3 * MS);
            self.udp(t_resp, 1, &resp);
            t += self.rng.range(50 * US, 2 * MS);
        }
    }

    fn quic(&mut self, t0: u64) {
        let max = u64::from(self.world.cfg.max_packets_per_flow.max(8));
        let budget = self.rng.pareto(10.0, max).max(6) as usize;
        let full = self.max_udp_payload().min(1350);
        let mbps = self.rng.range(10, 800);
        let mut t = t0;
        let mut buf = vec![0u8; full];
        self.rng.fill(&mut buf);
        // Long-header Initial, padded to 1200 as RFC 9000 requires of a client.
        buf[0] = 0xc0 | (buf[0] & 0x0f);
        buf[1..5].copy_from_slice(&1u32.to_be_bytes());
        self.udp(t, 0, &buf[..1200]);
        t += self.legs[1].rtt;
        self.udp(t, 1, &buf[..1200]);
        t += Self::wire_gap(1200, mbps);
        self.udp(t, 1, &buf[..full.min(1100)]);
        t += self.legs[0].rtt;
        buf[0] = 0x40 | (buf[0] & 0x3f);
        let len = self.rng.range(60, 120) as usize;
        self.udp(t, 0, &buf[..len]);
        let mut left = budget.saturating_sub(4);
        let mut flight = 10;
        while left > 0 {
            t += self.legs[0].rtt + self.legs[1].rtt;
            let mut ts = t;
            for i in 0..flight.min(left) {
                let len = if self.rng.percent(85) {
                    full
                } else {
                    self.rng.range(40, full as u64) as usize
                };
                self.udp(ts, 1, &buf[..len]);
                left -= 1;
                if i % 3 == 2 && left > 0 {
                    let ack = self.rng.range(35, 60) as usize;
                    self.udp(ts + self.legs[0].rtt, 0, &buf[..ack]);
                    left -= 1;
                }
                ts += Self::wire_gap(len, mbps);
                if left == 0 {
                    break;
                }
            }
            t = ts;
            flight = (flight * 2).min(64);
        }
    }

    fn echo(&mut self, t0: u64, ident: u16) {
        let count = self.rng.range(1, 6) as u16;
        let mut data = [0u8; 56];
        for (i, b) in data.iter_mut().enumerate().skip(8) {
            *b = i as u8 + 8;
        }
        let mut t = t0;
        for seq_no in 1..=count {
            data[..8].copy_from_slice(&(t / US).to_be_bytes());
            let (req, rep) = if self.v6() {
                (
                    L4::Icmpv6(Icmpv6Repr::EchoRequest {
                        ident,
                        seq_no,
                        data: &data,
                    }),
                    L4::Icmpv6(Icmpv6Repr::EchoReply {
                        ident,
                        seq_no,
                        data: &data,
                    }),
                )
            } else {
                (
                    L4::Icmpv4(Icmpv4Repr::EchoRequest {
                        ident,
                        seq_no,
                        data: &data,
                    }),
                    L4::Icmpv4(Icmpv4Repr::EchoReply {
                        ident,
                        seq_no,
                        data: &data,
                    }),
                )
            };
            self.emit(t, 0, req);
            self.emit(t + self.legs[1].rtt, 1, rep);
            t += SEC + self.rng.range(0, MS);
        }
    }

    /// A WireGuard-like exchange: handshake initiation and response, then data both ways.
    fn inbound_udp(&mut self, t0: u64) {
        let max = u64::from(self.world.cfg.max_packets_per_flow.max(8));
        let budget = self.rng.pareto(6.0, max) as usize;
        let full = self.max_udp_payload().min(1420);
        let mut buf = vec![0u8; full];
        self.rng.fill(&mut buf);
        let mut t = t0;
        self.udp(t, 0, &buf[..148]);
        t += self.legs[1].rtt;
        self.udp(t, 1, &buf[..92]);
        for _ in 2..budget {
            t += self.rng.range(100 * US, 40 * MS);
            let d = self.rng.below(2) as usize;
            let len = self.rng.range(32, full as u64) as usize;
            self.udp(t, d, &buf[..len]);
        }
    }

    fn malformed(&mut self, t: u64, m: Malformation) {
        let d = 0;
        let opts = syn_options(1460);
        let repr = TcpRepr {
            src_port: self.legs[d].sport,
            dst_port: self.legs[d].dport,
            seq_number: self.rng.next_u32(),
            ack_number: 0,
            flags: TcpFlags::SYN,
            window_len: 64240,
            urgent_at: 0,
            options: &opts,
            payload: &[],
        };
        let mut l3 = self.l3(d, &L4::Tcp(repr));
        let hlen = ip_header_len(self.legs[d].src);
        match m {
            Malformation::TruncatedIpv4Header => l3.truncate(self.rng.range(1, 19) as usize),
            Malformation::BadIpv4Checksum => l3[10] ^= 1 << self.rng.below(8),
            Malformation::BadIhl => l3[0] = 0x43,
            Malformation::Ipv6PayloadTooLong => {
                let len = u16::from_be_bytes([l3[4], l3[5]]) + 64;
                l3[4..6].copy_from_slice(&len.to_be_bytes());
            }
            Malformation::TcpDataOffsetTooSmall => l3[hlen + 12] = 0x40 | (l3[hlen + 12] & 0x0f),
            Malformation::RuntEthernet => {}
        }
        let leg = &self.legs[d];
        let cfg = self.world.cfg;
        let encap = if leg.wan {
            &cfg.wan.encap
        } else {
            &cfg.lan.encap
        };
        let mut data = l2_frame(encap, leg.src_mac, leg.dst_mac, &l3, false);
        if m == Malformation::RuntEthernet {
            data.truncate(self.rng.range(1, 13) as usize);
        }
        let wan = leg.wan;
        self.push(t, d, wan, data, Some(m));
    }
}

/// A DNS message with one question and `answers` answer records still to append.
fn dns_message(txid: u16, name: &str, qtype: u16, answers: u16) -> Vec<u8> {
    let flags: u16 = if answers > 0 { 0x8180 } else { 0x0100 };
    let mut m = Vec::with_capacity(64);
    for v in [txid, flags, 1, answers, 0, 0] {
        m.extend_from_slice(&v.to_be_bytes());
    }
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

/// An address for a client on a LAN without IPv6, for malformed IPv6 frames only.
fn fallback_v6(client: &super::Host) -> IpAddr {
    let m = client.mac;
    std::net::Ipv6Addr::new(
        0xfd00,
        0,
        0,
        0,
        0,
        0,
        u16::from_be_bytes([m[2], m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    )
    .into()
}

/// Builds one flow starting at `t0`.
pub(crate) fn flow(
    world: &World<'_>,
    ports: &mut PortPool,
    flow_id: u32,
    kind: FlowKind,
    t0: u64,
) -> FlowOut {
    let cfg = world.cfg;
    let mut rng = Rng::derive(cfg.seed, u64::from(flow_id));
    let lan_rtt = rng.range(150 * US, 3 * MS);
    let wan_rtt = rng.range(4 * MS, 150 * MS);
    let hops = rng.range(4, 24) as u8;
    let mut pattern = vec![0u8; 1500];
    rng.fill(&mut pattern);

    let malformation = (kind == FlowKind::Malformed)
        .then(|| Malformation::ALL[rng.below(Malformation::ALL.len() as u64) as usize]);
    // The defect decides the family; such frames are made even where the router has no IPv6.
    let force_v6 = malformation.map(|m| match m {
        Malformation::Ipv6PayloadTooLong => true,
        Malformation::TcpDataOffsetTooSmall | Malformation::RuntEthernet => rng.percent(50),
        _ => false,
    });
    let (legs, ipv6) = match kind {
        FlowKind::InboundTcp | FlowKind::InboundUdp => {
            let proto = if kind == FlowKind::InboundTcp {
                Transport::Tcp
            } else {
                Transport::Udp
            };
            let candidates: Vec<_> = cfg.forwards.iter().filter(|f| f.proto == proto).collect();
            let f = candidates[rng.below(candidates.len() as u64) as usize];
            let v6 = f.lan_addr.is_ipv6();
            let remote = internet_addr(&mut rng, &cfg.wan, v6);
            let rport = rng.range(1024, 65535) as u16;
            // Without NAT66 there is no forward to translate: the host is reached directly.
            let (dst, dport) = if v6 && !cfg.ipv6_nat {
                (f.lan_addr, f.lan_port)
            } else {
                (cfg.wan.addr(v6).expect("checked in generate"), f.wan_port)
            };
            let orig = Leg {
                wan: true,
                src_mac: cfg.gateway_mac,
                dst_mac: cfg.wan.mac,
                src: remote,
                dst,
                sport: rport,
                dport,
                ttl: 64 - hops,
                ident: rng.next_u16(),
                flow_label: rng.next_u32() & 0xf_ffff,
                rtt: wan_rtt,
            };
            let reply = Leg {
                wan: false,
                src_mac: world.lan_mac(f.lan_addr),
                dst_mac: cfg.lan.mac,
                src: f.lan_addr,
                dst: remote,
                sport: f.lan_port,
                dport: rport,
                ttl: 64,
                ident: rng.next_u16(),
                flow_label: rng.next_u32() & 0xf_ffff,
                rtt: lan_rtt,
            };
            ([orig, reply], v6)
        }
        _ => {
            let client = world.clients[rng.below(world.clients.len() as u64) as usize].clone();
            let v6 = force_v6.unwrap_or_else(|| {
                world.v6 && client.v6.is_some() && rng.percent(u32::from(cfg.ipv6_percent))
            });
            let servers = if v6 {
                &world.servers_v6
            } else {
                &world.servers_v4
            };
            let server = match servers.len() {
                0 => internet_addr(&mut rng, &cfg.wan, v6),
                _ if kind == FlowKind::Dns => servers[0],
                n => servers[rng.skewed(n)],
            };
            let src = if v6 {
                client.v6.unwrap_or_else(|| fallback_v6(&client))
            } else {
                client.v4
            };
            let reply_dst = match cfg.wan.addr(v6) {
                Some(wan) if !v6 || cfg.ipv6_nat => wan,
                _ => src,
            };
            let (sport, dport) = match kind {
                FlowKind::Tcp | FlowKind::Malformed => {
                    let dport = match rng.below(10) {
                        0..=6 => 443,
                        7 | 8 => 80,
                        _ => [22, 993, 8443][rng.below(3) as usize],
                    };
                    (ports.take(&mut rng, PortPool::TCP), dport)
                }
                FlowKind::Dns => (ports.take(&mut rng, PortPool::UDP), 53),
                FlowKind::Quic => (ports.take(&mut rng, PortPool::UDP), 443),
                _ => (ports.take(&mut rng, PortPool::ICMP), 0),
            };
            let orig = Leg {
                wan: false,
                src_mac: client.mac,
                dst_mac: cfg.lan.mac,
                src,
                dst: server,
                sport,
                dport,
                ttl: 64,
                ident: rng.next_u16(),
                flow_label: rng.next_u32() & 0xf_ffff,
                rtt: lan_rtt,
            };
            let reply = Leg {
                wan: true,
                src_mac: cfg.gateway_mac,
                dst_mac: cfg.wan.mac,
                src: server,
                dst: reply_dst,
                sport: dport,
                dport: sport,
                ttl: 64 - hops,
                ident: rng.next_u16(),
                flow_label: rng.next_u32() & 0xf_ffff,
                rtt: wan_rtt,
            };
            ([orig, reply], v6)
        }
    };

    let mut f = Flow {
        world,
        rng,
        id: flow_id,
        kind,
        legs,
        next: [0; 2],
        pattern,
        events: Vec::new(),
    };
    let mut tcp_close = None;
    match kind {
        FlowKind::Tcp | FlowKind::InboundTcp => tcp_close = Some(f.tcp(t0)),
        FlowKind::Dns => f.dns(t0),
        FlowKind::Quic => f.quic(t0),
        FlowKind::IcmpEcho => {
            let ident = f.legs[0].sport;
            f.echo(t0, ident)
        }
        FlowKind::InboundUdp => f.inbound_udp(t0),
        FlowKind::Malformed => {
            // Half arrive from the Internet, through the WAN's encapsulation.
            if f.rng.percent(50) {
                let reply = f.legs[1].clone();
                f.legs[0] = Leg {
                    sport: reply.sport,
                    dport: reply.dport,
                    ..reply
                };
            }
            f.malformed(t0, malformation.expect("chosen for malformed flows"))
        }
    }
    FlowOut {
        events: f.events,
        ipv6,
        tcp_close,
    }
}
