//! Watch service: one task per bidirectional stream, between the client and the watch hub.
//!
//! The task reads create / cancel / progress requests (through a small reader task), turns hub
//! messages into `WatchResponse`s (header, prev_kv choice, fragmenting) and sends progress
//! notifications on its own ticker, as etcd's `serverWatchStream` does.
//!
//! Invariants:
//! * one task writes the response stream, so a watcher's `created` response always goes out before
//!   any of its events, and create responses keep request order;
//! * no response goes out for a watcher after its `canceled` response (the hub's [`WatchStream`]
//!   drops messages of cancelled watchers);
//! * the task never blocks the hub: if the client reads slowly the task waits on the response
//!   channel, the hub channel fills up and the hub parks the stream's watchers as victims;
//! * on server shutdown, or without a leader for three election timeouts when the client asked for
//!   one (`hasleader`), the stream ends with etcd's error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;
use crate::mvcc::watch::{Filter, StreamEvent, WatchSpec, WatchStream};
use crate::proto::etcdserverpb::{
    watch_create_request::FilterType, watch_request::RequestUnion, watch_server::Watch,
    WatchCreateRequest, WatchRequest, WatchResponse,
};
use crate::proto::mvccpb::Event;
use crate::server::EtcdServer;

/// Responses buffered between the stream task and the transport.
const OUT_BUF: usize = 16;
/// Requests buffered between the reader task and the stream task.
const IN_BUF: usize = 16;
/// Election timeouts without a leader before a `hasleader` stream is ended.
const LEADERLESS_TIMEOUTS: u32 = 3;

pub struct WatchService {
    pub server: Arc<EtcdServer>,
    pub shutdown: watch::Receiver<bool>,
}

impl WatchService {
    pub fn new(server: Arc<EtcdServer>, shutdown: watch::Receiver<bool>) -> WatchService {
        WatchService { server, shutdown }
    }
}

fn wants_leader(md: &tonic::metadata::MetadataMap) -> bool {
    md.get("hasleader")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "true")
}

#[tonic::async_trait]
impl Watch for WatchService {
    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<BoxStream<WatchResponse>>, Status> {
        self.server.guard(req.metadata(), false)?;
        let require_leader = wants_leader(req.metadata());
        let inbound = req.into_inner();
        let (out, out_rx) = mpsc::channel(OUT_BUF);
        let session = Session {
            server: self.server.clone(),
            stream: self.server.watch_hub().open_stream(),
            out,
            shutdown: self.shutdown.clone(),
            opts: HashMap::new(),
            progress: HashMap::new(),
        };
        tokio::spawn(session.run(inbound, require_leader));
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }
}

/// Per-watcher options the API layer applies.
#[derive(Debug, Clone, Copy)]
struct Opts {
    fragment: bool,
}

/// Why a session ended.
enum End {
    /// The client went away (or closed its side with nothing left to watch for).
    Gone,
    /// End the stream with this status.
    Fail(Status),
}

struct Session {
    server: Arc<EtcdServer>,
    stream: WatchStream,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
    shutdown: watch::Receiver<bool>,
    opts: HashMap<i64, Opts>,
    /// Watchers with progress_notify: true while no events went out since the last tick.
    progress: HashMap<i64, bool>,
}

impl Session {
    async fn run(mut self, inbound: Streaming<WatchRequest>, require_leader: bool) {
        let (req_tx, mut req_rx) = mpsc::channel(IN_BUF);
        let reader = tokio::spawn(read_requests(inbound, req_tx));
        let period = self.server.cfg().watch_progress_notify_interval;
        // etcd adds up to 10 % jitter so that streams opened together do not tick together.
        let jitter_ms = (period.as_millis() as u64 / 10).max(1);
        let period = period + Duration::from_millis(rand::rng().random_range(0..jitter_ms));
        let mut progress_tick = interval_at(Instant::now() + period, period);
        progress_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let election = self
            .server
            .cfg()
            .election_timeout
            .max(Duration::from_millis(10));
        let mut leader_tick = interval_at(Instant::now() + election, election);
        leader_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut leaderless = 0u32;
        let mut inbound_open = true;
        let mut shutdown = self.shutdown.clone();

        let end = loop {
            tokio::select! {
                _ = stopping(&mut shutdown) => break End::Fail(Error::Stopped.into()),
                _ = self.out.closed() => break End::Gone,
                ev = self.stream.recv() => {
                    let Some(ev) = ev else { break End::Gone };
                    if let Err(e) = self.deliver(ev).await {
                        break e;
                    }
                }
                req = req_rx.recv(), if inbound_open => match req {
                    Some(Ok(r)) => {
                        if let Err(e) = self.handle(r).await {
                            break e;
                        }
                    }
                    // A broken request or a reset stream: end with its status (as etcd).
                    Some(Err(s)) => break End::Fail(s),
                    // Half-closed: keep sending events until the client goes away (as etcd).
                    None => inbound_open = false,
                },
                _ = progress_tick.tick() => self.progress_tick(),
                _ = leader_tick.tick(), if require_leader => {
                    if self.server.raft().status.leader() == 0 {
                        leaderless += 1;
                        if leaderless >= LEADERLESS_TIMEOUTS {
                            break End::Fail(Error::NoLeader.into());
                        }
                    } else {
                        leaderless = 0;
                    }
                }
            }
        };
        reader.abort();
        if let End::Fail(e) = end {
            // Best effort: the client may already be gone or not reading.
            let _ = self.out.try_send(Err(e));
        }
    }

