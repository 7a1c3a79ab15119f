//! Packet sequences through the table: frames built with etherparse, parsed with nft-wire,
//! tracked, NATed and checked byte for byte.

use crate::*;
use etherparse::PacketBuilder;
use nft_wire::{parse_frame, IpAddr, Ipv4Packet, PacketMeta, TcpPacket, UdpPacket};
use proptest::prelude::*;

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const LAN: [u8; 4] = [192, 168, 1, 10];
const LAN2: [u8; 4] = [192, 168, 1, 11];
const SRV: [u8; 4] = [203, 0, 113, 5];
const WAN: [u8; 4] = [198, 18, 0, 2];

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

#[derive(Clone, Copy)]
enum F {
    Syn,
    SynAck,
    Ack,
    FinAck,
    Rst,
    RstAck,
}

#[allow(clippy::too_many_arguments)]
fn tcp(
    src: [u8; 4],
    dst: [u8; 4],
    sp: u16,
    dp: u16,
    f: F,
    seq: u32,
    ack: u32,
    data: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src, dst, 64)
        .tcp(sp, dp, seq, 64000);
    let b = match f {
        F::Syn => b.syn(),
        F::SynAck => b.syn().ack(ack),
        F::Ack => b.ack(ack),
        F::FinAck => b.fin().ack(ack),
        F::Rst => b.rst(),
        F::RstAck => b.rst().ack(ack),
    };
    let mut v = Vec::new();
    b.write(&mut v, data).unwrap();
    v
}

fn udp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src, dst, 64)
        .udp(sp, dp)
        .write(&mut v, b"payload")
        .unwrap();
    v
}

fn echo(src: [u8; 4], dst: [u8; 4], id: u16, request: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(src, dst, 64);
    let b = if request {
        b.icmpv4_echo_request(id, 1)
    } else {
        b.icmpv4_echo_reply(id, 1)
    };
    let mut v = Vec::new();
    b.write(&mut v, b"ping").unwrap();
    v
}

/// An ICMP error from `src` to `dst` quoting the IP packet of `quoted` (a whole frame).
fn icmp_error(src: [u8; 4], dst: [u8; 4], ty: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
    let q = &quoted[14..(14 + 28).min(quoted.len())];
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src, dst, 64)
        .icmpv4_raw(ty, code, [0; 4])
        .write(&mut v, q)
        .unwrap();
    v
}

fn meta(f: &[u8]) -> PacketMeta {
    parse_frame(f).unwrap()
}

/// Tracks one frame and, for a new connection, confirms it as the last hook would.
fn pass(t: &mut Table, f: &[u8], now: Duration) -> Outcome {
    let out = t.process(&meta(f), 0, now);
    confirm_new(t, out, now)
}

/// Confirms the connection of `out` if it is new, as the last hook would; `out`.
fn confirm_new(t: &mut Table, out: Outcome, now: Duration) -> Outcome {
    if let Outcome::Tracked { id, .. } = out {
        if !t.get(id).unwrap().is_confirmed() {
            t.confirm(id, now).unwrap();
        }
    }
    out
}

/// Applies connection `id`'s NAT for `dir` to `frame`, as the router does to a packet of it.
fn nat(t: &Table, id: ConnId, dir: Direction, frame: &mut [u8]) {
    let m = meta(frame);
    apply_rewrite(frame, &m, &t.rewrite(id, dir).unwrap(), None).unwrap();
}

/// Masquerades the new connection `id` to the WAN address (out of interface 2) and confirms
/// it.
fn masquerade_confirm(t: &mut Table, id: ConnId, now: Duration) {
    t.masquerade(id, ip(WAN), 2, &NatRange::default()).unwrap();
    t.confirm(id, now).unwrap();
}

/// The three-way handshake of a TCP connection from the LAN client's `cport` to the server's
/// `sport` at `now` (client sequence 1, server `server_seq`): its id.
fn handshake(t: &mut Table, cport: u16, sport: u16, server_seq: u32, now: Duration) -> ConnId {
    let syn = tcp(LAN, SRV, cport, sport, F::Syn, 1, 0, b"");
    let (id, ..) = tracked(pass(t, &syn, now));
    let syn_ack = tcp(SRV, LAN, sport, cport, F::SynAck, server_seq, 2, b"");
    pass(t, &syn_ack, now);
    let ack = tcp(LAN, SRV, cport, sport, F::Ack, 2, server_seq + 1, b"");
    pass(t, &ack, now);
    id
}

fn tracked(out: Outcome) -> (ConnId, Direction, CtState) {
    match out {
        Outcome::Tracked { id, dir, state } => (id, dir, state),
        other => panic!("expected a tracked packet, got {other:?}"),
    }
}

fn acct_table() -> Table {
    Table::new(Config {
        accounting: true,
        ..Config::default()
    })
}

#[test]
fn tcp_handshake_data_and_close() {
    let mut t = Table::default();
    let (c, r) = (LAN, SRV);
    let (id, dir, st) = tracked(pass(
        &mut t,
        &tcp(c, r, 40000, 443, F::Syn, 100, 0, b""),
        s(10),
    ));
    assert_eq!((dir, st), (Direction::Original, CtState::New));
    let conn = t.get(id).unwrap();
    assert_eq!(conn.tcp_state(), Some(TcpState::SynSent));
    assert_eq!(conn.remaining(s(10)), s(120));
    assert!(!conn.status().contains(Status::SEEN_REPLY));

    let (id2, dir, st) = tracked(pass(
        &mut t,
        &tcp(r, c, 443, 40000, F::SynAck, 900, 101, b""),
        s(11),
    ));
    assert_eq!((id2, dir, st), (id, Direction::Reply, CtState::Established));
    assert_eq!(t.get(id).unwrap().tcp_state(), Some(TcpState::SynRecv));
    assert_eq!(t.get(id).unwrap().remaining(s(11)), s(60));
    assert!(!t.get(id).unwrap().is_assured());

    let (_, dir, st) = tracked(pass(
        &mut t,
        &tcp(c, r, 40000, 443, F::Ack, 101, 901, b""),
        s(12),
    ));
    assert_eq!((dir, st), (Direction::Original, CtState::Established));
    let conn = t.get(id).unwrap();
    assert_eq!(conn.tcp_state(), Some(TcpState::Established));
    assert!(conn.is_assured());
    assert_eq!(conn.remaining(s(12)), s(432_000));
    assert_eq!(conn.expiration_ms(s(12)), 432_000_000);

    // Data in flight caps the timeout at 300 s until acknowledged.
    pass(
        &mut t,
        &tcp(c, r, 40000, 443, F::Ack, 101, 901, b"GET /"),
        s(13),
    );
    assert_eq!(t.get(id).unwrap().remaining(s(13)), s(300));
    pass(&mut t, &tcp(r, c, 443, 40000, F::Ack, 901, 106, b""), s(14));
    assert_eq!(t.get(id).unwrap().remaining(s(14)), s(432_000));

    // The close, a segment a second: who sends it, its flags, sequence and acknowledgement,
    // and the state and timeout it leaves.
    for (at, from_client, f, seq, ack, state, left) in [
        (20, true, F::FinAck, 106, 901, TcpState::FinWait, 120),
        (21, false, F::Ack, 901, 107, TcpState::CloseWait, 60),
        (22, false, F::FinAck, 901, 107, TcpState::LastAck, 30),
        (23, true, F::Ack, 107, 902, TcpState::TimeWait, 120),
    ] {
        let seg = if from_client {
            tcp(c, r, 40000, 443, f, seq, ack, b"")
        } else {
            tcp(r, c, 443, 40000, f, seq, ack, b"")
        };
        pass(&mut t, &seg, s(at));
        assert_eq!(t.get(id).unwrap().tcp_state(), Some(state), "at {at} s");
        assert_eq!(t.get(id).unwrap().remaining(s(at)), s(left), "at {at} s");
    }

    // A new SYN on the same ports reopens: the old entry goes, a NEW one starts.
    let (id3, _, st) = tracked(pass(
        &mut t,
        &tcp(c, r, 40000, 443, F::Syn, 5000, 0, b""),
        s(30),
    ));
    assert_eq!(st, CtState::New);
    assert_ne!(id3, id);
    assert!(t.get(id).is_none());
    assert_eq!(t.get(id3).unwrap().tcp_state(), Some(TcpState::SynSent));
    assert_eq!(t.stats().reopened, 1);
    assert_eq!(t.len(), 1);
}

#[test]
fn tcp_rst_answering_syn_kills_the_entry() {
    let mut t = Table::default();
    let (id, ..) = tracked(pass(
        &mut t,
        &tcp(LAN, SRV, 40001, 23, F::Syn, 1, 0, b""),
        s(1),
    ));
    let out = pass(
        &mut t,
        &tcp(SRV, LAN, 23, 40001, F::RstAck, 0, 2, b""),
        s(1),
    );
    assert_eq!(out.ct_state(), CtState::Established);
    assert!(t.get(id).unwrap().status().contains(Status::DYING));
    let orig = Tuple::new(ip(LAN), ip(SRV), 6, 40001, 23);
    assert_eq!(t.lookup(&orig, 0), None);
    assert_eq!(t.gc(s(1), 16), 1);
    assert!(t.is_empty());
}

