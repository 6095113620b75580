//! The webhooks router: provider notifications arrive here without a JWT. Each provider's route
//! verifies its proof and only enqueues a job; the worker does the sync. So far only Microsoft
//! Graph's subscription validation handshake is answered (Graph checks the URL before it creates a
//! subscription); notifications themselves get a 404 problem and nothing is enqueued.

use std::sync::Arc;

use axum::Router;

use crate::http::problem;
use crate::ports::{Clock, JobQueue};

/// What the webhook routes need: the queue they enqueue on, and the time.
#[derive(Clone)]
pub struct WebhookState {
    pub queue: Arc<dyn JobQueue>,
    pub clock: Arc<dyn Clock>,
}

pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/webhooks/microsoft", axum::routing::post(microsoft))
        .fallback(problem::not_found)
        .with_state(state)
}

/// Longest validation token echoed (Graph's are far shorter).
const MAX_VALIDATION_TOKEN: usize = 1024;

#[derive(serde::Deserialize)]
struct GraphQuery {
    #[serde(rename = "validationToken")]
    validation_token: Option<String>,
}

/// Graph's validation handshake: the `validationToken` query parameter echoed as `text/plain`
/// within 10 seconds. Change and lifecycle notifications are not handled yet (404 problem).
async fn microsoft(
    axum::extract::Query(query): axum::extract::Query<GraphQuery>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match query.validation_token {
        Some(token) if !token.is_empty() && token.len() <= MAX_VALIDATION_TOKEN => (
            [
                (http::header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            token,
        )
            .into_response(),
        Some(_) => {
            problem::ApiError::InvalidRequest("validationToken is empty or too long".into()).into_response()
        }
        None => problem::ApiError::NotFound.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryQueue;
    use crate::ports::SystemClock;
    use tower::ServiceExt;

    #[tokio::test]
    async fn unknown_webhook_routes_are_404_problems_and_enqueue_nothing() {
        let queue = Arc::new(MemoryQueue::new());
        let app = router(WebhookState { queue: queue.clone(), clock: Arc::new(SystemClock) });
        let req = http::Request::post("/webhooks/hubspot").body(axum::body::Body::from("{}")).unwrap();
        let res = app.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 404);
        assert_eq!(res.headers()["content-type"], problem::PROBLEM_CONTENT_TYPE);
        assert!(queue.jobs().is_empty());
    }

    #[tokio::test]
    async fn graph_validation_tokens_are_echoed_as_plain_text_and_enqueue_nothing() {
        let queue = Arc::new(MemoryQueue::new());
        let app = router(WebhookState { queue: queue.clone(), clock: Arc::new(SystemClock) });
        let req = http::Request::post("/webhooks/microsoft?validationToken=Validation%3A%20Testing%20client")
            .body(axum::body::Body::empty())
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
        let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
        assert_eq!(&body[..], b"Validation: Testing client");
        let long = "x".repeat(MAX_VALIDATION_TOKEN + 1);
        let req = http::Request::post(format!("/webhooks/microsoft?validationToken={long}"))
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 422);
        let notification =
            http::Request::post("/webhooks/microsoft").body(axum::body::Body::from("{}")).unwrap();
        assert_eq!(app.oneshot(notification).await.unwrap().status(), 404);
        assert!(queue.jobs().is_empty());
    }
}
