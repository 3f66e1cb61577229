//! `metastore bench` (the load generator) and a short run of `scripts/bench-vs-etcd.sh`.
//!
//! The load generator speaks etcd's API only, so these tests run it against whichever server
//! `COMPAT_TARGET` selects; the binary running the benchmark is always metastore's. They check what the
//! tool reports and what it wrote, never how fast anything was.

use std::path::PathBuf;
use std::time::Duration;

use compat_tests::process::run;
use compat_tests::target::{etcd_binary, metastore_binary};
use compat_tests::{CmdOutput, Member};
use etcd_client::GetOptions;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `metastore bench <args>` to completion.
async fn bench(args: &[&str]) -> CmdOutput {
    let mut cmd = tokio::process::Command::new(metastore_binary());
    cmd.arg("bench").args(args);
    run(cmd, None, TIMEOUT).await
}

/// The final JSON line of a successful run.
#[track_caller]
fn summary(out: &CmdOutput) -> Value {
    out.assert_success();
    let last = out.lines().last().copied().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {out}"))
}

/// Checks the etcd-style summary text and the JSON line of a run of `total` requests that all
/// succeeded, and returns the JSON.
#[track_caller]
fn check_report(out: &CmdOutput, name: &str, total: u64) -> Value {
    let j = summary(out);
    assert_eq!(j["bench"], name, "{out}");
    assert_eq!(j["requests"], total, "{out}");
    assert_eq!(j["errors"], 0, "{out}");
    let f = |k: &str| {
        j[k].as_f64()
            .unwrap_or_else(|| panic!("{k} is not a number: {out}"))
    };
    assert!(f("rps") > 0.0 && f("seconds") > 0.0, "{out}");
    assert!(
        0.0 < f("p50_ms")
            && f("p50_ms") <= f("p90_ms")
            && f("p90_ms") <= f("p99_ms")
            && f("p99_ms") <= f("p999_ms")
            && f("p999_ms") <= f("max_ms"),
        "percentiles out of order: {out}"
    );
    for part in [
        "Summary:",
        "Requests/sec:",
        "Response time histogram:",
        "Latency distribution:",
        "50% in ",
        "99.9% in ",
    ] {
        assert!(
            out.stdout.contains(part),
            "no `{part}` in the summary: {out}"
        );
    }
    j
}

#[tokio::test]
async fn put_writes_the_keys_it_reports() {
    let m = Member::start().await;
    let ep = m.endpoint();
    let out = bench(&[
        "--endpoints",
        &ep,
        "--conns",
        "2",
        "--clients",
        "4",
        "--total",
        "50",
        "put",
        "--key-size",
        "6",
        "--val-size",
        "10",
        "--key-space-size",
        "50",
        "--sequential-keys",
    ])
    .await;
    check_report(&out, "put", 50);
    // Sequential keys 0..50, zero-padded to 6 bytes, each written once with a 10-byte value.
    let mut c = m.client().await;
    let r = c
        .get("000000", Some(GetOptions::new().with_range("000050")))
        .await
        .expect("range");
    assert_eq!(r.count(), 50);
    assert_eq!(r.kvs()[0].key(), b"000000");
    assert_eq!(r.kvs()[49].key(), b"000049");
    assert!(r.kvs().iter().all(|kv| kv.value() == b"vvvvvvvvvv"));
    assert!(r.kvs().iter().all(|kv| kv.version() == 1));
    assert_eq!(r.header().expect("header").revision(), 51);
}

#[tokio::test]
async fn every_subcommand_completes_its_total() {
    let m = Member::start().await;
    let ep = m.endpoint();
    let base = [
        "--endpoints",
        &ep,
        "--conns",
        "2",
        "--clients",
        "4",
        "--total",
    ];
    let cases: [(&str, &[&str]); 6] = [
        ("range", &["range", "k", "--consistency", "l"]),
        ("range", &["range", "k", "--consistency", "s"]),
        ("txn-put", &["txn-put", "--txn-ops", "3"]),
        ("watch-latency", &["watch-latency", "--val-size", "16"]),
        ("lease-keepalive", &["lease-keepalive"]),
        ("put", &["put"]),
    ];
    for (name, args) in cases {
        let mut all: Vec<&str> = base.to_vec();
        all.push("30");
        all.extend_from_slice(args);
        let out = bench(&all).await;
        check_report(&out, name, 30);
    }
    // One revision per write request: 30 txns (of 3 puts each), watch-latency's 30 puts, put's 30.
    let mut c = m.client().await;
    let r = c.get("x", None).await.expect("get");
    assert_eq!(r.header().expect("header").revision(), 1 + 30 + 30 + 30);
}

