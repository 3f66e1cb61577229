//! The initial corruption check (`--experimental-initial-corrupt-check`), as etcd runs it: before a
//! member serves clients it compares its HashKV with every peer's at its own current revision, and a
//! member whose hash differs from a peer's with the same compaction revision refuses to start.
//!
//! Invariants: peers that cannot be reached, are behind (future revision) or compacted past the
//! revision only cause warnings (the check cannot decide, so it does not refuse); only a proven
//! mismatch stops the member. Hashes are compared between metastore members only.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::mvcc::hash::hash_kv;
use crate::mvcc::store::check_revision;
use crate::mvcc::Store;
use crate::server::EtcdServer;

/// This member's (hash, compact revision as HashKV reports it) at `revision` (0: current).
pub fn local_hash(store: &Store, revision: i64) -> Result<(u32, i64)> {
    store.with_view(|v| {
        let rev = check_revision(v, revision)?;
        let compact = if v.compact == 0 { -1 } else { v.compact };
        Ok((hash_kv(v, rev)?, compact))
    })
}

/// Compares this member's hash with its peers'; an error when a peer proves the data differs.
pub async fn initial_check(server: &EtcdServer, timeout: Duration) -> Result<()> {
    let me = format!("{:x}", server.member_id());
    tracing::info!(local_member_id = %me, "starting initial corruption check");
    let rev = server.store().current_revision();
    let store = server.store().clone();
    let (hash, compact) = tokio::task::spawn_blocking(move || local_hash(&store, rev))
        .await
        .map_err(|e| Error::Internal(format!("hash task: {e}")))?
        .map_err(|e| Error::Internal(format!("{me} failed to fetch hash ({e})")))?;
    let peers = server
        .blocking(crate::cluster::list_records)
        .await?
        .into_iter()
        .filter(|m| m.id != server.member_id());
    let mut mismatches = 0;
    for p in peers {
        let peer = format!("{:x}", p.id);
        match crate::raft::transport::fetch_hash_kv(
            server.transport().dialer(),
            &p.peer_urls,
            rev,
            timeout,
        )
        .await
        {
            Some(Ok(r)) if r.hash == hash => {}
            Some(Ok(r)) if r.compact_revision == compact => {
                tracing::warn!(local_member_id = %me, remote_peer_id = %peer, revision = rev,
                    local_hash = hash, remote_hash = r.hash, compact_revision = compact,
                    "found different hash values from remote peer");
                mismatches += 1;
            }
            Some(Ok(r)) => {
                tracing::warn!(local_member_id = %me, remote_peer_id = %peer, revision = rev,
                    local_compact_revision = compact, remote_compact_revision = r.compact_revision,
                    "found different compact revision values from remote peer");
            }
            Some(Err(st)) if st.message() == Error::FutureRev.to_string() => {
                tracing::warn!(local_member_id = %me, remote_peer_id = %peer, revision = rev,
                    "cannot fetch hash from slow remote peer");
            }
            Some(Err(st)) if st.message() == Error::Compacted.to_string() => {
                tracing::warn!(local_member_id = %me, remote_peer_id = %peer, revision = rev,
                    "cannot fetch hash from remote peer; local member is behind");
            }
            Some(Err(st)) => {
                tracing::warn!(local_member_id = %me, remote_peer_id = %peer, error = %st,
                    "cannot fetch hash from remote peer");
            }
            None => {
                tracing::warn!(local_member_id = %me, remote_peer_id = %peer,
                    "cannot reach remote peer for the corruption check");
            }
        }
    }
    if mismatches > 0 {
        return Err(Error::Internal(format!(
            "{me} found data inconsistency with peers"
        )));
    }
    tracing::info!(local_member_id = %me, "initial corruption checking passed; no corruption");
    Ok(())
}
