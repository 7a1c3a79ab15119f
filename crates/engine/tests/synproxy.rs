//! `synproxy` through the whole router, for a forwarded connection (LAN client, WAN server):
//! the cookie SYN-ACK, a bad ACK, the handshake with the server, and data both ways with
//! sequence numbers and timestamps adjusted. Packets built with etherparse; every frame out
//! has its checksums verified.

mod common;
use common::*;

use etherparse::{PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use nft_engine::synproxy::{cookie_time, CookieKey, Endpoints};
use nft_engine::{Config, Port, Router};
use std::net::IpAddr;
use std::time::Duration;

const RULES_SP: &str = r#"
table inet t {
	flowtable ft {
		hook ingress priority 0; devices = { lan, wan };
	}
	chain raw {
		type filter hook prerouting priority raw; policy accept;
		tcp flags & (syn | ack) == syn tcp dport { 80, 443 } notrack
	}
	synproxy web2 {
		mss 1400
		wscale 3
	}
	chain fw {
		type filter hook forward priority filter; policy accept;
		ct state invalid,untracked tcp dport 80 synproxy mss 1460 wscale 7 timestamp sack-perm
		ct state invalid,untracked tcp dport 443 synproxy name tcp dport map { 443 : "web2" }
		ct state invalid drop
		ct state established flow add @ft
	}
}
"#;

fn router_sp() -> Router {
    router_sp_with(RULES_SP)
}

fn router_sp_with(rules: &str) -> Router {
    let mut cfg = Config::default();
    // the documented setting for synproxy: a lone ACK opens nothing
    cfg.conntrack.tcp_loose = false;
    router_with(TOPOLOGY, rules, cfg)
}

/// A TCP frame with options, from `src` to `dst` (LAN client or WAN server side).
#[allow(clippy::too_many_arguments)]
fn seg(
    from_wan: bool,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    window: u16,
    opts: &[TcpOptionElement],
    payload: &[u8],
) -> Vec<u8> {
    let (smac, dmac, src, dst) = if from_wan {
        (GW_MAC, WAN_MAC, REMOTE, WAN_DST.with(|d| d.get()))
    } else {
        (CLIENT_MAC, LAN_MAC, CLIENT, REMOTE)
    };
    let mut b = PacketBuilder::ethernet2(smac, dmac)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seq, window);
    if syn {
        b = b.syn();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    let b = b.options(opts).unwrap();
    let mut out = vec![];
    b.write(&mut out, payload).unwrap();
    out
}

struct Tcp {
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    syn: bool,
    ackf: bool,
    fin: bool,
    rst: bool,
    window: u16,
    opts: Vec<TcpOptionElement>,
    payload: Vec<u8>,
}

fn tcp_of(frame: &[u8]) -> Tcp {
    check(frame);
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
        panic!("not IPv4")
    };
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!("not TCP")
    };
    Tcp {
        src: ip.header().source(),
        dst: ip.header().destination(),
        sport: t.source_port(),
        dport: t.destination_port(),
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        syn: t.syn(),
        ackf: t.ack(),
        fin: t.fin(),
        rst: t.rst(),
        window: t.window_size(),
        opts: t.options_iterator().map(|o| o.unwrap()).collect(),
        payload: t.payload().to_vec(),
    }
}

fn ts_of(t: &Tcp) -> (u32, u32) {
    t.opts
        .iter()
        .find_map(|o| match o {
            TcpOptionElement::Timestamp(a, b) => Some((*a, *b)),
            _ => None,
        })
        .expect("a timestamp option")
}

fn endpoints(dport: u16) -> Endpoints {
    Endpoints {
        saddr: IpAddr::from(CLIENT),
        daddr: IpAddr::from(REMOTE),
        sport: 40000,
        dport,
    }
}

thread_local! {
    /// Where the server's frames go: the client, or the router's WAN address (masquerade).
    static WAN_DST: std::cell::Cell<[u8; 4]> = const { std::cell::Cell::new(CLIENT) };
}

const T0: Duration = Duration::from_secs(1_000);

fn client_syn() -> Vec<u8> {
    client_syn_at(1000)
}

/// The client's SYN to port 80 with initial sequence `isn`, its options as Linux sends them.
fn client_syn_at(isn: u32) -> Vec<u8> {
    seg(
        false,
        40000,
        80,
        isn,
        None,
        true,
        64240,
        &[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(7777, 0),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(5),
        ],
        b"",
    )
}

/// A segment of the client's (40000 → 80, ACK set, window 502), once the cookie is known.
fn from_client(seq: u32, ack: u32, opts: &[TcpOptionElement], payload: &[u8]) -> Vec<u8> {
    seg(false, 40000, 80, seq, Some(ack), false, 502, opts, payload)
}

