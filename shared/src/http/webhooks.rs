//! The webhooks router: provider notifications arrive here without a JWT. Each provider's route
//! verifies its proof and only enqueues a job; the worker does the sync. No provider route is
//! enabled yet, so every request gets a 404 problem and nothing is enqueued.

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
    Router::new().fallback(problem::not_found).with_state(state)
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
}
