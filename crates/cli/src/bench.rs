//! `nft-offload bench`: in-memory throughput of the dataplane on one core.
//!
//! Both paths are measured the way `run`'s receive loop drives the router: 64 slots made once,
//! refilled with pristine frames for each burst (the copy a NIC's DMA does) and handed to
//! [`Router::process_slots`]. A fast-path hit is rewritten and sent from its slot; a
//! slow-path packet takes its slot's buffer, so its next refill allocates.
//!
//! Instructions per fast-path packet: `scripts/callgrind-fastpath` (or the command `bench
//! --fast-only` prints; `KEEP=DIR` keeps callgrind's file for `callgrind_annotate`); per new
//! connection: `scripts/callgrind-newconn` (`bench --new-only`). docs/measurements.md, "The
//! bench's counts step by step", has where the instructions go and what was tried.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nft_engine::router::{Config, Frame, Router, Sent};
use nft_engine::topology::Topology;
use nft_flowtable::FrameSlot;

use crate::defaults;
use crate::simulate;

/// `nft-offload bench`'s options (its help text is these comments).
#[derive(clap::Args)]
pub struct Args {
    /// Ruleset (nft syntax); the embedded default by default.
    #[arg(short = 'f', long = "file")]
    pub ruleset: Option<std::path::PathBuf>,
    /// Topology (TOML); the embedded home router by default.
    #[arg(long)]
    pub topology: Option<std::path::PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Flows (and packets per pass).
    #[arg(long, default_value_t = 200_000)]
    pub packets: usize,
    /// Measure only the fast path, and print the callgrind command
    /// that counts its instructions per packet.
    #[arg(long)]
    pub fast_only: bool,
    /// Measure only new connections on the slow path (the first pass), and print the
    /// callgrind command that counts their instructions per connection.
    #[arg(long, conflicts_with = "fast_only")]
    pub new_only: bool,
    /// Send the fast path's measured passes in a random order of flows (seeded), as flows
    /// interleave at a router, instead of the order they were admitted in (which reads the
    /// flows' lines in memory order).
    #[arg(long)]
    pub shuffle: bool,
    /// conntrack's limit, which also sizes the flowtable's index; by default twice the
    /// flows rounded up to a power of two.
    #[arg(long)]
    pub conntrack_max: Option<usize>,
}

/// `frames` in a random order (a fixed seed, so runs compare), each copied anew so that the
/// copies lie in memory in the new order: a receive loop reads its ring in order whatever
/// flows the frames belong to.
fn shuffled(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut ix: Vec<usize> = (0..frames.len()).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..ix.len()).rev() {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ix.swap(i, (x % (i as u64 + 1)) as usize);
    }
    ix.iter().map(|&i| frames[i].clone()).collect()
}

/// The default's shape with `n` more rules: the fast path must not care how many rules there
/// are (a hit skips every hook), so its packets/s at 10 and 10,000 rules should match.
fn ruleset_with_rules(n: usize) -> String {
    use std::fmt::Write as _;
    let mut s = String::from(
        "table inet fw {\n\tflowtable ft {\n\t\thook ingress priority 0;\n\t\tdevices = { \"br-lan\", \"wan\" };\n\t\tcounter;\n\t}\n\tchain filler {\n",
    );
    for i in 0..n {
        let _ = writeln!(
            s,
            "\t\tip saddr 10.{}.{}.{} tcp dport {} counter drop",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255,
            1 + i % 65535
        );
    }
    s.push_str(
        "\t}\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t\tmeta l4proto { tcp, udp } flow add @ft\n\t\tct state established,related accept\n\t\tiifname \"wan\" jump filler\n\t\tiifname \"br-lan\" oifname \"wan\" accept\n\t}\n\tchain srcnat {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\toifname \"wan\" masquerade\n\t}\n}\n",
    );
    s
}

/// A 64-byte frame (60 bytes plus the FCS the wire adds): UDP from a LAN client to an
/// Internet server, unique per `i`.
fn frame(topo: &Topology, lan: usize, clients: &[([u8; 6], [u8; 4])], i: usize) -> Vec<u8> {
    let (cmac, cip) = clients[i % clients.len()];
    // 198.19.0.0/16 is off the WAN subnet, so every packet goes to the gateway
    let dst = [198, 19, (i >> 8) as u8, i as u8];
    let b = etherparse::PacketBuilder::ethernet2(cmac, topo.interfaces[lan].mac)
        .ipv4(cip, dst, 64)
        .udp(1024 + (i / 65_536 % 60_000) as u16, 443);
    let mut out = Vec::with_capacity(64);
    let _ = b.write(&mut out, &[0u8; 18]);
    out
}

