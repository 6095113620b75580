//! The one send path of every provider adapter: per-attempt timeouts, pacing hooks for the
//! provider's limits, bounded in-place retries with jittered backoff ([`crate::retry::backoff`])
//! honouring `Retry-After`, request counts, and one classification of answers into
//! [`ProviderError`] (the shared status table below, refined by each provider's [`Dialect`]).
//!
//! Contract: [`ProviderHttp::send`] returns the provider's final answer whatever its status
//! (callers that expect a 404 or a 409 look at it); [`Reply::check`] turns a non-success answer
//! into its typed error. Requests marked idempotent ([`Call::read`], or a write that carries its own
//! proof) are retried in place after a 5xx, a reset or refused connection, a timeout or a
//! truncated body, up to [`RetryPolicy::max_retries`] times; rate-limit answers are waited out in
//! place when they ask for at most [`RetryPolicy::max_inline_wait`], else returned as
//! `RateLimited` for the job to come back later. Anything else is returned at once: a permanent
//! answer is never retried blindly. Adapters keep only what is their provider's: URLs, paging,
//! mapping and the dialect (error body, codes, limits).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::DateTime;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use tracing::Instrument;

use crate::ports::{ErrorClass, Fault, ProviderError, RequestStats};
use crate::telemetry::metrics;

/// A provider's answer with its body read, and the typed error it means when it is not a success.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `Some` for a non-success answer: what [`Reply::check`] returns.
    error: Option<ProviderError>,
    provider: &'static str,
}

impl Reply {
    /// The answer as it is, or its typed error.
    pub fn check(self) -> Result<Reply, ProviderError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self),
        }
    }

    /// The typed error of a non-success answer (`None` for a success).
    pub fn error(&self) -> Option<&ProviderError> {
        self.error.as_ref()
    }

    /// Parses the body. A body cut short is `Transient` (the send path already retried it in
    /// place where it could); a complete body of the wrong shape is `Permanent`.
    pub fn json<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            if e.is_eof() {
                truncated(self.provider)
            } else {
                ProviderError::Permanent(
                    Fault::new(format!("unexpected answer from {}: {e}", self.provider))
                        .with_status(self.status.as_u16())
                        .with_code("unexpected_body")
                        .with_source(e),
                )
            }
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The provider's clock (`Date` header) in epoch milliseconds.
    pub fn provider_now(&self) -> Option<i64> {
        DateTime::parse_from_rfc2822(self.header(http::header::DATE.as_str())?)
            .ok()
            .map(|d| d.timestamp_millis())
    }

    /// `Retry-After` in seconds or as an HTTP date.
    pub fn retry_after(&self) -> Option<Duration> {
        let v = self.header(http::header::RETRY_AFTER.as_str())?.trim();
        if let Ok(secs) = v.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        let at = DateTime::parse_from_rfc2822(v).ok()?;
        Some((at.to_utc() - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO))
    }

    /// An OAuth endpoint's `error` code (RFC 6749, section 5.2: `invalid_grant`, ...).
    pub fn oauth_error(&self) -> Option<String> {
        self.json_value()?.get("error")?.as_str().map(str::to_owned)
    }

    /// A refresh-token grant's refusal in OAuth's words (RFC 6749, section 5.2): `invalid_grant`
    /// is `Unauthorized` (the grant is gone: connect again), another OAuth error on a 400 or 401
    /// `Permanent`; `None` for any other answer.
    pub fn refresh_refusal(&self, provider: &str) -> Option<ProviderError> {
        match (self.status, self.oauth_error().as_deref()) {
            (StatusCode::BAD_REQUEST, Some("invalid_grant")) => Some(ProviderError::Unauthorized),
            (StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED, Some(e)) => {
                Some(ProviderError::permanent(format!("{provider} refused the token refresh: {e}")))
            }
            _ => None,
        }
    }

    /// The body as JSON, when it is JSON.
    pub fn json_value(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// What is one provider's own in reading its answers and keeping to its limits.
pub trait Dialect: Send + Sync {
    /// The provider's name, for errors and logs.
    fn name(&self) -> &'static str;

    /// The provider's `Provider` dimension in metrics: `Provider::as_str`, or `oauth` for the
    /// connect flow's endpoints. A constant, never anything read from a request.
    fn metric_label(&self) -> &'static str;

    /// The provider's own error code and message in an error body (HubSpot `category`,
    /// Salesforce `errorCode`, Google `reason`, Graph `error.code`).
    fn error_detail(&self, reply: &Reply) -> (Option<String>, Option<String>);

    /// The class of an answer where the status alone says too little (a 403 that is a rate limit,
    /// a 400 that means an expired cursor); `None` leaves it to [`classify_status`].
    fn classify(&self, status: StatusCode, code: Option<&str>) -> Option<ErrorClass> {
        let _ = (status, code);
        None
    }

    /// How long a rate-limited answer asks to wait; `None`: back off exponentially.
    fn rate_limit_wait(&self, reply: &Reply) -> Option<Duration> {
        reply.retry_after()
    }

    /// Before each attempt of a request to `route`: how long to wait first, or an error that
    /// refuses the request (an allowance spent).
    fn pace(&self, route: &'static str) -> Result<Duration, ProviderError> {
        let _ = route;
        Ok(Duration::ZERO)
    }

    /// Sees every answer (rate-limit and usage headers).
    fn observe(&self, route: &'static str, reply: &Reply) {
        let _ = (route, reply);
    }
}

/// The shared classification table: the class of a non-success status.
/// 401 unauthorized (the worker refreshes once), 404 not found, 412 conflict (a precondition
/// failed), 429 rate limited, 408 and 5xx transient, every other 4xx permanent. A 410 is permanent
/// here (Salesforce: a retired resource); the dialects whose 410 means a lost sync state (Google
/// `fullSyncRequired`, Graph delta) make it `CursorExpired`.
pub fn classify_status(status: StatusCode) -> Option<ErrorClass> {
    Some(match status.as_u16() {
        100..=399 => return None,
        401 => ErrorClass::Unauthorized,
        404 => ErrorClass::NotFound,
        412 => ErrorClass::Conflict,
        429 => ErrorClass::RateLimited,
        408 | 500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    })
}

/// How a client retries in place.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Each attempt's limit, connection to last byte.
    pub request_timeout: Duration,
    /// Retries of one request in place (so at most `max_retries + 1` attempts).
    pub max_retries: u32,
    /// Backoff between transient failures (see [`crate::retry::backoff`]).
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// The longest wait (rate limit or pacing) taken in place; a longer one is returned as
    /// `RateLimited` so that the job comes back instead of sleeping in a Lambda.
    pub max_inline_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_retries: 4,
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(8),
            max_inline_wait: Duration::from_secs(15),
        }
    }
}

