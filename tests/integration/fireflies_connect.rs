//! Connecting Fireflies with an API key through the API (`POST /v1/connections`), the API router
//! in process, the Fireflies fake over HTTP: the key is proven at once and its owner's email
//! becomes the connection's account (which Fireflies' webhooks name); a key Fireflies refuses, an
//! `account_id` that is not the key's, and a Fireflies that cannot be reached create nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use lambda_http::RequestExt;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use syncbridge::adapters::fireflies::FirefliesFactory;
use syncbridge::adapters::memory::{MemoryQueue, MemoryStore, TestDeps};
use syncbridge::adapters::notion::Pacing;
use syncbridge::domain::{Operation, TenantId};
use syncbridge::http::auth::{DevKey, gateway_context};
use syncbridge::http::{ApiState, router};
use syncbridge::ports::ConnectionStore;
use syncbridge_fakes::fireflies::{DEFAULT_API_KEY, FakeConfig, Fault, FaultKind, FirefliesFake, Route};
use tower::ServiceExt;

struct Api {
    app: axum::Router,
    store: Arc<MemoryStore>,
    key: DevKey,
}

impl Api {
    fn new() -> Self {
        let store = Arc::new(MemoryStore::new());
        let queue = Arc::new(MemoryQueue::new());
        let fast = Pacing { per_second: 100.0, burst: 100.0, ..Pacing::default() };
        let providers = Arc::new(FirefliesFactory::new(reqwest::Client::new()).with_pacing(fast));
        let engine = TestDeps::new(store.clone()).queue(queue.clone()).providers(providers).build();
        let state = ApiState {
            connections: store.clone(),
            records: store.clone(),
            runs: store.clone(),
            audit: store.clone(),
            queue,
            clock: engine.clock.clone(),
            engine,
            tenant_claim: "tenant_id".into(),
            oauth: None,
        };
        let key = DevKey::new(&SecretString::from("test-secret-test-secret-test-secret")).unwrap();
        Self { app: router(state), store, key }
    }

    /// `POST /v1/connections` as tenant `t1`: status and body.
    async fn connect(&self, body: Value) -> (StatusCode, Value) {
        let token = self.key.sign(&TenantId::parse("t1").unwrap(), "t1-user", Duration::from_secs(300));
        let request = http::Request::builder()
            .method("POST")
            .uri("/v1/connections")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
            .with_request_context(gateway_context(&self.key.verify(&token).unwrap()));
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn connections(&self) -> usize {
        self.store.list(&TenantId::parse("t1").unwrap()).await.unwrap().len()
    }
}

fn body(fake: &syncbridge_fakes::fireflies::RunningFake, key: &str) -> Value {
    json!({ "provider": "fireflies", "base_url": fake.base_url(), "access_token": key })
}

#[tokio::test]
async fn a_fireflies_key_is_proven_at_connect_and_its_owner_becomes_the_account() {
    let fake = FirefliesFake::start(FakeConfig::default()).await.unwrap();
    let api = Api::new();

    let (status, view) = api.connect(body(&fake, DEFAULT_API_KEY)).await;
    assert_eq!(status, StatusCode::CREATED, "{view}");
    assert_eq!(view["account_id"], "ada@acme.example", "the key owner's email, lowercased");
    assert!(!view.to_string().contains(DEFAULT_API_KEY), "the key is never shown: {view}");
    let created = api.store.audit_entries();
    assert!(created.iter().any(|e| e.operation == Operation::ConnectionCreated));

    // The same account named by the caller (in another case) is accepted.
    let mut named = body(&fake, DEFAULT_API_KEY);
    named["account_id"] = json!("Ada@Acme.example");
    let (status, view) = api.connect(named).await;
    assert_eq!(status, StatusCode::CREATED, "{view}");
    assert_eq!(view["account_id"], "ada@acme.example");
    assert_eq!(api.connections().await, 2);
}

#[tokio::test]
async fn a_refused_key_a_foreign_account_and_an_unreachable_fireflies_create_nothing() {
    let fake = FirefliesFake::start(FakeConfig::default()).await.unwrap();
    let api = Api::new();

    let (status, problem) = api.connect(body(&fake, "ff_not_a_key")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["code"], "token_rejected", "{problem}");
    assert!(!problem.to_string().contains("ff_not_a_key"), "the key is never echoed: {problem}");

    let mut foreign = body(&fake, DEFAULT_API_KEY);
    foreign["account_id"] = json!("someone@else.example");
    let (status, problem) = api.connect(foreign).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["code"], "invalid_request", "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("account_id"), "{problem}");

    // Fireflies' edge failing for longer than the send path retries: 502, try again.
    fake.state().inject_fault(Fault {
        route: Route::Graphql,
        kind: FaultKind::ServerError { status: Some(503) },
        count: 20,
    });
    let (status, problem) = api.connect(body(&fake, DEFAULT_API_KEY)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{problem}");
    assert_eq!(problem["code"], "provider_unavailable", "{problem}");
    assert_eq!(api.connections().await, 0, "nothing was created");
    assert!(api.store.audit_entries().is_empty(), "nothing was audited as created");
}
