//! HubSpot CRM v3 adapter: pulls contacts (a full listing first, then incremental search on
//! `lastmodifieddate` with a lookback window), paces itself on HubSpot's rate limits, and refreshes
//! OAuth tokens through `/oauth/v1/token`.
//!
//! The cursor is this adapter's own JSON. Incremental pulls get around the search API's
//! 10,000-result cap by restarting the time window from the last timestamp seen (`GTE`, so ties
//! repeat rather than vanish) and, when more than a window's worth of records share one timestamp,
//! by paging those records by `hs_object_id`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::OAuthApp;
use crate::domain::record::Fields;
use crate::domain::{Connection, Credentials, ExternalId, ObjectType, Provider, RemoteRecord, SyncCursor};
use crate::ports::{ProviderClient, ProviderError, ProviderFactory, PulledPage, RequestStats};

const LIST_PAGE: usize = 100;
const SEARCH_PAGE: usize = 200;
/// HubSpot answers 400 to a search whose `after + limit` passes this.
const SEARCH_CAP: usize = 10_000;
const CURSOR_VERSION: u8 = 1;

/// HubSpot contact property -> canonical field.
const FIELD_MAP: &[(&str, &str)] = &[
    ("email", "email"),
    ("firstname", "first_name"),
    ("lastname", "last_name"),
    ("phone", "phone"),
    ("company", "company"),
    ("jobtitle", "job_title"),
    ("lifecyclestage", "lifecycle_stage"),
    ("hs_lead_status", "lead_status"),
];
const MODIFIED: &str = "lastmodifieddate";

/// How a client paces and retries. The defaults match HubSpot's documented limits.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// How far back each incremental window reaches before the last point known complete, for
    /// records HubSpot indexes late.
    pub lookback: Duration,
    /// Search requests per second (HubSpot: 5 per token).
    pub search_per_second: u32,
    /// A wait longer than this (from a 429 or the pacer) is returned as `RateLimited`.
    pub max_inline_wait: Duration,
    /// Retries after a 429 before giving up with `RateLimited`.
    pub max_retries: u32,
    pub request_timeout: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            lookback: Duration::from_secs(300),
            search_per_second: 5,
            max_inline_wait: Duration::from_secs(15),
            max_retries: 3,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Builds [`HubspotClient`]s; holds the shared HTTP client and the OAuth app.
#[derive(Clone)]
pub struct HubspotFactory {
    http: reqwest::Client,
    app: Option<OAuthApp>,
    pacing: Pacing,
}

impl HubspotFactory {
    /// `app` is needed only to refresh OAuth tokens (private-app tokens never expire).
    pub fn new(http: reqwest::Client, app: Option<OAuthApp>) -> Self {
        Self { http, app, pacing: Pacing::default() }
    }

    /// Replaces the pacing (for example a faster search pace against a fake without limits).
    pub fn with_pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }
}

impl ProviderFactory for HubspotFactory {
    /// A client for the connection's `base_url`, with its own rate limiter and counters.
    fn client(&self, connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError> {
        if connection.provider != Provider::Hubspot {
            return Err(ProviderError::Permanent(format!(
                "the HubSpot adapter cannot serve a {} connection",
                connection.provider
            )));
        }
        Ok(Box::new(HubspotClient::new(
            self.http.clone(),
            &connection.base_url,
            self.app.clone(),
            self.pacing,
        )?))
    }
}

/// One HubSpot account seen through its API. Use it from one task at a time (one connection's
/// job): its pacer assumes it is the token's only user, corrected by HubSpot's headers.
pub struct HubspotClient {
    http: reqwest::Client,
    base: String,
    app: Option<OAuthApp>,
    pacing: Pacing,
    limiter: tokio::sync::Mutex<Limiter>,
    requests: AtomicU64,
    rate_limited: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Search,
    Other,
}

/// Response instants of recent requests, and what HubSpot's headers said.
#[derive(Debug, Default)]
struct Limiter {
    general: VecDeque<Instant>,
    search: VecDeque<Instant>,
    max: Option<u32>,
    interval: Option<Duration>,
    remaining: Option<u32>,
}

fn header_num<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

impl Limiter {
    /// How long to wait before the next request so that no limit is passed.
    fn wait(&mut self, kind: Kind, now: Instant, search_per_second: u32) -> Duration {
        let interval = self.interval.unwrap_or(Duration::from_secs(10));
        while self.general.front().is_some_and(|t| now.duration_since(*t) >= interval) {
            self.general.pop_front();
        }
        while self.search.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
            self.search.pop_front();
        }
        let until = |t: Instant, span: Duration| (t + span).saturating_duration_since(now);
        let mut wait = Duration::ZERO;
        if let Some(max) = self.max.map(|m| m as usize).filter(|m| *m > 0)
            && self.general.len() >= max
        {
            wait = wait.max(until(self.general[self.general.len() - max], interval));
        }
        if self.remaining == Some(0)
            && let Some(oldest) = self.general.front()
        {
            wait = wait.max(until(*oldest, interval));
        }
        let per_second = search_per_second.max(1) as usize;
        if kind == Kind::Search && self.search.len() >= per_second {
            let t = self.search[self.search.len() - per_second];
            wait = wait.max(until(t, Duration::from_millis(1_010)));
        }
        wait
    }

