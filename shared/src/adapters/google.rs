//! Google Calendar v3 adapter: pulls the `events` of the connection's primary calendar (a
//! windowed full listing, then `syncToken` increments), writes suggested meetings and edits with
//! idempotent ids and `If-Match`, refreshes OAuth tokens, and manages push channels
//! (`events.watch`, `channels.stop`).
//!
//! - **Window.** A full pull lists `singleEvents=true` (recurring events as instances) from now to
//!   now + `calendar_window_days`. Incremental pulls send only the `syncToken` (Google refuses
//!   `timeMin`/`timeMax` with it) and Google then returns changes to events outside the window too.
//!   We keep them: dropping them would leave a record stale when a person moves an event out of the
//!   window, and a cancellation must always get through. So the window bounds what a first sync
//!   loads, not what later syncs update.
//! - **Deletes.** Both listings send `showDeleted=true` (Google asks for the same parameters on
//!   full and incremental listings); cancelled events come back as `deleted` records, and the
//!   engine ignores deletes of records it never stored.
//! - **410 `fullSyncRequired`.** When Google drops a sync token the adapter restarts by itself: a
//!   full listing of the window, then a *gap* listing with `updatedMin` = when the lost token was
//!   issued (less a margin) and no time bounds, which catches events cancelled or moved out of the
//!   window while the token was dead. The window listing's `nextSyncToken` (a position taken when
//!   its first page was served) becomes the new cursor, so nothing is lost and re-delivered events
//!   are idempotent upserts by event id. A cursor the adapter cannot read is `CursorExpired`, which
//!   the worker answers with a plain full pull.
//! - **Push channels.** `ensure_channel` opens an `events.watch` channel asking for 7 days (Google's
//!   cap for events), and renews it once less than a day is left: a new channel first, then
//!   `channels.stop` on the old one, so no change goes unnotified. The channel token (the secret a
//!   notification must carry) is kept across renewals, so a notification from the old channel in
//!   the overlap still verifies.
//! - **Rate limits.** 429 and 403 `rateLimitExceeded`/`userRateLimitExceeded` are retried inline
//!   with exponential backoff and jitter (or `Retry-After`), then `RateLimited`.

use std::time::Duration;

use async_trait::async_trait;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use http::StatusCode;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::provider_http::{Call, Dialect, ProviderHttp, Reply, RetryPolicy};
use crate::config::OAuthApp;
use crate::domain::mapping::FieldMap;
use crate::domain::record::Fields;
use crate::domain::{
    Connection, Credentials, ExternalId, IdempotencyKey, ObjectType, Provider, PushChannel, RemoteRecord,
    SyncCursor,
};
use crate::ports::{
    ErrorClass, Precondition, ProviderClient, ProviderError, ProviderFactory, ProviderWrite, PulledPage,
    RequestStats, WriteAck,
};

/// Google's OAuth token endpoint (configurable: `GOOGLE_TOKEN_URL`).
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// Google's API root (a connection's `base_url`).
pub const DEFAULT_API_ROOT: &str = "https://www.googleapis.com/calendar/v3";
const CALENDAR: &str = "primary";
const PAGE_SIZE: usize = 250;
const CURSOR_VERSION: u8 = 1;
/// How far before a lost sync token's issue time the gap listing reaches (clock skew, late writes).
const GAP_MARGIN: chrono::Duration = chrono::Duration::minutes(10);
/// The channel lifetime `ensure_channel` asks for (Google grants at most about a week for events).
pub const CHANNEL_TTL: chrono::Duration = chrono::Duration::days(7);

/// Google event property -> canonical field. `start` also yields `all_day`. Any other property
/// named in a connection's overrides is read from and written to `extendedProperties.private`.
pub const DEFAULT_FIELDS: &[(&str, &str)] = &[
    ("summary", "title"),
    ("start", "start"),
    ("end", "end"),
    ("status", "status"),
    ("organizer", "organizer"),
    ("attendees", "attendees"),
    ("location", "location"),
    ("description", "description"),
];
const STANDARD: &[&str] =
    &["summary", "start", "end", "status", "organizer", "attendees", "location", "description"];

/// How a client retries rate-limit answers.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Retries after a rate-limit answer before giving up with `RateLimited`.
    pub max_retries: u32,
    /// First wait; doubles each retry, with jitter (half to all of it).
    pub base: Duration,
    /// Longest single wait (a longer `Retry-After` is returned as `RateLimited`).
    pub max_wait: Duration,
    pub request_timeout: Duration,
}

