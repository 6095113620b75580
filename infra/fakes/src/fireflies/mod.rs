//! A fake Fireflies.ai account speaking its GraphQL API (`POST /graphql`,
//! <https://docs.fireflies.ai/getting-started/introduction>): the `user`, `users`, `transcript`
//! and `transcripts` queries over a schema implemented with `async-graphql` (so an invalid query
//! gets real GraphQL validation errors), bearer API keys, Fireflies' error body (`errors[]` with
//! `message`, `code`, `friendly` and `extensions { code, status, metadata }`,
//! <https://docs.fireflies.ai/fundamentals/errors>), the documented limits (`limit` at most 50,
//! one of `organizer_email`/`participant_email`/`user_id`/`mine` at a time, the per-plan rate
//! limit), and the "Transcription completed" webhook signed with `x-hub-signature`.
//!
//! The account starts as a new one: one user (the API key's owner) and no transcripts. Tests and
//! the demo add meetings through the Rust handle ([`FirefliesState`]) or `/_admin/` routes; a
//! meeting added as `processing` stays invisible to the API until it is completed, as a real
//! transcript appears only once Fireflies has processed it (its `date` is still the meeting's
//! start, which is why a client's incremental pull needs a lookback).

mod schema;
mod server;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::admin;

pub use schema::sdl;

/// The most transcripts one `transcripts` query returns
/// (<https://docs.fireflies.ai/graphql-api/query/transcripts>: `limit`, "Maximum 50").
pub const MAX_LIMIT: i32 = 50;
/// The Business and Enterprise plans' API rate limit: 60 requests a minute
/// (<https://docs.fireflies.ai/fundamentals/limits>). Free and Pro get 50 a day, which
/// [`FirefliesState::set_rate_limit`] can also play.
pub const PER_MINUTE: u32 = 60;
/// The API key the fake accepts unless told otherwise.
pub const DEFAULT_API_KEY: &str = "ff_fake_fireflies";
/// The webhook's only event type (<https://docs.fireflies.ai/graphql-api/webhooks>).
pub const TRANSCRIPTION_COMPLETED: &str = "Transcription completed";

/// How to start a fake.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Port on 127.0.0.1; 0 lets the OS pick.
    pub port: u16,
    pub api_key: String,
    /// Enforce the Business plan's 60 requests a minute.
    pub rate_limits: bool,
    /// The account owner's email (the user the API key belongs to).
    pub owner_email: String,
    /// Meetings seeded at start (processed, spread over the last days).
    pub transcripts: usize,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            port: 0,
            api_key: DEFAULT_API_KEY.into(),
            rate_limits: false,
            owner_email: "ada@acme.example".into(),
            transcripts: 0,
        }
    }
}

/// A meeting attendee as the calendar invite named them (`MeetingAttendee`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attendee {
    #[serde(default)]
    pub display_name: Option<String>,
    pub email: String,
}

/// The AI summary of a meeting (`Summary`, <https://docs.fireflies.ai/schema/summary>).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(default)]
    pub overview: Option<String>,
    /// Fireflies' action items: one text, a `**Name**` line before each person's items, one item
    /// a line.
    #[serde(default)]
    pub action_items: Option<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub short_summary: Option<String>,
}

/// A meeting to add (admin).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewTranscript {
    /// `None`: a generated id.
    #[serde(default)]
    pub id: Option<String>,
    pub title: String,
    /// The meeting's start.
    pub date: DateTime<Utc>,
    /// Minutes.
    #[serde(default)]
    pub duration: f64,
    /// `None`: the account owner.
    #[serde(default)]
    pub organizer_email: Option<String>,
    #[serde(default)]
    pub attendees: Vec<Attendee>,
    /// The calendar event's id (Google event id / Outlook iCalUID).
    #[serde(default)]
    pub calendar_id: Option<String>,
    /// The calendar it came from, `google` or `outlook`; `None`: `google` when there is a
    /// `calendar_id`.
    #[serde(default)]
    pub calendar_type: Option<String>,
    #[serde(default)]
    pub summary: Summary,
    /// Still being processed: invisible until [`FirefliesState::complete`].
    #[serde(default)]
    pub processing: bool,
}

