//! The robustness harness's short run (issue 13, first part): concurrent clients drive a 3-member
//! cluster with puts, linearizable gets, deletes and compare-and-swaps (Kubernetes' update) on a few
//! keys while members are killed and restarted, stopped and continued, and the leader is moved; a
//! watcher follows the keys and resumes after every break. The recorded history must be
//! linearizable (`robustness::check`), the watch streams must keep etcd's guarantees
//! (`robustness::check_watches`), and every member must end with the same HashKV.
//!
//! `ROBUSTNESS_SECS` sets the length (CI: the short default), `ROBUSTNESS_SEED` replays the faults.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use compat_tests::seeded::Rng;
use compat_tests::{eventually, Cluster};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, Txn, TxnOp, WatchOptions,
};
use robustness::history::{History, Outcome, Request, Response};
use robustness::watch::{Event, WatchRecord, WatchResponse};
use robustness::Verdict;

const KEYS: u64 = 4;
const PREFIX: &str = "rob/";

/// One clock for every client: nanoseconds since the run began.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

async fn connect(endpoints: &[String]) -> Option<Client> {
    let opts = ConnectOptions::new()
        .with_timeout(Duration::from_secs(2))
        .with_connect_timeout(Duration::from_secs(1));
    Client::connect(endpoints, Some(opts)).await.ok()
}

/// What a failed call tells about its effect: a refusal the server makes before proposing
/// (the request's shape) had none; anything else (timeouts, lost connections, no leader) may have.
fn failed(write: bool, e: &etcd_client::Error) -> Outcome {
    let refused =
        matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::InvalidArgument);
    if refused || !write {
        Outcome::Failed
    } else {
        Outcome::Indeterminate
    }
}

/// One client: random operations on the shared keys until `stop`.
async fn client_loop(
    id: u32,
    endpoints: Vec<String>,
    clock: Clock,
    seed: u64,
    history: Arc<Mutex<History>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut rng = Rng::new(seed);
    let mut n = 0u64;
    let mut c: Option<Client> = None;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if c.is_none() {
            c = connect(&endpoints).await;
            if c.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        let Some(client) = c.as_mut() else { continue };
        let key = format!("{PREFIX}k{}", rng.below(KEYS));
        n += 1;
        let value = format!("c{id}-{n}");
        let call = clock.now();
        let (req, outcome) = match rng.below(10) {
            0..=3 => {
                let r = client.put(key.as_str(), value.as_str(), None).await;
                let out = match r {
                    Ok(r) => Outcome::Ok(Response::Put {
                        revision: r.header().map_or(0, |h| h.revision()),
                    }),
                    Err(e) => failed(true, &e),
                };
                (Request::Put { key, value }, out)
            }
            4..=6 => {
                let r = client.get(key.as_str(), None).await;
                let out = match r {
                    Ok(r) => Outcome::Ok(Response::Get {
                        value: r.kvs().first().map(|kv| {
                            (
                                String::from_utf8_lossy(kv.value()).to_string(),
                                kv.mod_revision(),
                            )
                        }),
                        revision: r.header().map_or(0, |h| h.revision()),
                    }),
                    Err(e) => failed(false, &e),
                };
                (Request::Get { key }, out)
            }
            7 => {
                let r = client.delete(key.as_str(), None).await;
                let out = match r {
                    Ok(r) => Outcome::Ok(Response::Delete {
                        deleted: r.deleted(),
                        revision: r.header().map_or(0, |h| h.revision()),
                    }),
                    Err(e) => failed(true, &e),
                };
                (Request::Delete { key }, out)
            }
            _ => {
                // Kubernetes' update: read the key's mod revision, then swap if it is unchanged.
                let expected = match client.get(key.as_str(), None).await {
                    Ok(r) => r.kvs().first().map_or(0, |kv| kv.mod_revision()),
                    Err(_) => 0,
                };
                let call = clock.now();
                let txn = Txn::new()
                    .when([Compare::mod_revision(
                        key.as_str(),
                        CompareOp::Equal,
                        expected,
                    )])
                    .and_then([TxnOp::put(key.as_str(), value.as_str(), None)])
                    .or_else([TxnOp::get(key.as_str(), None)]);
                let r = client.txn(txn).await;
                let out = match r {
                    Ok(r) => Outcome::Ok(Response::Cas {
                        succeeded: r.succeeded(),
                        revision: r.header().map_or(0, |h| h.revision()),
                    }),
                    Err(e) => failed(true, &e),
                };
                let ret = clock.now();
                let req = Request::Cas {
                    key,
                    expected,
                    value,
                };
                if matches!(out, Outcome::Indeterminate) {
                    c = None;
                }
                history.lock().unwrap().push(id, req, out, call, ret);
                continue;
            }
        };
        let ret = clock.now();
        if matches!(outcome, Outcome::Indeterminate | Outcome::Failed) {
            // A fresh connection after a failure (its member may be gone).
            c = None;
        }
        history.lock().unwrap().push(id, req, outcome, call, ret);
    }
}

