//! Which base chains can do anything to a packet of a given network and transport protocol.
//!
//! A rule acts on a packet only if every match before its first statement or verdict
//! matches. Many of a router's rules start with a match that the protocols alone decide:
//! `tcp dport 8080` loads a TCP field, which fails for UDP (and a failed load never matches,
//! negated or not), `meta nfproto ipv4`, `meta l4proto { tcp, udp }` with a set no rule
//! changes. When every rule of a base chain starts so, for a packet's protocols, running the
//! chain only applies its policy: the router skips the run (fw4's `dstnat` and MSS clamping
//! chains hold TCP rules only, and a new UDP connection then runs two chains instead of four).
//!
//! A match can act without matching, though: a load that changes rule state (`numgen inc`
//! advances its counter, `numgen random` and `meta random` draw from the random sequence)
//! does so for every packet that reaches it, whatever the match then decides. So a rule
//! may act as soon as a match before its first failing one holds such a load (`numgen inc
//! mod 2 0 tcp dport 80 counter` advances the counter for UDP too, as in the kernel).
//!
//! The answer is computed once per ruleset for each base chain, as a bit per transport
//! protocol for IPv4 and for IPv6. It is conservative: anything it cannot decide from the
//! protocols (a load of another field, a set rules may change, a statement before any
//! match, a load with state) keeps the chain. A trace runs every chain (it shows each run),
//! so a packet must get the same with trace on and off: tests compare the two.

use std::collections::HashSet;

use crate::rules::{self, Load, MetaK, Op, Ruleset, Test};

/// The transport protocols (bit `l4proto`) of IPv4 (`live[0]`) and IPv6 (`live[1]`) packets
/// for which some rule of a base chain may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct ChainFilter {
    live: [[u64; 4]; 2],
}

impl ChainFilter {
    pub(super) const ALL: ChainFilter = ChainFilter {
        live: [[u64::MAX; 4]; 2],
    };
    const NONE: ChainFilter = ChainFilter { live: [[0; 4]; 2] };

    /// The protocols either filter lets through.
    pub(super) fn union(mut self, other: ChainFilter) -> ChainFilter {
        for (a, b) in self
            .live
            .iter_mut()
            .flatten()
            .zip(other.live.iter().flatten())
        {
            *a |= b;
        }
        self
    }

    /// Whether a rule of the chain may act on a packet of `nfproto` (2: IPv4, 10: IPv6) and
    /// `l4proto`. Other network protocols always run the chain.
    #[inline]
    pub(super) fn runs(&self, nfproto: u8, l4proto: u8) -> bool {
        let f = match nfproto {
            2 => 0,
            10 => 1,
            _ => return true,
        };
        self.live[f][(l4proto >> 6) as usize] >> (l4proto & 63) & 1 != 0
    }

    fn set(&mut self, f: usize, l4proto: u8) {
        self.live[f][(l4proto >> 6) as usize] |= 1 << (l4proto & 63);
    }
}

/// What a load gives for every packet of one network and transport protocol: the value, a
/// failure, or nothing certain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Value(u128),
    Fails,
    Unknown,
}

/// (`netdev`: the chain is of the netdev family, where `meta nfproto` is NFPROTO_NETDEV.)
fn known(l: &Load, nfproto: u8, l4proto: u8, netdev: bool) -> Known {
    match l {
        Load::Payload { l3, l4, .. } => {
            if l3.is_some_and(|p| p != nfproto) || l4.is_some_and(|p| p != l4proto) {
                Known::Fails
            } else {
                Known::Unknown
            }
        }
        Load::Meta(MetaK::NfProto) if netdev => Known::Value(rules::NFPROTO_NETDEV as u128),
        Load::Meta(MetaK::NfProto) => Known::Value(nfproto as u128),
        Load::Meta(MetaK::L4Proto) => Known::Value(l4proto as u128),
        Load::Bitwise { inner, and, xor } => match known(inner, nfproto, l4proto, netdev) {
            Known::Value(v) => Known::Value((v & and) ^ xor),
            k => k,
        },
        Load::Shift { inner, left, n } => match known(inner, nfproto, l4proto, netdev) {
            Known::Value(v) => Known::Value(if *left {
                v.checked_shl(*n).unwrap_or(0)
            } else {
                v.checked_shr(*n).unwrap_or(0)
            }),
            k => k,
        },
        _ => Known::Unknown,
    }
}

