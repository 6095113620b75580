//! A fake Gmail API (v1) for one mailbox: `users.getProfile`, `messages.list/get/insert/modify/
//! batchModify/trash/delete`, `threads.list/get`, `labels.list/create`, `history.list` (with a
//! horizon that answers 404 as Google does for a start id too old), `users.watch/stop`, the OAuth
//! endpoints (`/token`, `/o/oauth2/v2/auth`, `/revoke`, through [`crate::oauth`]), per-user quota
//! units with 429 `rateLimitExceeded` (off unless asked for), scopes per token, Google's error body,
//! plus `/_admin/` routes and a Rust handle ([`GmailState`]) to deliver mail as a correspondent
//! would, change labels as the owner would, expire history, inject faults and count requests.
//! Pub/Sub's push subscriptions of the watched topic live here too, with their OIDC tokens
//! ([`oidc`]) and Google's signing keys at `/oauth2/v3/certs`.
//!
//! The API is served under `/gmail/v1` (so a connection's base URL is `{fake}/gmail/v1`, as
//! `https://gmail.googleapis.com/gmail/v1` in production). A new fake is a new account: the system
//! labels and no message; seeding goes through the same insert as `users.messages.insert`.

pub mod oidc;
mod server;
pub mod store;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::admin;
use store::{MailError, Mailbox, Message};

/// Google's access-token lifetime as its token endpoint reports it.
pub const ACCESS_TOKEN_TTL: Duration = crate::oauth::GOOGLE_ACCESS_TOKEN_TTL;
/// How long a `users.watch` lasts: Google asks for a renewal at least every 7 days
/// (<https://developers.google.com/gmail/api/guides/push#renewing_mailbox_watch>).
pub const WATCH_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Per-user quota units a minute (<https://developers.google.com/gmail/api/reference/quota>).
pub const USER_UNITS_PER_MINUTE: u32 = 15_000;

/// Gmail's OAuth scopes.
pub mod scopes {
    pub const FULL: &str = "https://mail.google.com/";
    pub const MODIFY: &str = "https://www.googleapis.com/auth/gmail.modify";
    pub const READONLY: &str = "https://www.googleapis.com/auth/gmail.readonly";
    pub const METADATA: &str = "https://www.googleapis.com/auth/gmail.metadata";
    pub const INSERT: &str = "https://www.googleapis.com/auth/gmail.insert";
    pub const LABELS: &str = "https://www.googleapis.com/auth/gmail.labels";
}

/// How to start a fake.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Port on 127.0.0.1; 0 lets the OS pick.
    pub port: u16,
    /// Messages delivered at start (0: a new, empty mailbox), through `messages.insert`'s path.
    pub messages: usize,
    pub seed: u64,
    /// A token that never expires (`None`: only issued tokens work), with `static_scopes`.
    pub static_token: Option<String>,
    pub static_scopes: Vec<String>,
    pub client_id: String,
    pub client_secret: String,
    /// Per-user quota units a minute; `None`: no quota (the default; [`USER_UNITS_PER_MINUTE`] is
    /// Google's).
    pub units_per_minute: Option<u32>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            port: 0,
            messages: 0,
            seed: 42,
            static_token: Some("ya29.fake-gmail".into()),
            static_scopes: vec![scopes::MODIFY.into()],
            client_id: "fake-google-client.apps.googleusercontent.com".into(),
            client_secret: "fake-google-secret".into(),
            units_per_minute: None,
        }
    }
}

/// What an injected fault does to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// 429 `rateLimitExceeded`; `retry_after_secs` adds a `Retry-After` header.
    RateLimit {
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
}

/// A fault for the next `count` requests to the API method `route` (`messages.list`, ...;
/// `any` for all). `POST /_admin/faults` takes the method as `method` (or `route`).
pub type Fault = admin::Fault<String, FaultKind>;

/// Request counters: the common ones, `routes` counting per API method (`messages.list`, ...,
/// named `methods` in `GET /_admin/stats`), and [`QuotaCounts`].
pub type Stats = admin::Stats<QuotaCounts>;

/// The Gmail fake's own counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaCounts {
    /// Quota units charged.
    pub units: u64,
}

