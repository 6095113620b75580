//! Connection lifecycle and sync health routes: pause and resume, health, per-object status, the
//! summary of recent runs, and recent errors with the retry state and action. Settings are in
//! [`super::settings`]. Every route looks the connection up under the caller's tenant (another
//! tenant's id is 404); the rules themselves are in [`crate::domain::health`].

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use super::auth::Caller;
use super::common::{CONNECTION_ID, actor, load_connection, page_limit, page_limit_or, update_settings};
use super::connections::ConnectionView;
use super::problem::{self, ApiError, ApiPath, ApiQuery};
use crate::domain::health::{self, HealthReason, HealthStatus, RetryPhase, RetryState, RunSummary};
use crate::domain::{
    AuditEntry, AuditOutcome, ConflictStatus, Connection, ConnectionStatus, Job, ObjectError, ObjectType,
    Operation, PushStatus,
};
use crate::ports::{AuditQuery, ConflictQuery, PushQuery, StoreError};

/// Most entries one count (open conflicts, failed pushes, failed attempts) reads.
const COUNT_BOUND: usize = 200;

/// The lifecycle and sync health routes, with their OpenAPI operations.
pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(pause_connection))
        .routes(routes!(resume_connection))
        .routes(routes!(connection_health))
        .routes(routes!(connection_status))
        .routes(routes!(runs_summary))
        .routes(routes!(connection_errors))
}

/// Pauses a connection: it leaves the due index, manual syncs and retries are refused (409
/// `connection_paused`) and queued jobs are dropped by the worker. Pausing a paused connection
/// changes nothing (and audits nothing).
#[utoipa::path(
    post,
    path = "/v1/connections/{connection_id}/pause",
    tag = "connections",
    params(("connection_id" = String, Path, description = CONNECTION_ID)),
    responses(
        (status = 200, body = ConnectionView, description = "Paused (or already paused)"),
        (status = 409, response = problem::Conflict)
    )
)]
async fn pause_connection(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<ConnectionView>, ApiError> {
    let (before, after) = update_settings(&state, &caller.tenant, &id, |c, now| {
        Ok((!c.is_paused()).then(|| {
            let mut next = c.clone();
            next.paused_at = Some(now);
            next.next_sync_at = None;
            next
        }))
    })
    .await?;
    if after.settings_version != before.settings_version {
        let entry = AuditEntry::new(
            caller.tenant.clone(),
            Operation::ConnectionPaused,
            AuditOutcome::Success,
            actor(&caller),
            after.paused_at.unwrap_or_else(|| state.clock.now()),
        )
        .connection(&after.connection_id)
        .change(
            Some(json!({ "paused": false, "next_sync_at": before.next_sync_at })),
            Some(json!({ "paused": true, "next_sync_at": null })),
        );
        state.audit.append(&[entry]).await?;
    }
    Ok(axum::Json(ConnectionView::from(&after)))
}

/// Resumes a paused connection: due at once (the dispatcher's next tick enqueues a sync).
/// Resuming an active connection changes nothing.
#[utoipa::path(
    post,
    path = "/v1/connections/{connection_id}/resume",
    tag = "connections",
    params(("connection_id" = String, Path, description = CONNECTION_ID)),
    responses(
        (status = 200, body = ConnectionView, description = "Resumed: due from the next whole second (or already active)"),
        (status = 409, response = problem::Conflict)
    )
)]
async fn resume_connection(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<ConnectionView>, ApiError> {
    let (before, after) = update_settings(&state, &caller.tenant, &id, |c, now| {
        Ok(c.is_paused().then(|| {
            let mut next = c.clone();
            next.paused_at = None;
            next.next_sync_at = Some(Job::fresh_slot(now));
            next
        }))
    })
    .await?;
    if after.settings_version != before.settings_version {
        let entry = AuditEntry::new(
            caller.tenant.clone(),
            Operation::ConnectionResumed,
            AuditOutcome::Success,
            actor(&caller),
            after.next_sync_at.unwrap_or_else(|| state.clock.now()),
        )
        .connection(&after.connection_id)
        .change(
            Some(json!({ "paused": true, "paused_at": before.paused_at })),
            Some(json!({ "paused": false, "next_sync_at": after.next_sync_at })),
        );
        state.audit.append(&[entry]).await?;
    }
    Ok(axum::Json(ConnectionView::from(&after)))
}

/// `GET .../health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    pub connection_id: String,
    pub status: HealthStatus,
    pub reasons: Vec<HealthReason>,
    pub retry: RetryState,
    pub paused: bool,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub next_sync_at: Option<DateTime<Utc>>,
    pub checked_at: DateTime<Utc>,
}

