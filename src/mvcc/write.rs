//! Writes to the MVCC keyspace, done by apply: one [`WriteBatch`] per batch of committed raft entries.
//!
//! The batch keeps an overlay of the versions it wrote, so that later operations in the same batch (and
//! later ops of the same txn) read their own writes before anything reaches RocksDB. [`WriteBatch::finish`]
//! writes everything, the applied raft index included, in one RocksDB write, then publishes the new
//! revisions to readers.
//!
//! Invariants:
//! * one main revision per write transaction that changed something; sub revisions number its changes
//!   from 0 in execution order; nothing that failed its checks writes anything;
//! * a write transaction is checked completely before its first change (see `txn.rs`), so an error never
//!   leaves a partial transaction in the batch.

use std::collections::{BTreeMap, HashMap};

use prost::Message;

use super::revision::{index_key, Revision, TOMBSTONE};
use super::store::{
    Hit, KeyRange, KvRead, Reader, Store, META_COMPACT_REV, META_CURRENT_REV, META_KEY_COUNT,
};
use crate::error::{Error, Result};
use crate::lease::records;
use crate::proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
};
use crate::proto::metastorepb::LeaseRecord;
use crate::proto::mvccpb::{event::EventType, Event, KeyValue};
use crate::storage::{encode_u64, Batch, CF_INDEX, CF_KV, CF_META};

/// Versions written by this batch: user key -> (revision, value or `None` for a tombstone), oldest first.
type Overlay = BTreeMap<Vec<u8>, Vec<(Revision, Option<KeyValue>)>>;

/// Writes to the keyspace (implemented by the apply batch).
pub trait KvWrite: KvRead {
    fn put(&mut self, req: &PutRequest) -> Result<PutResponse>;
    fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse>;
    /// The latest live version of a key, including this batch's writes.
    fn get_latest(&self, key: &[u8]) -> Result<Option<KeyValue>>;
    /// Closes the current write transaction: its changes share one main revision.
    fn end_txn(&mut self) -> i64;
    /// True when the lease exists.
    fn lease_exists(&self, id: i64) -> Result<bool>;
}

/// One apply batch: an engine write batch plus the overlay of its writes.
pub struct WriteBatch<'a> {
    store: &'a Store,
    batch: Batch,
    overlay: Overlay,
    /// Latest main revision, counting transactions already ended in this batch.
    rev: i64,
    /// Changes made by the open transaction (its next sub revision).
    sub: i64,
    compact: i64,
    /// Events produced, in order (for the watch hub).
    pub events: Vec<Event>,
    /// A compaction scheduled by this batch.
    pub compaction: Option<i64>,
    /// Leases granted (Some) or revoked (None) by this batch.
    leases: HashMap<i64, Option<LeaseRecord>>,
    /// Key attachments changed by this batch: (lease, key) -> attached.
    attachments: BTreeMap<(i64, Vec<u8>), bool>,
    /// Live keys added (or, negative, removed) by this batch.
    keys_delta: i64,
    /// Put and DeleteRange operations applied by this batch (for the metrics).
    puts: u64,
    deletes: u64,
}

