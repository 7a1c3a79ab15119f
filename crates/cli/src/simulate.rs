//! `nft-offload simulate`: replay a capture through a ruleset and a topology, offline and
//! deterministically, and report what the router did.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nft_engine::counters::Report;
use nft_engine::router::{Config, Frame, Port, Router, TxFrame};
use nft_engine::rules;
use nft_engine::topology::{Encap, Topology};
use nft_lang::ruleset::{load_file, load_str, LoadOpts};

use crate::defaults;

/// `nft-offload simulate`'s options (its help text is these comments).
#[derive(clap::Args)]
pub struct Args {
    /// Ruleset (nft syntax); the embedded fw4-style home router ruleset by default. Rules
    /// name the topology's interfaces.
    #[arg(short = 'f', long = "file")]
    pub ruleset: Option<PathBuf>,
    /// Topology (TOML: interfaces, routes, neighbours); the embedded home router
    /// (examples/home.toml) by default.
    #[arg(long, value_name = "TOML")]
    pub topology: Option<PathBuf>,
    /// Input capture (pcapng, or classic pcap with --iface); generated traffic by default.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// The interface every packet of a classic pcap arrived on (pcapng names its own).
    #[arg(long = "iface", value_name = "IFACE")]
    pub pcap_iface: Option<String>,
    /// Output capture (pcapng), each packet on its egress interface.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Print each packet's walk through hooks, chains and rules.
    #[arg(long)]
    pub trace: bool,
    /// Flows to generate when no capture is given.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub flows: usize,
    /// Seed of the generated traffic.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Disable flow offload: `flow add` is a no-op and every packet takes the slow path.
    /// Output and final conntrack table are the same as with offload; only paths change.
    #[arg(long)]
    pub no_offload: bool,
    /// Print the flowtables and their flows at the end (both tuples, NAT, egress,
    /// packets/bytes, idle time).
    #[arg(long)]
    pub list_flows: bool,
    /// Print the connection table at the end, in `conntrack -L` format.
    #[arg(long)]
    pub list_conntrack: bool,
    /// The connection table's size (`nf_conntrack_max`); 65536 by default.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub conntrack_max: Option<u32>,
    /// Replay only the first N packets, as if the capture stopped there: the listings then
    /// show the connections and flows still open (`[OFFLOAD]`).
    #[arg(short = 'c', long, value_name = "N")]
    pub count: Option<usize>,
}

/// Errors a user can fix (bad files), told apart from bugs for the exit code.
#[derive(Debug)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

fn input(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(InputError(msg.into()))
}

/// The ruleset compiled for the dataplane; interface names (`iif "wan"`, `fwd to "lan"`) are
/// the topology's.
pub fn load_rules(path: Option<&Path>, topo: &Topology) -> Result<rules::Ruleset> {
    // Interface indices are the topology's plus one, as the router numbers `meta iif`; the
    // loopback every router has comes last (no simulated packet arrives on it).
    let mut names: Vec<String> = topo.interfaces.iter().map(|i| i.name.clone()).collect();
    if !names.iter().any(|n| n == "lo") {
        names.push("lo".into());
    }
    let opts = LoadOpts {
        interfaces: Some(names.clone()),
        ..Default::default()
    };
    let ast = match path {
        Some(p) => load_file(p, &opts).map_err(|e| {
            let mut msg = e.rendered.trim_end().to_string();
            if msg.contains("Error: Interface does not exist") {
                // as nft checks the host's interfaces, simulate checks the topology's
                msg.push_str(&format!(
                    "\n(simulate knows the topology's interfaces: {}; --topology FILE for others)",
                    names.join(", ")
                ));
            }
            input(msg)
        })?,
        None => load_str("the default ruleset", defaults::RULESET, &opts)
            .map_err(|e| anyhow!("{}", e.rendered))?,
    };
    if let Some(p) = path {
        let mut known: Vec<String> = topo.interfaces.iter().map(|i| i.name.clone()).collect();
        for i in &topo.interfaces {
            if let Encap::Vlan { parent, .. }
            | Encap::QinQ { parent, .. }
            | Encap::Pppoe { parent, .. } = &i.encap
            {
                if !known.contains(parent) {
                    known.push(parent.clone());
                }
            }
        }
        for w in flowtable_device_warnings(p, &ast, &known) {
            eprintln!("{w}");
        }
    }
    rules::compile(&ast).map_err(|e| {
        input(format!(
            "{}: {e}",
            path.map(|p| p.display().to_string())
                .unwrap_or_else(|| "the default ruleset".into())
        ))
    })
}

