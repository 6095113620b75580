//! The authorization-code half of OAuth 2.0 that every fake shares (RFC 6749 §4.1, RFC 7636).
//!
//! The authorize endpoint shows a browser (a request that accepts `text/html`) a consent page
//! whose buttons allow or decline, as the providers' own pages do; a program (no `text/html`)
//! consents at once. Either way it redirects to `redirect_uri` with a `code` and the caller's
//! `state` (or with `error=access_denied` when the user declines, or an admin said they will). A code is single use, expires after 10 minutes, and is bound to the client id, the
//! redirect URI and, when one was sent, the PKCE `S256` challenge, which the token endpoint checks
//! (the fakes' token handlers call [`CodeGrants::redeem`]).
//!
//! Google's accounts (the Calendar, Gmail and Drive fakes) share more: one token table
//! ([`GoogleTokens`]) and one set of endpoints (`/token`, `/o/oauth2/v2/auth`, `/revoke`, and the
//! admin `/_admin/tokens` routes), mounted with [`google_router`] by a state that implements
//! [`GoogleAccount`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, FromRef, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long an authorization code may wait for its exchange.
pub const CODE_TTL: Duration = Duration::from_secs(600);

/// The authorize request's query string.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub state: Option<String>,
    pub scope: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    /// The consent page's answer: `allow` or `deny` (absent: the page is shown to a browser).
    pub consent: Option<String>,
}

#[derive(Debug)]
struct PendingCode {
    client_id: String,
    redirect_uri: String,
    challenge: Option<String>,
    issued: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    codes: HashMap<String, PendingCode>,
    /// The next authorizations are declined by the "user".
    deny: bool,
    /// Authorizations granted (codes issued) and exchanged, for tests.
    issued: u64,
    redeemed: u64,
}

/// Why a code exchange is refused: the OAuth error code to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// Unknown, used, expired code; another client or redirect URI; a wrong PKCE verifier.
    InvalidGrant,
}

/// Issued authorization codes of one fake.
#[derive(Debug, Default)]
pub struct CodeGrants {
    inner: Mutex<Inner>,
}