#[test]
fn tcp_rst_on_established_closes_with_10s() {
    let mut t = Table::default();
    let id = handshake(&mut t, 40002, 80, 50, s(1));
    pass(&mut t, &tcp(SRV, LAN, 80, 40002, F::Rst, 51, 0, b""), s(2));
    let c = t.get(id).unwrap();
    assert_eq!(c.tcp_state(), Some(TcpState::Close));
    assert_eq!(c.remaining(s(2)), s(10));
    // Expires with passed-in time: at 11 s it is still there, at 12 s a packet finds nothing.
    assert_eq!(t.gc(s(11), 100), 0);
    assert_eq!(t.gc(s(12), 100), 1);
    assert!(t.get(id).is_none());
}

#[test]
fn tcp_invalid_packets() {
    let mut t = Table::default();
    // SYN/ACK cannot open a connection.
    let out = pass(&mut t, &tcp(LAN, SRV, 1, 2, F::SynAck, 1, 1, b""), s(1));
    assert_eq!(out, Outcome::Invalid(Invalid::TcpState));
    tracked(pass(&mut t, &tcp(LAN, SRV, 3, 4, F::Syn, 1, 0, b""), s(1)));
    // The client ACKs before any SYN/ACK.
    let out = pass(&mut t, &tcp(LAN, SRV, 3, 4, F::Ack, 2, 1, b""), s(1));
    assert_eq!(out, Outcome::Invalid(Invalid::TcpState));
    assert_eq!(out.ct_state(), CtState::Invalid);
    // SYN+RST is never valid.
    let mut f = tcp(LAN, SRV, 5, 6, F::Syn, 1, 0, b"");
    f[14 + 20 + 13] |= 0x04;
    let out = t.process(&meta(&f), 0, s(1));
    assert_eq!(out, Outcome::Invalid(Invalid::TcpFlags));
    assert_eq!(t.stats().invalid, 3);
}

#[test]
fn tcp_midstream_pickup_is_capped_until_answered() {
    let mut t = Table::default();
    let (id, _, st) = tracked(pass(&mut t, &tcp(LAN, SRV, 7, 8, F::Ack, 1, 1, b""), s(1)));
    assert_eq!(st, CtState::New);
    assert_eq!(t.get(id).unwrap().tcp_state(), Some(TcpState::Established));
    assert_eq!(t.get(id).unwrap().remaining(s(1)), s(300));
    pass(&mut t, &tcp(SRV, LAN, 8, 7, F::Ack, 1, 1, b""), s(2));
    pass(&mut t, &tcp(LAN, SRV, 7, 8, F::Ack, 1, 1, b""), s(3));
    assert!(t.get(id).unwrap().is_assured());
    assert_eq!(t.get(id).unwrap().remaining(s(3)), s(432_000));
}

#[test]
fn udp_unreplied_replied_assured() {
    let mut t = Table::default();
    let (id, _, st) = tracked(pass(&mut t, &udp(LAN, SRV, 5000, 53), s(100)));
    assert_eq!(st, CtState::New);
    assert_eq!(t.get(id).unwrap().remaining(s(100)), s(30));
    // A second packet the same way is still NEW.
    let (_, _, st) = tracked(pass(&mut t, &udp(LAN, SRV, 5000, 53), s(100)));
    assert_eq!(st, CtState::New);
    assert_eq!(
        t.list(s(100)),
        ["udp      17 30 src=192.168.1.10 dst=203.0.113.5 sport=5000 dport=53 [UNREPLIED] src=203.0.113.5 dst=192.168.1.10 sport=53 dport=5000 mark=0 use=1"]
    );

    let (_, dir, st) = tracked(pass(&mut t, &udp(SRV, LAN, 53, 5000), s(101)));
    assert_eq!((dir, st), (Direction::Reply, CtState::Established));
    let c = t.get(id).unwrap();
    assert!(c.status().contains(Status::SEEN_REPLY));
    assert!(!c.is_assured());
    assert_eq!(c.remaining(s(101)), s(30));

    // Within two seconds of creation traffic both ways is not yet a stream.
    pass(&mut t, &udp(LAN, SRV, 5000, 53), s(102));
    assert!(!t.get(id).unwrap().is_assured());
    let (_, _, st) = tracked(pass(&mut t, &udp(LAN, SRV, 5000, 53), s(103)));
    assert_eq!(st, CtState::Established);
    let c = t.get(id).unwrap();
    assert!(c.is_assured());
    assert_eq!(c.remaining(s(103)), s(120));
    assert_eq!(
        c.listing(s(103), false),
        "udp      17 120 src=192.168.1.10 dst=203.0.113.5 sport=5000 dport=53 src=203.0.113.5 dst=192.168.1.10 sport=53 dport=5000 [ASSURED] mark=0 use=1"
    );
}

#[test]
fn icmp_echo_and_stray_reply() {
    let mut t = Table::default();
    let (id, _, st) = tracked(pass(&mut t, &echo(LAN, SRV, 77, true), s(1)));
    assert_eq!(st, CtState::New);
    assert_eq!(t.get(id).unwrap().remaining(s(1)), s(30));
    let (id2, dir, st) = tracked(pass(&mut t, &echo(SRV, LAN, 77, false), s(2)));
    assert_eq!((id2, dir, st), (id, Direction::Reply, CtState::Established));
    assert_eq!(
        t.list(s(2)),
        ["icmp     1 30 src=192.168.1.10 dst=203.0.113.5 type=8 code=0 id=77 src=203.0.113.5 dst=192.168.1.10 type=0 code=0 id=77 mark=0 use=1"]
    );
    // A reply with no request opens nothing.
    let out = pass(&mut t, &echo(SRV, LAN, 78, false), s(2));
    assert_eq!(out, Outcome::Invalid(Invalid::IcmpNew));
}

#[test]
fn icmp_errors_are_related() {
    let mut t = Table::default();
    let probe = udp(LAN, SRV, 33434, 33435);
    let (id, ..) = tracked(pass(&mut t, &probe, s(1)));
    // A router on the way answers the client: RELATED, in the reply direction.
    let router = [10, 9, 9, 9];
    let err = icmp_error(router, LAN, 11, 0, &probe);
    let out = pass(&mut t, &err, s(2));
    assert_eq!(
        out,
        Outcome::Tracked {
            id,
            dir: Direction::Reply,
            state: CtState::Related
        }
    );
    // The same error sent to someone else is not related to anything.
    let err = icmp_error(router, LAN2, 11, 0, &probe);
    assert_eq!(
        t.process(&meta(&err), 0, s(2)),
        Outcome::Invalid(Invalid::IcmpErrorAddr)
    );
    // Quoting a packet of no connection.
    let other = udp(LAN, SRV, 1, 2);
    let err = icmp_error(router, LAN, 3, 3, &other);
    assert_eq!(
        t.process(&meta(&err), 0, s(2)),
        Outcome::Invalid(Invalid::IcmpErrorNoConn)
    );
    // The server answering the reply direction's packet gets RELATED in the original direction.
    let back = udp(SRV, LAN, 33435, 33434);
    let err = icmp_error(LAN, SRV, 3, 3, &back);
    assert_eq!(tracked(pass(&mut t, &err, s(3))).1, Direction::Original);
}

#[test]
fn icmpv6_echo_and_neighbour_discovery() {
    let a = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let b = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let mut t = Table::default();
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(a, b, 64)
        .icmpv6_echo_request(9, 1)
        .write(&mut f, b"x")
        .unwrap();
    let (id, _, st) = tracked(pass(&mut t, &f, s(1)));
    assert_eq!(st, CtState::New);
    let mut r = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(b, a, 64)
        .icmpv6_echo_reply(9, 1)
        .write(&mut r, b"x")
        .unwrap();
    assert_eq!(tracked(pass(&mut t, &r, s(1))).0, id);
    assert!(t.list(s(1))[0]
        .starts_with("icmpv6   58 30 src=2001:db8::1 dst=2001:db8::2 type=128 code=0 id=9 "));

    let mut ns = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(a, b, 255)
        .icmpv6_raw(135, 0, [0; 4])
        .write(&mut ns, &[0u8; 16])
        .unwrap();
    assert_eq!(t.process(&meta(&ns), 0, s(1)), Outcome::Untracked);
}

#[test]
fn unconfirmed_entries_are_not_found_and_clash_at_confirm() {
    let mut t = Table::default();
    let f = udp(LAN, SRV, 1000, 2000);
    let (a, ..) = tracked(t.process(&meta(&f), 0, s(1)));
    // Not yet confirmed: a second packet starts another candidate.
    let (b, ..) = tracked(t.process(&meta(&f), 0, s(1)));
    assert_ne!(a, b);
    assert_eq!(t.len(), 2);
    t.confirm(a, s(1)).unwrap();
    assert!(t.get(a).unwrap().status().contains(Status::CONFIRMED));
    assert_eq!(t.confirm(b, s(1)), Err(CtError::Clash));
    assert!(t.discard(b));
    assert!(!t.discard(a), "confirmed entries are not discarded");
    assert_eq!(t.len(), 1);
    assert_eq!(t.stats().insert_failed, 1);
}

