//! The connections resource: create, list and read connections, their runs and records, and
//! "sync now" and "retry". Every route takes the tenant from the verified [`Caller`]; another
//! tenant's ids are 404.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use super::auth::Caller;
use super::common::{CONNECTION_ID, Items, PageView, actor, invalid, load_connection, page_limit};
use super::problem::{self, ApiError, ApiJson, ApiPath, ApiQuery};
use crate::domain::connection::{DEFAULT_INTERVAL_MINUTES, MAX_INTERVAL_MINUTES, MIN_INTERVAL_MINUTES};
use crate::domain::{
    AuditEntry, AuditOutcome, CanonicalRecord, Connection, ConnectionId, ConnectionSettings,
    ConnectionStatus, Credentials, Job, JobId, JobReason, NewConnection, ObjectError, ObjectRun, ObjectType,
    Operation, Provider, PushItem, PushStatus, RecordId, RunCounts, RunId, RunStatus, SyncRun, TenantId,
};

/// The connections routes with their OpenAPI operations.
pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(create_connection, list_connections))
        .routes(routes!(get_connection))
        .routes(routes!(list_runs))
        .routes(routes!(list_records))
        .routes(routes!(get_record))
        .routes(routes!(request_sync))
        .routes(routes!(retry_connection))
}

/// Upper bound of `expires_in_seconds` (one year).
pub const MAX_EXPIRES_IN_SECONDS: u64 = 365 * 24 * 3600;

/// The API base URL a provider's connections use unless the request names another.
pub fn default_base_url(provider: Provider) -> &'static str {
    match provider {
        Provider::Hubspot => "https://api.hubapi.com",
        Provider::Salesforce => "https://login.salesforce.com",
        Provider::Google => "https://www.googleapis.com",
        Provider::GoogleDrive => crate::adapters::drive::DEFAULT_API_ROOT,
        Provider::Microsoft => "https://graph.microsoft.com",
        Provider::Gmail => crate::adapters::gmail::DEFAULT_API_ROOT,
        Provider::Notion => crate::adapters::notion::DEFAULT_API_BASE_URL,
        Provider::Fireflies => crate::adapters::fireflies::DEFAULT_API_BASE_URL,
    }
}

/// A connection as the API shows it: settings and sync state, never credentials.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    pub id: ConnectionId,
    pub provider: Provider,
    pub base_url: String,
    pub account_id: Option<String>,
    pub status: ConnectionStatus,
    pub interval_minutes: u32,
    pub next_sync_at: Option<DateTime<Utc>>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_run_id: Option<RunId>,
    pub record_counts: BTreeMap<ObjectType, u64>,
    /// Object types whose pull failed for good (the others sync): the error, attempts and the
    /// next automatic attempt (`retry_at`; a manual sync tries at once). Empty when all sync.
    pub object_errors: BTreeMap<ObjectType, ObjectError>,
    pub settings: ConnectionSettings,
    /// True while paused (`POST .../pause`): not scheduled, no manual syncs.
    pub paused: bool,
    pub paused_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<&Connection> for ConnectionView {
    fn from(c: &Connection) -> Self {
        Self {
            id: c.connection_id.clone(),
            provider: c.provider,
            base_url: c.base_url.clone(),
            account_id: c.account_id.clone(),
            status: c.status,
            interval_minutes: c.interval_minutes,
            next_sync_at: c.next_sync_at,
            last_sync_at: c.last_sync_at,
            last_error: c.last_error.clone(),
            last_run_id: c.last_run_id.clone(),
            record_counts: c.record_counts.clone(),
            object_errors: c.object_errors.clone(),
            settings: c.settings.clone(),
            paused: c.is_paused(),
            paused_at: c.paused_at,
            created_at: c.created_at,
        }
    }
}

/// One sync run as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    pub run_id: RunId,
    pub job_id: JobId,
    pub reason: JobReason,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub counts: RunCounts,
    pub processed: u64,
    pub succeeded: u64,
    /// For `partial` and `failed` runs: the failing object types, one `type: error (n attempts)`
    /// each, separated by `; `.
    pub error: Option<String>,
    /// What each object type did (pulled, created, ..., and its error when it failed or was
    /// skipped while waiting for its retry). Empty for runs from before per-object results.
    pub objects: BTreeMap<ObjectType, ObjectRun>,
}

impl From<SyncRun> for RunView {
    fn from(r: SyncRun) -> Self {
        Self {
            processed: r.counts.processed(),
            succeeded: r.counts.succeeded(),
            run_id: r.run_id,
            job_id: r.job_id,
            reason: r.reason,
            status: r.status,
            started_at: r.started_at,
            finished_at: r.finished_at,
            duration_ms: r.duration_ms,
            counts: r.counts,
            error: r.error,
            objects: r.objects,
        }
    }
}

/// One canonical record as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordView {
    pub record_id: RecordId,
    pub object: ObjectType,
    pub external_id: crate::domain::ExternalId,
    /// Canonical field name -> value (any JSON).
    #[schema(value_type = BTreeMap<String, Value>)]
    pub fields: crate::domain::record::Fields,
    /// Each field's value as both sides last agreed on it: what the provider holds as of the last
    /// sync, so the current value an unpushed edit (`pending_push`) would replace. A field absent
    /// here was never agreed (the provider does not have it).
    #[schema(value_type = BTreeMap<String, Value>)]
    pub base: crate::domain::record::Fields,
    pub deleted: bool,
    pub remote_modified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
    /// Fields whose local value the provider does not have (yet), each with the push item that
    /// carries it: `pending` or `approved`, it is on its way; `expired` or `failed`, it did not go
    /// out, and the local value stays visibly unpushed until a new edit is approved or this item
    /// is rejected (which puts the agreed value back). Empty when the record agrees with the
    /// provider, or differs only by an open conflict.
    pub pending_push: BTreeMap<String, PendingPushView>,
}

/// The push item behind a field's unpushed local value.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PendingPushView {
    pub push_id: String,
    /// The item's status now; `null` once the item is gone (finished items are removed 30 days
    /// after they finished).
    pub status: Option<PushStatus>,
}

impl RecordView {
    fn new(r: CanonicalRecord, items: &BTreeMap<String, PushItem>, now: DateTime<Utc>) -> Self {
        let pending_push = r
            .pending_push
            .iter()
            .filter(|(field, _)| r.fields.get(*field) != r.base.get(*field))
            .map(|(field, id)| {
                let status = items.get(id).map(|p| p.status_at(now));
                (field.clone(), PendingPushView { push_id: id.clone(), status })
            })
            .collect();
        Self {
            record_id: r.record_id,
            object: r.object,
            external_id: r.external_id,
            fields: r.fields,
            base: r.base,
            deleted: r.deleted,
            remote_modified_at: r.remote_modified_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            version: r.version,
            pending_push,
        }
    }
}

