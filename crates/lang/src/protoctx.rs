//! The protocol context of a rule: which header each layer holds at each point of the rule,
//! and the conflicts nft reports when a later match needs another one.
//!
//! nft walks a rule's statements in order. A match on a protocol field (`ip protocol tcp`,
//! `meta l4proto { tcp, udp }`, `ether type ip6`, `meta nfproto ipv4`) fixes the header of
//! the layer above; a header field then either agrees with what the layer holds, or, if the
//! layer is still open, gets a dependency on the layer below (which must be able to carry
//! it). Every transport protocol seen is remembered: after `meta l4proto { tcp, udp }` the
//! transport header is ambiguous and no transport field can be matched.

use crate::ast::*;
use crate::error::{Error, Result, Span};
use crate::eval::const_int;
use crate::proto;

const LL: usize = 0;
const NET: usize = 1;
const TH: usize = 2;

/// A header descriptor: a protocol keyword, or one of nft's placeholders (`inet` for the
/// l2 of inet tables, `netdev` for that of netdev tables, `inet-service` for "some transport
/// protocol", `unknown` for a protocol number nft has no header for).
type Desc = &'static str;

struct Pctx {
    family: Family,
    desc: [Option<Desc>; 3],
    /// Distinct transport protocols the rule has selected so far.
    th_seen: Vec<Desc>,
}

fn layer_name(base: usize) -> &'static str {
    match base {
        LL => "link layer",
        NET => "network layer",
        _ => "transport layer",
    }
}

/// The protocol `upper` at the layer above `lower`, as nft's protocol links have it.
fn links(lower: Desc, upper: Desc) -> bool {
    match lower {
        "ether" | "vlan" | "netdev" => matches!(upper, "ip" | "ip6" | "arp" | "vlan"),
        "inet" => matches!(upper, "ip" | "ip6"),
        "ip" | "ip6" | "inet-service" => {
            matches!(
                upper,
                "icmp"
                    | "igmp"
                    | "icmpv6"
                    | "tcp"
                    | "udp"
                    | "udplite"
                    | "sctp"
                    | "dccp"
                    | "ah"
                    | "esp"
                    | "comp"
                    | "gre"
            )
        }
        _ => false,
    }
}

fn static_desc(name: &str) -> Option<Desc> {
    proto::protocol(name).map(|p| p.name)
}

/// The header a protocol number selects above `lower` (`meta l4proto`, `ip protocol`...).
fn upper_of(lower: &str, num: u128) -> Option<Desc> {
    let num = u32::try_from(num).ok()?;
    proto::upper_protocol(lower, num).map(|p| p.name)
}

fn layer_of(name: &str) -> Option<usize> {
    match proto::protocol(name)?.layer {
        proto::Layer::Link => Some(LL),
        proto::Layer::Network => Some(NET),
        proto::Layer::Transport => Some(TH),
        proto::Layer::Inner => None,
    }
}

fn conflict<T>(span: Span, a: &str, b: &str) -> Result<T> {
    Err(Error::new(
        span,
        format!("conflicting protocols specified: {a} vs. {b}"),
    ))
}

impl Pctx {
    fn new(family: Family) -> Pctx {
        let mut desc = [None; 3];
        match family {
            Family::Ip => desc[NET] = Some("ip"),
            Family::Ip6 => desc[NET] = Some("ip6"),
            Family::Arp => desc[NET] = Some("arp"),
            Family::Inet => desc[LL] = Some("inet"),
            Family::Bridge => desc[LL] = Some("ether"),
            Family::Netdev => desc[LL] = Some("netdev"),
        }
        Pctx {
            family,
            desc,
            th_seen: vec![],
        }
    }

    /// The layer the family's hook delivers: link layer for bridge, netdev and inet (whose
    /// l2 is a placeholder), network layer for the others.
    fn hook_layer(&self) -> usize {
        match self.family {
            Family::Ip | Family::Ip6 | Family::Arp => NET,
            _ => LL,
        }
    }

    fn set(&mut self, base: usize, d: Desc) {
        if base == TH && !self.th_seen.contains(&d) {
            self.th_seen.push(d);
        }
        self.desc[base] = Some(d);
    }

