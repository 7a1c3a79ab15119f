//! `nft-offload run --io af_xdp`: one AF_XDP socket per (interface, queue), worker `w` taking
//! queue `w` of every interface, and the steering program (`nft-xdp`'s `Steer`) on each
//! interface sending it what the dataplane forwards. The kernel keeps ARP, ND, multicast and
//! what is addressed to the router and has a socket there (pings, its own services); the
//! router-addressed traffic no kernel socket takes (replies of masqueraded connections, port
//! forwards, echo replies, ICMP errors) is the dataplane's, as the guard table makes it in
//! AF_PACKET mode. The router's addresses come from the same netlink data `run` routes with
//! and follow its changes.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use nft_engine::{Port, Sent, TxFrame};
use nft_flowtable::FrameSlot;
use nft_io::afpacket::AfPacketStats;
use nft_io::afxdp::{AfXdpConfig, AfXdpSet, AfXdpStats, BusyPoll, RxAction};
use nft_xdp::offload::{ifindex_of, Mode};
use nft_xdp::{Chain, Steer, SteerConfig};

use crate::netlink::Addr;
use crate::run::{
    complete_partial_l4_checksum, is_arp, send_bounded, thread_cpu_ns, Shared, BURST, TICK,
};

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
    /// The interfaces' NAPI settings as they were, put back at detach.
    napi: NapiTuning,
    /// Copy mode: the interfaces' NAPI threads run on the workers' CPUs.
    napi_threads: bool,
}

/// Busy polling's NAPI settings: per interface, `napi_defer_hard_irqs` and
/// `gro_flush_timeout` (sysfs). With both set, a NAPI that a socket with
/// `SO_PREFER_BUSY_POLL` polled stays masked for the timeout: the device (on veth, the
/// sender's `veth_xmit`) does not schedule it in softirq, the worker's next busy poll runs
/// it. If the worker does not come back within the timeout, a timer runs it in softirq (on
/// the worker's CPU) and after `napi_defer_hard_irqs` empty rounds the device schedules it
/// again as usual, so an idle worker may sleep. The old values are written back at exit.
#[derive(Default)]
pub struct NapiTuning {
    saved: Vec<(std::path::PathBuf, String)>,
}

/// `gro_flush_timeout` (ns) and `napi_defer_hard_irqs` while busy polling: the values the
/// kernel's busy polling documentation starts from.
const GRO_FLUSH_TIMEOUT_NS: u32 = 200_000;
const NAPI_DEFER_HARD_IRQS: u32 = 2;
/// A worker's nice value when NAPI threads share its CPU (copy mode): above theirs (0), so the
/// worker takes the CPU whenever it has frames to forward and they fill its RX rings while it
/// waits, instead of filling rings it has no time to empty; not so far above that the NAPI
/// threads starve while it has work (they get a quarter of the CPU then).
const WORKER_NICE_WITH_NAPI_THREADS: i32 = -5;

impl NapiTuning {
    /// Sets the busy-polling values on each of `names`, keeping the old ones. An interface
    /// without the files (an old kernel) is skipped with a warning: busy polling then
    /// competes with the softirq but still works.
    pub fn apply(names: &[&str]) -> NapiTuning {
        let mut t = NapiTuning::default();
        for name in names {
            for (file, value) in [
                ("napi_defer_hard_irqs", NAPI_DEFER_HARD_IRQS),
                ("gro_flush_timeout", GRO_FLUSH_TIMEOUT_NS),
            ] {
                let path = std::path::Path::new("/sys/class/net").join(name).join(file);
                let old = match std::fs::read_to_string(&path) {
                    Ok(v) => v.trim().to_string(),
                    Err(e) => {
                        eprintln!(
                            "nft-offload: {}: {e} (busy polling without it)",
                            path.display()
                        );
                        continue;
                    }
                };
                match std::fs::write(&path, value.to_string()) {
                    Ok(()) => t.saved.push((path, old)),
                    Err(e) => eprintln!("nft-offload: {}: {e}", path.display()),
                }
            }
        }
        t
    }

