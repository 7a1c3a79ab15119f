//! The slow path of `../shared/DESIGN.md`: every packet walks parse → netdev ingress → raw
//! prerouting → conntrack → prerouting (DNAT) → route → input or forward → postrouting (SNAT,
//! masquerade) → conntrack confirm → neighbour → link header, as the Linux stack does it.
//!
//! Time is an argument of [`Router::process`]; nothing here reads a clock. No input panics: a
//! frame the router cannot use is dropped under a named reason (see [`counters::Drop`] and
//! [`nft_wire::ParseError`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use nft_conntrack::{
    apply_rewrite, Conn, ConnId, CtError, CtState, Direction, Manip, NatRange, Outcome, ProtoState,
    Status, Table, Tuple,
};
use nft_flowtable::{FrameSlot, Mangles, SlotBuf};
use nft_lang::ast::Family;
use nft_wire::{parse_frame, Fragment, IpProtocol, IpVersion, Ipv4Packet, PacketMeta};

use crate::defrag::{self, Defrag, DefragConfig, Defragged, FragDrop};

use crate::admission;
use crate::answer;
use crate::counters::{Counters, Drop, InterfaceReport, Report, RuleHits};
use crate::fib::{Fib, NextHop, RouteKind};
use crate::l2::{self, Ports, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::offload::Offload;
use crate::rules::{
    self, Actions, ChainType, CtFacts, CtK, Env, Hook, HookVerdict, LogSpec, NatKind, NatSpec, Pkt,
    Reject, RouteAnswer, Ruleset, State, TraceLine,
};
use crate::topology::{Encap, Interface, Mac, Topology};

/// Where a frame leaves: an interface of the topology, or the router's own stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Port {
    Iface(usize),
    Host,
}

/// A received frame and the interface (index in the topology) it arrived on. A frame of a
/// VLAN or PPPoE interface may arrive on that interface or on its parent port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub ingress: usize,
    pub data: Vec<u8>,
}

/// What a burst of slots sends, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The fast path rewrote slots `start..end` in place: transmit each on the interface its
    /// [`FrameSlot::egress`] names. (One entry for a run of slots, a whole burst of fast-path
    /// hits being one run, rather than one per frame.)
    Slots { start: usize, end: usize },
    /// A frame of the slow path.
    Frame(TxFrame),
}

/// A frame to transmit, link header included, with the metadata rules gave the packet
/// (`meta mark set`, `meta priority set`), which a live backend hands to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxFrame {
    pub egress: Port,
    pub data: Vec<u8>,
    pub mark: u32,
    pub priority: u32,
    /// A GSO packet the slow path walked, sent whole (with [`Config::gso_out`]): its GSO size
    /// and partial checksum, for the I/O's `virtio_net_hdr`. Plain for every other frame.
    pub offload: nft_flowtable::Offload,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub conntrack: nft_conntrack::Config,
    /// Conntrack slots GC looks at per call of [`Router::process`] that has slow-path frames,
    /// on top of two per such frame, so that expiry keeps up with what makes connections.
    /// Besides, every slot of the table (live or free: as many as the most entries ever held)
    /// is looked at once every [`CT_SWEEP`] of `now` in steps of at least [`CT_GC_TICK`],
    /// whatever the traffic (fast-path bursts scan nothing else); this is also the least a
    /// step scans.
    pub gc_budget: usize,
    /// Keep each packet's walk through hooks, chains and rules (`nft monitor trace`).
    pub trace: bool,
    /// Log lines (`log` statements) kept; later ones are only counted.
    pub log_capacity: usize,
    /// Flow offload: off, `flow add` is a no-op and every packet takes the slow path.
    pub offload: bool,
    /// Live mode: a frame whose next hop has no known MAC waits (up to 3 s, 256 frames) and the
    /// next hop is queued for [`Router::take_unresolved`] (the caller has the kernel resolve
    /// it); the frame leaves at the first burst after [`Router::set_neighbour`] gives the MAC,
    /// or is dropped as `neighbour_unresolved`. Off: `no_neighbour` (static neighbours only).
    pub resolve_neighbours: bool,
    /// The I/O sends GSO packets whole (AF_PACKET with `PACKET_VNET_HDR`, where the kernel
    /// segments for a device that cannot): a GSO packet the slow path walked leaves whole,
    /// its [`TxFrame::offload`] set, as the kernel forwards the skb. Off: it leaves as its
    /// segments (the kernel's software GSO, complete checksums).
    pub gso_out: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            conntrack: nft_conntrack::Config::default(),
            gc_budget: 64,
            trace: false,
            log_capacity: 10_000,
            offload: true,
            resolve_neighbours: false,
            gso_out: false,
        }
    }
}

use crate::rules::{NAT_DST_PRIO, NAT_SRC_PRIO};

/// The flowtables' hash seed, derived from conntrack's: one secret (or one fixed value in
/// simulations) keys every table of the router.
fn flow_seed(cfg: &Config) -> u64 {
    cfg.conntrack.seed.rotate_left(17) ^ 0x666c_6f77_7461_626c
}

mod filter;
mod proxy;

/// A hook's NAT chains bind this manip of the connection (`nf_nat_inet_fn`).
fn hook_manip(hook: Hook) -> Manip {
    match hook {
        Hook::Prerouting | Hook::Output => Manip::Dst,
        _ => Manip::Src,
    }
}

fn manip_done(m: Manip) -> Status {
    match m {
        Manip::Src => Status::SRC_NAT_DONE,
        Manip::Dst => Status::DST_NAT_DONE,
    }
}

/// What a NAT statement asks, with its evaluated address and port ranges: the spec's
/// scalars, not the spec (cloning its expressions cost an allocation-sized copy a binding).
#[derive(Clone, Copy)]
struct NatRequest {
    kind: NatKind,
    ipv6: bool,
    persistent: bool,
    random: bool,
    fully_random: bool,
    addr: Option<(u128, u128)>,
    port: Option<(u16, u16)>,
}

/// The statements a chain handed over, carried out between chains.
#[derive(Default)]
struct Act {
    nat: Option<NatRequest>,
    reject: Option<Reject>,
    /// The first `flow_adds` are this chain's; the strings stay between chains (in
    /// `Router::act`) so that a `flow add` on every packet allocates nothing.
    flow_add: Vec<String>,
    flow_adds: usize,
    notrack: bool,
    logs: Vec<LogSpec>,
    dups: Vec<(Option<u128>, Option<u32>)>,
    fwd: Option<(Option<u128>, u32)>,
    synproxy: Option<crate::synproxy::SynproxySpec>,
    /// Something was handed over since [`Act::begin`]: most chain runs hand over nothing,
    /// and then neither the reset nor the look at what was handed over is needed.
    any: bool,
}

impl Act {
    /// Ready for a chain run: nothing handed over yet, buffers kept.
    fn begin(&mut self) {
        self.any = false;
        self.nat = None;
        self.reject = None;
        self.flow_adds = 0;
        self.notrack = false;
        self.logs.clear();
        self.dups.clear();
        self.fwd = None;
        self.synproxy = None;
    }
}

impl Actions for Act {
    fn nat(
        &mut self,
        _pkt: &Pkt,
        spec: &NatSpec,
        addr: Option<(u128, u128)>,
        port: Option<(u16, u16)>,
    ) {
        // NAT is terminal, so a chain hands over at most one.
        self.any = true;
        self.nat = Some(NatRequest {
            kind: spec.kind,
            ipv6: spec.ipv6,
            persistent: spec.persistent,
            random: spec.random,
            fully_random: spec.fully_random,
            addr,
            port,
        });
    }
    fn reject(&mut self, _pkt: &Pkt, r: &Reject) {
        self.any = true;
        self.reject = Some(r.clone());
    }
    fn flow_add(&mut self, _pkt: &Pkt, flowtable: &str) {
        self.any = true;
        match self.flow_add.get_mut(self.flow_adds) {
            Some(s) => {
                s.clear();
                s.push_str(flowtable);
            }
            None => self.flow_add.push(flowtable.to_owned()),
        }
        self.flow_adds += 1;
    }
    fn notrack(&mut self, _pkt: &Pkt) {
        self.any = true;
        self.notrack = true;
    }
    fn log(&mut self, _pkt: &Pkt, prefix: Option<&str>, level: u8, _rule: &str) {
        self.any = true;
        self.logs.push(LogSpec {
            prefix: prefix.map(str::to_owned),
            level,
            ..LogSpec::default()
        });
    }
    fn log_spec(&mut self, _pkt: &Pkt, spec: &LogSpec, _rule: &str) {
        self.any = true;
        self.logs.push(spec.clone());
    }
    fn dup(&mut self, _pkt: &Pkt, addr: Option<u128>, dev: Option<u32>) {
        self.any = true;
        self.dups.push((addr, dev));
    }
    fn fwd(&mut self, _pkt: &Pkt, addr: Option<u128>, dev: u32) {
        self.any = true;
        self.fwd = Some((addr, dev));
    }
    fn synproxy(&mut self, _pkt: &Pkt, spec: &crate::synproxy::SynproxySpec) {
        self.any = true;
        self.synproxy = Some(*spec);
    }
}

/// What rules may ask of the router: its FIB, its interfaces and its connections.
/// Interface numbers are topology indexes plus one, as `meta iif` has them.
struct RouterEnv<'a> {
    topo: &'a Topology,
    fib: &'a Fib,
    ct: &'a Table,
    ifnames: &'a [u128],
}

impl Env for RouterEnv<'_> {
    fn route(&self, addr: u128, v6: bool) -> RouteAnswer {
        match self.fib.lookup(bits_addr(addr, v6)) {
            None => RouteAnswer::None,
            Some((RouteKind::Local(i), _)) => RouteAnswer::Local(*i as u32 + 1),
            Some((RouteKind::Unicast(nh), _)) => RouteAnswer::Unicast {
                oif: nh.ifindex as u32 + 1,
            },
            Some((RouteKind::Blackhole, _)) => RouteAnswer::Blackhole,
            Some((RouteKind::Unreachable, _)) => RouteAnswer::Unreachable,
        }
    }

    fn is_local(&self, addr: u128, v6: bool, ifindex: Option<u32>) -> bool {
        let a = bits_addr(addr, v6);
        self.topo
            .interfaces
            .iter()
            .filter(|i| i.up && ifindex.is_none_or(|x| x as usize == i.index + 1))
            .any(|i| i.addresses.iter().any(|(x, _)| *x == a))
    }

    fn is_subnet_broadcast(&self, addr: u128, ifindex: Option<u32>) -> bool {
        let a = bits_addr(addr, false);
        self.topo
            .interfaces
            .iter()
            .filter(|i| i.up && ifindex.is_none_or(|x| x as usize == i.index + 1))
            .any(|i| {
                i.addresses.iter().any(|(x, len)| match (x, a) {
                    (IpAddr::V4(x), IpAddr::V4(a)) if *len < 31 => {
                        let host = u32::MAX >> len;
                        u32::from(*x) | host == u32::from(a)
                    }
                    _ => false,
                })
            })
    }

    fn mtu(&self, ifindex: u32) -> u32 {
        (ifindex as usize)
            .checked_sub(1)
            .and_then(|i| self.topo.interfaces.get(i))
            .map_or(0, |i| i.mtu as u32)
    }

    fn ifname(&self, ifindex: u32) -> u128 {
        (ifindex as usize)
            .checked_sub(1)
            .and_then(|i| self.ifnames.get(i))
            .copied()
            .unwrap_or(0)
    }

    fn ifkind(&self, ifindex: u32) -> u128 {
        (ifindex as usize)
            .checked_sub(1)
            .and_then(|i| self.topo.interfaces.get(i))
            .map_or(0, |i| rules::ifname_value(&i.kind))
    }

    fn conn_alive(&self, handle: u64) -> bool {
        self.ct
            .get(ConnId::from_bits(handle))
            .is_some_and(|c| !c.status().contains(Status::DYING))
    }
}

/// A packet's connection as rules read it: each field is read from the table's entry when a
/// rule asks for it. Copying them all for every chain run (a [`CtInfo`]) cost about 450
/// instructions a chain, and most chains read one field or none.
struct LiveCt<'a> {
    conn: &'a Conn,
    handle: u64,
    /// NF_CT_STATE bit of the packet (`ct state`).
    state: u32,
    reply: bool,
    now: Duration,
}

impl CtFacts for LiveCt<'_> {
    fn ct_get(&self, key: CtK, reply: Option<bool>) -> u128 {
        let c = self.conn;
        // the tuple is built (IPv6 addresses fetched) only for the keys that read it
        let t = || {
            if reply.unwrap_or(false) {
                c.reply()
            } else {
                c.original()
            }
        };
        let count = |f: fn(nft_conntrack::Counter) -> u64| match reply {
            None => {
                f(c.counter(Direction::Original)).saturating_add(f(c.counter(Direction::Reply)))
            }
            Some(false) => f(c.counter(Direction::Original)),
            Some(true) => f(c.counter(Direction::Reply)),
        };
        match key {
            CtK::State => self.state as u128,
            CtK::Direction => self.reply as u128,
            CtK::Status => c.status().bits() as u128,
            CtK::Mark => c.mark as u128,
            CtK::Expiration => c.expiration_ms(self.now).min(u32::MAX as u64) as u128,
            CtK::L3Proto => {
                if c.original().is_ipv4() {
                    2
                } else {
                    10
                }
            }
            CtK::Protocol => c.original().proto as u128,
            CtK::Saddr => addr_bits(t().src),
            CtK::Daddr => addr_bits(t().dst),
            CtK::ProtoSrc => t().sport as u128,
            CtK::ProtoDst => t().dport as u128,
            CtK::Zone => c.zone() as u128,
            CtK::Packets => count(|k| k.packets) as u128,
            CtK::Bytes => count(|k| k.bytes) as u128,
            CtK::AvgPkt => count(|k| k.bytes)
                .checked_div(count(|k| k.packets))
                .unwrap_or(0) as u128,
            CtK::Label => c.labels(),
            CtK::Id => c.id as u128,
            CtK::Helper => c.helper().map_or(0, rules::ifname_value),
            CtK::Secmark => c.secmark() as u128,
        }
    }

    fn ct_handle(&self) -> u64 {
        self.handle
    }
}

/// One packet's state on its walk.
struct Walk {
    iif: usize,
    oif: Option<usize>,
    v6: bool,
    /// What rules see of the packet besides its bytes and connection, kept for the whole
    /// walk: the mark, priority, trace flag and secmark chains set live here, and a chain
    /// run refreshes only the fields that may have moved (headers, interfaces).
    view: rules::PktState,
    /// The packet's network and transport protocol as [`HookIndex::protocols`] reads them,
    /// once for the hooks and chains it passes; `None` after something re-parsed the
    /// packet (NAT beyond addresses and ports, a mangled packet, reassembly).
    protos: Option<(u8, u8)>,
    /// [`Walk::view`] has the packet's header offsets, protocols and length (reset with
    /// [`Walk::protos`], where the packet is re-parsed).
    view_headers: bool,
    /// The walk's connection is new ([`Table::is_new`]) and nothing on the walk bound NAT
    /// for it: it has none, and the NAT rewrites have nothing to do.
    nat_free: bool,
    /// [`Router::live_hooks`] of the packet (`None`: not worked out, or reset with
    /// [`Walk::protos`]).
    live_hooks: Option<u8>,
    /// `ct zone set` before conntrack: the zone the connection is looked up in.
    zone: u16,
    /// The route's next hop, once routed (`rt nexthop`).
    nexthop: Option<IpAddr>,
    pkttype: u8,
    /// `notrack` in a raw chain.
    notrack: bool,
    /// The packet went through conntrack (so a missing `conn` means invalid).
    tracked: bool,
    conn: Option<(ConnId, Direction)>,
    state: CtState,
    src_mac: Mac,
    /// `flow add` admitted by the kernel's rules: the flowtable and the chain's family, for
    /// when the walk is through.
    flow_add: Option<(usize, Family)>,
    /// `ct mark set` during this walk: the value, for the flow's mangle replay.
    ct_mark: Option<u32>,
    /// A packet the router made (reset, ICMP error) on its way out through the output and
    /// postrouting hooks: it has no input interface, and its own rejects answer nothing.
    local: bool,
    /// How the packet leaves fragmented: the payload length of each fragment (those of a
    /// reassembled datagram, or the whole payload to cut at the egress MTU), and the IP
    /// length of the largest fragment that came in (`frag_max_size`), the identification,
    /// and whether the largest fragments all had DF (`IPSKB_FRAG_PMTU`).
    frags: Option<(Vec<usize>, usize, u32, bool)>,
    /// Live mode: the next hop whose MAC is being resolved; the frame waits in
    /// [`Router::held`] instead of leaving.
    hold: Option<IpAddr>,
    /// The packet is a GSO super-packet, walked whole and cut into its segments at output
    /// (see [`crate::gso::Walking`]).
    gso: Option<crate::gso::Walking>,
}

