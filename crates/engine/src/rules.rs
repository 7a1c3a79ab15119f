//! The executable ruleset: an evaluated nft syntax tree compiled into base chains per hook,
//! ordered by priority, whose rules are flat lists of loads, tests and statements.
//!
//! Loads read a packet field as a number (payload bytes big endian, meta and conntrack keys
//! as their values), tests compare it with constants, ranges, prefixes, flags or sets. The
//! listing form the language front end produces has protocol dependencies removed (`tcp dport`
//! without `meta l4proto tcp`), so the compiler puts them back as guards on the load: a load
//! from a header the packet does not have fails the rule, as in the kernel.
//!
//! Statements with effects beyond the packet's own metadata (NAT, reject, flow offload, log)
//! are handed to the caller through [`Actions`], which the router implements with its
//! connection table and transmit path.

// foldhash rather than SipHash: sets, maps and rule hit counts are looked up per packet.
use crate::HashMap;

use nft_lang::ast::{self, BinOp, Const, Expr, ExprKind, Family, RelOp, StmtKind};
use nft_lang::datatype::{Dt, Val};
use nft_lang::proto::{self, Base};

use crate::hdr;

/// NFPROTO_ARP: what `arp` loads check `meta nfproto` against.
pub const NFPROTO_ARP: u8 = 3;
/// NFPROTO_NETDEV: `meta nfproto` in a netdev-family chain.
pub const NFPROTO_NETDEV: u8 = 5;

/// Where conntrack's NAT rewrites packets among the base chains: destination at prerouting
/// and output (`NF_IP_PRI_NAT_DST`), source at postrouting and input (`NF_IP_PRI_NAT_SRC`).
/// Chains of lower (or equal) priority see the packet before, higher ones after.
pub const NAT_DST_PRIO: i32 = -100;
pub const NAT_SRC_PRIO: i32 = 100;

/// Kernel limit on nested jumps (NFT_JUMP_STACK_SIZE).
pub const JUMP_STACK: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    Ingress,
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub fn parse(s: &str) -> Option<Hook> {
        Some(match s {
            "ingress" => Hook::Ingress,
            "prerouting" => Hook::Prerouting,
            "input" => Hook::Input,
            "forward" => Hook::Forward,
            "output" => Hook::Output,
            "postrouting" => Hook::Postrouting,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
    Route,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what} is not supported by the dataplane yet (table {table}, chain {chain})")]
pub struct CompileError {
    pub what: String,
    pub table: String,
    pub chain: String,
}

/// A packet field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Load {
    /// `bits` bits at `offset` bits from the header start, big endian. `l3`/`l4` are the
    /// network (nfproto) and transport protocol the header belongs to, checked first.
    Payload {
        base: Base,
        offset: u32,
        bits: u32,
        l3: Option<u8>,
        l4: Option<u8>,
    },
    /// A field of an 802.1Q/802.1ad header right after the Ethernet header (`vlan id`):
    /// absent once the router has taken the tag off, as on a VLAN interface in Linux.
    Vlan {
        offset: u32,
        bits: u32,
    },
    Meta(MetaK),
    Ct {
        key: CtK,
        reply: Option<bool>,
    },
    /// `expr & mask ^ xor`, `expr << n`, `expr >> n`
    Bitwise {
        inner: Box<Load>,
        and: u128,
        xor: u128,
    },
    /// `rt mtu`: the TCP MSS the route allows (route MTU less the IP and TCP headers).
    RtTcpMss,
    /// `rt ip nexthop`: the gateway of the route, or the destination when directly connected.
    RtNexthop,
    /// `rt classid`: routing realms are not modelled, so always 0.
    RtClassid,
    Shift {
        inner: Box<Load>,
        left: bool,
        n: u32,
    },
    /// An IPv6 extension header field, or its presence (`exthdr frag exists`) as 1/0.
    Exthdr {
        nexthdr: u8,
        offset: u32,
        bits: u32,
        present: bool,
    },
    /// A TCP option field (offset from the kind byte), or its presence.
    TcpOpt {
        kind: u8,
        offset: u32,
        bits: u32,
        present: bool,
    },
    /// An IPv4 option field (offset from the type byte), or its presence.
    IpOpt {
        ty: u8,
        offset: u32,
        bits: u32,
        present: bool,
    },
    Fib(Box<FibQuery>),
    /// `numgen inc|random mod N offset M`; `slot` is the counter in [`State`] for `inc`.
    Numgen {
        random: bool,
        modulus: u32,
        offset: u32,
        slot: usize,
    },
    /// `jhash KEY mod N seed S offset M`: keys with their register width in bytes and
    /// whether the register holds them in network order.
    Jhash {
        keys: Vec<(Load, u32, bool)>,
        modulus: u32,
        seed: u32,
        offset: u32,
    },
    /// `symhash mod N offset M`: the same for both directions of a flow.
    Symhash {
        modulus: u32,
        offset: u32,
    },
    /// A field of a header inside a tunnel (`udp dport 4789 vxlan ip saddr`, `gre ip
    /// saddr`): `l3` is the inner ethertype and `l4` the inner transport protocol the field
    /// needs (the dependencies nft adds inside the tunnel).
    Inner {
        tunnel: crate::extmatch::Tunnel,
        base: crate::extmatch::InnerBase,
        offset: u32,
        bits: u32,
        l3: Option<u16>,
        l4: Option<u8>,
    },
    /// An SCTP chunk field (offset from the chunk header), or its presence.
    SctpChunk {
        ty: u8,
        offset: u32,
        bits: u32,
        present: bool,
    },
    /// `dccp option N`: 1 or 0.
    DccpOpt(u8),
    /// `socket ...`: the local socket the packet belongs to. The dataplane has none (the
    /// router's own sockets live in the host's stack), so the load fails as
    /// `nft_socket_eval` does without a socket.
    Socket,
    /// `ipsec in|out ...`: the packet's IPsec state. No packet here went through an xfrm
    /// transform (no SA), so the load fails as `nft_xfrm` does without one.
    Ipsec {
        out: bool,
    },
    /// `osf name|version`: see [`crate::extmatch::osf`].
    Osf,
}

/// `fib saddr . iif oif`: which address, which interface constraint, what result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FibQuery {
    pub daddr: bool,
    pub iif: bool,
    pub oif: bool,
    pub result: FibResult,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FibResult {
    Oif,
    OifName,
    Type,
}

/// What a rule asks the router's FIB. Interfaces are numbered as `meta iif` numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteAnswer {
    None,
    Local(u32),
    Unicast { oif: u32 },
    Blackhole,
    Unreachable,
}

