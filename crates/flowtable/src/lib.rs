//! Flowtables as Linux's `nf_flow_table` has them, in user space: offloaded connections with both
//! directions, a rewrite plan computed once at admission, a small fast path that only looks up,
//! rewrites, counts or punts, and a GC that hands idle flows back to conntrack.
//!
//! One file per plane, as in the kernel:
//! * [`admit`](Flowtable::admit) — `flow add @ft` (`nft_flow_offload.c`): the kernel's admission
//!   rules, then the entry and its plan;
//! * [`process_burst`](Flowtable::process_burst) — the per-packet hook (`nf_flow_table_ip.c`),
//!   in `fastpath.rs`;
//! * [`gc`](Flowtable::gc), teardown, listing — the lifecycle (`nf_flow_table_core.c`);
//! * [`OffloadBackend`] — hardware entries pushed asynchronously (`nf_flow_table_offload.c`).
//!
//! Time is always an argument; nothing here reads a clock, allocates on the fast path, or
//! panics on any input.
//!
//! # The listing line
//!
//! [`Flowtable::list`] prints one line per flow:
//!
//! ```text
//! flow 3 tcp original src=192.168.1.10 dst=1.1.1.1 sport=40000 dport=443 in=0 nat src=203.0.113.1 sport=61000 out=1 vlan=7 packets=12 bytes=960 reply src=1.1.1.1 dst=203.0.113.1 sport=443 dport=61000 in=1 nat dst=192.168.1.10 dport=40000 out=0 packets=10 bytes=5200 idle=3s [closing]
//! ```
//!
//! Each direction has its tuple as it arrives (`conntrack -L` spelling), the ingress port, the
//! fields NAT changes (`nat` and the new values, absent without NAT), the egress port with its
//! encapsulation, and the packets and bytes (IP length) forwarded on the fast path. `idle` is
//! the time since the flow was last refreshed (refreshes happen at most once a second), then
//! flags: `[closing]` (FIN or RST seen), `[teardown]` (leaves at the next GC), `[hw]` (in the
//! offload backend), `[hw-pending]`.

#![forbid(unsafe_code)]

mod admit;
mod backend;
mod fastpath;
mod flow;
mod index;

#[cfg(test)]
mod tests;

pub use admit::{Admission, Family, NotAdmitted};
pub use backend::{BackendEvent, DirSpec, FlowId, FlowSpec, OffloadBackend, SoftwareOnly};
pub use fastpath::{Action, FrameSlot, Offload, Punt, SlotBuf, TraceRecord, HEADROOM};
pub use flow::{Egress, Encap, Mac, Mangles, Path, Port};

use crate::flow::{Cold, Hot, Key, Link, CLOSING, FLOW_FLAGS, HW, HW_PENDING, STALE, TEARDOWN};
use crate::index::Index;
use core::fmt::Write as _;
use core::time::Duration;
use nft_conntrack::{ConnId, Counter, Direction, Status, Table, Tuple};

/// The default limit: as many flows as conntrack's default table has connections, since each
/// flow holds one; beyond it `flow add` is refused (counted) and the connection stays on the
/// slow path.
pub const DEFAULT_MAX_FLOWS: usize = 65_536;

/// The kernel's flowtable idle timeout (`NF_FLOW_TIMEOUT`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A refresh is written only when it moves the flow's time by at least this much.
const REFRESH_MS: u64 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The flowtable's name, for listings.
    pub name: String,
    /// `devices = { ... }`: the ports whose ingress the fast path sits on. Both directions'
    /// ingress ports must be among them for a flow to be admitted.
    pub devices: Vec<Port>,
    /// Flows held at most; admission beyond it is refused.
    pub max_flows: usize,
    /// Idle flows leave after this long (TCP and UDP alike).
    pub idle_timeout: Duration,
    /// `counter`: fast-path packets count on the conntrack entry.
    pub counter: bool,
    /// `flags offload`: flows are also pushed to the [`OffloadBackend`].
    pub hw_offload: bool,
    /// Punt every TCP segment but a plain ACK (PSH, URG, ECE, CWR allowed): SYN, FIN, RST and
    /// flag combinations conntrack calls invalid; FIN and RST also tear the flow down. The
    /// kernel forwards FIN/RST and marks the flow closing; a router that must keep conntrack
    /// exactly as without offload (the engine) lets the slow path see every segment that can
    /// change a connection's state.
    pub punt_tcp_control: bool,
    /// Seeds the lookup hash.
    pub seed: u64,
    /// Per-packet trace records kept (0: tracing off). Records are fixed-size and written
    /// into a ring allocated here, never on the fast path.
    pub trace_capacity: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            name: "ft".into(),
            devices: Vec::new(),
            max_flows: DEFAULT_MAX_FLOWS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            counter: false,
            hw_offload: false,
            punt_tcp_control: false,
            seed: 0x666c_6f77_7461_626c,
            trace_capacity: 0,
        }
    }
}

