//! Malformed frames, encapsulated WANs, every hook and verdict, and frames of any shape.

mod common;
use common::*;
use nft_engine::counters::Drop;
use nft_engine::{Config, Frame, Port};
use nft_wire::ParseError;
use proptest::prelude::*;
use std::time::Duration;

fn eth(dst: [u8; 6], ethertype: u16, rest: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(rest);
    f
}

/// An IPv4 header (no options, checksum right) with `proto` and `payload`.
fn ip4(proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
    h.extend_from_slice(&CLIENT);
    h.extend_from_slice(&REMOTE);
    let total = (20 + payload.len()) as u16;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    let c = nft_wire::checksum::checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn ip6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&CLIENT6);
    h.extend_from_slice(&REMOTE6);
    h.extend_from_slice(payload);
    h
}

/// One frame per parse error, each refused for that reason.
fn malformed() -> Vec<(ParseError, Vec<u8>)> {
    use ParseError::*;
    let mut bad_ver = ip4(17, &[0; 8]);
    bad_ver[0] = 0x65;
    let mut bad_ihl = ip4(17, &[0; 8]);
    bad_ihl[0] = 0x44;
    let mut bad_sum = ip4(17, &[0; 8]);
    bad_sum[10] ^= 0xff;
    let bad_total = {
        let mut h = ip4(17, &[0; 8]);
        h[2..4].copy_from_slice(&200u16.to_be_bytes());
        h[10] = 0;
        h[11] = 0;
        let c = nft_wire::checksum::checksum(&h[..20]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    };
    let mut v6_len = ip6(17, &[0; 8]);
    v6_len[4..6].copy_from_slice(&100u16.to_be_bytes());
    let pppoe = |ver: u8, len: u16, rest: &[u8]| {
        let mut p = vec![ver, 0, 0x12, 0x34];
        p.extend_from_slice(&len.to_be_bytes());
        p.extend_from_slice(rest);
        p
    };
    vec![
        (TruncatedEthernet, vec![0; 10]),
        (TruncatedVlan, eth(LAN_MAC, 0x8100, &[0, 1])),
        (
            TooManyVlanTags,
            eth(LAN_MAC, 0x88a8, &[0, 1, 0x81, 0, 0, 2, 0x81, 0, 0, 3, 8, 0]),
        ),
        (TruncatedPppoe, eth(LAN_MAC, 0x8864, &[0x11, 0, 0])),
        (
            BadPppoeHeader,
            eth(LAN_MAC, 0x8864, &pppoe(0x22, 2, &[0, 0x21])),
        ),
        (
            BadPppoeLen,
            eth(LAN_MAC, 0x8864, &pppoe(0x11, 500, &[0, 0x21])),
        ),
        (TruncatedArp, eth([0xff; 6], 0x0806, &[0, 1, 8, 0])),
        (TruncatedIpv4, eth(LAN_MAC, 0x0800, &[0x45, 0, 0])),
        (BadIpVersion, eth(LAN_MAC, 0x0800, &bad_ver)),
        (BadIpv4HeaderLen, eth(LAN_MAC, 0x0800, &bad_ihl)),
        (BadIpv4Checksum, eth(LAN_MAC, 0x0800, &bad_sum)),
        (BadIpv4TotalLen, eth(LAN_MAC, 0x0800, &bad_total)),
        (TruncatedIpv6, eth(LAN_MAC, 0x86dd, &[0x60, 0, 0, 0])),
        (Ipv6PayloadLen, eth(LAN_MAC, 0x86dd, &v6_len)),
        (
            TruncatedIpv6Ext,
            eth(LAN_MAC, 0x86dd, &ip6(60, &[17, 4, 0, 0])),
        ),
        (
            BadIpv6Ext,
            eth(LAN_MAC, 0x86dd, &ip6(60, &[0, 0, 0, 0, 0, 0, 0, 0])),
        ),
        (TruncatedTcp, eth(LAN_MAC, 0x0800, &ip4(6, &[0; 10]))),
        (
            BadTcpDataOffset,
            eth(
                LAN_MAC,
                0x0800,
                &ip4(
                    6,
                    &[
                        0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 2, 0, 0, 0, 0, 0, 0,
                    ],
                ),
            ),
        ),
        (TruncatedUdp, eth(LAN_MAC, 0x0800, &ip4(17, &[0; 4]))),
        (
            BadUdpLen,
            eth(LAN_MAC, 0x0800, &ip4(17, &[0, 1, 0, 2, 0, 99, 0, 0])),
        ),
        (TruncatedIcmp, eth(LAN_MAC, 0x0800, &ip4(1, &[8, 0]))),
        (TruncatedIcmpv6, eth(LAN_MAC, 0x86dd, &ip6(58, &[128]))),
    ]
}

#[test]
fn malformed_frames_each_count_under_their_reason() {
    let cases = malformed();
    assert_eq!(cases.len(), ParseError::COUNT, "one frame per reason");
    let mut r = router();
    for (why, frame) in cases {
        let before = r.counters().parse_errors(why);
        none(&mut r, LAN, frame, secs(1));
        assert_eq!(r.counters().parse_errors(why), before + 1, "{why}");
    }
    let rep = r.report(secs(1));
    assert_eq!(rep.drops.len(), ParseError::COUNT);
    assert!(rep.drops.values().all(|&n| n == 1), "{:?}", rep.drops);
    assert_eq!(rep.packets_in, ParseError::COUNT as u64);
    assert_eq!(rep.slow_path_packets, 0);
    // an unknown ingress port is counted, too
    none(&mut r, 99, vec![0; 64], secs(1));
    assert_eq!(r.counters().dropped(Drop::NoInterface), 1);
}

const ENCAP_TOPOLOGY: &str = r#"
[[interface]]
name = "lan"
mac = "02:00:00:00:01:01"
addresses = ["192.168.1.1/24"]

[[interface]]
name = "eth1"
mac = "02:00:00:00:02:01"

[[interface]]
name = "wan"
mac = "02:00:00:00:02:01"
addresses = ["198.18.0.2/32"]
pppoe = { parent = "eth1", session = 0x1234, peer_mac = "02:00:00:00:02:fe" }

[[interface]]
name = "iot"
mac = "02:00:00:00:01:01"
addresses = ["192.168.7.1/24"]
vlan = { parent = "lan", id = 7 }

[[interface]]
name = "guest"
mac = "02:00:00:00:01:01"
addresses = ["192.168.8.1/24"]
qinq = { parent = "lan", outer = 100, inner = 8 }

[[route]]
dst = "default"
dev = "wan"

[[neighbour]]
ip = "192.168.1.10"
mac = "02:00:00:00:01:10"
dev = "lan"

[[neighbour]]
ip = "192.168.7.10"
mac = "02:00:00:00:07:10"
dev = "iot"

[[neighbour]]
ip = "192.168.8.10"
mac = "02:00:00:00:08:10"
dev = "guest"
"#;

const ENCAP_RULES: &str = r#"
table inet fw {
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "iot" oifname "guest" drop
	}
	chain srcnat {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" masquerade
	}
}
"#;