/// Where each hook's base chains lie in `rules.base` (sorted by hook, then by where they run),
/// and the families they are for, so that a walk skips a hook without chains for its packet
/// with one test.
#[derive(Debug, Clone, Copy, Default)]
struct HookIndex {
    /// First and end index in `rules.base`, by `Hook as usize`.
    range: [(u32, u32); HOOKS],
    /// Bit `1 << family` for each family with a chain on the hook.
    families: [u8; HOOKS],
    /// The protocols some chain of the hook may act on ([`filter::ChainFilter`]; a chain
    /// whose policy drops acts on every packet): the others pass the hook untouched.
    live: [filter::ChainFilter; HOOKS],
}

const HOOKS: usize = Hook::Postrouting as usize + 1;

impl HookIndex {
    fn new(rules: &Ruleset, filters: &[filter::ChainFilter]) -> HookIndex {
        let mut x = HookIndex::default();
        for (i, b) in rules.base.iter().enumerate() {
            let h = b.hook as usize;
            if x.families[h] == 0 {
                x.range[h].0 = i as u32;
            }
            x.range[h].1 = i as u32 + 1;
            x.families[h] |= 1 << b.family as u8;
            let f = match filters.get(i) {
                Some(f) if !b.policy_drop => *f,
                _ => filter::ChainFilter::ALL,
            };
            x.live[h] = x.live[h].union(f);
        }
        x
    }

    /// The network and transport protocol of a packet, as [`filter::ChainFilter::runs`]
    /// takes them.
    #[inline(always)]
    fn protocols(meta: &PacketMeta) -> (u8, u8) {
        let nfproto = match meta.ip_version {
            Some(IpVersion::Ipv4) => 2,
            Some(IpVersion::Ipv6) => 10,
            None => 0,
        };
        (nfproto, meta.ip_protocol.map_or(0, u8::from))
    }

    /// The families whose chains see a packet at `hook`: netdev and inet at ingress, the
    /// packet's own and inet elsewhere.
    #[inline]
    fn packet_families(hook: Hook, v6: bool) -> u8 {
        let own = match (hook, v6) {
            (Hook::Ingress, _) => Family::Netdev,
            (_, false) => Family::Ip,
            (_, true) => Family::Ip6,
        };
        1 << own as u8 | 1 << Family::Inet as u8
    }
}

/// What the walk decided for a packet that was not dropped.
#[derive(Clone, Copy)]
enum Fate {
    Host,
    Tx { egress: usize, dst_mac: Mac },
}

/// The router: topology, FIB, compiled ruleset and its state, connection table, counters.
pub struct Router {
    topo: Topology,
    ports: Ports,
    fib: Fib,
    rules: Ruleset,
    /// Where `rules.base` has each hook's chains.
    hooks: HookIndex,
    /// For each base chain, the protocols its rules may act on (others skip it).
    filters: Vec<filter::ChainFilter>,
    /// For each base chain, the interfaces its rules need, if they all need some.
    if_filters: Vec<Option<filter::IfTable>>,
    state: State,
    ct: Table,
    cfg: Config,
    counters: Counters,
    ifnames: Vec<u128>,
    logs: Vec<String>,
    trace: Vec<String>,
    packet_no: u64,
    offload: Offload,
    // Per burst, kept to reuse their allocations.
    slots: Vec<FrameSlot>,
    sent: Vec<Sent>,
    tx: Vec<TxFrame>,
    /// The `Act` each base chain run borrows (its buffers are kept between runs).
    act: Act,
    /// Fragments waiting for the rest of their datagram.
    defrag: Defrag,
    /// Next hops whose MAC was missing (live mode), for [`Router::take_unresolved`].
    unresolved: Vec<(usize, IpAddr)>,
    /// Frames waiting for their next hop's MAC (live mode), oldest first.
    held: Vec<Held>,
    /// The SYN cookie secret of `synproxy`.
    cookie_key: crate::synproxy::CookieKey,
    /// When conntrack's time-driven GC last ran (`None`: not yet).
    ct_gc_last: Option<Duration>,
    /// The next hop a routed packet last went to and its MAC, as the topology has it (the
    /// slow path's new connections mostly leave for one gateway: a compare, not a map
    /// look-up); forgotten when a neighbour changes.
    last_neighbour: Option<(usize, IpAddr, Mac)>,
}

/// A routed frame, link header written but for the destination MAC, waiting for the kernel to
/// resolve its next hop (as the kernel's own neighbour queue, `unres_qlen`, holds them).
struct Held {
    egress: usize,
    next: IpAddr,
    frame: Vec<u8>,
    mark: u32,
    priority: u32,
    since: Duration,
    /// A GSO packet held whole ([`Config::gso_out`]).
    offload: nft_flowtable::Offload,
}

/// How many frames wait for neighbours at most; beyond, they are dropped.
const HELD_MAX: usize = 256;
/// How long a frame waits for its neighbour (the kernel gives up resolving after about 3 s).
const HOLD_FOR: Duration = Duration::from_secs(3);

/// Conntrack GC sweeps the whole table (every slot, so a table left large by a flood that
/// has expired too) once in this much time of `now` (the kernel's `gc_worker` looks at the
/// table in steps the same way), on top of what slow-path frames pay for.
pub const CT_SWEEP: Duration = Duration::from_secs(1);
/// Time-driven conntrack GC runs at most once per this much time of `now`: a fast-path
/// burst then costs a compare, not a scan.
pub const CT_GC_TICK: Duration = Duration::from_millis(10);

/// How many unresolved next hops are queued between two [`Router::take_unresolved`] calls.
const UNRESOLVED_MAX: usize = 256;

fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

fn bits_addr(v: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(v))
    } else {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    }
}

fn is_mcast_or_bcast(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_multicast() || v.is_broadcast(),
        IpAddr::V6(v) => v.is_multicast(),
    }
}

