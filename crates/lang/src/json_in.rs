//! libnftables JSON input: `{"nftables": [...]}` commands turned into the same commands the
//! text parser produces, then applied and evaluated like a text file.
//!
//! Values arrive as JSON strings and numbers; they become symbols, typed later by the
//! evaluator against what they are compared with, exactly as words of the text syntax are.

use std::path::Path;

use serde_json::{Map, Value};

use crate::ast::*;
use crate::error::{Error, SourceMap, Span};
use crate::ruleset::LoadError;

/// Whether a file's text is JSON rather than nft syntax: its first non-blank character opens
/// an object.
pub fn is_json_text(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

type R<T> = std::result::Result<T, String>;

fn fail(msg: impl Into<String>) -> LoadError {
    let error = Error::nospan(msg.into());
    LoadError {
        rendered: format!("Error: {}\n", error.msg),
        error,
    }
}

pub fn load_json_file(path: &Path) -> Result<Ruleset, LoadError> {
    let bytes = std::fs::read(path).map_err(|e| crate::json::read_error(path, e))?;
    let text = String::from_utf8_lossy(&bytes);
    load_json_str(&path.display().to_string(), &text)
}

/// Parses libnftables JSON and loads it into an empty ruleset.
pub fn load_json_str(name: &str, text: &str) -> Result<Ruleset, LoadError> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| fail(format!("{name}: JSON parse error: {e}")))?;
    let cmds = commands(&v).map_err(fail)?;
    crate::ruleset::load_cmds(cmds).map_err(|e| LoadError {
        rendered: SourceMap::default().render(&e),
        error: e,
    })
}

/// The commands of a JSON document.
pub fn commands(doc: &Value) -> R<Vec<Cmd>> {
    let items = doc
        .as_object()
        .and_then(|o| o.get("nftables"))
        .and_then(|v| v.as_array())
        .ok_or("Input does not contain an \"nftables\" array")?;
    let mut out = vec![];
    for it in items {
        let (k, v) = single(it, "command")?;
        let verb = match k {
            "metainfo" => {
                if let Some(n) = v.get("json_schema_version").and_then(|x| x.as_i64()) {
                    if n > 1 {
                        return Err(format!("Schema version {n} not supported"));
                    }
                }
                continue;
            }
            "add" => Some(Verb::Add),
            "create" => Some(Verb::Create),
            "insert" => Some(Verb::Insert),
            "replace" => Some(Verb::Replace),
            "delete" => Some(Verb::Delete),
            "destroy" => Some(Verb::Destroy),
            "flush" => Some(Verb::Flush),
            "reset" => Some(Verb::Reset),
            "list" => Some(Verb::List),
            "rename" => None,
            _ => {
                // a bare object: added, with any handle ignored
                out.push(object_cmd(Verb::Add, k, v, true)?);
                continue;
            }
        };
        let (ok, ov) = single(v, "object")?;
        match verb {
            None => out.push(rename_cmd(ok, ov)?),
            Some(Verb::List) => out.push(Cmd::Noop),
            Some(vb @ (Verb::Delete | Verb::Destroy | Verb::Flush | Verb::Reset)) => {
                out.push(remove_cmd(vb, ok, ov)?)
            }
            Some(vb) => out.push(object_cmd(vb, ok, ov, false)?),
        }
    }
    Ok(out)
}

fn single<'a>(v: &'a Value, what: &str) -> R<(&'a str, &'a Value)> {
    match v.as_object() {
        Some(o) if o.len() == 1 => {
            let (k, v) = o.iter().next().ok_or("empty object")?;
            Ok((k.as_str(), v))
        }
        _ => Err(format!(
            "Malformed {what}: expected an object with one property, got {}",
            short(v)
        )),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        let mut end = 60;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

fn obj<'a>(v: &'a Value, what: &str) -> R<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| format!("Malformed {what}: expected an object, got {}", short(v)))
}

fn get_str(o: &Map<String, Value>, k: &str, what: &str) -> R<String> {
    match o.get(k) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(format!(
            "Invalid {what} property '{k}': expected a string, got {}",
            short(v)
        )),
        None => Err(format!("{what}: missing property '{k}'")),
    }
}

fn opt_str(o: &Map<String, Value>, k: &str, what: &str) -> R<Option<String>> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(format!(
            "Invalid {what} property '{k}': expected a string, got {}",
            short(v)
        )),
    }
}

fn opt_u64(o: &Map<String, Value>, k: &str, what: &str) -> R<Option<u64>> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            format!(
                "Invalid {what} property '{k}': expected a non-negative integer, got {}",
                short(v)
            )
        }),
    }
}

fn opt_i64(o: &Map<String, Value>, k: &str, what: &str) -> R<Option<i64>> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            format!(
                "Invalid {what} property '{k}': expected an integer, got {}",
                short(v)
            )
        }),
    }
}

fn opt_bool(o: &Map<String, Value>, k: &str) -> bool {
    matches!(o.get(k), Some(Value::Bool(true)))
}

/// A string or an array of strings.
fn str_list(v: Option<&Value>, what: &str) -> R<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(String::from)
                    .ok_or_else(|| format!("Invalid {what}: expected strings, got {}", short(x)))
            })
            .collect(),
        Some(v) => Err(format!(
            "Invalid {what}: expected a string or an array, got {}",
            short(v)
        )),
    }
}