    /// Copy mode on a device whose XDP runs in its own NAPI (native mode; on veth the NAPI
    /// is scheduled by the sender's `veth_xmit`, on the sender's CPU): makes the NAPI threaded
    /// (sysfs `threaded`) and pins its kernel threads to `cpus`, the workers' CPUs. The XDP
    /// program and the copy into the UMEM then run beside the worker, as a kernel router's
    /// receive work would, instead of on whichever CPU sent the frame, and compete with the
    /// worker under the scheduler rather than preempting it as a softirq would. The worker
    /// runs at a higher priority ([`WORKER_NICE_WITH_NAPI_THREADS`]), so that under overload
    /// frames mostly wait (and are dropped) in the device's queue before any receive work is
    /// spent on them, rather than in a full RX ring after it.
    /// Returns the threads pinned per interface.
    pub fn pin_napi_threads(
        &mut self,
        names: &[&str],
        cpus: &nix::sched::CpuSet,
    ) -> Vec<(String, Vec<i32>)> {
        let mut out = vec![];
        for name in names {
            let path = std::path::Path::new("/sys/class/net")
                .join(name)
                .join("threaded");
            let Ok(old) = std::fs::read_to_string(&path) else {
                continue;
            };
            let before = napi_threads(name);
            if let Err(e) = std::fs::write(&path, "1") {
                eprintln!("nft-offload: {}: {e}", path.display());
                continue;
            }
            self.saved.push((path, old.trim().to_string()));
            // the kernel threads are made by the write itself; ours are those that are new
            let pids: Vec<i32> = napi_threads(name)
                .into_iter()
                .filter(|p| !before.contains(p))
                .collect();
            for &pid in &pids {
                if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(pid), cpus)
                {
                    eprintln!("nft-offload: {name}: pinning NAPI thread {pid}: {e}");
                }
            }
            out.push((name.to_string(), pids));
        }
        out
    }

    /// Writes the old values back (once).
    pub fn restore(&mut self) {
        for (path, old) in self.saved.drain(..) {
            // the interface may be gone by now: nothing to restore then
            let _ = std::fs::write(&path, &old);
        }
    }
}

/// How many receive queues `ifname` has (sysfs `queues/rx-*`; 1 when unknown).
fn rx_queues(ifname: &str) -> usize {
    let dir = std::path::Path::new("/sys/class/net")
        .join(ifname)
        .join("queues");
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(1)
        .max(1)
}

/// The kernel threads of `ifname`'s threaded NAPIs: named `napi/IFNAME-ID` (the task name
/// cut at 15 bytes).
fn napi_threads(ifname: &str) -> Vec<i32> {
    let mut want = format!("napi/{ifname}-");
    want.truncate(15);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        comm.trim_end().starts_with(&want).then_some(pid)
    })
    .collect()
}

impl Drop for NapiTuning {
    fn drop(&mut self) {
        self.restore();
    }
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
        self.napi.restore();
    }

    /// A reload gave a flowtable `flags offload` while the sockets receive: the XDP offload
    /// `x` (loaded, attached nowhere) takes over each of `devices` (flowtable port, device)
    /// from its steering program, which it then chains (`XdpOffload::take_over`: one atomic
    /// switch of the device's XDP link, no frame lost or seen twice). Its chain joins the
    /// others, emptied first at exit. A device whose steering already runs behind another
    /// offload, or that `run` does not steer, stays as it is (its flows in software).
    pub fn put_behind(
        &mut self,
        x: &mut nft_xdp::XdpOffload,
        devices: &[(u16, String)],
        req: nft_xdp::offload::ModeRequest,
    ) -> Vec<nft_xdp::offload::Attachment> {
        let Some(mut chain) = x.take_chain() else {
            return vec![];
        };
        let mut out = vec![];
        for (port, dev) in devices {
            match self.steers.iter_mut().find(|s| s.device() == dev) {
                Some(steer) => out.push(x.take_over(*port, steer, &mut chain, req)),
                None => out.push(nft_xdp::offload::Attachment {
                    port: *port,
                    device: dev.clone(),
                    ifindex: ifindex_of(dev),
                    mode: None,
                    warning: Some(format!(
                        "{dev}: no AF_XDP steering to put the XDP offload in front of; its flows stay in software"
                    )),
                }),
            }
        }
        self.chains.push(chain);
        out
    }

    /// Per interface: where the frames went (`nft-xdp`'s steering reasons).
    pub fn counters(&self) -> Vec<(String, Vec<(&'static str, u64)>)> {
        self.steers
            .iter()
            .map(|s| (s.device().to_string(), s.counters()))
            .collect()
    }
}

/// Where the interfaces' receive work (their NAPI: the XDP program, in copy mode the copy
/// into the UMEM) runs: `run --napi`.
/// (No doc comments on the values: see `run::XdpMode`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Napi {
    // Zero-copy sockets: preferred busy polling by the workers. Copy mode: the kernel's
    // placement (on veth, the sending CPU's softirq).
    Auto,
    // As `Auto`, but in copy mode the devices' NAPI threads run pinned to the workers' CPUs.
    Threads,
    // The kernel's placement always.
    Kernel,
}

