//! The authorization-code half of OAuth 2.0 that every fake shares (RFC 6749 §4.1, RFC 7636).
//!
//! The authorize endpoint consents at once and redirects the browser to `redirect_uri` with a
//! `code` and the caller's `state` (or with `error=access_denied` when an admin said the user
//! declines). A code is single use, expires after 10 minutes, and is bound to the client id, the
//! redirect URI and, when one was sent, the PKCE `S256` challenge, which the token endpoint checks
//! (the fakes' token handlers call [`CodeGrants::redeem`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{StatusCode, header};
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

impl CodeGrants {
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
