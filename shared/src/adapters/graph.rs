//! Microsoft Graph (Outlook calendar) adapter: pulls the mailbox owner's events through
//! `me/calendarView/delta` for a window of `calendar_window_days` from now, writes events
//! (`POST me/events` made idempotent by a `transactionId` derived from the idempotency key,
//! `PATCH`/`DELETE` with `If-Match`), manages change-notification subscriptions, honours Graph's
//! throttling (`429`/`503`/`504` with `Retry-After`) and refreshes tokens at the Microsoft identity
//! platform (`{login}/{tenant}/oauth2/v2.0/token`).
//!
//! Subscriptions (`ensure_channel`): one on `me/events` (`created,updated,deleted`) per connection,
//! asked for Graph's longest lifetime (4230 minutes less one), with the engine's channel secret as
//! `clientState` and the webhook address as both notification and lifecycle URL (lifecycle
//! notifications carry `lifecycleEvent`). Renewed once less than a day is left by `PATCH`ing its
//! expiration (the id and `clientState` stay); a subscription Graph no longer knows (404) is
//! created again with the same `clientState`.
//!
//! The cursor is this adapter's own JSON: the `@odata.nextLink` being followed or the
//! `@odata.deltaLink` of the last finished round, the round's window, and the ids of the events
//! known in the window (with their end times). When a delta link is gone (410 `syncStateNotFound`
//! / `resyncRequired`) the adapter itself starts a new round and, when that round ends, reports as
//! deleted every known event the round did not list again; without that a full resync could not
//! tell about deletions made while the delta link was invalid. The same happens when the window is
//! moved forward (every [`Pacing::window_roll`]): events that ended before the new window are
//! simply forgotten, not deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use http::StatusCode;
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

const CURSOR_VERSION: u8 = 1;
/// Known events the cursor keeps at most (about 200 bytes each with Graph's ids): the connection
/// item must stay well under DynamoDB's 400 KB. Past it, deletions made while a delta link was
/// invalid cannot be found (logged), everything else works.
const MAX_KNOWN: usize = 1_000;
/// Graph refuses Outlook subscriptions that expire more than this many minutes from now.
pub const MAX_SUBSCRIPTION_MINUTES: i64 = 4230;
pub use crate::config::DEFAULT_MICROSOFT_LOGIN_BASE_URL as DEFAULT_LOGIN_BASE;
pub const DEFAULT_GRAPH_BASE: &str = "https://graph.microsoft.com";
const SCOPE: &str = "offline_access https://graph.microsoft.com/Calendars.ReadWrite";

/// Graph event property -> canonical field (events). Connections may override or add custom ones.
pub const EVENT_FIELDS: &[(&str, &str)] = &[
    ("subject", "title"),
    ("start", "start"),
    ("end", "end"),
    ("isAllDay", "all_day"),
    ("showAs", "status"),
    ("organizer", "organizer"),
    ("attendees", "attendees"),
    ("location", "location"),
    ("bodyPreview", "description"),
];

/// How a client pages, paces and retries.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// `Prefer: odata.maxpagesize` for delta pages.
    pub page_size: usize,
    /// A `Retry-After` longer than this is returned as `RateLimited` instead of waited out.
    pub max_inline_wait: Duration,
    /// Retries of one request after 429/503/504.
    pub max_retries: u32,
    /// Wait before retrying a 503/504 that sent no `Retry-After`.
    pub transient_backoff: Duration,
    /// A finished round's window is moved forward (a new round) once it is this old.
    pub window_roll: Duration,
}

impl Pacing {
    /// As the shared send path's policy.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            backoff_base: self.transient_backoff,
            max_inline_wait: self.max_inline_wait,
            ..RetryPolicy::default()
        }
    }
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            page_size: 100,
            max_inline_wait: Duration::from_secs(15),
            max_retries: 3,
            transient_backoff: Duration::from_secs(1),
            window_roll: Duration::from_secs(6 * 3600),
        }
    }
}

/// Where the identity platform lives for this deployment.
#[derive(Debug, Clone)]
pub struct Login {
    /// `https://login.microsoftonline.com` (or a fake's base URL).
    pub base_url: String,
    /// `common`, `organizations` or a directory (tenant) id.
    pub tenant: String,
}

impl Default for Login {
    fn default() -> Self {
        Self { base_url: DEFAULT_LOGIN_BASE.into(), tenant: "common".into() }
    }
}

/// Builds [`GraphClient`]s; holds the shared HTTP client, the OAuth app and the login endpoint.
#[derive(Clone)]
pub struct GraphFactory {
    http: reqwest::Client,
    app: Option<OAuthApp>,
    login: Login,
    pacing: Pacing,
}

impl GraphFactory {
    /// `app` is needed to refresh tokens.
    pub fn new(http: reqwest::Client, app: Option<OAuthApp>, login: Login) -> Self {
        Self { http, app, login, pacing: Pacing::default() }
    }

    pub fn with_pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }

    /// The concrete client (for the subscription calls that the port does not have).
    pub fn graph_client(&self, connection: &Connection) -> Result<GraphClient, ProviderError> {
        if connection.provider != Provider::Microsoft {
            return Err(ProviderError::permanent(format!(
                "the Graph adapter cannot serve a {} connection",
                connection.provider
            )));
        }
        let base = connection.base_url.trim_end_matches('/').trim_end_matches("/v1.0").to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(ProviderError::permanent("the connection's base URL is not an http(s) URL"));
        }
        Ok(GraphClient {
            http: self.http.clone(),
            base,
            app: self.app.clone(),
            login: self.login.clone(),
            pacing: self.pacing,
            fields: FieldMap::new(EVENT_FIELDS)
                .with_overrides(connection.settings.field_mapping.get(&ObjectType::Events)),
            window_days: connection
                .settings
                .calendar_window_days
                .clamp(1, crate::domain::connection::MAX_CALENDAR_WINDOW_DAYS),
            net: ProviderHttp::new(self.http.clone(), GraphDialect, self.pacing.policy()),
        })
    }
}