impl Backoff {
    /// As the shared send path's policy: rate limits waited out in place up to `max_wait`.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            request_timeout: self.request_timeout,
            max_retries: self.max_retries,
            backoff_base: self.base,
            backoff_cap: self.max_wait,
            max_inline_wait: self.max_wait,
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            max_retries: 4,
            base: Duration::from_millis(500),
            max_wait: Duration::from_secs(16),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Builds [`GoogleClient`]s; holds the shared HTTP client, the OAuth app and its token URL.
#[derive(Clone)]
pub struct GoogleFactory {
    http: reqwest::Client,
    app: Option<OAuthApp>,
    token_url: String,
    backoff: Backoff,
}

impl GoogleFactory {
    /// `app` is needed only to refresh tokens; `token_url` is Google's ([`DEFAULT_TOKEN_URL`]) or a
    /// fake's.
    pub fn new(http: reqwest::Client, app: Option<OAuthApp>, token_url: impl Into<String>) -> Self {
        Self { http, app, token_url: token_url.into(), backoff: Backoff::default() }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The concrete client, for the push-channel methods the port does not cover.
    pub fn google_client(&self, connection: &Connection) -> Result<GoogleClient, ProviderError> {
        if connection.provider != Provider::Google {
            return Err(ProviderError::permanent(format!(
                "the Google adapter cannot serve a {} connection",
                connection.provider
            )));
        }
        GoogleClient::new(self.http.clone(), connection, self.app.clone(), &self.token_url, self.backoff)
    }
}

impl ProviderFactory for GoogleFactory {
    fn client(&self, connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError> {
        Ok(Box::new(self.google_client(connection)?))
    }
}

/// One Google calendar seen through its API.
pub struct GoogleClient {
    http: reqwest::Client,
    net: ProviderHttp<GoogleDialect>,
    base: String,
    token_url: String,
    app: Option<OAuthApp>,
    window_days: u32,
    fields: FieldMap,
}

/// A push channel Google created by `events.watch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchChannel {
    pub id: String,
    /// Google's id of the watched resource (needed to stop the channel).
    pub resource_id: String,
    pub expiration: DateTime<Utc>,
}

impl WatchChannel {
    /// True when the channel expires within `margin` of `now` (renew it then).
    pub fn needs_renewal(&self, now: DateTime<Utc>, margin: chrono::Duration) -> bool {
        self.expiration - margin <= now
    }
}

/// Google's error body: `{"error": {"code", "message", "errors": [{"reason", ...}]}}`.
fn error_reason(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    e.get("errors")
        .and_then(|list| list.get(0))
        .and_then(|first| first.get("reason"))
        .and_then(Value::as_str)
        .or_else(|| e.get("status").and_then(Value::as_str))
        .map(str::to_owned)
}

/// What is Google's own in its answers: the `reason` of its error body, and which reasons are
/// rate limits. <https://developers.google.com/calendar/api/guides/errors>
#[derive(Debug, Clone, Copy, Default)]
pub struct GoogleDialect;

impl Dialect for GoogleDialect {
    fn name(&self) -> &'static str {
        "Google"
    }

    fn error_detail(&self, reply: &Reply) -> (Option<String>, Option<String>) {
        let message = reply
            .json_value()
            .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_owned));
        (error_reason(&reply.body), message)
    }

    fn classify(&self, status: StatusCode, reason: Option<&str>) -> Option<ErrorClass> {
        match (status, reason) {
            // Per-user and per-project rate limits answer 403 (or 429): back off and retry.
            (StatusCode::FORBIDDEN, Some("rateLimitExceeded" | "userRateLimitExceeded")) => {
                Some(ErrorClass::RateLimited)
            }
            // The day's quota is spent: come back in an hour.
            (StatusCode::FORBIDDEN, Some("dailyLimitExceeded" | "quotaExceeded")) => {
                Some(ErrorClass::RateLimited)
            }
            // Only a lost sync token (or an `updatedMin` Google no longer serves) expires the cursor.
            (StatusCode::GONE, Some("fullSyncRequired" | "updatedMinTooLongAgo")) => {
                Some(ErrorClass::CursorExpired)
            }
            (StatusCode::GONE, _) => Some(ErrorClass::Permanent),
            _ => None,
        }
    }

    fn rate_limit_wait(&self, reply: &Reply) -> Option<Duration> {
        if matches!(error_reason(&reply.body).as_deref(), Some("dailyLimitExceeded" | "quotaExceeded")) {
            return Some(Duration::from_secs(3_600));
        }
        reply.retry_after()
    }
}

