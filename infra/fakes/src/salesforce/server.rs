//! The fake's axum router: REST API v31.0 to v68.0 (`/services/data/vXX.X/...`), the Tooling API's
//! `CustomField` create, Bulk API 2.0 query jobs, `/services/oauth2/...` and `/_admin/`.
//!
//! An outer layer serves every version at once: it trims a trailing slash (Salesforce answers
//! `/query/` as `/query`), checks the version segment (unknown versions fall through to the 404
//! fallback with Salesforce's error list), rewrites the path onto one internal prefix and hands the
//! version to the handlers (URLs in answers carry the version the client asked for). It also sets
//! the `Date` header from the org's clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::soql::{self, parse_datetime};
use super::store::{
    API_VERSION, CustomField, LATEST_API_VERSION, OLDEST_API_VERSION, Record, RecordError, SObjectDef, Store,
    field_label, floor_minute, sf_datetime, sobject, standard_type,
};
use super::{
    BulkJob, COLLECTION_MAX, DEFAULT_BATCH_SIZE, FaultKind, Locator, MAX_LOCATORS, MIN_BATCH_SIZE, Route,
    SalesforceState,
};

const THIRTY_DAYS_MS: i64 = 30 * 86_400_000;
/// Where every `/services/data/vXX.X` path is served from after the version check.
const API_ROOT: &str = "/services/data/_api";

/// The API version of the request (`v60.0`).
#[derive(Debug, Clone)]
pub(crate) struct ApiVersion(pub String);

#[derive(Clone)]
struct AppState {
    org: Arc<SalesforceState>,
    base_url: String,
}

impl axum::extract::FromRef<AppState> for Arc<SalesforceState> {
    fn from_ref(app: &AppState) -> Self {
        app.org.clone()
    }
}

/// `v60.0` -> 60 when the org serves that version.
fn served_version(segment: &str) -> Option<u32> {
    let (major, minor) = segment.strip_prefix('v')?.split_once('.')?;
    let major: u32 = major.parse().ok()?;
    (minor == "0" && (OLDEST_API_VERSION..=LATEST_API_VERSION).contains(&major)).then_some(major)
}

/// Trims one trailing slash, moves `/services/data/vXX.X/...` onto [`API_ROOT`] when the version
/// is served, and records the version.
fn rewrite(mut req: Request) -> Request {
    let path = req.uri().path();
    let trimmed = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    let mut path = if trimmed.is_empty() { "/".to_owned() } else { trimmed.to_owned() };
    let mut version = API_VERSION.to_owned();
    if let Some(rest) = path.strip_prefix("/services/data/") {
        let (segment, tail) = rest.split_once('/').map_or((rest, ""), |(a, _)| (a, &rest[a.len()..]));
        if let Some(major) = served_version(segment) {
            version = format!("v{major}.0");
            path = format!("{API_ROOT}{tail}");
        }
    }
    let pq = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    if let Ok(pq) = pq.parse::<axum::http::uri::PathAndQuery>() {
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req.extensions_mut().insert(ApiVersion(version));
    req
}

/// The `Date` header value for epoch milliseconds.
fn http_date(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// The router behind the version/trailing-slash rewrite and the `Date` header.
pub(crate) fn app(org: Arc<SalesforceState>, base_url: String) -> Router {
    let clock = org.clone();
    let inner = router(org, base_url);
    let svc = tower::ServiceBuilder::new()
        .map_request(rewrite)
        .map_response(move |mut resp: Response| {
            if let Ok(v) = HeaderValue::from_str(&http_date(clock.now_ms())) {
                resp.headers_mut().insert(header::DATE, v);
            }
            resp
        })
        .service(inner);
    Router::new().fallback_service(svc)
}

pub(crate) fn router(org: Arc<SalesforceState>, base_url: String) -> Router {
    let api = |p: &str| format!("{API_ROOT}{p}");
    Router::new()
        .route("/services/data", get(versions))
        .route(API_ROOT, get(resources))
        .route(&api("/query"), get(query))
        .route(&api("/query/{locator}"), get(query_more))
        .route(&api("/queryAll"), get(query_all))
        .route(&api("/queryAll/{locator}"), get(query_more))
        .route(&api("/sobjects"), get(describe_global))
        .route(&api("/sobjects/{sobject}"), get(sobject_info).post(sobject_create))
        .route(&api("/sobjects/{sobject}/describe"), get(describe))
        .route(&api("/sobjects/{sobject}/deleted"), get(deleted))
        .route(&api("/sobjects/{sobject}/updated"), get(updated))
        .route(&api("/sobjects/{sobject}/{id}"), get(row_get).patch(row_update).delete(row_delete))
        .route(&api("/sobjects/{sobject}/{field}/{value}"), get(by_external_id).patch(upsert))
        .route(
            &api("/composite/sobjects"),
            post(collection_create).patch(collection_update).delete(collection_delete),
        )
        .route(&api("/composite/sobjects/{sobject}/{field}"), axum::routing::patch(collection_upsert))
        .route(&api("/tooling/sobjects/{kind}"), post(tooling_create))
        .route(&api("/jobs/query"), post(bulk_create))
        .route(&api("/jobs/query/{id}"), get(bulk_status))
        .route(&api("/jobs/query/{id}/results"), get(bulk_results))
        .route("/services/oauth2/token", post(token))
        .route("/services/oauth2/authorize", get(authorize))
        .route("/services/oauth2/revoke", post(revoke))
        .route("/services/oauth2/userinfo", get(userinfo))
        .route("/_admin/sobjects/{sobject}", post(admin_create))
        .route("/_admin/records/{id}", get(admin_get).patch(admin_edit).delete(admin_delete))
        .route("/_admin/touch", post(admin_touch))
        .route("/_admin/tokens", post(admin_issue_token))
        .route("/_admin/tokens/expire", post(admin_expire_token))
        .route("/_admin/limits", post(admin_limits))
        .route("/_admin/locators/expire", post(admin_expire_locators))
        .route("/_admin/clock", get(admin_clock).post(admin_set_clock))
        .route("/_admin/permissions", post(admin_permissions))
        .route("/_admin/fields", post(admin_create_field))
        .route("/_admin/deleted/purge", post(admin_purge_deleted))
        .merge(crate::admin::router::<AppState, Arc<SalesforceState>>())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(AppState { org, base_url })
}

/// Salesforce answers an unknown resource (or API version) with 404 and its error list.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm>
async fn not_found() -> Response {
    sf_error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist")
}

/// 405 with Salesforce's error list.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm>
async fn method_not_allowed(method: Method) -> Response {
    sf_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("HTTP Method '{method}' not allowed."),
    )
}

/// `"Winter '27"` for 68.0: three releases a year, Spring '24 being 60.0.
fn release_label(major: u32) -> String {
    let offset = i64::from(major) - 60;
    let season = ["Spring", "Summer", "Winter"][offset.rem_euclid(3) as usize];
    let year = 24 + offset.div_euclid(3) + i64::from(offset.rem_euclid(3) == 2);
    format!("{season} '{year:02}")
}

/// `GET /services/data/`: every served version, oldest first; no session needed.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_versions.htm>
async fn versions() -> Response {
    let list: Vec<Value> = (OLDEST_API_VERSION..=LATEST_API_VERSION)
        .map(|v| json!({ "label": release_label(v), "url": format!("/services/data/v{v}.0"), "version": format!("{v}.0") }))
        .collect();
    Json(list).into_response()
}

/// `GET /services/data/vXX.X/`: the resources of a version.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_discoveryresource.htm>
async fn resources(
    State(app): State<AppState>,
    headers: HeaderMap,
    Extension(ApiVersion(v)): Extension<ApiVersion>,
) -> Response {
    let usage = match gate(&app, Route::Describe, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let body: Map<String, Value> =
        ["sobjects", "query", "queryAll", "tooling", "composite", "jobs", "limits"]
            .iter()
            .map(|r| ((*r).to_owned(), json!(format!("/services/data/{v}/{r}"))))
            .collect();
    reply(StatusCode::OK, Value::Object(body), usage)
}

/// Salesforce's REST error body: an array of `{message, errorCode}`.
fn sf_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!([{ "message": message.into(), "errorCode": code }]))).into_response()
}