/// A stored meeting.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub id: String,
    pub title: String,
    pub date: DateTime<Utc>,
    pub duration: f64,
    pub organizer_email: String,
    pub attendees: Vec<Attendee>,
    pub calendar_id: Option<String>,
    pub calendar_type: Option<String>,
    pub summary: Summary,
    pub processing: bool,
}

impl Transcript {
    /// Everyone in the meeting by email: the organizer and the attendees, deduplicated
    /// (`participants`).
    pub fn participants(&self) -> Vec<String> {
        let mut all: Vec<String> = std::iter::once(self.organizer_email.clone())
            .chain(self.attendees.iter().map(|a| a.email.clone()))
            .map(|e| e.to_ascii_lowercase())
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

/// Where the account's webhook goes and the secret that signs it (Developer settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookTarget {
    pub url: String,
    pub secret: String,
}

/// The routes the fake counts and can inject faults into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// `POST /graphql`.
    Graphql,
    /// Matches every route (faults only).
    Any,
}

impl admin::FaultRoute for Route {
    fn is_any(&self) -> bool {
        *self == Route::Any
    }
}

/// What an injected fault answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// `too_many_requests` (429).
    RateLimit,
    /// A bare 5xx from the edge (`status`, default 502).
    ServerError {
        #[serde(default)]
        status: Option<u16>,
    },
    /// `auth_failed` (401) whatever the key.
    Unauthorized,
}

impl admin::FaultKind for FaultKind {
    fn is_rate_limit(&self) -> bool {
        *self == FaultKind::RateLimit
    }
}

/// A fault for the next `count` requests to `route` (`POST /_admin/faults`).
pub type Fault = admin::Fault<Route, FaultKind>;

/// The GraphQL root fields queried, beside the shared counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fields {
    pub fields: BTreeMap<String, u64>,
}

/// Request counters (`GET /_admin/stats`): requests, 429s, and each root field queried.
pub type Stats = admin::Stats<Fields>;

/// A fixed window of `limit` requests per `window`.
#[derive(Debug, Clone)]
struct Window {
    limit: u32,
    window: chrono::Duration,
    started: DateTime<Utc>,
    used: u32,
}

#[derive(Debug)]
struct Inner {
    transcripts: BTreeMap<String, Transcript>,
    api_keys: Vec<String>,
    limit: Option<Window>,
    clock_offset: chrono::Duration,
    webhook: Option<WebhookTarget>,
    next_id: u64,
}

/// The account's state. Every admin operation is also a method here.
#[derive(Debug)]
pub struct FirefliesState {
    inner: Mutex<Inner>,
    pub user_id: String,
    pub owner_email: String,
    pub owner_name: String,
    control: admin::Control<Route, FaultKind, Fields>,
}

/// Why a request was refused before the query ran.
pub(crate) enum Gate {
    Unauthorized,
    /// Rate limited until this instant.
    RateLimited(DateTime<Utc>),
    Fault(FaultKind),
}

impl FirefliesState {
    pub fn new(config: &FakeConfig) -> Self {
        let inner = Inner {
            transcripts: BTreeMap::new(),
            api_keys: vec![config.api_key.clone()],
            limit: None,
            clock_offset: chrono::Duration::zero(),
            webhook: None,
            next_id: 1,
        };
        let state = Self {
            inner: Mutex::new(inner),
            user_id: "01FFUSER0000000000000000AD".into(),
            owner_email: config.owner_email.to_ascii_lowercase(),
            owner_name: "Ada Lovelace".into(),
            control: admin::Control::default(),
        };
        if config.rate_limits {
            state.set_rate_limit(Some((PER_MINUTE, chrono::Duration::minutes(1))));
        }
        state.seed(config.transcripts);
        state
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The account's clock.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.lock().clock_offset
    }

