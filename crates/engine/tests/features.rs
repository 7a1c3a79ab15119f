//! Rule features beyond plain matches (issue 3), through the whole router: ct timeout
//! objects, SCTP chunks, DCCP options, headers inside tunnels, socket, ipsec, osf, secmark,
//! ct expectations and tproxy. Each test checks what leaves (or does not), named counters
//! and the connection table.

mod common;
use common::*;

use nft_engine::rules::ObjKind;
use nft_engine::{Config, Port, Router};
use nft_lang::ruleset::{load_str, LoadOpts};

/// The packets and bytes of named counter `name` in table `t`.
fn counter(r: &Router, name: &str) -> (u64, u64) {
    let i = r
        .ruleset()
        .object("t", ObjKind::Counter, name)
        .unwrap_or_else(|| panic!("no counter {name}"));
    r.rule_state().counters[i]
}

fn ip_csum(h: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in h.chunks(2) {
        s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// An IPv4 frame from the LAN client with transport protocol `proto` and payload `l4`.
fn ip4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
    let mut f = vec![];
    f.extend_from_slice(&LAN_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let len = (20 + l4.len()) as u16;
    let mut h = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = ip_csum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(l4);
    f
}

/// An SCTP packet with the given chunks (each padded to 4 bytes).
fn sctp(sport: u16, dport: u16, chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut p = vec![];
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 0]);
    for c in chunks {
        p.extend_from_slice(c);
        while p.len() % 4 != 0 {
            p.push(0);
        }
    }
    ip4(132, CLIENT, REMOTE, &p)
}

fn sctp_data(flags: u8, stream: u16) -> Vec<u8> {
    let mut c = vec![0, flags, 0, 20, 0, 0, 0, 1];
    c.extend_from_slice(&stream.to_be_bytes());
    c.extend_from_slice(&[0, 0, 0, 0, 0, 0, b'h', b'i', b'!', b'!']);
    c
}

fn sctp_init() -> Vec<u8> {
    vec![
        1, 0, 0, 20, 0xde, 0xad, 0xbe, 0xef, 0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 0, 1,
    ]
}

fn router(rules: &str) -> Router {
    router_with(TOPOLOGY, rules, Config::default())
}

/// A TCP segment from the LAN client to the remote server.
fn client_tcp(sport: u16, dport: u16, seq: u32, kind: Tcp, payload: &[u8]) -> Vec<u8> {
    tcp4(
        CLIENT_MAC, LAN_MAC, CLIENT, REMOTE, sport, dport, seq, kind, payload,
    )
}

/// A TCP segment from the remote server to the LAN client (no NAT).
fn remote_tcp(sport: u16, dport: u16, seq: u32, kind: Tcp, payload: &[u8]) -> Vec<u8> {
    tcp4(
        GW_MAC, WAN_MAC, REMOTE, CLIENT, sport, dport, seq, kind, payload,
    )
}

/// The conntrack entry whose original destination port is `dport`.
fn conn_by_dport(r: &Router, dport: u16) -> nft_conntrack::Conn {
    r.conntrack()
        .iter()
        .map(|(_, c)| c.clone())
        .find(|c| c.original().dport == dport)
        .unwrap_or_else(|| panic!("no connection to port {dport}"))
}

const CT_TIMEOUT: &str = r#"
table inet t {
	ct timeout short {
		protocol tcp; l3proto ip
		policy = { syn_sent: 7, established: 100, close: 3 }
	}
	ct timeout udpshort { protocol udp; l3proto ip; policy = { unreplied: 4, replied: 9 }; }
	chain pre {
		type filter hook prerouting priority 0; policy accept;
		tcp dport 80 ct timeout set "short"
		udp dport 53 ct timeout set "udpshort"
		udp dport 54 ct timeout set "short"
	}
}
"#;