/// A segment of the server's (80 → 40000, ACK set, window 2000, no masquerade).
fn from_server(
    seq: u32,
    ack: u32,
    syn: bool,
    opts: &[TcpOptionElement],
    payload: &[u8],
) -> Vec<u8> {
    seg(true, 80, 40000, seq, Some(ack), syn, 2000, opts, payload)
}

/// The same segment with FIN set, checksums recomputed.
fn with_fin(mut f: Vec<u8>) -> Vec<u8> {
    f[14 + 20 + 13] |= 0x01;
    fix_tcp(&mut f);
    f
}

/// What the router sent while a synproxied connection opened.
struct Opened {
    /// The cookie: the sequence number of the router's SYN-ACK to the client.
    cookie: u32,
    /// The router's SYN to the server, sent when the client's ACK carried a good cookie.
    syn: Tcp,
    /// The router's frames once the server answered: its ACK to the server, the client's
    /// SYN-ACK turned into an ACK.
    answered: Vec<nft_engine::TxFrame>,
}

/// A connection through `synproxy` from the client's SYN (initial sequence `isn`, answered with
/// a cookie) and ACK (the router's SYN to the server) to the server's SYN-ACK (initial sequence
/// `server_isn`, timestamp `server_ts`), all at `now`.
fn open_synproxied(
    r: &mut Router,
    isn: u32,
    server_isn: u32,
    server_ts: u32,
    now: Duration,
) -> Opened {
    let cookie = tcp_of(&one(r, LAN, client_syn_at(isn), now, Port::Iface(LAN))).seq;
    let ack = from_client(isn.wrapping_add(1), cookie.wrapping_add(1), &[], b"");
    let syn = tcp_of(&one(r, LAN, ack, now, Port::Iface(WAN)));
    let ts = [TcpOptionElement::Timestamp(server_ts, 0)];
    let synack = from_server(server_isn, isn.wrapping_add(1), true, &ts, b"");
    let answered = send(r, WAN, synack, now);
    Opened {
        cookie,
        syn,
        answered,
    }
}

/// The connection `open_synproxied(r, 1000, 50000, ..)` opened, closed: the client's FIN, the
/// server's, the client's last ACK. Returns the FINs as they left (to the server, to the
/// client).
fn close_synproxied(r: &mut Router, cookie: u32, now: Duration) -> (Tcp, Tcp) {
    let fin = with_fin(from_client(1001, cookie.wrapping_add(1), &[], b""));
    let to_server = tcp_of(&one(r, LAN, fin, now, Port::Iface(WAN)));
    let fin = with_fin(from_server(50001, 1002, false, &[], b""));
    let to_client = tcp_of(&one(r, WAN, fin, now, Port::Iface(LAN)));
    let last = from_client(1002, cookie.wrapping_add(2), &[], b"");
    one(r, LAN, last, now, Port::Iface(WAN));
    (to_server, to_client)
}

/// Step 1: the SYN-ACK's bytes: flags, options (as the kernel lays them out), the cookie.
#[test]
fn syn_is_answered_with_a_cookie_synack_and_goes_no_further() {
    let mut r = router_sp();
    let out = one(&mut r, LAN, client_syn(), T0, Port::Iface(LAN));
    assert_eq!(&out[0..6], &CLIENT_MAC);
    // synproxy_build_ip: ID 0, DF, TTL 64, no TOS
    assert_eq!(&out[14..16], &[0x45, 0]);
    assert_eq!(&out[18..23], &[0, 0, 0x40, 0, 64]);
    let t = tcp_of(&out);
    assert_eq!(
        (t.src, t.dst, t.sport, t.dport),
        (REMOTE, CLIENT, 80, 40000)
    );
    assert!(t.syn && t.ackf && !t.fin && !t.rst);
    assert_eq!(t.ack, 1001);
    assert_eq!(t.window, 0);
    let now_ms = (T0.as_millis() as u32) & !0x3f;
    // wscale 5 of the client and its SACK permission ride in the timestamp's low bits
    let tsval = now_ms | 5 | 1 << 4;
    assert_eq!(
        t.opts,
        vec![
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(tsval, 7777),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ]
    );
    let key = CookieKey::default();
    let minute = cookie_time(T0.as_nanos() as u64);
    assert_eq!(key.check(&endpoints(80), 1000, t.seq, minute), Some(1460));
    // another SYN's sequence (the low bits carry only the MSS index, as in the kernel: a
    // sequence off by a few may still decode; one off by more does not)
    assert_eq!(
        key.check(&endpoints(80), 1000 + 0x1_0000, t.seq, minute),
        None
    );
    assert_eq!(key.check(&endpoints(81), 1000, t.seq, minute), None);
    assert_eq!(r.counters().synproxy_synacks_sent, 1);
    // the SYN was untracked and stopped: no connection
    assert_eq!(r.conntrack().iter().count(), 0);
}

