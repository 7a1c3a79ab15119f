//! Loading: commands applied in order to an empty ruleset, as `nft -f` does in one
//! transaction, then every rule and set element evaluated against the result.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ast::*;
use crate::datatype::Dt;
use crate::error::{Error, Result, SourceMap, Span};
use crate::eval::{self, Ctx, SetInfo};
use crate::parser::Parser;

/// A load error, rendered against the sources it came from.
#[derive(Debug)]
pub struct LoadError {
    pub error: Error,
    pub rendered: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.rendered)
    }
}

impl std::error::Error for LoadError {}

#[derive(Clone, Debug, Default)]
pub struct LoadOpts {
    pub include_dirs: Vec<PathBuf>,
    /// Interface names that `iif`/`oif` and device arguments resolve against (index =
    /// position + 1); None resolves against this machine's interfaces, as nft does.
    pub interfaces: Option<Vec<String>>,
}

/// Parses and evaluates `text` (named `name` in errors) into a ruleset.
pub fn load_str(
    name: &str,
    text: &str,
    opts: &LoadOpts,
) -> std::result::Result<Ruleset, LoadError> {
    if let Some(names) = &opts.interfaces {
        let plain = LoadOpts {
            include_dirs: opts.include_dirs.clone(),
            interfaces: None,
        };
        return crate::datatype::with_interfaces(names, || load_str(name, text, &plain));
    }
    let mut sm = SourceMap::default();
    let id = sm.add(name, text);
    let r = load_inner(&mut sm, id, opts);
    r.map_err(|e| LoadError {
        rendered: sm.render(&e),
        error: e,
    })
}

pub fn load_file(path: &Path, opts: &LoadOpts) -> std::result::Result<Ruleset, LoadError> {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            let error = Error::nospan(format!("Could not process rule: {}: {e}", path.display()));
            return Err(LoadError {
                rendered: format!("Error: {}\n", error.msg),
                error,
            });
        }
    };
    load_str(&path.display().to_string(), &text, opts)
}

fn load_inner(sm: &mut SourceMap, id: u32, opts: &LoadOpts) -> Result<Ruleset> {
    let cmds = {
        let mut p = Parser::new(sm, id)?;
        p.include_dirs = opts.include_dirs.clone();
        p.parse_all()?
    };
    load_cmds(cmds)
}

/// Applies already-built commands (from JSON input) to an empty ruleset and evaluates it.
pub fn load_cmds(cmds: Vec<Cmd>) -> Result<Ruleset> {
    let mut rs = Ruleset::default();
    let mut b = Builder::default();
    for c in cmds {
        b.apply(&mut rs, c)?;
    }
    evaluate(&mut rs)?;
    Ok(rs)
}

#[derive(Default)]
struct Builder {
    handle: u64,
}

fn enoent(span: Span, what: &str) -> Error {
    Error::new(
        span,
        format!("Could not process rule: No such file or directory\n{what}"),
    )
}

fn find_table<'a>(rs: &'a mut Ruleset, t: &TableRef) -> Result<&'a mut Table> {
    rs.tables
        .iter_mut()
        .find(|x| x.family == t.family && x.name == t.name)
        .ok_or_else(|| {
            Error::new(
                t.span,
                format!(
                    "Could not process rule: No such file or directory: table '{}' does not exist",
                    t.name
                ),
            )
        })
}

impl Builder {
    fn next_handle(&mut self) -> u64 {
        self.handle += 1;
        self.handle
    }

