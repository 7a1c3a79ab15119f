use super::*;
use nft_wire::{
    parse_frame, Icmpv4Packet, Icmpv6Packet, IpVersion, Ipv4Packet, PacketMeta, TcpFlags,
    TcpPacket, UdpPacket,
};
use std::collections::HashMap;

#[test]
fn summary_prints() {
    let g = home(42, 200);
    let text = g.summary.to_string();
    println!("{text}");
    assert!(text.starts_with("200 flows"), "{text}");
}

fn home(seed: u64, flows: usize) -> Generated {
    generate(&GenConfig::home(seed, flows)).unwrap()
}

fn checksums_ok(data: &[u8], m: &PacketMeta) -> Result<(), String> {
    let (src, dst) = (m.src_addr.unwrap(), m.dst_addr.unwrap());
    let l3 = &data[m.l3_offset..m.l3_end];
    if m.ip_version == Some(IpVersion::Ipv4)
        && !Ipv4Packet::new_checked(l3).unwrap().verify_checksum()
    {
        return Err("ipv4 header checksum".into());
    }
    let l4 = &data[m.l4_offset.unwrap()..m.l3_end];
    let ok = match m.ip_protocol.unwrap() {
        IpProtocol::Tcp => TcpPacket::new_checked(l4)
            .unwrap()
            .verify_checksum(&src, &dst),
        IpProtocol::Udp => UdpPacket::new_checked(l4)
            .unwrap()
            .verify_checksum(&src, &dst),
        IpProtocol::Icmp => Icmpv4Packet::new_checked(l4).unwrap().verify_checksum(),
        IpProtocol::Icmpv6 => match (src, dst) {
            (IpAddr::V6(s), IpAddr::V6(d)) => Icmpv6Packet::new_checked(l4)
                .unwrap()
                .verify_checksum(&s, &d),
            _ => false,
        },
        p => return Err(format!("unexpected protocol {p:?}")),
    };
    if !ok {
        return Err("l4 checksum".into());
    }
    // A second opinion on structure and the TCP checksum, from a parser that is not ours.
    let sliced = etherparse::SlicedPacket::from_ip(l3).map_err(|e| format!("etherparse: {e}"))?;
    if let Some(etherparse::TransportSlice::Tcp(t)) = &sliced.transport {
        let want = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => t.calc_checksum_ipv4(s.octets(), d.octets()).unwrap(),
            (IpAddr::V6(s), IpAddr::V6(d)) => t.calc_checksum_ipv6(s.octets(), d.octets()).unwrap(),
            _ => unreachable!(),
        };
        if want != t.checksum() {
            return Err("etherparse disagrees on the TCP checksum".into());
        }
    }
    if sliced.transport.is_none() {
        return Err("etherparse found no transport header".into());
    }
    Ok(())
}

use nft_wire::IpProtocol;

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = home(42, 120);
    let b = home(42, 120);
    assert_eq!(a.frames, b.frames);
    assert_eq!(a.info, b.info);
    let (fa, fb) = (
        a.write_pcapng(Vec::new()).unwrap(),
        b.write_pcapng(Vec::new()).unwrap(),
    );
    assert_eq!(fa, fb, "capture files differ");
    let c = home(43, 120);
    assert_ne!(a.frames, c.frames);
}

#[test]
fn valid_frames_parse_with_good_checksums_and_malformed_ones_fail_as_marked() {
    let g = home(7, 400);
    assert_eq!(g.frames.len(), g.info.len());
    let mut malformed = HashMap::new();
    for (i, (f, info)) in g.frames.iter().zip(&g.info).enumerate() {
        match info.malformed {
            None => {
                let m =
                    parse_frame(&f.data).unwrap_or_else(|e| panic!("frame {i} ({info:?}): {e}"));
                checksums_ok(&f.data, &m).unwrap_or_else(|e| panic!("frame {i} ({info:?}): {e}"));
                assert!(f.data.len() >= build::MIN_FRAME, "frame {i} not padded");
            }
            Some(want) => {
                assert_eq!(
                    parse_frame(&f.data).err(),
                    Some(want.expected_error()),
                    "frame {i} ({info:?})"
                );
                *malformed.entry(want).or_insert(0usize) += 1;
            }
        }
    }
    assert_eq!(malformed.values().sum::<usize>(), g.summary.malformed);
    assert!(g.summary.malformed > 0);
    assert_eq!(
        malformed.len(),
        Malformation::ALL.len(),
        "every defect appears: {malformed:?}"
    );
    assert_eq!(
        g.summary
            .malformed_by_reason
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect::<HashMap<_, _>>(),
        malformed
    );
}