/// The `Sforce-Limit-Info` value for this response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Usage(u64, u64);

fn with_usage(mut resp: Response, usage: Option<Usage>) -> Response {
    if let Some(Usage(used, max)) = usage
        && let Ok(v) = HeaderValue::from_str(&format!("api-usage={used}/{max}"))
    {
        resp.headers_mut().insert("sforce-limit-info", v);
    }
    resp
}

fn reply(status: StatusCode, body: Value, usage: Usage) -> Response {
    with_usage((status, Json(body)).into_response(), Some(usage))
}

fn error(status: StatusCode, code: &str, message: impl Into<String>, usage: Usage) -> Response {
    with_usage(sf_error(status, code, message), Some(usage))
}

fn invalid_session() -> Response {
    sf_error(StatusCode::UNAUTHORIZED, "INVALID_SESSION_ID", "Session expired or invalid")
}

fn limit_exceeded(usage: Option<Usage>) -> Response {
    with_usage(
        sf_error(StatusCode::FORBIDDEN, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
        usage,
    )
}

/// Answers an injected fault, or `None` to go on (after a delay fault's wait).
async fn apply_fault(org: &SalesforceState, route: Route) -> Option<Response> {
    match org.count_and_take_fault(route)? {
        FaultKind::Delay { ms } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            None
        }
        FaultKind::RequestLimit => {
            let (used, max) = org.api_usage();
            Some(limit_exceeded(Some(Usage(used, max))))
        }
        FaultKind::ServerError { status } => {
            let status = status
                .and_then(|s| StatusCode::from_u16(s).ok())
                .filter(StatusCode::is_server_error)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let (code, message) = if status == StatusCode::SERVICE_UNAVAILABLE {
                ("SERVER_UNAVAILABLE", "Server temporarily unavailable")
            } else {
                (
                    "UNKNOWN_EXCEPTION",
                    "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567-8910 (-1234567)",
                )
            };
            Some(sf_error(status, code, message))
        }
        FaultKind::ExpiredSession => Some(invalid_session()),
        FaultKind::MalformedJson => Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"totalSize\":3,\"done\":false,\"records\":[{",
            )
                .into_response(),
        ),
    }
}

/// Counts the request, applies faults, checks the session and counts it against the daily
/// allocation.
async fn gate(app: &AppState, route: Route, headers: &HeaderMap) -> Result<Usage, Response> {
    if let Some(resp) = apply_fault(&app.org, route).await {
        return Err(resp);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("OAuth ")))
        .map(str::trim);
    let mut inner = app.org.lock();
    let valid = bearer.and_then(|t| inner.tokens.get(t).copied()).unwrap_or(false);
    if !valid {
        return Err(invalid_session());
    }
    if inner.api_usage >= inner.daily_api_requests {
        app.org.control.counters.rate_limited();
        let usage = Usage(inner.api_usage, inner.daily_api_requests);
        return Err(limit_exceeded(Some(usage)));
    }
    inner.api_usage += 1;
    Ok(Usage(inner.api_usage, inner.daily_api_requests))
}

/// Salesforce's SOQL errors: `INVALID_FIELD` (with its caret block pointing at the column),
/// `INVALID_TYPE`, else `MALFORMED_QUERY`, all 400.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm>
fn soql_error(e: &soql::SoqlError, q: &str, usage: Usage) -> Response {
    if e.0.starts_with("No such column") {
        let column = e.0.split('\'').nth(1).unwrap_or("");
        let at =
            (!q.contains('\n')).then(|| q.to_ascii_lowercase().find(&column.to_ascii_lowercase())).flatten();
        let message = match at {
            Some(i) => format!("\n{q}\n{}^\nERROR at Row:1:Column:{}\n{}", " ".repeat(i), i + 1, e.0),
            None => e.0.clone(),
        };
        return error(StatusCode::BAD_REQUEST, "INVALID_FIELD", message, usage);
    }
    let code = if e.0.contains("is not supported") { "INVALID_TYPE" } else { "MALFORMED_QUERY" };
    error(StatusCode::BAD_REQUEST, code, e.0.clone(), usage)
}

fn batch_size(headers: &HeaderMap) -> usize {
    headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',').find_map(|kv| {
                let (k, val) = kv.split_once('=')?;
                (k.trim().eq_ignore_ascii_case("batchSize")).then(|| val.trim().parse::<usize>().ok())?
            })
        })
        .map(|n| n.clamp(MIN_BATCH_SIZE, DEFAULT_BATCH_SIZE))
        .unwrap_or(DEFAULT_BATCH_SIZE)
}

fn locator_url(version: &str, id: &str, offset: usize) -> String {
    format!("/services/data/{version}/query/{id}-{offset}")
}

fn query_page(rows: &[Value], offset: usize, batch: usize, locator: &str, version: &str) -> Value {
    let end = (offset + batch).min(rows.len());
    let mut body = json!({
        "totalSize": rows.len(),
        "done": end >= rows.len(),
        "records": rows.get(offset..end).unwrap_or(&[]),
    });
    if end < rows.len() {
        body["nextRecordsUrl"] = Value::String(locator_url(version, locator, end));
    }
    body
}

/// `GET /query?q=`.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_query.htm>
async fn query(
    State(app): State<AppState>,
    headers: HeaderMap,
    Extension(ApiVersion(version)): Extension<ApiVersion>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    run_query(app, headers, version, params, false).await
}

/// `GET /queryAll?q=`: also the deleted records still in the Recycle Bin.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_queryall.htm>
async fn query_all(
    State(app): State<AppState>,
    headers: HeaderMap,
    Extension(ApiVersion(version)): Extension<ApiVersion>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    run_query(app, headers, version, params, true).await
}

