//! The in-memory engine: every column family an ordered map, shared copy-on-write with snapshots.
//!
//! A snapshot (and every cursor) holds the maps as they were; a write clones them only while such a
//! view is alive, so writes are cheap when nobody is reading a snapshot. Nothing survives a restart:
//! the unit tests run MVCC, leases and apply on it to show that they depend only on the [`Engine`]
//! seam, and a member using it is rebuilt from its raft log and snapshots.
//!
//! Invariant: a batch is applied under the write lock to a private copy and published whole, so a
//! reader sees all of a batch or none of it.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, RwLock};

use super::engine::{Batch, Cf, Cursor, Engine, Op, Read};
use super::STATE_DB_CFS;
use crate::error::{Error, Result};

type Table = BTreeMap<Vec<u8>, Vec<u8>>;

/// One map per column family, in `cfs` order.
#[derive(Clone, Default)]
struct Tables(Vec<Table>);

/// The file a checkpoint of this engine is written to, inside the checkpoint directory.
const CHECKPOINT_FILE: &str = "state.mem";

/// An in-memory database.
pub struct Memory {
    cfs: &'static [&'static str],
    tables: RwLock<Arc<Tables>>,
}

impl Memory {
    /// An empty database with the state column families.
    pub fn new() -> Memory {
        Memory::with_cfs(STATE_DB_CFS)
    }

    fn with_cfs(cfs: &'static [&'static str]) -> Memory {
        Memory {
            cfs,
            tables: RwLock::new(Arc::new(Tables(vec![Table::new(); cfs.len()]))),
        }
    }

    fn current(&self) -> Arc<Tables> {
        match self.tables.read() {
            Ok(t) => t.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

impl Default for Memory {
    fn default() -> Self {
        Memory::new()
    }
}

fn position(cfs: &[&str], cf: Cf) -> Result<usize> {
    cfs.iter()
        .position(|n| *n == cf)
        .ok_or_else(|| Error::Internal(format!("missing column family {cf}")))
}

/// A frozen set of maps as a reader.
struct View {
    cfs: &'static [&'static str],
    tables: Arc<Tables>,
}

impl Read for View {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tables.0[position(self.cfs, cf)?].get(key).cloned())
    }
    fn cursor(&self, cf: Cf, upper: Option<Vec<u8>>) -> Result<Box<dyn Cursor + '_>> {
        Ok(Box::new(MemCursor {
            tables: self.tables.clone(),
            cf: position(self.cfs, cf)?,
            upper,
            at: None,
        }))
    }
}

struct MemCursor {
    tables: Arc<Tables>,
    cf: usize,
    upper: Option<Vec<u8>>,
    at: Option<(Vec<u8>, Vec<u8>)>,
}

impl MemCursor {
    fn land(&mut self, from: Bound<&[u8]>) {
        let table = &self.tables.0[self.cf];
        self.at = table
            .range::<[u8], _>((from, Bound::Unbounded))
            .next()
            .filter(|(k, _)| {
                self.upper
                    .as_ref()
                    .is_none_or(|u| k.as_slice() < u.as_slice())
            })
            .map(|(k, v)| (k.clone(), v.clone()));
    }
}

impl Cursor for MemCursor {
    fn seek(&mut self, key: &[u8]) {
        self.land(Bound::Included(key));
    }
    fn next(&mut self) {
        if let Some((k, _)) = self.at.take() {
            self.land(Bound::Excluded(&k));
        }
    }
    fn key(&self) -> Option<&[u8]> {
        self.at.as_ref().map(|(k, _)| k.as_slice())
    }
    fn value(&self) -> Option<&[u8]> {
        self.at.as_ref().map(|(_, v)| v.as_slice())
    }
    fn status(&self) -> Result<()> {
        Ok(())
    }
}

