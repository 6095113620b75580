//! The fake's axum router: HubSpot's CRM v3 object routes (contacts, companies, deals, notes), the
//! v4 associations batch read/create/archive, `/oauth/v1/token` and `/_admin/`. Every answer carries a `Date`
//! header from the account's clock (which tests can advance).

// Handlers bail out with a finished `Response` as their error; boxing it would only add noise.
#![allow(clippy::result_large_err)]

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
use super::store::{ObjectKind, PropertyDef, Store, association_target, association_type_id, iso};
use super::{
    DAILY_MAX, FaultKind, HubspotState, LimitHeaders, Refusal, Route, TEN_SECONDLY_INTERVAL,
    TEN_SECONDLY_MAX, correlation_id,
};

const LIST_MAX_LIMIT: usize = 100;
/// Batch endpoints take at most 100 inputs, 400 `VALIDATION_ERROR` past it
/// (https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/objects/batch/create-objects).
const BATCH_MAX_INPUTS: usize = 100;
const ASSOCIATIONS_MAX_INPUTS: usize = 1_000;

#[derive(Clone)]
struct AppState {
    hub: Arc<HubspotState>,
    base_url: String,
}

impl axum::extract::FromRef<AppState> for Arc<HubspotState> {
    fn from_ref(app: &AppState) -> Self {
        app.hub.clone()
    }
}

pub(crate) fn router(hub: Arc<HubspotState>, base_url: String) -> Router {
    let crm = "/crm/v3/objects/{object_type}";
    let state = AppState { hub, base_url };
    Router::new()
        .route(crm, get(list).post(create))
        .route(&format!("{crm}/search"), post(search))
        .route(&format!("{crm}/batch/read"), post(batch_read))
        .route(&format!("{crm}/batch/update"), post(batch_update))
        .route(&format!("{crm}/batch/create"), post(batch_create))
        .route(&format!("{crm}/batch/archive"), post(batch_archive))
        .route(&format!("{crm}/{{id}}"), get(get_one).patch(update).delete(archive_one))
        .route("/crm/v3/properties/{object_type}", get(properties_list).post(property_create))
        .route("/crm/v3/properties/{object_type}/{name}", get(property_get))
        .route("/crm/v4/associations/{from}/{to}/batch/read", post(associations_batch_read))
        .route("/crm/v4/associations/{from}/{to}/batch/create", post(associations_batch_create))
        .route("/crm/v4/associations/{from}/{to}/batch/archive", post(associations_batch_archive))
        .route("/oauth/v1/token", post(token))
        .route("/oauth/authorize", get(authorize))
        .route("/oauth/v1/access-tokens/{token}", get(token_info))
        .route("/oauth/v1/refresh-tokens/{token}", axum::routing::delete(revoke_refresh_token))
        .route("/_admin/contacts", post(admin_create))
        .route("/_admin/contacts/touch", post(admin_touch))
        .route("/_admin/contacts/{id}", get(admin_get).patch(admin_edit))
        .route("/_admin/contacts/{id}/archive", post(admin_archive))
        .route("/_admin/objects/{object_type}", post(admin_create_typed))
        .route(
            "/_admin/objects/{object_type}/{id}",
            get(admin_get_typed).patch(admin_edit_typed).delete(admin_archive_typed),
        )
        .route("/_admin/objects/{object_type}/{id}/restore", post(admin_restore_typed))
        .route("/_admin/clock", post(admin_clock))
        .route("/_admin/tokens", post(admin_issue_token))
        .route("/_admin/tokens/expire", post(admin_expire_token))
        .route("/_admin/rate-limits", post(admin_rate_limits))
        .route("/_admin/webhooks/send", post(admin_send_webhooks))
        .merge(crate::admin::router::<AppState, Arc<HubspotState>>())
        .layer(axum::middleware::from_fn_with_state(state.clone(), attribute_changes))
        .layer(axum::middleware::map_response_with_state(state.clone(), date_header))
        .with_state(state)
}

/// Attributes the changes a request made, for the webhooks: admin routes act as a person in
/// HubSpot, API routes as the connected app (its own writes come back as `INTEGRATION` events).
/// Changes made before it through the Rust handle are a person's.
async fn attribute_changes(
    State(app): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    app.hub.take_changes(super::ChangeSource::User);
    let admin = req.uri().path().starts_with("/_admin");
    let resp = next.run(req).await;
    app.hub.take_changes(if admin { super::ChangeSource::User } else { super::ChangeSource::Integration });
    resp
}

/// `POST /_admin/webhooks/send`: sends the waiting webhook events; answers the statuses.
async fn admin_send_webhooks(State(app): State<AppState>) -> Response {
    match app.hub.send_webhooks().await {
        Ok(statuses) => Json(json!({ "statuses": statuses })).into_response(),
        Err(e) => hub_error(StatusCode::BAD_GATEWAY, "WEBHOOK_FAILED", e.to_string()),
    }
}