/// Step 2, refused: an ACK whose cookie is wrong (or unknown) is dropped and counted.
#[test]
fn ack_with_a_wrong_cookie_is_dropped_and_counted() {
    let mut r = router_sp();
    let synack = tcp_of(&one(&mut r, LAN, client_syn(), T0, Port::Iface(LAN)));
    let bad = from_client(1001, synack.seq.wrapping_add(2), &[], b"");
    none(&mut r, LAN, bad, T0);
    assert_eq!(
        r.counters().drop_map().get("synproxy_cookie_invalid"),
        Some(&1)
    );
    // three minutes on, the right cookie is too old
    let late = from_client(1001, synack.seq.wrapping_add(1), &[], b"");
    none(&mut r, LAN, late, T0 + Duration::from_secs(180));
    assert_eq!(
        r.counters().drop_map().get("synproxy_cookie_invalid"),
        Some(&2)
    );
    assert_eq!(r.conntrack().iter().count(), 0);
    assert_eq!(r.counters().synproxy_cookies_valid, 0);
}

/// Steps 2 and 3: the whole handshake, then data both ways, sequence numbers and timestamps
/// adjusted, checksums valid; the connection stays off the flowtable.
#[test]
fn full_handshake_then_data_both_ways_adjusted() {
    handshake_and_data(false);
}

/// The same behind masquerade: the router's SYN to the server is the connection's first
/// packet and takes the NAT binding; the server answers the router's WAN address.
#[test]
fn full_handshake_behind_masquerade() {
    handshake_and_data(true);
}