    fn apply(&mut self, rs: &mut Ruleset, c: Cmd) -> Result<()> {
        match c {
            Cmd::Noop => Ok(()),
            Cmd::Table {
                verb,
                table,
                flags,
                comment,
            } => {
                if let Some(t) = rs
                    .tables
                    .iter_mut()
                    .find(|x| x.family == table.family && x.name == table.name)
                {
                    if verb == Verb::Create {
                        return Err(Error::new(
                            table.span,
                            format!(
                                "Could not process rule: File exists: table '{}' already exists",
                                table.name
                            ),
                        ));
                    }
                    for f in flags {
                        if !t.flags.contains(&f) {
                            t.flags.push(f);
                        }
                    }
                    if comment.is_some() {
                        t.comment = comment;
                    }
                    return Ok(());
                }
                let mut t = Table::new(table.family, table.name.clone(), table.span);
                t.flags = flags;
                t.comment = comment;
                t.handle = self.next_handle();
                rs.tables.push(t);
                Ok(())
            }
            Cmd::Chain {
                verb,
                table,
                mut chain,
            } => {
                let h = self.next_handle();
                let t = find_table(rs, &table)?;
                if let Some(h) = &chain.hook {
                    check_hook(t.family, h)?;
                }
                if let Some(existing) = t.chains.iter_mut().find(|c| c.name == chain.name) {
                    if verb == Verb::Create {
                        return Err(Error::new(
                            chain.span,
                            format!(
                                "Could not process rule: File exists: chain '{}' already exists",
                                chain.name
                            ),
                        ));
                    }
                    if chain.hook.is_some() {
                        if existing.hook.is_some()
                            && existing.hook.as_ref().map(|x| (&x.kind, &x.hook))
                                != chain.hook.as_ref().map(|x| (&x.kind, &x.hook))
                        {
                            return Err(Error::new(chain.span, "Could not process rule: Device or resource busy: chain type or hook cannot be changed"));
                        }
                        existing.hook = chain.hook;
                    }
                    if chain.comment.is_some() {
                        existing.comment = chain.comment;
                    }
                    return Ok(());
                }
                if chain.name.len() > 255 {
                    return Err(Error::new(chain.span, "Chain name too long"));
                }
                chain.handle = h;
                t.chains.push(chain);
                Ok(())
            }
            Cmd::Rule {
                verb,
                table,
                chain,
                pos,
                mut rule,
            } => {
                let h = self.next_handle();
                let t = find_table(rs, &table)?;
                let Some(c) = t.chains.iter_mut().find(|c| c.name == chain) else {
                    return Err(enoent(
                        rule.span,
                        &format!("chain '{chain}' does not exist"),
                    ));
                };
                rule.handle = h;
                match (verb, pos) {
                    (Verb::Insert, RulePos::End) => c.rules.insert(0, rule),
                    (Verb::Insert, RulePos::Handle(x)) => {
                        let i = c.rules.iter().position(|r| r.handle == x).ok_or_else(|| {
                            enoent(rule.span, &format!("rule handle {x} does not exist"))
                        })?;
                        c.rules.insert(i, rule);
                    }
                    (Verb::Insert, RulePos::Index(x)) => {
                        let i = (x as usize).min(c.rules.len());
                        c.rules.insert(i, rule);
                    }
                    (Verb::Replace, RulePos::Handle(x)) => {
                        let i = c.rules.iter().position(|r| r.handle == x).ok_or_else(|| {
                            enoent(rule.span, &format!("rule handle {x} does not exist"))
                        })?;
                        rule.handle = x;
                        c.rules[i] = rule;
                    }
                    (Verb::Replace, _) => {
                        return Err(Error::new(rule.span, "replace needs a rule handle"))
                    }
                    (_, RulePos::End) => c.rules.push(rule),
                    (_, RulePos::Handle(x)) => {
                        let i = c.rules.iter().position(|r| r.handle == x).ok_or_else(|| {
                            enoent(rule.span, &format!("rule handle {x} does not exist"))
                        })?;
                        c.rules.insert(i + 1, rule);
                    }
                    (_, RulePos::Index(x)) => {
                        let i = ((x as usize) + 1).min(c.rules.len());
                        c.rules.insert(i, rule);
                    }
                }
                Ok(())
            }
            Cmd::Set {
                verb,
                table,
                mut set,
            } => {
                let h = self.next_handle();
                let t = find_table(rs, &table)?;
                if set.key.is_none() {
                    return Err(Error::new(
                        set.span,
                        format!("set '{}' has no key type (type or typeof)", set.name),
                    ));
                }
                if set.is_map && set.data.is_none() && set.obj_map.is_none() {
                    return Err(Error::new(
                        set.span,
                        format!("map '{}' has no data type", set.name),
                    ));
                }
                if let Some(existing) = t.sets.iter_mut().find(|s| s.name == set.name) {
                    if verb == Verb::Create {
                        return Err(Error::new(
                            set.span,
                            format!(
                                "Could not process rule: File exists: set '{}' already exists",
                                set.name
                            ),
                        ));
                    }
                    if existing.key != set.key || existing.is_map != set.is_map {
                        return Err(Error::new(set.span, format!("Could not process rule: File exists: set '{}' exists with a different type", set.name)));
                    }
                    existing.elements.extend(set.elements);
                    return Ok(());
                }
                set.handle = h;
                t.sets.push(*set);
                Ok(())
            }
            Cmd::Element {
                verb,
                table,
                set,
                elems,
                span,
            } => {
                let t = find_table(rs, &table)?;
                let Some(s) = t.sets.iter_mut().find(|s| s.name == set) else {
                    return Err(enoent(span, &format!("set '{set}' does not exist")));
                };
                match verb {
                    Verb::Add | Verb::Create | Verb::Insert => s.elements.extend(elems),
                    Verb::Delete | Verb::Destroy => {
                        // removal matches by the printed form, after evaluation
                        s.elements
                            .retain(|e| !elems.iter().any(|d| d.kind == e.kind));
                    }
                    _ => {}
                }
                Ok(())
            }
            Cmd::Flowtable {
                verb,
                table,
                mut ft,
            } => {
                let h = self.next_handle();
                let t = find_table(rs, &table)?;
                if !matches!(t.family, Family::Ip | Family::Ip6 | Family::Inet) {
                    return Err(Error::new(ft.span, "Could not process rule: Operation not supported: flowtables are only available in ip, ip6 and inet tables"));
                }
                if let Some(existing) = t.flowtables.iter_mut().find(|f| f.name == ft.name) {
                    if verb == Verb::Create {
                        return Err(Error::new(ft.span, format!("Could not process rule: File exists: flowtable '{}' already exists", ft.name)));
                    }
                    for d in ft.devices {
                        if !existing.devices.contains(&d) {
                            existing.devices.push(d);
                        }
                    }
                    return Ok(());
                }
                if matches!(verb, Verb::Delete | Verb::Destroy) {
                    return Ok(());
                }
                if ft.hook.is_none() {
                    return Err(Error::new(
                        ft.span,
                        format!("flowtable '{}' needs a hook and priority", ft.name),
                    ));
                }
                if ft.hook.as_deref() != Some("ingress") {
                    return Err(Error::new(
                        ft.span,
                        format!(
                            "unknown flowtable hook {}",
                            ft.hook.as_deref().unwrap_or("")
                        ),
                    ));
                }
                ft.handle = h;
                t.flowtables.push(ft);
                Ok(())
            }
            Cmd::Obj {
                verb,
                table,
                mut obj,
            } => {
                let h = self.next_handle();
                let t = find_table(rs, &table)?;
                if let Some(e) = t
                    .objs
                    .iter_mut()
                    .find(|o| o.kind == obj.kind && o.name == obj.name)
                {
                    if verb == Verb::Create {
                        return Err(Error::new(
                            obj.span,
                            format!(
                                "Could not process rule: File exists: {} '{}' already exists",
                                obj.kind, obj.name
                            ),
                        ));
                    }
                    let _ = e;
                    return Ok(());
                }
                obj.handle = h;
                t.objs.push(obj);
                Ok(())
            }
            Cmd::RenameChain {
                table,
                from,
                to,
                span,
            } => {
                let t = find_table(rs, &table)?;
                let c = t
                    .chains
                    .iter_mut()
                    .find(|c| c.name == from)
                    .ok_or_else(|| enoent(span, &format!("chain '{from}' does not exist")))?;
                c.name = to;
                Ok(())
            }
            Cmd::ByName {
                verb,
                what,
                table,
                name,
                handle,
                span,
            } => {
                let destroy = verb == Verb::Destroy;
                if what == "ruleset" {
                    rs.tables.clear();
                    return Ok(());
                }
                let Some(tr) = table else { return Ok(()) };
                let pos = rs.tables.iter().position(|x| {
                    x.family == tr.family
                        && (x.name == tr.name || (tr.name.is_empty() && Some(x.handle) == handle))
                });
                let Some(pos) = pos else {
                    if destroy {
                        return Ok(());
                    }
                    return Err(Error::new(tr.span, format!("Could not process rule: No such file or directory: table '{}' does not exist", tr.name)));
                };
                let t = &mut rs.tables[pos];
                let missing = |what: &str, n: &str| -> Result<()> {
                    if destroy {
                        Ok(())
                    } else {
                        Err(enoent(span, &format!("{what} '{n}' does not exist")))
                    }
                };
                match (what.as_str(), verb) {
                    ("table", Verb::Flush) => {
                        for c in &mut t.chains {
                            c.rules.clear();
                        }
                        for s in &mut t.sets {
                            s.elements.clear();
                        }
                    }
                    ("table", _) => {
                        rs.tables.remove(pos);
                    }
                    ("chain", Verb::Flush) => {
                        match t.chains.iter_mut().find(|c| Some(&c.name) == name.as_ref()) {
                            Some(c) => c.rules.clear(),
                            None => return missing("chain", name.as_deref().unwrap_or("")),
                        }
                    }
                    ("chain", _) => {
                        let i = t.chains.iter().position(|c| {
                            Some(&c.name) == name.as_ref()
                                || (name.is_none() && Some(c.handle) == handle)
                        });
                        match i {
                            Some(i) => {
                                t.chains.remove(i);
                            }
                            None => return missing("chain", name.as_deref().unwrap_or("")),
                        }
                    }
                    ("rule", _) => {
                        let c = t.chains.iter_mut().find(|c| Some(&c.name) == name.as_ref());
                        let Some(c) = c else {
                            return missing("chain", name.as_deref().unwrap_or(""));
                        };
                        let before = c.rules.len();
                        c.rules.retain(|r| Some(r.handle) != handle);
                        if c.rules.len() == before && !destroy {
                            return Err(enoent(
                                span,
                                &format!("rule handle {} does not exist", handle.unwrap_or(0)),
                            ));
                        }
                    }
                    ("set" | "map", Verb::Flush) => {
                        match t.sets.iter_mut().find(|s| Some(&s.name) == name.as_ref()) {
                            Some(s) => s.elements.clear(),
                            None => return missing(&what, name.as_deref().unwrap_or("")),
                        }
                    }
                    ("set" | "map", _) => {
                        let i = t.sets.iter().position(|s| {
                            Some(&s.name) == name.as_ref()
                                || (name.is_none() && Some(s.handle) == handle)
                        });
                        match i {
                            Some(i) => {
                                t.sets.remove(i);
                            }
                            None => return missing(&what, name.as_deref().unwrap_or("")),
                        }
                    }
                    ("flowtable", _) => {
                        let i = t.flowtables.iter().position(|s| {
                            Some(&s.name) == name.as_ref()
                                || (name.is_none() && Some(s.handle) == handle)
                        });
                        match i {
                            Some(i) => {
                                t.flowtables.remove(i);
                            }
                            None => return missing("flowtable", name.as_deref().unwrap_or("")),
                        }
                    }
                    (k, Verb::Delete | Verb::Destroy) => {
                        let i = t.objs.iter().position(|o| {
                            o.kind == k
                                && (Some(&o.name) == name.as_ref()
                                    || (name.is_none() && Some(o.handle) == handle))
                        });
                        match i {
                            Some(i) => {
                                t.objs.remove(i);
                            }
                            None => return missing(k, name.as_deref().unwrap_or("")),
                        }
                    }
                    _ => {}
                }
                Ok(())
            }
        }
    }
}

