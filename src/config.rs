//! Server configuration: etcd's flag names, defaults and `ETCD_*` environment variables.
//!
//! [`Flags`] is what the command line (or the environment) says; [`Config`] is the checked result the
//! server runs with. Defaults equal etcd's, so a deployment can swap the binary and keep its flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// The etcd server version metastore reports (Status.version, `--version`); a semver string because
/// clients (kube-apiserver) parse it to enable features.
pub const DEFAULT_ETCD_VERSION: &str = "3.5.17";
/// The etcd API version metastore serves.
pub const ETCD_API_VERSION: &str = "3.5";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClusterState {
    New,
    Existing,
}

/// etcd's server flags (each also read from `ETCD_<NAME>`).
#[derive(Debug, Clone, Args)]
pub struct Flags {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: <name>.etcd).
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// List of URLs to listen on for client traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub listen_client_urls: String,
    /// Extra URLs to serve /metrics and the health endpoints on (plain HTTP), e.g. for probes.
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS", default_value = "")]
    pub listen_metrics_urls: String,
    /// Serve the /v3/* JSON gateway on the client URLs (`--enable-grpc-gateway=false` turns it off).
    #[arg(
        long,
        env = "ETCD_ENABLE_GRPC_GATEWAY",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub enable_grpc_gateway: bool,
    /// This member's client URLs to advertise to the public.
    #[arg(
        long,
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub advertise_client_urls: String,
    /// List of URLs to listen on for peer traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub listen_peer_urls: String,
    /// This member's peer URLs to advertise to the rest of the cluster.
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping (default: <name>=<initial-advertise-peer-urls>).
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_STATE",
        value_enum,
        default_value = "new"
    )]
    pub initial_cluster_state: ClusterState,
    /// Initial cluster token for the cluster during bootstrap.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Number of committed transactions to trigger a raft log compaction.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Raft entries kept behind a log compaction, so that a slow follower catches up from the log
    /// instead of a snapshot.
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = 5_000
    )]
    pub experimental_snapshot_catchup_entries: u64,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: u64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: usize,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Duration of periodic watch progress notifications (Go duration syntax, e.g. 10m, 1s, 100ms;
    /// at least 100ms, 0 means the default). Also taken under etcd 3.4/3.5's name
    /// `--experimental-watch-progress-notify-interval`.
    #[arg(
        long,
        env = "ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL",
        alias = "experimental-watch-progress-notify-interval",
        default_value = "10m",
        value_parser = parse_go_duration
    )]
    pub watch_progress_notify_interval: Duration,
    /// Auto-compaction mode: periodic (retention is a duration) or revision (a revision count).
    #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// Auto-compaction retention: for periodic a Go duration or a number of hours, for revision a
    /// number of revisions; 0 turns auto-compaction off.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,
    /// Reject reconfiguration requests that would cause quorum loss (`--strict-reconfig-check=false`
    /// turns the check off).
    #[arg(
        long,
        env = "ETCD_STRICT_RECONFIG_CHECK",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub strict_reconfig_check: bool,
    /// Before serving, compare this member's HashKV with its peers' and refuse to start on a
    /// mismatch.
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub experimental_initial_corrupt_check: bool,
    /// Restart this member as a one-member cluster that keeps its data (disaster recovery after
    /// losing the majority for good).
    #[arg(
        long,
        env = "ETCD_FORCE_NEW_CLUSTER",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub force_new_cluster: bool,
    /// Maximum concurrent streams that each client connection can have (etcd's default: 2^32-1).
    #[arg(long, env = "ETCD_MAX_CONCURRENT_STREAMS", default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,
    /// etcd's YAML configuration file; when given, the other flags and the `ETCD_*` variables are
    /// ignored, as etcd ignores them.
    #[arg(long, env = "ETCD_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Path to the client server TLS cert file (https client URLs).
    #[arg(long, env = "ETCD_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file.
    #[arg(long, env = "ETCD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Path to the client server TLS trusted CA cert file (clients must present a certificate it
    /// signed).
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Require client certificates signed by --trusted-ca-file.
    #[arg(long, env = "ETCD_CLIENT_CERT_AUTH", default_value_t = false, num_args = 0..=1,
        default_missing_value = "true", action = clap::ArgAction::Set)]
    pub client_cert_auth: bool,
    /// Client TLS using a generated self-signed certificate.
    #[arg(long, env = "ETCD_AUTO_TLS", default_value_t = false, num_args = 0..=1,
        default_missing_value = "true", action = clap::ArgAction::Set)]
    pub auto_tls: bool,
    /// Path to the peer server TLS cert file (https peer URLs; also presented when dialing peers).
    #[arg(long, env = "ETCD_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Path to the peer server TLS key file.
    #[arg(long, env = "ETCD_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// Path to the peer server TLS trusted CA file (verifies the other members, both ways).
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Require peer client certificates signed by --peer-trusted-ca-file.
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", default_value_t = false, num_args = 0..=1,
        default_missing_value = "true", action = clap::ArgAction::Set)]
    pub peer_client_cert_auth: bool,
    /// Peer TLS using generated self-signed certificates.
    #[arg(long, env = "ETCD_PEER_AUTO_TLS", default_value_t = false, num_args = 0..=1,
        default_missing_value = "true", action = clap::ArgAction::Set)]
    pub peer_auto_tls: bool,
    /// Path to the client certificate revocation list (PEM): revoked client certificates are refused.
    #[arg(long, env = "ETCD_CLIENT_CRL_FILE")]
    pub client_crl_file: Option<PathBuf>,
    /// Path to the peer certificate revocation list (PEM).
    #[arg(long, env = "ETCD_PEER_CRL_FILE")]
    pub peer_crl_file: Option<PathBuf>,
    /// Allowed common name(s) of peers' client certificates (comma-separated).
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_CN", default_value = "")]
    pub peer_cert_allowed_cn: String,
    /// Allowed hostname(s) of peers' client certificates (comma-separated).
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_HOSTNAME", default_value = "")]
    pub peer_cert_allowed_hostname: String,
    /// Comma-separated TLS 1.2 cipher suites (Go's names) for client and peer TLS; empty: rustls's
    /// defaults.
    #[arg(long, env = "ETCD_CIPHER_SUITES", default_value = "")]
    pub cipher_suites: String,
    /// Minimum TLS version for client and peer TLS (TLS1.2 or TLS1.3).
    #[arg(long, env = "ETCD_TLS_MIN_VERSION", default_value = "")]
    pub tls_min_version: String,
    /// Maximum TLS version for client and peer TLS (TLS1.2 or TLS1.3; empty: the highest).
    #[arg(long, env = "ETCD_TLS_MAX_VERSION", default_value = "")]
    pub tls_max_version: String,
    /// Validity of the self-signed certificates of --auto-tls and --peer-auto-tls, in years.
    #[arg(long, env = "ETCD_SELF_SIGNED_CERT_VALIDITY", default_value_t = 1)]
    pub self_signed_cert_validity: u32,
    /// Log level: debug, info, warn, error, panic or fatal.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// The etcd server version to report (a semver string).
    #[arg(long, env = "METASTORE_ETCD_VERSION", default_value = DEFAULT_ETCD_VERSION)]
    pub etcd_version: String,
}