/// Where a pull stands (the JSON inside [`SyncCursor`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    /// Listing the window; `gap_since` set when this restarts after a lost sync token.
    Window {
        page_token: Option<String>,
        time_min: DateTime<Utc>,
        time_max: DateTime<Utc>,
        started_at: DateTime<Utc>,
        gap_since: Option<DateTime<Utc>>,
    },
    /// After a restart: events updated since the lost token, without time bounds.
    Gap { page_token: Option<String>, since: DateTime<Utc>, sync_token: String, started_at: DateTime<Utc> },
    /// Following `syncToken`s; `synced_at` is when the token's listing began. While paging,
    /// `paging_since` is when the current listing began (it becomes the next `synced_at`).
    Incremental {
        sync_token: String,
        page_token: Option<String>,
        synced_at: DateTime<Utc>,
        #[serde(default)]
        paging_since: Option<DateTime<Utc>>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct CursorDoc {
    v: u8,
    #[serde(flatten)]
    phase: Phase,
}

impl Phase {
    fn parse(cursor: &SyncCursor) -> Result<Phase, ProviderError> {
        match serde_json::from_str::<CursorDoc>(cursor.as_str()) {
            Ok(doc) if doc.v == CURSOR_VERSION => Ok(doc.phase),
            _ => Err(ProviderError::CursorExpired),
        }
    }

    fn to_cursor(&self) -> SyncCursor {
        let doc = CursorDoc { v: CURSOR_VERSION, phase: self.clone() };
        SyncCursor::new(serde_json::to_string(&doc).unwrap_or_default())
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventsPage {
    #[serde(default)]
    items: Vec<Value>,
    next_page_token: Option<String>,
    next_sync_token: Option<String>,
}

fn utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An `EventDateTime` as canonical: `(value, all_day)`; `dateTime` converted to UTC.
fn event_time(v: &Value) -> Result<(Value, bool), ProviderError> {
    if let Some(dt) = v.get("dateTime").and_then(Value::as_str) {
        let t = DateTime::parse_from_rfc3339(dt)
            .map_err(|_| ProviderError::permanent(format!("Google returned an invalid dateTime {dt:?}")))?;
        return Ok((Value::String(utc(t.with_timezone(&Utc))), false));
    }
    if let Some(d) = v.get("date").and_then(Value::as_str) {
        let day = NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| ProviderError::permanent(format!("Google returned an invalid date {d:?}")))?;
        return Ok((Value::String(day.format("%Y-%m-%d").to_string()), true));
    }
    Ok((Value::Null, false))
}

fn text(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Value::String(s.clone()),
        Some(Value::Number(n)) => Value::String(n.to_string()),
        Some(Value::Bool(b)) => Value::String(b.to_string()),
        _ => Value::Null,
    }
}

fn lower_email(v: &Value) -> Option<String> {
    v.get("email").and_then(Value::as_str).map(|e| e.trim().to_lowercase()).filter(|e| !e.is_empty())
}

/// Maps a Google event to a remote record with canonical field names.
fn map_event(ev: &Value, fields: &FieldMap) -> Result<RemoteRecord, ProviderError> {
    let id = ev.get("id").and_then(Value::as_str).unwrap_or_default();
    let external_id = ExternalId::parse(id.to_owned())
        .map_err(|e| ProviderError::permanent(format!("Google returned an unusable event id: {e}")))?;
    let status = ev.get("status").and_then(Value::as_str).unwrap_or("confirmed");
    let deleted = status == "cancelled";
    let mut out = Fields::new();
    for (property, canonical) in fields.pairs() {
        if deleted && property != "status" {
            continue;
        }
        let value = match property {
            "start" | "end" => {
                let (value, all_day) = match ev.get(property) {
                    Some(t) => event_time(t)?,
                    None => (Value::Null, false),
                };
                if property == "start" {
                    out.insert("all_day".into(), Value::Bool(all_day));
                }
                value
            }
            "status" => Value::String(status.to_owned()),
            "organizer" => ev.get("organizer").and_then(lower_email).map_or(Value::Null, Value::String),
            "attendees" => {
                let mut emails: Vec<String> = ev
                    .get("attendees")
                    .and_then(Value::as_array)
                    .map(|list| list.iter().filter_map(lower_email).collect())
                    .unwrap_or_default();
                emails.sort();
                emails.dedup();
                json!(emails)
            }
            p if STANDARD.contains(&p) => text(ev.get(p)),
            custom => {
                let ext = ev.get("extendedProperties");
                let found = ext
                    .and_then(|x| x.pointer(&format!("/private/{custom}")))
                    .or_else(|| ext.and_then(|x| x.pointer(&format!("/shared/{custom}"))));
                text(found)
            }
        };
        out.insert(canonical.to_owned(), value);
    }
    let updated = ev
        .get("updated")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    Ok(RemoteRecord {
        external_id,
        object: ObjectType::Events,
        fields: out,
        remote_modified_at: updated,
        deleted,
        etag: ev.get("etag").and_then(Value::as_str).map(str::to_owned),
    })
}

/// A canonical time as an `EventDateTime`: a `YYYY-MM-DD` (or `all_day`) is a `date`.
fn to_event_time(v: &Value, all_day: bool) -> Result<Value, ProviderError> {
    let Some(s) = v.as_str() else {
        return Err(ProviderError::permanent("event start and end must be strings"));
    };
    if let Ok(day) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(json!({ "date": day.format("%Y-%m-%d").to_string() }));
    }
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|_| ProviderError::permanent(format!("not an RFC 3339 time: {s:?}")))?;
    if all_day {
        return Ok(json!({ "date": t.date_naive().format("%Y-%m-%d").to_string() }));
    }
    Ok(json!({ "dateTime": utc(t.with_timezone(&Utc)), "timeZone": "UTC" }))
}

/// Canonical fields as a Google Event body (only the mapped fields present in `fields`).
fn event_body(fields: &Fields, map: &FieldMap) -> Result<Map<String, Value>, ProviderError> {
    let all_day = fields.get("all_day").and_then(Value::as_bool).unwrap_or(false);
    let mut body = Map::new();
    let mut private = Map::new();
    for (property, canonical) in map.pairs() {
        let Some(value) = fields.get(canonical) else { continue };
        match property {
            "start" | "end" => {
                body.insert(property.to_owned(), to_event_time(value, all_day)?);
            }
            "organizer" => {}
            "attendees" => {
                let emails = value.as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>());
                let list: Vec<Value> =
                    emails.unwrap_or_default().into_iter().map(|e| json!({ "email": e })).collect();
                body.insert("attendees".into(), Value::Array(list));
            }
            p if STANDARD.contains(&p) => {
                body.insert(p.to_owned(), if value.is_null() { Value::Null } else { text(Some(value)) });
            }
            custom => {
                private.insert(custom.to_owned(), text(Some(value)));
            }
        }
    }
    if !private.is_empty() {
        body.insert("extendedProperties".into(), json!({ "private": private }));
    }
    Ok(body)
}

