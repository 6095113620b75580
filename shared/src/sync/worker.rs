//! The worker: handles a batch of SQS job messages. Each job syncs one connection: refresh its
//! token, pull each object type from its cursor page by page (checkpointing after every page),
//! record the run, audit, and announce changes. It reports only the messages to retry.

use std::collections::HashMap;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use serde_json::json;
use tracing::{error, info, warn};

use super::pull::{ApplyError, apply_page, created_summary};
use super::{Deadline, Deps};
use crate::domain::job::JobParseError;
use crate::domain::{
    AuditEntry, AuditOutcome, Connection, ConnectionStatus, DomainEvent, Job, JobKind, JobReason, Operation,
    RunCounts, RunId, RunStatus, SyncRun, TenantId,
};
use crate::ports::{BusError, ProviderClient, ProviderError, QueueError, StoreError};

/// Why a job did not complete.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job message rejected: {0}")]
    BadMessage(#[from] JobParseError),
    #[error("connection not found")]
    ConnectionNotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

impl JobError {
    /// Whether redelivering the job can help. Permanent failures are audited and acknowledged.
    pub fn is_retryable(&self) -> bool {
        match self {
            JobError::BadMessage(_) | JobError::ConnectionNotFound => false,
            JobError::Store(e) => e.is_retryable() || matches!(e, StoreError::Conflict),
            JobError::Provider(e) => e.is_retryable(),
            JobError::Queue(_) | JobError::Bus(_) | JobError::Apply(_) => true,
        }
    }
}

/// What a job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Completed {
        run_id: RunId,
        counts: RunCounts,
    },
    /// Ran low on time; a continuation job carries on from the checkpoint.
    Continued {
        run_id: RunId,
        counts: RunCounts,
    },
    /// The job had already finished (a redelivery): nothing was done.
    AlreadyDone,
    /// The job failed permanently: recorded and acknowledged.
    Rejected,
}