#[test]
fn limit_early_drops_oldest_unassured_and_refuses_when_all_assured() {
    let mut t = Table::new(Config {
        max_entries: 3,
        ..Config::default()
    });
    // One assured TCP connection, then two unreplied UDP flows.
    let tcp_id = handshake(&mut t, 40000, 443, 9, s(1));
    assert!(t.get(tcp_id).unwrap().is_assured());
    let (u1, ..) = tracked(pass(&mut t, &udp(LAN, SRV, 1, 53), s(2)));
    let (u2, ..) = tracked(pass(&mut t, &udp(LAN, SRV, 2, 53), s(3)));
    assert_eq!(t.len(), 3);

    // Full: the oldest unassured flow (u1) makes room.
    let (u3, ..) = tracked(pass(&mut t, &udp(LAN, SRV, 3, 53), s(4)));
    assert!(t.get(u1).is_none());
    assert!(t.get(u2).is_some() && t.get(u3).is_some());
    assert!(t.get(tcp_id).is_some());
    assert_eq!(t.stats().early_drop, 1);

    // Make u2 and u3 assured streams; then nothing may go and a new flow is refused.
    for (id, sp) in [(u2, 2), (u3, 3)] {
        pass(&mut t, &udp(SRV, LAN, 53, sp), s(5));
        pass(&mut t, &udp(LAN, SRV, sp, 53), s(10));
        assert!(t.get(id).unwrap().is_assured());
    }
    let out = pass(&mut t, &udp(LAN, SRV, 4, 53), s(11));
    assert_eq!(out, Outcome::Refused(Refused::TableFull));
    assert_eq!(out.ct_state(), CtState::Invalid);
    // Established connections keep flowing.
    let out = pass(
        &mut t,
        &tcp(SRV, LAN, 443, 40000, F::Ack, 10, 2, b"ok"),
        s(12),
    );
    assert_eq!(tracked(out).0, tcp_id);
    assert_eq!(t.len(), 3);
    assert_eq!(t.stats().drop, 1);
}

/// `n` assured TCP connections from ports 40000.., the first `closing` of them in FIN_WAIT
/// (the client sent its FIN): their ids.
fn assured_tcp(t: &mut Table, n: u16, closing: u16, now: Duration) -> Vec<ConnId> {
    (0..n)
        .map(|k| {
            let p = 40000 + k;
            let id = handshake(t, p, 443, 9, now);
            if k < closing {
                pass(t, &tcp(LAN, SRV, p, 443, F::FinAck, 2, 10, b""), now);
            }
            assert!(t.get(id).unwrap().is_assured());
            id
        })
        .collect()
}

/// The kernel's GC early drop (`gc_worker_can_early_drop`): once a new connection was refused
/// because nothing unassured could go, GC takes closing connections (assured or not) out of
/// the table while it holds 95% of its limit or more; established ones stay. A packet alone
/// never does.
#[test]
fn gc_evicts_closing_connections_near_the_limit_after_a_refusal() {
    let mut t = Table::new(Config {
        max_entries: 100,
        ..Config::default()
    });
    let ids = assured_tcp(&mut t, 100, 10, s(1));
    assert_eq!(
        t.get(ids[0]).unwrap().tcp_state(),
        Some(crate::tcp::TcpState::FinWait)
    );
    // GC before any refusal expires only
    assert_eq!(t.gc(s(2), 1000), 0);
    let syn = tcp(LAN2, SRV, 50000, 443, F::Syn, 1, 0, b"");
    assert_eq!(
        pass(&mut t, &syn, s(2)),
        Outcome::Refused(Refused::TableFull)
    );
    // the packet path drops unassured connections only: refused again, nothing gone
    assert_eq!(
        pass(&mut t, &syn, s(2)),
        Outcome::Refused(Refused::TableFull)
    );
    assert_eq!(t.len(), 100);
    // a sweep evicts closing ones until the table holds fewer than 95 (100 -> 94)
    assert_eq!(t.gc(s(3), 1000), 6);
    assert_eq!(t.len(), 94);
    assert_eq!(t.stats().evicted, 6);
    assert_eq!(t.stats().early_drop, 0);
    let gone: Vec<usize> = (0..100).filter(|&k| t.get(ids[k]).is_none()).collect();
    assert_eq!(gone, vec![0, 1, 2, 3, 4, 5], "closing ones, in slot order");
    // the new connection now fits
    tracked(pass(&mut t, &syn, s(3)));
    // the sweep done, eviction is off again: the other closing ones stay
    assert_eq!(t.gc(s(4), 1000), 0);
    assert!(t.get(ids[9]).is_some());
}

/// `nf_conntrack_max / 100 * 95` is 0 below a limit of 100: no GC early drop at all there.
#[test]
fn gc_does_not_evict_below_a_limit_of_100() {
    let mut t = Table::new(Config {
        max_entries: 99,
        ..Config::default()
    });
    let ids = assured_tcp(&mut t, 99, 10, s(1));
    let syn = tcp(LAN2, SRV, 50000, 443, F::Syn, 1, 0, b"");
    assert_eq!(
        pass(&mut t, &syn, s(2)),
        Outcome::Refused(Refused::TableFull)
    );
    assert_eq!(t.gc(s(3), 1000), 0);
    assert!(ids.iter().all(|id| t.get(*id).is_some()));
    assert_eq!(
        pass(&mut t, &syn, s(3)),
        Outcome::Refused(Refused::TableFull)
    );
}

#[test]
fn expiry_on_lookup_and_bounded_gc() {
    let mut t = Table::default();
    for p in 0..10u16 {
        pass(&mut t, &udp(LAN, SRV, 100 + p, 53), s(0));
    }
    assert_eq!(t.len(), 10);
    // Expired at 30 s exactly; GC works in bounded steps.
    assert_eq!(t.gc(s(29), 100), 0);
    assert_eq!(t.gc(s(30), 4), 4);
    assert_eq!(t.gc(s(30), 4), 4);
    assert_eq!(t.len(), 2);
    // A packet of an expired connection starts a new one instead of finding the old.
    let (_, _, st) = tracked(pass(&mut t, &udp(LAN, SRV, 108, 53), s(31)));
    assert_eq!(st, CtState::New);
    assert_eq!(t.len(), 2);
}

#[test]
fn accounting_and_listing_with_offload() {
    let mut t = acct_table();
    let id = handshake(&mut t, 40000, 443, 9, s(0));
    let c = t.get(id).unwrap();
    assert_eq!(
        c.counter(Direction::Original),
        Counter {
            packets: 2,
            bytes: 80
        }
    );
    assert_eq!(
        c.counter(Direction::Reply),
        Counter {
            packets: 1,
            bytes: 40
        }
    );
    t.get_mut(id).unwrap().mark = 7;
    assert_eq!(
        t.list(Duration::from_millis(500)),
        ["tcp      6 431999 ESTABLISHED src=192.168.1.10 dst=203.0.113.5 sport=40000 dport=443 packets=2 bytes=80 src=203.0.113.5 dst=192.168.1.10 sport=443 dport=40000 packets=1 bytes=40 [ASSURED] mark=7 use=1"]
    );
    t.set_offload(id, false).unwrap();
    t.account(id, Direction::Reply, 10, 15000);
    // Offloaded connections do not expire.
    assert_eq!(t.gc(s(10_000_000), 10), 0);
    let line = &t.list(s(1))[0];
    assert!(
        line.contains("packets=11 bytes=15040 [OFFLOAD] mark=7 use=2"),
        "{line}"
    );
    t.set_offload(id, true).unwrap();
    assert!(t.list(s(1))[0].contains("[HW_OFFLOAD]"));
    t.clear_offload(id, s(100)).unwrap();
    assert_eq!(t.get(id).unwrap().remaining(s(100)), s(432_000));
    assert!(t.list(s(100))[0].contains("[ASSURED]"));
}

