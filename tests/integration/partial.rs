//! Partial failure per object type through the whole local path (schedule -> dispatcher -> SQS FIFO
//! -> worker -> adapter over HTTP -> DynamoDB -> API): a refusing proxy in front of each provider
//! fake answers one object type's requests as an account without that permission would, the fake
//! serves the rest.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use syncbridge::domain::{ConnectionId, ObjectType, TenantId};
use syncbridge_fakes::hubspot::FakeConfig as HubspotConfig;
use syncbridge_fakes::salesforce::{FakeConfig as SalesforceConfig, SeedCounts};
use syncbridge_local::proxy::RefusingProxy;
use syncbridge_tests::*;

const DRAIN: Duration = Duration::from_secs(120);

/// The `(scheme://host:port, path)` of a base URL.
fn split_origin(url: &str) -> (String, String) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => (url[..after_scheme + i].to_owned(), url[after_scheme + i..].to_owned()),
        None => (url.to_owned(), String::new()),
    }
}

async fn create(stack: &LocalStack, body: Value) -> String {
    let created =
        api(stack, "acme").unwrap().call(reqwest::Method::POST, "/v1/connections", Some(body)).await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

/// Fires a schedule tick `minutes` ahead and delivers every job; asserts none asked for a retry.
async fn scheduled_sync(stack: &LocalStack, minutes: i64) {
    stack.runner.fire_schedule(Utc::now() + chrono::Duration::minutes(minutes)).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
}

async fn newest_run(stack: &LocalStack, id: &str) -> Value {
    get(stack, "acme", &format!("/v1/connections/{id}/runs?limit=1")).await.unwrap()["items"][0].clone()
}

async fn stored(stack: &LocalStack, id: &str) -> syncbridge::domain::Connection {
    let (t, c) = (TenantId::parse("acme").unwrap(), ConnectionId::parse(id).unwrap());
    stack.deps.connections.get(&t, &c).await.unwrap().unwrap()
}

/// Moves the failed object type's `retry_at` into the past, as the passing of its backoff would.
async fn let_backoff_pass(stack: &LocalStack, id: &str, object: ObjectType) {
    let mut c = stored(stack, id).await;
    let error = c.object_errors.get_mut(&object).expect("the object type has an error");
    error.retry_at = Utc::now() - chrono::Duration::seconds(1);
    stack.deps.connections.save_state(&c).await.unwrap();
}

fn counts_by_object(records: &[Value]) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for r in records {
        *out.entry(r["object"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
    }
    out
}

/// The partial run, the health and the per-object status after `object` was refused; returns
/// the failed object's error as the run shows it.
async fn assert_partial(stack: &LocalStack, id: &str, object: &str, others: &[&str]) -> Value {
    let run = newest_run(stack, id).await;
    assert_eq!(run["status"], "partial", "{run}");
    for other in others {
        assert_eq!(run["objects"][other]["outcome"], "synced", "{other}: {run}");
    }
    let failed = &run["objects"][object];
    assert_eq!(failed["outcome"], "failed", "{run}");
    assert_eq!(failed["error"]["attempts"], 1, "{run}");
    assert_eq!(failed["error"]["class"], "permanent", "{run}");
    assert!(run["error"].as_str().is_some_and(|e| e.starts_with(&format!("{object}: HTTP "))), "{run}");

    let health = get(stack, "acme", &format!("/v1/connections/{id}/health")).await.unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    let reason = health["reasons"].as_array().unwrap().iter().find(|r| r["code"] == "object_failed").cloned();
    let reason = reason.unwrap_or_else(|| panic!("no object_failed reason: {health}"));
    assert!(reason["message"].as_str().unwrap().starts_with(&format!("{object} does not sync")), "{reason}");

    let status = get(stack, "acme", &format!("/v1/connections/{id}/status")).await.unwrap();
    assert_eq!(status["status"], "synced", "{status}");
    let entry =
        status["objects"].as_array().unwrap().iter().find(|o| o["object"] == object).cloned().unwrap();
    assert_eq!(
        (entry["state"].clone(), entry["has_cursor"].clone()),
        (json!("failed"), json!(false)),
        "{entry}"
    );
    failed["error"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_notes_refused_for_a_missing_scope_leave_the_other_types_synced_and_retry_after_backoff() {
    let stack = LocalStack::start(StackOptions {
        hubspot: HubspotConfig {
            contacts: 5,
            companies: 3,
            deals: 4,
            notes: 6,
            private_app_token: Some(HUBSPOT_TOKEN.into()),
            ..HubspotConfig::default()
        },
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let proxy = RefusingProxy::start(&stack.hubspot.base_url()).await.unwrap();
    proxy.refuse(
        "/objects/notes",
        403,
        json!({
            "status": "error",
            "message": "This app hasn't been granted all required scopes to make this call.",
            "errors": [{ "message": "One or more of the following scopes are required.", "context": { "requiredGranularScopes": ["crm.objects.notes.read"] } }],
            "category": "MISSING_SCOPES",
        }),
    );
    let id = connect(&stack, "acme", Some(&proxy.base_url())).await.unwrap();
    scheduled_sync(&stack, 0).await;

    let counts = counts_by_object(&all_records(&stack, "acme", &id).await.unwrap());
    assert_eq!(counts.get("contacts"), Some(&5), "{counts:?}");
    assert_eq!(
        (counts.get("companies"), counts.get("deals"), counts.get("notes")),
        (Some(&3), Some(&4), None)
    );
    let error = assert_partial(&stack, &id, "notes", &["contacts", "companies", "deals"]).await;
    assert_eq!((error["http_status"].clone(), error["code"].clone()), (json!(403), json!("MISSING_SCOPES")));
    let conn = stored(&stack, &id).await;
    assert!(!conn.cursors.contains_key(&ObjectType::Notes), "the failed cursor stays where it was");
    assert!(conn.cursors.contains_key(&ObjectType::Deals));

    // Fixed at the provider, but within the backoff: the next scheduled sync does not ask for notes.
    proxy.allow_all();
    let refused = proxy.refused();
    let notes_requests = stack.hubspot.state().stats().by_object.get("notes.list").copied();
    scheduled_sync(&stack, 16).await;
    let run = newest_run(&stack, &id).await;
    assert_eq!(
        (run["status"].clone(), run["objects"]["notes"]["outcome"].clone()),
        (json!("partial"), json!("skipped"))
    );
    assert_eq!(stack.hubspot.state().stats().by_object.get("notes.list").copied(), notes_requests);
    assert_eq!(proxy.refused(), refused);

    // Once the backoff has passed, the next scheduled sync pulls notes and all is well.
    let_backoff_pass(&stack, &id, ObjectType::Notes).await;
    scheduled_sync(&stack, 32).await;
    let run = newest_run(&stack, &id).await;
    assert_eq!(
        (run["status"].clone(), run["objects"]["notes"]["created"].clone()),
        (json!("succeeded"), json!(6)),
        "{run}"
    );
    let conn = stored(&stack, &id).await;
    assert!(conn.object_errors.is_empty() && conn.cursors.contains_key(&ObjectType::Notes));
    let health = get(&stack, "acme", &format!("/v1/connections/{id}/health")).await.unwrap();
    assert_eq!(health["status"], "healthy", "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_notes_whose_query_is_refused_leave_the_other_sobjects_synced_and_retry_after_backoff() {
    let seed_counts =
        SeedCounts { accounts: 3, contacts: 8, opportunities: 2, tasks: 1, events: 1, notes: 4 };
    let stack = LocalStack::start(StackOptions {
        salesforce: Some(SalesforceConfig {
            seed_counts,
            session_token: None,
            ..SalesforceConfig::default()
        }),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let fake = stack.salesforce.as_ref().unwrap();
    let proxy = RefusingProxy::start(&fake.base_url()).await.unwrap();
    fake.state().set_instance_url(Some(proxy.base_url()));
    proxy.refuse(
        " FROM Note",
        400,
        json!([{ "message": "sObject type 'Note' is not supported.", "errorCode": "INVALID_TYPE" }]),
    );
    let issued = fake.issue_token();
    let id = create(
        &stack,
        json!({ "provider": "salesforce", "base_url": proxy.base_url(), "access_token": issued.access_token, "refresh_token": issued.refresh_token }),
    )
    .await;
    scheduled_sync(&stack, 0).await;

    let counts = counts_by_object(&all_records(&stack, "acme", &id).await.unwrap());
    assert_eq!(
        (counts.get("companies"), counts.get("contacts"), counts.get("notes")),
        (Some(&3), Some(&8), None),
        "{counts:?}"
    );
    let error = assert_partial(&stack, &id, "notes", &["companies", "contacts", "deals", "activities"]).await;
    assert_eq!((error["http_status"].clone(), error["code"].clone()), (json!(400), json!("INVALID_TYPE")));
    assert!(!stored(&stack, &id).await.cursors.contains_key(&ObjectType::Notes));

    proxy.allow_all();
    scheduled_sync(&stack, 16).await;
    assert_eq!(newest_run(&stack, &id).await["objects"]["notes"]["outcome"], "skipped");
    let_backoff_pass(&stack, &id, ObjectType::Notes).await;
    scheduled_sync(&stack, 32).await;
    let run = newest_run(&stack, &id).await;
    assert_eq!(
        (run["status"].clone(), run["objects"]["notes"]["created"].clone()),
        (json!("succeeded"), json!(4)),
        "{run}"
    );
    assert!(stored(&stack, &id).await.object_errors.is_empty());
}

/// A calendar connection has one object type: refusing it fails the whole pull, so the connection
/// is in `error` (health `failed`, naming the object type), scheduled syncs back off without a
/// request, and the retry action (a manual sync) tries at once and recovers.
async fn a_refused_calendar_fails_the_connection_then_recovers(
    stack: &LocalStack,
    provider: &str,
    fake_base: &str,
    token: &str,
    refuse: &str,
    body: Value,
) {
    let (origin, path) = split_origin(fake_base);
    let proxy = RefusingProxy::start(&origin).await.unwrap();
    proxy.refuse(refuse, 403, body);
    let base_url = format!("{}{path}", proxy.base_url());
    let id =
        create(stack, json!({ "provider": provider, "base_url": base_url, "access_token": token })).await;
    scheduled_sync(stack, 0).await;

    let run = newest_run(stack, &id).await;
    assert_eq!(
        (run["status"].clone(), run["objects"]["events"]["outcome"].clone()),
        (json!("failed"), json!("failed")),
        "{run}"
    );
    assert_eq!(run["objects"]["events"]["error"]["http_status"], 403, "{run}");
    let conn = get(stack, "acme", &format!("/v1/connections/{id}")).await.unwrap();
    assert_eq!(conn["status"], "error", "{conn}");
    assert!(conn["last_error"].as_str().is_some_and(|e| e.contains("events: HTTP 403")), "{conn}");
    assert_eq!(conn["object_errors"]["events"]["attempts"], 1, "{conn}");
    let health = get(stack, "acme", &format!("/v1/connections/{id}/health")).await.unwrap();
    assert_eq!(health["status"], "failed", "{health}");
    let codes: Vec<&str> =
        health["reasons"].as_array().unwrap().iter().filter_map(|r| r["code"].as_str()).collect();
    assert!(codes.contains(&"sync_error") && codes.contains(&"object_failed"), "{health}");
    assert!(all_records(stack, "acme", &id).await.unwrap().is_empty());

    // Within the backoff a scheduled sync makes no request and writes no run.
    proxy.allow_all();
    let refused = proxy.refused();
    scheduled_sync(stack, 16).await;
    assert_eq!(newest_run(stack, &id).await["run_id"], run["run_id"]);
    assert_eq!(proxy.refused(), refused);

    // The retry action syncs at once.
    let retried = api(stack, "acme")
        .unwrap()
        .call(reqwest::Method::POST, &format!("/v1/connections/{id}/retry"), None)
        .await;
    assert!(retried.is_ok(), "{retried:?}");
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let run = newest_run(stack, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let conn = get(stack, "acme", &format!("/v1/connections/{id}")).await.unwrap();
    assert_eq!(
        (conn["status"].clone(), conn["object_errors"].clone()),
        (json!("synced"), json!({})),
        "{conn}"
    );
    assert!(!all_records(stack, "acme", &id).await.unwrap().is_empty(), "the calendar's events arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_google_calendar_answering_403_puts_the_connection_in_error_until_the_retry_action_succeeds() {
    let stack = stack(0, false).await.unwrap();
    let body = json!({ "error": {
        "errors": [{ "domain": "global", "reason": "insufficientPermissions", "message": "Insufficient Permission" }],
        "code": 403,
        "message": "Request had insufficient authentication scopes.",
    }});
    let base = stack.google.base_url();
    a_refused_calendar_fails_the_connection_then_recovers(
        &stack,
        "google",
        &base,
        "ya29.fake-google",
        "/events",
        body,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_calendar_answering_403_puts_the_connection_in_error_until_the_retry_action_succeeds() {
    let stack = LocalStack::start(StackOptions {
        graph: syncbridge_fakes::graph::FakeConfig { events: 5, ..Default::default() },
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let body = json!({ "error": { "code": "ErrorAccessDenied", "message": "Access is denied. Check credentials and try again." } });
    let base = stack.graph.base_url();
    a_refused_calendar_fails_the_connection_then_recovers(
        &stack,
        "microsoft",
        &base,
        "graph-fake-token",
        "/calendarView",
        body,
    )
    .await;
}
