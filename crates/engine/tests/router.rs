//! The slow path end to end: frames in, frames out, byte for byte.

mod common;
use common::*;
use nft_engine::counters::Drop;
use nft_engine::Port;

/// The frame's headers, checksums verified, its IPv4 source and destination asserted.
fn check_ipv4(frame: &[u8], src: [u8; 4], dst: [u8; 4]) -> nft_wire::PacketMeta {
    let m = check(frame);
    assert_eq!(
        (m.src_addr, m.dst_addr),
        (Some(src.into()), Some(dst.into())),
        "addresses"
    );
    m
}

#[test]
fn masquerade_both_directions() {
    let mut r = router();
    let out = lan_to_wan(
        &mut r,
        lan_udp([8, 8, 8, 8], 5000, 53, 64, b"query"),
        secs(1),
    );
    // source NAT to the WAN address, port into the masquerade range; TTL one less
    let m = check(&out);
    let (sport, dport) = m.ports.unwrap();
    assert!((40000..=40999).contains(&sport), "{sport}");
    assert_eq!(dport, 53);
    let want = udp4(
        WAN_MAC,
        GW_MAC,
        ROUTER_WAN,
        [8, 8, 8, 8],
        sport,
        53,
        63,
        b"query",
    );
    assert_eq!(out, want);

    // the answer finds the connection and goes back to the client, translated back
    let back = wan_to_lan(
        &mut r,
        wan_udp([8, 8, 8, 8], 53, sport, 60, b"answer"),
        secs(2),
    );
    assert_eq!(
        back,
        udp4(
            LAN_MAC,
            CLIENT_MAC,
            [8, 8, 8, 8],
            CLIENT,
            53,
            5000,
            59,
            b"answer"
        )
    );

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

#[test]
fn dnat_port_forward_inbound_and_back() {
    let mut r = router();
    let syn = wan_tcp(41000, 8080, 7, Tcp::Syn, b"");
    let fwd = wan_to_lan(&mut r, syn, secs(1));
    let mut want = tcp4(
        LAN_MAC,
        SERVER_MAC,
        REMOTE,
        SERVER,
        41000,
        80,
        7,
        Tcp::Syn,
        b"",
    );
    want[14 + 8] = 63; // TTL
    fix_ipv4_checksum(&mut want);
    assert_eq!(fwd, want);

    let synack = tcp4(
        SERVER_MAC,
        LAN_MAC,
        SERVER,
        REMOTE,
        80,
        41000,
        900,
        Tcp::SynAck(8),
        b"",
    );
    let back = lan_to_wan(&mut r, synack, secs(1));
    let mut want = tcp4(
        WAN_MAC,
        GW_MAC,
        ROUTER_WAN,
        REMOTE,
        8080,
        41000,
        900,
        Tcp::SynAck(8),
        b"",
    );
    want[14 + 8] = 63;
    fix_ipv4_checksum(&mut want);
    assert_eq!(back, want);
    assert_eq!(r.report(secs(1)).connections.get("tcp syn_recv"), Some(&1));
    // nothing forwards to port 8081
    none(&mut r, WAN, wan_tcp(41001, 8081, 7, Tcp::Syn, b""), secs(1));
    assert_eq!(r.counters().dropped(Drop::PolicyDrop), 1);

    // an error about a forwarded packet quotes it as it arrived, before DNAT
    let mut expiring = wan_tcp(41002, 8080, 7, Tcp::Syn, b"");
    expiring[14 + 8] = 1;
    fix_ipv4_checksum(&mut expiring);
    let err = one(&mut r, WAN, expiring.clone(), secs(1), Port::Iface(WAN));
    let m = check_ipv4(&err, ROUTER_WAN, REMOTE);
    let l4 = m.payload_offset.unwrap();
    // the whole packet: icmp_send quotes up to 576 bytes, not RFC 792's header + 8
    assert_eq!(&err[l4..], &expiring[14..]);
}

fn fix_ipv4_checksum(f: &mut [u8]) {
    let mut p = nft_wire::Ipv4Packet::new_unchecked(&mut f[14..]);
    p.fill_checksum();
}

#[test]
fn tcp_flow_add_admission_follows_the_kernel() {
    let mut r = router();
    let c = |seq, k, p: &[u8]| lan_tcp(50000, 443, seq, k, p);
    open_tcp(&mut r, 50000, 443, 7000, secs(1));
    let data = c(101, Tcp::Ack(7001), b"GET /");
    lan_to_wan(&mut r, data, secs(1));
    let fin = c(106, Tcp::Fin(7001), b"");
    lan_to_wan(&mut r, fin, secs(2));
    let rep = r.report(secs(2));
    // SYN and SYN-ACK: not established (checked before confirmation, as the kernel does);
    // the handshake's ACK: admitted, so the data takes the fast path and asks nothing; the
    // FIN is punted to the slow path, which refuses it and tears the flow down
    assert_eq!(rep.flow_add_requests, 4, "{:?}", rep.flows_refused);
    assert_eq!(rep.flows_admitted, 1, "{:?}", rep.flows_refused);
    assert_eq!(rep.flows_refused.get("tcp_not_established"), Some(&2));
    assert_eq!(rep.flows_refused.get("tcp_fin_rst"), Some(&1));
    assert_eq!((rep.flows_offloaded, rep.fast_path_packets), (1, 1));
    assert_eq!(rep.flows.get("teardown"), Some(&1));
}

#[test]
fn udp_is_admitted_once_assured() {
    let mut r = router();
    let q = || lan_udp(REMOTE, 5000, 4433, 64, b"x");
    let out = lan_to_wan(&mut r, q(), secs(1));
    let sport = check(&out).ports.unwrap().0;
    lan_to_wan(&mut r, q(), secs(1));
    let rep = r.report(secs(1));
    // the kernel would offload from the second packet; conntrack has not assured it yet,
    // and each packet until then may still change the entry
    assert_eq!((rep.flow_add_requests, rep.flows_admitted), (2, 0));
    assert_eq!(rep.flows_refused.get("not_confirmed"), Some(&1));
    assert_eq!(rep.flows_refused.get("udp_not_assured"), Some(&1));
    let a = || wan_udp(REMOTE, 4433, sport, 64, b"y");
    wan_to_lan(&mut r, a(), secs(2));
    wan_to_lan(&mut r, a(), secs(4));
    assert_eq!(r.report(secs(4)).flows_admitted, 1);
    lan_to_wan(&mut r, q(), secs(4));
    wan_to_lan(&mut r, a(), secs(4));
    assert_eq!(r.report(secs(4)).fast_path_packets, 2);
}

#[test]
fn every_flow_add_is_admitted_or_refused_with_a_reason() {
    // a postrouting chain drops what the forward chain asked to offload
    let rules = RULES.replace(
        "\tchain dstnat {",
        "\tchain post {\n\t\ttype filter hook postrouting priority 100; policy accept;\n\t\tmeta length > 200 drop\n\t}\n\tchain dstnat {",
    );
    let mut r = router_with(TOPOLOGY, &rules, nft_engine::Config::default());
    let q = |n| lan_udp(REMOTE, 5000, 4433, 64, &vec![b'x'; n]);
    let out = lan_to_wan(&mut r, q(1), secs(1));
    let sport = check(&out).ports.unwrap().0;
    wan_to_lan(&mut r, wan_udp(REMOTE, 4433, sport, 64, b"y"), secs(2));
    // admitted by the forward chain's rule, dropped after it
    none(&mut r, 0, q(300), secs(3));
    let rep = r.report(secs(3));
    assert_eq!(rep.drops.get("rule_drop"), Some(&1), "{:?}", rep.drops);
    assert_eq!(
        rep.flows_refused.get("not_forwarded"),
        Some(&1),
        "{:?}",
        rep.flows_refused
    );
    assert_eq!(
        rep.flow_add_requests,
        rep.flows_admitted + rep.flows_refused.values().sum::<u64>(),
        "{:?}",
        rep.flows_refused
    );
}

#[test]
fn related_icmp_error_is_translated_back_to_the_client() {
    let mut r = router();
    let out = lan_to_wan(&mut r, lan_udp(REMOTE, 5000, 33434, 64, b"probe"), secs(1));
    let sport = check(&out).ports.unwrap().0;
    assert_ne!(sport, 5000);
    // the remote host answers port unreachable, quoting the translated datagram
    let quoted = &out[14..];
    let err = icmp4_unreach_frame(GW_MAC, WAN_MAC, REMOTE, ROUTER_WAN, 3, quoted);
    let back = wan_to_lan(&mut r, err, secs(1));
    // the client sees its own datagram quoted: source address and port translated back
    let original = lan_udp(REMOTE, 5000, 33434, 63, b"probe");
    let mut want = icmp4_unreach_frame(LAN_MAC, CLIENT_MAC, REMOTE, CLIENT, 3, &original[14..]);
    want[14 + 8] = 63;
    fix_ipv4_checksum(&mut want);
    assert_eq!(back, want);
    let m = check(&back);
    assert_eq!(m.icmp.unwrap().inner.unwrap().ports, Some((5000, 33434)));
}

/// Ethernet + IPv4 + ICMP destination unreachable with `code`, quoting `quoted` whole.
fn icmp4_unreach_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    code: u8,
    quoted: &[u8],
) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::from_values(code, 0).unwrap(),
        ));
    let mut out = vec![];
    b.write(&mut out, quoted).unwrap();
    out
}

