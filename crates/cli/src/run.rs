//! `nft-offload run`: the live router. See `docs/live.md` for the design; in short:
//!
//! * the topology comes from the kernel over rtnetlink (interfaces named in `--interfaces`,
//!   their addresses, the main table's routes, the neighbours) and follows its changes;
//! * workers receive bursts from an I/O backend (AF_PACKET today), run them through one
//!   shared [`Router`] (a lock per burst), and transmit on the egress interfaces; frames for
//!   the router itself are left to the kernel, which has its own copy;
//! * a small kernel nftables table keeps the kernel from answering (RST, port unreachable)
//!   the frames the dataplane owns;
//! * a control socket serves `list`, `load` and `stats`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nft_engine::fib::{NextHop, RouteKind};
use nft_engine::topology::{Encap, Interface, StaticRoute, Topology};
use nft_engine::{Config, Port, Router, Sent};
use nft_flowtable::{FrameSlot, Offload};
use nft_io::afpacket::{
    AfPacket, AfPacketConfig, AfPacketStats, Fanout, FanoutMode, RxInfo, VnetHdr,
};
use nft_lang::ruleset::{load_file, LoadOpts};

use crate::control;
use crate::netlink::{self, Event, KRoute, KRouteKind, Netlink};
use crate::run_afxdp;

/// Frames per interface per burst.
pub(crate) const BURST: usize = 64;
/// Timers (conntrack and flowtable GC) run at least this often, traffic or not.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// Transmit with a full queue (AF_PACKET: the socket's send buffer; AF_XDP: no free UMEM
/// frame or TX slot): at most this many send calls that take nothing per interface and burst,
/// [`TX_RETRY_WAIT`] apart, then the rest of the burst is dropped and counted
/// (`tx_backpressure`). Calls that take some frames do not count (a queue that drains as it
/// is filled is not full), so the calls in all are not bounded by this, the waiting is: at
/// most `TX_TRIES - 1` waits, 150 µs, per interface and burst. Under overload a longer wait
/// only moves the loss to the receive rings, and stalls every other interface's traffic
/// meanwhile.
pub(crate) const TX_TRIES: u32 = 4;
pub(crate) const TX_RETRY_WAIT: Duration = Duration::from_micros(50);

/// Sends `frames` in order with `send`, which returns how many from the front it took (sent,
/// or given up on by the backend and counted there); a call that takes nothing is a full
/// queue, tried again until [`TX_TRIES`] calls have taken nothing. Returns how many frames were not
/// taken: dropped, for the caller to count. The one transmit policy of both backends.
pub(crate) fn send_bounded(frames: &[&[u8]], mut send: impl FnMut(&[&[u8]]) -> usize) -> usize {
    let mut done = 0;
    let mut tries = 0;
    while done < frames.len() {
        let t = send(&frames[done..]).min(frames.len() - done);
        done += t;
        if t == 0 {
            tries += 1;
            if tries >= TX_TRIES {
                break;
            }
            std::thread::sleep(TX_RETRY_WAIT);
        }
    }
    frames.len() - done
}
/// The kernel table that keeps the kernel off the dataplane's frames.
pub const GUARD_TABLE: &str = "nft_offload_run";

/// `nft-offload run`'s options (its help text is these comments).
#[derive(clap::Args)]
pub struct Args {
    /// Ruleset (nft syntax). Rules name interfaces by their kernel names.
    #[arg(short = 'f', long = "file")]
    pub ruleset: PathBuf,
    /// The interfaces to route between, `ROLE=IFNAME,...` (e.g. `lan=eth0,wan=eth1`);
    /// roles are labels, rules match the kernel names.
    #[arg(long)]
    pub interfaces: String,
    /// I/O backend: af_packet or af_xdp.
    #[arg(long, value_enum, default_value_t = Io::AfPacket)]
    pub io: Io,
    /// Worker threads, 1 to 1024 (AF_PACKET fanout by flow hash; one router behind a lock).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub workers: u64,
    /// Control socket path. A stale socket there is replaced; any other file, or a socket
    /// another router answers on, is refused.
    #[arg(long, default_value = control::DEFAULT_PATH)]
    pub control: PathBuf,
    /// Every packet takes the slow path (`flow add` does nothing).
    #[arg(long)]
    pub no_offload: bool,
    /// Do not install the kernel table that keeps the kernel off the dataplane's frames.
    #[arg(long)]
    pub no_guard: bool,
    /// `--io af_xdp`: where the interfaces' receive work (NAPI) runs. auto: busy polled
    /// by the workers with zero-copy sockets, the kernel's placement otherwise; threads:
    /// in copy mode, the devices' NAPI threads pinned to the workers' CPUs; kernel: the
    /// kernel's placement always.
    #[arg(long, value_enum, default_value_t = run_afxdp::Napi::Auto)]
    pub napi: run_afxdp::Napi,
    /// `flags offload`: the XDP mode, auto (native, generic on veth), native or generic.
    #[arg(long, value_enum, default_value_t = XdpMode::Auto)]
    pub xdp_mode: XdpMode,
    /// `--io af_packet`: each socket's receive ring, MiB, in 256 KiB blocks. Default: 2 for
    /// V2 (1 024 frames in 2 KiB slots, about the depth of the kernel's own backlog
    /// (`netdev_max_backlog`): 4 ms of queue at 250 000 frames/s when the router is
    /// overloaded, where 16 MiB (8 192 slots) queued 40 ms), 16 for V3 (256 of iperf3's
    /// super-packets).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub rx_ring_mib: Option<u32>,
    /// `--io af_packet` with `--rx-ring v2`: the bytes of a ring slot, a multiple of 16. A
    /// frame longer than its slot (a GSO super-packet) is read whole from the socket's receive
    /// queue instead, in its place in the ring. 2048: an MTU-sized frame with its headers;
    /// 65632 takes the largest super-packet whole (three to a block).
    #[arg(long, default_value_t = 2048, value_parser = parse_rx_slot)]
    pub rx_slot: u32,
    /// `--io af_packet`: the receive ring's layout. v2: a frame slot each, handed over at
    /// once (a lone ACK or ping waits for nothing). v3: frames packed into blocks (about 54
    /// times as many MTU-sized frames in the same memory), a block handed over when full or
    /// after its retire timer (at least 1 ms: the latency of a lone frame).
    #[arg(long, value_enum, default_value_t = RxRing::V2)]
    pub rx_ring: RxRing,
    /// `--io af_packet`: the receive budget per interface and burst, KiB, besides its 64
    /// frames (0: frames only). 256 KiB: four 64 KB super-packets, 64 MTU-sized frames.
    #[arg(long, default_value_t = 256)]
    pub rx_budget_kib: usize,
}

/// The I/O backends. A backend moves bursts of whole Ethernet frames in and out of one
/// interface; AF_XDP (with its steering program) plugs in here as a second variant.
pub enum Backend {
    AfPacket(AfPacket),
}

impl Backend {
    /// Up to `max` frames to `f`, each with what the ring says of it: whether its TCP/UDP
    /// checksum still has to be completed (a locally made packet with checksum offload), and
    /// its `virtio_net_hdr` (GSO, partial checksum offsets).
    fn rx_burst(&mut self, max: usize, max_bytes: usize, f: impl FnMut(&[u8], RxInfo)) -> usize {
        match self {
            Backend::AfPacket(s) => s.rx_burst_budget(max, max_bytes, f),
        }
    }

    fn rx_ready(&self) -> bool {
        match self {
            Backend::AfPacket(s) => s.rx_ready(),
        }
    }

    /// Sends `frames`, `hdrs[i]` the `virtio_net_hdr` of `frames[i]` (an empty one past its
    /// end).
    fn tx_burst(&mut self, frames: &[&[u8]], hdrs: &[VnetHdr]) -> usize {
        match self {
            Backend::AfPacket(s) => s.tx_burst_vnet(frames, hdrs),
        }
    }

    /// Frames the device dropped on the way out so far.
    fn tx_device_drops(&self) -> u64 {
        match self {
            Backend::AfPacket(s) => s.tx_device_drops(),
        }
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Backend::AfPacket(s) => s.as_fd(),
        }
    }

    fn stats(&mut self) -> AfPacketStats {
        match self {
            Backend::AfPacket(s) => s.stats().unwrap_or_default(),
        }
    }
}

/// Which backend `--io` names (`afpacket` and `afxdp` are accepted too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Io {
    #[value(name = "af_packet", alias = "afpacket")]
    AfPacket,
    #[value(name = "af_xdp", alias = "afxdp")]
    AfXdp,
}

/// `--xdp-mode`: which XDP modes `flags offload` tries. (Its values, like those of the other
/// options' enums, have no doc comments: clap would show them as each value's own help in
/// `--help`, which the option's help already gives.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpMode {
    // native, else generic
    Auto,
    Native,
    Generic,
}

impl From<XdpMode> for nft_xdp::offload::ModeRequest {
    fn from(m: XdpMode) -> Self {
        match m {
            XdpMode::Auto => Self::Auto,
            XdpMode::Native => Self::Native,
            XdpMode::Generic => Self::Generic,
        }
    }
}

/// `--rx-ring`: the AF_PACKET receive ring's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RxRing {
    // TPACKET_V2: a frame slot each
    V2,
    // TPACKET_V3: frames packed into blocks
    V3,
}

/// `lan=eth0,wan=eth1`: (role, kernel interface name). A bare name has no role.
pub fn parse_interfaces(s: &str) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = vec![];
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (role, name) = match part.split_once('=') {
            Some((r, n)) => (r.trim().to_string(), n.trim().to_string()),
            None => (String::new(), part.to_string()),
        };
        if name.is_empty() || name.len() > 15 {
            bail!("--interfaces: bad interface name {name:?}");
        }
        if out.iter().any(|(_, n)| *n == name) {
            bail!("--interfaces: {name} is named twice");
        }
        out.push((role, name));
    }
    if out.is_empty() {
        bail!("--interfaces: name at least one interface (lan=IF,wan=IF)");
    }
    Ok(out)
}

/// Kernel interface numbers to topology indexes, for the interfaces `run` owns.
#[derive(Clone, Debug)]
pub struct Names {
    pub kernel: Vec<u32>,
}

impl Names {
    fn topo(&self, ifindex: u32) -> Option<usize> {
        self.kernel.iter().position(|k| *k == ifindex)
    }
}

fn engine_routes(routes: &[KRoute], names: &Names) -> Vec<StaticRoute> {
    routes
        .iter()
        .filter_map(|r| {
            let kind = match r.kind {
                KRouteKind::Unicast { oif, via } => RouteKind::Unicast(NextHop {
                    ifindex: names.topo(oif)?,
                    via,
                }),
                KRouteKind::Blackhole => RouteKind::Blackhole,
                KRouteKind::Unreachable => RouteKind::Unreachable,
            };
            Some(StaticRoute {
                prefix: r.dst,
                len: r.len,
                kind,
            })
        })
        .collect()
}

/// The engine's topology from a kernel snapshot: the named interfaces (in the order given;
/// their kernel names are the names rules match with `iifname`), their addresses, the routes
/// through them and their neighbours.
pub fn topology(snap: &netlink::Snapshot, ifs: &[(String, String)]) -> Result<(Topology, Names)> {
    let mut interfaces = vec![];
    let mut kernel = vec![];
    for (index, (_, name)) in ifs.iter().enumerate() {
        let l = snap
            .link_by_name(name)
            .ok_or_else(|| anyhow!("no interface named {name:?} in this network namespace"))?;
        let addresses = snap
            .addrs
            .iter()
            .filter(|a| a.ifindex == l.ifindex)
            .map(|a| (a.addr, a.len))
            .collect();
        interfaces.push(Interface {
            index,
            name: name.clone(),
            mac: l.mac,
            addresses,
            mtu: u16::try_from(l.mtu).unwrap_or(u16::MAX),
            encap: Encap::None,
            up: l.up,
            kind: l.kind.clone(),
        });
        kernel.push(l.ifindex);
    }
    let names = Names { kernel };
    let routes = engine_routes(&snap.routes, &names);
    let mut neighbours = HashMap::default();
    for n in &snap.neighbours {
        if let (Some(i), Some(mac)) = (names.topo(n.ifindex), n.mac) {
            neighbours.insert((i, n.ip), mac);
        }
    }
    Ok((
        Topology {
            interfaces,
            routes,
            neighbours,
        },
        names,
    ))
}

/// The ruleset as loaded (for `list ruleset`) and compiled.
pub fn load_ruleset(
    path: &Path,
    topo: &Topology,
) -> Result<(nft_lang::ast::Ruleset, nft_engine::rules::Ruleset), String> {
    load_ruleset_for(
        path,
        topo.interfaces.iter().map(|i| i.name.clone()).collect(),
    )
}

