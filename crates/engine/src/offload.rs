//! The ruleset's flowtables in the router (DESIGN.md, step 2): the fast path at ingress of the
//! flowtables' devices, `flow add @ft` once a packet's walk is through, and the timers (GC,
//! route changes, links going down).
//!
//! The invariant that rules here is transparency: with offload on, every output packet, every
//! drop and the final connection table are what they would be with offload off. The fast path
//! therefore only takes packets whose effect on conntrack is a refresh and a count, and gives
//! the slow path everything else:
//!
//! * TCP: only established, assured connections are admitted (the kernel's rule), and the fast
//!   path punts every segment but a plain ACK (`punt_tcp_control`). SYN, FIN, RST and flag
//!   combinations conntrack calls invalid thus reach conntrack's state machine and the
//!   ruleset (which may drop them) exactly as without offload. The kernel instead forwards
//!   FIN/RST on the fast path and marks the flow closing; its conntrack entry then never sees
//!   the close, which is what we refuse to copy. Feeding the flags to conntrack from the fast
//!   path was the other choice: it needs the connection per packet and runs the TCP tracker
//!   on the hot path, and the packet would still skip rules that may drop it.
//! * Once the slow path sees a packet that moves an offloaded TCP connection out of
//!   ESTABLISHED, the flow is torn down, so the rest of the close is tracked packet by packet.
//! * UDP: admitted once conntrack has assured the connection (the kernel admits from the
//!   second packet). Before that, each packet can still change the entry (SEEN_REPLY, ASSURED,
//!   the timeout class); after it, a packet only refreshes and counts.
//! * When a flow leaves, its connection's timeout counts from the flow's last packet (as the
//!   slow path would have refreshed it), not from the GC pass that noticed the idle flow.

use std::collections::BTreeMap;

// foldhash rather than SipHash: the keys are connection handles the table hands out, not
// values a sender chooses, and the maps are read for every slow-path packet.
use crate::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use nft_conntrack::{Conn, ConnId, Direction, Table, TcpState, Tuple};
use nft_flowtable::{
    Action, Admission, Egress, Encap as FtEncap, FlowId, Flowtable, FrameSlot, Mangles,
    OffloadBackend, Path, Punt, SlotBuf, SoftwareOnly,
};
use nft_lang::ast::Family;
use nft_wire::PacketMeta;

use crate::fib::{Fib, RouteKind};
use crate::l2;
use crate::rules::Ruleset;
use crate::topology::{Encap, Topology};

/// The kernel's flowtable GC period (`NF_FLOW_TABLE_GC_INTERVAL`... one second).
const GC_INTERVAL: Duration = Duration::from_secs(1);

/// A flowtable's offload backend (`flags offload`), chosen at run time: software only unless
/// the caller sets another ([`Offload::set_backend`]), such as `nft-xdp`'s XDP offload.
pub type Backend = Box<dyn OffloadBackend + Send>;

/// One flowtable of the ruleset.
pub struct RouterFlowtable {
    /// The table that declares it (`flow add @name` refers to it from that table's chains).
    pub table: String,
    pub name: String,
    /// The interfaces whose ingress the fast path sits on.
    pub ports: Vec<usize>,
    pub ft: Flowtable<Backend>,
}

/// The flowtables and what ties them to connections.
pub struct Offload {
    enabled: bool,
    tables: Vec<RouterFlowtable>,
    /// For each interface, the flowtable whose devices include it.
    port_table: Vec<Option<usize>>,
    /// The mangles each direction's last slow-path walk applied, replayed by the fast path;
    /// only connections that have some are here. The port each direction last arrived on
    /// (a flow keys each direction on it, and the packet that admits a flow shows only its
    /// own) and the flow a connection is in are kept in the connection
    /// ([`Conn::offload_ports`], [`Conn::offload_flow`]).
    mangles: HashMap<ConnId, [Mangles; 2]>,
    next_gc: Duration,
    fib_gen: u64,
    admitted: u64,
    refused: BTreeMap<&'static str, u64>,
    /// What became of each frame of the last burst (kept to reuse its allocation); a
    /// forwarded frame's slot also says where it went and its length as it arrived.
    actions: Vec<Action>,
    leaving: Vec<(ConnId, Duration, Duration)>,
}

