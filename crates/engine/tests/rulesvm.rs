//! The rule engine's matches and statements against real packets: dynamic sets over time,
//! meters, payload mangling with checksums re-verified, fib, the extra loads, named objects,
//! ct zone/helper, dup/fwd, log lines and compile errors that name what is missing.

mod common;
use common::*;

use nft_engine::rules::{
    compile, pkt_from_frame, run_hook, Actions, CtInfo, ElemState, Env, Hook, HookVerdict, NatSpec,
    Pkt, Reject, RouteAnswer, Ruleset, State,
};
use nft_engine::{Config, Port, Router};
use nft_lang::ast::Family;
use nft_lang::ruleset::{load_str, LoadOpts};

#[derive(Default)]
struct Rec {
    logs: Vec<String>,
}

impl Actions for Rec {
    fn nat(&mut self, _p: &Pkt, _s: &NatSpec, _a: Option<(u128, u128)>, _port: Option<(u16, u16)>) {
    }
    fn reject(&mut self, _p: &Pkt, _r: &Reject) {}
    fn flow_add(&mut self, _p: &Pkt, _ft: &str) {}
    fn notrack(&mut self, _p: &Pkt) {}
    fn log(&mut self, _p: &Pkt, prefix: Option<&str>, _l: u8, _r: &str) {
        self.logs.push(prefix.unwrap_or("").into());
    }
}

/// Connections 1..=n are alive unless listed dead.
struct TestEnv {
    dead: Vec<u64>,
}

impl Env for TestEnv {
    fn route(&self, _addr: u128, _v6: bool) -> RouteAnswer {
        RouteAnswer::None
    }
    fn is_local(&self, _a: u128, _v6: bool, _i: Option<u32>) -> bool {
        false
    }
    fn is_subnet_broadcast(&self, _a: u128, _i: Option<u32>) -> bool {
        false
    }
    fn ifname(&self, _i: u32) -> u128 {
        0
    }
    fn conn_alive(&self, h: u64) -> bool {
        !self.dead.contains(&h)
    }
}

fn ruleset(src: &str) -> (Ruleset, State) {
    let ast = load_str("t.nft", src, &LoadOpts::default())
        .map_err(|e| e.rendered)
        .unwrap();
    let rs = compile(&ast).unwrap();
    let st = State::new(&rs);
    (rs, st)
}

/// An established connection with handle `h`, as conntrack tells the rules.
fn established(h: u64) -> Option<CtInfo> {
    Some(CtInfo {
        state: 8,
        handle: h,
        ..Default::default()
    })
}

fn ns(s: f64) -> u64 {
    (s * 1e9) as u64
}

fn tcp(src: [u8; 4], dport: u16) -> Vec<u8> {
    tcp4(
        CLIENT_MAC,
        LAN_MAC,
        src,
        ROUTER_LAN,
        40000,
        dport,
        1,
        Tcp::Syn,
        b"",
    )
}

/// Runs the input hook on a frame at `now`; the verdict and the mark the rules left.
fn input(
    rs: &Ruleset,
    st: &mut State,
    frame: &mut [u8],
    now_ns: u64,
    ct: Option<CtInfo>,
    env: Option<&dyn Env>,
) -> (HookVerdict, u32) {
    let m = nft_wire::parse_frame(frame).unwrap();
    let mut ps = nft_engine::rules::PktState::default();

    let mut p = pkt_from_frame(frame, &m, 1, "lan", &mut ps);
    p.conn = ct.as_ref().map(|c| c as &dyn nft_engine::rules::CtFacts);
    p.env = env;
    let v = run_hook(
        rs,
        st,
        Hook::Input,
        &[Family::Ip, Family::Inet],
        &mut p,
        now_ns,
        &mut Rec::default(),
        None,
    );
    (v, p.mark)
}

/// The input hook's verdict on a SYN from `src` to the router's port `dport`, `t` seconds in.
fn syn(rs: &Ruleset, st: &mut State, src: [u8; 4], dport: u16, t: f64) -> HookVerdict {
    input(rs, st, &mut tcp(src, dport), ns(t), None, None).0
}

const A: [u8; 4] = [192, 168, 1, 10];
const B: [u8; 4] = [192, 168, 1, 11];
const C: [u8; 4] = [192, 168, 1, 12];

fn key(a: [u8; 4]) -> Vec<u128> {
    vec![u32::from_be_bytes(a) as u128]
}

const DYNSETS: &str = r#"
table ip t {
	set seen { type ipv4_addr; size 2; flags dynamic,timeout; timeout 10s; }
	set short { type ipv4_addr; flags dynamic,timeout; }
	set fixed { type ipv4_addr; flags dynamic; elements = { 192.168.1.12 } }
	chain c {
		type filter hook input priority 0; policy accept;
		tcp dport 1 add @seen { ip saddr } accept
		tcp dport 1 drop
		tcp dport 2 update @seen { ip saddr timeout 30s } accept
		tcp dport 3 delete @seen { ip saddr } accept
		tcp dport 4 add @short { ip saddr timeout 1s } accept
		tcp dport 6 delete @fixed { ip saddr } accept
		tcp dport 5 ip saddr @seen accept
		tcp dport 5 ip saddr @short accept
		tcp dport 5 ip saddr @fixed accept
		tcp dport 5 drop
	}
}
"#;

