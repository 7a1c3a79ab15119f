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

/// foldhash rather than SipHash: sets, maps and rule hit counts are looked up per packet.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;

use nft_lang::ast::{self, BinOp, Const, Expr, ExprKind, Family, RelOp, StmtKind};
use nft_lang::datatype::{Dt, Val};
use nft_lang::proto::{self, Base};

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
    Payload { base: Base, offset: u32, bits: u32, l3: Option<u8>, l4: Option<u8> },
    Meta(MetaK),
    Ct { key: CtK, reply: Option<bool> },
    /// `expr & mask ^ xor`, `expr << n`, `expr >> n`
    Bitwise { inner: Box<Load>, and: u128, xor: u128 },
    /// `rt mtu`: the TCP MSS the route allows (route MTU less the IP and TCP headers).
    RtTcpMss,
    Shift { inner: Box<Load>, left: bool, n: u32 },
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
    NfProto,
    L4Proto,
    PktType,
    IifGroup,
    OifGroup,
    Priority,
    Nftrace,
    Cpu,
    Random,
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
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Test {
    Cmp(RelOp, u128),
    /// Inclusive range.
    Range(u128, u128),
    /// `ct state established,related`: any of these bits set.
    AnyBit(u128),
    /// `value & mask == want` (prefixes, wildcard interface names).
    Masked { mask: u128, want: u128 },
    /// Membership in compiled set `n`.
    InSet(usize),
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
    Map { keys: Vec<Load>, map: usize },
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
    Icmp { v6: bool, code: u8 },
    /// icmpx: the code is translated per family (no-route, port-unreachable,
    /// host-unreachable, admin-prohibited).
    Icmpx(u8),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Match(Match),
    Verdict(Verdict),
    /// Verdict map keyed by the loads.
    Vmap { keys: Vec<Load>, map: usize },
    Counter(usize),
    Limit(usize),
    Quota(usize),
    Log { prefix: Option<String>, level: u8 },
    Reject(Reject),
    Nat(Box<NatSpec>),
    Notrack,
    FlowAdd(String),
    SetMeta(MetaK, Value),
    SetCt(CtK, Value),
    /// Rewrite a payload field (`ip dscp set cs1`).
    SetPayload { base: Base, offset: u32, bits: u32, l3: Option<u8>, l4: Option<u8>, value: Value },
    /// `tcp option maxseg size set ...`: lower the MSS option to the value (never raise it,
    /// as the kernel's exthdr set for maxseg does).
    ClampMss(Value),
    /// Add/update an element of a dynamic set, keyed by the loads.
    SetAdd { set: usize, keys: Vec<Load>, timeout_ms: Option<u64> },
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

/// A set or map: exact keys in a hash map, intervals (any component a range) in a list.
#[derive(Clone, Debug, Default)]
pub struct CSet {
    pub name: String,
    pub exact: HashMap<Vec<u128>, SetData>,
    pub ranges: Vec<(Vec<(u128, u128)>, SetData)>,
    /// Dynamic elements with their expiry (ns).
    pub dynamic: HashMap<Vec<u128>, Option<u64>>,
    pub timeout_ms: Option<u64>,
    pub size: Option<usize>,
}

impl CSet {
    pub fn lookup(&self, key: &[u128], now_ns: u64) -> Option<&SetData> {
        if let Some(d) = self.exact.get(key) {
            return Some(d);
        }
        for (r, d) in &self.ranges {
            if r.len() == key.len() && r.iter().zip(key).all(|((lo, hi), k)| lo <= k && k <= hi) {
                return Some(d);
            }
        }
        match self.dynamic.get(key) {
            Some(None) => Some(&SetData::None),
            Some(Some(exp)) if *exp > now_ns => Some(&SetData::None),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct LimitSpec {
    /// Tokens per second (packets or bytes).
    pub rate_per_s: f64,
    pub burst: f64,
    pub bytes: bool,
    pub over: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct QuotaSpec {
    pub bytes: u64,
    pub over: bool,
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
    pub counters: usize,
    pub flowtables: Vec<(String, ast::Flowtable)>,
}

/// Counters, token buckets, quotas and dynamic set contents: what changes as packets pass.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub counters: Vec<(u64, u64)>,
    /// (tokens, last refill ns)
    pub buckets: Vec<(f64, u64)>,
    pub quota_used: Vec<u64>,
    pub rule_hits: HashMap<(usize, usize), u64>,
}

impl State {
    pub fn new(rs: &Ruleset) -> State {
        State {
            counters: vec![(0, 0); rs.counters],
            buckets: rs.limits.iter().map(|l| (l.burst.max(1.0), 0)).collect(),
            quota_used: vec![0; rs.quotas.len()],
            rule_hits: HashMap::default(),
        }
    }
}

fn bad(what: impl Into<String>, table: &str, chain: &str) -> CompileError {
    CompileError { what: what.into(), table: table.into(), chain: chain.into() }
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
        "nfproto" => MetaK::NfProto,
        "l4proto" => MetaK::L4Proto,
        "pkttype" => MetaK::PktType,
        "iifgroup" => MetaK::IifGroup,
        "oifgroup" => MetaK::OifGroup,
        "priority" => MetaK::Priority,
        "nftrace" => MetaK::Nftrace,
        "cpu" => MetaK::Cpu,
        "random" => MetaK::Random,
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
                let mask = if n == 0 { 0 } else { u128::MAX << (128 - 8 * n as u32) };
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
            ExprKind::Payload { proto: p, field } => {
                let f = proto::payload_field(p, field).ok_or_else(|| self.err(format!("payload {p} {field}")))?;
                let pr = proto::protocol(p).ok_or_else(|| self.err(format!("protocol {p}")))?;
                let (l3, l4) = match pr.layer {
                    proto::Layer::Network => (self.nfproto_of(p), None),
                    proto::Layer::Transport => (self.nfproto_of(p), pr.number.map(|n| n as u8)),
                    proto::Layer::Link => (None, None),
                    proto::Layer::Inner => return Err(self.err(format!("inner header {p}"))),
                };
                if p == "arp" || p == "vlan" {
                    return Err(self.err(format!("{p} headers")));
                }
                Ok(Load::Payload { base: f.base, offset: f.offset, bits: f.bits, l3, l4 })
            }
            ExprKind::RawPayload { base, offset, len } => {
                let b = match base.as_str() {
                    "ll" => Base::Link,
                    "nh" => Base::Network,
                    "th" => Base::Transport,
                    _ => return Err(self.err("inner raw payload")),
                };
                Ok(Load::Payload { base: b, offset: *offset, bits: *len, l3: None, l4: None })
            }
            ExprKind::Meta(k) => meta_k(k).map(Load::Meta).ok_or_else(|| self.err(format!("meta {k}"))),
            ExprKind::Rt { key, .. } if key == "mtu" => Ok(Load::RtTcpMss),
            ExprKind::Ct { key, dir, .. } => {
                let k = ct_k(key).ok_or_else(|| self.err(format!("ct {key}")))?;
                Ok(Load::Ct { key: k, reply: dir.as_ref().map(|d| d == "reply") })
            }
            ExprKind::Binop(op, l, r) => {
                let inner = Box::new(self.load1(l)?);
                let c = match &r.kind {
                    ExprKind::Const(c) => const_value(c).map(|x| x.0).ok_or_else(|| self.err("binop with a string"))?,
                    _ => return Err(self.err("binop with a non-constant operand")),
                };
                Ok(match op {
                    BinOp::And => Load::Bitwise { inner, and: c, xor: 0 },
                    BinOp::Or => Load::Bitwise { inner, and: !c, xor: c },
                    BinOp::Xor => Load::Bitwise { inner, and: u128::MAX, xor: c },
                    BinOp::Shl => Load::Shift { inner, left: true, n: c as u32 },
                    BinOp::Shr => Load::Shift { inner, left: false, n: c as u32 },
                })
            }
            other => Err(self.err(format!("expression {}", kind_name(other)))),
        }
    }

    fn value(&mut self, e: &Expr) -> Result<Value, CompileError> {
        match &e.kind {
            ExprKind::Const(c) => Ok(Value::Const(const_value(c).ok_or_else(|| self.err("string value"))?.0)),
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
            ExprKind::SetRef(n) => self.set_ids.get(n).copied().ok_or_else(|| self.err(format!("set @{n}"))),
            ExprKind::Set(elems) => {
                let mut s = CSet { name: format!("__anon{}", self.out.sets.len()), ..Default::default() };
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
                    Test::Masked { mask: m, want: v & m }
                } else if matches!(op, RelOp::Implicit | RelOp::Neg) && c.dt.is_bitmask() {
                    Test::AnyBit(v)
                } else {
                    Test::Cmp(if cmp_op == RelOp::Implicit { RelOp::Eq } else { cmp_op }, v)
                }
            }
            ExprKind::Range(a, b) => match (&a.kind, &b.kind) {
                (ExprKind::Const(x), ExprKind::Const(y)) => Test::Range(const_value(x).map(|v| v.0).unwrap_or(0), const_value(y).map(|v| v.0).unwrap_or(0)),
                _ => return Err(self.err("non-constant range")),
            },
            ExprKind::Prefix(a, len) => {
                let ExprKind::Const(c) = &a.kind else { return Err(self.err("non-constant prefix")) };
                let bits = left.bits.max(1).min(128);
                let mask = prefix_mask(bits, *len);
                Test::Masked { mask, want: const_value(c).map(|v| v.0).unwrap_or(0) & mask }
            }
            ExprKind::Set(_) | ExprKind::SetRef(_) => Test::InSet(self.set_ref(right, false)?),
            other => return Err(self.err(format!("comparison with {}", kind_name(other)))),
        };
        Ok(Op::Match(Match { loads, test, negate }))
    }

    fn verdict(&self, v: &ast::Verdict) -> Result<Verdict, CompileError> {
        Ok(match v {
            ast::Verdict::Accept => Verdict::Accept,
            ast::Verdict::Drop => Verdict::Drop,
            ast::Verdict::Continue => Verdict::Continue,
            ast::Verdict::Return => Verdict::Return,
            ast::Verdict::Queue => Verdict::Queue,
            ast::Verdict::Jump(c) => Verdict::Jump(*self.chain_ids.get(c).ok_or_else(|| self.err(format!("jump to unknown chain {c}")))?),
            ast::Verdict::Goto(c) => Verdict::Goto(*self.chain_ids.get(c).ok_or_else(|| self.err(format!("goto to unknown chain {c}")))?),
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
            StmtKind::Counter { .. } => {
                ops.push(Op::Counter(self.out.counters));
                self.out.counters += 1;
            }
            StmtKind::Limit(l) => {
                let per = match l.unit.as_str() {
                    "second" => 1.0,
                    "minute" => 60.0,
                    "hour" => 3600.0,
                    "day" => 86400.0,
                    _ => 604800.0,
                };
                let rate = l.rate as f64 / per;
                let burst = l.burst.unwrap_or(if l.bytes { 0 } else { 5 }) as f64;
                self.out.limits.push(LimitSpec { rate_per_s: rate, burst: if l.bytes { burst.max(l.rate as f64) } else { burst.max(1.0) }, bytes: l.bytes, over: l.over });
                ops.push(Op::Limit(self.out.limits.len() - 1));
            }
            StmtKind::Quota { over, bytes, .. } => {
                self.out.quotas.push(QuotaSpec { bytes: *bytes, over: *over });
                ops.push(Op::Quota(self.out.quotas.len() - 1));
            }
            StmtKind::Log(l) => {
                let prefix = l.prefix.as_ref().map(|p| match &p.kind {
                    ExprKind::Quoted(s) | ExprKind::Symbol(s) => s.clone(),
                    ExprKind::Const(Const { val: Val::Str(s), .. }) => s.clone(),
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
                    _ => 4,
                };
                ops.push(Op::Log { prefix, level });
            }
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
                        ExprKind::Range(lo, hi) => (self.value(lo)?, match self.value(hi)? {
                            Value::Const(h) => Some(h),
                            _ => return Err(self.err("NAT range with a computed end")),
                        }),
                        ExprKind::Prefix(base, len) => {
                            let Value::Const(b) = self.value(base)? else { return Err(self.err("NAT prefix")) };
                            let bits = if a.dt == Dt::Ipv6Addr { 128 } else { 32 };
                            let m = prefix_mask(bits, *len);
                            let hostmask = !m & if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
                            (Value::Const(b & m), Some((b & m) | hostmask))
                        }
                        _ => (self.value(a)?, None),
                    }),
                };
                let port = match &n.port {
                    None => None,
                    Some(p) => Some(match &p.kind {
                        ExprKind::Range(lo, hi) => (self.value(lo)?, match self.value(hi)? {
                            Value::Const(h) => Some(h as u16),
                            _ => return Err(self.err("NAT port range with a computed end")),
                        }),
                        _ => (self.value(p)?, None),
                    }),
                };
                let ipv6 = n.family.as_deref() == Some("ip6") || self.table.family == Family::Ip6;
                let has = |f: &str| n.flags.iter().any(|x| x == f);
                ops.push(Op::Nat(Box::new(NatSpec { kind, addr, ipv6, port, persistent: has("persistent"), random: has("random"), fully_random: has("fully-random") })));
            }
            StmtKind::Notrack => ops.push(Op::Notrack),
            // No user-space queue listens here: the kernel drops such packets, unless `bypass`
            // lets them through.
            StmtKind::Queue { flags, .. } => ops.push(Op::Verdict(if flags.iter().any(|f| f == "bypass") { Verdict::Accept } else { Verdict::Queue })),
            StmtKind::FlowAdd(ft) => ops.push(Op::FlowAdd(ft.clone())),
            StmtKind::Set { key, value } => {
                let v = self.value(value)?;
                match &key.kind {
                    ExprKind::Meta(k) => ops.push(Op::SetMeta(meta_k(k).ok_or_else(|| self.err(format!("meta {k} set")))?, v)),
                    ExprKind::Ct { key: k, .. } => ops.push(Op::SetCt(ct_k(k).ok_or_else(|| self.err(format!("ct {k} set")))?, v)),
                    ExprKind::TcpOpt { opt, field: Some(f) } if opt == "maxseg" && f == "size" => ops.push(Op::ClampMss(v)),
                    ExprKind::Payload { .. } => {
                        let Load::Payload { base, offset, bits, l3, l4 } = self.load1(key)? else { unreachable!() };
                        ops.push(Op::SetPayload { base, offset, bits, l3, l4, value: v });
                    }
                    _ => return Err(self.err("this set statement")),
                }
            }
            StmtKind::Dynset { op: ast::SetOp::Add | ast::SetOp::Update, set, key, stmts, .. } if stmts.is_empty() => {
                let keys = self.load(key)?;
                let id = *self.set_ids.get(set).ok_or_else(|| self.err(format!("set @{set}")))?;
                ops.push(Op::SetAdd { set: id, keys, timeout_ms: None });
            }
            other => return Err(self.err(format!("statement {}", stmt_name(other)))),
        }
        Ok(())
    }
}