/// Counters of the flowtable, each drop or punt by reason (VPP's error counters).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    /// Packets forwarded on the fast path.
    pub forwarded: u64,
    /// Packets handed to the slow path, by [`Punt::index`].
    pub punts: [u64; Punt::COUNT],
    pub admitted: u64,
    /// `flow add` refused, by [`NotAdmitted::index`] (`table_full` among them).
    pub not_admitted: [u64; NotAdmitted::COUNT],
    /// Flows that left: idle, torn down (FIN/SYN, route, port, explicit), or whose
    /// connection went away.
    pub expired_idle: u64,
    pub torn_down: u64,
    pub conn_gone: u64,
    pub hw_added: u64,
    pub hw_failed: u64,
    /// Hardware flows pushed again with a new plan after a route or link change.
    pub hw_repushed: u64,
}

impl Stats {
    pub fn punt(&self, p: Punt) -> u64 {
        self.punts[p.index()]
    }

    pub fn refused(&self, r: NotAdmitted) -> u64 {
        self.not_admitted[r.index()]
    }
}

/// What one GC pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcReport {
    pub removed: usize,
    pub remaining: usize,
}

/// Memory an offloaded flow costs here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `size_of` one slab slot (the entry and its generation).
    pub entry_bytes: usize,
    /// Index bytes per flow at the configured limit (two keys, half-full table).
    pub index_bytes_per_flow: usize,
    /// Both, per flow.
    pub bytes_per_flow: usize,
    /// Allocated now for the slab and the index.
    pub allocated: usize,
}

/// What one offloaded connection costs in memory with `conns` of them, conntrack and
/// flowtable together: the connection's slot (which also holds what the engine keeps per
/// connection for offload: the ports each direction arrived on, the flow's handle) and its
/// share of conntrack's indexes (every connection source-NATed), plus the flow's line, its
/// cold part and its share of the flow index (a flowtable sized for `conns` flows).
///
/// Counted too: conntrack's early-drop queue, one `ConnId` ([`EARLY_DROP_QUEUE_BYTES`]) per
/// connection confirmed since the queue was last pruned (assured connections, offloaded ones
/// among them, leave it only when it holds more than twice the table plus 64, so up to
/// twice that for a while; once in `bench`, whose connections are all still queued).
///
/// Heap parts not counted here:
/// * the free lists of the conntrack and flow slabs: 4 bytes per freed slot, at their
///   high-water mark, none per live connection;
/// * the flowtable's links: one per distinct egress and next hop (a few per router, shared
///   by every flow through it; GC frees unused ones);
/// * what only some connections have: counters with conntrack accounting (48 bytes, with
///   where `counter`'s syncs stand), a flow's marks, IPv6 addresses or counts past 2^31
///   packets (one box), a connection's labels, helper or wide masquerade interface (one box
///   of 48 bytes), the engine's map of replayed mangles.
pub fn bytes_per_offloaded_connection(conns: usize) -> usize {
    Table::memory_per_conn(conns).bytes_per_conn
        + EARLY_DROP_QUEUE_BYTES
        + Flowtable::<SoftwareOnly>::memory_per_flow_with(conns, true).bytes_per_flow
}

/// What a confirmed connection holds in conntrack's early-drop queue (its `ConnId`) until
/// the queue is next pruned.
pub const EARLY_DROP_QUEUE_BYTES: usize = core::mem::size_of::<ConnId>();

/// A read-only view of one flow, for listings and re-routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowInfo {
    pub id: FlowId,
    pub conn: ConnId,
    /// Each direction's tuple as it arrives, by conntrack direction.
    pub tuples: [Tuple; 2],
    pub paths: [Path; 2],
    pub counters: [Counter; 2],
    pub idle: Duration,
    pub closing: bool,
    pub teardown: bool,
    pub hw: bool,
}

