//! The fake's axum router: `POST /graphql` and `/_admin/`.
//!
//! Every error body is Fireflies' (<https://docs.fireflies.ai/fundamentals/errors>): `errors[]`
//! with `message`, `code`, `friendly` and `extensions { code, status, helpUrls, metadata }`. The
//! answer's HTTP status is the first error's `extensions.status` (the docs call it the HTTP
//! status code); a query that fails GraphQL validation is a 400 with
//! `GRAPHQL_VALIDATION_FAILED`, and a bad key a 401 `auth_failed`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::schema::{self, FirefliesSchema};
use super::{FaultKind, FirefliesState, Gate, NewTranscript, WebhookTarget};

#[derive(Clone)]
struct App {
    state: Arc<FirefliesState>,
    schema: FirefliesSchema,
}

pub(crate) fn router(state: Arc<FirefliesState>) -> Router {
    let app = App { schema: schema::build(state.clone()), state };
    Router::new()
        .route("/graphql", post(graphql))
        .merge(crate::admin::router::<App, Arc<FirefliesState>>())
        .route("/_admin/rate-limits", post(admin_rate_limits))
        .route("/_admin/clock/advance", post(admin_advance))
        .route("/_admin/webhook", post(admin_webhook).delete(admin_no_webhook))
        .route("/_admin/transcripts", post(admin_add))
        .route("/_admin/seed", post(admin_seed))
        .route("/_admin/transcripts/{id}", delete(admin_delete))
        .route("/_admin/transcripts/{id}/complete", post(admin_complete))
        .route("/_admin/transcripts/{id}/action-items", put(admin_action_items))
        .with_state(app)
}

/// One error in Fireflies' shape, alone in the body, with its status as the HTTP status.
fn error(status: StatusCode, code: &str, message: &str, metadata: Option<Value>) -> Response {
    let mut extensions = json!({
        "code": code,
        "status": status.as_u16(),
        "helpUrls": [format!("https://docs.fireflies.ai/miscellaneous/error-codes#{code}")],
    });
    if let Some(m) = metadata {
        extensions["metadata"] = m;
    }
    let body = json!({ "data": null, "errors": [{
        "message": message, "code": code, "friendly": true, "extensions": extensions,
    }] });
    (status, Json(body)).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

async fn graphql(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    match app.state.admit(bearer(&headers)) {
        Ok(()) => {}
        // Not on the error-codes page; the code and status integrations observe for a missing or
        // wrong key.
        Err(Gate::Unauthorized) | Err(Gate::Fault(FaultKind::Unauthorized)) => {
            return error(StatusCode::UNAUTHORIZED, "auth_failed", "Invalid API key", None);
        }
        // <https://docs.fireflies.ai/miscellaneous/error-codes#too_many_requests>: the time to
        // come back is `extensions.metadata.retryAfter` (epoch milliseconds here).
        Err(Gate::RateLimited(until)) => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "Too many requests. Please retry after some time.",
                Some(json!({ "retryAfter": until.timestamp_millis() })),
            );
        }
        Err(Gate::Fault(FaultKind::RateLimit)) => {
            let until = app.state.now() + chrono::Duration::seconds(1);
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "Too many requests. Please retry after some time.",
                Some(json!({ "retryAfter": until.timestamp_millis() })),
            );
        }
        Err(Gate::Fault(FaultKind::ServerError { status })) => {
            let status = status.and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::BAD_GATEWAY);
            return (status, status.canonical_reason().unwrap_or("error")).into_response();
        }
    }
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("POST body is not a GraphQL request: {e}"),
                None,
            );
        }
    };
    let response = app.schema.execute(request).await;
    let mut body = match serde_json::to_value(&response) {
        Ok(v) => v,
        Err(_) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal_server_error", "Internal error", None);
        }
    };
    let status = shape_errors(&mut body);
    (status, Json(body)).into_response()
}

/// Gives each error Fireflies' top-level `code` and `friendly`; errors the resolvers did not
/// make (parse and validation) get `GRAPHQL_VALIDATION_FAILED` and 400. Returns the HTTP status:
/// the first error's, or 200.
fn shape_errors(body: &mut Value) -> StatusCode {
    let Some(errors) = body.get_mut("errors").and_then(Value::as_array_mut) else {
        return StatusCode::OK;
    };
    let mut first: Option<u16> = None;
    for e in errors.iter_mut() {
        if e.pointer("/extensions/code").is_none() {
            e["extensions"] = json!({ "code": "GRAPHQL_VALIDATION_FAILED", "status": 400 });
        }
        let code = e.pointer("/extensions/code").cloned().unwrap_or(Value::Null);
        let status = e.pointer("/extensions/status").and_then(Value::as_u64).unwrap_or(400) as u16;
        first.get_or_insert(status);
        e["code"] = code;
        e["friendly"] = json!(true);
    }
    if body.get("data").is_none() {
        body["data"] = Value::Null;
    }
    first.and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK)
}

impl axum::extract::FromRef<App> for Arc<FirefliesState> {
    fn from_ref(app: &App) -> Self {
        app.state.clone()
    }
}

#[derive(Deserialize)]
struct RateLimits {
    enabled: bool,
    /// Requests a window (default 60, Business).
    #[serde(default)]
    limit: Option<u32>,
    /// Window length in seconds (default 60; 86400 plays Free and Pro's 50 a day).
    #[serde(default)]
    window_secs: Option<i64>,
}

async fn admin_rate_limits(State(app): State<App>, Json(r): Json<RateLimits>) -> StatusCode {
    app.state.set_rate_limit(r.enabled.then(|| {
        (r.limit.unwrap_or(super::PER_MINUTE), chrono::Duration::seconds(r.window_secs.unwrap_or(60).max(1)))
    }));
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Advance {
    seconds: i64,
}

async fn admin_advance(State(app): State<App>, Json(a): Json<Advance>) -> StatusCode {
    app.state.advance_clock(chrono::Duration::seconds(a.seconds));
    StatusCode::NO_CONTENT
}

async fn admin_webhook(State(app): State<App>, Json(t): Json<WebhookTarget>) -> StatusCode {
    app.state.set_webhook(Some(t));
    StatusCode::NO_CONTENT
}

async fn admin_no_webhook(State(app): State<App>) -> StatusCode {
    app.state.set_webhook(None);
    StatusCode::NO_CONTENT
}

async fn admin_add(State(app): State<App>, Json(new): Json<NewTranscript>) -> Response {
    let id = app.state.add(new);
    (StatusCode::CREATED, Json(json!({ "id": id }))).into_response()
}

#[derive(Deserialize)]
struct Seed {
    count: usize,
}

async fn admin_seed(State(app): State<App>, Json(s): Json<Seed>) -> Response {
    Json(json!({ "ids": app.state.seed(s.count) })).into_response()
}

async fn admin_delete(State(app): State<App>, Path(id): Path<String>) -> StatusCode {
    if app.state.delete(&id) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
}

/// Finishes processing and, when a webhook URL is saved, sends its signed notification.
async fn admin_complete(State(app): State<App>, Path(id): Path<String>) -> Response {
    if !app.state.complete(&id) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let webhook = match app.state.send_webhook(&id, None).await {
        Ok(status) => json!(status),
        Err(_) => Value::Null,
    };
    Json(json!({ "id": id, "webhook_status": webhook })).into_response()
}

#[derive(Deserialize)]
struct ActionItems {
    action_items: Option<String>,
}

async fn admin_action_items(
    State(app): State<App>,
    Path(id): Path<String>,
    Json(a): Json<ActionItems>,
) -> StatusCode {
    if app.state.set_action_items(&id, a.action_items) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}