#[test]
fn frames_are_in_time_order_on_the_ingress_ports() {
    let g = home(1, 200);
    assert!(g.frames.windows(2).all(|w| w[0].ts <= w[1].ts));
    assert_eq!(g.frames[0].ts, Duration::from_secs(1_700_000_000));
    for (f, info) in g.frames.iter().zip(&g.info) {
        let from_lan = match (info.kind, info.dir) {
            (FlowKind::InboundTcp | FlowKind::InboundUdp, d) => d == Dir::Reply,
            (FlowKind::Malformed, _) => f.iface == "lan",
            (_, d) => d == Dir::Original,
        };
        assert_eq!(f.iface, if from_lan { "lan" } else { "eth1" }, "{info:?}");
    }
    let s = &g.summary;
    assert_eq!(s.flows.values().sum::<usize>(), 200);
    assert_eq!(s.packets, g.frames.len());
    assert_eq!(s.packets_by_iface.values().sum::<usize>(), s.packets);
    for k in FlowKind::ALL {
        assert!(
            s.flows.get(&k).copied().unwrap_or(0) > 0,
            "no {k:?} flow in {s}"
        );
    }
    assert!(s.ipv6_flows > 0);
    // Flows overlap: packets of different flows interleave.
    let switches = g.info.windows(2).filter(|w| w[0].flow != w[1].flow).count();
    let flows_seen = g.info.iter().map(|i| i.flow).collect::<HashSet<_>>().len();
    assert!(
        switches > 3 * flows_seen,
        "{switches} switches for {flows_seen} flows"
    );
}

#[test]
fn wan_frames_carry_the_pppoe_session_and_lan_frames_nothing() {
    let cfg = GenConfig::home(5, 150);
    let g = generate(&cfg).unwrap();
    let mut wan = 0;
    for (f, info) in g.frames.iter().zip(&g.info) {
        if info.malformed.is_some() {
            continue;
        }
        let m = parse_frame(&f.data).unwrap();
        if f.iface == "eth1" {
            wan += 1;
            assert_eq!(m.pppoe_session, Some(0x1234));
            assert_eq!(m.src_mac.0, cfg.gateway_mac);
            assert_eq!(m.dst_mac.0, cfg.wan.mac);
        } else {
            assert_eq!((m.pppoe_session, m.vlan_count), (None, 0));
            assert_eq!(m.dst_mac.0, cfg.lan.mac);
        }
        // No frame exceeds the link it crosses.
        let mtu = if f.iface == "eth1" {
            cfg.wan.mtu
        } else {
            cfg.lan.mtu
        };
        assert!(
            m.ip_total_len <= usize::from(mtu),
            "{} > {mtu}",
            m.ip_total_len
        );
    }
    assert!(wan > 0);
}

#[test]
fn vlan_and_qinq_wan() {
    for (encap, vids) in [
        (
            Encap::Vlan {
                parent: "eth1".into(),
                id: 7,
            },
            vec![7],
        ),
        (
            Encap::QinQ {
                parent: "eth1".into(),
                outer: 100,
                inner: 200,
            },
            vec![100, 200],
        ),
    ] {
        let mut cfg = GenConfig::home(9, 80);
        cfg.wan.encap = encap;
        cfg.wan.mtu = 1500;
        let g = generate(&cfg).unwrap();
        let mut wan = 0;
        for (f, info) in g.frames.iter().zip(&g.info) {
            if f.iface != "eth1" || info.malformed == Some(Malformation::RuntEthernet) {
                continue;
            }
            wan += 1;
            let got: Vec<u16> = match parse_frame(&f.data) {
                Ok(m) => m.vlan_tags().iter().map(|t| t.vid).collect(),
                Err(_) => continue,
            };
            assert_eq!(got, vids);
        }
        assert!(wan > 0);
    }
}

