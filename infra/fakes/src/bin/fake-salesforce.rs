//! `fake-salesforce`: runs the Salesforce fake until Ctrl-C, printing its base URL (login host
//! and instance) and a token pair.

use clap::Parser;
use syncbridge_fakes::salesforce::{FakeConfig, SalesforceFake, SeedCounts};

#[derive(Debug, Parser)]
#[command(
    about = "A fake Salesforce org, new and stock (REST API v31.0-v68.0, Tooling API CustomField, Bulk API 2.0 query, OAuth) on 127.0.0.1"
)]
struct Args {
    /// Port to bind on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long, default_value_t = 100)]
    accounts: usize,
    #[arg(long, default_value_t = 1000)]
    contacts: usize,
    #[arg(long, default_value_t = 200)]
    opportunities: usize,
    #[arg(long, default_value_t = 0)]
    activities: usize,
    #[arg(long, default_value_t = 0)]
    notes: usize,
    /// Seed for the generated records.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The org's daily API request allocation.
    #[arg(long, default_value_t = 100_000)]
    daily_api_requests: u64,
    /// Ids getUpdated/getDeleted answer before `EXCEEDED_ID_LIMIT`.
    #[arg(long, default_value_t = syncbridge_fakes::salesforce::REPLICATION_ID_LIMIT)]
    replication_id_limit: usize,
    /// Create `Syncbridge_Key__c` on every object that takes custom fields, as an admin in Setup
    /// would (a stock org has none).
    #[arg(long)]
    key_fields: bool,
    /// A session token the fake accepts from the start.
    #[arg(long, env = "FAKE_SALESFORCE_TOKEN", default_value = "00DFAKE!session", hide_default_value = true)]
    token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let seed_counts = SeedCounts {
        accounts: args.accounts,
        contacts: args.contacts,
        opportunities: args.opportunities,
        tasks: args.activities,
        events: args.activities,
        notes: args.notes,
    };
    let fake = SalesforceFake::start(FakeConfig {
        port: args.port,
        seed_counts,
        seed: args.seed,
        daily_api_requests: args.daily_api_requests,
        session_token: Some(args.token),
        replication_id_limit: args.replication_id_limit,
        ..FakeConfig::default()
    })
    .await?;
    if args.key_fields {
        fake.state().create_key_fields();
    }
    println!("{}", fake.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
