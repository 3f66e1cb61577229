//! KV.Txn semantics (etcd-api.md §2.5; checklist items 7, 22-31) and `--max-txn-ops`.

use compat_tests::{assert_grpc_error, hdr, keys, values, Member};
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};
use tonic::Code;

async fn current_revision(c: &mut Client) -> i64 {
    hdr(c.get("any", None).await.unwrap().header()).revision()
}

fn op_revisions(r: &TxnResponse) -> Vec<i64> {
    r.op_responses()
        .iter()
        .map(|op| match op {
            TxnOpResponse::Put(p) => hdr(p.header()).revision(),
            TxnOpResponse::Get(g) => hdr(g.header()).revision(),
            TxnOpResponse::Delete(d) => hdr(d.header()).revision(),
            TxnOpResponse::Txn(t) => hdr(t.header()).revision(),
        })
        .collect()
}

fn get_resp(op: &TxnOpResponse) -> &etcd_client::GetResponse {
    match op {
        TxnOpResponse::Get(g) => g,
        other => panic!("expected a range response, got {other:?}"),
    }
}

fn puts(prefix: &str, n: usize) -> Vec<TxnOp> {
    (0..n)
        .map(|i| TxnOp::put(format!("{prefix}{i:04}"), "v", None))
        .collect()
}

/// Item 7 (Txn part): a compare with an empty key is rejected.
#[tokio::test]
async fn item_07_txn_compare_empty_key() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let txn = Txn::new()
        .when([Compare::version("", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("k", "v", None)]);
    assert_grpc_error(
        c.txn(txn).await,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    // So are ops with an empty key.
    let txn = Txn::new().and_then([TxnOp::put("", "v", None)]);
    assert_grpc_error(
        c.txn(txn).await,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    let txn = Txn::new().and_then([TxnOp::get("", None)]);
    assert_grpc_error(
        c.txn(txn).await,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    let txn = Txn::new().or_else([TxnOp::delete("", None)]);
    assert_grpc_error(
        c.txn(txn).await,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    assert_eq!(current_revision(&mut c).await, 1);
}

/// Item 22: create-if-absent.
#[tokio::test]
async fn item_22_create_if_absent() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let txn = || {
        Txn::new()
            .when([Compare::create_revision("k", CompareOp::Equal, 0)])
            .and_then([TxnOp::put("k", "v1", None)])
            .or_else([TxnOp::get("k", None)])
    };
    let r = c.txn(txn()).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(hdr(r.header()).revision(), 2);
    let ops = r.op_responses();
    assert_eq!(ops.len(), 1);
    assert!(matches!(ops[0], TxnOpResponse::Put(_)));
    assert_eq!(op_revisions(&r), [2]);

    let r = c.txn(txn()).await.unwrap();
    assert!(!r.succeeded());
    assert_eq!(hdr(r.header()).revision(), 2);
    let ops = r.op_responses();
    assert_eq!(ops.len(), 1);
    let g = get_resp(&ops[0]);
    assert_eq!(values(g.kvs()), ["v1"]);
    let kv = &g.kvs()[0];
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 2, 1)
    );
    assert_eq!(g.count(), 1);
    assert_eq!(hdr(g.header()).revision(), 2);
    assert_eq!(current_revision(&mut c).await, 2);
}

/// Item 23: optimistic update on mod_revision (the Kubernetes update idiom).
#[tokio::test]
async fn item_23_update_on_mod_revision() {
    let m = Member::start().await;
    let mut c = m.client().await;
    c.put("k", "v1", None).await.unwrap();
    let txn = |rev: i64, v: &str| {
        Txn::new()
            .when([Compare::mod_revision("k", CompareOp::Equal, rev)])
            .and_then([TxnOp::put("k", v, None)])
            .or_else([TxnOp::get("k", None)])
    };
    let r = c.txn(txn(2, "v2")).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(hdr(r.header()).revision(), 3);
    assert_eq!(op_revisions(&r), [3]);

    // Stale revision: fails, returns the current object, no new revision.
    let r = c.txn(txn(2, "v3")).await.unwrap();
    assert!(!r.succeeded());
    assert_eq!(hdr(r.header()).revision(), 3);
    let ops = r.op_responses();
    let g = get_resp(&ops[0]);
    assert_eq!(values(g.kvs()), ["v2"]);
    assert_eq!(g.kvs()[0].mod_revision(), 3);

    let r = c.txn(txn(3, "v3")).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(hdr(r.header()).revision(), 4);
    assert_eq!(values(c.get("k", None).await.unwrap().kvs()), ["v3"]);
}

/// Item 24: compares against missing keys; VALUE compares bytes.
#[tokio::test]
async fn item_24_compare_missing_key_and_value() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let check = |cmp: Compare| Txn::new().when([cmp]).and_then([TxnOp::get("x", None)]);
    // VALUE compare on a missing key is always false.
    let r = c
        .txn(check(Compare::value("missing", CompareOp::Equal, "")))
        .await
        .unwrap();
    assert!(!r.succeeded());
    let r = c
        .txn(check(Compare::value("missing", CompareOp::NotEqual, "x")))
        .await
        .unwrap();
    assert!(!r.succeeded());
    // Other targets compare against 0.
    for cmp in [
        Compare::version("missing", CompareOp::Equal, 0),
        Compare::create_revision("missing", CompareOp::Equal, 0),
        Compare::mod_revision("missing", CompareOp::Equal, 0),
        Compare::lease("missing", CompareOp::Equal, 0),
        Compare::version("missing", CompareOp::Less, 1),
    ] {
        let r = c.txn(check(cmp.clone())).await.unwrap();
        assert!(r.succeeded(), "{cmp:?} should hold for a missing key");
    }

    // VALUE compares bytes lexicographically.
    c.put("k", "v", None).await.unwrap();
    for (op, target, expect) in [
        (CompareOp::Equal, "v", true),
        (CompareOp::Greater, "u", true),
        (CompareOp::Greater, "v", false),
        (CompareOp::Less, "va", true),
        (CompareOp::Less, "", false),
        (CompareOp::NotEqual, "v", false),
    ] {
        let r = c.txn(check(Compare::value("k", op, target))).await.unwrap();
        assert_eq!(r.succeeded(), expect, "value(k) {op:?} {target:?}");
    }
    // LEASE of a key without a lease is 0.
    let r = c
        .txn(check(Compare::lease("k", CompareOp::Equal, 0)))
        .await
        .unwrap();
    assert!(r.succeeded());
}

