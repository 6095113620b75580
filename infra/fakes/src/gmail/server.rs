//! The fake's axum router: Gmail v1 under `/gmail/v1/users/{userId}`, the OAuth endpoints, and
//! `/_admin/`.

// Handlers return early with a ready `Response`; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::store::{Format, Label, MailError, Message, OWNER, decode_raw};
use super::{FaultKind, GmailState, Mail, Refusal, WATCH_TTL, Watch, scopes};
use crate::google::store::{decode_token, encode_token};

type App = Arc<GmailState>;
type Params = Vec<(String, String)>;

/// `maxResults` of the list methods: default 100, at most 500
/// (<https://developers.google.com/gmail/api/reference/rest/v1/users.messages/list#query-parameters>).
const MAX_RESULTS_DEFAULT: usize = 100;
const MAX_RESULTS_CAP: usize = 500;
/// `messages.batchModify` takes at most 1000 ids
/// (<https://developers.google.com/gmail/api/reference/rest/v1/users.messages/batchModify#request-body>).
const BATCH_MODIFY_MAX: usize = 1000;

/// A method's discovery name, the scopes that allow it (from the discovery document's `scopes`)
/// and its quota units (<https://developers.google.com/gmail/api/reference/quota>).
struct Method {
    name: &'static str,
    scopes: &'static [&'static str],
    units: u32,
}

const READ: &[&str] = &[scopes::FULL, scopes::METADATA, scopes::MODIFY, scopes::READONLY];
const WRITE: &[&str] = &[scopes::FULL, scopes::MODIFY];

const GET_PROFILE: Method = Method { name: "getProfile", scopes: READ, units: 1 };
const WATCH: Method = Method { name: "watch", scopes: READ, units: 100 };
const STOP: Method = Method { name: "stop", scopes: READ, units: 50 };
const MESSAGES_LIST: Method = Method { name: "messages.list", scopes: READ, units: 5 };
const MESSAGES_GET: Method = Method { name: "messages.get", scopes: READ, units: 5 };
const MESSAGES_INSERT: Method =
    Method { name: "messages.insert", scopes: &[scopes::FULL, scopes::INSERT, scopes::MODIFY], units: 25 };
const MESSAGES_MODIFY: Method = Method { name: "messages.modify", scopes: WRITE, units: 5 };
const MESSAGES_BATCH_MODIFY: Method = Method { name: "messages.batchModify", scopes: WRITE, units: 50 };
const MESSAGES_TRASH: Method = Method { name: "messages.trash", scopes: WRITE, units: 5 };
const MESSAGES_DELETE: Method = Method { name: "messages.delete", scopes: &[scopes::FULL], units: 10 };
const THREADS_LIST: Method = Method { name: "threads.list", scopes: READ, units: 10 };
const THREADS_GET: Method = Method { name: "threads.get", scopes: READ, units: 10 };
const LABELS_LIST: Method = Method {
    name: "labels.list",
    scopes: &[scopes::FULL, scopes::LABELS, scopes::METADATA, scopes::MODIFY, scopes::READONLY],
    units: 1,
};
const LABELS_CREATE: Method =
    Method { name: "labels.create", scopes: &[scopes::FULL, scopes::LABELS, scopes::MODIFY], units: 5 };
const HISTORY_LIST: Method = Method { name: "history.list", scopes: READ, units: 2 };

