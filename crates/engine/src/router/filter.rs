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

/// The interfaces a packet has when a chain runs: `meta iif`/`oif` numbers (0: none, as for
/// the router's own packets or before routing) and names, as the rules read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Ifaces {
    pub iif: u32,
    pub iifname: u128,
    pub oif: u32,
    pub oifname: u128,
}

/// One leading interface match of a rule: `iifname "wan"`, `oifname { "wan", "wwan" }`,
/// `iif != 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IfMatch {
    key: MetaK,
    test: Test,
    negate: bool,
}

/// For a base chain whose rules can act only on packets of some interfaces (fw4's `dstnat`
/// jumps by `iifname`, its MSS clamp needs `oifname`): per rule, the protocols it may act on
/// and the interface matches that must hold before it can. A packet for which no rule has
/// both skips the chain. Exact, as the protocol filter: a rule keeps the chain unless a
/// match the interfaces alone decide fails for the packet, reached before any statement or
/// load with state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IfFilter {
    rules: Vec<(ChainFilter, Vec<IfMatch>)>,
}

/// Chains with more rules than this get no interface filter (its check is a walk over the
/// rules, and a large chain is better left to the rules themselves).
const IF_FILTER_MAX_RULES: usize = 32;

impl IfFilter {
    /// Whether some rule of the chain may act on a packet of these protocols and interfaces.
    #[cfg(test)]
    pub(super) fn runs(&self, rs: &Ruleset, nfproto: u8, l4proto: u8, ifs: &Ifaces) -> bool {
        self.protocols_for(rs, ifs).runs(nfproto, l4proto)
    }

    /// The protocols some rule may act on for a packet of these interfaces.
    fn protocols_for(&self, rs: &Ruleset, ifs: &Ifaces) -> ChainFilter {
        self.rules
            .iter()
            .filter(|(_, guard)| guard.iter().all(|m| if_match(rs, m, ifs)))
            .fold(ChainFilter::NONE, |f, (protos, _)| f.union(*protos))
    }
}

/// [`IfFilter`]s answered up front for every pair of input and output interface of the
/// router (or none of either), so that a packet's check is an index and a bit test: the
/// interfaces are few and fixed while a ruleset is in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IfTable {
    /// Interfaces; pairs are indexed `(iif + 1) * (n + 1) + (oif + 1)`, 0 meaning none.
    n: usize,
    by_pair: Vec<ChainFilter>,
}

/// Beyond this many interface pairs a chain keeps the protocol filter alone.
const IF_TABLE_MAX_PAIRS: usize = 4096;

impl IfTable {
    /// Whether some rule of the chain may act on a packet of these protocols that came in
    /// on `iif` (`None`: the router's own) and leaves by `oif` (`None`: not routed yet).
    #[inline]
    pub(super) fn runs(
        &self,
        iif: Option<usize>,
        oif: Option<usize>,
        nfproto: u8,
        l4proto: u8,
    ) -> bool {
        let (i, o) = (iif.map_or(0, |i| i + 1), oif.map_or(0, |o| o + 1));
        if i > self.n || o > self.n {
            return true;
        }
        self.by_pair
            .get(i * (self.n + 1) + o)
            .is_none_or(|f| f.runs(nfproto, l4proto))
    }
}

/// An [`IfTable`] per base chain of `rs` (same index as `rs.base`) for a router whose
/// interfaces have these names (`meta iifname` values), by interface index.
pub(super) fn if_tables(rs: &Ruleset, ifnames: &[u128]) -> Vec<Option<IfTable>> {
    let n = ifnames.len();
    let filters = if_filters(rs);
    if (n + 1).saturating_mul(n + 1) > IF_TABLE_MAX_PAIRS {
        return vec![None; filters.len()];
    }
    let side = |i: usize| match i {
        0 => (0, 0),
        i => (i as u32, ifnames[i - 1]),
    };
    filters
        .into_iter()
        .map(|f| {
            let f = f?;
            let mut by_pair = Vec::with_capacity((n + 1) * (n + 1));
            for i in 0..=n {
                for o in 0..=n {
                    let ((iif, iifname), (oif, oifname)) = (side(i), side(o));
                    let ifs = Ifaces {
                        iif,
                        iifname,
                        oif,
                        oifname,
                    };
                    by_pair.push(f.protocols_for(rs, &ifs));
                }
            }
            Some(IfTable { n, by_pair })
        })
        .collect()
}

