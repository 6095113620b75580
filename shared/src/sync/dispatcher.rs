//! The dispatcher: on every schedule tick, finds due connections in the sharded due index, claims
//! each slot with a conditional write (so overlapping dispatchers never enqueue a slot twice), and
//! enqueues one sync job per claimed slot. Shards are dispatched in parallel, and within a shard a
//! page of claims is in flight at once.

use chrono::{DateTime, Duration, Utc};
use futures::future::try_join_all;
use futures::{StreamExt, stream};
use serde::Serialize;
use tracing::{info, warn};

use super::Deps;
use crate::domain::{Job, JobReason};
use crate::ports::{DueConnection, QueueError, StoreError};
use crate::telemetry::metrics;

/// Due connections read from the index a query (about 120 bytes each projected: a page is far
/// below the 1 MB a query returns).
const DUE_PAGE: usize = 1000;
/// Upper bound on index queries a shard per tick, so one tick always ends.
const MAX_ROUNDS: usize = 1000;
/// Claims (conditional updates) in flight per shard.
const CLAIM_CONCURRENCY: usize = 16;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DispatchSummary {
    pub due: u64,
    pub claimed: u64,
    pub enqueued: u64,
    /// Slots another dispatcher claimed first.
    pub lost_races: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl DispatchError {
    /// The error's class, as the Lambda error type of a failed invocation (so that metrics and
    /// alarms on `Errors` can tell a throttled table from a lost queue).
    pub fn class(&self) -> &'static str {
        match self {
            DispatchError::Store(StoreError::Conflict) => "Store.Conflict",
            DispatchError::Store(StoreError::Unavailable(_)) => "Store.Unavailable",
            DispatchError::Store(StoreError::Corrupt(_)) => "Store.Corrupt",
            DispatchError::Store(StoreError::InvalidPageToken) => "Store.InvalidPageToken",
            DispatchError::Store(StoreError::Backend(_)) => "Store.Backend",
            DispatchError::Queue(QueueError::Partial(_)) => "Queue.Partial",
            DispatchError::Queue(QueueError::Backend(_)) => "Queue.Backend",
        }
    }
}

/// A failed invocation reports its class as the error type and the message without internals.
impl From<DispatchError> for lambda_runtime::Diagnostic {
    fn from(e: DispatchError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: format!("DispatchError.{}", e.class()),
            error_message: e.to_string(),
        }
    }
}

/// The Lambda handler: one EventBridge scheduled event.
pub async fn handle_schedule(
    deps: &Deps,
    event: aws_lambda_events::event::eventbridge::EventBridgeEvent<serde_json::Value>,
) -> Result<DispatchSummary, DispatchError> {
    dispatch(deps, event.time).await
}

/// One schedule tick at time `now` (the later of the event's time and the clock).
pub async fn dispatch(
    deps: &Deps,
    event_time: Option<DateTime<Utc>>,
) -> Result<DispatchSummary, DispatchError> {
    let now = event_time.map_or_else(|| deps.clock.now(), |t| t.max(deps.clock.now()));
    let shards = (0..deps.settings.due_shards).map(|shard| dispatch_shard(deps, shard, now));
    let mut total = DispatchSummary::default();
    for s in try_join_all(shards).await? {
        total.due += s.due;
        total.claimed += s.claimed;
        total.enqueued += s.enqueued;
        total.lost_races += s.lost_races;
    }
    info!(?total, %now, "dispatch finished");
    metrics::dispatched(total.due, total.claimed, total.enqueued, total.lost_races);
    Ok(total)
}

async fn dispatch_shard(
    deps: &Deps,
    shard: u16,
    now: DateTime<Utc>,
) -> Result<DispatchSummary, DispatchError> {
    let mut summary = DispatchSummary::default();
    for _ in 0..MAX_ROUNDS {
        let due = deps.connections.due(shard, now, DUE_PAGE).await?;
        let batch_len = due.len();
        summary.due += batch_len as u64;
        let results: Vec<(DueConnection, DateTime<Utc>, Result<bool, StoreError>)> = stream::iter(due)
            .map(|d| async move {
                let next = next_slot(&d, now);
                let won =
                    deps.connections.claim_slot(&d.tenant_id, &d.connection_id, d.next_sync_at, next).await;
                (d, next, won)
            })
            .buffer_unordered(CLAIM_CONCURRENCY)
            .collect()
            .await;
        let mut claimed: Vec<(DueConnection, DateTime<Utc>)> = Vec::new();
        let mut failed: Option<StoreError> = None;
        for (d, next, won) in results {
            match won {
                Ok(true) => claimed.push((d, next)),
                Ok(false) => summary.lost_races += 1,
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        summary.claimed += claimed.len() as u64;
        let jobs: Vec<Job> = claimed
            .iter()
            .map(|(d, _)| {
                Job::sync(
                    d.tenant_id.clone(),
                    d.connection_id.clone(),
                    Job::scheduled_id(&d.connection_id, d.next_sync_at),
                    JobReason::Schedule,
                    now,
                )
            })
            .collect();
        // What was claimed is enqueued even when another claim of the page failed: a claimed slot
        // that is neither enqueued nor given back would skip an interval.
        match deps.queue.enqueue(&jobs).await {
            Ok(()) => summary.enqueued += jobs.len() as u64,
            Err(e) => {
                release_unsent(deps, &claimed, &e).await;
                return Err(e.into());
            }
        }
        if let Some(e) = failed {
            return Err(e.into());
        }
        if batch_len < DUE_PAGE {
            break;
        }
    }
    Ok(summary)
}

fn next_slot(d: &DueConnection, now: DateTime<Utc>) -> DateTime<Utc> {
    let interval = Duration::minutes(i64::from(d.interval_minutes.max(1)));
    let next = d.next_sync_at + interval;
    if next > now { next } else { now + interval }
}

/// Gives back the slots of jobs that could not be enqueued, so the next tick tries them again.
async fn release_unsent(deps: &Deps, claimed: &[(DueConnection, DateTime<Utc>)], err: &QueueError) {
    let unsent: Option<&Vec<crate::domain::JobId>> = match err {
        QueueError::Partial(ids) => Some(ids),
        QueueError::Backend(_) => None,
    };
    for (d, next) in claimed {
        let job_id = Job::scheduled_id(&d.connection_id, d.next_sync_at);
        if unsent.is_some_and(|ids| !ids.contains(&job_id)) {
            continue;
        }
        if let Err(e) =
            deps.connections.claim_slot(&d.tenant_id, &d.connection_id, *next, d.next_sync_at).await
        {
            warn!(connection = %d.connection_id, error = %e, "could not release an unsent slot");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_invocation_names_the_error_class_as_its_lambda_error_type() {
        let d: lambda_runtime::Diagnostic = DispatchError::Queue(QueueError::Partial(Vec::new())).into();
        assert_eq!(d.error_type, "DispatchError.Queue.Partial");
        let d: lambda_runtime::Diagnostic = DispatchError::Store(StoreError::Conflict).into();
        assert_eq!(d.error_type, "DispatchError.Store.Conflict");
        assert!(!d.error_message.is_empty());
    }
}
