//! The connection table: a slab of connections, and a hash map from (tuple, zone) to slab
//! index and direction, so both directions of a connection find the same entry.
//!
//! As in Linux, a connection is created unconfirmed by its first packet and is only entered in
//! the hash map by [`Table::confirm`], after the last hook, once the ruleset has let the packet
//! through and NAT has bound the reply tuple. An unconfirmed entry lives in the slab (it counts
//! against the limit) so that rules can read and set its mark, labels and NAT through its
//! [`ConnId`]; the caller confirms it or [`Table::discard`]s it with its packet.

use crate::conn::{Conn, Counter, ProtoState};
use crate::index::Index;
use crate::status::{CtState, Status, Timeouts};
use crate::tcp::{Segment, TcpState, TcpTrack, TcpVerdict};
use crate::tuple::{
    self, Direction, Tuple, Zone, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, PROTO_UDPLITE,
};
use crate::CtError;
use core::hash::BuildHasher as _;
use core::time::Duration;
use nft_wire::PacketMeta;
use std::collections::VecDeque;

/// The indexes hash with foldhash: SipHash was a third of the slow path's instructions per new
/// connection. The seed comes from the table's configuration, so a run is repeatable and a
/// deployment can choose a secret one (tuples are attacker-controlled).
type Hasher = foldhash::fast::FixedState;

/// How long a replied UDP flow has to stay active before it counts as a stream.
const UDP_STREAM_AFTER: Duration = Duration::from_secs(2);
/// How many candidates one early drop looks at before refusing the new connection, so that a
/// table full of assured connections costs bounded work per packet.
const EARLY_DROP_SCAN: usize = 64;
/// Up to this many connections, the table's vectors and indexes are sized for its limit when
/// it is made (zeroed or untouched memory, mapped in as connections arrive), so that a
/// growing table never moves its entries; beyond, they grow from there.
const PRESIZE_MAX: usize = 1 << 21;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `nf_conntrack_max`: entries, confirmed or not.
    pub max_entries: usize,
    /// `nf_conntrack_acct`: count packets and bytes per direction.
    pub accounting: bool,
    pub timeouts: Timeouts,
    /// `nf_conntrack_tcp_loose`: pick up connections mid-stream from an ACK.
    pub tcp_loose: bool,
    /// `nf_conntrack_tcp_max_retrans`.
    pub tcp_max_retrans: u8,
    /// Seeds the NAT port randomisation, so that a run is reproducible.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_entries: 65536,
            accounting: false,
            timeouts: Timeouts::default(),
            tcp_loose: true,
            tcp_max_retrans: 3,
            seed: 0x6e66_742d_6374,
        }
    }
}

/// A handle on a connection; stale once the connection is gone (lookups then return `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    idx: u32,
    gen: u32,
}

impl ConnId {
    /// The handle as one number, for code that must not name conntrack types (rules). Never
    /// 0, which stays free to mean "no connection" (the first slot's first connection would
    /// otherwise be 0, and went uncounted by `ct count`).
    pub fn to_bits(self) -> u64 {
        (self.idx as u64 + 1) << 32 | self.gen as u64
    }

    pub fn from_bits(v: u64) -> ConnId {
        ConnId {
            idx: ((v >> 32) as u32).wrapping_sub(1),
            gen: v as u32,
        }
    }
}

macro_rules! invalid_reasons {
    ($( $(#[$m:meta])* $v:ident = $name:literal ),+ $(,)?) => {
        /// Why a packet has no connection (`ct state invalid`). Each reason has a stable name
        /// for a counter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Invalid { $( $(#[$m])* $v ),+ }

        impl Invalid {
            pub const ALL: &'static [Invalid] = &[$( Invalid::$v ),+];
            pub const fn name(self) -> &'static str {
                match self { $( Invalid::$v => $name ),+ }
            }
        }
    };
}

invalid_reasons! {
    /// Not an IP packet.
    NotIp = "not_ip",
    /// A later fragment: no L4 header, and no reassembly here.
    Fragment = "fragment",
    /// TCP or UDP without its ports.
    NoTuple = "no_tuple",
    /// A TCP flag combination no segment may carry.
    TcpFlags = "tcp_flags",
    /// A TCP segment that fits no transition, or cannot open a connection.
    TcpState = "tcp_state",
    /// An ICMP type that cannot open a connection (a stray reply).
    IcmpNew = "icmp_new",
    /// An ICMP error whose quote is unreadable or belongs to no connection.
    IcmpErrorNoConn = "icmp_error_no_conn",
    /// An ICMP error not addressed to the connection's endpoint.
    IcmpErrorAddr = "icmp_error_addr",
    /// SCTP shorter than its common header, without chunks, or with chunks out of place.
    SctpMalformed = "sctp_malformed",
    /// SCTP with a wrong CRC32c.
    SctpChecksum = "sctp_checksum",
    /// SCTP with another verification tag than the association's.
    SctpVtag = "sctp_vtag",
    /// An SCTP chunk that fits no transition, or cannot open an association.
    SctpState = "sctp_state",
}

impl From<crate::sctp::SctpError> for Invalid {
    fn from(e: crate::sctp::SctpError) -> Invalid {
        use crate::sctp::SctpError as E;
        match e {
            E::Malformed => Invalid::SctpMalformed,
            E::Checksum => Invalid::SctpChecksum,
            E::Vtag => Invalid::SctpVtag,
            E::State => Invalid::SctpState,
        }
    }
}

/// Why a packet that would open a connection was refused (drop it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refused {
    /// At the limit, with nothing unassured to drop early.
    TableFull,
}

impl Refused {
    pub const fn name(self) -> &'static str {
        match self {
            Refused::TableFull => "conntrack_table_full",
        }
    }
}

/// What conntrack made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The packet belongs to a connection: `state` is new, established or related.
    Tracked {
        id: ConnId,
        dir: Direction,
        state: CtState,
    },
    Invalid(Invalid),
    /// Deliberately not tracked (neighbour discovery, MLD).
    Untracked,
    /// Drop the packet.
    Refused(Refused),
}

impl Outcome {
    /// `ct state` of the packet.
    pub fn ct_state(&self) -> CtState {
        match self {
            Outcome::Tracked { state, .. } => *state,
            Outcome::Invalid(_) | Outcome::Refused(_) => CtState::Invalid,
            Outcome::Untracked => CtState::Untracked,
        }
    }

    pub fn conn(&self) -> Option<(ConnId, Direction)> {
        match self {
            Outcome::Tracked { id, dir, .. } => Some((*id, *dir)),
            _ => None,
        }
    }
}

/// Counters in the manner of `conntrack -S`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub found: u64,
    pub new: u64,
    pub invalid: u64,
    pub ignore: u64,
    pub related: u64,
    pub untracked: u64,
    pub insert: u64,
    pub insert_failed: u64,
    pub drop: u64,
    pub early_drop: u64,
    pub expired: u64,
    /// Taken out by GC near the limit after a refused connection (see
    /// [`Table::gc`]); the kernel counts these nowhere.
    pub evicted: u64,
    pub reopened: u64,
}