#[test]
fn ct_timeout_policy_replaces_the_state_timeouts() {
    let mut r = router(CT_TIMEOUT);
    let t = secs(1);
    let syn = |dport| client_tcp(40000, dport, 1, Tcp::Syn, b"");
    one(&mut r, LAN, syn(80), t, Port::Iface(WAN));
    one(&mut r, LAN, syn(81), t, Port::Iface(WAN));
    assert_eq!(conn_by_dport(&r, 80).remaining(t), secs(7));
    assert_eq!(conn_by_dport(&r, 81).remaining(t), secs(120));
    // the answer: SYN_RECV, which the policy leaves at its default (60 s)
    let synack = remote_tcp(80, 40000, 500, Tcp::SynAck(2), b"");
    one(&mut r, WAN, synack, secs(2), Port::Iface(LAN));
    assert_eq!(conn_by_dport(&r, 80).remaining(secs(2)), secs(60));
    // established: the policy's 100 s, not five days; a later packet does not change the
    // policy (the connection is confirmed)
    let ack = client_tcp(40000, 80, 2, Tcp::Ack(501), b"x");
    one(&mut r, LAN, ack, secs(3), Port::Iface(WAN));
    let c = conn_by_dport(&r, 80);
    assert_eq!(c.remaining(secs(3)), secs(100));
    assert_eq!(c.timeouts().map(|t| t.tcp_established), Some(secs(100)));
    // a reset: CLOSE, the policy's 3 s
    let rst = remote_tcp(80, 40000, 501, Tcp::Rst, b"");
    one(&mut r, WAN, rst, secs(4), Port::Iface(LAN));
    assert_eq!(conn_by_dport(&r, 80).remaining(secs(4)), secs(3));
    // UDP: unreplied 4 s; a TCP policy on a UDP connection does nothing
    let udp = |dport| udp4(CLIENT_MAC, LAN_MAC, CLIENT, REMOTE, 5000, dport, 64, b"q");
    one(&mut r, LAN, udp(53), t, Port::Iface(WAN));
    one(&mut r, LAN, udp(54), t, Port::Iface(WAN));
    assert_eq!(conn_by_dport(&r, 53).remaining(t), secs(4));
    assert_eq!(conn_by_dport(&r, 54).remaining(t), secs(30));
    assert!(conn_by_dport(&r, 54).timeouts().is_none());
    // the connection with the short policy is gone after 7 s, the other is not
    r.conntrack_mut().gc(secs(9), usize::MAX);
    assert!(r.conntrack().iter().all(|(_, c)| c.original().dport != 53));
    assert!(r.conntrack().iter().any(|(_, c)| c.original().dport == 54));
}

#[test]
fn ct_timeout_policy_with_an_unknown_state_is_refused() {
    let src = r#"
table inet t {
	ct timeout bad { protocol udp; l3proto ip; policy = { established: 10 }; }
}
"#;
    let compiled = load_str("t.nft", src, &LoadOpts::default())
        .map_err(|e| e.rendered)
        .map(|ast| nft_engine::rules::compile(&ast));
    // the front end or the compiler refuses it; either way nothing is loaded
    match compiled {
        Err(_) => {}
        Ok(r) => assert!(
            r.unwrap_err().what.contains("established"),
            "a UDP policy has no established state"
        ),
    }
}

const SCTP: &str = r#"
table inet t {
	counter init {}
	counter stream9 {}
	counter anydata {}
	chain fw {
		type filter hook forward priority 0; policy accept;
		sctp chunk init exists counter name "init" drop
		sctp chunk data stream 9 counter name "stream9" drop
		sctp chunk data flags 3 counter name "anydata"
	}
}
"#;

