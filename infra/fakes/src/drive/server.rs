//! The fake's axum router: Drive v3 under `/drive/v3`, the OAuth endpoints and `/_admin/`.

// Handlers return early with a ready `Response`; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::fields::{self, Schema, Selection};
use super::query;
use super::store::{FOLDER_MIME, NewFile, OWNER, OWNER_NAME, OWNER_PERMISSION_ID, StoreError, rfc3339};
use super::{
    DEFAULT_CHANNEL_TTL, DriveState, EditError, FaultKind, MAX_CHANNEL_TTL, READ_SCOPES, RateLimit, Refusal,
    Route, WRITE_SCOPES,
};
use crate::channels::{NotifyBody, Watch};

type App = Arc<DriveState>;
type Params = Vec<(String, String)>;

/// `files.list`'s default partial response (`fields` unset): files carry only these.
const FILES_LIST_DEFAULT: &str = "kind,incompleteSearch,nextPageToken,files(kind,id,name,mimeType)";
const FILE_DEFAULT: &str = "kind,id,name,mimeType";
const CHANGES_DEFAULT: &str = "kind,nextPageToken,newStartPageToken,changes(kind,changeType,time,removed,fileId,file(kind,id,name,mimeType))";
const PERMISSIONS_DEFAULT: &str = "kind,nextPageToken,permissions(kind,id,type,role)";
/// `files.list` and `changes.list` return at most this many a page; larger `pageSize`s are
/// coerced to it (the discovery document's `pageSize` description).
const MAX_PAGE: usize = 1000;
const CHANGES_PAGE_DEFAULT: usize = 100;

pub(crate) fn changes_uri(page_token: &str) -> String {
    format!("https://www.googleapis.com/drive/v3/changes?alt=json&pageToken={page_token}")
}

pub(crate) fn router(state: App) -> Router {
    Router::new()
        .route("/drive/v3/files", get(files_list).post(files_create))
        .route("/drive/v3/files/{id}", get(files_get))
        .route("/drive/v3/files/{id}/permissions", get(permissions_list))
        .route("/drive/v3/about", get(about))
        .route("/drive/v3/changes/startPageToken", get(start_page_token))
        .route("/drive/v3/changes", get(changes_list))
        .route("/drive/v3/changes/watch", post(changes_watch))
        .route("/drive/v3/channels/stop", post(channels_stop))
        .route("/_admin/files", post(admin_create))
        .route("/_admin/files/{id}", get(admin_get).patch(admin_rename).delete(admin_delete))
        .route("/_admin/files/{id}/trash", post(admin_trash))
        .route("/_admin/files/{id}/untrash", post(admin_untrash))
        .route("/_admin/files/{id}/share", post(admin_share))
        .route("/_admin/files/{id}/unshare", post(admin_unshare))
        .route("/_admin/rate-limit", post(admin_rate_limit).delete(admin_rate_limit_off))
        .route("/_admin/channels", get(admin_channels))
        .route("/_admin/channels/notify", post(admin_notify))
        .merge(crate::admin::router::<App, App>())
        .merge(crate::oauth::google_router::<App, App>())
        .with_state(state)
}

/// Google's JSON error body (<https://developers.google.com/workspace/drive/api/guides/handle-errors>),
/// with the parameter at fault when there is one.
fn g_error(
    status: StatusCode,
    domain: &str,
    reason: &str,
    message: &str,
    location: Option<&str>,
) -> Response {
    let mut item = json!({ "domain": domain, "reason": reason, "message": message });
    if let Some(loc) = location {
        item["locationType"] = json!("parameter");
        item["location"] = json!(loc);
    }
    let body = json!({ "error": { "errors": [item], "code": status.as_u16(), "message": message } });
    (status, Json(body)).into_response()
}

/// 400 `invalid`, "Invalid Value": what Drive answers for a `q`, `pageToken` or `pageSize` it
/// cannot use.
fn invalid_value(location: &str) -> Response {
    g_error(StatusCode::BAD_REQUEST, "global", "invalid", "Invalid Value", Some(location))
}

fn required(location: &str, message: &str) -> Response {
    g_error(StatusCode::BAD_REQUEST, "global", "required", message, Some(location))
}

