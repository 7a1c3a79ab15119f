//! And/or/xor with constants on a selector, as the kernel keeps them and nft lists them.
//!
//! nft folds a chain like `meta mark and 0xffff0054 xor 0xab` into one mask-and-xor
//! (`(value & mask) ^ xor`). Listing splits that pair again: the xor bits outside the mask
//! become an `|` (and join the mask), the rest stay an `^`, and a mask covering every bit
//! is left out. So the chain lists as `meta mark & 0xffff00ff | 0x000000ab`.

use crate::ast::*;
use crate::datatype::Val;
use crate::eval::{const_int, mk_const};

fn all_ones(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// Rewrites the constant and/or/xor chains of a statement value into nft's listing form.
pub fn mask_xor(e: &mut Expr) {
    // the chain from the outermost operation down to its first non-constant operand
    let mut ops = vec![];
    let mut base = &*e;
    while let ExprKind::Binop(op @ (BinOp::And | BinOp::Or | BinOp::Xor), l, r) = &base.kind {
        let Some(c) = const_int(r) else { break };
        ops.push((*op, c, r.as_ref().clone()));
        base = l;
    }
    if ops.is_empty() || !matches!(base.kind, ExprKind::Meta(_) | ExprKind::Ct { .. }) {
        if let ExprKind::Binop(_, l, r) = &mut e.kind {
            mask_xor(l);
            mask_xor(r);
        }
        return;
    }
    let bits = e.bits;
    if bits == 0
        || bits > 128
        || !matches!(
            ops[0].2.kind,
            ExprKind::Const(Const {
                val: Val::Int(_),
                ..
            })
        )
    {
        return;
    }
    let all = all_ones(bits);
    let (mut m, mut x) = (all, 0u128);
    for (op, c, _) in ops.iter().rev() {
        match op {
            BinOp::And => {
                m &= c;
                x &= c;
            }
            BinOp::Or => {
                m &= !c & all;
                x |= c;
            }
            _ => x ^= c,
        }
    }
    let mut o = 0;
    if m != all || x != 0 {
        o = (m & x) ^ x;
        x &= m;
        m |= o;
    }
    let (dt, span) = (e.dt, e.span);
    let cdt = ops[0].2.dt;
    let cbits = ops[0].2.bits.max(bits);
    let mut out = base.clone();
    for (op, v) in [
        (BinOp::And, if m == all { None } else { Some(m) }),
        (BinOp::Xor, Some(x).filter(|v| *v != 0)),
        (BinOp::Or, Some(o).filter(|v| *v != 0)),
    ] {
        let Some(v) = v else { continue };
        let mut n = Expr::new(
            ExprKind::Binop(op, Box::new(out), Box::new(mk_const(cdt, cbits, v, span))),
            span,
        );
        n.dt = dt;
        n.bits = bits;
        out = n;
    }
    *e = out;
}

#[cfg(test)]
mod tests {
    use crate::print::{self, ListOpts};
    use crate::ruleset::{load_str, LoadOpts};

    fn listing(rule: &str) -> String {
        let text = format!("table ip t {{ chain c {{ {rule} }} }}");
        let rs = load_str("t.nft", &text, &LoadOpts::default()).expect("loads");
        let out = print::ruleset(&rs, &ListOpts::default());
        out.lines().nth(2).unwrap_or_default().trim().to_string()
    }

    #[test]
    fn constant_chains_list_as_mask_xor_or() {
        assert_eq!(
            listing("meta mark set meta mark and 0xffff0054 xor 0xab"),
            "meta mark set meta mark & 0xffff00ff | 0x000000ab"
        );
        assert_eq!(
            listing("meta mark set meta mark and 0xffff xor 0x10"),
            "meta mark set meta mark & 0x0000ffff ^ 0x00000010"
        );
        assert_eq!(
            listing("ct mark set ct mark xor 0x1 xor 0x1"),
            "ct mark set ct mark"
        );
        assert_eq!(
            listing("ct mark set ct mark or 0x1 or 0x2"),
            "ct mark set ct mark | 0x00000003"
        );
        assert_eq!(
            listing("meta mark set ct mark and 0xff or 0x100"),
            "meta mark set ct mark & 0x000001ff | 0x00000100"
        );
        assert_eq!(
            listing("meta mark set (meta mark or 0x10) and 0xff"),
            "meta mark set meta mark & 0x000000ff | 0x00000010"
        );
        assert_eq!(
            listing("ct mark set ct mark and 0xffffffff"),
            "ct mark set ct mark"
        );
        assert_eq!(
            listing("ct mark set ct mark and 0xffff0000 or meta mark and 0xffff"),
            "ct mark set ct mark & 0xffff0000 | meta mark & 0x0000ffff"
        );
    }
}
