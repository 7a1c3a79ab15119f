//! A home router for the pipeline tests: LAN and WAN, masquerade and a port forward, with
//! packet builders (etherparse) and checks that re-parse what leaves.
#![allow(dead_code, clippy::too_many_arguments)]

use std::time::Duration;

use nft_engine::topology::Topology;
use nft_engine::{Config, Frame, Port, Router, TxFrame};
use nft_lang::ruleset::{load_str, LoadOpts};
use nft_wire::{
    parse_frame, Icmpv4Packet, Icmpv6Packet, IpProtocol, Ipv4Packet, Ipv6Packet, PacketMeta,
    TcpPacket, UdpPacket,
};

pub const LAN: usize = 0;
pub const WAN: usize = 1;
pub const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
pub const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
pub const GW_MAC: [u8; 6] = [2, 0, 0, 0, 2, 0xfe];
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x10];
pub const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x20];
pub const CLIENT: [u8; 4] = [192, 168, 1, 10];
pub const SERVER: [u8; 4] = [192, 168, 1, 20];
pub const ROUTER_LAN: [u8; 4] = [192, 168, 1, 1];
pub const ROUTER_WAN: [u8; 4] = [198, 18, 0, 2];
pub const GW: [u8; 4] = [198, 18, 0, 1];
pub const REMOTE: [u8; 4] = [203, 0, 113, 5];
pub const CLIENT6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x10];
pub const ROUTER_LAN6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
pub const REMOTE6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

pub const TOPOLOGY: &str = r#"
[[interface]]
name = "lan"
mac = "02:00:00:00:01:01"
addresses = ["192.168.1.1/24", "fd00:0:0:1::1/64"]

[[interface]]
name = "wan"
mac = "02:00:00:00:02:01"
addresses = ["198.18.0.2/24", "2001:db8:ffff::2/64"]
mtu = 1400

[[route]]
dst = "default"
via = "198.18.0.1"

[[route]]
dst = "::/0"
via = "2001:db8:ffff::1"
dev = "wan"

[[route]]
dst = "10.66.0.0/16"
type = "blackhole"

[[route]]
dst = "10.67.0.0/16"
type = "unreachable"

[[route]]
dst = "10.99.0.0/16"
via = "192.168.1.99"

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

[[neighbour]]
ip = "fd00:0:0:1::10"
mac = "02:00:00:00:01:10"
dev = "lan"
"#;

/// fw4 in miniature.
pub const RULES: &str = r#"
table inet fw {
	flowtable ft { hook ingress priority 0; devices = { "lan", "wan" }; }
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		tcp dport 22 reject with tcp reset
		udp dport 9999 reject
		iifname "lan" accept
		meta l4proto icmp accept
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		meta l4proto { tcp, udp } flow add @ft
		ct state established,related accept
		ct state invalid drop
		tcp dport 23 reject with tcp reset
		udp dport 7 reject with icmpx port-unreachable
		iifname "lan" oifname "wan" accept
		ct status dnat accept
	}
	chain dstnat {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan" tcp dport 8080 dnat ip to 192.168.1.20:80
	}
	chain srcnat {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" meta l4proto { tcp, udp } masquerade to :40000-40999
		oifname "wan" masquerade
	}
}
"#;

pub fn router_with(topology: &str, rules: &str, cfg: Config) -> Router {
    let topo = Topology::from_toml(topology).unwrap();
    let ast = load_str("rules.nft", rules, &LoadOpts::default())
        .map_err(|e| e.rendered)
        .unwrap();
    let rs = nft_engine::rules::compile(&ast).unwrap();
    Router::new(topo, rs, cfg)
}

pub fn router() -> Router {
    router_with(TOPOLOGY, RULES, Config::default())
}

