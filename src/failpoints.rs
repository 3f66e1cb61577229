//! Fail points for the robustness harness, compiled only with the `failpoints` cargo feature (release
//! builds do not have it; `scripts/test.sh` builds the tested binary with it). A fail point is armed
//! for the whole life of the process by naming it in `METASTORE_FAILPOINTS` (comma-separated) at
//! start-up; the start-up log lists the armed ones.
//!
//! Fail points:
//! * `stale-reads`: linearizable reads skip the read barrier (ReadIndex), so a member cut off from
//!   the leader answers them from its own, possibly stale, state: the bug the linearizability
//!   checker must catch.
//!
//! Invariant: without the feature, [`armed`] is `false` for every name and costs nothing.

/// Whether fail point `name` is armed in this process.
#[cfg(feature = "failpoints")]
pub fn armed(name: &str) -> bool {
    static ARMED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    ARMED
        .get_or_init(|| {
            let names: Vec<String> = std::env::var("METASTORE_FAILPOINTS")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if !names.is_empty() {
                tracing::warn!(failpoints = ?names, "failpoints armed");
            }
            names
        })
        .iter()
        .any(|n| n == name)
}

/// Whether fail point `name` is armed in this process (never: built without `failpoints`).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn armed(_name: &str) -> bool {
    false
}
