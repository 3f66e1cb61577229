//! Process lifecycle: version output, flag errors, readiness log, SIGTERM, `ETCD_*` environment.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use compat_tests::process::run;
use compat_tests::{assert_grpc_error, hdr, is_etcd, target, Member};
use etcd_client::{Txn, TxnOp};
use tonic::Code;

const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

fn puts(n: usize) -> Vec<TxnOp> {
    (0..n)
        .map(|i| TxnOp::put(format!("k{i}"), "v", None))
        .collect()
}

#[tokio::test]
async fn version_output() {
    let mut cmd = tokio::process::Command::new(target().binary());
    cmd.arg("--version");
    let out = run(cmd, None, EXIT_TIMEOUT).await;
    out.assert_success();
    let lines = out.lines();
    assert!(
        lines.iter().any(|l| l.starts_with("etcd Version: 3.")),
        "no `etcd Version: 3.` line: {out}"
    );
    if is_etcd() {
        eprintln!("skipping the `metastore Version:` line under COMPAT_TARGET=etcd");
    } else {
        assert!(
            lines.iter().any(|l| l.starts_with("metastore Version: ")),
            "no `metastore Version: ` line: {out}"
        );
        // The test build is made with .cargo/config.toml's `--cfg tokio_unstable`.
        assert!(
            lines.contains(&"Tokio LIFO slot: off (built with tokio_unstable)"),
            "no LIFO line: {out}"
        );
    }
}

/// `metastore --version | head -1`: stdout whose reader is gone is not a panic.
#[test]
fn version_to_a_closed_pipe_exits_cleanly() {
    if is_etcd() {
        eprintln!("skipped under COMPAT_TARGET=etcd: etcd is killed by SIGPIPE there");
        return;
    }
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(target().binary())
        .arg("--version")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
}

#[tokio::test]
async fn unknown_flag_fails() {
    let out = Member::builder()
        .arg("--no-such-flag")
        .run_to_exit(EXIT_TIMEOUT)
        .await;
    assert!(!out.success(), "server accepted an unknown flag: {out}");
    assert!(out.stderr.contains("no-such-flag"), "{out}");
}

#[tokio::test]
async fn invalid_flag_value_fails() {
    let out = Member::builder()
        .args(["--max-txn-ops", "abc"])
        .run_to_exit(EXIT_TIMEOUT)
        .await;
    assert!(!out.success(), "server accepted --max-txn-ops abc: {out}");
    assert!(
        out.stderr.contains("abc") && out.stderr.contains("max-txn-ops"),
        "{out}"
    );
}

#[tokio::test]
async fn log_says_ready_to_serve() {
    let m = Member::start().await;
    assert!(
        m.wait_for_log("ready to serve client requests", Duration::from_secs(10))
            .await,
        "log lacks `ready to serve client requests`:\n{}",
        m.log()
    );
}

/// A panic on an internal thread (here apply, through the debug build's test point) ends the
/// process, instead of leaving a member that takes requests and never applies them.
#[tokio::test]
async fn a_panic_on_an_internal_thread_stops_the_process() {
    if compat_tests::skip_on_etcd("metastore's debug-build panic point") {
        return;
    }
    let mut m = Member::builder()
        .env("METASTORE_TEST_PANIC", "1")
        .start()
        .await;
    let mut c = m.client().await;
    c.put("k", "v", None).await.unwrap();
    // The put is never answered: the apply thread panics on it.
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        c.put("\0metastore-test-panic", "x", None),
    )
    .await;
    compat_tests::eventually(30, "the member to exit after the panic", || {
        let running = m.is_running();
        async move { (!running).then_some(()) }
    })
    .await;
    let log = m.log();
    assert!(
        log.contains("panicking on the apply thread as asked")
            && log.contains("stopping the member"),
        "{log}"
    );
}

#[tokio::test]
async fn sigterm_exits() {
    let mut m = Member::start().await;
    let mut c = m.client().await;
    c.put("k", "v", None).await.unwrap();
    let status = m.terminate().await;
    if is_etcd() {
        // etcd re-raises the signal after its shutdown handlers ran.
        assert!(
            status.success() || status.signal() == Some(libc::SIGTERM),
            "etcd exit status after SIGTERM: {status}"
        );
    } else {
        assert!(
            status.success(),
            "metastore must exit 0 on SIGTERM, got {status}"
        );
    }
    assert!(!m.is_running());
}

#[tokio::test]
async fn env_max_txn_ops() {
    let m = Member::builder().env("ETCD_MAX_TXN_OPS", "4").start().await;
    let mut c = m.client().await;
    assert_grpc_error(
        c.txn(Txn::new().and_then(puts(5))).await,
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    );
    let r = c.txn(Txn::new().and_then(puts(4))).await.unwrap();
    assert_eq!(hdr(r.header()).revision(), 2);
}

#[tokio::test]
async fn env_name_in_member_list() {
    let m = Member::builder().env("ETCD_NAME", "envname").start().await;
    assert!(
        !m.log().contains("\"--name\""),
        "--name must not be passed when ETCD_NAME is set"
    );
    let mut c = m.client().await;
    let r = c.member_list().await.unwrap();
    let names: Vec<&str> = r.members().iter().map(|mem| mem.name()).collect();
    assert_eq!(names, ["envname"]);
    let out = m.etcdctl(&["member", "list"]).await;
    out.assert_success();
    assert!(out.stdout.contains(", started, envname, "), "{out}");
}