/// [`load_ruleset`] for interfaces `names` (the topology's): needs no router, so a reload
/// reads and compiles the file without holding the router's lock.
pub fn load_ruleset_for(
    path: &Path,
    mut names: Vec<String>,
) -> Result<(nft_lang::ast::Ruleset, nft_engine::rules::Ruleset), String> {
    if !names.iter().any(|n| n == "lo") {
        names.push("lo".into());
    }
    let opts = LoadOpts {
        interfaces: Some(names.clone()),
        ..Default::default()
    };
    let ast = load_file(path, &opts).map_err(|e| e.rendered.trim_end().to_string())?;
    let known: Vec<String> = names.into_iter().filter(|n| n != "lo").collect();
    for w in crate::simulate::flowtable_device_warnings(path, &ast, &known) {
        eprintln!("{w}");
    }
    let rules = nft_engine::rules::compile(&ast).map_err(|e| format!("{}: {e}", path.display()))?;
    if rules.has_tproxy() {
        eprintln!(
            "warning: {}: tproxy: the dataplane has no sockets, so a tproxy rule stops where \
             it is and the packet is forwarded (as the kernel does with no transparent socket); \
             a proxy on this host is not reached",
            path.display()
        );
    }
    Ok((ast, rules))
}

/// What the workers, the netlink thread and the control socket share.
pub struct State {
    pub router: Router,
    pub ast: nft_lang::ast::Ruleset,
    /// Kernel routes and addresses as last announced (the engine gets them converted).
    routes: Vec<KRoute>,
    addrs: Vec<netlink::Addr>,
    /// Frames the transmit side could not hand to the kernel (back-pressure), by interface.
    pub tx_dropped: Vec<u64>,
    /// The flowtables' XDP offloads (`flags offload`).
    pub xdp: Vec<XdpTable>,
}

pub struct Shared {
    pub state: Mutex<State>,
    pub names: Names,
    pub epoch: Instant,
    pub stop: AtomicBool,
    /// Thread CPU time of each worker, in nanoseconds (getrusage RUSAGE_THREAD).
    pub worker_cpu_ns: Vec<AtomicU64>,
    /// Each worker's backend counters, per interface.
    pub io_stats: Mutex<Vec<Vec<AfPacketStats>>>,
    /// `--io af_xdp`, per worker: frames sent to a port its AF_XDP set does not have, dropped
    /// (`tx_bad_port`; no interface's counters can hold them). Never with a sane router.
    pub tx_bad_port: Vec<AtomicU64>,
    pub workers: usize,
    /// `--io af_xdp`: the steering programs.
    pub steering: Option<Arc<Mutex<run_afxdp::Steering>>>,
    /// A neighbour was resolved while frames wait for it: the next worker loop runs a burst
    /// (empty if need be) so they leave now rather than at the next timer tick.
    pub kick: AtomicBool,
    pub xdp_env: XdpEnv,
    /// `--io af_xdp`, per interface: whether its frames may come from this host (a virtual
    /// device: veth, tap; no `device` in sysfs), so their checksums may be partial
    /// ([`complete_partial_l4_checksum`]). A physical NIC's frames come from a wire.
    pub local_senders: Vec<bool>,
    /// The router lock: times taken, times another thread held it, and the nanoseconds spent
    /// waiting then (what `--workers` pays for sharing one router), reported at exit.
    pub lock_taken: AtomicU64,
    pub lock_contended: AtomicU64,
    pub lock_wait_ns: AtomicU64,
    /// What `load` did and how long it held the router's lock (`stats`' `reload`).
    pub reloads: Mutex<ReloadStats>,
}

/// `nft-offload load`: the reloads done, and what the last one cost. The file is read and
/// compiled, and the XDP programs a new `flags offload` flowtable needs are loaded (the
/// verifier), before the router's lock is taken; the lock covers the swap only (the
/// ruleset, the flowtables' backends, attaching the loaded programs).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReloadStats {
    pub count: u64,
    /// The last reload: reading and compiling the file and loading XDP programs, without
    /// the lock.
    pub last_prepare_ns: u64,
    /// The last reload: the router's lock held for the swap.
    pub last_lock_held_ns: u64,
    /// XDP offload programs loaded before the lock was taken, since start.
    pub xdp_loaded_before_lock: u64,
    /// XDP offload programs loaded with the lock held (none was loaded ahead for the
    /// flowtable), since start.
    pub xdp_loaded_under_lock: u64,
}

/// XDP offload programs loaded (verified) ahead of a ruleset swap, for the flowtables it
/// gives `flags offload` ([`preload_xdp`]), and how many the swap had to load itself.
#[derive(Default)]
pub struct XdpLoads {
    pub ready: Vec<Result<nft_xdp::XdpOffload, nft_xdp::offload::XdpOffloadError>>,
    pub loaded: u64,
    pub under_lock: u64,
}

/// The XDP offload programs a swap to `rules` will attach: one per flowtable with `flags
/// offload` that is not among `have` (the (table, name) of the offloads in use, which keep
/// theirs), loaded now, unattached. The verifier takes a good part of a second here: done
/// before the router's lock is taken, the workers go on forwarding meanwhile. A program
/// the swap does not use (the flowtable took an idle offload over) is dropped after it.
pub fn preload_xdp(rules: &nft_engine::rules::Ruleset, have: &[(String, String)]) -> XdpLoads {
    let cfg = nft_xdp::offload::XdpOffloadConfig::default();
    let ready: Vec<_> = rules
        .flowtables
        .iter()
        .filter(|(table, f)| f.offload && !have.iter().any(|(t, n)| t == table && *n == f.name))
        .map(|_| nft_xdp::XdpOffload::load(&cfg))
        .collect();
    XdpLoads {
        loaded: ready.len() as u64,
        ready,
        under_lock: 0,
    }
}

impl Shared {
    /// A `Shared` for tests: interfaces `names` (ifindex 2, 3, ...) with no addresses or
    /// routes, an empty ruleset, no backend opened.
    #[cfg(test)]
    pub(crate) fn for_tests(names: &[&str], workers: usize) -> Shared {
        let mut snap = netlink::Snapshot::default();
        for (k, name) in names.iter().enumerate() {
            let ifindex = k as u32 + 2;
            snap.links.insert(
                ifindex,
                netlink::Link {
                    ifindex,
                    name: name.to_string(),
                    mac: [2, 0, 0, 0, 0, ifindex as u8],
                    mtu: 1500,
                    up: true,
                    kind: "veth".into(),
                },
            );
        }
        let ifs: Vec<(String, String)> = names
            .iter()
            .map(|n| (String::new(), n.to_string()))
            .collect();
        let (topo, names) = topology(&snap, &ifs).expect("topology");
        let n_if = topo.interfaces.len();
        Shared {
            state: Mutex::new(State {
                router: Router::new(topo, Default::default(), Config::default()),
                ast: Default::default(),
                routes: vec![],
                addrs: vec![],
                tx_dropped: vec![0; n_if],
                xdp: vec![],
            }),
            names,
            epoch: Instant::now(),
            stop: AtomicBool::new(false),
            worker_cpu_ns: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            io_stats: Mutex::new(vec![vec![AfPacketStats::default(); n_if]; workers]),
            tx_bad_port: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            workers,
            steering: None,
            kick: AtomicBool::new(false),
            xdp_env: XdpEnv {
                ifs,
                mono: Duration::ZERO,
                io: Io::AfXdp,
                mode: nft_xdp::offload::ModeRequest::Auto,
            },
            local_senders: vec![true; n_if],
            lock_taken: AtomicU64::new(0),
            lock_contended: AtomicU64::new(0),
            lock_wait_ns: AtomicU64::new(0),
            reloads: Mutex::new(ReloadStats::default()),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.lock_taken.fetch_add(1, Ordering::Relaxed);
        // the clock is read only when the lock is held by another thread
        let g = match self.state.try_lock() {
            Ok(g) => Ok(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Err(e),
            Err(std::sync::TryLockError::WouldBlock) => {
                let t = Instant::now();
                let g = self.state.lock();
                self.lock_contended.fetch_add(1, Ordering::Relaxed);
                self.lock_wait_ns
                    .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                g
            }
        };
        // A worker that panicked holding the lock left the router as it was between two
        // bursts' statements; keep serving rather than stop every other thread.
        g.unwrap_or_else(|e| e.into_inner())
    }

    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}

pub(crate) fn thread_cpu_ns() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_THREAD) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| {
                (tv.tv_sec() as u64)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(tv.tv_usec() as u64 * 1000)
            };
            t(u.user_time()).saturating_add(t(u.system_time()))
        }
        Err(_) => 0,
    }
}

/// Where a frame's checksum lies, for [`complete_l4_checksum`].
#[derive(Debug, PartialEq)]
enum L4Site {
    /// TCP or UDP: the segment's span, the field's offset in it, the pseudo-header sum and
    /// whether it is UDP.
    Inet(std::ops::Range<usize>, usize, u16, bool),
    /// SCTP: the packet's span (its CRC32c, at offset 8, covers the packet alone).
    Sctp(std::ops::Range<usize>),
}

/// Where a frame's TCP, UDP or SCTP checksum lies. `None` for anything else, a fragment (its
/// checksum covers the whole datagram) or a malformed frame. VLAN tags and PPPoE are walked by
/// [`parse_frame`](nft_wire::parse_frame), as the engine's own parser walks them.
fn l4_site(f: &[u8]) -> Option<L4Site> {
    use nft_wire::IpProtocol;
    let m = nft_wire::parse_frame(f).ok()?;
    let (src, dst, proto, l4) = (m.src_addr?, m.dst_addr?, m.ip_protocol?, m.l4_offset?);
    if m.is_fragment() {
        return None;
    }
    let field = match proto {
        IpProtocol::Tcp => 16,
        IpProtocol::Udp => 6,
        IpProtocol::Sctp => 8,
        _ => return None,
    };
    let len = m.l4_len;
    if field + 2 > len || l4 + len > f.len() {
        return None;
    }
    if proto == IpProtocol::Sctp {
        // the common header is 12 bytes, the CRC32c its last four
        return (len >= 12).then_some(L4Site::Sctp(l4..l4 + len));
    }
    let pseudo = nft_wire::checksum::pseudo_header(&src, &dst, proto, len as u32);
    Some(L4Site::Inet(
        l4..l4 + len,
        field,
        pseudo,
        proto == IpProtocol::Udp,
    ))
}

/// Where a frame's TCP or UDP checksum lies: the segment's span, the field's offset in it, the
/// pseudo-header sum and whether it is UDP.
#[cfg(test)]
fn l4_checksum_site(f: &[u8]) -> Option<(std::ops::Range<usize>, usize, u16, bool)> {
    match l4_site(f)? {
        L4Site::Inet(seg, field, pseudo, udp) => Some((seg, field, pseudo, udp)),
        L4Site::Sctp(_) => None,
    }
}

/// Fills in the TCP or UDP checksum of a frame that carries only the pseudo-header sum, or the
/// CRC32c of an SCTP packet that carries none (made on this host with checksum offload: veth
/// peers, which advertise `NETIF_F_SCTP_CRC`, and local sockets). The kernel's own conntrack
/// accepts such SCTP (`sctp_error` checks the CRC only of `CHECKSUM_NONE` packets); ours checks
/// every CRC, so it is filled here. The frame is left as it is when it is anything else, a
/// fragment, or malformed: the engine then counts it as such.
pub fn complete_l4_checksum(f: &mut [u8]) {
    match l4_site(f) {
        Some(L4Site::Inet(seg, field, pseudo, udp)) => {
            fill_l4_checksum(&mut f[seg], field, pseudo, udp)
        }
        Some(L4Site::Sctp(seg)) => nft_wire::checksum::fill_sctp(&mut f[seg]),
        None => {}
    }
}

/// AF_XDP: a frame carries no checksum state (no skb, no `TP_STATUS_CSUMNOTREADY`), so a
/// packet made on this host with checksum offload (a veth peer) is known by its content: a TCP
/// or UDP checksum field that holds exactly the pseudo-header sum, which is what the sender's
/// stack leaves for the hardware, is completed. A complete checksum that happens to equal that
/// sum (1 in 65 536) is recomputed to the value it had, so a good frame never changes. SCTP
/// with a CRC32c of zero (what the sender's stack leaves when the device computes the CRC) is
/// completed the same way; a true CRC of zero (1 in 2^32) is recomputed to itself. Returns
/// whether the frame was completed.
pub fn complete_partial_l4_checksum(f: &mut [u8]) -> bool {
    // run for every frame an AF_XDP worker takes from a virtual device: the common case is
    // decided without the full parse
    if plainly_complete(f) {
        return false;
    }
    complete_partial_by_parse(f)
}

/// [`complete_partial_l4_checksum`] by the full parse.
fn complete_partial_by_parse(f: &mut [u8]) -> bool {
    match l4_site(f) {
        Some(L4Site::Inet(seg, field, pseudo, udp)) => {
            let at = seg.start + field;
            if u16::from_be_bytes([f[at], f[at + 1]]) != pseudo {
                return false;
            }
            fill_l4_checksum(&mut f[seg], field, pseudo, udp);
            true
        }
        Some(L4Site::Sctp(seg)) => {
            if f[seg.start + 8..seg.start + 12] != [0, 0, 0, 0] {
                return false;
            }
            nft_wire::checksum::fill_sctp(&mut f[seg]);
            true
        }
        None => false,
    }
}

