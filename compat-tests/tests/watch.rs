//! Watch semantics (etcd-api.md §2.8; checklist items 36-53), a slow consumer, watchers on every
//! member of a cluster and the `hasleader` guard on watch streams.

use std::time::Duration;

use compat_tests::watch_util::{
    collect_events, del, evs, is_fragment, next, next_within, put, rev,
};
use compat_tests::{assert_grpc_error, is_etcd, skip_on_etcd, Cluster, Member};
use etcd_client::{
    Client, CompactionOptions, ConnectOptions, DeleteOptions, EventType, Txn, TxnOp,
    WatchFilterType, WatchOptions,
};
use tokio::time::Instant;
use tonic::Code;

async fn current_revision(c: &mut Client) -> i64 {
    c.get("any", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
}

/// Item 36: created responses carry ids 0, 1, ... and the current revision.
#[tokio::test]
async fn item_36_create_ids_and_header() {
    let m = Member::start().await;
    let mut c = m.client().await;
    c.put("x", "1", None).await.unwrap();
    let cur = current_revision(&mut c).await;
    assert_eq!(cur, 2);
    let mut ws = c.watch("a", None).await.unwrap();
    let r = next(&mut ws, "created").await;
    assert!(r.created() && !r.canceled(), "{r:?}");
    assert_eq!(r.watch_id(), 0);
    assert_eq!(rev(&r), cur);
    let h = r.header().unwrap();
    assert_ne!(h.cluster_id(), 0);
    assert_ne!(h.member_id(), 0);
    assert!(h.raft_term() > 0);
    assert!(r.events().is_empty());
    ws.watch("b", None).await.unwrap();
    let r = next(&mut ws, "second created").await;
    assert!(r.created() && !r.canceled(), "{r:?}");
    assert_eq!((r.watch_id(), rev(&r)), (1, cur));
}

/// Items 37 and 38: a create event and a delete event, each alone in a response at its revision.
#[tokio::test]
async fn item_37_38_put_and_delete_events() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let mut ws = c.watch("a", None).await.unwrap();
    assert!(next(&mut ws, "created").await.created());
    let put_rev = c
        .put("a", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let r = next(&mut ws, "the PUT event").await;
    assert_eq!((r.watch_id(), rev(&r)), (0, put_rev));
    assert!(!r.created() && !r.canceled());
    assert_eq!(evs(&r), [put("a", "1", put_rev)]);
    let kv = r.events()[0].kv().unwrap();
    assert_eq!(
        (kv.version(), kv.create_revision(), kv.mod_revision()),
        (1, put_rev, put_rev)
    );
    assert!(r.events()[0].prev_kv().is_none());

    let del_rev = c
        .delete("a", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    assert_eq!(del_rev, put_rev + 1);
    let r = next(&mut ws, "the DELETE event").await;
    assert_eq!(rev(&r), del_rev);
    assert_eq!(evs(&r), [del("a", del_rev)]);
    let kv = r.events()[0].kv().unwrap();
    assert_eq!(
        (
            kv.create_revision(),
            kv.version(),
            kv.value().len(),
            kv.lease()
        ),
        (0, 0, 0, 0)
    );
}

/// Item 39: a watch from revision 2 replays history in order, then goes on live, with nothing
/// repeated.
#[tokio::test]
async fn item_39_replay_then_live() {
    let m = Member::start().await;
    let mut c = m.client().await;
    c.put("h/a", "1", None).await.unwrap(); // 2
    c.put("h/b", "1", None).await.unwrap(); // 3
    c.put("other", "x", None).await.unwrap(); // 4
    c.put("h/a", "2", None).await.unwrap(); // 5
    c.delete("h/b", None).await.unwrap(); // 6
    let opts = WatchOptions::new().with_prefix().with_start_revision(2);
    let mut ws = c.watch("h/", Some(opts)).await.unwrap();
    let r = next(&mut ws, "created").await;
    assert!(r.created());
    assert_eq!(rev(&r), 6);
    c.put("h/c", "1", None).await.unwrap(); // 7
    c.put("h/a", "3", None).await.unwrap(); // 8
    let (got, _) = collect_events(&mut ws, 0, 6, Duration::from_secs(10)).await;
    assert_eq!(
        got,
        [
            put("h/a", "1", 2),
            put("h/b", "1", 3),
            put("h/a", "2", 5),
            del("h/b", 6),
            put("h/c", "1", 7),
            put("h/a", "3", 8),
        ]
    );
    // Nothing else was queued for it: the next response is the next write.
    c.put("h/z", "1", None).await.unwrap(); // 9
    let r = next(&mut ws, "the event at 9").await;
    assert_eq!(evs(&r), [put("h/z", "1", 9)]);
}

/// Item 40: a txn's events arrive in one response, in operation order.
#[tokio::test]
async fn item_40_txn_events_in_one_response() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let mut ws = c
        .watch("p/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    assert!(next(&mut ws, "created").await.created());
    let t = Txn::new().and_then([
        TxnOp::put("p/y", "1", None),
        TxnOp::put("p/x", "2", None),
        TxnOp::put("q/out", "3", None),
    ]);
    let tr = c.txn(t).await.unwrap();
    let trev = tr.header().unwrap().revision();
    let r = next(&mut ws, "the txn's events").await;
    assert_eq!(rev(&r), trev);
    assert_eq!(evs(&r), [put("p/y", "1", trev), put("p/x", "2", trev)]);
}

/// Item 41: prev_kv on updates and deletes, none on creates.
#[tokio::test]
async fn item_41_prev_kv() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let mut ws = c
        .watch("k", Some(WatchOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert!(next(&mut ws, "created").await.created());
    c.put("k", "v1", None).await.unwrap(); // 2
    c.put("k", "v2", None).await.unwrap(); // 3
    c.delete("k", None).await.unwrap(); // 4
    c.put("k", "v3", None).await.unwrap(); // 5
    let (got, resps) = collect_events(&mut ws, 0, 4, Duration::from_secs(10)).await;
    assert_eq!(
        got,
        [
            put("k", "v1", 2),
            put("k", "v2", 3),
            del("k", 4),
            put("k", "v3", 5)
        ]
    );
    let prevs: Vec<Option<(String, i64, i64)>> = resps
        .iter()
        .flat_map(|r| r.events().iter())
        .map(|e| {
            e.prev_kv().map(|p| {
                (
                    String::from_utf8_lossy(p.value()).into_owned(),
                    p.mod_revision(),
                    p.version(),
                )
            })
        })
        .collect();
    assert_eq!(
        prevs,
        [
            None,
            Some(("v1".into(), 2, 1)),
            Some(("v2".into(), 3, 2)),
            None
        ]
    );
    // From history too.
    let mut c2 = m.client().await;
    let opts = WatchOptions::new().with_prev_key().with_start_revision(2);
    let mut replay = c2.watch("k", Some(opts)).await.unwrap();
    assert!(next(&mut replay, "created").await.created());
    let (got2, resps2) = collect_events(&mut replay, 0, 4, Duration::from_secs(10)).await;
    assert_eq!(got2, got);
    let prevs2: Vec<Option<String>> = resps2
        .iter()
        .flat_map(|r| r.events().iter())
        .map(|e| {
            e.prev_kv()
                .map(|p| String::from_utf8_lossy(p.value()).into_owned())
        })
        .collect();
    assert_eq!(prevs2, [None, Some("v1".into()), Some("v2".into()), None]);
}

/// Item 42: NOPUT leaves only deletes, NODELETE only puts.
#[tokio::test]
async fn item_42_filters() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let opts = WatchOptions::new()
        .with_prefix()
        .with_filters([WatchFilterType::NoPut]);
    let mut noput = c.watch("f/", Some(opts)).await.unwrap();
    assert!(next(&mut noput, "created").await.created());
    let opts = WatchOptions::new()
        .with_prefix()
        .with_filters([WatchFilterType::NoDelete]);
    let mut nodel = c.watch("f/", Some(opts)).await.unwrap();
    assert!(next(&mut nodel, "created").await.created());
    c.put("f/a", "1", None).await.unwrap(); // 2
    c.put("f/b", "1", None).await.unwrap(); // 3
    c.delete("f/a", None).await.unwrap(); // 4
    c.put("f/a", "2", None).await.unwrap(); // 5
    c.delete("f/", Some(DeleteOptions::new().with_prefix()))
        .await
        .unwrap(); // 6
    let (d, _) = collect_events(&mut noput, 0, 3, Duration::from_secs(10)).await;
    assert_eq!(d, [del("f/a", 4), del("f/a", 6), del("f/b", 6)]);
    let (p, _) = collect_events(&mut nodel, 0, 3, Duration::from_secs(10)).await;
    assert_eq!(
        p,
        [put("f/a", "1", 2), put("f/b", "1", 3), put("f/a", "2", 5)]
    );
    // Revisions whose events were all filtered produced no response.
    c.put("f/c", "1", None).await.unwrap(); // 7
    assert_eq!(
        evs(&next(&mut nodel, "event 7").await),
        [put("f/c", "1", 7)]
    );
    c.delete("f/c", None).await.unwrap(); // 8
    assert_eq!(evs(&next(&mut noput, "event 8").await), [del("f/c", 8)]);
}

/// Item 43: a start revision below the compaction gets created, then a compacted cancel.
#[tokio::test]
async fn item_43_compacted_start_revision() {
    let m = Member::start().await;
    let mut c = m.client().await;
    for v in ["1", "2", "3", "4"] {
        c.put("k", v, None).await.unwrap(); // 2..=5
    }
    c.compact(4, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    let mut ws = c
        .watch("k", Some(WatchOptions::new().with_start_revision(3)))
        .await
        .unwrap();
    let r = next(&mut ws, "created").await;
    assert!(r.created() && !r.canceled(), "{r:?}");
    assert_eq!(r.watch_id(), 0);
    let r = next(&mut ws, "the compacted cancel").await;
    assert!(r.canceled() && !r.created(), "{r:?}");
    assert_eq!((r.watch_id(), r.compact_revision()), (0, 4));
    assert_eq!(rev(&r), 0);
    assert_eq!(r.cancel_reason(), "");
    assert!(r.events().is_empty());
    // At the compacted revision itself the watch works.
    ws.watch("k", Some(WatchOptions::new().with_start_revision(4)))
        .await
        .unwrap();
    let r = next(&mut ws, "second created").await;
    assert!(r.created() && !r.canceled());
    let id = r.watch_id();
    let (got, _) = collect_events(&mut ws, id, 2, Duration::from_secs(10)).await;
    assert_eq!(got, [put("k", "3", 4), put("k", "4", 5)]);
}

/// Item 44: an empty range is refused in a created+canceled response.
#[tokio::test]
async fn item_44_empty_range() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let cur = current_revision(&mut c).await;
    for end in ["a", "b"] {
        let mut ws = c
            .watch("b", Some(WatchOptions::new().with_range(end)))
            .await
            .unwrap();
        let r = next(&mut ws, "the refusal").await;
        assert!(r.created() && r.canceled(), "{r:?}");
        assert_eq!(r.watch_id(), -1);
        assert_eq!(r.cancel_reason(), "mvcc: watcher range is empty");
        assert_eq!(rev(&r), cur);
    }
}

/// Item 45: client-chosen ids; a duplicate is refused; auto ids still start at 0.
#[tokio::test]
async fn item_45_explicit_and_duplicate_ids() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let mut ws = c
        .watch("a", Some(WatchOptions::new().with_watch_id(7)))
        .await
        .unwrap();
    let r = next(&mut ws, "created 7").await;
    assert!(r.created() && !r.canceled());
    assert_eq!(r.watch_id(), 7);
    ws.watch("b", Some(WatchOptions::new().with_watch_id(7)))
        .await
        .unwrap();
    let r = next(&mut ws, "duplicate refusal").await;
    assert!(r.created() && r.canceled(), "{r:?}");
    assert_eq!(r.watch_id(), -1);
    assert_eq!(
        r.cancel_reason(),
        "mvcc: duplicate watch ID provided on the WatchStream"
    );
    ws.watch("c", None).await.unwrap();
    let r = next(&mut ws, "auto id").await;
    assert!(r.created() && !r.canceled());
    assert_eq!(r.watch_id(), 0);
    // Watcher 7 still works.
    c.put("a", "1", None).await.unwrap();
    let r = next(&mut ws, "event for 7").await;
    assert_eq!(r.watch_id(), 7);
    assert_eq!(evs(&r), [put("a", "1", 2)]);
}

/// Item 46: cancel answers once; the cancelled watcher gets nothing more, the others go on; an
/// unknown id gets no answer.
#[tokio::test]
async fn item_46_cancel() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let mut ws = c.watch("k", None).await.unwrap();
    assert_eq!(next(&mut ws, "created 0").await.watch_id(), 0);
    ws.watch("k", None).await.unwrap();
    assert_eq!(next(&mut ws, "created 1").await.watch_id(), 1);
    c.put("k", "1", None).await.unwrap(); // 2
    let mut seen = Vec::new();
    for _ in 0..2 {
        let r = next(&mut ws, "event 2").await;
        assert_eq!(evs(&r), [put("k", "1", 2)]);
        seen.push(r.watch_id());
    }
    seen.sort();
    assert_eq!(seen, [0, 1]);
    ws.cancel(0).await.unwrap();
    let r = next(&mut ws, "cancel response").await;
    assert!(r.canceled() && !r.created(), "{r:?}");
    assert_eq!(r.watch_id(), 0);
    assert_eq!(r.cancel_reason(), "");
    assert_eq!(rev(&r), 2);
    // Unknown ids: no answer. The next response is watcher 1's next event.
    ws.cancel(0).await.unwrap();
    ws.cancel(99).await.unwrap();
    c.put("k", "2", None).await.unwrap(); // 3
    c.put("k", "3", None).await.unwrap(); // 4
    for want in [3, 4] {
        let r = next(&mut ws, "watcher 1's event").await;
        assert!(!r.canceled(), "{r:?}");
        assert_eq!(r.watch_id(), 1);
        assert_eq!(evs(&r)[0].3, want);
    }
}

