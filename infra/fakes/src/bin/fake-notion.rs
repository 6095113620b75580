//! `fake-notion`: runs the Notion fake until Ctrl-C, printing its base URL and the ids a client
//! needs (the shared root page; the seeded CRM's databases with `--crm`).

use clap::Parser;
use syncbridge_fakes::notion::{FakeConfig, NotionFake};

#[derive(Debug, Parser)]
#[command(
    about = "A fake Notion workspace (API 2025-09-03: databases, data sources, pages, blocks) on 127.0.0.1"
)]
struct Args {
    /// Port to bind on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Seed a CRM (Deals and Contacts databases).
    #[arg(long)]
    crm: bool,
    /// Deals seeded with `--crm`.
    #[arg(long, default_value_t = 0)]
    deals: usize,
    /// Contacts seeded with `--crm`.
    #[arg(long, default_value_t = 0)]
    contacts: usize,
    /// Enforce Notion's rate limit (3 requests a second on average).
    #[arg(long)]
    rate_limits: bool,
    /// The internal integration token the fake accepts.
    #[arg(long, env = "FAKE_NOTION_TOKEN", default_value = "ntn_fake_notion", hide_default_value = true)]
    token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let fake = NotionFake::start(FakeConfig {
        port: args.port,
        token: Some(args.token),
        rate_limits: args.rate_limits,
        crm: args.crm,
        deals: args.deals,
        contacts: args.contacts,
        ..FakeConfig::default()
    })
    .await?;
    let state = fake.state();
    println!("base_url={}", fake.base_url());
    println!("root_page={}", state.root_page());
    if let Some(crm) = state.crm() {
        println!("deals_database={}", crm.deals_database);
        println!("contacts_database={}", crm.contacts_database);
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
