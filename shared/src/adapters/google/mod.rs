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

mod events;
mod pull;
mod write;

use std::marker::PhantomData;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use http::StatusCode;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::provider_http::{Call, Dialect, ProviderHttp, Reply, RetryPolicy};
use crate::config::OAuthApp;
use crate::domain::mapping::FieldMap;
use crate::domain::{Connection, Credentials, ObjectType, Provider, PushChannel, SyncCursor};
use crate::ports::{
    ErrorClass, ProviderClient, ProviderError, ProviderFactory, ProviderWrite, PulledPage, RequestStats,
    WriteAck,
};
pub use events::{DEFAULT_FIELDS, event_id_for};

/// Google's OAuth authorization endpoint (configurable: `GOOGLE_AUTHORIZE_URL`).
pub const DEFAULT_AUTHORIZE_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
/// Google's OAuth revocation endpoint (configurable: `GOOGLE_REVOKE_URL`).
pub const DEFAULT_REVOKE_URL: &str = "https://oauth2.googleapis.com/revoke";
/// The OAuth scopes asked for at authorization.
pub const DEFAULT_SCOPES: &str =
    "https://www.googleapis.com/auth/calendar.events https://www.googleapis.com/auth/calendar.readonly";
/// Google's OAuth token endpoint (configurable: `GOOGLE_TOKEN_URL`).
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// Google's API root (a connection's `base_url`).
pub const DEFAULT_API_ROOT: &str = "https://www.googleapis.com/calendar/v3";
const CALENDAR: &str = "primary";
/// The channel lifetime `ensure_channel` asks for (Google grants at most about a week for events).
pub const CHANNEL_TTL: chrono::Duration = chrono::Duration::days(7);

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

/// A client of one of Google's APIs behind the Google OAuth app (Calendar, Drive): what a
/// [`GoogleAppFactory`] builds.
pub trait GoogleAppClient: ProviderClient + Sized + 'static {
    /// The provider whose connections the client serves.
    const PROVIDER: Provider;

    /// A client for the connection's API root (Google's or a fake's).
    fn new(
        http: reqwest::Client,
        connection: &Connection,
        app: Option<OAuthApp>,
        token_url: &str,
        backoff: Backoff,
    ) -> Result<Self, ProviderError>;
}

/// Builds the clients of one Google API; holds the shared HTTP client, the OAuth app and its
/// token URL.
pub struct GoogleAppFactory<C> {
    http: reqwest::Client,
    app: Option<OAuthApp>,
    token_url: String,
    backoff: Backoff,
    client: PhantomData<fn() -> C>,
}

/// Builds [`GoogleClient`]s (Calendar).
pub type GoogleFactory = GoogleAppFactory<GoogleClient>;

impl<C> Clone for GoogleAppFactory<C> {
    fn clone(&self) -> Self {
        Self {
            http: self.http.clone(),
            app: self.app.clone(),
            token_url: self.token_url.clone(),
            backoff: self.backoff,
            client: PhantomData,
        }
    }
}

impl<C: GoogleAppClient> GoogleAppFactory<C> {
    /// `app` is needed only to refresh tokens; `token_url` is Google's ([`DEFAULT_TOKEN_URL`]) or a
    /// fake's.
    pub fn new(http: reqwest::Client, app: Option<OAuthApp>, token_url: impl Into<String>) -> Self {
        Self { http, app, token_url: token_url.into(), backoff: Backoff::default(), client: PhantomData }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The concrete client, for the push-channel methods the port does not cover.
    pub fn concrete(&self, connection: &Connection) -> Result<C, ProviderError> {
        if connection.provider != C::PROVIDER {
            return Err(ProviderError::permanent(format!(
                "the {} adapter cannot serve a {} connection",
                C::PROVIDER,
                connection.provider
            )));
        }
        C::new(self.http.clone(), connection, self.app.clone(), &self.token_url, self.backoff)
    }
}

impl<C: GoogleAppClient> ProviderFactory for GoogleAppFactory<C> {
    fn client(&self, connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError> {
        Ok(Box::new(self.concrete(connection)?))
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

    fn metric_label(&self) -> &'static str {
        crate::domain::Provider::Google.as_str()
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

pub(crate) fn random_channel_id() -> String {
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
    api_root_at(base_url, "calendar/v3")
}

/// The API root of a Google base URL: an origin alone gets the API's `path`; a URL with a path
/// is used as given.
pub(crate) fn api_root_at(base_url: &str, path: &str) -> String {
    let trimmed = base_url.trim_end_matches('/');
    match url::Url::parse(trimmed) {
        Ok(u) if u.path().trim_matches('/').is_empty() => format!("{trimmed}/{path}"),
        _ => trimmed.to_owned(),
    }
}

/// A client's base and token URLs must be http(s) URLs (`api`: the API's name, for the error).
pub(crate) fn check_urls(api: &str, base_url: &str, token_url: &str) -> Result<(), ProviderError> {
    for (what, value) in [("base URL", base_url), ("token URL", token_url)] {
        let parsed = url::Url::parse(value)
            .map_err(|e| ProviderError::permanent(format!("invalid {api} {what}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ProviderError::permanent(format!("{api} {what} must be http(s)")));
        }
    }
    Ok(())
}

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

impl GoogleAppClient for GoogleClient {
    const PROVIDER: Provider = Provider::Google;

    /// A client for the connection's API root (`https://www.googleapis.com/calendar/v3` or a fake).
    fn new(
        http: reqwest::Client,
        connection: &Connection,
        app: Option<OAuthApp>,
        token_url: &str,
        backoff: Backoff,
    ) -> Result<Self, ProviderError> {
        check_urls("Google", &connection.base_url, token_url)?;
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
}

impl GoogleClient {
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
        self.pull_events(token, cursor).await
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
        self.write_all(token, writes).await
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

    /// See [`refresh_at_google`].
    async fn refresh(&self, refresh_token: &SecretString) -> Result<Credentials, ProviderError> {
        refresh_at_google(&self.net, &self.token_url, self.app.as_ref(), refresh_token).await
    }

    fn stats(&self) -> RequestStats {
        self.net.stats()
    }
}

/// `POST {token_url}` (`grant_type=refresh_token`) with the Google app's client credentials, for
/// every Google API's connections (Calendar, Gmail). A refresh token Google rejects
/// (`invalid_grant`) is `Unauthorized`; a rejected client is `Permanent`.
pub(crate) async fn refresh_at_google<D: Dialect>(
    net: &ProviderHttp<D>,
    token_url: &str,
    app: Option<&OAuthApp>,
    refresh_token: &SecretString,
) -> Result<Credentials, ProviderError> {
    let Some(app) = app else {
        return Err(ProviderError::permanent("no Google OAuth app is configured"));
    };
    let reply = net.refresh_grant(token_url, app, refresh_token, &[]).await?;
    match (reply.status, reply.oauth_error().as_deref()) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
