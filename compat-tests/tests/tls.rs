//! TLS through the real binary: peer TLS (auto-generated and CA-signed, with client-certificate
//! checks), client TLS with client-certificate auth (etcdctl 3.4 and 3.5.1, curl against the gateway
//! and `/health`), and etcd's start-up errors for `https://` URLs without material. Certificates are
//! made at test time (`certs`).

use std::time::Duration;

use compat_tests::certs::{cert_der, handshake, Ca};
use compat_tests::check::eventually;
use compat_tests::cluster::Cluster;
use compat_tests::etcdctl::{etcdctl, etcdctl_bin};
use compat_tests::member::Member;
use compat_tests::target::{etcdctl35_binary, etcdctl_binary};

/// Whether the listener at `addr` answers a plaintext HTTP/2 preface (a TLS listener drops it).
async fn answers_plaintext(addr: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("write");
    let mut b = [0u8; 9];
    matches!(
        tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await,
        Ok(Ok(9))
    )
}

fn peer_addr(m: &Member) -> String {
    m.peer_url()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .to_string()
}

/// Checks that the cluster replicates and that the calls only the leader answers (keep-alive,
/// time-to-live), sent to every member, come back right: the followers forward them to the leader
/// over the peer port, through peer TLS.
async fn replicates_and_forwards(c: &Cluster) {
    let put = etcdctl(&c.members[0].endpoint(), &["put", "tls-key", "v1"], None).await;
    assert!(put.success(), "{put:?}");
    for m in &c.members {
        let ep = m.endpoint();
        let got = eventually(20, "the put is applied everywhere", || {
            let ep = ep.clone();
            async move {
                let g = etcdctl(&ep, &["get", "tls-key", "--print-value-only"], None).await;
                (g.stdout.trim() == "v1").then_some(g)
            }
        })
        .await;
        assert_eq!(got.stdout.trim(), "v1");
    }
    let grant = etcdctl(&c.members[0].endpoint(), &["lease", "grant", "60"], None).await;
    assert!(grant.success(), "{grant:?}");
    let id = grant
        .stdout
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    for m in &c.members {
        let ka = etcdctl(&m.endpoint(), &["lease", "keep-alive", "--once", &id], None).await;
        assert_eq!(
            ka.stdout.trim(),
            format!("lease {id} keepalived with TTL(60)"),
            "{} {ka:?}",
            m.name()
        );
        let ttl = etcdctl(&m.endpoint(), &["lease", "timetolive", &id], None).await;
        assert!(
            ttl.stdout
                .contains(&format!("lease {id} granted with TTL(60s)")),
            "{} {ttl:?}",
            m.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_with_peer_auto_tls_replicates_and_forwards_to_the_leader() {
    let c = Cluster::start_tls_peers(3, &["--peer-auto-tls"]).await;
    for m in &c.members {
        assert!(m.peer_url().starts_with("https://"));
        let cert = m.data_dir().join("fixtures/peer/cert.pem");
        let pem = std::fs::read_to_string(&cert).expect("auto-TLS certificate");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        assert!(
            !answers_plaintext(&peer_addr(m)).await,
            "{}: the peer port answered plaintext",
            m.name()
        );
    }
    replicates_and_forwards(&c).await;
    assert!(
        c.members[0]
            .wait_for_log("TLS handshake refused", Duration::from_secs(10))
            .await,
        "a plaintext peer is logged"
    );
    // The leader dies: the others elect a new one over peer TLS, and a keep-alive on a follower is
    // forwarded to it (a new TLS connection to the new leader's peer URL).
    let mut c = c;
    let leader = c.leader().await;
    let grant = etcdctl(
        &c.members[leader].endpoint(),
        &["lease", "grant", "60"],
        None,
    )
    .await;
    let id = grant
        .stdout
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    c.members[leader].kill9();
    let follower = (leader + 1) % 3;
    let ep = c.members[follower].endpoint();
    let ka = eventually(30, "a keep-alive after the leader's death", || {
        let (ep, id) = (ep.clone(), id.clone());
        async move {
            let ka = etcdctl(&ep, &["lease", "keep-alive", "--once", &id], None).await;
            ka.success().then_some(ka)
        }
    })
    .await;
    assert_eq!(
        ka.stdout.trim(),
        format!("lease {id} keepalived with TTL(60)")
    );
    assert_ne!(c.leader().await, leader, "a new leader was elected");
}

#[tokio::test(flavor = "multi_thread")]
async fn peer_mutual_tls_refuses_certificates_of_another_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(dir.path(), "peer-ca");
    let peer = ca.issue(dir.path(), "peer", "member");
    let other_ca = Ca::new(dir.path(), "other-ca");
    let stranger = other_ca.issue(dir.path(), "stranger", "member");
    let c = Cluster::start_tls_peers(
        3,
        &[
            "--peer-cert-file",
            peer.cert(),
            "--peer-key-file",
            peer.key(),
            "--peer-trusted-ca-file",
            ca.cert_file(),
            "--peer-client-cert-auth",
        ],
    )
    .await;
    replicates_and_forwards(&c).await;
    let addr = peer_addr(&c.members[1]);
    handshake(&addr, &ca.cert_file, Some(&peer))
        .await
        .expect("a member's own certificate is accepted");
    let refused = handshake(&addr, &ca.cert_file, Some(&stranger)).await;
    assert!(refused.is_err(), "a certificate of another CA: {refused:?}");
    let refused = handshake(&addr, &ca.cert_file, None).await;
    assert!(refused.is_err(), "no client certificate: {refused:?}");
    // The server's certificate is the CA's: a client trusting only the other CA refuses it.
    let wrong_server = handshake(&addr, &other_ca.cert_file, Some(&stranger)).await;
    let e = wrong_server.expect_err("the member's certificate is not the other CA's");
    assert!(e.contains("UnknownIssuer"), "{e}");
    assert!(
        c.members[1]
            .wait_for_log("TLS handshake refused", Duration::from_secs(10))
            .await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_tls_with_client_cert_auth_serves_etcdctl_the_gateway_and_health() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(dir.path(), "client-ca");
    let server = ca.issue(dir.path(), "server", "metastore");
    let client = ca.issue(dir.path(), "client", "root");
    let other_ca = Ca::new(dir.path(), "other-ca");
    let stranger = other_ca.issue(dir.path(), "stranger", "root");
    let metrics_url = format!(
        "https://127.0.0.1:{}",
        compat_tests::ports::free_ports(1)[0]
    );
    let m = Member::builder()
        .tls_client()
        .args([
            "--cert-file",
            server.cert(),
            "--key-file",
            server.key(),
            "--trusted-ca-file",
            ca.cert_file(),
            "--client-cert-auth",
            "--listen-metrics-urls",
            &metrics_url,
        ])
        .start()
        .await;
    let url = m.config().tls_client_url().expect("https client URL");
    let tls_args = [
        "--cacert",
        ca.cert_file(),
        "--cert",
        client.cert(),
        "--key",
        client.key(),
    ];
    for bin in [etcdctl_binary(), etcdctl35_binary()] {
        let v = bin.display().to_string();
        let mut args = tls_args.to_vec();
        args.extend(["put", "secure", "yes"]);
        let put = etcdctl_bin(&bin, &url, &args, None).await;
        assert_eq!(put.stdout.trim(), "OK", "{v}: {put:?}");
        let mut args = tls_args.to_vec();
        args.extend(["get", "secure", "--print-value-only"]);
        let get = etcdctl_bin(&bin, &url, &args, None).await;
        assert_eq!(get.stdout.trim(), "yes", "{v}: {get:?}");
        // No client certificate, or one of another CA: refused at the handshake.
        let args = [
            "--cacert",
            ca.cert_file(),
            "--dial-timeout",
            "2s",
            "get",
            "secure",
        ];
        let bare = etcdctl_bin(&bin, &url, &args, None).await;
        assert!(!bare.success(), "{v}: {bare:?}");
        let args = [
            "--cacert",
            ca.cert_file(),
            "--cert",
            stranger.cert(),
            "--key",
            stranger.key(),
            "--dial-timeout",
            "2s",
            "get",
            "secure",
        ];
        let foreign = etcdctl_bin(&bin, &url, &args, None).await;
        assert!(!foreign.success(), "{v}: {foreign:?}");
    }
    let curl = |url: String, path: &'static str, body: Option<&'static str>, with_cert: bool| {
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(["-sS", "--max-time", "10", "--cacert", ca.cert_file()]);
        if with_cert {
            cmd.args(["--cert", client.cert(), "--key", client.key()]);
        }
        if let Some(b) = body {
            cmd.args(["-d", b]);
        }
        cmd.arg(format!("{url}{path}"));
        async move { cmd.output().await.expect("curl runs") }
    };
    let health = curl(url.clone(), "/health", None, true).await;
    assert_eq!(
        String::from_utf8_lossy(&health.stdout),
        r#"{"health":"true","reason":""}"#
    );
    let range = curl(
        url.clone(),
        "/v3/kv/range",
        Some(r#"{"key":"c2VjdXJl"}"#),
        true,
    )
    .await;
    let range: serde_json::Value = serde_json::from_slice(&range.stdout).expect("gateway JSON");
    assert_eq!(range["kvs"][0]["value"], "eWVz", "{range}");
    let refused = curl(url.clone(), "/health", None, false).await;
    assert!(
        !refused.status.success(),
        "curl without a client certificate"
    );
    // An https metrics URL is served with the client TLS material, as etcd serves it.
    let metrics = curl(metrics_url.clone(), "/metrics", None, true).await;
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert!(text.contains("etcd_server_has_leader 1"), "{text}");
    let refused = curl(metrics_url.clone(), "/metrics", None, false).await;
    assert!(
        !refused.status.success(),
        "metrics without a client certificate"
    );
    // The etcd-client crate over TLS (tonic's rustls), with and without a client certificate.
    use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
    let read = |p: &std::path::Path| std::fs::read(p).expect("read PEM");
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read(&ca.cert_file)))
        .domain_name("localhost");
    let with_cert = ConnectOptions::new()
        .with_tls(
            tls.clone()
                .identity(Identity::from_pem(read(&client.cert), read(&client.key))),
        )
        .with_timeout(Duration::from_secs(5));
    let mut ec = etcd_client::Client::connect([url.clone()], Some(with_cert))
        .await
        .expect("etcd-client connects over TLS");
    let got = ec.get("secure", None).await.expect("get over TLS");
    assert_eq!(got.kvs()[0].value(), b"yes");
    let bare = ConnectOptions::new()
        .with_tls(tls)
        .with_timeout(Duration::from_secs(5))
        .with_connect_timeout(Duration::from_secs(5));
    let refused = match etcd_client::Client::connect([url.clone()], Some(bare)).await {
        Ok(mut c) => c.get("secure", None).await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(refused.is_err(), "etcd-client without a client certificate");
    // Expired and not-yet-valid client certificates of the right CA: refused, and logged as such.
    let now = time::OffsetDateTime::now_utc();
    let expired = ca.issue_valid(
        dir.path(),
        "expired",
        "root",
        now - time::Duration::days(30),
        now - time::Duration::days(1),
    );
    let future = ca.issue_valid(
        dir.path(),
        "future",
        "root",
        now + time::Duration::days(1),
        now + time::Duration::days(30),
    );
    let addr = url.trim_start_matches("https://");
    let e = handshake(addr, &ca.cert_file, Some(&expired))
        .await
        .expect_err("an expired client certificate");
    assert!(e.contains("CertificateExpired"), "{e}");
    let e = handshake(addr, &ca.cert_file, Some(&future))
        .await
        .expect_err("a not-yet-valid client certificate");
    assert!(e.contains("CertificateExpired"), "{e}");
    // The handshake task logs after the client saw the refusal: wait for the lines.
    for why in ["certificate expired", "certificate not valid yet"] {
        assert!(
            m.wait_for_log(why, Duration::from_secs(10)).await,
            "the server logs why: {why}"
        );
    }
    // The plain client URL keeps serving alongside.
    let plain = etcdctl(
        &m.endpoint(),
        &["get", "secure", "--print-value-only"],
        None,
    )
    .await;
    assert_eq!(plain.stdout.trim(), "yes");
}

#[tokio::test(flavor = "multi_thread")]
async fn https_urls_without_tls_material_and_bad_material_are_refused_at_start() {
    let port = compat_tests::ports::free_ports(1)[0];
    let out = Member::builder()
        .env(
            "ETCD_LISTEN_CLIENT_URLS",
            format!("https://127.0.0.1:{port}"),
        )
        .run_to_exit(Duration::from_secs(30))
        .await;
    assert!(!out.success(), "{out:?}");
    let want = format!(
        "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:{port} with HTTPS scheme"
    );
    assert!(out.stderr.contains(&want), "{out:?}");
    let out = Member::builder()
        .env("ETCD_LISTEN_PEER_URLS", format!("https://127.0.0.1:{port}"))
        .run_to_exit(Duration::from_secs(30))
        .await;
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url https://127.0.0.1:{port} with HTTPS scheme"
        )),
        "{out:?}"
    );
    let out = Member::builder()
        .arg("--listen-metrics-urls")
        .arg(format!("https://127.0.0.1:{port}"))
        .run_to_exit(Duration::from_secs(30))
        .await;
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "TLS key/cert (--cert-file, --key-file) must be provided for metrics url https://127.0.0.1:{port} with HTTPS scheme"
        )),
        "{out:?}"
    );
    // A key that is not the certificate's: a start-up error naming both files.
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(dir.path(), "ca");
    let a = ca.issue(dir.path(), "a", "a");
    let b = ca.issue(dir.path(), "b", "b");
    let out = Member::builder()
        .tls_client()
        .args(["--cert-file", a.cert(), "--key-file", b.key()])
        .run_to_exit(Duration::from_secs(30))
        .await;
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr.contains(a.cert()) && out.stderr.contains(b.key()),
        "{out:?}"
    );
}

