//! Forwarding capacity of one CPU, the kernel with nftables against the XDP offload, side by
//! side, with no traffic generator in the way (root):
//!
//! ```sh
//! cargo build --release -p nft-xdp --example offload_capacity
//! target/release/examples/offload_capacity [RULESET] [--packets N] [--rounds R] [--cpu C]
//! ```
//!
//! Topology: client ns `c0 <-> r0` router ns `r1 <-> s0` server ns, RULESET (default
//! `/work/shared/livebench/fw4-like.nft`; `none` for no ruleset) loaded in the router's kernel,
//! forwarding on. One UDP flow 198.18.1.2:10000 -> 198.19.0.2:9, primed both ways so that the
//! kernel's conntrack has it established, and admitted (masquerade) into a flowtable whose
//! backend is the XDP offload on r0 and r1 (native mode).
//!
//! Each round injects N copies of the flow's 60-byte frame at r0 with the kernel's XDP
//! live-frames test mode (BPF_PROG_TEST_RUN), pinned to one CPU: once through
//! `offload_bench_kernel` (XDP_PASS: the frames go up the router's stack, the kernel forwards
//! them: nftables, conntrack, masquerade), once through `offload_bench` (the XDP offload
//! forwards them); both first write the template frame back, since the test mode reuses its
//! pages and both paths rewrite frames in place. Either way
//! they leave on r1 and are counted and dropped at s0's ingress. A third path, `sink`, injects
//! the same frames at s0 itself: what the receiving end costs, included in both (veth: the
//! server's receive runs on the same CPU). Prints packets/s and ns per packet per round, then
//! the medians, and the router's own ns per packet (path less sink) for both.

use std::process::Command;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use nft_conntrack::{Config as CtConfig, NatRange, Outcome, Table};
use nft_flowtable::{Egress, Encap};
use nft_wire::parse_frame;
use nft_xdp::offload::{ifindex_of, ModeRequest, XdpOffload, XdpOffloadConfig};

mod support;
use support::{
    admission, in_ns, line_commands, mac_str as mac, median, offload_flowtable, sh, CLIENT_MAC,
    R_LAN_MAC, R_WAN_MAC, SERVER_MAC,
};

struct Topo([String; 3]);

