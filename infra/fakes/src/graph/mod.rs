//! A fake Microsoft Graph v1.0 mailbox calendar: `me/calendarView/delta` (page size from
//! `Prefer: odata.maxpagesize`, `@odata.nextLink` / `@odata.deltaLink` whose tokens encode a position
//! in the mailbox's change sequence, `@removed` entries), `me/events` reads and writes (`If-Match`
//! on change keys, idempotent creates through `transactionId`), `subscriptions` with Graph's
//! validation handshake and change / lifecycle notifications, the Microsoft identity platform
//! token endpoint (`/{tenant}/oauth2/v2.0/token`), Graph's error bodies and throttling answers,
//! plus `/_admin/` routes and a Rust handle ([`GraphState`]) to act as a person on the calendar,
//! inject faults and count requests.
//!
//! Simplifications, on purpose: one mailbox (`me`), times are rendered in UTC (no
//! `Prefer: outlook.timezone`), writes accept only UTC times, no recurrence, and notification URLs
//! may be plain `http` (Graph requires `https`).

mod server;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::admin;
use store::{Event, Store, When};

/// Graph refuses Outlook subscriptions that expire later than this after now
/// (<https://learn.microsoft.com/graph/api/resources/subscription#subscription-lifetime>).
pub const MAX_SUBSCRIPTION_MINUTES: i64 = 4230;
/// The mailbox owner's directory id (appears in notification resources).
pub const USER_ID: &str = "87d349ed-44d7-43e1-9a83-5f2406dee5bd";
pub const TENANT_ID: &str = "84bd8158-6d4d-4958-8b9f-9d6445542f95";

/// How to start a fake.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Port on 127.0.0.1; 0 lets the OS pick.
    pub port: u16,
    /// Events seeded over the six days from `anchor` (plus a few two weeks out).
    pub events: usize,
    pub seed: u64,
    /// The first seeded day (`None`: today, UTC).
    pub anchor: Option<NaiveDate>,
    /// An access token that never expires (`None`: only issued tokens work).
    pub static_token: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    /// Lifetime of access tokens issued by the token endpoint and [`GraphState::issue_token`].
    pub access_token_ttl: Duration,
    /// Delta page size when the client sends no `Prefer: odata.maxpagesize`.
    pub default_page_size: usize,
    /// How long the notification endpoint has to echo a validation token (Graph: 10 s).
    pub validation_timeout: Duration,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            port: 0,
            events: 0,
            seed: 42,
            anchor: None,
            static_token: Some("graph-fake-token".into()),
            client_id: "fake-graph-client-id".into(),
            client_secret: "fake-graph-client-secret".into(),
            access_token_ttl: Duration::from_secs(3599),
            default_page_size: 10,
            validation_timeout: Duration::from_secs(10),
        }
    }
}

/// The routes the fake counts and can inject faults into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    Delta,
    GetEvent,
    CreateEvent,
    UpdateEvent,
    DeleteEvent,
    CreateSubscription,
    UpdateSubscription,
    DeleteSubscription,
    Token,
    /// `GET /{tenant}/oauth2/v2.0/authorize`.
    Authorize,
    /// `GET /v1.0/me`.
    Me,
    /// Matches every route (faults only).
    Any,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Delta => "delta",
            Route::GetEvent => "get_event",
            Route::CreateEvent => "create_event",
            Route::UpdateEvent => "update_event",
            Route::DeleteEvent => "delete_event",
            Route::CreateSubscription => "create_subscription",
            Route::UpdateSubscription => "update_subscription",
            Route::DeleteSubscription => "delete_subscription",
            Route::Token => "token",
            Route::Authorize => "authorize",
            Route::Me => "me",
            Route::Any => "any",
        }
    }
}

