//! Generated protobuf and gRPC code, built from the repository's `proto/` with protox (no protoc): the
//! etcd v3 API (wire-identical to etcd) and our internal and peer messages, plus serde impls of the
//! etcd API messages in proto3's JSON mapping (for the JSON gateway). Its own crate so that the
//! server and the benchmark share it and neither rebuilds it.
#![allow(clippy::all, missing_docs, rustdoc::all)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}
pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}
pub mod metastorepb {
    tonic::include_proto!("metastorepb");
}
