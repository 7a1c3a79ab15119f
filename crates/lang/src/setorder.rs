//! The order nft lists the elements of sets and maps without intervals in.
//!
//! The kernel hands set elements back in its own (hash) order and nft sorts them before
//! printing, stably: by value (strings byte by byte, flag sets by their first flag, the one
//! printed leftmost), concatenations part by part. Interval sets are ordered where their
//! ranges are built.

use crate::ast::*;
use crate::datatype::Val;
use crate::error::{Error, Result};

fn key_of(e: &Expr) -> &Expr {
    match &e.kind {
        ExprKind::Elem(k, _) | ExprKind::Mapping(k, _) => key_of(k),
        _ => e,
    }
}

/// The sort key of an element; the catch-all `*` lists last.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SortKey {
    Int(u128),
    Bytes(Vec<u8>),
    Parts(Vec<SortKey>),
    Last,
}

fn value_key(c: &Const) -> Option<SortKey> {
    match &c.val {
        // a flag set is listed as `a | b | c`, and sorted by its first flag
        Val::Int(v) if c.dt.is_bitmask() && *v != 0 => Some(SortKey::Int(1 << v.trailing_zeros())),
        Val::Int(v) => Some(SortKey::Int(*v)),
        Val::Str(s) if !s.ends_with('*') => Some(SortKey::Bytes(s.as_bytes().to_vec())),
        Val::Str(_) => None,
    }
}