    pub fn advance_clock(&self, by: chrono::Duration) {
        self.lock().clock_offset += by;
    }

    /// Adds `n` processed meetings, one every two hours back from now, each with two outside
    /// attendees and two action items.
    pub fn seed(&self, n: usize) -> Vec<String> {
        let now = self.now();
        (0..n)
            .map(|i| {
                let k = i + 1;
                self.add(NewTranscript {
                    title: format!("Meeting {k}"),
                    date: now - chrono::Duration::hours(2 * k as i64),
                    duration: 30.0,
                    attendees: vec![
                        Attendee { display_name: Some(format!("Contact {k}")), email: format!("contact{k}@example.com") },
                        Attendee { display_name: None, email: format!("buyer{k}@globex.example") },
                    ],
                    calendar_id: Some(format!("gcal{k:06}")),
                    summary: Summary {
                        overview: Some(format!("Discussed the proposal for account {k}.")),
                        action_items: Some(format!(
                            "**Ada Lovelace**\nSend the revised proposal to contact{k} (05:12)\n\n**Contact {k}**\nShare the security questionnaire (21:40)"
                        )),
                        keywords: vec!["proposal".into(), "security".into()],
                        short_summary: Some("Proposal review.".into()),
                    },
                    ..NewTranscript::default()
                })
            })
            .collect()
    }

    /// Adds a meeting; returns its id.
    pub fn add(&self, new: NewTranscript) -> String {
        let mut inner = self.lock();
        let id = new.id.clone().unwrap_or_else(|| {
            let id = format!("01FFMEET{:018}", inner.next_id);
            inner.next_id += 1;
            id
        });
        let t = Transcript {
            id: id.clone(),
            title: new.title,
            date: new.date,
            duration: new.duration,
            organizer_email: new
                .organizer_email
                .unwrap_or_else(|| self.owner_email.clone())
                .to_ascii_lowercase(),
            attendees: new.attendees,
            calendar_type: new
                .calendar_type
                .or_else(|| new.calendar_id.as_ref().map(|_| "google".to_owned())),
            calendar_id: new.calendar_id,
            summary: new.summary,
            processing: new.processing,
        };
        inner.transcripts.insert(id.clone(), t);
        id
    }

    /// Finishes processing a meeting: it becomes visible to the API. Returns whether it exists.
    pub fn complete(&self, id: &str) -> bool {
        match self.lock().transcripts.get_mut(id) {
            Some(t) => {
                t.processing = false;
                true
            }
            None => false,
        }
    }

    /// Deletes a meeting as its owner would (it disappears from every query).
    pub fn delete(&self, id: &str) -> bool {
        self.lock().transcripts.remove(id).is_some()
    }

    /// Replaces a meeting's action items (Fireflies regenerates a summary on request).
    pub fn set_action_items(&self, id: &str, items: Option<String>) -> bool {
        match self.lock().transcripts.get_mut(id) {
            Some(t) => {
                t.summary.action_items = items;
                true
            }
            None => false,
        }
    }

    pub fn transcript(&self, id: &str) -> Option<Transcript> {
        self.lock().transcripts.get(id).cloned()
    }