#[test]
fn reject_with_tcp_reset_sends_the_kernels_reset() {
    let mut r = router();
    // to the router itself, from the WAN: the input chain rejects port 22
    let syn = wan_tcp(41000, 22, 5000, Tcp::Syn, b"");
    let rst = one(&mut r, WAN, syn, secs(1), Port::Iface(WAN));
    let m = check(&rst);
    assert_eq!(&rst[0..12], &[GW_MAC, WAN_MAC].concat()[..]);
    let t = m.tcp.unwrap();
    assert_eq!(t.flags, nft_wire::TcpFlags::RST | nft_wire::TcpFlags::ACK);
    assert_eq!((t.seq_number, t.ack_number, t.window_len), (0, 5001, 0));
    // byte for byte what nf_send_reset makes: DF, TTL 64, id 0, no options
    let mut want = vec![];
    let mut ip =
        etherparse::Ipv4Header::new(20, 64, etherparse::IpNumber::TCP, ROUTER_WAN, REMOTE).unwrap();
    ip.dont_fragment = true;
    ip.identification = 0;
    let mut tcp = etherparse::TcpHeader::new(22, 41000, 0, 0);
    tcp.rst = true;
    tcp.ack = true;
    tcp.acknowledgment_number = 5001;
    tcp.checksum = tcp.calc_checksum_ipv4(&ip, &[]).unwrap();
    etherparse::Ethernet2Header {
        source: WAN_MAC,
        destination: GW_MAC,
        ether_type: etherparse::EtherType::IPV4,
    }
    .write(&mut want)
    .unwrap();
    ip.header_checksum = ip.calc_header_checksum();
    ip.write(&mut want).unwrap();
    tcp.write(&mut want).unwrap();
    assert_eq!(rst, want);

    // a segment with ACK gets a reset whose sequence number is that ACK
    let ack = wan_tcp(41000, 22, 5000, Tcp::Ack(777), b"data");
    let rst = one(&mut r, WAN, ack, secs(1), Port::Iface(WAN));
    let t = check(&rst).tcp.unwrap();
    assert_eq!(
        (t.flags, t.seq_number, t.ack_number),
        (nft_wire::TcpFlags::RST, 777, 0)
    );
    // a reset is never answered
    none(
        &mut r,
        WAN,
        wan_tcp(41000, 22, 5000, Tcp::Rst, b""),
        secs(1),
    );
    let rep = r.report(secs(1));
    assert_eq!(rep.tcp_resets_sent, 2);
    assert_eq!(rep.drops.get("rule_drop"), Some(&3));
}

#[test]
fn reject_forwarded_tcp_and_udp() {
    let mut r = router();
    let syn = lan_tcp(41000, 23, 1, Tcp::Syn, b"");
    let rst = one(&mut r, LAN, syn, secs(1), Port::Iface(LAN));
    let m = check_ipv4(&rst, REMOTE, CLIENT);
    assert_eq!(m.ports, Some((23, 41000)));
    // icmpx port-unreachable for IPv4 is ICMP 3/3, from the LAN address, quoting the packet
    let probe = lan_udp(REMOTE, 5000, 7, 64, b"echo me please");
    let err = one(&mut r, LAN, probe.clone(), secs(1), Port::Iface(LAN));
    let mut quoted = probe[14..].to_vec();
    quoted[8] = 63; // the kernel quotes the packet after ip_forward's decrement
    let q = &mut quoted[..20];
    q[10] = 0;
    q[11] = 0;
    let c = nft_wire::checksum::checksum(q);
    q[10..12].copy_from_slice(&c.to_be_bytes());
    let mut want = icmp4_unreach_frame(LAN_MAC, CLIENT_MAC, ROUTER_LAN, CLIENT, 3, &quoted);
    // icmp_send: TOS precedence "internetwork control", id 0, no DF
    want[15] = 0xc0;
    want[14 + 6] = 0;
    want[14 + 4] = 0;
    want[14 + 5] = 0;
    fix_ipv4_checksum(&mut want);
    assert_eq!(err, want);
    assert_eq!(r.report(secs(1)).icmp_errors_sent, 1);
    // the refused connections are gone
    assert_eq!(r.conntrack().len(), 0);
}

