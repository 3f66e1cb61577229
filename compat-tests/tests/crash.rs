//! Durability across kill -9 and clean restarts (etcd-api.md §6.3 K2, K6; checklist item 107 for one
//! member).

use std::collections::HashMap;

use compat_tests::{assert_grpc_error, hdr, Member};
use etcd_client::{Client, GetOptions};
use tokio::sync::mpsc;
use tonic::Code;

const WRITERS: usize = 8;
const KEYS_PER_WRITER: usize = 250;
const TOTAL: usize = WRITERS * KEYS_PER_WRITER;

fn value_of(key: &str) -> String {
    format!("value-of-{key}")
}

/// All keys under `prefix` as key → (mod_revision, value).
async fn snapshot(c: &mut Client, prefix: &str) -> HashMap<String, (i64, String)> {
    let g = c
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    g.kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                (
                    kv.mod_revision(),
                    String::from_utf8_lossy(kv.value()).into_owned(),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_during_writes_keeps_acknowledged_writes() {
    let mut m = Member::start().await;
    let client = m.client().await;

    // Writers stop at their first error; every acknowledged put is reported as (key, revision).
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, i64)>();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut c = client.clone();
        let tx = tx.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..KEYS_PER_WRITER {
                let key = format!("crash/{w:02}/{i:04}");
                match c.put(key.clone(), value_of(&key), None).await {
                    Ok(r) => {
                        let rev = hdr(r.header()).revision();
                        if tx.send((key, rev)).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    drop(tx);

    // Kill once half of the writes are acknowledged, i.e. while the rest are in flight.
    let mut acked: Vec<(String, i64)> = Vec::with_capacity(TOTAL);
    while acked.len() < TOTAL / 2 {
        let ack = rx
            .recv()
            .await
            .expect("writers stopped before half of the writes were acknowledged");
        acked.push(ack);
    }
    m.kill9();
    // Acknowledgements that were already on their way still count.
    while let Some(ack) = rx.recv().await {
        acked.push(ack);
    }
    for w in writers {
        w.await.expect("writer task");
    }
    eprintln!(
        "{} of {TOTAL} writes acknowledged around the kill",
        acked.len()
    );
    assert!(
        acked.len() < TOTAL,
        "every write finished before the kill; the test did not kill during writes"
    );

    // Revisions of acknowledged writes are distinct (one revision per put).
    let mut revs: Vec<i64> = acked.iter().map(|(_, r)| *r).collect();
    revs.sort_unstable();
    revs.dedup();
    assert_eq!(
        revs.len(),
        acked.len(),
        "two puts acknowledged with one revision"
    );
    let max_acked = *revs.last().unwrap();

    m.restart().await;
    let mut c = m.client().await;
    let state = snapshot(&mut c, "crash/").await;
    let mut lost = Vec::new();
    for (key, rev) in &acked {
        match state.get(key) {
            Some((mod_rev, value)) => {
                assert_eq!(mod_rev, rev, "{key}: mod_revision changed across the crash");
                assert_eq!(
                    value,
                    &value_of(key),
                    "{key}: value changed across the crash"
                );
            }
            None => lost.push(key.clone()),
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    // Unacknowledged puts may or may not have been applied, but nothing else appeared.
    assert!(state.len() >= acked.len() && state.len() <= TOTAL);
    for (key, (_, value)) in &state {
        assert_eq!(value, &value_of(key));
    }

    // Revisions continue after every acknowledged one.
    let r = c.put("after-crash", "x", None).await.unwrap();
    let rev = hdr(r.header()).revision();
    assert!(
        rev > max_acked,
        "revision {rev} after restart is not above the highest acknowledged {max_acked}"
    );
    let g = c.get("after-crash", None).await.unwrap();
    assert_eq!(g.kvs()[0].mod_revision(), rev);
    assert_eq!(g.kvs()[0].create_revision(), rev);
}

#[tokio::test]
async fn clean_restart_keeps_data_and_revision() {
    let mut m = Member::start().await;
    let mut c = m.client().await;
    for i in 0..100 {
        c.put(format!("k/{i:03}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    for i in 0..10 {
        c.put(format!("k/{i:03}"), format!("w{i}"), None)
            .await
            .unwrap();
    }
    c.delete("k/099", None).await.unwrap();
    // Revision now 1 + 100 + 10 + 1 = 112; compact at 50.
    c.compact(50, None).await.unwrap();
    let before = snapshot(&mut c, "k/").await;
    let rev_before = hdr(c.get("k/", None).await.unwrap().header()).revision();
    assert_eq!(rev_before, 112);
    let status_before = c.status().await.unwrap();
    let ids_before = (
        hdr(status_before.header()).cluster_id(),
        hdr(status_before.header()).member_id(),
    );

    let status = m.terminate().await;
    drop(c);
    eprintln!("exit status after SIGTERM: {status}");
    m.restart().await;

    let mut c = m.client().await;
    let after = snapshot(&mut c, "k/").await;
    assert_eq!(after, before);
    assert_eq!(after.len(), 99);
    let g = c.get("k/000", None).await.unwrap();
    assert_eq!(hdr(g.header()).revision(), rev_before);
    let kv = &g.kvs()[0];
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 102, 2)
    );
    // History and the compaction point survived too.
    let old = c
        .get("k/000", Some(GetOptions::new().with_revision(60)))
        .await
        .unwrap();
    assert_eq!(old.kvs()[0].value(), b"v0");
    assert_grpc_error(
        c.get("k/000", Some(GetOptions::new().with_revision(49)))
            .await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    // Same cluster and member identity.
    let s = c.status().await.unwrap();
    assert_eq!(
        (hdr(s.header()).cluster_id(), hdr(s.header()).member_id()),
        ids_before
    );
    let r = c.put("k/new", "x", None).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), rev_before + 1);
}

#[tokio::test]
async fn kill9_when_idle_keeps_everything() {
    let mut m = Member::start().await;
    let mut c = m.client().await;
    for i in 0..20 {
        c.put(format!("idle/{i:02}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    let before = snapshot(&mut c, "idle/").await;
    drop(c);
    m.kill9();
    m.restart().await;
    let mut c = m.client().await;
    assert_eq!(snapshot(&mut c, "idle/").await, before);
    let r = c.put("idle/x", "x", None).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 22);
}