fn family_of(o: &Map<String, Value>, what: &str) -> R<Family> {
    match opt_str(o, "family", what)? {
        None => Ok(Family::Ip),
        Some(f) => Family::parse(&f).ok_or_else(|| format!("Invalid family '{f}'")),
    }
}

fn table_ref(o: &Map<String, Value>, key: &str, what: &str) -> R<TableRef> {
    Ok(TableRef {
        family: family_of(o, what)?,
        name: get_str(o, key, what)?,
        span: Span::default(),
    })
}

fn sp() -> Span {
    Span::default()
}

fn mk(kind: ExprKind) -> Expr {
    Expr::new(kind, sp())
}

fn stmt(kind: StmtKind) -> Stmt {
    Stmt { kind, span: sp() }
}

const OBJ_KINDS: &[&str] = &[
    "counter",
    "quota",
    "limit",
    "ct helper",
    "ct timeout",
    "ct expectation",
    "secmark",
    "synproxy",
    "tunnel",
];

fn object_cmd(verb: Verb, kind: &str, v: &Value, implicit: bool) -> R<Cmd> {
    let what = kind;
    let o = obj(v, what)?;
    match kind {
        "table" => {
            let table = table_ref(o, "name", what)?;
            let flags = str_list(o.get("flags"), "table flags")?;
            Ok(Cmd::Table {
                verb,
                table,
                flags,
                comment: opt_str(o, "comment", what)?,
            })
        }
        "chain" => {
            let table = table_ref(o, "table", what)?;
            Ok(Cmd::Chain {
                verb,
                table,
                chain: chain_of(o)?,
            })
        }
        "rule" => {
            let table = table_ref(o, "table", what)?;
            let chain = get_str(o, "chain", what)?;
            let exprs = match o.get("expr") {
                Some(Value::Array(a)) => a,
                _ => return Err("rule: missing or malformed 'expr' array".into()),
            };
            let mut stmts = exprs.iter().map(stmt_of).collect::<R<Vec<_>>>()?;
            for st in &mut stmts {
                default_reject(st, table.family);
            }
            let pos = if implicit {
                RulePos::End
            } else if let Some(h) = opt_u64(o, "handle", what)? {
                RulePos::Handle(h)
            } else if let Some(i) = opt_u64(o, "index", what)? {
                RulePos::Index(i)
            } else {
                RulePos::End
            };
            let rule = Rule {
                stmts,
                comment: opt_str(o, "comment", what)?,
                span: sp(),
                handle: 0,
            };
            Ok(Cmd::Rule {
                verb,
                table,
                chain,
                pos,
                rule,
            })
        }
        "set" | "map" => {
            let table = table_ref(o, "table", what)?;
            Ok(Cmd::Set {
                verb,
                table,
                set: Box::new(set_of(o, kind == "map")?),
            })
        }
        "element" => {
            let table = table_ref(o, "table", what)?;
            let set = get_str(o, "name", what)?;
            let elems = elems_of(o.get("elem"))?;
            Ok(Cmd::Element {
                verb,
                table,
                set,
                elems,
                span: sp(),
            })
        }
        "flowtable" => {
            let table = table_ref(o, "table", what)?;
            let prio = opt_i64(o, "prio", what)?.map(|p| Prio::Num(p as i32));
            let ft = Flowtable {
                name: get_str(o, "name", what)?,
                hook: opt_str(o, "hook", what)?,
                prio,
                devices: str_list(o.get("dev"), "flowtable devices")?,
                counter: false,
                offload: false,
                handle: 0,
                span: sp(),
            };
            Ok(Cmd::Flowtable { verb, table, ft })
        }
        k if OBJ_KINDS.contains(&k) => {
            let table = table_ref(o, "table", what)?;
            Ok(Cmd::Obj {
                verb,
                table,
                obj: obj_of(k, o)?,
            })
        }
        _ => Err(format!("Unknown object '{kind}'")),
    }
}

/// `reject with icmp port-unreachable` in an ip table is the plain `reject` (likewise icmpv6
/// in ip6, icmpx in inet, bridge and netdev), which the listing spells that way.
fn default_reject(st: &mut Stmt, family: Family) {
    if let StmtKind::Reject(RejectKind::Icmp { family: f, code }) = &st.kind {
        let dflt = match family {
            Family::Ip => "icmp",
            Family::Ip6 => "icmpv6",
            Family::Inet | Family::Bridge | Family::Netdev => "icmpx",
            Family::Arp => return,
        };
        if f == dflt && matches!(&code.kind, ExprKind::Symbol(c) if c == "port-unreachable") {
            st.kind = StmtKind::Reject(RejectKind::Default);
        }
    }
}

fn chain_of(o: &Map<String, Value>) -> R<Chain> {
    let what = "chain";
    let name = get_str(o, "name", what)?;
    let hook = match opt_str(o, "hook", what)? {
        Some(h) => {
            let kind = opt_str(o, "type", what)?.unwrap_or_else(|| "filter".into());
            let prio = Prio::Num(opt_i64(o, "prio", what)?.unwrap_or(0) as i32);
            let devices = str_list(o.get("dev"), "chain devices")?;
            let policy = opt_str(o, "policy", what)?;
            Some(Hook {
                kind,
                hook: h,
                prio,
                devices,
                policy,
                span: sp(),
            })
        }
        None => None,
    };
    Ok(Chain {
        name,
        hook,
        comment: opt_str(o, "comment", what)?,
        rules: vec![],
        handle: 0,
        span: sp(),
    })
}

