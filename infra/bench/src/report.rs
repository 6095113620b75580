//! The figures of each scenario, the targets they are held to and the checks that make them
//! trustworthy; printed as a table and written as JSON.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::child::WorkerRun;

/// A goal from the issue and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub goal: String,
    pub met: bool,
}

/// A consistency check of the figures themselves (a failed one makes the run untrustworthy).
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub passed: bool,
}

/// What one scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub scenario: String,
    pub provider: String,
    pub kind: &'static str,
    /// Distinct records the worker wrote to the (discarding) record store.
    pub records: u64,
    /// Worker process, from spawn to exit.
    pub wall_s: f64,
    /// `run_job` alone, inside the worker.
    pub pull_s: f64,
    /// Requests the fake served (every route, 429s included).
    pub requests: u64,
    /// Requests the adapter says it made.
    pub client_requests: u64,
    /// 429s the fake sent.
    pub rate_limited: u64,
    /// Requests the fake served, by route (and object type where the fake tells them apart).
    pub requests_by_route: BTreeMap<String, u64>,
    pub records_per_s: f64,
    /// The worker process's peak RSS: the `VmHWM` it read from `/proc/self/status` just before
    /// exiting (the high-water mark of its own address space since `exec`).
    pub peak_rss_mib: f64,
    /// `ru_maxrss` of the worker from `wait4`, for reference only: Linux folds into it the
    /// high-water mark of the address space the child had before `exec`, which for a
    /// `posix_spawn`ed (vfork) child is the parent's, so it reads high when the parent is large.
    pub ru_maxrss_mib: f64,
    /// The rate-limit floor for this pull as the issue counts it (pages at the sustained rate).
    pub floor_s: Option<f64>,
    /// The least time the provider's rate-limit window allows for the requests made.
    pub window_min_s: Option<f64>,
    pub pages: u64,
    pub targets: Vec<Target>,
    pub checks: Vec<Check>,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Figures {
    /// Figures from a worker run and the fake's counters (requests served, 429s sent).
    pub fn new(
        scenario: impl Into<String>,
        provider: &str,
        kind: &'static str,
        run: &WorkerRun,
        requests: u64,
        rate_limited: u64,
    ) -> Self {
        let pulled: Vec<String> = run.written.iter().filter(|l| !is_derived(l)).cloned().collect();
        let records = distinct(&pulled) as u64;
        let wall_s = run.wall.as_secs_f64();
        let mut f = Self {
            scenario: scenario.into(),
            provider: provider.to_owned(),
            kind,
            records,
            wall_s,
            pull_s: run.report.pull_ms as f64 / 1000.0,
            requests,
            client_requests: run.report.counts.requests,
            rate_limited,
            requests_by_route: BTreeMap::new(),
            records_per_s: if wall_s > 0.0 { records as f64 / wall_s } else { 0.0 },
            peak_rss_mib: mib(run.report.vm_hwm_kib.unwrap_or(run.max_rss_kib)),
            ru_maxrss_mib: mib(run.max_rss_kib),
            floor_s: None,
            window_min_s: None,
            pages: run.report.counts.pages,
            targets: Vec::new(),
            checks: Vec::new(),
        };
        f.check(
            format!("the adapter counted the requests the fake served ({requests})"),
            run.report.counts.requests == requests,
        );
        f.check(
            format!("the adapter counted the 429s the fake sent ({rate_limited})"),
            run.report.counts.rate_limited == rate_limited,
        );
        f.check(
            "the worker reported its peak RSS (VmHWM), at most the kernel's ru_maxrss",
            run.report.vm_hwm_kib.is_some_and(|hwm| hwm <= run.max_rss_kib),
        );
        f.check(
            "every pulled record reached the record store",
            run.report.counts.pulled == pulled.len() as u64
                && run.written.len() as u64 == run.report.discarded.record_writes,
        );
        f
    }

    pub fn target(&mut self, goal: impl Into<String>, met: bool) {
        self.targets.push(Target { goal: goal.into(), met });
    }

    pub fn check(&mut self, what: impl Into<String>, passed: bool) {
        self.checks.push(Check { what: what.into(), passed });
    }

    pub fn trustworthy(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// Whether an id-log line is a record the engine derived (research tasks), not one it pulled.
fn is_derived(line: &str) -> bool {
    line.starts_with("research_tasks ")
}

/// Distinct lines.
pub fn distinct(lines: &[String]) -> usize {
    lines.iter().collect::<std::collections::HashSet<_>>().len()
}

/// Everything `make bench` learned, as written to `results.json`.
#[derive(Debug, Serialize)]
pub struct Results {
    pub generated_at: String,
    pub build_profile: String,
    pub cpus: usize,
    pub record_store: &'static str,
    pub scenarios: Vec<Figures>,
    /// The scale scenarios (moto, requests counted at the SDK).
    pub scale: Vec<crate::scale::ScaleFigures>,
    /// Cold starts of the function binaries.
    pub cold_starts: Vec<crate::init::ColdStart>,
}

pub const RECORD_STORE_NOTE: &str = "in the pull scenarios, records go to a record store that keeps nothing (lookups find \
nothing, writes are counted and dropped): DynamoDB on moto manages about 30 writes/s locally, so a \
pull through it would measure moto, not the engine";

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "-".into())
}