#[test]
fn reject_to_the_router_with_icmp_port_unreachable() {
    let mut r = router();
    let probe = lan_udp(ROUTER_LAN, 5000, 9999, 64, b"hello");
    let err = one(&mut r, LAN, probe.clone(), secs(1), Port::Iface(LAN));
    let m = check_ipv4(&err, ROUTER_LAN, CLIENT);
    let icmp = m.icmp.unwrap();
    assert_eq!((icmp.msg_type, icmp.code), (3, 3));
    let data = &err[m.payload_offset.unwrap()..m.l3_end];
    assert_eq!(data, &probe[14..]);
}

#[test]
fn ttl_expiry_sends_time_exceeded() {
    let mut r = router();
    let probe = lan_udp(REMOTE, 5000, 33434, 1, b"traceroute");
    let err = one(&mut r, LAN, probe.clone(), secs(1), Port::Iface(LAN));
    let b = etherparse::PacketBuilder::ethernet2(LAN_MAC, CLIENT_MAC)
        .ipv4(ROUTER_LAN, CLIENT, 64)
        .icmpv4(etherparse::Icmpv4Type::TimeExceeded(
            etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
        ));
    let mut want = vec![];
    b.write(&mut want, &probe[14..]).unwrap();
    want[15] = 0xc0;
    want[14 + 6] = 0;
    fix_ipv4_checksum(&mut want);
    assert_eq!(err, want);
    assert_eq!(r.counters().dropped(Drop::TtlExceeded), 1);
    assert_eq!(
        r.conntrack().len(),
        0,
        "the dropped packet's connection is discarded"
    );

    // IPv6: hop limit 1 gets ICMPv6 time exceeded (type 3) from the LAN address
    let probe6 = udp6(
        CLIENT_MAC, LAN_MAC, CLIENT6, REMOTE6, 5000, 33434, 1, b"trace6",
    );
    let err6 = one(&mut r, LAN, probe6.clone(), secs(1), Port::Iface(LAN));
    let m = check(&err6);
    assert_eq!(m.src_addr, Some(std::net::IpAddr::from(ROUTER_LAN6)));
    assert_eq!((m.icmp.unwrap().msg_type, m.icmp.unwrap().code), (3, 0));
    assert_eq!(&err6[m.payload_offset.unwrap()..], &probe6[14..]);
}

#[test]
fn mtu_frag_needed_and_packet_too_big() {
    let mut r = router();
    let big = vec![0x55u8; 1400];
    // etherparse sets DF on IPv4
    let err = one(
        &mut r,
        LAN,
        lan_udp(REMOTE, 5000, 9, 64, &big),
        secs(1),
        Port::Iface(LAN),
    );
    let m = check(&err);
    let icmp = m.icmp.unwrap();
    assert_eq!((icmp.msg_type, icmp.code), (3, 4));
    let l4 = m.l4_offset.unwrap();
    assert_eq!(&err[l4 + 6..l4 + 8], &1400u16.to_be_bytes());
    // icmp_send quotes as much as fits in 576 bytes
    assert_eq!(m.ip_total_len, 576);

    let mut nodf = lan_udp(REMOTE, 5000, 9, 64, &big);
    nodf[14 + 6] &= !0x40;
    fix_ipv4_checksum(&mut nodf);
    // without DF, ip_fragment cuts it at the WAN's MTU of 1400: 1376 + 32 payload bytes,
    // masqueraded, the same ID on both, offsets in 8-byte units
    let out = send(&mut r, LAN, nodf.clone(), secs(1));
    assert_eq!(out.len(), 2, "{out:?}");
    let (a, b) = (&out[0].data, &out[1].data);
    assert_eq!((a.len(), b.len()), (14 + 20 + 1376, 14 + 20 + 32));
    assert!(out.iter().all(|f| f.egress == Port::Iface(WAN)));
    assert_eq!(&a[14 + 6..14 + 8], &[0x20, 0], "more fragments, offset 0");
    assert_eq!(&b[14 + 6..14 + 8], &(1376u16 / 8).to_be_bytes());
    assert_eq!(&a[14 + 2..14 + 4], &1396u16.to_be_bytes());
    assert_eq!(a[14 + 4..14 + 6], b[14 + 4..14 + 6]);
    assert_eq!(&a[14 + 12..14 + 16], &ROUTER_WAN);
    for f in [a, b] {
        assert_eq!(
            nft_wire::checksum::checksum(&f[14..34]),
            0,
            "header checksum"
        );
    }
    // the payload is the original's, the UDP header NATed
    let mut joined = a[34..].to_vec();
    joined.extend_from_slice(&b[34..]);
    assert_eq!(&joined[8..], &nodf[14 + 28..]);
    assert_eq!(r.counters().dropped(Drop::NeedsFragmentation), 0);
    assert_eq!(r.counters().fragments_sent, 2);

    let err6 = one(
        &mut r,
        LAN,
        udp6(CLIENT_MAC, LAN_MAC, CLIENT6, REMOTE6, 5000, 9, 64, &big),
        secs(1),
        Port::Iface(LAN),
    );
    let m = check(&err6);
    assert_eq!(m.icmp.unwrap().msg_type, 2);
    let l4 = m.l4_offset.unwrap();
    assert_eq!(&err6[l4 + 4..l4 + 8], &1400u32.to_be_bytes());
    assert_eq!(m.ip_total_len, 1280, "quotes as much as fits in 1280 bytes");
    assert_eq!(r.counters().dropped(Drop::MtuExceeded), 2);
}

