//! The forwarding information base: longest-prefix match for IPv4 and IPv6.
//!
//! One hash map per prefix length, searched from the longest length that holds any route.
//! Lookups cost at most one probe per populated length (a handful on a router: /32, /24, /0),
//! routes change rarely, and a generation number tells cached users (offloaded flows) that
//! something changed.

// Routes hash with foldhash: a lookup per populated prefix length per packet made SipHash
// visible in profiles, and route keys are not attacker-chosen.
use crate::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where a route sends a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Index of the egress interface in the topology.
    pub ifindex: usize,
    /// The gateway, or None for a directly connected destination.
    pub via: Option<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteKind {
    /// Forward to a next hop.
    Unicast(NextHop),
    /// An address of the router itself: deliver to the host.
    Local(usize),
    /// Drop silently.
    Blackhole,
    /// Drop and answer with ICMP unreachable.
    Unreachable,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub prefix: IpAddr,
    pub len: u8,
    pub kind: RouteKind,
}

struct Table<const BITS: usize> {
    /// by_len[len]: masked prefix → route
    by_len: Vec<HashMap<u128, RouteKind>>,
    /// Populated lengths, longest first.
    lens: Vec<u8>,
    /// `masks[len]`: [`Self::mask`] of each length, computed once.
    masks: Vec<u128>,
    /// The default route (`by_len[0]`'s one entry), read without hashing: most routed
    /// packets of a router take it.
    default: Option<RouteKind>,
}

impl<const BITS: usize> Table<BITS> {
    fn new() -> Self {
        Table {
            by_len: (0..=BITS).map(|_| HashMap::default()).collect(),
            lens: vec![],
            masks: (0..=BITS).map(|l| Self::mask(l as u8)).collect(),
            default: None,
        }
    }

    fn mask(len: u8) -> u128 {
        if len == 0 {
            0
        } else {
            let full: u128 = if BITS == 128 {
                u128::MAX
            } else {
                (1u128 << BITS) - 1
            };
            full & !((1u128 << (BITS - len as usize)) - 1) & full
        }
    }

    fn insert(&mut self, addr: u128, len: u8, kind: RouteKind) -> Option<RouteKind> {
        let key = addr & Self::mask(len);
        let old = self.by_len[len as usize].insert(key, kind);
        self.default = self.by_len[0].get(&0).cloned();
        if !self.lens.contains(&len) {
            self.lens.push(len);
            self.lens.sort_unstable_by(|a, b| b.cmp(a));
        }
        old
    }

    fn remove(&mut self, addr: u128, len: u8) -> Option<RouteKind> {
        let key = addr & Self::mask(len);
        let old = self.by_len[len as usize].remove(&key);
        self.default = self.by_len[0].get(&0).cloned();
        if self.by_len[len as usize].is_empty() {
            self.lens.retain(|l| *l != len);
        }
        old
    }

    fn lookup(&self, addr: u128) -> Option<(&RouteKind, u8)> {
        for &len in &self.lens {
            if len == 0 {
                // the last length (longest first)
                return self.default.as_ref().map(|r| (r, 0));
            }
            let mask = self.masks.get(len as usize).copied().unwrap_or(0);
            if let Some(r) = self.by_len[len as usize].get(&(addr & mask)) {
                return Some((r, len));
            }
        }
        None
    }
}

/// IPv4 and IPv6 routes.
pub struct Fib {
    v4: Table<32>,
    v6: Table<128>,
    generation: u64,
}

impl Default for Fib {
    fn default() -> Self {
        Fib::new()
    }
}