/// Routing and interface facts for `fib`, and liveness of connections for `ct count`. The
/// router implements it; rules see no router internals.
pub trait Env {
    fn route(&self, addr: u128, v6: bool) -> RouteAnswer;
    /// Whether `addr` is an address of interface `ifindex` (any interface when None).
    fn is_local(&self, addr: u128, v6: bool, ifindex: Option<u32>) -> bool;
    /// Whether `addr` is the broadcast address of a subnet on an interface.
    fn is_subnet_broadcast(&self, addr: u128, ifindex: Option<u32>) -> bool;
    fn ifname(&self, ifindex: u32) -> u128;
    /// Whether the connection with this handle ([`CtInfo::handle`]) is still alive.
    fn conn_alive(&self, handle: u64) -> bool;
    /// The MTU of interface `ifindex` (0: unknown).
    fn mtu(&self, _ifindex: u32) -> u32 {
        0
    }
    /// The link kind of interface `ifindex` as an interface-name value (0: none, as a
    /// physical NIC has no `rtnl_link_ops`).
    fn ifkind(&self, _ifindex: u32) -> u128 {
        0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaK {
    Length,
    Protocol,
    Mark,
    Iif,
    Oif,
    IifName,
    OifName,
    IifType,
    OifType,
    IifKind,
    OifKind,
    NfProto,
    L4Proto,
    PktType,
    IifGroup,
    OifGroup,
    Priority,
    Nftrace,
    Cpu,
    Random,
    Time,
    Day,
    Hour,
    /// `meta secmark`: the security mark rules set (`meta secmark set`).
    Secmark,
    /// `meta ipsec`: whether the packet came through an IPsec transform (never here).
    Ipsec,
    /// `meta skuid`, `meta skgid`, `meta cgroup`: facts of the local socket a packet
    /// belongs to. Routed packets have none, so the load fails as the kernel's does.
    Skuid,
    Skgid,
    Cgroup,
    /// `meta rtclassid`: the route's realm; realms are not modelled, so 0.
    RtClassid,
    /// `meta sdif`, `meta sdifname`: the L3 master (VRF) device; there are none, so 0 and
    /// the empty name.
    Sdif,
    SdifName,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtK {
    State,
    Direction,
    Status,
    Mark,
    Expiration,
    L3Proto,
    Protocol,
    Saddr,
    Daddr,
    ProtoSrc,
    ProtoDst,
    Zone,
    Packets,
    Bytes,
    Label,
    Id,
    AvgPkt,
    Helper,
    Secmark,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Test {
    Cmp(RelOp, u128),
    /// Inclusive range.
    Range(u128, u128),
    /// `ct state established,related`: any of these bits set.
    AnyBit(u128),
    /// `value & mask == want` (prefixes, wildcard interface names).
    Masked {
        mask: u128,
        want: u128,
    },
    /// Membership in compiled set `n`.
    InSet(usize),
    /// Membership in a constant set of single values, folded from [`Test::InSet`] at compile
    /// time ([`fold_const_sets`]): a few compares instead of a set lookup.
    AnyOf(Box<[u128]>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    pub loads: Vec<Load>,
    pub test: Test,
    pub negate: bool,
}

/// A value computed at run time for `set` statements and NAT addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Const(u128),
    Load(Load),
    /// Lookup in map `n` keyed by the loads.
    Map {
        keys: Vec<Load>,
        map: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Continue,
    Return,
    Jump(usize),
    Goto(usize),
    Queue,
    /// `fwd`: the packet left through another interface.
    Stolen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    Snat,
    Dnat,
    Masquerade,
    Redirect,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatSpec {
    pub kind: NatKind,
    /// Address range (lo, hi) or a computed address; None keeps the address (ports only) or,
    /// for masquerade, uses the egress interface's.
    pub addr: Option<(Value, Option<u128>)>,
    pub ipv6: bool,
    /// In an `inet` table, a statement written for one family (`dnat ip to`, `snat ip6 to`)
    /// does nothing to the other's packets and the rule goes on (the kernel's
    /// `nft_nat_inet_eval`): the NFPROTO it applies to, 0 for both.
    pub only_nfproto: u8,
    pub port: Option<(Value, Option<u16>)>,
    pub persistent: bool,
    pub random: bool,
    pub fully_random: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reject {
    /// The family default: ICMP port unreachable (ICMPv6 for IPv6), TCP reset for TCP
    /// in `inet` when written `with tcp reset`.
    IcmpPortUnreachable,
    TcpReset,
    Icmp {
        v6: bool,
        code: u8,
    },
    /// icmpx: the code is translated per family (no-route, port-unreachable,
    /// host-unreachable, admin-prohibited).
    Icmpx(u8),
}

/// `log` and its options, as the router formats them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LogSpec {
    pub prefix: Option<String>,
    pub level: u8,
    /// nflog group: the line is tagged with it instead of a syslog level.
    pub group: Option<u32>,
    pub snaplen: Option<u32>,
    pub queue_threshold: Option<u32>,
    pub tcp_sequence: bool,
    pub tcp_options: bool,
    pub ip_options: bool,
    pub skuid: bool,
    pub ether: bool,
}

/// What a dynamic set update does (`nft_dynset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DynOp {
    Add,
    Update,
    Delete,
}

/// A stateful statement attached to each element of a dynamic set (a meter).
#[derive(Clone, Debug, PartialEq)]
pub enum ElemStmt {
    Counter,
    Limit(LimitSpec),
    Quota(QuotaSpec),
    /// `ct count [over] N`
    Connlimit {
        over: bool,
        count: u32,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct DynsetOp {
    pub set: usize,
    pub op: DynOp,
    pub keys: Vec<Load>,
    /// The element timeout written in the statement; else the set's.
    pub timeout_ms: Option<u64>,
    pub data: Option<Value>,
    pub stmts: Vec<ElemStmt>,
}

/// Named objects of one kind a statement picks by map lookup (`counter name ip saddr map
/// {...}`): the map's values are object indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjKind {
    Counter,
    Quota,
    Limit,
    CtHelper,
    CtTimeout,
    CtExpect,
    Secmark,
    Synproxy,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Match(Match),
    Verdict(Verdict),
    /// Verdict map keyed by the loads.
    Vmap {
        keys: Vec<Load>,
        map: usize,
    },
    /// A constant verdict map of a few single values (`ct state vmap { established : accept,
    /// related : accept }`), folded from [`Op::Vmap`] at compile time ([`fold_const_sets`]).
    VmapConst {
        key: Load,
        elems: Box<[(u128, Verdict)]>,
    },
    Counter(usize),
    Limit(usize),
    /// `ct count [over] N` of a rule (not in a set): one list of connections per statement,
    /// index into [`State::connlimits`] (the kernel's `nft_connlimit`).
    Connlimit {
        slot: usize,
        over: bool,
        count: u32,
    },
    Quota(usize),
    /// A named object chosen per packet through an object map.
    ObjMap {
        kind: ObjKind,
        keys: Vec<Load>,
        map: usize,
    },
    Log(Box<LogSpec>),
    Reject(Reject),
    Nat(Box<NatSpec>),
    Notrack,
    FlowAdd(String),
    SetMeta(MetaK, Value),
    SetCt(CtK, Value),
    /// `ct helper set "name"`: the helper object's helper name.
    SetCtHelper(String),
    /// Rewrite a payload field (`ip dscp set cs1`), checksums patched.
    SetPayload {
        base: Base,
        offset: u32,
        bits: u32,
        l3: Option<u8>,
        l4: Option<u8>,
        value: Value,
    },
    /// `tcp option maxseg size set ...`: lower the MSS option to the value (never raise it,
    /// as the kernel's exthdr set for maxseg does).
    ClampMss(Value),
    Dynset(Box<DynsetOp>),
    /// `dup to ADDR [device IF]` / `fwd [ip|ip6 to ADDR] to IF`: the router copies or moves
    /// the packet. `fwd` ends the walk (the kernel steals the packet).
    Dup {
        addr: Option<Value>,
        dev: Option<Value>,
        v6: bool,
    },
    Fwd {
        addr: Option<Value>,
        dev: Value,
        v6: bool,
    },
    /// `ct timeout set "name"`: the connection's state timeouts become the object's
    /// (index into [`Ruleset::ct_timeouts`]).
    SetCtTimeout(usize),
    /// `ct expectation set "name"` (index into [`Ruleset::ct_expects`]).
    CtExpect(usize),
    /// `meta secmark set "name"`: the secmark object's security id.
    SetSecmark(u32),
    /// `synproxy ...` or `synproxy name "x"`: the router answers the handshake (a SYN or the
    /// client's ACK ends the walk; other TCP segments go on to the next statement).
    Synproxy(crate::synproxy::SynproxySpec),
    /// `tproxy [ip|ip6] to [ADDR][:PORT]`: the packet would be for a local transparent
    /// socket at that address and port. The router has none to give it to, so the rule stops
    /// there (see the evaluation); the address and port are kept for what is compiled.
    Tproxy {
        addr: Option<u128>,
        port: Option<u16>,
        v6: Option<bool>,
    },
}

/// A `ct timeout` object: the transport protocol it applies to and its state timeouts, in
/// seconds, by the names nft gives them (`established`, `unreplied`, ...). States it does not
/// name keep the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtTimeoutSpec {
    pub l4proto: u8,
    pub policy: Vec<(String, u64)>,
}

/// A `ct expectation` object: the connection it announces (from the answering side to the
/// connection's source, to `dport`), how long the announcement lasts, and how many a
/// connection may have at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtExpectSpec {
    /// NFPROTO of the object (`l3proto`); None takes the connection's.
    pub l3proto: Option<u8>,
    pub l4proto: u8,
    pub dport: u16,
    pub timeout_ms: u64,
    pub size: u32,
}

#[derive(Clone, Debug)]
pub struct CRule {
    pub ops: Vec<Op>,
    /// Index into the source table's chain and rule, for traces and hit counts.
    pub handle: u64,
    pub text: String,
}

#[derive(Clone, Debug)]
pub struct CChain {
    pub table: String,
    pub family: Family,
    pub name: String,
    pub rules: Vec<CRule>,
}

#[derive(Clone, Debug)]
pub struct BaseChain {
    pub hook: Hook,
    pub kind: ChainType,
    pub prio: i32,
    /// Where the chain runs among its hook's: its priority, but a NAT chain's is its NAT
    /// hook's (`NF_IP_PRI_NAT_DST`, -100, at prerouting and output; `NF_IP_PRI_NAT_SRC`, 100,
    /// at input and postrouting): the kernel runs every NAT chain inside conntrack's NAT hook.
    pub order: i32,
    pub family: Family,
    pub chain: usize,
    pub policy_drop: bool,
    pub devices: Vec<String>,
}

/// What a set element maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetData {
    None,
    Verdict(Verdict),
    Value(u128),
}

/// A set or map as loaded: exact keys in a hash map, intervals (any component a range) in a
/// list. What rules add at run time lives in [`State::dynsets`].
#[derive(Clone, Debug, Default)]
pub struct CSet {
    pub name: String,
    pub table: String,
    pub exact: HashMap<Vec<u128>, SetData>,
    pub ranges: Vec<(Vec<(u128, u128)>, SetData)>,
    pub timeout_ms: Option<u64>,
    /// Element limit; dynamic sets without one get [`DYNSET_DEFAULT_SIZE`].
    pub size: Option<usize>,
}

/// Bounds dynamic sets declared without `size`, as nft does for meters, so that no rule can
/// grow the state without limit.
pub const DYNSET_DEFAULT_SIZE: usize = 65535;

/// Up to this many exact elements, a lookup compares keys instead of hashing.
const SMALL_SET: usize = 4;

impl CSet {
    /// The loaded elements only.
    pub fn lookup(&self, key: &[u128]) -> Option<&SetData> {
        // The sets a router's rules test on every packet are tiny (`{ tcp, udp }`, a zone's
        // devices, a ct state vmap): comparing a few keys is cheaper than hashing one.
        if self.exact.len() <= SMALL_SET {
            if let Some((_, d)) = self
                .exact
                .iter()
                .find(|(k, _)| k.len() == key.len() && k.iter().zip(key).all(|(a, b)| a == b))
            {
                return Some(d);
            }
        } else if let Some(d) = self.exact.get(key) {
            return Some(d);
        }
        self.ranges
            .iter()
            .find(|(r, _)| {
                r.len() == key.len() && r.iter().zip(key).all(|((lo, hi), k)| lo <= k && k <= hi)
            })
            .map(|(_, d)| d)
    }

    fn static_len(&self) -> usize {
        self.exact.len() + self.ranges.len()
    }
}

/// Per-element state of a meter statement.
#[derive(Clone, Debug, PartialEq)]
pub enum ElemState {
    Counter {
        packets: u64,
        bytes: u64,
    },
    /// tokens, last refill (ns)
    Limit {
        tokens: f64,
        last: u64,
    },
    Quota {
        used: u64,
    },
    /// Connections counted (handles), pruned of dead ones on each evaluation.
    Conns(Vec<u64>),
}

/// An element a rule added.
#[derive(Clone, Debug, PartialEq)]
pub struct DynElem {
    /// Expiry (ns); None: until deleted.
    pub expires: Option<u64>,
    pub data: Option<u128>,
    pub stmts: Vec<ElemState>,
}

/// The run-time contents of one set: elements added by rules, and loaded elements that
/// rules deleted.
#[derive(Clone, Debug, Default)]
pub struct DynSet {
    pub elems: HashMap<Vec<u128>, DynElem>,
    pub deleted: std::collections::HashSet<Vec<u128>, foldhash::fast::FixedState>,
}

impl DynSet {
    fn live(&self, key: &[u128], now_ns: u64) -> Option<&DynElem> {
        self.elems
            .get(key)
            .filter(|e| e.expires.is_none_or(|x| x > now_ns))
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LimitSpec {
    /// Tokens per second (packets or bytes).
    pub rate_per_s: f64,
    pub burst: f64,
    pub bytes: bool,
    pub over: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuotaSpec {
    pub bytes: u64,
    pub over: bool,
    /// Bytes already used when loaded (`quota 100 mbytes used 20 mbytes`).
    pub used: u64,
}

/// The compiled ruleset. Immutable once built; run-time state lives in [`State`].
#[derive(Clone, Debug, Default)]
pub struct Ruleset {
    pub chains: Vec<CChain>,
    /// Base chains sorted by hook then priority.
    pub base: Vec<BaseChain>,
    pub sets: Vec<CSet>,
    pub limits: Vec<LimitSpec>,
    pub quotas: Vec<QuotaSpec>,
    /// Initial packets and bytes of each counter (statement or named object).
    pub counter_init: Vec<(u64, u64)>,
    pub counters: usize,
    /// `numgen inc` expressions, each with its own counter.
    pub numgens: usize,
    /// `ct count` statements of rules, each with its own list of connections.
    pub connlimits: usize,
    /// Named objects: (table, kind, name) → index into counters, quotas, limits, helpers.
    pub objects: HashMap<(String, ObjKind, String), usize>,
    /// Helper names of `ct helper` objects.
    pub helpers: Vec<String>,
    pub ct_timeouts: Vec<CtTimeoutSpec>,
    pub ct_expects: Vec<CtExpectSpec>,
    /// Contexts of `secmark` objects; object `i` has security id `i + 1`.
    pub secmarks: Vec<String>,
    /// `synproxy` objects.
    pub synproxies: Vec<crate::synproxy::SynproxySpec>,
    pub flowtables: Vec<(String, ast::Flowtable)>,
}

impl Ruleset {
    /// Whether a rule has a `tproxy` statement: this router has no sockets, so such a rule
    /// always stops at it (see [`Op::Tproxy`]'s evaluation); `run` warns about it.
    pub fn has_tproxy(&self) -> bool {
        self.ops().any(|op| matches!(op, Op::Tproxy { .. }))
    }

    /// Every rule's operations, chain by chain.
    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        self.chains
            .iter()
            .flat_map(|c| &c.rules)
            .flat_map(|r| &r.ops)
    }

    /// Sets rules add to or delete from: their contents are known at run time only.
    pub(crate) fn changed_sets(&self) -> std::collections::HashSet<usize> {
        self.ops()
            .filter_map(|op| match op {
                Op::Dynset(d) => Some(d.set),
                _ => None,
            })
            .collect()
    }

    /// Index of a named object (`counter cx` of table `t`).
    pub fn object(&self, table: &str, kind: ObjKind, name: &str) -> Option<usize> {
        self.objects
            .get(&(table.to_string(), kind, name.to_string()))
            .copied()
    }

    pub fn set_index(&self, table: &str, name: &str) -> Option<usize> {
        self.sets
            .iter()
            .position(|s| s.table == table && s.name == name)
    }
}

/// Counters, token buckets, quotas and dynamic set contents: what changes as packets pass.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub counters: Vec<(u64, u64)>,
    /// (tokens, last refill ns)
    pub buckets: Vec<(f64, u64)>,
    pub quota_used: Vec<u64>,
    /// Hits by chain, then rule index: a flat count per rule, since every matched rule of
    /// every packet adds one.
    pub rule_hits: Vec<Vec<u64>>,
    /// One per compiled set, same index.
    pub dynsets: Vec<DynSet>,
    pub numgen: Vec<Option<u32>>,
    /// Connections counted by each rule's `ct count` (handles), pruned of dead ones.
    pub connlimits: Vec<Vec<u64>>,
    /// xorshift state for `meta random` and `numgen random`: seeded, so runs repeat.
    pub rng: u64,
    /// The set-lookup key buffer, kept between packets so that building a key allocates
    /// nothing.
    keybuf: Vec<u128>,
    /// The chains a run jumped from (chain, next rule), kept between runs: a run starts
    /// with it empty and no frame is written until a rule jumps (a stack array on each run
    /// was zeroed whole, 17 frames, for the one or two jumps a run makes).
    jumps: Vec<(usize, usize)>,
}

impl State {
    pub fn new(rs: &Ruleset) -> State {
        let mut counters = vec![(0, 0); rs.counters];
        for (c, init) in counters.iter_mut().zip(&rs.counter_init) {
            *c = *init;
        }
        State {
            counters,
            buckets: rs.limits.iter().map(|l| (l.burst.max(1.0), 0)).collect(),
            quota_used: rs.quotas.iter().map(|q| q.used).collect(),
            rule_hits: rs.chains.iter().map(|c| vec![0; c.rules.len()]).collect(),
            dynsets: vec![DynSet::default(); rs.sets.len()],
            numgen: vec![None; rs.numgens],
            connlimits: vec![vec![]; rs.connlimits],
            rng: 0x9e37_79b9_7f4a_7c15,
            keybuf: Vec::with_capacity(4),
            jumps: Vec::with_capacity(JUMP_STACK),
        }
    }

    fn hit(&mut self, chain: usize, rule: usize) {
        if let Some(h) = self.rule_hits.get_mut(chain).and_then(|c| c.get_mut(rule)) {
            *h += 1;
            return;
        }
        // a state not built from this ruleset (`State::default()`): grow to fit
        if self.rule_hits.len() <= chain {
            self.rule_hits.resize(chain + 1, vec![]);
        }
        if let Some(c) = self.rule_hits.get_mut(chain) {
            if c.len() <= rule {
                c.resize(rule + 1, 0);
            }
            if let Some(h) = c.get_mut(rule) {
                *h += 1;
            }
        }
    }

    fn random(&mut self) -> u32 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 32) as u32
    }

    /// Whether set `set` holds `key` at `now_ns`: loaded elements not deleted, or added ones
    /// not expired.
    pub fn set_lookup(
        &self,
        rs: &Ruleset,
        set: usize,
        key: &[u128],
        now_ns: u64,
    ) -> Option<SetData> {
        let d = self.dynsets.get(set);
        if let Some(x) = rs.sets.get(set)?.lookup(key) {
            if d.is_none_or(|d| d.deleted.is_empty() || !d.deleted.contains(key)) {
                return Some(x.clone());
            }
        }
        let e = d?.live(key, now_ns)?;
        Some(match e.data {
            Some(v) => SetData::Value(v),
            None => SetData::None,
        })
    }

    /// The live elements rules added to set `set`, for listings and tests.
    pub fn dynamic_elements(&self, set: usize, now_ns: u64) -> Vec<(&Vec<u128>, &DynElem)> {
        let mut v: Vec<_> = self
            .dynsets
            .get(set)
            .map(|d| {
                d.elems
                    .iter()
                    .filter(|(_, e)| e.expires.is_none_or(|x| x > now_ns))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}

fn bad(what: impl Into<String>, table: &str, chain: &str) -> CompileError {
    CompileError {
        what: what.into(),
        table: table.into(),
        chain: chain.into(),
    }
}

fn meta_k(name: &str) -> Option<MetaK> {
    Some(match name {
        "length" => MetaK::Length,
        "protocol" => MetaK::Protocol,
        "mark" => MetaK::Mark,
        "iif" => MetaK::Iif,
        "oif" => MetaK::Oif,
        "iifname" => MetaK::IifName,
        "oifname" => MetaK::OifName,
        "iiftype" => MetaK::IifType,
        "oiftype" => MetaK::OifType,
        "iifkind" => MetaK::IifKind,
        "oifkind" => MetaK::OifKind,
        "nfproto" => MetaK::NfProto,
        "l4proto" => MetaK::L4Proto,
        "pkttype" => MetaK::PktType,
        "iifgroup" => MetaK::IifGroup,
        "oifgroup" => MetaK::OifGroup,
        "priority" => MetaK::Priority,
        "nftrace" => MetaK::Nftrace,
        "cpu" => MetaK::Cpu,
        "random" => MetaK::Random,
        "time" => MetaK::Time,
        "day" => MetaK::Day,
        "hour" => MetaK::Hour,
        "secmark" => MetaK::Secmark,
        "ipsec" | "secpath" => MetaK::Ipsec,
        "skuid" => MetaK::Skuid,
        "skgid" => MetaK::Skgid,
        "cgroup" => MetaK::Cgroup,
        "rtclassid" => MetaK::RtClassid,
        "sdif" => MetaK::Sdif,
        "sdifname" => MetaK::SdifName,
        _ => return None,
    })
}

fn ct_k(name: &str) -> Option<CtK> {
    Some(match name {
        "state" => CtK::State,
        "direction" => CtK::Direction,
        "status" => CtK::Status,
        "mark" => CtK::Mark,
        "expiration" => CtK::Expiration,
        "l3proto" => CtK::L3Proto,
        "protocol" => CtK::Protocol,
        "saddr" | "ip saddr" | "ip6 saddr" => CtK::Saddr,
        "daddr" | "ip daddr" | "ip6 daddr" => CtK::Daddr,
        "proto-src" => CtK::ProtoSrc,
        "proto-dst" => CtK::ProtoDst,
        "zone" => CtK::Zone,
        "packets" => CtK::Packets,
        "bytes" => CtK::Bytes,
        "label" => CtK::Label,
        "id" => CtK::Id,
        "avgpkt" => CtK::AvgPkt,
        "helper" => CtK::Helper,
        "secmark" => CtK::Secmark,
        _ => return None,
    })
}

/// Interface names compare as 16 bytes, NUL padded, read big endian.
pub fn ifname_value(s: &str) -> u128 {
    let mut b = [0u8; 16];
    for (i, c) in s.bytes().take(16).enumerate() {
        b[i] = c;
    }
    u128::from_be_bytes(b)
}

/// The constant as the number loads are compared with.
fn const_value(c: &Const) -> Option<(u128, Option<u128>)> {
    match &c.val {
        Val::Int(v) => Some((*v, None)),
        Val::Str(s) => {
            // `eth*` matches by prefix, like the kernel's interface wildcard compare
            if let Some(prefix) = s.strip_suffix('*').filter(|p| !p.ends_with('\\')) {
                let n = prefix.len().min(16);
                let mask = if n == 0 {
                    0
                } else {
                    u128::MAX << (128 - 8 * n as u32)
                };
                Some((ifname_value(prefix), Some(mask)))
            } else {
                Some((ifname_value(&s.replace("\\*", "*")), None))
            }
        }
    }
}

struct Compiler<'a> {
    table: &'a ast::Table,
    chain: &'a str,
    chain_ids: &'a HashMap<String, usize>,
    set_ids: &'a HashMap<String, usize>,
    out: &'a mut Ruleset,
}

impl Compiler<'_> {
    fn err(&self, what: impl Into<String>) -> CompileError {
        bad(what, &self.table.name, self.chain)
    }

    /// An option, extension header or chunk `name` of the kind `what` (`tcp option`,
    /// `exthdr`...): its type by `code`, and its `field`'s offset and width by `find`, or
    /// with no field the presence test: `(type, offset, bits, present)`.
    fn opt_load(
        &self,
        what: &str,
        name: &str,
        field: Option<&str>,
        code: fn(&str) -> Option<u8>,
        find: fn(&str, &str) -> Option<proto::Field>,
    ) -> Result<(u8, u32, u32, bool), CompileError> {
        let what = format!("{what} {name}");
        let ty = code(name).ok_or_else(|| self.err(what.as_str()))?;
        let (offset, bits, present) = match field {
            None => (0, 8, true),
            Some(fl) => find(name, fl)
                .map(|f| (f.offset, f.bits, false))
                .ok_or_else(|| self.err(format!("{what} {fl}")))?,
        };
        Ok((ty, offset, bits, present))
    }

    fn nfproto_of(&self, p: &str) -> Option<u8> {
        match p {
            "ip" | "icmp" | "igmp" => Some(2),
            "ip6" | "icmpv6" => Some(10),
            _ => None,
        }
    }

    fn load(&mut self, e: &Expr) -> Result<Vec<Load>, CompileError> {
        match &e.kind {
            ExprKind::Concat(items) => {
                let mut v = vec![];
                for i in items {
                    v.extend(self.load(i)?);
                }
                Ok(v)
            }
            _ => Ok(vec![self.load1(e)?]),
        }
    }

    fn load1(&mut self, e: &Expr) -> Result<Load, CompileError> {
        match &e.kind {
            ExprKind::Payload { proto: p, field } if inner_tunnel(p).is_some() => {
                self.inner_load(p, field)
            }
            ExprKind::Payload { proto: p, field } => {
                let f = proto::payload_field(p, field)
                    .ok_or_else(|| self.err(format!("payload {p} {field}")))?;
                let pr = proto::protocol(p).ok_or_else(|| self.err(format!("protocol {p}")))?;
                if p == "vlan" {
                    return Ok(Load::Vlan {
                        offset: f.offset,
                        bits: f.bits,
                    });
                }
                let (l3, l4) = match pr.layer {
                    proto::Layer::Network if p == "arp" => (Some(NFPROTO_ARP), None),
                    proto::Layer::Network => (self.nfproto_of(p), None),
                    proto::Layer::Transport => (self.nfproto_of(p), pr.number.map(|n| n as u8)),
                    proto::Layer::Link => (None, None),
                    proto::Layer::Inner => {
                        return Err(self.err(format!("inner header {p} {field}")))
                    }
                };
                Ok(Load::Payload {
                    base: f.base,
                    offset: f.offset,
                    bits: f.bits,
                    l3,
                    l4,
                })
            }
            ExprKind::RawPayload { base, offset, len } => {
                let b = match base.as_str() {
                    "ll" => Base::Link,
                    "nh" => Base::Network,
                    "th" => Base::Transport,
                    _ => return Err(self.err(format!("raw payload @{base}"))),
                };
                Ok(Load::Payload {
                    base: b,
                    offset: *offset,
                    bits: *len,
                    l3: None,
                    l4: None,
                })
            }
            ExprKind::Meta(k) => meta_k(k)
                .map(Load::Meta)
                .ok_or_else(|| self.err(format!("meta {k}"))),
            ExprKind::Rt { key, .. } => match key.as_str() {
                "mtu" => Ok(Load::RtTcpMss),
                "nexthop" => Ok(Load::RtNexthop),
                "classid" => Ok(Load::RtClassid),
                _ => Err(self.err(format!("rt {key}"))),
            },
            ExprKind::Ct { key, dir, .. } => {
                let k = ct_k(key).ok_or_else(|| self.err(format!("ct {key}")))?;
                Ok(Load::Ct {
                    key: k,
                    reply: dir.as_ref().map(|d| d == "reply"),
                })
            }
            ExprKind::Exthdr { hdr, field } => {
                let field =
                    Some(field.as_str()).filter(|f| !matches!(*f, "exists" | "missing" | ""));
                let (nexthdr, offset, bits, present) = self.opt_load(
                    "exthdr",
                    hdr,
                    field,
                    proto::exthdr_type,
                    proto::exthdr_field,
                )?;
                Ok(Load::Exthdr {
                    nexthdr,
                    offset,
                    bits,
                    present,
                })
            }
            ExprKind::TcpOpt { opt, field } => {
                let (kind, offset, bits, present) = self.opt_load(
                    "tcp option",
                    opt,
                    field.as_deref(),
                    proto::tcpopt_kind,
                    proto::tcpopt_field,
                )?;
                Ok(Load::TcpOpt {
                    kind,
                    offset,
                    bits,
                    present,
                })
            }
            ExprKind::IpOpt { opt, field } => {
                let (ty, offset, bits, present) = self.opt_load(
                    "ip option",
                    opt,
                    field.as_deref(),
                    proto::ipopt_type,
                    proto::ipopt_field,
                )?;
                Ok(Load::IpOpt {
                    ty,
                    offset,
                    bits,
                    present,
                })
            }
            ExprKind::Fib { flags, result } => {
                let has = |f: &str| flags.iter().any(|x| x == f);
                for f in flags {
                    if !matches!(f.as_str(), "saddr" | "daddr" | "iif" | "oif" | "mark") {
                        return Err(self.err(format!("fib flag {f}")));
                    }
                }
                let result = match result.as_str() {
                    "oif" => FibResult::Oif,
                    "oifname" => FibResult::OifName,
                    "type" => FibResult::Type,
                    r => return Err(self.err(format!("fib result {r}"))),
                };
                // `mark` selects a policy routing table; there is one table here
                Ok(Load::Fib(Box::new(FibQuery {
                    daddr: has("daddr"),
                    iif: has("iif"),
                    oif: has("oif"),
                    result,
                })))
            }
            ExprKind::Numgen {
                random,
                modulus,
                offset,
            } => {
                if *modulus == 0 {
                    return Err(self.err("numgen mod 0"));
                }
                let slot = self.out.numgens;
                if !random {
                    self.out.numgens += 1;
                }
                Ok(Load::Numgen {
                    random: *random,
                    modulus: *modulus,
                    offset: *offset,
                    slot,
                })
            }
            ExprKind::Hash {
                expr,
                modulus,
                seed,
                offset,
                sym,
            } => {
                if *modulus == 0 {
                    return Err(self.err("hash mod 0"));
                }
                if *sym {
                    return Ok(Load::Symhash {
                        modulus: *modulus,
                        offset: *offset,
                    });
                }
                let Some(expr) = expr else {
                    return Err(self.err("jhash without a key"));
                };
                let parts: Vec<&Expr> = match &expr.kind {
                    ExprKind::Concat(items) => items.iter().collect(),
                    _ => vec![expr.as_ref()],
                };
                let mut keys = vec![];
                for p in parts {
                    let l = self.load1(p)?;
                    // registers are 4-byte slots; payload and addresses sit in network order
                    let bytes = p.bits.div_ceil(8).max(1);
                    let be = !matches!(
                        l,
                        Load::Meta(_)
                            | Load::Ct {
                                key: CtK::Mark
                                    | CtK::State
                                    | CtK::Status
                                    | CtK::Direction
                                    | CtK::Zone
                                    | CtK::Expiration,
                                ..
                            }
                    );
                    keys.push((l, bytes, be));
                }
                // an unseeded jhash gets a random seed in the kernel; a fixed one keeps runs repeatable
                Ok(Load::Jhash {
                    keys,
                    modulus: *modulus,
                    seed: seed.unwrap_or(0),
                    offset: *offset,
                })
            }
            ExprKind::Binop(op, l, r) => {
                let inner = Box::new(self.load1(l)?);
                let c = match &r.kind {
                    ExprKind::Const(c) => const_value(c)
                        .map(|x| x.0)
                        .ok_or_else(|| self.err("binop with a string"))?,
                    _ => return Err(self.err("binop with a non-constant operand")),
                };
                Ok(match op {
                    BinOp::And => Load::Bitwise {
                        inner,
                        and: c,
                        xor: 0,
                    },
                    BinOp::Or => Load::Bitwise {
                        inner,
                        and: !c,
                        xor: c,
                    },
                    BinOp::Xor => Load::Bitwise {
                        inner,
                        and: u128::MAX,
                        xor: c,
                    },
                    BinOp::Shl => Load::Shift {
                        inner,
                        left: true,
                        n: c as u32,
                    },
                    BinOp::Shr => Load::Shift {
                        inner,
                        left: false,
                        n: c as u32,
                    },
                })
            }
            ExprKind::SctpChunk { chunk, field } => {
                let (ty, offset, bits, present) = self.opt_load(
                    "sctp chunk",
                    chunk,
                    field.as_deref(),
                    proto::sctp_chunk_type,
                    proto::sctp_chunk_field,
                )?;
                Ok(Load::SctpChunk {
                    ty,
                    offset,
                    bits,
                    present,
                })
            }
            ExprKind::DccpOpt(n) => {
                let n = u8::try_from(*n).map_err(|_| self.err(format!("dccp option {n}")))?;
                Ok(Load::DccpOpt(n))
            }
            ExprKind::Socket { .. } => Ok(Load::Socket),
            ExprKind::Ipsec { dir, .. } => Ok(Load::Ipsec { out: dir == "out" }),
            ExprKind::Osf { .. } => Ok(Load::Osf),
            other => Err(self.err(format!("expression {}", kind_name(other)))),
        }
    }

    /// A field inside a tunnel: `vxlan vni` (the tunnel header), `vxlan ip saddr`, `gre tcp
    /// dport`. The guards are what nft adds before it: the outer protocol (UDP for VXLAN and
    /// Geneve, whose port the rule matched first; GRE), and inside, the network or transport
    /// protocol the field belongs to.
    fn inner_load(&mut self, p: &str, field: &str) -> Result<Load, CompileError> {
        use crate::extmatch::InnerBase;
        let (tunnel, inner) = match proto::split_inner(p) {
            Some((t, i)) => (t, Some(i)),
            None => (p, None),
        };
        let t = crate::extmatch::Tunnel::parse(tunnel)
            .ok_or_else(|| self.err(format!("inner header {p} {field}")))?;
        let Some(inner) = inner else {
            // the tunnel's own header
            let f = proto::payload_field(p, field)
                .ok_or_else(|| self.err(format!("payload {p} {field}")))?;
            return Ok(Load::Inner {
                tunnel: t,
                base: InnerBase::Tunnel,
                offset: f.offset,
                bits: f.bits,
                l3: None,
                l4: None,
            });
        };
        let f = proto::payload_field(inner, field)
            .ok_or_else(|| self.err(format!("payload {p} {field}")))?;
        let pr = proto::protocol(inner).ok_or_else(|| self.err(format!("protocol {p}")))?;
        let mut offset = f.offset;
        let (l3, l4) = match inner {
            "vlan" => {
                offset += proto::header_bits("ether").unwrap_or(112);
                (Some(0x8100), None)
            }
            "arp" => (Some(0x0806), None),
            "ip" | "icmp" | "igmp" => (Some(0x0800), pr.number.map(|n| n as u8)),
            "ip6" | "icmpv6" => (Some(0x86dd), pr.number.map(|n| n as u8)),
            _ => (None, pr.number.map(|n| n as u8)),
        };
        let (l3, l4) = match pr.layer {
            proto::Layer::Network => (l3, None),
            _ => (l3.filter(|_| pr.layer == proto::Layer::Link), l4),
        };
        // ICMP rides on a network protocol of its own
        let l3 = match inner {
            "icmp" => Some(0x0800),
            "icmpv6" => Some(0x86dd),
            _ => l3,
        };
        let base = match f.base {
            Base::Link => InnerBase::Link,
            Base::Network => InnerBase::Network,
            Base::Transport => InnerBase::Transport,
            Base::Inner => InnerBase::Tunnel,
        };
        Ok(Load::Inner {
            tunnel: t,
            base,
            offset,
            bits: f.bits,
            l3,
            l4,
        })
    }

    fn value(&mut self, e: &Expr) -> Result<Value, CompileError> {
        match &e.kind {
            ExprKind::Const(c) => Ok(Value::Const(
                const_value(c).ok_or_else(|| self.err("string value"))?.0,
            )),
            ExprKind::Map(k, m) => {
                let keys = self.load(k)?;
                let map = self.set_ref(m, true)?;
                Ok(Value::Map { keys, map })
            }
            _ => Ok(Value::Load(self.load1(e)?)),
        }
    }

    /// A named set reference, or an anonymous set compiled on the spot.
    fn set_ref(&mut self, e: &Expr, is_map: bool) -> Result<usize, CompileError> {
        match &e.kind {
            ExprKind::SetRef(n) => self
                .set_ids
                .get(n)
                .copied()
                .ok_or_else(|| self.err(format!("set @{n}"))),
            ExprKind::Set(elems) => {
                let mut s = CSet {
                    name: format!("__anon{}", self.out.sets.len()),
                    ..Default::default()
                };
                for el in elems {
                    add_element(&mut s, el, is_map, self.chain_ids).map_err(|w| self.err(w))?;
                }
                self.out.sets.push(s);
                Ok(self.out.sets.len() - 1)
            }
            _ => Err(self.err("set expression")),
        }
    }

    fn test(&mut self, left: &Expr, op: RelOp, right: &Expr) -> Result<Op, CompileError> {
        let loads = self.load(left)?;
        // `!=` and the flag test `ct state ! new` are the positive test, negated
        let negate = matches!(op, RelOp::Ne | RelOp::Neg);
        let cmp_op = if negate { RelOp::Eq } else { op };
        let test = match &right.kind {
            ExprKind::Const(c) => {
                let (v, mask) = const_value(c).ok_or_else(|| self.err("constant"))?;
                if let Some(m) = mask {
                    Test::Masked {
                        mask: m,
                        want: v & m,
                    }
                } else if matches!(op, RelOp::Implicit | RelOp::Neg) && c.dt.is_bitmask() {
                    Test::AnyBit(v)
                } else {
                    Test::Cmp(
                        if cmp_op == RelOp::Implicit {
                            RelOp::Eq
                        } else {
                            cmp_op
                        },
                        v,
                    )
                }
            }
            ExprKind::Range(a, b) => match (&a.kind, &b.kind) {
                (ExprKind::Const(x), ExprKind::Const(y)) => Test::Range(
                    const_value(x).map(|v| v.0).unwrap_or(0),
                    const_value(y).map(|v| v.0).unwrap_or(0),
                ),
                _ => return Err(self.err("non-constant range")),
            },
            ExprKind::Prefix(a, len) => {
                let ExprKind::Const(c) = &a.kind else {
                    return Err(self.err("non-constant prefix"));
                };
                let bits = left.bits.clamp(1, 128);
                let mask = prefix_mask(bits, *len);
                Test::Masked {
                    mask,
                    want: const_value(c).map(|v| v.0).unwrap_or(0) & mask,
                }
            }
            ExprKind::Set(_) | ExprKind::SetRef(_) => Test::InSet(self.set_ref(right, false)?),
            other => return Err(self.err(format!("comparison with {}", kind_name(other)))),
        };
        Ok(Op::Match(Match {
            loads,
            test,
            negate,
        }))
    }

    fn verdict(&self, v: &ast::Verdict) -> Result<Verdict, CompileError> {
        Ok(match v {
            ast::Verdict::Accept => Verdict::Accept,
            ast::Verdict::Drop => Verdict::Drop,
            ast::Verdict::Continue => Verdict::Continue,
            ast::Verdict::Return => Verdict::Return,
            ast::Verdict::Queue => Verdict::Queue,
            ast::Verdict::Jump(c) => Verdict::Jump(
                *self
                    .chain_ids
                    .get(c)
                    .ok_or_else(|| self.err(format!("jump to unknown chain {c}")))?,
            ),
            ast::Verdict::Goto(c) => Verdict::Goto(
                *self
                    .chain_ids
                    .get(c)
                    .ok_or_else(|| self.err(format!("goto to unknown chain {c}")))?,
            ),
        })
    }

    fn stmt(&mut self, st: &ast::Stmt, ops: &mut Vec<Op>) -> Result<(), CompileError> {
        match &st.kind {
            StmtKind::Match { left, op, right } => ops.push(self.test(left, *op, right)?),
            StmtKind::Verdict(v) => ops.push(Op::Verdict(self.verdict(v)?)),
            StmtKind::Vmap { key, map } => {
                let keys = self.load(key)?;
                let map = self.set_ref(map, true)?;
                ops.push(Op::Vmap { keys, map });
            }
            StmtKind::Counter { packets, bytes } => {
                ops.push(Op::Counter(self.out.new_counter(*packets, *bytes)))
            }
            StmtKind::Limit(l) => {
                self.out.limits.push(limit_spec(l));
                ops.push(Op::Limit(self.out.limits.len() - 1));
            }
            StmtKind::Quota { over, bytes, used } => {
                self.out.quotas.push(QuotaSpec {
                    bytes: *bytes,
                    over: *over,
                    used: *used,
                });
                ops.push(Op::Quota(self.out.quotas.len() - 1));
            }
            StmtKind::Log(l) => ops.push(Op::Log(Box::new(log_spec(l)))),
            StmtKind::Reject(r) => ops.push(Op::Reject(match r {
                ast::RejectKind::Default => Reject::IcmpPortUnreachable,
                ast::RejectKind::TcpReset => Reject::TcpReset,
                ast::RejectKind::Icmp { family, code } => {
                    let c = match &code.kind {
                        ExprKind::Const(c) => const_value(c).map(|v| v.0 as u8).unwrap_or(3),
                        _ => 3,
                    };
                    match family.as_str() {
                        "icmp" => Reject::Icmp { v6: false, code: c },
                        "icmpv6" => Reject::Icmp { v6: true, code: c },
                        _ => Reject::Icmpx(c),
                    }
                }
            })),
            StmtKind::Nat(n) => {
                let kind = match n.kind {
                    ast::NatKind::Snat => NatKind::Snat,
                    ast::NatKind::Dnat => NatKind::Dnat,
                    ast::NatKind::Masquerade => NatKind::Masquerade,
                    ast::NatKind::Redirect => NatKind::Redirect,
                };
                let addr = match &n.addr {
                    None => None,
                    Some(a) => Some(match &a.kind {
                        ExprKind::Range(lo, hi) => (
                            self.value(lo)?,
                            match self.value(hi)? {
                                Value::Const(h) => Some(h),
                                _ => return Err(self.err("NAT range with a computed end")),
                            },
                        ),
                        ExprKind::Prefix(base, len) => {
                            let Value::Const(b) = self.value(base)? else {
                                return Err(self.err("NAT prefix"));
                            };
                            let bits = if a.dt == Dt::Ipv6Addr { 128 } else { 32 };
                            let m = prefix_mask(bits, *len);
                            let hostmask = !m
                                & if bits == 128 {
                                    u128::MAX
                                } else {
                                    (1u128 << bits) - 1
                                };
                            (Value::Const(b & m), Some((b & m) | hostmask))
                        }
                        _ => (self.value(a)?, None),
                    }),
                };
                let port = match &n.port {
                    None => None,
                    Some(p) => Some(match &p.kind {
                        ExprKind::Range(lo, hi) => (
                            self.value(lo)?,
                            match self.value(hi)? {
                                Value::Const(h) => Some(h as u16),
                                _ => return Err(self.err("NAT port range with a computed end")),
                            },
                        ),
                        _ => (self.value(p)?, None),
                    }),
                };
                let ipv6 = n.family.as_deref() == Some("ip6") || self.table.family == Family::Ip6;
                let only_nfproto = match (self.table.family, n.family.as_deref()) {
                    (Family::Inet, Some("ip")) => 2,
                    (Family::Inet, Some("ip6")) => 10,
                    _ => 0,
                };
                let has = |f: &str| n.flags.iter().any(|x| x == f);
                ops.push(Op::Nat(Box::new(NatSpec {
                    kind,
                    addr,
                    ipv6,
                    only_nfproto,
                    port,
                    persistent: has("persistent"),
                    random: has("random"),
                    fully_random: has("fully-random"),
                })));
            }
            StmtKind::Notrack => ops.push(Op::Notrack),
            // No user-space queue listens here: the kernel drops such packets, unless `bypass`
            // lets them through.
            StmtKind::Queue { flags, .. } => {
                ops.push(Op::Verdict(if flags.iter().any(|f| f == "bypass") {
                    Verdict::Accept
                } else {
                    Verdict::Queue
                }))
            }
            StmtKind::FlowAdd(ft) => ops.push(Op::FlowAdd(ft.clone())),
            StmtKind::Set { key, value } => {
                let v = self.value(value)?;
                match &key.kind {
                    ExprKind::Meta(k) => match meta_k(k) {
                        Some(
                            m @ (MetaK::Mark
                            | MetaK::Priority
                            | MetaK::PktType
                            | MetaK::Nftrace
                            | MetaK::Secmark),
                        ) => ops.push(Op::SetMeta(m, v)),
                        _ => return Err(self.err(format!("meta {k} set"))),
                    },
                    ExprKind::Ct { key: k, .. } => match ct_k(k) {
                        Some(c @ (CtK::Mark | CtK::Zone | CtK::Label | CtK::Secmark)) => {
                            ops.push(Op::SetCt(c, v))
                        }
                        _ => return Err(self.err(format!("ct {k} set"))),
                    },
                    ExprKind::TcpOpt {
                        opt,
                        field: Some(f),
                    } if opt == "maxseg" && f == "size" => ops.push(Op::ClampMss(v)),
                    ExprKind::Payload { .. } | ExprKind::RawPayload { .. } => {
                        match self.load1(key)? {
                            Load::Payload {
                                base,
                                offset,
                                bits,
                                l3,
                                l4,
                            } => ops.push(Op::SetPayload {
                                base,
                                offset,
                                bits,
                                l3,
                                l4,
                                value: v,
                            }),
                            _ => {
                                let what = match &key.kind {
                                    ExprKind::Payload { proto, field } => {
                                        format!("{proto} {field} set")
                                    }
                                    _ => "raw payload set".into(),
                                };
                                return Err(self.err(what));
                            }
                        }
                    }
                    other => return Err(self.err(format!("{} set", kind_name(other)))),
                }
            }
            StmtKind::Dynset {
                op,
                set,
                key,
                stmts,
                data,
            } => {
                let (key, timeout_ms) = match &key.kind {
                    ExprKind::Elem(inner, opts) => (inner.as_ref(), opts.timeout),
                    _ => (key, None),
                };
                let keys = self.load(key)?;
                let id = *self
                    .set_ids
                    .get(set)
                    .ok_or_else(|| self.err(format!("set @{set}")))?;
                let data = match data {
                    Some(d) => Some(self.value(d)?),
                    None => None,
                };
                let mut es = vec![];
                for st in stmts {
                    es.push(match &st.kind {
                        StmtKind::Counter { .. } => ElemStmt::Counter,
                        StmtKind::Limit(l) => ElemStmt::Limit(limit_spec(l)),
                        StmtKind::Quota { over, bytes, used } => ElemStmt::Quota(QuotaSpec {
                            bytes: *bytes,
                            over: *over,
                            used: *used,
                        }),
                        StmtKind::Connlimit { over, count } => ElemStmt::Connlimit {
                            over: *over,
                            count: *count,
                        },
                        other => {
                            return Err(self.err(format!("{} in a set element", stmt_name(other))))
                        }
                    });
                }
                let op = match op {
                    ast::SetOp::Add => DynOp::Add,
                    ast::SetOp::Update => DynOp::Update,
                    ast::SetOp::Delete => DynOp::Delete,
                };
                ops.push(Op::Dynset(Box::new(DynsetOp {
                    set: id,
                    op,
                    keys,
                    timeout_ms,
                    data,
                    stmts: es,
                })));
            }
            StmtKind::ObjRef { kind, name } => {
                let k = match kind.as_str() {
                    "counter" => ObjKind::Counter,
                    "quota" => ObjKind::Quota,
                    "limit" => ObjKind::Limit,
                    "ct helper" => ObjKind::CtHelper,
                    "ct timeout" => ObjKind::CtTimeout,
                    "ct expectation" => ObjKind::CtExpect,
                    "secmark" => ObjKind::Secmark,
                    "synproxy" => ObjKind::Synproxy,
                    other => return Err(self.err(format!("{other} objects"))),
                };
                match &name.kind {
                    ExprKind::Const(Const {
                        val: Val::Str(n), ..
                    })
                    | ExprKind::Quoted(n)
                    | ExprKind::Symbol(n) => {
                        let i = self
                            .out
                            .object(&self.table.name, k, n)
                            .ok_or_else(|| self.err(format!("{kind} object {n} (not defined)")))?;
                        ops.push(match k {
                            ObjKind::Counter => Op::Counter(i),
                            ObjKind::Quota => Op::Quota(i),
                            ObjKind::Limit => Op::Limit(i),
                            ObjKind::CtHelper => Op::SetCtHelper(self.out.helpers[i].clone()),
                            ObjKind::CtTimeout => Op::SetCtTimeout(i),
                            ObjKind::CtExpect => Op::CtExpect(i),
                            ObjKind::Secmark => Op::SetSecmark(i as u32 + 1),
                            ObjKind::Synproxy => Op::Synproxy(self.out.synproxies[i]),
                        });
                    }
                    ExprKind::Map(..)
                        if matches!(
                            k,
                            ObjKind::CtTimeout | ObjKind::CtExpect | ObjKind::Secmark
                        ) =>
                    {
                        return Err(self.err(format!("{kind} map")))
                    }
                    ExprKind::Map(key, m) => {
                        let keys = self.load(key)?;
                        let map = match &m.kind {
                            ExprKind::SetRef(_) => self.set_ref(m, true)?,
                            ExprKind::Set(_) => {
                                let id = self.set_ref(m, true)?;
                                let t = self.table.name.clone();
                                self.out
                                    .resolve_objmap(id, &t, k)
                                    .map_err(|w| self.err(w))?;
                                id
                            }
                            _ => return Err(self.err(format!("{kind} map"))),
                        };
                        ops.push(Op::ObjMap { kind: k, keys, map });
                    }
                    _ => return Err(self.err(format!("{kind} reference"))),
                }
            }
            StmtKind::Dup { addr, dev } => {
                let v6 = addr.as_ref().is_some_and(|a| a.dt == Dt::Ipv6Addr);
                let addr = match addr {
                    Some(a) => Some(self.value(a)?),
                    None => None,
                };
                let dev = match dev {
                    Some(d) => Some(self.value(d)?),
                    None => None,
                };
                // netdev `dup to IF` names a device, not an address (`nft_dup_netdev`)
                let (addr, dev) = if self.table.family == Family::Netdev {
                    (None, addr.or(dev))
                } else {
                    (addr, dev)
                };
                ops.push(Op::Dup { addr, dev, v6 });
            }
            StmtKind::Fwd { family, addr, dev } => {
                let v6 = family.as_deref() == Some("ip6");
                let addr = match addr {
                    Some(a) => Some(self.value(a)?),
                    None => None,
                };
                ops.push(Op::Fwd {
                    addr,
                    dev: self.value(dev)?,
                    v6,
                });
            }
            // `last` only feeds listings; the dataplane has nothing to do for it
            StmtKind::Last { .. } => {}
            StmtKind::Connlimit { over, count } => {
                ops.push(Op::Connlimit {
                    slot: self.out.connlimits,
                    over: *over,
                    count: *count,
                });
                self.out.connlimits += 1;
            }
            StmtKind::Tproxy { family, addr, port } => {
                let addr = match addr {
                    Some(a) => match self.value(a)? {
                        Value::Const(c) => Some(c),
                        _ => return Err(self.err("tproxy to a computed address")),
                    },
                    None => None,
                };
                let port = match port {
                    Some(p) => match self.value(p)? {
                        Value::Const(c) => Some(c as u16),
                        _ => return Err(self.err("tproxy to a computed port")),
                    },
                    None => None,
                };
                let v6 = match (family.as_deref(), self.table.family) {
                    (Some("ip"), _) | (None, Family::Ip) => Some(false),
                    (Some("ip6"), _) | (None, Family::Ip6) => Some(true),
                    _ => None,
                };
                ops.push(Op::Tproxy { addr, port, v6 });
            }
            StmtKind::Synproxy { mss, wscale, flags } => ops.push(Op::Synproxy(
                crate::synproxy::SynproxySpec::new(*mss, *wscale, flags),
            )),
            other => return Err(self.err(format!("statement {}", stmt_name(other)))),
        }
        Ok(())
    }
}

/// The transport protocol number of a `ct timeout` or `ct expectation` object.
fn l4proto_number(p: &str) -> Option<u8> {
    Some(match p {
        "tcp" => 6,
        "udp" => 17,
        "udplite" => 136,
        "icmp" => 1,
        "icmpv6" => 58,
        "sctp" => 132,
        "dccp" => 33,
        "gre" => 47,
        other => other.parse().ok()?,
    })
}

fn limit_spec(l: &ast::LimitStmt) -> LimitSpec {
    let per = match l.unit.as_str() {
        "second" => 1.0,
        "minute" => 60.0,
        "hour" => 3600.0,
        "day" => 86400.0,
        _ => 604800.0,
    };
    let rate = l.rate as f64 / per;
    let burst = l.burst.unwrap_or(if l.bytes { 0 } else { 5 }) as f64;
    LimitSpec {
        rate_per_s: rate,
        burst: if l.bytes {
            burst.max(l.rate as f64)
        } else {
            burst.max(1.0)
        },
        bytes: l.bytes,
        over: l.over,
    }
}

fn log_spec(l: &ast::LogStmt) -> LogSpec {
    let prefix = l.prefix.as_ref().map(|p| match &p.kind {
        ExprKind::Quoted(s) | ExprKind::Symbol(s) => s.clone(),
        ExprKind::Const(Const {
            val: Val::Str(s), ..
        }) => s.clone(),
        _ => String::new(),
    });
    let level = match l.level.as_deref() {
        Some("emerg") => 0,
        Some("alert") => 1,
        Some("crit") => 2,
        Some("err") => 3,
        Some("notice") => 5,
        Some("info") => 6,
        Some("debug") => 7,
        // audit logs go to the audit subsystem; keep them distinguishable
        Some("audit") => 8,
        _ => 4,
    };
    let has = |f: &str| l.flags.iter().any(|x| x == f || x == "all");
    LogSpec {
        prefix,
        level,
        group: l.group,
        snaplen: l.snaplen,
        queue_threshold: l.queue_threshold,
        tcp_sequence: has("tcp sequence"),
        tcp_options: has("tcp options"),
        ip_options: has("ip options"),
        skuid: has("skuid"),
        ether: has("ether"),
    }
}

impl Ruleset {
    fn new_counter(&mut self, packets: u64, bytes: u64) -> usize {
        self.counter_init.push((packets, bytes));
        self.counters += 1;
        self.counters - 1
    }

    /// Turns the object names an object map's values hold into object indexes.
    fn resolve_objmap(&mut self, set: usize, table: &str, kind: ObjKind) -> Result<(), String> {
        let names: HashMap<u128, usize> = self
            .objects
            .iter()
            .filter(|((t, k, _), _)| t == table && *k == kind)
            .map(|((_, _, n), i)| (ifname_value(n), *i))
            .collect();
        let s = &mut self.sets[set];
        let fix = |d: &mut SetData| -> Result<(), String> {
            if let SetData::Value(v) = d {
                let s = String::from_utf8_lossy(&v.to_be_bytes())
                    .trim_end_matches('\0')
                    .to_string();
                *v = *names
                    .get(v)
                    .ok_or(format!("object {s} in map {} (not defined)", "@map"))?
                    as u128;
            }
            Ok(())
        };
        for d in s.exact.values_mut() {
            fix(d)?;
        }
        for (_, d) in s.ranges.iter_mut() {
            fix(d)?;
        }
        Ok(())
    }
}

fn prefix_mask(bits: u32, len: u32) -> u128 {
    let bits = bits.clamp(1, 128);
    let len = len.min(bits);
    let full = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    if len == 0 {
        0
    } else {
        full & !(full >> len)
    }
}

/// The tunnel of an inner-header field (`vxlan ip saddr`, `vxlan vni`), None for any other
/// payload (`gre flags` is the outer GRE header).
fn inner_tunnel(p: &str) -> Option<&str> {
    match proto::split_inner(p) {
        Some((t, _)) => Some(t),
        None if matches!(p, "vxlan" | "geneve") => Some(p),
        None => None,
    }
}

fn kind_name(k: &ExprKind) -> &'static str {
    match k {
        ExprKind::Fib { .. } => "fib",
        ExprKind::Rt { .. } => "rt",
        ExprKind::Numgen { .. } => "numgen",
        ExprKind::Hash { .. } => "hash",
        ExprKind::Socket { .. } => "socket",
        ExprKind::Osf { .. } => "osf",
        ExprKind::Ipsec { .. } => "ipsec",
        ExprKind::Exthdr { .. } => "exthdr",
        ExprKind::TcpOpt { .. } => "tcp option",
        ExprKind::IpOpt { .. } => "ip option",
        ExprKind::SctpChunk { .. } => "sctp chunk",
        ExprKind::Map(..) => "map",
        _ => "this expression",
    }
}

fn stmt_name(k: &StmtKind) -> &'static str {
    match k {
        StmtKind::Queue { .. } => "queue",
        StmtKind::Dup { .. } => "dup",
        StmtKind::Fwd { .. } => "fwd",
        StmtKind::Tproxy { .. } => "tproxy",
        StmtKind::Synproxy { .. } => "synproxy",
        StmtKind::ObjRef { .. } => "named object reference",
        StmtKind::Dynset { .. } => "dynamic set update with statements",
        _ => "this statement",
    }
}

fn elem_const(e: &Expr) -> Option<(u128, u128)> {
    match &e.kind {
        ExprKind::Const(c) => const_value(c).map(|(v, m)| match m {
            Some(m) => (v & m, v | !m),
            None => (v, v),
        }),
        ExprKind::Range(a, b) => match (&a.kind, &b.kind) {
            (ExprKind::Const(x), ExprKind::Const(y)) => {
                Some((const_value(x)?.0, const_value(y)?.0))
            }
            _ => None,
        },
        ExprKind::Prefix(a, len) => {
            let ExprKind::Const(c) = &a.kind else {
                return None;
            };
            let bits = if a.bits == 0 { c.bits } else { a.bits };
            let m = prefix_mask(bits, *len);
            let full = if bits >= 128 {
                u128::MAX
            } else {
                (1u128 << bits) - 1
            };
            let v = const_value(c)?.0 & m;
            Some((v, v | (!m & full)))
        }
        ExprKind::Elem(inner, _) => elem_const(inner),
        _ => None,
    }
}

fn add_element(
    s: &mut CSet,
    el: &Expr,
    is_map: bool,
    chains: &HashMap<String, usize>,
) -> Result<(), String> {
    let (key, data) = match &el.kind {
        ExprKind::Mapping(k, v) => {
            let d = match &v.kind {
                ExprKind::Verdict(vd) => SetData::Verdict(match vd {
                    ast::Verdict::Accept => Verdict::Accept,
                    ast::Verdict::Drop => Verdict::Drop,
                    ast::Verdict::Continue => Verdict::Continue,
                    ast::Verdict::Return => Verdict::Return,
                    ast::Verdict::Queue => Verdict::Queue,
                    ast::Verdict::Jump(c) => {
                        Verdict::Jump(*chains.get(c).ok_or(format!("jump to unknown chain {c}"))?)
                    }
                    ast::Verdict::Goto(c) => {
                        Verdict::Goto(*chains.get(c).ok_or(format!("goto to unknown chain {c}"))?)
                    }
                }),
                _ => SetData::Value(elem_const(v).ok_or("map value")?.0),
            };
            (k.as_ref(), d)
        }
        _ if is_map => return Err("map element without a value".into()),
        _ => (el, SetData::None),
    };
    let key = match &key.kind {
        ExprKind::Elem(inner, _) => inner.as_ref(),
        _ => key,
    };
    let parts: Vec<&Expr> = match &key.kind {
        ExprKind::Concat(items) => items.iter().collect(),
        _ => vec![key],
    };
    let mut ranges = vec![];
    for p in parts {
        ranges.push(elem_const(p).ok_or("set element")?);
    }
    if ranges.iter().all(|(lo, hi)| lo == hi) {
        s.exact.insert(ranges.iter().map(|r| r.0).collect(), data);
    } else {
        s.ranges.push((ranges, data));
    }
    Ok(())
}

/// Compiles every table of an evaluated ruleset.
pub fn compile(rs: &ast::Ruleset) -> Result<Ruleset, CompileError> {
    let mut out = Ruleset::default();
    for t in &rs.tables {
        let mut chain_ids = HashMap::default();
        let base_idx = out.chains.len();
        for (i, c) in t.chains.iter().enumerate() {
            chain_ids.insert(c.name.clone(), base_idx + i);
            out.chains.push(CChain {
                table: t.name.clone(),
                family: t.family,
                name: c.name.clone(),
                rules: vec![],
            });
        }
        for o in &t.objs {
            let (kind, i) = match &o.body {
                ast::ObjBody::Counter { packets, bytes } => {
                    (ObjKind::Counter, out.new_counter(*packets, *bytes))
                }
                ast::ObjBody::Quota { over, bytes, used } => {
                    out.quotas.push(QuotaSpec {
                        bytes: *bytes,
                        over: *over,
                        used: *used,
                    });
                    (ObjKind::Quota, out.quotas.len() - 1)
                }
                ast::ObjBody::Limit(l) => {
                    out.limits.push(limit_spec(l));
                    (ObjKind::Limit, out.limits.len() - 1)
                }
                ast::ObjBody::CtHelper { name, .. } => {
                    out.helpers.push(name.clone());
                    (ObjKind::CtHelper, out.helpers.len() - 1)
                }
                ast::ObjBody::CtTimeout { proto, policy, .. } => {
                    let l4proto = l4proto_number(proto).ok_or_else(|| {
                        bad(format!("ct timeout protocol {proto}"), &t.name, &o.name)
                    })?;
                    nft_conntrack::Timeouts::default()
                        .with_policy(l4proto, policy)
                        .map_err(|w| bad(format!("ct timeout {w}"), &t.name, &o.name))?;
                    out.ct_timeouts.push(CtTimeoutSpec {
                        l4proto,
                        policy: policy.clone(),
                    });
                    (ObjKind::CtTimeout, out.ct_timeouts.len() - 1)
                }
                ast::ObjBody::CtExpect {
                    proto,
                    dport,
                    timeout,
                    size,
                    l3proto,
                } => {
                    let l4proto = l4proto_number(proto).ok_or_else(|| {
                        bad(format!("ct expectation protocol {proto}"), &t.name, &o.name)
                    })?;
                    let l3proto = match l3proto.as_deref() {
                        Some("ip") => Some(2),
                        Some("ip6") => Some(10),
                        None | Some("inet") => match t.family {
                            Family::Ip => Some(2),
                            Family::Ip6 => Some(10),
                            _ => None,
                        },
                        Some(other) => {
                            return Err(bad(
                                format!("ct expectation l3proto {other}"),
                                &t.name,
                                &o.name,
                            ))
                        }
                    };
                    out.ct_expects.push(CtExpectSpec {
                        l3proto,
                        l4proto,
                        dport: *dport as u16,
                        timeout_ms: *timeout,
                        size: *size,
                    });
                    (ObjKind::CtExpect, out.ct_expects.len() - 1)
                }
                ast::ObjBody::Secmark(ctx) => {
                    out.secmarks.push(ctx.clone());
                    (ObjKind::Secmark, out.secmarks.len() - 1)
                }
                ast::ObjBody::Synproxy { mss, wscale, flags } => {
                    out.synproxies.push(crate::synproxy::SynproxySpec::new(
                        Some(*mss),
                        Some(*wscale),
                        flags,
                    ));
                    (ObjKind::Synproxy, out.synproxies.len() - 1)
                }
                // referenced objects of other kinds fail at the reference, naming it
                _ => continue,
            };
            out.objects
                .insert((t.name.clone(), kind, o.name.clone()), i);
        }
        let mut set_ids = HashMap::default();
        for s in &t.sets {
            let dynamic =
                s.flags.iter().any(|f| f == "dynamic" || f == "timeout") || s.timeout.is_some();
            let size = s
                .size
                .map(|x| x as usize)
                .or(dynamic.then_some(DYNSET_DEFAULT_SIZE));
            let mut cs = CSet {
                name: s.name.clone(),
                table: t.name.clone(),
                timeout_ms: s.timeout,
                size,
                ..Default::default()
            };
            for el in &s.elements {
                add_element(&mut cs, el, s.is_map, &chain_ids)
                    .map_err(|w| bad(w, &t.name, &format!("set {}", s.name)))?;
            }
            set_ids.insert(s.name.clone(), out.sets.len());
            out.sets.push(cs);
            if let Some(k) = &s.obj_map {
                let kind = match k.as_str() {
                    "counter" => ObjKind::Counter,
                    "quota" => ObjKind::Quota,
                    "limit" => ObjKind::Limit,
                    "ct helper" => ObjKind::CtHelper,
                    "synproxy" => ObjKind::Synproxy,
                    other => {
                        return Err(bad(
                            format!("{other} object maps"),
                            &t.name,
                            &format!("map {}", s.name),
                        ))
                    }
                };
                let id = out.sets.len() - 1;
                out.resolve_objmap(id, &t.name, kind)
                    .map_err(|w| bad(w, &t.name, &format!("map {}", s.name)))?;
            }
        }
        for ft in &t.flowtables {
            out.flowtables.push((t.name.clone(), ft.clone()));
        }
        for (i, c) in t.chains.iter().enumerate() {
            let mut rules = vec![];
            for r in &c.rules {
                let mut comp = Compiler {
                    table: t,
                    chain: &c.name,
                    chain_ids: &chain_ids,
                    set_ids: &set_ids,
                    out: &mut out,
                };
                let mut ops = vec![];
                for st in &r.stmts {
                    comp.stmt(st, &mut ops)?;
                }
                // stateless: the text is printed beside live hit counts (traces, top rules),
                // where the ruleset's own `counter packets 0 bytes 0` would read as a lie
                let text = nft_lang::print::rule(
                    r,
                    t.family,
                    &nft_lang::print::ListOpts {
                        stateless: true,
                        ..Default::default()
                    },
                );
                rules.push(CRule {
                    ops,
                    handle: r.handle,
                    text,
                });
            }
            out.chains[base_idx + i].rules = rules;
            if let Some(h) = &c.hook {
                let hook = Hook::parse(&h.hook)
                    .ok_or_else(|| bad(format!("hook {}", h.hook), &t.name, &c.name))?;
                let kind = match h.kind.as_str() {
                    "nat" => ChainType::Nat,
                    "route" => ChainType::Route,
                    _ => ChainType::Filter,
                };
                let prio = match &h.prio {
                    ast::Prio::Num(n) => *n,
                    ast::Prio::Named(n, off) => {
                        // the kernel's 32 bits: nft's sum wraps
                        nft_lang::print::std_prio_value(t.family, n)
                            .unwrap_or(0)
                            .wrapping_add(*off)
                    }
                    ast::Prio::Var(v) => {
                        return Err(bad(format!("priority {v}"), &t.name, &c.name))
                    }
                };
                let order = match (kind, hook) {
                    (ChainType::Nat, Hook::Prerouting | Hook::Output) => NAT_DST_PRIO,
                    (ChainType::Nat, Hook::Input | Hook::Postrouting) => NAT_SRC_PRIO,
                    _ => prio,
                };
                out.base.push(BaseChain {
                    hook,
                    kind,
                    prio,
                    order,
                    family: t.family,
                    chain: base_idx + i,
                    policy_drop: h.policy.as_deref() == Some("drop"),
                    devices: h.devices.clone(),
                });
            }
        }
    }
    check_hooks(&out)?;
    fold_const_sets(&mut out);
    // stable: equal priorities keep table order, as the kernel keeps registration order
    out.base.sort_by_key(|b| (b.hook, b.order, b.prio));
    Ok(out)
}

/// Up to this many elements, a constant set or verdict map of single values is folded into
/// its rule (compares in place of a lookup).
const FOLD_MAX: usize = 8;

/// Folds the lookups in small constant sets and verdict maps into their rules: a router's
/// rules test a zone's devices, `{ tcp, udp }` or a `ct state` vmap on every packet, and a
/// lookup (a key built in a buffer, the set's element table, the element cloned) costs
/// several times the few compares. Only sets no rule adds to or deletes from (the others
/// change at run time), with exact single-value keys and no timeout; the folded test answers
/// exactly what the lookup did.
fn fold_const_sets(rs: &mut Ruleset) {
    let changed = rs.changed_sets();
    let small = |i: usize| -> Option<Vec<(u128, SetData)>> {
        let s = rs.sets.get(i)?;
        if changed.contains(&i)
            || !s.ranges.is_empty()
            || s.timeout_ms.is_some()
            || s.exact.len() > FOLD_MAX
        {
            return None;
        }
        let mut v: Vec<(u128, SetData)> = s
            .exact
            .iter()
            .map(|(k, d)| match k.as_slice() {
                [x] => Some((*x, d.clone())),
                _ => None,
            })
            .collect::<Option<_>>()?;
        // the order of a hash map's iteration is not the ruleset's: sorted, so that a
        // folded rule is the same for the same ruleset
        v.sort_by_key(|(k, _)| *k);
        Some(v)
    };
    let mut folds: Vec<(usize, usize, usize, Op)> = vec![];
    for (ci, c) in rs.chains.iter().enumerate() {
        for (ri, r) in c.rules.iter().enumerate() {
            for (oi, op) in r.ops.iter().enumerate() {
                let new = match op {
                    Op::Match(m) => match (&m.test, m.loads.as_slice()) {
                        (Test::InSet(s), [_]) => small(*s).map(|v| {
                            Op::Match(Match {
                                loads: m.loads.clone(),
                                test: Test::AnyOf(v.into_iter().map(|(k, _)| k).collect()),
                                negate: m.negate,
                            })
                        }),
                        _ => None,
                    },
                    Op::Vmap { keys, map } if keys.len() == 1 => small(*map).and_then(|v| {
                        let elems = v
                            .into_iter()
                            .map(|(k, d)| match d {
                                SetData::Verdict(x) => Some((k, x)),
                                _ => None,
                            })
                            .collect::<Option<Box<[_]>>>()?;
                        Some(Op::VmapConst {
                            key: keys[0].clone(),
                            elems,
                        })
                    }),
                    _ => None,
                };
                if let Some(n) = new {
                    folds.push((ci, ri, oi, n));
                }
            }
        }
    }
    for (ci, ri, oi, n) in folds {
        rs.chains[ci].rules[ri].ops[oi] = n;
    }
}

/// Expressions the kernel allows in some hooks only (their `validate` callbacks), and which.
fn hook_limited(op: &Op) -> Option<(&'static str, &'static [Hook])> {
    use Hook::*;
    let loads: &[Load] = match op {
        Op::Tproxy { .. } => return Some(("tproxy", &[Prerouting])),
        // nft_synproxy_validate: local in and forward only
        Op::Synproxy(_) => return Some(("synproxy", &[Input, Forward])),
        Op::ObjMap {
            kind: ObjKind::Synproxy,
            ..
        } => return Some(("synproxy", &[Input, Forward])),
        Op::Match(m) => &m.loads,
        Op::Vmap { keys, .. } => keys,
        Op::VmapConst { key, .. } => std::slice::from_ref(key),
        _ => return None,
    };
    loads.iter().find_map(|l| match l {
        Load::Socket => Some(("socket", &[Prerouting, Input, Output][..])),
        Load::Osf => Some(("osf", &[Prerouting, Input, Forward][..])),
        Load::Ipsec { out: false } => Some(("ipsec in", &[Prerouting, Input, Forward][..])),
        Load::Ipsec { out: true } => Some(("ipsec out", &[Forward, Output, Postrouting][..])),
        Load::Meta(MetaK::Sdif) => Some(("meta sdif", &[Input, Forward][..])),
        Load::Meta(MetaK::SdifName) => Some(("meta sdifname", &[Input, Forward][..])),
        _ => None,
    })
}

/// Refuses a ruleset that uses a hook-limited expression in a chain reachable from a base
/// chain of another hook, as the kernel's chain validation does.
fn check_hooks(rs: &Ruleset) -> Result<(), CompileError> {
    for b in &rs.base {
        let mut seen = vec![false; rs.chains.len()];
        let mut todo = vec![b.chain];
        while let Some(ci) = todo.pop() {
            if std::mem::replace(&mut seen[ci], true) {
                continue;
            }
            let c = &rs.chains[ci];
            for r in &c.rules {
                for op in &r.ops {
                    if let Some((what, hooks)) = hook_limited(op) {
                        if !hooks.contains(&b.hook) {
                            let allowed: Vec<String> = hooks
                                .iter()
                                .map(|h| format!("{h:?}").to_lowercase())
                                .collect();
                            return Err(bad(
                                format!(
                                    "{what} in a {} chain (the kernel allows it in {} only)",
                                    format!("{:?}", b.hook).to_lowercase(),
                                    allowed.join(", ")
                                ),
                                &c.table,
                                &c.name,
                            ));
                        }
                    }
                    let mut jump = |v: &Verdict| {
                        if let Verdict::Jump(t) | Verdict::Goto(t) = v {
                            if *t < seen.len() {
                                todo.push(*t);
                            }
                        }
                    };
                    match op {
                        Op::Verdict(v) => jump(v),
                        Op::Vmap { map, .. } => {
                            if let Some(s) = rs.sets.get(*map) {
                                for d in s.exact.values().chain(s.ranges.iter().map(|r| &r.1)) {
                                    if let SetData::Verdict(v) = d {
                                        jump(v);
                                    }
                                }
                            }
                        }
                        Op::VmapConst { elems, .. } => {
                            for (_, v) in elems.iter() {
                                jump(v);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(())
}

// ---- execution -----------------------------------------------------------------------------

/// Conntrack facts a rule may read.
#[derive(Clone, Copy, Debug, Default)]
pub struct CtInfo {
    /// NF_CT_STATE bits: invalid 1, established 2, related 4, new 8, untracked 64.
    pub state: u32,
    pub reply: bool,
    pub status: u32,
    pub mark: u32,
    pub expiration_ms: u32,
    pub zone: u16,
    pub l3proto: u8,
    pub protocol: u8,
    pub orig_src: u128,
    pub orig_dst: u128,
    pub orig_sport: u16,
    pub orig_dport: u16,
    pub reply_src: u128,
    pub reply_dst: u128,
    pub reply_sport: u16,
    pub reply_dport: u16,
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub label: u128,
    /// `ct id`.
    pub id: u32,
    /// The helper's name as a string value (0: none).
    pub helper: u128,
    /// Whether the connection is in the table yet (helpers attach before that only).
    pub confirmed: bool,
    /// `ct secmark`.
    pub secmark: u32,
    /// What [`Env::conn_alive`] takes to find this connection again (`ct count`).
    pub handle: u64,
}

/// Conntrack facts as rules read them, before this walk's `ct ... set` (which [`Pkt`] holds).
/// The router implements it on its connection, so that a chain run reads only the fields its
/// rules ask for (most read one or none) instead of copying them all for every chain;
/// [`CtInfo`] implements it on copied values.
pub trait CtFacts {
    /// The value of `key`; `reply` is the direction an expression names (`ct original
    /// saddr`), `None` when it names none.
    fn ct_get(&self, key: CtK, reply: Option<bool>) -> u128;
    /// What [`Env::conn_alive`] takes to find this connection again (`ct count`); 0: none.
    fn ct_handle(&self) -> u64;
    /// Whether the connection is in the table yet (`ct helper set` and the like act on new
    /// ones only): its status has IPS_CONFIRMED.
    fn ct_confirmed(&self) -> bool {
        const CONFIRMED: u128 = 1 << 3;
        self.ct_get(CtK::Status, None) & CONFIRMED != 0
    }
}

/// What rules read of a packet conntrack looked at and found no connection for: `ct state
/// invalid`, and nothing else (every other key 0, no handle).
#[derive(Clone, Copy, Debug, Default)]
pub struct CtInvalid;

impl CtFacts for CtInvalid {
    fn ct_get(&self, key: CtK, _reply: Option<bool>) -> u128 {
        match key {
            CtK::State => 1,
            _ => 0,
        }
    }

    fn ct_handle(&self) -> u64 {
        0
    }
}

impl CtFacts for CtInfo {
    fn ct_get(&self, key: CtK, reply: Option<bool>) -> u128 {
        let ct = self;
        let rep = reply.unwrap_or(false);
        match key {
            CtK::State => ct.state as u128,
            CtK::Direction => ct.reply as u128,
            CtK::Status => ct.status as u128,
            CtK::Mark => ct.mark as u128,
            CtK::Expiration => ct.expiration_ms as u128,
            CtK::L3Proto => ct.l3proto as u128,
            CtK::Protocol => ct.protocol as u128,
            CtK::Saddr => {
                if rep {
                    ct.reply_src
                } else {
                    ct.orig_src
                }
            }
            CtK::Daddr => {
                if rep {
                    ct.reply_dst
                } else {
                    ct.orig_dst
                }
            }
            CtK::ProtoSrc => (if rep { ct.reply_sport } else { ct.orig_sport }) as u128,
            CtK::ProtoDst => (if rep { ct.reply_dport } else { ct.orig_dport }) as u128,
            CtK::Zone => ct.zone as u128,
            CtK::Packets => match reply {
                None => (ct.packets[0] + ct.packets[1]) as u128,
                Some(r) => ct.packets[r as usize] as u128,
            },
            CtK::Bytes => match reply {
                None => (ct.bytes[0] + ct.bytes[1]) as u128,
                Some(r) => ct.bytes[r as usize] as u128,
            },
            CtK::AvgPkt => {
                let (p, b) = match reply {
                    None => (ct.packets[0] + ct.packets[1], ct.bytes[0] + ct.bytes[1]),
                    Some(r) => (ct.packets[r as usize], ct.bytes[r as usize]),
                };
                b.checked_div(p).unwrap_or(0) as u128
            }
            CtK::Label => ct.label,
            CtK::Id => ct.id as u128,
            CtK::Helper => ct.helper,
            CtK::Secmark => ct.secmark as u128,
        }
    }

    fn ct_handle(&self) -> u64 {
        self.handle
    }

    fn ct_confirmed(&self) -> bool {
        self.confirmed
    }
}

/// The packet and its metadata as rules see them: its bytes, its connection and the
/// router's answers, borrowed for a chain run, and the rest ([`PktState`], read through
/// `Deref`), which the router keeps for a packet's whole walk, so that a chain run builds
/// four pointers rather than the whole view.
pub struct Pkt<'a> {
    pub frame: &'a mut [u8],
    /// What conntrack knows of the packet: its connection, read lazily, or [`CtInvalid`];
    /// `None` for an untracked packet (only `ct state` answers, untracked).
    pub conn: Option<&'a dyn CtFacts>,
    pub env: Option<&'a dyn Env>,
    pub s: &'a mut PktState,
}

impl std::ops::Deref for Pkt<'_> {
    type Target = PktState;
    #[inline(always)]
    fn deref(&self) -> &PktState {
        self.s
    }
}

impl std::ops::DerefMut for Pkt<'_> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut PktState {
        self.s
    }
}

/// A packet's metadata as rules see it, apart from its bytes: header offsets and protocols,
/// interfaces, marks, and what a chain run set on its connection (`new_ct_*`, for the router
/// to carry out after the run).
#[derive(Clone, Debug, Default)]
pub struct PktState {
    /// Offsets of the network and transport headers in `frame`.
    pub nh: usize,
    pub th: Option<usize>,
    /// The packet's network protocol (NFPROTO_IPV4 2, NFPROTO_IPV6 10, 0 other): what
    /// payload loads and statements check their header against.
    pub nfproto: u8,
    /// The chain runs in the netdev family: there the kernel's `nft_pf(pkt)` is the hook's
    /// family, NFPROTO_NETDEV, so `meta nfproto` reads 5 whatever the packet (`meta protocol`
    /// is the match that works there). Set for each base chain run.
    pub netdev: bool,
    pub l4proto: u8,
    pub ethertype: u16,
    /// L3 length (`meta length`).
    pub len: u32,
    pub iif: u32,
    pub oif: u32,
    pub iifname: u128,
    pub oifname: u128,
    pub mark: u32,
    pub priority: u32,
    pub nftrace: bool,
    pub pkttype: u8,
    pub new_ct_mark: Option<u32>,
    pub new_ct_zone: Option<u16>,
    pub new_ct_label: Option<u128>,
    pub new_ct_helper: Option<String>,
    /// `meta secmark`.
    pub secmark: u32,
    pub new_ct_secmark: Option<u32>,
    /// `ct timeout set`: the object, for a new connection of its protocol.
    pub new_ct_timeout: Option<usize>,
    /// `ct expectation set`: the objects whose expectations the connection announces.
    pub new_ct_expect: Vec<usize>,
    /// MTU of the route the packet takes, once routed (0 before).
    pub rt_mtu: u32,
    /// The route's next hop, once routed.
    pub nexthop: Option<u128>,
    /// Set when a statement rewrote the frame: the caller re-parses it.
    pub mangled: bool,
    /// The packet's time (ns since the epoch of the capture's clock): `meta time`.
    pub now_ns: u64,
}

impl PktState {
    /// The view of a parsed packet that came in on `iif` (0: none), named `iifname` in its
    /// register form ([`ifname_value`]).
    pub fn new(m: &nft_wire::PacketMeta, iif: u32, iifname: u128) -> PktState {
        let mut s = PktState {
            iif,
            iifname,
            ..PktState::default()
        };
        s.set_headers(m);
        s
    }

    /// Whether a chain run set something the router carries out after it: a connection
    /// field (`ct mark set`, ...) or a rewritten packet.
    #[inline(always)]
    pub fn has_effects(&self) -> bool {
        self.new_ct_mark.is_some()
            || self.new_ct_zone.is_some()
            || self.new_ct_label.is_some()
            || self.new_ct_helper.is_some()
            || self.new_ct_secmark.is_some()
            || self.new_ct_timeout.is_some()
            || !self.new_ct_expect.is_empty()
            || self.mangled
    }

    /// What the view reads of the parse: offsets, protocols, length. The router calls it
    /// before each chain run, since NAT or a mangled packet may have moved them.
    #[inline(always)]
    pub fn set_headers(&mut self, m: &nft_wire::PacketMeta) {
        self.nfproto = match m.ip_version {
            Some(nft_wire::IpVersion::Ipv4) => 2,
            Some(nft_wire::IpVersion::Ipv6) => 10,
            None => 0,
        };
        self.th = match m.fragment {
            nft_wire::Fragment::NonFirst => None,
            _ => m.l4_offset,
        };
        self.nh = m.l3_offset;
        self.l4proto = m.ip_protocol.map(u8::from).unwrap_or(0);
        self.ethertype = u16::from(m.ethertype);
        self.len = (m.l3_end - m.l3_offset) as u32;
    }
}

/// Effects the router carries out for statements it owns.
pub trait Actions {
    fn nat(
        &mut self,
        pkt: &Pkt,
        spec: &NatSpec,
        addr: Option<(u128, u128)>,
        port: Option<(u16, u16)>,
    );
    fn reject(&mut self, pkt: &Pkt, r: &Reject);
    fn flow_add(&mut self, pkt: &Pkt, flowtable: &str);
    fn notrack(&mut self, pkt: &Pkt);
    fn log(&mut self, pkt: &Pkt, prefix: Option<&str>, level: u8, rule: &str);
    /// `log` with every option; by default the prefix and level are all that is kept.
    fn log_spec(&mut self, pkt: &Pkt, spec: &LogSpec, rule: &str) {
        self.log(pkt, spec.prefix.as_deref(), spec.level, rule);
    }
    /// `dup`: send a copy to `addr` (a neighbour) and/or out of interface `dev`.
    fn dup(&mut self, _pkt: &Pkt, _addr: Option<u128>, _dev: Option<u32>) {}
    /// netdev `fwd`: the packet leaves through `dev` (to neighbour `addr` if given) and its
    /// walk ends here.
    fn fwd(&mut self, _pkt: &Pkt, _addr: Option<u128>, _dev: u32) {}
    /// `synproxy`: a SYN or a client's ACK the router answers (or drops) itself.
    fn synproxy(&mut self, _pkt: &Pkt, _spec: &crate::synproxy::SynproxySpec) {}
}

/// The outcome of a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookVerdict {
    Accept,
    Drop,
    /// `queue`: handed to a user-space queue; without a listener the packet is dropped.
    Queue,
    /// `fwd`: the packet was handed to [`Actions::fwd`] and goes no further.
    Stolen,
}

fn read_bits(data: &[u8], start: usize, offset: u32, bits: u32) -> Option<u128> {
    hdr::read_bits(data, start, offset, bits)
}

const NS_PER_S: u64 = 1_000_000_000;

impl Pkt<'_> {
    /// Whether the packet has a connection not yet in the table (its first packet).
    fn ct_unconfirmed(&self) -> bool {
        self.conn
            .is_some_and(|c| c.ct_handle() != 0 && !c.ct_confirmed())
    }

    /// `ct label` of the connection as it stands (0 untracked).
    fn ct_label(&self) -> u128 {
        self.conn.map_or(0, |c| c.ct_get(CtK::Label, None))
    }

    fn base(&self, b: Base) -> Option<usize> {
        match b {
            Base::Link => Some(0),
            Base::Network => Some(self.nh),
            Base::Transport => self.th,
            Base::Inner => None,
        }
    }

    fn ethertype_at_link(&self) -> Option<u16> {
        Some(u16::from_be_bytes([
            *self.frame.get(12)?,
            *self.frame.get(13)?,
        ]))
    }

    /// Loads that depend on the packet alone (not on rule state). The ones a ruleset such
    /// as fw4's makes on every packet (headers, interface names, protocols) are answered
    /// here, small enough to sit in the rule loop's own load; the rest, some of them large
    /// (hashes, FIB, tunnels), in [`Self::load_other`], whose register saves the common
    /// loads then skip.
    #[inline(always)]
    pub fn load(&self, l: &Load) -> Option<u128> {
        match l {
            Load::Payload {
                base,
                offset,
                bits,
                l3,
                l4,
            } => self.payload(*base, *offset, *bits, *l3, *l4),
            Load::Meta(k) => match k {
                MetaK::IifName => Some(self.iifname),
                MetaK::OifName if self.oif != 0 => Some(self.oifname),
                MetaK::Iif => Some(self.iif as u128),
                MetaK::Oif if self.oif != 0 => Some(self.oif as u128),
                MetaK::NfProto if !self.netdev => Some(self.nfproto as u128),
                MetaK::L4Proto => Some(self.l4proto as u128),
                MetaK::Mark => Some(self.mark as u128),
                _ => self.load_other(l),
            },
            // `ct state` (fw4's vmap on every packet): read from the connection, untracked 64
            Load::Ct {
                key: CtK::State,
                reply,
            } => Some(match self.conn {
                Some(ct) => ct.ct_get(CtK::State, *reply),
                None => 64,
            }),
            _ => self.load_other(l),
        }
    }

    /// A payload load: `bits` at `offset` from `base`, when the packet is of the protocols
    /// the expression depends on (`l3`, `l4`).
    #[inline(always)]
    fn payload(
        &self,
        base: Base,
        offset: u32,
        bits: u32,
        l3: Option<u8>,
        l4: Option<u8>,
    ) -> Option<u128> {
        if l3.is_some_and(|p| p != self.nfproto) || l4.is_some_and(|p| p != self.l4proto) {
            return None;
        }
        read_bits(self.frame, self.base(base)?, offset, bits)
    }

    /// A load of an option or extension header the packet has at `found` (`None`: it has
    /// none): whether it is there when `present`, else `bits` at `offset` in it.
    fn option_load(
        &self,
        found: Option<usize>,
        present: bool,
        offset: u32,
        bits: u32,
    ) -> Option<u128> {
        match (found, present) {
            (found, true) => Some(found.is_some() as u128),
            (Some(at), false) => read_bits(self.frame, at, offset, bits),
            // a field of a header the packet lacks: the rule does not match
            (None, false) => None,
        }
    }

    /// [`Self::load`] of every kind.
    #[inline(never)]
    fn load_other(&self, l: &Load) -> Option<u128> {
        match l {
            Load::Payload {
                base,
                offset,
                bits,
                l3,
                l4,
            } => self.payload(*base, *offset, *bits, *l3, *l4),
            Load::Vlan { offset, bits } => {
                if !matches!(self.ethertype_at_link()?, 0x8100 | 0x88a8) {
                    return None;
                }
                read_bits(self.frame, 14, *offset, *bits)
            }
            Load::Meta(k) => Some(match k {
                MetaK::Length => self.len as u128,
                MetaK::Protocol => self.ethertype as u128,
                MetaK::Mark => self.mark as u128,
                MetaK::Iif => self.iif as u128,
                MetaK::Oif => {
                    if self.oif == 0 {
                        // no output interface before routing: the kernel's meta breaks
                        return None;
                    }
                    self.oif as u128
                }
                MetaK::IifName => self.iifname,
                MetaK::OifName => {
                    if self.oif == 0 {
                        return None;
                    }
                    self.oifname
                }
                // ARPHRD_ETHER: every interface here is Ethernet (VLAN and PPPoE ones too,
                // as the rules see them after decapsulation)
                MetaK::IifType => 1,
                // `nft_meta_get_eval_kind`: no interface, or one without a kind, breaks
                MetaK::IifKind | MetaK::OifKind => {
                    let i = if *k == MetaK::IifKind {
                        self.iif
                    } else {
                        self.oif
                    };
                    let kind = self.env.map_or(0, |e| if i == 0 { 0 } else { e.ifkind(i) });
                    if kind == 0 {
                        return None;
                    }
                    kind
                }
                MetaK::OifType => {
                    if self.oif == 0 {
                        return None;
                    }
                    1
                }
                MetaK::NfProto if self.netdev => NFPROTO_NETDEV as u128,
                MetaK::NfProto => self.nfproto as u128,
                MetaK::L4Proto => self.l4proto as u128,
                MetaK::PktType => self.pkttype as u128,
                MetaK::Priority => self.priority as u128,
                MetaK::Nftrace => self.nftrace as u128,
                MetaK::IifGroup | MetaK::Cpu => 0,
                MetaK::OifGroup => {
                    if self.oif == 0 {
                        return None;
                    }
                    0
                }
                MetaK::Time => self.now_ns as u128,
                // 1970-01-01 was a Thursday (4); Sunday is 0. Times are UTC.
                MetaK::Day => ((self.now_ns / NS_PER_S / 86400 + 4) % 7) as u128,
                MetaK::Hour => (self.now_ns / NS_PER_S % 86400) as u128,
                MetaK::Random => return None,
                MetaK::Secmark => self.secmark as u128,
                MetaK::Ipsec | MetaK::RtClassid | MetaK::Sdif | MetaK::SdifName => 0,
                MetaK::Skuid | MetaK::Skgid | MetaK::Cgroup => return None,
            }),
            Load::Ct { key, reply } => {
                let Some(ct) = self.conn else {
                    // untracked: only `ct state` answers
                    return (*key == CtK::State).then_some(64);
                };
                // what this walk set (`ct ... set`) reads back before the connection has it
                Some(match key {
                    CtK::Mark => match self.new_ct_mark {
                        Some(m) => m as u128,
                        None => ct.ct_get(*key, *reply),
                    },
                    CtK::Zone => match self.new_ct_zone {
                        Some(z) => z as u128,
                        None => ct.ct_get(*key, *reply),
                    },
                    CtK::Label => match self.new_ct_label {
                        Some(l) => l,
                        None => ct.ct_get(*key, *reply),
                    },
                    CtK::Helper => match &self.new_ct_helper {
                        Some(h) => ifname_value(h),
                        None => ct.ct_get(*key, *reply),
                    },
                    CtK::Secmark => match self.new_ct_secmark {
                        Some(s) => s as u128,
                        None => ct.ct_get(*key, *reply),
                    },
                    _ => ct.ct_get(*key, *reply),
                })
            }
            Load::Bitwise { inner, and, xor } => self.load(inner).map(|v| (v & and) ^ xor),
            Load::RtTcpMss => {
                if self.rt_mtu == 0 {
                    return None;
                }
                // the kernel's get_tcpmss: the smaller of the route's MTU and that of the route
                // back to the source, so that a SYN coming in over a PPPoE link is clamped too
                let mut mtu = self.rt_mtu;
                if let (Some(env), Some(src)) = (self.env, self.addr(false)) {
                    if let RouteAnswer::Unicast { oif } = env.route(src, self.nfproto == 10) {
                        let back = env.mtu(oif);
                        if back != 0 {
                            mtu = mtu.min(back);
                        }
                    }
                }
                let hdrs = if self.nfproto == 10 { 40 + 20 } else { 20 + 20 };
                Some(mtu.saturating_sub(hdrs) as u128)
            }
            Load::RtNexthop => self.nexthop,
            Load::RtClassid => (self.oif != 0).then_some(0),
            Load::Shift { inner, left, n } => self.load(inner).map(|v| {
                if *left {
                    v.checked_shl(*n).unwrap_or(0)
                } else {
                    v.checked_shr(*n).unwrap_or(0)
                }
            }),
            Load::Exthdr {
                nexthdr,
                offset,
                bits,
                present,
            } => {
                if self.nfproto != 10 {
                    return None;
                }
                self.option_load(
                    hdr::ipv6_exthdr(self.frame, self.nh, *nexthdr),
                    *present,
                    *offset,
                    *bits,
                )
            }
            Load::TcpOpt {
                kind,
                offset,
                bits,
                present,
            } => {
                if self.l4proto != 6 {
                    return None;
                }
                self.option_load(
                    hdr::tcp_option(self.frame, self.th?, *kind),
                    *present,
                    *offset,
                    *bits,
                )
            }
            Load::IpOpt {
                ty,
                offset,
                bits,
                present,
            } => {
                if self.nfproto != 2 {
                    return None;
                }
                self.option_load(
                    hdr::ip_option(self.frame, self.nh, *ty),
                    *present,
                    *offset,
                    *bits,
                )
            }
            Load::Fib(q) => self.fib(q),
            Load::Jhash {
                keys,
                modulus,
                seed,
                offset,
            } => {
                let mut buf = Vec::with_capacity(keys.len() * 4);
                for (l, bytes, be) in keys {
                    let v = self.load(l)?;
                    let n = (*bytes as usize).min(16);
                    let mut b = v.to_be_bytes()[16 - n..].to_vec();
                    if !be {
                        b.reverse();
                    }
                    // each value fills whole 32-bit registers
                    b.resize(n.div_ceil(4) * 4, 0);
                    buf.extend_from_slice(&b);
                }
                Some((hdr::scale(hdr::jhash(&buf, *seed), *modulus) as u128) + *offset as u128)
            }
            Load::Symhash { modulus, offset } => {
                // the kernel's symmetric flow dissector hash is not reproduced bit for bit; what
                // matters is that both directions of a flow agree
                let (s, d) = (self.addr(false)?, self.addr(true)?);
                let (sp, dp) = match self.th {
                    Some(th) if matches!(self.l4proto, 6 | 17 | 132 | 136) => (
                        read_bits(self.frame, th, 0, 16)?,
                        read_bits(self.frame, th, 16, 16)?,
                    ),
                    _ => (0, 0),
                };
                let (a, b) = if (s, sp) <= (d, dp) {
                    ((s, sp), (d, dp))
                } else {
                    ((d, dp), (s, sp))
                };
                let mut buf = vec![];
                for x in [a.0, b.0] {
                    buf.extend_from_slice(&x.to_be_bytes());
                }
                buf.extend_from_slice(&(a.1 as u16).to_be_bytes());
                buf.extend_from_slice(&(b.1 as u16).to_be_bytes());
                buf.push(self.l4proto);
                Some((hdr::scale(hdr::jhash(&buf, 0), *modulus) as u128) + *offset as u128)
            }
            Load::Numgen { .. } => None,
            Load::Inner {
                tunnel,
                base,
                offset,
                bits,
                l3,
                l4,
            } => {
                let end = self.l3_end();
                let data = self.frame.get(..end)?;
                let c = crate::extmatch::inner(data, self.th?, end, self.l4proto, *tunnel)?;
                if l3.is_some_and(|p| p != c.llproto) || l4.is_some_and(|p| Some(p) != c.l4proto) {
                    return None;
                }
                read_bits(data, c.base(*base)?, *offset, *bits)
            }
            Load::SctpChunk {
                ty,
                offset,
                bits,
                present,
            } => {
                if self.l4proto != 132 {
                    return (*present).then_some(0);
                }
                let end = self.l3_end();
                let Some(th) = self.th else {
                    return (*present).then_some(0);
                };
                crate::extmatch::sctp_chunk(self.frame, th, end, *ty, *offset, *bits, *present)
            }
            Load::DccpOpt(ty) => match (self.l4proto, self.th) {
                (33, Some(th)) => Some(crate::extmatch::dccp_option(
                    self.frame,
                    th,
                    self.l3_end(),
                    *ty,
                )),
                _ => Some(0),
            },
            Load::Socket | Load::Ipsec { .. } => None,
            Load::Osf => {
                self.th?; // a fingerprint needs the TCP header
                crate::extmatch::osf(self.frame, self.nh, self.l3_end(), self.l4proto)
            }
        }
    }

    /// Where the IP packet ends in the frame (Ethernet padding is not part of it).
    fn l3_end(&self) -> usize {
        (self.nh + self.len as usize).min(self.frame.len())
    }

    /// The packet's source or destination address as a number.
    fn addr(&self, dst: bool) -> Option<u128> {
        match self.nfproto {
            2 => read_bits(self.frame, self.nh, if dst { 128 } else { 96 }, 32),
            10 => read_bits(self.frame, self.nh, if dst { 192 } else { 64 }, 128),
            _ => None,
        }
    }

    /// `nft_fib4_eval` / `nft_fib6_eval` over the router's FIB.
    fn fib(&self, q: &FibQuery) -> Option<u128> {
        let env = self.env?;
        let v6 = match self.nfproto {
            2 => false,
            10 => true,
            _ => return None,
        };
        let addr = self.addr(q.daddr)?;
        let dev = if q.iif {
            Some(self.iif)
        } else if q.oif {
            if self.oif == 0 {
                return None;
            }
            Some(self.oif)
        } else {
            None
        };
        if q.result == FibResult::Type {
            return Some(fib_type(env, addr, v6, dev) as u128);
        }
        let store = |oif: u32| -> u128 {
            match q.result {
                FibResult::OifName => {
                    if oif == 0 {
                        0
                    } else {
                        env.ifname(oif)
                    }
                }
                _ => oif as u128,
            }
        };
        // DHCP discovery (0.0.0.0 to broadcast) and link-local sources answer with the
        // interface the packet came in on, as the kernel's special cases do
        let v4_zeronet_src = !v6 && !q.daddr && addr >> 24 == 0;
        let v6_linklocal = v6 && addr >> 118 == 0x3fa;
        if (v4_zeronet_src || v6_linklocal) && q.iif {
            return Some(store(self.iif));
        }
        let found = match env.route(addr, v6) {
            RouteAnswer::Unicast { oif } => oif,
            // a local route is never the answer (`case RTN_LOCAL: return`), nor a failed lookup
            RouteAnswer::Local(_)
            | RouteAnswer::None
            | RouteAnswer::Blackhole
            | RouteAnswer::Unreachable => 0,
        };
        let result = match dev {
            Some(d) if found != d => 0,
            _ => found,
        };
        Some(store(result))
    }
}

/// RTN_* types of `fib ... type`.
pub mod rtn {
    pub const UNICAST: u32 = 1;
    pub const LOCAL: u32 = 2;
    pub const BROADCAST: u32 = 3;
    pub const MULTICAST: u32 = 5;
    pub const BLACKHOLE: u32 = 6;
    pub const UNREACHABLE: u32 = 7;
}

/// `inet_dev_addr_type` (IPv4) and `__nft_fib6_eval_type` (IPv6), over the router's view.
fn fib_type(env: &dyn Env, addr: u128, v6: bool, dev: Option<u32>) -> u32 {
    if v6 {
        if addr >> 120 == 0xff {
            return rtn::MULTICAST;
        }
        if env.is_local(addr, true, dev) {
            return rtn::LOCAL;
        }
        return match env.route(addr, true) {
            RouteAnswer::Local(_) if dev.is_none() => rtn::LOCAL,
            RouteAnswer::Blackhole => rtn::BLACKHOLE,
            RouteAnswer::Unreachable | RouteAnswer::None => rtn::UNREACHABLE,
            _ => rtn::UNICAST,
        };
    }
    let a = addr as u32;
    if a >> 24 == 0 || a == u32::MAX {
        return rtn::BROADCAST;
    }
    if a >> 28 == 0xe {
        return rtn::MULTICAST;
    }
    // the local table holds the router's own addresses, 127/8 and subnet broadcasts; the
    // main table is not consulted
    if a >> 24 == 127 && dev.is_none() {
        return rtn::LOCAL;
    }
    if env.is_local(addr, false, dev) {
        return rtn::LOCAL;
    }
    if env.is_subnet_broadcast(addr, dev) {
        return rtn::BROADCAST;
    }
    rtn::UNICAST
}

/// [`load_st`] for the rule loop: the loads of headers and of most meta keys are the
/// packet's alone and are read here, without the call that checks for rule state first.
#[inline(always)]
fn load_rule(st: &mut State, pkt: &Pkt, l: &Load) -> Option<u128> {
    match l {
        Load::Payload { .. } => pkt.load(l),
        Load::Meta(k) if *k != MetaK::Random => pkt.load(l),
        Load::Ct { .. } => pkt.load(l),
        _ => load_st(st, pkt, l),
    }
}

/// Loads, with those that change rule state (`numgen`, `meta random`).
fn load_st(st: &mut State, pkt: &Pkt, l: &Load) -> Option<u128> {
    match l {
        Load::Numgen {
            random: false,
            modulus,
            offset,
            slot,
        } => {
            let c = st.numgen.get_mut(*slot)?;
            // the kernel's counter starts at modulus - 1, so the first packet gets 0
            let prev = c.unwrap_or(modulus.saturating_sub(1));
            let next = if prev.saturating_add(1) < *modulus {
                prev + 1
            } else {
                0
            };
            *c = Some(next);
            Some(next as u128 + *offset as u128)
        }
        Load::Numgen {
            random: true,
            modulus,
            offset,
            ..
        } => Some(hdr::scale(st.random(), *modulus) as u128 + *offset as u128),
        Load::Meta(MetaK::Random) => Some(st.random() as u128),
        Load::Bitwise { inner, and, xor } if needs_state(inner) => {
            load_st(st, pkt, inner).map(|v| (v & and) ^ xor)
        }
        Load::Shift { inner, left, n } if needs_state(inner) => load_st(st, pkt, inner).map(|v| {
            if *left {
                v.checked_shl(*n).unwrap_or(0)
            } else {
                v.checked_shr(*n).unwrap_or(0)
            }
        }),
        _ => pkt.load(l),
    }
}

/// Whether loading `l` changes rule state (`numgen`, `meta random`): running it is a side
/// effect, whatever the match then decides.
pub(crate) fn needs_state(l: &Load) -> bool {
    match l {
        Load::Numgen { .. } | Load::Meta(MetaK::Random) => true,
        Load::Bitwise { inner, .. } | Load::Shift { inner, .. } => needs_state(inner),
        _ => false,
    }
}

fn key(st: &mut State, pkt: &Pkt, loads: &[Load], buf: &mut Vec<u128>) -> bool {
    buf.clear();
    for l in loads {
        match load_st(st, pkt, l) {
            Some(v) => buf.push(v),
            None => return false,
        }
    }
    true
}

pub(crate) fn test(v: u128, t: &Test) -> bool {
    match t {
        Test::Cmp(op, c) => match op {
            RelOp::Implicit | RelOp::Eq | RelOp::Neg => v == *c,
            RelOp::Ne => v != *c,
            RelOp::Lt => v < *c,
            RelOp::Gt => v > *c,
            RelOp::Le => v <= *c,
            RelOp::Ge => v >= *c,
        },
        Test::Range(lo, hi) => *lo <= v && v <= *hi,
        Test::AnyBit(m) => v & m != 0,
        Test::Masked { mask, want } => v & mask == *want,
        Test::AnyOf(vs) => vs.contains(&v),
        Test::InSet(_) => false,
    }
}

/// One rule's walk, for `--trace`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceLine {
    pub chain: usize,
    pub rule: Option<usize>,
    pub verdict: String,
}

/// Runs the base chains of `hook` for `family` on a packet, in priority order. A chain's
/// accept ends that chain only; drop ends the hook.
#[allow(clippy::too_many_arguments)]
pub fn run_hook(
    rs: &Ruleset,
    st: &mut State,
    hook: Hook,
    families: &[Family],
    pkt: &mut Pkt,
    now_ns: u64,
    act: &mut dyn Actions,
    trace: Option<&mut Vec<TraceLine>>,
) -> HookVerdict {
    let mut trace = trace;
    for b in rs
        .base
        .iter()
        .filter(|b| b.hook == hook && families.contains(&b.family))
    {
        match run_base_chain(rs, st, b, pkt, now_ns, act, trace.as_deref_mut()).0 {
            HookVerdict::Accept => {}
            other => return other,
        }
    }
    HookVerdict::Accept
}

/// Runs one base chain, applying its policy when the packet falls off its end. The router
/// walks a hook's chains itself with this, because NAT chains run only for a connection's
/// first packet and stop once a binding is made. The flag tells a policy verdict from a rule's.
pub fn run_base_chain(
    rs: &Ruleset,
    st: &mut State,
    b: &BaseChain,
    pkt: &mut Pkt,
    now_ns: u64,
    act: &mut dyn Actions,
    trace: Option<&mut Vec<TraceLine>>,
) -> (HookVerdict, bool) {
    let mut trace = trace;
    let mut keybuf = std::mem::take(&mut st.keybuf);
    pkt.now_ns = now_ns;
    pkt.netdev = b.family == Family::Netdev;
    let v = run_chain(
        rs,
        st,
        b.chain,
        pkt,
        now_ns,
        act,
        &mut keybuf,
        trace.as_deref_mut(),
    );
    st.keybuf = keybuf;
    match v {
        Some(Verdict::Drop) => (HookVerdict::Drop, false),
        Some(Verdict::Queue) => (HookVerdict::Queue, false),
        Some(Verdict::Stolen) => (HookVerdict::Stolen, false),
        Some(_) => (HookVerdict::Accept, false),
        None => {
            if b.policy_drop {
                if let Some(t) = trace {
                    t.push(TraceLine {
                        chain: b.chain,
                        rule: None,
                        verdict: "policy drop".into(),
                    });
                }
                (HookVerdict::Drop, true)
            } else {
                (HookVerdict::Accept, true)
            }
        }
    }
}

/// A token bucket on packet time: whether the packet is within the rate (and takes its
/// tokens if so).
fn bucket(spec: &LimitSpec, tokens: &mut f64, last: &mut u64, now_ns: u64, len: u32) -> bool {
    let elapsed = now_ns.saturating_sub(*last) as f64 / 1e9;
    *tokens = (*tokens + elapsed * spec.rate_per_s).min(spec.burst.max(1.0));
    *last = now_ns;
    let cost = if spec.bytes { len as f64 } else { 1.0 };
    let within = *tokens >= cost;
    if within {
        *tokens -= cost;
    }
    within
}

/// `add`/`update`/`delete @set { key ... }` (`nft_dynset_eval`). False when the rule stops
/// here: the set is full, or an element's statement (limit, quota, ct count) does not match.
fn dynset(
    rs: &Ruleset,
    st: &mut State,
    d: &DynsetOp,
    pkt: &Pkt,
    now_ns: u64,
    keybuf: &mut Vec<u128>,
) -> bool {
    if !key(st, pkt, &d.keys, keybuf) {
        return false;
    }
    let Some(set) = rs.sets.get(d.set) else {
        return false;
    };
    let data = match &d.data {
        Some(v) => match eval_value(rs, st, pkt, v, &mut Vec::new(), now_ns) {
            Some(x) => Some(x),
            None => return false,
        },
        None => None,
    };
    let timeout = d
        .timeout_ms
        .or(set.timeout_ms)
        .filter(|t| *t > 0)
        .map(|t| t.saturating_mul(1_000_000));
    let in_static = set.lookup(keybuf).is_some();
    let Some(ds) = st.dynsets.get_mut(d.set) else {
        return false;
    };
    if d.op == DynOp::Delete {
        if ds.elems.remove(keybuf.as_slice()).is_none() && in_static {
            ds.deleted.insert(keybuf.clone());
        }
        return true;
    }
    let live_static = in_static && !ds.deleted.contains(keybuf.as_slice());
    if live_static {
        // a loaded element: found, nothing to create; it carries no per-element state here
        return true;
    }
    let exists = ds.live(keybuf, now_ns).is_some();
    if !exists {
        let limit = set.size.unwrap_or(DYNSET_DEFAULT_SIZE);
        let count =
            |ds: &DynSet| set.static_len().saturating_sub(ds.deleted.len()) + ds.elems.len();
        if count(ds) >= limit {
            // the kernel's GC would have removed expired elements by now
            ds.elems.retain(|_, e| e.expires.is_none_or(|x| x > now_ns));
            if count(ds) >= limit && !ds.elems.contains_key(keybuf.as_slice()) {
                return false;
            }
        }
        let stmts = d
            .stmts
            .iter()
            .map(|s| match s {
                ElemStmt::Counter => ElemState::Counter {
                    packets: 0,
                    bytes: 0,
                },
                ElemStmt::Limit(l) => ElemState::Limit {
                    tokens: l.burst.max(1.0),
                    last: now_ns,
                },
                ElemStmt::Quota(q) => ElemState::Quota { used: q.used },
                ElemStmt::Connlimit { .. } => ElemState::Conns(vec![]),
            })
            .collect();
        ds.elems.insert(
            keybuf.clone(),
            DynElem {
                expires: timeout.map(|t| now_ns.saturating_add(t)),
                data,
                stmts,
            },
        );
    }
    let Some(e) = ds.elems.get_mut(keybuf.as_slice()) else {
        return false;
    };
    if exists && d.op == DynOp::Update {
        if let (Some(_), Some(t)) = (e.expires, timeout) {
            e.expires = Some(now_ns.saturating_add(t));
        }
    }
    // the element's statements run on every packet that reaches it, new or not
    let mut matched = true;
    for (s, state) in d.stmts.iter().zip(e.stmts.iter_mut()) {
        match (s, state) {
            (ElemStmt::Counter, ElemState::Counter { packets, bytes }) => {
                *packets += 1;
                *bytes += pkt.len as u64;
            }
            (ElemStmt::Limit(l), ElemState::Limit { tokens, last }) => {
                let within = bucket(l, tokens, last, now_ns, pkt.len);
                if within == l.over {
                    matched = false;
                    break;
                }
            }
            (ElemStmt::Quota(q), ElemState::Quota { used }) => {
                *used += pkt.len as u64;
                if (*used > q.bytes) != q.over {
                    matched = false;
                    break;
                }
            }
            // not a guard: counting changes the list, which a guard may not borrow mutably
            #[allow(clippy::collapsible_match)]
            (ElemStmt::Connlimit { over, count }, ElemState::Conns(list)) => {
                if !count_conn(pkt, list, *over, *count) {
                    matched = false;
                    break;
                }
            }
            _ => {}
        }
    }
    matched
}

/// `ct count [over] N` (`nf_conncount_add`): drops dead connections from the list, adds the
/// packet's own, and matches when the count is within N (above N with `over`). A packet
/// without a tracked connection does not match.
fn count_conn(pkt: &Pkt, list: &mut Vec<u64>, over: bool, count: u32) -> bool {
    let handle = pkt.conn.map_or(0, |c| c.ct_handle());
    if handle == 0 {
        return false;
    }
    if let Some(env) = pkt.env {
        list.retain(|h| *h == handle || env.conn_alive(*h));
    }
    if !list.contains(&handle) {
        list.push(handle);
    }
    (list.len() as u32 > count) == over
}

/// Writes `value` into a payload field and patches the checksums that cover it: the IPv4
/// header checksum for IPv4 header fields, the transport checksum for transport fields and
/// for addresses in its pseudo-header (`nft_payload_set_eval` with its csum flags).
fn set_payload(pkt: &mut Pkt, base: Base, offset: u32, bits: u32, value: u128) -> bool {
    let Some(start) = pkt.base(base) else {
        return false;
    };
    // the smallest even-aligned span of whole bytes around the field, relative to its header
    let first = (offset / 8) as usize & !1;
    let last = (offset + bits).div_ceil(8) as usize;
    let last = last + (last - first) % 2;
    let (Some(s), Some(e)) = (start.checked_add(first), start.checked_add(last)) else {
        return false;
    };
    let Some(old) = pkt.frame.get(s..e).map(|o| o.to_vec()) else {
        return false;
    };
    if !hdr::write_bits(pkt.frame, start, offset, bits, value) {
        return false;
    }
    if pkt.frame[s..e] == old[..] {
        return true;
    }
    pkt.mangled = true;
    let l4_csum = pkt.th.and_then(|th| match pkt.l4proto {
        6 => Some(hdr::Csum {
            at: th + 16,
            udp: false,
        }),
        17 => Some(hdr::Csum {
            at: th + 6,
            udp: pkt.nfproto == 2,
        }),
        1 | 2 | 58 => Some(hdr::Csum {
            at: th + 2,
            udp: false,
        }),
        _ => None,
    });
    let overlaps = |a: usize, b: usize| first < b && a < last;
    match base {
        Base::Network if pkt.nfproto == 2 => {
            let ihl = (pkt.frame[pkt.nh] & 0xf) as usize * 4;
            if last <= ihl && !overlaps(10, 12) {
                hdr::patch_csum(
                    pkt.frame,
                    hdr::Csum {
                        at: pkt.nh + 10,
                        udp: false,
                    },
                    s,
                    &old,
                );
            }
            if overlaps(12, 20) && matches!(pkt.l4proto, 6 | 17) {
                if let Some(c) = l4_csum {
                    hdr::patch_csum(pkt.frame, c, s, &old);
                }
            }
        }
        Base::Network
            if pkt.nfproto == 10 && overlaps(8, 40) && matches!(pkt.l4proto, 6 | 17 | 58) =>
        {
            if let Some(c) = l4_csum {
                hdr::patch_csum(pkt.frame, c, s, &old);
            }
        }
        Base::Transport => {
            if let Some(c) = l4_csum {
                let at = c.at - start;
                if !overlaps(at, at + 2) {
                    hdr::patch_csum(pkt.frame, c, s, &old);
                }
            }
        }
        _ => {}
    }
    true
}

/// Runs a chain and what it jumps to. Returns the final verdict, or None when the base chain
/// ran off its end (the policy applies).
#[allow(clippy::too_many_arguments)]
fn run_chain(
    rs: &Ruleset,
    st: &mut State,
    start: usize,
    pkt: &mut Pkt,
    now_ns: u64,
    act: &mut dyn Actions,
    keybuf: &mut Vec<u128>,
    mut trace: Option<&mut Vec<TraceLine>>,
) -> Option<Verdict> {
    // the running frame (chain, next rule index) in locals; the frames jumped from in
    // `st.jumps`; goto replaces the running frame
    let (mut chain, mut ri) = (start, 0usize);
    st.jumps.clear();
    'frames: loop {
        let Some(c) = rs.chains.get(chain) else {
            return Some(Verdict::Drop);
        };
        let rules = &c.rules;
        while ri < rules.len() {
            let rule = &rules[ri];
            ri += 1;
            let mut verdict: Option<Verdict> = None;
            let mut matched = true;
            for op in &rule.ops {
                match op {
                    Op::Match(m) => {
                        // a failed load never matches, negated or not (the kernel breaks)
                        let ok = match m.test {
                            Test::InSet(s) => match m.loads.as_slice() {
                                // one key: no key buffer
                                [l] => load_rule(st, pkt, l)
                                    .map(|v| st.set_lookup(rs, s, &[v], now_ns).is_some()),
                                loads => key(st, pkt, loads, keybuf)
                                    .then(|| st.set_lookup(rs, s, keybuf, now_ns).is_some()),
                            },
                            _ => match m.loads.as_slice() {
                                [l] => load_rule(st, pkt, l).map(|v| test(v, &m.test)),
                                _ => None,
                            },
                        };
                        if ok != Some(!m.negate) {
                            matched = false;
                            break;
                        }
                    }
                    Op::Verdict(v) => {
                        verdict = Some(v.clone());
                        break;
                    }
                    Op::VmapConst { key, elems } => {
                        let found = load_rule(st, pkt, key)
                            .and_then(|v| elems.iter().find(|(k, _)| *k == v));
                        match found {
                            Some((_, v)) => {
                                verdict = Some(v.clone());
                                break;
                            }
                            None => {
                                matched = false;
                                break;
                            }
                        }
                    }
                    Op::Counter(i) => {
                        if let Some(c) = st.counters.get_mut(*i) {
                            c.0 += 1;
                            c.1 += pkt.len as u64;
                        }
                    }
                    Op::Nat(spec) if spec.only_nfproto != 0 && spec.only_nfproto != pkt.nfproto => {
                    }
                    Op::Nat(spec) => {
                        let addr = match &spec.addr {
                            None => None,
                            Some((v, hi)) => match eval_value(rs, st, pkt, v, keybuf, now_ns) {
                                Some(lo) => Some((lo, hi.unwrap_or(lo))),
                                None => {
                                    matched = false;
                                    break;
                                }
                            },
                        };
                        let port = match &spec.port {
                            None => None,
                            Some((v, hi)) => match eval_value(rs, st, pkt, v, keybuf, now_ns) {
                                Some(lo) => Some((lo as u16, hi.unwrap_or(lo as u16))),
                                None => {
                                    matched = false;
                                    break;
                                }
                            },
                        };
                        act.nat(pkt, spec, addr, port);
                        // NAT statements are terminal (accept) in the kernel
                        verdict = Some(Verdict::Accept);
                        break;
                    }
                    Op::Notrack => act.notrack(pkt),
                    Op::FlowAdd(ft) => act.flow_add(pkt, ft),
                    _ => match rare_op(rs, st, rule, op, pkt, now_ns, act, keybuf) {
                        Step::Next => {}
                        Step::Stop => {
                            matched = false;
                            break;
                        }
                        Step::End(v) => {
                            verdict = Some(v);
                            break;
                        }
                    },
                }
            }
            if !matched {
                continue;
            }
            st.hit(chain, ri - 1);
            let Some(v) = verdict else { continue };
            if let Some(t) = trace.as_deref_mut() {
                t.push(TraceLine {
                    chain,
                    rule: Some(ri - 1),
                    verdict: verdict_text(rs, &v),
                });
            }
            match v {
                Verdict::Continue => continue,
                Verdict::Accept | Verdict::Drop | Verdict::Queue | Verdict::Stolen => {
                    return Some(v)
                }
                Verdict::Return => {
                    let (c, r) = st.jumps.pop()?;
                    (chain, ri) = (c, r);
                    continue 'frames;
                }
                Verdict::Jump(c) => {
                    if st.jumps.len() >= JUMP_STACK {
                        // the kernel refuses such rulesets at load; be safe at run time
                        return Some(Verdict::Drop);
                    }
                    st.jumps.push((chain, ri));
                    (chain, ri) = (c, 0);
                    continue 'frames;
                }
                Verdict::Goto(c) => {
                    (chain, ri) = (c, 0);
                    continue 'frames;
                }
            }
        }
        // end of chain: return to the caller, or fall off the base chain
        (chain, ri) = st.jumps.pop()?;
    }
}