/// Handles one SQS batch. Messages of one message group (one connection) are handled in order; a
/// group stops at its first retryable failure and reports that message and the rest of its group,
/// so FIFO order holds. Other groups run concurrently and are unaffected.
pub async fn handle_batch(deps: &Deps, event: SqsEvent, deadline: Deadline) -> SqsBatchResponse {
    let mut groups: Vec<(String, Vec<SqsMessage>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for msg in event.records {
        let group = msg.attributes.get("MessageGroupId").cloned().unwrap_or_default();
        let i = *index.entry(group.clone()).or_insert_with(|| {
            groups.push((group, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(msg);
    }
    let failures = join_all(groups.into_iter().map(|(_, msgs)| handle_group(deps, msgs, deadline))).await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .flatten()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    response
}

async fn handle_group(deps: &Deps, msgs: Vec<SqsMessage>, deadline: Deadline) -> Vec<String> {
    let mut failed = Vec::new();
    for msg in msgs {
        let id = msg.message_id.clone().unwrap_or_default();
        if !failed.is_empty() {
            failed.push(id);
            continue;
        }
        if !handle_message(deps, &msg, deadline).await {
            failed.push(id);
        }
    }
    failed
}

/// Handles one message; `false` means "deliver it again".
async fn handle_message(deps: &Deps, msg: &SqsMessage, deadline: Deadline) -> bool {
    let receives: u32 =
        msg.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1);
    let job = match Job::parse(msg.body.as_deref().unwrap_or("")) {
        Ok(job) => job,
        Err(e) => {
            warn!(message_id = ?msg.message_id, error = %e, "rejecting malformed job message");
            let entry = AuditEntry::new(
                TenantId::system(),
                Operation::Error,
                AuditOutcome::Rejected,
                "worker",
                deps.clock.now(),
            )
            .detail(json!({
                "reason": "malformed_job",
                "error": e.to_string(),
                "message_id": msg.message_id,
            }));
            return append_audit(deps, &[entry]).await;
        }
    };
    match run_job(deps, &job, deadline).await {
        Ok(outcome) => {
            info!(job_id = %job.job_id, ?outcome, "job handled");
            true
        }
        Err(e) if e.is_retryable() => {
            warn!(job_id = %job.job_id, receives, error = %error_chain(&e), "job failed; will retry");
            record_failure(
                deps,
                &job,
                &e,
                receives >= deps.settings.max_receives,
                AuditOutcome::Failure,
                Operation::Retry,
            )
            .await;
            false
        }
        Err(e) => {
            error!(job_id = %job.job_id, error = %error_chain(&e), "job failed permanently");
            record_failure(deps, &job, &e, true, AuditOutcome::Rejected, Operation::Error).await;
            true
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

async fn append_audit(deps: &Deps, entries: &[AuditEntry]) -> bool {
    match deps.audit.append(entries).await {
        Ok(()) => true,
        Err(e) => {
            error!(error = %error_chain(&e), "audit append failed");
            false
        }
    }
}

/// Audits a failed job and, when it will not be retried (or retries are used up), shows the
/// connection as `error` with the reason.
async fn record_failure(
    deps: &Deps,
    job: &Job,
    err: &JobError,
    mark_error: bool,
    outcome: AuditOutcome,
    op: Operation,
) {
    let now = deps.clock.now();
    let entry = AuditEntry::new(job.tenant_id.clone(), op, outcome, "worker", now)
        .connection(&job.connection_id)
        .detail(json!({ "job_id": job.job_id, "error": err.to_string(), "retryable": err.is_retryable() }));
    append_audit(deps, &[entry]).await;
    if !mark_error {
        return;
    }
    for _ in 0..3 {
        let Ok(Some(mut c)) = deps.connections.get(&job.tenant_id, &job.connection_id).await else {
            return;
        };
        c.status = ConnectionStatus::Error;
        c.last_error = Some(err.to_string());
        match deps.connections.save_state(&c).await {
            Err(StoreError::Conflict) => continue,
            Err(e) => {
                error!(error = %error_chain(&e), "could not mark connection as failed");
                return;
            }
            Ok(_) => return,
        }
    }
}

/// Runs one job to completion, a continuation, or an error.
pub async fn run_job(deps: &Deps, job: &Job, deadline: Deadline) -> Result<JobOutcome, JobError> {
    match job.kind {
        JobKind::Sync => sync_connection(deps, job, deadline).await,
    }
}

async fn sync_connection(deps: &Deps, job: &Job, deadline: Deadline) -> Result<JobOutcome, JobError> {
    let (tenant, conn_id) = (&job.tenant_id, &job.connection_id);
    if deps.runs.job_done(tenant, conn_id, &job.job_id).await? {
        info!(job_id = %job.job_id, "job already done; acknowledging redelivery");
        return Ok(JobOutcome::AlreadyDone);
    }
    let mut conn = deps.connections.get(tenant, conn_id).await?.ok_or(JobError::ConnectionNotFound)?;
    let started_at = deps.clock.now();
    let started = std::time::Instant::now();
    let run_id = RunId::generate();
    if conn.status != ConnectionStatus::Pending {
        conn.status = ConnectionStatus::Pending;
        conn.version = deps.connections.save_state(&conn).await?;
    }
    let client = deps.providers.client(&conn)?;
    ensure_fresh_token(deps, &mut conn, client.as_ref(), false).await?;

    let mut counts = RunCounts::default();
    let mut continued = false;
    let result = pull_all(deps, &mut conn, client.as_ref(), deadline, &mut counts, &mut continued).await;
    let stats = client.stats();
    counts.requests = stats.requests;
    counts.rate_limited = stats.rate_limited;
    result?;

    let finished_at = deps.clock.now();
    if continued {
        let next = Job::sync(
            tenant.clone(),
            conn_id.clone(),
            Job::requested_id(conn_id, JobReason::Continuation),
            JobReason::Continuation,
            finished_at,
        );
        deps.queue.enqueue(std::slice::from_ref(&next)).await?;
    } else {
        conn.status = ConnectionStatus::Synced;
        conn.last_sync_at = Some(finished_at);
        conn.last_error = None;
    }
    conn.last_run_id = Some(run_id.clone());
    let run = SyncRun {
        tenant_id: tenant.clone(),
        connection_id: conn_id.clone(),
        run_id: run_id.clone(),
        job_id: job.job_id.clone(),
        reason: job.reason,
        status: if continued { RunStatus::Continued } else { RunStatus::Succeeded },
        started_at,
        finished_at,
        duration_ms: started.elapsed().as_millis() as u64,
        counts,
        error: None,
    };
    deps.runs.finish(&conn, &run).await?;
    let summary = AuditEntry::new(tenant.clone(), Operation::Pull, AuditOutcome::Success, "worker", finished_at)
        .connection(conn_id)
        .detail(json!({ "run_id": run_id, "job_id": job.job_id, "reason": job.reason, "counts": counts, "continued": continued }));
    deps.audit.append(&[summary]).await?;
    if !continued {
        deps.bus
            .publish(&[DomainEvent::SyncCompleted {
                tenant_id: tenant.clone(),
                connection_id: conn_id.clone(),
                run_id: run_id.clone(),
                counts,
            }])
            .await?;
    }
    Ok(if continued {
        JobOutcome::Continued { run_id, counts }
    } else {
        JobOutcome::Completed { run_id, counts }
    })
}

/// Refreshes the access token when it is near expiry (or `force`d after a 401), and stores it.
async fn ensure_fresh_token(
    deps: &Deps,
    conn: &mut Connection,
    client: &dyn ProviderClient,
    force: bool,
) -> Result<bool, JobError> {
    let now = deps.clock.now();
    let due = conn.credentials.needs_refresh(now, deps.settings.refresh_margin)
        || (force && conn.credentials.refresh_token.is_some());
    let Some(refresh_token) = conn.credentials.refresh_token.clone().filter(|_| due) else {
        return Ok(false);
    };
    let fresh = client.refresh(&refresh_token).await?;
    conn.credentials =
        crate::domain::Credentials { refresh_token: fresh.refresh_token.or(Some(refresh_token)), ..fresh };
    conn.version = deps.connections.save_state(conn).await?;
    let entry = AuditEntry::new(
        conn.tenant_id.clone(),
        Operation::TokenRefreshed,
        AuditOutcome::Success,
        "worker",
        now,
    )
    .connection(&conn.connection_id)
    .detail(json!({ "expires_at": conn.credentials.expires_at }));
    deps.audit.append(&[entry]).await?;
    Ok(true)
}

/// Pulls every object type of the connection from its cursor, checkpointing after every page.
/// Sets `continued` when it stopped early because the deadline came near.
async fn pull_all(
    deps: &Deps,
    conn: &mut Connection,
    client: &dyn ProviderClient,
    deadline: Deadline,
    counts: &mut RunCounts,
    continued: &mut bool,
) -> Result<(), JobError> {
    let mut refreshed_after_401 = false;
    for &object in conn.provider.object_types() {
        loop {
            if deadline.remaining() <= deps.settings.deadline_margin {
                *continued = true;
                return Ok(());
            }
            let cursor = conn.cursors.get(&object).cloned();
            let page = match client.pull_page(&conn.credentials.access_token, object, cursor.as_ref()).await {
                Ok(page) => page,
                Err(ProviderError::Unauthorized) if !refreshed_after_401 => {
                    refreshed_after_401 = true;
                    if ensure_fresh_token(deps, conn, client, true).await? {
                        continue;
                    }
                    return Err(ProviderError::Unauthorized.into());
                }
                Err(ProviderError::CursorExpired) if cursor.is_some() => {
                    warn!(connection = %conn.connection_id, %object, "cursor expired; starting a full pull");
                    conn.cursors.remove(&object);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            counts.pages += 1;
            counts.pulled += page.records.len() as u64;
            let now = deps.clock.now();
            let applied = apply_page(deps.records.as_ref(), conn, object, page.records, now).await?;
            counts.created += applied.outcome.created.len() as u64;
            counts.updated += applied.outcome.updated.len() as u64;
            counts.deleted += applied.outcome.deleted.len() as u64;
            counts.unchanged += applied.outcome.unchanged;
            let mut audit = applied.audit;
            audit.extend(created_summary(conn, object, &applied.outcome.created, now));
            deps.audit.append(&audit).await?;
            deps.bus.publish(&applied.events).await?;
            let count = conn.record_counts.entry(object).or_insert(0);
            *count = (*count + applied.outcome.created.len() as u64)
                .saturating_sub(applied.outcome.deleted.len() as u64);
            conn.cursors.insert(object, page.cursor);
            conn.version = deps.connections.save_state(conn).await?;
            if !page.has_more {
                break;
            }
        }
    }
    Ok(())
}