/// Beyond etcd: the server certificate and the CA bundle are reloaded when their files change, new
/// connections use them, a running client keeps its connection, and a broken file is not taken.
#[tokio::test(flavor = "multi_thread")]
async fn the_certificate_and_the_ca_bundle_reload_live_under_a_running_client() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca1 = Ca::new(dir.path(), "ca1");
    let ca2 = Ca::new(dir.path(), "ca2");
    let first = ca1.issue(dir.path(), "server", "server-a");
    let client1 = ca1.issue(dir.path(), "client1", "root");
    let client2 = ca2.issue(dir.path(), "client2", "root");
    let bundle = dir.path().join("bundle.pem");
    std::fs::copy(&ca1.cert_file, &bundle).expect("bundle");
    let m = Member::builder()
        .tls_client()
        .args([
            "--cert-file",
            first.cert(),
            "--key-file",
            first.key(),
            "--trusted-ca-file",
            bundle.to_str().expect("utf-8"),
            "--client-cert-auth",
        ])
        .start()
        .await;
    let url = m.config().tls_client_url().expect("https client URL");
    let addr = url.trim_start_matches("https://").to_string();
    assert_eq!(
        handshake(&addr, &ca1.cert_file, Some(&client1)).await,
        Ok(cert_der(&first.cert))
    );
    // A running client: a watch over TLS, kept open across the reloads.
    let mut watch = tokio::process::Command::new(etcdctl35_binary())
        .env("ETCDCTL_API", "3")
        .args([
            &format!("--endpoints={url}"),
            "--cacert",
            ca1.cert_file(),
            "--cert",
            client1.cert(),
            "--key",
            client1.key(),
            "watch",
            "reload-key",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("etcdctl watch");
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let see = |value: &'static str| {
        let ep = m.endpoint();
        async move {
            // Put until the watch (which may still be connecting) reports it.
            etcdctl(&ep, &["put", "reload-key", value], None).await
        }
    };
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains("v1") {
        assert!(
            std::time::Instant::now() < deadline,
            "the watch never reported v1: {seen:?}"
        );
        see("v1").await;
        if let Ok(Ok(Some(l))) =
            tokio::time::timeout(Duration::from_secs(2), lines.next_line()).await
        {
            seen.push_str(&l);
        }
    }
    // 1. A new server certificate at the same paths.
    let next = ca1.issue(dir.path(), "server-next", "server-b");
    std::fs::copy(&next.key, &first.key).expect("key");
    std::fs::copy(&next.cert, &first.cert).expect("cert");
    let want = cert_der(&next.cert);
    eventually(20, "new connections get the new certificate", || {
        let (addr, ca, c, want) = (
            addr.clone(),
            ca1.cert_file.clone(),
            client1.clone(),
            want.clone(),
        );
        async move { (handshake(&addr, &ca, Some(&c)).await.ok()? == want).then_some(()) }
    })
    .await;
    // 2. A client certificate of another CA: refused until that CA joins the bundle.
    assert!(handshake(&addr, &ca1.cert_file, Some(&client2))
        .await
        .is_err());
    let mut both = std::fs::read(&ca1.cert_file).expect("ca1");
    both.extend(std::fs::read(&ca2.cert_file).expect("ca2"));
    std::fs::write(&bundle, both).expect("bundle");
    eventually(20, "the new CA bundle is used", || {
        let (addr, ca, c) = (addr.clone(), ca1.cert_file.clone(), client2.clone());
        async move { handshake(&addr, &ca, Some(&c)).await.ok() }
    })
    .await;
    let args = [
        "--cacert",
        ca1.cert_file(),
        "--cert",
        client2.cert(),
        "--key",
        client2.key(),
        "put",
        "by-ca2",
        "yes",
    ];
    let put = etcdctl_bin(&etcdctl_binary(), &url, &args, None).await;
    assert_eq!(put.stdout.trim(), "OK", "{put:?}");
    // 3. A broken certificate file is not taken: new connections keep getting the last good one.
    std::fs::write(&first.cert, "-----BEGIN CERTIFICATE-----\nMIIB\n").expect("garbage");
    eventually(20, "the broken file is noticed", || {
        let log = m.log();
        async move { log.contains("keeping the material in use").then_some(()) }
    })
    .await;
    assert_eq!(
        handshake(&addr, &ca1.cert_file, Some(&client1)).await,
        Ok(want)
    );
    // The running watch kept its connection through all of it.
    see("v2").await;
    let line = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match lines.next_line().await {
                Ok(Some(l)) if l == "v2" => return l,
                Ok(Some(_)) => continue,
                other => panic!("the watch ended: {other:?}"),
            }
        }
    })
    .await
    .expect("the watch reports v2");
    assert_eq!(line, "v2");
}