/// Whether match `m` fails for every packet of these protocols.
fn never_matches(
    rs: &Ruleset,
    changed_sets: &HashSet<usize>,
    m: &rules::Match,
    nfproto: u8,
    l4proto: u8,
    netdev: bool,
) -> bool {
    let keys: Vec<Known> = m
        .loads
        .iter()
        .map(|l| known(l, nfproto, l4proto, netdev))
        .collect();
    if keys.contains(&Known::Fails) {
        // a failed load never matches, negated or not
        return true;
    }
    let Some(values) = keys
        .iter()
        .map(|k| match k {
            Known::Value(v) => Some(*v),
            _ => None,
        })
        .collect::<Option<Vec<u128>>>()
    else {
        return false;
    };
    let found = match m.test {
        Test::InSet(s) if !changed_sets.contains(&s) => match rs.sets.get(s) {
            Some(set) => set.lookup(&values).is_some(),
            None => return false,
        },
        Test::InSet(_) => return false,
        ref t => match values.as_slice() {
            [v] => rules::test(*v, t),
            _ => return false,
        },
    };
    found == m.negate
}

/// Whether a rule may act on a packet of these protocols: no match before its first
/// statement or verdict is decided false by them, or a match reached before the first
/// such one loads with state (the load changes rule state whether the match holds or not).
fn rule_may_act(
    rs: &Ruleset,
    changed_sets: &HashSet<usize>,
    ops: &[Op],
    nfproto: u8,
    l4proto: u8,
    netdev: bool,
) -> bool {
    for op in ops {
        match op {
            Op::Match(m) => {
                // (conservative within a match: a load before the stateful one may fail)
                if m.loads.iter().any(rules::needs_state) {
                    return true;
                }
                if never_matches(rs, changed_sets, m, nfproto, l4proto, netdev) {
                    return false;
                }
            }
            _ => return true,
        }
    }
    // matches only: nothing to do even when they match
    false
}