pub(crate) fn router(state: App) -> Router {
    let user = "/gmail/v1/users/{user}";
    Router::new()
        .route(&format!("{user}/profile"), get(get_profile))
        .route(&format!("{user}/watch"), post(watch))
        .route(&format!("{user}/stop"), post(stop))
        .route(&format!("{user}/messages"), get(list_messages).post(insert_message))
        .route(&format!("{user}/messages/batchModify"), post(batch_modify))
        .route(&format!("{user}/messages/{{id}}"), get(get_message).delete(delete_message))
        .route(&format!("{user}/messages/{{id}}/modify"), post(modify_message))
        .route(&format!("{user}/messages/{{id}}/trash"), post(trash_message))
        .route(&format!("{user}/threads"), get(list_threads))
        .route(&format!("{user}/threads/{{id}}"), get(get_thread))
        .route(&format!("{user}/labels"), get(list_labels).post(create_label))
        .route(&format!("{user}/history"), get(list_history))
        .route("/_admin/messages", post(admin_deliver))
        .route("/_admin/messages/{id}", get(admin_get))
        .route("/_admin/messages/{id}/labels", post(admin_relabel))
        .route("/_admin/messages/{id}/delete", post(admin_delete))
        .route("/_admin/labels", post(admin_create_label))
        .route("/_admin/history/expire", post(admin_expire_history))
        .route("/_admin/quota", post(admin_quota))
        .route("/_admin/pubsub/subscriptions", post(admin_subscribe))
        .route("/_admin/pubsub/publish", post(admin_publish))
        .route(super::oidc::CERTS_PATH, get(certs))
        .merge(crate::admin::router::<App, App>())
        .merge(crate::oauth::google_router::<App, App>())
        .with_state(state)
}

/// Google's JSON error body (<https://developers.google.com/gmail/api/guides/handle-errors>).
fn g_error(status: StatusCode, reason: &str, message: &str) -> Response {
    let code = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    let body = json!({
        "error": {
            "code": status.as_u16(),
            "message": message,
            "errors": [{ "message": message, "domain": "global", "reason": reason }],
            "status": code,
        }
    });
    (status, Json(body)).into_response()
}

pub(crate) fn invalid(message: &str) -> Response {
    g_error(StatusCode::BAD_REQUEST, "invalidArgument", message)
}

pub(crate) fn not_found() -> Response {
    g_error(StatusCode::NOT_FOUND, "notFound", "Requested entity was not found.")
}

fn forbidden(message: &str) -> Response {
    g_error(StatusCode::FORBIDDEN, "forbidden", message)
}

fn unauthenticated() -> Response {
    let mut resp = g_error(
        StatusCode::UNAUTHORIZED,
        "authError",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\""),
    );
    resp
}