/// One request's route (for pacing, counts and traces) and whether repeating it is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub route: &'static str,
    pub idempotent: bool,
}

impl Call {
    /// A read: retried in place.
    pub const fn read(route: &'static str) -> Self {
        Self { route, idempotent: true }
    }

    /// A write without its own proof of idempotency: never repeated in place (the job retries it
    /// after looking up what the first attempt did).
    pub const fn write(route: &'static str) -> Self {
        Self { route, idempotent: false }
    }

    /// A write that may be repeated (it carries its own idempotency proof, or repeating it changes
    /// nothing).
    pub const fn idempotent_write(route: &'static str) -> Self {
        Self { route, idempotent: true }
    }
}

/// A provider's HTTP client: the shared send path around `reqwest`, with the provider's dialect.
#[derive(Debug)]
pub struct ProviderHttp<D> {
    http: reqwest::Client,
    pub dialect: D,
    pub policy: RetryPolicy,
    requests: AtomicU64,
    rate_limited: AtomicU64,
    retried: AtomicU64,
}

/// A copy with its own counters (starting at zero).
impl<D: Dialect + Clone> Clone for ProviderHttp<D> {
    fn clone(&self) -> Self {
        Self::new(self.http.clone(), self.dialect.clone(), self.policy)
    }
}

impl<D: Dialect> ProviderHttp<D> {
    pub fn new(http: reqwest::Client, dialect: D, policy: RetryPolicy) -> Self {
        Self {
            http,
            dialect,
            policy,
            requests: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            retried: AtomicU64::new(0),
        }
    }

    /// The `reqwest` client, to build requests with.
    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    /// Requests sent (every attempt counts) and rate-limit answers received.
    pub fn stats(&self) -> RequestStats {
        RequestStats {
            requests: self.requests.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
        }
    }

