//! Proof of a Pub/Sub push (the Gmail webhook), as Google recommends it: the push subscription
//! signs an OIDC token and sends it as `Authorization: Bearer <JWT>`
//! (<https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions>). We check it against
//! Google's public keys (a JWKS, cached for its `Cache-Control: max-age`) and the claims the
//! subscription was configured with. The local stack runs the same check, against the keys of the
//! Gmail fake, whose push subscription signs its pushes as Pub/Sub does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::adapters::gmail::GmailConfig;
use crate::adapters::oauth::OAuthDialect;
use crate::adapters::provider_http::{Call, ProviderHttp, RetryPolicy};

/// Google's OAuth 2.0 signing keys (JWKS), which sign Pub/Sub's push tokens
/// (<https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions#validate_tokens>).
pub const GOOGLE_CERTS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
/// The `iss` of a Google-signed OIDC token: either form
/// (<https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions#validate_tokens>).
pub const GOOGLE_ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];
/// A key id missing from a cache younger than this does not refetch the keys: forged tokens with
/// made-up key ids cannot make every push a request to Google.
pub const DEFAULT_MIN_REFETCH: Duration = Duration::from_secs(60);

/// How Gmail pushes prove themselves.
#[derive(Clone, Default)]
pub enum PushAuth {
    /// Nothing configured: every push is refused.
    #[default]
    Refuse,
    /// The subscription's OIDC token (`GMAIL_PUSH_AUDIENCE`, `GMAIL_PUSH_SERVICE_ACCOUNT`).
    Oidc(Arc<OidcVerifier>),
}

impl std::fmt::Debug for PushAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushAuth::Refuse => f.write_str("Refuse"),
            PushAuth::Oidc(v) => f
                .debug_struct("Oidc")
                .field("audience", &v.audience)
                .field("service_account", &v.service_account)
                .field("jwks_url", &v.keys.url)
                .finish(),
        }
    }
}

impl PushAuth {
    /// OIDC when the audience and service account are configured, else refuse. `http` is called
    /// only for OIDC (Google's keys are the one thing fetched), so a cold start without it builds
    /// no HTTP client of its own.
    pub fn from_config<E>(
        config: &GmailConfig,
        http: impl FnOnce() -> Result<reqwest::Client, E>,
    ) -> Result<Self, E> {
        Ok(match (&config.push_audience, &config.push_service_account) {
            (Some(audience), Some(account)) => PushAuth::Oidc(Arc::new(OidcVerifier::new(
                audience.clone(),
                account.clone(),
                JwksCache::new(http()?, config.push_jwks_url.clone()),
            ))),
            _ => PushAuth::Refuse,
        })
    }

    /// Checks a push request's proof: its `Authorization` header.
    pub async fn verify(&self, parts: &http::request::Parts) -> Result<(), Refused> {
        match self {
            PushAuth::Refuse => Err(Refused::Unverified("no push authentication is configured")),
            PushAuth::Oidc(verifier) => {
                let header = parts.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                verifier.verify(header).await
            }
        }
    }
}

/// Why a push's proof was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The proof is missing or wrong (the reason is for the log only).
    Unverified(&'static str),
    /// Google's keys could not be read: the push may be genuine, so Pub/Sub should retry.
    KeysUnavailable,
}

/// The claims of a push token we check besides `aud`, `iss` and `exp`
/// (<https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions#validate_tokens>).
#[derive(Debug, Deserialize)]
struct PushClaims {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
}

/// Verifies Pub/Sub's push tokens for one subscription configuration.
pub struct OidcVerifier {
    audience: String,
    service_account: String,
    keys: JwksCache,
}

impl OidcVerifier {
    pub fn new(audience: String, service_account: String, keys: JwksCache) -> Self {
        Self { audience, service_account: service_account.to_lowercase(), keys }
    }