/// Views of `records`, with the push items their unpushed fields name (read 16 at a time).
async fn record_views(
    state: &ApiState,
    tenant: &TenantId,
    records: Vec<CanonicalRecord>,
) -> Result<Vec<RecordView>, ApiError> {
    use futures::StreamExt;
    let mut ids: Vec<String> = records.iter().flat_map(|r| r.pending_push.values().cloned()).collect();
    ids.sort();
    ids.dedup();
    let found: Vec<Result<Option<PushItem>, crate::ports::StoreError>> = futures::stream::iter(ids)
        .map(|id| {
            let (pushes, tenant) = (state.engine.pushes.clone(), tenant.clone());
            async move { pushes.get(&tenant, &id).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut items = BTreeMap::new();
    for item in found {
        if let Some(p) = item? {
            items.insert(p.push_id.clone(), p);
        }
    }
    let now = state.clock.now();
    Ok(records.into_iter().map(|r| RecordView::new(r, &items, now)).collect())
}

/// The body of `POST /v1/connections`. Tokens are write-only: no response ever shows them.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateConnection {
    provider: Provider,
    /// http(s), without credentials, query or fragment; the provider's default when absent.
    #[schema(example = "https://api.hubapi.com")]
    base_url: Option<String>,
    /// The provider account (HubSpot portal id, ...), so its webhooks find the connection.
    #[schema(min_length = 1, max_length = 256)]
    account_id: Option<String>,
    #[schema(value_type = String, write_only, min_length = 1)]
    access_token: SecretString,
    #[schema(value_type = Option<String>, write_only, min_length = 1)]
    refresh_token: Option<SecretString>,
    #[schema(minimum = 1, maximum = 31_536_000)]
    expires_in_seconds: Option<u64>,
    #[schema(minimum = 5, maximum = 1440)]
    interval_minutes: Option<u32>,
    settings: Option<ConnectionSettings>,
}

/// An absolute http(s) URL without query or fragment, without a trailing slash.
fn parse_base_url(raw: &str) -> Result<String, ApiError> {
    let url = url::Url::parse(raw.trim()).map_err(|_| invalid("base_url is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("base_url must be an http or https URL with a host"));
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(invalid("base_url must not carry credentials, a query or a fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

impl CreateConnection {
    fn into_new_connection(self, now: DateTime<Utc>) -> Result<NewConnection, ApiError> {
        if self.access_token.expose_secret().trim().is_empty() {
            return Err(invalid("access_token must not be empty"));
        }
        if self.refresh_token.as_ref().is_some_and(|t| t.expose_secret().trim().is_empty()) {
            return Err(invalid("refresh_token must not be empty when given"));
        }
        let interval_minutes = self.interval_minutes.unwrap_or(DEFAULT_INTERVAL_MINUTES);
        if !(MIN_INTERVAL_MINUTES..=MAX_INTERVAL_MINUTES).contains(&interval_minutes) {
            return Err(invalid(format!(
                "interval_minutes must be between {MIN_INTERVAL_MINUTES} and {MAX_INTERVAL_MINUTES}"
            )));
        }
        let expires_at = match self.expires_in_seconds {
            None => None,
            Some(s) if (1..=MAX_EXPIRES_IN_SECONDS).contains(&s) => Some(
                now + Duration::seconds(
                    i64::try_from(s).map_err(|_| invalid("expires_in_seconds is too large"))?,
                ),
            ),
            Some(_) => {
                return Err(invalid(format!(
                    "expires_in_seconds must be between 1 and {MAX_EXPIRES_IN_SECONDS}"
                )));
            }
        };
        let settings = self.settings.unwrap_or_default();
        settings.validate_for(self.provider).map_err(invalid)?;
        let base_url = match self.base_url {
            Some(raw) => parse_base_url(&raw)?,
            None => default_base_url(self.provider).to_owned(),
        };
        Ok(NewConnection {
            provider: self.provider,
            base_url,
            credentials: Credentials {
                access_token: self.access_token,
                refresh_token: self.refresh_token,
                expires_at,
            },
            interval_minutes,
            settings,
        })
    }
}

/// The account `connection`'s token belongs to, for adapters that look it up
/// ([`crate::ports::ProviderClient::token_account`]; Fireflies): the token proven on the way.
async fn token_account(state: &ApiState, connection: &Connection) -> Result<Option<String>, ApiError> {
    if !connection.provider.token_names_account() {
        return Ok(None);
    }
    let check = |e| ApiError::TokenCheck(connection.provider, e);
    let client = state.engine.providers.client(connection).map_err(check)?;
    client.token_account(&connection.credentials.access_token).await.map_err(check)
}

/// Creates a connection to a provider account; audits `connection_created`. Fireflies' API key
/// is checked at once: its owner's email becomes `account_id` (which its webhooks name); an
/// `account_id` given with it must be that email.
#[utoipa::path(
    post,
    path = "/v1/connections",
    tag = "connections",
    request_body = CreateConnection,
    responses((
        status = 201,
        body = ConnectionView,
        description = "Created",
        headers(("Location" = String, description = "The new connection's URL path"))
    ),
    (status = 422, response = problem::InvalidOrTokenRejected),
    (status = 502, response = problem::ProviderUnavailable))
)]
async fn create_connection(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateConnection>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let account_id = match body.account_id.as_deref().map(str::trim) {
        None => None,
        Some(a) if !a.is_empty() && a.len() <= 256 => Some(a.to_owned()),
        Some(_) => return Err(invalid("account_id must be 1 to 256 characters")),
    };
    let mut connection = Connection::new(caller.tenant.clone(), body.into_new_connection(now)?, now);
    connection.account_id = account_id;
    if let Some(found) = token_account(&state, &connection).await? {
        if connection.account_id.as_deref().is_some_and(|given| !given.eq_ignore_ascii_case(&found)) {
            return Err(invalid("account_id is not the account this access_token belongs to; leave it out"));
        }
        connection.account_id = Some(found);
    }
    state.connections.create(&connection).await?;
    let entry = AuditEntry::new(
        caller.tenant.clone(),
        Operation::ConnectionCreated,
        AuditOutcome::Success,
        actor(&caller),
        now,
    )
    .connection(&connection.connection_id)
    .detail(json!({
        "provider": connection.provider,
        "base_url": connection.base_url,
        "interval_minutes": connection.interval_minutes,
    }));
    state.audit.append(&[entry]).await?;
    let location = format!("/v1/connections/{}", connection.connection_id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], axum::Json(ConnectionView::from(&connection)))
        .into_response())
}

/// The caller's connections, oldest first.
#[utoipa::path(
    get,
    path = "/v1/connections",
    tag = "connections",
    responses((status = 200, body = Items<ConnectionView>))
)]
async fn list_connections(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<axum::Json<Items<ConnectionView>>, ApiError> {
    let mut connections = state.connections.list(&caller.tenant).await?;
    connections.sort_by(|a, b| (a.created_at, &a.connection_id).cmp(&(b.created_at, &b.connection_id)));
    Ok(axum::Json(Items { items: connections.iter().map(ConnectionView::from).collect() }))
}

/// One connection.
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}",
    tag = "connections",
    params(("connection_id" = ConnectionId, Path, description = CONNECTION_ID)),
    responses((status = 200, body = ConnectionView))
)]
async fn get_connection(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<ConnectionView>, ApiError> {
    let connection = load_connection(&state, &caller.tenant, &id).await?;
    Ok(axum::Json(ConnectionView::from(&connection)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RunsQuery {
    /// 1 to 200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
}

/// A connection's sync runs, newest first.
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}/runs",
    tag = "connections",
    params(("connection_id" = ConnectionId, Path, description = CONNECTION_ID), RunsQuery),
    responses((status = 200, body = Items<RunView>))
)]
async fn list_runs(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> Result<axum::Json<Items<RunView>>, ApiError> {
    let limit = page_limit(query.limit)?;
    let connection = load_connection(&state, &caller.tenant, &id).await?;
    let runs = state.runs.list_runs(&caller.tenant, &connection.connection_id, limit).await?;
    Ok(axum::Json(Items { items: runs.into_iter().map(RunView::from).collect() }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RecordsQuery {
    /// Only records of this object type.
    #[param(value_type = Option<ObjectType>)]
    object: Option<String>,
    /// 1 to 200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
    /// The `next_page_token` of the previous page.
    page_token: Option<String>,
}

/// A page of a connection's canonical records.
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}/records",
    tag = "records",
    params(("connection_id" = ConnectionId, Path, description = CONNECTION_ID), RecordsQuery),
    responses((status = 200, body = PageView<RecordView>))
)]
async fn list_records(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<RecordsQuery>,
) -> Result<axum::Json<PageView<RecordView>>, ApiError> {
    let limit = page_limit(query.limit)?;
    let object = query
        .object
        .as_deref()
        .map(ObjectType::parse)
        .transpose()
        .map_err(|e| invalid(format!("object: {e}")))?;
    let connection = load_connection(&state, &caller.tenant, &id).await?;
    let page = state
        .records
        .list(&caller.tenant, &connection.connection_id, object, limit, query.page_token.as_deref())
        .await?;
    Ok(axum::Json(PageView {
        items: record_views(&state, &caller.tenant, page.items).await?,
        next_page_token: page.next,
    }))
}

/// One canonical record.
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}/records/{record_id}",
    tag = "records",
    params(
        ("connection_id" = ConnectionId, Path, description = CONNECTION_ID),
        ("record_id" = RecordId, Path, description = "A record of that connection"),
    ),
    responses((status = 200, body = RecordView))
)]
async fn get_record(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath((id, record_id)): ApiPath<(String, String)>,
) -> Result<axum::Json<RecordView>, ApiError> {
    let connection = load_connection(&state, &caller.tenant, &id).await?;
    let record_id = RecordId::parse(record_id).map_err(|_| ApiError::NotFound)?;
    let record = state
        .records
        .get(&caller.tenant, &connection.connection_id, &record_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut views = record_views(&state, &caller.tenant, vec![record]).await?;
    Ok(axum::Json(views.pop().ok_or(ApiError::NotFound)?))
}

/// A sync job was enqueued.
#[derive(Debug, Serialize, ToSchema)]
struct SyncAccepted {
    job_id: JobId,
}

/// Sync now: enqueues a manual sync job that also checks for deletes; audits `sync_requested`.
#[utoipa::path(
    post,
    path = "/v1/connections/{connection_id}/sync",
    tag = "connections",
    params(("connection_id" = ConnectionId, Path, description = CONNECTION_ID)),
    responses(
        (status = 202, body = SyncAccepted, description = "Enqueued"),
        (status = 409, response = problem::ConflictOrPaused),
    )
)]
async fn request_sync(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let connection = load_connection(&state, &caller.tenant, &id).await?;
    if connection.is_paused() {
        return Err(ApiError::Paused);
    }
    let now = state.clock.now();
    let job_id = Job::requested_id(&connection.connection_id, JobReason::Manual);
    let job = Job::sync(
        caller.tenant.clone(),
        connection.connection_id.clone(),
        job_id.clone(),
        JobReason::Manual,
        now,
    )
    .checking_deletes();
    let entry = |outcome| {
        AuditEntry::new(caller.tenant.clone(), Operation::SyncRequested, outcome, actor(&caller), now)
            .connection(&connection.connection_id)
            .detail(json!({ "job_id": job_id, "reason": JobReason::Manual }))
    };
    if let Err(e) = state.queue.enqueue(std::slice::from_ref(&job)).await {
        if let Err(audit_error) = state.audit.append(&[entry(AuditOutcome::Failure)]).await {
            tracing::error!(error = %problem::error_chain(&audit_error), "could not audit a failed sync request");
        }
        return Err(e.into());
    }
    state.audit.append(&[entry(AuditOutcome::Success)]).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(SyncAccepted { job_id })).into_response())
}

