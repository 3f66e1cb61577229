//! KV.Range semantics (etcd-api.md §2.2; acceptance checklist items 1, 5-13).

use compat_tests::{assert_grpc_error, hdr, keys, values, Member};
use etcd_client::{Client, GetOptions, SortOrder, SortTarget};
use tonic::Code;

async fn put_all(client: &mut Client, kvs: &[(&str, &str)]) {
    for (k, v) in kvs {
        client.put(*k, *v, None).await.expect("put");
    }
}

/// Item 1: Range on a fresh store.
#[tokio::test]
async fn item_01_range_on_fresh_store() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let r = c.get("a", None).await.unwrap();
    assert!(r.kvs().is_empty());
    assert_eq!(r.count(), 0);
    assert!(!r.more());
    let h = hdr(r.header());
    assert_eq!(h.revision(), 1);
    assert_ne!(h.cluster_id(), 0);
    assert_ne!(h.member_id(), 0);
    assert_ne!(h.raft_term(), 0);
}

/// Item 5: Range at an older revision returns the old value; the header carries the current revision.
#[tokio::test]
async fn item_05_range_at_old_revision() {
    let m = Member::start().await;
    let mut c = m.client().await;
    put_all(&mut c, &[("a", "1"), ("a", "2"), ("a", "2")]).await;
    let r = c
        .get("a", Some(GetOptions::new().with_revision(2)))
        .await
        .unwrap();
    assert_eq!(values(r.kvs()), ["1"]);
    let kv = &r.kvs()[0];
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 2, 1)
    );
    assert_eq!(hdr(r.header()).revision(), 4);
    assert_eq!(r.count(), 1);
}

/// Item 6: Range at a future revision.
#[tokio::test]
async fn item_06_range_future_revision() {
    let m = Member::start().await;
    let mut c = m.client().await;
    put_all(&mut c, &[("a", "1"), ("a", "2")]).await;
    assert_grpc_error(
        c.get("a", Some(GetOptions::new().with_revision(4))).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    // The current revision itself is fine, and so are revision <= 0 (= current).
    let r = c
        .get("a", Some(GetOptions::new().with_revision(3)))
        .await
        .unwrap();
    assert_eq!(values(r.kvs()), ["2"]);
    let r = c
        .get("a", Some(GetOptions::new().with_revision(-5)))
        .await
        .unwrap();
    assert_eq!(values(r.kvs()), ["2"]);
}

/// Item 7 (Range part): an empty key is rejected. Put/Delete/Txn parts are in kv_write.rs / kv_txn.rs.
#[tokio::test]
async fn item_07_range_empty_key() {
    let m = Member::start().await;
    let mut c = m.client().await;
    assert_grpc_error(
        c.get("", None).await,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    // Even with a range end.
    assert_grpc_error(
        c.get("", Some(GetOptions::new().with_range("z"))).await,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
}

/// Item 8: [key, range_end) semantics, "\0" ends, inverted ranges.
#[tokio::test]
async fn item_08_range_end_semantics() {
    let m = Member::start().await;
    let mut c = m.client().await;
    put_all(&mut c, &[("a", "1"), ("b", "2"), ("c", "3")]).await;

    let r = c
        .get("a", Some(GetOptions::new().with_range("c")))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["a", "b"]);
    assert_eq!(r.count(), 2);

    let r = c
        .get("b", Some(GetOptions::new().with_range("\0")))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["b", "c"]);
    assert_eq!(r.count(), 2);

    let r = c
        .get("\0", Some(GetOptions::new().with_range("\0")))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["a", "b", "c"]);
    assert_eq!(r.count(), 3);

    let r = c
        .get("c", Some(GetOptions::new().with_range("a")))
        .await
        .unwrap();
    assert!(r.kvs().is_empty());
    assert_eq!(r.count(), 0);
    assert!(!r.more());
    assert_eq!(hdr(r.header()).revision(), 4);

    // range_end == key is empty too.
    let r = c
        .get("b", Some(GetOptions::new().with_range("b")))
        .await
        .unwrap();
    assert!(r.kvs().is_empty());
    assert_eq!(r.count(), 0);
}