#[test]
fn conntrack_limit_refuses_new_and_keeps_established() {
    let cfg = nft_engine::Config {
        conntrack: nft_conntrack::Config {
            max_entries: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut r = router_with(TOPOLOGY, RULES, cfg);
    let mut ports = vec![];
    for cport in [50001u16, 50002] {
        ports.push(open_tcp(&mut r, cport, 443, 9000, secs(1)));
    }
    // both assured: nothing to drop early, the third connection is refused
    none(
        &mut r,
        LAN,
        lan_tcp(50003, 443, 100, Tcp::Syn, b""),
        secs(2),
    );
    assert_eq!(r.counters().dropped(Drop::CtTableFull), 1);
    // the established ones keep flowing, both ways
    lan_to_wan(
        &mut r,
        lan_tcp(50001, 443, 101, Tcp::Ack(9001), b"more"),
        secs(3),
    );
    wan_to_lan(
        &mut r,
        wan_tcp(443, ports[1], 9001, Tcp::Ack(101), b"data"),
        secs(3),
    );
    assert_eq!(
        r.report(secs(3)).connections.get("tcp established"),
        Some(&2)
    );
}

/// The kernel's GC early drop, as `simulate --conntrack-max 100` runs it: a table full of
/// assured connections refuses a new one; the next GC sweep then takes closing connections
/// out while the table holds 95% of its limit or more, and the new connection's retry goes
/// through. Established connections stay.
#[test]
fn conntrack_gc_evicts_closing_connections_after_a_refusal() {
    let rules = r#"
table inet fw {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "lan" oifname "wan" accept
	}
	chain srcnat {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" masquerade
	}
}
"#;
    let cfg = nft_engine::Config {
        conntrack: nft_conntrack::Config {
            max_entries: 100,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut r = router_with(TOPOLOGY, rules, cfg);
    for k in 0..100u16 {
        open_tcp(&mut r, 50000 + k, 443, 9000, secs(1));
        if k < 10 {
            // the client closes: FIN_WAIT, still assured
            lan_to_wan(
                &mut r,
                lan_tcp(50000 + k, 443, 101, Tcp::Fin(9001), b""),
                secs(1),
            );
        }
    }
    let syn = lan_tcp(51000, 443, 100, Tcp::Syn, b"");
    none(&mut r, LAN, syn.clone(), secs(2));
    assert_eq!(r.counters().dropped(Drop::CtTableFull), 1);
    let rep = r.report(secs(2));
    assert_eq!(rep.connections.get("tcp established"), Some(&90));
    assert_eq!(rep.connections_total, 100);
    assert_eq!(rep.conntrack_evicted, 0);
    // the retry: GC ran first and evicted six closing connections (100 -> 94)
    lan_to_wan(&mut r, syn, secs(3));
    let rep = r.report(secs(3));
    assert_eq!(rep.connections.get("tcp established"), Some(&90));
    assert_eq!(rep.connections_total, 95);
    assert_eq!(r.conntrack().stats().evicted, 6);
    assert_eq!(rep.conntrack_evicted, 6);
    assert_eq!(rep.conntrack_early_drop, 0);
    assert_eq!(r.counters().dropped(Drop::CtTableFull), 1);
}

#[test]
fn routes_blackhole_unreachable_no_route_and_no_neighbour() {
    let mut r = router();
    none(
        &mut r,
        LAN,
        lan_udp([10, 66, 1, 1], 5000, 9, 64, b"x"),
        secs(1),
    );
    assert_eq!(r.counters().dropped(Drop::Blackhole), 1);
    let err = one(
        &mut r,
        LAN,
        lan_udp([10, 67, 1, 1], 5000, 9, 64, b"x"),
        secs(1),
        Port::Iface(LAN),
    );
    assert_eq!(check(&err).icmp.map(|i| (i.msg_type, i.code)), Some((3, 1)));
    assert_eq!(r.counters().dropped(Drop::Unreachable), 1);
    // the next hop 192.168.1.99 has no static neighbour
    none(
        &mut r,
        WAN,
        udp4(GW_MAC, WAN_MAC, REMOTE, [10, 99, 0, 1], 5000, 9, 64, b"x"),
        secs(1),
    );
    // (the forward policy drops WAN → LAN first; let the LAN reach it instead)
    assert_eq!(r.counters().dropped(Drop::PolicyDrop), 1);
    none(
        &mut r,
        LAN,
        lan_udp([192, 168, 1, 77], 5000, 9, 64, b"x"),
        secs(1),
    );
    assert_eq!(
        r.counters().dropped(Drop::NoNeighbour),
        0,
        "LAN to LAN is not allowed by the forward chain"
    );
    assert_eq!(r.counters().dropped(Drop::PolicyDrop), 2);
}

#[test]
fn other_host_and_non_ip_frames() {
    let mut r = router();
    none(
        &mut r,
        LAN,
        udp4(
            CLIENT_MAC,
            [2, 9, 9, 9, 9, 9],
            CLIENT,
            REMOTE,
            1,
            2,
            64,
            b"",
        ),
        secs(1),
    );
    assert_eq!(r.counters().dropped(Drop::OtherHost), 1);
    // ARP for the router's LAN address is answered
    let mut arp = vec![];
    etherparse::Ethernet2Header {
        source: CLIENT_MAC,
        destination: [0xff; 6],
        ether_type: etherparse::EtherType::ARP,
    }
    .write(&mut arp)
    .unwrap();
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&CLIENT);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&ROUTER_LAN);
    let reply = one(&mut r, LAN, arp.clone(), secs(1), Port::Iface(LAN));
    assert_eq!(&reply[0..6], &CLIENT_MAC);
    assert_eq!(&reply[20..22], &[0, 2]);
    assert_eq!(&reply[22..28], &LAN_MAC);
    assert_eq!(&reply[28..32], &ROUTER_LAN);
    // for someone else: not ours
    arp[38..42].copy_from_slice(&[192, 168, 1, 55]);
    none(&mut r, LAN, arp, secs(1));
    assert_eq!(r.counters().dropped(Drop::NotIp), 1);
    assert_eq!(r.report(secs(1)).arp_replies, 1);
}

/// `process_slots`, the burst API a receive loop uses: an offloaded flow's packet is rewritten
/// in its own buffer and sent from its slot; a slow-path packet beside it in the burst comes
/// out as a frame of its own, in order.
#[test]
fn fast_path_hit_is_sent_from_its_slot() {
    use nft_engine::Sent;
    use nft_flowtable::FrameSlot;
    let mut r = router();
    let c = |seq, k, p: &[u8]| lan_tcp(50000, 443, seq, k, p);
    let out = lan_to_wan(&mut r, c(100, Tcp::Syn, b""), secs(1));
    let sport = check(&out).ports.unwrap().0;
    let synack = wan_tcp(443, sport, 7000, Tcp::SynAck(101), b"");
    wan_to_lan(&mut r, synack, secs(1));
    let ack = c(101, Tcp::Ack(7001), b"");
    let ack = lan_to_wan(&mut r, ack, secs(1));
    assert_eq!(r.report(secs(1)).flows_offloaded, 1);

    let lan = u16::try_from(LAN).unwrap();
    let mut slots = vec![
        FrameSlot::new(lan, &c(101, Tcp::Ack(7001), b"")),
        FrameSlot::new(lan, &lan_udp([8, 8, 8, 8], 5000, 53, 64, b"q")),
    ];
    let buf = slots[0].frame().as_ptr() as usize;
    let mut sent = vec![];
    r.process_slots(&mut slots, secs(1), &mut sent);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0], Sent::Slots { start: 0, end: 1 });
    assert_eq!(slots[0].egress(), Some(u16::try_from(WAN).unwrap()));
    assert_eq!(slots[1].egress(), None);
    // the same bytes the slow path sent for the same segment, in the same buffer (the
    // frame's start moves only to pop or push a link header)
    assert_eq!(slots[0].frame(), &ack[..]);
    assert!(
        slots[0].frame().as_ptr() as usize >= buf - nft_flowtable::HEADROOM
            && (slots[0].frame().as_ptr() as usize) <= buf + 64
    );
    assert!(
        matches!(&sent[1], Sent::Frame(f) if f.egress == Port::Iface(WAN)),
        "{sent:?}"
    );
    let rep = r.report(secs(1));
    assert_eq!((rep.fast_path_packets, rep.packets_out), (1, 5));

    // a burst of hits only is one run of slots, each sent where its slot says, and the
    // interfaces count each frame as it arrived (rx) and as it left (tx)
    let iface = |r: &nft_engine::Router, i: usize| {
        let x = &r.report(secs(1)).interfaces[i];
        (x.rx_packets, x.rx_bytes, x.tx_packets, x.tx_bytes)
    };
    let (lan_before, wan_before) = (iface(&r, LAN), iface(&r, WAN));
    let seg = |p: &[u8]| c(101, Tcp::Ack(7001), p);
    let frames = [seg(b""), seg(b"abc"), seg(b"defghij")];
    let mut slots: Vec<FrameSlot> = frames.iter().map(|f| FrameSlot::new(lan, f)).collect();
    let mut sent = vec![];
    r.process_slots(&mut slots, secs(1), &mut sent);
    assert_eq!(sent, vec![Sent::Slots { start: 0, end: 3 }]);
    let rx_bytes: usize = frames.iter().map(Vec::len).sum();
    let tx_bytes: usize = slots.iter().map(|s| s.len()).sum();
    for (s, f) in slots.iter().zip(&frames) {
        assert_eq!(s.egress(), Some(u16::try_from(WAN).unwrap()));
        assert_eq!(s.arrived_len(), f.len());
    }
    let (lan_after, wan_after) = (iface(&r, LAN), iface(&r, WAN));
    assert_eq!(lan_after.0 - lan_before.0, 3);
    assert_eq!(lan_after.1 - lan_before.1, rx_bytes as u64);
    assert_eq!(wan_after.2 - wan_before.2, 3);
    assert_eq!(wan_after.3 - wan_before.3, tx_bytes as u64);
    assert_eq!(r.report(secs(1)).fast_path_packets, 4);

    // a burst of hits both ways, the ports changing frame by frame: each interface counts
    // exactly its own frames in and out
    let wan = u16::try_from(WAN).unwrap();
    let reply = |p: &[u8]| wan_tcp(443, sport, 7001, Tcp::Ack(101), p);
    let frames = [
        (lan, seg(b"a")),
        (wan, reply(b"bc")),
        (wan, reply(b"def")),
        (lan, seg(b"ghij")),
    ];
    let mut slots: Vec<FrameSlot> = frames.iter().map(|(p, f)| FrameSlot::new(*p, f)).collect();
    let mut sent = vec![];
    r.process_slots(&mut slots, secs(1), &mut sent);
    assert_eq!(sent, vec![Sent::Slots { start: 0, end: 4 }]);
    let (mut want_lan, mut want_wan) = (lan_after, wan_after);
    for (s, (p, f)) in slots.iter().zip(&frames) {
        let (rx, tx) = if *p == lan {
            assert_eq!(s.egress(), Some(wan));
            (&mut want_lan, &mut want_wan)
        } else {
            assert_eq!(s.egress(), Some(lan));
            (&mut want_wan, &mut want_lan)
        };
        rx.0 += 1;
        rx.1 += f.len() as u64;
        tx.2 += 1;
        tx.3 += s.len() as u64;
    }
    assert_eq!((iface(&r, LAN), iface(&r, WAN)), (want_lan, want_wan));
    assert_eq!(r.report(secs(1)).fast_path_packets, 8);
}

