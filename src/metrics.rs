//! Process-wide duration histograms exported on `/metrics` under etcd's names, for the dashboards and
//! alerts built on etcd's: the raft log's synced write (`etcd_disk_wal_fsync_duration_seconds`) and
//! apply's state write (`etcd_disk_backend_commit_duration_seconds`).
//!
//! Recording is two relaxed atomic adds and a bucket increment; reading renders Prometheus' text
//! format with cumulative buckets. One member per process, so process-wide is per member.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// etcd's buckets for both: 1 ms doubling to 8.192 s.
const BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

/// A histogram of durations over `BUCKETS`.
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot counts those above every bound.
    counts: [AtomicU64; 15],
    sum_nanos: AtomicU64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram {
            counts: [const { AtomicU64::new(0) }; 15],
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.counts[slot].fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// Appends the histogram in Prometheus' text format.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[BUCKETS.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// The raft log's synced writes (entries and hard state, one per Ready that needs a sync).
pub static WAL_FSYNC: Histogram = Histogram::new();
/// Apply's writes of the state database (one per applied batch).
pub static BACKEND_COMMIT: Histogram = Histogram::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_count_everything() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.contains(&"x_bucket{le=\"0.001\"} 1"), "{out}");
        assert!(lines.contains(&"x_bucket{le=\"0.002\"} 1"), "{out}");
        assert!(lines.contains(&"x_bucket{le=\"0.004\"} 2"), "{out}");
        assert!(lines.contains(&"x_bucket{le=\"8.192\"} 2"), "{out}");
        assert!(lines.contains(&"x_bucket{le=\"+Inf\"} 3"), "{out}");
        assert!(lines.contains(&"x_sum 10.0035"), "{out}");
        assert!(lines.contains(&"x_count 3"), "{out}");
        assert!(lines.contains(&"# TYPE x histogram"), "{out}");
    }
}