/// An untagged IPv4 (no options) or IPv6 (no extension header) TCP or UDP packet, whole in
/// the frame, whose checksum field is not its pseudo-header sum: nothing for
/// [`complete_partial_l4_checksum`] to do. `false` when it may have something to do or the
/// frame is anything else; the full parse decides then. Reads only the headers' fixed fields.
#[inline]
fn plainly_complete(f: &[u8]) -> bool {
    quick_complete(f).unwrap_or(false)
}

fn quick_complete(f: &[u8]) -> Option<bool> {
    use nft_wire::checksum::{fold, sum};
    let (l4, len, proto, addrs) = match f.get(12..15)? {
        // (a fragment has no checksum to complete, whatever its field holds)
        [0x08, 0x00, 0x45] => {
            let total = u16::from_be_bytes([*f.get(16)?, *f.get(17)?]);
            (34, usize::from(total).checked_sub(20)?, *f.get(23)?, 26..34)
        }
        [0x86, 0xdd, v] if v >> 4 == 6 => {
            let payload = u16::from_be_bytes([*f.get(18)?, *f.get(19)?]);
            (54, usize::from(payload), *f.get(20)?, 22..54)
        }
        _ => return None,
    };
    let field = match proto {
        6 => 16,
        17 => 6,
        _ => return None,
    };
    if field + 2 > len || l4 + len > f.len() {
        return None;
    }
    let pseudo = fold(u64::from(sum(f.get(addrs)?)) + u64::from(proto) + len as u64);
    Some(u16::from_be_bytes([f[l4 + field], f[l4 + field + 1]]) != pseudo)
}

