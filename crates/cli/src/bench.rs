//! `nft-offload bench`: in-memory throughput of the dataplane on one core.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nft_engine::router::{Config, Frame, Router};
use nft_engine::topology::Topology;

use crate::defaults;
use crate::simulate;

pub struct Args {
    pub ruleset: Option<std::path::PathBuf>,
    pub topology: Option<std::path::PathBuf>,
    pub json: bool,
    pub packets: usize,
}

/// A 64-byte frame (60 bytes plus the FCS the wire adds): UDP from a LAN client to an
/// Internet server, unique per `i`.
fn frame(topo: &Topology, lan: usize, clients: &[([u8; 6], [u8; 4])], i: usize) -> Vec<u8> {
    let (cmac, cip) = clients[i % clients.len()];
    // 198.19.0.0/16 is off the WAN subnet, so every packet goes to the gateway
    let dst = [198, 19, (i >> 8) as u8, i as u8];
    let b = etherparse::PacketBuilder::ethernet2(cmac, topo.interfaces[lan].mac).ipv4(cip, dst, 64).udp(1024 + (i / 65_536 % 60_000) as u16, 443);
    let mut out = Vec::with_capacity(64);
    let _ = b.write(&mut out, &[0u8; 18]);
    out
}

pub fn run(a: Args) -> Result<()> {
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
        bail!("the topology has no IPv4 neighbours on {} to send from", gen.lan.name);
    }
    let n = a.packets.max(1000);
    let frames: Vec<Vec<u8>> = (0..n).map(|i| frame(&topo, lan, &clients, i)).collect();
    let cfg = Config { conntrack: nft_conntrack::Config { max_entries: n.next_power_of_two() * 2, ..Default::default() }, ..Config::default() };
    let mut r = Router::new(topo, rules, cfg);
    let mut out = Vec::with_capacity(64);
    let mut burst: Vec<Frame> = Vec::with_capacity(32);
    let mut pass = |r: &mut Router, now: Duration| -> f64 {
        let t = Instant::now();
        for chunk in frames.chunks(32) {
            burst.clear();
            burst.extend(chunk.iter().map(|d| Frame { ingress: lan, data: d.clone() }));
            out.clear();
            r.process(&mut burst, now, &mut out);
        }
        n as f64 / t.elapsed().as_secs_f64()
    };
    // first pass: every packet opens a connection (conntrack, the NAT chains, masquerade)
    let new_per_s = pass(&mut r, Duration::from_secs(1));
    let rep = r.report(Duration::from_secs(1));
    let forwarded = rep.packets_out;
    // second pass: the same flows again, established (conntrack hit, NAT rewrite, the ruleset)
    let pps = pass(&mut r, Duration::from_secs(2));
    if a.json {
        let v = serde_json::json!({
            "packets": n,
            "frame_bytes": 64,
            "new_connections_per_s": new_per_s.round(),
            "slow_path_pps": pps.round(),
            "first_pass_forwarded": forwarded,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("slow path, one core, 64-byte UDP, {n} flows through the ruleset with conntrack and masquerade:");
        println!("  new connections/s       {:>12.0}", new_per_s);
        println!("  packets/s (established) {:>12.0}", pps);
        println!("  ({forwarded} of {n} first packets forwarded; drops {:?})", rep.drops);
    }
    Ok(())
}