pub(crate) type SourceKey = (Zone, u8, std::net::IpAddr, u16);

/// What a connection costs in memory, from `size_of` and the table's capacities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `size_of` one slab slot (the connection and its generation).
    pub entry_bytes: usize,
    /// Index bytes per connection (both tuples and the source-NAT index) with `entries`
    /// connections held, as the indexes size themselves for that many.
    pub index_bytes_per_conn: usize,
    /// Both, per connection, not counting heap parts only some connections have.
    pub bytes_per_conn: usize,
    /// Allocated now for the slab, the free list and the indexes.
    pub allocated: usize,
}

pub(crate) fn source_key(t: &Tuple, zone: Zone) -> SourceKey {
    (zone, t.proto, t.src, t.sport)
}

/// Hashes computed for a new connection's first packet, which its confirmation reuses (the
/// tuples are hashed once a packet, not once a use): the original tuple's, from the lookup
/// that missed; the reply tuple's, from the NAT check that found it free; the source key's,
/// from the source-NAT lookup. Only for connection `id`; a reply hash only while the reply
/// tuple is still `reply.0`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pending {
    pub id: Option<ConnId>,
    pub orig: u64,
    pub reply: Option<(Tuple, u64)>,
    pub source: Option<u64>,
}

/// The generation lives in its own vector (`gens`): beside a connection (16-byte aligned,
/// for its labels) it would pad the slot by 16 bytes.
struct Slot {
    conn: Option<Conn>,
}

/// SplitMix64: small, seedable, good enough to spread NAT ports; never a source of secrets.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }
}

pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// No masquerade binding in [`Table::masq`].
const NO_MASQ: u16 = u16::MAX;
/// The interface is in [`Table::masq_wide`].
const WIDE_MASQ: u16 = u16::MAX - 1;

pub struct Table {
    pub(crate) cfg: Config,
    slots: Vec<Slot>,
    gens: Vec<u32>,
    /// The interface each masqueraded connection's binding took its address from, by slab
    /// index: 2 bytes a slot ([`NO_MASQ`]: none, [`WIDE_MASQ`]: in `masq_wide`), grown with
    /// the slab once a connection is masqueraded. Apart from the connection, which has no room
    /// left for it, and not in its boxed rarely set part: most connections of a home router
    /// are masqueraded, and a box cost an allocation per connection.
    masq: Vec<u16>,
    /// Interfaces whose index does not fit `masq` (rare), by slab index.
    masq_wide: std::collections::HashMap<u32, u32>,
    free: Vec<u32>,
    /// (tuple, zone) of each direction of the confirmed connections to slab index and
    /// direction (`idx << 1 | dir`).
    map: Index,
    /// Source-NATed connections by original source (zone, protocol, address, port or ICMP
    /// id), so a client's later connections keep its mapping (the kernel's bysource hash); a
    /// key holds the slab index of the latest such connection.
    bysource: Index,
    hasher: Hasher,
    /// Confirmed connections in confirmation order, the candidates for early drop; stale and
    /// assured ids are dropped lazily.
    age: VecDeque<ConnId>,
    len: usize,
    gc_cursor: usize,
    /// Slots GC still scans with eviction on (the kernel's `gc_work->early_drop`): set to
    /// the whole table when a new connection is refused.
    evict_left: usize,
    next_id: u32,
    pub(crate) rng: Rng,
    stats: Stats,
    pub(crate) pending: Pending,
    /// Connections announced by `ct expectation set`, few and short-lived.
    expects: Vec<Expectation>,
    /// Connections with synproxy state, so that a dataplane with none skips looking.
    synproxied: usize,
}

/// A connection announced by another (`struct nf_conntrack_expect`): from `src`, any port,
/// to `dst`:`dport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub master: ConnId,
    pub zone: Zone,
    pub proto: u8,
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    pub dport: u16,
    pub deadline: Duration,
}

impl Default for Table {
    fn default() -> Table {
        Table::new(Config::default())
    }
}

impl Table {
    pub fn new(cfg: Config) -> Table {
        let rng = Rng(cfg.seed);
        let seed = cfg.seed;
        let n = cfg.max_entries.min(PRESIZE_MAX);
        Table {
            cfg,
            slots: Vec::with_capacity(n),
            gens: Vec::with_capacity(n),
            masq: Vec::new(),
            masq_wide: std::collections::HashMap::new(),
            free: Vec::new(),
            // both directions of each connection
            map: Index::with_capacity(2 * n),
            bysource: Index::with_capacity(n),
            hasher: Hasher::with_seed(mix64(seed)),
            age: VecDeque::with_capacity(n),
            len: 0,
            gc_cursor: 0,
            evict_left: 0,
            next_id: 1,
            rng,
            stats: Stats::default(),
            pending: Pending::default(),
            expects: Vec::new(),
            synproxied: 0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Entries held, confirmed or not (what the limit counts).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots [`Self::gc`] scans, live or free: as many as the most entries ever held at
    /// once (the slot array never shrinks), so at least [`Self::len`].
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        let s = self.slots.get(id.idx as usize)?;
        if self.gen(id.idx) != id.gen {
            return None;
        }
        s.conn.as_ref()
    }

    /// Mark, labels and other fields rules may set. The tuples stay the table's.
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        if self.gen(id.idx) != id.gen {
            return None;
        }
        self.slots.get_mut(id.idx as usize)?.conn.as_mut()
    }

    fn id_at(&self, idx: u32) -> ConnId {
        ConnId {
            idx,
            gen: self.gen(idx),
        }
    }

    fn gen(&self, idx: u32) -> u32 {
        self.gens.get(idx as usize).copied().unwrap_or(0)
    }

