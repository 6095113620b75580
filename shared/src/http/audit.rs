//! stub
use axum::Router;
use super::api::ApiState;
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
}