/// The fast path's link encapsulation for an interface.
fn encap_of(e: &Encap) -> FtEncap {
    match *e {
        Encap::None => FtEncap::None,
        Encap::Vlan { id, .. } => FtEncap::Vlan(id),
        Encap::QinQ { outer, inner, .. } => FtEncap::QinQ { outer, inner },
        Encap::Pppoe { session, .. } => FtEncap::Pppoe(session),
    }
}

/// The physical port an interface sits on (its parent, for VLAN, QinQ and PPPoE).
fn port_name(e: &Encap, name: &str) -> String {
    match e {
        Encap::None => name.to_string(),
        Encap::Vlan { parent, .. } | Encap::QinQ { parent, .. } | Encap::Pppoe { parent, .. } => {
            parent.clone()
        }
    }
}

/// Where the slow path would send a packet to `dst` now: the same FIB lookup, the same
/// neighbour, the same link header. `None` for anything the fast path must not take.
fn egress_to(fib: &Fib, topo: &Topology, dst: IpAddr) -> Option<Egress> {
    let multicast = match dst {
        IpAddr::V4(v) => v.is_multicast() || v.is_broadcast(),
        IpAddr::V6(v) => v.is_multicast(),
    };
    if multicast {
        return None;
    }
    let RouteKind::Unicast(nh) = fib.lookup(dst)?.0 else {
        return None;
    };
    let iface = topo.interfaces.get(nh.ifindex).filter(|i| i.up)?;
    let dst_mac = match l2::fixed_peer(iface) {
        Some(m) => m,
        None => *topo.neighbours.get(&(nh.ifindex, nh.via.unwrap_or(dst)))?,
    };
    Some(Egress {
        port: u16::try_from(nh.ifindex).ok()?,
        src_mac: iface.mac,
        dst_mac,
        encap: encap_of(&iface.encap),
        mtu: iface.mtu,
    })
}

fn ft_family(f: Family) -> nft_flowtable::Family {
    match f {
        Family::Ip => nft_flowtable::Family::Ip,
        Family::Ip6 => nft_flowtable::Family::Ip6,
        Family::Inet => nft_flowtable::Family::Inet,
        Family::Arp => nft_flowtable::Family::Arp,
        Family::Bridge => nft_flowtable::Family::Bridge,
        Family::Netdev => nft_flowtable::Family::Netdev,
    }
}

/// A connection's handle on its flow ([`Conn::offload_flow`]): the flowtable's position in
/// the high 4 bits (plus one, so that 0 means none), the flow's slot in the low 28.
fn flow_ref(t: usize, fid: FlowId) -> Option<u32> {
    let t = u32::try_from(t).ok().filter(|&t| t < 15)?;
    let idx = fid.index();
    (idx < 1 << 28).then_some((t + 1) << 28 | idx)
}

impl Offload {
    /// The flowtable and flow connection `id` is offloaded to, checked against the flow.
    fn flow_of(&self, ct: &Table, id: ConnId) -> Option<(usize, FlowId)> {
        let r = ct.get(id)?.offload_flow;
        if r == 0 {
            return None;
        }
        let t = (r >> 28) as usize - 1;
        let fid = self.tables.get(t)?.ft.flow_at(r & ((1 << 28) - 1), id)?;
        Some((t, fid))
    }

