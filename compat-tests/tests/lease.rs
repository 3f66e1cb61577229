//! Lease through the etcd-client crate and etcdctl: checklist items 55-64 (issue 4).

use std::time::Duration;

use compat_tests::{assert_grpc_error, eventually, keys, Cluster, Member};
use etcd_client::{
    EventType, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions, WatchOptions,
};
use tokio::time::Instant;
use tonic::Code;

#[tokio::test]
async fn item_55_grant_ids_minimum_ttl_and_duplicates() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let g = c.lease_grant(60, None).await.unwrap();
    assert!(g.id() > 0);
    assert_eq!(g.ttl(), 60);
    // The minimum TTL with the default election timeout (1 s) is 2 s.
    assert_eq!(c.lease_grant(1, None).await.unwrap().ttl(), 2);
    assert_eq!(c.lease_grant(0, None).await.unwrap().ttl(), 2);
    let g = c
        .lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x1234)))
        .await
        .unwrap();
    assert_eq!(g.id(), 0x1234);
    assert_grpc_error(
        c.lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x1234)))
            .await,
        Code::FailedPrecondition,
        "etcdserver: lease already exists",
    );
}

#[tokio::test]
async fn item_56_too_large_ttl() {
    let m = Member::start().await;
    let mut c = m.client().await;
    assert_grpc_error(
        c.lease_grant(9_000_000_001, None).await,
        Code::OutOfRange,
        "etcdserver: too large lease TTL",
    );
}