/// A flowtable and its fast path. `B` is the hardware backend ([`SoftwareOnly`] when there is
/// none).
pub struct Flowtable<B: OffloadBackend = SoftwareOnly> {
    cfg: Config,
    /// Per flow, both directions in one line, apart from the rest so that the fast path's
    /// working set is 64 bytes a flow.
    hot: Vec<Hot>,
    cold: Vec<Cold>,
    /// Per slot: its generation (a [`FlowId`] names one flow of the slot), and the flow's
    /// backend state (`HW`, `HW_PENDING`).
    gens: Vec<u32>,
    hw: Vec<u8>,
    /// The distinct egresses flows leave through (interfaces and next hops). GC frees the
    /// ones no flow uses any more: their slots are reused, free ones at the end dropped.
    links: Vec<Link>,
    /// The links in use, to their slot.
    link_ix: std::collections::HashMap<Link, u16>,
    /// Free slots of `links`.
    link_free: Vec<u16>,
    free: Vec<u32>,
    len: usize,
    index: Index,
    /// Ports that are down, by port number (unknown ports are up); empty while all are up.
    port_down: Vec<bool>,
    fib_gen: u32,
    stats: Stats,
    backend: B,
    events: Vec<BackendEvent>,
    trace: Vec<TraceRecord>,
    trace_next: usize,
    /// Frames punted by `finish` since the table was made (wrapping): a burst's forwarded
    /// frames are its frames less the punts, with nothing counted per hit.
    punted: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Flowtable<SoftwareOnly> {
    pub fn new(cfg: Config) -> Flowtable<SoftwareOnly> {
        Flowtable::with_backend(cfg, SoftwareOnly)
    }
}

impl<B: OffloadBackend> Flowtable<B> {
    pub fn with_backend(cfg: Config, backend: B) -> Flowtable<B> {
        // Flow indices must leave the top value of the index's slot word free.
        let max = cfg.max_flows.min((u32::MAX >> 2) as usize);
        let index = Index::new(max.saturating_mul(2), cfg.seed);
        let trace = Vec::with_capacity(cfg.trace_capacity);
        Flowtable {
            cfg: Config {
                max_flows: max,
                ..cfg
            },
            hot: Vec::new(),
            cold: Vec::new(),
            gens: Vec::new(),
            hw: Vec::new(),
            links: Vec::new(),
            link_ix: std::collections::HashMap::new(),
            link_free: Vec::new(),
            free: Vec::new(),
            len: 0,
            index,
            port_down: Vec::new(),
            fib_gen: 0,
            stats: Stats::default(),
            backend,
            events: Vec::new(),
            trace,
            trace_next: 0,
            punted: 0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The FIB generation routes are looked up under now. Flows routed under another one go
    /// back to the slow path (beyond the kernel: a route change is noticed), unless
    /// [`reroute`](Self::reroute) moved them first.
    pub fn set_fib_generation(&mut self, gen: u64) {
        let gen = gen as u32;
        if gen == self.fib_gen {
            return;
        }
        self.fib_gen = gen;
        // Every flow was routed under an older generation. Marked here, on the rare change,
        // so that a packet reads a flag of its own line.
        for (h, c) in self.hot.iter_mut().zip(&self.cold) {
            if c.live() {
                h.flags |= STALE;
            }
        }
    }

    /// The index of the link for an egress whose next hop's frames arrive on `rx_port`,
    /// added if new; `None` when the table of links is full.
    fn link(&mut self, e: &Egress, rx_port: Port) -> Option<u16> {
        let l = Link::new(e, rx_port);
        if let Some(&i) = self.link_ix.get(&l) {
            return Some(i);
        }
        let i = match self.link_free.pop() {
            Some(i) => {
                *self.links.get_mut(usize::from(i))? = l;
                i
            }
            None => {
                let i = u16::try_from(self.links.len()).ok()?;
                self.links.push(l);
                i
            }
        };
        self.link_ix.insert(l, i);
        Some(i)
    }

    /// Frees the links no live flow leaves or arrives through (GC, control plane): their
    /// slots are reused by [`link`](Self::link), and free slots at the end are dropped.
    fn free_unused_links(&mut self) {
        if self.len == 0 {
            self.links.clear();
            self.link_ix.clear();
            self.link_free.clear();
            return;
        }
        let mut used = vec![false; self.links.len()];
        for (h, _) in self.hot.iter().zip(&self.cold).filter(|(_, c)| c.live()) {
            for &l in &h.link {
                if let Some(u) = used.get_mut(usize::from(l)) {
                    *u = true;
                }
            }
        }
        self.link_ix
            .retain(|_, i| used.get(usize::from(*i)).copied().unwrap_or(false));
        let mut n = self.links.len();
        while n > 0 && !used[n - 1] {
            n -= 1;
        }
        self.links.truncate(n);
        self.link_free.clear();
        self.link_free
            .extend((0..n).filter(|&i| !used[i]).map(|i| i as u16));
        if self.links.capacity() > 2 * n.max(4) {
            self.links.shrink_to_fit();
        }
    }

    fn link_at(&self, i: u16) -> Link {
        self.links
            .get(usize::from(i))
            .copied()
            .unwrap_or(Link::new(&Egress::default(), 0))
    }

    /// Direction `d`'s ingress port: where the next hop of the other direction's egress
    /// sends from.
    fn in_port(&self, h: &Hot, d: usize) -> Port {
        self.link_at(h.link[(1 - d) & 1]).rx_port
    }

    /// Sets flow-wide flags.
    fn set_flags(&mut self, idx: usize, flags: u8) {
        if let Some(h) = self.hot.get_mut(idx) {
            h.flags |= flags & FLOW_FLAGS;
        }
    }

    fn live(&self, id: FlowId) -> bool {
        self.cold.get(id.idx as usize).is_some_and(Cold::live)
            && self.gen_at(id.idx as usize) == id.gen
    }

    fn gen_at(&self, i: usize) -> u32 {
        self.gens.get(i).copied().unwrap_or(0)
    }

    fn hw_at(&self, i: usize) -> u8 {
        self.hw.get(i).copied().unwrap_or(0)
    }

    /// An interface went up or down. Down, its flows are torn down as well (the kernel's
    /// netdev notifier); packets arriving for it meanwhile go to the slow path.
    pub fn set_port_up(&mut self, port: Port, up: bool) {
        let i = port as usize;
        if self.port_down.len() <= i {
            self.port_down.resize(i + 1, false);
        }
        self.port_down[i] = !up;
        if !self.port_down.contains(&true) {
            // all up: the fast path skips the check
            self.port_down.clear();
        }
        if !up {
            self.teardown_port(port);
        }
    }

    /// The flow a connection is offloaded to, if any (a walk: control plane only).
    pub fn find_conn(&self, conn: ConnId) -> Option<FlowId> {
        self.cold.iter().enumerate().find_map(|(i, c)| {
            (c.live() && c.conn() == Some(conn)).then_some(FlowId {
                idx: i as u32,
                gen: self.gen_at(i),
            })
        })
    }

    /// The flow whose direction `dir` has this tuple, arriving on `port`.
    pub fn lookup(&self, t: &Tuple, port: Port) -> Option<(FlowId, Direction)> {
        let key = Key::from_tuple(t, port);
        let v = self.find(&key, self.index.hash(&key))?;
        let idx = v >> 1;
        let dir = if v & 1 == 0 {
            Direction::Original
        } else {
            Direction::Reply
        };
        Some((
            FlowId {
                idx,
                gen: self.gen_at(idx as usize),
            },
            dir,
        ))
    }

    #[inline]
    fn find(&self, key: &Key, h: u64) -> Option<u32> {
        fastpath::find(&self.index, &self.hot, &self.cold, &self.links, key, h)
    }

    /// Marks a flow for removal at the next GC; its packets go to the slow path meanwhile.
    pub fn teardown(&mut self, id: FlowId) -> bool {
        if !self.live(id) {
            return false;
        }
        self.set_flags(id.idx as usize, TEARDOWN);
        true
    }

    /// Tears down the flows that enter or leave through `port` (an interface went down).
    pub fn teardown_port(&mut self, port: Port) -> usize {
        let mut n = 0;
        for i in 0..self.cold.len() {
            let (Some(c), Some(h)) = (self.cold.get(i), self.hot.get(i)) else {
                continue;
            };
            let uses = h.link.iter().any(|&l| {
                let l = self.link_at(l);
                l.port == port || l.rx_port == port
            });
            if c.live() && uses && !h.has(TEARDOWN) {
                self.set_flags(i, TEARDOWN);
                n += 1;
            }
        }
        n
    }

    /// After a route change: asks `route` for each flow's new paths (by conntrack direction)
    /// and moves the flow to them under generation `gen`, or tears it down when `route` gives
    /// `None` (no route, or a path the fast path cannot take). Control plane, not per packet.
    pub fn reroute(
        &mut self,
        ct: &mut Table,
        gen: u64,
        mut route: impl FnMut(&FlowInfo) -> Option<[Path; 2]>,
    ) -> (usize, usize) {
        self.fib_gen = gen as u32;
        let (mut moved, mut torn) = (0, 0);
        for i in 0..self.cold.len() {
            let Some(info) = self.info_at(i, Duration::ZERO) else {
                continue;
            };
            if info.teardown {
                continue;
            }
            let paths = route(&info);
            let (Some(h), Some(c)) = (self.hot.get(i), self.cold.get(i)) else {
                continue;
            };
            let ins = [info.paths[0].ingress, info.paths[1].ingress];
            let keeps_ingress =
                paths.is_some_and(|p| p[0].ingress == ins[0] && p[1].ingress == ins[1]);
            let mangles = admit::mangles_of(h, c);
            let keys = [h.key(0, ins[0], c.v6(0)), h.key(1, ins[1], c.v6(1))];
            let conn = c.conn();
            let alive = conn.is_some_and(|id| ct.get(id).is_some());
            // the new links, with the egresses they were made for (a backend's flow needs them)
            let links = match paths {
                Some(p) if keeps_ingress && alive => self
                    .link(&p[0].egress, ins[1])
                    .zip(self.link(&p[1].egress, ins[0]))
                    .map(|l| (l, [p[0].egress, p[1].egress])),
                _ => None,
            };
            match links {
                Some(((l0, l1), egress)) => {
                    let Some(h) = self.hot.get_mut(i) else {
                        continue;
                    };
                    let mut n = admit::hot(&keys[0], &keys[1], [l0, l1], &mangles);
                    n.packets = h.packets;
                    n.bytes = h.bytes;
                    n.bytes_hi = h.bytes_hi;
                    n.used = h.used;
                    n.flags = (n.flags & !FLOW_FLAGS) | (h.flags & FLOW_FLAGS & !STALE);
                    *h = n;
                    let (gen, hw) = (self.gen_at(i), self.hw.get_mut(i));
                    let Some(hw) = hw else { continue };
                    if *hw & (HW | HW_PENDING) != 0 {
                        // The backend's entry has the old plan: it goes, and the flow is
                        // pushed again with the new one (software forwards it meanwhile, and
                        // the connection shows `[OFFLOAD]` until the backend takes it again).
                        let id = FlowId { idx: i as u32, gen };
                        self.backend.remove(id);
                        if let Some(conn) = conn {
                            let _ = ct.set_offload(conn, false);
                        }
                        if self.cfg.hw_offload {
                            *hw = (*hw & !HW) | HW_PENDING;
                            let spec = admit::flow_spec(&keys[0], &keys[1], egress, &mangles);
                            self.backend.add(id, &spec);
                            self.stats.hw_repushed += 1;
                        } else {
                            *hw &= !(HW | HW_PENDING);
                        }
                    }
                    moved += 1;
                }
                None => {
                    self.set_flags(i, TEARDOWN);
                    torn += 1;
                }
            }
        }
        // Flows skipped above (torn down already) keep their marks: they never forward again.
        (moved, torn)
    }

    /// One GC pass (call it every second): backend results and stats first, then every flow
    /// that is torn down, idle for the timeout, or whose connection is gone or dying leaves the
    /// table; its connection gets its state's timeout back. With `counter`, the others'
    /// counters are synced to their connections. Counts about to outgrow their line move to
    /// the cold part.
    pub fn gc(&mut self, ct: &mut Table, now: Duration) -> GcReport {
        let now_ms = ms(now);
        self.poll_backend(ct, now_ms);
        let timeout = ms(self.cfg.idle_timeout);
        let mut removed = 0;
        for i in 0..self.cold.len() {
            let (Some(c), Some(h)) = (self.cold.get(i), self.hot.get(i)) else {
                continue;
            };
            if !c.live() {
                continue;
            }
            let gone = c
                .conn()
                .and_then(|id| ct.get(id))
                .is_none_or(|c| c.status().contains(Status::DYING));
            let idle = now_ms.saturating_sub(flow::used_ms(h, now_ms)) >= timeout;
            let torn = h.has(TEARDOWN);
            if gone || idle || torn {
                if gone {
                    self.stats.conn_gone += 1;
                } else if torn {
                    self.stats.torn_down += 1;
                } else {
                    self.stats.expired_idle += 1;
                }
                self.remove_at(i, ct, now);
                removed += 1;
            } else {
                if self.cfg.counter {
                    self.sync(i, ct);
                }
                self.fold(i, ct);
            }
        }
        self.free_unused_links();
        GcReport {
            removed,
            remaining: self.len,
        }
    }

    /// Moves a line's counts to the cold part when they near the width of their fields.
    fn fold(&mut self, i: usize, ct: &mut Table) {
        let (Some(h), Some(c)) = (self.hot.get_mut(i), self.cold.get_mut(i)) else {
            return;
        };
        for d in 0..2 {
            if h.packets[d] < flow::FOLD_PACKETS && h.bytes_hi[d] < flow::FOLD_BYTES_HI {
                continue;
            }
            let l = h.counter(d);
            let e = c.ext.get_or_insert_with(Box::default);
            e.folded[d].packets = e.folded[d].packets.saturating_add(l.packets);
            e.folded[d].bytes = e.folded[d].bytes.saturating_add(l.bytes);
            // Synced just before (with `counter`): the connection counts from zero again.
            if let (true, Some(conn)) = (self.cfg.counter, c.conn()) {
                let dir = [Direction::Original, Direction::Reply][d];
                ct.rebase_offloaded(conn, dir);
            }
            h.packets[d] = 0;
            h.bytes[d] = 0;
            h.bytes_hi[d] = 0;
        }
    }

    /// Removes every flow now (the flowtable goes away, or a run ends and conntrack should
    /// hold the final counters).
    pub fn flush(&mut self, ct: &mut Table, now: Duration) -> usize {
        let mut n = 0;
        for i in 0..self.cold.len() {
            if self.cold[i].live() {
                self.remove_at(i, ct, now);
                n += 1;
            }
        }
        n
    }

    fn poll_backend(&mut self, ct: &mut Table, now_ms: u64) {
        let mut events = core::mem::take(&mut self.events);
        events.clear();
        self.backend.poll(&mut events);
        for ev in &events {
            match *ev {
                BackendEvent::Added(id) => {
                    if !self.live(id) {
                        continue;
                    }
                    let i = id.idx as usize;
                    if let (Some(c), Some(hw)) = (self.cold.get(i), self.hw.get_mut(i)) {
                        if *hw & HW_PENDING != 0 {
                            *hw = (*hw & !HW_PENDING) | HW;
                            if let Some(conn) = c.conn() {
                                let _ = ct.set_offload(conn, true);
                            }
                            self.stats.hw_added += 1;
                        }
                    }
                }
                BackendEvent::Failed(id) => {
                    if !self.live(id) {
                        continue;
                    }
                    if let Some(hw) = self.hw.get_mut(id.idx as usize) {
                        *hw &= !(HW_PENDING | HW);
                        self.stats.hw_failed += 1;
                    }
                }
                BackendEvent::Stats {
                    id,
                    packets,
                    bytes,
                    last_used,
                } => {
                    if !self.live(id) {
                        continue;
                    }
                    let i = id.idx as usize;
                    if let (Some(h), Some(c)) = (self.hot.get_mut(i), self.cold.get_mut(i)) {
                        // Added to the line as the fast path would count them, wider
                        // amounts straight to the cold part.
                        for d in 0..2 {
                            let p = u32::try_from(packets[d]).ok();
                            let b = u32::try_from(bytes[d]).ok();
                            let fits = p.zip(b).and_then(|(p, b)| {
                                let np = h.packets[d].checked_add(p)?;
                                let (nb, carry) = h.bytes[d].overflowing_add(b);
                                let hi = h.bytes_hi[d].checked_add(u16::from(carry))?;
                                Some((np, nb, hi))
                            });
                            match fits {
                                Some((np, nb, hi)) => {
                                    h.packets[d] = np;
                                    h.bytes[d] = nb;
                                    h.bytes_hi[d] = hi;
                                }
                                None => {
                                    let e = c.ext.get_or_insert_with(Box::default);
                                    e.folded[d].packets =
                                        e.folded[d].packets.saturating_add(packets[d]);
                                    e.folded[d].bytes = e.folded[d].bytes.saturating_add(bytes[d]);
                                }
                            }
                        }
                        let used = flow::used_ms(h, now_ms).max(ms(last_used));
                        h.used = used as u32;
                    }
                }
            }
        }
        self.events = events;
    }

    fn remove_at(&mut self, i: usize, ct: &mut Table, now: Duration) {
        if !self.cold.get(i).is_some_and(Cold::live) {
            return;
        }
        if self.cfg.counter {
            self.sync(i, ct);
        }
        let id = FlowId {
            idx: i as u32,
            gen: self.gen_at(i),
        };
        let (hot, cold, links, seed) = (&self.hot, &self.cold, &self.links, self.index.seed());
        // The hash of the key value `v` (slot and direction) is indexed under.
        let hash_of = |v: u32| {
            let (j, e) = ((v >> 1) as usize, (v & 1) as usize);
            let (Some(h), Some(c)) = (hot.get(j), cold.get(j)) else {
                return 0;
            };
            let rx = links
                .get(usize::from(h.link[1 - e]))
                .map_or(0, |l| l.rx_port);
            index::hash(seed, &h.key(e, rx, c.v6(e)))
        };
        for d in 0..2u32 {
            let hash = hash_of((i as u32) << 1 | d);
            self.index.remove(hash, (i as u32) << 1 | d, hash_of);
        }
        let (Some(h), Some(c)) = (self.hot.get_mut(i), self.cold.get_mut(i)) else {
            return;
        };
        *h = Hot::default();
        let old = core::mem::take(c);
        if let Some(g) = self.gens.get_mut(i) {
            *g = g.wrapping_add(1);
        }
        if let Some(conn) = old.conn() {
            let _ = ct.clear_offload(conn, now);
        }
        if let Some(hw) = self.hw.get_mut(i) {
            if *hw & (HW | HW_PENDING) != 0 {
                self.backend.remove(id);
            }
            *hw = 0;
        }
        self.free.push(i as u32);
        self.len -= 1;
    }

    /// Adds what the fast path counted since the last sync to the connection: conntrack
    /// keeps where the line's low 32 bits stood (GC runs every second, long before they
    /// wrap). Counts a backend reported too wide for the line went to the cold part and are
    /// not synced.
    fn sync(&mut self, i: usize, ct: &mut Table) {
        let (Some(h), Some(c)) = (self.hot.get(i), self.cold.get(i)) else {
            return;
        };
        let Some(conn) = c.conn() else { return };
        for (d, dir) in [Direction::Original, Direction::Reply]
            .into_iter()
            .enumerate()
        {
            ct.account_offloaded(conn, dir, h.packets[d], h.bytes[d]);
        }
        if let Some(m) = c.ct_mark() {
            if let Some(c) = ct.get_mut(conn) {
                c.mark = m;
            }
        }
    }

    fn info_at(&self, i: usize, now: Duration) -> Option<FlowInfo> {
        let c = self.cold.get(i).filter(|c| c.live())?;
        let h = self.hot.get(i)?;
        let ins = [self.in_port(h, 0), self.in_port(h, 1)];
        let path = |d: usize| Path {
            ingress: ins[d],
            egress: self.link_at(h.link[d]).egress(),
        };
        Some(FlowInfo {
            id: FlowId {
                idx: i as u32,
                gen: self.gen_at(i),
            },
            conn: c.conn()?,
            tuples: [
                h.key(0, ins[0], c.v6(0)).tuple(),
                h.key(1, ins[1], c.v6(1)).tuple(),
            ],
            paths: [path(0), path(1)],
            counters: [c.counter(h, 0), c.counter(h, 1)],
            idle: Duration::from_millis(ms(now).saturating_sub(flow::used_ms(h, ms(now)))),
            closing: h.has(CLOSING),
            teardown: h.has(TEARDOWN),
            hw: self.hw_at(i) & HW != 0,
        })
    }

    /// Each live flow's connection and how long the flow has been idle, in slab order: what
    /// a caller needs around [`gc`](Self::gc), without building a [`FlowInfo`] per flow.
    pub fn idle_conns(&self, now: Duration) -> impl Iterator<Item = (ConnId, Duration)> + '_ {
        let now_ms = ms(now);
        self.cold
            .iter()
            .zip(&self.hot)
            .filter(|(c, _)| c.live())
            .filter_map(move |(c, h)| {
                Some((
                    c.conn()?,
                    Duration::from_millis(now_ms.saturating_sub(flow::used_ms(h, now_ms))),
                ))
            })
    }

    /// Whether flow `id` is still in the table.
    pub fn contains(&self, id: FlowId) -> bool {
        self.live(id)
    }

    /// The connection flow `id` holds, while it is in the table.
    pub fn conn_of(&self, id: FlowId) -> Option<ConnId> {
        if !self.live(id) {
            return None;
        }
        self.cold.get(id.idx as usize)?.conn()
    }

    /// The flow in slot `idx` if it holds connection `conn` (a handle kept beside the
    /// connection, checked).
    pub fn flow_at(&self, idx: u32, conn: ConnId) -> Option<FlowId> {
        let c = self.cold.get(idx as usize)?;
        (c.live() && c.conn() == Some(conn)).then_some(FlowId {
            idx,
            gen: self.gen_at(idx as usize),
        })
    }

    /// The flows, in slab order.
    pub fn iter(&self, now: Duration) -> impl Iterator<Item = FlowInfo> + '_ {
        (0..self.cold.len()).filter_map(move |i| self.info_at(i, now))
    }