pub fn run(a: Args) -> Result<()> {
    use std::io::Write as _;
    // written, not printed: `bench | head` closing the pipe ends the run without a panic
    let stdout = std::io::stdout();
    let mut so = stdout.lock();
    let topo = defaults::load_topology(a.topology.as_deref())?;
    let rules = simulate::load_rules(a.ruleset.as_deref(), &topo)?;
    let gen = defaults::gen_config(&topo, 1, 1, vec![])?;
    let lan = topo.interface(&gen.lan.name).map(|i| i.index).unwrap_or(0);
    let clients: Vec<([u8; 6], [u8; 4])> = topo
        .neighbours
        .iter()
        .filter_map(|((i, ip), mac)| match ip {
            std::net::IpAddr::V4(v) if *i == lan => Some((*mac, v.octets())),
            _ => None,
        })
        .collect();
    if clients.is_empty() {
        bail!(
            "the topology has no IPv4 neighbours on {} to send from",
            gen.lan.name
        );
    }
    let n = a.packets.max(1000);
    let frames: Vec<Vec<u8>> = (0..n).map(|i| frame(&topo, lan, &clients, i)).collect();
    let cfg = Config {
        conntrack: nft_conntrack::Config {
            max_entries: a.conntrack_max.unwrap_or(n.next_power_of_two() * 2),
            ..Default::default()
        },
        ..Config::default()
    };
    if a.new_only {
        let mut r = Router::new(
            topo,
            rules,
            Config {
                offload: false,
                ..cfg
            },
        );
        let port = u16::try_from(lan)?;
        let mut slots: Vec<FrameSlot> = (0..BURST)
            .map(|_| FrameSlot::new(port, &frames[0]))
            .collect();
        let mut sent = Vec::with_capacity(BURST);
        let t = Instant::now();
        let k = new_conn_pass(&mut r, port, &frames, &mut slots, &mut sent);
        let per_s = k as f64 / t.elapsed().as_secs_f64();
        let rep = r.report(Duration::from_secs(1));
        writeln!(
            so,
            "slow path, {k} new connections ({} forwarded): {per_s:.0} new connections/s",
            rep.packets_out
        )?;
        writeln!(so,
            "instructions per new connection: valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*new_conn_pass*' \\\n    nft-offload bench --new-only --packets {n}   # then Ir / {k}"
        )?;
        return Ok(());
    }
    let fast_topo = defaults::load_topology(a.topology.as_deref())?;
    let fast_rules = simulate::load_rules(a.ruleset.as_deref(), &fast_topo)?;
    let mut fastp = prepare(fast_topo, fast_rules, cfg.clone(), lan, &frames)?;
    let shuffled_frames = if a.shuffle { shuffled(&frames) } else { vec![] };
    let measured = if a.shuffle { &shuffled_frames } else { &frames };
    if a.fast_only {
        for _ in 0..FAST_PASSES {
            fastp.pass(measured);
        }
        let fast = fastp.result()?;
        writeln!(
            so,
            "fast path, {} offloaded flows, {} packets in {FAST_PASSES} passes{}: {:.0} packets/s",
            fast.flows,
            fast.packets,
            if a.shuffle { " (flows shuffled)" } else { "" },
            fast.pps
        )?;
        writeln!(so,
            "instructions per packet: valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*fast_path_pass*' \\\n    nft-offload bench --fast-only --packets {n}   # then Ir / {}",
            fast.packets
        )?;
        return Ok(());
    }
    // the fast path against ruleset size (only with the default topology, whose interfaces the
    // generated rulesets name)
    let mut by_rules = serde_json::Map::new();
    if a.topology.is_none() {
        // prepared first, then measured in interleaved rounds, so that the machine's load
        // drifting during the run weighs on the three alike
        let mut prepared = vec![];
        for k in [10usize, 1000, 10_000] {
            let t = defaults::load_topology(None)?;
            let names: Vec<String> = t
                .interfaces
                .iter()
                .map(|i| i.name.clone())
                .chain(["lo".to_string()])
                .collect();
            let opts = nft_lang::ruleset::LoadOpts {
                interfaces: Some(names),
                ..Default::default()
            };
            let ast = nft_lang::ruleset::load_str(
                "bench.nft",
                &ruleset_with_rules(k.saturating_sub(6)),
                &opts,
            )
            .map_err(|e| anyhow::anyhow!("{}", e.rendered))?;
            let rs = nft_engine::rules::compile(&ast)?;
            prepared.push((k, prepare(t, rs, cfg.clone(), lan, &frames)?));
        }
        for _ in 0..BY_RULES_ROUNDS {
            for (_, p) in &mut prepared {
                p.pass(measured);
            }
        }
        for (k, p) in &prepared {
            by_rules.insert(k.to_string(), serde_json::json!(p.result()?.pps.round()));
        }
    }
    let bytes_per_conn = nft_flowtable::bytes_per_offloaded_connection(100_000);
    // the slow path alone: offload off, every established packet walks the ruleset
    let cfg = Config {
        offload: false,
        ..cfg
    };
    let mut r = Router::new(topo, rules, cfg);
    let port = u16::try_from(lan)?;
    let mut slots: Vec<FrameSlot> = (0..BURST)
        .map(|_| FrameSlot::new(port, &frames[0]))
        .collect();
    let mut sent = Vec::with_capacity(BURST);
    // the same loop as the fast path's; the slow path takes each slot's buffer, so the next
    // refill allocates, as a slow-path packet may
    let mut pass = |r: &mut Router, now: Duration| -> f64 {
        let t = Instant::now();
        let n = fast_path_pass(r, port, &frames, &mut slots, &mut sent, now);
        n as f64 / t.elapsed().as_secs_f64()
    };
    // first pass: every packet opens a connection (conntrack, the NAT chains, masquerade)
    let new_per_s = pass(&mut r, Duration::from_secs(1));
    let rep = r.report(Duration::from_secs(1));
    let forwarded = rep.packets_out;
    // then the same flows again, established (conntrack hit, NAT rewrite, the ruleset), in
    // rounds of one slow-path pass and one fast-path pass: the best of each, side by side,
    // so that the machine's load drifting during the run weighs on both alike
    let mut pps = 0.0f64;
    for _ in 0..FAST_PASSES {
        pps = pps.max(pass(&mut r, Duration::from_secs(2)));
        fastp.pass(measured);
    }
    let fast = fastp.result()?;
    if a.json {
        let v = serde_json::json!({
            "packets": n,
            "frame_bytes": 64,
            "new_connections_per_s": new_per_s.round(),
            "slow_path_pps": pps.round(),
            "fast_path_pps": fast.pps.round(),
            "fast_path_flows": fast.flows,
            "fast_path_packets": fast.packets,
            "fast_path_pps_by_rules": by_rules,
            "bytes_per_offloaded_connection": bytes_per_conn,
            "first_pass_forwarded": forwarded,
        });
        writeln!(so, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        writeln!(so, "slow path, one core, 64-byte UDP, {n} flows through the ruleset with conntrack and masquerade:")?;
        writeln!(so, "  new connections/s       {:>12.0}", new_per_s)?;
        writeln!(so, "  packets/s (established) {:>12.0}", pps)?;
        writeln!(
            so,
            "fast path (flow offload), the same established flows, {} of them offloaded:",
            fast.flows
        )?;
        writeln!(
            so,
            "  packets/s (established) {:>12.0}   ({:.1}x the slow path)",
            fast.pps,
            fast.pps / pps.max(1.0)
        )?;
        for (k, v) in &by_rules {
            writeln!(
                so,
                "  fast path packets/s with {k:>5} rules: {:>12.0}",
                v.as_f64().unwrap_or(0.0)
            )?;
        }
        writeln!(so, "  memory per offloaded connection (conntrack + flow entry, at 100,000): {bytes_per_conn} bytes")?;
        writeln!(
            so,
            "  ({forwarded} of {n} first packets forwarded; drops {:?})",
            rep.drops
        )?;
    }
    Ok(())
}

struct FastPath {
    pps: f64,
    flows: u64,
    packets: u64,
}

/// A router whose flows are all offloaded, ready for measured passes.
struct Prepared {
    r: Router,
    port: u16,
    slots: Vec<FrameSlot>,
    sent: Vec<Sent>,
    now: Duration,
    before: u64,
    best: f64,
}

impl Prepared {
    /// One measured pass; the best rate so far is kept (the machine is shared).
    fn pass(&mut self, frames: &[Vec<u8>]) {
        let t = Instant::now();
        let n = fast_path_pass(
            &mut self.r,
            self.port,
            frames,
            &mut self.slots,
            &mut self.sent,
            self.now,
        );
        self.best = self.best.max(n as f64 / t.elapsed().as_secs_f64());
    }

    fn result(&self) -> Result<FastPath> {
        let rep = self.r.report(self.now);
        if rep.flows_offloaded == 0 {
            bail!("no flow was offloaded (does the ruleset have a flowtable and `flow add`?): refused {:?}", rep.flows_refused);
        }
        Ok(FastPath {
            pps: self.best,
            flows: rep.flows_offloaded,
            packets: rep.fast_path_packets - self.before,
        })
    }
}

/// The flows opened, answered, assured (UDP is offloaded once conntrack assures it, after a
/// reply and two seconds) and offloaded, before the measured passes.
fn prepare(
    topo: Topology,
    rules: nft_engine::rules::Ruleset,
    cfg: Config,
    lan: usize,
    frames: &[Vec<u8>],
) -> Result<Prepared> {
    let mut r = Router::new(topo, rules, cfg);
    let mut out = Vec::with_capacity(64);
    let mut burst: Vec<Frame> = Vec::with_capacity(32);
    let mut run = |r: &mut Router,
                   frames: &[(usize, Vec<u8>)],
                   now: Duration,
                   keep: &mut Vec<(usize, Vec<u8>)>|
     -> f64 {
        let t = Instant::now();
        for chunk in frames.chunks(32) {
            burst.clear();
            burst.extend(chunk.iter().map(|(i, d)| Frame {
                ingress: *i,
                data: d.clone(),
            }));
            out.clear();
            r.process(&mut burst, now, &mut out);
            for o in &out {
                if let nft_engine::router::Port::Iface(e) = o.egress {
                    keep.push((e, o.data.clone()));
                }
            }
        }
        frames.len() as f64 / t.elapsed().as_secs_f64()
    };
    let lan_frames: Vec<(usize, Vec<u8>)> = frames.iter().map(|d| (lan, d.clone())).collect();
    let mut sent = vec![];
    run(&mut r, &lan_frames, Duration::from_secs(1), &mut sent);
    // answers: the forwarded frames turned around (swapping addresses and ports leaves the
    // checksums as they are)
    let replies: Vec<(usize, Vec<u8>)> = sent
        .into_iter()
        .map(|(e, mut d)| {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&d[0..6]);
            d.copy_within(6..12, 0);
            d[6..12].copy_from_slice(&mac);
            for (a, b) in [(26, 30), (27, 31), (28, 32), (29, 33), (34, 36), (35, 37)] {
                d.swap(a, b);
            }
            (e, d)
        })
        .collect();
    run(&mut r, &replies, Duration::from_millis(1500), &mut vec![]);
    // assured now: `flow add` offloads each flow on this pass
    run(&mut r, &lan_frames, Duration::from_secs(4), &mut vec![]);
    // the timers of second 5 (conntrack and flowtable GC) now, so the passes measure packets
    let now = Duration::from_secs(5);
    r.process(&mut [], now, &mut vec![]);
    let before = r.report(now).fast_path_packets;
    let port = u16::try_from(lan)?;
    let slots: Vec<FrameSlot> = (0..BURST)
        .map(|_| FrameSlot::new(port, &frames[0]))
        .collect();
    Ok(Prepared {
        r,
        port,
        slots,
        sent: Vec::with_capacity(BURST),
        now,
        before,
        best: 0.0,
    })
}

