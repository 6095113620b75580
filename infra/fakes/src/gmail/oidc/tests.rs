//! Pub/Sub's authenticated push from the Gmail fake: the token's header and claims, checked with
//! the keys the fake serves; the JWKS and its caching; no header without an OIDC token config.

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use super::super::{FakeConfig, GmailFake, Mail, RunningFake, store};
use super::*;

const ACCOUNT: &str = "gmail-push@syncbridge-local.iam.gserviceaccount.com";
const TOPIC: &str = "projects/acme/topics/gmail";

/// Each push a [`Sink`] got: the hook it was sent to and its `Authorization` header.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A push endpoint on 127.0.0.1 that keeps each request's path and `Authorization` header.
struct Sink {
    base: String,
    seen: Seen,
    server: tokio::task::JoinHandle<()>,
}

impl Sink {
    async fn serve() -> Self {
        let seen: Seen = Arc::default();
        let kept = seen.clone();
        let app = axum::Router::new().route(
            "/{hook}",
            axum::routing::post(
                move |axum::extract::Path(hook): axum::extract::Path<String>, headers: HeaderMap| {
                    let kept = kept.clone();
                    async move {
                        let auth =
                            headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
                        kept.lock().unwrap().push((hook, auth));
                        axum::http::StatusCode::NO_CONTENT
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, seen, server }
    }

    fn authorization(&self, hook: &str) -> Option<String> {
        let seen = self.seen.lock().unwrap();
        let (_, auth) = seen.iter().find(|(h, _)| h == hook).expect("the hook got a push");
        auth.clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A fake watching [`TOPIC`] with one new message to announce.
async fn watching() -> RunningFake {
    let fake = GmailFake::start(FakeConfig::default()).await.unwrap();
    let watched = reqwest::Client::new()
        .post(format!("{}/users/me/watch", fake.api_url()))
        .bearer_auth("ya29.fake-gmail")
        .json(&json!({ "topicName": TOPIC }))
        .send()
        .await
        .unwrap();
    assert_eq!(watched.status(), 200);
    let mail = Mail {
        from: "jane@globex.example".into(),
        to: vec![store::OWNER.into()],
        subject: "Hi".into(),
        ..Mail::default()
    };
    fake.state().deliver(&mail).unwrap();
    fake
}

async fn jwks(fake: &RunningFake) -> (Option<String>, Value) {
    let reply = reqwest::get(fake.certs_url()).await.unwrap();
    assert_eq!(reply.status(), 200);
    let cache = reply.headers().get("cache-control").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (cache, reply.json().await.unwrap())
}

/// The token's claims, verified (RS256, the served key of its `kid`, `aud`, `iss`, `exp`).
fn verified(token: &str, keys: &Value, audience: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    let kid = header.kid.expect("a key id");
    let jwk =
        keys["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).expect("a served key");
    let key = DecodingKey::from_jwk(&serde_json::from_value::<Jwk>(jwk.clone()).unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[ISSUER]);
    jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap().claims
}

#[tokio::test]
async fn an_oidc_subscription_signs_each_push_with_googles_claims_for_its_endpoint_or_its_audience() {
    let fake = watching().await;
    let sink = Sink::serve().await;
    let state = fake.state();
    let plain = format!("{}/default-audience?x=1", sink.base);
    let named = format!("{}/named-audience", sink.base);
    let oidc = |audience: Option<&str>| {
        Some(OidcToken { service_account_email: ACCOUNT.into(), audience: audience.map(str::to_owned) })
    };
    state.subscribe(TOPIC, &plain, oidc(None));
    state.subscribe(TOPIC, &named, oidc(Some("https://hooks.example.com/gmail")));
    state.subscribe("projects/acme/topics/other", &format!("{}/other-topic", sink.base), oidc(None));
    let now = chrono::Utc::now().timestamp();
    let sent = state.publish().await;
    assert_eq!(
        sent.iter().map(|d| d.status).collect::<Vec<_>>(),
        [Some(204), Some(204)],
        "only the watched topic's"
    );

    let (_, keys) = jwks(&fake).await;
    let bearer = sink.authorization("default-audience").expect("an Authorization header");
    let token = bearer.strip_prefix("Bearer ").expect("a bearer token");
    let claims = verified(token, &keys, &plain);
    assert_eq!(
        claims["aud"],
        plain.as_str(),
        "the audience defaults to the push endpoint's URL, query and all"
    );
    assert_eq!(claims["email"], ACCOUNT);
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["sub"], claims["azp"], "the service account's unique id: {claims}");
    let id = claims["sub"].as_str().unwrap();
    assert!(id.len() == 21 && id.bytes().all(|b| b.is_ascii_digit()), "{id}");
    let iat = claims["iat"].as_i64().unwrap();
    assert!((now - 5..=now + 5).contains(&iat), "issued at the push: {iat} vs {now}");
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 3600, "valid for an hour");
    assert_eq!(jsonwebtoken::decode_header(token).unwrap().kid.as_deref(), Some(state.push_signer().kid()));

    let named_token = sink.authorization("named-audience").expect("an Authorization header");
    let named_claims =
        verified(named_token.strip_prefix("Bearer ").unwrap(), &keys, "https://hooks.example.com/gmail");
    assert_eq!(named_claims["aud"], "https://hooks.example.com/gmail");
    assert_eq!(named_claims["sub"], id, "one service account, one id");
}

#[tokio::test]
async fn a_subscription_without_an_oidc_token_pushes_without_an_authorization_header() {
    let fake = watching().await;
    let sink = Sink::serve().await;
    fake.state().subscribe(TOPIC, &format!("{}/bare", sink.base), None);
    assert_eq!(fake.state().publish().await[0].status, Some(204));
    assert_eq!(sink.authorization("bare"), None);
}

#[tokio::test]
async fn the_keys_are_a_cacheable_jwks_of_rs256_signing_keys_and_each_fake_makes_its_own() {
    let fake = GmailFake::start(FakeConfig::default()).await.unwrap();
    let (cache, keys) = jwks(&fake).await;
    let cache = cache.expect("a Cache-Control header");
    let max_age = cache.split(',').find_map(|d| d.trim().strip_prefix("max-age=")).expect("a max-age");
    assert!(max_age.parse::<u64>().unwrap() > 0, "{cache}");
    let key = &keys["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["alg"].as_str(), key["use"].as_str()),
        (Some("RSA"), Some("RS256"), Some("sig"))
    );
    assert_eq!(key["e"], "AQAB");
    let kid = key["kid"].as_str().unwrap();
    assert!(kid.len() == 40 && kid.bytes().all(|b| b.is_ascii_hexdigit()), "{kid}");

    let other = GmailFake::start(FakeConfig::default()).await.unwrap();
    let token = other
        .state()
        .push_signer()
        .sign(
            &OidcToken { service_account_email: ACCOUNT.into(), audience: None }
                .claims("https://a.example", chrono::Utc::now().timestamp()),
        )
        .unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_ne!(header.kid.as_deref(), Some(kid), "a new key at each start");
    let jwk: Jwk = serde_json::from_value(key.clone()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["https://a.example"]);
    let refused = jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_jwk(&jwk).unwrap(), &validation);
    assert!(refused.is_err(), "another fake's key does not verify this one's token");
}

#[tokio::test]
async fn the_admin_route_takes_pubsubs_oidc_token_and_refuses_one_without_a_service_account() {
    let fake = GmailFake::start(FakeConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/_admin/pubsub/subscriptions", fake.base_url());
    let made = http
        .post(&url)
        .json(&json!({ "topic_name": TOPIC, "endpoint": "http://127.0.0.1:9/hook",
                       "oidc_token": { "serviceAccountEmail": ACCOUNT, "audience": "https://a.example" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.unwrap();
    assert_eq!(
        made["oidc_token"],
        json!({ "serviceAccountEmail": ACCOUNT, "audience": "https://a.example" })
    );
    let refused = http
        .post(&url)
        .json(&json!({ "topic_name": TOPIC, "endpoint": "http://127.0.0.1:9/hook",
                       "oidc_token": { "serviceAccountEmail": "" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT", "{body}");
}