/// Direction, seq, ack, flags, payload length.
type Segment = (Dir, u32, u32, TcpFlags, usize);

/// Each TCP flow's segments in time order.
fn tcp_segments(g: &Generated) -> HashMap<u32, Vec<Segment>> {
    let mut flows: HashMap<u32, Vec<_>> = HashMap::new();
    for (f, info) in g.frames.iter().zip(&g.info) {
        if !matches!(info.kind, FlowKind::Tcp | FlowKind::InboundTcp) {
            continue;
        }
        let m = parse_frame(&f.data).unwrap();
        let t = m.tcp.unwrap();
        flows.entry(info.flow).or_default().push((
            info.dir,
            t.seq_number,
            t.ack_number,
            t.flags,
            m.payload_len,
        ));
    }
    flows
}

#[test]
fn tcp_has_handshake_consistent_sequence_numbers_and_a_close() {
    let g = home(11, 300);
    let flows = tcp_segments(&g);
    assert!(flows.len() > 50);
    let syn_ack = TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0);
    let (mut fins, mut rsts, mut data_both_ways, mut full_segments) = (0, 0, 0, 0);
    for (id, segs) in &flows {
        let (d0, isn0, _, f0, _) = segs[0];
        let (d1, isn1, ack1, f1, _) = segs[1];
        let (d2, seq2, ack2, f2, len2) = segs[2];
        assert_eq!((d0, f0), (Dir::Original, TcpFlags::SYN), "flow {id}");
        assert_eq!(
            (d1, f1, ack1),
            (Dir::Reply, syn_ack, isn0.wrapping_add(1)),
            "flow {id}"
        );
        assert_eq!(
            (d2, f2, seq2, ack2, len2),
            (
                Dir::Original,
                TcpFlags::ACK,
                isn0.wrapping_add(1),
                isn1.wrapping_add(1),
                0
            )
        );

        // In time order, each side's sequence numbers run on without gaps, and an ACK covers
        // only what the router has already seen from the other side.
        let mut next = HashMap::new();
        let mut last_ack: HashMap<usize, u32> = HashMap::new();
        let mut bytes = [0usize; 2];
        for &(d, seq, ack, flags, len) in segs {
            let side = d as usize;
            if let Some(&n) = next.get(&side) {
                assert_eq!(seq, n, "flow {id}: gap in {d:?}");
            }
            let phantom = u32::from(flags.intersects(TcpFlags(TcpFlags::SYN.0 | TcpFlags::FIN.0)));
            next.insert(side, seq.wrapping_add(len as u32 + phantom));
            if flags.contains(TcpFlags::ACK) {
                let peer = next.get(&(1 - side)).copied().unwrap();
                assert!(
                    peer.wrapping_sub(ack) as i32 >= 0,
                    "flow {id}: {d:?} acks what the peer has not sent"
                );
                if let Some(&prev) = last_ack.get(&side) {
                    assert!(
                        ack.wrapping_sub(prev) as i32 >= 0,
                        "flow {id}: {d:?} ack went back"
                    );
                }
                last_ack.insert(side, ack);
            }
            bytes[side] += len;
            full_segments += usize::from(len > 1000);
        }
        data_both_ways += usize::from(bytes[0] > 0 && bytes[1] > 0);
        let last = segs.last().unwrap().3;
        if last.contains(TcpFlags::RST) {
            rsts += 1;
        } else {
            assert_eq!(
                last,
                TcpFlags::ACK,
                "flow {id}: ends with neither FIN exchange nor RST"
            );
            let fin_dirs: HashSet<Dir> = segs
                .iter()
                .filter(|s| s.3.contains(TcpFlags::FIN))
                .map(|s| s.0)
                .collect();
            assert_eq!(fin_dirs.len(), 2, "flow {id}: FIN from both sides");
            fins += 1;
        }
    }
    assert!(fins > 0 && rsts > 0, "{fins} FIN, {rsts} RST");
    assert_eq!(
        fins + rsts,
        g.summary.tcp_closed_by_fin + g.summary.tcp_closed_by_rst
    );
    assert_eq!(data_both_ways, flows.len());
    assert!(full_segments > 100);
}