impl Router {
    pub fn new(topo: Topology, rules: Ruleset, cfg: Config) -> Router {
        let ports = Ports::new(&topo);
        let fib = topo.build_fib();
        let state = State::new(&rules);
        let ct = Table::new(cfg.conntrack.clone());
        let counters = Counters::new(topo.interfaces.len());
        let ifnames: Vec<u128> = topo
            .interfaces
            .iter()
            .map(|i| rules::ifname_value(&i.name))
            .collect();
        let offload = Offload::new(
            &rules,
            &topo,
            cfg.offload,
            cfg.conntrack.max_entries,
            flow_seed(&cfg),
        );
        let filters = filter::chain_filters(&rules);
        Router {
            topo,
            ports,
            fib,
            hooks: HookIndex::new(&rules, &filters),
            filters,
            if_filters: filter::if_tables(&rules, &ifnames),
            rules,
            state,
            ct,
            cfg,
            counters,
            ifnames,
            logs: vec![],
            trace: vec![],
            packet_no: 0,
            offload,
            slots: vec![],
            sent: vec![],
            tx: vec![],
            act: Act::default(),
            defrag: Defrag::new(DefragConfig::default()),
            unresolved: vec![],
            held: vec![],
            cookie_key: crate::synproxy::CookieKey::default(),
            ct_gc_last: None,
            last_neighbour: None,
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    pub fn conntrack(&self) -> &Table {
        &self.ct
    }

    pub fn conntrack_mut(&mut self) -> &mut Table {
        &mut self.ct
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn rule_state(&self) -> &State {
        &self.state
    }

    pub fn ruleset(&self) -> &Ruleset {
        &self.rules
    }

    /// Log lines of `log` statements so far (up to the configured capacity).
    pub fn logs(&self) -> &[String] {
        &self.logs
    }

    /// The trace lines gathered since the last call (with `Config::trace`).
    pub fn take_trace(&mut self) -> Vec<String> {
        std::mem::take(&mut self.trace)
    }

    /// Runs a burst of frames. Frames' buffers are taken (left empty); what leaves is
    /// appended to `out`, in order. Built on [`process_slots`](Self::process_slots): each
    /// frame is copied into a slot with the headroom a NIC's receive buffer has
    /// ([`nft_flowtable::HEADROOM`]), so the fast path pushes a VLAN tag or PPPoE header in
    /// place here as in the live router, instead of punting for want of room.
    pub fn process(&mut self, burst: &mut [Frame], now: Duration, out: &mut Vec<TxFrame>) {
        let mut slots = std::mem::take(&mut self.slots);
        let mut sent = std::mem::take(&mut self.sent);
        slots.clear();
        // An ingress beyond a port number is no interface either way; the slow path drops it.
        slots.extend(burst.iter_mut().map(|f| {
            let data = std::mem::take(&mut f.data);
            FrameSlot::new(u16::try_from(f.ingress).unwrap_or(u16::MAX), &data)
        }));
        sent.clear();
        self.process_slots(&mut slots, now, &mut sent);
        for s in sent.drain(..) {
            match s {
                Sent::Frame(f) => out.push(f),
                Sent::Slots { start, end } => {
                    for s in slots.get_mut(start..end).unwrap_or_default() {
                        let Some(egress) = s.egress() else { continue };
                        let mark = s.mark.unwrap_or(0);
                        let offload = s.offload;
                        let data = std::mem::replace(s, FrameSlot::from_vec(0, vec![])).into_vec();
                        out.push(TxFrame {
                            egress: Port::Iface(usize::from(egress)),
                            data,
                            mark,
                            priority: 0,
                            offload,
                        });
                    }
                }
            }
        }
        slots.clear();
        self.slots = slots;
        self.sent = sent;
    }

    /// Runs a burst of frames held in slots (buffers with headroom, which a receive loop
    /// refills). A fast-path hit is rewritten in its slot and leaves as
    /// [`Sent::Slots`] (its slot's [`FrameSlot::egress`] says where), with no allocation or
    /// copy; a frame for the slow path has its buffer
    /// taken (the slot is left empty, to be refilled) and what it sends leaves as
    /// [`Sent::Frame`]. `out` is appended to in order.
    pub fn process_slots<S: SlotBuf>(
        &mut self,
        slots: &mut [FrameSlot<S>],
        now: Duration,
        out: &mut Vec<Sent>,
    ) {
        if !self.held.is_empty() {
            self.release_held(now, out);
        }
        if self.defrag.queues() > 0 {
            let expired = self.defrag.expire(now);
            self.counters.drops[Drop::FragTimeout.index()] += expired as u64;
        }
        self.offload.tick(&mut self.ct, &self.fib, &self.topo, now);
        // with tracing, each frame's tuple as it arrived (the fast path rewrites in place)
        let before: Vec<Option<Tuple>> = if self.cfg.trace {
            slots.iter().map(|s| self.fast_trace_key(s)).collect()
        } else {
            Vec::new()
        };
        let base = out.len();
        let slow = slots.len() - self.offload.fast_path(slots, now);
        self.ct_gc(now, slow);
        if slow == 0 && before.is_empty() {
            return self.sent_fast(slots, out);
        }
        let mut tx = std::mem::take(&mut self.tx);
        for (i, s) in slots.iter_mut().enumerate() {
            self.packet_no += 1;
            let ingress = usize::from(s.port);
            if let Some(egress) = self.offload.forwarded(i) {
                let rx_len = s.arrived_len();
                if let Some(t) = before.get(i) {
                    let flow = t
                        .and_then(|t| self.offload.describe(s.port, &t, now))
                        .unwrap_or_default();
                    let name =
                        |i: usize| self.topo.interfaces.get(i).map_or("?", |i| i.name.as_str());
                    self.trace.push(format!(
                        "trace id {:08x} fast path: iif \"{}\" length {rx_len} flowtable {flow} oif \"{}\" (verdict forward)",
                        self.packet_no,
                        name(ingress),
                        name(egress)
                    ));
                }
                if let Some(c) = self.counters.rx.get_mut(ingress) {
                    c.add(rx_len);
                }
                if let Some(c) = self.counters.tx.get_mut(egress) {
                    c.add(s.len());
                }
                // a run of forwarded slots is one entry (one begun in this call)
                let mine = out.len() > base;
                match out.last_mut() {
                    Some(Sent::Slots { end, .. }) if *end == i && mine => *end += 1,
                    _ => out.push(Sent::Slots {
                        start: i,
                        end: i + 1,
                    }),
                }
                continue;
            }
            let off = s.offload;
            let data = S::take_frame(s);
            if !off.is_plain() {
                self.receive_offloaded(ingress, data, &off, now, &mut tx);
                out.extend(tx.drain(..).map(Sent::Frame));
                continue;
            }
            if self.cfg.trace {
                self.trace_packet(ingress, &data);
            }
            self.receive(ingress, data, None, now, &mut tx);
            out.extend(tx.drain(..).map(Sent::Frame));
        }
        self.tx = tx;
    }

    /// [`process_slots`](Self::process_slots) for a burst with frames whose
    /// [`Offload`](nft_flowtable::Offload) is not plain: GSO super-packets and partial
    /// checksums, as AF_PACKET with `PACKET_VNET_HDR` receives them (see [`crate::gso`]). The
    /// fast path forwards a GSO packet whole when its segments fit the egress MTU, and a
    /// forwarded frame's partial checksum is the rewritten packet's pseudo-header sum
    /// (`csum_start` set to where its transport header now is); the slow path gets the
    /// segments of a GSO packet, and a partial checksum completed. A plain burst costs the
    /// same through either.
    pub fn process_slots_offloaded<S: SlotBuf>(
        &mut self,
        slots: &mut [FrameSlot<S>],
        now: Duration,
        out: &mut Vec<Sent>,
    ) {
        // each partial checksum's difference from its pseudo-header sum (0 as stacks leave
        // it), on the stack for a burst of up to 256 frames
        let mut small = [0u16; 256];
        let mut big = Vec::new();
        let rests: &mut [u16] = if slots.len() <= small.len() {
            &mut small[..slots.len()]
        } else {
            big.resize(slots.len(), 0);
            &mut big
        };
        for (s, r) in slots.iter_mut().zip(rests.iter_mut()) {
            *r = crate::gso::prepare(s);
        }
        let from = out.len();
        self.process_slots(slots, now, out);
        for o in &out[from..] {
            if let Sent::Slots { start, end } = *o {
                let done = slots.get_mut(start..end).unwrap_or_default();
                for (s, &r) in done.iter_mut().zip(rests.get(start..).unwrap_or_default()) {
                    if s.egress().is_some() {
                        crate::gso::finish(s, r);
                    }
                }
            }
        }
    }

    /// A GSO or partial-checksum frame for the slow path: a GSO packet is walked whole, once,
    /// as the kernel walks the skb, and cut into its segments at output (the kernel's software
    /// GSO, [`crate::gso::Walking`]); a plain packet's partial checksum is completed first
    /// (`skb_checksum_help`).
    #[cold]
    fn receive_offloaded(
        &mut self,
        ingress: usize,
        mut data: Vec<u8>,
        off: &nft_flowtable::Offload,
        now: Duration,
        tx: &mut Vec<TxFrame>,
    ) {
        if off.is_gso() {
            match crate::gso::walking(&data, off) {
                Some(g) => {
                    if self.cfg.trace {
                        self.trace_packet(ingress, &data);
                    }
                    self.receive(ingress, data, Some(g), now, tx);
                }
                None => self.counters.drop(Drop::GsoUnsupported),
            }
            return;
        }
        if off.csum_partial() {
            crate::gso::complete(&mut data, off);
        }
        if self.cfg.trace {
            self.trace_packet(ingress, &data);
        }
        self.receive(ingress, data, None, now, tx);
    }

    /// A burst the fast path forwarded whole, untraced: each slot goes out where the fast
    /// path sent it, and the interfaces' counters add up each run of frames from one port
    /// (to one port) and are written once a run, not once a frame.
    fn sent_fast<S: SlotBuf>(&mut self, slots: &[FrameSlot<S>], out: &mut Vec<Sent>) {
        self.packet_no += slots.len() as u64;
        let counters = &mut self.counters;
        fn flush(c: &mut crate::counters::Counters, key: u64, packets: u64, rx: u64, tx: u64) {
            if let Some(c) = c.rx.get_mut((key & 0xffff) as usize) {
                c.packets += packets;
                c.bytes += rx;
            }
            if let Some(c) = c.tx.get_mut((key >> 16) as usize) {
                c.packets += packets;
                c.bytes += tx;
            }
        }
        // Runs of frames from one port to one port, (ingress, egress) as one key (an egress
        // of `None`, which a forwarded slot never has, is `u32::MAX` there: no counter's
        // index). A burst from one port to one port is one run. Each run is found first (the
        // two ports compared with the run's first frame's, as they lie in the slots), then
        // its bytes in and out summed (two adds a frame), and both interfaces' counters take
        // the run's packets and bytes once.
        let mut rest = slots;
        while let Some(first) = rest.first() {
            let key = first.ports_key();
            let run = rest
                .iter()
                .position(|s| !s.same_ports(first))
                .unwrap_or(rest.len());
            let (this, next) = rest.split_at(run);
            let (mut rx_bytes, mut tx_bytes) = (0u64, 0u64);
            for s in this {
                rx_bytes += s.arrived_len() as u64;
                tx_bytes += s.len() as u64;
            }
            flush(counters, key, this.len() as u64, rx_bytes, tx_bytes);
            rest = next;
        }
        out.push(Sent::Slots {
            start: 0,
            end: slots.len(),
        });
    }

    /// Conntrack GC before the slow path's frames of a burst: a budget per burst that has
    /// some and two slots per such frame (GC keeps pace with what makes connections), and
    /// a sweep of the whole table every [`CT_SWEEP`] in steps of [`CT_GC_TICK`] or more.
    /// Fast-path frames make no connections: a burst of them alone pays a compare (scanning
    /// for them cost a third of the flowtable's own work a packet).
    #[inline]
    fn ct_gc(&mut self, now: Duration, slow: usize) {
        let mut budget = if slow > 0 {
            self.cfg.gc_budget.saturating_add(slow.saturating_mul(2))
        } else {
            0
        };
        // (a capture's clock going back starts the step again)
        let last = match self.ct_gc_last {
            Some(t) if t <= now => t,
            _ => *self.ct_gc_last.insert(now),
        };
        if now >= last.saturating_add(CT_GC_TICK) {
            self.ct_gc_last = Some(now);
            // the slots, not the live entries: GC scans the slot array, which keeps its
            // size after a flood expires
            let share = self.ct.slots() as u128 * (now - last).as_nanos() / CT_SWEEP.as_nanos();
            let share = usize::try_from(share).unwrap_or(usize::MAX);
            budget = budget.saturating_add(share.max(self.cfg.gc_budget));
        }
        if budget > 0 {
            self.ct.gc(now, budget);
        }
    }

    fn transmit(&mut self, egress: Port, data: Vec<u8>, out: &mut Vec<TxFrame>) {
        self.transmit_with(egress, data, 0, 0, out);
    }

    fn transmit_with(
        &mut self,
        egress: Port,
        data: Vec<u8>,
        mark: u32,
        priority: u32,
        out: &mut Vec<TxFrame>,
    ) {
        match egress {
            Port::Iface(i) => {
                if let Some(c) = self.counters.tx.get_mut(i) {
                    c.add(data.len());
                }
            }
            Port::Host => self.counters.host.add(data.len()),
        }
        out.push(TxFrame {
            egress,
            data,
            mark,
            priority,
            offload: nft_flowtable::Offload::default(),
        });
    }

    fn receive(
        &mut self,
        ingress: usize,
        mut data: Vec<u8>,
        // a GSO packet handed on by `receive_offloaded`, walked whole; `None` for a plain one
        gso: Option<crate::gso::Walking>,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) {
        match self.counters.rx.get_mut(ingress) {
            Some(c) => c.add(data.len()),
            None => return self.counters.drop(Drop::NoInterface),
        }
        // (one PacketMeta for the whole walk, used where the parse left it: each move of it
        // is a copy of some 250 bytes, taking it out of the `Result` one too)
        let mut parsed = parse_frame(&data);
        let meta = match &mut parsed {
            Ok(m) => m,
            Err(e) => {
                self.counters.parse[e.index()] += 1;
                return;
            }
        };
        let iif = match self.ports.classify(&self.topo, ingress, meta, &data) {
            Ok(i) => i,
            Err(d) => {
                return self.counters.drop(if meta.ip_version.is_none() {
                    Drop::NotIp
                } else {
                    d
                })
            }
        };
        let iface = &self.topo.interfaces[iif];
        if !iface.up {
            return self.counters.drop(Drop::InterfaceDown);
        }
        if meta.ip_version.is_none() {
            if let Some(reply) = l2::arp_reply(iface, meta) {
                self.counters.arp_replies += 1;
                return self.transmit(Port::Iface(iif), reply, out);
            }
            return self.counters.drop(Drop::NotIp);
        }
        let dst = meta.dst_mac.0;
        let l2_mcast = dst[0] & 1 != 0;
        if !l2_mcast && dst != iface.mac {
            return self.counters.drop(Drop::OtherHost);
        }
        // Neighbour discovery belongs to the kernel's stack, beside this dataplane.
        if meta.ip_protocol == Some(IpProtocol::Icmpv6)
            && meta.icmp.is_some_and(|i| (133..=137).contains(&i.msg_type))
        {
            return self.counters.drop(Drop::NotIp);
        }
        // Rules see the frame as the logical interface delivers it: Ethernet, no tags, no
        // PPPoE. Move the MACs next to L3 instead of moving the packet.
        let mut start = 0;
        if meta.l3_offset != 14 {
            let Some(s) = meta.l3_offset.checked_sub(14) else {
                return self.counters.drop(Drop::UnknownEncap);
            };
            let ethertype = if meta.ip_version == Some(IpVersion::Ipv6) {
                ETHERTYPE_IPV6
            } else {
                ETHERTYPE_IPV4
            };
            data.copy_within(0..12, s);
            data[s + 12..s + 14].copy_from_slice(&ethertype.to_be_bytes());
            match parse_frame(&data[s..]) {
                Ok(m) => *meta = m,
                Err(e) => {
                    self.counters.parse[e.index()] += 1;
                    return;
                }
            }
            start = s;
        }
        self.counters.slow_path += 1;
        let pkttype = if dst == [0xff; 6] {
            1
        } else if l2_mcast {
            2
        } else {
            0
        };
        let mut w = Walk {
            iif,
            oif: None,
            view: rules::PktState::default(),
            protos: None,
            view_headers: false,
            nat_free: false,
            live_hooks: None,
            v6: meta.ip_version == Some(IpVersion::Ipv6),
            zone: 0,
            nexthop: None,
            pkttype,
            notrack: false,
            tracked: false,
            conn: None,
            state: CtState::Untracked,
            src_mac: meta.src_mac.0,
            flow_add: None,
            ct_mark: None,
            local: false,
            frags: None,
            hold: None,
            gso,
        };
        // as it arrived: what the walk changes is replayed by the flow (fragments never are)
        let dscp_in = ip_dscp(&data[start..], meta);
        match self.hook(
            Hook::Ingress,
            i32::MIN,
            i32::MAX,
            &mut w,
            &mut data[start..],
            meta,
            now,
            out,
        ) {
            Ok(()) => {}
            Err(Drop::Stolen) => return,
            Err(d) => return self.counters.drop(d),
        }
        // nf_defrag (prerouting, -400): conntrack and everything after see whole datagrams
        if meta.fragment != Fragment::None {
            let l3 = data
                .get(start + meta.l3_offset..start + meta.l3_end)
                .unwrap_or(&[]);
            match self.defrag.insert(l3, now) {
                Defragged::Held => return,
                Defragged::Dropped { why, fragments } => {
                    let d = match why {
                        FragDrop::Overlap => Drop::FragOverlap,
                        FragDrop::Duplicate => Drop::FragDuplicate,
                        FragDrop::Malformed => Drop::FragMalformed,
                        FragDrop::Memory => Drop::FragMemory,
                    };
                    self.counters.drops[d.index()] += fragments as u64;
                    return;
                }
                Defragged::Whole {
                    l3,
                    pieces,
                    max_size,
                    id,
                    df,
                } => {
                    let mut f = Vec::with_capacity(14 + l3.len());
                    f.extend_from_slice(data.get(start..start + 14).unwrap_or(&[0; 14]));
                    f.extend_from_slice(&l3);
                    *meta = match parse_frame(&f) {
                        Ok(m) => m,
                        Err(e) => {
                            self.counters.parse[e.index()] += 1;
                            return;
                        }
                    };
                    data = f;
                    start = 0;
                    w.protos = None;
                    w.live_hooks = None;
                    w.view_headers = false;
                    w.frags = Some((pieces, max_size, id, df));
                    self.counters.reassembled += 1;
                }
            }
        }
        let fate = self.walk(&mut w, &mut data[start..], meta, now, out);
        if let Some((id, dir)) = w.conn {
            self.offload.tracked(&self.ct, id);
            if let Ok(Fate::Tx { .. }) = fate {
                // what the walk set, for the fast path to replay (a DSCP left as it came is
                // not replayed: the packets behind keep theirs, as the walk would)
                let dscp_out = ip_dscp(&data[start..], meta);
                let mangles = Mangles {
                    meta_mark: (w.view.mark != 0).then_some(w.view.mark),
                    ct_mark: w.ct_mark,
                    dscp: dscp_out.filter(|&d| Some(d) != dscp_in),
                };
                self.offload
                    .forwarded_slow(&mut self.ct, id, dir, ingress, mangles);
                if let Some((t, family)) = w.flow_add {
                    if self.offload.admit(
                        t,
                        family,
                        &mut self.ct,
                        &self.fib,
                        &self.topo,
                        id,
                        meta,
                        now,
                    ) {
                        self.counters.flows_admitted += 1;
                    }
                }
            } else if w.flow_add.is_some() {
                // admitted by the rule, but the packet did not leave (dropped after the
                // chain, stolen, or for the router itself): the kernel's flow_offload_eval
                // would have offloaded it; here the next packet asks again
                self.offload.refuse("not_forwarded");
            }
        }
        let fate = match fate {
            Ok(f) => f,
            Err(Drop::Stolen) => return,
            Err(d) => {
                if let Some((id, _)) = w.conn {
                    self.ct.discard(id);
                }
                return self.counters.drop(d);
            }
        };
        match w.gso {
            None => self.emit(&mut w, fate, data, start, meta, now, out),
            Some(g) => self.emit_walked_gso(&mut w, fate, g, data, start, meta, now, out),
        }
    }

    /// A walked GSO packet leaves whole ([`Config::gso_out`], where its segments fit) or as
    /// its segments (out of line: a plain packet pays one compare for it).
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn emit_walked_gso(
        &mut self,
        w: &mut Walk,
        fate: Fate,
        g: crate::gso::Walking,
        mut data: Vec<u8>,
        start: usize,
        meta: &PacketMeta,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) {
        if self.cfg.gso_out && g.partial {
            if let Fate::Tx { egress, dst_mac } = fate {
                let fits = self.topo.interfaces.get(egress).is_some_and(|i| {
                    crate::gso::seg_l3_len(&data[start..], &g).is_some_and(|n| n <= i.mtu as usize)
                });
                if fits {
                    return self.emit_gso(w, egress, dst_mac, data, start, meta, &g, now, out);
                }
            }
        }
        // a GSO packet leaves as its segments (the kernel's software GSO at output: the
        // frames this router sends carry no offload), each as a packet of its own would
        let end = (start + meta.l3_end).min(data.len());
        let Some(segs) = crate::gso::segments(&mut data[start..end], &g) else {
            return self.counters.drop(Drop::GsoUnsupported);
        };
        let mtu = match fate {
            Fate::Tx { egress, .. } => self.topo.interfaces.get(egress).map(|i| i.mtu as usize),
            Fate::Host => None,
        };
        for seg in segs {
            let Ok(m) = parse_frame(&seg) else {
                self.counters.drop(Drop::GsoUnsupported);
                continue;
            };
            // IPv4 without DF whose segments do not fit: each segment is fragmented
            // (`ip_finish_output_gso`)
            let l3_len = m.l3_end - m.l3_offset;
            w.frags = mtu
                .filter(|&mtu| l3_len > mtu)
                .map(|_| (vec![l3_len - m.ip_header_len], l3_len, 0, false));
            self.emit(w, fate, seg, 0, &m, now, out);
        }
    }

    /// A walked GSO packet whose segments fit its egress leaves whole (the I/O sends it with
    /// its `virtio_net_hdr`: [`Config::gso_out`]), its partial checksum settled, `csum_start`
    /// where its transport header is behind the egress's link header.
    #[allow(clippy::too_many_arguments)]
    fn emit_gso(
        &mut self,
        w: &Walk,
        egress: usize,
        dst_mac: Mac,
        mut data: Vec<u8>,
        start: usize,
        meta: &PacketMeta,
        g: &crate::gso::Walking,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) {
        let end = (start + meta.l3_end).min(data.len());
        crate::gso::settle(&mut data[start..end], g);
        let l3_len = meta.l3_end - meta.l3_offset;
        let l4_in_l3 = meta.l4_offset.unwrap_or(meta.l3_end) - meta.l3_offset;
        let frame = self.encapsulate(w, egress, dst_mac, data, start, meta);
        let l3 = frame.len().saturating_sub(l3_len);
        let offload = nft_flowtable::Offload {
            gso_size: g.gso_size,
            csum_start: u16::try_from(l3 + l4_in_l3).unwrap_or(0),
        };
        if w.hold.is_some() {
            // waits whole for its next hop's MAC, as in the kernel's neighbour queue
            if self.held.len() >= HELD_MAX {
                return self.counters.drop(Drop::NeighbourUnresolved);
            }
            return self.hold(w, egress, frame, now, offload);
        }
        self.transmit_walked(w, egress, [frame], offload, out);
    }

    /// `frames` out of `egress` with the walk's mark and priority, the last one with
    /// `offload` (a GSO packet sent whole is one frame).
    #[inline(always)]
    fn transmit_walked(
        &mut self,
        w: &Walk,
        egress: usize,
        frames: impl IntoIterator<Item = Vec<u8>>,
        offload: nft_flowtable::Offload,
        out: &mut Vec<TxFrame>,
    ) {
        for frame in frames {
            self.transmit_with(
                Port::Iface(egress),
                frame,
                w.view.mark,
                w.view.priority,
                out,
            );
        }
        if !offload.is_plain() {
            if let Some(f) = out.last_mut() {
                f.offload = offload;
            }
        }
    }

    /// A walked packet (at `start` in `data`, its link header next to it) leaves as `fate`
    /// says: to the host, held for its neighbour, fragmented, or as it is. (Inlined into
    /// `receive`, a plain packet's one caller: a call would cost a new connection some 24
    /// instructions.)
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn emit(
        &mut self,
        w: &mut Walk,
        fate: Fate,
        mut data: Vec<u8>,
        start: usize,
        meta: &PacketMeta,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) {
        match fate {
            Fate::Host => {
                data.truncate(start + meta.l3_end);
                if start > 0 {
                    data.drain(..start);
                }
                self.transmit_with(Port::Host, data, w.view.mark, w.view.priority, out);
            }
            Fate::Tx { egress, .. } if w.hold.is_some() => {
                if self.held.len() >= HELD_MAX || w.frags.is_some() {
                    return self.counters.drop(Drop::NeighbourUnresolved);
                }
                let frame = self.encapsulate(w, egress, [0; 6], data, start, meta);
                self.hold(w, egress, frame, now, nft_flowtable::Offload::default());
            }
            Fate::Tx { egress, dst_mac } if w.frags.is_some() => {
                let iface = &self.topo.interfaces[egress];
                let ethertype = if w.v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
                let (pieces, _, id, _) = w.frags.take().unwrap_or_default();
                let l3 = data
                    .get(start + meta.l3_offset..start + meta.l3_end)
                    .unwrap_or(&[]);
                let Some(frags) = defrag::fragment(l3, &pieces, iface.mtu as usize, id) else {
                    return self.counters.drop(Drop::NeedsFragmentation);
                };
                let frames: Vec<Vec<u8>> = frags
                    .iter()
                    .map(|f| l2::frame_with(iface, dst_mac, ethertype, f))
                    .collect();
                self.counters.fragments_sent += frames.len() as u64;
                self.transmit_walked(w, egress, frames, nft_flowtable::Offload::default(), out);
            }
            Fate::Tx { egress, dst_mac } => {
                let frame = self.encapsulate(w, egress, dst_mac, data, start, meta);
                // (not `transmit_walked`: its loop costs a new connection some 50 instructions)
                self.transmit_with(
                    Port::Iface(egress),
                    frame,
                    w.view.mark,
                    w.view.priority,
                    out,
                );
            }
        }
    }

    /// The walked packet at `start` in `data` behind `egress`'s link header for `dst_mac`.
    #[inline(always)]
    fn encapsulate(
        &self,
        w: &Walk,
        egress: usize,
        dst_mac: Mac,
        data: Vec<u8>,
        start: usize,
        meta: &PacketMeta,
    ) -> Vec<u8> {
        let ethertype = if w.v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
        l2::encapsulate(
            data,
            start + meta.l3_offset,
            start + meta.l3_end,
            &self.topo.interfaces[egress],
            dst_mac,
            ethertype,
        )
    }

    /// Holds `frame` for its next hop's MAC (`w.hold`), as in the kernel's neighbour queue;
    /// the caller has seen that the queue has room.
    #[inline(always)]
    fn hold(
        &mut self,
        w: &Walk,
        egress: usize,
        frame: Vec<u8>,
        now: Duration,
        offload: nft_flowtable::Offload,
    ) {
        self.held.push(Held {
            egress,
            next: w.hold.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            frame,
            mark: w.view.mark,
            priority: w.view.priority,
            since: now,
            offload,
        });
    }

    /// Whether a GSO packet or a reassembled datagram of `l3_len` bytes is too big for `mtu`:
    /// a GSO packet when its segments are (`skb_gso_validate_network_len`; it leaves as
    /// them), a reassembled datagram only when a fragment that came in is (`ip_exceeds_mtu`,
    /// `ip6_pkt_too_big` with `frag_max_size`: it leaves in those fragments).
    #[cold]
    #[inline(never)]
    fn too_big_rare(w: &Walk, buf: &[u8], l3_len: usize, mtu: usize) -> bool {
        let size = match &w.gso {
            Some(g) => crate::gso::seg_l3_len(buf, g).unwrap_or(l3_len),
            None => l3_len,
        };
        match &w.frags {
            Some((_, max_size, _, _)) => size > mtu && *max_size > mtu,
            None => size > mtu,
        }
    }

    fn families(w: &Walk) -> [Family; 2] {
        if w.v6 {
            [Family::Ip6, Family::Inet]
        } else {
            [Family::Ip, Family::Inet]
        }
    }

    /// The walk from conntrack (after netdev ingress and defrag) to the choice of egress. On
    /// `Err` the caller drops the packet and discards an unconfirmed connection.
    fn walk(
        &mut self,
        w: &mut Walk,
        buf: &mut [u8],
        meta: &mut PacketMeta,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) -> Result<Fate, Drop> {
        // raw (and anything else before conntrack's -200) sees the packet untracked
        self.hook(Hook::Prerouting, i32::MIN, -201, w, buf, meta, now, out)?;
        if !w.notrack {
            w.tracked = true;
            match self.ct.process_frame(meta, buf, w.zone, now) {
                Outcome::Tracked { id, dir, state } => {
                    w.conn = Some((id, dir));
                    w.state = state;
                    w.nat_free = self.ct.is_new(id);
                }
                Outcome::Invalid(why) => {
                    w.state = CtState::Invalid;
                    *self.counters.ct_invalid.entry(why.name()).or_default() += 1;
                }
                Outcome::Untracked => {
                    w.tracked = false;
                    w.state = CtState::Untracked;
                }
                Outcome::Refused(_) => return Err(Drop::CtTableFull),
            }
        }
        self.hook(Hook::Prerouting, -200, NAT_DST_PRIO, w, buf, meta, now, out)?;
        self.nat_rewrite(w, buf, meta, Manip::Dst)?;
        self.hook(
            Hook::Prerouting,
            NAT_DST_PRIO + 1,
            i32::MAX,
            w,
            buf,
            meta,
            now,
            out,
        )?;

        let (Some(src), Some(dst)) = (meta.src_addr, meta.dst_addr) else {
            return Err(Drop::NotIp);
        };
        let _ = src;
        let route = if is_mcast_or_bcast(dst) {
            Some(RouteKind::Local(w.iif))
        } else {
            self.fib.lookup(dst).map(|r| r.0.clone())
        };
        match route {
            Some(RouteKind::Local(_)) => {
                self.hook(Hook::Input, i32::MIN, NAT_SRC_PRIO, w, buf, meta, now, out)?;
                self.nat_rewrite(w, buf, meta, Manip::Src)?;
                self.hook(
                    Hook::Input,
                    NAT_SRC_PRIO + 1,
                    i32::MAX,
                    w,
                    buf,
                    meta,
                    now,
                    out,
                )?;
                self.confirm(w, now)?;
                Ok(Fate::Host)
            }
            Some(RouteKind::Unicast(nh)) => self.forward(w, buf, meta, nh, now, out),
            Some(RouteKind::Blackhole) => Err(Drop::Blackhole),
            Some(RouteKind::Unreachable) => {
                let code = if w.v6 {
                    answer::ICMPV6_NOROUTE
                } else {
                    answer::ICMP_HOST_UNREACH
                };
                self.send_unreach(w, buf, meta, code, now, out);
                Err(Drop::Unreachable)
            }
            None => {
                let code = if w.v6 {
                    answer::ICMPV6_NOROUTE
                } else {
                    answer::ICMP_NET_UNREACH
                };
                self.send_unreach(w, buf, meta, code, now, out);
                Err(Drop::NoRoute)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        w: &mut Walk,
        buf: &mut [u8],
        meta: &mut PacketMeta,
        nh: NextHop,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) -> Result<Fate, Drop> {
        let oif = nh.ifindex;
        let Some(egress) = self.topo.interfaces.get(oif) else {
            return Err(Drop::NoRoute);
        };
        if !egress.up {
            return Err(Drop::NoRoute);
        }
        if w.pkttype != 0 {
            return Err(Drop::NotForwardable);
        }
        let mtu = egress.mtu as usize;
        // ip_forward / ip6_forward: hop limit, then size, before the forward hook.
        if meta.ttl <= 1 {
            let (ty, code) = if w.v6 {
                (answer::ICMPV6_TIME_EXCEED, 0)
            } else {
                (answer::ICMP_TIME_EXCEEDED, 0)
            };
            self.send_icmp_error(w, buf, meta, ty, code, 0, now, out);
            return Err(Drop::TtlExceeded);
        }
        let l3_len = meta.l3_end - meta.l3_offset;
        // a GSO packet or a reassembled datagram out of line ([`Self::too_big_rare`]): a plain
        // packet's test is one compare
        let too_big = if w.gso.is_none() && w.frags.is_none() {
            l3_len > mtu
        } else {
            Self::too_big_rare(w, buf, l3_len, mtu)
        };
        // (the DF bit read only for a packet too big)
        let dont_frag = |buf: &[u8]| {
            Ipv4Packet::new_checked(buf.get(meta.l3_offset..meta.l3_end).unwrap_or(&[]))
                .is_ok_and(|p| p.dont_frag())
        };
        if too_big && (w.v6 || dont_frag(buf)) {
            if w.v6 {
                self.send_icmp_error(
                    w,
                    buf,
                    meta,
                    answer::ICMPV6_PKT_TOOBIG,
                    0,
                    mtu as u32,
                    now,
                    out,
                );
                return Err(Drop::MtuExceeded);
            }
            {
                self.send_icmp_error(
                    w,
                    buf,
                    meta,
                    answer::ICMP_DEST_UNREACH,
                    answer::ICMP_FRAG_NEEDED,
                    mtu as u32,
                    now,
                    out,
                );
                return Err(Drop::MtuExceeded);
            }
        }
        // (a GSO packet's segments are fragmented at output, each on its own)
        if l3_len > mtu && w.frags.is_none() && w.gso.is_none() {
            // IPv4 without DF: ip_fragment cuts it at the egress MTU
            w.frags = Some((vec![l3_len - meta.ip_header_len], l3_len, 0, false));
        }
        decrement_ttl(buf, meta);
        w.oif = Some(oif);
        w.nexthop = nh.via.or(meta.dst_addr);
        self.hook(Hook::Forward, i32::MIN, i32::MAX, w, buf, meta, now, out)?;
        self.hook(
            Hook::Postrouting,
            i32::MIN,
            NAT_SRC_PRIO,
            w,
            buf,
            meta,
            now,
            out,
        )?;
        self.nat_rewrite(w, buf, meta, Manip::Src)?;
        self.hook(
            Hook::Postrouting,
            NAT_SRC_PRIO + 1,
            i32::MAX,
            w,
            buf,
            meta,
            now,
            out,
        )?;
        self.synproxy_post(w, buf, meta, now, out)?;
        self.confirm(w, now)?;
        let egress = &self.topo.interfaces[oif];
        let dst_mac = match l2::fixed_peer(egress) {
            Some(m) => m,
            None => {
                let next = nh.via.or(meta.dst_addr).ok_or(Drop::NoNeighbour)?;
                let found = match self.last_neighbour {
                    Some((o, n, m)) if o == oif && n == next => Some(m),
                    _ => self.topo.neighbours.get(&(oif, next)).copied(),
                };
                match found {
                    Some(m) => {
                        self.last_neighbour = Some((oif, next, m));
                        m
                    }
                    None if self.cfg.resolve_neighbours => {
                        if self.unresolved.len() < UNRESOLVED_MAX
                            && !self.unresolved.contains(&(oif, next))
                        {
                            self.unresolved.push((oif, next));
                        }
                        w.hold = Some(next);
                        [0; 6]
                    }
                    None => return Err(Drop::NoNeighbour),
                }
            }
        };
        Ok(Fate::Tx {
            egress: oif,
            dst_mac,
        })
    }

    fn confirm(&mut self, w: &Walk, now: Duration) -> Result<(), Drop> {
        let Some((id, _)) = w.conn else { return Ok(()) };
        match self.ct.confirm(id, now) {
            Ok(()) | Err(CtError::Dying) | Err(CtError::NoSuchConn) => Ok(()),
            Err(CtError::NatExhausted) => Err(Drop::NatExhausted),
            Err(_) => Err(Drop::CtClash),
        }
    }

    /// Applies the connection's NAT for `manip` to the packet (both directions: DNAT of the
    /// original and un-SNAT of replies at prerouting, the reverse at postrouting), and
    /// re-reads the packet.
    fn nat_rewrite(
        &mut self,
        w: &mut Walk,
        buf: &mut [u8],
        meta: &mut PacketMeta,
        manip: Manip,
    ) -> Result<(), Drop> {
        let Some((id, dir)) = w.conn else {
            return Ok(());
        };
        if w.nat_free {
            return Ok(());
        }
        let Some(part) = self.ct.rewrite_part(id, dir, manip) else {
            return Ok(());
        };
        if part.is_empty() {
            return Ok(());
        }
        apply_rewrite(buf, meta, &part, None).map_err(|_| Drop::RewriteFailed)?;
        if let Some(g) = &w.gso {
            // a partial checksum moves by the pseudo-header alone, as the kernel moves it
            crate::gso::settle(buf, g);
        }
        let plain_l4 = matches!(meta.ip_protocol, Some(IpProtocol::Tcp | IpProtocol::Udp))
            && meta.fragment == Fragment::None
            && meta.icmp.is_none();
        match meta.ports.as_mut() {
            // NAT of a whole TCP/UDP packet moves addresses and ports and nothing else a parse
            // reads, so the parse is patched rather than redone
            Some((sport, dport)) if plain_l4 => {
                meta.src_addr = part.src_addr.or(meta.src_addr);
                meta.dst_addr = part.dst_addr.or(meta.dst_addr);
                *sport = part.src_port.unwrap_or(*sport);
                *dport = part.dst_port.unwrap_or(*dport);
            }
            _ => {
                *meta = parse_frame(buf).map_err(|_| Drop::RewriteFailed)?;
                w.protos = None;
                w.live_hooks = None;
                w.view_headers = false;
            }
        }
        self.counters.nat_packets += 1;
        Ok(())
    }

    /// What rules see of a packet without a connection: invalid (conntrack looked and found
    /// nothing) or untracked (`ct state` alone answers). With a connection, [`LiveCt`].
    fn ct_info(w: &Walk) -> Option<&'static dyn CtFacts> {
        (w.conn.is_none() && w.tracked && w.state == CtState::Invalid)
            .then_some(&rules::CtInvalid as &'static dyn CtFacts)
    }

    /// Runs the base chains of `hook` with priority in `lo..=hi` for the packet's family, in
    /// priority order, carrying out what the rules hand over between chains.
    ///
    /// Most calls find no chain in their range (a hook the ruleset does not use, or uses for
    /// the other family only, the part of one before or after conntrack or NAT): those return
    /// here after one test of [`HookIndex`] and a short scan.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn hook(
        &mut self,
        hook: Hook,
        lo: i32,
        hi: i32,
        w: &mut Walk,
        buf: &mut [u8],
        meta: &mut PacketMeta,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) -> Result<(), Drop> {
        let h = hook as usize;
        // no chain of the hook is for the packet's family, or acts on its protocol
        if self.live_hooks(w, meta) & 1 << h == 0 {
            return Ok(());
        }
        let (first, end) = self.hooks.range[h];
        let mut i = first as usize;
        while i < end as usize && self.rules.base[i].order < lo {
            i += 1;
        }
        match self.rules.base.get(i) {
            Some(b) if i < end as usize && b.order <= hi => {
                self.run_hook(i, hook, hi, w, buf, meta, now, out)
            }
            _ => Ok(()),
        }
    }

    /// Bit `1 << hook` for each hook with a chain for the packet's family that may act on
    /// its protocols ([`HookIndex`]; every chain of its family when tracing, as a trace
    /// shows every run): worked out once for the walk's hooks, and again after a re-parse.
    #[inline(always)]
    fn live_hooks(&self, w: &mut Walk, meta: &PacketMeta) -> u8 {
        if let Some(m) = w.live_hooks {
            return m;
        }
        let (nfproto, l4proto) = w.protocols(meta);
        let mut m = 0u8;
        for hook in [
            Hook::Ingress,
            Hook::Prerouting,
            Hook::Input,
            Hook::Forward,
            Hook::Output,
            Hook::Postrouting,
        ] {
            let h = hook as usize;
            if self.hooks.families[h] & HookIndex::packet_families(hook, w.v6) != 0
                && (self.cfg.trace || self.hooks.live[h].runs(nfproto, l4proto))
            {
                m |= 1 << h;
            }
        }
        w.live_hooks = Some(m);
        m
    }

    /// [`Self::hook`] from the first chain in range, `i`, to the last: which chains run.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn run_hook(
        &mut self,
        mut i: usize,
        hook: Hook,
        hi: i32,
        w: &mut Walk,
        buf: &mut [u8],
        meta: &mut PacketMeta,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) -> Result<(), Drop> {
        let fams = Self::families(w);
        let end = self.hooks.range[hook as usize].1 as usize;
        while i < end {
            let b = &self.rules.base[i];
            i += 1;
            if b.order > hi {
                break;
            }
            if hook == Hook::Ingress {
                // netdev (and inet) ingress chains belong to their devices
                let name = &self.topo.interfaces[w.iif].name;
                if !matches!(b.family, Family::Netdev | Family::Inet)
                    || !b.devices.iter().any(|d| d == name)
                {
                    continue;
                }
            } else if !fams.contains(&b.family) {
                continue;
            }
            if b.kind == ChainType::Nat {
                // The router's own answers are related to the connection of what they answer
                // and take its NAT as they are built; the kernel runs NAT chains for them only
                // while the connection has no binding of that kind, and what they bind then
                // dies with the answered packet. So they skip NAT chains (a counter there
                // does not count them).
                if w.local {
                    continue;
                }
                // NAT chains see a connection's first packet only, until one binds (a new
                // connection nothing bound for yet is such, without a look at it)
                let Some((id, _)) = w.conn else { continue };
                if !w.nat_free {
                    let Some(c) = self.ct.get(id) else { continue };
                    if c.is_confirmed() || c.status().contains(manip_done(hook_manip(hook))) {
                        continue;
                    }
                }
            }
            // no rule of the chain can act on this protocol: the run would only apply the
            // policy (a trace shows every run, so it runs them all). The protocols are read
            // for each chain: an earlier chain may have rewritten them (`ip protocol set`).
            let skip = !self.cfg.trace && {
                let (nfproto, l4proto) = w.protocols(meta);
                !self
                    .filters
                    .get(i - 1)
                    .is_none_or(|f| f.runs(nfproto, l4proto))
                    // nor on a packet of these interfaces (fw4's `dstnat` jumps by `iifname`)
                    || self.if_filters.get(i - 1).is_some_and(|f| {
                        f.as_ref().is_some_and(|f| {
                            let iif = (!w.local).then_some(w.iif);
                            !f.runs(iif, w.oif, nfproto, l4proto)
                        })
                    })
            };
            if skip {
                if b.policy_drop {
                    return Err(Drop::PolicyDrop);
                }
                continue;
            }
            self.run_chain(i - 1, hook, w, buf, meta, now, out)?;
        }
        Ok(())
    }

    /// One base chain run (`rules.base[bi]`) on the packet, and what its rules handed over.
    /// The packet view is the walk's ([`Walk::view`]): a run refreshes what may have moved
    /// since the last (headers, interfaces) and borrows the bytes, the connection and the
    /// router for the run; what the run changed stays in the view, and the rare rest (ct
    /// fields set, statements handed over) is carried out apart ([`Self::chain_effects`],
    /// [`Self::chain_actions`]).
    /// (Inlined into [`Self::run_hook`], its one caller: a call of eight arguments a run.)
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn run_chain(
        &mut self,
        bi: usize,
        hook: Hook,
        w: &mut Walk,
        buf: &mut [u8],
        meta: &mut PacketMeta,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) -> Result<(), Drop> {
        let now_ns = crate::now_ns(now);
        // one `Act` for every chain run, used in place, so that its buffers are made once;
        // it is reset only after a run that handed something over
        if self.act.any {
            self.act.begin();
        }
        let mut trace_lines: Vec<TraceLine> = vec![];
        let v = &mut w.view;
        if !w.view_headers {
            v.set_headers(meta);
            w.view_headers = true;
        }
        (v.iif, v.iifname) = if w.local {
            (0, 0)
        } else {
            (
                w.iif as u32 + 1,
                self.ifnames.get(w.iif).copied().unwrap_or(0),
            )
        };
        // `meta pkttype set` lasts for its chain run (the walk's own type decides forwarding)
        v.pkttype = w.pkttype;
        if let Some(o) = w.oif {
            // routed: the output interface's fields, once for the walk
            if v.oif != o as u32 + 1 {
                v.oif = o as u32 + 1;
                v.oifname = self.ifnames.get(o).copied().unwrap_or(0);
                v.rt_mtu = self
                    .topo
                    .interfaces
                    .get(o)
                    .map(|i| i.mtu as u32)
                    .unwrap_or(0);
                v.nexthop = w.nexthop.map(addr_bits);
            }
        }
        let (verdict, by_policy) = {
            let env = RouterEnv {
                topo: &self.topo,
                fib: &self.fib,
                ct: &self.ct,
                ifnames: &self.ifnames,
            };
            let live = w.conn.and_then(|(id, dir)| {
                self.ct.get(id).map(|conn| LiveCt {
                    conn,
                    handle: id.to_bits(),
                    state: w.state.nft_bit(),
                    reply: dir == Direction::Reply,
                    now,
                })
            });
            let mut conn = live.as_ref().map(|l| l as &dyn CtFacts);
            w.view.new_ct_zone = None;
            if live.is_none() {
                conn = Self::ct_info(w);
                if conn.is_none() && w.zone != 0 {
                    w.view.new_ct_zone = Some(w.zone);
                }
            }
            let mut pkt = Pkt {
                frame: buf,
                conn,
                env: Some(&env),
                s: &mut w.view,
            };
            let b = &self.rules.base[bi];
            let tr = if self.cfg.trace {
                Some(&mut trace_lines)
            } else {
                None
            };
            let (v, p) = rules::run_base_chain(
                &self.rules,
                &mut self.state,
                b,
                &mut pkt,
                now_ns,
                &mut self.act,
                tr,
            );
            (v, p)
        };
        // what a run seldom changes (ct fields set, a mangled packet), looked at in one test
        if w.view.has_effects() {
            self.chain_effects(w, buf, meta, now)?;
        }
        if self.cfg.trace {
            let base_chain = self.rules.base[bi].chain;
            self.record_trace(base_chain, &trace_lines, verdict, by_policy);
        }
        if self.act.any {
            self.chain_actions(bi, hook, w, buf, meta, now, out)?;
        }
        match verdict {
            HookVerdict::Accept => Ok(()),
            HookVerdict::Drop if by_policy => Err(Drop::PolicyDrop),
            HookVerdict::Drop => Err(Drop::RuleDrop),
            HookVerdict::Queue => Err(Drop::Queue),
            HookVerdict::Stolen => Err(Drop::Stolen),
        }
    }

    /// What a chain run set beyond the mark, priority, trace flag and secmark: connection
    /// fields (`ct mark set`, `ct zone set`, ...), a mangled packet.
    #[cold]
    #[inline(never)]
    fn chain_effects(
        &mut self,
        w: &mut Walk,
        buf: &mut [u8],
        meta: &mut PacketMeta,
        now: Duration,
    ) -> Result<(), Drop> {
        // taken from the view: what a run set is carried out once, not again after the next
        let s = &mut w.view;
        let upd = &PktUpdate {
            ct_mark: s.new_ct_mark.take(),
            ct_zone: s.new_ct_zone.take(),
            ct_label: s.new_ct_label.take(),
            ct_helper: s.new_ct_helper.take(),
            mangled: std::mem::take(&mut s.mangled),
            ct_secmark: s.new_ct_secmark.take(),
            ct_timeout: s.new_ct_timeout.take(),
            ct_expect: std::mem::take(&mut s.new_ct_expect),
        };
        self.apply_features(w, upd, now);
        if let Some(z) = upd.ct_zone {
            // a zone picks the table conntrack looks in: it counts before the lookup only
            if w.conn.is_none() {
                w.zone = z;
            }
        }
        if upd.mangled {
            *meta = parse_frame(buf).map_err(|_| Drop::RewriteFailed)?;
            w.protos = None;
            w.live_hooks = None;
            w.view_headers = false;
        }
        let ct_set = upd.ct_mark.is_some() || upd.ct_label.is_some() || upd.ct_helper.is_some();
        if let Some((id, _)) = w.conn.filter(|_| ct_set) {
            if let Some(c) = self.ct.get_mut(id) {
                if let Some(m) = upd.ct_mark {
                    c.mark = m;
                    w.ct_mark = Some(m);
                }
                if let Some(l) = upd.ct_label {
                    c.set_labels(l);
                }
                // helpers attach to new connections only (`nft_ct_helper_obj_eval`)
                if let Some(h) = &upd.ct_helper {
                    if !c.is_confirmed() {
                        c.set_helper(h);
                    }
                }
            }
        }
        Ok(())
    }

    /// The statements a chain run handed over (`Act`), carried out after the run: logs and
    /// copies, notrack, `flow add`, reject, synproxy, a NAT binding.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn chain_actions(
        &mut self,
        bi: usize,
        hook: Hook,
        w: &mut Walk,
        buf: &mut [u8],
        meta: &mut PacketMeta,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) -> Result<(), Drop> {
        let family = self.rules.base[bi].family;
        // (statements the chain handed over are looked at in place: most runs have none)
        if !self.act.logs.is_empty() || !self.act.dups.is_empty() || self.act.fwd.is_some() {
            self.logs_and_copies(w, buf, meta, hook, now, out);
        }
        if self.act.notrack {
            w.notrack = true;
        }
        for ft in self.act.flow_add.iter().take(self.act.flow_adds) {
            self.counters.flow_add_requests += 1;
            let conn = w.conn.and_then(|(id, _)| self.ct.get(id));
            match admission::admit(hook, family, conn, meta) {
                // the flowtable takes it once the walk is through (confirmed)
                Ok(()) => {
                    let table = &self.rules.chains[self.rules.base[bi].chain].table;
                    if let Some(t) = self.offload.resolve(table, ft) {
                        w.flow_add = Some((t, family));
                    }
                }
                Err(why) => self.counters.flows_refused[why.index()] += 1,
            }
        }
        if self.act.reject.is_some() {
            self.reject_from_chain(w, buf, meta, now, out);
        }
        if let Some(spec) = self.act.synproxy.take() {
            self.synproxy_answer(w, buf, meta, &spec, now, out)?;
        }
        if let Some(req) = self.act.nat.take() {
            w.nat_free = false;
            self.bind_nat(w, &req)?;
        }
        Ok(())
    }

    /// What a chain's `log`, `dup` and `fwd` statements asked, carried out after the chain.
    /// Apart (and cold) so that the chain loop, which seldom needs it, stays small.
    #[cold]
    #[inline(never)]
    fn logs_and_copies(
        &mut self,
        w: &mut Walk,
        buf: &mut [u8],
        meta: &mut PacketMeta,
        hook: Hook,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) {
        for spec in std::mem::take(&mut self.act.logs) {
            self.log_line(w, buf, meta, hook, &spec);
        }
        for (addr, dev) in std::mem::take(&mut self.act.dups) {
            self.send_copy(w, buf, meta, addr, dev, Some(hook), now, out);
        }
        if let Some((addr, dev)) = self.act.fwd.take() {
            self.send_copy(w, buf, meta, addr, Some(dev), None, now, out);
        }
    }

    /// A chain's `reject`: the answer leaves now (the router's own packets answer nothing).
    #[cold]
    #[inline(never)]
    fn reject_from_chain(
        &mut self,
        w: &mut Walk,
        buf: &mut [u8],
        meta: &mut PacketMeta,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) {
        if let Some(r) = self.act.reject.take() {
            if !w.local {
                self.send_reject(w, buf, meta, &r, now, out);
            }
        }
    }

    /// What `meta secmark set`, `ct secmark set`, `ct timeout set` and `ct expectation set`
    /// asked of a chain, carried out on the walk's connection.
    fn apply_features(&mut self, w: &mut Walk, upd: &PktUpdate, now: Duration) {
        let Some((id, _)) = w.conn else { return };
        if let Some(s) = upd.ct_secmark {
            if let Some(c) = self.ct.get_mut(id) {
                c.set_secmark(s);
            }
        }
        if let Some(spec) = upd.ct_timeout.and_then(|i| self.rules.ct_timeouts.get(i)) {
            // the rule checked the protocol and that the connection is new
            let _ = self.ct.set_timeout_policy(id, &spec.policy, now);
        }
        for spec in upd
            .ct_expect
            .iter()
            .filter_map(|i| self.rules.ct_expects.get(*i))
        {
            // nft hands the kernel the timeout in milliseconds and `nft_ct_expect_obj_eval`
            // takes the number as seconds (`priv->timeout * HZ`): `timeout 1m` lasts 60000 s
            // there (`conntrack -L expect` shows it), and so here
            let timeout = Duration::from_secs(spec.timeout_ms);
            let _ = self.ct.expect(
                id,
                spec.l3proto,
                spec.l4proto,
                spec.dport,
                timeout,
                spec.size,
                now,
            );
        }
    }

    /// `dup` and `fwd`: the packet as it stands, out of interface `dev` (as `meta oif`
    /// numbers them) or the one the route to `addr` takes, to `addr`'s neighbour, or to the
    /// destination's when only a device is given. `dup` names the hook it ran in; `fwd`
    /// (netdev) none.
    #[allow(clippy::too_many_arguments)]
    fn send_copy(
        &mut self,
        w: &Walk,
        buf: &[u8],
        meta: &PacketMeta,
        addr: Option<u128>,
        dev: Option<u32>,
        dup: Option<Hook>,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) {
        let fwd = dup.is_none();
        let target = addr.map(|a| bits_addr(a, w.v6));
        let egress = match dev {
            Some(d) => (d as usize)
                .checked_sub(1)
                .filter(|i| *i < self.topo.interfaces.len()),
            None => target.and_then(|t| match self.fib.lookup(t) {
                Some((RouteKind::Unicast(nh), _)) => Some(nh.ifindex),
                _ => None,
            }),
        };
        let Some(egress) = egress.filter(|e| self.topo.interfaces[*e].up) else {
            return self.counters.drop(Drop::FwdFailed);
        };
        if fwd || dup == Some(Hook::Ingress) {
            return self.netdev_egress(w, buf, meta, addr, egress, fwd, out);
        }
        let iface = &self.topo.interfaces[egress];
        let dst_mac = match l2::fixed_peer(iface) {
            Some(m) => m,
            None => match target
                .or(meta.dst_addr)
                .and_then(|n| self.topo.neighbours.get(&(egress, n)).copied())
            {
                Some(m) => m,
                None => return self.counters.drop(Drop::FwdFailed),
            },
        };
        let ethertype = if w.v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
        let Some(l3) = buf.get(meta.l3_offset..meta.l3_end) else {
            return;
        };
        let mtu = iface.mtu as usize;
        let mut copy = l3.to_vec();
        let mut too_big = false;
        let frames = match dup {
            // (netdev's went above)
            None => return,
            Some(hook) => {
                // `nf_dup_ipv4`/`nf_dup_ipv6`: the copy is untracked; from prerouting and
                // input its TTL goes down; an IPv4 copy gets DF, so that the source hears of
                // a smaller MTU on the copy's route
                let hop = matches!(hook, Hook::Prerouting | Hook::Input);
                if w.v6 {
                    if hop && copy.len() > 7 {
                        copy[7] = copy[7].wrapping_sub(1);
                    }
                } else if copy.len() >= 20 {
                    copy[6] |= 0x40;
                    if hop {
                        copy[8] = copy[8].wrapping_sub(1);
                    }
                    let hl = usize::from(copy[0] & 0x0f) * 4;
                    copy[10..12].copy_from_slice(&[0, 0]);
                    let c = nft_wire::checksum::checksum(&copy[..hl.clamp(20, copy.len())]);
                    copy[10..12].copy_from_slice(&c.to_be_bytes());
                }
                // a GSO packet's copy keeps its GSO state (`pskb_copy`) and leaves as its
                // segments where they fit (`ip_finish_output_gso`)
                let segs = w.gso.as_ref().and_then(|g| {
                    crate::gso::segments_l3(&copy, g).filter(|s| s.iter().all(|s| s.len() <= mtu))
                });
                match &w.frags {
                    _ if segs.is_some() => segs,
                    // a reassembled datagram: too big for the route when the largest
                    // fragment that came in is (frag-needed, packet-too-big to the source);
                    // else cut afresh, the copy's fragments being shared with the original
                    // (the slow path of `ip_do_fragment`/`ip6_fragment`), at that largest
                    // fragment's size (IPv6: at least 1280)
                    Some((_, max_size, _, _)) if *max_size > mtu => {
                        too_big = true;
                        None
                    }
                    Some((_, max_size, id, pmtu)) => {
                        let at = if w.v6 {
                            (*max_size).max(1280)
                        } else {
                            *max_size
                        };
                        let whole = copy.len().saturating_sub(meta.ip_header_len);
                        // options as parsed only after prerouting (see `fragment_opts`)
                        let strip = hook != Hook::Prerouting;
                        // IPv4 fragments cut afresh keep DF when the largest that came in
                        // had it (`IPSKB_FRAG_PMTU` in `ip_do_fragment`)
                        let df = !w.v6 && *pmtu;
                        defrag::fragment_opts(&copy, &[whole], at.min(mtu), *id, strip, df)
                    }
                    // with DF (IPv4 copies have it) or IPv6: refused over the MTU
                    None if copy.len() > mtu => {
                        too_big = true;
                        None
                    }
                    None => Some(vec![copy.clone()]),
                }
            }
        };
        let Some(frames) = frames else {
            if too_big {
                self.copy_too_big(w, &copy, mtu, now, out);
            }
            return self.counters.drop(Drop::NeedsFragmentation);
        };
        self.counters.dup_packets += 1;
        let frames: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| l2::frame_with(iface, dst_mac, ethertype, f))
            .collect();
        if frames.len() > 1 && w.gso.is_none() {
            self.counters.fragments_sent += frames.len() as u64;
        }
        self.transmit_walked(w, egress, frames, nft_flowtable::Offload::default(), out);
    }

    /// netdev's `dup` and `fwd`, which hand the packet straight to a device
    /// (`nf_do_netdev_egress`, `neigh_xmit`): no route, no TTL or MTU check by the stack, no
    /// error to the source.
    /// - `fwd to DEV` (`nf_fwd_netdev_egress`) and `dup to DEV` send the frame as it came in,
    ///   its link header pushed back: its own MACs, TTL and checksums (a VLAN interface's
    ///   frame as that interface saw it, so it leaves with the egress interface's tags);
    /// - `fwd ip to ADDR device DEV` (`nft_fwd_neigh`) sends the IP packet (link padding
    ///   included: netdev runs before IP trims it) in a link header to ADDR's neighbour, from
    ///   the device's MAC, its TTL or hop limit one less (the rule dropped it if 1 or less).
    ///
    /// The device, not the stack, limits the size: a frame longer than its MTU, link header
    /// and a VLAN tag's 4 bytes does not go out (a veth's peer refuses it in
    /// `is_skb_forwardable`, as most Ethernet receivers would); counted `frame_too_long`.
    /// A walked GSO packet leaves whole with its offload ([`Config::gso_out`], its checksum
    /// partial) when its segments fit, else as its segments, checksums complete, each in a
    /// link header of its own (a PPPoE length each); one that cannot be cut is
    /// `gso_unsupported`.
    #[allow(clippy::too_many_arguments)]
    fn netdev_egress(
        &mut self,
        w: &Walk,
        buf: &[u8],
        meta: &PacketMeta,
        addr: Option<u128>,
        egress: usize,
        fwd: bool,
        out: &mut Vec<TxFrame>,
    ) {
        let iface = &self.topo.interfaces[egress];
        let frame = match addr {
            None => as_it_came(buf, meta, &self.topo.interfaces[w.iif], iface),
            Some(a) => {
                let target = bits_addr(a, w.v6);
                let dst_mac = match l2::fixed_peer(iface) {
                    Some(m) => m,
                    None => match self.topo.neighbours.get(&(egress, target)) {
                        Some(m) => *m,
                        None => return self.counters.drop(Drop::FwdFailed),
                    },
                };
                let Some(l3) = buf.get(meta.l3_offset..) else {
                    return;
                };
                let mut l3 = l3.to_vec();
                fwd_decrease_ttl(&mut l3, w.v6);
                let ethertype = if w.v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
                l2::frame_with(iface, dst_mac, ethertype, &l3)
            }
        };
        let limit = iface.mtu as usize + 14 + 4;
        let mut offload = nft_flowtable::Offload::default();
        let frames = match &w.gso {
            Some(g) => {
                // a GSO packet goes to the device as it is (`dev_queue_xmit`): whole, with its
                // offload, where the I/O sends it so ([`Config::gso_out`]); else as its
                // segments (software GSO: complete checksums, even for one segment), each
                // framed for the device (its own PPPoE length)
                let h = l2::header_len(iface);
                let l3_len = meta.l3_end.saturating_sub(meta.l3_offset);
                let Some(l3) = frame.get(h..h + l3_len) else {
                    return self.counters.drop(Drop::GsoUnsupported);
                };
                let seg_len = crate::gso::seg_l3_len(&frame[..h + l3_len], g);
                if self.cfg.gso_out && g.partial && seg_len.is_some_and(|n| h + n <= limit) {
                    let mut frame = frame;
                    frame.truncate(h + l3_len);
                    crate::gso::settle(&mut frame, g);
                    let l4_in_l3 = meta.l4_offset.unwrap_or(meta.l3_end) - meta.l3_offset;
                    offload = nft_flowtable::Offload {
                        gso_size: g.gso_size,
                        csum_start: u16::try_from(h + l4_in_l3).unwrap_or(0),
                    };
                    vec![frame]
                } else {
                    let Some(segs) = crate::gso::segments_l3(l3, g) else {
                        return self.counters.drop(Drop::GsoUnsupported);
                    };
                    let mut dst = [0u8; 6];
                    dst.copy_from_slice(&frame[0..6]);
                    let ethertype = if w.v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
                    segs.iter()
                        .map(|seg| {
                            let mut f = l2::frame_with(iface, dst, ethertype, seg);
                            f[6..12].copy_from_slice(&frame[6..12]);
                            f
                        })
                        .collect()
                }
            }
            None => vec![frame],
        };
        // (a GSO packet sent whole: its segments fit)
        if frames.is_empty() || offload.is_plain() && frames.iter().any(|f| f.len() > limit) {
            return self.counters.drop(Drop::FrameTooLong);
        }
        if fwd {
            self.counters.fwd_packets += 1;
        } else {
            self.counters.dup_packets += 1;
        }
        self.transmit_walked(w, egress, frames, offload, out);
    }

    /// A `dup` copy too big for its route: the error goes to the source, quoting the copy
    /// (untracked, so the error is `ct state invalid`), and the copy is not sent.
    fn copy_too_big(
        &mut self,
        w: &Walk,
        copy: &[u8],
        mtu: usize,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) {
        let Some((buf, meta, _)) = own_frame(copy, w.v6) else {
            return;
        };
        let mut cw = Walk::own(w, w.iif, None, w.src_mac, None, CtState::Untracked);
        cw.notrack = true;
        cw.local = false;
        cw.pkttype = w.pkttype;
        let (ty, code) = if w.v6 {
            (answer::ICMPV6_PKT_TOOBIG, 0)
        } else {
            (answer::ICMP_DEST_UNREACH, answer::ICMP_FRAG_NEEDED)
        };
        self.send_icmp_error(&cw, &buf, &meta, ty, code, mtu as u32, now, out);
    }

    /// For tracing a fast-path frame: its tuple, read before the fast path rewrites it.
    fn fast_trace_key<S: SlotBuf>(&self, s: &FrameSlot<S>) -> Option<Tuple> {
        let m = nft_wire::parse_frame(s.frame()).ok()?;
        let (sp, dp) = m.ports?;
        Some(Tuple::new(
            m.src_addr?,
            m.dst_addr?,
            m.ip_protocol.map(u8::from)?,
            sp,
            dp,
        ))
    }

    fn packet_line(&self, ingress: usize, data: &[u8]) -> String {
        let iif = self
            .topo
            .interfaces
            .get(ingress)
            .map(|i| i.name.as_str())
            .unwrap_or("?");
        let mut line = format!("packet: iif \"{iif}\" length {}", data.len());
        if let Ok(m) = nft_wire::parse_frame(data) {
            if let (Some(s), Some(d)) = (m.src_addr, m.dst_addr) {
                let fam = if s.is_ipv4() { "ip" } else { "ip6" };
                line += &format!(" {fam} saddr {s} {fam} daddr {d} ttl {}", m.ttl);
                match (m.ip_protocol.map(u8::from), m.ports) {
                    (Some(6), Some((sp, dp))) => line += &format!(" tcp sport {sp} tcp dport {dp}"),
                    (Some(17), Some((sp, dp))) => {
                        line += &format!(" udp sport {sp} udp dport {dp}")
                    }
                    (Some(p), _) => line += &format!(" meta l4proto {p}"),
                    _ => {}
                }
            }
        }
        line
    }

    /// The packet line that starts a walk: where it came in and its addresses and ports.
    fn trace_packet(&mut self, ingress: usize, data: &[u8]) {
        let line = format!(
            "trace id {:08x} {}",
            self.packet_no,
            self.packet_line(ingress, data)
        );
        self.trace.push(line);
    }

    /// One base chain's part of a packet's walk, in `nft monitor trace`'s words:
    /// `trace id 0000002a inet fw4 forward rule ... (verdict accept)`, and the policy when the
    /// chain ran off its end.
    fn record_trace(
        &mut self,
        base_chain: usize,
        lines: &[TraceLine],
        verdict: HookVerdict,
        by_policy: bool,
    ) {
        let id = self.packet_no;
        for l in lines {
            let c = &self.rules.chains[l.chain];
            if let Some(r) = l.rule.and_then(|r| c.rules.get(r)) {
                self.trace.push(format!(
                    "trace id {id:08x} {} {} {} rule {} (verdict {})",
                    c.family.name(),
                    c.table,
                    c.name,
                    r.text,
                    l.verdict
                ));
            }
        }
        if by_policy {
            let c = &self.rules.chains[base_chain];
            let v = match verdict {
                HookVerdict::Accept => "accept",
                HookVerdict::Drop => "drop",
                HookVerdict::Queue => "queue",
                HookVerdict::Stolen => "stolen",
            };
            self.trace.push(format!(
                "trace id {id:08x} {} {} {} policy {v}",
                c.family.name(),
                c.table,
                c.name
            ));
        }
    }

    /// One line per logged packet, in the kernel's `nf_log` layout (`IN= OUT= MAC= SRC= ...`)
    /// with the hook, level or group, and what the statement's flags ask for.
    fn log_line(&mut self, w: &Walk, buf: &[u8], meta: &PacketMeta, hook: Hook, spec: &LogSpec) {
        self.counters.log_lines += 1;
        if self.logs.len() >= self.cfg.log_capacity {
            return;
        }
        let name = |i: Option<usize>| {
            i.and_then(|i| self.topo.interfaces.get(i))
                .map_or("", |i| i.name.as_str())
        };
        let mut s = format!(
            "{}IN={} OUT={} hook={hook:?}",
            spec.prefix.as_deref().unwrap_or(""),
            name(Some(w.iif)),
            name(w.oif)
        );
        match spec.group {
            Some(g) => s += &format!(" group={g}"),
            None => s += &format!(" level={}", level_name(spec.level)),
        }
        if let Some(n) = spec.snaplen {
            s += &format!(" snaplen={n}");
        }
        if let Some(n) = spec.queue_threshold {
            s += &format!(" qthreshold={n}");
        }
        if spec.ether {
            let hex: Vec<String> = buf
                .get(0..14)
                .unwrap_or(&[])
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            s += &format!(" MAC={}", hex.join(":"));
        }
        let l3 = buf.get(meta.l3_offset..meta.l3_end).unwrap_or(&[]);
        s += &format!(
            " SRC={} DST={} LEN={}",
            meta.src_addr.map_or(String::new(), |a| a.to_string()),
            meta.dst_addr.map_or(String::new(), |a| a.to_string()),
            meta.l3_end - meta.l3_offset
        );
        if w.v6 {
            if l3.len() >= 40 {
                let tc = (u16::from_be_bytes([l3[0], l3[1]]) >> 4) as u8;
                let flow = u32::from_be_bytes([0, l3[1] & 0xf, l3[2], l3[3]]);
                s += &format!(" TC={tc} HOPLIMIT={} FLOWLBL={flow}", l3[7]);
            }
        } else if l3.len() >= 20 {
            let frag = u16::from_be_bytes([l3[6], l3[7]]);
            s += &format!(
                " TOS=0x{:02X} PREC=0x{:02X} TTL={} ID={}",
                l3[1],
                l3[1] & 0xe0,
                l3[8],
                u16::from_be_bytes([l3[4], l3[5]])
            );
            if frag & 0x4000 != 0 {
                s += " DF";
            }
            if frag & 0x2000 != 0 {
                s += " MF";
            }
            if spec.ip_options && l3[0] & 0xf > 5 {
                let ihl = ((l3[0] & 0xf) as usize * 4).min(l3.len());
                let hex: String = l3[20..ihl].iter().map(|b| format!("{b:02X}")).collect();
                s += &format!(" OPT ({hex})");
            }
        }
        let proto = meta.ip_protocol.map_or(0, u8::from);
        let l4 = meta
            .l4_offset
            .and_then(|o| buf.get(o..meta.l3_end))
            .filter(|_| meta.fragment != Fragment::NonFirst);
        match (proto, l4) {
            (6, Some(t)) if t.len() >= 20 => {
                s += &format!(
                    " PROTO=TCP SPT={} DPT={}",
                    u16::from_be_bytes([t[0], t[1]]),
                    u16::from_be_bytes([t[2], t[3]])
                );
                if spec.tcp_sequence {
                    s += &format!(
                        " SEQ={} ACK={}",
                        u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
                        u32::from_be_bytes([t[8], t[9], t[10], t[11]])
                    );
                }
                s += &format!(
                    " WINDOW={} RES=0x{:02x}",
                    u16::from_be_bytes([t[14], t[15]]),
                    t[12] & 0x0f
                );
                for (bit, n) in [
                    (0x20, "URG"),
                    (0x10, "ACK"),
                    (0x08, "PSH"),
                    (0x04, "RST"),
                    (0x02, "SYN"),
                    (0x01, "FIN"),
                ] {
                    if t[13] & bit != 0 {
                        s += " ";
                        s += n;
                    }
                }
                s += &format!(" URGP={}", u16::from_be_bytes([t[18], t[19]]));
                let doff = ((t[12] >> 4) as usize * 4).min(t.len());
                if spec.tcp_options && doff > 20 {
                    let hex: String = t[20..doff].iter().map(|b| format!("{b:02X}")).collect();
                    s += &format!(" OPT ({hex})");
                }
            }
            (17, Some(u)) if u.len() >= 8 => {
                s += &format!(
                    " PROTO=UDP SPT={} DPT={} LEN={}",
                    u16::from_be_bytes([u[0], u[1]]),
                    u16::from_be_bytes([u[2], u[3]]),
                    u16::from_be_bytes([u[4], u[5]])
                );
            }
            (1, Some(i)) if i.len() >= 4 => {
                s += &format!(" PROTO=ICMP TYPE={} CODE={}", i[0], i[1])
            }
            (58, Some(i)) if i.len() >= 4 => {
                s += &format!(" PROTO=ICMPv6 TYPE={} CODE={}", i[0], i[1])
            }
            _ => s += &format!(" PROTO={proto}"),
        }
        if spec.skuid {
            // forwarded packets have no local socket: the kernel prints no UID either
        }
        if w.view.mark != 0 {
            s += &format!(" MARK=0x{:x}", w.view.mark);
        }
        self.logs.push(s);
    }

    fn iface_addr(&self, i: usize, v6: bool) -> Option<IpAddr> {
        let iface: &Interface = self.topo.interfaces.get(i)?;
        iface
            .addresses
            .iter()
            .map(|(a, _)| *a)
            .find(|a| a.is_ipv6() == v6)
    }

    #[inline(never)]
    fn bind_nat(&mut self, w: &Walk, spec: &NatRequest) -> Result<(), Drop> {
        let (addr, port) = (spec.addr, spec.port);
        let Some((id, _)) = w.conn else { return Ok(()) };
        if addr.is_some() && spec.ipv6 != w.v6 && matches!(spec.kind, NatKind::Snat | NatKind::Dnat)
        {
            // an address of the other family: the kernel's rule would not have matched
            return Ok(());
        }
        let range = NatRange {
            addrs: addr.map(|(lo, hi)| (bits_addr(lo, w.v6), bits_addr(hi, w.v6))),
            ports: port.map(|(lo, hi)| (lo.min(hi), lo.max(hi))),
            persistent: spec.persistent,
            random: spec.random,
            fully_random: spec.fully_random,
        };
        let r = match spec.kind {
            NatKind::Snat => self.ct.snat(id, &range),
            NatKind::Dnat => self.ct.dnat(id, &range),
            NatKind::Masquerade => {
                let oif = w.oif.ok_or(Drop::NatFailed)?;
                let a = self.iface_addr(oif, w.v6).ok_or(Drop::NatFailed)?;
                self.ct.masquerade(id, a, oif as u32, &range)
            }
            NatKind::Redirect => {
                let a = self.iface_addr(w.iif, w.v6).ok_or(Drop::NatFailed)?;
                self.ct.redirect(id, a, range.ports)
            }
        };
        match r {
            Ok(()) => {
                self.counters.nat_bindings += 1;
                Ok(())
            }
            Err(CtError::AlreadyBound) => Ok(()),
            Err(CtError::NatExhausted) => Err(Drop::NatExhausted),
            Err(_) => Err(Drop::NatFailed),
        }
    }

    /// The IP packet an answer is about, as it is now (after DNAT, if any): the kernel builds
    /// its answers from the packet in hand, and the answer's own walk through conntrack's NAT
    /// ([`Self::send_back`]) translates it back, quote included.
    fn offending<'b>(buf: &'b [u8], meta: &PacketMeta) -> &'b [u8] {
        buf.get(meta.l3_offset..meta.l3_end).unwrap_or(&[])
    }

    /// Whether an ICMP error may answer this packet (RFC 1122 3.2.2, RFC 4443 2.4 (e)): not
    /// for errors, non-first fragments, link or IP broadcasts and multicasts, or packets
    /// from nowhere.
    fn may_answer(w: &Walk, meta: &PacketMeta) -> bool {
        if w.pkttype != 0 || meta.fragment == Fragment::NonFirst {
            return false;
        }
        if meta.icmp.is_some_and(|i| i.is_error) {
            return false;
        }
        if meta.ip_protocol == Some(IpProtocol::Icmp) && meta.icmp.is_none() {
            return false;
        }
        match (meta.src_addr, meta.dst_addr) {
            (Some(s), Some(d)) => {
                !s.is_unspecified() && !is_mcast_or_bcast(s) && !is_mcast_or_bcast(d)
            }
            _ => false,
        }
    }

    /// The source of an error: the address the packet was sent to if it is the router's, else
    /// the ingress interface's address of the family (`icmp_send` with the route back).
    fn error_source(&self, w: &Walk, offending_dst: Option<IpAddr>) -> Option<IpAddr> {
        if let Some(d) = offending_dst {
            if matches!(self.fib.lookup(d), Some((RouteKind::Local(_), _))) {
                return Some(d);
            }
        }
        self.iface_addr(w.iif, w.v6)
    }

    #[allow(clippy::too_many_arguments)]
    fn send_icmp_error(
        &mut self,
        w: &Walk,
        buf: &[u8],
        meta: &PacketMeta,
        ty: u8,
        code: u8,
        rest: u32,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) {
        if !Self::may_answer(w, meta) {
            return;
        }
        let offending = Self::offending(buf, meta);
        let odst = if w.v6 {
            nft_wire::Ipv6Packet::new_checked(offending)
                .ok()
                .map(|p| IpAddr::V6(p.dst_addr()))
        } else {
            Ipv4Packet::new_checked(offending)
                .ok()
                .map(|p| IpAddr::V4(p.dst_addr()))
        };
        let l3 = match self.error_source(w, odst) {
            Some(IpAddr::V4(s)) if !w.v6 => answer::icmp4_error(s, offending, ty, code, rest),
            Some(IpAddr::V6(s)) if w.v6 => answer::icmp6_error(s, offending, ty, code, rest),
            _ => None,
        };
        if let Some(l3) = l3 {
            if self.send_back(w, &l3, false, now, out) {
                self.counters.icmp_errors_sent += 1;
            }
        }
    }

    fn send_unreach(
        &mut self,
        w: &Walk,
        buf: &[u8],
        meta: &PacketMeta,
        code: u8,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) {
        let ty = if w.v6 {
            answer::ICMPV6_DEST_UNREACH
        } else {
            answer::ICMP_DEST_UNREACH
        };
        self.send_icmp_error(w, buf, meta, ty, code, 0, now, out);
    }

    /// Sends a packet the router made (a reset or an ICMP error answering the packet of
    /// `w`) as the kernel's `ip_local_out` does: routed to its destination, then through the
    /// output chains and the postrouting chains, related to the answered packet's connection
    /// (`nf_ct_attach`: `ct state related`, the other direction) and invalid when it had no
    /// connection. An answer to an untracked packet (`notrack`) is invalid too: untracked
    /// packets have no conntrack entry for `nf_ct_attach` to attach (checked against the
    /// kernel for a reset and a port unreachable, difftest `local-out`); synproxy's answers
    /// (`attach`) carry synproxy's own entry instead, untracked here. It leaves to the answered packet's
    /// sender MAC when it goes back out where that came in, else to the next hop's neighbour.
    /// Whether it was sent.
    fn send_back(
        &mut self,
        w: &Walk,
        l3: &[u8],
        attach: bool,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) -> bool {
        let Some((mut buf, mut meta, dst)) = own_frame(l3, w.v6) else {
            return false;
        };
        let (oif, via) = match self.fib.lookup(dst) {
            Some((RouteKind::Unicast(nh), _)) => (nh.ifindex, nh.via),
            // no route back (or a local one): out where the answered packet came in
            _ => (w.iif, None),
        };
        let back = (oif == w.iif).then_some(w.src_mac);
        let (src_mac, dst_mac) = match self.own_link(oif, via.unwrap_or(dst), back) {
            Ok(m) => m,
            Err(d) => {
                self.counters.drop(d);
                return false;
            }
        };
        // without a connection to attach to (invalid, or before conntrack), conntrack at
        // output finds none for a reset or an ICMP error either: invalid
        let (conn, state) = match w.conn {
            Some((id, dir)) => (Some((id, dir.opposite())), CtState::Related),
            // synproxy's SYN-ACK for an untracked SYN
            None if w.notrack && attach => (None, CtState::Untracked),
            None => (None, CtState::Invalid),
        };
        let mut lw = Walk::own(w, oif, via.or(Some(dst)), src_mac, conn, state);
        let mut sink = Vec::new();
        let r = self.local_out_hooks(&mut lw, &mut buf, &mut meta, now, &mut sink);
        out.append(&mut sink);
        if let Err(d) = r {
            self.counters.drop(d);
            return false;
        }
        self.transmit_own(&lw, oif, dst_mac, &buf, &meta, out)
    }

    /// The source and destination MACs of the router's own packet leaving `oif` for `hop`:
    /// the point-to-point peer (PPPoE), `back` (the answered packet's sender when it goes
    /// back out where that came in), or the neighbour.
    fn own_link(&self, oif: usize, hop: IpAddr, back: Option<Mac>) -> Result<(Mac, Mac), Drop> {
        let iface = self
            .topo
            .interfaces
            .get(oif)
            .filter(|i| i.up)
            .ok_or(Drop::NoRoute)?;
        let dst = match (l2::fixed_peer(iface), back) {
            (Some(m), _) | (None, Some(m)) => m,
            (None, None) => *self
                .topo
                .neighbours
                .get(&(oif, hop))
                .ok_or(Drop::NoNeighbour)?,
        };
        Ok((iface.mac, dst))
    }

    /// Frames the router's own packet (its IP packet in `buf` at `meta`, through the output
    /// and postrouting chains with `lw`) for `oif` and sends it. Whether it left.
    fn transmit_own(
        &mut self,
        lw: &Walk,
        oif: usize,
        dst_mac: Mac,
        buf: &[u8],
        meta: &PacketMeta,
        out: &mut Vec<TxFrame>,
    ) -> bool {
        let (Some(l3), Some(iface)) = (
            buf.get(meta.l3_offset..meta.l3_end),
            self.topo.interfaces.get(oif),
        ) else {
            return false;
        };
        let ethertype = if lw.v6 {
            ETHERTYPE_IPV6
        } else {
            ETHERTYPE_IPV4
        };
        let frame = l2::frame_with(iface, dst_mac, ethertype, l3);
        self.transmit_with(Port::Iface(oif), frame, lw.view.mark, lw.view.priority, out);
        true
    }

    fn send_reject(
        &mut self,
        w: &Walk,
        buf: &[u8],
        meta: &PacketMeta,
        r: &Reject,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) {
        let (ty, code) = match *r {
            Reject::TcpReset => {
                if meta.ip_protocol != Some(IpProtocol::Tcp) || meta.fragment == Fragment::NonFirst
                {
                    return;
                }
                let offending = Self::offending(buf, meta);
                let l4 = meta.ip_header_len;
                if let Some(l3) = answer::tcp_reset(offending, l4) {
                    if self.send_back(w, &l3, false, now, out) {
                        self.counters.tcp_resets_sent += 1;
                    }
                }
                return;
            }
            Reject::IcmpPortUnreachable if w.v6 => {
                (answer::ICMPV6_DEST_UNREACH, answer::ICMPV6_PORT_UNREACH)
            }
            Reject::IcmpPortUnreachable => (answer::ICMP_DEST_UNREACH, answer::ICMP_PORT_UNREACH),
            Reject::Icmp { v6, code } if v6 == w.v6 => (
                if v6 {
                    answer::ICMPV6_DEST_UNREACH
                } else {
                    answer::ICMP_DEST_UNREACH
                },
                code,
            ),
            Reject::Icmp { .. } => return,
            Reject::Icmpx(c) => (
                if w.v6 {
                    answer::ICMPV6_DEST_UNREACH
                } else {
                    answer::ICMP_DEST_UNREACH
                },
                answer::icmpx_code(c, w.v6),
            ),
        };
        self.send_icmp_error(w, buf, meta, ty, code, 0, now, out);
    }

    /// Output chains, conntrack's NAT at output (destination, at -100), postrouting chains,
    /// NAT at postrouting (source, at 100): `ip_local_out` for a packet the router made.
    fn local_out_hooks(
        &mut self,
        lw: &mut Walk,
        buf: &mut [u8],
        meta: &mut PacketMeta,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) -> Result<(), Drop> {
        self.hook(
            Hook::Output,
            i32::MIN,
            NAT_DST_PRIO,
            lw,
            buf,
            meta,
            now,
            out,
        )?;
        self.nat_rewrite(lw, buf, meta, Manip::Dst)?;
        self.hook(
            Hook::Output,
            NAT_DST_PRIO + 1,
            i32::MAX,
            lw,
            buf,
            meta,
            now,
            out,
        )?;
        self.hook(
            Hook::Postrouting,
            i32::MIN,
            NAT_SRC_PRIO,
            lw,
            buf,
            meta,
            now,
            out,
        )?;
        self.nat_rewrite(lw, buf, meta, Manip::Src)?;
        self.hook(
            Hook::Postrouting,
            NAT_SRC_PRIO + 1,
            i32::MAX,
            lw,
            buf,
            meta,
            now,
            out,
        )
    }

    /// The flowtables (control plane: listings, stats).
    pub fn offload(&self) -> &Offload {
        &self.offload
    }

    /// The flowtables, to give them an offload backend.
    pub fn offload_mut(&mut self) -> &mut Offload {
        &mut self.offload
    }

    /// An interface goes up or down. Down, its packets are dropped and its offloaded flows
    /// torn down (the kernel's netdev notifier).
    pub fn set_link(&mut self, iface: usize, up: bool) {
        if let Some(i) = self.topo.interfaces.get_mut(iface) {
            i.up = up;
            self.offload.set_link(iface, up);
        }
    }

    /// An interface's MAC address or MTU changed (the kernel's `RTM_NEWLINK`): the slow path
    /// uses them from now on, and the FIB's generation moves so that offloaded flows are
    /// re-routed with the new source MAC, expected destination MAC and MTU at the next burst.
    /// Whether anything changed.
    pub fn set_link_params(&mut self, iface: usize, mac: Mac, mtu: u16) -> bool {
        let Some(i) = self.topo.interfaces.get_mut(iface) else {
            return false;
        };
        if i.mac == mac && i.mtu == mtu {
            return false;
        }
        i.mac = mac;
        i.mtu = mtu;
        self.rebuild_fib();
        true
    }

    /// Frames held for a next hop whose MAC is now known leave (in the order they came); those
    /// that waited [`HOLD_FOR`] are dropped as `neighbour_unresolved`.
    fn release_held(&mut self, now: Duration, out: &mut Vec<Sent>) {
        let mut tx = std::mem::take(&mut self.tx);
        for mut h in std::mem::take(&mut self.held) {
            let up = self.topo.interfaces.get(h.egress).is_some_and(|i| i.up);
            match self.topo.neighbours.get(&(h.egress, h.next)).copied() {
                Some(mac) if up && h.frame.len() >= 6 => {
                    h.frame[..6].copy_from_slice(&mac);
                    self.transmit_with(Port::Iface(h.egress), h.frame, h.mark, h.priority, &mut tx);
                    if let Some(f) = tx.last_mut() {
                        f.offload = h.offload;
                    }
                }
                None if up && now.saturating_sub(h.since) < HOLD_FOR => self.held.push(h),
                _ => self.counters.drop(Drop::NeighbourUnresolved),
            }
        }
        out.extend(tx.drain(..).map(Sent::Frame));
        self.tx = tx;
    }

    /// Frames waiting for a neighbour's MAC.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The next hops (interface, address) whose MAC was missing since the last call, each
    /// once (live mode, [`Config::resolve_neighbours`]).
    pub fn take_unresolved(&mut self) -> Vec<(usize, IpAddr)> {
        std::mem::take(&mut self.unresolved)
    }

    /// A neighbour learnt (`Some(mac)`) or gone (`None`) on interface `iface`. A changed or
    /// removed MAC re-routes the offloaded flows at the next burst.
    pub fn set_neighbour(&mut self, iface: usize, ip: IpAddr, mac: Option<Mac>) {
        self.last_neighbour = None;
        let old = match mac {
            Some(m) => self.topo.neighbours.insert((iface, ip), m),
            None => self.topo.neighbours.remove(&(iface, ip)),
        };
        if old.is_some() && old != mac {
            self.rebuild_fib();
        }
    }

    /// An interface's addresses changed: its connected and local routes follow.
    pub fn set_addresses(&mut self, iface: usize, addresses: Vec<(IpAddr, u8)>) {
        if let Some(i) = self.topo.interfaces.get_mut(iface) {
            if i.addresses != addresses {
                i.addresses = addresses;
                self.rebuild_fib();
            }
        }
    }

    /// Replaces the routes (besides the connected and local ones the interfaces' addresses
    /// give): offloaded flows are re-routed at the next burst.
    pub fn set_routes(&mut self, routes: Vec<crate::topology::StaticRoute>) {
        if self.topo.routes != routes {
            self.topo.routes = routes;
            self.rebuild_fib();
        }
    }

    /// Rebuilds the FIB from the topology (after [`set_link`](Self::set_link): the routes
    /// through a link that is down leave it, as the kernel's do); offloaded flows notice.
    pub fn rebuild_fib(&mut self) {
        let mut fib = self.topo.build_fib();
        fib.succeed(&self.fib);
        self.fib = fib;
    }

    /// An atomic ruleset swap (`nft -f` with `flush ruleset`): the connection table stays, the
    /// rules' state (counters, dynamic sets, limits) starts anew, and flowtables of the same
    /// table, name and devices keep their flows, so offloaded connections go on without a
    /// lost packet. Flows of flowtables that are gone return to the slow path.
    pub fn replace_ruleset(&mut self, rules: Ruleset, now: Duration) {
        let fresh = Offload::new(
            &rules,
            &self.topo,
            self.cfg.offload,
            self.cfg.conntrack.max_entries,
            flow_seed(&self.cfg),
        );
        let old = std::mem::replace(&mut self.offload, fresh);
        self.offload.take_flows_from(old, &mut self.ct, now);
        self.state = State::new(&rules);
        self.filters = filter::chain_filters(&rules);
        self.if_filters = filter::if_tables(&rules, &self.ifnames);
        self.hooks = HookIndex::new(&rules, &self.filters);
        self.rules = rules;
    }

    /// The FIB, to change routes: offloaded flows notice at the next burst.
    pub fn fib_mut(&mut self) -> &mut Fib {
        &mut self.fib
    }

    /// A flowtable GC pass now: with `counter`, conntrack then holds the fast path's counts.
    pub fn sync_offload(&mut self, now: Duration) {
        self.offload.gc(&mut self.ct, now);
    }

    /// `simulate --list-flows`: the flowtables with their flows.
    pub fn list_flows(&self, now: Duration) -> Vec<String> {
        self.offload.list(&self.topo, now)
    }

    /// Counters and the connection table as they stand.
    pub fn report(&self, now: Duration) -> Report {
        let c = &self.counters;
        let interfaces: Vec<InterfaceReport> = self
            .topo
            .interfaces
            .iter()
            .map(|i| {
                let rx = c.rx.get(i.index).copied().unwrap_or_default();
                let tx = c.tx.get(i.index).copied().unwrap_or_default();
                InterfaceReport {
                    name: i.name.clone(),
                    rx_packets: rx.packets,
                    rx_bytes: rx.bytes,
                    tx_packets: tx.packets,
                    tx_bytes: tx.bytes,
                }
            })
            .collect();
        let mut connections: BTreeMap<String, u64> = BTreeMap::new();
        let mut total = 0;
        for (_, conn) in self.ct.iter() {
            if !conn.is_confirmed() || conn.status().contains(Status::DYING) || conn.expired(now) {
                continue;
            }
            total += 1;
            let key = match conn.proto() {
                ProtoState::Tcp(t) => format!("tcp {}", t.state.name().to_lowercase()),
                ProtoState::Udp { .. } if conn.is_assured() => "udp assured".into(),
                ProtoState::Udp { .. } if conn.status().contains(Status::SEEN_REPLY) => {
                    "udp replied".into()
                }
                ProtoState::Udp { .. } => "udp unreplied".into(),
                ProtoState::Sctp(t) => format!("sctp {}", t.state.name().to_lowercase()),
                _ => nft_conntrack::proto_name(conn.l4proto()).to_string(),
            };
            *connections.entry(key).or_default() += 1;
        }
        let mut top: Vec<RuleHits> = self
            .state
            .rule_hits
            .iter()
            .enumerate()
            .flat_map(|(chain, hits)| {
                hits.iter()
                    .enumerate()
                    .filter(|(_, h)| **h > 0)
                    .map(move |(rule, &h)| (chain, rule, h))
            })
            .filter_map(|(chain, rule, hits)| {
                let ch = self.rules.chains.get(chain)?;
                let r = ch.rules.get(rule)?;
                Some(RuleHits {
                    table: format!("{} {}", ch.family.name(), ch.table),
                    chain: ch.name.clone(),
                    handle: r.handle,
                    rule: r.text.clone(),
                    hits,
                })
            })
            .collect();
        top.sort_by(|a, b| {
            b.hits
                .cmp(&a.hits)
                .then_with(|| (&a.table, &a.chain, a.handle).cmp(&(&b.table, &b.chain, b.handle)))
        });
        top.truncate(20);
        let st = self.ct.stats();
        let sum = |v: &[crate::counters::PacketBytes]| {
            v.iter()
                .fold((0, 0), |(p, b), x| (p + x.packets, b + x.bytes))
        };
        let (pin, bin) = sum(&c.rx);
        let (pout, bout) = sum(&c.tx);
        Report {
            packets_in: pin,
            packets_out: pout + c.host.packets,
            bytes_in: bin,
            bytes_out: bout + c.host.bytes,
            interfaces,
            host_packets: c.host.packets,
            host_bytes: c.host.bytes,
            drops: c.drop_map(),
            slow_path_packets: c.slow_path,
            fast_path_packets: self.offload.fast_path_packets(),
            flows_offloaded: self.offload.admitted(),
            flows: self.offload.flows_by_state(now),
            fast_path_punts: self.offload.punts(),
            flow_add_requests: c.flow_add_requests,
            flows_admitted: c.flows_admitted,
            flows_refused: {
                let mut m: BTreeMap<&'static str, u64> = admission::NotAdmitted::ALL
                    .iter()
                    .zip(c.flows_refused)
                    .filter(|(_, n)| *n > 0)
                    .map(|(r, n)| (r.name(), n))
                    .collect();
                for (k, v) in self.offload.refused() {
                    *m.entry(k).or_default() += v;
                }
                m
            },
            nat_bindings: c.nat_bindings,
            nat_packets: c.nat_packets,
            icmp_errors_sent: c.icmp_errors_sent,
            tcp_resets_sent: c.tcp_resets_sent,
            synproxy_synacks_sent: c.synproxy_synacks_sent,
            synproxy_cookies_valid: c.synproxy_cookies_valid,
            arp_replies: c.arp_replies,
            log_lines: c.log_lines,
            logs: self.logs.clone(),
            fwd_packets: c.fwd_packets,
            dup_packets: c.dup_packets,
            ct_invalid: c.ct_invalid.clone(),
            connections,
            connections_total: total,
            conntrack_new: st.new,
            conntrack_early_drop: st.early_drop,
            conntrack_expired: st.expired,
            conntrack_evicted: st.evicted,
            top_rules: top,
        }
    }
}

