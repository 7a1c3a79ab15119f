//! A fixed number of packets through `process_burst`, for counting instructions per packet
//! with callgrind (the bench's flows and frames: 64-byte masqueraded UDP, both directions,
//! shuffled, bursts of 32). Only `process_burst` is counted, not the setup or the frame copy:
//!
//! ```text
//! cargo build --release -p nft-flowtable --example fastpath_count
//! valgrind --tool=callgrind --toggle-collect='*process_burst*' --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/fastpath_count 100000 320000
//! ```
//!
//! Instructions per packet = the `Ir` total callgrind prints, divided by the packet count
//! (the second argument, rounded down to whole bursts).

use nft_flowtable::{Action, FrameSlot};
use std::time::Duration;

#[path = "../benches/common/mod.rs"]
mod common;

const BURST: usize = 32;

fn main() {
    let mut args = std::env::args().skip(1);
    let flows: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let packets: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(320_000);
    let (_ct, mut ft, frames) = common::setup(flows);
    let mut slots: Vec<FrameSlot> = (0..BURST)
        .map(|_| FrameSlot::new(0, &frames[0].1))
        .collect();
    let mut out = [Action::None; BURST];
    let now = Duration::from_secs(2);
    let mut at = 0;
    let mut forwarded = 0usize;
    for _ in 0..packets / BURST {
        for s in slots.iter_mut() {
            let (p, f) = &frames[at];
            s.refill(*p, f);
            at = (at + 1) % frames.len();
        }
        ft.process_burst::<false>(&mut slots, now, &mut out);
        forwarded += out
            .iter()
            .filter(|a| matches!(a, Action::Forward(_)))
            .count();
    }
    println!(
        "flows={flows} packets={} forwarded={forwarded}",
        packets / BURST * BURST
    );
}
