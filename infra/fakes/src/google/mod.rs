//! A fake Google Calendar (API v3) for one calendar: `events.list` with page and sync tokens,
//! `events.get/insert/patch/update/delete` with etags and `If-Match`, `events.watch` and
//! `channels.stop` push channels, the OAuth token endpoint (`/token`), Google's error bodies, plus
//! `/_admin/` routes and a Rust handle ([`GoogleState`]) to edit events as a person would, inject
//! faults, send push notifications and count requests.
//!
//! The API is served under `/calendar/v3` (so a connection's base URL is `{fake}/calendar/v3`, as
//! `https://www.googleapis.com/calendar/v3` in production) and the token endpoint at `/token` (as
//! `https://oauth2.googleapis.com/token`). Sync tokens encode a change-sequence position; the
//! listing's `nextSyncToken` is the position when its first page was served, so changes made while
//! a client pages are delivered again by the next incremental pull rather than lost.

mod server;
pub mod store;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::admin;
use store::{Store, When};

/// Google's access-token lifetime as its token endpoint reports it.
pub const ACCESS_TOKEN_TTL: Duration = crate::oauth::GOOGLE_ACCESS_TOKEN_TTL;
/// The scopes a consent grants the app.
pub const SCOPES: [&str; 2] =
    ["https://www.googleapis.com/auth/calendar.events", "https://www.googleapis.com/auth/calendar.readonly"];
/// Longest channel lifetime the fake grants (Google caps events channels at about a week).
pub const MAX_CHANNEL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How to start a fake.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Port on 127.0.0.1; 0 lets the OS pick.
    pub port: u16,
    /// Single events seeded with ids `seed00000..`.
    pub events: usize,
    /// Instances of the seeded weekly series (0: none).
    pub weekly_instances: usize,
    pub seed: u64,
    /// Day the seeded events are placed around (default: today, 00:00 UTC).
    pub anchor: Option<DateTime<Utc>>,
    /// A token that never expires (`None`: only issued tokens work).
    pub static_token: Option<String>,
    pub client_id: String,
    pub client_secret: String,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            port: 0,
            events: 30,
            weekly_instances: 4,
            seed: 42,
            anchor: None,
            static_token: Some("ya29.fake-google".into()),
            client_id: "fake-google-client.apps.googleusercontent.com".into(),
            client_secret: "fake-google-secret".into(),
        }
    }
}

/// The routes the fake counts and can inject faults into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    List,
    Get,
    Insert,
    Patch,
    Update,
    Delete,
    Watch,
    Stop,
    Token,
    /// `GET /o/oauth2/v2/auth` (accounts.google.com's consent page).
    Authorize,
    /// `POST /revoke` (oauth2.googleapis.com).
    Revoke,
    /// `GET /calendar/v3/calendars/{calendarId}`.
    GetCalendar,
    /// Matches every route (faults only).
    Any,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::List => "list",
            Route::Get => "get",
            Route::Insert => "insert",
            Route::Patch => "patch",
            Route::Update => "update",
            Route::Delete => "delete",
            Route::Watch => "watch",
            Route::Stop => "stop",
            Route::Token => "token",
            Route::Authorize => "authorize",
            Route::Revoke => "revoke",
            Route::GetCalendar => "get_calendar",
            Route::Any => "any",
        }
    }
}

/// What an injected fault does to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// A rate-limit answer: `status` 429 (default) or 403, `reason` `rateLimitExceeded` (default)
    /// or `userRateLimitExceeded`; `retry_after_secs` adds a `Retry-After` header.
    RateLimit {
        #[serde(default)]
        status: Option<u16>,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// 500 `backendError` (or `status`, e.g. 503).
    ServerError {
        #[serde(default)]
        status: Option<u16>,
    },
    /// 401 `authError`, whatever the token.
    ExpiredToken,
    /// 200 with a truncated JSON body.
    MalformedJson,
    /// Waits this long, then answers normally.
    Delay { ms: u64 },
    /// 410 `fullSyncRequired` on the next list request that carries a `syncToken` (other requests
    /// to the route pass through without using up the fault).
    SyncTokenGone,
}

/// A fault for the next `count` requests to `route` (`POST /_admin/faults`).
pub type Fault = admin::Fault<Route, FaultKind>;

/// Request counters (`GET /_admin/stats`): the common ones and [`CalendarCounts`].
pub type Stats = admin::Stats<CalendarCounts>;

/// The Calendar fake's own counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarCounts {
    /// List requests that carried a `syncToken`.
    pub incremental_lists: u64,
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

pub use crate::oauth::IssuedToken;

pub use crate::channels::{Channel, Delivery};

