//! The EMF lines the functions print, read back and checked, in a test binary of its own: the
//! metrics recorder is process-global, so each test holds one lock and starts from a drained
//! recorder. Runs are against the in-memory doubles; the provider send path against a local
//! HTTP server.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use chrono::{DateTime, TimeZone, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use tower::ServiceExt;

use syncbridge::adapters::memory::{ManualClock, MemoryQueue, MemoryStore, TestDeps};
use syncbridge::adapters::memory_provider::MemoryProvider;
use syncbridge::adapters::oauth::OAuthDialect;
use syncbridge::adapters::provider_http::{Call, ProviderHttp, RetryPolicy};
use syncbridge::domain::connection::{ConnectionSettings, NewConnection};
use syncbridge::domain::{
    Connection, Credentials, Job, JobId, JobReason, ObjectOutcome, ObjectRun, ObjectType, Provider,
    PushChannel, RunCounts, RunId, RunStatus, SyncRun, TenantId,
};
use syncbridge::http::webhooks::{self, WebhookSettings, WebhookState};
use syncbridge::ports::ConnectionStore;
use syncbridge::sync::{Deadline, dispatcher, worker};
use syncbridge::telemetry::metrics;

const TENANT: &str = "tenant-emf-7";

static RECORDER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Holds the recorder for one test, installed and drained.
async fn recorder() -> tokio::sync::MutexGuard<'static, ()> {
    let guard = RECORDER.lock().await;
    metrics::install("Syncbridge/test", "worker").expect("the recorder installs");
    metrics::flush_to(std::io::sink()).expect("draining writes nowhere");
    guard
}

/// One EMF document: its dimension names and values, and its metric values by name.
#[derive(Debug)]
struct Doc {
    dimensions: BTreeMap<String, String>,
    values: BTreeMap<String, Value>,
    units: BTreeMap<String, String>,
    raw: Value,
}

