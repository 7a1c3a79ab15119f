//! Matches on flag fields (`tcp flags`, `ct state`, `ct status`...) in the form nft lists them.
//!
//! A bare flag value is a test for any of the flags (`tcp flags syn,ack` is
//! `tcp flags & (syn | ack) != 0`), `!` tests for none of them, and an explicit mask that
//! covers the whole field is no mask at all. The kernel keeps only the masked compare, so
//! nft lists every spelling of the same test the same way.

use crate::ast::*;
use crate::datatype::{Dt, Val};
use crate::error::{Error, Result};
use crate::eval::{const_int, mk_const};

fn full_mask(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// On a header's flag field nft keeps a compared value of several flags, and both ends of a
/// range, as numbers: `tcp flags == 0x12`, `tcp flags 0x2-0x12`. Listed as `syn | ack`
/// without its `==`, the compare would read back as a test for any of the flags.
fn numeric_flags(op: &RelOp, right: &mut Expr) {
    fn to_bitmask(e: &mut Expr, min_flags: u32) {
        if let ExprKind::Const(Const {
            val: Val::Int(v), ..
        }) = e.kind
        {
            if v.count_ones() >= min_flags {
                *e = mk_const(Dt::Bitmask, e.bits, v, e.span);
            }
        }
    }
    match &mut right.kind {
        ExprKind::Const(_) if matches!(op, RelOp::Eq | RelOp::Ne) => to_bitmask(right, 2),
        ExprKind::Range(a, b) if matches!(op, RelOp::Implicit | RelOp::Eq | RelOp::Ne) => {
            to_bitmask(a, 0);
            to_bitmask(b, 0);
        }
        _ => {}
    }
}

/// Rewrites a typed relational on a flag field into its listed form.
pub fn normalize(left: &mut Expr, op: &mut RelOp, right: &mut Expr) -> Result<()> {
    if *op == RelOp::Neg {
        let ok = left.dt.is_bitmask()
            && !matches!(left.kind, ExprKind::Binop(..))
            && const_int(right).is_some();
        if !ok {
            return Err(Error::new(
                right.span,
                "syntax error, `!` only tests flags of a flag field",
            ));
        }
        return Ok(());
    }
    if matches!(left.kind, ExprKind::Payload { .. }) && left.dt.is_bitmask() {
        numeric_flags(op, right);
    }
    let ExprKind::Binop(BinOp::And, sel, mask) = &left.kind else {
        return Ok(());
    };
    let (Some(m), Some(v)) = (const_int(mask), const_int(right)) else {
        if *op == RelOp::Implicit && matches!(right.kind, ExprKind::Const(_)) {
            *op = RelOp::Eq;
        }
        return Ok(());
    };
    // an address under a prefix mask is a prefix match: `ip saddr 255.255.0.0/16`
    if matches!(sel.dt, Dt::Ipv4Addr | Dt::Ipv6Addr) && matches!(op, RelOp::Eq | RelOp::Implicit) {
        let bits = sel.bits.min(128);
        let ones = m.count_ones();
        if bits > 0 && ones > 0 && m == full_mask(bits) & !full_mask(bits - ones.min(bits)) {
            let sp = right.span;
            let dt = sel.dt;
            *left = (**sel).clone();
            let value = mk_const(dt, bits, v, sp);
            *right = if ones == bits {
                value
            } else {
                Expr {
                    dt,
                    bits,
                    ..Expr::new(ExprKind::Prefix(Box::new(value), ones), sp)
                }
            };
            *op = RelOp::Implicit;
            return Ok(());
        }
    }
    if sel.dt.is_bitmask() && v == 0 && matches!(op, RelOp::Ne | RelOp::Implicit | RelOp::Eq) {
        // `& flags != 0` is the flag test, `& flags == 0` its negation
        let neg = *op != RelOp::Ne;
        let mut flags = (**mask).clone();
        flags.dt = sel.dt;
        if let ExprKind::Const(c) = &mut flags.kind {
            c.dt = sel.dt;
        }
        *left = (**sel).clone();
        *right = flags;
        *op = if neg { RelOp::Neg } else { RelOp::Implicit };
        return Ok(());
    }
    if sel.dt.is_bitmask()
        && matches!(sel.kind, ExprKind::Payload { .. } | ExprKind::Exthdr { .. })
        && m == full_mask(sel.bits)
    {
        // a mask over the whole field is dropped; the value is then listed in hex
        let bits = sel.bits;
        let sp = right.span;
        *left = (**sel).clone();
        *right = mk_const(Dt::Bitmask, bits, v, sp);
        if *op == RelOp::Implicit {
            *op = RelOp::Eq;
        }
        return Ok(());
    }
    if *op == RelOp::Implicit {
        *op = RelOp::Eq;
    }
    Ok(())
}
