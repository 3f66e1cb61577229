//! Peer transport over gRPC on the peer URLs (`peer.proto`).
//!
//! Outbound: one task per peer owns a long-lived client stream of [`RaftBatch`]es, fed from a bounded
//! queue; it reconnects with backoff and reports the peer unreachable to raft when a send fails. A full
//! queue drops messages (raft retransmits), so one slow or dead peer never blocks the node thread or the
//! other peers. `MsgSnapshot` goes on its own stream with the checkpoint files.
//!
//! Inbound: the `Peer` service checks the cluster id and hands messages to the node thread.
//!
//! Invariant: a message from another cluster (different cluster id) is refused, never stepped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use super::node::NodeMsg;
use crate::proto::metastorepb::{
    peer_client::PeerClient, peer_server::Peer, MemberRecord, MembersRequest, MembersResponse,
    PeerAck, PeerHashKvRequest, PeerHashKvResponse, RaftBatch, SnapshotChunk,
};

/// Messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;
/// Raft messages per batch on the wire.
const MAX_BATCH: usize = 512;
/// Snapshot file chunk size.
const CHUNK: usize = 1 << 20;

/// What the transport tells the node thread (through a callback into its channel).
pub type NodeSink = Arc<dyn Fn(NodeMsg) + Send + Sync>;

struct PeerLink {
    urls: Vec<String>,
    tx: mpsc::Sender<Message>,
    /// The stream to this peer is up (connected and the last send went through).
    active: Arc<std::sync::atomic::AtomicBool>,
}

/// Sends raft messages to the other members.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    cluster_id: u64,
    local_id: u64,
    peers: Mutex<HashMap<u64, PeerLink>>,
    node: Mutex<Option<NodeSink>>,
    rt: tokio::runtime::Handle,
    snap_dir: PathBuf,
    dialer: Dialer,
}

impl super::network::Network for Transport {
    fn set_node(&self, sink: NodeSink) {
        Transport::set_node(self, sink)
    }
    fn send(&self, msgs: Vec<Message>) {
        Transport::send(self, msgs)
    }
    fn set_peers(&self, members: &[(u64, Vec<String>)]) {
        Transport::set_peers(self, members)
    }
    fn is_active(&self, id: u64) -> bool {
        Transport::is_active(self, id)
    }
}

impl Transport {
    pub fn new(
        cluster_id: u64,
        local_id: u64,
        rt: tokio::runtime::Handle,
        snap_dir: PathBuf,
        dialer: Dialer,
    ) -> Self {
        Transport {
            inner: Arc::new(Inner {
                cluster_id,
                local_id,
                peers: Mutex::new(HashMap::new()),
                node: Mutex::new(None),
                rt,
                snap_dir,
                dialer,
            }),
        }
    }

    /// Connects the transport to the node thread (reports and inbound messages go there).
    pub fn set_node(&self, sink: NodeSink) {
        *self.inner.node.lock() = Some(sink);
    }