#[test]
fn dynamic_sets_add_update_delete_with_timeouts_and_size() {
    let (rs, mut st) = ruleset(DYNSETS);
    let seen = rs.set_index("t", "seen").unwrap();
    let probe = |st: &mut State, src, t| syn(&rs, st, src, 5, t);
    assert_eq!(probe(&mut st, A, 0.0), HookVerdict::Drop);
    assert_eq!(syn(&rs, &mut st, A, 1, 0.0), HookVerdict::Accept);
    assert_eq!(probe(&mut st, A, 5.0), HookVerdict::Accept);
    // the set's 10 s default timeout: gone at 10 s
    assert_eq!(probe(&mut st, A, 10.0), HookVerdict::Drop);
    assert!(st.dynamic_elements(seen, ns(10.0)).is_empty());

    // size 2: A and B fit, C does not and its rule does not match (the next one drops)
    assert_eq!(syn(&rs, &mut st, A, 1, 20.0), HookVerdict::Accept);
    assert_eq!(syn(&rs, &mut st, B, 1, 20.0), HookVerdict::Accept);
    assert_eq!(syn(&rs, &mut st, C, 1, 21.0), HookVerdict::Drop);
    let keys: Vec<_> = st
        .dynamic_elements(seen, ns(21.0))
        .into_iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(keys, vec![key(A), key(B)]);
    // `add` on an existing element keeps its expiry; `update` moves it to now + 30 s
    assert_eq!(syn(&rs, &mut st, A, 1, 29.0), HookVerdict::Accept);
    assert_eq!(syn(&rs, &mut st, B, 2, 29.0), HookVerdict::Accept);
    assert_eq!(probe(&mut st, A, 30.5), HookVerdict::Drop);
    assert_eq!(probe(&mut st, B, 58.0), HookVerdict::Accept);
    assert_eq!(probe(&mut st, B, 59.0), HookVerdict::Drop);
    // once A expired there is room for C again
    assert_eq!(syn(&rs, &mut st, C, 1, 31.0), HookVerdict::Accept);
    // delete
    assert_eq!(syn(&rs, &mut st, C, 3, 32.0), HookVerdict::Accept);
    assert_eq!(
        probe(&mut st, C, 32.0),
        HookVerdict::Accept,
        "C is still in @fixed"
    );
    assert_eq!(syn(&rs, &mut st, C, 6, 32.0), HookVerdict::Accept);
    assert_eq!(
        probe(&mut st, C, 32.0),
        HookVerdict::Drop,
        "a loaded element can be deleted too"
    );
    // per-element timeout in the statement
    assert_eq!(syn(&rs, &mut st, A, 4, 40.0), HookVerdict::Accept);
    assert_eq!(probe(&mut st, A, 40.9), HookVerdict::Accept);
    assert_eq!(probe(&mut st, A, 41.0), HookVerdict::Drop);
}

const METERS: &str = r#"
table ip t {
	set lim { type ipv4_addr; flags dynamic; }
	set cnt { type ipv4_addr; flags dynamic; }
	set conns { type ipv4_addr; flags dynamic; }
	chain c {
		type filter hook input priority 0; policy accept;
		tcp dport 7 add @cnt { ip saddr counter }
		tcp dport 6 add @lim { ip saddr limit rate 2/second burst 2 packets } accept
		tcp dport 6 drop
		tcp dport 8 add @conns { ip saddr ct count over 2 } drop
	}
}
"#;

#[test]
fn meters_limit_and_count_per_element() {
    let (rs, mut st) = ruleset(METERS);
    assert_eq!(syn(&rs, &mut st, A, 6, 0.0), HookVerdict::Accept);
    assert_eq!(syn(&rs, &mut st, A, 6, 0.0), HookVerdict::Accept);
    assert_eq!(
        syn(&rs, &mut st, A, 6, 0.0),
        HookVerdict::Drop,
        "over A's rate"
    );
    assert_eq!(
        syn(&rs, &mut st, B, 6, 0.0),
        HookVerdict::Accept,
        "B has its own bucket"
    );
    assert_eq!(
        syn(&rs, &mut st, A, 6, 0.5),
        HookVerdict::Accept,
        "half a second refills one token"
    );
    assert_eq!(syn(&rs, &mut st, A, 6, 0.5), HookVerdict::Drop);

    for _ in 0..3 {
        syn(&rs, &mut st, A, 7, 1.0);
    }
    syn(&rs, &mut st, B, 7, 1.0);
    let cnt = rs.set_index("t", "cnt").unwrap();
    let els = st.dynamic_elements(cnt, ns(1.0));
    let len = tcp(A, 7).len() as u64 - 14;
    assert_eq!(
        els[0].1.stmts,
        vec![ElemState::Counter {
            packets: 3,
            bytes: 3 * len
        }]
    );
    assert_eq!(
        els[1].1.stmts,
        vec![ElemState::Counter {
            packets: 1,
            bytes: len
        }]
    );
}

#[test]
fn ct_count_in_a_set_counts_live_connections() {
    let (rs, mut st) = ruleset(METERS);
    let env = TestEnv { dead: vec![] };
    let mut run =
        |h, env: &TestEnv| input(&rs, &mut st, &mut tcp(A, 8), 0, established(h), Some(env)).0;
    assert_eq!(run(1, &env), HookVerdict::Accept);
    assert_eq!(run(2, &env), HookVerdict::Accept);
    // the same connection again does not count twice
    assert_eq!(run(2, &env), HookVerdict::Accept);
    assert_eq!(
        run(3, &env),
        HookVerdict::Drop,
        "a third connection is over 2"
    );
    // once two have ended, a new one fits
    let env = TestEnv { dead: vec![1, 2] };
    assert_eq!(run(4, &env), HookVerdict::Accept);
}

