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
use nft_flowtable::{Action, FrameSlot};
use std::time::Duration;

mod common;
use common::setup;

const BURST: usize = 32;

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
