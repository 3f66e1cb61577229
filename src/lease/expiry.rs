//! The leader's lease expiry loop: every 100 ms, while this member leads, the leases whose expiry
//! passed are revoked through the log (at most 100 per turn, 1,000 per second, as etcd), so that
//! every member deletes their keys in the same revision. A member that becomes leader first extends
//! the leases set before it took over (`Lessor::promote`).
//!
//! Invariant: one revoke in flight per lease; one that has not been applied within the request
//! timeout is proposed again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Lessor;

/// What the loop needs from the member.
pub struct Expiry<R> {
    pub lessor: Arc<Lessor>,
    /// `Some(since)` while this member leads (since when), `None` otherwise.
    pub leading: Box<dyn Fn() -> Option<Instant> + Send + Sync>,
    /// How long a new leader extends the leases it inherits.
    pub election_timeout: Duration,
    /// How long a proposed revoke may take before it is proposed again.
    pub request_timeout: Duration,
    /// Proposes the revoke of one lease (run in its own task).
    pub revoke: R,
}

impl<R, F> Expiry<R>
where
    R: Fn(i64) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let tick = Duration::from_millis(100);
        let mut was_leader = false;
        let mut revoking: HashMap<i64, Instant> = HashMap::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.wait_for(|&s| s) => return,
            }
            let leading = (self.leading)();
            if let (Some(since), false) = (leading, was_leader) {
                // Only leases last set before this member took over are extended: one granted or
                // renewed since (e.g. right after start-up, before this loop's first turn) keeps
                // its TTL.
                self.lessor.promote(self.election_timeout, since);
                revoking.clear();
            }
            was_leader = leading.is_some();
            if !was_leader {
                continue;
            }
            revoking.retain(|_, at| at.elapsed() < self.request_timeout);
            for id in self.lessor.expired(100) {
                if revoking.contains_key(&id) {
                    continue;
                }
                revoking.insert(id, Instant::now());
                tokio::spawn((self.revoke)(id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test(start_paused = true)]
    async fn only_the_leader_revokes_and_each_lease_once_per_timeout() {
        let lessor = Arc::new(Lessor::empty());
        lessor.granted(7, 0);
        let leads = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let l = leads.clone();
        let started = Instant::now();
        let e = Expiry {
            lessor: lessor.clone(),
            leading: Box::new(move || l.load(Ordering::SeqCst).then_some(started)),
            election_timeout: Duration::ZERO,
            request_timeout: Duration::from_secs(5),
            revoke: move |id| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(id);
                }
            },
        };
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(e.run(stop));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(rx.try_recv().is_err(), "a follower revokes nothing");
        leads.store(true, Ordering::SeqCst);
        assert_eq!(rx.recv().await, Some(7));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(rx.try_recv().is_err(), "one revoke in flight per lease");
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