    pub fn info(&self, id: FlowId, now: Duration) -> Option<FlowInfo> {
        if !self.live(id) {
            return None;
        }
        self.info_at(id.idx as usize, now)
    }

    /// The listing: a line per flow in the format of the crate documentation.
    pub fn list(&self, now: Duration) -> Vec<String> {
        let mut out = Vec::with_capacity(self.len);
        for i in 0..self.cold.len() {
            let Some(info) = self.info_at(i, now) else {
                continue;
            };
            let mut s = String::with_capacity(256);
            let _ = write!(
                s,
                "flow {} {}",
                info.id.idx,
                nft_conntrack::proto_name(info.tuples[0].proto)
            );
            for (d, name) in [(0, "original"), (1, "reply")] {
                let t = &info.tuples[d];
                let target = info.tuples[1 - d].invert().unwrap_or(*t);
                let _ = write!(s, " {name} {t} in={}", info.paths[d].ingress);
                let mut nat = String::new();
                if target.src != t.src {
                    let _ = write!(nat, " src={}", target.src);
                }
                if target.dst != t.dst {
                    let _ = write!(nat, " dst={}", target.dst);
                }
                if target.sport != t.sport {
                    let _ = write!(nat, " sport={}", target.sport);
                }
                if target.dport != t.dport {
                    let _ = write!(nat, " dport={}", target.dport);
                }
                if !nat.is_empty() {
                    let _ = write!(s, " nat{nat}");
                }
                let e = &info.paths[d].egress;
                let c = info.counters[d];
                let _ = write!(
                    s,
                    " out={}{} packets={} bytes={}",
                    e.port, e.encap, c.packets, c.bytes
                );
            }
            let _ = write!(s, " idle={}s", info.idle.as_secs());
            for (set, name) in [
                (info.closing, "closing"),
                (info.teardown, "teardown"),
                (self.hw_at(i) & HW != 0, "hw"),
                (self.hw_at(i) & HW_PENDING != 0, "hw-pending"),
            ] {
                if set {
                    let _ = write!(s, " [{name}]");
                }
            }
            out.push(s);
        }
        out
    }

