//! Generated protobuf and gRPC code: the etcd v3 API (wire-identical to etcd) and our internal messages.
#![allow(clippy::all, missing_docs, rustdoc::all)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
pub mod metastorepb {
    tonic::include_proto!("metastorepb");
}
