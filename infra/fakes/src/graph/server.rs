//! The fake's axum router: Graph v1.0 calendar and subscription routes, the identity platform's
//! token endpoint and `/_admin/`.

// Helpers return a ready `Response` as their error, which handlers return as is; boxing it only
// to shrink the `Result` would make every handler unbox it.
#![allow(clippy::result_large_err)]

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
use chrono::{DateTime, NaiveDateTime, NaiveTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::store::{Delta, Event, OWNER_EMAIL, OWNER_NAME, When, graph_instant, new_attendee};
use super::{
    DeltaPosition, EventEdit, FaultKind, GraphState, MAX_SUBSCRIPTION_MINUTES, NewEvent, Refusal, Route,
    Subscription, guid,
};

/// Graph caps `odata.maxpagesize` for messages and events.
const MAX_PAGE_SIZE: usize = 1000;

#[derive(Clone)]
struct AppState {
    graph: Arc<GraphState>,
    base_url: String,
}

impl axum::extract::FromRef<AppState> for Arc<GraphState> {
    fn from_ref(app: &AppState) -> Self {
        app.graph.clone()
    }
}

pub(crate) fn router(graph: Arc<GraphState>, base_url: String) -> Router {
    Router::new()
        // `delta` is an OData function: Graph answers the bare alias, the call form `delta()`
        // (what msgraph-sdk's URL templates send) and the namespaced `microsoft.graph.delta()`.
        .route("/v1.0/me/calendarView/delta", get(delta))
        .route("/v1.0/me/calendarView/delta()", get(delta))
        .route("/v1.0/me/calendarView/microsoft.graph.delta()", get(delta))
        .route("/v1.0/me/events", post(create_event))
        .route("/v1.0/me/events/{id}", get(get_event).patch(update_event).delete(delete_event))
        .route("/v1.0/subscriptions", post(create_subscription))
        .route(
            "/v1.0/subscriptions/{id}",
            get(get_subscription).patch(update_subscription).delete(delete_subscription),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize))
        .route("/v1.0/me", get(me))
        .route("/_admin/events", get(admin_list).post(admin_create))
        .route("/_admin/events/{id}", get(admin_get).patch(admin_edit).delete(admin_delete))
        .route("/_admin/events/{id}/move", post(admin_move))
        .route("/_admin/events/{id}/cancel", post(admin_cancel))
        .route("/_admin/sync-state/expire", post(admin_expire_sync_state))
        .route("/_admin/tokens", post(admin_issue_token))
        .route("/_admin/tokens/expire", post(admin_expire_token))
        .route("/_admin/subscriptions", get(admin_subscriptions))
        .route("/_admin/subscriptions/{id}/notify", post(admin_notify))
        .route("/_admin/subscriptions/{id}/lifecycle", post(admin_lifecycle))
        .merge(crate::admin::router::<AppState, Arc<GraphState>>())
        .with_state(AppState { graph, base_url })
}

/// Graph's error body (`{"error": {"code", "message", "innerError"}}`).
fn graph_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let request_id = guid();
    let body = json!({
        "error": {
            "code": code,
            "message": message.into(),
            "innerError": {
                "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                "request-id": request_id,
                "client-request-id": request_id,
            },
        }
    });
    (status, [("request-id", request_id)], Json(body)).into_response()
}

fn with_retry_after(mut resp: Response, secs: Option<u64>) -> Response {
    if let Some(secs) = secs {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn unauthorized(message: &str) -> Response {
    let mut resp = graph_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(
            "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
        ),
    );
    resp
}

/// 410 Gone when a delta or skip token's sync state is no longer kept: the client starts a new
/// round without a token (<https://learn.microsoft.com/graph/delta-query-overview#synchronization-reset>).
fn sync_state_gone(code: &str) -> Response {
    graph_error(
        StatusCode::GONE,
        code,
        "The sync state generation is not found or is invalid. Start a new sync with no delta token.",
    )
}

async fn apply_fault(graph: &GraphState, route: Route, uses_delta_token: bool) -> Option<Response> {
    match graph.count_and_take_fault(route, uses_delta_token)? {
        FaultKind::Delay { ms } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            None
        }
        FaultKind::RateLimit { retry_after_secs } => Some(with_retry_after(
            graph_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "The server is busy. Please try again later.",
            ),
            Some(retry_after_secs),
        )),
        FaultKind::ServiceUnavailable { retry_after_secs } => Some(with_retry_after(
            graph_error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "Service Unavailable"),
            retry_after_secs,
        )),
        FaultKind::GatewayTimeout { retry_after_secs } => Some(with_retry_after(
            graph_error(StatusCode::GATEWAY_TIMEOUT, "GatewayTimeout", "The gateway timed out."),
            retry_after_secs,
        )),
        FaultKind::ServerError => Some(graph_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "An internal server error occurred.",
        )),
        FaultKind::ExpiredToken => Some(unauthorized("Lifetime validation failed, the token is expired.")),
        FaultKind::MalformedJson => Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"@odata.context\":\"$metadata#Collection(event)\",\"value\":[{\"id\":\"AAMk",
            )
                .into_response(),
        ),
        FaultKind::SyncStateGone { code } => {
            Some(sync_state_gone(code.as_deref().unwrap_or("syncStateNotFound")))
        }
    }
}