impl<'a> WriteBatch<'a> {
    pub fn new(store: &'a Store) -> WriteBatch<'a> {
        WriteBatch {
            store,
            batch: Batch::new(),
            overlay: Overlay::new(),
            rev: store.current_revision(),
            sub: 0,
            compact: store.compact_revision(),
            events: Vec::new(),
            compaction: None,
            leases: HashMap::new(),
            attachments: BTreeMap::new(),
            keys_delta: 0,
            puts: 0,
            deletes: 0,
        }
    }

    /// The lease record, including this batch's grants and revokes.
    pub fn lease(&self, id: i64) -> Result<Option<LeaseRecord>> {
        if let Some(l) = self.leases.get(&id) {
            return Ok(*l);
        }
        records::get(self.store.db(), id)
    }

    /// Grants a lease (etcd's checks on the id; the TTL was settled before proposing).
    pub fn lease_grant(&mut self, id: i64, ttl: i64) -> Result<()> {
        if self.lease(id)?.is_some() {
            return Err(Error::LeaseExists);
        }
        let rec = LeaseRecord { id, ttl };
        records::put(&mut self.batch, &rec);
        self.leases.insert(id, Some(rec));
        Ok(())
    }

    /// Keys attached to a lease, in key order (including this batch's changes).
    pub fn lease_keys(&self, id: i64) -> Result<Vec<Vec<u8>>> {
        let mut keys: std::collections::BTreeSet<Vec<u8>> =
            records::attached_keys(self.store.db(), id)?
                .into_iter()
                .collect();
        for ((l, k), attached) in self.attachments.range((id, Vec::new())..) {
            if *l != id {
                break;
            }
            if *attached {
                keys.insert(k.clone());
            } else {
                keys.remove(k);
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Revokes a lease: its keys are deleted in one write transaction. Returns the revision after it.
    pub fn lease_revoke(&mut self, id: i64) -> Result<i64> {
        if self.lease(id)?.is_none() {
            return Err(Error::LeaseNotFound);
        }
        for key in self.lease_keys(id)? {
            self.delete_range(&DeleteRangeRequest {
                key,
                ..Default::default()
            })?;
        }
        let rev = self.end_txn();
        records::delete(&mut self.batch, id);
        self.leases.insert(id, None);
        Ok(rev)
    }

    fn attach(&mut self, lease: i64, key: &[u8], on: bool) -> Result<()> {
        records::attach(&mut self.batch, lease, key, on);
        self.attachments.insert((lease, key.to_vec()), on);
        Ok(())
    }

    fn reader(&self) -> Reader<'a> {
        Reader {
            src: &**self.store.db(),
        }
    }

    /// The engine batch, for other state written by apply in the same write.
    pub fn raw(&mut self) -> &mut Batch {
        &mut self.batch
    }

    /// Schedules a compaction at `req.revision` (etcd's checks; the physical work is the compactor's).
    pub fn compact(&mut self, req: &CompactionRequest) -> Result<i64> {
        if req.revision > self.current() {
            return Err(Error::FutureRev);
        }
        if req.revision <= self.compact {
            return Err(Error::Compacted);
        }
        self.compact = req.revision;
        self.batch
            .put(CF_META, META_COMPACT_REV, encode_u64(req.revision as u64));
        self.compaction = Some(req.revision);
        Ok(self.current())
    }

    /// Writes the batch with the applied index (not synced: the raft log replays it) and publishes
    /// the new revisions. Returns the current revision.
    pub fn finish(mut self, meta: &[(&[u8], Vec<u8>)]) -> Result<(i64, Vec<Event>, Option<i64>)> {
        self.batch
            .put(CF_META, META_CURRENT_REV, encode_u64(self.rev as u64));
        let keys = (self.store.metrics.keys.get() + self.keys_delta).max(0);
        self.batch
            .put(CF_META, META_KEY_COUNT, encode_u64(keys as u64));
        for (k, v) in meta {
            self.batch.put(CF_META, *k, v.as_slice());
        }
        let started = std::time::Instant::now();
        self.store.db().write(self.batch, false)?;
        let m = &self.store.metrics;
        m.backend_commit.observe(started.elapsed().as_secs_f64());
        m.keys.set(keys);
        m.put.inc_by(self.puts);
        m.delete.inc_by(self.deletes);
        let mut cache = self.store.latest_cache();
        for (key, mut versions) in self.overlay {
            if let Some((_, kv)) = versions.pop() {
                cache.insert(key, kv);
            }
        }
        drop(cache);
        self.store.publish(self.rev, self.compact);
        Ok((self.rev, self.events, self.compaction))
    }

    fn record(&mut self, key: &[u8], rev: Revision, kv: Option<KeyValue>) -> Result<()> {
        match &kv {
            Some(v) => {
                self.batch.put(CF_KV, rev.kv_key(false), v.encode_to_vec());
                self.batch.put(CF_INDEX, index_key(key, rev), Vec::new());
            }
            None => {
                let tomb = KeyValue {
                    key: key.to_vec(),
                    mod_revision: rev.main,
                    ..Default::default()
                };
                self.batch
                    .put(CF_KV, rev.kv_key(true), tomb.encode_to_vec());
                self.batch.put(CF_INDEX, index_key(key, rev), [TOMBSTONE]);
            }
        }
        self.overlay
            .entry(key.to_vec())
            .or_default()
            .push((rev, kv));
        Ok(())
    }

    fn next_rev(&mut self) -> Revision {
        let r = Revision::new(self.rev + 1, self.sub);
        self.sub += 1;
        r
    }
}

impl KvRead for WriteBatch<'_> {
    fn current(&self) -> i64 {
        if self.sub > 0 {
            self.rev + 1
        } else {
            self.rev
        }
    }

    fn compacted(&self) -> i64 {
        self.compact
    }

    fn visible(&self, range: &KeyRange, rev: i64, fetch: bool) -> Result<Vec<Hit>> {
        let mut hits = self.reader().scan(range, rev)?;
        // Versions of this batch override what the database holds.
        let mut touched = false;
        let mut over: BTreeMap<Vec<u8>, Option<Hit>> = BTreeMap::new();
        let lower = std::ops::Bound::Included(range.key.clone());
        for (k, versions) in self.overlay.range((lower, std::ops::Bound::Unbounded)) {
            if !range.contains(k) {
                if matches!(range.end, super::store::RangeEnd::Single) {
                    break;
                }
                if let super::store::RangeEnd::Before(e) = &range.end {
                    if k >= e {
                        break;
                    }
                }
                continue;
            }
            if let Some((r, v)) = versions.iter().rev().find(|(r, _)| r.main <= rev) {
                touched = true;
                over.insert(
                    k.clone(),
                    v.as_ref().map(|kv| Hit {
                        key: k.clone(),
                        rev: *r,
                        kv: Some(kv.clone()),
                    }),
                );
            }
        }
        if touched {
            hits.retain(|h| !over.contains_key(&h.key));
            hits.extend(over.into_values().flatten());
            hits.sort_by(|a, b| a.key.cmp(&b.key));
        }
        if fetch {
            self.reader().fetch(&mut hits)?;
        }
        Ok(hits)
    }

    fn fetch(&self, hits: &mut [Hit]) -> Result<()> {
        self.reader().fetch(hits)
    }
}

impl KvWrite for WriteBatch<'_> {
    fn get_latest(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        if let Some((_, v)) = self.overlay.get(key).and_then(|v| v.last()) {
            return Ok(v.clone());
        }
        if let Some(v) = self.store.latest_cache().get(key) {
            return Ok(v);
        }
        match self.reader().latest(key)? {
            Some((rev, false)) => self.reader().get_rev(rev),
            _ => Ok(None),
        }
    }

    fn put(&mut self, req: &PutRequest) -> Result<PutResponse> {
        let prev = self.get_latest(&req.key)?;
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
            return Err(Error::KeyNotFound);
        }
        if req.lease != 0 && !req.ignore_lease && !self.lease_exists(req.lease)? {
            return Err(Error::LeaseNotFound);
        }
        let rev = self.next_rev();
        let (create_revision, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (rev.main, 1),
        };
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision,
            mod_revision: rev.main,
            version,
            value: match (&prev, req.ignore_value) {
                (Some(p), true) => p.value.clone(),
                _ => req.value.clone(),
            },
            lease: match (&prev, req.ignore_lease) {
                (Some(p), true) => p.lease,
                _ => req.lease,
            },
        };
        self.record(&req.key, rev, Some(kv.clone()))?;
        self.puts += 1;
        if prev.is_none() {
            self.keys_delta += 1;
        }
        let old_lease = prev.as_ref().map_or(0, |p| p.lease);
        if old_lease != kv.lease {
            if old_lease != 0 {
                self.attach(old_lease, &req.key, false)?;
            }
            if kv.lease != 0 {
                self.attach(kv.lease, &req.key, true)?;
            }
        }
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: prev.clone(),
        });
        Ok(PutResponse {
            header: None,
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let range = KeyRange::new(&req.key, &req.range_end);
        let cur = self.current();
        let hits = self.visible(&range, cur, true)?;
        for h in &hits {
            let rev = self.next_rev();
            self.record(&h.key, rev, None)?;
            if let Some(lease) = h.kv.as_ref().map(|kv| kv.lease).filter(|&l| l != 0) {
                self.attach(lease, &h.key, false)?;
            }
            self.events.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue {
                    key: h.key.clone(),
                    mod_revision: rev.main,
                    ..Default::default()
                }),
                prev_kv: h.kv.clone(),
            });
        }
        let deleted = hits.len() as i64;
        self.deletes += 1;
        self.keys_delta -= deleted;
        let prev_kvs = if req.prev_kv {
            hits.into_iter().filter_map(|h| h.kv).collect()
        } else {
            Vec::new()
        };
        Ok(DeleteRangeResponse {
            header: None,
            deleted,
            prev_kvs,
        })
    }

    fn lease_exists(&self, id: i64) -> Result<bool> {
        Ok(self.lease(id)?.is_some())
    }

    fn end_txn(&mut self) -> i64 {
        if self.sub > 0 {
            self.rev += 1;
            self.sub = 0;
        }
        self.rev
    }
}