/// The statements and matches a ruleset such as fw4's seldom runs, apart from the rule
/// loop ([`run_chain`]): in it, their tables (limits, quotas, objects, maps) were loaded up
/// front on every chain run, whether a rule used them or not.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn rare_op(
    rs: &Ruleset,
    st: &mut State,
    rule: &CRule,
    op: &Op,
    pkt: &mut Pkt,
    now_ns: u64,
    act: &mut dyn Actions,
    keybuf: &mut Vec<u128>,
) -> Step {
    match op {
        Op::Vmap { keys, map } => {
            if !key(st, pkt, keys, keybuf) {
                return Step::Stop;
            }
            match st.set_lookup(rs, *map, keybuf, now_ns) {
                Some(SetData::Verdict(v)) => {
                    return Step::End(v);
                }
                _ => {
                    return Step::Stop;
                }
            }
        }
        Op::Limit(i) => {
            let (Some(spec), Some((tokens, last))) = (rs.limits.get(*i), st.buckets.get_mut(*i))
            else {
                return Step::Next;
            };
            // `limit rate X` matches within the rate, `over` matches above it
            if bucket(spec, tokens, last, now_ns, pkt.len) == spec.over {
                return Step::Stop;
            }
        }
        Op::Connlimit { slot, over, count } => {
            if st.connlimits.len() <= *slot {
                st.connlimits.resize(*slot + 1, vec![]);
            }
            let Some(list) = st.connlimits.get_mut(*slot) else {
                return Step::Next;
            };
            if !count_conn(pkt, list, *over, *count) {
                return Step::Stop;
            }
        }
        Op::Quota(i) => {
            let (Some(spec), Some(used)) = (rs.quotas.get(*i), st.quota_used.get_mut(*i)) else {
                return Step::Next;
            };
            *used += pkt.len as u64;
            let over = *used > spec.bytes;
            if over != spec.over {
                return Step::Stop;
            }
        }
        Op::ObjMap { kind, keys, map } => {
            // no object for the key: the kernel's objref map lookup breaks
            let obj = if key(st, pkt, keys, keybuf) {
                match st.set_lookup(rs, *map, keybuf, now_ns) {
                    Some(SetData::Value(i)) => Some(i as usize),
                    _ => None,
                }
            } else {
                None
            };
            let Some(i) = obj else {
                return Step::Stop;
            };
            match kind {
                ObjKind::Counter => {
                    if let Some(c) = st.counters.get_mut(i) {
                        c.0 += 1;
                        c.1 += pkt.len as u64;
                    }
                }
                ObjKind::Quota => {
                    let (Some(spec), Some(used)) = (rs.quotas.get(i), st.quota_used.get_mut(i))
                    else {
                        return Step::Next;
                    };
                    *used += pkt.len as u64;
                    if (*used > spec.bytes) != spec.over {
                        return Step::Stop;
                    }
                }
                ObjKind::Limit => {
                    let (Some(spec), Some((tokens, last))) =
                        (rs.limits.get(i), st.buckets.get_mut(i))
                    else {
                        return Step::Next;
                    };
                    if bucket(spec, tokens, last, now_ns, pkt.len) == spec.over {
                        return Step::Stop;
                    }
                }
                ObjKind::CtHelper => pkt.new_ct_helper = rs.helpers.get(i).cloned(),
                // refused at compile time: the kernel has no maps of these
                ObjKind::CtTimeout | ObjKind::CtExpect | ObjKind::Secmark => {}
                ObjKind::Synproxy => {
                    let Some(spec) = rs.synproxies.get(i) else {
                        return Step::Next;
                    };
                    match synproxy_op(pkt, spec, act) {
                        Step::Next => {}
                        Step::Stop => {
                            return Step::Stop;
                        }
                        Step::End(v) => {
                            return Step::End(v);
                        }
                    }
                }
            }
        }
        Op::Log(spec) => act.log_spec(pkt, spec, &rule.text),
        Op::Reject(r) => {
            act.reject(pkt, r);
            return Step::End(Verdict::Drop);
        }
        Op::SetMeta(k, v) => {
            if let Some(x) = eval_value(rs, st, pkt, v, keybuf, now_ns) {
                match k {
                    MetaK::Mark => pkt.mark = x as u32,
                    MetaK::Priority => pkt.priority = x as u32,
                    MetaK::PktType => pkt.pkttype = x as u8,
                    MetaK::Nftrace => pkt.nftrace = x & 1 == 1,
                    MetaK::Secmark => pkt.secmark = x as u32,
                    _ => {}
                }
            }
        }
        Op::SetCt(k, v) => {
            let Some(x) = eval_value(rs, st, pkt, v, keybuf, now_ns) else {
                return Step::Next;
            };
            match k {
                CtK::Mark => pkt.new_ct_mark = Some(x as u32),
                CtK::Zone => pkt.new_ct_zone = Some(x as u16),
                CtK::Secmark => pkt.new_ct_secmark = Some(x as u32),
                // `ct label set N` sets bit N, keeping the others
                CtK::Label => {
                    pkt.new_ct_label = Some(pkt.new_ct_label.unwrap_or_else(|| pkt.ct_label()) | x)
                }
                _ => {}
            }
        }
        Op::SetCtHelper(h) => pkt.new_ct_helper = Some(h.clone()),
        Op::SetCtTimeout(i) => {
            // `nft_ct_timeout_obj_eval`: a connection not yet confirmed, of the
            // object's protocol; anything else is left alone
            let new = pkt.ct_unconfirmed();
            if new
                && rs
                    .ct_timeouts
                    .get(*i)
                    .is_some_and(|t| t.l4proto == pkt.l4proto)
            {
                pkt.new_ct_timeout = Some(*i);
            }
        }
        Op::CtExpect(i) => {
            // `nft_ct_expect_obj_eval`: only the first packet of a connection
            // announces one; otherwise the rule stops here
            if !pkt.ct_unconfirmed() {
                return Step::Stop;
            }
            pkt.new_ct_expect.push(*i);
        }
        Op::SetSecmark(id) => pkt.secmark = *id,
        Op::Synproxy(spec) => match synproxy_op(pkt, spec, act) {
            Step::Next => {}
            Step::Stop => {
                return Step::Stop;
            }
            Step::End(v) => {
                return Step::End(v);
            }
        },
        Op::Tproxy { .. } => {
            // `nft_tproxy_eval` assigns the packet to a transparent socket it
            // finds (an established one for its own addresses and ports, else a
            // listener at the statement's address and port) and otherwise, like
            // for a family or transport protocol it does not serve, ends the rule
            // with NFT_BREAK: the statements after it do not run, and the packet
            // goes on to the next rule, routed as if the rule were not there.
            // This router has no sockets: `simulate` has no local stack, and in
            // `run` the host's sockets are the kernel's, which a packet handed to
            // the host reaches only through the kernel's own tproxy rules. So the
            // lookup never finds one, and the rule always stops here.
            return Step::Stop;
        }
        Op::SetPayload {
            base,
            offset,
            bits,
            l3,
            l4,
            value,
        } => {
            // nft puts the header's dependency (`meta nfproto ipv4`, `meta
            // l4proto tcp`) before the statement: a packet without that header
            // ends the rule there, and the statements after it do not run
            if l3.is_some_and(|p| p != pkt.nfproto) || l4.is_some_and(|p| p != pkt.l4proto) {
                return Step::Stop;
            }
            if let Some(x) = eval_value(rs, st, pkt, value, keybuf, now_ns) {
                set_payload(pkt, *base, *offset, *bits, x);
            }
        }
        Op::ClampMss(v) => {
            if let (Some(th), 6, Some(mss)) = (
                pkt.th,
                pkt.l4proto,
                eval_value(rs, st, pkt, v, keybuf, now_ns),
            ) {
                let mss = mss.min(u16::MAX as u128) as u16;
                if let Some(l4) = pkt.frame.get_mut(th..) {
                    // a malformed TCP header is left alone, as the kernel does
                    if let Ok(true) = nft_wire::rewrite::clamp_tcp_mss(l4, mss) {
                        pkt.mangled = true;
                    }
                }
            }
        }
        // not a guard: `dynset` adds to the set, a side effect
        #[allow(clippy::collapsible_match)]
        Op::Dynset(d) => {
            if !dynset(rs, st, d, pkt, now_ns, keybuf) {
                return Step::Stop;
            }
        }
        Op::Dup { addr, dev, .. } => {
            let a = addr
                .as_ref()
                .and_then(|v| eval_value(rs, st, pkt, v, keybuf, now_ns));
            let d = dev
                .as_ref()
                .and_then(|v| eval_value(rs, st, pkt, v, keybuf, now_ns))
                .map(|x| x as u32);
            act.dup(pkt, a, d);
        }
        Op::Fwd { addr, dev, v6 } => {
            if addr.is_some() {
                // `nft_fwd_neigh`: a packet of the other family breaks the rule;
                // one whose TTL (hop limit) would run out is dropped, without an
                // ICMP error (the check came to the kernel in 2025: 6.18 has it)
                if pkt.nfproto != if *v6 { 10 } else { 2 } {
                    return Step::Stop;
                }
                let ttl_at = pkt.nh + if *v6 { 7 } else { 8 };
                if pkt.frame.get(ttl_at).is_none_or(|t| *t <= 1) {
                    return Step::End(Verdict::Drop);
                }
            }
            let a = addr
                .as_ref()
                .and_then(|v| eval_value(rs, st, pkt, v, keybuf, now_ns));
            let Some(d) = eval_value(rs, st, pkt, dev, keybuf, now_ns) else {
                return Step::Stop;
            };
            act.fwd(pkt, a, d as u32);
            return Step::End(Verdict::Stolen);
        }
        _ => {}
    }
    Step::Next
}

