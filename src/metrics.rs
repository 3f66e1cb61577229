//! The member's metrics, exported on `/metrics` under etcd's names, for the dashboards and alerts built
//! on etcd's. Families live in the `prometheus` crate's types; this module owns the per-member
//! [`Registry`] and etcd's bucket layout, and renders Prometheus' text format.
//!
//! Each family is created by the module that records it and registered here by the server at start-up
//! (the raft log's `etcd_disk_wal_fsync_duration_seconds`, MVCC's put/delete/range/txn counters and
//! `etcd_disk_backend_commit_duration_seconds`, the gRPC layer's `grpc_server_*` families); the gauges
//! that are readings of state (leader, sizes, revisions) are set when `/metrics` is read.
//!
//! Invariants: nothing here is process-global (two members in one process keep separate registries);
//! recording never blocks (atomic adds inside the crate's types).

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// etcd's buckets for its disk durations: 1 ms doubling to 8.192 s.
pub const DISK_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

/// A duration histogram over etcd's disk buckets.
pub fn disk_histogram(name: &str, help: &str) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(DISK_BUCKETS.to_vec()))
        .unwrap_or_else(|_| unreachable_metric(name))
}

/// A counter.
pub fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).unwrap_or_else(|_| unreachable_metric(name))
}

/// A gauge.
pub fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).unwrap_or_else(|_| unreachable_metric(name))
}

/// The crate refuses only malformed names and help texts; ours are constants checked by the tests.
fn unreachable_metric(name: &str) -> ! {
    panic!("metric {name}: invalid name or help text")
}

fn gauge_vec(name: &str, help: &str, label: &str) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), &[label]).unwrap_or_else(|_| unreachable_metric(name))
}

/// etcd's gauges that are readings of the member's state, set when `/metrics` is read.
pub struct StateGauges {
    pub has_leader: IntGauge,
    pub is_leader: IntGauge,
    pub is_learner: IntGauge,
    pub server_id: IntGaugeVec,
    pub server_version: IntGaugeVec,
    pub cluster_version: IntGaugeVec,
    pub proposals_pending: IntGauge,
    pub proposals_committed: IntGauge,
    pub proposals_applied: IntGauge,
    pub quota_backend_bytes: IntGauge,
    pub db_total_size: IntGauge,
    pub db_in_use: IntGauge,
    pub current_revision: IntGauge,
    pub compact_revision: IntGauge,
}

impl StateGauges {
    fn new() -> StateGauges {
        StateGauges {
            has_leader: gauge(
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            ),
            is_leader: gauge(
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            is_learner: gauge(
                "etcd_server_is_learner",
                "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            ),
            server_id: gauge_vec(
                "etcd_server_id",
                "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
                "server_id",
            ),
            server_version: gauge_vec(
                "etcd_server_version",
                "Which version is running. 1 for 'server_version' label with current version.",
                "server_version",
            ),
            cluster_version: gauge_vec(
                "etcd_cluster_version",
                "Which version is running. 1 for 'cluster_version' label with current cluster version",
                "cluster_version",
            ),
            proposals_pending: gauge(
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            ),
            proposals_committed: gauge(
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            ),
            proposals_applied: gauge(
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            ),
            quota_backend_bytes: gauge(
                "etcd_server_quota_backend_bytes",
                "Current backend storage quota size in bytes.",
            ),
            db_total_size: gauge(
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            db_in_use: gauge(
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            ),
            current_revision: gauge(
                "etcd_debugging_mvcc_current_revision",
                "The current revision of store.",
            ),
            compact_revision: gauge(
                "etcd_debugging_mvcc_compact_revision",
                "The revision of the last compaction in store.",
            ),
        }
    }

    fn register(&self, m: &Metrics) {
        for g in [
            &self.has_leader,
            &self.is_leader,
            &self.is_learner,
            &self.proposals_pending,
            &self.proposals_committed,
            &self.proposals_applied,
            &self.quota_backend_bytes,
            &self.db_total_size,
            &self.db_in_use,
            &self.current_revision,
            &self.compact_revision,
        ] {
            m.register(g);
        }
        for v in [&self.server_id, &self.server_version, &self.cluster_version] {
            m.register(v);
        }
    }
}

/// One member's registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// The state readings (registered in `registry`).
    pub state: Arc<StateGauges>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry holding the state gauges; owners register their families with [`Metrics::register`].
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::new(),
            state: Arc::new(StateGauges::new()),
        };
        m.state.register(&m);
        m
    }

    /// Adds a family; a second family of the same name is refused (and logged).
    pub fn register<C: prometheus::core::Collector + Clone + 'static>(&self, c: &C) {
        if let Err(e) = self.registry.register(Box::new(c.clone())) {
            tracing::warn!(error = %e, "metric not registered");
        }
    }

    /// Every family in Prometheus' text format (version 0.0.4), sorted by name.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn histograms_have_etcds_buckets_and_two_registries_are_separate() {
        let (a, b) = (Metrics::new(), Metrics::new());
        let h = disk_histogram("x_seconds", "help");
        a.register(&h);
        for d in [
            Duration::from_micros(500),
            Duration::from_millis(3),
            Duration::from_secs(10),
        ] {
            h.observe(d.as_secs_f64());
        }
        let other = disk_histogram("x_seconds", "help");
        b.register(&other);
        let out = a.render();
        let lines: Vec<&str> = out.lines().collect();
        for want in [
            "# TYPE x_seconds histogram",
            "x_seconds_bucket{le=\"0.001\"} 1",
            "x_seconds_bucket{le=\"0.002\"} 1",
            "x_seconds_bucket{le=\"0.004\"} 2",
            "x_seconds_bucket{le=\"8.192\"} 2",
            "x_seconds_bucket{le=\"+Inf\"} 3",
            "x_seconds_sum 10.0035",
            "x_seconds_count 3",
        ] {
            assert!(lines.contains(&want), "{want} in {out}");
        }
        assert!(b.render().contains("x_seconds_count 0"), "{}", b.render());
        // A duplicate name is refused, not panicked on.
        a.register(&other);
        assert!(a.render().contains("x_seconds_count 3"));
    }
}
