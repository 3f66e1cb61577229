//! What Lock and Election share: etcd's concurrency recipes run inside the server, over the same KV
//! paths clients use (so they go through raft and the read barrier like any request).
//!
//! Waiting for keys to go away uses the store's revision signal: after every new revision the waiter
//! re-reads the one key it waits on (a bounded Range), so no event can be missed between a read and
//! the wait.

use std::sync::Arc;

use crate::error::Error;
use crate::proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    range_request::{SortOrder, SortTarget},
    request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader,
    TxnRequest, TxnResponse,
};
use crate::proto::mvccpb::KeyValue;
use crate::server::EtcdServer;

use super::kv::{do_delete, do_range, do_txn};

/// A waiter's own key, deleted when the guard is dropped armed: etcd's client deletes it when the
/// wait fails or the call goes away (deadline, cancel, closed connection), so that later waiters are
/// not held up until the lease expires. The delete runs as its own task (a dropped handler cannot
/// await it).
pub struct DeleteOnDrop {
    server: Option<Arc<EtcdServer>>,
    key: Vec<u8>,
}

impl DeleteOnDrop {
    pub fn new(server: &Arc<EtcdServer>, key: &[u8]) -> Self {
        DeleteOnDrop {
            server: Some(server.clone()),
            key: key.to_vec(),
        }
    }

    /// Keeps the key (the wait succeeded, or failed in a way after which etcd keeps it).
    pub fn disarm(mut self) {
        self.server = None;
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let Some(s) = self.server.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let key = std::mem::take(&mut self.key);
        rt.spawn(async move {
            let req = DeleteRangeRequest {
                key: key.clone(),
                ..Default::default()
            };
            if let Err(e) = do_delete(&s, req).await {
                tracing::warn!(key = %String::from_utf8_lossy(&key), error = %e,
                    "deleting an abandoned lock or election key failed");
            }
        });
    }
}

/// etcd serves the recipes through an inner client and returns its errors as plain errors: gRPC code
/// Unknown with the inner message (e.g. `etcdserver: requested lease not found`).
pub fn as_recipe_error(e: Error) -> tonic::Status {
    tonic::Status::unknown(e.to_string())
}

/// The end of the range of keys that start with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn range_op(r: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(r)),
    }
}

/// The key of the first creator under `prefix` (the owner / leader), as a range request.
pub fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        limit: 1,
        ..Default::default()
    }
}

/// `<prefix><lease in hex>` created with the lease if absent; returns (txn response, my create revision).
/// The response's second op (`extra`) runs in both branches.
pub async fn create_own_key(
    s: &EtcdServer,
    key: &[u8],
    lease: i64,
    value: &[u8],
    extra: Option<RangeRequest>,
) -> Result<(TxnResponse, i64), Error> {
    let mut then = vec![RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }];
    let mut otherwise = vec![range_op(RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    })];
    if let Some(x) = extra {
        then.push(range_op(x.clone()));
        otherwise.push(range_op(x));
    }
    let resp = do_txn(
        s,
        TxnRequest {
            compare: vec![Compare {
                key: key.to_vec(),
                target: CompareTarget::Create as i32,
                result: CompareResult::Equal as i32,
                target_union: Some(TargetUnion::CreateRevision(0)),
                range_end: vec![],
            }],
            success: then,
            failure: otherwise,
        },
    )
    .await?;
    let mut rev = resp.header.as_ref().map_or(0, |h| h.revision);
    if !resp.succeeded {
        if let Some(kv) = range_kvs(&resp, 0).first() {
            rev = kv.create_revision;
        }
    }
    Ok((resp, rev))
}

/// The kvs of the `i`-th op response of a txn when it is a Range.
pub fn range_kvs(resp: &TxnResponse, i: usize) -> Vec<KeyValue> {
    match resp.responses.get(i).and_then(|r| r.response.as_ref()) {
        Some(crate::proto::etcdserverpb::response_op::Response::ResponseRange(r)) => r.kvs.clone(),
        _ => Vec::new(),
    }
}

/// Waits until no key under `prefix` with create revision <= `max_create` is left (etcd's
/// waitDeletes); returns the header of the last read.
pub async fn wait_deletes(
    s: &EtcdServer,
    prefix: &[u8],
    max_create: i64,
) -> Result<ResponseHeader, Error> {
    let mut revisions = s.store().revisions();
    loop {
        revisions.borrow_and_update();
        let r = do_range(
            s,
            RangeRequest {
                key: prefix.to_vec(),
                range_end: prefix_end(prefix),
                sort_order: SortOrder::Descend as i32,
                sort_target: SortTarget::Create as i32,
                limit: 1,
                max_create_revision: max_create,
                ..Default::default()
            },
        )
        .await?;
        let Some(last) = r.kvs.first() else {
            return Ok(r.header.unwrap_or_default());
        };
        // Wait for that key to be deleted, re-reading it at each new revision.
        loop {
            if revisions.changed().await.is_err() {
                return Err(Error::Stopped);
            }
            let again = do_range(
                s,
                RangeRequest {
                    key: last.key.clone(),
                    serializable: true,
                    ..Default::default()
                },
            )
            .await?;
            if again
                .kvs
                .first()
                .is_none_or(|kv| kv.create_revision != last.create_revision)
            {
                break;
            }
        }
    }
}
