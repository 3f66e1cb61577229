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
mod http;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod recipes;
#[path = "watch.rs"]
mod watch_service;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::error::{Error, Result};
use crate::proto::etcdserverpb::{
    auth_server::{Auth, AuthServer},
    cluster_server::ClusterServer,
    kv_server::KvServer,
    lease_server::LeaseServer,
    maintenance_server::MaintenanceServer,
    watch_server::WatchServer,
};
use crate::proto::metastorepb::peer_server::PeerServer;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::raft::transport::PeerService;
use crate::server::EtcdServer;

/// Services whose every RPC answers Unimplemented (the generated default bodies).
#[derive(Clone, Copy)]
pub struct NotServed;

impl Auth for NotServed {}

/// The accepted connections of `l`, with Nagle's algorithm off: tonic does not apply its own
/// `tcp_nodelay` to connections it is handed, and small responses (watch events, raft messages) would
/// otherwise wait for the peer's delayed ACK.
fn nodelay(
    l: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(l).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

/// The accepted connections of a client URL: `nodelay`, each behind the `:authority` fix-up that
/// lets grpc-go clients dial `http://HOST:PORT` endpoints (see `authority`).
fn client_connections(
    l: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<authority::AuthorityFix<tokio::net::TcpStream>>>
       + Send
       + 'static {
    use tokio_stream::StreamExt;
    nodelay(l).map(|conn| conn.map(authority::AuthorityFix::new))
}

impl<S> tonic::transport::server::Connected for authority::AuthorityFix<S>
where
    S: tonic::transport::server::Connected + tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.get_ref().connect_info()
    }
}

/// A tonic router as every listener here runs it: with etcd's deadline answer (`deadline`).
type Router = tonic::transport::server::Router<
    tower_layer::Stack<deadline::DeadlineLayer, tower_layer::Identity>,
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

/// Binds every client URL. A host name is resolved and its first IPv4 address preferred.
pub async fn bind(urls: &[String]) -> Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for u in urls {
        let parsed = url::Url::parse(u).map_err(|e| Error::Internal(format!("{u}: {e}")))?;
        if parsed.scheme() != "http" {
            return Err(Error::Internal(format!(
                "{u}: only http client URLs are served (TLS is not supported yet)"
            )));
        }
        let host = parsed.host_str().unwrap_or("localhost");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = parsed.port().unwrap_or(2379);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Error::Internal(format!("resolve {u}: {e}")))?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| Error::Internal(format!("{u}: no address")))?;
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Internal(format!("listen on {u} ({addr}): {e}")))?;
        tracing::info!(url = %u, address = %addr, "listening");
        out.push(l);
    }
    Ok(out)
}

/// A client or peer URL's listener: TCP, or a unix socket for `unix://` URLs.
pub enum Listener {
    Tcp(TcpListener),
    Unix(tokio::net::UnixListener),
}

/// Binds every client or peer URL; a `unix://` URL listens on its socket path (a stale socket file left
/// by an earlier run is removed first, as etcd does).
pub async fn bind_any(urls: &[String]) -> Result<Vec<Listener>> {
    let mut out = Vec::new();
    let mut tcp = Vec::new();
    for u in urls {
        match crate::config::unix_socket_path(u) {
            Some(path) => {
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::Internal(format!("listen on {u}: {e}"))),
                }
                let l = tokio::net::UnixListener::bind(path)
                    .map_err(|e| Error::Internal(format!("listen on {u}: {e}")))?;
                tracing::info!(url = %u, "listening");
                out.push(Listener::Unix(l));
            }
            None => tcp.push(u.clone()),
        }
    }
    out.extend(bind(&tcp).await?.into_iter().map(Listener::Tcp));
    Ok(out)
}

/// Serves the peer protocol on `listeners` until `shutdown` turns true.
pub async fn serve_peer(
    server: Arc<EtcdServer>,
    listeners: Vec<Listener>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let db = server.db.clone();
    let members: Arc<dyn Fn() -> Vec<crate::proto::metastorepb::MemberRecord> + Send + Sync> =
        Arc::new(move || crate::cluster::list_records(&db).unwrap_or_default());
    let store = server.store.clone();
    let hash_kv: Arc<dyn Fn(i64) -> Result<(u32, i64)> + Send + Sync> =
        Arc::new(move |rev| crate::corrupt::local_hash(&store, rev));
    let mut tasks = Vec::new();
    for l in listeners {
        let svc = PeerServer::new(PeerService {
            transport: server.transport.clone(),
            members: members.clone(),
            hash_kv: hash_kv.clone(),
        })
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .layer(deadline::DeadlineLayer)
            .add_service(svc);
        tasks.push(match l {
            Listener::Tcp(l) => spawn_router(router, nodelay(l), shutdown.clone()),
            Listener::Unix(l) => spawn_router(
                router,
                tokio_stream::wrappers::UnixListenerStream::new(l),
                shutdown.clone(),
            ),
        });
    }
    join_all("peer server", tasks).await
}

/// Serves the client API on `listeners` until `shutdown` turns true.
pub async fn serve(
    server: Arc<EtcdServer>,
    listeners: Vec<Listener>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let limit = server.cfg.max_recv_bytes() + (16 << 20);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let mut tasks = Vec::new();
    for l in listeners {
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
        if server.cfg.enable_grpc_gateway {
            let streams = gateway::StreamLimit::new(server.cfg.max_concurrent_streams);
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
            .max_concurrent_streams(server.cfg.max_concurrent_streams)
            .layer(deadline::DeadlineLayer)
            .add_routes(routes);
        tasks.push(match l {
            Listener::Tcp(l) => spawn_router(router, client_connections(l), shutdown.clone()),
            Listener::Unix(l) => {
                use tokio_stream::StreamExt;
                let conns = tokio_stream::wrappers::UnixListenerStream::new(l)
                    .map(|conn| conn.map(authority::AuthorityFix::new));
                spawn_router(router, conns, shutdown.clone())
            }
        });
    }
    join_all("grpc server", tasks).await
}

/// Serves /metrics and the health endpoints (plain HTTP, no gRPC) on the `--listen-metrics-urls`
/// listeners until `shutdown` turns true.
pub async fn serve_metrics(
    server: Arc<EtcdServer>,
    listeners: Vec<TcpListener>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let mut tasks = Vec::new();
    for l in listeners {
        let mut router = tonic::service::AxumRouter::new();
        http::add_routes(&mut router, server.clone());
        let router = tonic::transport::Server::builder()
            .accept_http1(true)
            .layer(deadline::DeadlineLayer)
            .add_routes(tonic::service::Routes::from(router));
        tasks.push(spawn_router(router, nodelay(l), shutdown.clone()));
    }
    join_all("metrics server", tasks).await
}