fn handshake_and_data(masq: bool) {
    let rules = if masq {
        format!("{RULES_SP}\ntable ip nat {{ chain post {{ type nat hook postrouting priority srcnat; oifname \"wan\" masquerade }} }}\n")
    } else {
        RULES_SP.to_string()
    };
    let mut r = router_sp_with(&rules);
    let synack = tcp_of(&one(&mut r, LAN, client_syn(), T0, Port::Iface(LAN)));
    let cookie = synack.seq;
    let its = ts_of(&synack).0;
    let t1 = T0 + Duration::from_millis(20);
    // the client's ACK: the router opens the connection to the server
    let ack = from_client(
        1001,
        cookie.wrapping_add(1),
        &[
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::Timestamp(7778, its),
        ],
        b"",
    );
    let out = one(&mut r, LAN, ack, t1, Port::Iface(WAN));
    assert_eq!(&out[0..6], &GW_MAC);
    let syn = tcp_of(&out);
    let (wan_src, port) = if masq {
        assert_eq!(syn.src, ROUTER_WAN);
        (ROUTER_WAN, syn.sport)
    } else {
        (CLIENT, 40000)
    };
    WAN_DST.with(|d| d.set(wan_src));
    assert_eq!(
        (syn.src, syn.dst, syn.sport, syn.dport),
        (wan_src, REMOTE, port, 80)
    );
    assert!(syn.syn && !syn.ackf);
    assert_eq!(syn.seq, 1000);
    // the cookie rides in the acknowledgement field
    assert_eq!(syn.ack, cookie);
    assert_eq!(syn.window, 502);
    assert_eq!(
        syn.opts,
        vec![
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(7778, its),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(5),
        ]
    );
    assert_eq!(r.counters().synproxy_cookies_valid, 1);
    assert_eq!(r.conntrack().iter().count(), 1);

    // the server's SYN-ACK: the router answers both sides and keeps it
    let t2 = t1 + Duration::from_millis(30);
    let sa = seg(
        true,
        80,
        port,
        50000,
        Some(1001),
        true,
        29200,
        &[
            TcpOptionElement::MaximumSegmentSize(1400),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(9000, 7778),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(8),
        ],
        b"",
    );
    let out = send(&mut r, WAN, sa, t2);
    assert_eq!(out.len(), 2, "{:?}", r.counters().drop_map());
    assert_eq!(out[0].egress, Port::Iface(WAN));
    assert_eq!(out[1].egress, Port::Iface(LAN));
    let to_server = tcp_of(&out[0].data);
    assert_eq!(
        (to_server.src, to_server.dst, to_server.sport),
        (wan_src, REMOTE, port)
    );
    assert!(to_server.ackf && !to_server.syn);
    assert_eq!((to_server.seq, to_server.ack), (1001, 50001));
    assert_eq!(to_server.window, 502);
    // the echo moved by the timestamp offset, as the kernel's hook does to this ACK
    assert_eq!(
        ts_of(&to_server),
        (7778, 9000u32.wrapping_add(9000u32.wrapping_sub(its)))
    );
    let to_client = tcp_of(&out[1].data);
    assert_eq!(
        (to_client.src, to_client.dst, to_client.dport),
        (REMOTE, CLIENT, 40000)
    );
    assert!(to_client.ackf && !to_client.syn);
    // the server's sequence numbers, moved into the cookie's
    assert_eq!(to_client.seq, cookie.wrapping_add(1));
    assert_eq!(to_client.ack, 1001);
    assert_eq!(to_client.window, 29200 >> 8);
    // the server's timestamp, moved into the router's clock
    assert_eq!(ts_of(&to_client), (its, 7778));
    // conntrack did not look at the router's ACKs (attached, as `nf_ct_set` does): the
    // client's next packet establishes the connection
    let c = r.conntrack().iter().next().unwrap().1.clone();
    assert_eq!(c.tcp_state(), Some(nft_conntrack::TcpState::SynRecv));
    assert!(c.status().contains(nft_conntrack::Status::SEQ_ADJUST));

    // data from the client: acknowledgement and timestamp echo moved to the server's
    let t3 = t2 + Duration::from_millis(5);
    let d = from_client(
        1001,
        cookie.wrapping_add(1),
        &[
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::Timestamp(7790, its),
        ],
        b"hello",
    );
    let t = tcp_of(&one(&mut r, LAN, d, t3, Port::Iface(WAN)));
    assert_eq!((t.src, t.sport), (wan_src, port));
    assert_eq!((t.seq, t.ack), (1001, 50001));
    assert_eq!(ts_of(&t), (7790, 9000));
    assert_eq!(t.payload, b"hello");
    let c = r.conntrack().iter().next().unwrap().1.clone();
    assert_eq!(c.tcp_state(), Some(nft_conntrack::TcpState::Established));
    // `conntrack -L`: the connection as the client and the server see it (nothing shows the
    // sequence adjustment, as in the kernel); 300 s while the server's data is unacknowledged
    let w = std::net::Ipv4Addr::from(wan_src);
    assert_eq!(
        c.listing(t3, false),
        format!("tcp      6 300 ESTABLISHED src=192.168.1.10 dst=203.0.113.5 sport=40000 dport=80 src=203.0.113.5 dst={w} sport=80 dport={port} [ASSURED] mark=0 use=1")
    );

    // data from the server: sequence number and timestamp moved to the client's view
    let d = seg(
        true,
        80,
        port,
        50001,
        Some(1006),
        false,
        229,
        &[
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::Timestamp(9010, 7790),
        ],
        b"world!",
    );
    let t = tcp_of(&one(&mut r, WAN, d, t3, Port::Iface(LAN)));
    assert_eq!((t.seq, t.ack), (cookie.wrapping_add(1), 1006));
    assert_eq!(ts_of(&t), (its.wrapping_add(10), 7790));
    assert_eq!(t.payload, b"world!");

    // more of each: still adjusted, and never offloaded (sequence adjustment needs every
    // packet, as the kernel's flow offload refuses IPS_SEQ_ADJUST)
    for i in 0..3u32 {
        let d = from_client(1006 + i, cookie.wrapping_add(7), &[], b"x");
        let t = tcp_of(&one(&mut r, LAN, d, t3, Port::Iface(WAN)));
        assert_eq!(t.ack, 50007);
    }
    // a SACK block from the client names the server's data in the server's numbers
    let d = from_client(
        1009,
        cookie.wrapping_add(7),
        &[
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::SelectiveAcknowledgement(
                (cookie.wrapping_add(100), cookie.wrapping_add(200)),
                [None, None, None],
            ),
        ],
        b"",
    );
    let t = tcp_of(&one(&mut r, LAN, d, t3, Port::Iface(WAN)));
    assert_eq!(t.ack, 50007);
    assert_eq!(
        t.opts[2],
        TcpOptionElement::SelectiveAcknowledgement((50100, 50200), [None, None, None])
    );
    let c = r.conntrack().iter().next().unwrap().1.clone();
    assert!(!c.is_offloaded());
    assert_eq!(r.counters().flows_admitted, 0);
    let rep = r.report(t3);
    assert_eq!(
        (rep.synproxy_synacks_sent, rep.synproxy_cookies_valid),
        (1, 1)
    );
}

/// `synproxy name` through an object map: the object's MSS and window scale, no timestamp.
#[test]
fn named_object_through_a_map_sets_the_synack_options() {
    let mut r = router_sp();
    let syn = seg(
        false,
        40000,
        443,
        5,
        None,
        true,
        64240,
        &[
            TcpOptionElement::MaximumSegmentSize(1300),
            TcpOptionElement::WindowScale(5),
        ],
        b"",
    );
    let t = tcp_of(&one(&mut r, LAN, syn, T0, Port::Iface(LAN)));
    assert!(t.syn && t.ackf);
    // without `timestamp` the window scale cannot ride in the cookie: only the MSS is sent
    assert_eq!(t.opts, vec![TcpOptionElement::MaximumSegmentSize(1400)]);
    let minute = cookie_time(T0.as_nanos() as u64);
    assert_eq!(
        CookieKey::default().check(&endpoints(443), 5, t.seq, minute),
        Some(1300)
    );
}