impl ProviderFactory for GraphFactory {
    fn client(&self, connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError> {
        Ok(Box::new(self.graph_client(connection)?))
    }
}

/// One Outlook mailbox seen through Graph v1.0.
pub struct GraphClient {
    http: reqwest::Client,
    /// Graph's root without `/v1.0`.
    base: String,
    app: Option<OAuthApp>,
    login: Login,
    pacing: Pacing,
    fields: FieldMap,
    window_days: u32,
    net: ProviderHttp<GraphDialect>,
}

/// Graph's `error.code` (or the identity platform's `error`).
fn error_code(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    match v.get("error") {
        Some(Value::Object(e)) => e.get("code").and_then(Value::as_str).map(str::to_owned),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// What is Graph's own in its answers: `error.code` and `error.message` (the identity
/// platform's `error` and `error_description`). Graph's throttling answers 429, 503 or 504 with
/// `Retry-After` (<https://learn.microsoft.com/graph/throttling>); the shared table retries those.
#[derive(Debug, Clone, Copy, Default)]
pub struct GraphDialect;

impl Dialect for GraphDialect {
    fn name(&self) -> &'static str {
        "Microsoft Graph"
    }

    /// 410 (`syncStateNotFound`, `resyncRequired`): the delta state is gone.
    /// <https://learn.microsoft.com/graph/delta-query-overview#synchronization-reset>
    fn classify(&self, status: StatusCode, _code: Option<&str>) -> Option<ErrorClass> {
        (status == StatusCode::GONE).then_some(ErrorClass::CursorExpired)
    }

    fn error_detail(&self, reply: &Reply) -> (Option<String>, Option<String>) {
        let message = reply.json_value().and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("error_description"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        (error_code(&reply.body), message)
    }
}

/// Where a pull stands (the JSON inside [`SyncCursor`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    v: u8,
    /// The next link to call: an `@odata.nextLink` while `in_round`, else the last round's
    /// `@odata.deltaLink`. `None`: start a round for the window.
    link: Option<String>,
    in_round: bool,
    /// The round's window, epoch seconds.
    window_start: i64,
    window_end: i64,
    /// Events of the window known to the store: id -> end (epoch seconds).
    known: BTreeMap<String, i64>,
    /// During a resync: known events the round has not listed yet (deleted at its end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unseen: Option<BTreeSet<String>>,
    /// More than [`MAX_KNOWN`] events were in the window: `known` is not kept this round.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    overflow: bool,
}

impl Cursor {
    fn fresh(now: DateTime<Utc>, days: u32) -> Cursor {
        let start = now.timestamp();
        Cursor {
            v: CURSOR_VERSION,
            link: None,
            in_round: false,
            window_start: start,
            window_end: start + i64::from(days) * 86_400,
            known: BTreeMap::new(),
            unseen: None,
            overflow: false,
        }
    }

    fn parse(cursor: &SyncCursor) -> Result<Cursor, ProviderError> {
        match serde_json::from_str::<Cursor>(cursor.as_str()) {
            Ok(c) if c.v == CURSOR_VERSION => Ok(c),
            _ => Err(ProviderError::CursorExpired),
        }
    }

    fn to_cursor(&self) -> SyncCursor {
        SyncCursor::new(serde_json::to_string(self).unwrap_or_default())
    }

    /// A new round over a new window from `now`; known events still expected in it must be
    /// listed again or are reported deleted when the round ends.
    fn restart(&mut self, now: DateTime<Utc>, days: u32) {
        let fresh = Cursor::fresh(now, days);
        if self.overflow {
            tracing::warn!(
                "over {MAX_KNOWN} events in the calendar window; deletions made while the delta link was invalid cannot be found"
            );
            *self = fresh;
            return;
        }
        self.known.retain(|_, end| *end > fresh.window_start);
        let mut unseen = self.unseen.take().unwrap_or_default();
        unseen.extend(self.known.keys().cloned());
        unseen.retain(|id| self.known.contains_key(id));
        *self = Cursor { known: std::mem::take(&mut self.known), unseen: Some(unseen), ..fresh };
    }
}

#[derive(Debug, Deserialize)]
struct DeltaPage {
    #[serde(default)]
    value: Vec<Value>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    delta_link: Option<String>,
}

/// A Graph event id as an [`ExternalId`]. Graph ids are base64url with `=` padding, which
/// `ExternalId` does not allow; `=` becomes `.` (which base64url never contains), reversibly.
pub fn external_id_of(graph_id: &str) -> Result<ExternalId, ProviderError> {
    ExternalId::parse(graph_id.replace('=', "."))
        .map_err(|e| ProviderError::permanent(format!("Graph returned an unusable event id: {e}")))
}

/// The Graph event id behind an [`ExternalId`] made by [`external_id_of`].
pub fn graph_id_of(external_id: &ExternalId) -> String {
    external_id.as_str().replace('.', "=")
}

/// `{dateTime, timeZone}` -> UTC. Knows UTC, IANA names, fixed offsets (`UTC+02:00`) and the
/// common Windows zone names Outlook uses.
pub fn to_utc(date_time: &str, time_zone: Option<&str>) -> Option<DateTime<Utc>> {
    let trimmed = date_time.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(trimmed) {
        return Some(d.with_timezone(&Utc));
    }
    let local = NaiveDateTime::parse_from_str(trimmed.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    let zone = time_zone.map(str::trim).filter(|z| !z.is_empty()).unwrap_or("UTC");
    let lower = zone.to_ascii_lowercase();
    if ["utc", "etc/utc", "gmt", "etc/gmt", "z", "coordinated universal time", "tzone://microsoft/utc"]
        .contains(&lower.as_str())
    {
        return Some(local.and_utc());
    }
    if let Some(offset) = fixed_offset(&lower) {
        return offset.from_local_datetime(&local).single().map(|d| d.with_timezone(&Utc));
    }
    let iana = windows_zone(zone).unwrap_or(zone);
    let tz: chrono_tz::Tz = iana.parse().ok()?;
    tz.from_local_datetime(&local).earliest().map(|d| d.with_timezone(&Utc))
}

/// `utc+02:00`, `+0530`, `gmt-8` -> a fixed offset.
fn fixed_offset(zone: &str) -> Option<chrono::FixedOffset> {
    let rest = zone.strip_prefix("utc").or_else(|| zone.strip_prefix("gmt")).unwrap_or(zone);
    let (sign, digits) = match rest.as_bytes().first()? {
        b'+' => (1, &rest[1..]),
        b'-' => (-1, &rest[1..]),
        _ => return None,
    };
    let digits = digits.replace(':', "");
    let (h, m) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().ok()?, 0),
        4 => (digits[..2].parse::<i32>().ok()?, digits[2..].parse::<i32>().ok()?),
        _ => return None,
    };
    chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// The Windows time zone names Outlook most often sends, as IANA names.
fn windows_zone(zone: &str) -> Option<&'static str> {
    const MAP: &[(&str, &str)] = &[
        ("Pacific Standard Time", "America/Los_Angeles"),
        ("Mountain Standard Time", "America/Denver"),
        ("Central Standard Time", "America/Chicago"),
        ("Eastern Standard Time", "America/New_York"),
        ("GMT Standard Time", "Europe/London"),
        ("W. Europe Standard Time", "Europe/Berlin"),
        ("Romance Standard Time", "Europe/Paris"),
        ("Central Europe Standard Time", "Europe/Budapest"),
        ("E. Europe Standard Time", "Europe/Chisinau"),
        ("India Standard Time", "Asia/Kolkata"),
        ("China Standard Time", "Asia/Shanghai"),
        ("Tokyo Standard Time", "Asia/Tokyo"),
        ("AUS Eastern Standard Time", "Australia/Sydney"),
    ];
    MAP.iter().find(|(w, _)| w.eq_ignore_ascii_case(zone)).map(|(_, i)| *i)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn text_or_null(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Value::String(s.clone()),
        Some(Value::String(_)) | Some(Value::Null) | None => Value::Null,
        Some(other) => other.clone(),
    }
}

fn email_of(recipient: &Value) -> Option<String> {
    recipient
        .pointer("/emailAddress/address")
        .and_then(Value::as_str)
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty())
}

