//! The fast path's packet rate: 64-byte UDP frames of masqueraded flows, both directions, in
//! bursts of 32, over N offloaded flows (100,000 is the target case). Each burst first copies
//! pristine frames into the slots (what a NIC's DMA does), so the number includes that copy.
//!
//! `cargo bench -p nft-flowtable --bench fastpath` prints the rate per core and the memory an
//! offloaded connection costs.
//!
//! Measured on a shared 2-core AMD EPYC VM under a load average of 4 to 5 from other work, old
//! and new built and run back to back (noisy; compare within one session): 1,000 flows
//! 11.4 -> 10.7 Mpps (same within noise), 100,000 flows 4.2 -> 6.4 Mpps (still bound by a
//! cache/TLB miss on the index and one on the flow's line per packet, now one line instead
//! of three or four). Instructions per packet (callgrind, `examples/fastpath_count.rs`):
//! about 725 before, 744 after (the fuller index probes a little further). Memory: 85 bytes
//! per flow entry (one 64-byte line for both directions, a 16-byte cold part, the slot's
//! generation and backend state) + 10 of index (4 bytes a key, at four fifths load);
//! `nft_flowtable::bytes_per_offloaded_connection(100_000)` = 253 with conntrack's share, its
//! masquerade interface and its place in the early-drop queue (249 with a 24-byte cold part
//! and the queue not counted; 401 with two lines a flow, 8-byte index slots, 80 bytes of
//! tuples in the connection and the engine's per-connection maps not counted; 489 before
//! that).

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
                "conntrack: {:?}; per offloaded connection, both: {} bytes",
                nft_conntrack::Table::memory_per_conn(n),
                nft_flowtable::bytes_per_offloaded_connection(n)
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