/// The retry action of a connection in `error`: back to `pending` and a sync enqueued at once.
/// Any other status is a 409 (a retry is for a connection that gave up).
#[utoipa::path(
    post,
    path = "/v1/connections/{connection_id}/retry",
    tag = "connections",
    params(("connection_id" = ConnectionId, Path, description = CONNECTION_ID)),
    responses(
        (status = 202, body = SyncAccepted, description = "Back to pending, a sync enqueued"),
        (status = 409, response = problem::ConflictOrPaused),
    )
)]
async fn retry_connection(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let mut connection = load_connection(&state, &caller.tenant, &id).await?;
    if connection.is_paused() {
        return Err(ApiError::Paused);
    }
    if connection.status != ConnectionStatus::Error {
        return Err(ApiError::Conflict);
    }
    let now = state.clock.now();
    let previous_error = connection.last_error.clone();
    connection.status = ConnectionStatus::Pending;
    state.connections.save_state(&connection).await?;
    let job_id = Job::requested_id(&connection.connection_id, JobReason::Manual);
    let job = Job::sync(
        caller.tenant.clone(),
        connection.connection_id.clone(),
        job_id.clone(),
        JobReason::Manual,
        now,
    );
    state.queue.enqueue(std::slice::from_ref(&job)).await?;
    let entry =
        AuditEntry::new(caller.tenant.clone(), Operation::Retry, AuditOutcome::Success, actor(&caller), now)
            .connection(&connection.connection_id)
            .detail(json!({ "job_id": job_id, "previous_error": previous_error }));
    state.audit.append(&[entry]).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(SyncAccepted { job_id })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ExternalId, RunCounts, TenantId};
    use crate::http::auth::gateway_context;
    use crate::http::common::BODY_LIMIT_BYTES;
    use crate::http::openapi;
    use crate::http::router;
    use crate::http::test_harness::{ApiHarness, Reply};
    use crate::ports::{ConnectionStore, RecordStore, RecordWrite, RunStore};
    use axum::body::Body;
    use axum::http::{Method, Request};
    use chrono::TimeZone;
    use lambda_http::RequestExt as _;

    const ACCESS: &str = "pat-na1-ACCESS-SECRET-0001";
    const REFRESH: &str = "REFRESH-SECRET-0002";

    /// The API's harness, with the seeding helpers of these tests.
    struct Harness(ApiHarness);

    impl std::ops::Deref for Harness {
        type Target = ApiHarness;
        fn deref(&self) -> &ApiHarness {
            &self.0
        }
    }

    impl std::ops::DerefMut for Harness {
        fn deref_mut(&mut self) -> &mut ApiHarness {
            &mut self.0
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 9, 0, 0).single().unwrap()
    }

    fn harness() -> Harness {
        Harness(ApiHarness::new(t0()))
    }

    impl Harness {
        async fn create(&self, tenant: &str) -> String {
            self.create_with(tenant, ACCESS, REFRESH).await
        }

        async fn seed_records(&self, tenant: &str, connection: &str, n: usize) -> Vec<RecordId> {
            self.seed(tenant, connection, ObjectType::Contacts, n).await
        }

        async fn seed(&self, tenant: &str, connection: &str, object: ObjectType, n: usize) -> Vec<RecordId> {
            let (t, c) = (TenantId::parse(tenant).unwrap(), ConnectionId::parse(connection).unwrap());
            let records: Vec<CanonicalRecord> = (0..n)
                .map(|i| {
                    let external_id = ExternalId::parse(format!("{}", 100 + i)).unwrap();
                    CanonicalRecord {
                        record_id: RecordId::derive(&t, &c, object, &external_id),
                        tenant_id: t.clone(),
                        connection_id: c.clone(),
                        object,
                        external_id,
                        fields: [("email".to_owned(), json!(format!("p{i}@example.com")))].into(),
                        base: Default::default(),
                        remote_modified_at: Some(t0()),
                        etag: None,
                        local_modified_at: None,
                        sources: Default::default(),
                        pending_push: Default::default(),
                        deleted: false,
                        created_at: t0(),
                        updated_at: t0(),
                        version: 0,
                    }
                })
                .collect();
            let ids = records.iter().map(|r| r.record_id.clone()).collect();
            let results = self
                .store
                .write(Provider::Hubspot, records.into_iter().map(RecordWrite::Create).collect())
                .await
                .unwrap();
            assert!(results.iter().all(Result::is_ok));
            ids
        }

        async fn seed_run(&self, tenant: &str, connection: &str) -> SyncRun {
            let (t, c) = (TenantId::parse(tenant).unwrap(), ConnectionId::parse(connection).unwrap());
            let conn = ConnectionStore::get(&*self.store, &t, &c).await.unwrap().unwrap();
            let run = SyncRun {
                tenant_id: t,
                connection_id: c.clone(),
                run_id: RunId::generate(),
                job_id: Job::requested_id(&c, JobReason::Manual),
                reason: JobReason::Manual,
                status: RunStatus::Failed,
                started_at: t0(),
                finished_at: t0() + Duration::milliseconds(1500),
                duration_ms: 1500,
                counts: RunCounts { pulled: 10, created: 7, failed: 3, ..Default::default() },
                error: Some("hubspot rate limited".into()),
                objects: Default::default(),
            };
            self.store.finish(&conn, &run).await.unwrap();
            run
        }
    }

    /// Compiles only if the router can be handed to `lambda_http::run` as is.
    #[allow(dead_code)]
    fn router_is_servable_by_lambda_http(state: ApiState) {
        drop(lambda_http::run(router(state)));
    }

    fn assert_problem(reply: &Reply, status: StatusCode, code: &str) {
        assert_eq!(reply.status, status, "{}", reply.text);
        assert_eq!(reply.content_type, "application/problem+json", "{}", reply.text);
        assert_eq!(reply.json["code"], code, "{}", reply.text);
        assert_eq!(reply.json["status"], status.as_u16());
    }

    #[tokio::test]
    async fn creating_a_connection_returns_201_with_a_view_defaults_and_an_audit_entry() {
        let h = harness();
        let body = json!({ "provider": "hubspot", "access_token": ACCESS, "refresh_token": REFRESH, "expires_in_seconds": 1800 });
        let reply = h.send(Method::POST, "/v1/connections", Some("acme"), Some(&body.to_string())).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        assert_eq!(reply.json["provider"], "hubspot");
        assert_eq!(reply.json["base_url"], "https://api.hubapi.com");
        assert_eq!(reply.json["interval_minutes"], 15);
        assert_eq!(reply.json["status"], "pending");
        assert_eq!(reply.json["next_sync_at"], json!(t0()));
        let id = reply.json["id"].as_str().unwrap();
        let stored = ConnectionStore::get(
            &*h.store,
            &TenantId::parse("acme").unwrap(),
            &ConnectionId::parse(id).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(stored.credentials.access_token.expose_secret(), ACCESS);
        assert_eq!(stored.credentials.expires_at, Some(t0() + Duration::seconds(1800)));
        let audit = h.store.audit_entries();
        assert_eq!(audit.len(), 1);
        assert_eq!(
            (audit[0].operation, audit[0].actor.as_str()),
            (Operation::ConnectionCreated, "user:acme-user")
        );
        assert!(!serde_json::to_string(&audit).unwrap().contains("SECRET"));
    }

    #[tokio::test]
    async fn a_configured_base_url_and_interval_are_kept() {
        let h = harness();
        let body = json!({ "provider": "google", "base_url": "http://127.0.0.1:9999/", "access_token": ACCESS, "interval_minutes": 60 });
        let reply = h.send(Method::POST, "/v1/connections", Some("acme"), Some(&body.to_string())).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        assert_eq!(reply.json["base_url"], "http://127.0.0.1:9999");
        assert_eq!(reply.json["interval_minutes"], 60);
    }

    #[tokio::test]
    async fn connection_views_never_contain_token_material() {
        let h = harness();
        let id = h.create("acme").await;
        for uri in ["/v1/connections".to_owned(), format!("/v1/connections/{id}")] {
            let reply = h.send(Method::GET, &uri, Some("acme"), None).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert!(!reply.text.contains("SECRET"), "{}", reply.text);
            assert!(!reply.text.contains("token"), "{}", reply.text);
        }
    }

    #[tokio::test]
    async fn listing_and_reading_connections_show_status_views() {
        let h = harness();
        let first = h.create("acme").await;
        let second = h.create("acme").await;
        h.create("globex").await;
        let list = h.send(Method::GET, "/v1/connections", Some("acme"), None).await;
        let ids: Vec<&str> =
            list.json["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains(&first.as_str()) && ids.contains(&second.as_str()));
        let one = h.send(Method::GET, &format!("/v1/connections/{first}"), Some("acme"), None).await;
        assert_eq!(one.status, StatusCode::OK);
        for field in [
            "id",
            "provider",
            "base_url",
            "status",
            "last_sync_at",
            "last_error",
            "next_sync_at",
            "interval_minutes",
            "record_counts",
            "last_run_id",
            "created_at",
        ] {
            assert!(one.json.get(field).is_some(), "missing {field}: {}", one.text);
        }
    }

    #[tokio::test]
    async fn runs_are_listed_with_counts_duration_status_and_error() {
        let h = harness();
        let id = h.create("acme").await;
        let run = h.seed_run("acme", &id).await;
        let reply =
            h.send(Method::GET, &format!("/v1/connections/{id}/runs?limit=5"), Some("acme"), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let item = &reply.json["items"][0];
        assert_eq!(item["run_id"], run.run_id.as_str());
        assert_eq!(item["status"], "failed");
        assert_eq!(item["duration_ms"], 1500);
        assert_eq!(item["counts"]["created"], 7);
        assert_eq!((item["processed"].as_u64(), item["succeeded"].as_u64()), (Some(10), Some(7)));
        assert_eq!(item["error"], "hubspot rate limited");
    }

    #[tokio::test]
    async fn records_are_paged_with_tokens_and_read_one_by_one() {
        let h = harness();
        let id = h.create("acme").await;
        let seeded = h.seed_records("acme", &id, 5).await;
        let mut seen = Vec::new();
        let mut uri = format!("/v1/connections/{id}/records?object=contacts&limit=2");
        loop {
            let reply = h.send(Method::GET, &uri, Some("acme"), None).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            let items = reply.json["items"].as_array().unwrap();
            assert!(items.len() <= 2);
            seen.extend(items.iter().map(|r| r["record_id"].as_str().unwrap().to_owned()));
            match reply.json["next_page_token"].as_str() {
                Some(token) => uri = format!("/v1/connections/{id}/records?limit=2&page_token={token}"),
                None => break,
            }
        }
        let mut expected: Vec<String> = seeded.iter().map(|r| r.as_str().to_owned()).collect();
        expected.sort();
        seen.sort();
        assert_eq!(seen, expected);
        let events = h
            .send(Method::GET, &format!("/v1/connections/{id}/records?object=events"), Some("acme"), None)
            .await;
        assert_eq!(events.json["items"], json!([]));
        let one = h
            .send(Method::GET, &format!("/v1/connections/{id}/records/{}", seeded[0]), Some("acme"), None)
            .await;
        assert_eq!(one.status, StatusCode::OK, "{}", one.text);
        assert_eq!(one.json["record_id"], seeded[0].as_str());
        assert!(one.json["fields"]["email"].as_str().unwrap().ends_with("@example.com"));
        let missing =
            h.send(Method::GET, &format!("/v1/connections/{id}/records/r_nope"), Some("acme"), None).await;
        assert_problem(&missing, StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test]
    async fn bad_record_queries_are_422_problems() {
        let h = harness();
        let id = h.create("acme").await;
        for query in ["object=widgets", "limit=0", "limit=abc", "page_token=forged"] {
            let reply = h
                .send(Method::GET, &format!("/v1/connections/{id}/records?{query}"), Some("acme"), None)
                .await;
            assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        }
    }

    #[tokio::test]
    async fn sync_now_enqueues_a_manual_job_that_checks_deletes_and_audits_the_request() {
        let h = harness();
        let id = h.create("acme").await;
        let reply = h.send(Method::POST, &format!("/v1/connections/{id}/sync"), Some("acme"), None).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
        let jobs = h.queue.jobs();
        assert_eq!(jobs.len(), 1);
        assert_eq!(reply.json["job_id"], jobs[0].job_id.as_str());
        assert_eq!(
            (jobs[0].reason, jobs[0].tenant_id.as_str(), jobs[0].connection_id.as_str()),
            (JobReason::Manual, "acme", id.as_str())
        );
        assert!(jobs[0].check_deletes, "a person asked for the current state, deletes included");
        assert_eq!(jobs[0].enqueued_at, t0());
        let audit = h.store.audit_entries();
        let last = audit.last().unwrap();
        assert_eq!(
            (last.operation, last.outcome, last.actor.as_str()),
            (Operation::SyncRequested, AuditOutcome::Success, "user:acme-user")
        );
        assert_eq!(last.connection_id.as_ref().map(ConnectionId::as_str), Some(id.as_str()));
    }

    #[tokio::test]
    async fn a_queue_outage_is_a_503_problem_and_an_audited_failure() {
        let h = harness();
        let id = h.create("acme").await;
        h.queue.set_failing(true);
        let reply = h.send(Method::POST, &format!("/v1/connections/{id}/sync"), Some("acme"), None).await;
        assert_problem(&reply, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        assert_eq!(h.store.audit_entries().last().map(|e| e.outcome), Some(AuditOutcome::Failure));
    }

    #[tokio::test]
    async fn a_store_outage_is_a_503_problem_without_internal_detail() {
        let h = harness();
        h.store.set_unavailable(true);
        let reply = h.send(Method::GET, "/v1/connections", Some("acme"), None).await;
        assert_problem(&reply, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        assert!(!reply.text.contains("memory store"), "{}", reply.text);
    }

    #[tokio::test]
    async fn health_answers_ok_to_an_identified_caller() {
        let h = harness();
        let reply = h.send(Method::GET, "/v1/health", Some("acme"), None).await;
        assert_eq!((reply.status, reply.json["status"].as_str()), (StatusCode::OK, Some("ok")));
    }

    #[tokio::test]
    async fn every_route_without_identity_is_a_401_problem() {
        let h = harness();
        let id = h.create("acme").await;
        let routes = [
            (Method::GET, "/v1/health".to_owned(), None),
            (
                Method::POST,
                "/v1/connections".to_owned(),
                Some(r#"{"provider":"hubspot","access_token":"x"}"#),
            ),
            (Method::GET, "/v1/connections".to_owned(), None),
            (Method::GET, format!("/v1/connections/{id}"), None),
            (Method::GET, format!("/v1/connections/{id}/runs"), None),
            (Method::GET, format!("/v1/connections/{id}/records"), None),
            (Method::GET, format!("/v1/connections/{id}/records/r_1"), None),
            (Method::POST, format!("/v1/connections/{id}/sync"), None),
        ];
        for (method, uri, body) in routes {
            let reply = h.send(method.clone(), &uri, None, body).await;
            assert_problem(&reply, StatusCode::UNAUTHORIZED, "unauthorized");
        }
        assert!(h.queue.jobs().is_empty());
        assert_eq!(h.store.audit_entries().len(), 1);
    }

    #[tokio::test]
    async fn a_context_without_a_tenant_claim_is_401() {
        let h = harness();
        let mut claims = crate::http::auth::Claims::new();
        claims.insert("sub".into(), "alice".into());
        let request = Request::get("/v1/connections")
            .body(Body::empty())
            .unwrap()
            .with_request_context(gateway_context(&claims));
        assert_problem(&h.send_request(request).await, StatusCode::UNAUTHORIZED, "unauthorized");
    }

    #[tokio::test]
    async fn another_tenant_gets_404_for_a_connection_its_runs_records_and_sync() {
        let h = harness();
        let id = h.create("acme").await;
        h.seed_run("acme", &id).await;
        let records = h.seed_records("acme", &id, 2).await;
        let routes = [
            (Method::GET, format!("/v1/connections/{id}")),
            (Method::GET, format!("/v1/connections/{id}/runs")),
            (Method::GET, format!("/v1/connections/{id}/records")),
            (Method::GET, format!("/v1/connections/{id}/records/{}", records[0])),
            (Method::POST, format!("/v1/connections/{id}/sync")),
        ];
        for (method, uri) in routes {
            let reply = h.send(method, &uri, Some("globex"), None).await;
            assert_problem(&reply, StatusCode::NOT_FOUND, "not_found");
            assert!(!reply.text.contains(records[0].as_str()) && !reply.text.contains("hubspot"));
        }
        let list = h.send(Method::GET, "/v1/connections", Some("globex"), None).await;
        assert_eq!(list.json["items"], json!([]));
        assert!(h.queue.jobs().is_empty());
    }

    #[tokio::test]
    async fn bad_create_bodies_are_4xx_problems_with_codes() {
        let h = harness();
        let cases: [(&str, StatusCode, &str); 13] = [
            (r#"{"provider":"hubspot","access_token":"#, StatusCode::BAD_REQUEST, "malformed_json"),
            ("not json at all", StatusCode::BAD_REQUEST, "malformed_json"),
            (
                r#"{"provider":"hubspot","access_token":42}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
            ),
            (
                r#"{"provider":"zoho","access_token":"x"}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
            ),
            (
                r#"{"provider":"hubspot","access_token":"x","interval_minutes":4}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
            ),
            (
                r#"{"provider":"hubspot","access_token":"x","interval_minutes":1441}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
            ),
            (
                r#"{"provider":"hubspot","access_token":""}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
            ),
            (
                r#"{"provider":"hubspot","access_token":"x","base_url":"ftp://x"}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
            ),
            (
                r#"{"provider":"hubspot","access_token":"x","tenant_id":"globex"}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
            ),
            (
                r#"{"provider":"google","access_token":"x","settings":{"calendar_window_days":2147483648}}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
            ),
            // A Notion connection names its deals database by a Notion id; no other provider takes one.
            (
                r#"{"provider":"notion","access_token":"x"}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
            ),
            (
                r#"{"provider":"notion","access_token":"x","settings":{"notion":{"deals_database_id":"nope"}}}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
            ),
            (
                r#"{"provider":"hubspot","access_token":"x","settings":{"notion":{"deals_database_id":"1f2e3d4c5b6a47988796a5b4c3d2e1f0"}}}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
            ),
        ];
        for (body, status, code) in cases {
            let reply = h.send(Method::POST, "/v1/connections", Some("acme"), Some(body)).await;
            assert_problem(&reply, status, code);
        }
        let zoho = h
            .send(
                Method::POST,
                "/v1/connections",
                Some("acme"),
                Some(r#"{"provider":"zoho","access_token":"x"}"#),
            )
            .await;
        assert!(zoho.json["detail"].as_str().unwrap().contains("zoho"), "{}", zoho.text);
        assert!(h.store.audit_entries().is_empty());
    }

    #[tokio::test]
    async fn a_notion_connection_names_its_databases_and_keeps_them_through_a_settings_patch() {
        let h = harness();
        let body = r#"{"provider":"notion","base_url":"http://127.0.0.1:9","access_token":"ntn_x",
            "settings":{"notion":{"deals_database_id":"1f2e3d4c5b6a47988796a5b4c3d2e1f0"}}}"#;
        let created = h.send(Method::POST, "/v1/connections", Some("acme"), Some(body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        assert_eq!(created.json["provider"], "notion");
        assert_eq!(
            created.json["settings"]["notion"]["deals_database_id"],
            "1f2e3d4c5b6a47988796a5b4c3d2e1f0"
        );
        let id = created.json["id"].as_str().unwrap();
        let patched = h
            .send(
                Method::PATCH,
                &format!("/v1/connections/{id}/settings"),
                Some("acme"),
                Some(r#"{"note_prefix":"[SB]"}"#),
            )
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
        let again = h.send(Method::GET, &format!("/v1/connections/{id}"), Some("acme"), None).await;
        assert_eq!(again.json["settings"]["notion"]["deals_database_id"], "1f2e3d4c5b6a47988796a5b4c3d2e1f0");
        assert_eq!(again.json["settings"]["note_prefix"], "[SB]");
    }

    #[tokio::test]
    async fn wrong_typed_token_fields_are_not_echoed_back() {
        let h = harness();
        let body = r#"{"provider":"hubspot","access_token":"x","interval_minutes":"SECRET-LOOKING"}"#;
        let reply = h.send(Method::POST, "/v1/connections", Some("acme"), Some(body)).await;
        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        assert!(!reply.text.contains("SECRET"), "{}", reply.text);
    }

    #[tokio::test]
    async fn a_body_without_json_content_type_is_415() {
        let h = harness();
        let token = h.key.sign(&TenantId::parse("acme").unwrap(), "u", std::time::Duration::from_secs(60));
        let request = Request::post("/v1/connections")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(r#"{"provider":"hubspot","access_token":"x"}"#))
            .unwrap()
            .with_request_context(gateway_context(&h.key.verify(&token).unwrap()));
        assert_problem(
            &h.send_request(request).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        );
    }

    #[tokio::test]
    async fn a_body_over_64_kib_is_a_413_problem() {
        let h = harness();
        let padding = "a".repeat(BODY_LIMIT_BYTES);
        let body = json!({ "provider": "hubspot", "access_token": padding }).to_string();
        let reply = h.send(Method::POST, "/v1/connections", Some("acme"), Some(&body)).await;
        assert_problem(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
        assert!(h.store.audit_entries().is_empty());
    }

    #[tokio::test]
    async fn unknown_routes_are_404_problems_and_wrong_methods_405() {
        let h = harness();
        let unknown = h.send(Method::GET, "/v1/nope", Some("acme"), None).await;
        assert_problem(&unknown, StatusCode::NOT_FOUND, "not_found");
        let unknown_anonymous = h.send(Method::GET, "/elsewhere", None, None).await;
        assert_problem(&unknown_anonymous, StatusCode::NOT_FOUND, "not_found");
        let wrong_method = h.send(Method::DELETE, "/v1/connections", Some("acme"), None).await;
        assert_problem(&wrong_method, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }

    #[tokio::test]
    async fn the_openapi_document_is_served_without_an_identity_and_describes_this_router() {
        let h = harness();
        let reply = h.send(Method::GET, openapi::OPENAPI_PATH, None, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.content_type, "application/json");
        assert_eq!(reply.text, openapi::document_json());
        assert_eq!(reply.json["openapi"], "3.1.0");
        let posted = h.send(Method::POST, openapi::OPENAPI_PATH, None, Some("{}")).await;
        assert_problem(&posted, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }

    #[tokio::test]
    async fn an_invalid_connection_id_in_the_path_is_404() {
        let h = harness();
        let reply = h.send(Method::GET, "/v1/connections/bad%23id", Some("acme"), None).await;
        assert_problem(&reply, StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test]
    async fn a_local_edit_becomes_a_pending_push_that_bulk_approval_sends_to_the_worker() {
        let h = harness();
        let id = h.create("acme").await;
        let records = h.seed_records("acme", &id, 1).await;
        let edit = json!({ "fields": { "phone": "+47 1234" }, "idempotency_key": "edit-1" }).to_string();
        let uri = format!("/v1/connections/{id}/records/{}/edit", records[0]);
        let created = h.send(Method::POST, &uri, Some("acme"), Some(&edit)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        assert_eq!(created.json["status"], "pending");
        assert_eq!(created.json["action"], "update_record");
        let again = h.send(Method::POST, &uri, Some("acme"), Some(&edit)).await;
        assert_eq!(again.status, StatusCode::OK, "the same idempotency key is the same item");
        assert_eq!(again.json["push_id"], created.json["push_id"]);
        let record = h
            .send(Method::GET, &format!("/v1/connections/{id}/records/{}", records[0]), Some("acme"), None)
            .await;
        assert_eq!(record.json["fields"]["phone"], "+47 1234");
        // The agreed values stay apart: what the provider holds is what the edit would replace.
        assert_eq!(record.json["base"], json!({}), "the seeded record was never agreed on");
        assert_eq!(record.json["pending_push"]["phone"]["status"], "pending", "{}", record.text);

        let push_id = created.json["push_id"].as_str().unwrap().to_owned();
        let pending = h.send(Method::GET, "/v1/push?status=pending", Some("acme"), None).await;
        assert_eq!(pending.json["items"].as_array().map(Vec::len), Some(1));
        // Another tenant sees nothing and can approve nothing.
        let theirs = h.send(Method::GET, &format!("/v1/push/{push_id}"), Some("globex"), None).await;
        assert_problem(&theirs, StatusCode::NOT_FOUND, "not_found");
        let body = json!({ "ids": [push_id] }).to_string();
        let stolen = h.send(Method::POST, "/v1/push/approve", Some("globex"), Some(&body)).await;
        assert_eq!(stolen.json["items"][0]["ok"], false);
        assert_eq!(stolen.json["items"][0]["error"], "not_found");
        assert!(h.queue.jobs().is_empty());

        let approved = h.send(Method::POST, "/v1/push/approve", Some("acme"), Some(&body)).await;
        assert_eq!(approved.json["items"][0]["ok"], true, "{}", approved.text);
        assert_eq!(approved.json["items"][0]["item"]["status"], "approved");
        let jobs = h.queue.jobs();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].reason, JobReason::Push);
        let twice = h.send(Method::POST, "/v1/push/reject", Some("acme"), Some(&body)).await;
        assert_eq!(twice.json["items"][0]["error"], "conflict");
    }

    #[tokio::test]
    async fn a_pending_push_expires_after_seven_days_and_can_no_longer_be_approved() {
        let h = harness();
        let clock = h.clock.clone();
        let id = h.create("acme").await;
        let records = h.seed_records("acme", &id, 1).await;
        let body = json!({ "action": "update_field", "record_id": records[0], "fields": { "lead_score": 87 }, "idempotency_key": "score-1" });
        let created = h
            .send(Method::POST, &format!("/v1/connections/{id}/push"), Some("acme"), Some(&body.to_string()))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        clock.advance(Duration::days(7));
        let expired = h.send(Method::GET, "/v1/push?status=expired", Some("acme"), None).await;
        assert_eq!(expired.json["items"].as_array().map(Vec::len), Some(1), "{}", expired.text);
        let pending = h.send(Method::GET, "/v1/push?status=pending", Some("acme"), None).await;
        assert_eq!(pending.json["items"], json!([]));
        let ids = json!({ "ids": [created.json["push_id"]] }).to_string();
        let approve = h.send(Method::POST, "/v1/push/approve", Some("acme"), Some(&ids)).await;
        assert_eq!(approve.json["items"][0]["error"], "conflict");
        assert!(h.queue.jobs().is_empty());

        // The record says which field waits for which item, and that it expired.
        let record_uri = format!("/v1/connections/{id}/records/{}", records[0]);
        let record = h.send(Method::GET, &record_uri, Some("acme"), None).await;
        assert_eq!(record.json["fields"]["lead_score"], 87);
        assert_eq!(
            record.json["pending_push"],
            json!({ "lead_score": { "push_id": created.json["push_id"], "status": "expired" } })
        );
        let listed = h.send(Method::GET, &format!("/v1/connections/{id}/records"), Some("acme"), None).await;
        assert_eq!(listed.json["items"][0]["pending_push"], record.json["pending_push"]);
        // Rejecting discards it: the field goes back to what the provider has (nothing).
        let reject = h.send(Method::POST, "/v1/push/reject", Some("acme"), Some(&ids)).await;
        assert_eq!(reject.json["items"][0]["item"]["status"], "rejected", "{}", reject.text);
        let record = h.send(Method::GET, &record_uri, Some("acme"), None).await;
        assert_eq!(record.json["pending_push"], json!({}));
        assert!(record.json["fields"].get("lead_score").is_none(), "{}", record.text);
    }

    #[tokio::test]
    async fn the_push_queue_lists_highest_priority_first_across_pages_and_medium_means_normal() {
        let h = harness();
        let id = h.create("acme").await;
        let records = h.seed_records("acme", &id, 1).await;
        let uri = format!("/v1/connections/{id}/push");
        for (key, priority) in
            [("k1", "low"), ("k2", "medium"), ("k3", "critical"), ("k4", "high"), ("k5", "normal")]
        {
            let body = json!({ "action": "create_note", "priority": priority, "record_id": records[0], "fields": { "body": key }, "idempotency_key": key });
            let reply = h.send(Method::POST, &uri, Some("acme"), Some(&body.to_string())).await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            let shown = if priority == "medium" { "normal" } else { priority };
            assert_eq!(reply.json["priority"], shown);
        }
        let mut seen = Vec::new();
        let mut next = Some("/v1/push?status=pending&limit=2".to_owned());
        while let Some(page_uri) = next.take() {
            let page = h.send(Method::GET, &page_uri, Some("acme"), None).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.text);
            seen.extend(page.json["items"].as_array().unwrap().iter().map(|i| i["priority"].clone()));
            next = page.json["next_page_token"]
                .as_str()
                .map(|t| format!("/v1/push?status=pending&limit=2&page_token={t}"));
        }
        assert_eq!(
            seen,
            vec![json!("critical"), json!("high"), json!("normal"), json!("normal"), json!("low")]
        );
    }

    #[tokio::test]
    async fn an_edit_of_a_research_task_is_applied_locally_with_204_and_queues_nothing() {
        let h = harness();
        let id = h.create("acme").await;
        let task_id = h.seed("acme", &id, ObjectType::ResearchTasks, 1).await.remove(0);
        let edit = json!({ "fields": { "status": "done" }, "idempotency_key": "done-1" }).to_string();
        let edit_uri = format!("/v1/connections/{id}/records/{task_id}/edit");
        let reply = h.send(Method::POST, &edit_uri, Some("acme"), Some(&edit)).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
        let record =
            h.send(Method::GET, &format!("/v1/connections/{id}/records/{task_id}"), Some("acme"), None).await;
        assert_eq!(record.json["fields"]["status"], "done");
        assert_eq!(record.json["pending_push"], json!({}));
        let queued = h.send(Method::GET, "/v1/push", Some("acme"), None).await;
        assert_eq!(queued.json["items"], json!([]));
        let pushed = json!({ "action": "update_record", "record_id": task_id, "fields": { "status": "open" }, "idempotency_key": "p-1" }).to_string();
        let push_uri = format!("/v1/connections/{id}/push");
        let refused = h.send(Method::POST, &push_uri, Some("acme"), Some(&pushed)).await;
        assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        assert!(h.store.audit_entries().iter().any(|e| e.operation == Operation::LocalEdit));
    }

    #[tokio::test]
    async fn bad_push_requests_are_4xx_problems() {
        let h = harness();
        let id = h.create("acme").await;
        let cases = [
            (json!({ "action": "launch_rocket", "idempotency_key": "k" }), StatusCode::UNPROCESSABLE_ENTITY),
            (json!({ "action": "create_note", "idempotency_key": "k" }), StatusCode::UNPROCESSABLE_ENTITY),
            (
                json!({ "action": "create_note", "record_id": "r_nope", "fields": { "body": "x" }, "idempotency_key": "k" }),
                StatusCode::NOT_FOUND,
            ),
            (
                json!({ "action": "update_field", "idempotency_key": "bad#key" }),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                json!({ "action": "create_event", "fields": { "title": "x" }, "idempotency_key": "k" }),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        ];
        for (body, status) in cases {
            let reply = h
                .send(
                    Method::POST,
                    &format!("/v1/connections/{id}/push"),
                    Some("acme"),
                    Some(&body.to_string()),
                )
                .await;
            assert_eq!(reply.status, status, "{body}: {}", reply.text);
            assert_eq!(reply.content_type, "application/problem+json");
        }
        let too_many = json!({ "ids": (0..101).map(|i| format!("p{i}")).collect::<Vec<_>>() }).to_string();
        let reply = h.send(Method::POST, "/v1/push/approve", Some("acme"), Some(&too_many)).await;
        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        let reply = h.send(Method::GET, "/v1/conflicts?status=maybe", Some("acme"), None).await;
        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        let reply = h
            .send(Method::POST, "/v1/conflicts/resolve", Some("acme"), Some(r#"{"resolution":"use_local"}"#))
            .await;
        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        for uri in ["/v1/push", "/v1/conflicts", "/v1/push/p_1", "/v1/conflicts/k_1"] {
            assert_problem(
                &h.send(Method::GET, uri, None, None).await,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            );
        }
    }

    #[tokio::test]
    async fn the_retry_action_moves_an_errored_connection_to_pending_and_enqueues_a_sync() {
        let h = harness();
        let id = h.create("acme").await;
        let uri = format!("/v1/connections/{id}/retry");
        let not_failed = h.send(Method::POST, &uri, Some("acme"), None).await;
        assert_problem(&not_failed, StatusCode::CONFLICT, "conflict");
        let (t, c) = (TenantId::parse("acme").unwrap(), ConnectionId::parse(&id).unwrap());
        let mut conn = ConnectionStore::get(&*h.store, &t, &c).await.unwrap().unwrap();
        conn.status = ConnectionStatus::Error;
        conn.last_error = Some("provider request failed permanently".into());
        h.store.save_state(&conn).await.unwrap();

        let other = h.send(Method::POST, &uri, Some("globex"), None).await;
        assert_problem(&other, StatusCode::NOT_FOUND, "not_found");
        let reply = h.send(Method::POST, &uri, Some("acme"), None).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
        let view = h.send(Method::GET, &format!("/v1/connections/{id}"), Some("acme"), None).await;
        assert_eq!(view.json["status"], "pending");
        assert_eq!(h.queue.jobs().len(), 1);
        let audited = h.store.audit_entries().iter().any(|e| e.operation == Operation::Retry);
        assert!(audited);
    }
}