/// `ct count` of a rule, not in a set (`nft_connlimit`): one list for the rule, counting every
/// live connection that reached it.
#[test]
fn ct_count_of_a_rule_counts_live_connections() {
    let (rs, mut st) = ruleset(
        "table inet t { chain input { type filter hook input priority 0; policy accept;\n\
         tcp dport 8 ct count over 2 drop\n tcp dport 9 ct count 1 counter drop } }",
    );
    let env = TestEnv { dead: vec![] };
    let mut run = |h, port, env: &TestEnv| {
        input(
            &rs,
            &mut st,
            &mut tcp(A, port),
            0,
            established(h),
            Some(env),
        )
        .0
    };
    assert_eq!(run(1, 8, &env), HookVerdict::Accept);
    assert_eq!(run(2, 8, &env), HookVerdict::Accept);
    assert_eq!(
        run(2, 8, &env),
        HookVerdict::Accept,
        "the same one counts once"
    );
    assert_eq!(run(3, 8, &env), HookVerdict::Drop, "a third is over 2");
    let env = TestEnv { dead: vec![1, 3] };
    assert_eq!(run(4, 8, &env), HookVerdict::Accept, "the ended ones leave");
    // `ct count 1` (no `over`) matches within the count: the second rule's own list
    assert_eq!(run(5, 9, &env), HookVerdict::Drop);
    assert_eq!(run(6, 9, &env), HookVerdict::Accept, "two are over 1");
    // untracked packets do not match
    let untracked = input(&rs, &mut st, &mut tcp(A, 9), 0, None, Some(&env)).0;
    assert_eq!(untracked, HookVerdict::Accept);
}

const MANGLE: &str = r#"
table inet m {
	chain pre {
		type filter hook prerouting priority mangle; policy accept;
		ip dscp set cs1
		ip6 dscp set cs2
		meta mark set 0x2a meta priority set 1:2
		ct mark set ct mark | 0x10
	}
	chain fw {
		type filter hook forward priority filter; policy accept;
		ip ttl set 100
		ip6 hoplimit set 7
		udp dport 53 udp dport set 5353
		tcp dport 443 tcp dport set 8443
		ct mark set ct mark | 0x1
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" masquerade
	}
}
"#;

#[test]
fn payload_mangling_rewrites_bytes_and_checksums() {
    let mut r = router_with(TOPOLOGY, MANGLE, Config::default());
    let out = send(
        &mut r,
        LAN,
        lan_udp([8, 8, 8, 8], 5000, 53, 64, b"query"),
        secs(1),
    );
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].mark, out[0].priority), (0x2a, 0x10002));
    let m = check(&out[0].data);
    let l3 = &out[0].data[m.l3_offset..];
    assert_eq!(l3[1] >> 2, 8, "dscp cs1");
    assert_eq!(l3[8], 100, "ttl set after the decrement");
    assert_eq!(m.ports.unwrap().1, 5353);
    let (_, conn) = r.conntrack().iter().next().unwrap();
    assert_eq!(conn.mark, 0x11);

    // TCP: port and TTL, NAT on top, every checksum still right
    let out = send(&mut r, LAN, lan_tcp(40001, 443, 9, Tcp::Syn, b""), secs(1));
    let m = check(&out[0].data);
    assert_eq!(m.ports.unwrap().1, 8443);
    assert_eq!(m.src_addr, Some(ROUTER_WAN.into()));

    // IPv6: traffic class and hop limit (no header checksum), UDP checksum unchanged
    let out = send(
        &mut r,
        LAN,
        udp6(CLIENT_MAC, LAN_MAC, CLIENT6, REMOTE6, 5000, 53, 64, b"q6"),
        secs(1),
    );
    let m = check(&out[0].data);
    let l3 = &out[0].data[m.l3_offset..];
    let tc = ((l3[0] & 0xf) << 4) | (l3[1] >> 4);
    assert_eq!(tc >> 2, 16, "dscp cs2");
    assert_eq!(l3[7], 7);
    assert_eq!(m.ports.unwrap().1, 5353);
}

/// nft inserts a payload statement's dependency (`meta nfproto ipv4`) before it: a packet
/// of the other family ends the rule there, so the statements after it do not run.
#[test]
fn payload_set_dependency_ends_the_rule_for_the_other_family() {
    let rules = r#"
table inet m {
	chain pre {
		type filter hook prerouting priority mangle; policy accept;
		ip dscp set ef meta mark set 0x9
		tcp dport set 1 meta priority set 1:2
	}
}
"#;
    let mut r = router_with(TOPOLOGY, rules, Config::default());
    let out = send(
        &mut r,
        LAN,
        udp6(CLIENT_MAC, LAN_MAC, CLIENT6, REMOTE6, 5000, 53, 64, b"q6"),
        secs(1),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].mark, out[0].priority),
        (0, 0),
        "IPv6: neither rule ran on"
    );
    let l3 = &out[0].data[check(&out[0].data).l3_offset..];
    assert_eq!(
        ((l3[0] & 0xf) << 4) | (l3[1] >> 4),
        0,
        "traffic class untouched"
    );
    let out = send(
        &mut r,
        LAN,
        lan_udp([8, 8, 8, 8], 5001, 53, 64, b"q"),
        secs(1),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].mark, out[0].priority),
        (9, 0),
        "IPv4: the first rule runs on"
    );
    let l3 = &out[0].data[check(&out[0].data).l3_offset..];
    assert_eq!(l3[1] >> 2, 46, "dscp ef");
}