/// Counts the request, applies faults and checks the bearer token.
async fn gate(
    app: &AppState,
    route: Route,
    headers: &HeaderMap,
    uses_delta_token: bool,
) -> Result<(), Response> {
    if let Some(resp) = apply_fault(&app.graph, route, uses_delta_token).await {
        return Err(resp);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    app.graph.admit(bearer).map_err(|refusal| match refusal {
        Refusal::Missing => unauthorized("Access token is empty."),
        Refusal::Invalid => unauthorized("IDX14100: JWT is not well formed."),
        Refusal::Expired => unauthorized("Lifetime validation failed, the token is expired."),
    })
}

fn bad_request(code: &str, message: impl Into<String>) -> Response {
    graph_error(StatusCode::BAD_REQUEST, code, message)
}

fn not_found() -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| bad_json(&e))
}

/// Graph's 400 for a body that is not the JSON expected.
pub(crate) fn bad_json(e: &serde_json::Error) -> Response {
    bad_request("BadRequest", format!("Unable to read JSON request payload: {e}"))
}

/// `odata.maxpagesize=N` from `Prefer` (other preferences ignored).
fn max_page_size(headers: &HeaderMap) -> Option<usize> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.trim().strip_prefix("odata.maxpagesize="))
        .find_map(|n| n.trim().parse().ok())
}

fn parse_instant(s: &str) -> Option<NaiveDateTime> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.naive_utc());
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok()
}

fn odata_json(body: Value, page_size: Option<usize>) -> Response {
    let mut resp = (StatusCode::OK, Json(body)).into_response();
    if let Some(n) = page_size
        && let Ok(v) = HeaderValue::from_str(&format!("odata.maxpagesize={n}"))
    {
        resp.headers_mut().insert("preference-applied", v);
    }
    resp
}

async fn delta(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let delta_token = params.get("$deltatoken");
    if let Err(resp) = gate(&app, Route::Delta, &headers, delta_token.is_some()).await {
        return resp;
    }
    let preferred = max_page_size(&headers);
    let page_size = preferred.unwrap_or(app.graph.config.default_page_size).clamp(1, MAX_PAGE_SIZE);
    let generation = app.graph.lock().generation;
    let token = delta_token.or_else(|| params.get("$skiptoken"));
    let position = match token {
        Some(t) => match DeltaPosition::decode(t) {
            Some(p) if p.g == generation => p,
            Some(_) => return sync_state_gone("syncStateNotFound"),
            None => return bad_request("ErrorInvalidUrlQuery", "The delta or skip token is not valid."),
        },
        None => {
            let (Some(s), Some(e)) = (params.get("startDateTime"), params.get("endDateTime")) else {
                return bad_request(
                    "ErrorInvalidParameter",
                    "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.",
                );
            };
            let (Some(s), Some(e)) = (parse_instant(s), parse_instant(e)) else {
                return bad_request(
                    "ErrorInvalidParameter",
                    "StartDateTime or EndDateTime is not a valid date.",
                );
            };
            if e <= s {
                return bad_request("ErrorInvalidParameter", "EndDateTime must be after StartDateTime.");
            }
            let (s, e) = (s.and_utc().timestamp(), e.and_utc().timestamp());
            DeltaPosition { s, e, since: 0, upto: None, after: None, g: generation }
        }
    };
    let Some(window) = position.window() else {
        return bad_request("ErrorInvalidUrlQuery", "The delta or skip token is not valid.");
    };
    let inner = app.graph.lock();
    let upto = position.upto.unwrap_or(inner.store.seq);
    let mut page = inner.store.delta(window, position.since, upto, position.after.as_deref(), page_size);
    let more = page.len() > page_size;
    page.truncate(page_size);
    let last_id = page.last().map(|d| match d {
        Delta::Changed(e) => e.id.clone(),
        Delta::Removed(id) => (*id).to_owned(),
    });
    let value: Vec<Value> = page
        .iter()
        .map(|d| match d {
            Delta::Changed(e) => inner.store.render(e, &app.base_url),
            Delta::Removed(id) => json!({
                "@odata.type": "#microsoft.graph.event",
                "id": id,
                "@removed": { "reason": "deleted" },
            }),
        })
        .collect();
    drop(inner);
    let link = format!("{}/v1.0/me/calendarView/delta", app.base_url);
    let mut body = json!({
        "@odata.context": format!("{}/v1.0/$metadata#Collection(event)", app.base_url),
        "value": value,
    });
    if more {
        let next = DeltaPosition { upto: Some(upto), after: last_id, ..position };
        body["@odata.nextLink"] = json!(format!("{link}?$skiptoken={}", next.encode()));
    } else {
        let done = DeltaPosition { since: upto, upto: None, after: None, ..position };
        body["@odata.deltaLink"] = json!(format!("{link}?$deltatoken={}", done.encode()));
    }
    odata_json(body, preferred.map(|_| page_size))
}

