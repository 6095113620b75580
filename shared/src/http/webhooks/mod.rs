//! The webhooks router: provider notifications arrive here without a JWT. Each route verifies its
//! proof (HubSpot's v3 signature, Google's channel token, Graph's `clientState`), finds the
//! connections the notification is about and only enqueues a coalesced sync job per connection;
//! the worker does the sync. Nothing here calls a provider, so a route answers well within a
//! second. Bodies are capped at [`MAX_BODY_BYTES`]; anything unverifiable is a 401 problem and
//! enqueues nothing; malformed input is a 4xx problem, never a panic.
//!
//! The parse and verify functions of each provider are pure and public (`hubspot::verify_signature`,
//! `hubspot::parse_events`, `google::parse_headers`, `graph::parse_notifications`) for the fuzz
//! targets in `infra/fuzz`.

pub mod fireflies;
pub mod gmail;
pub mod google;
pub mod graph;
pub mod hubspot;
pub mod pubsub_auth;

use std::error::Error as StdError;
use std::sync::Arc;

use axum::Router;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::config::DEFAULT_WEBHOOK_COALESCE_SECS;
use crate::domain::{Connection, ConnectionId, Job, Provider, TenantId};
use crate::http::problem::{self, ApiError, Problem, error_chain};
use crate::ports::{Clock, ConnectionStore, DeliveryLedger, JobQueue, QueueError, StoreError};
use crate::telemetry::metrics::{self, Refusal};

/// Largest body accepted (HubSpot sends at most 100 events a request, Graph a few notifications).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the routes need to know besides the stores.
#[derive(Clone)]
pub struct WebhookSettings {
    /// `WEBHOOK_BASE_URL`: the public origin (and path prefix) providers call. HubSpot signs the
    /// full URL it called, so its signature is checked against this base plus the request's path
    /// and query (deterministic behind API Gateway). Unset: HubSpot webhooks are refused.
    pub public_base_url: Option<String>,
    /// The HubSpot app's client secret, which signs its webhooks. Unset: HubSpot webhooks are refused.
    pub hubspot_client_secret: Option<SecretString>,
    /// Our HubSpot app id: events whose `sourceId` is this id are echoes of our own writes.
    pub hubspot_app_id: Option<String>,
    /// Length of the coalescing window (see `Job::webhook`).
    pub coalesce_secs: u32,
    /// How a Gmail (Pub/Sub) push proves itself: the subscription's OIDC token, locally a shared
    /// token, or nothing configured (every push refused).
    pub gmail_push: pubsub_auth::PushAuth,
    /// `FIREFLIES_WEBHOOK_SECRET`: signs Fireflies' webhooks. Unset: they are refused.
    pub fireflies_webhook_secret: Option<SecretString>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            public_base_url: None,
            hubspot_client_secret: None,
            hubspot_app_id: None,
            coalesce_secs: DEFAULT_WEBHOOK_COALESCE_SECS,
            gmail_push: pubsub_auth::PushAuth::Refuse,
            fireflies_webhook_secret: None,
        }
    }
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("public_base_url", &self.public_base_url)
            .field("hubspot_client_secret", &self.hubspot_client_secret.as_ref().map(|_| "[redacted]"))
            .field("hubspot_app_id", &self.hubspot_app_id)
            .field("coalesce_secs", &self.coalesce_secs)
            .field("gmail_push", &self.gmail_push)
            .field("fireflies_webhook_secret", &self.fireflies_webhook_secret.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// What the webhook routes need: the connections (and their channel and account registries), the
/// delivery ledger, the queue they enqueue on, the time and the settings.
#[derive(Clone)]
pub struct WebhookState {
    pub connections: Arc<dyn ConnectionStore>,
    pub deliveries: Arc<dyn DeliveryLedger>,
    pub queue: Arc<dyn JobQueue>,
    pub clock: Arc<dyn Clock>,
    pub settings: WebhookSettings,
}

pub fn router(state: WebhookState) -> Router {
    use axum::routing::post;
    Router::new()
        .route("/webhooks/hubspot", post(hubspot::handle).fallback(problem::method_not_allowed))
        .route("/webhooks/google", post(google::handle).fallback(problem::method_not_allowed))
        .route("/webhooks/google_drive", post(google::handle_drive).fallback(problem::method_not_allowed))
        .route("/webhooks/microsoft", post(graph::handle).fallback(problem::method_not_allowed))
        .route("/webhooks/gmail", post(gmail::handle).fallback(problem::method_not_allowed))
        .route("/webhooks/fireflies", post(fireflies::handle).fallback(problem::method_not_allowed))
        .fallback(problem::not_found)
        .layer(super::trace::layer())
        .with_state(state)
}

/// What one notification request led to; the JSON body of a 2xx answer and the fields of the
/// `webhook handled` log line (the metric).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Events or notifications in the request.
    pub received: usize,
    /// Already handled before (a redelivery or replay): nothing enqueued for them.
    pub duplicates: usize,
    /// Caused by our own writes: nothing enqueued for them.
    pub echoes: usize,
    /// For an account no connection has (logged; nothing to sync).
    pub unmatched: usize,
    /// Jobs handed to the queue (one per connection and window; SQS drops repeats of a window).
    pub jobs: usize,
}