/// Measured passes over the offloaded flows (and, in the full run, rounds of a slow-path and a
/// fast-path pass); the best counts (the machine is shared).
const FAST_PASSES: usize = 3;

/// Interleaved rounds of the fast path against ruleset size: one pass of each ruleset a round.
const BY_RULES_ROUNDS: usize = 5;

/// Frames per burst: `run`'s, as its receive loop hands them to the router.
const BURST: usize = crate::run::BURST;

/// The first pass of [`fast_path_pass`] on a fresh router with offload off: every frame opens
/// a connection. Its own function for callgrind (`bench --new-only`).
#[inline(never)]
pub fn new_conn_pass(
    r: &mut Router,
    port: u16,
    frames: &[Vec<u8>],
    slots: &mut [FrameSlot],
    sent: &mut Vec<Sent>,
) -> usize {
    fast_path_pass(r, port, frames, slots, sent, Duration::from_secs(1))
}

/// One pass of `frames` through [`Router::process_slots`] in bursts of [`BURST`] reused
/// slots: each burst copies pristine frames into the slots (what a NIC's DMA does, as in
/// the flowtable's own bench) and forwards them; nothing allocates once `sent` has grown.
/// Its own function so that callgrind can count just this (`--toggle-collect`). Returns the
/// frames sent.
#[inline(never)]
pub fn fast_path_pass(
    r: &mut Router,
    port: u16,
    frames: &[Vec<u8>],
    slots: &mut [FrameSlot],
    sent: &mut Vec<Sent>,
    now: Duration,
) -> usize {
    for chunk in frames.chunks(slots.len().max(1)) {
        let burst = &mut slots[..chunk.len()];
        // the buffers the slow path sent come back to the slots it took them from, as a
        // driver's transmit completion returns them to its receive ring: no allocation per
        // slow-path frame in this loop (the router's own work is unchanged)
        // (looked for only when a slot is empty: a burst of fast-path hits walks nothing)
        let mut done = sent.iter_mut().filter_map(|x| match x {
            Sent::Frame(tx) => Some(std::mem::take(&mut tx.data)),
            Sent::Slots { .. } => None,
        });
        for (s, f) in burst.iter_mut().zip(chunk) {
            if s.is_empty() {
                if let Some(b) = done.next() {
                    *s = FrameSlot::from_vec(port, b);
                }
            }
            s.refill(port, f);
        }
        sent.clear();
        r.process_slots(burst, now, sent);
    }
    frames.len()
}
