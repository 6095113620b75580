//! API Lambda: API Gateway HTTP API (JWT-authorized) -> the axum router in `syncbridge::http`,
//! with the dashboard's files in front of it when a sign-in for the dashboard is configured.

use lambda_http::{Error, run};
use syncbridge::http::dashboard::{self, DashboardAuth};
use syncbridge::telemetry::metrics;
use syncbridge::{http as api, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (config, deps) = wiring::from_env(wiring::Function::Api).await?;
    let api = api::router(wiring::api_state(&deps, &config));
    let router = match DashboardAuth::oidc_from_env() {
        Some(auth) => dashboard::in_front_of(api, auth),
        None => api,
    };
    run(metrics::flush_after_each_response(router)).await
}
