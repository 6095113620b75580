//! Request spans for the API and webhook routers (`tower-http`'s trace layer): method and the
//! route *template* only, never the URI, whose query can carry an OAuth code or state.

use axum::extract::MatchedPath;
use axum::http::Request;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

/// The trace layer: one `http_request` span per request (`method`, `route`), and one line when
/// it is answered (status, latency).
pub fn layer<B>()
-> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, impl Fn(&Request<B>) -> tracing::Span + Clone> {
    TraceLayer::new_for_http()
        .make_span_with(|req: &Request<B>| {
            let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str());
            tracing::info_span!("http_request", method = %req.method(), route)
        })
        .on_response(DefaultOnResponse::new().level(Level::INFO))
}

#[cfg(test)]
mod tests {
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
        // Other tests on other threads may have cached these call sites' interest without this
        // subscriber: ask again.
        tracing::callsite::rebuild_interest_cache();
        let app = Router::new().route("/v1/oauth/callback", get(|| async { "ok" })).layer(super::layer());
        let request =
            axum::http::Request::get("/v1/oauth/callback?code=SECRET-CODE&state=S3").body(Body::empty());
        let response = app.oneshot(request.unwrap_or_default()).await;
        assert_eq!(response.map(|r| r.status().as_u16()).ok(), Some(200));
        let text =
            String::from_utf8(captured.0.lock().map(|b| b.clone()).unwrap_or_default()).unwrap_or_default();
        assert!(text.contains(r#""route":"/v1/oauth/callback""#), "{text}");
        assert!(text.contains(r#""method":"GET""#), "{text}");
        assert!(!text.contains("SECRET-CODE") && !text.contains("S3"), "{text}");
    }
}