    /// What a flow costs in a flowtable configured for `max_flows` (the index is sized for
    /// the limit) without `counter`, without making one.
    pub fn memory_per_flow(max_flows: usize) -> Memory {
        Self::memory_per_flow_with(max_flows, false)
    }

    /// [`memory_per_flow`](Self::memory_per_flow) of a flowtable with or without `counter`
    /// (the same: what was synced is kept with conntrack's counters).
    pub fn memory_per_flow_with(max_flows: usize, _counter: bool) -> Memory {
        // the line, the cold part, the slot's generation and backend state
        let entry_bytes = core::mem::size_of::<Hot>() + core::mem::size_of::<Cold>() + 4 + 1;
        let index_bytes_per_flow = (Index::slots_for(max_flows.saturating_mul(2))
            * Index::SLOT_BYTES)
            .div_ceil(max_flows.max(1));
        Memory {
            entry_bytes,
            index_bytes_per_flow,
            bytes_per_flow: entry_bytes + index_bytes_per_flow,
            allocated: 0,
        }
    }

    /// What a flow costs in memory here (conntrack's share is on top of it).
    pub fn memory(&self) -> Memory {
        let m = Self::memory_per_flow_with(self.cfg.max_flows, self.cfg.counter);
        let index_bytes_per_flow =
            (self.index.capacity_slots() * Index::SLOT_BYTES).div_ceil(self.cfg.max_flows.max(1));
        Memory {
            index_bytes_per_flow,
            bytes_per_flow: m.entry_bytes + index_bytes_per_flow,
            allocated: self.hot.capacity() * core::mem::size_of::<Hot>()
                + self.cold.capacity() * core::mem::size_of::<Cold>()
                + self.gens.capacity() * 4
                + self.hw.capacity()
                + self.index.capacity_slots() * Index::SLOT_BYTES
                + self.free.capacity() * 4
                + self.links.capacity() * core::mem::size_of::<Link>(),
            ..m
        }
    }

    /// The trace records, oldest first (formatting happens here, off the fast path).
    pub fn trace(&self) -> Vec<String> {
        let n = self.trace.len();
        let start = if n < self.cfg.trace_capacity {
            0
        } else {
            self.trace_next % n.max(1)
        };
        (0..n)
            .map(|k| self.trace[(start + k) % n].to_string())
            .collect()
    }
}
