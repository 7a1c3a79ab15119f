//! The syntax tree: commands as parsed, and the ruleset objects they build.
//!
//! Expressions follow nft's own model (src/expression.c): selectors (payload, meta, ct, ...)
//! produce values, constants carry a datatype once evaluated, and relational expressions compare
//! one with the other. Before evaluation, values are `Symbol`s: words whose meaning depends on
//! the type of what they are compared with (`ssh` is a port after `tcp dport`).

use crate::datatype::{Dt, Val};
use crate::error::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ip,
    Ip6,
    Inet,
    Arp,
    Bridge,
    Netdev,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
            Family::Arp => "arp",
            Family::Bridge => "bridge",
            Family::Netdev => "netdev",
        }
    }
    pub fn parse(s: &str) -> Option<Family> {
        Some(match s {
            "ip" => Family::Ip,
            "ip6" => Family::Ip6,
            "inet" => Family::Inet,
            "arp" => Family::Arp,
            "bridge" => Family::Bridge,
            "netdev" => Family::Netdev,
            _ => return None,
        })
    }
}

// ---- expressions ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    And,
    Or,
    Xor,
    Shl,
    Shr,
}

impl BinOp {
    pub fn sym(self) -> &'static str {
        match self {
            BinOp::And => "&",
            BinOp::Or => "|",
            BinOp::Xor => "^",
            BinOp::Shl => "<<",
            BinOp::Shr => ">>",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelOp {
    /// No operator written: equality, or membership for sets and prefixes/ranges.
    Implicit,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    /// `tcp flags ! syn`: none of the flags set.
    Neg,
}

impl RelOp {
    pub fn sym(self) -> &'static str {
        match self {
            RelOp::Implicit => "",
            RelOp::Eq => "==",
            RelOp::Ne => "!=",
            RelOp::Lt => "<",
            RelOp::Gt => ">",
            RelOp::Le => "<=",
            RelOp::Ge => ">=",
            RelOp::Neg => "!",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Continue,
    Return,
    Jump(String),
    Goto(String),
    /// `jump`/`goto` with a computed chain (`jump $var` already expanded is a Jump).
    Queue,
}

impl Verdict {
    pub fn text(&self) -> String {
        match self {
            Verdict::Accept => "accept".into(),
            Verdict::Drop => "drop".into(),
            Verdict::Continue => "continue".into(),
            Verdict::Return => "return".into(),
            Verdict::Jump(c) => format!("jump {c}"),
            Verdict::Goto(c) => format!("goto {c}"),
            Verdict::Queue => "queue".into(),
        }
    }
}

/// An evaluated constant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Const {
    pub dt: Dt,
    pub bits: u32,
    pub val: Val,
}

/// Per-element options in sets (`timeout 10s expires 9s comment "x" counter`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElemOpts {
    pub timeout: Option<u64>,
    pub expires: Option<u64>,
    pub comment: Option<String>,
    /// Statements attached to the element (`counter packets 0 bytes 0`, `limit ...`).
    pub stmts: Vec<Stmt>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExprKind {
    /// An unresolved word, resolved by the evaluator against the type it meets.
    Symbol(String),
    /// A double-quoted string.
    Quoted(String),
    /// `$name`, replaced by its definition while parsing.
    Var(String),
    Const(Const),
    /// `ip saddr`, `tcp dport`, `th dport`, `vlan id`...
    Payload {
        proto: String,
        field: String,
    },
    /// `@nh,16,8` and friends.
    RawPayload {
        base: String,
        offset: u32,
        len: u32,
    },
    /// IPv6 extension header field: `hbh nexthdr`, `frag more-fragments`, `exthdr hbh exists`.
    Exthdr {
        hdr: String,
        field: String,
    },
    /// `tcp option maxseg size`, `tcp option sack0 left`, `tcp option 254 exists`...
    TcpOpt {
        opt: String,
        field: Option<String>,
    },
    /// `ip option rr type`...
    IpOpt {
        opt: String,
        field: Option<String>,
    },
    /// `sctp chunk data flags`...
    SctpChunk {
        chunk: String,
        field: Option<String>,
    },
    /// `dccp option 40`
    DccpOpt(u32),
    Meta(String),
    /// `ct state`, `ct original saddr`, `ct reply ip saddr`.
    Ct {
        key: String,
        dir: Option<String>,
        family: Option<String>,
    },
    /// `fib saddr . iif oif`
    Fib {
        flags: Vec<String>,
        result: String,
    },
    /// `rt mtu`, `rt ip nexthop`.
    Rt {
        key: String,
        family: Option<String>,
    },
    /// `numgen inc mod 2 offset 100`
    Numgen {
        random: bool,
        modulus: u32,
        offset: u32,
    },
    /// `jhash ip saddr mod 2 seed 0xdead offset 100`, `symhash mod 2`
    Hash {
        expr: Option<Box<Expr>>,
        modulus: u32,
        seed: Option<u32>,
        offset: u32,
        sym: bool,
    },
    /// `socket transparent`, `socket cgroupv2 level 1`
    Socket {
        key: String,
        level: Option<u32>,
    },
    /// `osf name`, `osf ttl loose version`
    Osf {
        ttl: Option<String>,
        key: String,
    },
    /// `ipsec in reqid`, `ipsec out ip daddr`
    Ipsec {
        dir: String,
        spnum: u32,
        key: String,
        family: Option<String>,
    },
    /// `tunnel id`...
    Tunnel(String),
    Prefix(Box<Expr>, u32),
    Range(Box<Expr>, Box<Expr>),
    /// A comma-separated list of flags: `established,related`.
    List(Vec<Expr>),
    Concat(Vec<Expr>),
    Binop(BinOp, Box<Expr>, Box<Expr>),
    /// `value / mask` on a bitmask: `tcp flags syn / syn,fin,rst`.
    Masked(Box<Expr>, Box<Expr>),
    /// Anonymous set `{ a, b }`: the elements.
    Set(Vec<Expr>),
    /// A set element with options.
    Elem(Box<Expr>, Box<ElemOpts>),
    /// `key : value` inside a map.
    Mapping(Box<Expr>, Box<Expr>),
    /// `@name`
    SetRef(String),
    /// `expr map { ... }` / `expr map @m`
    Map(Box<Expr>, Box<Expr>),
    Verdict(Verdict),
    /// `*` (the catch-all set element).
    Wildcard,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    /// The datatype the evaluator settled on (Invalid before evaluation).
    pub dt: Dt,
    /// Width in bits, after evaluation.
    pub bits: u32,
}

impl Expr {
    pub fn new(kind: ExprKind, span: Span) -> Expr {
        Expr {
            kind,
            span,
            dt: Dt::Invalid,
            bits: 0,
        }
    }
}

// ---- statements ----------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitStmt {
    pub over: bool,
    pub rate: u64,
    /// "second", "minute", "hour", "day", "week"
    pub unit: String,
    /// None: packets. Some(unit) for byte rates: the rate is in bytes and `unit` is how it
    /// is printed (`kbytes`).
    pub bytes: bool,
    pub burst: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatKind {
    Snat,
    Dnat,
    Masquerade,
    Redirect,
}

impl NatKind {
    pub fn name(&self) -> &'static str {
        match self {
            NatKind::Snat => "snat",
            NatKind::Dnat => "dnat",
            NatKind::Masquerade => "masquerade",
            NatKind::Redirect => "redirect",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatStmt {
    pub kind: NatKind,
    /// `ip`/`ip6` in `snat ip to ...` (inet tables).
    pub family: Option<String>,
    pub addr: Option<Expr>,
    pub port: Option<Expr>,
    /// `ip to 10.0.0.0/24 prefix` etc.
    pub prefix: bool,
    /// `interval` form is implicit in `addr` being a range/map
    pub flags: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RejectKind {
    /// `reject` with no `with`
    Default,
    TcpReset,
    /// `with icmp|icmpv6|icmpx [type] CODE`
    Icmp {
        family: String,
        code: Expr,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LogStmt {
    pub prefix: Option<Expr>,
    pub group: Option<u32>,
    pub snaplen: Option<u32>,
    pub queue_threshold: Option<u32>,
    pub level: Option<String>,
    pub flags: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetOp {
    Add,
    Update,
    Delete,
}

impl SetOp {
    /// The keyword, as listed and in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            SetOp::Add => "add",
            SetOp::Update => "update",
            SetOp::Delete => "delete",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StmtKind {
    /// `left op right`
    Match {
        left: Expr,
        op: RelOp,
        right: Expr,
    },
    Verdict(Verdict),
    /// `expr vmap { ... }` / `vmap @m`
    Vmap {
        key: Expr,
        map: Expr,
    },
    Counter {
        packets: u64,
        bytes: u64,
    },
    Limit(LimitStmt),
    Quota {
        over: bool,
        bytes: u64,
        used: u64,
    },
    Log(LogStmt),
    Reject(RejectKind),
    Nat(NatStmt),
    Notrack,
    /// `flow add @ft` (and the legacy `flow offload @ft`).
    FlowAdd(String),
    /// `meta mark set ...`, `ct mark set ...`, `ip dscp set ...`, `tcp option ... set`.
    Set {
        key: Expr,
        value: Expr,
    },
    /// `add @s { ip saddr limit rate ... }`, `update @s ...`, `delete @s ...`
    Dynset {
        op: SetOp,
        set: String,
        key: Expr,
        stmts: Vec<Stmt>,
        data: Option<Expr>,
    },
    /// `counter name x`, `quota name "y"`, `ct helper set "ftp"`: a stateful object reference.
    ObjRef {
        kind: String,
        name: Expr,
    },
    /// `dup to 1.2.3.4 device eth0`
    Dup {
        addr: Option<Expr>,
        dev: Option<Expr>,
    },
    /// `fwd to eth0`, `fwd ip to 1.2.3.4 device eth0`
    Fwd {
        family: Option<String>,
        addr: Option<Expr>,
        dev: Expr,
    },
    /// `queue num 2 bypass`
    Queue {
        num: Option<Expr>,
        flags: Vec<String>,
    },
    /// `tproxy ip to 1.2.3.4:80`
    Tproxy {
        family: Option<String>,
        addr: Option<Expr>,
        port: Option<Expr>,
    },
    /// `synproxy mss 1460 wscale 7 timestamp sack-perm`
    Synproxy {
        mss: Option<u32>,
        wscale: Option<u32>,
        flags: Vec<String>,
    },
    /// `last`, `last used 300s`
    Last {
        used: Option<u64>,
    },
    /// `ct count over 2`
    Connlimit {
        over: bool,
        count: u32,
    },
    /// `xt ...` is not supported; kept for listings.
    Reset(Expr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

// ---- ruleset objects -----------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub stmts: Vec<Stmt>,
    pub comment: Option<String>,
    pub span: Span,
    pub handle: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prio {
    Num(i32),
    /// A named priority with an offset: `filter`, `srcnat + 10`, `dstnat - 5`.
    Named(String, i32),
    /// An unevaluated variable or expression
    Var(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    /// `filter`, `nat`, `route`
    pub kind: String,
    pub hook: String,
    pub prio: Prio,
    pub devices: Vec<String>,
    pub policy: Option<String>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub hook: Option<Hook>,
    pub comment: Option<String>,
    pub rules: Vec<Rule>,
    pub handle: u64,
    pub span: Span,
}

/// `type ipv4_addr . inet_service` or `typeof ip saddr . tcp dport`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySpec {
    Types(Vec<String>),
    Typeof(Expr),
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Set {
    pub name: String,
    pub is_map: bool,
    pub key: Option<KeySpec>,
    /// For maps: the data type (`verdict`, `ipv4_addr`, `counter` for object maps...).
    pub data: Option<KeySpec>,
    /// `ct helper`, `counter`, `quota`, `limit`... for object maps.
    pub obj_map: Option<String>,
    /// `: interval TYPE`: map values are ranges.
    pub data_interval: bool,
    pub flags: Vec<String>,
    pub timeout: Option<u64>,
    pub gc_interval: Option<u64>,
    pub size: Option<u64>,
    pub policy: Option<String>,
    pub auto_merge: bool,
    pub elements: Vec<Expr>,
    pub comment: Option<String>,
    /// Statements applied to each element (`counter`, `quota`...), from `counter;` or
    /// `elements = ...` with `stmts`.
    pub stmts: Vec<Stmt>,
    pub handle: u64,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Flowtable {
    pub name: String,
    pub hook: Option<String>,
    pub prio: Option<Prio>,
    pub devices: Vec<String>,
    pub counter: bool,
    pub offload: bool,
    pub handle: u64,
    pub span: Span,
}

/// Stateful objects: counter, quota, limit, ct helper, ct timeout, ct expectation,
/// secmark, synproxy, tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Obj {
    pub kind: String,
    pub name: String,
    pub body: ObjBody,
    pub comment: Option<String>,
    pub handle: u64,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjBody {
    Counter {
        packets: u64,
        bytes: u64,
    },
    Quota {
        over: bool,
        bytes: u64,
        used: u64,
    },
    Limit(LimitStmt),
    CtHelper {
        name: String,
        proto: String,
        l3proto: Option<String>,
    },
    CtTimeout {
        proto: String,
        l3proto: Option<String>,
        policy: Vec<(String, u64)>,
    },
    CtExpect {
        proto: String,
        dport: u32,
        timeout: u64,
        size: u32,
        l3proto: Option<String>,
    },
    Secmark(String),
    Synproxy {
        mss: u32,
        wscale: u32,
        flags: Vec<String>,
    },
    /// Anything else we keep as raw text.
    Raw(String),
    Tunnel(TunnelObj),
}

/// A tunnel object: the metadata attached to packets sent through a tunnel device.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TunnelObj {
    pub id: u32,
    /// Outer source address: whether it is IPv6, and the address as listed.
    pub src: Option<(bool, String)>,
    pub dst: Option<(bool, String)>,
    pub sport: u16,
    pub dport: u16,
    pub tos: u8,
    pub ttl: u8,
    pub opts: TunnelOpts,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum TunnelOpts {
    #[default]
    None,
    Vxlan {
        gbp: u32,
    },
    /// Version 1 carries an index, version 2 a direction and hardware id.
    Erspan {
        version: u32,
        index: u32,
        egress: bool,
        hwid: u32,
    },
    /// Geneve options: class, type, data bytes.
    Geneve(Vec<(u16, u8, Vec<u8>)>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
    pub flags: Vec<String>,
    pub comment: Option<String>,
    pub chains: Vec<Chain>,
    pub sets: Vec<Set>,
    pub flowtables: Vec<Flowtable>,
    pub objs: Vec<Obj>,
    pub handle: u64,
    pub span: Span,
}

impl Table {
    pub fn new(family: Family, name: String, span: Span) -> Table {
        Table {
            family,
            name,
            flags: vec![],
            comment: None,
            chains: vec![],
            sets: vec![],
            flowtables: vec![],
            objs: vec![],
            handle: 0,
            span,
        }
    }
}

/// The ruleset a file builds when loaded into an empty kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub tables: Vec<Table>,
}

// ---- commands ------------------------------------------------------------------------------

/// `[family] table` as written in a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRef {
    pub family: Family,
    pub name: String,
    pub span: Span,
}

/// Where `add rule`/`insert rule` put a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RulePos {
    End,
    Handle(u64),
    Index(u64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verb {
    Add,
    Create,
    Insert,
    Replace,
    Delete,
    Destroy,
    Flush,
    Reset,
    List,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    Table {
        verb: Verb,
        table: TableRef,
        flags: Vec<String>,
        comment: Option<String>,
    },
    Chain {
        verb: Verb,
        table: TableRef,
        chain: Chain,
    },
    Rule {
        verb: Verb,
        table: TableRef,
        chain: String,
        pos: RulePos,
        rule: Rule,
    },
    Set {
        verb: Verb,
        table: TableRef,
        /// Boxed: a set declaration is twice the size of any other command.
        set: Box<Set>,
    },
    Element {
        verb: Verb,
        table: TableRef,
        set: String,
        elems: Vec<Expr>,
        span: Span,
    },
    Flowtable {
        verb: Verb,
        table: TableRef,
        ft: Flowtable,
    },
    Obj {
        verb: Verb,
        table: TableRef,
        obj: Obj,
    },
    /// `flush ruleset`, `delete/destroy/flush table|chain|set|map|...` by name or handle.
    ByName {
        verb: Verb,
        what: String,
        table: Option<TableRef>,
        name: Option<String>,
        handle: Option<u64>,
        span: Span,
    },
    /// `rename chain t c newname`
    RenameChain {
        table: TableRef,
        from: String,
        to: String,
        span: Span,
    },
    /// Commands that change nothing in a loaded ruleset (`list`, `describe`, `monitor`).
    Noop,
}
