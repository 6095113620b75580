//! Integration tests: one binary, each test with its own moto, fakes and gateway on random ports.

// Test code: an unwrap that fails is a failed test.
#![allow(clippy::unwrap_used)]

mod aws_adapters;
mod aws_support;
mod calendar_tasks;
mod channels;
mod crm_records;
mod drive_adapter;
mod e2e;
mod faults;
mod fireflies_adapter;
mod fireflies_connect;
mod gmail_adapter;
mod gmail_push;
mod google_adapter;
mod graph_adapter;
mod hubspot_activities;
mod hubspot_adapter;
mod hubspot_objects;
mod interleavings_hubspot;
mod lambda_fixtures;
mod lifecycle_api;
mod lifecycle_store;
mod meeting_links;
mod notion_adapter;
mod oauth;
mod openapi;
mod partial;
mod provider_support;
mod queues;
mod salesforce_adapter;
mod salesforce_e2e;
mod secrets;
mod stack;
mod two_way;
mod webhooks;
mod write_budget;
