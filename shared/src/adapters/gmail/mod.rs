//! Gmail v1 adapter: pulls `messages` (metadata; the text only when a connection's field mapping
//! asks), incrementally through `history.list`, pushes label changes with `messages.modify`,
//! refreshes OAuth tokens on the Google app Calendar uses, and keeps a `users.watch` on a Pub/Sub
//! topic when one is configured.
//!
//! - **Object.** One `messages` record per message, its thread as a field (`thread_id`): Gmail's
//!   change feed, labels and writes are per message, so a thread record would need every message
//!   re-read on each change for nothing a message record cannot say.
//! - **Full pull.** `getProfile`'s `historyId` is taken first, then `messages.list` (SPAM and
//!   TRASH included, so a message a person trashes stays what an incremental pull says: a message
//!   with the `TRASH` label) a page at a time, each page's messages read with `messages.get
//!   format=metadata` (a few at once, paced by Gmail's quota units). The last page switches the
//!   cursor to `history.list` from the id taken first, so changes made while listing are seen.
//! - **Incremental.** `history.list` from the stored `historyId` (added, deleted, label changes);
//!   changed messages are read again, deleted ones (`messagesDeleted`, or a read that answers 404)
//!   become deletes. The last page's `historyId` is the next start.
//! - **404.** Google keeps history for about a week; an older start id answers 404. The adapter
//!   then resyncs by itself (a new full listing) and asks the engine to reconcile deletes on its
//!   last page (`live_ids` lists the mailbox), so messages deleted while history was lost go too.
//! - **Writes.** Only `labels` (label ids) is writable: an update reads the message (`format=
//!   minimal`), refuses with `Conflict` when its `historyId` moved past the record's etag (a
//!   person changed it since our last pull), and sends the difference with `messages.modify`
//!   (idempotent by nature: adding a label a message has changes nothing). A push that would add
//!   or remove a label Gmail sets itself (`SENT`, `DRAFT`, `CHAT`) is refused, never half done.
//! - **Rate limits.** Each request is paced by its quota units against the per-user limit
//!   (15,000 units a minute, <https://developers.google.com/gmail/api/reference/quota>); 429 and
//!   403 `rateLimitExceeded`/`userRateLimitExceeded` are retried with backoff, then `RateLimited`.

mod messages;
mod pull;
mod write;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::provider_http::{Call, Dialect, ProviderHttp, Reply, RetryPolicy};
use crate::config::OAuthApp;
use crate::domain::mapping::FieldMap;
use crate::domain::{Connection, Credentials, ObjectType, Provider, PushChannel, SyncCursor};
use crate::ports::{
    ErrorClass, IdPage, ProviderClient, ProviderError, ProviderFactory, ProviderWrite, PulledPage,
    RequestStats, WriteAck,
};
pub use messages::{DEFAULT_FIELDS, addresses};

/// Gmail's API root (a connection's `base_url`).
pub const DEFAULT_API_ROOT: &str = "https://gmail.googleapis.com/gmail/v1";
/// What a Gmail connection asks for: reading metadata and changing labels. (`gmail.metadata`
/// would be narrower, but Google refuses message bodies to any token that carries it.)
pub const DEFAULT_SCOPES: &str = "https://www.googleapis.com/auth/gmail.modify";
/// Per-user quota units a second Gmail allows (15,000 a minute), less a margin.
pub const UNITS_PER_SECOND: f64 = 240.0;

/// Where Gmail connections connect and what they ask for. Gmail uses the Google OAuth app
/// (`GOOGLE_CLIENT_ID`) and, unless set, Google's endpoints as Calendar has them. No secret among
/// them: a push proves itself with the subscription's OIDC token, checked with public keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GmailConfig {
    /// `GMAIL_API_BASE_URL` (default `https://gmail.googleapis.com/gmail/v1`).
    pub api_base_url: String,
    /// `GMAIL_AUTHORIZE_URL` (default: `GOOGLE_AUTHORIZE_URL`'s value, else Google's).
    pub authorize_url: String,
    /// `GMAIL_TOKEN_URL` (default: `GOOGLE_TOKEN_URL`'s value, else Google's).
    pub token_url: String,
    /// `GMAIL_REVOKE_URL` (default: `GOOGLE_REVOKE_URL`'s value, else Google's).
    pub revoke_url: String,
    /// `GMAIL_OAUTH_SCOPES` (default `gmail.modify`).
    pub scopes: String,
    /// `GMAIL_PUBSUB_TOPIC` (`projects/{project}/topics/{topic}`): when set, the worker keeps a
    /// `users.watch` on it for each Gmail connection. Unset: pull only.
    pub pubsub_topic: Option<String>,
    /// `GMAIL_PUSH_AUDIENCE`: the `aud` the push subscription's OIDC token carries (the audience
    /// configured on the subscription; by default its push endpoint URL). Set together with
    /// `push_service_account`, it turns on OIDC verification (`http::webhooks::pubsub_auth`).
    pub push_audience: Option<String>,
    /// `GMAIL_PUSH_SERVICE_ACCOUNT`: the service account the push subscription signs as (`email`).
    pub push_service_account: Option<String>,
    /// `GMAIL_PUSH_JWKS_URL` (default Google's `https://www.googleapis.com/oauth2/v3/certs`):
    /// where the keys that sign push tokens are fetched (locally: the Gmail fake's).
    pub push_jwks_url: String,
}

