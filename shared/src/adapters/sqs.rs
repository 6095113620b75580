//! The jobs queue on SQS FIFO: `SendMessageBatch` in chunks of 10, retrying entries SQS reports as
//! failed through no fault of ours.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{BatchResultErrorEntry, SendMessageBatchRequestEntry};
use futures::{StreamExt, stream};

use crate::domain::{Job, JobId};
use crate::ports::{JobQueue, QueueError};

/// SQS's limit of entries in one `SendMessageBatch`.
const BATCH_SIZE: usize = 10;
/// Attempts after the first for entries that failed with `SenderFault = false`.
const ENTRY_RETRIES: u32 = 3;

/// A `JobQueue` on one SQS FIFO queue. Build once per process and share.
#[derive(Debug, Clone)]
pub struct SqsJobQueue {
    client: Client,
    queue_url: String,
}

impl SqsJobQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }

    /// Sends one chunk (at most 10 jobs); returns the indexes (into `jobs`) that failed, and
    /// whether each may be retried.
    async fn send_chunk(&self, jobs: &[&Job]) -> Result<Vec<(usize, bool)>, QueueError> {
        let entries = jobs.iter().enumerate().map(|(i, job)| entry(i, job)).collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| QueueError::Backend(Box::new(e)))?;
        Ok(classify_failures(out.failed(), jobs.len()))
    }
}

fn entry(index: usize, job: &Job) -> Result<SendMessageBatchRequestEntry, QueueError> {
    SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(job.to_body())
        .message_group_id(job.message_group())
        .message_deduplication_id(job.job_id.as_str())
        .build()
        .map_err(|e| QueueError::Backend(Box::new(e)))
}

/// The failed entries of one batch as `(index, retryable)`. An entry id we did not send (which SQS
/// never returns) is ignored; `retryable` is SQS's `SenderFault == false`.
fn classify_failures(failed: &[BatchResultErrorEntry], sent: usize) -> Vec<(usize, bool)> {
    let mut out: Vec<(usize, bool)> = failed
        .iter()
        .filter_map(|f| f.id().parse::<usize>().ok().filter(|i| *i < sent).map(|i| (i, !f.sender_fault())))
        .collect();
    out.sort_unstable();
    out.dedup_by_key(|(i, _)| *i);
    out
}

fn backoff(attempt: u32) -> Duration {
    crate::retry::backoff(Duration::from_millis(100), Duration::from_millis(6400), attempt)
}

impl SqsJobQueue {
    /// Sends one chunk, retrying the entries SQS marks retryable; returns the ids that were lost.
    async fn send_with_retries(&self, chunk: &[Job]) -> Result<Vec<JobId>, QueueError> {
        let mut lost: Vec<JobId> = Vec::new();
        let mut pending: Vec<&Job> = chunk.iter().collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            let failures = self.send_chunk(&pending).await?;
            let mut retry = Vec::new();
            for (index, retryable) in failures {
                let job = pending[index];
                if retryable && attempt < ENTRY_RETRIES {
                    retry.push(job);
                } else {
                    tracing::warn!(job_id = %job.job_id, retryable, "job was not enqueued");
                    lost.push(job.job_id.clone());
                }
            }
            pending = retry;
            if !pending.is_empty() {
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        Ok(lost)
    }
}

/// Batches in flight at once when every job of an `enqueue` has its own message group.
const CONCURRENT_BATCHES: usize = 8;

#[async_trait]
impl JobQueue for SqsJobQueue {
    /// Chunks go out one after the other when two jobs share a message group (FIFO order within
    /// a group is the order of sending), and up to [`CONCURRENT_BATCHES`] at once otherwise (the
    /// dispatcher's pages: one job per connection).
    async fn enqueue(&self, jobs: &[Job]) -> Result<(), QueueError> {
        let groups: HashSet<String> = jobs.iter().map(Job::message_group).collect();
        let in_flight = if groups.len() == jobs.len() { CONCURRENT_BATCHES } else { 1 };
        let sends: Vec<_> = jobs.chunks(BATCH_SIZE).map(|chunk| self.send_with_retries(chunk)).collect();
        let results: Vec<Result<Vec<JobId>, QueueError>> =
            stream::iter(sends).buffered(in_flight).collect().await;
        let mut lost: Vec<JobId> = Vec::new();
        for r in results {
            lost.extend(r?);
        }
        if lost.is_empty() { Ok(()) } else { Err(QueueError::Partial(lost)) }
    }

    async fn retry_later(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        // SQS allows 0 to 43,200 seconds.
        let seconds = delay.as_secs().min(43_200) as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| QueueError::Backend(Box::new(e)))?;
        Ok(())
    }
}

/// Moves up to `max` messages from the dead-letter queue `dlq_url` back to `queue_url` (FIFO: same
/// message group, a fresh deduplication id so SQS does not drop them as repeats), deleting each from
/// the DLQ only after it was sent. Returns how many moved. Jobs are idempotent (the job ledger), so a
/// message moved twice after a crash is handled once.
pub async fn redrive(
    client: &Client,
    dlq_url: &str,
    queue_url: &str,
    max: usize,
) -> Result<usize, QueueError> {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let backend = |e: Box<dyn std::error::Error + Send + Sync>| QueueError::Backend(e);
    let mut moved = 0;
    while moved < max {
        let out = client
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(10.min((max - moved) as i32))
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .map_err(|e| backend(Box::new(e)))?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            let group = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned()
                .unwrap_or_else(|| "redrive".to_owned());
            let dedup = format!("redrive-{}", m.message_id().unwrap_or_default());
            client
                .send_message()
                .queue_url(queue_url)
                .message_body(m.body().unwrap_or_default())
                .message_group_id(group)
                .message_deduplication_id(dedup.chars().take(128).collect::<String>())
                .send()
                .await
                .map_err(|e| backend(Box::new(e)))?;
            if let Some(handle) = m.receipt_handle() {
                client
                    .delete_message()
                    .queue_url(dlq_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .map_err(|e| backend(Box::new(e)))?;
            }
            moved += 1;
            crate::telemetry::metrics::redriven(1);
        }
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(id: &str, sender_fault: bool) -> BatchResultErrorEntry {
        BatchResultErrorEntry::builder()
            .id(id)
            .sender_fault(sender_fault)
            .code("InternalError")
            .build()
            .unwrap()
    }

    #[test]
    fn failed_entries_are_retryable_only_when_not_the_senders_fault() {
        let failed = [failure("3", true), failure("1", false), failure("1", false), failure("x", false)];
        assert_eq!(classify_failures(&failed, 4), vec![(1, true), (3, false)]);
        assert_eq!(classify_failures(&[failure("9", false)], 4), vec![]);
    }

    #[test]
    fn batch_entries_carry_group_and_dedup_ids_of_the_job() {
        let c = crate::domain::ConnectionId::parse("c1").unwrap();
        let job = Job::sync(
            crate::domain::TenantId::parse("t1").unwrap(),
            c.clone(),
            Job::scheduled_id(&c, chrono::Utc::now()),
            crate::domain::JobReason::Schedule,
            chrono::Utc::now(),
        );
        let e = entry(7, &job).unwrap();
        assert_eq!(e.id(), "7");
        assert_eq!(e.message_group_id(), Some("t1#c1"));
        assert_eq!(e.message_deduplication_id(), Some(job.job_id.as_str()));
        assert_eq!(Job::parse(e.message_body()).unwrap(), job);
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert!(backoff(1) <= Duration::from_millis(200) && backoff(3) >= Duration::from_millis(400));
        assert!(backoff(20) <= Duration::from_millis(6_400));
    }
}