#[test]
fn sctp_chunks_match_by_type_and_field() {
    let mut r = router(SCTP);
    let t = secs(1);
    none(&mut r, LAN, sctp(5000, 6000, &[sctp_init()]), t);
    assert_eq!(counter(&r, "init").0, 1);
    // an INIT after a DATA chunk is found too
    none(
        &mut r,
        LAN,
        sctp(5000, 6000, &[sctp_data(3, 1), sctp_init()]),
        t,
    );
    assert_eq!(counter(&r, "init").0, 2);
    none(&mut r, LAN, sctp(5000, 6000, &[sctp_data(3, 9)]), t);
    assert_eq!(counter(&r, "stream9").0, 1);
    // stream 8 passes, counted by flags, unchanged but for TTL and MACs
    let f = sctp(5000, 6000, &[sctp_data(3, 8)]);
    let out = one(&mut r, LAN, f.clone(), t, Port::Iface(WAN));
    assert_eq!(out[14 + 20..], f[14 + 20..]);
    assert_eq!(out[14 + 8], 63);
    assert_eq!(counter(&r, "anydata"), (1, 20 + 12 + 20));
    // no chunks at all, and a chunk cut short: nothing matches, nothing panics
    one(&mut r, LAN, sctp(5000, 6000, &[]), t, Port::Iface(WAN));
    let mut cut = sctp(5000, 6000, &[sctp_data(3, 9)]);
    cut.truncate(14 + 20 + 12 + 6);
    cut[16..18].copy_from_slice(&((20 + 18) as u16).to_be_bytes());
    cut[24..26].copy_from_slice(&[0, 0]);
    let c = ip_csum(&cut[14..34]);
    cut[24..26].copy_from_slice(&c.to_be_bytes());
    one(&mut r, LAN, cut, t, Port::Iface(WAN));
    assert_eq!(counter(&r, "stream9").0, 1);
    // not SCTP
    one(
        &mut r,
        LAN,
        udp4(
            CLIENT_MAC,
            LAN_MAC,
            CLIENT,
            REMOTE,
            5000,
            6000,
            64,
            b"0123456789abcdef",
        ),
        t,
        Port::Iface(WAN),
    );
    assert_eq!(counter(&r, "init").0, 2);
}

/// A DCCP REQUEST (extended sequence numbers) with the given option bytes.
fn dccp_request(opts: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&5000u16.to_be_bytes());
    h[2..4].copy_from_slice(&6000u16.to_be_bytes());
    h[8] = 1; // type REQUEST (0), X
    h.extend_from_slice(opts);
    h.resize(h.len().next_multiple_of(4), 0);
    h[4] = (h.len() / 4) as u8;
    ip4(33, CLIENT, REMOTE, &h)
}

#[test]
fn dccp_options_are_found_by_type() {
    let mut r = router(
        r#"
table inet t {
	counter opt40 {}
	chain fw {
		type filter hook forward priority 0; policy accept;
		dccp option 40 exists counter name "opt40" drop
	}
}
"#,
    );
    let t = secs(1);
    none(&mut r, LAN, dccp_request(&[0, 32, 3, 9, 40, 2]), t);
    assert_eq!(counter(&r, "opt40").0, 1);
    // 40 inside option 32's data is not an option
    one(
        &mut r,
        LAN,
        dccp_request(&[32, 3, 40, 2]),
        t,
        Port::Iface(WAN),
    );
    // a malformed length ends the search
    one(
        &mut r,
        LAN,
        dccp_request(&[32, 1, 40, 2]),
        t,
        Port::Iface(WAN),
    );
    assert_eq!(counter(&r, "opt40").0, 1);
}

/// A VXLAN packet (UDP 4789, VNI `vni`) from the LAN client carrying an Ethernet frame with
/// IPv4 TCP from `isrc` to port `idport`.
fn vxlan(vni: u32, isrc: [u8; 4], idport: u16) -> Vec<u8> {
    let mut inner = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 9, 0x08, 0x00];
    inner.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0]);
    inner.extend_from_slice(&isrc);
    inner.extend_from_slice(&[10, 0, 0, 2]);
    inner.extend_from_slice(&40000u16.to_be_bytes());
    inner.extend_from_slice(&idport.to_be_bytes());
    inner.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    let mut v = vec![0x08, 0, 0, 0];
    v.extend_from_slice(&(vni << 8).to_be_bytes());
    v.extend_from_slice(&inner);
    udp4(CLIENT_MAC, LAN_MAC, CLIENT, REMOTE, 33000, 4789, 64, &v)
}

/// GRE (plain, or with a key when `key`) carrying an IPv4 packet from `isrc`.
fn gre(isrc: [u8; 4], key: bool, tap: bool) -> Vec<u8> {
    let mut g = if key {
        vec![0x20, 0, 0, 0, 0, 0, 0, 5]
    } else {
        vec![0, 0, 0, 0]
    };
    let ptype: u16 = if tap { 0x6558 } else { 0x0800 };
    g[2..4].copy_from_slice(&ptype.to_be_bytes());
    if tap {
        g.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 9, 0x08, 0x00]);
    }
    g.extend_from_slice(&[0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0]);
    g.extend_from_slice(&isrc);
    g.extend_from_slice(&[10, 0, 0, 2, 0x13, 0x88, 0x00, 0x35, 0, 8, 0, 0]);
    ip4(47, CLIENT, REMOTE, &g)
}

