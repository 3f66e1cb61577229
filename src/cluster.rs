//! Cluster identity and membership records.
//!
//! Member and cluster ids are derived the way etcd derives them, so that a metastore member started
//! with the same flags as an etcd member reports the same ids: a member id is the first 8 bytes
//! (big-endian) of SHA-1 over its sorted peer URLs and the cluster token; the cluster id is the same over
//! the sorted member ids. Members live in the `members` CF and change only in apply.

use prost::Message;
use sha1::{Digest, Sha1};

use crate::error::Result;
use crate::proto::etcdserverpb::Member;
use crate::proto::metastorepb::MemberRecord;
use crate::storage::{encode_u64, Batch, Db, CF_MEMBERS};

/// `local` CF names of this member's identity (local: never replicated, never in a snapshot).
pub const LOCAL_CLUSTER_ID: &[u8] = b"cluster_id";
pub const LOCAL_MEMBER_ID: &[u8] = b"member_id";

fn sha1_u64(b: &[u8]) -> u64 {
    let h = Sha1::digest(b);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h[..8]);
    u64::from_be_bytes(first)
}

/// etcd's member id for a set of peer URLs and a cluster token.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut b = urls.concat().into_bytes();
    b.extend_from_slice(token.as_bytes());
    sha1_u64(&b)
}

/// etcd's cluster id for a set of member ids.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let b: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    sha1_u64(&b)
}

/// Adds a member record to a write batch.
pub fn put_member(batch: &mut Batch, m: &MemberRecord) {
    batch.put(CF_MEMBERS, encode_u64(m.id), m.encode_to_vec());
}

/// Removes a member record in a write batch.
pub fn delete_member(batch: &mut Batch, id: u64) {
    batch.delete(CF_MEMBERS, encode_u64(id));
}

/// Reads one member.
pub fn get_member(db: &Db, id: u64) -> Result<Option<MemberRecord>> {
    match db.get(CF_MEMBERS, &encode_u64(id))? {
        Some(b) => Ok(Some(MemberRecord::decode(b.as_slice())?)),
        None => Ok(None),
    }
}

/// All member records, sorted by id (the CF key order).
pub fn list_records(db: &Db) -> Result<Vec<MemberRecord>> {
    let mut it = db.cursor(CF_MEMBERS, None)?;
    it.seek(&[]);
    let mut out = Vec::new();
    while let Some(v) = it.value() {
        out.push(MemberRecord::decode(v)?);
        it.next();
    }
    it.status()?;
    Ok(out)
}

/// All members as the etcd API shows them, sorted by id.
pub fn list_members(db: &Db) -> Result<Vec<Member>> {
    Ok(list_records(db)?
        .into_iter()
        .map(|r| Member {
            id: r.id,
            name: r.name,
            peer_ur_ls: r.peer_urls,
            client_ur_ls: r.client_urls,
            is_learner: r.is_learner,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_etcds_defaults() {
        // etcd started with no flags: name "default", peer http://localhost:2380, token etcd-cluster.
        let id = member_id(&["http://localhost:2380".to_string()], "etcd-cluster");
        assert_eq!(format!("{id:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[id])), "cdf818194e3a8c32");
    }
}