const ETH1: usize = 1;
const PPPOE_WAN: usize = 2;
const IOT: usize = 3;
const GUEST: usize = 4;

/// An IPv4 UDP packet without a link header.
fn udp_l3(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, ttl: u8, payload: &[u8]) -> Vec<u8> {
    udp4([0; 6], [0; 6], src, dst, sport, dport, ttl, payload)[14..].to_vec()
}

fn pppoe_frame(dst: [u8; 6], src: [u8; 6], l3: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0x64, 0x11, 0, 0x12, 0x34]);
    f.extend_from_slice(&((l3.len() + 2) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0x21]);
    f.extend_from_slice(l3);
    f
}

fn tagged(dst: [u8; 6], src: [u8; 6], tags: &[(u16, u16)], frame_l3: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    for (tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&[8, 0]);
    f.extend_from_slice(frame_l3);
    f
}

#[test]
fn pppoe_wan_and_vlan_lans() {
    let mut r = router_with(ENCAP_TOPOLOGY, ENCAP_RULES, Config::default());
    // LAN → PPPoE WAN: masqueraded, PPPoE session header pushed, peer MAC as destination
    let q = lan_udp(REMOTE, 5000, 53, 64, b"query");
    let out = one(&mut r, LAN, q, secs(1), Port::Iface(PPPOE_WAN));
    let want_l3 = &udp4(WAN_MAC, GW_MAC, ROUTER_WAN, REMOTE, 5000, 53, 63, b"query")[14..];
    assert_eq!(out, pppoe_frame(GW_MAC, WAN_MAC, want_l3));
    // the answer arrives on the parent port, in the session: it belongs to "wan"
    let answer_l3 = &wan_udp(REMOTE, 53, 5000, 60, b"answer")[14..];
    let back = one(
        &mut r,
        ETH1,
        pppoe_frame(WAN_MAC, GW_MAC, answer_l3),
        secs(1),
        Port::Iface(LAN),
    );
    assert_eq!(
        back,
        udp4(LAN_MAC, CLIENT_MAC, REMOTE, CLIENT, 53, 5000, 59, b"answer")
    );
    // another session on that port belongs to nobody
    let mut other = pppoe_frame(WAN_MAC, GW_MAC, answer_l3);
    other[17] = 0x35;
    none(&mut r, ETH1, other, secs(1));
    assert_eq!(r.counters().dropped(Drop::UnknownEncap), 1);
    // and so does the session's id from another MAC than the concentrator's (`pppoe_rcv`
    // looks a session up by both)
    let spoofed = pppoe_frame(WAN_MAC, [2, 0, 0, 0, 0x66, 0x66], answer_l3);
    none(&mut r, ETH1, spoofed, secs(1));
    assert_eq!(r.counters().dropped(Drop::UnknownEncap), 2);
    let rep = r.report(secs(1));
    assert_eq!(rep.interfaces[PPPOE_WAN].tx_packets, 1);
    assert_eq!(rep.interfaces[ETH1].rx_packets, 3);

    // a tagged frame on the LAN port belongs to the VLAN interface and leaves tagged (QinQ)
    let iot_l3 = &udp_l3([192, 168, 7, 10], [192, 168, 1, 10], 1000, 2000, 64, b"t");
    let from_iot = tagged(LAN_MAC, [2, 0, 0, 0, 7, 0x10], &[(0x8100, 7)], iot_l3);
    let out = one(&mut r, LAN, from_iot, secs(2), Port::Iface(LAN));
    assert_eq!(
        out,
        udp4(
            LAN_MAC,
            CLIENT_MAC,
            [192, 168, 7, 10],
            [192, 168, 1, 10],
            1000,
            2000,
            63,
            b"t"
        )
    );
    let lan_l3 = &udp_l3([192, 168, 1, 10], [192, 168, 8, 10], 1000, 2000, 64, b"g");
    let out = one(
        &mut r,
        LAN,
        lan_udp([192, 168, 8, 10], 1000, 2000, 64, b"g"),
        secs(2),
        Port::Iface(GUEST),
    );
    let mut want_l3 = lan_l3.to_vec();
    want_l3[8] = 63;
    let c = {
        want_l3[10] = 0;
        want_l3[11] = 0;
        nft_wire::checksum::checksum(&want_l3[..20])
    };
    want_l3[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        out,
        tagged(
            [2, 0, 0, 0, 8, 0x10],
            LAN_MAC,
            &[(0x88a8, 100), (0x8100, 8)],
            &want_l3
        )
    );
    // rules see the logical interface: iot → guest is dropped
    let to_guest = tagged(
        LAN_MAC,
        [2, 0, 0, 0, 7, 0x10],
        &[(0x8100, 7)],
        &udp_l3([192, 168, 7, 10], [192, 168, 8, 10], 1, 2, 64, b""),
    );
    none(&mut r, IOT, to_guest, secs(2));
    assert_eq!(r.counters().dropped(Drop::RuleDrop), 1);
    // an unknown tag on the LAN port
    none(
        &mut r,
        LAN,
        tagged(LAN_MAC, CLIENT_MAC, &[(0x8100, 9)], iot_l3),
        secs(2),
    );
    assert_eq!(r.counters().dropped(Drop::UnknownEncap), 3);
}