#[test]
fn replies_come_to_the_router_and_the_clients_own_port() {
    let cfg = GenConfig::home(3, 300);
    let g = generate(&cfg).unwrap();
    let wan4 = IpAddr::from(cfg.wan.ipv4.unwrap().0);
    let wan6 = IpAddr::from(cfg.wan.ipv6.unwrap().0);
    type First = (IpAddr, IpAddr, Option<(u16, u16)>);
    let mut orig: HashMap<u32, First> = HashMap::new();
    let mut sports: HashMap<(IpProtocol, u16), u32> = HashMap::new();
    for (f, info) in g.frames.iter().zip(&g.info) {
        if info.malformed.is_some()
            || matches!(info.kind, FlowKind::InboundTcp | FlowKind::InboundUdp)
        {
            continue;
        }
        let m = parse_frame(&f.data).unwrap();
        let ports = m.ports.or(m.icmp.and_then(|i| i.ident).map(|i| (i, 0)));
        match info.dir {
            Dir::Original => {
                orig.entry(info.flow)
                    .or_insert((m.src_addr.unwrap(), m.dst_addr.unwrap(), ports));
                let p = ports.unwrap().0;
                let key = (m.ip_protocol.unwrap(), p);
                let owner = *sports.entry(key).or_insert(info.flow);
                assert_eq!(owner, info.flow, "source {key:?} used by two flows");
            }
            Dir::Reply => {
                let (_, server, o) = orig[&info.flow];
                assert_eq!(m.src_addr.unwrap(), server);
                let want = if server.is_ipv4() { wan4 } else { wan6 };
                assert_eq!(m.dst_addr.unwrap(), want);
                let (rs, rd) = ports.unwrap();
                let (os, od) = o.unwrap();
                if m.ip_protocol == Some(IpProtocol::Tcp) || m.ip_protocol == Some(IpProtocol::Udp)
                {
                    assert_eq!((rs, rd), (od, os));
                } else {
                    assert_eq!(rs, os, "echo reply keeps the identifier");
                }
            }
        }
    }
}

#[test]
fn inbound_connections_reach_the_forwarded_ports() {
    let cfg = GenConfig::home(21, 300);
    let g = generate(&cfg).unwrap();
    let wan4 = IpAddr::from(cfg.wan.ipv4.unwrap().0);
    let mut seen = HashSet::new();
    for (f, info) in g.frames.iter().zip(&g.info) {
        if !matches!(info.kind, FlowKind::InboundTcp | FlowKind::InboundUdp) {
            continue;
        }
        let m = parse_frame(&f.data).unwrap();
        let (sp, dp) = m.ports.unwrap();
        match info.dir {
            Dir::Original => {
                assert_eq!(f.iface, "eth1");
                assert_eq!(m.dst_addr, Some(wan4));
                let fwd = cfg
                    .forwards
                    .iter()
                    .find(|fw| fw.wan_port == dp)
                    .expect("a forwarded port");
                seen.insert(fwd.wan_port);
            }
            Dir::Reply => {
                assert_eq!(f.iface, "lan");
                let fwd = cfg
                    .forwards
                    .iter()
                    .find(|fw| fw.lan_port == sp && Some(fw.lan_addr) == m.src_addr)
                    .unwrap();
                assert!(seen.contains(&fwd.wan_port));
            }
        }
    }
    assert_eq!(seen.len(), 2);
}

