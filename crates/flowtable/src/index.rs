//! The hash index from a direction's key to its flow: open addressing with linear probing over
//! one `u64` per slot, sized once for the table's limit so that admission never rehashes and a
//! lookup touches one cache line of index and then the entry.
//!
//! A slot holds the low 32 bits of the key's hash (which include the home position, so that
//! deletion can shift entries back without rehashing) and the flow's slab index with the
//! direction in the low bit. The full key is compared in the entry.

use crate::flow::Key;

const EMPTY: u64 = u64::MAX;

#[derive(Debug, Clone)]
pub(crate) struct Index {
    slots: Box<[u64]>,
    mask: usize,
    seed: u64,
}

#[inline]
fn mix(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Index {
    /// An index for `entries` keys (two per flow).
    pub fn new(entries: usize, seed: u64) -> Index {
        let n = Index::slots_for(entries);
        Index {
            slots: vec![EMPTY; n].into_boxed_slice(),
            mask: n - 1,
            seed,
        }
    }

    /// At most four fifths of the slots are used: a hit still probes about two slots on
    /// average, within the home slot's cache line, at 8 bytes a key instead of 16 at a half.
    pub fn slots_for(entries: usize) -> usize {
        let mut n = 16usize;
        while entries.saturating_mul(5) > n.saturating_mul(4) {
            n = n.saturating_mul(2);
        }
        n
    }

    pub fn capacity_slots(&self) -> usize {
        self.slots.len()
    }

    /// A seeded multiply-fold hash: cheap, and the seed keeps remote senders from choosing
    /// colliding tuples. An IPv4 key is two words (addresses; ports, port, protocol), so it
    /// costs two multiplies; an IPv6 key mixes all five.
    #[inline]
    pub fn hash(&self, k: &Key) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let tail = k.tail();
        if !k.v6 {
            let a = k.v4_words();
            let h = mix(self.seed ^ a, K);
            return mix(h ^ tail, K ^ self.seed);
        }
        let w = k.words();
        let mut h = self.seed;
        h = mix(h ^ w[0], K);
        h = mix(h ^ w[1], K ^ w[2]);
        h = mix(h ^ w[3], K ^ tail);
        mix(h, K)
    }

    #[inline]
    fn home(&self, h: u64) -> usize {
        (h as usize) & self.mask
    }

    /// Candidates for a hash: slab value (`index << 1 | dir`) of each slot whose stored hash
    /// matches, in probe order, until `f` accepts one.
    #[inline]
    pub fn find(&self, h: u64, mut f: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = h as u32;
        let mut i = self.home(h);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if (s >> 32) as u32 == tag && f(s as u32) {
                return Some(s as u32);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The first slot of a probe, read early so that its cache line is on the way while other
    /// packets of the burst are parsed.
    #[inline]
    pub fn touch(&self, h: u64) -> u64 {
        self.slots[self.home(h)]
    }

    /// Inserts a value; the caller keeps the load under the limit (it sizes the index for its
    /// maximum number of flows).
    pub fn insert(&mut self, h: u64, value: u32) {
        let mut i = self.home(h);
        while self.slots[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = (h & 0xffff_ffff) << 32 | u64::from(value);
    }

    /// Removes the slot holding `value` for hash `h`, shifting later entries of the cluster back
    /// so that no tombstone lengthens probes.
    pub fn remove(&mut self, h: u64, value: u32) -> bool {
        let tag = h as u32;
        let mut i = self.home(h);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return false;
            }
            if (s >> 32) as u32 == tag && s as u32 == value {
                break;
            }
            i = (i + 1) & self.mask;
        }
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let s = self.slots[j];
            if s == EMPTY {
                break;
            }
            let home = ((s >> 32) as usize) & self.mask;
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
                // Hashes near the end of the table exercise wrap-around.
                let h = h.wrapping_add(100).wrapping_mul(0x1_0000_0001) ^ 0x7f;
                if ins && !model.contains_key(&v) && model.len() < 64 {
                    ix.insert(h, v);
                    model.insert(v, h);
                } else if let Some(h0) = model.remove(&v) {
                    prop_assert!(ix.remove(h0, v));
                }
                for (&v, &h) in &model {
                    prop_assert_eq!(ix.find(h, |x| x == v), Some(v));
                }
            }
        }
    }
}