/// Warnings for flowtable devices that are none of `known` (the router's interfaces and the
/// ports under its sub-interfaces). The kernel refuses such a ruleset; the dataplane loads it,
/// but nothing arriving on such a device is offloaded, which would otherwise show only as
/// flows never admitted.
pub fn flowtable_device_warnings(
    path: &Path,
    ast: &nft_lang::ast::Ruleset,
    known: &[String],
) -> Vec<String> {
    let mut out = vec![];
    for t in &ast.tables {
        for ft in &t.flowtables {
            for d in &ft.devices {
                if !known.iter().any(|k| k == d) {
                    out.push(format!(
                        "warning: {}: flowtable {} {} {}: device {d:?} is not one of the router's \
                         interfaces ({}); nothing arriving on it is offloaded",
                        path.display(),
                        t.family.name(),
                        t.name,
                        ft.name,
                        known.join(", ")
                    ));
                }
            }
        }
    }
    out
}

/// The topology interface a capture interface name stands for: the interface itself, or
/// the sub-interface (VLAN, QinQ, PPPoE) whose parent port it is.
fn ingress_index(topo: &Topology, name: &str) -> Option<usize> {
    if let Some(i) = topo.interface(name) {
        return Some(i.index);
    }
    topo.interfaces
        .iter()
        .find(|i| match &i.encap {
            Encap::Vlan { parent, .. }
            | Encap::QinQ { parent, .. }
            | Encap::Pppoe { parent, .. } => parent == name,
            Encap::None => false,
        })
        .map(|i| i.index)
}

fn port_name(topo: &Topology, p: Port) -> String {
    match p {
        Port::Host => "host".to_string(),
        Port::Iface(i) => match &topo.interfaces[i].encap {
            // frames of a sub-interface leave on its parent port, tag or session included
            Encap::Vlan { parent, .. }
            | Encap::QinQ { parent, .. }
            | Encap::Pppoe { parent, .. } => parent.clone(),
            Encap::None => topo.interfaces[i].name.clone(),
        },
    }
}