/// Compiles where the kernel allows it (forward, input) and not elsewhere; the listing
/// prints back what was loaded.
#[test]
fn synproxy_listing_and_hook_check() {
    let src = "table ip t {\n\tsynproxy sp {\n\t\tmss 1460\n\t\twscale 7\n\t\ttimestamp sack-perm\n\t}\n\n\tchain c {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tct state invalid,untracked synproxy mss 1460 wscale 7 timestamp sack-perm\n\t\ttcp dport 80 synproxy name \"sp\"\n\t}\n}\n";
    let ast = nft_lang::ruleset::load_str("r.nft", src, &Default::default()).unwrap();
    let listed = nft_lang::print::ruleset(&ast, &Default::default());
    assert_eq!(listed, src);
    let rs = nft_engine::rules::compile(&ast).unwrap();
    assert_eq!(
        rs.synproxies,
        vec![nft_engine::synproxy::SynproxySpec {
            mss: 1460,
            wscale: 7,
            options: 0x0f
        }]
    );
    let bad =
        "table ip t { chain c { type filter hook prerouting priority 0; synproxy mss 1460 } }";
    let ast = nft_lang::ruleset::load_str("r.nft", bad, &Default::default()).unwrap();
    let e = nft_engine::rules::compile(&ast).unwrap_err();
    assert!(e.to_string().contains("synproxy"), "{e}");
}

/// IPv6: the SYN-ACK is built for the family, checksum over the IPv6 pseudo-header.
#[test]
fn ipv6_syn_is_answered_with_a_cookie_synack() {
    let mut r = router_sp();
    let b = PacketBuilder::ethernet2(CLIENT_MAC, LAN_MAC)
        .ipv6(CLIENT6, REMOTE6, 64)
        .tcp(40000, 80, 77, 64240)
        .syn()
        .options(&[TcpOptionElement::MaximumSegmentSize(1440)])
        .unwrap();
    let mut f = vec![];
    b.write(&mut f, b"").unwrap();
    let out = one(&mut r, LAN, f, T0, Port::Iface(LAN));
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(etherparse::NetSlice::Ipv6(ip)) = p.net else {
        panic!("not IPv6")
    };
    assert_eq!(ip.header().source(), REMOTE6);
    assert_eq!(ip.header().destination(), CLIENT6);
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!("not TCP")
    };
    assert!(t.syn() && t.ack());
    assert_eq!(t.acknowledgment_number(), 78);
    let opts: Vec<_> = t.options_iterator().map(|o| o.unwrap()).collect();
    // no timestamp from the client: MSS only
    assert_eq!(opts, vec![TcpOptionElement::MaximumSegmentSize(1460)]);
    let e = Endpoints {
        saddr: IpAddr::from(CLIENT6),
        daddr: IpAddr::from(REMOTE6),
        sport: 40000,
        dport: 80,
    };
    let minute = cookie_time(T0.as_nanos() as u64);
    assert_eq!(
        CookieKey::default().check(&e, 77, t.sequence_number(), minute),
        Some(1440)
    );
}

/// The client's ACK again before the server answered (a retransmission): the router sends
/// the server its SYN again; the connection stays one.
#[test]
fn client_ack_retransmitted_before_the_server_answers() {
    let mut r = router_sp();
    let synack = tcp_of(&one(&mut r, LAN, client_syn(), T0, Port::Iface(LAN)));
    let ack = || from_client(1001, synack.seq.wrapping_add(1), &[], b"");
    let first = tcp_of(&one(&mut r, LAN, ack(), T0, Port::Iface(WAN)));
    let again = tcp_of(&one(
        &mut r,
        LAN,
        ack(),
        T0 + Duration::from_secs(1),
        Port::Iface(WAN),
    ));
    assert!(first.syn && again.syn);
    assert_eq!((again.seq, again.ack), (first.seq, first.ack));
    assert_eq!(r.conntrack().iter().count(), 1);
    assert_eq!(r.counters().synproxy_cookies_valid, 2);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
    /// Arbitrary TCP headers and options (cut anywhere) through a synproxy router, from both
    /// sides, after a real handshake began: no panic, and what leaves parses with valid
    /// checksums.
    #[test]
    fn odd_segments_never_panic(
        flags in 0u8..=255,
        opts in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        cut in 0usize..80,
        seq in proptest::prelude::any::<u32>(),
        ack in proptest::prelude::any::<u32>(),
        from_wan in proptest::prelude::any::<bool>(),
        established in proptest::prelude::any::<bool>(),
    ) {
        let mut r = router_sp();
        if established {
            // the handshake through, so that sequence adjustment reads the options
            open_synproxied(&mut r, 1000, 50000, 9000, T0);
        } else {
            let _ = send(&mut r, LAN, client_syn(), T0);
        }
        let mut f = seg(from_wan, if from_wan { 80 } else { 40000 }, if from_wan { 40000 } else { 80 }, seq, Some(ack), false, 100, &[], b"");
        // options of any bytes, data offset to match (TCP checksum left as it falls)
        let th = 14 + 20;
        let n = opts.len() / 4 * 4;
        f.splice(th + 20..th + 20, opts[..n].iter().copied());
        f[th + 12] = (((20 + n) / 4) as u8) << 4;
        f[th + 13] = flags;
        let len = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&len.to_be_bytes());
        fix_tcp(&mut f);
        if cut < f.len() - 14 {
            f.truncate(14 + cut.max(1));
        }
        for o in send(&mut r, if from_wan { WAN } else { LAN }, f, T0) {
            check(&o.data);
        }
    }
}