const FIB: &str = r#"
table inet f {
	counter rpf_drop { }
	counter local { }
	counter bcast { }
	counter to_wan { }
	counter mcast { }
	chain pre {
		type filter hook prerouting priority raw; policy accept;
		fib saddr . iif oif 0 counter name "rpf_drop" drop
		fib daddr type local counter name "local"
		fib daddr type broadcast counter name "bcast"
		fib daddr type multicast counter name "mcast"
		fib daddr oif 2 counter name "to_wan"
	}
}
"#;

#[test]
fn fib_answers_from_the_router_fib() {
    let mut r = router_with(TOPOLOGY, FIB, Config::default());
    let c = |r: &nft_engine::Router, name: &str| named_counter(r, "f", name).0;
    // spoofed: a WAN source arriving on the LAN fails reverse path
    none(
        &mut r,
        LAN,
        udp4(
            CLIENT_MAC,
            LAN_MAC,
            [8, 8, 4, 4],
            [8, 8, 8, 8],
            1,
            2,
            64,
            b"",
        ),
        secs(1),
    );
    assert_eq!(c(&r, "rpf_drop"), 1);
    // a LAN client to the internet: passes, and its destination routes out of wan (oif 2)
    lan_to_wan(&mut r, lan_udp([8, 8, 8, 8], 1, 2, 64, b""), secs(1));
    assert_eq!((c(&r, "rpf_drop"), c(&r, "to_wan")), (1, 1));
    // to the router itself, to the subnet broadcast, to a multicast group
    send(&mut r, LAN, lan_udp(ROUTER_LAN, 1, 2, 64, b""), secs(1));
    send(
        &mut r,
        LAN,
        udp4(
            CLIENT_MAC,
            [0xff; 6],
            CLIENT,
            [192, 168, 1, 255],
            1,
            2,
            64,
            b"",
        ),
        secs(1),
    );
    send(
        &mut r,
        LAN,
        udp4(
            CLIENT_MAC,
            [1, 0, 0x5e, 0, 0, 0xfb],
            CLIENT,
            [224, 0, 0, 251],
            5353,
            5353,
            1,
            b"",
        ),
        secs(1),
    );
    assert_eq!(
        (
            c(&r, "local"),
            c(&r, "bcast"),
            c(&r, "mcast"),
            c(&r, "rpf_drop")
        ),
        (1, 1, 1, 1)
    );
    // IPv6 link-local sources pass reverse path on the interface they came from
    one(
        &mut r,
        LAN,
        udp6(
            CLIENT_MAC,
            LAN_MAC,
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
            ROUTER_LAN6,
            1,
            2,
            64,
            b"",
        ),
        secs(1),
        Port::Host,
    );
    assert_eq!(c(&r, "rpf_drop"), 1);
}

const LOADS: &str = r#"
table ip l {
	chain c {
		type filter hook input priority 0; policy accept;
		tcp dport 1 meta mark set numgen inc mod 3 offset 10 accept
		tcp dport 2 meta mark set jhash ip saddr mod 4 seed 0x1 accept
		tcp sport { 3, 1000 } tcp dport { 3, 1000 } meta mark set symhash mod 1000 accept
		tcp dport 4 meta day "Thursday" meta hour "00:00"-"01:00" meta mark set 4 accept
		tcp dport 5 ether saddr 02:00:00:00:01:10 meta iiftype 1 meta pkttype host th dport 5 meta mark set 5 accept
		tcp dport 6 vlan id 5 meta mark set 66 accept
		tcp dport 6 meta mark set 6 accept
		tcp dport 7 tcp option maxseg size 1460 tcp option sack-perm exists meta mark set 7 accept
		tcp dport 7 meta mark set 77 accept
		ip option rr exists meta mark set 8 accept
		icmp type echo-request meta mark set 9 accept
		ct id 42 ct avgpkt 100 ct helper "ftp" meta mark set 10 accept
	}
}
"#;

#[test]
fn more_loads() {
    let (rs, mut st) = ruleset(LOADS);
    let mut mark =
        |f: &mut Vec<u8>, t: u64, ct: Option<CtInfo>| input(&rs, &mut st, f, t, ct, None).1;
    let marks: Vec<u32> = (0..4).map(|_| mark(&mut tcp(A, 1), 0, None)).collect();
    assert_eq!(marks, vec![10, 11, 12, 10], "numgen inc starts at 0");
    let want = nft_engine::hdr::scale(nft_engine::hdr::jhash(&A, 1), 4);
    assert_eq!(mark(&mut tcp(A, 2), 0, None), want);
    // symhash: both directions agree
    let fwd = mark(
        &mut tcp4(CLIENT_MAC, LAN_MAC, A, B, 1000, 3, 1, Tcp::Syn, b""),
        0,
        None,
    );
    let back = mark(
        &mut tcp4(CLIENT_MAC, LAN_MAC, B, A, 3, 1000, 1, Tcp::Syn, b""),
        0,
        None,
    );
    assert_eq!(fwd, back);
    assert!(fwd < 1000);
    // time: 1970-01-01 00:30 UTC was a Thursday
    assert_eq!(mark(&mut tcp(A, 4), ns(1800.0), None), 4);
    assert_eq!(mark(&mut tcp(A, 4), ns(86400.0 + 1800.0), None), 0);
    assert_eq!(mark(&mut tcp(A, 5), 0, None), 5);
    // the router hands rules untagged frames: `vlan id` never matches
    assert_eq!(mark(&mut tcp(A, 6), 0, None), 6);
    // TCP options
    let mut syn = vec![];
    etherparse::PacketBuilder::ethernet2(CLIENT_MAC, LAN_MAC)
        .ipv4(A, ROUTER_LAN, 64)
        .tcp(1, 7, 1, 100)
        .syn()
        .options(&[
            etherparse::TcpOptionElement::MaximumSegmentSize(1460),
            etherparse::TcpOptionElement::SelectiveAcknowledgementPermitted,
        ])
        .unwrap()
        .write(&mut syn, b"")
        .unwrap();
    assert_eq!(mark(&mut syn, 0, None), 7);
    assert_eq!(mark(&mut tcp(A, 7), 0, None), 77);
    // IPv4 options: record route
    let mut rr = ipv4_with_options(&[7, 7, 4, 0, 0, 0, 0, 0]);
    assert_eq!(mark(&mut rr, 0, None), 8);
    let mut echo = icmp4_echo(CLIENT_MAC, LAN_MAC, A, ROUTER_LAN, 1, 1, 64);
    assert_eq!(mark(&mut echo, 0, None), 9);
    let helper = nft_engine::rules::ifname_value("ftp");
    let ct = CtInfo {
        state: 2,
        id: 42,
        packets: [2, 0],
        bytes: [200, 0],
        helper,
        handle: 1,
        ..Default::default()
    };
    assert_eq!(mark(&mut tcp(A, 99), 0, Some(ct)), 10);
}