fn key(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

impl Fib {
    pub fn new() -> Fib {
        Fib {
            v4: Table::new(),
            v6: Table::new(),
            generation: 0,
        }
    }

    /// Bumped on every change; flows that cached a route compare it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Makes this FIB's generation newer than `previous`'s, so flows that cached a route of
    /// the FIB it replaces notice the change.
    pub fn succeed(&mut self, previous: &Fib) {
        self.generation = self.generation.max(previous.generation) + 1;
    }

    /// Adds or replaces a route. Returns the route it replaced.
    pub fn insert(
        &mut self,
        prefix: IpAddr,
        len: u8,
        kind: RouteKind,
    ) -> Result<Option<RouteKind>, String> {
        self.generation += 1;
        match prefix {
            IpAddr::V4(_) if len <= 32 => Ok(self.v4.insert(key(prefix), len, kind)),
            IpAddr::V6(_) if len <= 128 => Ok(self.v6.insert(key(prefix), len, kind)),
            _ => Err(format!("prefix length {len} is too long for {prefix}")),
        }
    }

    pub fn remove(&mut self, prefix: IpAddr, len: u8) -> Option<RouteKind> {
        self.generation += 1;
        match prefix {
            IpAddr::V4(_) => self.v4.remove(key(prefix), len),
            IpAddr::V6(_) => self.v6.remove(key(prefix), len),
        }
    }

    /// The most specific route for `dst`, with its prefix length.
    pub fn lookup(&self, dst: IpAddr) -> Option<(&RouteKind, u8)> {
        match dst {
            IpAddr::V4(_) => self.v4.lookup(key(dst)),
            IpAddr::V6(_) => self.v6.lookup(key(dst)),
        }
    }

    pub fn lookup_v4(&self, dst: Ipv4Addr) -> Option<(&RouteKind, u8)> {
        self.v4.lookup(u32::from(dst) as u128)
    }

    pub fn lookup_v6(&self, dst: Ipv6Addr) -> Option<(&RouteKind, u8)> {
        self.v6.lookup(u128::from(dst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(i: usize) -> RouteKind {
        RouteKind::Unicast(NextHop {
            ifindex: i,
            via: None,
        })
    }

    #[test]
    fn longest_prefix_wins() {
        let mut f = Fib::new();
        f.insert("0.0.0.0".parse().unwrap(), 0, hop(0)).unwrap();
        f.insert("10.0.0.0".parse().unwrap(), 8, hop(1)).unwrap();
        f.insert("10.1.0.0".parse().unwrap(), 16, hop(2)).unwrap();
        f.insert("10.1.2.3".parse().unwrap(), 32, RouteKind::Local(2))
            .unwrap();
        assert_eq!(f.lookup("10.1.9.9".parse().unwrap()), Some((&hop(2), 16)));
        assert_eq!(f.lookup("10.2.0.1".parse().unwrap()), Some((&hop(1), 8)));
        assert_eq!(f.lookup("8.8.8.8".parse().unwrap()), Some((&hop(0), 0)));
        assert_eq!(
            f.lookup("10.1.2.3".parse().unwrap()),
            Some((&RouteKind::Local(2), 32))
        );
        assert!(f.lookup("2001:db8::1".parse().unwrap()).is_none());
        let g = f.generation();
        assert_eq!(f.remove("10.1.0.0".parse().unwrap(), 16), Some(hop(2)));
        assert!(f.generation() > g);
        assert_eq!(f.lookup("10.1.9.9".parse().unwrap()), Some((&hop(1), 8)));
    }

    #[test]
    fn ipv6_prefixes() {
        let mut f = Fib::new();
        f.insert("::".parse().unwrap(), 0, hop(0)).unwrap();
        f.insert("2001:db8::".parse().unwrap(), 32, hop(1)).unwrap();
        f.insert("2001:db8:1::".parse().unwrap(), 48, hop(2))
            .unwrap();
        f.insert("2001:db8:1::1".parse().unwrap(), 128, RouteKind::Local(2))
            .unwrap();
        assert_eq!(
            f.lookup("2001:db8:1:2::5".parse().unwrap()),
            Some((&hop(2), 48))
        );
        assert_eq!(
            f.lookup("2001:db8:2::5".parse().unwrap()),
            Some((&hop(1), 32))
        );
        assert_eq!(
            f.lookup("2001:db8:1::1".parse().unwrap()),
            Some((&RouteKind::Local(2), 128))
        );
        assert_eq!(f.lookup("fe80::1".parse().unwrap()), Some((&hop(0), 0)));
        assert!(f.insert("::".parse().unwrap(), 129, hop(0)).is_err());
    }

    proptest::proptest! {
        /// The table agrees with a linear scan over the same routes.
        #[test]
        fn matches_linear_scan(routes in proptest::collection::vec((proptest::prelude::any::<u32>(), 0u8..=32), 1..40), probes in proptest::collection::vec(proptest::prelude::any::<u32>(), 1..50)) {
            let mut f = Fib::new();
            let mut list: Vec<(u32, u8, usize)> = vec![];
            for (i, (a, l)) in routes.iter().enumerate() {
                let m = if *l == 0 { 0 } else { u32::MAX << (32 - l) };
                list.retain(|(x, y, _)| !(*y == *l && *x == a & m));
                list.push((a & m, *l, i));
                f.insert(IpAddr::V4(Ipv4Addr::from(*a)), *l, hop(i)).unwrap();
            }
            for p in probes {
                let best = list.iter().filter(|(x, l, _)| { let m = if *l == 0 { 0 } else { u32::MAX << (32 - l) }; p & m == *x }).max_by_key(|(_, l, _)| *l);
                let got = f.lookup(IpAddr::V4(Ipv4Addr::from(p)));
                match best {
                    None => proptest::prop_assert!(got.is_none()),
                    Some((_, l, i)) => proptest::prop_assert_eq!(got, Some((&hop(*i), *l))),
                }
            }
        }
    }
}