/// The router's own answers leave as the kernel's `ip_local_out` sends them: through the
/// output chains (which see them related to the answered connection, in its reply direction,
/// with no input interface) and the postrouting chains, which may drop or mangle them; the
/// filter chains before NAT's priority see the reset as built from the DNATed packet, and
/// it leaves translated back.
#[test]
fn own_answers_pass_output_and_postrouting_chains() {
    let rules = r#"
table inet fw {
	chain dstnat {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan" tcp dport 8080 dnat ip to 192.168.1.20:80
		iifname "wan" tcp dport 8081 dnat ip to 192.168.1.20:81
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		tcp dport { 23, 80, 81 } reject with tcp reset
		udp dport 7 reject
	}
	chain out {
		type filter hook output priority filter; policy accept;
		meta iif 0 ct state related ct direction reply ip dscp set cs1 counter
		ip daddr 192.168.1.20 udp dport 7 counter
		icmp type time-exceeded counter drop
	}
	chain post_early {
		type filter hook postrouting priority 50; policy accept;
		oifname "wan" tcp sport 81 counter drop
	}
	chain post_late {
		type filter hook postrouting priority 150; policy accept;
		oifname "wan" tcp sport 8080 ip dscp set cs2
	}
}
"#;
    let mut r = router_with(TOPOLOGY, rules, nft_engine::Config::default());
    // a reset for a LAN client: related, reply direction, so output sets cs1
    let syn = lan_tcp(41000, 23, 1, Tcp::Syn, b"");
    let rst = one(&mut r, LAN, syn, secs(1), Port::Iface(LAN));
    check_ipv4(&rst, REMOTE, CLIENT);
    assert_eq!(rst[15] >> 2, 8, "dscp cs1 from the output chain");
    // time exceeded is dropped in output, counted as a rule drop, and not counted as sent
    let probe = lan_udp(REMOTE, 5000, 33434, 1, b"trace");
    none(&mut r, LAN, probe, secs(2));
    assert_eq!(r.report(secs(2)).icmp_errors_sent, 0);
    assert_eq!(
        r.counters().dropped(Drop::RuleDrop),
        2,
        "the syn and the time exceeded"
    );
    // through DNAT: the chain at 150 sees the reset translated back (sport 8080); the one at
    // 50 sees it as built, from the DNAT target's port (81), and drops that one
    let syn = wan_tcp(42000, 8080, 1, Tcp::Syn, b"");
    let rst = one(&mut r, WAN, syn, secs(3), Port::Iface(WAN));
    let m = check_ipv4(&rst, ROUTER_WAN, REMOTE);
    assert_eq!(m.ports, Some((8080, 42000)));
    assert_eq!(&rst[0..6], &GW_MAC, "routed to the gateway");
    assert_eq!(rst[15] >> 2, 16, "cs1 from output, then cs2 after NAT");
    let syn = wan_tcp(42001, 8081, 1, Tcp::Syn, b"");
    none(&mut r, WAN, syn, secs(4));
    assert_eq!(r.report(secs(4)).tcp_resets_sent, 2);
}

