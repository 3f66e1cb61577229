//! metastore: an etcd-v3-compatible, strongly consistent key-value store for metadata.
//!
//! Layers (DESIGN.md §4), dependencies pointing down: `api` -> `server` (request paths) -> `raft` /
//! `apply` -> `mvcc` / `cluster` -> `storage`.

pub mod alarm;
pub mod api;
pub mod apply;
pub mod autocompact;
pub mod cluster;
pub mod config;
pub mod corrupt;
pub mod duration;
pub mod error;
pub mod failpoints;
pub mod lease;
pub mod metrics;
pub mod mvcc;
pub mod quota;
/// The generated protobuf and gRPC code (the `metastore-proto` crate).
pub use metastore_proto as proto;
pub mod raft;
pub mod server;
pub mod storage;
pub mod tcpproxy;

#[cfg(test)]
mod in_process_tests;
pub mod tls;

use std::future::Future;

/// Runs one member until `shutdown` completes (or the member is removed from the cluster): start,
/// serve peers, publish, serve clients, then stop cleanly.
pub async fn run(cfg: config::Config, shutdown: impl Future<Output = ()>) -> error::Result<()> {
    let listeners = api::bind_any(&cfg.listen_client_urls).await?;
    let peer_listeners = api::bind_any(&cfg.listen_peer_urls).await?;
    let metrics_listeners = api::bind_any(&cfg.listen_metrics_urls).await?;
    let rt = tokio::runtime::Handle::current();
    let (peer_tls, client_tls, server) = tokio::task::spawn_blocking(move || {
        let (peer_tls, client_tls) = load_tls(&cfg)?;
        let dialer = raft::transport::Dialer::new(peer_tls.clone());
        let server = server::EtcdServer::start(cfg, rt, dialer)?;
        Ok::<_, error::Error>((peer_tls, client_tls, server))
    })
    .await
    .map_err(|e| error::Error::Internal(format!("start: {e}")))??;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    for t in peer_tls.iter().chain(client_tls.iter()) {
        tokio::spawn(t.clone().watch(stop_rx.clone()));
    }
    let peers = tokio::spawn(api::serve_peer(
        server.clone(),
        peer_listeners,
        peer_tls,
        stop_rx.clone(),
    ));
    if server.cfg().initial_corrupt_check {
        let timeout = server.cfg().request_timeout();
        if let Err(e) = corrupt::initial_check(&server, timeout).await {
            let _ = stop_tx.send(true);
            let _ = finish_within(peers, SHUTDOWN_GRACE).await;
            let s = server.clone();
            let _ = tokio::task::spawn_blocking(move || s.stop()).await;
            return Err(e);
        }
    }
    tokio::pin!(shutdown);
    let mut stop_early = false;
    tokio::select! {
        _ = server.publish() => {}
        _ = wait_removed(&server) => {}
        _ = &mut shutdown => stop_early = true,
    }
    if stop_early {
        // Stopped before this member could publish (its peers never came up): nothing was served.
        let _ = stop_tx.send(true);
        let _ = finish_within(peers, SHUTDOWN_GRACE).await;
        let s = server.clone();
        tokio::task::spawn_blocking(move || s.stop())
            .await
            .map_err(|e| error::Error::Internal(format!("stop: {e}")))?;
        tracing::info!("stopped");
        return Ok(());
    }
    let mut expiry = tokio::spawn(server.clone().run_lease_expiry(stop_rx.clone()));
    if let Some(policy) = server.cfg().auto_compaction {
        tokio::spawn(autocompact::run(server.clone(), policy, stop_rx.clone()));
    }
    let metrics = tokio::spawn(api::serve_metrics(
        server.clone(),
        metrics_listeners,
        client_tls.clone(),
        stop_rx.clone(),
    ));
    let serving = tokio::spawn(api::serve(server.clone(), listeners, client_tls, stop_rx));
    tracing::info!(
        name = %server.cfg().name,
        member_id = %format!("{:x}", server.member_id()),
        cluster_id = %format!("{:x}", server.cluster_id()),
        "ready to serve client requests"
    );
    tokio::select! {
        _ = &mut shutdown => {}
        _ = wait_removed(&server) => {
            tracing::warn!("this member was removed from the cluster, stopping");
        }
    }
    let _ = stop_tx.send(true);
    // Long-lived streams (peers' raft streams, keep-alives, observers) would hold a graceful stop
    // forever: give in-flight requests a moment, then end the servers.
    let served = finish_within(serving, SHUTDOWN_GRACE).await;
    let _ = finish_within(peers, SHUTDOWN_GRACE).await;
    let _ = finish_within(metrics, SHUTDOWN_GRACE).await;
    if tokio::time::timeout(SHUTDOWN_GRACE, &mut expiry)
        .await
        .is_err()
    {
        expiry.abort();
    }
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop())
        .await
        .map_err(|e| error::Error::Internal(format!("stop: {e}")))?;
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// The peer and client TLS material (`tls`), each None when its flags give none. Auto-TLS
/// certificates are made for the hosts of the listen URLs, as etcd makes them.
type TlsPair = (
    Option<std::sync::Arc<tls::Tls>>,
    Option<std::sync::Arc<tls::Tls>>,
);

fn load_tls(cfg: &config::Config) -> error::Result<TlsPair> {
    let hosts = |urls: &[String]| -> Vec<String> {
        urls.iter()
            .filter_map(|u| url::Url::parse(u).ok()?.host_str().map(str::to_string))
            .collect()
    };
    let load = |side, info, urls: &[String]| {
        tls::Tls::load(
            side,
            info,
            &cfg.data_dir,
            &hosts(urls),
            cfg.self_signed_cert_validity,
        )
        .map_err(error::Error::Internal)
    };
    Ok((
        load(tls::Side::Peer, &cfg.peer_tls, &cfg.listen_peer_urls)?,
        load(tls::Side::Client, &cfg.client_tls, &cfg.listen_client_urls)?,
    ))
}

/// How long in-flight requests get to finish at shutdown.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits for a server task up to `grace`, then aborts it; a task that ended with an error reports it.
async fn finish_within<T>(
    mut task: tokio::task::JoinHandle<error::Result<T>>,
    grace: std::time::Duration,
) -> error::Result<()> {
    match tokio::time::timeout(grace, &mut task).await {
        Ok(Ok(r)) => r.map(|_| ()),
        Ok(Err(e)) => Err(error::Error::Internal(format!("server task: {e}"))),
        Err(_) => {
            task.abort();
            Ok(())
        }
    }
}

async fn wait_removed(server: &server::EtcdServer) {
    while !server.raft().status.removed() {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