    /// The flowtables of `rules` on `topo`'s interfaces. With `enabled` false, `flow add`
    /// is a no-op and nothing takes the fast path.
    /// `max_flows` is conntrack's limit: each flow holds a connection. `seed` keys the
    /// flowtables' hash (secret in `run`, fixed in simulations so that runs repeat).
    pub fn new(
        rules: &Ruleset,
        topo: &Topology,
        enabled: bool,
        max_flows: usize,
        seed: u64,
    ) -> Offload {
        let mut tables = vec![];
        let mut port_table = vec![None; topo.interfaces.len()];
        for (table, f) in &rules.flowtables {
            // A device stands for its port: a flowtable on `eth1` also sees the VLAN and
            // PPPoE interfaces over it, as the kernel's does through the forward path.
            let groups: Vec<String> = f
                .devices
                .iter()
                .map(|d| {
                    topo.interfaces
                        .iter()
                        .find(|i| &i.name == d)
                        .map_or_else(|| d.clone(), |i| port_name(&i.encap, &i.name))
                })
                .collect();
            let ports: Vec<usize> = topo
                .interfaces
                .iter()
                .filter(|i| {
                    f.devices.contains(&i.name) || groups.contains(&port_name(&i.encap, &i.name))
                })
                .map(|i| i.index)
                .collect();
            let t = tables.len();
            for &p in &ports {
                if let Some(slot) = port_table.get_mut(p) {
                    slot.get_or_insert(t);
                }
            }
            let cfg = nft_flowtable::Config {
                name: f.name.clone(),
                devices: ports
                    .iter()
                    .filter_map(|&p| u16::try_from(p).ok())
                    .collect(),
                counter: f.counter,
                hw_offload: f.offload,
                punt_tcp_control: true,
                max_flows,
                seed,
                ..nft_flowtable::Config::default()
            };
            tables.push(RouterFlowtable {
                table: table.clone(),
                name: f.name.clone(),
                ports,
                ft: Flowtable::with_backend(cfg, Box::new(SoftwareOnly) as Backend),
            });
        }
        Offload {
            enabled,
            tables,
            port_table,
            mangles: HashMap::default(),
            next_gc: Duration::ZERO,
            fib_gen: 0,
            admitted: 0,
            refused: BTreeMap::new(),
            actions: vec![],
            leaving: vec![],
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn flowtables(&self) -> &[RouterFlowtable] {
        &self.tables
    }

    /// Gives flowtable `t` (an index of [`flowtables`](Self::flowtables)) its offload backend;
    /// flows it admits from now on are pushed to it when the flowtable has `flags offload`.
    pub fn set_backend(&mut self, t: usize, backend: Backend) -> bool {
        match self.tables.get_mut(t) {
            Some(rt) => {
                *rt.ft.backend_mut() = backend;
                true
            }
            None => false,
        }
    }

    /// Flows admitted so far.
    pub fn admitted(&self) -> u64 {
        self.admitted
    }

    /// `flow add` requests the kernel's rules allowed but the flowtable did not take, by
    /// reason.
    pub fn refused(&self) -> &BTreeMap<&'static str, u64> {
        &self.refused
    }

    /// Packets forwarded on the fast path.
    pub fn fast_path_packets(&self) -> u64 {
        self.tables.iter().map(|t| t.ft.stats().forwarded).sum()
    }

    /// Live flows by state (`active`, `closing`, `teardown`, `hw`).
    pub fn flows_by_state(&self, now: Duration) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for t in &self.tables {
            for f in t.ft.iter(now) {
                let k = if f.teardown {
                    "teardown"
                } else if f.closing {
                    "closing"
                } else if f.hw {
                    "hw"
                } else {
                    "active"
                };
                *m.entry(k.to_string()).or_default() += 1;
            }
        }
        m
    }

    /// Fast-path punts by reason, lookups that missed included.
    pub fn punts(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for t in &self.tables {
            for p in Punt::ALL {
                let n = t.ft.stats().punt(*p);
                if n > 0 {
                    *m.entry(p.name()).or_default() += n;
                }
            }
        }
        m
    }