impl Read for Memory {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.current().0[position(self.cfs, cf)?].get(key).cloned())
    }
    fn cursor(&self, cf: Cf, upper: Option<Vec<u8>>) -> Result<Box<dyn Cursor + '_>> {
        Ok(Box::new(MemCursor {
            tables: self.current(),
            cf: position(self.cfs, cf)?,
            upper,
            at: None,
        }))
    }
}

impl Engine for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn snapshot(&self) -> Box<dyn Read + '_> {
        Box::new(View {
            cfs: self.cfs,
            tables: self.current(),
        })
    }

    fn write(&self, batch: Batch, _sync: bool) -> Result<()> {
        let ops = batch.into_ops();
        let mut slot = match self.tables.write() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        // Resolve every family first, so a bad batch changes nothing.
        let mut resolved = Vec::with_capacity(ops.len());
        for op in ops {
            let cf = match &op {
                Op::Put(cf, ..) | Op::Delete(cf, _) | Op::Clear(cf) => *cf,
            };
            resolved.push((position(self.cfs, cf)?, op));
        }
        let tables = Arc::make_mut(&mut slot);
        for (i, op) in resolved {
            let t = &mut tables.0[i];
            match op {
                Op::Put(_, k, v) => {
                    t.insert(k, v);
                }
                Op::Delete(_, k) => {
                    t.remove(&k);
                }
                Op::Clear(_) => t.clear(),
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        self.size_in_use_bytes()
    }

    fn size_in_use_bytes(&self) -> u64 {
        self.current()
            .0
            .iter()
            .flat_map(|t| t.iter())
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }

    fn defragment(&self) -> Result<()> {
        Ok(())
    }

    /// One file: per family its name, entry count and length-prefixed entries.
    fn checkpoint(&self, dir: &Path) -> Result<()> {
        let io = |e: std::io::Error| Error::Storage(format!("checkpoint {}: {e}", dir.display()));
        let tables = self.current();
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut out = Vec::new();
        for (name, t) in self.cfs.iter().zip(tables.0.iter()) {
            put_bytes(&mut out, name.as_bytes());
            out.extend_from_slice(&(t.len() as u64).to_be_bytes());
            for (k, v) in t {
                put_bytes(&mut out, k);
                put_bytes(&mut out, v);
            }
        }
        let mut f = std::fs::File::create(dir.join(CHECKPOINT_FILE)).map_err(io)?;
        f.write_all(&out).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(())
    }

    fn open_checkpoint(&self, dir: &Path) -> Result<Box<dyn Read>> {
        let path = dir.join(CHECKPOINT_FILE);
        let bad = |what: &str| Error::Storage(format!("checkpoint {}: {what}", path.display()));
        let mut data = Vec::new();
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(|e| bad(&e.to_string()))?;
        let mut tables = Tables(vec![Table::new(); self.cfs.len()]);
        let mut rest = data.as_slice();
        while !rest.is_empty() {
            let name = take_bytes(&mut rest).ok_or_else(|| bad("truncated"))?;
            let i = self
                .cfs
                .iter()
                .position(|n| n.as_bytes() == name)
                .ok_or_else(|| bad("unknown column family"))?;
            let n = take_u64(&mut rest).ok_or_else(|| bad("truncated"))?;
            for _ in 0..n {
                let k = take_bytes(&mut rest).ok_or_else(|| bad("truncated"))?;
                let v = take_bytes(&mut rest).ok_or_else(|| bad("truncated"))?;
                tables.0[i].insert(k.to_vec(), v.to_vec());
            }
        }
        Ok(Box::new(View {
            cfs: self.cfs,
            tables: Arc::new(tables),
        }))
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn take_u64(rest: &mut &[u8]) -> Option<u64> {
    let (head, tail) = rest.split_first_chunk::<8>()?;
    *rest = tail;
    Some(u64::from_be_bytes(*head))
}

fn take_bytes<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (head, tail) = rest.split_first_chunk::<4>()?;
    let n = u32::from_be_bytes(*head) as usize;
    if tail.len() < n {
        return None;
    }
    let (b, tail) = tail.split_at(n);
    *rest = tail;
    Some(b)
}
