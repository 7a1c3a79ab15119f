//! Protocol dependencies and the statement reshaping the kernel round trip does.
//!
//! nft adds the matches a header field needs (`icmp id` only makes sense for echo messages),
//! merges adjacent payload matches into one compare (which lists back in header order), and
//! when listing leaves out the matches a later field implies (`meta l4proto tcp` before
//! `tcp dport`). This module replays those steps on an evaluated rule so that it lists as nft
//! would list it.

use crate::ast::*;
use crate::datatype::{Dt, Val};
use crate::error::{Error, Result, Span};
use crate::eval::{const_int, mk_const};
use crate::proto::{self, Base, Layer};

pub fn process(family: Family, rule: &mut Rule) -> Result<()> {
    icmp_deps(rule)?;
    reduce(family, rule);
    kill(family, rule)
}

// ---- icmp message types -------------------------------------------------------------------

/// The message types an ICMP field is defined for.
fn icmp_types(proto: &str, field: &str) -> Option<&'static [u128]> {
    Some(match (proto, field) {
        ("icmp", "id" | "sequence") => &[0, 8],
        ("icmp", "gateway") => &[5],
        ("icmp", "mtu") => &[3],
        ("icmpv6", "mtu") => &[2],
        ("icmpv6", "id" | "sequence") => &[128, 129],
        ("icmpv6", "max-delay") => &[130],
        ("icmpv6", "parameter-problem") => &[4],
        ("icmpv6", "daddr") => &[137],
        ("icmpv6", "taddr") => &[130, 131, 132, 135, 136, 137],
        _ => return None,
    })
}

/// Payload fields a statement reads or writes.
fn fields(st: &Stmt) -> Vec<(String, String, Span)> {
    fn walk(e: &Expr, out: &mut Vec<(String, String, Span)>) {
        match &e.kind {
            ExprKind::Payload { proto, field } => out.push((proto.clone(), field.clone(), e.span)),
            ExprKind::Concat(v) => v.iter().for_each(|x| walk(x, out)),
            ExprKind::Binop(_, a, b) => {
                walk(a, out);
                walk(b, out);
            }
            ExprKind::Map(a, _) => walk(a, out),
            _ => {}
        }
    }
    let mut out = vec![];
    match &st.kind {
        StmtKind::Match { left, .. } => walk(left, &mut out),
        StmtKind::Vmap { key, .. } => walk(key, &mut out),
        StmtKind::Set { key, .. } => walk(key, &mut out),
        _ => {}
    }
    out
}

/// The two sides of an equality match (`==`, or no operator at all).
fn eq_match(st: &Stmt) -> Option<(&Expr, &Expr)> {
    match &st.kind {
        StmtKind::Match {
            left,
            op: RelOp::Implicit | RelOp::Eq,
            right,
        } => Some((left, right)),
        _ => None,
    }
}

/// A match on the message type (`icmp type echo-request`): its value if it is one.
fn type_match(st: &Stmt) -> Option<(&str, Option<u128>)> {
    let (left, right) = eq_match(st)?;
    let ExprKind::Payload { proto, field } = &left.kind else {
        return None;
    };
    if field != "type" || !matches!(proto.as_str(), "icmp" | "icmpv6") {
        return None;
    }
    match &right.kind {
        ExprKind::Const(_) => Some((proto.as_str(), const_int(right))),
        ExprKind::Set(_) | ExprKind::SetRef(_) => Some((proto.as_str(), None)),
        _ => None,
    }
}

/// Adds the `icmp type` match a field needs, or drops an explicit one the field implies.
fn icmp_deps(rule: &mut Rule) -> Result<()> {
    let stmts = std::mem::take(&mut rule.stmts);
    let mut out: Vec<Stmt> = Vec::with_capacity(stmts.len() + 1);
    let mut drop = vec![];
    // per protocol: the statement that matched the type (index in `out`), and its value
    let mut known: Vec<(String, Option<usize>, Option<u128>)> = vec![];
    for st in stmts {
        for (p, f, span) in fields(&st) {
            let Some(types) = icmp_types(&p, &f) else {
                continue;
            };
            match known.iter().find(|(kp, ..)| *kp == p) {
                Some((_, j, Some(t))) => {
                    if !types.contains(t) {
                        return Err(Error::new(span, format!("conflicting protocols specified: {p} type {t} does not carry {p} {f}")));
                    }
                    if types.len() == 1 {
                        if let Some(j) = j {
                            drop.push(*j);
                        }
                    }
                }
                Some(_) => {}
                None => {
                    if types.len() > 1 {
                        let dt = if p == "icmp" {
                            Dt::IcmpType
                        } else {
                            Dt::Icmp6Type
                        };
                        let mut left = Expr::new(
                            ExprKind::Payload {
                                proto: p.clone(),
                                field: "type".into(),
                            },
                            span,
                        );
                        left.dt = dt;
                        left.bits = 8;
                        let mut right = Expr::new(
                            ExprKind::Set(
                                types.iter().map(|t| mk_const(dt, 8, *t, span)).collect(),
                            ),
                            span,
                        );
                        right.dt = dt;
                        right.bits = 8;
                        out.push(Stmt {
                            kind: StmtKind::Match {
                                left,
                                op: RelOp::Implicit,
                                right,
                            },
                            span,
                        });
                    }
                    known.push((p.clone(), None, None));
                }
            }
        }
        if let Some((p, v)) = type_match(&st) {
            let p = p.to_string();
            known.retain(|(kp, ..)| *kp != p);
            known.push((p, Some(out.len()), v));
        }
        out.push(st);
    }
    for j in drop.into_iter().rev() {
        if j < out.len() {
            out.remove(j);
        }
    }
    rule.stmts = out;
    Ok(())
}