/// The newest failure entries of a connection (failed or rejected job attempts), newest first.
async fn failures(
    state: &ApiState,
    connection: &Connection,
    from: Option<DateTime<Utc>>,
    limit: usize,
) -> Result<Vec<AuditEntry>, ApiError> {
    let query = AuditQuery {
        connection: Some(connection.connection_id.clone()),
        operations: vec![Operation::Retry, Operation::Error],
        outcomes: vec![AuditOutcome::Failure, AuditOutcome::Rejected],
        from,
        limit,
        ..AuditQuery::default()
    };
    let mut out = Vec::new();
    let mut query = query;
    // A filtered page may come back short with a token: follow a few.
    for _ in 0..4 {
        let page = state.audit.query(&connection.tenant_id, &query).await?;
        out.extend(page.items);
        match page.next {
            Some(t) if out.len() < limit => query.page_token = Some(t),
            _ => break,
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// Items over the pages of a listing, stopping at [`COUNT_BOUND`] (at most four pages).
async fn count_bounded<T, F, Fut>(mut list: F) -> Result<usize, ApiError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<crate::ports::Page<T>, StoreError>>,
{
    let (mut n, mut token) = (0, None);
    for _ in 0..4 {
        let page = list(token).await?;
        n += page.items.len();
        match page.next {
            Some(t) if n < COUNT_BOUND => token = Some(t),
            _ => break,
        }
    }
    Ok(n)
}

async fn count_open_conflicts(state: &ApiState, c: &Connection) -> Result<usize, ApiError> {
    count_bounded(|page_token| {
        let query = ConflictQuery {
            connection: Some(c.connection_id.clone()),
            status: Some(ConflictStatus::Open),
            limit: COUNT_BOUND,
            page_token,
            ..ConflictQuery::default()
        };
        async move { state.engine.conflicts.list(&c.tenant_id, &query).await }
    })
    .await
}

async fn count_failed_pushes(state: &ApiState, c: &Connection) -> Result<usize, ApiError> {
    count_bounded(|page_token| {
        let query = PushQuery {
            connection: Some(c.connection_id.clone()),
            status: Some(PushStatus::Failed),
            limit: COUNT_BOUND,
            page_token,
            as_of: None,
        };
        async move { state.engine.pushes.list(&c.tenant_id, &query).await }
    })
    .await
}

/// Health of a connection: `healthy`, `degraded` or `failed`, with every reason found (rules in
/// [`crate::domain::health::assess`]).
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}/health",
    tag = "connections",
    params(("connection_id" = String, Path, description = CONNECTION_ID)),
    responses(
        (status = 200, body = HealthView)
    )
)]
async fn connection_health(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<HealthView>, ApiError> {
    let c = load_connection(&state, &caller.tenant, &id).await?;
    let now = state.clock.now();
    let runs = state.runs.list_runs(&caller.tenant, &c.connection_id, 1).await?;
    let retry = health::retry_state(&c, &failures(&state, &c, None, 1).await?);
    let input = health::HealthInput {
        connection: &c,
        now,
        last_run: runs.first(),
        retry: &retry,
        open_conflicts: count_open_conflicts(&state, &c).await?,
        failed_pushes: count_failed_pushes(&state, &c).await?,
        webhook_base_url: state.engine.settings.webhook_base_url.as_deref(),
    };
    let (status, reasons) = health::assess(&input);
    Ok(axum::Json(HealthView {
        connection_id: c.connection_id.to_string(),
        status,
        reasons,
        retry,
        paused: c.is_paused(),
        last_sync_at: c.last_sync_at,
        next_sync_at: c.next_sync_at,
        checked_at: now,
    }))
}

/// Where one object type's sync stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectSyncState {
    /// No cursor yet: the first (full) pull has not completed a page.
    NotStarted,
    /// A job is running for the connection right now.
    Syncing,
    /// Pulled up to its cursor.
    Synced,
    /// Its last pull failed with a permanent provider error (see `error`); the other object
    /// types sync, and it is retried from `error.retry_at` (or at once by a manual sync).
    Failed,
    /// The connection is in `error`.
    Error,
    /// The connection is paused.
    Paused,
}

