//! The network seam between a member's raft node and its peers: what the node thread and apply need
//! to send raft messages, learn of inbound ones and follow membership. `transport.rs` implements it
//! over gRPC on the peer URLs; [`MemNetwork`] implements it inside one process, so unit tests run
//! several members' raft and apply together (raft-rs's `five_mem_node` example is the model) and
//! can cut members off.
//!
//! Invariants every implementation keeps: `send` never blocks the caller (messages may be dropped;
//! raft retransmits what matters); a `MsgSnapshot` is delivered with its checkpoint copied where the
//! receiver keeps received snapshots, and the sender hears `SnapshotStatus` for it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use raft::eraftpb::{Message, MessageType};

use super::node::NodeMsg;
use super::transport::NodeSink;
use crate::proto::metastorepb::MembersResponse;
use crate::storage::Db;

/// How a raft node reaches its peers.
pub trait Network: Send + Sync {
    /// Connects the network to the node thread (inbound messages and reports go there).
    fn set_node(&self, sink: NodeSink);
    /// Queues messages for their peers; never blocks.
    fn send(&self, msgs: Vec<Message>);
    /// Makes the peer set equal to `members` (id -> peer URLs); this member is left out.
    fn set_peers(&self, members: &[(u64, Vec<String>)]);
    /// Whether member `id` is reachable now (this member is, for itself).
    fn is_active(&self, id: u64) -> bool;
}

struct Endpoint {
    sink: Option<NodeSink>,
    snap_dir: PathBuf,
    db: Option<(Db, u64)>,
}

#[derive(Default)]
struct Hub {
    members: HashMap<u64, Endpoint>,
    /// Members cut off from every other: nothing is delivered to or from them.
    isolated: HashSet<u64>,
    /// Members whose snapshots are held back (with their sender) until released.
    holding: HashSet<u64>,
    held: Vec<(u64, Message)>,
}

/// An in-process network joining any number of members by id.
#[derive(Clone, Default)]
pub struct MemNetwork {
    hub: Arc<Mutex<Hub>>,
}

impl MemNetwork {
    pub fn new() -> MemNetwork {
        MemNetwork::default()
    }

    /// The network as member `id` sees it; received snapshots are copied under `snap_dir`.
    pub fn link(&self, id: u64, snap_dir: &Path) -> MemLink {
        self.hub.lock().members.insert(
            id,
            Endpoint {
                sink: None,
                snap_dir: snap_dir.to_path_buf(),
                db: None,
            },
        );
        MemLink {
            net: self.clone(),
            id,
        }
    }

    /// Makes member `id`'s state (and its cluster id) answer [`MemNetwork::members`], as a peer's
    /// Members RPC answers a joining member.
    pub fn register_state(&self, id: u64, db: Db, cluster_id: u64) {
        if let Some(e) = self.hub.lock().members.get_mut(&id) {
            e.db = Some((db, cluster_id));
        }
    }

    /// The cluster id and member list, read from any registered member that is not isolated.
    pub fn members(&self) -> Option<MembersResponse> {
        let hub = self.hub.lock();
        hub.members
            .iter()
            .filter(|(id, _)| !hub.isolated.contains(id))
            .find_map(|(_, e)| e.db.clone())
            .and_then(|(db, cluster_id)| {
                Some(MembersResponse {
                    cluster_id,
                    members: crate::cluster::list_records(&db).ok()?,
                })
            })
    }

    /// Cuts member `id` off from the others (`false` heals it).
    pub fn isolate(&self, id: u64, cut: bool) {
        let mut hub = self.hub.lock();
        if cut {
            hub.isolated.insert(id);
        } else {
            hub.isolated.remove(&id);
        }
    }

    /// Holds back snapshots sent to member `id` (other messages still flow) until
    /// [`MemNetwork::release_snapshots`].
    pub fn hold_snapshots(&self, id: u64) {
        self.hub.lock().holding.insert(id);
    }

    /// How many snapshots for member `id` are held back.
    pub fn held_snapshots(&self, id: u64) -> usize {
        self.hub
            .lock()
            .held
            .iter()
            .filter(|(_, m)| m.to == id)
            .count()
    }

