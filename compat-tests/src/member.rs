//! One server process (metastore or etcd) with its own ports, temp data dir and log file.
//!
//! [`MemberConfig`] is the pure description of a member (name, ports, data dir, initial cluster, extra
//! flags and environment) and renders the command line; it knows nothing about processes, so a later
//! cluster type can build several configs sharing one `--initial-cluster`. [`Member`] owns the child
//! process and the temp dir; [`MemberBuilder`] picks free ports and starts it.
//!
//! Invariants:
//! - Only the child this `Member` spawned is ever signalled, by its PID, and only while it has not been
//!   reaped (so the PID cannot have been recycled). Dropping a `Member` kills and reaps its child.
//! - stdout and stderr of every run go to one log file in the temp dir (appended across restarts, with
//!   a marker line per start). When a test panics while a member is alive, the log tail is printed.
//! - Readiness is a bounded poll (60 s): the member is ready once `Maintenance.Status` through
//!   `etcd-client` succeeds and reports a leader, and `Cluster.MemberList` lists this member's peer
//!   URL (so a foreign server on a reused port is never mistaken for ours). No fixed sleeps.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};
use tempfile::TempDir;

use crate::etcdctl;
use crate::ports::free_ports;
use crate::process::{run, CmdOutput};
use crate::target::Target;

/// How long a member may take to become ready.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a member may take to exit after SIGTERM.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval between readiness / exit polls.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Lines of log printed on failure.
const LOG_TAIL_LINES: usize = 80;
/// Attempts at starting with fresh ports when the server could not bind.
const BIND_ATTEMPTS: usize = 5;

/// Everything needed to render a member's command line. Independent of any process.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// Which binary to run.
    pub target: Target,
    /// `--name`.
    pub name: String,
    /// Port of the client URL `http://127.0.0.1:<client_port>`.
    pub client_port: u16,
    /// Port of the peer URL `http://127.0.0.1:<peer_port>`.
    pub peer_port: u16,
    /// `http`, `https` (peer TLS) or `unix` (a socket, see `peer_url`) for the peer URLs.
    pub peer_scheme: &'static str,
    /// A second client URL, `https://127.0.0.1:<port>`, when the member serves client TLS.
    pub tls_client_port: Option<u16>,
    /// The peer port advertised to the others when it differs from the listening one (a proxy).
    pub advertised_peer_port: Option<u16>,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--initial-cluster` (for one member: `<name>=<peer url>`).
    pub initial_cluster: String,
    /// Flags appended after the standard ones, e.g. `["--max-txn-ops", "4"]`.
    pub extra_args: Vec<String>,
    /// A unix socket the member also listens on for clients (`unix://<path>`), if any.
    pub client_socket: Option<PathBuf>,
    /// Environment variables set for the child (e.g. `ETCD_MAX_TXN_OPS=4`). A standard flag whose
    /// `ETCD_*` variable is set here is left off the command line (etcd refuses a flag and its variable
    /// together).
    pub envs: Vec<(String, String)>,
}

impl MemberConfig {
    /// `http://127.0.0.1:<client_port>`.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client URL, and the unix socket's URL when there is one.
    pub fn listen_client_urls(&self) -> String {
        let mut urls = self.client_url();
        if let Some(p) = &self.client_socket {
            urls.push_str(&format!(",unix://{}", p.display()));
        }
        if let Some(u) = self.tls_client_url() {
            urls.push(',');
            urls.push_str(&u);
        }
        urls
    }

    /// `https://127.0.0.1:<tls_client_port>` when the member serves client TLS.
    pub fn tls_client_url(&self) -> Option<String> {
        self.tls_client_port
            .map(|p| format!("https://127.0.0.1:{p}"))
    }

    /// `http://127.0.0.1:<peer_port>`.
    /// With `peer_scheme` `unix`, a socket next to the data dir.
    pub fn peer_url(&self) -> String {
        if self.peer_scheme == "unix" {
            return self.listen_peer_url();
        }
        format!(
            "{}://127.0.0.1:{}",
            self.peer_scheme,
            self.advertised_peer_port.unwrap_or(self.peer_port)
        )
    }