#[derive(Debug)]
struct Inner {
    store: Store,
}

/// The fake calendar's state. Every admin operation is also a method here.
#[derive(Debug)]
pub struct GoogleState {
    inner: Mutex<Inner>,
    config: FakeConfig,
    http: reqwest::Client,
    channels: crate::channels::Channels,
    /// The OAuth side: authorization codes and tokens.
    pub oauth: crate::oauth::GoogleOAuth,
    control: admin::Control<Route, FaultKind, CalendarCounts>,
}

/// Why the gate refused a request.
#[derive(Debug)]
pub(crate) enum Refusal {
    Unauthenticated,
}

/// An error from an edit made through the handle.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    #[error("no such event")]
    NotFound,
    #[error("invalid event: {0}")]
    Invalid(String),
}

impl GoogleState {
    pub fn new(config: FakeConfig) -> Self {
        let anchor = config.anchor.unwrap_or_else(|| {
            let today = Utc::now().date_naive();
            When::Day(today).instant()
        });
        let oauth = crate::oauth::GoogleOAuth::new(
            (&config.client_id, &config.client_secret),
            scopes(),
            config.static_token.as_deref(),
            &scopes(),
        );
        let inner =
            Inner { store: Store::seeded(config.events, config.weekly_instances, config.seed, anchor) };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Self {
            inner: Mutex::new(inner),
            config,
            http,
            channels: Default::default(),
            oauth,
            control: admin::Control::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn config(&self) -> &FakeConfig {
        &self.config
    }

    /// The event as `events.get` renders it (cancelled ones too), or `None`.
    pub fn event(&self, id: &str) -> Option<Value> {
        self.lock().store.get(id).map(|e| e.render())
    }

    /// Ids of events that are not cancelled (single events and instances).
    pub fn live_event_ids(&self) -> Vec<String> {
        self.lock().store.live_ids()
    }

    /// Every stored event, cancelled ones and recurring parents included.
    pub fn event_count(&self) -> usize {
        self.lock().store.len()
    }

    /// Creates an event as a person would (organizer: the calendar owner); returns it rendered.
    /// `event` is an Event resource; `id` in it is used when given.
    pub fn create_event(&self, event: Value) -> Result<Value, EditError> {
        let props = store::writable_properties(&event, true).map_err(EditError::Invalid)?;
        let mut inner = self.lock();
        let id = match event.get("id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => inner.store.fresh_id(),
        };
        let rendered = inner.store.insert(id, props, Utc::now()).map(|e| e.render());
        rendered.map_err(|_| EditError::Invalid("the id already exists".into()))
    }

    /// Edits an event as a person would: the properties in `patch` replace the event's.
    pub fn edit_event(&self, id: &str, patch: Value) -> Result<Value, EditError> {
        let props = store::writable_properties(&patch, false).map_err(EditError::Invalid)?;
        let mut inner = self.lock();
        inner.store.modify(id, props, false, Utc::now()).map(|e| e.render()).ok_or(EditError::NotFound)
    }

    /// Moves an event to new start and end instants.
    pub fn move_event(&self, id: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Value, EditError> {
        let patch = serde_json::json!({
            "start": { "dateTime": store::rfc3339(start) },
            "end": { "dateTime": store::rfc3339(end) },
        });
        self.edit_event(id, patch)
    }

    /// Cancels (deletes) an event as a person would.
    pub fn cancel_event(&self, id: &str) -> Result<Value, EditError> {
        self.lock().store.cancel(id, Utc::now()).map(|e| e.render()).ok_or(EditError::NotFound)
    }

    /// Makes every sync token issued so far answer 410 `fullSyncRequired`.
    pub fn invalidate_sync_tokens(&self) {
        let mut inner = self.lock();
        inner.store.seq += 1;
        inner.store.min_sync_seq = inner.store.seq;
    }

    admin::control_methods!();

    /// Issues an access token (lifetime `ttl`, default Google's 3599 s) and a refresh token.
    pub fn issue_token(&self, ttl: Option<Duration>) -> IssuedToken {
        self.oauth.tokens.issue(&scopes(), ttl)
    }

    /// Makes an access token expired now; `false` if unknown.
    pub fn expire_token(&self, access_token: &str) -> bool {
        self.oauth.tokens.expire(access_token)
    }

    /// `POST /revoke`: a refresh token (it stops refreshing) or an access token (it stops
    /// working); `false` if unknown.
    pub fn revoke(&self, token: &str) -> bool {
        self.oauth.tokens.revoke(token)
    }

    /// Revokes a refresh token; `false` if unknown.
    pub fn revoke_refresh_token(&self, refresh_token: &str) -> bool {
        self.oauth.tokens.revoke_refresh(refresh_token)
    }

    /// Every channel registered, stopped ones included, in creation order.
    pub fn channels(&self) -> Vec<Channel> {
        self.channels.all()
    }

    /// Active (not stopped, not expired) channels.
    pub fn active_channels(&self) -> Vec<Channel> {
        self.channels.active()
    }

    /// Registers a channel; refused if its id is in use by an active channel.
    pub fn add_channel(&self, channel: Channel) -> Result<Channel, crate::channels::WatchRefusal> {
        self.channels.add(channel)
    }

    /// Stops the channel with this id and resource id; `false` if there is none active.
    pub fn stop_channel(&self, id: &str, resource_id: &str) -> bool {
        self.channels.stop(id, resource_id)
    }

    /// Sends a notification with `X-Goog-Resource-State: state` (`sync` or `exists`) to every
    /// active channel (or only `channel_id`). Returns what each receiver answered.
    pub async fn notify(&self, state: &str, channel_id: Option<&str>) -> Vec<Delivery> {
        self.channels.notify(&self.http, state, channel_id).await
    }

    /// Counts the request and takes the first pending fault for `route`. `sync_token`: whether a
    /// list request carries a sync token (only those use up a `SyncTokenGone` fault).
    fn count_and_take_fault(&self, route: Route, sync_token: bool) -> Option<FaultKind> {
        if sync_token {
            self.control.counters.update(|s| s.incremental_lists += 1);
        }
        use admin::Admin as _;
        self.count_and_take_where(&route, route.as_str(), |kind| {
            *kind != FaultKind::SyncTokenGone || (route == Route::List && sync_token)
        })
    }

    fn admit(&self, bearer: Option<&str>) -> Result<(), Refusal> {
        let token = bearer.ok_or(Refusal::Unauthenticated)?;
        self.oauth.tokens.scopes(token).map(|_| ()).ok_or(Refusal::Unauthenticated)
    }

    /// Runs `f` on the events under the lock (for the server's conditional writes).
    fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.lock().store)
    }
}

impl admin::Admin for GoogleState {
    type Route = Route;
    type Kind = FaultKind;
    type Extra = CalendarCounts;