/// Item 47: pipelined creates are answered in request order, whether they replay history or not.
#[tokio::test]
async fn item_47_pipelined_creates_in_order() {
    let m = Member::start().await;
    let mut c = m.client().await;
    for i in 0..20 {
        c.put(format!("k{i}"), "v", None).await.unwrap();
    }
    let mut ws = c.watch("first", None).await.unwrap();
    assert_eq!(next(&mut ws, "created 0").await.watch_id(), 0);
    let ids = [5i64, 3, 9, 1, 8];
    for (n, id) in ids.iter().enumerate() {
        let mut o = WatchOptions::new().with_watch_id(*id).with_prefix();
        if n % 2 == 0 {
            o = o.with_start_revision(2);
        }
        ws.watch("k", Some(o)).await.unwrap();
    }
    for _ in 0..3 {
        ws.watch("auto", None).await.unwrap();
    }
    let mut created = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while created.len() < ids.len() + 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = next_within(&mut ws, left, "created responses").await;
        if r.created() {
            assert!(!r.canceled(), "{r:?}");
            created.push(r.watch_id());
        }
    }
    // Auto ids skip the ones the client took.
    assert_eq!(created, [5, 3, 9, 1, 8, 2, 4, 6]);
}

/// Item 48: a progress request answers with watch_id -1 at the current revision when every watcher
/// is synced; a stream without watchers gets nothing.
#[tokio::test]
async fn item_48_progress_request() {
    let m = Member::start().await;
    let mut c = m.client().await;
    c.put("a", "1", None).await.unwrap();
    c.put("b", "1", None).await.unwrap();
    let cur = current_revision(&mut c).await;
    let mut ws = c.watch("a", None).await.unwrap();
    assert!(next(&mut ws, "created").await.created());
    ws.request_progress().await.unwrap();
    let r = next(&mut ws, "progress").await;
    assert_eq!(r.watch_id(), -1);
    assert!(!r.created() && !r.canceled());
    assert!(r.events().is_empty());
    assert_eq!(rev(&r), cur);
    if skip_on_etcd("etcd 3.4.23 answers progress requests on streams without watchers") {
        return;
    }
    ws.cancel(0).await.unwrap();
    assert!(next(&mut ws, "cancel").await.canceled());
    // No watchers: no answer. The next response is the next create's.
    ws.request_progress().await.unwrap();
    ws.watch("a", None).await.unwrap();
    let r = next(&mut ws, "created after the unanswered progress request").await;
    assert!(r.created(), "{r:?}");
    assert_eq!(r.watch_id(), 1);
}