/// The watcher: follows the prefix from revision 1, resumes after the last revision it saw when
/// its stream breaks (a new record per stream), asks for progress now and then.
async fn watch_loop(
    endpoints: Vec<String>,
    records: Arc<Mutex<Vec<WatchRecord>>>,
    seen_to: Arc<std::sync::atomic::AtomicI64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut next_rev = 1;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Some(mut c) = connect(&endpoints).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(next_rev)
            .with_progress_notify();
        let Ok(mut stream) = c.watch(PREFIX, Some(opts)).await else {
            continue;
        };
        let mut rec = WatchRecord {
            prefix: PREFIX.to_string(),
            start: next_rev,
            responses: Vec::new(),
        };
        let mut asked = Instant::now();
        loop {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            if asked.elapsed() > Duration::from_millis(300) {
                asked = Instant::now();
                if stream.request_progress().await.is_err() {
                    break;
                }
            }
            let msg = tokio::time::timeout(Duration::from_millis(200), stream.message()).await;
            let resp = match msg {
                Err(_) => continue,
                Ok(Ok(Some(r))) => r,
                Ok(_) => break,
            };
            if resp.canceled() {
                break;
            }
            if resp.created() && resp.events().is_empty() {
                continue;
            }
            let events: Vec<Event> = resp
                .events()
                .iter()
                .filter_map(|e| {
                    let kv = e.kv()?;
                    Some(Event {
                        revision: kv.mod_revision(),
                        key: String::from_utf8_lossy(kv.key()).to_string(),
                        value: (e.event_type() == EventType::Put)
                            .then(|| String::from_utf8_lossy(kv.value()).to_string()),
                    })
                })
                .collect();
            if let Some(last) = events.last() {
                next_rev = last.revision + 1;
            }
            let revision = resp.header().map_or(0, |h| h.revision());
            // Everything up to a progress notification's revision, or a response's last event, has
            // been delivered (if the stream is reliable, which the check verifies).
            let upto = if events.is_empty() {
                revision
            } else {
                next_rev - 1
            };
            seen_to.fetch_max(upto, std::sync::atomic::Ordering::Relaxed);
            rec.responses.push(WatchResponse {
                progress: events.is_empty(),
                events,
                revision,
            });
        }
        records.lock().unwrap().push(rec);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_faulty_members_stay_linearizable_and_keep_watch_guarantees() {
    run(3, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_faulty_members_stay_linearizable_and_keep_watch_guarantees() {
    run(5, 15).await;
}

/// One run on `members` members for `ROBUSTNESS_SECS` (default `default_secs`) seconds.
async fn run(members: usize, default_secs: u64) {
    let secs = compat_tests::seeded::secs("ROBUSTNESS_SECS", default_secs);
    let seed = compat_tests::seeded::seed("ROBUSTNESS_SEED");
    eprintln!("robustness: {members} members, {secs} s, ROBUSTNESS_SEED={seed}");
    let mut rng = Rng::new(seed);
    let mut cl = Cluster::start_proxied(members, &[]).await;
    let endpoints = cl.endpoints();
    let clock = Clock(Instant::now());
    let history = Arc::new(Mutex::new(History::new()));
    let records = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_watch = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen_to = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let mut tasks = Vec::new();
    for id in 0..4u32 {
        tasks.push(tokio::spawn(client_loop(
            id,
            endpoints.clone(),
            clock,
            seed.wrapping_add(u64::from(id) * 7919),
            history.clone(),
            stop.clone(),
        )));
    }
    let watcher = tokio::spawn(watch_loop(
        endpoints.clone(),
        records.clone(),
        seen_to.clone(),
        stop_watch.clone(),
    ));
    let end = Instant::now() + Duration::from_secs(secs);
    let mut faults: Vec<String> = Vec::new();
    let mut windows: Vec<(u64, u64)> = Vec::new();
    let n = cl.members.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    while Instant::now() < end {
        let victim = rng.below(n as u64) as usize;
        let began = clock.now();
        match rng.below(4) {
            0 => {
                faults.push(format!("kill -9 m{}", victim + 1));
                cl.members[victim].kill9();
                tokio::time::sleep(Duration::from_millis(500 + rng.below(1000))).await;
                cl.members[victim].restart().await;
            }
            1 => {
                faults.push(format!("SIGSTOP m{}", victim + 1));
                cl.members[victim].signal(libc::SIGSTOP);
                tokio::time::sleep(Duration::from_millis(500 + rng.below(1500))).await;
                cl.members[victim].signal(libc::SIGCONT);
            }
            2 => {
                // The leader, most of the time: nothing the others send reaches it.
                let cut = if rng.below(3) > 0 {
                    cl.leader().await
                } else {
                    victim
                };
                faults.push(format!("partition m{} (inbound peer traffic)", cut + 1));
                cl.proxies[cut].block();
                tokio::time::sleep(Duration::from_millis(500 + rng.below(1500))).await;
                cl.proxies[cut].unblock();
            }
            _ => {
                let leader = cl.leader().await;
                let target = (leader + 1 + rng.below(n as u64 - 1) as usize) % n;
                faults.push(format!("move leader m{} -> m{}", leader + 1, target + 1));
                let id = cl.member_id(target).await;
                let mut c = cl.members[leader].client().await;
                let _ = c.move_leader(id).await;
            }
        }
        // The fault's window lasts until the cluster has had an election timeout to recover.
        windows.push((began, clock.now() + 1_000_000_000));
        tokio::time::sleep(Duration::from_millis(1000 + rng.below(1000))).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    // The watcher catches up with the last revision, so that it has seen every write that took
    // effect (writes still in flight when the clients stopped included).
    let mut c = cl.members[0].client().await;
    let final_rev = eventually(30, "a linearizable read of the final revision", || {
        let mut c = c.clone();
        async move { Some(c.get("x", None).await.ok()?.header()?.revision()) }
    })
    .await;
    eventually(30, "the watcher to see the final revision", || {
        let seen = seen_to.load(std::sync::atomic::Ordering::Relaxed);
        async move { (seen >= final_rev).then_some(()) }
    })
    .await;
    stop_watch.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.await.unwrap();
    let mut history = history.lock().unwrap().clone();
    let records = records.lock().unwrap().clone();
    let ok = history
        .ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ok(_)))
        .count();
    let unknown = history
        .ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Indeterminate))
        .count();
    eprintln!(
        "robustness: {} operations ({ok} answered, {unknown} indeterminate), {} faults: {faults:?}, {} watch streams",
        history.ops.len(),
        faults.len(),
        records.len()
    );
    assert!(
        ok > 100,
        "too few answered operations to say anything: {ok}"
    );
    liveness(&history, &windows);
    let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
    for f in &faults {
        *kinds.entry(f.split(" m").next().unwrap_or("")).or_default() += 1;
    }
    eprintln!("robustness: faults by kind {kinds:?}");
    let events: Vec<Event> = records
        .iter()
        .flat_map(|r| r.responses.iter().flat_map(|x| x.events.iter().cloned()))
        .collect();
    let settled =
        history.patch_with_watch(&events, seen_to.load(std::sync::atomic::Ordering::Relaxed));
    eprintln!("robustness: {settled} indeterminate writes settled by the watch");
    match robustness::check(&history, 20_000_000) {
        Verdict::Linearizable { steps } => eprintln!("robustness: linearizable ({steps} steps)"),
        v => panic!("ROBUSTNESS_SEED={seed}: {v:?}"),
    }
    // The checker is not vacuous on this history: one read changed to a value never written fails it.
    let mut bad = history.clone();
    if let Some(op) = bad.ops.iter_mut().find(|o| {
        matches!(
            &o.outcome,
            Outcome::Ok(Response::Get { value: Some(_), .. })
        )
    }) {
        if let Outcome::Ok(Response::Get { value: Some(v), .. }) = &mut op.outcome {
            v.0 = "never written".into();
        }
        assert!(
            matches!(
                robustness::check(&bad, 20_000_000),
                Verdict::NotLinearizable { .. }
            ),
            "a corrupted read must be flagged"
        );
    }
    // Writes whose clients learnt the revision: what the watcher must have seen.
    let writes: Vec<Event> = history
        .ops
        .iter()
        .filter_map(|o| match (&o.request, &o.outcome) {
            (Request::Put { key, value }, Outcome::Ok(Response::Put { revision })) => Some(Event {
                revision: *revision,
                key: key.clone(),
                value: Some(value.clone()),
            }),
            (
                Request::Cas { key, value, .. },
                Outcome::Ok(Response::Cas {
                    succeeded: true,
                    revision,
                }),
            ) => Some(Event {
                revision: *revision,
                key: key.clone(),
                value: Some(value.clone()),
            }),
            (
                Request::Delete { key },
                Outcome::Ok(Response::Delete {
                    deleted: 1,
                    revision,
                }),
            ) => Some(Event {
                revision: *revision,
                key: key.clone(),
                value: None,
            }),
            _ => None,
        })
        .collect();
    let violations = robustness::check_watches(&records, &writes);
    assert!(
        violations.is_empty(),
        "ROBUSTNESS_SEED={seed}: {violations:#?}"
    );
    // ... nor is the watch check: a stream that lost one event is flagged unreliable.
    let mut lossy = records.clone();
    if let Some(r) = lossy
        .iter_mut()
        .flat_map(|r| r.responses.iter_mut())
        .find(|r| r.events.len() == 1)
    {
        r.events.clear();
        r.progress = false;
        let v = robustness::check_watches(&lossy, &writes);
        assert!(v.iter().any(|v| v.guarantee == "reliable"), "{v:#?}");
    }
    // Every member ends with the same keyspace history.
    let rev = c.get("x", None).await.unwrap().header().unwrap().revision();
    let mut hashes = Vec::new();
    for m in &cl.members {
        let c = m.client().await;
        let h = eventually(30, "every member to reach the final revision", || {
            let mut c = c.clone();
            async move {
                let r = c.hash_kv(rev).await.ok()?;
                Some(r.hash())
            }
        })
        .await;
        hashes.push(h);
    }
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "HashKV differs at {rev}: {hashes:?}"
    );
}

