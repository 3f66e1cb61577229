//! The client API: one tonic server per client URL carrying every etcd v3 service, plus
//! `grpc.health.v1.Health`, etcd's JSON gateway (`gateway`, `gateway_stream`) and plain-HTTP
//! endpoints (`http`). Handlers are thin: validate, build the request, await, fill the header.
//! Services not served yet are registered so that their RPCs answer `Unimplemented`.
//!
//! Below the router: every client connection passes through `authority` (grpc-go's
//! `:authority: http://HOST:PORT`, which h2 refuses, is made valid) and every request through
//! `deadline` (an expired `grpc-timeout` is answered DeadlineExceeded, as etcd answers it).

mod authority;
mod cluster;
mod deadline;
mod election;
mod forward;
mod gateway;
mod gateway_stream;
mod grpc_metrics;
mod http;
mod kv;
mod lease;
mod listen;
mod lock;
mod maintenance;
mod recipes;
mod validate;
#[path = "watch.rs"]
mod watch_service;

use std::sync::Arc;

use tokio::sync::watch;

pub use listen::{bind, bind_any, Bound, Listener};
use listen::{client_connections, nodelay, tls_connections};

use crate::error::{Error, Result};
use crate::proto::etcdserverpb::{
    auth_server::{Auth, AuthServer},
    cluster_server::ClusterServer,
    kv_server::KvServer,
    lease_server::LeaseServer,
    maintenance_server::MaintenanceServer,
    watch_server::WatchServer,
};
use crate::proto::metastorepb::{leader_server::LeaderServer, peer_server::PeerServer};
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::raft::transport::PeerService;
use crate::server::EtcdServer;
use crate::tls::Tls;

/// Services whose every RPC answers Unimplemented (the generated default bodies).
#[derive(Clone, Copy)]
pub struct NotServed;

impl Auth for NotServed {}

/// A tonic router as every listener here runs it: gRPC calls counted (`grpc_metrics`, on client
/// listeners only), then etcd's deadline answer (`deadline`), so that deadline answers count too.
type Router = tonic::transport::server::Router<
    tower_layer::Stack<
        deadline::DeadlineLayer,
        tower_layer::Stack<grpc_metrics::GrpcMetricsLayer, tower_layer::Identity>,
    >,
>;

/// Runs one tonic router on the connections of `incoming` until `shutdown` turns true.
fn spawn_router<I, IO>(
    router: Router,
    incoming: I,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>>
where
    I: futures::Stream<Item = std::io::Result<IO>> + Send + 'static,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
{
    tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = shutdown.wait_for(|&s| s).await;
            })
            .await
    })
}

