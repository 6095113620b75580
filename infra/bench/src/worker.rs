//! The measured worker process (`syncbridge-bench worker`): syncs one connection through the
//! engine's own job handler (`sync::worker::run_job`: the provider adapter with its default pacing,
//! page by page, `apply_page` merging and planning each page, checkpoints, run record) into the
//! discarding stores of [`crate::null`], then prints a [`WorkerReport`] as one JSON line on stdout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use clap::Args;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use syncbridge::adapters::drive::DriveFactory;
use syncbridge::adapters::fireflies::FirefliesFactory;
use syncbridge::adapters::gmail::{GmailConfig, GmailFactory};
use syncbridge::adapters::google::{DEFAULT_TOKEN_URL, GoogleFactory};
use syncbridge::adapters::hubspot::HubspotFactory;
use syncbridge::adapters::memory::MemoryStore;
use syncbridge::adapters::notion::NotionFactory;
use syncbridge::adapters::salesforce::SalesforceFactory;
use syncbridge::domain::{
    Connection, Credentials, Job, JobReason, NewConnection, ObjectType, Provider, RunCounts, SyncCursor,
    TenantId,
};
use syncbridge::ports::{ProviderClient, ProviderError, ProviderFactory};
use syncbridge::sync::worker::{JobOutcome, run_job};
use syncbridge::sync::{Deadline, Deps};

use crate::null::{Discarded, NullStores};

/// The environment variable that carries the provider token to the worker (not its command line).
pub const TOKEN_ENV: &str = "SYNCBRIDGE_BENCH_TOKEN";

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// `hubspot`, `salesforce`, `google`, `gmail`, `google_drive`, `notion`.
    #[arg(long)]
    pub provider: String,
    #[arg(long)]
    pub base_url: String,
    /// The connection's cursors as JSON (`{"contacts": "<cursor>"}`); none: a full pull.
    #[arg(long)]
    pub cursors: Option<String>,
    /// Google's token endpoint (the fake's); only used to refresh, which a static token never needs.
    #[arg(long, default_value = DEFAULT_TOKEN_URL)]
    pub token_url: String,
    /// Where to write the `object external_id` of every record written.
    #[arg(long)]
    pub id_log: PathBuf,
    /// The connection's settings as JSON (a Notion connection's databases).
    #[arg(long)]
    pub settings: Option<String>,
}

/// What the worker process reports to the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerReport {
    /// From before `run_job` to after it returned.
    pub pull_ms: u64,
    pub counts: RunCounts,
    /// The connection's cursors after the run (for a following incremental scenario).
    pub cursors: BTreeMap<String, String>,
    pub discarded: Discarded,
    /// `VmHWM` from `/proc/self/status` just before exit, in KiB.
    pub vm_hwm_kib: Option<u64>,
}

/// Routes the connection to its provider's adapter, built as `wiring` builds it (default pacing).
struct Factories {
    hubspot: HubspotFactory,
    salesforce: SalesforceFactory,
    google: GoogleFactory,
    gmail: GmailFactory,
    drive: DriveFactory,
    notion: NotionFactory,
    fireflies: FirefliesFactory,
}

impl ProviderFactory for Factories {
    fn client(&self, connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError> {
        match connection.provider {
            Provider::Hubspot => self.hubspot.client(connection),
            Provider::Salesforce => self.salesforce.client(connection),
            Provider::Google => self.google.client(connection),
            Provider::Gmail => self.gmail.client(connection),
            Provider::GoogleDrive => self.drive.client(connection),
            Provider::Notion => self.notion.client(connection),
            Provider::Fireflies => self.fireflies.client(connection),
            other => Err(ProviderError::permanent(format!("the benchmark has no {other} adapter"))),
        }
    }
}

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let provider = Provider::parse(&args.provider).context("unknown provider")?;
    let token = std::env::var(TOKEN_ENV).with_context(|| format!("{TOKEN_ENV} is not set"))?;
    let http = syncbridge::wiring::http_client()?;
    let factories = Factories {
        hubspot: HubspotFactory::new(http.clone(), None),
        salesforce: SalesforceFactory::new(http.clone(), None),
        google: GoogleFactory::new(http.clone(), None, args.token_url.clone()),
        notion: NotionFactory::new(http.clone()),
        fireflies: FirefliesFactory::new(http.clone()),
        gmail: GmailFactory::new(
            http.clone(),
            None,
            GmailConfig {
                api_base_url: args.base_url.clone(),
                token_url: args.token_url.clone(),
                ..GmailConfig::default()
            },
        ),
        drive: DriveFactory::new(http, None, args.token_url.clone()),
    };
    let settings = match &args.settings {
        Some(json) => serde_json::from_str(json).context("--settings")?,
        None => Default::default(),
    };

    let tenant = TenantId::parse("bench").context("tenant id")?;
    let mut connection = Connection::new(
        tenant.clone(),
        NewConnection {
            provider,
            base_url: args.base_url.clone(),
            credentials: Credentials {
                access_token: SecretString::from(token),
                refresh_token: None,
                expires_at: None,
            },
            interval_minutes: 15,
            settings,
        },
        Utc::now(),
    );
    if let Some(json) = &args.cursors {
        let cursors: BTreeMap<String, String> = serde_json::from_str(json).context("--cursors")?;
        for (object, cursor) in cursors {
            let object = ObjectType::parse(&object).context("--cursors object type")?;
            connection.cursors.insert(object, SyncCursor::new(cursor));
        }
    }
    let connection_id = connection.connection_id.clone();
    let memory = Arc::new(MemoryStore::new());
    memory.put_connection(connection);
    let null = Arc::new(NullStores::new(&args.id_log).context("creating the id log")?);
    // Connections, runs, pushes and conflicts in memory (one connection's worth); records, audit
    // entries and events into the discarding stores.
    let deps = Deps {
        records: null.clone(),
        audit: null.clone(),
        ..syncbridge::adapters::memory::TestDeps::new(memory.clone())
            .bus(null.clone())
            .providers(Arc::new(factories))
            .build()
    };
    let job = Job::sync(
        tenant.clone(),
        connection_id.clone(),
        Job::requested_id(&connection_id, JobReason::Manual),
        JobReason::Manual,
        Utc::now(),
    );

    let started = Instant::now();
    // One invocation for the whole pull: the benchmark measures throughput, not Lambda hand-offs.
    let outcome = run_job(&deps, &job, Deadline::after(Duration::from_secs(3_600))).await;
    let pull_ms = started.elapsed().as_millis() as u64;
    let counts = match outcome {
        Ok(JobOutcome::Completed { counts, .. }) => counts,
        Ok(other) => bail!("the job did not complete: {other:?}"),
        Err(e) => bail!("the job failed: {e}"),
    };
    let discarded = null.finish().context("flushing the id log")?;
    let after = syncbridge::ports::ConnectionStore::get(memory.as_ref(), &tenant, &connection_id)
        .await?
        .context("the connection vanished")?;
    let cursors = after.cursors.iter().map(|(o, c)| (o.as_str().to_owned(), c.as_str().to_owned())).collect();
    let report = WorkerReport { pull_ms, counts, cursors, discarded, vm_hwm_kib: vm_hwm_kib() };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