    fn header(&self, revision: i64) -> Option<crate::proto::etcdserverpb::ResponseHeader> {
        Some(self.server.header(revision))
    }

    async fn send(&mut self, resp: WatchResponse) -> Result<(), End> {
        tokio::select! {
            r = self.out.send(Ok(resp)) => r.map_err(|_| End::Gone),
            _ = stopping(&mut self.shutdown) => Err(End::Fail(Error::Stopped.into())),
        }
    }

    async fn handle(&mut self, req: WatchRequest) -> Result<(), End> {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(RequestUnion::CancelRequest(c)) => {
                let id = c.watch_id;
                // Unknown ids get no answer (etcd).
                if let Some(rev) = self.stream.cancel(id) {
                    self.opts.remove(&id);
                    self.progress.remove(&id);
                    let resp = WatchResponse {
                        header: self.header(rev),
                        watch_id: id,
                        canceled: true,
                        ..Default::default()
                    };
                    self.send(resp).await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                self.stream.request_progress_all();
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, c: WatchCreateRequest) -> Result<(), End> {
        let mut filter = Filter::default();
        for f in &c.filters {
            match FilterType::try_from(*f) {
                Ok(FilterType::Noput) => filter.no_put = true,
                Ok(FilterType::Nodelete) => filter.no_delete = true,
                Err(_) => {}
            }
        }
        let spec = WatchSpec {
            watch_id: c.watch_id,
            key: c.key,
            range_end: c.range_end,
            start_revision: c.start_revision,
            prev_kv: c.prev_kv,
            filter,
        };
        let resp = match self.stream.watch(spec) {
            Ok((id, rev)) => {
                self.opts.insert(
                    id,
                    Opts {
                        fragment: c.fragment,
                    },
                );
                if c.progress_notify {
                    self.progress.insert(id, true);
                }
                WatchResponse {
                    header: self.header(rev),
                    watch_id: id,
                    created: true,
                    ..Default::default()
                }
            }
            Err(e) => WatchResponse {
                header: self.header(self.stream.revision()),
                watch_id: -1,
                created: true,
                canceled: true,
                cancel_reason: e.reason(),
                ..Default::default()
            },
        };
        self.send(resp).await
    }

    async fn deliver(&mut self, ev: StreamEvent) -> Result<(), End> {
        match ev {
            StreamEvent::Events {
                watch_id,
                revision,
                events,
            } => {
                if let Some(fresh) = self.progress.get_mut(&watch_id) {
                    *fresh = false;
                }
                let fragment = self.opts.get(&watch_id).is_some_and(|o| o.fragment);
                let resp = WatchResponse {
                    header: self.header(revision),
                    watch_id,
                    events,
                    ..Default::default()
                };
                if fragment {
                    let limit = self.server.cfg().max_recv_bytes();
                    for part in fragments(resp, limit) {
                        self.send(part).await?;
                    }
                    Ok(())
                } else {
                    self.send(resp).await
                }
            }
            StreamEvent::Compacted {
                watch_id,
                compact_revision,
            } => {
                self.opts.remove(&watch_id);
                self.progress.remove(&watch_id);
                let resp = WatchResponse {
                    header: self.header(0),
                    watch_id,
                    compact_revision,
                    canceled: true,
                    ..Default::default()
                };
                self.send(resp).await
            }
            StreamEvent::Progress { watch_id, revision } => {
                let resp = WatchResponse {
                    header: self.header(revision),
                    watch_id,
                    ..Default::default()
                };
                self.send(resp).await
            }
        }
    }

    /// A progress notification for every progress_notify watcher that got no events since the last
    /// tick (and is synced; the hub checks that).
    fn progress_tick(&mut self) {
        for (id, fresh) in self.progress.iter_mut() {
            if *fresh {
                self.stream.request_progress(*id);
            }
            *fresh = true;
        }
    }
}

/// Resolves once the server shuts down (or the shutdown signal is gone).
async fn stopping(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&s| s).await;
}

async fn read_requests(
    mut inbound: Streaming<WatchRequest>,
    tx: mpsc::Sender<Result<WatchRequest, Status>>,
) {
    loop {
        match inbound.message().await {
            Ok(Some(r)) => {
                if tx.send(Ok(r)).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(s) => {
                let _ = tx.send(Err(s)).await;
                return;
            }
        }
    }
}

/// Encoded size an event adds to a WatchResponse (field 11: tag, length, message).
fn event_field_len(ev: &Event) -> usize {
    let n = ev.encoded_len();
    1 + prost::length_delimiter_len(n) + n
}

/// etcd's fragmenting: a response of at least `limit` bytes with two or more events is cut into
/// parts that each stay under `limit` (a single event is never split, so a part with one event may
/// be bigger); every part but the last has `fragment = true`.
fn fragments(resp: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    if resp.events.len() < 2 || resp.encoded_len() < limit {
        return vec![resp];
    }
    let mut base = resp;
    let events = std::mem::take(&mut base.events);
    base.fragment = true;
    let base_len = base.encoded_len();
    let mut parts = Vec::new();
    let mut cur: Vec<Event> = Vec::new();
    let mut cur_len = base_len;
    for ev in events {
        let n = event_field_len(&ev);
        if !cur.is_empty() && cur_len + n >= limit {
            parts.push(WatchResponse {
                events: std::mem::take(&mut cur),
                ..base.clone()
            });
            cur_len = base_len;
        }
        cur_len += n;
        cur.push(ev);
    }
    parts.push(WatchResponse {
        events: cur,
        fragment: false,
        ..base
    });
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::ResponseHeader;
    use crate::proto::mvccpb::KeyValue;

    fn ev(key: &str, size: usize) -> Event {
        Event {
            r#type: 0,
            kv: Some(KeyValue {
                key: key.as_bytes().to_vec(),
                value: vec![b'x'; size],
                mod_revision: 7,
                create_revision: 2,
                version: 3,
                lease: 0,
            }),
            prev_kv: None,
        }
    }

    fn resp(events: Vec<Event>) -> WatchResponse {
        WatchResponse {
            header: Some(ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 7,
                raft_term: 3,
            }),
            watch_id: 4,
            events,
            ..Default::default()
        }
    }

    #[test]
    fn small_or_single_event_responses_are_not_fragmented() {
        let r = resp(vec![ev("a", 10), ev("b", 10)]);
        assert_eq!(fragments(r.clone(), 1000), vec![r]);
        let big = resp(vec![ev("a", 5000)]);
        assert_eq!(fragments(big.clone(), 1000), vec![big]);
    }

    #[test]
    fn large_responses_are_cut_at_event_boundaries() {
        let events: Vec<Event> = (0..10).map(|i| ev(&format!("k{i}"), 300)).collect();
        let whole = resp(events.clone());
        let limit = 1000;
        let parts = fragments(whole.clone(), limit);
        assert!(parts.len() > 1);
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(p.fragment, i + 1 < parts.len());
            assert_eq!(p.watch_id, 4);
            assert_eq!(p.header, whole.header);
            assert!(!p.events.is_empty());
            // Every part stays below the limit (each has room for at least one event here).
            assert!(p.encoded_len() < limit, "part {i} is {}", p.encoded_len());
        }
        let joined: Vec<Event> = parts.into_iter().flat_map(|p| p.events).collect();
        assert_eq!(joined, events);
    }

    #[test]
    fn an_oversized_event_gets_a_part_of_its_own() {
        let events = vec![ev("a", 10), ev("b", 5000), ev("c", 10)];
        let parts = fragments(resp(events), 1000);
        let sizes: Vec<usize> = parts.iter().map(|p| p.events.len()).collect();
        assert_eq!(sizes, [1, 1, 1]);
        assert_eq!(
            parts.iter().map(|p| p.fragment).collect::<Vec<_>>(),
            [true, true, false]
        );
    }
}