fn file_not_found(id: &str) -> Response {
    g_error(StatusCode::NOT_FOUND, "global", "notFound", &format!("File not found: {id}."), Some("fileId"))
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

/// 403 `insufficientPermissions`: the token lacks every scope the method accepts.
fn insufficient_scopes() -> Response {
    let body = json!({
        "error": {
            "code": 403,
            "message": "Request had insufficient authentication scopes.",
            "errors": [{
                "message": "Insufficient Permission",
                "domain": "global",
                "reason": "insufficientPermissions",
            }],
            "status": "PERMISSION_DENIED",
        }
    });
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

/// 403 `userRateLimitExceeded` (or 429 `rateLimitExceeded`)
/// (<https://developers.google.com/workspace/drive/api/guides/limits#resolve-time-based-quota-errors>).
fn rate_limited(status: u16) -> Response {
    if status == 429 {
        g_error(
            StatusCode::TOO_MANY_REQUESTS,
            "usageLimits",
            "rateLimitExceeded",
            "Rate Limit Exceeded",
            None,
        )
    } else {
        g_error(
            StatusCode::FORBIDDEN,
            "usageLimits",
            "userRateLimitExceeded",
            "User rate limit exceeded.",
            None,
        )
    }
}

pub(crate) async fn apply_fault(app: &DriveState, route: Route) -> Option<Response> {
    Some(match app.count_and_take_fault(route)? {
        FaultKind::RateLimit { status } => rate_limited(status.unwrap_or(403)),
        FaultKind::ServerError { status } => {
            let status = status
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            g_error(status, "global", "backendError", "Backend Error", None)
        }
        FaultKind::ExpiredToken => unauthenticated(),
        FaultKind::MalformedJson => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"kind\": \"drive#fileList\", \"files\": [{\"id\":",
        )
            .into_response(),
    })
}

/// Counts the request, applies faults, checks the bearer token, its scopes and the rate limit.
async fn gate(app: &App, route: Route, headers: &HeaderMap, needs: &[&str]) -> Result<(), Response> {
    if let Some(resp) = apply_fault(app, route).await {
        return Err(resp);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    app.admit(bearer, needs).map_err(|r| match r {
        Refusal::Unauthenticated => unauthenticated(),
        Refusal::InsufficientScopes => insufficient_scopes(),
        Refusal::RateLimited(status) => rate_limited(status),
    })
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn selection(params: &Params, schema: Schema, default: &str) -> Result<Selection, Response> {
    let spec = param(params, "fields").unwrap_or(default);
    fields::parse(spec, schema).map_err(|name| {
        g_error(
            StatusCode::BAD_REQUEST,
            "global",
            "invalidParameter",
            &format!("Invalid field selection {name}"),
            Some("fields"),
        )
    })
}

fn parse_bool(params: &Params, name: &str, default: bool) -> Result<bool, Response> {
    match param(params, name) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err(invalid_value(name)),
    }
}

/// `pageSize`: 1 or more (larger than 1,000 is coerced to 1,000); `None` when unset.
fn page_size(params: &Params) -> Result<Option<usize>, Response> {
    match param(params, "pageSize").map(str::parse::<i64>) {
        None => Ok(None),
        Some(Ok(n)) if n >= 1 => Ok(Some((n as usize).min(MAX_PAGE))),
        Some(_) => Err(invalid_value("pageSize")),
    }
}

/// A `files.list` page token: the last id served and a hash of the query it belongs to.
fn list_token(last_id: &str, q: &str) -> String {
    let text = format!("fl1:{}:{last_id}", query_hash(q));
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn query_hash(q: &str) -> u64 {
    q.bytes().fold(1_469_598_103_934_665_603u64, |h, b| (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211))
}

fn read_list_token(token: &str, q: &str) -> Option<String> {
    if !token.len().is_multiple_of(2) || token.len() > 512 {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..token.len()).step_by(2).map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok()).collect();
    let text = String::from_utf8(bytes?).ok()?;
    let rest = text.strip_prefix("fl1:")?;
    let (hash, last) = rest.split_once(':')?;
    (hash == query_hash(q).to_string()).then(|| last.to_owned())
}

async fn files_list(State(app): State<App>, headers: HeaderMap, Query(params): Query<Params>) -> Response {
    if let Err(r) = gate(&app, Route::FilesList, &headers, READ_SCOPES).await {
        return r;
    }
    let sel = match selection(&params, Schema::FileList, FILES_LIST_DEFAULT) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let q_text = param(&params, "q").unwrap_or("");
    let q = match q_text {
        "" => None,
        text => match query::parse(text) {
            Ok(q) => Some(q),
            Err(()) => return invalid_value("q"),
        },
    };
    // Unset: the whole list of a My Drive (the `pageSize` parameter's documentation).
    let size = match page_size(&params) {
        Ok(s) => s.unwrap_or(usize::MAX),
        Err(r) => return r,
    };
    let after = match param(&params, "pageToken") {
        None => None,
        Some(t) => match read_list_token(t, q_text) {
            Some(last) => Some(last),
            None => return invalid_value("pageToken"),
        },
    };
    let body = app.with_store(|store| {
        let root = super::ROOT_ID;
        let mut matched =
            store.list_after(after.as_deref(), |f| q.as_ref().is_none_or(|q| q.matches(f, root)));
        let page: Vec<Value> = matched.by_ref().take(size).map(|f| f.render()).collect();
        let more = matched.next().is_some();
        let mut body = json!({ "kind": "drive#fileList", "incompleteSearch": false, "files": page });
        if more
            && let Some(last) = body["files"].as_array().and_then(|a| a.last()).and_then(|f| f["id"].as_str())
        {
            body["nextPageToken"] = json!(list_token(last, q_text));
        }
        body
    });
    Json(fields::apply(&body, &sel)).into_response()
}

async fn files_get(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    if let Err(r) = gate(&app, Route::FilesGet, &headers, READ_SCOPES).await {
        return r;
    }
    let sel = match selection(&params, Schema::File, FILE_DEFAULT) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match app.with_store(|s| s.get(&id)) {
        Some(f) => Json(fields::apply(&f.render(), &sel)).into_response(),
        None => file_not_found(&id),
    }
}

async fn files_create(
    State(app): State<App>,
    headers: HeaderMap,
    Query(params): Query<Params>,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&app, Route::FilesCreate, &headers, WRITE_SCOPES).await {
        return r;
    }
    let sel = match selection(&params, Schema::File, FILE_DEFAULT) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return g_error(StatusCode::BAD_REQUEST, "global", "parseError", "Parse Error", None),
        }
    };
    let parents: Vec<String> = match body.get("parents") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(_) => return invalid_value("parents"),
    };
    // A file has one parent (<https://developers.google.com/workspace/drive/api/guides/folder#create>).
    if parents.len() > 1 {
        return g_error(
            StatusCode::FORBIDDEN,
            "global",
            "cannotAddParent",
            "Increasing the number of parents is not allowed.",
            None,
        );
    }
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let new = NewFile {
        name: text("name").unwrap_or_default(),
        mime_type: text("mimeType"),
        parent: parents.into_iter().next(),
        description: text("description"),
        shared_with: Vec::new(),
    };
    let created = app.with_store(|s| s.create(new, Utc::now()).map(|f| f.render()));
    match created {
        Ok(f) => {
            changed(&app);
            Json(fields::apply(&f, &sel)).into_response()
        }
        Err(StoreError::NotFound(id)) => file_not_found(&id),
        Err(StoreError::Invalid(m)) => g_error(StatusCode::BAD_REQUEST, "global", "badRequest", &m, None),
    }
}

