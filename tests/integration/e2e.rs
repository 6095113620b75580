//! The whole path, end to end: schedule -> dispatcher -> SQS FIFO -> worker -> DynamoDB -> API.

use std::time::Duration;

use serde_json::Value;
use syncbridge::sync::{Deadline, worker};
use syncbridge_fakes::hubspot::{Fault, FaultKind, ObjectKind, Route};
use syncbridge_tests::*;

const DRAIN: Duration = Duration::from_secs(120);

fn n(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(u64::MAX)
}

fn items(v: &Value) -> Vec<Value> {
    v.get("items").and_then(Value::as_array).cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_scheduled_sync_pulls_every_contact_into_dynamodb_and_reports_it_through_the_api() {
    let stack = stack(250, true).await.unwrap();
    let id = connect(&stack, "acme", None).await.unwrap();

    let tick = stack.runner.fire_schedule(chrono::Utc::now()).await.unwrap();
    assert_eq!((tick.due, tick.enqueued), (1, 1));
    let drained = stack.runner.drain(DRAIN).await.unwrap();
    assert_eq!((drained.messages, drained.failures), (1, 0));

    let conn = get(&stack, "acme", &format!("/v1/connections/{id}")).await.unwrap();
    assert_eq!(conn["status"], "synced");
    assert_eq!(n(&conn, "/record_counts/contacts"), 250);
    let runs = items(&get(&stack, "acme", &format!("/v1/connections/{id}/runs")).await.unwrap());
    assert_eq!(runs.len(), 1);
    assert_eq!(n(&runs[0], "/counts/pulled"), 250);
    assert_eq!(n(&runs[0], "/counts/created"), 250);
    assert_eq!(n(&runs[0], "/counts/rate_limited"), 0);

    let seen = all_records(&stack, "acme", &id).await.unwrap().len();
    assert_eq!(seen, 250);

    let events = stack.take_events().await.unwrap();
    let of = |t: &str| events.iter().filter(|e| e["detail-type"] == t).count();
    assert_eq!(of("record.created"), 250);
    assert_eq!(of("sync.completed"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_sync_after_edits_in_hubspot_pulls_only_the_changed_contacts() {
    let stack = stack(300, true).await.unwrap();
    let id = connect(&stack, "acme", None).await.unwrap();
    stack.runner.fire_schedule(chrono::Utc::now()).await.unwrap();
    stack.runner.drain(DRAIN).await.unwrap();

    let hubspot = stack.hubspot.state();
    for contact in ["7", "70", "170"] {
        hubspot.edit_contact(contact, &[("jobtitle", "Chief Sync Officer")]).unwrap();
    }
    hubspot.reset_stats();
    let later = chrono::Utc::now() + chrono::Duration::minutes(16);
    assert_eq!(stack.runner.fire_schedule(later).await.unwrap().enqueued, 1);
    stack.runner.drain(DRAIN).await.unwrap();

    let runs = items(&get(&stack, "acme", &format!("/v1/connections/{id}/runs")).await.unwrap());
    assert_eq!(runs.len(), 2);
    let latest = &runs[0];
    assert_eq!(n(latest, "/counts/updated"), 3);
    assert_eq!(n(latest, "/counts/created"), 0);
    // One search per HubSpot type (contacts, companies, deals, notes, calls, emails, meetings,
    // tasks); no archived scan yet. The connection's pacer outlives the first job, so its last
    // searches do not cause a 429 now.
    assert!(n(latest, "/counts/requests") <= 8, "incremental took {latest}");
    assert_eq!(n(latest, "/counts/rate_limited"), 0);
    assert!(hubspot.stats().total <= 8);
    let records = all_records(&stack, "acme", &id).await.unwrap();
    assert_eq!(records.len(), 300);
    let titled = records.iter().filter(|r| r["fields"]["job_title"] == "Chief Sync Officer").count();
    assert_eq!(titled, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_job_message_changes_nothing_the_second_time() {
    let stack = stack(120, false).await.unwrap();
    let id = connect(&stack, "acme", None).await.unwrap();
    let job = job("acme", &id).unwrap();
    let event = || sqs_event(&[("m-1", job.to_body(), job.message_group())]).unwrap();

    let first = worker::handle_batch(&stack.deps, event(), Deadline::after(Duration::from_secs(60))).await;
    assert!(first.batch_item_failures.is_empty());
    let hubspot = stack.hubspot.state();
    hubspot.reset_stats();
    stack.take_events().await.unwrap();

    let second = worker::handle_batch(&stack.deps, event(), Deadline::after(Duration::from_secs(60))).await;
    assert!(second.batch_item_failures.is_empty());
    assert_eq!(hubspot.stats().total, 0, "a redelivery must not call HubSpot again");
    let runs = items(&get(&stack, "acme", &format!("/v1/connections/{id}/runs")).await.unwrap());
    assert_eq!(runs.len(), 1);
    assert!(stack.take_events().await.unwrap().is_empty());
    let conn = get(&stack, "acme", &format!("/v1/connections/{id}")).await.unwrap();
    assert_eq!(n(&conn, "/record_counts/contacts"), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_from_hubspot_is_honoured_and_the_sync_still_completes() {
    let stack = stack(150, true).await.unwrap();
    let id = connect(&stack, "acme", None).await.unwrap();
    let hubspot = stack.hubspot.state();
    hubspot.inject_fault(Fault {
        route: Route::List,
        kind: FaultKind::RateLimit { policy: Some("SECONDLY".into()), retry_after_secs: None },
        count: 2,
    });

    stack.runner.fire_schedule(chrono::Utc::now()).await.unwrap();
    let drained = stack.runner.drain(DRAIN).await.unwrap();
    assert_eq!(drained.failures, 0);

    assert_eq!(hubspot.stats().rate_limited, 2);
    let runs = items(&get(&stack, "acme", &format!("/v1/connections/{id}/runs")).await.unwrap());
    assert_eq!(n(&runs[0], "/counts/rate_limited"), 2);
    assert_eq!(n(&runs[0], "/counts/created"), 150);
    let conn = get(&stack, "acme", &format!("/v1/connections/{id}")).await.unwrap();
    assert_eq!(conn["status"], "synced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_reports_only_the_failed_message_of_a_batch() {
    let stack = stack(50, false).await.unwrap();
    let good_a = connect(&stack, "acme", None).await.unwrap();
    let unreachable = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let bad = connect(&stack, "globex", Some(&unreachable)).await.unwrap();
    let good_c = connect(&stack, "initech", None).await.unwrap();
    let jobs =
        [job("acme", &good_a).unwrap(), job("globex", &bad).unwrap(), job("initech", &good_c).unwrap()];
    let event = sqs_event(&[
        ("m-a", jobs[0].to_body(), jobs[0].message_group()),
        ("m-b", jobs[1].to_body(), jobs[1].message_group()),
        ("m-c", jobs[2].to_body(), jobs[2].message_group()),
    ])
    .unwrap();

    let res = worker::handle_batch(&stack.deps, event, Deadline::after(Duration::from_secs(60))).await;
    let failed: Vec<&str> = res.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, vec!["m-b"]);
    for (tenant, id) in [("acme", &good_a), ("initech", &good_c)] {
        let conn = get(&stack, tenant, &format!("/v1/connections/{id}")).await.unwrap();
        assert_eq!(conn["status"], "synced");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_job_message_is_audited_and_acknowledged_without_stopping_the_batch() {
    let stack = stack(10, false).await.unwrap();
    let id = connect(&stack, "acme", None).await.unwrap();
    let good = job("acme", &id).unwrap();
    let event = sqs_event(&[
        ("m-bad", "{\"v\":1,\"kind\":\"explode\"}".to_owned(), "g-bad".to_owned()),
        ("m-junk", "not json at all".to_owned(), "g-junk".to_owned()),
        ("m-good", good.to_body(), good.message_group()),
    ])
    .unwrap();

    let res = worker::handle_batch(&stack.deps, event, Deadline::after(Duration::from_secs(60))).await;
    assert!(res.batch_item_failures.is_empty(), "malformed messages must be acknowledged, not retried");
    let conn = get(&stack, "acme", &format!("/v1/connections/{id}")).await.unwrap();
    assert_eq!(conn["status"], "synced");
    let system = syncbridge::domain::TenantId::system();
    let audit = stack
        .deps
        .audit
        .query(&system, &syncbridge::ports::AuditQuery { limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(audit.items.len(), 2);
    assert!(audit.items.iter().all(|e| e.outcome == syncbridge::domain::AuditOutcome::Rejected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_overlapping_dispatchers_never_enqueue_the_same_slot_twice() {
    let stack = stack(5, false).await.unwrap();
    for tenant in ["a1", "a2", "a3", "a4", "a5", "a6"] {
        connect(&stack, tenant, None).await.unwrap();
    }
    let now = chrono::Utc::now();
    let (x, y) = tokio::join!(stack.runner.fire_schedule(now), stack.runner.fire_schedule(now));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.enqueued + y.enqueued, 6);
    assert_eq!(stack.runner.queue_depth().await.unwrap(), 6);
    let drained = stack.runner.drain(DRAIN).await.unwrap();
    assert_eq!((drained.messages, drained.failures), (6, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_requires_a_token_and_never_shows_one_tenant_another_tenants_connection() {
    let stack = stack(1, false).await.unwrap();
    let id = connect(&stack, "acme", None).await.unwrap();
    let url = format!("{}/v1/connections/{id}", stack.gateway.base_url());
    let anonymous = reqwest::get(&url).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let other = api(&stack, "globex")
        .unwrap()
        .call(reqwest::Method::GET, &format!("/v1/connections/{id}"), None)
        .await;
    let err = other.unwrap_err().to_string();
    assert!(err.contains("404"), "{err}");
    let mine = get(&stack, "acme", &format!("/v1/connections/{id}")).await.unwrap();
    assert!(!mine.to_string().contains(HUBSPOT_TOKEN), "the API must never return a token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_refreshes_an_oauth_token_near_expiry_before_pulling_and_after_a_401() {
    let stack = stack(40, false).await.unwrap();
    let hubspot = stack.hubspot.state();
    let issued = hubspot.issue_token(Some(Duration::from_secs(120)));
    let created = api(&stack, "acme")
        .unwrap()
        .call(
            reqwest::Method::POST,
            "/v1/connections",
            Some(serde_json::json!({
                "provider": "hubspot",
                "base_url": stack.hubspot.base_url(),
                "access_token": issued.access_token,
                "refresh_token": issued.refresh_token,
                "expires_in_seconds": 120,
            })),
        )
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    stack.runner.fire_schedule(chrono::Utc::now()).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    assert_eq!(
        hubspot.stats().routes.get("token").copied(),
        Some(1),
        "a token expiring within 5 minutes is refreshed first"
    );
    let conn = get(&stack, "acme", &format!("/v1/connections/{id}")).await.unwrap();
    assert_eq!(conn["status"], "synced");
    assert_eq!(n(&conn, "/record_counts/contacts"), 40);

    let tenant = syncbridge::domain::TenantId::parse("acme").unwrap();
    let cid = syncbridge::domain::ConnectionId::parse(id.clone()).unwrap();
    let stored = stack.deps.connections.get(&tenant, &cid).await.unwrap().unwrap();
    use secrecy::ExposeSecret;
    let fresh = stored.credentials.access_token.expose_secret().to_owned();
    assert_ne!(fresh, issued.access_token);
    assert!(hubspot.expire_token(&fresh));
    hubspot.edit_contact("3", &[("jobtitle", "Refreshed")]).unwrap();

    let later = chrono::Utc::now() + chrono::Duration::minutes(16);
    stack.runner.fire_schedule(later).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    assert_eq!(
        hubspot.stats().routes.get("token").copied(),
        Some(2),
        "a 401 is answered with one refresh and a retry"
    );
    let runs = items(&get(&stack, "acme", &format!("/v1/connections/{id}/runs")).await.unwrap());
    assert_eq!(n(&runs[0], "/counts/updated"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_archived_in_hubspot_ends_deleted_with_a_record_deleted_event() {
    let stack = stack(60, false).await.unwrap();
    let id = connect(&stack, "acme", None).await.unwrap();
    stack.runner.fire_schedule(chrono::Utc::now()).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    stack.take_events().await.unwrap();

    let hubspot = stack.hubspot.state();
    assert!(hubspot.archive(ObjectKind::Contacts, "17"));
    hubspot.advance_clock(Duration::from_secs(16 * 60));
    hubspot.reset_stats();
    let later = chrono::Utc::now() + chrono::Duration::minutes(16);
    assert_eq!(stack.runner.fire_schedule(later).await.unwrap().enqueued, 1);
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);

    let runs = items(&get(&stack, "acme", &format!("/v1/connections/{id}/runs")).await.unwrap());
    assert_eq!(n(&runs[0], "/counts/deleted"), 1, "{}", runs[0]);
    assert_eq!(hubspot.stats().routes.get("list").copied(), Some(8), "one archived page per HubSpot type");
    let records = all_records(&stack, "acme", &id).await.unwrap();
    let gone: Vec<&Value> = records.iter().filter(|r| r["deleted"] == true).collect();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0]["external_id"], "17");
    let conn = get(&stack, "acme", &format!("/v1/connections/{id}")).await.unwrap();
    assert_eq!(n(&conn, "/record_counts/contacts"), 59);
    let events = stack.take_events().await.unwrap();
    let deleted: Vec<&Value> = events.iter().filter(|e| e["detail-type"] == "record.deleted").collect();
    assert_eq!(deleted.len(), 1);
}