/// etcd's YAML configuration file (`--config-file`, `ETCD_CONFIG_FILE`) as the command line it
/// stands for: every key that names one of metastore's flags becomes `--key=value`. As in etcd, a
/// configuration file replaces the command line and the `ETCD_*` variables (the caller ignores
/// them). Keys of etcd's that metastore has no use for are accepted at their defaults (empty, `off`,
/// WAL/snapshot file retention, the logger); keys it cannot honour with a set value (TLS, v2,
/// discovery, proxy) are refused; unknown keys are ignored with a warning,
/// as etcd ignores them. Returns the flags and the notes to log about ignored keys.
pub fn args_from_config_file(path: &std::path::Path) -> Result<(Vec<String>, Vec<String>), String> {
    use serde_yaml::Value;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--config-file {}: {e}", path.display()))?;
    let doc: Value = serde_yaml::from_str(&text)
        .map_err(|e| format!("--config-file {}: {e}", path.display()))?;
    let map = match doc {
        Value::Mapping(m) => m,
        Value::Null => Default::default(),
        _ => {
            return Err(format!(
                "--config-file {}: not a YAML mapping",
                path.display()
            ))
        }
    };
    let flags: Vec<String> = <Flags as Args>::augment_args(clap::Command::new("metastore"))
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .filter(|f| f != "config-file")
        .collect();
    let scalar = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    };
    let is_unset = |v: &Value| match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Sequence(s) => s.is_empty(),
        Value::Mapping(m) => m
            .values()
            .all(|v| matches!(v, Value::Null | Value::Bool(false)) || v.as_str() == Some("")),
        _ => false,
    };
    let mut args = Vec::new();
    let mut notes = Vec::new();
    for (k, v) in &map {
        let Some(key) = k.as_str() else {
            return Err(format!("--config-file: key {k:?} is not a string"));
        };
        if flags.iter().any(|f| f == key) {
            if matches!(v, Value::Null) {
                continue;
            }
            let value = match v {
                Value::Sequence(items) => items
                    .iter()
                    .filter_map(scalar)
                    .collect::<Vec<_>>()
                    .join(","),
                other => scalar(other)
                    .ok_or_else(|| format!("--config-file: {key}: unsupported value {other:?}"))?,
            };
            if value.is_empty() {
                continue;
            }
            args.push(format!("--{key}={value}"));
            continue;
        }
        let stderr_only = |v: &Value| {
            v.as_sequence()
                .is_some_and(|s| s.iter().all(|o| o.as_str() == Some("stderr")))
        };
        match key {
            // metastore logs to stderr, as etcd's defaults do.
            "logger" if v.as_str() == Some("zap") => {}
            "log-outputs" if stderr_only(v) => {}
            // File retention and logging set-up of etcd's own formats: nothing here to apply them to.
            "wal-dir" | "max-snapshots" | "max-wals" | "logger" | "log-outputs"
            | "enable-pprof" | "debug" | "cors" => {
                if !is_unset(v) {
                    notes.push(format!("{key} does not apply to metastore, ignored"));
                }
            }
            "discovery-fallback" if v.as_str() == Some("proxy") => {}
            "proxy" if v.as_str() == Some("off") => {}
            "proxy-failure-wait"
            | "proxy-refresh-interval"
            | "proxy-dial-timeout"
            | "proxy-write-timeout"
            | "proxy-read-timeout" => {}
            "enable-v2" => {
                if !is_unset(v) {
                    notes.push("enable-v2 is set, but metastore serves only the v3 API".into());
                }
            }
            "client-transport-security" | "peer-transport-security" => {
                let prefix = if key == "peer-transport-security" {
                    "peer-"
                } else {
                    ""
                };
                let Value::Mapping(section) = v else {
                    if is_unset(v) {
                        continue;
                    }
                    return Err(format!("--config-file: {key}: expected a mapping"));
                };
                for (sk, sv) in section {
                    let sk = sk.as_str().unwrap_or_default();
                    match sk {
                        "cert-file" | "key-file" | "trusted-ca-file" | "client-cert-auth"
                        | "auto-tls" | "crl-file" | "allowed-cn" | "allowed-hostname" => {
                            // etcd's YAML names these two in the section without the `cert-`.
                            let flag = match (prefix, sk) {
                                ("", "crl-file") => "client-crl-file".to_string(),
                                (_, "allowed-cn") => format!("{prefix}cert-allowed-cn"),
                                (_, "allowed-hostname") => format!("{prefix}cert-allowed-hostname"),
                                _ => format!("{prefix}{sk}"),
                            };
                            if let Some(value) = scalar(sv).filter(|_| !is_unset(sv)) {
                                args.push(format!("--{flag}={value}"));
                            }
                        }
                        _ if is_unset(sv) => {}
                        _ => {
                            return Err(format!(
                                "--config-file: {key}.{sk} is not supported by metastore yet (value {sv:?})"
                            ))
                        }
                    }
                }
            }
            "discovery" | "discovery-proxy" | "discovery-srv" | "discovery-fallback" | "proxy" => {
                if !is_unset(v) {
                    return Err(format!(
                        "--config-file: {key} is not supported by metastore yet (value {v:?})"
                    ));
                }
            }
            other => notes.push(format!("unknown key {other:?} ignored")),
        }
    }
    Ok((args, notes))
}

