//! The fake's axum router: Notion's `/v1` routes (2025-09-03) and `/_admin/`.

// Handlers return early with a ready `Response`; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::store::{Listing, StoreError, parse_id};
use super::{API_VERSION, FaultKind, Gate, NotionState, Route};

type App = Arc<NotionState>;

pub(crate) fn router(state: App) -> Router {
    Router::new()
        .route("/v1/databases", post(create_database))
        .route("/v1/databases/{id}", get(get_database))
        .route("/v1/data_sources/{id}", get(get_data_source).patch(update_data_source))
        .route("/v1/data_sources/{id}/query", post(query))
        .route("/v1/pages", post(create_page))
        .route("/v1/pages/{id}", get(get_page).patch(update_page))
        .route("/v1/blocks/{id}/children", patch(append).get(list_children))
        .route("/v1/users/me", get(me))
        .route("/_admin/rate-limits", post(admin_rate_limits))
        .route("/_admin/clock/advance", post(admin_advance))
        .route("/_admin/workspace", get(admin_workspace))
        .route("/_admin/crm", post(admin_seed_crm))
        .route("/_admin/pages/{id}", get(admin_page).patch(admin_edit))
        .route("/_admin/pages/{id}/trash", post(admin_trash))
        .merge(crate::admin::router::<App, App>())
        .fallback(|| async { error(StatusCode::BAD_REQUEST, "invalid_request_url", "Invalid request URL.") })
        .layer(axum::middleware::map_response_with_state(state.clone(), workspace_date))
        .with_state(state)
}

/// The `Date` header from the workspace clock (which tests can move), so clients that read
/// Notion's time from it see the same clock as the stamps.
async fn workspace_date(State(app): State<App>, mut resp: Response) -> Response {
    let date = app.now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    if let Ok(v) = HeaderValue::from_str(&date) {
        resp.headers_mut().insert(header::DATE, v);
    }
    resp
}

/// Notion's error body (<https://developers.notion.com/reference/status-codes>).
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({
        "object": "error",
        "status": status.as_u16(),
        "code": code,
        "message": message,
        "request_id": super::store::new_id(),
    });
    (status, Json(body)).into_response()
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::Invalid(i) => error(StatusCode::BAD_REQUEST, "validation_error", &i.0),
        StoreError::Missing(m) => error(StatusCode::NOT_FOUND, "object_not_found", &m.0),
    }
}

fn rate_limited(secs: u64) -> Response {
    let mut resp = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "You have been rate limited. Please try again in a few minutes.",
    );
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

fn apply_fault(kind: FaultKind) -> Response {
    match kind {
        FaultKind::RateLimit { retry_after_secs } => rate_limited(retry_after_secs.unwrap_or(1)),
        FaultKind::ServerError { status } => {
            let status = status
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = match status.as_u16() {
                502 => "bad_gateway",
                503 => "service_unavailable",
                504 => "gateway_timeout",
                _ => "internal_server_error",
            };
            error(status, code, "Unexpected error occurred.")
        }
        FaultKind::Conflict => {
            error(StatusCode::CONFLICT, "conflict_error", "Conflict occurred while saving. Please try again.")
        }
        FaultKind::Unauthorized => error(StatusCode::UNAUTHORIZED, "unauthorized", "API token is invalid."),
    }
}

/// Counts the request, applies faults, then checks `Notion-Version`, the bearer token and the
/// rate limit, in the order Notion does.
fn gate(app: &App, route: Route, headers: &HeaderMap) -> Result<(), Response> {
    if let Some(kind) = app.count_and_take_fault(route) {
        return Err(apply_fault(kind));
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match app.admit(bearer) {
        Err(Gate::Unauthorized) => {
            return Err(error(StatusCode::UNAUTHORIZED, "unauthorized", "API token is invalid."));
        }
        Err(Gate::RateLimited(secs)) => return Err(rate_limited(secs)),
        Ok(()) => {}
    }
    // <https://developers.notion.com/reference/versioning>: the header is required.
    match headers.get("notion-version").and_then(|v| v.to_str().ok()) {
        None => Err(error(
            StatusCode::BAD_REQUEST,
            "missing_version",
            "Notion-Version header failed validation: Notion-Version header should be defined, instead was `undefined`.",
        )),
        Some(API_VERSION) => Ok(()),
        Some(other) => Err(error(
            StatusCode::BAD_REQUEST,
            "validation_error",
            &format!(
                "Notion-Version header failed validation: this fake serves `{API_VERSION}` only, instead was `{other}`."
            ),
        )),
    }
}

fn parse_body(body: &Bytes) -> Result<Value, Response> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "invalid_json", "Error parsing JSON body."))
}

fn path_id(raw: &str, what: &str) -> Result<String, Response> {
    parse_id(raw).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "validation_error",
            &format!(
                "path failed validation: path.{what}_id should be a valid uuid, instead was `\"{raw}\"`."
            ),
        )
    })
}

fn ok(v: Result<Value, StoreError>) -> Response {
    match v {
        Ok(v) => Json(v).into_response(),
        Err(e) => store_error(e),
    }
}

async fn create_database(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = gate(&app, Route::CreateDatabase, &headers) {
        return r;
    }
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    ok(app.with_store(|s, now| s.create_database(&body, now).and_then(|id| s.render_database(&id))))
}

async fn get_database(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = gate(&app, Route::GetDatabase, &headers) {
        return r;
    }
    let id = match path_id(&id, "database") {
        Ok(id) => id,
        Err(r) => return r,
    };
    ok(app.with_store(|s, _| s.render_database(&id)))
}

