//! The local runner: plays the parts AWS plays around our handlers. It fires the EventBridge
//! schedule into the dispatcher handler, and, like Lambda's SQS event source mapping, receives
//! batches from the jobs queue, hands them to the worker handler as real `SqsEvent`s, deletes what
//! succeeded and leaves the reported failures to reappear after the queue's visibility timeout.

use std::time::Duration;

use anyhow::{Context, Result};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use syncbridge::sync::dispatcher::{DispatchSummary, handle_schedule};
use syncbridge::sync::{Deadline, Deps, worker};

/// The worker function's timeout in template.yaml; each local invocation gets this deadline.
pub const WORKER_TIMEOUT: Duration = Duration::from_secs(120);

/// How long an idle poller waits before asking the queue again.
pub const IDLE_POLL: Duration = Duration::from_millis(200);

/// What one delivery of a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    pub received: usize,
    pub failed: usize,
    /// The worker handler's time on the batch (what Lambda bills, less its rounding).
    pub handler: Duration,
}

/// Totals of [`Runner::drain`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    pub batches: usize,
    pub messages: usize,
    pub failures: usize,
    /// The worker handler's time over all batches.
    pub handler: Duration,
}

#[derive(Clone)]
pub struct Runner {
    pub deps: Deps,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue_arn: String,
    pub worker_timeout: Duration,
    /// When set, every batch is handed to the worker twice (SQS's at-least-once delivery at its
    /// worst), and only the second answer decides what is deleted.
    pub deliver_twice: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Runner {
    pub async fn new(deps: Deps, sqs: aws_sdk_sqs::Client, queue_url: String) -> Result<Self> {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .context("reading the jobs queue's ARN")?;
        let queue_arn = attrs
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .unwrap_or_default();
        Ok(Self {
            deps,
            sqs,
            queue_url,
            queue_arn,
            worker_timeout: WORKER_TIMEOUT,
            deliver_twice: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }

    /// Fires the schedule once, as EventBridge would at `at`, through the dispatcher's handler.
    pub async fn fire_schedule(&self, at: DateTime<Utc>) -> Result<DispatchSummary> {
        let event: EventBridgeEvent<Value> = serde_json::from_value(json!({
            "version": "0",
            "id": ulid::Ulid::new().to_string(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "000000000000",
            "time": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:000000000000:rule/syncbridge-schedule"],
            "detail": {}
        }))
        .context("building the scheduled event")?;
        Ok(handle_schedule(&self.deps, event).await?)
    }

    /// Receives one batch (up to 10, long-polling up to `wait`) and delivers it to the worker.
    /// Locally moto serves one request at a time, so callers short-poll (`Duration::ZERO`).
    pub async fn deliver_once(&self, wait: Duration) -> Result<Delivery> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .context("receiving from the jobs queue")?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(Delivery::default());
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attributes: serde_json::Map<String, Value> = m
                    .attributes()
                    .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), json!(v))).collect())
                    .unwrap_or_default();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "md5OfBody": m.md5_of_body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        let event: SqsEvent =
            serde_json::from_value(json!({ "Records": records })).context("building the SQS event")?;
        if self.deliver_twice.load(std::sync::atomic::Ordering::Relaxed) {
            worker::handle_batch(&self.deps, event.clone(), Deadline::after(self.worker_timeout)).await;
        }
        let started = std::time::Instant::now();
        let response = worker::handle_batch(&self.deps, event, Deadline::after(self.worker_timeout)).await;
        let handler = started.elapsed();
        let failed: Vec<String> =
            response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .set_receipt_handle(m.receipt_handle().map(str::to_owned))
                    .build()
                    .ok()
            })
            .collect();
        if !entries.is_empty() {
            let out = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .context("deleting handled messages")?;
            if !out.failed().is_empty() {
                anyhow::bail!("{} handled message(s) could not be deleted", out.failed().len());
            }
        }
        Ok(Delivery { received: messages.len(), failed: failed.len(), handler })
    }

    /// Delivers batches until the queue holds nothing visible or in flight, or `limit` passes.
    pub async fn drain(&self, limit: Duration) -> Result<Drained> {
        let started = std::time::Instant::now();
        let mut total = Drained::default();
        while started.elapsed() < limit {
            let d = self.deliver_once(Duration::ZERO).await?;
            if d.received > 0 {
                total.batches += 1;
                total.messages += d.received;
                total.failures += d.failed;
                total.handler += d.handler;
                continue;
            }
            if self.queue_depth().await? == 0 {
                return Ok(total);
            }
            tokio::time::sleep(IDLE_POLL).await;
        }
        anyhow::bail!("the jobs queue did not drain within {limit:?}")
    }

    /// Messages visible plus in flight.
    pub async fn queue_depth(&self) -> Result<u64> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .context("reading the queue depth")?;
        let attrs = out.attributes.unwrap_or_default();
        let get = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Ok(get(QueueAttributeName::ApproximateNumberOfMessages)
            + get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
    }
}
