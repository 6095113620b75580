//! The API's one test harness: the real router over the in-memory doubles, a manual clock, and
//! requests signed as a tenant exactly as API Gateway's JWT authorizer would pass them.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use lambda_http::RequestExt as _;
use secrecy::SecretString;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::auth::{DevKey, gateway_context};
use super::oauth::OAuthService;
use super::{ApiState, router};
use crate::adapters::memory::{ManualClock, MemoryQueue, MemoryStore, TestDeps};
use crate::domain::TenantId;

pub(crate) struct ApiHarness {
    pub store: Arc<MemoryStore>,
    pub queue: Arc<MemoryQueue>,
    pub clock: Arc<ManualClock>,
    pub state: ApiState,
    pub app: Router,
    pub key: DevKey,
}

/// An answer, read whole.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub content_type: String,
    pub text: String,
    pub json: Value,
}

impl ApiHarness {
    /// The API at `now` with the OAuth connect flow off (see [`Self::with_oauth`]).
    pub fn new(now: DateTime<Utc>) -> Self {
        let store = Arc::new(MemoryStore::new());
        let queue = Arc::new(MemoryQueue::new());
        let clock = Arc::new(ManualClock::new(now));
        let state = ApiState {
            connections: store.clone(),
            records: store.clone(),
            runs: store.clone(),
            audit: store.clone(),
            queue: queue.clone(),
            clock: clock.clone(),
            engine: TestDeps::new(store.clone()).queue(queue.clone()).clock(clock.clone()).build(),
            tenant_claim: "tenant_id".into(),
            oauth: None,
        };
        let key = DevKey::new(&SecretString::from("test-secret-test-secret-test-secret")).unwrap();
        Self { store, queue, clock, app: router(state.clone()), state, key }
    }

    /// The OAuth connect flow with `providers`, its pending states in the harness's store.
    pub fn with_oauth(mut self, providers: crate::adapters::oauth::OAuthProviders) -> Self {
        let providers = Arc::new(providers);
        self.state.oauth = Some(Arc::new(OAuthService { providers, states: self.store.clone() }));
        self.rebuild();
        self
    }

    /// Rebuilds the router after a test changed [`Self::state`].
    pub fn rebuild(&mut self) {
        self.app = router(self.state.clone());
    }

    /// A request as `tenant` (subject `<tenant>-user`), or without identity.
    pub fn request(
        &self,
        method: Method,
        uri: &str,
        tenant: Option<&str>,
        body: Option<(&str, String)>,
    ) -> Request<Body> {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some((content_type, _)) = &body {
            builder = builder.header(header::CONTENT_TYPE, *content_type);
        }
        let mut request = builder.body(body.map(|(_, b)| Body::from(b)).unwrap_or_else(Body::empty)).unwrap();
        if let Some(t) = tenant {
            let token = self.key.sign(
                &TenantId::parse(t).unwrap(),
                &format!("{t}-user"),
                std::time::Duration::from_secs(300),
            );
            request = request.with_request_context(gateway_context(&self.key.verify(&token).unwrap()));
        }
        request
    }

    /// Sends a JSON body (or none) as `tenant`.
    pub async fn send(&self, method: Method, uri: &str, tenant: Option<&str>, body: Option<&str>) -> Reply {
        let body = body.map(|b| ("application/json", b.to_owned()));
        self.send_request(self.request(method, uri, tenant, body)).await
    }

    pub async fn send_request(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let content_type =
            headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, headers, content_type, text, json }
    }

    /// Creates a HubSpot connection of `tenant` with the given tokens; its id.
    pub async fn create_with(&self, tenant: &str, access: &str, refresh: &str) -> String {
        let body = json!({ "provider": "hubspot", "access_token": access, "refresh_token": refresh, "expires_in_seconds": 1800 });
        let reply = self.send(Method::POST, "/v1/connections", Some(tenant), Some(&body.to_string())).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.json["id"].as_str().unwrap().to_owned()
    }
}