fn level_name(l: u8) -> &'static str {
    [
        "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug", "audit",
    ]
    .get(l as usize)
    .copied()
    .unwrap_or("warn")
}

/// What a chain changed in the packet's metadata, carried out once the chain is done.
struct PktUpdate {
    ct_mark: Option<u32>,
    ct_zone: Option<u16>,
    ct_label: Option<u128>,
    ct_helper: Option<String>,
    mangled: bool,
    ct_secmark: Option<u32>,
    ct_timeout: Option<usize>,
    ct_expect: Vec<usize>,
}

/// The DSCP of an IP packet (six bits), `None` for anything else.
fn ip_dscp(buf: &[u8], meta: &PacketMeta) -> Option<u8> {
    let b = buf.get(meta.l3_offset..meta.l3_offset + 2)?;
    match meta.ip_version? {
        IpVersion::Ipv4 => Some(b[1] >> 2),
        IpVersion::Ipv6 => Some((b[0] & 0x0f) << 2 | b[1] >> 6),
    }
}

/// The frame as it came in on `ingress`, to leave through `egress` (netdev `fwd to` and `dup
/// to`): on untagged interfaces both, the bytes themselves; else its MACs and what follows
/// the link header, in `egress`'s link header (the kernel hands over the frame as the
/// ingress device saw it, its tags already taken off, and the egress device adds its own).
fn as_it_came(buf: &[u8], meta: &PacketMeta, ingress: &Interface, egress: &Interface) -> Vec<u8> {
    if matches!(ingress.encap, Encap::None) && matches!(egress.encap, Encap::None) {
        return buf.to_vec();
    }
    let (Some(macs), Some(l3)) = (buf.get(0..12), buf.get(meta.l3_offset..)) else {
        return buf.to_vec();
    };
    let ethertype = match meta.ip_version {
        Some(IpVersion::Ipv6) => ETHERTYPE_IPV6,
        _ => ETHERTYPE_IPV4,
    };
    let mut dst = [0u8; 6];
    dst.copy_from_slice(&macs[0..6]);
    let mut f = l2::frame_with(egress, dst, ethertype, l3);
    f[6..12].copy_from_slice(&macs[6..12]);
    f
}

