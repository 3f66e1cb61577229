//! Maintenance.Status, Cluster.MemberList, grpc.health.v1 and unserved RPCs.

use compat_tests::{assert_grpc_code, hdr, skip_on_etcd, Member};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn is_semver(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Status fields on a healthy single member (etcd-api.md §2.11, checklist item 65).
#[tokio::test]
async fn status_fields() {
    let m = Member::start().await;
    let mut c = m.client().await;
    c.put("a", "1", None).await.unwrap();
    let s = c.status().await.unwrap();
    let h = hdr(s.header());
    assert!(is_semver(s.version()), "version {:?}", s.version());
    assert!(s.version().starts_with("3."), "version {:?}", s.version());
    assert!(s.db_size() > 0, "dbSize {}", s.db_size());
    assert_ne!(h.member_id(), 0);
    assert_ne!(h.cluster_id(), 0);
    assert_eq!(s.leader(), h.member_id());
    assert!(s.raft_applied_index() > 0);
    assert!(
        s.raft_index() >= s.raft_applied_index(),
        "raftIndex {} < raftAppliedIndex {}",
        s.raft_index(),
        s.raft_applied_index()
    );
    assert!(s.raft_term() >= 1);
    assert_eq!(h.raft_term(), s.raft_term());
    assert!(!s.is_learner());
    assert!(s.errors().is_empty(), "errors {:?}", s.errors());
    // The header carries the current KV revision.
    assert_eq!(h.revision(), 2);
    // The raft index grows with writes.
    let before = s.raft_applied_index();
    c.put("a", "2", None).await.unwrap();
    let s = c.status().await.unwrap();
    assert!(s.raft_applied_index() > before);
    assert_eq!(hdr(s.header()).revision(), 3);
}

/// MemberList on a single member (checklist item 67).
#[tokio::test]
async fn member_list_single() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let r = c.member_list().await.unwrap();
    let h = hdr(r.header());
    assert_ne!(h.cluster_id(), 0);
    assert_ne!(h.raft_term(), 0);
    let members = r.members();
    assert_eq!(members.len(), 1);
    let mem = &members[0];
    assert_eq!(mem.name(), "m1");
    assert_eq!(mem.id(), h.member_id());
    assert_eq!(mem.peer_urls(), [m.peer_url()]);
    assert_eq!(mem.client_urls(), [m.client_url()]);
    assert!(!mem.is_learner());
    // Status and MemberList agree on identity.
    let s = c.status().await.unwrap();
    assert_eq!(hdr(s.header()).member_id(), mem.id());
    assert_eq!(hdr(s.header()).cluster_id(), h.cluster_id());
}

/// grpc.health.v1.Health/Check("") → SERVING (checklist item 104).
#[tokio::test]
async fn grpc_health_check_serving() {
    let m = Member::start().await;
    let channel = tonic::transport::Channel::from_shared(m.client_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let r = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, ServingStatus::Serving as i32);
}

/// metastore only: an RPC that is not served yet answers Unimplemented (real etcd serves it).
#[tokio::test]
async fn unserved_rpc_is_unimplemented() {
    if skip_on_etcd("etcd implements Auth.UserList") {
        return;
    }
    let m = Member::start().await;
    let mut c = m.client().await;
    assert_grpc_code(c.user_list().await, Code::Unimplemented);
}
