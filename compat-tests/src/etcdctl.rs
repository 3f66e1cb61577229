//! `etcdctl` 3.4 (v3 API) against one endpoint.

use std::time::Duration;

use crate::process::{run, CmdOutput};
use crate::target::etcdctl_binary;

/// How long one etcdctl invocation may take before it is killed (etcdctl's own command timeout is 5 s).
pub const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `etcdctl --endpoints=<endpoint> <args>` with `ETCDCTL_API=3` (other `ETCDCTL_*` variables of the
/// test environment are removed), feeding `stdin` if given.
pub async fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> CmdOutput {
    etcdctl_bin(&etcdctl_binary(), endpoint, args, stdin).await
}

/// [`etcdctl`] with another etcdctl binary (e.g. 3.5.1, `target::etcdctl35_binary`).
pub async fn etcdctl_bin(
    bin: &std::path::Path,
    endpoint: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> CmdOutput {
    let mut cmd = tokio::process::Command::new(bin);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCDCTL_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args);
    run(cmd, stdin, ETCDCTL_TIMEOUT).await
}