    fn control(&self) -> &admin::Control<Route, FaultKind, CalendarCounts> {
        &self.control
    }
    fn oauth(&self) -> Option<&crate::oauth::CodeGrants> {
        Some(&self.oauth.codes)
    }
    fn bad_body(error: &serde_json::Error) -> axum::response::Response {
        server::bad_request("parseError", &error.to_string())
    }
}

fn scopes() -> Vec<String> {
    SCOPES.map(str::to_owned).to_vec()
}

impl crate::oauth::GoogleAccount for GoogleState {
    const PRODUCT: &'static str = "Google";

    fn google(&self) -> &crate::oauth::GoogleOAuth {
        &self.oauth
    }
    fn fault(
        &self,
        endpoint: crate::oauth::GoogleEndpoint,
    ) -> impl Future<Output = Option<axum::response::Response>> + Send {
        let route = match endpoint {
            crate::oauth::GoogleEndpoint::Token => Route::Token,
            crate::oauth::GoogleEndpoint::Authorize => Route::Authorize,
            crate::oauth::GoogleEndpoint::Revoke => Route::Revoke,
        };
        server::apply_fault(self, route, false)
    }
    fn unknown_token() -> axum::response::Response {
        server::not_found()
    }
}

/// Starts fakes.
pub struct GoogleFake;

impl GoogleFake {
    /// Binds 127.0.0.1 on `config.port` (0: OS-picked) and serves until the [`RunningFake`] drops.
    pub async fn start(config: FakeConfig) -> anyhow::Result<RunningFake> {
        let bound = crate::serving::bind(config.port).await?;
        let base_url = bound.base_url.clone();
        let state = Arc::new(GoogleState::new(config));
        let app = server::router(state.clone());
        let server = bound.serve("Google", app);
        Ok(RunningFake::new(base_url, state, server))
    }
}

/// A running fake; the server stops when this is dropped.
pub type RunningFake = crate::serving::Running<GoogleState>;

impl RunningFake {
    /// The API root, `{base_url}/calendar/v3`: a connection's base URL.
    pub fn api_url(&self) -> String {
        format!("{}/calendar/v3", self.base_url)
    }

    /// The OAuth token endpoint, `{base_url}/token`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url)
    }
}

/// Google's `resourceId` for the fake's one calendar: opaque and stable.
pub(crate) fn calendar_resource_id() -> String {
    "o3hgv1538sdjfh1acme0example".to_owned()
}

#[cfg(test)]
mod tests;
