//! etcdctl 3.4's long-running commands against the server: `watch` (with --rev, --prefix, --prev-kv),
//! `lock` held by one process blocking another, and `elect` (issue 4). etcdctl runs these as
//! client-side recipes over Watch, Lease and Txn.

use std::process::Stdio;
use std::time::Duration;

use compat_tests::Member;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::Instant;

/// A background etcdctl whose stdout is read line by line.
struct Background {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Background {
    fn start(endpoint: &str, args: &[&str]) -> Background {
        let mut child = Command::new(compat_tests::target::etcdctl_binary())
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn etcdctl");
        let stdout = child.stdout.take().expect("stdout");
        Background {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next `n` lines, within `secs` seconds.
    async fn read(&mut self, n: usize, secs: u64) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut out = Vec::new();
        while out.len() < n {
            match tokio::time::timeout_at(deadline, self.lines.next_line()).await {
                Ok(Ok(Some(l))) => out.push(l),
                Ok(_) => panic!("etcdctl ended after {out:?}"),
                Err(_) => panic!("timed out after {out:?}, wanted {n} lines"),
            }
        }
        out
    }

    /// True when no line arrives within the time it takes to do `probe` (a few round trips).
    async fn quiet_during<F: std::future::Future<Output = ()>>(&mut self, probe: F) -> bool {
        tokio::select! {
            l = self.lines.next_line() => { let _ = l; false }
            _ = probe => true,
        }
    }

    fn signal(&self, sig: i32) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on a child this test started.
            unsafe {
                libc::kill(pid as i32, sig);
            }
        }
    }
}

#[tokio::test]
async fn etcdctl_watch_prefix_rev_and_prev_kv() {
    let m = Member::start().await;
    m.etcdctl(&["put", "foo", "1"]).await.assert_success(); // rev 2
    m.etcdctl(&["put", "foo/a", "x"]).await.assert_success(); // rev 3
    m.etcdctl(&["put", "other", "y"]).await.assert_success(); // rev 4
                                                              // Replay from revision 2 on the prefix, then live events, with previous values.
    let mut w = Background::start(
        &m.endpoint(),
        &["watch", "foo", "--prefix", "--rev", "2", "--prev-kv"],
    );
    assert_eq!(
        w.read(6, 20).await,
        ["PUT", "foo", "1", "PUT", "foo/a", "x"]
    );
    m.etcdctl(&["put", "foo", "2"]).await.assert_success();
    assert_eq!(w.read(5, 20).await, ["PUT", "foo", "1", "foo", "2"]);
    m.etcdctl(&["del", "foo/a"]).await.assert_success();
    assert_eq!(w.read(5, 20).await, ["DELETE", "foo/a", "x", "foo/a", ""]);
    // A key outside the prefix produces nothing; the next matching one does.
    m.etcdctl(&["put", "zzz", "1"]).await.assert_success();
    m.etcdctl(&["put", "foo/b", "3"]).await.assert_success();
    assert_eq!(w.read(3, 20).await, ["PUT", "foo/b", "3"]);
}

#[tokio::test]
async fn etcdctl_lock_held_by_one_process_blocks_another() {
    let m = Member::start().await;
    let mut first = Background::start(&m.endpoint(), &["lock", "mylock"]);
    let held = first.read(1, 20).await;
    assert!(held[0].starts_with("mylock/"), "{held:?}");
    let mut second = Background::start(&m.endpoint(), &["lock", "mylock"]);
    // The second has queued its key, yet prints nothing while the first holds the lock.
    let ep = m.endpoint();
    let queued = async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out =
                compat_tests::etcdctl(&ep, &["get", "mylock/", "--prefix", "--keys-only"], None)
                    .await;
            if out.stdout.lines().filter(|l| !l.is_empty()).count() == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the second etcdctl lock never queued"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for _ in 0..3 {
            compat_tests::etcdctl(&ep, &["get", "mylock/", "--prefix"], None).await;
        }
    };
    assert!(
        second.quiet_during(queued).await,
        "the second lock was granted while held"
    );
    // Ending the first releases the lock (etcdctl revokes its lease on SIGINT).
    first.signal(libc::SIGINT);
    let got = second.read(1, 20).await;
    assert!(
        got[0].starts_with("mylock/") && got[0] != held[0],
        "{got:?} vs {held:?}"
    );
}

#[tokio::test]
async fn etcdctl_elect_and_observe() {
    let m = Member::start().await;
    let mut observer = Background::start(&m.endpoint(), &["elect", "-l", "myelection"]);
    let mut leader = Background::start(&m.endpoint(), &["elect", "myelection", "p1"]);
    let won = leader.read(2, 20).await;
    assert!(won[0].starts_with("myelection/"), "{won:?}");
    assert_eq!(won[1], "p1");
    assert_eq!(observer.read(2, 20).await, won);
    let mut next = Background::start(&m.endpoint(), &["elect", "myelection", "p2"]);
    leader.signal(libc::SIGINT);
    let won2 = next.read(2, 20).await;
    assert_eq!(won2[1], "p2");
    assert_eq!(observer.read(2, 20).await, won2);
}
