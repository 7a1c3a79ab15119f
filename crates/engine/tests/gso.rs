//! GSO super-packets and partial checksums through the router (`Router::process_slots_offloaded`,
//! what `run --io af_packet` hands it with `PACKET_VNET_HDR`): the fast path's MTU check by
//! segment size, the partial checksum under masquerade byte for byte, and the slow path's
//! segments.

mod common;

use common::*;
use nft_engine::{Config, Sent};
use nft_flowtable::{FrameSlot, Offload};
use nft_wire::checksum::{fold, pseudo_header};
use nft_wire::{parse_frame, IpProtocol};
use std::net::{IpAddr, Ipv4Addr};

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

/// The TCP checksum field of an IPv4 frame without options.
const TCP_CSUM: usize = 14 + 20 + 16;

fn get16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

/// A client segment of `payload` bytes (PSH set, as a stack sets it on a write's last
/// segment) whose TCP checksum is the pseudo-header sum plus `rest`, as a sender with TSO
/// leaves it, with its offload state: GSO by `gso_size` (0: a plain frame with a partial
/// checksum).
fn partial(payload: &[u8], seq: u32, ack: u32, gso_size: u16, rest: u16) -> FrameSlot {
    let mut f = lan_tcp(50000, 443, seq, Tcp::Ack(ack), payload);
    f[14 + 20 + 13] |= 0x08;
    let l4_len = (f.len() - 34) as u32;
    let p = pseudo_header(&v4(CLIENT), &v4(REMOTE), IpProtocol::Tcp, l4_len);
    let field = if rest == 0 {
        p
    } else {
        nft_wire::checksum::add(p, rest)
    };
    f[TCP_CSUM..TCP_CSUM + 2].copy_from_slice(&field.to_be_bytes());
    lan_slot(&f, gso_size, 34)
}

/// A frame from the LAN with its offload state: GSO by `gso_size`, checksum partial from
/// `csum_start`.
fn lan_slot(f: &[u8], gso_size: u16, csum_start: u16) -> FrameSlot {
    let mut s = FrameSlot::new(LAN as u16, f);
    s.offload = Offload {
        gso_size,
        csum_start,
    };
    s
}

/// An ICMP error's Ethernet and IPv4 header to the client, written out: from the router's
/// LAN address (TOS 0xc0, TTL 64, id 0), with `quote` bytes behind the ICMP header.
fn icmp_to_client(quote: u16) -> Vec<u8> {
    let mut want = vec![];
    want.extend_from_slice(&CLIENT_MAC);
    want.extend_from_slice(&LAN_MAC);
    want.extend_from_slice(&[0x08, 0x00, 0x45, 0xc0]);
    want.extend_from_slice(&(20u16 + 8 + quote).to_be_bytes());
    want.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0]);
    want.extend_from_slice(&ROUTER_LAN);
    want.extend_from_slice(&CLIENT);
    let c = nft_wire::checksum::checksum(&want[14..34]);
    want[24..26].copy_from_slice(&c.to_be_bytes());
    want
}

/// The frames a burst sent, all from the slow path (none forwarded from its slot).
fn slow_path_frames(sent: &[Sent]) -> Vec<&nft_engine::router::TxFrame> {
    sent.iter()
        .map(|s| match s {
            Sent::Frame(f) => f,
            Sent::Slots { .. } => panic!("forwarded by the fast path: {sent:?}"),
        })
        .collect()
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 251) as u8).collect()
}

/// The kernel's update of a partial checksum for a changed IPv4 address
/// (`inet_proto_csum_replace4(.., pseudohdr = true)` on `CHECKSUM_PARTIAL`:
/// `~csum_fold(csum_add(csum_sub(~csum_unfold(sum), from), to))`), written out on its own.
fn kernel_partial_update(sum: u16, from: [u8; 4], to: [u8; 4]) -> u16 {
    let w = |a: [u8; 4]| {
        [
            u16::from_be_bytes([a[0], a[1]]),
            u16::from_be_bytes([a[2], a[3]]),
        ]
    };
    let mut acc = u64::from(sum);
    for x in w(from) {
        acc += u64::from(!x);
    }
    for x in w(to) {
        acc += u64::from(x);
    }
    fold(acc)
}

/// An offloaded connection's super-packet of ten segments (13 000 bytes, above the WAN's
/// MTU of 1 400) whose segments fit (20 + 20 + 1 300) leaves whole from its slot, rewritten
/// once: masqueraded (a new source address and port), TTL, MACs; its partial checksum moved
/// by the address alone, as the kernel moves it, so the device's sum over the new ports and
/// the data completes it; the same bytes as a plain packet of that size would be refused.
/// The client's TCP frame `input` as it leaves on the WAN, written out: MACs, TTL 63 and its
/// header checksum, the WAN address and the masquerade's port `sport`, the partial checksum
/// by the kernel's update (returned too).
fn masqueraded(input: &[u8], sport: u16) -> (Vec<u8>, u16) {
    let mut want = with_macs(input.to_vec(), GW_MAC, WAN_MAC);
    want[22] = 63;
    want[26..30].copy_from_slice(&ROUTER_WAN);
    want[24..26].copy_from_slice(&[0, 0]);
    let c = nft_wire::checksum::checksum(&want[14..34]);
    want[24..26].copy_from_slice(&c.to_be_bytes());
    want[34..36].copy_from_slice(&sport.to_be_bytes());
    let field = kernel_partial_update(get16(input, TCP_CSUM), CLIENT, ROUTER_WAN);
    want[TCP_CSUM..TCP_CSUM + 2].copy_from_slice(&field.to_be_bytes());
    (want, field)
}

