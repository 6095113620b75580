//! The authorization-code half of OAuth 2.0 that every fake shares (RFC 6749 §4.1, RFC 7636).
//!
//! The authorize endpoint shows a browser (a request that accepts `text/html`) a consent page
//! whose buttons allow or decline, as the providers' own pages do; a program (no `text/html`)
//! consents at once. Either way it redirects to `redirect_uri` with a `code` and the caller's
//! `state` (or with `error=access_denied` when the user declines, or an admin said they will). A code is single use, expires after 10 minutes, and is bound to the client id, the
//! redirect URI and, when one was sent, the PKCE `S256` challenge, which the token endpoint checks
//! (the fakes' token handlers call [`CodeGrants::redeem`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use serde::Deserialize;
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