const INNER: &str = r#"
table inet t {
	counter vni42 {}
	counter inner_src {}
	counter inner_ssh {}
	counter gre_src {}
	counter gretap_mac {}
	chain fw {
		type filter hook forward priority 0; policy accept;
		udp dport 4789 vxlan vni 42 counter name "vni42"
		udp dport 4789 vxlan ip saddr 10.0.0.1 counter name "inner_src" drop
		udp dport 4789 vxlan tcp dport 22 counter name "inner_ssh" drop
		gre ip saddr 10.0.0.7 counter name "gre_src" drop
		gretap ether saddr 02:00:00:00:00:09 counter name "gretap_mac" drop
	}
}
"#;

#[test]
fn headers_inside_tunnels() {
    let mut r = router(INNER);
    let t = secs(1);
    none(&mut r, LAN, vxlan(42, [10, 0, 0, 1], 80), t);
    assert_eq!(counter(&r, "inner_src").0, 1);
    none(&mut r, LAN, vxlan(7, [10, 0, 0, 3], 22), t);
    assert_eq!(counter(&r, "inner_ssh").0, 1);
    let f = vxlan(42, [10, 0, 0, 3], 80);
    let out = one(&mut r, LAN, f.clone(), t, Port::Iface(WAN));
    assert_eq!(out[42..], f[42..]);
    assert_eq!(counter(&r, "vni42").0, 2);
    // the same bytes to another UDP port are no VXLAN packet
    let mut other = vxlan(42, [10, 0, 0, 1], 22);
    other[36..38].copy_from_slice(&4790u16.to_be_bytes());
    other[40..42].copy_from_slice(&[0, 0]);
    one(&mut r, LAN, other, t, Port::Iface(WAN));
    assert_eq!(counter(&r, "inner_src").0, 1);
    assert_eq!(counter(&r, "inner_ssh").0, 1);
    // GRE with and without a key; the inner match is on the carried IP header
    none(&mut r, LAN, gre([10, 0, 0, 7], false, false), t);
    none(&mut r, LAN, gre([10, 0, 0, 7], true, false), t);
    assert_eq!(counter(&r, "gre_src").0, 2);
    one(
        &mut r,
        LAN,
        gre([10, 0, 0, 8], true, false),
        t,
        Port::Iface(WAN),
    );
    // gretap carries Ethernet
    none(&mut r, LAN, gre([10, 0, 0, 8], false, true), t);
    assert_eq!(counter(&r, "gretap_mac").0, 1);
    // a VXLAN packet cut inside its inner header: nothing matches, nothing panics
    let mut cut = vxlan(42, [10, 0, 0, 1], 22);
    cut.truncate(42 + 8 + 14 + 10);
    let l3 = (cut.len() - 14) as u16;
    cut[16..18].copy_from_slice(&l3.to_be_bytes());
    cut[24..26].copy_from_slice(&[0, 0]);
    let c = ip_csum(&cut[14..34]);
    cut[24..26].copy_from_slice(&c.to_be_bytes());
    cut[38..40].copy_from_slice(&(l3 - 20).to_be_bytes());
    cut[40..42].copy_from_slice(&[0, 0]);
    one(&mut r, LAN, cut, t, Port::Iface(WAN));
    assert_eq!(counter(&r, "inner_src").0, 1);
}

const NO_SOCKET: &str = r#"
table inet t {
	counter sock {}
	counter ipsec_ne {}
	counter no_ipsec {}
	counter osf_unknown {}
	counter osf_not_linux {}
	chain pre {
		type filter hook prerouting priority 0; policy accept;
		socket transparent 0 counter name "sock" drop
		socket transparent 1 counter name "sock" drop
		meta l4proto tcp socket wildcard 0 counter name "sock" drop
		socket mark != 7 counter name "sock" drop
	}
	chain fw {
		type filter hook forward priority 0; policy accept;
		ipsec in reqid 1 drop
		ipsec in reqid != 1 counter name "ipsec_ne" drop
		ipsec out ip daddr 203.0.113.5 drop
		meta ipsec exists drop
		meta ipsec missing counter name "no_ipsec"
		osf name "Linux" drop
		osf name "unknown" counter name "osf_unknown"
		osf version != "Linux:4.19" counter name "osf_not_linux"
	}
}
"#;