    fn record(&mut self, kind: Kind, at: Instant, headers: &HeaderMap) {
        self.general.push_back(at);
        if kind == Kind::Search {
            self.search.push_back(at);
        }
        if let Some(max) = header_num(headers, "x-hubspot-ratelimit-max") {
            self.max = Some(max);
        }
        if let Some(ms) = header_num::<u64>(headers, "x-hubspot-ratelimit-interval-milliseconds") {
            self.interval = Some(Duration::from_millis(ms));
        }
        self.remaining = header_num(headers, "x-hubspot-ratelimit-remaining");
    }
}

/// A response with its body read.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    /// `message` (and `category`) from HubSpot's error body, bounded, or the status alone.
    fn error_text(&self) -> String {
        let parsed: Option<Value> = serde_json::from_slice(&self.body).ok();
        let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name)).and_then(Value::as_str);
        let mut text = format!("HTTP {}", self.status.as_u16());
        if let Some(c) = field("category").or_else(|| field("status")) {
            text.push_str(&format!(" {c}"));
        }
        if let Some(m) = field("message") {
            text.push_str(": ");
            text.extend(m.chars().take(200));
        }
        text
    }

    /// Maps a non-success status to the port's error kinds.
    fn check(self) -> Result<Reply, ProviderError> {
        match self.status {
            s if s.is_success() => Ok(self),
            StatusCode::UNAUTHORIZED => Err(ProviderError::Unauthorized),
            StatusCode::NOT_FOUND => Err(ProviderError::NotFound),
            s if s.is_server_error() => Err(ProviderError::Transient(self.error_text())),
            _ => Err(ProviderError::Permanent(self.error_text())),
        }
    }

    fn json<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ProviderError::Permanent(format!("malformed response body from HubSpot: {e}")))
    }

    /// The provider's clock (`Date` header) in epoch milliseconds.
    fn provider_now(&self) -> Option<i64> {
        let date = self.headers.get(http::header::DATE)?.to_str().ok()?;
        DateTime::parse_from_rfc2822(date).ok().map(|d| d.timestamp_millis())
    }
}

/// How long a 429 asks us to wait: `Retry-After` if sent, else by the policy that was hit.
fn retry_wait(headers: &HeaderMap, body: &[u8]) -> Duration {
    if let Some(secs) = header_num::<u64>(headers, "retry-after") {
        return Duration::from_secs(secs);
    }
    let policy = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("policyName").and_then(Value::as_str).map(str::to_owned));
    match policy.as_deref() {
        Some("DAILY") => Duration::from_secs(3_600),
        Some("SECONDLY") => Duration::from_millis(1_100),
        _ => header_num::<u64>(headers, "x-hubspot-ratelimit-interval-milliseconds")
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(10)),
    }
}

fn transport_error(e: reqwest::Error) -> ProviderError {
    let e = e.without_url();
    if e.is_timeout() {
        ProviderError::Transient("request to HubSpot timed out".into())
    } else {
        ProviderError::Transient(format!("request to HubSpot failed: {e}"))
    }
}