const HOOKS_INET: &[&str] = &[
    "prerouting",
    "input",
    "forward",
    "output",
    "postrouting",
    "ingress",
];

fn check_hook(family: Family, h: &Hook) -> Result<()> {
    let ok = match family {
        Family::Ip | Family::Ip6 => HOOKS_INET[..5].contains(&h.hook.as_str()),
        Family::Inet => HOOKS_INET.contains(&h.hook.as_str()),
        Family::Bridge => HOOKS_INET[..5].contains(&h.hook.as_str()),
        Family::Arp => matches!(h.hook.as_str(), "input" | "output"),
        Family::Netdev => matches!(h.hook.as_str(), "ingress" | "egress"),
    };
    if !ok {
        return Err(Error::new(
            h.span,
            format!("unknown chain hook {} for family {}", h.hook, family.name()),
        ));
    }
    let type_ok = match h.kind.as_str() {
        "filter" => true,
        "nat" => {
            matches!(family, Family::Ip | Family::Ip6 | Family::Inet)
                && matches!(
                    h.hook.as_str(),
                    "prerouting" | "input" | "output" | "postrouting"
                )
        }
        "route" => matches!(family, Family::Ip | Family::Ip6 | Family::Inet) && h.hook == "output",
        _ => false,
    };
    if !type_ok {
        return Err(Error::new(h.span, format!("Could not process rule: Operation not supported: chain type {} is not supported for hook {} in family {}", h.kind, h.hook, family.name())));
    }
    if family == Family::Netdev && h.devices.is_empty() && h.hook == "ingress" {
        // nft accepts a netdev ingress chain without device (it binds to none); keep it
    }
    if let Prio::Named(n, _) = &h.prio {
        if crate::print::std_prio_value(family, n).is_none() {
            return Err(Error::new(
                h.span,
                format!("'{n}' is not a valid priority in this context"),
            ));
        }
    }
    Ok(())
}

