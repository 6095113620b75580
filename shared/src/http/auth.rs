//! Who is calling: the [`Caller`] extractor reads the tenant only from the verified identity that
//! API Gateway's JWT authorizer puts in the request context, never from the path or body.
//! [`DevKey`] signs and verifies local-development tokens and builds that same context, so the
//! local gateway serves the very router that runs in Lambda.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use lambda_http::RequestExt as _;
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerJwtDescription, ApiGatewayV2httpRequestContext,
};
use lambda_http::request::RequestContext;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::problem::ApiError;
use crate::domain::TenantId;

/// The claim that names the tenant unless configured otherwise.
pub const DEFAULT_TENANT_CLAIM: &str = "tenant_id";
/// The issuer of local-development tokens.
pub const DEV_ISSUER: &str = "syncbridge-local";
/// The audience of local-development tokens.
pub const DEV_AUDIENCE: &str = "syncbridge";
/// The shortest HS256 secret [`DevKey`] accepts, in bytes.
pub const MIN_DEV_SECRET_LEN: usize = 32;

/// The name of the JWT claim holding the tenant id; extracted from the router state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantClaim(pub String);

impl Default for TenantClaim {
    fn default() -> Self {
        Self(DEFAULT_TENANT_CLAIM.to_owned())
    }
}

/// The verified caller of an API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    /// The token's `sub`: who acted, for the audit log (`user:<subject>`).
    pub subject: String,
}

/// Why a request has no usable identity. Never carries token material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the request has no API Gateway v2 request context")]
    NoContext,
    #[error("the request context has no JWT authorizer claims")]
    NoClaims,
    #[error("the verified claims lack '{0}'")]
    MissingClaim(String),
    #[error("the tenant claim is not a valid tenant id")]
    InvalidTenant,
}

impl Caller {
    /// The caller named by the JWT authorizer claims in `context`: the tenant from the claim named
    /// `tenant_claim`, the subject from `sub` (both required and non-empty).
    pub fn from_context(context: &RequestContext, tenant_claim: &str) -> Result<Self, AuthError> {
        #[allow(unreachable_patterns)]
        let gateway = match context {
            RequestContext::ApiGatewayV2(gateway) => gateway,
            _ => return Err(AuthError::NoContext),
        };
        let claims = gateway
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .map(|jwt| &jwt.claims)
            .ok_or(AuthError::NoClaims)?;
        let claim = |name: &str| {
            claims
                .get(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| AuthError::MissingClaim(name.to_owned()))
        };
        let tenant = TenantId::parse(claim(tenant_claim)?.as_str()).map_err(|_| AuthError::InvalidTenant)?;
        let subject = claim("sub")?.clone();
        Ok(Caller { tenant, subject })
    }
}

impl<S> FromRequestParts<S> for Caller
where
    TenantClaim: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let TenantClaim(claim) = TenantClaim::from_ref(state);
        let context = parts.extensions.request_context_ref().ok_or(AuthError::NoContext);
        context.and_then(|c| Caller::from_context(c, &claim)).map_err(|reason| {
            tracing::info!(%reason, "request rejected: no usable identity");
            ApiError::Unauthorized
        })
    }
}

/// A verified token's claims, as JSON values.
pub type Claims = serde_json::Map<String, Value>;

/// Why a local-development token could not be made or was rejected.
#[derive(Debug, thiserror::Error)]
pub enum DevKeyError {
    #[error("the dev signing secret must be at least {MIN_DEV_SECRET_LEN} bytes")]
    WeakSecret,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid")]
    Invalid(#[source] jsonwebtoken::errors::Error),
}

/// The HS256 key that signs local-development tokens (issuer [`DEV_ISSUER`], audience
/// [`DEV_AUDIENCE`]), standing in for the identity provider API Gateway trusts in AWS.
#[derive(Clone)]
pub struct DevKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    tenant_claim: String,
}

impl std::fmt::Debug for DevKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevKey").field("tenant_claim", &self.tenant_claim).finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

