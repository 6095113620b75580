//! HTTP: the API and webhook routers (axum), served by `lambda_http` in AWS and by the local gateway.

pub mod api;
pub mod auth;
pub mod openapi;
pub mod problem;
pub mod queues;
pub mod webhooks;
