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