    fn to_node(&self, m: NodeMsg) {
        if let Some(sink) = self.inner.node.lock().as_ref() {
            sink(m);
        }
    }

    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id
    }

    /// Makes the peer set equal to `members` (id -> peer URLs), excluding this member.
    pub fn set_peers(&self, members: &[(u64, Vec<String>)]) {
        let mut peers = self.inner.peers.lock();
        peers.retain(|id, _| members.iter().any(|(m, _)| m == id));
        for (id, urls) in members {
            if *id == self.inner.local_id {
                continue;
            }
            if peers.get(id).is_some_and(|p| &p.urls == urls) {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            let t = self.clone();
            let (pid, purls) = (*id, urls.clone());
            let active = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = active.clone();
            self.inner
                .rt
                .spawn(async move { t.peer_loop(pid, purls, rx, flag).await });
            peers.insert(
                *id,
                PeerLink {
                    urls: urls.clone(),
                    tx,
                    active,
                },
            );
        }
    }

    /// True when the stream to member `id` is up (this member counts as active for itself).
    pub fn is_active(&self, id: u64) -> bool {
        if id == self.inner.local_id {
            return true;
        }
        self.inner
            .peers
            .lock()
            .get(&id)
            .is_some_and(|p| p.active.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Queues messages for their peers; never blocks.
    pub fn send(&self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        let peers = self.inner.peers.lock();
        for m in msgs {
            let to = m.to;
            if m.get_msg_type() == MessageType::MsgSnapshot {
                let Some(p) = peers.get(&to) else { continue };
                let t = self.clone();
                let urls = p.urls.clone();
                self.inner
                    .rt
                    .spawn(async move { t.send_snapshot(to, urls, m).await });
                continue;
            }
            match peers.get(&to) {
                Some(p) => {
                    if p.tx.try_send(m).is_err() {
                        self.to_node(NodeMsg::Unreachable(to));
                    }
                }
                None => tracing::debug!(to = %format!("{to:x}"), "message to unknown peer dropped"),
            }
        }
    }

    async fn connect(&self, urls: &[String]) -> Option<PeerClient<tonic::transport::Channel>> {
        self.inner.dialer.connect(urls).await
    }

    /// How this member dials its peers (with peer TLS when configured).
    pub fn dialer(&self) -> &Dialer {
        &self.inner.dialer
    }

    async fn peer_loop(
        self,
        id: u64,
        urls: Vec<String>,
        mut rx: mpsc::Receiver<Message>,
        active: Arc<std::sync::atomic::AtomicBool>,
    ) {
        use std::sync::atomic::Ordering;
        let mut backoff = Duration::from_millis(50);
        loop {
            active.store(false, Ordering::Release);
            let Some(mut client) = self.connect(&urls).await else {
                self.to_node(NodeMsg::Unreachable(id));
                // Drop what queued up while the peer was down; raft resends what matters.
                while rx.try_recv().is_ok() {}
                if rx.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            };
            backoff = Duration::from_millis(50);
            let (btx, brx) = mpsc::channel::<RaftBatch>(16);
            let call = tokio::spawn(async move { client.raft(ReceiverStream::new(brx)).await });
            active.store(true, Ordering::Release);
            loop {
                let Some(first) = rx.recv().await else {
                    call.abort();
                    return;
                };
                let mut msgs = Vec::with_capacity(16);
                msgs.push(first);
                while msgs.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(m) => msgs.push(m),
                        Err(_) => break,
                    }
                }
                let batch = RaftBatch {
                    cluster_id: self.inner.cluster_id,
                    from: self.inner.local_id,
                    messages: msgs
                        .iter()
                        .filter_map(|m| m.write_to_bytes().ok())
                        .collect(),
                };
                if btx.send(batch).await.is_err() || call.is_finished() {
                    tracing::debug!(peer = %format!("{id:x}"), "peer stream broke, reconnecting");
                    self.to_node(NodeMsg::Unreachable(id));
                    break;
                }
            }
            call.abort();
        }
    }

    async fn send_snapshot(self, to: u64, urls: Vec<String>, msg: Message) {
        let ok = self.try_send_snapshot(&urls, &msg).await;
        if let Err(e) = &ok {
            tracing::warn!(peer = %format!("{to:x}"), error = %e, "sending snapshot failed");
        }
        self.to_node(NodeMsg::SnapshotStatus { to, ok: ok.is_ok() });
    }

    async fn try_send_snapshot(&self, urls: &[String], msg: &Message) -> Result<(), String> {
        let dir = PathBuf::from(String::from_utf8_lossy(msg.get_snapshot().get_data()).to_string());
        let files = list_files(&dir).map_err(|e| format!("list {}: {e}", dir.display()))?;
        let mut client = self.connect(urls).await.ok_or("peer unreachable")?;
        let (tx, rx) = mpsc::channel::<SnapshotChunk>(4);
        let call = tokio::spawn(async move { client.snapshot(ReceiverStream::new(rx)).await });
        let header = SnapshotChunk {
            cluster_id: self.inner.cluster_id,
            from: self.inner.local_id,
            message: msg.write_to_bytes().map_err(|e| e.to_string())?,
            ..Default::default()
        };
        tx.send(header)
            .await
            .map_err(|_| "snapshot stream closed")?;
        for rel in files {
            let path = dir.join(&rel);
            let mut f = tokio::fs::File::open(&path)
                .await
                .map_err(|e| format!("open {}: {e}", path.display()))?;
            let mut sent_any = false;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = tokio::io::AsyncReadExt::read(&mut f, &mut buf)
                    .await
                    .map_err(|e| format!("read {}: {e}", path.display()))?;
                if n == 0 && sent_any {
                    break;
                }
                buf.truncate(n);
                let chunk = SnapshotChunk {
                    file: rel.clone(),
                    data: buf,
                    ..Default::default()
                };
                tx.send(chunk).await.map_err(|_| "snapshot stream closed")?;
                sent_any = true;
                if n == 0 {
                    break;
                }
            }
        }
        drop(tx);
        match call.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(s)) => Err(s.message().to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Where received snapshots are written.
    pub fn snap_dir(&self) -> &Path {
        &self.inner.snap_dir
    }
}

