//! What the XDP offload's stats pull costs with N flows in the map, batched
//! (`BPF_MAP_LOOKUP_BATCH`, the default) against one lookup per direction, side by side (root):
//!
//! ```sh
//! cargo build --release -p nft-xdp --example offload_poll
//! target/release/examples/offload_poll [--flows 1000,10000,30000] [--rounds 5]
//! ```
//!
//! A network namespace with a veth pair `p0 <-> p1` carrying the offload (generic mode); N UDP
//! flows admitted through conntrack into a flowtable whose backend is the offload, pushed to
//! its map. Then `OffloadBackend::poll` (what the flowtable's GC calls every second) is timed
//! in both modes, alternating, `--rounds` times each; the medians are printed, in
//! microseconds a poll and nanoseconds a flow. No traffic flows: the cost measured is reading
//! the counters, which is the same whether they moved or not.

use std::process::Command;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use nft_conntrack::{Config as CtConfig, Outcome, Table};
use nft_flowtable::{Config, Egress, Encap, Flowtable, Mac, OffloadBackend};
use nft_wire::parse_frame;
use nft_xdp::offload::{ModeRequest, XdpOffload, XdpOffloadConfig};

mod support;
use support::{admission, in_ns, median, sh};

const A: Mac = [2, 0, 0, 0, 1, 1];
const B: Mac = [2, 0, 0, 0, 1, 2];

struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut counts = vec![1_000usize, 10_000, 30_000];
    let mut rounds = 5usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--flows" => {
                counts = args
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|n| n.parse().ok())
                    .collect()
            }
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
            other => panic!("unknown argument {other}"),
        }
    }
    let ns = Ns(format!("opoll{}", std::process::id()));
    sh(&["ip", "netns", "add", &ns.0]);
    sh(&[
        "ip", "-n", &ns.0, "link", "add", "p0", "type", "veth", "peer", "p1",
    ]);
    for dev in ["p0", "p1"] {
        sh(&["ip", "-n", &ns.0, "link", "set", dev, "up"]);
    }
    for &n in &counts {
        let cfg = XdpOffloadConfig {
            devices: vec![(0, "p0".into()), (1, "p1".into())],
            max_entries: (2 * n as u32).max(1024),
            mode: ModeRequest::Generic,
        };
        let backend = in_ns(&ns.0, || XdpOffload::new(&cfg)).expect("XDP offload loads");
        let mut ct = Table::new(CtConfig {
            max_entries: 4 * n + 64,
            ..CtConfig::default()
        });
        let mut ft = Flowtable::with_backend(
            Config {
                devices: vec![0, 1],
                hw_offload: true,
                max_flows: n + 16,
                ..Config::default()
            },
            backend,
        );
        let now = Duration::from_secs(1);
        let eg = |port: u16| Egress {
            port,
            src_mac: if port == 0 { A } else { B },
            dst_mac: if port == 0 { B } else { A },
            encap: Encap::None,
            mtu: 1500,
        };
        for i in 0..n {
            let (sport, host) = (1024 + (i % 60_000) as u16, (i / 60_000) as u8);
            let mut f = vec![];
            PacketBuilder::ethernet2(B, A)
                .ipv4([198, 18, 1, 2 + host], [198, 19, 0, 2], 64)
                .udp(sport, 9)
                .write(&mut f, &[0u8; 18])
                .unwrap();
            let meta = parse_frame(&f).unwrap();
            let o = ct.process(&meta, 0, now);
            let Outcome::Tracked { id, .. } = o else {
                panic!("flow {i} not tracked: {o:?}")
            };
            ct.confirm(id, now).unwrap();
            let mut r = vec![];
            PacketBuilder::ethernet2(A, B)
                .ipv4([198, 19, 0, 2], [198, 18, 1, 2 + host], 64)
                .udp(9, sport)
                .write(&mut r, b"a")
                .unwrap();
            let _ = ct.process(&parse_frame(&r).unwrap(), 1, now);
            let a = admission(&meta, id, 0, eg(0), eg(1));
            ft.admit(&mut ct, &a, now).expect("admitted");
        }
        ft.gc(&mut ct, now);
        let pushed = ft.backend().stats();
        assert_eq!(pushed.active as usize, n, "{pushed:?}");
        let mut ev = vec![];
        let (mut batch, mut single) = (vec![], vec![]);
        for _ in 0..rounds {
            for mode in [true, false] {
                let b = ft.backend_mut();
                b.set_batch_stats(mode);
                ev.clear();
                let t = Instant::now();
                b.poll(&mut ev);
                let us = t.elapsed().as_secs_f64() * 1e6;
                if mode {
                    batch.push(us);
                } else {
                    single.push(us);
                }
            }
        }
        let (b, s) = (median(&mut batch), median(&mut single));
        println!(
            "offload_poll: flows={n} batch_us={b:.0} per_lookup_us={s:.0} batch_ns_per_flow={:.0} per_lookup_ns_per_flow={:.0} ratio={:.2} cpus={}",
            b * 1e3 / n as f64,
            s * 1e3 / n as f64,
            s / b,
            aya::util::nr_cpus().unwrap_or(0)
        );
    }
}
