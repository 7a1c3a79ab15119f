//! The control socket of `run` and the commands that talk to it (`list`, `load`, `stats`).
//!
//! Protocol: the client connects to the unix socket (mode 0600), writes one line (the command
//! and its arguments, space-separated) and reads the answer to the end: a first line `ok` or
//! `error`, then the text. One command per connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::run::{load_ruleset_for, preload_xdp, Shared};

pub const DEFAULT_PATH: &str = "/run/nft-offload.sock";

pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    shared: Arc<Shared>,
}

impl Server {
    pub fn bind(path: &Path, shared: Arc<Shared>) -> Result<Server> {
        clear_stale_socket(path)?;
        // created 0600 (not chmod'ed after the fact, which leaves a window)
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(old);
        let listener =
            bound.with_context(|| format!("binding the control socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            shared,
        })
    }

    /// Answers the clients waiting now.
    pub fn serve_pending(&self) {
        while let Ok((conn, _)) = self.listener.accept() {
            let _ = self.serve(conn);
        }
    }

    fn serve(&self, mut conn: UnixStream) -> Result<()> {
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut line = String::new();
        BufReader::new((&mut conn).take(64 * 1024)).read_line(&mut line)?;
        let (ok, text) = match handle(&self.shared, line.trim()) {
            Ok(t) => (true, t),
            Err(e) => (false, e),
        };
        conn.write_all(if ok { b"ok\n" } else { b"error\n" })?;
        conn.write_all(text.as_bytes())?;
        Ok(())
    }
}

/// Makes room for the socket at `path`: nothing there is fine; a socket nobody answers on (left
/// by a router that did not exit cleanly) is removed. Anything else (a regular file, a
/// directory, a symlink, a live socket) is left alone and refused.
fn clear_stale_socket(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("checking {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; not removing it (choose another --control path)",
            path.display()
        );
    }
    if UnixStream::connect(path).is_ok() {
        bail!("{} is in use by a running nft-offload", path.display());
    }
    std::fs::remove_file(path)
        .with_context(|| format!("removing the stale socket {}", path.display()))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn handle(shared: &Shared, line: &str) -> Result<String, String> {
    let words: Vec<&str> = line.split(' ').filter(|w| !w.is_empty()).collect();
    match words.as_slice() {
        ["list", "ruleset"] => {
            let st = shared.lock();
            Ok(nft_lang::print::ruleset(
                &st.ast,
                &nft_lang::print::ListOpts::default(),
            ))
        }
        ["list", "flowtables"] => {
            let st = shared.lock();
            let mut s = String::new();
            for l in st.router.list_flows(shared.now()) {
                s.push_str(&l);
                s.push('\n');
            }
            Ok(s)
        }
        ["list", "conntrack"] => {
            let mut st = shared.lock();
            let now = shared.now();
            // with a flowtable `counter`, the fast path's counts first
            st.router.sync_offload(now);
            // the entries only: the client counts them for the summary on its stderr
            let mut s = String::new();
            for l in st.router.conntrack().list(now) {
                s.push_str(&l);
                s.push('\n');
            }
            Ok(s)
        }
        ["load", path @ ..] if !path.is_empty() => {
            let path = Path::new(line.trim_start()["load".len()..].trim());
            // Everything that takes time is done before the router's lock, while the workers
            // forward: reading and compiling the file, and loading (verifying) the XDP
            // programs a `flags offload` flowtable of it needs. The lock covers the swap.
            let t = Instant::now();
            let (names, have) = {
                let st = shared.lock();
                let names: Vec<String> = st
                    .router
                    .topology()
                    .interfaces
                    .iter()
                    .map(|i| i.name.clone())
                    .collect();
                let have: Vec<(String, String)> = st
                    .xdp
                    .iter()
                    .filter(|x| x.handle.is_some())
                    .map(|x| (x.table.clone(), x.name.clone()))
                    .collect();
                (names, have)
            };
            let (ast, rules) = load_ruleset_for(path, names)?;
            let mut loads = preload_xdp(&rules, &have);
            let prepared = t.elapsed();
            let t = Instant::now();
            let mut st = shared.lock();
            let now = shared.now();
            st.router.replace_ruleset(rules, now);
            st.ast = ast;
            let lines = crate::run::xdp_after_reload(
                &mut st,
                &shared.xdp_env,
                shared.steering.as_deref(),
                &mut loads,
            );
            drop(st);
            let held = t.elapsed();
            // programs loaded for a flowtable that took an idle offload over instead
            drop(loads.ready);
            if let Ok(mut r) = shared.reloads.lock() {
                r.count += 1;
                r.last_prepare_ns = prepared.as_nanos() as u64;
                r.last_lock_held_ns = held.as_nanos() as u64;
                r.xdp_loaded_before_lock += loads.loaded;
                r.xdp_loaded_under_lock += loads.under_lock;
            }
            let mut out = String::new();
            for line in lines {
                eprintln!("nft-offload: {line}");
                out.push_str(&line);
                out.push('\n');
            }
            Ok(out)
        }
        ["stats"] => Ok(stats_text(shared)),
        ["stats", "json"] => Ok(format!("{:#}\n", stats_json(shared))),
        ["stats", "prometheus"] => Ok(stats_prometheus(shared)),
        _ => Err(format!("unknown command {line:?}\n")),
    }
}

