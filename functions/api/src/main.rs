//! API Lambda: API Gateway HTTP API (JWT-authorized) -> the axum router in `syncbridge::http`,
//! with the dashboard's files in front of it when a sign-in for the dashboard is configured.

use lambda_http::{Error, run};
use syncbridge::http::dashboard::{self, DashboardAuth};
use syncbridge::{http as api, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, deps) = wiring::from_env().await?;
    let api = api::router(wiring::api_state(&deps, &config));
    match DashboardAuth::oidc_from_env() {
        Some(auth) => run(dashboard::in_front_of(api, auth)).await,
        None => run(api).await,
    }
}
