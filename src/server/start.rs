//! Starting a member: open the data dir, finish an interrupted snapshot install, give it its identity
//! (`bootstrap.rs`), start the raft and apply threads on the chosen network; and the member's
//! background tasks (publishing its attributes, lease expiry).

use super::bootstrap::{bootstrap, fetch_cluster, force_new_cluster, join};
use super::*;

impl EtcdServer {
    /// Opens or bootstraps the member and starts its raft and apply threads. Runs on a blocking
    /// thread; `rt` runs the peer transport.
    pub fn start(
        cfg: Config,
        rt: tokio::runtime::Handle,
        dialer: Dialer,
    ) -> Result<Arc<EtcdServer>> {
        EtcdServer::start_on(cfg, rt, dialer, None)
    }

    /// Starts a member whose raft talks to its peers over the in-process network `net` (unit tests
    /// of several members in one process); a joining member learns the cluster from `net`.
    pub fn start_in_process(
        cfg: Config,
        rt: tokio::runtime::Handle,
        net: &MemNetwork,
    ) -> Result<Arc<EtcdServer>> {
        EtcdServer::start_on(cfg, rt, Dialer::default(), Some(net))
    }

    fn start_on(
        cfg: Config,
        rt: tokio::runtime::Handle,
        dialer: Dialer,
        memnet: Option<&MemNetwork>,
    ) -> Result<Arc<EtcdServer>> {
        let db = Db::open(&cfg.data_dir)?;
        let log_db = Rocks::open_log(&cfg.data_dir)?;
        let snap_dir = cfg.data_dir.join("snap");
        // Finish a snapshot install that a crash interrupted.
        if let Some(dir) = db.get(CF_LOCAL, checkpoint::INSTALLING)? {
            let dir = std::path::PathBuf::from(String::from_utf8_lossy(&dir).to_string());
            tracing::warn!(dir = %dir.display(), "redoing an interrupted snapshot install");
            checkpoint::install(&db, &dir)?;
        }
        let raft_storage = RaftStorage::open(log_db.clone(), db.clone(), snap_dir.clone())?;
        let (member_id, cluster_id) = match db.get(CF_LOCAL, LOCAL_MEMBER_ID)? {
            Some(m) => {
                let m = crate::storage::decode_u64(&m);
                let c = db.get_u64(CF_LOCAL, LOCAL_CLUSTER_ID)?;
                tracing::info!(member_id = %format!("{m:x}"), cluster_id = %format!("{c:x}"),
                    "restarting member from its data dir (initial-cluster flags ignored)");
                if cfg.force_new_cluster {
                    force_new_cluster(&db, &raft_storage, m)?;
                }
                (m, c)
            }
            None if cfg.initial_cluster_state == ClusterState::Existing => {
                let resp = match memnet {
                    Some(net) => net.members().ok_or_else(|| {
                        Error::Internal("no member of the in-process cluster to join".into())
                    })?,
                    None => fetch_cluster(&cfg, &rt, &dialer)?,
                };
                join(&cfg, &db, resp)?
            }
            None => bootstrap(&cfg, &db, &raft_storage)?,
        };
        // Applied state may be ahead of the log (snapshot installed, log not yet restarted).
        let applied = db.get_u64(CF_META, META_APPLIED_INDEX)?;
        let applied_term = db.get_u64(CF_META, META_APPLIED_TERM)?;
        if raft_storage.reconcile_with_applied(applied, applied_term)? {
            tracing::warn!(
                applied,
                "raft log restarted after the applied snapshot state"
            );
        }
        let transport = Transport::new(cluster_id, member_id, rt, snap_dir.clone(), dialer);
        let network: Arc<dyn Network> = match memnet {
            Some(net) => {
                let link = net.link(member_id, &snap_dir);
                net.register_state(member_id, db.clone(), cluster_id);
                Arc::new(link)
            }
            None => Arc::new(transport.clone()),
        };
        let peers: Vec<(u64, Vec<String>)> = cluster::list_records(&db)?
            .into_iter()
            .map(|m| (m.id, m.peer_urls))
            .collect();
        network.set_peers(&peers);
        let conf = raft_storage.conf_state();
        let metrics = crate::metrics::Metrics::new();
        let store = Store::open(db.clone())?;
        store.metrics.register(&metrics);
        metrics.register(raft_storage.wal_fsync());
        let compactor = Compactor::start(db.clone())?;
        let watch_hub = WatchHub::new(store.clone())?;
        let applied = stored_applied_index(&store)?;
        let lessor = Arc::new(crate::lease::Lessor::load(&db)?);
        let alarms = crate::alarm::AlarmSet::load(&db)?;
        let alarm_view = crate::alarm::AlarmView::new(&alarms);
        let waits: Arc<Wait<ApplyResult>> = Arc::new(Wait::default());
        let (apply_tx, apply_rx) = mpsc::channel();
        let (applied_tx, applied_rx) = watch::channel(applied);
        let drop_waits = waits.clone();
        let (raft, raft_join) = raftmod::node::start(
            NodeConfig {
                id: member_id,
                heartbeat: cfg.heartbeat,
                election_ticks: cfg.election_ticks(),
                applied,
            },
            raft_storage,
            &raftmod::logger(),
            apply_tx,
            Box::new(move |id, err| {
                drop_waits.trigger(id, Err(err));
            }),
            network.clone(),
        )?;
        metrics.register(&raft.status.leader_changes);
        raft.status.is_learner.store(
            conf.learners.contains(&member_id),
            std::sync::atomic::Ordering::Release,
        );
        let applier = Applier {
            store: store.clone(),
            waits: waits.clone(),
            compactor: compactor.clone(),
            watch_hub: watch_hub.clone(),
            raft: raft.clone(),
            transport: network.clone(),
            lessor: lessor.clone(),
            applied_tx,
            snapshot_count: cfg.snapshot_count,
            catchup_entries: cfg.snapshot_catchup_entries,
            applied,
            last_log_compaction: applied,
            alarms,
            alarm_view: alarm_view.clone(),
        };
        let apply_join = std::thread::Builder::new()
            .name("apply".into())
            .spawn(move || applier.run(apply_rx))
            .map_err(|e| Error::Internal(format!("spawn apply thread: {e}")))?;
        let quota = crate::quota::Quota::new(db.clone(), cfg.quota_backend_bytes);
        Ok(Arc::new(EtcdServer {
            cfg,
            db,
            log_db,
            store,
            raft,
            compactor,
            watch_hub,
            transport,
            network,
            lessor,
            alarms: alarm_view,
            member_id,
            cluster_id,
            waits,
            ids: IdGen::new(member_id),
            applied: applied_rx,
            threads: parking_lot::Mutex::new(vec![raft_join, apply_join]),
            quota,
            defrag_lock: tokio::sync::Mutex::new(()),
            metrics,
        }))
    }