/// 429 `rateLimitExceeded` with the instant the user's quota frees up, as Gmail words it
/// (<https://developers.google.com/gmail/api/guides/handle-errors#resolve_a_429_error_too_many_requests>).
fn rate_limited(free_at_ms: Option<i64>) -> Response {
    let message = match free_at_ms.and_then(chrono::DateTime::from_timestamp_millis) {
        Some(at) => format!(
            "User-rate limit exceeded.  Retry after {}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
        None => "User-rate limit exceeded.".to_owned(),
    };
    g_error(StatusCode::TOO_MANY_REQUESTS, "rateLimitExceeded", &message)
}

fn mail_error(e: MailError) -> Response {
    match e {
        MailError::NotFound => not_found(),
        MailError::Invalid(m) => invalid(&m),
        MailError::Conflict(m) => g_error(StatusCode::CONFLICT, "aborted", &m),
    }
}

pub(crate) async fn apply_fault(app: &GmailState, method: &str) -> Option<Response> {
    match app.count_and_take_fault(method)? {
        FaultKind::RateLimit { retry_after_secs } => {
            let mut resp = rate_limited(None);
            if let Some(secs) = retry_after_secs {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            Some(resp)
        }
        FaultKind::ServerError { status } => {
            let status = status
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(g_error(status, "backendError", "Backend Error"))
        }
        FaultKind::ExpiredToken => Some(unauthenticated()),
        FaultKind::MalformedJson => Some(
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{\"messages\": [{\"id\":")
                .into_response(),
        ),
    }
}

/// What the gate learned: the token's scopes.
struct Admitted {
    scopes: Vec<String>,
}

impl Admitted {
    /// Google restricts tokens that carry `gmail.metadata` (even beside broader scopes, see
    /// <https://github.com/googleapis/google-api-python-client/issues/582>): no `q`, no bodies.
    fn metadata_only(&self) -> bool {
        self.scopes.iter().any(|s| s == scopes::METADATA)
    }
}

/// Counts the request, applies faults, checks the token, its scopes, the quota and the user id.
async fn gate(app: &App, method: &Method, headers: &HeaderMap, user: &str) -> Result<Admitted, Response> {
    if let Some(resp) = apply_fault(app, method.name).await {
        return Err(resp);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let scopes = app.admit(bearer, method.scopes, method.units).map_err(|r| match r {
        Refusal::Unauthenticated => unauthenticated(),
        Refusal::InsufficientScope => g_error(
            StatusCode::FORBIDDEN,
            "insufficientPermissions",
            "Request had insufficient authentication scopes.",
        ),
        Refusal::Quota(at) => rate_limited(Some(at)),
    })?;
    // `userId` is `me` or the authenticated user's own address; anyone else's mailbox needs
    // domain-wide delegation, which the fake's app does not have.
    if user != "me" && !user.eq_ignore_ascii_case(OWNER) {
        return Err(forbidden(&format!("Delegation denied for {OWNER}")));
    }
    Ok(Admitted { scopes })
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn params_all<'a>(params: &'a Params, name: &str) -> Vec<&'a str> {
    params.iter().filter(|(k, _)| k == name).flat_map(|(_, v)| v.split(',')).collect()
}

fn max_results(params: &Params) -> Result<usize, Response> {
    match param(params, "maxResults").map(str::parse::<i64>) {
        None => Ok(MAX_RESULTS_DEFAULT),
        Some(Ok(n)) if n >= 1 => Ok((n as usize).min(MAX_RESULTS_CAP)),
        Some(Ok(0)) => Ok(MAX_RESULTS_DEFAULT),
        Some(_) => Err(invalid("Invalid value for maxResults")),
    }
}

fn parse_bool(params: &Params, name: &str) -> Result<bool, Response> {
    match param(params, name) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(invalid(&format!("Invalid boolean value for {name}: {other}"))),
    }
}

fn parse_json(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|_| invalid("Invalid JSON payload received."))
}

fn string_list(v: &Value, name: &str) -> Result<Vec<String>, Response> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_owned).ok_or_else(|| invalid(&format!("Invalid value at '{name}'")))
            })
            .collect(),
        Some(_) => Err(invalid(&format!("Invalid value at '{name}'"))),
    }
}

/// The `q` the fake understands: space-separated terms, each `from:`, `to:`, `subject:`,
/// `label:` or a word of the subject or text, all of which must match.
fn matches_query(m: &Message, q: &str) -> bool {
    q.split_whitespace().all(|term| {
        let contains = |hay: Option<&str>, needle: &str| {
            hay.is_some_and(|h| h.to_lowercase().contains(&needle.to_lowercase()))
        };
        match term.split_once(':') {
            Some(("from", v)) => contains(m.header("From"), v),
            Some(("to", v)) => contains(m.header("To"), v) || contains(m.header("Cc"), v),
            Some(("subject", v)) => contains(m.header("Subject"), v),
            Some(("label", v)) => m.labels.iter().any(|l| l.eq_ignore_ascii_case(v)),
            _ => contains(m.header("Subject"), term) || contains(Some(&m.body), term),
        }
    })
}

/// The filters of `messages.list` and `threads.list`.
struct ListFilter<'a> {
    label_ids: Vec<&'a str>,
    include_spam_trash: bool,
    q: Option<&'a str>,
}

impl<'a> ListFilter<'a> {
    fn parse(params: &'a Params, admitted: &Admitted) -> Result<Self, Response> {
        let q = param(params, "q");
        // <https://developers.google.com/gmail/api/reference/rest/v1/users.messages/list#query-parameters>:
        // "Parameter cannot be used when accessing the api using the gmail.metadata scope."
        if q.is_some() && admitted.metadata_only() {
            return Err(forbidden("Metadata scope does not support 'q' parameter"));
        }
        Ok(Self {
            label_ids: params_all(params, "labelIds"),
            include_spam_trash: parse_bool(params, "includeSpamTrash")?,
            q,
        })
    }

