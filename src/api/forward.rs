//! Requests only the leader answers (lease KeepAlive and TimeToLive, MemberPromote), forwarded
//! by a follower to the leader's client URL.
//!
//! Forwarding waits out a leader change: while there is no leader, or the one known cannot be
//! reached, does not answer in time, or no longer leads, the follower looks again every heartbeat
//! until the request timeout (as etcd's follower does), then fails with etcd's timeout error.
//! A forwarded request carries `metastore-forwarded`; a member that receives one and does not lead
//! refuses it (`etcdserver: not leader`) instead of forwarding it again.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::error::Error;
use crate::server::EtcdServer;

/// Marks a request forwarded by a member to the leader.
const FORWARDED: &str = "metastore-forwarded";

/// `msg` as a forwarded request.
pub(super) fn forwarded_request<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    r
}

/// Whether `r` was forwarded by another member.
pub(super) fn is_forwarded<T>(r: &Request<T>) -> bool {
    r.metadata().contains_key(FORWARDED)
}

/// Errors after which the leader is looked up again: it is gone, changing, or not the leader.
fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    ) || s.message() == Error::NotLeader.to_string()
}

/// The way to the leader: its client URL's channel, kept while the leader stays the same.
pub(super) struct LeaderLink {
    server: Arc<EtcdServer>,
    cached: Mutex<Option<(String, Channel)>>,
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
            .cfg
            .election_timeout
            .max(Duration::from_millis(500))
    }

    async fn channel(&self) -> Result<Channel, Status> {
        let url = self
            .server
            .leader_client_urls()?
            .into_iter()
            .next()
            .ok_or(Error::NoLeader)?;
        if let Some((u, ch)) = self.cached.lock().as_ref() {
            if *u == url {
                return Ok(ch.clone());
            }
        }
        let ch = tonic::transport::Endpoint::from_shared(url.clone())
            .map_err(|e| Status::unavailable(e.to_string()))?
            .connect_timeout(self.attempt_timeout())
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("leader unreachable: {e}")))?;
        *self.cached.lock() = Some((url, ch.clone()));
        Ok(ch)
    }

    /// Waits a heartbeat before the next attempt, or fails once `deadline` is near.
    async fn pause(&self, deadline: Instant) -> Result<(), Status> {
        *self.cached.lock() = None;
        let pause = self.server.cfg.heartbeat;
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
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let s = &self.server;
        let deadline = Instant::now() + s.cfg.request_timeout();
        loop {
            let leader = s.raft.status.leader();
            if leader == s.member_id {
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