    /// A match the rule adds for `upper`, on the protocol field of `lower`.
    fn add_dependency(&mut self, span: Span, lower: Desc, upper: Desc, base: usize) -> Result<()> {
        if !links(lower, upper) {
            return conflict(span, lower, upper);
        }
        self.set(base, upper);
        Ok(())
    }

    /// A header field of `p` at layer `base` is read or written.
    fn header(&mut self, span: Span, p: Desc, base: usize) -> Result<()> {
        let Some(cur) = self.desc[base] else {
            return self.open_layer(span, p, base);
        };
        if base == TH && self.th_seen.len() > 1 {
            let other = self
                .th_seen
                .iter()
                .find(|d| **d != p)
                .copied()
                .unwrap_or(cur);
            return conflict(span, other, p);
        }
        if cur == p || base == LL {
            // Link-layer headers stack (ether, vlan, vlan): nft inserts the type match
            // that leads from one to the next.
            if base == LL && cur != p {
                self.desc[LL] = Some(p);
            }
            return Ok(());
        }
        Err(Error::new(
            span,
            format!(
                "conflicting {} protocols specified: {cur} vs. {p}",
                layer_name(base)
            ),
        ))
    }

    /// The layer holds nothing yet: nft adds a match on the layer below.
    fn open_layer(&mut self, span: Span, p: Desc, base: usize) -> Result<()> {
        if base < self.hook_layer() {
            // a link-layer header seen from a network-layer hook: `meta iiftype`
            self.desc[LL] = Some(p);
            return Ok(());
        }
        let lower = match self.desc[base - 1] {
            Some(d) => d,
            None => {
                // transport header with no network protocol known (inet, bridge, netdev)
                match p {
                    "icmp" | "igmp" | "icmpv6" => {
                        let net = if p == "icmpv6" { "ip6" } else { "ip" };
                        let ll = self.desc[LL].unwrap_or("inet");
                        self.add_dependency(span, ll, net, NET)?;
                        net
                    }
                    _ => "inet-service",
                }
            }
        };
        self.add_dependency(span, lower, p, base)
    }

    /// An IPv6 extension header or IPv4 option needs the network header `net`.
    fn exthdr(&mut self, span: Span, net: Desc) -> Result<()> {
        match self.desc[NET] {
            Some(d) if d == net => Ok(()),
            Some(d) => Err(Error::new(span, format!("cannot use exthdr with {d}"))),
            None => {
                let ll = self.desc[LL].unwrap_or("inet");
                self.add_dependency(span, ll, net, NET)
            }
        }
    }

    fn expr(&mut self, e: &Expr) -> Result<()> {
        match &e.kind {
            ExprKind::Payload { proto: p, .. } => {
                if p == "th" || proto::split_inner(p).is_some() {
                    return Ok(());
                }
                let (Some(d), Some(base)) = (static_desc(p), layer_of(p)) else {
                    return Ok(());
                };
                if d == "gretap" {
                    return Ok(());
                }
                self.header(e.span, d, base)
            }
            ExprKind::Exthdr { .. } => self.exthdr(e.span, "ip6"),
            ExprKind::IpOpt { .. } => self.exthdr(e.span, "ip"),
            ExprKind::Meta(k) if k == "nfproto" && self.family != Family::Inet => Err(Error::new(
                e.span,
                "meta nfproto is only useful in the inet family",
            )),
            ExprKind::Ct {
                key,
                family: Some(f),
                ..
            } if matches!(key.as_str(), "saddr" | "daddr") => {
                let want = if f == "ip" { "ip" } else { "ip6" };
                match self.desc[NET] {
                    Some(cur) if (cur == "ip" || cur == "ip6") && cur != want => {
                        conflict(e.span, cur, want)
                    }
                    _ => Ok(()),
                }
            }
            ExprKind::Concat(v) | ExprKind::List(v) | ExprKind::Set(v) => {
                v.iter().try_for_each(|x| self.expr(x))
            }
            ExprKind::Binop(_, a, b)
            | ExprKind::Map(a, b)
            | ExprKind::Mapping(a, b)
            | ExprKind::Range(a, b)
            | ExprKind::Masked(a, b) => {
                self.expr(a)?;
                self.expr(b)
            }
            ExprKind::Prefix(a, _) | ExprKind::Elem(a, _) => self.expr(a),
            ExprKind::Hash { expr: Some(a), .. } => self.expr(a),
            _ => Ok(()),
        }
    }

