//! Webhooks Lambda: provider notifications -> verified, then enqueued (`syncbridge::http::webhooks`).

use lambda_http::{Error, run};
use syncbridge::config::Config;
use syncbridge::http::webhooks;
use syncbridge::{telemetry, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let sdk = aws_config::load_from_env().await;
    let deps = wiring::deps_with_system_clock(&config, &sdk)?;
    run(webhooks::router(webhooks::WebhookState { queue: deps.queue.clone(), clock: deps.clock.clone() })).await
}