impl Drop for Topo {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_SET and sched_setaffinity get valid pointers.
    unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn delivered(s: &str) -> u64 {
    let out = sh(&[
        "ip", "netns", "exec", s, "nft", "list", "counter", "netdev", "sink", "rx",
    ]);
    out.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut ruleset = "/work/shared/livebench/fw4-like.nft".to_string();
    let (mut packets, mut rounds, mut cpu) = (2_000_000u32, 3usize, 1usize);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--packets" => packets = args.next().and_then(|v| v.parse().ok()).unwrap_or(packets),
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
            "--cpu" => cpu = args.next().and_then(|v| v.parse().ok()).unwrap_or(cpu),
            r => ruleset = r.to_string(),
        }
    }
    let pid = std::process::id();
    let topo = Topo([
        format!("capc{pid}"),
        format!("capr{pid}"),
        format!("caps{pid}"),
    ]);
    let [c, r, s] = [&topo.0[0], &topo.0[1], &topo.0[2]];
    for n in [c, r, s] {
        sh(&["ip", "netns", "add", n]);
    }
    for cmd in line_commands(c, r, s) {
        sh(&cmd.iter().map(String::as_str).collect::<Vec<_>>());
    }
    sh(&[
        "ip",
        "-n",
        s,
        "route",
        "add",
        "198.18.0.0/16",
        "via",
        "198.19.0.1",
    ]);
    sh(&[
        "ip",
        "-n",
        r,
        "neigh",
        "add",
        "198.19.0.2",
        "lladdr",
        &mac(SERVER_MAC),
        "dev",
        "r1",
    ]);
    sh(&[
        "ip",
        "-n",
        r,
        "neigh",
        "add",
        "198.18.1.2",
        "lladdr",
        &mac(CLIENT_MAC),
        "dev",
        "r0",
    ]);
    sh(&[
        "ip",
        "-n",
        s,
        "neigh",
        "add",
        "198.19.0.1",
        "lladdr",
        &mac(R_WAN_MAC),
        "dev",
        "s0",
    ]);
    sh(&[
        "ip",
        "netns",
        "exec",
        r,
        "sh",
        "-c",
        "echo 1 > /proc/sys/net/ipv4/ip_forward",
    ]);
    if ruleset != "none" {
        sh(&["ip", "netns", "exec", r, "nft", "-f", &ruleset]);
    }
    sh(&[
        "ip", "netns", "exec", s, "nft",
        "add table netdev sink; add counter netdev sink rx; add chain netdev sink in { type filter hook ingress device \"s0\" priority -500; }; add rule netdev sink in udp dport 9 counter name \"rx\" drop",
    ]);

    let cfg = XdpOffloadConfig {
        devices: vec![(0, "r0".into()), (1, "r1".into())],
        mode: ModeRequest::Native,
        ..XdpOffloadConfig::default()
    };
    let mut backend = in_ns(r, || XdpOffload::new(&cfg)).expect("XDP offload loads");
    for a in backend.attachments() {
        eprintln!(
            "{}: {:?} {}",
            a.device,
            a.mode,
            a.warning.clone().unwrap_or_default()
        );
    }
    // The veth rule, for both paths alike: s0 and c0 receive through their XDP path.
    in_ns(c, || backend.attach_peer("c0")).expect("peer c0");
    in_ns(s, || backend.attach_peer("s0")).expect("peer s0");

    let mut frame = vec![];
    PacketBuilder::ethernet2(CLIENT_MAC, R_LAN_MAC)
        .ipv4([198, 18, 1, 2], [198, 19, 0, 2], 64)
        .udp(10000, 9)
        .write(&mut frame, &[0u8; 18])
        .unwrap();
    assert_eq!(frame.len(), 60);
    let r0 = in_ns(r, || ifindex_of("r0"));
    backend.set_bench_frame(&frame).expect("bench frame");

    // Prime the kernel: the first packet through the stack, the server's answer back.
    in_ns(r, || {
        backend.test_run_live("offload_bench_kernel", &frame, r0, 1)
    })
    .expect("test run");
    in_ns(s, || {
        let u = std::net::UdpSocket::bind("198.19.0.2:9").expect("bind");
        u.send_to(b"answer", "198.19.0.1:10000").expect("send");
    });
    std::thread::sleep(Duration::from_millis(200));
    let ct_line = sh(&["ip", "netns", "exec", r, "conntrack", "-L", "-p", "udp"]);
    eprintln!("kernel conntrack: {}", ct_line.trim());

    // Admit the flow to the XDP offload (our conntrack, masquerade to the same port).
    let mut ct = Table::new(CtConfig::default());
    let mut ft = offload_flowtable(backend);
    let now = Duration::from_secs(1);
    let meta = parse_frame(&frame).unwrap();
    let Outcome::Tracked { id, .. } = ct.process(&meta, 0, now) else {
        panic!("not tracked")
    };
    let range = NatRange::default().with_ports(10000, 10000);
    ct.masquerade(id, "198.19.0.1".parse().unwrap(), 2, &range)
        .unwrap();
    ct.confirm(id, now).unwrap();
    let mut reply = vec![];
    PacketBuilder::ethernet2(SERVER_MAC, R_WAN_MAC)
        .ipv4([198, 19, 0, 2], [198, 19, 0, 1], 64)
        .udp(9, 10000)
        .write(&mut reply, b"a")
        .unwrap();
    let _ = ct.process(&parse_frame(&reply).unwrap(), 0, now);
    let eg = |port: u16| Egress {
        port,
        src_mac: if port == 0 { R_LAN_MAC } else { R_WAN_MAC },
        dst_mac: if port == 0 { CLIENT_MAC } else { SERVER_MAC },
        encap: Encap::None,
        mtu: 1500,
    };
    let a = admission(&meta, id, 0, eg(0), eg(1));
    let fid = ft.admit(&mut ct, &a, now).expect("admitted");
    ft.gc(&mut ct, now);
    assert!(
        ft.info(fid, now).is_some_and(|i| i.hw),
        "flow in the XDP map"
    );

    let s0 = in_ns(s, || ifindex_of("s0"));
    let mut kernel = vec![];
    let mut xdp = vec![];
    let mut sink = vec![];
    for round in 0..rounds {
        for (name, prog) in [
            ("kernel", "offload_bench_kernel"),
            ("xdp", "offload_bench"),
            ("sink", "offload_bench_kernel"),
        ] {
            let before = delivered(s);
            let backend = ft.backend();
            // "sink": the frames are injected at s0 itself, to price the receiving end that
            // both paths include.
            let (ns, ifindex) = if name == "sink" { (s, s0) } else { (r, r0) };
            let t = in_ns(ns, || {
                pin(cpu);
                let t = Instant::now();
                backend
                    .test_run_live(prog, &frame, ifindex, packets)
                    .expect("test run");
                t.elapsed()
            });
            // Let the last frames reach the sink.
            std::thread::sleep(Duration::from_millis(200));
            let got = delivered(s) - before;
            let pps = got as f64 / t.as_secs_f64();
            println!(
                "offload_capacity: round={round} path={name} injected={packets} delivered={got} seconds={:.3} pps={:.0} ns_per_pkt={:.0}",
                t.as_secs_f64(),
                pps,
                1e9 / pps
            );
            match name {
                "kernel" => kernel.push(pps),
                "xdp" => xdp.push(pps),
                _ => sink.push(pps),
            }
        }
    }
    let (k, x, z) = (median(&mut kernel), median(&mut xdp), median(&mut sink));
    let router_ns = |pps: f64| 1e9 / pps - 1e9 / z;
    println!(
        "offload_capacity: median kernel_pps={k:.0} xdp_pps={x:.0} ratio={:.2} sink_ns_per_pkt={:.0} router_ns_per_pkt kernel={:.0} xdp={:.0} ratio={:.2} ruleset={ruleset} cpu={cpu}",
        x / k,
        1e9 / z,
        router_ns(k),
        router_ns(x),
        router_ns(k) / router_ns(x)
    );
    let reasons: Vec<String> = ft
        .backend()
        .reasons()
        .into_iter()
        .filter(|r| r.1 > 0)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    println!("offload_capacity: xdp {}", reasons.join(" "));
}