/// A `{dateTime, timeZone}` as a canonical time: RFC 3339 UTC, or the date for all-day events.
fn canonical_time(v: Option<&Value>, all_day: bool, what: &str, id: &str) -> Result<Value, ProviderError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Value::Null);
    };
    let date_time = v
        .get("dateTime")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::permanent(format!("Graph event {id} has a {what} without dateTime")))?;
    if all_day {
        let date = date_time.get(..10).and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        return date.map(|d| Value::String(d.format("%Y-%m-%d").to_string())).ok_or_else(|| {
            ProviderError::permanent(format!("Graph event {id} has an unreadable {what} date"))
        });
    }
    let zone = v.get("timeZone").and_then(Value::as_str);
    to_utc(date_time, zone).map(|t| Value::String(rfc3339(t))).ok_or_else(|| {
        ProviderError::permanent(format!(
            "Graph event {id} has a {what} in an unknown time zone or format ({date_time}, {zone:?})"
        ))
    })
}

/// Graph's `showAs` and the owner's response -> `confirmed` | `tentative` | `cancelled`.
fn canonical_status(event: &Value) -> Value {
    if event.get("isCancelled") == Some(&Value::Bool(true)) {
        return json!("cancelled");
    }
    let show_as = event.get("showAs").and_then(Value::as_str);
    let response = event.pointer("/responseStatus/response").and_then(Value::as_str);
    if show_as == Some("tentative") || response == Some("tentativelyAccepted") {
        json!("tentative")
    } else {
        json!("confirmed")
    }
}