/// `ip_decrease_ttl` as `nft_fwd_neigh` uses it: the TTL less one, the header checksum
/// patched as the kernel does (`check += htons(0x0100)` with the end-around carry, which
/// makes a sum of 0xffff 0); IPv6: the hop limit less one. (The rule dropped a packet whose
/// TTL was 1 or less.)
fn fwd_decrease_ttl(l3: &mut [u8], v6: bool) {
    if v6 {
        if let Some(h) = l3.get_mut(7) {
            *h = h.wrapping_sub(1);
        }
        return;
    }
    if l3.len() < 20 {
        return;
    }
    let check = u32::from(u16::from_be_bytes([l3[10], l3[11]])) + 0x0100;
    let check = (check + (check >> 16)) & 0xffff;
    let check = if check == 0xffff { 0 } else { check as u16 };
    l3[10..12].copy_from_slice(&check.to_be_bytes());
    l3[8] = l3[8].wrapping_sub(1);
}

/// TTL or hop limit minus one; the IPv4 header checksum is patched incrementally (RFC 1624).
fn decrement_ttl(buf: &mut [u8], meta: &mut PacketMeta) {
    let Some(l3) = buf.get_mut(meta.l3_offset..meta.l3_end) else {
        return;
    };
    match meta.ip_version {
        Some(IpVersion::Ipv4) if l3.len() >= 20 => {
            Ipv4Packet::new_unchecked(l3).decrement_ttl();
        }
        Some(IpVersion::Ipv6) if l3.len() >= 40 => l3[7] = l3[7].saturating_sub(1),
        _ => return,
    }
    meta.ttl = meta.ttl.saturating_sub(1);
}

