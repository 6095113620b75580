//! The local stack: everything AWS and the providers do around our handlers, on one machine with no
//! AWS account: moto for DynamoDB, SQS and EventBridge (resources created from template.yaml), the
//! provider fakes, a runner that fires the schedule and delivers SQS batches to the worker, and a
//! gateway that serves the API and webhook routers as API Gateway would.

pub mod cli;
pub mod counting;
pub mod demo;
pub mod demo_fireflies;
pub mod demo_notion;
pub mod fixtures;
pub mod gateway;
pub mod local;
pub mod proxy;
pub mod runner;
pub mod stack;

pub use local::{LocalStack, StackOptions};
