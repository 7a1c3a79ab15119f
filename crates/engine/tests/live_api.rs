//! What the live router (`nft-offload run`) needs from the engine: neighbours learnt and lost
//! while running, routes and addresses replaced, and an atomic ruleset swap that keeps the
//! connection table and the flows.

mod common;
use common::*;
use nft_engine::counters::Drop;
use nft_engine::fib::{NextHop, RouteKind};
use nft_engine::topology::StaticRoute;
use nft_engine::{Config, Port};
use nft_lang::ruleset::{load_str, LoadOpts};

fn compile(text: &str) -> nft_engine::rules::Ruleset {
    let ast = load_str("rules.nft", text, &LoadOpts::default()).unwrap();
    nft_engine::rules::compile(&ast).unwrap()
}

/// The UDP exchange that assures a connection and offloads it: request, answer, and a request
/// more than two seconds later (a UDP stream); the flow exists from `t + 3`.
fn assured_udp(r: &mut nft_engine::Router, t: u64) -> u16 {
    let out = one(
        r,
        LAN,
        lan_udp(REMOTE, 5000, 53, 64, b"q1"),
        secs(t),
        Port::Iface(WAN),
    );
    let sport = check(&out).ports.unwrap().0;
    one(
        r,
        WAN,
        wan_udp(REMOTE, 53, sport, 60, b"a1"),
        secs(t),
        Port::Iface(LAN),
    );
    one(
        r,
        LAN,
        lan_udp(REMOTE, 5000, 53, 64, b"q2"),
        secs(t + 3),
        Port::Iface(WAN),
    );
    sport
}

/// Adds a route for the host `dst` via `via` on the WAN to the routes in force.
fn add_host_route(r: &mut nft_engine::Router, dst: &str, via: &str) {
    let mut routes = r.topology().routes.clone();
    routes.push(StaticRoute {
        prefix: dst.parse().unwrap(),
        len: 32,
        kind: RouteKind::Unicast(NextHop {
            ifindex: WAN,
            via: Some(via.parse().unwrap()),
        }),
    });
    r.set_routes(routes);
}

#[test]
fn unresolved_neighbour_holds_the_frames_until_resolved() {
    let cfg = Config {
        resolve_neighbours: true,
        ..Config::default()
    };
    let mut r = router_with(TOPOLOGY, RULES, cfg);
    // the gateway's MAC is not known yet: the frames wait
    r.set_neighbour(WAN, "198.18.0.1".parse().unwrap(), None);
    for q in [&b"q1"[..], b"q2"] {
        none(&mut r, LAN, lan_udp(REMOTE, 5000, 53, 64, q), secs(1));
    }
    assert_eq!(r.held(), 2);
    assert_eq!(r.counters().dropped(Drop::NeighbourUnresolved), 0);
    assert_eq!(r.counters().dropped(Drop::NoNeighbour), 0);
    // asked once, however many packets waited
    assert_eq!(
        r.take_unresolved(),
        vec![(WAN, "198.18.0.1".parse().unwrap())]
    );
    assert!(r.take_unresolved().is_empty());
    // the kernel answers: the held frames leave first, in order, then the new one
    r.set_neighbour(WAN, "198.18.0.1".parse().unwrap(), Some(GW_MAC));
    let out = send(&mut r, LAN, lan_udp(REMOTE, 5000, 53, 64, b"q3"), secs(2));
    assert_eq!(out.len(), 3);
    for (f, q) in out.iter().zip([&b"q1"[..], b"q2", b"q3"]) {
        assert_eq!(f.egress, Port::Iface(WAN));
        assert_eq!(&f.data[0..6], &GW_MAC);
        assert_eq!(&f.data[6..12], &WAN_MAC);
        assert!(f.data.ends_with(q));
        // the same connection: one masquerade source port for all three
        assert_eq!(check(&f.data).ports, check(&out[0].data).ports);
    }
    assert_eq!(r.held(), 0);
    assert_eq!(r.conntrack().len(), 1);
    assert_eq!(r.report(secs(2)).interfaces[WAN].tx_packets, 3);
}

