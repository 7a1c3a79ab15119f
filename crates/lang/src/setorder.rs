//! The order nft lists the elements of sets and maps without intervals in.
//!
//! The kernel hands set elements back in its own (hash) order and nft sorts them before
//! printing, stably: by value (strings byte by byte, flag sets by their first flag, the one
//! printed leftmost), concatenations part by part. Interval sets are ordered where their
//! ranges are built.

use crate::ast::*;
use crate::datatype::Val;

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

/// Sorts `elems` as nft lists them, unless an element is an interval or not a constant.
fn sort_elems(elems: &mut [Expr]) {
    let mut keyed = Vec::with_capacity(elems.len());
    for e in elems.iter() {
        match sort_key(e) {
            Some(k) => keyed.push(k),
            None => return,
        }
    }
    let mut idx: Vec<usize> = (0..elems.len()).collect();
    idx.sort_by(|&a, &b| keyed[a].cmp(&keyed[b]));
    let mut taken: Vec<Option<Expr>> = elems.iter_mut().map(|e| Some(std::mem::replace(e, Expr::new(ExprKind::Wildcard, e.span)))).collect();
    for (slot, i) in elems.iter_mut().zip(idx) {
        if let Some(e) = taken[i].take() {
            *slot = e;
        }
    }
}

/// Sorts an anonymous set or map.
fn anon(set: &mut Expr) {
    if let ExprKind::Set(elems) = &mut set.kind {
        sort_elems(elems);
    }
}

fn walk(e: &mut Expr) {
    match &mut e.kind {
        ExprKind::Map(k, m) => {
            walk(k);
            anon(m);
        }
        ExprKind::Binop(_, a, b) => {
            walk(a);
            walk(b);
        }
        ExprKind::Concat(v) => v.iter_mut().for_each(walk),
        ExprKind::Hash { expr: Some(a), .. } => walk(a),
        _ => {}
    }
}

/// Puts the anonymous sets and maps of an evaluated rule in listing order.
pub fn sort_rule(rule: &mut Rule) {
    for st in &mut rule.stmts {
        match &mut st.kind {
            StmtKind::Match { left, right, .. } => {
                walk(left);
                walk(right);
                anon(right);
            }
            StmtKind::Vmap { key, map } => {
                walk(key);
                anon(map);
            }
            StmtKind::Set { key, value } => {
                walk(key);
                walk(value);
            }
            StmtKind::Nat(n) => {
                if let Some(a) = &mut n.addr {
                    walk(a);
                }
                if let Some(p) = &mut n.port {
                    walk(p);
                }
            }
            StmtKind::ObjRef { name, .. } => walk(name),
            StmtKind::Queue { num: Some(n), .. } => walk(n),
            StmtKind::Tproxy { addr, port, .. } => {
                if let Some(a) = addr {
                    walk(a);
                }
                if let Some(p) = port {
                    walk(p);
                }
            }
            StmtKind::Dup { addr, dev } => {
                if let Some(a) = addr {
                    walk(a);
                }
                if let Some(d) = dev {
                    walk(d);
                }
            }
            StmtKind::Fwd { addr, dev, .. } => {
                if let Some(a) = addr {
                    walk(a);
                }
                walk(dev);
            }
            _ => {}
        }
    }
}

/// Puts the elements of a named set or map without intervals in listing order.
pub fn sort_set(s: &mut Set) {
    if s.flags.iter().any(|f| f == "interval") || s.data_interval {
        return;
    }
    sort_elems(&mut s.elements);
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
        assert!(out.contains("map { 10.0.0.1 : 0x00000002, 10.0.0.2 : 0x00000001 }"), "{out}");
        assert!(out.contains("iifname { \"eth0\", \"eth1\", \"lo\" }"), "{out}");
        let out = listing("table ip t { chain c { tcp flags { syn | ack, fin | psh | ack, rst, fin | ack } } }");
        assert!(out.contains("tcp flags { fin | psh | ack, fin | ack, syn | ack, rst }"), "{out}");
    }

    #[test]
    fn concatenations_sort_part_by_part() {
        let out = listing("table ip t { chain c { ip saddr . ip daddr { 1.1.1.1 . 2.2.2.2, 1.1.1.1 . 1.1.1.1, 0.0.0.1 . 9.9.9.9 }; ct mark . tcp dport { 0x1 . 22, 0x2 . 21 }; } }");
        assert!(out.contains("{ 0.0.0.1 . 9.9.9.9, 1.1.1.1 . 1.1.1.1, 1.1.1.1 . 2.2.2.2 }"), "{out}");
        assert!(out.contains("{ 0x00000001 . 22, 0x00000002 . 21 }"), "{out}");
    }

    #[test]
    fn named_sets_list_sorted() {
        let out = listing("table ip t { set s { type ipv4_addr . inet_service; elements = { 1.1.1.1 . 22, 2.2.2.2 . 21, 1.1.1.1 . 21 } } map m { type mark : verdict; elements = { 0x10 : accept, 0x2 : drop } } }");
        let s = out.find("1.1.1.1 . 21").unwrap();
        let t = out.find("1.1.1.1 . 22").unwrap();
        let u = out.find("2.2.2.2 . 21").unwrap();
        assert!(s < t && t < u, "{out}");
        assert!(out.find("0x00000002 : drop").unwrap() < out.find("0x00000010 : accept").unwrap(), "{out}");
    }
}
