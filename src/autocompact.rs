//! etcd's auto-compaction (`--auto-compaction-mode`, `--auto-compaction-retention`): the leader proposes
//! Compact requests so that history is kept for a retention window and no longer.
//!
//! * periodic (retention a duration; a bare number means hours): the current revision is sampled every
//!   tenth of the compaction interval (the retention, at most 1 h); once the retention has passed
//!   since start, and then every compaction interval, the leader compacts at the oldest sample, which
//!   is the revision of one retention ago.
//! * revision (retention a number of revisions): every 5 minutes the leader compacts at the current
//!   revision minus the retention.
//!
//! Only the leader compacts (samples are taken on every member, as etcd does, so that a new leader
//! already has them). A revision that is already compacted counts as done. The compaction itself is
//! an ordinary proposal, applied by every member in log order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::Error;
use crate::proto::etcdserverpb::CompactionRequest;
use crate::proto::metastorepb::internal_request::Request;
use crate::server::EtcdServer;

/// What `--auto-compaction-mode` and `--auto-compaction-retention` ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Keep this much time of history.
    Periodic(Duration),
    /// Keep this many revisions of history.
    Revision(i64),
}

/// How often the revision mode compacts (etcd's fixed interval).
const REVISION_INTERVAL: Duration = Duration::from_secs(300);

impl Policy {
    /// Parses the two flags as etcd does; `None` when the retention is zero (auto-compaction off).
    pub fn parse(mode: &str, retention: &str) -> Result<Option<Policy>, String> {
        let retention = retention.trim();
        match mode {
            "periodic" => {
                let period = match retention.parse::<u64>() {
                    Ok(hours) => Duration::from_secs(hours.saturating_mul(3600)),
                    Err(_) => crate::duration::parse_go_duration(retention).map_err(|_| {
                        format!("--auto-compaction-retention: invalid duration {retention:?}")
                    })?,
                };
                Ok((!period.is_zero()).then_some(Policy::Periodic(period)))
            }
            "revision" => {
                let revs = retention.parse::<i64>().map_err(|_| {
                    format!("--auto-compaction-retention: invalid revision count {retention:?}")
                })?;
                if revs < 0 {
                    return Err(format!(
                        "--auto-compaction-retention: negative revision count {revs}"
                    ));
                }
                Ok((revs > 0).then_some(Policy::Revision(revs)))
            }
            other => Err(format!("unknown auto-compaction-mode {other:?}")),
        }
    }
}

/// The periodic mode's bookkeeping, driven by ticks so that it can be tested without waiting.
#[derive(Debug)]
struct Periodic {
    period: Duration,
    compact_interval: Duration,
    /// Revision samples, oldest first; the oldest is one period old once the ring is full.
    revs: VecDeque<i64>,
    retentions: usize,
    /// When the last compaction succeeded (start time before the first).
    last_success: Instant,
    /// The wait before the next compaction: the whole period first, then the compaction interval.
    base_interval: Duration,
    last_revision: i64,
}

impl Periodic {
    fn new(period: Duration, now: Instant) -> Periodic {
        let compact_interval = period.min(Duration::from_secs(3600));
        let retry = compact_interval / 10;
        let retentions = (period.as_nanos() / retry.as_nanos().max(1)) as usize + 1;
        Periodic {
            period,
            compact_interval,
            revs: VecDeque::with_capacity(retentions + 1),
            retentions,
            last_success: now,
            base_interval: period,
            last_revision: 0,
        }
    }

    fn retry_interval(&self) -> Duration {
        self.compact_interval / 10
    }

    /// Records the current revision (before each wait).
    fn sample(&mut self, rev: i64) {
        self.revs.push_back(rev);
        if self.revs.len() > self.retentions {
            self.revs.pop_front();
        }
    }

    /// After a wait: the revision to compact at now, if it is time.
    fn due(&mut self, now: Instant) -> Option<i64> {
        if now.duration_since(self.last_success) < self.base_interval {
            return None;
        }
        if self.base_interval == self.period {
            self.base_interval = self.compact_interval;
        }
        let rev = *self.revs.front()?;
        (rev != self.last_revision && rev > 0).then_some(rev)
    }

    fn done(&mut self, rev: i64, now: Instant) {
        self.last_revision = rev;
        self.last_success = now;
    }
}

/// The revision mode's decision at a tick: compact at `current - retention` unless that is not a
/// revision yet or was compacted at last time.
fn revision_due(current: i64, retention: i64, last: i64) -> Option<i64> {
    let rev = current - retention;
    (rev > 0 && rev != last).then_some(rev)
}