impl Default for GmailConfig {
    fn default() -> Self {
        Self {
            api_base_url: DEFAULT_API_ROOT.into(),
            authorize_url: super::google::DEFAULT_AUTHORIZE_URL.into(),
            token_url: super::google::DEFAULT_TOKEN_URL.into(),
            revoke_url: super::google::DEFAULT_REVOKE_URL.into(),
            scopes: DEFAULT_SCOPES.into(),
            pubsub_topic: None,
            push_audience: None,
            push_service_account: None,
            push_jwks_url: crate::http::webhooks::pubsub_auth::GOOGLE_CERTS_URL.into(),
        }
    }
}

impl GmailConfig {
    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        use crate::config::{http_url, optional};
        let d = Self::default();
        // Gmail's own variable, else Calendar's (the same Google endpoint), else Google's default.
        let url = |own: &'static str, google: &'static str, default: String| match optional(own) {
            Some(v) => http_url(own, &v),
            None => match optional(google) {
                Some(v) => http_url(google, &v),
                None => Ok(default),
            },
        };
        let api_base_url = match optional("GMAIL_API_BASE_URL") {
            Some(v) => http_url("GMAIL_API_BASE_URL", &v)?,
            None => d.api_base_url,
        };
        let push_audience = optional("GMAIL_PUSH_AUDIENCE").map(|v| v.trim().to_owned());
        let push_service_account = optional("GMAIL_PUSH_SERVICE_ACCOUNT").map(|v| v.trim().to_lowercase());
        if push_audience.is_some() != push_service_account.is_some() {
            return Err(crate::config::ConfigError::Invalid {
                name: "GMAIL_PUSH_AUDIENCE",
                reason: "set GMAIL_PUSH_AUDIENCE and GMAIL_PUSH_SERVICE_ACCOUNT together".into(),
            });
        }
        let push_jwks_url = match optional("GMAIL_PUSH_JWKS_URL") {
            Some(v) => http_url("GMAIL_PUSH_JWKS_URL", &v)?,
            None => d.push_jwks_url.clone(),
        };
        Ok(Self {
            api_base_url,
            authorize_url: url("GMAIL_AUTHORIZE_URL", "GOOGLE_AUTHORIZE_URL", d.authorize_url)?,
            token_url: url("GMAIL_TOKEN_URL", "GOOGLE_TOKEN_URL", d.token_url)?,
            revoke_url: url("GMAIL_REVOKE_URL", "GOOGLE_REVOKE_URL", d.revoke_url)?,
            scopes: optional("GMAIL_OAUTH_SCOPES").unwrap_or(d.scopes),
            pubsub_topic: optional("GMAIL_PUBSUB_TOPIC").map(|t| t.trim().to_owned()),
            push_audience,
            push_service_account,
            push_jwks_url,
        })
    }
}

/// Builds [`GmailClient`]s; holds the shared HTTP client, the Google OAuth app and Gmail's config.
#[derive(Clone)]
pub struct GmailFactory {
    http: reqwest::Client,
    app: Option<OAuthApp>,
    config: GmailConfig,
    policy: RetryPolicy,
    units_per_second: f64,
}

impl GmailFactory {
    pub fn new(http: reqwest::Client, app: Option<OAuthApp>, config: GmailConfig) -> Self {
        let policy = RetryPolicy { max_inline_wait: Duration::from_secs(16), ..RetryPolicy::default() };
        Self { http, app, config, policy, units_per_second: UNITS_PER_SECOND }
    }

