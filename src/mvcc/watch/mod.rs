//! The watch hub: etcd's watchable store (DESIGN.md §3, etcd-api.md §2.8).
//!
//! Every watcher belongs to one of three groups:
//! * **synced**: it has seen every event in its range up to the hub's revision; apply's
//!   [`WatchHub::notify`] hands it the events of each new revision directly;
//! * **unsynced**: it must catch up from history first (created with an old `start_revision`, or
//!   released from the victims); the sync thread reads the `kv` column family in bounded windows
//!   (`history.rs`) and moves it to synced once it reaches the hub's revision;
//! * **victim**: its stream's channel was full when an event was due; it is parked, holding nothing
//!   but the first revision it still needs, until the stream's consumer makes room; then it is
//!   unsynced again and catches up from history. A victim that fell behind a compaction gets etcd's
//!   `compact_revision` cancel.
//!
//! Each gRPC stream owns a [`WatchStream`]: its watch ids, and the bounded channel ([`CHANNEL_LEN`])
//! every message for its watchers goes through, so that events, compaction cancels and progress
//! notifications keep one order per stream.
//!
//! Invariants:
//! * every send into a stream's channel happens under the hub lock and never waits (`try_send`), so
//!   the room seen under the lock can only grow until it is released, and apply never blocks on a
//!   consumer nor does work proportional to history;
//! * no RocksDB read happens under the hub lock (the sync thread reads between two short lock
//!   phases) and none on an async worker thread;
//! * a watcher's `min_rev` is the first revision it has not been sent; it receives each revision at
//!   most once and in order, and all events of one revision in one message;
//! * `last_rev` is the newest revision handed to [`WatchHub::notify`] (or found after a snapshot
//!   install); every event up to it is readable from the store;
//! * the ring holds every event with revision in `[ring_from, last_rev]` while any watcher is
//!   unsynced or a victim, so a watcher that read history up to just behind `last_rev` can finish
//!   from memory instead of racing apply forever.

mod group;
mod history;
// The same tests twice, once per storage engine (the file picks its engine by module name).
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
mod tests;
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[path = "tests.rs"]
mod tests_on_memory;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use prost::Message;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use self::group::SyncedIndex;
use self::history::{read_window, Chosen};
use super::store::{KeyRange, Store};
use crate::error::{Error, Result};
use crate::proto::mvccpb::{event::EventType, Event};