/// Opens the sockets, one [`AfXdpSet`] per worker (queue `w` of every interface on one
/// shared UMEM, so a frame leaves by another interface from where it arrived), and attaches
/// the steering programs. A worker count above an interface's queue count fails at bind,
/// naming the queue. On an interface that has the XDP offload (a device of one of `chains`),
/// the steering program runs after the offload program, in its mode, instead of being
/// attached.
pub fn open(
    ifs: &[(String, String)],
    workers: usize,
    addrs: &[Addr],
    mut chains: Vec<Chained>,
    napi: Napi,
) -> Result<(Vec<AfXdpSet>, Steering)> {
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
    let names: Vec<&str> = ifs.iter().map(|(_, n)| n.as_str()).collect();
    for name in &names {
        let queues = rx_queues(name);
        if queues > workers {
            eprintln!(
                "nft-offload: warning: {name} has {queues} receive queues and {workers} \
                 worker(s): the steering program passes what arrives on queues {workers}.. \
                 to the kernel (no socket there), which does not forward it; run with \
                 --workers {queues} (or ethtool -L {name} combined {workers})"
            );
        }
    }
    let mut steering = Steering {
        chains: chains.into_iter().map(|c| c.chain).collect(),
        steers,
        napi: NapiTuning::default(),
        napi_threads: false,
    };
    steering.set_locals(addrs)?;
    // A whole RX ring of frames receiving per interface (the fill ring as deep as the RX
    // ring), and as many again for what is being sent: the ring absorbs a burst while the
    // worker is away (a TCP window sent back to back, the worker preempted). Each frame the
    // ring cannot take is lost before the worker sees it (`rx_ring_full`), and with TCP every
    // one of them is a retransmission.
    let defaults = AfXdpConfig::default();
    let rx_frames = defaults.rx_size.min(defaults.fill_size);
    let cfg = AfXdpConfig {
        rx_frames,
        frame_count: defaults.frame_count.max(2 * rx_frames * ifs.len() as u32),
        busy_poll: (napi != Napi::Kernel).then_some(BusyPoll {
            usecs: BUSY_POLL_USECS,
            budget: BURST as u16,
        }),
        ..defaults
    };
    let mut all = Vec::with_capacity(workers);
    for w in 0..workers {
        let ports: Vec<(&str, u32)> = ifs.iter().map(|(_, n)| (n.as_str(), w as u32)).collect();
        let names: Vec<&str> = ports.iter().map(|p| p.0).collect();
        let set = AfXdpSet::open(&ports, &cfg)
            .with_context(|| format!("opening AF_XDP on {} queue {w}", names.join(", ")))?;
        for (i, steer) in steering.steers.iter_mut().enumerate() {
            steer
                .set_socket(w as u32, &set.fd(i))
                .map_err(|e| anyhow!("{e}"))?;
        }
        all.push(set);
    }
    // Copy-mode sockets (veth, generic XDP) have no NAPI to busy poll: since Linux 6.13 the
    // kernel gives a socket its NAPI id at bind, in zero-copy mode only. Deferring the
    // device's interrupts would then only delay its softirq, so the settings stay.
    if napi != Napi::Kernel && all.iter().all(AfXdpSet::zero_copy) {
        steering.napi = NapiTuning::apply(&names);
        eprintln!("nft-offload: busy polling {}", names.join(", "));
    } else if napi == Napi::Threads {
        // native XDP only: in generic mode the program runs in the receive softirq, after RPS
        let native: Vec<&str> = steering
            .steers
            .iter()
            .filter(|s| s.mode() == Mode::Native && !s.chained())
            .map(Steer::device)
            .collect();
        if let Ok(cpus) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
            let mut t = NapiTuning::default();
            for (name, pids) in t.pin_napi_threads(&native, &cpus) {
                eprintln!("nft-offload: {name}: threaded NAPI {pids:?} on the workers' CPUs");
                steering.napi_threads |= !pids.is_empty();
            }
            steering.napi = t;
        }
    }
    Ok((all, steering))
}

/// `SO_BUSY_POLL`: the worker's busy polls never block, any non-zero value will do.
const BUSY_POLL_USECS: u32 = 20;

/// Empty busy polls in a row before a busy-polling worker sleeps in `poll` (the NAPI timer
/// or the device wakes it): spinning while frames keep coming, sleeping when they stop.
const IDLE_POLLS: u32 = 16;