    /// Visible meetings (processed), newest first: what the API lists.
    pub(crate) fn visible(&self) -> Vec<Transcript> {
        let mut all: Vec<Transcript> =
            self.lock().transcripts.values().filter(|t| !t.processing).cloned().collect();
        all.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| a.id.cmp(&b.id)));
        all
    }

    /// `None` switches the rate limit off; `Some((limit, window))` allows `limit` requests a
    /// window (60 a minute on Business, 50 a day on Free and Pro).
    pub fn set_rate_limit(&self, limit: Option<(u32, chrono::Duration)>) {
        let now = self.now();
        self.lock().limit = limit.map(|(limit, window)| Window { limit, window, started: now, used: 0 });
    }

    pub fn add_api_key(&self, key: &str) {
        self.lock().api_keys.push(key.to_owned());
    }

    pub fn set_webhook(&self, target: Option<WebhookTarget>) {
        self.lock().webhook = target;
    }

    admin::control_methods!();

    pub(crate) fn count_field(&self, field: &str) {
        self.control.counters.update(|s| *s.extra.fields.entry(field.to_owned()).or_default() += 1);
    }

    /// Counts the request, applies a pending fault, checks the key, then spends one request of the
    /// rate limit.
    pub(crate) fn admit(&self, bearer: Option<&str>) -> Result<(), Gate> {
        if let Some(kind) = admin::Admin::count_and_take(self, &Route::Graphql, "graphql") {
            return Err(Gate::Fault(kind));
        }
        let now = self.now();
        let mut inner = self.lock();
        if !bearer.is_some_and(|b| inner.api_keys.iter().any(|k| k == b)) {
            return Err(Gate::Unauthorized);
        }
        if let Some(w) = inner.limit.as_mut() {
            if now >= w.started + w.window {
                w.started = now;
                w.used = 0;
            }
            if w.used >= w.limit {
                let until = w.started + w.window;
                self.control.counters.rate_limited();
                return Err(Gate::RateLimited(until));
            }
            w.used += 1;
        }
        Ok(())
    }

    /// Sends the "Transcription completed" webhook for `meeting` to the registered URL, signed as
    /// Fireflies signs it: `x-hub-signature` = hex HMAC-SHA256 of the body with the webhook secret
    /// (<https://docs.fireflies.ai/graphql-api/webhooks#webhook-authentication>). Returns the
    /// receiver's status.
    pub async fn send_webhook(
        &self,
        meeting: &str,
        client_reference_id: Option<&str>,
    ) -> anyhow::Result<u16> {
        let target = self.lock().webhook.clone().context("no webhook URL is saved")?;
        let body = serde_json::to_vec(&serde_json::json!({
            "meetingId": meeting,
            "eventType": TRANSCRIPTION_COMPLETED,
            "clientReferenceId": client_reference_id,
        }))?;
        let resp = reqwest::Client::new()
            .post(&target.url)
            .header("content-type", "application/json")
            .header("x-hub-signature", sign(&target.secret, &body))
            .body(body)
            .send()
            .await
            .context("sending the webhook")?;
        Ok(resp.status().as_u16())
    }
}

impl admin::Admin for FirefliesState {
    type Route = Route;
    type Kind = FaultKind;
    type Extra = Fields;

    fn control(&self) -> &admin::Control<Route, FaultKind, Fields> {
        &self.control
    }
    fn bad_body(error: &serde_json::Error) -> axum::response::Response {
        use axum::response::IntoResponse;
        (axum::http::StatusCode::BAD_REQUEST, error.to_string()).into_response()
    }
}

/// Fireflies' webhook signature: lowercase hex of HMAC-SHA256(secret, raw body).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts fakes.
pub struct FirefliesFake;

impl FirefliesFake {
    /// Binds 127.0.0.1 on `config.port` (0: OS-picked) and serves until the [`RunningFake`] drops.
    pub async fn start(config: FakeConfig) -> anyhow::Result<RunningFake> {
        let bound = crate::serving::bind(config.port).await?;
        let base_url = bound.base_url.clone();
        let state = Arc::new(FirefliesState::new(&config));
        let app = server::router(state.clone());
        let server = bound.serve("Fireflies", app);
        Ok(RunningFake::new(base_url, state, server))
    }
}

/// A running fake; the server stops when this is dropped.
pub type RunningFake = crate::serving::Running<FirefliesState>;

#[cfg(test)]
mod tests;