/// Item 24: a LEASE compare matches the attached lease (needs LeaseGrant).
#[tokio::test]
async fn item_24_compare_lease() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let check = |cmp: Compare| Txn::new().when([cmp]);
    let lease = c.lease_grant(60, None).await.unwrap().id();
    c.put("k", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    let r = c
        .txn(check(Compare::lease("k", CompareOp::Equal, lease)))
        .await
        .unwrap();
    assert!(r.succeeded());
    let r = c
        .txn(check(Compare::lease("k", CompareOp::Equal, lease + 1)))
        .await
        .unwrap();
    assert!(!r.succeeded());
    let r = c
        .txn(check(Compare::lease("k", CompareOp::Equal, 0)))
        .await
        .unwrap();
    assert!(!r.succeeded());
    // A txn Put with the granted lease attaches it.
    let txn = Txn::new().and_then([TxnOp::put(
        "b",
        "1",
        Some(PutOptions::new().with_lease(lease)),
    )]);
    assert_eq!(hdr(c.txn(txn).await.unwrap().header()).revision(), 3);
    assert_eq!(c.get("b", None).await.unwrap().kvs()[0].lease(), lease);
    let r = c
        .txn(check(
            Compare::lease("b", CompareOp::Equal, lease).with_range("c"),
        ))
        .await
        .unwrap();
    assert!(r.succeeded());
}

/// Item 25: a compare over a range holds only if every key in it satisfies it.
#[tokio::test]
async fn item_25_compare_over_range() {
    let m = Member::start().await;
    let mut c = m.client().await;
    for k in ["p/a", "p/b", "p/c", "q"] {
        c.put(k, "v", None).await.unwrap();
    }
    // mod revisions: p/a=2, p/b=3, p/c=4, q=5.
    let check = |cmp: Compare| Txn::new().when([cmp]);
    for (cmp, expect) in [
        (
            Compare::mod_revision("p/", CompareOp::Less, 100).with_prefix(),
            true,
        ),
        (
            Compare::mod_revision("p/", CompareOp::Less, 4).with_prefix(),
            false,
        ),
        (
            Compare::mod_revision("p/", CompareOp::Greater, 1).with_prefix(),
            true,
        ),
        (
            Compare::mod_revision("p/a", CompareOp::Less, 4).with_range("p/c"),
            true,
        ),
        (
            Compare::version("p/", CompareOp::Equal, 1).with_prefix(),
            true,
        ),
        (
            Compare::value("p/", CompareOp::Equal, "v").with_prefix(),
            true,
        ),
        (
            Compare::mod_revision("p/", CompareOp::Less, 100).with_range("\0"),
            true,
        ),
        (
            Compare::mod_revision("p/", CompareOp::Less, 5).with_range("\0"),
            false,
        ),
    ] {
        let r = c.txn(check(cmp.clone())).await.unwrap();
        assert_eq!(r.succeeded(), expect, "{cmp:?}");
    }
}

