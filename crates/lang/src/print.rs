//! The listing printer: `nft list ruleset` output of nft 1.1.x, byte for byte.

use std::fmt::Write;

use crate::ast::*;
use crate::datatype::{Dt, PrintOpts, Val};

#[derive(Clone, Copy, Debug, Default)]
pub struct ListOpts {
    /// `-s`: no counter values or quota usage.
    pub stateless: bool,
    /// Datatype printing options (`-p` etc.).
    pub dt: PrintOpts,
}

pub fn ruleset(rs: &Ruleset, o: &ListOpts) -> String {
    let mut s = String::new();
    for t in &rs.tables {
        table(&mut s, t, o);
    }
    s
}

pub fn table(s: &mut String, t: &Table, o: &ListOpts) {
    let _ = writeln!(s, "table {} {} {{", t.family.name(), t.name);
    let mut first = true;
    let sep = |s: &mut String, first: &mut bool| {
        if !*first {
            s.push('\n');
        }
        *first = false;
    };
    // flags, then the comment; only flags set the table body apart with a blank line
    if !t.flags.is_empty() {
        let flags: Vec<&str> = ["dormant", "owner", "persist"]
            .iter()
            .copied()
            .filter(|f| t.flags.iter().any(|x| x == f))
            .collect();
        let _ = writeln!(s, "\tflags {}", flags.join(","));
        first = false;
    }
    if let Some(c) = &t.comment {
        let _ = writeln!(s, "\tcomment \"{c}\"");
    }
    for ob in &t.objs {
        sep(s, &mut first);
        obj(s, ob, t.family, o);
    }
    for st in &t.sets {
        if st.name.starts_with("__set") {
            continue;
        }
        sep(s, &mut first);
        set(s, st, t, o);
    }
    for ft in &t.flowtables {
        sep(s, &mut first);
        flowtable(s, ft, t.family);
    }
    for c in &t.chains {
        if is_binding(&c.name) {
            continue;
        }
        sep(s, &mut first);
        chain(s, c, t, o);
    }
    s.push_str("}\n");
}

const STD_PRIOS: &[(i32, &str)] = &[
    (-300, "raw"),
    (-150, "mangle"),
    (-100, "dstnat"),
    (0, "filter"),
    (50, "security"),
    (100, "srcnat"),
];
const BRIDGE_PRIOS: &[(i32, &str)] = &[
    (-300, "dstnat"),
    (-200, "filter"),
    (100, "out"),
    (300, "srcnat"),
];

pub fn std_prio_value(family: Family, name: &str) -> Option<i32> {
    let table = if family == Family::Bridge {
        BRIDGE_PRIOS
    } else {
        STD_PRIOS
    };
    table.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
}

fn prio_compat(family: Family, hook: &str, name: &str) -> bool {
    match family {
        Family::Arp | Family::Netdev => name == "filter",
        Family::Bridge => match name {
            "dstnat" => hook == "prerouting",
            "srcnat" => hook == "postrouting",
            "out" => hook == "output",
            _ => true,
        },
        _ => match name {
            "dstnat" => hook == "prerouting" || hook == "output",
            "srcnat" => hook == "postrouting" || hook == "input",
            _ => true,
        },
    }
}

/// A priority as nft prints it: a standard name within ±10 of its value, or the number.
pub fn prio_str(p: &Prio, family: Family, hook: &str) -> String {
    let v = match p {
        Prio::Num(n) => *n,
        Prio::Named(n, off) => match std_prio_value(family, n) {
            Some(b) => b + off,
            None => {
                return if *off == 0 {
                    n.clone()
                } else {
                    format!("{n} {} {}", if *off < 0 { '-' } else { '+' }, off.abs())
                }
            }
        },
        Prio::Var(v) => return v.clone(),
    };
    let table = if family == Family::Bridge {
        BRIDGE_PRIOS
    } else {
        STD_PRIOS
    };
    for (base, name) in table {
        let off = v - base;
        if (-10..=10).contains(&off) && prio_compat(family, hook, name) {
            return match off {
                0 => name.to_string(),
                o if o > 0 => format!("{name} + {o}"),
                o => format!("{name} - {}", -o),
            };
        }
    }
    v.to_string()
}