/// The timeout column of a `conntrack -L` line.
fn listed_timeout(line: &str) -> u64 {
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// Offloaded, `conntrack -L` shows the kernel's timeout for the entry (a day when the flow was
/// added, put back to a day by the flowtable's GC when under five minutes are left), however
/// long past its own timeout the connection is; not offloaded, its own countdown. The real
/// deadline, which teardown goes by, stays.
#[test]
fn offloaded_listing_shows_the_kernels_timeout() {
    let mut t = Table::default();
    // TCP established at 10 s, offloaded then
    let tcp_id = handshake(&mut t, 40000, 443, 9, s(10));
    t.set_offload(tcp_id, false).unwrap();
    // UDP assured at 103 s (a 120 s timeout), offloaded then
    let udp_id = tracked(pass(&mut t, &udp(LAN, SRV, 5000, 53), s(100))).0;
    pass(&mut t, &udp(SRV, LAN, 53, 5000), s(101));
    pass(&mut t, &udp(LAN, SRV, 5000, 53), s(103));
    assert!(t.get(udp_id).unwrap().is_assured());
    t.set_offload(udp_id, true).unwrap();
    // a connection that is not offloaded, for comparison
    let plain = handshake(&mut t, 40001, 443, 9, s(10));

    let line = |t: &Table, id: ConnId, now: u64| -> String {
        let c = t.get(id).unwrap();
        let port = c.original().sport.to_string();
        let l = t.list(s(now));
        l.into_iter()
            .find(|l| l.contains(&format!("sport={port} ")))
            .unwrap()
    };
    // just offloaded: a day, as flow_offload_add sets it
    assert_eq!(listed_timeout(&line(&t, tcp_id, 10)), 86_400);
    assert_eq!(listed_timeout(&line(&t, udp_id, 103)), 86_400);
    assert!(line(&t, udp_id, 103).contains(" [HW_OFFLOAD] "));
    // counts down by the second
    assert_eq!(listed_timeout(&line(&t, tcp_id, 1010)), 85_400);
    assert_eq!(listed_timeout(&line(&t, udp_id, 1103)), 85_400);
    // at 301 s left the GC has not touched it; at 300 it puts it back to a day
    assert_eq!(listed_timeout(&line(&t, tcp_id, 10 + 86_099)), 301);
    assert_eq!(listed_timeout(&line(&t, tcp_id, 10 + 86_100)), 86_400);
    // long past both connections' own timeouts (5 days, 120 s), still within the kernel's range
    for now in [500_000, 10_000_000, 10_000_007, 123_456_789] {
        for id in [tcp_id, udp_id] {
            let l = line(&t, id, now);
            let v = listed_timeout(&l);
            assert!((301..=86_400).contains(&v), "{now}: {l}");
            assert_eq!(t.get(id).unwrap().remaining(s(now)), Duration::ZERO, "{l}");
        }
        // one second later, one second less (unless the GC just put it back)
        let (a, b) = (
            listed_timeout(&line(&t, tcp_id, now)),
            listed_timeout(&line(&t, tcp_id, now + 1)),
        );
        assert!(
            b == a - 1 || (a == 301 && b == 86_400),
            "{now}: {a} then {b}"
        );
    }
    assert_eq!(
        listed_timeout(&line(&t, udp_id, 500_000)),
        86_400 - (500_000 - 103) % 86_100
    );
    // the real deadlines are the slow path's
    assert_eq!(t.get(tcp_id).unwrap().deadline(), s(10 + 432_000));
    assert_eq!(t.get(udp_id).unwrap().deadline(), s(103 + 120));
    // and `list_remaining` gives them line by line, in the listing's order
    let (lines, left) = (t.list(s(1010)), t.list_remaining(s(1010)));
    assert_eq!(lines.len(), left.len());
    for (l, r) in lines.iter().zip(&left) {
        let want = if l.contains("sport=5000 ") {
            0
        } else {
            432_000 - 1000
        };
        assert_eq!(*r, want, "{l}");
    }
    // not offloaded: the countdown, down to 0
    let l = line(&t, plain, 1010);
    assert!(
        l.starts_with("tcp      6 431000 ESTABLISHED ") && l.contains(" [ASSURED] "),
        "{l}"
    );
    assert_eq!(listed_timeout(&line(&t, plain, 500_000)), 0);
    // back from the flowtable: its own countdown again
    t.clear_offload(tcp_id, s(500_000)).unwrap();
    let l = line(&t, tcp_id, 500_010);
    assert!(
        l.starts_with("tcp      6 431990 ESTABLISHED ") && l.contains(" [ASSURED] "),
        "{l}"
    );
}

/// Checks IPv4 and L4 checksums of a TCP or UDP frame and returns (src, sport, dst, dport).
fn endpoints(f: &[u8]) -> (IpAddr, u16, IpAddr, u16) {
    let p = Ipv4Packet::new_checked(&f[14..]).unwrap();
    assert!(p.verify_checksum());
    let (s, d) = (IpAddr::V4(p.src_addr()), IpAddr::V4(p.dst_addr()));
    if p.protocol() == nft_wire::IpProtocol::Tcp {
        let t = TcpPacket::new_checked(p.payload()).unwrap();
        assert!(t.verify_checksum(&s, &d));
        (s, t.src_port(), d, t.dst_port())
    } else {
        let u = UdpPacket::new_checked(p.payload()).unwrap();
        assert!(u.verify_checksum(&s, &d));
        (s, u.src_port(), d, u.dst_port())
    }
}

#[test]
fn masquerade_keeps_free_ports_and_moves_taken_ones() {
    let mut t = Table::default();
    let f1 = tcp(LAN, SRV, 40000, 443, F::Syn, 1, 0, b"");
    let m1 = meta(&f1);
    let (a, ..) = tracked(t.process(&m1, 0, s(1)));
    masquerade_confirm(&mut t, a, s(1));
    let ca = t.get(a).unwrap();
    assert_eq!(ca.reply(), Tuple::new(ip(SRV), ip(WAN), 6, 443, 40000));
    assert!(ca.status().contains(Status::SRC_NAT | Status::SRC_NAT_DONE));
    assert_eq!(
        ca.listing(s(1), false),
        "tcp      6 120 SYN_SENT src=192.168.1.10 dst=203.0.113.5 sport=40000 dport=443 [UNREPLIED] src=203.0.113.5 dst=198.18.0.2 sport=443 dport=40000 mark=0 use=1"
    );

    // Another client with the same source port gets the next port up.
    let (b, ..) = tracked(t.process(
        &meta(&tcp(LAN2, SRV, 40000, 443, F::Syn, 1, 0, b"")),
        0,
        s(1),
    ));
    masquerade_confirm(&mut t, b, s(1));
    assert_eq!(
        t.get(b).unwrap().reply(),
        Tuple::new(ip(SRV), ip(WAN), 6, 443, 40001)
    );

    // Rewrite both directions of b on real frames; checksums stay valid.
    let mut out = tcp(LAN2, SRV, 40000, 443, F::Ack, 2, 10, b"data");
    let m = meta(&out);
    let rw = t.rewrite(b, Direction::Original).unwrap();
    assert_eq!(
        rw,
        Rewrite {
            src_addr: Some(ip(WAN)),
            src_port: Some(40001),
            ..Rewrite::default()
        }
    );
    apply_rewrite(&mut out, &m, &rw, Some(Manip::Dst)).unwrap();
    assert_eq!(
        endpoints(&out),
        (ip(LAN2), 40000, ip(SRV), 443),
        "DST part changes nothing"
    );
    apply_rewrite(&mut out, &m, &rw, Some(Manip::Src)).unwrap();
    assert_eq!(endpoints(&out), (ip(WAN), 40001, ip(SRV), 443));

    let mut back = tcp(SRV, WAN, 443, 40001, F::Ack, 10, 6, b"resp");
    let mb = meta(&back);
    let (bid, dir) = t
        .lookup(&Tuple::new(ip(SRV), ip(WAN), 6, 443, 40001), 0)
        .unwrap();
    assert_eq!((bid, dir), (b, Direction::Reply));
    let rw = t.rewrite(b, dir).unwrap();
    apply_rewrite(&mut back, &mb, &rw, None).unwrap();
    assert_eq!(endpoints(&back), (ip(SRV), 443, ip(LAN2), 40000));

    assert_eq!(t.masq_ifindex(b), Some(2));
    assert_eq!(t.forget_masquerade(3), 0, "another interface's address");
    // Interface address gone: its masqueraded connections go with it.
    assert_eq!(t.forget_masquerade(2), 2);
    assert!(t.is_empty());
    assert_eq!(t.get(b), None);
    // a connection in a freed slot has no masquerade binding of its own
    let (c, ..) = tracked(t.process(
        &meta(&tcp(LAN2, SRV, 40002, 443, F::Syn, 1, 0, b"")),
        0,
        s(3),
    ));
    t.confirm(c, s(3)).unwrap();
    assert_eq!(t.masq_ifindex(c), None);
    assert_eq!(t.forget_masquerade(2), 0);
    assert_eq!(t.len(), 1);
    // an interface number beyond what the connection holds inline still works
    let (d, ..) = tracked(t.process(
        &meta(&tcp(LAN2, SRV, 40003, 443, F::Syn, 1, 0, b"")),
        0,
        s(3),
    ));
    t.masquerade(d, ip(WAN), 70_000, &NatRange::default())
        .unwrap();
    t.confirm(d, s(3)).unwrap();
    assert_eq!(t.masq_ifindex(d), Some(70_000));
    assert_eq!(t.forget_masquerade(2), 0);
    assert_eq!(t.forget_masquerade(70_000), 1);
    assert_eq!(t.len(), 1);
}

#[test]
fn dnat_redirect_and_persistent_ranges() {
    let mut t = Table::default();
    let backend = ip([10, 0, 0, 8]);
    let (a, ..) = tracked(t.process(&meta(&tcp(SRV, WAN, 5555, 80, F::Syn, 1, 0, b"")), 0, s(1)));
    t.dnat(a, &NatRange::to_addr(backend).with_ports(8080, 8080))
        .unwrap();
    assert_eq!(
        t.dnat(a, &NatRange::to_addr(backend)),
        Err(CtError::AlreadyBound)
    );
    t.confirm(a, s(1)).unwrap();
    assert_eq!(
        t.get(a).unwrap().reply(),
        Tuple::new(backend, ip(SRV), 6, 8080, 5555)
    );
    assert!(t.get(a).unwrap().status().contains(Status::DST_NAT));
    assert_eq!(
        t.snat(a, &NatRange::to_addr(ip(WAN))),
        Err(CtError::AlreadyConfirmed)
    );
    let rw = t.rewrite(a, Direction::Reply).unwrap();
    assert_eq!(
        rw,
        Rewrite {
            src_addr: Some(ip(WAN)),
            src_port: Some(80),
            ..Rewrite::default()
        }
    );

    let (r, ..) = tracked(t.process(&meta(&udp(LAN, SRV, 999, 53)), 0, s(1)));
    t.redirect(r, ip([192, 168, 1, 1]), Some((5353, 5353)))
        .unwrap();
    assert_eq!(
        t.rewrite(r, Direction::Original).unwrap(),
        Rewrite {
            dst_addr: Some(ip([192, 168, 1, 1])),
            dst_port: Some(5353),
            ..Rewrite::default()
        }
    );
    assert_eq!(
        t.snat(r, &NatRange::to_addr("2001:db8::1".parse().unwrap())),
        Err(CtError::FamilyMismatch)
    );

    // persistent: one client, one pool address, whatever the destination.
    let pool = NatRange::to_addrs(ip([100, 64, 0, 1]), ip([100, 64, 0, 200])).persistent();
    let mut seen = std::collections::BTreeSet::new();
    for d in 1..=20u8 {
        let (id, ..) = tracked(t.process(&meta(&udp(LAN, [8, 8, 8, d], 1234, 53)), 0, s(1)));
        t.snat(id, &pool).unwrap();
        t.confirm(id, s(1)).unwrap();
        seen.insert(t.get(id).unwrap().reply().dst);
    }
    assert_eq!(seen.len(), 1);
    // Without it, destinations spread the client over the pool.
    let pool = NatRange::to_addrs(ip([100, 64, 0, 1]), ip([100, 64, 0, 200]));
    let mut seen = std::collections::BTreeSet::new();
    for d in 1..=20u8 {
        let sp = 1234 + d as u16;
        let (id, ..) = tracked(t.process(&meta(&udp(LAN2, [8, 8, 4, d], sp, 53)), 0, s(1)));
        t.snat(id, &pool).unwrap();
        t.confirm(id, s(1)).unwrap();
        let a = t.get(id).unwrap().reply().dst;
        assert!((ip([100, 64, 0, 1])..=ip([100, 64, 0, 200])).contains(&a));
        seen.insert(a);
    }
    assert!(seen.len() > 5, "{seen:?}");
}

#[test]
fn port_range_exhaustion_and_fully_random_determinism() {
    fn run(seed: u64, range: NatRange) -> Vec<Result<u16, CtError>> {
        let mut t = Table::new(Config {
            seed,
            ..Config::default()
        });
        (0..12u16)
            .map(|i| {
                let (id, ..) = tracked(t.process(&meta(&udp(LAN, SRV, 3000 + i, 53)), 0, s(1)));
                t.snat(id, &range).and_then(|_| {
                    t.confirm(id, s(1))?;
                    Ok(t.get(id).unwrap().reply().dport)
                })
            })
            .collect()
    }
    let r = NatRange::to_addr(ip(WAN)).with_ports(1000, 1009);
    let got = run(1, r);
    // Original ports are out of range: the walk starts where (port - min) mod size lands.
    assert!(got[..10].iter().all(|p| matches!(p, Ok(1000..=1009))));
    let mut ports: Vec<u16> = got[..10].iter().map(|p| *p.as_ref().unwrap()).collect();
    ports.sort();
    assert_eq!(ports, (1000..=1009).collect::<Vec<_>>());
    assert_eq!(
        got[10..],
        [Err(CtError::NatExhausted), Err(CtError::NatExhausted)]
    );

    let fr = NatRange::to_addr(ip(WAN))
        .with_ports(20000, 60000)
        .fully_random();
    assert_eq!(run(7, fr), run(7, fr));
    assert_ne!(run(7, fr), run(8, fr));
    let rnd = NatRange::to_addr(ip(WAN)).random();
    assert!(run(1, rnd).iter().all(|p| matches!(p, Ok(1024..))));
}

#[test]
fn null_binding_at_confirm_resolves_reply_clash() {
    let mut t = Table::default();
    // Client A to the backend directly...
    let (a, ..) = tracked(pass(&mut t, &udp(LAN2, [10, 0, 0, 8], 7000, 53), s(1)));
    // ...and client B through a DNAT to the same backend, from a source that would make the
    // same reply tuple: the confirm moves B's source port.
    let (b, ..) = tracked(t.process(&meta(&udp(LAN2, SRV, 7000, 53)), 0, s(1)));
    t.dnat(b, &NatRange::to_addr(ip([10, 0, 0, 8]))).unwrap();
    t.confirm(b, s(1)).unwrap();
    assert_ne!(t.get(a).unwrap().reply(), t.get(b).unwrap().reply());
    assert_eq!(t.get(b).unwrap().reply().dport, 7001);
    assert!(t
        .get(b)
        .unwrap()
        .status()
        .contains(Status::SRC_NAT | Status::DST_NAT));
}

#[test]
fn icmp_error_for_masqueraded_flow_is_translated_inside_and_out() {
    let mut t = Table::default();
    let probe = udp(LAN, SRV, 40000, 33434);
    let m = meta(&probe);
    let (id, ..) = tracked(t.process(&m, 0, s(1)));
    masquerade_confirm(&mut t, id, s(1));
    let mut sent = probe.clone();
    nat(&t, id, Direction::Original, &mut sent);

    // The error comes back to the router's WAN address quoting the translated packet.
    let router = [10, 9, 9, 9];
    let mut err = icmp_error(router, WAN, 3, 3, &sent);
    let me = meta(&err);
    let (eid, dir, st) = tracked(t.process(&me, 0, s(2)));
    assert_eq!((eid, dir, st), (id, Direction::Reply, CtState::Related));
    nat(&t, id, dir, &mut err);

    let expected = icmp_error(router, LAN, 3, 3, &probe);
    assert_eq!(
        err, expected,
        "translated error must equal the one the client would get"
    );
}

#[test]
fn icmp_echo_id_nat() {
    let mut t = Table::default();
    // Two clients ping the same server with the same id through one address.
    let mut ids = Vec::new();
    for c in [LAN, LAN2] {
        let (id, ..) = tracked(t.process(&meta(&echo(c, SRV, 500, true)), 0, s(1)));
        masquerade_confirm(&mut t, id, s(1));
        ids.push(id);
    }
    assert_eq!(t.get(ids[0]).unwrap().reply().icmp_id(), 500);
    assert_eq!(t.get(ids[1]).unwrap().reply().icmp_id(), 501);
    let mut f = echo(LAN2, SRV, 500, true);
    nat(&t, ids[1], Direction::Original, &mut f);
    assert_eq!(f, echo(WAN, SRV, 501, true));
    let mut r = echo(SRV, WAN, 501, false);
    let m = meta(&r);
    let (id, dir) = t.process(&m, 0, s(1)).conn().unwrap();
    assert_eq!(id, ids[1]);
    nat(&t, id, dir, &mut r);
    assert_eq!(r, echo(SRV, LAN2, 500, false));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Under contention for a small port range no two connections share a reply tuple, a
    /// binding never hands out a taken one (confirm never clashes), and exhaustion only
    /// happens once the range is really used up for that destination.
    #[test]
    fn nat_never_shares_a_reply_tuple(
        flows in proptest::collection::vec((0u8..6, 1000u16..1040, 0u8..2, 0u8..3), 1..120),
        seed in any::<u64>(),
        mode in 0u8..3,
    ) {
        let mut t = Table::new(Config { seed, ..Config::default() });
        let mut range = NatRange::to_addr(ip(WAN)).with_ports(1000, 1015);
        match mode { 1 => range = range.random(), 2 => range = range.fully_random(), _ => {} }
        let mut replies = std::collections::HashSet::new();
        let mut per_dst = std::collections::HashMap::<(u8, u8), usize>::new();
        for (host, sport, dst, proto) in flows {
            let client = [192, 168, 1, 100 + host];
            let server = [203, 0, 113, 1 + dst];
            let f = match proto {
                0 => udp(client, server, sport, 53),
                1 => tcp(client, server, sport, 443, F::Syn, 1, 0, b""),
                _ => echo(client, server, sport, true),
            };
            let out = t.process(&meta(&f), 0, s(1));
            let Outcome::Tracked { id, .. } = out else { continue };
            if t.get(id).unwrap().is_confirmed() { continue; }
            match t.snat(id, &range) {
                Ok(()) => {
                    prop_assert_eq!(t.confirm(id, s(1)), Ok(()));
                    let r = t.get(id).unwrap().reply();
                    prop_assert!(replies.insert(r), "reply tuple {:?} handed out twice", r);
                    let port = if proto == 2 { r.icmp_id() } else { r.dport };
                    prop_assert!((1000..=1015).contains(&port), "port {} out of range", port);
                    *per_dst.entry((dst, proto)).or_default() += 1;
                }
                Err(CtError::NatExhausted) => {
                    prop_assert_eq!(per_dst.get(&(dst, proto)).copied().unwrap_or(0), 16);
                    t.discard(id);
                }
                Err(e) => prop_assert!(false, "unexpected {:?}", e),
            }
        }
    }

    /// The one-pass rewrite of a whole IPv4 TCP or UDP packet (each checksum updated once for
    /// every changed field) gives the bytes a packet built with the new fields has: checksums
    /// as a full computation makes them.
    #[test]
    fn one_pass_rewrite_equals_a_packet_built_rewritten(
        a in any::<[u8; 4]>(), b in any::<[u8; 4]>(), c in any::<[u8; 4]>(), d in any::<[u8; 4]>(),
        sp in any::<u16>(), dp in any::<u16>(), nsp in any::<u16>(), ndp in any::<u16>(),
        which in 0u8..16, is_tcp in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let build = |s: [u8; 4], x: [u8; 4], p: u16, q: u16| {
            if is_tcp { tcp(s, x, p, q, F::Ack, 7, 9, &payload) } else {
                let mut v = Vec::new();
                PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(s, x, 64).udp(p, q)
                    .write(&mut v, &payload).unwrap();
                v
            }
        };
        let mut f = build(a, b, sp, dp);
        let rw = Rewrite {
            src_addr: (which & 1 != 0).then(|| ip(c)),
            dst_addr: (which & 2 != 0).then(|| ip(d)),
            src_port: (which & 4 != 0).then_some(nsp),
            dst_port: (which & 8 != 0).then_some(ndp),
        };
        let m = meta(&f);
        apply_rewrite(&mut f, &m, &rw, None).unwrap();
        let want = build(
            if which & 1 != 0 { c } else { a },
            if which & 2 != 0 { d } else { b },
            if which & 4 != 0 { nsp } else { sp },
            if which & 8 != 0 { ndp } else { dp },
        );
        // a UDP checksum that sums to zero is sent as all ones: both encodings are valid, and
        // the incremental update keeps the one it can reach
        if !is_tcp && f[40..42] == [0xff, 0xff] && want[40..42] == [0, 0] {
            prop_assert_eq!(&f[..40], &want[..40]);
            prop_assert_eq!(&f[42..], &want[42..]);
        } else {
            prop_assert_eq!(f, want);
        }
    }

    /// Whatever the bytes, tracking never panics and never leaves more entries than allowed.
    #[test]
    fn arbitrary_frames_never_panic(frames in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..120), 1..40), start in 0u64..1000) {
        let mut t = Table::new(Config { max_entries: 8, accounting: true, ..Config::default() });
        for (i, mut f) in frames.into_iter().enumerate() {
            if f.len() > 14 { f[12] = 0x08; f[13] = if i % 3 == 0 { 0xdd } else { 0x00 }; }
            if f.len() > 14 && i % 3 != 0 { f[14] = 0x45; }
            let now = s(start + i as u64);
            if let Ok(m) = parse_frame(&f) {
                let out = t.process(&m, (i % 2) as u16, now);
                if let Outcome::Tracked { id, dir, .. } = out {
                    let _ = t.masquerade(id, ip(WAN), 1, &NatRange::default());
                    let _ = t.confirm(id, now);
                    if let Some(rw) = t.rewrite(id, dir) {
                        for manip in [Manip::Src, Manip::Dst] {
                            prop_assert_eq!(t.rewrite_part(id, dir, manip), Some(rw.only(manip)));
                        }
                        let _ = apply_rewrite(&mut f, &m, &rw, None);
                    }
                }
            }
            prop_assert!(t.len() <= 8);
            t.gc(now, 3);
        }
        let _ = t.list(s(start + 100));
    }
}