const HOOK_RULES: &str = r#"
table netdev edge {
	chain ingress {
		type filter hook ingress device "wan" priority 0; policy accept;
		ip saddr 203.0.113.66 drop
	}
}
table inet t {
	chain raw {
		type filter hook prerouting priority raw; policy accept;
		udp dport 4444 notrack
	}
	chain mangle {
		type filter hook prerouting priority mangle; policy accept;
		udp dport 5555 meta mark set 0x7 ct mark set 0x9
	}
	chain pre {
		type filter hook prerouting priority filter; policy accept;
		udp dport 6666 drop
	}
	chain input {
		type filter hook input priority filter; policy accept;
		udp dport 7777 jump sub
		udp dport 7778 goto sub
		udp dport 7779 queue
		meta l4proto icmp counter
	}
	chain sub {
		udp sport 1 return
		drop
	}
	chain fw {
		type filter hook forward priority filter; policy drop;
		ct state untracked udp dport 4444 accept
		meta mark 0x7 ct mark 0x9 accept
		ct state new udp dport 8888 continue
		udp dport 8888 accept
	}
	chain post {
		type filter hook postrouting priority filter; policy accept;
		oifname "wan" udp dport 8888 udp sport 2 drop
	}
}
"#;

#[test]
fn every_hook_and_verdict() {
    let mut r = router_with(TOPOLOGY, HOOK_RULES, Config::default());
    let lan = |sport, dport| lan_udp(REMOTE, sport, dport, 64, b"x");
    // netdev ingress drop, only on its device
    none(
        &mut r,
        WAN,
        wan_udp([203, 0, 113, 66], 1, 7000, 64, b""),
        secs(1),
    );
    assert_eq!(r.counters().dropped(Drop::RuleDrop), 1);
    // raw notrack: the forward chain sees it untracked, no connection is made
    lan_to_wan(&mut r, lan(1, 4444), secs(1));
    assert_eq!(r.conntrack().len(), 0);
    // mangle marks the packet and the connection; forward reads both
    lan_to_wan(&mut r, lan(1, 5555), secs(1));
    let conn = r.conntrack().iter().next().unwrap().1;
    assert_eq!(conn.mark, 9);
    // a prerouting filter drop
    none(&mut r, LAN, lan(1, 6666), secs(1));
    assert_eq!(r.counters().dropped(Drop::RuleDrop), 2);
    // jump/return and goto: the subchain returns for sport 1, drops otherwise
    one(
        &mut r,
        LAN,
        lan_udp(ROUTER_LAN, 1, 7777, 64, b""),
        secs(1),
        Port::Host,
    );
    none(&mut r, LAN, lan_udp(ROUTER_LAN, 2, 7777, 64, b""), secs(1));
    // goto replaces the frame: return from sub ends the base chain (policy accept)
    one(
        &mut r,
        LAN,
        lan_udp(ROUTER_LAN, 1, 7778, 64, b""),
        secs(1),
        Port::Host,
    );
    none(&mut r, LAN, lan_udp(ROUTER_LAN, 2, 7778, 64, b""), secs(1));
    assert_eq!(r.counters().dropped(Drop::RuleDrop), 4);
    // queue without a listener
    none(&mut r, LAN, lan_udp(ROUTER_LAN, 1, 7779, 64, b""), secs(1));
    assert_eq!(r.counters().dropped(Drop::Queue), 1);
    // continue goes on to the next rule; forward policy drop for the rest
    lan_to_wan(&mut r, lan(1, 8888), secs(1));
    none(&mut r, LAN, lan(1, 9999), secs(1));
    assert_eq!(r.counters().dropped(Drop::PolicyDrop), 1);
    // postrouting drop
    none(&mut r, LAN, lan(2, 8888), secs(1));
    assert_eq!(r.counters().dropped(Drop::RuleDrop), 5);
    // delivered to the host: the frame as it arrived, on the host port
    let ping = icmp4_echo(CLIENT_MAC, LAN_MAC, CLIENT, ROUTER_LAN, 1, 1, 64);
    assert_eq!(one(&mut r, LAN, ping.clone(), secs(1), Port::Host), ping);
    let rep = r.report(secs(1));
    assert_eq!(rep.host_packets, 3);
    assert!(
        rep.top_rules
            .iter()
            .any(|h| h.rule.contains("notrack") && h.hits == 1),
        "{:?}",
        rep.top_rules
    );
    assert_eq!(r.rule_state().counters[0].0, 1);
}

