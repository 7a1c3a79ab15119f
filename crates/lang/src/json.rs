//! libnftables JSON output: the listing as `nft -j list ruleset` prints it (schema in
//! libnftables-json(5)). It walks the same evaluated ruleset the text printer does, so both
//! listings agree on what the kernel would hold.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::ast::*;
use crate::datatype::{Dt, PrintOpts, Val};
use crate::print::{std_prio_value, ListOpts};
use crate::ruleset::LoadError;

pub use crate::json_in::{is_json_text, load_json_file, load_json_str};

/// What expression and statement output depends on besides the node itself.
#[derive(Clone, Copy)]
struct Jc {
    family: Family,
    stateless: bool,
    dt: PrintOpts,
}

pub fn ruleset_to_json(rs: &Ruleset, o: &ListOpts) -> Value {
    let mut items = vec![
        json!({"metainfo": {"version": "1.1.6", "release_name": "Commodore Bullmoose #7", "json_schema_version": 1}}),
    ];
    for t in &rs.tables {
        table_json(&mut items, t, o);
    }
    json!({ "nftables": items })
}

/// The synproxy flags that are set, in nft's order; `None` for none.
fn synproxy_flags(flags: &[String]) -> Option<Value> {
    let f: Vec<Value> = ["timestamp", "sack-perm"]
        .iter()
        .filter(|x| flags.iter().any(|y| y == *x))
        .map(|x| json!(x))
        .collect();
    (!f.is_empty()).then_some(Value::Array(f))
}

fn obj(pairs: Vec<(&str, Value)>) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.insert(k.to_string(), v);
    }
    Value::Object(m)
}

fn one(k: &str, v: Value) -> Value {
    obj(vec![(k, v)])
}

/// A list nft prints as a plain string when it has one entry (devices, set types).
fn str_or_array(v: &[String]) -> Value {
    if v.len() == 1 {
        Value::from(v[0].clone())
    } else {
        Value::Array(v.iter().map(|s| Value::from(s.clone())).collect())
    }
}

fn table_json(items: &mut Vec<Value>, t: &Table, o: &ListOpts) {
    let c = Jc {
        family: t.family,
        stateless: o.stateless,
        dt: o.dt,
    };
    let fam = t.family.name();
    let mut m = vec![
        ("family", json!(fam)),
        ("name", json!(t.name)),
        ("handle", json!(t.handle)),
    ];
    // the kernel reports flags in bit order
    let flags: Vec<Value> = ["dormant", "owner", "persist"]
        .iter()
        .filter(|f| t.flags.iter().any(|x| x == *f))
        .map(|f| json!(f))
        .collect();
    if !flags.is_empty() {
        m.push(("flags", Value::Array(flags)));
    }
    if let Some(cm) = &t.comment {
        m.push(("comment", json!(cm)));
    }
    items.push(one("table", obj(m)));
    for ch in &t.chains {
        items.push(chain_json(ch, t));
    }
    for ob in &t.objs {
        items.push(obj_json(ob, t, &c));
    }
    for st in &t.sets {
        if st.name.starts_with("__set") {
            continue;
        }
        items.push(set_json(st, t, &c));
    }
    for ft in &t.flowtables {
        items.push(flowtable_json(ft, t));
    }
    for ch in &t.chains {
        for r in &ch.rules {
            items.push(rule_json(r, ch, t, &c));
        }
    }
}

/// A priority as the number the kernel holds.
pub fn prio_value(p: &Prio, family: Family) -> i64 {
    match p {
        Prio::Num(n) => *n as i64,
        // 32 bits, wrapping as nft's sum does
        Prio::Named(n, off) => i64::from(std_prio_value(family, n).unwrap_or(0).wrapping_add(*off)),
        Prio::Var(v) => v.trim().parse::<i64>().unwrap_or(0),
    }
}

fn chain_json(ch: &Chain, t: &Table) -> Value {
    let mut m = vec![
        ("family", json!(t.family.name())),
        ("table", json!(t.name)),
        ("name", json!(ch.name)),
        ("handle", json!(ch.handle)),
    ];
    if let Some(cm) = &ch.comment {
        m.push(("comment", json!(cm)));
    }
    if let Some(h) = &ch.hook {
        if !h.devices.is_empty() {
            m.push(("dev", str_or_array(&h.devices)));
        }
        m.push(("type", json!(h.kind)));
        m.push(("hook", json!(h.hook)));
        m.push(("prio", json!(prio_value(&h.prio, t.family))));
        m.push(("policy", json!(h.policy.as_deref().unwrap_or("accept"))));
    }
    one("chain", obj(m))
}

fn proto_json(p: &str) -> Value {
    match p.parse::<u128>() {
        Ok(n) => match crate::datatype::protocol_name(n) {
            Some(s) => json!(s),
            None => json!(n as u64),
        },
        Err(_) => json!(p),
    }
}