/// A UDP/IPv4 frame whose header carries `opts` (a multiple of 4 bytes), checksums right.
fn ipv4_with_options(opts: &[u8]) -> Vec<u8> {
    let base = udp4(CLIENT_MAC, LAN_MAC, A, ROUTER_LAN, 1, 2, 64, b"x");
    let mut f = base[..34].to_vec();
    f.extend_from_slice(opts);
    f.extend_from_slice(&base[34..]);
    f[14] = 0x45 + (opts.len() / 4) as u8;
    let total = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    let mut p = nft_wire::Ipv4Packet::new_unchecked(&mut f[14..]);
    p.fill_checksum();
    f
}

#[test]
fn ipv6_extension_headers() {
    let (rs, mut st) = ruleset(
        r#"table ip6 x { chain c { type filter hook input priority 0; policy accept;
            hbh nexthdr udp meta mark set 1 accept
            frag more-fragments 0 meta mark set 2 accept
            meta mark set 3 } }"#,
    );
    // IPv6 + hop-by-hop (8 bytes: next header UDP, length 0, PadN) + UDP
    let mut f = udp6(CLIENT_MAC, LAN_MAC, CLIENT6, ROUTER_LAN6, 1, 2, 64, b"x");
    let udp = f[54..].to_vec();
    f.truncate(54);
    f[14 + 6] = 0;
    f.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
    f.extend_from_slice(&udp);
    let plen = (f.len() - 54) as u16;
    f[18..20].copy_from_slice(&plen.to_be_bytes());
    // the mark the input hook of the ip6 table leaves on a frame
    let mut mark = |f: &mut [u8]| {
        let m = nft_wire::parse_frame(f).unwrap();
        let mut ps = nft_engine::rules::PktState::default();

        let mut p = pkt_from_frame(f, &m, 1, "lan", &mut ps);
        let ip6 = &[Family::Ip6];
        run_hook(
            &rs,
            &mut st,
            Hook::Input,
            ip6,
            &mut p,
            0,
            &mut Rec::default(),
            None,
        );
        p.mark
    };
    assert_eq!(mark(&mut f), 1);
    let mut plain = udp6(CLIENT_MAC, LAN_MAC, CLIENT6, ROUTER_LAN6, 1, 2, 64, b"x");
    assert_eq!(
        mark(&mut plain),
        3,
        "no extension headers: neither field loads"
    );
}

const OBJECTS: &str = r#"
table ip o {
	counter c1 { packets 10 bytes 100 }
	counter c2 { }
	quota q { 150 bytes }
	limit l { rate 1/second burst 1 packets }
	map m { type ipv4_addr : counter; elements = { 192.168.1.10 : "c1", 192.168.1.11 : "c2" } }
	chain c {
		type filter hook input priority 0; policy accept;
		tcp dport 1 counter name ip saddr map @m
		tcp dport 1 counter name ip saddr map { 192.168.1.12 : "c2" }
		tcp dport 2 quota name "q" accept
		tcp dport 2 drop
		tcp dport 3 limit name "l" accept
		tcp dport 3 drop
	}
}
"#;

#[test]
fn named_objects_and_object_maps() {
    let (rs, mut st) = ruleset(OBJECTS);
    let idx = |k, n| rs.object("o", k, n).unwrap();
    use nft_engine::rules::ObjKind;
    for src in [A, B, C] {
        input(&rs, &mut st, &mut tcp(src, 1), 0, None, None);
    }
    let len = tcp(A, 1).len() as u64 - 14;
    assert_eq!(st.counters[idx(ObjKind::Counter, "c1")], (11, 100 + len));
    assert_eq!(st.counters[idx(ObjKind::Counter, "c2")], (2, 2 * len));
    // 40-byte packets: the third goes over 150 bytes
    let v: Vec<_> = (0..4).map(|_| syn(&rs, &mut st, A, 2, 0.0)).collect();
    assert_eq!(
        v,
        vec![
            HookVerdict::Accept,
            HookVerdict::Accept,
            HookVerdict::Accept,
            HookVerdict::Drop
        ]
    );
    assert_eq!(syn(&rs, &mut st, A, 3, 0.0), HookVerdict::Accept);
    assert_eq!(syn(&rs, &mut st, A, 3, 0.0), HookVerdict::Drop);
    assert_eq!(syn(&rs, &mut st, A, 3, 1.0), HookVerdict::Accept);
}