/// The server refuses the router's SYN with a reset: the client gets it in the cookie's
/// numbers (it would ignore the server's own), checksum patched.
#[test]
fn server_reset_reaches_the_client_in_cookie_numbers() {
    let mut r = router_sp();
    let synack = tcp_of(&one(&mut r, LAN, client_syn(), T0, Port::Iface(LAN)));
    let cookie = synack.seq;
    let a = from_client(1001, cookie.wrapping_add(1), &[], b"");
    one(&mut r, LAN, a, T0, Port::Iface(WAN));
    let b = PacketBuilder::ethernet2(GW_MAC, WAN_MAC)
        .ipv4(REMOTE, CLIENT, 64)
        .tcp(80, 40000, 0, 0)
        .rst()
        .ack(1001);
    let mut f = vec![];
    b.write(&mut f, b"").unwrap();
    let t = tcp_of(&one(&mut r, WAN, f, T0, Port::Iface(LAN)));
    assert!(t.rst && t.ackf);
    assert_eq!((t.seq, t.ack), (cookie.wrapping_add(1), 1001));
}

fn seg6(from_wan: bool, seq: u32, ack: Option<u32>, syn: bool, payload: &[u8]) -> Vec<u8> {
    let (smac, dmac, src, dst, sport, dport) = if from_wan {
        (GW_MAC, WAN_MAC, REMOTE6, CLIENT6, 80, 40000)
    } else {
        (CLIENT_MAC, LAN_MAC, CLIENT6, REMOTE6, 40000, 80)
    };
    let mut b = PacketBuilder::ethernet2(smac, dmac)
        .ipv6(src, dst, 64)
        .tcp(sport, dport, seq, 1000);
    if syn {
        b = b.syn();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    let b = b
        .options(&[TcpOptionElement::MaximumSegmentSize(1400)])
        .unwrap();
    let mut f = vec![];
    b.write(&mut f, payload).unwrap();
    f
}

/// (seq, ack, flags SYN/ACK, payload) of an IPv6 TCP frame, checksums verified.
fn tcp6_of(frame: &[u8]) -> (u32, u32, bool, bool, Vec<u8>) {
    check(frame);
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!("not TCP")
    };
    (
        t.sequence_number(),
        t.acknowledgment_number(),
        t.syn(),
        t.ack(),
        t.payload().to_vec(),
    )
}

/// IPv6 through the whole handshake and data both ways.
#[test]
fn ipv6_full_handshake_then_data() {
    let mut r = router_sp();
    let (cookie, ack, ..) = tcp6_of(&one(
        &mut r,
        LAN,
        seg6(false, 10, None, true, b""),
        T0,
        Port::Iface(LAN),
    ));
    assert_eq!(ack, 11);
    let out = one(
        &mut r,
        LAN,
        seg6(false, 11, Some(cookie.wrapping_add(1)), false, b""),
        T0,
        Port::Iface(WAN),
    );
    assert_eq!(tcp6_of(&out), (10, cookie, true, false, vec![]));
    let out = send(&mut r, WAN, seg6(true, 7000, Some(11), true, b""), T0);
    assert_eq!(out.len(), 2);
    assert_eq!(tcp6_of(&out[0].data), (11, 7001, false, true, vec![]));
    assert_eq!(
        tcp6_of(&out[1].data),
        (cookie.wrapping_add(1), 11, false, true, vec![])
    );
    let t = tcp6_of(&one(
        &mut r,
        LAN,
        seg6(false, 11, Some(cookie.wrapping_add(1)), false, b"ping"),
        T0,
        Port::Iface(WAN),
    ));
    assert_eq!(t, (11, 7001, false, true, b"ping".to_vec()));
    let t = tcp6_of(&one(
        &mut r,
        WAN,
        seg6(true, 7001, Some(15), false, b"pong"),
        T0,
        Port::Iface(LAN),
    ));
    assert_eq!(
        t,
        (cookie.wrapping_add(1), 15, false, true, b"pong".to_vec())
    );
}