fn key_types(
    ctx_family: Family,
    k: &KeySpec,
    sets: &HashMap<String, SetInfo>,
) -> Result<Vec<(Dt, u32)>> {
    match k {
        KeySpec::Types(names) => names
            .iter()
            .map(|n| {
                if n == "queue" {
                    return Ok((Dt::Integer, 16));
                }
                let dt =
                    Dt::by_name(n).ok_or_else(|| Error::nospan(format!("unknown datatype {n}")))?;
                Ok((dt, eval::type_bits(dt)))
            })
            .collect(),
        KeySpec::Typeof(e) => {
            let mut e = e.clone();
            let ctx = Ctx {
                family: ctx_family,
                hook: None,
                chain_type: None,
                sets,
                flowtables: &[],
                chains: &[],
                key_only: true,
            };
            eval::eval_selector(&ctx, &mut e)?;
            Ok(match &e.kind {
                ExprKind::Concat(items) => items.iter().map(|i| (i.dt, i.bits)).collect(),
                _ => vec![(e.dt, e.bits)],
            })
        }
    }
}

/// Evaluates sets and rules of every table.
pub fn evaluate(rs: &mut Ruleset) -> Result<()> {
    for t in &mut rs.tables {
        let mut infos: HashMap<String, SetInfo> = HashMap::new();
        for s in &t.sets {
            let key =
                key_types(t.family, s.key.as_ref().expect("checked"), &infos).map_err(|e| {
                    if e.span.is_none() {
                        Error::new(s.span, e.msg)
                    } else {
                        e
                    }
                })?;
            let mut data_fields = 0;
            let data = match &s.data {
                Some(d) => {
                    let v = key_types(t.family, d, &infos).map_err(|e| {
                        if e.span.is_none() {
                            Error::new(s.span, e.msg)
                        } else {
                            e
                        }
                    })?;
                    data_fields = v.len();
                    v.first().copied()
                }
                None => None,
            };
            let data_interval = s.data_interval;
            infos.insert(
                s.name.clone(),
                SetInfo {
                    key,
                    data,
                    is_map: s.is_map,
                    interval: s.flags.iter().any(|f| f == "interval"),
                    obj_map: s.obj_map.clone(),
                    data_interval,
                    data_fields,
                },
            );
        }
        let flowtables: Vec<String> = t.flowtables.iter().map(|f| f.name.clone()).collect();
        let chains: Vec<String> = t.chains.iter().map(|c| c.name.clone()).collect();
        for s in &mut t.sets {
            let info = infos[&s.name].clone();
            let ctx = Ctx {
                family: t.family,
                hook: None,
                chain_type: None,
                sets: &infos,
                flowtables: &flowtables,
                chains: &chains,
                key_only: false,
            };
            for st in &mut s.stmts {
                eval::eval_stmt(&ctx, st)?;
            }
            for el in &mut s.elements {
                eval_element(&ctx, el, &info)?;
                if let ExprKind::Elem(_, o) = &mut el.kind {
                    for st in &mut o.stmts {
                        eval::eval_stmt(&ctx, st)?;
                    }
                }
            }
            crate::setorder::sort_set(s)?;
        }
        let objs: Vec<(String, String)> = t
            .objs
            .iter()
            .map(|o| (o.kind.clone(), o.name.clone()))
            .collect();
        for c in &mut t.chains {
            let (hook, ctype) = match &c.hook {
                Some(h) => (Some(h.hook.as_str()), Some(h.kind.as_str())),
                None => (None, None),
            };
            let ctx = Ctx {
                family: t.family,
                hook,
                chain_type: ctype,
                sets: &infos,
                flowtables: &flowtables,
                chains: &chains,
                key_only: false,
            };
            for r in &mut c.rules {
                eval::eval_rule(&ctx, r)?;
                crate::stmt_eval::check_obj_refs(&objs, r)?;
            }
        }
        crate::setelem::normalize_table(t);
    }
    Ok(())
}

