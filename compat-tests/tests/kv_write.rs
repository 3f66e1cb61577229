//! KV.Put and KV.DeleteRange semantics (etcd-api.md §2.1, §2.3, §2.4; checklist items 2-4, 7, 15-21).

use compat_tests::{assert_grpc_error, hdr, keys, values, Member};
use etcd_client::{Client, DeleteOptions, KeyValue, PutOptions};
use tonic::Code;

/// (create_revision, mod_revision, version, value, lease) of the single key `k`.
async fn meta(c: &mut Client, k: &str) -> (i64, i64, i64, String, i64) {
    let r = c.get(k, None).await.unwrap();
    assert_eq!(r.kvs().len(), 1, "expected exactly one key {k:?}");
    let kv = &r.kvs()[0];
    (
        kv.create_revision(),
        kv.mod_revision(),
        kv.version(),
        String::from_utf8_lossy(kv.value()).into_owned(),
        kv.lease(),
    )
}

async fn current_revision(c: &mut Client) -> i64 {
    hdr(c.get("any", None).await.unwrap().header()).revision()
}

fn kv_tuple(kv: &KeyValue) -> (String, i64, i64, i64, String) {
    (
        String::from_utf8_lossy(kv.key()).into_owned(),
        kv.create_revision(),
        kv.mod_revision(),
        kv.version(),
        String::from_utf8_lossy(kv.value()).into_owned(),
    )
}

/// Item 2: the first write gets revision 2.
#[tokio::test]
async fn item_02_first_put() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let r = c.put("a", "1", None).await.unwrap();
    let h = hdr(r.header());
    assert_eq!(h.revision(), 2);
    assert_ne!(h.cluster_id(), 0);
    assert_ne!(h.member_id(), 0);
    assert_ne!(h.raft_term(), 0);
    assert!(r.prev_key().is_none());
    assert_eq!(meta(&mut c, "a").await, (2, 2, 1, "1".into(), 0));
}

/// Item 3: an update keeps create_revision and bumps version.
#[tokio::test]
async fn item_03_update() {
    let m = Member::start().await;
    let mut c = m.client().await;
    c.put("a", "1", None).await.unwrap();
    let r = c.put("a", "2", None).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 3);
    assert_eq!(meta(&mut c, "a").await, (2, 3, 2, "2".into(), 0));
}

/// Item 4: a Put of an identical value still creates a revision.
#[tokio::test]
async fn item_04_same_value_put_bumps_revision() {
    let m = Member::start().await;
    let mut c = m.client().await;
    c.put("a", "1", None).await.unwrap();
    c.put("a", "2", None).await.unwrap();
    let r = c.put("a", "2", None).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 4);
    assert_eq!(meta(&mut c, "a").await, (2, 4, 3, "2".into(), 0));
    // An empty value is allowed.
    let r = c.put("e", "", None).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 5);
    assert_eq!(meta(&mut c, "e").await, (5, 5, 1, "".into(), 0));
}