    /// Accepts `Authorization: Bearer <JWT>` only when the token is RS256, signed by a key of the
    /// JWKS, unexpired (jsonwebtoken's default 60 s leeway), for our audience, issued by Google,
    /// and names our service account with a verified email.
    pub async fn verify(&self, authorization: Option<&str>) -> Result<(), Refused> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refused::Unverified("no bearer token"))?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refused::Unverified("not a JWT"))?;
        // Google signs with RS256 only; anything else is refused before a key is looked up.
        if header.alg != Algorithm::RS256 {
            return Err(Refused::Unverified("not an RS256 token"));
        }
        let kid = header.kid.ok_or(Refused::Unverified("no key id"))?;
        let key = self.keys.key(&kid).await?.ok_or(Refused::Unverified("unknown key id"))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&GOOGLE_ISSUERS);
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        let data = jsonwebtoken::decode::<PushClaims>(token, &key, &validation).map_err(|e| {
            Refused::Unverified(match e.kind() {
                ErrorKind::ExpiredSignature => "expired token",
                ErrorKind::InvalidAudience => "wrong audience",
                ErrorKind::InvalidIssuer => "wrong issuer",
                ErrorKind::InvalidSignature => "bad signature",
                _ => "invalid token",
            })
        })?;
        if data.claims.email_verified != Some(true) {
            return Err(Refused::Unverified("email not verified"));
        }
        match data.claims.email {
            Some(email) if email.to_lowercase() == self.service_account => Ok(()),
            _ => Err(Refused::Unverified("wrong service account")),
        }
    }
}

/// Google's signing keys by key id, fetched at first use, kept for the answer's `max-age`, and
/// fetched again when they expire or (at most once a [`DEFAULT_MIN_REFETCH`]) when a token names a
/// key id they lack (Google rotates its keys).
pub struct JwksCache {
    http: ProviderHttp<OAuthDialect>,
    url: String,
    min_refetch: Duration,
    state: Mutex<Option<Fetched>>,
}

struct Fetched {
    keys: HashMap<String, DecodingKey>,
    at: Instant,
    expires: Instant,
}

impl JwksCache {
    pub fn new(http: reqwest::Client, url: String) -> Self {
        // A push waits on this fetch, within the webhooks function's 10 s: short attempts and one
        // retry (Pub/Sub retries a 503 anyway).
        let policy = RetryPolicy {
            request_timeout: Duration::from_secs(3),
            max_retries: 1,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(1),
            max_inline_wait: Duration::from_secs(2),
        };
        Self {
            http: ProviderHttp::new(http, OAuthDialect, policy),
            url,
            min_refetch: DEFAULT_MIN_REFETCH,
            state: Mutex::new(None),
        }
    }

    /// A cache whose unknown key ids refetch after `interval` (tests: zero).
    pub fn with_min_refetch(mut self, interval: Duration) -> Self {
        self.min_refetch = interval;
        self
    }

    /// The key with this id; `None` when the (possibly refreshed) set has no such key.
    async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, Refused> {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if let Some(cached) = state.as_ref().filter(|c| now < c.expires) {
            if let Some(key) = cached.keys.get(kid) {
                return Ok(Some(key.clone()));
            }
            if now.duration_since(cached.at) < self.min_refetch {
                return Ok(None);
            }
        }
        let fetched = self.fetch().await?;
        let key = fetched.keys.get(kid).cloned();
        *state = Some(fetched);
        Ok(key)
    }

    async fn fetch(&self) -> Result<Fetched, Refused> {
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, "the push token keys could not be read");
            Refused::KeysUnavailable
        };
        let reply = self
            .http
            .send(Call::read("google_certs"), || self.http.client().get(&self.url))
            .await
            .and_then(|r| r.check())
            .map_err(|e| unavailable(&e))?;
        let set: JwksBody = reply.json().map_err(|e| unavailable(&e))?;
        // Keys we cannot use (another type, a malformed entry) are skipped, not fatal.
        let keys: HashMap<String, DecodingKey> = set
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(&jwk).ok()?)))
            .collect();
        let at = Instant::now();
        let max_age = reply.header(http::header::CACHE_CONTROL.as_str()).map(max_age).unwrap_or_default();
        Ok(Fetched { keys, at, expires: at + max_age })
    }
}

#[derive(Deserialize)]
struct JwksBody {
    keys: Vec<serde_json::Value>,
}

/// How long an answer may be kept, from its `Cache-Control` (RFC 9111 section 5.2): `max-age`,
/// or nothing when it says `no-store` or `no-cache` or gives no age.
fn max_age(cache_control: &str) -> Duration {
    let mut age = Duration::ZERO;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Duration::ZERO;
        }
        if let Some(secs) =
            lower.strip_prefix("max-age=").and_then(|v| v.trim_matches('"').parse::<u64>().ok())
        {
            age = Duration::from_secs(secs);
        }
    }
    age
}

#[cfg(test)]
pub(super) mod tests;
