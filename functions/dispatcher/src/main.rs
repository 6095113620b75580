//! Dispatcher Lambda: the EventBridge schedule -> due connections -> sync jobs on SQS
//! (`syncbridge::sync::dispatcher`).

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use syncbridge::sync::dispatcher::{self, DispatchError, DispatchSummary};
use syncbridge::telemetry::metrics;
use syncbridge::wiring::{self, Function};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (_, deps) = wiring::from_env(Function::Dispatcher).await?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
        // A failure's Lambda error type names its class (`DispatchError.Store.Unavailable`, ...).
        let summary: Result<DispatchSummary, DispatchError> =
            dispatcher::handle_schedule(deps, event.payload).await;
        metrics::flush();
        summary
    }))
    .await
}
