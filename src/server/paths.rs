//! The request paths the API layer uses: the backend quota check, propose and wait (for requests and
//! membership changes), the learner guard, the linearizable read barrier, and reads on the blocking
//! pool.
//!
//! Invariant: nothing here blocks the async runtime; waits on raft and apply go through channels and
//! end at the request timeout.

use super::*;

impl EtcdServer {
    /// Makes the next quota check read the size again (after a defragment).
    pub fn forget_backend_size(&self) {
        self.quota.forget();
    }

    /// etcd's backend quota: a request that adds `cost` bytes passes while the backend stays under
    /// `--quota-backend-bytes`; otherwise this member raises NOSPACE (unless it already has) and the
    /// request fails with `etcdserver: mvcc: database space exceeded`. Requests that add nothing pass.
    pub async fn check_quota(&self, cost: u64) -> Result<()> {
        use crate::proto::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType};
        if self.quota.admits(cost) {
            return Ok(());
        }
        let raised = self
            .alarms
            .get()
            .iter()
            .any(|a| a.member_id == self.member_id && a.alarm == AlarmType::Nospace as i32);
        if !raised {
            let alarm = Request::Alarm(AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: self.member_id,
                alarm: AlarmType::Nospace as i32,
            });
            if let Err(e) = self.propose(alarm).await {
                tracing::warn!(error = %e, "raising the NOSPACE alarm failed");
            }
        }
        Err(Error::NoSpace)
    }

    /// Proposes a request through raft and waits until it is applied here. Without a leader the
    /// proposal is retried until the request timeout, then fails with etcd's timeout error.
    pub async fn propose(&self, req: Request) -> Result<Applied> {
        let id = self.ids.next();
        let data = InternalRequest {
            id,
            request: Some(req),
        }
        .encode_to_vec();
        if data.len() > self.cfg.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        self.submit(id, |id| NodeMsg::Propose {
            id,
            data: data.clone(),
        })
        .await
    }

    /// Proposes a membership change (a ConfChangeV2 whose context describes the member).
    pub async fn propose_conf_change(
        &self,
        kind: crate::proto::metastorepb::member_change::Kind,
        member: MemberRecord,
    ) -> Result<Applied> {
        use crate::proto::metastorepb::member_change::Kind;
        use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
        let id = self.ids.next();
        let change_type = match kind {
            Kind::Add if member.is_learner => ConfChangeType::AddLearnerNode,
            Kind::Add | Kind::Promote => ConfChangeType::AddNode,
            Kind::Remove => ConfChangeType::RemoveNode,
            Kind::Update => return Err(Error::Internal("update is not a conf change".into())),
        };
        let node_id = member.id;
        let context = InternalRequest {
            id,
            request: Some(Request::MemberChange(
                crate::proto::metastorepb::MemberChange {
                    kind: kind as i32,
                    member: Some(member),
                },
            )),
        }
        .encode_to_vec();
        self.submit(id, |id| {
            let mut single = ConfChangeSingle::default();
            single.set_change_type(change_type);
            single.node_id = node_id;
            let mut cc = ConfChangeV2::default();
            cc.mut_changes().push(single);
            NodeMsg::ProposeConfChange {
                id,
                context: context.clone(),
                cc,
            }
        })
        .await
    }

    async fn submit(&self, id: u64, msg: impl Fn(u64) -> NodeMsg) -> Result<Applied> {
        let status = &self.raft.status;
        if status.commit().saturating_sub(self.applied_index()) > MAX_GAP_BETWEEN_APPLY_AND_COMMIT {
            return Err(Error::TooManyRequests);
        }
        let deadline = Instant::now() + self.cfg.request_timeout();
        loop {
            let rx = self.waits.register(id);
            if let Err(e) = self.raft.send(msg(id)) {
                self.waits.cancel(id);
                return Err(e);
            }
            match timeout_at(deadline, rx).await {
                Ok(Ok(Err(Error::NoLeader | Error::LeaderChanged))) => {
                    // Refused before it entered the log: safe to propose again once there is a leader.
                    if Instant::now() + self.cfg.heartbeat >= deadline {
                        return Err(Error::TimeoutDueToLeaderFail);
                    }
                    tokio::time::sleep(self.cfg.heartbeat).await;
                }
                Ok(Ok(result)) => return result,
                Ok(Err(_)) => return Err(Error::Stopped),
                Err(_) => {
                    self.waits.cancel(id);
                    return Err(if status.leader() == 0 {
                        Error::TimeoutDueToLeaderFail
                    } else {
                        Error::Timeout
                    });
                }
            }
        }
    }

    /// etcd's per-request checks before any work: `hasleader` metadata needs a leader; a learner
    /// serves only Status and serializable Range (`learner_ok`).
    pub fn guard(&self, md: &tonic::metadata::MetadataMap, learner_ok: bool) -> Result<()> {
        if self.raft.status.is_learner() && !learner_ok {
            return Err(Error::NotSupportedForLearner);
        }
        let wants_leader = md
            .get("hasleader")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "true");
        if wants_leader && self.raft.status.leader() == 0 {
            return Err(Error::NoLeader);
        }
        Ok(())
    }

    /// The leader's replication progress (None when this member is not the leader).
    pub async fn progress(&self) -> Result<Option<crate::raft::node::GroupProgress>> {
        let (tx, rx) = oneshot::channel();
        self.raft.send(NodeMsg::Progress(tx))?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Waits until this member has applied everything committed when the call began (ReadIndex).
    pub async fn read_barrier(&self) -> Result<()> {
        if crate::failpoints::armed("stale-reads") {
            return Ok(());
        }
        let deadline = Instant::now() + self.cfg.request_timeout();
        loop {
            let (tx, rx) = oneshot::channel();
            self.raft.send(NodeMsg::ReadIndex(tx))?;
            let index = match timeout_at(deadline, rx).await {
                Err(_) => return Err(Error::Timeout),
                Ok(Err(_)) => return Err(Error::Stopped),
                Ok(Ok(Ok(index))) => index,
                Ok(Ok(Err(e))) => {
                    if Instant::now() + self.cfg.heartbeat >= deadline {
                        return Err(e);
                    }
                    // No leader yet or the round was dropped: try a new round after a heartbeat.
                    tokio::time::sleep(self.cfg.heartbeat).await;
                    continue;
                }
            };
            let mut applied = self.applied.clone();
            return match timeout_at(deadline, applied.wait_for(|&a| a >= index)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(_)) => Err(Error::Stopped),
                Err(_) => Err(Error::Timeout),
            };
        }
    }

    /// Runs blocking work (RocksDB reads outside the MVCC snapshot path) on the blocking pool.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| Error::Internal(format!("blocking task: {e}")))?
    }

    /// Runs a read on a snapshot of the committed state, on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&ReadView<'_>) -> Result<T> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.with_view(f))
            .await
            .map_err(|e| Error::Internal(format!("read task: {e}")))?
    }
}
