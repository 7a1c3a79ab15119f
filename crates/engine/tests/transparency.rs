//! Issue 4, the proof: with the same input, flow offload on and off give the same output
//! (every packet, its bytes, its egress port, in order), the same drops, and the same final
//! connection table (tuples, TCP state, status, mark, and counters when the flowtable has
//! `counter`). Expiry times and the `[OFFLOAD]` mark are left out: they are how offload shows.
//!
//! Each scenario is a script run twice, once per mode; a script may read what left (a
//! masqueraded port) to make its next packet, so it only stays the same if the outputs do,
//! and the first difference is what a failure shows.
//!
//! Known gap, not covered here: conntrack's liberal TCP window bookkeeping (which side has
//! unacknowledged data, retransmissions, a zero window) does not see fast-path segments. It
//! decides only the timeout: a connection whose last data stayed unacknowledged expires
//! after 5 minutes without offload, after the established timeout with it.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use nft_conntrack::{Direction, Status};
use nft_engine::fib::{NextHop, RouteKind};
use nft_engine::topology::Topology;
use nft_engine::{Config, Frame, Port, Router, TxFrame};
use nft_io::gen::{Encap as GenEncap, GenInterface, PortForward, Transport};
use nft_io::GenConfig;
use nft_lang::ruleset::{load_str, LoadOpts};

/// One run of a script in one mode.
struct Driver {
    r: Router,
    /// Each frame that left: the number of the input frame that caused it, egress, bytes.
    out: Vec<(usize, Port, Vec<u8>)>,
    /// The `meta mark` each output frame left with, in the same order.
    marks: Vec<u32>,
    sent: usize,
    now: Duration,
}

impl Driver {
    fn new(topology: &str, rules: &str, offload: bool) -> Driver {
        let topo = Topology::from_toml(topology).unwrap();
        let ast = load_str("rules.nft", rules, &LoadOpts::default())
            .map_err(|e| e.rendered)
            .unwrap();
        let rs = nft_engine::rules::compile(&ast).unwrap();
        let mut cfg = Config {
            offload,
            ..Config::default()
        };
        cfg.conntrack.accounting = true;
        Driver {
            r: Router::new(topo, rs, cfg),
            out: vec![],
            marks: vec![],
            sent: 0,
            now: Duration::ZERO,
        }
    }

    /// A burst of frames at `t`; what left.
    fn burst(&mut self, frames: Vec<(usize, Vec<u8>)>, t: Duration) -> Vec<TxFrame> {
        self.now = self.now.max(t);
        let mut b: Vec<Frame> = frames
            .into_iter()
            .map(|(ingress, data)| Frame { ingress, data })
            .collect();
        let mut out = vec![];
        self.r.process(&mut b, self.now, &mut out);
        for o in &out {
            self.out.push((self.sent, o.egress, o.data.clone()));
            self.marks.push(o.mark);
        }
        self.sent += b.len();
        out
    }

    fn send(&mut self, ingress: usize, data: Vec<u8>, t: Duration) -> Vec<TxFrame> {
        self.burst(vec![(ingress, data)], t)
    }

    /// The connection table as the proof compares it.
    fn conntrack(&mut self, counters: bool) -> Vec<String> {
        let now = self.now;
        self.r.sync_offload(now);
        let mut v: Vec<String> = self
            .r
            .conntrack()
            .iter()
            .filter(|(_, c)| {
                c.is_confirmed() && !c.status().contains(Status::DYING) && !c.expired(now)
            })
            .map(|(_, c)| {
                let mut st = c.status();
                st.remove(Status::OFFLOAD);
                st.remove(Status::HW_OFFLOAD);
                let mut s = format!(
                    "{} | {} | {:?} | {:#x} | mark={}",
                    c.original(),
                    c.reply(),
                    c.tcp_state(),
                    st.0,
                    c.mark
                );
                if counters {
                    s += &format!(
                        " | {:?} {:?}",
                        c.counter(Direction::Original),
                        c.counter(Direction::Reply)
                    );
                }
                s
            })
            .collect();
        v.sort();
        v
    }
}