#[test]
fn socket_ipsec_and_osf_on_a_router() {
    let mut r = router(NO_SOCKET);
    let t = secs(1);
    // no local socket, no IPsec state: those rules never match, negated or not
    let syn = client_tcp(40000, 80, 1, Tcp::Syn, b"");
    one(&mut r, LAN, syn, t, Port::Iface(WAN));
    let ack = client_tcp(40000, 80, 2, Tcp::Ack(1), b"x");
    one(&mut r, LAN, ack, t, Port::Iface(WAN));
    let udp = udp4(CLIENT_MAC, LAN_MAC, CLIENT, REMOTE, 5000, 53, 64, b"q");
    one(&mut r, LAN, udp, t, Port::Iface(WAN));
    assert_eq!(counter(&r, "sock").0, 0);
    assert_eq!(counter(&r, "ipsec_ne").0, 0);
    assert_eq!(counter(&r, "no_ipsec").0, 3);
    // no fingerprints loaded: a SYN is "unknown", other packets are not fingerprinted
    assert_eq!(counter(&r, "osf_unknown").0, 1);
    assert_eq!(counter(&r, "osf_not_linux").0, 1);
}

const SECMARK: &str = r#"
table inet t {
	secmark ssh { "system_u:object_r:ssh_server_packet_t:s0" }
	secmark web { "system_u:object_r:http_server_packet_t:s0" }
	counter marked_reply {}
	chain fw {
		type filter hook forward priority 0; policy accept;
		ct state new tcp dport 22 meta secmark set "ssh"
		ct state new tcp dport 80 meta secmark set "web"
		ct state new ct secmark set meta secmark
		ct state established meta secmark set ct secmark
		ct direction reply meta secmark != 0 counter name "marked_reply"
	}
}
"#;

#[test]
fn secmark_objects_mark_packets_and_connections() {
    let mut r = router(SECMARK);
    let t = secs(1);
    for dport in [22, 80, 443] {
        let syn = client_tcp(40000, dport, 1, Tcp::Syn, b"");
        one(&mut r, LAN, syn, t, Port::Iface(WAN));
    }
    let ssh = conn_by_dport(&r, 22).secmark();
    let web = conn_by_dport(&r, 80).secmark();
    assert_ne!(ssh, 0);
    assert_ne!(web, 0);
    assert_ne!(ssh, web);
    assert_eq!(conn_by_dport(&r, 443).secmark(), 0);
    // answers get the connection's mark back
    for dport in [22, 443] {
        let synack = remote_tcp(dport, 40000, 9, Tcp::SynAck(2), b"");
        one(&mut r, WAN, synack, t, Port::Iface(LAN));
    }
    assert_eq!(counter(&r, "marked_reply").0, 1);
}

const EXPECT: &str = r#"
table inet t {
	ct expectation data { protocol tcp; dport 2121; timeout 10s; size 1; l3proto ip; }
	counter related {}
	counter refused {}
	chain fw {
		type filter hook forward priority 0; policy drop;
		tcp dport 21 ct state new ct expectation set "data" accept
		ct state related counter name "related" accept
		ct state established accept
		iifname "lan" ct state new accept
		counter name "refused"
	}
}
"#;