fn random(prefix: &str) -> String {
    let mut rng = rand::rng();
    format!("{prefix}-{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>())
}

/// `redirect_uri` with `params` added to its query string.
fn redirect_to(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return (StatusCode::BAD_REQUEST, "redirect_uri is not a URL").into_response();
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    (StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()
}

/// A page like the providers' own: what the app asks for, and two buttons that send the same
/// request back with the user's answer.
fn consent_page(params: &AuthorizeParams, app: &str) -> Response {
    let hidden: String = [
        ("response_type", &params.response_type),
        ("client_id", &params.client_id),
        ("redirect_uri", &params.redirect_uri),
        ("state", &params.state),
        ("scope", &params.scope),
        ("code_challenge", &params.code_challenge),
        ("code_challenge_method", &params.code_challenge_method),
    ]
    .iter()
    .filter_map(|(k, v)| {
        v.as_deref().map(|v| format!(r#"<input type="hidden" name="{k}" value="{}">"#, escape(v)))
    })
    .collect();
    let scopes: String = params
        .scope
        .as_deref()
        .unwrap_or_default()
        .split([' ', '+'])
        .filter(|s| !s.is_empty())
        .map(|s| format!("<li>{}</li>", escape(s)))
        .collect();
    let app = escape(app);
    let page = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Connect to {app}</title></head>
<body><main><h1>Connect Syncbridge to your {app} account</h1><p>Syncbridge asks for:</p><ul>{scopes}</ul>
<form method="get"><input type="hidden" name="consent" value="allow">{hidden}<button type="submit">Connect app</button></form>
<form method="get"><input type="hidden" name="consent" value="deny">{hidden}<button type="submit">Cancel</button></form>
</main></body></html>"#
    );
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

impl CodeGrants {
    /// The provider's consent page for a browser, the user's answer from it, or (for a program) an
    /// immediate consent. `app` names the provider on the page.
    pub fn consent(
        &self,
        headers: &HeaderMap,
        params: &AuthorizeParams,
        client_id: &str,
        app: &str,
    ) -> Response {
        let wants_page = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"));
        let valid = params.redirect_uri.is_some() && params.client_id.as_deref() == Some(client_id);
        match params.consent.as_deref() {
            Some("deny") if valid => {
                let state = params.state.clone().unwrap_or_default();
                redirect_to(
                    params.redirect_uri.as_deref().unwrap_or_default(),
                    &[
                        ("error", "access_denied"),
                        ("error_description", "The user denied access"),
                        ("state", &state),
                    ],
                )
            }
            None if wants_page && valid => consent_page(params, app),
            _ => self.authorize(params, client_id),
        }
    }

    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the next authorizations decline (`error=access_denied`) until set back.
    pub fn set_deny(&self, deny: bool) {
        self.lock().deny = deny;
    }

    /// (codes issued, codes exchanged) so far.
    pub fn counts(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.issued, inner.redeemed)
    }

    /// The authorize endpoint: for the app `client_id`, redirect with a fresh code and the state
    /// (or `access_denied`). A request the provider would refuse to redirect (unknown client, no
    /// redirect URI) is a 400 page, as at the providers.
    pub fn authorize(&self, params: &AuthorizeParams, client_id: &str) -> Response {
        let Some(redirect_uri) = params.redirect_uri.as_deref() else {
            return (StatusCode::BAD_REQUEST, "redirect_uri is missing").into_response();
        };
        if params.client_id.as_deref() != Some(client_id) {
            return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
        }
        let state = params.state.clone().unwrap_or_default();
        if params.response_type.as_deref().is_some_and(|t| t != "code") {
            return redirect_to(redirect_uri, &[("error", "unsupported_response_type"), ("state", &state)]);
        }
        if params.code_challenge.is_some() && params.code_challenge_method.as_deref() != Some("S256") {
            return redirect_to(redirect_uri, &[("error", "invalid_request"), ("state", &state)]);
        }
        let mut inner = self.lock();
        if inner.deny {
            drop(inner);
            return redirect_to(
                redirect_uri,
                &[
                    ("error", "access_denied"),
                    ("error_description", "The user denied access"),
                    ("state", &state),
                ],
            );
        }
        let code = random("code");
        inner.codes.insert(
            code.clone(),
            PendingCode {
                client_id: client_id.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                challenge: params.code_challenge.clone(),
                issued: Instant::now(),
            },
        );
        inner.issued += 1;
        drop(inner);
        redirect_to(redirect_uri, &[("code", &code), ("state", &state)])
    }

    /// Redeems `code` once: it must have been issued to `client_id` for `redirect_uri` less than
    /// [`CODE_TTL`] ago, and `verifier` must match its PKCE challenge when it had one. The code is
    /// gone afterwards, whatever the outcome.
    pub fn redeem(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
    ) -> Result<(), GrantError> {
        let mut inner = self.lock();
        let pending = inner.codes.remove(code).ok_or(GrantError::InvalidGrant)?;
        if pending.client_id != client_id
            || pending.redirect_uri != redirect_uri
            || pending.issued.elapsed() > CODE_TTL
        {
            return Err(GrantError::InvalidGrant);
        }
        if let Some(challenge) = &pending.challenge {
            let Some(verifier) = verifier else {
                return Err(GrantError::InvalidGrant);
            };
            if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != *challenge {
                return Err(GrantError::InvalidGrant);
            }
        }
        inner.redeemed += 1;
        Ok(())
    }
}

/// Google's access-token lifetime as its token endpoint reports it.
pub const GOOGLE_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(3599);

/// Which of Google's OAuth endpoints a request is for (a fake maps it to its own fault route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoogleEndpoint {
    Token,
    Authorize,
    Revoke,
}

#[derive(Debug)]
struct GoogleGrant {
    /// `None`: never expires (a fake's static token).
    expires: Option<Instant>,
    scopes: Vec<String>,
}

#[derive(Debug, Default)]
struct TokenTable {
    access: HashMap<String, GoogleGrant>,
    /// Refresh token -> the scopes its grant carries.
    refresh: HashMap<String, Vec<String>>,
}

/// An access token issued by a Google fake, with the refresh token that renews it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    /// The granted scopes, space-separated.
    pub scope: String,
}

/// The access and refresh tokens of one Google account (the Calendar, Gmail and Drive fakes).
#[derive(Debug, Default)]
pub struct GoogleTokens {
    table: Mutex<TokenTable>,
}

impl GoogleTokens {
    /// A table holding `static_token` (never expires) with `scopes`, when given.
    pub fn new(static_token: Option<&str>, scopes: &[String]) -> Self {
        let tokens = Self::default();
        if let Some(t) = static_token {
            tokens.lock().access.insert(t.to_owned(), GoogleGrant { expires: None, scopes: scopes.to_vec() });
        }
        tokens
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TokenTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues an access token with `scopes` (lifetime `ttl`, default Google's 3599 s) and a
    /// refresh token that renews it with the same scopes.
    pub fn issue(&self, scopes: &[String], ttl: Option<Duration>) -> IssuedToken {
        let ttl = ttl.unwrap_or(GOOGLE_ACCESS_TOKEN_TTL);
        let access = random("ya29.a0");
        let refresh = random("1//0g");
        let mut table = self.lock();
        table.access.insert(
            access.clone(),
            GoogleGrant { expires: Some(Instant::now() + ttl), scopes: scopes.to_vec() },
        );
        table.refresh.insert(refresh.clone(), scopes.to_vec());
        IssuedToken {
            access_token: access,
            refresh_token: refresh,
            expires_in: ttl.as_secs(),
            scope: scopes.join(" "),
        }
    }

    /// A new access token for a known refresh token, with its grant's scopes (Google keeps the
    /// refresh token valid and does not return it again).
    pub fn refresh(&self, refresh_token: &str) -> Option<(String, Vec<String>)> {
        let mut table = self.lock();
        let scopes = table.refresh.get(refresh_token)?.clone();
        let access = random("ya29.a0");
        let grant =
            GoogleGrant { expires: Some(Instant::now() + GOOGLE_ACCESS_TOKEN_TTL), scopes: scopes.clone() };
        table.access.insert(access.clone(), grant);
        Some((access, scopes))
    }

    /// Makes an access token expired now; `false` if unknown.
    pub fn expire(&self, access_token: &str) -> bool {
        match self.lock().access.get_mut(access_token) {
            Some(g) => {
                g.expires = Some(Instant::now());
                true
            }
            None => false,
        }
    }

    /// Revokes a refresh token; `false` if unknown.
    pub fn revoke_refresh(&self, refresh_token: &str) -> bool {
        self.lock().refresh.remove(refresh_token).is_some()
    }

    /// `POST /revoke`: a refresh token (it stops refreshing) or an access token (it stops
    /// working); `false` if unknown.
    pub fn revoke(&self, token: &str) -> bool {
        let mut table = self.lock();
        table.refresh.remove(token).is_some() || table.access.remove(token).is_some()
    }

    /// The scopes of a live (known, unexpired) access token.
    pub fn scopes(&self, bearer: &str) -> Option<Vec<String>> {
        let table = self.lock();
        let grant = table.access.get(bearer)?;
        grant.expires.is_none_or(|at| at > Instant::now()).then(|| grant.scopes.clone())
    }
}

/// One Google fake's OAuth side: its client, what a consent grants, its codes and tokens.
#[derive(Debug)]
pub struct GoogleOAuth {
    pub codes: CodeGrants,
    pub tokens: GoogleTokens,
    client_id: String,
    client_secret: String,
    /// The scopes a consent (and `/_admin/tokens` without `scopes`) grants.
    granted: Vec<String>,
}

impl GoogleOAuth {
    /// The OAuth side of a fake whose app is `client_id`/`client_secret`, whose consent grants
    /// `granted`, and which accepts `static_token` (never expires) with `static_scopes`.
    pub fn new(
        (client_id, client_secret): (&str, &str),
        granted: Vec<String>,
        static_token: Option<&str>,
        static_scopes: &[String],
    ) -> Self {
        Self {
            codes: CodeGrants::new(),
            tokens: GoogleTokens::new(static_token, static_scopes),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            granted,
        }
    }
}

/// A fake of a Google API as its OAuth endpoints see it. The fake's router state implements
/// this and merges [`google_router`]: `/token`, `/o/oauth2/v2/auth`, `/revoke`, and the admin
/// routes `POST /_admin/tokens` `{"ttl_secs"?, "scopes"?}` and `POST /_admin/tokens/expire`
/// `{"access_token"}`.
pub trait GoogleAccount: crate::admin::Admin {
    /// The product named on the consent page ("Google", "Gmail", "Google Drive").
    const PRODUCT: &'static str;

    fn google(&self) -> &GoogleOAuth;
    /// Counts a request to an OAuth endpoint and answers its injected fault, if any.
    fn fault(&self, endpoint: GoogleEndpoint) -> impl Future<Output = Option<Response>> + Send;
    /// The fake's 404 for `/_admin/tokens/expire` with an unknown token.
    fn unknown_token() -> Response;
}

impl<T: GoogleAccount> GoogleAccount for std::sync::Arc<T> {
    const PRODUCT: &'static str = T::PRODUCT;

    fn google(&self) -> &GoogleOAuth {
        (**self).google()
    }
    fn fault(&self, endpoint: GoogleEndpoint) -> impl Future<Output = Option<Response>> + Send {
        (**self).fault(endpoint)
    }
    fn unknown_token() -> Response {
        T::unknown_token()
    }
}

/// Google's OAuth endpoints and token admin routes, to merge into a fake's router (state `S`;
/// `A` the part of it that implements [`GoogleAccount`]).
pub fn google_router<S, A>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    A: GoogleAccount + Clone + FromRef<S>,
{
    Router::new()
        .route("/token", post(google_token::<A>))
        .route("/o/oauth2/v2/auth", get(google_authorize::<A>))
        .route("/revoke", post(google_revoke::<A>))
        .route("/_admin/tokens", post(admin_issue::<A>))
        .route("/_admin/tokens/expire", post(admin_expire::<A>))
}

/// The OAuth 2.0 error body (RFC 6749 §5.2) Google's endpoints answer with.
pub fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(serde_json::json!({ "error": error, "error_description": description }))).into_response()
}

/// oauth2.googleapis.com's token endpoint: the authorization-code grant (a code from
/// [`CodeGrants`], PKCE checked) and the refresh-token grant
/// (<https://developers.google.com/identity/protocols/oauth2/web-server#exchange-authorization-code>,
/// <https://developers.google.com/identity/protocols/oauth2/web-server#offline>). An unknown
/// client is 401 `invalid_client` "The OAuth client was not found.", a wrong secret 401
/// `invalid_client` "Unauthorized".
async fn google_token<A: GoogleAccount>(
    State(app): State<A>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    if let Some(resp) = app.fault(GoogleEndpoint::Token).await {
        return resp;
    }
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required parameter is missing: grant_type",
        );
    };
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let google = app.google();
    if field("client_id") != google.client_id {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "The OAuth client was not found.");
    }
    if field("client_secret") != google.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
    }
    match field("grant_type") {
        "authorization_code" => {
            let verifier = form.get("code_verifier").map(String::as_str);
            if google.codes.redeem(field("code"), &google.client_id, field("redirect_uri"), verifier).is_err()
            {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
            }
            let t = google.tokens.issue(&google.granted, None);
            Json(serde_json::json!({
                "access_token": t.access_token,
                "expires_in": t.expires_in,
                "refresh_token": t.refresh_token,
                "scope": t.scope,
                "token_type": "Bearer",
            }))
            .into_response()
        }
        "refresh_token" => match google.tokens.refresh(field("refresh_token")) {
            Some((access, scopes)) => Json(serde_json::json!({
                "access_token": access,
                "expires_in": GOOGLE_ACCESS_TOKEN_TTL.as_secs(),
                "scope": scopes.join(" "),
                "token_type": "Bearer",
            }))
            .into_response(),
            None => {
                oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Token has been expired or revoked.")
            }
        },
        other => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("Invalid grant_type: {other}"),
        ),
    }
}