/// What a statement does to the rest of its rule.
enum Step {
    /// The rule goes on.
    Next,
    /// The rule stops, unmatched (`NFT_BREAK`).
    Stop,
    /// The rule ends the chain with a verdict.
    End(Verdict),
}

/// `nft_synproxy_do_eval` (the statement and the object alike): not TCP, no verdict (the
/// rule stops); TCP goes to the router ([`Actions::synproxy`]: it drops a bad checksum or
/// options cut short); a SYN or an ACK is the router's and its walk ends; other segments go
/// on.
fn synproxy_op(pkt: &Pkt, spec: &crate::synproxy::SynproxySpec, act: &mut dyn Actions) -> Step {
    if pkt.l4proto != 6 {
        return Step::Stop;
    }
    act.synproxy(pkt, spec);
    match pkt.th.and_then(|t| pkt.frame.get(t + 13)) {
        Some(f) if f & (crate::synproxy::SYN | crate::synproxy::ACK) != 0 => {
            Step::End(Verdict::Stolen)
        }
        _ => Step::Next,
    }
}

fn eval_value(
    rs: &Ruleset,
    st: &mut State,
    pkt: &Pkt,
    v: &Value,
    keybuf: &mut Vec<u128>,
    now_ns: u64,
) -> Option<u128> {
    match v {
        Value::Const(c) => Some(*c),
        Value::Load(l) => load_st(st, pkt, l),
        Value::Map { keys, map } => {
            if !key(st, pkt, keys, keybuf) {
                return None;
            }
            match st.set_lookup(rs, *map, keybuf, now_ns) {
                Some(SetData::Value(x)) => Some(x),
                _ => None,
            }
        }
    }
}

/// The rule view of a parsed frame arriving on `iif`, its metadata in `s` (which
/// [`PktState::new`] fills).
pub fn pkt_from_frame<'a>(
    frame: &'a mut [u8],
    m: &nft_wire::PacketMeta,
    iif: u32,
    iifname: &str,
    s: &'a mut PktState,
) -> Pkt<'a> {
    *s = PktState::new(m, iif, ifname_value(iifname));
    Pkt {
        frame,
        conn: None,
        env: None,
        s,
    }
}

/// A verdict as `nft monitor trace` prints it (`accept`, `jump forward_lan`).
pub fn verdict_text(rs: &Ruleset, v: &Verdict) -> String {
    let name = |c: &usize| {
        rs.chains
            .get(*c)
            .map(|x| x.name.clone())
            .unwrap_or_default()
    };
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Continue => "continue".into(),
        Verdict::Return => "return".into(),
        Verdict::Queue => "queue".into(),
        Verdict::Stolen => "stolen".into(),
        Verdict::Jump(c) => format!("jump {}", name(c)),
        Verdict::Goto(c) => format!("goto {}", name(c)),
    }
}