/// The counters: per interface, per path, drops by reason, flows, CPU per packet.
pub fn stats_json(shared: &Shared) -> Value {
    let (report, tx_dropped, links, xdp) = {
        let st = shared.lock();
        let xdp: Vec<(String, String, bool, nft_xdp::offload::SharedXdpOffload)> = st
            .xdp
            .iter()
            .filter_map(|x| Some((x.table.clone(), x.name.clone(), x.in_use, x.handle.clone()?)))
            .collect();
        let now = shared.now();
        // each interface's name, and the MAC and MTU the router uses for it now (what it
        // last learnt from netlink)
        let links: Vec<(String, String, u16)> = st
            .router
            .topology()
            .interfaces
            .iter()
            .map(|i| {
                let mac = i.mac.map(|b| format!("{b:02x}")).join(":");
                (i.name.clone(), mac, i.mtu)
            })
            .collect();
        (st.router.report(now), st.tx_dropped.clone(), links, xdp)
    };
    // `flags offload`: what each XDP offload program did with the frames (forwarded, or
    // passed on and why), and what became of the flows pushed to it
    let xdp_offload: Vec<Value> = xdp
        .iter()
        .map(|(table, name, in_use, h)| {
            let x = h.lock();
            let st = x.stats();
            let devices: serde_json::Map<String, Value> = x
                .attachments()
                .iter()
                .map(|a| {
                    (
                        a.device.clone(),
                        json!(a.mode.map_or("none".to_string(), |m| m.to_string())),
                    )
                })
                .collect();
            let frames: serde_json::Map<String, Value> = x
                .reasons()
                .into_iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            json!({
                "table": table,
                "flowtable": name,
                "in_use": in_use,
                "devices": devices,
                "frames": frames,
                "flows": {
                    "pushed": st.pushed,
                    "map_full": st.map_full,
                    "push_failed": st.failed,
                    "removed": st.removed,
                    "active": st.active,
                    "pending": x.pending(),
                },
            })
        })
        .collect();
    let io = shared
        .io_stats
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    let ring_drops = |i: usize| {
        io.iter()
            .filter_map(|w| w.get(i))
            .map(|s| s.rx_drops)
            .sum::<u64>()
    };
    // GSO super-packets AF_PACKET received and sent whole (PACKET_VNET_HDR)
    let gso = |i: usize, tx: bool| {
        io.iter()
            .filter_map(|w| w.get(i))
            .map(|s| if tx { s.tx_gso } else { s.rx_gso })
            .sum::<u64>()
    };
    // frames longer than their V2 ring slot, read whole from the socket's queue
    let copied = |i: usize| {
        io.iter()
            .filter_map(|w| w.get(i))
            .map(|s| s.rx_copied)
            .sum::<u64>()
    };
    // frames sent through the qdisc socket (GSO frames, and those behind them)
    let qdisc = |i: usize| {
        io.iter()
            .filter_map(|w| w.get(i))
            .map(|s| s.tx_qdisc)
            .sum::<u64>()
    };
    let interfaces: Vec<Value> = report
        .interfaces
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (name, mac, mtu) = links.get(i).cloned().unwrap_or_default();
            json!({
                "name": name,
                "mac": mac,
                "mtu": mtu,
                "rx_packets": r.rx_packets,
                "rx_bytes": r.rx_bytes,
                "tx_packets": r.tx_packets,
                "tx_bytes": r.tx_bytes,
                "tx_dropped": tx_dropped.get(i).copied().unwrap_or(0),
                "rx_ring_dropped": ring_drops(i),
                "rx_gso": gso(i, false),
                "tx_gso": gso(i, true),
                "rx_copied": copied(i),
                "tx_qdisc": qdisc(i),
            })
        })
        .collect();
    let mut drops = serde_json::Map::new();
    for (k, v) in &report.drops {
        drops.insert((*k).to_string(), json!(v));
    }
    let txd: u64 = tx_dropped.iter().sum();
    if txd > 0 {
        drops.insert("tx_backpressure".into(), json!(txd));
    }
    let bad: u64 = shared
        .tx_bad_port
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum();
    if bad > 0 {
        drops.insert("tx_bad_port".into(), json!(bad));
    }
    let rd: u64 = (0..links.len()).map(ring_drops).sum();
    if rd > 0 {
        drops.insert("rx_ring_full".into(), json!(rd));
    }
    // frames the receive ring could not take whole (too long for a V3 block, or for a V2 slot
    // with the socket's receive buffer full), skipped rather than forwarded cut short
    let truncated: u64 = io.iter().flatten().map(|s| s.rx_truncated).sum();
    if truncated > 0 {
        drops.insert("rx_truncated".into(), json!(truncated));
    }
    // frames the ring handed over but could not give whole: a slot or block header pointing
    // outside it, or a V2 slot too short for its frame whose whole packet the socket's queue
    // did not hold
    let malformed: u64 = io.iter().flatten().map(|s| s.rx_malformed).sum();
    if malformed > 0 {
        drops.insert("rx_malformed".into(), json!(malformed));
    }
    let cpu_ns: u64 = shared
        .worker_cpu_ns
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum();
    let per_packet = if report.packets_in > 0 {
        cpu_ns as f64 / report.packets_in as f64
    } else {
        0.0
    };
    // --io af_xdp: where each interface's steering program sent the frames, and why
    let steering: serde_json::Map<String, Value> = shared
        .steering
        .as_ref()
        .and_then(|s| s.lock().ok().map(|s| s.counters()))
        .unwrap_or_default()
        .into_iter()
        .map(|(dev, c)| {
            let m: serde_json::Map<String, Value> = c
                .into_iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            (dev, Value::Object(m))
        })
        .collect();
    // per worker: what its sockets received on all interfaces, and its thread's CPU time
    let per_worker: Vec<Value> = (0..shared.workers)
        .map(|w| {
            let rx: u64 = io
                .get(w)
                .map(|ports| ports.iter().map(|s| s.rx_packets).sum())
                .unwrap_or(0);
            let ns = shared
                .worker_cpu_ns
                .get(w)
                .map_or(0, |c| c.load(Ordering::Relaxed));
            json!({ "rx_packets": rx, "cpu_seconds": ns as f64 / 1e9 })
        })
        .collect();
    let reloads = shared.reloads.lock().map(|r| *r).unwrap_or_default();
    json!({
        "uptime_seconds": shared.now().as_secs_f64(),
        "reloads": {
            "count": reloads.count,
            "last_prepare_ns": reloads.last_prepare_ns,
            "last_lock_held_ns": reloads.last_lock_held_ns,
            "xdp_loaded_before_lock": reloads.xdp_loaded_before_lock,
            "xdp_loaded_under_lock": reloads.xdp_loaded_under_lock,
        },
        "steering": steering,
        "xdp_offload": xdp_offload,
        "workers": shared.workers,
        "per_worker": per_worker,
        "interfaces": interfaces,
        "packets_in": report.packets_in,
        "packets_out": report.packets_out,
        "paths": {
            "fast": report.fast_path_packets,
            "slow": report.slow_path_packets,
            "host": report.host_packets,
        },
        // what the fast path handed to the slow path, by reason (a lookup that missed is `miss`)
        "punts": report.fast_path_punts,
        "drops": drops,
        "flows": {
            "offloaded_total": report.flows_offloaded,
            "by_state": report.flows,
        },
        "connections": report.connections,
        "connections_total": report.connections_total,
        "cpu": {
            "worker_seconds": cpu_ns as f64 / 1e9,
            "ns_per_packet": per_packet,
        },
    })
}