/// accounts.google.com's consent page (or, for a program, an immediate consent; declines after
/// `/_admin/oauth {"deny": true}`).
async fn google_authorize<A: GoogleAccount>(
    State(app): State<A>,
    headers: HeaderMap,
    Query(params): Query<AuthorizeParams>,
) -> Response {
    if let Some(resp) = app.fault(GoogleEndpoint::Authorize).await {
        return resp;
    }
    app.google().codes.consent(&headers, &params, &app.google().client_id, A::PRODUCT)
}

/// `POST /revoke` (form `token`): 200, or 400 `invalid_token` for a token Google does not know
/// (<https://developers.google.com/identity/protocols/oauth2/web-server#tokenrevoke>).
async fn google_revoke<A: GoogleAccount>(
    State(app): State<A>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    if let Some(resp) = app.fault(GoogleEndpoint::Revoke).await {
        return resp;
    }
    match form.ok().and_then(|Form(f)| f.get("token").cloned()) {
        Some(token) if app.google().tokens.revoke(&token) => StatusCode::OK.into_response(),
        _ => oauth_error(StatusCode::BAD_REQUEST, "invalid_token", "Token expired or revoked"),
    }
}

#[derive(Deserialize, Default)]
struct IssueBody {
    ttl_secs: Option<u64>,
    scopes: Option<Vec<String>>,
}

