//! The fake's axum router: Calendar v3 events and channels routes under `/calendar/v3`, the OAuth
//! token endpoint `/token`, and `/_admin/`.

// Handlers return early with a ready `Response`; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::store::{
    ListFilter, OWNER, StoredEvent, decode_token, encode_token, rfc3339, time_range_ok, valid_event_id,
    writable_properties,
};
use super::{FaultKind, GoogleState, MAX_CHANNEL_TTL, Refusal, Route, calendar_resource_id};
use crate::channels::{NotifyBody, Watch};

const MAX_RESULTS_DEFAULT: usize = 250;
const MAX_RESULTS_CAP: usize = 2500;
/// Query parameters Google refuses together with `syncToken`
/// (<https://developers.google.com/calendar/api/v3/reference/events/list#syncToken>).
const NOT_WITH_SYNC_TOKEN: &[&str] = &[
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
];

type App = Arc<GoogleState>;

pub(crate) fn resource_uri() -> String {
    format!("https://www.googleapis.com/calendar/v3/calendars/{OWNER}/events?alt=json")
}

pub(crate) fn router(state: App) -> Router {
    let cal = "/calendar/v3/calendars/{calendar}/events";
    Router::new()
        .route(cal, get(list).post(insert))
        .route(&format!("{cal}/watch"), post(watch))
        .route(&format!("{cal}/{{id}}"), get(get_one).patch(patch).put(update).delete(delete))
        .route("/calendar/v3/channels/stop", post(stop))
        .route("/calendar/v3/calendars/{calendar}", get(get_calendar))
        .route("/_admin/events", post(admin_create))
        .route("/_admin/events/{id}", get(admin_get).patch(admin_edit))
        .route("/_admin/events/{id}/move", post(admin_move))
        .route("/_admin/events/{id}/cancel", post(admin_cancel))
        .route("/_admin/sync-tokens/invalidate", post(admin_invalidate))
        .route("/_admin/channels", get(admin_channels))
        .route("/_admin/channels/notify", post(admin_notify))
        .merge(crate::admin::router::<App, App>())
        .merge(crate::oauth::google_router::<App, App>())
        .with_state(state)
}

/// Google's JSON error body.
fn g_error(status: StatusCode, domain: &str, reason: &str, message: &str) -> Response {
    let body = json!({
        "error": {
            "errors": [{ "domain": domain, "reason": reason, "message": message }],
            "code": status.as_u16(),
            "message": message,
        }
    });
    (status, Json(body)).into_response()
}

pub(crate) fn bad_request(reason: &str, message: &str) -> Response {
    g_error(StatusCode::BAD_REQUEST, "global", reason, message)
}

pub(crate) fn not_found() -> Response {
    g_error(StatusCode::NOT_FOUND, "global", "notFound", "Not Found")
}

fn unauthenticated() -> Response {
    let body = json!({
        "error": {
            "code": 401,
            "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            "errors": [{
                "message": "Invalid Credentials",
                "domain": "global",
                "reason": "authError",
                "location": "Authorization",
                "locationType": "header",
            }],
            "status": "UNAUTHENTICATED",
        }
    });
    let mut resp = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\""),
    );
    resp
}

/// 410 `fullSyncRequired`: a sync token Google no longer honours; the client must list again
/// without it (<https://developers.google.com/calendar/api/guides/sync#full_sync_required_by_server>).
fn sync_gone() -> Response {
    g_error(
        StatusCode::GONE,
        "global",
        "fullSyncRequired",
        "Sync token is no longer valid, a full sync is required.",
    )
}

/// Answers an injected fault, or `None` to go on (after a delay fault's wait).
pub(crate) async fn apply_fault(app: &GoogleState, route: Route, sync_token: bool) -> Option<Response> {
    match app.count_and_take_fault(route, sync_token)? {
        FaultKind::Delay { ms } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            None
        }
        FaultKind::RateLimit { status, reason, retry_after_secs } => {
            let status =
                status.and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            let reason = reason.unwrap_or_else(|| "rateLimitExceeded".into());
            let message = if reason == "userRateLimitExceeded" {
                "User Rate Limit Exceeded"
            } else {
                "Rate Limit Exceeded"
            };
            let mut resp = g_error(status, "usageLimits", &reason, message);
            if let Some(secs) = retry_after_secs {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            Some(resp)
        }
        FaultKind::ServerError { status } => {
            let status = status
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(g_error(status, "global", "backendError", "Backend Error"))
        }
        FaultKind::ExpiredToken => Some(unauthenticated()),
        FaultKind::MalformedJson => Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"kind\": \"calendar#events\", \"items\": [{\"id\":",
            )
                .into_response(),
        ),
        FaultKind::SyncTokenGone => Some(sync_gone()),
    }
}