#[test]
fn held_frames_give_up_after_three_seconds() {
    let cfg = Config {
        resolve_neighbours: true,
        ..Config::default()
    };
    let mut r = router_with(TOPOLOGY, RULES, cfg);
    r.set_neighbour(WAN, "198.18.0.1".parse().unwrap(), None);
    none(&mut r, LAN, lan_udp(REMOTE, 5000, 53, 64, b"q1"), secs(1));
    assert!(send(&mut r, LAN, vec![], secs(3)).is_empty());
    assert_eq!(r.held(), 1);
    assert!(send(&mut r, LAN, vec![], secs(5)).is_empty());
    assert_eq!(r.held(), 0);
    assert_eq!(r.counters().dropped(Drop::NeighbourUnresolved), 1);
    // the connection stays; its next packet is held again and asks again
    assert_eq!(r.conntrack().len(), 1);
    none(&mut r, LAN, lan_udp(REMOTE, 5000, 53, 64, b"q2"), secs(5));
    assert_eq!(r.held(), 1);
}

#[test]
fn neighbour_change_reaches_offloaded_flows() {
    let mut r = router();
    let sport = assured_udp(&mut r, 1);
    assert_eq!(
        r.list_flows(secs(4)).len(),
        2,
        "{:?}",
        r.list_flows(secs(4))
    );
    // the gateway moves to a new MAC: the fast path follows at the next burst
    let new_mac = [2, 0, 0, 0, 2, 0xee];
    r.set_neighbour(WAN, "198.18.0.1".parse().unwrap(), Some(new_mac));
    let out = lan_to_wan(&mut r, lan_udp(REMOTE, 5000, 53, 64, b"q3"), secs(5));
    assert_eq!(&out[0..6], &new_mac);
    assert_eq!(check(&out).ports.unwrap().0, sport);
    assert_eq!(r.report(secs(5)).fast_path_packets, 1);
}

/// The slow path remembers the MAC of the next hop it last sent to: a neighbour that
/// changes reaches the next new connection all the same.
#[test]
fn neighbour_change_reaches_new_connections() {
    let mut r = router();
    let out = lan_to_wan(&mut r, lan_udp(REMOTE, 5000, 53, 64, b"q1"), secs(1));
    assert_eq!(&out[0..6], &GW_MAC);
    let new_mac = [2, 0, 0, 0, 2, 0xee];
    r.set_neighbour(WAN, "198.18.0.1".parse().unwrap(), Some(new_mac));
    let out = lan_to_wan(&mut r, lan_udp(REMOTE, 5001, 53, 64, b"q2"), secs(2));
    assert_eq!(&out[0..6], &new_mac);
    assert_eq!(r.report(secs(2)).slow_path_packets, 2);
}

#[test]
fn route_and_address_replacement() {
    let mut r = router();
    // a host route for REMOTE via another WAN gateway takes over from the default route
    add_host_route(&mut r, "203.0.113.5", "198.18.0.77");
    let other = [2, 0, 0, 0, 2, 0x77];
    r.set_neighbour(WAN, "198.18.0.77".parse().unwrap(), Some(other));
    let out = lan_to_wan(&mut r, lan_udp(REMOTE, 5000, 53, 64, b"q"), secs(1));
    assert_eq!(&out[0..6], &other);
    // the WAN address changes: masquerade uses the new one
    r.set_addresses(WAN, vec![("198.18.0.9".parse().unwrap(), 24)]);
    let out = lan_to_wan(&mut r, lan_udp([8, 8, 8, 8], 5001, 53, 64, b"q"), secs(1));
    assert_eq!(check(&out).src_addr, Some("198.18.0.9".parse().unwrap()));
}