impl DevKey {
    /// A key from a secret of at least [`MIN_DEV_SECRET_LEN`] bytes; tokens carry the tenant in
    /// [`DEFAULT_TENANT_CLAIM`].
    pub fn new(secret: &SecretString) -> Result<Self, DevKeyError> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_DEV_SECRET_LEN {
            return Err(DevKeyError::WeakSecret);
        }
        Ok(Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            tenant_claim: DEFAULT_TENANT_CLAIM.to_owned(),
        })
    }

    /// Puts the tenant in claim `claim` instead (it must match the API's configured claim).
    pub fn with_tenant_claim(mut self, claim: impl Into<String>) -> Self {
        self.tenant_claim = claim.into();
        self
    }

    /// A token for `subject` of `tenant`, valid for `ttl` from now.
    pub fn sign(&self, tenant: &TenantId, subject: &str, ttl: Duration) -> String {
        let now = unix_now();
        self.sign_claims(tenant, subject, now, now.saturating_add(ttl.as_secs()), DEV_AUDIENCE)
    }

    fn sign_claims(&self, tenant: &TenantId, subject: &str, iat: u64, exp: u64, aud: &str) -> String {
        let mut claims = Claims::new();
        claims.insert("iss".into(), DEV_ISSUER.into());
        claims.insert("aud".into(), aud.into());
        claims.insert("sub".into(), subject.into());
        claims.insert("iat".into(), iat.into());
        claims.insert("exp".into(), exp.into());
        claims.insert(self.tenant_claim.clone(), tenant.as_str().into());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of a JSON object with an HMAC key cannot fail")
    }

    /// The claims of `token` if it is signed by this key, unexpired (60 s leeway), and issued by
    /// [`DEV_ISSUER`] for [`DEV_AUDIENCE`] — the checks API Gateway's JWT authorizer makes.
    pub fn verify(&self, token: &str) -> Result<Claims, DevKeyError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[DEV_ISSUER]);
        validation.set_audience(&[DEV_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map(|data| data.claims).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => DevKeyError::Expired,
                _ => DevKeyError::Invalid(e),
            },
        )
    }
}

/// A claim value as API Gateway's JWT authorizer renders it: strings as they are, numbers and
/// booleans in JSON notation, arrays as `[a b c]`, objects as JSON.
fn gateway_claim_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(gateway_claim_value).collect();
            format!("[{}]", items.join(" "))
        }
        other => other.to_string(),
    }
}

/// The request context API Gateway (HTTP API, JWT authorizer) attaches to a request whose token
/// had these verified claims: `authorizer.jwt.claims` (claim -> string) and `scopes` (from `scope`
/// or `scp`). The `http` part keeps its defaults; see [`gateway_context_for_request`].
pub fn gateway_context(claims: &Claims) -> RequestContext {
    let mut jwt = ApiGatewayRequestAuthorizerJwtDescription::default();
    jwt.claims = claims.iter().map(|(k, v)| (k.clone(), gateway_claim_value(v))).collect::<HashMap<_, _>>();
    jwt.scopes = claims.get("scope").or_else(|| claims.get("scp")).map(|s| match s {
        Value::Array(items) => items.iter().map(gateway_claim_value).collect(),
        other => gateway_claim_value(other).split_whitespace().map(str::to_owned).collect(),
    });
    let mut authorizer = ApiGatewayRequestAuthorizer::default();
    authorizer.jwt = Some(jwt);
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.authorizer = Some(authorizer);
    context.route_key = Some("$default".into());
    context.stage = Some("$default".into());
    context.request_id = Some(ulid::Ulid::new().to_string());
    context.time_epoch = chrono::Utc::now().timestamp_millis();
    RequestContext::ApiGatewayV2(context)
}

