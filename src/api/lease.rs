//! Lease service: Grant and Revoke go through raft; KeepAlive and TimeToLive are answered by the
//! leader (a follower forwards them to the leader's client URL); Leases lists the local records.
//!
//! Forwarding waits out a leader change: while there is no leader, or the one known cannot be
//! reached or no longer leads, the follower looks again every heartbeat until the request timeout,
//! as etcd's follower does. A forwarded request is marked and never forwarded a second time.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::apply::Applied;
use crate::error::Error;
use crate::lease::MAX_LEASE_TTL;
use crate::mvcc::write::{all_leases, attached_keys};
use crate::proto::etcdserverpb::{
    lease_client::LeaseClient, lease_server::Lease, LeaseGrantRequest, LeaseGrantResponse,
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use crate::proto::metastorepb::internal_request::Request as Internal;
use crate::server::EtcdServer;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct LeaseService {
    pub server: Arc<EtcdServer>,
    /// A channel to the leader's client URL, for requests only the leader answers.
    leader: Mutex<Option<(String, Channel)>>,
}

impl LeaseService {
    pub fn new(server: Arc<EtcdServer>) -> LeaseService {
        LeaseService {
            server,
            leader: Mutex::new(None),
        }
    }

    fn is_leader(&self) -> bool {
        self.server.raft.status.leader() == self.server.member_id
    }

    async fn leader_client(&self) -> Result<LeaseClient<Channel>, Status> {
        let url = self
            .server
            .leader_client_urls()?
            .into_iter()
            .next()
            .ok_or(Error::NoLeader)?;
        if let Some((u, ch)) = self.leader.lock().as_ref() {
            if *u == url {
                return Ok(LeaseClient::new(ch.clone()));
            }
        }
        let ch = tonic::transport::Endpoint::from_shared(url.clone())
            .map_err(|e| Status::unavailable(e.to_string()))?
            .connect_timeout(self.attempt_timeout())
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("leader unreachable: {e}")))?;
        *self.leader.lock() = Some((url, ch.clone()));
        Ok(LeaseClient::new(ch))
    }

    /// How long one forwarding attempt may take before the leader is looked up again.
    fn attempt_timeout(&self) -> Duration {
        self.server
            .cfg
            .election_timeout
            .max(Duration::from_millis(500))
    }

    /// The leader to forward to, or None when this member leads. While there is no leader, or it
    /// cannot be reached, waits for one until `deadline` (etcd's follower does the same for lease
    /// renewals, so a leader change does not fail keep-alives), then fails with etcd's timeout.
    async fn leader_or_wait(
        &self,
        deadline: Instant,
    ) -> Result<Option<LeaseClient<Channel>>, Status> {
        loop {
            let leader = self.server.raft.status.leader();
            if leader == self.server.member_id {
                return Ok(None);
            }
            if leader != 0 {
                match self.leader_client().await {
                    Ok(c) => return Ok(Some(c)),
                    Err(e) => tracing::debug!(error = %e, "leader not reachable, retrying"),
                }
            }
            self.pause_before_retry(deadline).await?;
        }
    }

    /// Waits a heartbeat before the next forwarding attempt, or fails once `deadline` is near.
    async fn pause_before_retry(&self, deadline: Instant) -> Result<(), Status> {
        *self.leader.lock() = None;
        let pause = self.server.cfg.heartbeat;
        if Instant::now() + pause >= deadline {
            return Err(Error::Timeout.into());
        }
        tokio::time::sleep(pause).await;
        Ok(())
    }

    /// Runs `call` against the leader until it answers, retrying (within the request timeout) while
    /// the leader is unknown, unreachable, or turns out not to lead; `None` when this member leads.
    async fn forward<T, F, Fut>(&self, call: F) -> Result<Option<T>, Status>
    where
        F: Fn(LeaseClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + self.server.cfg.request_timeout();
        loop {
            let Some(c) = self.leader_or_wait(deadline).await? else {
                return Ok(None);
            };
            match tokio::time::timeout(self.attempt_timeout(), call(c)).await {
                Ok(Ok(r)) => return Ok(Some(r)),
                Ok(Err(st)) if !retryable(&st) => return Err(st),
                Ok(Err(st)) => {
                    tracing::debug!(error = %st, "forwarding to the leader failed, retrying")
                }
                Err(_) => tracing::debug!("the leader did not answer in time, retrying"),
            }
            self.pause_before_retry(deadline).await?;
        }
    }

    /// One keep-alive, renewed here on the leader or forwarded to it. A forwarded one that reached
    /// a member that does not lead (any more) is refused, so that its forwarder looks again.
    async fn keep_alive_once(
        &self,
        id: i64,
        forwarded: bool,
    ) -> Result<LeaseKeepAliveResponse, Status> {
        let s = &self.server;
        if forwarded {
            if !self.is_leader() {
                return Err(Error::NotLeader.into());
            }
        } else if let Some(r) = self.forward(|c| keep_alive_on(c, id)).await? {
            return Ok(r);
        }
        let header = Some(s.header(s.store.current_revision()));
        let ttl = s.lessor.renew(id).unwrap_or(0);
        Ok(LeaseKeepAliveResponse { header, id, ttl })
    }
}

/// One keep-alive on the leader's own stream.
async fn keep_alive_on(
    mut c: LeaseClient<Channel>,
    id: i64,
) -> Result<LeaseKeepAliveResponse, Status> {
    let req = forwarded_request(tokio_stream::iter([LeaseKeepAliveRequest { id }]));
    let mut stream = c.lease_keep_alive(req).await?.into_inner();
    match stream.next().await {
        Some(r) => r,
        None => Err(Status::unavailable(
            "the leader ended the keep-alive stream",
        )),
    }
}

/// Marks a request forwarded by a member to the leader (the leader never forwards it again).
const FORWARDED: &str = "metastore-forwarded";

fn forwarded_request<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    r
}

fn is_forwarded<T>(r: &Request<T>) -> bool {
    r.metadata().contains_key(FORWARDED)
}

/// Errors after which the leader is looked up again: it is gone, changing, or not the leader.
fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    ) || s.message() == Error::NotLeader.to_string()
}

/// etcd's smallest TTL: 1.5 election timeouts, rounded up to whole seconds.
fn min_ttl(s: &EtcdServer) -> i64 {
    let ms = s.cfg.election_timeout.as_millis() as i64;
    ((3 * ms / 2) + 999) / 1000
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
        s.check_quota(crate::alarm::LEASE_COST).await?;
        if r.ttl > MAX_LEASE_TTL {
            return Err(Error::LeaseTtlTooLarge.into());
        }
        r.ttl = r.ttl.max(min_ttl(s));
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
                .forward(|mut c| async move { c.lease_time_to_live(forwarded_request(r)).await })
                .await?;
            if let Some(resp) = remote {
                return Ok(resp);
            }
        }
        let header = Some(s.header(s.store.current_revision()));
        let Some((granted, left)) = s.lessor.remaining(r.id) else {
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
            header: Some(s.header(s.store.current_revision())),
            leases: recs.into_iter().map(|r| LeaseStatus { id: r.id }).collect(),
        }))
    }
}
