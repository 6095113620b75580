//! Webhooks Lambda: provider notifications -> verified, then enqueued (`syncbridge::http::webhooks`).

use lambda_http::{Error, run};
use syncbridge::http::webhooks;
use syncbridge::telemetry::metrics;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let state = syncbridge::wiring::webhooks_from_env().await?;
    run(metrics::flush_after_each_response(webhooks::router(state))).await
}
