//! The fake's axum router: HubSpot's CRM v3 contacts routes, `/oauth/v1/token` and `/_admin/`.

use std::collections::{BTreeMap, HashMap};
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
use serde_json::{Value, json};

use super::search::SearchRequest;
use super::store::iso;
use super::{
    DAILY_MAX, Fault, FaultKind, HubspotState, LimitHeaders, Refusal, Route, TEN_SECONDLY_INTERVAL,
    TEN_SECONDLY_MAX, correlation_id,
};

const LIST_MAX_LIMIT: usize = 100;
const BATCH_MAX_INPUTS: usize = 100;

#[derive(Clone)]
struct AppState {
    hub: Arc<HubspotState>,
    base_url: String,
}

pub(crate) fn router(hub: Arc<HubspotState>, base_url: String) -> Router {
    let crm = "/crm/v3/objects/contacts";
    Router::new()
        .route(crm, get(list).post(create))
        .route(&format!("{crm}/search"), post(search))
        .route(&format!("{crm}/batch/read"), post(batch_read))
        .route(&format!("{crm}/batch/update"), post(batch_update))
        .route(&format!("{crm}/{{id}}"), get(get_one).patch(update))
        .route("/oauth/v1/token", post(token))
        .route("/_admin/stats", get(admin_stats))
        .route("/_admin/stats/reset", post(admin_reset_stats))
        .route("/_admin/contacts", post(admin_create))
        .route("/_admin/contacts/touch", post(admin_touch))
        .route("/_admin/contacts/{id}", get(admin_get).patch(admin_edit))
        .route("/_admin/contacts/{id}/archive", post(admin_archive))
        .route("/_admin/faults", post(admin_fault).delete(admin_clear_faults))
        .route("/_admin/tokens", post(admin_issue_token))
        .route("/_admin/tokens/expire", post(admin_expire_token))
        .route("/_admin/rate-limits", post(admin_rate_limits))
        .with_state(AppState { hub, base_url })
}

/// HubSpot's standard error body.
fn hub_error(status: StatusCode, category: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "status": "error",
        "message": message.into(),
        "correlationId": correlation_id(),
        "category": category,
    });
    (status, Json(body)).into_response()
}

fn add_limit_headers(resp: &mut Response, lh: Option<LimitHeaders>) {
    let Some(lh) = lh else { return };
    let h = resp.headers_mut();
    let mut put = |name: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(name, v);
        }
    };
    put("x-hubspot-ratelimit-max", TEN_SECONDLY_MAX.to_string());
    put("x-hubspot-ratelimit-remaining", lh.remaining.to_string());
    put("x-hubspot-ratelimit-interval-milliseconds", TEN_SECONDLY_INTERVAL.as_millis().to_string());
    put("x-hubspot-ratelimit-daily", DAILY_MAX.to_string());
    put("x-hubspot-ratelimit-daily-remaining", lh.daily_remaining.to_string());
}

fn reply(status: StatusCode, body: Value, lh: Option<LimitHeaders>) -> Response {
    let mut resp = (status, Json(body)).into_response();
    add_limit_headers(&mut resp, lh);
    resp
}

fn rate_limited(policy: &str, lh: Option<LimitHeaders>, retry_after: Option<u64>) -> Response {
    let body = json!({
        "status": "error",
        "message": format!("You have reached your {} limit.", policy.to_lowercase()),
        "errorType": "RATE_LIMIT",
        "correlationId": correlation_id(),
        "policyName": policy,
    });
    let mut resp = reply(StatusCode::TOO_MANY_REQUESTS, body, lh);
    if let Some(secs) = retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn expired(ago: Duration) -> Response {
    hub_error(
        StatusCode::UNAUTHORIZED,
        "EXPIRED_AUTHENTICATION",
        format!("The OAuth token used to make this call expired {} second(s) ago.", ago.as_secs()),
    )
}

/// Answers an injected fault, or `None` to go on (after a delay fault's wait).
async fn apply_fault(hub: &HubspotState, route: Route) -> Option<Response> {
    match hub.count_and_take_fault(route)? {
        FaultKind::Delay { ms } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            None
        }
        FaultKind::RateLimit { policy, retry_after_secs } => {
            let policy = policy.unwrap_or_else(|| "TEN_SECONDLY_ROLLING".into());
            let lh = LimitHeaders { remaining: 0, daily_remaining: DAILY_MAX };
            Some(rate_limited(&policy, Some(lh), retry_after_secs))
        }
        FaultKind::ServerError => {
            Some(hub_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "internal error"))
        }
        FaultKind::ExpiredToken => Some(expired(Duration::from_secs(1))),
        FaultKind::MalformedJson => Some(
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{\"results\": [{\"id\": \"1\",")
                .into_response(),
        ),
    }
}