/// Any TCP segment reaching `synproxy` has its checksum checked (`nf_ip_checksum`): a bad one
/// is dropped under its reason; a good one that is neither SYN nor ACK goes on to the next
/// rule (here `ct state invalid drop`).
#[test]
fn bad_checksum_dropped_other_segments_go_on() {
    let mut r = router_sp();
    let rst = || {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, LAN_MAC)
            .ipv4(CLIENT, REMOTE, 64)
            .tcp(40000, 80, 5, 0)
            .rst();
        let mut f = vec![];
        b.write(&mut f, b"").unwrap();
        f
    };
    let mut bad = rst();
    let n = bad.len();
    bad[n - 4] ^= 0x55; // the TCP checksum
    none(&mut r, LAN, bad, T0);
    let drops = r.counters().drop_map();
    assert_eq!(drops.get("synproxy_bad_packet"), Some(&1));
    assert_eq!(drops.get("rule_drop"), None);
    none(&mut r, LAN, rst(), T0);
    let drops = r.counters().drop_map();
    assert_eq!(drops.get("synproxy_bad_packet"), Some(&1));
    assert_eq!(drops.get("rule_drop"), Some(&1));
    // a SYN with a bad checksum is not answered
    let mut syn = client_syn();
    let n = syn.len();
    syn[n - 1] ^= 0x01; // the last option byte (window scale)
    none(&mut r, LAN, syn, T0);
    assert_eq!(r.counters().synproxy_synacks_sent, 0);
}

