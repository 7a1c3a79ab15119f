//! Compiled rulesets against real packets: verdicts, jumps, sets, counters, NAT and reject
//! hand-offs.

use nft_engine::rules::{
    compile, pkt_from_frame, run_hook, Actions, CtInfo, Hook, HookVerdict, NatSpec, Pkt, Reject,
    State,
};
use nft_lang::ast::Family;
use nft_lang::ruleset::{load_str, LoadOpts};

fn tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, syn: bool) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1000, 65535);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut out = vec![];
    b.write(&mut out, b"hello").unwrap();
    out
}

fn udp6(dport: u16) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
        .udp(5353, dport);
    let mut out = vec![];
    b.write(&mut out, b"q").unwrap();
    out
}

/// A `nat` hand-off: the statement, its address range and its port range.
type NatCall = (NatSpec, Option<(u128, u128)>, Option<(u16, u16)>);

#[derive(Default)]
struct Rec {
    nat: Vec<NatCall>,
    rejects: Vec<Reject>,
    flows: Vec<String>,
    logs: Vec<String>,
}

impl Actions for Rec {
    fn nat(&mut self, _p: &Pkt, s: &NatSpec, a: Option<(u128, u128)>, port: Option<(u16, u16)>) {
        self.nat.push((s.clone(), a, port));
    }
    fn reject(&mut self, _p: &Pkt, r: &Reject) {
        self.rejects.push(r.clone());
    }
    fn flow_add(&mut self, _p: &Pkt, ft: &str) {
        self.flows.push(ft.into());
    }
    fn notrack(&mut self, _p: &Pkt) {}
    fn log(&mut self, _p: &Pkt, prefix: Option<&str>, _l: u8, _r: &str) {
        self.logs.push(prefix.unwrap_or("").into());
    }
}

const RULES: &str = r#"
table inet fw {
	flowtable ft { hook ingress priority 0; devices = { "lan", "wan" }; }
	set blocked { type ipv4_addr; flags interval; elements = { 10.9.0.0/16 } }
	map portmap { type inet_service : ipv4_addr; elements = { 8080 : 192.168.1.10 } }
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		ip saddr @blocked counter drop
		tcp dport { 22, 80 } counter accept
		iifname "wan*" tcp dport 23 log prefix "telnet " reject with tcp reset
		udp dport 53 jump dns
		meta l4proto udp udp dport 5353 accept
		meta mark set 0x2a
	}
	chain dns {
		ip6 saddr 2001:db8::/32 return
		accept
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		meta l4proto { tcp, udp } flow add @ft
	}
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan" dnat ip to tcp dport map @portmap
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" meta l4proto tcp masquerade to :1024-65535 random
	}
}
"#;

/// The compiled [`RULES`], their state and what they handed to the caller.
struct Harness {
    rs: nft_engine::rules::Ruleset,
    st: State,
    rec: Rec,
}

impl Harness {
    fn new() -> Self {
        let ast = load_str("rules.nft", RULES, &LoadOpts::default())
            .map_err(|e| e.rendered)
            .unwrap();
        let rs = compile(&ast).unwrap();
        let st = State::new(&rs);
        Harness {
            rs,
            st,
            rec: Rec::default(),
        }
    }

    /// Runs `hook` on a frame that came in on `iif`; the verdict and the mark the rules left.
    fn run(
        &mut self,
        hook: Hook,
        frame: &mut [u8],
        iif: &str,
        ct: Option<CtInfo>,
    ) -> (HookVerdict, u32) {
        let m = nft_wire::parse_frame(frame).unwrap();
        let mut ps = nft_engine::rules::PktState::default();

        let mut p = pkt_from_frame(frame, &m, 1, iif, &mut ps);
        p.conn = ct.as_ref().map(|c| c as &dyn nft_engine::rules::CtFacts);
        let v = run_hook(
            &self.rs,
            &mut self.st,
            hook,
            &[Family::Inet, Family::Ip],
            &mut p,
            0,
            &mut self.rec,
            None,
        );
        (v, p.mark)
    }
}

#[test]
fn input_verdicts() {
    let mut t = Harness::new();
    let mut ssh = tcp4([192, 168, 1, 2], [192, 168, 1, 1], 40000, 22, true);
    assert_eq!(
        t.run(Hook::Input, &mut ssh, "lan", None).0,
        HookVerdict::Accept
    );
    let mut blocked = tcp4([10, 9, 3, 4], [192, 168, 1, 1], 40000, 22, true);
    assert_eq!(
        t.run(Hook::Input, &mut blocked, "lan", None).0,
        HookVerdict::Drop
    );
    // port 25 from the LAN: no rule accepts it, the mark is set, the policy drops it
    let mut smtp = tcp4([192, 168, 1, 2], [192, 168, 1, 1], 40000, 25, true);
    assert_eq!(
        t.run(Hook::Input, &mut smtp, "lan", None),
        (HookVerdict::Drop, 0x2a)
    );
    // established connections pass whatever the port
    let est = CtInfo {
        state: 2,
        ..Default::default()
    };
    let mut any = tcp4([192, 168, 1, 2], [192, 168, 1, 1], 40000, 25, false);
    assert_eq!(
        t.run(Hook::Input, &mut any, "lan", Some(est)).0,
        HookVerdict::Accept
    );
    // counters: the blocked packet counted once; ssh once (with its L3 length)
    assert_eq!(t.st.counters[0].0, 1);
    assert_eq!(t.st.counters[1], (1, ssh.len() as u64 - 14));
}