/// The packets and bytes the named counter `name` of table `table` has counted.
pub fn named_counter(r: &Router, table: &str, name: &str) -> (u64, u64) {
    let i = r
        .ruleset()
        .object(table, nft_engine::rules::ObjKind::Counter, name)
        .unwrap_or_else(|| panic!("no counter {name}"));
    r.rule_state().counters[i]
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Runs one frame; what left.
pub fn send(r: &mut Router, ingress: usize, data: Vec<u8>, now: Duration) -> Vec<TxFrame> {
    let mut out = vec![];
    r.process(&mut [Frame { ingress, data }], now, &mut out);
    out
}

/// Runs one frame that must leave as exactly one frame on `egress`.
pub fn one(r: &mut Router, ingress: usize, data: Vec<u8>, now: Duration, egress: Port) -> Vec<u8> {
    let out = send(r, ingress, data, now);
    assert_eq!(
        out.len(),
        1,
        "expected one frame out, got {out:?}\ncounters: {:?}",
        r.counters().drop_map()
    );
    assert_eq!(out[0].egress, egress);
    check(&out[0].data);
    out[0].data.clone()
}

/// Runs one frame from the LAN that must be forwarded out of the WAN; what left.
pub fn lan_to_wan(r: &mut Router, data: Vec<u8>, now: Duration) -> Vec<u8> {
    one(r, LAN, data, now, Port::Iface(WAN))
}

/// Runs one frame from the WAN that must be forwarded out of the LAN; what left.
pub fn wan_to_lan(r: &mut Router, data: Vec<u8>, now: Duration) -> Vec<u8> {
    one(r, WAN, data, now, Port::Iface(LAN))
}

pub fn none(r: &mut Router, ingress: usize, data: Vec<u8>, now: Duration) {
    let out = send(r, ingress, data, now);
    assert!(out.is_empty(), "expected nothing out, got {out:?}");
}

pub fn udp4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, ttl)
        .udp(sport, dport);
    let mut out = vec![];
    b.write(&mut out, payload).unwrap();
    out
}

pub fn udp6(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    hop: u8,
    payload: &[u8],
) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(src, dst, hop)
        .udp(sport, dport);
    let mut out = vec![];
    b.write(&mut out, payload).unwrap();
    out
}

#[derive(Clone, Copy)]
pub enum Tcp {
    Syn,
    SynAck(u32),
    Ack(u32),
    Fin(u32),
    Rst,
}

#[allow(clippy::too_many_arguments)]
pub fn tcp4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    kind: Tcp,
    payload: &[u8],
) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seq, 64240);
    let b = match kind {
        Tcp::Syn => b.syn(),
        Tcp::SynAck(a) => b.syn().ack(a),
        Tcp::Ack(a) => b.ack(a),
        Tcp::Fin(a) => b.fin().ack(a),
        Tcp::Rst => b.rst(),
    };
    let mut out = vec![];
    b.write(&mut out, payload).unwrap();
    out
}

pub fn icmp4_echo(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
    seq: u16,
    ttl: u8,
) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, ttl)
        .icmpv4_echo_request(id, seq);
    let mut out = vec![];
    b.write(&mut out, b"ping").unwrap();
    out
}

/// UDP from the client, as it arrives on the LAN.
pub fn lan_udp(dst: [u8; 4], sport: u16, dport: u16, ttl: u8, payload: &[u8]) -> Vec<u8> {
    udp4(CLIENT_MAC, LAN_MAC, CLIENT, dst, sport, dport, ttl, payload)
}

/// UDP from `src` through the gateway to the router's WAN address, as it arrives on the WAN.
pub fn wan_udp(src: [u8; 4], sport: u16, dport: u16, ttl: u8, payload: &[u8]) -> Vec<u8> {
    udp4(GW_MAC, WAN_MAC, src, ROUTER_WAN, sport, dport, ttl, payload)
}