fn prefix_mask(bits: u32, len: u32) -> u128 {
    let bits = bits.clamp(1, 128);
    let len = len.min(bits);
    let full = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
    if len == 0 {
        0
    } else {
        full & !(full >> len)
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
            (ExprKind::Const(x), ExprKind::Const(y)) => Some((const_value(x)?.0, const_value(y)?.0)),
            _ => None,
        },
        ExprKind::Prefix(a, len) => {
            let ExprKind::Const(c) = &a.kind else { return None };
            let bits = if a.bits == 0 { c.bits } else { a.bits };
            let m = prefix_mask(bits, *len);
            let full = if bits >= 128 { u128::MAX } else { (1u128 << bits) - 1 };
            let v = const_value(c)?.0 & m;
            Some((v, v | (!m & full)))
        }
        ExprKind::Elem(inner, _) => elem_const(inner),
        _ => None,
    }
}

fn add_element(s: &mut CSet, el: &Expr, is_map: bool, chains: &HashMap<String, usize>) -> Result<(), String> {
    let (key, data) = match &el.kind {
        ExprKind::Mapping(k, v) => {
            let d = match &v.kind {
                ExprKind::Verdict(vd) => SetData::Verdict(match vd {
                    ast::Verdict::Accept => Verdict::Accept,
                    ast::Verdict::Drop => Verdict::Drop,
                    ast::Verdict::Continue => Verdict::Continue,
                    ast::Verdict::Return => Verdict::Return,
                    ast::Verdict::Queue => Verdict::Queue,
                    ast::Verdict::Jump(c) => Verdict::Jump(*chains.get(c).ok_or(format!("jump to unknown chain {c}"))?),
                    ast::Verdict::Goto(c) => Verdict::Goto(*chains.get(c).ok_or(format!("goto to unknown chain {c}"))?),
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
            out.chains.push(CChain { table: t.name.clone(), family: t.family, name: c.name.clone(), rules: vec![] });
        }
        let mut set_ids = HashMap::default();
        for s in &t.sets {
            let mut cs = CSet { name: s.name.clone(), timeout_ms: s.timeout, size: s.size.map(|x| x as usize), ..Default::default() };
            for el in &s.elements {
                add_element(&mut cs, el, s.is_map, &chain_ids).map_err(|w| bad(w, &t.name, &format!("set {}", s.name)))?;
            }
            set_ids.insert(s.name.clone(), out.sets.len());
            out.sets.push(cs);
        }
        for ft in &t.flowtables {
            out.flowtables.push((t.name.clone(), ft.clone()));
        }
        for (i, c) in t.chains.iter().enumerate() {
            let mut rules = vec![];
            for r in &c.rules {
                let mut comp = Compiler { table: t, chain: &c.name, chain_ids: &chain_ids, set_ids: &set_ids, out: &mut out };
                let mut ops = vec![];
                for st in &r.stmts {
                    comp.stmt(st, &mut ops)?;
                }
                let text = nft_lang::print::rule(r, t.family, &Default::default());
                rules.push(CRule { ops, handle: r.handle, text });
            }
            out.chains[base_idx + i].rules = rules;
            if let Some(h) = &c.hook {
                let hook = Hook::parse(&h.hook).ok_or_else(|| bad(format!("hook {}", h.hook), &t.name, &c.name))?;
                let kind = match h.kind.as_str() {
                    "nat" => ChainType::Nat,
                    "route" => ChainType::Route,
                    _ => ChainType::Filter,
                };
                let prio = match &h.prio {
                    ast::Prio::Num(n) => *n,
                    ast::Prio::Named(n, off) => nft_lang::print::std_prio_value(t.family, n).unwrap_or(0) + off,
                    ast::Prio::Var(v) => return Err(bad(format!("priority {v}"), &t.name, &c.name)),
                };
                out.base.push(BaseChain { hook, kind, prio, family: t.family, chain: base_idx + i, policy_drop: h.policy.as_deref() == Some("drop"), devices: h.devices.clone() });
            }
        }
    }
    // stable: equal priorities keep table order, as the kernel keeps registration order
    out.base.sort_by_key(|b| (b.hook, b.prio));
    Ok(out)
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
}

/// The packet and its metadata as rules see them.
pub struct Pkt<'a> {
    pub frame: &'a mut [u8],
    /// Offsets of the network and transport headers in `frame`.
    pub nh: usize,
    pub th: Option<usize>,
    pub nfproto: u8,
    pub l4proto: u8,
    pub ethertype: u16,
    /// L3 length (`meta length`).
    pub len: u32,
    pub iif: u32,
    pub oif: u32,
    pub iifname: u128,
    pub oifname: u128,
    pub mark: u32,
    pub pkttype: u8,
    pub ct: Option<CtInfo>,
    pub new_ct_mark: Option<u32>,
    /// MTU of the route the packet takes, once routed (0 before).
    pub rt_mtu: u32,
}

/// Effects the router carries out for statements it owns.
pub trait Actions {
    fn nat(&mut self, pkt: &Pkt, spec: &NatSpec, addr: Option<(u128, u128)>, port: Option<(u16, u16)>);
    fn reject(&mut self, pkt: &Pkt, r: &Reject);
    fn flow_add(&mut self, pkt: &Pkt, flowtable: &str);
    fn notrack(&mut self, pkt: &Pkt);
    fn log(&mut self, pkt: &Pkt, prefix: Option<&str>, level: u8, rule: &str);
}

/// The outcome of a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookVerdict {
    Accept,
    Drop,
    /// `queue`: handed to a user-space queue; without a listener the packet is dropped.
    Queue,
}

fn read_bits(data: &[u8], start: usize, offset: u32, bits: u32) -> Option<u128> {
    if bits == 0 || bits > 128 {
        return None;
    }
    let first = start + (offset / 8) as usize;
    let shift = offset % 8;
    let nbytes = (shift + bits).div_ceil(8) as usize;
    let bytes = data.get(first..first.checked_add(nbytes)?)?;
    if nbytes > 16 {
        // a 128-bit field at an odd bit offset: combine the two reads
        let hi = read_bits(data, start, offset, 64)?;
        let lo = read_bits(data, start, offset + 64, bits - 64)?;
        return Some((hi << (bits - 64)) | lo);
    }
    let mut v: u128 = 0;
    for b in bytes {
        v = (v << 8) | *b as u128;
    }
    let total = nbytes as u32 * 8;
    v >>= total - shift - bits;
    let mask = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
    Some(v & mask)
}

impl Pkt<'_> {
    fn base(&self, b: Base) -> Option<usize> {
        match b {
            Base::Link => Some(0),
            Base::Network => Some(self.nh),
            Base::Transport => self.th,
            Base::Inner => None,
        }
    }

    pub fn load(&self, l: &Load) -> Option<u128> {
        match l {
            Load::Payload { base, offset, bits, l3, l4 } => {
                if l3.is_some_and(|p| p != self.nfproto) || l4.is_some_and(|p| p != self.l4proto) {
                    return None;
                }
                read_bits(self.frame, self.base(*base)?, *offset, *bits)
            }
            Load::Meta(k) => Some(match k {
                MetaK::Length => self.len as u128,
                MetaK::Protocol => self.ethertype as u128,
                MetaK::Mark => self.mark as u128,
                MetaK::Iif => self.iif as u128,
                MetaK::Oif => self.oif as u128,
                MetaK::IifName => self.iifname,
                MetaK::OifName => self.oifname,
                MetaK::IifType | MetaK::OifType => 1,
                MetaK::NfProto => self.nfproto as u128,
                MetaK::L4Proto => self.l4proto as u128,
                MetaK::PktType => self.pkttype as u128,
                MetaK::IifGroup | MetaK::OifGroup | MetaK::Priority | MetaK::Nftrace | MetaK::Cpu | MetaK::Random => 0,
            }),
            Load::Ct { key, reply } => {
                let Some(ct) = &self.ct else {
                    // untracked: only `ct state` answers
                    return (*key == CtK::State).then_some(64);
                };
                let rep = reply.unwrap_or(false);
                Some(match key {
                    CtK::State => ct.state as u128,
                    CtK::Direction => ct.reply as u128,
                    CtK::Status => ct.status as u128,
                    CtK::Mark => self.new_ct_mark.unwrap_or(ct.mark) as u128,
                    CtK::Expiration => ct.expiration_ms as u128,
                    CtK::L3Proto => ct.l3proto as u128,
                    CtK::Protocol => ct.protocol as u128,
                    CtK::Saddr => if rep { ct.reply_src } else { ct.orig_src },
                    CtK::Daddr => if rep { ct.reply_dst } else { ct.orig_dst },
                    CtK::ProtoSrc => (if rep { ct.reply_sport } else { ct.orig_sport }) as u128,
                    CtK::ProtoDst => (if rep { ct.reply_dport } else { ct.orig_dport }) as u128,
                    CtK::Zone => ct.zone as u128,
                    CtK::Packets => match reply {
                        None => (ct.packets[0] + ct.packets[1]) as u128,
                        Some(r) => ct.packets[*r as usize] as u128,
                    },
                    CtK::Bytes => match reply {
                        None => (ct.bytes[0] + ct.bytes[1]) as u128,
                        Some(r) => ct.bytes[*r as usize] as u128,
                    },
                    CtK::Label => ct.label,
                })
            }
            Load::Bitwise { inner, and, xor } => self.load(inner).map(|v| (v & and) ^ xor),
            Load::RtTcpMss => {
                if self.rt_mtu == 0 {
                    return None;
                }
                let hdrs = if self.nfproto == 10 { 40 + 20 } else { 20 + 20 };
                Some(self.rt_mtu.saturating_sub(hdrs) as u128)
            }
            Load::Shift { inner, left, n } => self.load(inner).map(|v| if *left { v.checked_shl(*n).unwrap_or(0) } else { v.checked_shr(*n).unwrap_or(0) }),
        }
    }

    fn key(&self, loads: &[Load], buf: &mut Vec<u128>) -> bool {
        buf.clear();
        for l in loads {
            match self.load(l) {
                Some(v) => buf.push(v),
                None => return false,
            }
        }
        true
    }
}

