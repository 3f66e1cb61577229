//! Cluster service: membership through raft ConfChangeV2, with etcd's checks and errors.
//!
//! Strict reconfiguration (etcd's default): adding a voter needs a quorum of the enlarged cluster
//! active, and every voter connected; removing a voter must leave a quorum of active voters. A voter is
//! active when this member's peer stream to it is up, as etcd counts it from its transport.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tonic::{Request, Response, Status};

use crate::cluster::{get_member, list_members, list_records};
use crate::error::Error;
use crate::proto::etcdserverpb::{
    cluster_server::Cluster, Member, MemberAddRequest, MemberAddResponse, MemberListRequest,
    MemberListResponse, MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest,
    MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use crate::proto::metastorepb::internal_request::Request as Internal;
use crate::proto::metastorepb::{member_change::Kind, MemberChange, MemberRecord};
use crate::server::EtcdServer;

/// etcd's default `--max-learners`.
const MAX_LEARNERS: usize = 1;
/// A learner is promotable when it has at least this share of the leader's log.
const READY_PERCENT: f64 = 0.9;

pub struct ClusterService {
    pub server: Arc<EtcdServer>,
}

/// etcd's id for a member added at runtime: peer URLs, cluster token and the time.
fn new_member_id(urls: &[String], token: &str) -> u64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    crate::cluster::member_id(urls, &format!("{token}{secs}"))
}

impl ClusterService {
    async fn member(&self, id: u64) -> Result<Option<MemberRecord>, Status> {
        Ok(self.server.blocking(move |db| get_member(db, id)).await?)
    }

    async fn members(&self) -> Result<Vec<Member>, Status> {
        Ok(self.server.blocking(list_members).await?)
    }

    /// Voters and the voters this member is connected to (itself included), as etcd's strict
    /// reconfiguration check counts them.
    async fn active(&self) -> Result<(Vec<u64>, Vec<u64>), Status> {
        let records = self.server.blocking(list_records).await?;
        let voters: Vec<u64> = records
            .iter()
            .filter(|m| !m.is_learner)
            .map(|m| m.id)
            .collect();
        let active = voters
            .iter()
            .copied()
            .filter(|&id| self.server.network().is_active(id))
            .collect();
        Ok((voters, active))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let r = req.into_inner();
        super::validate::peer_urls(&r.peer_ur_ls)?;
        let records = s.blocking(list_records).await?;
        if records
            .iter()
            .any(|m| m.peer_urls.iter().any(|u| r.peer_ur_ls.contains(u)))
        {
            return Err(Error::PeerUrlExists.into());
        }
        if r.is_learner && records.iter().filter(|m| m.is_learner).count() >= MAX_LEARNERS {
            return Err(Error::TooManyLearners.into());
        }
        if !r.is_learner && s.cfg().strict_reconfig_check {
            let (voters, active) = self.active().await?;
            let members = voters.len() + 1;
            // etcd lets a one-member cluster grow to two (the way a restored member is given
            // company) although the new member cannot be started yet.
            let one_to_two = voters.len() == 1 && active.len() == 1;
            if !one_to_two && active.len() < members / 2 + 1 {
                return Err(Error::NotEnoughStartedMembers.into());
            }
            if active.len() < voters.len() {
                return Err(Error::Unhealthy.into());
            }
        }
        let record = MemberRecord {
            id: new_member_id(&r.peer_ur_ls, &s.cfg().initial_cluster_token),
            name: String::new(),
            peer_urls: r.peer_ur_ls.clone(),
            client_urls: Vec::new(),
            is_learner: r.is_learner,
        };
        s.propose_conf_change(Kind::Add, record.clone()).await?;
        Ok(Response::new(MemberAddResponse {
            header: Some(s.header(0)),
            member: Some(Member {
                id: record.id,
                name: String::new(),
                peer_ur_ls: record.peer_urls,
                client_ur_ls: Vec::new(),
                is_learner: record.is_learner,
            }),
            members: self.members().await?,
        }))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let id = req.get_ref().id;
        let Some(m) = self.member(id).await? else {
            return Err(Error::MemberNotFound.into());
        };
        if !m.is_learner && s.cfg().strict_reconfig_check {
            let (voters, active) = self.active().await?;
            let remaining = voters.len().saturating_sub(1);
            let active_after = active.iter().filter(|&&a| a != id).count();
            if active_after < remaining / 2 + 1 {
                return Err(Error::NotEnoughStartedMembers.into());
            }
        }
        s.propose_conf_change(Kind::Remove, m).await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(s.header(0)),
            members: self.members().await?,
        }))
    }

    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let r = req.into_inner();
        super::validate::peer_urls(&r.peer_ur_ls)?;
        let change = MemberChange {
            kind: Kind::Update as i32,
            member: Some(MemberRecord {
                id: r.id,
                peer_urls: r.peer_ur_ls,
                ..Default::default()
            }),
        };
        s.propose(Internal::MemberUpdate(change)).await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(s.header(0)),
            members: self.members().await?,
        }))
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        if req.get_ref().linearizable {
            s.read_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            // Cluster headers carry no revision in etcd.
            header: Some(s.header(0)),
            members: self.members().await?,
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let id = req.get_ref().id;
        let Some(progress) = s.progress().await? else {
            // Only the leader knows whether the learner is in sync: ask it, waiting out a leader
            // change (no leader, or one that cannot be reached) until the request timeout.
            if super::forward::is_forwarded(&req) {
                // Forwarded here by a member that took this one for the leader.
                return Err(Error::NotLeader.into());
            }
            let remote = super::forward::LeaderLink::new(s.clone())
                .forward(|mut c| async move {
                    c.member_promote(MemberPromoteRequest { id })
                        .await
                        .map(Response::into_inner)
                })
                .await?;
            // None: this member took over meanwhile; the client retries on this code.
            let mut resp = remote.ok_or(Error::LeaderChanged)?;
            resp.header = Some(s.header(0));
            return Ok(Response::new(resp));
        };
        let Some(m) = self.member(id).await? else {
            return Err(Error::MemberNotFound.into());
        };
        if !m.is_learner {
            return Err(Error::NotLearner.into());
        }
        let leader_match = progress.leader_last_index as f64;
        let ready = progress.peers.iter().find(|p| p.id == id).is_some_and(|p| {
            !p.probing_or_snapshot && p.matched as f64 >= leader_match * READY_PERCENT
        });
        if !ready {
            return Err(Error::LearnerNotReady.into());
        }
        s.propose_conf_change(Kind::Promote, m).await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(s.header(0)),
            members: self.members().await?,
        }))
    }
}
