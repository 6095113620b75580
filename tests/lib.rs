//! Test harness: each test starts its own [`LocalStack`] (moto, resources from template.yaml, the
//! HubSpot fake, the runner and the gateway, all on OS-picked 127.0.0.1 ports) and drops it at the
//! end, which stops every server it started.

use anyhow::{Context, Result};
use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::{Value, json};
use syncbridge::domain::{ConnectionId, Job, JobReason, TenantId};
use syncbridge_fakes::hubspot::FakeConfig;
pub use syncbridge_local::cli::ApiClient;
pub use syncbridge_local::{LocalStack, StackOptions};

pub const HUBSPOT_TOKEN: &str = "pat-test-hubspot";

/// A stack whose HubSpot fake holds `contacts` contacts.
pub async fn stack(contacts: usize, rate_limits: bool) -> Result<LocalStack> {
    LocalStack::start(StackOptions {
        hubspot: FakeConfig {
            contacts,
            rate_limits,
            private_app_token: Some(HUBSPOT_TOKEN.into()),
            ..FakeConfig::default()
        },
        ..StackOptions::default()
    })
    .await
}

/// The API as `tenant` sees it.
pub fn api(stack: &LocalStack, tenant: &str) -> Result<ApiClient> {
    Ok(ApiClient::new(stack.gateway.base_url(), stack.token(tenant)?))
}

/// Connects `tenant` to the stack's HubSpot fake (or `base_url`) through the API; returns its id.
pub async fn connect(stack: &LocalStack, tenant: &str, base_url: Option<&str>) -> Result<String> {
    let hubspot = stack.hubspot.base_url();
    let c = api(stack, tenant)?
        .call(
            reqwest::Method::POST,
            "/v1/connections",
            Some(json!({ "provider": "hubspot", "base_url": base_url.unwrap_or(&hubspot), "access_token": HUBSPOT_TOKEN })),
        )
        .await?;
    Ok(c.get("id").and_then(Value::as_str).context("connection id")?.to_owned())
}

/// A GET through the API as `tenant`.
pub async fn get(stack: &LocalStack, tenant: &str, path: &str) -> Result<Value> {
    api(stack, tenant)?.call(reqwest::Method::GET, path, None).await
}

/// Every record of a connection, following `next_page_token` through the API.
pub async fn all_records(stack: &LocalStack, tenant: &str, connection: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!("/v1/connections/{connection}/records?limit=100&page_token={t}"),
            None => format!("/v1/connections/{connection}/records?limit=100"),
        };
        let page = get(stack, tenant, &path).await?;
        out.extend(page.get("items").and_then(Value::as_array).cloned().unwrap_or_default());
        token = page.get("next_page_token").and_then(Value::as_str).map(str::to_owned);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// A scheduled-sync job for a connection, as the dispatcher would enqueue it.
pub fn job(tenant: &str, connection: &str) -> Result<Job> {
    let t = TenantId::parse(tenant)?;
    let c = ConnectionId::parse(connection)?;
    let id = Job::requested_id(&c, JobReason::Manual);
    Ok(Job::sync(t, c, id, JobReason::Manual, chrono::Utc::now()))
}

/// An SQS event as Lambda's event source mapping delivers it: `(message id, body, group)` each.
pub fn sqs_event(messages: &[(&str, String, String)]) -> Result<SqsEvent> {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body, group)| {
            json!({
                "messageId": id,
                "receiptHandle": format!("rh-{id}"),
                "body": body,
                "attributes": { "MessageGroupId": group, "ApproximateReceiveCount": "1" },
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:jobs.fifo",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    Ok(serde_json::from_value(json!({ "Records": records }))?)
}