async fn get_event(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(resp) = gate(&app, Route::GetEvent, &headers, false).await {
        return resp;
    }
    let inner = app.graph.lock();
    match inner.store.live(&id) {
        Some(e) => {
            let mut v = inner.store.render(e, &app.base_url);
            v["@odata.context"] =
                json!(format!("{}/v1.0/$metadata#users('{}')/events/$entity", app.base_url, OWNER_EMAIL));
            (StatusCode::OK, Json(v)).into_response()
        }
        None => not_found(),
    }
}

#[derive(Debug, Deserialize)]
struct DateTimeTimeZone {
    #[serde(rename = "dateTime")]
    date_time: String,
    #[serde(rename = "timeZone")]
    time_zone: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ItemBody {
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Location {
    #[serde(rename = "displayName")]
    display_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EmailAddress {
    address: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AttendeeInput {
    #[serde(rename = "emailAddress")]
    email_address: Option<EmailAddress>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// The writable part of an event (POST and PATCH bodies).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventInput {
    subject: Option<String>,
    body: Option<ItemBody>,
    start: Option<DateTimeTimeZone>,
    end: Option<DateTimeTimeZone>,
    is_all_day: Option<bool>,
    location: Option<Location>,
    attendees: Option<Vec<AttendeeInput>>,
    show_as: Option<String>,
    transaction_id: Option<String>,
}

const UTC_NAMES: &[&str] =
    &["utc", "etc/utc", "gmt", "etc/gmt", "coordinated universal time", "tzone://microsoft/utc"];

fn parse_time(t: &DateTimeTimeZone) -> Result<NaiveDateTime, Response> {
    let zone = t.time_zone.as_deref().unwrap_or("UTC").trim().to_ascii_lowercase();
    if !UTC_NAMES.contains(&zone.as_str()) {
        return Err(bad_request(
            "TimeZoneNotSupportedException",
            format!(
                "A valid TimeZone value must be specified. The following TimeZone value is not supported by this fake: '{zone}'."
            ),
        ));
    }
    NaiveDateTime::parse_from_str(t.date_time.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f").map_err(|_| {
        bad_request(
            "ErrorInvalidRequest",
            format!("Cannot convert the literal '{}' to a DateTime.", t.date_time),
        )
    })
}

const SHOW_AS: &[&str] = &["unknown", "free", "tentative", "busy", "oof", "workingElsewhere"];

/// Applies `input` onto `event`, validating times like Outlook does.
fn apply_input(event: &mut Event, input: EventInput) -> Result<(), Response> {
    if let Some(s) = input.subject {
        event.subject = s;
    }
    if let Some(b) = input.body {
        event.body = b.content.unwrap_or_default();
    }
    if let Some(l) = input.location {
        event.location = l.display_name.unwrap_or_default();
    }
    if let Some(s) = input.show_as {
        if !SHOW_AS.contains(&s.as_str()) {
            return Err(bad_request("BadRequest", format!("Invalid value '{s}' for showAs.")));
        }
        event.show_as = s;
    }
    if let Some(attendees) = input.attendees {
        event.attendees = attendees
            .into_iter()
            .filter_map(|a| {
                let email = a.email_address?;
                let address = email.address?;
                let mut att = new_attendee(email.name.as_deref().unwrap_or(&address), &address);
                if let Some(k) = a.kind {
                    att.kind = k;
                }
                Some(att)
            })
            .collect();
    }
    let (cur_start, cur_end) = event.when.span();
    let start = input.start.as_ref().map(parse_time).transpose()?.unwrap_or(cur_start);
    let end = input.end.as_ref().map(parse_time).transpose()?.unwrap_or(cur_end);
    let all_day = input.is_all_day.unwrap_or(matches!(event.when, When::AllDay { .. }));
    if end < start {
        return Err(bad_request("ErrorInvalidRequest", "The end time must be after the start time."));
    }
    event.when = if all_day {
        if start.time() != NaiveTime::MIN || end.time() != NaiveTime::MIN || end == start {
            return Err(bad_request(
                "ErrorPropertyValidationFailure",
                "The start and end of an all-day event must be midnight, at least a day apart.",
            ));
        }
        When::AllDay { start: start.date(), end: end.date() }
    } else {
        When::Timed { start, end }
    };
    Ok(())
}

async fn create_event(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(resp) = gate(&app, Route::CreateEvent, &headers, false).await {
        return resp;
    }
    let input: EventInput = match parse_json(&body) {
        Ok(i) => i,
        Err(resp) => return resp,
    };
    if input.start.is_none() || input.end.is_none() {
        return bad_request("ErrorInvalidRequest", "The event must have a start and an end.");
    }
    let now = Utc::now();
    let mut inner = app.graph.lock();
    if let Some(existing) = input.transaction_id.as_deref().and_then(|t| inner.store.by_transaction(t)) {
        let v = inner.store.render(existing, &app.base_url);
        return (StatusCode::CREATED, Json(v)).into_response();
    }
    let mut event = Event {
        id: String::new(),
        subject: String::new(),
        body: String::new(),
        when: When::Timed { start: now.naive_utc(), end: now.naive_utc() },
        location: String::new(),
        show_as: "busy".into(),
        response: "organizer".into(),
        organizer: (OWNER_NAME.into(), OWNER_EMAIL.into()),
        attendees: Vec::new(),
        is_cancelled: false,
        transaction_id: input.transaction_id.clone(),
        created: now,
        modified: now,
        version: 0,
        seq: 0,
        deleted: false,
    };
    if let Err(resp) = apply_input(&mut event, input) {
        return resp;
    }
    let id = inner.store.insert(event, now);
    match inner.store.live(&id) {
        Some(e) => (StatusCode::CREATED, Json(inner.store.render(e, &app.base_url))).into_response(),
        None => not_found(),
    }
}

/// `If-Match` against the event's `@odata.etag` (weak or strong form, or the bare change key).
fn precondition_failed(headers: &HeaderMap, event: &Event) -> bool {
    let Some(tag) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(str::trim) else {
        return false;
    };
    if tag == "*" {
        return false;
    }
    let bare = tag.trim_start_matches("W/").trim_matches('"');
    bare != event.change_key()
}

/// 412 `ErrorIrresolvableConflict` when `If-Match` names another change key than the event's
/// (<https://learn.microsoft.com/graph/errors#http-status-codes>: "412 Precondition Failed ... such
/// as an if-match header").
fn conflict() -> Response {
    graph_error(
        StatusCode::PRECONDITION_FAILED,
        "ErrorIrresolvableConflict",
        "The send or update operation could not be performed because the change key passed in the request does not match the current change key for the item.",
    )
}

async fn update_event(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(resp) = gate(&app, Route::UpdateEvent, &headers, false).await {
        return resp;
    }
    let input: EventInput = match parse_json(&body) {
        Ok(i) => i,
        Err(resp) => return resp,
    };
    let mut inner = app.graph.lock();
    let Some(current) = inner.store.live(&id) else {
        return not_found();
    };
    if precondition_failed(&headers, current) {
        return conflict();
    }
    let mut edited = current.clone();
    if let Err(resp) = apply_input(&mut edited, input) {
        return resp;
    }
    let now = Utc::now();
    let changed =
        inner.store.change(&id, now, move |e| *e = Event { seq: e.seq, version: e.version, ..edited });
    match changed.is_some().then(|| inner.store.live(&id)).flatten() {
        Some(e) => (StatusCode::OK, Json(inner.store.render(e, &app.base_url))).into_response(),
        None => not_found(),
    }
}

async fn delete_event(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(resp) = gate(&app, Route::DeleteEvent, &headers, false).await {
        return resp;
    }
    let mut inner = app.graph.lock();
    let Some(current) = inner.store.live(&id) else {
        return not_found();
    };
    if precondition_failed(&headers, current) {
        return conflict();
    }
    inner.store.delete(&id, Utc::now());
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionInput {
    change_type: Option<String>,
    notification_url: Option<String>,
    lifecycle_notification_url: Option<String>,
    resource: Option<String>,
    expiration_date_time: Option<String>,
    client_state: Option<String>,
}

const RESOURCES: &[&str] = &["me/events", "/me/events", "me/calendar/events", "/me/calendar/events"];

fn render_subscription(app: &AppState, s: &Subscription) -> Value {
    json!({
        "@odata.context": format!("{}/v1.0/$metadata#subscriptions/$entity", app.base_url),
        "id": s.id,
        "resource": s.resource,
        "applicationId": app.graph.config.client_id,
        "changeType": s.change_type,
        "clientState": s.client_state,
        "notificationUrl": s.notification_url,
        "notificationQueryOptions": null,
        "lifecycleNotificationUrl": s.lifecycle_notification_url,
        "expirationDateTime": graph_instant(s.expiration_date_time),
        "creatorId": super::USER_ID,
        "includeResourceData": null,
        "latestSupportedTlsVersion": "v1_2",
        "encryptionCertificate": null,
        "encryptionCertificateId": null,
        "notificationUrlAppId": null,
    })
}

fn parse_expiration(raw: Option<&str>) -> Result<DateTime<Utc>, Response> {
    let Some(raw) = raw else {
        return Err(bad_request(
            "InvalidRequest",
            "expirationDateTime is a required property for subscription creation.",
        ));
    };
    let at = DateTime::parse_from_rfc3339(raw)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| bad_request("InvalidRequest", format!("Invalid expirationDateTime '{raw}'.")))?;
    let now = Utc::now();
    if at <= now {
        return Err(bad_request("InvalidRequest", "Subscription expiration must be in the future."));
    }
    // Outlook resources (events) allow at most 4230 minutes
    // (<https://learn.microsoft.com/graph/api/resources/subscription#subscription-lifetime>).
    if at > now + chrono::Duration::minutes(MAX_SUBSCRIPTION_MINUTES) {
        return Err(bad_request(
            "InvalidRequest",
            format!("Subscription expiration can only be {MAX_SUBSCRIPTION_MINUTES} minutes in the future."),
        ));
    }
    Ok(at)
}

async fn create_subscription(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(resp) = gate(&app, Route::CreateSubscription, &headers, false).await {
        return resp;
    }
    let input: SubscriptionInput = match parse_json(&body) {
        Ok(i) => i,
        Err(resp) => return resp,
    };
    let resource = input.resource.unwrap_or_default();
    if !RESOURCES.contains(&resource.as_str()) {
        return bad_request(
            "InvalidRequest",
            format!("Resource '{resource}' is not supported by this fake."),
        );
    }
    let change_type = input.change_type.unwrap_or_default();
    if change_type.is_empty()
        || !change_type.split(',').all(|c| ["created", "updated", "deleted"].contains(&c.trim()))
    {
        return bad_request("InvalidRequest", format!("Invalid changeType '{change_type}'."));
    }
    let Some(notification_url) = input.notification_url.filter(|u| u.starts_with("http")) else {
        return bad_request("InvalidRequest", "notificationUrl must be an absolute URL.");
    };
    if input.client_state.as_ref().is_some_and(|c| c.len() > 128) {
        return bad_request("InvalidRequest", "clientState must be at most 128 characters.");
    }
    let expiration = match parse_expiration(input.expiration_date_time.as_deref()) {
        Ok(at) => at,
        Err(resp) => return resp,
    };
    let mut urls = vec![notification_url.clone()];
    urls.extend(input.lifecycle_notification_url.clone());
    for url in &urls {
        if let Err(message) = app.graph.validate_endpoint(url).await {
            return bad_request("ValidationError", message);
        }
    }
    let sub = Subscription {
        id: guid(),
        resource,
        change_type,
        notification_url,
        lifecycle_notification_url: input.lifecycle_notification_url,
        client_state: input.client_state,
        expiration_date_time: expiration,
    };
    app.graph.lock().subscriptions.insert(sub.id.clone(), sub.clone());
    (StatusCode::CREATED, Json(render_subscription(&app, &sub))).into_response()
}

async fn get_subscription(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(resp) = gate(&app, Route::UpdateSubscription, &headers, false).await {
        return resp;
    }
    match app.graph.subscription(&id) {
        Some(s) => Json(render_subscription(&app, &s)).into_response(),
        None => {
            graph_error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("The object was not found: {id}"))
        }
    }
}

async fn update_subscription(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(resp) = gate(&app, Route::UpdateSubscription, &headers, false).await {
        return resp;
    }
    let input: SubscriptionInput = match parse_json(&body) {
        Ok(i) => i,
        Err(resp) => return resp,
    };
    let expiration = match parse_expiration(input.expiration_date_time.as_deref()) {
        Ok(at) => at,
        Err(resp) => return resp,
    };
    let mut inner = app.graph.lock();
    let Some(sub) = inner.subscriptions.get_mut(&id) else {
        drop(inner);
        return graph_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!("The object was not found: {id}"),
        );
    };
    sub.expiration_date_time = expiration;
    let sub = sub.clone();
    drop(inner);
    Json(render_subscription(&app, &sub)).into_response()
}

async fn delete_subscription(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(resp) = gate(&app, Route::DeleteSubscription, &headers, false).await {
        return resp;
    }
    match app.graph.lock().subscriptions.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => {
            graph_error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("The object was not found: {id}"))
        }
    }
}