/// Item 7 (Put and DeleteRange parts): an empty key is rejected and consumes no revision.
#[tokio::test]
async fn item_07_put_delete_empty_key() {
    let m = Member::start().await;
    let mut c = m.client().await;
    assert_grpc_error(
        c.put("", "v", None).await,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    assert_grpc_error(
        c.delete("", None).await,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    assert_grpc_error(
        c.delete("", Some(DeleteOptions::new().with_range("z")))
            .await,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    assert_eq!(current_revision(&mut c).await, 1);
}

/// Item 15: prev_kv on Put.
#[tokio::test]
async fn item_15_put_prev_kv() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let r = c
        .put("k", "v1", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert!(r.prev_key().is_none(), "new key must have no prev_kv");
    let r = c
        .put("k", "v2", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(hdr(r.header()).revision(), 3);
    let prev = r.prev_key().expect("prev_kv on update");
    assert_eq!(kv_tuple(prev), ("k".into(), 2, 2, 1, "v1".into()));
    assert_eq!(prev.lease(), 0);
    // Without the flag there is none.
    let r = c.put("k", "v3", None).await.unwrap();
    assert!(r.prev_key().is_none());
}

/// Item 16: Put with an unknown lease fails and consumes no revision.
#[tokio::test]
async fn item_16_put_unknown_lease() {
    let m = Member::start().await;
    let mut c = m.client().await;
    c.put("a", "1", None).await.unwrap();
    assert_grpc_error(
        c.put("k", "v", Some(PutOptions::new().with_lease(0x1234_5678)))
            .await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    assert_eq!(current_revision(&mut c).await, 2);
    assert!(c.get("k", None).await.unwrap().kvs().is_empty());
    let r = c.put("b", "1", None).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 3);
}

/// Item 17: ignore_value / ignore_lease combined with a value / lease are rejected.
#[tokio::test]
async fn item_17_ignore_flags_with_values() {
    let m = Member::start().await;
    let mut c = m.client().await;
    c.put("k", "v", None).await.unwrap();
    assert_grpc_error(
        c.put("k", "x", Some(PutOptions::new().with_ignore_value()))
            .await,
        Code::InvalidArgument,
        "etcdserver: value is provided",
    );
    assert_grpc_error(
        c.put(
            "k",
            "v",
            Some(PutOptions::new().with_ignore_lease().with_lease(5)),
        )
        .await,
        Code::InvalidArgument,
        "etcdserver: lease is provided",
    );
    assert_eq!(current_revision(&mut c).await, 2);
}

/// Item 18: ignore_value on a missing key fails; on an existing key it keeps the value.
#[tokio::test]
async fn item_18_ignore_value() {
    let m = Member::start().await;
    let mut c = m.client().await;
    assert_grpc_error(
        c.put("missing", "", Some(PutOptions::new().with_ignore_value()))
            .await,
        Code::InvalidArgument,
        "etcdserver: key not found",
    );
    assert_grpc_error(
        c.put("missing", "v", Some(PutOptions::new().with_ignore_lease()))
            .await,
        Code::InvalidArgument,
        "etcdserver: key not found",
    );
    assert_eq!(current_revision(&mut c).await, 1);

    c.put("k", "v1", None).await.unwrap();
    let r = c
        .put(
            "k",
            "",
            Some(PutOptions::new().with_ignore_value().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(hdr(r.header()).revision(), 3);
    assert_eq!(
        kv_tuple(r.prev_key().expect("prev_kv")),
        ("k".into(), 2, 2, 1, "v1".into())
    );
    assert_eq!(meta(&mut c, "k").await, (2, 3, 2, "v1".into(), 0));

    // ignore_lease on an existing key without a lease: new value, still no lease.
    let r = c
        .put("k", "v2", Some(PutOptions::new().with_ignore_lease()))
        .await
        .unwrap();
    assert_eq!(hdr(r.header()).revision(), 4);
    assert_eq!(meta(&mut c, "k").await, (2, 4, 3, "v2".into(), 0));
}

/// Item 19: deleting an existing key; re-creating it starts a new life.
#[tokio::test]
async fn item_19_delete_and_recreate() {
    let m = Member::start().await;
    let mut c = m.client().await;
    c.put("a", "1", None).await.unwrap();
    c.put("a", "2", None).await.unwrap();
    let r = c.delete("a", None).await.unwrap();
    assert_eq!(r.deleted(), 1);
    assert!(r.prev_kvs().is_empty(), "no prev_kvs without the flag");
    assert_eq!(hdr(r.header()).revision(), 4);
    let g = c.get("a", None).await.unwrap();
    assert!(g.kvs().is_empty());
    assert_eq!(g.count(), 0);
    assert_eq!(hdr(g.header()).revision(), 4);

    let r = c.put("a", "3", None).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 5);
    assert_eq!(meta(&mut c, "a").await, (5, 5, 1, "3".into(), 0));
}

/// Item 20: deleting nothing consumes no revision.
#[tokio::test]
async fn item_20_delete_missing() {
    let m = Member::start().await;
    let mut c = m.client().await;
    c.put("a", "1", None).await.unwrap();
    let r = c.delete("zzz", None).await.unwrap();
    assert_eq!(r.deleted(), 0);
    assert_eq!(hdr(r.header()).revision(), 2);
    let r = c
        .delete(
            "x",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(r.deleted(), 0);
    assert!(r.prev_kvs().is_empty());
    assert_eq!(hdr(r.header()).revision(), 2);
    let r = c.put("b", "1", None).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 3);
}

/// Item 21: range delete with prev_kv returns every deleted KV, all in one revision.
#[tokio::test]
async fn item_21_range_delete_prev_kv() {
    let m = Member::start().await;
    let mut c = m.client().await;
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("b", "22")] {
        c.put(k, v, None).await.unwrap();
    }
    let r = c
        .delete(
            "a",
            Some(DeleteOptions::new().with_from_key().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(r.deleted(), 3);
    assert_eq!(hdr(r.header()).revision(), 6);
    let prev: Vec<_> = r.prev_kvs().iter().map(kv_tuple).collect();
    assert_eq!(
        prev,
        [
            ("a".into(), 2, 2, 1, "1".into()),
            ("b".into(), 3, 5, 2, "22".into()),
            ("c".into(), 4, 4, 1, "3".into()),
        ]
    );
    let g = c
        .get("\0", Some(etcd_client::GetOptions::new().with_from_key()))
        .await
        .unwrap();
    assert!(g.kvs().is_empty());
    assert_eq!(hdr(g.header()).revision(), 6);
    // The history before the delete is intact.
    let g = c
        .get(
            "a",
            Some(
                etcd_client::GetOptions::new()
                    .with_from_key()
                    .with_revision(5),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(g.kvs()), ["a", "b", "c"]);
    assert_eq!(values(g.kvs()), ["1", "22", "3"]);
}

/// Range delete over [key, range_end) and by prefix.
#[tokio::test]
async fn delete_range_and_prefix() {
    let m = Member::start().await;
    let mut c = m.client().await;
    for k in ["a", "b", "c", "foo", "foo/1", "fop"] {
        c.put(k, "v", None).await.unwrap();
    }
    let r = c
        .delete("a", Some(DeleteOptions::new().with_range("c")))
        .await
        .unwrap();
    assert_eq!(r.deleted(), 2);
    assert_eq!(hdr(r.header()).revision(), 8);
    let r = c
        .delete("foo", Some(DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(r.deleted(), 2);
    assert_eq!(hdr(r.header()).revision(), 9);
    let g = c
        .get("\0", Some(etcd_client::GetOptions::new().with_from_key()))
        .await
        .unwrap();
    assert_eq!(keys(g.kvs()), ["c", "fop"]);
}