/// The router's own IP packet `l3` in a frame buffer for the chains (an empty Ethernet
/// header), parsed, with its destination.
fn own_frame(l3: &[u8], v6: bool) -> Option<(Vec<u8>, PacketMeta, IpAddr)> {
    let ethertype = if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
    let mut buf = Vec::with_capacity(14 + l3.len());
    buf.extend_from_slice(&[0u8; 12]);
    buf.extend_from_slice(&ethertype.to_be_bytes());
    buf.extend_from_slice(l3);
    let meta = parse_frame(&buf).ok()?;
    let dst = meta.dst_addr?;
    Some((buf, meta, dst))
}

impl Walk {
    /// [`HookIndex::protocols`] of the packet, read once until [`Walk::protos`] is reset.
    #[inline(always)]
    fn protocols(&mut self, meta: &PacketMeta) -> (u8, u8) {
        match self.protos {
            Some(p) => p,
            None => {
                let p = HookIndex::protocols(meta);
                self.protos = Some(p);
                p
            }
        }
    }

    /// The walk of a packet the router makes in answer to the packet of `w` (a local
    /// packet: no NAT of its own), leaving `oif` from `src_mac` for `nexthop`.
    fn own(
        w: &Walk,
        oif: usize,
        nexthop: Option<IpAddr>,
        src_mac: Mac,
        conn: Option<(ConnId, Direction)>,
        state: CtState,
    ) -> Walk {
        Walk {
            iif: w.iif,
            oif: Some(oif),
            view: rules::PktState::default(),
            protos: None,
            view_headers: false,
            nat_free: false,
            live_hooks: None,
            v6: w.v6,
            zone: w.zone,
            nexthop,
            pkttype: 0,
            notrack: false,
            // conntrack looked at it unless it is untracked: without a connection, invalid
            tracked: state != CtState::Untracked,
            conn,
            state,
            src_mac,
            flow_add: None,
            ct_mark: None,
            local: true,
            frags: None,
            hold: None,
            gso: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::CtInfo;

    /// A packet the router makes without a connection to attach to (synproxy's SYN to the
    /// server that conntrack found invalid, a reset or ICMP error answering an invalid packet)
    /// went through conntrack: rules see `ct state invalid`; only an untracked one is
    /// untracked.
    #[test]
    fn own_packets_without_a_connection_are_invalid() {
        let base = Walk {
            iif: 0,
            oif: None,
            view: rules::PktState::default(),
            protos: None,
            view_headers: false,
            nat_free: false,
            live_hooks: None,
            v6: false,
            zone: 0,
            nexthop: None,
            pkttype: 0,
            notrack: false,
            tracked: true,
            conn: None,
            state: CtState::New,
            src_mac: [0; 6],
            flow_add: None,
            ct_mark: None,
            local: false,
            frags: None,
            hold: None,
            gso: None,
        };
        let w = Walk::own(&base, 1, None, [0; 6], None, CtState::Invalid);
        assert!(w.tracked);
        let f = Router::ct_info(&w).expect("invalid facts");
        assert_eq!(f.ct_get(CtK::State, None), 1);
        assert_eq!(f.ct_get(CtK::Mark, None), 0);
        assert_eq!(f.ct_handle(), 0);
        let u = Walk::own(&base, 1, None, [0; 6], None, CtState::Untracked);
        assert!(!u.tracked);
        assert!(Router::ct_info(&u).is_none());
    }

    /// Every fact as the copied record had it, for comparison with [`LiveCt`].
    fn copied(c: &Conn, id: ConnId, dir: Direction, state: CtState, now: Duration) -> CtInfo {
        let (o, r) = (c.original(), c.reply());
        let (k0, k1) = (c.counter(Direction::Original), c.counter(Direction::Reply));
        CtInfo {
            state: state.nft_bit(),
            reply: dir == Direction::Reply,
            status: c.status().bits(),
            mark: c.mark,
            expiration_ms: c.expiration_ms(now).min(u32::MAX as u64) as u32,
            zone: c.zone(),
            l3proto: if o.is_ipv4() { 2 } else { 10 },
            protocol: o.proto,
            orig_src: addr_bits(o.src),
            orig_dst: addr_bits(o.dst),
            orig_sport: o.sport,
            orig_dport: o.dport,
            reply_src: addr_bits(r.src),
            reply_dst: addr_bits(r.dst),
            reply_sport: r.sport,
            reply_dport: r.dport,
            packets: [k0.packets, k1.packets],
            bytes: [k0.bytes, k1.bytes],
            label: c.labels(),
            id: c.id,
            helper: c.helper().map_or(0, rules::ifname_value),
            confirmed: c.is_confirmed(),
            secmark: c.secmark(),
            handle: id.to_bits(),
        }
    }

    fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, len: usize) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(src, dst, 64)
            .udp(sport, dport);
        let mut out = vec![];
        b.write(&mut out, &vec![7u8; len]).unwrap();
        out
    }