async fn run_query(
    app: AppState,
    headers: HeaderMap,
    version: String,
    params: HashMap<String, String>,
    all: bool,
) -> Response {
    let usage = match gate(&app, Route::Query, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let Some(q) = params.get("q") else {
        return error(StatusCode::BAD_REQUEST, "MALFORMED_QUERY", "A query string must be provided.", usage);
    };
    let parsed = match soql::parse(q) {
        Ok(p) => p,
        Err(e) => return soql_error(&e, q, usage),
    };
    let batch = batch_size(&headers);
    let serial = app.org.serial();
    let mut inner = app.org.lock();
    let (rows, fields) = match inner.store.run(&parsed, all) {
        Ok(r) => r,
        Err(e) => return soql_error(&e, q, usage),
    };
    if parsed.fields.is_none() {
        let n = rows.len();
        return reply(StatusCode::OK, json!({ "totalSize": n, "done": true, "records": [] }), usage);
    }
    let rendered: Vec<Value> = rows.iter().map(|r| r.render_in(&fields, &version)).collect();
    let locator = format!("01gFAKE{serial:011}");
    let body = query_page(&rendered, 0, batch, &locator, &version);
    if rendered.len() > batch {
        inner.locators.insert(locator.clone(), Locator { rows: rendered, batch });
        inner.locator_order.push_back(locator);
        while inner.locator_order.len() > MAX_LOCATORS {
            if let Some(old) = inner.locator_order.pop_front() {
                inner.locators.remove(&old);
            }
        }
    }
    drop(inner);
    reply(StatusCode::OK, body, usage)
}

/// `GET /query/{locator}` (`nextRecordsUrl`).
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_query.htm>
async fn query_more(
    State(app): State<AppState>,
    headers: HeaderMap,
    Extension(ApiVersion(version)): Extension<ApiVersion>,
    Path(locator): Path<String>,
) -> Response {
    let usage = match gate(&app, Route::QueryMore, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let parsed =
        locator.rsplit_once('-').and_then(|(id, off)| Some((id.to_owned(), off.parse::<usize>().ok()?)));
    let inner = app.org.lock();
    let page = parsed.and_then(|(id, offset)| {
        let l = inner.locators.get(&id)?;
        (offset <= l.rows.len()).then(|| query_page(&l.rows, offset, l.batch, &id, &version))
    });
    drop(inner);
    match page {
        Some(body) => reply(StatusCode::OK, body, usage),
        None => error(StatusCode::BAD_REQUEST, "INVALID_QUERY_LOCATOR", "invalid query locator", usage),
    }
}

/// The `[start, end)` window of getUpdated/getDeleted, by Salesforce's rules:
/// - `start` must precede `end` by more than one minute, else 400 `INVALID_REPLICATION_DATE`
///   (message as Salesforce words it).
///   <https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_getdeleted.htm>
/// - the seconds of both are ignored (12:30:15 is 12:30:00), and the window ends no later than now:
///   `latestDateCovered` is that end.
///   <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_getupdated.htm>
/// - `start` no earlier than `earliest` (updated: 30 days back; deleted: the delete log's
///   `earliestDateAvailable`, 15 days or the last purge), else `INVALID_REPLICATION_DATE`.
///   <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_getdeleted.htm>
#[allow(clippy::result_large_err)] // the error is the handler's answer, returned at once
fn replication_window(
    params: &HashMap<String, String>,
    now: i64,
    earliest: i64,
    too_old: &str,
    usage: Usage,
) -> Result<(i64, i64), Response> {
    let parse = |k: &str| params.get(k).and_then(|v| parse_datetime(v.trim()));
    let (Some(start), Some(end)) = (parse("start"), parse("end")) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "MISSING_ARGUMENT",
            "start and end must be given as dateTime values",
            usage,
        ));
    };
    let invalid = |m: &str| error(StatusCode::BAD_REQUEST, "INVALID_REPLICATION_DATE", m, usage);
    if end - start <= 60_000 {
        return Err(invalid("startDate must be at least one minute greater than endDate"));
    }
    let start = floor_minute(start);
    if start < earliest {
        return Err(invalid(too_old));
    }
    let latest = floor_minute(end.min(now)).max(start);
    Ok((start, latest))
}

/// More ids than the org answers in one call: 400 `EXCEEDED_ID_LIMIT`.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_getupdated.htm>
fn exceeded_id_limit(limit: usize, usage: Usage) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "EXCEEDED_ID_LIMIT",
        format!("More than {limit} ids were found; choose start and end dates closer together"),
        usage,
    )
}

fn replicateable(name: &str) -> Option<&'static SObjectDef> {
    sobject(name).filter(|d| d.replicateable)
}

/// `GET /sobjects/{type}/deleted?start=&end=`.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_getdeleted.htm>
async fn deleted(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let usage = match gate(&app, Route::Deleted, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let Some(def) = replicateable(&name) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist", usage);
    };
    let limit = app.org.config().replication_id_limit;
    let inner = app.org.lock();
    let now = inner.store.now_ms();
    let earliest = floor_minute(inner.store.earliest_deleted_available());
    let too_old = "startDate is before the earliest date available in the delete log (earliestDateAvailable)";
    let (start, latest) = match replication_window(&params, now, earliest, too_old, usage) {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    let found = inner.store.deleted_between(def.name, start, latest);
    drop(inner);
    if found.len() > limit {
        return exceeded_id_limit(limit, usage);
    }
    let records: Vec<Value> =
        found.into_iter().map(|(id, at)| json!({ "id": id, "deletedDate": sf_datetime(at) })).collect();
    let body = json!({
        "deletedRecords": records,
        "earliestDateAvailable": sf_datetime(earliest),
        "latestDateCovered": sf_datetime(latest),
    });
    reply(StatusCode::OK, body, usage)
}

/// `GET /sobjects/{type}/updated?start=&end=`: ids of records created or modified
/// (`SystemModstamp`) in the window.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_getupdated.htm>
async fn updated(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let usage = match gate(&app, Route::Updated, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let Some(def) = replicateable(&name) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist", usage);
    };
    let limit = app.org.config().replication_id_limit;
    let inner = app.org.lock();
    let now = inner.store.now_ms();
    let earliest = floor_minute(now - THIRTY_DAYS_MS);
    let too_old = "startDate cannot be more than 30 days ago";
    let (start, latest) = match replication_window(&params, now, earliest, too_old, usage) {
        Ok(w) => w,
        Err(resp) => return resp,
    };
    let ids = inner.store.updated_between(def.name, start, latest);
    drop(inner);
    if ids.len() > limit {
        return exceeded_id_limit(limit, usage);
    }
    reply(StatusCode::OK, json!({ "ids": ids, "latestDateCovered": sf_datetime(latest) }), usage)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CollectionBody {
    #[serde(default)]
    all_or_none: bool,
    records: Vec<Map<String, Value>>,
}

#[allow(clippy::result_large_err)] // the error is the handler's answer, returned at once
fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes, usage: Option<Usage>) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| bad_json(&e, usage))
}

/// Salesforce's 400 for a body that is not the JSON expected.
pub(crate) fn bad_json(e: &serde_json::Error, usage: Option<Usage>) -> Response {
    with_usage(
        sf_error(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", format!("Cannot deserialize request: {e}")),
        usage,
    )
}

fn result_json(id: Option<&str>, outcome: &Result<(), RecordError>) -> Value {
    let mut v = match outcome {
        Ok(()) => json!({ "success": true, "errors": [] }),
        Err(e) => json!({ "success": false, "errors": [e.json()] }),
    };
    if let Some(id) = id {
        v["id"] = Value::String(id.to_owned());
    }
    v
}

fn rolled_back() -> RecordError {
    RecordError {
        status_code: "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        message:
            "Record rolled back because not all records were valid and the request was using AllOrNone header"
                .into(),
        fields: vec![],
    }
}

fn sobject_type(rec: &Map<String, Value>) -> Option<String> {
    rec.get("attributes")?.get("type")?.as_str().map(str::to_owned)
}

fn too_many(usage: Usage) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "EXCEEDED_ID_LIMIT",
        format!("record limit reached. cannot submit more than {COLLECTION_MAX} records into this call"),
        usage,
    )
}

fn missing_type() -> RecordError {
    RecordError {
        status_code: "INVALID_TYPE",
        message: "Each record must have attributes.type".into(),
        fields: vec![],
    }
}