/// The identity platform's error body.
fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}", guid(), guid(), Utc::now().format("%Y-%m-%d %H:%M:%SZ")),
        "error_codes": [code],
        "timestamp": Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
        "trace_id": guid(),
        "correlation_id": guid(),
    });
    (status, Json(body)).into_response()
}

async fn token(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    if let Some(resp) = apply_fault(&app.graph, Route::Token, false).await {
        return resp;
    }
    let Ok(Form(form)) = form else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    };
    if !(["common", "organizations", super::TENANT_ID].contains(&tenant.as_str()) || tenant.contains('.')) {
        return aad_error(StatusCode::BAD_REQUEST, "invalid_request", 90002, "Tenant not found.");
    }
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let config = app.graph.config();
    if field("grant_type") == "authorization_code" {
        if field("client_id") != config.client_id || field("client_secret") != config.client_secret {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                "Invalid client secret provided.",
            );
        }
        let verifier = form.get("code_verifier").map(String::as_str);
        if app.graph.oauth.redeem(field("code"), field("client_id"), field("redirect_uri"), verifier).is_err()
        {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired or been revoked.",
            );
        }
        let t = app.graph.issue_token(None);
        return Json(json!({
            "token_type": "Bearer",
            "scope": "https://graph.microsoft.com/Calendars.ReadWrite https://graph.microsoft.com/User.Read",
            "expires_in": t.expires_in,
            "ext_expires_in": t.expires_in,
            "access_token": t.access_token,
            "refresh_token": t.refresh_token,
        }))
        .into_response();
    }
    if field("grant_type") != "refresh_token" {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if field("client_id") != config.client_id {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            "Application was not found in the directory.",
        );
    }
    if field("client_secret") != config.client_secret {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided.",
        );
    }
    match app.graph.redeem(field("refresh_token")) {
        Some(t) => Json(json!({
            "token_type": "Bearer",
            "scope": "https://graph.microsoft.com/Calendars.ReadWrite https://graph.microsoft.com/User.Read",
            "expires_in": t.expires_in,
            "ext_expires_in": t.expires_in,
            "access_token": t.access_token,
            "refresh_token": t.refresh_token,
        }))
        .into_response(),
        None => aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            70000,
            "The provided value for the 'refresh_token' is not valid.",
        ),
    }
}