    /// A match `left == right` on a protocol field selects the header above.
    fn select(&mut self, left: &Expr, right: &Expr) {
        let values: Vec<u128> = match &right.kind {
            ExprKind::Set(v) => v
                .iter()
                .filter_map(|x| match &x.kind {
                    ExprKind::Elem(k, _) => const_int(k),
                    _ => const_int(x),
                })
                .collect(),
            _ => const_int(right).into_iter().collect(),
        };
        for v in values {
            match &left.kind {
                ExprKind::Payload { proto: p, field } => {
                    let lower = match (p.as_str(), field.as_str()) {
                        ("ether" | "vlan", "type") => self.desc[LL]
                            .filter(|d| matches!(*d, "ether" | "vlan"))
                            .unwrap_or("ether"),
                        ("ip", "protocol") | ("ip6", "nexthdr") => p.as_str(),
                        _ => return,
                    };
                    // numbers without a header of their own leave the context alone
                    if let Some(up) = upper_of(lower, v) {
                        if let Some(b) = layer_of(up) {
                            if b != LL {
                                self.set(b, up);
                            }
                        }
                    }
                }
                ExprKind::Meta(k) => match k.as_str() {
                    "l4proto" => {
                        let up = upper_of("inet-service", v).unwrap_or("unknown");
                        self.set(TH, up);
                    }
                    "nfproto" if self.family == Family::Inet => {
                        let up = upper_of("inet", v).unwrap_or("unknown");
                        self.set(NET, up);
                    }
                    "protocol" if matches!(self.family, Family::Bridge | Family::Netdev) => {
                        let up = upper_of("netdev", v).unwrap_or("unknown");
                        if up != "vlan" {
                            self.set(NET, up);
                        }
                    }
                    _ => return,
                },
                _ => return,
            }
        }
    }

    fn stmt(&mut self, st: &Stmt) -> Result<()> {
        match &st.kind {
            StmtKind::Match { left, op, right } => {
                self.expr(left)?;
                self.expr(right)?;
                if matches!(op, RelOp::Implicit | RelOp::Eq) {
                    self.select(left, right);
                }
                Ok(())
            }
            StmtKind::Vmap { key, map } => {
                self.expr(key)?;
                self.expr(map)
            }
            StmtKind::Set { key, value } => {
                self.expr(key)?;
                self.expr(value)
            }
            StmtKind::Dynset { key, data, .. } => {
                self.expr(key)?;
                if let Some(d) = data {
                    self.expr(d)?;
                }
                Ok(())
            }
            StmtKind::Nat(n) => {
                if let Some(a) = &n.addr {
                    self.expr(a)?;
                }
                if let Some(p) = &n.port {
                    self.expr(p)?;
                }
                Ok(())
            }
            StmtKind::ObjRef { name, .. } => self.expr(name),
            _ => Ok(()),
        }
    }
}

/// Reports the protocol conflicts nft finds in an evaluated rule.
pub fn check_rule(family: Family, rule: &Rule) -> Result<()> {
    let mut pc = Pctx::new(family);
    rule.stmts.iter().try_for_each(|st| pc.stmt(st))
}

