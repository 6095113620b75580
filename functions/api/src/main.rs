//! API Lambda: API Gateway HTTP API (JWT-authorized) -> the axum router in `syncbridge::http::api`.

use lambda_http::{Error, run};
use syncbridge::{http::api, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, deps) = wiring::from_env().await?;
    run(api::router(wiring::api_state(&deps, &config))).await
}