async fn collection_create(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let usage = match gate(&app, Route::CollectionCreate, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let req: CollectionBody = match parse_body(&body, Some(usage)) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if req.records.len() > COLLECTION_MAX {
        return too_many(usage);
    }
    let mut inner = app.org.lock();
    if req.all_or_none {
        let checks: Vec<Result<(), RecordError>> = req
            .records
            .iter()
            .map(|r| match sobject_type(r) {
                Some(t) => inner.store.validate_create(&t, r),
                None => Err(missing_type()),
            })
            .collect();
        if checks.iter().any(Result::is_err) {
            let out: Vec<Value> = checks
                .iter()
                .map(|c| match c {
                    Ok(()) => result_json(None, &Err(rolled_back())),
                    Err(_) => result_json(None, c),
                })
                .collect();
            return reply(StatusCode::OK, Value::Array(out), usage);
        }
    }
    let out: Vec<Value> = req
        .records
        .iter()
        .map(|r| {
            let created = match sobject_type(r) {
                Some(t) => inner.store.create(&t, r),
                None => Err(missing_type()),
            };
            match created {
                Ok(id) => result_json(Some(&id), &Ok(())),
                Err(e) => result_json(None, &Err(e)),
            }
        })
        .collect();
    drop(inner);
    reply(StatusCode::OK, Value::Array(out), usage)
}

fn record_id(rec: &Map<String, Value>) -> Option<String> {
    rec.get("id").or_else(|| rec.get("Id")).and_then(Value::as_str).map(str::to_owned)
}

async fn collection_update(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let usage = match gate(&app, Route::CollectionUpdate, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let req: CollectionBody = match parse_body(&body, Some(usage)) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if req.records.len() > COLLECTION_MAX {
        return too_many(usage);
    }
    let no_id = || RecordError {
        status_code: "MISSING_ARGUMENT",
        message: "Id not specified in an update call".into(),
        fields: vec![],
    };
    let mut inner = app.org.lock();
    if req.all_or_none {
        let checks: Vec<(Option<String>, Result<(), RecordError>)> = req
            .records
            .iter()
            .map(|r| match record_id(r) {
                Some(id) => {
                    let c = inner.store.validate_update(&id, r);
                    (Some(id), c)
                }
                None => (None, Err(no_id())),
            })
            .collect();
        if checks.iter().any(|(_, c)| c.is_err()) {
            let out: Vec<Value> = checks
                .iter()
                .map(|(id, c)| match c {
                    Ok(()) => result_json(id.as_deref(), &Err(rolled_back())),
                    Err(_) => result_json(id.as_deref(), c),
                })
                .collect();
            return reply(StatusCode::OK, Value::Array(out), usage);
        }
    }
    let out: Vec<Value> = req
        .records
        .iter()
        .map(|r| match record_id(r) {
            Some(id) => {
                let outcome = inner.store.update(&id, r, None);
                result_json(Some(&id), &outcome)
            }
            None => result_json(None, &Err(no_id())),
        })
        .collect();
    drop(inner);
    reply(StatusCode::OK, Value::Array(out), usage)
}

async fn collection_delete(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let usage = match gate(&app, Route::CollectionDelete, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let ids: Vec<String> = params
        .get("ids")
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    if ids.is_empty() {
        return error(StatusCode::BAD_REQUEST, "MISSING_ARGUMENT", "ids must be given", usage);
    }
    if ids.len() > COLLECTION_MAX {
        return too_many(usage);
    }
    let all_or_none = params.get("allOrNone").is_some_and(|v| v == "true");
    let mut inner = app.org.lock();
    if all_or_none && ids.iter().any(|id| inner.store.live(id).is_none()) {
        let out: Vec<Value> = ids
            .iter()
            .map(|id| {
                let outcome = if inner.store.live(id).is_some() {
                    Err(rolled_back())
                } else {
                    Err(RecordError {
                        status_code: "ENTITY_IS_DELETED",
                        message: "entity is deleted".into(),
                        fields: vec![],
                    })
                };
                result_json(Some(id), &outcome)
            })
            .collect();
        return reply(StatusCode::OK, Value::Array(out), usage);
    }
    let out: Vec<Value> = ids
        .iter()
        .map(|id| {
            let outcome = inner.store.delete(id);
            result_json(Some(id), &outcome)
        })
        .collect();
    drop(inner);
    reply(StatusCode::OK, Value::Array(out), usage)
}

#[derive(Deserialize)]
struct BulkCreateBody {
    operation: String,
    query: String,
}

fn job_info(id: &str, job: &BulkJob, state: &str) -> Value {
    let mut v = json!({
        "id": id,
        "operation": "query",
        "object": job.object,
        "createdById": "005FAKE000000001AAA",
        "createdDate": sf_datetime(job.created_ms),
        "systemModstamp": sf_datetime(job.created_ms),
        "state": state,
        "concurrencyMode": "Parallel",
        "contentType": "CSV",
        "apiVersion": 60.0,
        "lineEnding": "LF",
        "columnDelimiter": "COMMA",
    });
    if state == "JobComplete" {
        v["numberRecordsProcessed"] = json!(job.rows.len());
        v["retries"] = json!(0);
        v["totalProcessingTime"] = json!(42);
    }
    v
}

async fn bulk_create(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let usage = match gate(&app, Route::BulkCreate, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let req: BulkCreateBody = match parse_body(&body, Some(usage)) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if req.operation != "query" && req.operation != "queryAll" {
        return error(StatusCode::BAD_REQUEST, "INVALIDJOB", "operation must be query or queryAll", usage);
    }
    let parsed = match soql::parse(&req.query) {
        Ok(p) if p.fields.is_some() => p,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "INVALIDJOB", "COUNT() is not supported", usage),
        Err(e) => return soql_error(&e, &req.query, usage),
    };
    let serial = app.org.serial();
    let mut inner = app.org.lock();
    let (rows, fields) = match inner.store.run(&parsed, req.operation == "queryAll") {
        Ok(r) => r,
        Err(e) => return soql_error(&e, &req.query, usage),
    };
    let cells: Vec<Vec<String>> = rows.iter().map(|r| fields.iter().map(|f| r.csv(f)).collect()).collect();
    let object = sobject(&parsed.from).map(|d| d.name).unwrap_or("Contact").to_owned();
    let id = format!("750FAKE{serial:011}");
    let job = BulkJob { object, header: fields, rows: cells, polls: 0, created_ms: inner.store.now_ms() };
    let info = job_info(&id, &job, "UploadComplete");
    inner.jobs.insert(id, job);
    drop(inner);
    reply(StatusCode::OK, info, usage)
}

fn job_state(job: &BulkJob, polls_needed: u32) -> &'static str {
    if job.polls > polls_needed { "JobComplete" } else { "InProgress" }
}

async fn bulk_status(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let usage = match gate(&app, Route::BulkStatus, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let needed = app.org.config().bulk_polls_until_complete;
    let mut inner = app.org.lock();
    let Some(job) = inner.jobs.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist", usage);
    };
    job.polls += 1;
    let info = job_info(&id, job, job_state(job, needed));
    drop(inner);
    reply(StatusCode::OK, info, usage)
}

fn csv_cell(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

async fn bulk_results(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let usage = match gate(&app, Route::BulkResults, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let needed = app.org.config().bulk_polls_until_complete;
    let default_max = app.org.config().bulk_default_max_records;
    let inner = app.org.lock();
    let Some(job) = inner.jobs.get(&id) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist", usage);
    };
    if job_state(job, needed) != "JobComplete" {
        return error(StatusCode::BAD_REQUEST, "INVALIDJOBSTATE", "job is not complete", usage);
    }
    let max = match params.get("maxRecords").map(|v| v.parse::<usize>()) {
        None => default_max,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => return error(StatusCode::BAD_REQUEST, "INVALIDLOCATOR", "invalid maxRecords", usage),
    };
    let offset = match params.get("locator").map(|v| v.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) if n <= job.rows.len() => n,
        Some(_) => return error(StatusCode::BAD_REQUEST, "INVALIDLOCATOR", "invalid locator", usage),
    };
    let end = (offset + max).min(job.rows.len());
    let mut csv = job.header.iter().map(|h| csv_cell(h)).collect::<Vec<_>>().join(",");
    csv.push('\n');
    for row in job.rows.get(offset..end).unwrap_or(&[]) {
        csv.push_str(&row.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","));
        csv.push('\n');
    }
    let locator = if end < job.rows.len() { end.to_string() } else { "null".to_owned() };
    let count = end - offset;
    drop(inner);
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, "text/csv")], csv).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&locator) {
        h.insert("sforce-locator", v);
    }
    h.insert("sforce-numberofrecords", HeaderValue::from(count));
    with_usage(resp, Some(usage))
}

fn oauth_error(error: &str, description: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error, "error_description": description })))
        .into_response()
}

