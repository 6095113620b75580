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

mod events;
mod pull;
mod write;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use super::provider_http::{Call, Dialect, ProviderHttp, Reply, RetryPolicy};
use crate::config::OAuthApp;
use crate::domain::mapping::FieldMap;
use crate::domain::{Connection, Credentials, ObjectType, Provider, PushChannel, SyncCursor};
use crate::ports::{
    ErrorClass, ProviderClient, ProviderError, ProviderFactory, ProviderWrite, PulledPage, RequestStats,
    WriteAck,
};
use events::rfc3339;
pub use events::{EVENT_FIELDS, external_id_of, graph_id_of, to_utc};
pub use write::transaction_id;

/// Graph refuses Outlook subscriptions that expire more than this many minutes from now.
pub const MAX_SUBSCRIPTION_MINUTES: i64 = 4230;
/// The Microsoft identity platform (configurable: `MICROSOFT_LOGIN_BASE_URL`).
pub const DEFAULT_LOGIN_BASE: &str = "https://login.microsoftonline.com";
/// Graph's root (configurable: `MICROSOFT_GRAPH_BASE_URL`; a connection's `base_url`).
pub const DEFAULT_GRAPH_BASE: &str = "https://graph.microsoft.com";
/// The OAuth scopes asked for at authorization.
pub const DEFAULT_SCOPES: &str = "offline_access User.Read Calendars.ReadWrite";
/// The scope of a token refresh.
const SCOPE: &str = "offline_access https://graph.microsoft.com/Calendars.ReadWrite";

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

    fn metric_label(&self) -> &'static str {
        crate::domain::Provider::Microsoft.as_str()
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

impl GraphClient {
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

fn only_events(object: ObjectType) -> Result<(), ProviderError> {
    if object == ObjectType::Events {
        Ok(())
    } else {
        Err(ProviderError::permanent(format!("the Graph adapter does not sync {object}")))
    }
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
        self.write_all(token, writes).await
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
        let reply = self.net.refresh_grant(&url, app, refresh_token, &[("scope", SCOPE)]).await?;
        if reply.status == StatusCode::BAD_REQUEST && reply.oauth_error().as_deref() == Some("invalid_grant")
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
        self.net.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