#[test]
fn zones_keep_equal_tuples_apart_and_labels_are_128_bits() {
    let mut t = Table::default();
    let f = udp(LAN, SRV, 1, 2);
    let m = meta(&f);
    let (a, ..) = tracked(t.process(&m, 0, s(1)));
    t.confirm(a, s(1)).unwrap();
    let (b, _, st) = tracked(t.process(&m, 5, s(1)));
    assert_eq!(st, CtState::New);
    assert_ne!(a, b);
    t.confirm(b, s(1)).unwrap();
    assert_eq!(t.get(b).unwrap().zone(), 5);
    assert!(t.list(s(1))[1].ends_with(" mark=0 zone=5 use=1"));
    let c = t.get_mut(b).unwrap();
    c.set_label(127);
    c.set_label(200);
    assert!(c.label(127) && !c.label(0) && !c.label(200));
    assert_eq!(c.labels(), 1u128 << 127);
}

#[test]
fn time_at_the_end_of_the_range_does_not_panic() {
    let mut t = acct_table();
    let (id, ..) = tracked(pass(&mut t, &udp(LAN, SRV, 1, 2), Duration::MAX));
    assert_eq!(t.get(id).unwrap().deadline(), Duration::MAX);
    t.refresh(id, Duration::MAX, s(5));
    assert_eq!(t.gc(Duration::MAX, 10), 1);
}

