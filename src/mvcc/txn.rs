//! Txn: compare evaluation, per-op checks and execution (the request's shape is checked before raft,
//! in `api/validate.rs`).
//!
//! Execution follows etcd: every compare (nested ones included) is evaluated on the state as it was when
//! the transaction started, which fixes the branch taken at every level (the "path"); then every op on
//! that path is checked (range revisions, lease existence, ignore_* on missing keys) before the first
//! change; then the ops run in order, later ops seeing earlier ops' writes. A transaction is one write
//! transaction: all its changes share one main revision.

use std::cmp::Ordering;

use super::store::{check_revision, range, KeyRange, KvRead};
use super::write::KvWrite;
use crate::error::{Error, Result};
use crate::proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op::Request,
    response_op::Response,
    Compare, PutRequest, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use crate::proto::mvccpb::KeyValue;

/// True when a txn has no write op on any branch (served like Range, without raft).
pub fn is_read_only(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(req.failure.iter())
        .all(|op| match &op.request {
            Some(Request::RequestRange(_)) => true,
            Some(Request::RequestTxn(t)) => is_read_only(t),
            _ => false,
        })
}

/// Evaluates one compare on the current state.
fn compare(s: &impl KvRead, c: &Compare) -> Result<bool> {
    let range = KeyRange::new(&c.key, &c.range_end);
    let cur = s.current();
    let hits = s.visible(&range, cur, true)?;
    let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
    if hits.is_empty() {
        if target == CompareTarget::Value {
            return Ok(false);
        }
        return Ok(compare_kv(c, target, &KeyValue::default()));
    }
    Ok(hits
        .iter()
        .all(|h| h.kv.as_ref().is_some_and(|kv| compare_kv(c, target, kv))))
}

fn compare_kv(c: &Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    let int = |v: i64, get: fn(&TargetUnion) -> Option<i64>| -> Ordering {
        v.cmp(&c.target_union.as_ref().and_then(get).unwrap_or(0))
    };
    let ord = match target {
        CompareTarget::Version => int(kv.version, |t| match t {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        }),
        CompareTarget::Create => int(kv.create_revision, |t| match t {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        }),
        CompareTarget::Mod => int(kv.mod_revision, |t| match t {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        }),
        CompareTarget::Lease => int(kv.lease, |t| match t {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        }),
        CompareTarget::Value => {
            let empty = Vec::new();
            let v = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &empty,
            };
            kv.value.as_slice().cmp(v.as_slice())
        }
    };
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
        CompareResult::NotEqual => ord != Ordering::Equal,
    }
}

/// The branch taken by this txn and by every nested txn on it, in pre-order.
fn txn_path(s: &impl KvRead, req: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
    let mut ok = true;
    for c in &req.compare {
        if !compare(s, c)? {
            ok = false;
            break;
        }
    }
    path.push(ok);
    let ops = if ok { &req.success } else { &req.failure };
    for op in ops {
        if let Some(Request::RequestTxn(t)) = &op.request {
            txn_path(s, t, path)?;
        }
    }
    Ok(())
}

/// Per-op checks on the path, before any change.
fn check_ops<S: KvWrite>(s: &S, req: &TxnRequest, path: &[bool], at: &mut usize) -> Result<()> {
    let ok = path.get(*at).copied().unwrap_or(false);
    *at += 1;
    let ops = if ok { &req.success } else { &req.failure };
    for op in ops {
        match &op.request {
            Some(Request::RequestRange(r)) => {
                check_revision(s, r.revision)?;
            }
            Some(Request::RequestPut(p)) => {
                if (p.ignore_value || p.ignore_lease) && s.get_latest(&p.key)?.is_none() {
                    return Err(Error::KeyNotFound);
                }
                if p.lease != 0 && !p.ignore_lease && !s.lease_exists(p.lease)? {
                    return Err(Error::LeaseNotFound);
                }
            }
            Some(Request::RequestTxn(t)) => check_ops(s, t, path, at)?,
            Some(Request::RequestDeleteRange(_)) | None => {}
        }
    }
    Ok(())
}