/// Item 49: after a progress response at R, no event with revision <= R follows.
#[tokio::test]
async fn item_49_progress_is_a_bookmark() {
    if skip_on_etcd(
        "etcd 3.4.23 answers progress requests while unsynced (#15220, fixed in 3.4.25)",
    ) {
        return;
    }
    let m = Member::start().await;
    let mut c = m.client().await;
    let mut ws = c
        .watch("bm/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    assert!(next(&mut ws, "created").await.created());
    let mut writer = m.client().await;
    const N: usize = 300;
    let writes = tokio::spawn(async move {
        let mut last = 0;
        for i in 0..N {
            let r = writer
                .put(format!("bm/{}", i % 10), "v", None)
                .await
                .unwrap();
            last = r.header().unwrap().revision();
        }
        last
    });
    let mut writes = writes;
    ws.request_progress().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut bookmark, mut last_event, mut events, mut progress) = (0i64, 0i64, 0usize, 0usize);
    let mut final_rev = None;
    // Exactly one progress request is outstanding at any time.
    loop {
        if final_rev.is_none() && writes.is_finished() {
            final_rev = Some((&mut writes).await.unwrap());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let r = next_within(&mut ws, left, "events and progress").await;
        if r.watch_id() == -1 {
            assert!(r.events().is_empty());
            let at = rev(&r);
            assert!(
                at >= bookmark && at >= last_event,
                "progress went back: {r:?}"
            );
            bookmark = at;
            progress += 1;
            if final_rev.is_some_and(|f| at >= f) {
                break;
            }
            ws.request_progress().await.unwrap();
            continue;
        }
        for e in evs(&r) {
            assert!(
                e.3 > bookmark,
                "event at {} after a progress at {bookmark}",
                e.3
            );
            assert!(e.3 > last_event);
            last_event = e.3;
            events += 1;
        }
    }
    assert_eq!(events, N);
    assert_eq!(Some(last_event), final_rev);
    assert!(progress >= 2, "{progress} progress responses");
}

/// Item 50: progress_notify on an idle watcher gives empty responses with its id at each interval.
#[tokio::test]
async fn item_50_progress_notify() {
    let flag = if is_etcd() {
        "--experimental-watch-progress-notify-interval"
    } else {
        "--watch-progress-notify-interval"
    };
    let m = Member::builder().args([flag, "1s"]).start().await;
    let mut c = m.client().await;
    c.put("other", "1", None).await.unwrap();
    let opts = WatchOptions::new().with_progress_notify();
    let mut ws = c.watch("idle", Some(opts)).await.unwrap();
    let r = next(&mut ws, "created").await;
    assert!(r.created());
    let id = r.watch_id();
    let mut plain = c.watch("idle", None).await.unwrap();
    assert!(next(&mut plain, "created").await.created());
    for n in 0..2 {
        let r = next_within(&mut ws, Duration::from_secs(5), "a progress notification").await;
        assert_eq!(r.watch_id(), id, "{r:?}");
        assert!(r.events().is_empty() && !r.created() && !r.canceled());
        assert_eq!(rev(&r), 2 + n);
        // Progress follows the store even when the watcher's key is idle.
        c.put("other", "2", None).await.unwrap();
    }
    // A watcher without progress_notify gets nothing: its next response is its next event.
    c.put("idle", "x", None).await.unwrap();
    let r = next(&mut plain, "event").await;
    assert_eq!(evs(&r), [put("idle", "x", 5)]);
}

/// Item 51: the empty key with range_end "\0" watches every key.
#[tokio::test]
async fn item_51_all_keys() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let mut ws = c
        .watch("", Some(WatchOptions::new().with_range(vec![0u8])))
        .await
        .unwrap();
    assert!(next(&mut ws, "created").await.created());
    c.put("\x01", "a", None).await.unwrap();
    c.put("zzz", "b", None).await.unwrap();
    c.put("a/b", "c", None).await.unwrap();
    c.delete("zzz", None).await.unwrap();
    let (got, _) = collect_events(&mut ws, 0, 4, Duration::from_secs(10)).await;
    assert_eq!(
        got,
        [
            put("\x01", "a", 2),
            put("zzz", "b", 3),
            put("a/b", "c", 4),
            del("zzz", 5)
        ]
    );
}

