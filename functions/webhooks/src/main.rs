//! Webhooks Lambda: provider notifications -> verified, then enqueued (`syncbridge::http::webhooks`).

use lambda_http::{Error, run};
use syncbridge::http::webhooks;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let state = syncbridge::wiring::webhooks_from_env().await?;
    run(webhooks::router(state)).await
}
