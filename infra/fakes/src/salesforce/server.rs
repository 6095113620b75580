//! The fake's axum router: REST API v60.0 (`/services/data/v60.0/...`), Bulk API 2.0 query jobs,
//! `/services/oauth2/token` and `/_admin/`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::soql::{self, parse_datetime};
use super::store::{API_VERSION, RecordError, sf_datetime, sobject};
use super::{
    BulkJob, COLLECTION_MAX, DEFAULT_BATCH_SIZE, Fault, FaultKind, Locator, MAX_LOCATORS, MIN_BATCH_SIZE,
    Route, SalesforceState,
};

const FIFTEEN_DAYS_MS: i64 = 15 * 86_400_000;

#[derive(Clone)]
struct AppState {
    org: Arc<SalesforceState>,
    base_url: String,
}

pub(crate) fn router(org: Arc<SalesforceState>, base_url: String) -> Router {
    let api = Router::new()
        .route("/query", get(query))
        .route("/query/", get(query))
        .route("/query/{locator}", get(query_more))
        .route("/sobjects/{sobject}/deleted", get(deleted))
        .route("/sobjects/{sobject}/deleted/", get(deleted))
        .route(
            "/composite/sobjects",
            post(collection_create).patch(collection_update).delete(collection_delete),
        )
        .route("/jobs/query", post(bulk_create))
        .route("/jobs/query/{id}", get(bulk_status))
        .route("/jobs/query/{id}/results", get(bulk_results));
    Router::new()
        .nest(&format!("/services/data/{API_VERSION}"), api)
        .route("/services/oauth2/token", post(token))
        .route("/services/oauth2/authorize", get(authorize))
        .route("/services/oauth2/revoke", post(revoke))
        .route("/_admin/oauth", post(admin_oauth))
        .route("/services/oauth2/userinfo", get(userinfo))
        .route("/_admin/stats", get(admin_stats))
        .route("/_admin/stats/reset", post(admin_reset_stats))
        .route("/_admin/sobjects/{sobject}", post(admin_create))
        .route("/_admin/records/{id}", get(admin_get).patch(admin_edit).delete(admin_delete))
        .route("/_admin/touch", post(admin_touch))
        .route("/_admin/faults", post(admin_fault).delete(admin_clear_faults))
        .route("/_admin/tokens", post(admin_issue_token))
        .route("/_admin/tokens/expire", post(admin_expire_token))
        .route("/_admin/limits", post(admin_limits))
        .route("/_admin/locators/expire", post(admin_expire_locators))
        .with_state(AppState { org, base_url })
}

/// Salesforce's REST error body: an array of `{message, errorCode}`.
fn sf_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!([{ "message": message.into(), "errorCode": code }]))).into_response()
}

/// The `Sforce-Limit-Info` value for this response.
#[derive(Debug, Clone, Copy)]
struct Usage(u64, u64);

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
        inner.stats.limit_exceeded += 1;
        let usage = Usage(inner.api_usage, inner.daily_api_requests);
        return Err(limit_exceeded(Some(usage)));
    }
    inner.api_usage += 1;
    Ok(Usage(inner.api_usage, inner.daily_api_requests))
}