fn test(v: u128, t: &Test) -> bool {
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
pub fn run_hook(rs: &Ruleset, st: &mut State, hook: Hook, families: &[Family], pkt: &mut Pkt, now_ns: u64, act: &mut dyn Actions, trace: Option<&mut Vec<TraceLine>>) -> HookVerdict {
    let mut trace = trace;
    for b in rs.base.iter().filter(|b| b.hook == hook && families.contains(&b.family)) {
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
pub fn run_base_chain(rs: &Ruleset, st: &mut State, b: &BaseChain, pkt: &mut Pkt, now_ns: u64, act: &mut dyn Actions, trace: Option<&mut Vec<TraceLine>>) -> (HookVerdict, bool) {
    let mut trace = trace;
    let mut keybuf = Vec::with_capacity(4);
    match run_chain(rs, st, b.chain, pkt, now_ns, act, &mut keybuf, trace.as_deref_mut()) {
        Some(Verdict::Drop) => (HookVerdict::Drop, false),
        Some(Verdict::Queue) => (HookVerdict::Queue, false),
        Some(_) => (HookVerdict::Accept, false),
        None => {
            if b.policy_drop {
                if let Some(t) = trace {
                    t.push(TraceLine { chain: b.chain, rule: None, verdict: "policy drop".into() });
                }
                (HookVerdict::Drop, true)
            } else {
                (HookVerdict::Accept, true)
            }
        }
    }
}

/// Runs a chain and what it jumps to. Returns the final verdict, or None when the base chain
/// ran off its end (the policy applies).
#[allow(clippy::too_many_arguments)]
fn run_chain(rs: &Ruleset, st: &mut State, start: usize, pkt: &mut Pkt, now_ns: u64, act: &mut dyn Actions, keybuf: &mut Vec<u128>, mut trace: Option<&mut Vec<TraceLine>>) -> Option<Verdict> {
    // (chain, next rule index) frames; goto replaces the top frame
    let mut stack: [(usize, usize); JUMP_STACK + 1] = [(0, 0); JUMP_STACK + 1];
    let mut depth = 0usize;
    stack[0] = (start, 0);
    'frames: loop {
        let (chain, mut ri) = stack[depth];
        let rules = &rs.chains[chain].rules;
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
                            Test::InSet(s) => pkt.key(&m.loads, keybuf).then(|| rs.sets[s].lookup(keybuf, now_ns).is_some()),
                            _ => match m.loads.as_slice() {
                                [l] => pkt.load(l).map(|v| test(v, &m.test)),
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
                    Op::Vmap { keys, map } => {
                        if !pkt.key(keys, keybuf) {
                            matched = false;
                            break;
                        }
                        match rs.sets[*map].lookup(keybuf, now_ns) {
                            Some(SetData::Verdict(v)) => {
                                verdict = Some(v.clone());
                                break;
                            }
                            _ => {
                                matched = false;
                                break;
                            }
                        }
                    }
                    Op::Counter(i) => {
                        let c = &mut st.counters[*i];
                        c.0 += 1;
                        c.1 += pkt.len as u64;
                    }
                    Op::Limit(i) => {
                        let spec = rs.limits[*i];
                        let (tokens, last) = &mut st.buckets[*i];
                        let elapsed = now_ns.saturating_sub(*last) as f64 / 1e9;
                        *tokens = (*tokens + elapsed * spec.rate_per_s).min(spec.burst.max(1.0));
                        *last = now_ns;
                        let cost = if spec.bytes { pkt.len as f64 } else { 1.0 };
                        let within = *tokens >= cost;
                        if within {
                            *tokens -= cost;
                        }
                        // `limit rate X` matches within the rate, `over` matches above it
                        if within == spec.over {
                            matched = false;
                            break;
                        }
                    }
                    Op::Quota(i) => {
                        let spec = rs.quotas[*i];
                        let used = &mut st.quota_used[*i];
                        *used += pkt.len as u64;
                        let over = *used > spec.bytes;
                        if over != spec.over {
                            matched = false;
                            break;
                        }
                    }
                    Op::Log { prefix, level } => act.log(pkt, prefix.as_deref(), *level, &rule.text),
                    Op::Reject(r) => {
                        act.reject(pkt, r);
                        verdict = Some(Verdict::Drop);
                        break;
                    }
                    Op::Nat(spec) => {
                        let addr = match &spec.addr {
                            None => None,
                            Some((v, hi)) => match eval_value(rs, pkt, v, keybuf, now_ns) {
                                Some(lo) => Some((lo, hi.unwrap_or(lo))),
                                None => {
                                    matched = false;
                                    break;
                                }
                            },
                        };
                        let port = match &spec.port {
                            None => None,
                            Some((v, hi)) => match eval_value(rs, pkt, v, keybuf, now_ns) {
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
                    Op::SetMeta(k, v) => {
                        if let Some(x) = eval_value(rs, pkt, v, keybuf, now_ns) {
                            match k {
                                MetaK::Mark => pkt.mark = x as u32,
                                MetaK::PktType => pkt.pkttype = x as u8,
                                _ => {}
                            }
                        }
                    }
                    Op::SetCt(k, v) => {
                        if let (CtK::Mark, Some(x)) = (k, eval_value(rs, pkt, v, keybuf, now_ns)) {
                            pkt.new_ct_mark = Some(x as u32);
                        }
                    }
                    Op::SetPayload { .. } => {
                        // payload mangling (dscp, ttl) is applied by the router after the hook
                    }
                    Op::ClampMss(v) => {
                        if let (Some(th), 6, Some(mss)) = (pkt.th, pkt.l4proto, eval_value(rs, pkt, v, keybuf, now_ns)) {
                            let mss = mss.min(u16::MAX as u128) as u16;
                            if let Some(l4) = pkt.frame.get_mut(th..) {
                                // a malformed TCP header is left alone, as the kernel does
                                let _ = nft_wire::rewrite::clamp_tcp_mss(l4, mss);
                            }
                        }
                    }
                    Op::SetAdd { .. } => {}
                }
            }
            if !matched {
                continue;
            }
            *st.rule_hits.entry((chain, ri - 1)).or_default() += 1;
            let Some(v) = verdict else { continue };
            if let Some(t) = trace.as_deref_mut() {
                t.push(TraceLine { chain, rule: Some(ri - 1), verdict: verdict_text(rs, &v) });
            }
            match v {
                Verdict::Continue => continue,
                Verdict::Accept | Verdict::Drop | Verdict::Queue => return Some(v),
                Verdict::Return => {
                    if depth == 0 {
                        return None;
                    }
                    depth -= 1;
                    continue 'frames;
                }
                Verdict::Jump(c) => {
                    if depth + 1 > JUMP_STACK {
                        // the kernel refuses such rulesets at load; be safe at run time
                        return Some(Verdict::Drop);
                    }
                    stack[depth].1 = ri;
                    depth += 1;
                    stack[depth] = (c, 0);
                    continue 'frames;
                }
                Verdict::Goto(c) => {
                    stack[depth] = (c, 0);
                    continue 'frames;
                }
            }
        }
        // end of chain: return to the caller, or fall off the base chain
        if depth == 0 {
            return None;
        }
        depth -= 1;
    }
}

fn eval_value(rs: &Ruleset, pkt: &Pkt, v: &Value, keybuf: &mut Vec<u128>, now_ns: u64) -> Option<u128> {
    match v {
        Value::Const(c) => Some(*c),
        Value::Load(l) => pkt.load(l),
        Value::Map { keys, map } => {
            if !pkt.key(keys, keybuf) {
                return None;
            }
            match rs.sets[*map].lookup(keybuf, now_ns) {
                Some(SetData::Value(x)) => Some(*x),
                _ => None,
            }
        }
    }
}

/// Fills the rule view of a parsed frame arriving on `iif`.
pub fn pkt_from_frame<'a>(frame: &'a mut [u8], m: &nft_wire::PacketMeta, iif: u32, iifname: &str) -> Pkt<'a> {
    let nfproto = match m.ip_version {
        Some(nft_wire::IpVersion::Ipv4) => 2,
        Some(nft_wire::IpVersion::Ipv6) => 10,
        None => 0,
    };
    let th = match m.fragment {
        nft_wire::Fragment::NonFirst => None,
        _ => m.l4_offset,
    };
    Pkt {
        nh: m.l3_offset,
        th,
        nfproto,
        l4proto: m.ip_protocol.map(u8::from).unwrap_or(0),
        ethertype: u16::from(m.ethertype),
        len: (m.l3_end - m.l3_offset) as u32,
        iif,
        oif: 0,
        iifname: ifname_value(iifname),
        oifname: 0,
        mark: 0,
        pkttype: 0,
        ct: None,
        new_ct_mark: None,
        rt_mtu: 0,
        frame,
    }
}

/// A verdict as `nft monitor trace` prints it (`accept`, `jump forward_lan`).
pub fn verdict_text(rs: &Ruleset, v: &Verdict) -> String {
    let name = |c: &usize| rs.chains.get(*c).map(|x| x.name.clone()).unwrap_or_default();
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Continue => "continue".into(),
        Verdict::Return => "return".into(),
        Verdict::Queue => "queue".into(),
        Verdict::Jump(c) => format!("jump {}", name(c)),
        Verdict::Goto(c) => format!("goto {}", name(c)),
    }
}
