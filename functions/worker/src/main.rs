//! Worker Lambda: SQS batches of sync jobs -> the sync engine (`syncbridge::sync::worker`).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use syncbridge::config::Config;
use syncbridge::sync::{Deadline, worker};
use syncbridge::{telemetry, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let sdk = aws_config::load_from_env().await;
    let deps = wiring::deps_with_system_clock(&config, &sdk)?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = Deadline::from_epoch_millis(event.context.deadline);
        Ok::<SqsBatchResponse, Error>(worker::handle_batch(deps, event.payload, deadline).await)
    }))
    .await
}
