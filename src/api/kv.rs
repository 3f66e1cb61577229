//! KV service: validate, route (raft for writes, read barrier + snapshot for reads), fill the header.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::validate;
use crate::apply::Applied;
use crate::error::Error;
use crate::mvcc::store::range;
use crate::mvcc::txn::{is_read_only, run_read_txn};
use crate::proto::etcdserverpb::{
    kv_server::Kv, request_op, CompactionRequest, CompactionResponse, DeleteRangeRequest,
    DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest,
    TxnResponse,
};
use crate::proto::metastorepb::internal_request::Request as Internal;
use crate::server::EtcdServer;

pub struct KvService {
    pub server: Arc<EtcdServer>,
}

/// Range as a client sees it (read barrier unless serializable), header filled.
pub(crate) async fn do_range(s: &EtcdServer, r: RangeRequest) -> Result<RangeResponse, Error> {
    validate::range(&r)?;
    if !r.serializable {
        s.read_barrier().await?;
    }
    let mut resp = s.read(move |v| range(v, &r)).await?;
    let rev = resp.header.as_ref().map_or(0, |h| h.revision);
    resp.header = Some(s.header(rev));
    Ok(resp)
}

/// Txn as a client sees it: validated, read-only ones served without raft, header filled.
pub(crate) async fn do_txn(s: &EtcdServer, r: TxnRequest) -> Result<TxnResponse, Error> {
    validate::txn(&r, s.cfg().max_txn_ops)?;
    let mut resp = if is_read_only(&r) {
        if !all_serializable(&r) {
            s.read_barrier().await?;
        }
        s.read(move |v| run_read_txn(v, &r)).await?
    } else {
        match s.propose(Internal::Txn(r)).await? {
            Applied::Txn(resp) => resp,
            other => {
                return Err(Error::Internal(format!(
                    "unexpected apply result {other:?}"
                )))
            }
        }
    };
    let rev = resp.header.as_ref().map_or(0, |h| h.revision);
    resp.header = Some(s.header(rev));
    Ok(resp)
}

/// DeleteRange as a client sees it, header filled.
pub(crate) async fn do_delete(
    s: &EtcdServer,
    r: DeleteRangeRequest,
) -> Result<DeleteRangeResponse, Error> {
    validate::delete_range(&r)?;
    match s.propose(Internal::DeleteRange(r)).await? {
        Applied::DeleteRange(mut resp) => {
            let rev = resp.header.as_ref().map_or(0, |h| h.revision);
            resp.header = Some(s.header(rev));
            Ok(resp)
        }
        other => Err(Error::Internal(format!(
            "unexpected apply result {other:?}"
        ))),
    }
}

fn unexpected(a: Applied) -> Status {
    Error::Internal(format!("unexpected apply result {a:?}")).into()
}

/// True when every Range of a read-only txn (nested ones included) is serializable.
fn all_serializable(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(t.failure.iter())
        .all(|op| match &op.request {
            Some(request_op::Request::RequestRange(r)) => r.serializable,
            Some(request_op::Request::RequestTxn(t)) => all_serializable(t),
            _ => true,
        })
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), req.get_ref().serializable)?;
        let r = req.into_inner();
        validate::message_size(&r, s.cfg().max_recv_bytes())?;
        Ok(Response::new(do_range(s, r).await?))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let r = req.into_inner();
        validate::message_size(&r, s.cfg().max_recv_bytes())?;
        s.check_quota(crate::quota::put_cost(&r)).await?;
        validate::put(&r)?;
        match s.propose(Internal::Put(r)).await? {
            Applied::Put(mut resp) => {
                let rev = resp.header.as_ref().map_or(0, |h| h.revision);
                resp.header = Some(s.header(rev));
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let r = req.into_inner();
        validate::message_size(&r, s.cfg().max_recv_bytes())?;
        Ok(Response::new(do_delete(s, r).await?))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let r = req.into_inner();
        validate::message_size(&r, s.cfg().max_recv_bytes())?;
        s.check_quota(crate::quota::txn_cost(&r)).await?;
        Ok(Response::new(do_txn(s, r).await?))
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let r = req.into_inner();
        let physical = r.physical;
        match s.propose(Internal::Compaction(r)).await? {
            Applied::Compact { resp, revision } => {
                if physical {
                    s.compactor().wait(revision).await;
                }
                let rev = resp.header.as_ref().map_or(0, |h| h.revision);
                Ok(Response::new(CompactionResponse {
                    header: Some(s.header(rev)),
                }))
            }
            other => Err(unexpected(other)),
        }
    }
}