/// Item 52: 3,000 revisions on a prefix while the watcher reconnects from last_rev+1 again and
/// again: every revision exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_52_resume_without_gap_or_duplicate() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let first = current_revision(&mut c).await + 1;
    const N: usize = 3000;
    const WRITERS: usize = 6;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut wc = m.client().await;
        writers.push(tokio::spawn(async move {
            for i in (w..N).step_by(WRITERS) {
                wc.put(format!("r/{}", i % 50), i.to_string(), None)
                    .await
                    .unwrap();
            }
        }));
    }
    let last = first + N as i64 - 1;
    let mut got: Vec<i64> = Vec::new();
    let mut next_rev = first;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut reconnects = 0;
    while next_rev <= last {
        let mut wc = m.client().await;
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(next_rev);
        let mut ws = wc.watch("r/", Some(opts)).await.unwrap();
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(next_within(&mut ws, left, "created").await.created());
        // Read a few hundred events, then drop the stream and resume.
        let mut taken = 0;
        while taken < 400 && next_rev <= last {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = next_within(&mut ws, left, "events").await;
            assert!(!r.canceled(), "{r:?}");
            for e in evs(&r) {
                got.push(e.3);
                next_rev = e.3 + 1;
                taken += 1;
            }
        }
        reconnects += 1;
    }
    for w in writers {
        w.await.unwrap();
    }
    assert!(reconnects >= 5, "{reconnects} streams");
    assert_eq!(got, (first..=last).collect::<Vec<i64>>());
}