#[test]
fn ct_expectation_makes_the_announced_connection_related() {
    let mut r = router(EXPECT);
    let t = secs(1);
    let ctl = client_tcp(40000, 21, 1, Tcp::Syn, b"");
    one(&mut r, LAN, ctl, t, Port::Iface(WAN));
    let exp = r.conntrack().expectations(t);
    assert_eq!(exp.len(), 1, "{exp:?}");
    assert_eq!(exp[0].dport, 2121);
    // the server opens the data connection from any port: related, let through
    let data = |sport| remote_tcp(sport, 2121, 7, Tcp::Syn, b"");
    one(&mut r, WAN, data(20), secs(2), Port::Iface(LAN));
    assert_eq!(counter(&r, "related").0, 1);
    let c = conn_by_dport(&r, 2121);
    assert!(c.status().contains(nft_conntrack::Status::EXPECTED));
    // the expectation is used up: a second one is new, and refused
    none(&mut r, WAN, data(21), secs(2));
    assert_eq!(counter(&r, "refused").0, 1);
    // a second control connection announces again. `timeout 10s` is 10000 s, as in the
    // kernel (which takes nft's milliseconds for seconds)
    let ctl2 = client_tcp(40001, 21, 1, Tcp::Syn, b"");
    one(&mut r, LAN, ctl2, secs(3), Port::Iface(WAN));
    let exp = r.conntrack().expectations(secs(14));
    assert_eq!(exp.len(), 1);
    assert_eq!(exp[0].deadline, secs(3 + 10_000));
    // the control connection (a SYN alone, 120 s) dies, and its expectation with it
    r.conntrack_mut().gc(secs(200), usize::MAX);
    assert!(r.conntrack().expectations(secs(200)).is_empty());
    none(&mut r, WAN, data(22), secs(200));
    assert_eq!(counter(&r, "refused").0, 2);
    assert_eq!(counter(&r, "related").0, 1);
}

#[test]
fn ct_expectation_only_on_a_new_connection() {
    // an established connection's packets announce nothing: the rule stops at the statement
    let mut r = router(
        r#"
table inet t {
	ct expectation data { protocol tcp; dport 2121; timeout 10s; size 4; l3proto ip; }
	counter after {}
	chain fw {
		type filter hook forward priority 0; policy accept;
		tcp dport 21 ct expectation set "data" counter name "after"
	}
}
"#,
    );
    let syn = client_tcp(40000, 21, 1, Tcp::Syn, b"");
    one(&mut r, LAN, syn, secs(1), Port::Iface(WAN));
    let synack = remote_tcp(21, 40000, 9, Tcp::SynAck(2), b"");
    one(&mut r, WAN, synack, secs(1), Port::Iface(LAN));
    let ack = client_tcp(40000, 21, 2, Tcp::Ack(10), b"x");
    one(&mut r, LAN, ack, secs(1), Port::Iface(WAN));
    assert_eq!(counter(&r, "after").0, 1);
    assert_eq!(r.conntrack().expectations(secs(1)).len(), 1);
}

const TPROXY: &str = r#"
table inet t {
	counter before {}
	counter after {}
	counter marked {}
	counter proxied {}
	chain pre {
		type filter hook prerouting priority mangle; policy accept;
		iifname "lan" tcp dport 80 counter name "before" tproxy ip to 192.168.1.1:3128 meta mark set 1 accept
		iifname "lan" tcp dport 80 counter name "after"
	}
	chain fw {
		type filter hook forward priority 0; policy accept;
		meta mark 1 counter name "marked"
	}
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 80 counter name "proxied"
	}
}
"#;

/// The kernel's tproxy ends its rule (NFT_BREAK) when it finds no transparent socket, and
/// this router has none: what precedes it in the rule runs, what follows does not (no mark,
/// no accept), the next rule runs, and the packet is routed as it would be without the rule.
#[test]
fn tproxy_without_a_socket_stops_its_rule() {
    let mut r = router(TPROXY);
    let t = secs(1);
    let syn = client_tcp(40000, 80, 1, Tcp::Syn, b"");
    let out = send(&mut r, LAN, syn, t);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].egress, Port::Iface(WAN));
    assert_eq!(counter(&r, "before").0, 1);
    assert_eq!(counter(&r, "after").0, 1);
    assert_eq!(counter(&r, "marked").0, 0);
    assert_eq!(counter(&r, "proxied").0, 0);
    // UDP is not matched by a TCP port rule, and is forwarded too
    let udp = udp4(CLIENT_MAC, LAN_MAC, CLIENT, REMOTE, 5000, 80, 64, b"q");
    one(&mut r, LAN, udp, t, Port::Iface(WAN));
    assert_eq!(counter(&r, "before").0, 1);
}

