//! Reads of the MVCC keyspace: the index scan, value fetches and etcd's Range semantics.
//!
//! [`Store`] is the shared handle (database plus the current and compacted revisions). [`KvRead`] is what
//! Range, Txn compares and DeleteRange need to see: the set of live keys in a range at a revision. It is
//! implemented by [`ReadView`] (a RocksDB snapshot, used by client reads) and by the apply batch
//! (database plus the batch's own uncommitted writes, see `write.rs`), so that Range behaves the same in
//! both places.
//!
//! Invariants kept here:
//! * a read at revision `r` sees, for each user key, the newest index entry with `main <= r`; a tombstone
//!   there means the key does not exist at `r`;
//! * a reader takes the current revision *before* its snapshot and the compacted revision *after* it, so a
//!   snapshot always holds every version visible at the revision it reads (see `ReadView::new`).

use std::cmp::Ordering;
use std::sync::atomic::{AtomicI64, Ordering as AtomicOrdering};
use std::sync::Arc;

use prost::Message;

use super::revision::{
    decode_index_key, encode_key, index_after_key, index_seek_at, Revision, TOMBSTONE,
};
use crate::error::{Error, Result};
use crate::proto::etcdserverpb::{range_request, RangeRequest, RangeResponse, ResponseHeader};
use crate::proto::mvccpb::KeyValue;
use crate::storage::{decode_u64, Db, Read, CF_INDEX, CF_KV, CF_META};

/// `meta` CF names owned by the MVCC store.
pub const META_CURRENT_REV: &[u8] = b"current_rev";
pub const META_COMPACT_REV: &[u8] = b"compact_rev";
pub const META_COMPACT_FINISHED: &[u8] = b"compact_finished";
/// Number of live keys (etcd's `etcd_debugging_mvcc_keys_total`), written with every apply batch.
pub const META_KEY_COUNT: &[u8] = b"key_count";

/// MVCC's metric families (registered in the member's registry by the server).
#[derive(Clone)]
pub struct MvccMetrics {
    /// Put operations applied (in txns too).
    pub put: prometheus::IntCounter,
    /// DeleteRange operations applied (in txns too).
    pub delete: prometheus::IntCounter,
    /// Live keys.
    pub keys: prometheus::IntGauge,
    /// Apply's writes of the state database (one per applied batch).
    pub backend_commit: prometheus::Histogram,
}

impl MvccMetrics {
    fn new() -> MvccMetrics {
        use crate::metrics::{counter, disk_histogram, gauge};
        MvccMetrics {
            put: counter(
                "etcd_mvcc_put_total",
                "Total number of puts seen by this member.",
            ),
            delete: counter(
                "etcd_mvcc_delete_total",
                "Total number of deletes seen by this member.",
            ),
            keys: gauge("etcd_debugging_mvcc_keys_total", "Total number of keys."),
            backend_commit: disk_histogram(
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
            ),
        }
    }

    /// Registers every family in `m`.
    pub fn register(&self, m: &crate::metrics::Metrics) {
        m.register(&self.put);
        m.register(&self.delete);
        m.register(&self.keys);
        m.register(&self.backend_commit);
    }
}

/// The end of a key range, as etcd reads `range_end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeEnd {
    /// Empty `range_end`: the key alone.
    Single,
    /// `range_end == "\0"`: every key >= key.
    Unbounded,
    /// `[key, end)`.
    Before(Vec<u8>),
}

/// A key range `[key, end)` with etcd's conventions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    pub key: Vec<u8>,
    pub end: RangeEnd,
}

impl KeyRange {
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        let end = if range_end.is_empty() {
            RangeEnd::Single
        } else if range_end == [0] {
            RangeEnd::Unbounded
        } else {
            RangeEnd::Before(range_end.to_vec())
        };
        KeyRange {
            key: key.to_vec(),
            end,
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match &self.end {
            RangeEnd::Single => k == self.key.as_slice(),
            RangeEnd::Unbounded => k >= self.key.as_slice(),
            RangeEnd::Before(e) => k >= self.key.as_slice() && k < e.as_slice(),
        }
    }

