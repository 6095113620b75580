//! Fireflies.ai adapter (pull only): a connection's meeting transcripts through Fireflies'
//! GraphQL API (`POST {base_url}/graphql`, `Authorization: Bearer <API key>`,
//! <https://docs.fireflies.ai/fundamentals/authorization>), as records of object `transcripts`:
//! title, date, duration, organizer, participants and attendees, the summary's overview and
//! keywords, and the action items (which the worker turns into follow-up tasks, see
//! `sync::tasks::follow_up_tasks`).
//!
//! - **Pulls** ([`pull`]) list `transcripts` newest first, 50 a page (`limit`'s maximum) with
//!   `skip`, inside a date window `[fromDate, toDate]` fixed when the traversal starts. A full
//!   pull has no lower bound; an incremental one starts [`pull::LOOKBACK`] before the newest
//!   meeting date seen, because a transcript appears only once Fireflies has processed it, while
//!   its `date` stays the meeting's start.
//! - **Deletes**: a transcript its owner deletes simply disappears from `transcripts`. Once a day
//!   (and at once after a webhook or a manual sync) a caught-up pull asks the worker to reconcile:
//!   [`ProviderClient::live_ids`] lists every transcript id and the stored records missing from it
//!   become deletes.
//! - **Errors**: Fireflies' body is `errors[]` with `code` and `extensions { code, status,
//!   metadata }` (<https://docs.fireflies.ai/fundamentals/errors>); the code decides the class
//!   (`auth_failed`: unauthorized, `too_many_requests`: rate limited until
//!   `extensions.metadata.retryAfter`, `object_not_found`: not found, others by status), whether
//!   the answer's HTTP status is an error or a 200.
//! - **Limits**: one pacer per connection under the Business plan's 60 requests a minute
//!   (<https://docs.fireflies.ai/fundamentals/limits>), through the shared send path, which also
//!   waits out a short 429.
//!
//! API keys do not expire: no refresh.

mod pull;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::notion::{Bucket, ConnectionBuckets, Pacing};
use super::provider_http::{Call, Dialect, ProviderHttp, Reply, classify_status, error_of_class};
use crate::domain::{Connection, Credentials, ObjectType, Provider, SyncCursor};
use crate::ports::{
    ErrorClass, Fault, IdPage, ProviderClient, ProviderError, ProviderFactory, PulledPage, RequestStats,
};
pub use pull::{LOOKBACK, RECONCILE_EVERY, parse_action_items};

/// Fireflies' API origin (a connection's default `base_url`; the endpoint is `/graphql`).
pub const DEFAULT_API_BASE_URL: &str = "https://api.fireflies.ai";

/// The pace that keeps a connection under 60 requests in any minute: a burst of 10, then 50 a
/// minute (<https://docs.fireflies.ai/fundamentals/limits>: Business and Enterprise plans; Free
/// and Pro allow 50 a day, which a sync every 30 minutes or more keeps to).
pub fn default_pacing() -> Pacing {
    Pacing { per_second: 50.0 / 60.0, burst: 10.0, ..Pacing::default() }
}

/// What is Fireflies' own: its error body, its codes, `retryAfter`, and its pace.
#[derive(Debug)]
pub struct FirefliesDialect {
    bucket: Arc<Mutex<Bucket>>,
    pacing: Pacing,
}

fn first_error(body: &Value) -> Option<&Value> {
    body.get("errors")?.as_array()?.first()
}

fn error_code(e: &Value) -> Option<String> {
    e.get("code").or_else(|| e.pointer("/extensions/code")).and_then(Value::as_str).map(str::to_owned)
}

/// The class of a Fireflies error code (<https://docs.fireflies.ai/miscellaneous/error-codes>).
fn class_of(code: Option<&str>) -> Option<ErrorClass> {
    Some(match code? {
        "too_many_requests" => ErrorClass::RateLimited,
        "auth_failed" | "unauthenticated" | "UNAUTHENTICATED" => ErrorClass::Unauthorized,
        "object_not_found" => ErrorClass::NotFound,
        "request_timeout" => ErrorClass::Transient,
        "invalid_arguments"
        | "args_required"
        | "forbidden"
        | "paid_required"
        | "not_in_team"
        | "require_elevated_privilege"
        | "account_cancelled"
        | "GRAPHQL_VALIDATION_FAILED"
        | "GRAPHQL_PARSE_FAILED"
        | "BAD_USER_INPUT" => ErrorClass::Permanent,
        _ => return None,
    })
}

/// `extensions.metadata.retryAfter` as a wait: Fireflies names a time to come back; an epoch in
/// milliseconds or seconds is read as such, a small number as seconds to wait.
fn retry_after(e: &Value, now_ms: i64) -> Option<Duration> {
    let v = e.pointer("/extensions/metadata/retryAfter")?;
    let n = v.as_f64().or_else(|| v.as_str()?.parse().ok())?;
    let ms = if n > 1e12 {
        n - now_ms as f64
    } else if n > 1e9 {
        n * 1000.0 - now_ms as f64
    } else {
        n * 1000.0
    };
    Some(Duration::from_millis(ms.clamp(0.0, 86_400_000.0) as u64))
}