/// Counts the request, applies faults, checks the bearer token and the rate limits.
async fn gate(app: &AppState, route: Route, headers: &HeaderMap) -> Result<Option<LimitHeaders>, Response> {
    if let Some(resp) = apply_fault(&app.hub, route).await {
        return Err(resp);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    app.hub.admit(bearer, route).map_err(|refusal| match refusal {
        Refusal::Unauthenticated => hub_error(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        ),
        Refusal::Expired { ago } => expired(ago),
        Refusal::RateLimited { policy, headers } => rate_limited(policy, Some(headers), None),
    })
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &Bytes, lh: Option<LimitHeaders>) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        let mut resp = hub_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            format!("Invalid input JSON on line {}, column {}: {e}", e.line(), e.column()),
        );
        add_limit_headers(&mut resp, lh);
        resp
    })
}

fn bad_request(message: impl Into<String>, lh: Option<LimitHeaders>) -> Response {
    let mut resp = hub_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message);
    add_limit_headers(&mut resp, lh);
    resp
}

fn not_found(lh: Option<LimitHeaders>) -> Response {
    let mut resp = hub_error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "resource not found");
    add_limit_headers(&mut resp, lh);
    resp
}

fn split_properties(values: impl Iterator<Item = String>) -> Vec<String> {
    values
        .flat_map(|v| v.split(',').map(|s| s.trim().to_owned()).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect()
}

async fn list(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let lh = match gate(&app, Route::List, &headers).await {
        Ok(lh) => lh,
        Err(resp) => return resp,
    };
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let limit = match param("limit").map(str::parse::<usize>) {
        None => 10,
        Some(Ok(n)) if (1..=LIST_MAX_LIMIT).contains(&n) => n,
        Some(_) => return bad_request(format!("limit must be between 1 and {LIST_MAX_LIMIT}"), lh),
    };
    let from = match param("after").map(str::parse::<u64>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return bad_request("Invalid after token", lh),
    };
    let archived = param("archived") == Some("true");
    let properties =
        split_properties(params.iter().filter(|(k, _)| k == "properties").map(|(_, v)| v.clone()));
    let inner = app.hub.lock();
    let ids = inner.store.ids_from(from, archived, limit + 1);
    let more = ids.len() > limit;
    let results: Vec<Value> = ids
        .iter()
        .take(limit)
        .filter_map(|id| inner.store.get(*id).map(|c| inner.store.render(*id, c, &properties)))
        .collect();
    drop(inner);
    let mut body = json!({ "results": results });
    if let (true, Some(last)) = (more, ids.get(limit - 1)) {
        let after = (last + 1).to_string();
        let link = format!("{}/crm/v3/objects/contacts?after={after}", app.base_url);
        body["paging"] = json!({ "next": { "after": after, "link": link } });
    }
    reply(StatusCode::OK, body, lh)
}

async fn get_one(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let lh = match gate(&app, Route::Get, &headers).await {
        Ok(lh) => lh,
        Err(resp) => return resp,
    };
    let properties =
        split_properties(params.iter().filter(|(k, _)| k == "properties").map(|(_, v)| v.clone()));
    let inner = app.hub.lock();
    let found = id.parse::<u64>().ok().and_then(|id| {
        inner
            .store
            .get(id)
            .filter(|c| c.archived_at.is_none())
            .map(|c| inner.store.render(id, c, &properties))
    });
    drop(inner);
    match found {
        Some(v) => reply(StatusCode::OK, v, lh),
        None => not_found(lh),
    }
}

async fn search(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let lh = match gate(&app, Route::Search, &headers).await {
        Ok(lh) => lh,
        Err(resp) => return resp,
    };
    let req: SearchRequest = match parse_json(&body, lh) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let inner = app.hub.lock();
    let page = match req.run(&inner.store) {
        Ok(p) => p,
        Err(e) => return bad_request(e.0, lh),
    };
    let results: Vec<Value> = page
        .ids
        .iter()
        .filter_map(|id| inner.store.get(*id).map(|c| inner.store.render(*id, c, &req.properties)))
        .collect();
    drop(inner);
    let mut body = json!({ "total": page.total, "results": results });
    if let Some(after) = page.next_after {
        body["paging"] = json!({ "next": { "after": after.to_string() } });
    }
    reply(StatusCode::OK, body, lh)
}

#[derive(Deserialize)]
struct BatchReadBody {
    #[serde(default)]
    properties: Vec<String>,
    inputs: Vec<IdInput>,
}

#[derive(Deserialize)]
struct IdInput {
    id: String,
}

#[derive(Deserialize)]
struct UpdateInput {
    id: String,
    properties: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct BatchUpdateBody {
    inputs: Vec<UpdateInput>,
}

#[derive(Deserialize)]
struct PropertiesBody {
    #[serde(default)]
    properties: BTreeMap<String, Value>,
}

fn as_strings(props: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    props
        .iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect()
}

fn batch_reply(results: Vec<Value>, missing: Vec<String>, lh: Option<LimitHeaders>) -> Response {
    let now = iso(chrono::Utc::now().timestamp_millis());
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": now,
        "completedAt": now,
    });
    if missing.is_empty() {
        return reply(StatusCode::OK, body, lh);
    }
    body["numErrors"] = json!(1);
    body["errors"] = json!([{
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
        "context": { "ids": missing },
    }]);
    reply(StatusCode::MULTI_STATUS, body, lh)
}