/// Proposes a compaction at `rev`; true when it is done (or was already).
async fn compact(server: &EtcdServer, rev: i64, mode: &str) -> bool {
    let started = Instant::now();
    let req = Request::Compaction(CompactionRequest {
        revision: rev,
        physical: false,
    });
    match server.propose(req).await {
        Ok(_) => {
            tracing::info!(
                revision = rev,
                mode,
                took_ms = started.elapsed().as_millis() as u64,
                "finished auto compaction"
            );
            true
        }
        Err(Error::Compacted) => true,
        Err(e) => {
            tracing::warn!(revision = rev, mode, error = %e, "auto compaction failed");
            false
        }
    }
}

/// Runs the policy until `stop` turns true.
pub async fn run(server: Arc<EtcdServer>, policy: Policy, mut stop: watch::Receiver<bool>) {
    let is_leader = |s: &EtcdServer| s.raft().status.leader() == s.member_id();
    match policy {
        Policy::Periodic(period) => {
            let mut p = Periodic::new(period, Instant::now());
            loop {
                p.sample(server.store().current_revision());
                tokio::select! {
                    _ = tokio::time::sleep(p.retry_interval()) => {}
                    _ = stop.wait_for(|&s| s) => return,
                }
                if !is_leader(&server) {
                    continue;
                }
                let now = Instant::now();
                if let Some(rev) = p.due(now) {
                    if compact(&server, rev, "periodic").await {
                        p.done(rev, now);
                    }
                }
            }
        }
        Policy::Revision(retention) => {
            let mut prev = 0;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(REVISION_INTERVAL) => {}
                    _ = stop.wait_for(|&s| s) => return,
                }
                if !is_leader(&server) {
                    continue;
                }
                let Some(rev) = revision_due(server.store().current_revision(), retention, prev)
                else {
                    continue;
                };
                if compact(&server, rev, "revision").await {
                    prev = rev;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_as_etcd_reads_them() {
        assert_eq!(Policy::parse("periodic", "0"), Ok(None));
        assert_eq!(
            Policy::parse("periodic", "1"),
            Ok(Some(Policy::Periodic(Duration::from_secs(3600))))
        );
        assert_eq!(
            Policy::parse("periodic", "30m"),
            Ok(Some(Policy::Periodic(Duration::from_secs(1800))))
        );
        assert_eq!(
            Policy::parse("revision", "1000"),
            Ok(Some(Policy::Revision(1000)))
        );
        assert_eq!(Policy::parse("revision", "0"), Ok(None));
        assert!(Policy::parse("revision", "1h").is_err());
        assert!(Policy::parse("periodic", "soon").is_err());
        assert!(Policy::parse("hourly", "1").is_err());
    }

    /// With a 10 s period: samples every second, the first compaction 10 s after start at the
    /// revision of 10 s ago, then one per 10 s, never twice at one revision.
    #[test]
    fn periodic_compacts_at_the_revision_of_one_period_ago() {
        let t0 = Instant::now();
        let mut p = Periodic::new(Duration::from_secs(10), t0);
        assert_eq!(p.retry_interval(), Duration::from_secs(1));
        let mut compacted = Vec::new();
        // The revision grows by 10 per second; one sample per second, as the runner takes them.
        for s in 0..=40u64 {
            p.sample(1 + 10 * s as i64);
            let now = t0 + Duration::from_secs(s + 1);
            if let Some(rev) = p.due(now) {
                p.done(rev, now);
                compacted.push((s + 1, rev));
            }
        }
        assert_eq!(compacted, vec![(10, 1), (20, 91), (30, 191), (40, 291)]);
        // Nothing written meanwhile: the same revision is not compacted again.
        let mut q = Periodic::new(Duration::from_secs(10), t0);
        let mut n = 0;
        for s in 0..=40u64 {
            q.sample(5);
            let now = t0 + Duration::from_secs(s + 1);
            if let Some(rev) = q.due(now) {
                q.done(rev, now);
                n += 1;
            }
        }
        assert_eq!(n, 1);
    }

    #[test]
    fn revision_mode_keeps_the_retention_and_never_repeats() {
        assert_eq!(revision_due(50, 100, 0), None);
        assert_eq!(revision_due(100, 100, 0), None);
        assert_eq!(revision_due(150, 100, 0), Some(50));
        assert_eq!(revision_due(150, 100, 50), None);
        assert_eq!(revision_due(151, 100, 50), Some(51));
    }

    /// A period over an hour compacts hourly at the revision of one period ago.
    #[test]
    fn long_periods_compact_hourly() {
        let t0 = Instant::now();
        let p = Periodic::new(Duration::from_secs(5 * 3600), t0);
        assert_eq!(p.compact_interval, Duration::from_secs(3600));
        assert_eq!(p.retry_interval(), Duration::from_secs(360));
        assert_eq!(p.retentions, 51);
    }
}
