//! Slow-path throughput, for a rough number: `cargo test --release -p nft-engine --test bench
//! -- --ignored --nocapture`. Not a test of correctness; ignored by default.

mod common;
use common::*;
use nft_engine::Frame;
use std::time::Instant;

#[test]
#[ignore]
fn slow_path_throughput() {
    let mut r = router_with(
        TOPOLOGY,
        RULES,
        nft_engine::Config {
            conntrack: nft_conntrack::Config {
                max_entries: 1 << 20,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    const N: usize = 200_000;
    // new connections: each a new UDP flow from the LAN, masqueraded, confirmed
    let frames: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            udp4(
                CLIENT_MAC,
                LAN_MAC,
                CLIENT,
                [203, (i >> 16) as u8, (i >> 8) as u8, i as u8],
                1024 + (i % 60000) as u16,
                53,
                64,
                b"query",
            )
        })
        .collect();
    let t = Instant::now();
    replay(&mut r, &frames, secs(1));
    let new_per_s = N as f64 / t.elapsed().as_secs_f64();
    assert_eq!(r.conntrack().len(), N, "{:?}", r.counters().drop_map());
    // established: the same flows again (conntrack hit, NAT rewrite, no NAT chains)
    let t = Instant::now();
    replay(&mut r, &frames, secs(2));
    let pps = N as f64 / t.elapsed().as_secs_f64();
    println!("slow path: {new_per_s:.0} new connections/s, {pps:.0} packets/s on established flows (one core, incl. frame copies)");
}

/// `frames` from the LAN in bursts of 32, as the live router reads them (frame copies included).
fn replay(r: &mut nft_engine::Router, frames: &[Vec<u8>], now: std::time::Duration) {
    let mut out = Vec::with_capacity(64);
    for chunk in frames.chunks(32) {
        let mut burst: Vec<Frame> = chunk
            .iter()
            .map(|d| Frame {
                ingress: LAN,
                data: d.clone(),
            })
            .collect();
        out.clear();
        r.process(&mut burst, now, &mut out);
    }
}