#[tokio::test]
async fn failed_requests_are_counted_as_errors() {
    let m = Member::start().await;
    let ep = m.endpoint();
    // A 2 MiB value is over the server's default request limit (1.5 MiB): every put fails.
    let out = bench(&[
        "--endpoints",
        &ep,
        "--total",
        "5",
        "put",
        "--val-size",
        "2097152",
    ])
    .await;
    let j = summary(&out);
    assert_eq!(j["requests"], 0, "{out}");
    assert_eq!(j["errors"], 5, "{out}");
    assert!(out.stdout.contains("Errors:\t5"), "{out}");
}

#[tokio::test]
async fn time_limit_ends_the_run() {
    let m = Member::start().await;
    let ep = m.endpoint();
    let out = bench(&[
        "--endpoints",
        &ep,
        "--total",
        "1000000000",
        "--time-limit",
        "1",
        "range",
        "k",
    ])
    .await;
    let j = summary(&out);
    let n = j["requests"].as_u64().expect("requests");
    assert!(0 < n && n < 1_000_000_000, "{out}");
    assert_eq!(j["errors"], 0, "{out}");
}

#[tokio::test]
async fn bad_endpoints_are_refused() {
    let out = bench(&["--endpoints", "10.1.2.3:2379", "--total", "1", "put"]).await;
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains(
            "endpoint 10.1.2.3:2379 is not on loopback; pass --allow-remote to benchmark it"
        ),
        "{out}"
    );
    let out = bench(&[
        "--endpoints",
        "https://127.0.0.1:2379",
        "--total",
        "1",
        "put",
    ])
    .await;
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr
            .contains("endpoint https://127.0.0.1:2379: only plain http endpoints are supported"),
        "{out}"
    );
    // Nothing listens on a port we just had and released.
    let port = compat_tests::ports::free_ports(1)[0];
    let ep = format!("127.0.0.1:{port}");
    let out = bench(&["--endpoints", &ep, "--total", "1", "put"]).await;
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains(&format!("connect {ep}: ")), "{out}");
}

/// A short run of the side-by-side script (fewer requests, one round per row, 100k keys for the
/// footprint) with this build's binary: it must produce a row with both servers' numbers for every
/// benchmark of the matrix, single member and 3 members, and the footprint table.
#[tokio::test]
async fn bench_vs_etcd_script_produces_the_whole_table() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let work = tempfile::tempdir().expect("temp dir");
    let mut cmd = tokio::process::Command::new(root.join("scripts/bench-vs-etcd.sh"));
    cmd.arg("--quick")
        .env("METASTORE_BIN", metastore_binary())
        .env("ETCD_BIN", etcd_binary())
        .env("BENCH_DIR", work.path())
        // A stuck step fails the run (and says which) well before the test's own limit.
        .env("STEP_TIMEOUT", "240");
    let out = run(cmd, None, Duration::from_secs(900)).await;
    out.assert_success();
    let rows: Vec<&str> = out
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("| 1 member:") || l.starts_with("| 3 members:"))
        .collect();
    let want = [
        "put, 1 client / 1 conn",
        "put, 64 clients / 8 conns",
        "put, 256 clients / 16 conns",
        "range linearizable, 64 clients",
        "range serializable, 64 clients",
        "txn-put, 64 clients",
        "watch latency (put -> event), 1 client",
    ];
    assert_eq!(rows.len(), 2 * want.len(), "{out}");
    for (i, row) in rows.iter().enumerate() {
        let prefix = if i < want.len() {
            "1 member:"
        } else {
            "3 members:"
        };
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 7, "{row}");
        assert_eq!(
            cells[0],
            format!("{prefix} {}", want[i % want.len()]),
            "{out}"
        );
        let etcd_rps: f64 = cells[1].parse().expect("etcd req/s");
        let ms_rps: f64 = cells[2].parse().expect("metastore req/s");
        assert!(etcd_rps > 0.0 && ms_rps > 0.0, "{row}");
        assert!(
            cells[3].starts_with("**") && cells[3].ends_with("x**"),
            "ratio cell: {row}"
        );
    }
    for part in [
        "| footprint with 100000 keys | etcd | metastore |",
        "| RSS (MiB) | ",
        "| data dir (MiB) | ",
        "| restart to first linearizable read (s) | ",
    ] {
        assert!(out.stdout.contains(part), "no `{part}`: {out}");
    }
}
