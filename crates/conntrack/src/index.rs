//! A compact hash index for the connection table: open addressing with linear probing over
//! one `u64` per slot (the low 32 bits of the key's hash, then a 32-bit value: slab index and
//! direction), instead of a map holding whole tuples. The key itself is compared in the
//! connection, so an entry costs 8 bytes (about 10 at the highest load) rather than a tuple,
//! a zone, a value and the map's control byte.
//!
//! The stored hash bits include the home position (for up to 2^32 slots), so growing and
//! deleting (by shifting back, no tombstones) never rehash a key.
//!
//! Slots hold their entry bit-inverted, so that an empty slot is 0 and a table is made by a
//! zeroed allocation: a large one is mapped in as the hash touches it, and a table sized
//! for the connection limit up front ([`Index::with_capacity`]) costs neither a fill nor,
//! later, the growth steps that move every entry.

/// An empty slot as it is stored (entries are stored inverted).
const EMPTY: u64 = 0;

#[derive(Debug, Clone)]
pub(crate) struct Index {
    slots: Box<[u64]>,
    mask: usize,
    len: usize,
}

impl Index {
    #[cfg(test)]
    pub fn new() -> Index {
        Index::with_capacity(0)
    }

    /// An index that holds `entries` keys without growing.
    pub fn with_capacity(entries: usize) -> Index {
        let n = Index::slots_for(entries);
        Index {
            slots: vec![EMPTY; n].into_boxed_slice(),
            mask: n - 1,
            len: 0,
        }
    }

    /// The entry in slot `i`, `!EMPTY` for none.
    #[inline(always)]
    fn at(&self, i: usize) -> u64 {
        !self.slots[i]
    }

    #[inline(always)]
    fn store(&mut self, i: usize, s: u64) {
        self.slots[i] = !s;
    }