/// Flushes and parses what was printed: each line one JSON document in EMF, checked against the
/// format's rules (namespace, one dimension set whose members are strings on the root, every
/// metric's value on the root).
fn printed() -> Vec<Doc> {
    let mut out = Vec::new();
    metrics::flush_to(&mut out).expect("flush writes");
    let text = String::from_utf8(out).expect("UTF-8");
    text.lines()
        .map(|line| {
            let raw: Value = serde_json::from_str(line).expect("each line is one JSON document");
            let directive = &raw["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(directive["Namespace"], "Syncbridge/test", "{line}");
            assert!(raw["_aws"]["Timestamp"].is_u64(), "{line}");
            let sets = directive["Dimensions"].as_array().expect("dimension sets");
            assert_eq!(sets.len(), 1, "{line}");
            let dimensions: BTreeMap<String, String> = sets[0]
                .as_array()
                .expect("a dimension set")
                .iter()
                .map(|d| {
                    let name = d.as_str().expect("dimension names are strings").to_owned();
                    let value = raw[&name].as_str().expect("each dimension's value is a string on the root");
                    (name, value.to_owned())
                })
                .collect();
            let mut values = BTreeMap::new();
            let mut units = BTreeMap::new();
            for m in directive["Metrics"].as_array().expect("metrics") {
                let name = m["Name"].as_str().expect("metric name").to_owned();
                assert!(!raw[&name].is_null(), "metric {name} has its value on the root: {line}");
                values.insert(name.clone(), raw[&name].clone());
                if let Some(unit) = m["Unit"].as_str() {
                    units.insert(name, unit.to_owned());
                }
            }
            Doc { dimensions, values, units, raw }
        })
        .collect()
}

/// The value of `metric` in the document with exactly these dimensions (besides `Function`).
fn value(docs: &[Doc], metric: &str, dims: &[(&str, &str)]) -> Option<Value> {
    let mut want: BTreeMap<String, String> =
        dims.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    want.insert("Function".into(), "worker".into());
    docs.iter().find(|d| d.dimensions == want).and_then(|d| d.values.get(metric).cloned())
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap()
}

fn connection(provider: Provider) -> Connection {
    Connection::new(
        TenantId::parse(TENANT).unwrap(),
        NewConnection {
            provider,
            base_url: "http://127.0.0.1:1".into(),
            credentials: Credentials {
                access_token: SecretString::from("t"),
                refresh_token: None,
                expires_at: None,
            },
            interval_minutes: 15,
            settings: ConnectionSettings::default(),
        },
        now(),
    )
}

/// An SQS batch of these bodies, one message group per connection.
fn batch(messages: &[(String, String)]) -> aws_lambda_events::event::sqs::SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .enumerate()
        .map(|(i, (group, body))| {
            json!({
                "messageId": format!("m{i}"),
                "receiptHandle": format!("rh-{i}"),
                "body": body,
                "attributes": { "MessageGroupId": group, "ApproximateReceiveCount": "1" },
                "messageAttributes": {},
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn sync_job(conn: &Connection, id: &str) -> (String, String) {
    let job = Job::sync(
        conn.tenant_id.clone(),
        conn.connection_id.clone(),
        JobId::parse(id).unwrap(),
        JobReason::Schedule,
        now(),
    );
    (conn.message_group(), job.to_body())
}

/// No dimension, and no other string in a document, names the tenant or a connection.
fn assert_no_ids(docs: &[Doc], connections: &[&Connection]) {
    for doc in docs {
        let text = doc.raw.to_string();
        assert!(!text.contains(TENANT), "a tenant id in {text}");
        for c in connections {
            assert!(!text.contains(c.connection_id.as_str()), "a connection id in {text}");
        }
        for name in doc.dimensions.keys() {
            assert!(
                ["Function", "Provider", "Object", "Outcome", "Result", "Reason"].contains(&name.as_str()),
                "unexpected dimension {name}"
            );
        }
    }
}

#[tokio::test]
async fn a_worker_batch_prints_records_runs_and_failures_per_provider_and_object_without_ids() {
    let _recorder = recorder().await;
    let store = Arc::new(MemoryStore::new());
    let provider = MemoryProvider::new();
    for id in ["c1", "c2", "c3"] {
        provider.edit(ObjectType::Contacts, id, &[("email", json!(format!("{id}@example.com")))]);
    }
    for id in ["co1", "co2"] {
        provider.edit(ObjectType::Companies, id, &[("name", json!(id))]);
    }
    let deps = TestDeps::new(store.clone())
        .providers(Arc::new(provider.clone()))
        .clock(Arc::new(ManualClock::new(now())))
        .build();
    let conn = connection(Provider::Hubspot);
    store.put_connection(conn.clone());

    // One invocation: a first sync, and a message that is not a job.
    let first = vec![sync_job(&conn, "job-1"), ("other".to_owned(), "{\"not\": \"a job\"}".to_owned())];
    let response = worker::handle_batch(&deps, batch(&first), Deadline::after(Duration::from_secs(60))).await;
    assert!(response.batch_item_failures.is_empty());
    let docs = printed();
    let hub = |object: &'static str| [("Provider", "hubspot"), ("Object", object)];
    assert_eq!(value(&docs, "RecordsPulled", &hub("contacts")), Some(json!(3)));
    assert_eq!(value(&docs, "RecordsWritten", &hub("contacts")), Some(json!(3)));
    assert_eq!(value(&docs, "RecordsPulled", &hub("companies")), Some(json!(2)));
    assert_eq!(value(&docs, "RecordsWritten", &hub("companies")), Some(json!(2)));
    assert_eq!(value(&docs, "RecordsUnchanged", &hub("contacts")), None, "zeros are not printed");
    assert_eq!(value(&docs, "Runs", &[("Provider", "hubspot"), ("Outcome", "succeeded")]), Some(json!(1)));
    let duration = value(&docs, "RunDuration", &[("Provider", "hubspot")]).expect("a run duration");
    assert_eq!(duration.as_array().map(Vec::len), Some(1), "one duration per run: {duration}");
    assert_eq!(value(&docs, "JobsFailed", &[("Outcome", "rejected")]), Some(json!(1)));
    let units: BTreeMap<&str, &str> =
        docs.iter().flat_map(|d| d.units.iter().map(|(k, v)| (k.as_str(), v.as_str()))).collect();
    assert_eq!(units.get("RunDuration"), Some(&"Milliseconds"));
    assert_eq!(units.get("RecordsPulled"), Some(&"Count"));
    assert_no_ids(&docs, &[&conn]);

    // The next invocation: one contact edited, one touched without a change; counters start over.
    provider.edit(ObjectType::Contacts, "c1", &[("email", json!("new@example.com"))]);
    provider.edit(ObjectType::Contacts, "c2", &[("email", json!("c2@example.com"))]);
    let second = vec![sync_job(&conn, "job-2")];
    worker::handle_batch(&deps, batch(&second), Deadline::after(Duration::from_secs(60))).await;
    let docs = printed();
    assert_eq!(value(&docs, "RecordsPulled", &hub("contacts")), Some(json!(2)));
    assert_eq!(value(&docs, "RecordsWritten", &hub("contacts")), Some(json!(1)));
    assert_eq!(value(&docs, "RecordsUnchanged", &hub("contacts")), Some(json!(1)));
    assert_eq!(value(&docs, "RecordsPulled", &hub("companies")), None);
    assert_eq!(value(&docs, "Runs", &[("Provider", "hubspot"), ("Outcome", "succeeded")]), Some(json!(1)));
    assert_eq!(value(&docs, "JobsFailed", &[("Outcome", "rejected")]), None);
    assert_no_ids(&docs, &[&conn]);

    // Nothing recorded since: a flush prints nothing.
    assert!(printed().is_empty());
}

#[tokio::test]
async fn a_run_prints_its_outcome_pushes_and_conflicts_opened() {
    let _recorder = recorder().await;
    let conn = connection(Provider::Salesforce);
    let mut objects = BTreeMap::new();
    let mut contacts = ObjectRun::new(ObjectOutcome::Synced);
    (contacts.pulled, contacts.created, contacts.updated, contacts.deleted, contacts.unchanged) =
        (10, 2, 3, 1, 4);
    objects.insert(ObjectType::Contacts, contacts);
    objects.insert(ObjectType::Companies, ObjectRun::new(ObjectOutcome::Failed));
    let run = SyncRun {
        tenant_id: conn.tenant_id.clone(),
        connection_id: conn.connection_id.clone(),
        run_id: RunId::generate(),
        job_id: JobId::parse("job-9").unwrap(),
        reason: JobReason::Schedule,
        status: RunStatus::Partial,
        started_at: now(),
        finished_at: now(),
        duration_ms: 1250,
        counts: RunCounts { pushed: 2, push_failed: 1, conflicts_parked: 3, ..RunCounts::default() },
        error: Some("companies: HTTP 403".into()),
        objects,
    };
    metrics::run_finished(conn.provider, &run);
    let docs = printed();
    let sf = [("Provider", "salesforce"), ("Object", "contacts")];
    assert_eq!(value(&docs, "RecordsPulled", &sf), Some(json!(10)));
    assert_eq!(value(&docs, "RecordsWritten", &sf), Some(json!(6)));
    assert_eq!(value(&docs, "RecordsUnchanged", &sf), Some(json!(4)));
    assert_eq!(value(&docs, "Runs", &[("Provider", "salesforce"), ("Outcome", "partial")]), Some(json!(1)));
    assert_eq!(value(&docs, "RunDuration", &[("Provider", "salesforce")]), Some(json!([1250.0])));
    assert_eq!(
        value(&docs, "Pushes", &[("Provider", "salesforce"), ("Outcome", "completed")]),
        Some(json!(2))
    );
    assert_eq!(value(&docs, "Pushes", &[("Provider", "salesforce"), ("Outcome", "failed")]), Some(json!(1)));
    assert_eq!(value(&docs, "Pushes", &[("Provider", "salesforce"), ("Outcome", "retrying")]), None);
    assert_eq!(value(&docs, "ConflictsOpened", &[("Provider", "salesforce")]), Some(json!(3)));
    assert_no_ids(&docs, &[&conn]);
}

#[tokio::test]
async fn a_dispatcher_tick_prints_due_claimed_and_enqueued() {
    let _recorder = recorder().await;
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new());
    let deps =
        TestDeps::new(store.clone()).queue(queue.clone()).clock(Arc::new(ManualClock::new(now()))).build();
    let conns =
        [connection(Provider::Hubspot), connection(Provider::Google), connection(Provider::Salesforce)];
    for c in &conns {
        store.put_connection(c.clone());
    }
    let summary = dispatcher::dispatch(&deps, Some(now() + chrono::Duration::minutes(1))).await.unwrap();
    assert_eq!(summary.enqueued, 3);
    assert_eq!(queue.jobs().len(), 3);
    let docs = printed();
    assert_eq!(value(&docs, "DispatcherDue", &[]), Some(json!(3)));
    assert_eq!(value(&docs, "DispatcherClaimed", &[]), Some(json!(3)));
    assert_eq!(value(&docs, "DispatcherEnqueued", &[]), Some(json!(3)));
    assert_eq!(value(&docs, "DispatcherLostRaces", &[]), None);
    assert_no_ids(&docs, &conns.iter().collect::<Vec<_>>());
}

#[tokio::test]
async fn webhook_notifications_print_by_result_and_refusals_by_reason() {
    let _recorder = recorder().await;
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new());
    let mut conn = connection(Provider::Google);
    let channel = PushChannel {
        id: "chan-emf".into(),
        resource_id: Some("res-1".into()),
        secret: SecretString::from("channel-token-emf"),
        expires_at: now() + chrono::Duration::days(3),
    };
    conn.push_channel = Some(channel.clone());
    store.put_connection(conn.clone());
    store.put_channel(&channel, &conn.tenant_id, &conn.connection_id, Provider::Google).await.unwrap();
    let app = webhooks::router(WebhookState {
        connections: store.clone(),
        deliveries: store.clone(),
        queue: queue.clone(),
        clock: Arc::new(ManualClock::new(now())),
        settings: WebhookSettings::default(),
    });
    let notify = |token: &str| {
        http::Request::post("/webhooks/google")
            .header("x-goog-channel-id", "chan-emf")
            .header("x-goog-channel-token", token)
            .header("x-goog-resource-state", "exists")
            .header("x-goog-resource-id", "res-1")
            .body(Body::empty())
            .unwrap()
    };
    let ok = app.clone().oneshot(notify("channel-token-emf")).await.unwrap();
    assert_eq!(ok.status(), 200);
    let forged = app.clone().oneshot(notify("forged")).await.unwrap();
    assert_eq!(forged.status(), 401);
    let docs = printed();
    assert_eq!(
        value(&docs, "WebhookNotifications", &[("Provider", "google"), ("Result", "accepted")]),
        Some(json!(1))
    );
    assert_eq!(value(&docs, "WebhookJobs", &[("Provider", "google")]), Some(json!(1)));
    assert_eq!(
        value(&docs, "WebhookRefused", &[("Provider", "google"), ("Reason", "unverified")]),
        Some(json!(1))
    );
    assert_eq!(
        value(&docs, "WebhookNotifications", &[("Provider", "google"), ("Result", "duplicate")]),
        None
    );
    assert_no_ids(&docs, &[&conn]);
}

#[tokio::test]
async fn the_provider_send_path_prints_every_attempt_and_each_rate_limit_answer() {
    let _recorder = recorder().await;
    let answered = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let count = answered.clone();
    let app = axum::Router::new().route(
        "/token",
        axum::routing::get(move || {
            let count = count.clone();
            async move {
                if count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    (http::StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")], "{}")
                } else {
                    (http::StatusCode::OK, [("retry-after", "0")], "{}")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let net = ProviderHttp::new(reqwest::Client::new(), OAuthDialect, RetryPolicy::default());
    let reply = net.send(Call::read("token"), || net.client().get(&url)).await.expect("the retry succeeds");
    assert_eq!(reply.status, 200);
    server.abort();
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 2);
    let docs = printed();
    assert_eq!(value(&docs, "ProviderRequests", &[("Provider", "oauth")]), Some(json!(2)));
    assert_eq!(value(&docs, "ProviderRateLimited", &[("Provider", "oauth")]), Some(json!(1)));
}