/// The identity platform's authorize endpoint: consents at once (or declines, see `/_admin/oauth`).
async fn authorize(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
    Query(params): Query<crate::oauth::AuthorizeParams>,
) -> Response {
    if let Some(resp) = apply_fault(&app.graph, Route::Authorize, false).await {
        return resp;
    }
    app.graph.oauth.consent(&headers, &params, &app.graph.config().client_id, "Microsoft")
}

/// `GET /v1.0/me`: the signed-in user.
async fn me(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(resp) = gate(&app, Route::Me, &headers, false).await {
        return resp;
    }
    // Graph's default property set for a user
    // (<https://learn.microsoft.com/graph/api/user-get#response-1>), unset ones as null.
    let (given, surname) = super::store::OWNER_NAME.split_once(' ').unwrap_or((super::store::OWNER_NAME, ""));
    Json(json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
        "businessPhones": [],
        "displayName": super::store::OWNER_NAME,
        "givenName": given,
        "jobTitle": null,
        "mail": super::store::OWNER_EMAIL,
        "mobilePhone": null,
        "officeLocation": null,
        "preferredLanguage": "en-US",
        "surname": surname,
        "userPrincipalName": super::store::OWNER_EMAIL,
        "id": super::USER_ID,
    }))
    .into_response()
}

