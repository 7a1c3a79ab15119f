//! The evaluator: what nft does between parsing and listing. It types every expression,
//! resolves symbols against the type they meet (`ssh` after `tcp dport` is 22), folds constant
//! arithmetic, rewrites forms the kernel stores differently (`mark 0xff00/8` is a masked
//! compare), checks families and hooks, and drops or adds the protocol dependencies that nft
//! would print.

use std::collections::HashMap;

use crate::ast::*;
use crate::datatype::{Dt, Val};
use crate::error::{Error, Result, Span};
use crate::proto;

/// What the evaluator needs to know about a named set of the same table.
#[derive(Clone, Debug)]
pub struct SetInfo {
    pub key: Vec<(Dt, u32)>,
    pub data: Option<(Dt, u32)>,
    pub is_map: bool,
    pub interval: bool,
    pub obj_map: Option<String>,
    /// Map values are intervals (`: interval TYPE`).
    pub data_interval: bool,
    /// Number of fields in the map value (2 for `ipv4_addr . inet_service`).
    pub data_fields: usize,
}

pub struct Ctx<'a> {
    pub family: Family,
    pub hook: Option<&'a str>,
    pub chain_type: Option<&'a str>,
    pub sets: &'a HashMap<String, SetInfo>,
    pub flowtables: &'a [String],
    pub chains: &'a [String],
    /// Evaluating a set's `typeof` key: only the key's type matters, not where it may be read.
    pub key_only: bool,
}

fn err<T>(span: Span, msg: impl Into<String>) -> Result<T> {
    Err(Error::new(span, msg))
}

pub fn type_bits(dt: Dt) -> u32 {
    match dt.bits() {
        0 => match dt {
            Dt::IfName => 128,
            Dt::String => 0,
            _ => 0,
        },
        b => b,
    }
}