// ---- statement reduction ------------------------------------------------------------------

/// Where a payload match reads: base, bit offset, bit length, whether the field is the
/// protocol key of its header (`ether type`, `ip protocol`).
fn merge_key(st: &Stmt) -> Option<(u8, u32, u32, bool)> {
    let (left, right) = eq_match(st)?;
    if !matches!(right.kind, ExprKind::Const(_)) {
        return None;
    }
    let (base, off, len, key) = match &left.kind {
        ExprKind::Payload { proto: p, field } => {
            let f = proto::payload_field(p, field)?;
            let off = f.offset
                + proto::header_bits(p)
                    .filter(|_| p == "vlan")
                    .map(|_| 112)
                    .unwrap_or(0);
            let key = matches!(
                (p.as_str(), field.as_str()),
                ("ether", "type") | ("vlan", "type") | ("ip", "protocol") | ("ip6", "nexthdr")
            );
            (f.base, off, f.bits, key)
        }
        ExprKind::RawPayload { base, offset, len } => {
            let b = match base.as_str() {
                "ll" => Base::Link,
                "nh" => Base::Network,
                "th" => Base::Transport,
                _ => Base::Inner,
            };
            (b, *offset, *len, false)
        }
        _ => return None,
    };
    if off % 8 != 0 || len % 8 != 0 {
        return None;
    }
    let b = match base {
        Base::Link => 0,
        Base::Network => 1,
        Base::Transport => 2,
        Base::Inner => 3,
    };
    Some((b, off, len, key))
}

/// nft's statement reduction before the rule goes to the kernel: a `meta protocol` that the
/// table family already implies is dropped, and runs of equality matches on adjacent header
/// bytes are merged into one compare, which lists back field by field in header order.
fn reduce(family: Family, rule: &mut Rule) {
    // (only before another statement: nft drops it when it reaches the next one)
    let last = rule.stmts.len().saturating_sub(1);
    let mut idx = 0;
    rule.stmts.retain(|st| {
        idx += 1;
        let Some((left, right)) = eq_match(st) else {
            return true;
        };
        let ExprKind::Meta(k) = &left.kind else {
            return true;
        };
        idx - 1 == last
            || !(k == "protocol"
                && matches!(
                    (family, const_int(right)),
                    (Family::Ip, Some(0x0800)) | (Family::Ip6, Some(0x86dd))
                ))
    });
    let n = rule.stmts.len();
    // groups[i]: the statements (by index) listed at position i; None when merged away
    let mut groups: Vec<Option<Vec<usize>>> = (0..n).map(|i| Some(vec![i])).collect();
    let mut run: Vec<usize> = vec![];
    for i in 0..=n {
        let breaks = i == n
            || !matches!(
                rule.stmts[i].kind,
                StmtKind::Match { .. } | StmtKind::Vmap { .. }
            );
        if !breaks {
            if merge_key(&rule.stmts[i]).is_some() {
                run.push(i);
            }
            continue;
        }
        if run.len() >= 2 {
            merge_run(&rule.stmts, &run, &mut groups);
        }
        run.clear();
    }
    if groups
        .iter()
        .all(|g| g.as_ref().is_some_and(|g| g.len() == 1))
    {
        return;
    }
    let mut old: Vec<Option<Stmt>> = std::mem::take(&mut rule.stmts)
        .into_iter()
        .map(Some)
        .collect();
    for g in groups.into_iter().flatten() {
        for i in g {
            if let Some(st) = old.get_mut(i).and_then(Option::take) {
                rule.stmts.push(st);
            }
        }
    }
}