/// A filter per base chain of `rs` (same index as `rs.base`).
pub(super) fn chain_filters(rs: &Ruleset) -> Vec<ChainFilter> {
    // sets rules add to or delete from: their contents are known at run time only
    let changed_sets: HashSet<usize> = rs
        .chains
        .iter()
        .flat_map(|c| &c.rules)
        .flat_map(|r| &r.ops)
        .filter_map(|op| match op {
            Op::Dynset(d) => Some(d.set),
            _ => None,
        })
        .collect();
    rs.base
        .iter()
        .map(|b| {
            let Some(chain) = rs.chains.get(b.chain) else {
                return ChainFilter::ALL;
            };
            let mut f = ChainFilter::NONE;
            let netdev = b.family == nft_lang::ast::Family::Netdev;
            for (fi, nfproto) in [(0, 2u8), (1, 10u8)] {
                for l4proto in 0..=255u8 {
                    if chain
                        .rules
                        .iter()
                        .any(|r| rule_may_act(rs, &changed_sets, &r.ops, nfproto, l4proto, netdev))
                    {
                        f.set(fi, l4proto);
                    }
                }
            }
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(src: &str) -> Ruleset {
        let ast = nft_lang::ruleset::load_str("t.nft", src, &Default::default())
            .unwrap_or_else(|e| panic!("{}", e.rendered));
        rules::compile(&ast).unwrap()
    }

    /// The filters in the order the chains are written (`rules.base` is in hook order).
    fn filter_of(src: &str) -> Vec<ChainFilter> {
        let rs = compile(src);
        let f = chain_filters(&rs);
        let mut by_chain: Vec<(usize, ChainFilter)> =
            rs.base.iter().map(|b| b.chain).zip(f).collect();
        by_chain.sort_by_key(|(c, _)| *c);
        by_chain.into_iter().map(|(_, f)| f).collect()
    }

    #[test]
    fn protocol_guards_decide_which_packets_a_chain_sees() {
        let f = filter_of(
            "table inet t {
                chain pre { type nat hook prerouting priority dstnat;
                    iifname \"wan\" meta nfproto ipv4 tcp dport 8080 dnat ip to 192.0.2.1:80 }
                chain clamp { type filter hook forward priority mangle;
                    oifname \"wan\" tcp flags syn / syn,fin,rst tcp option maxseg size set rt mtu }
                chain v6 { type filter hook input priority 0; meta nfproto ipv6 counter }
                chain l4 { type filter hook output priority 0; meta l4proto { tcp, udp } accept }
                chain not_udp { type filter hook output priority 1; meta l4proto != udp accept }
            }",
        );
        let (tcp, udp, icmp) = (6, 17, 1);
        // dnat of IPv4 TCP only
        assert!(f[0].runs(2, tcp));
        assert!(!f[0].runs(2, udp));
        assert!(!f[0].runs(10, tcp));
        // the MSS clamp reads TCP flags: TCP of both families
        assert!(f[1].runs(2, tcp) && f[1].runs(10, tcp));
        assert!(!f[1].runs(2, udp) && !f[1].runs(10, icmp));
        // IPv6 only
        assert!(f[2].runs(10, udp) && !f[2].runs(2, udp));
        // a constant set
        assert!(f[3].runs(2, tcp) && f[3].runs(10, udp) && !f[3].runs(2, icmp));
        // a negated comparison
        assert!(f[4].runs(2, tcp) && !f[4].runs(2, udp));
        // a protocol outside IPv4 and IPv6 always runs the chain
        assert!(f[0].runs(0, udp));
        // a hook with both chains: what either acts on
        let u = f[0].union(f[2]);
        assert!(u.runs(2, tcp) && u.runs(10, udp) && !u.runs(2, udp));
    }

    #[test]
    fn a_match_loading_with_state_acts_for_every_protocol_reaching_it() {
        let f = filter_of(
            "table inet t {
                chain inc { type filter hook forward priority 0;
                    numgen inc mod 2 0 tcp dport 9999 counter }
                chain rnd { type filter hook forward priority 1;
                    meta random & 1 == 0 tcp dport 1 counter }
                chain after { type filter hook forward priority 2;
                    meta nfproto ipv6 numgen random mod 2 0 counter }
                chain plain { type filter hook forward priority 3; tcp dport 9999 counter }
            }",
        );
        let (tcp, udp) = (6, 17);
        assert!(f[0].runs(2, udp) && f[0].runs(10, tcp));
        assert!(f[1].runs(2, udp) && f[1].runs(2, 1));
        // a failing match before the stateful one: the load is never reached
        assert!(!f[2].runs(2, udp) && f[2].runs(10, udp));
        assert!(!f[3].runs(2, udp) && f[3].runs(2, tcp));
    }

    #[test]
    fn anything_undecided_keeps_the_chain() {
        let f = filter_of(
            "table inet t {
                set s { type inet_proto; elements = { tcp } }
                chain a { type filter hook forward priority 0; counter }
                chain b { type filter hook forward priority 1; ip saddr 10.0.0.1 drop }
                chain c { type filter hook forward priority 2;
                    meta l4proto @s accept
                    udp dport 53 add @s { meta l4proto } }
                chain d { type filter hook forward priority 3; ct state vmap { established : accept } }
            }",
        );
        for (i, c) in f.iter().enumerate() {
            for p in [1u8, 6, 17, 58, 132] {
                assert!(c.runs(2, p), "chain {i} proto {p}");
            }
        }
        assert!(!f[1].runs(10, 6), "an IPv4 address match is IPv4's");
        assert!(
            f[2].runs(10, 132),
            "a set rules change is not read at load time"
        );
    }
}
