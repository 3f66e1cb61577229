//! The newest version of recently written keys, kept in memory for apply.
//!
//! A put must know the key's current version (its create revision, version and lease, and the value
//! for `prev_kv` and watch events). Searching the index and fetching the value from RocksDB for every
//! put was most of apply's time, so apply remembers what it wrote last for each key, within a byte
//! budget. Two generations approximate LRU at O(1) per access: writes and hits go to the young map;
//! when it outgrows half the budget, it becomes the old map and the previous old map is dropped.
//!
//! Invariants: only apply (one thread) writes the keyspace, and it updates this cache after each
//! batch is written, so an entry is always the key's newest version (`None` for a deleted key). The
//! young map shadows the old one. Compaction never changes a key's newest live version (and a
//! compacted-away tombstone reads the same as a cached deletion), so it needs no invalidation; a
//! snapshot install replaces the keyspace and clears the cache.

use std::collections::HashMap;

use crate::proto::mvccpb::KeyValue;

/// Bytes of keys and values the cache may hold (both generations together).
pub const DEFAULT_BUDGET: usize = 64 << 20;

/// Per-entry bookkeeping counted on top of key and value bytes.
const ENTRY_OVERHEAD: usize = 96;

#[derive(Default)]
struct Generation {
    map: HashMap<Vec<u8>, Option<KeyValue>>,
    bytes: usize,
}

impl Generation {
    fn insert(&mut self, key: Vec<u8>, kv: Option<KeyValue>) {
        let key_len = key.len();
        self.bytes += cost(&key, &kv);
        if let Some(old) = self.map.insert(key, kv) {
            let old_cost =
                ENTRY_OVERHEAD + key_len + old.map_or(0, |kv| kv.key.len() + kv.value.len());
            self.bytes = self.bytes.saturating_sub(old_cost);
        }
    }
}

fn cost(key: &[u8], kv: &Option<KeyValue>) -> usize {
    ENTRY_OVERHEAD + key.len() + kv.as_ref().map_or(0, |kv| kv.key.len() + kv.value.len())
}

/// The cache: key -> newest version (`None`: the key is deleted).
pub struct LatestCache {
    young: Generation,
    old: Generation,
    budget: usize,
}

impl Default for LatestCache {
    fn default() -> Self {
        LatestCache::new(DEFAULT_BUDGET)
    }
}

impl LatestCache {
    pub fn new(budget: usize) -> LatestCache {
        LatestCache {
            young: Generation::default(),
            old: Generation::default(),
            budget,
        }
    }

    /// The newest version of `key` if cached: `Some(None)` means deleted, `None` means unknown.
    pub fn get(&mut self, key: &[u8]) -> Option<Option<KeyValue>> {
        if let Some(v) = self.young.map.get(key) {
            return Some(v.clone());
        }
        let (key, v) = self.old.map.remove_entry(key)?;
        self.old.bytes = self.old.bytes.saturating_sub(cost(&key, &v));
        self.insert(key, v.clone());
        Some(v)
    }

    /// Records the newest version of `key` (after it was written).
    pub fn insert(&mut self, key: Vec<u8>, kv: Option<KeyValue>) {
        self.young.insert(key, kv);
        if self.young.bytes > self.budget / 2 {
            self.old = std::mem::take(&mut self.young);
        }
    }

    /// Forgets everything (the keyspace was replaced).
    pub fn clear(&mut self) {
        self.young = Generation::default();
        self.old = Generation::default();
    }

    /// Bytes accounted to both generations.
    pub fn bytes(&self) -> usize {
        self.young.bytes + self.old.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &[u8], value: &[u8], rev: i64) -> Option<KeyValue> {
        Some(KeyValue {
            key: key.to_vec(),
            value: value.to_vec(),
            mod_revision: rev,
            ..Default::default()
        })
    }

    #[test]
    fn newest_version_wins_and_deletes_are_remembered() {
        let mut c = LatestCache::new(1 << 20);
        assert_eq!(c.get(b"a"), None);
        c.insert(b"a".to_vec(), kv(b"a", b"1", 2));
        c.insert(b"a".to_vec(), kv(b"a", b"22", 3));
        assert_eq!(c.get(b"a"), Some(kv(b"a", b"22", 3)));
        c.insert(b"a".to_vec(), None);
        assert_eq!(c.get(b"a"), Some(None));
        c.clear();
        assert_eq!(c.get(b"a"), None);
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn replacing_an_entry_counts_it_once() {
        let mut c = LatestCache::new(1 << 20);
        c.insert(b"k".to_vec(), kv(b"k", &[0; 100], 2));
        let one = c.bytes();
        c.insert(b"k".to_vec(), kv(b"k", &[0; 100], 3));
        assert_eq!(c.bytes(), one);
        c.insert(b"k".to_vec(), None);
        assert_eq!(c.bytes(), ENTRY_OVERHEAD + 1);
    }

    #[test]
    fn stays_within_its_budget_and_keeps_recently_used_keys() {
        let budget = 100 * (ENTRY_OVERHEAD + 2 + 2 + 10);
        let mut c = LatestCache::new(budget);
        for i in 0..1000u16 {
            let k = i.to_be_bytes().to_vec();
            c.insert(k.clone(), kv(&k, &[1; 10], i as i64));
            // Key 0 is read all the time: it stays.
            assert!(c.get(&[0, 0]).is_some(), "key 0 evicted at {i}");
            // Over the budget by at most the entry that made the young generation rotate.
            assert!(
                c.bytes() <= budget + ENTRY_OVERHEAD + 14,
                "{} > {budget}",
                c.bytes()
            );
        }
        // The newest keys are there, the oldest are gone.
        assert_eq!(
            c.get(&999u16.to_be_bytes()),
            Some(kv(&999u16.to_be_bytes(), &[1; 10], 999))
        );
        assert_eq!(c.get(&1u16.to_be_bytes()), None);
    }
}