/// What the rule VM answers for an interface match (`Pkt::load` of the meta key, then the
/// test): an output interface before routing fails the load, which never matches.
fn if_match(rs: &Ruleset, m: &IfMatch, ifs: &Ifaces) -> bool {
    let v = match m.key {
        MetaK::Iif => ifs.iif as u128,
        MetaK::IifName => ifs.iifname,
        MetaK::Oif | MetaK::OifName if ifs.oif == 0 => return false,
        MetaK::Oif => ifs.oif as u128,
        MetaK::OifName => ifs.oifname,
        // (only the four above are collected)
        _ => return true,
    };
    let found = match m.test {
        Test::InSet(s) => rs.sets.get(s).is_some_and(|set| set.lookup(&[v]).is_some()),
        ref t => rules::test(v, t),
    };
    found != m.negate
}

/// The interface matches a rule's packets must pass before it can act: the leading matches
/// with one interface load and a test the compiled ruleset fixes, up to the first statement,
/// verdict or match loading with state. Other matches in between are left out (they may
/// fail too, which only keeps the chain more often).
fn if_guard(changed_sets: &HashSet<usize>, ops: &[Op]) -> Vec<IfMatch> {
    let mut g = vec![];
    for op in ops {
        let Op::Match(m) = op else { break };
        if m.loads.iter().any(rules::needs_state) {
            break;
        }
        let [Load::Meta(k @ (MetaK::Iif | MetaK::Oif | MetaK::IifName | MetaK::OifName))] =
            m.loads.as_slice()
        else {
            continue;
        };
        if matches!(m.test, Test::InSet(s) if changed_sets.contains(&s)) {
            continue;
        }
        g.push(IfMatch {
            key: *k,
            test: m.test.clone(),
            negate: m.negate,
        });
    }
    g
}

/// An interface filter per base chain of `rs` (same index as `rs.base`): `None` for a chain
/// with a rule that acts whatever the interfaces (or too many rules to check per packet).
fn if_filters(rs: &Ruleset) -> Vec<Option<IfFilter>> {
    let changed_sets = rs.changed_sets();
    rs.base
        .iter()
        .map(|b| {
            let chain = rs.chains.get(b.chain)?;
            if chain.rules.len() > IF_FILTER_MAX_RULES {
                return None;
            }
            let mut rules = vec![];
            let netdev = b.family == nft_lang::ast::Family::Netdev;
            for r in &chain.rules {
                let protos = rule_protocols(rs, &changed_sets, &r.ops, netdev);
                if protos == ChainFilter::NONE {
                    continue;
                }
                let guard = if_guard(&changed_sets, &r.ops);
                if guard.is_empty() {
                    // acts on every interface: the chain always runs for these protocols
                    return None;
                }
                rules.push((protos, guard));
            }
            Some(IfFilter { rules })
        })
        .collect()
}

/// The protocols a rule may act on (`netdev`: the rule is in a netdev-family chain).
fn rule_protocols(
    rs: &Ruleset,
    changed_sets: &HashSet<usize>,
    ops: &[Op],
    netdev: bool,
) -> ChainFilter {
    let mut f = ChainFilter::NONE;
    for (fi, nfproto) in [(0, 2u8), (1, 10u8)] {
        for l4proto in 0..=255u8 {
            if rule_may_act(rs, changed_sets, ops, nfproto, l4proto, netdev) {
                f.set(fi, l4proto);
            }
        }
    }
    f
}