/// Item 53: a revision larger than the gRPC limit is split for a fragment watcher (all parts but the
/// last flagged) and sent whole to the others.
#[tokio::test]
async fn item_53_fragment() {
    let m = Member::start().await;
    let mut c = m.client().await;
    const N: usize = 8;
    let value = "v".repeat(300 * 1024);
    for i in 0..N {
        c.put(format!("frag/{i}"), value.clone(), None)
            .await
            .unwrap();
    }
    let opts = WatchOptions::new()
        .with_prefix()
        .with_prev_key()
        .with_fragment();
    let mut fw = c.watch("frag/", Some(opts)).await.unwrap();
    assert!(next(&mut fw, "created").await.created());
    let opts = WatchOptions::new().with_prefix().with_prev_key();
    let mut whole = c.watch("frag/", Some(opts)).await.unwrap();
    assert!(next(&mut whole, "created").await.created());
    let d = c
        .delete("frag/", Some(DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    let drev = d.header().unwrap().revision();
    assert_eq!(d.deleted(), N as i64);
    // Well over 2 MiB in one revision: 8 deletes carrying 300 KiB previous values.
    let mut parts = Vec::new();
    let mut events = Vec::new();
    loop {
        let r = next(&mut fw, "a fragment").await;
        assert_eq!(rev(&r), drev);
        events.extend(r.events().iter().cloned());
        let more = is_fragment(&r);
        parts.push(r);
        if !more {
            break;
        }
    }
    assert!(parts.len() >= 2, "{} parts", parts.len());
    for p in &parts[..parts.len() - 1] {
        assert!(is_fragment(p));
    }
    assert_eq!(events.len(), N);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.event_type(), EventType::Delete);
        assert_eq!(e.kv().unwrap().key(), format!("frag/{i}").as_bytes());
        assert_eq!(e.kv().unwrap().mod_revision(), drev);
        assert_eq!(e.prev_kv().unwrap().value(), value.as_bytes());
    }
    let r = next(&mut whole, "the unfragmented response").await;
    assert!(!is_fragment(&r));
    assert_eq!(r.events().len(), N);
}

