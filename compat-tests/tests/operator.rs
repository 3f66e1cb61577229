//! Operator paths on a bad day (issue 11): a leader dying under clients, a member replaced at the
//! same peer URL, peers that start late, a cluster growing from one member, client deadlines, and
//! lock/election waiters that give up.

use std::time::Duration;

use compat_tests::etcdctl::etcdctl_bin;
use compat_tests::target::{etcdctl35_binary, etcdctl_binary};
use compat_tests::{eventually, hdr, keys, values, Cluster, Member};
use etcd_client::{Client, GetOptions, LockOptions, PutOptions};
use tonic::Code;

async fn client_to(m: &Member, timeout: Duration) -> Client {
    m.client_timeout(timeout).await
}

/// Requests as a bare gRPC client sends them, so that the client's deadline travels only as the
/// `grpc-timeout` header and the answer is the server's own (the etcd-client crate and grpc-go
/// enforce deadlines locally too).
mod raw {
    use std::time::Duration;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LockRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub name: Vec<u8>,
        #[prost(int64, tag = "2")]
        pub lease: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CampaignRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub name: Vec<u8>,
        #[prost(int64, tag = "2")]
        pub lease: i64,
        #[prost(bytes = "vec", tag = "3")]
        pub value: Vec<u8>,
    }

    /// Calls `path` on `endpoint` with `msg` and the deadline `timeout`; the status if it fails.
    /// tonic's client enforces a request's `grpc-timeout` itself, so this speaks gRPC over h2
    /// directly: the status is the server's own answer.
    pub async fn call<M>(
        endpoint: &str,
        path: &'static str,
        msg: M,
        timeout: Duration,
    ) -> Result<(), tonic::Status>
    where
        M: prost::Message,
    {
        let tcp = tokio::net::TcpStream::connect(endpoint)
            .await
            .expect("connect");
        let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
        tokio::spawn(conn);
        let mut client = client.ready().await.expect("h2 ready");
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{endpoint}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", format!("{}m", timeout.as_millis()))
            .body(())
            .expect("request");
        let (resp, mut body) = client.send_request(req, false).expect("send");
        let payload = msg.encode_to_vec();
        let mut frame = vec![0u8];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        body.send_data(frame.into(), true).expect("send body");
        let resp = resp.await.expect("response");
        let status_of = |h: &http::HeaderMap| tonic::Status::from_header_map(h);
        if let Some(st) = status_of(resp.headers()) {
            return if st.code() == tonic::Code::Ok {
                Ok(())
            } else {
                Err(st)
            };
        }
        let mut body = resp.into_body();
        while let Some(chunk) = body.data().await {
            chunk.expect("response body");
        }
        let trailers = body.trailers().await.expect("trailers").unwrap_or_default();
        match status_of(&trailers) {
            Some(st) if st.code() != tonic::Code::Ok => Err(st),
            _ => Ok(()),
        }
    }
}

/// A request whose deadline passes while the server still works on it is answered
/// DEADLINE_EXCEEDED (`context deadline exceeded`), which clients map to their timeout errors; not
/// CANCELLED. Here a put waits for a quorum that is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_gets_deadline_exceeded() {
    let mut cl = Cluster::start(3, &[]).await;
    cl.members[1].kill9();
    cl.members[2].kill9();
    let put = raw::PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
    };
    let st = raw::call(
        &cl.members[0].endpoint(),
        "/etcdserverpb.KV/Put",
        put,
        Duration::from_millis(500),
    )
    .await
    .expect_err("a put without quorum cannot succeed");
    assert_eq!(
        (st.code(), st.message()),
        (Code::DeadlineExceeded, "context deadline exceeded"),
        "{st:?}"
    );
}