impl GraphClient {
    /// One event of a delta page (or a write's answer) as a remote record.
    fn map_event(&self, event: &Value) -> Result<(RemoteRecord, Option<i64>), ProviderError> {
        let id = event
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::permanent("a Graph event without an id"))?;
        let external_id = external_id_of(id)?;
        let etag = event
            .get("@odata.etag")
            .or_else(|| event.get("changeKey"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        if event.get("@removed").is_some() {
            let record = RemoteRecord {
                external_id,
                object: ObjectType::Events,
                fields: Fields::new(),
                remote_modified_at: None,
                deleted: true,
                etag,
            };
            return Ok((record, None));
        }
        let all_day = event.get("isAllDay").and_then(Value::as_bool).unwrap_or(false);
        let mut fields = Fields::new();
        for (property, canonical) in self.fields.pairs() {
            let Some(raw) = event.get(property) else { continue };
            let value = match property {
                "start" | "end" => canonical_time(Some(raw), all_day, property, id)?,
                "isAllDay" => Value::Bool(all_day),
                "showAs" => canonical_status(event),
                "organizer" => email_of(raw).map(Value::String).unwrap_or(Value::Null),
                "attendees" => {
                    let set: BTreeSet<String> =
                        raw.as_array().into_iter().flatten().filter_map(email_of).collect();
                    Value::Array(set.into_iter().map(Value::String).collect())
                }
                "location" => text_or_null(raw.get("displayName")),
                "body" => text_or_null(raw.get("content")),
                _ => text_or_null(Some(raw)),
            };
            fields.insert(canonical.to_owned(), value);
        }
        let end = match event.get("end") {
            Some(v) => v
                .get("dateTime")
                .and_then(Value::as_str)
                .and_then(|dt| to_utc(dt, v.get("timeZone").and_then(Value::as_str)))
                .map(|t| t.timestamp()),
            None => None,
        };
        let remote_modified_at = event
            .get("lastModifiedDateTime")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc));
        let deleted = event.get("isCancelled") == Some(&Value::Bool(true));
        let record = RemoteRecord {
            external_id,
            object: ObjectType::Events,
            fields,
            remote_modified_at,
            deleted,
            etag,
        };
        Ok((record, end))
    }

    /// Canonical fields -> a Graph event body (only the fields given).
    fn event_body(&self, fields: &Fields) -> Result<Map<String, Value>, ProviderError> {
        let mut body = Map::new();
        let all_day = fields.get("all_day").and_then(Value::as_bool).unwrap_or(false);
        for (canonical, value) in fields {
            let Some(property) = self.fields.property_of(canonical) else { continue };
            let graph_value = match property {
                "start" | "end" => match value {
                    Value::Null => continue,
                    Value::String(s) => json!({ "dateTime": graph_time(s, all_day)?, "timeZone": "UTC" }),
                    other => {
                        return Err(ProviderError::permanent(format!(
                            "{canonical} must be a string, not {other}"
                        )));
                    }
                },
                "isAllDay" => Value::Bool(value.as_bool().unwrap_or(false)),
                "showAs" => match value.as_str() {
                    Some("tentative") => json!("tentative"),
                    Some("confirmed") => json!("busy"),
                    _ => continue,
                },
                "organizer" => continue,
                "attendees" => Value::Array(
                    value
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|a| json!({ "emailAddress": { "address": a }, "type": "required" }))
                        .collect(),
                ),
                "location" => json!({ "displayName": value.as_str().unwrap_or_default() }),
                "bodyPreview" | "body" => {
                    body.insert(
                        "body".into(),
                        json!({ "contentType": "text", "content": value.as_str().unwrap_or_default() }),
                    );
                    continue;
                }
                _ => value.clone(),
            };
            body.insert(property.to_owned(), graph_value);
        }
        Ok(body)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1.0/{path}", self.base)
    }

    /// Sends one request through the shared send path.
    async fn send<F>(&self, call: Call, build: F) -> Result<Reply, ProviderError>
    where
        F: Fn() -> reqwest::RequestBuilder,
    {
        self.net.send(call, build).await
    }

    fn get_link(&self, token: &SecretString, url: &str) -> reqwest::RequestBuilder {
        self.http
            .get(url)
            .bearer_auth(token.expose_secret())
            .header("Prefer", format!("odata.maxpagesize={}", self.pacing.page_size))
            .header("Prefer", "outlook.timezone=\"UTC\"")
    }

    /// One delta request for the cursor's position.
    async fn delta_request(&self, token: &SecretString, cursor: &Cursor) -> Result<Reply, ProviderError> {
        match &cursor.link {
            Some(link) => {
                if !link.starts_with(&format!("{}/", self.base)) {
                    return Err(ProviderError::permanent(
                        "a Graph paging link points outside the connection's base URL",
                    ));
                }
                self.send(Call::read("delta"), || self.get_link(token, link)).await
            }
            None => {
                let at = |s: i64| DateTime::from_timestamp(s, 0).map(rfc3339).unwrap_or_default();
                let query =
                    [("startDateTime", at(cursor.window_start)), ("endDateTime", at(cursor.window_end))];
                let url = self.url("me/calendarView/delta");
                self.send(Call::read("delta"), || self.get_link(token, &url).query(&query)).await
            }
        }
    }

    async fn pull_events(
        &self,
        token: &SecretString,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        let now = Utc::now();
        let mut cur = match cursor {
            None => Cursor::fresh(now, self.window_days),
            Some(c) => Cursor::parse(c)?,
        };
        let roll = chrono::Duration::from_std(self.pacing.window_roll).unwrap_or(chrono::Duration::hours(6));
        if !cur.in_round && (cur.link.is_none() || cur.window_start + roll.num_seconds() <= now.timestamp()) {
            if cur.link.is_some() {
                cur.restart(now, self.window_days);
            } else {
                let known = std::mem::take(&mut cur.known);
                cur = Cursor { known, unseen: cur.unseen.take(), ..Cursor::fresh(now, self.window_days) };
            }
        }
        let mut reply = self.delta_request(token, &cur).await?;
        if reply.status == StatusCode::GONE {
            tracing::warn!(code = ?error_code(&reply.body), "Graph delta state is gone; resyncing the window");
            cur.restart(now, self.window_days);
            reply = self.delta_request(token, &cur).await?;
        }
        let reply = reply.check()?;
        let page: DeltaPage = reply.json()?;
        let mut records = Vec::with_capacity(page.value.len());
        for item in &page.value {
            let (record, end) = self.map_event(item)?;
            let id = record.external_id.as_str().to_owned();
            if let Some(unseen) = cur.unseen.as_mut() {
                unseen.remove(&id);
            }
            match (record.deleted, end) {
                (true, _) => {
                    cur.known.remove(&id);
                }
                (false, _) if cur.overflow => {}
                (false, end) => {
                    cur.known.insert(id, end.unwrap_or(cur.window_end));
                    if cur.known.len() > MAX_KNOWN {
                        cur.known.clear();
                        cur.overflow = true;
                    }
                }
            }
            records.push(record);
        }
        match (page.next_link, page.delta_link) {
            (Some(next), _) => {
                cur.link = Some(next);
                cur.in_round = true;
                Ok(PulledPage { records, cursor: cur.to_cursor(), has_more: true, reconcile_deletes: false })
            }
            (None, Some(delta)) => {
                for id in cur.unseen.take().into_iter().flatten() {
                    cur.known.remove(&id);
                    let external_id = ExternalId::parse(id).map_err(|e| {
                        ProviderError::permanent(format!("an unusable event id in the cursor: {e}"))
                    })?;
                    records.push(RemoteRecord {
                        external_id,
                        object: ObjectType::Events,
                        fields: Fields::new(),
                        remote_modified_at: None,
                        deleted: true,
                        etag: None,
                    });
                }
                cur.link = Some(delta);
                cur.in_round = false;
                Ok(PulledPage { records, cursor: cur.to_cursor(), has_more: false, reconcile_deletes: false })
            }
            (None, None) => Err(ProviderError::permanent(
                "a Graph delta page with neither @odata.nextLink nor @odata.deltaLink",
            )),
        }
    }

    /// The event's current etag, checking `unmodified_since` on the way (for preconditions
    /// without an etag).
    async fn current_etag(
        &self,
        token: &SecretString,
        id: &ExternalId,
        precondition: &Precondition,
    ) -> Result<Option<String>, ProviderError> {
        if let Some(etag) = &precondition.etag {
            return Ok(Some(etag.clone()));
        }
        let Some(since) = precondition.unmodified_since else {
            return Ok(None);
        };
        let url = self.url(&format!("me/events/{}", graph_id_of(id)));
        let reply = self
            .send(Call::read("events.get"), || self.http.get(&url).bearer_auth(token.expose_secret()))
            .await?
            .check()?;
        let event: Value = reply.json()?;
        let modified = event
            .get("lastModifiedDateTime")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc));
        if modified.is_some_and(|m| m > since) {
            return Err(ProviderError::Conflict);
        }
        Ok(event.get("@odata.etag").and_then(Value::as_str).map(str::to_owned))
    }

    fn ack(&self, event: &Value) -> Result<WriteAck, ProviderError> {
        let (record, _) = self.map_event(event)?;
        Ok(WriteAck {
            external_id: record.external_id,
            remote_modified_at: record.remote_modified_at,
            etag: record.etag,
            fields: Some(record.fields),
        })
    }

    async fn write_one(
        &self,
        token: &SecretString,
        write: &ProviderWrite,
    ) -> Result<WriteAck, ProviderError> {
        match write {
            ProviderWrite::Create { object, fields, idempotency_key } => {
                only_events(*object)?;
                let mut body = self.event_body(fields)?;
                body.insert("transactionId".into(), Value::String(transaction_id(idempotency_key)));
                let url = self.url("me/events");
                // `transactionId` makes a repeated create answer the first one's event.
                let reply = self
                    .send(Call::idempotent_write("events.create"), || {
                        self.http.post(&url).bearer_auth(token.expose_secret()).json(&body)
                    })
                    .await?
                    .check()?;
                self.ack(&reply.json()?)
            }
            ProviderWrite::Update { object, external_id, fields, precondition } => {
                only_events(*object)?;
                let body = self.event_body(fields)?;
                let etag = self.current_etag(token, external_id, precondition).await?;
                let url = self.url(&format!("me/events/{}", graph_id_of(external_id)));
                let reply = self
                    .send(Call::write("events.update"), || {
                        let req = self.http.patch(&url).bearer_auth(token.expose_secret()).json(&body);
                        match &etag {
                            Some(tag) => req.header(http::header::IF_MATCH, tag),
                            None => req,
                        }
                    })
                    .await?
                    .check()?;
                self.ack(&reply.json()?)
            }
            ProviderWrite::Delete { object, external_id, precondition } => {
                only_events(*object)?;
                let etag = self.current_etag(token, external_id, precondition).await?;
                let url = self.url(&format!("me/events/{}", graph_id_of(external_id)));
                let answer = self
                    .send(Call::idempotent_write("events.delete"), || {
                        let req = self.http.delete(&url).bearer_auth(token.expose_secret());
                        match &etag {
                            Some(tag) => req.header(http::header::IF_MATCH, tag),
                            None => req,
                        }
                    })
                    .await?
                    .check();
                // 404 `ErrorItemNotFound`: already deleted (a retry after a lost answer); the
                // delete's effect holds.
                match answer {
                    Ok(_) | Err(ProviderError::NotFound) => {}
                    Err(e) => return Err(e),
                }
                Ok(WriteAck {
                    external_id: external_id.clone(),
                    remote_modified_at: None,
                    etag: None,
                    fields: None,
                })
            }
        }
    }

    /// Creates a change-notification subscription on `me/events`. Graph validates the
    /// notification (and lifecycle) URL before answering: the webhook must echo `validationToken`.
    /// The expiration is capped at Graph's limit for Outlook resources.
    pub async fn create_subscription(
        &self,
        token: &SecretString,
        request: &SubscriptionRequest,
    ) -> Result<GraphSubscription, ProviderError> {
        let expiration = cap_expiration(request.expiration, Utc::now());
        let mut body = json!({
            "changeType": request.change_type,
            "notificationUrl": request.notification_url,
            "resource": "me/events",
            "expirationDateTime": rfc3339(expiration),
            "clientState": request.client_state.expose_secret(),
        });
        if let Some(url) = &request.lifecycle_notification_url {
            body["lifecycleNotificationUrl"] = json!(url);
        }
        let url = self.url("subscriptions");
        let reply = self
            .send(Call::write("subscriptions.create"), || {
                self.http.post(&url).bearer_auth(token.expose_secret()).json(&body)
            })
            .await?
            .check()?;
        reply.json::<GraphSubscription>()
    }

    /// Moves a subscription's expiration forward (capped at Graph's limit).
    pub async fn renew_subscription(
        &self,
        token: &SecretString,
        id: &str,
        expiration: DateTime<Utc>,
    ) -> Result<GraphSubscription, ProviderError> {
        let body = json!({ "expirationDateTime": rfc3339(cap_expiration(expiration, Utc::now())) });
        let url = self.url(&format!("subscriptions/{id}"));
        let reply = self
            .send(Call::idempotent_write("subscriptions.renew"), || {
                self.http.patch(&url).bearer_auth(token.expose_secret()).json(&body)
            })
            .await?
            .check()?;
        reply.json::<GraphSubscription>()
    }

    /// Deletes a subscription; one that is already gone counts as deleted.
    pub async fn delete_subscription(&self, token: &SecretString, id: &str) -> Result<(), ProviderError> {
        let url = self.url(&format!("subscriptions/{id}"));
        match self
            .send(Call::idempotent_write("subscriptions.delete"), || {
                self.http.delete(&url).bearer_auth(token.expose_secret())
            })
            .await?
            .check()
        {
            Ok(_) | Err(ProviderError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// What to subscribe to.
#[derive(Debug, Clone)]
pub struct SubscriptionRequest {
    pub notification_url: String,
    pub lifecycle_notification_url: Option<String>,
    /// Comma-separated `created,updated,deleted`.
    pub change_type: String,
    /// Echoed in every notification; the webhook compares it (at most 128 characters).
    pub client_state: SecretString,
    pub expiration: DateTime<Utc>,
}

/// A subscription as Graph returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphSubscription {
    pub id: String,
    pub resource: String,
    pub change_type: String,
    pub expiration_date_time: DateTime<Utc>,
    #[serde(default)]
    pub notification_url: Option<String>,
}

/// The latest expiration Graph accepts from `now`, less a minute of clock skew.
pub fn max_expiration(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::minutes(MAX_SUBSCRIPTION_MINUTES - 1)
}

fn cap_expiration(wanted: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    wanted.min(max_expiration(now))
}

/// True when a subscription expiring at `expiration` should be renewed now (within `margin`).
pub fn needs_renewal(expiration: DateTime<Utc>, now: DateTime<Utc>, margin: chrono::Duration) -> bool {
    expiration - now <= margin
}

/// Graph's `transactionId` for a create: derived from the idempotency key, so a retried create
/// finds the event the first attempt made.
pub fn transaction_id(key: &IdempotencyKey) -> String {
    let digest = Sha256::digest(key.as_str().as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("syncbridge-{hex}")
}

fn only_events(object: ObjectType) -> Result<(), ProviderError> {
    if object == ObjectType::Events {
        Ok(())
    } else {
        Err(ProviderError::permanent(format!("the Graph adapter does not sync {object}")))
    }
}

/// A canonical time (RFC 3339, or a date for all-day events) as Graph's UTC `dateTime`.
fn graph_time(value: &str, all_day: bool) -> Result<String, ProviderError> {
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(format!("{}T00:00:00", date.format("%Y-%m-%d")));
    }
    let t = DateTime::parse_from_rfc3339(value)
        .map_err(|_| ProviderError::permanent(format!("'{value}' is neither a date nor an RFC 3339 time")))?
        .with_timezone(&Utc);
    if all_day {
        return Ok(format!("{}T00:00:00", t.format("%Y-%m-%d")));
    }
    Ok(t.format("%Y-%m-%dT%H:%M:%S").to_string())
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: i64,
}

#[async_trait]
impl ProviderClient for GraphClient {
    /// Events only. A `None` cursor starts a delta round for now .. now + the window; each page
    /// follows `@odata.nextLink`; the last page stores `@odata.deltaLink` with `has_more = false`,
    /// and the next pull calls it for the changes since.
    async fn pull_page(
        &self,
        token: &SecretString,
        object: ObjectType,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        only_events(object)?;
        self.pull_events(token, cursor).await
    }

    /// Each write in order, one request each (Graph's `$batch` is not used: a conditional PATCH
    /// must see the answer of the previous write to the same event).
    async fn write(
        &self,
        token: &SecretString,
        writes: &[ProviderWrite],
    ) -> Result<Vec<Result<WriteAck, ProviderError>>, ProviderError> {
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            results.push(self.write_one(token, write).await);
        }
        Ok(results)
    }

    /// See the module doc: a `me/events` subscription at Graph's longest lifetime, extended with
    /// `PATCH` within [`PushChannel::renewal_margin`] of expiry, recreated when Graph lost it.
    async fn stop_channel(&self, token: &SecretString, channel: &PushChannel) -> Result<(), ProviderError> {
        self.delete_subscription(token, &channel.id).await
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
        // Graph measures its limit against its own clock, so the expiry asked for is from ours.
        let expiration = max_expiration(Utc::now());
        if let Some(current) = existing {
            match self.renew_subscription(token, &current.id, expiration).await {
                Ok(sub) => {
                    return Ok(Some(PushChannel {
                        id: sub.id,
                        resource_id: None,
                        secret: current.secret.clone(),
                        expires_at: sub.expiration_date_time,
                    }));
                }
                Err(ProviderError::NotFound) => {
                    tracing::info!(subscription = %current.id, "Graph no longer knows the subscription; creating a new one");
                }
                Err(e) => return Err(e),
            }
        }
        let secret = existing.map(|c| c.secret.clone()).unwrap_or_else(PushChannel::new_secret);
        let request = SubscriptionRequest {
            notification_url: address.to_owned(),
            lifecycle_notification_url: Some(address.to_owned()),
            change_type: "created,updated,deleted".into(),
            client_state: secret.clone(),
            expiration,
        };
        let sub = self.create_subscription(token, &request).await?;
        Ok(Some(PushChannel { id: sub.id, resource_id: None, secret, expires_at: sub.expiration_date_time }))
    }

    /// `POST {login}/{tenant}/oauth2/v2.0/token` (refresh_token grant). `invalid_grant` (revoked
    /// or expired refresh token) is `Unauthorized`; a missing app or rejected client is `Permanent`.
    async fn refresh(&self, refresh_token: &SecretString) -> Result<Credentials, ProviderError> {
        let Some(app) = &self.app else {
            return Err(ProviderError::permanent("no Microsoft OAuth app is configured"));
        };
        let url =
            format!("{}/{}/oauth2/v2.0/token", self.login.base_url.trim_end_matches('/'), self.login.tenant);
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.expose_secret()),
            ("refresh_token", refresh_token.expose_secret()),
            ("scope", SCOPE),
        ];
        let reply = self.send(Call::write("token"), || self.http.post(&url).form(&form)).await?;
        if reply.status == StatusCode::BAD_REQUEST
            && error_code(&reply.body).as_deref() == Some("invalid_grant")
        {
            return Err(ProviderError::Unauthorized);
        }
        if reply.status == StatusCode::UNAUTHORIZED {
            // Our app's credentials were refused, not the user's grant.
            let fault = reply.error().and_then(ProviderError::fault).cloned();
            return Err(ProviderError::Permanent(
                fault.unwrap_or_else(|| "Microsoft refused the app's credentials".into()),
            ));
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
    use super::*;
    use crate::domain::ConnectionSettings;

    fn client(overrides: Option<BTreeMap<String, String>>) -> GraphClient {
        let mut settings = ConnectionSettings::default();
        if let Some(o) = overrides {
            settings.field_mapping.insert(ObjectType::Events, o);
        }
        GraphClient {
            http: reqwest::Client::new(),
            base: "http://graph.test".into(),
            app: None,
            login: Login::default(),
            pacing: Pacing::default(),
            fields: FieldMap::new(EVENT_FIELDS)
                .with_overrides(settings.field_mapping.get(&ObjectType::Events)),
            window_days: 7,
            net: ProviderHttp::new(reqwest::Client::new(), GraphDialect, Pacing::default().policy()),
        }
    }

    fn event() -> Value {
        json!({
            "@odata.etag": "W/\"DwAAABYAAAB1\"",
            "id": "AAMk-1",
            "changeKey": "DwAAABYAAAB1",
            "lastModifiedDateTime": "2030-01-01T08:00:00.1234567Z",
            "subject": "Pipeline sync",
            "bodyPreview": "",
            "isAllDay": false,
            "isCancelled": false,
            "showAs": "busy",
            "responseStatus": {"response": "tentativelyAccepted", "time": "0001-01-01T00:00:00Z"},
            "start": {"dateTime": "2030-01-02T10:00:00.0000000", "timeZone": "W. Europe Standard Time"},
            "end": {"dateTime": "2030-01-02T10:30:00.0000000", "timeZone": "UTC"},
            "location": {"displayName": "Room 1"},
            "organizer": {"emailAddress": {"name": "Pat", "address": "Pat.Lee@Fabrikam.com"}},
            "attendees": [
                {"emailAddress": {"address": "Zed@Contoso.com"}},
                {"emailAddress": {"address": "pat.lee@fabrikam.com"}},
                {"emailAddress": {"address": "ann@contoso.com"}},
                {"emailAddress": {"name": "no address"}}
            ],
        })
    }

    #[test]
    fn events_map_to_canonical_fields_in_utc_with_sorted_lowercase_attendees() {
        let (r, end) = client(None).map_event(&event()).unwrap();
        assert_eq!(r.external_id.as_str(), "AAMk-1");
        assert_eq!(r.fields["title"], json!("Pipeline sync"));
        assert_eq!(r.fields["start"], json!("2030-01-02T09:00:00Z"));
        assert_eq!(r.fields["end"], json!("2030-01-02T10:30:00Z"));
        assert_eq!(r.fields["all_day"], json!(false));
        assert_eq!(r.fields["status"], json!("tentative"));
        assert_eq!(r.fields["organizer"], json!("pat.lee@fabrikam.com"));
        assert_eq!(
            r.fields["attendees"],
            json!(["ann@contoso.com", "pat.lee@fabrikam.com", "zed@contoso.com"])
        );
        assert_eq!(r.fields["location"], json!("Room 1"));
        assert_eq!(r.fields["description"], Value::Null);
        assert_eq!(r.fields.len(), EVENT_FIELDS.len());
        assert_eq!(r.etag.as_deref(), Some("W/\"DwAAABYAAAB1\""));
        assert_eq!(r.remote_modified_at.unwrap().timestamp(), 1_893_484_800);
        assert_eq!(end, Some(1_893_580_200));
        assert!(!r.deleted);
    }

    #[test]
    fn all_day_cancelled_and_removed_events_map_to_dates_and_deletes() {
        let mut e = event();
        e["isAllDay"] = json!(true);
        e["start"] = json!({"dateTime": "2030-01-02T00:00:00.0000000", "timeZone": "UTC"});
        e["end"] = json!({"dateTime": "2030-01-03T00:00:00.0000000", "timeZone": "UTC"});
        e["isCancelled"] = json!(true);
        let (r, _) = client(None).map_event(&e).unwrap();
        assert_eq!(r.fields["start"], json!("2030-01-02"));
        assert_eq!(r.fields["end"], json!("2030-01-03"));
        assert_eq!(r.fields["status"], json!("cancelled"));
        assert!(r.deleted);
        let removed =
            json!({"@odata.type": "#microsoft.graph.event", "id": "gone", "@removed": {"reason": "deleted"}});
        let (r, end) = client(None).map_event(&removed).unwrap();
        assert!(r.deleted && r.fields.is_empty() && end.is_none());
        assert!(client(None).map_event(&json!({"subject": "no id"})).is_err());
    }

    #[test]
    fn time_zones_convert_from_iana_windows_and_fixed_offsets_and_unknown_ones_fail() {
        let utc = |dt, tz| to_utc(dt, Some(tz)).map(rfc3339);
        assert_eq!(utc("2030-07-01T12:00:00.0000000", "UTC").as_deref(), Some("2030-07-01T12:00:00Z"));
        assert_eq!(utc("2030-07-01T12:00:00", "America/New_York").as_deref(), Some("2030-07-01T16:00:00Z"));
        assert_eq!(
            utc("2030-01-01T12:00:00", "Pacific Standard Time").as_deref(),
            Some("2030-01-01T20:00:00Z")
        );
        assert_eq!(utc("2030-01-01T12:00:00", "UTC+05:30").as_deref(), Some("2030-01-01T06:30:00Z"));
        assert_eq!(utc("2030-01-01T12:00:00", "Mars/Olympus"), None);
        let mut e = event();
        e["start"]["timeZone"] = json!("Mars/Olympus");
        assert!(matches!(client(None).map_event(&e), Err(ProviderError::Permanent(_))));
    }

    #[test]
    fn field_overrides_drop_fields_and_add_custom_properties() {
        let overrides = BTreeMap::from([
            ("description".to_owned(), String::new()),
            ("importance".to_owned(), "importance".to_owned()),
        ]);
        let mut e = event();
        e["importance"] = json!("high");
        let (r, _) = client(Some(overrides)).map_event(&e).unwrap();
        assert!(!r.fields.contains_key("description"));
        assert_eq!(r.fields["importance"], json!("high"));
    }

    #[test]
    fn canonical_fields_become_a_graph_body_in_utc() {
        let fields: Fields = serde_json::from_value(json!({
            "title": "Intro", "start": "2030-01-02T10:00:00+01:00", "end": "2030-01-02T10:30:00Z",
            "attendees": ["a@x.io"], "location": "Room", "description": "hi", "status": "confirmed",
            "organizer": "me@x.io"
        }))
        .unwrap();
        let body = client(None).event_body(&fields).unwrap();
        assert_eq!(body["subject"], json!("Intro"));
        assert_eq!(body["start"], json!({"dateTime": "2030-01-02T09:00:00", "timeZone": "UTC"}));
        assert_eq!(body["attendees"][0]["emailAddress"]["address"], json!("a@x.io"));
        assert_eq!(body["body"]["content"], json!("hi"));
        assert_eq!(body["showAs"], json!("busy"));
        assert!(!body.contains_key("organizer"));
    }

    #[test]
    fn graph_ids_with_padding_round_trip_through_external_ids() {
        let id = external_id_of("AAMkAGI2TG93AAA=").unwrap();
        assert_eq!(id.as_str(), "AAMkAGI2TG93AAA.");
        assert_eq!(graph_id_of(&id), "AAMkAGI2TG93AAA=");
        assert!(external_id_of("has a space").is_err());
    }

    #[test]
    fn transaction_ids_are_stable_per_key_and_differ_between_keys() {
        let a = IdempotencyKey::parse("push-1").unwrap();
        let b = IdempotencyKey::parse("push-2").unwrap();
        assert_eq!(transaction_id(&a), transaction_id(&a));
        assert_ne!(transaction_id(&a), transaction_id(&b));
    }

    #[test]
    fn a_restart_expects_known_events_still_in_the_new_window_and_forgets_past_ones() {
        let now = Utc::now();
        let mut c = Cursor::fresh(now - chrono::Duration::days(1), 7);
        c.link = Some("http://graph.test/v1.0/me/calendarView/delta?$deltatoken=x".into());
        c.known.insert("past".into(), (now - chrono::Duration::hours(1)).timestamp());
        c.known.insert("future".into(), (now + chrono::Duration::hours(5)).timestamp());
        c.restart(now, 7);
        assert_eq!(c.link, None);
        assert_eq!(c.window_start, now.timestamp());
        assert_eq!(c.unseen, Some(BTreeSet::from(["future".to_owned()])));
        assert!(!c.known.contains_key("past"));
        assert_eq!(Cursor::parse(&c.to_cursor()).unwrap(), c);
        assert!(matches!(Cursor::parse(&SyncCursor::new("garbage")), Err(ProviderError::CursorExpired)));

        let mut full = Cursor::fresh(now, 7);
        full.overflow = true;
        full.restart(now, 7);
        assert_eq!(full.unseen, None);
        assert!(!full.overflow);
    }

    #[test]
    fn subscription_expirations_are_capped_and_renewed_within_the_margin() {
        let now = Utc::now();
        let capped = cap_expiration(now + chrono::Duration::days(30), now);
        assert!(capped <= now + chrono::Duration::minutes(MAX_SUBSCRIPTION_MINUTES));
        assert!(capped > now + chrono::Duration::minutes(4200));
        let margin = chrono::Duration::hours(12);
        assert!(needs_renewal(now + chrono::Duration::hours(11), now, margin));
        assert!(!needs_renewal(now + chrono::Duration::hours(13), now, margin));
    }
}
