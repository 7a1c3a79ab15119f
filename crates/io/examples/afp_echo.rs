//! Reflects every frame received on an interface back out of it, with source and destination MAC
//! swapped, through the AF_PACKET backend. Needs root (CAP_NET_RAW).
//!
//! ```text
//! cargo run -p nft-io --example afp_echo -- veth0 [SECONDS]
//! ```
//!
//! Prints the socket's counters once a second; runs for SECONDS (default: until killed).

use std::time::{Duration, Instant};

use nft_io::afpacket::{AfPacket, AfPacketConfig};

const BURST: usize = 64;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(ifname) = args.next() else {
        eprintln!("usage: afp_echo IFNAME [SECONDS]");
        std::process::exit(2);
    };
    let limit = args
        .next()
        .map(|s| Duration::from_secs(s.parse().expect("SECONDS must be a whole number")));
    let mut port = match AfPacket::open(
        &ifname,
        &AfPacketConfig {
            promiscuous: true,
            ..AfPacketConfig::default()
        },
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("afp_echo: {ifname}: {e}");
            std::process::exit(1);
        }
    };

    // One flat buffer holds a burst's reflected frames.
    let mut bytes: Vec<u8> = Vec::with_capacity(BURST * 1514);
    let mut ends: Vec<usize> = Vec::with_capacity(BURST);
    let start = Instant::now();
    let mut last_report = start;
    while limit.is_none_or(|l| start.elapsed() < l) {
        port.poll(Duration::from_millis(100)).expect("poll");
        bytes.clear();
        ends.clear();
        port.rx_burst(BURST, |f| {
            if f.len() >= 12 {
                bytes.extend_from_slice(&f[6..12]);
                bytes.extend_from_slice(&f[..6]);
                bytes.extend_from_slice(&f[12..]);
                ends.push(bytes.len());
            }
        });
        let mut frames: Vec<&[u8]> = Vec::with_capacity(ends.len());
        let mut from = 0;
        for &end in &ends {
            frames.push(&bytes[from..end]);
            from = end;
        }
        // Back-pressure drops the rest of the burst: an echo has nowhere to queue.
        port.tx_burst(&frames);
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            println!("{:?}", port.stats().expect("stats"));
        }
    }
    println!("{:?}", port.stats().expect("stats"));
}
