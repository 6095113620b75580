//! A pending OAuth authorization: what an authorize request's `state` stands for until the
//! browser comes back to the callback. Single use, short-lived, bound to the tenant, provider,
//! redirect URI, requested settings and PKCE verifier.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::connection::ConnectionSettings;
use super::ids::{Provider, TenantId};

/// How long a `state` stays valid.
pub const STATE_TTL_MINUTES: i64 = 10;

#[derive(Debug, Clone)]
pub struct PendingAuthorization {
    pub tenant_id: TenantId,
    /// The `sub` of whoever started it (the audit actor of the connection it creates).
    pub subject: String,
    pub provider: Provider,
    /// Salesforce: the org is a sandbox (login at the sandbox login host).
    pub sandbox: bool,
    /// Must be sent again, identical, with the code exchange.
    pub redirect_uri: String,
    /// PKCE (RFC 7636) verifier, for providers that support it.
    pub code_verifier: Option<SecretString>,
    pub interval_minutes: Option<u32>,
    pub settings: Option<ConnectionSettings>,
    /// A path of this deployment the callback redirects the browser to (the dashboard's).
    pub return_to: Option<String>,
    pub expires_at: DateTime<Utc>,
}

impl PendingAuthorization {
    pub fn expires_at_from(now: DateTime<Utc>) -> DateTime<Utc> {
        now + Duration::minutes(STATE_TTL_MINUTES)
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }
}

/// 32 random bytes, base64url without padding (43 characters): a `state` or a PKCE verifier.
pub fn random_token() -> SecretString {
    SecretString::from(URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()))
}

/// The PKCE `S256` challenge of a verifier: base64url(SHA-256(verifier)), no padding.
pub fn pkce_challenge(verifier: &SecretString) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose_secret().as_bytes()))
}

/// What the store keys a state by: its SHA-256, hex. The state itself is never stored, so a read
/// of the table cannot complete someone's authorization.
pub fn state_key(state: &str) -> String {
    Sha256::digest(state.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// True for what [`random_token`] produces (anything else is forged or mangled).
pub fn is_well_formed_state(state: &str) -> bool {
    state.len() == 43 && state.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_matches_the_rfc_7636_example() {
        let verifier = SecretString::from("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(pkce_challenge(&verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn random_tokens_are_well_formed_states_and_differ() {
        let a = random_token();
        let b = random_token();
        assert!(is_well_formed_state(a.expose_secret()));
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(!is_well_formed_state("short"));
        assert!(!is_well_formed_state(&"%".repeat(43)));
        assert_eq!(state_key("x").len(), 64);
    }
}
