//! A fresh data dir's identity: bootstrap a new cluster from the initial-cluster flags, join an
//! existing one, or (`--force-new-cluster`) shrink a stopped member's cluster to itself. These are the
//! only writes to replicated state outside apply, made before raft starts.

use super::*;

/// `--force-new-cluster` on a member with data: it becomes the only voter and the only member
/// record (its id, the cluster id and the keyspace are kept), as etcd's disaster recovery does.
pub(super) fn force_new_cluster(db: &Db, raft_storage: &RaftStorage, me: u64) -> Result<()> {
    let applied = db.get_u64(CF_META, META_APPLIED_INDEX)?;
    raft_storage.force_single_voter(me, applied)?;
    let mut batch = Batch::new();
    let mut removed = Vec::new();
    for m in cluster::list_records(db)? {
        if m.id != me {
            cluster::delete_member(&mut batch, m.id);
            removed.push(format!("{:x}", m.id));
        }
    }
    db.write(batch, true)?;
    tracing::warn!(member_id = %format!("{me:x}"), ?removed,
        "forcing a new one-member cluster (--force-new-cluster): the other members were removed");
    Ok(())
}

/// Writes the initial membership of a new cluster.
pub(super) fn bootstrap(cfg: &Config, db: &Db, raft_storage: &RaftStorage) -> Result<(u64, u64)> {
    let mut names: Vec<String> = Vec::new();
    for (n, _) in &cfg.initial_cluster {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let mut members = Vec::new();
    for n in &names {
        let urls: Vec<String> = cfg
            .initial_cluster
            .iter()
            .filter(|(m, _)| m == n)
            .map(|(_, u)| u.clone())
            .collect();
        members.push(MemberRecord {
            id: cluster::member_id(&urls, &cfg.initial_cluster_token),
            name: n.clone(),
            peer_urls: urls,
            client_urls: Vec::new(),
            is_learner: false,
        });
    }
    let local = members.iter().find(|m| m.name == cfg.name).ok_or_else(|| {
        Error::Internal(format!(
            "couldn't find local name {:?} in the initial cluster configuration",
            cfg.name
        ))
    })?;
    let mut want = cfg.initial_advertise_peer_urls.clone();
    want.sort();
    let mut have = local.peer_urls.clone();
    have.sort();
    if want != have {
        return Err(Error::Internal(format!(
            "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} (\"{}\"(resolved from {:?}) != \"{}\"(resolved from {:?}))",
            cfg.name, have.join(","), want.join(","), want.join(","), want, have.join(","), have
        )));
    }
    let member_id = local.id;
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let cluster_id = cluster::cluster_id(&ids);
    // Raft's initial state first: this member counts as bootstrapped once its ids are written below.
    raft_storage.bootstrap(ids)?;
    let mut batch = Batch::new();
    for m in &members {
        cluster::put_member(&mut batch, m);
    }
    // The initial state stands for raft index 1 (see RaftStorage::bootstrap).
    batch.put(CF_META, META_APPLIED_INDEX, encode_u64(1));
    batch.put(CF_META, META_APPLIED_TERM, encode_u64(1));
    batch.put(CF_LOCAL, LOCAL_MEMBER_ID, encode_u64(member_id));
    batch.put(CF_LOCAL, LOCAL_CLUSTER_ID, encode_u64(cluster_id));
    db.write(batch, true)?;
    tracing::info!(member_id = %format!("{member_id:x}"), cluster_id = %format!("{cluster_id:x}"),
        "bootstrapped a new cluster");
    Ok((member_id, cluster_id))
}

/// Asks the members named in --initial-cluster for the cluster id and the member list.
pub(super) fn fetch_cluster(
    cfg: &Config,
    rt: &tokio::runtime::Handle,
    dialer: &Dialer,
) -> Result<MembersResponse> {
    let others: Vec<String> = cfg
        .initial_cluster
        .iter()
        .filter(|(_, u)| !cfg.initial_advertise_peer_urls.contains(u))
        .map(|(_, u)| u.clone())
        .collect();
    if others.is_empty() {
        return Err(Error::Internal(
            "--initial-cluster-state existing needs the other members in --initial-cluster".into(),
        ));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let resp = loop {
        if let Some(r) = rt.block_on(fetch_members(dialer, &others)) {
            break r;
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Internal(format!(
                "could not reach any member of the existing cluster at {others:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    Ok(resp)
}

/// Joins an existing cluster described by `resp` (its id and members): finds this member (added
/// before with MemberAdd) by its peer URLs. The state itself arrives as a snapshot from the leader.
pub(super) fn join(cfg: &Config, db: &Db, resp: MembersResponse) -> Result<(u64, u64)> {
    let mut want = cfg.initial_advertise_peer_urls.clone();
    want.sort();
    let me = resp
        .members
        .iter()
        .find(|m| {
            let mut have = m.peer_urls.clone();
            have.sort();
            have == want
        })
        .ok_or_else(|| {
            Error::Internal(format!(
                "member {:?} with peer URLs {want:?} has not been added to the cluster (add it with `etcdctl member add` first)",
                cfg.name
            ))
        })?;
    let (member_id, cluster_id) = (me.id, resp.cluster_id);
    let mut batch = Batch::new();
    // Know the peers before the leader's snapshot arrives (it replaces this list).
    for m in &resp.members {
        cluster::put_member(&mut batch, m);
    }
    batch.put(CF_LOCAL, LOCAL_MEMBER_ID, encode_u64(member_id));
    batch.put(CF_LOCAL, LOCAL_CLUSTER_ID, encode_u64(cluster_id));
    db.write(batch, true)?;
    tracing::info!(member_id = %format!("{member_id:x}"), cluster_id = %format!("{cluster_id:x}"),
        "joining an existing cluster");
    Ok((member_id, cluster_id))
}