    fn keeps(&self, m: &Message) -> bool {
        (self.include_spam_trash || !(m.labels.contains("SPAM") || m.labels.contains("TRASH")))
            && self.label_ids.iter().all(|l| m.labels.contains(*l))
            && self.q.is_none_or(|q| matches_query(m, q))
    }
}

fn message_id_number(id: &str) -> u64 {
    u64::from_str_radix(id, 16).unwrap_or(0)
}

async fn get_profile(State(app): State<App>, Path(user): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&app, &GET_PROFILE, &headers, &user).await {
        return r;
    }
    app.with_mailbox(|mb| {
        let threads: std::collections::BTreeSet<&str> =
            mb.messages.values().map(|m| m.thread_id.as_str()).collect();
        Json(json!({
            "emailAddress": OWNER,
            "messagesTotal": mb.messages.len(),
            "threadsTotal": threads.len(),
            "historyId": mb.history_id.to_string(),
        }))
        .into_response()
    })
}

async fn list_messages(
    State(app): State<App>,
    Path(user): Path<String>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let admitted = match gate(&app, &MESSAGES_LIST, &headers, &user).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (filter, max) = match (ListFilter::parse(&params, &admitted), max_results(&params)) {
        (Ok(f), Ok(m)) => (f, m),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    // The page token is the position after the last message served (date, id), so messages that
    // arrive while a client pages do not shift the pages.
    let after = match param(&params, "pageToken") {
        None => None,
        Some(t) => match decode_token("msgs", t).filter(|v| v.len() == 2) {
            Some(v) => Some((v[0] as i64, v[1])),
            None => return invalid("Invalid pageToken"),
        },
    };
    app.with_mailbox(|mb| {
        let matching: Vec<&Message> = mb
            .listed()
            .into_iter()
            .filter(|m| filter.keeps(m))
            .filter(|m| after.is_none_or(|(d, id)| (m.internal_date, message_id_number(&m.id)) < (d, id)))
            .collect();
        let page: Vec<&Message> = matching.iter().take(max).copied().collect();
        let mut body = json!({ "resultSizeEstimate": matching.len() });
        if !page.is_empty() {
            body["messages"] = json!(
                page.iter().map(|m| json!({ "id": m.id, "threadId": m.thread_id })).collect::<Vec<_>>()
            );
        }
        if matching.len() > page.len()
            && let Some(last) = page.last()
        {
            body["nextPageToken"] =
                json!(encode_token("msgs", &[last.internal_date as u64, message_id_number(&last.id)]));
        }
        Json(body).into_response()
    })
}

fn format_of(
    params: &Params,
    admitted: &Admitted,
    allowed: &[Format],
) -> Result<(Format, Vec<String>), Response> {
    let format = match param(params, "format") {
        None => Format::Full,
        Some(f) => match Format::parse(f).filter(|f| allowed.contains(f)) {
            Some(f) => f,
            None => return Err(invalid(&format!("Invalid value for format: {f}"))),
        },
    };
    // <https://developers.google.com/gmail/api/auth/scopes>: gmail.metadata reads "message
    // metadata including labels and headers, but not the message body".
    if admitted.metadata_only() && matches!(format, Format::Full | Format::Raw) {
        let name = if format == Format::Raw { "RAW" } else { "FULL" };
        return Err(forbidden(&format!("Metadata scope doesn't allow format {name}")));
    }
    let headers = params_all(params, "metadataHeaders").into_iter().map(str::to_owned).collect();
    Ok((format, headers))
}

async fn get_message(
    State(app): State<App>,
    Path((user, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let admitted = match gate(&app, &MESSAGES_GET, &headers, &user).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let all = [Format::Minimal, Format::Metadata, Format::Full, Format::Raw];
    let (format, wanted) = match format_of(&params, &admitted, &all) {
        Ok(f) => f,
        Err(r) => return r,
    };
    app.with_mailbox(|mb| match mb.messages.get(&id) {
        Some(m) => Json(m.render(format, &wanted)).into_response(),
        None => not_found(),
    })
}

async fn insert_message(
    State(app): State<App>,
    Path(user): Path<String>,
    headers: HeaderMap,
    Query(params): Query<Params>,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&app, &MESSAGES_INSERT, &headers, &user).await {
        return r;
    }
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(raw) = body.get("raw").and_then(Value::as_str).and_then(decode_raw) else {
        return invalid(
            "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
        );
    };
    let labels = match string_list(&body, "labelIds") {
        Ok(l) => l,
        Err(r) => return r,
    };
    let date_header = match param(&params, "internalDateSource") {
        None | Some("receivedTime") => false,
        Some("dateHeader") => true,
        Some(other) => return invalid(&format!("Invalid value for internalDateSource: {other}")),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let thread = body.get("threadId").and_then(Value::as_str).map(str::to_owned);
    app.with_mailbox(|mb| {
        let date = if date_header {
            super::store::parse_rfc822(&raw)
                .ok()
                .and_then(|(h, _)| h.into_iter().find(|(k, _)| k.eq_ignore_ascii_case("Date")))
                .and_then(|(_, v)| chrono::DateTime::parse_from_rfc2822(&v).ok())
                .map_or(now, |d| d.timestamp_millis())
        } else {
            now
        };
        match mb.insert(raw, &labels, thread.as_deref(), date) {
            Ok(m) => Json(m.reference()).into_response(),
            Err(e) => mail_error(e),
        }
    })
}

async fn modify_message(
    State(app): State<App>,
    Path((user, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&app, &MESSAGES_MODIFY, &headers, &user).await {
        return r;
    }
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (add, remove) = match (string_list(&body, "addLabelIds"), string_list(&body, "removeLabelIds")) {
        (Ok(a), Ok(r)) => (a, r),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    app.with_mailbox(|mb| match mb.modify(&id, &add, &remove) {
        Ok(m) => Json(m.reference()).into_response(),
        Err(e) => mail_error(e),
    })
}

async fn batch_modify(
    State(app): State<App>,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&app, &MESSAGES_BATCH_MODIFY, &headers, &user).await {
        return r;
    }
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (ids, add, remove) = match (
        string_list(&body, "ids"),
        string_list(&body, "addLabelIds"),
        string_list(&body, "removeLabelIds"),
    ) {
        (Ok(i), Ok(a), Ok(r)) => (i, a, r),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    if ids.is_empty() {
        return invalid("No message ids specified.");
    }
    if ids.len() > BATCH_MODIFY_MAX {
        return invalid(&format!("Too many ids specified: at most {BATCH_MODIFY_MAX} are allowed."));
    }
    app.with_mailbox(|mb| {
        // Validates the labels once for all (an unknown label changes no message).
        for l in add.iter().chain(&remove) {
            if mb.label(l).is_none() {
                return invalid(&format!("Invalid label: {l}"));
            }
        }
        for id in &ids {
            match mb.modify(id, &add, &remove) {
                Ok(_) | Err(MailError::NotFound) => {}
                Err(e) => return mail_error(e),
            }
        }
        StatusCode::NO_CONTENT.into_response()
    })
}

async fn trash_message(
    State(app): State<App>,
    Path((user, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&app, &MESSAGES_TRASH, &headers, &user).await {
        return r;
    }
    app.with_mailbox(|mb| match mb.modify(&id, &["TRASH".into()], &[]) {
        Ok(m) => Json(m.reference()).into_response(),
        Err(e) => mail_error(e),
    })
}

async fn delete_message(
    State(app): State<App>,
    Path((user, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&app, &MESSAGES_DELETE, &headers, &user).await {
        return r;
    }
    app.with_mailbox(|mb| match mb.delete(&id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => mail_error(e),
    })
}

/// Threads in `threads.list` order: by their newest message, newest first.
fn threads<'a>(messages: &[&'a Message]) -> Vec<(String, Vec<&'a Message>)> {
    let mut by: BTreeMap<&str, Vec<&Message>> = BTreeMap::new();
    for m in messages {
        by.entry(m.thread_id.as_str()).or_default().push(m);
    }
    let mut out: Vec<(String, Vec<&Message>)> = by
        .into_iter()
        .map(|(t, mut ms)| {
            ms.sort_by_key(|m| (m.internal_date, message_id_number(&m.id)));
            (t.to_owned(), ms)
        })
        .collect();
    let newest = |ms: &Vec<&Message>| ms.last().map(|m| (m.internal_date, message_id_number(&m.id)));
    out.sort_by_key(|t| std::cmp::Reverse(newest(&t.1)));
    out
}

async fn list_threads(
    State(app): State<App>,
    Path(user): Path<String>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let admitted = match gate(&app, &THREADS_LIST, &headers, &user).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (filter, max) = match (ListFilter::parse(&params, &admitted), max_results(&params)) {
        (Ok(f), Ok(m)) => (f, m),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let offset = match param(&params, "pageToken") {
        None => 0,
        Some(t) => match decode_token("threads", t).and_then(|v| v.first().copied()) {
            Some(o) => o as usize,
            None => return invalid("Invalid pageToken"),
        },
    };
    app.with_mailbox(|mb| {
        let kept: Vec<&Message> = mb.messages.values().filter(|m| filter.keeps(m)).collect();
        let all = threads(&kept);
        let end = (offset + max).min(all.len());
        let page: Vec<Value> = all
            .get(offset..end)
            .unwrap_or_default()
            .iter()
            .map(|(id, ms)| {
                let last = ms.last();
                json!({
                    "id": id,
                    "snippet": last.map(|m| m.snippet()).unwrap_or_default(),
                    "historyId": ms.iter().map(|m| m.history_id).max().unwrap_or(0).to_string(),
                })
            })
            .collect();
        let mut body = json!({ "resultSizeEstimate": all.len() });
        if !page.is_empty() {
            body["threads"] = json!(page);
        }
        if end < all.len() {
            body["nextPageToken"] = json!(encode_token("threads", &[end as u64]));
        }
        Json(body).into_response()
    })
}

async fn get_thread(
    State(app): State<App>,
    Path((user, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let admitted = match gate(&app, &THREADS_GET, &headers, &user).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (format, wanted) =
        match format_of(&params, &admitted, &[Format::Minimal, Format::Metadata, Format::Full]) {
            Ok(f) => f,
            Err(r) => return r,
        };
    app.with_mailbox(|mb| {
        let members: Vec<&Message> = mb.messages.values().filter(|m| m.thread_id == id).collect();
        let Some((tid, ms)) = threads(&members).into_iter().next() else { return not_found() };
        Json(json!({
            "id": tid,
            "historyId": ms.iter().map(|m| m.history_id).max().unwrap_or(0).to_string(),
            "messages": ms.iter().map(|m| m.render(format, &wanted)).collect::<Vec<_>>(),
        }))
        .into_response()
    })
}

fn render_label(l: &Label) -> Value {
    let mut v = json!({ "id": l.id, "name": l.name, "type": if l.system { "system" } else { "user" } });
    if let Some(m) = &l.message_list_visibility {
        v["messageListVisibility"] = json!(m);
    }
    if let Some(m) = &l.label_list_visibility {
        v["labelListVisibility"] = json!(m);
    }
    v
}

async fn list_labels(State(app): State<App>, Path(user): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&app, &LABELS_LIST, &headers, &user).await {
        return r;
    }
    app.with_mailbox(|mb| {
        Json(json!({ "labels": mb.labels.iter().map(render_label).collect::<Vec<_>>() })).into_response()
    })
}

async fn create_label(
    State(app): State<App>,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&app, &LABELS_CREATE, &headers, &user).await {
        return r;
    }
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return invalid("Invalid label name");
    };
    let visibility = |key: &str, allowed: &[&str]| -> Result<Option<String>, Response> {
        match body.get(key).and_then(Value::as_str) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v.to_owned())),
            Some(v) => Err(invalid(&format!("Invalid value for {key}: {v}"))),
        }
    };
    let (mlv, llv) = match (
        visibility("messageListVisibility", &["show", "hide"]),
        visibility("labelListVisibility", &["labelShow", "labelShowIfUnread", "labelHide"]),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    app.with_mailbox(|mb| match mb.create_label(name, mlv, llv) {
        Ok(l) => Json(render_label(&l)).into_response(),
        Err(e) => mail_error(e),
    })
}

const HISTORY_TYPES: &[&str] = &["messageAdded", "messageDeleted", "labelAdded", "labelRemoved"];

async fn list_history(
    State(app): State<App>,
    Path(user): Path<String>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    if let Err(r) = gate(&app, &HISTORY_LIST, &headers, &user).await {
        return r;
    }
    let max = match max_results(&params) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(start) = param(&params, "startHistoryId") else {
        return invalid("Missing required field: startHistoryId");
    };
    let Ok(start) = start.parse::<u64>() else {
        return invalid(&format!("Invalid value for startHistoryId: {start}"));
    };
    let types = params_all(&params, "historyTypes");
    if let Some(bad) = types.iter().find(|t| !HISTORY_TYPES.contains(t)) {
        return invalid(&format!("Invalid value for historyTypes: {bad}"));
    }
    let label = param(&params, "labelId");
    let after = match param(&params, "pageToken") {
        None => start,
        Some(t) => match decode_token("hist", t).and_then(|v| v.first().copied()) {
            Some(a) => a,
            None => return invalid("Invalid pageToken"),
        },
    };
    app.with_mailbox(|mb| {
        // <https://developers.google.com/gmail/api/reference/rest/v1/users.history/list#query-parameters>:
        // "Supplying an invalid or out of date startHistoryId typically returns an HTTP 404 error
        // code. A historyId is typically valid for at least a week".
        if start < mb.horizon {
            return not_found();
        }
        let matching: Vec<_> = mb
            .history
            .iter()
            .filter(|h| h.id > after)
            .filter(|h| types.is_empty() || types.contains(&h.change.history_type()))
            .filter(|h| {
                label.is_none_or(|l| {
                    h.labels_after.contains(l)
                        || matches!(&h.change, super::store::Change::LabelsRemoved(r) if r.iter().any(|x| x == l))
                })
            })
            .collect();
        let page: Vec<Value> = matching.iter().take(max).map(|h| h.render()).collect();
        let mut body = json!({ "historyId": mb.history_id.to_string() });
        if !page.is_empty() {
            body["history"] = json!(page);
        }
        if matching.len() > max
            && let Some(last) = matching.get(max - 1)
        {
            body["nextPageToken"] = json!(encode_token("hist", &[last.id]));
        }
        Json(body).into_response()
    })
}

/// `projects/{project}/topics/{topic}`, as Pub/Sub names topics.
fn valid_topic(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() == 4
        && parts[0] == "projects"
        && parts[2] == "topics"
        && !parts[1].is_empty()
        && !parts[3].is_empty()
}

async fn watch(
    State(app): State<App>,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&app, &WATCH, &headers, &user).await {
        return r;
    }
    let body = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    // <https://developers.google.com/gmail/api/reference/rest/v1/users/watch#request-body>:
    // `topicName` is required and names a Pub/Sub topic.
    let Some(topic) = body.get("topicName").and_then(Value::as_str).filter(|t| !t.is_empty()) else {
        return invalid("Invalid topicName does not match projects/SOME-PROJECT/topics/SOME-TOPIC");
    };
    if !valid_topic(topic) {
        return invalid("Invalid topicName does not match projects/SOME-PROJECT/topics/SOME-TOPIC");
    }
    let labels = match string_list(&body, "labelIds") {
        Ok(l) => l,
        Err(r) => return r,
    };
    let expiration = chrono::Utc::now().timestamp_millis() + WATCH_TTL.as_millis() as i64;
    app.set_watch(Some(Watch { topic_name: topic.to_owned(), label_ids: labels, expiration }));
    Json(json!({ "historyId": app.history_id().to_string(), "expiration": expiration.to_string() }))
        .into_response()
}

async fn stop(State(app): State<App>, Path(user): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&app, &STOP, &headers, &user).await {
        return r;
    }
    app.set_watch(None);
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_deliver(State(app): State<App>, body: Bytes) -> Response {
    let mail: Mail = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => return invalid(&e.to_string()),
    };
    match app.deliver(&mail) {
        Ok(id) => (StatusCode::CREATED, Json(json!({ "id": id }))).into_response(),
        Err(e) => mail_error(e),
    }
}

async fn admin_get(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.message(&id) {
        Some(v) => Json(v).into_response(),
        None => not_found(),
    }
}

#[derive(Deserialize)]
struct Relabel {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

async fn admin_relabel(State(app): State<App>, Path(id): Path<String>, body: Bytes) -> Response {
    let req: Relabel = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return invalid(&e.to_string()),
    };
    let add: Vec<&str> = req.add.iter().map(String::as_str).collect();
    let remove: Vec<&str> = req.remove.iter().map(String::as_str).collect();
    match app.relabel(&id, &add, &remove) {
        Ok(labels) => Json(json!({ "id": id, "labelIds": labels })).into_response(),
        Err(e) => mail_error(e),
    }
}

async fn admin_delete(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.delete_message(&id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => mail_error(e),
    }
}

#[derive(Deserialize)]
struct NewLabel {
    name: String,
}

async fn admin_create_label(State(app): State<App>, body: Bytes) -> Response {
    match serde_json::from_slice::<NewLabel>(&body) {
        Ok(l) => match app.create_label(&l.name) {
            Ok(id) => (StatusCode::CREATED, Json(json!({ "id": id }))).into_response(),
            Err(e) => mail_error(e),
        },
        Err(e) => invalid(&e.to_string()),
    }
}

async fn admin_expire_history(State(app): State<App>) -> StatusCode {
    app.expire_history();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct QuotaBody {
    units_per_minute: Option<u32>,
}

async fn admin_quota(State(app): State<App>, body: Bytes) -> Response {
    match serde_json::from_slice::<QuotaBody>(&body) {
        Ok(q) => {
            app.set_quota(q.units_per_minute);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => invalid(&e.to_string()),
    }
}

#[derive(Deserialize)]
struct SubscribeBody {
    topic_name: String,
    endpoint: String,
    /// Pub/Sub's `pushConfig.oidcToken` (`serviceAccountEmail`, optional `audience`).
    #[serde(default)]
    oidc_token: Option<super::oidc::OidcToken>,
}

async fn admin_subscribe(State(app): State<App>, body: Bytes) -> Response {
    match serde_json::from_slice::<SubscribeBody>(&body) {
        // An OIDC token needs the service account it is signed for
        // (<https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions#oidctoken>).
        Ok(SubscribeBody { oidc_token: Some(t), .. }) if t.service_account_email.trim().is_empty() => {
            invalid("pushConfig.oidcToken.serviceAccountEmail is required")
        }
        Ok(b) => (StatusCode::CREATED, Json(app.subscribe(&b.topic_name, &b.endpoint, b.oidc_token)))
            .into_response(),
        Err(e) => invalid(&e.to_string()),
    }
}

/// Google's signing keys as a JWKS, cacheable for the `max-age` its `Cache-Control` gives
/// (<https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions#validate_tokens>). No
/// token needed: the keys are public.
async fn certs(State(app): State<App>) -> Response {
    ([(header::CACHE_CONTROL, super::oidc::CERTS_CACHE_CONTROL)], Json(app.jwks())).into_response()
}

async fn admin_publish(State(app): State<App>) -> Response {
    Json(app.publish().await).into_response()
}
