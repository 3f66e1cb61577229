//! v3lockpb.Lock and v3electionpb.Election through the etcd-client crate's `lock()` and `campaign()`
//! (checklist items 96, 97).

use std::time::Duration;

use compat_tests::{assert_grpc_error, keys, Member};
use etcd_client::{GetOptions, LockOptions, ProclaimOptions, ResignOptions};
use tokio::time::Instant;
use tonic::Code;

/// Waits until `n` keys exist under `prefix` (the contender has queued its key).
async fn wait_keys(c: &mut etcd_client::Client, prefix: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        if r.kvs().len() == n {
            return;
        }
        assert!(Instant::now() < deadline, "{prefix}: {:?}", keys(r.kvs()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_96_lock_blocks_until_unlock_or_lease_end() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let l1 = c.lease_grant(60, None).await.unwrap().id();
    let l2 = c.lease_grant(60, None).await.unwrap().id();
    let l3 = c.lease_grant(60, None).await.unwrap().id();
    let first = c
        .lock("L", Some(LockOptions::new().with_lease(l1)))
        .await
        .unwrap();
    assert_eq!(first.key(), format!("L/{l1:x}").as_bytes());
    // Locking again with the same lease returns the same key at once.
    let again = c
        .lock("L", Some(LockOptions::new().with_lease(l1)))
        .await
        .unwrap();
    assert_eq!(again.key(), first.key());
    let mut c2 = c.clone();
    let second = tokio::spawn(async move {
        c2.lock("L", Some(LockOptions::new().with_lease(l2)))
            .await
            .map(|r| r.key().to_vec())
    });
    wait_keys(&mut c, "L/", 2).await;
    // Round trips while the second waits: it must still be blocked.
    for _ in 0..5 {
        c.get("L/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
    }
    assert!(!second.is_finished(), "the second lock did not wait");
    c.unlock(first.key()).await.unwrap();
    let key2 = tokio::time::timeout(Duration::from_secs(20), second)
        .await
        .expect("second lock acquired after unlock")
        .unwrap()
        .unwrap();
    assert_eq!(key2, format!("L/{l2:x}").into_bytes());
    // A third waits; revoking the holder's lease hands it the lock.
    let mut c3 = c.clone();
    let third = tokio::spawn(async move {
        c3.lock("L", Some(LockOptions::new().with_lease(l3)))
            .await
            .map(|r| r.key().to_vec())
    });
    wait_keys(&mut c, "L/", 2).await;
    assert!(!third.is_finished());
    c.lease_revoke(l2).await.unwrap();
    let key3 = tokio::time::timeout(Duration::from_secs(20), third)
        .await
        .expect("third lock acquired after the lease ended")
        .unwrap()
        .unwrap();
    assert_eq!(key3, format!("L/{l3:x}").into_bytes());
    // An unknown lease is refused.
    assert_grpc_error(
        c.lock("L", Some(LockOptions::new().with_lease(0x999)))
            .await,
        // etcd passes the inner error on as code Unknown.
        Code::Unknown,
        "etcdserver: requested lease not found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_97_campaign_leader_proclaim_observe_resign() {
    let m = Member::start().await;
    let mut c = m.client().await;
    assert_grpc_error(c.leader("E").await, Code::Unknown, "election: no leader");
    let l1 = c.lease_grant(60, None).await.unwrap().id();
    let l2 = c.lease_grant(60, None).await.unwrap().id();
    let won = c.campaign("E", "v1", l1).await.unwrap();
    let lk = won.leader().unwrap().clone();
    assert_eq!(lk.name(), b"E");
    assert_eq!(lk.key(), format!("E/{l1:x}").as_bytes());
    assert_eq!(lk.lease(), l1);
    let leader = c.leader("E").await.unwrap();
    let kv = leader.kv().unwrap();
    assert_eq!((kv.value(), kv.create_revision()), (&b"v1"[..], lk.rev()));
    let mut obs = c.observe("E").await.unwrap();
    let first = obs.message().await.unwrap().unwrap();
    assert_eq!(first.kv().unwrap().value(), b"v1");
    c.proclaim("v2", Some(ProclaimOptions::new().with_leader(lk.clone())))
        .await
        .unwrap();
    assert_eq!(c.leader("E").await.unwrap().kv().unwrap().value(), b"v2");
    assert_eq!(
        obs.message().await.unwrap().unwrap().kv().unwrap().value(),
        b"v2"
    );
    // A second candidate waits until the leader resigns.
    let mut c2 = c.clone();
    let second =
        tokio::spawn(async move { c2.campaign("E", "w", l2).await.map(|r| r.leader().cloned()) });
    wait_keys(&mut c, "E/", 2).await;
    assert!(!second.is_finished(), "the second candidate did not wait");
    c.resign(Some(ResignOptions::new().with_leader(lk.clone())))
        .await
        .unwrap();
    let lk2 = tokio::time::timeout(Duration::from_secs(20), second)
        .await
        .expect("the second candidate won")
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(lk2.key(), format!("E/{l2:x}").as_bytes());
    let next = obs.message().await.unwrap().unwrap();
    assert_eq!(next.kv().unwrap().key(), lk2.key());
    assert_eq!(next.kv().unwrap().value(), b"w");
    // The old leader key no longer proclaims.
    assert_grpc_error(
        c.proclaim("x", Some(ProclaimOptions::new().with_leader(lk)))
            .await,
        Code::Unknown,
        "election: not leader",
    );
}