/// Files under `dir`, as paths relative to it (checkpoints are flat, but be general).
fn list_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_file() {
            out.push(e.file_name().to_string_lossy().to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// Opens channels to peers' URLs: `http://` over TCP, `https://` over TLS with the peer TLS
/// material (`--peer-cert-file` ..., `--peer-auto-tls`), `unix://` over a unix socket.
#[derive(Clone, Default)]
pub struct Dialer {
    tls: Option<Arc<crate::tls::Tls>>,
}

impl Dialer {
    pub fn new(tls: Option<Arc<crate::tls::Tls>>) -> Dialer {
        Dialer { tls }
    }

    /// A channel to the first of `urls` that answers (each tried for about a second).
    pub async fn channel(&self, urls: &[String]) -> Option<tonic::transport::Channel> {
        for u in urls {
            let socket = crate::config::unix_socket_path(u);
            // tonic sees only `http://` targets: TLS is done by `tls_connector` (and a tonic built with
            // its own TLS feature would refuse an `https://` target it has no TLS config for).
            let target = match (socket, u.strip_prefix("https://")) {
                (Some(_), _) => "http://localhost".to_string(),
                (None, Some(rest)) => format!("http://{rest}"),
                (None, None) => u.clone(),
            };
            let Ok(ep) = tonic::transport::Endpoint::from_shared(target) else {
                continue;
            };
            let ep = ep
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5));
            let dial = async {
                match socket {
                    Some(path) => {
                        ep.connect_with_connector(unix_connector(PathBuf::from(path)))
                            .await
                    }
                    None if u.starts_with("https://") => match &self.tls {
                        Some(tls) => ep.connect_with_connector(tls_connector(tls.clone())).await,
                        None => {
                            tracing::warn!(url = %u, "an https peer URL, but no peer TLS is configured (--peer-cert-file, --peer-auto-tls)");
                            return None;
                        }
                    },
                    None => ep.connect().await,
                }
                .map_err(|e| tracing::debug!(url = %u, error = %e, "dialing a peer failed"))
                .ok()
            };
            if let Ok(Some(ch)) = tokio::time::timeout(Duration::from_secs(2), dial).await {
                return Some(ch);
            }
        }
        None
    }

    /// A peer protocol client on the first of `urls` that answers.
    async fn connect(&self, urls: &[String]) -> Option<PeerClient<tonic::transport::Channel>> {
        let ch = self.channel(urls).await?;
        Some(
            PeerClient::new(ch)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        )
    }
}

type Connecting<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<T>> + Send>>;

/// A connector for tonic made of a function from the URI to a connection (the URI tonic passes is a
/// placeholder for `unix://` URLs).
#[derive(Clone)]
struct Connector<F>(F);

impl<F, T> tower_service::Service<http::Uri> for Connector<F>
where
    F: Fn(http::Uri) -> Connecting<T>,
    T: Send + 'static,
{
    type Response = hyper_util::rt::TokioIo<T>;
    type Error = std::io::Error;
    type Future = Connecting<Self::Response>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = (self.0)(uri);
        Box::pin(async move { connecting.await.map(hyper_util::rt::TokioIo::new) })
    }
}

/// Dials an `https://` peer URL: TCP, then the TLS handshake with the peer TLS material.
fn tls_connector(
    tls: Arc<crate::tls::Tls>,
) -> Connector<
    impl Fn(http::Uri) -> Connecting<crate::tls::ClientStream<tokio::net::TcpStream>> + Clone,
> {
    Connector(move |uri: http::Uri| -> Connecting<_> {
        let tls = tls.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or("localhost").to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = tokio::net::TcpStream::connect((
                host.trim_start_matches('[').trim_end_matches(']'),
                port,
            ))
            .await?;
            tcp.set_nodelay(true)?;
            tls.connect(&host, tcp).await
        })
    })
}

/// Dials a `unix://` peer URL's socket.
fn unix_connector(
    path: PathBuf,
) -> Connector<impl Fn(http::Uri) -> Connecting<tokio::net::UnixStream> + Clone> {
    Connector(move |_| -> Connecting<_> {
        let path = path.clone();
        Box::pin(async move { tokio::net::UnixStream::connect(path).await })
    })
}

/// The inbound side: the `Peer` gRPC service.
pub struct PeerService {
    pub transport: Transport,
    /// Lists the members (for a member joining the cluster).
    pub members: Arc<dyn Fn() -> Vec<MemberRecord> + Send + Sync>,
    /// This member's (hash, compact revision) at a revision (for a peer's initial corruption check).
    pub hash_kv: Arc<dyn Fn(i64) -> crate::error::Result<(u32, i64)> + Send + Sync>,
}