    /// True when no key can be in the range (`range_end <= key`).
    pub fn is_empty(&self) -> bool {
        matches!(&self.end, RangeEnd::Before(e) if e.as_slice() <= self.key.as_slice())
    }
}

/// One live key found by a scan: its key, the revision of its visible version, and the value when known.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub key: Vec<u8>,
    pub rev: Revision,
    pub kv: Option<KeyValue>,
}

/// Read access to the keyspace at a revision.
pub trait KvRead {
    /// The revision a read without `revision` sees.
    fn current(&self) -> i64;
    /// The compacted revision (reads below it fail).
    fn compacted(&self) -> i64;
    /// Live keys of `range` at revision `rev`, in key order; values filled when `fetch`.
    fn visible(&self, range: &KeyRange, rev: i64, fetch: bool) -> Result<Vec<Hit>>;
    /// Fills in the values of hits that have none.
    fn fetch(&self, hits: &mut [Hit]) -> Result<()>;
}

struct RevState {
    current: AtomicI64,
    compact: AtomicI64,
    /// Signals every change of the current revision (after it is visible).
    changed: tokio::sync::watch::Sender<i64>,
}

/// Shared handle on the MVCC keyspace.
#[derive(Clone)]
pub struct Store {
    db: Db,
    revs: Arc<RevState>,
    /// Apply's cache of the newest version of recently written keys (see `latest.rs`).
    latest: Arc<parking_lot::Mutex<super::latest::LatestCache>>,
    pub metrics: MvccMetrics,
}

impl Store {
    /// Opens the keyspace on `db`; a fresh store starts at revision 1.
    pub fn open(db: Db) -> Result<Store> {
        let current = match db.get(CF_META, META_CURRENT_REV)? {
            Some(v) => decode_u64(&v) as i64,
            None => 1,
        };
        let compact = db.get_u64(CF_META, META_COMPACT_REV)? as i64;
        let store = Store {
            db,
            revs: Arc::new(RevState {
                current: AtomicI64::new(current),
                compact: AtomicI64::new(compact),
                changed: tokio::sync::watch::channel(current).0,
            }),
            latest: Default::default(),
            metrics: MvccMetrics::new(),
        };
        store.load_key_count()?;
        Ok(store)
    }

    /// Reads the live key count; a data dir written before it was kept is counted once.
    fn load_key_count(&self) -> Result<()> {
        let n = match self.db.get(CF_META, META_KEY_COUNT)? {
            Some(v) => decode_u64(&v) as i64,
            None => {
                let reader = Reader { src: &*self.db };
                let all = KeyRange::new(&[0], &[0]);
                reader.scan(&all, self.current_revision())?.len() as i64
            }
        };
        self.metrics.keys.set(n);
        Ok(())
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The latest committed revision.
    pub fn current_revision(&self) -> i64 {
        self.revs.current.load(AtomicOrdering::Acquire)
    }

    /// The compacted revision (0 before any compaction).
    pub fn compact_revision(&self) -> i64 {
        self.revs.compact.load(AtomicOrdering::Acquire)
    }

    /// Re-reads the revisions from the database (after a snapshot replaced the state).
    pub(crate) fn reload(&self) -> Result<()> {
        let current = match self.db.get(CF_META, META_CURRENT_REV)? {
            Some(v) => decode_u64(&v) as i64,
            None => 1,
        };
        let compact = self.db.get_u64(CF_META, META_COMPACT_REV)? as i64;
        self.latest.lock().clear();
        self.publish(current, compact);
        self.load_key_count()
    }

    /// Apply's cache of the newest versions (only the apply thread locks it).
    pub(crate) fn latest_cache(&self) -> parking_lot::MutexGuard<'_, super::latest::LatestCache> {
        self.latest.lock()
    }

