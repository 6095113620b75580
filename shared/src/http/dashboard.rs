//! The dashboard's files (`web/dist`, built by `make web`) and its start-up configuration, served
//! on the same origin as the API so the browser needs no CORS and the API's JWT stays the only
//! gate: every path outside `/v1/` and `/webhooks/` is a file of the build or, for the
//! single-page app's own routes, its `index.html`.
//!
//! In release builds (the Lambda zips) the files are compiled into the binary; in debug builds
//! `rust-embed` reads them from `web/dist` at each request, so a rebuilt dashboard shows without
//! restarting the local stack. A build without `web/dist` serves a page that says how to build it.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tower::ServiceExt;

#[derive(rust_embed::RustEmbed)]
#[folder = "../web/dist"]
#[allow_missing = true]
struct Assets;

/// How the dashboard signs people in, told to it by `GET /config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum DashboardAuth {
    /// Local only: the URL printed by `syncbridge dashboard` carries a token signed by the dev key.
    Dev,
    /// An OpenID Connect issuer (a Cognito user pool's hosted UI, or another), authorization code
    /// with PKCE; the ID token carries the tenant claim the API's JWT authorizer reads.
    Oidc { authority: String, client_id: String, scope: String },
}

impl DashboardAuth {
    /// From `DASHBOARD_OIDC_AUTHORITY`, `DASHBOARD_OIDC_CLIENT_ID` and optionally
    /// `DASHBOARD_OIDC_SCOPE`; `None` when the first two are not both set (the dashboard is then
    /// not served: a deployment without a sign-in has no use for it).
    pub fn oidc_from_env() -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        Some(DashboardAuth::Oidc {
            authority: var("DASHBOARD_OIDC_AUTHORITY")?,
            client_id: var("DASHBOARD_OIDC_CLIENT_ID")?,
            scope: var("DASHBOARD_OIDC_SCOPE").unwrap_or_else(|| "openid email profile".to_owned()),
        })
    }
}

#[derive(Serialize)]
struct DashboardConfig<'a> {
    auth: &'a DashboardAuth,
}

/// Whether a path belongs to the dashboard (everything but the API and the webhooks).
pub fn is_dashboard_path(path: &str) -> bool {
    !(path == "/v1" || path.starts_with("/v1/") || path.starts_with("/webhooks/"))
}

/// The dashboard's router: `GET /config.json` and the built files.
pub fn router(auth: DashboardAuth) -> Router {
    let config = serde_json::to_vec(&DashboardConfig { auth: &auth }).unwrap_or_default();
    Router::new().fallback(move |req: Request| {
        let config = config.clone();
        async move { serve(req, config) }
    })
}

/// `api` for `/v1/...` (and `/webhooks/...`), the dashboard for every other path: what the API
/// function serves in AWS, and what the local gateway does after its own authorizer.
pub fn in_front_of(api: Router, auth: DashboardAuth) -> Router {
    let dashboard = router(auth);
    Router::new().fallback(move |req: Request| {
        let (api, dashboard) = (api.clone(), dashboard.clone());
        async move {
            let target = if is_dashboard_path(req.uri().path()) { dashboard } else { api };
            target.oneshot(req).await.into_response()
        }
    })
}

fn serve(req: Request, config: Vec<u8>) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET, HEAD")]).into_response();
    }
    let path = req.uri().path().trim_start_matches('/');
    if path == "config.json" {
        return with_headers(Body::from(config), "application/json", "no-store");
    }
    let file = match path {
        "" => None,
        p => Assets::get(p).map(|f| (p, f)),
    };
    match file {
        Some((p, f)) => {
            // Vite names what it builds under assets/ by content hash: such a file never changes.
            let cache =
                if p.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
            with_headers(Body::from(f.data.into_owned()), f.metadata.mimetype(), cache)
        }
        // A file's path that is not in the build (it has an extension): a plain 404, not the app.
        None if path.rsplit('/').next().is_some_and(|last| last.contains('.')) => {
            (StatusCode::NOT_FOUND, "Not Found").into_response()
        }
        // The app's own routes (`/connections/c-1`): its index page, which routes in the browser.
        None => match Assets::get("index.html") {
            Some(index) => {
                with_headers(Body::from(index.data.into_owned()), "text/html; charset=utf-8", "no-cache")
            }
            None => with_headers(Body::from(NOT_BUILT), "text/html; charset=utf-8", "no-cache"),
        },
    }
}

const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Syncbridge</title></head>\
<body><main><h1>The dashboard is not built</h1><p>Run <code>make web</code>, then reload this page.</p></main></body></html>";

/// The dashboard's pages may load only what they come with; the API is on the same origin, and
/// `connect-src https:` lets the sign-in talk to the OIDC issuer's token endpoint.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
connect-src 'self' https:; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

fn with_headers(body: Body, content_type: &str, cache: &'static str) -> Response {
    let mut res = Response::new(body);
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn get(app: &Router, path: &str) -> (StatusCode, Option<String>, String) {
        let req = Request::builder().uri(path).body(Body::empty()).unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let ct = res.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
        let body = String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).into_owned();
        (status, ct, body)
    }

    #[tokio::test]
    async fn config_tells_the_sign_in_mode_without_anything_secret() {
        let app = router(DashboardAuth::Oidc {
            authority: "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc".into(),
            client_id: "client-1".into(),
            scope: "openid email".into(),
        });
        let (status, ct, body) = get(&app, "/config.json").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ct.as_deref(), Some("application/json"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["auth"]["mode"], "oidc");
        assert_eq!(v["auth"]["client_id"], "client-1");
        let (_, _, dev) = get(&router(DashboardAuth::Dev), "/config.json").await;
        assert_eq!(dev, r#"{"auth":{"mode":"dev"}}"#);
    }

    #[tokio::test]
    async fn app_routes_get_the_index_page_and_missing_files_a_404() {
        let app = router(DashboardAuth::Dev);
        let (status, ct, body) = get(&app, "/connections/c-123").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ct.as_deref(), Some("text/html; charset=utf-8"));
        assert!(body.contains("<html"), "{body}");
        let (status, _, _) = get(&app, "/assets/missing-abc123.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn only_the_api_paths_go_to_the_api() {
        let api = Router::new().fallback(|| async { (StatusCode::IM_A_TEAPOT, "api") });
        let app = in_front_of(api, DashboardAuth::Dev);
        assert_eq!(get(&app, "/v1/connections").await.0, StatusCode::IM_A_TEAPOT);
        assert_eq!(get(&app, "/v1").await.0, StatusCode::IM_A_TEAPOT);
        assert_eq!(get(&app, "/webhooks/hubspot").await.0, StatusCode::IM_A_TEAPOT);
        assert_eq!(get(&app, "/v1x").await.0, StatusCode::OK);
        assert_eq!(get(&app, "/").await.0, StatusCode::OK);
        let req = Request::builder().method(Method::POST).uri("/connections").body(Body::empty()).unwrap();
        assert_eq!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