    /// The URL the member listens on for peers.
    pub fn listen_peer_url(&self) -> String {
        if self.peer_scheme == "unix" {
            return format!("unix://{}.peer.sock", self.data_dir.display());
        }
        format!("{}://127.0.0.1:{}", self.peer_scheme, self.peer_port)
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The standard flags as (flag, value) pairs, in order.
    pub fn standard_flags(&self) -> Vec<(&'static str, String)> {
        vec![
            ("--name", self.name.clone()),
            ("--data-dir", self.data_dir.display().to_string()),
            ("--listen-client-urls", self.listen_client_urls()),
            ("--advertise-client-urls", self.client_url()),
            ("--listen-peer-urls", self.listen_peer_url()),
            ("--initial-advertise-peer-urls", self.peer_url()),
            ("--initial-cluster", self.initial_cluster.clone()),
        ]
    }

    /// The full argument list: standard flags (minus those given as `ETCD_*` env) then `extra_args`.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, value) in self.standard_flags() {
            let var = flag_env_var(flag);
            if self.envs.iter().any(|(k, _)| *k == var) {
                continue;
            }
            args.push(flag.to_string());
            args.push(value);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// A `std::process::Command` for this member: binary, args, env (inherited `ETCD_*` variables of
    /// the test environment are removed so they cannot leak into the server).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(self.target.binary());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(&k);
            }
        }
        cmd.args(self.args());
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd
    }
}

/// `--max-txn-ops` → `ETCD_MAX_TXN_OPS`.
pub fn flag_env_var(flag: &str) -> String {
    format!(
        "ETCD_{}",
        flag.trim_start_matches('-')
            .replace('-', "_")
            .to_uppercase()
    )
}

/// Builds and starts a single-member cluster.
#[derive(Debug, Clone)]
pub struct MemberBuilder {
    target: Target,
    name: String,
    extra_args: Vec<String>,
    envs: Vec<(String, String)>,
    client_socket: bool,
    tls_client: bool,
}

impl Default for MemberBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl MemberBuilder {
    /// Member `m1` of the target selected by `COMPAT_TARGET`, no extra flags.
    pub fn new() -> Self {
        MemberBuilder {
            target: Target::current(),
            name: "m1".to_string(),
            extra_args: Vec::new(),
            envs: Vec::new(),
            client_socket: false,
            tls_client: false,
        }
    }

    /// Also listen for clients on `https://127.0.0.1:<port>` (the TLS flags come as extra args);
    /// the plain client URL stays, for the readiness probe.
    pub fn tls_client(mut self) -> Self {
        self.tls_client = true;
        self
    }

    /// Also listen for clients on a unix socket in the member's temp dir (`client.sock`).
    pub fn client_socket(mut self) -> Self {
        self.client_socket = true;
        self
    }

    /// Overrides the target (default: `COMPAT_TARGET`).
    pub fn target(mut self, target: Target) -> Self {
        self.target = target;
        self
    }