async fn batch_read(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let lh = match gate(&app, Route::BatchRead, &headers).await {
        Ok(lh) => lh,
        Err(resp) => return resp,
    };
    let req: BatchReadBody = match parse_json(&body, lh) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if req.inputs.len() > BATCH_MAX_INPUTS {
        return bad_request(format!("Batch input size must be at most {BATCH_MAX_INPUTS}"), lh);
    }
    let inner = app.hub.lock();
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for input in &req.inputs {
        let found = input.id.parse::<u64>().ok().and_then(|id| {
            inner
                .store
                .get(id)
                .filter(|c| c.archived_at.is_none())
                .map(|c| inner.store.render(id, c, &req.properties))
        });
        match found {
            Some(v) => results.push(v),
            None => missing.push(input.id.clone()),
        }
    }
    drop(inner);
    batch_reply(results, missing, lh)
}

async fn batch_update(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let lh = match gate(&app, Route::BatchUpdate, &headers).await {
        Ok(lh) => lh,
        Err(resp) => return resp,
    };
    let req: BatchUpdateBody = match parse_json(&body, lh) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if req.inputs.len() > BATCH_MAX_INPUTS {
        return bad_request(format!("Batch input size must be at most {BATCH_MAX_INPUTS}"), lh);
    }
    let mut inner = app.hub.lock();
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for input in &req.inputs {
        let props = as_strings(&input.properties);
        let names: Vec<String> = props.keys().cloned().collect();
        let updated = input.id.parse::<u64>().ok().filter(|id| inner.store.update(*id, &props, None));
        match updated.and_then(|id| inner.store.get(id).map(|c| inner.store.render(id, c, &names))) {
            Some(v) => results.push(v),
            None => missing.push(input.id.clone()),
        }
    }
    drop(inner);
    batch_reply(results, missing, lh)
}

async fn create(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let lh = match gate(&app, Route::Create, &headers).await {
        Ok(lh) => lh,
        Err(resp) => return resp,
    };
    let req: PropertiesBody = match parse_json(&body, lh) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let props = as_strings(&req.properties);
    let names: Vec<String> = props.keys().cloned().collect();
    let mut inner = app.hub.lock();
    let id = inner.store.create(props);
    let rendered = inner.store.get(id).map(|c| inner.store.render(id, c, &names));
    drop(inner);
    match rendered {
        Some(v) => reply(StatusCode::CREATED, v, lh),
        None => not_found(lh),
    }
}

async fn update(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let lh = match gate(&app, Route::Update, &headers).await {
        Ok(lh) => lh,
        Err(resp) => return resp,
    };
    let req: PropertiesBody = match parse_json(&body, lh) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let props = as_strings(&req.properties);
    let names: Vec<String> = props.keys().cloned().collect();
    let mut inner = app.hub.lock();
    let updated = id.parse::<u64>().ok().filter(|id| inner.store.update(*id, &props, None));
    let rendered = updated.and_then(|id| inner.store.get(id).map(|c| inner.store.render(id, c, &names)));
    drop(inner);
    match rendered {
        Some(v) => reply(StatusCode::OK, v, lh),
        None => not_found(lh),
    }
}