    /// Paces requests at this many quota units a second (a fake with a smaller quota, a bench).
    pub fn with_units_per_second(mut self, units: f64) -> Self {
        self.units_per_second = units.max(1.0);
        self
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The concrete client.
    pub fn gmail_client(&self, connection: &Connection) -> Result<GmailClient, ProviderError> {
        if connection.provider != Provider::Gmail {
            return Err(ProviderError::permanent(format!(
                "the Gmail adapter cannot serve a {} connection",
                connection.provider
            )));
        }
        GmailClient::new(self, connection)
    }
}

impl ProviderFactory for GmailFactory {
    fn client(&self, connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError> {
        Ok(Box::new(self.gmail_client(connection)?))
    }
}

/// A token bucket of quota units: `rate` a second, holding at most one second's worth.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

/// Gmail's quota units of a method (<https://developers.google.com/gmail/api/reference/quota>).
fn units(route: &str) -> f64 {
    match route {
        "getProfile" | "labels.list" => 1.0,
        "history.list" => 2.0,
        "messages.list" | "messages.get" | "messages.modify" => 5.0,
        "messages.batchModify" | "stop" => 50.0,
        "watch" => 100.0,
        _ => 5.0,
    }
}

/// Gmail's error body is Google's (`{"error": {"code", "message", "errors": [{"reason"}],
/// "status"}}`), its rate limits are 429 or 403 with a rate-limit reason
/// (<https://developers.google.com/gmail/api/guides/handle-errors>), and every request is paced
/// by its quota units.
#[derive(Debug, Clone)]
pub struct GmailDialect {
    bucket: Arc<Mutex<Bucket>>,
}

impl GmailDialect {
    fn new(units_per_second: f64) -> Self {
        let bucket = Bucket { rate: units_per_second, tokens: units_per_second, at: Instant::now() };
        Self { bucket: Arc::new(Mutex::new(bucket)) }
    }
}

fn error_reason(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    e.pointer("/errors/0/reason")
        .and_then(Value::as_str)
        .or_else(|| e.get("status").and_then(Value::as_str))
        .map(str::to_owned)
}

impl Dialect for GmailDialect {
    fn name(&self) -> &'static str {
        "Gmail"
    }

    fn metric_label(&self) -> &'static str {
        Provider::Gmail.as_str()
    }

    fn error_detail(&self, reply: &Reply) -> (Option<String>, Option<String>) {
        let message = reply
            .json_value()
            .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_owned));
        (error_reason(&reply.body), message)
    }

    fn classify(&self, status: StatusCode, reason: Option<&str>) -> Option<ErrorClass> {
        match (status, reason) {
            (StatusCode::FORBIDDEN, Some("rateLimitExceeded" | "userRateLimitExceeded")) => {
                Some(ErrorClass::RateLimited)
            }
            (StatusCode::FORBIDDEN, Some("dailyLimitExceeded" | "quotaExceeded")) => {
                Some(ErrorClass::RateLimited)
            }
            _ => None,
        }
    }

    /// Waits for the request's quota units (a bucket of one second's worth, refilled at the rate).
    fn pace(&self, route: &'static str) -> Result<Duration, ProviderError> {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * b.rate).min(b.rate);
        b.at = now;
        b.tokens -= units(route);
        Ok(if b.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-b.tokens / b.rate) })
    }
}

/// One Gmail mailbox seen through its API.
pub struct GmailClient {
    http: reqwest::Client,
    net: ProviderHttp<GmailDialect>,
    base: String,
    token_url: String,
    app: Option<OAuthApp>,
    fields: FieldMap,
    pubsub_topic: Option<String>,
}

