//! KV.Compact semantics (etcd-api.md §2.6; checklist items 32-34).

use compat_tests::{assert_grpc_error, hdr, keys, values, Member};
use etcd_client::{Client, CompactionOptions, GetOptions};
use tonic::Code;

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const FUTURE: &str = "etcdserver: mvcc: required revision is a future revision";

async fn current_revision(c: &mut Client) -> i64 {
    hdr(c.get("any", None).await.unwrap().header()).revision()
}

/// Item 32: reads below the compact revision fail; at it they succeed.
#[tokio::test]
async fn item_32_compact_then_range() {
    let m = Member::start().await;
    let mut c = m.client().await;
    for v in ["1", "2", "3", "4"] {
        c.put("k", v, None).await.unwrap();
    }
    // Revisions 2..=5; compact at 4.
    let r = c.compact(4, None).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 5);
    for rev in [1, 2, 3] {
        assert_grpc_error(
            c.get("k", Some(GetOptions::new().with_revision(rev))).await,
            Code::OutOfRange,
            COMPACTED,
        );
    }
    let g = c
        .get("k", Some(GetOptions::new().with_revision(4)))
        .await
        .unwrap();
    assert_eq!(values(g.kvs()), ["3"]);
    assert_eq!(hdr(g.header()).revision(), 5);
    let g = c
        .get("k", Some(GetOptions::new().with_revision(5)))
        .await
        .unwrap();
    assert_eq!(values(g.kvs()), ["4"]);
    let kv = &g.kvs()[0];
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 5, 4)
    );
    // Current reads are unaffected.
    let g = c.get("k", None).await.unwrap();
    assert_eq!(values(g.kvs()), ["4"]);
}

/// Item 33: compacting again (same or lower revision) or at a future revision fails; compaction does
/// not change the revision.
#[tokio::test]
async fn item_33_compact_errors() {
    let m = Member::start().await;
    let mut c = m.client().await;
    for v in ["1", "2", "3"] {
        c.put("k", v, None).await.unwrap();
    }
    // Current revision 4.
    assert_grpc_error(c.compact(5, None).await, Code::OutOfRange, FUTURE);
    assert_grpc_error(c.compact(100, None).await, Code::OutOfRange, FUTURE);
    let r = c.compact(3, None).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 4);
    assert_grpc_error(c.compact(3, None).await, Code::OutOfRange, COMPACTED);
    assert_grpc_error(c.compact(2, None).await, Code::OutOfRange, COMPACTED);
    assert_eq!(current_revision(&mut c).await, 4);
    // Compacting at the current revision is allowed.
    let r = c.compact(4, None).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 4);
    assert_eq!(current_revision(&mut c).await, 4);
    let r = c.put("k", "4", None).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 5);
}

/// Item 34: physical compaction returns after it is applied; every live key keeps its latest value.
#[tokio::test]
async fn item_34_physical_compaction_keeps_live_keys() {
    let m = Member::start().await;
    let mut c = m.client().await;
    for i in 0..50 {
        for v in 0..3 {
            c.put(format!("key/{i:02}"), format!("v{i}-{v}"), None)
                .await
                .unwrap();
        }
    }
    for i in (0..50).step_by(5) {
        c.delete(format!("key/{i:02}"), None).await.unwrap();
    }
    let rev = current_revision(&mut c).await;
    assert_eq!(rev, 1 + 150 + 10);
    let r = c
        .compact(rev, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    assert_eq!(hdr(r.header()).revision(), rev);

    let g = c
        .get("key/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(g.count(), 40);
    let expected_keys: Vec<String> = (0..50)
        .filter(|i| i % 5 != 0)
        .map(|i| format!("key/{i:02}"))
        .collect();
    assert_eq!(keys(g.kvs()), expected_keys);
    for kv in g.kvs() {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let i: i64 = key["key/".len()..].parse().unwrap();
        assert_eq!(kv.value(), format!("v{i}-2").as_bytes(), "{key}");
        assert_eq!(kv.create_revision(), 2 + 3 * i);
        assert_eq!(kv.mod_revision(), 4 + 3 * i);
        assert_eq!(kv.version(), 3);
    }
    // Reading at the compact revision works; below fails.
    let g = c
        .get(
            "key/",
            Some(GetOptions::new().with_prefix().with_revision(rev)),
        )
        .await
        .unwrap();
    assert_eq!(g.count(), 40);
    assert_grpc_error(
        c.get("key/01", Some(GetOptions::new().with_revision(rev - 1)))
            .await,
        Code::OutOfRange,
        COMPACTED,
    );
    // Writes continue from the same revision.
    let r = c.put("key/00", "new", None).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), rev + 1);
    let g = c.get("key/00", None).await.unwrap();
    let kv = &g.kvs()[0];
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (rev + 1, rev + 1, 1)
    );
}

/// `--auto-compaction-mode periodic --auto-compaction-retention 1s`: history older than about a
/// second is compacted without any client asking; the newest revision stays readable.
#[tokio::test]
async fn periodic_auto_compaction_compacts_old_history() {
    let m = compat_tests::MemberBuilder::new()
        .args([
            "--auto-compaction-mode",
            "periodic",
            "--auto-compaction-retention",
            "1s",
        ])
        .start()
        .await;
    let mut c = m.client().await;
    c.put("k", "1", None).await.unwrap();
    c.put("k", "2", None).await.unwrap();
    let at = |rev: i64| Some(etcd_client::GetOptions::new().with_revision(rev));
    compat_tests::eventually(30, "revision 2 is compacted", || {
        let mut c = c.clone();
        async move {
            match c.get("k", at(2)).await {
                Err(etcd_client::Error::GRpcStatus(s))
                    if s.message() == "etcdserver: mvcc: required revision has been compacted" =>
                {
                    Some(())
                }
                _ => None,
            }
        }
    })
    .await;
    let g = c.get("k", at(3)).await.unwrap();
    assert_eq!(compat_tests::values(g.kvs()), vec!["2"]);
}