impl Dialect for FirefliesDialect {
    fn name(&self) -> &'static str {
        "Fireflies"
    }

    fn metric_label(&self) -> &'static str {
        Provider::Fireflies.as_str()
    }

    fn error_detail(&self, reply: &Reply) -> (Option<String>, Option<String>) {
        let body = reply.json_value();
        let e = body.as_ref().and_then(first_error);
        (e.and_then(error_code), e.and_then(|e| e.get("message")).and_then(Value::as_str).map(str::to_owned))
    }

    fn classify(&self, _status: StatusCode, code: Option<&str>) -> Option<ErrorClass> {
        class_of(code)
    }

    fn rate_limit_wait(&self, reply: &Reply) -> Option<Duration> {
        let body = reply.json_value()?;
        retry_after(first_error(&body)?, chrono::Utc::now().timestamp_millis())
            .or_else(|| reply.retry_after())
    }

    fn pace(&self, _route: &'static str) -> Result<Duration, ProviderError> {
        let mut bucket =
            self.bucket.lock().map_err(|_| ProviderError::transient("Fireflies pacer poisoned"))?;
        Ok(bucket.take(Instant::now(), &self.pacing))
    }
}

/// Builds [`FirefliesClient`]s; holds the shared HTTP client and one pacer per connection.
#[derive(Clone)]
pub struct FirefliesFactory {
    http: reqwest::Client,
    pacing: Pacing,
    buckets: ConnectionBuckets,
    api_base_url: Option<String>,
}

impl FirefliesFactory {
    pub fn new(http: reqwest::Client) -> Self {
        Self { http, pacing: default_pacing(), buckets: ConnectionBuckets::default(), api_base_url: None }
    }