/// Item 9: limit, more and count.
#[tokio::test]
async fn item_09_limit_more_count() {
    let m = Member::start().await;
    let mut c = m.client().await;
    put_all(&mut c, &[("a", "1"), ("b", "2"), ("c", "3")]).await;

    let r = c
        .get("a", Some(GetOptions::new().with_from_key().with_limit(2)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["a", "b"]);
    assert!(r.more());
    assert_eq!(r.count(), 3);

    let r = c
        .get("a", Some(GetOptions::new().with_from_key().with_limit(3)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["a", "b", "c"]);
    assert!(!r.more());
    assert_eq!(r.count(), 3);

    let r = c
        .get("a", Some(GetOptions::new().with_from_key().with_limit(10)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["a", "b", "c"]);
    assert!(!r.more());
    assert_eq!(r.count(), 3);
}

/// Item 10: prefix ranges, including the all-0xff prefix whose end is "\0".
#[tokio::test]
async fn item_10_prefix() {
    let m = Member::start().await;
    let mut c = m.client().await;
    put_all(
        &mut c,
        &[("fo", "0"), ("foo", "1"), ("foo/abc", "2"), ("fop", "3")],
    )
    .await;
    let r = c
        .get("foo", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["foo", "foo/abc"]);
    assert_eq!(r.count(), 2);
    // The same range written out explicitly.
    let r = c
        .get("foo", Some(GetOptions::new().with_range("fop")))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["foo", "foo/abc"]);

    for k in [&b"\xfe"[..], b"\xff", b"\xff\x00", b"\xff\xff"] {
        c.put(k.to_vec(), "x", None).await.unwrap();
    }
    // Prefix "\xff" → range_end "\0" (everything from "\xff").
    let r = c
        .get(b"\xff".to_vec(), Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let got: Vec<Vec<u8>> = r.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    assert_eq!(
        got,
        vec![b"\xff".to_vec(), b"\xff\x00".to_vec(), b"\xff\xff".to_vec()]
    );
    assert_eq!(r.count(), 3);
}

/// Item 11: count_only and keys_only.
#[tokio::test]
async fn item_11_count_only_keys_only() {
    let m = Member::start().await;
    let mut c = m.client().await;
    put_all(&mut c, &[("a", "1"), ("b", "2"), ("c", "3"), ("b", "22")]).await;

    let r = c
        .get(
            "a",
            Some(GetOptions::new().with_from_key().with_count_only()),
        )
        .await
        .unwrap();
    assert!(r.kvs().is_empty());
    assert_eq!(r.count(), 3);
    assert!(!r.more());
    assert_eq!(hdr(r.header()).revision(), 5);

    let r = c
        .get(
            "a",
            Some(GetOptions::new().with_from_key().with_keys_only()),
        )
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["a", "b", "c"]);
    assert_eq!(r.count(), 3);
    let meta: Vec<(i64, i64, i64, usize)> = r
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.value().len(),
            )
        })
        .collect();
    assert_eq!(meta, [(2, 2, 1, 0), (3, 5, 2, 0), (4, 4, 1, 0)]);

    // keys_only with a limit keeps more/count right.
    let r = c
        .get(
            "a",
            Some(
                GetOptions::new()
                    .with_from_key()
                    .with_keys_only()
                    .with_limit(1),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["a"]);
    assert!(r.more());
    assert_eq!(r.count(), 3);
}

