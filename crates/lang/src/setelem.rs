//! Interval set elements as the kernel keeps them and nft lists them back.
//!
//! Elements of interval sets are stored as ranges: nft sorts them, drops ranges contained in
//! others, joins overlapping ones (and adjacent ones when the set merges automatically, as
//! anonymous sets do), and on listing turns each range back into a single value, a prefix
//! (for address types, when the range is one) or a `low-high` range.

use crate::ast::*;
use crate::datatype::{Dt, Val};
use crate::error::Span;
use crate::eval::mk_const as konst;

/// One element seen as a closed range of key values.
struct Item {
    lo: u128,
    hi: u128,
    dt: Dt,
    bits: u32,
    /// The element with its key still in written form (options and mapped value kept).
    elem: Expr,
}

/// The constant value of a key, if it is a plain integer constant.
fn int_of(e: &Expr) -> Option<(u128, Dt, u32)> {
    match &e.kind {
        ExprKind::Const(Const {
            val: Val::Int(v),
            dt,
            bits,
        }) => Some((*v, *dt, if *bits > 0 { *bits } else { e.bits })),
        _ => None,
    }
}

fn mask(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// The range a key covers, for keys made of integer constants.
fn key_range(k: &Expr) -> Option<(u128, u128, Dt, u32)> {
    match &k.kind {
        ExprKind::Const(_) => int_of(k).map(|(v, dt, b)| (v, v, dt, b)),
        ExprKind::Range(a, b) => {
            let (lo, dt, bits) = int_of(a)?;
            let (hi, _, _) = int_of(b)?;
            Some((lo, hi, dt, bits))
        }
        ExprKind::Prefix(a, len) => {
            let (v, dt, bits) = int_of(a)?;
            if bits == 0 || *len > bits {
                return None;
            }
            let host = mask(bits - len);
            Some((v & !host, (v & !host) | host, dt, bits))
        }
        _ => None,
    }
}

/// The key of an element: inside the element options and left of a mapping.
fn key_of(e: &Expr) -> &Expr {
    match &e.kind {
        ExprKind::Elem(k, _) => key_of(k),
        ExprKind::Mapping(k, _) => key_of(k),
        _ => e,
    }
}

fn key_of_mut(e: &mut Expr) -> &mut Expr {
    match e.kind {
        ExprKind::Elem(..) | ExprKind::Mapping(..) => match &mut e.kind {
            ExprKind::Elem(k, _) | ExprKind::Mapping(k, _) => key_of_mut(k),
            _ => unreachable!("matched above"),
        },
        _ => e,
    }
}

fn is_catchall(e: &Expr) -> bool {
    matches!(key_of(e).kind, ExprKind::Wildcard)
}

/// True if some element is written as a range or a prefix (which makes an anonymous set an
/// interval set).
pub fn has_intervals(elems: &[Expr]) -> bool {
    elems
        .iter()
        .any(|e| matches!(key_of(e).kind, ExprKind::Range(..) | ExprKind::Prefix(..)))
}

/// The key nft lists for the range `lo..=hi`.
fn range_key(lo: u128, hi: u128, dt: Dt, bits: u32, span: Span) -> Expr {
    if lo == hi {
        return konst(dt, bits, lo, span);
    }
    let size_minus_one = hi - lo;
    let aligned = size_minus_one.checked_add(1).map_or(lo == 0, |size| {
        size.is_power_of_two() && lo & size_minus_one == 0
    });
    if aligned && dt.prefix_notation() && bits > 0 {
        let host_bits = 128 - size_minus_one.leading_zeros();
        if host_bits <= bits {
            let mut p = Expr::new(
                ExprKind::Prefix(Box::new(konst(dt, bits, lo, span)), bits - host_bits),
                span,
            );
            p.dt = dt;
            p.bits = bits;
            return p;
        }
    }
    let mut r = Expr::new(
        ExprKind::Range(
            Box::new(konst(dt, bits, lo, span)),
            Box::new(konst(dt, bits, hi, span)),
        ),
        span,
    );
    r.dt = dt;
    r.bits = bits;
    r
}

/// Brings the elements of an interval set (or map) into the form the kernel lists: sorted,
/// contained ranges dropped, overlapping ranges joined (adjacent ones too when `merge_adjacent`;
/// never for maps, whose ranges keep their own values), keys as values, prefixes or ranges.
/// Sets whose keys are not all integer constants (concatenations, strings) are left alone.
pub fn normalize_intervals(elems: &mut Vec<Expr>, is_map: bool, merge_adjacent: bool) {
    let mut items = Vec::with_capacity(elems.len());
    let mut catchall = vec![];
    for e in elems.iter() {
        if is_catchall(e) {
            catchall.push(e.clone());
            continue;
        }
        let Some((lo, hi, dt, bits)) = key_range(key_of(e)) else {
            return;
        };
        if lo > hi {
            return;
        }
        items.push(Item {
            lo,
            hi,
            dt,
            bits,
            elem: e.clone(),
        });
    }
    items.sort_by_key(|i| i.lo);
    let mut out: Vec<Item> = Vec::with_capacity(items.len());
    for it in items {
        if !is_map {
            if let Some(prev) = out.last_mut() {
                if it.hi <= prev.hi {
                    continue;
                }
                if it.lo <= prev.hi || (merge_adjacent && prev.hi.checked_add(1) == Some(it.lo)) {
                    prev.hi = it.hi;
                    continue;
                }
            }
        }
        out.push(it);
    }
    let mut res = Vec::with_capacity(out.len() + catchall.len());
    for mut it in out {
        let span = key_of(&it.elem).span;
        *key_of_mut(&mut it.elem) = range_key(it.lo, it.hi, it.dt, it.bits, span);
        res.push(it.elem);
    }
    res.extend(catchall);
    *elems = res;
}

fn is_concat_key(e: &Expr) -> bool {
    matches!(key_of(e).kind, ExprKind::Concat(_))
}

/// Normalizes the anonymous interval sets in an expression tree.
fn walk_expr(e: &mut Expr) {
    match &mut e.kind {
        ExprKind::Set(elems) => {
            for x in elems.iter_mut() {
                walk_expr(x);
            }
            if has_intervals(elems) && !elems.iter().any(is_concat_key) {
                let is_map = elems
                    .iter()
                    .any(|x| matches!(x.kind, ExprKind::Mapping(..)));
                normalize_intervals(elems, is_map, true);
            }
        }
        ExprKind::Map(k, m) => {
            walk_expr(k);
            walk_expr(m);
        }
        ExprKind::Mapping(k, v) => {
            walk_expr(k);
            walk_expr(v);
        }
        ExprKind::Elem(k, _) => walk_expr(k),
        ExprKind::Binop(_, l, r) => {
            walk_expr(l);
            walk_expr(r);
        }
        ExprKind::Concat(items) | ExprKind::List(items) => {
            for x in items.iter_mut() {
                walk_expr(x);
            }
        }
        _ => {}
    }
}

fn walk_stmt(st: &mut Stmt) {
    match &mut st.kind {
        StmtKind::Match { left, right, .. } => {
            walk_expr(left);
            walk_expr(right);
        }
        StmtKind::Vmap { key, map } => {
            walk_expr(key);
            walk_expr(map);
        }
        StmtKind::Set { key, value } => {
            walk_expr(key);
            walk_expr(value);
        }
        StmtKind::Nat(n) => {
            if let Some(a) = &mut n.addr {
                walk_expr(a);
            }
            if let Some(p) = &mut n.port {
                walk_expr(p);
            }
        }
        StmtKind::ObjRef { name, .. } => walk_expr(name),
        StmtKind::Queue { num: Some(n), .. } => walk_expr(n),
        StmtKind::Dup { addr, dev } => {
            if let Some(a) = addr {
                walk_expr(a);
            }
            if let Some(d) = dev {
                walk_expr(d);
            }
        }
        StmtKind::Fwd { addr, dev, .. } => {
            if let Some(a) = addr {
                walk_expr(a);
            }
            walk_expr(dev);
        }
        _ => {}
    }
}

/// Puts the elements of every interval set of a table, named or anonymous, into listing form.
pub fn normalize_table(t: &mut Table) {
    for s in &mut t.sets {
        let interval = s.flags.iter().any(|f| f == "interval");
        if interval && !s.elements.iter().any(is_concat_key) {
            normalize_intervals(&mut s.elements, s.is_map, s.auto_merge);
        }
    }
    for c in &mut t.chains {
        for r in &mut c.rules {
            for st in &mut r.stmts {
                walk_stmt(st);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span() -> Span {
        Span::default()
    }

    fn v(n: u128) -> Expr {
        konst(Dt::Integer, 16, n, span())
    }

    fn r(a: u128, b: u128) -> Expr {
        Expr::new(ExprKind::Range(Box::new(v(a)), Box::new(v(b))), span())
    }

    fn shown(elems: &[Expr]) -> Vec<(u128, u128)> {
        elems
            .iter()
            .map(|e| {
                key_range(key_of(e))
                    .map(|(a, b, _, _)| (a, b))
                    .expect("range")
            })
            .collect()
    }

    #[test]
    fn sorts_merges_overlaps_and_drops_contained() {
        let mut e = vec![r(50, 60), r(10, 20), r(15, 30), v(12), r(70, 80)];
        normalize_intervals(&mut e, false, false);
        assert_eq!(shown(&e), vec![(10, 30), (50, 60), (70, 80)]);
    }

    #[test]
    fn adjacent_ranges_merge_only_when_asked() {
        let mut e = vec![r(33, 55), r(56, 88), r(100, 120)];
        let mut f = e.clone();
        normalize_intervals(&mut e, false, true);
        assert_eq!(shown(&e), vec![(33, 88), (100, 120)]);
        normalize_intervals(&mut f, false, false);
        assert_eq!(shown(&f), vec![(33, 55), (56, 88), (100, 120)]);
    }

    #[test]
    fn address_ranges_that_are_prefixes_become_prefixes() {
        let a = |n: u32| konst(Dt::Ipv4Addr, 32, n as u128, span());
        let mut e = vec![
            Expr::new(
                ExprKind::Range(Box::new(a(0x0a000000)), Box::new(a(0x0a0000ff))),
                span(),
            ),
            Expr::new(
                ExprKind::Range(Box::new(a(0x0b000001)), Box::new(a(0x0b000002))),
                span(),
            ),
        ];
        normalize_intervals(&mut e, false, false);
        assert!(matches!(e[0].kind, ExprKind::Prefix(_, 24)));
        assert!(matches!(e[1].kind, ExprKind::Range(..)));
        // integers never use prefix notation
        let mut i = vec![r(0, 255)];
        normalize_intervals(&mut i, false, false);
        assert!(matches!(i[0].kind, ExprKind::Range(..)));
    }
}
