//! Leases: their records, their TTL rules, who expires them and when.
//!
//! `records` owns the `lease` column family (records and key attachments, replicated state written by
//! apply through the MVCC write batch); `expiry` is the leader's expiry loop; this file keeps the
//! in-memory expiry times ([`Lessor`]) and etcd's TTL bounds. Followers forward KeepAlive and
//! TimeToLive to the leader (`api/forward.rs`). Expiry is not replicated: every member keeps an expiry time per lease in memory, but only the leader acts on it, by
//! proposing a LeaseRevoke through the log, so the keys are deleted (and watchers see the deletes) on
//! every member in the same revision. Keep-alives renew the expiry on the leader only.
//!
//! Invariant: a member that becomes leader first pushes every expiry to at least TTL + election timeout
//! from now (`promote`), so no lease expires before its TTL since the last keep-alive that any leader
//! acknowledged.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::Result;
use crate::storage::Db;

pub mod expiry;
pub mod records;

/// etcd's largest lease TTL in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// etcd's smallest TTL: 1.5 election timeouts, rounded up to whole seconds.
pub fn min_ttl(election_timeout: Duration) -> i64 {
    let ms = election_timeout.as_millis() as i64;
    ((3 * ms / 2) + 999) / 1000
}

struct Lease {
    ttl: i64,
    expiry: Instant,
    /// When `expiry` was last set from the TTL (grant, renew, load).
    set_at: Instant,
}

impl Lease {
    fn new(ttl: i64) -> Lease {
        Lease {
            ttl,
            expiry: after(ttl, Duration::ZERO),
            set_at: Instant::now(),
        }
    }
}

/// In-memory expiry bookkeeping for every lease.
pub struct Lessor {
    leases: Mutex<HashMap<i64, Lease>>,
}

fn after(secs: i64, extend: Duration) -> Instant {
    Instant::now() + Duration::from_secs(secs.max(0) as u64) + extend
}

impl Lessor {
    /// Loads every lease from the database with a full TTL from now.
    pub fn load(db: &Db) -> Result<Lessor> {
        let l = Lessor::empty();
        l.reload(db)?;
        Ok(l)
    }

    /// No leases.
    pub fn empty() -> Lessor {
        Lessor {
            leases: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the bookkeeping with the database's leases (after a snapshot install).
    pub fn reload(&self, db: &Db) -> Result<()> {
        let recs = records::all_leases(db)?;
        let mut m = self.leases.lock();
        m.clear();
        for r in recs {
            m.insert(r.id, Lease::new(r.ttl));
        }
        Ok(())
    }

    /// A grant was applied.
    pub fn granted(&self, id: i64, ttl: i64) {
        self.leases.lock().insert(id, Lease::new(ttl));
    }

    /// A revoke was applied.
    pub fn revoked(&self, id: i64) {
        self.leases.lock().remove(&id);
    }

    /// This member became leader at `since`: every lease last set before then gets its full TTL
    /// plus `extend` from now (a keep-alive the old leader acknowledged may not have reached this
    /// member). A lease granted or renewed since is already this leader's own and keeps its expiry.
    pub fn promote(&self, extend: Duration, since: Instant) {
        for l in self.leases.lock().values_mut() {
            if l.set_at < since {
                l.expiry = after(l.ttl, extend);
                l.set_at = Instant::now();
            }
        }
    }

    /// Renews a lease (on the leader); its TTL, or None when it does not exist.
    pub fn renew(&self, id: i64) -> Option<i64> {
        let mut m = self.leases.lock();
        let l = m.get_mut(&id)?;
        l.expiry = after(l.ttl, Duration::ZERO);
        l.set_at = Instant::now();
        Some(l.ttl)
    }

    /// (granted TTL, remaining seconds) of a lease.
    pub fn remaining(&self, id: i64) -> Option<(i64, i64)> {
        let m = self.leases.lock();
        let l = m.get(&id)?;
        let left = l.expiry.saturating_duration_since(Instant::now()).as_secs() as i64;
        Some((l.ttl, left))
    }

    /// Leases whose expiry has passed, at most `limit` of them.
    pub fn expired(&self, limit: usize) -> Vec<i64> {
        let now = Instant::now();
        self.leases
            .lock()
            .iter()
            .filter(|(_, l)| l.expiry <= now)
            .map(|(id, _)| *id)
            .take(limit)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ttl_is_one_and_a_half_election_timeouts_in_whole_seconds() {
        assert_eq!(min_ttl(Duration::from_millis(1000)), 2);
        assert_eq!(min_ttl(Duration::from_millis(100)), 1);
        assert_eq!(min_ttl(Duration::from_millis(2000)), 3);
    }

    #[test]
    fn renew_promote_and_expire() {
        let l = Lessor {
            leases: Mutex::new(HashMap::new()),
        };
        l.granted(1, 0);
        l.granted(2, 60);
        assert_eq!(l.expired(10), vec![1]);
        assert_eq!(l.renew(2), Some(60));
        assert_eq!(l.renew(3), None);
        l.promote(Duration::from_secs(1), Instant::now());
        assert!(l.expired(10).is_empty());
        let (ttl, left) = l.remaining(2).unwrap();
        assert_eq!(ttl, 60);
        assert!((59..=61).contains(&left));
        l.revoked(2);
        assert_eq!(l.remaining(2), None);
    }

    /// A lease granted after this member became leader is not extended when the promotion is
    /// noticed later (e.g. right after start-up): it expires after its TTL, not TTL + extend.
    #[test]
    fn promote_extends_only_leases_set_before_the_leadership() {
        let l = Lessor {
            leases: Mutex::new(HashMap::new()),
        };
        l.granted(1, 3);
        let since = Instant::now();
        l.granted(2, 3);
        l.promote(Duration::from_secs(10), since);
        let (_, left_old) = l.remaining(1).unwrap();
        let (_, left_new) = l.remaining(2).unwrap();
        assert!((12..=13).contains(&left_old), "{left_old}");
        assert!((2..=3).contains(&left_new), "{left_new}");
    }
}
