//! Statement semantics that depend on the rest of the rule: which ICMP variant a `reject`
//! sends and the protocol matches it implies, and which of those nft lists back.
//!
//! nft evaluates a statement against the protocols the matches before it pinned down (its
//! protocol context), adds the dependencies it needs at the head of the rule, and when it
//! lists the rule back from the kernel drops the dependencies the statement implies.

use crate::ast::*;
use crate::datatype::{Dt, Val};
use crate::error::{Error, Result, Span};
use crate::eval::{const_int, mk_const, Ctx};
use crate::proto;

fn err<T>(span: Span, msg: impl Into<String>) -> Result<T> {
    Err(Error::new(span, msg))
}

/// What the statements before a point say about the packet's protocols.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Known {
    /// Network protocol: "ip", "ip6" or "arp".
    pub l3: Option<&'static str>,
    /// Transport protocol number.
    pub l4: Option<u8>,
    /// The explicit match that pinned the network protocol and would still be taken for a
    /// dependency when listing (nothing but matches since).
    pub l3_dep: Option<usize>,
    /// Same for the transport protocol.
    pub l4_dep: Option<usize>,
    /// The transport protocol was matched against a set (`meta l4proto { tcp, udp }`): a
    /// port may follow, but which protocol is not known.
    pub l4_set: bool,
}

fn l3_of_ethertype(v: u128) -> Option<&'static str> {
    match v {
        0x0800 => Some("ip"),
        0x86dd => Some("ip6"),
        0x0806 => Some("arp"),
        // a vlan header is still link layer: the network protocol stays unknown
        _ => None,
    }
}

/// Payload protocols an expression reads.
fn payload_protos(e: &Expr, out: &mut Vec<String>) {
    match &e.kind {
        ExprKind::Payload { proto, .. } => out.push(proto.clone()),
        ExprKind::Concat(v) | ExprKind::List(v) => v.iter().for_each(|x| payload_protos(x, out)),
        ExprKind::Binop(_, a, b) => {
            payload_protos(a, out);
            payload_protos(b, out);
        }
        ExprKind::Map(a, _) => payload_protos(a, out),
        ExprKind::Hash { expr: Some(a), .. } => payload_protos(a, out),
        _ => {}
    }
}

/// Walks `stmts` (the statements before some point of a rule) the way nft's protocol context
/// does.
pub fn known_protocols(ctx: &Ctx, stmts: &[Stmt]) -> Known {
    let mut k = Known {
        l3: match ctx.family {
            Family::Ip => Some("ip"),
            Family::Ip6 => Some("ip6"),
            Family::Arp => Some("arp"),
            _ => None,
        },
        ..Known::default()
    };
    for (i, st) in stmts.iter().enumerate() {
        let left = match &st.kind {
            StmtKind::Match { left, .. } => left,
            StmtKind::Vmap { key, .. } => key,
            _ => {
                // statements with side effects end what listing may take for a dependency
                k.l3_dep = None;
                k.l4_dep = None;
                if let StmtKind::Set { key, .. } = &st.kind {
                    let mut ps = vec![];
                    payload_protos(key, &mut ps);
                    note_payloads(&mut k, &ps);
                }
                continue;
            }
        };
        let mut ps = vec![];
        payload_protos(left, &mut ps);
        note_payloads(&mut k, &ps);
        if let StmtKind::Match {
            left,
            op: RelOp::Implicit | RelOp::Eq,
            right,
        } = &st.kind
        {
            if matches!(right.kind, ExprKind::Set(_) | ExprKind::SetRef(_)) {
                let l4_key = match &left.kind {
                    ExprKind::Meta(m) => m == "l4proto",
                    ExprKind::Payload { proto: p, field } => {
                        (p == "ip" && field == "protocol") || (p == "ip6" && field == "nexthdr")
                    }
                    _ => false,
                };
                k.l4_set |= l4_key;
            }
            let Some(v) = const_int(right) else { continue };
            match &left.kind {
                ExprKind::Meta(m) if m == "nfproto" => {
                    k.l3 = match v {
                        2 => Some("ip"),
                        10 => Some("ip6"),
                        _ => k.l3,
                    };
                    k.l3_dep = Some(i);
                }
                ExprKind::Meta(m) if m == "protocol" => {
                    k.l3 = l3_of_ethertype(v).or(k.l3);
                    k.l3_dep = Some(i);
                }
                ExprKind::Payload { proto: p, field }
                    if (p == "ether" || p == "vlan") && field == "type" =>
                {
                    k.l3 = l3_of_ethertype(v);
                    k.l3_dep = Some(i);
                }
                ExprKind::Meta(m) if m == "l4proto" => {
                    k.l4 = Some(v as u8);
                    k.l4_dep = Some(i);
                }
                // a protocol nft has no header description for leaves the transport
                // header unknown (`meta l4proto 99` though names an unknown one)
                ExprKind::Payload { proto: p, field }
                    if (p == "ip" && field == "protocol") || (p == "ip6" && field == "nexthdr") =>
                {
                    if u32::try_from(v)
                        .ok()
                        .and_then(|n| proto::upper_protocol(p, n))
                        .is_some()
                    {
                        k.l4 = Some(v as u8);
                    }
                    k.l4_dep = Some(i);
                }
                _ => {}
            }
        }
    }
    k
}

fn note_payloads(k: &mut Known, ps: &[String]) {
    for p in ps {
        let Some(pr) = proto::protocol(p) else {
            continue;
        };
        match pr.layer {
            proto::Layer::Network => {
                k.l3 = Some(pr.name);
                k.l3_dep = None;
            }
            proto::Layer::Transport => {
                if let Some(n) = pr.number {
                    k.l4 = Some(n as u8);
                    k.l4_dep = None;
                }
            }
            _ => {}
        }
    }
}

/// A typed `selector == value` match, as nft generates for a dependency.
fn dep_match(ctx: &Ctx, sel: ExprKind, value: u128, span: Span) -> Stmt {
    let mut left = Expr::new(sel, span);
    if let Ok((dt, bits)) = crate::eval::selector_type(ctx, &left) {
        left.dt = dt;
        left.bits = bits;
    }
    let right = mk_const(left.dt, left.bits, value, span);
    Stmt {
        kind: StmtKind::Match {
            left,
            op: RelOp::Implicit,
            right,
        },
        span,
    }
}