/// `get_rate`: the largest unit that divides the byte amount evenly.
fn rate_unit(b: u64) -> (u64, &'static str) {
    crate::print::bytes_str(b)
}

fn limit_fields(l: &LimitStmt, m: &mut Vec<(&'static str, Value)>, obj: bool) {
    let (rate, ru) = if l.bytes {
        rate_unit(l.rate)
    } else {
        (l.rate, "packets")
    };
    // packet limits have a burst of 5 unless given
    let burst = l.burst.unwrap_or(if l.bytes { 0 } else { 5 });
    let (burst, bu) = if l.bytes {
        rate_unit(burst)
    } else {
        (burst, "packets")
    };
    m.push(("rate", json!(rate)));
    if !obj {
        m.push(("burst", json!(burst)));
    }
    m.push(("per", json!(l.unit)));
    if l.over {
        m.push(("inv", json!(true)));
    }
    if l.bytes {
        m.push(("rate_unit", json!(ru)));
    }
    if obj {
        if burst != 0 {
            m.push(("burst", json!(burst)));
            if l.bytes {
                m.push(("burst_unit", json!(bu)));
            }
        }
    } else if l.bytes {
        m.push(("burst_unit", json!(bu)));
    }
}

fn l3proto_name(l3: &Option<String>, family: Family) -> String {
    match l3.as_deref() {
        Some(s) => s.to_string(),
        None => family.name().to_string(),
    }
}

fn obj_json(ob: &Obj, t: &Table, c: &Jc) -> Value {
    let mut m = vec![
        ("family", json!(t.family.name())),
        ("name", json!(ob.name)),
        ("table", json!(t.name)),
        ("handle", json!(ob.handle)),
    ];
    if let Some(cm) = &ob.comment {
        m.push(("comment", json!(cm)));
    }
    match &ob.body {
        ObjBody::Counter { packets, bytes } => {
            let (p, b) = if c.stateless {
                (0, 0)
            } else {
                (*packets, *bytes)
            };
            m.push(("packets", json!(p)));
            m.push(("bytes", json!(b)));
        }
        ObjBody::Quota { over, bytes, used } => {
            m.push(("bytes", json!(bytes)));
            m.push(("used", json!(if c.stateless { 0 } else { *used })));
            m.push(("inv", json!(over)));
        }
        ObjBody::Limit(l) => limit_fields(l, &mut m, true),
        ObjBody::CtHelper {
            name,
            proto,
            l3proto,
        } => {
            m.push(("type", json!(name)));
            m.push(("protocol", proto_json(proto)));
            m.push(("l3proto", json!(l3proto_name(l3proto, t.family))));
        }
        ObjBody::CtTimeout {
            proto,
            l3proto,
            policy,
        } => {
            m.push(("protocol", proto_json(proto)));
            m.push(("l3proto", json!(l3proto_name(l3proto, t.family))));
            let mut pm = Map::new();
            for (k, v) in policy {
                pm.insert(k.clone(), json!(v));
            }
            m.push((
                "policy",
                if pm.is_empty() {
                    Value::Null
                } else {
                    Value::Object(pm)
                },
            ));
        }
        ObjBody::CtExpect {
            proto,
            dport,
            timeout,
            size,
            l3proto,
        } => {
            m.push(("protocol", proto_json(proto)));
            m.push(("dport", json!(dport)));
            m.push(("timeout", json!(timeout)));
            m.push(("size", json!(size)));
            m.push(("l3proto", json!(l3proto_name(l3proto, t.family))));
        }
        ObjBody::Secmark(s) => m.push(("context", json!(s))),
        ObjBody::Synproxy { mss, wscale, flags } => {
            m.push(("mss", json!(mss)));
            m.push(("wscale", json!(wscale)));
            if let Some(f) = synproxy_flags(flags) {
                m.push(("flags", f));
            }
        }
        ObjBody::Tunnel(tn) => {
            m.push(("id", json!(tn.id)));
            if let Some((v6, a)) = &tn.src {
                m.push((if *v6 { "src-ipv6" } else { "src-ipv4" }, json!(a)));
            }
            if let Some((v6, a)) = &tn.dst {
                m.push((if *v6 { "dst-ipv6" } else { "dst-ipv4" }, json!(a)));
            }
            m.push(("sport", json!(tn.sport)));
            m.push(("dport", json!(tn.dport)));
            m.push(("tos", json!(tn.tos)));
            m.push(("ttl", json!(tn.ttl)));
            match &tn.opts {
                TunnelOpts::None => {}
                TunnelOpts::Vxlan { gbp } => {
                    m.push(("type", json!("vxlan")));
                    m.push(("tunnel", json!({ "gbp": gbp })));
                }
                TunnelOpts::Erspan {
                    version,
                    index,
                    egress,
                    hwid,
                } => {
                    m.push(("type", json!("erspan")));
                    let v = if *version == 1 {
                        json!({ "version": version, "index": index })
                    } else {
                        json!({ "version": version, "dir": if *egress { "egress" } else { "ingress" }, "hwid": hwid })
                    };
                    m.push(("tunnel", v));
                }
                TunnelOpts::Geneve(list) => {
                    m.push(("type", json!("geneve")));
                    let opts: Vec<Value> = list.iter().map(|(class, typ, data)| json!({ "class": class, "opt-type": typ, "data": crate::print::geneve_data(data) })).collect();
                    m.push(("tunnel", Value::Array(opts)));
                }
            }
        }
        ObjBody::Raw(_) => {}
    }
    one(&ob.kind, obj(m))
}

/// The datatype names of a set key or data (`["ipv4_addr", "inet_service"]`).
fn keyspec_types(k: &KeySpec, family: Family) -> Vec<String> {
    match k {
        KeySpec::Types(v) => v.clone(),
        KeySpec::Typeof(e) => {
            let sets = HashMap::new();
            let ctx = crate::eval::Ctx {
                family,
                hook: None,
                chain_type: None,
                sets: &sets,
                flowtables: &[],
                chains: &[],
                key_only: true,
            };
            let mut e = e.clone();
            if crate::eval::eval_selector(&ctx, &mut e).is_err() {
                return vec!["invalid".into()];
            }
            match &e.kind {
                ExprKind::Concat(items) => items.iter().map(|i| i.dt.name().to_string()).collect(),
                _ => vec![e.dt.name().to_string()],
            }
        }
    }
}

fn set_json(st: &Set, t: &Table, c: &Jc) -> Value {
    let kind = if st.is_map { "map" } else { "set" };
    let ty = match &st.key {
        Some(KeySpec::Typeof(e)) => one("typeof", expr_json(e, c)),
        Some(k) => str_or_array(&keyspec_types(k, t.family)),
        None => Value::Null,
    };
    let mut m = vec![
        ("family", json!(t.family.name())),
        ("name", json!(st.name)),
        ("table", json!(t.name)),
        ("type", ty),
        ("handle", json!(st.handle)),
    ];
    if let Some(cm) = &st.comment {
        m.push(("comment", json!(cm)));
    }
    if st.is_map {
        if let Some(om) = &st.obj_map {
            m.push(("map", json!(om)));
        } else if let Some(d) = &st.data {
            m.push(("map", str_or_array(&keyspec_types(d, t.family))));
        }
    }
    let has = |f: &str| st.flags.iter().any(|x| x == f);
    if !has("constant") {
        if let Some(p) = &st.policy {
            if p != "performance" {
                m.push(("policy", json!(p)));
            }
        }
        if let Some(sz) = st.size {
            m.push(("size", json!(sz)));
        }
    }
    let mut flags = vec![];
    for (f, name) in [
        ("constant", "constant"),
        ("interval", "interval"),
        ("timeout", "timeout"),
        ("dynamic", "dynamic"),
    ] {
        // a set timeout implies the timeout flag
        if has(f) || (f == "dynamic" && has("eval")) || (f == "timeout" && st.timeout.is_some()) {
            flags.push(json!(name));
        }
    }
    if !flags.is_empty() {
        m.push(("flags", Value::Array(flags)));
    }
    if let Some(tm) = st.timeout {
        if tm > 0 {
            m.push(("timeout", json!(tm / 1000)));
        }
    }
    if let Some(g) = st.gc_interval {
        if g > 0 {
            m.push(("gc-interval", json!(g / 1000)));
        }
    }
    if st.auto_merge {
        m.push(("auto-merge", json!(true)));
    }
    if !st.elements.is_empty() {
        let el: Vec<Value> = st.elements.iter().map(|e| expr_json(e, c)).collect();
        m.push(("elem", Value::Array(el)));
    }
    if !st.stmts.is_empty() {
        let sc = Jc {
            stateless: true,
            ..*c
        };
        m.push((
            "stmt",
            Value::Array(st.stmts.iter().map(|s| stmt_json(s, &sc)).collect()),
        ));
    }
    one(kind, obj(m))
}

fn flowtable_json(ft: &Flowtable, t: &Table) -> Value {
    let mut m = vec![
        ("family", json!(t.family.name())),
        ("name", json!(ft.name)),
        ("table", json!(t.name)),
        ("handle", json!(ft.handle)),
    ];
    if let (Some(h), Some(p)) = (&ft.hook, &ft.prio) {
        m.push(("hook", json!(h)));
        m.push(("prio", json!(prio_value(p, t.family))));
    }
    if !ft.devices.is_empty() {
        m.push(("dev", str_or_array(&ft.devices)));
    }
    one("flowtable", obj(m))
}

fn rule_json(r: &Rule, ch: &Chain, t: &Table, c: &Jc) -> Value {
    let mut m = vec![
        ("family", json!(t.family.name())),
        ("table", json!(t.name)),
        ("chain", json!(ch.name)),
        ("handle", json!(r.handle)),
    ];
    if let Some(cm) = &r.comment {
        m.push(("comment", json!(cm)));
    }
    let ex: Vec<Value> = r.stmts.iter().map(|s| stmt_json(s, c)).collect();
    if !ex.is_empty() {
        m.push(("expr", Value::Array(ex)));
    }
    one("rule", obj(m))
}

// ---- statements ----------------------------------------------------------------------------

fn verdict_json(v: &Verdict) -> Value {
    match v {
        Verdict::Accept => json!({"accept": null}),
        Verdict::Drop => json!({"drop": null}),
        Verdict::Continue => json!({"continue": null}),
        Verdict::Return => json!({"return": null}),
        Verdict::Queue => json!({"queue": null}),
        Verdict::Jump(t) => json!({"jump": {"target": t}}),
        Verdict::Goto(t) => json!({"goto": {"target": t}}),
    }
}

fn str_of(e: &Expr) -> Option<String> {
    match &e.kind {
        ExprKind::Quoted(s) | ExprKind::Symbol(s) => Some(s.clone()),
        ExprKind::Const(Const {
            val: Val::Str(s), ..
        }) => Some(s.clone()),
        _ => None,
    }
}

/// Whether a relational without an operator is a flag test (`ct state new`), which nft
/// reports with the `in` operator.
fn is_flag_test(left: &Expr, right: &Expr) -> bool {
    let dt = if right.dt != Dt::Invalid {
        right.dt
    } else {
        left.dt
    };
    dt.is_bitmask()
        && matches!(
            right.kind,
            ExprKind::Const(_) | ExprKind::List(_) | ExprKind::Symbol(_)
        )
}

fn relop_str(op: RelOp, left: &Expr, right: &Expr) -> &'static str {
    match op {
        RelOp::Implicit => {
            if is_flag_test(left, right) {
                "in"
            } else {
                "=="
            }
        }
        _ => op.sym(),
    }
}