/// Item 26: later ops in a branch see earlier ops' writes; all sub-responses share the txn revision.
#[tokio::test]
async fn item_26_ops_see_earlier_writes() {
    let m = Member::start().await;
    let mut c = m.client().await;
    c.put("k", "0", None).await.unwrap();
    c.put("d", "x", None).await.unwrap();
    let txn = Txn::new().and_then([
        TxnOp::put("k", "1", None),
        TxnOp::get("k", None),
        TxnOp::put("j", "2", Some(PutOptions::new().with_prev_key())),
        TxnOp::get("d", None),
        TxnOp::delete("d", Some(DeleteOptions::new().with_prev_key())),
        TxnOp::get("d", None),
        TxnOp::get("\0", Some(GetOptions::new().with_from_key())),
    ]);
    let r = c.txn(txn).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(hdr(r.header()).revision(), 4);
    assert_eq!(op_revisions(&r), [4, 4, 4, 4, 4, 4, 4]);
    let ops = r.op_responses();
    let g = get_resp(&ops[1]);
    assert_eq!(values(g.kvs()), ["1"]);
    let kv = &g.kvs()[0];
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 4, 2)
    );
    match &ops[2] {
        TxnOpResponse::Put(p) => assert!(p.prev_key().is_none()),
        other => panic!("expected a put response, got {other:?}"),
    }
    assert_eq!(values(get_resp(&ops[3]).kvs()), ["x"]);
    match &ops[4] {
        TxnOpResponse::Delete(d) => {
            assert_eq!(d.deleted(), 1);
            assert_eq!(values(d.prev_kvs()), ["x"]);
        }
        other => panic!("expected a delete response, got {other:?}"),
    }
    assert!(get_resp(&ops[5]).kvs().is_empty());
    let all = get_resp(&ops[6]);
    assert_eq!(keys(all.kvs()), ["j", "k"]);
    assert_eq!(all.count(), 2);
    // One revision for the whole txn.
    let r = c.put("z", "z", None).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 5);
    let g = c
        .get("j", Some(GetOptions::new().with_revision(4)))
        .await
        .unwrap();
    assert_eq!(values(g.kvs()), ["2"]);
    assert_eq!(g.kvs()[0].mod_revision(), 4);
}

/// Item 27: duplicate keys in one txn.
#[tokio::test]
async fn item_27_duplicate_keys() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let dup = "etcdserver: duplicate key given in txn request";
    let txn = Txn::new().and_then([TxnOp::put("k", "1", None), TxnOp::put("k", "2", None)]);
    assert_grpc_error(c.txn(txn).await, Code::InvalidArgument, dup);
    // In the failure branch too.
    let txn = Txn::new().or_else([TxnOp::put("k", "1", None), TxnOp::put("k", "2", None)]);
    assert_grpc_error(c.txn(txn).await, Code::InvalidArgument, dup);
    // Put inside a DeleteRange of the same branch (either order).
    let txn = Txn::new().and_then([
        TxnOp::put("k/1", "1", None),
        TxnOp::delete("k/", Some(DeleteOptions::new().with_prefix())),
    ]);
    assert_grpc_error(c.txn(txn).await, Code::InvalidArgument, dup);
    let txn = Txn::new().and_then([
        TxnOp::delete("a", Some(DeleteOptions::new().with_range("z"))),
        TxnOp::put("k", "1", None),
    ]);
    assert_grpc_error(c.txn(txn).await, Code::InvalidArgument, dup);
    // A Put in a nested txn of a key put by the outer branch.
    let inner = Txn::new().and_then([TxnOp::put("k", "2", None)]);
    let txn = Txn::new().and_then([TxnOp::put("k", "1", None), TxnOp::txn(inner)]);
    assert_grpc_error(c.txn(txn).await, Code::InvalidArgument, dup);
    assert_eq!(current_revision(&mut c).await, 1);

    // Allowed: the same key in the success and the failure branch.
    let txn = Txn::new()
        .and_then([TxnOp::put("k", "1", None)])
        .or_else([TxnOp::put("k", "2", None)]);
    let r = c.txn(txn).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(hdr(r.header()).revision(), 2);
    // Allowed: two deletes of the same key (one revision, one deletion).
    let txn = Txn::new().and_then([TxnOp::delete("k", None), TxnOp::delete("k", None)]);
    let r = c.txn(txn).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 3);
    let deleted: Vec<i64> = r
        .op_responses()
        .iter()
        .map(|op| match op {
            TxnOpResponse::Delete(d) => d.deleted(),
            other => panic!("expected a delete response, got {other:?}"),
        })
        .collect();
    assert_eq!(deleted, [1, 0]);
    // Allowed: put and get of the same key.
    let txn = Txn::new().and_then([TxnOp::put("k", "1", None), TxnOp::get("k", None)]);
    assert!(c.txn(txn).await.unwrap().succeeded());
    // Allowed: the two branches of one nested txn put the same key.
    let inner = Txn::new()
        .when([Compare::version("k", CompareOp::Greater, 0)])
        .and_then([TxnOp::put("n", "then", None)])
        .or_else([TxnOp::put("n", "else", None)]);
    let txn = Txn::new().and_then([TxnOp::txn(inner)]);
    assert!(c.txn(txn).await.unwrap().succeeded());
    assert_eq!(values(c.get("n", None).await.unwrap().kvs()), ["then"]);
}