/// Item 12: sorting; limit is applied after sorting.
#[tokio::test]
async fn item_12_sort() {
    let m = Member::start().await;
    let mut c = m.client().await;
    // Creation order c, a, b; versions: c=1, a=3, b=2; values differ from key order.
    put_all(
        &mut c,
        &[
            ("c", "x"),
            ("a", "z"),
            ("b", "y"),
            ("a", "z"),
            ("b", "w"),
            ("a", "v"),
        ],
    )
    .await;
    let all = || GetOptions::new().with_all_keys();

    // CREATE with order NONE is treated as ascending.
    let r = c
        .get(
            "",
            Some(all().with_sort(SortTarget::Create, SortOrder::None)),
        )
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["c", "a", "b"]);

    let r = c
        .get(
            "",
            Some(all().with_sort(SortTarget::Key, SortOrder::Descend)),
        )
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["c", "b", "a"]);

    let r = c
        .get(
            "",
            Some(all().with_sort(SortTarget::Version, SortOrder::Descend)),
        )
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["a", "b", "c"]);

    let r = c
        .get(
            "",
            Some(all().with_sort(SortTarget::Mod, SortOrder::Ascend)),
        )
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["c", "b", "a"]);

    let r = c
        .get(
            "",
            Some(all().with_sort(SortTarget::Value, SortOrder::Ascend)),
        )
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["a", "b", "c"]);
    assert_eq!(values(r.kvs()), ["v", "w", "x"]);

    // Limit after sort: the two newest creations, more=true, count=3.
    let r = c
        .get(
            "",
            Some(
                all()
                    .with_sort(SortTarget::Create, SortOrder::Descend)
                    .with_limit(2),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["b", "a"]);
    assert!(r.more());
    assert_eq!(r.count(), 3);

    let r = c
        .get(
            "",
            Some(
                all()
                    .with_sort(SortTarget::Key, SortOrder::Descend)
                    .with_limit(1),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["c"]);
    assert!(r.more());
    assert_eq!(r.count(), 3);
}

/// Item 13: min/max mod/create revision filters are inclusive and do not change `count`.
#[tokio::test]
async fn item_13_revision_filters() {
    let m = Member::start().await;
    let mut c = m.client().await;
    // a: create 2, mod 5; b: create 3, mod 3; c: create 4, mod 4.
    put_all(&mut c, &[("a", "1"), ("b", "2"), ("c", "3"), ("a", "11")]).await;
    let all = || GetOptions::new().with_all_keys();

    let r = c
        .get("", Some(all().with_min_mod_revision(4)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["a", "c"]);
    assert_eq!(r.count(), 3);

    let r = c
        .get("", Some(all().with_max_mod_revision(4)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["b", "c"]);
    assert_eq!(r.count(), 3);

    let r = c
        .get(
            "",
            Some(all().with_min_mod_revision(4).with_max_mod_revision(4)),
        )
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["c"]);
    assert_eq!(r.count(), 3);

    let r = c
        .get("", Some(all().with_min_create_revision(3)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["b", "c"]);
    assert_eq!(r.count(), 3);

    let r = c
        .get("", Some(all().with_max_create_revision(3)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["a", "b"]);
    assert_eq!(r.count(), 3);

    let r = c
        .get(
            "",
            Some(
                all()
                    .with_min_create_revision(3)
                    .with_max_create_revision(3),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["b"]);
    assert_eq!(r.count(), 3);

    // Filter plus limit: limit applies to the filtered list.
    let r = c
        .get("", Some(all().with_min_mod_revision(3).with_limit(1)))
        .await
        .unwrap();
    assert_eq!(keys(r.kvs()), ["a"]);
    assert!(r.more());
    assert_eq!(r.count(), 3);
}

/// Serializable reads on a single member see the latest write.
#[tokio::test]
async fn range_serializable() {
    let m = Member::start().await;
    let mut c = m.client().await;
    put_all(&mut c, &[("a", "1")]).await;
    let r = c
        .get("a", Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    assert_eq!(values(r.kvs()), ["1"]);
    assert_eq!(hdr(r.header()).revision(), 2);
}