/// Runs `script` with offload on and off and asserts the proof. Returns the report with
/// offload on, to check that the fast path did take part.
fn transparent(
    name: &str,
    topology: &str,
    rules: &str,
    script: impl Fn(&mut Driver),
) -> nft_engine::counters::Report {
    let counters = rules.contains("counter;");
    let mut on = Driver::new(topology, rules, true);
    let mut off = Driver::new(topology, rules, false);
    script(&mut on);
    script(&mut off);
    assert_eq!(
        on.sent, off.sent,
        "{name}: the script sent different inputs"
    );
    for (i, (a, b)) in on.out.iter().zip(&off.out).enumerate() {
        assert!(
            a == b,
            "{name}: output frame {i} differs\n  offload on:  {a:?}\n  offload off: {b:?}"
        );
    }
    assert_eq!(
        on.out.len(),
        off.out.len(),
        "{name}: number of output frames"
    );
    assert_eq!(
        on.marks, off.marks,
        "{name}: meta marks of the output frames"
    );
    assert_eq!(
        on.r.counters().drop_map(),
        off.r.counters().drop_map(),
        "{name}: drops"
    );
    let (ca, cb) = (on.conntrack(counters), off.conntrack(counters));
    for (a, b) in ca.iter().zip(&cb) {
        assert_eq!(a, b, "{name}: conntrack (offload on, then off)");
    }
    assert_eq!(ca.len(), cb.len(), "{name}: connections");
    let rep = on.r.report(on.now);
    let off_rep = off.r.report(off.now);
    assert_eq!(off_rep.fast_path_packets, 0);
    assert_eq!(
        rep.interfaces, off_rep.interfaces,
        "{name}: interface counters"
    );
    assert_eq!(
        rep.connections, off_rep.connections,
        "{name}: connections by state"
    );
    assert!(
        rep.fast_path_packets > 0,
        "{name}: nothing took the fast path: {rep:?}"
    );
    // every `flow add` is accounted for: a flow made, or a refusal with its reason
    assert_eq!(
        rep.flow_add_requests,
        rep.flows_admitted + rep.flows_refused.values().sum::<u64>(),
        "{name}: flow add requests against admitted {} and refused {:?}",
        rep.flows_admitted,
        rep.flows_refused
    );
    // frames arrive with a NIC's headroom: a VLAN or PPPoE push happens on the fast path
    assert_eq!(
        rep.fast_path_punts.get("no_headroom"),
        None,
        "{name}: fast-path punts {:?}",
        rep.fast_path_punts
    );
    rep
}

// ---- generated traffic ------------------------------------------------------------------

/// Replays generated frames in bursts of up to four (consecutive frames at once, so that
/// the fast path's burst handling and the order of what leaves are part of the proof).
fn replay(d: &mut Driver, frames: &[nft_io::Frame], topo: &Topology) {
    let index = |name: &str| {
        topo.interface(name)
            .map(|i| i.index)
            .or_else(|| topo.interfaces.iter().find(|i| matches!(&i.encap, nft_engine::topology::Encap::Vlan { parent, .. } | nft_engine::topology::Encap::Pppoe { parent, .. } | nft_engine::topology::Encap::QinQ { parent, .. } if parent == name)).map(|i| i.index))
            .unwrap()
    };
    for chunk in frames.chunks(4) {
        let t = chunk.iter().map(|f| f.ts).max().unwrap_or_default();
        d.burst(
            chunk
                .iter()
                .map(|f| (index(&f.iface), f.data.clone()))
                .collect(),
            t,
        );
    }
}