    /// Member name (default `m1`). Also used in `--initial-cluster`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Appends one extra command-line argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Appends extra command-line arguments, e.g. `["--max-txn-ops", "4"]`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the server. `ETCD_NAME` also sets the member name (and drops
    /// `--name` from the command line).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        if key == "ETCD_NAME" {
            self.name = value.clone();
        }
        self.envs.push((key, value));
        self
    }

    fn config(&self, dir: &Path) -> MemberConfig {
        let ports = free_ports(3);
        let peer_url = format!("http://127.0.0.1:{}", ports[1]);
        MemberConfig {
            peer_scheme: "http",
            tls_client_port: self.tls_client.then_some(ports[2]),
            target: self.target,
            name: self.name.clone(),
            client_port: ports[0],
            peer_port: ports[1],
            advertised_peer_port: None,
            data_dir: dir.join(format!("{}.etcd", self.name)),
            initial_cluster: format!("{}={}", self.name, peer_url),
            extra_args: self.extra_args.clone(),
            client_socket: self.client_socket.then(|| dir.join("client.sock")),
            envs: self.envs.clone(),
        }
    }

    /// Starts the member and waits until it serves requests (panics with the log tail otherwise).
    /// Retries with fresh ports if the server could not bind its ports.
    pub async fn start(self) -> Member {
        let dir = tempfile::Builder::new()
            .prefix("compat-")
            .tempdir()
            .expect("create temp dir");
        let log_path = dir.path().join(format!("{}.log", self.name));
        let mut last_failure = String::new();
        for attempt in 1..=BIND_ATTEMPTS {
            let config = self.config(dir.path());
            if config.data_dir.exists() {
                std::fs::remove_dir_all(&config.data_dir)
                    .expect("clear data dir of failed attempt");
            }
            let mut member = Member {
                config,
                log_path: log_path.clone(),
                child: None,
                dir: None,
            };
            member.spawn();
            match member.wait_ready(STARTUP_TIMEOUT).await {
                Ok(()) => {
                    member.dir = Some(dir);
                    return member;
                }
                Err(StartFailure::Exited(status)) => {
                    let log = member.log();
                    let bind_failed = log.to_lowercase().contains("address already in use");
                    last_failure = format!(
                        "{} exited during startup ({status}); log tail:\n{}",
                        member.config.target.binary().display(),
                        member.log_tail(LOG_TAIL_LINES)
                    );
                    if bind_failed && attempt < BIND_ATTEMPTS {
                        continue;
                    }
                    break;
                }
                Err(StartFailure::Timeout(why)) => {
                    let tail = member.log_tail(LOG_TAIL_LINES);
                    member.kill9();
                    panic!(
                        "member {} not ready within {STARTUP_TIMEOUT:?} (last error: {why}); log tail:\n{tail}",
                        member.config.name
                    );
                }
            }
        }
        panic!("could not start member: {last_failure}");
    }

    /// Runs the server with the standard flags plus the extra ones and expects it to exit on its own
    /// within `timeout` (for invalid command lines). Output is captured, not logged.
    pub async fn run_to_exit(self, timeout: Duration) -> CmdOutput {
        let dir = tempfile::Builder::new()
            .prefix("compat-")
            .tempdir()
            .expect("create temp dir");
        let config = self.config(dir.path());
        let cmd = tokio::process::Command::from(config.command());
        run(cmd, None, timeout).await
    }
}

enum StartFailure {
    Exited(ExitStatus),
    Timeout(String),
}

/// A running (or stopped) server process started by this harness.
pub struct Member {
    config: MemberConfig,
    log_path: PathBuf,
    child: Option<Child>,
    /// Owns the data dir and the log; `None` only while starting.
    dir: Option<TempDir>,
}

impl Member {
    /// The configuration, to adjust before the first start.
    pub fn config_mut(&mut self) -> &mut MemberConfig {
        &mut self.config
    }

    /// A configured member that is not running yet (a cluster spawns all members, then waits).
    pub fn configured(config: MemberConfig, log_path: PathBuf) -> Member {
        Member {
            config,
            log_path,
            child: None,
            dir: None,
        }
    }

    /// Starts the process without waiting for it to serve.
    pub fn spawn_process(&mut self) {
        self.spawn();
    }

    /// Waits until the member serves (Status with a leader, and it lists itself); panics with the log
    /// tail otherwise.
    pub async fn wait_serving(&mut self) {
        match self.wait_ready(STARTUP_TIMEOUT).await {
            Ok(()) => {}
            Err(StartFailure::Exited(status)) => panic!(
                "member {} exited during startup ({status}); log tail:\n{}",
                self.config.name,
                self.log_tail(LOG_TAIL_LINES)
            ),
            Err(StartFailure::Timeout(why)) => panic!(
                "member {} not ready within {STARTUP_TIMEOUT:?} (last error: {why}); log tail:\n{}",
                self.config.name,
                self.log_tail(LOG_TAIL_LINES)
            ),
        }
    }

    /// One readiness probe, as a bool.
    pub async fn probe_ready(&self) -> bool {
        self.probe().await.is_ok()
    }

    /// True when the process exited during start-up because a port was taken.
    pub fn exited_on_bind_failure(&mut self) -> bool {
        !self.is_running() && self.log().to_lowercase().contains("address already in use")
    }