/// A Lock or Campaign call that gives up while waiting (its deadline passed) leaves no waiter key
/// behind: etcd's client deletes it, so later callers do not wait for that lease to expire.
#[tokio::test]
async fn abandoned_lock_and_campaign_waits_delete_their_keys() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let holder = c.lease_grant(60, None).await.unwrap().id();
    let waiter = c.lease_grant(60, None).await.unwrap().id();
    let held = c
        .lock("l", Some(LockOptions::new().with_lease(holder)))
        .await
        .unwrap();
    let held_key = String::from_utf8(held.key().to_vec()).unwrap();
    assert_eq!(held_key, format!("l/{holder:x}"));
    let gave_up = raw::call(
        &m.endpoint(),
        "/v3lockpb.Lock/Lock",
        raw::LockRequest {
            name: b"l".to_vec(),
            lease: waiter,
        },
        Duration::from_millis(300),
    )
    .await;
    assert!(gave_up.is_err(), "the lock is held: {gave_up:?}");
    let left = eventually(10, "the abandoned waiter's lock key to go", || {
        let mut c = c.clone();
        async move {
            let r = c
                .get("l/", Some(GetOptions::new().with_prefix()))
                .await
                .ok()?;
            let k = keys(r.kvs());
            (k.len() == 1).then_some(k)
        }
    })
    .await;
    assert_eq!(left, [held_key]);

    c.campaign("e", "first", holder).await.unwrap();
    let gave_up = raw::call(
        &m.endpoint(),
        "/v3electionpb.Election/Campaign",
        raw::CampaignRequest {
            name: b"e".to_vec(),
            lease: waiter,
            value: b"second".to_vec(),
        },
        Duration::from_millis(300),
    )
    .await;
    assert!(gave_up.is_err(), "the election has a leader: {gave_up:?}");
    let left = eventually(10, "the abandoned candidate's key to go", || {
        let mut c = c.clone();
        async move {
            let r = c
                .get("e/", Some(GetOptions::new().with_prefix()))
                .await
                .ok()?;
            let v = values(r.kvs());
            (v.len() == 1).then_some(v)
        }
    })
    .await;
    assert_eq!(left, ["first"]);
}

/// The leader is killed under a client of a follower: the follower's keep-alive waits for the new
/// leader and renews the lease (it must not fail at once), a linearizable read issued while there
/// is no leader is answered (not left to the request timeout), and members log the election in
/// etcd's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_leader_dies_keepalives_renew_and_reads_answer() {
    let mut cl = Cluster::start(3, &[]).await;
    let leader = cl.leader().await;
    let f = (leader + 1) % 3;
    let mut c = client_to(&cl.members[f], Duration::from_secs(20)).await;
    let lease = c.lease_grant(30, None).await.unwrap().id();
    c.put("k", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    let (mut keeper, mut renewals) = c.lease_keep_alive(lease).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let r = renewals.message().await.unwrap().expect("a renewal");
    assert_eq!(r.ttl(), 30);

    cl.members[leader].kill9();
    let mut reader = c.clone();
    let read = tokio::spawn(async move { reader.get("k", None).await });
    keeper.keep_alive().await.unwrap();
    let r = renewals
        .message()
        .await
        .expect("the keep-alive after the leader's death is answered, not failed")
        .expect("a renewal");
    assert_eq!((r.id(), r.ttl()), (lease, 30));
    let got = read.await.unwrap().expect("the read is answered");
    assert_eq!(values(got.kvs()), ["v"]);
    // TimeToLive goes to the (new) leader too.
    let ttl = c.lease_time_to_live(lease, None).await.unwrap();
    assert!(ttl.ttl() > 20, "{ttl:?}");
    if !compat_tests::is_etcd() {
        assert!(
            cl.members[f]
                .wait_for_log("elected leader", Duration::from_secs(10))
                .await,
            "{}",
            cl.members[f].log()
        );
    }
}

