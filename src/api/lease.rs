//! Lease service: Grant and Revoke go through raft; KeepAlive and TimeToLive are answered by the
//! leader (a follower forwards them to the leader's peer URL); Leases lists the local records.
//! Forwarding, and how it waits out a leader change, is `forward`'s.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::forward::{is_forwarded, LeaderLink};

use crate::apply::Applied;
use crate::error::Error;
use crate::lease::records::{all_leases, attached_keys};
use crate::proto::etcdserverpb::{
    lease_server::Lease, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest,
    LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::proto::metastorepb::internal_request::Request as Internal;
use crate::server::EtcdServer;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct LeaseService {
    pub server: Arc<EtcdServer>,
    /// The way to the leader, for requests only the leader answers.
    leader: LeaderLink,
}

impl LeaseService {
    pub fn new(server: Arc<EtcdServer>) -> LeaseService {
        LeaseService {
            leader: LeaderLink::new(server.clone()),
            server,
        }
    }

    fn is_leader(&self) -> bool {
        self.server.raft().status.leader() == self.server.member_id()
    }

    /// One keep-alive, renewed here on the leader or forwarded to it. A forwarded one that reached
    /// a member that does not lead (any more) is refused, so that its forwarder looks again.
    pub(super) async fn keep_alive_once(
        &self,
        id: i64,
        forwarded: bool,
    ) -> Result<LeaseKeepAliveResponse, Status> {
        let s = &self.server;
        if forwarded {
            if !self.is_leader() {
                return Err(Error::NotLeader.into());
            }
        } else if let Some(r) = self
            .leader
            .forward(|mut c| async move {
                c.lease_keep_alive(LeaseKeepAliveRequest { id })
                    .await
                    .map(Response::into_inner)
            })
            .await?
        {
            return Ok(r);
        }
        let header = Some(s.header(s.store().current_revision()));
        let ttl = s.lessor().renew(id).unwrap_or(0);
        Ok(LeaseKeepAliveResponse { header, id, ttl })
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let mut r = req.into_inner();
        s.check_quota(crate::quota::LEASE_COST).await?;
        super::validate::lease_grant(&r)?;
        r.ttl = r.ttl.max(crate::lease::min_ttl(s.cfg().election_timeout));
        if r.id == 0 {
            r.id = (rand::random::<u64>() >> 1).max(1) as i64;
        }
        match s.propose(Internal::LeaseGrant(r)).await? {
            Applied::LeaseGrant(mut g) => {
                let rev = g.header.as_ref().map_or(0, |h| h.revision);
                g.header = Some(s.header(rev));
                Ok(Response::new(g))
            }
            other => Err(Error::Internal(format!("unexpected {other:?}")).into()),
        }
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        match s.propose(Internal::LeaseRevoke(req.into_inner())).await? {
            Applied::LeaseRevoke(mut r) => {
                let rev = r.header.as_ref().map_or(0, |h| h.revision);
                r.header = Some(s.header(rev));
                Ok(Response::new(r))
            }
            other => Err(Error::Internal(format!("unexpected {other:?}")).into()),
        }
    }

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<BoxStream<LeaseKeepAliveResponse>>, Status> {
        self.server.guard(req.metadata(), false)?;
        let forwarded = is_forwarded(&req);
        let mut input = req.into_inner();
        let me = LeaseService::new(self.server.clone());
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(Ok(r)) = input.next().await {
                let resp = me.keep_alive_once(r.id, forwarded).await;
                let failed = resp.is_err();
                if tx.send(resp).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let forwarded = is_forwarded(&req);
        let r = req.into_inner();
        if forwarded && !self.is_leader() {
            return Err(Error::NotLeader.into());
        }
        if !forwarded {
            let remote = self
                .leader
                .forward(|mut c| async move { c.lease_time_to_live(r).await })
                .await?;
            if let Some(resp) = remote {
                return Ok(resp);
            }
        }
        let header = Some(s.header(s.store().current_revision()));
        let Some((granted, left)) = s.lessor().remaining(r.id) else {
            return Ok(Response::new(LeaseTimeToLiveResponse {
                header,
                id: r.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            }));
        };
        let keys = if r.keys {
            let id = r.id;
            s.blocking(move |db| attached_keys(db, id)).await?
        } else {
            Vec::new()
        };
        Ok(Response::new(LeaseTimeToLiveResponse {
            header,
            id: r.id,
            ttl: left,
            granted_ttl: granted,
            keys,
        }))
    }

    async fn lease_leases(
        &self,
        req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let recs = s.blocking(all_leases).await?;
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(s.header(s.store().current_revision())),
            leases: recs.into_iter().map(|r| LeaseStatus { id: r.id }).collect(),
        }))
    }
}
