//! Dispatcher Lambda: the EventBridge schedule -> due connections -> sync jobs on SQS
//! (`syncbridge::sync::dispatcher`).

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use syncbridge::config::Config;
use syncbridge::sync::dispatcher::{self, DispatchSummary};
use syncbridge::{telemetry, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let sdk = aws_config::load_from_env().await;
    let deps = wiring::deps_with_system_clock(&config, &sdk)?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
        Ok::<DispatchSummary, Error>(dispatcher::handle_schedule(deps, event.payload).await?)
    }))
    .await
}
