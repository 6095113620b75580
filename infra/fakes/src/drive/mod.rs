//! A fake Google Drive (API v3) for one user's My Drive: `files.list` (a subset of the query
//! language, `fields` partial responses, `pageSize` up to 1000, page tokens), `files.get`,
//! `files.create` (metadata only) for seeding, `permissions.list`, `about.get`,
//! `changes.getStartPageToken`, `changes.list` (removed and trashed files, `includeRemoved`),
//! `changes.watch` and `channels.stop` push channels, the OAuth endpoints (`/token`,
//! `/o/oauth2/v2/auth`, `/revoke`), scopes, Google's error bodies and a switchable per-user rate
//! limit; plus `/_admin/` routes and a Rust handle ([`DriveState`]) to edit files as a person
//! would (each edit notifies the active channels), inject faults and count requests.
//!
//! The API is served under `/drive/v3` (a connection's base URL is `{fake}/drive/v3`, as
//! `https://www.googleapis.com/drive/v3` in production). It starts as a new, stock My Drive: the
//! root folder and nothing else, unless `files` asks for seeded ones.

mod fields;
mod query;
mod server;
pub mod store;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::admin;
pub use store::{FOLDER_MIME, NewFile, OWNER, ROOT_ID};
use store::{Store, StoreError};

/// Google's access-token lifetime as its token endpoint reports it.
pub const ACCESS_TOKEN_TTL: Duration = crate::oauth::GOOGLE_ACCESS_TOKEN_TTL;
/// A `changes.watch` channel lives an hour unless asked otherwise, and at most a week
/// (<https://developers.google.com/workspace/drive/api/guides/push#optional-properties>).
pub const DEFAULT_CHANNEL_TTL: Duration = Duration::from_secs(3600);
pub const MAX_CHANNEL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Drive scopes (<https://developers.google.com/workspace/drive/api/guides/api-specific-auth>).
pub const SCOPE_DRIVE: &str = "https://www.googleapis.com/auth/drive";
pub const SCOPE_DRIVE_FILE: &str = "https://www.googleapis.com/auth/drive.file";
pub const SCOPE_METADATA_READONLY: &str = "https://www.googleapis.com/auth/drive.metadata.readonly";
/// Scopes that may read file metadata, changes and permissions (the discovery document's
/// `scopes` of `files.list`, `changes.list` and `permissions.list`).
pub const READ_SCOPES: &[&str] = &[
    SCOPE_DRIVE,
    SCOPE_DRIVE_FILE,
    "https://www.googleapis.com/auth/drive.metadata",
    SCOPE_METADATA_READONLY,
    "https://www.googleapis.com/auth/drive.readonly",
];
/// Scopes that may create files (`files.create`'s).
pub const WRITE_SCOPES: &[&str] =
    &[SCOPE_DRIVE, SCOPE_DRIVE_FILE, "https://www.googleapis.com/auth/drive.appdata"];

/// How to start a fake.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Port on 127.0.0.1; 0 lets the OS pick.
    pub port: u16,
    /// Seeded files and folders (0: a stock My Drive).
    pub files: usize,
    /// A token that never expires, with every Drive scope (`None`: only issued tokens work).
    pub static_token: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    /// What an OAuth grant of this fake is good for (its tokens' scopes).
    pub granted_scopes: Vec<String>,
    /// The per-user rate limit, on from the start (`None`: off until switched on).
    pub rate_limit: Option<RateLimit>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            port: 0,
            files: 0,
            static_token: Some("ya29.fake-drive".into()),
            client_id: "fake-google-client.apps.googleusercontent.com".into(),
            client_secret: "fake-google-secret".into(),
            granted_scopes: vec![SCOPE_METADATA_READONLY.into()],
            rate_limit: None,
        }
    }
}

/// Drive's per-user query limit: `requests` in any `window_secs`; over it, `status` 403
/// `userRateLimitExceeded` (or 429 `rateLimitExceeded`)
/// (<https://developers.google.com/workspace/drive/api/guides/limits>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub requests: u32,
    pub window_secs: u64,
    #[serde(default = "forbidden")]
    pub status: u16,
}

fn forbidden() -> u16 {
    403
}

impl RateLimit {
    /// Drive's documented default: 12,000 queries per 60 seconds per user.
    pub fn drive_default() -> Self {
        Self { requests: 12_000, window_secs: 60, status: 403 }
    }
}

