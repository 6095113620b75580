//! `syncbridge`: the local command line. `up` starts one background stack (moto, the fakes, the
//! runner and the gateway) that every other subcommand shares until `down`.

use anyhow::Result;
use clap::{Parser, Subcommand};
use syncbridge_local::cli;

#[derive(Parser)]
#[command(name = "syncbridge", version, about = "Run Syncbridge locally: no AWS account needed")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the local stack in the background and print where it listens.
    Up(cli::UpArgs),
    /// Stop the local stack.
    Down,
    /// Print each connection's sync status.
    Status(cli::TenantArgs),
    /// Sync one connection now, through the same worker code, against any HubSpot-compatible server.
    Sync(cli::SyncArgs),
    /// Print a dev-signed token for calling the local API with curl.
    Token(cli::TenantArgs),
    /// Print the local dashboard's URL, signed in as the tenant.
    Dashboard(cli::TenantArgs),
    /// Move dead-lettered jobs back into the jobs queue (local stack, or AWS with --dlq-url/--queue-url).
    Redrive(cli::RedriveArgs),
    /// Create the Lambda event fixtures' connection and print the `cargo lambda` commands that run
    /// the functions against the local stack.
    Lambda,
    /// Run the end-to-end demo on a fresh, private stack and print a summary.
    Demo(cli::DemoArgs),
    /// (internal) Run the stack in the foreground; `up` starts this in the background.
    #[command(hide = true)]
    Daemon(cli::UpArgs),
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Up(args) => cli::up(&args).await,
        Command::Down => cli::down().await,
        Command::Status(args) => cli::status(&args).await,
        Command::Sync(args) => cli::sync(&args).await,
        Command::Token(args) => cli::token(&args).await,
        Command::Dashboard(args) => cli::dashboard(&args).await,
        Command::Redrive(args) => cli::redrive(&args).await,
        Command::Lambda => cli::lambda().await,
        Command::Demo(args) => syncbridge_local::demo::run(&args).await,
        Command::Daemon(args) => cli::daemon(&args).await,
    }
}