    pub fn with_pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }

    /// `FIREFLIES_API_BASE_URL`: connections on Fireflies' own origin go here instead.
    pub fn with_api_base_url(mut self, url: Option<String>) -> Self {
        self.api_base_url = url;
        self
    }

    /// The concrete client.
    pub fn fireflies_client(&self, connection: &Connection) -> Result<FirefliesClient, ProviderError> {
        if connection.provider != Provider::Fireflies {
            return Err(ProviderError::permanent(format!(
                "the Fireflies adapter cannot serve a {} connection",
                connection.provider
            )));
        }
        let parsed = url::Url::parse(&connection.base_url)
            .map_err(|e| ProviderError::permanent(format!("invalid Fireflies base URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ProviderError::permanent("the Fireflies base URL must be http(s)"));
        }
        let bucket = self.buckets.of(connection);
        let base = match &self.api_base_url {
            Some(over) if connection.base_url.trim_end_matches('/') == DEFAULT_API_BASE_URL => over.as_str(),
            _ => connection.base_url.as_str(),
        }
        .trim_end_matches('/');
        let endpoint = if base.ends_with("/graphql") { base.to_owned() } else { format!("{base}/graphql") };
        Ok(FirefliesClient {
            net: ProviderHttp::new(
                self.http.clone(),
                FirefliesDialect { bucket, pacing: self.pacing },
                self.pacing.policy(),
            ),
            http: self.http.clone(),
            endpoint,
            deletes_asked: AtomicBool::new(false),
        })
    }
}

impl ProviderFactory for FirefliesFactory {
    fn client(&self, connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError> {
        Ok(Box::new(self.fireflies_client(connection)?))
    }
}

/// One Fireflies account seen through its API key.
pub struct FirefliesClient {
    http: reqwest::Client,
    net: ProviderHttp<FirefliesDialect>,
    /// `{base_url}/graphql`.
    endpoint: String,
    /// A webhook or a manual sync asked for a delete reconciliation.
    deletes_asked: AtomicBool,
}

impl FirefliesClient {
    /// Sends one query (a read: retried in place) and returns its `data`, or the typed error of
    /// the first of its `errors` (Fireflies may answer them with a 200).
    pub(crate) async fn query(
        &self,
        token: &SecretString,
        route: &'static str,
        query: &str,
        variables: Value,
    ) -> Result<Value, ProviderError> {
        let body = json!({ "query": query, "variables": variables });
        let reply = self
            .net
            .send(Call::read(route), || {
                self.http.post(&self.endpoint).bearer_auth(token.expose_secret()).json(&body)
            })
            .await?
            .check()?;
        let body: Value = reply.json()?;
        if let Some(e) = first_error(&body) {
            return Err(graphql_error(e, reply.status));
        }
        body.get("data").cloned().filter(|d| !d.is_null()).ok_or_else(|| {
            ProviderError::permanent(Fault::new("Fireflies answered no data").with_code("unexpected_body"))
        })
    }

    /// The API key owner's email (`user`, <https://docs.fireflies.ai/graphql-api/query/user>):
    /// what a connection's `account_id` should be, for webhooks to find it.
    pub async fn account_email(&self, token: &SecretString) -> Result<String, ProviderError> {
        let data = self.query(token, "user", "query Owner { user { user_id email } }", json!({})).await?;
        data.pointer("/user/email")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| ProviderError::permanent("Fireflies named no user for this API key"))
    }
}

/// An error of a successful answer's `errors[]`, classified as the send path classifies a
/// failed one (its code first, then its `extensions.status`).
fn graphql_error(e: &Value, status: StatusCode) -> ProviderError {
    let code = error_code(e);
    let message: String = e.get("message").and_then(Value::as_str).unwrap_or("").chars().take(300).collect();
    let status = e
        .pointer("/extensions/status")
        .and_then(Value::as_u64)
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(status);
    let class =
        class_of(code.as_deref()).or_else(|| classify_status(status)).unwrap_or(ErrorClass::Permanent);
    let mut fault = Fault::new(message).with_status(status.as_u16());
    fault.code = code;
    error_of_class(class, fault, || {
        retry_after(e, chrono::Utc::now().timestamp_millis()).unwrap_or(Duration::from_secs(60))
    })
}

#[async_trait]
impl ProviderClient for FirefliesClient {
    async fn token_account(&self, token: &SecretString) -> Result<Option<String>, ProviderError> {
        self.account_email(token).await.map(Some)
    }

    async fn pull_page(
        &self,
        token: &SecretString,
        object: ObjectType,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        if object != ObjectType::Transcripts {
            return Err(ProviderError::permanent(format!("Fireflies does not sync {object}")));
        }
        self.pull(token, cursor).await
    }

    /// Every transcript id, newest first, 50 a request (`next` is the `skip` of the next page).
    async fn live_ids(
        &self,
        token: &SecretString,
        object: ObjectType,
        after: Option<&str>,
    ) -> Result<IdPage, ProviderError> {
        if object != ObjectType::Transcripts {
            return Err(ProviderError::permanent(format!("Fireflies does not sync {object}")));
        }
        self.ids_page(token, after).await
    }

    fn check_deletes_now(&self) {
        self.deletes_asked.store(true, Ordering::Relaxed);
    }

    /// Fireflies API keys do not expire, so there is nothing to refresh.
    async fn refresh(&self, _refresh_token: &SecretString) -> Result<Credentials, ProviderError> {
        Err(ProviderError::permanent("Fireflies API keys do not expire and cannot be refreshed"))
    }

    fn stats(&self) -> RequestStats {
        self.net.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fireflies_codes_decide_the_class_whatever_the_status() {
        assert_eq!(class_of(Some("too_many_requests")), Some(ErrorClass::RateLimited));
        assert_eq!(class_of(Some("auth_failed")), Some(ErrorClass::Unauthorized));
        assert_eq!(class_of(Some("object_not_found")), Some(ErrorClass::NotFound));
        assert_eq!(class_of(Some("invalid_arguments")), Some(ErrorClass::Permanent));
        assert_eq!(class_of(Some("paid_required")), Some(ErrorClass::Permanent));
        assert_eq!(class_of(Some("something_new")), None, "left to the status table");
    }

    #[test]
    fn errors_in_a_200_answer_are_classified_by_their_code_then_their_status() {
        let e = |code: &str, status: u16| json!({ "message": "m", "code": code, "extensions": { "code": code, "status": status } });
        let ok = StatusCode::OK;
        assert!(matches!(graphql_error(&e("too_many_requests", 429), ok), ProviderError::RateLimited { .. }));
        assert!(matches!(graphql_error(&e("auth_failed", 401), ok), ProviderError::Unauthorized));
        assert!(matches!(graphql_error(&e("object_not_found", 404), ok), ProviderError::NotFound));
        let transient = graphql_error(&e("something_new", 503), ok);
        assert!(matches!(&transient, ProviderError::Transient(f) if f.status == Some(503)), "{transient:?}");
        let permanent = graphql_error(&e("invalid_arguments", 400), ok);
        assert_eq!(permanent.provider_code(), Some("invalid_arguments"));
        assert!(matches!(permanent, ProviderError::Permanent(_)));
    }

    #[test]
    fn retry_after_reads_an_epoch_in_ms_or_s_or_a_number_of_seconds() {
        let now = 1_800_000_000_000_i64;
        let e = |v: Value| json!({ "extensions": { "metadata": { "retryAfter": v } } });
        assert_eq!(retry_after(&e(json!(now + 1500)), now), Some(Duration::from_millis(1500)));
        assert_eq!(retry_after(&e(json!(now / 1000 + 2)), now), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(&e(json!(3)), now), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&e(json!(now - 10)), now), Some(Duration::ZERO), "in the past: now");
        assert_eq!(retry_after(&json!({}), now), None);
    }
}