/// The checked configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client_urls: Vec<String>,
    /// Plain-HTTP URLs for /metrics and the health endpoints (may be empty).
    pub listen_metrics_urls: Vec<String>,
    pub enable_grpc_gateway: bool,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<String>,
    pub initial_advertise_peer_urls: Vec<String>,
    /// (name, peer URL) pairs; a name may appear several times.
    pub initial_cluster: Vec<(String, String)>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub heartbeat: Duration,
    pub election_timeout: Duration,
    pub snapshot_count: u64,
    pub snapshot_catchup_entries: u64,
    pub quota_backend_bytes: u64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub watch_progress_notify_interval: Duration,
    /// Refuse membership changes that a quorum of started members would not survive.
    pub strict_reconfig_check: bool,
    /// HTTP/2 streams per client connection.
    pub max_concurrent_streams: u32,
    /// Compare HashKV with the peers before serving.
    pub initial_corrupt_check: bool,
    /// TLS of the client URLs (`--cert-file`, ...).
    pub client_tls: crate::tls::TlsInfo,
    /// TLS of the peer URLs (`--peer-cert-file`, ...).
    pub peer_tls: crate::tls::TlsInfo,
    /// `--self-signed-cert-validity` in years.
    pub self_signed_cert_validity: u32,
    /// Restart as a one-member cluster keeping the data.
    pub force_new_cluster: bool,
    /// Auto-compaction, if any.
    pub auto_compaction: Option<crate::autocompact::Policy>,
    pub etcd_version: String,
}