/// Counts the request, applies faults, checks the bearer token.
/// [`gate`], then the calendar in the path must be one the fake serves (404 otherwise).
async fn admit(
    app: &App,
    route: Route,
    headers: &HeaderMap,
    sync_token: bool,
    calendar: &str,
) -> Result<(), Response> {
    gate(app, route, headers, sync_token).await?;
    if known_calendar(calendar) { Ok(()) } else { Err(not_found()) }
}

async fn gate(app: &App, route: Route, headers: &HeaderMap, sync_token: bool) -> Result<(), Response> {
    if let Some(resp) = apply_fault(app, route, sync_token).await {
        return Err(resp);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    app.admit(bearer).map_err(|Refusal::Unauthenticated| unauthenticated())
}

fn known_calendar(calendar: &str) -> bool {
    calendar == "primary" || calendar.eq_ignore_ascii_case(OWNER)
}

fn parse_json(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|_| bad_request("parseError", "Parse Error"))
}

fn parse_bool(v: Option<&str>, name: &str) -> Result<bool, Response> {
    match v {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => {
            Err(bad_request("invalidParameter", &format!("Invalid boolean value for {name}: {other}")))
        }
    }
}

fn parse_time(v: Option<&str>) -> Result<Option<DateTime<Utc>>, Response> {
    match v {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| bad_request("badRequest", "Bad Request")),
    }
}

fn events_body(
    items: Vec<Value>,
    updated: DateTime<Utc>,
    next_page: Option<String>,
    next_sync: Option<String>,
) -> Value {
    let mut body = json!({
        "kind": "calendar#events",
        "etag": format!("\"p3{}\"", updated.timestamp_micros()),
        "summary": OWNER,
        "description": "",
        "updated": rfc3339(updated),
        "timeZone": "UTC",
        "accessRole": "owner",
        "defaultReminders": [{ "method": "popup", "minutes": 10 }],
        "items": items,
    });
    if let Some(p) = next_page {
        body["nextPageToken"] = json!(p);
    }
    if let Some(s) = next_sync {
        body["nextSyncToken"] = json!(s);
    }
    body
}

async fn list(
    State(app): State<App>,
    Path(calendar): Path<String>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let sync_token = param("syncToken");
    if let Err(resp) = gate(&app, Route::List, &headers, sync_token.is_some()).await {
        return resp;
    }
    if !known_calendar(&calendar) {
        return not_found();
    }
    let max = match param("maxResults").map(str::parse::<usize>) {
        None => MAX_RESULTS_DEFAULT,
        Some(Ok(n)) if n >= 1 => n.min(MAX_RESULTS_CAP),
        Some(_) => return bad_request("invalid", "Invalid value for: maxResults"),
    };
    let single_events = match parse_bool(param("singleEvents"), "singleEvents") {
        Ok(b) => b,
        Err(r) => return r,
    };
    let show_deleted = match parse_bool(param("showDeleted"), "showDeleted") {
        Ok(b) => b,
        Err(r) => return r,
    };
    if sync_token.is_some()
        && let Some(p) = NOT_WITH_SYNC_TOKEN.iter().find(|p| param(p).is_some())
    {
        return bad_request("invalid", &format!("Sync token cannot be used with the parameter {p}."));
    }
    if let Some(order) = param("orderBy") {
        match order {
            "updated" => {}
            "startTime" if single_events => {}
            "startTime" => {
                return bad_request(
                    "badRequest",
                    "The requested ordering is not available for the particular query.",
                );
            }
            _ => return bad_request("invalidParameter", "Invalid value for: orderBy"),
        }
    }
    let (time_min, time_max, updated_min) =
        match (parse_time(param("timeMin")), parse_time(param("timeMax")), parse_time(param("updatedMin"))) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
        };
    if let (Some(a), Some(b)) = (time_min, time_max)
        && b <= a
    {
        return bad_request("timeRangeEmpty", "The specified time range is empty.");
    }
    let page_token = param("pageToken");
    let mut store = app.inner.lock().unwrap_or_else(|p| p.into_inner());
    let store = &mut store.store;
    // Where the listing starts and which changes it covers.
    let incremental = match (page_token, sync_token) {
        (Some(p), _) => {
            if let Some(v) = decode_token("page", p).filter(|v| v.len() == 2) {
                Err((v[0], v[1] as usize))
            } else if let Some(v) = decode_token("ipage", p).filter(|v| v.len() == 3) {
                Ok((v[0], v[1], v[2] as usize))
            } else {
                return bad_request("invalid", "Invalid page token value.");
            }
        }
        (None, Some(s)) => match decode_token("sync", s).and_then(|v| v.first().copied()) {
            Some(from) if from >= store.min_sync_seq && from <= store.seq => Ok((from, store.seq, 0)),
            _ => return sync_gone(),
        },
        (None, None) => Err((store.seq, 0)),
    };
    let (matches, snapshot, offset, page_tag): (Vec<&StoredEvent>, u64, usize, Vec<u64>) = match incremental {
        Ok((from, snapshot, offset)) => {
            if from < store.min_sync_seq {
                return sync_gone();
            }
            (store.list_changes(from, snapshot, single_events), snapshot, offset, vec![from, snapshot])
        }
        Err((snapshot, offset)) => {
            let filter = ListFilter { single_events, show_deleted, time_min, time_max, updated_min };
            (store.list_full(&filter), snapshot, offset, vec![snapshot])
        }
    };
    let end = (offset + max).min(matches.len());
    let items: Vec<Value> = matches.get(offset..end).unwrap_or_default().iter().map(|e| e.render()).collect();
    let updated = matches.iter().map(|e| e.updated).max().unwrap_or_else(Utc::now);
    let (next_page, next_sync) = if end < matches.len() {
        let mut parts = page_tag.clone();
        parts.push(end as u64);
        let tag = if page_tag.len() == 2 { "ipage" } else { "page" };
        (Some(encode_token(tag, &parts)), None)
    } else {
        (None, Some(encode_token("sync", &[snapshot])))
    };
    Json(events_body(items, updated, next_page, next_sync)).into_response()
}