/// [`gateway_context`] with the `http` part (method, path, source ip) of the request filled in.
pub fn gateway_context_for_request(
    claims: &Claims,
    method: &http::Method,
    path: &str,
    source_ip: Option<&str>,
) -> RequestContext {
    let mut context = gateway_context(claims);
    #[allow(irrefutable_let_patterns)]
    if let RequestContext::ApiGatewayV2(gateway) = &mut context {
        gateway.http.method = method.clone();
        gateway.http.path = Some(path.to_owned());
        gateway.http.protocol = Some("HTTP/1.1".into());
        gateway.http.source_ip = source_ip.map(str::to_owned);
    }
    context
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt as _;

    fn key() -> DevKey {
        DevKey::new(&SecretString::from("0123456789abcdef0123456789abcdef")).unwrap()
    }

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn app() -> Router {
        Router::new()
            .route(
                "/whoami",
                get(|caller: Caller| async move { format!("{}|{}", caller.tenant, caller.subject) }),
            )
            .with_state(TenantClaim::default())
    }

    #[tokio::test]
    async fn a_valid_token_becomes_a_context_that_yields_its_tenant() {
        let claims = key().verify(&key().sign(&acme(), "alice", Duration::from_secs(300))).unwrap();
        let request = Request::get("/whoami")
            .body(Body::empty())
            .unwrap()
            .with_request_context(gateway_context(&claims));
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
        assert_eq!(&body[..], b"acme|alice");
    }

    #[tokio::test]
    async fn a_request_without_context_is_401_problem() {
        let response = app().oneshot(Request::get("/whoami").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["content-type"], "application/problem+json");
    }

    #[test]
    fn expired_tokens_are_rejected() {
        let now = unix_now();
        let token = key().sign_claims(&acme(), "alice", now - 7200, now - 3600, DEV_AUDIENCE);
        assert!(matches!(key().verify(&token), Err(DevKeyError::Expired)));
    }

    #[test]
    fn forged_tokens_are_rejected() {
        let other = DevKey::new(&SecretString::from("ffffffffffffffffffffffffffffffff")).unwrap();
        let token = other.sign(&acme(), "mallory", Duration::from_secs(300));
        assert!(matches!(key().verify(&token), Err(DevKeyError::Invalid(_))));
        let genuine = key().sign(&acme(), "alice", Duration::from_secs(300));
        let mut parts: Vec<&str> = genuine.split('.').collect();
        let evil_payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"iss":"syncbridge-local","aud":"syncbridge","sub":"m","exp":9999999999,"tenant_id":"victim"}"#,
        );
        parts[1] = &evil_payload;
        assert!(key().verify(&parts.join(".")).is_err());
    }

    #[test]
    fn tokens_for_another_audience_are_rejected() {
        let now = unix_now();
        let token = key().sign_claims(&acme(), "alice", now, now + 300, "someone-else");
        assert!(matches!(key().verify(&token), Err(DevKeyError::Invalid(_))));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(DevKey::new(&SecretString::from("short")), Err(DevKeyError::WeakSecret)));
    }

    #[test]
    fn context_claims_are_strings_as_api_gateway_renders_them() {
        let claims = key().verify(&key().sign(&acme(), "alice", Duration::from_secs(60))).unwrap();
        let RequestContext::ApiGatewayV2(context) = gateway_context(&claims) else {
            panic!("not an HTTP API context")
        };
        let jwt = context.authorizer.and_then(|a| a.jwt).unwrap();
        assert_eq!(jwt.claims["tenant_id"], "acme");
        assert_eq!(jwt.claims["iss"], DEV_ISSUER);
        assert!(jwt.claims["exp"].parse::<u64>().is_ok());
    }

    #[test]
    fn missing_or_invalid_tenant_claims_give_no_caller() {
        let mut claims = Claims::new();
        claims.insert("sub".into(), "alice".into());
        assert_eq!(
            Caller::from_context(&gateway_context(&claims), "tenant_id"),
            Err(AuthError::MissingClaim("tenant_id".into()))
        );
        claims.insert("tenant_id".into(), "a#b".into());
        assert_eq!(
            Caller::from_context(&gateway_context(&claims), "tenant_id"),
            Err(AuthError::InvalidTenant)
        );
        claims.insert("org".into(), "acme".into());
        assert_eq!(Caller::from_context(&gateway_context(&claims), "org").map(|c| c.tenant), Ok(acme()));
    }
}
