//! `fake-google`: runs the Google Calendar fake until Ctrl-C, printing its API root and token URL.

use clap::Parser;
use syncbridge_fakes::google::{FakeConfig, GoogleFake};

#[derive(Debug, Parser)]
#[command(about = "A fake Google Calendar v3 API (events, channels, OAuth token endpoint) on 127.0.0.1")]
struct Args {
    /// Port to bind on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Number of seeded single events.
    #[arg(long, default_value_t = 30)]
    events: usize,
    /// Instances of the seeded weekly series.
    #[arg(long, default_value_t = 4)]
    weekly_instances: usize,
    /// Seed for the generated events.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The access token the fake accepts without expiry.
    #[arg(long, env = "FAKE_GOOGLE_TOKEN", default_value = "ya29.fake-google", hide_default_value = true)]
    token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let fake = GoogleFake::start(FakeConfig {
        port: args.port,
        events: args.events,
        weekly_instances: args.weekly_instances,
        seed: args.seed,
        static_token: Some(args.token),
        ..FakeConfig::default()
    })
    .await?;
    println!("api_root={}", fake.api_url());
    println!("token_url={}", fake.token_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