/// Conntrack addresses and the route's next hop written without `ip`/`ip6` take the network
/// protocol the statements before them selected (`meta nfproto ipv4 ct original saddr ...`
/// is `ct original ip saddr`). Inside a concatenation or as a map key nft wants it written.
pub fn fill_network(family: Family, stmts: &mut [Stmt], i: usize) -> Result<()> {
    let needs = |e: &Expr| {
        matches!(&e.kind, ExprKind::Ct { key, family: None, .. } if key == "saddr" || key == "daddr")
            || matches!(&e.kind, ExprKind::Rt { key, family: None } if key == "nexthop")
    };
    let mut found = false;
    visit(&stmts[i], &mut |e, _| found |= needs(e));
    if !found {
        return Ok(());
    }
    let mut pc = Pctx::new(family);
    for st in &stmts[..i] {
        // conflicts are reported once the whole rule is evaluated
        let _ = pc.stmt(st);
    }
    let net = pc.desc[NET].filter(|d| *d == "ip" || *d == "ip6");
    let mut bad = None;
    visit(&stmts[i], &mut |e, nested| {
        if nested
            && bad.is_none()
            && matches!(&e.kind, ExprKind::Ct { key, family: None, .. } if key == "saddr" || key == "daddr")
        {
            bad = Some(e.span);
        }
    });
    if let Some(span) = bad {
        return Err(Error::new(
            span,
            "specify either ip or ip6 for address matching",
        ));
    }
    let Some(net) = net else { return Ok(()) };
    visit_mut(&mut stmts[i], &mut |e| match &mut e.kind {
        ExprKind::Ct {
            key,
            family: f @ None,
            ..
        } if key == "saddr" || key == "daddr" => *f = Some(net.to_string()),
        ExprKind::Rt {
            key,
            family: f @ None,
        } if key == "nexthop" => *f = Some(net.to_string()),
        _ => {}
    });
    Ok(())
}

/// The expressions of a statement; `nested` is true inside concatenations and map keys.
fn visit(st: &Stmt, f: &mut dyn FnMut(&Expr, bool)) {
    fn go(e: &Expr, nested: bool, f: &mut dyn FnMut(&Expr, bool)) {
        f(e, nested);
        match &e.kind {
            ExprKind::Concat(v) => v.iter().for_each(|x| go(x, true, f)),
            ExprKind::Map(k, m) => {
                go(k, true, f);
                go(m, nested, f);
            }
            ExprKind::Binop(_, a, b) | ExprKind::Mapping(a, b) => {
                go(a, nested, f);
                go(b, nested, f);
            }
            ExprKind::Set(v) | ExprKind::List(v) => v.iter().for_each(|x| go(x, nested, f)),
            ExprKind::Elem(a, _) | ExprKind::Prefix(a, _) => go(a, nested, f),
            _ => {}
        }
    }
    for_each_top(st, &mut |e| go(e, false, f));
}

fn visit_mut(st: &mut Stmt, f: &mut dyn FnMut(&mut Expr)) {
    fn go(e: &mut Expr, f: &mut dyn FnMut(&mut Expr)) {
        f(e);
        match &mut e.kind {
            ExprKind::Concat(v) | ExprKind::Set(v) | ExprKind::List(v) => {
                v.iter_mut().for_each(|x| go(x, f))
            }
            ExprKind::Map(a, b) | ExprKind::Binop(_, a, b) | ExprKind::Mapping(a, b) => {
                go(a, f);
                go(b, f);
            }
            ExprKind::Elem(a, _) | ExprKind::Prefix(a, _) => go(a, f),
            _ => {}
        }
    }
    match &mut st.kind {
        StmtKind::Match { left, right, .. } => {
            go(left, f);
            go(right, f);
        }
        StmtKind::Vmap { key, map } => {
            go(key, f);
            go(map, f);
        }
        StmtKind::Set { key, value } => {
            go(key, f);
            go(value, f);
        }
        StmtKind::Nat(n) => {
            if let Some(a) = &mut n.addr {
                go(a, f);
            }
        }
        _ => {}
    }
}