    /// Live connections, confirmed or not, in slab order (stable for a given history).
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.conn.as_ref().map(|c| {
                (
                    ConnId {
                        idx: i as u32,
                        gen: self.gen(i as u32),
                    },
                    c,
                )
            })
        })
    }

    /// The confirmed connection a tuple belongs to, and the tuple's direction in it.
    pub fn lookup(&self, t: &Tuple, zone: Zone) -> Option<(ConnId, Direction)> {
        self.map_get(t, zone)
            .map(|(idx, dir)| (self.id_at(idx), dir))
    }

    fn conn_at(&self, idx: u32) -> Option<&Conn> {
        self.slots.get(idx as usize).and_then(|s| s.conn.as_ref())
    }

    pub(crate) fn key_hash(&self, t: &Tuple, zone: Zone) -> u64 {
        // Packed into three words: the derived hash writes every field (and each address's
        // variant) on its own, and a new connection hashes tuples several times.
        let bits = |a: std::net::IpAddr| match a {
            std::net::IpAddr::V4(v) => u32::from(v) as u128,
            std::net::IpAddr::V6(v) => u128::from(v),
        };
        let rest = t.proto as u64
            | (t.sport as u64) << 8
            | (t.dport as u64) << 24
            | (zone as u64) << 40
            | (t.src.is_ipv6() as u64) << 56
            | (t.dst.is_ipv6() as u64) << 57;
        self.hasher.hash_one((bits(t.src), bits(t.dst), rest))
    }

    pub(crate) fn source_hash(&self, k: &SourceKey) -> u64 {
        // packed into two words, as in `key_hash`
        let (zone, proto, addr, port) = *k;
        let bits = match addr {
            std::net::IpAddr::V4(v) => u32::from(v) as u128,
            std::net::IpAddr::V6(v) => u128::from(v),
        };
        let rest = zone as u64
            | (proto as u64) << 16
            | (port as u64) << 24
            | (addr.is_ipv6() as u64) << 40
            | 0x5eed << 48;
        self.hasher.hash_one((bits, rest))
    }

    /// The slab index and direction the index holds for a tuple.
    fn map_get(&self, t: &Tuple, zone: Zone) -> Option<(u32, Direction)> {
        self.map_get_hashed(self.key_hash(t, zone), t, zone)
    }

    /// [`Table::map_get`] with the tuple's hash already computed.
    fn map_get_hashed(&self, h: u64, t: &Tuple, zone: Zone) -> Option<(u32, Direction)> {
        let v = self.map.find(h, |v| {
            self.conn_at(v >> 1)
                .is_some_and(|c| c.zone == zone && c.tuple_is((v & 1) as usize, t))
        })?;
        let dir = if v & 1 == 0 {
            Direction::Original
        } else {
            Direction::Reply
        };
        Some((v >> 1, dir))
    }

    /// The latest source-NATed connection from a source.
    pub(crate) fn bysource_get(&self, k: &SourceKey) -> Option<ConnId> {
        self.bysource_get_hashed(self.source_hash(k), k)
    }

    /// [`Table::bysource_get`] with the key's hash already computed.
    pub(crate) fn bysource_get_hashed(&self, h: u64, k: &SourceKey) -> Option<ConnId> {
        let (zone, proto, addr, port) = *k;
        // compared field by field in place (no original tuple built per candidate)
        let idx = self.bysource.find(h, |v| {
            self.conn_at(v).is_some_and(|c| {
                c.zone == zone && c.l4proto() == proto && c.port(0) == port && c.addr(0) == addr
            })
        })?;
        Some(self.id_at(idx))
    }

    /// What one connection costs, for a table holding `conns` of them (the indexes' sizes
    /// at that count, every connection source-NATed: the most an offloaded one costs; its
    /// masquerade interface included).
    pub fn memory_per_conn(conns: usize) -> Memory {
        let entry_bytes = core::mem::size_of::<Slot>()
            + core::mem::size_of::<u32>()
            + core::mem::size_of::<u16>();
        let n = conns.max(1);
        let index = (Index::slots_for(2 * n) + Index::slots_for(n)) * 8;
        let index_bytes_per_conn = index.div_ceil(n);
        Memory {
            entry_bytes,
            index_bytes_per_conn,
            bytes_per_conn: entry_bytes + index_bytes_per_conn,
            allocated: 0,
        }
    }

    /// What this table costs now.
    pub fn memory(&self) -> Memory {
        let m = Table::memory_per_conn(self.len);
        Memory {
            allocated: self.slots.capacity() * core::mem::size_of::<Slot>()
                + self.gens.capacity() * 4
                + self.masq.capacity() * 2
                + self.masq_wide.capacity() * 9
                + self.free.capacity() * 4
                + (self.map.capacity_slots() + self.bysource.capacity_slots()) * 8
                + self.age.capacity() * core::mem::size_of::<ConnId>(),
            ..m
        }
    }

    /// The connections `conntrack -L` lists: the confirmed ones not dying, in slab order.
    fn listed(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.iter()
            .filter(|(_, c)| c.is_confirmed() && !c.status.contains(Status::DYING))
    }

    /// `conntrack -L`: a line per confirmed connection, in slab order.
    pub fn list(&self, now: Duration) -> Vec<String> {
        // connections that fulfilled an expectation hold a reference to their master
        let mut children: Vec<ConnId> = self.iter().filter_map(|(_, c)| c.master()).collect();
        children.sort_unstable();
        self.listed()
            .map(|(id, c)| {
                let n = children.iter().filter(|m| **m == id).count() as u32;
                c.listing_refs(now, self.cfg.accounting, n, &self.cfg.timeouts)
            })
            .collect()
    }

    /// For each line of [`Table::list`], in its order, the seconds the connection really has
    /// left: for an offloaded one not the day `conntrack -L` shows, but what the kernel would
    /// list for it unoffloaded (the differential test compares it with a kernel without
    /// flowtables).
    pub fn list_remaining(&self, now: Duration) -> Vec<u64> {
        self.listed()
            .map(|(_, c)| c.remaining(now).as_secs())
            .collect()
    }

    fn alloc(&mut self, conn: Conn) -> ConnId {
        self.len += 1;
        if let Some(idx) = self.free.pop() {
            let s = &mut self.slots[idx as usize];
            s.conn = Some(conn);
            return ConnId {
                idx,
                gen: self.gen(idx),
            };
        }
        let idx = self.slots.len() as u32;
        self.slots.push(Slot { conn: Some(conn) });
        self.gens.push(0);
        ConnId { idx, gen: 0 }
    }

    fn unhash(&mut self, idx: u32) {
        let Some(c) = self.slots.get(idx as usize).and_then(|s| s.conn.as_ref()) else {
            return;
        };
        let hashes = [
            self.key_hash(&c.original(), c.zone),
            self.key_hash(&c.reply(), c.zone),
        ];
        for (d, h) in hashes.into_iter().enumerate() {
            self.map.remove(h, idx << 1 | d as u32);
        }
    }

    fn free_slot(&mut self, idx: u32) -> Option<Conn> {
        self.unhash(idx);
        if let Some(m) = self.masq.get_mut(idx as usize) {
            if *m == WIDE_MASQ {
                self.masq_wide.remove(&idx);
            }
            *m = NO_MASQ;
        }
        let c = self.conn_at(idx)?;
        let k = source_key(&c.original(), c.zone);
        if self.bysource_get(&k).is_some_and(|b| b.idx == idx) {
            let h = self.source_hash(&k);
            self.bysource.remove(h, idx);
        }
        let s = self.slots.get_mut(idx as usize)?;
        let c = s.conn.take()?;
        if c.synproxy().is_some() {
            self.synproxied -= 1;
        }
        if let Some(g) = self.gens.get_mut(idx as usize) {
            *g = g.wrapping_add(1);
        }
        self.free.push(idx);
        self.len -= 1;
        Some(c)
    }

    /// Deletes a connection (`conntrack -D`), confirmed or not.
    pub fn remove(&mut self, id: ConnId) -> Option<Conn> {
        self.get(id)?;
        self.free_slot(id.idx)
    }

    /// Forgets an unconfirmed connection whose packet was dropped. Confirmed ones stay.
    pub fn discard(&mut self, id: ConnId) -> bool {
        match self.get(id) {
            Some(c) if !c.is_confirmed() => self.free_slot(id.idx).is_some(),
            _ => false,
        }
    }

    /// Takes a connection out of the hash map at once, as `nf_ct_kill`: later packets no
    /// longer find it, and GC frees the slot (the current packet may still hold the id).
    pub fn kill(&mut self, id: ConnId, now: Duration) {
        if self.get(id).is_none() {
            return;
        }
        self.unhash(id.idx);
        if let Some(c) = self.get_mut(id) {
            c.status.insert(Status::DYING);
            c.set_deadline(now);
        }
    }

    /// Drops the oldest unassured, not offloaded, confirmed connection, as the kernel's
    /// early_drop, looking at a bounded number of candidates. Whether one was dropped.
    fn early_drop(&mut self) -> bool {
        for _ in 0..EARLY_DROP_SCAN {
            let Some(id) = self.age.pop_front() else {
                return false;
            };
            let Some(c) = self.get(id) else { continue };
            if c.is_assured() || c.status.contains(Status::DYING) {
                // Assured never goes away; dying is freed by GC anyway.
                continue;
            }
            if c.is_offloaded() {
                self.age.push_back(id);
                continue;
            }
            self.free_slot(id.idx);
            self.stats.early_drop += 1;
            return true;
        }
        false
    }

    fn make_room(&mut self) -> bool {
        if self.len < self.cfg.max_entries || self.early_drop() {
            return true;
        }
        // refused: the next GC sweep evicts what it may (`conntrack_gc_work.early_drop`)
        self.evict_left = self.slots.len();
        false
    }

    /// `gc_worker_can_early_drop`: what GC may take out of a table near its limit. Not an
    /// offloaded connection (but an offloaded UDP one, kernel 6.x), any unassured one, and
    /// assured ones that are closing: TCP in FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT or
    /// CLOSE, SCTP in a SHUTDOWN state.
    fn gc_can_evict(c: &Conn) -> bool {
        if c.is_offloaded() && c.l4proto() != 17 {
            return false;
        }
        !c.is_assured()
            || c.tcp_state()
                .is_some_and(crate::tcp::TcpState::can_early_drop)
            || c.sctp_state()
                .is_some_and(crate::sctp::SctpState::can_early_drop)
    }

    /// The kernel's GC after a new connection was refused (`gc_worker` with
    /// `gc_work->early_drop`): besides expiring, a sweep of the whole table takes out the
    /// confirmed, not dying connections [`Self::gc_can_evict`] allows, while the table holds
    /// 95% of its limit or more (`nf_conntrack_max / 100 * 95`: none below a limit of 100).
    /// Packets never do this themselves: they drop only unassured connections
    /// ([`Self::early_drop`]), so a table full of assured ones refuses new connections
    /// until GC has run. Looks at `budget` slots from the cursor, as [`Self::gc`].
    #[cold]
    #[inline(never)]
    fn gc_evicting(&mut self, now: Duration, budget: usize) -> usize {
        let n = self.slots.len();
        let max95 = self.cfg.max_entries / 100 * 95;
        let now_ns = crate::conn::ns(now);
        let mut freed = 0;
        let mut idx = self.gc_cursor % n;
        for _ in 0..budget.min(n) {
            let (due, evict) = match self.slots[idx].conn.as_ref() {
                Some(c) if c.expired_ns(now_ns) || c.status.contains(Status::DYING) => {
                    (true, false)
                }
                Some(c) => (
                    false,
                    max95 > 0 && self.len >= max95 && c.is_confirmed() && Self::gc_can_evict(c),
                ),
                None => (false, false),
            };
            if (due || evict) && self.free_slot(idx as u32).is_some() {
                freed += 1;
                if due {
                    self.stats.expired += 1;
                } else {
                    self.stats.evicted += 1;
                }
            }
            idx = (idx + 1) % n;
            self.evict_left = self.evict_left.saturating_sub(1);
            if self.evict_left == 0 {
                break;
            }
        }
        self.gc_cursor = idx;
        freed
    }

    /// Expires connections whose time is up (or that are dying), looking at no more than
    /// `budget` slots from where the previous call stopped. Returns how many it freed.
    pub fn gc(&mut self, now: Duration, budget: usize) -> usize {
        let n = self.slots.len();
        if n == 0 {
            return 0;
        }
        if self.evict_left > 0 {
            return self.gc_evicting(now, budget);
        }
        let mut freed = 0;
        // A run of slots scanned with no index arithmetic per slot, then the cursor stored
        // once: this runs for a few slots per burst frame, fast path included.
        let mut idx = self.gc_cursor % n;
        let mut left = budget.min(n);
        let now_ns = crate::conn::ns(now);
        let due = |s: &Slot| {
            s.conn
                .as_ref()
                .is_some_and(|c| c.expired_ns(now_ns) || c.status.contains(Status::DYING))
        };
        while left > 0 {
            let end = (idx + left).min(n);
            match self.slots[idx..end].iter().position(due) {
                Some(k) => {
                    let i = idx + k;
                    left -= k + 1;
                    idx = i + 1;
                    if self.free_slot(i as u32).is_some() {
                        freed += 1;
                        self.stats.expired += 1;
                    }
                }
                None => {
                    left -= end - idx;
                    idx = end;
                }
            }
            if idx >= n {
                idx = 0;
            }
        }
        self.gc_cursor = idx;
        freed
    }

    /// Looks a packet up, creating an unconfirmed connection for the first packet of one, and
    /// tracks it (`nf_conntrack_in`). SCTP needs the packet's bytes: see
    /// [`process_frame`](Self::process_frame); here it is invalid.
    pub fn process(&mut self, meta: &PacketMeta, zone: Zone, now: Duration) -> Outcome {
        self.process_frame(meta, &[], zone, now)
    }

    /// [`process`](Self::process) with the frame `meta` was parsed from, which SCTP tracking
    /// reads (chunks and verification tags; the CRC32c is checked, as the kernel does with
    /// `nf_conntrack_checksum` on). The kernel skips the check for a packet whose CRC is
    /// left to the device (`CHECKSUM_PARTIAL`, from a veth peer); this check has no such
    /// state, so the caller completes those CRCs first.
    pub fn process_frame(
        &mut self,
        meta: &PacketMeta,
        frame: &[u8],
        zone: Zone,
        now: Duration,
    ) -> Outcome {
        let sctp = match (meta.ip_protocol, meta.fragment) {
            (
                Some(nft_wire::IpProtocol::Sctp),
                nft_wire::Fragment::None | nft_wire::Fragment::First,
            ) => {
                let l4 = meta
                    .l4_offset
                    .and_then(|o| frame.get(o..meta.l3_end.min(frame.len())))
                    .unwrap_or(&[]);
                match crate::sctp::SctpPacket::parse(l4, true) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        self.stats.invalid += 1;
                        return Outcome::Invalid(e.into());
                    }
                }
            }
            _ => None,
        };
        let out = self.process_inner(meta, sctp.as_ref(), zone, now);
        match out {
            Outcome::Invalid(_) => self.stats.invalid += 1,
            Outcome::Untracked => self.stats.untracked += 1,
            Outcome::Refused(_) => self.stats.drop += 1,
            Outcome::Tracked { .. } => {}
        }
        out
    }

    fn process_inner(
        &mut self,
        meta: &PacketMeta,
        sctp: Option<&crate::sctp::SctpPacket>,
        zone: Zone,
        now: Duration,
    ) -> Outcome {
        let (Some(_), Some(proto)) = (meta.src_addr, meta.ip_protocol) else {
            return Outcome::Invalid(Invalid::NotIp);
        };
        if meta.fragment == nft_wire::Fragment::NonFirst {
            return Outcome::Invalid(Invalid::Fragment);
        }
        let proto = u8::from(proto);
        if let (PROTO_ICMP | PROTO_ICMPV6, Some(icmp)) = (proto, meta.icmp) {
            if proto == PROTO_ICMPV6 && tuple::icmpv6_untracked(icmp.msg_type) {
                return Outcome::Untracked;
            }
            if icmp.is_error {
                return self.related(meta, zone, now);
            }
        }
        let Some(t) = Tuple::from_meta(meta) else {
            return Outcome::Invalid(Invalid::NoTuple);
        };

        let h = self.key_hash(&t, zone);
        if let Some((idx, dir)) = self.map_get_hashed(h, &t, zone) {
            let id = self.id_at(idx);
            let expired = self.get(id).is_none_or(|c| c.expired(now));
            if expired {
                self.free_slot(idx);
                self.stats.expired += 1;
            } else {
                match self.existing(id, dir, meta, sctp, now) {
                    Some(out) => {
                        self.stats.found += 1;
                        return out;
                    }
                    None => {
                        // A SYN reopening a closed connection: the old one goes.
                        self.free_slot(idx);
                        self.stats.reopened += 1;
                    }
                }
            }
        }
        let out = self.create(t, zone, meta, sctp, now);
        if let Outcome::Tracked { id, .. } = out {
            self.pending = Pending {
                id: Some(id),
                orig: h,
                reply: None,
                source: None,
            };
        }
        out
    }

    /// An ICMP error is RELATED to the connection of the packet it quotes
    /// (`nf_conntrack_inet_error`).
    fn related(&mut self, meta: &PacketMeta, zone: Zone, now: Duration) -> Outcome {
        let Some(quoted) = Tuple::from_quoted(meta) else {
            return Outcome::Invalid(Invalid::IcmpErrorNoConn);
        };
        let mut candidates = [quoted.invert(), None];
        if tuple::is_icmp(quoted.proto) {
            // The quote could be an echo reply as well as a request.
            let reply = tuple::icmp_reply_type(quoted.proto, quoted.icmp_type()).unwrap_or(0);
            candidates[1] = quoted.with_icmp_type(reply).invert();
        }
        for t in candidates.into_iter().flatten() {
            let Some((idx, dir)) = self.map_get(&t, zone) else {
                continue;
            };
            let id = self.id_at(idx);
            let Some(c) = self.get(id) else { continue };
            if c.expired(now) {
                continue;
            }
            // The error must go to the endpoint the connection has on that side.
            if meta.dst_addr != Some(c.tuple(dir).dst) {
                return Outcome::Invalid(Invalid::IcmpErrorAddr);
            }
            self.stats.related += 1;
            return Outcome::Tracked {
                id,
                dir,
                state: CtState::Related,
            };
        }
        Outcome::Invalid(Invalid::IcmpErrorNoConn)
    }

    /// A packet of a known connection. `None` asks for the connection to be replaced by a new
    /// one started by this packet.
    fn existing(
        &mut self,
        id: ConnId,
        dir: Direction,
        meta: &PacketMeta,
        sctp: Option<&crate::sctp::SctpPacket>,
        now: Duration,
    ) -> Option<Outcome> {
        let accounting = self.cfg.accounting;
        let max_retrans = self.cfg.tcp_max_retrans;
        // borrowed beside the slot (not cloned, as `get_mut` would need): this runs per packet
        if self.gen(id.idx) != id.gen {
            return None;
        }
        let c = self.slots.get_mut(id.idx as usize)?.conn.as_mut()?;
        // a `ct timeout` policy replaces the table's timeouts for this connection
        let policy = c.ext.as_ref().and_then(|e| e.timeouts.as_deref().cloned());
        let timeouts = policy.as_ref().unwrap_or(&self.cfg.timeouts);
        let seen_reply = c.status.contains(Status::SEEN_REPLY);
        let synproxied = c.synproxy().is_some();
        let mut kill = false;
        let timeout = match &mut c.proto {
            ProtoState::Tcp(track) => {
                let Some(seg) = segment(meta) else {
                    return Some(Outcome::Invalid(Invalid::NoTuple));
                };
                let old_state = track.state;
                if synproxied && outside_closed(track, dir, &seg) {
                    return Some(Outcome::Invalid(Invalid::TcpState));
                }
                match track.packet(dir, &seg, timeouts, max_retrans) {
                    TcpVerdict::Accept { .. }
                        if !seen_reply && seg.flags.contains(nft_wire::TcpFlags::RST) =>
                    {
                        // A connection whose only answer is a reset never existed.
                        kill = true;
                        Some(timeouts.tcp_close)
                    }
                    TcpVerdict::Accept { .. }
                        if !seen_reply
                            && old_state == TcpState::SynSent
                            && crate::tcp::TcpPacketType::of(seg.flags)
                                == crate::tcp::TcpPacketType::Syn =>
                    {
                        // A retransmitted SYN does not renew the timeout, or a client (or
                        // a NAT in front of it) reusing the port would keep the entry alive.
                        None
                    }
                    TcpVerdict::Accept { timeout } if !seen_reply => {
                        Some(capped_pickup(track.state, timeout, timeouts))
                    }
                    TcpVerdict::Accept { timeout } => Some(timeout),
                    TcpVerdict::Ignore => None,
                    TcpVerdict::Invalid(why) => {
                        let reason = if why.contains("flag") {
                            Invalid::TcpFlags
                        } else {
                            Invalid::TcpState
                        };
                        return Some(Outcome::Invalid(reason));
                    }
                    TcpVerdict::Reopen => return None,
                }
            }
            ProtoState::Udp { stream_at } => {
                if seen_reply {
                    if now > *stream_at {
                        c.status.insert(Status::ASSURED);
                        Some(timeouts.udp_replied)
                    } else {
                        Some(timeouts.udp_unreplied)
                    }
                } else {
                    Some(timeouts.udp_unreplied)
                }
            }
            ProtoState::Icmp => Some(if c.l4proto() == PROTO_ICMPV6 {
                timeouts.icmpv6
            } else {
                timeouts.icmp
            }),
            ProtoState::Sctp(track) => {
                let Some(p) = sctp else {
                    return Some(Outcome::Invalid(Invalid::SctpMalformed));
                };
                match track.packet(dir, p, true, timeouts) {
                    crate::sctp::SctpVerdict::Accept { timeout, assured } => {
                        if assured {
                            c.status.insert(Status::ASSURED);
                        }
                        Some(timeout)
                    }
                    crate::sctp::SctpVerdict::Ignore => None,
                    crate::sctp::SctpVerdict::Invalid(e) => {
                        return Some(Outcome::Invalid(e.into()))
                    }
                }
            }
            ProtoState::Generic => Some(timeouts.generic),
        };
        if let Some(timeout) = timeout {
            if !c.status.contains(Status::FIXED_TIMEOUT) {
                c.set_deadline(now.saturating_add(timeout));
            }
            if accounting {
                let k = c.counter_mut(dir);
                k.packets = k.packets.saturating_add(1);
                k.bytes = k.bytes.saturating_add(meta.ip_total_len as u64);
            }
            // TCP is assured by the ACK that completes the handshake, or by the first answer
            // to a connection picked up mid-stream.
            if let ProtoState::Tcp(track) = &c.proto {
                if seen_reply
                    && !c.status.contains(Status::ASSURED)
                    && track.state == TcpState::Established
                {
                    c.status.insert(Status::ASSURED);
                }
            }
        } else {
            self.stats.ignore += 1;
        }
        let c = self.get_mut(id)?;
        let state = match dir {
            Direction::Reply => {
                c.status.insert(Status::SEEN_REPLY);
                CtState::Established
            }
            Direction::Original if seen_reply => CtState::Established,
            Direction::Original if c.status.contains(Status::EXPECTED) => CtState::Related,
            Direction::Original => CtState::New,
        };
        if kill {
            self.kill(id, now);
        }
        Some(Outcome::Tracked { id, dir, state })
    }

    fn create(
        &mut self,
        t: Tuple,
        zone: Zone,
        meta: &PacketMeta,
        sctp: Option<&crate::sctp::SctpPacket>,
        now: Duration,
    ) -> Outcome {
        let timeouts = &self.cfg.timeouts;
        let (proto, timeout) = match t.proto {
            PROTO_TCP => {
                let Some(seg) = segment(meta) else {
                    return Outcome::Invalid(Invalid::NoTuple);
                };
                match TcpTrack::new(&seg, self.cfg.tcp_loose, timeouts, self.cfg.tcp_max_retrans) {
                    Ok((track, timeout)) => (
                        ProtoState::Tcp(track),
                        capped_pickup(track.state, timeout, timeouts),
                    ),
                    Err(why) if why.contains("flag") => return Outcome::Invalid(Invalid::TcpFlags),
                    Err(_) => return Outcome::Invalid(Invalid::TcpState),
                }
            }
            PROTO_UDP | PROTO_UDPLITE => (
                ProtoState::Udp {
                    stream_at: now.saturating_add(UDP_STREAM_AFTER),
                },
                timeouts.udp_unreplied,
            ),
            PROTO_ICMP | PROTO_ICMPV6 => {
                if !tuple::icmp_valid_new(t.proto, t.icmp_type()) {
                    return Outcome::Invalid(Invalid::IcmpNew);
                }
                let to = if t.proto == PROTO_ICMP {
                    timeouts.icmp
                } else {
                    timeouts.icmpv6
                };
                (ProtoState::Icmp, to)
            }
            crate::tuple::PROTO_SCTP => {
                let Some(p) = sctp else {
                    return Outcome::Invalid(Invalid::SctpMalformed);
                };
                let mut track = match crate::sctp::SctpTrack::new(p) {
                    Ok(track) => track,
                    Err(e) => return Outcome::Invalid(e.into()),
                };
                match track.packet(Direction::Original, p, false, timeouts) {
                    crate::sctp::SctpVerdict::Accept { timeout, .. } => {
                        (ProtoState::Sctp(track), timeout)
                    }
                    crate::sctp::SctpVerdict::Ignore => {
                        (ProtoState::Sctp(track), track.state.timeout(timeouts))
                    }
                    crate::sctp::SctpVerdict::Invalid(e) => return Outcome::Invalid(e.into()),
                }
            }
            _ => (ProtoState::Generic, timeouts.generic),
        };
        let (tuples, reply) = match crate::conn::Tuples::narrow_with_inverse(&t) {
            Some(k) => (k, None),
            None => match t.invert() {
                Some(r) => (Default::default(), Some(r)),
                None => return Outcome::Invalid(Invalid::IcmpNew),
            },
        };
        if !self.make_room() {
            return Outcome::Refused(Refused::TableFull);
        }
        let counters = self.cfg.accounting.then(|| {
            Box::new(crate::conn::Acct {
                c: [
                    Counter {
                        packets: 1,
                        bytes: meta.ip_total_len as u64,
                    },
                    Counter::default(),
                ],
                offload_seen: [0; 4],
            })
        });
        let mut conn = Conn {
            tuples,
            zone,
            status: Status::NONE,
            mark: 0,

            proto,
            counters,
            id: self.next_id,
            ext: None,
            offload_ports: [u16::MAX; 2],
            offload_flow: 0,
            deadline_ns: crate::conn::ns(now.saturating_add(timeout)),
        };
        if let Some(reply) = reply {
            conn.store_tuples([t, reply]);
        }
        self.next_id = self.next_id.wrapping_add(1);
        let expected = self.take_expectation(&t, zone, now);
        let id = self.alloc(conn);
        self.stats.new += 1;
        let state = if let Some(e) = expected {
            if let Some(c) = self.get_mut(id) {
                c.status.insert(Status::EXPECTED);
                c.ext.get_or_insert_with(Box::default).master = Some(e.master);
            }
            CtState::Related
        } else {
            CtState::New
        };
        Outcome::Tracked {
            id,
            dir: Direction::Original,
            state,
        }
    }

    /// Whether `id` is the connection the last [`Table::process_frame`] made and nothing
    /// has confirmed yet: its first packet is on its walk, and only what binds NAT on that
    /// walk gives it any. (False once another packet made a connection since: a caller
    /// that skips work on `true` loses nothing then.)
    pub fn is_new(&self, id: ConnId) -> bool {
        self.pending.id == Some(id)
    }

    /// Enters an unconfirmed connection in the table once its first packet has passed every
    /// hook (`nf_conntrack_confirm`). If no source NAT was bound and the reply tuple is taken,
    /// a null binding moves the source port, as the kernel's NAT does at postrouting. `Clash`
    /// means the packet must be dropped (and the connection discarded).
    pub fn confirm(&mut self, id: ConnId, now: Duration) -> Result<(), CtError> {
        let c = self.get(id).ok_or(CtError::NoSuchConn)?;
        if c.is_confirmed() {
            return Ok(());
        }
        if c.status.contains(Status::DYING) {
            return Err(CtError::Dying);
        }
        let zone = c.zone;
        let nat_done = c.status.contains(Status::SRC_NAT_DONE);
        let pending = if self.pending.id == Some(id) {
            core::mem::take(&mut self.pending)
        } else {
            Pending::default()
        };
        let c = self.get(id).ok_or(CtError::NoSuchConn)?;
        // the tuples are read and compared in the connection (no tuple built) unless a
        // hash has to be computed
        let ho = if pending.id.is_some() {
            pending.orig
        } else {
            self.key_hash(&c.original(), zone)
        };
        let mut hr = match pending.reply {
            Some((pr, h)) if pending.id.is_some() && c.tuple_is(1, &pr) => h,
            _ => self.key_hash(&c.reply(), zone),
        };
        if !nat_done {
            let r = c.reply();
            if self.map_get_hashed(hr, &r, zone).is_some() {
                let range = crate::nat::NatRange::default();
                // Failure leaves the clash for the check below to refuse.
                let _ = self.bind(id, crate::nat::Manip::Src, &range);
                let c = self.get(id).ok_or(CtError::NoSuchConn)?;
                if c.reply() != r {
                    hr = self.key_hash(&c.reply(), zone);
                }
            }
        }
        // the clash checks and the insertions in one probe each
        let slots = &self.slots;
        let me = slots
            .get(id.idx as usize)
            .and_then(|s| s.conn.as_ref())
            .ok_or(CtError::NoSuchConn)?;
        let holds = |d: usize| {
            move |v: u32| {
                slots
                    .get((v >> 1) as usize)
                    .and_then(|s| s.conn.as_ref())
                    .is_some_and(|c| c.zone == zone && c.same_tuple((v & 1) as usize, me, d))
            }
        };
        let vo = id.idx << 1 | Direction::Original as u32;
        if !self.map.insert_unless(ho, vo, holds(0)) {
            self.stats.insert_failed += 1;
            return Err(CtError::Clash);
        }
        if !me.same_tuple(1, me, 0)
            && !self
                .map
                .insert_unless(hr, id.idx << 1 | Direction::Reply as u32, holds(1))
        {
            self.map.remove(ho, vo);
            self.stats.insert_failed += 1;
            return Err(CtError::Clash);
        }
        if me.status.contains(Status::SRC_NAT) {
            let h = match pending.source {
                Some(h) if pending.id.is_some() => h,
                _ => self.source_hash(&source_key(&me.original(), zone)),
            };
            let same = |v: u32| {
                slots
                    .get(v as usize)
                    .and_then(|s| s.conn.as_ref())
                    .is_some_and(|c| c.zone == zone && c.same_source(me))
            };
            self.bysource.upsert(h, id.idx, same);
        }
        if let Some(c) = self.get_mut(id) {
            c.status.insert(Status::CONFIRMED);
            if c.deadline() < now {
                c.set_deadline(now);
            }
        }
        self.stats.insert += 1;
        self.age.push_back(id);
        if self.age.len() > 2 * self.len + 64 {
            let (slots, gens) = (&self.slots, &self.gens);
            self.age.retain(|id| {
                slots
                    .get(id.idx as usize)
                    .filter(|_| gens.get(id.idx as usize) == Some(&id.gen))
                    .and_then(|s| s.conn.as_ref())
                    .is_some_and(|c| !c.is_assured())
            });
        }
        Ok(())
    }

    /// Marks a connection offloaded to a flowtable: in the hardware (`hw`, `[HW_OFFLOAD]`) or
    /// in software (`[OFFLOAD]`, also for one the hardware no longer has); it does not expire
    /// while offloaded.
    pub fn set_offload(&mut self, id: ConnId, hw: bool) -> Result<(), CtError> {
        let c = self.get_mut(id).ok_or(CtError::NoSuchConn)?;
        if !c.status.contains(Status::OFFLOAD) {
            // a new flow counts from zero
            if let Some(a) = c.counters.as_deref_mut() {
                a.offload_seen = [0; 4];
            }
        }
        c.status.insert(Status::OFFLOAD);
        if hw {
            c.status.insert(Status::HW_OFFLOAD);
        } else {
            c.status.remove(Status::HW_OFFLOAD);
        }
        Ok(())
    }

    /// The flow left the flowtable: the connection gets its state's timeout back.
    pub fn clear_offload(&mut self, id: ConnId, now: Duration) -> Result<(), CtError> {
        let c = self.get(id).ok_or(CtError::NoSuchConn)?;
        let timeout = c.state_timeout(&self.cfg.timeouts);
        let c = self.get_mut(id).ok_or(CtError::NoSuchConn)?;
        c.status.remove(Status::OFFLOAD | Status::HW_OFFLOAD);
        c.set_deadline(now.saturating_add(timeout));
        Ok(())
    }

    /// `ct timeout set`: gives an unconfirmed connection the timeout policy `policy` (state
    /// names and seconds, as a `ct timeout` object lists them), which then decides its
    /// timeouts in every state; it expires after the policy's first timeout unless its packet
    /// moves it on (`nft_ct_timeout_obj_eval`).
    pub fn set_timeout_policy(
        &mut self,
        id: ConnId,
        policy: &[(String, u64)],
        now: Duration,
    ) -> Result<(), CtError> {
        let base = self.cfg.timeouts.clone();
        let c = self.get_mut(id).ok_or(CtError::NoSuchConn)?;
        if c.is_confirmed() {
            return Err(CtError::AlreadyConfirmed);
        }
        let proto = c.l4proto();
        let t = base
            .with_policy(proto, policy)
            .map_err(|_| CtError::BadPolicy)?;
        c.set_deadline(now.saturating_add(t.new_conn(proto)));
        c.ext.get_or_insert_with(Box::default).timeouts = Some(Box::new(t));
        Ok(())
    }

    /// `ct expectation set`: connection `master` (not yet confirmed) announces a connection
    /// of `proto` from the address it is answered from to the address it is answered to,
    /// from any port to `dport`, which the table takes as `related` (status `expected`) if it
    /// begins before `timeout` is up. At most `size` expectations of a connection are
    /// pending; beyond that none is added. `l3` (2 or 10) must be the connection's family.
    #[allow(clippy::too_many_arguments)]
    pub fn expect(
        &mut self,
        master: ConnId,
        l3: Option<u8>,
        proto: u8,
        dport: u16,
        timeout: Duration,
        size: u32,
        now: Duration,
    ) -> Result<bool, CtError> {
        let c = self.get_mut(master).ok_or(CtError::NoSuchConn)?;
        if c.is_confirmed() {
            return Err(CtError::AlreadyConfirmed);
        }
        // the helper extension comes first, whether an expectation fits or not
        c.ext.get_or_insert_with(Box::default).help = true;
        let r = c.reply();
        if l3.is_some_and(|f| (f == 2) != r.is_ipv4()) {
            return Err(CtError::FamilyMismatch);
        }
        let exp = Expectation {
            master,
            zone: c.zone,
            proto,
            src: r.src,
            dst: r.dst,
            dport,
            deadline: now.saturating_add(timeout),
        };
        self.expects.retain(|e| {
            e.deadline > now && self.gens.get(e.master.idx as usize) == Some(&e.master.gen)
        });
        let pending = self.expects.iter().filter(|e| e.master == master).count();
        if pending >= size as usize {
            return Ok(false);
        }
        // the same announcement again replaces the old one (`nf_ct_expect_related`)
        self.expects.retain(|e| {
            (e.zone, e.proto, e.src, e.dst, e.dport) != (exp.zone, proto, exp.src, exp.dst, dport)
        });
        self.expects.push(exp);
        Ok(true)
    }

    /// The expectations pending at `now`.
    pub fn expectations(&self, now: Duration) -> Vec<Expectation> {
        self.expects
            .iter()
            .filter(|e| e.deadline > now && self.get(e.master).is_some())
            .cloned()
            .collect()
    }

    /// The expectation a new connection with original tuple `t` fulfils, taken out of the
    /// list (`nf_ct_find_expectation`).
    fn take_expectation(&mut self, t: &Tuple, zone: Zone, now: Duration) -> Option<Expectation> {
        if self.expects.is_empty() {
            return None;
        }
        let i = self.expects.iter().position(|e| {
            e.zone == zone
                && e.proto == t.proto
                && e.src == t.src
                && e.dst == t.dst
                && e.dport == t.dport
                && e.deadline > now
                && self.get(e.master).is_some()
        })?;
        Some(self.expects.swap_remove(i))
    }

    /// Sets a connection's synproxy state (the router answered its handshake).
    pub fn set_synproxy(&mut self, id: ConnId, sp: crate::Synproxy) -> Result<(), CtError> {
        let c = self.get_mut(id).ok_or(CtError::NoSuchConn)?;
        let new = c.synproxy().is_none();
        c.set_synproxy(sp);
        if new {
            self.synproxied += 1;
        }
        Ok(())
    }

    /// How many connections have synproxy state: none, and nothing needs sequence
    /// adjustment.
    pub fn synproxied(&self) -> usize {
        self.synproxied
    }

    /// Adds packets counted elsewhere (the flowtable's fast path) to a direction.
    pub fn account(&mut self, id: ConnId, dir: Direction, packets: u64, bytes: u64) {
        if !self.cfg.accounting {
            return;
        }
        if let Some(c) = self.get_mut(id) {
            let k = c.counter_mut(dir);
            k.packets = k.packets.saturating_add(packets);
            k.bytes = k.bytes.saturating_add(bytes);
        }
    }

    /// Adds what a flowtable forwarded for direction `dir` since the last call, given its
    /// running counts (the low 32 bits of packets and bytes, which may wrap between calls
    /// once; see [`rebase_offloaded`](Self::rebase_offloaded)). Only with accounting.
    pub fn account_offloaded(&mut self, id: ConnId, dir: Direction, packets: u32, bytes: u32) {
        if !self.cfg.accounting {
            return;
        }
        let d = dir.index() & 1;
        let Some(c) = self.get_mut(id) else { return };
        let a = c.counters.get_or_insert_with(Box::default);
        let p = packets.wrapping_sub(a.offload_seen[d]);
        let b = bytes.wrapping_sub(a.offload_seen[2 + d]);
        a.offload_seen[d] = packets;
        a.offload_seen[2 + d] = bytes;
        a.c[d].packets = a.c[d].packets.saturating_add(u64::from(p));
        a.c[d].bytes = a.c[d].bytes.saturating_add(u64::from(b));
    }

    /// The flowtable's running counts of direction `dir` start again from zero (it moved
    /// them elsewhere after adding them).
    pub fn rebase_offloaded(&mut self, id: ConnId, dir: Direction) {
        if let Some(a) = self.get_mut(id).and_then(|c| c.counters.as_deref_mut()) {
            let d = dir.index() & 1;
            a.offload_seen[d] = 0;
            a.offload_seen[2 + d] = 0;
        }
    }

    /// Sets when a connection expires (`conntrack -U --timeout`): a flowtable giving a
    /// connection back dates its timeout from the last packet it forwarded.
    pub fn set_deadline(&mut self, id: ConnId, deadline: Duration) {
        if let Some(c) = self.get_mut(id) {
            c.set_deadline(deadline);
        }
    }

    /// Extends a connection's life to at least `now + timeout`.
    pub fn refresh(&mut self, id: ConnId, now: Duration, timeout: Duration) {
        if let Some(c) = self.get_mut(id) {
            c.set_deadline(c.deadline().max(now.saturating_add(timeout)));
        }
    }

    /// The interface a connection's masquerade binding took its address from.
    pub fn masq_ifindex(&self, id: ConnId) -> Option<u32> {
        self.get(id)?;
        self.masq_at(id.idx)
    }

    pub(crate) fn set_masq_ifindex(&mut self, id: ConnId, ifindex: u32) {
        if self.get(id).is_none() {
            return;
        }
        let idx = id.idx as usize;
        if self.masq.len() <= idx {
            self.masq.resize(self.slots.len().max(idx + 1), NO_MASQ);
        }
        if self.masq[idx] == WIDE_MASQ {
            self.masq_wide.remove(&id.idx);
        }
        match u16::try_from(ifindex) {
            Ok(i) if i < WIDE_MASQ => self.masq[idx] = i,
            _ => {
                self.masq[idx] = WIDE_MASQ;
                self.masq_wide.insert(id.idx, ifindex);
            }
        }
    }

    fn masq_at(&self, idx: u32) -> Option<u32> {
        match *self.masq.get(idx as usize)? {
            NO_MASQ => None,
            WIDE_MASQ => self.masq_wide.get(&idx).copied(),
            i => Some(i.into()),
        }
    }

    /// Deletes the connections masqueraded through an interface whose address went away.
    pub fn forget_masquerade(&mut self, ifindex: u32) -> usize {
        let doomed: Vec<u32> = self
            .iter()
            .filter(|(id, _)| self.masq_at(id.idx) == Some(ifindex))
            .map(|(id, _)| id.idx)
            .collect();
        for &idx in &doomed {
            self.free_slot(idx);
        }
        doomed.len()
    }

    /// Whether tuple `t`, whose hash is `h`, is already the key of another connection.
    pub(crate) fn taken_hashed(&self, h: u64, t: &Tuple, zone: Zone, me: ConnId) -> bool {
        self.map_get_hashed(h, t, zone)
            .is_some_and(|(idx, _)| idx != me.idx)
    }

    pub(crate) fn conn_mut_internal(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.get_mut(id)
    }
}

