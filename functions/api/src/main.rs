//! API Lambda: API Gateway HTTP API (JWT-authorized) -> the axum router in `syncbridge::http::api`.

use lambda_http::{Error, run};
use syncbridge::telemetry::metrics;
use syncbridge::{http::api, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, deps) = wiring::from_env(wiring::Function::Api).await?;
    run(metrics::flush_after_each_response(api::router(wiring::api_state(&deps, &config)))).await
}