    /// Attempts retried in place.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    /// Sends the request `make` builds (called again for each attempt) and returns the final
    /// answer; see the module documentation for what is retried.
    pub async fn send(
        &self,
        call: Call,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply, ProviderError> {
        let name = self.dialect.name();
        let mut attempt: u32 = 0;
        loop {
            let wait = self.dialect.pace(call.route)?;
            if wait > self.policy.max_inline_wait {
                self.rate_limited.fetch_add(1, Ordering::Relaxed);
                return Err(ProviderError::RateLimited { retry_after: wait });
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            metrics::provider_request(self.dialect.metric_label());
            let span = tracing::info_span!(
                "provider_request",
                provider = name,
                route = call.route,
                method = tracing::field::Empty,
                attempt,
                status = tracing::field::Empty,
                ms = tracing::field::Empty,
            );
            let started = Instant::now();
            let outcome = self.attempt(&make).instrument(span.clone()).await;
            let ms = started.elapsed().as_millis() as u64;
            span.record("ms", ms);
            let (error, asked_wait) = match outcome {
                Ok(reply) => {
                    span.record("status", reply.status.as_u16());
                    self.dialect.observe(call.route, &reply);
                    tracing::debug!(
                        provider = name,
                        route = call.route,
                        status = reply.status.as_u16(),
                        attempt,
                        ms,
                        "provider request"
                    );
                    match reply.error() {
                        Some(ProviderError::RateLimited { .. }) => {
                            self.rate_limited.fetch_add(1, Ordering::Relaxed);
                            metrics::provider_rate_limited(self.dialect.metric_label());
                            let asked = self.dialect.rate_limit_wait(&reply);
                            let wait = asked.unwrap_or_else(|| self.backoff(attempt));
                            (ProviderError::RateLimited { retry_after: wait }, Some(wait))
                        }
                        Some(e @ ProviderError::Transient(_)) => (e.clone(), reply.retry_after()),
                        _ => return Ok(reply),
                    }
                }
                Err(e) => {
                    tracing::debug!(provider = name, route = call.route, attempt, ms, error = %e, "provider request failed");
                    (e, None)
                }
            };
            let retry = match &error {
                ProviderError::RateLimited { retry_after } => {
                    (*retry_after <= self.policy.max_inline_wait).then_some(*retry_after)
                }
                ProviderError::Transient(_) if call.idempotent => {
                    Some(asked_wait.unwrap_or_else(|| self.backoff(attempt)).min(self.policy.max_inline_wait))
                }
                _ => None,
            };
            match retry {
                Some(wait) if attempt < self.policy.max_retries => {
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        provider = name,
                        route = call.route,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        class = error.class().as_str(),
                        code = error.provider_code().unwrap_or_default(),
                        "retrying a provider request in place"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                _ => return Err(error),
            }
        }
    }

    /// The OAuth refresh-token grant (RFC 6749, section 6) at `url`, with the provider's `extra`
    /// form fields; the answer as it came (each provider words its refusals its own way). Never
    /// repeated in place: a provider that rotates refresh tokens may have spent the old one.
    pub async fn refresh_grant(
        &self,
        url: &str,
        app: &crate::config::OAuthApp,
        refresh_token: &secrecy::SecretString,
        extra: &[(&str, &str)],
    ) -> Result<Reply, ProviderError> {
        use secrecy::ExposeSecret;
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.expose_secret()),
            ("refresh_token", refresh_token.expose_secret()),
        ];
        form.extend_from_slice(extra);
        self.send(Call::write("token"), || self.http.post(url).form(&form)).await
    }

    fn backoff(&self, attempt: u32) -> Duration {
        crate::retry::backoff(self.policy.backoff_base, self.policy.backoff_cap, attempt)
    }

    /// One attempt: the answer with its body, classified; transport failures are `Transient`.
    async fn attempt(&self, make: &impl Fn() -> reqwest::RequestBuilder) -> Result<Reply, ProviderError> {
        let name = self.dialect.name();
        let request =
            make().timeout(self.policy.request_timeout).build().map_err(|e| transport_error(name, e))?;
        tracing::Span::current().record("method", request.method().as_str());
        let resp = self.http.execute(request).await.map_err(|e| transport_error(name, e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| transport_error(name, e))?;
        let mut reply = Reply { status, headers, body, error: None, provider: name };
        if status.is_success() {
            // A JSON answer cut short (a dropped connection the server did not announce): retry.
            if is_json(&reply.headers)
                && !reply.body.is_empty()
                && serde_json::from_slice::<serde::de::IgnoredAny>(&reply.body).is_err_and(|e| e.is_eof())
            {
                return Err(truncated(name));
            }
            return Ok(reply);
        }
        reply.error = Some(self.typed_error(&reply));
        Ok(reply)
    }

    /// The typed error of a non-success answer: the dialect's class, else the shared table's.
    fn typed_error(&self, reply: &Reply) -> ProviderError {
        let (code, message) = self.dialect.error_detail(reply);
        let class = self
            .dialect
            .classify(reply.status, code.as_deref())
            .or_else(|| classify_status(reply.status))
            .unwrap_or(ErrorClass::Permanent);
        let mut fault =
            Fault::new(bounded(message.as_deref().unwrap_or(""))).with_status(reply.status.as_u16());
        fault.code = code;
        let wait = || self.dialect.rate_limit_wait(reply).unwrap_or(Duration::from_secs(10));
        error_of_class(class, fault, wait)
    }
}

/// The typed error of an answer of `class` (`fault` for the open-ended classes, `wait` for a rate
/// limit): for adapters that find errors in a successful answer's body too (GraphQL's `errors`).
pub fn error_of_class(class: ErrorClass, fault: Fault, wait: impl FnOnce() -> Duration) -> ProviderError {
    match class {
        ErrorClass::Transient => ProviderError::Transient(fault),
        ErrorClass::Permanent => ProviderError::Permanent(fault),
        ErrorClass::RateLimited => ProviderError::RateLimited { retry_after: wait() },
        ErrorClass::Unauthorized => ProviderError::Unauthorized,
        ErrorClass::NotFound => ProviderError::NotFound,
        ErrorClass::Conflict => ProviderError::Conflict,
        ErrorClass::CursorExpired => ProviderError::CursorExpired,
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"))
}

/// At most 300 characters of a provider's message.
fn bounded(message: &str) -> String {
    message.chars().take(300).collect()
}

fn truncated(provider: &str) -> ProviderError {
    ProviderError::Transient(
        Fault::new(format!("the answer from {provider} was cut short")).with_code("truncated_body"),
    )
}

/// A transport failure: `Transient`, with our code for its kind. The URL is dropped from the
/// cause (it can carry a token: HubSpot's access-token info path).
fn transport_error(provider: &str, e: reqwest::Error) -> ProviderError {
    let e = e.without_url();
    let code = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "truncated_body"
    } else {
        "connection"
    };
    ProviderError::Transient(
        Fault::new(format!("request to {provider} failed ({code}): {e}")).with_code(code).with_source(e),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_table_classifies_every_status_family() {
        let class = |s: u16| classify_status(StatusCode::from_u16(s).unwrap_or(StatusCode::IM_A_TEAPOT));
        assert_eq!(class(200), None);
        assert_eq!(class(304), None);
        assert_eq!(class(400), Some(ErrorClass::Permanent));
        assert_eq!(class(401), Some(ErrorClass::Unauthorized));
        assert_eq!(class(403), Some(ErrorClass::Permanent));
        assert_eq!(class(404), Some(ErrorClass::NotFound));
        assert_eq!(class(408), Some(ErrorClass::Transient));
        assert_eq!(class(409), Some(ErrorClass::Permanent));
        assert_eq!(class(410), Some(ErrorClass::Permanent));
        assert_eq!(class(412), Some(ErrorClass::Conflict));
        assert_eq!(class(429), Some(ErrorClass::RateLimited));
        for s in [500, 502, 503, 504] {
            assert_eq!(class(s), Some(ErrorClass::Transient), "{s}");
        }
    }

    #[test]
    fn no_provider_adapter_sends_a_request_except_through_this_path() {
        // Every file of every provider folder (a file added later is checked too) and the OAuth flow.
        let adapters = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/adapters");
        let mut files = vec![adapters.join("oauth.rs")];
        for provider in ["hubspot", "salesforce", "google", "graph", "notion", "fireflies"] {
            let dir = std::fs::read_dir(adapters.join(provider)).expect("a provider folder");
            files.extend(
                dir.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "rs")),
            );
        }
        assert!(files.len() >= 16, "{files:?}");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable source");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                assert!(
                    !code.contains(".send()")
                        && !code.contains("reqwest::get(")
                        && !code.contains(".execute("),
                    "{}:{} sends a request around the shared send path: {line}",
                    file.display(),
                    n + 1
                );
            }
        }
    }

    #[test]
    fn calls_say_whether_they_may_be_repeated() {
        assert!(Call::read("list").idempotent);
        assert!(!Call::write("create").idempotent);
        assert!(Call::idempotent_write("archive").idempotent);
    }
}