pub fn stats_text(shared: &Shared) -> String {
    text_of(&stats_json(shared))
}

/// The text form of a [`stats_json`] object.
fn text_of(v: &Value) -> String {
    let mut s = String::new();
    let n = |x: &Value| x.as_u64().unwrap_or(0);
    s.push_str(&format!(
        "packets in {}, out {}; fast path {}, slow path {}, to the host {}\n",
        n(&v["packets_in"]),
        n(&v["packets_out"]),
        n(&v["paths"]["fast"]),
        n(&v["paths"]["slow"]),
        n(&v["paths"]["host"])
    ));
    if let Some(p) = v["punts"].as_object().filter(|p| !p.is_empty()) {
        s.push_str("fast path punts:");
        for (k, c) in p {
            s.push_str(&format!(" {k} {}", n(c)));
        }
        s.push('\n');
    }
    if let Some(ifs) = v["interfaces"].as_array() {
        for i in ifs {
            s.push_str(&format!(
                "interface {}: rx {} packets {} bytes, tx {} packets {} bytes, tx dropped {}, rx ring dropped {}\n",
                i["name"].as_str().unwrap_or(""),
                n(&i["rx_packets"]),
                n(&i["rx_bytes"]),
                n(&i["tx_packets"]),
                n(&i["tx_bytes"]),
                n(&i["tx_dropped"]),
                n(&i["rx_ring_dropped"])
            ));
        }
    }
    if let Some(d) = v["drops"].as_object() {
        for (k, c) in d {
            s.push_str(&format!("drop {k}: {}\n", n(c)));
        }
    }
    s.push_str(&format!(
        "flows offloaded {}",
        n(&v["flows"]["offloaded_total"])
    ));
    if let Some(f) = v["flows"]["by_state"].as_object() {
        for (k, c) in f {
            s.push_str(&format!(", {k} {}", n(c)));
        }
    }
    s.push('\n');
    if let Some(xs) = v["xdp_offload"].as_array() {
        for x in xs {
            let f = &x["flows"];
            s.push_str(&format!(
                "xdp offload {}: flows pushed {}, map full {}, push failed {}, removed {}, active {}; frames",
                x["flowtable"].as_str().unwrap_or(""),
                n(&f["pushed"]),
                n(&f["map_full"]),
                n(&f["push_failed"]),
                n(&f["removed"]),
                n(&f["active"])
            ));
            if let Some(fr) = x["frames"].as_object() {
                for (k, c) in fr.iter().filter(|(_, c)| n(c) > 0) {
                    s.push_str(&format!(" {k} {}", n(c)));
                }
            }
            s.push('\n');
        }
    }
    let r = &v["reloads"];
    if n(&r["count"]) > 0 {
        s.push_str(&format!(
            "reloads {}; the last: prepared in {:.3} ms, router lock held {:.3} ms; XDP programs loaded before the lock {}, under it {}\n",
            n(&r["count"]),
            n(&r["last_prepare_ns"]) as f64 / 1e6,
            n(&r["last_lock_held_ns"]) as f64 / 1e6,
            n(&r["xdp_loaded_before_lock"]),
            n(&r["xdp_loaded_under_lock"])
        ));
    }
    s.push_str(&format!("connections {}\n", n(&v["connections_total"])));
    s.push_str(&format!(
        "cpu {:.3} s in {} worker(s), {:.0} ns per packet\n",
        v["cpu"]["worker_seconds"].as_f64().unwrap_or(0.0),
        n(&v["workers"]),
        v["cpu"]["ns_per_packet"].as_f64().unwrap_or(0.0)
    ));
    if let Some(ws) = v["per_worker"].as_array().filter(|ws| ws.len() > 1) {
        for (i, w) in ws.iter().enumerate() {
            s.push_str(&format!(
                "worker {i}: rx {} packets, cpu {:.3} s\n",
                n(&w["rx_packets"]),
                w["cpu_seconds"].as_f64().unwrap_or(0.0)
            ));
        }
    }
    s
}