#[test]
fn a_gso_packet_whose_segments_fit_is_forwarded_whole_with_its_partial_checksum_natted() {
    let mut r = router();
    let sport = open_tcp(&mut r, 50000, 443, 7000, secs(1));
    assert_eq!(r.report(secs(1)).flows_offloaded, 1);
    assert_ne!(sport, 50000, "masquerade to :40000-40999 moves the port");
    let payload = data(13_000);
    for rest in [0u16, 0x1234] {
        let mut slots = vec![partial(&payload, 101, 7001, 1300, rest)];
        let input = slots[0].frame().to_vec();
        let mut sent = vec![];
        r.process_slots_offloaded(&mut slots, secs(2), &mut sent);
        assert_eq!(sent, vec![Sent::Slots { start: 0, end: 1 }]);
        assert_eq!(slots[0].egress(), Some(WAN as u16));
        let (want, field) = masqueraded(&input, sport);
        assert_eq!(slots[0].frame(), &want[..], "rest {rest:#x}");
        assert_eq!(slots[0].len(), 14 + 20 + 20 + 13_000);
        assert!(slots[0].offload.csum_partial());
        assert_eq!(slots[0].offload.csum_start, 34);
        if rest == 0 {
            // the pseudo-header of what leaves: completing it gives a checksum that verifies
            let l4_len = (want.len() - 34) as u32;
            let p = pseudo_header(&v4(ROUTER_WAN), &v4(REMOTE), IpProtocol::Tcp, l4_len);
            assert_eq!(field, p);
            let mut done = slots[0].frame().to_vec();
            assert!(nft_engine::gso::complete(&mut done, &slots[0].offload));
            check(&done);
        }
    }
    let st = r.report(secs(2));
    assert_eq!(st.drops.get("mtu_exceeded").copied().unwrap_or(0), 0);
}

/// The MTU check is by segment: segments of 20 + 20 + 1 380 bytes do not fit the WAN's 1 400,
/// so the fast path punts the packet (`mtu_exceeded`), and the slow path refuses the packet
/// (DF) as the kernel's `ip_forward` does (`ip_exceeds_mtu` with
/// `skb_gso_validate_network_len`): ONE frag-needed of MTU 1 400 to the client, quoting the
/// super-packet as it came (its real total length 2 800, its header checksum, PSH, its
/// partial checksum, its data: 548 bytes, all that fits in 576), not a segment; the packet
/// is dropped once, nothing leaves on the WAN. Byte for byte, with `rest` 0 and not.
#[test]
fn a_gso_packet_whose_segments_exceed_the_mtu_is_refused_once_quoting_the_packet() {
    for rest in [0u16, 0x1234] {
        let mut r = router();
        open_tcp(&mut r, 50000, 443, 7000, secs(1));
        let payload = data(2 * 1380);
        let mut slots = vec![partial(&payload, 101, 7001, 1380, rest)];
        let input = slots[0].frame().to_vec();
        assert_eq!(get16(&input, 16), 20 + 20 + 2 * 1380);
        let f = one_answer(&mut r, &mut slots, secs(2), "one answer per packet");
        assert_eq!(f.egress, nft_engine::Port::Iface(LAN));
        // the frag-needed, written out: Ethernet to the client, IPv4 from the router's LAN
        // address (TOS 0xc0, TTL 64, id 0), ICMP 3/4 with the next-hop MTU, the quote
        let quote = &input[14..14 + 548];
        let mut want = icmp_to_client(548);
        want.extend_from_slice(&[3, 4, 0, 0, 0, 0]);
        want.extend_from_slice(&1400u16.to_be_bytes());
        want.extend_from_slice(quote);
        let c = nft_wire::checksum::checksum(&want[34..]);
        want[36..38].copy_from_slice(&c.to_be_bytes());
        assert_eq!(f.data, want, "rest {rest:#x}");
        check(&f.data);
        let st = r.report(secs(2));
        assert_eq!(st.drops.get("mtu_exceeded").copied(), Some(1), "{st:?}");
        assert_eq!(st.fast_path_punts.get("mtu_exceeded").copied(), Some(1));
    }
}