async fn permissions_list(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    if let Err(r) = gate(&app, Route::PermissionsList, &headers, READ_SCOPES).await {
        return r;
    }
    let sel = match selection(&params, Schema::PermissionList, PERMISSIONS_DEFAULT) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match app.with_store(|s| s.get(&id)) {
        Some(f) => {
            let body =
                json!({ "kind": "drive#permissionList", "permissions": f.render()["permissions"].clone() });
            Json(fields::apply(&body, &sel)).into_response()
        }
        None => file_not_found(&id),
    }
}

/// `about.get`: Drive requires `fields` on it.
async fn about(State(app): State<App>, headers: HeaderMap, Query(params): Query<Params>) -> Response {
    if let Err(r) = gate(&app, Route::About, &headers, READ_SCOPES).await {
        return r;
    }
    if param(&params, "fields").is_none() {
        return required("fields", "The 'fields' parameter is required for this method.");
    }
    let sel = match selection(&params, Schema::About, "*") {
        Ok(s) => s,
        Err(r) => return r,
    };
    let body = json!({
        "kind": "drive#about",
        "user": {
            "kind": "drive#user",
            "displayName": OWNER_NAME,
            "emailAddress": OWNER,
            "me": true,
            "permissionId": OWNER_PERMISSION_ID,
        },
        "storageQuota": { "limit": "16106127360", "usage": "0", "usageInDrive": "0", "usageInDriveTrash": "0" },
        "canCreateDrives": false,
        "maxUploadSize": "5242880000000",
        "appInstalled": false,
    });
    Json(fields::apply(&body, &sel)).into_response()
}

async fn start_page_token(
    State(app): State<App>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    if let Err(r) = gate(&app, Route::StartPageToken, &headers, READ_SCOPES).await {
        return r;
    }
    let sel = match selection(&params, Schema::StartPageToken, "*") {
        Ok(s) => s,
        Err(r) => return r,
    };
    let next = app.with_store(|s| s.seq + 1);
    Json(fields::apply(&json!({ "kind": "drive#startPageToken", "startPageToken": next.to_string() }), &sel))
        .into_response()
}