#[test]
fn conntrack_gc_runs_from_process() {
    let mut r = router();
    for p in 0..10u16 {
        lan_to_wan(&mut r, lan_udp(REMOTE, 6000 + p, 53, 64, b"q"), secs(1));
    }
    assert_eq!(r.conntrack().len(), 10);
    // 30 s unreplied timeout: an empty burst at t = 100 s collects them within its budget
    let mut out = vec![];
    r.process(&mut [], secs(100), &mut out);
    assert_eq!(r.conntrack().len(), 0);
    assert_eq!(r.report(secs(100)).conntrack_expired, 10);
}

/// After a flood has expired the slot array keeps its size while few connections live: the
/// time-driven GC still looks at every slot once per `CT_SWEEP`, so connections expiring
/// later are gone within about `CT_SWEEP` (not slots / `gc_budget` ticks).
#[test]
fn conntrack_gc_sweeps_every_slot_after_a_flood() {
    let cfg = Config {
        gc_budget: 1,
        ..Config::default()
    };
    let mut r = router_with(TOPOLOGY, RULES, cfg);
    let flood = 900u16; // masquerade has 1000 ports; the 20 below need theirs
    let mut out = vec![];
    for chunk in (0..flood).collect::<Vec<_>>().chunks(64) {
        let mut burst: Vec<Frame> = chunk
            .iter()
            .map(|&p| Frame {
                ingress: LAN,
                data: lan_udp(REMOTE, 10_000 + p, 53, 64, b"q"),
            })
            .collect();
        r.process(&mut burst, secs(1), &mut out);
    }
    assert_eq!(r.conntrack().len(), flood as usize);
    let slots = r.conntrack().slots();
    assert!(slots >= flood as usize);
    // the flood expired (30 s unreplied) and is collected
    r.process(&mut [], secs(100), &mut out);
    assert_eq!(r.conntrack().len(), 0);
    assert_eq!(
        r.conntrack().slots(),
        slots,
        "the slot array keeps its size"
    );
    // a few connections made at 100 s expire at 130 s
    for p in 0..20u16 {
        lan_to_wan(&mut r, lan_udp(REMOTE, 6000 + p, 53, 64, b"q"), secs(100));
    }
    assert_eq!(r.conntrack().len(), 20);
    // empty bursts every tick from just before the expiry
    let tick = nft_engine::router::CT_GC_TICK;
    let mut now = Duration::from_millis(129_500);
    let expiry = secs(130);
    while now < expiry {
        r.process(&mut [], now, &mut out);
        now += tick;
    }
    assert_eq!(r.conntrack().len(), 20, "none expired before 130 s");
    let by = expiry + nft_engine::router::CT_SWEEP + 2 * tick;
    while now <= by && !r.conntrack().is_empty() {
        r.process(&mut [], now, &mut out);
        now += tick;
    }
    assert_eq!(
        r.conntrack().len(),
        0,
        "{} left at {now:?}",
        r.conntrack().len()
    );
}

