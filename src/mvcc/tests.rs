//! Unit tests of the MVCC keyspace: revision bookkeeping, reads of a batch's own writes, Range options,
//! Txn paths and physical compaction. `mvcc/mod.rs` includes this file twice: as `tests` on a
//! temporary RocksDB and as `tests_on_memory` on the memory engine, so MVCC is shown to depend only
//! on the storage seam.

use super::compact::Compactor;
use super::store::{range, KeyRange, KvRead};
use super::txn::{run_read_txn, run_txn};
use super::{KvWrite, Store, WriteBatch};
use crate::error::Error;
use crate::proto::etcdserverpb::{
    compare, range_request, request_op, CompactionRequest, Compare, DeleteRangeRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};
use crate::storage::{Db, CF_INDEX, CF_KV};

/// A database of the engine this instance of the file tests.
pub(crate) fn engine(dir: &std::path::Path) -> Db {
    if module_path!().ends_with("_on_memory") {
        Db::memory()
    } else {
        Db::open(dir).unwrap()
    }
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let db = engine(dir.path());
    (dir, Store::open(db).unwrap())
}

fn put(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }
}

/// Applies each closure as one write transaction, all in one batch.
fn batch(store: &Store, ops: &[&dyn Fn(&mut WriteBatch<'_>)]) -> i64 {
    let mut wb = WriteBatch::new(store);
    for op in ops {
        op(&mut wb);
        wb.end_txn();
    }
    wb.finish(&[]).unwrap().0
}

fn get(store: &Store, req: RangeRequest) -> crate::proto::etcdserverpb::RangeResponse {
    store.with_view(|v| range(v, &req)).unwrap()
}

fn rr(k: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: k.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

fn keys(r: &crate::proto::etcdserverpb::RangeResponse) -> Vec<String> {
    r.kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect()
}

fn count_cf(store: &Store, cf: crate::storage::Cf) -> usize {
    let mut it = store.db().cursor(cf, None).unwrap();
    it.seek(&[]);
    let mut n = 0;
    while it.key().is_some() {
        n += 1;
        it.next();
    }
    n
}

#[test]
fn revisions_versions_and_batch_overlay() {
    let (_d, s) = open();
    assert_eq!(s.current_revision(), 1);
    // Two puts of one key and a put of another, all in one batch: each sees the previous.
    let rev = batch(
        &s,
        &[
            &|wb| {
                wb.put(&put("a", "1")).unwrap();
            },
            &|wb| {
                let r = wb.put(&PutRequest {
                    prev_kv: true,
                    ..put("a", "2")
                });
                assert_eq!(r.unwrap().prev_kv.unwrap().value, b"1");
            },
            &|wb| {
                wb.put(&put("b", "x")).unwrap();
            },
        ],
    );
    assert_eq!(rev, 4);
    let r = get(&s, rr("a", ""));
    let kv = &r.kvs[0];
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    assert_eq!(r.header.unwrap().revision, 4);
    // Historical read.
    let r = get(
        &s,
        RangeRequest {
            revision: 2,
            ..rr("a", "")
        },
    );
    assert_eq!(r.kvs[0].value, b"1");
    assert_eq!(r.header.unwrap().revision, 4);
    // Future revision.
    let e = s
        .with_view(|v| {
            range(
                v,
                &RangeRequest {
                    revision: 5,
                    ..rr("a", "")
                },
            )
        })
        .unwrap_err();
    assert_eq!(e, Error::FutureRev);
}

#[test]
fn delete_and_recreate_within_one_batch() {
    let (_d, s) = open();
    batch(
        &s,
        &[&|wb| {
            wb.put(&put("k", "1")).unwrap();
        }],
    );
    let rev = batch(
        &s,
        &[
            &|wb| {
                let d = wb
                    .delete_range(&DeleteRangeRequest {
                        key: "k".into(),
                        ..Default::default()
                    })
                    .unwrap();
                assert_eq!(d.deleted, 1);
            },
            &|wb| {
                // The batch's own tombstone hides the key from a range read in the same batch.
                let r = range(wb, &rr("a", "z")).unwrap();
                assert!(r.kvs.is_empty());
                wb.put(&put("k", "2")).unwrap();
            },
            &|wb| {
                // Deleting nothing consumes no revision.
                let d = wb
                    .delete_range(&DeleteRangeRequest {
                        key: "nothing".into(),
                        ..Default::default()
                    })
                    .unwrap();
                assert_eq!(d.deleted, 0);
            },
        ],
    );
    assert_eq!(rev, 4);
    let r = get(&s, rr("k", ""));
    let kv = &r.kvs[0];
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (4, 4, 1));
    let r = get(
        &s,
        RangeRequest {
            revision: 3,
            ..rr("k", "")
        },
    );
    assert!(r.kvs.is_empty());
}

#[test]
fn overlay_merges_into_db_ranges_in_key_order() {
    let (_d, s) = open();
    batch(
        &s,
        &[&|wb| {
            wb.put(&put("a", "1")).unwrap();
            wb.put(&put("c", "1")).unwrap();
        }],
    );
    let mut wb = WriteBatch::new(&s);
    wb.put(&put("b", "1")).unwrap();
    wb.put(&put("d\0", "1")).unwrap();
    wb.end_txn();
    let all = wb
        .visible(&KeyRange::new(b"a", b"\0"), i64::MAX, true)
        .unwrap();
    let ks: Vec<&[u8]> = all.iter().map(|h| h.key.as_slice()).collect();
    assert_eq!(ks, vec![&b"a"[..], b"b", b"c", b"d\0"]);
    let r = range(
        &wb,
        &RangeRequest {
            limit: 2,
            ..rr("a", "\0")
        },
    )
    .unwrap();
    assert_eq!(
        (keys(&r), r.more, r.count),
        (vec!["a".into(), "b".into()], true, 4)
    );
}

#[test]
fn range_sort_filters_and_limits() {
    let (_d, s) = open();
    // a, b, c created in reverse order; c updated twice.
    batch(
        &s,
        &[
            &|wb| {
                wb.put(&put("c", "1")).unwrap();
            },
            &|wb| {
                wb.put(&put("b", "1")).unwrap();
            },
            &|wb| {
                wb.put(&put("a", "1")).unwrap();
            },
            &|wb| {
                wb.put(&put("c", "2")).unwrap();
            },
        ],
    );
    use range_request::{SortOrder, SortTarget};
    let r = get(
        &s,
        RangeRequest {
            sort_target: SortTarget::Create as i32,
            ..rr("a", "\0")
        },
    );
    assert_eq!(keys(&r), vec!["c", "b", "a"]);
    let r = get(
        &s,
        RangeRequest {
            sort_order: SortOrder::Descend as i32,
            limit: 2,
            ..rr("a", "\0")
        },
    );
    assert_eq!(
        (keys(&r), r.more, r.count),
        (vec!["c".into(), "b".into()], true, 3)
    );
    let r = get(
        &s,
        RangeRequest {
            min_mod_revision: 4,
            ..rr("a", "\0")
        },
    );
    assert_eq!((keys(&r), r.count), (vec!["a".into(), "c".into()], 3));
    let r = get(
        &s,
        RangeRequest {
            count_only: true,
            ..rr("a", "\0")
        },
    );
    assert!(r.kvs.is_empty());
    assert_eq!(r.count, 3);
    let r = get(
        &s,
        RangeRequest {
            keys_only: true,
            ..rr("c", "")
        },
    );
    assert!(r.kvs[0].value.is_empty());
    assert_eq!(r.kvs[0].version, 2);
    // range_end <= key is an empty range, not an error.
    assert!(get(&s, rr("c", "a")).kvs.is_empty());
}

fn cmp(
    key: &str,
    target: compare::CompareTarget,
    result: compare::CompareResult,
    u: compare::TargetUnion,
) -> Compare {
    Compare {
        key: key.into(),
        target: target as i32,
        result: result as i32,
        target_union: Some(u),
        range_end: vec![],
    }
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(put(k, v))),
    }
}

