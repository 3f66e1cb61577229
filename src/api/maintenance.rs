//! Maintenance service: Status, Hash, HashKV, MoveLeader, Alarm and Defragment. Snapshot and
//! Downgrade answer Unimplemented for now.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::apply::Applied;
use crate::error::Error;
use crate::mvcc::hash::hash_kv;
use crate::mvcc::store::check_revision;
use crate::proto::etcdserverpb::{
    maintenance_server::Maintenance, AlarmRequest, AlarmResponse, DefragmentRequest,
    DefragmentResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, StatusRequest, StatusResponse,
};
use crate::proto::metastorepb::internal_request::Request as Internal;
use crate::raft::NodeMsg;
use crate::server::EtcdServer;

pub struct MaintenanceService {
    pub server: Arc<EtcdServer>,
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(
        &self,
        req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        self.server.guard(req.metadata(), true)?;
        let s = &self.server;
        let (db_size, in_use) = s
            .blocking(|db| Ok((db.size_bytes(), db.size_in_use_bytes())))
            .await?;
        let st = &s.raft().status;
        let leader = st.leader();
        let mut errors = Vec::new();
        if leader == 0 {
            errors.push(Error::NoLeader.to_string());
        }
        errors.extend(s.alarms().get().iter().map(crate::alarm::describe));
        Ok(Response::new(StatusResponse {
            header: Some(s.header(s.store().current_revision())),
            version: s.cfg().etcd_version.clone(),
            db_size: db_size as i64,
            leader,
            raft_index: st.commit(),
            raft_term: st.term(),
            raft_applied_index: s.applied_index(),
            errors,
            db_size_in_use: in_use as i64,
            is_learner: st.is_learner(),
            storage_version: String::new(),
            db_size_quota: s.cfg().quota_backend_bytes as i64,
            downgrade_info: None,
        }))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.server.guard(req.metadata(), false)?;
        let s = &self.server;
        let hash = s.read(|v| hash_kv(v, v.current)).await?;
        Ok(Response::new(HashResponse {
            header: Some(s.header(s.store().current_revision())),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        self.server.guard(req.metadata(), false)?;
        let s = &self.server;
        let revision = req.get_ref().revision;
        let (hash, rev, compact) = s
            .read(move |v| {
                let rev = check_revision(v, revision)?;
                Ok((hash_kv(v, rev)?, rev, v.compact))
            })
            .await?;
        Ok(Response::new(HashKvResponse {
            header: Some(s.header(s.store().current_revision())),
            hash,
            compact_revision: if compact == 0 { -1 } else { compact },
            hash_revision: rev,
        }))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let target = req.get_ref().target_id;
        let Some(progress) = s.progress().await? else {
            return Err(Error::NotLeader.into());
        };
        if !progress
            .peers
            .iter()
            .any(|p| p.id == target && !p.is_learner)
        {
            return Err(Error::BadLeaderTransferee.into());
        }
        if target != s.member_id() {
            s.raft().send(NodeMsg::TransferLeader(target))?;
            let deadline = tokio::time::Instant::now() + s.cfg().request_timeout();
            while s.raft().status.leader() != target {
                if tokio::time::Instant::now() >= deadline {
                    return Err(Error::LeaderTransferTimeout.into());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // etcd answers MoveLeader with an empty response (no header); clients check for that.
        Ok(Response::new(MoveLeaderResponse { header: None }))
    }

    /// Every action goes through raft, GET too, so that the answer reflects every alarm committed
    /// before it (etcd does the same).
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        let r = req.into_inner();
        super::validate::alarm_type(r.alarm)?;
        match s.propose(Internal::Alarm(r)).await? {
            Applied::Alarm(mut r) => {
                r.header = Some(s.header(s.store().current_revision()));
                Ok(Response::new(r))
            }
            other => Err(Error::Internal(format!("unexpected {other:?}")).into()),
        }
    }

    /// Member-local, like etcd's: compacts this member's state database in place (see
    /// `Db::defragment`) and answers when it is done.
    async fn defragment(
        &self,
        req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        let s = &self.server;
        s.guard(req.metadata(), false)?;
        // One at a time: a second caller waits here, not on a blocking-pool thread.
        let _one = s.defrag_lock().lock().await;
        let started = std::time::Instant::now();
        s.blocking(|db| db.defragment()).await?;
        s.forget_backend_size();
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "defragmented"
        );
        // etcd answers Defragment with an empty response (no header).
        Ok(Response::new(DefragmentResponse { header: None }))
    }
}
