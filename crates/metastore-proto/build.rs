//! Generates the gRPC code from proto/ with protox (no system protoc needed), and serde impls of the
//! etcd API messages in proto3's JSON mapping (with proto field names, as etcd's gateway writes them)
//! for the `/v3/*` JSON gateway.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "etcd/api/mvccpb/kv.proto",
        "etcd/api/authpb/auth.proto",
        "etcd/api/etcdserverpb/rpc.proto",
        "etcd/server/etcdserver/api/v3lock/v3lockpb/v3lock.proto",
        "etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto",
        "metastore/internal.proto",
        "metastore/peer.proto",
    ];
    let fds = protox::compile(files, ["../../proto"])?;
    let descriptors = prost::Message::encode_to_vec(&fds);
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        // grpc-gateway v1 (etcd 3.4/3.5) ignores fields it does not know.
        .ignore_unknown_fields()
        .build(&[
            ".mvccpb",
            ".authpb",
            ".etcdserverpb",
            ".v3lockpb",
            ".v3electionpb",
        ])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=../../proto");
    Ok(())
}