/// 2 GiB, etcd's default backend quota.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// etcd's default and smallest watch progress notify intervals (smaller values are raised).
pub const DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);
pub const MIN_WATCH_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_millis(100);

pub use crate::duration::parse_go_duration;

fn url_list(flag: &str, s: &str) -> Result<Vec<String>, String> {
    checked_urls(flag, s, false)
}

/// Client and peer URLs may also be `unix://<socket path>` (etcd's form: `unix://localhost:2379` is
/// the socket `localhost:2379` in the working directory; `unix:///run/etcd.sock` an absolute path).
fn client_url_list(flag: &str, s: &str) -> Result<Vec<String>, String> {
    checked_urls(flag, s, true)
}

/// The socket path of a `unix://` URL (what follows the scheme, as etcd's dialer takes host and
/// path together), or None for other URLs.
pub fn unix_socket_path(u: &str) -> Option<&str> {
    u.strip_prefix("unix://").filter(|p| !p.is_empty())
}

fn checked_urls(flag: &str, s: &str, unix_ok: bool) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for u in s.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        if unix_ok && u.starts_with("unix://") {
            if unix_socket_path(u).is_none() {
                return Err(format!("--{flag}: unix URL without a socket path: {u:?}"));
            }
            out.push(u.to_string());
            continue;
        }
        let parsed = url::Url::parse(u).map_err(|e| format!("--{flag}: invalid URL {u:?}: {e}"))?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(format!("--{flag}: URL scheme must be http or https: {u:?}"));
        }
        if parsed.host_str().is_none() || parsed.port().is_none() {
            return Err(format!("--{flag}: URL must have a host and a port: {u:?}"));
        }
        out.push(u.to_string());
    }
    if out.is_empty() {
        return Err(format!("--{flag} must not be empty"));
    }
    Ok(out)
}

/// `urls` unchanged, or etcd's start-up error when one of them is `https://` and `tls` has no
/// material to serve it with.
fn https_needs_tls(
    urls: Vec<String>,
    tls: &crate::tls::TlsInfo,
    message: impl Fn(&str) -> String,
) -> Result<Vec<String>, String> {
    match urls.iter().find(|u| u.starts_with("https://")) {
        Some(u) if tls.is_empty() => Err(message(u)),
        _ => Ok(urls),
    }
}

