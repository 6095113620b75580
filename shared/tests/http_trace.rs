//! The API and webhook routers' trace layer, in a test binary of its own: a scoped subscriber sees
//! every event only when no other test thread races it for the call sites' cached interest.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use tower::ServiceExt;

/// A writer that keeps what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn request_lines_name_the_route_template_and_never_the_query() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_span_list(true)
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = Router::new()
        .route("/v1/oauth/callback", get(|| async { "ok" }))
        .layer(syncbridge::http::trace::layer());
    let request =
        axum::http::Request::get("/v1/oauth/callback?code=SECRET-CODE&state=S3").body(Body::empty());
    let response = app.oneshot(request.unwrap_or_default()).await;
    assert_eq!(response.map(|r| r.status().as_u16()).ok(), Some(200));
    let text =
        String::from_utf8(captured.0.lock().map(|b| b.clone()).unwrap_or_default()).unwrap_or_default();
    assert!(text.contains(r#""route":"/v1/oauth/callback""#), "{text}");
    assert!(text.contains(r#""method":"GET""#), "{text}");
    assert!(!text.contains("SECRET-CODE") && !text.contains("state=S3"), "{text}");
}