    /// Publishes this member's name and client URLs through raft, retried until it is applied: a
    /// member whose peers start late keeps trying until it is stopped, as etcd does.
    pub async fn publish(&self) {
        let mut attempt: u64 = 0;
        loop {
            let req = Request::MemberAttributes(MemberAttributes {
                member_id: self.member_id,
                name: self.cfg.name.clone(),
                client_urls: self.cfg.advertise_client_urls.clone(),
            });
            match self.propose(req).await {
                Ok(_) => {
                    // etcd's wording: operators and etcd's own test harness wait for these lines.
                    tracing::info!(
                        local_member_id = %format!("{:x}", self.member_id),
                        cluster_id = %format!("{:x}", self.cluster_id),
                        client_urls = ?self.cfg.advertise_client_urls,
                        "published local member to cluster through raft"
                    );
                    tracing::info!(
                        cluster_version = crate::config::ETCD_API_VERSION,
                        "enabled capabilities for version {}",
                        crate::config::ETCD_API_VERSION
                    );
                    return;
                }
                Err(e) => {
                    attempt += 1;
                    // The first failures are normal while the peers come up.
                    if attempt >= 2 {
                        tracing::warn!(error = %e, attempt,
                            "failed to publish local member to cluster through raft, retrying");
                    } else {
                        tracing::debug!(error = %e, "publish not applied yet, retrying");
                    }
                    tokio::time::sleep(self.cfg.heartbeat).await;
                }
            }
        }
    }

    /// Expires leases while this member leads (`lease::expiry`), revoking them through raft.
    pub async fn run_lease_expiry(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let me = self.clone();
        let revoke = move |id: i64| {
            let me = me.clone();
            async move {
                let req =
                    Request::LeaseRevoke(crate::proto::etcdserverpb::LeaseRevokeRequest { id });
                if let Err(e) = me.propose(req).await {
                    if e != Error::LeaseNotFound {
                        tracing::warn!(lease = id, error = %e, "revoking an expired lease failed");
                    }
                }
            }
        };
        let status = self.raft.status.clone();
        let member_id = self.member_id;
        crate::lease::expiry::Expiry {
            lessor: self.lessor.clone(),
            leading: Box::new(move || {
                (status.leader() == member_id).then(|| {
                    status
                        .leading_since()
                        .unwrap_or_else(std::time::Instant::now)
                })
            }),
            election_timeout: self.cfg.election_timeout,
            request_timeout: self.cfg.request_timeout(),
            revoke,
        }
        .run(stop)
        .await
    }
}
