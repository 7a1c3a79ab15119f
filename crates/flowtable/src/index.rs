//! The hash index from a direction's key to its flow: open addressing with linear probing over
//! one `u32` per slot, sized once for the table's limit so that admission never rehashes and a
//! lookup touches one cache line of index and then the entry.
//!
//! A slot holds the flow's slab index with the direction in the low bit, and above it as
//! many high bits of the key's hash as the value leaves room for (a tag: a probe compares
//! the entry's key only when the tag matches). 4 bytes a key, not 8: deletion, which needs
//! each entry's home position to shift entries back without tombstones, asks the caller to
//! hash the entry's key again (control plane only).

use crate::flow::Key;

const EMPTY: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub(crate) struct Index {
    slots: Box<[u32]>,
    /// The number of slots, as the multiplier that takes a hash to its home slot.
    n: u64,
    seed: u64,
    /// The tag's bits of a slot; the low bits below them hold the value. A slot's tag is its
    /// hash's high word with the value's bits cleared, so a probe compares masked words,
    /// with no shifts.
    tmask: u32,
}

#[inline]
fn mix(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// [`hash`] of an IPv4 key from its two words ([`Key::v4_words`], [`Key::tail`]), which the
/// fast path's parse builds straight from the frame.
///
/// One folded multiply of the two words, each mixed with the seed (what foldhash does for
/// 16 bytes): the key is only 96 bits of entropy, and the fold brings the high half of the
/// product down to the low bits the home slot is taken from. Both words are added back after
/// the multiply: a product with one factor zero is zero whatever the other, so without them
/// every key whose address word equals the seed (or whose ports word equals the other factor's
/// mask) would share one hash.
#[inline(always)]
pub(crate) fn hash_v4(seed: u64, a: u64, tail: u64) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    mix(a ^ seed, tail ^ seed.rotate_left(32) ^ K) ^ a ^ tail
}

/// A seeded multiply-fold hash: cheap, and with a secret seed (`run` draws one per process)
/// remote senders cannot choose colliding tuples; the fixed default only makes runs repeatable. An IPv4 key is two words (addresses; ports, port, protocol), so it
/// costs two multiplies; an IPv6 key mixes all five.
#[inline]
pub(crate) fn hash(seed: u64, k: &Key) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let tail = k.tail();
    if !k.v6 {
        return hash_v4(seed, k.v4_words(), tail);
    }
    let w = k.words();
    let mut h = seed;
    h = mix(h ^ w[0], K);
    h = mix(h ^ w[1], K ^ w[2]);
    h = mix(h ^ w[3], K ^ tail);
    mix(h, K)
}

impl Index {
    /// An index for `entries` keys (two per flow), whose values are below `entries`.
    pub fn new(entries: usize, seed: u64) -> Index {
        let n = Index::slots_for(entries);
        // Values 0..entries, and one more kept free so that no slot equals EMPTY.
        let mut vbits = 1;
        while vbits < 31 && (1usize << vbits) <= entries {
            vbits += 1;
        }
        Index {
            slots: vec![EMPTY; n].into_boxed_slice(),
            n: n as u64,
            seed,
            tmask: !((1u32 << vbits) - 1),
        }
    }

    /// At most four fifths of the slots are used: a hit still probes about two slots on
    /// average, within the home slot's cache line. Exactly that many, not a power of two:
    /// the home slot is a range reduction of the hash ([`home`](Self::home)), not a mask,
    /// so the index is no larger than its load needs (2.5 MiB, not 4, for 524,288 keys).
    pub fn slots_for(entries: usize) -> usize {
        entries
            .saturating_mul(5)
            .div_ceil(4)
            .clamp(16, u32::MAX as usize)
    }

    /// Bytes a slot takes.
    pub const SLOT_BYTES: usize = 4;

