//! Unit tests of the watch hub: live dispatch, ids, catch-up from history, compaction cancels,
//! victims, progress, snapshot jumps, and catch-up racing concurrent writes. Included twice by
//! `watch/mod.rs`: on a temporary RocksDB (`tests`) and on the memory engine (`tests_on_memory`).

use std::time::{Duration, Instant};

use super::*;
use crate::mvcc::compact::Compactor;
use crate::mvcc::{KvWrite, WriteBatch};
use crate::proto::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest};
use crate::storage::Db;

fn engine(dir: &std::path::Path) -> Db {
    if module_path!().ends_with("_on_memory") {
        Db::memory()
    } else {
        Db::open(dir).unwrap()
    }
}

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    hub: WatchHub,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(engine(dir.path())).unwrap();
    let hub = WatchHub::without_sync_thread(store.clone());
    Env {
        _dir: dir,
        store,
        hub,
    }
}

enum Op<'a> {
    Put(&'a str, &'a str),
    Del(&'a str, &'a str),
}

impl Env {
    /// Applies `txns` (each a list of ops sharing one revision) as one apply batch and, when
    /// `notify`, tells the hub as apply does. Returns the store revision.
    fn apply(&self, txns: &[&[Op<'_>]], notify: bool) -> i64 {
        let mut wb = WriteBatch::new(&self.store);
        for ops in txns {
            for op in *ops {
                match op {
                    Op::Put(k, v) => {
                        wb.put(&PutRequest {
                            key: k.as_bytes().to_vec(),
                            value: v.as_bytes().to_vec(),
                            ..Default::default()
                        })
                        .unwrap();
                    }
                    Op::Del(k, end) => {
                        wb.delete_range(&DeleteRangeRequest {
                            key: k.as_bytes().to_vec(),
                            range_end: end.as_bytes().to_vec(),
                            ..Default::default()
                        })
                        .unwrap();
                    }
                }
            }
            wb.end_txn();
        }
        let (rev, events, _) = wb.finish(&[]).unwrap();
        if notify {
            self.hub.notify(rev, events);
        }
        rev
    }

    fn put(&self, k: &str, v: &str) -> i64 {
        self.apply(&[&[Op::Put(k, v)]], true)
    }

    fn del(&self, k: &str, end: &str) -> i64 {
        self.apply(&[&[Op::Del(k, end)]], true)
    }

    fn compact(&self, rev: i64) {
        let mut wb = WriteBatch::new(&self.store);
        wb.compact(&CompactionRequest {
            revision: rev,
            physical: false,
        })
        .unwrap();
        let (r, events, _) = wb.finish(&[]).unwrap();
        self.hub.notify(r, events);
    }

    /// Runs sync rounds until nothing is left that can progress.
    fn sync(&self) {
        for _ in 0..10_000 {
            if self.hub.sync_round().unwrap() != Round::Busy {
                return;
            }
        }
        panic!("sync rounds never settled");
    }
}

fn spec(key: &str, end: &str, start: i64) -> WatchSpec {
    WatchSpec {
        key: key.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        start_revision: start,
        ..Default::default()
    }
}

/// (type, key, value, mod_revision) of the events of one message.
type Flat = Vec<(i32, String, String, i64)>;

fn flat(events: &[Event]) -> Flat {
    events
        .iter()
        .map(|e| {
            let kv = e.kv.clone().unwrap_or_default();
            (
                e.r#type,
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
                kv.mod_revision,
            )
        })
        .collect()
}

const PUT: i32 = EventType::Put as i32;
const DEL: i32 = EventType::Delete as i32;

fn p(k: &str, v: &str, rev: i64) -> (i32, String, String, i64) {
    (PUT, k.into(), v.into(), rev)
}

fn d(k: &str, rev: i64) -> (i32, String, String, i64) {
    (DEL, k.into(), String::new(), rev)
}

/// Every message queued on the stream right now.
fn drain(s: &mut WatchStream) -> Vec<StreamEvent> {
    std::iter::from_fn(|| s.try_recv()).collect()
}

fn events_of(msgs: &[StreamEvent], id: i64) -> Vec<(i64, Flat)> {
    msgs.iter()
        .filter_map(|m| match m {
            StreamEvent::Events {
                watch_id,
                revision,
                events,
            } if *watch_id == id => Some((*revision, flat(events))),
            _ => None,
        })
        .collect()
}

#[test]
fn ids_are_per_stream_and_errors_match_etcd() {
    let e = env();
    let mut s = e.hub.open_stream();
    assert_eq!(s.watch(spec("a", "", 0)), Ok((0, 1)));
    assert_eq!(s.watch(spec("a", "", 0)), Ok((1, 1)));
    let mut t = e.hub.open_stream();
    let seven = WatchSpec {
        watch_id: 7,
        ..spec("a", "", 0)
    };
    assert_eq!(t.watch(seven.clone()), Ok((7, 1)));
    assert_eq!(t.watch(seven), Err(CreateError::DuplicateId));
    assert_eq!(t.watch(spec("a", "", 0)), Ok((0, 1)));
    let one = WatchSpec {
        watch_id: 1,
        ..spec("a", "", 0)
    };
    assert_eq!(t.watch(one), Ok((1, 1)));
    // Auto ids skip ids a client chose.
    assert_eq!(t.watch(spec("a", "", 0)), Ok((2, 1)));
    assert_eq!(t.watch(spec("b", "a", 0)), Err(CreateError::EmptyRange));
    assert_eq!(t.watch(spec("b", "b", 0)), Err(CreateError::EmptyRange));
    assert_eq!(t.watch(spec("a", "", -1)), Err(CreateError::Compacted));
    assert_eq!(
        CreateError::EmptyRange.reason(),
        "mvcc: watcher range is empty"
    );
    assert_eq!(
        CreateError::DuplicateId.reason(),
        "mvcc: duplicate watch ID provided on the WatchStream"
    );
    // Cancel: known ids answer with the revision, unknown ones with nothing.
    assert_eq!(t.cancel(7), Some(1));
    assert_eq!(t.cancel(7), None);
    assert_eq!(t.cancel(42), None);
}

#[test]
fn live_events_one_message_per_revision_in_operation_order() {
    let e = env();
    let mut s = e.hub.open_stream();
    let (a, _) = s.watch(spec("a", "", 0)).unwrap();
    let (all, _) = s.watch(spec("", "\0", 0)).unwrap();
    let (pre, _) = s
        .watch(WatchSpec {
            prev_kv: true,
            ..spec("x", "y", 0)
        })
        .unwrap();
    assert_eq!(e.put("a", "1"), 2);
    // One apply batch holding three transactions; the second writes two keys.
    let rev = e.apply(
        &[
            &[Op::Put("x1", "v")],
            &[Op::Put("x2", "v"), Op::Put("x1", "w")],
            &[Op::Del("a", "")],
        ],
        true,
    );
    assert_eq!(rev, 5);
    let msgs = drain(&mut s);
    assert_eq!(
        events_of(&msgs, a),
        vec![(2, vec![p("a", "1", 2)]), (5, vec![d("a", 5)])]
    );
    assert_eq!(
        events_of(&msgs, all),
        vec![
            (2, vec![p("a", "1", 2)]),
            (3, vec![p("x1", "v", 3)]),
            (4, vec![p("x2", "v", 4), p("x1", "w", 4)]),
            (5, vec![d("a", 5)]),
        ]
    );
    // prev_kv only where asked for, and only for updates.
    for m in &msgs {
        if let StreamEvent::Events {
            watch_id, events, ..
        } = m
        {
            for ev in events {
                let kv = ev.kv.as_ref().unwrap();
                let want_prev = *watch_id == pre && kv.create_revision != kv.mod_revision;
                assert_eq!(ev.prev_kv.is_some(), want_prev, "{ev:?} for {watch_id}");
            }
        }
    }
    let upd = events_of(&msgs, pre);
    assert_eq!(upd.len(), 2);
    let StreamEvent::Events { events, .. } = msgs
        .iter()
        .find(
            |m| matches!(m, StreamEvent::Events { watch_id, revision: 4, .. } if *watch_id == pre),
        )
        .unwrap()
    else {
        unreachable!()
    };
    assert_eq!(events[1].prev_kv.as_ref().unwrap().value, b"v");
    // A DELETE carries only key and mod_revision.
    let StreamEvent::Events { events, .. } = msgs.last().unwrap() else {
        panic!()
    };
    let kv = events[0].kv.as_ref().unwrap();
    assert_eq!(
        (kv.create_revision, kv.version, kv.value.len(), kv.lease),
        (0, 0, 0, 0)
    );
}

#[test]
fn filters_drop_event_types_and_empty_revisions() {
    let e = env();
    let mut s = e.hub.open_stream();
    let (noput, _) = s
        .watch(WatchSpec {
            filter: Filter {
                no_put: true,
                no_delete: false,
            },
            ..spec("k", "l", 0)
        })
        .unwrap();
    let (nodel, _) = s
        .watch(WatchSpec {
            filter: Filter {
                no_put: false,
                no_delete: true,
            },
            ..spec("k", "l", 0)
        })
        .unwrap();
    e.put("k1", "a");
    e.put("k2", "b");
    e.del("k1", "");
    e.put("k1", "c");
    let msgs = drain(&mut s);
    assert_eq!(events_of(&msgs, noput), vec![(4, vec![d("k1", 4)])]);
    assert_eq!(
        events_of(&msgs, nodel),
        vec![
            (2, vec![p("k1", "a", 2)]),
            (3, vec![p("k2", "b", 3)]),
            (5, vec![p("k1", "c", 5)]),
        ]
    );
}

#[test]
fn history_replay_then_live_without_gap_or_duplicate() {
    let e = env();
    e.put("a", "1"); // 2
    e.put("b", "1"); // 3
    e.put("a", "2"); // 4
    e.del("a", ""); // 5
    e.put("a", "3"); // 6
    let mut s = e.hub.open_stream();
    let (w, rev) = s
        .watch(WatchSpec {
            prev_kv: true,
            ..spec("a", "", 3)
        })
        .unwrap();
    assert_eq!(rev, 6);
    let (f, _) = s.watch(spec("a", "", 7)).unwrap(); // future: synced, waits for 7
    assert!(
        !s.request_progress_all(),
        "an unsynced watcher blocks progress"
    );
    assert!(drain(&mut s).is_empty());
    e.sync();
    e.put("a", "4"); // 7
    let msgs = drain(&mut s);
    let got = events_of(&msgs, w);
    assert_eq!(
        got,
        vec![
            (6, vec![p("a", "2", 4), d("a", 5), p("a", "3", 6)]),
            (7, vec![p("a", "4", 7)]),
        ]
    );
    assert_eq!(events_of(&msgs, f), vec![(7, vec![p("a", "4", 7)])]);
    // prev_kv from history: update and delete have the version before, the re-create has none.
    let StreamEvent::Events { events, .. } = &msgs[0] else {
        panic!("{msgs:?}")
    };
    let prevs: Vec<Option<Vec<u8>>> = events
        .iter()
        .map(|e| e.prev_kv.as_ref().map(|kv| kv.value.clone()))
        .collect();
    assert_eq!(prevs, [Some(b"1".to_vec()), Some(b"2".to_vec()), None]);
    assert!(s.request_progress_all());
    assert_eq!(
        drain(&mut s),
        [StreamEvent::Progress {
            watch_id: -1,
            revision: 7
        }]
    );
}

#[test]
fn catch_up_is_cut_into_windows_of_1000_revisions() {
    let e = env();
    for i in 0..2500 {
        e.apply(&[&[Op::Put("k", &i.to_string())]], false);
    }
    e.hub.notify(e.store.current_revision(), Vec::new());
    let mut s = e.hub.open_stream();
    let (w, _) = s.watch(spec("k", "", 2)).unwrap();
    e.sync();
    let got = events_of(&drain(&mut s), w);
    let sizes: Vec<usize> = got.iter().map(|(_, evs)| evs.len()).collect();
    assert_eq!(sizes, [1000, 1000, 500]);
    let revs: Vec<i64> = got
        .iter()
        .flat_map(|(_, evs)| evs.iter().map(|e| e.3))
        .collect();
    assert_eq!(revs, (2..2502).collect::<Vec<i64>>());
    assert!(got.iter().all(|(r, _)| *r == 2501));
}

#[test]
fn start_below_compaction_gets_compacted_cancel() {
    let e = env();
    for v in ["1", "2", "3", "4"] {
        e.put("k", v); // 2..=5
    }
    e.compact(4);
    let mut s = e.hub.open_stream();
    let (old, _) = s.watch(spec("k", "", 3)).unwrap();
    let (at, _) = s.watch(spec("k", "", 4)).unwrap();
    e.sync();
    let msgs = drain(&mut s);
    assert!(msgs.contains(&StreamEvent::Compacted {
        watch_id: old,
        compact_revision: 4
    }));
    assert_eq!(
        events_of(&msgs, at),
        vec![(5, vec![p("k", "3", 4), p("k", "4", 5)])]
    );
    assert_eq!(s.cancel(old), None, "the compacted watcher is gone");
    assert_eq!(s.len(), 1);
}

#[test]
fn replay_from_the_compacted_revision_after_physical_compaction() {
    let e = env();
    e.put("a", "1"); // 2
    e.put("a", "2"); // 3
    e.del("a", ""); // 4
    e.put("b", "1"); // 5
    e.compact(4);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = Compactor::start(e.store.db().clone()).unwrap();
    rt.block_on(c.wait(4));
    let mut s = e.hub.open_stream();
    let (w, _) = s.watch(spec("", "\0", 4)).unwrap();
    e.sync();
    assert_eq!(
        events_of(&drain(&mut s), w),
        vec![(5, vec![d("a", 4), p("b", "1", 5)])]
    );
}

#[test]
fn a_full_stream_parks_its_watchers_and_they_catch_up_from_history() {
    let e = env();
    let mut slow = e.hub.open_stream();
    let mut fast = e.hub.open_stream();
    let (sw, _) = slow.watch(spec("k", "l", 0)).unwrap();
    let (fw, _) = fast.watch(spec("k", "l", 0)).unwrap();
    let n = 3 * CHANNEL_LEN as i64;
    let mut fast_got = Vec::new();
    for i in 0..n {
        let rev = e.put(&format!("k{}", i % 7), &i.to_string());
        assert_eq!(rev, i + 2);
        // The fast consumer keeps up; the slow one reads nothing.
        fast_got.extend(events_of(&drain(&mut fast), fw));
    }
    assert_eq!(fast_got.len() as i64, n);
    {
        let st = e.hub.inner.state.lock();
        assert_eq!(st.victims.len(), 1);
        assert_eq!(slow.shared.parked.load(Ordering::Relaxed), 1);
    }
    // Nothing moves while the channel is full.
    assert_eq!(e.hub.sync_round().unwrap(), Round::Blocked);
    let mut revs = Vec::new();
    for _ in 0..1000 {
        let msgs = drain(&mut slow);
        revs.extend(
            events_of(&msgs, sw)
                .into_iter()
                .flat_map(|(_, evs)| evs.into_iter().map(|e| e.3)),
        );
        if e.hub.sync_round().unwrap() == Round::Idle && revs.len() as i64 == n {
            break;
        }
        // Writes outside its range go on while it catches up.
        e.put("zzz", "other");
    }
    assert_eq!(revs, (2..n + 2).collect::<Vec<i64>>());
    let st = e.hub.inner.state.lock();
    assert!(st.victims.is_empty() && st.unsynced.is_empty());
    assert_eq!(st.synced.len(), 2);
}

#[test]
fn a_victim_behind_a_compaction_is_cancelled() {
    let e = env();
    let mut slow = e.hub.open_stream();
    let (sw, _) = slow.watch(spec("k", "", 0)).unwrap();
    for i in 0..(CHANNEL_LEN + 10) {
        e.put("k", &i.to_string());
    }
    let last = e.store.current_revision();
    e.compact(last);
    let msgs = drain(&mut slow);
    assert_eq!(events_of(&msgs, sw).len(), CHANNEL_LEN);
    e.sync();
    assert_eq!(
        drain(&mut slow),
        [StreamEvent::Compacted {
            watch_id: sw,
            compact_revision: last
        }]
    );
    assert!(slow.is_empty());
}

#[test]
fn progress_needs_watchers_that_are_all_synced() {
    let e = env();
    let mut s = e.hub.open_stream();
    assert!(!s.request_progress_all(), "no watchers, no progress");
    e.put("a", "1");
    let (w, _) = s.watch(spec("a", "", 0)).unwrap();
    assert!(s.request_progress(w));
    assert!(s.request_progress_all());
    assert_eq!(
        drain(&mut s),
        [
            StreamEvent::Progress {
                watch_id: w,
                revision: 2
            },
            StreamEvent::Progress {
                watch_id: -1,
                revision: 2
            }
        ]
    );
    let (u, _) = s.watch(spec("a", "", 1)).unwrap();
    assert!(!s.request_progress(u));
    assert!(!s.request_progress_all());
    e.sync();
    assert!(s.request_progress_all());
}

#[test]
fn cancelled_watchers_get_nothing_more() {
    let e = env();
    let mut s = e.hub.open_stream();
    let (a, _) = s.watch(spec("a", "", 0)).unwrap();
    let (b, _) = s.watch(spec("a", "", 0)).unwrap();
    e.put("a", "1");
    assert_eq!(s.cancel(a), Some(2));
    e.put("a", "2");
    let msgs = drain(&mut s);
    assert!(events_of(&msgs, a).is_empty(), "{msgs:?}");
    assert_eq!(events_of(&msgs, b).len(), 2);
    drop(s);
    assert!(e.hub.inner.state.lock().watchers.is_empty());
}

#[test]
fn after_a_snapshot_jump_watchers_catch_up_from_the_new_store() {
    let e = env();
    let mut s = e.hub.open_stream();
    let (w, _) = s.watch(spec("k", "l", 0)).unwrap();
    e.put("k1", "a"); // 2, seen live
                      // Revisions 3..=5 arrive without notify, as when a snapshot replaces the state.
    e.apply(&[&[Op::Put("k2", "b")], &[Op::Put("x", "y")]], false);
    e.apply(&[&[Op::Put("k1", "c")]], false);
    e.hub.store_jumped();
    assert_eq!(e.hub.revision(), 5);
    e.sync();
    e.put("k3", "d"); // 6
    assert_eq!(
        events_of(&drain(&mut s), w),
        vec![
            (2, vec![p("k1", "a", 2)]),
            (5, vec![p("k2", "b", 3), p("k1", "c", 5)]),
            (6, vec![p("k3", "d", 6)]),
        ]
    );
}

/// Catch-up racing apply: a writer thread notifies continuously while watchers created at old
/// revisions catch up through the real sync thread. Each must get every revision exactly once.
#[test]
fn catch_up_races_concurrent_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(engine(dir.path())).unwrap();
    let hub = WatchHub::new(store.clone()).unwrap();
    let e = Env {
        _dir: dir,
        store,
        hub: hub.clone(),
    };
    for i in 0..300 {
        e.put("k", &i.to_string());
    }
    const WRITES: i64 = 1500;
    let writer = {
        let store = e.store.clone();
        let hub = hub.clone();
        std::thread::spawn(move || {
            for i in 0..WRITES {
                let mut wb = WriteBatch::new(&store);
                wb.put(&PutRequest {
                    key: b"k".to_vec(),
                    value: i.to_string().into_bytes(),
                    ..Default::default()
                })
                .unwrap();
                wb.end_txn();
                let (rev, events, _) = wb.finish(&[]).unwrap();
                hub.notify(rev, events);
            }
        })
    };
    let final_rev = 1 + 300 + WRITES;
    let mut streams: Vec<(WatchStream, i64, i64, Vec<i64>)> = Vec::new();
    for start in [2, 50, 290] {
        let mut s = hub.open_stream();
        let (id, _) = s.watch(spec("k", "", start)).unwrap();
        streams.push((s, id, start, Vec::new()));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for (s, id, _, revs) in streams.iter_mut() {
            for m in drain(s) {
                if let StreamEvent::Events {
                    watch_id, events, ..
                } = m
                {
                    assert_eq!(watch_id, *id);
                    revs.extend(events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
                }
            }
        }
        if streams
            .iter()
            .all(|(_, _, _, revs)| revs.last() == Some(&final_rev))
        {
            break;
        }
        assert!(Instant::now() < deadline, "watchers did not catch up");
        std::thread::sleep(Duration::from_millis(1));
    }
    writer.join().unwrap();
    for (_, _, start, revs) in &streams {
        assert_eq!(revs, &(*start..=final_rev).collect::<Vec<i64>>());
    }
}

#[test]
fn sparse_history_is_read_in_several_windows() {
    let e = env();
    let mut want = Vec::new();
    let mut rev = 1;
    for b in 0..25 {
        let mut txns: Vec<Vec<Op<'_>>> = Vec::new();
        for i in 0..1000 {
            rev += 1;
            if i == 500 {
                txns.push(vec![Op::Put("k", "v")]);
                want.push(rev);
            } else {
                txns.push(vec![Op::Put("noise", "n")]);
            }
        }
        let refs: Vec<&[Op<'_>]> = txns.iter().map(|t| t.as_slice()).collect();
        assert_eq!(e.apply(&refs, b == 24), rev);
    }
    let mut s = e.hub.open_stream();
    let (w, _) = s.watch(spec("k", "", 2)).unwrap();
    e.sync();
    let got = events_of(&drain(&mut s), w);
    assert!(got.len() > 1, "more than one window: {}", got.len());
    let revs: Vec<i64> = got
        .iter()
        .flat_map(|(_, evs)| evs.iter().map(|e| e.3))
        .collect();
    assert_eq!(revs, want);
}

#[test]
fn one_revision_is_never_split() {
    let e = env();
    let big = "x".repeat(4096);
    let keys: Vec<String> = (0..1500).map(|i| format!("d/{i:04}")).collect();
    let puts: Vec<Op<'_>> = keys.iter().map(|k| Op::Put(k, &big)).collect();
    let rev = e.apply(&[&puts], true);
    let del_rev = e.del("d/", "d0");
    assert_eq!(del_rev, rev + 1);
    let mut s = e.hub.open_stream();
    let (w, _) = s
        .watch(WatchSpec {
            prev_kv: true,
            ..spec("d/", "d0", rev)
        })
        .unwrap();
    e.sync();
    let got = events_of(&drain(&mut s), w);
    // Each revision is 6 MB of events (with prev_kv), over the window budget: still whole.
    let sizes: Vec<usize> = got.iter().map(|(_, evs)| evs.len()).collect();
    assert_eq!(sizes, [1500, 1500]);
    assert!(got[1].1.iter().all(|e| e.0 == DEL && e.3 == del_rev));
}