fn gen_iface(i: &nft_engine::topology::Interface) -> GenInterface {
    use nft_engine::topology::Encap;
    let ipv4 = i.addresses.iter().find_map(|(a, l)| {
        if let IpAddr::V4(v) = a {
            Some((*v, *l))
        } else {
            None
        }
    });
    let ipv6 = i.addresses.iter().find_map(|(a, l)| {
        if let IpAddr::V6(v) = a {
            Some((*v, *l))
        } else {
            None
        }
    });
    let encap = match &i.encap {
        Encap::None => GenEncap::None,
        Encap::Vlan { parent, id } => GenEncap::Vlan {
            parent: parent.clone(),
            id: *id,
        },
        Encap::QinQ {
            parent,
            outer,
            inner,
        } => GenEncap::QinQ {
            parent: parent.clone(),
            outer: *outer,
            inner: *inner,
        },
        Encap::Pppoe {
            parent, session, ..
        } => GenEncap::Pppoe {
            parent: parent.clone(),
            session: *session,
        },
    };
    GenInterface {
        name: i.name.clone(),
        mac: i.mac,
        ipv4,
        ipv6,
        mtu: i.mtu,
        encap,
    }
}

/// Generated traffic for a topology whose interface 0 is the LAN and 1 the WAN.
fn generated(
    topology: &str,
    seed: u64,
    flows: usize,
    tune: impl Fn(&mut GenConfig),
) -> Vec<nft_io::Frame> {
    let topo = Topology::from_toml(topology).unwrap();
    let mut cfg = GenConfig::home(seed, flows);
    cfg.lan = gen_iface(&topo.interfaces[0]);
    cfg.wan = gen_iface(&topo.interfaces[1]);
    cfg.gateway_mac = GW_MAC;
    cfg.forwards = vec![];
    tune(&mut cfg);
    nft_io::generate(&cfg).unwrap().frames
}

fn gen_scenario(
    name: &str,
    topology: &str,
    rules: &str,
    frames: &[nft_io::Frame],
) -> nft_engine::counters::Report {
    let topo = Topology::from_toml(topology).unwrap();
    transparent(name, topology, rules, |d| replay(d, frames, &topo))
}

/// A LAN with the generator's eight clients and two servers, and a WAN framed as `wan`.
fn gen_topology(wan: &str, mtu: u16) -> String {
    let mut t = format!(
        r#"
[[interface]]
name = "lan"
mac = "02:00:00:00:01:01"
addresses = ["192.168.1.1/24", "fd00:1::1/64"]

[[interface]]
name = "wan"
mac = "02:00:00:00:02:01"
addresses = ["198.18.0.2/24", "2001:db8:ffff::2/64"]
mtu = {mtu}
{wan}

[[route]]
dst = "default"
via = "198.18.0.1"

[[route]]
dst = "::/0"
via = "2001:db8:ffff::1"
dev = "wan"

[[neighbour]]
ip = "198.18.0.1"
mac = "02:00:00:00:02:fe"
dev = "wan"

[[neighbour]]
ip = "2001:db8:ffff::1"
mac = "02:00:00:00:02:fe"
dev = "wan"

[[neighbour]]
ip = "192.168.1.10"
mac = "02:00:00:00:01:10"
dev = "lan"

[[neighbour]]
ip = "192.168.1.20"
mac = "02:00:00:00:01:20"
dev = "lan"
"#
    );
    for i in 0..8 {
        t += &format!("\n[[neighbour]]\nip = \"192.168.1.{}\"\nmac = \"02:00:00:10:00:{i:02x}\"\ndev = \"lan\"\n", 100 + i);
        t += &format!("\n[[neighbour]]\nip = \"fd00:1::{:x}\"\nmac = \"02:00:00:10:00:{i:02x}\"\ndev = \"lan\"\n", 0x100 + i);
    }
    t
}