/// Stamps the answer with the account's clock, in HTTP-date form.
async fn date_header(State(app): State<AppState>, mut resp: Response) -> Response {
    let now = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(app.hub.now_ms()).unwrap_or_default();
    if let Ok(v) = HeaderValue::from_str(&now.format("%a, %d %b %Y %H:%M:%S GMT").to_string()) {
        resp.headers_mut().insert(header::DATE, v);
    }
    resp
}

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
async fn apply_fault(hub: &HubspotState, route: Route, object: Option<ObjectKind>) -> Option<Response> {
    match hub.count_and_take_fault(route, object)? {
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

/// HubSpot's 403 for a token without the scope a call needs
/// (https://developers.hubspot.com/docs/api-reference/error-handling).
fn missing_scopes(scope: &str) -> Response {
    let body = json!({
        "status": "error",
        "message": "This app hasn't been granted all required scopes to make this call. Read more about required scopes here: https://developers.hubspot.com/scopes.",
        "correlationId": correlation_id(),
        "errors": [{
            "message": "One or more of the following scopes are required.",
            "context": { "requiredGranularScopes": [scope] },
        }],
        "links": { "scopes": "https://developers.hubspot.com/scopes" },
        "category": "MISSING_SCOPES",
    });
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

/// Whether a route writes (needs a `.write` scope) rather than reads.
fn writes(route: Route) -> bool {
    matches!(
        route,
        Route::BatchUpdate
            | Route::BatchCreate
            | Route::BatchArchive
            | Route::Create
            | Route::Update
            | Route::Archive
            | Route::AssociationsCreate
            | Route::AssociationsArchive
            | Route::PropertyCreate
    )
}

/// Counts the request, applies faults, checks the bearer token, the scope the route needs on
/// `object` and the rate limits.
async fn gate(
    app: &AppState,
    route: Route,
    object: Option<ObjectKind>,
    headers: &HeaderMap,
) -> Result<Option<LimitHeaders>, Response> {
    if let Some(resp) = apply_fault(&app.hub, route, object).await {
        return Err(resp);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let schema = matches!(route, Route::Properties | Route::PropertyCreate);
    let scope = object.map(|kind| super::required_scope(kind, schema, writes(route)));
    app.hub.admit(bearer, route, scope.as_deref()).map_err(|refusal| match refusal {
        Refusal::Unauthenticated => hub_error(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        ),
        Refusal::Expired { ago } => expired(ago),
        Refusal::MissingScope(scope) => missing_scopes(&scope),
        Refusal::RateLimited { policy, headers } => rate_limited(policy, Some(headers), None),
    })
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &Bytes, lh: Option<LimitHeaders>) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| bad_json(&e, lh))
}

/// HubSpot's 400 for a body that is not the JSON expected.
pub(crate) fn bad_json(e: &serde_json::Error, lh: Option<LimitHeaders>) -> Response {
    let mut resp = hub_error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        format!("Invalid input JSON on line {}, column {}: {e}", e.line(), e.column()),
    );
    add_limit_headers(&mut resp, lh);
    resp
}

fn bad_request(message: impl Into<String>, lh: Option<LimitHeaders>) -> Response {
    let mut resp = hub_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message);
    add_limit_headers(&mut resp, lh);
    resp
}

/// A refused write: 409 for a `CONFLICT` (an existing contact's email), else HubSpot's 400.
fn write_refused(category: &'static str, message: String, lh: Option<LimitHeaders>) -> Response {
    if category == "CONFLICT" {
        let mut resp = hub_error(StatusCode::CONFLICT, category, message);
        add_limit_headers(&mut resp, lh);
        return resp;
    }
    bad_request(message, lh)
}

fn not_found(lh: Option<LimitHeaders>) -> Response {
    let mut resp = hub_error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "resource not found");
    add_limit_headers(&mut resp, lh);
    resp
}

/// `idProperty` names a property that is not a unique-value one (or none at all): HubSpot's 400
/// (https://developers.hubspot.com/docs/api/crm/properties: only unique-value properties identify records).
fn not_unique_message(name: &str) -> String {
    format!(
        "Property \"{name}\" is not a unique identifier property: idProperty must name a property with hasUniqueValue true."
    )
}

fn split_properties(values: impl Iterator<Item = String>) -> Vec<String> {
    values
        .flat_map(|v| v.split(',').map(|s| s.trim().to_owned()).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect()
}
/// Counts the request against `route` and the object type in the path, then gates it; an unknown
/// object type is HubSpot's 400.
async fn admit_object(
    app: &AppState,
    route: Route,
    segment: &str,
    headers: &HeaderMap,
) -> Result<(ObjectKind, Option<LimitHeaders>), Response> {
    let kind = ObjectKind::parse(segment);
    let lh = gate(app, route, kind, headers).await?;
    match kind {
        Some(kind) => Ok((kind, lh)),
        None => Err(bad_request(format!("Unable to infer object type from: {segment}"), lh)),
    }
}

fn params_named(params: &[(String, String)], name: &str) -> Vec<String> {
    split_properties(params.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()))
}

/// The object types named in `associations=` (unknown names are ignored, as HubSpot does).
fn association_kinds(params: &[(String, String)]) -> Vec<ObjectKind> {
    params_named(params, "associations").iter().filter_map(|s| ObjectKind::parse(s)).collect()
}