/// The routes the fake counts and can inject faults into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    FilesList,
    FilesGet,
    FilesCreate,
    PermissionsList,
    About,
    StartPageToken,
    ChangesList,
    ChangesWatch,
    ChannelsStop,
    Token,
    Authorize,
    Revoke,
    /// Matches every route (faults only).
    Any,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::FilesList => "files.list",
            Route::FilesGet => "files.get",
            Route::FilesCreate => "files.create",
            Route::PermissionsList => "permissions.list",
            Route::About => "about.get",
            Route::StartPageToken => "changes.getStartPageToken",
            Route::ChangesList => "changes.list",
            Route::ChangesWatch => "changes.watch",
            Route::ChannelsStop => "channels.stop",
            Route::Token => "token",
            Route::Authorize => "authorize",
            Route::Revoke => "revoke",
            Route::Any => "any",
        }
    }
}

/// What an injected fault does to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// 403 `userRateLimitExceeded` (or `status` 429 `rateLimitExceeded`).
    RateLimit {
        #[serde(default)]
        status: Option<u16>,
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
}

/// A fault for the next `count` requests to `route` (`POST /_admin/faults`).
pub type Fault = admin::Fault<Route, FaultKind>;

/// Request counters (`GET /_admin/stats`).
pub type Stats = admin::Stats;

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
    rate_limit: Option<RateLimit>,
    /// When the requests inside the rate-limit window came.
    recent: VecDeque<Instant>,
}

/// Why the gate refused a request.
#[derive(Debug)]
pub(crate) enum Refusal {
    Unauthenticated,
    InsufficientScopes,
    RateLimited(u16),
}

/// An error from an edit made through the handle.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    #[error("no such file: {0}")]
    NotFound(String),
    #[error("invalid edit: {0}")]
    Invalid(String),
}

impl From<StoreError> for EditError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => EditError::NotFound(id),
            StoreError::Invalid(m) => EditError::Invalid(m),
        }
    }
}

/// The fake Drive's state. Every admin operation is also a method here.
#[derive(Debug)]
pub struct DriveState {
    inner: Mutex<Inner>,
    config: FakeConfig,
    http: reqwest::Client,
    channels: crate::channels::Channels,
    /// The OAuth side: authorization codes and tokens.
    pub oauth: crate::oauth::GoogleOAuth,
    control: admin::Control<Route, FaultKind>,
}

impl DriveState {
    pub fn new(config: FakeConfig) -> Self {
        let all: Vec<String> = READ_SCOPES.iter().chain(WRITE_SCOPES).map(|s| (*s).to_owned()).collect();
        let oauth = crate::oauth::GoogleOAuth::new(
            (&config.client_id, &config.client_secret),
            config.granted_scopes.clone(),
            config.static_token.as_deref(),
            &all,
        );
        let inner = Inner {
            store: Store::seeded(config.files, Utc::now()),
            rate_limit: config.rate_limit,
            recent: VecDeque::new(),
        };
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

    /// The file as `files.get?fields=*` renders it, or `None` (removed or unknown).
    pub fn file(&self, id: &str) -> Option<Value> {
        self.lock().store.get(id).map(|f| f.render())
    }

    /// Ids of live files (trashed included).
    pub fn live_file_ids(&self) -> Vec<String> {
        self.lock().store.live().map(|f| f.id.clone()).collect()
    }

    /// Creates a file or folder as a person would; returns it rendered.
    pub fn create_file(&self, new: NewFile) -> Result<Value, EditError> {
        Ok(self.lock().store.create(new, Utc::now())?.render())
    }

    /// Renames a file.
    pub fn rename(&self, id: &str, name: &str) -> Result<Value, EditError> {
        Ok(self.lock().store.rename(id, name, Utc::now())?.render())
    }

    /// Moves a file to the trash (or out of it).
    pub fn trash(&self, id: &str, trashed: bool) -> Result<Value, EditError> {
        Ok(self.lock().store.set_trashed(id, trashed, Utc::now())?.render())
    }

    /// Deletes a file for good (a folder with what is inside).
    pub fn delete(&self, id: &str) -> Result<(), EditError> {
        Ok(self.lock().store.remove(id, Utc::now())?)
    }

    /// Shares a file with `email` as `role` (`writer`, `commenter`, `reader`).
    pub fn share(&self, id: &str, email: &str, role: &str) -> Result<Value, EditError> {
        Ok(self.lock().store.share(id, email, role, Utc::now())?.render())
    }

    /// Takes `email`'s access to a file away.
    pub fn unshare(&self, id: &str, email: &str) -> Result<Value, EditError> {
        Ok(self.lock().store.unshare(id, email, Utc::now())?.render())
    }

    admin::control_methods!();

    /// Switches the per-user rate limit on (`Some`) or off.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        let mut inner = self.lock();
        inner.rate_limit = limit;
        inner.recent.clear();
    }