fn log_level(l: &str) -> &str {
    l
}

pub fn stmt_json_public(st: &Stmt, family: Family, o: &ListOpts) -> Value {
    stmt_json(
        st,
        &Jc {
            family,
            stateless: o.stateless,
            dt: o.dt,
        },
    )
}

fn stmt_json(st: &Stmt, c: &Jc) -> Value {
    match &st.kind {
        StmtKind::Match { left, op, right } => {
            let l = expr_json(left, c);
            let opname = relop_str(*op, left, right);
            let r = match (&right.kind, opname) {
                (ExprKind::Const(k), "in" | "!") => k.dt.to_json_opts(&k.val, k.bits, &c.dt),
                _ => expr_json(right, c),
            };
            json!({"match": {"op": opname, "left": l, "right": r}})
        }
        StmtKind::Verdict(v) => verdict_json(v),
        StmtKind::Vmap { key, map } => {
            json!({"vmap": {"key": expr_json(key, c), "data": expr_json(map, c)}})
        }
        StmtKind::Counter { packets, bytes } => {
            if c.stateless {
                json!({"counter": null})
            } else {
                json!({"counter": {"packets": packets, "bytes": bytes}})
            }
        }
        StmtKind::Limit(l) => {
            let mut m = vec![];
            limit_fields(l, &mut m, false);
            one("limit", obj(m))
        }
        StmtKind::Quota { over, bytes, used } => {
            let (v, u) = rate_unit(*bytes);
            let mut m = vec![("val", json!(v)), ("val_unit", json!(u))];
            if *over {
                m.push(("inv", json!(true)));
            }
            if !c.stateless && *used > 0 {
                let (uv, uu) = rate_unit(*used);
                m.push(("used", json!(uv)));
                m.push(("used_unit", json!(uu)));
            }
            one("quota", obj(m))
        }
        StmtKind::Log(l) => {
            let mut m = vec![];
            if let Some(p) = &l.prefix {
                m.push((
                    "prefix",
                    str_of(p)
                        .map(Value::from)
                        .unwrap_or_else(|| expr_json(p, c)),
                ));
            }
            if let Some(g) = l.group {
                m.push(("group", json!(g)));
            }
            if let Some(s) = l.snaplen {
                m.push(("snaplen", json!(s)));
            }
            if let Some(q) = l.queue_threshold {
                m.push(("queue-threshold", json!(q)));
            }
            if let Some(lv) = &l.level {
                if lv != "warn" {
                    m.push(("level", json!(log_level(lv))));
                }
            }
            let all = l.flags.iter().any(|x| x == "all")
                || [
                    "tcp sequence",
                    "tcp options",
                    "ip options",
                    "skuid",
                    "ether",
                ]
                .iter()
                .all(|f| l.flags.iter().any(|x| x == f));
            let mut f = vec![];
            if all {
                f.push(json!("all"));
            } else {
                for n in [
                    "tcp sequence",
                    "tcp options",
                    "ip options",
                    "skuid",
                    "ether",
                ] {
                    if l.flags.iter().any(|x| x == n) {
                        f.push(json!(n));
                    }
                }
            }
            if !f.is_empty() {
                m.push(("flags", Value::Array(f)));
            }
            if m.is_empty() {
                json!({"log": null})
            } else {
                one("log", obj(m))
            }
        }
        StmtKind::Reject(r) => match r {
            RejectKind::Default => match c.family {
                // the kernel stores the default as an explicit ICMP port unreachable
                Family::Ip => json!({"reject": {"type": "icmp", "expr": "port-unreachable"}}),
                Family::Ip6 => json!({"reject": {"type": "icmpv6", "expr": "port-unreachable"}}),
                Family::Inet | Family::Bridge | Family::Netdev => {
                    json!({"reject": {"type": "icmpx", "expr": "port-unreachable"}})
                }
                Family::Arp => json!({"reject": null}),
            },
            RejectKind::TcpReset => json!({"reject": {"type": "tcp reset"}}),
            RejectKind::Icmp { family, code } => {
                let ty = match family.as_str() {
                    "icmp" | "ip" => "icmp",
                    "icmpv6" | "ip6" => "icmpv6",
                    _ => "icmpx",
                };
                let code = match &code.kind {
                    ExprKind::Const(Const {
                        dt,
                        val: Val::Int(n),
                        ..
                    }) => match dt.symbol_name(*n) {
                        Some(s) => json!(s),
                        None => expr_json(code, c),
                    },
                    _ => expr_json(code, c),
                };
                json!({"reject": {"type": ty, "expr": code}})
            }
        },
        StmtKind::Nat(n) => {
            let mut m = vec![];
            if let Some(f) = &n.family {
                if n.addr.is_some() && matches!(f.as_str(), "ip" | "ip6") {
                    m.push(("family", json!(f)));
                }
            }
            if let Some(a) = &n.addr {
                m.push(("addr", expr_json(a, c)));
            }
            if let Some(p) = &n.port {
                m.push(("port", expr_json(p, c)));
            }
            // a prefix mapping implies netmap, which the text listing leaves unsaid
            let fl: Vec<Value> = ["random", "fully-random", "persistent", "netmap"]
                .iter()
                .filter(|x| n.flags.iter().any(|y| y == *x) || (**x == "netmap" && n.prefix))
                .map(|x| json!(x))
                .collect();
            if !fl.is_empty() {
                m.push(("flags", Value::Array(fl)));
            }
            if n.prefix {
                m.push(("type_flags", json!(["prefix"])));
            }
            let v = if m.is_empty() { Value::Null } else { obj(m) };
            one(n.kind.name(), v)
        }
        StmtKind::Notrack => json!({"notrack": null}),
        StmtKind::FlowAdd(n) => json!({"flow": {"op": "add", "flowtable": format!("@{n}")}}),
        StmtKind::Set { key, value } => {
            json!({"mangle": {"key": expr_json(key, c), "value": expr_json(value, c)}})
        }
        StmtKind::Dynset {
            op,
            set,
            key,
            stmts,
            data,
        } => {
            let mut m = vec![("op", json!(op.name())), ("elem", expr_json(key, c))];
            if let Some(d) = data {
                m.push(("data", expr_json(d, c)));
                m.push(("map", json!(format!("@{set}"))));
            } else {
                m.push(("set", json!(format!("@{set}"))));
            }
            if !stmts.is_empty() {
                let sc = Jc {
                    stateless: true,
                    ..*c
                };
                m.push((
                    "stmt",
                    Value::Array(stmts.iter().map(|s| stmt_json(s, &sc)).collect()),
                ));
            }
            one(if data.is_some() { "map" } else { "set" }, obj(m))
        }
        StmtKind::ObjRef { kind, name } => {
            let v = match str_of(name) {
                Some(s) => json!(s),
                None => expr_json(name, c),
            };
            one(kind, v)
        }
        StmtKind::Dup { addr, dev } => match addr {
            Some(a) => {
                let mut m = vec![("addr", expr_json(a, c))];
                if let Some(d) = dev {
                    m.push(("dev", expr_json(d, c)));
                }
                one("dup", obj(m))
            }
            None => match dev {
                Some(d) => json!({"dup": {"dev": expr_json(d, c)}}),
                None => json!({"dup": null}),
            },
        },
        StmtKind::Fwd { family, addr, dev } => {
            let mut m = vec![("dev", expr_json(dev, c))];
            if let Some(a) = addr {
                m.push((
                    "family",
                    json!(family.as_deref().unwrap_or(if a.dt == Dt::Ipv6Addr {
                        "ip6"
                    } else {
                        "ip"
                    })),
                ));
                m.push(("addr", expr_json(a, c)));
            }
            one("fwd", obj(m))
        }
        StmtKind::Queue { num, flags } => {
            let mut m = vec![];
            match num {
                Some(n) => m.push(("num", expr_json(n, c))),
                None => m.push(("num", json!(0))),
            }
            let f: Vec<Value> = ["bypass", "fanout"]
                .iter()
                .filter(|x| flags.iter().any(|y| y == *x))
                .map(|x| json!(x))
                .collect();
            if !f.is_empty() {
                m.push(("flags", Value::Array(f)));
            }
            one("queue", obj(m))
        }
        StmtKind::Tproxy { family, addr, port } => {
            let mut m = vec![];
            if c.family == Family::Inet {
                if let Some(f) = family {
                    m.push(("family", json!(f)));
                }
            }
            if let Some(a) = addr {
                m.push(("addr", expr_json(a, c)));
            }
            if let Some(p) = port {
                m.push(("port", expr_json(p, c)));
            }
            one("tproxy", obj(m))
        }
        StmtKind::Synproxy { mss, wscale, flags } => {
            let mut m = vec![];
            if let Some(v) = mss {
                m.push(("mss", json!(v)));
            }
            if let Some(v) = wscale {
                m.push(("wscale", json!(v)));
            }
            if let Some(f) = synproxy_flags(flags) {
                m.push(("flags", f));
            }
            one("synproxy", if m.is_empty() { Value::Null } else { obj(m) })
        }
        StmtKind::Last { used } => match used {
            Some(u) if !c.stateless => json!({"last": {"used": u}}),
            _ => json!({"last": null}),
        },
        StmtKind::Connlimit { over, count } => {
            let mut m = vec![("val", json!(count))];
            if *over {
                m.push(("inv", json!(true)));
            }
            one("ct count", obj(m))
        }
        StmtKind::Reset(e) => one("reset", expr_json(e, c)),
    }
}