/// What an injected fault does to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// 429 `TooManyRequests` with `Retry-After` (seconds; Graph always sends one).
    RateLimit {
        #[serde(default = "one_u64")]
        retry_after_secs: u64,
    },
    /// 503 `ServiceUnavailable`, with `Retry-After` when given.
    ServiceUnavailable {
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// 504 `GatewayTimeout`, with `Retry-After` when given.
    GatewayTimeout {
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// 500 `InternalServerError`.
    ServerError,
    /// 401 `InvalidAuthenticationToken`, whatever the token.
    ExpiredToken,
    /// 200 with a truncated JSON body.
    MalformedJson,
    /// Waits this long, then answers normally.
    Delay { ms: u64 },
    /// 410 Gone on the next delta request that uses a `$deltatoken` (other requests pass):
    /// `code` is `syncStateNotFound` (default) or `resyncRequired`.
    SyncStateGone {
        #[serde(default)]
        code: Option<String>,
    },
}

/// A fault for the next `count` requests to `route` (`POST /_admin/faults`).
pub type Fault = admin::Fault<Route, FaultKind>;

fn one_u64() -> u64 {
    1
}

/// Request counters (`GET /_admin/stats`): the common ones (`rate_limited` counts 429s) and
/// [`NotificationCounts`].
pub type Stats = admin::Stats<NotificationCounts>;

/// The Graph fake's own counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationCounts {
    /// Validation requests and notifications POSTed to subscribers.
    pub notifications_sent: u64,
}

impl admin::FaultRoute for Route {
    fn is_any(&self) -> bool {
        *self == Route::Any
    }
}

impl admin::FaultKind for FaultKind {
    fn is_rate_limit(&self) -> bool {
        matches!(self, FaultKind::RateLimit { .. })
    }
}

/// An OAuth token pair issued by the fake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedToken {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// A subscription as the fake keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    pub resource: String,
    pub change_type: String,
    pub notification_url: String,
    pub lifecycle_notification_url: Option<String>,
    pub client_state: Option<String>,
    pub expiration_date_time: DateTime<Utc>,
}

/// A person's edit of an event (admin); absent fields stay.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EventEdit {
    pub subject: Option<String>,
    pub body: Option<String>,
    pub location: Option<String>,
    pub show_as: Option<String>,
    /// New attendee addresses (replacing the list).
    pub attendees: Option<Vec<String>>,
}

/// A new event created by a person (admin).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewEvent {
    pub subject: String,
    #[serde(default)]
    pub body: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(default)]
    pub all_day: bool,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub attendees: Vec<String>,
}

#[derive(Debug)]
struct TokenInfo {
    expires_at: Option<Instant>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    tokens: HashMap<String, TokenInfo>,
    refresh_tokens: HashMap<String, ()>,
    subscriptions: BTreeMap<String, Subscription>,
    /// Delta and skip tokens of older generations answer 410.
    generation: u64,
}

/// The fake mailbox's state. Every admin operation is also a method here.
#[derive(Debug)]
pub struct GraphState {
    inner: Mutex<Inner>,
    config: FakeConfig,
    http: reqwest::Client,
    /// Authorization codes of the identity platform's authorization-code flow.
    pub oauth: crate::oauth::CodeGrants,
    control: admin::Control<Route, FaultKind, NotificationCounts>,
}

fn random_token(prefix: &str) -> String {
    let mut rng = rand::rng();
    let a: u64 = rng.random();
    let b: u64 = rng.random();
    format!("{prefix}.{a:016x}{b:016x}")
}