fn eval_element(ctx: &Ctx, el: &mut Expr, info: &SetInfo) -> Result<()> {
    let span = el.span;
    match &mut el.kind {
        ExprKind::Elem(inner, _) => eval_element(ctx, inner, info),
        ExprKind::Mapping(k, v) => {
            eval_key(ctx, k, info)?;
            match info.data {
                Some((Dt::Verdict, _)) => {
                    if !matches!(v.kind, ExprKind::Verdict(_)) {
                        return Err(Error::new(v.span, "map value is not a verdict"));
                    }
                }
                Some((dt, bits)) => {
                    let inner = match &mut v.kind {
                        ExprKind::Elem(i, _) => i.as_mut(),
                        _ => v.as_mut(),
                    };
                    eval::eval_value(ctx, inner, dt, bits)?;
                }
                None => {
                    // object maps: the value names an object
                    if let ExprKind::Symbol(s) | ExprKind::Quoted(s) = &v.kind {
                        let s = s.clone();
                        v.kind = ExprKind::Const(crate::ast::Const {
                            dt: Dt::String,
                            bits: 0,
                            val: crate::datatype::Val::Str(s),
                        });
                        v.dt = Dt::String;
                    }
                }
            }
            Ok(())
        }
        _ => {
            if info.is_map {
                return Err(Error::new(
                    span,
                    "map element has no value (expected key : value)",
                ));
            }
            eval_key(ctx, el, info)
        }
    }
}

fn eval_key(ctx: &Ctx, k: &mut Expr, info: &SetInfo) -> Result<()> {
    if info.key.len() > 1 {
        eval::eval_concat_value(ctx, k, &info.key)
    } else {
        let (dt, bits) = info.key[0];
        eval::eval_value(ctx, k, dt, bits)
    }
}
