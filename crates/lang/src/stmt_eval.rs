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
        if let StmtKind::Match { left, op: RelOp::Implicit | RelOp::Eq, right } = &st.kind {
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
                ExprKind::Payload { proto: p, field } if (p == "ether" || p == "vlan") && field == "type" => {
                    k.l3 = l3_of_ethertype(v);
                    k.l3_dep = Some(i);
                }
                ExprKind::Meta(m) if m == "l4proto" => {
                    k.l4 = Some(v as u8);
                    k.l4_dep = Some(i);
                }
                ExprKind::Payload { proto: p, field } if (p == "ip" && field == "protocol") || (p == "ip6" && field == "nexthdr") => {
                    k.l4 = Some(v as u8);
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
        let Some(pr) = proto::protocol(p) else { continue };
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
    Stmt { kind: StmtKind::Match { left, op: RelOp::Implicit, right }, span }
}

/// The match that pins the network protocol `l3` in this family.
fn l3_dependency(ctx: &Ctx, l3: &str, span: Span) -> Option<Stmt> {
    let eth = match l3 {
        "ip" => 0x0800,
        "ip6" => 0x86dd,
        _ => return None,
    };
    Some(match ctx.family {
        Family::Inet => dep_match(ctx, ExprKind::Meta("nfproto".into()), if l3 == "ip" { 2 } else { 10 }, span),
        Family::Bridge => dep_match(ctx, ExprKind::Payload { proto: "ether".into(), field: "type".into() }, eth, span),
        Family::Netdev => dep_match(ctx, ExprKind::Meta("protocol".into()), eth, span),
        _ => return None,
    })
}

/// Statement-level evaluation that needs the whole rule, run after the per-statement pass.
pub fn postprocess_rule(ctx: &Ctx, rule: &mut Rule) -> Result<()> {
    let mut i = 0;
    while i < rule.stmts.len() {
        if matches!(rule.stmts[i].kind, StmtKind::Reject(_)) {
            i = eval_reject(ctx, rule, i)?;
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
    RejectKind::Icmp { family: family.into(), code: mk_const(dt, 8, code, span) }
}

/// Evaluates the reject at `i`: picks the ICMP variant for `reject` alone, checks it against
/// the family and the protocols matched before, adds the dependency it needs, and removes the
/// one listing would fold into it. Returns the reject's new index.
fn eval_reject(ctx: &Ctx, rule: &mut Rule, mut i: usize) -> Result<usize> {
    let span = rule.stmts[i].span;
    let known = known_protocols(ctx, &rule.stmts[..i]);
    let StmtKind::Reject(kind) = &mut rule.stmts[i].kind else { return Ok(i) };
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
    let conflict = |l3: &str, f: &str| (l3 == "ip" && f == "icmpv6") || (l3 == "ip6" && f == "icmp");
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
            None if known.l4.is_none() => dep = Some(dep_match(ctx, ExprKind::Meta("l4proto".into()), 6, span)),
            Some(f) if known.l3.is_none() => dep = l3_dependency(ctx, if f == "icmp" { "ip" } else { "ip6" }, span),
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
pub fn reject_text(kind: &RejectKind, family: Family, code_text: impl Fn(&Expr) -> String) -> String {
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
                    ExprKind::Const(Const { val: Val::Int(v), .. }) => v.to_string(),
                    _ => code_text(code),
                },
            };
            format!("reject with {f} {txt}")
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::print::ListOpts;
    use crate::ruleset::{load_str, LoadOpts};

    /// Loads one rule into a filter chain of `family` and lists it as `nft -s -p` would.
    pub(crate) fn rule_listing(family: &str, rule: &str) -> Result<String, String> {
        let hook = if family == "netdev" { "ingress device lo" } else { "input" };
        let text = format!("add table {family} t\nadd chain {family} t c {{ type filter hook {hook} priority 0; }}\nadd rule {family} t c {rule}\n");
        let rs = load_str("test.nft", &text, &LoadOpts::default()).map_err(|e| e.rendered)?;
        let o = ListOpts { stateless: true, dt: crate::datatype::PrintOpts { numeric_proto: true, ..Default::default() } };
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
        assert_eq!(rule_listing(family, rule).as_deref(), Ok(want), "{family}: {rule}");
    }

    fn fails(family: &str, rule: &str) {
        assert!(rule_listing(family, rule).is_err(), "{family}: {rule} should fail");
    }

    #[test]
    fn reject_defaults_per_family() {
        ok("ip", "reject", "reject");
        ok("ip", "reject with icmp 3", "reject");
        ok("ip", "reject with icmp host-unreachable", "reject with icmp host-unreachable");
        ok("ip6", "reject with icmpv6 3", "reject with icmpv6 addr-unreachable");
        ok("inet", "reject", "reject");
        ok("inet", "reject with icmpx port-unreachable", "reject");
        ok("inet", "reject with icmpx 3", "reject with icmpx admin-prohibited");
        ok("inet", "meta nfproto ipv4 reject", "reject with icmp port-unreachable");
        ok("inet", "reject with icmp port-unreachable", "reject with icmp port-unreachable");
        ok("bridge", "ether type ip6 reject", "reject with icmpv6 port-unreachable");
        ok("netdev", "meta protocol ip reject with icmp host-unreachable", "reject with icmp host-unreachable");
        ok("inet", "meta nfproto ipv6 reject with icmpx admin-prohibited", "meta nfproto ipv6 reject with icmpx admin-prohibited");
    }

    #[test]
    fn reject_tcp_reset_dependency() {
        ok("inet", "mark 12345 reject with tcp reset", "meta l4proto 6 meta mark 0x00003039 reject with tcp reset");
        ok("ip", "mark 0x80000000 reject with tcp reset", "meta mark 0x80000000 reject with tcp reset");
        ok("bridge", "ether type vlan reject with tcp reset", "meta l4proto 6 ether type 8021q reject with tcp reset");
        ok("inet", "tcp dport 22 reject with tcp reset", "tcp dport 22 reject with tcp reset");
    }

    #[test]
    fn reject_conflicts() {
        fails("inet", "meta nfproto ipv6 reject with icmp host-unreachable");
        fails("inet", "meta l4proto udp reject with tcp reset");
        fails("bridge", "ether type arp reject");
        fails("bridge", "ether type arp reject with icmpx admin-prohibited");
        fails("ip", "reject with icmpv6 no-route");
        fails("ip", "reject with icmpx host-unreachable");
        fails("arp", "reject");
    }
}
