//! `fake-gmail`: runs the Gmail fake until Ctrl-C, printing its base URL (the API is under
//! `/gmail/v1`, the token endpoint at `/token`).

use clap::Parser;
use syncbridge_fakes::gmail::{FakeConfig, GmailFake, scopes};

#[derive(Debug, Parser)]
#[command(about = "A fake Gmail v1 API (messages, threads, labels, history, watch, OAuth) on 127.0.0.1")]
struct Args {
    /// Port to bind on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Messages delivered at start (0: a new, empty mailbox).
    #[arg(long, default_value_t = 0)]
    messages: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Per-user quota units a minute (Google's is 15000); unset: no quota.
    #[arg(long)]
    units_per_minute: Option<u32>,
    /// The access token the fake accepts without expiry (scope gmail.modify).
    #[arg(long, env = "FAKE_GMAIL_TOKEN", default_value = "ya29.fake-gmail", hide_default_value = true)]
    token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let fake = GmailFake::start(FakeConfig {
        port: args.port,
        messages: args.messages,
        seed: args.seed,
        units_per_minute: args.units_per_minute,
        static_token: Some(args.token),
        static_scopes: vec![scopes::MODIFY.into()],
        ..FakeConfig::default()
    })
    .await?;
    println!("{}", fake.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
