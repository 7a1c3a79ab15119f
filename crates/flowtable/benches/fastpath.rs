//! The fast path's packet rate: 64-byte UDP frames of masqueraded flows, both directions, in
//! bursts of 32, over N offloaded flows (100,000 is the target case). Each burst first copies
//! pristine frames into the slots (what a NIC's DMA does), so the number includes that copy.
//!
//! `cargo bench -p nft-flowtable --bench fastpath` prints the rate per core and the memory an
//! offloaded connection costs.
//!
//! Measured on a shared 2-core AMD EPYC VM (load average about 2.5 from other work, so the
//! numbers are low and noisy): 1,000 flows about 15.6 Mpps (64 ns a packet), 100,000 flows
//! about 6.0 Mpps (166 ns a packet, bound by cache and TLB misses on the entries); 256 bytes
//! per entry plus 42 bytes of index per flow.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nft_conntrack::{Config as CtConfig, NatRange, Outcome, Table};
use nft_flowtable::{
    Action, Admission, Config, Egress, Encap, Family, Flowtable, FrameSlot, Mangles, Path,
};
use nft_wire::{parse_frame, IpProtocol, Ipv4Addr, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr};
use std::time::Duration;

const BURST: usize = 32;
const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x10];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 2, 0xfe];

/// A 64-byte Ethernet/IPv4/UDP frame (22 bytes of payload).
fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: sport,
        dst_port: dport,
        payload: &[0x5a; 22],
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Udp,
        payload_len: udp.buffer_len(),
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 1,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    };
    let mut f = vec![0u8; 14 + ip.buffer_len() + udp.buffer_len()];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut f[14..]));
    udp.emit(
        &mut UdpPacket::new_unchecked(&mut f[34..]),
        &src.into(),
        &dst.into(),
    );
    f
}

/// `n` masqueraded UDP flows admitted into a flowtable, and a frame per flow and direction in
/// a shuffled order.
fn setup(n: usize) -> (Table, Flowtable, Vec<(u16, Vec<u8>)>) {
    let mut ct = Table::new(CtConfig {
        max_entries: n + 16,
        ..CtConfig::default()
    });
    let mut ft = Flowtable::new(Config {
        devices: vec![0, 1],
        max_flows: n,
        ..Config::default()
    });
    let wan = Ipv4Addr::new(203, 0, 113, 1);
    let now = Duration::from_secs(1);
    let lan = Egress {
        port: 0,
        src_mac: LAN_MAC,
        dst_mac: CLIENT_MAC,
        encap: Encap::None,
        mtu: 1500,
    };
    let wan_e = Egress {
        port: 1,
        src_mac: WAN_MAC,
        dst_mac: GW_MAC,
        encap: Encap::None,
        mtu: 1500,
    };
    let mut frames = Vec::with_capacity(2 * n);
    for i in 0..n {
        let client = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (i as u32 >> 4));
        let server = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i as u32);
        let sport = 20000 + (i as u16 & 15);
        let out = udp_frame(LAN_MAC, CLIENT_MAC, client, server, sport, 443);
        let meta = parse_frame(&out).unwrap();
        let Outcome::Tracked { id, .. } = ct.process(&meta, 0, now) else {
            panic!("not tracked")
        };
        ct.masquerade(id, wan.into(), 1, &NatRange::default())
            .unwrap();
        ct.confirm(id, now).unwrap();
        let a = Admission {
            forward_hook: true,
            family: Family::Inet,
            conn: Some(id),
            meta: &meta,
            paths: [
                Path {
                    ingress: 0,
                    egress: wan_e,
                },
                Path {
                    ingress: 1,
                    egress: lan,
                },
            ],
            mangles: [Mangles::default(); 2],
            fib_generation: 0,
        };
        ft.admit(&mut ct, &a, now).unwrap();
        let r = *ct.get(id).unwrap().reply();
        let IpAddrPair(s, d) = IpAddrPair::from(r.src, r.dst);
        let back = udp_frame(WAN_MAC, GW_MAC, s, d, r.sport, r.dport);
        frames.push((0, out));
        frames.push((1, back));
    }
    // A fixed shuffle, so that consecutive packets belong to unrelated flows.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in (1..frames.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        frames.swap(i, (x % (i as u64 + 1)) as usize);
    }
    (ct, ft, frames)
}

struct IpAddrPair(Ipv4Addr, Ipv4Addr);

impl IpAddrPair {
    fn from(a: std::net::IpAddr, b: std::net::IpAddr) -> IpAddrPair {
        match (a, b) {
            (std::net::IpAddr::V4(a), std::net::IpAddr::V4(b)) => IpAddrPair(a, b),
            _ => panic!("IPv4 flows only"),
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("fastpath");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    for n in [1_000usize, 100_000] {
        let (_ct, mut ft, frames) = setup(n);
        if n == 100_000 {
            let m = ft.memory();
            eprintln!(
                "flowtable: {} bytes per slab entry + {} bytes of index per flow = {} bytes per flow",
                m.entry_bytes, m.index_bytes_per_flow, m.bytes_per_flow
            );
            eprintln!(
                "conntrack: size_of::<Conn>() = {} bytes (slot, hash map and NAT maps on top)",
                std::mem::size_of::<nft_conntrack::Conn>()
            );
        }
        // The pristine frames in one flat buffer, in the shuffled order, so that the copy into
        // the slots streams through memory like a receive ring does.
        let len = frames[0].1.len();
        let flat: Vec<u8> = frames.iter().flat_map(|(_, f)| f.iter().copied()).collect();
        let ports: Vec<u16> = frames.iter().map(|(p, _)| *p).collect();
        let mut slots: Vec<FrameSlot> = (0..BURST)
            .map(|_| FrameSlot::new(0, &frames[0].1))
            .collect();
        let mut out = [Action::None; BURST];
        let mut at = 0usize;
        let now = Duration::from_secs(2);
        // Everything forwards: checked once before measuring.
        for (s, (p, f)) in slots.iter_mut().zip(&frames) {
            s.refill(*p, f);
        }
        ft.process_burst::<false>(&mut slots, now, &mut out);
        assert!(
            out.iter().all(|a| matches!(a, Action::Forward(_))),
            "{out:?}"
        );

        g.throughput(Throughput::Elements(BURST as u64));
        g.bench_function(BenchmarkId::new("udp64_burst32", n), |b| {
            b.iter(|| {
                for s in slots.iter_mut() {
                    s.refill(ports[at], &flat[at * len..(at + 1) * len]);
                    at += 1;
                    if at == ports.len() {
                        at = 0;
                    }
                }
                ft.process_burst::<false>(&mut slots, now, &mut out);
                criterion::black_box(&out);
            })
        });
        assert_eq!(ft.stats().punts.iter().sum::<u64>(), 0);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
