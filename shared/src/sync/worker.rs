//! The worker: handles a batch of SQS job messages. Each job syncs one connection: refresh its
//! token, pull each object type from its cursor page by page (checkpointing after every page),
//! record the run, audit, and announce changes. It reports only the messages to retry.
//!
//! An object type whose pull fails with a permanent provider error does not stop the others: its
//! cursor stays, the error is kept on the connection (`object_errors`) with a `retry_at` that
//! doubles per consecutive failure, and the run is `partial`. Only when no object type synced is
//! the connection in `error`.

use std::collections::{BTreeMap, HashMap, HashSet};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use serde_json::json;
use tracing::Instrument;
use tracing::{error, info, warn};

use super::pull::{ApplyError, apply_page_audited, created_summary};
use super::push::{ProviderOrStore, push_approved, supersede_if_overtaken};
use super::tasks::{follow_up_tasks, link_meetings, research_tasks};
use super::{Deadline, Deps};
use crate::domain::job::JobParseError;
use crate::domain::record::Fields;
use crate::domain::{
    AuditEntry, AuditOutcome, Connection, ConnectionStatus, DomainEvent, ExternalId, Job, JobKind, JobReason,
    ObjectError, ObjectErrorClass, ObjectOutcome, ObjectRun, ObjectType, Operation, RemoteRecord, RunCounts,
    RunId, RunStatus, SyncRun, TenantId, UpsertOutcome,
};
use crate::domain::{ConflictItem, ConflictStatus};
use crate::ports::{BusError, ConflictQuery, ProviderClient, ProviderError, QueueError, StoreError};
use crate::telemetry::metrics;

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
    /// Finished with some object types failed (or waiting for their retry); the others synced.
    Partial {
        run_id: RunId,
        counts: RunCounts,
    },
    /// No object type synced: every one failed or waits for its retry. Recorded as a `failed`
    /// run, the connection shows `error`; acknowledged (retrying at once would fail the same way).
    Failed {
        run_id: RunId,
    },
    /// Every object type waits for its retry after failing, and the job was not asked for by a
    /// person: acknowledged without a run or a provider call.
    BackingOff,
    /// The job had already finished (a redelivery): nothing was done.
    AlreadyDone,
    /// The connection is paused: the job was dropped (resuming schedules a sync at once).
    Paused,
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
            metrics::job_failed(false);
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
    if let Some(wait) = wait_for_window(&job, deps.clock.now()) {
        info!(job_id = %job.job_id, wait_secs = wait.as_secs(), "webhook job waits for its coalescing window to close");
        if let Some(handle) = msg.receipt_handle.as_deref()
            && let Err(e) = deps.queue.retry_later(handle, wait).await
        {
            warn!(error = %error_chain(&e), "could not delay the job; SQS's visibility timeout applies");
        }
        return false;
    }
    let span = tracing::info_span!(
        "job",
        tenant = %job.tenant_id,
        connection = %job.connection_id,
        job_id = %job.job_id,
        reason = ?job.reason,
        provider = tracing::field::Empty,
    );
    match run_job(deps, &job, deadline).instrument(span).await {
        Ok(outcome) => {
            info!(job_id = %job.job_id, ?outcome, "job handled");
            true
        }
        Err(e) if e.is_retryable() => {
            warn!(job_id = %job.job_id, receives, error = %error_chain(&e), "job failed; will retry");
            metrics::job_failed(true);
            let s = &deps.settings;
            let delay = super::retry_delay(s.retry_base, s.retry_max, receives, rand::random::<f64>());
            if let Some(handle) = msg.receipt_handle.as_deref()
                && let Err(e) = deps.queue.retry_later(handle, delay).await
            {
                warn!(error = %error_chain(&e), "could not delay the retry; SQS's visibility timeout applies");
            }
            let last = receives >= s.max_receives;
            let next_attempt_at = (!last)
                .then(|| chrono::Duration::from_std(delay).ok().map(|d| deps.clock.now() + d))
                .flatten();
            let attempt = json!({ "attempt": receives, "max_attempts": s.max_receives, "next_attempt_at": next_attempt_at });
            record_failure(deps, &job, &e, last, AuditOutcome::Failure, Operation::Retry, attempt).await;
            false
        }
        Err(e) => {
            error!(job_id = %job.job_id, error = %error_chain(&e), "job failed permanently");
            metrics::job_failed(false);
            let attempt = json!({ "attempt": receives, "max_attempts": deps.settings.max_receives, "next_attempt_at": null });
            record_failure(deps, &job, &e, true, AuditOutcome::Rejected, Operation::Error, attempt).await;
            true
        }
    }
}

