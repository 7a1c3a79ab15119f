//! Slow-path kernel behaviour: `meta iifkind`/`oifkind` from the topology's link kinds, and
//! SCTP associations tracked and NATed through the router (ports moved, CRC32c recomputed).

mod common;
use common::*;

use nft_engine::{Config, Port, Router};

fn counter(r: &Router, name: &str) -> u64 {
    named_counter(r, "t", name).0
}

/// The default test topology with link kinds: the LAN a veth, the WAN a physical NIC (none).
fn kinds_topology() -> String {
    TOPOLOGY.replacen("name = \"lan\"\n", "name = \"lan\"\nkind = \"veth\"\n", 1)
}

const KIND_RULES: &str = r#"
table inet t {
	counter lan_veth {}
	counter to_veth {}
	counter wan_kind {}
	counter no_kind {}
	chain fw {
		type filter hook forward priority filter; policy accept;
		meta iifkind "veth" counter name "lan_veth"
		meta oifkind "veth" counter name "to_veth"
		meta iifkind "vlan" counter name "wan_kind"
		meta iifkind != "veth" counter name "no_kind"
	}
}
"#;

#[test]
fn iifkind_and_oifkind_read_the_topology() {
    let mut r = router_with(&kinds_topology(), KIND_RULES, Config::default());
    let t = secs(1);
    let f = lan_udp(REMOTE, 4000, 53, 64, b"q");
    one(&mut r, LAN, f, t, Port::Iface(WAN));
    assert_eq!(counter(&r, "lan_veth"), 1);
    // the WAN has no kind: the match breaks, so neither `"vlan"` nor `!= "veth"` matches
    assert_eq!(counter(&r, "to_veth"), 0);
    let back = udp4(GW_MAC, WAN_MAC, REMOTE, CLIENT, 53, 4000, 64, b"a");
    one(&mut r, WAN, back, t, Port::Iface(LAN));
    assert_eq!(counter(&r, "to_veth"), 1);
    assert_eq!(counter(&r, "lan_veth"), 1);
    assert_eq!(counter(&r, "wan_kind"), 0);
    assert_eq!(counter(&r, "no_kind"), 0);
}

#[test]
fn link_kind_defaults_follow_the_encapsulation() {
    let topo = nft_engine::topology::Topology::from_toml(
        r#"
[[interface]]
name = "eth1"
mac = "02:00:00:00:02:01"

[[interface]]
name = "wan.10"
mac = "02:00:00:00:02:01"
vlan = { parent = "eth1", id = 10 }

[[interface]]
name = "pppoe-wan"
mac = "02:00:00:00:02:01"
pppoe = { parent = "eth1", session = 4660, peer_mac = "02:00:00:00:02:fe" }

[[interface]]
name = "br-lan"
mac = "02:00:00:00:01:01"
kind = "bridge"
"#,
    )
    .unwrap();
    let kinds: Vec<&str> = topo.interfaces.iter().map(|i| i.kind.as_str()).collect();
    assert_eq!(kinds, ["", "vlan", "ppp", "bridge"]);
    let long = nft_engine::topology::Topology::from_toml(
        "[[interface]]\nname = \"x\"\nmac = \"02:00:00:00:00:01\"\nkind = \"abcdefghijklmnop\"\n",
    );
    assert!(long.is_err());
}

/// An SCTP packet from `src` to `dst` with one chunk, its CRC32c right.
#[allow(clippy::too_many_arguments)]
fn sctp4(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sp: u16,
    dp: u16,
    vtag: u32,
    chunk: &[u8],
) -> Vec<u8> {
    let mut l4 = vec![];
    l4.extend_from_slice(&sp.to_be_bytes());
    l4.extend_from_slice(&dp.to_be_bytes());
    l4.extend_from_slice(&vtag.to_be_bytes());
    l4.extend_from_slice(&[0; 4]);
    l4.extend_from_slice(chunk);
    nft_wire::checksum::fill_sctp(&mut l4);
    let mut f = vec![];
    etherparse::PacketBuilder::ethernet2(smac, dmac)
        .ipv4(src, dst, 64)
        .write(&mut f, etherparse::IpNumber(132), &l4)
        .unwrap();
    f
}