async fn get_data_source(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = gate(&app, Route::GetDataSource, &headers) {
        return r;
    }
    let id = match path_id(&id, "data_source") {
        Ok(id) => id,
        Err(r) => return r,
    };
    ok(app.with_store(|s, _| s.render_data_source(&id)))
}

async fn update_data_source(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&app, Route::UpdateDataSource, &headers) {
        return r;
    }
    let (id, body) = match (path_id(&id, "data_source"), parse_body(&body)) {
        (Ok(id), Ok(b)) => (id, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    ok(app
        .with_store(|s, now| s.update_data_source(&id, &body, now).and_then(|()| s.render_data_source(&id))))
}

fn list_body(results: Vec<Value>, next_cursor: Option<String>, kind: &str) -> Value {
    let mut v = json!({
        "object": "list",
        "results": results,
        "next_cursor": next_cursor,
        "has_more": next_cursor.is_some(),
        "type": kind,
    });
    v[kind] = json!({});
    v
}

async fn query(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    if let Err(r) = gate(&app, Route::Query, &headers) {
        return r;
    }
    let (id, body) = match (path_id(&id, "data_source"), parse_body(&body)) {
        (Ok(id), Ok(b)) => (id, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let listed = app.with_store(|s, _| {
        s.query(&id, &body).map(|Listing { results, next_cursor }| {
            let pages = results.iter().filter_map(|p| s.render_page(p).ok()).collect();
            list_body(pages, next_cursor, "page_or_data_source")
        })
    });
    ok(listed)
}

async fn create_page(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = gate(&app, Route::CreatePage, &headers) {
        return r;
    }
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let bot = app.bot_id.clone();
    ok(app.with_store(|s, now| s.create_page(&body, &bot, now).and_then(|id| s.render_page(&id))))
}

async fn get_page(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = gate(&app, Route::GetPage, &headers) {
        return r;
    }
    let id = match path_id(&id, "page") {
        Ok(id) => id,
        Err(r) => return r,
    };
    ok(app.with_store(|s, _| s.render_page(&id)))
}

async fn update_page(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&app, Route::UpdatePage, &headers) {
        return r;
    }
    let (id, body) = match (path_id(&id, "page"), parse_body(&body)) {
        (Ok(id), Ok(b)) => (id, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let bot = app.bot_id.clone();
    ok(app.with_store(|s, now| s.update_page(&id, &body, &bot, now).and_then(|()| s.render_page(&id))))
}

async fn append(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    if let Err(r) = gate(&app, Route::AppendBlocks, &headers) {
        return r;
    }
    let (id, body) = match (path_id(&id, "block"), parse_body(&body)) {
        (Ok(id), Ok(b)) => (id, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let bot = app.bot_id.clone();
    ok(app.with_store(|s, now| {
        s.append(&id, &body, &bot, now).map(|ids| {
            let blocks = ids.iter().filter_map(|b| s.render_block(b)).collect();
            list_body(blocks, None, "block")
        })
    }))
}

#[derive(Deserialize)]
struct Paging {
    start_cursor: Option<String>,
    page_size: Option<String>,
}

async fn list_children(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> Response {
    if let Err(r) = gate(&app, Route::ListBlocks, &headers) {
        return r;
    }
    let id = match path_id(&id, "block") {
        Ok(id) => id,
        Err(r) => return r,
    };
    ok(app.with_store(|s, _| {
        s.children(&id, paging.start_cursor.as_deref(), paging.page_size.as_deref()).map(
            |Listing { results, next_cursor }| {
                let blocks = results.iter().filter_map(|b| s.render_block(b)).collect();
                list_body(blocks, next_cursor, "block")
            },
        )
    }))
}

async fn me(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&app, Route::Me, &headers) {
        return r;
    }
    let bot = app.bot_id.clone();
    let user = app.with_store(|s, _| s.users.get(&bot).cloned());
    Json(user.unwrap_or(Value::Null)).into_response()
}

#[derive(Deserialize)]
struct Toggle {
    enabled: bool,
}

async fn admin_rate_limits(State(app): State<App>, Json(t): Json<Toggle>) -> StatusCode {
    app.set_rate_limits(t.enabled);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Advance {
    seconds: i64,
}

async fn admin_advance(State(app): State<App>, Json(a): Json<Advance>) -> StatusCode {
    app.advance_clock(chrono::Duration::seconds(a.seconds));
    StatusCode::NO_CONTENT
}

async fn admin_workspace(State(app): State<App>) -> Response {
    Json(json!({
        "root_page": app.root_page(),
        "bot_id": app.bot_id,
        "person_id": app.person_id,
        "crm": app.crm(),
        "now": super::store::iso(app.now()),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct SeedCrm {
    #[serde(default)]
    deals: usize,
    #[serde(default)]
    contacts: usize,
}

async fn admin_seed_crm(State(app): State<App>, Json(s): Json<SeedCrm>) -> Response {
    Json(app.seed_crm(s.deals, s.contacts)).into_response()
}

async fn admin_page(State(app): State<App>, Path(id): Path<String>) -> Response {
    match parse_id(&id).and_then(|id| app.page(&id)) {
        Some(p) => Json(p).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn admin_edit(State(app): State<App>, Path(id): Path<String>, Json(props): Json<Value>) -> Response {
    let id = parse_id(&id).unwrap_or(id);
    ok(app.edit_page(&id, props))
}

async fn admin_trash(State(app): State<App>, Path(id): Path<String>) -> Response {
    let id = parse_id(&id).unwrap_or(id);
    ok(app.trash_page(&id, true))
}