/// Runs `router` on bound URL `b`: TLS sessions when `tls` is given (an `https://` URL), plain TCP
/// otherwise, or a unix socket (`unix://` URLs are never TLS). The client URLs use their own
/// variant with the `:authority` fix-up in front.
fn spawn_on(
    router: Router,
    b: Bound,
    tls: Option<Arc<Tls>>,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>> {
    match (b.listener, tls) {
        (Listener::Tcp(l), Some(t)) => spawn_router(router, tls_connections(l, t, b.url), shutdown),
        (Listener::Tcp(l), None) => spawn_router(router, nodelay(l), shutdown),
        (Listener::Unix(l), _) => spawn_router(
            router,
            tokio_stream::wrappers::UnixListenerStream::new(l),
            shutdown,
        ),
    }
}

/// Waits for every server task; the first failure is the result.
async fn join_all(
    what: &str,
    tasks: Vec<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
) -> Result<()> {
    for t in tasks {
        t.await
            .map_err(|e| Error::Internal(format!("{what} task: {e}")))?
            .map_err(|e| Error::Internal(format!("{what}: {e}")))?;
    }
    Ok(())
}

/// Serves the peer protocol (and the `Leader` service that followers forward to) on `listeners`
/// until `shutdown` turns true; `https://` ones with `tls`.
pub async fn serve_peer(
    server: Arc<EtcdServer>,
    listeners: Vec<Bound>,
    tls: Option<Arc<Tls>>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let db = server.db().clone();
    let members: Arc<dyn Fn() -> Vec<crate::proto::metastorepb::MemberRecord> + Send + Sync> =
        Arc::new(move || crate::cluster::list_records(&db).unwrap_or_default());
    let store = server.store().clone();
    let hash_kv: Arc<dyn Fn(i64) -> Result<(u32, i64)> + Send + Sync> =
        Arc::new(move |rev| crate::corrupt::local_hash(&store, rev));
    let mut tasks = Vec::new();
    for b in listeners {
        let svc = PeerServer::new(PeerService {
            transport: server.transport().clone(),
            members: members.clone(),
            hash_kv: hash_kv.clone(),
        })
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
        let leader = LeaderServer::new(forward::LeaderService {
            lease: lease::LeaseService::new(server.clone()),
            cluster: cluster::ClusterService {
                server: server.clone(),
            },
        });
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .layer(grpc_metrics::GrpcMetricsLayer(None))
            .layer(deadline::DeadlineLayer)
            .add_service(svc)
            .add_service(leader);
        let with_tls = tls_for(&b, &tls, "--peer-cert-file, --peer-key-file", "peer")?;
        tasks.push(spawn_on(router, b, with_tls, shutdown.clone()));
    }
    join_all("peer server", tasks).await
}

/// Serves the client API on `listeners` until `shutdown` turns true; `https://` ones with `tls`.
pub async fn serve(
    server: Arc<EtcdServer>,
    listeners: Vec<Bound>,
    tls: Option<Arc<Tls>>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let limit = server.cfg().max_recv_bytes() + (16 << 20);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let counted =
        grpc_metrics::GrpcMetricsLayer(Some(grpc_metrics::GrpcMetrics::new(server.metrics())));
    let mut tasks = Vec::new();
    for b in listeners {
        let kv = KvServer::new(kv::KvService {
            server: server.clone(),
        })
        .max_decoding_message_size(limit);
        let maintenance = MaintenanceServer::new(maintenance::MaintenanceService {
            server: server.clone(),
        })
        .max_decoding_message_size(limit);
        let cluster = ClusterServer::new(cluster::ClusterService {
            server: server.clone(),
        });
        let mut routes = tonic::service::Routes::new(kv)
            .add_service(maintenance)
            .add_service(cluster)
            .add_service(WatchServer::new(watch_service::WatchService::new(
                server.clone(),
                shutdown.clone(),
            )))
            .add_service(LeaseServer::new(lease::LeaseService::new(server.clone())))
            .add_service(AuthServer::new(NotServed))
            .add_service(LockServer::new(lock::LockService {
                server: server.clone(),
            }))
            .add_service(ElectionServer::new(election::ElectionService {
                server: server.clone(),
            }))
            .add_service(health.clone());
        if server.cfg().enable_grpc_gateway {
            let streams = gateway::StreamLimit::new(server.cfg().max_concurrent_streams);
            gateway::add_routes(routes.axum_router_mut(), server.clone(), streams.clone());
            gateway_stream::add_routes(
                routes.axum_router_mut(),
                server.clone(),
                shutdown.clone(),
                streams,
            );
        }
        http::add_routes(routes.axum_router_mut(), server.clone());
        let router = tonic::transport::Server::builder()
            .accept_http1(true)
            .max_concurrent_streams(server.cfg().max_concurrent_streams)
            .layer(counted.clone())
            .layer(deadline::DeadlineLayer)
            .add_routes(routes);
        let with_tls = tls_for(&b, &tls, "--cert-file, --key-file", "client")?;
        tasks.push(match (b.listener, with_tls) {
            (Listener::Tcp(l), Some(t)) => {
                use tokio_stream::StreamExt;
                let conns =
                    tls_connections(l, t, b.url).map(|conn| conn.map(authority::AuthorityFix::new));
                spawn_router(router, conns, shutdown.clone())
            }
            (Listener::Tcp(l), None) => {
                spawn_router(router, client_connections(l), shutdown.clone())
            }
            (Listener::Unix(l), _) => {
                use tokio_stream::StreamExt;
                let conns = tokio_stream::wrappers::UnixListenerStream::new(l)
                    .map(|conn| conn.map(authority::AuthorityFix::new));
                spawn_router(router, conns, shutdown.clone())
            }
        });
    }
    join_all("grpc server", tasks).await
}

/// The TLS material for bound URL `b`: None for `http://`, `tls` for `https://`, and etcd's start-up
/// error when there is none (config checks this first; this keeps a listener from ever serving
/// plaintext on an `https://` URL).
fn tls_for(b: &Bound, tls: &Option<Arc<Tls>>, flags: &str, kind: &str) -> Result<Option<Arc<Tls>>> {
    match (tls, b.is_tls()) {
        (_, false) => Ok(None),
        (Some(t), true) => Ok(Some(t.clone())),
        (None, true) => Err(Error::Internal(format!(
            "TLS key/cert ({flags}) must be provided for {kind} url {} with HTTPS scheme",
            b.url
        ))),
    }
}

/// Serves /metrics and the health endpoints (HTTP/1.1 and HTTP/2, no gRPC) on the
/// `--listen-metrics-urls` listeners until `shutdown` turns true; `https://` ones with the client
/// TLS material, as etcd serves them.
pub async fn serve_metrics(
    server: Arc<EtcdServer>,
    listeners: Vec<Bound>,
    tls: Option<Arc<Tls>>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let mut tasks = Vec::new();
    for b in listeners {
        let with_tls = tls_for(&b, &tls, "--cert-file, --key-file", "metrics")?;
        let mut router = tonic::service::AxumRouter::new();
        http::add_routes(&mut router, server.clone());
        let router = tonic::transport::Server::builder()
            .accept_http1(true)
            .layer(grpc_metrics::GrpcMetricsLayer(None))
            .layer(deadline::DeadlineLayer)
            .add_routes(tonic::service::Routes::from(router));
        tasks.push(spawn_on(router, b, with_tls, shutdown.clone()));
    }
    join_all("metrics server", tasks).await
}