/// Item 28: at most 128 operations per branch by default.
#[tokio::test]
async fn item_28_max_txn_ops_default() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let too_many = "etcdserver: too many operations in txn request";
    assert_grpc_error(
        c.txn(Txn::new().and_then(puts("s", 129))).await,
        Code::InvalidArgument,
        too_many,
    );
    assert_grpc_error(
        c.txn(Txn::new().or_else(puts("f", 129))).await,
        Code::InvalidArgument,
        too_many,
    );
    let cmps: Vec<Compare> = (0..129)
        .map(|i| Compare::version(format!("c{i}"), CompareOp::Equal, 0))
        .collect();
    assert_grpc_error(
        c.txn(Txn::new().when(cmps)).await,
        Code::InvalidArgument,
        too_many,
    );
    assert_eq!(current_revision(&mut c).await, 1);

    let r = c.txn(Txn::new().and_then(puts("s", 128))).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(hdr(r.header()).revision(), 2);
    assert_eq!(r.op_responses().len(), 128);
    let g = c
        .get("s", Some(GetOptions::new().with_prefix().with_count_only()))
        .await
        .unwrap();
    assert_eq!(g.count(), 128);
    let cmps: Vec<Compare> = (0..128)
        .map(|i| Compare::version(format!("c{i}"), CompareOp::Equal, 0))
        .collect();
    assert!(c.txn(Txn::new().when(cmps)).await.unwrap().succeeded());
}

/// `--max-txn-ops 4`: 5 operations fail, 4 pass.
#[tokio::test]
async fn max_txn_ops_flag() {
    let m = Member::builder().args(["--max-txn-ops", "4"]).start().await;
    let mut c = m.client().await;
    assert_grpc_error(
        c.txn(Txn::new().and_then(puts("k", 5))).await,
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    );
    let cmps: Vec<Compare> = (0..5)
        .map(|i| Compare::version(format!("c{i}"), CompareOp::Equal, 0))
        .collect();
    assert_grpc_error(
        c.txn(Txn::new().when(cmps)).await,
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    );
    let r = c.txn(Txn::new().and_then(puts("k", 4))).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(hdr(r.header()).revision(), 2);
}

/// Item 29: a nested txn runs the branch chosen by its own compares.
#[tokio::test]
async fn item_29_nested_txn() {
    let m = Member::start().await;
    let mut c = m.client().await;
    c.put("flag", "on", None).await.unwrap();
    let inner_true = Txn::new()
        .when([Compare::value("flag", CompareOp::Equal, "on")])
        .and_then([TxnOp::put("b", "then", None)])
        .or_else([TxnOp::put("b", "else", None)]);
    let inner_false = Txn::new()
        .when([Compare::value("flag", CompareOp::Equal, "off")])
        .and_then([TxnOp::put("c", "then", None)])
        .or_else([TxnOp::put("c", "else", None), TxnOp::get("flag", None)]);
    let outer = Txn::new()
        .when([Compare::version("flag", CompareOp::Equal, 1)])
        .and_then([
            TxnOp::put("a", "1", None),
            TxnOp::txn(inner_true),
            TxnOp::txn(inner_false),
        ]);
    let r = c.txn(outer).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(hdr(r.header()).revision(), 3);
    // etcd 3.4 fills only `revision` in the top-level sub-response headers; a nested txn response
    // carries an empty header (revision 0), while the ops inside it carry the txn revision.
    assert_eq!(op_revisions(&r), [3, 0, 0]);
    let ops = r.op_responses();
    match &ops[1] {
        TxnOpResponse::Txn(t) => {
            assert!(t.succeeded());
            assert_eq!(hdr(t.header()).revision(), 0);
            assert_eq!(op_revisions(t), [3]);
            let inner = t.op_responses();
            assert_eq!(inner.len(), 1);
            assert!(matches!(inner[0], TxnOpResponse::Put(_)));
        }
        other => panic!("expected a nested txn response, got {other:?}"),
    }
    match &ops[2] {
        TxnOpResponse::Txn(t) => {
            assert!(!t.succeeded());
            assert_eq!(op_revisions(t), [3, 3]);
            let inner = t.op_responses();
            assert_eq!(inner.len(), 2);
            assert!(matches!(inner[0], TxnOpResponse::Put(_)));
            assert_eq!(values(get_resp(&inner[1]).kvs()), ["on"]);
        }
        other => panic!("expected a nested txn response, got {other:?}"),
    }
    let g = c
        .get("a", Some(GetOptions::new().with_range("d")))
        .await
        .unwrap();
    assert_eq!(keys(g.kvs()), ["a", "b", "c"]);
    assert_eq!(values(g.kvs()), ["1", "then", "else"]);
    assert!(g.kvs().iter().all(|kv| kv.mod_revision() == 3));
}

