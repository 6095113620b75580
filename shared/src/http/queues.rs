//! The push queue and the conflict queue over HTTP, and local edits of records (which become
//! pushes through the approval queue). Every id is looked up under the caller's tenant only:
//! another tenant's item is a 404, never a 403 that would confirm it exists.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use super::auth::Caller;
use super::common::{CONNECTION_ID, Items, PageView, actor, invalid, load_connection, page_limit};
use super::problem::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::domain::policy::{Source, Strategy};
use crate::domain::push::ConflictItem;
use crate::domain::record::Fields;
use crate::domain::{
    ConflictStatus, ConnectionId, ExternalId, IdempotencyKey, ObjectType, Priority, PushAction, PushItem,
    PushStatus, RecordId, Resolution,
};
use crate::ports::{ConflictQuery, PushQuery};
use crate::sync::push::{self, Edited, PushError, PushRequest};

/// Most ids one bulk decision or resolution takes.
pub const MAX_BULK: usize = 100;

/// The push queue, conflict queue and local edit routes, with their OpenAPI operations.
pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(queue_push))
        .routes(routes!(edit_record))
        .routes(routes!(list_push))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(get_push))
        .routes(routes!(list_conflicts))
        .routes(routes!(resolve))
        .routes(routes!(get_conflict))
}

impl From<PushError> for ApiError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::NotFound => ApiError::NotFound,
            PushError::Invalid(d) => ApiError::InvalidRequest(d),
            PushError::State(_) => ApiError::Conflict,
            PushError::Store(e) => e.into(),
        }
    }
}

/// A push item as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushView {
    pub push_id: String,
    pub connection_id: ConnectionId,
    pub action: PushAction,
    pub status: PushStatus,
    pub priority: Priority,
    pub object: ObjectType,
    pub record_id: Option<RecordId>,
    #[schema(value_type = BTreeMap<String, Value>)]
    pub fields: Fields,
    pub idempotency_key: IdempotencyKey,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub result_external_id: Option<ExternalId>,
    pub completed_at: Option<DateTime<Utc>>,
    /// For a `superseded` item, what made it obsolete: the push id of a newer item carrying its
    /// fields, a conflict id, `local_change` (the local value moved on) or `merge` (a pull).
    pub superseded_by: Option<String>,
    pub superseded_at: Option<DateTime<Utc>>,
    /// Where the values come from, as queued (`inferred`, `web`, `document`: an agent's).
    pub source: Option<Source>,
    /// Fields left out of the write: people in the CRM own them (the connection's policy's
    /// `ownership`) and the item is an agent's.
    pub withheld_fields: Vec<String>,
    /// For `delete_record`: the record's modified stamp at the provider when the delete was
    /// approved. A record changed since is not deleted (the item fails as a conflict).
    pub approved_remote_modified_at: Option<DateTime<Utc>>,
}

impl PushView {
    fn new(p: PushItem, now: DateTime<Utc>) -> Self {
        Self {
            status: p.status_at(now),
            push_id: p.push_id,
            connection_id: p.connection_id,
            action: p.action,
            priority: p.priority,
            object: p.object,
            record_id: p.record_id,
            fields: p.fields,
            idempotency_key: p.idempotency_key,
            created_by: p.created_by,
            created_at: p.created_at,
            expires_at: p.expires_at,
            decided_by: p.decided_by,
            decided_at: p.decided_at,
            attempts: p.attempts,
            last_error: p.last_error,
            result_external_id: p.result_external_id,
            completed_at: p.completed_at,
            superseded_by: p.superseded_by,
            superseded_at: p.superseded_at,
            source: p.source,
            withheld_fields: p.withheld_fields,
            approved_remote_modified_at: p.approved_remote_modified_at,
        }
    }
}

/// A conflict as the API shows it. `base`, `local` and `remote` are any JSON (or `null`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictView {
    pub conflict_id: String,
    pub connection_id: ConnectionId,
    pub record_id: RecordId,
    pub object: ObjectType,
    pub external_id: ExternalId,
    pub field: String,
    pub base: Option<Value>,
    pub local: Option<Value>,
    pub remote: Option<Value>,
    pub suggested: Resolution,
    pub suggested_by: Strategy,
    pub status: ConflictStatus,
    pub detected_at: DateTime<Utc>,
    pub resolution: Option<Resolution>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
}