impl GmailClient {
    fn new(factory: &GmailFactory, connection: &Connection) -> Result<Self, ProviderError> {
        let token_url = &factory.config.token_url;
        for (what, value) in [("base URL", connection.base_url.as_str()), ("token URL", token_url)] {
            let parsed = url::Url::parse(value)
                .map_err(|e| ProviderError::permanent(format!("invalid Gmail {what}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ProviderError::permanent(format!("Gmail {what} must be http(s)")));
            }
        }
        let fields = FieldMap::new(DEFAULT_FIELDS)
            .with_overrides(connection.settings.field_mapping.get(&ObjectType::Messages));
        Ok(Self {
            net: ProviderHttp::new(
                factory.http.clone(),
                GmailDialect::new(factory.units_per_second),
                factory.policy,
            ),
            http: factory.http.clone(),
            base: format!("{}/users/me", connection.base_url.trim_end_matches('/')),
            token_url: token_url.clone(),
            app: factory.app.clone(),
            fields,
            pubsub_topic: factory.config.pubsub_topic.clone(),
        })
    }

    async fn send(
        &self,
        call: Call,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply, ProviderError> {
        self.net.send(call, make).await
    }

    /// `GET {base}/{path}` with `query`, as JSON.
    async fn get_json(
        &self,
        token: &SecretString,
        route: &'static str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Reply, ProviderError> {
        let url = format!("{}/{path}", self.base);
        self.send(Call::read(route), || self.http.get(&url).bearer_auth(token.expose_secret()).query(query))
            .await
    }

    /// The mailbox's current history id (`users.getProfile`).
    async fn profile_history_id(&self, token: &SecretString) -> Result<String, ProviderError> {
        let profile: Value = self.get_json(token, "getProfile", "profile", &[]).await?.check()?.json()?;
        profile
            .get("historyId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ProviderError::permanent("Gmail's profile has no historyId"))
    }

    /// Starts (or renews) `users.watch` on the configured topic; the watch lasts 7 days.
    async fn watch(&self, token: &SecretString, topic: &str) -> Result<DateTime<Utc>, ProviderError> {
        let url = format!("{}/watch", self.base);
        let body = json!({ "topicName": topic });
        let reply = self
            .send(Call::idempotent_write("watch"), || {
                self.http.post(&url).bearer_auth(token.expose_secret()).json(&body)
            })
            .await?;
        let v: Value = reply.check()?.json()?;
        v.get("expiration")
            .and_then(Value::as_str)
            .and_then(|e| e.parse::<i64>().ok())
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| ProviderError::permanent("Gmail's watch has no usable expiration"))
    }
}

fn only_messages(object: ObjectType) -> Result<(), ProviderError> {
    if object == ObjectType::Messages {
        Ok(())
    } else {
        Err(ProviderError::permanent(format!("the Gmail adapter does not sync {object}")))
    }
}

#[async_trait]
impl ProviderClient for GmailClient {
    /// Messages only; see the module doc for the phases and the 404 resync.
    async fn pull_page(
        &self,
        token: &SecretString,
        object: ObjectType,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        only_messages(object)?;
        self.pull_messages(token, cursor).await
    }

    /// Label changes only (`messages.modify`), one message at a time, in order.
    async fn write(
        &self,
        token: &SecretString,
        writes: &[ProviderWrite],
    ) -> Result<Vec<Result<WriteAck, ProviderError>>, ProviderError> {
        self.write_all(token, writes).await
    }

    /// Keeps a `users.watch` on `GMAIL_PUBSUB_TOPIC` (none configured: no channel). Gmail has one
    /// watch per mailbox and a renewal is the same call, so the channel keeps its id and secret;
    /// notifications name the mailbox (`emailAddress`), which finds the connection by its account.
    async fn ensure_channel(
        &self,
        token: &SecretString,
        _address: &str,
        existing: Option<&PushChannel>,
        now: DateTime<Utc>,
    ) -> Result<Option<PushChannel>, ProviderError> {
        let Some(topic) = &self.pubsub_topic else { return Ok(None) };
        if let Some(current) = existing.filter(|c| !c.due_for_renewal(now)) {
            return Ok(Some(current.clone()));
        }
        let expires_at = self.watch(token, topic).await?;
        Ok(Some(PushChannel {
            id: existing.map(|c| c.id.clone()).unwrap_or_else(|| format!("gmail-{}", uuid_like())),
            resource_id: None,
            secret: existing.map(|c| c.secret.clone()).unwrap_or_else(PushChannel::new_secret),
            expires_at,
        }))
    }

    /// `users.stop`: the mailbox's watch ends.
    async fn stop_channel(&self, token: &SecretString, _channel: &PushChannel) -> Result<(), ProviderError> {
        let url = format!("{}/stop", self.base);
        let reply = self
            .send(Call::idempotent_write("stop"), || self.http.post(&url).bearer_auth(token.expose_secret()))
            .await?;
        reply.check().map(|_| ())
    }

    async fn live_ids(
        &self,
        token: &SecretString,
        object: ObjectType,
        after: Option<&str>,
    ) -> Result<IdPage, ProviderError> {
        only_messages(object)?;
        self.list_ids(token, after).await
    }

    async fn refresh(&self, refresh_token: &SecretString) -> Result<Credentials, ProviderError> {
        super::google::refresh_at_google(&self.net, &self.token_url, self.app.as_ref(), refresh_token).await
    }

    fn stats(&self) -> RequestStats {
        self.net.stats()
    }
}

fn uuid_like() -> String {
    let v: u128 = rand::random();
    format!("{v:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_reasons_are_rate_limits_whatever_the_status() {
        let d = GmailDialect::new(UNITS_PER_SECOND);
        assert_eq!(
            d.classify(StatusCode::FORBIDDEN, Some("userRateLimitExceeded")),
            Some(ErrorClass::RateLimited)
        );
        assert_eq!(
            d.classify(StatusCode::FORBIDDEN, Some("rateLimitExceeded")),
            Some(ErrorClass::RateLimited)
        );
        assert_eq!(d.classify(StatusCode::FORBIDDEN, Some("insufficientPermissions")), None);
    }

    #[test]
    fn pacing_lets_a_seconds_worth_of_units_through_then_waits_for_the_rest() {
        let d = GmailDialect::new(10.0);
        assert_eq!(d.pace("messages.get").unwrap(), Duration::ZERO);
        assert_eq!(d.pace("messages.get").unwrap(), Duration::ZERO);
        let wait = d.pace("messages.get").unwrap();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500), "{wait:?}");
    }
}