/// A GSO packet whose TTL runs out at the router: one time exceeded for the packet, quoting
/// it with its real length, not one per segment (`ip_forward` answers the super-packet before
/// anything cuts it).
#[test]
fn a_gso_packet_whose_ttl_runs_out_gets_one_time_exceeded() {
    let mut r = router();
    open_tcp(&mut r, 50000, 443, 7000, secs(1));
    let payload = data(3 * 1000);
    let mut slots = vec![partial(&payload, 101, 7001, 1000, 0)];
    {
        let f = slots[0].frame_mut();
        f[22] = 1;
        f[24..26].copy_from_slice(&[0, 0]);
        let c = nft_wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
    let input = slots[0].frame().to_vec();
    let frame = one_answer(&mut r, &mut slots, secs(2), "one answer per packet");
    let f = &frame.data;
    let m = check(f);
    let l4 = m.l4_offset.unwrap();
    assert_eq!(f[l4..l4 + 2], [11, 0], "time exceeded in transit");
    // the quote: the super-packet's own header (total length 3 040, TTL 1) and what follows
    assert_eq!(get16(&input, 16), 20 + 20 + 3000);
    assert_eq!(f[l4 + 8..], input[14..14 + 548]);
    let st = r.report(secs(2));
    assert_eq!(st.drops.get("ttl_exceeded").copied(), Some(1), "{st:?}");
}

/// Without flow offload every packet takes the slow path, which gets a super-packet's
/// segments, as the kernel's software GSO cuts them: 3 500 bytes by 1 000 are four segments
/// (1 000, 1 000, 1 000, 500), each masqueraded with a complete checksum, its own sequence
/// number and IP id, PSH on the last only; their payloads put together are the original.
#[test]
fn the_slow_path_gets_the_segments_of_a_gso_packet() {
    let cfg = Config {
        offload: false,
        ..Config::default()
    };
    let mut r = router_with(TOPOLOGY, RULES, cfg);
    let sport = open_tcp(&mut r, 50000, 443, 7000, secs(1));
    let payload = data(3500);
    let mut slots = vec![partial(&payload, 101, 7001, 1000, 0)];
    let id0 = get16(slots[0].frame(), 18);
    let mut sent = vec![];
    r.process_slots_offloaded(&mut slots, secs(2), &mut sent);
    assert_eq!(sent.len(), 4, "{sent:?}");
    let mut got = vec![];
    for (i, s) in sent.iter().enumerate() {
        let Sent::Frame(f) = s else { panic!("{s:?}") };
        assert_eq!(f.egress, nft_engine::Port::Iface(WAN));
        let m = check(&f.data);
        assert_eq!(m.src_addr, Some(v4(ROUTER_WAN)));
        assert_eq!(m.ports, Some((sport, 443)));
        let l4 = m.l4_offset.unwrap();
        let seq = u32::from_be_bytes(f.data[l4 + 4..l4 + 8].try_into().unwrap());
        assert_eq!(seq, 101 + 1000 * i as u32);
        assert_eq!(get16(&f.data, 18), id0.wrapping_add(i as u16));
        let psh = f.data[l4 + 13] & 0x08 != 0;
        assert_eq!(psh, i == 3, "PSH on the last segment only");
        got.extend_from_slice(&f.data[l4 + 20..m.l3_end]);
    }
    assert_eq!(got, payload);
    assert!(parse_frame(slots[0].frame()).is_ok() || slots[0].is_empty());
}

/// A plain frame with a partial checksum (a locally made ACK): forwarded by the fast path
/// with its partial checksum moved by the address, as the kernel moves it; through the slow
/// path (no offload), completed, so that it verifies.
#[test]
fn a_partial_checksum_without_gso_stays_partial_on_the_fast_path_and_is_completed_on_the_slow() {
    let mut r = router();
    let sport = open_tcp(&mut r, 50000, 443, 7000, secs(1));
    let mut slots = vec![partial(b"", 101, 7001, 0, 0)];
    let input = slots[0].frame().to_vec();
    let mut sent = vec![];
    r.process_slots_offloaded(&mut slots, secs(2), &mut sent);
    assert_eq!(sent, vec![Sent::Slots { start: 0, end: 1 }]);
    assert_eq!(slots[0].egress(), Some(WAN as u16));
    let f = slots[0].frame();
    assert_eq!(get16(f, 34), sport);
    assert_eq!(
        get16(f, TCP_CSUM),
        kernel_partial_update(get16(&input, TCP_CSUM), CLIENT, ROUTER_WAN)
    );

    let cfg = Config {
        offload: false,
        ..Config::default()
    };
    let mut r = router_with(TOPOLOGY, RULES, cfg);
    open_tcp(&mut r, 50000, 443, 7000, secs(1));
    let mut slots = vec![partial(b"hello", 101, 7001, 0, 0)];
    let mut sent = vec![];
    r.process_slots_offloaded(&mut slots, secs(2), &mut sent);
    let [Sent::Frame(f)] = &sent[..] else {
        panic!("{sent:?}")
    };
    let m = check(&f.data);
    assert_eq!(&f.data[m.l3_end - 5..m.l3_end], b"hello");
}

/// The test topology with the WAN as VLAN 5 over a port `eth1` (with the WAN's MAC).
fn vlan_wan_topology() -> String {
    let topo = TOPOLOGY.replace(
        "[[interface]]\nname = \"wan\"\nmac = \"02:00:00:00:02:01\"\n",
        "[[interface]]\nname = \"eth1\"\nmac = \"02:00:00:00:02:01\"\n\n\
         [[interface]]\nname = \"wan\"\nmac = \"02:00:00:00:02:01\"\nvlan = { parent = \"eth1\", id = 5 }\n",
    );
    assert_ne!(topo, TOPOLOGY);
    topo
}

/// The WAN as VLAN 5 over a port: the forwarded super-packet gets the tag pushed in front,
/// and its partial checksum's start moves with the transport header (34 to 38), the field
/// there the rewritten packet's pseudo-header sum.
#[test]
fn a_gso_packet_leaving_on_a_vlan_has_its_checksum_start_moved() {
    let topo = vlan_wan_topology();
    let mut r = router_with(&topo, RULES, Config::default());
    let tag = |mut f: Vec<u8>| {
        f.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
        f
    };
    let out = send(
        &mut r,
        LAN,
        lan_tcp(50000, 443, 100, Tcp::Syn, b""),
        secs(1),
    );
    let syn = out[0].data.clone();
    assert_eq!(syn[12..16], [0x81, 0x00, 0x00, 0x05], "tagged out");
    let sport = u16::from_be_bytes([syn[38], syn[39]]);
    let synack = tag(wan_tcp(443, sport, 7000, Tcp::SynAck(101), b""));
    let out = send(&mut r, WAN, synack, secs(1));
    assert_eq!(out.len(), 1, "{:?}", r.counters().drop_map());
    assert_eq!(out[0].egress, nft_engine::Port::Iface(LAN), "{out:?}");
    let out = send(
        &mut r,
        LAN,
        lan_tcp(50000, 443, 101, Tcp::Ack(7001), b""),
        secs(1),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(r.report(secs(1)).flows_offloaded, 1);
    let payload = data(4 * 1300);
    let mut slots = vec![partial(&payload, 101, 7001, 1300, 0)];
    let input = slots[0].frame().to_vec();
    let mut sent = vec![];
    r.process_slots_offloaded(&mut slots, secs(2), &mut sent);
    assert_eq!(sent, vec![Sent::Slots { start: 0, end: 1 }]);
    let out = slots[0].frame();
    assert_eq!(out.len(), input.len() + 4);
    assert_eq!(out[12..16], [0x81, 0x00, 0x00, 0x05]);
    assert_eq!(slots[0].offload.csum_start, 38);
    let l4_len = (input.len() - 34) as u32;
    let p = pseudo_header(&v4(ROUTER_WAN), &v4(REMOTE), IpProtocol::Tcp, l4_len);
    assert_eq!(get16(out, 38 + 16), p);
    assert_eq!(
        get16(out, 38 + 16),
        kernel_partial_update(get16(&input, TCP_CSUM), CLIENT, ROUTER_WAN)
    );
    // the rest of the packet as it came, but for the ports and addresses
    assert_eq!(out[38 + 20..], input[34 + 20..]);
}

/// IPv6 (`ip6_forward` -> `ip6_pkt_too_big`): a UDP GSO packet (`GSO_UDP_L4`) of 2 x 1 380
/// bytes from the LAN, whose segments (40 + 8 + 1 380) do not fit the WAN's 1 400, gets ONE
/// packet-too-big of MTU 1 400, quoting the super-packet as it came (payload length and UDP
/// length 2 768, its partial checksum, its data) as far as 1 280 bytes allow (1 232), and is
/// dropped once.
#[test]
fn an_ipv6_gso_packet_whose_segments_exceed_the_mtu_gets_one_packet_too_big() {
    let mut r = router();
    let payload = data(2 * 1380);
    let mut f = udp6(
        CLIENT_MAC, LAN_MAC, CLIENT6, REMOTE6, 5000, 4000, 64, &payload,
    );
    let l4_len = 8 + payload.len();
    let p = pseudo_header(
        &IpAddr::from(CLIENT6),
        &IpAddr::from(REMOTE6),
        IpProtocol::Udp,
        l4_len as u32,
    );
    f[14 + 40 + 6..14 + 40 + 8].copy_from_slice(&p.to_be_bytes());
    assert_eq!(get16(&f, 18), l4_len as u16);
    let mut slots = vec![lan_slot(&f, 1380, 54)];
    let answer = one_answer(&mut r, &mut slots, secs(1), "one answer per packet");
    let quote = &f[14..14 + 1232];
    let mut want = vec![];
    want.extend_from_slice(&CLIENT_MAC);
    want.extend_from_slice(&LAN_MAC);
    want.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    want.extend_from_slice(&(8u16 + 1232).to_be_bytes());
    want.extend_from_slice(&[58, 64]);
    want.extend_from_slice(&ROUTER_LAN6);
    want.extend_from_slice(&CLIENT6);
    want.extend_from_slice(&[2, 0, 0, 0, 0, 0]);
    want.extend_from_slice(&1400u16.to_be_bytes());
    want.extend_from_slice(quote);
    let p = pseudo_header(
        &IpAddr::from(ROUTER_LAN6),
        &IpAddr::from(CLIENT6),
        IpProtocol::Icmpv6,
        (8 + 1232) as u32,
    );
    let c = !fold(u64::from(p) + u64::from(nft_wire::checksum::sum(&want[54..])));
    want[56..58].copy_from_slice(&c.to_be_bytes());
    assert_eq!(answer.data, want);
    assert_eq!(answer.egress, nft_engine::Port::Iface(LAN));
    check(&answer.data);
    let st = r.report(secs(1));
    assert_eq!(st.drops.get("mtu_exceeded").copied(), Some(1), "{st:?}");
}

/// Rules for the kernel's one-skb-one-packet checks: `reject` both ways, a named rule
/// counter on the forward path, a flowtable with `counter` (the fast path counts on the
/// connection), masquerade on the WAN.
const ONCE_RULES: &str = r#"
table inet t {
	counter fwd {}
	flowtable ft { hook ingress priority 0; devices = { "lan", "wan" }; counter; }
	chain forward {
		type filter hook forward priority filter; policy accept;
		tcp dport 23 reject with tcp reset
		udp dport 7 reject with icmpx port-unreachable
		meta l4proto { tcp, udp } flow add @ft
		counter name "fwd"
	}
	chain srcnat {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" meta l4proto { tcp, udp } masquerade to :40000-40999
	}
}
"#;

fn once_router(offload: bool) -> nft_engine::Router {
    let mut cfg = Config {
        offload,
        ..Config::default()
    };
    cfg.conntrack.accounting = true;
    router_with(TOPOLOGY, ONCE_RULES, cfg)
}

/// The one frame the slow path sends for the packets in `slots` at `now`, asserted to be one
/// (`what` the assertion's message).
fn one_answer(
    r: &mut nft_engine::Router,
    slots: &mut [FrameSlot],
    now: std::time::Duration,
    what: &str,
) -> nft_engine::router::TxFrame {
    let mut sent = vec![];
    r.process_slots_offloaded(slots, now, &mut sent);
    let frames = slow_path_frames(&sent);
    assert_eq!(frames.len(), 1, "{what}: {frames:?}");
    frames[0].clone()
}

/// A TCP super-packet from the client (IPv4 or IPv6) to `dport` with TCP flags `flags`, its
/// checksum partial (the pseudo-header sum), GSO by `gso_size`.
fn gso_tcp(
    v6: bool,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
    gso_size: u16,
) -> FrameSlot {
    let b = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, LAN_MAC);
    let b = if v6 {
        b.ipv6(CLIENT6, REMOTE6, 64)
    } else {
        b.ipv4(CLIENT, REMOTE, 64)
    };
    let mut f = vec![];
    b.tcp(50000, dport, seq, 64240)
        .ack(ack)
        .write(&mut f, payload)
        .unwrap();
    let l4 = if v6 { 54 } else { 34 };
    f[l4 + 13] = flags;
    let (s, d) = if v6 {
        (IpAddr::from(CLIENT6), IpAddr::from(REMOTE6))
    } else {
        (v4(CLIENT), v4(REMOTE))
    };
    let p = pseudo_header(&s, &d, IpProtocol::Tcp, (f.len() - l4) as u32);
    f[l4 + 16..l4 + 18].copy_from_slice(&p.to_be_bytes());
    lan_slot(&f, gso_size, l4 as u16)
}

/// The reset the kernel's `nf_send_reset`/`nf_send_reset6` sends to the client for its
/// segment from port 50000 to `dport`, written out: IPv4 (id 0, DF, TTL 64) or IPv6 (hop
/// limit 64) from the remote host, TCP from `dport` with `seq`, `ack` and `flags`, a
/// 20-byte header, window 0.
fn kernel_reset(v6: bool, dport: u16, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    let mut tcp = vec![];
    tcp.extend_from_slice(&dport.to_be_bytes());
    tcp.extend_from_slice(&50000u16.to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.extend_from_slice(&[0x50, flags, 0, 0, 0, 0, 0, 0]);
    let (s, d) = if v6 {
        (IpAddr::from(REMOTE6), IpAddr::from(CLIENT6))
    } else {
        (v4(REMOTE), v4(CLIENT))
    };
    let p = pseudo_header(&s, &d, IpProtocol::Tcp, 20);
    let c = !fold(u64::from(p) + u64::from(nft_wire::checksum::sum(&tcp)));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![];
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&LAN_MAC);
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 20, 6, 64]);
        f.extend_from_slice(&REMOTE6);
        f.extend_from_slice(&CLIENT6);
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&REMOTE);
        f.extend_from_slice(&CLIENT);
        let c = nft_wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
    f.extend_from_slice(&tcp);
    f
}