// ---- expressions ---------------------------------------------------------------------------

fn binop_flat(op: BinOp, e: &Expr, c: &Jc, out: &mut Vec<Value>) {
    match &e.kind {
        ExprKind::Binop(o2, l, r) if *o2 == op => {
            binop_flat(op, l, c, out);
            binop_flat(op, r, c, out);
        }
        _ => out.push(expr_json(e, c)),
    }
}

/// A constant. Several flags of a bitmask type are an OR of names (`{"|": ["syn", "ack"]}`);
/// only a flag test's right side lists them as a plain array.
fn const_json(k: &Const, c: &Jc) -> Value {
    match k.dt.to_json_opts(&k.val, k.bits, &c.dt) {
        Value::Array(a) if k.dt.is_bitmask() => one("|", Value::Array(a)),
        v => v,
    }
}

fn symbol_json(s: &str) -> Value {
    // an operand the evaluator left untyped (inside a concatenation): numbers stay numbers
    if let Some(h) = s.strip_prefix("0x") {
        if let Ok(n) = u64::from_str_radix(h, 16) {
            return json!(n);
        }
    }
    match s.parse::<u64>() {
        Ok(n) if !s.starts_with('0') || s == "0" => json!(n),
        _ => json!(s),
    }
}

fn tcpopt_name(opt: &str) -> String {
    match opt {
        "mss" => "maxseg".into(),
        "sack-perm" | "sack_perm" => "sack-permitted".into(),
        "ts" => "timestamp".into(),
        "sack" => "sack0".into(),
        o => o.to_string(),
    }
}