/// One object type of `GET .../status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectStatusView {
    #[schema(value_type = String, example = "contacts")]
    pub object: ObjectType,
    pub state: ObjectSyncState,
    /// Records stored for it (as counted by the last sync).
    pub records: u64,
    /// True once a cursor is stored (incremental pulls from there).
    pub has_cursor: bool,
    /// When a sync last completed with this object pulled up to its cursor.
    pub last_synced_at: Option<DateTime<Utc>>,
    /// Why its pull fails (state `failed`, or `error` when no object type synced), with the
    /// provider's status and code, the attempts and the next automatic attempt.
    pub error: Option<ObjectError>,
}

/// `GET .../status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    pub connection_id: String,
    #[schema(value_type = String, example = "synced")]
    pub status: ConnectionStatus,
    pub paused: bool,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub next_sync_at: Option<DateTime<Utc>>,
    /// Set while a job is running (since its first attempt started).
    pub syncing_since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_run_id: Option<String>,
    pub objects: Vec<ObjectStatusView>,
}

/// The per-object view: the provider's object types in pull order, plus any other type the
/// connection holds a cursor or records for.
pub fn status_view(c: &Connection) -> StatusView {
    let mut objects: Vec<ObjectType> = c.provider.object_types().to_vec();
    for o in c.cursors.keys().chain(c.record_counts.keys()) {
        if !objects.contains(o) {
            objects.push(*o);
        }
    }
    let objects = objects
        .into_iter()
        .map(|object| {
            let has_cursor = c.cursors.contains_key(&object);
            let error = c.object_errors.get(&object).cloned();
            let state = if c.is_paused() {
                ObjectSyncState::Paused
            } else if c.status == ConnectionStatus::Error {
                ObjectSyncState::Error
            } else if c.inflight_since.is_some() {
                ObjectSyncState::Syncing
            } else if error.is_some() {
                ObjectSyncState::Failed
            } else if has_cursor {
                ObjectSyncState::Synced
            } else {
                ObjectSyncState::NotStarted
            };
            ObjectStatusView {
                object,
                state,
                records: c.record_counts.get(&object).copied().unwrap_or(0),
                has_cursor,
                last_synced_at: if has_cursor && error.is_none() { c.last_sync_at } else { None },
                error,
            }
        })
        .collect();
    StatusView {
        connection_id: c.connection_id.to_string(),
        status: c.status,
        paused: c.is_paused(),
        last_sync_at: c.last_sync_at,
        next_sync_at: c.next_sync_at,
        syncing_since: c.inflight_since,
        last_error: c.last_error.clone(),
        last_run_id: c.last_run_id.as_ref().map(|r| r.to_string()),
        objects,
    }
}

/// Sync status of a connection and of each object type it syncs.
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}/status",
    tag = "connections",
    params(("connection_id" = String, Path, description = CONNECTION_ID)),
    responses(
        (status = 200, body = StatusView)
    )
)]
async fn connection_status(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<StatusView>, ApiError> {
    let c = load_connection(&state, &caller.tenant, &id).await?;
    Ok(axum::Json(status_view(&c)))
}

/// Query of `GET .../runs/summary` and `GET .../errors`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowParams {
    /// How many of the newest runs (summary: 1..=200, default 50) or errors (1..=200, default 20).
    limit: Option<usize>,
}