/// After `poll` wakes a worker (not busy polling), how long it lets frames gather before it
/// takes them: interrupt coalescing. Below saturation a wakeup per frame or two would cost a
/// `poll`, a lock, a `sendto` and, on veth, an IPI to the receiver's CPU each; waiting this
/// long turns them into bursts, for this much latency. At saturation the worker never
/// sleeps and never waits.
const COALESCE: Duration = Duration::from_micros(50);

/// A worker on one [`AfXdpSet`]: each burst (up to [`BURST`] frames per interface, all
/// interfaces at once) is lent from the UMEM and run through the router in place
/// (`FrameSlot<&mut [u8]>`). A fast-path hit is rewritten where it arrived and leaves by its
/// egress from the same UMEM frame, with no copy; a slow-path frame is copied out (the engine
/// owns what it keeps or rewrites), its UMEM frame recycled, and what the slow path sends is
/// copied into free UMEM frames. One lock, one wakeup per sending interface, per burst.
///
/// Within one burst the fast path's frames leave before the slow path's. Mostly they are of
/// different connections; a frame of an offloaded connection the fast path punts (too big
/// for the egress MTU, TTL expiring, a FIN) leaves after the same burst's fast-path frames,
/// even those behind it: a reordering inside one burst, rare, and one TCP tolerates.
pub fn worker(
    shared: Arc<Shared>,
    mut set: AfXdpSet,
    wid: usize,
    resolve: mpsc::Sender<(usize, IpAddr)>,
) {
    let n_if = set.len();
    let mut sent: Vec<Sent> = Vec::with_capacity(BURST * n_if);
    let mut slow: Vec<Vec<Vec<u8>>> = vec![vec![]; n_if];
    let mut unresolved: Vec<(usize, IpAddr)> = vec![];
    // per burst, kept to reuse their memory: each slot's frame of the lent ones, each slot's
    // span after the router, frames dropped per interface
    let mut of: Vec<usize> = Vec::with_capacity(BURST * n_if);
    let mut spans: Vec<(usize, usize, Option<u16>)> = Vec::with_capacity(BURST * n_if);
    let mut dropped = vec![0u64; n_if];
    let mut last_tick = Instant::now();
    let mut last_stats = Instant::now();
    let mut ring_full: Vec<u64> = vec![0; n_if];
    let busy = set.busy_polling();
    let threads = shared
        .steering
        .as_ref()
        .and_then(|s| s.lock().ok().map(|s| s.napi_threads))
        .unwrap_or(false);
    if threads {
        let tid = nix::unistd::gettid().as_raw();
        if let Err(e) = nft_io::afxdp::set_nice(tid, WORKER_NICE_WITH_NAPI_THREADS) {
            eprintln!("nft-offload: worker {wid}: nice: {e}");
        }
    }
    let local = shared.local_senders.clone();
    let mut idle = 0u32;
    while !shared.stop.load(Ordering::Relaxed) {
        if busy {
            // run the interfaces' NAPI here, a burst's worth each; sleep only after a few
            // empty rounds
            if set.busy_poll() {
                idle = 0;
            } else {
                idle += 1;
                if idle >= IDLE_POLLS {
                    idle = 0;
                    let _ = set.poll(Duration::from_millis(20));
                }
            }
        } else if !(0..n_if).any(|p| set.rx_ready(p)) {
            let t = Instant::now();
            // A link going down can make poll return at once with nothing to read: do not spin.
            match set.poll(Duration::from_millis(20)) {
                Ok(true) => std::thread::sleep(COALESCE),
                _ if t.elapsed() < Duration::from_millis(1) => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                _ => {}
            }
        }
        let now = shared.now();
        let mut ran = false;
        let n = set.rx_lend(BURST, |lent| {
            ran = true;
            let mut slots: Vec<FrameSlot<&mut [u8]>> = Vec::with_capacity(lent.len());
            // for each slot, the frame of `lent` it stands for
            of.clear();
            for (k, l) in lent.iter_mut().enumerate() {
                // ARP is the kernel's (the steering program passes it; never ours to route)
                if is_arp(l.frame.data()) {
                    continue;
                }
                let port = l.port as u16;
                if local.get(l.port) == Some(&true) {
                    complete_partial_l4_checksum(l.frame.data_mut());
                }
                let (chunk, start, len) = l.frame.parts_mut();
                if let Some(s) = FrameSlot::lend(port, chunk, start, len) {
                    slots.push(s);
                    of.push(k);
                }
            }
            {
                let mut st = shared.lock();
                sent.clear();
                st.router.process_slots(&mut slots, now, &mut sent);
                unresolved.extend(st.router.take_unresolved());
            }
            spans.clear();
            spans.extend(slots.iter().map(|s| (s.headroom(), s.len(), s.egress())));
            drop(slots);
            for s in sent.drain(..) {
                match s {
                    Sent::Slots { start, end } => {
                        for slot in start..end {
                            let (Some(&k), Some(&(start, len, Some(egress)))) =
                                (of.get(slot), spans.get(slot))
                            else {
                                continue;
                            };
                            if let Some(l) = lent.get_mut(k) {
                                if l.frame.set_span(start, len) {
                                    l.action = RxAction::TransmitOn(usize::from(egress));
                                }
                            }
                        }
                    }
                    // the kernel has its own (steered) frames; nothing goes to the host
                    Sent::Frame(f) => queue_slow(&mut slow, f),
                }
            }
        });
        if !ran {
            if n == 0 && last_tick.elapsed() < TICK && !shared.kick.swap(false, Ordering::Relaxed) {
                maybe_stats(&shared, &mut set, wid, &mut last_stats);
                continue;
            }
            // an empty burst: timers, and frames held for a neighbour that is now known
            let mut st = shared.lock();
            sent.clear();
            st.router.process_slots::<Vec<u8>>(&mut [], now, &mut sent);
            unresolved.extend(st.router.take_unresolved());
            drop(st);
            for s in sent.drain(..) {
                if let Sent::Frame(f) = s {
                    queue_slow(&mut slow, f);
                }
            }
        }
        last_tick = Instant::now();
        for u in unresolved.drain(..) {
            let _ = resolve.send(u);
        }
        // what the slow path sends, copied into free UMEM frames, in order per interface
        dropped.fill(0);
        for (e, q) in slow.iter_mut().enumerate() {
            if q.is_empty() {
                continue;
            }
            let frames: Vec<&[u8]> = q.iter().map(Vec::as_slice).collect();
            dropped[e] += send_bounded(&frames, |f| set.tx_burst(e, f)) as u64;
            q.clear();
        }
        // fast-path frames that met a full TX ring
        for (e, rf) in ring_full.iter_mut().enumerate() {
            let now_full = set.tx_ring_full(e);
            dropped[e] += now_full - *rf;
            *rf = now_full;
        }
        if dropped.iter().any(|d| *d > 0) {
            let mut st = shared.lock();
            for (a, d) in st.tx_dropped.iter_mut().zip(&dropped) {
                *a += d;
            }
        }
        maybe_stats(&shared, &mut set, wid, &mut last_stats);
    }
    write_stats(&shared, &mut set, wid);
}