/// A change-feed page token: a position from 1 to the next one to be handed out.
fn change_position(params: &Params, app: &App) -> Result<u64, Response> {
    let Some(token) = param(params, "pageToken") else {
        return Err(required("pageToken", "Required parameter: pageToken"));
    };
    let next = app.with_store(|s| s.seq + 1);
    match token.parse::<u64>() {
        Ok(p) if (1..=next).contains(&p) => Ok(p),
        _ => Err(invalid_value("pageToken")),
    }
}

/// `changes.list` (<https://developers.google.com/workspace/drive/api/guides/manage-changes>):
/// each file changed at the position or later, once, in change order; removed files as
/// `removed: true` without a `file` (unless `includeRemoved=false`); `nextPageToken` while more
/// remain, `newStartPageToken` on the last page.
async fn changes_list(State(app): State<App>, headers: HeaderMap, Query(params): Query<Params>) -> Response {
    if let Err(r) = gate(&app, Route::ChangesList, &headers, READ_SCOPES).await {
        return r;
    }
    let sel = match selection(&params, Schema::ChangeList, CHANGES_DEFAULT) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let from = match change_position(&params, &app) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let size = match page_size(&params) {
        Ok(s) => s.unwrap_or(CHANGES_PAGE_DEFAULT),
        Err(r) => return r,
    };
    let include_removed = match parse_bool(&params, "includeRemoved", true) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let body = app.with_store(|store| {
        let mut changes = Vec::new();
        let mut next = None;
        for f in store.changes_from(from) {
            if f.removed && !include_removed {
                continue;
            }
            if changes.len() == size {
                next = Some(f.seq);
                break;
            }
            let mut c = json!({
                "kind": "drive#change",
                "changeType": "file",
                "time": rfc3339(f.changed),
                "removed": f.removed,
                "fileId": f.id,
            });
            if !f.removed {
                c["file"] = f.render();
            }
            changes.push(c);
        }
        let mut body = json!({ "kind": "drive#changeList", "changes": changes });
        match next {
            Some(p) => body["nextPageToken"] = json!(p.to_string()),
            None => body["newStartPageToken"] = json!((store.seq + 1).to_string()),
        }
        body
    });
    Json(fields::apply(&body, &sel)).into_response()
}

fn str_field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// `changes.watch` (<https://developers.google.com/workspace/drive/api/guides/push>): a `web_hook`
/// channel to an HTTPS address (plain `http` only to loopback, for local receivers), living an
/// hour unless asked otherwise and a week at most; a `sync` message follows at once.
async fn changes_watch(
    State(app): State<App>,
    headers: HeaderMap,
    Query(params): Query<Params>,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&app, Route::ChangesWatch, &headers, READ_SCOPES).await {
        return r;
    }
    let from = match change_position(&params, &app) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return g_error(StatusCode::BAD_REQUEST, "global", "parseError", "Parse Error", None);
    };
    let channel = match Watch::parse(&body, DEFAULT_CHANNEL_TTL, MAX_CHANNEL_TTL)
        .map(|w| {
            let resource_id = format!("drvChg{}", super::store::permission_id(&w.id));
            w.channel(resource_id, changes_uri(&from.to_string()))
        })
        .and_then(|c| app.add_channel(c))
    {
        Ok(c) => c,
        Err(refusal) => {
            return g_error(StatusCode::BAD_REQUEST, "global", refusal.reason, &refusal.message, None);
        }
    };
    let state = app.clone();
    let channel_id = channel.id.clone();
    tokio::spawn(async move {
        state.notify("sync", Some(&channel_id)).await;
    });
    Json(channel.to_json()).into_response()
}

async fn channels_stop(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = gate(&app, Route::ChannelsStop, &headers, READ_SCOPES).await {
        return r;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return g_error(StatusCode::BAD_REQUEST, "global", "parseError", "Parse Error", None);
    };
    let (Some(id), Some(resource_id)) = (str_field(&body, "id"), str_field(&body, "resourceId")) else {
        return g_error(StatusCode::BAD_REQUEST, "global", "required", "Required: id and resourceId.", None);
    };
    if app.stop_channel(id, resource_id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        g_error(
            StatusCode::NOT_FOUND,
            "global",
            "notFound",
            &format!("Channel '{id}' not found for project"),
            None,
        )
    }
}

/// After an edit: a `change` message to every active channel, as Drive sends one per change.
fn changed(app: &App) {
    if app.active_channels().is_empty() {
        return;
    }
    let state = app.clone();
    tokio::spawn(async move {
        state.notify("change", None).await;
    });
}