pub fn stats_prometheus(shared: &Shared) -> String {
    prometheus_of(&stats_json(shared))
}

/// The Prometheus form of a [`stats_json`] object.
fn prometheus_of(v: &Value) -> String {
    let n = |x: &Value| x.as_u64().unwrap_or(0);
    let mut s = String::new();
    s.push_str("# TYPE nft_offload_interface_packets_total counter\n");
    if let Some(ifs) = v["interfaces"].as_array() {
        for i in ifs {
            let name = i["name"].as_str().unwrap_or("");
            for (dir, key) in [("rx", "rx_packets"), ("tx", "tx_packets")] {
                s.push_str(&format!(
                    "nft_offload_interface_packets_total{{interface=\"{name}\",direction=\"{dir}\"}} {}\n",
                    n(&i[key])
                ));
            }
        }
        s.push_str("# TYPE nft_offload_interface_bytes_total counter\n");
        for i in ifs {
            let name = i["name"].as_str().unwrap_or("");
            for (dir, key) in [("rx", "rx_bytes"), ("tx", "tx_bytes")] {
                s.push_str(&format!(
                    "nft_offload_interface_bytes_total{{interface=\"{name}\",direction=\"{dir}\"}} {}\n",
                    n(&i[key])
                ));
            }
        }
    }
    s.push_str("# TYPE nft_offload_path_packets_total counter\n");
    for p in ["fast", "slow", "host"] {
        s.push_str(&format!(
            "nft_offload_path_packets_total{{path=\"{p}\"}} {}\n",
            n(&v["paths"][p])
        ));
    }
    s.push_str("# TYPE nft_offload_fast_path_punts_total counter\n");
    if let Some(p) = v["punts"].as_object() {
        for (k, c) in p {
            s.push_str(&format!(
                "nft_offload_fast_path_punts_total{{reason=\"{k}\"}} {}\n",
                n(c)
            ));
        }
    }
    s.push_str("# TYPE nft_offload_drops_total counter\n");
    if let Some(d) = v["drops"].as_object() {
        for (k, c) in d {
            s.push_str(&format!(
                "nft_offload_drops_total{{reason=\"{k}\"}} {}\n",
                n(c)
            ));
        }
    }
    if let Some(xs) = v["xdp_offload"].as_array() {
        s.push_str("# TYPE nft_offload_xdp_frames_total counter\n");
        for x in xs {
            let ft = x["flowtable"].as_str().unwrap_or("");
            if let Some(f) = x["frames"].as_object() {
                for (k, c) in f {
                    s.push_str(&format!(
                        "nft_offload_xdp_frames_total{{flowtable=\"{ft}\",reason=\"{k}\"}} {}\n",
                        n(c)
                    ));
                }
            }
        }
        s.push_str("# TYPE nft_offload_xdp_flows_total counter\n");
        for x in xs {
            let ft = x["flowtable"].as_str().unwrap_or("");
            for k in ["pushed", "map_full", "push_failed", "removed"] {
                s.push_str(&format!(
                    "nft_offload_xdp_flows_total{{flowtable=\"{ft}\",result=\"{k}\"}} {}\n",
                    n(&x["flows"][k])
                ));
            }
        }
        s.push_str("# TYPE nft_offload_xdp_flows gauge\n");
        for x in xs {
            let ft = x["flowtable"].as_str().unwrap_or("");
            s.push_str(&format!(
                "nft_offload_xdp_flows{{flowtable=\"{ft}\"}} {}\n",
                n(&x["flows"]["active"])
            ));
        }
    }
    s.push_str("# TYPE nft_offload_flows gauge\n");
    if let Some(f) = v["flows"]["by_state"].as_object() {
        for (k, c) in f {
            s.push_str(&format!("nft_offload_flows{{state=\"{k}\"}} {}\n", n(c)));
        }
    }
    s.push_str("# TYPE nft_offload_flows_offloaded_total counter\n");
    s.push_str(&format!(
        "nft_offload_flows_offloaded_total {}\n",
        n(&v["flows"]["offloaded_total"])
    ));
    s.push_str("# TYPE nft_offload_reloads_total counter\n");
    s.push_str(&format!(
        "nft_offload_reloads_total {}\n",
        n(&v["reloads"]["count"])
    ));
    s.push_str("# TYPE nft_offload_reload_lock_held_seconds gauge\n");
    s.push_str(&format!(
        "nft_offload_reload_lock_held_seconds {}\n",
        n(&v["reloads"]["last_lock_held_ns"]) as f64 / 1e9
    ));
    s.push_str("# TYPE nft_offload_connections gauge\n");
    s.push_str(&format!(
        "nft_offload_connections {}\n",
        n(&v["connections_total"])
    ));
    s.push_str("# TYPE nft_offload_cpu_seconds_total counter\n");
    s.push_str(&format!(
        "nft_offload_cpu_seconds_total {}\n",
        v["cpu"]["worker_seconds"].as_f64().unwrap_or(0.0)
    ));
    s.push_str("# TYPE nft_offload_cpu_ns_per_packet gauge\n");
    s.push_str(&format!(
        "nft_offload_cpu_ns_per_packet {}\n",
        v["cpu"]["ns_per_packet"].as_f64().unwrap_or(0.0)
    ));
    let ws = v["per_worker"].as_array().cloned().unwrap_or_default();
    s.push_str("# TYPE nft_offload_worker_rx_packets_total counter\n");
    for (i, w) in ws.iter().enumerate() {
        s.push_str(&format!(
            "nft_offload_worker_rx_packets_total{{worker=\"{i}\"}} {}\n",
            n(&w["rx_packets"])
        ));
    }
    s.push_str("# TYPE nft_offload_worker_cpu_seconds_total counter\n");
    for (i, w) in ws.iter().enumerate() {
        s.push_str(&format!(
            "nft_offload_worker_cpu_seconds_total{{worker=\"{i}\"}} {}\n",
            w["cpu_seconds"].as_f64().unwrap_or(0.0)
        ));
    }
    s
}