#[test]
fn txn_paths_nested_and_read_only() {
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let (_d, s) = open();
    let create_if_absent = TxnRequest {
        compare: vec![cmp("k", T::Create, R::Equal, U::CreateRevision(0))],
        success: vec![
            op_put("k", "1"),
            RequestOp {
                request: Some(request_op::Request::RequestRange(rr("k", ""))),
            },
        ],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestTxn(TxnRequest {
                compare: vec![cmp("k", T::Value, R::Equal, U::Value(b"1".to_vec()))],
                success: vec![op_put("other", "x")],
                failure: vec![],
            })),
        }],
    };
    let mut wb = WriteBatch::new(&s);
    let r = run_txn(&mut wb, &create_if_absent).unwrap();
    wb.end_txn();
    assert!(r.succeeded);
    assert_eq!(r.header.as_ref().unwrap().revision, 2);
    // The Range after the Put sees it, and carries the txn revision.
    match &r.responses[1].response {
        Some(crate::proto::etcdserverpb::response_op::Response::ResponseRange(rg)) => {
            assert_eq!(rg.kvs[0].value, b"1");
            assert_eq!(rg.header.as_ref().unwrap().revision, 2);
        }
        other => panic!("unexpected {other:?}"),
    }
    // Second run in the same batch: fails the compare, runs the nested txn on the failure branch.
    let r = run_txn(&mut wb, &create_if_absent).unwrap();
    wb.end_txn();
    assert!(!r.succeeded);
    wb.finish(&[]).unwrap();
    assert_eq!(get(&s, rr("other", "")).kvs[0].mod_revision, 3);
    // A read-only txn on a snapshot: no revision.
    let ro = TxnRequest {
        compare: vec![cmp("missing", T::Version, R::Equal, U::Version(0))],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(rr("a", "\0"))),
        }],
        failure: vec![],
    };
    let r = s.with_view(|v| run_read_txn(v, &ro)).unwrap();
    assert!(r.succeeded);
    assert_eq!(r.header.unwrap().revision, 3);
    assert_eq!(s.current_revision(), 3);
}

