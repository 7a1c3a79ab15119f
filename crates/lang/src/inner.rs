//! Checks for matches on headers inside tunnels (`udp dport 4789 vxlan ip saddr 10.0.0.1`).
//!
//! nft finds a VXLAN or Geneve header only after the rule has matched the UDP port it runs on,
//! and the kernel's inner-header expression can only be read, never written.

use crate::ast::*;
use crate::error::{Error, Result};
use crate::eval::const_int;
use crate::proto;

fn payloads<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match &e.kind {
        ExprKind::Payload { .. } => out.push(e),
        ExprKind::Concat(v) => v.iter().for_each(|x| payloads(x, out)),
        ExprKind::Binop(_, a, b) => {
            payloads(a, out);
            payloads(b, out);
        }
        ExprKind::Map(a, _) => payloads(a, out),
        ExprKind::Hash { expr: Some(a), .. } => payloads(a, out),
        _ => {}
    }
}

/// The tunnel an inner-header or tunnel-header payload belongs to.
fn tunnel_of(e: &Expr) -> Option<&str> {
    match &e.kind {
        ExprKind::Payload { proto: p, .. } => match proto::split_inner(p) {
            Some((t, _)) => Some(t),
            None if proto::tunnel_udp_port(p).is_some() => Some(p.as_str()),
            None => None,
        },
        _ => None,
    }
}

pub fn check_rule(rule: &Rule) -> Result<()> {
    let mut udp_ports: Vec<u128> = vec![];
    for st in &rule.stmts {
        let mut found = vec![];
        match &st.kind {
            StmtKind::Match { left, op, right } => {
                payloads(left, &mut found);
                if let ExprKind::Payload { proto: p, field } = &left.kind {
                    if p == "udp" && field == "dport" && matches!(op, RelOp::Implicit | RelOp::Eq) {
                        if let Some(v) = const_int(right) {
                            udp_ports.push(v);
                        }
                    }
                }
            }
            StmtKind::Vmap { key, .. } => payloads(key, &mut found),
            StmtKind::Set { key, value } => {
                if let Some(t) = tunnel_of(key) {
                    return Err(Error::new(
                        key.span,
                        format!("{t} headers cannot be modified"),
                    ));
                }
                payloads(value, &mut found);
            }
            _ => {}
        }
        for e in found {
            let Some(t) = tunnel_of(e) else { continue };
            if let Some(port) = proto::tunnel_udp_port(t) {
                if !udp_ports.contains(&(port as u128)) {
                    return Err(Error::new(
                        e.span,
                        format!("{t} header requires a match on udp dport {port} first"),
                    ));
                }
            }
        }
    }
    Ok(())
}
