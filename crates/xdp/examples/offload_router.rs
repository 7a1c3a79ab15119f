//! A router for measuring the XDP offload on a live topology (`/work/shared/livebench`'s
//! `--router-cmd`): the kernel is the slow path (ip_forward on, `$RULESET` loaded with nft) and
//! every second the UDP connections the kernel's conntrack has seen both ways are admitted to a
//! flowtable whose backend is [`XdpOffload`] on `$LAN_IF` and `$WAN_IF`; from then on the
//! program forwards them (NAT, TTL, MACs) and the kernel sees none of their packets.
//!
//! ```sh
//! cargo build --release -p nft-xdp --example offload_router
//! livebench.sh --router-cmd 'exec target/release/examples/offload_router native' ...
//! ```
//!
//! The argument is the mode: `native`, `generic` or `auto`. The far end of each veth gets the
//! `offload_peer` program (the veth rule for redirects), found through `ip -d link`'s
//! `link-netns`. TCP connections stay in the kernel here: admitting them needs their handshake
//! through our conntrack, which the `run` router does.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use nft_conntrack::{Config as CtConfig, NatRange, Outcome, Table};
use nft_flowtable::{Egress, Encap, Mac};
use nft_wire::parse_frame;
use nft_xdp::offload::{monotonic_now, ModeRequest, XdpOffload, XdpOffloadConfig};

mod support;
use support::{admission, offload_flowtable};

fn out(args: &[&str]) -> String {
    match Command::new(args[0]).args(&args[1..]).output() {
        Ok(o) => {
            if !o.status.success() {
                eprintln!(
                    "offload_router: {args:?}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
            String::from_utf8_lossy(&o.stdout).into_owned()
        }
        Err(e) => {
            eprintln!("offload_router: {args:?}: {e}");
            String::new()
        }
    }
}

fn word_after<'a>(s: &'a str, w: &str) -> Option<&'a str> {
    let mut it = s.split_whitespace();
    while let Some(x) = it.next() {
        if x == w {
            return it.next();
        }
    }
    None
}

fn mac(s: &str) -> Option<Mac> {
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .filter_map(|x| u8::from_str_radix(x, 16).ok())
        .collect();
    v.try_into().ok()
}

fn dev_mac(dev: &str) -> Mac {
    mac(&std::fs::read_to_string(format!("/sys/class/net/{dev}/address")).unwrap_or_default())
        .unwrap_or([0; 6])
}

fn dev_mtu(dev: &str) -> u16 {
    std::fs::read_to_string(format!("/sys/class/net/{dev}/mtu"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1500)
}

/// The device towards `addr` and the neighbour's MAC there.
fn route(addr: &str) -> Option<(String, Mac)> {
    let r = out(&["ip", "-o", "route", "get", addr]);
    let dev = word_after(&r, "dev")?.to_string();
    let hop = word_after(&r, "via").unwrap_or(addr).to_string();
    let n = out(&["ip", "neigh", "show", &hop, "dev", &dev]);
    Some((dev, mac(word_after(&n, "lladdr")?)?))
}

/// A kernel conntrack entry: the original and reply tuples (src, dst, sport, dport).
type Tuple4 = (String, String, u16, u16);

fn conntrack_udp() -> Vec<(Tuple4, Tuple4)> {
    let mut v = vec![];
    for line in out(&["conntrack", "-L", "-p", "udp"]).lines() {
        if line.contains("[UNREPLIED]") {
            continue;
        }
        let vals: Vec<&str> = line
            .split_whitespace()
            .filter(|w| {
                w.starts_with("src=")
                    || w.starts_with("dst=")
                    || w.starts_with("sport=")
                    || w.starts_with("dport=")
            })
            .filter_map(|w| w.split_once('=').map(|x| x.1))
            .collect();
        if vals.len() < 8 {
            continue;
        }
        let t = |i: usize| -> Option<Tuple4> {
            Some((
                vals[i].to_string(),
                vals[i + 1].to_string(),
                vals[i + 2].parse().ok()?,
                vals[i + 3].parse().ok()?,
            ))
        };
        if let (Some(o), Some(r)) = (t(0), t(4)) {
            v.push((o, r));
        }
    }
    v
}

fn udp_frame(src: Mac, dst: Mac, t: &Tuple4) -> Option<Vec<u8>> {
    let s: std::net::Ipv4Addr = t.0.parse().ok()?;
    let d: std::net::Ipv4Addr = t.1.parse().ok()?;
    let mut f = vec![];
    PacketBuilder::ethernet2(src, dst)
        .ipv4(s.octets(), d.octets(), 64)
        .udp(t.2, t.3)
        .write(&mut f, b"x")
        .ok()?;
    Some(f)
}

/// Puts `offload_peer` on the far end of veth `dev` (in its namespace), if it is one.
fn attach_peer(backend: &mut XdpOffload, dev: &str) {
    let d = out(&["ip", "-d", "-o", "link", "show", "dev", dev]);
    let Some(ns) = word_after(&d, "link-netns").map(str::to_string) else {
        eprintln!("offload_router: {dev}: no peer namespace found; not a veth?");
        return;
    };
    let Some(peer) = d
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.split_once("@if"))
        .and_then(|(_, i)| i.trim_end_matches(':').parse::<u32>().ok())
    else {
        return;
    };
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            let f =
                std::fs::File::open(format!("/var/run/netns/{ns}")).map_err(|e| e.to_string())?;
            // SAFETY: setns on a valid namespace fd; it changes only this thread's namespace.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err("setns".to_string());
            }
            backend.attach_peer_ifindex(peer).map_err(|e| e.to_string())
        })
        .join()
        .unwrap_or_else(|_| Err("thread".into()))
    });
    match r {
        Ok(()) => eprintln!("offload_router: {dev}: offload_peer on ifindex {peer} in {ns}"),
        Err(e) => eprintln!("offload_router: {dev}: peer program not attached: {e}"),
    }
}