fn sort_key(e: &Expr) -> Option<SortKey> {
    let k = key_of(e);
    match &k.kind {
        ExprKind::Wildcard => Some(SortKey::Last),
        ExprKind::Const(c) => value_key(c),
        ExprKind::Concat(items) => {
            let parts = items
                .iter()
                .map(|i| match &i.kind {
                    ExprKind::Const(c) => value_key(c),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            Some(SortKey::Parts(parts))
        }
        _ => None,
    }
}

/// Whether two elements (or parts of one) hold the same values, wherever they were written.
fn same(a: &Expr, b: &Expr) -> bool {
    match (&a.kind, &b.kind) {
        (ExprKind::Elem(x, _), _) => same(x, b),
        (_, ExprKind::Elem(y, _)) => same(a, y),
        (ExprKind::Const(x), ExprKind::Const(y)) => x.val == y.val,
        (ExprKind::Concat(x), ExprKind::Concat(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (ExprKind::Mapping(k1, v1), ExprKind::Mapping(k2, v2)) => same(k1, k2) && same(v1, v2),
        (ExprKind::Range(a1, b1), ExprKind::Range(a2, b2)) => same(a1, a2) && same(b1, b2),
        (ExprKind::Prefix(x, l1), ExprKind::Prefix(y, l2)) => l1 == l2 && same(x, y),
        (ExprKind::Verdict(x), ExprKind::Verdict(y)) => x == y,
        (ExprKind::Wildcard, ExprKind::Wildcard) => true,
        _ => false,
    }
}

/// Sorts `elems` as nft lists them, unless an element is an interval or not a constant.
/// The kernel keeps one copy of an element added twice, and refuses a key mapped twice to
/// different values.
fn sort_elems(elems: &mut Vec<Expr>) -> Result<()> {
    let mut keyed = Vec::with_capacity(elems.len());
    for e in elems.iter() {
        match sort_key(e) {
            Some(k) => keyed.push(k),
            None => return check_map_intervals(elems),
        }
    }
    let mut kept: Vec<Expr> = Vec::with_capacity(elems.len());
    let mut kept_keys: Vec<SortKey> = Vec::with_capacity(elems.len());
    for (e, k) in std::mem::take(elems).into_iter().zip(keyed) {
        if let Some(prev) = kept.iter().find(|p| same(key_of(p), key_of(&e))) {
            if same(prev, &e) {
                continue;
            }
            return Err(Error::new(e.span, "Could not process rule: File exists"));
        }
        kept.push(e);
        kept_keys.push(k);
    }
    let mut idx: Vec<usize> = (0..kept.len()).collect();
    idx.sort_by(|&a, &b| kept_keys[a].cmp(&kept_keys[b]));
    let mut taken: Vec<Option<Expr>> = kept.into_iter().map(Some).collect();
    *elems = idx.into_iter().filter_map(|i| taken[i].take()).collect();
    Ok(())
}

/// The values a single key covers, for integer constants, ranges and prefixes.
fn key_span(k: &Expr) -> Option<(u128, u128)> {
    let int = |e: &Expr| match &e.kind {
        ExprKind::Const(Const {
            val: Val::Int(v),
            bits,
            ..
        }) => Some((*v, if *bits > 0 { *bits } else { e.bits })),
        _ => None,
    };
    match &k.kind {
        ExprKind::Const(_) => int(k).map(|(v, _)| (v, v)),
        ExprKind::Range(a, b) => Some((int(a)?.0, int(b)?.0)),
        ExprKind::Prefix(a, len) => {
            let (v, bits) = int(a)?;
            if bits == 0 || bits > 128 || *len > bits {
                return None;
            }
            let host = bits - len;
            let host_mask = if host >= 128 {
                u128::MAX
            } else {
                (1u128 << host) - 1
            };
            Some((v & !host_mask, v | host_mask))
        }
        _ => None,
    }
}

/// Maps cannot merge intervals the way sets do: overlapping keys are refused.
fn check_map_intervals(elems: &[Expr]) -> Result<()> {
    if !elems.iter().any(|e| {
        matches!(e.kind, ExprKind::Mapping(..))
            || matches!(&e.kind, ExprKind::Elem(x, _) if matches!(x.kind, ExprKind::Mapping(..)))
    }) {
        return Ok(());
    }
    let mut spans = vec![];
    for e in elems {
        match key_span(key_of(e)) {
            Some(s) => spans.push((s, e.span)),
            None => return Ok(()),
        }
    }
    spans.sort_by_key(|((lo, _), _)| *lo);
    for w in spans.windows(2) {
        if w[1].0 .0 <= w[0].0 .1 {
            return Err(Error::new(w[1].1, "conflicting intervals specified"));
        }
    }
    Ok(())
}

/// Sorts an anonymous set or map.
fn anon(set: &mut Expr) -> Result<()> {
    match &mut set.kind {
        ExprKind::Set(elems) => sort_elems(elems),
        _ => Ok(()),
    }
}

fn walk(e: &mut Expr) -> Result<()> {
    match &mut e.kind {
        ExprKind::Map(k, m) => {
            walk(k)?;
            anon(m)
        }
        ExprKind::Binop(_, a, b) => {
            walk(a)?;
            walk(b)
        }
        ExprKind::Concat(v) => v.iter_mut().try_for_each(walk),
        ExprKind::Hash { expr: Some(a), .. } => walk(a),
        _ => Ok(()),
    }
}

/// Puts the anonymous sets and maps of an evaluated rule in listing order.
pub fn sort_rule(rule: &mut Rule) -> Result<()> {
    for st in &mut rule.stmts {
        match &mut st.kind {
            StmtKind::Match { left, right, .. } => {
                walk(left)?;
                walk(right)?;
                anon(right)?;
            }
            StmtKind::Vmap { key, map } => {
                walk(key)?;
                anon(map)?;
            }
            StmtKind::Set { key, value } => {
                walk(key)?;
                walk(value)?;
            }
            StmtKind::Nat(n) => {
                for e in [&mut n.addr, &mut n.port].into_iter().flatten() {
                    walk(e)?;
                }
            }
            StmtKind::ObjRef { name, .. } => walk(name)?,
            StmtKind::Queue { num: Some(n), .. } => walk(n)?,
            StmtKind::Tproxy { addr, port, .. } => {
                for e in [addr, port].into_iter().flatten() {
                    walk(e)?;
                }
            }
            StmtKind::Dup { addr, dev } => {
                for e in [addr, dev].into_iter().flatten() {
                    walk(e)?;
                }
            }
            StmtKind::Fwd { addr, dev, .. } => {
                if let Some(a) = addr {
                    walk(a)?;
                }
                walk(dev)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Puts the elements of a named set or map without intervals in listing order.
pub fn sort_set(s: &mut Set) -> Result<()> {
    if s.flags.iter().any(|f| f == "interval") || s.data_interval {
        return check_map_intervals(&s.elements);
    }
    sort_elems(&mut s.elements)
}

#[cfg(test)]
mod tests {
    use crate::print::{self, ListOpts};
    use crate::ruleset::{load_str, LoadOpts};

    fn listing(text: &str) -> String {
        let rs = load_str("t.nft", text, &LoadOpts::default()).expect("loads");
        print::ruleset(&rs, &ListOpts::default())
    }

    #[test]
    fn anonymous_sets_list_sorted() {
        let out = listing("table ip t { chain c { tcp dport { 443, 22, 80 } accept; meta mark set ip saddr map { 10.0.0.2 : 1, 10.0.0.1 : 2 }; iifname { \"lo\", \"eth1\", \"eth0\" }; } }");
        assert!(out.contains("tcp dport { 22, 80, 443 } accept"), "{out}");
        assert!(
            out.contains("map { 10.0.0.1 : 0x00000002, 10.0.0.2 : 0x00000001 }"),
            "{out}"
        );
        assert!(
            out.contains("iifname { \"eth0\", \"eth1\", \"lo\" }"),
            "{out}"
        );
        let out = listing(
            "table ip t { chain c { tcp flags { syn | ack, fin | psh | ack, rst, fin | ack } } }",
        );
        assert!(
            out.contains("tcp flags { fin | psh | ack, fin | ack, syn | ack, rst }"),
            "{out}"
        );
    }

    #[test]
    fn concatenations_sort_part_by_part() {
        let out = listing("table ip t { chain c { ip saddr . ip daddr { 1.1.1.1 . 2.2.2.2, 1.1.1.1 . 1.1.1.1, 0.0.0.1 . 9.9.9.9 }; ct mark . tcp dport { 0x1 . 22, 0x2 . 21 }; } }");
        assert!(
            out.contains("{ 0.0.0.1 . 9.9.9.9, 1.1.1.1 . 1.1.1.1, 1.1.1.1 . 2.2.2.2 }"),
            "{out}"
        );
        assert!(
            out.contains("{ 0x00000001 . 22, 0x00000002 . 21 }"),
            "{out}"
        );
    }

    #[test]
    fn duplicates_kept_once_and_conflicting_mappings_refused() {
        let out = listing("table ip t { set s { type inet_service; elements = { 22, 22, 23 } } chain c { tcp dport { 1, 1 }; tcp dport vmap { 22 : accept, 22 : accept } } }");
        assert!(out.contains("elements = { 22, 23 }"), "{out}");
        assert!(out.contains("tcp dport { 1 }"), "{out}");
        assert!(out.contains("tcp dport vmap { 22 : accept }"), "{out}");
        let text =
            "table ip t { map m { type inet_service : mark; elements = { 22 : 1, 22 : 2 } } }";
        assert!(load_str("t.nft", text, &LoadOpts::default()).is_err());
        let text = "table ip t { chain c { meta mark set tcp dport map { 22 : 1, 22 : 2 } } }";
        assert!(load_str("t.nft", text, &LoadOpts::default()).is_err());
        let text =
            "table ip t { chain c { ip hdrlength vmap { 0-4 : drop, 0 : accept, 6 : continue } } }";
        assert!(load_str("t.nft", text, &LoadOpts::default()).is_err());
        let text = "table ip t { chain c { ip saddr vmap { 10.0.1.0-10.0.1.255 : accept, 10.0.1.1-10.0.2.255 : drop } } }";
        assert!(load_str("t.nft", text, &LoadOpts::default()).is_err());
        let text =
            "table ip t { chain c { ip saddr vmap { 10.0.1.0/24 : accept, 10.0.2.0/24 : drop } } }";
        assert!(load_str("t.nft", text, &LoadOpts::default()).is_ok());
    }

    #[test]
    fn named_sets_list_sorted() {
        let out = listing("table ip t { set s { type ipv4_addr . inet_service; elements = { 1.1.1.1 . 22, 2.2.2.2 . 21, 1.1.1.1 . 21 } } map m { type mark : verdict; elements = { 0x10 : accept, 0x2 : drop } } }");
        let s = out.find("1.1.1.1 . 21").unwrap();
        let t = out.find("1.1.1.1 . 22").unwrap();
        let u = out.find("2.2.2.2 . 21").unwrap();
        assert!(s < t && t < u, "{out}");
        assert!(
            out.find("0x00000002 : drop").unwrap() < out.find("0x00000010 : accept").unwrap(),
            "{out}"
        );
    }
}