    /// The flowtable `flow add @name` in a chain of `table` refers to, when offload is on.
    pub fn resolve(&self, table: &str, name: &str) -> Option<usize> {
        if !self.enabled {
            return None;
        }
        self.tables
            .iter()
            .position(|t| t.table == table && t.name == name)
    }

    /// Timers, at the start of each burst: a route change re-routes the flows (beyond the
    /// kernel, whose flows keep their cached route), and every second GC hands idle and
    /// torn-down flows back to conntrack.
    pub fn tick(&mut self, ct: &mut Table, fib: &Fib, topo: &Topology, now: Duration) {
        if !self.enabled {
            return;
        }
        let gen = fib.generation();
        if gen != self.fib_gen {
            self.fib_gen = gen;
            for t in &mut self.tables {
                t.ft.reroute(ct, gen, |info| {
                    let mut p = info.paths;
                    for (d, path) in p.iter_mut().enumerate() {
                        // direction d leaves as the inverse of what the other one arrives with
                        path.egress = egress_to(fib, topo, info.tuples[1 - d].src)?;
                    }
                    Some(p)
                });
            }
        }
        if now >= self.next_gc {
            self.next_gc = now.saturating_add(GC_INTERVAL);
            self.gc(ct, now);
        }
    }

    /// One GC pass over every flowtable now (with `counter`, it also syncs the fast path's
    /// counts to conntrack).
    pub fn gc(&mut self, ct: &mut Table, now: Duration) {
        for t in &mut self.tables {
            if t.ft.is_empty() {
                continue;
            }
            self.leaving.clear();
            for (conn, idle) in t.ft.idle_conns(now) {
                if let Some(c) = ct.get(conn) {
                    self.leaving
                        .push((conn, now.saturating_sub(idle), c.deadline()));
                }
            }
            t.ft.gc(ct, now);
            for &(id, used, before) in &self.leaving {
                let Some(c) = ct.get(id) else { continue };
                if c.is_offloaded() {
                    continue;
                }
                // GC gave the state's timeout from now; without offload the last packet
                // would have started it (or a later slow-path packet, kept in `before`).
                let timeout = c.deadline().saturating_sub(now);
                ct.set_deadline(id, before.max(used.saturating_add(timeout)));
            }
        }
        self.mangles.retain(|id, _| ct.get(*id).is_some());
    }

    /// After a ruleset swap (`self` built from the new ruleset): each flowtable of `old` whose
    /// table, name and devices the new ruleset has again hands its flows over; the flows of the
    /// others are flushed back to the slow path.
    pub fn take_flows_from(&mut self, old: Offload, ct: &mut Table, now: Duration) {
        let Offload {
            tables,
            mangles,
            next_gc,
            fib_gen,
            admitted,
            refused,
            ..
        } = old;
        self.mangles = mangles;
        self.next_gc = next_gc;
        self.fib_gen = fib_gen;
        self.admitted = admitted;
        self.refused = refused;
        let mut moved = vec![None; tables.len()];
        for (ot, t) in tables.into_iter().enumerate() {
            let same = self
                .tables
                .iter()
                // `flags offload` too: a flowtable that gains or loses it needs another
                // backend, and its flows are pushed to the hardware only when admitted
                .position(|n| {
                    n.table == t.table
                        && n.name == t.name
                        && n.ports == t.ports
                        && n.ft.config().hw_offload == t.ft.config().hw_offload
                });
            match same {
                Some(nt) if self.enabled => {
                    // the connections' handles name the table by its position (a flow
                    // they cannot name leaves, as at admission)
                    let mut ft = t.ft;
                    let mut unnamed = vec![];
                    for f in ft.iter(now) {
                        let r = flow_ref(nt, f.id);
                        if r.is_none() {
                            unnamed.push(f.id);
                        }
                        if let Some(c) = ct.get_mut(f.conn) {
                            c.offload_flow = r.unwrap_or(0);
                        }
                    }
                    for id in unnamed {
                        ft.teardown(id);
                    }
                    self.tables[nt].ft = ft;
                    moved[ot] = Some(nt);
                }
                _ => {
                    let mut ft = t.ft;
                    ft.flush(ct, now);
                }
            }
        }
        // A flowtable new in this ruleset routes under the FIB generation in force: left at
        // zero, every flow it admits would be stale at once and go back to the slow path.
        for (nt, t) in self.tables.iter_mut().enumerate() {
            if !moved.contains(&Some(nt)) {
                t.ft.set_fib_generation(fib_gen);
            }
        }
    }