/// fw4 in miniature with NAT both ways: masquerade out (IPv4 and IPv6), port forwards in,
/// and forwarded connections from outside source-NATed to the router's LAN address.
const NAT_RULES: &str = r#"
table inet fw {
	flowtable ft { hook ingress priority 0; devices = { "lan", "wan" }; counter; }
	chain forward {
		type filter hook forward priority filter; policy drop;
		meta l4proto { tcp, udp } flow add @ft
		ct state established,related accept
		ct state invalid drop
		iifname "lan" oifname "wan" accept
		ct status dnat accept
	}
	chain dstnat {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan" meta nfproto ipv4 tcp dport 8080 dnat ip to 192.168.1.10:80
		iifname "wan" meta nfproto ipv4 udp dport 51820 dnat ip to 192.168.1.20:51820
	}
	chain srcnat {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" masquerade
		iifname "wan" oifname "lan" meta nfproto ipv4 snat ip to 192.168.1.1
	}
}
"#;

fn home_forwards() -> Vec<PortForward> {
    vec![
        PortForward {
            proto: Transport::Tcp,
            wan_port: 8080,
            lan_addr: "192.168.1.10".parse().unwrap(),
            lan_port: 80,
        },
        PortForward {
            proto: Transport::Udp,
            wan_port: 51820,
            lan_addr: "192.168.1.20".parse().unwrap(),
            lan_port: 51820,
        },
    ]
}

#[test]
fn default_home_router_with_generated_traffic() {
    let topology = include_str!("../../../examples/home.toml");
    let rules = include_str!("../../../examples/fw4-home.nft");
    let topo = Topology::from_toml(topology).unwrap();
    let mut cfg = GenConfig::home(11, 400);
    cfg.lan = gen_iface(&topo.interfaces[0]);
    cfg.wan = gen_iface(&topo.interfaces[1]);
    cfg.gateway_mac = GW_MAC;
    cfg.ipv6_nat = false;
    cfg.forwards = vec![PortForward {
        proto: Transport::Tcp,
        wan_port: 8080,
        lan_addr: "192.168.1.100".parse().unwrap(),
        lan_port: 80,
    }];
    let frames = nft_io::generate(&cfg).unwrap().frames;
    let rep = gen_scenario("default", topology, rules, &frames);
    assert!(rep.flows_offloaded > 20, "{rep:?}");
}

#[test]
fn heavy_nat_both_ways_and_port_forwards() {
    let topology = gen_topology("", 1500);
    let frames = generated(&topology, 12, 400, |c| {
        c.forwards = home_forwards();
        c.mix.inbound = 60;
        c.mix.quic = 30;
    });
    let rep = gen_scenario("nat", &topology, NAT_RULES, &frames);
    assert!(
        rep.nat_bindings > 100 && rep.flows_offloaded > 20,
        "{rep:?}"
    );
}

/// Beyond the kernel: marks and DSCP set by the slow path for a connection (forward and
/// postrouting, both directions, IPv4 and IPv6) are replayed on its fast path.
#[test]
fn mangles_replayed_on_the_fast_path() {
    let rules = NAT_RULES.replace(
        "\tchain srcnat {",
        "\tchain mangle_forward {\n\t\ttype filter hook forward priority mangle; policy accept;\n\t\tiifname \"lan\" ip dscp set cs4 meta mark set 0x42\n\t\tiifname \"wan\" meta l4proto udp ct mark set 0x7\n\t}\n\tchain mangle_post {\n\t\ttype filter hook postrouting priority mangle; policy accept;\n\t\toifname \"lan\" ip6 dscp set af21\n\t\toifname \"lan\" meta nfproto ipv4 ip dscp set ef meta mark set 0x9\n\t}\n\tchain srcnat {",
    );
    assert!(rules.contains("mangle_post"));
    let topology = gen_topology("", 1500);
    let frames = generated(&topology, 16, 300, |c| {
        c.forwards = home_forwards();
        c.ipv6_percent = 40;
    });
    let topo = Topology::from_toml(&topology).unwrap();
    let mut seen = Driver::new(&topology, &rules, true);
    replay(&mut seen, &frames, &topo);
    let rep = gen_scenario("mangles", &topology, &rules, &frames);
    assert!(rep.flows_offloaded > 20, "{rep:?}");
    // the fast path did replay them: frames it sent carry the new DSCP and marks
    let dscp = |f: &[u8]| match u16::from_be_bytes([f[12], f[13]]) {
        0x0800 => Some(f[15] >> 2),
        0x86dd => Some((f[14] & 0x0f) << 2 | f[15] >> 6),
        _ => None,
    };
    let out: Vec<(u8, u32)> = seen
        .out
        .iter()
        .zip(&seen.marks)
        .filter_map(|((_, _, f), &m)| Some((dscp(f)?, m)))
        .collect();
    let mut kinds = out.clone();
    kinds.sort();
    kinds.dedup();
    for (d, m) in [(32, 0x42), (46, 0x9), (18, 0)] {
        assert!(
            out.contains(&(d, m)),
            "no frame left with dscp {d} mark {m:#x}: {kinds:?}"
        );
    }
    assert!(seen.r.report(seen.now).fast_path_packets > 100);
}