async fn admin_list(State(app): State<AppState>) -> Response {
    Json(json!({ "value": app.graph.events() })).into_response()
}

async fn admin_create(State(app): State<AppState>, body: Bytes) -> Response {
    let new: NewEvent = match parse_json(&body) {
        Ok(n) => n,
        Err(resp) => return resp,
    };
    let id = app.graph.create_event(new);
    match app.graph.event(&id) {
        Some(v) => (StatusCode::CREATED, Json(v)).into_response(),
        None => not_found(),
    }
}

async fn admin_get(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    match app.graph.event(&id) {
        Some(v) => Json(v).into_response(),
        None => not_found(),
    }
}

async fn admin_edit(State(app): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    let edit: EventEdit = match parse_json(&body) {
        Ok(e) => e,
        Err(resp) => return resp,
    };
    if !app.graph.edit_event(&id, edit) {
        return not_found();
    }
    admin_get(State(app), Path(id)).await
}

async fn admin_delete(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    if app.graph.delete_event(&id) { StatusCode::NO_CONTENT.into_response() } else { not_found() }
}

#[derive(Deserialize)]
struct MoveBody {
    minutes: i64,
}

async fn admin_move(State(app): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    let m: MoveBody = match parse_json(&body) {
        Ok(m) => m,
        Err(resp) => return resp,
    };
    if !app.graph.move_event(&id, chrono::Duration::minutes(m.minutes)) {
        return not_found();
    }
    admin_get(State(app), Path(id)).await
}