#[test]
fn a_source_keeps_its_mapping_across_destinations() {
    let mut t = Table::default();
    let pool =
        NatRange::to_addrs(ip([100, 64, 0, 1]), ip([100, 64, 0, 200])).with_ports(20000, 20999);
    let mut mapped = std::collections::BTreeSet::new();
    for d in 1..=10u8 {
        let (id, ..) = tracked(t.process(&meta(&udp(LAN, [8, 8, 8, d], 5000, 53)), 0, s(1)));
        t.snat(id, &pool).unwrap();
        t.confirm(id, s(1)).unwrap();
        let r = t.get(id).unwrap().reply();
        mapped.insert((r.dst, r.dport));
    }
    assert_eq!(mapped.len(), 1, "{mapped:?}");
    // Once the first mapping's connection is gone, the next one still finds a live one.
    let first = t.iter().next().unwrap().0;
    t.remove(first);
    let (id, ..) = tracked(t.process(&meta(&udp(LAN, [8, 8, 9, 9], 5000, 53)), 0, s(1)));
    t.snat(id, &pool).unwrap();
    t.confirm(id, s(1)).unwrap();
    let r = t.get(id).unwrap().reply();
    assert!(mapped.contains(&(r.dst, r.dport)));
}

/// A connection's slot and index share at 100,000 connections (UDP or TCP, without
/// accounting, with its masquerade interface); kept from growing back.
#[test]
fn memory_per_conn_at_100k() {
    let m = crate::Table::memory_per_conn(100_000);
    assert!(m.bytes_per_conn <= 150, "{m:?}");
}

/// The handle rules keep for `ct count` is never 0 (0 means "no connection"), also for the
/// table's very first connection, and it round-trips to the same id; a freed slot's next
/// connection has another handle.
#[test]
fn conn_handles_are_nonzero_and_round_trip() {
    let mut t = Table::new(Config::default());
    let (first, _, _) = tracked(pass(&mut t, &udp(LAN, SRV, 1000, 53), s(1)));
    assert_ne!(first.to_bits(), 0);
    assert_eq!(ConnId::from_bits(first.to_bits()), first);
    assert!(t.get(ConnId::from_bits(first.to_bits())).is_some());
    assert!(t.get(ConnId::from_bits(0)).is_none());
    t.remove(first).unwrap();
    let (second, _, _) = tracked(pass(&mut t, &udp(LAN2, SRV, 1001, 53), s(2)));
    assert_ne!(second.to_bits(), first.to_bits());
    assert!(t.get(ConnId::from_bits(first.to_bits())).is_none());
}

/// Confirmation reuses the hashes the first packet's lookup and the NAT checks computed; they
/// must be those of the tuples the connection has at confirmation: after a DNAT and an SNAT
/// that each moved the reply tuple, with another connection made in between (which takes
/// over the kept hashes), and for a connection confirmed without any NAT. Every tuple is then
/// found by a fresh lookup, and a second connection with the same reply is refused as a clash.
#[test]
fn confirm_enters_the_tuples_the_connection_has() {
    let mut t = Table::default();
    let backend = ip([10, 0, 0, 8]);
    // DNAT then SNAT: the reply moves twice
    let (a, ..) = tracked(t.process(&meta(&udp(SRV, WAN, 5555, 80)), 0, s(1)));
    t.dnat(a, &NatRange::to_addr(backend).with_ports(8080, 8080))
        .unwrap();
    // another new connection between the binding and the confirmation
    let (b, ..) = tracked(t.process(&meta(&udp(LAN, SRV, 4000, 53)), 0, s(1)));
    t.snat(a, &NatRange::to_addr(ip(LAN2))).unwrap();
    t.confirm(a, s(1)).unwrap();
    t.confirm(b, s(1)).unwrap();
    let reply = t.get(a).unwrap().reply();
    assert_eq!(
        reply,
        Tuple::new(backend, ip(LAN2), 17, 8080, 5555),
        "reply after both bindings"
    );
    assert_eq!(t.lookup(&reply, 0), Some((a, Direction::Reply)));
    assert_eq!(
        t.lookup(&Tuple::new(ip(SRV), ip(WAN), 17, 5555, 80), 0),
        Some((a, Direction::Original))
    );
    assert_eq!(
        t.lookup(&Tuple::new(ip(SRV), ip(LAN), 17, 53, 4000), 0),
        Some((b, Direction::Reply))
    );
    assert_eq!(
        t.lookup(&Tuple::new(ip(LAN), ip(SRV), 17, 4000, 53), 0),
        Some((b, Direction::Original))
    );
    // masquerade (the common path: every hash reused) and its lookups both ways
    let (c, ..) = tracked(t.process(&meta(&udp(LAN, SRV, 4001, 53)), 0, s(2)));
    masquerade_confirm(&mut t, c, s(2));
    let r = t.get(c).unwrap().reply();
    assert_eq!(r, Tuple::new(ip(SRV), ip(WAN), 17, 53, 4001));
    assert_eq!(t.lookup(&r, 0), Some((c, Direction::Reply)));
    assert_eq!(
        t.lookup(&Tuple::new(ip(LAN), ip(SRV), 17, 4001, 53), 0),
        Some((c, Direction::Original))
    );
    // two unconfirmed connections bound to one reply: the second is refused at
    // confirmation and leaves nothing behind (its original tuple, entered first, goes again)
    let (e, ..) = tracked(t.process(&meta(&udp(LAN, SRV, 4002, 53)), 0, s(3)));
    let (d, ..) = tracked(t.process(&meta(&udp(LAN2, SRV, 4002, 53)), 0, s(3)));
    t.masquerade(e, ip(WAN), 2, &NatRange::default()).unwrap();
    t.snat(d, &NatRange::to_addr(ip(WAN)).with_ports(4002, 4002))
        .unwrap();
    t.confirm(e, s(3)).unwrap();
    let stats = t.stats();
    assert_eq!(t.confirm(d, s(3)), Err(CtError::Clash));
    assert_eq!(t.stats().insert_failed, stats.insert_failed + 1);
    assert_eq!(
        t.lookup(&Tuple::new(ip(LAN2), ip(SRV), 17, 4002, 53), 0),
        None
    );
    let re = Tuple::new(ip(SRV), ip(WAN), 17, 53, 4002);
    assert_eq!(t.lookup(&re, 0), Some((e, Direction::Reply)));
    // the same tuple twice, unconfirmed: the second is refused on its original tuple
    let (f, ..) = tracked(t.process(&meta(&udp(LAN, SRV, 4003, 53)), 0, s(4)));
    let (g, ..) = tracked(t.process(&meta(&udp(LAN, SRV, 4003, 53)), 0, s(4)));
    t.confirm(f, s(4)).unwrap();
    assert_eq!(t.confirm(g, s(4)), Err(CtError::Clash));
    assert_eq!(
        t.lookup(&Tuple::new(ip(LAN), ip(SRV), 17, 4003, 53), 0),
        Some((f, Direction::Original))
    );
}