#[test]
fn reject_and_log_go_to_actions() {
    let mut t = Harness::new();
    let mut telnet = tcp4([198, 18, 0, 9], [198, 18, 0, 2], 40000, 23, true);
    assert_eq!(
        t.run(Hook::Input, &mut telnet, "wan0", None).0,
        HookVerdict::Drop
    );
    assert_eq!(t.rec.rejects, vec![Reject::TcpReset]);
    assert_eq!(t.rec.logs, vec!["telnet ".to_string()]);
    // the wildcard does not match "lan"
    t.rec = Rec::default();
    let mut telnet = tcp4([192, 168, 1, 2], [192, 168, 1, 1], 40000, 23, true);
    assert_eq!(
        t.run(Hook::Input, &mut telnet, "lan", None).0,
        HookVerdict::Drop
    );
    assert!(t.rec.rejects.is_empty());
}

#[test]
fn jump_and_return() {
    let mut t = Harness::new();
    // udp/53 over IPv6 from 2001:db8::/32: dns returns, then nothing accepts: policy drop
    let mut q = udp6(53);
    assert_eq!(t.run(Hook::Input, &mut q, "lan", None).0, HookVerdict::Drop);
    // udp/5353 is accepted by the rule after the jump
    let mut m = udp6(5353);
    assert_eq!(
        t.run(Hook::Input, &mut m, "lan", None).0,
        HookVerdict::Accept
    );
}

#[test]
fn nat_and_flow_add_hand_offs() {
    let mut t = Harness::new();
    let mut web = tcp4([198, 18, 0, 9], [198, 18, 0, 2], 40000, 8080, true);
    assert_eq!(
        t.run(Hook::Prerouting, &mut web, "wan", None).0,
        HookVerdict::Accept
    );
    let (spec, addr, port) = t.rec.nat.pop().unwrap();
    assert_eq!(spec.kind, nft_engine::rules::NatKind::Dnat);
    assert_eq!(addr, Some((0xc0a8010a, 0xc0a8010a)));
    assert_eq!(port, None);
    // no map entry for 8081: the rule does not match, no NAT
    let mut other = tcp4([198, 18, 0, 9], [198, 18, 0, 2], 40000, 8081, true);
    t.run(Hook::Prerouting, &mut other, "wan", None);
    assert!(t.rec.nat.is_empty());
    let mut fwd = tcp4([192, 168, 1, 2], [198, 18, 0, 9], 40000, 443, false);
    t.run(Hook::Forward, &mut fwd, "lan", None);
    assert_eq!(t.rec.flows, vec!["ft".to_string()]);
}

#[test]
fn unsupported_expressions_are_compile_errors() {
    let ast = load_str(
        "x.nft",
        "table ip t { chain c { type filter hook prerouting priority 0; tcp flags syn synproxy mss 1460 } }",
        &LoadOpts::default(),
    )
    .unwrap();
    let e = compile(&ast).unwrap_err();
    assert!(e.to_string().contains("synproxy"), "{e}");
    assert!(e.to_string().contains("not supported"), "{e}");
}