/// Whether two adjacent loads are worth one: the kernel reads up to 32 bits of the network
/// and transport headers on a fast path, so longer merges happen only where that is lost
/// anyway.
fn can_merge(base: u8, l1: u32, l2: u32) -> bool {
    let total = l1 + l2;
    total <= 128 && (total <= 32 || base == 0 || l1 > 32 || l2 > 32)
}

fn merge_run(stmts: &[Stmt], run: &[usize], groups: &mut [Option<Vec<usize>>]) {
    let mut sorted: Vec<(usize, (u8, u32, u32, bool))> = run
        .iter()
        .filter_map(|&i| merge_key(&stmts[i]).map(|k| (i, k)))
        .collect();
    sorted.sort_by_key(|(_, (b, off, ..))| (*b, *off));
    let Some(&(first, (b0, off0, len0, _))) = sorted.first() else {
        return;
    };
    // the merged compare so far: the statement holding it, and the bytes it covers
    let (mut holder, mut base, mut start, mut len) = (first, b0, off0, len0);
    for &(i, (b, off, l, key)) in &sorted[1..] {
        if b != base || start + len != off || !can_merge(base, len, l) {
            holder = i;
            base = b;
            start = off;
            len = l;
            continue;
        }
        // a protocol key keeps its place: the merged compare moves to its statement
        let (keep, gone) = if key { (i, holder) } else { (holder, i) };
        let mut moved = groups[gone].take().unwrap_or_default();
        if let Some(g) = groups[keep].as_mut() {
            if keep == i {
                moved.append(g);
                *g = moved;
            } else {
                g.append(&mut moved);
            }
        }
        holder = keep;
        len += l;
    }
}

// ---- dependency removal on listing --------------------------------------------------------

/// What earlier matches of the rule pinned, as the listing sees them.
#[derive(Default)]
struct Pinned {
    /// `meta iiftype ether`
    link: Option<usize>,
    /// The network protocol (`meta nfproto ipv4`, `ether type ip`, `meta protocol ip6`,
    /// `vlan type ip`) or `vlan` for `ether type 8021q`.
    l3: Option<(usize, &'static str, bool)>,
    /// The transport protocol number (`meta l4proto tcp`, `ip protocol 6`) and whether it
    /// was a network header field.
    l4: Option<(usize, u8, bool)>,
}

fn l3_name(v: u128) -> Option<&'static str> {
    Some(match v {
        0x0800 => "ip",
        0x86dd => "ip6",
        0x0806 => "arp",
        0x8100 => "vlan",
        _ => return None,
    })
}

fn kill(family: Family, rule: &mut Rule) -> Result<()> {
    let mut remove = vec![];
    let mut pc = Pinned::default();
    // families where the network protocol is not implied by the hook
    let multi = matches!(family, Family::Inet | Family::Bridge | Family::Netdev);
    for i in 0..rule.stmts.len() {
        if !matches!(
            rule.stmts[i].kind,
            StmtKind::Match { .. } | StmtKind::Vmap { .. }
        ) {
            // only adjacent matches depend on each other in the listing
            pc = Pinned::default();
            continue;
        }
        for (p, _, span) in fields(&rule.stmts[i]) {
            let Some(pr) = proto::protocol(&p) else {
                continue;
            };
            match pr.layer {
                Layer::Link => {
                    if let Some(j) = pc.link.take() {
                        remove.push(j);
                    }
                    if p == "vlan" {
                        match pc.l3 {
                            Some((j, "vlan", _)) => {
                                remove.push(j);
                                pc.l3 = None;
                            }
                            Some((_, other, true)) => {
                                return Err(Error::new(
                                    span,
                                    format!("conflicting protocols specified: {other} vs. vlan"),
                                ));
                            }
                            _ => {}
                        }
                    }
                }
                Layer::Network => {
                    if let Some((j, l3, _)) = pc.l3 {
                        if l3 == p {
                            remove.push(j);
                            pc.l3 = None;
                        }
                    }
                }
                Layer::Transport => {
                    if let (Some((j, n, in_nh)), Some(num)) = (pc.l4, pr.number) {
                        // in families that carry several network protocols, `ip protocol`
                        // also says the packet is IPv4 and stays
                        if n as u32 == num && !(multi && in_nh) {
                            remove.push(j);
                            pc.l4 = None;
                        }
                    }
                    // ICMP implies its network protocol
                    let l3_needed = match p.as_str() {
                        "icmp" | "igmp" => Some("ip"),
                        "icmpv6" => Some("ip6"),
                        _ => None,
                    };
                    if let (Some((j, l3, false)), Some(need)) = (pc.l3, l3_needed) {
                        if l3 == need {
                            remove.push(j);
                            pc.l3 = None;
                        }
                    }
                }
                _ => {}
            }
        }
        // conntrack addresses of one family, and `meta l4proto` icmp or ipv6-icmp, imply the
        // network protocol: a match on it before them is their dependency
        if let Some(need) = implied_l3(&rule.stmts[i]) {
            if let Some((j, l3, _)) = pc.l3 {
                if l3 == need {
                    remove.push(j);
                    pc.l3 = None;
                }
            }
        }
        th_to_proto(&mut rule.stmts[i], &mut pc, multi, &mut remove);
        record(family, &rule.stmts[i], i, &mut pc);
    }
    remove.sort_unstable();
    remove.dedup();
    for j in remove.into_iter().rev() {
        rule.stmts.remove(j);
    }
    Ok(())
}

