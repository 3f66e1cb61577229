//! Requests only the leader answers (lease KeepAlive and TimeToLive, MemberPromote), forwarded
//! by a follower to the leader's peer URL (the `Leader` service of `peer.proto`), through the
//! peer transport's dialer, so that peer TLS applies and client-side TLS or auth never stands
//! between members.
//!
//! Forwarding waits out a leader change: while there is no leader, or the one known cannot be
//! reached, does not answer in time, or no longer leads, the follower looks again every heartbeat
//! until the request timeout (as etcd's follower does), then fails with etcd's timeout error.
//! A request that arrives on the `Leader` service is marked forwarded (a request extension, which
//! no client can set); a member that receives one and does not lead refuses it
//! (`etcdserver: not leader`) instead of forwarding it again.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use crate::error::Error;
use crate::proto::etcdserverpb::{
    cluster_server::Cluster, lease_server::Lease, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, MemberPromoteRequest, MemberPromoteResponse,
};
use crate::proto::metastorepb::leader_client::LeaderClient;
use crate::proto::metastorepb::leader_server::Leader;
use crate::server::EtcdServer;

/// Marks a request that another member forwarded (it came in on the `Leader` service).
#[derive(Clone, Copy)]
struct Forwarded;

/// `msg` as a request forwarded by another member.
fn forwarded_request<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.extensions_mut().insert(Forwarded);
    r
}

/// Whether `r` was forwarded by another member.
pub(super) fn is_forwarded<T>(r: &Request<T>) -> bool {
    r.extensions().get::<Forwarded>().is_some()
}

/// Errors after which the leader is looked up again: it is gone, changing, or not the leader.
fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    ) || s.message() == Error::NotLeader.to_string()
}

/// The way to the leader: a channel to its peer URL, kept while the leader stays the same.
pub(super) struct LeaderLink {
    server: Arc<EtcdServer>,
    /// The leader's id and a channel to it.
    cached: Mutex<Option<(u64, Channel)>>,
}

impl LeaderLink {
    pub(super) fn new(server: Arc<EtcdServer>) -> LeaderLink {
        LeaderLink {
            server,
            cached: Mutex::new(None),
        }
    }

    /// How long one attempt may take before the leader is looked up again.
    fn attempt_timeout(&self) -> Duration {
        self.server
            .cfg()
            .election_timeout
            .max(Duration::from_millis(500))
    }

    async fn channel(&self) -> Result<LeaderClient<Channel>, Status> {
        let leader = self.server.raft().status.leader();
        if leader == 0 {
            return Err(Error::NoLeader.into());
        }
        if let Some((id, ch)) = self.cached.lock().as_ref() {
            if *id == leader {
                return Ok(LeaderClient::new(ch.clone()));
            }
        }
        let urls = crate::cluster::get_member(self.server.db(), leader)
            .map_err(Status::from)?
            .map(|m| m.peer_urls)
            .unwrap_or_default();
        let ch = tokio::time::timeout(
            self.attempt_timeout(),
            self.server.transport().dialer().channel(&urls),
        )
        .await
        .ok()
        .flatten()
        .ok_or_else(|| Status::unavailable(format!("leader unreachable at {urls:?}")))?;
        *self.cached.lock() = Some((leader, ch.clone()));
        Ok(LeaderClient::new(ch))
    }

    /// Waits a heartbeat before the next attempt, or fails once `deadline` is near.
    async fn pause(&self, deadline: Instant) -> Result<(), Status> {
        *self.cached.lock() = None;
        let pause = self.server.cfg().heartbeat;
        if Instant::now() + pause >= deadline {
            return Err(Error::Timeout.into());
        }
        tokio::time::sleep(pause).await;
        Ok(())
    }

    /// Runs `call` on a channel to the leader until it answers; `None` when this member leads
    /// (the caller then answers itself).
    pub(super) async fn forward<T, F, Fut>(&self, call: F) -> Result<Option<T>, Status>
    where
        F: Fn(LeaderClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let s = &self.server;
        let deadline = Instant::now() + s.cfg().request_timeout();
        loop {
            let leader = s.raft().status.leader();
            if leader == s.member_id() {
                return Ok(None);
            }
            if leader != 0 {
                match self.channel().await {
                    Ok(ch) => match tokio::time::timeout(self.attempt_timeout(), call(ch)).await {
                        Ok(Ok(r)) => return Ok(Some(r)),
                        Ok(Err(st)) if !retryable(&st) => return Err(st),
                        Ok(Err(st)) => {
                            tracing::debug!(error = %st, "forwarding to the leader failed, retrying")
                        }
                        Err(_) => tracing::debug!("the leader did not answer in time, retrying"),
                    },
                    Err(e) => tracing::debug!(error = %e, "leader not reachable, retrying"),
                }
            }
            self.pause(deadline).await?;
        }
    }
}

/// The `Leader` service on the peer URLs: the calls other members forward, answered by the same
/// code as the client API's, marked forwarded so that a member that does not lead refuses them.
pub(super) struct LeaderService {
    pub(super) lease: super::lease::LeaseService,
    pub(super) cluster: super::cluster::ClusterService,
}

#[tonic::async_trait]
impl Leader for LeaderService {
    async fn lease_keep_alive(
        &self,
        req: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        self.lease
            .keep_alive_once(req.get_ref().id, true)
            .await
            .map(Response::new)
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        self.lease
            .lease_time_to_live(forwarded_request(req.into_inner()))
            .await
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.cluster
            .member_promote(forwarded_request(req.into_inner()))
            .await
    }
}