#[test]
fn ipv6_without_nat_goes_to_the_client() {
    let mut cfg = GenConfig::home(4, 150);
    cfg.ipv6_nat = false;
    cfg.ipv6_percent = 100;
    let g = generate(&cfg).unwrap();
    let lan6 = cfg.lan.ipv6.unwrap();
    let mut replies = 0;
    for (f, info) in g.frames.iter().zip(&g.info) {
        if info.dir == Dir::Reply && f.iface == "eth1" && info.malformed.is_none() {
            let dst = parse_frame(&f.data).unwrap().dst_addr.unwrap();
            assert!(super::in_subnet(dst, Some(lan6.0.into()), lan6.1), "{dst}");
            replies += 1;
        }
    }
    assert!(replies > 0);
}

#[test]
fn flow_sizes_are_heavy_tailed() {
    let g = home(8, 600);
    let mut per_flow: HashMap<u32, usize> = HashMap::new();
    for i in &g.info {
        if matches!(
            i.kind,
            FlowKind::Tcp | FlowKind::Quic | FlowKind::InboundTcp
        ) {
            *per_flow.entry(i.flow).or_default() += 1;
        }
    }
    let mut sizes: Vec<usize> = per_flow.into_values().collect();
    sizes.sort_unstable();
    let median = sizes[sizes.len() / 2];
    let max = *sizes.last().unwrap();
    let top = sizes.iter().rev().take(sizes.len() / 10).sum::<usize>();
    let total: usize = sizes.iter().sum();
    assert!(max > 20 * median, "max {max}, median {median}");
    // Three times its share, at least.
    assert!(
        top * 10 > total * 3,
        "the largest tenth of flows carries {top} of {total} packets"
    );
}

#[test]
fn generated_capture_round_trips_and_wireshark_reads_it() {
    let g = home(12, 100);
    let bytes = g.write_pcapng(Vec::new()).unwrap();
    let back: Vec<Frame> = crate::PcapngReader::new(&bytes[..])
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(back, g.frames);

    let dir = std::env::temp_dir().join(format!("nft-io-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gen.pcapng");
    std::fs::write(&path, &bytes).unwrap();
    if let Ok(out) = std::process::Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args([
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.comment",
            "-e",
            "pppoe.session_id",
        ])
        .output()
    {
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().count(), g.frames.len());
        let comments = text.lines().filter(|l| l.contains("malformed: ")).count();
        assert_eq!(comments, g.summary.malformed, "{text}");
        let pppoe = text
            .lines()
            .filter(|l| l.starts_with("eth1\t") && l.contains("0x1234"))
            .count();
        assert!(pppoe > 0, "tshark saw no PPPoE session 0x1234");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_configs_are_refused() {
    let mut c = GenConfig::home(1, 10);
    c.clients = 0;
    assert_eq!(generate(&c).unwrap_err(), GenError::NoClients);
    let mut c = GenConfig::home(1, 10);
    c.lan.ipv4 = Some((Ipv4Addr::new(192, 168, 1, 1), 30));
    assert_eq!(
        generate(&c).unwrap_err(),
        GenError::SubnetTooSmall { clients: 8 }
    );
    let mut c = GenConfig::home(1, 10);
    c.wan.mtu = 576;
    assert_eq!(generate(&c).unwrap_err(), GenError::MtuTooSmall(576));
    let mut c = GenConfig::home(1, 10);
    c.wan.ipv4 = None;
    assert!(matches!(generate(&c), Err(GenError::WanWithoutIpv4(_))));
    let mut c = GenConfig::home(1, 10);
    c.mix = FlowMix {
        tcp: 0,
        dns: 0,
        quic: 0,
        icmp: 0,
        inbound: 5,
        malformed: 0,
    };
    c.forwards.clear();
    assert_eq!(generate(&c).unwrap_err(), GenError::EmptyMix);
}

#[test]
fn ipv4_only_router() {
    let mut c = GenConfig::home(2, 120);
    c.lan.ipv6 = None;
    c.wan.ipv6 = None;
    // Malformed IPv6 frames are made even here; leave them out.
    c.mix.malformed = 0;
    let g = generate(&c).unwrap();
    assert_eq!(g.summary.ipv6_flows, 0);
    for (f, info) in g.frames.iter().zip(&g.info) {
        if info.malformed.is_none() {
            assert!(parse_frame(&f.data).unwrap().src_addr.unwrap().is_ipv4());
        }
    }
}