/// In an input chain (the router's own services): the SYN is answered with a cookie; a good
/// ACK cannot open the connection, as the server is the host's stack beside this dataplane,
/// and is counted under its own reason.
#[test]
fn input_chain_answers_the_syn_and_names_what_it_cannot_do() {
    let rules = r#"
table inet t {
	chain raw {
		type filter hook prerouting priority raw; policy accept;
		tcp flags & (syn | ack) == syn tcp dport 22 notrack
	}
	chain input {
		type filter hook input priority filter; policy accept;
		ct state invalid,untracked tcp dport 22 synproxy mss 1460
	}
}
"#;
    let mut r = router_sp_with(rules);
    let to_router = |seq: u32, ack: Option<u32>, syn: bool| {
        let mut b = PacketBuilder::ethernet2(CLIENT_MAC, LAN_MAC)
            .ipv4(CLIENT, ROUTER_LAN, 64)
            .tcp(40000, 22, seq, 1000);
        if syn {
            b = b.syn();
        }
        if let Some(a) = ack {
            b = b.ack(a);
        }
        let b = b
            .options(&[TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap();
        let mut f = vec![];
        b.write(&mut f, b"").unwrap();
        f
    };
    let t = tcp_of(&one(
        &mut r,
        LAN,
        to_router(1, None, true),
        T0,
        Port::Iface(LAN),
    ));
    assert_eq!((t.src, t.sport, t.ack), (ROUTER_LAN, 22, 2));
    assert!(t.syn && t.ackf);
    none(
        &mut r,
        LAN,
        to_router(2, Some(t.seq.wrapping_add(1)), false),
        T0,
    );
    assert_eq!(r.counters().synproxy_cookies_valid, 1);
    assert_eq!(
        r.counters().drop_map().get("synproxy_local_server"),
        Some(&1)
    );
}

/// The SYN-ACK answers an untracked SYN and carries its untracked entry, as the kernel's
/// (`nf_ct_set` of the SYN's): `ct state invalid drop` at postrouting lets it through,
/// `ct state untracked` counts it.
#[test]
fn synack_is_untracked_in_output_and_postrouting() {
    let rules = format!(
        "{RULES_SP}\ntable ip o {{ counter u {{ }} chain post {{ type filter hook postrouting priority 0; ct state invalid drop; ct state untracked counter name \"u\" }} }}\n"
    );
    let mut r = router_sp_with(&rules);
    let t = tcp_of(&one(&mut r, LAN, client_syn(), T0, Port::Iface(LAN)));
    assert!(t.syn && t.ackf);
    let i = r
        .ruleset()
        .object("o", nft_engine::rules::ObjKind::Counter, "u")
        .unwrap();
    assert_eq!(r.rule_state().counters[i].0, 1);
}

/// A synproxied connection closed (TIME_WAIT) and opened again on the same ports
/// (`synproxy_tg4`'s reopen): the new SYN gets a new cookie, the client's ACK opens a fresh
/// connection to the server, and the new handshake's numbers are adjusted from scratch, not
/// with the old connection's offsets.
#[test]
fn closed_connection_reopened_on_the_same_ports() {
    let mut r = router_sp();
    // first connection: handshake, close both ways
    let first = open_synproxied(&mut r, 1000, 50000, 9000, T0);
    assert_eq!(first.syn.seq, 1000);
    let c1 = first.cookie;
    let (f, sf) = close_synproxied(&mut r, c1, T0);
    assert!(f.fin);
    assert_eq!(
        f.ack, 50001,
        "the old offset: cookie numbers to the server's"
    );
    assert_eq!(sf.seq, c1.wrapping_add(1));
    let t1 = T0 + Duration::from_secs(2);
    // the same ports again: a new cookie, a new connection to the server, and the server
    // answers with other numbers: adjusted from scratch
    let second = open_synproxied(&mut r, 90000, 70000, 9500, t1);
    assert!(second.syn.syn && !second.syn.ackf);
    assert_eq!(
        second.syn.seq, 90000,
        "the new connection's SYN, in the client's numbers"
    );
    assert_eq!(r.conntrack().iter().count(), 1, "the old entry gave way");
    let to_server = second
        .answered
        .iter()
        .map(|f| (f.egress, tcp_of(&f.data)))
        .find(|(p, _)| *p == Port::Iface(WAN))
        .expect("the router's ACK to the server")
        .1;
    assert_eq!((to_server.seq, to_server.ack), (90001, 70001));
    let ts = [TcpOptionElement::Timestamp(9600, 0)];
    let data = from_server(70001, 90001, false, &ts, b"hello");
    let d = tcp_of(&one(&mut r, WAN, data, t1, Port::Iface(LAN)));
    assert_eq!(
        d.seq,
        second.cookie.wrapping_add(1),
        "the new cookie's numbers"
    );
    assert_eq!(d.payload, b"hello");
}

/// Recomputes the IPv4 header and TCP checksums of a frame from the client or the server.
fn fix_tcp(f: &mut [u8]) {
    f[24..26].copy_from_slice(&[0, 0]);
    let c = !nft_wire::checksum::sum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let th = 34;
    f[th + 16..th + 18].copy_from_slice(&[0, 0]);
    let (s, d): ([u8; 4], [u8; 4]) = (f[26..30].try_into().unwrap(), f[30..34].try_into().unwrap());
    let ph = nft_wire::checksum::pseudo_header(
        &IpAddr::from(s),
        &IpAddr::from(d),
        nft_wire::IpProtocol::Tcp,
        (f.len() - th) as u32,
    );
    let c = !nft_wire::checksum::combine(&[ph, nft_wire::checksum::sum(&f[th..])]);
    f[th + 16..th + 18].copy_from_slice(&c.to_be_bytes());
}

/// The client's ACK of the handshake again once the server answered (the connection is
/// established): it is the connection's, not synproxy's; it goes to the server with its
/// acknowledgement moved to the server's numbers (sequence adjustment), once per copy.
#[test]
fn client_ack_retransmitted_after_the_server_answered() {
    let mut r = router_sp();
    let cookie = open_synproxied(&mut r, 1000, 50000, 9000, T0).cookie;
    let ack = || from_client(1001, cookie.wrapping_add(1), &[], b"");
    let valid = r.counters().synproxy_cookies_valid;
    let again = tcp_of(&one(&mut r, LAN, ack(), T0, Port::Iface(WAN)));
    assert!(again.ackf && !again.syn);
    assert_eq!((again.seq, again.ack), (1001, 50001));
    assert_eq!(
        r.counters().synproxy_cookies_valid,
        valid,
        "no second cookie check"
    );
    assert_eq!(r.conntrack().iter().count(), 1);
}

/// A GSO ACK whose checksum is partial (the pseudo-header sum only) is not refused for its
/// checksum (`nf_ip_checksum` skips CHECKSUM_PARTIAL): its cookie is checked, and a made-up
/// one is refused.
#[test]
fn a_partial_gso_ack_at_synproxy_is_refused_for_its_cookie() {
    let mut r = router_sp();
    let mut f = from_client(1001, 5000, &[], &[7u8; 3000]);
    let m = nft_wire::parse_frame(&f).unwrap();
    let l4 = m.l4_offset.unwrap();
    let p = nft_wire::checksum::pseudo_header(
        &m.src_addr.unwrap(),
        &m.dst_addr.unwrap(),
        nft_wire::IpProtocol::Tcp,
        (m.l3_end - l4) as u32,
    );
    f[l4 + 16..l4 + 18].copy_from_slice(&p.to_be_bytes());
    let mut slot = nft_flowtable::FrameSlot::new(LAN as u16, &f);
    slot.offload = nft_flowtable::Offload {
        gso_size: 1000,
        csum_start: l4 as u16,
    };
    let mut sent = vec![];
    r.process_slots_offloaded(&mut [slot], T0, &mut sent);
    let drops = r.counters().drop_map();
    assert_eq!(drops.get("synproxy_cookie_invalid"), Some(&1), "{drops:?}");
    assert_eq!(drops.get("synproxy_bad_packet"), None, "{drops:?}");
}