/// A partial checksum completed at `start + offset` over the frame from `start` to its end,
/// the field holding the pseudo-header sum (the kernel's `skb_checksum_help`, which also turns
/// a zero into 0xffff). Left as it is when the field is not inside the frame.
fn complete_at(f: &mut [u8], start: usize, offset: usize) {
    use nft_wire::checksum::sum;
    let at = start.saturating_add(offset);
    if start >= f.len() || at.saturating_add(2) > f.len() {
        return;
    }
    let c = match !sum(&f[start..]) {
        0 => 0xffff,
        c => c,
    };
    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

fn fill_l4_checksum(seg: &mut [u8], field: usize, pseudo: u16, udp: bool) {
    use nft_wire::checksum::{combine, sum};
    seg[field..field + 2].copy_from_slice(&[0, 0]);
    let mut c = !combine(&[pseudo, sum(seg)]);
    if c == 0 && udp {
        c = 0xffff;
    }
    seg[field..field + 2].copy_from_slice(&c.to_be_bytes());
}

pub(crate) fn is_arp(f: &[u8]) -> bool {
    f.len() >= 14 && f[12..14] == [0x08, 0x06]
}

/// A received frame's `virtio_net_hdr` into its slot's [`Offload`]; whether the slot is
/// left with one (GSO or a partial checksum the router follows). A partial checksum that is
/// not TCP's or UDP's (SCTP's CRC32c, which veth also leaves to "hardware") is completed here,
/// as before, and the frame is plain. A GSO packet whose checksum the kernel had verified
/// (GRO, `DATA_VALID`) gets the pseudo-header sum in its checksum field and goes on as
/// partial, as a sender's TSO packet is (the field of an aggregate is the first segment's).
fn rx_offload(slot: &mut FrameSlot, v: &VnetHdr) -> bool {
    let partial = v.flags & VnetHdr::NEEDS_CSUM != 0;
    let start = usize::from(v.csum_start);
    // the router follows a partial checksum only at the packet's own TCP or UDP checksum
    // field, and cuts only GSO packets whose type is that protocol's
    let (at_outer, outer_udp) = match l4_site(slot.frame()) {
        Some(L4Site::Inet(seg, field, _, udp)) => (
            seg.start == start && field == usize::from(v.csum_offset),
            Some(udp),
        ),
        Some(L4Site::Sctp(seg)) => {
            if partial && seg.start == start {
                // SCTP's CRC32c, which veth also leaves to "hardware"
                complete_l4_checksum(slot.frame_mut());
                return false;
            }
            (false, None)
        }
        None => (false, None),
    };
    let gso_ok = match v.gso_type & !VnetHdr::GSO_ECN {
        VnetHdr::GSO_TCPV4 | VnetHdr::GSO_TCPV6 => outer_udp == Some(false),
        VnetHdr::GSO_UDP_L4 => outer_udp == Some(true),
        _ => false,
    };
    let follow = if partial {
        at_outer && (!v.is_gso() || gso_ok)
    } else {
        v.is_gso() && gso_ok
    };
    if !follow {
        if partial {
            // anywhere else (a tunnel's inner checksum): completed where the header says, as
            // the kernel's `skb_checksum_help` does
            complete_at(slot.frame_mut(), start, usize::from(v.csum_offset));
        }
        // plain from here: a GSO packet the router cannot cut (a tunnel's, whose segments
        // are the inner protocol's) goes on as one packet, and one above the MTU is
        // dropped as `mtu_exceeded`
        return false;
    }
    let mut o = Offload {
        gso_size: if v.is_gso() { v.gso_size } else { 0 },
        csum_start: if v.flags & VnetHdr::NEEDS_CSUM != 0 {
            v.csum_start
        } else {
            0
        },
    };
    if o.gso_size != 0 && !o.csum_partial() {
        // (not a TCP or UDP packet: the slow path counts it, gso_unsupported)
        if let Some(L4Site::Inet(seg, field, pseudo, _)) = l4_site(slot.frame()) {
            let at = seg.start + field;
            slot.frame_mut()[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
            o.csum_start = seg.start as u16;
        }
    }
    slot.offload = o;
    !o.is_plain()
}

/// The `virtio_net_hdr` a frame the fast path forwarded from `slot` leaves with: the one it
/// came with, at its new offsets (the router set `csum_start`; the link header may have
/// changed length); an empty one for a plain frame.
fn tx_vnet(slot: &FrameSlot, rx: &VnetHdr) -> VnetHdr {
    let o = &slot.offload;
    if o.is_plain() {
        return VnetHdr::default();
    }
    let tcp = match rx.gso_type & !VnetHdr::GSO_ECN {
        VnetHdr::GSO_TCPV4 | VnetHdr::GSO_TCPV6 => true,
        VnetHdr::GSO_UDP_L4 => false,
        _ => rx.csum_offset == 16,
    };
    let (csum_offset, th) = if tcp {
        // the header's length in its data offset
        let doff = slot.frame().get(usize::from(o.csum_start) + 12);
        (16, doff.map_or(20, |b| u16::from(b >> 4) * 4))
    } else {
        (6, 8)
    };
    VnetHdr {
        flags: if o.csum_partial() {
            VnetHdr::NEEDS_CSUM
        } else {
            0
        },
        gso_type: if o.is_gso() {
            rx.gso_type
        } else {
            VnetHdr::GSO_NONE
        },
        hdr_len: o.csum_start + th,
        gso_size: o.gso_size,
        csum_start: o.csum_start,
        csum_offset,
    }
}

/// The `virtio_net_hdr` of a GSO packet the slow path walked and sent whole (`frame`, with
/// its `offload`): the GSO type from the packet, as the kernel's stack sets it (TCP over
/// IPv4 or IPv6, with `GSO_ECN` when the packet has CWR, as `tcp_gro_complete` and TCP's
/// sender set `SKB_GSO_TCP_ECN`; UDP's `GSO_UDP_L4`), and its partial checksum's offsets.
fn tx_vnet_walked(frame: &[u8], o: &Offload) -> VnetHdr {
    let Some(L4Site::Inet(seg, field, _, udp)) = l4_site(frame) else {
        return VnetHdr::default();
    };
    let v6 =
        nft_wire::parse_frame(frame).is_ok_and(|m| m.ip_version == Some(nft_wire::IpVersion::Ipv6));
    let th = if udp {
        8
    } else {
        frame
            .get(seg.start + 12)
            .map_or(20, |b| u16::from(b >> 4) * 4)
    };
    let gso_type = match (udp, v6) {
        (true, _) => VnetHdr::GSO_UDP_L4,
        (false, false) => VnetHdr::GSO_TCPV4,
        (false, true) => VnetHdr::GSO_TCPV6,
    };
    let cwr = !udp && frame.get(seg.start + 13).is_some_and(|f| f & 0x80 != 0);
    VnetHdr {
        flags: if o.csum_partial() {
            VnetHdr::NEEDS_CSUM
        } else {
            0
        },
        gso_type: if !o.is_gso() {
            VnetHdr::GSO_NONE
        } else if cwr {
            gso_type | VnetHdr::GSO_ECN
        } else {
            gso_type
        },
        hdr_len: seg.start as u16 + th,
        gso_size: o.gso_size,
        csum_start: o.csum_start,
        csum_offset: field as u16,
    }
}

/// `--rx-slot`: a V2 slot holds its tpacket2 header and a minimal frame, is a multiple of 16
/// and fits a 256 KiB block.
fn parse_rx_slot(s: &str) -> std::result::Result<u32, String> {
    let v: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if !(128..=1 << 18).contains(&v) || !v.is_multiple_of(16) {
        return Err("a multiple of 16 from 128 to 262144".into());
    }
    Ok(v)
}

fn open_backends(
    io: Io,
    ifs: &[(String, String)],
    workers: usize,
    ring_mib: u32,
    ring_v3: bool,
    slot: u32,
) -> Result<Vec<Vec<Backend>>> {
    let mut all = vec![];
    for _ in 0..workers {
        let mut socks = vec![];
        for (i, (_, name)) in ifs.iter().enumerate() {
            match io {
                Io::AfPacket => {
                    let cfg = AfPacketConfig {
                        // a fanout group per interface, unique to this process
                        fanout: (workers > 1).then(|| Fanout {
                            group: (std::process::id() as u16)
                                .wrapping_mul(8)
                                .wrapping_add(i as u16),
                            mode: FanoutMode::Hash,
                        }),
                        // as AF_XDP sends: straight to the driver
                        qdisc_bypass: true,
                        // room for a few bursts in flight per interface beyond the default
                        sndbuf: Some(4 << 20),
                        // GSO super-packets in and out whole, partial checksums kept
                        vnet_hdr: true,
                        // a TPACKET_V2 ring: a lone frame (an ACK, a ping) is handed over at
                        // once, where a V3 block waits up to its 1 ms retire timer; slots for
                        // MTU-sized frames, super-packets read whole from the socket
                        ..if ring_v3 {
                            AfPacketConfig::with_ring_mib(ring_mib)
                        } else {
                            AfPacketConfig::v2_slots(ring_mib, slot)
                        }
                    };
                    let s = AfPacket::open(name, &cfg)
                        .with_context(|| format!("opening AF_PACKET on {name}"))?;
                    socks.push(Backend::AfPacket(s));
                }
                // opened with the steering programs, in run()
                Io::AfXdp => {}
            }
        }
        all.push(socks);
    }
    Ok(all)
}

/// A frame waiting for its interface's transmit: a fast-path slot, or a frame of `sent`.
#[derive(Clone, Copy)]
enum Pending {
    Slot(usize),
    Sent(usize),
}

fn worker(
    shared: Arc<Shared>,
    mut socks: Vec<Backend>,
    wid: usize,
    resolve: mpsc::Sender<(usize, IpAddr)>,
    rx_budget: usize,
) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let n_if = socks.len();
    let mut slots: Vec<FrameSlot> = (0..BURST * n_if).map(|_| FrameSlot::new(0, &[])).collect();
    let mut sent: Vec<Sent> = Vec::with_capacity(BURST * n_if);
    let mut last_tick = Instant::now();
    let mut last_stats = Instant::now();
    let mut pending: Vec<Vec<Pending>> = vec![vec![]; n_if];
    // each slot's virtio_net_hdr as received (read only for slots that are not plain)
    let mut vnet_in: Vec<VnetHdr> = vec![VnetHdr::default(); slots.len()];
    let mut hdrs: Vec<VnetHdr> = Vec::with_capacity(BURST * n_if);
    while !shared.stop.load(Ordering::Relaxed) {
        if !socks.iter().any(|s| s.rx_ready()) {
            let mut fds: Vec<PollFd> = socks
                .iter()
                .map(|s| PollFd::new(s.fd(), PollFlags::POLLIN))
                .collect();
            let _ = poll(&mut fds, PollTimeout::from(20u16));
            let errs: Vec<bool> = fds
                .iter()
                .map(|p| {
                    p.revents()
                        .is_some_and(|r| r.intersects(PollFlags::POLLERR))
                })
                .collect();
            drop(fds);
            for (s, e) in socks.iter().zip(errs) {
                if e {
                    // a link went down (ENETDOWN): read and clear the error, or poll spins
                    let _ = nix::sys::socket::getsockopt(
                        &s.fd(),
                        nix::sys::socket::sockopt::SocketError,
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        let mut n = 0;
        let mut offloaded = false;
        for (i, s) in socks.iter_mut().enumerate() {
            let port = i as u16;
            s.rx_burst(BURST, rx_budget, |f, info| {
                // ARP is the kernel's; it answers from its own copy
                if is_arp(f) || n >= slots.len() {
                    return;
                }
                slots[n].refill(port, f);
                let v = info.vnet;
                if v.flags & VnetHdr::NEEDS_CSUM != 0 || v.is_gso() {
                    offloaded |= rx_offload(&mut slots[n], &v);
                    vnet_in[n] = v;
                } else if info.csum_not_ready {
                    complete_l4_checksum(slots[n].frame_mut());
                }
                n += 1;
            });
        }
        if n == 0 && last_tick.elapsed() < TICK && !shared.kick.swap(false, Ordering::Relaxed) {
            continue;
        }
        last_tick = Instant::now();
        let unresolved = {
            let mut st = shared.lock();
            let now = shared.now();
            sent.clear();
            if offloaded {
                st.router
                    .process_slots_offloaded(&mut slots[..n], now, &mut sent);
            } else {
                st.router.process_slots(&mut slots[..n], now, &mut sent);
            }
            st.router.take_unresolved()
        };
        for u in unresolved {
            let _ = resolve.send(u);
        }
        // frames with a virtio_net_hdr to send: from a burst that had some, or a GSO packet
        // held for its neighbour and released now
        let vnet_out = offloaded
            || sent
                .iter()
                .any(|s| matches!(s, Sent::Frame(f) if !f.offload.is_plain()));
        // transmit, grouped by egress interface, in order
        for p in pending.iter_mut() {
            p.clear();
        }
        for (k, s) in sent.iter().enumerate() {
            let e = match s {
                Sent::Slots { start, end } => {
                    for i in *start..*end {
                        let e = slots.get(i).and_then(|s| s.egress());
                        if let Some(p) = e.and_then(|e| pending.get_mut(usize::from(e))) {
                            p.push(Pending::Slot(i));
                        }
                    }
                    continue;
                }
                Sent::Frame(f) => match f.egress {
                    Port::Iface(e) => e,
                    // the kernel has its own copy of what is addressed to the router
                    Port::Host => continue,
                },
            };
            if let Some(p) = pending.get_mut(e) {
                p.push(Pending::Sent(k));
            }
        }
        let mut tx_dropped = vec![0u64; n_if];
        for (e, sock) in socks.iter_mut().enumerate() {
            if pending[e].is_empty() {
                continue;
            }
            let frames: Vec<&[u8]> = pending[e]
                .iter()
                .map(|&k| match k {
                    Pending::Slot(i) => slots[i].frame(),
                    Pending::Sent(k) => match &sent[k] {
                        Sent::Frame(f) => f.data.as_slice(),
                        Sent::Slots { .. } => &[],
                    },
                })
                .collect();
            // GSO and partial-checksum frames leave with their header: the fast path's, and
            // the GSO packets the slow path walked whole (its other frames are plain)
            hdrs.clear();
            if vnet_out {
                hdrs.extend(pending[e].iter().map(|&k| match k {
                    Pending::Slot(i) => tx_vnet(&slots[i], &vnet_in[i]),
                    Pending::Sent(k) => match &sent[k] {
                        Sent::Frame(f) if !f.offload.is_plain() => {
                            tx_vnet_walked(&f.data, &f.offload)
                        }
                        _ => VnetHdr::default(),
                    },
                }));
            }
            let dev_before = sock.tx_device_drops();
            let left = send_bounded(&frames, |f| {
                let done = frames.len() - f.len();
                sock.tx_burst(f, hdrs.get(done..).unwrap_or(&[]))
            });
            tx_dropped[e] += left as u64 + (sock.tx_device_drops() - dev_before);
        }
        if tx_dropped.iter().any(|d| *d > 0) {
            let mut st = shared.lock();
            for (a, d) in st.tx_dropped.iter_mut().zip(&tx_dropped) {
                *a += d;
            }
        }
        if last_stats.elapsed() >= Duration::from_millis(200) {
            last_stats = Instant::now();
            shared.worker_cpu_ns[wid].store(thread_cpu_ns(), Ordering::Relaxed);
            let st: Vec<AfPacketStats> = socks.iter_mut().map(|s| s.stats()).collect();
            if let Ok(mut io) = shared.io_stats.lock() {
                io[wid] = st;
            }
        }
    }
    shared.worker_cpu_ns[wid].store(thread_cpu_ns(), Ordering::Relaxed);
    let st: Vec<AfPacketStats> = socks.iter_mut().map(|s| s.stats()).collect();
    if let Ok(mut io) = shared.io_stats.lock() {
        io[wid] = st;
    }
}

/// Applies a kernel change to the router.
pub fn apply_event(
    st: &mut State,
    names: &Names,
    ev: Event,
    resolve: &mpsc::Sender<(usize, IpAddr)>,
) {
    match ev {
        Event::Link(l) => {
            if let Some(i) = names.topo(l.ifindex) {
                if st.router.topology().interfaces[i].up != l.up {
                    st.router.set_link(i, l.up);
                    st.router.rebuild_fib();
                }
                // a new MAC or MTU: the slow path uses it, offloaded flows are re-routed
                let mtu = u16::try_from(l.mtu).unwrap_or(u16::MAX);
                st.router.set_link_params(i, l.mac, mtu);
            }
        }
        Event::LinkGone(ix) => {
            if let Some(i) = names.topo(ix) {
                st.router.set_link(i, false);
                st.router.rebuild_fib();
            }
        }
        Event::AddrNew(a) | Event::AddrGone(a) => {
            let new = matches!(ev, Event::AddrNew(_));
            st.addrs.retain(|x| x != &a);
            if new {
                st.addrs.push(a);
            }
            if let Some(i) = names.topo(a.ifindex) {
                let list = st
                    .addrs
                    .iter()
                    .filter(|x| x.ifindex == a.ifindex)
                    .map(|x| (x.addr, x.len))
                    .collect();
                st.router.set_addresses(i, list);
            }
        }
        Event::RouteNew(r) | Event::RouteGone(r) => {
            let new = matches!(ev, Event::RouteNew(_));
            st.routes.retain(|x| !(x.dst == r.dst && x.len == r.len));
            if new {
                st.routes.push(r);
            }
            let routes = engine_routes(&st.routes, names);
            st.router.set_routes(routes);
        }
        Event::NeighNew(n) => {
            let Some(i) = names.topo(n.ifindex) else {
                return;
            };
            match n.mac {
                Some(m) => st.router.set_neighbour(i, n.ip, Some(m)),
                None if n.failed => st.router.set_neighbour(i, n.ip, None),
                None => {}
            }
        }
        Event::NeighGone(n) => {
            // The kernel forgot an entry (its GC): keep the MAC and have it resolved again,
            // so flows using it do not stall; a failed resolution removes it then.
            let Some(i) = names.topo(n.ifindex) else {
                return;
            };
            if st.router.topology().neighbours.contains_key(&(i, n.ip)) {
                let _ = resolve.send((i, n.ip));
            }
        }
    }
}

/// The kernel table of `run` (AF_PACKET mode). The kernel sees every frame the dataplane
/// sees; for TCP and UDP addressed to one of the router's own addresses on our interfaces with
/// no local socket (replies to masqueraded connections, port forwards) it would answer with
/// a RST or a port unreachable. The table drops those before the kernel's stack looks at them
/// (prerouting, priority -500, after the AF_PACKET taps); what has a local socket stays the
/// kernel's.
///
/// A second table, of the netdev family, drops at ingress (also after the taps) the IP
/// frames that are not for the router itself: the dataplane's transit traffic, which the
/// kernel, forwarding off, would only route and drop. At ingress that costs the kernel one
/// FIB lookup instead of its IP input path and a route cache entry per frame, on the CPU the
/// worker shares with it: under overload the difference is what keeps the worker running.
pub fn guard_ruleset(ifs: &[String]) -> String {
    let list = ifs
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "table inet {GUARD_TABLE} {{\n\
         \tchain prerouting {{\n\
         \t\ttype filter hook prerouting priority -500; policy accept;\n\
         \t\tiifname != {{ {list} }} accept\n\
         \t\tfib daddr type != local accept\n\
         \t\tmeta l4proto {{ tcp, udp }} socket transparent 0 accept\n\
         \t\tmeta l4proto {{ tcp, udp }} socket transparent 1 accept\n\
         \t\tmeta l4proto {{ tcp, udp }} counter drop comment \"owned by the nft-offload dataplane\"\n\
         \t}}\n\
         }}\n\
         table netdev {GUARD_TABLE} {{\n\
         \tchain ingress {{\n\
         \t\ttype filter hook ingress devices = {{ {list} }} priority -500; policy accept;\n\
         \t\tfib daddr type {{ local, broadcast, multicast }} accept\n\
         \t\tmeta protocol {{ ip, ip6 }} counter drop comment \"transit: the dataplane's\"\n\
         \t}}\n\
         }}\n"
    )
}

/// Removes the kernel table when dropped (any exit path of `run`).
pub struct Guard {
    installed: bool,
}

impl Guard {
    pub fn install(ifs: &[String]) -> Result<Guard> {
        for family in ["inet", "netdev"] {
            let _ = Command::new("nft")
                .args(["delete", "table", family, GUARD_TABLE])
                .stderr(Stdio::null())
                .status();
        }
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .context("running nft to install the kernel guard table")?;
        if let Some(mut i) = child.stdin.take() {
            use std::io::Write;
            i.write_all(guard_ruleset(ifs).as_bytes())?;
        }
        let st = child.wait()?;
        if !st.success() {
            bail!("nft refused the guard table (exit {st})");
        }
        Ok(Guard { installed: true })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.installed {
            for family in ["inet", "netdev"] {
                let _ = Command::new("nft")
                    .args(["delete", "table", family, GUARD_TABLE])
                    .status();
            }
        }
    }
}

/// GRO and LRO off on `run`'s interfaces while it runs, put back as they were when dropped.
/// With either on, the kernel hands XDP in generic mode (and AF_PACKET without
/// `PACKET_VNET_HDR`) aggregates of up to 64 KB, above any MTU, which the router cannot
/// forward as they are. `--io af_packet` reads each frame's `virtio_net_hdr`: a GRO aggregate
/// comes with its GSO size and type and is forwarded whole like a sender's TSO packet (or cut
/// into its segments by the slow path), so GRO is left as the interface has it there
/// (`keep_gro`); LRO, which may merge what GRO would not, is still turned off.
pub struct NoAggregation {
    restore: Vec<(String, nft_xdp::ethtool::Aggregation)>,
}

impl NoAggregation {
    /// Turns them off (GRO only when not `keep_gro`); the lines say what changed or could not
    /// be, for the log.
    pub fn apply(ifs: &[(String, String)], keep_gro: bool) -> (NoAggregation, Vec<String>) {
        use nft_xdp::ethtool::{get, set, Aggregation};
        let mut restore = vec![];
        let mut msgs = vec![];
        let what: &[Aggregation] = if keep_gro {
            &[Aggregation::Lro]
        } else {
            &[Aggregation::Gro, Aggregation::Lro]
        };
        for (_, dev) in ifs {
            for &what in what {
                match get(dev, what) {
                    Ok(false) => {}
                    Ok(true) => match set(dev, what, false) {
                        Ok(()) => {
                            msgs.push(format!("{dev}: {what} off while running (was on)"));
                            restore.push((dev.clone(), what));
                        }
                        Err(e) => msgs.push(format!(
                            "warning: {e}: {what} stays on; frames the kernel aggregates \
                             above the MTU will be dropped (ethtool -K {dev} {} off)",
                            what.to_string().to_lowercase()
                        )),
                    },
                    Err(e) => msgs.push(format!("warning: {e}: cannot check {what}")),
                }
            }
        }
        (NoAggregation { restore }, msgs)
    }
}

impl Drop for NoAggregation {
    fn drop(&mut self) {
        for (dev, what) in &self.restore {
            let _ = nft_xdp::ethtool::set(dev, *what, true);
        }
    }
}

/// AF_PACKET: the interfaces' receive steering (RPS) kept off the workers' CPUs while `run`
/// runs, the old masks written back at exit.
///
/// With AF_PACKET the kernel receives every frame itself first (an skb, the packet taps that
/// copy it into our rings, the ingress hooks, the drop): per frame offered, not per frame the
/// worker can take. That work runs as softirq, which preempts any thread; when RPS puts it on
/// the worker's CPU, an offered load above what that CPU can receive leaves the worker
/// nothing (a receive livelock: it delivered 25 kpps of 1.49 Mpps offered on the live bench).
/// Dataplanes keep their workers' CPUs free of interrupt and receive work; here the RPS mask of
/// each receive queue loses the CPUs the workers may run on (their affinity, e.g. `taskset`),
/// so the receive runs elsewhere and, when it cannot keep up, drops before the worker's ring
/// rather than taking the worker's CPU. Only when the workers are pinned (their affinity is not
/// every online CPU); a mask left empty turns RPS off for that queue (the receive then runs
/// where the device's own interrupt or NAPI runs, which sysfs does not say).
///
/// The old masks are saved to a file (next to the control socket) before any is changed and
/// the file is removed once they are written back, so a run that ends without `Drop` (killed,
/// a crash) has them written back at the next start rather than taken as the old ones.
pub struct RxAway {
    restore: Vec<(PathBuf, String)>,
    saved: Option<PathBuf>,
}

/// Where [`RxAway`] saves the old RPS masks for a run whose control socket is `control`.
pub fn rps_save_path(control: &Path) -> PathBuf {
    let mut p = control.as_os_str().to_owned();
    p.push(".rps");
    PathBuf::from(p)
}

/// Writes `masks` (a `rps_cpus` file and the mask it had) to `file`: one `path<TAB>mask` line
/// each, through a temporary file and a rename so the file is whole or absent.
pub fn save_rps_masks(file: &Path, masks: &[(PathBuf, String)]) -> std::io::Result<()> {
    let mut text = String::new();
    for (q, old) in masks {
        text.push_str(&format!("{}\t{}\n", q.display(), old));
    }
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, file)
}

/// Writes back the masks a run saved in `file` and did not restore (it ended without `Drop`),
/// then removes the file. Returns what it did, for the log; nothing if there is no file.
pub fn restore_saved_rps_masks(file: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return vec![];
    };
    let mut msgs = vec![];
    for line in text.lines() {
        let Some((q, old)) = line.split_once('\t') else {
            continue;
        };
        // only a mask that parses is written back, and only to an rps_cpus file
        if !q.ends_with("/rps_cpus") || parse_cpu_mask(old).is_none() {
            msgs.push(format!(
                "warning: {}: ignored line {line:?}",
                file.display()
            ));
            continue;
        }
        match std::fs::write(q, old) {
            Ok(()) => msgs.push(format!(
                "{q}: rps_cpus {old} written back (an earlier run ended without restoring it)"
            )),
            // the interface may be gone by now
            Err(e) => msgs.push(format!(
                "warning: {q}: {e}: rps_cpus {old} not written back"
            )),
        }
    }
    let _ = std::fs::remove_file(file);
    msgs
}

/// A CPU mask as sysfs prints it (`rps_cpus`: hex, 32-bit groups separated by commas, most
/// significant first) as CPU numbers, or `None` if malformed.
pub fn parse_cpu_mask(s: &str) -> Option<Vec<usize>> {
    let mut cpus = vec![];
    let groups: Vec<&str> = s.trim().split(',').collect();
    for (k, g) in groups.iter().rev().enumerate() {
        let v = u32::from_str_radix(g, 16).ok()?;
        cpus.extend((0..32).filter(|b| v & (1 << b) != 0).map(|b| k * 32 + b));
    }
    Some(cpus)
}

/// CPU numbers as a sysfs mask, at least `groups` 32-bit groups wide.
pub fn format_cpu_mask(cpus: &[usize], groups: usize) -> String {
    let n = cpus
        .iter()
        .map(|c| c / 32 + 1)
        .max()
        .unwrap_or(0)
        .max(groups)
        .max(1);
    let mut g = vec![0u32; n];
    for c in cpus {
        g[c / 32] |= 1 << (c % 32);
    }
    g.iter()
        .rev()
        .map(|v| format!("{v:08x}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl RxAway {
    /// Takes the CPUs this thread may run on (the workers inherit them) out of the RPS masks
    /// of `ifs`' receive queues, the old masks saved to `saved` first. Returns what it did,
    /// for the log.
    pub fn apply(ifs: &[(String, String)], saved: &Path) -> (RxAway, Vec<String>) {
        let mut msgs = vec![];
        let mut away = RxAway {
            restore: vec![],
            saved: None,
        };
        let Ok(aff) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) else {
            return (away, msgs);
        };
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
        let online = cpu_list(&online);
        let workers: Vec<usize> = online
            .iter()
            .copied()
            .filter(|&c| aff.is_set(c).unwrap_or(false))
            .collect();
        if workers.is_empty() || workers.len() == online.len() {
            return (away, msgs); // not pinned: the scheduler places the workers
        }
        // what to change: (device, queue, rps_cpus file, old mask, new mask)
        let mut plan = vec![];
        for (_, dev) in ifs {
            let dir = Path::new("/sys/class/net").join(dev).join("queues");
            let Ok(queues) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut qs: Vec<PathBuf> = queues
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .map(|e| e.path().join("rps_cpus"))
                .collect();
            qs.sort();
            for q in qs {
                let Ok(old) = std::fs::read_to_string(&q) else {
                    continue;
                };
                let Some(cpus) = parse_cpu_mask(&old) else {
                    continue;
                };
                if !cpus.iter().any(|c| workers.contains(c)) {
                    continue;
                }
                let left: Vec<usize> = cpus.into_iter().filter(|c| !workers.contains(c)).collect();
                let new = format_cpu_mask(&left, old.trim().split(',').count());
                let queue = q
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                plan.push((dev, queue, q, old.trim().to_string(), new));
            }
        }
        if plan.is_empty() {
            return (away, msgs);
        }
        let olds: Vec<(PathBuf, String)> = plan
            .iter()
            .map(|(_, _, q, old, _)| (q.clone(), old.clone()))
            .collect();
        if let Err(e) = save_rps_masks(saved, &olds) {
            // a mask changed but not saved could be left changed for good: none is changed
            msgs.push(format!(
                "warning: {}: {e}: receive steering (RPS) left as it is; the kernel's receive \
                 work shares the workers' CPUs",
                saved.display()
            ));
            return (away, msgs);
        }
        away.saved = Some(saved.to_path_buf());
        for (dev, queue, q, old, new) in plan {
            match std::fs::write(&q, &new) {
                Ok(()) => {
                    msgs.push(format!(
                        "{dev}: {queue} receive steering (RPS) off the workers' CPUs \
                         {workers:?} while running: rps_cpus {old} -> {new}"
                    ));
                    away.restore.push((q, old));
                }
                Err(e) => msgs.push(format!(
                    "warning: {}: {e}: the kernel's receive work shares the workers' CPUs",
                    q.display()
                )),
            }
        }
        (away, msgs)
    }
}

/// A CPU list as sysfs prints it (`0-3,6`).
fn cpu_list(s: &str) -> Vec<usize> {
    let mut out = vec![];
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
            out.extend(a..=b.min(a + 4096));
        }
    }
    out
}

impl Drop for RxAway {
    fn drop(&mut self) {
        for (q, old) in &self.restore {
            // the interface may be gone by now
            let _ = std::fs::write(q, old);
        }
        if let Some(f) = &self.saved {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// The kernel must not forward what the dataplane forwards, or every packet leaves twice.
fn check_kernel_forwarding() -> Result<()> {
    for (file, name) in [
        ("/proc/sys/net/ipv4/ip_forward", "net.ipv4.ip_forward"),
        (
            "/proc/sys/net/ipv6/conf/all/forwarding",
            "net.ipv6.conf.all.forwarding",
        ),
    ] {
        if std::fs::read_to_string(file).is_ok_and(|v| v.trim() != "0") {
            bail!(
                "the kernel forwards too ({name} is on): every packet would leave twice; \
                 run `sysctl -w {name}=0` in this network namespace first"
            );
        }
    }
    Ok(())
}

/// A flowtable's XDP offload as `run` keeps it: which flowtable (table, name, ports: what
/// [`Router::replace_ruleset`] matches to hand flows over), and a handle on the backend the
/// flowtable drives, for `stats` and for reloads. `None`: the offload did not load, the
/// flowtable is in software.
pub struct XdpTable {
    pub table: String,
    pub name: String,
    pub ports: Vec<usize>,
    pub handle: Option<nft_xdp::offload::SharedXdpOffload>,
    /// Whether the flowtable of the ruleset in force drives it. With `--io af_xdp` an offload
    /// whose flowtable a reload took away stays attached, idle (its map empty), because the
    /// steering program runs after it: detaching it would cut the sockets off.
    pub in_use: bool,
}

impl XdpTable {
    fn same(&self, t: &nft_engine::offload::RouterFlowtable) -> bool {
        self.table == t.table && self.name == t.name && self.ports == t.ports
    }
}

/// What the XDP offloads need that does not change while `run` runs.
#[derive(Clone)]
pub struct XdpEnv {
    pub ifs: Vec<(String, String)>,
    /// CLOCK_MONOTONIC at the router's time zero.
    pub mono: Duration,
    pub io: Io,
    pub mode: nft_xdp::offload::ModeRequest,
}

/// `flags offload`: each flowtable that has it gets the XDP offload on its devices (native
/// mode, else generic), or stays in software, saying why: the program was not built
/// (`nft_xdp::NOT_BUILT`), cannot be loaded, or a device takes no XDP program (its flows
/// stay in software, the others are offloaded). The lines are for the log; none is an error.
///
/// With `--io af_xdp` (`env.io`), each backend's [`Chain`](nft_xdp::Chain) comes back with the
/// devices it holds and their mode: the steering program goes after the offload there.
fn xdp_offload(
    router: &mut Router,
    env: &XdpEnv,
) -> (Vec<String>, Vec<run_afxdp::Chained>, Vec<XdpTable>) {
    let mut msgs = vec![];
    let mut chains = vec![];
    let mut kept = vec![];
    let tables: Vec<usize> = router
        .offload()
        .flowtables()
        .iter()
        .enumerate()
        .filter(|(_, t)| t.ft.config().hw_offload)
        .map(|(i, _)| i)
        .collect();
    for i in tables {
        let (x, m, c) = new_xdp_table(router, i, env, None, &mut XdpLoads::default());
        msgs.extend(m);
        chains.extend(c);
        kept.push(x);
    }
    (msgs, chains, kept)
}

/// The XDP offload for flowtable `i` of the router, set as its backend. With `steering` (a
/// reload under `--io af_xdp`), it takes the devices over from their steering programs,
/// which it chains, instead of being attached. The program is one of `loads.ready` (loaded
/// before a reload took the lock), or loaded here when there is none.
fn new_xdp_table(
    router: &mut Router,
    i: usize,
    env: &XdpEnv,
    steering: Option<&mut run_afxdp::Steering>,
    loads: &mut XdpLoads,
) -> (XdpTable, Vec<String>, Option<run_afxdp::Chained>) {
    use nft_xdp::offload::{SharedXdpOffload, XdpOffload, XdpOffloadConfig};
    let t = &router.offload().flowtables()[i];
    let (table, name, ports) = (t.table.clone(), t.name.clone(), t.ports.clone());
    let mut msgs = vec![];
    let mut chained = None;
    let cfg = XdpOffloadConfig {
        devices: ports
            .iter()
            .filter_map(|&p| Some((u16::try_from(p).ok()?, env.ifs.get(p)?.1.clone())))
            .collect(),
        mode: env.mode,
        ..XdpOffloadConfig::default()
    };
    let in_front = steering.is_some();
    let loaded = loads.ready.pop().unwrap_or_else(|| {
        loads.under_lock += 1;
        XdpOffload::load(&cfg)
    });
    let made = loaded.map(|mut x| {
        match steering {
            Some(st) => {
                st.put_behind(&mut x, &cfg.devices, cfg.mode);
            }
            None => x.attach_devices(&cfg),
        }
        x
    });
    let handle = match made {
        Ok(mut x) => {
            x.set_clock(Duration::ZERO, env.mono);
            for at in x.attachments() {
                msgs.push(match (&at.mode, &at.warning) {
                    (Some(m), _) if in_front => format!(
                        "flowtable {name}: {} XDP offload ({m}) in front of the AF_XDP steering",
                        at.device
                    ),
                    (Some(m), _) => {
                        format!("flowtable {name}: {} XDP offload ({m})", at.device)
                    }
                    (None, w) => format!(
                        "warning: flowtable {name}: {}",
                        w.clone()
                            .unwrap_or_else(|| format!("{}: no XDP", at.device))
                    ),
                });
            }
            if env.io == Io::AfXdp && !in_front {
                let devs = x
                    .attachments()
                    .iter()
                    .filter_map(|a| Some((a.ifindex, a.mode?)))
                    .collect();
                if let Some(c) = x.take_chain() {
                    chained = Some(run_afxdp::Chained { chain: c, devs });
                }
            }
            let h = SharedXdpOffload::new(x);
            router.offload_mut().set_backend(i, Box::new(h.clone()));
            Some(h)
        }
        Err(e) => {
            msgs.push(format!(
                "warning: flowtable {name}: {e}; its flows stay in software"
            ));
            None
        }
    };
    (
        XdpTable {
            table,
            name,
            ports,
            handle,
            in_use: true,
        },
        msgs,
        chained,
    )
}

/// After a ruleset swap: the flowtables that keep their table, name, devices and `flags
/// offload` kept their flows and their backend; one that is new with `flags offload`, or gains
/// it, gets an XDP offload; one that loses it (or is gone) lets its offload go, which takes the
/// program off its devices (with `--io af_xdp` the program stays, idle, in front of the
/// steering, and is taken up again if the flag comes back, or by a new flowtable on the same
/// devices). With `--io af_xdp` (`steering`) a new offload takes its devices over from their
/// steering programs, which it chains ([`run_afxdp::Steering::put_behind`]). The programs
/// come from `loads` ([`preload_xdp`], before the lock), else are loaded here. The lines are
/// for the log.
pub fn xdp_after_reload(
    st: &mut State,
    env: &XdpEnv,
    steering: Option<&Mutex<run_afxdp::Steering>>,
    loads: &mut XdpLoads,
) -> Vec<String> {
    let mut msgs = vec![];
    let hw: Vec<usize> = st
        .router
        .offload()
        .flowtables()
        .iter()
        .enumerate()
        .filter(|(_, t)| t.ft.config().hw_offload)
        .map(|(i, _)| i)
        .collect();
    let mut taken = vec![false; st.xdp.len()];
    let mut fresh = vec![];
    for i in hw {
        let t = &st.router.offload().flowtables()[i];
        let tname = t.name.clone();
        match st.xdp.iter().position(|x| x.same(t)) {
            // kept its flows and its backend in the swap
            Some(k) if st.xdp[k].in_use => taken[k] = true,
            // an offload left idle in front of the steering: taken up again
            Some(k) => {
                taken[k] = true;
                if let Some(h) = &st.xdp[k].handle {
                    st.router.offload_mut().set_backend(i, Box::new(h.clone()));
                    msgs.push(format!("flowtable {tname}: XDP offload again"));
                }
                st.xdp[k].in_use = true;
            }
            None => {
                // an idle offload on the same devices (the flowtable was renamed or moved
                // to another table): taken up by this one
                let idle = st
                    .xdp
                    .iter()
                    .enumerate()
                    .position(|(k, x)| !x.in_use && !taken[k] && x.ports == t.ports);
                match idle {
                    Some(k) if env.io == Io::AfXdp => {
                        taken[k] = true;
                        let (table, ports) = (t.table.clone(), t.ports.clone());
                        let x = &mut st.xdp[k];
                        (x.table, x.name, x.ports) = (table, tname.clone(), ports);
                        x.in_use = true;
                        if let Some(h) = &x.handle {
                            st.router.offload_mut().set_backend(i, Box::new(h.clone()));
                            msgs.push(format!("flowtable {tname}: XDP offload again"));
                        }
                    }
                    _ => fresh.push(i),
                }
            }
        }
    }
    let mut k = 0;
    st.xdp.retain_mut(|x| {
        let keep = taken[k];
        k += 1;
        if keep {
            return true;
        }
        if env.io == Io::AfXdp && x.handle.is_some() {
            x.in_use = false;
            return true;
        }
        if x.handle.is_some() {
            msgs.push(format!("flowtable {}: XDP offload removed", x.name));
        }
        false
    });
    for i in fresh {
        let (x, m, _) = match (env.io, steering) {
            (Io::AfXdp, Some(s)) => {
                let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
                new_xdp_table(&mut st.router, i, env, Some(&mut s), loads)
            }
            _ => new_xdp_table(&mut st.router, i, env, None, loads),
        };
        msgs.extend(m);
        st.xdp.push(x);
    }
    msgs
}

pub fn run(a: Args) -> Result<ExitCode> {
    let io = a.io;
    let ifs = parse_interfaces(&a.interfaces)?;
    check_kernel_forwarding()?;
    // 1..=1024, checked by clap
    let workers = usize::try_from(a.workers).unwrap_or(1);
    // subscribe first, then dump, so no change falls between the two
    let mut monitor = Netlink::monitor()?;
    let mut nl = Netlink::open()?;
    let snap = nl.snapshot()?;
    let (topo, names) = topology(&snap, &ifs)?;
    // before anything is changed (aggregation, RPS masks, XDP programs, the guard table): a
    // signal from here on stops the run through its end, which undoes them, rather than
    // killing the process with all of them left in place
    let stop_flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop_flag.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop_flag.clone())?;
    // a run still serving this control socket owns the saved masks: leave them to it
    if std::os::unix::net::UnixStream::connect(&a.control).is_ok() {
        bail!("{} is in use by a running nft-offload", a.control.display());
    }
    // masks an earlier run changed and did not write back (whatever its `--io`)
    let rps_saved = rps_save_path(&a.control);
    for line in restore_saved_rps_masks(&rps_saved) {
        eprintln!("nft-offload: {line}");
    }
    let (no_aggregation, lines) = NoAggregation::apply(&ifs, io == Io::AfPacket);
    for line in lines {
        eprintln!("nft-offload: {line}");
    }
    let rx_away = (io == Io::AfPacket).then(|| {
        let (away, lines) = RxAway::apply(&ifs, &rps_saved);
        for line in lines {
            eprintln!("nft-offload: {line}");
        }
        away
    });
    let (ast, rules) = match load_ruleset(&a.ruleset, &topo) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let mut cfg = Config {
        offload: !a.no_offload,
        resolve_neighbours: true,
        log_capacity: 1000,
        // AF_PACKET sends a GSO packet whole with its virtio_net_hdr: the slow path's too
        gso_out: io == Io::AfPacket,
        ..Config::default()
    };
    cfg.conntrack.accounting = true;
    // Secrets of this run's own (simulations keep the fixed defaults, so that they repeat):
    // the hash seed of the conntrack and flowtable indexes and of NAT's port choice (a
    // remote sender who knew it could pick tuples that all land in one bucket), and the
    // `synproxy` SYN cookie key.
    let mut secret = None;
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let mut b = [0u8; 40];
        if std::io::Read::read_exact(&mut f, &mut b).is_ok() {
            let k =
                |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default());
            cfg.conntrack.seed = k(4);
            secret = Some([k(0), k(1), k(2), k(3)]);
        }
    }
    let n_if = topo.interfaces.len();
    let mut router = Router::new(topo, rules, cfg);
    if let Some(key) = secret {
        router.set_synproxy_secret(key);
    }
    // The router's time is `epoch.elapsed()`; the XDP offload's stats come in CLOCK_MONOTONIC.
    let epoch = Instant::now();
    let mono = nft_xdp::offload::monotonic_now();
    // `--io af_xdp` with `flags offload`: an interface takes one XDP program, the offload;
    // the steering program runs after it (its tail call) on what it does not forward.
    let mut chains = vec![];
    let mut xdp = vec![];
    let xdp_env = XdpEnv {
        ifs: ifs.clone(),
        mono,
        io,
        mode: a.xdp_mode.into(),
    };
    if !a.no_offload {
        let (lines, c, x) = xdp_offload(&mut router, &xdp_env);
        for line in lines {
            eprintln!("nft-offload: {line}");
        }
        chains = c;
        xdp = x;
    }
    let (backends, sets, steering) = match io {
        Io::AfPacket => (
            open_backends(
                io,
                &ifs,
                workers,
                a.rx_ring_mib
                    .unwrap_or(if a.rx_ring == RxRing::V3 { 16 } else { 2 }),
                a.rx_ring == RxRing::V3,
                a.rx_slot,
            )?,
            vec![],
            None,
        ),
        Io::AfXdp => {
            let (sets, steering) = run_afxdp::open(&ifs, workers, &snap.addrs, chains, a.napi)?;
            (vec![], sets, Some(Arc::new(Mutex::new(steering))))
        }
    };
    let guard = if a.no_guard {
        None
    } else {
        Some(Guard::install(
            &ifs.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>(),
        )?)
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            router,
            ast,
            routes: snap.routes.clone(),
            addrs: snap.addrs.clone(),
            tx_dropped: vec![0; n_if],
            xdp,
        }),
        xdp_env,
        names: names.clone(),
        epoch,
        kick: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        worker_cpu_ns: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        io_stats: Mutex::new(vec![vec![AfPacketStats::default(); n_if]; workers]),
        tx_bad_port: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        workers,
        steering: steering.clone(),
        local_senders: ifs
            .iter()
            .map(|(_, n)| !Path::new("/sys/class/net").join(n).join("device").exists())
            .collect(),
        lock_taken: AtomicU64::new(0),
        lock_contended: AtomicU64::new(0),
        lock_wait_ns: AtomicU64::new(0),
        reloads: Mutex::new(ReloadStats::default()),
    });

    // neighbour resolution, asked of the kernel
    let (rtx, rrx) = mpsc::channel::<(usize, IpAddr)>();
    {
        let names = names.clone();
        std::thread::Builder::new()
            .name("resolve".into())
            .spawn(move || {
                let mut recent: HashMap<(usize, IpAddr), Instant> = HashMap::new();
                while let Ok((i, ip)) = rrx.recv() {
                    let now = Instant::now();
                    if recent
                        .get(&(i, ip))
                        .is_some_and(|t| now.duration_since(*t) < Duration::from_millis(500))
                    {
                        continue;
                    }
                    recent.insert((i, ip), now);
                    if recent.len() > 4096 {
                        recent.retain(|_, t| now.duration_since(*t) < Duration::from_secs(1));
                    }
                    if let Some(&k) = names.kernel.get(i) {
                        if let Err(e) = nl.resolve(k, ip) {
                            eprintln!("nft-offload: {e:#}");
                        }
                    }
                }
            })?;
    }
    // kernel changes
    {
        let shared = shared.clone();
        let rtx = rtx.clone();
        let steering = steering.clone();
        std::thread::Builder::new()
            .name("netlink".into())
            .spawn(move || loop {
                match monitor.events() {
                    Ok(evs) => {
                        let mut st = shared.lock();
                        let addrs_changed = evs
                            .iter()
                            .any(|e| matches!(e, Event::AddrNew(_) | Event::AddrGone(_)));
                        for ev in evs {
                            apply_event(&mut st, &shared.names, ev, &rtx);
                        }
                        if st.router.held() > 0 {
                            shared.kick.store(true, Ordering::Relaxed);
                        }
                        // the steering programs follow the router's addresses
                        if let (true, Some(s)) = (addrs_changed, &steering) {
                            if let Err(e) = s
                                .lock()
                                .map_err(|_| anyhow!("poisoned"))
                                .and_then(|mut s| s.set_locals(&st.addrs))
                            {
                                eprintln!("nft-offload: {e:#}");
                            }
                        }
                    }
                    Err(e) => {
                        // ENOBUFS: events were lost; the next ones still apply
                        eprintln!("nft-offload: netlink: {e:#}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            })?;
    }
    let server = control::Server::bind(&a.control, shared.clone())?;
    let rx_budget = match a.rx_budget_kib {
        0 => usize::MAX,
        k => k.saturating_mul(1024),
    };
    let mut handles = vec![];
    for (wid, socks) in backends.into_iter().enumerate() {
        let shared = shared.clone();
        let rtx = rtx.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("worker{wid}"))
                .spawn(move || worker(shared, socks, wid, rtx, rx_budget))?,
        );
    }
    for (wid, set) in sets.into_iter().enumerate() {
        let shared = shared.clone();
        let rtx = rtx.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("worker{wid}"))
                .spawn(move || run_afxdp::worker(shared, set, wid, rtx))?,
        );
    }
    eprintln!(
        "nft-offload: routing on {} with {} worker(s), control socket {}",
        ifs.iter()
            .map(|(r, n)| if r.is_empty() {
                n.clone()
            } else {
                format!("{r}={n}")
            })
            .collect::<Vec<_>>()
            .join(", "),
        workers,
        a.control.display()
    );
    while !stop_flag.load(Ordering::Relaxed) {
        server.serve_pending();
        std::thread::sleep(Duration::from_millis(20));
    }
    shared.stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    drop(server);
    drop(guard);
    drop(no_aggregation);
    drop(rx_away);
    // detaches the steering programs (other threads may still hold the Arc): the kernel has
    // the interfaces back
    if let Some(s) = &steering {
        if let Ok(mut s) = s.lock() {
            s.detach();
        }
    }
    // the fast path's counts into conntrack, then the last word
    {
        let mut st = shared.lock();
        let now = shared.now();
        st.router.sync_offload(now);
    }
    print!("{}", control::stats_text(&shared));
    let taken = shared.lock_taken.load(Ordering::Relaxed);
    let contended = shared.lock_contended.load(Ordering::Relaxed);
    eprintln!(
        "nft-offload: router lock taken {taken} times, {contended} of them held by another \
         thread ({:.2}%), {:.3} ms waited in all",
        100.0 * contended as f64 / taken.max(1) as f64,
        shared.lock_wait_ns.load(Ordering::Relaxed) as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{Addr, Link, Neigh, Snapshot};

    /// `--rx-slot`: a multiple of 16 that holds a tpacket2 header and a minimal frame and fits a
    /// 256 KiB block; the old geometry's slot for the largest super-packet is one.
    #[test]
    fn rx_slot_argument() {
        for ok in ["128", "2048", "65632", "262144"] {
            assert_eq!(parse_rx_slot(ok), Ok(ok.parse().unwrap()), "{ok}");
        }
        for bad in ["0", "112", "2047", "2056x", "262160", "-16"] {
            assert!(parse_rx_slot(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn interfaces_argument() {
        assert_eq!(
            parse_interfaces("lan=eth0, wan=eth1").unwrap(),
            vec![
                ("lan".to_string(), "eth0".to_string()),
                ("wan".to_string(), "eth1".to_string())
            ]
        );
        assert_eq!(
            parse_interfaces("eth0").unwrap(),
            vec![(String::new(), "eth0".to_string())]
        );
        let e = parse_interfaces("lan=eth0,wan=eth0").unwrap_err();
        assert_eq!(e.to_string(), "--interfaces: eth0 is named twice");
        assert!(parse_interfaces("").is_err());
        assert!(parse_interfaces("lan=averyveryverylongname").is_err());
    }

    #[test]
    fn io_argument_names_and_aliases() {
        use clap::ValueEnum;
        for (s, io) in [
            ("af_packet", Io::AfPacket),
            ("afpacket", Io::AfPacket),
            ("af_xdp", Io::AfXdp),
            ("afxdp", Io::AfXdp),
        ] {
            assert_eq!(Io::from_str(s, false), Ok(io), "{s}");
        }
        assert!(Io::from_str("dpdk", false).is_err());
    }

    #[test]
    fn topology_from_a_kernel_snapshot() {
        let mut s = Snapshot::default();
        for (ifindex, name, up) in [(2, "eth0", true), (3, "eth1", false), (4, "other", true)] {
            s.links.insert(
                ifindex,
                Link {
                    ifindex,
                    name: name.into(),
                    mac: [2, 0, 0, 0, 0, ifindex as u8],
                    mtu: 1500 - ifindex,
                    up,
                    kind: String::new(),
                },
            );
        }
        s.addrs = vec![
            Addr {
                ifindex: 2,
                addr: "198.18.1.1".parse().unwrap(),
                len: 24,
            },
            Addr {
                ifindex: 3,
                addr: "2001:db8:2::1".parse().unwrap(),
                len: 64,
            },
            Addr {
                ifindex: 4,
                addr: "198.18.9.1".parse().unwrap(),
                len: 24,
            },
        ];
        s.routes = vec![
            KRoute {
                dst: "0.0.0.0".parse().unwrap(),
                len: 0,
                kind: KRouteKind::Unicast {
                    oif: 3,
                    via: Some("198.18.2.254".parse().unwrap()),
                },
            },
            // through an interface that is not ours: left out
            KRoute {
                dst: "10.0.0.0".parse().unwrap(),
                len: 8,
                kind: KRouteKind::Unicast { oif: 4, via: None },
            },
            KRoute {
                dst: "203.0.113.0".parse().unwrap(),
                len: 24,
                kind: KRouteKind::Blackhole,
            },
        ];
        s.neighbours = vec![
            Neigh {
                ifindex: 3,
                ip: "198.18.2.254".parse().unwrap(),
                mac: Some([2, 0, 0, 0, 0, 0xfe]),
                failed: false,
            },
            Neigh {
                ifindex: 2,
                ip: "198.18.1.7".parse().unwrap(),
                mac: None,
                failed: false,
            },
        ];
        let ifs = parse_interfaces("wan=eth1,lan=eth0").unwrap();
        let (t, names) = topology(&s, &ifs).unwrap();
        assert_eq!(names.kernel, vec![3, 2]);
        assert_eq!(
            t.interfaces
                .iter()
                .map(|i| (i.name.as_str(), i.index, i.mtu, i.up))
                .collect::<Vec<_>>(),
            vec![("eth1", 0, 1497, false), ("eth0", 1, 1498, true)]
        );
        assert_eq!(
            t.interfaces[1].addresses,
            vec![("198.18.1.1".parse().unwrap(), 24)]
        );
        assert_eq!(t.routes.len(), 2);
        assert_eq!(
            t.routes[0].kind,
            RouteKind::Unicast(NextHop {
                ifindex: 0,
                via: Some("198.18.2.254".parse().unwrap())
            })
        );
        assert_eq!(t.routes[1].kind, RouteKind::Blackhole);
        assert_eq!(t.neighbours.len(), 1);
        assert_eq!(
            t.neighbours.get(&(0, "198.18.2.254".parse().unwrap())),
            Some(&[2, 0, 0, 0, 0, 0xfe])
        );
        let e = topology(&s, &parse_interfaces("lan=nope").unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no interface named \"nope\" in this network namespace"
        );
    }

    /// AF_PACKET's `virtio_net_hdr` into the slot and back out: a TSO packet keeps its GSO
    /// size and partial checksum, and leaves with the same header at its offsets; a GRO
    /// aggregate (checksum verified, not partial) gets the pseudo-header sum and goes on as
    /// partial; a partial checksum that is not TCP's or UDP's is completed here.
    #[test]
    fn virtio_headers_in_and_out() {
        use etherparse::PacketBuilder;
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .tcp(1000, 80, 7, 1000)
            .ack(9);
        let mut f = vec![];
        b.write(&mut f, &[5u8; 3000]).unwrap();
        let pseudo = nft_wire::checksum::pseudo_header(
            &"198.18.0.1".parse().unwrap(),
            &"198.18.0.2".parse().unwrap(),
            nft_wire::IpProtocol::Tcp,
            3020,
        );
        let mut partial = f.clone();
        partial[50..52].copy_from_slice(&pseudo.to_be_bytes());
        let tso = VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            gso_type: VnetHdr::GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut slot = FrameSlot::new(0, &partial);
        assert!(rx_offload(&mut slot, &tso));
        assert_eq!(
            slot.offload,
            Offload {
                gso_size: 1448,
                csum_start: 34
            }
        );
        assert_eq!(slot.frame(), &partial[..]);
        assert_eq!(tx_vnet(&slot, &tso), tso);
        // the slow path's walked super-packet leaves with the header the sender's had
        assert_eq!(tx_vnet_walked(slot.frame(), &slot.offload), tso);
        let mut cwr = partial.clone();
        cwr[47] |= 0x80;
        assert_eq!(
            tx_vnet_walked(&cwr, &slot.offload).gso_type,
            VnetHdr::GSO_TCPV4 | VnetHdr::GSO_ECN
        );
        assert_eq!(
            tx_vnet_walked(&f, &Offload::default()).gso_type,
            VnetHdr::GSO_NONE
        );
        // TCP over IPv6: GSO_TCPV6, the transport header at 54
        let (a6, b6) = (
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        );
        let mut f6 = vec![];
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(a6, b6, 64)
            .tcp(1000, 80, 7, 1000)
            .ack(9)
            .write(&mut f6, &[5u8; 3000])
            .unwrap();
        let o6 = Offload {
            gso_size: 1428,
            csum_start: 54,
        };
        assert_eq!(
            tx_vnet_walked(&f6, &o6),
            VnetHdr {
                flags: VnetHdr::NEEDS_CSUM,
                gso_type: VnetHdr::GSO_TCPV6,
                hdr_len: 74,
                gso_size: 1428,
                csum_start: 54,
                csum_offset: 16,
            }
        );

        let gro = VnetHdr {
            flags: VnetHdr::DATA_VALID,
            csum_start: 0,
            csum_offset: 0,
            ..tso
        };
        let mut slot = FrameSlot::new(0, &f);
        assert!(rx_offload(&mut slot, &gro));
        assert_eq!(slot.offload.csum_start, 34);
        assert_eq!(
            slot.frame(),
            &partial[..],
            "the pseudo-header sum in the field"
        );
        let out = tx_vnet(&slot, &gro);
        assert_eq!(
            (out.flags, out.csum_start, out.csum_offset),
            (VnetHdr::NEEDS_CSUM, 34, 16)
        );

        // a plain frame leaves with an empty header
        let mut slot = FrameSlot::new(0, &f);
        assert!(!rx_offload(&mut slot, &VnetHdr::default()));
        assert_eq!(tx_vnet(&slot, &VnetHdr::default()), VnetHdr::default());

        // an SCTP-like partial (CRC32c at 8): completed here, the frame plain
        let sctp = VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 8,
            ..VnetHdr::default()
        };
        let mut slot = FrameSlot::new(0, &f);
        assert!(!rx_offload(&mut slot, &sctp));
        assert!(slot.offload.is_plain());
    }

    /// A tunnel's frame (VXLAN over UDP, an inner TCP segment) whose partial checksum is the
    /// inner one: completed where the header says and the frame goes on plain; as a GSO packet
    /// (its type the inner TCP's, its segments not the outer UDP's) it is not cut or followed
    /// either, and leaves with an empty header.
    #[test]
    fn a_tunnels_inner_partial_checksum_is_completed_and_its_gso_not_followed() {
        use etherparse::PacketBuilder;
        let (a, b) = ([10, 200, 0, 1], [10, 200, 0, 2]);
        let mut inner = vec![];
        PacketBuilder::ethernet2([2, 0, 0, 0, 9, 1], [2, 0, 0, 0, 9, 2])
            .ipv4(a, b, 64)
            .tcp(5000, 80, 1, 1000)
            .ack(1)
            .write(&mut inner, &[7u8; 2000])
            .unwrap();
        let good = inner[50..52].to_vec();
        let pseudo = nft_wire::checksum::pseudo_header(
            &std::net::IpAddr::from(a),
            &std::net::IpAddr::from(b),
            nft_wire::IpProtocol::Tcp,
            2020,
        );
        inner[50..52].copy_from_slice(&pseudo.to_be_bytes());
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        vx.extend_from_slice(&inner);
        let mut f = vec![];
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .udp(50001, 4789)
            .write(&mut f, &vx)
            .unwrap();
        // the inner TCP header: outer 14 + 20 + 8, VXLAN 8, inner link 14 and IP 20
        let (start, field) = (84, 84 + 16);
        assert_eq!(f[field..field + 2], pseudo.to_be_bytes());
        let mut want = f.clone();
        want[field..field + 2].copy_from_slice(&good);
        let partial = VnetHdr {
            flags: VnetHdr::NEEDS_CSUM,
            csum_start: start as u16,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        let gso = VnetHdr {
            gso_type: VnetHdr::GSO_TCPV4,
            gso_size: 1000,
            hdr_len: 138,
            ..partial
        };
        for v in [partial, gso] {
            let mut slot = FrameSlot::new(0, &f);
            assert!(!rx_offload(&mut slot, &v), "{v:?}");
            assert!(slot.offload.is_plain(), "{v:?}");
            assert_eq!(
                slot.frame(),
                &want[..],
                "{v:?}: the inner checksum completed"
            );
            assert_eq!(tx_vnet(&slot, &v), VnetHdr::default());
        }
        // the outer UDP checksum partial but a TCP GSO type (the segments are the inner
        // TCP's): completed there, not followed
        let outer = VnetHdr {
            csum_start: 34,
            csum_offset: 6,
            ..gso
        };
        let mut slot = FrameSlot::new(0, &want);
        slot.frame_mut()[40..42].copy_from_slice(&[0, 0]);
        assert!(!rx_offload(&mut slot, &outer));
        assert!(slot.offload.is_plain());
        assert_eq!(tx_vnet(&slot, &outer), VnetHdr::default());
        assert_ne!(slot.frame()[40..42], [0, 0], "the outer checksum completed");
        // a GRO aggregate of the tunnel (checksums verified): left as it is, plain
        let gro = VnetHdr {
            flags: VnetHdr::DATA_VALID,
            csum_start: 0,
            csum_offset: 0,
            ..gso
        };
        let mut slot = FrameSlot::new(0, &want);
        assert!(!rx_offload(&mut slot, &gro));
        assert!(slot.offload.is_plain());
        assert_eq!(slot.frame(), &want[..]);
    }

    #[test]
    fn partial_checksums_are_completed() {
        for v6 in [false, true] {
            for tcp in [false, true] {
                let b = ip_builder(v6);
                let payload = b"some payload, odd length";
                let mut good = vec![];
                if tcp {
                    b.tcp(1000, 80, 7, 1000)
                        .ack(9)
                        .write(&mut good, payload)
                        .unwrap();
                } else {
                    b.udp(1000, 53).write(&mut good, payload).unwrap();
                }
                // the same packet behind a VLAN tag and inside a PPPoE session
                let ip = &good[14..];
                let mut tagged = good[..12].to_vec();
                tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
                tagged.extend_from_slice(&good[12..]);
                let mut pppoe = good[..12].to_vec();
                pppoe.extend_from_slice(&[0x88, 0x64, 0x11, 0x00, 0x12, 0x34]);
                pppoe.extend_from_slice(&(ip.len() as u16 + 2).to_be_bytes());
                pppoe.extend_from_slice(if v6 { &[0x00, 0x57] } else { &[0x00, 0x21] });
                pppoe.extend_from_slice(ip);
                for (l2, good) in [(14, &good), (18, &tagged), (22, &pppoe)] {
                    let l4 = l2 + if v6 { 40 } else { 20 };
                    let field = l4 + if tcp { 16 } else { 6 };
                    let mut partial = good.clone();
                    partial[field] = 0x12;
                    partial[field + 1] = 0x34;
                    complete_l4_checksum(&mut partial);
                    assert_eq!(&partial, good, "v6 {v6} tcp {tcp} l2 {l2}");
                    // AF_XDP: known by content. The pseudo-header sum in the field, as a
                    // sender's stack leaves it for the hardware, is completed; any other
                    // value (a complete checksum, garbage) is left alone.
                    let (seg, f, pseudo, _) = l4_checksum_site(good).unwrap();
                    assert_eq!(seg.start + f, field);
                    let mut offloaded = good.clone();
                    offloaded[field..field + 2].copy_from_slice(&pseudo.to_be_bytes());
                    assert!(complete_partial_l4_checksum(&mut offloaded));
                    assert_eq!(&offloaded, good, "v6 {v6} tcp {tcp} l2 {l2}");
                    let mut same = good.clone();
                    assert!(!complete_partial_l4_checksum(&mut same));
                    assert_eq!(&same, good);
                    let mut other = good.clone();
                    other[field] ^= 0x40;
                    let before = other.clone();
                    assert!(!complete_partial_l4_checksum(&mut other));
                    assert_eq!(other, before);
                    // garbage stays garbage, without a panic
                    let mut short = good[..l4 + 4].to_vec();
                    complete_l4_checksum(&mut short);
                    assert_eq!(short, good[..l4 + 4]);
                }
            }
        }
    }

    /// An Ethernet frame builder from 198.18.0.1 to 198.18.0.2, or 2001:db8::1 to ::2.
    fn ip_builder(v6: bool) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        if v6 {
            let a = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
            b.ipv6(a("2001:db8::1"), a("2001:db8::2"), 64)
        } else {
            b.ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        }
    }

    /// The quick check says "nothing to complete" only where the full parse completes
    /// nothing and leaves the frame alone. Frames: IPv4 and IPv6, TCP and UDP, plain, padded,
    /// with IPv4 options, behind a VLAN tag, with an IPv6 extension header, each with a
    /// complete and with a partial checksum; then every value of every header byte and every
    /// truncation of each, as it is, with its IPv4 header checksum made right again, and with
    /// its L4 field then set to the pseudo-header sum the full parse finds (a partial checksum
    /// the quick check must not miss).
    #[test]
    fn the_quick_checksum_check_agrees_with_the_parse() {
        // the IPv4 header's checksum made right, where there is an IPv4 header
        let repair = |f: &mut Vec<u8>| {
            let l3 = if f.get(12..14) == Some(&[0x81, 0x00]) {
                18
            } else {
                14
            };
            if f.get(l3 - 2..l3) != Some(&[0x08, 0x00]) || f.len() < l3 + 20 {
                return;
            }
            let ihl = usize::from(f[l3] & 0x0f) * 4;
            if ihl < 20 || f.len() < l3 + ihl {
                return;
            }
            f[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
            let c = nft_wire::checksum::checksum(&f[l3..l3 + ihl]);
            f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        };
        // the L4 field set to the pseudo-header sum the full parse finds
        let partial = |f: &[u8]| -> Option<Vec<u8>> {
            let (seg, field, pseudo, _) = l4_checksum_site(f)?;
            let mut p = f.to_vec();
            let at = seg.start + field;
            p[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
            Some(p)
        };
        let mut frames = vec![];
        for v6 in [false, true] {
            for tcp in [false, true] {
                let b = ip_builder(v6);
                let mut good = vec![];
                if tcp {
                    b.tcp(1000, 80, 7, 1000)
                        .write(&mut good, b"odd payload")
                        .unwrap();
                } else {
                    b.udp(1000, 53).write(&mut good, b"odd payload").unwrap();
                }
                assert!(plainly_complete(&good), "v6 {v6} tcp {tcp}");
                // padded to more than its IP length, as a short frame arrives
                let mut padded = good.clone();
                padded.resize(good.len() + 9, 0);
                // behind a VLAN tag
                let mut tagged = good[..12].to_vec();
                tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
                tagged.extend_from_slice(&good[12..]);
                // IPv4 options (four NOPs) or an IPv6 hop-by-hop header (PadN), the checksum
                // the same: the pseudo-header does not cover them
                let mut longer = good[..14].to_vec();
                if v6 {
                    longer.extend_from_slice(&good[14..54]);
                    longer[20] = 0; // next header: hop-by-hop
                    let plen = u16::from_be_bytes([good[18], good[19]]) + 8;
                    longer[18..20].copy_from_slice(&plen.to_be_bytes());
                    longer.extend_from_slice(&[if tcp { 6 } else { 17 }, 0, 1, 4, 0, 0, 0, 0]);
                    longer.extend_from_slice(&good[54..]);
                } else {
                    longer.extend_from_slice(&good[14..34]);
                    longer[14] = 0x46;
                    let tl = u16::from_be_bytes([good[16], good[17]]) + 4;
                    longer[16..18].copy_from_slice(&tl.to_be_bytes());
                    longer.extend_from_slice(&[1, 1, 1, 1]);
                    longer.extend_from_slice(&good[34..]);
                    repair(&mut longer);
                }
                for f in [good, padded, tagged, longer] {
                    // each with its checksum left to the device: completed, never skipped
                    let p = partial(&f).unwrap_or_else(|| panic!("no site in {f:02x?}"));
                    assert!(!plainly_complete(&p), "{p:02x?}");
                    let mut done = p.clone();
                    assert!(complete_partial_l4_checksum(&mut done), "{p:02x?}");
                    assert_eq!(done, f);
                    frames.extend([f, p]);
                }
            }
        }
        let (mut quick, mut parsed) = (0, 0);
        for f in &frames {
            let mut variants = vec![];
            for i in 0..f.len().min(80) {
                for x in 0..=255u8 {
                    let mut v = f.clone();
                    v[i] = x;
                    variants.push(v);
                }
                variants.push(f[..i].to_vec());
            }
            for mut v in variants {
                for k in 0..3 {
                    match k {
                        0 => {}
                        1 => repair(&mut v),
                        _ => match partial(&v) {
                            Some(p) => v = p,
                            None => break,
                        },
                    }
                    let mut w = v.clone();
                    let changed = complete_partial_by_parse(&mut w);
                    if plainly_complete(&v) {
                        assert!(!changed, "{v:02x?}");
                        assert_eq!(w, v);
                        quick += 1;
                    } else if changed {
                        parsed += 1;
                    }
                }
            }
        }
        assert!(quick > 100_000 && parsed > 10_000, "{quick} {parsed}");
    }

    #[test]
    fn sctp_crc_left_to_the_device_is_completed() {
        use etherparse::{IpNumber, PacketBuilder};
        // an INIT from 5000 to 6000 (tag 0, as INIT carries), CRC32c field zero
        let mut sctp = vec![0x13, 0x88, 0x17, 0x70, 0, 0, 0, 0, 0, 0, 0, 0];
        sctp.extend_from_slice(&[1, 0, 0, 20]); // INIT, length 20
        sctp.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 0, 1]);
        for v6 in [false, true] {
            let b = ip_builder(v6);
            let mut zero = vec![];
            b.write(&mut zero, IpNumber::SCTP, &sctp).unwrap();
            let l4 = 14 + if v6 { 40 } else { 20 };
            assert_eq!(zero[l4 + 8..l4 + 12], [0, 0, 0, 0]);
            let mut good = zero.clone();
            nft_wire::checksum::fill_sctp(&mut good[l4..]);
            assert!(nft_wire::checksum::verify_sctp(&good[l4..]));
            assert_ne!(good, zero);
            // AF_PACKET, TP_STATUS_CSUMNOTREADY: whatever the field holds, the CRC is filled
            for field in [[0, 0, 0, 0], [1, 2, 3, 4]] {
                let mut partial = zero.clone();
                partial[l4 + 8..l4 + 12].copy_from_slice(&field);
                complete_l4_checksum(&mut partial);
                assert_eq!(partial, good, "v6 {v6}");
            }
            // AF_XDP: a zero CRC (what the sender's stack leaves for the device) is filled
            let mut offloaded = zero.clone();
            assert!(complete_partial_l4_checksum(&mut offloaded));
            assert_eq!(offloaded, good, "v6 {v6}");
            // a complete CRC, or a wrong non-zero one, is left alone
            let mut same = good.clone();
            assert!(!complete_partial_l4_checksum(&mut same));
            assert_eq!(same, good);
            let mut wrong = good.clone();
            wrong[l4 + 9] ^= 0x10;
            let before = wrong.clone();
            assert!(!complete_partial_l4_checksum(&mut wrong));
            assert_eq!(wrong, before);
            // shorter than the common header: left as it is, without a panic
            let mut short = vec![];
            let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(
                [198, 18, 0, 1],
                [198, 18, 0, 2],
                64,
            );
            b.write(&mut short, IpNumber::SCTP, &sctp[..10]).unwrap();
            let before = short.clone();
            complete_l4_checksum(&mut short);
            assert!(!complete_partial_l4_checksum(&mut short));
            assert_eq!(short, before);
        }
    }

    #[test]
    fn rps_masks_saved_are_written_back_at_the_next_start() {
        let dir = std::env::temp_dir().join(format!("nft-offload-rps-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut queues = vec![];
        for q in ["rx-0", "rx-1"] {
            std::fs::create_dir_all(dir.join(q)).unwrap();
            queues.push(dir.join(q).join("rps_cpus"));
        }
        let control = dir.join("ctl.sock");
        let saved = rps_save_path(&control);
        assert_eq!(saved, dir.join("ctl.sock.rps"));
        // no file: nothing to do
        assert!(restore_saved_rps_masks(&saved).is_empty());
        // a run saves the old masks, changes them, and is killed (no Drop)
        let olds = vec![
            (queues[0].clone(), "0000000f".to_string()),
            (queues[1].clone(), "00000000,00000003".to_string()),
        ];
        save_rps_masks(&saved, &olds).unwrap();
        std::fs::write(&queues[0], "00000001").unwrap();
        std::fs::write(&queues[1], "00000000,00000001").unwrap();
        // the next start writes them back and removes the file
        let msgs = restore_saved_rps_masks(&saved);
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert_eq!(std::fs::read_to_string(&queues[0]).unwrap(), "0000000f");
        assert_eq!(
            std::fs::read_to_string(&queues[1]).unwrap(),
            "00000000,00000003"
        );
        assert!(!saved.exists());
        assert!(restore_saved_rps_masks(&saved).is_empty());
        // a clean exit (Drop) writes them back and removes the file
        save_rps_masks(&saved, &olds[..1]).unwrap();
        std::fs::write(&queues[0], "00000001").unwrap();
        drop(RxAway {
            restore: olds[..1].to_vec(),
            saved: Some(saved.clone()),
        });
        assert_eq!(std::fs::read_to_string(&queues[0]).unwrap(), "0000000f");
        assert!(!saved.exists());
        // a damaged file: lines that are not an rps_cpus path and a mask are not written
        let other = dir.join("other");
        std::fs::write(&other, "keep").unwrap();
        std::fs::write(
            &saved,
            format!(
                "{}\t0000000f\n{}\tzz\ngarbage\n",
                other.display(),
                queues[1].display()
            ),
        )
        .unwrap();
        let msgs = restore_saved_rps_masks(&saved);
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs.iter().all(|m| m.starts_with("warning")), "{msgs:?}");
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "keep");
        assert_eq!(
            std::fs::read_to_string(&queues[1]).unwrap(),
            "00000000,00000003"
        );
        assert!(!saved.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn transmit_retries_a_full_queue_a_bounded_number_of_times() {
        let frames: Vec<&[u8]> = vec![b"a", b"b", b"c", b"d", b"e"];
        // a queue that stays full: TX_TRIES attempts, then all five are dropped
        let mut calls = 0;
        assert_eq!(
            send_bounded(&frames, |_| {
                calls += 1;
                0
            }),
            5
        );
        assert_eq!(calls, TX_TRIES);
        // two taken, then a full queue for good: three dropped, in order from the third
        let mut seen = vec![];
        let left = send_bounded(&frames, |f| {
            if seen.len() < 2 {
                seen.push(f[0][0]);
                1
            } else {
                0
            }
        });
        assert_eq!((left, seen), (3, vec![b'a', b'b']));
        // a queue that is full twice, then takes everything: nothing dropped
        let mut full = 2;
        let left = send_bounded(&frames, |f| {
            if full > 0 {
                full -= 1;
                0
            } else {
                f.len()
            }
        });
        assert_eq!(left, 0);
        // a backend that claims more than it was given cannot make the count wrap
        assert_eq!(send_bounded(&frames, |_| 99), 0);
    }

    #[test]
    fn cpu_masks_as_sysfs_prints_them() {
        assert_eq!(parse_cpu_mask("2\n"), Some(vec![1]));
        assert_eq!(parse_cpu_mask("0"), Some(vec![]));
        assert_eq!(parse_cpu_mask("00000001,00000005"), Some(vec![0, 2, 32]));
        assert_eq!(parse_cpu_mask("xyz"), None);
        assert_eq!(format_cpu_mask(&[], 1), "00000000");
        assert_eq!(format_cpu_mask(&[0, 2, 32], 1), "00000001,00000005");
        assert_eq!(format_cpu_mask(&[1], 2), "00000000,00000002");
        assert_eq!(cpu_list("0-2,5\n"), vec![0, 1, 2, 5]);
        assert_eq!(cpu_list(""), Vec::<usize>::new());
    }

    #[test]
    fn guard_table_names_our_interfaces() {
        let g = guard_ruleset(&["eth0".into(), "eth1".into()]);
        assert!(g.starts_with("table inet nft_offload_run {"));
        assert!(g.contains("iifname != { \"eth0\", \"eth1\" } accept"));
        assert!(g.contains("priority -500"));
        assert!(g.contains("table netdev nft_offload_run {"));
        assert!(g.contains("hook ingress devices = { \"eth0\", \"eth1\" } priority -500"));
        // our own parser takes it, as nft does
        let opts = LoadOpts::default();
        nft_lang::ruleset::load_str("guard", &g, &opts).unwrap();
    }
}