/// A member removed from the cluster, wiped, and added back at the same peer URL (so with a new
/// id) joins with `--initial-cluster-state existing` and serves the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_replaced_at_the_same_peer_url_joins() {
    let mut cl = Cluster::start(3, &[]).await;
    let leader = cl.leader().await;
    let victim = (leader + 1) % 3;
    let old_id = cl.member_id(victim).await;
    let peer_url = cl.members[victim].peer_url();
    let mut c = client_to(&cl.members[leader], Duration::from_secs(20)).await;
    let before = c.put("before", "1", None).await.unwrap();
    let rev = hdr(before.header()).revision();
    c.member_remove(old_id).await.unwrap();
    eventually(30, "the removed member to exit", || {
        let running = cl.members[victim].is_running();
        async move { (!running).then_some(()) }
    })
    .await;
    std::fs::remove_dir_all(cl.members[victim].data_dir()).unwrap();
    let added = c.member_add([peer_url.as_str()], None).await.unwrap();
    let new_id = added.member().expect("the added member").id();
    assert_ne!(new_id, old_id);
    let cfg = cl.members[victim].config_mut();
    cfg.extra_args.extend([
        "--initial-cluster-state".to_string(),
        "existing".to_string(),
    ]);
    cl.members[victim].restart().await;
    let mut nc = client_to(&cl.members[victim], Duration::from_secs(20)).await;
    let s = nc.status().await.unwrap();
    assert_eq!(hdr(s.header()).member_id(), new_id);
    let got = nc.get("before", None).await.unwrap();
    assert_eq!(values(got.kvs()), ["1"]);
    assert_eq!(got.kvs()[0].mod_revision(), rev);
    let after = c.put("after", "2", None).await.unwrap();
    let got = nc
        .get("after", Some(GetOptions::new().with_serializable()))
        .await;
    let got = match got {
        Ok(g) if !g.kvs().is_empty() => g,
        _ => nc.get("after", None).await.unwrap(),
    };
    assert_eq!(got.kvs()[0].mod_revision(), hdr(after.header()).revision());
    let members = c.member_list().await.unwrap();
    let ids: Vec<u64> = members.members().iter().map(|m| m.id()).collect();
    assert!(ids.contains(&new_id) && !ids.contains(&old_id), "{ids:x?}");
}

/// A voter can be added to a one-member cluster (etcd allows 1 -> 2 although the new member is not
/// started yet); once it starts, the two-member cluster serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_member_cluster_grows_to_two_voters() {
    let cl = Cluster::start(1, &[]).await;
    let mut c = client_to(&cl.members[0], Duration::from_secs(20)).await;
    c.put("k", "v", None).await.unwrap();
    let port = compat_tests::ports::free_ports(1)[0];
    let url = format!("http://127.0.0.1:{port}");
    let added = c
        .member_add([url.as_str()], None)
        .await
        .expect("etcd lets one member become two");
    assert!(!added.member().unwrap().is_learner());
    let initial = format!("m1={},m2={url}", cl.members[0].peer_url());
    let mut m2 = cl.new_joining_member("m2", &initial, port, &[]);
    m2.spawn_process();
    m2.wait_serving().await;
    let mut c2 = client_to(&m2, Duration::from_secs(20)).await;
    let r = c2.put("k2", "v2", None).await.unwrap();
    let got = c.get("k2", None).await.unwrap();
    assert_eq!(got.kvs()[0].mod_revision(), hdr(r.header()).revision());
}

/// A member of a new cluster whose peers start late keeps trying to publish itself until they come
/// (it used to give up and exit after about 60 s), then serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_waits_for_peers_that_start_late() {
    let mut cl = Cluster::start_some(3, &[], 0).await;
    cl.members[0].spawn_process();
    // The condition under test is the passing of time: the old limit was 60 s.
    tokio::time::sleep(Duration::from_secs(65)).await;
    assert!(
        cl.members[0].is_running(),
        "m1 gave up waiting for its peers:\n{}",
        cl.members[0].log()
    );
    cl.members[1].spawn_process();
    cl.members[2].spawn_process();
    for m in cl.members.iter_mut() {
        m.wait_serving().await;
    }
    let mut c = client_to(&cl.members[0], Duration::from_secs(20)).await;
    c.put("late", "ok", None).await.unwrap();
    let needle = if compat_tests::is_etcd() {
        "published"
    } else {
        "published local member to cluster through raft"
    };
    assert!(
        cl.members[0]
            .wait_for_log(needle, Duration::from_secs(10))
            .await
    );
}

/// `--strict-reconfig-check=false` lets a voter be added while a member is down (the default
/// refuses with `not enough started members`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_reconfig_check_off_lets_a_voter_in_while_a_member_is_down() {
    let cl = Cluster::start_some(3, &["--strict-reconfig-check=false"], 2).await;
    let mut c = client_to(&cl.members[0], Duration::from_secs(20)).await;
    let port = compat_tests::ports::free_ports(1)[0];
    let url = format!("http://127.0.0.1:{port}");
    let added = c.member_add([url.as_str()], None).await.unwrap();
    assert!(!added.member().unwrap().is_learner());
    assert_eq!(added.member_list().len(), 4);
}