/// The type and width of a selector.
pub fn selector_type(ctx: &Ctx, e: &Expr) -> Result<(Dt, u32)> {
    match &e.kind {
        ExprKind::Payload { proto: p, field } if proto::split_inner(p).is_some() => {
            let (tunnel, inner) = proto::split_inner(p).unwrap_or_default();
            if !proto::tunnel_carries(tunnel, inner) {
                return err(e.span, format!("{tunnel} does not carry {inner} headers"));
            }
            let f = proto::payload_field(inner, field)
                .ok_or_else(|| Error::new(e.span, format!("unknown {inner} field {field}")))?;
            Ok((f.dt, f.bits))
        }
        ExprKind::Payload { proto: p, field } => {
            let f = proto::payload_field(p, field)
                .ok_or_else(|| Error::new(e.span, format!("unknown {p} field {field}")))?;
            Ok((if f.hex { Dt::XInteger } else { f.dt }, f.bits))
        }
        ExprKind::RawPayload { len, .. } => {
            if *len == 0 || *len > 128 {
                return err(e.span, "raw payload length must be between 1 and 128 bits");
            }
            Ok((Dt::XInteger, *len))
        }
        ExprKind::Meta(k) => {
            let m = proto::meta_key(k)
                .ok_or_else(|| Error::new(e.span, format!("unknown meta key {k}")))?;
            // A set's `typeof` only borrows the key's type (nft accepts `typeof meta ibrpvid` in
            // any family); rules, which always evaluate with their table's chains known, may
            // only read bridge keys in bridge tables.
            let in_rule = !ctx.chains.is_empty();
            if in_rule
                && matches!(
                    m.name,
                    "ibrname" | "obrname" | "ibrpvid" | "ibrvproto" | "ibrhwaddr" | "broute"
                )
                && ctx.family != Family::Bridge
            {
                return err(
                    e.span,
                    format!("meta {} is only valid in the bridge family", m.name),
                );
            }
            Ok((m.dt, if m.bits == 0 { type_bits(m.dt) } else { m.bits }))
        }
        ExprKind::Ct { key, dir, family } => {
            let c = proto::ct_key(key)
                .ok_or_else(|| Error::new(e.span, format!("unknown ct key {key}")))?;
            match c.dir {
                proto::CtDirUse::None if dir.is_some() => {
                    return err(e.span, format!("ct {key} does not take a direction"))
                }
                proto::CtDirUse::Required
                    if dir.is_none()
                        && !matches!(
                            key.as_str(),
                            "l3proto" | "protocol" | "proto-src" | "proto-dst"
                        ) =>
                {
                    return err(e.span, format!("missing direction for ct {key}"));
                }
                _ => {}
            }
            if matches!(key.as_str(), "saddr" | "daddr") {
                let fam = family.as_deref().or(match ctx.family {
                    Family::Ip => Some("ip"),
                    Family::Ip6 => Some("ip6"),
                    _ => None,
                });
                return match fam {
                    Some("ip") => Ok((Dt::Ipv4Addr, 32)),
                    Some("ip6") => Ok((Dt::Ipv6Addr, 128)),
                    _ => err(
                        e.span,
                        format!(
                            "Cannot determine network protocol, use ct {} ip {key}",
                            dir.as_deref().unwrap_or("original")
                        ),
                    ),
                };
            }
            Ok((c.dt, if c.bits == 0 { type_bits(c.dt) } else { c.bits }))
        }
        ExprKind::Fib { flags, result } => Ok(match result.as_str() {
            _ if !flags.iter().any(|f| f == "saddr" || f == "daddr") => {
                return err(e.span, "fib: need either saddr or daddr")
            }
            _ if flags.iter().any(|f| f == "saddr") && flags.iter().any(|f| f == "daddr") => {
                return err(e.span, "fib: saddr and daddr are mutually exclusive")
            }
            _ if flags.iter().any(|f| f == "iif") && flags.iter().any(|f| f == "oif") => {
                return err(e.span, "fib: iif and oif are mutually exclusive")
            }
            _ if flags
                .iter()
                .any(|f| !matches!(f.as_str(), "saddr" | "daddr" | "mark" | "iif" | "oif")) =>
            {
                return err(e.span, "unknown fib flag")
            }
            // the kernel looks up an address type only for the input interface
            "type" if flags.iter().any(|f| f == "oif") => {
                return err(
                    e.span,
                    "fib: the type of an address is looked up for iif only",
                )
            }
            // `fib daddr check exists`: whether a route exists at all
            "check" => (Dt::Boolean, 1),
            "oif" => (Dt::IfIndex, 32),
            "oifname" => (Dt::IfName, 128),
            "type" => (Dt::FibAddr, 32),
            _ => return err(e.span, format!("unknown fib result {result}")),
        }),
        ExprKind::Rt { key, family } => Ok(match key.as_str() {
            "classid" => (Dt::Realm, 32),
            "nexthop" => match (family.as_deref(), ctx.family) {
                (Some("ip6"), Family::Ip) | (Some("ip"), Family::Ip6) => {
                    return err(
                        e.span,
                        format!(
                            "conflicting protocols specified: {} vs. {}",
                            ctx.family.name(),
                            family.as_deref().unwrap_or_default()
                        ),
                    );
                }
                (Some("ip6"), _) | (None, Family::Ip6) => (Dt::Ipv6Addr, 128),
                (Some(_), _) | (None, Family::Ip) => (Dt::Ipv4Addr, 32),
                (None, _) => return err(
                    e.span,
                    "rt nexthop needs a network protocol: use `rt ip nexthop` or `rt ip6 nexthop`",
                ),
            },
            "mtu" => (Dt::Integer, 16),
            "ipsec" => (Dt::Boolean, 1),
            _ => return err(e.span, format!("unknown rt key {key}")),
        }),
        ExprKind::Numgen { .. } | ExprKind::Hash { .. } => Ok((Dt::Integer, 32)),
        ExprKind::Socket { key, .. } => Ok(match key.as_str() {
            "transparent" | "wildcard" => (Dt::Integer, 1),
            "mark" => (Dt::Mark, 32),
            "cgroupv2" => (Dt::CgroupV2, 64),
            _ => return err(e.span, format!("unknown socket key {key}")),
        }),
        ExprKind::Osf { ttl, .. } => {
            if let Some(t) = ttl {
                if !matches!(t.as_str(), "loose" | "skip") {
                    return err(
                        e.span,
                        format!("invalid osf ttl mode {t}: use loose or skip"),
                    );
                }
            }
            Ok((Dt::String, 128))
        }
        ExprKind::Ipsec {
            key, spnum, family, ..
        } => Ok(match key.as_str() {
            _ if *spnum > 255 => {
                return err(
                    e.span,
                    format!("spnum {spnum} is out of range, the kernel keeps at most 255 states"),
                )
            }
            "reqid" | "spi" => (Dt::Integer, 32),
            "saddr" | "daddr" if family.as_deref() == Some("ip6") => (Dt::Ipv6Addr, 128),
            "saddr" | "daddr" => (Dt::Ipv4Addr, 32),
            _ => return err(e.span, format!("unknown ipsec key {key}")),
        }),
        // a presence check (`exthdr hbh exists`)
        ExprKind::Exthdr { field, .. } if field.is_empty() || field == "exists" => {
            Ok((Dt::Boolean, 1))
        }
        ExprKind::Exthdr { hdr, field } => {
            if let Some(f) = proto::exthdr_field(hdr, field) {
                Ok((f.dt, f.bits))
            } else {
                err(e.span, format!("unknown {hdr} field {field}"))
            }
        }
        ExprKind::TcpOpt { opt, field } => match field {
            // `tcp option @kind,offset,length`
            Some(f) if f.starts_with('@') => {
                let len = f
                    .rsplit(',')
                    .next()
                    .and_then(|l| l.parse::<u32>().ok())
                    .unwrap_or(0);
                if len == 0 || len > 128 {
                    return err(
                        e.span,
                        "raw tcp option length must be between 1 and 128 bits",
                    );
                }
                Ok((Dt::Integer, len))
            }
            Some(f) => proto::tcpopt_field(opt, f)
                .map(|x| (x.dt, x.bits))
                .ok_or_else(|| Error::new(e.span, format!("unknown tcp option {opt} field {f}"))),
            None if proto::tcpopt_kind(opt).is_none() && opt.parse::<u8>().is_err() => {
                err(e.span, format!("unknown tcp option {opt}"))
            }
            None => Ok((Dt::Boolean, 1)),
        },
        ExprKind::IpOpt { opt, field } => Ok(match field {
            Some(f) => proto::ipopt_field(opt, f)
                .map(|x| (x.dt, x.bits))
                .unwrap_or((Dt::Integer, 8)),
            None => (Dt::Boolean, 1),
        }),
        ExprKind::SctpChunk { chunk, field } => Ok(match field {
            Some(f) => proto::sctp_chunk_field(chunk, f)
                .map(|x| (x.dt, x.bits))
                .unwrap_or((Dt::Integer, 32)),
            None => (Dt::Boolean, 1),
        }),
        ExprKind::DccpOpt(_) => Ok((Dt::Boolean, 1)),
        // `tunnel path` is whether the packet came through a tunnel
        ExprKind::Tunnel(k) if k == "path" => Ok((Dt::Boolean, 8)),
        ExprKind::Tunnel(_) => Ok((Dt::Integer, 32)),
        ExprKind::Binop(_, l, _) => selector_type(ctx, l),
        ExprKind::Map(_, m) => {
            if let ExprKind::SetRef(n) = &m.kind {
                if let Some(si) = ctx.sets.get(n) {
                    if let Some(d) = si.data {
                        return Ok(d);
                    }
                }
            }
            Ok((e.dt, e.bits))
        }
        _ => Ok((e.dt, e.bits)),
    }
}