#[test]
fn synproxy_state_lives_in_the_extension_and_marks_seq_adjust() {
    let mut t = Table::default();
    let (id, _, _) = tracked(pass(
        &mut t,
        &tcp(LAN, SRV, 40000, 80, F::Syn, 100, 0, b""),
        s(1),
    ));
    assert!(t.get(id).unwrap().synproxy().is_none());
    assert_eq!(t.synproxied(), 0);
    let sp = Synproxy {
        isn: 7,
        its: 9,
        window: 100,
        ..Synproxy::default()
    };
    t.set_synproxy(id, sp).unwrap();
    let c = t.get(id).unwrap();
    assert_eq!(c.synproxy(), Some(&sp));
    // not yet answered by the server: no sequence adjustment
    assert!(!c.status().contains(Status::SEQ_ADJUST));
    assert_eq!(t.synproxied(), 1);
    let on = Synproxy {
        seq_off: 1234,
        established: true,
        ..sp
    };
    t.set_synproxy(id, on).unwrap();
    let c = t.get(id).unwrap();
    assert_eq!(c.synproxy(), Some(&on));
    assert!(c.status().contains(Status::SEQ_ADJUST));
    // counted once, and no longer once the connection is gone
    assert_eq!(t.synproxied(), 1);
    t.remove(id).unwrap();
    assert_eq!(t.synproxied(), 0);
    assert_eq!(t.set_synproxy(id, on), Err(CtError::NoSuchConn));
}

/// A flowtable's running counts (low 32 bits) are added as differences, across a wrap, from
/// zero again for a new flow, and from zero after a rebase; without accounting nothing moves.
#[test]
fn offloaded_counts_add_differences() {
    let mut t = Table::new(Config {
        accounting: true,
        ..Config::default()
    });
    let (id, _, _) = tracked(pass(&mut t, &udp(LAN, SRV, 1000, 53), s(1)));
    t.confirm(id, s(1)).unwrap();
    let base = t.get(id).unwrap().counter(Direction::Original);
    t.set_offload(id, false).unwrap();
    t.account_offloaded(id, Direction::Original, 3, 300);
    t.account_offloaded(id, Direction::Original, 5, 500);
    let c = t.get(id).unwrap().counter(Direction::Original);
    assert_eq!((c.packets, c.bytes), (base.packets + 5, base.bytes + 500));
    // near the top of 32 bits, then across the wrap: 10 more bytes
    let big = u64::from(u32::MAX - 4) - 500;
    t.account_offloaded(id, Direction::Original, 5, u32::MAX - 4);
    t.account_offloaded(id, Direction::Original, 5, 5);
    let c = t.get(id).unwrap().counter(Direction::Original);
    assert_eq!(c.bytes, base.bytes + 500 + big + 10);
    // moved elsewhere after the sync: counting from zero again
    t.rebase_offloaded(id, Direction::Original);
    t.account_offloaded(id, Direction::Original, 2, 20);
    let c = t.get(id).unwrap().counter(Direction::Original);
    assert_eq!(
        (c.packets, c.bytes),
        (base.packets + 7, base.bytes + 530 + big)
    );
    // a new flow after the old one left starts from zero
    t.clear_offload(id, s(2)).unwrap();
    t.set_offload(id, false).unwrap();
    t.account_offloaded(id, Direction::Original, 1, 10);
    let c = t.get(id).unwrap().counter(Direction::Original);
    assert_eq!(
        (c.packets, c.bytes),
        (base.packets + 8, base.bytes + 540 + big)
    );
    assert_eq!(t.get(id).unwrap().counter(Direction::Reply).packets, 0);

    let mut off = Table::default();
    let (id, _, _) = tracked(pass(&mut off, &udp(LAN, SRV, 1001, 53), s(1)));
    off.account_offloaded(id, Direction::Original, 4, 40);
    assert_eq!(off.get(id).unwrap().counter(Direction::Original).packets, 0);
}

/// An SCTP packet (IPv4 in Ethernet) with the given chunks and a right CRC32c.
fn sctp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, vtag: u32, chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sp.to_be_bytes());
    l4.extend_from_slice(&dp.to_be_bytes());
    l4.extend_from_slice(&vtag.to_be_bytes());
    l4.extend_from_slice(&[0; 4]);
    for c in chunks {
        l4.extend_from_slice(c);
    }
    nft_wire::checksum::fill_sctp(&mut l4);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src, dst, 64)
        .write(&mut v, etherparse::IpNumber(132), &l4)
        .unwrap();
    v
}

fn chunk(ty: u8, flags: u8, value: &[u8]) -> Vec<u8> {
    let mut c = vec![ty, flags];
    c.extend_from_slice(&(4 + value.len() as u16).to_be_bytes());
    c.extend_from_slice(value);
    c.resize(c.len().div_ceil(4) * 4, 0);
    c
}

fn sctp_init(ty: u8, tag: u32) -> Vec<u8> {
    let mut v = tag.to_be_bytes().to_vec();
    v.extend_from_slice(&[0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 0, 1]);
    chunk(ty, 0, &v)
}

/// Tracks an SCTP frame (conntrack reads its chunks) and confirms a new connection.
fn pass_sctp(t: &mut Table, f: &[u8], now: Duration) -> Outcome {
    let out = t.process_frame(&meta(f), f, 0, now);
    confirm_new(t, out, now)
}

/// Another client's association, masqueraded, holds WAN:5000 (from LAN2:5000 to SRV:6000).
fn take_wan_port_5000(t: &mut Table) {
    let other = sctp(LAN2, SRV, 5000, 6000, 0, &[sctp_init(1, 0x99)]);
    let (o, ..) = tracked(t.process_frame(&meta(&other), &other, 0, s(1)));
    masquerade_confirm(t, o, s(1));
}