fn soql_error(e: &soql::SoqlError, usage: Usage) -> Response {
    let code = if e.0.starts_with("No such column") {
        "INVALID_FIELD"
    } else if e.0.contains("is not supported") {
        "INVALID_TYPE"
    } else {
        "MALFORMED_QUERY"
    };
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

fn locator_url(id: &str, offset: usize) -> String {
    format!("/services/data/{API_VERSION}/query/{id}-{offset}")
}

fn query_page(rows: &[Value], offset: usize, batch: usize, locator: &str) -> Value {
    let end = (offset + batch).min(rows.len());
    let mut body = json!({
        "totalSize": rows.len(),
        "done": end >= rows.len(),
        "records": rows.get(offset..end).unwrap_or(&[]),
    });
    if end < rows.len() {
        body["nextRecordsUrl"] = Value::String(locator_url(locator, end));
    }
    body
}

async fn query(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
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
        Err(e) => return soql_error(&e, usage),
    };
    let batch = batch_size(&headers);
    let serial = app.org.serial();
    let mut inner = app.org.lock();
    let (rows, fields) = match inner.store.run(&parsed) {
        Ok(r) => r,
        Err(e) => return soql_error(&e, usage),
    };
    if parsed.fields.is_none() {
        let n = rows.len();
        return reply(StatusCode::OK, json!({ "totalSize": n, "done": true, "records": [] }), usage);
    }
    let rendered: Vec<Value> = rows.iter().map(|r| r.render(&fields)).collect();
    let locator = format!("01gFAKE{serial:011}");
    let body = query_page(&rendered, 0, batch, &locator);
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

async fn query_more(
    State(app): State<AppState>,
    headers: HeaderMap,
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
        (offset <= l.rows.len()).then(|| query_page(&l.rows, offset, l.batch, &id))
    });
    drop(inner);
    match page {
        Some(body) => reply(StatusCode::OK, body, usage),
        None => error(StatusCode::BAD_REQUEST, "INVALID_QUERY_LOCATOR", "invalid query locator", usage),
    }
}

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
    let Some(def) = sobject(&name) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource does not exist", usage);
    };
    let parse = |k: &str| params.get(k).and_then(|v| parse_datetime(v.trim()));
    let (Some(start), Some(end)) = (parse("start"), parse("end")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "MISSING_ARGUMENT",
            "start and end must be given as dateTime values",
            usage,
        );
    };
    let now = chrono::Utc::now().timestamp_millis();
    if start > end {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REPLICATION_DATE",
            "end date before start date",
            usage,
        );
    }
    if start < now - FIFTEEN_DAYS_MS {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REPLICATION_DATE",
            "startDate must be within the last 15 days",
            usage,
        );
    }
    let inner = app.org.lock();
    let records: Vec<Value> = inner
        .store
        .deleted_between(def.name, start, end)
        .into_iter()
        .map(|(id, at)| json!({ "id": id, "deletedDate": sf_datetime(at) }))
        .collect();
    drop(inner);
    let body = json!({
        "deletedRecords": records,
        "earliestDateAvailable": sf_datetime(now - FIFTEEN_DAYS_MS),
        "latestDateCovered": sf_datetime(end),
    });
    reply(StatusCode::OK, body, usage)
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
    serde_json::from_slice(body).map_err(|e| {
        with_usage(
            sf_error(
                StatusCode::BAD_REQUEST,
                "JSON_PARSER_ERROR",
                format!("Cannot deserialize request: {e}"),
            ),
            usage,
        )
    })
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
        Err(e) => return soql_error(&e, usage),
    };
    let serial = app.org.serial();
    let mut inner = app.org.lock();
    let (rows, fields) = match inner.store.run(&parsed) {
        Ok(r) => r,
        Err(e) => return soql_error(&e, usage),
    };
    let cells: Vec<Vec<String>> = rows.iter().map(|r| fields.iter().map(|f| r.csv(f)).collect()).collect();
    let object = sobject(&parsed.from).map(|d| d.name).unwrap_or("Contact").to_owned();
    let id = format!("750FAKE{serial:011}");
    let job = BulkJob {
        object,
        header: fields,
        rows: cells,
        polls: 0,
        created_ms: chrono::Utc::now().timestamp_millis(),
    };
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
            "issued_at": chrono::Utc::now().timestamp_millis().to_string(),
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
            "issued_at": chrono::Utc::now().timestamp_millis().to_string(),
        }))
        .into_response(),
        None => oauth_error("invalid_grant", "expired access/refresh token"),
    }
}

/// The web-server flow's authorize endpoint: the user consents at once (or declines, when told
/// through `/_admin/oauth`) and the browser goes back to `redirect_uri`.
async fn authorize(
    State(app): State<AppState>,
    Query(params): Query<crate::oauth::AuthorizeParams>,
) -> Response {
    if let Some(resp) = apply_fault(&app.org, Route::Authorize).await {
        return resp;
    }
    app.org.oauth.authorize(&params, &app.org.config().client_id)
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

#[derive(Deserialize)]
struct AdminOAuth {
    /// The user declines the next authorizations (`error=access_denied`) until set back.
    deny: bool,
}

async fn admin_oauth(State(app): State<AppState>, Json(body): Json<AdminOAuth>) -> StatusCode {
    app.org.oauth.set_deny(body.deny);
    StatusCode::NO_CONTENT
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

async fn admin_stats(State(app): State<AppState>) -> Response {
    Json(app.org.stats()).into_response()
}

async fn admin_reset_stats(State(app): State<AppState>) -> StatusCode {
    app.org.reset_stats();
    StatusCode::NO_CONTENT
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

async fn admin_delete(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    if app.org.delete(&id) {
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

async fn admin_fault(State(app): State<AppState>, body: Bytes) -> Response {
    match parse_body::<Fault>(&body, None) {
        Ok(f) => {
            app.org.inject_fault(f);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(resp) => resp,
    }
}

async fn admin_clear_faults(State(app): State<AppState>) -> StatusCode {
    app.org.clear_faults();
    StatusCode::NO_CONTENT
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