/// `reject with tcp reset` answers a super-packet of ten segments ONCE, as the kernel
/// answers the skb (`nf_send_reset`, `nf_send_reset6`): with its ACK number as sequence when
/// it carries an ACK; without one, sequence 0 and an ACK of the sequence plus the WHOLE
/// payload (10 000 bytes, not one segment's 1 000). The packet is dropped once; nothing
/// leaves on the WAN. IPv4 and IPv6, byte for byte.
#[test]
fn reject_with_tcp_reset_answers_a_gso_packet_once_for_its_whole_length() {
    for v6 in [false, true] {
        let mut r = once_router(false);
        let payload = data(10 * 1000);
        let what = format!("one reset per packet (v6 {v6})");
        // PSH|ACK: the reset's sequence is the packet's ACK number
        let mut slots = vec![gso_tcp(v6, 23, 1000, 5555, 0x18, &payload, 1000)];
        let f = one_answer(&mut r, &mut slots, secs(1), &what);
        assert_eq!(f.egress, nft_engine::Port::Iface(LAN));
        assert_eq!(f.data, kernel_reset(v6, 23, 5555, 0, 0x04), "v6 {v6}");
        check(&f.data);
        // PSH alone: the reset acknowledges everything the packet sent
        let mut slots = vec![gso_tcp(v6, 23, 1000, 0, 0x08, &payload, 1000)];
        let f = one_answer(&mut r, &mut slots, secs(1), &what);
        assert_eq!(
            f.data,
            kernel_reset(v6, 23, 0, 1000 + 10_000, 0x14),
            "v6 {v6}"
        );
        let st = r.report(secs(1));
        assert_eq!(st.tcp_resets_sent, 2, "{st:?}");
        assert_eq!(st.drops.get("rule_drop").copied(), Some(2), "{st:?}");
    }
}