    pub fn capacity_slots(&self) -> usize {
        self.slots.len()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The slots an index holding `entries` keys has: at most four fifths are used.
    pub fn slots_for(entries: usize) -> usize {
        let mut n = 16usize;
        while entries.saturating_mul(5) > n.saturating_mul(4) {
            n = n.saturating_mul(2);
        }
        n
    }

    /// The first value stored under hash `h` that `f` accepts.
    pub fn find(&self, h: u64, mut f: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = h as u32;
        let mut i = (tag as usize) & self.mask;
        loop {
            let s = self.at(i);
            if s == !EMPTY {
                return None;
            }
            if (s >> 32) as u32 == tag && f(s as u32) {
                return Some(s as u32);
            }
            i = (i + 1) & self.mask;
        }
    }

    pub fn insert(&mut self, h: u64, value: u32) {
        if self.full() {
            self.grow();
        }
        self.put((h & 0xffff_ffff) << 32 | u64::from(value));
        self.len += 1;
    }

    fn put(&mut self, s: u64) {
        let mut i = ((s >> 32) as usize) & self.mask;
        while self.slots[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.store(i, s);
    }

    fn grow(&mut self) {
        let n = self.slots.len() * 2;
        let old = core::mem::replace(&mut self.slots, vec![EMPTY; n].into_boxed_slice());
        self.mask = n - 1;
        for s in old.iter().copied().filter(|&s| s != EMPTY) {
            self.put(!s);
        }
    }

    /// Whether inserting one more key needs a larger table first.
    fn full(&self) -> bool {
        (self.len + 1).saturating_mul(5) > self.slots.len().saturating_mul(4)
    }

    /// Inserts `value` under `h` unless an entry under `h` that `f` accepts is there already
    /// (then returns false and changes nothing): a lookup and an insertion in one probe.
    pub fn insert_unless(&mut self, h: u64, value: u32, mut f: impl FnMut(u32) -> bool) -> bool {
        if self.full() {
            if self.find(h, f).is_some() {
                return false;
            }
            self.insert(h, value);
            return true;
        }
        let tag = h as u32;
        let mut i = (tag as usize) & self.mask;
        loop {
            let s = self.at(i);
            if s == !EMPTY {
                self.store(i, (h & 0xffff_ffff) << 32 | u64::from(value));
                self.len += 1;
                return true;
            }
            if (s >> 32) as u32 == tag && f(s as u32) {
                return false;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Replaces the value of the first entry under `h` that `f` accepts, or inserts `value`
    /// under `h` when there is none, in one probe.
    pub fn upsert(&mut self, h: u64, value: u32, mut f: impl FnMut(u32) -> bool) {
        if self.full() {
            if !self.replace(h, value, f) {
                self.insert(h, value);
            }
            return;
        }
        let tag = h as u32;
        let mut i = (tag as usize) & self.mask;
        loop {
            let s = self.at(i);
            if s == !EMPTY {
                self.store(i, (h & 0xffff_ffff) << 32 | u64::from(value));
                self.len += 1;
                return;
            }
            if (s >> 32) as u32 == tag && f(s as u32) {
                self.store(i, (s & !0xffff_ffff) | u64::from(value));
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Replaces the value of the first entry under `h` that `f` accepts; whether there was one.
    pub fn replace(&mut self, h: u64, value: u32, mut f: impl FnMut(u32) -> bool) -> bool {
        let tag = h as u32;
        let mut i = (tag as usize) & self.mask;
        loop {
            let s = self.at(i);
            if s == !EMPTY {
                return false;
            }
            if (s >> 32) as u32 == tag && f(s as u32) {
                self.store(i, (s & !0xffff_ffff) | u64::from(value));
                return true;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Removes the entry holding `value` under `h`, shifting later entries of the cluster
    /// back so that no tombstone lengthens probes.
    pub fn remove(&mut self, h: u64, value: u32) -> bool {
        let tag = h as u32;
        let mut i = (tag as usize) & self.mask;
        loop {
            let s = self.at(i);
            if s == !EMPTY {
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
            let s = self.at(j);
            if s == !EMPTY {
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
                self.store(hole, s);
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn sized_for_its_entries_it_never_grows() {
        let h = |v: u32| crate::table::mix64(v as u64);
        let mut ix = Index::with_capacity(1000);
        let slots = ix.capacity_slots();
        assert_eq!(slots, Index::slots_for(1000));
        // room for four fifths of the slots (at least the 1000 asked for)
        let room = (slots * 4 / 5) as u32;
        assert!(room >= 1000);
        for v in 0..room {
            assert!(ix.insert_unless(h(v), v, |x| x == v));
        }
        assert_eq!(ix.capacity_slots(), slots);
        assert_eq!(ix.len(), room as usize);
        // one more grows it, and every entry is still found
        ix.insert(h(room), room);
        assert_eq!(ix.capacity_slots(), 2 * slots);
        for v in 0..=room {
            assert_eq!(ix.find(h(v), |x| x == v), Some(v));
        }
    }

    proptest! {
        /// Inserts, replacements and removals with few distinct home positions (crowded
        /// clusters, wrap-around, growth) leave exactly the live values findable.
        #[test]
        fn matches_a_map(ops in proptest::collection::vec((0u8..5, 0u64..40, 0u32..200), 1..400)) {
            let mut ix = Index::new();
            let mut model: HashMap<u32, u64> = HashMap::new();
            for (op, h, v) in ops {
                let h = h.wrapping_add(100).wrapping_mul(0x1_0000_0001) ^ 0x7f;
                match op {
                    0 if !model.contains_key(&v) => {
                        ix.insert(h, v);
                        model.insert(v, h);
                    }
                    1 => {
                        if let Some(h0) = model.remove(&v) {
                            prop_assert!(ix.remove(h0, v));
                        }
                    }
                    3 => {
                        // keyed by value: an entry "matches" when it holds v
                        let fresh = !model.contains_key(&v);
                        prop_assert_eq!(ix.insert_unless(h, v, |x| x == v), fresh || model[&v] != h);
                        if fresh {
                            model.insert(v, h);
                        } else if model[&v] != h {
                            // inserted a second copy under another hash: undo it
                            prop_assert!(ix.remove(h, v));
                        }
                    }
                    4 => {
                        // upsert replaces the holder of v by v + 1000 (or inserts v + 1000)
                        let w = v + 1000;
                        if !model.contains_key(&w) {
                            match model.get(&v).copied() {
                                Some(h0) => {
                                    ix.upsert(h0, w, |x| x == v);
                                    model.remove(&v);
                                    model.insert(w, h0);
                                }
                                None => {
                                    ix.upsert(h, w, |x| x == v);
                                    model.insert(w, h);
                                }
                            }
                        }
                    }
                    _ => {
                        let w = v + 1000;
                        if model.contains_key(&v) && !model.contains_key(&w) {
                            let h0 = model[&v];
                            prop_assert!(ix.replace(h0, w, |x| x == v));
                            model.remove(&v);
                            model.insert(w, h0);
                        }
                    }
                }
                prop_assert_eq!(ix.len(), model.len());
                for (&v, &h) in &model {
                    prop_assert_eq!(ix.find(h, |x| x == v), Some(v));
                }
            }
        }
    }
}