/// Small constant sets and verdict maps are folded into their rules (compares instead of a
/// lookup) and answer as the lookup did; a set rules add to is left a lookup, and sees what
/// they add.
#[test]
fn constant_sets_fold_into_their_rules_and_answer_the_same() {
    use nft_engine::rules::{Op, Test};
    let src = r#"
table inet t {
	set seen { type ipv4_addr; flags dynamic; }
	chain c {
		type filter hook input priority filter; policy drop;
		ct state vmap { established : accept, related : accept }
		ip saddr @seen counter accept
		tcp dport { 22, 80 } add @seen { ip saddr } counter accept
		meta l4proto != { tcp, udp } counter accept
	}
}
"#;
    let ast = load_str("t.nft", src, &LoadOpts::default())
        .map_err(|e| e.rendered)
        .unwrap();
    let rs = compile(&ast).unwrap();
    let ops: Vec<&Op> = rs.chains[0].rules.iter().flat_map(|r| &r.ops).collect();
    assert!(ops
        .iter()
        .any(|o| matches!(o, Op::VmapConst { elems, .. } if elems.len() == 2)));
    let any_of: Vec<&Test> = ops
        .iter()
        .filter_map(|o| match o {
            Op::Match(m) => Some(&m.test),
            _ => None,
        })
        .filter(|t| matches!(t, Test::AnyOf(_)))
        .collect();
    assert_eq!(
        any_of.len(),
        2,
        "the port set and the protocol set: {any_of:?}"
    );
    assert!(
        ops.iter()
            .any(|o| matches!(o, Op::Match(m) if matches!(m.test, Test::InSet(_)))),
        "the set rules add to stays a lookup"
    );
    let mut st = State::new(&rs);
    let mut rec = Rec::default();
    let mut run = |frame: &mut [u8], ct: Option<CtInfo>, st: &mut State| {
        let m = nft_wire::parse_frame(frame).unwrap();
        let mut ps = nft_engine::rules::PktState::default();

        let mut p = pkt_from_frame(frame, &m, 1, "lan", &mut ps);
        p.conn = ct.as_ref().map(|c| c as &dyn nft_engine::rules::CtFacts);
        run_hook(
            &rs,
            st,
            Hook::Input,
            &[Family::Inet],
            &mut p,
            0,
            &mut rec,
            None,
        )
    };
    let new = Some(CtInfo {
        state: 8,
        ..Default::default()
    });
    let est = Some(CtInfo {
        state: 2,
        ..Default::default()
    });
    let mut ssh = tcp4([192, 168, 1, 2], [192, 168, 1, 1], 40000, 22, true);
    let mut smtp = tcp4([192, 168, 1, 2], [192, 168, 1, 1], 40000, 25, true);
    let mut other = tcp4([192, 168, 1, 3], [192, 168, 1, 1], 40000, 25, true);
    // a vmap hit, then a miss falls through to the next rules
    assert_eq!(run(&mut smtp, est, &mut st), HookVerdict::Accept);
    assert_eq!(run(&mut smtp, new, &mut st), HookVerdict::Drop);
    // the folded port set; its rule adds the source to the dynamic set...
    assert_eq!(run(&mut ssh, new, &mut st), HookVerdict::Accept);
    // ...which then accepts that source on any port, and no other
    assert_eq!(run(&mut smtp, new, &mut st), HookVerdict::Accept);
    assert_eq!(run(&mut other, new, &mut st), HookVerdict::Drop);
    // the negated protocol set: UDP does not match, so the policy drops it
    let mut q = udp6(53);
    assert_eq!(run(&mut q, new, &mut st), HookVerdict::Drop);
}

/// A named priority plus an offset past 32 bits: the kernel's priority is the 32-bit sum,
/// wrapped as nft 1.0.6 lists it (`raw - 2147483648` is 2147483348), never an overflow.
#[test]
fn a_priority_offset_past_32_bits_wraps() {
    for (off, prio) in [
        ("raw - 2147483648", 2_147_483_348),
        ("security + 2147483647", -2_147_483_599),
        ("filter + 4294967296", 0),
    ] {
        let text = format!(
            "table inet t {{\n chain c {{\n  type filter hook input priority {off};\n }}\n}}\n"
        );
        let ast = load_str("f.nft", &text, &LoadOpts::default()).unwrap();
        let rs = compile(&ast).unwrap();
        assert_eq!(rs.base[0].prio, prio, "priority {off}");
    }
}

/// A set of one element answers as the set would: an exact value, not the any-of-these-flags
/// test of a bare flag; the negation of a range; a prefix.
#[test]
fn a_set_of_one_element_keeps_its_meaning() {
    let src = r#"
table ip t {
	chain c {
		type filter hook input priority filter; policy accept;
		tcp flags { syn } counter
		tcp flags syn counter
		tcp dport != { 1-5 } counter
		ip saddr { 192.168.1.0/24 } counter
		ct state { established } counter
	}
}
"#;
    let ast = load_str("t.nft", src, &LoadOpts::default())
        .map_err(|e| e.rendered)
        .unwrap();
    let rs = compile(&ast).unwrap();
    let mut st = State::new(&rs);
    let mut rec = Rec::default();
    let frame = |src: [u8; 4], dport: u16, ack: bool| {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, [192, 168, 1, 1], 64)
            .tcp(40000, dport, 1000, 65535)
            .syn();
        let b = if ack { b.ack(1) } else { b };
        let mut out = vec![];
        b.write(&mut out, b"").unwrap();
        out
    };
    let est = CtInfo {
        state: 2,
        ..Default::default()
    };
    for (mut f, ct) in [
        (frame([192, 168, 1, 2], 22, false), None),
        (frame([10, 0, 0, 2], 3, true), Some(est)),
    ] {
        let m = nft_wire::parse_frame(&f).unwrap();
        let mut ps = nft_engine::rules::PktState::default();
        let mut p = pkt_from_frame(&mut f, &m, 1, "lan", &mut ps);
        p.conn = ct.as_ref().map(|c| c as &dyn nft_engine::rules::CtFacts);
        run_hook(
            &rs,
            &mut st,
            Hook::Input,
            &[Family::Ip],
            &mut p,
            0,
            &mut rec,
            None,
        );
    }
    let packets: Vec<u64> = st.counters.iter().map(|c| c.0).collect();
    // the SYN matches `{ syn }`, the SYN+ACK only the bare flag test
    assert_eq!(packets, [1, 2, 1, 1, 1]);
}