#[test]
fn ipv6_only() {
    let topology = gen_topology("", 1500);
    let frames = generated(&topology, 13, 300, |c| c.ipv6_percent = 100);
    gen_scenario("ipv6", &topology, NAT_RULES, &frames);
}

#[test]
fn vlan_tagged_wan() {
    let topology = gen_topology("vlan = { parent = \"eth1\", id = 7 }", 1500);
    let frames = generated(&topology, 14, 300, |c| c.forwards = home_forwards());
    gen_scenario(
        "vlan",
        &topology,
        &NAT_RULES.replace("\"lan\", \"wan\"", "\"lan\", \"eth1\""),
        &frames,
    );
}

#[test]
fn pppoe_wan() {
    let topology = gen_topology(
        "pppoe = { parent = \"eth1\", session = 0x1234, peer_mac = \"02:00:00:00:02:fe\" }",
        1492,
    );
    let frames = generated(&topology, 15, 300, |c| c.forwards = home_forwards());
    gen_scenario("pppoe", &topology, NAT_RULES, &frames);
}

// ---- scripted traffic -------------------------------------------------------------------

/// The common test topology (LAN, WAN with MTU 1400) and a second uplink for route changes.
fn scripted_topology() -> String {
    format!(
        "{TOPOLOGY}\n[[interface]]\nname = \"wan2\"\nmac = \"02:00:00:00:03:01\"\naddresses = [\"198.19.0.2/24\"]\n\n[[neighbour]]\nip = \"198.19.0.1\"\nmac = \"02:00:00:00:03:fe\"\ndev = \"wan2\"\n"
    )
}

fn scripted_rules() -> String {
    RULES
        .replace(
            "devices = { \"lan\", \"wan\" }; }",
            "devices = { \"lan\", \"wan\", \"wan2\" }; counter; }",
        )
        .replace(
            "iifname \"lan\" oifname \"wan\" accept",
            "iifname \"lan\" accept",
        )
}

const WAN2: usize = 2;
const WAN2_MAC: [u8; 6] = [2, 0, 0, 0, 3, 1];
const GW2_MAC: [u8; 6] = [2, 0, 0, 0, 3, 0xfe];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A TCP connection from CLIENT to REMOTE through masquerade, sequence numbers kept.
struct Conn {
    cport: u16,
    dport: u16,
    /// The masqueraded port, once seen.
    nport: u16,
    cseq: u32,
    sseq: u32,
}

impl Conn {
    fn new(cport: u16, dport: u16) -> Conn {
        Conn {
            cport,
            dport,
            nport: 0,
            cseq: 1000,
            sseq: 500_000,
        }
    }

    fn c2s(
        &mut self,
        d: &mut Driver,
        kind: fn(u32) -> Tcp,
        payload: &[u8],
        t: Duration,
    ) -> Vec<TxFrame> {
        let f = lan_tcp(self.cport, self.dport, self.cseq, kind(self.sseq), payload);
        self.cseq = self.cseq.wrapping_add(payload.len() as u32);
        let out = d.send(LAN, f, t);
        if let Some(o) = out.iter().find(|o| o.egress != Port::Iface(LAN)) {
            if let Some((sp, _)) = nft_wire::parse_frame(&o.data).ok().and_then(|m| m.ports) {
                self.nport = sp;
            }
        }
        out
    }

