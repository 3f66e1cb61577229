//! Maintenance service: Status. Every other RPC answers Unimplemented for now.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::proto::etcdserverpb::{maintenance_server::Maintenance, StatusRequest, StatusResponse};
use crate::server::EtcdServer;

pub struct MaintenanceService {
    pub server: Arc<EtcdServer>,
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let s = self.server.clone();
        let (db_size, in_use) =
            tokio::task::spawn_blocking(move || (s.db.size_bytes(), s.db.size_in_use_bytes()))
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
        let s = &self.server;
        let st = &s.raft.status;
        let leader = st.leader();
        let mut errors = Vec::new();
        if leader == 0 {
            errors.push(crate::error::Error::NoLeader.to_string());
        }
        Ok(Response::new(StatusResponse {
            header: Some(s.header(s.store.current_revision())),
            version: s.cfg.etcd_version.clone(),
            db_size: db_size as i64,
            leader,
            raft_index: st.commit(),
            raft_term: st.term(),
            raft_applied_index: s.applied_index(),
            errors,
            db_size_in_use: in_use as i64,
            is_learner: false,
            storage_version: String::new(),
            db_size_quota: s.cfg.quota_backend_bytes as i64,
            downgrade_info: None,
        }))
    }
}