    /// Delivers the snapshots held back for member `id` and stops holding them.
    pub fn release_snapshots(&self, id: u64) {
        let held = {
            let mut hub = self.hub.lock();
            hub.holding.remove(&id);
            let (mine, rest) = std::mem::take(&mut hub.held)
                .into_iter()
                .partition(|(_, m)| m.to == id);
            hub.held = rest;
            mine
        };
        for (from, m) in held {
            self.deliver(from, vec![m]);
        }
    }

    /// Takes member `id` off the network (it stopped).
    pub fn remove(&self, id: u64) {
        self.hub.lock().members.remove(&id);
    }

    fn deliver(&self, from: u64, msgs: Vec<Message>) {
        let mut hub = self.hub.lock();
        if hub.isolated.contains(&from) {
            return;
        }
        for m in msgs {
            if hub.isolated.contains(&m.to) {
                // As the gRPC transport reports a snapshot it could not send, so raft retries it.
                if m.get_msg_type() == MessageType::MsgSnapshot {
                    if let Some(back) = hub.members.get(&from).and_then(|e| e.sink.clone()) {
                        back(NodeMsg::SnapshotStatus {
                            to: m.to,
                            ok: false,
                        });
                    }
                }
                continue;
            }
            if m.get_msg_type() == MessageType::MsgSnapshot && hub.holding.contains(&m.to) {
                hub.held.push((from, m));
                continue;
            }
            let Some(to) = hub.members.get(&m.to) else {
                continue;
            };
            let Some(sink) = to.sink.clone() else {
                continue;
            };
            if m.get_msg_type() == MessageType::MsgSnapshot {
                let back = hub.members.get(&from).and_then(|e| e.sink.clone());
                let dir = to.snap_dir.clone();
                // Copying a checkpoint is file work: off the caller's (the raft) thread.
                std::thread::spawn(move || deliver_snapshot(m, &dir, sink, back));
                continue;
            }
            sink(NodeMsg::Raft(Box::new(m)));
        }
    }
}

/// Copies the checkpoint named by a snapshot message into `dir`, hands the message (now naming the
/// copy) to the receiver and reports the outcome to the sender.
fn deliver_snapshot(mut m: Message, dir: &Path, to: NodeSink, from: Option<NodeSink>) {
    let src = PathBuf::from(String::from_utf8_lossy(m.get_snapshot().get_data()).to_string());
    let dst = dir.join(format!("recv-{}", m.get_snapshot().get_metadata().index));
    let copied = (|| -> std::io::Result<()> {
        let _ = std::fs::remove_dir_all(&dst);
        std::fs::create_dir_all(&dst)?;
        for e in std::fs::read_dir(&src)? {
            let e = e?;
            std::fs::copy(e.path(), dst.join(e.file_name()))?;
        }
        Ok(())
    })();
    let ok = copied.is_ok();
    if let Err(e) = copied {
        tracing::warn!(error = %e, "in-process snapshot copy failed");
    } else {
        m.mut_snapshot()
            .set_data(dst.to_string_lossy().as_bytes().to_vec().into());
        to(NodeMsg::Raft(Box::new(m.clone())));
    }
    if let Some(back) = from {
        back(NodeMsg::SnapshotStatus { to: m.to, ok });
    }
}

/// One member's end of a [`MemNetwork`].
pub struct MemLink {
    net: MemNetwork,
    id: u64,
}

impl Network for MemLink {
    fn set_node(&self, sink: NodeSink) {
        if let Some(e) = self.net.hub.lock().members.get_mut(&self.id) {
            e.sink = Some(sink);
        }
    }

    fn send(&self, msgs: Vec<Message>) {
        self.net.deliver(self.id, msgs);
    }

    /// Peers are whoever is linked to the hub; membership needs no connection work here.
    fn set_peers(&self, _members: &[(u64, Vec<String>)]) {}

    fn is_active(&self, id: u64) -> bool {
        let hub = self.net.hub.lock();
        id == self.id
            || (hub.members.contains_key(&id)
                && !hub.isolated.contains(&id)
                && !hub.isolated.contains(&self.id))
    }
}

impl Drop for MemLink {
    fn drop(&mut self) {
        self.net.remove(self.id);
    }
}