#[tokio::test]
async fn item_57_expiry_deletes_all_keys_in_one_revision() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let id = c.lease_grant(2, None).await.unwrap().id();
    c.put("e1", "1", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    let r = c
        .put("e2", "2", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    let before = r.header().unwrap().revision();
    let after = eventually(15, "the lease expires", || {
        let mut c = c.clone();
        async move {
            let r = c
                .get("e", Some(GetOptions::new().with_prefix()))
                .await
                .ok()?;
            r.kvs().is_empty().then(|| r.header().unwrap().revision())
        }
    })
    .await;
    assert_eq!(after, before + 1, "both keys go in one revision");
    let ttl = c.lease_time_to_live(id, None).await.unwrap();
    assert_eq!((ttl.ttl(), ttl.granted_ttl()), (-1, 0));
}

#[tokio::test]
async fn item_58_keep_alive_keeps_the_key() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let id = c.lease_grant(2, None).await.unwrap().id();
    c.put("kept", "v", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    let (mut keeper, mut stream) = c.lease_keep_alive(id).await.unwrap();
    let start = Instant::now();
    // Renew for twice the TTL; the key must stay.
    while start.elapsed() < Duration::from_secs(4) {
        keeper.keep_alive().await.unwrap();
        let resp = stream.message().await.unwrap().unwrap();
        assert_eq!((resp.id(), resp.ttl()), (id, 2));
        let r = c.get("kept", None).await.unwrap();
        assert_eq!(keys(r.kvs()), ["kept"]);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn item_59_unknown_lease_keep_alive_and_time_to_live() {
    let m = Member::start().await;
    // The server answers TTL 0 on the stream and keeps it open: etcdctl's streaming keep-alive
    // reports the lease gone and exits 0; its --once form (KeepAliveOnce) turns TTL 0 into an error.
    let out = m.etcdctl(&["lease", "keep-alive", "777"]).await;
    out.assert_success();
    assert_eq!(
        out.stdout.trim(),
        "lease 0000000000000777 expired or revoked."
    );
    let out = m.etcdctl(&["lease", "keep-alive", "--once", "777"]).await;
    assert!(!out.success());
    assert_eq!(
        out.stderr.trim(),
        "Error: etcdserver: requested lease not found"
    );
    // The Rust crate also maps TTL 0 to its own error.
    let mut c = m.client().await;
    assert!(c.lease_keep_alive(0x777).await.is_err());
    let t = c.lease_time_to_live(0x777, None).await.unwrap();
    assert_eq!((t.id(), t.ttl(), t.granted_ttl()), (0x777, -1, 0));
}

#[tokio::test]
async fn items_60_61_62_time_to_live_revoke_and_list() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let id = c.lease_grant(100, None).await.unwrap().id();
    let other = c.lease_grant(100, None).await.unwrap().id();
    c.put("a", "1", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    c.put("b", "1", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    // Moving a key to another lease detaches it from the first.
    c.put("c", "1", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    c.put("c", "2", Some(PutOptions::new().with_lease(other)))
        .await
        .unwrap();
    let t = c
        .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(t.granted_ttl(), 100);
    assert!(t.ttl() <= 100 && t.ttl() >= 95, "{}", t.ttl());
    assert_eq!(t.keys(), [b"a".to_vec(), b"b".to_vec()]);
    let mut listed: Vec<i64> = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    listed.sort();
    let mut want = vec![id, other];
    want.sort();
    assert_eq!(listed, want);
    let before = c.get("a", None).await.unwrap().header().unwrap().revision();
    let r = c.lease_revoke(id).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), before + 1);
    let left = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(keys(left.kvs()), ["c"]);
    assert_grpc_error(
        c.lease_revoke(id).await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    // Revoking a lease without keys consumes no revision.
    let empty = c.lease_grant(100, None).await.unwrap().id();
    let now = left.header().unwrap().revision();
    let r = c.lease_revoke(empty).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), now);
}

#[tokio::test]
async fn etcdctl_lease_commands() {
    let m = Member::start().await;
    let out = m.etcdctl(&["lease", "grant", "100"]).await;
    out.assert_success();
    // lease 694d77aa9e38260f granted with TTL(100s)
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(
        (words[0], words[2], words[3], words[4]),
        ("lease", "granted", "with", "TTL(100s)")
    );
    let id = words[1].to_string();
    m.etcdctl(&["put", "--lease", &id, "lk", "v"])
        .await
        .assert_success();
    let out = m.etcdctl(&["lease", "timetolive", &id, "--keys"]).await;
    out.assert_success();
    assert!(
        out.stdout
            .contains(&format!("lease {id} granted with TTL(100s), remaining(")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.trim_end().ends_with("attached keys([lk])"),
        "{}",
        out.stdout
    );
    let out = m.etcdctl(&["lease", "keep-alive", "--once", &id]).await;
    out.assert_success();
    assert_eq!(
        out.stdout.trim(),
        format!("lease {id} keepalived with TTL(100)")
    );
    let out = m.etcdctl(&["lease", "list"]).await;
    out.assert_success();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["found 1 leases", id.as_str()]
    );
    let out = m.etcdctl(&["lease", "revoke", &id]).await;
    out.assert_success();
    assert_eq!(out.stdout.trim(), format!("lease {id} revoked"));
    let out = m.etcdctl(&["lease", "timetolive", &id]).await;
    assert_eq!(out.stdout.trim(), format!("lease {id} already expired"));
    let out = m.etcdctl(&["get", "lk"]).await;
    assert_eq!(out.stdout, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_63_64_keep_alive_through_a_follower_and_no_early_expiry_on_failover() {
    let mut cl = Cluster::start(3, &[]).await;
    let leader = cl.leader().await;
    let follower = (leader + 1) % 3;
    let mut fc = cl.members[follower].client().await;
    // Item 64: a keep-alive sent to a follower reaches the leader.
    let id = fc.lease_grant(3, None).await.unwrap().id();
    fc.put("fk", "v", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    let (mut keeper, mut stream) = fc.lease_keep_alive(id).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let r = stream.message().await.unwrap().unwrap();
    assert_eq!((r.id(), r.ttl()), (id, 3));
    let t = fc.lease_time_to_live(id, None).await.unwrap();
    assert_eq!(t.granted_ttl(), 3);
    // Item 63: kill the leader right after a keep-alive; the key must outlive the TTL counted from it.
    keeper.keep_alive().await.unwrap();
    stream.message().await.unwrap().unwrap();
    let renewed = Instant::now();
    cl.members[leader].kill9();
    let survivor = cl.members[follower].client().await;
    while renewed.elapsed() < Duration::from_millis(2500) {
        let mut s = survivor.clone();
        let r = s
            .get("fk", Some(GetOptions::new().with_serializable()))
            .await
            .unwrap();
        assert_eq!(keys(r.kvs()), ["fk"], "the lease expired before its TTL");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(keeper);
    // Without keep-alives the new leader expires it, and the key goes.
    let gone_at = eventually(20, "the new leader expires the lease", || {
        let mut s = survivor.clone();
        async move {
            let r = s.get("fk", None).await.ok()?;
            r.kvs().is_empty().then(|| r.header().unwrap().revision())
        }
    })
    .await;
    // The key's history holds exactly one PUT and one DELETE (deleted exactly once).
    let mut s = survivor.clone();
    let mut stream = s
        .watch("fk", Some(WatchOptions::new().with_start_revision(1)))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.last().is_none_or(|(_, rev)| *rev < gone_at) {
        let msg = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("history replay")
            .unwrap()
            .unwrap();
        for ev in msg.events() {
            seen.push((ev.event_type(), ev.kv().unwrap().mod_revision()));
        }
    }
    assert_eq!(
        seen.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        [EventType::Put, EventType::Delete]
    );
    assert_eq!(seen[1].1, gone_at);
}

#[tokio::test]
async fn leases_and_attachments_survive_a_restart() {
    let mut m = Member::start().await;
    let mut c = m.client().await;
    let id = c.lease_grant(100, None).await.unwrap().id();
    c.put("r", "1", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    m.kill9();
    m.restart().await;
    let mut c = m.client().await;
    let t = c
        .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(t.granted_ttl(), 100);
    assert!(t.ttl() > 90, "{}", t.ttl());
    assert_eq!(t.keys(), [b"r".to_vec()]);
    let r = c.get("r", None).await.unwrap();
    assert_eq!(r.kvs()[0].lease(), id);
    c.lease_revoke(id).await.unwrap();
    assert!(c.get("r", None).await.unwrap().kvs().is_empty());
}