/// Resolves a right-hand value against `dt`/`bits`.
pub fn eval_value(ctx: &Ctx, e: &mut Expr, dt: Dt, bits: u32) -> Result<()> {
    let span = e.span;
    match &mut e.kind {
        ExprKind::Symbol(w) => {
            let w = w.clone();
            match parse_symbol(dt, &w, bits) {
                Ok(k) => {
                    e.kind = k;
                }
                Err(msg) => return err(span, msg),
            }
        }
        ExprKind::Quoted(s) => {
            let s = s.clone();
            if dt.is_string() && bits > 0 {
                if s.is_empty() {
                    return err(span, "Empty string is not allowed");
                }
                if s.len() as u32 > bits / 8 {
                    return err(
                        span,
                        format!("String exceeds maximum length of {}", bits / 8),
                    );
                }
            }
            let v = if dt.is_string() || dt == Dt::Invalid {
                Val::Str(s)
            } else {
                match dt.parse(&s, bits) {
                    Ok(v) => v,
                    Err(m) => return err(span, m),
                }
            };
            e.kind = ExprKind::Const(Const { dt, bits, val: v });
        }
        ExprKind::Const(c) => {
            c.dt = dt;
            c.bits = bits;
        }
        ExprKind::Range(a, b) => {
            eval_value(ctx, a, dt, bits)?;
            eval_value(ctx, b, dt, bits)?;
            if let (ExprKind::Const(x), ExprKind::Const(y), false) =
                (&a.kind, &b.kind, dt == Dt::Hour)
            {
                if x.val > y.val {
                    return err(span, "Range has zero or negative size");
                }
            }
        }
        ExprKind::Prefix(a, len) => {
            if *len > bits && bits > 0 {
                return err(
                    span,
                    format!("Prefix length {len} is invalid for type of {bits} bits"),
                );
            }
            eval_value(ctx, a, dt, bits)?;
            clear_host_bits(a, *len);
        }
        ExprKind::List(items) => {
            // a flag list folds into one value
            let mut acc: u128 = 0;
            for it in items.iter_mut() {
                eval_value(ctx, it, dt, bits)?;
                match &it.kind {
                    ExprKind::Const(Const {
                        val: Val::Int(v), ..
                    }) => acc |= v,
                    _ => return err(it.span, "list elements must be constant flags"),
                }
            }
            e.kind = ExprKind::Const(Const {
                dt,
                bits,
                val: Val::Int(acc),
            });
        }
        ExprKind::Binop(op, a, b) => {
            let op = *op;
            eval_value(ctx, a, dt, bits)?;
            eval_value(ctx, b, dt, bits)?;
            if let (ExprKind::Const(x), ExprKind::Const(y)) = (&a.kind, &b.kind) {
                if let (Val::Int(x), Val::Int(y)) = (&x.val, &y.val) {
                    let v = fold(op, *x, *y, bits);
                    e.kind = ExprKind::Const(Const {
                        dt,
                        bits,
                        val: Val::Int(v),
                    });
                }
            }
        }
        ExprKind::Set(elems) => {
            let mut flat = Vec::new();
            for mut el in std::mem::take(elems) {
                eval_value(ctx, &mut el, dt, bits)?;
                match el.kind {
                    ExprKind::Set(inner) => flat.extend(inner),
                    _ => flat.push(el),
                }
            }
            *elems = flat;
        }
        ExprKind::Elem(inner, _) => eval_value(ctx, inner, dt, bits)?,
        ExprKind::SetRef(name) => {
            if !ctx.sets.contains_key(name.as_str()) {
                return err(span, format!("Set '{name}' does not exist"));
            }
        }
        ExprKind::Concat(_) => {}
        ExprKind::Wildcard => {}
        ExprKind::Verdict(_) => {}
        ExprKind::Masked(v, m) => {
            eval_value(ctx, v, dt, bits)?;
            eval_value(ctx, m, dt, bits)?;
        }
        _ => {
            // a selector used as a value (`meta mark set ct mark`)
            let (sdt, sbits) = selector_type(ctx, e)?;
            e.dt = sdt;
            e.bits = sbits;
            return Ok(());
        }
    }
    e.dt = dt;
    e.bits = bits;
    Ok(())
}