impl Config {
    /// Checks the flags the way etcd does and fills derived defaults.
    pub fn from_flags(f: Flags) -> Result<Config, String> {
        if f.heartbeat_interval == 0 {
            return Err("--heartbeat-interval must be > 0".into());
        }
        if f.election_timeout < 5 * f.heartbeat_interval {
            return Err(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                f.election_timeout, f.heartbeat_interval
            ));
        }
        if f.max_txn_ops == 0 {
            return Err("--max-txn-ops must be > 0".into());
        }
        semver_ok(&f.etcd_version)?;
        let auto_compaction = crate::autocompact::Policy::parse(
            &f.auto_compaction_mode,
            &f.auto_compaction_retention,
        )?;
        let initial_advertise_peer_urls = client_url_list(
            "initial-advertise-peer-urls",
            &f.initial_advertise_peer_urls,
        )?;
        let list = |s: &str| -> Vec<String> {
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        };
        let client_tls = crate::tls::TlsInfo {
            cert_file: f.cert_file.clone(),
            key_file: f.key_file.clone(),
            trusted_ca_file: f.trusted_ca_file.clone(),
            client_cert_auth: f.client_cert_auth,
            auto_tls: f.auto_tls,
            crl_file: f.client_crl_file.clone(),
            allowed_cn: Vec::new(),
            allowed_hostname: Vec::new(),
            cipher_suites: list(&f.cipher_suites),
            min_version: f.tls_min_version.clone(),
            max_version: f.tls_max_version.clone(),
        };
        let peer_tls = crate::tls::TlsInfo {
            cert_file: f.peer_cert_file.clone(),
            key_file: f.peer_key_file.clone(),
            trusted_ca_file: f.peer_trusted_ca_file.clone(),
            client_cert_auth: f.peer_client_cert_auth,
            auto_tls: f.peer_auto_tls,
            crl_file: f.peer_crl_file.clone(),
            allowed_cn: list(&f.peer_cert_allowed_cn),
            allowed_hostname: list(&f.peer_cert_allowed_hostname),
            ..client_tls.clone()
        };
        if !peer_tls.allowed_cn.is_empty() && !peer_tls.allowed_hostname.is_empty() {
            return Err(format!(
                "--peer-cert-allowed-cn and --peer-cert-allowed-hostname are mutually exclusive (cn={:?}, hostname={:?})",
                f.peer_cert_allowed_cn, f.peer_cert_allowed_hostname
            ));
        }
        if f.self_signed_cert_validity == 0 {
            return Err("--self-signed-cert-validity must be at least 1 (years)".into());
        }
        let cluster_spec = f.initial_cluster.clone().unwrap_or_else(|| {
            initial_advertise_peer_urls
                .iter()
                .map(|u| format!("{}={u}", f.name))
                .collect::<Vec<_>>()
                .join(",")
        });
        let mut initial_cluster = Vec::new();
        for part in cluster_spec
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (name, u) = part
                .split_once('=')
                .ok_or_else(|| format!("--initial-cluster: expected name=url, got {part:?}"))?;
            let u = client_url_list("initial-cluster", u)?.remove(0);
            initial_cluster.push((name.to_string(), u));
        }
        Ok(Config {
            data_dir: f
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", f.name))),
            name: f.name,
            listen_client_urls: https_needs_tls(
                client_url_list("listen-client-urls", &f.listen_client_urls)?,
                &client_tls,
                |u| {
                    format!("TLS key/cert (--cert-file, --key-file) must be provided for client url {u} with HTTPS scheme")
                },
            )?,
            listen_metrics_urls: if f.listen_metrics_urls.trim().is_empty() {
                Vec::new()
            } else {
                https_needs_tls(
                    url_list("listen-metrics-urls", &f.listen_metrics_urls)?,
                    &client_tls,
                    |u| {
                        format!("TLS key/cert (--cert-file, --key-file) must be provided for metrics url {u} with HTTPS scheme")
                    },
                )?
            },
            enable_grpc_gateway: f.enable_grpc_gateway,
            advertise_client_urls: client_url_list(
                "advertise-client-urls",
                &f.advertise_client_urls,
            )?,
            listen_peer_urls: https_needs_tls(
                client_url_list("listen-peer-urls", &f.listen_peer_urls)?,
                &peer_tls,
                |u| {
                    format!("TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url {u} with HTTPS scheme (or --peer-auto-tls)")
                },
            )?,
            initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_state: f.initial_cluster_state,
            initial_cluster_token: f.initial_cluster_token,
            heartbeat: Duration::from_millis(f.heartbeat_interval),
            election_timeout: Duration::from_millis(f.election_timeout),
            snapshot_count: f.snapshot_count,
            snapshot_catchup_entries: f.experimental_snapshot_catchup_entries,
            quota_backend_bytes: if f.quota_backend_bytes == 0 {
                DEFAULT_QUOTA_BYTES
            } else {
                f.quota_backend_bytes
            },
            max_request_bytes: f.max_request_bytes,
            max_txn_ops: f.max_txn_ops,
            watch_progress_notify_interval: match f.watch_progress_notify_interval {
                d if d.is_zero() => DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL,
                d => d.max(MIN_WATCH_PROGRESS_NOTIFY_INTERVAL),
            },
            strict_reconfig_check: f.strict_reconfig_check,
            max_concurrent_streams: f.max_concurrent_streams.max(1),
            initial_corrupt_check: f.experimental_initial_corrupt_check,
            force_new_cluster: f.force_new_cluster,
            client_tls,
            peer_tls,
            self_signed_cert_validity: f.self_signed_cert_validity,
            auto_compaction,
            etcd_version: f.etcd_version,
        })
    }

    /// etcd's request timeout: 5 s plus two election timeouts.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + 2 * self.election_timeout
    }

    /// Election timeout in ticks of one heartbeat.
    pub fn election_ticks(&self) -> usize {
        (self.election_timeout.as_millis() / self.heartbeat.as_millis().max(1)) as usize
    }

    /// gRPC receive limit: max-request-bytes plus 512 KiB, as etcd sets it.
    pub fn max_recv_bytes(&self) -> usize {
        self.max_request_bytes + 512 * 1024
    }
}