/// The event id for a create: base32hex (`a-v`, `0-9`) of SHA-256 of the idempotency key, so a
/// retried create asks for the same id and Google's 409 reveals the first attempt's event.
pub fn event_id_for(key: &IdempotencyKey) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let digest = Sha256::digest(key.as_str().as_bytes());
    let mut out = String::from("sb");
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in digest {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn random_channel_id() -> String {
    let v: u128 = rand::rng().random();
    let h = format!("{v:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelReply {
    id: String,
    resource_id: String,
    expiration: Option<String>,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: i64,
}

/// The API root of a base URL: an origin alone (`https://www.googleapis.com`, the API's default for
/// Google connections) gets Google's `/calendar/v3`; a URL with a path is used as given.
fn api_root(base_url: &str) -> String {
    let trimmed = base_url.trim_end_matches('/');
    match url::Url::parse(trimmed) {
        Ok(u) if u.path().trim_matches('/').is_empty() => format!("{trimmed}/calendar/v3"),
        _ => trimmed.to_owned(),
    }
}

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

impl GoogleClient {
    /// A client for the connection's API root (`https://www.googleapis.com/calendar/v3` or a fake).
    pub fn new(
        http: reqwest::Client,
        connection: &Connection,
        app: Option<OAuthApp>,
        token_url: &str,
        backoff: Backoff,
    ) -> Result<Self, ProviderError> {
        for (what, value) in [("base URL", connection.base_url.as_str()), ("token URL", token_url)] {
            let parsed = url::Url::parse(value)
                .map_err(|e| ProviderError::permanent(format!("invalid Google {what}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ProviderError::permanent(format!("Google {what} must be http(s)")));
            }
        }
        let fields = FieldMap::new(DEFAULT_FIELDS)
            .with_overrides(connection.settings.field_mapping.get(&ObjectType::Events));
        Ok(Self {
            net: ProviderHttp::new(http.clone(), GoogleDialect, backoff.policy()),
            http,
            base: api_root(&connection.base_url),
            token_url: token_url.to_owned(),
            app,
            window_days: connection
                .settings
                .calendar_window_days
                .clamp(1, crate::domain::connection::MAX_CALENDAR_WINDOW_DAYS),
            fields,
        })
    }

    fn events_url(&self) -> String {
        format!("{}/calendars/{CALENDAR}/events", self.base)
    }

    fn event_url(&self, id: &str) -> String {
        format!("{}/{}", self.events_url(), encode(id))
    }

    /// Sends a request through the shared send path.
    async fn send(
        &self,
        call: Call,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply, ProviderError> {
        self.net.send(call, make).await
    }

    async fn list(
        &self,
        token: &SecretString,
        query: &[(&str, String)],
    ) -> Result<EventsPage, ProviderError> {
        let url = self.events_url();
        let mut q: Vec<(&str, String)> = vec![
            ("singleEvents", "true".into()),
            ("showDeleted", "true".into()),
            ("maxResults", PAGE_SIZE.to_string()),
        ];
        q.extend(query.iter().cloned());
        self.send(Call::read("events.list"), || {
            self.http.get(&url).bearer_auth(token.expose_secret()).query(&q)
        })
        .await?
        .check()?
        .json()
    }

    fn records(&self, page: &EventsPage) -> Result<Vec<RemoteRecord>, ProviderError> {
        page.items.iter().map(|ev| map_event(ev, &self.fields)).collect()
    }

    fn window_phase(&self, gap_since: Option<DateTime<Utc>>) -> Phase {
        let now = Utc::now();
        Phase::Window {
            page_token: None,
            time_min: now,
            time_max: now + chrono::Duration::days(i64::from(self.window_days)),
            started_at: now,
            gap_since,
        }
    }

    /// Pulls one page of `phase`.
    async fn pull(&self, token: &SecretString, phase: Phase) -> Result<PulledPage, ProviderError> {
        match phase {
            Phase::Window { page_token, time_min, time_max, started_at, gap_since } => {
                let mut q = vec![("timeMin", utc(time_min)), ("timeMax", utc(time_max))];
                q.extend(page_token.map(|p| ("pageToken", p)));
                let page = self.list(token, &q).await?;
                let records = self.records(&page)?;
                let (next, has_more) = match (page.next_page_token, page.next_sync_token, gap_since) {
                    (Some(p), _, _) => (
                        Phase::Window { page_token: Some(p), time_min, time_max, started_at, gap_since },
                        true,
                    ),
                    (None, Some(sync_token), Some(since)) => {
                        (Phase::Gap { page_token: None, since, sync_token, started_at }, true)
                    }
                    (None, Some(sync_token), None) => (
                        Phase::Incremental {
                            sync_token,
                            page_token: None,
                            synced_at: started_at,
                            paging_since: None,
                        },
                        false,
                    ),
                    (None, None, _) => return Err(missing_sync_token()),
                };
                Ok(PulledPage { records, cursor: next.to_cursor(), has_more, reconcile_deletes: false })
            }
            Phase::Gap { page_token, since, sync_token, started_at } => {
                let mut q = vec![("updatedMin", utc(since))];
                q.extend(page_token.map(|p| ("pageToken", p)));
                let page = match self.list(token, &q).await {
                    // 410 `updatedMinTooLongAgo`: Google no longer lists changes that far back.
                    // The window listing has every current event; only cancellations of events
                    // outside it while the token was dead are lost. Go on from the new token.
                    Err(ProviderError::CursorExpired) => {
                        tracing::warn!("Google no longer serves the gap listing; going on incrementally");
                        let next = Phase::Incremental {
                            sync_token,
                            page_token: None,
                            synced_at: started_at,
                            paging_since: None,
                        };
                        return Ok(PulledPage {
                            records: Vec::new(),
                            cursor: next.to_cursor(),
                            has_more: true,
                            reconcile_deletes: false,
                        });
                    }
                    other => other?,
                };
                let records = self.records(&page)?;
                let (next, has_more) = match page.next_page_token {
                    Some(p) => (Phase::Gap { page_token: Some(p), since, sync_token, started_at }, true),
                    None => (
                        Phase::Incremental {
                            sync_token,
                            page_token: None,
                            synced_at: started_at,
                            paging_since: None,
                        },
                        false,
                    ),
                };
                Ok(PulledPage { records, cursor: next.to_cursor(), has_more, reconcile_deletes: false })
            }
            Phase::Incremental { sync_token, page_token, synced_at, paging_since } => {
                let started = paging_since.filter(|_| page_token.is_some()).unwrap_or_else(Utc::now);
                let mut q = vec![("syncToken", sync_token.clone())];
                q.extend(page_token.map(|p| ("pageToken", p)));
                let page = match self.list(token, &q).await {
                    Err(ProviderError::CursorExpired) => {
                        tracing::warn!("Google sync token expired; restarting with a window and gap listing");
                        let restart = self.window_phase(Some(synced_at - GAP_MARGIN));
                        return Box::pin(self.pull(token, restart)).await;
                    }
                    other => other?,
                };
                let records = self.records(&page)?;
                let (next, has_more) = match (page.next_page_token, page.next_sync_token) {
                    (Some(p), _) => (
                        Phase::Incremental {
                            sync_token,
                            page_token: Some(p),
                            synced_at,
                            paging_since: Some(started),
                        },
                        true,
                    ),
                    (None, Some(s)) => (
                        Phase::Incremental {
                            sync_token: s,
                            page_token: None,
                            synced_at: started,
                            paging_since: None,
                        },
                        false,
                    ),
                    (None, None) => return Err(missing_sync_token()),
                };
                Ok(PulledPage { records, cursor: next.to_cursor(), has_more, reconcile_deletes: false })
            }
        }
    }

    async fn get_event(&self, token: &SecretString, id: &str) -> Result<Value, ProviderError> {
        let url = self.event_url(id);
        self.send(Call::read("events.get"), || self.http.get(&url).bearer_auth(token.expose_secret()))
            .await?
            .check()?
            .json()
    }

    fn ack(&self, ev: &Value) -> Result<WriteAck, ProviderError> {
        let record = map_event(ev, &self.fields)?;
        Ok(WriteAck {
            external_id: record.external_id,
            remote_modified_at: record.remote_modified_at,
            etag: record.etag,
            fields: Some(record.fields),
        })
    }

    async fn create(
        &self,
        token: &SecretString,
        fields: &Fields,
        key: &IdempotencyKey,
    ) -> Result<WriteAck, ProviderError> {
        let id = event_id_for(key);
        let mut body = event_body(fields, &self.fields)?;
        if !body.contains_key("start") || !body.contains_key("end") {
            return Err(ProviderError::permanent("an event needs start and end"));
        }
        body.insert("id".into(), Value::String(id.clone()));
        let url = self.events_url();
        let reply = self
            .send(Call::idempotent_write("events.insert"), || {
                self.http.post(&url).bearer_auth(token.expose_secret()).json(&body)
            })
            .await?;
        if reply.status == StatusCode::CONFLICT && error_reason(&reply.body).as_deref() == Some("duplicate") {
            tracing::info!(event_id = %id, "event already created by an earlier attempt");
            let existing = self.get_event(token, &id).await?;
            return self.ack(&existing);
        }
        self.ack(&reply.check()?.json()?)
    }

    /// The `If-Match` etag for a precondition: the given etag, or (with only `unmodified_since`)
    /// the current one after checking Google's `updated` stamp. `Err(Conflict)` if it moved on.
    async fn if_match(
        &self,
        token: &SecretString,
        id: &str,
        precondition: &Precondition,
    ) -> Result<Option<String>, ProviderError> {
        if let Some(etag) = &precondition.etag {
            return Ok(Some(etag.clone()));
        }
        let Some(since) = precondition.unmodified_since else { return Ok(None) };
        let current = self.get_event(token, id).await?;
        let record = map_event(&current, &self.fields)?;
        if record.remote_modified_at.is_some_and(|t| t > since) {
            return Err(ProviderError::Conflict);
        }
        Ok(record.etag)
    }

    async fn update(
        &self,
        token: &SecretString,
        id: &ExternalId,
        fields: &Fields,
        precondition: &Precondition,
    ) -> Result<WriteAck, ProviderError> {
        let body = event_body(fields, &self.fields)?;
        let etag = self.if_match(token, id.as_str(), precondition).await?;
        let url = self.event_url(id.as_str());
        let reply = self
            .send(Call::write("events.patch"), || {
                let req = self.http.patch(&url).bearer_auth(token.expose_secret()).json(&body);
                match &etag {
                    Some(e) => req.header(http::header::IF_MATCH, e),
                    None => req,
                }
            })
            .await?;
        self.ack(&reply.check()?.json()?)
    }

    async fn delete(
        &self,
        token: &SecretString,
        id: &ExternalId,
        precondition: &Precondition,
    ) -> Result<WriteAck, ProviderError> {
        let etag = self.if_match(token, id.as_str(), precondition).await?;
        let url = self.event_url(id.as_str());
        let reply = self
            .send(Call::idempotent_write("events.delete"), || {
                let req = self.http.delete(&url).bearer_auth(token.expose_secret());
                match &etag {
                    Some(e) => req.header(http::header::IF_MATCH, e),
                    None => req,
                }
            })
            .await?;
        let ack = WriteAck { external_id: id.clone(), remote_modified_at: None, etag: None, fields: None };
        match reply.status {
            // Already deleted: the delete's effect holds.
            StatusCode::GONE | StatusCode::NOT_FOUND => Ok(ack),
            _ => reply.check().map(|_| ack),
        }
    }

    /// Opens a push channel (`events.watch`) on the primary calendar: Google will POST to
    /// `address` with `X-Goog-Channel-Token: channel_token` on every change. `ttl` asks for a
    /// lifetime (Google caps it; the reply's expiration is what counts).
    pub async fn watch(
        &self,
        token: &SecretString,
        address: &str,
        channel_token: &SecretString,
        ttl: Option<chrono::Duration>,
    ) -> Result<WatchChannel, ProviderError> {
        let mut body = json!({
            "id": random_channel_id(),
            "type": "web_hook",
            "address": address,
            "token": channel_token.expose_secret(),
        });
        if let Some(ttl) = ttl {
            body["expiration"] = json!((Utc::now() + ttl).timestamp_millis().to_string());
        }
        let url = format!("{}/watch", self.events_url());
        let reply = self
            .send(Call::write("events.watch"), || {
                self.http.post(&url).bearer_auth(token.expose_secret()).json(&body)
            })
            .await?;
        let channel: ChannelReply = reply.check()?.json()?;
        let expiration = channel
            .expiration
            .and_then(|e| e.parse::<i64>().ok())
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| ProviderError::permanent("Google's channel has no usable expiration"))?;
        Ok(WatchChannel { id: channel.id, resource_id: channel.resource_id, expiration })
    }

    /// Stops a channel (`channels.stop`); a channel Google no longer knows counts as stopped.
    pub async fn stop_channel(
        &self,
        token: &SecretString,
        channel: &WatchChannel,
    ) -> Result<(), ProviderError> {
        let url = format!("{}/channels/stop", self.base);
        let body = json!({ "id": channel.id, "resourceId": channel.resource_id });
        let reply = self
            .send(Call::idempotent_write("channels.stop"), || {
                self.http.post(&url).bearer_auth(token.expose_secret()).json(&body)
            })
            .await?;
        match reply.status {
            StatusCode::NOT_FOUND => Ok(()),
            _ => reply.check().map(|_| ()),
        }
    }

    /// Renews `channel` when it expires within `margin`: opens the new channel first (no gap in
    /// notifications), then stops the old one. `Ok(None)` when no renewal is due yet.
    pub async fn renew_channel(
        &self,
        token: &SecretString,
        channel: &WatchChannel,
        address: &str,
        channel_token: &SecretString,
        margin: chrono::Duration,
    ) -> Result<Option<WatchChannel>, ProviderError> {
        if !channel.needs_renewal(Utc::now(), margin) {
            return Ok(None);
        }
        let fresh = self.watch(token, address, channel_token, None).await?;
        if let Err(e) = self.stop_channel(token, channel).await {
            // The old channel expires by itself; notifications from it still carry a valid token.
            tracing::warn!(error = %e, channel = %channel.id, "could not stop the old Google channel");
        }
        Ok(Some(fresh))
    }
}

fn missing_sync_token() -> ProviderError {
    ProviderError::permanent("Google's last page had neither nextPageToken nor nextSyncToken")
}

#[async_trait]
impl ProviderClient for GoogleClient {
    /// Events only. `None` starts a full listing of the window; the listing's last page switches
    /// the cursor to `syncToken` increments (`has_more = false`). See the module doc for 410s.
    async fn pull_page(
        &self,
        token: &SecretString,
        object: ObjectType,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        if object != ObjectType::Events {
            return Err(ProviderError::permanent(format!("the Google adapter does not sync {object}")));
        }
        let phase = match cursor {
            None => self.window_phase(None),
            Some(c) => Phase::parse(c)?,
        };
        self.pull(token, phase).await
    }

    /// One request per write, in order. Creates use an event id derived from the idempotency key
    /// (409 `duplicate` -> the existing event is acknowledged); updates are `events.patch` and
    /// deletes `events.delete`, both with `If-Match` (412 -> `Conflict`). After a rate limit or a
    /// rejected token, the remaining writes are not tried and get the same error.
    async fn write(
        &self,
        token: &SecretString,
        writes: &[ProviderWrite],
    ) -> Result<Vec<Result<WriteAck, ProviderError>>, ProviderError> {
        let mut out = Vec::with_capacity(writes.len());
        let mut stop: Option<fn() -> ProviderError> = None;
        for write in writes {
            if let Some(make) = stop {
                out.push(Err(make()));
                continue;
            }
            let object = match write {
                ProviderWrite::Create { object, .. }
                | ProviderWrite::Update { object, .. }
                | ProviderWrite::Delete { object, .. } => *object,
            };
            let result = if object != ObjectType::Events {
                Err(ProviderError::permanent(format!("the Google adapter does not write {object}")))
            } else {
                match write {
                    ProviderWrite::Create { fields, idempotency_key, .. } => {
                        self.create(token, fields, idempotency_key).await
                    }
                    ProviderWrite::Update { external_id, fields, precondition, .. } => {
                        self.update(token, external_id, fields, precondition).await
                    }
                    ProviderWrite::Delete { external_id, precondition, .. } => {
                        self.delete(token, external_id, precondition).await
                    }
                }
            };
            match &result {
                Err(ProviderError::Unauthorized) => stop = Some(|| ProviderError::Unauthorized),
                Err(ProviderError::RateLimited { .. }) => {
                    stop = Some(|| ProviderError::RateLimited { retry_after: Duration::from_secs(60) })
                }
                _ => {}
            }
            out.push(result);
        }
        Ok(out)
    }

    /// See the module doc: a 7-day `events.watch` channel, renewed (new first, then the old one
    /// stopped) within [`PushChannel::renewal_margin`] of its expiry, with the same channel token.
    async fn stop_channel(&self, token: &SecretString, channel: &PushChannel) -> Result<(), ProviderError> {
        let Some(resource_id) = channel.resource_id.clone() else {
            return Err(ProviderError::permanent(
                "a Google channel without its resource id cannot be stopped",
            ));
        };
        let watch = WatchChannel { id: channel.id.clone(), resource_id, expiration: channel.expires_at };
        GoogleClient::stop_channel(self, token, &watch).await
    }

    async fn ensure_channel(
        &self,
        token: &SecretString,
        address: &str,
        existing: Option<&PushChannel>,
        now: DateTime<Utc>,
    ) -> Result<Option<PushChannel>, ProviderError> {
        if let Some(current) = existing.filter(|c| !c.due_for_renewal(now)) {
            return Ok(Some(current.clone()));
        }
        let secret = existing.map(|c| c.secret.clone()).unwrap_or_else(PushChannel::new_secret);
        let fresh = self.watch(token, address, &secret, Some(CHANNEL_TTL)).await?;
        if let Some(old) = existing {
            match &old.resource_id {
                Some(resource_id) => {
                    let old = WatchChannel {
                        id: old.id.clone(),
                        resource_id: resource_id.clone(),
                        expiration: old.expires_at,
                    };
                    if let Err(e) = self.stop_channel(token, &old).await {
                        // It expires by itself; its notifications still carry the valid token.
                        tracing::warn!(error = %e, channel = %old.id, "could not stop the old Google channel");
                    }
                }
                None => {
                    tracing::warn!(channel = %old.id, "old Google channel has no resource id; left to expire")
                }
            }
        }
        Ok(Some(PushChannel {
            id: fresh.id,
            resource_id: Some(fresh.resource_id),
            secret,
            expires_at: fresh.expiration,
        }))
    }

    /// `POST {token_url}` (`grant_type=refresh_token`) with the app's client credentials. A refresh
    /// token Google rejects (`invalid_grant`) is `Unauthorized`; a rejected client is `Permanent`.
    async fn refresh(&self, refresh_token: &SecretString) -> Result<Credentials, ProviderError> {
        let Some(app) = &self.app else {
            return Err(ProviderError::permanent("no Google OAuth app is configured"));
        };
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.expose_secret()),
            ("refresh_token", refresh_token.expose_secret()),
        ];
        let reply = self.send(Call::write("token"), || self.http.post(&self.token_url).form(&form)).await?;
        let oauth_error = serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned));
        match (reply.status, oauth_error.as_deref()) {
            (StatusCode::BAD_REQUEST, Some("invalid_grant")) => return Err(ProviderError::Unauthorized),
            (StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED, Some(e)) => {
                return Err(ProviderError::permanent(format!("Google refused the token refresh: {e}")));
            }
            _ => {}
        }
        let tokens: TokenReply = reply.check()?.json()?;
        Ok(Credentials::refreshed(
            tokens.access_token,
            tokens.refresh_token,
            refresh_token,
            Some(Utc::now() + chrono::Duration::seconds(tokens.expires_in.max(0))),
        ))
    }

    fn stats(&self) -> RequestStats {
        RequestStats { ..self.net.stats() }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn map() -> FieldMap {
        FieldMap::new(DEFAULT_FIELDS)
    }

    #[test]
    fn events_map_to_canonical_fields_in_utc_with_sorted_lowercase_attendees() {
        let ev = json!({
            "id": "abc123", "etag": "\"33\"", "status": "confirmed", "summary": "Demo",
            "updated": "2026-03-01T10:00:00.000Z",
            "start": { "dateTime": "2026-03-02T09:00:00-05:00", "timeZone": "America/New_York" },
            "end": { "dateTime": "2026-03-02T09:30:00-05:00" },
            "organizer": { "email": "Owner@Acme.example" },
            "attendees": [{ "email": "Zed@x.example" }, { "email": "ann@acme.example" }, { "email": "zed@x.example" }],
        });
        let r = map_event(&ev, &map()).unwrap();
        assert_eq!(r.external_id.as_str(), "abc123");
        assert_eq!(r.etag.as_deref(), Some("\"33\""));
        assert!(!r.deleted);
        assert_eq!(r.fields["title"], json!("Demo"));
        assert_eq!(r.fields["start"], json!("2026-03-02T14:00:00Z"));
        assert_eq!(r.fields["end"], json!("2026-03-02T14:30:00Z"));
        assert_eq!(r.fields["all_day"], json!(false));
        assert_eq!(r.fields["organizer"], json!("owner@acme.example"));
        assert_eq!(r.fields["attendees"], json!(["ann@acme.example", "zed@x.example"]));
        assert_eq!(r.fields["location"], Value::Null);
        assert_eq!(r.remote_modified_at.unwrap().to_rfc3339(), "2026-03-01T10:00:00+00:00");
    }

    #[test]
    fn all_day_and_cancelled_events_map_to_dates_and_deletes() {
        let ev = json!({ "id": "d1", "start": { "date": "2026-03-02" }, "end": { "date": "2026-03-03" } });
        let r = map_event(&ev, &map()).unwrap();
        assert_eq!(r.fields["start"], json!("2026-03-02"));
        assert_eq!(r.fields["all_day"], json!(true));
        assert_eq!(r.fields["status"], json!("confirmed"));
        let gone = map_event(&json!({ "id": "d1", "status": "cancelled" }), &map()).unwrap();
        assert!(gone.deleted);
        assert_eq!(gone.fields.len(), 1);
        assert!(map_event(&json!({ "id": "x1", "start": { "dateTime": "yesterday" } }), &map()).is_err());
        assert!(map_event(&json!({ "summary": "no id" }), &map()).is_err());
    }

    #[test]
    fn overrides_map_custom_fields_to_private_extended_properties_both_ways() {
        let overrides: BTreeMap<String, String> =
            [("deal_id".to_owned(), "sbDeal".to_owned()), ("location".to_owned(), String::new())].into();
        let m = map().with_overrides(Some(&overrides));
        let ev = json!({ "id": "e1", "location": "Room", "extendedProperties": { "private": { "sbDeal": "42" } } });
        let r = map_event(&ev, &m).unwrap();
        assert_eq!(r.fields["deal_id"], json!("42"));
        assert!(!r.fields.contains_key("location"));
        let fields: Fields = [("deal_id".to_owned(), json!("7")), ("title".to_owned(), json!("T"))].into();
        let body = event_body(&fields, &m).unwrap();
        assert_eq!(
            Value::Object(body),
            json!({ "summary": "T", "extendedProperties": { "private": { "sbDeal": "7" } } })
        );
    }

    #[test]
    fn canonical_times_become_event_date_times() {
        let fields: Fields = [
            ("start".to_owned(), json!("2026-03-02T14:00:00+01:00")),
            ("end".to_owned(), json!("2026-03-02")),
            ("attendees".to_owned(), json!(["a@x.example"])),
            ("organizer".to_owned(), json!("ignored@x.example")),
        ]
        .into();
        let body = Value::Object(event_body(&fields, &map()).unwrap());
        assert_eq!(body["start"], json!({ "dateTime": "2026-03-02T13:00:00Z", "timeZone": "UTC" }));
        assert_eq!(body["end"], json!({ "date": "2026-03-02" }));
        assert_eq!(body["attendees"], json!([{ "email": "a@x.example" }]));
        assert!(body.get("organizer").is_none(), "organizer is read-only at Google");
        let bad: Fields = [("start".to_owned(), json!("soon"))].into();
        assert!(event_body(&bad, &map()).is_err());
    }

    #[test]
    fn event_ids_from_keys_are_stable_base32hex_within_googles_limits() {
        let a = event_id_for(&IdempotencyKey::parse("push-item-1").unwrap());
        let b = event_id_for(&IdempotencyKey::parse("push-item-1").unwrap());
        let c = event_id_for(&IdempotencyKey::parse("push-item-2").unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!((5..=1024).contains(&a.len()));
        assert!(a.bytes().all(|x| matches!(x, b'a'..=b'v' | b'0'..=b'9')), "{a}");
    }

    #[test]
    fn rate_limits_are_403_with_a_rate_limit_reason_and_only_a_lost_sync_token_expires_the_cursor() {
        let d = GoogleDialect;
        let class = |status: StatusCode, reason: &str| d.classify(status, Some(reason));
        assert_eq!(class(StatusCode::FORBIDDEN, "rateLimitExceeded"), Some(ErrorClass::RateLimited));
        assert_eq!(class(StatusCode::FORBIDDEN, "userRateLimitExceeded"), Some(ErrorClass::RateLimited));
        assert_eq!(class(StatusCode::FORBIDDEN, "dailyLimitExceeded"), Some(ErrorClass::RateLimited));
        assert_eq!(class(StatusCode::FORBIDDEN, "forbidden"), None, "the shared table: permanent");
        assert_eq!(class(StatusCode::GONE, "fullSyncRequired"), Some(ErrorClass::CursorExpired));
        assert_eq!(class(StatusCode::GONE, "updatedMinTooLongAgo"), Some(ErrorClass::CursorExpired));
        assert_eq!(class(StatusCode::GONE, "deleted"), Some(ErrorClass::Permanent));
    }

    #[test]
    fn cursors_round_trip_and_unreadable_ones_expire() {
        let phase = Phase::Incremental {
            sync_token: "abc".into(),
            page_token: Some("p".into()),
            synced_at: Utc::now(),
            paging_since: Some(Utc::now()),
        };
        assert_eq!(Phase::parse(&phase.to_cursor()).unwrap(), phase);
        assert!(matches!(Phase::parse(&SyncCursor::new("nope")), Err(ProviderError::CursorExpired)));
    }

    #[test]
    fn an_origin_alone_gets_googles_api_path_and_a_full_root_is_kept() {
        assert_eq!(api_root("https://www.googleapis.com"), DEFAULT_API_ROOT);
        assert_eq!(api_root("https://www.googleapis.com/"), DEFAULT_API_ROOT);
        assert_eq!(api_root("https://www.googleapis.com/calendar/v3/"), DEFAULT_API_ROOT);
        assert_eq!(api_root("http://127.0.0.1:5/calendar/v3"), "http://127.0.0.1:5/calendar/v3");
    }

    #[test]
    fn channels_need_renewal_within_the_margin() {
        let now = Utc::now();
        let c = WatchChannel {
            id: "c".into(),
            resource_id: "r".into(),
            expiration: now + chrono::Duration::hours(2),
        };
        assert!(!c.needs_renewal(now, chrono::Duration::hours(1)));
        assert!(c.needs_renewal(now, chrono::Duration::hours(3)));
    }
}
