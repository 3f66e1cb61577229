//! v3electionpb.Election: etcd's leader election, served by the server as a recipe over KV and Lease.
//!
//! Campaign(name, lease, value) creates `<name>/<lease in hex>` holding `value` (or finds it and
//! proclaims the value), then waits until every candidate created before it is gone: it leads. The
//! leader is the key under `<name>/` with the lowest create revision. Proclaim and Resign act only
//! while the given LeaderKey still holds (same key, same create revision). Observe streams the leader
//! whenever it or its value changes.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::kv::{do_range, do_txn};
use super::recipes::{
    as_recipe_error, create_own_key, first_created, range_kvs, wait_deletes, DeleteOnDrop,
};
use crate::error::Error;
use crate::proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op, Compare, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest,
};
use crate::proto::v3electionpb::{
    election_server::Election, CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest,
    LeaderResponse, ProclaimRequest, ProclaimResponse, ResignRequest, ResignResponse,
};
use crate::server::EtcdServer;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct ElectionService {
    pub server: Arc<EtcdServer>,
}

fn prefix_of(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// A txn that runs `op` only while `leader` still holds its key at its create revision.
fn if_leader(leader: &LeaderKey, op: request_op::Request) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            key: leader.key.clone(),
            target: CompareTarget::Create as i32,
            result: CompareResult::Equal as i32,
            target_union: Some(TargetUnion::CreateRevision(leader.rev)),
            range_end: vec![],
        }],
        success: vec![RequestOp { request: Some(op) }],
        failure: vec![],
    }
}

async fn proclaim(
    s: &EtcdServer,
    leader: &LeaderKey,
    value: &[u8],
) -> Result<TxnResponseHeader, Error> {
    let resp = do_txn(
        s,
        if_leader(
            leader,
            request_op::Request::RequestPut(PutRequest {
                key: leader.key.clone(),
                value: value.to_vec(),
                ignore_lease: true,
                ..Default::default()
            }),
        ),
    )
    .await?;
    if !resp.succeeded {
        return Err(Error::Recipe("election: not leader"));
    }
    Ok(resp.header.unwrap_or_default())
}

type TxnResponseHeader = crate::proto::etcdserverpb::ResponseHeader;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let r = req.into_inner();
        let prefix = prefix_of(&r.name);
        let mut key = prefix.clone();
        key.extend_from_slice(format!("{:x}", r.lease).as_bytes());
        let (resp, my_rev) = create_own_key(s, &key, r.lease, &r.value, None)
            .await
            .map_err(as_recipe_error)?;
        let leader = LeaderKey {
            name: r.name.clone(),
            key: key.clone(),
            rev: my_rev,
            lease: r.lease,
        };
        if !resp.succeeded {
            let current = range_kvs(&resp, 0);
            if current.first().is_some_and(|kv| kv.value != r.value) {
                proclaim(s, &leader, &r.value)
                    .await
                    .map_err(as_recipe_error)?;
            }
        }
        // A campaign abandoned while waiting (deadline, cancel) resigns, as etcd's Campaign does when
        // its context ends; a wait that fails otherwise keeps the key, as there.
        let guard = DeleteOnDrop::new(s, &key);
        let waited = wait_deletes(s, &prefix, my_rev - 1).await;
        guard.disarm();
        waited.map_err(as_recipe_error)?;
        let rev = resp.header.as_ref().map_or(0, |h| h.revision);
        Ok(Response::new(CampaignResponse {
            header: Some(s.header(rev)),
            leader: Some(leader),
        }))
    }

    async fn proclaim(
        &self,
        req: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let r = req.into_inner();
        let leader = r
            .leader
            .ok_or(Error::Recipe(r#""leader" field must be provided"#))?;
        let h = proclaim(s, &leader, &r.value)
            .await
            .map_err(as_recipe_error)?;
        Ok(Response::new(ProclaimResponse {
            header: Some(s.header(h.revision)),
        }))
    }

    async fn leader(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let r = do_range(s, first_created(&prefix_of(&req.get_ref().name)))
            .await
            .map_err(as_recipe_error)?;
        let Some(kv) = r.kvs.into_iter().next() else {
            return Err(Error::Recipe("election: no leader").into());
        };
        Ok(Response::new(LeaderResponse {
            header: r.header,
            kv: Some(kv),
        }))
    }

    async fn observe(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<BoxStream<LeaderResponse>>, Status> {
        let s = self.server.clone();
        s.guard(req.metadata(), false)?;
        let prefix = prefix_of(&req.get_ref().name);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut revisions = s.store().revisions();
            let mut last: Option<(Vec<u8>, i64)> = None;
            loop {
                revisions.borrow_and_update();
                match do_range(&s, first_created(&prefix)).await {
                    Ok(r) => {
                        if let Some(kv) = r.kvs.first() {
                            let now = Some((kv.key.clone(), kv.mod_revision));
                            if now != last {
                                last = now;
                                let msg = LeaderResponse {
                                    header: r.header,
                                    kv: Some(kv.clone()),
                                };
                                if tx.send(Ok(msg)).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
                tokio::select! {
                    c = revisions.changed() => if c.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn resign(
        &self,
        req: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let leader = req
            .into_inner()
            .leader
            .ok_or(Error::Recipe(r#""leader" field must be provided"#))?;
        let resp = do_txn(
            s,
            if_leader(
                &leader,
                request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                    key: leader.key.clone(),
                    ..Default::default()
                }),
            ),
        )
        .await
        .map_err(as_recipe_error)?;
        let rev = resp.header.as_ref().map_or(0, |h| h.revision);
        Ok(Response::new(ResignResponse {
            header: Some(s.header(rev)),
        }))
    }
}