const CT_SET: &str = r#"
table inet c {
	ct helper ftph { type "ftp" protocol tcp; }
	flowtable ft { hook ingress priority 0; devices = { "lan", "wan" }; }
	chain raw {
		type filter hook prerouting priority raw; policy accept;
		udp dport 53 ct zone set 5
	}
	chain pre {
		type filter hook prerouting priority 0; policy accept;
		tcp dport 21 ct helper set "ftph"
		ct label set 3
	}
	chain fw {
		type filter hook forward priority 0; policy accept;
		meta l4proto { tcp, udp } flow add @ft
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" masquerade
	}
}
"#;

#[test]
fn ct_zone_label_and_helper_set() {
    let mut r = router_with(TOPOLOGY, CT_SET, Config::default());
    lan_to_wan(&mut r, lan_udp([8, 8, 8, 8], 5000, 53, 64, b"q"), secs(1));
    lan_to_wan(&mut r, lan_tcp(40000, 21, 1, Tcp::Syn, b""), secs(1));
    let conns: Vec<_> = r
        .conntrack()
        .iter()
        .map(|(_, c)| (c.zone(), c.helper().map(str::to_string), c.labels()))
        .collect();
    assert!(conns.contains(&(5, None, 1 << 3)), "{conns:?}");
    assert!(
        conns.contains(&(0, Some("ftp".into()), 1 << 3)),
        "{conns:?}"
    );
}

/// A netdev table whose ingress chain on the LAN (accepting) holds `rules`.
fn lan_ingress(rules: &str) -> String {
    format!(
        "table netdev n {{\n\tchain i {{\n\t\ttype filter hook ingress device \"lan\" priority 0; policy accept;\n\t\t{rules}\n\t}}\n}}\n"
    )
}

/// A table counting, under `marked`, forwarded packets with mark 7.
const MARKED: &str = r#"
table inet f {
	counter marked {}
	chain fw {
		type filter hook forward priority 0; policy accept;
		meta mark 7 counter name "marked"
	}
}
"#;

/// The drop reasons counted so far, and how many each.
fn drops(r: &Router) -> Vec<(&'static str, u64)> {
    r.counters().drop_map().into_iter().collect()
}

#[test]
fn dup_and_fwd_leave_through_the_router() {
    // devices as numbers: names resolve against the host's interfaces when loading, as in nft
    let rules = lan_ingress("udp dport 9 fwd to 2")
        + r#"
table ip d {
	chain pre {
		type filter hook prerouting priority 0; policy accept;
		udp dport 10 dup to 198.18.0.1 device 2
	}
}
"#;
    let mut r = router_with(TOPOLOGY, &rules, Config::default());
    let f = lan_udp(ROUTER_LAN, 1, 9, 64, b"fwd");
    let out = lan_to_wan(&mut r, f.clone(), secs(1));
    assert_eq!(&out[14..], &f[14..], "fwd sends the packet as it is");
    assert_eq!(r.report(secs(1)).fwd_packets, 1);
    let out = send(&mut r, LAN, lan_udp(ROUTER_LAN, 1, 10, 64, b"dup"), secs(1));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].egress, Port::Iface(WAN));
    assert_eq!(&out[0].data[0..6], &GW_MAC);
    assert_eq!(out[1].egress, Port::Host);
    assert!(
        r.counters().drop_map().is_empty(),
        "{:?}",
        r.counters().drop_map()
    );
}

/// netdev `dup to IF` (`nf_dup_netdev`): a clone of the frame as it came goes out of the
/// device, byte for byte (MACs, TTL, DF, checksum untouched); the original goes on its way.
/// The stack does not check the size; the device takes up to its MTU, link header and a
/// VLAN tag's 4 bytes (the WAN's MTU is 1400: a 1418-byte frame, not a 1419-byte one).
#[test]
fn netdev_dup_sends_the_frame_as_it_came() {
    let rules = lan_ingress("udp dport 9 dup to 2");
    let mut r = router_with(TOPOLOGY, &rules, Config::default());
    // to the router itself: the original goes to the host
    for (payload, copied) in [(3, true), (1376, true), (1377, false), (1450, false)] {
        let f = lan_udp(ROUTER_LAN, 1, 9, 64, &vec![0x5a; payload]);
        let out = send(&mut r, LAN, f.clone(), secs(1));
        let wan: Vec<_> = out
            .iter()
            .filter(|t| t.egress == Port::Iface(WAN))
            .collect();
        if copied {
            assert_eq!(wan.len(), 1, "one copy on the WAN ({} bytes)", f.len());
            assert_eq!(wan[0].data, f, "byte-identical");
        } else {
            assert!(wan.is_empty(), "{} bytes do not fit the WAN", f.len());
        }
        assert!(out.iter().any(|t| t.egress == Port::Host), "the original");
    }
    assert_eq!(r.counters().dup_packets, 2);
    assert_eq!(drops(&r), vec![("frame_too_long", 2)]);
}