impl From<ConflictItem> for ConflictView {
    fn from(c: ConflictItem) -> Self {
        Self {
            conflict_id: c.conflict_id,
            connection_id: c.connection_id,
            record_id: c.record_id,
            object: c.object,
            external_id: c.external_id,
            field: c.field,
            base: c.base,
            local: c.local,
            remote: c.remote,
            suggested: c.suggested,
            suggested_by: c.suggested_by,
            status: c.status,
            detected_at: c.detected_at,
            resolution: c.resolution,
            resolved_by: c.resolved_by,
            resolved_at: c.resolved_at,
        }
    }
}

/// The body of `POST /v1/connections/{id}/push`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct QueuePush {
    action: PushAction,
    /// For `create_record` (and only then): the object type to create, `contacts`, `companies` or
    /// `deals` (Salesforce: Contact, Account, Opportunity).
    object: Option<ObjectType>,
    /// `normal` when absent (`medium` is read as `normal`).
    #[serde(default = "normal")]
    priority: Priority,
    /// The record the action applies to (required for `create_note`, `update_field`,
    /// `update_record` and `delete_record`; none for `create_record`).
    record_id: Option<RecordId>,
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Value>)]
    fields: Fields,
    idempotency_key: IdempotencyKey,
    /// Where the values come from: `user_stated`, `document`, `web` or `inferred`.
    source: Option<Source>,
}

fn normal() -> Priority {
    Priority::Normal
}

/// Queues a push item (201); the same idempotency key again is the same item (200).
#[utoipa::path(
    post,
    path = "/v1/connections/{connection_id}/push",
    tag = "push",
    params(("connection_id" = ConnectionId, Path, description = CONNECTION_ID)),
    request_body = QueuePush,
    responses(
        (status = 201, body = PushView, description = "Queued"),
        (status = 200, body = PushView, description = "The item of that idempotency key"),
        (status = 409, response = super::problem::Conflict),
    )
)]
async fn queue_push(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<QueuePush>,
) -> Result<Response, ApiError> {
    let connection = load_connection(&state, &caller.tenant, &id).await?;
    let request = PushRequest {
        action: body.action,
        object: body.object,
        priority: body.priority,
        record_id: body.record_id,
        fields: body.fields,
        idempotency_key: body.idempotency_key,
        source: body.source,
    };
    let (item, created) = push::queue(&state.engine, &connection, request, &actor(&caller)).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(PushView::new(item, state.clock.now()))).into_response())
}

/// The body of `POST /v1/connections/{id}/records/{record_id}/edit`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EditRecord {
    #[schema(value_type = BTreeMap<String, Value>)]
    fields: Fields,
    idempotency_key: IdempotencyKey,
    /// `normal` when absent (`medium` is read as `normal`).
    #[serde(default = "normal")]
    priority: Priority,
    source: Option<Source>,
}

/// A local edit: applied locally at once, pushed once approved (an `update_record` push item).
/// A research task is Syncbridge's own and no calendar takes it: its edit is applied and audited
/// (`local_edit`) without a push item (204).
#[utoipa::path(
    post,
    path = "/v1/connections/{connection_id}/records/{record_id}/edit",
    tag = "records",
    params(
        ("connection_id" = ConnectionId, Path, description = CONNECTION_ID),
        ("record_id" = RecordId, Path, description = "A record of that connection"),
    ),
    request_body = EditRecord,
    responses(
        (status = 201, body = PushView, description = "Queued"),
        (status = 200, body = PushView, description = "The item of that idempotency key"),
        (status = 204, description = "Applied to a record that stays local (a research task); nothing is pushed"),
        (status = 409, response = super::problem::Conflict),
    )
)]
async fn edit_record(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath((id, record_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<EditRecord>,
) -> Result<Response, ApiError> {
    let connection = load_connection(&state, &caller.tenant, &id).await?;
    let record_id = RecordId::parse(record_id).map_err(|_| ApiError::NotFound)?;
    let request = PushRequest {
        action: PushAction::UpdateRecord,
        object: None,
        priority: body.priority,
        record_id: Some(record_id),
        fields: body.fields,
        idempotency_key: body.idempotency_key,
        source: body.source,
    };
    match push::edit(&state.engine, &connection, request, &actor(&caller)).await? {
        Edited::Queued(item, created) => {
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            Ok((status, axum::Json(PushView::new(*item, state.clock.now()))).into_response())
        }
        Edited::Local(_) => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListPush {
    status: Option<PushStatus>,
    #[param(value_type = Option<ConnectionId>)]
    connection_id: Option<String>,
    /// 1 to 200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
    /// The `next_page_token` of the previous page.
    page_token: Option<String>,
}

/// A page of the push queue in queue order across pages: by status (pending, approved, failed,
/// completed, superseded, rejected; expired items are pending ones), then highest priority first,
/// then oldest first. A page may hold fewer than `limit` items when a filter matches sparsely.
#[utoipa::path(
    get,
    path = "/v1/push",
    tag = "push",
    params(ListPush),
    responses((status = 200, body = PageView<PushView>))
)]
async fn list_push(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListPush>,
) -> Result<axum::Json<PageView<PushView>>, ApiError> {
    let connection =
        q.connection_id.map(ConnectionId::parse).transpose().map_err(|e| invalid(e.to_string()))?;
    let now = state.clock.now();
    // Expiry is computed, not stored: the store tells pending from expired as of now.
    let query = PushQuery {
        connection,
        status: q.status,
        as_of: Some(now),
        limit: page_limit(q.limit)?,
        page_token: q.page_token,
    };
    let page = state.engine.pushes.list(&caller.tenant, &query).await?;
    let items: Vec<PushView> = page
        .items
        .into_iter()
        .map(|p| PushView::new(p, now))
        .filter(|v| q.status.is_none_or(|s| s == v.status))
        .collect();
    Ok(axum::Json(PageView { items, next_page_token: page.next }))
}

/// One push item.
#[utoipa::path(
    get,
    path = "/v1/push/{push_id}",
    tag = "push",
    params(("push_id" = String, Path, description = "A push item of the caller's tenant")),
    responses((status = 200, body = PushView))
)]
async fn get_push(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(push_id): ApiPath<String>,
) -> Result<axum::Json<PushView>, ApiError> {
    let item = state.engine.pushes.get(&caller.tenant, &push_id).await?.ok_or(ApiError::NotFound)?;
    Ok(axum::Json(PushView::new(item, state.clock.now())))
}