/// etcdctl 3.4 dials an `http://HOST:PORT` endpoint with the whole URL as the HTTP/2 `:authority`
/// (grpc-go's passthrough resolver); every per-endpoint command works with such endpoints, and
/// `--cluster` (which dials the members' advertised `http://` client URLs) too. etcdctl 3.5.1 the
/// same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_takes_http_endpoints() {
    let mut cl = Cluster::start(3, &[]).await;
    let urls: Vec<String> = cl.members.iter().map(|m| m.client_url()).collect();
    let all = urls.join(",");
    for bin in [etcdctl_binary(), etcdctl35_binary()] {
        let leader = cl.leader().await;
        let one = urls[leader].clone();
        let out = etcdctl_bin(&bin, &one, &["put", "k", "v"], None).await;
        out.assert_success();
        let out = etcdctl_bin(&bin, &one, &["get", "k", "--print-value-only"], None).await;
        assert_eq!(out.assert_success().stdout.trim(), "v", "{}", bin.display());
        let out = etcdctl_bin(&bin, &all, &["endpoint", "status", "-w", "json"], None).await;
        let statuses = out.assert_success().json();
        assert_eq!(statuses.as_array().map(Vec::len), Some(3), "{statuses}");
        let out = etcdctl_bin(
            &bin,
            &one,
            &["endpoint", "status", "--cluster", "-w", "json"],
            None,
        )
        .await;
        let statuses = out.assert_success().json();
        assert_eq!(statuses.as_array().map(Vec::len), Some(3), "{statuses}");
        let out = etcdctl_bin(&bin, &all, &["endpoint", "hashkv", "-w", "json"], None).await;
        let hashes = out.assert_success().json();
        let hashes: Vec<i64> = hashes
            .as_array()
            .expect("a list")
            .iter()
            .map(|h| h["HashKV"]["hash"].as_i64().unwrap_or(0))
            .collect();
        assert_eq!(hashes.len(), 3);
        assert!(hashes.iter().all(|&h| h == hashes[0]), "{hashes:?}");
        let out = etcdctl_bin(&bin, &one, &["defrag"], None).await;
        assert_eq!(
            out.assert_success().stdout,
            format!("Finished defragmenting etcd member[{one}]\n")
        );
        let target = format!("{:x}", cl.member_id((leader + 1) % 3).await);
        let out = etcdctl_bin(&bin, &all, &["move-leader", &target], None).await;
        assert!(
            out.assert_success()
                .stdout
                .contains("Leadership transferred"),
            "{out}"
        );
        // Whatever snapshot save answers, it is an answer of the server, not a reset stream.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db").display().to_string();
        let out = etcdctl_bin(&bin, &one, &["snapshot", "save", &path], None).await;
        assert!(!format!("{out}").contains("PROTOCOL_ERROR"), "{out}");
    }
}

/// `--experimental-initial-corrupt-check`: a member whose keyspace differs from its peers' refuses
/// to start (`found data inconsistency with peers`); an intact member passes the check and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initial_corrupt_check_refuses_a_member_whose_data_differs() {
    if compat_tests::skip_on_etcd("the damage is done to metastore's data dir") {
        return;
    }
    let mut cl = Cluster::start(3, &["--experimental-initial-corrupt-check"]).await;
    let leader = cl.leader().await;
    let mut c = client_to(&cl.members[leader], Duration::from_secs(20)).await;
    for i in 0..10 {
        c.put(format!("k{i}"), "v", None).await.unwrap();
    }
    // Every member has applied the puts once a linearizable read on it sees the last one.
    for m in &cl.members {
        let mut mc = client_to(m, Duration::from_secs(20)).await;
        let got = mc.get("k9", None).await.unwrap();
        assert_eq!(values(got.kvs()), ["v"]);
    }
    let intact = (leader + 1) % 3;
    let damaged = (leader + 2) % 3;
    cl.members[intact].restart().await;
    assert!(
        cl.members[intact]
            .wait_for_log(
                "initial corruption checking passed; no corruption",
                Duration::from_secs(10)
            )
            .await
    );
    cl.members[damaged].terminate().await;
    {
        use metastore::storage::{Rocks, CF_KV};
        let db = Rocks::open_state(cl.members[damaged].data_dir()).unwrap();
        let cf = db.cf(CF_KV).unwrap();
        let mut it = db.raw().raw_iterator_cf(&cf);
        it.seek_to_last();
        let (k, mut v) = (it.key().unwrap().to_vec(), it.value().unwrap().to_vec());
        drop(it);
        let last = v.len() - 1;
        v[last] ^= 0x01;
        db.raw().put_cf(&cf, k, v).unwrap();
        drop(cf);
        db.flush_all().unwrap();
    }
    cl.members[damaged].spawn_process();
    eventually(60, "the damaged member to refuse to start", || {
        let running = cl.members[damaged].is_running();
        async move { (!running).then_some(()) }
    })
    .await;
    let log = cl.members[damaged].log();
    assert!(
        log.contains("found data inconsistency with peers")
            && log.contains("found different hash values from remote peer"),
        "{log}"
    );
}