async fn list(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(object_type): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let (kind, lh) = match admit_object(&app, Route::List, &object_type, &headers).await {
        Ok(x) => x,
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
    // Java-style boolean parsing: HubSpot's SDKs send `True` (Python) as well as `true`.
    let archived = param("archived").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let properties = params_named(&params, "properties");
    let associations = association_kinds(&params);
    let inner = app.hub.lock();
    let store = &inner.store;
    let ids = store.ids_from(kind, from, archived, limit + 1);
    let more = ids.len() > limit;
    let results: Vec<Value> = ids
        .iter()
        .take(limit)
        .filter_map(|id| store.get(kind, *id).map(|r| store.render(kind, *id, r, &properties, &associations)))
        .collect();
    drop(inner);
    let mut body = json!({ "results": results });
    if let (true, Some(last)) = (more, ids.get(limit - 1)) {
        let after = (last + 1).to_string();
        let link = format!("{}/crm/v3/objects/{}?after={after}", app.base_url, kind.as_str());
        body["paging"] = json!({ "next": { "after": after, "link": link } });
    }
    reply(StatusCode::OK, body, lh)
}

async fn get_one(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((object_type, id)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let (kind, lh) = match admit_object(&app, Route::Get, &object_type, &headers).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let properties = params_named(&params, "properties");
    let associations = association_kinds(&params);
    let id_property = params.iter().find(|(k, _)| k == "idProperty").map(|(_, v)| v.as_str());
    let inner = app.hub.lock();
    let store = &inner.store;
    let num = match id_property {
        None | Some("hs_object_id") => id.parse::<u64>().ok(),
        Some(p) if store.is_unique(kind, p) => store.find_unique(kind, p, &id),
        Some(p) => return bad_request(not_unique_message(p), lh),
    };
    let found = num.and_then(|num| {
        store.live(kind, num).map(|r| store.render(kind, num, r, &properties, &associations))
    });
    drop(inner);
    match found {
        Some(v) => reply(StatusCode::OK, v, lh),
        None => not_found(lh),
    }
}

async fn search(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(object_type): Path<String>,
    body: Bytes,
) -> Response {
    let (kind, lh) = match admit_object(&app, Route::Search, &object_type, &headers).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let req: SearchRequest = match parse_json(&body, lh) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let inner = app.hub.lock();
    let store = &inner.store;
    let page = match req.run(store, kind) {
        Ok(p) => p,
        Err(e) => return bad_request(e.0, lh),
    };
    let results: Vec<Value> = page
        .ids
        .iter()
        .filter_map(|id| store.get(kind, *id).map(|r| store.render(kind, *id, r, &req.properties, &[])))
        .collect();
    drop(inner);
    let mut body = json!({ "total": page.total, "results": results });
    if let Some(after) = page.next_after {
        body["paging"] = json!({ "next": { "after": after.to_string() } });
    }
    reply(StatusCode::OK, body, lh)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchReadBody {
    #[serde(default)]
    properties: Vec<String>,
    id_property: Option<String>,
    inputs: Vec<IdInput>,
}

#[derive(Deserialize)]
struct IdInput {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateInput {
    id: String,
    #[serde(default)]
    properties: BTreeMap<String, Value>,
    object_write_trace_id: Option<String>,
}

#[derive(Deserialize)]
struct BatchBody<T> {
    inputs: Vec<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateInput {
    #[serde(default)]
    properties: BTreeMap<String, Value>,
    #[serde(default)]
    associations: Vec<AssociationInput>,
    object_write_trace_id: Option<String>,
}

#[derive(Deserialize)]
struct AssociationInput {
    to: IdInput,
    #[serde(default)]
    types: Vec<AssociationSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssociationSpec {
    association_category: String,
    association_type_id: u32,
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

/// One input's failure in a batch answer.
struct BatchError {
    category: &'static str,
    message: String,
    context: Value,
}

fn batch_reply(
    results: Vec<Value>,
    errors: Vec<BatchError>,
    ok: StatusCode,
    lh: Option<LimitHeaders>,
) -> Response {
    let now = iso(chrono::Utc::now().timestamp_millis());
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": now,
        "completedAt": now,
    });
    if errors.is_empty() {
        return reply(ok, body, lh);
    }
    body["numErrors"] = json!(errors.len());
    body["errors"] = errors
        .into_iter()
        .map(|e| {
            json!({
                "status": "error",
                "category": e.category,
                "message": e.message,
                "context": e.context,
                "errors": [],
                "links": {},
            })
        })
        .collect();
    reply(StatusCode::MULTI_STATUS, body, lh)
}

/// A batch error's `context`: the input's id and trace id, each as a one-item list (absent ones left
/// out).
fn trace_context(id: Option<&str>, trace: Option<&str>) -> Value {
    let mut context = serde_json::Map::new();
    if let Some(id) = id {
        context.insert("ids".into(), json!([id]));
    }
    if let Some(trace) = trace {
        context.insert("objectWriteTraceId".into(), json!([trace]));
    }
    Value::Object(context)
}

fn missing_error(kind: ObjectKind, missing: Vec<String>) -> Option<BatchError> {
    (!missing.is_empty()).then(|| BatchError {
        category: "OBJECT_NOT_FOUND",
        message: format!(
            "Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.",
            kind.singular().to_uppercase()
        ),
        context: json!({ "ids": missing }),
    })
}

async fn batch_read(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(object_type): Path<String>,
    body: Bytes,
) -> Response {
    let (kind, lh) = match admit_object(&app, Route::BatchRead, &object_type, &headers).await {
        Ok(x) => x,
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
    let store = &inner.store;
    // Contacts can also be read by email
    // (https://developers.hubspot.com/docs/api/crm/contacts, "Retrieve contacts": `idProperty=email`).
    let by_email = kind == ObjectKind::Contacts && req.id_property.as_deref() == Some("email");
    let by_unique = match req.id_property.as_deref() {
        None | Some("hs_object_id") => None,
        Some(_) if by_email => None,
        Some(p) if store.is_unique(kind, p) => Some(p),
        Some(other) => return bad_request(not_unique_message(other), lh),
    };
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for input in &req.inputs {
        let num = match by_unique {
            _ if by_email => store.find_by_email(&input.id),
            Some(p) => store.find_unique(kind, p, &input.id),
            None => input.id.parse::<u64>().ok(),
        };
        let found = num
            .and_then(|num| store.live(kind, num).map(|r| store.render(kind, num, r, &req.properties, &[])));
        match found {
            Some(v) => results.push(v),
            None => missing.push(input.id.clone()),
        }
    }
    drop(inner);
    batch_reply(results, missing_error(kind, missing).into_iter().collect(), StatusCode::OK, lh)
}

/// Batch writes follow HubSpot's multi-status rule: when every input carries an
/// `objectWriteTraceId`, valid inputs are written and each invalid one gets its own error (207);
/// otherwise one invalid input fails the whole batch with 400 and nothing is written.
fn traced<T>(inputs: &[T], trace: impl Fn(&T) -> Option<&String>) -> bool {
    !inputs.is_empty() && inputs.iter().all(|i| trace(i).is_some())
}

async fn batch_update(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(object_type): Path<String>,
    body: Bytes,
) -> Response {
    let (kind, lh) = match admit_object(&app, Route::BatchUpdate, &object_type, &headers).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let req: BatchBody<UpdateInput> = match parse_json(&body, lh) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if req.inputs.len() > BATCH_MAX_INPUTS {
        return bad_request(format!("Batch input size must be at most {BATCH_MAX_INPUTS}"), lh);
    }
    let multi = traced(&req.inputs, |i| i.object_write_trace_id.as_ref());
    let mut inner = app.hub.lock();
    let store = &mut inner.store;
    let mut errors = Vec::new();
    let mut valid = Vec::new();
    let mut missing = Vec::new();
    for input in &req.inputs {
        let props = as_strings(&input.properties);
        let Some(num) = input.id.parse::<u64>().ok().filter(|n| store.live(kind, *n).is_some()) else {
            missing.push(input.id.clone());
            continue;
        };
        match store.check(kind, Some(num), &props, false) {
            Ok(()) => valid.push((num, props, input.object_write_trace_id.clone())),
            Err(e) if !multi => return bad_request(e.message, lh),
            Err(e) => errors.push(BatchError {
                category: e.category,
                message: e.message,
                context: trace_context(Some(&input.id), input.object_write_trace_id.as_deref()),
            }),
        }
    }
    let mut results = Vec::new();
    for (num, props, trace) in valid {
        let names: Vec<String> = props.keys().cloned().collect();
        if !matches!(store.update(kind, num, &props, None), Ok(true)) {
            missing.push(num.to_string());
            continue;
        }
        if let Some(r) = store.get(kind, num) {
            let mut v = store.render(kind, num, r, &names, &[]);
            if let Some(t) = trace {
                v["objectWriteTraceId"] = Value::String(t);
            }
            results.push(v);
        }
    }
    drop(inner);
    errors.extend(missing_error(kind, missing));
    batch_reply(results, errors, StatusCode::OK, lh)
}

/// Checks an input's associations: each names a HUBSPOT_DEFINED type from `kind` and a live target.
fn resolve_associations(
    store: &Store,
    kind: ObjectKind,
    associations: &[AssociationInput],
) -> Result<Vec<(ObjectKind, u64)>, String> {
    let mut out = Vec::new();
    for a in associations {
        if a.types.is_empty() {
            return Err("association types must not be empty".into());
        }
        for t in &a.types {
            if t.association_category != "HUBSPOT_DEFINED" {
                return Err(format!("unknown association category {}", t.association_category));
            }
            let Some(to) = association_target(kind, t.association_type_id) else {
                return Err(format!(
                    "association type id {} is not valid from {}",
                    t.association_type_id,
                    kind.as_str()
                ));
            };
            match a.to.id.parse::<u64>().ok().filter(|id| store.live(to, *id).is_some()) {
                Some(id) => out.push((to, id)),
                None => return Err(format!("{} {} does not exist", to.singular(), a.to.id)),
            }
        }
    }
    Ok(out)
}

/// Creates one record with its associations, or says why not (nothing written then).
fn create_with(
    store: &mut Store,
    kind: ObjectKind,
    props: BTreeMap<String, String>,
    associations: &[AssociationInput],
) -> Result<u64, (&'static str, String)> {
    let links = resolve_associations(store, kind, associations).map_err(|m| ("VALIDATION_ERROR", m))?;
    store.check(kind, None, &props, false).map_err(|e| (e.category, e.message))?;
    let id = store.create(kind, props).map_err(|e| (e.category, e.message))?;
    for (to, to_id) in links {
        store.associate(kind, id, to, to_id);
    }
    Ok(id)
}

async fn batch_create(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(object_type): Path<String>,
    body: Bytes,
) -> Response {
    let (kind, lh) = match admit_object(&app, Route::BatchCreate, &object_type, &headers).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let req: BatchBody<CreateInput> = match parse_json(&body, lh) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if req.inputs.len() > BATCH_MAX_INPUTS {
        return bad_request(format!("Batch input size must be at most {BATCH_MAX_INPUTS}"), lh);
    }
    let multi = traced(&req.inputs, |i| i.object_write_trace_id.as_ref());
    let mut inner = app.hub.lock();
    let store = &mut inner.store;
    if !multi {
        let mut keys = std::collections::BTreeSet::new();
        for input in &req.inputs {
            let props = as_strings(&input.properties);
            let dup = props
                .iter()
                .filter(|(k, v)| !v.is_empty() && store.is_unique(kind, k))
                .find(|(k, v)| !keys.insert(((*k).clone(), (*v).clone())));
            if let Some((name, value)) = dup {
                let entry = json!([{
                    "isValid": false,
                    "message": format!("{value} already has that value."),
                    "error": "DUPLICATE_VALUE",
                    "name": name,
                }]);
                return bad_request(format!("Property values were not valid: {entry}"), lh);
            }
            if let Err(e) = resolve_associations(store, kind, &input.associations) {
                return bad_request(e, lh);
            }
            if let Err(e) = store.check(kind, None, &props, false) {
                return write_refused(e.category, e.message, lh);
            }
        }
    }
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for input in &req.inputs {
        let props = as_strings(&input.properties);
        let names: Vec<String> = props.keys().cloned().collect();
        match create_with(store, kind, props, &input.associations) {
            Ok(id) => {
                if let Some(r) = store.get(kind, id) {
                    let mut v = store.render(kind, id, r, &names, &[]);
                    if let Some(t) = &input.object_write_trace_id {
                        v["objectWriteTraceId"] = Value::String(t.clone());
                    }
                    results.push(v);
                }
            }
            Err((category, message)) => errors.push(BatchError {
                category,
                message,
                context: trace_context(None, input.object_write_trace_id.as_deref()),
            }),
        }
    }
    drop(inner);
    batch_reply(results, errors, StatusCode::CREATED, lh)
}

async fn batch_archive(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(object_type): Path<String>,
    body: Bytes,
) -> Response {
    let (kind, lh) = match admit_object(&app, Route::BatchArchive, &object_type, &headers).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let req: BatchBody<IdInput> = match parse_json(&body, lh) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if req.inputs.len() > BATCH_MAX_INPUTS {
        return bad_request(format!("Batch input size must be at most {BATCH_MAX_INPUTS}"), lh);
    }
    let mut inner = app.hub.lock();
    for input in &req.inputs {
        if let Ok(id) = input.id.parse::<u64>() {
            inner.store.archive(kind, id);
        }
    }
    drop(inner);
    let mut resp = StatusCode::NO_CONTENT.into_response();
    add_limit_headers(&mut resp, lh);
    resp
}

#[derive(Deserialize)]
struct CreateBody {
    #[serde(default)]
    properties: BTreeMap<String, Value>,
    #[serde(default)]
    associations: Vec<AssociationInput>,
}

async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(object_type): Path<String>,
    body: Bytes,
) -> Response {
    let (kind, lh) = match admit_object(&app, Route::Create, &object_type, &headers).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let req: CreateBody = match parse_json(&body, lh) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let props = as_strings(&req.properties);
    let names: Vec<String> = props.keys().cloned().collect();
    let mut inner = app.hub.lock();
    let store = &mut inner.store;
    let created = create_with(store, kind, props, &req.associations);
    let rendered = created.map(|id| store.get(kind, id).map(|r| store.render(kind, id, r, &names, &[])));
    drop(inner);
    match rendered {
        Ok(Some(v)) => reply(StatusCode::CREATED, v, lh),
        Ok(None) => not_found(lh),
        Err((category, m)) => write_refused(category, m, lh),
    }
}

async fn update(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((object_type, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (kind, lh) = match admit_object(&app, Route::Update, &object_type, &headers).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let req: PropertiesBody = match parse_json(&body, lh) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let props = as_strings(&req.properties);
    let names: Vec<String> = props.keys().cloned().collect();
    let mut inner = app.hub.lock();
    let store = &mut inner.store;
    let updated = match id.parse::<u64>().map(|num| (num, store.update(kind, num, &props, None))) {
        Ok((num, Ok(true))) => Some(num),
        Ok((_, Err(e))) => return bad_request(e.message, lh),
        _ => None,
    };
    let rendered =
        updated.and_then(|num| store.get(kind, num).map(|r| store.render(kind, num, r, &names, &[])));
    drop(inner);
    match rendered {
        Some(v) => reply(StatusCode::OK, v, lh),
        None => not_found(lh),
    }
}

async fn archive_one(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((object_type, id)): Path<(String, String)>,
) -> Response {
    let (kind, lh) = match admit_object(&app, Route::Archive, &object_type, &headers).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    if let Ok(num) = id.parse::<u64>() {
        app.hub.lock().store.archive(kind, num);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    add_limit_headers(&mut resp, lh);
    resp
}

/// `POST /crm/v4/associations/{from}/{to}/batch/read`: each input's associated ids with their
/// association types; inputs without any get a `NO_ASSOCIATIONS_FOUND` error (207).
async fn associations_batch_read(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (kind, lh) = match admit_object(&app, Route::Associations, &from, &headers).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let Some(to) = ObjectKind::parse(&to) else {
        return bad_request(format!("Unable to infer object type from: {to}"), lh);
    };
    let req: BatchBody<IdInput> = match parse_json(&body, lh) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if req.inputs.len() > ASSOCIATIONS_MAX_INPUTS {
        return bad_request(format!("Batch input size must be at most {ASSOCIATIONS_MAX_INPUTS}"), lh);
    }
    let Some(type_id) = association_type_id(kind, to) else {
        return bad_request(
            format!("No associations are defined from {} to {}", kind.as_str(), to.as_str()),
            lh,
        );
    };
    let inner = app.hub.lock();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for input in &req.inputs {
        let ids = input.id.parse::<u64>().map(|id| inner.store.associated(kind, id, to)).unwrap_or_default();
        if ids.is_empty() {
            errors.push(BatchError {
                category: "OBJECT_NOT_FOUND",
                message: format!("No {} is associated with {} {}.", to.singular(), kind.singular(), input.id),
                context: json!({ "fromObjectId": [input.id], "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND" }),
            });
            continue;
        }
        let to_list: Vec<Value> = ids
            .iter()
            .map(|id| {
                json!({
                    "toObjectId": id,
                    "associationTypes": [{ "category": "HUBSPOT_DEFINED", "typeId": type_id, "label": null }],
                })
            })
            .collect();
        results.push(json!({ "from": { "id": input.id }, "to": to_list }));
    }
    drop(inner);
    batch_reply(results, errors, StatusCode::OK, lh)
}

/// Gates a v4 associations write and resolves both object types in the path.
async fn admit_pair(
    app: &AppState,
    route: Route,
    from: &str,
    to: &str,
    headers: &HeaderMap,
) -> Result<(ObjectKind, ObjectKind, Option<LimitHeaders>), Response> {
    let (kind, lh) = admit_object(app, route, from, headers).await?;
    match ObjectKind::parse(to) {
        Some(to) => Ok((kind, to, lh)),
        None => Err(bad_request(format!("Unable to infer object type from: {to}"), lh)),
    }
}

#[derive(Deserialize)]
struct PairInput {
    from: IdInput,
    to: IdInput,
    #[serde(default)]
    types: Vec<AssociationSpec>,
}

/// `POST /crm/v4/associations/{from}/{to}/batch/create`: associates each pair with the given
/// HUBSPOT_DEFINED type (both directions). An existing association is answered as created (no
/// change); a missing or archived record is an `OBJECT_NOT_FOUND` error for that input (207).
async fn associations_batch_create(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (kind, to, lh) = match admit_pair(&app, Route::AssociationsCreate, &from, &to, &headers).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let req: BatchBody<PairInput> = match parse_json(&body, lh) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if req.inputs.len() > ASSOCIATIONS_MAX_INPUTS {
        return bad_request(format!("Batch input size must be at most {ASSOCIATIONS_MAX_INPUTS}"), lh);
    }
    for input in &req.inputs {
        if input.types.is_empty() {
            return bad_request("association types must not be empty", lh);
        }
        for t in &input.types {
            if t.association_category != "HUBSPOT_DEFINED" {
                return bad_request(format!("unknown association category {}", t.association_category), lh);
            }
            if association_target(kind, t.association_type_id) != Some(to) {
                return bad_request(
                    format!(
                        "association type id {} is not valid from {} to {}",
                        t.association_type_id,
                        kind.as_str(),
                        to.as_str()
                    ),
                    lh,
                );
            }
        }
    }
    let mut inner = app.hub.lock();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for input in &req.inputs {
        let pair = input.from.id.parse::<u64>().ok().zip(input.to.id.parse::<u64>().ok());
        match pair {
            Some((a, b)) if inner.store.associate(kind, a, to, b) => results.push(json!({
                "fromObjectTypeId": kind.object_type_id(),
                "fromObjectId": a,
                "toObjectTypeId": to.object_type_id(),
                "toObjectId": b,
                "labels": [],
            })),
            _ => errors.push(BatchError {
                category: "OBJECT_NOT_FOUND",
                message: format!(
                    "Could not associate {} {} with {} {}: a record does not exist.",
                    kind.singular(),
                    input.from.id,
                    to.singular(),
                    input.to.id
                ),
                context: json!({ "fromObjectId": [input.from.id], "toObjectId": [input.to.id] }),
            }),
        }
    }
    drop(inner);
    batch_reply(results, errors, StatusCode::CREATED, lh)
}

#[derive(Deserialize)]
struct ArchiveInput {
    from: IdInput,
    #[serde(default)]
    to: Vec<IdInput>,
}

/// `POST /crm/v4/associations/{from}/{to}/batch/archive`: removes every association between each
/// `from` and its `to` records (both directions); pairs that are not associated are skipped. 204.
async fn associations_batch_archive(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((from, to)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (kind, to, lh) = match admit_pair(&app, Route::AssociationsArchive, &from, &to, &headers).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let req: BatchBody<ArchiveInput> = match parse_json(&body, lh) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if req.inputs.len() > ASSOCIATIONS_MAX_INPUTS {
        return bad_request(format!("Batch input size must be at most {ASSOCIATIONS_MAX_INPUTS}"), lh);
    }
    if association_type_id(kind, to).is_none() {
        return bad_request(
            format!("No associations are defined from {} to {}", kind.as_str(), to.as_str()),
            lh,
        );
    }
    let mut inner = app.hub.lock();
    for input in &req.inputs {
        let Ok(a) = input.from.id.parse::<u64>() else { continue };
        for target in &input.to {
            if let Ok(b) = target.id.parse::<u64>() {
                inner.store.unlink(kind, a, to, b);
            }
        }
    }
    drop(inner);
    let mut resp = StatusCode::NO_CONTENT.into_response();
    add_limit_headers(&mut resp, lh);
    resp
}

/// `GET /crm/v3/properties/{objectType}`: every property of the type
/// (https://developers.hubspot.com/docs/api/crm/properties).
async fn properties_list(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(object_type): Path<String>,
) -> Response {
    let (kind, lh) = match admit_object(&app, Route::Properties, &object_type, &headers).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let results: Vec<Value> = app.hub.lock().store.property_defs(kind).iter().map(|d| d.to_json()).collect();
    reply(StatusCode::OK, json!({ "results": results }), lh)
}

/// `GET /crm/v3/properties/{objectType}/{propertyName}`: one property, or HubSpot's 404.
async fn property_get(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((object_type, name)): Path<(String, String)>,
) -> Response {
    let (kind, lh) = match admit_object(&app, Route::Properties, &object_type, &headers).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let found = app.hub.lock().store.property_def(kind, &name).map(PropertyDef::to_json);
    match found {
        Some(v) => reply(StatusCode::OK, v, lh),
        None => {
            let message = format!(
                "Unable to find property with name '{name}' for objectType {}",
                kind.object_type_id()
            );
            let mut resp = hub_error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", message);
            add_limit_headers(&mut resp, lh);
            resp
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PropertyCreateBody {
    name: Option<String>,
    label: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    field_type: Option<String>,
    group_name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    has_unique_value: bool,
}

/// `POST /crm/v3/properties/{objectType}`: creates a custom property; `name`, `label`, `type`,
/// `fieldType` and `groupName` are required (https://developers.hubspot.com/docs/api/crm/properties),
/// `type` and `fieldType` among HubSpot's values. 201 with the property; see
/// [`super::store::Store::define_property`] for the 409 and the unique-value rules.
async fn property_create(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(object_type): Path<String>,
    body: Bytes,
) -> Response {
    let (kind, lh) = match admit_object(&app, Route::PropertyCreate, &object_type, &headers).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let req: PropertyCreateBody = match parse_json(&body, lh) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    const TYPES: &[&str] = &["string", "number", "date", "datetime", "enumeration", "bool"];
    const FIELD_TYPES: &[&str] = &[
        "textarea",
        "text",
        "date",
        "file",
        "number",
        "select",
        "radio",
        "checkbox",
        "booleancheckbox",
        "calculation_equation",
        "html",
        "phonenumber",
    ];
    let required = [
        ("name", &req.name),
        ("label", &req.label),
        ("type", &req.kind),
        ("fieldType", &req.field_type),
        ("groupName", &req.group_name),
    ];
    if let Some((missing, _)) = required.iter().find(|(_, v)| v.as_deref().is_none_or(str::is_empty)) {
        return bad_request(format!("Some required fields were not set: [{missing}]"), lh);
    }
    let field = |v: &Option<String>| v.clone().unwrap_or_default();
    let (ty, field_type) = (field(&req.kind), field(&req.field_type));
    if !TYPES.contains(&ty.as_str()) {
        return bad_request(format!("Invalid type '{ty}': expected one of {TYPES:?}"), lh);
    }
    if !FIELD_TYPES.contains(&field_type.as_str()) {
        return bad_request(format!("Invalid fieldType '{field_type}': expected one of {FIELD_TYPES:?}"), lh);
    }
    let def = PropertyDef {
        name: field(&req.name),
        label: field(&req.label),
        kind: ty,
        field_type,
        group_name: field(&req.group_name),
        description: req.description,
        has_unique_value: req.has_unique_value,
        hubspot_defined: false,
        read_only: false,
        created_ms: 0,
    };
    let made = app.hub.lock().store.define_property(kind, def);
    match made {
        Ok(def) => reply(StatusCode::CREATED, def.to_json(), lh),
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            let mut resp = hub_error(status, e.category, e.message);
            add_limit_headers(&mut resp, lh);
            resp
        }
    }
}

#[derive(Deserialize)]
struct PropertiesBody {
    #[serde(default)]
    properties: BTreeMap<String, Value>,
}
fn oauth_error(status: &str, message: &str) -> Response {
    let body = json!({ "status": status, "message": message, "correlationId": correlation_id() });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

async fn token(
    State(app): State<AppState>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    if let Some(resp) = apply_fault(&app.hub, Route::Token, None).await {
        return resp;
    }
    let Ok(Form(form)) = form else {
        return oauth_error("BAD_REQUEST", "request body must be application/x-www-form-urlencoded");
    };
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let config = app.hub.config();
    if !matches!(field("grant_type"), "refresh_token" | "authorization_code") {
        return oauth_error("BAD_GRANT_TYPE", "unsupported grant type");
    }
    if field("client_id") != config.client_id {
        return oauth_error("BAD_CLIENT_ID", "missing or unknown client id");
    }
    if field("client_secret") != config.client_secret {
        return oauth_error("BAD_CLIENT_SECRET", "missing or invalid client secret");
    }
    if field("grant_type") == "authorization_code" {
        if field("redirect_uri").is_empty() {
            return oauth_error("BAD_REDIRECT_URI", "missing redirect uri");
        }
        if app.hub.oauth.redeem(field("code"), field("client_id"), field("redirect_uri"), None).is_err() {
            return oauth_error("BAD_AUTH_CODE", "missing or unknown auth code");
        }
        let t = app.hub.issue_token(None);
        return Json(json!({
            "token_type": "bearer",
            "refresh_token": t.refresh_token,
            "access_token": t.access_token,
            "expires_in": t.expires_in,
        }))
        .into_response();
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
/// app.hubspot.com's install page: consents at once (or declines, see `/_admin/oauth`).
async fn authorize(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
    Query(params): Query<crate::oauth::AuthorizeParams>,
) -> Response {
    if let Some(resp) = apply_fault(&app.hub, Route::Authorize, None).await {
        return resp;
    }
    app.hub.oauth.consent(&headers, &params, &app.hub.config().client_id, "HubSpot")
}

/// `GET /oauth/v1/access-tokens/{token}`: the portal and app an access token belongs to.
async fn token_info(State(app): State<AppState>, Path(token): Path<String>) -> Response {
    if let Some(resp) = apply_fault(&app.hub, Route::TokenInfo, None).await {
        return resp;
    }
    match app.hub.token_expires_in(&token).zip(app.hub.token_scopes(&token)) {
        Some((expires_in, scopes)) => Json(json!({
            "token": token,
            "user": "admin@fake-portal.test",
            "hub_domain": "fake-portal.test",
            "scopes": scopes,
            "hub_id": super::PORTAL_ID,
            "app_id": super::APP_ID,
            "expires_in": expires_in.unwrap_or(0),
            "user_id": 123,
            "token_type": "access",
        }))
        .into_response(),
        None => hub_error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "access token not found"),
    }
}

/// `DELETE /oauth/v1/refresh-tokens/{token}`: 204, or 404 for a token the fake does not know.
async fn revoke_refresh_token(State(app): State<AppState>, Path(token): Path<String>) -> Response {
    if let Some(resp) = apply_fault(&app.hub, Route::Revoke, None).await {
        return resp;
    }
    if app.hub.revoke_refresh_token(&token) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        hub_error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "refresh token not found")
    }
}

#[derive(Deserialize)]
struct AdminCreateBody {
    #[serde(default)]
    properties: BTreeMap<String, Value>,
    /// Object type -> ids to associate the new record with.
    #[serde(default)]
    associations: BTreeMap<String, Vec<String>>,
}

fn admin_kind(segment: &str) -> Result<ObjectKind, Response> {
    ObjectKind::parse(segment).ok_or_else(|| bad_request(format!("Unknown object type {segment}"), None))
}

async fn admin_create_object(State(app): State<AppState>, kind: ObjectKind, body: Bytes) -> Response {
    let req: AdminCreateBody = match parse_json(&body, None) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let props = as_strings(&req.properties);
    let pairs: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let Some(id) = app.hub.create(kind, &pairs) else {
        return bad_request("invalid property values", None);
    };
    for (to, ids) in &req.associations {
        let Some(to) = ObjectKind::parse(to) else { continue };
        for to_id in ids {
            app.hub.associate(kind, &id, to, to_id);
        }
    }
    match app.hub.object(kind, &id) {
        Some(v) => (StatusCode::CREATED, Json(v)).into_response(),
        None => not_found(None),
    }
}

async fn admin_create(state: State<AppState>, body: Bytes) -> Response {
    admin_create_object(state, ObjectKind::Contacts, body).await
}

async fn admin_create_typed(state: State<AppState>, Path(t): Path<String>, body: Bytes) -> Response {
    match admin_kind(&t) {
        Ok(kind) => admin_create_object(state, kind, body).await,
        Err(resp) => resp,
    }
}

fn admin_get_object(app: &AppState, kind: ObjectKind, id: &str) -> Response {
    match app.hub.object(kind, id) {
        Some(v) => Json(v).into_response(),
        None => not_found(None),
    }
}

async fn admin_get(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    admin_get_object(&app, ObjectKind::Contacts, &id)
}

async fn admin_get_typed(State(app): State<AppState>, Path((t, id)): Path<(String, String)>) -> Response {
    match admin_kind(&t) {
        Ok(kind) => admin_get_object(&app, kind, &id),
        Err(resp) => resp,
    }
}

fn admin_edit_object(app: &AppState, kind: ObjectKind, id: &str, body: &Bytes) -> Response {
    let req: PropertiesBody = match parse_json(body, None) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let props = as_strings(&req.properties);
    let pairs: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    match app.hub.edit(kind, id, &pairs) {
        Some(v) => Json(v).into_response(),
        None => not_found(None),
    }
}

async fn admin_edit(State(app): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    admin_edit_object(&app, ObjectKind::Contacts, &id, &body)
}

async fn admin_edit_typed(
    State(app): State<AppState>,
    Path((t, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    match admin_kind(&t) {
        Ok(kind) => admin_edit_object(&app, kind, &id, &body),
        Err(resp) => resp,
    }
}

async fn admin_archive(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    if app.hub.archive_contact(&id) { StatusCode::NO_CONTENT.into_response() } else { not_found(None) }
}

async fn admin_archive_typed(State(app): State<AppState>, Path((t, id)): Path<(String, String)>) -> Response {
    match admin_kind(&t) {
        Ok(kind) if app.hub.archive(kind, &id) => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => not_found(None),
        Err(resp) => resp,
    }
}

async fn admin_restore_typed(State(app): State<AppState>, Path((t, id)): Path<(String, String)>) -> Response {
    match admin_kind(&t) {
        Ok(kind) if app.hub.restore(kind, &id) => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => not_found(None),
        Err(resp) => resp,
    }
}

#[derive(Deserialize)]
struct ClockBody {
    advance_secs: u64,
}

async fn admin_clock(State(app): State<AppState>, body: Bytes) -> Response {
    match parse_json::<ClockBody>(&body, None) {
        Ok(b) => {
            app.hub.advance_clock(Duration::from_secs(b.advance_secs));
            Json(json!({ "now": iso(app.hub.now_ms()) })).into_response()
        }
        Err(resp) => resp,
    }
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

#[derive(Deserialize, Default)]
struct IssueBody {
    ttl_secs: Option<u64>,
    /// The scopes the install granted (default: every one, [`super::ALL_SCOPES`]).
    scopes: Option<Vec<String>>,
}

/// `POST /_admin/tokens` `{"ttl_secs"?, "scopes"?}`: an OAuth token pair, as an install of the app.
async fn admin_issue_token(State(app): State<AppState>, body: Bytes) -> Response {
    let req = if body.is_empty() {
        IssueBody::default()
    } else {
        match parse_json::<IssueBody>(&body, None) {
            Ok(b) => b,
            Err(resp) => return resp,
        }
    };
    let ttl = req.ttl_secs.map(Duration::from_secs);
    let issued = match &req.scopes {
        Some(scopes) => app.hub.issue_token_with_scopes(ttl, scopes),
        None => app.hub.issue_token(ttl),
    };
    Json(issued).into_response()
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