/// Counts, duration and success rate over the newest `limit` runs (the window `GET .../runs`
/// returns for the same `limit`), with failed job attempts audited in that span.
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}/runs/summary",
    tag = "connections",
    params(("connection_id" = String, Path, description = CONNECTION_ID), WindowParams),
    responses(
        (status = 200, body = RunSummary)
    )
)]
async fn runs_summary(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<WindowParams>,
) -> Result<axum::Json<RunSummary>, ApiError> {
    let limit = page_limit(params.limit)?;
    let c = load_connection(&state, &caller.tenant, &id).await?;
    let runs = state.runs.list_runs(&caller.tenant, &c.connection_id, limit).await?;
    let from = runs.iter().map(|r| r.started_at).min();
    let failed = if runs.len() < limit {
        // The window holds every run there is: count every failure kept.
        failures(&state, &c, None, COUNT_BOUND).await?
    } else {
        failures(&state, &c, from, COUNT_BOUND).await?
    };
    Ok(axum::Json(health::summarize(&runs, failed.len())))
}

/// One failed job attempt of `GET .../errors`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEntryView {
    pub entry_id: String,
    pub at: DateTime<Utc>,
    /// `retry` (retryable: SQS delivers the job again) or `error` (permanent).
    pub operation: String,
    /// `failure` or `rejected`.
    pub outcome: String,
    pub job_id: Option<String>,
    pub error: Option<String>,
    pub retryable: Option<bool>,
    pub attempt: Option<u64>,
    pub next_attempt_at: Option<String>,
}

impl From<AuditEntry> for ErrorEntryView {
    fn from(e: AuditEntry) -> Self {
        let text = |name: &str| e.detail.get(name).and_then(Value::as_str).map(str::to_owned);
        Self {
            job_id: text("job_id"),
            error: text("error"),
            next_attempt_at: text("next_attempt_at"),
            retryable: e.detail.get("retryable").and_then(Value::as_bool),
            attempt: e.detail.get("attempt").and_then(Value::as_u64),
            entry_id: e.entry_id,
            at: e.at,
            operation: e.operation.as_str().to_owned(),
            outcome: e.outcome.as_str().to_owned(),
        }
    }
}

/// A hypermedia action.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionLink {
    pub method: &'static str,
    pub href: String,
}

/// `GET .../errors`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorsView {
    pub connection_id: String,
    #[schema(value_type = String, example = "error")]
    pub status: ConnectionStatus,
    /// The error the connection shows (status `error`), if any.
    pub current_error: Option<String>,
    pub retry: RetryState,
    /// `POST /v1/connections/{id}/retry`, present when it applies (status `error`, not paused).
    pub retry_action: Option<ActionLink>,
    /// Recent failed job attempts, newest first.
    pub items: Vec<ErrorEntryView>,
}

/// Recent failed job attempts, the current error, the retry state (attempts, next automatic
/// attempt) and the retry action when the worker gave up.
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}/errors",
    tag = "connections",
    params(("connection_id" = String, Path, description = CONNECTION_ID), WindowParams),
    responses(
        (status = 200, body = ErrorsView)
    )
)]
async fn connection_errors(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<WindowParams>,
) -> Result<axum::Json<ErrorsView>, ApiError> {
    let limit = page_limit_or(params.limit, 20)?;
    let c = load_connection(&state, &caller.tenant, &id).await?;
    let items = failures(&state, &c, None, limit).await?;
    let retry = health::retry_state(&c, &items);
    let retry_action = (retry.state == RetryPhase::Failed && !c.is_paused())
        .then(|| ActionLink { method: "POST", href: format!("/v1/connections/{}/retry", c.connection_id) });
    Ok(axum::Json(ErrorsView {
        connection_id: c.connection_id.to_string(),
        status: c.status,
        current_error: if c.status == ConnectionStatus::Error { c.last_error.clone() } else { None },
        retry,
        retry_action,
        items: items.into_iter().map(ErrorEntryView::from).collect(),
    }))
}