/// IPv4 fragments with fields cut from `l3` at `pieces` (payload bytes), each in a frame.
fn fragments4(l3: &[u8], pieces: &[usize]) -> Vec<Vec<u8>> {
    nft_engine::defrag::fragment(l3, pieces, 65535, 0)
        .unwrap()
        .into_iter()
        .map(|f| {
            let mut fr = CLIENT_MAC.to_vec();
            fr.splice(0..0, LAN_MAC);
            fr.extend_from_slice(&[0x08, 0x00]);
            fr.extend_from_slice(&f);
            fr
        })
        .collect()
}

/// Fragments are held until their datagram is whole (nf_defrag), conntrack and NAT see it
/// whole, and it leaves in the pieces it came in, masqueraded; overlaps and duplicates are
/// counted under their reasons, and an unfinished datagram times out.
#[test]
fn fragments_are_reassembled_natted_and_sent_in_their_pieces() {
    let mut r = router();
    let mut whole = lan_udp(REMOTE, 5000, 53, 64, &[0xab; 1200]);
    whole[14 + 6] = 0; // no DF
    whole[14 + 4..14 + 6].copy_from_slice(&0x4242u16.to_be_bytes());
    fix_ipv4_checksum(&mut whole);
    let frags = fragments4(&whole[14..], &[504, 504, 200]);
    assert!(send(&mut r, LAN, frags[2].clone(), secs(1)).is_empty());
    assert!(send(&mut r, LAN, frags[0].clone(), secs(1)).is_empty());
    assert_eq!(
        r.conntrack().len(),
        0,
        "nothing tracked before the datagram is whole"
    );
    let out = send(&mut r, LAN, frags[1].clone(), secs(1));
    assert_eq!(out.len(), 3, "{out:?}");
    let sizes: Vec<usize> = out.iter().map(|f| f.data.len()).collect();
    assert_eq!(sizes, vec![14 + 20 + 504, 14 + 20 + 504, 14 + 20 + 200]);
    assert!(out.iter().all(|f| f.egress == Port::Iface(WAN)));
    // one connection, masqueraded; the pieces put together are the NATed datagram
    assert_eq!(r.conntrack().len(), 1);
    let mut l4 = vec![];
    for (n, f) in out.iter().enumerate() {
        let d = &f.data;
        assert_eq!(&d[14 + 4..14 + 6], &[0x42, 0x42]);
        assert_eq!(&d[14 + 12..14 + 16], &ROUTER_WAN);
        assert_eq!(d[14 + 8], 63);
        let mf = if n < 2 { 0x2000 } else { 0 };
        let fo = mf | (n * 504 / 8) as u16;
        assert_eq!(&d[14 + 6..14 + 8], &fo.to_be_bytes());
        l4.extend_from_slice(&d[34..]);
    }
    let sport = u16::from_be_bytes([l4[0], l4[1]]);
    assert!((40000..=40999).contains(&sport), "{sport}");
    assert_eq!(&l4[8..], &[0xab; 1200][..]);
    let mut pseudo = ROUTER_WAN.to_vec();
    pseudo.extend_from_slice(&REMOTE);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&l4);
    assert_eq!(
        nft_wire::checksum::checksum(&pseudo),
        0,
        "the UDP checksum covers the NAT"
    );
    assert_eq!(r.counters().reassembled, 1);

    // a duplicate is dropped alone; an overlap takes the datagram's held fragments
    let other = fragments4(
        &{
            let mut w = whole[14..].to_vec();
            w[4] = 0x43;
            w[10..12].copy_from_slice(&[0, 0]);
            let c = nft_wire::checksum::checksum(&w[..20]);
            w[10..12].copy_from_slice(&c.to_be_bytes());
            w
        },
        &[504, 704],
    );
    assert!(send(&mut r, LAN, other[0].clone(), secs(2)).is_empty());
    assert!(send(&mut r, LAN, other[0].clone(), secs(2)).is_empty());
    assert_eq!(r.counters().dropped(Drop::FragDuplicate), 1);
    let mut over = other[1].clone();
    over[14 + 6..14 + 8].copy_from_slice(&(496u16 / 8).to_be_bytes());
    fix_ipv4_checksum(&mut over);
    assert!(send(&mut r, LAN, over, secs(2)).is_empty());
    assert_eq!(r.counters().dropped(Drop::FragOverlap), 2);
    // a datagram that never completes goes after 30 s
    assert!(send(&mut r, LAN, other[1].clone(), secs(3)).is_empty());
    assert!(send(&mut r, LAN, frags[0].clone(), secs(40)).is_empty());
    assert_eq!(r.counters().dropped(Drop::FragTimeout), 1);
}

/// Conntrack's NAT rewrites at its own priority (-100 at prerouting, 100 at postrouting), and
/// every NAT chain runs there whatever its priority: filter chains before see the packet as it
/// came, chains after see it translated.
#[test]
fn nat_happens_at_its_hook_priority() {
    let rules = r#"
table inet t {
	chain dst_nat {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan" tcp dport 8080 dnat ip to 192.168.1.20:80
	}
	chain before {
		type filter hook prerouting priority -150; policy accept;
		ip daddr 198.18.0.2 tcp dport 8080 meta mark set 1
	}
	chain after {
		type filter hook prerouting priority -50; policy accept;
		ip daddr 192.168.1.20 tcp dport 80 meta mark set meta mark | 2
	}
	chain late_nat {
		type nat hook prerouting priority 50; policy accept;
		meta mark 3 meta mark set 7
	}
	chain fw {
		type filter hook forward priority filter; policy drop;
		meta mark 3 accept
	}
	chain post_late {
		type filter hook postrouting priority 150; policy accept;
		ip saddr 192.168.1.1 meta mark set meta mark | 8
	}
	chain masq {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "lan" masquerade
	}
}
"#;
    let mut r = router_with(TOPOLOGY, rules, nft_engine::Config::default());
    let syn = wan_tcp(42000, 8080, 1, Tcp::Syn, b"");
    let out = send(&mut r, WAN, syn, secs(1));
    assert_eq!(out.len(), 1, "{:?}", r.counters().drop_map());
    check_ipv4(&out[0].data, ROUTER_LAN, SERVER);
    assert_eq!(
        out[0].mark, 11,
        "the late NAT chain ran at -100 (mark 1 then), post_late after the masquerade"
    );
}