/// TCP from the client to the remote host, as it arrives on the LAN.
pub fn lan_tcp(sport: u16, dport: u16, seq: u32, kind: Tcp, payload: &[u8]) -> Vec<u8> {
    tcp4(
        CLIENT_MAC, LAN_MAC, CLIENT, REMOTE, sport, dport, seq, kind, payload,
    )
}

/// TCP from the remote host to the router's WAN address, as it arrives on the WAN.
pub fn wan_tcp(sport: u16, dport: u16, seq: u32, kind: Tcp, payload: &[u8]) -> Vec<u8> {
    tcp4(
        GW_MAC, WAN_MAC, REMOTE, ROUTER_WAN, sport, dport, seq, kind, payload,
    )
}

/// Opens a TCP connection from the client's `cport` to the remote host's `dport` through the
/// masquerade at `now`: SYN (sequence 100), SYN-ACK (sequence `server_seq`) and ACK, each of
/// which must come out on the other side. The source port the router chose.
pub fn open_tcp(r: &mut Router, cport: u16, dport: u16, server_seq: u32, now: Duration) -> u16 {
    let out = lan_to_wan(r, lan_tcp(cport, dport, 100, Tcp::Syn, b""), now);
    let sport = check(&out).ports.unwrap().0;
    wan_to_lan(
        r,
        wan_tcp(dport, sport, server_seq, Tcp::SynAck(101), b""),
        now,
    );
    lan_to_wan(
        r,
        lan_tcp(cport, dport, 101, Tcp::Ack(server_seq + 1), b""),
        now,
    );
    sport
}

/// Parses a frame that left the router and verifies every checksum in it (IPv4 header, TCP,
/// UDP, ICMP, ICMPv6, and the header and L4 checksums of a quoted packet where whole).
pub fn check(frame: &[u8]) -> PacketMeta {
    let m =
        parse_frame(frame).unwrap_or_else(|e| panic!("output does not parse: {e}: {frame:02x?}"));
    let Some(ver) = m.ip_version else { return m };
    let l3 = &frame[m.l3_offset..m.l3_end];
    let (s, d) = (m.src_addr.unwrap(), m.dst_addr.unwrap());
    if ver == nft_wire::IpVersion::Ipv4 {
        assert!(
            Ipv4Packet::new_checked(l3).unwrap().verify_checksum(),
            "IPv4 header checksum"
        );
    }
    let l4 = &frame[m.l4_offset.unwrap()..m.l3_end];
    match m.ip_protocol.unwrap() {
        IpProtocol::Tcp => assert!(
            TcpPacket::new_checked(l4).unwrap().verify_checksum(&s, &d),
            "TCP checksum"
        ),
        IpProtocol::Udp => assert!(
            UdpPacket::new_checked(l4).unwrap().verify_checksum(&s, &d),
            "UDP checksum"
        ),
        IpProtocol::Icmp => assert!(
            Icmpv4Packet::new_checked(l4).unwrap().verify_checksum(),
            "ICMP checksum"
        ),
        IpProtocol::Icmpv6 => {
            let (std::net::IpAddr::V6(s6), std::net::IpAddr::V6(d6)) = (s, d) else {
                panic!()
            };
            assert!(
                Icmpv6Packet::new_checked(l4)
                    .unwrap()
                    .verify_checksum(&s6, &d6),
                "ICMPv6 checksum"
            );
        }
        _ => {}
    }
    if let Some(inner) = m.icmp.and_then(|i| i.inner) {
        if ver == nft_wire::IpVersion::Ipv4 {
            let q = &frame[inner.l3_offset..m.l3_end];
            let hl = ((q[0] & 0xf) as usize) * 4;
            assert!(
                nft_wire::checksum::verify(&q[..hl]),
                "quoted IPv4 header checksum"
            );
        }
    }
    let _ = Ipv6Packet::new_checked(l3);
    m
}

/// `frame` with its MACs replaced (what the router does to a forwarded frame's L2).
pub fn with_macs(mut frame: Vec<u8>, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    frame[0..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
    frame
}