/// An SCTP packet of the test's association from the client (port 5000 to the remote's 6000).
fn from_client(vtag: u32, chunk: &[u8]) -> Vec<u8> {
    sctp4(CLIENT_MAC, LAN_MAC, CLIENT, REMOTE, 5000, 6000, vtag, chunk)
}

/// An SCTP packet of the test's association from the remote to the router's NAT port 7777.
fn from_remote(vtag: u32, chunk: &[u8]) -> Vec<u8> {
    sctp4(GW_MAC, WAN_MAC, REMOTE, ROUTER_WAN, 6000, 7777, vtag, chunk)
}

fn init_chunk(ty: u8, tag: u32) -> Vec<u8> {
    let mut c = vec![ty, 0, 0, 20];
    c.extend_from_slice(&tag.to_be_bytes());
    c.extend_from_slice(&[0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 0, 1]);
    c
}

const SCTP_RULES: &str = r#"
table inet t {
	counter invalid {}
	chain fw {
		type filter hook forward priority filter; policy drop;
		ct state invalid counter name "invalid" drop
		ct state established accept
		iifname "lan" oifname "wan" accept
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" snat ip to 198.18.0.2:7777
	}
}
"#;

#[test]
fn sctp_association_is_tracked_and_natted_through_the_router() {
    let mut r = router_with(TOPOLOGY, SCTP_RULES, Config::default());
    let t = secs(1);
    let init = from_client(0, &init_chunk(1, 0x1111));
    let out = one(&mut r, LAN, init, t, Port::Iface(WAN));
    let m = check(&out);
    let l4 = &out[m.l4_offset.unwrap()..];
    assert_eq!(m.src_addr, Some(ROUTER_WAN.into()));
    assert_eq!(&l4[0..4], &[0x1e, 0x61, 0x17, 0x70], "ports 7777 -> 6000");
    assert!(nft_wire::checksum::verify_sctp(l4), "CRC32c recomputed");
    // the answer comes back to the client's port, CRC right
    let ack = from_remote(0x1111, &init_chunk(2, 0x2222));
    let out = one(&mut r, WAN, ack, t, Port::Iface(LAN));
    let m = check(&out);
    let l4 = &out[m.l4_offset.unwrap()..];
    assert_eq!(m.dst_addr, Some(CLIENT.into()));
    assert_eq!(&l4[0..4], &[0x17, 0x70, 0x13, 0x88]);
    assert!(nft_wire::checksum::verify_sctp(l4));
    // cookie echo and ack: established and assured
    let echo = from_client(0x2222, &[10, 0, 0, 8, 1, 2, 3, 4]);
    one(&mut r, LAN, echo, t, Port::Iface(WAN));
    let cack = from_remote(0x1111, &[11, 0, 0, 4]);
    one(&mut r, WAN, cack, t, Port::Iface(LAN));
    let list = r.conntrack().list(t);
    assert_eq!(
        list,
        ["sctp     132 210 ESTABLISHED src=192.168.1.10 dst=203.0.113.5 sport=5000 dport=6000 src=203.0.113.5 dst=198.18.0.2 sport=6000 dport=7777 [ASSURED] mark=0 use=1"]
    );
    // data with the wrong tag is invalid, dropped by the rule
    let wrong = from_client(
        0x1111,
        &[0, 3, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
    );
    none(&mut r, LAN, wrong, t);
    assert_eq!(counter(&r, "invalid"), 1);
    // a bad CRC likewise
    let mut bad = from_client(
        0x2222,
        &[0, 3, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
    );
    let n = bad.len();
    bad[n - 1] ^= 1;
    none(&mut r, LAN, bad, t);
    assert_eq!(counter(&r, "invalid"), 2);
}

const DUP_RULES: &str = r#"
table ip t {
	chain pre {
		type filter hook prerouting priority filter; policy accept;
		udp dport 9 dup to 198.18.0.1 device 2
	}
}
"#;

/// A UDP datagram from the client to the LAN server, `n` payload bytes, DF as given.
fn lan_dgram(n: usize, df: bool) -> Vec<u8> {
    let mut f = udp4(
        CLIENT_MAC,
        LAN_MAC,
        CLIENT,
        SERVER,
        4000,
        9,
        64,
        &vec![0x5a; n],
    );
    f[14 + 4..14 + 6].copy_from_slice(&0x1234u16.to_be_bytes());
    f[14 + 6] = if df { 0x40 } else { 0 };
    f[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
    let c = ipv4_sum(&f[14..34]);
    f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    f
}

fn ipv4_sum(h: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in h.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// (offset in bytes, more fragments, IP total length) of an IPv4 frame.
fn frag_fields(f: &[u8]) -> (usize, bool, usize) {
    let fo = u16::from_be_bytes([f[20], f[21]]);
    (
        usize::from(fo & 0x1fff) * 8,
        fo & 0x2000 != 0,
        usize::from(u16::from_be_bytes([f[16], f[17]])),
    )
}

/// `dup` (`nf_dup_ipv4`) of a reassembled datagram leaves through the output path: the
/// copy gets DF and, from prerouting, a lower TTL; it is cut afresh at the size of the
/// largest fragment that came in (its fragments are shared with the original: the slow path
/// of `ip_do_fragment`), or refused with frag-needed to the source when that fragment does not
/// fit the route (the WAN's 1400 here). A copy over the MTU is refused likewise.
#[test]
fn dup_of_a_reassembled_datagram_is_fragmented_or_refused_as_the_kernel_does() {
    let mut r = router_with(TOPOLOGY, DUP_RULES, Config::default());
    let send_frags = |r: &mut Router, pieces: &[usize], t| {
        let whole = lan_dgram(2000, false);
        let frames: Vec<Vec<u8>> = nft_engine::defrag::fragment(&whole[14..], pieces, 65535, 0)
            .unwrap()
            .iter()
            .map(|p| [&whole[..14], &p[..]].concat())
            .collect();
        assert!(send(r, LAN, frames[1].clone(), secs(t)).is_empty());
        (whole, send(r, LAN, frames[0].clone(), secs(t)))
    };
    let on = |out: &[nft_engine::TxFrame], port: usize| -> Vec<Vec<u8>> {
        out.iter()
            .filter(|f| f.egress == Port::Iface(port))
            .map(|f| f.data.clone())
            .collect()
    };

    // fragments of up to 1028 bytes: the copy is cut at 1028 for the WAN
    let (whole, out) = send_frags(&mut r, &[1000, 1008], 1);
    let lan = on(&out, LAN);
    assert_eq!(
        lan.iter().map(|f| frag_fields(f)).collect::<Vec<_>>(),
        [(0, true, 1020), (1000, false, 1028)],
        "the original in its pieces"
    );
    let wan = on(&out, WAN);
    assert_eq!(
        wan.iter().map(|f| frag_fields(f)).collect::<Vec<_>>(),
        [(0, true, 1028), (1008, false, 1020)]
    );
    let mut data = vec![];
    for f in &wan {
        assert_eq!(&f[0..6], &GW_MAC);
        assert_eq!(&f[14 + 4..14 + 6], &[0x12, 0x34], "the datagram's ID");
        assert_eq!(f[14 + 8], 63, "TTL down at prerouting");
        assert_eq!(ipv4_sum(&f[14..34]), 0, "header checksum");
        data.extend_from_slice(&f[34..]);
    }
    assert_eq!(
        data,
        whole[34..],
        "the pieces put together are the datagram"
    );
    assert_eq!(r.counters().dup_packets, 1);

    // a 1500-byte fragment does not fit the WAN: frag-needed (MTU 1400) to the client
    let (_, out) = send_frags(&mut r, &[1480, 528], 2);
    assert!(on(&out, WAN).is_empty());
    let lan = on(&out, LAN);
    assert_eq!(lan.len(), 3, "the original's two pieces and the error");
    let icmp = lan.iter().find(|f| f[14 + 9] == 1).expect("an ICMP error");
    assert_eq!(&icmp[34..36], &[3, 4], "frag-needed");
    assert_eq!(&icmp[38..42], &1400u32.to_be_bytes());
    assert_eq!(&icmp[14 + 16..14 + 20], &CLIENT);
    assert_eq!(icmp[42 + 6] & 0x40, 0x40, "the quoted copy has DF");
    assert_eq!(icmp[42 + 8], 63, "and the lower TTL");

    // not fragmented: a copy that fits, with DF set; one over the MTU, refused
    let out = send(&mut r, LAN, lan_dgram(100, false), secs(3));
    let wan = on(&out, WAN);
    assert_eq!(wan.len(), 1);
    assert_eq!((wan[0][14 + 6] & 0x40, wan[0][14 + 8]), (0x40, 63));
    assert_eq!(ipv4_sum(&wan[0][14..34]), 0);
    let out = send(&mut r, LAN, lan_dgram(1450, false), secs(4));
    assert!(on(&out, WAN).is_empty());
    assert_eq!(on(&out, LAN).len(), 2, "the original and frag-needed");
    assert_eq!(r.counters().dup_packets, 2);
}

/// IPv4 fragments sent with DF: the reassembled datagram carries `IPSKB_FRAG_PMTU` when its
/// largest fragments all had DF, and the `dup` copy cut afresh (the slow path of
/// `ip_do_fragment`) then has DF on every fragment; when only a smaller one had it, none do.
#[test]
fn dup_fragments_keep_df_when_the_largest_fragments_had_it() {
    let mut r = router_with(TOPOLOGY, DUP_RULES, Config::default());
    let send_frags = |r: &mut Router, df: [bool; 2], t| {
        let whole = lan_dgram(2000, false);
        let frames: Vec<Vec<u8>> =
            nft_engine::defrag::fragment(&whole[14..], &[1000, 1008], 65535, 0)
                .unwrap()
                .iter()
                .zip(df)
                .map(|(p, df)| {
                    let mut f = [&whole[..14], &p[..]].concat();
                    if df {
                        f[14 + 6] |= 0x40;
                    }
                    f[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
                    let c = ipv4_sum(&f[14..34]);
                    f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
                    f
                })
                .collect();
        assert!(send(r, LAN, frames[1].clone(), secs(t)).is_empty());
        send(r, LAN, frames[0].clone(), secs(t))
    };
    let wan_frags = |out: &[nft_engine::TxFrame]| -> Vec<(u8, (usize, bool, usize))> {
        out.iter()
            .filter(|f| f.egress == Port::Iface(WAN))
            .map(|f| {
                assert_eq!(ipv4_sum(&f.data[14..34]), 0, "header checksum");
                (f.data[14 + 6] & 0x40, frag_fields(&f.data))
            })
            .collect()
    };
    // the largest (1028 bytes, the second) had DF: every fragment of the copy has it
    let out = send_frags(&mut r, [false, true], 1);
    assert_eq!(
        wan_frags(&out),
        [(0x40, (0, true, 1028)), (0x40, (1008, false, 1020))]
    );
    // only the smaller one had DF: no DF
    let out = send_frags(&mut r, [true, false], 2);
    assert_eq!(
        wan_frags(&out),
        [(0, (0, true, 1028)), (0, (1008, false, 1020))]
    );
    assert_eq!(r.counters().dup_packets, 2);
}

/// `nf_dup_ipv4` lowers the copy's TTL at prerouting with `--iph->ttl`: a u8 that wraps, so
/// a packet that came with TTL 0 leaves a copy with TTL 255 (the original is not forwarded).
#[test]
fn dup_copy_ttl_wraps_like_the_kernel() {
    let mut r = router_with(TOPOLOGY, DUP_RULES, Config::default());
    for (ttl, want) in [(0u8, 255u8), (1, 0), (64, 63)] {
        let mut f = lan_dgram(100, false);
        f[14 + 8] = ttl;
        f[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
        let c = ipv4_sum(&f[14..34]);
        f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
        let out = send(&mut r, LAN, f, secs(1));
        let wan: Vec<_> = out
            .iter()
            .filter(|f| f.egress == Port::Iface(WAN))
            .collect();
        assert_eq!(wan.len(), 1, "TTL {ttl}: the copy alone goes to the WAN");
        assert_eq!(wan[0].data[14 + 8], want, "TTL {ttl}");
        assert_eq!(ipv4_sum(&wan[0].data[14..34]), 0, "header checksum");
    }
}