/// Prints how long the answered operations took, inside and outside the fault windows (figures, not
/// checks: timing belongs to the report, not to the test's verdict).
fn liveness(h: &History, windows: &[(u64, u64)]) {
    let (mut inside, mut outside): (Vec<u64>, Vec<u64>) = (Vec::new(), Vec::new());
    for o in &h.ops {
        if o.ret == u64::MAX {
            continue;
        }
        let took = o.ret - o.call;
        if windows.iter().any(|&(a, b)| o.call < b && o.ret > a) {
            inside.push(took);
        } else {
            outside.push(took);
        }
    }
    for (what, mut v) in [("outside faults", outside), ("in fault windows", inside)] {
        if v.is_empty() {
            continue;
        }
        v.sort_unstable();
        let q = |p: f64| v[((v.len() - 1) as f64 * p) as usize] as f64 / 1e6;
        eprintln!(
            "robustness: liveness {what}: {} ops, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            v.len(),
            q(0.5),
            q(0.99),
            q(1.0)
        );
    }
}

/// The checker flags a build that serves stale reads: a follower armed with the `stale-reads` fail
/// point (a build with `--features metastore/failpoints`, as scripts/test.sh makes it) answers a
/// linearizable read from its own state while cut off from the leader. The write it missed was
/// acknowledged before the read was sent, so the recorded history cannot be linearized.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_flags_a_member_that_serves_stale_reads() {
    let mut cl = Cluster::start_proxied(3, &[]).await;
    let leader = cl.leader().await;
    let stale = (leader + 1) % 3;
    cl.members[stale]
        .config_mut()
        .envs
        .push(("METASTORE_FAILPOINTS".into(), "stale-reads".into()));
    cl.members[stale].restart().await;
    assert!(
        cl.members[stale]
            .wait_for_log("failpoints armed", Duration::from_secs(10))
            .await,
        "the binary lacks the `failpoints` feature: build it with --features metastore/failpoints \
         (scripts/test.sh does)"
    );
    let writer = (stale + 1) % 3;
    let clock = Clock(Instant::now());
    let mut h = History::new();
    let mut w = cl.members[writer].client().await;
    let mut r = cl.members[stale]
        .client_timeout(Duration::from_secs(5))
        .await;
    let key = format!("{PREFIX}k");
    let rev1 = recorded_put(&mut w, &mut h, clock, &key, "v1").await;
    // The stale member has applied v1, then hears nothing more.
    let m = &cl.members[stale];
    eventually(10, "the stale member to apply v1", || async {
        let mut c = m.client().await;
        let g = c
            .get(
                key.as_str(),
                Some(etcd_client::GetOptions::new().with_serializable()),
            )
            .await
            .ok()?;
        (g.header()?.revision() >= rev1).then_some(())
    })
    .await;
    cl.proxies[stale].block();
    recorded_put(&mut w, &mut h, clock, &key, "v2").await;
    let call = clock.now();
    let g = r
        .get(key.as_str(), None)
        .await
        .expect("the fail point answers");
    let kv = g.kvs().first().expect("v1 is there");
    let seen = (
        String::from_utf8_lossy(kv.value()).to_string(),
        kv.mod_revision(),
    );
    assert_eq!(seen, ("v1".to_string(), rev1), "the read is stale");
    h.push(
        1,
        Request::Get { key: key.clone() },
        Outcome::Ok(Response::Get {
            value: Some(seen),
            revision: g.header().unwrap().revision(),
        }),
        call,
        clock.now(),
    );
    cl.proxies[stale].unblock();
    match robustness::check(&h, 1_000_000) {
        Verdict::NotLinearizable { stuck, .. } => {
            assert_eq!(
                stuck,
                vec![2],
                "the stale read is the operation that does not fit"
            )
        }
        v => panic!("a stale read went unnoticed: {v:?}"),
    }
}

/// A put that must succeed, recorded in `h`; its revision.
async fn recorded_put(
    w: &mut Client,
    h: &mut History,
    clock: Clock,
    key: &str,
    value: &str,
) -> i64 {
    let call = clock.now();
    let rev = w
        .put(key, value, None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let req = Request::Put {
        key: key.into(),
        value: value.into(),
    };
    h.push(
        0,
        req,
        Outcome::Ok(Response::Put { revision: rev }),
        call,
        clock.now(),
    );
    rev
}