/// netdev `fwd to IF` (`nf_fwd_netdev_egress`): the frame as it came, its MACs, TTL and
/// checksums untouched, up to what the device takes; the walk ends there.
#[test]
fn netdev_fwd_to_a_device_sends_the_frame_as_it_came() {
    let rules = lan_ingress("udp dport 9 fwd to 2");
    let mut r = router_with(TOPOLOGY, &rules, Config::default());
    for (payload, sent) in [(3, true), (1376, true), (1377, false)] {
        let f = lan_udp(REMOTE, 1, 9, 9, &vec![0x5a; payload]);
        let out = send(&mut r, LAN, f.clone(), secs(1));
        if sent {
            assert_eq!(out.len(), 1, "{out:?}");
            assert_eq!(out[0].egress, Port::Iface(WAN));
            assert_eq!(out[0].data, f, "byte-identical, to the router's LAN MAC");
        } else {
            assert!(out.is_empty(), "{} bytes do not fit the WAN", f.len());
        }
    }
    assert_eq!(r.counters().fwd_packets, 2);
    assert_eq!(drops(&r), vec![("frame_too_long", 1)]);
}

/// `fwd ip to ADDR device IF` (`nft_fwd_neigh`): a link header to ADDR's neighbour from the
/// device's MAC, the TTL (hop limit) one less and the IPv4 checksum patched; a TTL of 1 or
/// less is dropped by the rule, with no ICMP error; a packet of the other family breaks the
/// rule, and the next one runs.
#[test]
fn netdev_fwd_to_a_neighbour_builds_the_link_header_and_lowers_the_ttl() {
    let rules =
        lan_ingress("udp dport 9 fwd ip to 198.18.0.1 device 2\n\t\tudp dport 9 meta mark set 7")
            + MARKED;
    let mut r = router_with(TOPOLOGY, &rules, Config::default());
    for (ttl, left) in [(9u8, 8u8), (2, 1), (255, 254)] {
        let f = lan_udp(REMOTE, 1, 9, ttl, b"neigh");
        let out = one(&mut r, LAN, f.clone(), secs(1), Port::Iface(WAN));
        assert_eq!(&out[0..6], &GW_MAC);
        assert_eq!(&out[6..12], &WAN_MAC);
        let m = check(&out);
        assert_eq!(m.ttl, left);
        // everything else as it came
        assert_eq!(&out[14..22], &f[14..22]);
        assert_eq!(&out[23..24], &f[23..24]);
        assert_eq!(&out[26..], &f[26..]);
    }
    assert_eq!(r.counters().fwd_packets, 3);
    for ttl in [1, 0] {
        none(&mut r, LAN, lan_udp(REMOTE, 1, 9, ttl, b"neigh"), secs(1));
    }
    assert_eq!(
        r.counters().dropped(nft_engine::counters::Drop::RuleDrop),
        2
    );
    assert_eq!(r.counters().fwd_packets, 3);
    // IPv6: `fwd ip` breaks its rule; the next marks it, and it is routed (hop limit 63)
    let f = udp6(CLIENT_MAC, LAN_MAC, CLIENT6, REMOTE6, 1, 9, 64, b"v6");
    let out = one(&mut r, LAN, f, secs(1), Port::Iface(WAN));
    assert_eq!(check(&out).ttl, 63);
    assert_eq!(r.counters().fwd_packets, 3);
    assert_eq!(named_counter(&r, "f", "marked").0, 1);
}

/// `meta nfproto` in a netdev chain reads NFPROTO_NETDEV (5), the hook's family, as the
/// kernel's `nft_pf(pkt)` does; in an inet ingress chain, the packet's. (nft refuses `meta
/// nfproto` outside inet tables, so the netdev chain is made by changing the family of a
/// loaded inet one: the engine compiles whatever it is given.)
#[test]
fn meta_nfproto_in_a_netdev_chain_is_netdev() {
    let rules = r#"
table inet n {
	chain i {
		type filter hook ingress device "lan" priority 0; policy accept;
		meta nfproto ipv4 drop
		meta nfproto != ipv6 meta mark set 7
	}
}
"#
    .to_string()
        + MARKED;
    for netdev in [false, true] {
        let mut ast = load_str("r.nft", &rules, &LoadOpts::default()).unwrap();
        if netdev {
            ast.tables[0].family = Family::Netdev;
        }
        let rs = compile(&ast).unwrap();
        for trace in [false, true] {
            let cfg = Config {
                trace,
                ..Config::default()
            };
            let topo = nft_engine::topology::Topology::from_toml(TOPOLOGY).unwrap();
            let mut r = nft_engine::Router::new(topo, rs.clone(), cfg);
            let v4 = lan_udp(REMOTE, 1, 53, 64, b"q");
            let v6 = udp6(CLIENT_MAC, LAN_MAC, CLIENT6, REMOTE6, 1, 53, 64, b"q");
            let out4 = send(&mut r, LAN, v4, secs(1));
            let out6 = send(&mut r, LAN, v6, secs(1));
            let marked = named_counter(&r, "f", "marked").0;
            if netdev {
                // 5 is neither: both forwarded, both marked
                assert_eq!((out4.len(), out6.len(), marked), (1, 1, 2), "trace {trace}");
            } else {
                // IPv4 dropped, IPv6 forwarded unmarked
                assert_eq!((out4.len(), out6.len(), marked), (0, 1, 0), "trace {trace}");
            }
        }
    }
}

