//! Request size limits (etcd-api.md §2.7; checklist item 35).

use compat_tests::{assert_grpc_code, assert_grpc_error, hdr, Member};
use etcd_client::{Client, GetOptions, Txn, TxnOp};
use tonic::Code;

const MIB: usize = 1024 * 1024;
const TOO_LARGE: &str = "etcdserver: request is too large";

async fn current_revision(c: &mut Client) -> i64 {
    hdr(c.get("any", None).await.unwrap().header()).revision()
}

fn value(len: usize, fill: u8) -> Vec<u8> {
    vec![fill; len]
}

/// Item 35: 1.6 MiB → request too large; ~2.1 MiB → ResourceExhausted from gRPC; 1.4 MiB → OK.
#[tokio::test]
async fn item_35_put_size_limits() {
    let m = Member::start().await;
    let mut c = m.client().await;

    // 1.6 MiB: above --max-request-bytes (1.5 MiB), below the gRPC receive limit (2 MiB).
    assert_grpc_error(
        c.put("big", value(MIB * 16 / 10, b'a'), None).await,
        Code::InvalidArgument,
        TOO_LARGE,
    );
    // ~2.1 MiB: rejected by the server's gRPC layer (the message text belongs to the gRPC library).
    assert_grpc_code(
        c.put("huge", value(MIB * 21 / 10, b'b'), None).await,
        Code::ResourceExhausted,
    );
    assert_eq!(current_revision(&mut c).await, 1);

    // 1.4 MiB fits.
    let v = value(MIB * 14 / 10, b'c');
    let r = c.put("ok", v.clone(), None).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 2);
    let g = c.get("ok", None).await.unwrap();
    assert_eq!(g.kvs()[0].value(), &v[..]);
}

/// A txn whose puts together exceed 1.5 MiB is too large even though each value is small enough.
#[tokio::test]
async fn txn_too_large() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let txn = Txn::new().and_then([
        TxnOp::put("a", value(800 * 1024, b'a'), None),
        TxnOp::put("b", value(800 * 1024, b'b'), None),
    ]);
    assert_grpc_error(c.txn(txn).await, Code::InvalidArgument, TOO_LARGE);
    assert_eq!(current_revision(&mut c).await, 1);
}

/// Item 35: a Range returning ~10 MiB in total succeeds (the server has no send limit; the client's
/// decoding limit is raised from tonic's 4 MiB default).
#[tokio::test]
async fn item_35_large_range_response() {
    let m = Member::start().await;
    let c = m.client().await;
    let mut kv = c.kv_client().max_decoding_message_size(64 * MIB);
    let n = 8;
    let len = MIB * 13 / 10;
    for i in 0..n {
        kv.put(format!("big/{i}"), value(len, b'0' + i as u8), None)
            .await
            .unwrap();
    }
    let g = kv
        .get("big/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(g.count(), n as i64);
    assert_eq!(g.kvs().len(), n);
    let total: usize = g.kvs().iter().map(|kv| kv.value().len()).sum();
    assert!(total > 10 * MIB, "total {total}");
    for (i, kv) in g.kvs().iter().enumerate() {
        assert_eq!(kv.key(), format!("big/{i}").as_bytes());
        assert_eq!(kv.value(), &value(len, b'0' + i as u8)[..]);
    }
    assert_eq!(hdr(g.header()).revision(), 1 + n as i64);
}

/// `--max-request-bytes` is configurable.
#[tokio::test]
async fn max_request_bytes_flag() {
    let m = Member::builder()
        .args(["--max-request-bytes", "10240"])
        .start()
        .await;
    let mut c = m.client().await;
    assert_grpc_error(
        c.put("k", value(20 * 1024, b'x'), None).await,
        Code::InvalidArgument,
        TOO_LARGE,
    );
    let r = c.put("k", value(8 * 1024, b'x'), None).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 2);
}