    /// Issues an access token (lifetime `ttl`, default 3599 s) with `scopes` (default: the
    /// config's granted scopes) and a refresh token.
    pub fn issue_token(&self, ttl: Option<Duration>, scopes: Option<Vec<String>>) -> IssuedToken {
        let scopes = scopes.unwrap_or_else(|| self.config.granted_scopes.clone());
        self.oauth.tokens.issue(&scopes, ttl)
    }

    /// `POST /revoke`: a refresh token (it stops refreshing) or an access token (it stops
    /// working); `false` if unknown.
    pub fn revoke(&self, token: &str) -> bool {
        self.oauth.tokens.revoke(token)
    }

    /// Makes an access token expired now; `false` if unknown.
    pub fn expire_token(&self, access_token: &str) -> bool {
        self.oauth.tokens.expire(access_token)
    }

    /// Every channel registered, stopped ones included, in creation order.
    pub fn channels(&self) -> Vec<Channel> {
        self.channels.all()
    }

    /// Active (not stopped, not expired) channels.
    pub fn active_channels(&self) -> Vec<Channel> {
        self.channels.active()
    }

    fn add_channel(&self, channel: Channel) -> Result<Channel, crate::channels::WatchRefusal> {
        self.channels.add(channel)
    }

    /// Stops the channel with this id and resource id; `false` if there is none active.
    pub fn stop_channel(&self, id: &str, resource_id: &str) -> bool {
        self.channels.stop(id, resource_id)
    }

    /// Sends `X-Goog-Resource-State: state` (`sync` or `change`) to every active channel (or only
    /// `channel_id`), as Drive does. Returns what each receiver answered.
    pub async fn notify(&self, state: &str, channel_id: Option<&str>) -> Vec<Delivery> {
        self.channels.notify(&self.http, state, channel_id).await
    }

    /// Counts the request and takes the first pending fault for `route`.
    fn count_and_take_fault(&self, route: Route) -> Option<FaultKind> {
        admin::Admin::count_and_take(self, &route, route.as_str())
    }

    /// Checks the bearer token, its scopes (`needs`: any of them) and the per-user rate limit.
    fn admit(&self, bearer: Option<&str>, needs: &[&str]) -> Result<(), Refusal> {
        let token = bearer.ok_or(Refusal::Unauthenticated)?;
        let scopes = self.oauth.tokens.scopes(token).ok_or(Refusal::Unauthenticated)?;
        let mut inner = self.lock();
        if !scopes.iter().any(|s| needs.contains(&s.as_str())) {
            return Err(Refusal::InsufficientScopes);
        }
        if let Some(limit) = inner.rate_limit {
            let now = Instant::now();
            let window = Duration::from_secs(limit.window_secs);
            while inner.recent.front().is_some_and(|t| now.duration_since(*t) >= window) {
                inner.recent.pop_front();
            }
            if inner.recent.len() >= limit.requests as usize {
                self.control.counters.rate_limited();
                return Err(Refusal::RateLimited(limit.status));
            }
            inner.recent.push_back(now);
        }
        Ok(())
    }

    fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.lock().store)
    }
}

impl admin::Admin for DriveState {
    type Route = Route;
    type Kind = FaultKind;
    type Extra = admin::NoExtra;

    fn control(&self) -> &admin::Control<Route, FaultKind, admin::NoExtra> {
        &self.control
    }
    fn oauth(&self) -> Option<&crate::oauth::CodeGrants> {
        Some(&self.oauth.codes)
    }
    fn bad_body(error: &serde_json::Error) -> axum::response::Response {
        server::bad_admin_body(error)
    }
}

impl crate::oauth::GoogleAccount for DriveState {
    const PRODUCT: &'static str = "Google Drive";

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
        server::apply_fault(self, route)
    }
    fn unknown_token() -> axum::response::Response {
        server::unknown_token()
    }
}

/// Starts fakes.
pub struct DriveFake;

impl DriveFake {
    /// Binds 127.0.0.1 on `config.port` (0: OS-picked) and serves until the [`RunningFake`] drops.
    pub async fn start(config: FakeConfig) -> anyhow::Result<RunningFake> {
        let bound = crate::serving::bind(config.port).await?;
        let base_url = bound.base_url.clone();
        let state = Arc::new(DriveState::new(config));
        let app = server::router(state.clone());
        let server = bound.serve("Drive", app);
        Ok(RunningFake::new(base_url, state, server))
    }
}

/// A running fake; the server stops when this is dropped.
pub type RunningFake = crate::serving::Running<DriveState>;

impl RunningFake {
    /// The API root, `{base_url}/drive/v3`: a connection's base URL.
    pub fn api_url(&self) -> String {
        format!("{}/drive/v3", self.base_url)
    }

    /// The OAuth token endpoint, `{base_url}/token`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url)
    }
}

#[cfg(test)]
mod tests;
