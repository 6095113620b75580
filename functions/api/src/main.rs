//! API Lambda: API Gateway HTTP API (JWT-authorized) -> the axum router in `syncbridge::http::api`.

use lambda_http::{Error, run};
use syncbridge::config::Config;
use syncbridge::http::api;
use syncbridge::{telemetry, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let sdk = aws_config::load_from_env().await;
    let deps = wiring::deps_with_system_clock(&config, &sdk)?;
    run(api::router(wiring::api_state(&deps, &config))).await
}