impl admin::FaultKind for FaultKind {
    fn is_rate_limit(&self) -> bool {
        matches!(self, FaultKind::RateLimit { .. })
    }
}

pub use crate::oauth::IssuedToken;

/// The mailbox watch `users.watch` set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    pub topic_name: String,
    pub label_ids: Vec<String>,
    /// Epoch milliseconds.
    pub expiration: i64,
}

/// A Pub/Sub push subscription of a topic (set up in Google Cloud, outside the Gmail API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSubscription {
    pub topic_name: String,
    pub endpoint: String,
    /// `projects/{project}/subscriptions/{name}`.
    pub name: String,
    /// `pushConfig.oidcToken`: each push carries a token signed for this service account; `None`:
    /// pushes carry no `Authorization` header, as Pub/Sub sends them
    /// (<https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions>).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_token: Option<oidc::OidcToken>,
}

/// One push the fake sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub endpoint: String,
    pub history_id: String,
    /// The receiver's HTTP status, or `None` if it could not be reached.
    pub status: Option<u16>,
}

/// A message as a correspondent sends it (the admin route's and [`GmailState::deliver`]'s input).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Mail {
    pub from: String,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    pub subject: String,
    #[serde(default)]
    pub body: String,
    /// Label ids (default: `INBOX`, `UNREAD`).
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    #[serde(default)]
    pub thread_id: Option<String>,
}

impl Mail {
    /// The RFC 822 text of the message.
    pub fn rfc822(&self, date: chrono::DateTime<chrono::Utc>) -> String {
        let mut text = format!("From: {}\r\n", self.from);
        if !self.to.is_empty() {
            text.push_str(&format!("To: {}\r\n", self.to.join(", ")));
        }
        if !self.cc.is_empty() {
            text.push_str(&format!("Cc: {}\r\n", self.cc.join(", ")));
        }
        text.push_str(&format!("Subject: {}\r\nDate: {}\r\n", self.subject, date.to_rfc2822()));
        text.push_str("Content-Type: text/plain; charset=UTF-8\r\n\r\n");
        text.push_str(&self.body);
        text
    }
}

#[derive(Debug)]
struct Inner {
    mailbox: Mailbox,
    units_per_minute: Option<u32>,
    /// Quota units charged in the last minute: (when, units).
    charged: VecDeque<(Instant, u32)>,
    watch: Option<Watch>,
    subscriptions: Vec<PushSubscription>,
    published: u64,
}

/// The fake mailbox's state. Every admin operation is also a method here.
#[derive(Debug)]
pub struct GmailState {
    inner: Mutex<Inner>,
    config: FakeConfig,
    http: reqwest::Client,
    /// The OAuth side: authorization codes and tokens.
    pub oauth: crate::oauth::GoogleOAuth,
    /// The key that signs push tokens, made at start.
    signer: oidc::PushSigner,
    control: admin::Control<String, FaultKind, QuotaCounts>,
}

/// Why the gate refused a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Unauthenticated,
    /// The token lacks every scope the method accepts.
    InsufficientScope,
    /// Quota spent: the instant (epoch ms) when enough units are free again.
    Quota(i64),
}

const CORRESPONDENTS: &[&str] = &[
    "Jane Doe <jane.doe@globex.example>",
    "Raj Patel <raj@initech.example>",
    "Li Wei <li@umbrella.example>",
    "Sam Hill <sam@hooli.example>",
    "Ann Lee <ann@acme.example>",
];
const SUBJECTS: &[&str] = &["Intro call", "Pricing question", "Contract draft", "Follow-up", "Renewal"];

impl GmailState {
    pub fn new(config: FakeConfig) -> Self {
        let oauth = crate::oauth::GoogleOAuth::new(
            (&config.client_id, &config.client_secret),
            config.static_scopes.clone(),
            config.static_token.as_deref(),
            &config.static_scopes,
        );
        let inner = Inner {
            mailbox: Mailbox::new(),
            units_per_minute: config.units_per_minute,
            charged: VecDeque::new(),
            watch: None,
            subscriptions: Vec::new(),
            published: 0,
        };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        let state = Self {
            inner: Mutex::new(inner),
            config,
            http,
            oauth,
            signer: oidc::PushSigner::generate(),
            control: admin::Control::default(),
        };
        state.seed();
        state
    }

