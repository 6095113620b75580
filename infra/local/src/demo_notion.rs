//! The demo's Notion step: a tenant connects a Notion workspace used as a CRM (a deals and a
//! contacts database, Notion's rate limit on) with an internal integration token; the first sync
//! is a full pull; a person edits a deal and trashes another; "sync now" brings just those
//! changes (the trashed deal as a delete); an approved activity lands on the deal's page as one
//! block, once.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use serde_json::{Value, json};
use syncbridge_fakes::notion::FakeConfig;

use crate::cli::ApiClient;
use crate::local::LocalStack;

/// What the demo starts the Notion fake with.
pub fn fake_config() -> FakeConfig {
    FakeConfig { crm: true, deals: 40, contacts: 10, rate_limits: true, ..FakeConfig::default() }
}

/// Runs the step for `tenant`; returns the new connection's id.
pub async fn run(stack: &LocalStack, api: &ApiClient, tenant: &str) -> Result<String> {
    let fake = stack.notion.as_ref().context("the Notion fake")?;
    let state = fake.state();
    let crm = state.crm().context("the seeded CRM")?;
    // The seeded CRM is older than the connection, as a real one is.
    state.advance_clock(chrono::Duration::minutes(10));
    state.reset_stats();
    let body = json!({
        "provider": "notion",
        "base_url": fake.base_url(),
        "access_token": FakeConfig::default().token,
        "settings": { "notion": {
            "deals_database_id": crm.deals_database,
            "contacts_database_id": crm.contacts_database,
        } },
    });
    let created = api.call(reqwest::Method::POST, "/v1/connections", Some(body)).await?;
    let id = created.get("id").and_then(Value::as_str).context("connection id")?.to_owned();
    stack.runner.fire_schedule(Utc::now()).await?;
    stack.runner.drain(Duration::from_secs(600)).await?;
    let full = last_run(api, &id).await?;
    println!(
        "   {tenant} connected Notion with an integration token: full sync pulled {} page(s) (40 deals, 10 contacts) \
         in {} Notion request(s), {} answered 429",
        count(&full, "pulled"),
        count(&full, "requests"),
        count(&full, "rate_limited"),
    );

    let deals = state.page_ids(&crm.deals_data_source);
    state.edit_page(
        &deals[0],
        json!({ "Stage": { "status": { "name": "Won" } }, "Value": { "number": 125000 } }),
    )?;
    state.trash_page(&deals[1], true)?;
    api.call(reqwest::Method::POST, &format!("/v1/connections/{id}/sync"), Some(json!({}))).await?;
    stack.runner.drain(Duration::from_secs(600)).await?;
    let incremental = last_run(api, &id).await?;
    println!(
        "   a Notion user wins one deal and trashes another; sync now pulled {} page(s) ({} updated, {} deleted) \
         in {} request(s)",
        count(&incremental, "pulled"),
        count(&incremental, "updated"),
        count(&incremental, "deleted"),
        count(&incremental, "requests"),
    );
    if count(&incremental, "updated") != 1 || count(&incremental, "deleted") != 1 {
        bail!("the incremental Notion sync did not bring exactly the edit and the delete: {incremental}");
    }

    let records = api
        .call(reqwest::Method::GET, &format!("/v1/connections/{id}/records?object=deals&limit=100"), None)
        .await?;
    let won = records
        .get("items")
        .and_then(Value::as_array)
        .and_then(|items| items.iter().find(|r| r.get("external_id") == Some(&json!(deals[0]))))
        .context("the won deal")?;
    let rid = won.get("record_id").and_then(Value::as_str).context("record id")?;
    let note = api
        .call(
            reqwest::Method::POST,
            &format!("/v1/connections/{id}/push"),
            Some(json!({ "action": "create_note", "record_id": rid, "fields": { "body": "Signed: kickoff on Monday" }, "idempotency_key": "demo-notion-note-1" })),
        )
        .await?;
    api.call(reqwest::Method::POST, "/v1/push/approve", Some(json!({ "ids": [note.get("push_id")] })))
        .await?;
    stack.runner.drain(Duration::from_secs(600)).await?;
    let blocks = state.blocks(&deals[0]);
    let text = blocks
        .first()
        .and_then(|b| b.pointer("/paragraph/rich_text/0/plain_text"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    println!("   an approved activity is appended to the deal's page: {} block(s), \"{text}\"", blocks.len());
    if blocks.len() != 1 || !text.contains("Signed: kickoff on Monday") {
        bail!("the activity did not arrive on the Notion page exactly once");
    }
    let stats = state.stats();
    println!("   Notion requests in this step: {} ({} answered 429)", stats.total, stats.rate_limited);
    Ok(id)
}

async fn last_run(api: &ApiClient, id: &str) -> Result<Value> {
    let runs = api.call(reqwest::Method::GET, &format!("/v1/connections/{id}/runs?limit=1"), None).await?;
    runs.pointer("/items/0").cloned().context("a run")
}

fn count(run: &Value, key: &str) -> u64 {
    run.pointer(&format!("/counts/{key}")).and_then(Value::as_u64).unwrap_or(0)
}