    /// An interface went up or down; down, its flows are torn down.
    pub fn set_link(&mut self, iface: usize, up: bool) {
        let Ok(port) = u16::try_from(iface) else {
            return;
        };
        for t in &mut self.tables {
            t.ft.set_port_up(port, up);
        }
    }

    /// Runs the fast path over the slots of a burst that arrived on a flowtable's devices.
    /// Forwarded frames are rewritten in place in their slot ([`forwarded`](Self::forwarded)
    /// says where they go); the others are left as they came, for the slow path.
    ///
    /// Each flowtable runs over the runs of consecutive slots that arrived on its devices,
    /// in place: a hit neither copies nor allocates. A slot without headroom for a longer
    /// link header out (untagged in, VLAN or PPPoE out) goes again in a copy that has some.
    /// Returns how many frames it forwarded.
    pub fn fast_path<S: SlotBuf>(&mut self, slots: &mut [FrameSlot<S>], now: Duration) -> usize {
        self.actions.clear();
        self.actions.resize(slots.len(), Action::None);
        if !self.enabled || self.tables.iter().all(|t| t.ft.is_empty()) {
            return 0;
        }
        let mut forwarded = 0;
        let port_table = &self.port_table;
        let table_of = |p: u16| port_table.get(usize::from(p)).copied().flatten();
        for (t, rt) in self.tables.iter_mut().enumerate() {
            if rt.ft.is_empty() {
                continue;
            }
            let mut i = 0;
            while i < slots.len() {
                // the port's table is looked up when the port changes (a burst from one
                // port is one run, one look-up)
                // (a plain loop over a slice: the count stays in a register)
                let mut last = u32::MAX;
                let mut run = 0;
                for s in &slots[i..] {
                    if u32::from(s.port) != last {
                        if table_of(s.port) != Some(t) {
                            break;
                        }
                        last = u32::from(s.port);
                    }
                    run += 1;
                }
                if run == 0 {
                    i += 1;
                    continue;
                }
                let end = i + run;
                // the flowtable's own count says how many it forwarded: the run is walked
                // again only when some were punted
                let before = rt.ft.stats().forwarded;
                rt.ft
                    .process_burst::<false>(&mut slots[i..end], now, &mut self.actions[i..end]);
                let hits = rt.ft.stats().forwarded.wrapping_sub(before) as usize;
                forwarded += hits;
                if hits < run {
                    let done = slots[i..end].iter_mut().zip(&mut self.actions[i..end]);
                    for (slot, action) in done {
                        // a GSO packet above the MTU whose segments may fit it
                        if *action == Action::Punt(Punt::TooBig) && slot.offload.is_gso() {
                            *action = rt.ft.process_gso(slot, now);
                            if let Action::Forward(_) = action {
                                forwarded += 1;
                            }
                        }
                        if *action != Action::Punt(Punt::NoHeadroom) {
                            continue;
                        }
                        // Retried in a copy with headroom, where the slot's buffer can take
                        // it (a vector); lent memory stays a punt (slow path).
                        let mut s = FrameSlot::new(slot.port, slot.frame());
                        // (a GSO packet or a partial checksum stays one in the copy)
                        s.offload = slot.offload;
                        let mut a = rt.ft.process(&mut s, now);
                        if a == Action::Punt(Punt::TooBig) && s.offload.is_gso() {
                            a = rt.ft.process_gso(&mut s, now);
                        }
                        *action = match (a, S::from_owned(s)) {
                            (Action::Forward(_), Some(s)) => {
                                *slot = s;
                                forwarded += 1;
                                a
                            }
                            (Action::Forward(_), None) => Action::Punt(Punt::NoHeadroom),
                            _ => a,
                        };
                    }
                }
                i = end;
            }
        }
        forwarded
    }