impl Summary {
    fn log(&self, provider: Provider) {
        tracing::info!(
            webhook = provider.as_str(),
            received = self.received,
            duplicates = self.duplicates,
            echoes = self.echoes,
            unmatched = self.unmatched,
            jobs = self.jobs,
            "webhook handled"
        );
        let accepted = self.received.saturating_sub(self.duplicates + self.echoes + self.unmatched);
        metrics::webhook_handled(
            provider,
            accepted as u64,
            self.duplicates as u64,
            self.echoes as u64,
            self.unmatched as u64,
            self.jobs as u64,
        );
    }
}

/// A route's answer: the summary as JSON with `status`, or the error's problem; either way the
/// `webhook handled` log line or the refusal metric.
pub(crate) fn answer(
    provider: Provider,
    status: StatusCode,
    result: Result<Summary, WebhookError>,
) -> Response {
    match result {
        Ok(summary) => {
            summary.log(provider);
            (status, axum::Json(summary)).into_response()
        }
        Err(e) => {
            metrics::webhook_refused(provider, e.refusal());
            e.into_response()
        }
    }
}

/// Why a webhook request was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebhookError {
    /// The proof did not verify (reason for the log only; the answer never says which check failed).
    #[error("the notification could not be verified: {0}")]
    Unverified(&'static str),
    /// What the proof is checked against could not be read (a 503: the sender retries).
    #[error("the notification could not be verified now: {0}")]
    Unavailable(&'static str),
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl WebhookError {
    fn refusal(&self) -> Refusal {
        match self {
            WebhookError::Unverified(_) => Refusal::Unverified,
            WebhookError::Unavailable(_) => Refusal::Unavailable,
            WebhookError::Api(ApiError::Store(_) | ApiError::Queue(_)) => Refusal::Unavailable,
            WebhookError::Api(_) => Refusal::Invalid,
        }
    }
}

impl From<StoreError> for WebhookError {
    fn from(e: StoreError) -> Self {
        WebhookError::Api(ApiError::Store(e))
    }
}

impl From<QueueError> for WebhookError {
    fn from(e: QueueError) -> Self {
        WebhookError::Api(ApiError::Queue(e))
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        match self {
            WebhookError::Unverified(reason) => {
                tracing::warn!(reason, "webhook refused: not verified");
                Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
                    .with_detail("the notification could not be verified")
                    .into_response()
            }
            WebhookError::Unavailable(reason) => {
                tracing::warn!(reason, "webhook refused: cannot verify now");
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable")
                    .with_detail("try again shortly")
                    .into_response()
            }
            WebhookError::Api(e) => e.into_response(),
        }
    }
}

/// The body, at most [`MAX_BODY_BYTES`] (413 problem beyond).
pub(crate) async fn read_body(body: axum::body::Body) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|e| {
        if is_length_limit(&e) {
            ApiError::PayloadTooLarge
        } else {
            ApiError::InvalidRequest("the request body could not be read".into())
        }
    })
}

fn is_length_limit(e: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// `given` equals the secret, compared in constant time (for equal lengths).
pub(crate) fn secret_matches(expected: &SecretString, given: &str) -> bool {
    expected.expose_secret().as_bytes().ct_eq(given.as_bytes()).into()
}

/// Loads a connection a registry pointed to; `None` when it is gone (registry entries may outlive
/// their connection).
pub(crate) async fn load(
    state: &WebhookState,
    tenant: &TenantId,
    connection: &ConnectionId,
) -> Result<Option<Connection>, StoreError> {
    state.connections.get(tenant, connection).await
}

/// What the notifications for a connection ask of its job besides a sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ask {
    /// Renew the push channel now (Graph lifecycle events).
    pub renew_channel: bool,
    /// Look for deleted records now (HubSpot deletion events).
    pub check_deletes: bool,
}

/// Enqueues one coalesced webhook job per connection, asking what any of its notifications asked
/// (`Job::webhook`, `Job::checking_deletes`); returns how many jobs were handed to the queue.
pub(crate) async fn enqueue(
    state: &WebhookState,
    targets: Vec<(TenantId, ConnectionId, Ask)>,
) -> Result<usize, QueueError> {
    let mut merged: Vec<(TenantId, ConnectionId, Ask)> = Vec::new();
    for (tenant, connection, ask) in targets {
        match merged.iter_mut().find(|(t, c, _)| *t == tenant && *c == connection) {
            Some((_, _, existing)) => {
                existing.renew_channel |= ask.renew_channel;
                existing.check_deletes |= ask.check_deletes;
            }
            None => merged.push((tenant, connection, ask)),
        }
    }
    if merged.is_empty() {
        return Ok(0);
    }
    let now = state.clock.now();
    let jobs: Vec<Job> = merged
        .into_iter()
        .map(|(tenant, connection, ask)| {
            let job = Job::webhook(tenant, connection, ask.renew_channel, now, state.settings.coalesce_secs);
            if ask.check_deletes { job.checking_deletes() } else { job }
        })
        .collect();
    state.queue.enqueue(&jobs).await?;
    Ok(jobs.len())
}

