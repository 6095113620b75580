//! `fake-hubspot`: runs the HubSpot fake until Ctrl-C, printing its base URL.

use clap::Parser;
use syncbridge_fakes::hubspot::{FakeConfig, HubspotFake};

#[derive(Debug, Parser)]
#[command(
    about = "A fake HubSpot CRM v3 API (contacts, companies, deals, notes, calls, emails, meetings, tasks, search, OAuth) on 127.0.0.1"
)]
struct Args {
    /// Port to bind on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Number of seeded contacts.
    #[arg(long, default_value_t = 1000)]
    contacts: usize,
    /// Number of seeded companies.
    #[arg(long, default_value_t = 0)]
    companies: usize,
    /// Number of seeded deals (each associated with a contact and a company).
    #[arg(long, default_value_t = 0)]
    deals: usize,
    /// Number of seeded notes.
    #[arg(long, default_value_t = 0)]
    notes: usize,
    /// Number of seeded calls, emails, meetings and tasks (each associated like notes).
    #[arg(long, default_value_t = 0)]
    activities: usize,
    /// Seed for the generated contacts.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Enforce HubSpot's rate limits (190 per 10 s, search 5 per second).
    #[arg(long)]
    rate_limits: bool,
    /// The private-app token the fake accepts.
    #[arg(long, env = "FAKE_HUBSPOT_TOKEN", default_value = "pat-na1-fake", hide_default_value = true)]
    token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let fake = HubspotFake::start(FakeConfig {
        port: args.port,
        contacts: args.contacts,
        companies: args.companies,
        deals: args.deals,
        notes: args.notes,
        calls: args.activities,
        emails: args.activities,
        meetings: args.activities,
        tasks: args.activities,
        seed: args.seed,
        rate_limits: args.rate_limits,
        private_app_token: Some(args.token),
        ..FakeConfig::default()
    })
    .await?;
    println!("{}", fake.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