async fn admin_cancel(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    if !app.graph.cancel_event(&id) {
        return not_found();
    }
    admin_get(State(app), Path(id)).await
}

async fn admin_expire_sync_state(State(app): State<AppState>) -> StatusCode {
    app.graph.expire_sync_state();
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
        match parse_json::<IssueBody>(&body) {
            Ok(b) => b.ttl_secs.map(Duration::from_secs),
            Err(resp) => return resp,
        }
    };
    Json(app.graph.issue_token(ttl)).into_response()
}

#[derive(Deserialize)]
struct ExpireBody {
    access_token: String,
}

async fn admin_expire_token(State(app): State<AppState>, body: Bytes) -> Response {
    match parse_json::<ExpireBody>(&body) {
        Ok(b) if app.graph.expire_token(&b.access_token) => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => not_found(),
        Err(resp) => resp,
    }
}

async fn admin_subscriptions(State(app): State<AppState>) -> Response {
    Json(json!({ "value": app.graph.subscriptions() })).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NotifyBody {
    change_type: String,
    event_id: String,
}

async fn admin_notify(State(app): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    let b: NotifyBody = match parse_json(&body) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    match app.graph.notify_change(&id, &b.change_type, &b.event_id).await {
        Ok(status) => Json(json!({ "receiverStatus": status })).into_response(),
        Err(e) => bad_request("NotificationFailed", format!("{e:#}")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LifecycleBody {
    lifecycle_event: String,
}

async fn admin_lifecycle(State(app): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    let b: LifecycleBody = match parse_json(&body) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    match app.graph.notify_lifecycle(&id, &b.lifecycle_event).await {
        Ok(status) => Json(json!({ "receiverStatus": status })).into_response(),
        Err(e) => bad_request("NotificationFailed", format!("{e:#}")),
    }
}
