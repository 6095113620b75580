//! Worker Lambda: SQS batches of sync jobs -> the sync engine (`syncbridge::sync::worker`).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use syncbridge::sync::{Deadline, worker};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (_, deps) = syncbridge::wiring::from_env().await?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = Deadline::from_epoch_millis(event.context.deadline);
        Ok::<SqsBatchResponse, Error>(worker::handle_batch(deps, event.payload, deadline).await)
    }))
    .await
}