fn rename_cmd(kind: &str, v: &Value) -> R<Cmd> {
    if kind != "chain" {
        return Err(format!("Cannot rename {kind}"));
    }
    let o = obj(v, kind)?;
    Ok(Cmd::RenameChain {
        table: table_ref(o, "table", kind)?,
        from: get_str(o, "name", kind)?,
        to: get_str(o, "newname", kind)?,
        span: sp(),
    })
}

fn remove_cmd(verb: Verb, kind: &str, v: &Value) -> R<Cmd> {
    let o = obj(v, kind)?;
    match kind {
        "ruleset" => Ok(Cmd::ByName {
            verb,
            what: "ruleset".into(),
            table: None,
            name: None,
            handle: None,
            span: sp(),
        }),
        "element" if matches!(verb, Verb::Delete | Verb::Destroy) => {
            let table = table_ref(o, "table", kind)?;
            let set = get_str(o, "name", kind)?;
            Ok(Cmd::Element {
                verb,
                table,
                set,
                elems: elems_of(o.get("elem"))?,
                span: sp(),
            })
        }
        "table" => {
            let name = opt_str(o, "name", kind)?.unwrap_or_default();
            let table = TableRef {
                family: family_of(o, kind)?,
                name,
                span: sp(),
            };
            Ok(Cmd::ByName {
                verb,
                what: "table".into(),
                table: Some(table),
                name: None,
                handle: opt_u64(o, "handle", kind)?,
                span: sp(),
            })
        }
        "rule" => Ok(Cmd::ByName {
            verb,
            what: "rule".into(),
            table: Some(table_ref(o, "table", kind)?),
            name: opt_str(o, "chain", kind)?,
            handle: opt_u64(o, "handle", kind)?,
            span: sp(),
        }),
        _ => Ok(Cmd::ByName {
            verb,
            what: kind.into(),
            table: Some(table_ref(o, "table", kind)?),
            name: opt_str(o, "name", kind)?,
            handle: opt_u64(o, "handle", kind)?,
            span: sp(),
        }),
    }
}

fn set_of(o: &Map<String, Value>, is_map: bool) -> R<Set> {
    let what = if is_map { "map" } else { "set" };
    let mut s = Set {
        name: get_str(o, "name", what)?,
        is_map,
        span: sp(),
        ..Default::default()
    };
    s.key =
        Some(keyspec(o.get("type").ok_or_else(|| {
            format!("{what}: missing property 'type'")
        })?)?);
    if is_map {
        match o.get("map") {
            Some(Value::String(m)) if OBJ_KINDS.contains(&m.as_str()) => {
                s.obj_map = Some(m.clone())
            }
            Some(m) => s.data = Some(keyspec(m)?),
            None => return Err("map: missing property 'map'".into()),
        }
    }
    for f in str_list(o.get("flags"), "set flags")? {
        if !matches!(
            f.as_str(),
            "constant" | "interval" | "timeout" | "dynamic" | "eval"
        ) {
            return Err(format!("Unknown set flag '{f}'"));
        }
        if !s.flags.contains(&f) {
            s.flags.push(f);
        }
    }
    s.timeout = opt_u64(o, "timeout", what)?.map(|t| t.saturating_mul(1000));
    // a set timeout sets the timeout flag, which the listing only shows on dynamic sets
    if s.timeout.is_some() && !s.flags.iter().any(|f| f == "dynamic") {
        s.flags.retain(|f| f != "timeout");
    }
    s.gc_interval = opt_u64(o, "gc-interval", what)?.map(|t| t.saturating_mul(1000));
    s.size = opt_u64(o, "size", what)?;
    s.policy = opt_str(o, "policy", what)?;
    s.auto_merge = opt_bool(o, "auto-merge");
    s.comment = opt_str(o, "comment", what)?;
    s.elements = elems_of(o.get("elem"))?;
    if let Some(st) = o.get("stmt") {
        let a = st.as_array().ok_or("set: 'stmt' must be an array")?;
        s.stmts = a.iter().map(stmt_of).collect::<R<Vec<_>>>()?;
    }
    Ok(s)
}

fn keyspec(v: &Value) -> R<KeySpec> {
    match v {
        Value::Object(o) if o.contains_key("typeof") => Ok(KeySpec::Typeof(expr_of(&o["typeof"])?)),
        _ => {
            let names = str_list(Some(v), "set type")?;
            if names.is_empty() {
                return Err("empty set type".into());
            }
            Ok(KeySpec::Types(names))
        }
    }
}

fn elems_of(v: Option<&Value>) -> R<Vec<Expr>> {
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a.iter().map(set_elem_of).collect(),
        Some(x) => Ok(vec![set_elem_of(x)?]),
    }
}

/// One element of a set or map: a value, an `elem` object, or a `[key, value]` pair.
fn set_elem_of(v: &Value) -> R<Expr> {
    match v {
        Value::Array(a) if a.len() == 2 => Ok(mk(ExprKind::Mapping(
            Box::new(set_elem_of(&a[0])?),
            Box::new(expr_of(&a[1])?),
        ))),
        _ => expr_of(v),
    }
}

