//! Domain events on an EventBridge bus: `PutEvents` in chunks of 10, retrying the entries counted in
//! `FailedEntryCount`.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::{PutEventsRequestEntry, PutEventsResultEntry};

use crate::domain::DomainEvent;
use crate::domain::event::EVENT_SOURCE;
use crate::ports::{BusError, EventBus};

/// EventBridge's limit of entries in one `PutEvents`.
const BATCH_SIZE: usize = 10;
/// Attempts after the first for entries that failed.
const ENTRY_RETRIES: u32 = 3;

/// An `EventBus` on one named EventBridge bus. Build once per process and share.
#[derive(Debug, Clone)]
pub struct EventBridgeBus {
    client: Client,
    bus_name: String,
}

impl EventBridgeBus {
    pub fn new(client: Client, bus_name: impl Into<String>) -> Self {
        Self { client, bus_name: bus_name.into() }
    }

    fn entry(&self, event: &DomainEvent) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus_name)
            .source(EVENT_SOURCE)
            .detail_type(event.detail_type())
            .detail(event.detail())
            .build()
    }

    /// Puts one chunk (at most 10 events); returns the indexes (into `events`) that failed.
    async fn put_chunk(&self, events: &[&DomainEvent]) -> Result<Vec<usize>, BusError> {
        let entries = events.iter().map(|e| self.entry(e)).collect();
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| BusError::Backend(Box::new(e)))?;
        Ok(failed_indexes(out.failed_entry_count(), out.entries(), events.len()))
    }
}

/// Indexes of failed entries: those whose result carries an error code. When the count says some
/// failed but the results do not say which (or do not line up with what was sent), every entry is
/// treated as failed, since retrying an accepted event only duplicates it while skipping a failed
/// one loses it.
fn failed_indexes(failed_count: i32, results: &[PutEventsResultEntry], sent: usize) -> Vec<usize> {
    if failed_count <= 0 {
        return Vec::new();
    }
    let marked: Vec<usize> =
        results.iter().enumerate().filter(|(_, r)| r.error_code().is_some()).map(|(i, _)| i).collect();
    if results.len() != sent || marked.is_empty() {
        return (0..sent).collect();
    }
    marked
}

fn backoff(attempt: u32) -> Duration {
    crate::retry::backoff(Duration::from_millis(100), Duration::from_millis(6400), attempt)
}

#[async_trait]
impl EventBus for EventBridgeBus {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), BusError> {
        let mut lost = 0usize;
        for chunk in events.chunks(BATCH_SIZE) {
            let mut pending: Vec<&DomainEvent> = chunk.iter().collect();
            let mut attempt = 0;
            loop {
                let failed = self.put_chunk(&pending).await?;
                if failed.is_empty() {
                    break;
                }
                if attempt >= ENTRY_RETRIES {
                    tracing::warn!(count = failed.len(), "events were not accepted by the bus");
                    lost += failed.len();
                    break;
                }
                pending = failed.into_iter().map(|i| pending[i]).collect();
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        if lost == 0 { Ok(()) } else { Err(BusError::Partial(lost)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> PutEventsResultEntry {
        PutEventsResultEntry::builder().event_id("e").build()
    }

    fn failed() -> PutEventsResultEntry {
        PutEventsResultEntry::builder().error_code("InternalFailure").build()
    }

    #[test]
    fn failed_entries_are_found_by_their_index() {
        assert_eq!(failed_indexes(0, &[ok(), ok()], 2), Vec::<usize>::new());
        assert_eq!(failed_indexes(2, &[failed(), ok(), failed()], 3), vec![0, 2]);
    }

    #[test]
    fn a_failure_count_without_usable_results_retries_every_entry() {
        assert_eq!(failed_indexes(1, &[ok(), ok()], 2), vec![0, 1]);
        assert_eq!(failed_indexes(1, &[failed()], 3), vec![0, 1, 2]);
    }
}