/// How long a job must still wait before it may start (`Job::not_before`), in whole seconds
/// rounded up (SQS counts visibility in seconds); `None` when it may start now.
fn wait_for_window(job: &Job, now: chrono::DateTime<chrono::Utc>) -> Option<std::time::Duration> {
    let not_before = job.not_before?;
    let millis = (not_before - now).num_milliseconds();
    (millis > 0).then(|| std::time::Duration::from_secs(((millis + 999) / 1000) as u64))
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
/// connection as `error` with the reason. `attempt` (`attempt`, `max_attempts`,
/// `next_attempt_at`) joins the entry's detail, for the API's retry state.
async fn record_failure(
    deps: &Deps,
    job: &Job,
    err: &JobError,
    mark_error: bool,
    outcome: AuditOutcome,
    op: Operation,
    attempt: serde_json::Value,
) {
    let now = deps.clock.now();
    let mut detail =
        json!({ "job_id": job.job_id, "error": err.to_string(), "retryable": err.is_retryable() });
    if let (Some(d), serde_json::Value::Object(a)) = (detail.as_object_mut(), attempt) {
        d.extend(a);
    }
    let entry = AuditEntry::new(job.tenant_id.clone(), op, outcome, "worker", now)
        .connection(&job.connection_id)
        .detail(detail);
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
    if conn.is_paused() {
        info!(job_id = %job.job_id, "connection is paused; dropping the job");
        return Ok(JobOutcome::Paused);
    }
    let started_at = deps.clock.now();
    let started = std::time::Instant::now();
    let run_id = RunId::generate();
    // A person asked (sync now, retry): failed object types are tried at once. Otherwise a job
    // that would only find object types waiting for their retry does nothing (pushes still run).
    let mut retry_now = false;
    if job.reason == JobReason::Manual {
        for error in conn.object_errors.values_mut().filter(|e| e.waiting(started_at)) {
            error.retry_at = started_at;
            retry_now = true;
        }
    } else if job.reason != JobReason::Push
        && conn
            .provider
            .object_types()
            .iter()
            .all(|o| conn.object_errors.get(o).is_some_and(|e| e.waiting(started_at)))
    {
        info!(job_id = %job.job_id, "every object type waits for its retry; nothing to do");
        return Ok(JobOutcome::BackingOff);
    }
    // A job found `inflight_since` set when an earlier attempt of a job died mid-way: it is kept, so
    // this attempt announces what that one wrote (see `pull::replay_announcement`).
    if retry_now || conn.status != ConnectionStatus::Pending || conn.inflight_since.is_none() {
        conn.status = ConnectionStatus::Pending;
        conn.inflight_since.get_or_insert(started_at);
        conn.version = deps.connections.save_state(&conn).await?;
    }
    tracing::Span::current().record("provider", conn.provider.as_str());
    let client = deps.providers.client(&conn)?;
    if job.check_deletes {
        client.check_deletes_now();
    }
    ensure_fresh_token(deps, &mut conn, client.as_ref(), false).await?;

    let mut counts = RunCounts::default();
    let mut result = pull_all(deps, &mut conn, client.as_ref(), deadline, &mut counts, job).await;
    // A provider's transient failure after this attempt checkpointed pages (each written and
    // announced before its checkpoint): what was pulled is kept, and a fresh job continues from
    // the checkpoint after a backoff. SQS would count the failure against the message's receives
    // although the attempt made progress, and a long first sync on a flaky day would end in the DLQ.
    let mut carried: Option<(JobError, chrono::DateTime<chrono::Utc>)> = None;
    if counts.pages > 0
        && let Err(e @ JobError::Provider(_)) = &result
        && e.is_retryable()
    {
        let s = &deps.settings;
        let mut delay = super::retry_delay(s.retry_base, s.retry_max, 1, rand::random::<f64>());
        // A rate limit asks for its own wait (a spent daily allocation: an hour).
        if let JobError::Provider(ProviderError::RateLimited { retry_after }) = e {
            delay = delay.max(*retry_after);
        }
        let resume_at = deps.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
        warn!(job_id = %job.job_id, pages = counts.pages, error = %error_chain(e), "job failed after progress; a fresh job continues from the checkpoint");
        if let Err(e) = std::mem::replace(&mut result, Ok(Pulled { continued: true, ..Pulled::default() })) {
            carried = Some((e, resume_at));
        }
    }
    if let Ok(pulled) = &result
        && !pulled.continued
        && !pulled.none_synced()
    {
        match push_approved(deps, &conn, client.as_ref()).await {
            Ok(pushed) => {
                counts.pushed += pushed.completed;
                counts.push_failed += pushed.failed;
                counts.push_retrying += pushed.retrying;
            }
            Err(ProviderOrStore::Store(e)) => result = Err(e.into()),
            Err(ProviderOrStore::Provider(e)) => result = Err(e.into()),
        }
    }
    let stats = client.stats();
    counts.requests = stats.requests;
    counts.rate_limited = stats.rate_limited;
    let pulled = result?;
    let continued = pulled.continued;
    let failed = !continued && pulled.none_synced();
    let problems = pulled.problems();

    let finished_at = deps.clock.now();
    if continued {
        let next = Job::sync(
            tenant.clone(),
            conn_id.clone(),
            Job::requested_id(conn_id, JobReason::Continuation),
            JobReason::Continuation,
            finished_at,
        );
        let not_before = carried.as_ref().map(|(_, at)| *at);
        let next =
            Job { renew_channel: job.renew_channel, check_deletes: job.check_deletes, not_before, ..next };
        deps.queue.enqueue(std::slice::from_ref(&next)).await?;
        if let Some((e, at)) = &carried {
            let entry = AuditEntry::new(tenant.clone(), Operation::Retry, AuditOutcome::Failure, "worker", finished_at)
                .connection(conn_id)
                .detail(json!({ "job_id": job.job_id, "error": e.to_string(), "retryable": true, "continued_by": next.job_id, "next_attempt_at": at, "pages_kept": counts.pages }));
            deps.audit.append(&[entry]).await?;
        }
    } else if failed {
        warn!(job_id = %job.job_id, problems = ?problems, "no object type synced");
        conn.status = ConnectionStatus::Error;
        conn.last_error = Some(format!("no object type synced: {}", problems.join("; ")));
    } else {
        conn.status = if has_open_conflicts(deps, &conn).await? {
            ConnectionStatus::Conflict
        } else {
            ConnectionStatus::Synced
        };
        conn.last_sync_at = Some(finished_at);
        conn.last_error = None;
        keep_push_channel(deps, &mut conn, client.as_ref(), job.renew_channel).await;
    }
    conn.provider_setup.extend(client.provider_setup());
    conn.last_run_id = Some(run_id.clone());
    conn.inflight_since = None;
    let run = SyncRun {
        tenant_id: tenant.clone(),
        connection_id: conn_id.clone(),
        run_id: run_id.clone(),
        job_id: job.job_id.clone(),
        reason: job.reason,
        status: if continued {
            RunStatus::Continued
        } else if failed {
            RunStatus::Failed
        } else if !problems.is_empty() {
            RunStatus::Partial
        } else {
            RunStatus::Succeeded
        },
        started_at,
        finished_at,
        duration_ms: started.elapsed().as_millis() as u64,
        counts,
        error: match &carried {
            Some((e, _)) => Some(e.to_string()),
            None => (!problems.is_empty()).then(|| problems.join("; ")),
        },
        objects: pulled.objects,
    };
    deps.runs.finish(&conn, &run).await?;
    metrics::run_finished(conn.provider, &run);
    let outcome = if failed { AuditOutcome::Failure } else { AuditOutcome::Success };
    let summary = AuditEntry::new(tenant.clone(), Operation::Pull, outcome, "worker", finished_at)
        .connection(conn_id)
        .detail(json!({ "run_id": run_id, "job_id": job.job_id, "reason": job.reason, "counts": counts, "continued": continued, "status": run.status, "error": run.error }));
    deps.audit.append(&[summary]).await?;
    if failed {
        return Ok(JobOutcome::Failed { run_id });
    }
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
    } else if run.status == RunStatus::Partial {
        JobOutcome::Partial { run_id, counts }
    } else {
        JobOutcome::Completed { run_id, counts }
    })
}