    fn s2c(
        &mut self,
        d: &mut Driver,
        kind: fn(u32) -> Tcp,
        payload: &[u8],
        t: Duration,
    ) -> Vec<TxFrame> {
        let f = wan_tcp(self.dport, self.nport, self.sseq, kind(self.cseq), payload);
        self.sseq = self.sseq.wrapping_add(payload.len() as u32);
        d.send(WAN, f, t)
    }

    fn open(&mut self, d: &mut Driver, t: Duration) {
        self.c2s(d, |_| Tcp::Syn, b"", t);
        self.cseq += 1;
        self.s2c(d, Tcp::SynAck, b"", t);
        self.sseq += 1;
        self.c2s(d, Tcp::Ack, b"", t);
    }

    fn data(&mut self, d: &mut Driver, n: usize, t: Duration) {
        for i in 0..n {
            let t = t + ms(i as u64 * 10);
            self.c2s(d, Tcp::Ack, b"request", t);
            self.s2c(d, Tcp::Ack, &[0x5a; 900], t);
        }
        // the client acknowledges the last data: nothing is left unacknowledged (which
        // would shorten conntrack's timeout to 5 minutes; see the module's gaps)
        self.c2s(d, Tcp::Ack, b"", t + ms(n as u64 * 10));
    }
}

#[test]
fn fin_rst_and_syn_reuse() {
    transparent(
        "fin/rst/syn",
        &scripted_topology(),
        &scripted_rules(),
        |d| {
            // a connection closed with FIN both ways, then its ports reused by a new SYN
            let mut c = Conn::new(50000, 443);
            c.open(d, secs(1));
            c.data(d, 20, secs(1));
            c.c2s(d, Tcp::Fin, b"", secs(2));
            c.cseq += 1;
            c.s2c(d, Tcp::Ack, &[1; 100], secs(2));
            c.s2c(d, Tcp::Fin, b"", secs(2));
            c.sseq += 1;
            c.c2s(d, Tcp::Ack, b"", secs(2));
            // late retransmissions after the close
            c.s2c(d, Tcp::Ack, b"", secs(3));
            c.cseq = 9_000_000;
            c.sseq = 7_000_000;
            c.open(d, secs(5));
            c.data(d, 10, secs(5));
            // a SYN on the open flow, then odd flag combinations (invalid: dropped by the rule)
            c.c2s(d, |_| Tcp::Syn, b"", secs(6));
            let mut odd = lan_tcp(c.cport, c.dport, c.cseq, Tcp::Ack(c.sseq), b"");
            odd[14 + 20 + 13] = 0x03; // SYN|FIN
            fix_checksums(&mut odd);
            d.send(LAN, odd.clone(), secs(6));
            odd[14 + 20 + 13] = 0x00; // no flags at all
            fix_checksums(&mut odd);
            d.send(LAN, odd, secs(6));
            c.data(d, 5, secs(6));
            // the server resets; the client keeps talking into the void
            c.s2c(d, |_| Tcp::Rst, b"", secs(7));
            c.data(d, 3, secs(7));
            // a second connection reset by the client mid-stream, then reused at once
            let mut e = Conn::new(50001, 80);
            e.open(d, secs(8));
            e.data(d, 10, secs(8));
            e.c2s(d, |_| Tcp::Rst, b"", secs(9));
            e.cseq = 3_000_000;
            e.open(d, secs(9));
            e.data(d, 10, secs(9));
        },
    );
}

