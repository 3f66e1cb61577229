//! Cluster service: MemberList. Membership changes answer Unimplemented until the cluster issue.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::cluster::list_members;
use crate::proto::etcdserverpb::{cluster_server::Cluster, MemberListRequest, MemberListResponse};
use crate::server::EtcdServer;

pub struct ClusterService {
    pub server: Arc<EtcdServer>,
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let s = &self.server;
        if req.get_ref().linearizable {
            s.read_barrier().await?;
        }
        let db = s.db.clone();
        let members = tokio::task::spawn_blocking(move || list_members(&db))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(MemberListResponse {
            // Cluster headers carry no revision in etcd.
            header: Some(s.header(0)),
            members,
        }))
    }
}