fn semver_ok(v: &str) -> Result<(), String> {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.parse::<u64>().is_ok())
    {
        Ok(())
    } else {
        Err(format!(
            "--etcd-version must be a semver string like 3.5.17, got {v:?}"
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        f: Flags,
    }

    /// A configuration from etcd's flags, as the command line gives them.
    pub(crate) fn cfg(args: &[&str]) -> Result<Config, String> {
        let mut v = vec!["metastore"];
        v.extend_from_slice(args);
        Config::from_flags(T::try_parse_from(v).map_err(|e| e.to_string())?.f)
    }

    #[test]
    fn defaults_are_etcds() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
        assert_eq!(c.listen_client_urls, vec!["http://localhost:2379"]);
        assert_eq!(
            c.initial_cluster,
            vec![("default".to_string(), "http://localhost:2380".to_string())]
        );
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.max_txn_ops, 128);
        assert_eq!(c.election_ticks(), 10);
        assert_eq!(c.max_recv_bytes(), 2 * 1024 * 1024);
        assert_eq!(c.quota_backend_bytes, DEFAULT_QUOTA_BYTES);
    }

    #[test]
    fn watch_progress_notify_interval_takes_go_durations() {
        assert_eq!(
            cfg(&[]).unwrap().watch_progress_notify_interval,
            Duration::from_secs(600)
        );
        let d = |s: &str| {
            cfg(&["--watch-progress-notify-interval", s])
                .unwrap()
                .watch_progress_notify_interval
        };
        assert_eq!(d("1s"), Duration::from_secs(1));
        assert_eq!(d("1m30s"), Duration::from_secs(90));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("10ms"), Duration::from_millis(100));
        assert_eq!(d("0"), Duration::from_secs(600));
        let old_name = cfg(&["--experimental-watch-progress-notify-interval", "2s"]).unwrap();
        assert_eq!(
            old_name.watch_progress_notify_interval,
            Duration::from_secs(2)
        );
        assert_eq!(parse_go_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_go_duration("3us"), Ok(Duration::from_micros(3)));
        for bad in ["", "10", "1x", "s", "1.2.3s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_config_file_becomes_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.conf.yml");
        std::fs::write(
            &path,
            "name: 'm7'\ndata-dir:\nwal-dir:\nsnapshot-count: 10000\nheartbeat-interval: 100\n\
             listen-client-urls: http://localhost:2379,http://127.0.0.1:3379\n\
             strict-reconfig-check: false\nenable-v2: true\nproxy: 'off'\nmax-wals: 5\n\
             client-transport-security:\n  cert-file:\n  auto-tls: false\n\
             log-outputs: [stderr]\nauto-compaction-retention: \"1\"\n",
        )
        .unwrap();
        let (args, notes) = args_from_config_file(&path).unwrap();
        assert_eq!(
            notes,
            [
                "enable-v2 is set, but metastore serves only the v3 API",
                "max-wals does not apply to metastore, ignored"
            ]
        );
        assert_eq!(
            args,
            [
                "--name=m7",
                "--snapshot-count=10000",
                "--heartbeat-interval=100",
                "--listen-client-urls=http://localhost:2379,http://127.0.0.1:3379",
                "--strict-reconfig-check=false",
                "--auto-compaction-retention=1",
            ]
        );
        let mut argv = vec!["metastore".to_string()];
        argv.extend(args);
        let c = Config::from_flags(T::try_parse_from(argv).unwrap().f).unwrap();
        assert_eq!((c.name.as_str(), c.snapshot_count), ("m7", 10000));
        assert!(!c.strict_reconfig_check);
        std::fs::write(&path, "discovery-srv: example.com\n").unwrap();
        let e = args_from_config_file(&path).unwrap_err();
        assert!(e.contains("discovery-srv is not supported"), "{e}");
        std::fs::write(&path, "- a\n").unwrap();
        assert!(args_from_config_file(&path).is_err());
    }

    #[test]
    fn a_config_files_tls_sections_become_the_tls_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.conf.yml");
        std::fs::write(
            &path,
            "client-transport-security:\n  cert-file: /c.pem\n  key-file: /k.pem\n  client-cert-auth: true\n  \
             trusted-ca-file: /ca.pem\n  crl-file: /r.crl\n  auto-tls: false\n\
             peer-transport-security:\n  auto-tls: true\n  allowed-cn: m1\n  cert-file:\n",
        )
        .unwrap();
        let (args, _) = args_from_config_file(&path).unwrap();
        assert_eq!(
            args,
            [
                "--cert-file=/c.pem",
                "--key-file=/k.pem",
                "--client-cert-auth=true",
                "--trusted-ca-file=/ca.pem",
                "--client-crl-file=/r.crl",
                "--peer-auto-tls=true",
                "--peer-cert-allowed-cn=m1",
            ]
        );
        let mut argv = vec!["metastore".to_string()];
        argv.extend(args);
        let c = Config::from_flags(T::try_parse_from(argv).unwrap().f).unwrap();
        assert_eq!(c.client_tls.crl_file, Some(PathBuf::from("/r.crl")));
        assert!(c.client_tls.client_cert_auth && c.peer_tls.auto_tls);
        assert_eq!(c.peer_tls.allowed_cn, ["m1"]);
        std::fs::write(&path, "peer-transport-security:\n  ocsp: x\n").unwrap();
        assert_eq!(
            args_from_config_file(&path).unwrap_err(),
            "--config-file: peer-transport-security.ocsp is not supported by metastore yet (value String(\"x\"))"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(cfg(&["--listen-client-urls", "localhost:2379"]).is_err());
        assert!(cfg(&["--election-timeout", "100"]).is_err());
        assert!(cfg(&["--initial-cluster", "nonsense"]).is_err());
        assert!(cfg(&["--etcd-version", "latest"]).is_err());
        assert!(cfg(&["--listen-client-urls", "unix://"]).is_err());
        assert!(cfg(&["--listen-metrics-urls", "unix://localhost:1"]).is_err());
        let c = cfg(&[
            "--listen-client-urls",
            "http://127.0.0.1:1,unix://localhost:2",
        ])
        .unwrap();
        assert_eq!(
            unix_socket_path(&c.listen_client_urls[1]),
            Some("localhost:2")
        );
        assert_eq!(unix_socket_path("unix:///run/m.sock"), Some("/run/m.sock"));
        assert_eq!(unix_socket_path("http://127.0.0.1:1"), None);
        assert!(cfg(&["--max-txn-ops", "x"]).is_err());
    }
}