/// A `unix://` client URL: the member listens on the socket and etcdctl dials it as a
/// `unix://` endpoint.
#[tokio::test]
async fn a_unix_socket_client_url_serves_etcdctl() {
    let m = Member::builder().client_socket().start().await;
    let sock = m.config().client_socket.clone().expect("a socket");
    let ep = format!("unix://{}", sock.display());
    for bin in [etcdctl_binary(), etcdctl35_binary()] {
        let out = etcdctl_bin(&bin, &ep, &["put", "over-unix", "yes"], None).await;
        out.assert_success();
        let out = etcdctl_bin(&bin, &ep, &["get", "over-unix", "--print-value-only"], None).await;
        assert_eq!(out.assert_success().stdout.trim(), "yes");
        let out = etcdctl_bin(&bin, &ep, &["endpoint", "status"], None).await;
        assert!(out.assert_success().stdout.contains(&ep), "{out}");
    }
}

/// A lease granted right after start-up keeps its TTL: the leader's extension of the leases it took
/// over (by an election timeout) must not reach a lease granted after it became leader. Polled over
/// the lease's life, the remaining TTL never exceeds the granted one and never grows, and the lease
/// expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_granted_right_after_start_up_keeps_its_ttl() {
    let m = Member::start().await;
    let mut c = m.client().await;
    let lease = c.lease_grant(3, None).await.expect("grant");
    assert_eq!(lease.ttl(), 3);
    let id = lease.id();
    let mut last = i64::MAX;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let t = c.lease_time_to_live(id, None).await.expect("time to live");
        if t.ttl() == -1 {
            break;
        }
        assert_eq!(t.granted_ttl(), 3);
        assert!(
            t.ttl() <= 3 && t.ttl() <= last,
            "remaining TTL {} after {last} (granted 3)",
            t.ttl()
        );
        last = t.ttl();
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `unix://` peer URLs on a 3-member cluster: the members dial each other's sockets for raft, and a
/// follower forwards a keep-alive to the leader over them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_unix_socket_peers_replicates_and_forwards() {
    let c = Cluster::start_unix_peers(3, &[]).await;
    let mut client = c.members[0].client().await;
    let lease = client.lease_grant(60, None).await.expect("grant").id();
    let put = client.put("over-unix-peers", "v", None).await.expect("put");
    let rev = hdr(put.header()).revision();
    for m in &c.members {
        assert!(m.peer_url().starts_with("unix://"), "{}", m.peer_url());
        let mut mc = m.client().await;
        let got = eventually(20, "the put reaches every member", || {
            let mut mc = mc.clone();
            async move {
                let r = mc
                    .get(
                        "over-unix-peers",
                        Some(GetOptions::new().with_serializable()),
                    )
                    .await
                    .ok()?;
                (hdr(r.header()).revision() >= rev).then_some(r)
            }
        })
        .await;
        assert_eq!(values(got.kvs()), ["v"]);
        let (mut keeper, mut stream) = mc.lease_keep_alive(lease).await.expect("keep-alive");
        keeper.keep_alive().await.expect("send");
        let resp = stream.message().await.expect("answer").expect("a response");
        assert_eq!((resp.id(), resp.ttl()), (lease, 60), "via {}", m.name());
    }
    let members = client.member_list().await.expect("member list");
    let mut urls: Vec<String> = members
        .members()
        .iter()
        .flat_map(|m| m.peer_urls().to_vec())
        .collect();
    urls.sort();
    let mut want: Vec<String> = c.members.iter().map(|m| m.peer_url()).collect();
    want.sort();
    assert_eq!(urls, want);
}