#[test]
fn a_burst_keeps_order_and_empties_its_frames() {
    let mut r = router();
    let mut burst: Vec<Frame> = (0..4u16)
        .map(|i| Frame {
            ingress: LAN,
            data: lan_udp(REMOTE, 7000 + i, 53, 64, b"q"),
        })
        .collect();
    let mut out = vec![];
    r.process(&mut burst, secs(1), &mut out);
    assert!(burst.iter().all(|f| f.data.is_empty()));
    let ports: Vec<u16> = out
        .iter()
        .map(|t| check(&t.data).ports.unwrap().1)
        .collect();
    assert_eq!(ports, [53; 4]);
    let sports: Vec<u16> = out
        .iter()
        .map(|t| check(&t.data).ports.unwrap().0)
        .collect();
    assert!(sports.windows(2).all(|w| w[0] != w[1]));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_frames_never_panic(frames in prop::collection::vec((0usize..6, prop::collection::vec(any::<u8>(), 0..200)), 1..8)) {
        let mut r = router();
        let mut burst: Vec<Frame> = frames.into_iter().map(|(ingress, data)| Frame { ingress, data }).collect();
        let mut out = vec![];
        r.process(&mut burst, secs(1), &mut out);
        for t in &out {
            prop_assert!(nft_wire::parse_frame(&t.data).is_ok());
        }
    }

    #[test]
    fn mutated_valid_frames_never_panic(seed in prop::collection::vec((0usize..80, any::<u8>()), 0..6), which in 0usize..6, ingress in 0usize..3, ttl in 0u8..3) {
        let mut r = router();
        let mut f = match which {
            0 => lan_udp(REMOTE, 5000, 53, ttl, b"query"),
            1 => lan_tcp(5000, 23, 1, Tcp::Syn, b""),
            2 => udp6(CLIENT_MAC, LAN_MAC, CLIENT6, REMOTE6, 5000, 53, ttl, b"q6"),
            3 => icmp4_echo(CLIENT_MAC, LAN_MAC, CLIENT, REMOTE, 7, 1, ttl),
            4 => wan_tcp(41000, 8080, 7, Tcp::Syn, b"x"),
            _ => lan_udp(ROUTER_LAN, 5000, 9999, ttl, b"rej"),
        };
        for (at, v) in seed {
            if let Some(b) = f.get_mut(at) {
                *b = v;
            }
        }
        let mut out = vec![];
        r.process(&mut [Frame { ingress, data: f }], secs(1), &mut out);
        for t in &out {
            prop_assert!(nft_wire::parse_frame(&t.data).is_ok());
        }
    }
}
