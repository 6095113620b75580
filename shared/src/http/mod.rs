//! HTTP: the API and webhook routers (axum), served by `lambda_http` in AWS and by the local gateway.

pub mod api;
pub mod audit;
pub mod auth;
pub mod dashboard;
pub mod lifecycle;
pub mod oauth;
pub mod openapi;
pub mod problem;
pub mod queues;
pub mod settings;
pub mod trace;
pub mod webhooks;

#[cfg(test)]
mod routes_tests;
