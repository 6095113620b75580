//! Two-way sync end to end on the local stack (moto, the provider fakes over HTTP, the runner and
//! the API): pushes through the approval queue with every SQS message delivered twice, conflicts
//! parked and resolved through the API, and no ping-pong afterwards.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use syncbridge_fakes::hubspot::store::ObjectKind;
use syncbridge_tests::{all_records, api, connect, get, stack};

const DRAIN: Duration = Duration::from_secs(120);
const GOOGLE_TOKEN: &str = "ya29.fake-google";

async fn call(
    stack: &syncbridge_tests::LocalStack,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    api(stack, "acme").unwrap().call(method, path, Some(body)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_delivered_twice_still_creates_each_note_event_and_edit_once() {
    let stack = stack(20, false).await.unwrap();
    let hubspot_id = connect(&stack, "acme", None).await.unwrap();
    let google = call(
        &stack,
        reqwest::Method::POST,
        "/v1/connections",
        json!({ "provider": "google", "base_url": stack.google.base_url(), "access_token": GOOGLE_TOKEN }),
    )
    .await;
    let google_id = google["id"].as_str().unwrap().to_owned();
    stack.runner.deliver_twice.store(true, Ordering::Relaxed);
    stack.runner.fire_schedule(Utc::now()).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);

    let contacts = all_records(&stack, "acme", &hubspot_id).await.unwrap();
    let contact = contacts.iter().find(|r| r["object"] == "contacts").unwrap();
    let (rid, ext) = (contact["record_id"].as_str().unwrap(), contact["external_id"].as_str().unwrap());
    let note = call(
        &stack,
        reqwest::Method::POST,
        &format!("/v1/connections/{hubspot_id}/push"),
        json!({ "action": "create_note", "record_id": rid, "fields": { "body": "Met Ann; wants a demo" }, "idempotency_key": "summary-42" }),
    )
    .await;
    let edit = call(
        &stack,
        reqwest::Method::POST,
        &format!("/v1/connections/{hubspot_id}/records/{rid}/edit"),
        json!({ "fields": { "job_title": "Head of Sync" }, "idempotency_key": "edit-42" }),
    )
    .await;
    let start = Utc::now() + chrono::Duration::days(2);
    let meeting = call(
        &stack,
        reqwest::Method::POST,
        &format!("/v1/connections/{google_id}/push"),
        json!({ "action": "create_event", "priority": "high", "fields": {
            "title": "Demo for Initech", "start": start.to_rfc3339(), "end": (start + chrono::Duration::minutes(30)).to_rfc3339(),
            "attendees": ["ann@initech.example"] }, "idempotency_key": "suggest-7" }),
    )
    .await;
    let ids: Vec<&Value> = vec![&note["push_id"], &edit["push_id"], &meeting["push_id"]];
    let approved = call(&stack, reqwest::Method::POST, "/v1/push/approve", json!({ "ids": ids })).await;
    assert!(approved["items"].as_array().unwrap().iter().all(|i| i["ok"] == true), "{approved}");
    let hubspot = stack.hubspot.state();
    let events_before = stack.google.state().event_count();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);

    let notes = hubspot.find_starting(ObjectKind::Notes, "hs_note_body", "[ARIA] Met Ann; wants a demo\n");
    assert_eq!(notes.len(), 1, "one note at HubSpot");
    assert_eq!(hubspot.object(ObjectKind::Contacts, ext).unwrap()["properties"]["jobtitle"], "Head of Sync");
    assert_eq!(stack.google.state().event_count(), events_before + 1, "one meeting at Google");
    let pushes = get(&stack, "acme", "/v1/push?status=completed").await.unwrap();
    assert_eq!(pushes["items"].as_array().map(Vec::len), Some(3), "{pushes}");

    // Ping-pong: later syncs (also delivered twice) pull our writes back as no change.
    hubspot.reset_stats();
    stack.runner.fire_schedule(Utc::now() + chrono::Duration::minutes(16)).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let runs = get(&stack, "acme", &format!("/v1/connections/{hubspot_id}/runs")).await.unwrap();
    let latest = &runs["items"][0]["counts"];
    assert_eq!((latest["updated"].as_u64(), latest["pushed"].as_u64()), (Some(0), Some(0)), "{latest}");
    assert_eq!(hubspot.stats().routes.get("batch_update").copied().unwrap_or(0), 0);
}