/// `--config-file` through the binary: a key metastore cannot honour with a value is a start-up
/// error that names it; the file's flags replace the command line's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_with_a_setting_metastore_cannot_honour_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("etcd.conf.yml");
    for (yaml, refusal) in [
        (
            "name: from-file\ndiscovery-srv: example.com\n",
            "--config-file: discovery-srv is not supported by metastore yet",
        ),
        (
            "peer-transport-security:\n  ocsp-url: x\n",
            "--config-file: peer-transport-security.ocsp-url is not supported by metastore yet",
        ),
    ] {
        std::fs::write(&path, yaml).expect("write");
        let out = Member::builder()
            .arg("--config-file")
            .arg(path.display().to_string())
            .run_to_exit(Duration::from_secs(30))
            .await;
        assert!(!out.success(), "{out:?}");
        assert!(out.stderr.contains(refusal), "{out:?}");
    }
}

/// `--force-new-cluster`: after the whole cluster is down, one member restarts alone with its data,
/// its member id and the cluster id, as the only member; it serves writes, and keeps doing so after
/// a restart without the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_new_cluster_restarts_one_member_alone_with_its_data() {
    let mut cl = Cluster::start(3, &[]).await;
    let leader = cl.leader().await;
    let mut c = client_to(&cl.members[leader], Duration::from_secs(20)).await;
    let put = c.put("kept", "yes", None).await.unwrap();
    let rev = hdr(put.header()).revision();
    let m1_id = cl.member_id(0).await;
    let cluster_id = hdr(c.status().await.unwrap().header()).cluster_id();
    // m1 has applied the put once a linearizable read on it sees it.
    let mut c1 = client_to(&cl.members[0], Duration::from_secs(20)).await;
    assert_eq!(values(c1.get("kept", None).await.unwrap().kvs()), ["yes"]);
    for m in cl.members.iter_mut() {
        m.terminate().await;
    }
    cl.members[0]
        .config_mut()
        .extra_args
        .push("--force-new-cluster".into());
    cl.members[0].restart().await;
    let mut c1 = client_to(&cl.members[0], Duration::from_secs(20)).await;
    let got = c1.get("kept", None).await.unwrap();
    assert_eq!(values(got.kvs()), ["yes"]);
    assert_eq!(got.kvs()[0].mod_revision(), rev);
    let list = c1.member_list().await.unwrap();
    let ids: Vec<u64> = list.members().iter().map(|m| m.id()).collect();
    assert_eq!(ids, [m1_id]);
    let s = c1.status().await.unwrap();
    assert_eq!(hdr(s.header()).cluster_id(), cluster_id);
    let after = c1.put("after", "1", None).await.unwrap();
    assert_eq!(hdr(after.header()).revision(), rev + 1);
    cl.members[0].config_mut().extra_args.pop();
    cl.members[0].restart().await;
    let mut c1 = client_to(&cl.members[0], Duration::from_secs(20)).await;
    c1.put("again", "2", None).await.unwrap();
    assert_eq!(c1.member_list().await.unwrap().members().len(), 1);
}

/// Right after start-up, with no fault, every linearizable read on every member is answered well
/// within the request timeout: a ReadIndex round that raft drops is retried, not left to time out
/// (some were unanswered for the whole 7 s before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_reads_right_after_start_up_are_all_answered() {
    let cl = Cluster::start(3, &[]).await;
    let mut tasks = Vec::new();
    for (i, m) in cl.members.iter().enumerate() {
        // A client deadline below the request timeout (5 s + 2 election timeouts): a read left to
        // the server's timeout fails here.
        let mut c = client_to(m, Duration::from_secs(4)).await;
        tasks.push(tokio::spawn(async move {
            for n in 0..300 {
                if n % 10 == 0 {
                    c.put(format!("r{i}"), n.to_string(), None)
                        .await
                        .map_err(|e| format!("put {n} on member {i}: {e}"))?;
                }
                c.get(format!("r{i}"), None)
                    .await
                    .map_err(|e| format!("read {n} on member {i}: {e}"))?;
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}