/// Opens or renews the connection's push channel when one is due (none yet, or it expires within
/// `PushChannel::renewal_margin`) and webhooks are configured. The new channel is registered
/// (channel id -> connection) before the connection keeps it; `finish` saves it. A failure is
/// logged and audited and never fails the sync: the next sync tries again.
///
/// `force` (a job from Graph's `reauthorizationRequired` or `subscriptionRemoved`) renews a channel
/// that is not due yet, by handing it to the adapter as if it expired now: Graph's adapter then
/// extends it, or creates it again when Graph no longer knows it.
async fn keep_push_channel(deps: &Deps, conn: &mut Connection, client: &dyn ProviderClient, force: bool) {
    let Some(base) = deps.settings.webhook_base_url.as_deref() else {
        return;
    };
    let now = deps.clock.now();
    if !force && conn.push_channel.as_ref().is_some_and(|c| !c.due_for_renewal(now)) {
        return;
    }
    let address = format!("{}/webhooks/{}", base.trim_end_matches('/'), conn.provider);
    let mut old = conn.push_channel.clone();
    if force && let Some(channel) = old.as_mut() {
        channel.expires_at = channel.expires_at.min(now);
    }
    let result =
        match client.ensure_channel(&conn.credentials.access_token, &address, old.as_ref(), now).await {
            Ok(Some(channel)) if old.as_ref().is_some_and(|o| o.same_as(&channel)) => return,
            Ok(Some(channel)) => match deps
                .connections
                .put_channel(&channel, &conn.tenant_id, &conn.connection_id, conn.provider)
                .await
            {
                Ok(()) => Ok(channel),
                Err(e) => Err(error_chain(&e)),
            },
            Ok(None) => return,
            Err(e) => Err(error_chain(&e)),
        };
    let entry = AuditEntry::new(
        conn.tenant_id.clone(),
        Operation::ChannelRenewed,
        if result.is_ok() { AuditOutcome::Success } else { AuditOutcome::Failure },
        "worker",
        now,
    )
    .connection(&conn.connection_id);
    let entry = match result {
        Ok(channel) => {
            info!(connection = %conn.connection_id, channel = %channel.id, expires_at = %channel.expires_at, "push channel opened");
            let detail = json!({
                "channel_id": channel.id,
                "expires_at": channel.expires_at,
                "replaced": old.as_ref().map(|o| o.id.clone()),
                "address": address,
            });
            conn.push_channel = Some(channel);
            entry.detail(detail)
        }
        Err(error) => {
            warn!(connection = %conn.connection_id, %error, "could not open or renew the push channel; the next sync retries");
            entry.detail(json!({
                "channel_id": old.as_ref().map(|o| o.id.clone()),
                "address": address,
                "error": error,
            }))
        }
    };
    if let Err(e) = deps.audit.append(&[entry]).await {
        warn!(error = %error_chain(&e), "could not audit the push channel");
    }
}