/// Recomputes the IPv4 and TCP/UDP checksums of an untagged frame after a test edited it.
fn fix_checksums(f: &mut [u8]) {
    let (src, dst) = ([f[26], f[27], f[28], f[29]], [f[30], f[31], f[32], f[33]]);
    let proto = f[23];
    let l4 = &mut f[34..];
    let at = if proto == 6 { 16 } else { 6 };
    l4[at] = 0;
    l4[at + 1] = 0;
    let mut sum: u32 = 0;
    for w in [
        u16::from_be_bytes([src[0], src[1]]),
        u16::from_be_bytes([src[2], src[3]]),
        u16::from_be_bytes([dst[0], dst[1]]),
        u16::from_be_bytes([dst[2], dst[3]]),
        u16::from(proto),
        l4.len() as u16,
    ] {
        sum += u32::from(w);
    }
    for ch in l4.chunks(2) {
        sum += u32::from(u16::from_be_bytes([ch[0], *ch.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    nft_wire::Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
}

#[test]
fn flows_that_expire_and_come_back() {
    let rep = transparent("expiry", &scripted_topology(), &scripted_rules(), |d| {
        let mut c = Conn::new(50010, 443);
        c.open(d, secs(1));
        c.data(d, 10, secs(1));
        // idle past the flowtable's 30 s: the flow leaves, the connection stays
        c.data(d, 10, secs(45));
        // and again, several times with GC passes in between
        for k in 0..3 {
            c.data(d, 3, secs(100 + 40 * k));
        }
        // UDP: assured and offloaded, idle 40 s (back to the slow path, then offloaded again),
        // then idle past conntrack's 120 s: the answer finds no connection any more
        let q = |p: &[u8]| lan_udp(REMOTE, 5353, 4433, 64, p);
        let mut nport = 0;
        for t in [300, 301, 304, 305, 306, 346, 347, 348, 349] {
            let out = d.send(LAN, q(b"ping"), secs(t));
            if let Some(p) = out
                .first()
                .and_then(|o| nft_wire::parse_frame(&o.data).ok())
                .and_then(|m| m.ports)
            {
                nport = p.0;
            }
            d.send(
                WAN,
                wan_udp(REMOTE, 4433, nport, 64, b"pong"),
                secs(t) + ms(5),
            );
        }
        // 200 s later: the reply direction alone is dropped (no connection, policy drop),
        // then the client starts over
        d.send(WAN, wan_udp(REMOTE, 4433, nport, 64, b"late"), secs(560));
        for t in [561, 562, 565, 566] {
            d.send(LAN, q(b"again"), secs(t));
            d.send(
                WAN,
                wan_udp(REMOTE, 4433, nport, 64, b"pong"),
                secs(t) + ms(5),
            );
        }
    });
    assert!(rep.flows_offloaded >= 5, "{rep:?}");
}

#[test]
fn route_change_and_link_down_mid_capture() {
    transparent(
        "route change",
        &scripted_topology(),
        &scripted_rules(),
        |d| {
            let mut c = Conn::new(50020, 443);
            c.open(d, secs(1));
            c.data(d, 10, secs(1));
            // REMOTE's /24 moves to the second uplink: the client's packets leave there (still
            // with the masquerade binding the connection got on wan)
            let gw2 = NextHop {
                ifindex: WAN2,
                via: Some("198.19.0.1".parse().unwrap()),
            };
            d.r.fib_mut()
                .insert("203.0.113.0".parse().unwrap(), 24, RouteKind::Unicast(gw2))
                .unwrap();
            c.data(d, 5, secs(2));
            // and back
            d.r.fib_mut().remove("203.0.113.0".parse().unwrap(), 24);
            c.data(d, 5, secs(3));
            // a blackhole for it
            d.r.fib_mut()
                .insert("203.0.113.5".parse().unwrap(), 32, RouteKind::Blackhole)
                .unwrap();
            c.data(d, 3, secs(4));
            d.r.fib_mut().remove("203.0.113.5".parse().unwrap(), 32);
            c.data(d, 5, secs(5));
            // WAN goes down and up again: its flows are torn down, then offloaded anew
            d.r.set_link(WAN, false);
            c.data(d, 3, secs(6));
            d.r.set_link(WAN, true);
            c.data(d, 10, secs(7));
            let _ = (WAN2_MAC, GW2_MAC);
        },
    );
}

#[test]
fn mtu_sized_packets() {
    transparent("mtu", &scripted_topology(), &scripted_rules(), |d| {
        let mut c = Conn::new(50030, 443);
        c.open(d, secs(1));
        c.data(d, 5, secs(1));
        // WAN's MTU is 1400: 1360 bytes of payload fill it exactly, one more does not (DF set:
        // frag-needed back to the client, from the slow path either way)
        for (n, size) in [1360usize, 1361, 1360, 1400, 1359].into_iter().enumerate() {
            c.c2s(d, Tcp::Ack, &vec![7u8; size], secs(2) + ms(n as u64));
            c.s2c(d, Tcp::Ack, b"", secs(2) + ms(n as u64));
        }
        // replies fill the LAN's 1500
        for size in [1460usize, 1461, 1460] {
            c.s2c(d, Tcp::Ack, &vec![9u8; size], secs(3));
        }
        // IPv6 (no NAT), hop limit and size edges
        let q = |hop: u8, n: usize| {
            udp6(
                CLIENT_MAC,
                LAN_MAC,
                CLIENT6,
                REMOTE6,
                6000,
                443,
                hop,
                &vec![1u8; n],
            )
        };
        let a = |n: usize| {
            udp6(
                GW_MAC,
                WAN_MAC,
                REMOTE6,
                CLIENT6,
                443,
                6000,
                64,
                &vec![2u8; n],
            )
        };
        for t in 10..14 {
            d.send(LAN, q(64, 100), secs(t));
            d.send(WAN, a(100), secs(t));
        }
        for (n, hop) in [
            (1352usize, 64u8),
            (1353, 64),
            (100, 1),
            (100, 2),
            (1352, 64),
        ] {
            d.send(LAN, q(hop, n), secs(15));
        }
        d.send(WAN, a(1452), secs(15));
        d.send(WAN, a(1453), secs(15));
        // a burst mixing both connections, fast- and slow-path frames together
        let mut frames = vec![];
        for k in 0..6 {
            frames.push((LAN, q(64, 200 + k)));
            frames.push((WAN, a(1453 - k % 2)));
        }
        d.burst(frames, secs(16));
    });
}

/// With tracing, each fast-path packet gets one line: the flowtable, the flow and direction,
/// its tuple, the rewrite and where it left.
#[test]
fn fast_path_packets_are_traced() {
    let topology = gen_topology("", 1500);
    let frames = generated(&topology, 17, 40, |c| c.ipv6_percent = 0);
    let topo = Topology::from_toml(&topology).unwrap();
    let mut d = Driver::new(&topology, NAT_RULES, true);
    let mut cfg = Config {
        trace: true,
        ..Config::default()
    };
    cfg.conntrack.accounting = true;
    let ast = load_str("rules.nft", NAT_RULES, &LoadOpts::default()).unwrap();
    d.r = Router::new(
        Topology::from_toml(&topology).unwrap(),
        nft_engine::rules::compile(&ast).unwrap(),
        cfg,
    );
    replay(&mut d, &frames, &topo);
    let trace = d.r.take_trace();
    let fast: Vec<&String> = trace
        .iter()
        .filter(|l| l.contains(" fast path: "))
        .collect();
    let rep = d.r.report(d.now);
    assert!(rep.fast_path_packets > 0);
    assert_eq!(
        fast.len() as u64,
        rep.fast_path_packets,
        "one line per fast-path packet"
    );
    let nat = fast
        .iter()
        .find(|l| l.contains("iif \"lan\"") && l.contains(" original "))
        .expect("a LAN packet on the fast path");
    assert!(
        nat.contains("flowtable fw ft flow ")
            && nat.contains(" nat src=198.18.0.2")
            && nat.ends_with("oif \"wan\" (verdict forward)"),
        "{nat}"
    );
    assert!(fast
        .iter()
        .any(|l| l.contains(" reply ") && l.contains(" nat dst=192.168.1.")));
}