fn rt_family(key: &str, family: &Option<String>, tf: Family) -> Option<String> {
    if key != "nexthop" {
        return None;
    }
    match family {
        Some(f) => Some(f.clone()),
        None => match tf {
            Family::Ip6 => Some("ip6".into()),
            _ => Some("ip".into()),
        },
    }
}

pub fn expr_json_public(e: &Expr, family: Family, o: &ListOpts) -> Value {
    expr_json(
        e,
        &Jc {
            family,
            stateless: o.stateless,
            dt: o.dt,
        },
    )
}

fn expr_json(e: &Expr, c: &Jc) -> Value {
    match &e.kind {
        ExprKind::Symbol(s) => symbol_json(s),
        ExprKind::Quoted(s) => json!(s),
        ExprKind::Var(v) => json!(format!("${v}")),
        ExprKind::Const(k) => const_json(k, c),
        ExprKind::Payload { proto, field } => match proto.split_once(' ') {
            // a header inside a tunnel (`vxlan ip saddr`)
            Some((tunnel, inner)) => {
                json!({"payload": {"tunnel": tunnel, "protocol": inner, "field": field}})
            }
            None => json!({"payload": {"protocol": proto, "field": field}}),
        },
        ExprKind::RawPayload { base, offset, len } => {
            json!({"payload": {"base": base, "offset": offset, "len": len}})
        }
        ExprKind::Exthdr { hdr, field } => {
            if field == "exists" || field.is_empty() {
                json!({"exthdr": {"name": hdr}})
            } else {
                json!({"exthdr": {"name": hdr, "field": field}})
            }
        }
        ExprKind::TcpOpt { opt, field } => {
            if let Some((off, len)) = field
                .as_deref()
                .and_then(|f| f.strip_prefix('@'))
                .and_then(|f| f.split_once(','))
            {
                let n = |x: &str| x.parse::<u64>().map_or(json!(x), |v| json!(v));
                return one(
                    "tcp option",
                    obj(vec![("base", n(opt)), ("offset", n(off)), ("len", n(len))]),
                );
            }
            let mut m = vec![("name", json!(tcpopt_name(opt)))];
            if let Some(f) = field {
                m.push(("field", json!(f)));
            }
            one("tcp option", obj(m))
        }
        ExprKind::IpOpt { opt, field } => {
            let mut m = vec![("name", json!(opt))];
            if let Some(f) = field {
                m.push(("field", json!(f)));
            }
            one("ip option", obj(m))
        }
        ExprKind::SctpChunk { chunk, field } => {
            let mut m = vec![("name", json!(chunk))];
            if let Some(f) = field {
                m.push(("field", json!(f)));
            }
            one("sctp chunk", obj(m))
        }
        ExprKind::DccpOpt(n) => json!({"dccp option": {"type": n}}),
        ExprKind::Meta(k) => json!({"meta": {"key": k}}),
        ExprKind::Ct { key, dir, .. } => {
            let mut m = vec![("key", json!(key))];
            if let Some(d) = dir {
                m.push(("dir", json!(d)));
            }
            one("ct", obj(m))
        }
        ExprKind::Fib { flags, result } => {
            let order = ["saddr", "daddr", "mark", "iif", "oif"];
            let f: Vec<Value> = order
                .iter()
                .filter(|x| flags.iter().any(|y| y == *x))
                .map(|x| json!(x))
                .collect();
            // a route check is an oif lookup compared with a boolean
            let result = if result == "check" {
                "oif"
            } else {
                result.as_str()
            };
            let mut m = vec![("result", json!(result))];
            if !f.is_empty() {
                m.push(("flags", Value::Array(f)));
            }
            one("fib", obj(m))
        }
        ExprKind::Rt { key, family } => {
            let mut m = vec![("key", json!(key))];
            if let Some(f) = rt_family(key, family, c.family) {
                m.push(("family", json!(f)));
            }
            one("rt", obj(m))
        }
        ExprKind::Numgen {
            random,
            modulus,
            offset,
        } => {
            json!({"numgen": {"mode": if *random { "random" } else { "inc" }, "mod": modulus, "offset": offset}})
        }
        ExprKind::Hash {
            expr,
            modulus,
            seed,
            offset,
            sym,
        } => {
            let mut m = vec![("mod", json!(modulus))];
            if let Some(sd) = seed {
                if !*sym && *sd != 0 {
                    m.push(("seed", json!(sd)));
                }
            }
            if *offset != 0 {
                m.push(("offset", json!(offset)));
            }
            if let Some(x) = expr {
                m.push(("expr", expr_json(x, c)));
            }
            one(if *sym { "symhash" } else { "jhash" }, obj(m))
        }
        ExprKind::Socket { key, .. } => json!({"socket": {"key": key}}),
        ExprKind::Osf { ttl, key } => {
            let mut m = vec![("key", json!(key))];
            if let Some(t) = ttl {
                m.push(("ttl", json!(t)));
            }
            one("osf", obj(m))
        }
        ExprKind::Ipsec {
            dir,
            spnum,
            key,
            family,
        } => {
            let mut m = vec![("key", json!(key))];
            if let Some(f) = family {
                m.push(("family", json!(f)));
            }
            m.push(("dir", json!(dir)));
            m.push(("spnum", json!(spnum)));
            one("ipsec", obj(m))
        }
        ExprKind::Tunnel(k) => json!({"tunnel": {"key": k}}),
        ExprKind::Prefix(a, len) => json!({"prefix": {"addr": expr_json(a, c), "len": len}}),
        ExprKind::Range(a, b) => {
            // ranges print numerically: no service or protocol names
            let rc = Jc {
                dt: PrintOpts {
                    numeric_proto: true,
                    services: false,
                    ..c.dt
                },
                ..*c
            };
            json!({"range": [expr_json(a, &rc), expr_json(b, &rc)]})
        }
        ExprKind::List(items) => Value::Array(items.iter().map(|i| expr_json(i, c)).collect()),
        ExprKind::Concat(items) => {
            json!({"concat": items.iter().map(|i| expr_json(i, c)).collect::<Vec<_>>()})
        }
        ExprKind::Binop(op, _, _) => {
            let mut v = vec![];
            binop_flat(*op, e, c, &mut v);
            one(op.sym(), Value::Array(v))
        }
        ExprKind::Masked(v, m) => json!({"&": [expr_json(v, c), expr_json(m, c)]}),
        ExprKind::Set(elems) => {
            json!({"set": elems.iter().map(|i| expr_json(i, c)).collect::<Vec<_>>()})
        }
        ExprKind::Elem(inner, opts) => elem_json(inner, opts, None, c),
        ExprKind::Mapping(k, v) => match &k.kind {
            ExprKind::Elem(inner, opts) => {
                let dv = expr_json(v, c);
                json!([elem_json(inner, opts, None, c), dv])
            }
            _ => json!([expr_json(k, c), expr_json(v, c)]),
        },
        ExprKind::SetRef(n) => json!(format!("@{n}")),
        ExprKind::Map(k, m) => json!({"map": {"key": expr_json(k, c), "data": expr_json(m, c)}}),
        ExprKind::Verdict(v) => verdict_json(v),
        ExprKind::Wildcard => json!("*"),
    }
}