    /// Where the fast path sent frame `i` of the last burst (its slot says it too, with its
    /// length as it arrived).
    #[inline]
    pub fn forwarded(&self, i: usize) -> Option<usize> {
        match self.actions.get(i) {
            Some(&Action::Forward(p)) => Some(usize::from(p)),
            _ => None,
        }
    }

    /// After the slow path tracked a packet of connection `id`: an offloaded TCP connection
    /// that left ESTABLISHED (FIN, RST) goes back to the slow path for the rest of its close.
    pub fn tracked(&mut self, ct: &Table, id: ConnId) {
        let Some((t, fid)) = self.flow_of(ct, id) else {
            return;
        };
        let open = ct
            .get(id)
            .is_some_and(|c| c.l4proto() != 6 || c.tcp_state() == Some(TcpState::Established));
        if !open {
            if let Some(rt) = self.tables.get_mut(t) {
                rt.ft.teardown(fid);
            }
        }
    }

    /// A packet of `id` in direction `dir` that arrived on `ingress` was forwarded by the
    /// slow path, whose walk applied `mangles` to it (beyond the kernel: the flow admitted
    /// later replays each direction's last ones instead of losing them).
    pub fn forwarded_slow(
        &mut self,
        ct: &mut Table,
        id: ConnId,
        dir: Direction,
        ingress: usize,
        mangles: Mangles,
    ) {
        if !self.enabled {
            return;
        }
        let Ok(port) = u16::try_from(ingress) else {
            return;
        };
        let Some(c) = ct.get_mut(id) else { return };
        c.offload_ports[dir.index()] = port;
        if mangles != Mangles::default() {
            self.mangles.entry(id).or_default()[dir.index()] = mangles;
        } else if let Some(m) = self.mangles.get_mut(&id) {
            m[dir.index()] = mangles;
        }
    }

    /// Counts a `flow add` that made no flow, under `why` (the report adds these to the
    /// admission's refusals, so requests are admitted plus refused).
    pub(crate) fn refuse(&mut self, why: &'static str) {
        *self.refused.entry(why).or_default() += 1;
    }

    /// `flow add` into flowtable `t` for the packet `meta` of connection `id`, once its walk
    /// is through and the connection confirmed. Whether a flow was made.
    #[allow(clippy::too_many_arguments)]
    pub fn admit(
        &mut self,
        t: usize,
        family: Family,
        ct: &mut Table,
        fib: &Fib,
        topo: &Topology,
        id: ConnId,
        meta: &PacketMeta,
        now: Duration,
    ) -> bool {
        let Some(c) = ct.get(id) else {
            self.refuse(crate::admission::NotAdmitted::NoConnection.name());
            return false;
        };
        if c.is_offloaded() {
            self.refuse(crate::admission::NotAdmitted::AlreadyOffloaded.name());
            return false;
        }
        if c.l4proto() == 17 && !c.is_assured() {
            self.refuse("udp_not_assured");
            return false;
        }
        let ports = c.offload_ports.map(|p| (p != u16::MAX).then_some(p));
        let mangles = self.mangles.get(&id).copied().unwrap_or_default();
        let paths = match Self::paths(c, ports, fib, topo) {
            Ok(p) => p,
            Err(why) => {
                self.refuse(why);
                return false;
            }
        };
        let a = Admission {
            forward_hook: true,
            family: ft_family(family),
            conn: Some(id),
            meta,
            paths,
            mangles,
            fib_generation: fib.generation(),
        };
        let Some(rt) = self.tables.get_mut(t) else {
            self.refuse("no_flowtable");
            return false;
        };
        match rt.ft.admit(ct, &a, now) {
            Ok(fid) => {
                // A flow the connection cannot name (beyond 15 flowtables or 2^28 flows)
                // would miss the teardowns the slow path asks for: it leaves at once.
                let Some(r) = flow_ref(t, fid) else {
                    rt.ft.teardown(fid);
                    self.refuse("flow_handle");
                    return false;
                };
                if let Some(c) = ct.get_mut(id) {
                    c.offload_flow = r;
                }
                self.admitted += 1;
                true
            }
            Err(e) => {
                self.refuse(e.name());
                false
            }
        }
    }