pub fn fold(op: BinOp, x: u128, y: u128, bits: u32) -> u128 {
    let mask = if bits >= 128 || bits == 0 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    (match op {
        BinOp::And => x & y,
        BinOp::Or => x | y,
        BinOp::Xor => x ^ y,
        BinOp::Shl => x.checked_shl(y as u32).unwrap_or(0),
        BinOp::Shr => x.checked_shr(y as u32).unwrap_or(0),
    }) & mask
}

/// A word in value position: a constant of `dt`, or a range/prefix written without spaces.
fn parse_symbol(dt: Dt, w: &str, bits: u32) -> std::result::Result<ExprKind, String> {
    let first = dt.parse(w, bits);
    if let Ok(v) = first {
        if dt == Dt::Day && v > Val::Int(6) {
            return Err(format!("Day of week value {w} is out of range 0-6"));
        }
        return Ok(ExprKind::Const(Const { dt, bits, val: v }));
    }
    let first_err = first.unwrap_err();
    // an IPv4 address may be written as one number (`0xff` is 0.0.0.255)
    if dt == Dt::Ipv4Addr {
        if let Some(n) = crate::datatype::parse_int(w).filter(|n| *n <= u32::MAX as u128) {
            return Ok(ExprKind::Const(Const {
                dt,
                bits,
                val: Val::Int(n),
            }));
        }
    }
    // prefix: `10.0.0.0/8`
    if let Some((a, l)) = w.rsplit_once('/') {
        if let Ok(len) = l.parse::<u32>() {
            if let Ok(v) = dt.parse(a, bits) {
                if len > bits {
                    return Err(format!(
                        "Prefix length {len} is invalid for type of {bits} bits"
                    ));
                }
                let sp = Span::default();
                let mut inner = Expr::new(ExprKind::Const(Const { dt, bits, val: v }), sp);
                inner.dt = dt;
                inner.bits = bits;
                clear_host_bits(&mut inner, len);
                return Ok(ExprKind::Prefix(Box::new(inner), len));
            }
        }
    }
    // range: `33-45`, `10.0.0.1-10.0.0.9`, `fe80::1-fe80::9`
    for (i, _) in w.match_indices('-') {
        let (a, b) = (&w[..i], &w[i + 1..]);
        if a.is_empty() || b.is_empty() {
            continue;
        }
        if let (Ok(x), Ok(y)) = (dt.parse(a, bits), dt.parse(b, bits)) {
            let mk = |v| {
                let mut e = Expr::new(ExprKind::Const(Const { dt, bits, val: v }), Span::default());
                e.dt = dt;
                e.bits = bits;
                e
            };
            if x > y {
                return Err("Range has zero or negative size".into());
            }
            return Ok(ExprKind::Range(Box::new(mk(x)), Box::new(mk(y))));
        }
    }
    Err(first_err)
}

/// A prefix keeps only its network part: `192.168.2.1/24` is `192.168.2.0/24`.
fn clear_host_bits(e: &mut Expr, len: u32) {
    if let ExprKind::Const(Const {
        val: Val::Int(v),
        bits,
        ..
    }) = &mut e.kind
    {
        let bits = if *bits > 0 { *bits } else { e.bits };
        if bits == 0 || bits > 128 || len >= bits {
            return;
        }
        let host = bits - len;
        let host_mask = if host >= 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        };
        *v &= !host_mask;
    }
}

pub fn const_int(e: &Expr) -> Option<u128> {
    match &e.kind {
        ExprKind::Const(Const {
            val: Val::Int(v), ..
        }) => Some(*v),
        _ => None,
    }
}

pub fn mk_const(dt: Dt, bits: u32, v: u128, span: Span) -> Expr {
    let mut e = Expr::new(
        ExprKind::Const(Const {
            dt,
            bits,
            val: Val::Int(v),
        }),
        span,
    );
    e.dt = dt;
    e.bits = bits;
    e
}

// ---- statements ----------------------------------------------------------------------------

pub fn eval_rule(ctx: &Ctx, rule: &mut Rule) -> Result<()> {
    for i in 0..rule.stmts.len() {
        crate::protoctx::fill_network(ctx.family, &mut rule.stmts, i)?;
        eval_stmt(ctx, &mut rule.stmts[i])?;
    }
    crate::protoctx::check_rule(ctx.family, rule)?;
    crate::setorder::sort_rule(rule)?;
    crate::inner::check_rule(rule)?;
    crate::deps::process(ctx.family, rule)?;
    crate::stmt_eval::postprocess_rule(ctx, rule)
}

fn verdict_ok(ctx: &Ctx, v: &Verdict, span: Span) -> Result<()> {
    if let Verdict::Jump(c) | Verdict::Goto(c) = v {
        if !ctx.chains.iter().any(|x| x == c) {
            return err(
                span,
                format!(
                    "Could not process rule: No such file or directory\nchain '{c}' does not exist"
                ),
            );
        }
    }
    Ok(())
}