async fn token(
    State(app): State<AppState>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    if let Some(resp) = apply_fault(&app.org, Route::Token).await {
        return resp;
    }
    let Ok(Form(form)) = form else {
        return oauth_error("invalid_request", "request body must be application/x-www-form-urlencoded");
    };
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let config = app.org.config();
    if !matches!(field("grant_type"), "refresh_token" | "authorization_code") {
        return oauth_error("unsupported_grant_type", "grant type not supported");
    }
    if field("client_id") != config.client_id {
        return oauth_error("invalid_client_id", "client identifier invalid");
    }
    if field("client_secret") != config.client_secret {
        return oauth_error("invalid_client", "invalid client credentials");
    }
    if field("grant_type") == "authorization_code" {
        let verifier = form.get("code_verifier").map(String::as_str);
        if app.org.oauth.redeem(field("code"), field("client_id"), field("redirect_uri"), verifier).is_err() {
            return oauth_error("invalid_grant", "authentication failure");
        }
        let issued = app.org.issue_token(&app.base_url);
        return Json(json!({
            "access_token": issued.access_token,
            "refresh_token": issued.refresh_token,
            "signature": "ZmFrZS1zaWduYXR1cmU=",
            "scope": "api refresh_token",
            "instance_url": issued.instance_url,
            "id": format!("{}/id/{}/{}", app.base_url, super::ORG_ID, super::USER_ID),
            "token_type": "Bearer",
            "issued_at": app.org.now_ms().to_string(),
        }))
        .into_response();
    }
    match app.org.refresh(field("refresh_token"), &app.base_url) {
        Some((access, instance)) => Json(json!({
            "access_token": access,
            "signature": "ZmFrZS1zaWduYXR1cmU=",
            "scope": "api refresh_token",
            "instance_url": instance,
            "id": format!("{}/id/{}/{}", app.base_url, super::ORG_ID, super::USER_ID),
            "token_type": "Bearer",
            "issued_at": app.org.now_ms().to_string(),
        }))
        .into_response(),
        None => oauth_error("invalid_grant", "expired access/refresh token"),
    }
}

/// The web-server flow's authorize endpoint: the user consents at once (or declines, when told
/// through `/_admin/oauth`) and the browser goes back to `redirect_uri`.
async fn authorize(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
    Query(params): Query<crate::oauth::AuthorizeParams>,
) -> Response {
    if let Some(resp) = apply_fault(&app.org, Route::Authorize).await {
        return resp;
    }
    app.org.oauth.consent(&headers, &params, &app.org.config().client_id, "Salesforce")
}

/// `POST /services/oauth2/revoke` (form `token`): 200, or 400 `unsupported_token_type` for a
/// token the org does not know.
async fn revoke(
    State(app): State<AppState>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    if let Some(resp) = apply_fault(&app.org, Route::Revoke).await {
        return resp;
    }
    let Ok(Form(form)) = form else {
        return oauth_error("invalid_request", "request body must be application/x-www-form-urlencoded");
    };
    match form.get("token") {
        Some(token) if app.org.revoke(token) => StatusCode::OK.into_response(),
        _ => oauth_error("unsupported_token_type", "this token type is not supported"),
    }
}