fn quote_list(v: &[String]) -> String {
    v.iter()
        .map(|d| format!("\"{d}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn chain(s: &mut String, c: &Chain, t: &Table, o: &ListOpts) {
    let _ = write!(s, "\tchain {} {{", c.name);
    if let Some(cm) = &c.comment {
        let _ = write!(s, "\n\t\tcomment \"{cm}\"");
    }
    s.push('\n');
    if let Some(h) = &c.hook {
        let _ = write!(s, "\t\ttype {} hook {}", h.kind, h.hook);
        match h.devices.len() {
            0 => {}
            1 => {
                let _ = write!(s, " device \"{}\"", h.devices[0]);
            }
            _ => {
                let _ = write!(s, " devices = {{ {} }}", quote_list(&h.devices));
            }
        }
        let _ = writeln!(
            s,
            " priority {}; policy {};",
            prio_str(&h.prio, t.family, &h.hook),
            h.policy.as_deref().unwrap_or("accept")
        );
    }
    for r in &c.rules {
        s.push_str("\t\t");
        s.push_str(&rule_in_table(r, t, o));
        s.push('\n');
    }
    s.push_str("\t}\n");
}

/// Anonymous chains (`jump { ... }`) are kept as chains under a reserved name and listed
/// inside the rule that binds them.
fn is_binding(name: &str) -> bool {
    name.starts_with("__chain")
}

fn rule_in_table(r: &Rule, t: &Table, o: &ListOpts) -> String {
    rule_in_table_depth(r, t, o, 0)
}

fn rule_in_table_depth(r: &Rule, t: &Table, o: &ListOpts, depth: usize) -> String {
    let mut parts: Vec<String> = vec![];
    for st in &r.stmts {
        let bound = match &st.kind {
            StmtKind::Verdict(Verdict::Jump(n)) if is_binding(n) => Some(("jump", n)),
            StmtKind::Verdict(Verdict::Goto(n)) if is_binding(n) => Some(("goto", n)),
            _ => None,
        };
        match bound.and_then(|(kw, n)| t.chains.iter().find(|c| &c.name == n).map(|c| (kw, c))) {
            Some((kw, c)) if depth < 16 => {
                // nft indents the rules of a bound chain one level, however deep it is nested
                let mut b = format!("{kw} {{\n");
                for br in &c.rules {
                    let _ = writeln!(b, "\t\t\t{}", rule_in_table_depth(br, t, o, depth + 1));
                }
                b.push_str("\t\t}");
                parts.push(b);
            }
            _ => parts.push(stmt(st, t.family, o)),
        }
    }
    if let Some(c) = &r.comment {
        parts.push(format!("comment \"{c}\""));
    }
    parts.join(" ")
}

fn flowtable(s: &mut String, ft: &Flowtable, family: Family) {
    let _ = writeln!(s, "\tflowtable {} {{", ft.name);
    if let (Some(h), Some(p)) = (&ft.hook, &ft.prio) {
        let _ = writeln!(s, "\t\thook {} priority {}", h, prio_str(p, family, h));
    }
    if !ft.devices.is_empty() {
        let _ = writeln!(s, "\t\tdevices = {{ {} }}", quote_list(&ft.devices));
    }
    if ft.offload {
        s.push_str("\t\tflags offload\n");
    }
    if ft.counter {
        s.push_str("\t\tcounter\n");
    }
    s.push_str("\t}\n");
}

pub fn time_str(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, div) in [
        ("d", 86_400_000u64),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        let n = rest / div;
        rest %= div;
        if n > 0 {
            let _ = write!(out, "{n}{unit}");
        }
    }
    out
}

/// Byte amounts as nft prints them: the largest unit that divides evenly.
pub fn bytes_str(b: u64) -> (u64, &'static str) {
    let mut v = b;
    let mut unit = 0;
    const UNITS: [&str; 3] = ["bytes", "kbytes", "mbytes"];
    while v >= 1024 && v.is_multiple_of(1024) && unit < 2 {
        v /= 1024;
        unit += 1;
    }
    (v, UNITS[unit])
}

fn obj(s: &mut String, ob: &Obj, family: Family, o: &ListOpts) {
    let _ = write!(s, "\t{} {} {{", ob.kind, ob.name);
    if let Some(c) = &ob.comment {
        let _ = write!(s, "\n\t\tcomment \"{c}\"");
    }
    s.push('\n');
    let l3 = |l: &Option<String>| l.clone().unwrap_or_else(|| family.name().to_string());
    match &ob.body {
        ObjBody::Counter { packets, bytes } => {
            if !o.stateless {
                let _ = writeln!(s, "\t\tpackets {packets} bytes {bytes}");
            }
        }
        ObjBody::Quota { over, bytes, used } => {
            let (v, u) = bytes_str(*bytes);
            let _ = write!(s, "\t\t{}{v} {u}", if *over { "over " } else { "" });
            if *used > 0 && !o.stateless {
                let (uv, uu) = bytes_str(*used);
                let _ = write!(s, " used {uv} {uu}");
            }
            s.push('\n');
        }
        ObjBody::Limit(l) => {
            let _ = writeln!(s, "\t\t{}", limit_obj_body(l));
        }
        ObjBody::CtHelper {
            name,
            proto,
            l3proto,
        } => {
            let _ = writeln!(s, "\t\ttype \"{name}\" protocol {proto}");
            let _ = writeln!(s, "\t\tl3proto {}", l3(l3proto));
        }
        ObjBody::CtTimeout {
            proto,
            l3proto,
            policy,
        } => {
            let _ = writeln!(s, "\t\tprotocol {proto}");
            let _ = writeln!(s, "\t\tl3proto {}", l3(l3proto));
            let _ = writeln!(s, "\t\tpolicy = {{ {} }}", ct_timeout_policy(proto, policy));
        }
        ObjBody::CtExpect {
            proto,
            dport,
            timeout,
            size,
            l3proto,
        } => {
            let _ = writeln!(s, "\t\tprotocol {proto}");
            let _ = writeln!(s, "\t\tdport {dport}");
            let _ = writeln!(s, "\t\ttimeout {}", time_str(*timeout));
            let _ = writeln!(s, "\t\tsize {size}");
            let _ = writeln!(s, "\t\tl3proto {}", l3(l3proto));
        }
        ObjBody::Secmark(c) => {
            let _ = writeln!(s, "\t\t\"{c}\"");
        }
        ObjBody::Synproxy { mss, wscale, flags } => {
            if *mss > 0 {
                let _ = writeln!(s, "\t\tmss {mss}");
            }
            if *wscale > 0 {
                let _ = writeln!(s, "\t\twscale {wscale}");
            }
            let ts = flags.iter().any(|f| f == "timestamp");
            let sack = flags.iter().any(|f| f == "sack-perm");
            if ts || sack {
                let _ = writeln!(
                    s,
                    "\t\t{} {}",
                    if ts { "timestamp" } else { "" },
                    if sack { "sack-perm" } else { "" }
                );
            }
        }
        ObjBody::Tunnel(t) => tunnel_obj(s, t),
        ObjBody::Raw(r) => {
            let _ = writeln!(s, "\t\t{r}");
        }
    }
    s.push_str("\t}\n");
}

/// Conntrack timeout states in kernel order, with their default timeouts in seconds.
const CT_TIMEOUT_TCP: &[(&str, u64)] = &[
    ("syn_sent", 120),
    ("syn_recv", 60),
    ("established", 432000),
    ("fin_wait", 120),
    ("close_wait", 60),
    ("last_ack", 30),
    ("time_wait", 120),
    ("close", 10),
    ("syn_sent2", 120),
    ("retrans", 300),
    ("unack", 300),
];
const CT_TIMEOUT_UDP: &[(&str, u64)] = &[("unreplied", 30), ("replied", 120)];

/// The policy of a ct timeout object as the kernel returns it: every state in kernel order,
/// those left at their default value not shown.
fn ct_timeout_policy(proto: &str, policy: &[(String, u64)]) -> String {
    let states = match proto {
        "tcp" | "6" => CT_TIMEOUT_TCP,
        "udp" | "17" => CT_TIMEOUT_UDP,
        _ => {
            return policy
                .iter()
                .map(|(k, v)| format!("{k} : {}", time_str(v * 1000)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let mut out = vec![];
    for (name, dflt) in states {
        let v = policy
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
            .unwrap_or(*dflt);
        if v != *dflt {
            out.push(format!("{name} : {}", time_str(v * 1000)));
        }
    }
    out.join(", ")
}

/// A limit object's rate: unlike the statement, the default packet burst is left out.
fn limit_obj_body(l: &LimitStmt) -> String {
    if l.bytes {
        return limit_body(l);
    }
    let mut s = format!(
        "rate {}{}/{}",
        if l.over { "over " } else { "" },
        l.rate,
        l.unit
    );
    if let Some(b) = l.burst {
        if b > 0 && b != 5 {
            let _ = write!(s, " burst {b} packets");
        }
    }
    s
}

fn keyspec(k: &KeySpec, o: &ListOpts) -> String {
    match k {
        KeySpec::Types(v) => v.join(" . "),
        KeySpec::Typeof(e) => expr(e, o),
    }
}

fn set(s: &mut String, st: &Set, t: &Table, o: &ListOpts) {
    let _ = writeln!(
        s,
        "\t{} {} {{",
        if st.is_map { "map" } else { "set" },
        st.name
    );
    if let Some(k) = &st.key {
        let kw = if matches!(k, KeySpec::Typeof(_)) {
            "typeof"
        } else {
            "type"
        };
        let _ = write!(s, "\t\t{kw} {}", keyspec(k, o));
        if st.is_map {
            if let Some(om) = &st.obj_map {
                let _ = write!(s, " : {om}");
            } else if let Some(d) = &st.data {
                let interval = st.data_interval
                    || (st.flags.iter().any(|f| f == "interval") && data_is_interval(st));
                let _ = write!(
                    s,
                    " : {}{}",
                    if interval { "interval " } else { "" },
                    keyspec(d, o)
                );
            }
        }
        s.push('\n');
    }
    let has = |f: &str| st.flags.iter().any(|x| x == f);
    if !has("constant") {
        if let Some(p) = &st.policy {
            if p != "performance" {
                let _ = writeln!(s, "\t\tpolicy {p}");
            }
        }
        if let Some(sz) = st.size {
            let _ = write!(s, "\t\tsize {sz}");
            let n = kernel_elem_count(st);
            if n > 0 {
                let _ = write!(s, "\t# count {n}");
            }
            s.push('\n');
        }
    }
    // A default timeout implies the timeout flag, which is then left unsaid unless another
    // flag is printed with it.
    let timeout_flag = has("timeout") || st.timeout.is_some();
    let shown = ["constant", "dynamic", "interval"].iter().any(|f| has(f))
        || (timeout_flag && st.timeout.is_none());
    if shown {
        let mut flags: Vec<&str> = ["constant", "dynamic", "interval"]
            .iter()
            .copied()
            .filter(|f| has(f))
            .collect();
        if timeout_flag {
            flags.push("timeout");
        }
        let _ = writeln!(s, "\t\tflags {}", flags.join(","));
    }
    if !st.stmts.is_empty() {
        // per-element statement templates carry no state
        let so = ListOpts {
            stateless: true,
            ..*o
        };
        let txt: Vec<String> = st.stmts.iter().map(|x| stmt(x, t.family, &so)).collect();
        let _ = writeln!(s, "\t\t{}", txt.join(" "));
    }
    if st.auto_merge {
        s.push_str("\t\tauto-merge\n");
    }
    if let Some(tm) = st.timeout {
        let _ = writeln!(s, "\t\ttimeout {}", time_str(tm));
    }
    if let Some(g) = st.gc_interval {
        let _ = writeln!(s, "\t\tgc-interval {}", time_str(g));
    }
    if let Some(c) = &st.comment {
        let _ = writeln!(s, "\t\tcomment \"{c}\"");
    }
    if !st.elements.is_empty() {
        s.push_str("\t\telements = { ");
        let one_per_line = st.is_map
            || timeout_flag
            || !st.stmts.is_empty()
            || st.elements.iter().any(elem_has_comment);
        let dt = if one_per_line {
            Dt::Invalid
        } else {
            set_key_dt(st)
        };
        let mut count = 0;
        for (i, e) in st.elements.iter().enumerate() {
            if i > 0 {
                s.push_str(delim(dt, &mut count));
            }
            s.push_str(&expr_in(e, o, Ctx::Elem));
            count += 1;
        }
        s.push_str(" }\n");
    }
    s.push_str("\t}\n");
}

fn data_is_interval(st: &Set) -> bool {
    st.elements.iter().any(|e| matches!(&e.kind, ExprKind::Mapping(_, v) if matches!(v.kind, ExprKind::Range(..) | ExprKind::Prefix(..))))
}

fn elem_has_comment(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Elem(_, o) => o.comment.is_some(),
        ExprKind::Mapping(k, _) => elem_has_comment(k),
        _ => false,
    }
}

/// How many elements the kernel reports for a set: catch-all elements are not counted.
fn kernel_elem_count(st: &Set) -> usize {
    fn is_catchall(e: &Expr) -> bool {
        match &e.kind {
            ExprKind::Wildcard => true,
            ExprKind::Elem(k, _) | ExprKind::Mapping(k, _) => is_catchall(k),
            _ => false,
        }
    }
    st.elements.iter().filter(|e| !is_catchall(e)).count()
}

/// The datatype of a named set's key, which decides how its elements are spread over lines.
fn set_key_dt(st: &Set) -> Dt {
    match &st.key {
        Some(KeySpec::Types(v)) if v.len() == 1 => Dt::by_name(&v[0]).unwrap_or(Dt::Invalid),
        Some(KeySpec::Typeof(e)) if !matches!(e.kind, ExprKind::Concat(_)) => {
            st.elements.first().map(elem_dt).unwrap_or(Dt::Invalid)
        }
        _ => Dt::Invalid,
    }
}

fn elem_dt(e: &Expr) -> Dt {
    match &e.kind {
        ExprKind::Elem(i, _) => elem_dt(i),
        ExprKind::Range(a, _) | ExprKind::Prefix(a, _) => a.dt,
        ExprKind::Concat(_) => Dt::Invalid,
        _ => e.dt,
    }
}

/// The separator after the `count`-th element of a named set: nft puts five values a line
/// for small numeric types, two for IPv4 addresses and states, and one for anything else.
fn delim(dt: Dt, count: &mut usize) -> &'static str {
    let per_line = match dt {
        // every integer-based type nft names `integer` (lengths, raw payloads, ct zone...)
        _ if dt.name() == "integer" => 5,
        Dt::NfProto
        | Dt::Integer
        | Dt::ArpOp
        | Dt::InetProto
        | Dt::InetService
        | Dt::TcpFlag
        | Dt::DccpPktType
        | Dt::Mark
        | Dt::IfIndex
        | Dt::ClassId
        | Dt::Uid
        | Dt::Gid
        | Dt::CtDir => 5,
        Dt::Ipv4Addr | Dt::CtState | Dt::CtStatus | Dt::PktType => 2,
        _ => 0,
    };
    if *count < per_line {
        ", "
    } else {
        *count = 0;
        ",\n\t\t\t     "
    }
}

pub fn rule(r: &Rule, family: Family, o: &ListOpts) -> String {
    let mut parts: Vec<String> = r.stmts.iter().map(|st| stmt(st, family, o)).collect();
    if let Some(c) = &r.comment {
        parts.push(format!("comment \"{c}\""));
    }
    parts.join(" ")
}

fn limit_body(l: &LimitStmt) -> String {
    let over = if l.over { "over " } else { "" };
    if l.bytes {
        let (v, u) = bytes_str(l.rate);
        let mut s = format!("rate {over}{v} {u}/{}", l.unit);
        if let Some(b) = l.burst {
            if b > 0 {
                let (bv, bu) = bytes_str(b);
                let _ = write!(s, " burst {bv} {bu}");
            }
        }
        s
    } else {
        format!(
            "rate {over}{}/{} burst {} packets",
            l.rate,
            l.unit,
            l.burst.unwrap_or(5)
        )
    }
}

pub fn stmt(st: &Stmt, family: Family, o: &ListOpts) -> String {
    match &st.kind {
        StmtKind::Match { left, op, right } => {
            let l = expr(left, o);
            // flag values list as `a,b` in a flag test and as `a | b` everywhere else
            let flag_test = matches!(op, RelOp::Implicit | RelOp::Neg)
                && !matches!(left.kind, ExprKind::Binop(..));
            let r = expr_in(
                right,
                o,
                Ctx::Rhs {
                    binop_left: !flag_test,
                },
            );
            let opstr = match op {
                RelOp::Implicit => " ".to_string(),
                RelOp::Neg => " ! ".to_string(),
                RelOp::Eq => {
                    if matches!(left.kind, ExprKind::Binop(..))
                        || (right.dt.is_bitmask() && const_single_flag(right))
                    {
                        " == ".into()
                    } else {
                        " ".into()
                    }
                }
                other => format!(" {} ", other.sym()),
            };
            format!("{l}{opstr}{r}")
        }
        StmtKind::Verdict(v) => v.text(),
        StmtKind::Vmap { key, map } => format!("{} vmap {}", expr(key, o), expr(map, o)),
        StmtKind::Counter { packets, bytes } => {
            if o.stateless {
                "counter".into()
            } else {
                format!("counter packets {packets} bytes {bytes}")
            }
        }
        StmtKind::Limit(l) => format!("limit {}", limit_body(l)),
        StmtKind::Quota { over, bytes, used } => {
            let (v, u) = bytes_str(*bytes);
            let mut s = format!("quota {}{v} {u}", if *over { "over " } else { "" });
            if *used > 0 && !o.stateless {
                let (uv, uu) = bytes_str(*used);
                let _ = write!(s, " used {uv} {uu}");
            }
            s
        }
        StmtKind::Log(l) => {
            let mut s = "log".to_string();
            if let Some(p) = &l.prefix {
                let _ = write!(s, " prefix {}", quoted_expr(p, o));
            }
            if let Some(g) = l.group {
                let _ = write!(s, " group {g}");
            }
            if let Some(sl) = l.snaplen {
                let _ = write!(s, " snaplen {sl}");
            }
            if let Some(q) = l.queue_threshold {
                let _ = write!(s, " queue-threshold {q}");
            }
            if l.group.is_none() {
                if let Some(lv) = &l.level {
                    if lv != "warn" {
                        let _ = write!(s, " level {lv}");
                    }
                }
            }
            let all = [
                "tcp sequence",
                "tcp options",
                "ip options",
                "skuid",
                "ether",
            ]
            .iter()
            .all(|f| l.flags.iter().any(|x| x == f))
                || l.flags.iter().any(|x| x == "all");
            if all {
                s.push_str(" flags all");
            } else {
                let tcp: Vec<&str> = ["sequence", "options"]
                    .iter()
                    .copied()
                    .filter(|f| l.flags.iter().any(|x| x == &format!("tcp {f}")))
                    .collect();
                if !tcp.is_empty() {
                    let _ = write!(s, " flags tcp {}", tcp.join(","));
                }
                if l.flags.iter().any(|x| x == "ip options") {
                    s.push_str(" flags ip options");
                }
                if l.flags.iter().any(|x| x == "skuid") {
                    s.push_str(" flags skuid");
                }
                if l.flags.iter().any(|x| x == "ether") {
                    s.push_str(" flags ether");
                }
            }
            s
        }
        StmtKind::Reject(r) => crate::stmt_eval::reject_text(r, family, |c| expr(c, o)),
        StmtKind::Nat(n) => {
            let mut s = n.kind.name().to_string();
            if n.addr.is_some() || n.port.is_some() {
                // the evaluator keeps the family only where nft lists it
                if let Some(f) = &n.family {
                    let _ = write!(s, " {f}");
                }
                if n.prefix {
                    s.push_str(" prefix");
                }
                s.push_str(" to");
            }
            if let Some(a) = &n.addr {
                let v6 = |x: &Expr| x.dt == Dt::Ipv6Addr && matches!(x.kind, ExprKind::Const(_));
                match &a.kind {
                    // an IPv6 address before `:port` goes in brackets
                    ExprKind::Const(_) if n.port.is_some() && v6(a) => {
                        let _ = write!(s, " [{}]", expr(a, o));
                    }
                    ExprKind::Range(x, y) if n.port.is_some() && v6(x) => {
                        let _ = write!(s, " [{}]-[{}]", expr(x, o), expr(y, o));
                    }
                    _ => {
                        let _ = write!(s, " {}", expr(a, o));
                    }
                }
            }
            if let Some(p) = &n.port {
                if n.addr.is_none() {
                    s.push(' ');
                }
                let _ = write!(s, ":{}", expr(p, o));
            }
            if !n.flags.is_empty() {
                let order = ["random", "fully-random", "persistent", "netmap"];
                let f: Vec<&str> = order
                    .iter()
                    .copied()
                    .filter(|x| n.flags.iter().any(|y| y == x))
                    .collect();
                let _ = write!(s, " {}", f.join(","));
            }
            s
        }
        StmtKind::Notrack => "notrack".into(),
        StmtKind::FlowAdd(n) => format!("flow add @{n}"),
        StmtKind::Set { key, value } => {
            let v = expr_in(value, o, Ctx::Top);
            format!("{} set {v}", expr(key, o))
        }
        StmtKind::Dynset {
            op,
            set,
            key,
            stmts,
            data,
        } => {
            let mut s = format!("{} @{set} {{ {}", op.name(), expr(key, o));
            // statements of a set update are templates: no state to show
            let so = ListOpts {
                stateless: true,
                ..*o
            };
            for st2 in stmts {
                let _ = write!(s, " {}", stmt(st2, family, &so));
            }
            if let Some(d) = data {
                let _ = write!(s, " : {}", expr(d, o));
            }
            s.push_str(" }");
            s
        }
        StmtKind::ObjRef { kind, name } => {
            if kind.starts_with("ct ") {
                format!("{kind} set {}", quoted_expr(name, o))
            } else if kind == "secmark" {
                format!("meta secmark set {}", quoted_expr(name, o))
            } else {
                format!("{kind} name {}", quoted_expr(name, o))
            }
        }
        StmtKind::Dup { addr, dev } => {
            let mut s = "dup".to_string();
            if let Some(a) = addr {
                let _ = write!(s, " to {}", expr(a, o));
            }
            if let Some(d) = dev {
                let _ = write!(s, " device {}", expr(d, o));
            }
            s
        }
        StmtKind::Fwd {
            family: f,
            addr,
            dev,
        } => match addr {
            Some(a) => format!(
                "fwd {}to {} device {}",
                f.as_ref().map(|x| format!("{x} ")).unwrap_or_default(),
                expr(a, o),
                expr(dev, o)
            ),
            None => format!("fwd to {}", expr(dev, o)),
        },
        StmtKind::Queue { num, flags } => {
            let mut s = "queue".to_string();
            if !flags.is_empty() {
                let order = ["bypass", "fanout"];
                let f: Vec<&str> = order
                    .iter()
                    .copied()
                    .filter(|x| flags.iter().any(|y| y == x))
                    .collect();
                let _ = write!(s, " flags {}", f.join(","));
            }
            match num {
                Some(n) => {
                    let _ = write!(s, " to {}", expr(n, o));
                }
                None => s.push_str(" to 0"),
            }
            s
        }
        StmtKind::Tproxy {
            family: f,
            addr,
            port,
        } => {
            let mut s = "tproxy".to_string();
            if family == Family::Inet {
                if let Some(f) = f {
                    let _ = write!(s, " {f}");
                }
            }
            s.push_str(" to");
            if let Some(a) = addr {
                let t = expr(a, o);
                if a.dt == Dt::Ipv6Addr && matches!(a.kind, ExprKind::Const(_)) {
                    let _ = write!(s, " [{t}]");
                } else {
                    let _ = write!(s, " {t}");
                }
            }
            if let Some(p) = port {
                if addr.is_none() {
                    s.push(' ');
                }
                let _ = write!(s, ":{}", expr(p, o));
            }
            s
        }
        StmtKind::Synproxy { mss, wscale, flags } => {
            let mut s = "synproxy".to_string();
            if let Some(m) = mss {
                let _ = write!(s, " mss {m}");
            }
            if let Some(w) = wscale {
                let _ = write!(s, " wscale {w}");
            }
            for f in ["timestamp", "sack-perm"] {
                if flags.iter().any(|x| x == f) {
                    let _ = write!(s, " {f}");
                }
            }
            s
        }
        StmtKind::Last { used } => match used {
            _ if o.stateless => "last".into(),
            Some(u) => format!("last used {}", time_str(*u)),
            None => "last used never".into(),
        },
        StmtKind::Connlimit { over, count } => {
            format!("ct count {}{count}", if *over { "over " } else { "" })
        }
        StmtKind::Reset(e) => format!("reset {}", expr(e, o)),
    }
}

fn quoted_expr(e: &Expr, o: &ListOpts) -> String {
    match &e.kind {
        ExprKind::Quoted(s) | ExprKind::Symbol(s) => format!("\"{s}\""),
        ExprKind::Const(Const {
            val: Val::Str(s), ..
        }) => format!("\"{s}\""),
        _ => expr(e, o),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Top,
    /// A set element: flag values with several bits print as `syn | ack`.
    Elem,
    Rhs {
        binop_left: bool,
    },
    Binop,
}

pub fn expr(e: &Expr, o: &ListOpts) -> String {
    expr_in(e, o, Ctx::Top)
}

fn binop_prec(op: BinOp) -> u8 {
    match op {
        BinOp::Shl | BinOp::Shr => 3,
        BinOp::And => 2,
        BinOp::Xor => 1,
        BinOp::Or => 0,
    }
}

fn expr_in(e: &Expr, o: &ListOpts, ctx: Ctx) -> String {
    match &e.kind {
        ExprKind::Symbol(s) => s.clone(),
        ExprKind::Quoted(s) => format!("\"{s}\""),
        ExprKind::Var(v) => format!("${v}"),
        ExprKind::Const(c) => {
            if c.dt.is_bitmask() {
                if let Val::Int(v) = c.val {
                    let pipe = matches!(ctx, Ctx::Binop | Ctx::Rhs { binop_left: true })
                        || (ctx == Ctx::Elem && v.count_ones() > 1);
                    if pipe {
                        return bitmask_pipe(c.dt, v, c.bits, o);
                    }
                }
            }
            c.dt.print(&c.val, c.bits, &o.dt)
        }
        ExprKind::Payload { proto, field } => format!("{proto} {field}"),
        ExprKind::RawPayload { base, offset, len } => format!("@{base},{offset},{len}"),
        ExprKind::Exthdr { hdr, field } if field.is_empty() || field == "exists" => {
            format!("exthdr {hdr}")
        }
        ExprKind::Exthdr { hdr, field } => format!("{hdr} {field}"),
        ExprKind::TcpOpt { opt, field } => match field {
            Some(f) if f.starts_with('@') => format!("tcp option @{opt},{}", &f[1..]),
            Some(f) => format!("tcp option {opt} {f}"),
            None => format!("tcp option {opt}"),
        },
        ExprKind::IpOpt { opt, field } => match field {
            Some(f) => format!("ip option {opt} {f}"),
            None => format!("ip option {opt}"),
        },
        ExprKind::SctpChunk { chunk, field } => match field {
            Some(f) => format!("sctp chunk {chunk} {f}"),
            None => format!("sctp chunk {chunk}"),
        },
        ExprKind::DccpOpt(n) => format!("dccp option {n}"),
        ExprKind::Meta(k) => {
            // older key names (`secpath`) list under the current one
            let (name, unq) = crate::proto::meta_key(k)
                .map(|m| (m.name, m.unqualified))
                .unwrap_or((k.as_str(), false));
            if unq {
                name.to_string()
            } else {
                format!("meta {name}")
            }
        }
        ExprKind::Ct { key, dir, family } => {
            let mut s = "ct".to_string();
            if let Some(d) = dir {
                let _ = write!(s, " {d}");
            }
            if let Some(f) = family {
                let _ = write!(s, " {f}");
            }
            let _ = write!(s, " {key}");
            s
        }
        ExprKind::Fib { flags, result } => format!("fib {} {result}", flags.join(" . ")),
        ExprKind::Rt { key, family } => match family {
            Some(f) => format!("rt {f} {key}"),
            None => format!("rt {key}"),
        },
        ExprKind::Numgen {
            random,
            modulus,
            offset,
        } => {
            let mut s = format!(
                "numgen {} mod {modulus}",
                if *random { "random" } else { "inc" }
            );
            if *offset != 0 {
                let _ = write!(s, " offset {offset}");
            }
            s
        }
        ExprKind::Hash {
            expr: inner,
            modulus,
            seed,
            offset,
            sym,
        } => {
            let mut s = if *sym {
                "symhash".to_string()
            } else {
                format!(
                    "jhash {}",
                    inner.as_ref().map(|i| expr(i, o)).unwrap_or_default()
                )
            };
            let _ = write!(s, " mod {modulus}");
            // a seed the rule gave is kept, even zero
            if let Some(sd) = seed {
                let _ = write!(s, " seed 0x{sd:x}");
            }
            if *offset != 0 {
                let _ = write!(s, " offset {offset}");
            }
            s
        }
        ExprKind::Socket { key, level } => match level {
            Some(l) => format!("socket {key} level {l}"),
            None => format!("socket {key}"),
        },
        ExprKind::Osf { ttl, key } => match ttl {
            Some(t) => format!("osf ttl {t} {key}"),
            None => format!("osf {key}"),
        },
        ExprKind::Ipsec {
            dir,
            spnum,
            key,
            family,
        } => {
            let mut s = format!("ipsec {dir}");
            if *spnum != 0 {
                let _ = write!(s, " spnum {spnum}");
            }
            if let Some(f) = family {
                let _ = write!(s, " {f}");
            }
            let _ = write!(s, " {key}");
            s
        }
        ExprKind::Tunnel(k) => format!("tunnel {k}"),
        ExprKind::Prefix(a, len) => format!("{}/{len}", expr_in(a, o, ctx)),
        ExprKind::Range(a, b) => {
            // nft lists both ends of a range numerically
            let mut no = *o;
            no.dt.numeric_proto = true;
            no.dt.numeric_time = true;
            no.dt.numeric_symbol = true;
            no.dt.numeric_time = true;
            no.dt.services = false;
            format!("{}-{}", expr_in(a, &no, ctx), expr_in(b, &no, ctx))
        }
        ExprKind::List(items) => items
            .iter()
            .map(|i| expr_in(i, o, ctx))
            .collect::<Vec<_>>()
            .join(","),
        ExprKind::Concat(items) => items
            .iter()
            .map(|i| expr_in(i, o, ctx))
            .collect::<Vec<_>>()
            .join(" . "),
        ExprKind::Binop(op, l, r) => {
            let side = |x: &Expr| {
                let s = expr_in(x, o, Ctx::Binop);
                match &x.kind {
                    // parenthesised only where the argument binds more loosely than the operator
                    ExprKind::Binop(op2, ..) if binop_prec(*op2) < binop_prec(*op) => {
                        format!("({s})")
                    }
                    ExprKind::Const(c)
                        if c.dt.is_bitmask() && s.contains(" | ") && *op != BinOp::Or =>
                    {
                        format!("({s})")
                    }
                    _ => s,
                }
            };
            format!("{} {} {}", side(l), op.sym(), side(r))
        }
        ExprKind::Masked(v, m) => format!("{} / {}", expr(v, o), expr(m, o)),
        ExprKind::Set(elems) => {
            let items: Vec<String> = elems.iter().map(|x| expr_in(x, o, Ctx::Elem)).collect();
            format!("{{ {} }}", items.join(", "))
        }
        ExprKind::Elem(inner, opts) => {
            let mut s = expr_in(inner, o, ctx);
            for st in &opts.stmts {
                let _ = write!(s, " {}", stmt(st, Family::Inet, o));
            }
            if let Some(t) = opts.timeout {
                let _ = write!(s, " timeout {}", time_str(t));
            }
            if let Some(x) = opts.expires {
                if !o.stateless {
                    let _ = write!(s, " expires {}", time_str(x));
                }
            }
            if let Some(c) = &opts.comment {
                let _ = write!(s, " comment \"{c}\"");
            }
            s
        }
        ExprKind::Mapping(k, v) => {
            let kctx = if ctx == Ctx::Elem {
                Ctx::Elem
            } else {
                Ctx::Top
            };
            format!("{} : {}", expr_in(k, o, kctx), expr_in(v, o, Ctx::Top))
        }
        ExprKind::SetRef(n) => format!("@{n}"),
        ExprKind::Map(k, m) => format!("{} map {}", expr(k, o), expr(m, o)),
        ExprKind::Verdict(v) => v.text(),
        ExprKind::Wildcard => "*".into(),
    }
}

/// nft writes `==` before a flag value only while it is one value, not an `a | b` of several.
fn const_single_flag(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Const(Const {
            dt,
            val: Val::Int(v),
            ..
        }) => *dt == Dt::Bitmask || v.count_ones() <= 1,
        _ => false,
    }
}

/// A bitmask constant inside arithmetic: `fin | syn`.
fn bitmask_pipe(dt: Dt, v: u128, bits: u32, o: &ListOpts) -> String {
    if v == 0 || dt == Dt::Bitmask {
        return dt.print(&Val::Int(v), bits, &o.dt);
    }
    let mut parts = vec![];
    for b in 0..bits.clamp(1, 128) {
        let m = 1u128 << b;
        if v & m != 0 {
            parts.push(dt.print(&Val::Int(m), bits, &o.dt));
        }
    }
    parts.join(" | ")
}

/// Geneve option data as nft lists it: each byte in hex without a leading zero.
pub fn geneve_data(bytes: &[u8]) -> String {
    let mut d = "0x".to_string();
    for b in bytes {
        let _ = write!(d, "{b:x}");
    }
    d
}

fn tunnel_obj(s: &mut String, t: &TunnelObj) {
    let _ = writeln!(s, "\t\tid {}", t.id);
    for (dir, a) in [("saddr", &t.src), ("daddr", &t.dst)] {
        if let Some((v6, addr)) = a {
            let _ = writeln!(s, "\t\t{} {dir} {addr}", if *v6 { "ip6" } else { "ip" });
        }
    }
    for (k, v) in [
        ("sport", t.sport as u32),
        ("dport", t.dport as u32),
        ("tos", t.tos as u32),
        ("ttl", t.ttl as u32),
    ] {
        if v != 0 {
            let _ = writeln!(s, "\t\t{k} {v}");
        }
    }
    match &t.opts {
        TunnelOpts::None => {}
        TunnelOpts::Vxlan { gbp } => {
            let _ = writeln!(s, "\t\tvxlan {{\n\t\t\tgbp {gbp}\n\t\t}}");
        }
        TunnelOpts::Erspan {
            version,
            index,
            egress,
            hwid,
        } => {
            let _ = writeln!(s, "\t\terspan {{\n\t\t\tversion {version}");
            if *version == 1 {
                let _ = writeln!(s, "\t\t\tindex {index}");
            } else {
                let _ = writeln!(
                    s,
                    "\t\t\tdirection {}\n\t\t\tid {hwid}",
                    if *egress { "egress" } else { "ingress" }
                );
            }
            s.push_str("\t\t}\n");
        }
        TunnelOpts::Geneve(list) => {
            s.push_str("\t\tgeneve {\n");
            for (class, typ, data) in list {
                let _ = writeln!(
                    s,
                    "\t\t\tclass 0x{class:x} opt-type 0x{typ:x} data \"{}\"",
                    geneve_data(data)
                );
            }
            s.push_str("\t\t}\n");
        }
    }
}