/// The body of the bulk decision routes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Ids {
    #[schema(min_items = 1, max_items = 100)]
    ids: Vec<String>,
}

/// One outcome of a bulk request: the item when `ok`, else why not.
#[derive(Debug, Serialize, ToSchema)]
struct BulkOutcome<T> {
    id: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<T>,
    /// `not_found` (also another tenant's id), `invalid_request`, `conflict` (already decided,
    /// expired, resolved) or `unavailable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    error: Option<&'static str>,
}

fn bulk_ids(ids: Vec<String>) -> Result<Vec<String>, ApiError> {
    if ids.is_empty() || ids.len() > MAX_BULK {
        return Err(invalid(format!("ids must hold 1 to {MAX_BULK} ids")));
    }
    let mut ids = ids;
    ids.dedup();
    Ok(ids)
}

fn error_code(e: &PushError) -> &'static str {
    match e {
        PushError::NotFound => "not_found",
        PushError::Invalid(_) => "invalid_request",
        PushError::State(_) => "conflict",
        PushError::Store(_) => "unavailable",
    }
}

async fn decide(state: ApiState, caller: Caller, body: Ids, approve: bool) -> Result<Response, ApiError> {
    let ids = bulk_ids(body.ids)?;
    let outcomes = push::decide(&state.engine, &caller.tenant, &ids, approve, &actor(&caller)).await?;
    let now = state.clock.now();
    let items: Vec<BulkOutcome<PushView>> = outcomes
        .into_iter()
        .map(|(id, result)| match result {
            Ok(item) => BulkOutcome { id, ok: true, item: Some(PushView::new(item, now)), error: None },
            Err(e) => BulkOutcome { id, ok: false, item: None, error: Some(error_code(&e)) },
        })
        .collect();
    Ok(axum::Json(Items { items }).into_response())
}

/// Approves pending push items (1 to 100 ids); each outcome on its own.
#[utoipa::path(
    post,
    path = "/v1/push/approve",
    tag = "push",
    request_body = Ids,
    responses((status = 200, body = Items<BulkOutcome<PushView>>))
)]
async fn approve(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<Ids>,
) -> Result<Response, ApiError> {
    decide(state, caller, body, true).await
}