/// A fresh GUID, as Graph uses for request ids and subscription ids.
pub fn guid() -> String {
    let a: u128 = rand::rng().random();
    let h = format!("{a:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Why the bearer token was refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    Missing,
    Invalid,
    Expired,
}

impl GraphState {
    pub fn new(config: FakeConfig) -> Self {
        let mut tokens = HashMap::new();
        if let Some(t) = &config.static_token {
            tokens.insert(t.clone(), TokenInfo { expires_at: None });
        }
        let anchor = config.anchor.unwrap_or_else(|| Utc::now().date_naive());
        // Seeded events were created the day before the anchor: the same anchor and seed give the
        // same calendar, byte for byte.
        let created = (anchor - chrono::Duration::days(1)).and_time(chrono::NaiveTime::MIN).and_utc();
        let inner = Inner {
            store: Store::seeded(config.events, config.seed, anchor, created),
            tokens,
            refresh_tokens: HashMap::new(),
            subscriptions: BTreeMap::new(),
            generation: 1,
        };
        let http = reqwest::Client::builder().timeout(config.validation_timeout).build().unwrap_or_default();
        Self {
            inner: Mutex::new(inner),
            config,
            http,
            oauth: crate::oauth::CodeGrants::new(),
            control: admin::Control::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn config(&self) -> &FakeConfig {
        &self.config
    }

    /// Ids of live events (cancelled included), in id order.
    pub fn event_ids(&self) -> Vec<String> {
        self.lock().store.events.values().filter(|e| !e.deleted).map(|e| e.id.clone()).collect()
    }

    /// Live events (cancelled included).
    pub fn event_count(&self) -> usize {
        self.lock().store.events.values().filter(|e| !e.deleted).count()
    }

    /// The event as the API renders it, or `None` when absent or deleted.
    pub fn event(&self, id: &str) -> Option<Value> {
        let inner = self.lock();
        inner.store.live(id).map(|e| inner.store.render(e, ""))
    }

    /// Every live event, rendered.
    pub fn events(&self) -> Vec<Value> {
        let inner = self.lock();
        inner.store.events.values().filter(|e| !e.deleted).map(|e| inner.store.render(e, "")).collect()
    }

    /// Live events whose `transactionId` is this.
    pub fn events_with_transaction(&self, transaction_id: &str) -> usize {
        let inner = self.lock();
        inner
            .store
            .events
            .values()
            .filter(|e| !e.deleted && e.transaction_id.as_deref() == Some(transaction_id))
            .count()
    }

    /// The change sequence position (bumped by every change).
    pub fn sequence(&self) -> u64 {
        self.lock().store.seq
    }

    /// Creates an event as the mailbox owner would in Outlook; returns its id.
    pub fn create_event(&self, new: NewEvent) -> String {
        let when = if new.all_day {
            When::AllDay { start: new.start.date_naive(), end: new.end.date_naive() }
        } else {
            When::Timed { start: new.start.naive_utc(), end: new.end.naive_utc() }
        };
        let event = Event {
            id: String::new(),
            subject: new.subject,
            body: new.body,
            when,
            location: new.location,
            show_as: "busy".into(),
            response: "organizer".into(),
            organizer: (store::OWNER_NAME.into(), store::OWNER_EMAIL.into()),
            attendees: new.attendees.iter().map(|a| store::new_attendee(a, a)).collect(),
            is_cancelled: false,
            transaction_id: None,
            created: Utc::now(),
            modified: Utc::now(),
            version: 0,
            seq: 0,
            deleted: false,
        };
        self.lock().store.insert(event, Utc::now())
    }

    /// Edits an event as a person would; `false` if it is absent or deleted.
    pub fn edit_event(&self, id: &str, edit: EventEdit) -> bool {
        self.lock()
            .store
            .change(id, Utc::now(), |e| {
                if let Some(s) = edit.subject {
                    e.subject = s;
                }
                if let Some(b) = edit.body {
                    e.body = b;
                }
                if let Some(l) = edit.location {
                    e.location = l;
                }
                if let Some(s) = edit.show_as {
                    e.show_as = s;
                }
                if let Some(a) = edit.attendees {
                    e.attendees = a.iter().map(|a| store::new_attendee(a, a)).collect();
                }
            })
            .is_some()
    }

    /// Moves an event by `by` (all-day events by whole days).
    pub fn move_event(&self, id: &str, by: chrono::Duration) -> bool {
        self.lock().store.change(id, Utc::now(), |e| e.when = e.when.shifted(by)).is_some()
    }

    /// The organiser cancels the meeting: it stays in the calendar with `isCancelled: true`.
    pub fn cancel_event(&self, id: &str) -> bool {
        self.lock().store.change(id, Utc::now(), |e| e.is_cancelled = true).is_some()
    }

    /// Deletes an event; the next delta reports it `@removed`.
    pub fn delete_event(&self, id: &str) -> bool {
        self.lock().store.delete(id, Utc::now())
    }

    admin::control_methods!();

    /// Requests counted on one route.
    pub fn route_count(&self, route: Route) -> u64 {
        self.control.counters.route(route.as_str())
    }

    /// Forgets every delta round: all outstanding delta and skip tokens answer 410 from now on.
    pub fn expire_sync_state(&self) {
        self.lock().generation += 1;
    }

    /// Issues an access token (lifetime `ttl`, default the config's) and a refresh token.
    pub fn issue_token(&self, ttl: Option<Duration>) -> IssuedToken {
        let ttl = ttl.unwrap_or(self.config.access_token_ttl);
        let access = random_token("eyJ0eXAiOiJKV1QiLCJub25jZSI6ImZha2UifQ");
        let refresh = random_token("0.AXEAfake-refresh");
        let mut inner = self.lock();
        inner.tokens.insert(access.clone(), TokenInfo { expires_at: Some(Instant::now() + ttl) });
        inner.refresh_tokens.insert(refresh.clone(), ());
        IssuedToken { access_token: access, refresh_token: refresh, expires_in: ttl.as_secs() }
    }

    /// Makes an access token expired now; `false` if unknown.
    pub fn expire_token(&self, access_token: &str) -> bool {
        match self.lock().tokens.get_mut(access_token) {
            Some(info) => {
                info.expires_at = Some(Instant::now());
                true
            }
            None => false,
        }
    }

    /// Revokes a refresh token (consent withdrawn); `false` if unknown.
    pub fn revoke_refresh_token(&self, refresh_token: &str) -> bool {
        self.lock().refresh_tokens.remove(refresh_token).is_some()
    }

    /// Redeems a refresh token: a new access token and a new refresh token (the Microsoft identity
    /// platform rotates refresh tokens; the old one stays valid). `None` if unknown.
    fn redeem(&self, refresh_token: &str) -> Option<IssuedToken> {
        if !self.lock().refresh_tokens.contains_key(refresh_token) {
            return None;
        }
        Some(self.issue_token(None))
    }

    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.lock().subscriptions.values().cloned().collect()
    }

    pub fn subscription(&self, id: &str) -> Option<Subscription> {
        self.lock().subscriptions.get(id).cloned()
    }

    /// Sends a change notification for `event_id` to the subscription's `notificationUrl`, as
    /// Graph does; returns the status the receiver answered (Graph expects 202).
    pub async fn notify_change(
        &self,
        subscription_id: &str,
        change_type: &str,
        event_id: &str,
    ) -> anyhow::Result<u16> {
        let sub = self.subscription(subscription_id).context("no such subscription")?;
        let etag = self.lock().store.events.get(event_id).map(Event::etag);
        let resource = format!("Users/{USER_ID}/Events/{event_id}");
        let body = json!({ "value": [{
            "id": guid(),
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": store::graph_instant(sub.expiration_date_time),
            "clientState": sub.client_state,
            "changeType": change_type,
            "resource": resource,
            "tenantId": TENANT_ID,
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Event",
                "@odata.id": resource,
                "@odata.etag": etag,
                "id": event_id,
            },
        }]});
        self.post_notification(&sub.notification_url, &body).await
    }

    /// Sends a lifecycle notification (`reauthorizationRequired`, `subscriptionRemoved`,
    /// `missed`) to the subscription's `lifecycleNotificationUrl`; returns the receiver's status.
    /// `subscriptionRemoved` also removes the subscription.
    pub async fn notify_lifecycle(
        &self,
        subscription_id: &str,
        lifecycle_event: &str,
    ) -> anyhow::Result<u16> {
        let sub = self.subscription(subscription_id).context("no such subscription")?;
        let url = sub.lifecycle_notification_url.clone().context("the subscription has no lifecycle URL")?;
        if lifecycle_event == "subscriptionRemoved" {
            self.lock().subscriptions.remove(subscription_id);
        }
        let body = json!({ "value": [{
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": store::graph_instant(sub.expiration_date_time),
            "tenantId": TENANT_ID,
            "clientState": sub.client_state,
            "lifecycleEvent": lifecycle_event,
        }]});
        self.post_notification(&url, &body).await
    }

    async fn post_notification(&self, url: &str, body: &Value) -> anyhow::Result<u16> {
        self.control.counters.update(|s| s.notifications_sent += 1);
        let resp = self.http.post(url).json(body).send().await.context("posting the notification")?;
        Ok(resp.status().as_u16())
    }

    /// Graph's validation handshake: POST `url?validationToken=...` (text/plain) and expect 200
    /// with the token echoed as `text/plain` within the validation timeout (10 s)
    /// (<https://learn.microsoft.com/graph/change-notifications-delivery-webhooks#notificationurl-validation>).
    async fn validate_endpoint(&self, url: &str) -> Result<(), String> {
        let token = format!(
            "Validation: Testing client application reachability for subscription Request-Id: {}",
            guid()
        );
        self.control.counters.update(|s| s.notifications_sent += 1);
        let resp = self
            .http
            .post(url)
            .query(&[("validationToken", token.as_str())])
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .send()
            .await
            .map_err(|e| format!("the notification endpoint did not answer: {}", e.without_url()))?;
        let status = resp.status();
        let text_plain = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/plain"));
        let body = resp.text().await.unwrap_or_default();
        if status.as_u16() == 200 && text_plain && body == token {
            Ok(())
        } else {
            // Graph's own message; what went wrong goes to the fake's log.
            tracing::info!(%status, text_plain, echoed = body == token, "subscription validation failed");
            Err("Subscription validation request failed. Notification endpoint must respond with 200 OK to \
                 validation request."
                .to_owned())
        }
    }

    /// Counts the request and takes the first pending fault for `route`. A `SyncStateGone` fault
    /// waits for a request that uses a delta token.
    fn count_and_take_fault(&self, route: Route, uses_delta_token: bool) -> Option<FaultKind> {
        admin::Admin::count_and_take_where(self, &route, route.as_str(), |kind| {
            uses_delta_token || !matches!(kind, FaultKind::SyncStateGone { .. })
        })
    }

    fn admit(&self, bearer: Option<&str>) -> Result<(), Refusal> {
        let inner = self.lock();
        let token = bearer.ok_or(Refusal::Missing)?;
        let info = inner.tokens.get(token).ok_or(Refusal::Invalid)?;
        if info.expires_at.is_some_and(|at| at <= Instant::now()) {
            return Err(Refusal::Expired);
        }
        Ok(())
    }
}

/// A delta round's position, carried (hex-encoded) in `$skiptoken` and `$deltatoken`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeltaPosition {
    /// Window, epoch seconds.
    pub s: i64,
    pub e: i64,
    /// Changes after this sequence number...
    pub since: u64,
    /// ...up to this one (skip tokens only; a delta token takes the sequence at its use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upto: Option<u64>,
    /// Last id of the previous page (skip tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    pub g: u64,
}

