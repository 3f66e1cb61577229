//! Assertion helpers shared by the test files.

use std::fmt::Debug;

use etcd_client::{KeyValue, ResponseHeader};
use tonic::{Code, Status};

/// The gRPC status inside an `etcd_client` result; panics if the call succeeded or failed otherwise.
#[track_caller]
pub fn grpc_status<T: Debug>(res: Result<T, etcd_client::Error>) -> Status {
    match res {
        Ok(v) => panic!("expected a gRPC error, got success: {v:?}"),
        Err(etcd_client::Error::GRpcStatus(s)) => s,
        Err(e) => panic!("expected a gRPC status error, got: {e:?}"),
    }
}

/// Asserts that `res` failed with exactly this gRPC code and message.
#[track_caller]
pub fn assert_grpc_error<T: Debug>(res: Result<T, etcd_client::Error>, code: Code, message: &str) {
    let s = grpc_status(res);
    assert_eq!(
        (s.code(), s.message()),
        (code, message),
        "unexpected gRPC status: {s:?}"
    );
}

/// The response header; panics if the response carries none.
#[track_caller]
pub fn hdr(h: Option<&ResponseHeader>) -> &ResponseHeader {
    h.expect("response has no header")
}

/// Keys of `kvs` as (lossy) strings, in response order.
pub fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

/// Values of `kvs` as (lossy) strings, in response order.
pub fn values(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        .collect()
}

/// Asserts the code only (for errors whose text belongs to the gRPC library, not to etcd).
#[track_caller]
pub fn assert_grpc_code<T: Debug>(res: Result<T, etcd_client::Error>, code: Code) -> Status {
    let s = grpc_status(res);
    assert_eq!(s.code(), code, "unexpected gRPC status: {s:?}");
    s
}

/// Retries `f` until it returns `Some`, failing the test after `secs` seconds (bounded polling for an
/// outcome no event announces, e.g. a member noticing it lost its leader).
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