/// A connection picked up mid-stream is ESTABLISHED before anything answered it; it gets the
/// unacknowledged timeout, not five days, until something does.
fn capped_pickup(state: TcpState, timeout: Duration, t: &Timeouts) -> Duration {
    if state == TcpState::Established {
        timeout.min(t.tcp_unacknowledged)
    } else {
        timeout
    }
}

/// A client's segment on a closed synproxied connection (TIME_WAIT, CLOSE) that lies far
/// outside what the client sent on it: the ACK of a new handshake the router answered on the
/// same ports. The kernel's window check (`tcp_in_window`, which liberal tracking leaves
/// out) makes it invalid there, so that `ct state invalid` sends it to synproxy, which opens
/// the new connection; here the check is made only where synproxy needs it.
fn outside_closed(track: &TcpTrack, dir: Direction, seg: &Segment) -> bool {
    use nft_wire::TcpFlags;
    if dir != Direction::Original
        || !matches!(track.state, TcpState::TimeWait | TcpState::Close)
        || seg
            .flags
            .intersects(TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST)
    {
        return false;
    }
    let Some(end) = track.seen[0].end else {
        return false;
    };
    let d = seg.seq.wrapping_sub(end) as i32;
    !(-65535..=65535).contains(&d)
}

fn segment(meta: &PacketMeta) -> Option<Segment> {
    let t = meta.tcp?;
    Some(Segment {
        flags: t.flags,
        seq: t.seq_number,
        ack: t.ack_number,
        window: t.window_len,
        payload_len: meta.payload_len as u32,
    })
}
