//! A Salesforce connection through the whole local path: schedule -> dispatcher -> SQS FIFO ->
//! worker (Salesforce adapter against the fake) -> DynamoDB -> API.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{Value, json};
use syncbridge_fakes::salesforce::{FakeConfig, Route, SeedCounts, make_id};
use syncbridge_tests::*;

const DRAIN: Duration = Duration::from_secs(120);

fn n(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_connection_syncs_every_object_type_and_refreshes_after_an_expired_session() {
    let seed_counts =
        SeedCounts { accounts: 10, contacts: 60, opportunities: 20, tasks: 5, events: 5, notes: 4 };
    let stack = LocalStack::start(StackOptions {
        salesforce: Some(FakeConfig { seed_counts, session_token: None, ..FakeConfig::default() }),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let fake = stack.salesforce.as_ref().unwrap();
    let org = fake.state();
    let issued = fake.issue_token();
    let created = api(&stack, "acme")
        .unwrap()
        .call(
            reqwest::Method::POST,
            "/v1/connections",
            Some(json!({
                "provider": "salesforce",
                "base_url": fake.base_url(),
                "access_token": issued.access_token,
                "refresh_token": issued.refresh_token,
            })),
        )
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    stack.runner.fire_schedule(chrono::Utc::now()).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let conn = get(&stack, "acme", &format!("/v1/connections/{id}")).await.unwrap();
    assert_eq!(conn["status"], "synced", "{conn}");
    for (object, count) in
        [("companies", 10), ("contacts", 60), ("deals", 20), ("activities", 10), ("notes", 4)]
    {
        assert_eq!(n(&conn, &format!("/record_counts/{object}")), count, "{object}: {conn}");
    }
    assert_eq!(org.route_count(Route::Token), 0);

    let tenant = syncbridge::domain::TenantId::parse("acme").unwrap();
    let cid = syncbridge::domain::ConnectionId::parse(id.clone()).unwrap();
    let stored = stack.deps.connections.get(&tenant, &cid).await.unwrap().unwrap();
    assert!(org.expire_token(stored.credentials.access_token.expose_secret()));
    org.edit(&make_id("003", 5), &[("Title", json!("Refreshed"))]).unwrap();

    let later = chrono::Utc::now() + chrono::Duration::minutes(16);
    stack.runner.fire_schedule(later).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    assert_eq!(org.route_count(Route::Token), 1, "a 401 INVALID_SESSION_ID is answered with one refresh");
    let runs = get(&stack, "acme", &format!("/v1/connections/{id}/runs")).await.unwrap();
    assert_eq!(n(&runs, "/items/0/counts/updated"), 1, "{runs}");
}

/// Sets every REST part's `deletes_from` in a Salesforce cursor to `at` (epoch ms): as if the
/// connection had not synced since then.
fn age_delete_window(cursor: &str, at: i64) -> String {
    let mut doc: Value = serde_json::from_str(cursor).unwrap();
    for part in doc["parts"].as_array_mut().unwrap() {
        if part["phase"] == "rest" {
            part["deletes_from"] = json!(at);
        }
    }
    doc.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_deletes_older_than_the_delete_log_are_found_by_reconciling_ids() {
    let seed_counts = SeedCounts { accounts: 3, contacts: 30, ..SeedCounts::default() };
    let stack = LocalStack::start(StackOptions {
        salesforce: Some(FakeConfig { seed_counts, session_token: None, ..FakeConfig::default() }),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let fake = stack.salesforce.as_ref().unwrap();
    let org = fake.state();
    let issued = fake.issue_token();
    let body = json!({
        "provider": "salesforce",
        "base_url": fake.base_url(),
        "access_token": issued.access_token,
        "refresh_token": issued.refresh_token,
    });
    let client = api(&stack, "acme").unwrap();
    let created = client.call(reqwest::Method::POST, "/v1/connections", Some(body)).await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    stack.runner.fire_schedule(chrono::Utc::now()).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);

    // Three contacts are deleted while the connection is away for 20 days: Salesforce's delete
    // log has forgotten them by the time it syncs again.
    let gone = [make_id("003", 4), make_id("003", 9), make_id("003", 17)];
    for g in &gone {
        assert!(org.delete(g));
    }
    assert_eq!(org.purge_deleted(), 3);
    let tenant = syncbridge::domain::TenantId::parse("acme").unwrap();
    let cid = syncbridge::domain::ConnectionId::parse(id.clone()).unwrap();
    let mut conn = stack.deps.connections.get(&tenant, &cid).await.unwrap().unwrap();
    let twenty_days_ago = (chrono::Utc::now() - chrono::Duration::days(20)).timestamp_millis();
    for cursor in conn.cursors.values_mut() {
        *cursor = syncbridge::domain::SyncCursor::new(age_delete_window(cursor.as_str(), twenty_days_ago));
    }
    stack.deps.connections.save_state(&conn).await.unwrap();

    stack.runner.fire_schedule(chrono::Utc::now() + chrono::Duration::minutes(16)).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let view = get(&stack, "acme", &format!("/v1/connections/{id}")).await.unwrap();
    assert_eq!(n(&view, "/record_counts/contacts"), 27, "{view}");
    assert_eq!(n(&view, "/record_counts/companies"), 3, "nothing else was taken for deleted: {view}");
    let runs = get(&stack, "acme", &format!("/v1/connections/{id}/runs")).await.unwrap();
    assert_eq!(n(&runs, "/items/0/counts/deleted"), 3, "{runs}");
    for g in &gone {
        let ext = syncbridge::domain::ExternalId::parse(g.clone()).unwrap();
        let stored = stack
            .deps
            .records
            .get_by_external(
                &tenant,
                &cid,
                syncbridge::domain::Provider::Salesforce,
                syncbridge::domain::ObjectType::Contacts,
                std::slice::from_ref(&ext),
            )
            .await
            .unwrap();
        assert!(stored[&ext].deleted, "{g} is a deleted record now");
    }

    // The window is whole again: the next sync lists deletes from the log, with no reconciling.
    org.reset_stats();
    stack.runner.fire_schedule(chrono::Utc::now() + chrono::Duration::minutes(32)).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let runs = get(&stack, "acme", &format!("/v1/connections/{id}/runs")).await.unwrap();
    assert_eq!(n(&runs, "/items/0/counts/deleted"), 0, "{runs}");
}
