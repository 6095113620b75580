//! Adapters: implementations of the ports for AWS (DynamoDB, SQS, EventBridge), token encryption,
//! and each provider's HTTP API.

pub mod crypto;
pub mod drive;
pub mod dynamo;
pub mod eventbridge;
pub mod fireflies;
pub mod gmail;
pub mod google;
pub mod graph;
pub mod hubspot;
/// In-memory doubles of the stores, the queue, the bus and a provider: for tests of logic and the
/// bench's in-process scenarios, never in a Lambda (the `test-support` feature).
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
#[cfg(any(test, feature = "test-support"))]
pub mod memory_provider;
pub mod notion;
pub mod oauth;
pub mod provider_http;
pub mod salesforce;
pub mod secrets;
pub mod sqs;