async fn get_one(
    State(app): State<App>,
    Path((calendar, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(resp) = admit(&app, Route::Get, &headers, false, &calendar).await {
        return resp;
    }
    match app.event(&id) {
        Some(v) => Json(v).into_response(),
        None => not_found(),
    }
}

async fn insert(
    State(app): State<App>,
    Path(calendar): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(resp) = admit(&app, Route::Insert, &headers, false, &calendar).await {
        return resp;
    }
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let props = match writable_properties(&body, true) {
        Ok(p) => p,
        Err(m) => return bad_request("required", &m),
    };
    let requested = match body.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if valid_event_id(id) => Some(id.clone()),
        Some(_) => return bad_request("invalid", "Invalid resource id value."),
    };
    if !time_range_ok(props.get("start"), props.get("end")) {
        return time_range_empty();
    }
    let now = Utc::now();
    let result = app.with_store(|store| {
        let id = requested.unwrap_or_else(|| store.fresh_id());
        store.insert(id, props, now).map(StoredEvent::render)
    });
    match result {
        Ok(v) => Json(v).into_response(),
        Err(_) => {
            g_error(StatusCode::CONFLICT, "global", "duplicate", "The requested identifier already exists.")
        }
    }
}

fn time_range_empty() -> Response {
    bad_request("timeRangeEmpty", "The specified time range is empty.")
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(|s| s.trim().to_owned())
}

/// 412 `conditionNotMet` when `If-Match` names another etag than the event's current one
/// (<https://developers.google.com/calendar/api/guides/version-resources>).
fn precondition_failed() -> Response {
    g_error(StatusCode::PRECONDITION_FAILED, "global", "conditionNotMet", "Precondition Failed")
}

async fn modify(
    app: App,
    route: Route,
    calendar: String,
    id: String,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(resp) = admit(&app, route, &headers, false, &calendar).await {
        return resp;
    }
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let full = route == Route::Update;
    let props = match writable_properties(&body, full) {
        Ok(p) => p,
        Err(m) => return bad_request("required", &m),
    };
    let expected = if_match(&headers);
    let now = Utc::now();
    let result = app.with_store(|store| {
        let current = store.get(&id).ok_or_else(not_found)?;
        if let Some(tag) = &expected
            && tag != "*"
            && *tag != current.etag()
        {
            return Err(precondition_failed());
        }
        let merged = |key: &str| match props.get(key) {
            Some(v) => Some(v),
            None if full => None,
            None => current.body.get(key),
        };
        if !time_range_ok(merged("start"), merged("end")) {
            return Err(time_range_empty());
        }
        store.modify(&id, props, full, now).map(StoredEvent::render).ok_or_else(not_found)
    });
    match result {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn patch(
    State(app): State<App>,
    Path((calendar, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    modify(app, Route::Patch, calendar, id, headers, body).await
}

async fn update(
    State(app): State<App>,
    Path((calendar, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    modify(app, Route::Update, calendar, id, headers, body).await
}

async fn delete(
    State(app): State<App>,
    Path((calendar, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(resp) = admit(&app, Route::Delete, &headers, false, &calendar).await {
        return resp;
    }
    let expected = if_match(&headers);
    let now = Utc::now();
    app.with_store(|store| {
        let Some(current) = store.get(&id) else { return not_found() };
        if let Some(tag) = &expected
            && tag != "*"
            && *tag != current.etag()
        {
            return precondition_failed();
        }
        if current.cancelled() {
            return g_error(StatusCode::GONE, "global", "deleted", "Resource has been deleted");
        }
        store.cancel(&id, now);
        StatusCode::NO_CONTENT.into_response()
    })
}

fn str_field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str).filter(|s| !s.is_empty())
}

async fn watch(
    State(app): State<App>,
    Path(calendar): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(resp) = admit(&app, Route::Watch, &headers, false, &calendar).await {
        return resp;
    }
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    // Without an expiration a channel lives as long as Google allows (about a week).
    let channel = match Watch::parse(&body, MAX_CHANNEL_TTL, MAX_CHANNEL_TTL)
        .map(|w| w.channel(calendar_resource_id(), resource_uri()))
        .and_then(|c| app.add_channel(c))
    {
        Ok(c) => c,
        Err(refusal) => return bad_request(refusal.reason, &refusal.message),
    };
    let state = app.clone();
    let channel_id = channel.id.clone();
    tokio::spawn(async move {
        state.notify("sync", Some(&channel_id)).await;
    });
    Json(channel.to_json()).into_response()
}

async fn stop(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(resp) = gate(&app, Route::Stop, &headers, false).await {
        return resp;
    }
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (Some(id), Some(resource_id)) = (str_field(&body, "id"), str_field(&body, "resourceId")) else {
        return bad_request("required", "Required: id and resourceId.");
    };
    if app.stop_channel(id, resource_id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        g_error(StatusCode::NOT_FOUND, "global", "notFound", &format!("Channel '{id}' not found for project"))
    }
}

/// `calendars.get`: the one calendar, whose id is its owner's address.
async fn get_calendar(State(app): State<App>, headers: HeaderMap, Path(calendar): Path<String>) -> Response {
    if let Err(resp) = gate(&app, Route::GetCalendar, &headers, false).await {
        return resp;
    }
    if !known_calendar(&calendar) {
        return not_found();
    }
    // A new account's primary calendar: its id and title are the owner's address, and Meet is
    // its conference solution.
    Json(json!({
        "kind": "calendar#calendar",
        "etag": "\"fake-calendar\"",
        "id": OWNER,
        "summary": OWNER,
        "timeZone": "UTC",
        "conferenceProperties": { "allowedConferenceSolutionTypes": ["hangoutsMeet"] },
    }))
    .into_response()
}

fn edit_reply(result: Result<Value, super::EditError>, created: bool) -> Response {
    match result {
        Ok(v) if created => (StatusCode::CREATED, Json(v)).into_response(),
        Ok(v) => Json(v).into_response(),
        Err(super::EditError::NotFound) => not_found(),
        Err(super::EditError::Invalid(m)) => bad_request("invalid", &m),
    }
}

async fn admin_create(State(app): State<App>, body: Bytes) -> Response {
    match parse_json(&body) {
        Ok(b) => edit_reply(app.create_event(b), true),
        Err(r) => r,
    }
}

async fn admin_get(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.event(&id) {
        Some(v) => Json(v).into_response(),
        None => not_found(),
    }
}

async fn admin_edit(State(app): State<App>, Path(id): Path<String>, body: Bytes) -> Response {
    match parse_json(&body) {
        Ok(b) => edit_reply(app.edit_event(&id, b), false),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct MoveBody {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

async fn admin_move(State(app): State<App>, Path(id): Path<String>, body: Bytes) -> Response {
    match serde_json::from_slice::<MoveBody>(&body) {
        Ok(b) => edit_reply(app.move_event(&id, b.start, b.end), false),
        Err(_) => bad_request("parseError", "expected {\"start\": RFC 3339, \"end\": RFC 3339}"),
    }
}

async fn admin_cancel(State(app): State<App>, Path(id): Path<String>) -> Response {
    edit_reply(app.cancel_event(&id), false)
}

async fn admin_invalidate(State(app): State<App>) -> StatusCode {
    app.invalidate_sync_tokens();
    StatusCode::NO_CONTENT
}

async fn admin_channels(State(app): State<App>) -> Response {
    Json(app.channels()).into_response()
}

async fn admin_notify(State(app): State<App>, body: Bytes) -> Response {
    let req = match NotifyBody::parse(&body) {
        Ok(b) => b,
        Err(e) => return bad_request("parseError", &e.to_string()),
    };
    let state = req.state.unwrap_or_else(|| "exists".into());
    Json(app.notify(&state, req.channel_id.as_deref()).await).into_response()
}