fn main() {
    let mode = match std::env::args().nth(1).as_deref() {
        Some("native") => ModeRequest::Native,
        Some("generic") => ModeRequest::Generic,
        _ => ModeRequest::Auto,
    };
    let lan = std::env::var("LAN_IF").unwrap_or_else(|_| "r0".into());
    let wan = std::env::var("WAN_IF").unwrap_or_else(|_| "r1".into());
    out(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    if let Ok(rs) = std::env::var("RULESET") {
        if std::fs::metadata(&rs).is_ok_and(|m| m.len() > 0) {
            out(&["nft", "-f", &rs]);
        }
    }
    let cfg = XdpOffloadConfig {
        devices: vec![(0, lan.clone()), (1, wan.clone())],
        mode,
        ..XdpOffloadConfig::default()
    };
    let mut backend = match XdpOffload::new(&cfg) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("offload_router: {e}; the kernel forwards alone");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    };
    for a in backend.attachments() {
        match (&a.mode, &a.warning) {
            (Some(m), _) => eprintln!("offload_router: {} ({}): {m}", a.device, a.ifindex),
            (None, Some(w)) => eprintln!("offload_router: warning: {w}"),
            _ => {}
        }
    }
    if mode != ModeRequest::Generic {
        attach_peer(&mut backend, &lan);
        attach_peer(&mut backend, &wan);
    }
    let ports = [lan.clone(), wan.clone()];
    let port_of = |dev: &str| ports.iter().position(|p| p == dev).map(|p| p as u16);
    let mut ft = offload_flowtable(backend);
    let mut ct = Table::new(CtConfig::default());
    // Connections in the flowtable, by original tuple. A flow that left (idle 30 s, as in the
    // kernel) is admitted again at the next poll once the kernel has seen its packets again.
    let mut seen: HashMap<Tuple4, nft_flowtable::FlowId> = HashMap::new();
    let start = Instant::now();
    let mut last_report = Duration::ZERO;
    loop {
        let now = start.elapsed();
        ft.backend_mut().set_clock(now, monotonic_now());
        seen.retain(|_, fid| ft.contains(*fid));
        for (o, r) in conntrack_udp() {
            if seen.contains_key(&o) {
                continue;
            }
            let (Some((in_dev, src_mac)), Some((out_dev, dst_mac))) = (route(&o.0), route(&o.1))
            else {
                continue;
            };
            let (Some(pin), Some(pout)) = (port_of(&in_dev), port_of(&out_dev)) else {
                continue;
            };
            let (Some(of), Some(rf)) = (
                udp_frame(src_mac, dev_mac(&in_dev), &o),
                udp_frame(dst_mac, dev_mac(&out_dev), &r),
            ) else {
                continue;
            };
            let Ok(meta) = parse_frame(&of) else { continue };
            let Outcome::Tracked { id, .. } = ct.process(&meta, 0, now) else {
                continue;
            };
            if r.1 != o.0 || r.3 != o.2 {
                let Ok(a) = r.1.parse() else { continue };
                let range = NatRange::default().with_ports(r.3, r.3);
                let _ = ct.masquerade(id, a, u32::from(pout), &range);
            }
            let _ = ct.confirm(id, now);
            if let Ok(m) = parse_frame(&rf) {
                let _ = ct.process(&m, 0, now);
            }
            let egress = |dev: &str, port: u16, dst: Mac| Egress {
                port,
                src_mac: dev_mac(dev),
                dst_mac: dst,
                encap: Encap::None,
                mtu: dev_mtu(dev),
            };
            let a = admission(
                &meta,
                id,
                pin,
                egress(&in_dev, pin, src_mac),
                egress(&out_dev, pout, dst_mac),
            );
            match ft.admit(&mut ct, &a, now) {
                Ok(fid) => {
                    seen.insert(o, fid);
                }
                Err(e) => eprintln!("offload_router: {o:?} not admitted: {e:?}"),
            }
        }
        ft.gc(&mut ct, now);
        if now >= last_report + Duration::from_secs(5) {
            last_report = now;
            let s = ft.backend().stats();
            let reasons: Vec<String> = ft
                .backend()
                .reasons()
                .into_iter()
                .filter(|r| r.1 > 0)
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            eprintln!(
                "offload_router: flows={} hw_pushed={} map_full={} failed={} {}",
                ft.len(),
                s.pushed,
                s.map_full,
                s.failed,
                reasons.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