pub fn run(a: Args) -> Result<()> {
    let topo =
        defaults::load_topology(a.topology.as_deref()).map_err(|e| input(format!("{e:#}")))?;
    let rules = load_rules(a.ruleset.as_deref(), &topo)?;
    let mut frames: Vec<nft_io::Frame> = match &a.pcap {
        Some(p) => {
            let iface = a.pcap_iface.clone().unwrap_or_default();
            let mut v = vec![];
            let rd = nft_io::open_capture(p, &iface)
                .map_err(|e| input(format!("{}: {e}", p.display())))?;
            for f in rd {
                match f {
                    Ok(f) => v.push(f),
                    Err(e) if e.is_fatal() => return Err(input(format!("{}: {e}", p.display()))),
                    Err(e) => eprintln!("warning: {}: {e}", p.display()),
                }
            }
            v
        }
        None => {
            let cfg = defaults::gen_config(
                &topo,
                a.seed,
                a.flows,
                if a.topology.is_none() {
                    defaults::default_forwards()
                } else {
                    vec![]
                },
            )?;
            nft_io::generate(&cfg).map_err(|e| anyhow!("{e}"))?.frames
        }
    };
    if let Some(n) = a.count {
        frames.truncate(n);
    }
    // map capture interfaces once
    let mut names: Vec<(String, usize)> = vec![];
    for f in &frames {
        if names.iter().any(|(n, _)| *n == f.iface) {
            continue;
        }
        let Some(i) = ingress_index(&topo, &f.iface) else {
            let known: Vec<&str> = topo.interfaces.iter().map(|i| i.name.as_str()).collect();
            let file = a
                .pcap
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            if f.iface.is_empty() {
                bail!(InputError(format!(
                    "{file}: the capture does not say which interface its packets arrived on \
                     (a classic pcap has no interface names): give --iface NAME, one of {}",
                    known.join(", ")
                )));
            }
            bail!(InputError(format!(
                "{file}: the capture has packets on interface {:?}, which the topology does not \
                 have (it has {}; --topology FILE for another)",
                f.iface,
                known.join(", ")
            )));
        };
        names.push((f.iface.clone(), i));
    }
    let mut cfg = Config {
        trace: a.trace,
        offload: !a.no_offload,
        ..Config::default()
    };
    // conntrack -L shows counters; with a flowtable `counter` they include the fast path's
    cfg.conntrack.accounting = a.list_conntrack;
    if let Some(n) = a.conntrack_max {
        cfg.conntrack.max_entries = n as usize;
    }
    let mut router = Router::new(topo, rules, cfg);
    let mut writer = match &a.output {
        Some(p) => {
            let f =
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            Some(
                nft_io::PcapngWriter::new(BufWriter::new(f))
                    .map_err(|e| anyhow!("{}: {e}", p.display()))?,
            )
        }
        None => None,
    };
    let progress = std::io::stderr().is_terminal() && frames.len() > 20_000;
    let mut out: Vec<TxFrame> = Vec::new();
    let mut last = Duration::ZERO;
    let stdout = std::io::stdout();
    let mut so = stdout.lock();
    for (n, f) in frames.iter().enumerate() {
        let ingress = names
            .iter()
            .find(|(x, _)| *x == f.iface)
            .map(|(_, i)| *i)
            .unwrap_or(0);
        let mut burst = [Frame {
            ingress,
            data: f.data.clone(),
        }];
        out.clear();
        // time never runs backwards for the router, even if the capture does
        last = last.max(f.ts);
        let drops_before = a.trace.then(|| router.counters().drop_map());
        router.process(&mut burst, last, &mut out);
        if let Some(before) = drops_before {
            let lines = router.take_trace();
            for l in &lines {
                writeln!(so, "{l}")?;
            }
            // a frame dropped outside the chains (malformed, no route, ...) shows no verdict:
            // say why; rule and policy drops already show as the chain's verdict
            let id = lines
                .last()
                .and_then(|l| l.strip_prefix("trace id "))
                .and_then(|l| l.split(' ').next())
                .map(str::to_string)
                .unwrap_or_else(|| format!("{:08x}", n + 1));
            for (reason, count) in router.counters().drop_map() {
                if reason != "rule_drop"
                    && reason != "policy_drop"
                    && count > before.get(reason).copied().unwrap_or(0)
                {
                    writeln!(so, "trace id {id} drop {reason}")?;
                }
            }
        }
        if let Some(w) = writer.as_mut() {
            for t in &out {
                let name = port_name(router.topology(), t.egress);
                w.write_packet(&name, f.ts, &t.data, None)
                    .map_err(|e| anyhow!("writing the output capture: {e}"))?;
            }
        }
        if progress && n % 10_000 == 0 {
            eprint!(
                "\r{:>3}% {n}/{} packets",
                n * 100 / frames.len(),
                frames.len()
            );
        }
    }
    if progress {
        eprintln!("\r100% {}/{} packets", frames.len(), frames.len());
    }
    if let Some(w) = writer {
        w.finish()
            .map_err(|e| anyhow!("writing the output capture: {e}"))?;
    }
    // flowtable `counter`: conntrack holds the fast path's counts after a GC pass
    router.sync_offload(last);
    let report = router.report(last);
    if a.json {
        // the final connection table as `conntrack -L` prints it, for comparison with the
        // kernel; `--list-flows` adds the flowtables' listing (stdout stays one JSON object)
        let mut v = serde_json::to_value(&report)?;
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("conntrack".into(), router.conntrack().list(last).into());
            // each line's real seconds left (an offloaded one lists the kernel's day)
            m.insert(
                "conntrack_remaining".into(),
                router.conntrack().list_remaining(last).into(),
            );
            if a.list_flows {
                m.insert("flowtables".into(), router.list_flows(last).into());
            }
        }
        writeln!(so, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    write!(so, "{}", text_report(&report, &a))?;
    if a.list_flows {
        writeln!(so)?;
        for l in router.list_flows(last) {
            writeln!(so, "{l}")?;
        }
    }
    if a.list_conntrack {
        writeln!(so)?;
        let lines = router.conntrack().list(last);
        for l in &lines {
            writeln!(so, "{l}")?;
        }
        // on stderr, as `conntrack -L` prints it
        so.flush()?;
        eprintln!("{}", crate::control::conntrack_summary(lines.len()));
    }
    Ok(())
}

pub fn text_report(r: &Report, a: &Args) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let mut src = match &a.pcap {
        Some(p) => p.display().to_string(),
        None => format!("generated traffic ({} flows, seed {})", a.flows, a.seed),
    };
    if let Some(n) = a.count {
        src.push_str(&format!(", its first {n} packets"));
    }
    let _ = writeln!(s, "nft-offload simulate: {src}");
    let _ = writeln!(
        s,
        "packets: {} in ({} bytes), {} out ({} bytes), {} to the host",
        r.packets_in, r.bytes_in, r.packets_out, r.bytes_out, r.host_packets
    );
    let _ = writeln!(s, "paths: {} slow path, {} fast path, {} flows offloaded ({} flow add requests, {} admitted){}", r.slow_path_packets, r.fast_path_packets, r.flows_offloaded, r.flow_add_requests, r.flows_admitted, if a.no_offload { " [--no-offload]" } else { "" });
    // why `flow add` left a connection in the slow path, by the kernel's admission rules
    reasons_line(&mut s, "flow add refused", &r.flows_refused);
    if !r.flows.is_empty() {
        let by: Vec<String> = r.flows.iter().map(|(k, v)| format!("{v} {k}")).collect();
        let _ = writeln!(s, "flows: {}", by.join(", "));
    }
    reasons_line(&mut s, "fast path punts", &r.fast_path_punts);
    let _ = writeln!(s, "\ninterfaces:");
    for i in &r.interfaces {
        let _ = writeln!(
            s,
            "  {:<10} rx {:>8} packets {:>12} bytes   tx {:>8} packets {:>12} bytes",
            i.name, i.rx_packets, i.rx_bytes, i.tx_packets, i.tx_bytes
        );
    }
    let total: u64 = r.drops.values().sum();
    let _ = writeln!(s, "\ndrops: {total}");
    for (k, v) in &r.drops {
        let _ = writeln!(s, "  {k:<24} {v:>8}");
    }
    if !r.ct_invalid.is_empty() {
        let _ = writeln!(s, "\nct state invalid:");
        for (k, v) in &r.ct_invalid {
            let _ = writeln!(s, "  {k:<24} {v:>8}");
        }
    }
    let _ = writeln!(
        s,
        "\nNAT: {} bindings, {} packets translated",
        r.nat_bindings, r.nat_packets
    );
    let _ = writeln!(
        s,
        "answers: {} ICMP errors, {} TCP resets, {} ARP replies",
        r.icmp_errors_sent, r.tcp_resets_sent, r.arp_replies
    );
    if r.synproxy_synacks_sent + r.synproxy_cookies_valid > 0 {
        let _ = writeln!(
            s,
            "synproxy: {} SYN-ACKs with a cookie, {} good cookies",
            r.synproxy_synacks_sent, r.synproxy_cookies_valid
        );
    }
    let _ = writeln!(
        s,
        "\nconnections: {} live ({} created, {} expired, {} early drops, {} evicted)",
        r.connections_total,
        r.conntrack_new,
        r.conntrack_expired,
        r.conntrack_early_drop,
        r.conntrack_evicted
    );
    for (k, v) in &r.connections {
        let _ = writeln!(s, "  {k:<24} {v:>8}");
    }
    if !r.logs.is_empty() {
        let _ = writeln!(
            s,
            "\nlog: {} lines{}",
            r.log_lines,
            if r.log_lines > r.logs.len() as u64 {
                format!(" (first {} kept)", r.logs.len())
            } else {
                String::new()
            }
        );
        for l in r.logs.iter().take(20) {
            let _ = writeln!(s, "  {l}");
        }
    }
    let _ = writeln!(s, "\ntop rules by hits:");
    for h in r.top_rules.iter().take(10) {
        let _ = writeln!(s, "  {:>8}  {} {}: {}", h.hits, h.table, h.chain, h.rule);
    }
    s
}

/// `LABEL: reason n, reason n` for counts by reason; nothing when there are none.
fn reasons_line(s: &mut String, label: &str, by: &std::collections::BTreeMap<&'static str, u64>) {
    use std::fmt::Write as _;
    if by.is_empty() {
        return;
    }
    let by: Vec<String> = by.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(s, "{label}: {}", by.join(", "));
}