    /// Delivers `config.messages` messages from a few correspondents, a minute apart, ending now.
    fn seed(&self) {
        let n = self.config.messages;
        let now = chrono::Utc::now();
        for i in 0..n {
            let k = (i as u64).wrapping_mul(31).wrapping_add(self.config.seed) as usize;
            let mail = Mail {
                from: CORRESPONDENTS[k % CORRESPONDENTS.len()].to_owned(),
                to: vec![store::OWNER.to_owned()],
                cc: if i % 4 == 0 { vec!["ann@acme.example".to_owned()] } else { Vec::new() },
                subject: format!("{} #{i}", SUBJECTS[k % SUBJECTS.len()]),
                body: format!("Message {i} of the seeded mailbox."),
                labels: None,
                thread_id: None,
            };
            let at = now - chrono::Duration::minutes((n - i) as i64);
            let _ = self.deliver_at(&mail, at);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn config(&self) -> &FakeConfig {
        &self.config
    }

    /// The mailbox's current history id.
    pub fn history_id(&self) -> u64 {
        self.lock().mailbox.history_id
    }

    /// A message in `full` format, or `None`.
    pub fn message(&self, id: &str) -> Option<Value> {
        self.lock().mailbox.messages.get(id).map(|m| m.render(store::Format::Full, &[]))
    }

    /// A message's label ids, or `None`.
    pub fn labels_of(&self, id: &str) -> Option<Vec<String>> {
        self.lock().mailbox.messages.get(id).map(|m| m.labels.iter().cloned().collect())
    }

    pub fn message_ids(&self) -> Vec<String> {
        self.lock().mailbox.messages.keys().cloned().collect()
    }

    /// Delivers a message now, as a correspondent's mail arrives; returns its id.
    pub fn deliver(&self, mail: &Mail) -> Result<String, MailError> {
        self.deliver_at(mail, chrono::Utc::now())
    }

    fn deliver_at(&self, mail: &Mail, at: chrono::DateTime<chrono::Utc>) -> Result<String, MailError> {
        let labels = mail.labels.clone().unwrap_or_else(|| vec!["INBOX".into(), "UNREAD".into()]);
        let raw = mail.rfc822(at).into_bytes();
        let inserted: Result<Message, MailError> =
            self.lock().mailbox.insert(raw, &labels, mail.thread_id.as_deref(), at.timestamp_millis());
        inserted.map(|m| m.id)
    }

    /// Changes a message's labels as the owner would in Gmail.
    pub fn relabel(&self, id: &str, add: &[&str], remove: &[&str]) -> Result<Vec<String>, MailError> {
        let add: Vec<String> = add.iter().map(|s| (*s).to_owned()).collect();
        let remove: Vec<String> = remove.iter().map(|s| (*s).to_owned()).collect();
        self.lock().mailbox.modify(id, &add, &remove).map(|m| m.labels.into_iter().collect())
    }

    /// Deletes a message for good, as the owner emptying the trash.
    pub fn delete_message(&self, id: &str) -> Result<(), MailError> {
        self.lock().mailbox.delete(id)
    }

    /// Creates a user label; returns its id.
    pub fn create_label(&self, name: &str) -> Result<String, MailError> {
        self.lock().mailbox.create_label(name, None, None).map(|l| l.id)
    }

    /// Forgets all history so far: `history.list` from any id issued until now answers 404.
    pub fn expire_history(&self) {
        self.lock().mailbox.expire_history();
    }

    admin::control_methods!();

    /// Turns the per-user quota on (units a minute) or off (`None`), forgetting what was charged.
    pub fn set_quota(&self, units_per_minute: Option<u32>) {
        let mut inner = self.lock();
        inner.units_per_minute = units_per_minute;
        inner.charged.clear();
    }

    /// Issues an access token with `scopes` (lifetime `ttl`, default Google's 3599 s) and a
    /// refresh token that renews it with the same scopes.
    pub fn issue_token(&self, scopes: &[String], ttl: Option<Duration>) -> IssuedToken {
        self.oauth.tokens.issue(scopes, ttl)
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

    /// The watch `users.watch` set, if any (and not stopped).
    pub fn watch(&self) -> Option<Watch> {
        self.lock().watch.clone()
    }

    /// Adds a Pub/Sub push subscription of `topic_name` that delivers to `endpoint`, with an OIDC
    /// token on each push when `oidc_token` is set.
    pub fn subscribe(
        &self,
        topic_name: &str,
        endpoint: &str,
        oidc_token: Option<oidc::OidcToken>,
    ) -> PushSubscription {
        let mut inner = self.lock();
        let project = topic_name.split('/').nth(1).unwrap_or("project");
        let sub = PushSubscription {
            topic_name: topic_name.to_owned(),
            endpoint: endpoint.to_owned(),
            name: format!("projects/{project}/subscriptions/sub-{}", inner.subscriptions.len() + 1),
            oidc_token,
        };
        inner.subscriptions.push(sub.clone());
        sub
    }

    /// Publishes the mailbox's current history id to the watched topic, as Gmail does after a
    /// change: each push subscription of the topic gets Pub/Sub's push body
    /// (<https://developers.google.com/gmail/api/guides/push#receiving_notifications>). Nothing
    /// when no watch is active.
    pub async fn publish(&self) -> Vec<Delivery> {
        let now = chrono::Utc::now();
        let (targets, data, message_id) = {
            let mut inner = self.lock();
            let Some(watch) = inner.watch.clone().filter(|w| w.expiration > now.timestamp_millis()) else {
                return Vec::new();
            };
            inner.published += 1;
            let history_id = inner.mailbox.history_id.to_string();
            let data = json!({ "emailAddress": store::OWNER, "historyId": inner.mailbox.history_id });
            let targets: Vec<PushSubscription> =
                inner.subscriptions.iter().filter(|s| s.topic_name == watch.topic_name).cloned().collect();
            (targets, (data, history_id), format!("{}", 2_000_000_000_000u64 + inner.published))
        };
        let (data, history_id) = data;
        let encoded = base64::engine::general_purpose::STANDARD.encode(data.to_string());
        let mut out = Vec::new();
        for sub in targets {
            let body = json!({
                "message": {
                    "data": encoded,
                    "messageId": message_id,
                    "message_id": message_id,
                    "publishTime": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "publish_time": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                },
                "subscription": sub.name,
            });
            let mut request = self.http.post(&sub.endpoint).json(&body);
            if let Some(oidc) = &sub.oidc_token {
                match self.signer.sign(&oidc.claims(&sub.endpoint, now.timestamp())) {
                    Ok(token) => request = request.bearer_auth(token),
                    Err(e) => {
                        tracing::error!(error = %e, subscription = %sub.name, "push not sent");
                        out.push(Delivery {
                            endpoint: sub.endpoint.clone(),
                            history_id: history_id.clone(),
                            status: None,
                        });
                        continue;
                    }
                }
            }
            let status = request.send().await.ok().map(|r| r.status().as_u16());
            out.push(Delivery { endpoint: sub.endpoint.clone(), history_id: history_id.clone(), status });
        }
        out
    }

    /// The key that signs push tokens (its public half is served at [`oidc::CERTS_PATH`]).
    pub fn push_signer(&self) -> &oidc::PushSigner {
        &self.signer
    }

    /// The signing keys as Google serves them: a JWKS (RFC 7517) of the one key.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.signer.jwk()] })
    }

    /// Counts the request, charges its quota units, and takes the first pending fault for it.
    fn count_and_take_fault(&self, method: &str) -> Option<FaultKind> {
        admin::Admin::count_and_take(self, &method.to_owned(), method)
    }

    /// Checks the bearer token, its scopes (any of `accepted`), then charges `units` against the
    /// per-user quota. Returns the token's scopes.
    fn admit(&self, bearer: Option<&str>, accepted: &[&str], units: u32) -> Result<Vec<String>, Refusal> {
        let token = bearer.ok_or(Refusal::Unauthenticated)?;
        let scopes = self.oauth.tokens.scopes(token).ok_or(Refusal::Unauthenticated)?;
        let mut inner = self.lock();
        if !scopes.iter().any(|s| accepted.contains(&s.as_str())) {
            return Err(Refusal::InsufficientScope);
        }
        if let Some(limit) = inner.units_per_minute {
            let now = Instant::now();
            while inner
                .charged
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) >= Duration::from_secs(60))
            {
                inner.charged.pop_front();
            }
            let used: u32 = inner.charged.iter().map(|(_, u)| u).sum();
            if used + units > limit {
                self.control.counters.rate_limited();
                let free_at = inner
                    .charged
                    .front()
                    .map(|(t, _)| Duration::from_secs(60).saturating_sub(now.duration_since(*t)))
                    .unwrap_or_default();
                let at = chrono::Utc::now() + chrono::Duration::from_std(free_at).unwrap_or_default();
                return Err(Refusal::Quota(at.timestamp_millis()));
            }
            inner.charged.push_back((now, units));
        }
        self.control.counters.update(|s| s.units += u64::from(units));
        Ok(scopes)
    }