    pub fn capacity_slots(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    pub fn hash(&self, k: &Key) -> u64 {
        hash(self.seed, k)
    }

    /// [`hash_v4`] with this index's seed.
    #[inline(always)]
    pub fn hash_v4(&self, a: u64, tail: u64) -> u64 {
        hash_v4(self.seed, a, tail)
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The hash's low word scaled to the slots (`lo * n / 2^32`, a multiply and a shift,
    /// Lemire's range reduction); the tag takes the high word.
    #[inline(always)]
    fn home(&self, h: u64) -> usize {
        (((h & 0xffff_ffff) * self.n) >> 32) as usize
    }

    /// The slot after `i`, wrapping at the end.
    #[inline(always)]
    fn next(&self, i: usize) -> usize {
        let j = i + 1;
        if j as u64 == self.n {
            0
        } else {
            j
        }
    }

    /// The tag in place: the bits of a slot above the value's (`(h >> 32) >> vbits`, left
    /// where the slot keeps it).
    #[inline]
    fn tag(&self, h: u64) -> u32 {
        ((h >> 32) as u32) & self.tmask
    }

    #[inline]
    fn vmask(&self) -> u32 {
        !self.tmask
    }

    /// Candidates for a hash: slab value (`index << 1 | dir`) of each slot whose tag
    /// matches, in probe order, until `f` accepts one.
    #[inline]
    pub fn find(&self, h: u64, mut f: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = self.tag(h);
        let vmask = self.vmask();
        let mut i = self.home(h);
        loop {
            let s = *self.slots.get(i)?;
            if s == EMPTY {
                return None;
            }
            if s & self.tmask == tag && f(s & vmask) {
                return Some(s & vmask);
            }
            i = self.next(i);
        }
    }

    /// Asks for the cache line of a probe's first slot: a prefetch, which nothing waits
    /// for, so that the line is on its way while the rest of a burst is parsed.
    #[inline(always)]
    pub fn prefetch(&self, h: u64) {
        prefetch_index::prefetch_index(&*self.slots, self.home(h));
    }

    /// The first candidate of a probe: the value of the first slot whose tag matches, or
    /// `u32::MAX` when an empty slot comes first (no key of this hash is here). The burst
    /// probes with this, prefetches the candidate's line, and compares it later; only when
    /// the candidate is not the key does it [`find`](Self::find) again.
    #[inline(always)]
    pub fn first_candidate(&self, h: u64) -> u32 {
        let tag = self.tag(h);
        let mut i = self.home(h);
        loop {
            let Some(&s) = self.slots.get(i) else {
                return u32::MAX;
            };
            if s == EMPTY {
                return u32::MAX;
            }
            if s & self.tmask == tag {
                return s & self.vmask();
            }
            i = self.next(i);
        }
    }

    /// Inserts a value; the caller keeps the load under the limit (it sizes the index for its
    /// maximum number of flows).
    pub fn insert(&mut self, h: u64, value: u32) {
        let mut i = self.home(h);
        while self.slots[i] != EMPTY {
            i = self.next(i);
        }
        self.slots[i] = self.tag(h) | (value & self.vmask());
    }

    /// Removes the slot holding `value` for hash `h`, shifting later entries of the cluster back
    /// so that no tombstone lengthens probes; `hash_of` gives the hash of the key a value is
    /// stored under.
    pub fn remove(&mut self, h: u64, value: u32, hash_of: impl Fn(u32) -> u64) -> bool {
        let vmask = self.vmask();
        let mut i = self.home(h);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return false;
            }
            if s & vmask == value {
                break;
            }
            i = self.next(i);
        }
        let mut hole = i;
        let mut j = i;
        loop {
            j = self.next(j);
            let s = self.slots[j];
            if s == EMPTY {
                break;
            }
            let home = self.home(hash_of(s & vmask));
            // Move `s` into the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Inserts and removals with few distinct home positions (crowded clusters, wrap
        /// around) leave exactly the live values findable.
        #[test]
        fn matches_a_map(ops in proptest::collection::vec((any::<bool>(), 0u64..40, 0u32..60), 1..300)) {
            let mut ix = Index::new(64, 1);
            let mut model: HashMap<u32, u64> = HashMap::new();
            for (ins, h, v) in ops {
                // Homes spread over the table (h = 0 the last slot) exercise wrap-around;
                // the high word (the tag) varies too.
                let lo = (h as u32).wrapping_mul(0x0800_0000).wrapping_sub(1);
                let h = (h + 100) << 32 | u64::from(lo);
                if ins && !model.contains_key(&v) && model.len() < 64 {
                    ix.insert(h, v);
                    model.insert(v, h);
                } else if let Some(h0) = model.remove(&v) {
                    let hashes = model.clone();
                    prop_assert!(ix.remove(h0, v, |x| hashes.get(&x).copied().unwrap_or(0)));
                }
                for (&v, &h) in &model {
                    prop_assert_eq!(ix.find(h, |x| x == v), Some(v));
                    // the burst's first candidate is the first value `find` offers
                    prop_assert_eq!(ix.first_candidate(h), ix.find(h, |_| true).unwrap_or(u32::MAX));
                }
                // and none where the probe meets an empty slot first
                for g in 0u64..8 {
                    let g = g.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    prop_assert_eq!(ix.first_candidate(g), ix.find(g, |_| true).unwrap_or(u32::MAX));
                }
            }
        }
    }

    /// A cluster whose home is the last slot continues at the first: found, removed and
    /// found again across the end, and a probe that reaches an empty slot past the end
    /// answers none.
    #[test]
    fn probes_wrap_at_the_end() {
        let mut ix = Index::new(12, 7);
        let n = ix.capacity_slots();
        assert_eq!(n, 16);
        let last = u64::from(u32::MAX); // home n - 1
        assert_eq!(ix.home(last), n - 1);
        assert_eq!(ix.home(0), 0);
        let h = |v: u32| u64::from(v) << 40 | last;
        for v in 0..4 {
            ix.insert(h(v), v);
        }
        // the last slot and the first three
        assert!(ix.slots[n - 1] != EMPTY && ix.slots[..3].iter().all(|&s| s != EMPTY));
        assert_eq!(ix.slots[3], EMPTY);
        for v in 0..4 {
            assert_eq!(ix.find(h(v), |x| x == v), Some(v));
        }
        assert_eq!(ix.first_candidate(h(2)), 2);
        assert_eq!(ix.find(h(9), |_| false), None);
        // a key whose home is slot 0 probes behind the wrapped cluster
        ix.insert(5 << 40, 5);
        assert_eq!(ix.slots[3] & ix.vmask(), 5);
        let hashes = |x: u32| if x == 5 { 5 << 40 } else { h(x) };
        assert!(ix.remove(h(0), 0, hashes));
        assert!(ix.remove(h(2), 2, hashes));
        for v in [1, 3] {
            assert_eq!(ix.find(h(v), |x| x == v), Some(v));
        }
        assert_eq!(ix.find(5 << 40, |x| x == 5), Some(5));
        assert_eq!(ix.find(h(0), |x| x == 0), None);
        // and an index of a size no power of two
        let odd = Index::new(100, 1);
        assert_eq!(odd.capacity_slots(), 125);
        assert_eq!(odd.home(last), 124);
    }

    /// Keys whose address word is the seed, or whose ports word cancels the other factor,
    /// would all multiply to zero: the words added back keep them apart.
    #[test]
    fn degenerate_factors_still_spread_keys() {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        for seed in [crate::Config::default().seed, 1, u64::MAX] {
            let mut by_ports = std::collections::HashSet::new();
            let mut by_addrs = std::collections::HashSet::new();
            for sport in 1000u64..1100 {
                for dport in [53u64, 80, 443] {
                    let tail = sport | dport << 16 | 1 << 32 | 17 << 48;
                    by_ports.insert(hash_v4(seed, seed, tail));
                    let a = sport << 32 | dport;
                    by_addrs.insert(hash_v4(seed, a, seed.rotate_left(32) ^ K));
                }
            }
            assert_eq!(by_ports.len(), 300, "seed {seed:#x}");
            assert_eq!(by_addrs.len(), 300, "seed {seed:#x}");
        }
    }
}