fn byte_mult(u: &str) -> R<u64> {
    crate::parser::byte_unit(u).ok_or_else(|| format!("Invalid byte unit '{u}'"))
}

fn per_of(o: &Map<String, Value>, what: &str) -> R<String> {
    let p = opt_str(o, "per", what)?.unwrap_or_else(|| "second".into());
    let p = p.trim_end_matches('s').to_string();
    match p.as_str() {
        "second" | "minute" | "hour" | "day" | "week" => Ok(p),
        _ => Err(format!("Invalid limit unit '{p}'")),
    }
}

fn limit_of(o: &Map<String, Value>, named: bool) -> R<LimitStmt> {
    let what = "limit";
    let rate = opt_u64(o, "rate", what)?.unwrap_or(0);
    let unit_key = if named {
        opt_str(o, "unit", what)?.or(opt_str(o, "rate_unit", what)?)
    } else {
        opt_str(o, "rate_unit", what)?
    };
    let rate_unit = unit_key.unwrap_or_else(|| "packets".into());
    let bytes = rate_unit != "packets";
    let burst = opt_u64(o, "burst", what)?;
    let (rate, burst) = if bytes {
        let bu = opt_str(o, "burst_unit", what)?.unwrap_or_else(|| {
            if named {
                rate_unit.clone()
            } else {
                "bytes".into()
            }
        });
        let bu = if bu == "packets" {
            "bytes".to_string()
        } else {
            bu
        };
        (
            rate.saturating_mul(byte_mult(&rate_unit)?),
            burst
                .map(|b| b.saturating_mul(byte_mult(&bu).unwrap_or(1)))
                .filter(|b| *b > 0),
        )
    } else {
        (rate, burst)
    };
    Ok(LimitStmt {
        over: opt_bool(o, "inv"),
        rate,
        unit: per_of(o, what)?,
        bytes,
        burst,
    })
}

fn obj_of(kind: &str, o: &Map<String, Value>) -> R<Obj> {
    let what = kind;
    let body = match kind {
        "counter" => ObjBody::Counter {
            packets: opt_u64(o, "packets", what)?.unwrap_or(0),
            bytes: opt_u64(o, "bytes", what)?.unwrap_or(0),
        },
        "quota" => ObjBody::Quota {
            over: opt_bool(o, "inv"),
            bytes: opt_u64(o, "bytes", what)?.unwrap_or(0),
            used: opt_u64(o, "used", what)?.unwrap_or(0),
        },
        "limit" => ObjBody::Limit(limit_of(o, true)?),
        "ct helper" => ObjBody::CtHelper {
            name: get_str(o, "type", what)?,
            proto: scalar_str(o.get("protocol")).unwrap_or_else(|| "tcp".into()),
            l3proto: opt_str(o, "l3proto", what)?,
        },
        "ct timeout" => {
            let mut policy = vec![];
            if let Some(Value::Object(p)) = o.get("policy") {
                for (k, v) in p {
                    policy.push((
                        k.clone(),
                        v.as_u64()
                            .ok_or_else(|| format!("ct timeout: invalid value for state {k}"))?,
                    ));
                }
            }
            ObjBody::CtTimeout {
                proto: scalar_str(o.get("protocol")).unwrap_or_else(|| "tcp".into()),
                l3proto: opt_str(o, "l3proto", what)?,
                policy,
            }
        }
        "ct expectation" => ObjBody::CtExpect {
            proto: scalar_str(o.get("protocol")).unwrap_or_else(|| "tcp".into()),
            dport: opt_u64(o, "dport", what)?.unwrap_or(0) as u32,
            timeout: opt_u64(o, "timeout", what)?.unwrap_or(0),
            size: opt_u64(o, "size", what)?.unwrap_or(0) as u32,
            l3proto: opt_str(o, "l3proto", what)?,
        },
        "secmark" => ObjBody::Secmark(opt_str(o, "context", what)?.unwrap_or_default()),
        "synproxy" => ObjBody::Synproxy {
            mss: opt_u64(o, "mss", what)?.unwrap_or(0) as u32,
            wscale: opt_u64(o, "wscale", what)?.unwrap_or(0) as u32,
            flags: str_list(o.get("flags"), "synproxy flags")?,
        },
        _ => return Err(format!("Unsupported object type '{kind}'")),
    };
    Ok(Obj {
        kind: kind.into(),
        name: get_str(o, "name", what)?,
        body,
        comment: opt_str(o, "comment", what)?,
        handle: 0,
        span: sp(),
    })
}

/// A JSON scalar as the word the text syntax would have.
fn scalar_str(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

// ---- statements ----------------------------------------------------------------------------

fn verdict_of(k: &str, v: &Value) -> R<Option<Verdict>> {
    Ok(Some(match k {
        "accept" => Verdict::Accept,
        "drop" => Verdict::Drop,
        "continue" => Verdict::Continue,
        "return" => Verdict::Return,
        "queue" if v.is_null() => Verdict::Queue,
        "jump" | "goto" => {
            let t = obj(v, k)?;
            let target = get_str(t, "target", k)?;
            if k == "jump" {
                Verdict::Jump(target)
            } else {
                Verdict::Goto(target)
            }
        }
        _ => return Ok(None),
    }))
}

fn opt_expr(o: &Map<String, Value>, k: &str) -> R<Option<Expr>> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Ok(Some(expr_of(v)?)),
    }
}

