//! Push tokens signed with RSA keys made here, the JWKS served by a local server on a port the
//! test picks; every refusal is a 401 problem with nothing enqueued. The signer and the JWKS
//! server also serve the Gmail webhook's own tests.

use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use super::super::test_support::*;
use super::*;

pub(crate) const AUDIENCE: &str = "https://hooks.example.com/prod/webhooks/gmail";
pub(crate) const ACCOUNT: &str = "gmail-push@acme-project.iam.gserviceaccount.com";

pub(crate) struct Signer {
    kid: String,
    key: RsaKeyPair,
}

impl Signer {
    pub(crate) fn new(kid: &str) -> Self {
        Self { kid: kid.into(), key: RsaKeyPair::generate(KeySize::Rsa2048).unwrap() }
    }

    fn jwk(&self) -> Value {
        let public = self.key.public_key();
        json!({
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
            "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
            "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
        })
    }

    /// A compact JWS of `claims` with this key, its header naming `kid`.
    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let header = B64.encode(json!({ "alg": "RS256", "kid": kid, "typ": "JWT" }).to_string());
        let input = format!("{header}.{}", B64.encode(claims.to_string()));
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
        format!("{input}.{}", B64.encode(sig))
    }

    pub(crate) fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }
}

/// The claims Pub/Sub puts in a push token, valid for another hour.
pub(crate) fn claims() -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "aud": AUDIENCE, "iss": "https://accounts.google.com", "azp": "113774264463038321964",
        "email": ACCOUNT, "email_verified": true, "sub": "113774264463038321964",
        "iat": now - 10, "exp": now + 3600,
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

/// A JWKS endpoint: its keys, `Cache-Control` and status can change; it counts its requests.
pub(crate) struct Jwks {
    url: String,
    hits: Arc<AtomicUsize>,
    body: Arc<StdMutex<(u16, Value)>>,
}

impl Jwks {
    pub(crate) async fn serve(keys: &[&Signer], cache_control: &'static str) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let body = Arc::new(StdMutex::new((
            200,
            json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }),
        )));
        let (h, b) = (hits.clone(), body.clone());
        let app = axum::Router::new().route(
            "/oauth2/v3/certs",
            axum::routing::get(move || {
                let (h, b) = (h.clone(), b.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    let (status, value) = b.lock().unwrap().clone();
                    (
                        http::StatusCode::from_u16(status).unwrap(),
                        [(http::header::CACHE_CONTROL, cache_control)],
                        axum::Json(value),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/oauth2/v3/certs", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, hits, body }
    }

    fn set_keys(&self, keys: &[&Signer]) {
        *self.body.lock().unwrap() =
            (200, json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }));
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub(crate) fn verifier(&self, min_refetch: Duration) -> OidcVerifier {
        let cache = JwksCache::new(reqwest::Client::new(), self.url.clone()).with_min_refetch(min_refetch);
        OidcVerifier::new(AUDIENCE.into(), ACCOUNT.into(), cache)
    }
}

fn push(token: Option<&str>, query: &str, message_id: &str) -> http::Request<axum::body::Body> {
    let mut req =
        http::Request::post(format!("/webhooks/gmail{query}")).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.body(axum::body::Body::from(gmail_push_body("owner@acme.example", message_id))).unwrap()
}

#[tokio::test]
async fn a_push_with_googles_token_enqueues_a_job_and_every_bad_proof_is_a_401_problem_that_enqueues_nothing()
{
    let google = Signer::new("google-key-1");
    let stranger = Signer::new("stranger-key");
    let jwks = Jwks::serve(&[&google], "public, max-age=19800, must-revalidate, no-transform").await;
    let verifier = Arc::new(jwks.verifier(Duration::ZERO));
    let h = harness_with(PushAuth::Oidc(verifier.clone()));
    let c = gmail_connection(&h, "owner@acme.example").await;

    let past = chrono::Utc::now().timestamp() - 3600;
    let no_email = {
        let mut c = claims();
        c.as_object_mut().unwrap().remove("email");
        c
    };
    let tampered = {
        let t = google.sign(&claims());
        let parts: Vec<&str> = t.split('.').collect();
        let forged =
            B64.encode(with(claims(), "email", json!(ACCOUNT.replace("gmail-push", "other"))).to_string());
        format!("{}.{forged}.{}", parts[0], parts[2])
    };
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no bearer token", None, ""),
        ("no bearer token", None, "?token=gmail-push-token-value"),
        ("not a JWT", Some("not.a.jwt".into()), ""),
        ("wrong audience", Some(google.sign(&with(claims(), "aud", json!("https://evil.example/hook")))), ""),
        ("wrong issuer", Some(google.sign(&with(claims(), "iss", json!("https://evil.example")))), ""),
        (
            "wrong service account",
            Some(google.sign(&with(claims(), "email", json!("someone@evil.example")))),
            "",
        ),
        ("email not verified", Some(google.sign(&with(claims(), "email_verified", json!(false)))), ""),
        ("wrong service account", Some(google.sign(&no_email)), ""),
        (
            "expired token",
            Some(google.sign(&with(with(claims(), "exp", json!(past)), "iat", json!(past - 3600)))),
            "",
        ),
        ("unknown key id", Some(stranger.sign(&claims())), ""),
        ("bad signature", Some(stranger.sign_as("google-key-1", &claims())), ""),
        ("bad signature", Some(tampered), ""),
    ];
    for (i, (what, token, query)) in cases.iter().enumerate() {
        let header = token.as_ref().map(|t| format!("Bearer {t}"));
        assert_eq!(verifier.verify(header.as_deref()).await, Err(Refused::Unverified(what)), "case {i}");
        let (status, problem) = send(&h.app, push(token.as_deref(), query, &format!("bad-{i}"))).await;
        assert_eq!((status, problem["code"].as_str()), (401, Some("unauthorized")), "{what}: {problem}");
        assert!(h.queue.jobs().is_empty(), "{what} enqueued a job");
    }

    let (status, summary) = send(&h.app, push(Some(&google.sign(&claims())), "", "good-1")).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["jobs"], 1);
    assert_eq!(h.queue.jobs()[0].connection_id, c.connection_id);
    // Google issues either form of the issuer.
    let bare_issuer = google.sign(&with(claims(), "iss", json!("accounts.google.com")));
    let (status, summary) = send(&h.app, push(Some(&bare_issuer), "", "good-2")).await;
    assert_eq!((status, summary["received"].as_u64()), (200, Some(1)), "{summary}");
}

