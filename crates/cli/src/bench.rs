//! `nft-offload bench`: in-memory throughput of the dataplane on one core.
//!
//! Both paths are measured the way `run`'s receive loop drives the router: 64 slots made once,
//! refilled with pristine frames for each burst (the copy a NIC's DMA does) and handed to
//! [`Router::process_slots`]. A fast-path hit is rewritten and sent from its slot; a
//! slow-path packet takes its slot's buffer, so its next refill allocates.
//!
//! Instructions per fast-path packet: `scripts/callgrind-fastpath` (or the command `bench
//! --fast-only` prints; `KEEP=DIR` keeps callgrind's file for `callgrind_annotate`); with
//! 100,000 flows, 421 per packet since the memory round below (425 before it, 483 at the
//! start of the round before, 565 at the start of the one before that); at 425: the flowtable's `process_burst` 350, one call a burst (the first stage's
//! parse and hash about 115, the index touch and the stage's setup 15, the look-up 49, the
//! rest of a hit 170: the flow's line, its checks, the rewrite, counting and refresh, the
//! results), clearing the stage's records 3, the router's `process_slots` with the offload
//! wrapper 27 (with timers about 2 more), the refill and this loop 43. Measured step by
//! step this round (each kept step lowered the count, tests green): the flow's line keeping
//! its ports and checksum deltas in wire byte order (the parse takes the frame's port bytes
//! as they are, the look-up compares them, the rewrite copies them and adds the deltas to
//! the checksums as they lie in memory, RFC 1071's byte-order independence), the TTL
//! decremented without a saturating test (parse punts 0 and 1), DSCP behind a flag of the
//! line: 483 -> 470; `decide` handing back the egress's link (one bounds check where two
//! were), the rewrite's start without a saturating subtraction, a 14-byte link header as
//! two overlapping 8-byte moves: 459; the slot's egress one `u32` word (one store, and the
//! router's run key one load): 455; the router's runs found first, then each run's bytes
//! summed: 452; the index's tag compared in place under a mask instead of shifted: 448; the
//! ingress port in the record's link-layer word and the link's (port, encapsulation and MAC
//! in two compares): 440; the TCP-control test reading the record's protocol first: 438; a
//! burst's forwarded frames counted as its frames less its punts, nothing counted per hit:
//! 432; a hit on a line without IPv6 addresses or marks taking the IPv4 rewrite straight
//! (no family test, no cold part): 427; the router's run compared field by field with its
//! first slot: 425. Steps of the round before: the parse writing its record in place, the
//! IPv4 header checksum as five 32-bit words and one divisibility test, the frame's span as
//! two compares, forwarded frames counted once a burst: 565 -> 535; a run of fast-path
//! slots one `Sent::Slots` entry, the refill's copy of a minimum-size frame as two 32-byte
//! moves: 515; the IPv4 look-up stopping at the flow's line, its ingress port checked with
//! the link layer: 508; the record's protocol and family as bytes of their own, the trace's
//! flow noted only when tracing, an IPv4 frame's rewrite as one slice: 486; the key's ports
//! word as one load: 484; main's GSO state in the slot merged: 487; the offload wrapper's
//! run of one port as a plain loop: 485; the router's run keyed by ingress and egress as
//! one word: 483. It was 600 while the router walked a burst forwarded whole frame by
//! frame, 661 while the parse produced a 112-byte struct, 701 while conntrack's GC scanned
//! 64 slots every burst, 862 before the one-line flows, 1,025 before that.
//! Tried and measured worse or no better (callgrind): this round, at 452 the look-up stage
//! by index instead of zipped iterators (455) and its answer stored unconditionally (454),
//! the stage's records built in place by `core::array::from_fn` instead of zeroed first
//! (516: each record went through a copy), at 427 the port, link-layer, MTU and headroom
//! tests as one test with the reason worked out apart (434: the reasons' constants were
//! still set on the hit's path, and more registers spilled), the offload wrapper's run of
//! one port found by `position` (425, no change), the IPv6 hash and look-up as functions
//! of their own out of the stages' loops (425, no change), the destination MAC's word
//! left unmasked by the parse and shifted at the compare (425, no change), the EtherType
//! and IP version compare as a masked 32-bit load (no change: the compiler narrowed it
//! back to the same two loads);
//! also measured this session, fat LTO with one codegen unit (491 here, worse; 5,882 per
//! new connection, better). Rounds before: the table's parts a burst uses borrowed apart
//! once a burst into a context struct (400 -> 423 then), the ingress port checked on its
//! own before the checks of a hit (431 -> 442), the whole parse inlined into the burst's
//! first stage (718), the record without the MAC and with the encapsulation compared as an
//! enum (671), the TCP control-segment punt behind the rare checks' test (583 against
//! 579), `forwarded` counted once a burst less the punts as a separate pass (581 against
//! 579); at 485: the parts a frame's forward reads passed apart by value (no change), the
//! byte count's carry as a branch and the refresh test as one compare (no change), the
//! stage arrays kept in the table between bursts (509), the router's runs counted by slot
//! index (490). Left: the stages' loops still read the table's vectors from memory after
//! each frame's writes (hoisted, they would be spilled to the stack: no fewer
//! instructions), the stage's records zeroed each burst (`memset`, 3 a packet; safe code
//! cannot leave them unset), the look-up's and checks' bounds checks and the punt reasons'
//! constants set on the hit's path; 390 (20 M packets/s) is not reached.
//!
//! Wall-clock at 100,000 flows (issue 4's memory round). At 425 instructions a packet at
//! both 1,000 and 100,000 flows, 1,000 flows ran 20 to 33 M packets/s and 100,000 ran 10 to
//! 15 M: the gap is memory. callgrind's cache simulation (`CACHE=1`) per packet at 100,000
//! flows: 3.7 L1 read misses (3.5 at 1,000 flows, where they hit L2; none at the last
//! level, 32 MiB, for either): the index slot 1.0 (random by hash over 4 MiB: the bench's
//! conntrack limit, 262,144, sizes the index), the flow's line 1.0, the pristine frame the
//! refill copies 1.25 and the frames' vector 0.5; the fast path reads nothing of conntrack.
//! The bench's order is kind to the lines: flows admitted 0..n and sent in the same order
//! read the lines in memory order, which the hardware prefetcher follows, and only the index
//! is random. A router sees its flows interleaved: `--shuffle` sends the passes in a random
//! order of flows (the frames still read in memory order, as from a ring); the start build
//! ran 0.61x its in-order rate that way. Measured (alternating runs of `bench --fast-only`
//! under `nice -n -20`, medians, each comparison in one hold; the machine's other jobs left
//! single runs bimodal, so only many pairs tell): transparent huge pages for the index and
//! the lines (mappings of their own in whole 2 MiB pages, advised `MADV_HUGEPAGE` through
//! `memmap2`, viewed with `bytemuck`; AnonHugePages 12,288 kB in the bench process against
//! 0) 0.97x in order and 0.95x shuffled, 10 pairs each: not kept (this machine is a
//! Firecracker VM: a guest's huge pages over the host's 4 KiB pages are split in the TLB, so
//! the walk is what they could have saved, and the walks were not the cost). Kept: the index
//! slot prefetched (a prefetch instruction, `prefetch-index`, safe code) as the parse hashes
//! each frame, in place of a touching pass of loads after the parse: 1.21x at 100,000 flows
//! (14.9 M -> 18.0 M, 10 pairs), 1.04x at 1,000, 425 -> 418 instructions (a load in the
//! parse would stall it once the reorder window filled; a prefetch does not). Then the
//! lines: read in a second touching pass, 0.91x in order, 1.15x shuffled, 429 instructions:
//! not kept; the look-up split into a probe pass (the first slot whose tag matches, its line
//! prefetched) and a compare pass (the candidate's line; the whole probe again only when it
//! is another key's or none): 1.07x in order, 1.28x shuffled, 0.97x at 1,000 flows, 421
//! instructions: kept; the same with the probe pass skipped below 4,096 lines: 428
//! instructions, no better at 1,000 flows: not kept. Both kept steps against the start
//! build: 1.19x at 100,000 flows (10.9 M -> 13.0 M median, 16 pairs, faster in 14; another
//! hold 1.02x with 12 pairs and one 1.13x with 10), 1.09x at 10,000, 1.00x and 1.12x at
//! 1,000 (two holds); shuffled, 1.40x the first step alone (10.5 M -> 14.6 M). Left: the
//! index is sized for the limit (4 MiB at 19% load here); a shuffled order still costs
//! (the final build: 12.7 M shuffled against 16.9 M in order, 8 alternating pairs).
//! What the index's size costs (issue 4, next round): `--conntrack-max` sets the limit that
//! sizes the index; the same build, 10 alternating pairs at 100,000 flows, 262,144 (4 MiB,
//! 19% load) against 131,072 (2 MiB, 38% load): 22.6 M -> 23.2 M in order (1.03x), 18.8 M
//! -> 20.8 M shuffled (1.11x); at 1,000 flows 2,048 against 1,024, 8 pairs: 34.2 M -> 33.7
//! M (0.98x; 8 and 16 KiB both fit L1 and L2). Left: an index sized from the flows the
//! table may hold rather than conntrack's limit, without admission ever rehashing.
//! Kept since: the index holds exactly five fourths of its keys, not a power of two (2.5
//! MiB, 30% load at 100,000 flows; the home slot by multiply-shift, probes wrap with a
//! compare), and bursts of `run`'s 64: 419 instructions a packet. Against the build before,
//! alternating in one hold: shuffled 1.07x (20 pairs, faster in 14), in order 1.06x (14, 11),
//! 1,000 flows 0.96x (60 pairs: 39% load there against 24%, 0.1 more branch misses a
//! packet). No better: the probe pipelined 8 frames ahead of the compare and rewrite (444
//! instructions, 0.91x shuffled), the compare in the rewrite's loop (446), stages of 64
//! (459), the probe 12 frames behind the parse (426, 0.93x), the first two slots decided by
//! selects (445).
//!
//! Instructions per new connection (the first pass: conntrack, the default's chain runs,
//! masquerade): `scripts/callgrind-newconn` (or the command `bench --new-only` prints); with
//! 20,000 flows, 6,053 (6,116 after the slow path's GSO change, 6,082 before it: the GSO
//! packet handed to `receive` as an argument, not through the router; its output, and the
//! size test of a GSO packet or a reassembled datagram, out of line, so a plain packet pays
//! one compare for each (6,109); the output of a walked packet inlined again into `receive`,
//! its one plain caller, and the IPv4 DF bit read only for a packet too big for its route,
//! 6,051; 6,053 with main merged); before that 6,084, 6,082 with main merged (7,636 at the
//! start of this round): the two
//! chain runs (`forward`, `srcnat`) 2,598 (3,747): rule evaluation 1,023 (1,385), the
//! masquerade binding 566 (894), the rest of what the runs hand over 198 (299), the packet
//! view, the hand-over and the hooks' chain loop 811 (1,169); confirm 469 (558), the NAT
//! rewrite 454 (537), conntrack's lookup and new entry 407, parse 402 (424, and 64 more
//! copying its result, now gone), the route 137 (179), the rest (hook dispatch, link layer,
//! counters, transmit, this loop) about 1,620 (1,780). What took it there: the rule view
//! ([`nft_engine::rules::PktState`]) lives for the walk and a run refreshes only headers and
//! interfaces, and a run's effects are one test (7,636 -> 7,359 with the jump stack kept in
//! the rule state and the rare loads apart); the statements fw4 seldom runs out of the rule
//! loop, which loaded their tables on every run, and admission refusals counted by index (->
//! 7,140); masquerade to one IPv4 address bound in the connection's compact tuples when the
//! tuple as it is, the client's earlier mapping or its own port is free (-207), confirm
//! comparing tuples in place and the packet's protocols read once a walk (-196); the rest in
//! steps of 20 to 70: `run_chain` inlined into its one caller, header, meta and `ct state`
//! loads in the rule loop, the last next hop's MAC remembered, the default route without a
//! hash, a new connection nothing bound NAT for skipping the NAT rewrites, the masquerade
//! candidates' replies built inverted, the hooks a packet's chains may act on worked out once
//! a walk, the parse used where it lies, an option-less IPv4 header's checksum summed unrolled
//! (main's GSO handling, merged on the way, cost 8). Tried and no better (callgrind): an
//! AND/OR filter per prefix length in front of each FIB hash (182 against 179: the miss was
//! not the cost), the source-NAT index compared field by field in `confirm` before its other
//! tuples were (+18), `Rewrite::is_empty` field by field alone (no change until the rewrite's
//! own reads were bounds-checked once).

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