fn exec<S: KvWrite>(
    s: &mut S,
    req: &TxnRequest,
    path: &[bool],
    at: &mut usize,
) -> Result<TxnResponse> {
    let ok = path.get(*at).copied().unwrap_or(false);
    *at += 1;
    let ops = if ok { &req.success } else { &req.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => Response::ResponseRange(range(s, r)?),
            Some(Request::RequestPut(p)) => Response::ResponsePut(s.put(p)?),
            Some(Request::RequestDeleteRange(d)) => {
                Response::ResponseDeleteRange(s.delete_range(d)?)
            }
            Some(Request::RequestTxn(t)) => Response::ResponseTxn(exec(s, t, path, at)?),
            None => return Err(Error::KeyNotFound),
        };
        responses.push(ResponseOp {
            response: Some(response),
        });
    }
    Ok(TxnResponse {
        header: None,
        succeeded: ok,
        responses,
    })
}

/// Sets `header = {revision}` on every op's response, recursively (etcd fills them with the txn
/// revision, except the header of a nested txn response itself, which stays empty).
fn set_revision(resp: &mut TxnResponse, rev: i64) {
    for r in &mut resp.responses {
        let header = Some(ResponseHeader {
            revision: rev,
            ..Default::default()
        });
        match &mut r.response {
            Some(Response::ResponseRange(x)) => x.header = header,
            Some(Response::ResponsePut(x)) => x.header = header,
            Some(Response::ResponseDeleteRange(x)) => x.header = header,
            Some(Response::ResponseTxn(x)) => {
                // etcd leaves a nested txn's own header empty; its ops carry the revision.
                x.header = Some(ResponseHeader::default());
                set_revision(x, rev);
            }
            None => {}
        }
    }
}

/// Runs a txn as one write transaction. Returns the response and the revision it ended at.
pub fn run_txn<S: KvWrite>(s: &mut S, req: &TxnRequest) -> Result<TxnResponse> {
    let mut path = Vec::new();
    txn_path(s, req, &mut path)?;
    check_ops(s, req, &path, &mut 0)?;
    let mut resp = exec(s, req, &path, &mut 0)?;
    let rev = s.end_txn();
    set_revision(&mut resp, rev);
    resp.header = Some(ResponseHeader {
        revision: rev,
        ..Default::default()
    });
    Ok(resp)
}

/// Runs a read-only txn on a read view (no raft, no revision).
pub fn run_read_txn<S: KvRead>(s: &S, req: &TxnRequest) -> Result<TxnResponse> {
    let mut path = Vec::new();
    txn_path(s, req, &mut path)?;
    let mut ro = ReadOnly(s);
    check_ops(&ro, req, &path, &mut 0)?;
    let mut resp = exec(&mut ro, req, &path, &mut 0)?;
    let rev = s.current();
    set_revision(&mut resp, rev);
    resp.header = Some(ResponseHeader {
        revision: rev,
        ..Default::default()
    });
    Ok(resp)
}

/// Adapts a read view to `KvWrite` for read-only txns; a write reaching it is a routing bug.
struct ReadOnly<'a, S>(&'a S);

impl<S: KvRead> KvRead for ReadOnly<'_, S> {
    fn current(&self) -> i64 {
        self.0.current()
    }
    fn compacted(&self) -> i64 {
        self.0.compacted()
    }
    fn visible(&self, r: &KeyRange, rev: i64, fetch: bool) -> Result<Vec<super::store::Hit>> {
        self.0.visible(r, rev, fetch)
    }
    fn fetch(&self, hits: &mut [super::store::Hit]) -> Result<()> {
        self.0.fetch(hits)
    }
}

impl<S: KvRead> KvWrite for ReadOnly<'_, S> {
    fn put(&mut self, _: &PutRequest) -> Result<crate::proto::etcdserverpb::PutResponse> {
        Err(Error::Internal("write in a read-only txn".into()))
    }
    fn delete_range(
        &mut self,
        _: &crate::proto::etcdserverpb::DeleteRangeRequest,
    ) -> Result<crate::proto::etcdserverpb::DeleteRangeResponse> {
        Err(Error::Internal("write in a read-only txn".into()))
    }
    fn get_latest(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let cur = self.0.current();
        Ok(self
            .0
            .visible(&KeyRange::new(key, &[]), cur, true)?
            .into_iter()
            .next()
            .and_then(|h| h.kv))
    }
    fn end_txn(&mut self) -> i64 {
        self.0.current()
    }
    fn lease_exists(&self, _: i64) -> Result<bool> {
        Ok(false)
    }
}