/// Rejects pending push items (1 to 100 ids); each outcome on its own.
#[utoipa::path(
    post,
    path = "/v1/push/reject",
    tag = "push",
    request_body = Ids,
    responses((status = 200, body = Items<BulkOutcome<PushView>>))
)]
async fn reject(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<Ids>,
) -> Result<Response, ApiError> {
    decide(state, caller, body, false).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListConflicts {
    status: Option<ConflictStatus>,
    #[param(value_type = Option<ConnectionId>)]
    connection_id: Option<String>,
    /// Only conflicts on this canonical field.
    field: Option<String>,
    /// 1 to 200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
    /// The `next_page_token` of the previous page.
    page_token: Option<String>,
}

/// A page of the conflict queue.
#[utoipa::path(
    get,
    path = "/v1/conflicts",
    tag = "conflicts",
    params(ListConflicts),
    responses((status = 200, body = PageView<ConflictView>))
)]
async fn list_conflicts(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListConflicts>,
) -> Result<axum::Json<PageView<ConflictView>>, ApiError> {
    let connection =
        q.connection_id.map(ConnectionId::parse).transpose().map_err(|e| invalid(e.to_string()))?;
    let query = ConflictQuery {
        connection,
        status: q.status,
        field: q.field,
        limit: page_limit(q.limit)?,
        page_token: q.page_token,
    };
    let page = state.engine.conflicts.list(&caller.tenant, &query).await?;
    Ok(axum::Json(PageView {
        items: page.items.into_iter().map(ConflictView::from).collect(),
        next_page_token: page.next,
    }))
}

/// One conflict.
#[utoipa::path(
    get,
    path = "/v1/conflicts/{conflict_id}",
    tag = "conflicts",
    params(("conflict_id" = String, Path, description = "A conflict of the caller's tenant")),
    responses((status = 200, body = ConflictView))
)]
async fn get_conflict(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(conflict_id): ApiPath<String>,
) -> Result<axum::Json<ConflictView>, ApiError> {
    let item = state.engine.conflicts.get(&caller.tenant, &conflict_id).await?.ok_or(ApiError::NotFound)?;
    Ok(axum::Json(item.into()))
}

/// How to resolve: the same resolution for every matched conflict, or each conflict's suggestion
/// (what the connection's policy with a last-write-wins fallback picks).
#[derive(Deserialize, Clone, Copy, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ResolveStrategy {
    UseLocal,
    UseRemote,
    Skip,
    Suggested,
}

/// Which open conflicts a resolution applies to: listed ids, or all similar ones (same
/// connection and/or field).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Matching {
    connection_id: Option<String>,
    field: Option<String>,
}

/// Either `ids` or `matching`, and the resolution.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Resolve {
    #[schema(min_items = 1, max_items = 100)]
    ids: Option<Vec<String>>,
    matching: Option<Matching>,
    resolution: ResolveStrategy,
}

/// Resolves listed conflicts, or every open one matching a connection and/or field (at most 100).
#[utoipa::path(
    post,
    path = "/v1/conflicts/resolve",
    tag = "conflicts",
    request_body = Resolve,
    responses((status = 200, body = Items<BulkOutcome<ConflictView>>))
)]
async fn resolve(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<Resolve>,
) -> Result<Response, ApiError> {
    // Each target is a conflict of this tenant, or the id that names none.
    let targets: Vec<Result<ConflictItem, String>> = match (body.ids, body.matching) {
        (Some(ids), None) => {
            let mut found = Vec::new();
            for id in bulk_ids(ids)? {
                found.push(state.engine.conflicts.get(&caller.tenant, &id).await?.ok_or(id));
            }
            found
        }
        (None, Some(m)) => {
            let connection =
                m.connection_id.map(ConnectionId::parse).transpose().map_err(|e| invalid(e.to_string()))?;
            if connection.is_none() && m.field.is_none() {
                return Err(invalid("matching needs a connection_id, a field, or both"));
            }
            let query = ConflictQuery {
                connection,
                status: Some(ConflictStatus::Open),
                field: m.field,
                limit: MAX_BULK,
                page_token: None,
            };
            state.engine.conflicts.list(&caller.tenant, &query).await?.items.into_iter().map(Ok).collect()
        }
        _ => return Err(invalid("give either ids or matching")),
    };
    let actor = actor(&caller);
    let mut items = Vec::new();
    for target in targets {
        let target = match target {
            Ok(t) => t,
            Err(id) => {
                items.push(BulkOutcome { id, ok: false, item: None, error: Some("not_found") });
                continue;
            }
        };
        let resolution = match body.resolution {
            ResolveStrategy::UseLocal => Resolution::UseLocal,
            ResolveStrategy::UseRemote => Resolution::UseRemote,
            ResolveStrategy::Skip => Resolution::Skip,
            ResolveStrategy::Suggested => target.suggested,
        };
        let out = push::resolve(
            &state.engine,
            &caller.tenant,
            std::slice::from_ref(&target.conflict_id),
            resolution,
            &actor,
        )
        .await?;
        for (id, result) in out {
            items.push(match result {
                Ok(c) => BulkOutcome { id, ok: true, item: Some(ConflictView::from(c)), error: None },
                Err(e) => BulkOutcome { id, ok: false, item: None, error: Some(error_code(&e)) },
            });
        }
    }
    Ok(axum::Json(Items { items }).into_response())
}
