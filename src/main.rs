//! The `metastore` command: with no subcommand it serves one member, taking etcd's flags and `ETCD_*`
//! environment variables.

use std::process::ExitCode;

use clap::Parser;
use metastore::config::{Config, Flags, ETCD_API_VERSION};
use tracing_subscriber::EnvFilter;

// glibc's malloc was ~10 % of the server's CPU under put load (arena contention between the gRPC
// workers, apply and raft threads, which free each other's buffers); mimalloc is cheaper there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "metastore",
    about = "An etcd-v3-compatible, strongly consistent key-value store for metadata",
    disable_version_flag = true,
    args_conflicts_with_subcommands = true,
    // Like Go's flag package (etcd): a repeated flag overrides the earlier one.
    args_override_self = true
)]
struct Cli {
    /// Print the version and exit.
    #[arg(long)]
    version: bool,
    #[command(flatten)]
    flags: Flags,
    #[command(subcommand)]
    cmd: Option<Sub>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Load generator modelled on etcd's benchmark tool (works against etcd too).
    Bench(metastore_bench::BenchArgs),
    /// etcd's gateway: a TCP proxy in front of the cluster's client URLs.
    Gateway(metastore::tcpproxy::GatewayArgs),
}

/// etcd (Go's flag package) accepts `-name value` as well as `--name value`; clap wants two dashes.
fn normalize_args() -> Vec<String> {
    std::env::args()
        .enumerate()
        .map(|(i, a)| {
            let long_like = a.len() > 2
                && a.starts_with('-')
                && !a.starts_with("--")
                && a.as_bytes()[1].is_ascii_alphabetic()
                && a[1..].split('=').next().is_some_and(|n| n.len() > 1);
            if i > 0 && long_like {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

fn print_version(etcd_version: &str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let text = format!(
        "metastore Version: {}\netcd Version: {etcd_version}\nAPI Version: {ETCD_API_VERSION}\nOS/Arch: {}/{arch}\nTokio LIFO slot: {}\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        LIFO_SLOT
    );
    // A reader that stops early (`metastore --version | head -1`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
}

/// Whether this build turns tokio's LIFO slot off (see `block_on`), for `--version` and the
/// start-up log.
#[cfg(tokio_unstable)]
const LIFO_SLOT: &str = "off (built with tokio_unstable)";
#[cfg(not(tokio_unstable))]
const LIFO_SLOT: &str = "on (built without tokio_unstable: tokio's default)";

fn init_logging(level: &str) -> Result<(), String> {
    let level = match level {
        "debug" => "debug",
        "info" => "info",
        "warn" => "warn",
        "error" | "dpanic" | "panic" | "fatal" => "error",
        other => return Err(format!("--log-level: unknown level {other:?}")),
    };
    let filter = EnvFilter::try_from_env("METASTORE_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},raft=warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(normalize_args());
    match cli.cmd {
        Some(Sub::Bench(args)) => return run_bench(args),
        Some(Sub::Gateway(g)) => {
            if let Err(e) = init_logging("info") {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
            let metastore::tcpproxy::GatewayCmd::Start = g.cmd;
            return block_on(metastore::tcpproxy::run(g.flags, shutdown_signal()));
        }
        None => {}
    }
    if cli.version {
        print_version(&cli.flags.etcd_version);
        return ExitCode::SUCCESS;
    }
    let (flags, notes) = match &cli.flags.config_file {
        Some(path) => match flags_from_config_file(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        },
        None => (cli.flags, Vec::new()),
    };
    if let Err(e) = init_logging(&flags.log_level) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    for n in notes {
        tracing::warn!("--config-file: {n}");
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        tokio_lifo_slot = LIFO_SLOT,
        "starting metastore"
    );
    // Logs the armed fail points now (a build with the `failpoints` feature only).
    metastore::failpoints::armed("");
    stop_on_panic();
    let cfg = match Config::from_flags(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    block_on(async {
        metastore::run(cfg, shutdown_signal()).await.map_err(|e| {
            tracing::error!(error = %e, "metastore stopped with an error");
            e.to_string()
        })
    })
}

/// The flags an etcd configuration file stands for. Like etcd, the file replaces the command line
/// and the environment: `ETCD_*` variables are dropped before the file's flags are parsed (this runs
/// before any other thread exists).
fn flags_from_config_file(path: &std::path::Path) -> Result<(Flags, Vec<String>), String> {
    let mut argv = vec!["metastore".to_string()];
    let (args, notes) = metastore::config::args_from_config_file(path)?;
    argv.extend(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCD_") {
            std::env::remove_var(&k);
        }
    }
    Cli::try_parse_from(argv)
        .map(|c| (c.flags, notes))
        .map_err(|e| format!("--config-file {}: {e}", path.display()))
}

/// A panic on any thread (raft, apply, watch sync, compactor, a request task) ends the process, as a
/// panic ends etcd: a member must not go on serving without one of its parts. The default hook
/// prints the message first; abort rather than exit, so that no destructor runs while the other
/// threads still use RocksDB (everything acknowledged is in the raft log already).
fn stop_on_panic() {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        print(info);
        tracing::error!(
            thread = std::thread::current().name().unwrap_or("unnamed"),
            "{info}; stopping the member"
        );
        std::process::abort();
    }));
}

/// Runs `f` on a multi-threaded runtime; an error is printed and exits non-zero.
fn block_on(f: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    // Without the LIFO slot, a task woken by a running task goes to the back of the worker's queue instead of
    // running next. Under load that lets every handler woken by one apply batch finish before its connection's
    // task runs, so the connection writes their responses with one writev instead of one each (measured at 256
    // clients: 0.13 instead of 0.9 writev per put, ~15 % less server CPU per put; docs/PERFORMANCE.md). The
    // builder method needs `--cfg tokio_unstable`, which .cargo/config.toml sets; a build without it (e.g.
    // with RUSTFLAGS overriding the config) keeps tokio's default.
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_bench(args: metastore_bench::BenchArgs) -> ExitCode {
    block_on(metastore_bench::run(args))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, never shut down by signal (the default action still kills us).
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM, shutting down"),
        _ = int.recv() => tracing::info!("received SIGINT, shutting down"),
    }
}