#[test]
fn sctp_association_through_masquerade() {
    let mut t = Table::default();
    // another client holds WAN:5000 already, so the association's port moves
    take_wan_port_5000(&mut t);

    let init = sctp(LAN, SRV, 5000, 6000, 0, &[sctp_init(1, 0x1111)]);
    let out = t.process_frame(&meta(&init), &init, 0, s(1));
    let (a, dir, state) = tracked(out);
    assert_eq!((dir, state), (Direction::Original, CtState::New));
    masquerade_confirm(&mut t, a, s(1));
    let c = t.get(a).unwrap();
    assert_eq!(c.sctp_state(), Some(SctpState::Closed));
    assert_eq!(
        c.listing(s(1), false),
        "sctp     132 10 CLOSED src=192.168.1.10 dst=203.0.113.5 sport=5000 dport=6000 [UNREPLIED] src=203.0.113.5 dst=198.18.0.2 sport=6000 dport=5001 mark=0 use=1"
    );
    // NAT moves the port and recomputes the CRC32c
    let mut f = init.clone();
    let m = meta(&f);
    let rw = t.rewrite(a, Direction::Original).unwrap();
    apply_rewrite(&mut f, &m, &rw, None).unwrap();
    assert_eq!(endpoints_sctp(&f), (ip(WAN), 5001, ip(SRV), 6000));
    assert_eq!(
        (&f[38..42], &f[46..]),
        (&init[38..42], &init[46..]),
        "tag and chunks kept"
    );
    assert!(nft_wire::checksum::verify_sctp(&f[34..]));
    assert_ne!(f[42..46], init[42..46], "the CRC covers the port");

    // the answer, through the reply tuple, and the rest of the handshake
    let ack = sctp(SRV, WAN, 6000, 5001, 0x1111, &[sctp_init(2, 0x2222)]);
    let (id, dir, state) = tracked(pass_sctp(&mut t, &ack, s(2)));
    assert_eq!(
        (id, dir, state),
        (a, Direction::Reply, CtState::Established)
    );
    assert_eq!(t.get(a).unwrap().sctp_state(), Some(SctpState::CookieWait));
    let echo = sctp(LAN, SRV, 5000, 6000, 0x2222, &[chunk(10, 0, b"cookie")]);
    tracked(pass_sctp(&mut t, &echo, s(2)));
    assert!(!t.get(a).unwrap().is_assured());
    let cack = sctp(SRV, WAN, 6000, 5001, 0x1111, &[chunk(11, 0, &[])]);
    tracked(pass_sctp(&mut t, &cack, s(3)));
    let c = t.get(a).unwrap();
    assert_eq!(c.sctp_state(), Some(SctpState::Established));
    assert!(c.is_assured());
    assert_eq!(
        c.listing(s(3), false),
        "sctp     132 210 ESTABLISHED src=192.168.1.10 dst=203.0.113.5 sport=5000 dport=6000 src=203.0.113.5 dst=198.18.0.2 sport=6000 dport=5001 [ASSURED] mark=0 use=1"
    );
    // the reply's rewrite puts the client's port back, CRC recomputed
    let data = sctp(SRV, WAN, 6000, 5001, 0x1111, &[chunk(0, 3, &[0; 12])]);
    let mut f = data.clone();
    let rw = t.rewrite(a, Direction::Reply).unwrap();
    apply_rewrite(&mut f, &meta(&data), &rw, None).unwrap();
    assert_eq!(endpoints_sctp(&f), (ip(SRV), 6000, ip(LAN), 5000));
    assert!(nft_wire::checksum::verify_sctp(&f[34..]));

    // wrong tag, bad CRC, malformed: invalid, the association untouched
    let wrong = sctp(LAN, SRV, 5000, 6000, 0x1111, &[chunk(0, 3, &[0; 12])]);
    assert_eq!(
        pass_sctp(&mut t, &wrong, s(4)),
        Outcome::Invalid(Invalid::SctpVtag)
    );
    let mut bad = sctp(LAN, SRV, 5000, 6000, 0x2222, &[chunk(0, 3, &[0; 12])]);
    bad[50] ^= 1;
    assert_eq!(
        pass_sctp(&mut t, &bad, s(4)),
        Outcome::Invalid(Invalid::SctpChecksum)
    );
    let empty = sctp(LAN, SRV, 5000, 6000, 0x2222, &[]);
    assert_eq!(
        t.process_frame(&meta(&empty), &empty, 0, s(4)),
        Outcome::Invalid(Invalid::SctpMalformed)
    );
    // without the frame, SCTP cannot be tracked
    assert_eq!(
        t.process(&meta(&data), 0, s(4)),
        Outcome::Invalid(Invalid::SctpMalformed)
    );

    // shutdown: 3 s states, then CLOSED with 10 s
    let shut = sctp(LAN, SRV, 5000, 6000, 0x2222, &[chunk(7, 0, &[0; 4])]);
    tracked(pass_sctp(&mut t, &shut, s(5)));
    assert_eq!(
        t.get(a).unwrap().sctp_state(),
        Some(SctpState::ShutdownSent)
    );
    assert_eq!(t.get(a).unwrap().expiration_ms(s(5)), 3000);
    let sack = sctp(SRV, WAN, 6000, 5001, 0x1111, &[chunk(8, 0, &[])]);
    tracked(pass_sctp(&mut t, &sack, s(5)));
    assert_eq!(
        t.get(a).unwrap().sctp_state(),
        Some(SctpState::ShutdownAckSent)
    );
    let done = sctp(LAN, SRV, 5000, 6000, 0x2222, &[chunk(14, 0, &[])]);
    tracked(pass_sctp(&mut t, &done, s(6)));
    let c = t.get(a).unwrap();
    assert_eq!(c.sctp_state(), Some(SctpState::Closed));
    assert!(t.list(s(6))[1].starts_with("sctp     132 10 CLOSED src=192.168.1.10"));
    // ABORT, COOKIE ACK cannot open; a stray INIT ACK neither
    for f in [
        sctp(LAN, SRV, 5100, 6000, 5, &[chunk(6, 0, &[])]),
        sctp(LAN, SRV, 5100, 6000, 5, &[chunk(11, 0, &[])]),
    ] {
        assert_eq!(
            pass_sctp(&mut t, &f, s(7)),
            Outcome::Invalid(Invalid::SctpState)
        );
    }
    // `ct timeout` policies name SCTP states
    let p = t
        .config()
        .timeouts
        .with_policy(132, &[("established".into(), 60), ("closed".into(), 1)])
        .unwrap();
    assert_eq!(p.sctp[4], s(60));
    assert_eq!(p.new_conn(132), s(1));
    assert!(t
        .config()
        .timeouts
        .with_policy(132, &[("syn_sent".into(), 1)])
        .is_err());
}

fn endpoints_sctp(f: &[u8]) -> (IpAddr, u16, IpAddr, u16) {
    let m = meta(f);
    let l4 = m.l4_offset.unwrap();
    (
        m.src_addr.unwrap(),
        u16::from_be_bytes([f[l4], f[l4 + 1]]),
        m.dst_addr.unwrap(),
        u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]),
    )
}

/// An ICMP error quoting a masqueraded SCTP packet whose port moved: related to the
/// association, and translated inside (ports back, the quoted CRC32c made again over what is
/// quoted, as `sctp_manip_pkt` does on an inner header) and out.
#[test]
fn icmp_error_quoting_natted_sctp_is_translated() {
    let mut t = Table::default();
    take_wan_port_5000(&mut t);
    let init = sctp(LAN, SRV, 5000, 6000, 0, &[sctp_init(1, 0x1111)]);
    let m = meta(&init);
    let (id, ..) = tracked(t.process_frame(&m, &init, 0, s(1)));
    masquerade_confirm(&mut t, id, s(1));
    let mut sent = init.clone();
    nat(&t, id, Direction::Original, &mut sent);
    assert_eq!(endpoints_sctp(&sent).1, 5001);
    // the whole packet quoted (an error quotes up to 576 bytes)
    let router = [10, 9, 9, 9];
    let mut err = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(router, WAN, 64)
        .icmpv4_raw(3, 3, [0; 4])
        .write(&mut err, &sent[14..])
        .unwrap();
    let me = meta(&err);
    let (eid, dir, st) = tracked(t.process_frame(&me, &err, 0, s(2)));
    assert_eq!((eid, dir, st), (id, Direction::Reply, CtState::Related));
    nat(&t, id, dir, &mut err);
    let q = 34 + 8;
    let quoted = &err[q..];
    assert_eq!(&quoted[12..16], &LAN, "quoted source back to the client");
    assert_eq!(
        &quoted[20..24],
        &[0x13, 0x88, 0x17, 0x70],
        "ports 5000 -> 6000"
    );
    assert!(
        nft_wire::checksum::verify_sctp(&quoted[20..]),
        "quoted CRC32c remade"
    );
    assert_eq!(&quoted[20..], &init[34..], "the client's own packet");
    let m2 = meta(&err);
    assert_eq!(m2.dst_addr, Some(ip(LAN)));
    assert_eq!(nft_wire::checksum::checksum(&err[34..]), 0, "ICMP checksum");
}

/// The one-manip rewrite a NAT hook applies is the full rewrite's part, for DNAT and SNAT
/// together, both directions, TCP, UDP and ICMP.
#[test]
fn rewrite_part_is_the_rewrite_of_one_manip() {
    let mut t = Table::default();
    let frames = [
        tcp(LAN, SRV, 40000, 8080, F::Syn, 1, 0, b""),
        udp(LAN, SRV, 5353, 53),
        echo(LAN, SRV, 77, true),
    ];
    for f in frames {
        let (id, ..) = tracked(t.process(&meta(&f), 0, s(1)));
        t.dnat(id, &NatRange::to_addr(ip(LAN2)).with_ports(80, 80))
            .unwrap();
        t.masquerade(id, ip(WAN), 2, &NatRange::default().with_ports(1000, 1000))
            .unwrap();
        t.confirm(id, s(1)).unwrap();
        for dir in [Direction::Original, Direction::Reply] {
            let rw = t.rewrite(id, dir).unwrap();
            assert!(!rw.is_empty());
            for manip in [Manip::Src, Manip::Dst] {
                assert_eq!(t.rewrite_part(id, dir, manip), Some(rw.only(manip)));
            }
        }
        let c = t.get(id).unwrap();
        assert_eq!(c.reply().src, ip(LAN2));
        assert_eq!(c.reply().dst, ip(WAN));
        assert_eq!(c.original().src, ip(LAN), "the original stays as it came");
    }
}