/// The table of figures, then each scenario's targets and checks.
pub fn render(results: &Results) -> String {
    let mut out = String::new();
    let header = format!(
        "{:<34} {:>8} {:>8} {:>8} {:>9} {:>5} {:>10} {:>10}",
        "scenario", "records", "wall s", "floor s", "requests", "429s", "records/s", "peak RSS"
    );
    out.push_str(&header);
    out.push('\n');
    out.push_str(&"-".repeat(header.len()));
    out.push('\n');
    for f in &results.scenarios {
        out.push_str(&format!(
            "{:<34} {:>8} {:>8.3} {:>8} {:>9} {:>5} {:>10.0} {:>6.1} MiB\n",
            f.scenario,
            f.records,
            f.wall_s,
            opt(f.floor_s, 2),
            f.requests,
            f.rate_limited,
            f.records_per_s,
            f.peak_rss_mib
        ));
    }
    out.push('\n');
    for f in &results.scenarios {
        out.push_str(&format!("{}:\n", f.scenario));
        for t in &f.targets {
            out.push_str(&format!("  target {:<7} {}\n", if t.met { "met" } else { "MISSED" }, t.goal));
        }
        for c in &f.checks {
            out.push_str(&format!("  check  {:<7} {}\n", if c.passed { "ok" } else { "FAILED" }, c.what));
        }
    }
    for f in &results.scale {
        out.push_str(&format!("\n{} ({:.1} s):\n", f.scenario, f.wall_s));
        for fig in &f.figures {
            let value = if fig.value.fract() == 0.0 && fig.value.abs() < 1e15 {
                format!("{}", fig.value as i64)
            } else if fig.value.abs() < 10.0 {
                format!("{:.4}", fig.value)
            } else {
                format!("{:.1}", fig.value)
            };
            out.push_str(&format!("  {:<62} {:>14} {}\n", fig.name, value, fig.unit));
        }
        for t in &f.targets {
            out.push_str(&format!("  target {:<7} {}\n", if t.met { "met" } else { "MISSED" }, t.goal));
        }
        for c in &f.checks {
            out.push_str(&format!("  check  {:<7} {}\n", if c.passed { "ok" } else { "FAILED" }, c.what));
        }
    }
    if !results.cold_starts.is_empty() {
        out.push_str(&format!(
            "\n{:<12} {:>5} {:>12} {:>20}  first answer\n",
            "function", "runs", "init ms", "first response ms"
        ));
        for c in &results.cold_starts {
            out.push_str(&format!(
                "{:<12} {:>5} {:>12.1} {:>20.1}  {}\n",
                c.function, c.runs, c.init_ms, c.first_response_ms, c.answer
            ));
        }
        out.push_str(
            "Cold starts: each bootstrap (this machine's build, not arm64) started against a local \
emulator of the Lambda runtime API; init = exec to its first GET /invocation/next, first response = exec \
to its answer to one event (medians).\n",
        );
    }
    out.push_str(&format!(
        "\nNote: {RECORD_STORE_NOTE}.\nWall time is the worker process from spawn to exit; peak RSS is its \
VmHWM (/proc/self/status just before exit). Build profile: {}; {} CPUs.\n",
        results.build_profile, results.cpus
    ));
    out
}

pub fn write_json(results: &Results, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(results)?;
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(met: bool, passed: bool) -> Figures {
        Figures {
            scenario: "hubspot full 20k".into(),
            provider: "hubspot".into(),
            kind: "full",
            records: 20_000,
            wall_s: 10.5,
            pull_s: 10.4,
            requests: 201,
            client_requests: 201,
            rate_limited: 0,
            requests_by_route: BTreeMap::new(),
            records_per_s: 1_904.8,
            peak_rss_mib: 12.25,
            ru_maxrss_mib: 12.5,
            floor_s: Some(10.53),
            window_min_s: Some(10.0),
            pages: 201,
            targets: vec![Target { goal: "no 429 received".into(), met }],
            checks: vec![Check { what: "ids".into(), passed }],
        }
    }

    #[test]
    fn the_table_shows_each_figure_and_flags_missed_targets_and_failed_checks() {
        let results = Results {
            generated_at: "now".into(),
            build_profile: "release".into(),
            cpus: 2,
            record_store: RECORD_STORE_NOTE,
            scenarios: vec![figures(true, true)],
            scale: Vec::new(),
            cold_starts: Vec::new(),
        };
        let text = render(&results);
        let row = text.lines().find(|l| l.starts_with("hubspot full 20k")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[3..], ["20000", "10.500", "10.53", "201", "0", "1905", "12.2", "MiB"]);
        assert!(text.contains("target met     no 429 received"));
        assert!(text.contains("keeps nothing"));

        let bad = Results { scenarios: vec![figures(false, false)], ..results };
        let text = render(&bad);
        assert!(text.contains("target MISSED  no 429 received"));
        assert!(text.contains("check  FAILED  ids"));
        assert!(!bad.scenarios[0].trustworthy());
    }

    #[test]
    fn distinct_counts_each_line_once() {
        let lines: Vec<String> = ["contacts 1", "contacts 2", "contacts 1"].map(String::from).to_vec();
        assert_eq!(distinct(&lines), 2);
    }
}