/// IPv6 fragments: reassembled before conntrack, NAT66 (masquerade) on the whole datagram,
/// sent on in the pieces they came in, each with a fragment header.
#[test]
fn ipv6_fragments_are_reassembled_and_sent_in_their_pieces() {
    let mut r = router();
    let whole = udp6(
        CLIENT_MAC,
        LAN_MAC,
        CLIENT6,
        REMOTE6,
        5000,
        53,
        64,
        &[0x5a; 1300],
    );
    let pieces =
        nft_engine::defrag::fragment(&whole[14..], &[656, 652], 65535, 0x0102_0304).unwrap();
    let frames: Vec<Vec<u8>> = pieces
        .iter()
        .map(|p| [&whole[..14], &p[..]].concat())
        .collect();
    assert!(send(&mut r, LAN, frames[1].clone(), secs(1)).is_empty());
    let out = send(&mut r, LAN, frames[0].clone(), secs(1));
    assert_eq!(out.len(), 2, "{:?}", r.counters().drop_map());
    let mut l4 = vec![];
    for (n, f) in out.iter().enumerate() {
        let d = &f.data;
        assert_eq!(f.egress, Port::Iface(WAN));
        assert_eq!(d[14 + 6], 44, "a fragment header");
        assert_eq!(d[14 + 7], 63, "hop limit");
        let fo = u16::from_be_bytes([d[14 + 42], d[14 + 43]]);
        assert_eq!((fo & !7, fo & 1), ((n * 656) as u16, u16::from(n == 0)));
        assert_eq!(&d[14 + 44..14 + 48], &[1, 2, 3, 4]);
        l4.extend_from_slice(&d[14 + 48..]);
    }
    assert_eq!(l4.len(), 8 + 1300);
    let src: [u8; 16] = out[0].data[14 + 8..14 + 24].try_into().unwrap();
    assert_eq!(
        std::net::Ipv6Addr::from(src),
        "2001:db8:ffff::2".parse::<std::net::Ipv6Addr>().unwrap(),
        "masqueraded"
    );
    let mut pseudo = src.to_vec();
    pseudo.extend_from_slice(&REMOTE6);
    pseudo.extend_from_slice(&(l4.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 17]);
    pseudo.extend_from_slice(&l4);
    assert_eq!(nft_wire::checksum::checksum(&pseudo), 0);
    assert_eq!(r.conntrack().len(), 1);
}

/// `tcp option maxseg size set rt mtu` (fw4's mtu_fix) clamps to the smaller of the route's
/// MTU and that of the route back to the source, as the kernel's get_tcpmss: a SYN coming in
/// over the WAN (MTU 1400) to the LAN (1500) leaves with MSS 1360, not 1460 (found by
/// scripts/difftest, pppoe-wan).
#[test]
fn rt_mtu_clamps_to_the_route_back_too() {
    let rules = r#"
table inet t {
	chain forward {
		type filter hook forward priority mangle; policy accept;
		tcp flags & (fin | syn | rst) == syn tcp option maxseg size set rt mtu
	}
}
"#;
    let mut r = router_with(TOPOLOGY, rules, Default::default());
    let syn = |src_mac, dst_mac, src, dst| {
        let b = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv4(src, dst, 64)
            .tcp(40000, 80, 1, 64240)
            .syn()
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap();
        let mut out = vec![];
        b.write(&mut out, b"").unwrap();
        out
    };
    let mss = |f: &[u8]| u16::from_be_bytes([f[14 + 20 + 22], f[14 + 20 + 23]]);
    let inbound = wan_to_lan(&mut r, syn(GW_MAC, WAN_MAC, REMOTE, CLIENT), secs(1));
    assert_eq!(mss(&inbound), 1400 - 40);
    let outbound = lan_to_wan(&mut r, syn(CLIENT_MAC, LAN_MAC, CLIENT, REMOTE), secs(2));
    assert_eq!(mss(&outbound), 1400 - 40);
    // between two 1500-byte routes nothing changes (an MSS is never raised either)
    let lan = one(
        &mut r,
        LAN,
        syn(CLIENT_MAC, LAN_MAC, CLIENT, [192, 168, 1, 20]),
        secs(3),
        Port::Iface(LAN),
    );
    assert_eq!(mss(&lan), 1460);
}

/// A chain none of whose rules can act on a packet's protocols is skipped, and the packet
/// gets exactly what running it would give: its policy, no counter, no hit; other protocols
/// still run it. With a trace nothing is skipped (the trace shows every run): the run shows
/// the policy, and the packet gets the same as without.
#[test]
fn chains_without_rules_for_the_protocol_only_apply_their_policy() {
    const SKIP_RULES: &str = r#"
table inet fw {
	chain tcp_only {
		type filter hook forward priority -10; policy drop;
		tcp dport 80 counter accept
		meta l4proto tcp counter accept
	}
	chain v6_only {
		type filter hook forward priority 0; policy accept;
		meta nfproto ipv6 counter drop
	}
	chain srcnat {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" masquerade
	}
}
"#;
    let udp = || udp4(CLIENT_MAC, LAN_MAC, CLIENT, REMOTE, 5000, 53, 64, b"q");
    let tcp = || {
        tcp4(
            CLIENT_MAC,
            LAN_MAC,
            CLIENT,
            REMOTE,
            5001,
            80,
            1,
            Tcp::Syn,
            b"",
        )
    };
    for trace in [false, true] {
        let cfg = nft_engine::Config {
            trace,
            ..nft_engine::Config::default()
        };
        let mut r = router_with(TOPOLOGY, SKIP_RULES, cfg);
        // UDP: the TCP chain's policy drops it, nothing counted, no connection left
        none(&mut r, LAN, udp(), secs(1));
        assert_eq!(r.counters().dropped(Drop::PolicyDrop), 1);
        assert_eq!(r.rule_state().counters, vec![(0, 0); 3]);
        assert_eq!(r.conntrack().len(), 0);
        if trace {
            let lines = r.take_trace();
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("tcp_only") && l.contains("policy drop")),
                "with a trace the chain runs and its policy shows: {lines:?}"
            );
        }
        // TCP: both chains run (the first rule counts and accepts), masqueraded
        let out = one(&mut r, LAN, tcp(), secs(1), Port::Iface(WAN));
        let m = check(&out);
        assert_eq!(
            m.src_addr,
            Some(std::net::Ipv4Addr::from(ROUTER_WAN).into())
        );
        assert_eq!(r.rule_state().counters[0].0, 1);
        assert_eq!(r.rule_state().counters[1].0, 0);
        assert_eq!(r.rule_state().counters[2].0, 0);
    }
}

/// What a run of frames gave: what left (egress, bytes), each rule counter (packets,
/// bytes), the drops by reason (in `Drop::ALL` order).
type Outcome = (Vec<(Port, Vec<u8>)>, Vec<(u64, u64)>, Vec<u64>);

