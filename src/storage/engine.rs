//! The storage engine seam: what the state (keyspace, leases, members, alarms, this member's local
//! facts) needs from a database, so that MVCC and the other state owners never name RocksDB.
//!
//! An engine is a set of named column families of ordered byte keys ([`Read`] for point reads and
//! cursors), written only through atomic [`Batch`]es, with point-in-time snapshots and checkpoints (a
//! consistent copy in a directory, what a lagging peer is sent). Two engines implement it:
//! `rocks.rs` (RocksDB, the default) and `memory.rs` (ordered maps in memory).
//!
//! Invariants every engine keeps:
//! * a batch is applied atomically: a reader (or a snapshot) sees all of it or none of it;
//! * a snapshot never changes after it is taken, whatever is written later;
//! * cursors visit keys in ascending byte order and never beyond their upper bound;
//! * `write(batch, true)` returns only once the batch survives a crash of the process (and, for the
//!   on-disk engine, of the machine).

use std::path::Path;

use crate::error::Result;

/// A column family name (one of `storage::STATE_DB_CFS`).
pub type Cf = &'static str;

/// Point reads and ordered scans, implemented by an engine (its latest state) and by its snapshots.
pub trait Read: Send + Sync {
    /// The value of `key` in `cf`.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// The values of `keys` in `cf`, in the order asked.
    fn multi_get(&self, cf: Cf, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(cf, k)).collect()
    }

    /// A cursor over `cf` that stops before `upper` (exclusive) when one is given. It starts
    /// unpositioned: call [`Cursor::seek`] first.
    fn cursor(&self, cf: Cf, upper: Option<Vec<u8>>) -> Result<Box<dyn Cursor + '_>>;

    /// A big-endian u64 stored under `key` (0 when absent).
    fn get_u64(&self, cf: Cf, key: &[u8]) -> Result<u64> {
        Ok(self
            .get(cf, key)?
            .map(|v| super::decode_u64(&v))
            .unwrap_or(0))
    }
}

/// A position in one column family, moving forward.
pub trait Cursor {
    /// Moves to the first key `>= key`.
    fn seek(&mut self, key: &[u8]);
    /// Moves to the next key.
    fn next(&mut self);
    /// The key under the cursor, `None` past the end (or the upper bound).
    fn key(&self) -> Option<&[u8]>;
    /// The value under the cursor.
    fn value(&self) -> Option<&[u8]>;
    /// Whether the scan stopped on an error rather than at the end.
    fn status(&self) -> Result<()>;
}

/// A storage engine holding the state database.
pub trait Engine: Read {
    /// The engine's name, as `--storage-engine` spells it.
    fn name(&self) -> &'static str;
    /// A point-in-time view of every column family.
    fn snapshot(&self) -> Box<dyn Read + '_>;
    /// Applies `batch` atomically; `sync` makes it durable before returning.
    fn write(&self, batch: Batch, sync: bool) -> Result<()>;
    /// Makes every write so far durable (before the raft log is truncated behind applied state).
    fn sync(&self) -> Result<()>;
    /// A clean stop: whatever the engine buffers is written out, so the next start replays nothing.
    fn flush(&self) -> Result<()>;
    /// Space taken, in bytes.
    fn size_bytes(&self) -> u64;
    /// Space taken by live data, in bytes.
    fn size_in_use_bytes(&self) -> u64;
    /// etcd's defragment: gives back the space of deleted and overwritten data. Blocking.
    fn defragment(&self) -> Result<()>;
    /// Writes a consistent copy of every column family into `dir` (which must not exist).
    fn checkpoint(&self, dir: &Path) -> Result<()>;
    /// Opens a checkpoint made by [`Engine::checkpoint`] (of this engine kind) for reading.
    fn open_checkpoint(&self, dir: &Path) -> Result<Box<dyn Read>>;
}

/// One change in a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(Cf, Vec<u8>, Vec<u8>),
    Delete(Cf, Vec<u8>),
    /// Removes every key of the column family.
    Clear(Cf),
}

/// Changes applied together, in order, by [`Engine::write`].
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<Op>,
    bytes: usize,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let (key, value) = (key.into(), value.into());
        self.bytes += key.len() + value.len();
        self.ops.push(Op::Put(cf, key, value));
    }

    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        let key = key.into();
        self.bytes += key.len();
        self.ops.push(Op::Delete(cf, key));
    }

    pub fn clear(&mut self, cf: Cf) {
        self.ops.push(Op::Clear(cf));
    }

    /// Number of changes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The changes, in order.
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}
