//! Several members' raft and apply in one process, joined by the in-process network
//! (`raft/network.rs`) instead of gRPC: replication, a member cut off until the leader's log has
//! moved past it (it comes back through a snapshot), and a member added while cut off whose
//! promotion is committed after the snapshot it later receives, so that the conf change reaches
//! it queued behind the snapshot install.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::apply::Applied;
use crate::config::tests::cfg;
use crate::mvcc::store::range;
use crate::proto::etcdserverpb::{PutRequest, RangeRequest};
use crate::proto::metastorepb::{internal_request::Request, member_change::Kind, MemberRecord};
use crate::raft::network::MemNetwork;
use crate::server::EtcdServer;

const TOKEN: &str = "etcd-cluster";

fn url(n: u64) -> String {
    format!("http://127.0.0.1:{n}")
}

fn initial_cluster(names: &[u64]) -> String {
    names
        .iter()
        .map(|n| format!("m{n}={}", url(*n)))
        .collect::<Vec<_>>()
        .join(",")
}

async fn start(
    net: &MemNetwork,
    dir: &Path,
    n: u64,
    cluster: &[u64],
    state: &str,
) -> Arc<EtcdServer> {
    let data = dir.join(format!("m{n}"));
    let (name, ic, peer) = (format!("m{n}"), initial_cluster(cluster), url(n));
    let c = cfg(&[
        "--name",
        &name,
        "--data-dir",
        &data.to_string_lossy(),
        "--initial-cluster",
        &ic,
        "--initial-advertise-peer-urls",
        &peer,
        "--initial-cluster-state",
        state,
        "--heartbeat-interval",
        "10",
        "--election-timeout",
        "100",
        // Compact the raft log often, so that a member left behind needs a snapshot.
        "--snapshot-count",
        "20",
        "--experimental-snapshot-catchup-entries",
        "5",
    ])
    .unwrap();
    let (rt, net) = (tokio::runtime::Handle::current(), net.clone());
    tokio::task::spawn_blocking(move || EtcdServer::start_in_process(c, rt, &net))
        .await
        .unwrap()
        .unwrap()
}

/// Polls `f` every 10 ms until it holds, for at most 30 s.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn leader_of(ms: &[Arc<EtcdServer>]) -> Option<Arc<EtcdServer>> {
    let l = ms[0].raft().status.leader();
    (l != 0 && ms.iter().all(|m| m.raft().status.leader() == l))
        .then(|| ms.iter().find(|m| m.member_id() == l).cloned())
        .flatten()
}