/// Runs `frames` (ingress, frame) at one second each through a router with `rules`, with
/// trace on or off.
fn run_traced(rules: &str, trace: bool, frames: &[(usize, Vec<u8>)]) -> Outcome {
    let cfg = nft_engine::Config {
        trace,
        ..nft_engine::Config::default()
    };
    let mut r = router_with(TOPOLOGY, rules, cfg);
    let mut sent = vec![];
    for (k, (ingress, f)) in frames.iter().enumerate() {
        for t in send(&mut r, *ingress, f.clone(), secs(1 + k as u64)) {
            sent.push((t.egress, t.data));
        }
    }
    let drops = Drop::ALL.iter().map(|d| r.counters().dropped(*d)).collect();
    (sent, r.rule_state().counters.clone(), drops)
}

/// Skipping chains must not change what a packet gets: a trace runs every chain, so the same
/// packets with trace on and off give the same frames, counters and drops. Rules with side
/// effects in their matches (`numgen inc` advances its counter for every packet reaching
/// it, `numgen random` and `meta random` draw from the random sequence) and chains that
/// rewrite the protocol for later ones are what a skip could get wrong.
#[test]
fn trace_on_and_off_give_the_same_packets_and_counters() {
    const RULES_STATE: &str = r#"
table inet fw {
	chain inc {
		type filter hook forward priority -20; policy accept;
		numgen inc mod 3 0 tcp dport 9999 counter
	}
	chain rnd {
		type filter hook forward priority -10; policy accept;
		numgen random mod 2 0 tcp dport 9998 counter
		meta random & 1 == 0 tcp dport 9997 counter
	}
	chain both {
		type filter hook forward priority 0; policy accept;
		numgen random mod 2 0 counter
		numgen inc mod 3 0 counter
	}
}
"#;
    const RULES_REWRITE: &str = r#"
table inet fw {
	chain rewrite {
		type filter hook forward priority -10; policy accept;
		udp dport 7000 ip protocol set 253 counter
	}
	chain later {
		type filter hook forward priority 0; policy drop;
		meta l4proto 253 counter accept
		meta l4proto tcp counter accept
	}
}
"#;
    let udp = |dport| {
        (
            LAN,
            udp4(CLIENT_MAC, LAN_MAC, CLIENT, REMOTE, 5000, dport, 64, b"q"),
        )
    };
    let tcp = |sport, dport| {
        (
            LAN,
            tcp4(
                CLIENT_MAC,
                LAN_MAC,
                CLIENT,
                REMOTE,
                sport,
                dport,
                1,
                Tcp::Syn,
                b"",
            ),
        )
    };
    let frames = vec![
        udp(53),
        tcp(5001, 9999),
        udp(54),
        tcp(5002, 9998),
        tcp(5003, 9997),
        udp(55),
        tcp(5004, 9999),
        tcp(5005, 9998),
        tcp(5006, 9997),
        udp(7000),
        udp(7000),
        tcp(5007, 80),
    ];
    for rules in [RULES_STATE, RULES_REWRITE] {
        let off = run_traced(rules, false, &frames);
        let on = run_traced(rules, true, &frames);
        assert_eq!(off.1, on.1, "counters\n{rules}");
        assert_eq!(off.2, on.2, "drops\n{rules}");
        assert_eq!(off.0, on.0, "frames\n{rules}");
    }
    // the kernel's numbers: every packet reaching the rule advances numgen inc, UDP too, so
    // the k-th frame gets k mod 3: the TCP 9999 frames (2nd, 7th) get 1 and 0, one counts
    // (counting TCP only would give 0 and 0: two)
    let (_, counters, _) = run_traced(RULES_STATE, false, &frames);
    assert_eq!(counters[0].0, 1, "{counters:?}");
    // numgen inc mod 3 sees all 12 packets: 0 for the 1st, 4th, 7th and 10th
    assert_eq!(counters[4].0, 4, "{counters:?}");
    // the rewritten UDP packets run the later chain (which has no UDP rule) as protocol
    // 253 and are accepted; the other UDP packets get its policy
    let (sent, counters, drops) = run_traced(RULES_REWRITE, false, &frames);
    assert_eq!(counters[0].0, 2, "{counters:?}");
    assert_eq!(counters[1].0, 2, "{counters:?}");
    assert_eq!(counters[2].0, 7, "{counters:?}");
    let policy = Drop::ALL
        .iter()
        .position(|d| *d == Drop::PolicyDrop)
        .unwrap();
    assert_eq!(drops[policy], 3, "{drops:?}");
    assert_eq!(sent.len(), 9, "{drops:?}");
    assert_eq!(
        sent.iter().filter(|(_, f)| f[14 + 9] == 253).count(),
        2,
        "the rewritten packets leave as protocol 253"
    );
}

/// In an `inet` table a NAT statement written for one family (`dnat ip to`) does nothing to
/// the other family's packets, and the rule goes on to the next (the kernel's
/// `nft_nat_inet_eval`): a port forward with an IPv4 rule and then an IPv6 one forwards both.
#[test]
fn inet_nat_of_one_family_passes_the_other_by() {
    let rules = r#"
table inet fw {
	chain forward {
		type filter hook forward priority filter; policy accept;
	}
	chain dstnat {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan" udp dport 8080 dnat ip to 192.168.1.20:80
		iifname "wan" udp dport 8080 dnat ip6 to [fd00:0:0:1::10]:80
		iifname "wan" udp dport 8081 dnat ip6 to [fd00:0:0:1::10]:81
		iifname "wan" udp dport 8081 dnat ip to 192.168.1.20:81
	}
}
"#;
    let wan6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let mut r = router_with(TOPOLOGY, rules, nft_engine::Config::default());
    for (i, dport) in [8080u16, 8081].into_iter().enumerate() {
        let want = dport - 8000;
        let now = secs(1 + i as u64);
        let v4 = udp4(
            GW_MAC, WAN_MAC, REMOTE, ROUTER_WAN, 5000, dport, 64, b"four",
        );
        let m = check(&wan_to_lan(&mut r, v4, now));
        assert_eq!(m.dst_addr, Some(std::net::IpAddr::from(SERVER)), "{dport}");
        assert_eq!(m.ports, Some((5000, want)), "{dport}");
        let v6 = udp6(GW_MAC, WAN_MAC, REMOTE6, wan6, 5000, dport, 64, b"six");
        let m = check(&wan_to_lan(&mut r, v6, now));
        assert_eq!(m.dst_addr, Some(std::net::IpAddr::from(CLIENT6)), "{dport}");
        assert_eq!(m.ports, Some((5000, want)), "{dport}");
    }
}