/// Item 30: a Range at a compacted (or future) revision fails the whole txn; nothing is applied.
#[tokio::test]
async fn item_30_txn_range_at_compacted_revision() {
    let m = Member::start().await;
    let mut c = m.client().await;
    for v in ["1", "2", "3"] {
        c.put("k", v, None).await.unwrap();
    }
    c.compact(3, None).await.unwrap();
    let txn = Txn::new().and_then([
        TxnOp::put("x", "1", None),
        TxnOp::get("k", Some(GetOptions::new().with_revision(2))),
    ]);
    assert_grpc_error(
        c.txn(txn).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    let txn = Txn::new().and_then([
        TxnOp::put("x", "1", None),
        TxnOp::get("k", Some(GetOptions::new().with_revision(5))),
    ]);
    assert_grpc_error(
        c.txn(txn).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    assert!(c.get("x", None).await.unwrap().kvs().is_empty());
    assert_eq!(current_revision(&mut c).await, 4);
    // At the compact revision itself it works.
    let txn = Txn::new().and_then([
        TxnOp::put("x", "1", None),
        TxnOp::get("k", Some(GetOptions::new().with_revision(3))),
    ]);
    let r = c.txn(txn).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 5);
    assert_eq!(values(get_resp(&r.op_responses()[1]).kvs()), ["2"]);
}

/// Item 31: a read-only txn consumes no revision; failed compares without writes neither.
#[tokio::test]
async fn item_31_read_only_txn() {
    let m = Member::start().await;
    let mut c = m.client().await;
    c.put("a", "1", None).await.unwrap();
    let r = c
        .txn(
            Txn::new()
                .when([Compare::value("a", CompareOp::Equal, "1")])
                .and_then([TxnOp::get("a", None)]),
        )
        .await
        .unwrap();
    assert!(r.succeeded());
    assert_eq!(hdr(r.header()).revision(), 2);
    assert_eq!(values(get_resp(&r.op_responses()[0]).kvs()), ["1"]);
    // Failing compare, write only in the success branch: no revision.
    let r = c
        .txn(
            Txn::new()
                .when([Compare::value("a", CompareOp::Equal, "2")])
                .and_then([TxnOp::put("a", "3", None)]),
        )
        .await
        .unwrap();
    assert!(!r.succeeded());
    assert!(r.op_responses().is_empty());
    assert_eq!(hdr(r.header()).revision(), 2);
    // An empty txn.
    let r = c.txn(Txn::new()).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(hdr(r.header()).revision(), 2);
    // A txn whose only write deletes nothing.
    let r = c
        .txn(Txn::new().and_then([TxnOp::delete("missing", None)]))
        .await
        .unwrap();
    assert!(r.succeeded());
    assert_eq!(hdr(r.header()).revision(), 2);
    let r = c.put("b", "1", None).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 3);
}

/// A Put with an unknown lease inside a txn fails the whole txn.
#[tokio::test]
async fn txn_put_unknown_lease_fails_whole_txn() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let txn = Txn::new().and_then([
        TxnOp::put("a", "1", None),
        TxnOp::put("b", "1", Some(PutOptions::new().with_lease(0x7777))),
    ]);
    assert_grpc_error(
        c.txn(txn).await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    );
    assert!(c.get("a", None).await.unwrap().kvs().is_empty());
    assert_eq!(current_revision(&mut c).await, 1);
}