/// A set element: the bare value, or an `elem` object when it carries options.
fn elem_json(inner: &Expr, o: &ElemOpts, _data: Option<&Expr>, c: &Jc) -> Value {
    // a mapping wrapped in element options: the options belong to the key
    if let ExprKind::Mapping(k, v) = &inner.kind {
        return json!([elem_json(k, o, None, c), expr_json(v, c)]);
    }
    let val = expr_json(inner, c);
    if o.timeout.is_none() && o.expires.is_none() && o.comment.is_none() && o.stmts.is_empty() {
        return val;
    }
    let mut m = Map::new();
    m.insert("val".into(), val);
    if let Some(t) = o.timeout {
        m.insert("timeout".into(), json!(t / 1000));
    }
    if let Some(x) = o.expires {
        if !c.stateless {
            m.insert("expires".into(), json!(x / 1000));
        }
    }
    if let Some(cm) = &o.comment {
        m.insert("comment".into(), json!(cm));
    }
    for st in &o.stmts {
        if let Value::Object(sm) = stmt_json(st, c) {
            for (k, v) in sm {
                m.entry(k).or_insert(v);
            }
        }
    }
    json!({"elem": Value::Object(m)})
}

/// The text printer's view of a file path, for errors about unreadable JSON input.
pub fn read_error(path: &Path, e: std::io::Error) -> LoadError {
    let error =
        crate::error::Error::nospan(format!("Could not process rule: {}: {e}", path.display()));
    LoadError {
        rendered: format!("Error: {}\n", error.msg),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(text: &str) -> Vec<Value> {
        let rs = crate::ruleset::load_str("t.nft", text, &Default::default()).unwrap();
        let v = ruleset_to_json(&rs, &ListOpts::default());
        v["nftables"].as_array().unwrap()[1..].to_vec()
    }

    #[test]
    fn listing_order_is_table_chains_sets_rules() {
        let o = objects("table ip t {\n\tset s { type inet_service; }\n\tchain c { type filter hook input priority 0; tcp dport @s accept; }\n}\n");
        let kinds: Vec<&str> = o
            .iter()
            .map(|x| x.as_object().unwrap().keys().next().unwrap().as_str())
            .collect();
        assert_eq!(kinds, ["table", "chain", "set", "rule"]);
        assert_eq!(o[1]["chain"]["prio"], json!(0));
        assert_eq!(o[1]["chain"]["policy"], json!("accept"));
        assert_eq!(
            o[3]["rule"]["expr"],
            json!([{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": "@s"}}, {"accept": null}])
        );
    }

    #[test]
    fn flag_tests_use_in_and_flag_values_or() {
        let o = objects("table ip t {\n\tchain c {\n\t\tct state established,related accept\n\t\tct state != established,related\n\t}\n}\n");
        assert_eq!(
            o[2]["rule"]["expr"][0],
            json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}})
        );
        assert_eq!(
            o[3]["rule"]["expr"][0]["match"]["right"],
            json!({"|": ["established", "related"]})
        );
    }

    #[test]
    fn statements_in_libnftables_form() {
        let o = objects("table ip t {\n\tchain c {\n\t\tlimit rate 10/minute counter packets 1 bytes 2 reject\n\t\tmeta mark set 0x10 log prefix \"x \" snat to 10.0.0.1\n\t}\n}\n");
        assert_eq!(
            o[2]["rule"]["expr"],
            json!([{"limit": {"rate": 10, "burst": 5, "per": "minute"}}, {"counter": {"packets": 1, "bytes": 2}}, {"reject": {"type": "icmp", "expr": "port-unreachable"}}])
        );
        assert_eq!(
            o[3]["rule"]["expr"],
            json!([{"mangle": {"key": {"meta": {"key": "mark"}}, "value": 16}}, {"log": {"prefix": "x "}}, {"snat": {"addr": "10.0.0.1"}}])
        );
    }
}