fn oauth_error(status: &str, message: &str) -> Response {
    let body = json!({ "status": status, "message": message, "correlationId": correlation_id() });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

async fn token(
    State(app): State<AppState>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    if let Some(resp) = apply_fault(&app.hub, Route::Token).await {
        return resp;
    }
    let Ok(Form(form)) = form else {
        return oauth_error("BAD_REQUEST", "request body must be application/x-www-form-urlencoded");
    };
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let config = app.hub.config();
    if field("grant_type") != "refresh_token" {
        return oauth_error("BAD_GRANT_TYPE", "unsupported grant type");
    }
    if field("client_id") != config.client_id {
        return oauth_error("BAD_CLIENT_ID", "missing or unknown client id");
    }
    if field("client_secret") != config.client_secret {
        return oauth_error("BAD_CLIENT_SECRET", "missing or invalid client secret");
    }
    match app.hub.refresh(field("refresh_token")) {
        Some(t) => Json(json!({
            "token_type": "bearer",
            "refresh_token": t.refresh_token,
            "access_token": t.access_token,
            "expires_in": t.expires_in,
        }))
        .into_response(),
        None => oauth_error("BAD_REFRESH_TOKEN", "missing or invalid refresh token"),
    }
}

async fn admin_stats(State(app): State<AppState>) -> Response {
    Json(app.hub.stats()).into_response()
}

async fn admin_reset_stats(State(app): State<AppState>) -> StatusCode {
    app.hub.reset_stats();
    StatusCode::NO_CONTENT
}

async fn admin_create(State(app): State<AppState>, body: Bytes) -> Response {
    let req: PropertiesBody = match parse_json(&body, None) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let props = as_strings(&req.properties);
    let pairs: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let id = app.hub.create_contact(&pairs);
    match app.hub.contact(&id) {
        Some(v) => (StatusCode::CREATED, Json(v)).into_response(),
        None => not_found(None),
    }
}

async fn admin_get(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    match app.hub.contact(&id) {
        Some(v) => Json(v).into_response(),
        None => not_found(None),
    }
}

async fn admin_edit(State(app): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    let req: PropertiesBody = match parse_json(&body, None) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let props = as_strings(&req.properties);
    let pairs: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    match app.hub.edit_contact(&id, &pairs) {
        Some(v) => Json(v).into_response(),
        None => not_found(None),
    }
}

async fn admin_archive(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    if app.hub.archive_contact(&id) { StatusCode::NO_CONTENT.into_response() } else { not_found(None) }
}

#[derive(Deserialize)]
struct TouchBody {
    /// `None`: every contact.
    ids: Option<Vec<String>>,
    #[serde(default)]
    shared: bool,
}

async fn admin_touch(State(app): State<AppState>, body: Bytes) -> Response {
    let req: TouchBody = match parse_json(&body, None) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let ids = req.ids.unwrap_or_else(|| app.hub.contact_ids());
    let touched = app.hub.touch_contacts(ids.iter().map(String::as_str), req.shared);
    Json(json!({ "touched": touched })).into_response()
}

async fn admin_fault(State(app): State<AppState>, body: Bytes) -> Response {
    match parse_json::<Fault>(&body, None) {
        Ok(f) => {
            app.hub.inject_fault(f);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(resp) => resp,
    }
}

async fn admin_clear_faults(State(app): State<AppState>) -> StatusCode {
    app.hub.clear_faults();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct IssueBody {
    ttl_secs: Option<u64>,
}

async fn admin_issue_token(State(app): State<AppState>, body: Bytes) -> Response {
    let ttl = if body.is_empty() {
        None
    } else {
        match parse_json::<IssueBody>(&body, None) {
            Ok(b) => b.ttl_secs.map(Duration::from_secs),
            Err(resp) => return resp,
        }
    };
    Json(app.hub.issue_token(ttl)).into_response()
}

#[derive(Deserialize)]
struct ExpireBody {
    access_token: String,
}

async fn admin_expire_token(State(app): State<AppState>, body: Bytes) -> Response {
    match parse_json::<ExpireBody>(&body, None) {
        Ok(b) if app.hub.expire_token(&b.access_token) => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => not_found(None),
        Err(resp) => resp,
    }
}

#[derive(Deserialize)]
struct RateLimitsBody {
    enabled: bool,
}

async fn admin_rate_limits(State(app): State<AppState>, body: Bytes) -> Response {
    match parse_json::<RateLimitsBody>(&body, None) {
        Ok(b) => {
            app.hub.set_rate_limits(b.enabled);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(resp) => resp,
    }
}
