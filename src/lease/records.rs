//! Lease records and key attachments in the `lease` column family (replicated state, written by
//! apply through the MVCC write batch): `r<id>` holds a lease's record, `k<id><key>` marks a key
//! attached to it. This module owns the encoding; nothing else builds these keys.
//!
//! Invariant: ids are encoded big-endian as u64, so one lease's attachments are contiguous and in
//! key order.

use prost::Message;

use crate::error::Result;
use crate::proto::metastorepb::LeaseRecord;
use crate::storage::{Batch, Db, CF_LEASE};

/// `lease` CF key of a lease record.
fn record_key(id: i64) -> Vec<u8> {
    let mut k = vec![b'r'];
    k.extend_from_slice(&(id as u64).to_be_bytes());
    k
}

/// `lease` CF key prefix of the keys attached to a lease.
fn attach_prefix(id: i64) -> Vec<u8> {
    let mut k = vec![b'k'];
    k.extend_from_slice(&(id as u64).to_be_bytes());
    k
}

/// Keys attached to a lease in the database, in key order.
pub fn attached_keys(db: &Db, id: i64) -> Result<Vec<Vec<u8>>> {
    let prefix = attach_prefix(id);
    let mut it = db.cursor(CF_LEASE, None)?;
    it.seek(&prefix);
    let mut keys = Vec::new();
    while let Some(k) = it.key() {
        if !k.starts_with(&prefix) {
            break;
        }
        keys.push(k[prefix.len()..].to_vec());
        it.next();
    }
    it.status()?;
    Ok(keys)
}

/// Every lease record in the database.
pub fn all_leases(db: &Db) -> Result<Vec<LeaseRecord>> {
    let mut it = db.cursor(CF_LEASE, None)?;
    it.seek(b"r");
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if k.first() != Some(&b'r') {
            break;
        }
        out.push(LeaseRecord::decode(v)?);
        it.next();
    }
    it.status()?;
    Ok(out)
}

/// `lease` CF key marking `key` attached to lease `id`.
fn attach_key(id: i64, key: &[u8]) -> Vec<u8> {
    let mut k = attach_prefix(id);
    k.extend_from_slice(key);
    k
}

/// A lease record as stored, if the lease exists.
pub fn get(db: &Db, id: i64) -> Result<Option<LeaseRecord>> {
    match db.get(CF_LEASE, &record_key(id))? {
        Some(b) => Ok(Some(LeaseRecord::decode(b.as_slice())?)),
        None => Ok(None),
    }
}

/// Writes a lease record into `batch`.
pub fn put(batch: &mut Batch, rec: &LeaseRecord) {
    batch.put(CF_LEASE, record_key(rec.id), rec.encode_to_vec());
}

/// Removes a lease record in `batch` (its attachments are removed one by one as its keys go).
pub fn delete(batch: &mut Batch, id: i64) {
    batch.delete(CF_LEASE, record_key(id));
}

/// Attaches `key` to lease `id` in `batch` (`on == false` detaches it).
pub fn attach(batch: &mut Batch, id: i64, key: &[u8], on: bool) {
    if on {
        batch.put(CF_LEASE, attach_key(id, key), Vec::new());
    } else {
        batch.delete(CF_LEASE, attach_key(id, key));
    }
}