async fn put(m: &EtcdServer, k: &str, v: &str) {
    let r = m
        .propose(Request::Put(PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(matches!(r, Applied::Put(_)), "{r:?}");
}

/// Every key under `k` with its value and mod revision, as member `m` holds it.
async fn keys(m: &EtcdServer) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
    let req = RangeRequest {
        key: b"k".to_vec(),
        range_end: b"l".to_vec(),
        serializable: true,
        ..Default::default()
    };
    let r = m.read(move |v| range(v, &req)).await.unwrap();
    r.kvs
        .into_iter()
        .map(|kv| (kv.key, kv.value, kv.mod_revision))
        .collect()
}

/// The index of the last snapshot member `m` installed, if any.
fn received_snapshot(m: &EtcdServer) -> Option<u64> {
    let i = m
        .raft()
        .status
        .installed_snapshot
        .load(std::sync::atomic::Ordering::Acquire);
    (i != 0).then_some(i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_replicate_catch_up_by_snapshot_and_take_a_conf_change_behind_one() {
    let dir = tempfile::tempdir().unwrap();
    let net = MemNetwork::new();
    let mut ms = Vec::new();
    for n in 1..=3 {
        ms.push(start(&net, dir.path(), n, &[1, 2, 3], "new").await);
    }
    until("one leader", || leader_of(&ms).is_some()).await;
    let leader = leader_of(&ms).unwrap();
    for i in 0..10 {
        put(&leader, &format!("k{i:02}"), "v").await;
    }
    let rev = leader.store().current_revision();
    assert_eq!(rev, 11);
    until("every member at the leader's revision", || {
        ms.iter().all(|m| m.store().current_revision() == rev)
    })
    .await;

    // A follower cut off while the leader's log moves on (and is compacted) catches up by snapshot.
    let behind = ms
        .iter()
        .find(|m| m.member_id() != leader.member_id())
        .unwrap()
        .clone();
    net.isolate(behind.member_id(), true);
    for i in 10..70 {
        put(&leader, &format!("k{i:02}"), "w").await;
    }
    assert_eq!(
        behind.store().current_revision(),
        rev,
        "cut off, it saw nothing"
    );
    assert_eq!(received_snapshot(&behind), None);
    net.isolate(behind.member_id(), false);
    let rev = leader.store().current_revision();
    // The leader's log has moved past it: it catches up by installing a snapshot.
    until("the cut-off member to catch up by snapshot", || {
        behind.store().current_revision() == rev && received_snapshot(&behind).is_some()
    })
    .await;
    assert_eq!(keys(&behind).await, keys(&leader).await);
    assert_eq!(keys(&behind).await.len(), 70);

    // A learner added while it is cut off; its promotion is committed only after the leader made
    // the checkpoint that will be sent to it, so the promotion reaches it behind the snapshot.
    let id4 = crate::cluster::member_id(&[url(4)], TOKEN);
    let learner = MemberRecord {
        id: id4,
        name: String::new(),
        peer_urls: vec![url(4)],
        client_urls: vec![],
        is_learner: true,
    };
    net.hold_snapshots(id4);
    let r = leader
        .propose_conf_change(Kind::Add, learner.clone())
        .await
        .unwrap();
    assert!(matches!(r, Applied::Member), "{r:?}");
    let m4 = start(&net, dir.path(), 4, &[1, 2, 3, 4], "existing").await;
    assert_eq!(m4.member_id(), id4);
    assert_eq!(m4.cluster_id(), leader.cluster_id());
    // The leader's log does not go back to index 1: it sends the new member a checkpoint, which
    // the network holds back.
    until("a snapshot for the new member", || {
        net.held_snapshots(id4) > 0
    })
    .await;
    let made_at = leader.applied_index();
    let r = leader
        .propose_conf_change(
            Kind::Promote,
            MemberRecord {
                is_learner: false,
                ..learner
            },
        )
        .await
        .unwrap();
    assert!(matches!(r, Applied::Member), "{r:?}");
    for i in 70..75 {
        put(&leader, &format!("k{i:02}"), "x").await;
    }
    assert_eq!(m4.store().current_revision(), 1, "nothing reached it yet");
    net.release_snapshots(id4);
    let rev = leader.store().current_revision();
    until(
        "the new member to catch up from a snapshot and be promoted",
        || {
            m4.store().current_revision() == rev
                && !m4.raft().status.is_learner()
                && received_snapshot(&m4).is_some()
        },
    )
    .await;
    let snap = received_snapshot(&m4).expect("the new member started from a snapshot");
    assert!(
        snap <= made_at,
        "the snapshot ({snap}) predates the promotion (proposed after index {made_at})"
    );
    assert_eq!(keys(&m4).await, keys(&leader).await);
    ms.push(m4);
    let members = |m: &EtcdServer| {
        let mut r = crate::cluster::list_records(m.db()).unwrap();
        r.iter_mut().for_each(|m| m.client_urls.clear());
        r
    };
    let want = members(&leader);
    assert_eq!(want.len(), 4);
    assert!(want.iter().all(|m| !m.is_learner), "{want:?}");
    until("every member to apply the promotion", || {
        ms.iter().all(|m| members(m) == want)
    })
    .await;

    // The promoted member counts in the quorum: of four voters, three must acknowledge. With one of
    // the first three cut off, the leader and the one left are two: the write commits only because
    // the new member acknowledges it as a voter.
    for m in ms
        .iter()
        .filter(|m| m.member_id() != leader.member_id())
        .take(1)
    {
        net.isolate(m.member_id(), true);
    }
    put(&leader, "k99", "quorum of three out of four").await;

    for m in ms {
        tokio::task::spawn_blocking(move || m.stop()).await.unwrap();
    }
}
