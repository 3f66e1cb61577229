//! HashKV: a checksum of the keyspace history that is equal on every member after the same writes.
//!
//! It covers every `kv` record from the compacted revision up to the requested one. Those records are
//! never touched by physical compaction, so the hash does not depend on how far a member's background
//! compaction has got. Only equality between metastore members is meaningful (etcd's values differ).

use super::revision::Revision;
use super::store::ReadView;
use crate::error::Result;
use crate::storage::CF_KV;

/// CRC-32 of the `kv` records with `compact <= main <= rev`.
pub fn hash_kv(view: &ReadView<'_>, rev: i64) -> Result<u32> {
    let upper = Revision::new(rev + 1, 0).kv_key(false);
    let mut it = view.reader.src.cursor(CF_KV, Some(upper))?;
    it.seek(&Revision::new(view.compact.max(0), 0).kv_key(false));
    let mut h = crc32fast::Hasher::new();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        h.update(k);
        h.update(v);
        it.next();
    }
    it.status()?;
    Ok(h.finalize())
}