/// `reject with icmpx port-unreachable` answers a UDP super-packet (`GSO_UDP_L4`, ten
/// segments) ONCE: one port unreachable from the router's LAN address quoting the packet as
/// the forward hook has it (its IP total length 10 028, TTL 63, UDP length 10 008, its
/// partial checksum, its data; 548 bytes, all that fits in 576), as the kernel's
/// `nf_send_unreach` -> `icmp_send` quotes the skb.
#[test]
fn reject_with_icmp_answers_a_udp_gso_packet_once_quoting_it() {
    let mut r = once_router(false);
    let payload = data(10 * 1000);
    let mut f = lan_udp(REMOTE, 5000, 7, 64, &payload);
    let p = pseudo_header(&v4(CLIENT), &v4(REMOTE), IpProtocol::Udp, 8 + 10_000);
    f[34 + 6..34 + 8].copy_from_slice(&p.to_be_bytes());
    assert_eq!(get16(&f, 16), 20 + 8 + 10_000);
    let mut slots = vec![lan_slot(&f, 1000, 34)];
    let answer = one_answer(&mut r, &mut slots, secs(1), "one answer per packet");
    let mut want = icmp_to_client(548);
    want.extend_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]);
    // the packet as the forward hook sees it: its TTL already 63 (`ip_forward`)
    let mut quote = f[14..14 + 548].to_vec();
    quote[8] = 63;
    quote[10..12].copy_from_slice(&[0, 0]);
    let c = nft_wire::checksum::checksum(&quote[..20]);
    quote[10..12].copy_from_slice(&c.to_be_bytes());
    want.extend_from_slice(&quote);
    let c = nft_wire::checksum::checksum(&want[34..]);
    want[36..38].copy_from_slice(&c.to_be_bytes());
    assert_eq!(answer.data, want);
    assert_eq!(answer.egress, nft_engine::Port::Iface(LAN));
    let st = r.report(secs(1));
    assert_eq!(st.drops.get("rule_drop").copied(), Some(1), "{st:?}");
}

/// The client's data on an open connection: a super-packet of `n` segments of 1 000 bytes,
/// from `seq`.
fn client_data(seq: u32, n: usize) -> FrameSlot {
    gso_tcp(false, 443, seq, 7001, 0x18, &data(n * 1000), 1000)
}

/// Runs `slots` through the router; the frames that left on the WAN (whole or segments).
fn wan_frames(
    r: &mut nft_engine::Router,
    mut slots: Vec<FrameSlot>,
    now: std::time::Duration,
) -> Vec<Vec<u8>> {
    let mut sent = vec![];
    r.process_slots_offloaded(&mut slots, now, &mut sent);
    let mut out = vec![];
    for s in &sent {
        match s {
            Sent::Frame(f) if f.egress == nft_engine::Port::Iface(WAN) => out.push(f.data.clone()),
            Sent::Frame(_) => {}
            Sent::Slots { start, end } => {
                for s in &slots[*start..*end] {
                    if s.egress() == Some(WAN as u16) {
                        out.push(s.frame().to_vec());
                    }
                }
            }
        }
    }
    out
}

/// The client's connection to port 443 and its counters, as `conntrack -L -o extended`
/// would count them (both directions).
fn conn_counters(r: &mut nft_engine::Router, now: std::time::Duration) -> [(u64, u64); 2] {
    r.sync_offload(now);
    let (_, c) = r
        .conntrack()
        .iter()
        .find(|(_, c)| c.original().to_string().contains("dport=443"))
        .expect("the connection");
    let o = c.counter(nft_conntrack::Direction::Original);
    let p = c.counter(nft_conntrack::Direction::Reply);
    [(o.packets, o.bytes), (p.packets, p.bytes)]
}