fn for_each_top(st: &Stmt, f: &mut dyn FnMut(&Expr)) {
    match &st.kind {
        StmtKind::Match { left, right, .. } => {
            f(left);
            f(right);
        }
        StmtKind::Vmap { key, map } => {
            // the key of a verdict map is a map key
            if let ExprKind::Ct { .. } = key.kind {
                f(&Expr::new(ExprKind::Concat(vec![key.clone()]), key.span));
            } else {
                f(key);
            }
            f(map);
        }
        StmtKind::Set { key, value } => {
            f(key);
            f(value);
        }
        StmtKind::Nat(n) => {
            if let Some(a) = &n.addr {
                f(a);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::ruleset::{load_str, LoadOpts};

    fn check(family: &str, rule: &str) -> Result<(), String> {
        let text = format!("table {family} t {{\n chain c {{\n  {rule}\n }}\n}}\n");
        load_str("t.nft", &text, &LoadOpts::default())
            .map(|_| ())
            .map_err(|e| e.error.msg)
    }

    #[test]
    fn transport_conflicts() {
        for f in ["ip", "ip6", "inet", "bridge", "netdev"] {
            assert!(check(f, "tcp dport 1 udp dport 2").is_err(), "{f}");
            assert!(check(f, "meta l4proto udp tcp dport 1").is_err(), "{f}");
            assert!(
                check(f, "meta l4proto { tcp, udp } tcp dport 1").is_err(),
                "{f}"
            );
            assert!(check(f, "meta l4proto 99 tcp dport 1").is_err(), "{f}");
            assert!(check(f, "udp dport 1 tcp dport set 2").is_err(), "{f}");
            assert!(
                check(f, "meta l4proto { tcp, udp } th dport 1").is_ok(),
                "{f}"
            );
            assert!(check(f, "meta l4proto tcp tcp dport 1").is_ok(), "{f}");
            assert!(
                check(f, "ip protocol 99 tcp dport 1").is_ok() || f == "ip6",
                "{f}"
            );
        }
    }

    #[test]
    fn network_conflicts() {
        assert_eq!(
            check("inet", "meta nfproto ipv6 ip saddr 1.2.3.4").unwrap_err(),
            "conflicting network layer protocols specified: ip6 vs. ip"
        );
        assert!(check("inet", "ip saddr 1.2.3.4 ip6 saddr ::1").is_err());
        assert!(check("netdev", "meta protocol ip6 ip saddr 1.2.3.4").is_err());
        assert!(check("ip", "ether type ip6 ip saddr 1.2.3.4").is_err());
        assert!(check("ip", "ether type ip6 udp dport 67").is_ok());
        assert!(check("inet", "arp operation 1").is_err());
        assert!(check("bridge", "arp operation 1").is_ok());
        assert!(check("inet", "meta nfproto ipv6 ct original ip saddr 1.2.3.4").is_err());
    }

    #[test]
    fn addresses_take_the_network_protocol_before_them() {
        assert!(check("inet", "meta nfproto ipv4 ct original saddr 1.2.3.4").is_ok());
        assert!(check("inet", "ct original saddr 1.2.3.4").is_err());
        assert!(check("inet", "meta nfproto ipv6 ct original saddr 1.2.3.4").is_err());
        assert!(check(
            "ip",
            "ct original saddr . meta mark { 1.1.1.1 . 0x00000014 }"
        )
        .is_err());
        assert!(check(
            "ip",
            "meta mark set ct original daddr map { 1.1.1.1 : 0x00000011 }"
        )
        .is_err());
        assert!(check("inet", "meta nfproto ipv4 rt nexthop 192.168.0.1").is_ok());
        assert!(check("ip6", "rt nexthop 192.168.0.1").is_err());
    }

    #[test]
    fn icmp_in_either_ip_family() {
        assert!(check("ip6", "icmp type echo-request").is_ok());
        assert!(check("ip", "icmpv6 type nd-router-advert").is_ok());
        assert!(check("inet", "meta nfproto ipv6 icmp type echo-request").is_ok());
        assert!(check("inet", "icmp type echo-reply icmpv6 type echo-reply").is_err());
        assert!(check("arp", "meta l4proto icmp icmp type echo-reply").is_ok());
        assert!(check("arp", "icmp type echo-reply").is_err());
        assert!(check("arp", "th dport 1").is_ok());
    }

    #[test]
    fn exthdr_needs_ip6() {
        assert_eq!(
            check("ip", "hbh nexthdr 6").unwrap_err(),
            "cannot use exthdr with ip"
        );
        assert!(check("arp", "frag more-fragments 1").is_err());
        assert!(check("inet", "hbh nexthdr 6 ip saddr 1.2.3.4").is_err());
        assert!(check("bridge", "hbh nexthdr 6").is_ok());
        assert_eq!(
            check("ip6", "ip option rr exists").unwrap_err(),
            "cannot use exthdr with ip6"
        );
    }

    #[test]
    fn nfproto_only_in_inet() {
        for f in ["ip", "ip6", "bridge", "netdev", "arp"] {
            assert_eq!(
                check(f, "meta nfproto ipv4").unwrap_err(),
                "meta nfproto is only useful in the inet family"
            );
        }
        assert!(check("inet", "meta nfproto ipv4 udp dport 67").is_ok());
    }
}