/// Queues a frame the slow path sends for its interface (the host's frames are the kernel's).
fn queue_slow(slow: &mut [Vec<Vec<u8>>], f: TxFrame) {
    if let Port::Iface(e) = f.egress {
        if let Some(q) = slow.get_mut(e) {
            q.push(f.data);
        }
    }
}

fn maybe_stats(shared: &Shared, set: &mut AfXdpSet, wid: usize, last: &mut Instant) {
    if last.elapsed() >= Duration::from_millis(200) {
        *last = Instant::now();
        write_stats(shared, set, wid);
    }
}

fn write_stats(shared: &Shared, set: &mut AfXdpSet, wid: usize) {
    shared.worker_cpu_ns[wid].store(thread_cpu_ns(), Ordering::Relaxed);
    let xs: Vec<AfXdpStats> = (0..set.len())
        .map(|p| set.stats(p).unwrap_or_default())
        .collect();
    // sent to a port the set does not have: by `tx_burst` (the set's own count) and by a
    // receive pass (counted on the port the frame came in on)
    let bad = set.tx_bad_port() + xs.iter().map(|s| s.tx_bad_port).sum::<u64>();
    if let Some(c) = shared.tx_bad_port.get(wid) {
        c.store(bad, Ordering::Relaxed);
    }
    let st: Vec<AfPacketStats> = xs.iter().map(as_packet_stats).collect();
    if let Ok(mut io) = shared.io_stats.lock() {
        io[wid] = st;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn napi_placement_argument() {
        use clap::ValueEnum;
        assert_eq!(Napi::from_str("auto", false), Ok(Napi::Auto));
        assert_eq!(Napi::from_str("threads", false), Ok(Napi::Threads));
        assert_eq!(Napi::from_str("kernel", false), Ok(Napi::Kernel));
        assert!(Napi::from_str("softirq", false).is_err());
    }

    #[test]
    fn napi_threads_are_found_by_their_task_name() {
        // no interface has this name: no thread either
        assert!(napi_threads("nft-no-such-if").is_empty());
    }
}