/// The OpenID Connect userinfo endpoint on the login host: tells a client holding only an access
/// token which instance serves it (`urls.custom_domain`, `urls.rest`).
async fn userinfo(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(resp) = apply_fault(&app.org, Route::UserInfo).await {
        return resp;
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let inner = app.org.lock();
    if !bearer.and_then(|t| inner.tokens.get(t).copied()).unwrap_or(false) {
        return (StatusCode::FORBIDDEN, "Bad_OAuth_Token").into_response();
    }
    let instance = inner.instance_url.clone().unwrap_or_else(|| app.base_url.clone());
    drop(inner);
    Json(json!({
        "sub": format!("{}/id/{}/{}", app.base_url, super::ORG_ID, super::USER_ID),
        "user_id": super::USER_ID,
        "organization_id": super::ORG_ID,
        "urls": {
            "rest": format!("{instance}/services/data/v{{version}}/"),
            "custom_domain": instance,
        },
    }))
    .into_response()
}

fn pairs(map: &Map<String, Value>) -> Vec<(&str, Value)> {
    map.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

async fn admin_create(State(app): State<AppState>, Path(name): Path<String>, body: Bytes) -> Response {
    let fields: Map<String, Value> = match parse_body(&body, None) {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    match app.org.create(&name, &pairs(&fields)) {
        Ok(id) => (StatusCode::CREATED, Json(app.org.record(&id).unwrap_or(Value::Null))).into_response(),
        Err(e) => sf_error(StatusCode::BAD_REQUEST, "INVALID_INPUT", e),
    }
}

async fn admin_get(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    match app.org.record(&id) {
        Some(v) => Json(v).into_response(),
        None => sf_error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist"),
    }
}

async fn admin_edit(State(app): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    let fields: Map<String, Value> = match parse_body(&body, None) {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    match app.org.edit(&id, &pairs(&fields)) {
        Ok(v) => Json(v).into_response(),
        Err(e) => sf_error(StatusCode::BAD_REQUEST, "INVALID_INPUT", e),
    }
}

#[derive(Deserialize)]
struct DeleteParams {
    /// An RFC 3339 instant: delete as if then (a record deleted N days ago).
    at: Option<String>,
}

async fn admin_delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<DeleteParams>,
) -> Response {
    let done = match params.at.as_deref().map(parse_datetime) {
        Some(Some(at)) => app.org.delete_at(&id, at),
        Some(None) => {
            return sf_error(StatusCode::BAD_REQUEST, "INVALID_INPUT", "at must be an RFC 3339 instant");
        }
        None => app.org.delete(&id),
    };
    if done {
        StatusCode::NO_CONTENT.into_response()
    } else {
        sf_error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist")
    }
}

#[derive(Deserialize)]
struct TouchBody {
    ids: Vec<String>,
    /// An RFC 3339 instant; default now.
    at: Option<String>,
}

async fn admin_touch(State(app): State<AppState>, body: Bytes) -> Response {
    let req: TouchBody = match parse_body(&body, None) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let at = req.at.as_deref().and_then(parse_datetime);
    Json(json!({ "touched": app.org.touch(&req.ids, at) })).into_response()
}

async fn admin_issue_token(State(app): State<AppState>) -> Response {
    Json(app.org.issue_token(&app.base_url)).into_response()
}

#[derive(Deserialize)]
struct ExpireBody {
    access_token: String,
}

async fn admin_expire_token(State(app): State<AppState>, body: Bytes) -> Response {
    match parse_body::<ExpireBody>(&body, None) {
        Ok(b) if app.org.expire_token(&b.access_token) => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => sf_error(StatusCode::NOT_FOUND, "NOT_FOUND", "unknown token"),
        Err(resp) => resp,
    }
}

#[derive(Deserialize)]
struct LimitsBody {
    used: u64,
    allocation: Option<u64>,
}

async fn admin_limits(State(app): State<AppState>, body: Bytes) -> Response {
    match parse_body::<LimitsBody>(&body, None) {
        Ok(b) => {
            app.org.set_api_usage(b.used, b.allocation);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(resp) => resp,
    }
}

async fn admin_expire_locators(State(app): State<AppState>) -> StatusCode {
    app.org.expire_query_locators();
    StatusCode::NO_CONTENT
}

/// A record error as a REST error-list element (`INVALID_FIELD` from the body carries no `fields`).
fn rest_error(e: &RecordError) -> Value {
    if e.status_code == "INVALID_FIELD" {
        json!({ "message": e.message, "errorCode": e.status_code })
    } else {
        json!({ "message": e.message, "errorCode": e.status_code, "fields": e.fields })
    }
}

/// A single-record write's error: 404 for deleted or unknown records, else 400.
fn write_error(e: &RecordError, usage: Usage) -> Response {
    match e.status_code {
        "ENTITY_IS_DELETED" => reply(StatusCode::NOT_FOUND, json!([rest_error(e)]), usage),
        "INVALID_CROSS_REFERENCE_KEY" if e.fields.is_empty() => {
            error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist", usage)
        }
        _ => reply(StatusCode::BAD_REQUEST, json!([rest_error(e)]), usage),
    }
}

fn unknown_object(usage: Usage) -> Response {
    error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist", usage)
}

/// A path segment that is not a record id of the object is read as an external-id field name.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_upsert.htm>
fn no_such_external_id_field(segment: &str, usage: Usage) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("Provided external ID field does not exist or is not accessible: {segment}"),
        usage,
    )
}

fn is_record_id(def: &SObjectDef, s: &str) -> bool {
    (s.len() == 15 || s.len() == 18)
        && s.chars().all(|c| c.is_ascii_alphanumeric())
        && s.starts_with(def.prefix)
}

fn object_summary(def: &SObjectDef, version: &str) -> Value {
    let base = format!("/services/data/{version}/sobjects/{}", def.name);
    json!({
        "name": def.name,
        "label": field_label(def.name),
        "labelPlural": def.label_plural,
        "keyPrefix": def.prefix,
        "custom": false,
        "createable": true,
        "updateable": true,
        "deletable": true,
        "queryable": true,
        "retrieveable": true,
        "searchable": def.replicateable,
        "replicateable": def.replicateable,
        "urls": {
            "sobject": base,
            "describe": format!("{base}/describe"),
            "rowTemplate": format!("{base}/{{ID}}"),
        },
    })
}

fn reference_to(sobject: &str, field: &str) -> Vec<&'static str> {
    match field {
        "AccountId" => vec!["Account"],
        "WhoId" => vec!["Contact", "Lead"],
        "WhatId" => vec!["Account", "Opportunity"],
        "ParentId" if sobject == "Note" => vec!["Account", "Contact", "Opportunity"],
        "ParentId" | "PermissionSetId" => vec!["PermissionSet"],
        "ProfileId" => vec!["Profile"],
        "OwnerId" | "CreatedById" | "LastModifiedById" | "AssigneeId" => vec!["User"],
        _ => vec![],
    }
}

/// One field of a describe result.
/// <https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_describesobjects_describesobjectresult.htm>
fn field_describe(store: &Store, def: &SObjectDef, name: &str) -> Value {
    if let Some(cf) = store.custom_field(def.name, name) {
        let (_, edit) = store.field_access(def.name, &cf.name);
        let ty = cf.describe_type();
        return json!({
            "name": cf.name,
            "label": cf.label,
            "type": ty,
            "length": if ty == "string" { cf.length.unwrap_or(255) } else { 0 },
            "nillable": !cf.required && ty != "boolean",
            "createable": edit,
            "updateable": edit,
            "unique": cf.unique,
            "externalId": cf.external_id,
            "idLookup": cf.external_id,
            "caseSensitive": cf.case_sensitive,
            "custom": true,
            "calculated": false,
            "filterable": true,
            "sortable": true,
            "defaultedOnCreate": ty == "boolean",
            "referenceTo": [],
            "relationshipName": null,
        });
    }
    let (ty, length) = standard_type(def.name, name);
    let writable = def.writable(name);
    let required = def.required.contains(&name);
    let system = matches!(
        name,
        "Id" | "IsDeleted"
            | "CreatedDate"
            | "CreatedById"
            | "LastModifiedDate"
            | "LastModifiedById"
            | "SystemModstamp"
    );
    json!({
        "name": name,
        "label": field_label(name),
        "type": ty,
        "length": length,
        "nillable": !(required || system || ty == "boolean" || name == "OwnerId" || (def.name == "Contact" && name == "Name")),
        "createable": writable,
        "updateable": writable,
        "unique": false,
        "externalId": false,
        "idLookup": name == "Id",
        "caseSensitive": false,
        "custom": false,
        "calculated": def.read_only.contains(&name) && def.name == "Contact",
        "filterable": ty != "textarea",
        "sortable": ty != "textarea",
        "defaultedOnCreate": system || name == "OwnerId" || ty == "boolean",
        "referenceTo": reference_to(def.name, name),
        "relationshipName": if ty == "reference" { Value::String(name.trim_end_matches("Id").to_owned()) } else { Value::Null },
    })
}

/// `GET /sobjects`: every object.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_describeGlobal.htm>
async fn describe_global(
    State(app): State<AppState>,
    headers: HeaderMap,
    Extension(ApiVersion(v)): Extension<ApiVersion>,
) -> Response {
    let usage = match gate(&app, Route::Describe, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let list: Vec<Value> = super::store::SOBJECTS.iter().map(|d| object_summary(d, &v)).collect();
    reply(StatusCode::OK, json!({ "encoding": "UTF-8", "maxBatchSize": 200, "sobjects": list }), usage)
}

/// `GET /sobjects/{type}`: the object's summary.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_basic_info.htm>
async fn sobject_info(
    State(app): State<AppState>,
    headers: HeaderMap,
    Extension(ApiVersion(v)): Extension<ApiVersion>,
    Path(name): Path<String>,
) -> Response {
    let usage = match gate(&app, Route::Describe, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    match sobject(&name) {
        Some(def) => reply(
            StatusCode::OK,
            json!({ "objectDescribe": object_summary(def, &v), "recentItems": [] }),
            usage,
        ),
        None => unknown_object(usage),
    }
}

/// `GET /sobjects/{type}/describe`: the object and every field the user can see (custom fields
/// only once field-level security lets the user read them).
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_describe.htm>
async fn describe(
    State(app): State<AppState>,
    headers: HeaderMap,
    Extension(ApiVersion(v)): Extension<ApiVersion>,
    Path(name): Path<String>,
) -> Response {
    let usage = match gate(&app, Route::Describe, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let Some(def) = sobject(&name) else { return unknown_object(usage) };
    let inner = app.org.lock();
    let fields: Vec<Value> =
        inner.store.readable_fields(def).iter().map(|f| field_describe(&inner.store, def, f)).collect();
    drop(inner);
    let mut body = object_summary(def, &v);
    body["fields"] = Value::Array(fields);
    body["childRelationships"] = json!([]);
    body["recordTypeInfos"] = json!([]);
    reply(StatusCode::OK, body, usage)
}

#[allow(clippy::result_large_err)] // the error is the handler's answer, returned at once
fn parse_record(body: &Bytes, usage: Usage) -> Result<Map<String, Value>, Response> {
    parse_body::<Map<String, Value>>(body, Some(usage))
}

/// `POST /sobjects/{type}`: 201 `{id, success, errors}`, or 400 with the error list.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_sobject_create.htm>
async fn sobject_create(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let usage = match gate(&app, Route::SObjectRow, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let Some(def) = sobject(&name) else { return unknown_object(usage) };
    let rec = match parse_record(&body, usage) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match app.org.lock().store.create(def.name, &rec) {
        Ok(id) => reply(StatusCode::CREATED, json!({ "id": id, "success": true, "errors": [] }), usage),
        Err(e) => write_error(&e, usage),
    }
}

#[derive(Deserialize)]
struct FieldsParam {
    fields: Option<String>,
}

fn render_record(
    store: &Store,
    def: &SObjectDef,
    rec: &Record,
    only: Option<&str>,
    version: &str,
    usage: Usage,
) -> Response {
    let fields: Vec<String> = match only {
        Some(list) => {
            let mut out = Vec::new();
            for f in list.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                match store.resolve_field(def, f) {
                    Some(name) => out.push(name),
                    None => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "INVALID_FIELD",
                            format!("No such column '{f}' on sobject of type {}", def.name),
                            usage,
                        );
                    }
                }
            }
            out
        }
        None => store.readable_fields(def),
    };
    reply(StatusCode::OK, rec.render_in(&fields, version), usage)
}

/// `GET /sobjects/{type}/{id}[?fields=]`: the record; 404 `NOT_FOUND` for an id the org does not
/// have, 404 `ENTITY_IS_DELETED` for a deleted one.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_get_field_values.htm>
async fn row_get(
    State(app): State<AppState>,
    headers: HeaderMap,
    Extension(ApiVersion(v)): Extension<ApiVersion>,
    Path((name, id)): Path<(String, String)>,
    Query(params): Query<FieldsParam>,
) -> Response {
    let usage = match gate(&app, Route::SObjectRow, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let Some(def) = sobject(&name) else { return unknown_object(usage) };
    if !is_record_id(def, &id) {
        return no_such_external_id_field(&id, usage);
    }
    let inner = app.org.lock();
    match inner.store.get(&id) {
        None => unknown_object(usage),
        Some(r) if r.deleted_ms.is_some() => {
            error(StatusCode::NOT_FOUND, "ENTITY_IS_DELETED", "entity is deleted", usage)
        }
        Some(r) => render_record(&inner.store, def, r, params.fields.as_deref(), &v, usage),
    }
}

/// `PATCH /sobjects/{type}/{id}`: 204.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_update_fields.htm>
async fn row_update(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let usage = match gate(&app, Route::SObjectRow, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let Some(def) = sobject(&name) else { return unknown_object(usage) };
    if !is_record_id(def, &id) {
        return no_such_external_id_field(&id, usage);
    }
    let rec = match parse_record(&body, usage) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match app.org.lock().store.update(&id, &rec, None) {
        Ok(()) => with_usage(StatusCode::NO_CONTENT.into_response(), Some(usage)),
        Err(e) => write_error(&e, usage),
    }
}

/// `DELETE /sobjects/{type}/{id}`: 204.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_delete_record.htm>
async fn row_delete(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    let usage = match gate(&app, Route::SObjectRow, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let Some(def) = sobject(&name) else { return unknown_object(usage) };
    if !is_record_id(def, &id) {
        return no_such_external_id_field(&id, usage);
    }
    match app.org.lock().store.delete(&id) {
        Ok(()) => with_usage(StatusCode::NO_CONTENT.into_response(), Some(usage)),
        Err(e) => write_error(&e, usage),
    }
}

/// The external-id field named in a path, if the user can see it and it is one (or `Id`).
fn external_id_field(store: &Store, def: &SObjectDef, field: &str) -> Option<String> {
    if field.eq_ignore_ascii_case("Id") {
        return Some("Id".into());
    }
    let cf = store.custom_field(def.name, field).filter(|f| f.external_id)?;
    store.field_access(def.name, &cf.name).0.then(|| cf.name.clone())
}

/// 300 Multiple Choices: the URLs of the records sharing the external id.
fn multiple(records: &[&Record], version: &str, usage: Usage) -> Response {
    let urls: Vec<String> = records.iter().map(|r| r.url(version)).collect();
    reply(StatusCode::MULTIPLE_CHOICES, json!(urls), usage)
}

/// `GET /sobjects/{type}/{field}/{value}`: the record holding an external id.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_upsert.htm>
async fn by_external_id(
    State(app): State<AppState>,
    headers: HeaderMap,
    Extension(ApiVersion(v)): Extension<ApiVersion>,
    Path((name, field, value)): Path<(String, String, String)>,
    Query(params): Query<FieldsParam>,
) -> Response {
    let usage = match gate(&app, Route::SObjectRow, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let Some(def) = sobject(&name) else { return unknown_object(usage) };
    let inner = app.org.lock();
    let Some(field) = external_id_field(&inner.store, def, &field) else {
        return no_such_external_id_field(&field, usage);
    };
    let found: Vec<&Record> = if field == "Id" {
        inner.store.live(&value).filter(|r| r.sobject == def.name).into_iter().collect()
    } else {
        inner.store.find_by_field(def.name, &field, &value)
    };
    match found.as_slice() {
        [] => unknown_object(usage),
        [one] => render_record(&inner.store, def, one, params.fields.as_deref(), &v, usage),
        many => multiple(many, &v, usage),
    }
}

/// One upsert by external id: `(id, created)`, or the record error; `Err(None)` when several
/// records hold the value.
fn upsert_one(
    store: &mut Store,
    def: &SObjectDef,
    field: &str,
    value: &str,
    rec: &Map<String, Value>,
) -> Result<(String, bool), Option<RecordError>> {
    let found: Vec<String> =
        store.find_by_field(def.name, field, value).iter().map(|r| r.id.clone()).collect();
    match found.as_slice() {
        [] => {
            let mut rec = rec.clone();
            rec.insert(field.to_owned(), Value::String(value.to_owned()));
            store.create(def.name, &rec).map(|id| (id, true)).map_err(Some)
        }
        [id] => store.update(id, rec, None).map(|()| (id.clone(), false)).map_err(Some),
        _ => Err(None),
    }
}

/// `PATCH /sobjects/{type}/{field}/{value}`: upsert by external id; 201 `created: true` or 200
/// `created: false` (`{id, success, errors, created}`), 300 when several records match.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_upsert.htm>
async fn upsert(
    State(app): State<AppState>,
    headers: HeaderMap,
    Extension(ApiVersion(v)): Extension<ApiVersion>,
    Path((name, field, value)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let usage = match gate(&app, Route::SObjectRow, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let Some(def) = sobject(&name) else { return unknown_object(usage) };
    let rec = match parse_record(&body, usage) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mut inner = app.org.lock();
    let Some(field) = external_id_field(&inner.store, def, &field).filter(|f| f != "Id") else {
        return no_such_external_id_field(&field, usage);
    };
    match upsert_one(&mut inner.store, def, &field, &value, &rec) {
        Ok((id, created)) => {
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            reply(status, json!({ "id": id, "success": true, "errors": [], "created": created }), usage)
        }
        Err(Some(e)) => write_error(&e, usage),
        Err(None) => {
            let found = inner.store.find_by_field(def.name, &field, &value);
            multiple(&found, &v, usage)
        }
    }
}

/// `PATCH /composite/sobjects/{type}/{field}`: upsert up to 200 records by external id, a result
/// per record (`created` true/false).
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections_upsert.htm>
async fn collection_upsert(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((name, field)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let usage = match gate(&app, Route::CollectionUpdate, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let req: CollectionBody = match parse_body(&body, Some(usage)) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if req.records.len() > COLLECTION_MAX {
        return too_many(usage);
    }
    let Some(def) = sobject(&name) else { return unknown_object(usage) };
    let mut inner = app.org.lock();
    let Some(field) = external_id_field(&inner.store, def, &field).filter(|f| f != "Id") else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            format!("Field name provided, {field} is not an External ID or indexed field for {}", def.name),
            usage,
        );
    };
    let out: Vec<Value> = req
        .records
        .iter()
        .map(|r| {
            let value = r.get(&field).and_then(Value::as_str).map(str::to_owned);
            let Some(value) = value else {
                let e = RecordError {
                    status_code: "MISSING_ARGUMENT",
                    message: format!("{field} not specified"),
                    fields: vec![],
                };
                return result_json(None, &Err(e));
            };
            match upsert_one(&mut inner.store, def, &field, &value, r) {
                Ok((id, created)) => {
                    let mut v = result_json(Some(&id), &Ok(()));
                    v["created"] = json!(created);
                    v
                }
                Err(Some(e)) => result_json(None, &Err(e)),
                Err(None) => result_json(
                    None,
                    &Err(RecordError {
                        status_code: "DUPLICATE_EXTERNAL_ID",
                        message: format!("{field}: more than one record found for external id field"),
                        fields: vec![field.clone()],
                    }),
                ),
            }
        })
        .collect();
    drop(inner);
    reply(StatusCode::OK, Value::Array(out), usage)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ToolingCustomField {
    full_name: String,
    metadata: FieldMetadata,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FieldMetadata {
    label: Option<String>,
    #[serde(rename = "type")]
    field_type: Option<String>,
    length: Option<u32>,
    #[serde(default)]
    external_id: bool,
    #[serde(default)]
    unique: bool,
    #[serde(default)]
    case_sensitive: bool,
    #[serde(default)]
    required: bool,
}

const FIELD_TYPES: &[&str] = &[
    "Text",
    "Number",
    "Checkbox",
    "Email",
    "Date",
    "DateTime",
    "Phone",
    "Url",
    "Currency",
    "TextArea",
    "LongTextArea",
];

/// A developer name Salesforce accepts: a letter first, then letters, digits and single
/// underscores, no trailing underscore.
fn valid_developer_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_')
        && name.len() <= 40
}

/// `POST /tooling/sobjects/CustomField` with `{FullName: "Contact.X__c", Metadata: {label, type,
/// length, externalId, unique, ...}}`: 201 `{id, success, errors, warnings, infos}`. The new field
/// has no field-level security: the API user sees it only once `FieldPermissions` grant it (as
/// with fields deployed through the Tooling or Metadata API). A field the object has already is
/// 400 `DUPLICATE_DEVELOPER_NAME` ("There is already a field named X on Y."); without the
/// "Customize Application" permission the create is refused (403 `INSUFFICIENT_ACCESS`). The fake
/// creates no other Tooling objects.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_tooling.meta/api_tooling/tooling_api_objects_customfield.htm>
async fn tooling_create(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(kind): Path<String>,
    body: Bytes,
) -> Response {
    let usage = match gate(&app, Route::Tooling, &headers).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    if kind != "CustomField" {
        return unknown_object(usage);
    }
    if !app.org.customize_application() {
        return error(
            StatusCode::FORBIDDEN,
            "INSUFFICIENT_ACCESS",
            "insufficient access rights on object id",
            usage,
        );
    }
    let req: ToolingCustomField = match parse_body(&body, Some(usage)) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let integrity = |m: String| error(StatusCode::BAD_REQUEST, "FIELD_INTEGRITY_EXCEPTION", m, usage);
    let Some((object, name)) = req.full_name.split_once('.') else {
        return integrity(format!("Full Name: invalid value {}: expected Object.Field__c", req.full_name));
    };
    let Some(def) = sobject(object) else {
        return integrity(format!("Full Name: no object named {object}"));
    };
    if !def.custom_fields {
        return integrity(format!("{}: the object takes no custom fields", def.name));
    }
    let developer = name.strip_suffix("__c").filter(|d| valid_developer_name(d));
    let Some(developer) = developer else {
        return integrity(format!(
            "Field Name: {name} must end with __c and otherwise contain only letters, digits and single underscores"
        ));
    };
    let m = req.metadata;
    let Some(label) = m.label.filter(|l| !l.trim().is_empty()) else {
        return integrity("Field Label: You must enter a value".into());
    };
    let Some(field_type) = m.field_type.filter(|t| FIELD_TYPES.contains(&t.as_str())) else {
        return integrity(format!("Data Type: must be one of {}", FIELD_TYPES.join(", ")));
    };
    if field_type == "Text" && !m.length.is_some_and(|l| (1..=255).contains(&l)) {
        return integrity("Length: Text fields must be 1 to 255 characters long".into());
    }
    if (m.unique || m.external_id) && !matches!(field_type.as_str(), "Text" | "Number" | "Email") {
        return integrity(format!("{field_type} fields cannot be unique or external ids"));
    }
    let field = CustomField {
        id: String::new(),
        sobject: def.name,
        name: format!("{developer}__c"),
        label,
        length: if field_type == "Text" { m.length } else { None },
        field_type,
        external_id: m.external_id,
        unique: m.unique,
        case_sensitive: m.case_sensitive,
        required: m.required,
    };
    match app.org.lock().store.add_custom_field(field) {
        Ok(id) => reply(
            StatusCode::CREATED,
            json!({ "id": id, "success": true, "errors": [], "warnings": [], "infos": [] }),
            usage,
        ),
        Err(existing) => error(
            StatusCode::BAD_REQUEST,
            "DUPLICATE_DEVELOPER_NAME",
            format!("There is already a field named {} on {}.", existing.trim_end_matches("__c"), def.name),
            usage,
        ),
    }
}

fn clock_json(ms: i64) -> Value {
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).unwrap_or_default();
    json!({ "now": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, false) })
}

async fn admin_clock(State(app): State<AppState>) -> Response {
    Json(clock_json(app.org.now_ms())).into_response()
}

#[derive(Deserialize)]
struct ClockBody {
    /// An RFC 3339 instant the clock moves to.
    now: Option<String>,
    /// Seconds the clock moves by (negative: back).
    advance_seconds: Option<f64>,
    /// Back to real time.
    #[serde(default)]
    reset: bool,
}

/// `POST /_admin/clock` `{"now": "2026-01-01T00:00:00Z"}` | `{"advance_seconds": 120}` |
/// `{"reset": true}`: answers `{"now"}`.
async fn admin_set_clock(State(app): State<AppState>, body: Bytes) -> Response {
    let req: ClockBody = match parse_body(&body, None) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if req.reset {
        app.org.reset_clock();
    }
    if let Some(now) = req.now {
        let Some(at) = parse_datetime(&now) else {
            return sf_error(StatusCode::BAD_REQUEST, "INVALID_INPUT", "now must be an RFC 3339 instant");
        };
        app.org.set_now(at);
    }
    if let Some(secs) = req.advance_seconds.filter(|s| s.is_finite()) {
        app.org.advance_clock((secs * 1000.0) as i64);
    }
    Json(clock_json(app.org.now_ms())).into_response()
}

#[derive(Deserialize)]
struct PermissionsBody {
    customize_application: bool,
}

/// `POST /_admin/permissions` `{"customize_application": false}`.
async fn admin_permissions(State(app): State<AppState>, body: Bytes) -> Response {
    match parse_body::<PermissionsBody>(&body, None) {
        Ok(b) => {
            app.org.set_customize_application(b.customize_application);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(resp) => resp,
    }
}

#[derive(Deserialize)]
struct AdminFieldBody {
    sobject: String,
    name: String,
    label: Option<String>,
    #[serde(rename = "type", default = "text")]
    field_type: String,
    length: Option<u32>,
    #[serde(default)]
    external_id: bool,
    #[serde(default)]
    unique: bool,
    #[serde(default)]
    case_sensitive: bool,
}

fn text() -> String {
    "Text".into()
}

/// `POST /_admin/fields` `{"sobject": "Contact", "name": "Syncbridge_Key__c", "external_id": true,
/// "unique": true}`: creates a custom field as an admin in Setup would (visible to the API user).
async fn admin_create_field(State(app): State<AppState>, body: Bytes) -> Response {
    let req: AdminFieldBody = match parse_body(&body, None) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let Some(def) = sobject(&req.sobject) else {
        return sf_error(StatusCode::NOT_FOUND, "NOT_FOUND", "unknown object");
    };
    let field = CustomField {
        id: String::new(),
        sobject: def.name,
        label: req.label.unwrap_or_else(|| field_label(&req.name)),
        name: req.name,
        length: if req.field_type == "Text" { Some(req.length.unwrap_or(255)) } else { req.length },
        field_type: req.field_type,
        external_id: req.external_id,
        unique: req.unique,
        case_sensitive: req.case_sensitive,
        required: false,
    };
    match app.org.create_custom_field(field) {
        Ok(id) => (StatusCode::CREATED, Json(json!({ "id": id }))).into_response(),
        Err(e) => sf_error(StatusCode::BAD_REQUEST, "INVALID_INPUT", e),
    }
}

/// `POST /_admin/deleted/purge`: empties the delete log and the Recycle Bin.
async fn admin_purge_deleted(State(app): State<AppState>) -> Response {
    Json(json!({ "purged": app.org.purge_deleted() })).into_response()
}