/// A peer's HashKV at `revision` (None when it cannot be reached), for the initial corruption check.
pub async fn fetch_hash_kv(
    dialer: &Dialer,
    urls: &[String],
    revision: i64,
    timeout: Duration,
) -> Option<Result<PeerHashKvResponse, Status>> {
    let ask = async {
        let mut c = dialer.connect(urls).await?;
        Some(
            c.hash_kv(PeerHashKvRequest { revision })
                .await
                .map(Response::into_inner),
        )
    };
    tokio::time::timeout(timeout, ask).await.ok().flatten()
}

/// Asks the members at `urls` for the cluster id and members (joining an existing cluster).
pub async fn fetch_members(dialer: &Dialer, urls: &[String]) -> Option<MembersResponse> {
    for u in urls {
        if let Some(mut c) = dialer.connect(std::slice::from_ref(u)).await {
            if let Ok(r) = c.members(MembersRequest {}).await {
                return Some(r.into_inner());
            }
        }
    }
    None
}

impl PeerService {
    fn check_cluster(&self, cluster_id: u64) -> Result<(), Status> {
        if cluster_id != self.transport.inner.cluster_id {
            tracing::warn!(
                local = %format!("{:x}", self.transport.inner.cluster_id),
                remote = %format!("{cluster_id:x}"),
                "refused raft traffic from another cluster (cluster ID mismatch)"
            );
            return Err(Status::failed_precondition(
                "etcdserver: cluster ID mismatch",
            ));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn members(
        &self,
        _: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        let list = self.members.clone();
        let members = tokio::task::spawn_blocking(move || list())
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(MembersResponse {
            cluster_id: self.transport.cluster_id(),
            members,
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<PeerHashKvRequest>,
    ) -> Result<Response<PeerHashKvResponse>, Status> {
        let revision = req.get_ref().revision;
        let f = self.hash_kv.clone();
        let (hash, compact_revision) = tokio::task::spawn_blocking(move || f(revision))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(PeerHashKvResponse {
            member_id: self.transport.inner.local_id,
            hash,
            compact_revision,
        }))
    }

    async fn raft(
        &self,
        req: Request<tonic::Streaming<RaftBatch>>,
    ) -> Result<Response<PeerAck>, Status> {
        let mut stream = req.into_inner();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            self.check_cluster(batch.cluster_id)?;
            for b in batch.messages {
                match Message::parse_from_bytes(&b) {
                    Ok(m) => self.transport.to_node(NodeMsg::Raft(Box::new(m))),
                    Err(e) => {
                        return Err(Status::invalid_argument(format!("bad raft message: {e}")))
                    }
                }
            }
        }
        Ok(Response::new(PeerAck {}))
    }

    async fn snapshot(
        &self,
        req: Request<tonic::Streaming<SnapshotChunk>>,
    ) -> Result<Response<PeerAck>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        self.check_cluster(first.cluster_id)?;
        let mut msg = Message::parse_from_bytes(&first.message)
            .map_err(|e| Status::invalid_argument(format!("bad snapshot message: {e}")))?;
        let index = msg.get_snapshot().get_metadata().index;
        let base = self.transport.snap_dir().to_path_buf();
        let tmp = base.join(format!("recv-{index}.tmp"));
        let dst = base.join(format!("recv-{index}"));
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|e| Status::internal(format!("create {}: {e}", tmp.display())))?;
        let mut open: Option<(String, tokio::fs::File)> = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if chunk.file.is_empty() || chunk.file.contains('/') || chunk.file.starts_with('.') {
                return Err(Status::invalid_argument("bad snapshot file name"));
            }
            if open.as_ref().map(|(n, _)| n != &chunk.file).unwrap_or(true) {
                if let Some((_, f)) = open.take() {
                    f.sync_all()
                        .await
                        .map_err(|e| Status::internal(e.to_string()))?;
                }
                let f = tokio::fs::File::create(tmp.join(&chunk.file))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?;
                open = Some((chunk.file.clone(), f));
            }
            if let Some((_, f)) = open.as_mut() {
                tokio::io::AsyncWriteExt::write_all(f, &chunk.data)
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?;
            }
        }
        if let Some((_, f)) = open.take() {
            f.sync_all()
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        let _ = tokio::fs::remove_dir_all(&dst).await;
        tokio::fs::rename(&tmp, &dst)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        // The rename must be durable before an install records `dst` as the checkpoint to redo.
        let sync_dir =
            |e: std::io::Error| Status::internal(format!("sync {}: {e}", base.display()));
        let parent = tokio::fs::File::open(&base).await.map_err(sync_dir)?;
        parent.sync_all().await.map_err(sync_dir)?;
        msg.mut_snapshot()
            .set_data(dst.to_string_lossy().as_bytes().to_vec().into());
        self.transport.to_node(NodeMsg::Raft(Box::new(msg)));
        Ok(Response::new(PeerAck {}))
    }
}
