//! Running a short-lived command with a deadline and capturing its output.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// Exit status and captured output of a finished command.
#[derive(Debug)]
pub struct CmdOutput {
    /// How the process ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything it wrote to stderr (lossy UTF-8).
    pub stderr: String,
}

impl CmdOutput {
    /// True if the process exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics (showing both streams) unless the process exited with status 0; returns `self`.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "command failed: {self}");
        self
    }

    /// Stdout split into lines (without the line terminators).
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Stdout parsed as one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }
}

impl std::fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion, feeding it `stdin` (or nothing: stdin is closed), and panics if it has not
/// exited within `timeout` (the process is killed then; `kill_on_drop`).
pub async fn run(
    mut cmd: tokio::process::Command,
    stdin: Option<&str>,
    timeout: Duration,
) -> CmdOutput {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {desc}: {e}"));
    let mut pipe = child.stdin.take().expect("piped stdin");
    let input = stdin.unwrap_or("").as_bytes().to_vec();
    let feed = async move {
        // A process that exits without reading its input closes the pipe; that is not our error.
        let _ = pipe.write_all(&input).await;
        drop(pipe);
    };
    let wait = async {
        let (_, out) = tokio::join!(feed, child.wait_with_output());
        out
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(Ok(out)) => CmdOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        Ok(Err(e)) => panic!("waiting for {desc}: {e}"),
        Err(_) => panic!("{desc} did not finish within {timeout:?} (killed)"),
    }
}