/// `conntrack -L`'s summary line, which it prints on stderr after the entries.
pub fn conntrack_summary(entries: usize) -> String {
    format!("conntrack v1.4.8 (conntrack-tools): {entries} flow entries have been shown.")
}

/// Client side: sends `line`, prints the answer; exit 1 on an error answer.
pub fn client(path: &Path, line: &str) -> Result<std::process::ExitCode> {
    answer(path, line, |body| print!("{body}"))
}

/// `list conntrack`: the entries on stdout and the summary on stderr, as `conntrack -L`.
pub fn list_conntrack(path: &Path) -> Result<std::process::ExitCode> {
    answer(path, "list conntrack", |body| {
        print!("{body}");
        eprintln!("{}", conntrack_summary(body.lines().count()));
    })
}

/// Sends `line`; an `ok` answer's text goes to `ok`, an error's to stderr (exit 1).
fn answer(path: &Path, line: &str, ok: impl FnOnce(&str)) -> Result<std::process::ExitCode> {
    let mut c = UnixStream::connect(path).with_context(|| {
        format!(
            "connecting to {} (is `nft-offload run` running? --control PATH)",
            path.display()
        )
    })?;
    c.write_all(line.as_bytes())?;
    c.write_all(b"\n")?;
    let mut out = String::new();
    c.read_to_string(&mut out)?;
    let (status, body) = out.split_once('\n').unwrap_or((out.as_str(), ""));
    match status {
        "ok" => {
            ok(body);
            Ok(std::process::ExitCode::SUCCESS)
        }
        "error" => {
            eprint!("{body}");
            if !body.ends_with('\n') {
                eprintln!();
            }
            Ok(std::process::ExitCode::from(1))
        }
        _ => bail!("unexpected answer from {}: {out:?}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Shared;

    /// Asserts that `text` has each of `lines`.
    fn has_lines(text: &str, lines: &[&str]) {
        for line in lines {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nft-offload-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `--control` naming a regular file: the file is left as it was and `run` refuses.
    #[test]
    fn bind_refuses_a_path_that_is_not_a_socket() {
        let dir = temp_dir("ctl-file");
        let path = dir.join("important");
        std::fs::write(&path, b"keep me\n").unwrap();
        let shared = Arc::new(Shared::for_tests(&["lan0"], 1));
        let err = Server::bind(&path, shared).err().expect("bind must fail");
        assert_eq!(
            err.to_string(),
            format!(
                "{} exists and is not a socket; not removing it (choose another --control path)",
                path.display()
            )
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me\n");
        // a directory, and a symlink to a socket, are refused the same way
        let sub = dir.join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(Server::bind(&sub, Arc::new(Shared::for_tests(&["lan0"], 1))).is_err());
        assert!(sub.is_dir());
        let sock = dir.join("real.sock");
        drop(UnixListener::bind(&sock).unwrap());
        let link = dir.join("link.sock");
        std::os::unix::fs::symlink(&sock, &link).unwrap();
        assert!(Server::bind(&link, Arc::new(Shared::for_tests(&["lan0"], 1))).is_err());
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A socket file left behind by a router that is gone is replaced; one that answers is not.
    #[test]
    fn bind_replaces_a_stale_socket_and_refuses_a_live_one() {
        use std::os::unix::fs::FileTypeExt;
        let dir = temp_dir("ctl-sock");
        let path = dir.join("ctl.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_socket());
        let server = Server::bind(&path, Arc::new(Shared::for_tests(&["lan0"], 1))).unwrap();
        // the new socket answers
        let mut c = UnixStream::connect(&path).unwrap();
        c.write_all(b"nonsense\n").unwrap();
        server.serve_pending();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("error\n"), "{answer:?}");
        // a second router on the same path is refused and the first keeps its socket
        let err = Server::bind(&path, Arc::new(Shared::for_tests(&["lan0"], 1)))
            .err()
            .expect("bind must fail");
        assert_eq!(
            err.to_string(),
            format!("{} is in use by a running nft-offload", path.display())
        );
        assert!(UnixStream::connect(&path).is_ok());
        drop(server);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The fast path's punts by reason, in the JSON (empty with no traffic), and each reason
    /// as a line of the text form and a sample of the Prometheus form.
    #[test]
    fn stats_show_the_fast_path_punts() {
        let shared = Shared::for_tests(&["lan0", "wan0"], 1);
        let mut v = stats_json(&shared);
        assert_eq!(v["punts"], json!({}), "{v:#}");
        assert!(!text_of(&v).contains("fast path punts"));
        v["punts"] = json!({"miss": 29755, "tcp_control": 12});
        let text = text_of(&v);
        assert!(
            text.contains("\nfast path punts: miss 29755 tcp_control 12\n"),
            "{text}"
        );
        let prom = prometheus_of(&v);
        has_lines(
            &prom,
            &[
                "# TYPE nft_offload_fast_path_punts_total counter\n",
                "nft_offload_fast_path_punts_total{reason=\"miss\"} 29755\n",
                "nft_offload_fast_path_punts_total{reason=\"tcp_control\"} 12\n",
            ],
        );
    }

    /// Each worker's received packets (its sockets on every interface) and CPU time, in
    /// every form of `stats`; the text lists them only when there is more than one worker.
    #[test]
    fn stats_show_each_worker() {
        let shared = Shared::for_tests(&["lan0", "wan0"], 2);
        {
            let mut io = shared.io_stats.lock().unwrap();
            io[0][0].rx_packets = 10;
            io[0][1].rx_packets = 5;
            io[1][0].rx_packets = 7;
        }
        shared.worker_cpu_ns[1].store(2_500_000_000, Ordering::Relaxed);
        let v = stats_json(&shared);
        assert_eq!(
            v["per_worker"][0],
            json!({"rx_packets": 15, "cpu_seconds": 0.0}),
            "{v:#}"
        );
        assert_eq!(
            v["per_worker"][1],
            json!({"rx_packets": 7, "cpu_seconds": 2.5}),
            "{v:#}"
        );
        let text = stats_text(&shared);
        assert!(
            text.contains("worker 0: rx 15 packets, cpu 0.000 s\n"),
            "{text}"
        );
        assert!(
            text.contains("worker 1: rx 7 packets, cpu 2.500 s\n"),
            "{text}"
        );
        let prom = stats_prometheus(&shared);
        has_lines(
            &prom,
            &[
                "nft_offload_worker_rx_packets_total{worker=\"0\"} 15\n",
                "nft_offload_worker_rx_packets_total{worker=\"1\"} 7\n",
                "nft_offload_worker_cpu_seconds_total{worker=\"1\"} 2.5\n",
            ],
        );
        let one = Shared::for_tests(&["lan0", "wan0"], 1);
        assert!(!stats_text(&one).contains("worker 0:"));
    }

    /// Frames sent to an AF_XDP port the set does not have are a transmit drop reason of
    /// their own in every form of `stats`, beside back-pressure and full receive rings.
    #[test]
    fn stats_show_the_transmit_drop_reasons() {
        let shared = Shared::for_tests(&["lan0", "wan0"], 2);
        // nothing dropped: no transmit drop reason is listed
        let v = stats_json(&shared);
        let drops = v["drops"].as_object().unwrap();
        for k in [
            "tx_bad_port",
            "tx_backpressure",
            "rx_ring_full",
            "rx_truncated",
            "rx_malformed",
        ] {
            assert!(!drops.contains_key(k), "{k} in {v:#}");
        }
        shared.tx_bad_port[0].store(3, Ordering::Relaxed);
        shared.tx_bad_port[1].store(4, Ordering::Relaxed);
        shared.lock().tx_dropped[1] = 5;
        shared.io_stats.lock().unwrap()[1][0].rx_drops = 6;
        shared.io_stats.lock().unwrap()[0][1].rx_truncated = 2;
        shared.io_stats.lock().unwrap()[1][1].rx_truncated = 1;
        shared.io_stats.lock().unwrap()[1][0].rx_malformed = 4;
        let v = stats_json(&shared);
        assert_eq!(v["drops"]["rx_truncated"], json!(3), "{v:#}");
        assert_eq!(v["drops"]["rx_malformed"], json!(4), "{v:#}");
        assert_eq!(v["drops"]["tx_bad_port"], json!(7), "{v:#}");
        assert_eq!(v["drops"]["tx_backpressure"], json!(5), "{v:#}");
        assert_eq!(v["drops"]["rx_ring_full"], json!(6), "{v:#}");
        assert_eq!(v["interfaces"][1]["tx_dropped"], json!(5), "{v:#}");
        let text = stats_text(&shared);
        has_lines(
            &text,
            &[
                "drop tx_bad_port: 7\n",
                "drop tx_backpressure: 5\n",
                "drop rx_ring_full: 6\n",
                "drop rx_truncated: 3\n",
                "drop rx_malformed: 4\n",
            ],
        );
        let prom = stats_prometheus(&shared);
        has_lines(
            &prom,
            &[
                "nft_offload_drops_total{reason=\"tx_bad_port\"} 7\n",
                "nft_offload_drops_total{reason=\"tx_backpressure\"} 5\n",
                "nft_offload_drops_total{reason=\"rx_ring_full\"} 6\n",
                "nft_offload_drops_total{reason=\"rx_truncated\"} 3\n",
                "nft_offload_drops_total{reason=\"rx_malformed\"} 4\n",
            ],
        );
    }
}
