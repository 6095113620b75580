//! Pub/Sub's authenticated push, as the Gmail fake plays it: a subscription with
//! `pushConfig.oidcToken` sends each push with `Authorization: Bearer <JWT>`, a Google-signed
//! OIDC token for its service account
//! (<https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions>), and the signing
//! keys are public as a JWKS at `/oauth2/v3/certs`, as Google serves them.

use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Where Google serves its OAuth 2.0 signing keys as a JWKS (the `jwks_uri` of
/// <https://accounts.google.com/.well-known/openid-configuration>).
pub const CERTS_PATH: &str = "/oauth2/v3/certs";
/// The `iss` of the tokens Pub/Sub signs
/// (<https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions#validate_tokens>).
pub const ISSUER: &str = "https://accounts.google.com";
/// A push token is valid for an hour after it is issued, as Google's OIDC tokens are (`exp` =
/// `iat` + 3600 in the token shown at
/// <https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions#validate_tokens>).
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The `Cache-Control` of the keys: Google's answer is public, kept for some hours, revalidated
/// after; Google changes its keys rarely and says to cache them by the answer's cache directives
/// (<https://developers.google.com/identity/openid-connect/openid-connect#validatinganidtoken>).
pub const CERTS_CACHE_CONTROL: &str = "public, max-age=21600, must-revalidate, no-transform";

/// `PushConfig.OidcToken` of a Pub/Sub subscription
/// (<https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions#oidctoken>):
/// the service account the token names, and its audience, by default the push endpoint's URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OidcToken {
    pub service_account_email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

impl OidcToken {
    /// The `aud` of a push to `endpoint`: the configured audience, else the endpoint's URL.
    pub fn audience_for<'a>(&'a self, endpoint: &'a str) -> &'a str {
        self.audience.as_deref().filter(|a| !a.is_empty()).unwrap_or(endpoint)
    }

    /// The claims Google puts in a push token for this subscription
    /// (<https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions#validate_tokens>):
    /// `sub` and `azp` are the service account's unique (numeric) id.
    pub fn claims(&self, endpoint: &str, now: i64) -> Value {
        let id = unique_id(&self.service_account_email);
        json!({
            "aud": self.audience_for(endpoint),
            "azp": id,
            "email": self.service_account_email,
            "email_verified": true,
            "exp": now + TOKEN_TTL.as_secs() as i64,
            "iat": now,
            "iss": ISSUER,
            "sub": id,
        })
    }
}

/// A service account's unique id as Google shows it (21 digits), stable for its email.
fn unique_id(email: &str) -> String {
    let digest = Sha256::digest(email.to_lowercase().as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    format!("1{:020}", u64::from_be_bytes(head))
}

/// The fake's signing key: an RSA pair made when the fake starts, named by a key id.
pub struct PushSigner {
    kid: String,
    key: RsaKeyPair,
}

impl std::fmt::Debug for PushSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushSigner").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// The key could not sign.
#[derive(Debug, thiserror::Error)]
#[error("the push token could not be signed")]
pub struct SignError;

impl PushSigner {
    /// A new 2048-bit RSA key (Google's keys are 2048-bit RS256 keys); its key id is 40 hex digits
    /// of its modulus's SHA-256, the shape of Google's key ids.
    pub fn generate() -> Self {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).expect("aws-lc-rs generates a 2048-bit RSA key");
        let digest = Sha256::digest(key.public_key().modulus().big_endian_without_leading_zero());
        let kid = digest[..20].iter().map(|b| format!("{b:02x}")).collect();
        Self { kid, key }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (RFC 7517), with the fields Google's JWKS gives each key.
    pub fn jwk(&self) -> Value {
        let public = self.key.public_key();
        json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
            "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
        })
    }

    /// A compact JWS (RFC 7515) of `claims`, RS256, its header naming this key.
    pub fn sign(&self, claims: &Value) -> Result<String, SignError> {
        let header = json!({ "alg": "RS256", "kid": self.kid, "typ": "JWT" });
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut signature)
            .map_err(|_| SignError)?;
        Ok(format!("{input}.{}", B64.encode(signature)))
    }
}

#[cfg(test)]
mod tests;