async fn has_open_conflicts(deps: &Deps, conn: &Connection) -> Result<bool, StoreError> {
    let query = ConflictQuery {
        connection: Some(conn.connection_id.clone()),
        status: Some(ConflictStatus::Open),
        limit: 1000,
        ..ConflictQuery::default()
    };
    let page = deps.conflicts.list(&conn.tenant_id, &query).await?;
    Ok(!page.items.is_empty() || page.next.is_some())
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

/// What the pulls of one job did, per object type in pull order (types not reached before the
/// deadline are absent).
#[derive(Debug, Default)]
struct Pulled {
    objects: BTreeMap<ObjectType, ObjectRun>,
    /// Stopped early because the deadline came near.
    continued: bool,
}

impl Pulled {
    /// True when no object type synced: each one failed or was skipped.
    fn none_synced(&self) -> bool {
        !self.objects.is_empty()
            && self
                .objects
                .values()
                .all(|o| matches!(o.outcome, ObjectOutcome::Failed | ObjectOutcome::Skipped))
    }

    /// One line per object type that failed or was skipped.
    fn problems(&self) -> Vec<String> {
        self.objects
            .iter()
            .filter_map(|(object, run)| run.error.as_ref().map(|e| e.describe(*object)))
            .collect()
    }
}

/// The class of a provider error that fails only its object type, or `None` for errors that
/// concern the whole job: rejected credentials (the connection's), throttling and outages
/// (retried by SQS).
fn object_failure(e: &JobError) -> Option<(ObjectErrorClass, String)> {
    match e {
        JobError::Provider(ProviderError::Permanent(text)) => {
            Some((ObjectErrorClass::Permanent, text.to_string()))
        }
        JobError::Provider(ProviderError::NotFound) => Some((ObjectErrorClass::NotFound, e.to_string())),
        JobError::Provider(ProviderError::Conflict | ProviderError::CursorExpired) => {
            Some((ObjectErrorClass::Permanent, e.to_string()))
        }
        _ => None,
    }
}

/// Pulls every object type of the connection from its cursor, checkpointing after every page that
/// brought records.
/// Object types waiting for their `retry_at` are skipped; one that fails with a permanent
/// provider error is recorded on the connection and the next one goes on. Stops early (with
/// `continued`) when the deadline comes near.
async fn pull_all(
    deps: &Deps,
    conn: &mut Connection,
    client: &dyn ProviderClient,
    deadline: Deadline,
    counts: &mut RunCounts,
    job: &Job,
) -> Result<Pulled, JobError> {
    let mut refreshed_after_401 = false;
    let mut pulled = Pulled::default();
    for &object in conn.provider.object_types() {
        let now = deps.clock.now();
        if let Some(error) = conn.object_errors.get(&object).filter(|e| e.waiting(now)) {
            let mut run = ObjectRun::new(ObjectOutcome::Skipped);
            run.error = Some(error.clone());
            pulled.objects.insert(object, run);
            continue;
        }
        let mut run = ObjectRun::new(ObjectOutcome::Synced);
        let result =
            pull_object(deps, conn, client, deadline, object, counts, &mut run, &mut refreshed_after_401)
                .instrument(tracing::info_span!("object", object = %object))
                .await;
        match result {
            Ok(true) => {
                run.outcome = ObjectOutcome::Continued;
                pulled.objects.insert(object, run);
                pulled.continued = true;
                return Ok(pulled);
            }
            Ok(false) => {}
            Err(e) => {
                let Some((class, text)) = object_failure(&e) else {
                    return Err(e);
                };
                let now = deps.clock.now();
                let error = ObjectError::failed(conn.object_errors.get(&object), class, &text, now);
                warn!(connection = %conn.connection_id, %object, attempts = error.attempts, retry_at = %error.retry_at, error = %text, "object type failed; the others go on");
                conn.object_errors.insert(object, error.clone());
                conn.version = deps.connections.save_state(conn).await?;
                let entry = AuditEntry::new(
                    conn.tenant_id.clone(),
                    Operation::Pull,
                    AuditOutcome::Failure,
                    "worker",
                    now,
                )
                .connection(&conn.connection_id)
                .detail(json!({
                    "job_id": job.job_id,
                    "object": object,
                    "class": error.class,
                    "http_status": error.http_status,
                    "code": error.code,
                    "error": error.message,
                    "attempts": error.attempts,
                    "retry_at": error.retry_at,
                }));
                deps.audit.append(&[entry]).await?;
                run.outcome = ObjectOutcome::Failed;
                run.error = Some(error);
            }
        }
        pulled.objects.insert(object, run);
    }
    Ok(pulled)
}

/// Pulls one object type from its cursor to the present, page by page, checkpointing after
/// every page that brought records. `Ok(true)`: stopped because the deadline came near.
#[allow(clippy::too_many_arguments)]
async fn pull_object(
    deps: &Deps,
    conn: &mut Connection,
    client: &dyn ProviderClient,
    deadline: Deadline,
    object: ObjectType,
    counts: &mut RunCounts,
    run: &mut ObjectRun,
    refreshed_after_401: &mut bool,
) -> Result<bool, JobError> {
    let mut link_index: Option<super::links::LinkIndex> = None;
    loop {
        if deadline.remaining() <= deps.settings.deadline_margin {
            return Ok(true);
        }
        let cursor = conn.cursors.get(&object).cloned();
        let mut page = match client.pull_page(&conn.credentials.access_token, object, cursor.as_ref()).await {
            Ok(page) => page,
            Err(ProviderError::Unauthorized) if !*refreshed_after_401 => {
                *refreshed_after_401 = true;
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
        if page.reconcile_deletes {
            let gone = vanished(deps, conn, client, object, &page.records).await?;
            warn!(connection = %conn.connection_id, %object, gone = gone.len(), "provider's delete log fell short; reconciled ids");
            page.records.extend(gone);
        }
        let rule = conn.settings.document_links;
        if object == ObjectType::Files && rule.any() && !page.records.is_empty() {
            if link_index.is_none() {
                let index = super::links::LinkIndex::load(
                    deps.connections.as_ref(),
                    deps.records.as_ref(),
                    &conn.tenant_id,
                    rule,
                )
                .await?;
                link_index = Some(index);
            }
            if let Some(index) = &link_index {
                super::links::link(rule, index, &mut page.records);
            }
        }
        let brought = page.records.len() as u64;
        counts.pages += 1;
        counts.pulled += brought;
        run.pages += 1;
        run.pulled += brought;
        let now = deps.clock.now();
        let mut tasks = match object {
            ObjectType::Events => research_tasks(&conn.settings, &page.records, now),
            ObjectType::Transcripts => follow_up_tasks(&conn.settings, &page.records),
            _ => Vec::new(),
        };
        if object == ObjectType::Transcripts {
            link_meetings(deps.connections.as_ref(), deps.records.as_ref(), conn, &mut tasks).await?;
            if tasks.iter().any(|t| !t.deleted) {
                // The contacts' addresses only (the index of a Drive job with no deal names).
                let contacts_only =
                    crate::domain::DocumentLinks { by_deal_name: false, by_shared_contact: true };
                if link_index.is_none() {
                    let index = super::links::LinkIndex::load(
                        deps.connections.as_ref(),
                        deps.records.as_ref(),
                        &conn.tenant_id,
                        contacts_only,
                    )
                    .await?;
                    link_index = Some(index);
                }
                if let Some(index) = &link_index {
                    super::links::link_attendees(index, &mut tasks);
                }
            }
        }
        let applied = apply_page_audited(
            deps.records.as_ref(),
            Some(deps.audit.as_ref()),
            conn,
            object,
            page.records,
            now,
        )
        .await?;
        counts.created += applied.outcome.created.len() as u64;
        counts.updated += applied.outcome.updated.len() as u64;
        counts.deleted += applied.outcome.deleted.len() as u64;
        counts.unchanged += applied.outcome.unchanged;
        run.created += applied.outcome.created.len() as u64;
        run.updated += applied.outcome.updated.len() as u64;
        run.deleted += applied.outcome.deleted.len() as u64;
        run.unchanged += applied.outcome.unchanged;
        let mut audit = applied.audit;
        let mut events = applied.events;
        audit.extend(created_summary(conn, object, &applied.outcome.created, now));
        count_records(conn, object, &applied.outcome);
        counts.conflicts_decided += applied.conflicts;
        for (item, decisions) in applied.pushes {
            if deps.pushes.create(&item).await? {
                audit.extend(decisions);
            }
        }
        for (record, items) in &applied.overtaken {
            for id in items {
                supersede_if_overtaken(deps, record, id, "merge", "worker").await?;
            }
        }
        for conflict in applied.parked {
            if deps.conflicts.detected(&conflict).await? {
                counts.conflicts_parked += 1;
                audit.push(conflict_audit(&conflict, now));
                events.push(DomainEvent::ConflictDetected {
                    tenant_id: conflict.tenant_id.clone(),
                    connection_id: conflict.connection_id.clone(),
                    conflict_id: conflict.conflict_id.clone(),
                    record_id: conflict.record_id.clone(),
                    object: conflict.object,
                    field: conflict.field.clone(),
                });
            }
        }
        if !tasks.is_empty() {
            let derived = apply_page_audited(
                deps.records.as_ref(),
                Some(deps.audit.as_ref()),
                conn,
                ObjectType::ResearchTasks,
                tasks,
                now,
            )
            .await?;
            counts.tasks_opened += derived.outcome.created.len() as u64;
            counts.tasks_updated += derived.outcome.updated.len() as u64;
            counts.tasks_cancelled += derived.outcome.deleted.len() as u64;
            audit.extend(derived.audit);
            audit.extend(created_summary(conn, ObjectType::ResearchTasks, &derived.outcome.created, now));
            events.extend(derived.events);
            count_records(conn, ObjectType::ResearchTasks, &derived.outcome);
        }
        deps.audit.append(&audit).await?;
        deps.bus.publish(&events).await?;
        conn.cursors.insert(object, page.cursor);
        let recovered = conn.object_errors.remove(&object);
        // A page that brought nothing needs no checkpoint of its own: the job's next checkpoint or
        // its `finish` saves the cursor, and a crash before then pulls the page again, which
        // writes nothing either. (A no-change sync would otherwise write once per object type.)
        if brought > 0 || recovered.is_some() {
            conn.version = deps.connections.save_state(conn).await?;
        }
        if let Some(old) = recovered {
            info!(connection = %conn.connection_id, %object, attempts = old.attempts, "object type syncs again");
            let entry = AuditEntry::new(conn.tenant_id.clone(), Operation::Pull, AuditOutcome::Success, "worker", now)
                    .connection(&conn.connection_id)
                    .detail(json!({ "object": object, "recovered": true, "failed_attempts": old.attempts, "first_failed_at": old.first_failed_at }));
            deps.audit.append(&[entry]).await?;
        }
        if !page.has_more {
            return Ok(false);
        }
    }
}

/// The stored records of `object` the provider no longer has, as remote deletes: for a pull whose
/// provider lost track of some deletes ([`crate::ports::PulledPage::reconcile_deletes`]). Lists
/// the provider's live ids (held as a set: about 40 bytes an id), then pages the stored records.
/// Runs before the page is checkpointed, so a crash repeats it.
async fn vanished(
    deps: &Deps,
    conn: &Connection,
    client: &dyn ProviderClient,
    object: ObjectType,
    page: &[RemoteRecord],
) -> Result<Vec<RemoteRecord>, JobError> {
    let mut live: HashSet<ExternalId> =
        page.iter().filter(|r| !r.deleted).map(|r| r.external_id.clone()).collect();
    let mut after: Option<String> = None;
    loop {
        let ids = client.live_ids(&conn.credentials.access_token, object, after.as_deref()).await?;
        live.extend(ids.ids);
        match ids.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut gone = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let stored = deps
            .records
            .list(&conn.tenant_id, &conn.connection_id, Some(object), RECONCILE_PAGE, token.as_deref())
            .await?;
        gone.extend(stored.items.into_iter().filter(|r| !r.deleted && !live.contains(&r.external_id)).map(
            |r| RemoteRecord {
                external_id: r.external_id,
                object,
                fields: Fields::new(),
                remote_modified_at: None,
                deleted: true,
                etag: None,
            },
        ));
        match stored.next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    Ok(gone)
}

/// Stored records read a page while reconciling deletes.
const RECONCILE_PAGE: usize = 200;

fn conflict_audit(c: &ConflictItem, now: chrono::DateTime<chrono::Utc>) -> AuditEntry {
    AuditEntry::new(c.tenant_id.clone(), Operation::ConflictDetected, AuditOutcome::Success, "worker", now)
        .connection(&c.connection_id)
        .record(c.object, &c.record_id)
        .detail(json!({
            "conflict_id": c.conflict_id,
            "field": c.field,
            "base": c.base,
            "suggested": c.suggested,
            "suggested_by": c.suggested_by,
        }))
        .change(Some(json!({ "local": c.local, "remote": c.remote })), None)
}

/// Keeps the connection's per-object record counts (live records, deletions subtracted).
fn count_records(conn: &mut Connection, object: ObjectType, outcome: &UpsertOutcome) {
    let count = conn.record_counts.entry(object).or_insert(0);
    *count = (*count + outcome.created.len() as u64).saturating_sub(outcome.deleted.len() as u64);
}

#[cfg(test)]
mod tests {
    //! The worker against in-memory stores and a scripted calendar: research tasks follow their
    //! meetings through the whole job path.

    use crate::domain::connection::sample_connection;
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use chrono::{DateTime, Utc};
    use secrecy::SecretString;
    use serde_json::{Value, json};

    use super::*;
    use crate::adapters::memory::{ManualClock, MemoryBus, MemoryQueue, MemoryStore};
    use crate::domain::record::Fields;
    use crate::domain::{
        ConnectionSettings, Credentials, ExternalId, JobId, JobReason, NewConnection, Provider, PushChannel,
        RemoteRecord, SyncCursor,
    };
    use crate::ports::{ConnectionStore, ProviderFactory, PulledPage, RequestStats};
    use crate::sync::Deps;

    /// A calendar whose every pull returns the events as they are now.
    #[derive(Clone, Default)]
    struct Calendar(Arc<Mutex<Vec<RemoteRecord>>>);

    #[async_trait]
    impl ProviderClient for Calendar {
        async fn pull_page(
            &self,
            _token: &SecretString,
            _object: ObjectType,
            _cursor: Option<&SyncCursor>,
        ) -> Result<PulledPage, ProviderError> {
            let records = self.0.lock().map(|e| e.clone()).unwrap_or_default();
            Ok(PulledPage {
                records,
                cursor: SyncCursor::new("now"),
                has_more: false,
                reconcile_deletes: false,
            })
        }
        async fn refresh(&self, _refresh_token: &SecretString) -> Result<Credentials, ProviderError> {
            Err(ProviderError::Unauthorized)
        }
        fn stats(&self) -> RequestStats {
            RequestStats::default()
        }
    }

    impl ProviderFactory for Calendar {
        fn client(&self, _connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError> {
            Ok(Box::new(self.clone()))
        }
    }

    fn meeting(id: &str, start: &str, attendees: &[&str], status: &str) -> RemoteRecord {
        let fields: Fields = [
            ("title".to_owned(), json!("Pricing call")),
            ("start".to_owned(), json!(start)),
            ("status".to_owned(), json!(status)),
            ("organizer".to_owned(), json!("ann@acme.com")),
            ("attendees".to_owned(), json!(attendees)),
        ]
        .into();
        RemoteRecord {
            external_id: ExternalId::parse(id).unwrap(),
            object: ObjectType::Events,
            fields,
            remote_modified_at: None,
            deleted: false,
            etag: None,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-29T09:00:00Z").unwrap().with_timezone(&Utc)
    }

    async fn sync(deps: &Deps, conn: &Connection, n: u32) -> RunCounts {
        let job = Job::sync(
            conn.tenant_id.clone(),
            conn.connection_id.clone(),
            JobId::parse(format!("job-{n}")).unwrap(),
            JobReason::Manual,
            now(),
        );
        match run_job(deps, &job, Deadline::after(std::time::Duration::from_secs(60))).await {
            Ok(JobOutcome::Completed { counts, .. }) => counts,
            other => panic!("job did not complete: {other:?}"),
        }
    }

    fn tasks(store: &MemoryStore, conn: &Connection) -> Vec<(String, bool, Value)> {
        let mut out: Vec<_> = store
            .records_of(&conn.tenant_id, &conn.connection_id)
            .into_iter()
            .filter(|r| r.object == ObjectType::ResearchTasks)
            .map(|r| {
                (r.external_id.to_string(), r.deleted, r.fields.get("due_at").cloned().unwrap_or_default())
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[tokio::test]
    async fn research_tasks_open_move_and_cancel_with_their_meetings() {
        let calendar = Calendar::default();
        let store = Arc::new(MemoryStore::new());
        let bus = Arc::new(MemoryBus::new());
        let clock = Arc::new(ManualClock::new(now()));
        let deps = crate::adapters::memory::TestDeps::new(store.clone())
            .bus(bus.clone())
            .providers(Arc::new(calendar.clone()))
            .clock(clock.clone())
            .build();
        let conn = Connection::new(
            TenantId::parse("acme").unwrap(),
            NewConnection {
                provider: Provider::Google,
                base_url: "http://127.0.0.1:1".into(),
                credentials: Credentials {
                    access_token: SecretString::from("t"),
                    refresh_token: None,
                    expires_at: None,
                },
                interval_minutes: 15,
                settings: ConnectionSettings { own_domains: vec!["acme.com".into()], ..Default::default() },
            },
            now(),
        );
        store.put_connection(conn.clone());
        *calendar.0.lock().unwrap() = vec![
            meeting("m1", "2026-12-01T15:00:00Z", &["ann@acme.com", "zoe@client.io"], "confirmed"),
            meeting("m2", "2026-12-02T10:00:00Z", &["ann@acme.com", "bob@acme.com"], "confirmed"),
        ];
        let first = sync(&deps, &conn, 1).await;
        assert_eq!((first.created, first.tasks_opened), (2, 1));
        assert_eq!(tasks(&store, &conn), vec![("m1".into(), false, json!("2026-11-30T15:00:00Z"))]);

        // Moved a day later: the task moves; nothing else changes.
        calendar.0.lock().unwrap()[0] =
            meeting("m1", "2026-12-02T15:00:00Z", &["ann@acme.com", "zoe@client.io"], "confirmed");
        clock.advance(chrono::Duration::minutes(15));
        let moved = sync(&deps, &conn, 2).await;
        assert_eq!((moved.updated, moved.tasks_opened, moved.tasks_updated), (1, 0, 1));
        assert_eq!(tasks(&store, &conn), vec![("m1".into(), false, json!("2026-12-01T15:00:00Z"))]);

        // An unchanged calendar changes no task.
        clock.advance(chrono::Duration::minutes(15));
        let idle = sync(&deps, &conn, 3).await;
        assert_eq!((idle.tasks_opened, idle.tasks_updated, idle.tasks_cancelled), (0, 0, 0));

        // Cancelled: the task is cancelled (deleted) and announced.
        calendar.0.lock().unwrap()[0] =
            meeting("m1", "2026-12-02T15:00:00Z", &["ann@acme.com", "zoe@client.io"], "cancelled");
        clock.advance(chrono::Duration::minutes(15));
        let cancelled = sync(&deps, &conn, 4).await;
        assert_eq!(cancelled.tasks_cancelled, 1);
        assert_eq!(tasks(&store, &conn), vec![("m1".into(), true, json!("2026-12-01T15:00:00Z"))]);
        let task_events = bus
            .events()
            .iter()
            .filter(|e| matches!(e, DomainEvent::RecordChanged { object: ObjectType::ResearchTasks, .. }))
            .count();
        assert_eq!(task_events, 3, "opened, moved, cancelled");
    }

    /// (address, existing channel id) of one `ensure_channel` call.
    type ChannelCall = (String, Option<String>);

    /// A calendar provider with push channels: each `ensure_channel` call is recorded and, unless
    /// told to fail, opens a 7-day channel `ch-{n}` (the port's contract: an existing channel far
    /// from expiry comes back untouched).
    #[derive(Clone, Default)]
    struct Watched {
        calls: Arc<Mutex<Vec<ChannelCall>>>,
        failing: Arc<std::sync::atomic::AtomicBool>,
    }

    #[async_trait]
    impl ProviderClient for Watched {
        async fn pull_page(
            &self,
            _token: &SecretString,
            _object: ObjectType,
            _cursor: Option<&SyncCursor>,
        ) -> Result<PulledPage, ProviderError> {
            Ok(PulledPage {
                records: Vec::new(),
                cursor: SyncCursor::new("now"),
                has_more: false,
                reconcile_deletes: false,
            })
        }
        async fn ensure_channel(
            &self,
            _token: &SecretString,
            address: &str,
            existing: Option<&PushChannel>,
            now: DateTime<Utc>,
        ) -> Result<Option<PushChannel>, ProviderError> {
            let mut calls = self.calls.lock().unwrap();
            calls.push((address.to_owned(), existing.map(|c| c.id.clone())));
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(ProviderError::transient("watch failed"));
            }
            if let Some(c) = existing.filter(|c| !c.due_for_renewal(now)) {
                return Ok(Some(c.clone()));
            }
            Ok(Some(PushChannel {
                id: format!("ch-{}", calls.len()),
                resource_id: Some("res".into()),
                secret: SecretString::from("channel-secret-value"),
                expires_at: now + chrono::Duration::days(7),
            }))
        }
        async fn refresh(&self, _refresh_token: &SecretString) -> Result<Credentials, ProviderError> {
            Err(ProviderError::Unauthorized)
        }
        fn stats(&self) -> RequestStats {
            RequestStats::default()
        }
    }

    impl ProviderFactory for Watched {
        fn client(&self, _connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError> {
            Ok(Box::new(self.clone()))
        }
    }

    fn google_connection() -> Connection {
        sample_connection("acme", Provider::Google, "http://127.0.0.1:1", now())
    }

    fn watched_deps(
        provider: &Watched,
        webhooks: Option<&str>,
    ) -> (Deps, Arc<MemoryStore>, Arc<ManualClock>, Connection) {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(now()));
        let mut deps = crate::adapters::memory::TestDeps::new(store.clone())
            .providers(Arc::new(provider.clone()))
            .clock(clock.clone())
            .build();
        deps.settings.webhook_base_url = webhooks.map(str::to_owned);
        let conn = google_connection();
        store.put_connection(conn.clone());
        (deps, store, clock, conn)
    }

    async fn stored(store: &MemoryStore, conn: &Connection) -> Connection {
        ConnectionStore::get(store, &conn.tenant_id, &conn.connection_id).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn a_push_channel_is_opened_on_the_first_sync_and_renewed_only_within_a_day_of_expiry() {
        let provider = Watched::default();
        let (deps, store, clock, conn) = watched_deps(&provider, Some("https://hooks.example.com/"));
        sync(&deps, &conn, 1).await;
        assert_eq!(
            *provider.calls.lock().unwrap(),
            vec![("https://hooks.example.com/webhooks/google".to_owned(), None)]
        );
        let saved = stored(&store, &conn).await;
        let channel = saved.push_channel.clone().expect("the channel is kept on the connection");
        assert_eq!((channel.id.as_str(), channel.expires_at), ("ch-1", now() + chrono::Duration::days(7)));
        assert_eq!(
            store.find_channel("ch-1").await.unwrap(),
            Some((conn.tenant_id.clone(), conn.connection_id.clone(), Provider::Google))
        );

        // Days before the margin: no call at all.
        for (n, hours) in [(2, 1), (3, 24 * 5)] {
            clock.advance(chrono::Duration::hours(hours));
            sync(&deps, &conn, n).await;
        }
        assert_eq!(provider.calls.lock().unwrap().len(), 1);

        // Less than a day left: renewed, the new channel stored and registered.
        clock.advance(chrono::Duration::hours(24));
        sync(&deps, &conn, 4).await;
        let calls = provider.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].1.as_deref(), Some("ch-1"), "the old channel is handed over for renewal");
        assert_eq!(stored(&store, &conn).await.push_channel.map(|c| c.id), Some("ch-2".to_owned()));
        assert!(store.find_channel("ch-2").await.unwrap().is_some());

        let audited: Vec<_> =
            store.audit_entries().into_iter().filter(|e| e.operation == Operation::ChannelRenewed).collect();
        assert_eq!(audited.len(), 2);
        assert!(audited.iter().all(|e| e.outcome == AuditOutcome::Success));
        assert_eq!(audited[1].detail["replaced"], json!("ch-1"));
        let shown = format!("{audited:?} {:?}", stored(&store, &conn).await);
        assert!(!shown.contains("channel-secret-value"), "the channel secret leaked: {shown}");
    }

    #[tokio::test]
    async fn a_failing_channel_is_audited_without_failing_the_sync_and_retried_next_sync() {
        let provider = Watched::default();
        provider.failing.store(true, std::sync::atomic::Ordering::SeqCst);
        let (deps, store, clock, conn) = watched_deps(&provider, Some("https://hooks.example.com"));
        sync(&deps, &conn, 1).await;
        let saved = stored(&store, &conn).await;
        assert_eq!((saved.status, saved.push_channel.is_none()), (ConnectionStatus::Synced, true));
        let failures = store
            .audit_entries()
            .into_iter()
            .filter(|e| e.operation == Operation::ChannelRenewed && e.outcome == AuditOutcome::Failure)
            .count();
        assert_eq!(failures, 1);

        provider.failing.store(false, std::sync::atomic::Ordering::SeqCst);
        clock.advance(chrono::Duration::minutes(15));
        sync(&deps, &conn, 2).await;
        assert_eq!(provider.calls.lock().unwrap().len(), 2);
        assert_eq!(stored(&store, &conn).await.push_channel.map(|c| c.id), Some("ch-2".to_owned()));
    }

    #[tokio::test]
    async fn a_renewing_webhook_job_renews_a_channel_that_is_not_due_yet() {
        let provider = Watched::default();
        let (deps, store, clock, conn) = watched_deps(&provider, Some("https://hooks.example.com"));
        sync(&deps, &conn, 1).await;
        clock.advance(chrono::Duration::hours(1));
        let plain = Job::webhook(
            conn.tenant_id.clone(),
            conn.connection_id.clone(),
            false,
            crate::ports::Clock::now(clock.as_ref()),
            10,
        );
        run_job(&deps, &plain, Deadline::after(std::time::Duration::from_secs(60))).await.unwrap();
        assert_eq!(
            provider.calls.lock().unwrap().len(),
            1,
            "a plain webhook job leaves a fresh channel alone"
        );
        let renew = Job::webhook(
            conn.tenant_id.clone(),
            conn.connection_id.clone(),
            true,
            crate::ports::Clock::now(clock.as_ref()),
            10,
        );
        run_job(&deps, &renew, Deadline::after(std::time::Duration::from_secs(60))).await.unwrap();
        let calls = provider.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].1.as_deref(), Some("ch-1"), "the current channel is handed over to renew");
        assert_eq!(stored(&store, &conn).await.push_channel.map(|c| c.id), Some("ch-2".to_owned()));
    }

    #[tokio::test]
    async fn a_webhook_job_that_arrives_before_its_window_closes_is_handed_back_until_then() {
        let provider = Watched::default();
        let (mut deps, store, clock, conn) = watched_deps(&provider, None);
        let queue = Arc::new(MemoryQueue::new());
        deps.queue = queue.clone();
        let job = Job::webhook(
            conn.tenant_id.clone(),
            conn.connection_id.clone(),
            false,
            crate::ports::Clock::now(clock.as_ref()),
            10,
        );
        let message: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(json!({ "Records": [{
            "messageId": "m1",
            "receiptHandle": "rh-1",
            "body": job.to_body(),
            "attributes": { "MessageGroupId": conn.message_group(), "ApproximateReceiveCount": "1" },
            "messageAttributes": {},
        }]}))
        .unwrap();
        let deadline = Deadline::after(std::time::Duration::from_secs(60));
        let early = handle_batch(&deps, message.clone(), deadline).await;
        assert_eq!(early.batch_item_failures.len(), 1);
        assert!(store.runs_of(&conn.tenant_id, &conn.connection_id).is_empty(), "nothing ran");
        let wait = job.not_before.unwrap() - crate::ports::Clock::now(clock.as_ref());
        let delays = queue.retry_delays();
        assert_eq!(delays.len(), 1);
        assert!(delays[0].1 >= wait.to_std().unwrap() && delays[0].1.as_secs() <= 10, "{delays:?}");
        clock.set(job.not_before.unwrap());
        let on_time = handle_batch(&deps, message, deadline).await;
        assert!(on_time.batch_item_failures.is_empty());
        assert_eq!(store.runs_of(&conn.tenant_id, &conn.connection_id).len(), 1);
    }

    #[tokio::test]
    async fn a_job_for_a_paused_connection_is_dropped_without_a_run_or_a_provider_call() {
        let provider = Watched::default();
        let (deps, store, _clock, conn) = watched_deps(&provider, Some("https://hooks.example.com"));
        let mut paused = conn.clone();
        paused.paused_at = Some(now());
        paused.next_sync_at = None;
        store.save_settings(&paused).await.unwrap();
        let job = Job::sync(
            conn.tenant_id.clone(),
            conn.connection_id.clone(),
            JobId::parse("job-paused").unwrap(),
            JobReason::Schedule,
            now(),
        );
        let outcome = run_job(&deps, &job, Deadline::after(std::time::Duration::from_secs(60))).await;
        assert!(matches!(outcome, Ok(JobOutcome::Paused)), "{outcome:?}");
        assert!(provider.calls.lock().unwrap().is_empty());
        let runs = crate::ports::RunStore::list_runs(&*store, &conn.tenant_id, &conn.connection_id, 10).await;
        assert!(runs.unwrap().is_empty());
        assert_eq!(stored(&store, &conn).await.status, conn.status, "the state is untouched");
    }

    struct Down;

    impl ProviderFactory for Down {
        fn client(&self, _connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError> {
            Err(ProviderError::transient("503 from the provider"))
        }
    }

    #[tokio::test]
    async fn failed_attempts_are_audited_with_their_number_and_the_next_attempt_until_the_last() {
        let store = Arc::new(MemoryStore::new());
        let mut deps = crate::adapters::memory::TestDeps::new(store.clone())
            .clock(Arc::new(ManualClock::new(now())))
            .build();
        deps.providers = Arc::new(Down);
        let conn = google_connection();
        store.put_connection(conn.clone());
        let job = Job::sync(
            conn.tenant_id.clone(),
            conn.connection_id.clone(),
            JobId::parse("job-1").unwrap(),
            JobReason::Schedule,
            now(),
        );
        let message = |receives: u32| -> aws_lambda_events::event::sqs::SqsEvent {
            serde_json::from_value(json!({ "Records": [{
                "messageId": format!("m{receives}"),
                "receiptHandle": format!("rh-{receives}"),
                "body": job.to_body(),
                "attributes": { "MessageGroupId": conn.message_group(), "ApproximateReceiveCount": receives.to_string() },
                "messageAttributes": {},
            }]}))
            .unwrap()
        };
        for receives in [2, 5] {
            handle_batch(&deps, message(receives), Deadline::after(std::time::Duration::from_secs(60))).await;
        }
        let failures: Vec<AuditEntry> =
            store.audit_entries().into_iter().filter(|e| e.operation == Operation::Retry).collect();
        assert_eq!(failures.len(), 2);
        let (second, last) = (&failures[0].detail, &failures[1].detail);
        assert_eq!((second["attempt"].clone(), second["max_attempts"].clone()), (json!(2), json!(5)));
        let next: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(second["next_attempt_at"].clone()).unwrap();
        assert!((30..=60).contains(&(next - now()).num_seconds()), "{next}");
        assert_eq!((last["attempt"].clone(), last["next_attempt_at"].clone()), (json!(5), Value::Null));
        assert_eq!(stored(&store, &conn).await.status, ConnectionStatus::Error, "the last attempt gives up");
    }

    #[tokio::test]
    async fn without_a_webhook_base_url_no_channel_is_opened() {
        let provider = Watched::default();
        let (deps, store, _clock, conn) = watched_deps(&provider, None);
        sync(&deps, &conn, 1).await;
        assert!(provider.calls.lock().unwrap().is_empty());
        assert!(stored(&store, &conn).await.push_channel.is_none());
    }

    #[test]
    fn retry_delays_double_per_receive_with_jitter_and_a_cap() {
        use crate::sync::retry_delay;
        use std::time::Duration as D;
        let (base, max) = (D::from_secs(30), D::from_secs(600));
        assert_eq!(retry_delay(base, max, 1, 0.0), D::from_secs(15));
        assert_eq!(retry_delay(base, max, 1, 0.999_999).as_secs(), 29);
        assert_eq!(retry_delay(base, max, 3, 0.0), D::from_secs(60));
        assert_eq!(retry_delay(base, max, 10, 0.5), D::from_secs(450));
        assert_eq!(retry_delay(base, max, 40, 1.0), D::from_secs(600));
    }

    #[tokio::test]
    async fn a_retryable_failure_asks_sqs_to_redeliver_later_the_more_it_was_received() {
        let store = Arc::new(MemoryStore::new());
        let queue = Arc::new(MemoryQueue::new());
        let deps = crate::adapters::memory::TestDeps::new(store.clone())
            .queue(queue.clone())
            .clock(Arc::new(ManualClock::new(now())))
            .build();
        let conn = Connection::new(
            TenantId::parse("acme").unwrap(),
            NewConnection {
                provider: Provider::Hubspot,
                base_url: "http://127.0.0.1:1".into(),
                credentials: Credentials {
                    access_token: SecretString::from("t"),
                    refresh_token: None,
                    expires_at: None,
                },
                interval_minutes: 15,
                settings: ConnectionSettings::default(),
            },
            now(),
        );
        store.put_connection(conn.clone());
        let job = Job::sync(
            conn.tenant_id.clone(),
            conn.connection_id.clone(),
            JobId::parse("job-1").unwrap(),
            JobReason::Schedule,
            now(),
        );
        let message = |receives: u32| -> aws_lambda_events::event::sqs::SqsEvent {
            serde_json::from_value(json!({ "Records": [{
                "messageId": format!("m{receives}"),
                "receiptHandle": format!("rh-{receives}"),
                "body": job.to_body(),
                "attributes": { "MessageGroupId": conn.message_group(), "ApproximateReceiveCount": receives.to_string() },
                "messageAttributes": {},
            }]}))
            .unwrap()
        };
        // A provider outage on every write would do too; the store going away is simplest.
        store.crash_after(3);
        let failed =
            handle_batch(&deps, message(1), Deadline::after(std::time::Duration::from_secs(60))).await;
        assert_eq!(failed.batch_item_failures.len(), 1);
        store.recover();
        store.crash_after(3);
        handle_batch(&deps, message(3), Deadline::after(std::time::Duration::from_secs(60))).await;
        store.recover();
        let delays = queue.retry_delays();
        assert_eq!(delays.len(), 2);
        assert_eq!(delays[0].0, "rh-1");
        assert!((15..30).contains(&delays[0].1.as_secs()), "{delays:?}");
        assert!((60..120).contains(&delays[1].1.as_secs()), "{delays:?}");
    }
}