    /// Publishes revisions after the write batch that produced them is visible to readers.
    pub(crate) fn publish(&self, current: i64, compact: i64) {
        self.revs.compact.store(compact, AtomicOrdering::Release);
        self.revs.current.store(current, AtomicOrdering::Release);
        self.revs.changed.send_if_modified(|r| {
            let moved = *r != current;
            *r = current;
            moved
        });
    }

    /// A receiver that wakes on every new revision (for server-side recipes waiting on keys).
    pub fn revisions(&self) -> tokio::sync::watch::Receiver<i64> {
        self.revs.changed.subscribe()
    }

    /// Runs `f` on a consistent snapshot view of the latest committed state.
    pub fn with_view<T>(&self, f: impl FnOnce(&ReadView<'_>) -> Result<T>) -> Result<T> {
        let current = self.current_revision();
        let snap = self.db.snapshot();
        let compact = self.compact_revision();
        let view = ReadView {
            reader: Reader { src: &*snap },
            current,
            compact,
        };
        f(&view)
    }
}

/// Low-level access to the index and kv column families: the database's latest state or a snapshot.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    pub src: &'a dyn Read,
}

impl Reader<'_> {
    /// The newest index entry of `key`: its revision and whether it is a tombstone.
    pub fn latest(&self, key: &[u8]) -> Result<Option<(Revision, bool)>> {
        let mut it = self.src.cursor(CF_INDEX, Some(index_after_key(key)))?;
        it.seek(&encode_key(key));
        if let (Some(k), Some(v)) = (it.key(), it.value()) {
            let (user, _, rev) =
                decode_index_key(k).ok_or_else(|| Error::Internal("bad index key".into()))?;
            if user == key {
                return Ok(Some((rev, v == [TOMBSTONE])));
            }
        }
        it.status()?;
        Ok(None)
    }

    /// Live keys of `range` at revision `rev` (values not fetched).
    pub fn scan(&self, range: &KeyRange, rev: i64) -> Result<Vec<Hit>> {
        let mut out = Vec::new();
        if range.is_empty() {
            return Ok(out);
        }
        let upper = match &range.end {
            RangeEnd::Single => Some(index_after_key(&range.key)),
            RangeEnd::Before(e) => Some(encode_key(e)),
            RangeEnd::Unbounded => None,
        };
        let mut it = self.src.cursor(CF_INDEX, upper)?;
        it.seek(&index_seek_at(&range.key, rev));
        while let Some(k) = it.key() {
            let (user, enc_len, krev) =
                decode_index_key(k).ok_or_else(|| Error::Internal("bad index key".into()))?;
            if krev.main > rev {
                // Versions newer than the read revision: jump to this key's newest version <= rev.
                it.seek(&index_seek_at(&user, rev));
                continue;
            }
            let tomb = it.value() == Some(&[TOMBSTONE][..]);
            let prefix = k[..enc_len].to_vec();
            if !tomb {
                out.push(Hit {
                    key: user.clone(),
                    rev: krev,
                    kv: None,
                });
            }
            // Skip older versions of the same key: one step usually reaches the next key.
            it.next();
            if matches!(it.key(), Some(n) if n.starts_with(&prefix)) {
                it.seek(&index_after_key(&user));
            }
        }
        it.status()?;
        Ok(out)
    }

    /// Fills in the values of `hits` from the kv column family.
    pub fn fetch(&self, hits: &mut [Hit]) -> Result<()> {
        let missing: Vec<usize> = (0..hits.len()).filter(|&i| hits[i].kv.is_none()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let keys: Vec<Vec<u8>> = missing.iter().map(|&i| hits[i].rev.kv_key(false)).collect();
        let values = self.src.multi_get(CF_KV, &keys)?;
        for (i, v) in missing.into_iter().zip(values) {
            let v = v.ok_or_else(|| {
                Error::Internal(format!("index entry without value at {:?}", hits[i].rev))
            })?;
            hits[i].kv = Some(KeyValue::decode(v.as_ref())?);
        }
        Ok(())
    }

    /// The value stored at an exact revision.
    pub fn get_rev(&self, rev: Revision) -> Result<Option<KeyValue>> {
        match self.src.get(CF_KV, &rev.kv_key(false))? {
            Some(v) => Ok(Some(KeyValue::decode(v.as_ref())?)),
            None => Ok(None),
        }
    }
}