impl DeltaPosition {
    pub fn encode(&self) -> String {
        let raw = serde_json::to_string(self).unwrap_or_default();
        raw.bytes().map(|b| format!("{b:02x}")).collect()
    }

    pub fn decode(token: &str) -> Option<Self> {
        if !token.len().is_multiple_of(2) {
            return None;
        }
        let bytes: Option<Vec<u8>> =
            (0..token.len()).step_by(2).map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok()).collect();
        serde_json::from_slice(&bytes?).ok()
    }

    pub fn window(&self) -> Option<(NaiveDateTime, NaiveDateTime)> {
        let s = DateTime::from_timestamp(self.s, 0)?.naive_utc();
        let e = DateTime::from_timestamp(self.e, 0)?.naive_utc();
        Some((s, e))
    }
}

impl admin::Admin for GraphState {
    type Route = Route;
    type Kind = FaultKind;
    type Extra = NotificationCounts;

    fn control(&self) -> &admin::Control<Route, FaultKind, NotificationCounts> {
        &self.control
    }
    fn oauth(&self) -> Option<&crate::oauth::CodeGrants> {
        Some(&self.oauth)
    }
    fn bad_body(error: &serde_json::Error) -> axum::response::Response {
        server::bad_json(error)
    }
}

/// Starts fakes.
pub struct GraphFake;

impl GraphFake {
    /// Binds 127.0.0.1 on `config.port` (0: OS-picked) and serves until the [`RunningFake`] drops.
    pub async fn start(config: FakeConfig) -> anyhow::Result<RunningFake> {
        let bound = crate::serving::bind(config.port).await?;
        let base_url = bound.base_url.clone();
        let state = Arc::new(GraphState::new(config));
        let app = server::router(state.clone(), base_url.clone());
        let server = bound.serve("Graph", app);
        Ok(RunningFake::new(base_url, state, server))
    }
}

/// A running fake; the server stops when this is dropped.
pub type RunningFake = crate::serving::Running<GraphState>;

#[cfg(test)]
mod tests;