/// A watcher whose client reads nothing while thousands of writes go on: writes and another
/// watcher keep going, and the slow one later gets every event, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_does_not_stall_writes_or_other_watchers() {
    let m = Member::start().await;
    // Separate connections: an unread stream must not hold up the writers' connection.
    let mut slow_c = m.client().await;
    let mut fast_c = m.client().await;
    let opts = || WatchOptions::new().with_prefix();
    let mut slow = slow_c.watch("s/", Some(opts())).await.unwrap();
    assert!(next(&mut slow, "created").await.created());
    let mut fast = fast_c.watch("s/", Some(opts())).await.unwrap();
    assert!(next(&mut fast, "created").await.created());
    const N: usize = 3000;
    const WRITERS: usize = 6;
    let value = "x".repeat(2048);
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut wc = m.client().await;
        let value = value.clone();
        writers.push(tokio::spawn(async move {
            for i in (w..N).step_by(WRITERS) {
                wc.put(format!("s/{i}"), value.clone(), None).await.unwrap();
            }
        }));
    }
    // The fast watcher sees every write while the slow one is not read at all.
    let (fast_events, _) = collect_events(&mut fast, 0, N, Duration::from_secs(120)).await;
    for w in writers {
        tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .expect("writes stalled")
            .unwrap();
    }
    let revs: Vec<i64> = fast_events.iter().map(|e| e.3).collect();
    let first = revs[0];
    assert_eq!(revs, (first..first + N as i64).collect::<Vec<i64>>());
    // Now the slow one reads: everything, in order, once.
    let (slow_events, _) = collect_events(&mut slow, 0, N, Duration::from_secs(120)).await;
    assert_eq!(slow_events, fast_events);
    let mut c = m.client().await;
    c.put("s/last", "1", None).await.unwrap();
    let r = next(&mut slow, "a live event after catching up").await;
    assert_eq!(evs(&r), [put("s/last", "1", first + N as i64)]);
}