fn req_expr(o: &Map<String, Value>, k: &str, what: &str) -> R<Expr> {
    opt_expr(o, k)?.ok_or_else(|| format!("{what}: missing property '{k}'"))
}

fn name_expr(v: &Value) -> R<Expr> {
    match v {
        Value::String(s) => Ok(mk(ExprKind::Quoted(s.clone()))),
        _ => expr_of(v),
    }
}

/// Whether a stateful statement's value names an object by a lookup (`counter name ip saddr
/// map { ... }`) rather than giving the statement's own parameters.
fn is_obj_lookup(v: &Value) -> bool {
    match v {
        Value::String(_) => true,
        Value::Object(o) => o.len() == 1 && o.contains_key("map"),
        _ => false,
    }
}

fn stmt_of(v: &Value) -> R<Stmt> {
    let (k, v) = single(v, "statement")?;
    if let Some(vd) = verdict_of(k, v)? {
        return Ok(stmt(StmtKind::Verdict(vd)));
    }
    if matches!(
        k,
        "counter"
            | "quota"
            | "limit"
            | "synproxy"
            | "ct helper"
            | "ct timeout"
            | "ct expectation"
            | "secmark"
    ) && is_obj_lookup(v)
    {
        return Ok(stmt(StmtKind::ObjRef {
            kind: k.into(),
            name: name_expr(v)?,
        }));
    }
    let empty = Map::new();
    let o = v.as_object().unwrap_or(&empty);
    let kind = match k {
        "match" => {
            let op = match o.get("op").and_then(|x| x.as_str()).unwrap_or("==") {
                "==" | "eq" => RelOp::Eq,
                "!=" | "ne" => RelOp::Ne,
                "<" | "lt" => RelOp::Lt,
                ">" | "gt" => RelOp::Gt,
                "<=" | "le" => RelOp::Le,
                ">=" | "ge" => RelOp::Ge,
                "in" => RelOp::Implicit,
                "!" => RelOp::Neg,
                x => return Err(format!("Unknown relational op '{x}'")),
            };
            StmtKind::Match {
                left: req_expr(o, "left", k)?,
                op,
                right: req_expr(o, "right", k)?,
            }
        }
        "counter" => match v {
            Value::String(_) => StmtKind::ObjRef {
                kind: "counter".into(),
                name: name_expr(v)?,
            },
            Value::Null => StmtKind::Counter {
                packets: 0,
                bytes: 0,
            },
            Value::Object(_) => StmtKind::Counter {
                packets: opt_u64(o, "packets", k)?.unwrap_or(0),
                bytes: opt_u64(o, "bytes", k)?.unwrap_or(0),
            },
            _ => return Err(format!("Malformed counter statement: {}", short(v))),
        },
        "quota" => match v {
            Value::String(_) => StmtKind::ObjRef {
                kind: "quota".into(),
                name: name_expr(v)?,
            },
            _ => {
                let q = obj(v, k)?;
                let vu = opt_str(q, "val_unit", k)?.unwrap_or_else(|| "bytes".into());
                let uu = opt_str(q, "used_unit", k)?.unwrap_or_else(|| "bytes".into());
                let bytes = opt_u64(q, "val", k)?
                    .unwrap_or(0)
                    .saturating_mul(byte_mult(&vu)?);
                let used = opt_u64(q, "used", k)?
                    .unwrap_or(0)
                    .saturating_mul(byte_mult(&uu)?);
                StmtKind::Quota {
                    over: opt_bool(q, "inv"),
                    bytes,
                    used,
                }
            }
        },
        "limit" => match v {
            Value::String(_) => StmtKind::ObjRef {
                kind: "limit".into(),
                name: name_expr(v)?,
            },
            _ => StmtKind::Limit(limit_of(obj(v, k)?, false)?),
        },
        "mangle" => StmtKind::Set {
            key: req_expr(o, "key", k)?,
            value: req_expr(o, "value", k)?,
        },
        "notrack" => StmtKind::Notrack,
        "dup" => StmtKind::Dup {
            addr: opt_expr(o, "addr")?,
            dev: opt_expr(o, "dev")?,
        },
        "fwd" => StmtKind::Fwd {
            family: opt_str(o, "family", k)?,
            addr: opt_expr(o, "addr")?,
            dev: req_expr(o, "dev", k)?,
        },
        "snat" | "dnat" | "masquerade" | "redirect" => {
            let nk = match k {
                "snat" => NatKind::Snat,
                "dnat" => NatKind::Dnat,
                "masquerade" => NatKind::Masquerade,
                _ => NatKind::Redirect,
            };
            let tf = str_list(o.get("type_flags"), "nat type flags")?;
            let mut flags = str_list(o.get("flags"), "nat flags")?;
            let prefix = tf.iter().any(|f| f == "prefix");
            // netmap is implied by a prefix mapping
            if prefix {
                flags.retain(|f| f != "netmap");
            }
            StmtKind::Nat(NatStmt {
                kind: nk,
                family: opt_str(o, "family", k)?,
                addr: opt_expr(o, "addr")?,
                port: opt_expr(o, "port")?,
                prefix,
                flags,
            })
        }
        "reject" => match opt_str(o, "type", k)?.as_deref() {
            None => StmtKind::Reject(RejectKind::Default),
            Some("tcp reset") => StmtKind::Reject(RejectKind::TcpReset),
            Some(t @ ("icmp" | "icmpv6" | "icmpx")) => match opt_expr(o, "expr")? {
                Some(code) => StmtKind::Reject(RejectKind::Icmp {
                    family: t.into(),
                    code,
                }),
                None => StmtKind::Reject(RejectKind::Icmp {
                    family: t.into(),
                    code: mk(ExprKind::Symbol("port-unreachable".into())),
                }),
            },
            Some(t) => return Err(format!("Unknown reject type '{t}'")),
        },
        "set" | "map" => {
            let opn = get_str(o, "op", k)?;
            let op = match opn.as_str() {
                "add" => SetOp::Add,
                "update" => SetOp::Update,
                "delete" => SetOp::Delete,
                _ => return Err(format!("Unknown set statement op '{opn}'")),
            };
            let set = get_str(o, k, k)?;
            let set = set.strip_prefix('@').unwrap_or(&set).to_string();
            let key = req_expr(o, "elem", k)?;
            let data = if k == "map" {
                Some(req_expr(o, "data", k)?)
            } else {
                None
            };
            let stmts = match o.get("stmt") {
                Some(Value::Array(a)) => a.iter().map(stmt_of).collect::<R<Vec<_>>>()?,
                _ => vec![],
            };
            StmtKind::Dynset {
                op,
                set,
                key,
                stmts,
                data,
            }
        }
        "log" => {
            let mut l = LogStmt::default();
            if let Some(p) = opt_str(o, "prefix", k)? {
                l.prefix = Some(mk(ExprKind::Quoted(p)));
            }
            l.group = opt_u64(o, "group", k)?.map(|x| x as u32);
            l.snaplen = opt_u64(o, "snaplen", k)?.map(|x| x as u32);
            l.queue_threshold = opt_u64(o, "queue-threshold", k)?.map(|x| x as u32);
            l.level = opt_str(o, "level", k)?;
            l.flags = str_list(o.get("flags"), "log flags")?;
            StmtKind::Log(l)
        }
        "ct helper" | "ct timeout" | "ct expectation" | "secmark" => StmtKind::ObjRef {
            kind: k.into(),
            name: name_expr(v)?,
        },
        "synproxy" => StmtKind::Synproxy {
            mss: opt_u64(o, "mss", k)?.map(|x| x as u32),
            wscale: opt_u64(o, "wscale", k)?.map(|x| x as u32),
            flags: str_list(o.get("flags"), "synproxy flags")?,
        },
        "queue" => StmtKind::Queue {
            num: opt_expr(o, "num")?,
            flags: str_list(o.get("flags"), "queue flags")?,
        },
        "vmap" => StmtKind::Vmap {
            key: req_expr(o, "key", k)?,
            map: req_expr(o, "data", k)?,
        },
        "ct count" => StmtKind::Connlimit {
            over: opt_bool(o, "inv"),
            count: opt_u64(o, "val", k)?.unwrap_or(0) as u32,
        },
        "tproxy" => StmtKind::Tproxy {
            family: opt_str(o, "family", k)?,
            addr: opt_expr(o, "addr")?,
            port: opt_expr(o, "port")?,
        },
        "reset" => StmtKind::Reset(expr_of(v)?),
        "flow" => {
            let ft = get_str(o, "flowtable", k)?;
            StmtKind::FlowAdd(ft.strip_prefix('@').unwrap_or(&ft).to_string())
        }
        "last" => StmtKind::Last {
            used: opt_u64(o, "used", k)?,
        },
        "meter" => {
            return Err(
                "meter statements are not supported, use a named set with an update statement"
                    .into(),
            )
        }
        "xt" => return Err("xt statements cannot be restored".into()),
        _ => return Err(format!("Unknown statement '{k}'")),
    };
    Ok(stmt(kind))
}

