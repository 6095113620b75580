//! Starting the worker process and measuring it from outside: its wall time, its exit, its peak RSS
//! as the kernel accounts it (`wait4`'s `ru_maxrss`), its report and the ids it wrote.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::worker::{TOKEN_ENV, WorkerReport};

/// What one worker process did, measured by the parent.
#[derive(Debug)]
pub struct WorkerRun {
    pub report: WorkerReport,
    /// From spawning the process to reaping it.
    pub wall: Duration,
    /// `ru_maxrss` of the reaped process, in KiB.
    pub max_rss_kib: u64,
    /// Each record written, as `object external_id`, in write order.
    pub written: Vec<String>,
}

/// One worker process for one connection.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub provider: &'static str,
    pub base_url: String,
    pub token: String,
    /// The cursors JSON of a previous run's report; `None`: a full pull.
    pub cursors: Option<String>,
    /// The OAuth token endpoint, where the adapter takes it apart from the base URL (Google).
    pub token_url: Option<String>,
    /// The connection's settings as JSON (Notion's databases); `None`: the defaults.
    pub settings: Option<String>,
}

impl WorkerSpec {
    /// A full pull (no cursors) of the connection at `base_url`.
    pub fn full(provider: &'static str, base_url: String, token: String) -> Self {
        Self { provider, base_url, token, cursors: None, token_url: None, settings: None }
    }
}

/// Runs the worker to its end (blocking: call from `spawn_blocking`).
pub fn run_worker(spec: &WorkerSpec) -> anyhow::Result<WorkerRun> {
    let exe = std::env::current_exe().context("locating the benchmark binary")?;
    let id_log = id_log_path();
    let mut cmd = Command::new(exe);
    cmd.arg("worker")
        .args(["--provider", spec.provider, "--base-url", &spec.base_url])
        .arg("--id-log")
        .arg(&id_log)
        .env(TOKEN_ENV, &spec.token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(c) = &spec.cursors {
        cmd.args(["--cursors", c]);
    }
    if let Some(u) = &spec.token_url {
        cmd.args(["--token-url", u]);
    }
    if let Some(s) = &spec.settings {
        cmd.args(["--settings", s]);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().context("starting the worker process")?;
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out).context("reading the worker's report")?;
    }
    let (status, max_rss_kib) = reap(child.id())?;
    let wall = started.elapsed();
    if status != 0 {
        bail!("the worker process exited with status {status}");
    }
    let line = out.lines().last().context("the worker printed no report")?;
    let report: WorkerReport = serde_json::from_str(line).context("parsing the worker's report")?;
    let written = std::fs::read_to_string(&id_log).context("reading the worker's id log")?;
    let _ = std::fs::remove_file(&id_log);
    Ok(WorkerRun { report, wall, max_rss_kib, written: written.lines().map(str::to_owned).collect() })
}

fn id_log_path() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("syncbridge-bench-{}-{n}.ids", std::process::id()))
}

/// Waits for the process and returns its exit code (128 + signal when killed) and `ru_maxrss`.
#[allow(unsafe_code)]
fn reap(pid: u32) -> anyhow::Result<(i32, u64)> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data that `wait4` fills in; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own child, not yet reaped (std's `Child` was never waited on);
        // both out-pointers are to live locals.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("waiting for the worker process");
        }
    }
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
    Ok((code, u64::try_from(usage.ru_maxrss).unwrap_or(0)))
}