/// `th dport` under a known transport protocol lists as that protocol's field; under an
/// unknown one as the raw load it is.
fn th_to_proto(st: &mut Stmt, pc: &mut Pinned, multi: bool, remove: &mut Vec<usize>) {
    let StmtKind::Match { left, right, .. } = &mut st.kind else {
        return;
    };
    let ExprKind::Payload { proto: p, field } = &left.kind else {
        return;
    };
    if p != "th" {
        return;
    }
    let Some((j, n, in_nh)) = pc.l4 else { return };
    match proto::upper_protocol("ip", n as u32).map(|x| x.name) {
        Some(name @ ("tcp" | "udp" | "udplite" | "sctp" | "dccp")) => {
            left.kind = ExprKind::Payload {
                proto: name.to_string(),
                field: field.clone(),
            };
            if !(multi && in_nh) {
                remove.push(j);
                pc.l4 = None;
            }
        }
        _ => {
            let offset = if field == "sport" { 0 } else { 16 };
            left.kind = ExprKind::RawPayload {
                base: "th".into(),
                offset,
                len: 16,
            };
            left.dt = Dt::XInteger;
            retype(right, Dt::XInteger);
        }
    }
}

fn retype(e: &mut Expr, dt: Dt) {
    if e.dt != Dt::Invalid {
        e.dt = dt;
    }
    match &mut e.kind {
        ExprKind::Const(c) => {
            if matches!(c.val, Val::Int(_)) {
                c.dt = dt;
            }
        }
        ExprKind::Set(v) | ExprKind::List(v) | ExprKind::Concat(v) => {
            v.iter_mut().for_each(|x| retype(x, dt))
        }
        ExprKind::Range(a, b) => {
            retype(a, dt);
            retype(b, dt);
        }
        ExprKind::Prefix(a, _) | ExprKind::Elem(a, _) => retype(a, dt),
        _ => {}
    }
}

/// Notes what a match pins for the statements after it.
fn implied_l3(st: &Stmt) -> Option<&'static str> {
    let (left, right) = eq_match(st)?;
    match &left.kind {
        ExprKind::Ct {
            key,
            family: Some(f),
            ..
        } if key == "saddr" || key == "daddr" => Some(if f == "ip6" { "ip6" } else { "ip" }),
        ExprKind::Meta(k) if k == "l4proto" => match const_int(right) {
            Some(1) => Some("ip"),
            Some(58) => Some("ip6"),
            _ => None,
        },
        _ => None,
    }
}

fn record(family: Family, st: &Stmt, i: usize, pc: &mut Pinned) {
    let Some((left, right)) = eq_match(st) else {
        return;
    };
    let Some(v) = const_int(right) else { return };
    match &left.kind {
        ExprKind::Meta(k) if k == "nfproto" && family == Family::Inet => {
            pc.l3 = match v {
                2 => Some((i, "ip", false)),
                10 => Some((i, "ip6", false)),
                _ => None,
            };
        }
        ExprKind::Meta(k)
            if k == "protocol" && matches!(family, Family::Bridge | Family::Netdev) =>
        {
            pc.l3 = l3_name(v).filter(|n| *n != "vlan").map(|n| (i, n, false));
        }
        ExprKind::Meta(k) if k == "iiftype" && v == 1 => pc.link = Some(i),
        ExprKind::Payload { proto: p, field }
            if (p == "ether" || p == "vlan") && field == "type" =>
        {
            // only the outer tag is implied by a vlan field; a `vlan type 8021q` stays
            pc.l3 = l3_name(v)
                .filter(|n| p == "ether" || *n != "vlan")
                .map(|n| (i, n, true));
        }
        ExprKind::Meta(k) if k == "l4proto" => pc.l4 = Some((i, v as u8, false)),
        ExprKind::Payload { proto: p, field }
            if (p == "ip" && field == "protocol") || (p == "ip6" && field == "nexthdr") =>
        {
            pc.l4 = Some((i, v as u8, true));
        }
        _ => {}
    }
}