/// A snapshot of the committed keyspace, as client reads see it.
pub struct ReadView<'a> {
    pub reader: Reader<'a>,
    pub current: i64,
    pub compact: i64,
}

impl KvRead for ReadView<'_> {
    fn current(&self) -> i64 {
        self.current
    }
    fn compacted(&self) -> i64 {
        self.compact
    }
    fn visible(&self, range: &KeyRange, rev: i64, fetch: bool) -> Result<Vec<Hit>> {
        let mut hits = self.reader.scan(range, rev)?;
        if fetch {
            self.reader.fetch(&mut hits)?;
        }
        Ok(hits)
    }
    fn fetch(&self, hits: &mut [Hit]) -> Result<()> {
        self.reader.fetch(hits)
    }
}

/// Checks a read revision against the store: returns the revision to read at.
pub fn check_revision(s: &impl KvRead, revision: i64) -> Result<i64> {
    let cur = s.current();
    let rev = if revision <= 0 { cur } else { revision };
    if rev > cur {
        return Err(Error::FutureRev);
    }
    if rev < s.compacted() {
        return Err(Error::Compacted);
    }
    Ok(rev)
}

/// etcd's Range: limit/more/count, revision reads, sorting, keys_only, count_only and the min/max
/// revision filters. `header.revision` is the current revision, whatever revision was read.
pub fn range(s: &impl KvRead, req: &RangeRequest) -> Result<RangeResponse> {
    use range_request::{SortOrder, SortTarget};
    let rev = check_revision(s, req.revision)?;
    let krange = KeyRange::new(&req.key, &req.range_end);
    let header = Some(ResponseHeader {
        revision: s.current(),
        ..Default::default()
    });

    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    }
    if target == SortTarget::Key && order == SortOrder::Ascend {
        order = SortOrder::None;
    }
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;

    if req.count_only {
        let hits = s.visible(&krange, rev, false)?;
        return Ok(RangeResponse {
            header,
            kvs: Vec::new(),
            more: false,
            count: hits.len() as i64,
        });
    }

    let limit = if req.limit > 0 {
        req.limit as usize
    } else {
        usize::MAX
    };
    let whole = order != SortOrder::None || filtered;
    let mut hits = s.visible(&krange, rev, whole)?;
    let count = hits.len() as i64;
    let mut more = false;
    let mut kvs: Vec<KeyValue>;
    if whole {
        kvs = hits.into_iter().filter_map(|h| h.kv).collect();
        kvs.retain(|kv| {
            (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
        });
        if order != SortOrder::None {
            let cmp = |a: &KeyValue, b: &KeyValue| -> Ordering {
                match target {
                    SortTarget::Key => a.key.cmp(&b.key),
                    SortTarget::Version => a.version.cmp(&b.version),
                    SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                    SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                    SortTarget::Value => a.value.cmp(&b.value),
                }
            };
            if order == SortOrder::Descend {
                kvs.sort_by(|a, b| cmp(b, a));
            } else {
                kvs.sort_by(cmp);
            }
        }
        if kvs.len() > limit {
            kvs.truncate(limit);
            more = true;
        }
    } else {
        if hits.len() > limit {
            hits.truncate(limit);
            more = true;
        }
        s.fetch(&mut hits)?;
        kvs = hits.into_iter().filter_map(|h| h.kv).collect();
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse {
        header,
        kvs,
        more,
        count,
    })
}
