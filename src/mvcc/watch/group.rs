//! The synced watcher index: which synced watchers a key's events go to.
//!
//! Watchers on a single key sit in a hash map by key; watchers on a range (`[key, end)` or every key
//! from `key`) sit in an ordered map by their first key, so that an event only looks at ranges that
//! start at or before its key. Both maps hold watcher handles (`u64`), never watcher state.
//!
//! Invariant: a handle is in the index at most once, under the range it was inserted with; removing
//! it needs that same range.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use crate::mvcc::store::{KeyRange, RangeEnd};

/// Synced watchers by the keys they watch.
#[derive(Default)]
pub(crate) struct SyncedIndex {
    keys: HashMap<Vec<u8>, HashSet<u64>>,
    ranges: BTreeMap<Vec<u8>, HashMap<u64, RangeEnd>>,
    len: usize,
}

impl SyncedIndex {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `id` watching `range`. Returns false if it was already there.
    pub(crate) fn insert(&mut self, id: u64, range: &KeyRange) -> bool {
        let added = match &range.end {
            RangeEnd::Single => self.keys.entry(range.key.clone()).or_default().insert(id),
            end => self
                .ranges
                .entry(range.key.clone())
                .or_default()
                .insert(id, end.clone())
                .is_none(),
        };
        if added {
            self.len += 1;
        }
        added
    }

    /// Removes `id` (inserted with `range`). Returns whether it was there.
    pub(crate) fn remove(&mut self, id: u64, range: &KeyRange) -> bool {
        let removed = match &range.end {
            RangeEnd::Single => match self.keys.get_mut(&range.key) {
                Some(set) => {
                    let r = set.remove(&id);
                    if set.is_empty() {
                        self.keys.remove(&range.key);
                    }
                    r
                }
                None => false,
            },
            _ => match self.ranges.get_mut(&range.key) {
                Some(map) => {
                    let r = map.remove(&id).is_some();
                    if map.is_empty() {
                        self.ranges.remove(&range.key);
                    }
                    r
                }
                None => false,
            },
        };
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Appends every watcher whose range contains `key` to `out`.
    pub(crate) fn matching(&self, key: &[u8], out: &mut Vec<u64>) {
        if let Some(set) = self.keys.get(key) {
            out.extend(set.iter().copied());
        }
        for (_, map) in self
            .ranges
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
        {
            for (id, end) in map {
                let inside = match end {
                    RangeEnd::Single | RangeEnd::Unbounded => true,
                    RangeEnd::Before(e) => key < e.as_slice(),
                };
                if inside {
                    out.push(*id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(ix: &SyncedIndex, key: &[u8]) -> Vec<u64> {
        let mut v = Vec::new();
        ix.matching(key, &mut v);
        v.sort();
        v
    }

    #[test]
    fn single_keys_ranges_and_open_ranges() {
        let mut ix = SyncedIndex::default();
        let a = KeyRange::new(b"a", b"");
        let ab = KeyRange::new(b"a", b"c");
        let from_b = KeyRange::new(b"b", b"\0");
        let all = KeyRange::new(b"\0", b"\0");
        assert!(ix.insert(1, &a));
        assert!(ix.insert(2, &ab));
        assert!(ix.insert(3, &from_b));
        assert!(ix.insert(4, &all));
        assert!(ix.insert(5, &a));
        assert!(!ix.insert(5, &a));
        assert_eq!(ix.len(), 5);
        assert_eq!(m(&ix, b"a"), [1, 2, 4, 5]);
        assert_eq!(m(&ix, b"a\0"), [2, 4]);
        assert_eq!(m(&ix, b"b"), [2, 3, 4]);
        assert_eq!(m(&ix, b"c"), [3, 4]);
        assert_eq!(m(&ix, b"\0"), [4]);
        assert!(ix.remove(2, &ab));
        assert!(!ix.remove(2, &ab));
        assert!(!ix.remove(3, &a));
        assert_eq!(m(&ix, b"b"), [3, 4]);
        assert!(ix.remove(1, &a) && ix.remove(5, &a) && ix.remove(3, &from_b));
        assert!(ix.remove(4, &all));
        assert!(ix.is_empty());
        assert!(ix.keys.is_empty() && ix.ranges.is_empty());
    }

    #[test]
    fn same_start_different_ends() {
        let mut ix = SyncedIndex::default();
        ix.insert(1, &KeyRange::new(b"k", b"k5"));
        ix.insert(2, &KeyRange::new(b"k", b"l"));
        assert_eq!(m(&ix, b"k4"), [1, 2]);
        assert_eq!(m(&ix, b"k5"), [2]);
        assert_eq!(m(&ix, b"j"), Vec::<u64>::new());
    }
}