/// `run` warns about rulesets with `tproxy` (a proxy on the router's host is never reached).
#[test]
fn rulesets_with_tproxy_are_known() {
    let compile = |src: &str| {
        let ast = load_str("x.nft", src, &LoadOpts::default())
            .map_err(|e| e.rendered)
            .unwrap();
        nft_engine::rules::compile(&ast).unwrap()
    };
    assert!(compile(TPROXY).has_tproxy());
    let plain =
        "table inet t { chain c { type filter hook prerouting priority 0; tcp dport 80 counter } }";
    assert!(!compile(plain).has_tproxy());
}

#[test]
fn hook_limited_expressions_are_refused_elsewhere() {
    let cases = [
        ("chain c { type filter hook forward priority 0; socket transparent 1 accept }", "socket in a forward chain"),
        ("chain c { type filter hook prerouting priority 0; ipsec out ip daddr 1.2.3.4 accept }", "ipsec out in a prerouting chain"),
        ("chain c { type filter hook forward priority 0; meta l4proto tcp tproxy ip to 1.2.3.4:80 }", "tproxy in a forward chain"),
        ("chain c { type filter hook output priority 0; jump d } chain d { osf name \"Linux\" accept }", "osf in a output chain"),
    ];
    for (body, want) in cases {
        let src = format!("table inet t {{ {body} }}");
        let ast = load_str("x.nft", &src, &LoadOpts::default())
            .map_err(|e| e.rendered)
            .unwrap();
        let e = nft_engine::rules::compile(&ast).unwrap_err().to_string();
        assert!(e.contains(want), "{src}: {e}");
    }
    // where the kernel allows them, they load
    for body in [
        "chain c { type filter hook prerouting priority 0; socket transparent 1 accept }",
        "chain c { type filter hook forward priority 0; ipsec out ip daddr 1.2.3.4 accept; ipsec in reqid 1 accept; osf name \"Linux\" accept }",
    ] {
        let src = format!("table inet t {{ {body} }}");
        let ast = load_str("x.nft", &src, &LoadOpts::default()).unwrap();
        assert!(nft_engine::rules::compile(&ast).is_ok(), "{src}");
    }
}

#[test]
fn a_connection_that_announced_an_expectation_stays_off_the_flowtable() {
    let mut r = router(
        r#"
table inet t {
	ct expectation data { protocol tcp; dport 2121; timeout 10s; size 1; l3proto ip; }
	flowtable ft { hook ingress priority 0; devices = { "lan", "wan" }; }
	chain fw {
		type filter hook forward priority 0; policy accept;
		meta l4proto tcp flow add @ft
		tcp dport 21 ct expectation set "data"
	}
}
"#,
    );
    for (sport, dport) in [(40000, 21), (40001, 22)] {
        let syn = client_tcp(sport, dport, 1, Tcp::Syn, b"");
        one(&mut r, LAN, syn, secs(1), Port::Iface(WAN));
        let synack = remote_tcp(dport, sport, 9, Tcp::SynAck(2), b"");
        one(&mut r, WAN, synack, secs(1), Port::Iface(LAN));
        let ack = client_tcp(sport, dport, 2, Tcp::Ack(10), b"x");
        one(&mut r, LAN, ack, secs(1), Port::Iface(WAN));
    }
    assert!(!conn_by_dport(&r, 21).is_offloaded());
    assert!(conn_by_dport(&r, 21).has_help());
    assert!(conn_by_dport(&r, 22).is_offloaded());
}

#[test]
fn a_master_is_listed_with_the_reference_its_expected_connection_holds() {
    let mut r = router(EXPECT);
    let ctl = client_tcp(40000, 21, 1, Tcp::Syn, b"");
    one(&mut r, LAN, ctl, secs(1), Port::Iface(WAN));
    let list = r.conntrack().list(secs(1));
    assert!(list[0].ends_with("use=1"), "{list:?}");
    let data = remote_tcp(20, 2121, 7, Tcp::Syn, b"");
    one(&mut r, WAN, data, secs(2), Port::Iface(LAN));
    let list = r.conntrack().list(secs(2));
    let master = list.iter().find(|l| l.contains("dport=21 ")).unwrap();
    let child = list.iter().find(|l| l.contains("dport=2121 ")).unwrap();
    assert!(master.ends_with("use=2"), "{master}");
    assert!(child.ends_with("use=1"), "{child}");
}