    /// Runs `f` on the mailbox under the lock.
    fn with_mailbox<T>(&self, f: impl FnOnce(&mut Mailbox) -> T) -> T {
        f(&mut self.lock().mailbox)
    }

    fn set_watch(&self, watch: Option<Watch>) {
        self.lock().watch = watch;
    }
}

impl admin::Admin for GmailState {
    type Route = String;
    type Kind = FaultKind;
    type Extra = QuotaCounts;

    fn control(&self) -> &admin::Control<String, FaultKind, QuotaCounts> {
        &self.control
    }
    fn oauth(&self) -> Option<&crate::oauth::CodeGrants> {
        Some(&self.oauth.codes)
    }
    fn bad_body(error: &serde_json::Error) -> axum::response::Response {
        server::invalid(&error.to_string())
    }
    fn stats_json(stats: Stats) -> serde_json::Value {
        admin::rename_keys(serde_json::to_value(stats).unwrap_or_default(), &[("routes", "methods")])
    }
}

impl crate::oauth::GoogleAccount for GmailState {
    const PRODUCT: &'static str = "Google";

    fn google(&self) -> &crate::oauth::GoogleOAuth {
        &self.oauth
    }
    fn fault(
        &self,
        endpoint: crate::oauth::GoogleEndpoint,
    ) -> impl Future<Output = Option<axum::response::Response>> + Send {
        let method = match endpoint {
            crate::oauth::GoogleEndpoint::Token => "token",
            crate::oauth::GoogleEndpoint::Authorize => "authorize",
            crate::oauth::GoogleEndpoint::Revoke => "revoke",
        };
        server::apply_fault(self, method)
    }
    fn unknown_token() -> axum::response::Response {
        server::not_found()
    }
}

/// Starts fakes.
pub struct GmailFake;

impl GmailFake {
    /// Binds 127.0.0.1 on `config.port` (0: OS-picked) and serves until the [`RunningFake`] drops.
    pub async fn start(config: FakeConfig) -> anyhow::Result<RunningFake> {
        let bound = crate::serving::bind(config.port).await?;
        let base_url = bound.base_url.clone();
        let state = Arc::new(GmailState::new(config));
        let app = server::router(state.clone());
        let server = bound.serve("Gmail", app);
        Ok(RunningFake::new(base_url, state, server))
    }
}

/// A running fake; the server stops when this is dropped.
pub type RunningFake = crate::serving::Running<GmailState>;

impl RunningFake {
    /// The API root, `{base_url}/gmail/v1`: a connection's base URL.
    pub fn api_url(&self) -> String {
        format!("{}/gmail/v1", self.base_url)
    }

    /// The OAuth token endpoint, `{base_url}/token`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url)
    }

    /// The push tokens' signing keys, `{base_url}/oauth2/v3/certs` (Google's JWKS URL).
    pub fn certs_url(&self) -> String {
        format!("{}{}", self.base_url, oidc::CERTS_PATH)
    }
}

#[cfg(test)]
mod tests;