async fn admin_issue<A: GoogleAccount>(State(app): State<A>, body: Bytes) -> Response {
    let req = if body.is_empty() {
        IssueBody::default()
    } else {
        match serde_json::from_slice::<IssueBody>(&body) {
            Ok(b) => b,
            Err(e) => return A::bad_body(&e),
        }
    };
    let scopes = req.scopes.unwrap_or_else(|| app.google().granted.clone());
    Json(app.google().tokens.issue(&scopes, req.ttl_secs.map(Duration::from_secs))).into_response()
}

#[derive(Deserialize)]
struct ExpireBody {
    access_token: String,
}

async fn admin_expire<A: GoogleAccount>(State(app): State<A>, body: Bytes) -> Response {
    match serde_json::from_slice::<ExpireBody>(&body) {
        Ok(b) if app.google().tokens.expire(&b.access_token) => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => A::unknown_token(),
        Err(e) => A::bad_body(&e),
    }
}

#[cfg(test)]
mod google_tests {
    use super::*;

    #[test]
    fn a_google_access_token_lives_until_it_expires_or_is_revoked_and_refreshes_with_its_scopes() {
        let tokens = GoogleTokens::new(Some("static"), &["s1".to_owned()]);
        assert_eq!(tokens.scopes("static"), Some(vec!["s1".to_owned()]));
        let t = tokens.issue(&["a".to_owned(), "b".to_owned()], None);
        assert_eq!((t.expires_in, t.scope.as_str()), (3599, "a b"));
        assert_eq!(tokens.scopes(&t.access_token), Some(vec!["a".to_owned(), "b".to_owned()]));
        assert!(tokens.expire(&t.access_token));
        assert_eq!(tokens.scopes(&t.access_token), None, "expired");
        let (fresh, scopes) = tokens.refresh(&t.refresh_token).unwrap();
        assert_eq!(scopes, vec!["a".to_owned(), "b".to_owned()]);
        assert!(tokens.scopes(&fresh).is_some());
        assert!(tokens.revoke(&t.refresh_token));
        assert_eq!(tokens.refresh(&t.refresh_token), None, "revoked");
        assert!(!tokens.revoke("unknown"));
        assert!(!tokens.expire("unknown"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browser_gets_the_consent_page_and_its_buttons_allow_or_deny() {
        let g = CodeGrants::new();
        let mut html = HeaderMap::new();
        html.insert(header::ACCEPT, "text/html,application/xhtml+xml".parse().unwrap());
        let page = g.consent(&html, &params(None), "cid", "HubSpot");
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(g.counts().0, 0, "no code before the user answers");
        let allow = AuthorizeParams { consent: Some("allow".into()), ..params(None) };
        let (code, _) = code_of(&g.consent(&html, &allow, "cid", "HubSpot"));
        assert!(!code.is_empty());
        let deny = AuthorizeParams { consent: Some("deny".into()), ..params(None) };
        assert_eq!(code_of(&g.consent(&html, &deny, "cid", "HubSpot")).1, "access_denied");
        // A program consents at once; an unknown client gets the error page, not a consent page.
        assert!(!code_of(&g.consent(&HeaderMap::new(), &params(None), "cid", "HubSpot")).0.is_empty());
        assert_eq!(g.consent(&html, &params(None), "other", "HubSpot").status(), StatusCode::BAD_REQUEST);
    }

    fn code_of(response: &Response) -> (String, String) {
        let location = response.headers()[header::LOCATION].to_str().unwrap();
        let url = url::Url::parse(location).unwrap();
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        (q.get("code").cloned().unwrap_or_default(), q.get("error").cloned().unwrap_or_default())
    }

    fn params(challenge: Option<&str>) -> AuthorizeParams {
        AuthorizeParams {
            response_type: Some("code".into()),
            client_id: Some("cid".into()),
            redirect_uri: Some("http://app.test/cb".into()),
            state: Some("st".into()),
            code_challenge: challenge.map(str::to_owned),
            code_challenge_method: challenge.map(|_| "S256".to_owned()),
            ..AuthorizeParams::default()
        }
    }

    #[test]
    fn a_code_is_redeemed_once_by_its_client_and_redirect_uri_only() {
        let g = CodeGrants::new();
        let (code, _) = code_of(&g.authorize(&params(None), "cid"));
        assert_eq!(g.redeem(&code, "other", "http://app.test/cb", None), Err(GrantError::InvalidGrant));
        let (code, _) = code_of(&g.authorize(&params(None), "cid"));
        assert_eq!(g.redeem(&code, "cid", "http://evil.test/cb", None), Err(GrantError::InvalidGrant));
        let (code, _) = code_of(&g.authorize(&params(None), "cid"));
        assert_eq!(g.redeem(&code, "cid", "http://app.test/cb", None), Ok(()));
        assert_eq!(g.redeem(&code, "cid", "http://app.test/cb", None), Err(GrantError::InvalidGrant));
    }

    #[test]
    fn pkce_verifiers_are_checked_against_the_s256_challenge() {
        let g = CodeGrants::new();
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        let (code, _) = code_of(&g.authorize(&params(Some(challenge)), "cid"));
        assert_eq!(
            g.redeem(&code, "cid", "http://app.test/cb", Some("wrong")),
            Err(GrantError::InvalidGrant)
        );
        let (code, _) = code_of(&g.authorize(&params(Some(challenge)), "cid"));
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(g.redeem(&code, "cid", "http://app.test/cb", Some(verifier)), Ok(()));
    }

    #[test]
    fn a_declining_user_sends_access_denied_with_the_state() {
        let g = CodeGrants::new();
        g.set_deny(true);
        let response = g.authorize(&params(None), "cid");
        assert_eq!(response.status(), StatusCode::FOUND);
        let (code, error) = code_of(&response);
        assert_eq!((code.as_str(), error.as_str()), ("", "access_denied"));
        assert!(response.headers()[header::LOCATION].to_str().unwrap().contains("state=st"));
        assert_eq!(g.authorize(&params(None), "unknown").status(), StatusCode::BAD_REQUEST);
    }
}