#[test]
fn socket_meta_keys_fail_on_routed_packets_and_vrf_keys_are_empty() {
    let mut r = router(
        r#"
table inet t {
	counter no_sdif {}
	chain fw {
		type filter hook forward priority 0; policy accept;
		meta skuid 0 drop
		meta skuid != 0 drop
		meta skgid != 0 drop
		meta cgroup != 5 drop
		meta sdif != 0 drop
		meta rtclassid != 0 drop
		meta sdifname != "vrf0" counter name "no_sdif" drop
	}
}
"#,
    );
    let udp = udp4(CLIENT_MAC, LAN_MAC, CLIENT, REMOTE, 5000, 53, 64, b"q");
    none(&mut r, LAN, udp, secs(1));
    assert_eq!(counter(&r, "no_sdif").0, 1);
}

/// Every load of this file's features at once.
const ALL_FEATURES: &str = r#"
table inet t {
	ct timeout short { protocol tcp; l3proto ip; policy = { syn_sent: 7 }; }
	ct expectation data { protocol tcp; dport 2121; timeout 10s; size 2; l3proto ip; }
	secmark sm { "system_u:object_r:ssh_server_packet_t:s0" }
	chain pre {
		type filter hook prerouting priority 0; policy accept;
		socket transparent 1 drop
		tcp dport 80 ct timeout set "short"
		tcp dport 81 tproxy ip to 192.168.1.1:3128
	}
	chain fw {
		type filter hook forward priority 0; policy accept;
		sctp chunk init exists counter
		sctp chunk data stream 9 counter
		sctp chunk init-ack num-inbound-streams 10 counter
		dccp option 40 exists counter
		udp dport 4789 vxlan ip saddr 10.0.0.1 counter
		udp dport 4789 vxlan tcp dport 22 counter
		udp dport 6081 geneve vni 10 counter
		udp dport 6081 geneve ip6 saddr ::1 counter
		gre ip saddr 10.0.0.7 counter
		gretap ether saddr 02:00:00:00:00:09 counter
		osf name "unknown" counter
		ipsec in reqid 1 counter
		tcp dport 21 ct expectation set "data"
		meta secmark set "sm" ct secmark set meta secmark
	}
}
"#;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Chunks, options and tunnels cut short or with lengths gone wrong: counted or passed,
    /// never a panic, and whatever leaves parses.
    #[test]
    fn feature_loads_on_mutated_frames_never_panic(
        seed in prop::collection::vec((34usize..120, any::<u8>()), 0..10),
        which in 0usize..6,
        cut in 14usize..160,
    ) {
        let mut r = router(ALL_FEATURES);
        let mut f = match which {
            0 => sctp(5000, 6000, &[sctp_data(3, 9), sctp_init()]),
            1 => dccp_request(&[0, 32, 3, 9, 40, 2]),
            2 => vxlan(42, [10, 0, 0, 1], 22),
            3 => gre([10, 0, 0, 7], true, true),
            4 => client_tcp(40000, 21, 1, Tcp::Syn, b""),
            _ => {
                let mut v = vxlan(42, [10, 0, 0, 1], 22);
                v[36..38].copy_from_slice(&6081u16.to_be_bytes());
                v
            }
        };
        for (at, v) in seed {
            if let Some(b) = f.get_mut(at) {
                *b = v;
            }
        }
        f.truncate(cut.max(34));
        // an IP header that fits what is left, so the rules see the cut transport data
        if f[12..14] == [0x08, 0x00] && f[14] == 0x45 {
            let l3 = (f.len() - 14) as u16;
            f[16..18].copy_from_slice(&l3.to_be_bytes());
            f[24..26].copy_from_slice(&[0, 0]);
            let c = ip_csum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
        }
        for o in send(&mut r, LAN, f, secs(1)) {
            prop_assert!(nft_wire::parse_frame(&o.data).is_ok());
        }
    }
}
