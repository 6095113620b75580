//! The local gateway: plays API Gateway's HTTP API on 127.0.0.1. Routes `/v1/*` through a JWT
//! authorizer (tokens signed with the local dev key) that fills the request context exactly as API
//! Gateway would, then calls the same API router the Lambda serves; the public API routes
//! (`openapi::PUBLIC_ROUTES`: the OpenAPI document) and `/webhooks/*` go through without a token.
//! Every other path is the dashboard (`web/dist`, signing in with dev tokens), as the API function
//! serves it in AWS.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode, header};
use syncbridge::http::auth::{DevKey, gateway_context};
use syncbridge::http::dashboard::{self, DashboardAuth};
use syncbridge::http::openapi;
use tokio::sync::oneshot;
use tower::ServiceExt;

/// A running gateway; stops when dropped.
pub struct Gateway {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Gateway {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(Clone)]
struct Routes {
    api: Router,
    webhooks: Router,
    dashboard: Router,
    key: DevKey,
}

/// Serves `api` and `webhooks` on `127.0.0.1:port` (0 picks a free port).
pub async fn serve(api: Router, webhooks: Router, key: DevKey, port: u16) -> Result<Gateway> {
    serve_on(bind(port).await?, api, webhooks, key)
}

/// Binds the gateway's address first, so what is built before the routers (the worker's webhook
/// base URL) can know it.
pub async fn bind(port: u16) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(("127.0.0.1", port)).await.context("binding the local gateway")
}

/// Serves `api` and `webhooks` on a listener from [`bind`].
pub fn serve_on(
    listener: tokio::net::TcpListener,
    api: Router,
    webhooks: Router,
    key: DevKey,
) -> Result<Gateway> {
    let addr = listener.local_addr()?;
    let routes = Routes { api, webhooks, dashboard: dashboard::router(DashboardAuth::Dev), key };
    let app = Router::new().fallback(move |req: Request<Body>| {
        let routes = routes.clone();
        async move { route(routes, req).await }
    });
    let (stop, _) = serve_in_background(listener, app);
    Ok(Gateway { addr, stop: Some(stop) })
}

/// Serves `app` on `listener` on a task of its own until the sender is used or dropped (then the
/// task ends once the requests in flight are answered).
pub fn serve_in_background(
    listener: tokio::net::TcpListener,
    app: Router,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    (stop, task)
}

async fn route(routes: Routes, mut req: Request<Body>) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/webhooks/") {
        return routes.webhooks.oneshot(req).await.into_response();
    }
    if dashboard::is_dashboard_path(&path) {
        return routes.dashboard.oneshot(req).await.into_response();
    }
    if !path.starts_with("/v1/") {
        return gateway_error(StatusCode::NOT_FOUND, "Not Found");
    }
    if openapi::is_public(req.method().as_str(), &path) {
        // A route with `Authorizer: NONE`: no token is checked and no identity attached.
        return routes.api.oneshot(req).await.into_response();
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let Some(claims) = token.and_then(|t| routes.key.verify(&t).ok()) else {
        return gateway_error(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    req.extensions_mut().insert(gateway_context(&claims));
    routes.api.oneshot(req).await.into_response()
}

/// API Gateway's own error responses (`{"message": ...}`), for what never reaches a Lambda.
fn gateway_error(status: StatusCode, message: &str) -> Response {
    let mut res = (status, axum::Json(serde_json::json!({ "message": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    res
}
