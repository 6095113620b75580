//! `syncbridge-bench` (`make bench`): pulls from the provider fakes with their real rate limits
//! switched on and reports wall time, requests, 429s, records/s and the worker's peak RSS for each
//! scenario; then the scale scenarios on moto with every AWS request counted (the dispatcher at
//! 100,000 connections, scheduled syncs per record and per sync) and the functions' cold starts;
//! as tables and as JSON (`target/bench/results.json`).
//!
//! The measured pull worker is a child process (this binary's `worker` subcommand) running the
//! engine's job handler for one connection; the fakes run in this (parent) process and count
//! requests.

mod child;
mod fireflies;
mod init;
mod notion;
mod null;
mod report;
mod scale;
mod scenarios;
mod sqs_sink;
mod worker;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use report::Results;

#[derive(Debug, Parser)]
#[command(about = "Benchmarks of full and incremental pulls against the provider fakes")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Run only the scenarios whose name contains this (for example `100k`).
    #[arg(long)]
    only: Option<String>,
    /// Where to write the figures as JSON.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The measured worker process (started by the benchmark itself).
    Worker(worker::WorkerArgs),
}

/// The cargo profile this binary was built with (the name of its directory under `target/`).
fn build_profile() -> String {
    let exe = std::env::current_exe().ok();
    let dir = exe.as_deref().and_then(|p| p.parent()).and_then(|d| d.file_name());
    dir.map(|d| d.to_string_lossy().into_owned()).unwrap_or_else(|| "unknown".into())
}

const DISPATCHER: &str = "dispatcher: 100,000 connections of 10,000 tenants due in one tick";
const SCHEDULED: &str =
    "scheduled syncs: 20 connections of 250 contacts (first, after 10 edits, lookback, no change)";
const COLD_STARTS: &str = "cold starts of the four functions";
/// The scale scenarios and cold starts, after the pulls.
const SCALE: &[&str] = &[DISPATCHER, SCHEDULED, COLD_STARTS];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error")))
        .init();
    let cli = Cli::parse();
    if let Some(Command::Worker(args)) = cli.command {
        return worker::run(args).await;
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; `make bench` builds with --release");
    }
    let mut results = Results {
        generated_at: chrono::Utc::now().to_rfc3339(),
        build_profile: build_profile(),
        cpus: std::thread::available_parallelism().map(usize::from).unwrap_or(1),
        record_store: report::RECORD_STORE_NOTE,
        scenarios: Vec::new(),
        scale: Vec::new(),
        cold_starts: Vec::new(),
    };
    let wanted = |n: &&&str| cli.only.as_deref().is_none_or(|o| n.contains(o));
    for name in scenarios::ALL.iter().filter(wanted) {
        eprintln!("running {name} ...");
        let figures = scenarios::run(name).await?;
        eprintln!(
            "  {:.2} s, {} requests, {} 429s, {} records",
            figures.wall_s, figures.requests, figures.rate_limited, figures.records
        );
        results.scenarios.push(figures);
    }
    for name in SCALE.iter().filter(wanted) {
        eprintln!("running {name} ...");
        if *name == COLD_STARTS {
            results.cold_starts = init::cold_starts(&["dispatcher", "worker", "api", "webhooks"], 5).await?;
            continue;
        }
        let figures = match *name {
            DISPATCHER => scale::dispatcher(name, 100_000, 10_000).await?,
            SCHEDULED => scale::scheduled(name, 20, 250, 10).await?,
            other => anyhow::bail!("no scenario called {other:?}"),
        };
        eprintln!("  {:.2} s", figures.wall_s);
        results.scale.push(figures);
    }
    print!("{}", report::render(&results));
    report::write_json(&results, &cli.out)?;
    println!("Figures written to {}", cli.out.display());
    let untrustworthy: Vec<&str> = results
        .scenarios
        .iter()
        .filter(|f| !f.trustworthy())
        .map(|f| f.scenario.as_str())
        .chain(results.scale.iter().filter(|f| !f.trustworthy()).map(|f| f.scenario.as_str()))
        .collect();
    anyhow::ensure!(untrustworthy.is_empty(), "checks failed for: {}", untrustworthy.join(", "));
    Ok(())
}