/// Messages a stream's channel holds before its watchers become victims (etcd's chanBufLen).
pub const CHANNEL_LEN: usize = 128;
/// Unsynced watchers looked at per sync round (etcd's maxWatchersPerSync).
const MAX_WATCHERS_PER_SYNC: usize = 512;
/// Bounds of the ring of recent events.
const RING_MAX_REVS: usize = 1024;
const RING_MAX_BYTES: usize = 8 << 20;
/// Sync thread pauses: while victims wait for room, when idle, after a storage error.
const VICTIM_POLL: Duration = Duration::from_millis(10);
const IDLE_POLL: Duration = Duration::from_millis(500);
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Event type filters of a watcher (`NOPUT`, `NODELETE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    pub no_put: bool,
    pub no_delete: bool,
}

impl Filter {
    /// True when the event passes the filters.
    pub fn keeps(&self, ev: &Event) -> bool {
        if ev.r#type == EventType::Delete as i32 {
            !self.no_delete
        } else {
            !self.no_put
        }
    }
}

/// A watch create request, as the hub takes it.
#[derive(Debug, Clone, Default)]
pub struct WatchSpec {
    /// 0 asks for an id picked by the stream.
    pub watch_id: i64,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub start_revision: i64,
    pub prev_kv: bool,
    pub filter: Filter,
}

/// Why a watch could not be created (the `cancel_reason` of the refusal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateError {
    EmptyRange,
    DuplicateId,
    /// A negative start revision (answered as etcd 3.6 does).
    Compacted,
}

impl CreateError {
    pub fn reason(&self) -> String {
        match self {
            CreateError::EmptyRange => "mvcc: watcher range is empty".into(),
            CreateError::DuplicateId => {
                "mvcc: duplicate watch ID provided on the WatchStream".into()
            }
            CreateError::Compacted => Error::Compacted.to_string(),
        }
    }
}

/// What a stream hands to its client, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// Events of one revision (live, `revision` = that revision) or of a catch-up batch
    /// (`revision` = the hub's revision when it was read).
    Events {
        watch_id: i64,
        revision: i64,
        events: Vec<Event>,
    },
    /// The watcher fell behind the compaction at `compact_revision` and was removed.
    Compacted {
        watch_id: i64,
        compact_revision: i64,
    },
    /// Progress at `revision`: `watch_id` -1 for the whole stream.
    Progress { watch_id: i64, revision: i64 },
}

/// What travels in a stream's channel (watchers named by hub handle, not by client id).
#[derive(Debug)]
enum HubMsg {
    Events {
        watcher: u64,
        revision: i64,
        events: Vec<Arc<Event>>,
    },
    Compacted {
        watcher: u64,
        compact_revision: i64,
    },
    Progress {
        watcher: Option<u64>,
        revision: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Synced,
    Unsynced,
    Victim,
}

/// The hub's side of a stream: its channel and how many of its watchers are parked.
struct StreamShared {
    tx: mpsc::Sender<HubMsg>,
    parked: AtomicUsize,
}

struct Watcher {
    stream: Arc<StreamShared>,
    range: KeyRange,
    min_rev: i64,
    filter: Filter,
    prev_kv: bool,
    group: Group,
}

#[derive(Default)]
struct State {
    watchers: HashMap<u64, Watcher>,
    synced: SyncedIndex,
    unsynced: BTreeSet<u64>,
    victims: BTreeSet<u64>,
    /// Where the next sync round starts looking in `unsynced` (round-robin).
    cursor: u64,
    last_rev: i64,
    ring: VecDeque<(i64, Vec<Arc<Event>>, usize)>,
    ring_bytes: usize,
    ring_from: i64,
}

impl State {
    fn recording(&self) -> bool {
        !self.unsynced.is_empty() || !self.victims.is_empty()
    }

    fn move_to(&mut self, id: u64, to: Group) {
        let State {
            watchers,
            synced,
            unsynced,
            victims,
            ..
        } = self;
        let Some(w) = watchers.get_mut(&id) else {
            return;
        };
        if w.group == to {
            return;
        }
        match w.group {
            Group::Synced => {
                synced.remove(id, &w.range);
            }
            Group::Unsynced => {
                unsynced.remove(&id);
            }
            Group::Victim => {
                victims.remove(&id);
                w.stream.parked.fetch_sub(1, Ordering::Relaxed);
            }
        }
        match to {
            Group::Synced => {
                synced.insert(id, &w.range);
            }
            Group::Unsynced => {
                unsynced.insert(id);
            }
            Group::Victim => {
                victims.insert(id);
                w.stream.parked.fetch_add(1, Ordering::Relaxed);
            }
        }
        w.group = to;
    }

    fn add(&mut self, id: u64, w: Watcher) {
        let group = w.group;
        match group {
            Group::Synced => {
                self.synced.insert(id, &w.range);
            }
            Group::Unsynced => {
                self.unsynced.insert(id);
            }
            Group::Victim => {
                self.victims.insert(id);
                w.stream.parked.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.watchers.insert(id, w);
    }

    fn remove(&mut self, id: u64) -> Option<Watcher> {
        let w = self.watchers.remove(&id)?;
        match w.group {
            Group::Synced => {
                self.synced.remove(id, &w.range);
            }
            Group::Unsynced => {
                self.unsynced.remove(&id);
            }
            Group::Victim => {
                self.victims.remove(&id);
                w.stream.parked.fetch_sub(1, Ordering::Relaxed);
            }
        }
        Some(w)
    }

    fn clear_ring(&mut self, from: i64) {
        self.ring.clear();
        self.ring_bytes = 0;
        self.ring_from = from;
    }

    fn record(&mut self, rev: i64, events: Vec<Arc<Event>>) {
        let bytes: usize = events.iter().map(|e| e.encoded_len()).sum();
        self.ring.push_back((rev, events, bytes));
        self.ring_bytes += bytes;
        while self.ring.len() > RING_MAX_REVS || self.ring_bytes > RING_MAX_BYTES {
            match self.ring.pop_front() {
                Some((r, _, b)) => {
                    self.ring_bytes -= b;
                    self.ring_from = r + 1;
                }
                None => break,
            }
        }
    }

    /// Events in the ring at or after `from` that `w` wants.
    fn ring_events(&self, from: i64, range: &KeyRange, filter: &Filter) -> Vec<Arc<Event>> {
        let mut out = Vec::new();
        for (r, evs, _) in &self.ring {
            if *r < from {
                continue;
            }
            for ev in evs {
                if ev.kv.as_ref().is_some_and(|kv| range.contains(&kv.key)) && filter.keeps(ev) {
                    out.push(ev.clone());
                }
            }
        }
        out
    }

    /// Hands the events of revision `rev` to the synced watchers they concern.
    fn dispatch(&mut self, rev: i64, run: &[Arc<Event>], scratch: &mut Vec<u64>) {
        let mut per: Vec<(u64, Vec<Arc<Event>>)> = Vec::new();
        let mut slot: HashMap<u64, usize> = HashMap::new();
        for ev in run {
            let Some(kv) = &ev.kv else { continue };
            scratch.clear();
            self.synced.matching(&kv.key, scratch);
            for id in scratch.iter() {
                let Some(w) = self.watchers.get(id) else {
                    continue;
                };
                if rev < w.min_rev {
                    continue;
                }
                let i = *slot.entry(*id).or_insert_with(|| {
                    per.push((*id, Vec::new()));
                    per.len() - 1
                });
                if w.filter.keeps(ev) {
                    per[i].1.push(ev.clone());
                }
            }
        }
        for (id, events) in per {
            let Some(w) = self.watchers.get_mut(&id) else {
                continue;
            };
            if events.is_empty() {
                w.min_rev = rev + 1;
                continue;
            }
            let msg = HubMsg::Events {
                watcher: id,
                revision: rev,
                events,
            };
            match w.stream.tx.try_send(msg) {
                Ok(()) | Err(TrySendError::Closed(_)) => w.min_rev = rev + 1,
                Err(TrySendError::Full(_)) => {
                    w.min_rev = rev;
                    self.move_to(id, Group::Victim);
                }
            }
        }
    }
}

struct Inner {
    store: Store,
    state: Mutex<State>,
    wake: Mutex<bool>,
    wake_cv: Condvar,
    next_handle: AtomicU64,
}

/// Shared handle on the hub (cheap to clone).
#[derive(Clone)]
pub struct WatchHub {
    inner: Arc<Inner>,
}

/// What a sync round left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Round {
    /// Unsynced watchers remain: run again now.
    Busy,
    /// Only victims remain: wait for room in their streams.
    Blocked,
    /// Nothing to do.
    Idle,
}

impl WatchHub {
    /// A hub at the store's current revision, with its sync thread running (the thread stops once
    /// every handle is dropped).
    pub fn new(store: Store) -> Result<WatchHub> {
        let hub = WatchHub::without_sync_thread(store);
        let weak = Arc::downgrade(&hub.inner);
        std::thread::Builder::new()
            .name("watch-sync".into())
            .spawn(move || sync_loop(weak))
            .map_err(|e| Error::Internal(format!("spawn watch sync thread: {e}")))?;
        Ok(hub)
    }

    /// A hub whose sync rounds are run by the caller ([`WatchHub::sync_round`]); for tests.
    pub(crate) fn without_sync_thread(store: Store) -> WatchHub {
        let last_rev = store.current_revision();
        let state = State {
            last_rev,
            ring_from: last_rev + 1,
            ..State::default()
        };
        WatchHub {
            inner: Arc::new(Inner {
                store,
                state: Mutex::new(state),
                wake: Mutex::new(false),
                wake_cv: Condvar::new(),
                next_handle: AtomicU64::new(1),
            }),
        }
    }

    /// The newest revision watchers have been told about.
    pub fn revision(&self) -> i64 {
        self.inner.state.lock().last_rev
    }

    /// Called by apply once the write that produced `events` is visible to readers; `rev` is the
    /// store revision after it. Events may span several revisions (grouped by `kv.mod_revision`,
    /// in operation order). Never blocks on a consumer.
    pub fn notify(&self, rev: i64, events: Vec<Event>) {
        let mut st = self.inner.state.lock();
        if rev > st.last_rev {
            st.last_rev = rev;
        }
        if events.is_empty() || (st.synced.is_empty() && !st.recording()) {
            if !st.recording() {
                let from = st.last_rev + 1;
                st.clear_ring(from);
            }
            return;
        }
        let events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
        let rev_of = |e: &Event| e.kv.as_ref().map_or(rev, |kv| kv.mod_revision);
        let mut scratch = Vec::new();
        let mut start = 0;
        while start < events.len() {
            let r = rev_of(&events[start]);
            let mut end = start + 1;
            while end < events.len() && rev_of(&events[end]) == r {
                end += 1;
            }
            let run = &events[start..end];
            if !st.synced.is_empty() {
                st.dispatch(r, run, &mut scratch);
            }
            if st.recording() {
                st.record(r, run.to_vec());
            } else {
                st.clear_ring(r + 1);
            }
            start = end;
        }
        if !st.recording() {
            let from = st.last_rev + 1;
            st.clear_ring(from);
        }
    }

    /// Called after a snapshot replaced the store: every synced watcher catches up from the new
    /// store's history, starting after what it has already been sent.
    pub fn store_jumped(&self) {
        {
            let mut st = self.inner.state.lock();
            let old = st.last_rev;
            st.last_rev = self.inner.store.current_revision().max(old);
            let synced: Vec<u64> = st
                .watchers
                .iter()
                .filter(|(_, w)| w.group == Group::Synced)
                .map(|(id, _)| *id)
                .collect();
            for id in synced {
                if let Some(w) = st.watchers.get_mut(&id) {
                    w.min_rev = w.min_rev.max(old + 1);
                }
                st.move_to(id, Group::Unsynced);
            }
            let from = st.last_rev + 1;
            st.clear_ring(from);
        }
        self.wake();
    }

    /// Opens the hub side of one client stream.
    pub fn open_stream(&self) -> WatchStream {
        let (tx, rx) = mpsc::channel(CHANNEL_LEN);
        WatchStream {
            hub: self.clone(),
            shared: Arc::new(StreamShared {
                tx,
                parked: AtomicUsize::new(0),
            }),
            rx,
            by_id: HashMap::new(),
            by_handle: HashMap::new(),
            next_id: 0,
        }
    }

    fn wake(&self) {
        *self.inner.wake.lock() = true;
        self.inner.wake_cv.notify_one();
    }

    /// One sync round: releases victims whose stream has room, sends compaction cancels, reads one
    /// window of history for up to [`MAX_WATCHERS_PER_SYNC`] unsynced watchers and moves those that
    /// caught up to synced.
    pub(crate) fn sync_round(&self) -> Result<Round> {
        let inner = &self.inner;
        // Phase 1, under the lock: pick the watchers to read for.
        let (chosen, to) = {
            let mut st = inner.state.lock();
            let compact = inner.store.compact_revision();
            let ready: Vec<u64> = st
                .victims
                .iter()
                .filter(|id| {
                    st.watchers
                        .get(id)
                        .is_none_or(|w| w.stream.tx.capacity() > 0 || w.stream.tx.is_closed())
                })
                .copied()
                .collect();
            for id in ready {
                st.move_to(id, Group::Unsynced);
            }
            if st.unsynced.is_empty() {
                return Ok(if st.victims.is_empty() {
                    Round::Idle
                } else {
                    Round::Blocked
                });
            }
            let to = st.last_rev;
            let cursor = st.cursor;
            let ids: Vec<u64> = st
                .unsynced
                .range(cursor + 1..)
                .chain(st.unsynced.range(..=cursor))
                .take(MAX_WATCHERS_PER_SYNC)
                .copied()
                .collect();
            let mut chosen = Vec::new();
            for id in ids {
                st.cursor = id;
                let Some(w) = st.watchers.get(&id) else {
                    st.unsynced.remove(&id);
                    continue;
                };
                let tx = w.stream.tx.clone();
                if tx.is_closed() {
                    st.remove(id);
                    continue;
                }
                if w.min_rev < compact {
                    let msg = HubMsg::Compacted {
                        watcher: id,
                        compact_revision: compact,
                    };
                    if tx.try_send(msg).is_ok() {
                        st.remove(id);
                    } else {
                        st.move_to(id, Group::Victim);
                    }
                    continue;
                }
                if w.min_rev > to {
                    st.move_to(id, Group::Synced);
                    continue;
                }
                if tx.capacity() == 0 {
                    st.move_to(id, Group::Victim);
                    continue;
                }
                chosen.push(Chosen {
                    id,
                    min_rev: w.min_rev,
                    range: w.range.clone(),
                    filter: w.filter,
                    prev_kv: w.prev_kv,
                });
            }
            (chosen, to)
        };

        // Phase 2, without the lock: read the window.
        if !chosen.is_empty() {
            let window = read_window(&inner.store, &chosen, to)?;

            // Phase 3, under the lock: send and move.
            let mut st = inner.state.lock();
            for c in &chosen {
                let Some(w) = st.watchers.get(&c.id) else {
                    continue;
                };
                if w.group != Group::Unsynced
                    || w.min_rev != c.min_rev
                    || c.min_rev < window.compact
                    || c.min_rev > window.hi
                {
                    continue;
                }
                let events: Vec<Arc<Event>> = window
                    .events
                    .iter()
                    .filter(|ev| {
                        ev.kv.as_ref().is_some_and(|kv| {
                            kv.mod_revision >= c.min_rev && c.range.contains(&kv.key)
                        }) && c.filter.keeps(ev)
                    })
                    .cloned()
                    .collect();
                let window_msg = (!events.is_empty()).then_some(HubMsg::Events {
                    watcher: c.id,
                    revision: to,
                    events,
                });
                let next = window.hi + 1;
                let last = st.last_rev;
                let mut caught_up = next > last;
                let mut gap_msg = None;
                if !caught_up && next >= st.ring_from {
                    let gap = st.ring_events(next, &c.range, &c.filter);
                    if !gap.is_empty() {
                        gap_msg = Some(HubMsg::Events {
                            watcher: c.id,
                            revision: last,
                            events: gap,
                        });
                    }
                    caught_up = true;
                }
                let tx = w.stream.tx.clone();
                let send = |m: HubMsg| !matches!(tx.try_send(m), Err(TrySendError::Full(_)));
                let mut min_rev = c.min_rev;
                let mut delivered = window_msg.is_none_or(send);
                if delivered {
                    min_rev = next;
                    delivered = gap_msg.is_none_or(send);
                }
                let Some(w) = st.watchers.get_mut(&c.id) else {
                    continue;
                };
                if !delivered {
                    w.min_rev = min_rev;
                    st.move_to(c.id, Group::Victim);
                } else if caught_up {
                    w.min_rev = next.max(last + 1);
                    st.move_to(c.id, Group::Synced);
                } else {
                    w.min_rev = next;
                }
            }
        }
        let st = inner.state.lock();
        Ok(if !st.unsynced.is_empty() {
            Round::Busy
        } else if !st.victims.is_empty() {
            Round::Blocked
        } else {
            Round::Idle
        })
    }
}

fn sync_loop(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let hub = WatchHub { inner };
        let pause = match hub.sync_round() {
            Ok(Round::Busy) => None,
            Ok(Round::Blocked) => Some(VICTIM_POLL),
            Ok(Round::Idle) => Some(IDLE_POLL),
            Err(e) => {
                tracing::error!(error = %e, "watch catch-up read failed; retrying");
                Some(ERROR_BACKOFF)
            }
        };
        if let Some(d) = pause {
            let mut woken = hub.inner.wake.lock();
            if !*woken {
                hub.inner.wake_cv.wait_for(&mut woken, d);
            }
            *woken = false;
        }
    }
}

/// The hub side of one client stream: its watchers (by client watch id) and its channel.
/// Dropping it removes its watchers from the hub.
pub struct WatchStream {
    hub: WatchHub,
    shared: Arc<StreamShared>,
    rx: mpsc::Receiver<HubMsg>,
    by_id: HashMap<i64, u64>,
    /// hub handle -> (client watch id, prev_kv)
    by_handle: HashMap<u64, (i64, bool)>,
    next_id: i64,
}

impl WatchStream {
    /// Creates a watcher. Returns its id and the revision the creation happened at (events after
    /// it are live; `start_revision` at or below it replays history first).
    pub fn watch(&mut self, spec: WatchSpec) -> std::result::Result<(i64, i64), CreateError> {
        let key = if spec.key.is_empty() {
            vec![0]
        } else {
            spec.key
        };
        let range = KeyRange::new(&key, &spec.range_end);
        if range.is_empty() {
            return Err(CreateError::EmptyRange);
        }
        if spec.watch_id != 0 && self.by_id.contains_key(&spec.watch_id) {
            return Err(CreateError::DuplicateId);
        }
        if spec.start_revision < 0 {
            return Err(CreateError::Compacted);
        }
        let id = if spec.watch_id == 0 {
            while self.by_id.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        } else {
            spec.watch_id
        };
        let handle = self.hub.inner.next_handle.fetch_add(1, Ordering::Relaxed);
        let (rev, unsynced) = {
            let mut st = self.hub.inner.state.lock();
            // A reader may already see a revision apply has not notified yet: "now" includes it
            // (its events are then skipped for this watcher, as they happened before it).
            let cur = st.last_rev.max(self.hub.inner.store.current_revision());
            let (group, min_rev) = if spec.start_revision == 0 {
                (Group::Synced, cur + 1)
            } else if spec.start_revision > cur {
                (Group::Synced, spec.start_revision)
            } else {
                (Group::Unsynced, spec.start_revision)
            };
            st.add(
                handle,
                Watcher {
                    stream: self.shared.clone(),
                    range,
                    min_rev,
                    filter: spec.filter,
                    prev_kv: spec.prev_kv,
                    group,
                },
            );
            (cur, group == Group::Unsynced)
        };
        if unsynced {
            self.hub.wake();
        }
        self.by_id.insert(id, handle);
        self.by_handle.insert(handle, (id, spec.prev_kv));
        Ok((id, rev))
    }

    /// Cancels watcher `id`. Returns the hub revision, or None when the stream has no such watcher.
    pub fn cancel(&mut self, id: i64) -> Option<i64> {
        let handle = self.by_id.remove(&id)?;
        self.by_handle.remove(&handle);
        let mut st = self.hub.inner.state.lock();
        st.remove(handle);
        Some(st.last_rev)
    }

    /// Asks for a progress notification with watch id -1; it is queued only when the stream has
    /// watchers and every one of them is synced. Returns whether it was.
    pub fn request_progress_all(&self) -> bool {
        if self.by_handle.is_empty() {
            return false;
        }
        let st = self.hub.inner.state.lock();
        let all_synced = self
            .by_handle
            .keys()
            .all(|h| st.watchers.get(h).is_some_and(|w| w.group == Group::Synced));
        if !all_synced {
            return false;
        }
        let msg = HubMsg::Progress {
            watcher: None,
            revision: st.last_rev,
        };
        self.shared.tx.try_send(msg).is_ok()
    }

    /// Asks for a progress notification for watcher `id`, queued only when it is synced.
    pub fn request_progress(&self, id: i64) -> bool {
        let Some(handle) = self.by_id.get(&id).copied() else {
            return false;
        };
        let st = self.hub.inner.state.lock();
        if !st
            .watchers
            .get(&handle)
            .is_some_and(|w| w.group == Group::Synced)
        {
            return false;
        }
        let msg = HubMsg::Progress {
            watcher: Some(handle),
            revision: st.last_rev,
        };
        self.shared.tx.try_send(msg).is_ok()
    }

    /// The hub's revision (for response headers).
    pub fn revision(&self) -> i64 {
        self.hub.revision()
    }

    /// Number of watchers on the stream.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The next thing to send to the client. Cancel-safe. Messages for watchers cancelled in the
    /// meantime are dropped here.
    pub async fn recv(&mut self) -> Option<StreamEvent> {
        loop {
            let msg = self.rx.recv().await?;
            if self.shared.parked.load(Ordering::Relaxed) > 0 {
                self.hub.wake();
            }
            if let Some(ev) = self.resolve(msg) {
                return Some(ev);
            }
        }
    }

    /// Like [`WatchStream::recv`] without waiting (tests).
    #[cfg(test)]
    pub(crate) fn try_recv(&mut self) -> Option<StreamEvent> {
        loop {
            let msg = self.rx.try_recv().ok()?;
            if let Some(ev) = self.resolve(msg) {
                return Some(ev);
            }
        }
    }

    fn resolve(&mut self, msg: HubMsg) -> Option<StreamEvent> {
        match msg {
            HubMsg::Events {
                watcher,
                revision,
                events,
            } => {
                let (watch_id, prev_kv) = *self.by_handle.get(&watcher)?;
                let events = events
                    .into_iter()
                    .map(|e| {
                        let mut e = Arc::unwrap_or_clone(e);
                        if !prev_kv {
                            e.prev_kv = None;
                        }
                        e
                    })
                    .collect();
                Some(StreamEvent::Events {
                    watch_id,
                    revision,
                    events,
                })
            }
            HubMsg::Compacted {
                watcher,
                compact_revision,
            } => {
                let (watch_id, _) = self.by_handle.remove(&watcher)?;
                self.by_id.remove(&watch_id);
                Some(StreamEvent::Compacted {
                    watch_id,
                    compact_revision,
                })
            }
            HubMsg::Progress { watcher, revision } => {
                let watch_id = match watcher {
                    None => -1,
                    Some(h) => self.by_handle.get(&h)?.0,
                };
                Some(StreamEvent::Progress { watch_id, revision })
            }
        }
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let mut st = self.hub.inner.state.lock();
        for handle in self.by_handle.keys() {
            st.remove(*handle);
        }
    }
}