// ---- expressions ---------------------------------------------------------------------------

fn num_field(o: &Map<String, Value>, k: &str, what: &str) -> R<u32> {
    Ok(opt_u64(o, k, what)?.unwrap_or(0).min(u32::MAX as u64) as u32)
}

fn binop_of(k: &str) -> Option<BinOp> {
    Some(match k {
        "&" => BinOp::And,
        "|" => BinOp::Or,
        "^" => BinOp::Xor,
        "<<" => BinOp::Shl,
        ">>" => BinOp::Shr,
        _ => return None,
    })
}

/// How deeply expressions may nest (counting each operand of an operator chain): the
/// evaluator and printer recurse over them.
const MAX_DEPTH: usize = 256;

thread_local! {
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

pub fn expr_of(v: &Value) -> R<Expr> {
    let d = DEPTH.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    let r = if d > MAX_DEPTH {
        Err("Expression is nested too deeply".to_string())
    } else {
        expr_at(v, d)
    };
    DEPTH.with(|c| c.set(c.get().saturating_sub(1)));
    r
}

fn expr_at(v: &Value, depth: usize) -> R<Expr> {
    match v {
        Value::String(s) => Ok(mk(if let Some(n) = s.strip_prefix('@') {
            ExprKind::SetRef(n.to_string())
        } else if s == "*" {
            ExprKind::Wildcard
        } else {
            ExprKind::Symbol(s.clone())
        })),
        Value::Number(n) => {
            if n.as_u64().is_none() {
                return Err(format!(
                    "Invalid number {n}: expected a non-negative integer"
                ));
            }
            Ok(mk(ExprKind::Symbol(n.to_string())))
        }
        Value::Bool(b) => Ok(mk(ExprKind::Symbol(
            if *b { "exists" } else { "missing" }.into(),
        ))),
        Value::Null => Err("Unexpected null expression".into()),
        Value::Array(a) => Ok(mk(ExprKind::List(
            a.iter().map(expr_of).collect::<R<Vec<_>>>()?,
        ))),
        Value::Object(_) => {
            let (k, v) = single(v, "expression")?;
            if let Some(vd) = verdict_of(k, v)? {
                return Ok(mk(ExprKind::Verdict(vd)));
            }
            if let Some(op) = binop_of(k) {
                let a = v.as_array().filter(|a| a.len() >= 2).ok_or_else(|| {
                    format!("Binary operation '{k}' needs an array of at least two expressions")
                })?;
                if depth + a.len() > MAX_DEPTH {
                    return Err(format!("Binary operation '{k}' has too many operands"));
                }
                let mut acc = expr_of(&a[0])?;
                for x in &a[1..] {
                    acc = mk(ExprKind::Binop(op, Box::new(acc), Box::new(expr_of(x)?)));
                }
                return Ok(acc);
            }
            let empty = Map::new();
            let o = v.as_object().unwrap_or(&empty);
            let kind = match k {
                "concat" => {
                    let a = v.as_array().ok_or("concat: expected an array")?;
                    ExprKind::Concat(a.iter().map(expr_of).collect::<R<Vec<_>>>()?)
                }
                "set" => ExprKind::Set(match v {
                    Value::Array(a) => a.iter().map(set_elem_of).collect::<R<Vec<_>>>()?,
                    x => vec![set_elem_of(x)?],
                }),
                "map" => ExprKind::Map(
                    Box::new(req_expr(o, "key", k)?),
                    Box::new(req_expr(o, "data", k)?),
                ),
                "prefix" => {
                    ExprKind::Prefix(Box::new(req_expr(o, "addr", k)?), num_field(o, "len", k)?)
                }
                "range" => {
                    let a = v
                        .as_array()
                        .filter(|a| a.len() == 2)
                        .ok_or("range: expected an array of two expressions")?;
                    ExprKind::Range(Box::new(expr_of(&a[0])?), Box::new(expr_of(&a[1])?))
                }
                "payload" => {
                    if let Some(base) = opt_str(o, "base", k)? {
                        ExprKind::RawPayload {
                            base,
                            offset: num_field(o, "offset", k)?,
                            len: num_field(o, "len", k)?,
                        }
                    } else {
                        let proto = get_str(o, "protocol", k)?;
                        let proto = match opt_str(o, "tunnel", k)? {
                            Some(t) => format!("{t} {proto}"),
                            None => proto,
                        };
                        ExprKind::Payload {
                            proto,
                            field: get_str(o, "field", k)?,
                        }
                    }
                }
                "exthdr" => ExprKind::Exthdr {
                    hdr: get_str(o, "name", k)?,
                    field: opt_str(o, "field", k)?.unwrap_or_else(|| "exists".into()),
                },
                "tcp option" => match o.get("base") {
                    // raw bytes of an option: `tcp option @255,8,8`
                    Some(b) if !o.contains_key("name") && o.contains_key("len") => {
                        ExprKind::TcpOpt {
                            opt: scalar_str(Some(b)).unwrap_or_default(),
                            field: Some(format!(
                                "@{},{}",
                                num_field(o, "offset", k)?,
                                num_field(o, "len", k)?
                            )),
                        }
                    }
                    // an option by number: `tcp option 255`
                    Some(b) if !o.contains_key("name") => ExprKind::TcpOpt {
                        opt: scalar_str(Some(b)).unwrap_or_default(),
                        field: None,
                    },
                    _ => ExprKind::TcpOpt {
                        opt: get_str(o, "name", k)?,
                        field: opt_str(o, "field", k)?,
                    },
                },
                "ip option" => ExprKind::IpOpt {
                    opt: get_str(o, "name", k)?,
                    field: opt_str(o, "field", k)?,
                },
                "sctp chunk" => ExprKind::SctpChunk {
                    chunk: get_str(o, "name", k)?,
                    field: opt_str(o, "field", k)?,
                },
                "dccp option" => ExprKind::DccpOpt(num_field(o, "type", k)?),
                "meta" => ExprKind::Meta(get_str(o, "key", k)?),
                "ct" => ExprKind::Ct {
                    key: get_str(o, "key", k)?,
                    dir: opt_str(o, "dir", k)?,
                    family: opt_str(o, "family", k)?,
                },
                "rt" => {
                    let key = get_str(o, "key", k)?;
                    ExprKind::Rt {
                        key,
                        family: opt_str(o, "family", k)?,
                    }
                }
                "fib" => ExprKind::Fib {
                    flags: str_list(o.get("flags"), "fib flags")?,
                    result: get_str(o, "result", k)?,
                },
                "numgen" => ExprKind::Numgen {
                    random: opt_str(o, "mode", k)?.as_deref() == Some("random"),
                    modulus: num_field(o, "mod", k)?,
                    offset: num_field(o, "offset", k)?,
                },
                "jhash" | "symhash" => ExprKind::Hash {
                    expr: if k == "jhash" {
                        Some(Box::new(req_expr(o, "expr", k)?))
                    } else {
                        None
                    },
                    modulus: num_field(o, "mod", k)?,
                    seed: opt_u64(o, "seed", k)?.map(|x| x as u32),
                    offset: num_field(o, "offset", k)?,
                    sym: k == "symhash",
                },
                "socket" => ExprKind::Socket {
                    key: get_str(o, "key", k)?,
                    level: opt_u64(o, "level", k)?.map(|x| x as u32),
                },
                "osf" => ExprKind::Osf {
                    ttl: opt_str(o, "ttl", k)?,
                    key: get_str(o, "key", k)?,
                },
                "ipsec" => ExprKind::Ipsec {
                    dir: get_str(o, "dir", k)?,
                    spnum: num_field(o, "spnum", k)?,
                    key: get_str(o, "key", k)?,
                    family: opt_str(o, "family", k)?,
                },
                "tunnel" => ExprKind::Tunnel(get_str(o, "key", k)?),
                "elem" => {
                    let val = req_expr(o, "val", k)?;
                    let mut opts = ElemOpts {
                        timeout: opt_u64(o, "timeout", k)?.map(|t| t.saturating_mul(1000)),
                        expires: opt_u64(o, "expires", k)?.map(|t| t.saturating_mul(1000)),
                        comment: opt_str(o, "comment", k)?,
                        stmts: vec![],
                    };
                    // statements attached to the element sit beside its options
                    for (sk, sv) in o {
                        if matches!(
                            sk.as_str(),
                            "counter" | "limit" | "quota" | "last" | "ct count"
                        ) {
                            let mut m = Map::new();
                            m.insert(sk.clone(), sv.clone());
                            opts.stmts.push(stmt_of(&Value::Object(m))?);
                        }
                    }
                    ExprKind::Elem(Box::new(val), Box::new(opts))
                }
                _ => return Err(format!("Unknown expression type '{k}'")),
            };
            Ok(mk(kind))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::print::ListOpts;

    fn listing(json: &str) -> String {
        match load_json_str("t.json", json) {
            Ok(rs) => crate::print::ruleset(&rs, &ListOpts::default()),
            Err(e) => format!("ERR {}", e.rendered),
        }
    }

    #[test]
    fn commands_build_a_ruleset() {
        let j = r#"{"nftables": [
            {"add": {"table": {"family": "inet", "name": "t"}}},
            {"add": {"chain": {"family": "inet", "table": "t", "name": "c", "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}},
            {"add": {"rule": {"family": "inet", "table": "t", "chain": "c", "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}},
                {"accept": null}]}}}
        ]}"#;
        assert_eq!(listing(j), "table inet t {\n\tchain c {\n\t\ttype filter hook input priority filter; policy drop;\n\t\ttcp dport 22 accept\n\t}\n}\n");
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(listing("{\"nftables\": [").starts_with("ERR Error: t.json: JSON parse error"));
        assert_eq!(
            listing("{\"foo\": 1}"),
            "ERR Error: Input does not contain an \"nftables\" array\n"
        );
        assert_eq!(
            listing(r#"{"nftables": [{"add": {"table": {"family": "inet"}}}]}"#),
            "ERR Error: table: missing property 'name'\n"
        );
        assert_eq!(
            listing(r#"{"nftables": [{"bogus": {}}]}"#),
            "ERR Error: Unknown object 'bogus'\n"
        );
    }

    #[test]
    fn deep_expressions_are_refused() {
        let ops: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
        let j = format!(
            r#"{{"nftables": [{{"add": {{"table": {{"family": "ip", "name": "t"}}}}}}, {{"add": {{"chain": {{"family": "ip", "table": "t", "name": "c"}}}}}}, {{"add": {{"rule": {{"family": "ip", "table": "t", "chain": "c", "expr": [{{"mangle": {{"key": {{"meta": {{"key": "mark"}}}}, "value": {{"|": [{{"meta": {{"key": "mark"}}}}, {}]}}}}}}]}}}}}}]}}"#,
            ops.join(",")
        );
        assert_eq!(
            listing(&j),
            "ERR Error: Binary operation '|' has too many operands\n"
        );
    }

    #[test]
    fn listing_json_reads_back() {
        let text = "table ip t {\n\tset s {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 10.0.0.0/8, 192.168.1.1-192.168.1.9 }\n\t}\n\n\tchain c {\n\t\tct state established,related accept\n\t\tip saddr @s counter packets 0 bytes 0 drop\n\t}\n}\n";
        let rs = crate::ruleset::load_str("t.nft", text, &Default::default()).unwrap();
        let j = crate::json::ruleset_to_json(&rs, &ListOpts::default()).to_string();
        assert_eq!(listing(&j), text);
    }
}
