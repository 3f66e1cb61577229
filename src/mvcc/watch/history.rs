//! Catch-up reads: the events of a revision window, read from the revision-keyed `kv` column family.
//!
//! A window starts at the lowest `min_rev` of the watchers being synced and ends at the hub's
//! revision. It is read on one RocksDB snapshot, whose compacted revision is taken *after* the
//! snapshot (as `Store::with_view` does), so every record at or above that compacted revision is in
//! it. The window is cut at a revision boundary when it holds [`MAX_REVS`] revisions with events of
//! interest, [`MAX_BYTES`] of such events, or [`MAX_SCANNED`] records, so memory stays bounded; one
//! revision is never split (all events of a revision stay together).
//!
//! A `kv` record under a tombstone key is a DELETE: it holds only `{key, mod_revision}`. Every other
//! record is a PUT with the full KeyValue. `prev_kv`, when a watcher wants it, is the key's version at
//! `mod_revision - 1` (none for creates, none when that revision is compacted).

use std::sync::Arc;

use prost::Message;

use super::Filter;
use crate::error::{Error, Result};
use crate::mvcc::revision::Revision;
use crate::mvcc::store::{KeyRange, KvRead, Store};
use crate::proto::mvccpb::{event::EventType, Event, KeyValue};
use crate::storage::CF_KV;

/// Most revisions with events of interest in one window (etcd's batch of 1000 revisions).
pub(crate) const MAX_REVS: usize = 1000;
/// Soft limit on the encoded size of the events kept for one window (at least one revision is kept).
pub(crate) const MAX_BYTES: usize = 4 << 20;
/// Most `kv` records looked at in one window.
pub(crate) const MAX_SCANNED: usize = 20_000;

/// A watcher being synced, as the reader sees it.
#[derive(Debug, Clone)]
pub(crate) struct Chosen {
    pub id: u64,
    pub min_rev: i64,
    pub range: KeyRange,
    pub filter: Filter,
    pub prev_kv: bool,
}

/// What a window read produced.
#[derive(Debug)]
pub(crate) struct Window {
    /// Events of interest to at least one chosen watcher, in revision order.
    pub events: Vec<Arc<Event>>,
    /// Every event of interest with revision `<= hi` (and `>= min_rev` of a watcher) is in `events`.
    pub hi: i64,
    /// The compacted revision the read was consistent with; watchers below it got nothing.
    pub compact: i64,
}

/// True for a PUT that created its key (no previous version to report).
pub(crate) fn is_create(ev: &Event) -> bool {
    ev.r#type == EventType::Put as i32
        && ev
            .kv
            .as_ref()
            .is_some_and(|kv| kv.create_revision == kv.mod_revision)
}

/// Reads the window of events for `chosen` up to revision `to`.
pub(crate) fn read_window(store: &Store, chosen: &[Chosen], to: i64) -> Result<Window> {
    store.with_view(|view| {
        let compact = view.compacted();
        let valid: Vec<&Chosen> = chosen
            .iter()
            .filter(|c| c.min_rev >= compact && c.min_rev <= to)
            .collect();
        let Some(from) = valid.iter().map(|c| c.min_rev).min() else {
            return Ok(Window {
                events: Vec::new(),
                hi: to,
                compact,
            });
        };
        let upper = Revision::new(to.saturating_add(1), 0).kv_key(false);
        let mut it = view.reader.src.cursor(CF_KV, Some(upper))?;
        it.seek(&Revision::new(from, 0).kv_key(false));

        let mut events: Vec<Arc<Event>> = Vec::new();
        let mut hi = to;
        let mut current_main: Option<i64> = None;
        let mut current_kept = false;
        let (mut kept_revs, mut bytes, mut scanned) = (0usize, 0usize, 0usize);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let (rev, tomb) = Revision::from_kv_key(k)
                .ok_or_else(|| Error::Internal("bad kv key in watch history".into()))?;
            if current_main != Some(rev.main) {
                if kept_revs >= MAX_REVS || bytes >= MAX_BYTES || scanned >= MAX_SCANNED {
                    hi = rev.main - 1;
                    break;
                }
                current_main = Some(rev.main);
                current_kept = false;
            }
            scanned += 1;
            let mut kv = KeyValue::decode(v)?;
            let r#type = if tomb {
                kv.mod_revision = rev.main;
                EventType::Delete
            } else {
                EventType::Put
            };
            let mut ev = Event {
                r#type: r#type as i32,
                kv: None,
                prev_kv: None,
            };
            let mut wanted = false;
            let mut wants_prev = false;
            for c in &valid {
                if c.min_rev <= rev.main && c.range.contains(&kv.key) && c.filter.keeps(&ev) {
                    wanted = true;
                    wants_prev |= c.prev_kv;
                }
            }
            if !wanted {
                it.next();
                continue;
            }
            ev.kv = Some(kv);
            if wants_prev && !is_create(&ev) && rev.main > compact {
                let key = ev.kv.as_ref().map(|kv| kv.key.clone()).unwrap_or_default();
                let hits = view.visible(&KeyRange::new(&key, b""), rev.main - 1, true)?;
                ev.prev_kv = hits.into_iter().next().and_then(|h| h.kv);
            }
            bytes += ev.encoded_len();
            if !current_kept {
                current_kept = true;
                kept_revs += 1;
            }
            events.push(Arc::new(ev));
            it.next();
        }
        it.status()?;
        Ok(Window {
            events,
            hi,
            compact,
        })
    })
}
