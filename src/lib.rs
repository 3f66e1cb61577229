//! metastore: an etcd-v3-compatible, strongly consistent key-value store for metadata.
//!
//! Layers (DESIGN.md §4), dependencies pointing down: `api` -> `server` (request paths) -> `raft` /
//! `apply` -> `mvcc` / `cluster` -> `storage`.

pub mod api;
pub mod apply;
pub mod cluster;
pub mod config;
pub mod error;
pub mod mvcc;
pub mod proto;
pub mod raft;
pub mod server;
pub mod storage;

use std::future::Future;

/// Runs one member until `shutdown` completes: start, publish, serve, then stop cleanly.
pub async fn run(cfg: config::Config, shutdown: impl Future<Output = ()>) -> error::Result<()> {
    let listeners = api::bind(&cfg.listen_client_urls).await?;
    let server = tokio::task::spawn_blocking(move || server::EtcdServer::start(cfg))
        .await
        .map_err(|e| error::Error::Internal(format!("start: {e}")))??;
    server.publish().await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(api::serve(server.clone(), listeners, stop_rx));
    tracing::info!(
        name = %server.cfg.name,
        member_id = %format!("{:x}", server.member_id),
        cluster_id = %format!("{:x}", server.cluster_id),
        "ready to serve client requests"
    );
    shutdown.await;
    let _ = stop_tx.send(true);
    let served = serving
        .await
        .map_err(|e| error::Error::Internal(format!("server task: {e}")));
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop())
        .await
        .map_err(|e| error::Error::Internal(format!("stop: {e}")))?;
    served??;
    tracing::info!("stopped");
    Ok(())
}
