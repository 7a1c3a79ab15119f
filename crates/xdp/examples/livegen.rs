//! A UDP traffic generator faster than a socket sender on veth, with `lbgen`'s command line
//! (`../shared/livebench/lbgen.c`) so that a live bench can use either:
//!
//! ```sh
//! cargo build --release -p nft-xdp --example livegen
//! ip netns exec C target/release/examples/livegen -i c0 -s SRCMAC -d DSTMAC -S 198.18.1.2 \
//!     -D 198.19.0.2 [-f flows] [-p sport] [-P dport] [-t seconds | -n packets] [-r pps] [-c cpu]
//! ```
//!
//! 60-byte (64 with FCS) Ethernet/IPv4/UDP frames with valid checksums, flows by source port. The frames are made and sent by the kernel: `bpf/gen.c` run with
//! `BPF_PROG_TEST_RUN` in live-frames mode redirects each one out of the device
//! (`ndo_xdp_xmit`), which on a veth puts it straight into the peer's receive ring: no socket,
//! no skb and no qdisc on the sending side. The peer must have NAPI on (an XDP program, or
//! `ethtool -K PEER gro on`), or veth drops the frames. A frame the peer's ring has no room for
//! is dropped there (the device's `tx_dropped`), not offered again.
//!
//! `-r` is coarse: frames leave in bursts of 100 ms worth at the full rate (each
//! `BPF_PROG_TEST_RUN` call costs some 20-30 ms of set-up), so use it for flat-out runs.
//!
//! Prints `lbgen: sent=N secs=T pps=P errors=0` (the same line as lbgen; `sent` counts the
//! frames handed to the device).

use std::time::{Duration, Instant};

use nft_xdp::gen::LiveGen;
use nft_xdp::offload::ifindex_of;

fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .filter_map(|x| u8::from_str_radix(x, 16).ok())
        .collect();
    v.try_into().unwrap_or_else(|_| {
        eprintln!("bad MAC {s}");
        std::process::exit(2)
    })
}

fn main() {
    let mut a = std::env::args().skip(1);
    let (mut dev, mut smac, mut dmac) = (String::new(), [0u8; 6], [0u8; 6]);
    let (mut sip, mut dip) = ([0u8; 4], [0u8; 4]);
    let (mut flows, mut sport, mut dport) = (1u16, 10000u16, 9u16);
    let (mut secs, mut count, mut rate, mut cpu) = (None::<f64>, None::<u64>, 0f64, None::<usize>);
    let ip = |s: String| -> [u8; 4] {
        s.parse::<std::net::Ipv4Addr>()
            .map(|a| a.octets())
            .unwrap_or_else(|_| {
                eprintln!("bad address {s}");
                std::process::exit(2)
            })
    };
    while let Some(o) = a.next() {
        let v = a.next().unwrap_or_default();
        match o.as_str() {
            "-i" => dev = v,
            "-s" => smac = parse_mac(&v),
            "-d" => dmac = parse_mac(&v),
            "-S" => sip = ip(v),
            "-D" => dip = ip(v),
            "-f" => flows = v.parse().unwrap_or(1),
            "-p" => sport = v.parse().unwrap_or(10000),
            "-P" => dport = v.parse().unwrap_or(9),
            "-t" => secs = v.parse().ok(),
            "-n" => count = v.parse().ok(),
            "-r" => rate = v.parse().unwrap_or(0.0),
            "-c" => cpu = v.parse().ok(),
            // lbgen's send mode and batch: one path here
            "-m" | "-b" => {}
            other => {
                eprintln!("unknown option {other}");
                std::process::exit(2)
            }
        }
    }
    if let Some(c) = cpu {
        // SAFETY: cpu_set_t is plain data; CPU_SET and sched_setaffinity get valid pointers.
        unsafe {
            let mut set: libc::cpu_set_t = core::mem::zeroed();
            libc::CPU_SET(c, &mut set);
            libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
    let ifindex = ifindex_of(&dev);
    if ifindex == 0 {
        eprintln!("livegen: no device {dev:?}");
        std::process::exit(1);
    }
    // Ethernet, IPv4, UDP, 18 bytes of payload
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&dmac);
    f[6..12].copy_from_slice(&smac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&46u16.to_be_bytes());
    f[20] = 0x40; // DF
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&sip);
    f[30..34].copy_from_slice(&dip);
    let c = nft_wire::checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    // UDP checksum over the pseudo-header and the datagram (the program updates it per port)
    let mut ph = vec![];
    ph.extend_from_slice(&sip);
    ph.extend_from_slice(&dip);
    ph.extend_from_slice(&[0, 17, 0, 26]);
    ph.extend_from_slice(&f[34..60]);
    let u = nft_wire::checksum::checksum(&ph);
    f[40..42].copy_from_slice(&(if u == 0 { 0xffff } else { u }).to_be_bytes());
    let g = LiveGen::new(ifindex, &f, flows, sport).unwrap_or_else(|e| {
        eprintln!("livegen: {e}");
        std::process::exit(1)
    });
    let t0 = Instant::now();
    let limit = secs.map(Duration::from_secs_f64);
    let mut sent: u64 = 0;
    loop {
        if count.is_some_and(|n| sent >= n) || limit.is_some_and(|l| t0.elapsed() >= l) {
            break;
        }
        // Each call sets up and tears down the kernel's page pool (some 20-30 ms here): flat
        // out, a call sends 2^20 frames (about a second) to amortise it; paced,
        // a call sends 100 ms worth of frames at once, in a burst at the full rate. Pacing is
        // coarse: for a router below saturation, use lbgen's `-r`.
        let step = if rate > 0.0 {
            ((rate / 10.0) as u64).max(64)
        } else if count.is_some() {
            // a counted send (livebench's priming, one frame a flow) goes 16 at a time: the
            // frames are page-sized skbs at the receiver, and a socket's default buffer holds
            // some 50 of them, so one burst of 64 would lose the last flows' frames
            16
        } else {
            1 << 20
        };
        let mut chunk = step;
        if let Some(n) = count {
            chunk = chunk.min(n - sent);
        }
        if rate > 0.0 {
            let allowed = rate * t0.elapsed().as_secs_f64() - sent as f64;
            if allowed < chunk as f64 && count.is_none_or(|n| n - sent >= step) {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
        }
        if let Err(e) = g.send(&f, chunk as u32) {
            eprintln!("livegen: {e}");
            std::process::exit(1);
        }
        sent += chunk;
    }
    let el = t0.elapsed().as_secs_f64();
    println!(
        "lbgen: sent={sent} secs={el:.6} pps={:.0} errors=0",
        sent as f64 / el
    );
}
