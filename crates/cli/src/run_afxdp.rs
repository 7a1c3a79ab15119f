//! `nft-offload run --io af_xdp`: one AF_XDP socket per (interface, queue), worker `w` taking
//! queue `w` of every interface, and the steering program (`nft-xdp`'s `Steer`) on each
//! interface sending it what the dataplane forwards. The kernel keeps ARP, ND, multicast and
//! what is addressed to the router and has a socket there (pings, its own services); the
//! router-addressed traffic no kernel socket takes (replies of masqueraded connections, port
//! forwards, echo replies, ICMP errors) is the dataplane's, as the guard table makes it in
//! AF_PACKET mode. The router's addresses come from the same netlink data `run` routes with
//! and follow its changes.

use std::net::IpAddr;

use anyhow::{anyhow, Context, Result};
use nft_io::afpacket::AfPacketStats;
use nft_io::afxdp::{AfXdp, AfXdpConfig, AfXdpStats};
use nft_xdp::offload::{ifindex_of, Mode};
use nft_xdp::{Chain, Steer, SteerConfig};

use crate::netlink::Addr;

/// A `flags offload` backend's chain and the devices (ifindex, mode) its program is on.
pub struct Chained {
    pub chain: Chain,
    pub devs: Vec<(u32, Mode)>,
}

/// The steering programs, one per interface `run` owns; dropping detaches them.
pub struct Steering {
    /// Emptied (the offload programs pass to the kernel again) before the steers go.
    chains: Vec<Chain>,
    steers: Vec<Steer>,
}

impl Steering {
    /// Replaces the router's addresses in every program with `addrs` (all of the
    /// namespace's: traffic to any of them is the router's, whatever interface it came in on).
    pub fn set_locals(&mut self, addrs: &[Addr]) -> Result<()> {
        let list: Vec<(Option<u32>, IpAddr)> = addrs.iter().map(|a| (None, a.addr)).collect();
        for s in &mut self.steers {
            s.set_locals(&list)
                .with_context(|| format!("steering on {}", s.device()))?;
        }
        Ok(())
    }

    /// Detaches every program (dropping each `Steer`); the kernel gets all frames again.
    pub fn detach(&mut self) {
        self.chains.clear();
        self.steers.clear();
    }

    /// Per interface: where the frames went (`nft-xdp`'s steering reasons).
    pub fn counters(&self) -> Vec<(String, Vec<(&'static str, u64)>)> {
        self.steers
            .iter()
            .map(|s| (s.device().to_string(), s.counters()))
            .collect()
    }
}

/// Opens the sockets (`[worker][interface]`) and attaches the steering programs. A worker
/// count above an interface's queue count fails at bind, naming the queue. On an interface
/// that has the XDP offload (a device of one of `chains`), the steering program runs after
/// the offload program, in its mode, instead of being attached.
pub fn open(
    ifs: &[(String, String)],
    workers: usize,
    addrs: &[Addr],
    mut chains: Vec<Chained>,
) -> Result<(Vec<Vec<AfXdp>>, Steering)> {
    let mut steers = Vec::with_capacity(ifs.len());
    for (_, name) in ifs {
        let cfg = SteerConfig {
            local_no_socket: true,
            ..SteerConfig::default()
        };
        let ifindex = ifindex_of(name);
        let after = chains.iter_mut().find_map(|c| {
            let mode = c.devs.iter().find(|(i, _)| *i == ifindex)?.1;
            Some((&mut c.chain, mode))
        });
        let s = match after {
            Some((chain, mode)) => {
                let s = Steer::attach_after(name, &cfg, chain, mode).map_err(|e| anyhow!("{e}"))?;
                eprintln!(
                    "nft-offload: {name}: AF_XDP steering after the XDP offload ({mode} mode)"
                );
                s
            }
            None => {
                let s = Steer::attach(name, &cfg).map_err(|e| anyhow!("{e}"))?;
                eprintln!("nft-offload: {name}: AF_XDP steering in {} mode", s.mode());
                s
            }
        };
        steers.push(s);
    }
    let mut steering = Steering {
        chains: chains.into_iter().map(|c| c.chain).collect(),
        steers,
    };
    steering.set_locals(addrs)?;
    let mut all = Vec::with_capacity(workers);
    for w in 0..workers {
        let mut socks = Vec::with_capacity(ifs.len());
        for (i, (_, name)) in ifs.iter().enumerate() {
            let s = AfXdp::open(name, w as u32, &AfXdpConfig::default())
                .with_context(|| format!("opening AF_XDP on {name} queue {w}"))?;
            steering.steers[i]
                .set_socket(w as u32, &s)
                .map_err(|e| anyhow!("{e}"))?;
            socks.push(s);
        }
        all.push(socks);
    }
    Ok((all, steering))
}

/// The backend counters in the shape `stats` reports for every backend.
pub fn as_packet_stats(s: &AfXdpStats) -> AfPacketStats {
    AfPacketStats {
        rx_packets: s.rx_packets,
        rx_drops: s.rx_dropped + s.rx_ring_full,
        tx_packets: s.tx_packets,
        tx_errors: s.tx_invalid + s.tx_too_big,
        ..AfPacketStats::default()
    }
}