    /// Sends a signal to the process (e.g. SIGSTOP/SIGCONT to partition it).
    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on a child process this harness started.
            unsafe {
                libc::kill(pid as i32, sig);
            }
        }
    }

    /// Starts member `m1` of the configured target with the standard flags.
    pub async fn start() -> Member {
        MemberBuilder::new().start().await
    }

    /// A builder for extra flags, environment, name.
    pub fn builder() -> MemberBuilder {
        MemberBuilder::new()
    }

    /// The member's configuration (ports, data dir, flags).
    pub fn config(&self) -> &MemberConfig {
        &self.config
    }

    /// `127.0.0.1:<client port>`.
    pub fn endpoint(&self) -> String {
        self.config.endpoint()
    }

    /// `http://127.0.0.1:<client port>` (the advertised client URL).
    pub fn client_url(&self) -> String {
        self.config.client_url()
    }

    /// `http://127.0.0.1:<peer port>` (the advertised peer URL).
    pub fn peer_url(&self) -> String {
        self.config.peer_url()
    }

    /// The member name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The log file (stdout + stderr of every run).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// PID of the running child, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A fresh `etcd-client` connected to this member (10 s request timeout).
    pub async fn client(&self) -> Client {
        self.client_with(ConnectOptions::new().with_timeout(Duration::from_secs(10)))
            .await
    }

    /// A client of this member with a 1 s connect timeout and `timeout` per request.
    pub async fn client_timeout(&self, timeout: Duration) -> Client {
        self.client_with(
            ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(1))
                .with_timeout(timeout),
        )
        .await
    }

    /// A fresh `etcd-client` with the given options.
    pub async fn client_with(&self, options: ConnectOptions) -> Client {
        Client::connect([self.endpoint()], Some(options))
            .await
            .expect("etcd-client connect")
    }

    /// Runs `etcdctl --endpoints=<this member> <args>`.
    pub async fn etcdctl(&self, args: &[&str]) -> CmdOutput {
        etcdctl::etcdctl(&self.endpoint(), args, None).await
    }

    /// Runs `etcdctl --endpoints=<this member> <args>` with `stdin`.
    pub async fn etcdctl_stdin(&self, args: &[&str], stdin: &str) -> CmdOutput {
        etcdctl::etcdctl(&self.endpoint(), args, Some(stdin)).await
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Polls the log until it contains `needle` or `timeout` passes; returns whether it was found.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// True while the child has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    /// SIGKILL the child and reap it. No-op if it is not running.
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        // std's Child::kill sends SIGKILL to exactly this (unreaped) PID.
        let _ = child.kill();
        Some(child.wait().expect("wait for killed child"))
    }

    /// SIGTERM the child and wait (bounded) for it to exit; returns its exit status. Panics (after
    /// SIGKILL) if it does not exit within the deadline.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("terminate: member is not running");
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: plain syscall; `child` is not reaped yet, so `pid` is still our child.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM): {}", std::io::Error::last_os_error());
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "member {} did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM; log tail:\n{}",
                    self.config.name,
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Starts the member again with the same data dir, ports and flags (terminating it first if it is
    /// still running) and waits until it is ready.
    pub async fn restart(&mut self) {
        if self.is_running() {
            self.terminate().await;
        }
        self.child = None;
        self.spawn();
        match self.wait_ready(STARTUP_TIMEOUT).await {
            Ok(()) => {}
            Err(StartFailure::Exited(status)) => panic!(
                "member {} exited during restart ({status}); log tail:\n{}",
                self.config.name,
                self.log_tail(LOG_TAIL_LINES)
            ),
            Err(StartFailure::Timeout(why)) => panic!(
                "member {} not ready within {STARTUP_TIMEOUT:?} after restart (last error: {why}); log tail:\n{}\nthreads:\n{}",
                self.config.name,
                self.log_tail(LOG_TAIL_LINES),
                self.stacks()
            ),
        }
    }

    /// Every thread's stack of the running process (gdb, when the machine has it), for a member that
    /// is stuck.
    pub fn stacks(&self) -> String {
        let Some(pid) = self.pid() else {
            return "(not running)".into();
        };
        let out = std::process::Command::new("timeout")
            .args([
                "60",
                "gdb",
                "-p",
                &pid.to_string(),
                "-batch",
                "-ex",
                "thread apply all bt 25",
            ])
            .output();
        match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("Thread") || l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("(no gdb: {e})"),
        }
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "spawn: a child is already running");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open member log");
        let mut cmd = self.config.command();
        writeln!(log, "=== compat-tests: starting {cmd:?}").expect("write log");
        let err_log: File = log.try_clone().expect("clone log fd");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        self.child = Some(child);
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), StartFailure> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    self.child = None;
                    return Err(StartFailure::Exited(status));
                }
            }
            let last_error = match self.probe().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(StartFailure::Timeout(last_error));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// One readiness probe: Maintenance.Status must succeed and report a leader, and MemberList must
    /// list our peer URL.
    async fn probe(&self) -> Result<(), String> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2));
        let mut client = Client::connect([self.endpoint()], Some(options))
            .await
            .map_err(|e| e.to_string())?;
        let status = client.status().await.map_err(|e| e.to_string())?;
        if status.leader() == 0 {
            return Err("Status reports no leader yet".to_string());
        }
        // Make sure we reached our own process, not another test's server that grabbed the same
        // (briefly free) client port: its member list would not contain our peer URL.
        if status.is_learner() {
            // A learner refuses MemberList (etcd's rule); Status answering as a learner is enough.
            return Ok(());
        }
        let members = client.member_list().await.map_err(|e| e.to_string())?;
        let peer_url = self.peer_url();
        if !members
            .members()
            .iter()
            .any(|m| m.peer_urls().contains(&peer_url))
        {
            return Err(format!(
                "the server on {} does not list our peer URL {peer_url}",
                self.endpoint()
            ));
        }
        Ok(())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- log tail of member {} ({}) -----\n{}\n----- end of log -----",
                self.config.name,
                self.log_path.display(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        self.kill9();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(envs: Vec<(String, String)>) -> MemberConfig {
        MemberConfig {
            peer_scheme: "http",
            tls_client_port: None,
            target: Target::Etcd,
            name: "m1".into(),
            client_port: 1111,
            peer_port: 2222,
            advertised_peer_port: None,
            data_dir: PathBuf::from("/tmp/x/m1.etcd"),
            initial_cluster: "m1=http://127.0.0.1:2222".into(),
            extra_args: vec!["--max-txn-ops".into(), "4".into()],
            client_socket: None,
            envs,
        }
    }

    #[test]
    fn flag_to_env_var() {
        assert_eq!(flag_env_var("--max-txn-ops"), "ETCD_MAX_TXN_OPS");
        assert_eq!(flag_env_var("--name"), "ETCD_NAME");
    }

    #[test]
    fn args_render_standard_flags_then_extras() {
        let c = config(Vec::new());
        assert_eq!(c.endpoint(), "127.0.0.1:1111");
        assert_eq!(
            c.args(),
            [
                "--name",
                "m1",
                "--data-dir",
                "/tmp/x/m1.etcd",
                "--listen-client-urls",
                "http://127.0.0.1:1111",
                "--advertise-client-urls",
                "http://127.0.0.1:1111",
                "--listen-peer-urls",
                "http://127.0.0.1:2222",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2222",
                "--initial-cluster",
                "m1=http://127.0.0.1:2222",
                "--max-txn-ops",
                "4",
            ]
        );
    }

    #[test]
    fn env_replaces_its_flag() {
        let c = config(vec![("ETCD_NAME".into(), "m1".into())]);
        let args = c.args();
        assert!(!args.iter().any(|a| a == "--name"));
        assert!(args.iter().any(|a| a == "--initial-cluster"));
    }

    #[test]
    fn builder_env_name_sets_member_name() {
        let b = MemberBuilder::new().env("ETCD_NAME", "envname");
        let dir = tempfile::tempdir().unwrap();
        let c = b.config(dir.path());
        assert_eq!(c.name, "envname");
        assert!(c.initial_cluster.starts_with("envname=http://127.0.0.1:"));
        assert_ne!(c.client_port, c.peer_port);
    }
}