fn edit_reply(app: &App, result: Result<Value, EditError>) -> Response {
    match result {
        Ok(v) => {
            changed(app);
            Json(v).into_response()
        }
        Err(EditError::NotFound(id)) => file_not_found(&id),
        Err(EditError::Invalid(m)) => g_error(StatusCode::BAD_REQUEST, "global", "invalid", &m, None),
    }
}

pub(crate) fn bad_admin_body(e: impl std::fmt::Display) -> Response {
    g_error(StatusCode::BAD_REQUEST, "global", "parseError", &e.to_string(), None)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdminNewFile {
    name: String,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    folder: bool,
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    description: Option<String>,
    /// `[{"email": ..., "role": ...}]`
    #[serde(default)]
    shared_with: Vec<AdminShare>,
}

#[derive(Deserialize)]
struct AdminShare {
    email: String,
    #[serde(default = "reader")]
    role: String,
}

fn reader() -> String {
    "reader".into()
}

async fn admin_create(State(app): State<App>, body: Bytes) -> Response {
    let b: AdminNewFile = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_admin_body(e),
    };
    let new = NewFile {
        name: b.name,
        mime_type: if b.folder { Some(FOLDER_MIME.into()) } else { b.mime_type },
        parent: b.parent,
        description: b.description,
        shared_with: b.shared_with.into_iter().map(|s| (s.email, s.role)).collect(),
    };
    edit_reply(&app, app.create_file(new))
}

async fn admin_get(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.file(&id) {
        Some(v) => Json(v).into_response(),
        None => file_not_found(&id),
    }
}

#[derive(Deserialize)]
struct Rename {
    name: String,
}

async fn admin_rename(State(app): State<App>, Path(id): Path<String>, body: Bytes) -> Response {
    match serde_json::from_slice::<Rename>(&body) {
        Ok(b) => edit_reply(&app, app.rename(&id, &b.name)),
        Err(e) => bad_admin_body(e),
    }
}

async fn admin_delete(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.delete(&id) {
        Ok(()) => {
            changed(&app);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => edit_reply(&app, Err(e)),
    }
}

async fn admin_trash(State(app): State<App>, Path(id): Path<String>) -> Response {
    edit_reply(&app, app.trash(&id, true))
}

async fn admin_untrash(State(app): State<App>, Path(id): Path<String>) -> Response {
    edit_reply(&app, app.trash(&id, false))
}

async fn admin_share(State(app): State<App>, Path(id): Path<String>, body: Bytes) -> Response {
    match serde_json::from_slice::<AdminShare>(&body) {
        Ok(b) => edit_reply(&app, app.share(&id, &b.email, &b.role)),
        Err(e) => bad_admin_body(e),
    }
}

async fn admin_unshare(State(app): State<App>, Path(id): Path<String>, body: Bytes) -> Response {
    match serde_json::from_slice::<AdminShare>(&body) {
        Ok(b) => edit_reply(&app, app.unshare(&id, &b.email)),
        Err(e) => bad_admin_body(e),
    }
}

/// Switches the per-user rate limit on: a body `{requests, window_secs, status}`, or none for
/// Drive's 12,000 a minute.
async fn admin_rate_limit(State(app): State<App>, body: Bytes) -> Response {
    let limit = if body.is_empty() {
        RateLimit::drive_default()
    } else {
        match serde_json::from_slice::<RateLimit>(&body) {
            Ok(l) if l.requests > 0 && l.window_secs > 0 && matches!(l.status, 403 | 429) => l,
            Ok(_) => return bad_admin_body("requests and window_secs must be positive, status 403 or 429"),
            Err(e) => return bad_admin_body(e),
        }
    };
    app.set_rate_limit(Some(limit));
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_rate_limit_off(State(app): State<App>) -> StatusCode {
    app.set_rate_limit(None);
    StatusCode::NO_CONTENT
}

/// The 404 for `/_admin/tokens/expire` with a token the fake never issued.
pub(crate) fn unknown_token() -> Response {
    g_error(StatusCode::NOT_FOUND, "global", "notFound", "unknown token", None)
}

async fn admin_channels(State(app): State<App>) -> Response {
    Json(app.channels()).into_response()
}

async fn admin_notify(State(app): State<App>, body: Bytes) -> Response {
    let req = match NotifyBody::parse(&body) {
        Ok(b) => b,
        Err(e) => return bad_admin_body(e),
    };
    let state = req.state.unwrap_or_else(|| "change".into());
    Json(app.notify(&state, req.channel_id.as_deref()).await).into_response()
}
