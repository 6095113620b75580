//! Adapters: implementations of the ports for AWS (DynamoDB, SQS, EventBridge), token encryption,
//! and each provider's HTTP API.

pub mod crypto;
pub mod dynamo;
pub mod eventbridge;
pub mod google;
pub mod graph;
pub mod hubspot;
pub mod memory;
pub mod memory_provider;
pub mod oauth;
pub mod provider_http;
pub mod salesforce;
pub mod secrets;
pub mod sqs;