pub fn eval_stmt(ctx: &Ctx, st: &mut Stmt) -> Result<()> {
    let span = st.span;
    match &mut st.kind {
        StmtKind::Match { left, op, right } => {
            // constants in a concatenation looked up in a named set take the set's key types
            let set_key = match &right.kind {
                ExprKind::SetRef(n) if matches!(left.kind, ExprKind::Concat(_)) => {
                    ctx.sets.get(n.as_str()).map(|si| si.key.clone())
                }
                _ => None,
            };
            // `fib daddr oif exists` asks whether there is a route: nft lists it as a check
            if let (ExprKind::Fib { result, .. }, ExprKind::Symbol(v)) =
                (&mut left.kind, &right.kind)
            {
                if v == "exists" || v == "missing" {
                    *result = "check".into();
                }
            }
            match set_key {
                Some(types) => eval_dynset_key(ctx, left, &types)?,
                None => eval_selector(ctx, left)?,
            }
            let (dt, bits) = (left.dt, left.bits);
            // `value / mask`: a masked compare
            if let ExprKind::Masked(v, m) = &mut right.kind {
                eval_value(ctx, v, dt, bits)?;
                eval_value(ctx, m, dt, bits)?;
                let mask = std::mem::replace(m.as_mut(), Expr::new(ExprKind::Wildcard, span));
                let value = std::mem::replace(v.as_mut(), Expr::new(ExprKind::Wildcard, span));
                let l = std::mem::replace(left, Expr::new(ExprKind::Wildcard, span));
                let lsp = l.span;
                let mut nl = Expr::new(
                    ExprKind::Binop(BinOp::And, Box::new(l), Box::new(mask)),
                    lsp,
                );
                nl.dt = dt;
                nl.bits = bits;
                *left = nl;
                *right = value;
                if *op == RelOp::Implicit {
                    *op = RelOp::Eq;
                }
                return Ok(());
            }
            // a concatenation's values are typed component by component
            if let ExprKind::Concat(items) = &left.kind {
                if matches!(right.kind, ExprKind::Concat(_) | ExprKind::Set(_)) {
                    let types: Vec<(Dt, u32)> = items.iter().map(|i| (i.dt, i.bits)).collect();
                    let mut typed = right.clone();
                    eval_concat_value(ctx, &mut typed, &types)?;
                    // raw payload values list in hex, as written; keep those untyped
                    let raw: Vec<bool> = items
                        .iter()
                        .map(|i| matches!(i.kind, ExprKind::RawPayload { .. }))
                        .collect();
                    keep_raw_components(&mut typed, right, &raw);
                    *right = typed;
                    return Ok(());
                }
            }
            eval_value(ctx, right, dt, bits)?;
            unwrap_singleton_set(op, right);
            normalize_match(left, op, right)?;
            crate::flags::normalize(left, op, right)?;
            Ok(())
        }
        StmtKind::Verdict(v) => verdict_ok(ctx, v, span),
        StmtKind::Vmap { key, map } => {
            eval_selector(ctx, key)?;
            let (dt, bits) = (key.dt, key.bits);
            eval_map(ctx, map, dt, bits, Some((Dt::Verdict, 0)), &key.kind)?;
            Ok(())
        }
        StmtKind::Set { key, value } => {
            eval_selector(ctx, key)?;
            crate::stmt_eval::check_mangle(ctx, key, value, span)?;
            let (dt, bits) = (key.dt, key.bits);
            eval_stmt_value(ctx, value, dt, bits)?;
            crate::bitwise::mask_xor(value);
            Ok(())
        }
        // NAT and tproxy depend on the protocols matched before them: see stmt_eval
        StmtKind::Nat(_) | StmtKind::Tproxy { .. } => Ok(()),
        StmtKind::Reject(r) => {
            if let RejectKind::Icmp { family, code } = r {
                let dt = match family.as_str() {
                    "icmp" => Dt::IcmpCode,
                    "icmpv6" => Dt::Icmp6Code,
                    _ => Dt::IcmpxCode,
                };
                eval_value(ctx, code, dt, 8)?;
            }
            Ok(())
        }
        StmtKind::FlowAdd(name) => {
            if !ctx.flowtables.iter().any(|f| f == name) {
                return err(span, format!("Could not process rule: No such file or directory\nflowtable '{name}' does not exist"));
            }
            Ok(())
        }
        StmtKind::Dynset {
            set,
            key,
            stmts,
            data,
            ..
        } => {
            let Some(si) = ctx.sets.get(set.as_str()).cloned() else {
                return err(span, format!("Set '{set}' does not exist"));
            };
            eval_dynset_key(ctx, key, &si.key)?;
            for s in stmts.iter_mut() {
                eval_stmt(ctx, s)?;
            }
            if let Some(d) = data {
                let (ddt, dbits) = si.data.unwrap_or((Dt::Invalid, 0));
                eval_stmt_value(ctx, d, ddt, dbits)?;
            }
            Ok(())
        }
        StmtKind::ObjRef { kind, name } => {
            match &mut name.kind {
                ExprKind::Symbol(s) | ExprKind::Quoted(s) => {
                    let s = s.clone();
                    name.kind = ExprKind::Const(Const {
                        dt: Dt::String,
                        bits: 0,
                        val: Val::Str(s),
                    });
                    name.dt = Dt::String;
                }
                ExprKind::Map(k, m) => {
                    eval_selector_or_concat(ctx, k)?;
                    let (dt, bits) = (k.dt, k.bits);
                    let kk = k.kind.clone();
                    eval_map(ctx, m, dt, bits, Some((Dt::String, 0)), &kk)?;
                }
                _ => {}
            }
            let _ = kind;
            Ok(())
        }
        StmtKind::Queue {
            num: Some(n),
            flags,
        } => {
            eval_stmt_value(ctx, n, Dt::Integer, 16)?;
            crate::stmt_eval::check_queue(n, flags)
        }
        StmtKind::Log(l) => crate::stmt_eval::check_log(l, span),
        StmtKind::Reset(e) => eval_selector(ctx, e),
        StmtKind::Dup { addr, dev } => crate::stmt_eval::eval_dup(ctx, addr, dev, span),
        StmtKind::Fwd { family, addr, dev } => {
            crate::stmt_eval::eval_fwd(ctx, family, addr, dev, span)
        }
        StmtKind::Limit(l) => {
            if l.burst.is_none() && !l.bytes {
                l.burst = Some(5);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The key of `add @s { ... }`/`update @s { ... }`: selectors, and constants (`ip saddr .
/// 10002`) typed by the set's key at their position. Element options wrap the key.
fn eval_dynset_key(ctx: &Ctx, e: &mut Expr, types: &[(Dt, u32)]) -> Result<()> {
    let is_const = |x: &Expr| {
        matches!(
            x.kind,
            ExprKind::Symbol(_) | ExprKind::Quoted(_) | ExprKind::Const(_)
        )
    };
    match &mut e.kind {
        ExprKind::Elem(inner, _) => {
            eval_dynset_key(ctx, inner, types)?;
            e.dt = inner.dt;
            e.bits = inner.bits;
            Ok(())
        }
        ExprKind::Concat(items) if items.iter().any(is_const) => {
            let mut total = 0;
            for (i, it) in items.iter_mut().enumerate() {
                if is_const(it) {
                    let (dt, bits) = types.get(i).copied().unwrap_or((Dt::Integer, 32));
                    eval_value(ctx, it, dt, bits)?;
                    it.dt = dt;
                    it.bits = bits;
                } else {
                    eval_selector(ctx, it)?;
                }
                total += round_up32(it.bits);
            }
            e.dt = Dt::Invalid;
            e.bits = total;
            Ok(())
        }
        _ => eval_selector_or_concat(ctx, e),
    }
}

fn eval_selector_or_concat(ctx: &Ctx, e: &mut Expr) -> Result<()> {
    eval_selector(ctx, e)
}

/// Types a left-hand side: selectors, concatenations, binops with constants, maps.
pub fn eval_selector(ctx: &Ctx, e: &mut Expr) -> Result<()> {
    let span = e.span;
    match &mut e.kind {
        ExprKind::Concat(items) => {
            let mut total = 0;
            for it in items.iter_mut() {
                eval_selector(ctx, it)?;
                total += round_up32(it.bits);
            }
            e.dt = Dt::Invalid;
            e.bits = total;
            Ok(())
        }
        ExprKind::Binop(op, l, r) => {
            let op = *op;
            eval_selector(ctx, l)?;
            let (dt, bits) = (l.dt, l.bits);
            match op {
                BinOp::Shl | BinOp::Shr => eval_stmt_value(ctx, r, Dt::Integer, 32)?,
                _ => eval_stmt_value(ctx, r, dt, bits)?,
            }
            e.dt = dt;
            e.bits = bits;
            Ok(())
        }
        ExprKind::Map(k, m) => {
            eval_selector(ctx, k)?;
            let (dt, bits) = (k.dt, k.bits);
            let kk = k.kind.clone();
            let (rdt, rbits) = eval_map(ctx, m, dt, bits, None, &kk)?;
            e.dt = rdt;
            e.bits = rbits;
            Ok(())
        }
        ExprKind::Symbol(_) | ExprKind::Quoted(_) | ExprKind::Const(_) => err(
            span,
            "syntax error, a selector (payload, meta, ct...) was expected here",
        ),
        ExprKind::Hash {
            expr: Some(inner), ..
        } => {
            eval_selector(ctx, inner)?;
            e.dt = Dt::Integer;
            e.bits = 32;
            Ok(())
        }
        _ => {
            let (dt, bits) = selector_type(ctx, e)?;
            e.dt = dt;
            e.bits = bits;
            // `rt nexthop` lists with the family it was resolved for
            if let ExprKind::Rt {
                key,
                family: fam @ None,
            } = &mut e.kind
            {
                if key == "nexthop" {
                    *fam = Some(if dt == Dt::Ipv6Addr {
                        "ip6".into()
                    } else {
                        "ip".into()
                    });
                }
            }
            Ok(())
        }
    }
}

fn round_up32(b: u32) -> u32 {
    b.div_ceil(32) * 32
}

/// The value of a `set` statement or a NAT address: a constant, a selector, a map lookup, or
/// arithmetic on them.
pub fn eval_stmt_value(ctx: &Ctx, e: &mut Expr, dt: Dt, bits: u32) -> Result<()> {
    match &mut e.kind {
        ExprKind::Symbol(_)
        | ExprKind::Quoted(_)
        | ExprKind::Const(_)
        | ExprKind::Range(..)
        | ExprKind::Prefix(..)
        | ExprKind::List(_)
        | ExprKind::Set(_) => eval_value(ctx, e, dt, bits),
        ExprKind::Binop(op, l, r) => {
            let op = *op;
            eval_stmt_value(ctx, l, dt, bits)?;
            // nft types arithmetic after its left operand (`ip dscp | 0x04` prints the
            // constant as a DSCP value), wide enough for the destination
            let (ldt, lbits) = if const_int(l).is_some() {
                (dt, bits)
            } else {
                (l.dt, l.bits)
            };
            match op {
                BinOp::Shl | BinOp::Shr => {
                    eval_stmt_value(ctx, r, Dt::Integer, 32)?;
                    // a shift must stay within the wider of the value and its destination
                    let width = lbits.max(bits);
                    if let Some(n) = const_int(r).filter(|n| *n >= width as u128 && width > 0) {
                        let dir = if op == BinOp::Shl { "Left" } else { "Right" };
                        return err(r.span, format!("{dir} shift of {n} bits is undefined for type of {width} bits width"));
                    }
                }
                _ => eval_stmt_value(ctx, r, ldt, lbits.max(bits))?,
            }
            // constant on the left: `0x1 or ct mark` is stored as `ct mark | 0x1`
            if const_int(l).is_some()
                && const_int(r).is_none()
                && matches!(op, BinOp::And | BinOp::Or | BinOp::Xor)
            {
                std::mem::swap(l, r);
            }
            if let (Some(x), Some(y)) = (const_int(l), const_int(r)) {
                let v = fold(op, x, y, bits);
                *e = mk_const(ldt, bits, v, e.span);
                return Ok(());
            }
            e.dt = match op {
                BinOp::Shl | BinOp::Shr => Dt::XInteger,
                _ => ldt,
            };
            e.bits = bits;
            Ok(())
        }
        ExprKind::Map(k, m) => {
            eval_selector(ctx, k)?;
            let (kdt, kbits) = (k.dt, k.bits);
            let kk = k.kind.clone();
            eval_map(ctx, m, kdt, kbits, Some((dt, bits)), &kk)?;
            e.dt = dt;
            e.bits = bits;
            Ok(())
        }
        ExprKind::Concat(items) => {
            for it in items.iter_mut() {
                match it.kind {
                    ExprKind::Symbol(_) | ExprKind::Quoted(_) => {}
                    _ => eval_selector(ctx, it)?,
                }
            }
            Ok(())
        }
        _ => {
            eval_selector(ctx, e)?;
            Ok(())
        }
    }
}

/// Types the elements of a map or vmap. Returns the data type.
fn eval_map(
    ctx: &Ctx,
    m: &mut Expr,
    kdt: Dt,
    kbits: u32,
    data: Option<(Dt, u32)>,
    key: &ExprKind,
) -> Result<(Dt, u32)> {
    let span = m.span;
    match &mut m.kind {
        ExprKind::SetRef(n) => {
            let Some(si) = ctx.sets.get(n.as_str()) else {
                return err(span, format!("Set '{n}' does not exist"));
            };
            Ok(si.data.or(data).unwrap_or((Dt::Invalid, 0)))
        }
        ExprKind::Set(elems) => {
            let (ddt, dbits) = data.unwrap_or((Dt::Invalid, 0));
            let key_types: Vec<(Dt, u32)> = match key {
                ExprKind::Concat(items) => items.iter().map(|i| (i.dt, i.bits)).collect(),
                _ => vec![],
            };
            let _ = key_types;
            let mut ret = data;
            for el in elems.iter_mut() {
                let esp = el.span;
                match &mut el.kind {
                    ExprKind::Mapping(k, v) => {
                        eval_elem_key(ctx, k, kdt, kbits, key)?;
                        if ddt == Dt::Verdict {
                            if let ExprKind::Verdict(vd) = &v.kind {
                                verdict_ok(ctx, vd, v.span)?;
                            } else {
                                return err(v.span, "map value is not a verdict");
                            }
                        } else if ddt != Dt::Invalid {
                            eval_value(ctx, strip_elem(v), ddt, dbits)?;
                        } else {
                            // unknown data type: guess integer
                            eval_value(ctx, strip_elem(v), Dt::Integer, 32)?;
                            ret = Some((Dt::Integer, 32));
                        }
                    }
                    _ => return err(esp, "map element has no value (expected key : value)"),
                }
            }
            Ok(ret.unwrap_or((Dt::Invalid, 0)))
        }
        _ => err(span, "expected a map: { key : value, ... } or @name"),
    }
}

fn strip_elem(e: &mut Expr) -> &mut Expr {
    if matches!(e.kind, ExprKind::Elem(..)) {
        match &mut e.kind {
            ExprKind::Elem(inner, _) => inner,
            _ => unreachable!(),
        }
    } else {
        e
    }
}

fn eval_elem_key(ctx: &Ctx, k: &mut Expr, kdt: Dt, kbits: u32, key: &ExprKind) -> Result<()> {
    if let ExprKind::Concat(items) = key {
        let types: Vec<(Dt, u32)> = items.iter().map(|i| (i.dt, i.bits)).collect();
        return eval_concat_value(ctx, strip_elem(k), &types);
    }
    eval_value(ctx, k, kdt, kbits)
}

/// Puts back the components of concatenated values that `raw` marks, from `orig`.
fn keep_raw_components(typed: &mut Expr, orig: &Expr, raw: &[bool]) {
    match (&mut typed.kind, &orig.kind) {
        (ExprKind::Concat(t), ExprKind::Concat(o)) => {
            for ((ti, oi), r) in t.iter_mut().zip(o).zip(raw) {
                if *r {
                    *ti = oi.clone();
                }
            }
        }
        (ExprKind::Set(t), ExprKind::Set(o)) | (ExprKind::List(t), ExprKind::List(o))
            if t.len() == o.len() =>
        {
            for (ti, oi) in t.iter_mut().zip(o) {
                keep_raw_components(ti, oi, raw);
            }
        }
        (ExprKind::Elem(t, _), ExprKind::Elem(o, _)) => keep_raw_components(t, o, raw),
        _ => {}
    }
}

/// A concatenated value `a . b . c` against the key's component types.
pub fn eval_concat_value(ctx: &Ctx, e: &mut Expr, types: &[(Dt, u32)]) -> Result<()> {
    let span = e.span;
    match &mut e.kind {
        ExprKind::Concat(items) => {
            if items.len() != types.len() {
                return err(
                    span,
                    format!(
                        "datatype mismatch, concatenation has {} elements, expected {}",
                        items.len(),
                        types.len()
                    ),
                );
            }
            for (it, (dt, bits)) in items.iter_mut().zip(types) {
                eval_value(ctx, it, *dt, *bits)?;
            }
            Ok(())
        }
        ExprKind::Elem(inner, _) => eval_concat_value(ctx, inner, types),
        ExprKind::Set(elems) => {
            for el in elems.iter_mut() {
                eval_concat_value(ctx, el, types)?;
            }
            Ok(())
        }
        ExprKind::SetRef(_) | ExprKind::Wildcard => Ok(()),
        _ => err(span, "datatype mismatch, expected a concatenation"),
    }
}

/// An anonymous set of one element in a match is that element: `tcp dport { 22 }` is
/// `tcp dport 22`, `!= { 1-5 }` is `!= 1-5`, as nft compiles (and lists) them. The element
/// count is the one written (`{ 22, 22 }` stays a set). An element with statements
/// (`{ 10 counter }`) keeps its set. On a flag field other than `ct state` the membership
/// test becomes an exact compare (`tcp flags { syn }` is `tcp flags == syn`), not the
/// any-of-these-flags test a bare flag value means.
fn unwrap_singleton_set(op: &mut RelOp, right: &mut Expr) {
    if !matches!(op, RelOp::Implicit | RelOp::Eq | RelOp::Ne) {
        return;
    }
    let ExprKind::Set(elems) = &mut right.kind else {
        return;
    };
    let [el] = elems.as_mut_slice() else {
        return;
    };
    let key = match &mut el.kind {
        ExprKind::Elem(_, opts) if !opts.stmts.is_empty() => return,
        ExprKind::Elem(inner, _) => inner.as_mut(),
        _ => el,
    };
    if !matches!(
        key.kind,
        ExprKind::Const(_) | ExprKind::Prefix(..) | ExprKind::Range(..)
    ) {
        return;
    }
    let key = std::mem::replace(key, Expr::new(ExprKind::Wildcard, Span::default()));
    if *op == RelOp::Implicit && key.dt.is_bitmask() && key.dt != Dt::CtState {
        *op = RelOp::Eq;
    }
    *right = key;
}

/// Rewrites a typed relational into the form nft lists.
fn normalize_match(left: &mut Expr, op: &mut RelOp, right: &mut Expr) -> Result<()> {
    // `mark xor 0x3 == 0x1` folds into the constant: `mark 0x2`
    if let ExprKind::Binop(BinOp::Xor, l, r) = &left.kind {
        if let (Some(c), Some(v)) = (const_int(r), const_int(right)) {
            let bits = left.bits;
            let dt = left.dt;
            let inner = (**l).clone();
            *left = inner;
            *right = mk_const(dt, bits, c ^ v, right.span);
            if *op == RelOp::Eq {
                *op = RelOp::Implicit;
            }
        }
    }
    // `meta mark 0xffffff00/24` on a non-address: a masked compare
    if let ExprKind::Prefix(v, len) = &right.kind {
        if !matches!(left.dt, Dt::Ipv4Addr | Dt::Ipv6Addr)
            && !matches!(left.kind, ExprKind::Concat(_))
        {
            let bits = left.bits;
            let mask: u128 = if *len == 0 {
                0
            } else {
                (u128::MAX >> (128 - bits.min(128))) & !((1u128 << (bits - (*len).min(bits))) - 1)
            };
            let vv = const_int(v).unwrap_or(0) & mask;
            let dt = left.dt;
            let l = std::mem::replace(left, Expr::new(ExprKind::Wildcard, Span::default()));
            let sp = l.span;
            let mut nl = Expr::new(
                ExprKind::Binop(
                    BinOp::And,
                    Box::new(l),
                    Box::new(mk_const(dt, bits, mask, sp)),
                ),
                sp,
            );
            nl.dt = dt;
            nl.bits = bits;
            *left = nl;
            *right = mk_const(dt, bits, vv, right.span);
            if *op == RelOp::Implicit {
                *op = RelOp::Eq;
            }
        } else if *len == left.bits {
            // a full-length prefix is just the address
            *right = (**v).clone();
        }
    }
    Ok(())
}