/// Logs a store or queue failure once with its chain (the answer is a 503 problem without it).
pub(crate) fn log_failure(provider: &'static str, e: &dyn StdError) {
    tracing::error!(webhook = provider, error = %error_chain(e), "webhook could not be handled");
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::adapters::memory::{ManualClock, MemoryQueue, MemoryStore};
    use chrono::{DateTime, Utc};

    pub const HUBSPOT_SECRET: &str = "hubspot-client-secret-value";
    pub const BASE: &str = "https://hooks.example.com/prod";
    pub const APP_ID: &str = "54321";
    pub const FIREFLIES_SECRET: &str = "0123456789abcdef";

    pub fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_003, 0).expect("valid time")
    }

    pub struct Harness {
        pub store: Arc<MemoryStore>,
        pub queue: Arc<MemoryQueue>,
        pub clock: Arc<ManualClock>,
        pub app: Router,
    }

    /// A harness that refuses every Gmail push (no OIDC configured; see [`harness_with`]).
    pub fn harness() -> Harness {
        harness_with(pubsub_auth::PushAuth::Refuse)
    }

    /// A harness whose Gmail pushes prove themselves as `gmail_push` says.
    pub fn harness_with(gmail_push: pubsub_auth::PushAuth) -> Harness {
        let store = Arc::new(MemoryStore::new());
        let queue = Arc::new(MemoryQueue::new());
        let clock = Arc::new(ManualClock::new(now()));
        let app = router(WebhookState {
            connections: store.clone(),
            deliveries: store.clone(),
            queue: queue.clone(),
            clock: clock.clone(),
            settings: WebhookSettings {
                public_base_url: Some(BASE.to_owned()),
                hubspot_client_secret: Some(SecretString::from(HUBSPOT_SECRET)),
                hubspot_app_id: Some(APP_ID.to_owned()),
                coalesce_secs: 10,
                gmail_push,
                fireflies_webhook_secret: Some(SecretString::from(FIREFLIES_SECRET)),
            },
        });
        Harness { store, queue, clock, app }
    }

    /// A Pub/Sub push body announcing a change of the mailbox `email`.
    pub fn gmail_push_body(email: &str, message_id: &str) -> String {
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD
            .encode(serde_json::json!({ "emailAddress": email, "historyId": 1234 }).to_string());
        serde_json::json!({ "message": { "data": data, "messageId": message_id, "publishTime": "2026-12-05T10:00:00Z" }, "subscription": "projects/acme/subscriptions/gmail" }).to_string()
    }

    /// A Gmail connection of tenant `acme` for the mailbox `email`.
    pub async fn gmail_connection(h: &Harness, email: &str) -> Connection {
        let mut c = crate::domain::connection::sample_connection(
            "acme",
            Provider::Gmail,
            "https://gmail.googleapis.com/gmail/v1",
            now(),
        );
        c.account_id = Some(email.into());
        ConnectionStore::create(h.store.as_ref(), &c).await.expect("stored");
        c
    }

    pub async fn send(app: &Router, req: http::Request<axum::body::Body>) -> (u16, serde_json::Value) {
        use tower::ServiceExt;
        let res = app.clone().oneshot(req).await.expect("infallible");
        let status = res.status().as_u16();
        let body = http_body_util::BodyExt::collect(res.into_body()).await.expect("body").to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[tokio::test]
    async fn unknown_webhook_routes_are_404_problems_and_enqueue_nothing() {
        let h = harness();
        let req = http::Request::post("/webhooks/salesforce").body(axum::body::Body::from("{}")).unwrap();
        let (status, body) = send(&h.app, req).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
        let req = http::Request::get("/webhooks/hubspot").body(axum::body::Body::empty()).unwrap();
        assert_eq!(send(&h.app, req).await.0, 405);
        assert!(h.queue.jobs().is_empty());
    }

    #[tokio::test]
    async fn bodies_over_the_cap_are_413_problems_and_enqueue_nothing() {
        let h = harness();
        for path in ["/webhooks/hubspot", "/webhooks/google", "/webhooks/microsoft"] {
            let big = vec![b' '; MAX_BODY_BYTES + 1];
            let req = http::Request::post(path)
                .header("x-goog-channel-id", "ch-1")
                .header("x-goog-resource-state", "exists")
                .body(axum::body::Body::from(big))
                .unwrap();
            let (status, body) = send(&h.app, req).await;
            assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")), "{path}");
        }
        assert!(h.queue.jobs().is_empty());
    }

    #[test]
    fn secrets_match_only_when_equal_and_settings_never_show_them() {
        let secret = SecretString::from("s3cret");
        assert!(secret_matches(&secret, "s3cret"));
        assert!(!secret_matches(&secret, "s3creT"));
        assert!(!secret_matches(&secret, "s3cret-longer"));
        assert!(!secret_matches(&secret, ""));
        let settings = WebhookSettings {
            hubspot_client_secret: Some(SecretString::from("hs-secret-value")),
            ..WebhookSettings::default()
        };
        assert!(!format!("{settings:?}").contains("hs-secret-value"));
    }
}
