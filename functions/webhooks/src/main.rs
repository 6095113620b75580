//! Webhooks Lambda: provider notifications -> verified, then enqueued (`syncbridge::http::webhooks`).

use lambda_http::{Error, run};
use syncbridge::http::webhooks::{self, WebhookState};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (_, deps) = syncbridge::wiring::from_env().await?;
    run(webhooks::router(WebhookState { queue: deps.queue, clock: deps.clock })).await
}
