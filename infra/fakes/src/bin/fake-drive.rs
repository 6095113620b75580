//! `fake-drive`: runs the Google Drive fake until Ctrl-C, printing its API root and token URL.

use clap::Parser;
use syncbridge_fakes::drive::{DriveFake, FakeConfig, RateLimit};

#[derive(Debug, Parser)]
#[command(about = "A fake Google Drive v3 API (files, permissions, changes, channels, OAuth) on 127.0.0.1")]
struct Args {
    /// Port to bind on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Seeded files and folders (0: a new, stock My Drive).
    #[arg(long, default_value_t = 0)]
    files: usize,
    /// Switch Drive's per-user rate limit (12,000 requests a minute) on from the start.
    #[arg(long)]
    rate_limit: bool,
    /// The access token the fake accepts without expiry (every Drive scope).
    #[arg(long, env = "FAKE_DRIVE_TOKEN", default_value = "ya29.fake-drive", hide_default_value = true)]
    token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let fake = DriveFake::start(FakeConfig {
        port: args.port,
        files: args.files,
        static_token: Some(args.token),
        rate_limit: args.rate_limit.then(RateLimit::drive_default),
        ..FakeConfig::default()
    })
    .await?;
    println!("api_root={}", fake.api_url());
    println!("token_url={}", fake.token_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
