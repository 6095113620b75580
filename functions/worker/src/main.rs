//! Worker Lambda: SQS batches of sync jobs -> the sync engine (`syncbridge::sync::worker`).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use syncbridge::sync::{Deadline, worker};
use syncbridge::telemetry::metrics;
use syncbridge::wiring::{self, Function};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (_, deps) = wiring::from_env(Function::Worker).await?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = Deadline::from_epoch_millis(event.context.deadline);
        let response = worker::handle_batch(deps, event.payload, deadline).await;
        metrics::flush();
        Ok::<SqsBatchResponse, Error>(response)
    }))
    .await
}
