//! The slow path end to end: frames in, frames out, byte for byte.

mod common;
use common::*;
use nft_engine::counters::Drop;
use nft_engine::Port;

#[test]
fn masquerade_both_directions() {
    let mut r = router();
    let out = one(&mut r, LAN, udp4(CLIENT_MAC, LAN_MAC, CLIENT, [8, 8, 8, 8], 5000, 53, 64, b"query"), secs(1), Port::Iface(WAN));
    // source NAT to the WAN address, port into the masquerade range; TTL one less
    let m = check(&out);
    let (sport, dport) = m.ports.unwrap();
    assert!((40000..=40999).contains(&sport), "{sport}");
    assert_eq!(dport, 53);
    let want = udp4(WAN_MAC, GW_MAC, ROUTER_WAN, [8, 8, 8, 8], sport, 53, 63, b"query");
    assert_eq!(out, want);

    // the answer finds the connection and goes back to the client, translated back
    let back = one(&mut r, WAN, udp4(GW_MAC, WAN_MAC, [8, 8, 8, 8], ROUTER_WAN, 53, sport, 60, b"answer"), secs(2), Port::Iface(LAN));
    assert_eq!(back, udp4(LAN_MAC, CLIENT_MAC, [8, 8, 8, 8], CLIENT, 53, 5000, 59, b"answer"));

    let rep = r.report(secs(2));
    assert_eq!(rep.packets_in, 2);
    assert_eq!(rep.packets_out, 2);
    assert_eq!(rep.nat_bindings, 1);
    assert_eq!(rep.nat_packets, 2);
    assert_eq!(rep.slow_path_packets, 2);
    assert_eq!(rep.connections.get("udp replied"), Some(&1));
    assert!(rep.drops.is_empty(), "{:?}", rep.drops);
    assert_eq!(r.counters().dropped(Drop::RuleDrop), 0);
}