#[test]
fn log_lines_carry_the_options() {
    let rules = r#"
table inet l {
	chain fw {
		type filter hook forward priority 0; policy accept;
		tcp dport 443 meta mark set 7 log prefix "web " level info flags all
		udp dport 53 log group 3 snaplen 64
	}
}
"#;
    let mut r = router_with(TOPOLOGY, rules, Config::default());
    send(&mut r, LAN, lan_tcp(40000, 443, 77, Tcp::Syn, b""), secs(1));
    send(
        &mut r,
        LAN,
        lan_udp([8, 8, 8, 8], 5000, 53, 64, b"q"),
        secs(1),
    );
    let logs = r.report(secs(1)).logs;
    assert_eq!(logs.len(), 2);
    assert!(logs[0].starts_with("web IN=lan OUT=wan hook=Forward level=info MAC=02:00:00:00:01:01:02:00:00:00:01:10:08:00 SRC=192.168.1.10 DST=203.0.113.5"), "{}", logs[0]);
    assert!(
        logs[0].contains("PROTO=TCP SPT=40000 DPT=443 SEQ=77 ACK=0")
            && logs[0].contains(" SYN ")
            && logs[0].ends_with("MARK=0x7"),
        "{}",
        logs[0]
    );
    assert!(
        logs[1].contains("group=3 snaplen=64") && logs[1].contains("PROTO=UDP SPT=5000 DPT=53"),
        "{}",
        logs[1]
    );
}

#[test]
fn what_remains_unsupported_is_named() {
    let cases = [
        ("table ip t { chain c { type filter hook prerouting priority 0; tcp flags syn synproxy mss 1460 } }", "synproxy"),
        ("table ip t { synproxy sp { mss 1460; wscale 7; } chain c { type filter hook output priority 0; tcp dport 80 synproxy name \"sp\" } }", "synproxy"),
    ];
    for (src, want) in cases {
        let ast = match load_str("x.nft", src, &LoadOpts::default()) {
            Ok(a) => a,
            Err(e) => panic!("{src}: {}", e.rendered),
        };
        let e = compile(&ast).unwrap_err().to_string();
        assert!(
            e.contains(want) && e.contains("not supported"),
            "{src}: {e}"
        );
    }
}

#[test]
fn mangling_never_panics_on_short_or_odd_frames() {
    let (rs, mut st) = ruleset(
        r#"table inet m { chain c { type filter hook input priority 0; policy accept;
            ip dscp set cs1 ip ttl set 1
            tcp dport set 1
            udp sport set 2
            icmp id set 3
            tcp option maxseg size 1 meta mark set 1
            ip6 hoplimit set 1 } }"#,
    );
    let frames = [
        tcp(A, 1),
        udp4(CLIENT_MAC, LAN_MAC, A, B, 1, 2, 64, b""),
        icmp4_echo(CLIENT_MAC, LAN_MAC, A, B, 1, 1, 64),
        udp6(CLIENT_MAC, LAN_MAC, CLIENT6, ROUTER_LAN6, 1, 2, 64, b""),
        ipv4_with_options(&[1, 1, 1, 0]),
    ];
    for mut f in frames {
        let (v, _) = input(&rs, &mut st, &mut f, 0, None, None);
        assert_eq!(v, HookVerdict::Accept);
        check(&f);
    }
}

/// Every statement and match of this file at once, on mutated frames through the router.
const EVERYTHING: &str = r#"
table inet all {
	set seen { type ipv4_addr; size 4; flags dynamic,timeout; timeout 2s; }
	set m { type ipv4_addr; flags dynamic; }
	counter c { }
	chain raw {
		type filter hook prerouting priority raw; policy accept;
		fib saddr . iif oif 0 counter name "c"
		udp dport 53 ct zone set 2
		ip dscp set cs1 ip ttl set 9
		ip6 dscp set cs2 ip6 hoplimit set 9
		tcp dport set 81
		udp sport set 4000
		icmp id set 3
		tcp option maxseg size set 1000
	}
	chain pre {
		type filter hook prerouting priority 0; policy accept;
		add @seen { ip saddr } update @seen { ip saddr timeout 5s }
		add @m { ip saddr limit rate 5/second } add @m { ip saddr ct count over 3 }
		meta mark set jhash ip saddr . tcp dport mod 7 offset 1
		meta priority set numgen inc mod 3 ct mark set ct mark | 0x10 ct label set 1
		hbh nexthdr 6 frag more-fragments 1 tcp option sack-perm exists
		ip option rr exists
		log prefix "x " flags all
		fib daddr type local accept
	}
	chain fw {
		type filter hook forward priority 0; policy accept;
		rt ip nexthop 198.18.0.1 rt mtu 1360 meta l4proto tcp
		delete @seen { ip saddr }
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" masquerade
	}
}
"#;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_feature_on_mutated_frames_never_panics(seed in prop::collection::vec((0usize..90, any::<u8>()), 0..8), which in 0usize..5, t in 0u64..10) {
        let mut r = router_with(TOPOLOGY, EVERYTHING, Config::default());
        let mut f = match which {
            0 => lan_udp(REMOTE, 5000, 53, 64, b"query"),
            1 => lan_tcp(5000, 443, 1, Tcp::Syn, b""),
            2 => udp6(CLIENT_MAC, LAN_MAC, CLIENT6, REMOTE6, 5000, 53, 64, b"q6"),
            3 => icmp4_echo(CLIENT_MAC, LAN_MAC, CLIENT, REMOTE, 7, 1, 64),
            _ => ipv4_with_options(&[7, 7, 4, 0, 0, 0, 0, 0]),
        };
        for (at, v) in seed {
            if let Some(b) = f.get_mut(at) {
                *b = v;
            }
        }
        let out = send(&mut r, LAN, f.clone(), secs(t));
        let _ = send(&mut r, LAN, f, secs(t + 1));
        for o in &out {
            prop_assert!(nft_wire::parse_frame(&o.data).is_ok());
        }
    }
}
