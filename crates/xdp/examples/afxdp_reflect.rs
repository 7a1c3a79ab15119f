//! RX -> TX reflection on a veth pair, AF_XDP (steering program + socket, frames sent back out
//! of the same UMEM frame) beside AF_PACKET (TPACKET_V3 ring + sendmmsg), in one run.
//!
//! A generator in one namespace blasts 64-byte UDP frames (its own AF_XDP socket, transmit
//! only) into a veth; the reflector in the other namespace swaps the MACs of every frame it
//! receives and sends it back. Reported per backend: frames offered, frames reflected per
//! second, and the reflector thread's CPU time per reflected frame (softirq time spent on its
//! behalf is not in it). Root.
//!
//! `cargo run --release -p nft-xdp --example afxdp_reflect -- [--seconds S] [--size BYTES]`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nft_io::afpacket::{AfPacket, AfPacketConfig};
use nft_io::afxdp::{AfXdp, AfXdpConfig, RxAction};
use nft_io::netns::{in_netns, ip, VethPair};
use nft_xdp::{Steer, SteerConfig};

const GEN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const R_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

fn frame(seq: u32, size: usize) -> Vec<u8> {
    let mut f = R_MAC.to_vec();
    // A source MAC nobody has: the reflected frames are dropped early by the peer's kernel.
    f.extend_from_slice(&GEN_MAC);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    let tot = (size - 14) as u16;
    f.extend_from_slice(&tot.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 2, 198, 19, 0, 9]);
    f.extend_from_slice(&(10000 + (seq % 64) as u16).to_be_bytes());
    f.extend_from_slice(&[0x13, 0x89]);
    f.extend_from_slice(&(tot - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.resize(size, 0);
    f
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a live timespec the call writes.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

struct Gen {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<()>,
}

fn start_gen(ns: &str, size: usize) -> Gen {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let (s2, n2) = (stop.clone(), sent.clone());
    let ns = ns.to_string();
    let handle = std::thread::spawn(move || {
        in_netns(&ns, move || {
            let mut xsk = AfXdp::open("vp", 0, &AfXdpConfig::default()).unwrap();
            let frames: Vec<Vec<u8>> = (0..64).map(|i| frame(i, size)).collect();
            let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            while !s2.load(Ordering::Relaxed) {
                let n = xsk.tx_burst(&refs);
                n2.fetch_add(n as u64, Ordering::Relaxed);
            }
        })
    });
    Gen { stop, sent, handle }
}

impl Gen {
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap();
        self.sent.load(Ordering::Relaxed)
    }
}

struct Result {
    name: &'static str,
    offered: u64,
    reflected: u64,
    secs: f64,
    cpu: Duration,
}

fn swap_macs(d: &mut [u8]) {
    let (a, b) = d.split_at_mut(6);
    a.swap_with_slice(&mut b[..6]);
}

fn run_afxdp(pair: &VethPair, secs: f64, size: usize) -> Result {
    let (mut steer, mut xsk) = in_netns(&pair.router, || {
        let mut steer = Steer::attach("vr", &SteerConfig::default()).unwrap();
        let xsk = AfXdp::open("vr", 0, &AfXdpConfig::default()).unwrap();
        steer.set_socket(0, &xsk).unwrap();
        (steer, xsk)
    });
    eprintln!(
        "af_xdp: steering in {} mode, zero-copy {}",
        steer.mode(),
        xsk.zero_copy()
    );
    let gen = start_gen(&pair.peer, size);
    std::thread::sleep(Duration::from_millis(300));
    let (t0, c0) = (Instant::now(), thread_cpu());
    let mut reflected = 0u64;
    let tx0 = xsk.stats().unwrap().tx_packets;
    while t0.elapsed().as_secs_f64() < secs {
        if !xsk.rx_ready() {
            let _ = xsk.poll(Duration::from_millis(1));
        }
        xsk.rx_burst_mut(64, |f| {
            swap_macs(f.data_mut());
            RxAction::Transmit
        });
    }
    let (el, cpu) = (t0.elapsed().as_secs_f64(), thread_cpu() - c0);
    // Sent from the same UMEM frames, counted by the socket (no syscall in the loop).
    reflected = xsk.stats().map(|s| s.tx_packets - tx0).unwrap_or(reflected);
    let offered = gen.finish();
    let st = xsk.stats().unwrap();
    eprintln!("af_xdp: {st:?}; steering {:?}", steer.counters());
    steer.set_enabled(false).unwrap();
    Result {
        name: "af_xdp",
        offered,
        reflected,
        secs: el,
        cpu,
    }
}

fn run_afpacket(pair: &VethPair, secs: f64, size: usize) -> Result {
    let mut sock = in_netns(&pair.router, || {
        AfPacket::open("vr", &AfPacketConfig::default()).unwrap()
    });
    let gen = start_gen(&pair.peer, size);
    std::thread::sleep(Duration::from_millis(300));
    let (t0, c0) = (Instant::now(), thread_cpu());
    let mut reflected = 0u64;
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(64);
    let mut used = 0;
    while t0.elapsed().as_secs_f64() < secs {
        if !sock.rx_ready() {
            let _ = sock.poll(Duration::from_millis(1));
        }
        used = 0;
        sock.rx_burst(64, |f| {
            if used == batch.len() {
                batch.push(Vec::with_capacity(2048));
            }
            let b = &mut batch[used];
            b.clear();
            b.extend_from_slice(f);
            swap_macs(b);
            used += 1;
        });
        let refs: Vec<&[u8]> = batch[..used].iter().map(Vec::as_slice).collect();
        reflected += sock.tx_burst(&refs) as u64;
    }
    let _ = used;
    let (el, cpu) = (t0.elapsed().as_secs_f64(), thread_cpu() - c0);
    let offered = gen.finish();
    eprintln!("af_packet: {:?}", sock.stats().unwrap());
    Result {
        name: "af_packet",
        offered,
        reflected,
        secs: el,
        cpu,
    }
}

fn main() {
    let mut secs = 3.0;
    let mut size = 64usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                secs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--seconds S")
            }
            "--size" => {
                size = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--size BYTES")
            }
            _ => {
                eprintln!("usage: afxdp_reflect [--seconds S] [--size BYTES]");
                std::process::exit(2);
            }
        }
    }
    let size = size.clamp(60, 1514);
    let Some(pair) = VethPair::create("afxdp_reflect", "axr") else {
        std::process::exit(1);
    };
    ip(&[
        "-n",
        &pair.router,
        "link",
        "set",
        "vr",
        "address",
        "02:00:00:00:00:01",
    ])
    .unwrap();
    let results = [
        run_afxdp(&pair, secs, size),
        run_afpacket(&pair, secs, size),
    ];
    println!(
        "{:<10} {:>14} {:>14} {:>16}",
        "backend", "offered pps", "reflected pps", "reflector ns/pkt"
    );
    for r in &results {
        println!(
            "{:<10} {:>14.0} {:>14.0} {:>16.0}",
            r.name,
            r.offered as f64 / r.secs,
            r.reflected as f64 / r.secs,
            r.cpu.as_nanos() as f64 / r.reflected.max(1) as f64
        );
    }
    let (x, p) = (&results[0], &results[1]);
    println!(
        "af_xdp / af_packet: {:.2}x packets/s, {:.2}x CPU per packet",
        (x.reflected as f64 / x.secs) / (p.reflected as f64 / p.secs).max(1.0),
        (x.cpu.as_nanos() as f64 / x.reflected.max(1) as f64)
            / (p.cpu.as_nanos() as f64 / p.reflected.max(1) as f64).max(1e-9)
    );
}