#[tokio::test]
async fn the_keys_are_fetched_once_while_their_max_age_lasts_and_again_when_it_is_spent() {
    let google = Signer::new("k1");
    let cached = Jwks::serve(&[&google], "public, max-age=3600").await;
    let verifier = cached.verifier(Duration::ZERO);
    for _ in 0..3 {
        verifier.verify(Some(&format!("Bearer {}", google.sign(&claims())))).await.unwrap();
    }
    assert_eq!(cached.hits(), 1, "one fetch per cold start, not per push");

    let uncached = Jwks::serve(&[&google], "no-cache").await;
    let verifier = uncached.verifier(Duration::ZERO);
    for _ in 0..2 {
        verifier.verify(Some(&format!("Bearer {}", google.sign(&claims())))).await.unwrap();
    }
    assert_eq!(uncached.hits(), 2, "keys without a max-age are not kept");
}

#[tokio::test]
async fn a_key_id_not_in_the_cache_refetches_once_and_finds_googles_rotated_key() {
    let old = Signer::new("old");
    let new = Signer::new("new");
    let jwks = Jwks::serve(&[&old], "max-age=3600").await;
    let verifier = jwks.verifier(Duration::ZERO);
    verifier.verify(Some(&format!("Bearer {}", old.sign(&claims())))).await.unwrap();
    jwks.set_keys(&[&old, &new]);
    verifier.verify(Some(&format!("Bearer {}", new.sign(&claims())))).await.unwrap();
    assert_eq!(jwks.hits(), 2);
    verifier.verify(Some(&format!("Bearer {}", new.sign(&claims())))).await.unwrap();
    assert_eq!(jwks.hits(), 2, "the rotated key is cached too");
}

#[tokio::test]
async fn made_up_key_ids_do_not_refetch_the_keys_within_the_minimum_interval() {
    let google = Signer::new("k1");
    let stranger = Signer::new("k2");
    let jwks = Jwks::serve(&[&google], "max-age=3600").await;
    let verifier = jwks.verifier(DEFAULT_MIN_REFETCH);
    verifier.verify(Some(&format!("Bearer {}", google.sign(&claims())))).await.unwrap();
    for _ in 0..3 {
        let refused = verifier.verify(Some(&format!("Bearer {}", stranger.sign(&claims())))).await;
        assert_eq!(refused, Err(Refused::Unverified("unknown key id")));
    }
    assert_eq!(jwks.hits(), 1);
}

#[tokio::test]
async fn unreadable_keys_are_a_503_problem_so_that_pubsub_retries_and_nothing_is_enqueued() {
    let google = Signer::new("k1");
    let jwks = Jwks::serve(&[&google], "max-age=3600").await;
    *jwks.body.lock().unwrap() = (500, json!({ "error": "backend" }));
    let h = harness_with(PushAuth::Oidc(Arc::new(jwks.verifier(Duration::ZERO))));
    gmail_connection(&h, "owner@acme.example").await;
    let (status, problem) = send(&h.app, push(Some(&google.sign(&claims())), "", "1")).await;
    assert_eq!((status, problem["code"].as_str()), (503, Some("unavailable")), "{problem}");
    assert!(h.queue.jobs().is_empty());
    assert!(jwks.hits() > 1, "a 5xx from the keys endpoint is retried in place");
}

#[test]
fn cache_control_gives_the_max_age_and_no_cache_or_no_age_keeps_nothing() {
    assert_eq!(max_age("public, max-age=19800, must-revalidate, no-transform"), Duration::from_secs(19800));
    assert_eq!(max_age("Max-Age=60"), Duration::from_secs(60));
    assert_eq!(max_age("no-cache, max-age=60"), Duration::ZERO);
    assert_eq!(max_age("no-store"), Duration::ZERO);
    assert_eq!(max_age("public"), Duration::ZERO);
    assert_eq!(max_age("max-age=soon"), Duration::ZERO);
}

#[test]
fn oidc_is_chosen_when_audience_and_service_account_are_set_else_every_push_is_refused() {
    let client = reqwest::Client::new();
    let http = || Ok::<_, std::convert::Infallible>(client.clone());
    let oidc = GmailConfig {
        push_audience: Some(AUDIENCE.into()),
        push_service_account: Some(ACCOUNT.into()),
        ..GmailConfig::default()
    };
    let auth = PushAuth::from_config(&oidc, http).unwrap();
    assert!(matches!(auth, PushAuth::Oidc(_)));
    let shown = format!("{auth:?}");
    assert!(shown.contains(GOOGLE_CERTS_URL) && shown.contains(AUDIENCE), "{shown}");
    let half = GmailConfig { push_service_account: None, ..oidc };
    assert!(matches!(PushAuth::from_config(&half, http).unwrap(), PushAuth::Refuse));
    assert!(matches!(PushAuth::from_config(&GmailConfig::default(), http).unwrap(), PushAuth::Refuse));
}
