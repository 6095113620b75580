//! `fake-graph`: runs the Microsoft Graph calendar fake until Ctrl-C, printing its base URL.

use clap::Parser;
use syncbridge_fakes::graph::{FakeConfig, GraphFake};

#[derive(Debug, Parser)]
#[command(
    about = "A fake Microsoft Graph v1.0 calendar API (delta, events, subscriptions, OAuth) on 127.0.0.1"
)]
struct Args {
    /// Port to bind on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Number of seeded events (over the next six days, a few two weeks out).
    #[arg(long, default_value_t = 40)]
    events: usize,
    /// Seed for the generated events.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The access token the fake accepts without expiry.
    #[arg(long, env = "FAKE_GRAPH_TOKEN", default_value = "graph-fake-token", hide_default_value = true)]
    token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let fake = GraphFake::start(FakeConfig {
        port: args.port,
        events: args.events,
        seed: args.seed,
        static_token: Some(args.token),
        ..FakeConfig::default()
    })
    .await?;
    println!("{}", fake.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