#[test]
fn ruleset_swap_keeps_connections_and_flows() {
    let mut r = router();
    let sport = assured_udp(&mut r, 1);
    let flows_before = r.list_flows(secs(4));
    assert_eq!(flows_before.len(), 2, "{flows_before:?}");
    let fast_before = r.report(secs(4)).fast_path_packets;
    // the same flowtable, one more rule
    let more = RULES.replace(
        "tcp dport 23 reject with tcp reset",
        "tcp dport 23 reject with tcp reset\n\t\tudp dport 5555 drop",
    );
    r.replace_ruleset(compile(&more), secs(5));
    assert_eq!(r.list_flows(secs(5)).len(), 2);
    assert_eq!(r.conntrack().len(), 1);
    // the answer still takes the fast path
    wan_to_lan(&mut r, wan_udp(REMOTE, 53, sport, 60, b"a2"), secs(5));
    assert_eq!(r.report(secs(5)).fast_path_packets, fast_before + 1);
    // the new rule is in force for new connections
    none(&mut r, LAN, lan_udp(REMOTE, 5001, 5555, 64, b"x"), secs(5));
    assert_eq!(r.counters().dropped(Drop::RuleDrop), 1);

    // a ruleset without the flowtable: the flow goes back to the slow path, the connection stays
    let no_ft = RULES
        .replace(
            "flowtable ft { hook ingress priority 0; devices = { \"lan\", \"wan\" }; }",
            "",
        )
        .replace("meta l4proto { tcp, udp } flow add @ft", "");
    r.replace_ruleset(compile(&no_ft), secs(6));
    assert_eq!(r.list_flows(secs(6)).len(), 0);
    assert_eq!(r.conntrack().len(), 1);
    let fast = r.report(secs(6)).fast_path_packets;
    wan_to_lan(&mut r, wan_udp(REMOTE, 53, sport, 60, b"a3"), secs(6));
    assert!(r.report(secs(6)).fast_path_packets <= fast);
}

#[test]
fn a_flowtable_added_by_a_reload_routes_under_the_fib_in_force() {
    let mut r = router();
    // the FIB moves on (a route added): its generation is no longer the first
    add_host_route(&mut r, "203.0.113.77", "198.18.0.1");
    let no_ft = RULES
        .replace(
            "flowtable ft { hook ingress priority 0; devices = { \"lan\", \"wan\" }; }",
            "",
        )
        .replace("meta l4proto { tcp, udp } flow add @ft", "");
    r.replace_ruleset(compile(&no_ft), secs(1));
    let sport = assured_udp(&mut r, 1);
    assert_eq!(r.list_flows(secs(4)).len(), 0);
    // the flowtable comes back: the next packet admits the flow, the answer takes it
    r.replace_ruleset(compile(RULES), secs(5));
    lan_to_wan(&mut r, lan_udp(REMOTE, 5000, 53, 64, b"q3"), secs(5));
    assert_eq!(r.list_flows(secs(5)).len(), 2);
    let fast = r.report(secs(5)).fast_path_packets;
    for (i, t) in [5, 6, 7].into_iter().enumerate() {
        wan_to_lan(&mut r, wan_udp(REMOTE, 53, sport, 60, b"a"), secs(t));
        assert_eq!(r.report(secs(t)).fast_path_packets, fast + i as u64 + 1);
    }
    assert_eq!(r.list_flows(secs(7)).len(), 2);
}

#[test]
fn link_mac_and_mtu_changes_reach_offloaded_flows() {
    let mut r = router();
    let sport = assured_udp(&mut r, 1);
    assert_eq!(r.list_flows(secs(4)).len(), 2);
    // the WAN interface takes another MAC: offloaded packets leave with it
    let new_mac = [2, 0, 0, 0, 9, 9];
    assert!(r.set_link_params(WAN, new_mac, 1500));
    assert!(!r.set_link_params(WAN, new_mac, 1500));
    let out = lan_to_wan(&mut r, lan_udp(REMOTE, 5000, 53, 64, b"q3"), secs(5));
    assert_eq!(&out[6..12], &new_mac);
    assert_eq!(check(&out).ports.unwrap().0, sport);
    assert_eq!(r.report(secs(5)).fast_path_packets, 1);
    // answers now come addressed to the new MAC, and take the fast path
    wan_to_lan(
        &mut r,
        udp4(GW_MAC, new_mac, REMOTE, ROUTER_WAN, 53, sport, 60, b"a2"),
        secs(5),
    );
    assert_eq!(r.report(secs(5)).fast_path_packets, 2);
    // a smaller MTU: a datagram that fit before no longer does
    let big = vec![7u8; 200];
    let out = lan_to_wan(&mut r, lan_udp(REMOTE, 5000, 53, 64, &big), secs(6));
    assert_eq!(out.len(), 14 + 20 + 8 + 200);
    assert!(r.set_link_params(WAN, new_mac, 128));
    let out = send(&mut r, LAN, lan_udp(REMOTE, 5000, 53, 64, &big), secs(6));
    assert!(
        out.iter()
            .all(|f| f.egress != Port::Iface(WAN) || f.data.len() <= 14 + 128),
        "{out:?}"
    );
    assert_eq!(r.topology().interfaces[WAN].mtu, 128);
}