    fn paths(
        c: &Conn,
        ports: [Option<u16>; 2],
        fib: &Fib,
        topo: &Topology,
    ) -> Result<[Path; 2], &'static str> {
        let mut paths = [Path::default(); 2];
        for (d, dir) in [Direction::Original, Direction::Reply]
            .into_iter()
            .enumerate()
        {
            let ingress = ports[d].ok_or("reply_not_seen")?;
            // packets of this direction leave towards the other direction's source
            let dst = c.tuple(dir.opposite()).src;
            let egress = egress_to(fib, topo, dst).ok_or("no_fast_route")?;
            paths[d] = Path { ingress, egress };
        }
        Ok(paths)
    }

    /// For a fast-path trace: the flowtable and flow a frame of `tuple` arriving on `port`
    /// took, its direction, and the rewrite (`fw ft flow 3 original udp src=... nat
    /// src=203.0.113.1 sport=61000`). Control plane speed: tracing only.
    pub fn describe(&self, port: u16, tuple: &Tuple, now: Duration) -> Option<String> {
        for t in &self.tables {
            let Some((id, dir)) = t.ft.lookup(tuple, port) else {
                continue;
            };
            let info = t.ft.info(id, now)?;
            let d = dir.index();
            let target = info.tuples[1 - d].invert().unwrap_or(*tuple);
            let mut s = format!(
                "{} {} flow {} {} {} {}",
                t.table,
                t.name,
                id.index(),
                dir.name(),
                nft_conntrack::proto_name(tuple.proto),
                tuple
            );
            let mut nat = String::new();
            for (what, old, new) in [
                ("src", tuple.src.to_string(), target.src.to_string()),
                ("dst", tuple.dst.to_string(), target.dst.to_string()),
                ("sport", tuple.sport.to_string(), target.sport.to_string()),
                ("dport", tuple.dport.to_string(), target.dport.to_string()),
            ] {
                if old != new {
                    nat += &format!(" {what}={new}");
                }
            }
            if !nat.is_empty() {
                s += &format!(" nat{nat}");
            }
            return Some(s);
        }
        None
    }

    /// The flowtables and their flows, interface numbers given as names.
    pub fn list(&self, topo: &Topology, now: Duration) -> Vec<String> {
        let name = |n: &str| {
            n.parse::<usize>()
                .ok()
                .and_then(|i| topo.interfaces.get(i))
                .map(|i| i.name.clone())
        };
        let mut out = vec![];
        for t in &self.tables {
            let devs: Vec<&str> = t
                .ports
                .iter()
                .filter_map(|&p| topo.interfaces.get(p))
                .map(|i| i.name.as_str())
                .collect();
            out.push(format!(
                "flowtable {} {} {{ devices = {{ {} }}; flows {} }}",
                t.table,
                t.name,
                devs.join(", "),
                t.ft.len()
            ));
            for line in t.ft.list(now) {
                let words: Vec<String> = line
                    .split(' ')
                    .map(|w| match w.split_once('=') {
                        Some((k @ ("in" | "out"), v)) => {
                            name(v).map_or_else(|| w.to_string(), |n| format!("{k}={n}"))
                        }
                        _ => w.to_string(),
                    })
                    .collect();
                out.push(format!("  {}", words.join(" ")));
            }
        }
        out
    }
}