/// A filter per base chain of `rs` (same index as `rs.base`).
pub(super) fn chain_filters(rs: &Ruleset) -> Vec<ChainFilter> {
    let changed_sets = rs.changed_sets();
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
    fn interface_guards_skip_chains_for_other_interfaces() {
        let src = "table inet t {
                chain pre { type nat hook prerouting priority dstnat;
                    iifname \"wan\" meta nfproto ipv4 tcp dport 8080 dnat ip to 192.0.2.1:80 }
                chain clamp { type filter hook forward priority mangle;
                    oifname { \"wan\", \"wwan\" } tcp flags syn / syn,fin,rst tcp option maxseg size set rt mtu }
                chain not_lan { type filter hook forward priority 1; iifname != \"lan\" counter }
                chain open { type filter hook forward priority 2;
                    iifname \"wan\" counter
                    tcp dport 22 counter }
                chain inc { type filter hook forward priority 3;
                    numgen inc mod 2 0 iifname \"wan\" counter }
            }";
        let rs = compile(src);
        let fs = if_filters(&rs);
        let mut by_chain: Vec<(usize, Option<IfFilter>)> =
            rs.base.iter().map(|b| b.chain).zip(fs).collect();
        by_chain.sort_by_key(|(c, _)| *c);
        let f: Vec<Option<IfFilter>> = by_chain.into_iter().map(|(_, f)| f).collect();
        let name = rules::ifname_value;
        let (lan, wan) = (
            Ifaces {
                iif: 1,
                iifname: name("lan"),
                ..Ifaces::default()
            },
            Ifaces {
                iif: 2,
                iifname: name("wan"),
                ..Ifaces::default()
            },
        );
        let routed = |i: Ifaces, o: &str, n: u32| Ifaces {
            oif: n,
            oifname: name(o),
            ..i
        };
        let (tcp, udp) = (6, 17);
        let pre = f[0].as_ref().expect("dnat by iifname has a filter");
        assert!(!pre.runs(&rs, 2, tcp, &lan), "a LAN packet skips dstnat");
        assert!(pre.runs(&rs, 2, tcp, &wan));
        assert!(
            !pre.runs(&rs, 2, udp, &wan),
            "and the protocol still counts"
        );
        let clamp = f[1].as_ref().expect("the clamp needs an oifname");
        assert!(clamp.runs(&rs, 2, tcp, &routed(lan, "wan", 2)));
        assert!(clamp.runs(&rs, 10, tcp, &routed(lan, "wwan", 3)));
        assert!(!clamp.runs(&rs, 2, tcp, &routed(wan, "lan", 1)));
        // no output interface yet: the load fails, the match does not hold
        assert!(!clamp.runs(&rs, 2, tcp, &wan));
        let not_lan = f[2].as_ref().expect("a negated name is a guard too");
        assert!(!not_lan.runs(&rs, 2, udp, &lan) && not_lan.runs(&rs, 2, udp, &wan));
        // the same answers from the table made up front (interfaces lan 0, wan 1, wwan 2)
        let names = [name("lan"), name("wan"), name("wwan")];
        let mut t: Vec<(usize, Option<IfTable>)> = rs
            .base
            .iter()
            .map(|b| b.chain)
            .zip(if_tables(&rs, &names))
            .collect();
        t.sort_by_key(|(c, _)| *c);
        let pre = t[0].1.as_ref().unwrap();
        assert!(!pre.runs(Some(0), None, 2, tcp) && pre.runs(Some(1), None, 2, tcp));
        assert!(!pre.runs(Some(1), None, 2, udp) && !pre.runs(None, None, 2, tcp));
        let clamp = t[1].1.as_ref().unwrap();
        assert!(clamp.runs(Some(0), Some(1), 2, tcp) && clamp.runs(Some(0), Some(2), 10, tcp));
        assert!(!clamp.runs(Some(1), Some(0), 2, tcp) && !clamp.runs(Some(1), None, 2, tcp));
        // a rule acting on every interface keeps the chain
        assert!(f[3].is_none());
        // a load with state before the interface match acts for every packet reaching it
        assert!(f[4].is_none());
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