/// Where a pull stands (the JSON inside [`SyncCursor`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    /// Listing every contact by id.
    Full {
        after: Option<String>,
        /// The provider's clock when the listing began.
        started_at: Option<i64>,
        max_seen: Option<i64>,
    },
    /// Searching `lastmodifieddate >= since` (`> since` when `exclusive`), ascending.
    Incremental {
        since: i64,
        #[serde(default)]
        exclusive: bool,
        /// Offset within the current window.
        #[serde(default)]
        offset: usize,
        /// Timestamp of the window's first record.
        #[serde(default)]
        first_ts: Option<i64>,
        /// Paging the records stamped exactly `since` by `hs_object_id > tie_after`.
        #[serde(default)]
        tie_after: Option<u64>,
        max_seen: Option<i64>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct CursorDoc {
    v: u8,
    #[serde(flatten)]
    phase: Phase,
}

impl Phase {
    fn parse(cursor: Option<&SyncCursor>) -> Result<Phase, ProviderError> {
        let Some(cursor) = cursor else {
            return Ok(Phase::Full { after: None, started_at: None, max_seen: None });
        };
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

/// What one search page showed, for deciding the next step.
#[derive(Debug, Clone, Copy, Default)]
struct PageFacts {
    count: usize,
    first_ts: Option<i64>,
    last_ts: Option<i64>,
    last_id: Option<u64>,
    /// HubSpot's `paging.next.after`, when there are more results.
    next_after: Option<usize>,
    provider_now: Option<i64>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The cursor after an incremental page, and whether more pages follow right away.
fn next_incremental(
    current: &Phase,
    page: &PageFacts,
    max_seen: Option<i64>,
    lookback: Duration,
) -> (Phase, bool) {
    let Phase::Incremental { since, exclusive, offset, first_ts, tie_after, .. } = *current else {
        return (current.clone(), false);
    };
    let window = |since, exclusive, tie_after| Phase::Incremental {
        since,
        exclusive,
        offset: 0,
        first_ts: None,
        tie_after,
        max_seen,
    };
    if tie_after.is_some() {
        return match (page.next_after, page.last_id) {
            (Some(_), Some(last)) if page.count > 0 => (window(since, false, Some(last)), true),
            _ => (window(since, true, None), true),
        };
    }
    let Some(next_after) = page.next_after.filter(|_| page.count > 0) else {
        let lookback = ms(lookback);
        let (since, exclusive) = match (max_seen, page.provider_now) {
            (Some(m), Some(now)) if m <= now - lookback => (m, true),
            (Some(_), Some(now)) => (now - lookback, false),
            (Some(m), None) => (m - lookback, false),
            (None, Some(now)) if now - lookback > since => (now - lookback, false),
            (None, _) => (since, exclusive),
        };
        return (window(since, exclusive, None), false);
    };
    let first_ts = if offset == 0 { page.first_ts } else { first_ts };
    if next_after + SEARCH_PAGE <= SEARCH_CAP {
        let next =
            Phase::Incremental { since, exclusive, offset: next_after, first_ts, tie_after: None, max_seen };
        return (next, true);
    }
    let last = page.last_ts.unwrap_or(since);
    let all_one_stamp = (last == since && !exclusive) || first_ts == Some(last);
    if all_one_stamp { (window(last, false, Some(0)), true) } else { (window(last, false, None), true) }
}

#[derive(Debug, Deserialize)]
struct ObjectPage {
    #[serde(default)]
    results: Vec<HubObject>,
    paging: Option<Paging>,
}

#[derive(Debug, Deserialize)]
struct Paging {
    next: Option<NextPage>,
}

#[derive(Debug, Deserialize)]
struct NextPage {
    after: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HubObject {
    id: String,
    #[serde(default)]
    properties: HashMap<String, Value>,
    updated_at: Option<String>,
    #[serde(default)]
    archived: bool,
}

impl ObjectPage {
    fn next_after(&self) -> Option<&str> {
        self.paging.as_ref()?.next.as_ref().map(|n| n.after.as_str())
    }
}

fn parse_instant(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(ms) = value.trim().parse::<i64>() {
        return DateTime::from_timestamp_millis(ms);
    }
    DateTime::parse_from_rfc3339(value.trim()).ok().map(|d| d.with_timezone(&Utc))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Maps a HubSpot contact to a remote record with canonical field names.
fn map_contact(obj: &HubObject) -> Result<RemoteRecord, ProviderError> {
    let external_id = ExternalId::parse(obj.id.clone())
        .map_err(|e| ProviderError::Permanent(format!("HubSpot returned an unusable id: {e}")))?;
    let mut fields = Fields::new();
    for (property, field) in FIELD_MAP {
        let value = obj.properties.get(*property).and_then(text).map(Value::String);
        fields.insert((*field).to_owned(), value.unwrap_or(Value::Null));
    }
    let modified = obj
        .properties
        .get(MODIFIED)
        .and_then(text)
        .or_else(|| obj.updated_at.clone())
        .and_then(|s| parse_instant(&s));
    Ok(RemoteRecord {
        external_id,
        object: ObjectType::Contacts,
        fields,
        remote_modified_at: modified,
        etag: None,
        deleted: obj.archived,
    })
}

fn properties() -> Vec<&'static str> {
    FIELD_MAP.iter().map(|(p, _)| *p).chain([MODIFIED]).collect()
}

impl HubspotClient {
    /// A client for the account at `base_url` (`https://api.hubapi.com` or a fake).
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        app: Option<OAuthApp>,
        pacing: Pacing,
    ) -> Result<Self, ProviderError> {
        let parsed = url::Url::parse(base_url)
            .map_err(|e| ProviderError::Permanent(format!("invalid HubSpot base URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ProviderError::Permanent("HubSpot base URL must be http(s)".into()));
        }
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            app,
            pacing,
            limiter: tokio::sync::Mutex::new(Limiter::default()),
            requests: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
        })
    }

    /// Sends a request built by `make`, pacing before it and retrying 429s. Returns every other
    /// answer as it came; transport failures are `Transient`.
    async fn send(
        &self,
        kind: Kind,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply, ProviderError> {
        let mut attempt = 0;
        loop {
            let wait = self.limiter.lock().await.wait(kind, Instant::now(), self.pacing.search_per_second);
            if wait > self.pacing.max_inline_wait {
                return Err(ProviderError::RateLimited { retry_after: wait });
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let result = make().timeout(self.pacing.request_timeout).send().await;
            let resp = result.map_err(transport_error)?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map_err(transport_error)?;
            self.limiter.lock().await.record(kind, Instant::now(), &headers);
            if status != StatusCode::TOO_MANY_REQUESTS {
                return Ok(Reply { status, headers, body });
            }
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
            let wait = retry_wait(&headers, &body);
            tracing::warn!(wait_ms = wait.as_millis() as u64, attempt, "HubSpot answered 429");
            if attempt >= self.pacing.max_retries || wait > self.pacing.max_inline_wait {
                return Err(ProviderError::RateLimited { retry_after: wait });
            }
            attempt += 1;
            tokio::time::sleep(wait).await;
        }
    }

    async fn pull_full(
        &self,
        token: &SecretString,
        after: Option<String>,
        started_at: Option<i64>,
        max_seen: Option<i64>,
    ) -> Result<PulledPage, ProviderError> {
        let url = format!("{}/crm/v3/objects/contacts", self.base);
        let mut query = vec![
            ("limit", LIST_PAGE.to_string()),
            ("archived", "false".to_owned()),
            ("properties", properties().join(",")),
        ];
        if let Some(a) = &after {
            query.push(("after", a.clone()));
        }
        let reply = self
            .send(Kind::Other, || self.http.get(&url).bearer_auth(token.expose_secret()).query(&query))
            .await?
            .check()?;
        let page: ObjectPage = reply.json()?;
        let records = page.results.iter().map(map_contact).collect::<Result<Vec<_>, _>>()?;
        let max_seen = records
            .iter()
            .filter_map(|r| r.remote_modified_at.map(|t| t.timestamp_millis()))
            .chain(max_seen)
            .max();
        let started_at = started_at.or_else(|| reply.provider_now());
        let phase = match page.next_after() {
            Some(next) => Phase::Full { after: Some(next.to_owned()), started_at, max_seen },
            None => {
                let from = started_at.or(max_seen).unwrap_or(0);
                Phase::Incremental {
                    since: from - ms(self.pacing.lookback),
                    exclusive: false,
                    offset: 0,
                    first_ts: None,
                    tie_after: None,
                    max_seen,
                }
            }
        };
        Ok(PulledPage { records, cursor: phase.to_cursor(), has_more: true })
    }

    async fn pull_incremental(
        &self,
        token: &SecretString,
        current: Phase,
    ) -> Result<PulledPage, ProviderError> {
        let Phase::Incremental { since, exclusive, offset, tie_after, max_seen, .. } = current else {
            return Err(ProviderError::CursorExpired);
        };
        let body = match tie_after {
            Some(after_id) => json!({
                "filterGroups": [{"filters": [
                    {"propertyName": MODIFIED, "operator": "EQ", "value": since.to_string()},
                    {"propertyName": "hs_object_id", "operator": "GT", "value": after_id.to_string()},
                ]}],
                "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                "properties": properties(),
                "limit": SEARCH_PAGE,
            }),
            None => {
                let op = if exclusive { "GT" } else { "GTE" };
                let mut body = json!({
                    "filterGroups": [{"filters": [
                        {"propertyName": MODIFIED, "operator": op, "value": since.to_string()},
                    ]}],
                    "sorts": [{"propertyName": MODIFIED, "direction": "ASCENDING"}],
                    "properties": properties(),
                    "limit": SEARCH_PAGE,
                });
                if offset > 0 {
                    body["after"] = Value::String(offset.to_string());
                }
                body
            }
        };
        let url = format!("{}/crm/v3/objects/contacts/search", self.base);
        let reply = self
            .send(Kind::Search, || self.http.post(&url).bearer_auth(token.expose_secret()).json(&body))
            .await?
            .check()?;
        let page: ObjectPage = reply.json()?;
        let records = page.results.iter().map(map_contact).collect::<Result<Vec<_>, _>>()?;
        let stamps: Vec<i64> =
            records.iter().filter_map(|r| r.remote_modified_at.map(|t| t.timestamp_millis())).collect();
        let next_after = match page.next_after() {
            None => None,
            Some(a) => Some(a.parse::<usize>().map_err(|_| {
                ProviderError::Permanent("HubSpot search returned a non-numeric paging token".into())
            })?),
        };
        let facts = PageFacts {
            count: records.len(),
            first_ts: stamps.first().copied(),
            last_ts: stamps.last().copied(),
            last_id: page.results.last().and_then(|o| o.id.parse().ok()),
            next_after,
            provider_now: reply.provider_now(),
        };
        let max_seen = stamps.iter().copied().chain(max_seen).max();
        let (phase, has_more) = next_incremental(&current, &facts, max_seen, self.pacing.lookback);
        Ok(PulledPage { records, cursor: phase.to_cursor(), has_more })
    }
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: i64,
}

#[async_trait]
impl ProviderClient for HubspotClient {
    /// Contacts only. A `None` cursor lists every contact (100 a page); the page that ends the
    /// listing switches the cursor to incremental search (200 a page) from the listing's start
    /// less the lookback, with `has_more = true` so edits made during the listing are caught.
    async fn pull_page(
        &self,
        token: &SecretString,
        object: ObjectType,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        if object != ObjectType::Contacts {
            return Err(ProviderError::Permanent(format!("the HubSpot adapter does not sync {object}")));
        }
        match Phase::parse(cursor)? {
            Phase::Full { after, started_at, max_seen } => {
                self.pull_full(token, after, started_at, max_seen).await
            }
            phase => self.pull_incremental(token, phase).await,
        }
    }

    /// `POST {base}/oauth/v1/token` with the app's client credentials. A refresh token HubSpot
    /// rejects is `Unauthorized`; no configured app is `Permanent`.
    async fn refresh(&self, refresh_token: &SecretString) -> Result<Credentials, ProviderError> {
        let Some(app) = &self.app else {
            return Err(ProviderError::Permanent("no HubSpot OAuth app is configured".into()));
        };
        let url = format!("{}/oauth/v1/token", self.base);
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.expose_secret()),
            ("refresh_token", refresh_token.expose_secret()),
        ];
        let reply = self.send(Kind::Other, || self.http.post(&url).form(&form)).await?;
        if reply.status == StatusCode::BAD_REQUEST {
            let status = reply
                .json::<Value>()
                .ok()
                .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_owned));
            if status.as_deref() == Some("BAD_REFRESH_TOKEN") {
                return Err(ProviderError::Unauthorized);
            }
        }
        let reply = reply.check()?;
        let tokens: TokenReply = reply.json()?;
        let expires_at = Utc::now() + chrono::Duration::seconds(tokens.expires_in.max(0));
        Ok(Credentials {
            access_token: SecretString::from(tokens.access_token),
            refresh_token: Some(
                tokens.refresh_token.map(SecretString::from).unwrap_or_else(|| refresh_token.clone()),
            ),
            expires_at: Some(expires_at),
        })
    }

    fn stats(&self) -> RequestStats {
        RequestStats {
            requests: self.requests.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incremental(since: i64) -> Phase {
        Phase::Incremental {
            since,
            exclusive: false,
            offset: 0,
            first_ts: None,
            tie_after: None,
            max_seen: None,
        }
    }

    const LOOKBACK: Duration = Duration::from_secs(300);

    #[test]
    fn contacts_map_to_canonical_fields_with_modified_time_and_archived_flag() {
        let obj: HubObject = serde_json::from_value(json!({
            "id": "42",
            "properties": {
                "email": "a@x.io", "firstname": "Ada", "lastname": null, "phone": "",
                "jobtitle": "CTO", "hs_lead_status": "OPEN", "lastmodifieddate": "2024-03-01T10:00:00.123Z"
            },
            "updatedAt": "2020-01-01T00:00:00Z",
            "archived": true
        }))
        .unwrap();
        let r = map_contact(&obj).unwrap();
        assert_eq!(r.external_id.as_str(), "42");
        assert_eq!(r.fields["email"], json!("a@x.io"));
        assert_eq!(r.fields["first_name"], json!("Ada"));
        assert_eq!(r.fields["last_name"], Value::Null);
        assert_eq!(r.fields["phone"], Value::Null);
        assert_eq!(r.fields["job_title"], json!("CTO"));
        assert_eq!(r.fields["lead_status"], json!("OPEN"));
        assert_eq!(r.fields.len(), FIELD_MAP.len());
        assert_eq!(r.remote_modified_at.unwrap().timestamp_millis(), 1_709_287_200_123);
        assert!(r.deleted);
    }

    #[test]
    fn cursor_round_trips_and_garbage_cursors_expire() {
        let phase = Phase::Incremental {
            since: 5,
            exclusive: true,
            offset: 400,
            first_ts: Some(7),
            tie_after: None,
            max_seen: Some(9),
        };
        assert_eq!(Phase::parse(Some(&phase.to_cursor())).unwrap(), phase);
        assert!(matches!(Phase::parse(Some(&SyncCursor::new("nope"))), Err(ProviderError::CursorExpired)));
        let future =
            SyncCursor::new(r#"{"v":9,"phase":"full","after":null,"started_at":null,"max_seen":null}"#);
        assert!(matches!(Phase::parse(Some(&future)), Err(ProviderError::CursorExpired)));
        assert!(matches!(Phase::parse(None).unwrap(), Phase::Full { after: None, .. }));
    }

    #[test]
    fn a_window_restarts_from_the_last_timestamp_before_the_ten_thousand_cap() {
        let current = Phase::Incremental {
            since: 100,
            exclusive: false,
            offset: 9_800,
            first_ts: Some(100),
            tie_after: None,
            max_seen: None,
        };
        let page = PageFacts {
            count: 200,
            first_ts: Some(500),
            last_ts: Some(600),
            last_id: Some(1),
            next_after: Some(10_000),
            provider_now: None,
        };
        let (next, more) = next_incremental(&current, &page, Some(600), LOOKBACK);
        assert!(more);
        assert!(matches!(
            next,
            Phase::Incremental { since: 600, exclusive: false, offset: 0, tie_after: None, .. }
        ));

        let mid = Phase::Incremental {
            since: 100,
            exclusive: false,
            offset: 200,
            first_ts: Some(100),
            tie_after: None,
            max_seen: None,
        };
        let (next, _) =
            next_incremental(&mid, &PageFacts { next_after: Some(400), ..page }, Some(600), LOOKBACK);
        assert!(matches!(next, Phase::Incremental { since: 100, offset: 400, .. }));
    }

    #[test]
    fn a_full_window_of_one_timestamp_pages_by_id_then_moves_past_it() {
        let current = Phase::Incremental {
            since: 100,
            exclusive: false,
            offset: 9_800,
            first_ts: Some(700),
            tie_after: None,
            max_seen: None,
        };
        let page = PageFacts {
            count: 200,
            first_ts: Some(700),
            last_ts: Some(700),
            last_id: Some(9),
            next_after: Some(10_000),
            provider_now: None,
        };
        let (tie, more) = next_incremental(&current, &page, Some(700), LOOKBACK);
        assert!(more);
        assert!(matches!(tie, Phase::Incremental { since: 700, tie_after: Some(0), .. }));

        let tie_page = PageFacts { count: 200, last_id: Some(4_321), next_after: Some(200), ..page };
        let (tie2, _) = next_incremental(&tie, &tie_page, Some(700), LOOKBACK);
        assert!(matches!(tie2, Phase::Incremental { since: 700, tie_after: Some(4_321), .. }));

        let last_tie_page = PageFacts { count: 12, last_id: Some(9_999), next_after: None, ..page };
        let (after_tie, more) = next_incremental(&tie2, &last_tie_page, Some(700), LOOKBACK);
        assert!(more);
        assert!(matches!(
            after_tie,
            Phase::Incremental { since: 700, exclusive: true, tie_after: None, offset: 0, .. }
        ));
    }

    #[test]
    fn caught_up_cursor_keeps_a_lookback_behind_the_provider_clock() {
        let now = 10_000_000;
        let done = PageFacts { count: 3, provider_now: Some(now), ..PageFacts::default() };
        let (recent, more) = next_incremental(&incremental(1), &done, Some(now - 1_000), LOOKBACK);
        assert!(!more);
        assert!(
            matches!(recent, Phase::Incremental { since, exclusive: false, .. } if since == now - 300_000)
        );

        let (old, _) = next_incremental(&incremental(1), &done, Some(5_000), LOOKBACK);
        assert!(matches!(old, Phase::Incremental { since: 5_000, exclusive: true, .. }));

        let no_clock = PageFacts { count: 1, ..PageFacts::default() };
        let (fallback, _) = next_incremental(&incremental(1), &no_clock, Some(900_000), LOOKBACK);
        assert!(matches!(fallback, Phase::Incremental { since: 600_000, .. }));
    }

    #[test]
    fn the_pacer_waits_for_the_window_and_the_search_rate() {
        let start = Instant::now();
        let mut l = Limiter::default();
        let mut headers = HeaderMap::new();
        headers.insert("x-hubspot-ratelimit-max", "3".parse().unwrap());
        headers.insert("x-hubspot-ratelimit-interval-milliseconds", "10000".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(l.wait(Kind::Other, start, 5), Duration::ZERO);
            l.record(Kind::Other, start, &headers);
        }
        assert_eq!(l.wait(Kind::Other, start, 5), Duration::from_secs(10));
        assert_eq!(l.wait(Kind::Other, start + Duration::from_secs(10), 5), Duration::ZERO);

        let mut s = Limiter::default();
        for _ in 0..5 {
            s.record(Kind::Search, start, &HeaderMap::new());
        }
        assert!(s.wait(Kind::Search, start, 5) >= Duration::from_secs(1));
        assert_eq!(s.wait(Kind::Other, start, 5), Duration::ZERO);
    }

    #[test]
    fn a_429_waits_by_retry_after_or_by_the_policy_hit() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_wait(&h, br#"{"policyName":"SECONDLY"}"#), Duration::from_millis(1_100));
        assert_eq!(retry_wait(&h, br#"{"policyName":"TEN_SECONDLY_ROLLING"}"#), Duration::from_secs(10));
        assert!(retry_wait(&h, br#"{"policyName":"DAILY"}"#) > Pacing::default().max_inline_wait);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_wait(&h, b"{}"), Duration::from_secs(2));
    }
}