#[tokio::test]
async fn compaction_removes_old_versions_physically() {
    let (_d, s) = open();
    let compactor = Compactor::start(s.db().clone()).unwrap();
    // a: 3 versions (revs 2,3,4); b: put at 5, deleted at 6; c: put at 7.
    batch(
        &s,
        &[
            &|wb| {
                wb.put(&put("a", "1")).unwrap();
            },
            &|wb| {
                wb.put(&put("a", "2")).unwrap();
            },
            &|wb| {
                wb.put(&put("a", "3")).unwrap();
            },
            &|wb| {
                wb.put(&put("b", "1")).unwrap();
            },
            &|wb| {
                wb.delete_range(&DeleteRangeRequest {
                    key: "b".into(),
                    ..Default::default()
                })
                .unwrap();
            },
            &|wb| {
                wb.put(&put("c", "1")).unwrap();
            },
        ],
    );
    assert_eq!((count_cf(&s, CF_KV), count_cf(&s, CF_INDEX)), (6, 6));
    let mut wb = WriteBatch::new(&s);
    assert_eq!(
        wb.compact(&CompactionRequest {
            revision: 8,
            physical: true
        }),
        Err(Error::FutureRev)
    );
    wb.compact(&CompactionRequest {
        revision: 6,
        physical: true,
    })
    .unwrap();
    let (_, _, scheduled) = wb.finish(&[]).unwrap();
    assert_eq!(scheduled, Some(6));
    compactor.schedule(6);
    compactor.wait(6).await;
    // a keeps only rev 4; b's history and tombstone leave the index, the tombstone record at exactly
    // the compacted revision stays in kv for watchers; c untouched.
    assert_eq!(count_cf(&s, CF_INDEX), 2);
    assert_eq!(count_cf(&s, CF_KV), 3);
    assert_eq!(get(&s, rr("a", "")).kvs[0].value, b"3");
    assert_eq!(
        keys(&get(
            &s,
            RangeRequest {
                revision: 6,
                ..rr("a", "\0")
            }
        )),
        vec!["a"]
    );
    assert_eq!(keys(&get(&s, rr("a", "\0"))), vec!["a", "c"]);
    let e = s
        .with_view(|v| {
            range(
                v,
                &RangeRequest {
                    revision: 5,
                    ..rr("a", "")
                },
            )
        })
        .unwrap_err();
    assert_eq!(e, Error::Compacted);
    let mut wb = WriteBatch::new(&s);
    assert_eq!(
        wb.compact(&CompactionRequest {
            revision: 6,
            physical: false
        }),
        Err(Error::Compacted)
    );
}