/// The kernel counts a GSO skb as ONE packet of its real length (`skb->len`): the slow path
/// walks a super-packet of ten segments once, so a rule's `counter` and conntrack's
/// accounting grow by 1 packet and 10 040 bytes (20 + 20 + 10 000), not by 10 packets,
/// while the packet leaves as its ten segments (the egress gets no GSO from the slow path).
#[test]
fn the_slow_path_counts_a_gso_packet_once_with_its_whole_length() {
    let mut r = once_router(false);
    open_tcp(&mut r, 50000, 443, 7000, secs(1));
    let fwd = |r: &nft_engine::Router| {
        let i = r
            .ruleset()
            .object("t", nft_engine::rules::ObjKind::Counter, "fwd")
            .unwrap();
        r.rule_state().counters[i]
    };
    let (rule0, ct0) = (fwd(&r), conn_counters(&mut r, secs(1)));
    assert_eq!(rule0, (3, 3 * 40), "the handshake");
    assert_eq!(ct0, [(2, 80), (1, 40)], "the handshake");
    let out = wan_frames(&mut r, vec![client_data(101, 10)], secs(2));
    assert_eq!(out.len(), 10, "ten segments leave");
    for f in &out {
        check(f);
    }
    assert_eq!(fwd(&r), (3 + 1, 3 * 40 + 10_040));
    assert_eq!(conn_counters(&mut r, secs(2)), [(3, 80 + 10_040), (1, 40)]);
    let st = r.report(secs(2));
    assert_eq!(st.slow_path_packets, 3 + 1, "{st:?}");
}

/// Transparency for GSO input: the same connection and super-packets with flow offload on
/// (the fast path forwards them whole, counting each once on the connection) and off (the
/// slow path walks each once) give the same connection counters, the kernel's: one packet
/// and the whole length per super-packet.
#[test]
fn offload_on_and_off_count_gso_packets_the_same() {
    let mut got = vec![];
    for offload in [true, false] {
        let mut r = once_router(offload);
        open_tcp(&mut r, 50000, 443, 7000, secs(1));
        let mut seq = 101;
        let mut frames = 0;
        for (i, n) in [10usize, 4, 1, 7].into_iter().enumerate() {
            let out = wan_frames(&mut r, vec![client_data(seq, n)], secs(2 + i as u64));
            frames += out.len();
            seq += (n * 1000) as u32;
        }
        let c = conn_counters(&mut r, secs(6));
        assert_eq!(
            c,
            [(2 + 4, 80 + 4 * 40 + 22_000), (1, 40)],
            "offload {offload}"
        );
        // whole from the fast path, as segments from the slow one
        assert_eq!(frames, if offload { 4 } else { 22 }, "offload {offload}");
        got.push(c);
    }
    assert_eq!(got[0], got[1]);
}

