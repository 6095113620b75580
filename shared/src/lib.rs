//! Syncbridge: two-way sync between a user's own data and their CRM and calendar.
//!
//! The Lambda functions under `functions/` only wire this library together:
//! - [`domain`]: parsed, validated types (ids, connections, records, jobs, runs, audit entries);
//! - [`ports`]: the traits the engine calls (stores, queue, bus, provider clients);
//! - [`adapters`]: DynamoDB, SQS, EventBridge and provider implementations of those ports;
//! - [`sync`]: the dispatcher and worker handlers (the engine);
//! - [`http`]: the API and webhook routers (axum, served by `lambda_http`).

pub mod adapters;
pub mod config;
pub mod domain;
pub mod http;
pub mod ports;
pub mod retry;
pub mod sync;
pub mod telemetry;
pub mod wiring;