    /// The lazy view answers every `ct` key, in each direction and with none, exactly as the
    /// record copied for every chain did: a masqueraded connection with a mark, labels, a
    /// helper, a reply and accounting.
    #[test]
    fn live_view_reads_what_the_copy_had() {
        let mut t = Table::new(nft_conntrack::Config {
            accounting: true,
            ..Default::default()
        });
        let now = Duration::from_secs(3);
        let out = udp([192, 168, 1, 10], [198, 19, 0, 1], 40000, 443, 30);
        let meta = parse_frame(&out).unwrap();
        let (id, _) = t.process(&meta, 0, now).conn().unwrap();
        let wan: IpAddr = "203.0.113.1".parse().unwrap();
        t.masquerade(id, wan, 2, &NatRange::default()).unwrap();
        {
            let c = t.get_mut(id).unwrap();
            c.mark = 0x2a;
            c.set_label(3);
            c.set_label(100);
            c.set_helper("ftp");
        }
        t.confirm(id, now).unwrap();
        let r = t.get(id).unwrap().reply();
        let back = udp([198, 19, 0, 1], [203, 0, 113, 1], 443, r.dport, 100);
        let later = now + Duration::from_millis(1500);
        let bmeta = parse_frame(&back).unwrap();
        let (_, bdir) = t.process(&bmeta, 0, later).conn().unwrap();
        assert_eq!(bdir, Direction::Reply);
        let keys = [
            CtK::State,
            CtK::Direction,
            CtK::Status,
            CtK::Mark,
            CtK::Expiration,
            CtK::L3Proto,
            CtK::Protocol,
            CtK::Saddr,
            CtK::Daddr,
            CtK::ProtoSrc,
            CtK::ProtoDst,
            CtK::Zone,
            CtK::Packets,
            CtK::Bytes,
            CtK::Label,
            CtK::Id,
            CtK::AvgPkt,
            CtK::Helper,
            CtK::Secmark,
        ];
        let c = t.get(id).unwrap();
        assert_eq!(c.counter(Direction::Reply).packets, 1);
        for (dir, state) in [
            (Direction::Original, CtState::New),
            (Direction::Reply, CtState::Established),
        ] {
            let info = copied(c, id, dir, state, later);
            let live = LiveCt {
                conn: c,
                handle: id.to_bits(),
                state: state.nft_bit(),
                reply: dir == Direction::Reply,
                now: later,
            };
            assert_eq!(live.ct_handle(), info.ct_handle());
            for k in keys {
                for r in [None, Some(false), Some(true)] {
                    assert_eq!(live.ct_get(k, r), info.ct_get(k, r), "{k:?} {r:?} {dir:?}");
                }
            }
        }
        // the values are the connection's, not defaults
        let live = LiveCt {
            conn: c,
            handle: id.to_bits(),
            state: CtState::Established.nft_bit(),
            reply: true,
            now: later,
        };
        assert_eq!(live.ct_get(CtK::Saddr, Some(true)), 0xc613_0001);
        assert_eq!(live.ct_get(CtK::Daddr, Some(true)), 0xcb00_7101);
        assert_eq!(live.ct_get(CtK::Mark, None), 0x2a);
        assert_eq!(live.ct_get(CtK::Label, None), 1 << 3 | 1 << 100);
        assert_eq!(live.ct_get(CtK::Packets, None), 2);
        assert_eq!(live.ct_get(CtK::Helper, None), rules::ifname_value("ftp"));
        assert_eq!(live.ct_get(CtK::Direction, None), 1);
    }
}