/// IPv4 without DF whose segments do not fit the route (20 + 20 + 1 380 against the WAN's
/// 1 400): the kernel forwards the packet and `ip_finish_output_gso` fragments each segment.
/// Two segments leave as two fragments each, each fragment within the MTU; the segments'
/// ids one apart, their sequence numbers 101 and 1 481; the packet counted once.
#[test]
fn a_gso_packet_without_df_whose_segments_do_not_fit_leaves_as_fragmented_segments() {
    let mut r = once_router(false);
    open_tcp(&mut r, 50000, 443, 7000, secs(1));
    let mut slot = gso_tcp(false, 443, 101, 7001, 0x18, &data(2 * 1380), 1380);
    {
        let f = slot.frame_mut();
        f[20] &= !0x40; // DF off
        f[24..26].copy_from_slice(&[0, 0]);
        let c = nft_wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
    let id = get16(slot.frame(), 18);
    let out = wan_frames(&mut r, vec![slot], secs(2));
    assert_eq!(out.len(), 4, "two fragments per segment");
    for (i, f) in out.iter().enumerate() {
        let l3_len = usize::from(get16(f, 16));
        assert!(l3_len <= 1400, "{l3_len}");
        assert_eq!(get16(f, 18), id.wrapping_add(i as u16 / 2), "fragment {i}");
        let frag = get16(f, 20);
        assert_eq!(
            frag & 0x2000 != 0,
            i % 2 == 0,
            "MF on the first of each pair"
        );
        if i % 2 == 0 {
            assert_eq!(frag & 0x1fff, 0);
            let seq = u32::from_be_bytes(f[38..42].try_into().unwrap());
            assert_eq!(seq, 101 + 1380 * (i as u32 / 2));
        }
    }
    assert_eq!(
        conn_counters(&mut r, secs(2))[0],
        (3, 80 + 20 + 20 + 2 * 1380)
    );
}

/// With `Config::gso_out` (the I/O sends GSO packets whole: `run --io af_packet`), the slow
/// path hands a walked super-packet on whole, as the kernel forwards the skb: one frame with
/// its GSO size and `csum_start`, masqueraded, its partial checksum moved by the addresses
/// alone. The same connection with offload on (the fast path forwards the super-packets) and
/// off (the slow path walks them) then sends the same frames, byte for byte and offload state
/// for offload state, and counts the same on the connection.
#[test]
fn with_gso_out_the_slow_path_sends_a_gso_packet_whole_as_the_fast_path_does() {
    let mut runs = vec![];
    for offload in [true, false] {
        let mut cfg = Config {
            offload,
            gso_out: true,
            ..Config::default()
        };
        cfg.conntrack.accounting = true;
        let mut r = router_with(TOPOLOGY, ONCE_RULES, cfg);
        let sport = open_tcp(&mut r, 50000, 443, 7000, secs(1));
        let mut seq = 101;
        let mut frames = vec![];
        for (i, n) in [10usize, 4, 1, 7].into_iter().enumerate() {
            let mut slots = vec![client_data(seq, n)];
            let input = slots[0].frame().to_vec();
            let mut sent = vec![];
            r.process_slots_offloaded(&mut slots, secs(2 + i as u64), &mut sent);
            let (frame, off) = match &sent[..] {
                [Sent::Frame(f)] => {
                    assert!(!offload, "the fast path forwards from the slot");
                    assert_eq!(f.egress, nft_engine::Port::Iface(WAN));
                    (f.data.clone(), f.offload)
                }
                [Sent::Slots { start: 0, end: 1 }] => {
                    assert!(offload);
                    (slots[0].frame().to_vec(), slots[0].offload)
                }
                _ => panic!("offload {offload}: {sent:?}"),
            };
            assert_eq!(
                off,
                Offload {
                    gso_size: 1000,
                    csum_start: 34
                }
            );
            let (want, _) = masqueraded(&input, sport);
            assert_eq!(frame, want, "offload {offload}, packet {i}");
            frames.push((frame, off));
            seq += (n * 1000) as u32;
        }
        let c = conn_counters(&mut r, secs(6));
        assert_eq!(
            c,
            [(2 + 4, 80 + 4 * 40 + 22_000), (1, 40)],
            "offload {offload}"
        );
        runs.push(frames);
    }
    assert_eq!(runs[0], runs[1]);
}

/// `gso_out` and a VLAN WAN: the walked super-packet leaves whole with the tag pushed in
/// front, its `csum_start` at 38, the field there the kernel's value; with tracing, the
/// packet is one trace id, its length the whole frame's (14 + 20 + 20 + 4 000).
#[test]
fn a_walked_gso_packet_leaving_whole_on_a_vlan_has_its_checksum_start_moved() {
    let topo = vlan_wan_topology();
    let cfg = Config {
        offload: false,
        gso_out: true,
        trace: true,
        ..Config::default()
    };
    let mut r = router_with(&topo, ONCE_RULES, cfg);
    let out = send(
        &mut r,
        LAN,
        lan_tcp(50000, 443, 100, Tcp::Syn, b""),
        secs(1),
    );
    let sport = u16::from_be_bytes([out[0].data[38], out[0].data[39]]);
    let mut synack = wan_tcp(443, sport, 7000, Tcp::SynAck(101), b"");
    synack.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    assert_eq!(send(&mut r, WAN, synack, secs(1)).len(), 1);
    let _ = r.take_trace();
    let mut slots = vec![client_data(101, 4)];
    let input = slots[0].frame().to_vec();
    let mut sent = vec![];
    r.process_slots_offloaded(&mut slots, secs(2), &mut sent);
    let [Sent::Frame(f)] = &sent[..] else {
        panic!("{sent:?}")
    };
    // (the VLAN interface "wan", after its parent)
    assert_eq!(f.egress, nft_engine::Port::Iface(2));
    assert_eq!(f.data.len(), input.len() + 4);
    assert_eq!(f.data[12..16], [0x81, 0x00, 0x00, 0x05]);
    assert_eq!(
        f.offload,
        Offload {
            gso_size: 1000,
            csum_start: 38
        }
    );
    assert_eq!(
        get16(&f.data, 38 + 16),
        kernel_partial_update(get16(&input, TCP_CSUM), CLIENT, ROUTER_WAN)
    );
    assert_eq!(f.data[38 + 20..], input[34 + 20..]);
    let trace = r.take_trace();
    let ids: std::collections::BTreeSet<&str> =
        trace.iter().filter_map(|l| l.split(' ').nth(2)).collect();
    assert_eq!(ids.len(), 1, "{trace:#?}");
    assert!(
        trace[0].contains("length 4054"),
        "the whole frame: {trace:#?}"
    );
}

/// `dup` of a GSO packet: the copy keeps its GSO state (`pskb_copy`), so it leaves as its
/// segments where they fit (`nf_dup_ipv4` -> `ip_local_out` -> `ip_finish_output_gso`), as
/// the packet itself does; and netdev's `dup to DEV` hands it to the device, which segments
/// it (`dev_queue_xmit`). One `dup` each, four segments each.
#[test]
fn a_dup_of_a_gso_packet_leaves_as_its_segments() {
    for rule in [
        "chain copies { type filter hook forward priority 0; tcp dport 443 meta length > 1000 dup to 192.168.1.20 device 1 }",
        "chain ing { type filter hook ingress device \"lan\" priority 0; tcp dport 443 meta length > 1000 dup to 2 }",
    ] {
        let family = if rule.contains("ingress") { "netdev" } else { "ip" };
        let rules = format!("{ONCE_RULES}\ntable {family} d {{ {rule} }}\n");
        let cfg = Config {
            offload: false,
            ..Config::default()
        };
        let mut r = router_with(TOPOLOGY, &rules, cfg);
        open_tcp(&mut r, 50000, 443, 7000, secs(1));
        let mut slots = vec![client_data(101, 4)];
        let mut sent = vec![];
        r.process_slots_offloaded(&mut slots, secs(2), &mut sent);
        let frames = slow_path_frames(&sent);
        let to = |p: usize| {
            frames
                .iter()
                .filter(|f| f.egress == nft_engine::Port::Iface(p))
                .count()
        };
        if family == "ip" {
            // the packet to the WAN, the copy to the server on the LAN
            assert_eq!((to(WAN), to(LAN)), (4, 4), "{rule}: {frames:?}");
            for f in frames.iter().filter(|f| f.egress == nft_engine::Port::Iface(LAN)) {
                assert_eq!(f.data[..6], SERVER_MAC);
                check(&f.data);
            }
        } else {
            // the frame as it came, and the packet routed: both to the WAN
            assert_eq!(to(WAN), 8, "{rule}: {frames:?}");
            for f in &frames {
                check(&f.data);
            }
        }
        let st = r.report(secs(2));
        assert_eq!(st.dup_packets, 1, "{rule}: {st:?}");
        assert!(st.drops.is_empty(), "{rule}: {st:?}");
    }
}

/// With `gso_out`, a super-packet whose next hop is being resolved waits whole, as in the
/// kernel's neighbour queue, and leaves whole with its GSO state once the MAC is known.
#[test]
fn a_gso_packet_held_for_its_neighbour_leaves_whole() {
    let cfg = Config {
        offload: false,
        gso_out: true,
        resolve_neighbours: true,
        ..Config::default()
    };
    let mut r = router_with(TOPOLOGY, ONCE_RULES, cfg);
    open_tcp(&mut r, 50000, 443, 7000, secs(1));
    let gw: IpAddr = v4(GW);
    r.set_neighbour(WAN, gw, None);
    let mut slots = vec![client_data(101, 4)];
    let input = slots[0].frame().to_vec();
    let mut sent = vec![];
    r.process_slots_offloaded(&mut slots, secs(2), &mut sent);
    assert!(sent.is_empty(), "{sent:?}");
    assert_eq!(r.held(), 1);
    r.set_neighbour(WAN, gw, Some(GW_MAC));
    let mut sent = vec![];
    r.process_slots::<Vec<u8>>(&mut [], secs(2), &mut sent);
    // (an empty burst's run of forwarded slots is empty)
    let frames: Vec<_> = sent
        .iter()
        .filter_map(|s| match s {
            Sent::Frame(f) => Some(f),
            Sent::Slots { start, end } => {
                assert_eq!(start, end);
                None
            }
        })
        .collect();
    let [f] = &frames[..] else { panic!("{sent:?}") };
    assert_eq!(f.egress, nft_engine::Port::Iface(WAN));
    assert_eq!(f.data[..6], GW_MAC);
    assert_eq!(f.data.len(), input.len());
    assert_eq!(
        f.offload,
        Offload {
            gso_size: 1000,
            csum_start: 34
        }
    );
    assert_eq!(f.data[54..], input[54..]);
    assert_eq!(r.held(), 0);
}

/// netdev `fwd to` and `dup to` of a GSO packet that fits in one frame: it leaves as a
/// plain frame with its checksum completed, not partial.
#[test]
fn netdev_fwd_of_a_small_gso_packet_has_a_complete_checksum() {
    for rule in [
        "chain ing { type filter hook ingress device \"lan\" priority 0; tcp dport 443 meta length > 600 fwd to 2 }",
        "chain ing { type filter hook ingress device \"lan\" priority 0; tcp dport 443 meta length > 600 dup to 2 }",
    ] {
        let rules = format!("{ONCE_RULES}\ntable netdev d {{ {rule} }}\n");
        let cfg = Config { offload: false, ..Config::default() };
        let mut r = router_with(TOPOLOGY, &rules, cfg);
        open_tcp(&mut r, 50000, 443, 7000, secs(1));
        let mut slots = vec![gso_tcp(false, 443, 101, 7001, 0x18, &data(1000), 500)];
        let mut sent = vec![];
        r.process_slots_offloaded(&mut slots, secs(2), &mut sent);
        let frames = slow_path_frames(&sent);
        assert!(!frames.is_empty(), "{rule}");
        for f in &frames {
            assert!(f.offload.is_plain(), "{rule}: {:?}", f.offload);
            check(&f.data);
        }
    }
}

/// netdev `fwd to` of a GSO packet to a PPPoE device: each segment carries its own PPPoE
/// length.
#[test]
fn netdev_fwd_gso_to_pppoe_segments_have_their_own_pppoe_length() {
    let topo = format!("{TOPOLOGY}\n[[interface]]\nname = \"ppp\"\nmac = \"02:00:00:00:02:01\"\npppoe = {{ parent = \"wan\", session = 4660, peer_mac = \"02:00:00:00:02:fe\" }}\n");
    let rules = format!("{ONCE_RULES}\ntable netdev d {{ chain ing {{ type filter hook ingress device \"lan\" priority 0; tcp dport 443 fwd to 3 }} }}\n");
    let mut r = router_with(
        &topo,
        &rules,
        Config {
            offload: false,
            ..Config::default()
        },
    );
    let mut slots = vec![gso_tcp(false, 443, 101, 7001, 0x18, &data(4000), 1000)];
    let mut sent = vec![];
    r.process_slots_offloaded(&mut slots, secs(2), &mut sent);
    let frames = slow_path_frames(&sent);
    let st = r.report(secs(2));
    assert!(frames.len() > 1, "{frames:?} {st:?}");
    for f in &frames {
        assert_eq!(f.data[12..14], [0x88, 0x64]);
        assert_eq!(
            usize::from(get16(&f.data, 18)),
            f.data.len() - 20,
            "PPPoE length"
        );
        check(&f.data);
    }
}

/// With `gso_out`, netdev `fwd to` sends a GSO packet whose segments fit the device whole,
/// as it came, with its offload (`csum_start` behind the device's link header): on an
/// Ethernet device the input bytes, on a PPPoE one in a PPPoE header of its whole length.
#[test]
fn with_gso_out_netdev_fwd_sends_a_gso_packet_whole_with_its_offload() {
    let topo = format!("{TOPOLOGY}\n[[interface]]\nname = \"ppp\"\nmac = \"02:00:00:00:02:01\"\npppoe = {{ parent = \"wan\", session = 4660, peer_mac = \"02:00:00:00:02:fe\" }}\n");
    for (dev, l4) in [(2u16, 34u16), (3, 42)] {
        let rules = format!("{ONCE_RULES}\ntable netdev d {{ chain ing {{ type filter hook ingress device \"lan\" priority 0; tcp dport 443 fwd to {dev} }} }}\n");
        let cfg = Config {
            offload: false,
            gso_out: true,
            ..Config::default()
        };
        let mut r = router_with(&topo, &rules, cfg);
        let mut slots = vec![gso_tcp(false, 443, 101, 7001, 0x18, &data(4000), 1000)];
        let input = slots[0].frame().to_vec();
        let mut sent = vec![];
        r.process_slots_offloaded(&mut slots, secs(2), &mut sent);
        let frames = slow_path_frames(&sent);
        assert_eq!(frames.len(), 1, "{frames:?} {:?}", r.counters().drop_map());
        let f = frames[0];
        assert_eq!(f.egress, nft_engine::Port::Iface(usize::from(dev) - 1));
        assert_eq!(
            f.offload,
            Offload {
                gso_size: 1000,
                csum_start: l4
            }
        );
        if dev == 2 {
            assert_eq!(f.data, input);
        } else {
            assert_eq!(f.data[12..14], [0x88, 0x64]);
            assert_eq!(usize::from(get16(&f.data, 18)), f.data.len() - 20);
            assert_eq!(f.data[22..], input[14..]);
        }
    }
}
