//! `fake-fireflies`: runs the Fireflies fake until Ctrl-C, printing its base URL (the API is
//! `POST {base_url}/graphql`).

use clap::Parser;
use syncbridge_fakes::fireflies::{FakeConfig, FirefliesFake};

#[derive(Debug, Parser)]
#[command(
    about = "A fake Fireflies.ai account (GraphQL: user, transcripts, transcript; signed webhooks) on 127.0.0.1"
)]
struct Args {
    /// Port to bind on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Meetings seeded at start.
    #[arg(long, default_value_t = 0)]
    transcripts: usize,
    /// Enforce the Business plan's rate limit (60 requests a minute).
    #[arg(long)]
    rate_limits: bool,
    /// The API key the fake accepts.
    #[arg(
        long,
        env = "FAKE_FIREFLIES_API_KEY",
        default_value = "ff_fake_fireflies",
        hide_default_value = true
    )]
    api_key: String,
    /// Print the fake's schema as SDL and exit.
    #[arg(long)]
    print_schema: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    if args.print_schema {
        print!("{}", syncbridge_fakes::fireflies::sdl());
        return Ok(());
    }
    let fake = FirefliesFake::start(FakeConfig {
        port: args.port,
        api_key: args.api_key,
        rate_limits: args.rate_limits,
        transcripts: args.transcripts,
        ..FakeConfig::default()
    })
    .await?;
    println!("base_url={}", fake.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