/// The match that pins the network protocol `l3` in this family.
fn l3_dependency(ctx: &Ctx, l3: &str, span: Span) -> Option<Stmt> {
    let eth = match l3 {
        "ip" => 0x0800,
        "ip6" => 0x86dd,
        _ => return None,
    };
    Some(match ctx.family {
        Family::Inet => dep_match(
            ctx,
            ExprKind::Meta("nfproto".into()),
            if l3 == "ip" { 2 } else { 10 },
            span,
        ),
        Family::Bridge => dep_match(
            ctx,
            ExprKind::Payload {
                proto: "ether".into(),
                field: "type".into(),
            },
            eth,
            span,
        ),
        Family::Netdev => dep_match(ctx, ExprKind::Meta("protocol".into()), eth, span),
        _ => return None,
    })
}

/// Statement-level evaluation that needs the whole rule, run after the per-statement pass.
pub fn postprocess_rule(ctx: &Ctx, rule: &mut Rule) -> Result<()> {
    check_terminal(rule)?;
    let mut i = 0;
    while i < rule.stmts.len() {
        match rule.stmts[i].kind {
            StmtKind::Reject(_) => i = eval_reject(ctx, rule, i)?,
            StmtKind::Nat(_) | StmtKind::Tproxy { .. } => {
                let known = known_protocols(ctx, &rule.stmts[..i]);
                let span = rule.stmts[i].span;
                match &mut rule.stmts[i].kind {
                    StmtKind::Nat(n) => eval_nat(ctx, &known, n, span)?,
                    StmtKind::Tproxy { family, addr, port } => {
                        eval_tproxy(ctx, &known, family, addr, port, span)?
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

const ICMP_PORT_UNREACH: u128 = 3;
const ICMP6_PORT_UNREACH: u128 = 4;
const ICMPX_PORT_UNREACH: u128 = 1;

fn icmp_kind(family: &str, code: u128, span: Span) -> RejectKind {
    let dt = match family {
        "icmp" => Dt::IcmpCode,
        "icmpv6" => Dt::Icmp6Code,
        _ => Dt::IcmpxCode,
    };
    RejectKind::Icmp {
        family: family.into(),
        code: mk_const(dt, 8, code, span),
    }
}

/// Evaluates the reject at `i`: picks the ICMP variant for `reject` alone, checks it against
/// the family and the protocols matched before, adds the dependency it needs, and removes the
/// one listing would fold into it. Returns the reject's new index.
fn eval_reject(ctx: &Ctx, rule: &mut Rule, mut i: usize) -> Result<usize> {
    let span = rule.stmts[i].span;
    let known = known_protocols(ctx, &rule.stmts[..i]);
    let StmtKind::Reject(kind) = &mut rule.stmts[i].kind else {
        return Ok(i);
    };
    if ctx.family == Family::Arp {
        return err(span, "cannot use reject with arp");
    }
    // `reject` alone: the variant the protocol context calls for
    if matches!(kind, RejectKind::Default) {
        *kind = match (ctx.family, known.l3) {
            (Family::Ip, _) => icmp_kind("icmp", ICMP_PORT_UNREACH, span),
            (Family::Ip6, _) => icmp_kind("icmpv6", ICMP6_PORT_UNREACH, span),
            (_, None) => icmp_kind("icmpx", ICMPX_PORT_UNREACH, span),
            (_, Some("ip")) => icmp_kind("icmp", ICMP_PORT_UNREACH, span),
            (_, Some("ip6")) => icmp_kind("icmpv6", ICMP6_PORT_UNREACH, span),
            (_, Some(_)) => return err(span, "cannot reject this network family"),
        };
    }
    if let RejectKind::Icmp { code, .. } = kind {
        if const_int(code).is_some_and(|c| c > 255) {
            return err(code.span, "reject code must be integer in range 0-255");
        }
    }
    if let RejectKind::TcpReset = kind {
        if known.l4.is_some_and(|p| p != 6) {
            return err(span, "you cannot use tcp reset with this protocol");
        }
    }
    let icmp_family = match kind {
        RejectKind::Icmp { family, .. } => Some(family.clone()),
        _ => None,
    };
    let is_icmpx = icmp_family.as_deref() == Some("icmpx");
    let conflict =
        |l3: &str, f: &str| (l3 == "ip" && f == "icmpv6") || (l3 == "ip6" && f == "icmp");
    match ctx.family {
        Family::Ip | Family::Ip6 => {
            if is_icmpx {
                return err(span, "abstracted ICMP unreachable not supported");
            }
            if let Some(f) = &icmp_family {
                if conflict(known.l3.unwrap_or(""), f) {
                    return err(span, "conflicting protocols specified: ip vs ip6");
                }
            }
        }
        Family::Bridge | Family::Netdev => {
            if let Some(l3) = known.l3 {
                if l3 != "ip" && l3 != "ip6" {
                    return err(span, "cannot reject this network family");
                }
                if let Some(f) = &icmp_family {
                    if conflict(l3, f) {
                        return err(span, "conflicting protocols specified: ip vs ip6");
                    }
                }
            }
        }
        Family::Inet => {
            if let (Some(l3), Some(f)) = (known.l3, &icmp_family) {
                if conflict(l3, f) {
                    return err(span, "conflicting protocols specified: ip vs ip6");
                }
            }
        }
        Family::Arp => {}
    }
    // The dependency nft adds at the head of the rule, so that nothing before the reject
    // acts on packets it cannot reject.
    let mut dep = None;
    if !is_icmpx {
        match &icmp_family {
            None if known.l4.is_none() => {
                dep = Some(dep_match(ctx, ExprKind::Meta("l4proto".into()), 6, span))
            }
            Some(f) if known.l3.is_none() => {
                dep = l3_dependency(ctx, if f == "icmp" { "ip" } else { "ip6" }, span)
            }
            _ => {}
        }
    }
    if let Some(d) = dep {
        rule.stmts.insert(0, d);
        i += 1;
    }
    // What listing folds into the reject: in ip and ip6 the transport match a tcp reset
    // implies, elsewhere the network match an ICMP reject implies.
    let known = known_protocols(ctx, &rule.stmts[..i]);
    let drop = match ctx.family {
        Family::Ip | Family::Ip6 if icmp_family.is_none() => known.l4_dep,
        Family::Inet | Family::Bridge | Family::Netdev if !is_icmpx => known.l3_dep.filter(|&j| {
            // only a match that pins ip or ip6 is a dependency of the reject
            matches!(&rule.stmts[j].kind, StmtKind::Match { right, .. } if matches!(const_int(right), Some(2 | 10 | 0x0800 | 0x86dd)))
        }),
        _ => None,
    };
    if let Some(j) = drop {
        rule.stmts.remove(j);
        i -= 1;
    }
    Ok(i)
}

/// How a reject is listed: the ICMP code by name, and nothing for the default of the family.
pub fn reject_text(
    kind: &RejectKind,
    family: Family,
    code_text: impl Fn(&Expr) -> String,
) -> String {
    match kind {
        RejectKind::Default => "reject".into(),
        RejectKind::TcpReset => "reject with tcp reset".into(),
        RejectKind::Icmp { family: f, code } => {
            let n = const_int(code);
            let default = match (f.as_str(), family) {
                ("icmpx", _) => Some(ICMPX_PORT_UNREACH),
                ("icmp", Family::Ip) => Some(ICMP_PORT_UNREACH),
                ("icmpv6", Family::Ip6) => Some(ICMP6_PORT_UNREACH),
                _ => None,
            };
            if n.is_some() && n == default {
                return "reject".into();
            }
            let dt = match f.as_str() {
                "icmp" => Dt::IcmpCode,
                "icmpv6" => Dt::Icmp6Code,
                _ => Dt::IcmpxCode,
            };
            let txt = match n.and_then(|v| dt.symbol_name(v)) {
                Some(s) => s.to_string(),
                None => match &code.kind {
                    ExprKind::Const(Const {
                        val: Val::Int(v), ..
                    }) => v.to_string(),
                    _ => code_text(code),
                },
            };
            format!("reject with {f} {txt}")
        }
    }
}

fn addr_type(fam: &str) -> Option<(Dt, u32)> {
    match fam {
        "ip" => Some((Dt::Ipv4Addr, 32)),
        "ip6" => Some((Dt::Ipv6Addr, 128)),
        _ => None,
    }
}

/// Whether an expression reads a transport header (`tcp dport`, not the protocol-less `th`),
/// which pins the transport protocol as its dependency.
fn uses_transport(e: &Expr) -> bool {
    let mut ps = vec![];
    fn walk(e: &Expr, out: &mut Vec<String>) {
        payload_protos(e, out);
        match &e.kind {
            ExprKind::Map(k, _) => walk(k, out),
            ExprKind::Concat(v) => v.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(e, &mut ps);
    ps.iter().any(|p| {
        proto::protocol(p)
            .is_some_and(|pr| pr.layer == proto::Layer::Transport && pr.number.is_some())
    })
}

/// The network family a map's key implies (`ip saddr . tcp dport map ...` is ip).
fn map_key_family(e: &Expr) -> Option<&'static str> {
    let ExprKind::Map(k, _) = &e.kind else {
        return None;
    };
    let items: Vec<&Expr> = match &k.kind {
        ExprKind::Concat(v) => v.iter().collect(),
        _ => vec![k.as_ref()],
    };
    let mut fam = None;
    for it in items {
        if let ExprKind::Payload { proto: p, .. } = &it.kind {
            match p.as_str() {
                "ip" => fam = Some("ip"),
                "ip6" => fam = Some("ip6"),
                _ => {}
            }
        }
    }
    fam
}

fn strip_elem(e: &Expr) -> &Expr {
    match &e.kind {
        ExprKind::Elem(inner, _) => inner,
        _ => e,
    }
}

/// The values of an anonymous map.
fn map_values(e: &Expr) -> Vec<&Expr> {
    let ExprKind::Map(_, m) = &e.kind else {
        return vec![];
    };
    let ExprKind::Set(elems) = &m.kind else {
        return vec![];
    };
    elems
        .iter()
        .filter_map(|el| match &strip_elem(el).kind {
            ExprKind::Mapping(_, v) => Some(strip_elem(v)),
            _ => None,
        })
        .collect()
}

fn strip_elem_mut(e: &mut Expr) -> &mut Expr {
    if matches!(e.kind, ExprKind::Elem(..)) {
        match &mut e.kind {
            ExprKind::Elem(inner, _) => inner,
            _ => unreachable!(),
        }
    } else {
        e
    }
}

fn map_values_mut(e: &mut Expr) -> Vec<&mut Expr> {
    let ExprKind::Map(_, m) = &mut e.kind else {
        return vec![];
    };
    let ExprKind::Set(elems) = &mut m.kind else {
        return vec![];
    };
    let mut out = vec![];
    for el in elems.iter_mut() {
        if let ExprKind::Mapping(_, v) = &mut strip_elem_mut(el).kind {
            out.push(strip_elem_mut(v));
        }
    }
    out
}

fn named_map<'a>(ctx: &'a Ctx, e: &Expr) -> Option<&'a crate::eval::SetInfo> {
    let ExprKind::Map(_, m) = &e.kind else {
        return None;
    };
    let ExprKind::SetRef(n) = &m.kind else {
        return None;
    };
    ctx.sets.get(n.as_str())
}

/// A map whose values are `address . port`.
fn is_concat_map(ctx: &Ctx, e: &Expr) -> bool {
    if let Some(si) = named_map(ctx, e) {
        return si.data_fields > 1;
    }
    map_values(e)
        .iter()
        .any(|v| matches!(v.kind, ExprKind::Concat(_)))
}

/// A map whose values are address (or port) ranges or prefixes.
fn is_interval_map(ctx: &Ctx, e: &Expr) -> bool {
    fn iv(v: &Expr) -> bool {
        match &v.kind {
            ExprKind::Range(..) | ExprKind::Prefix(..) => true,
            ExprKind::Symbol(w) => w.contains('/') || w.contains('-'),
            ExprKind::Concat(items) => items.iter().any(iv),
            _ => false,
        }
    }
    if let Some(si) = named_map(ctx, e) {
        return si.data_interval;
    }
    map_values(e).iter().any(|v| iv(v))
}

/// A range that covers exactly one prefix, as the kernel's min/max registers list back.
pub fn range_to_prefix(e: &mut Expr) {
    let ExprKind::Range(a, b) = &e.kind else {
        return;
    };
    let (Some(lo), Some(hi)) = (const_int(a), const_int(b)) else {
        return;
    };
    let bits = if a.bits > 0 { a.bits } else { e.bits };
    if bits == 0 || bits > 128 || lo >= hi {
        return;
    }
    let span = hi - lo;
    // the host part must be all ones in the range's size and the start aligned to it
    if span.checked_add(1).is_some_and(|n| n.is_power_of_two()) && lo & span == 0 {
        let host = 128 - span.leading_zeros();
        let len = bits.saturating_sub(host);
        let inner = (**a).clone();
        e.kind = ExprKind::Prefix(Box::new(inner), len);
    } else if span == u128::MAX && lo == 0 {
        let inner = (**a).clone();
        e.kind = ExprKind::Prefix(Box::new(inner), 0);
    }
}

fn transport_known(known: &Known, exprs: &[Option<&Expr>]) -> bool {
    known.l4.is_some() || known.l4_set || exprs.iter().flatten().any(|e| uses_transport(e))
}

/// snat, dnat, masquerade and redirect: the address family, the address and port types, and
/// the family nft lists (`snat ip to ...` in inet tables, and for maps to address ranges or
/// address-port pairs everywhere).
pub fn eval_nat(ctx: &Ctx, known: &Known, n: &mut NatStmt, span: Span) -> Result<()> {
    let name = n.kind.name();
    if !matches!(ctx.family, Family::Ip | Family::Ip6 | Family::Inet) {
        return err(span, "NAT is only supported for IPv4/IPv6");
    }
    let mut fam: Option<String> = match ctx.family {
        Family::Ip => Some(n.family.clone().unwrap_or_else(|| "ip".into())),
        Family::Ip6 => Some(n.family.clone().unwrap_or_else(|| "ip6".into())),
        _ if n.addr.is_none() => None,
        _ => n.family.clone().or_else(|| {
            known
                .l3
                .filter(|l| *l == "ip" || *l == "ip6")
                .map(String::from)
        }),
    };
    if let Some(a) = &mut n.addr {
        if let (Some(f), Some(l3)) = (&fam, known.l3) {
            if (l3 == "ip" || l3 == "ip6") && l3 != f {
                return err(span, format!("conflicting protocols specified: {l3} vs. {}. You must specify ip or ip6 family in {name} statement", if f == "ip" { "ipv4" } else { "ipv6" }));
            }
        }
        if fam.is_none() {
            fam = map_key_family(a).map(String::from);
        }
        let Some((dt, bits)) = fam.as_deref().and_then(addr_type) else {
            return err(
                span,
                format!("specify `{name} ip' or '{name} ip6' in inet table to disambiguate"),
            );
        };
        if is_concat_map(ctx, a) {
            if n.port.is_some() {
                return err(span, "nat map and protocol are mutually exclusive");
            }
            crate::eval::eval_stmt_value(ctx, a, dt, bits)?;
            for v in map_values_mut(a) {
                if let ExprKind::Concat(items) = &mut v.kind {
                    if items.len() == 2 {
                        crate::eval::eval_value(ctx, &mut items[0], dt, bits)?;
                        crate::eval::eval_value(ctx, &mut items[1], Dt::InetService, 16)?;
                    }
                }
            }
            if !transport_known(known, &[Some(a)]) {
                return err(
                    span,
                    "transport protocol mapping is only valid after transport protocol match",
                );
            }
        } else {
            crate::eval::eval_stmt_value(ctx, a, dt, bits)?;
            range_to_prefix(a);
        }
    }
    if let Some(p) = &mut n.port {
        crate::eval::eval_stmt_value(ctx, p, Dt::InetService, 16)?;
        // nft wants a transport match before any port; firewall4 writes `dnat ADDR:PORT`
        // without one and expects it loaded, so a constant address with a port is let through
        let addr_with_port = n.addr.as_ref().is_some_and(|a| {
            matches!(
                a.kind,
                ExprKind::Const(_) | ExprKind::Range(..) | ExprKind::Prefix(..)
            )
        });
        if !addr_with_port && !transport_known(known, &[n.addr.as_ref(), Some(p)]) {
            return err(
                p.span,
                "transport protocol mapping is only valid after transport protocol match",
            );
        }
    }
    // what listing shows: the family of inet rules, and of maps to ranges or address-port pairs
    n.family = match (&n.addr, ctx.family) {
        (None, _) => None,
        (Some(_), Family::Inet) => fam,
        (Some(a), _) if is_concat_map(ctx, a) || is_interval_map(ctx, a) => fam,
        _ => None,
    };
    if let Some(h) = ctx.chain_type {
        if h != "nat" {
            return err(span, format!("Could not process rule: Operation not supported\n{name} is only valid in nat chains"));
        }
    }
    Ok(())
}

/// tproxy: only in ip, ip6 and inet, after a transport match, to an address and/or port of
/// the family given or of the table.
pub fn eval_tproxy(
    ctx: &Ctx,
    known: &Known,
    family: &mut Option<String>,
    addr: &mut Option<Expr>,
    port: &mut Option<Expr>,
    span: Span,
) -> Result<()> {
    match ctx.family {
        Family::Ip if family.is_none() => *family = Some("ip".into()),
        Family::Ip6 if family.is_none() => *family = Some("ip6".into()),
        Family::Ip | Family::Ip6 | Family::Inet => {}
        _ => return err(span, "tproxy is only supported for IPv4/IPv6/INET"),
    }
    if !transport_known(known, &[]) {
        return err(
            span,
            "Transparent proxy support requires transport protocol match",
        );
    }
    if addr.is_none() && port.is_none() {
        return err(span, "Either address or port must be specified!");
    }
    if let (Some(f), Some(l3)) = (family.as_deref(), known.l3) {
        if (l3 == "ip" || l3 == "ip6") && l3 != f {
            return err(span, format!("conflicting protocols specified: {l3} vs. {}. You must specify ip or ip6 family in tproxy statement", if f == "ip" { "ipv4" } else { "ipv6" }));
        }
    }
    if let Some(a) = addr {
        let fam = family
            .clone()
            .or_else(|| map_key_family(a).map(String::from));
        let Some((dt, bits)) = fam.as_deref().and_then(addr_type) else {
            return err(
                span,
                "specify `tproxy ip' or 'tproxy ip6' in inet table to disambiguate",
            );
        };
        crate::eval::eval_stmt_value(ctx, a, dt, bits)?;
        if matches!(a.kind, ExprKind::Range(..)) {
            return err(span, "Address ranges are not supported for tproxy.");
        }
    }
    if let Some(p) = port {
        crate::eval::eval_stmt_value(ctx, p, Dt::InetService, 16)?;
        if matches!(p.kind, ExprKind::Range(..)) {
            return err(span, "Port ranges are not supported for tproxy.");
        }
    }
    Ok(())
}

/// Statements that end the rule's evaluation for the packet.
fn is_terminal(st: &Stmt) -> bool {
    match &st.kind {
        StmtKind::Verdict(v) => *v != Verdict::Continue,
        StmtKind::Reject(_) | StmtKind::Nat(_) | StmtKind::Queue { .. } | StmtKind::Fwd { .. } => {
            true
        }
        _ => false,
    }
}

/// Nothing may follow a terminal statement: it would never run.
fn check_terminal(rule: &Rule) -> Result<()> {
    let mut seen = false;
    for st in &rule.stmts {
        if seen {
            return err(st.span, "Statement after terminal statement has no effect");
        }
        seen = is_terminal(st);
    }
    Ok(())
}

/// dup: to an address of the table's family (and out of a device) in ip and ip6, to a
/// device in netdev.
pub fn eval_dup(
    ctx: &Ctx,
    addr: &mut Option<Expr>,
    dev: &mut Option<Expr>,
    span: Span,
) -> Result<()> {
    match ctx.family {
        Family::Ip | Family::Ip6 => {
            let Some(a) = addr else {
                return err(span, "missing destination address");
            };
            let (dt, bits) = if ctx.family == Family::Ip {
                (Dt::Ipv4Addr, 32)
            } else {
                (Dt::Ipv6Addr, 128)
            };
            crate::eval::eval_stmt_value(ctx, a, dt, bits)?;
            if let Some(d) = dev {
                crate::eval::eval_stmt_value(ctx, d, Dt::IfIndex, 32)?;
            }
        }
        Family::Netdev => {
            let Some(a) = addr else {
                return err(span, "missing destination interface");
            };
            if dev.is_some() {
                return err(span, "cannot specify device");
            }
            crate::eval::eval_stmt_value(ctx, a, Dt::IfIndex, 32)?;
        }
        _ => return err(span, "unsupported family"),
    }
    if addr
        .as_ref()
        .is_some_and(|a| matches!(a.kind, ExprKind::Range(..)))
    {
        return err(span, "dup: range argument not supported");
    }
    Ok(())
}

/// fwd: only in netdev, to a device, optionally via a neighbour address of a given family.
pub fn eval_fwd(
    ctx: &Ctx,
    family: &Option<String>,
    addr: &mut Option<Expr>,
    dev: &mut Expr,
    span: Span,
) -> Result<()> {
    if ctx.family != Family::Netdev {
        return err(span, "unsupported family");
    }
    crate::eval::eval_stmt_value(ctx, dev, Dt::IfIndex, 32)?;
    if let Some(a) = addr {
        let Some((dt, bits)) = family.as_deref().and_then(addr_type) else {
            return err(span, "missing family");
        };
        crate::eval::eval_stmt_value(ctx, a, dt, bits)?;
    }
    Ok(())
}

/// Meta keys the kernel can write, and the hooks that allows it in (None: any).
fn meta_settable(key: &str) -> Option<Option<&'static str>> {
    match key {
        "mark" | "priority" | "pkttype" | "nftrace" | "secmark" => Some(None),
        // the bridge decides to route a frame only before forwarding it
        "broute" => Some(Some("prerouting")),
        _ => None,
    }
}

/// What a `set` statement may write: one value (not a set of them), to a key that can be
/// written.
pub fn check_mangle(ctx: &Ctx, key: &Expr, value: &Expr, span: Span) -> Result<()> {
    if matches!(value.kind, ExprKind::Set(_) | ExprKind::SetRef(_)) {
        return err(
            value.span,
            "a set statement takes a single value, not a set",
        );
    }
    match &key.kind {
        ExprKind::Meta(k) => match meta_settable(k) {
            None => {
                return err(
                    span,
                    format!(
                        "Could not process rule: Operation not supported\nmeta {k} cannot be set"
                    ),
                )
            }
            Some(Some(hook)) if ctx.hook.is_some_and(|h| h != hook) => {
                return err(span, format!("Could not process rule: Operation not supported\nmeta {k} can only be set in the {hook} hook"));
            }
            _ => {}
        },
        ExprKind::Ct { key: k, dir, .. } => {
            if !matches!(
                k.as_str(),
                "mark"
                    | "label"
                    | "zone"
                    | "event"
                    | "secmark"
                    | "helper"
                    | "timeout"
                    | "expectation"
            ) {
                return err(
                    span,
                    format!(
                        "Could not process rule: Operation not supported\nct {k} cannot be set"
                    ),
                );
            }
            if dir.is_some() && k != "zone" {
                return err(span, format!("ct {k} does not take a direction"));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Named objects a rule refers to (`counter name "c"`, `ct helper set "ftp"`, and the values
/// of an object map) must exist in the table.
pub fn check_obj_refs(objs: &[(String, String)], rule: &Rule) -> Result<()> {
    for st in &rule.stmts {
        let StmtKind::ObjRef { kind, name } = &st.kind else {
            continue;
        };
        let names: Vec<&Expr> = match &name.kind {
            ExprKind::Map(..) => map_values(name),
            _ => vec![name],
        };
        for n in names {
            let text = match &n.kind {
                ExprKind::Const(Const {
                    val: Val::Str(s), ..
                })
                | ExprKind::Quoted(s)
                | ExprKind::Symbol(s) => s,
                _ => continue,
            };
            if !objs.iter().any(|(k, o)| k == kind && o == text) {
                return err(n.span, format!("Could not process rule: No such file or directory\n{kind} '{text}' does not exist"));
            }
        }
    }
    Ok(())
}

/// nft's checks on a log statement: the netlink group options (group, snaplen,
/// queue-threshold) exclude a level and flags, and the audit level takes nothing else.
pub fn check_log(l: &LogStmt, span: Span) -> Result<()> {
    let group_opts = l.group.is_some() || l.snaplen.is_some() || l.queue_threshold.is_some();
    if group_opts {
        if l.level.is_some() {
            return err(span, "level and group are mutually exclusive");
        }
        if !l.flags.is_empty() {
            return err(span, "flags and group are mutually exclusive");
        }
    }
    if l.level.as_deref() == Some("audit")
        && (group_opts || l.prefix.is_some() || !l.flags.is_empty())
    {
        return err(span, "log level audit doesn't support any further options");
    }
    if let Some(p) = &l.prefix {
        if let ExprKind::Quoted(s) | ExprKind::Symbol(s) = &p.kind {
            if s.is_empty() {
                return err(span, "log prefix must have a minimum length of 1 character");
            }
            if s.len() >= 128 {
                return err(span, "log prefix is too long");
            }
        }
    }
    Ok(())
}

/// The largest value an expression can produce, for the 16-bit queue number.
fn max_value(e: &Expr) -> Option<u128> {
    match &e.kind {
        ExprKind::Const(_) => const_int(e),
        ExprKind::Range(_, b) => const_int(b),
        ExprKind::Numgen {
            modulus, offset, ..
        }
        | ExprKind::Hash {
            modulus, offset, ..
        } => Some(*offset as u128 + (*modulus as u128).saturating_sub(1)),
        _ => None,
    }
}

/// The queue number: a number or range after `num`, also a number generator, a hash or a
/// map after `to`. A fanout spreads over a range.
pub fn check_queue(num: &Expr, flags: &[String]) -> Result<()> {
    match &num.kind {
        ExprKind::Const(_)
        | ExprKind::Range(..)
        | ExprKind::Numgen { .. }
        | ExprKind::Hash { .. }
        | ExprKind::Map(..) => {}
        _ => return err(
            num.span,
            "syntax error, unexpected queue number: expecting a number, range, numgen, hash or map",
        ),
    }
    if flags.iter().any(|f| f == "fanout") && !matches!(num.kind, ExprKind::Range(..)) {
        return err(num.span, "fanout requires a range to be specified");
    }
    if max_value(num).is_some_and(|m| m > u16::MAX as u128) {
        return err(
            num.span,
            format!("queue expression max value exceeds {}", u16::MAX),
        );
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::print::ListOpts;
    use crate::ruleset::{load_str, LoadOpts};

    /// Loads one rule into a filter chain of `family` and lists it as `nft -s -p` would.
    pub(crate) fn rule_listing(family: &str, rule: &str) -> Result<String, String> {
        let hook = if family == "netdev" {
            "ingress device lo"
        } else {
            "input"
        };
        rule_listing_in(
            family,
            &format!("type filter hook {hook} priority 0;"),
            rule,
        )
    }

    /// Same in a chain of the given configuration (`type nat hook postrouting priority 0;`).
    pub(crate) fn rule_listing_in(family: &str, chain: &str, rule: &str) -> Result<String, String> {
        let text = format!("add table {family} t\nadd chain {family} t c {{ {chain} }}\nadd rule {family} t c {rule}\n");
        let rs = load_str("test.nft", &text, &LoadOpts::default()).map_err(|e| e.rendered)?;
        let o = ListOpts {
            stateless: true,
            dt: crate::datatype::PrintOpts {
                numeric_proto: true,
                ..Default::default()
            },
        };
        let out = crate::print::ruleset(&rs, &o);
        let mut body = vec![];
        let mut inside = false;
        for l in out.lines() {
            let s = l.trim();
            if s.starts_with("chain c ") {
                inside = true;
                continue;
            }
            if inside {
                if s == "}" {
                    break;
                }
                if s.starts_with("type ") || s.is_empty() {
                    continue;
                }
                body.push(s.to_string());
            }
        }
        Ok(body.join(" "))
    }

    fn ok(family: &str, rule: &str, want: &str) {
        assert_eq!(
            rule_listing(family, rule).as_deref(),
            Ok(want),
            "{family}: {rule}"
        );
    }

    fn fails(family: &str, rule: &str) {
        assert!(
            rule_listing(family, rule).is_err(),
            "{family}: {rule} should fail"
        );
    }

    #[test]
    fn reject_defaults_per_family() {
        ok("ip", "reject", "reject");
        ok("ip", "reject with icmp 3", "reject");
        ok(
            "ip",
            "reject with icmp host-unreachable",
            "reject with icmp host-unreachable",
        );
        ok(
            "ip6",
            "reject with icmpv6 3",
            "reject with icmpv6 addr-unreachable",
        );
        ok("inet", "reject", "reject");
        ok("inet", "reject with icmpx port-unreachable", "reject");
        ok(
            "inet",
            "reject with icmpx 3",
            "reject with icmpx admin-prohibited",
        );
        ok(
            "inet",
            "meta nfproto ipv4 reject",
            "reject with icmp port-unreachable",
        );
        ok(
            "inet",
            "reject with icmp port-unreachable",
            "reject with icmp port-unreachable",
        );
        ok(
            "bridge",
            "ether type ip6 reject",
            "reject with icmpv6 port-unreachable",
        );
        ok(
            "netdev",
            "meta protocol ip reject with icmp host-unreachable",
            "reject with icmp host-unreachable",
        );
        ok(
            "inet",
            "meta nfproto ipv6 reject with icmpx admin-prohibited",
            "meta nfproto ipv6 reject with icmpx admin-prohibited",
        );
    }

    #[test]
    fn reject_tcp_reset_dependency() {
        ok(
            "inet",
            "mark 12345 reject with tcp reset",
            "meta l4proto 6 meta mark 0x00003039 reject with tcp reset",
        );
        ok(
            "ip",
            "mark 0x80000000 reject with tcp reset",
            "meta mark 0x80000000 reject with tcp reset",
        );
        ok(
            "bridge",
            "ether type vlan reject with tcp reset",
            "meta l4proto 6 ether type 8021q reject with tcp reset",
        );
        ok(
            "inet",
            "tcp dport 22 reject with tcp reset",
            "tcp dport 22 reject with tcp reset",
        );
    }

    #[test]
    fn log_options() {
        ok("ip", "log level warn", "log");
        ok(
            "ip",
            "log group 2 prefix \"x: \"",
            "log prefix \"x: \" group 2",
        );
        fails("ip", "log level emerg group 2");
        fails("ip", "log level audit prefix \"foo\"");
        fails("ip", "log flags all group 2");
    }

    #[test]
    fn queue_numbers() {
        ok("ip", "queue", "queue to 0");
        ok(
            "ip",
            "queue num 4-5 fanout bypass",
            "queue flags bypass,fanout to 4-5",
        );
        ok(
            "ip",
            "queue to symhash mod 65536",
            "queue to symhash mod 65536",
        );
        fails("ip", "queue to symhash mod 2 offset 65536");
        fails("ip", "queue flags fanout to symhash mod 65536");
        fails("ip", "queue num symhash mod 65536");
        fails("ip", "queue to oif");
        fails("ip", "queue num 65536");
    }

    const NAT: &str = "type nat hook postrouting priority 0;";

    fn nat_ok(family: &str, rule: &str, want: &str) {
        assert_eq!(
            rule_listing_in(family, NAT, rule).as_deref(),
            Ok(want),
            "{family}: {rule}"
        );
    }

    fn nat_fails(family: &str, rule: &str) {
        assert!(
            rule_listing_in(family, NAT, rule).is_err(),
            "{family}: {rule} should fail"
        );
    }

    #[test]
    fn nat_addresses() {
        nat_ok(
            "ip",
            "tcp dport 80-90 snat to 192.168.3.0-192.168.3.255",
            "tcp dport 80-90 snat to 192.168.3.0/24",
        );
        nat_ok(
            "ip",
            "tcp dport 81 dnat to 192.168.3.2-192.168.3.4:8080-8999",
            "tcp dport 81 dnat to 192.168.3.2-192.168.3.4:8080-8999",
        );
        nat_ok(
            "ip6",
            "tcp dport 80-90 dnat to [2001:838:35f:1::]-[2001:838:35f:2::]:80-100",
            "tcp dport 80-90 dnat to [2001:838:35f:1::]-[2001:838:35f:2::]:80-100",
        );
        nat_ok(
            "ip6",
            "dnat to [2001:838:35f:1::]/64",
            "dnat to 2001:838:35f:1::/64",
        );
        nat_ok(
            "ip6",
            "tcp dport 80 dnat to [2001:838:35f:1::]:80",
            "tcp dport 80 dnat to [2001:838:35f:1::]:80",
        );
        nat_ok(
            "ip",
            "dnat to ct mark map { 0x00000014 : 1.2.3.4 }",
            "dnat to ct mark map { 0x00000014 : 1.2.3.4 }",
        );
        nat_ok(
            "ip",
            "snat ip to ip saddr map { 10.141.12.14 : 192.168.2.0/24 }",
            "snat ip to ip saddr map { 10.141.12.14 : 192.168.2.0/24 }",
        );
        nat_ok(
            "ip",
            "ip daddr 192.168.0.1 dnat ip to tcp dport map { 443 : 10.141.10.4 . 8443 }",
            "ip daddr 192.168.0.1 dnat ip to tcp dport map { 443 : 10.141.10.4 . 8443 }",
        );
        nat_ok(
            "ip",
            "udp dport 53 masquerade persistent,fully-random,random",
            "udp dport 53 masquerade random,fully-random,persistent",
        );
    }

    #[test]
    fn nat_family_in_inet() {
        nat_ok(
            "inet",
            "tcp dport 81 ip saddr 10.1.1.1 snat to 192.168.3.2",
            "tcp dport 81 ip saddr 10.1.1.1 snat ip to 192.168.3.2",
        );
        nat_ok(
            "inet",
            "ip6 saddr ::1 dnat ::99",
            "ip6 saddr ::1 dnat ip6 to ::99",
        );
        nat_ok(
            "inet",
            "meta l4proto tcp dnat to :80",
            "meta l4proto 6 dnat to :80",
        );
        nat_fails("inet", "snat to 192.168.3.2");
        nat_fails("inet", "ip6 daddr dead::beef dnat to 10.1.2.3");
        nat_fails("inet", "snat ip6 to 192.168.3.2");
    }

    #[test]
    fn nat_needs_transport_for_ports() {
        nat_fails("ip", "redirect to :1234");
        nat_fails(
            "ip",
            "snat ip to ip saddr map { 10.141.11.4 : 192.168.2.3 . 80 }",
        );
        nat_ok(
            "ip",
            "redirect to :tcp dport map { 22 : 8000, 80 : 8080 }",
            "redirect to :tcp dport map { 22 : 8000, 80 : 8080 }",
        );
        nat_ok(
            "ip",
            "ip protocol tcp redirect to :100-200",
            "ip protocol 6 redirect to :100-200",
        );
    }

    #[test]
    fn terminal_statements_end_the_rule() {
        nat_fails("ip", "tcp sport 22 masquerade accept");
        fails("ip", "accept counter");
        fails("ip", "reject counter");
        ok("ip", "continue counter", "continue counter");
        ok("ip", "counter accept", "counter accept");
    }

    #[test]
    fn tproxy_family_and_transport() {
        ok(
            "ip6",
            "meta l4proto 6 tproxy to [2001:db8::1]",
            "meta l4proto 6 tproxy to [2001:db8::1]",
        );
        ok(
            "ip",
            "meta l4proto 17 tproxy ip to 192.0.2.1",
            "meta l4proto 17 tproxy to 192.0.2.1",
        );
        ok(
            "inet",
            "meta l4proto 17 tproxy ip6 to [2001:db8::1]:50080",
            "meta l4proto 17 tproxy ip6 to [2001:db8::1]:50080",
        );
        fails("ip", "tproxy to 192.0.2.1");
        fails("inet", "meta l4proto 17 tproxy to 192.0.2.1");
        fails("inet", "ip protocol 6 tproxy ip6 to [2001:db8::1]");
    }

    #[test]
    fn dup_and_fwd_targets() {
        ok("netdev", "dup to \"lo\"", "dup to \"lo\"");
        ok(
            "ip",
            "dup to 192.168.2.1 device \"lo\"",
            "dup to 192.168.2.1 device \"lo\"",
        );
        ok(
            "netdev",
            "fwd ip to 192.168.2.200 device \"lo\"",
            "fwd ip to 192.168.2.200 device \"lo\"",
        );
        fails("ip", "fwd to \"lo\"");
    }

    #[test]
    fn mangle_values() {
        ok("ip", "ct event set new,destroy", "ct event set new,destroy");
        ok(
            "ip",
            "ct event set new | related | destroy | label",
            "ct event set new,related,destroy,label",
        );
        fails("ip", "ct mark set {0x11333, 0x11}");
        fails("ip", "meta mark set {0xffff, 0xcc}");
        fails("bridge", "meta broute set 1");
        fails("bridge", "meta ibrhwaddr set 00:1a:2b:3c:4d:5e");
        ok("ip", "meta nftrace set 1", "meta nftrace set 1");
    }

    #[test]
    fn object_references() {
        let pre = "add table ip t\nadd chain ip t c { type filter hook input priority 0; }\nadd counter ip t cnt1\n";
        let load = |rule: &str| {
            load_str(
                "test.nft",
                &format!("{pre}add rule ip t c {rule}\n"),
                &LoadOpts::default(),
            )
            .map(|_| ())
            .map_err(|e| e.rendered)
        };
        assert!(load("counter name \"cnt1\"").is_ok());
        assert!(load("counter name tcp dport map { 443 : \"cnt1\" }").is_ok());
        assert!(load("counter name \"cnt3\"").is_err());
        assert!(load("counter name tcp dport map { 443 : \"cnt3\" }").is_err());
        assert!(load("quota name \"cnt1\"").is_err());
    }

    #[test]
    fn statements_keep_protocol_matches_before_them() {
        ok(
            "ip",
            "ip protocol tcp meta mark set 1 tcp dport 22",
            "ip protocol 6 meta mark set 0x00000001 tcp dport 22",
        );
        ok(
            "inet",
            "meta nfproto ipv4 counter ip saddr 1.2.3.4",
            "meta nfproto ipv4 counter ip saddr 1.2.3.4",
        );
        ok(
            "ip",
            "ip protocol tcp tcp dport 22 counter",
            "tcp dport 22 counter",
        );
    }

    #[test]
    fn tunnel_objects() {
        let text = "table netdev x {\n\ttunnel t1 {\n\t\tttl 10; id 7\n\t\tip saddr 192.168.2.10\n\t\tsport 0\n\t\tgeneve {\n\t\t\tclass 0x10 opt-type 0x2 data \"0x0a0b\"\n\t\t}\n\t}\n\tchain c {\n\t\ttunnel name \"t1\"\n\t}\n}\n";
        let rs = load_str("test.nft", text, &LoadOpts::default())
            .map_err(|e| e.rendered)
            .unwrap();
        let out = crate::print::ruleset(&rs, &Default::default());
        assert!(out.contains("\ttunnel t1 {\n\t\tid 7\n\t\tip saddr 192.168.2.10\n\t\tttl 10\n\t\tgeneve {\n\t\t\tclass 0x10 opt-type 0x2 data \"0xab\"\n\t\t}\n\t}\n"), "{out}");
        assert!(out.contains("\t\ttunnel name \"t1\"\n"), "{out}");
    }

    #[test]
    fn tunnel_object_json() {
        let text = "table netdev x {\n\ttunnel v {\n\t\tid 20\n\t\tip saddr 192.168.2.20\n\t\tvxlan {\n\t\t\tgbp 200\n\t\t}\n\t}\n\ttunnel e {\n\t\tid 1\n\t\terspan {\n\t\t\tversion 2\n\t\t\tdirection egress\n\t\t\tid 10\n\t\t}\n\t}\n}\n";
        let rs = load_str("test.nft", text, &LoadOpts::default())
            .map_err(|e| e.rendered)
            .unwrap();
        let j = crate::json::ruleset_to_json(&rs, &Default::default()).to_string();
        assert!(j.contains("\"src-ipv4\":\"192.168.2.20\""), "{j}");
        assert!(
            j.contains("\"type\":\"vxlan\",\"tunnel\":{\"gbp\":200}"),
            "{j}"
        );
        assert!(j.contains("\"dir\":\"egress\""), "{j}");
        let out = crate::print::ruleset(&rs, &Default::default());
        assert!(
            out.contains(
                "\t\terspan {\n\t\t\tversion 2\n\t\t\tdirection egress\n\t\t\tid 10\n\t\t}\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn reject_conflicts() {
        fails(
            "inet",
            "meta nfproto ipv6 reject with icmp host-unreachable",
        );
        fails("inet", "meta l4proto udp reject with tcp reset");
        fails("bridge", "ether type arp reject");
        fails(
            "bridge",
            "ether type arp reject with icmpx admin-prohibited",
        );
        fails("ip", "reject with icmpv6 no-route");
        fails("ip", "reject with icmpx host-unreachable");
        fails("arp", "reject");
    }
}