/// Watchers on every member of a cluster see the same events at the same revisions; without a
/// leader, `hasleader` watch streams are refused and open ones end with `etcdserver: no leader`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_on_every_member_and_hasleader() {
    let mut cl = Cluster::start(3, &[]).await;
    let leader = cl.leader().await;
    let mut streams = Vec::new();
    for mem in &cl.members {
        let mut c = mem.client().await;
        let mut ws = c
            .watch("c/", Some(WatchOptions::new().with_prefix()))
            .await
            .unwrap();
        assert!(next(&mut ws, "created").await.created());
        streams.push((c, ws));
    }
    let mut wc = cl.members[leader].client().await;
    let mut revs = Vec::new();
    for i in 0..5 {
        let r = wc.put(format!("c/{i}"), "v", None).await.unwrap();
        revs.push(r.header().unwrap().revision());
    }
    let want: Vec<_> = (0..5)
        .map(|i| put(&format!("c/{i}"), "v", revs[i]))
        .collect();
    for (_, ws) in streams.iter_mut() {
        let (got, _) = collect_events(ws, 0, 5, Duration::from_secs(10)).await;
        assert_eq!(got, want);
    }
    if skip_on_etcd("the rest depends on metastore's election timing flags only") {
        return;
    }
    // Keep one member; it loses its leader.
    let survivor = (leader + 1) % 3;
    let hl_options = || {
        ConnectOptions::new()
            .with_require_leader(true)
            .with_timeout(Duration::from_secs(5))
    };
    let mut hl = Client::connect([cl.members[survivor].endpoint()], Some(hl_options()))
        .await
        .unwrap();
    let mut open = hl.watch("c/", None).await.unwrap();
    assert!(next(&mut open, "created").await.created());
    for i in 0..3 {
        if i != survivor {
            cl.members[i].kill9();
        }
    }
    // The open hasleader stream ends with no leader (after three election timeouts).
    match tokio::time::timeout(Duration::from_secs(30), open.message()).await {
        Ok(Err(etcd_client::Error::GRpcStatus(s))) => {
            assert_eq!(
                (s.code(), s.message()),
                (Code::Unavailable, "etcdserver: no leader")
            );
        }
        other => panic!("expected the stream to end with no leader, got {other:?}"),
    }
    // New hasleader streams are refused at once.
    let mut hl = Client::connect([cl.members[survivor].endpoint()], Some(hl_options()))
        .await
        .unwrap();
    assert_grpc_error(
        hl.watch("c/", None).await.map(|_| ()),
        Code::Unavailable,
        "etcdserver: no leader",
    );
    // Without the metadata, watching still works on the leaderless member.
    let mut plain = cl.members[survivor].client().await;
    let mut ws = plain.watch("c/", None).await.unwrap();
    assert!(next(&mut ws, "created").await.created());
}

/// Open watch streams do not hold up a clean stop: the member exits on SIGTERM and the stream ends.
#[tokio::test]
async fn open_streams_end_when_the_member_stops() {
    let mut m = Member::start().await;
    let mut c = m.client().await;
    let mut ws = c
        .watch("k", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    assert!(next(&mut ws, "created").await.created());
    let status = m.terminate().await;
    // etcd re-raises SIGTERM; metastore exits with 0.
    assert!(is_etcd() || status.success(), "{status:?}");
    match tokio::time::timeout(Duration::from_secs(10), ws.message()).await {
        // metastore ends it with etcd's error; etcd just drops the connection.
        Ok(Err(etcd_client::Error::GRpcStatus(s))) if !is_etcd() => assert_eq!(
            (s.code(), s.message()),
            (Code::Unavailable, "etcdserver: server stopped")
        ),
        Ok(Ok(None)) | Ok(Err(_)) if is_etcd() => {}
        other => panic!("expected the stream to end, got {other:?}"),
    }
}
