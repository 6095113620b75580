//! The Graph adapter against the Graph fake over HTTP: delta rounds and incremental pulls,
//! `@removed` and cancelled events, 410 resyncs (also through the worker, end to end on the
//! in-memory stores), conditional updates, idempotent creates, throttling, token refresh and
//! subscriptions with Graph's validation handshake.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use syncbridge::adapters::graph::{
    GraphClient, GraphFactory, Login, Pacing, SubscriptionRequest, graph_id_of, max_expiration,
    transaction_id,
};
use syncbridge::adapters::memory::MemoryStore;
use syncbridge::config::OAuthApp;
use syncbridge::domain::record::Fields;
use syncbridge::domain::{
    Connection, Credentials, IdempotencyKey, NewConnection, ObjectType, Provider, RemoteRecord, SyncCursor,
    TenantId,
};
use syncbridge::ports::{Precondition, ProviderClient, ProviderError, ProviderWrite};
use syncbridge::sync::Deps;
use syncbridge::sync::worker::JobOutcome;
use syncbridge_fakes::graph::{
    EventEdit, FakeConfig, Fault, FaultKind, GraphFake, NewEvent, Route, RunningFake,
};

const TOKEN: &str = "graph-fake-token";

async fn start(events: usize) -> RunningFake {
    GraphFake::start(FakeConfig { events, anchor: Some(Utc::now().date_naive()), ..FakeConfig::default() })
        .await
        .expect("fake starts")
}

fn connection(base_url: &str, credentials: Credentials) -> Connection {
    Connection::new(
        TenantId::parse("t1").expect("tenant"),
        NewConnection {
            provider: Provider::Microsoft,
            base_url: base_url.to_owned(),
            credentials,
            interval_minutes: 15,
            settings: Default::default(),
        },
        Utc::now(),
    )
}

fn static_credentials() -> Credentials {
    Credentials { access_token: SecretString::from(TOKEN), refresh_token: None, expires_at: None }
}

fn factory(fake: &RunningFake, pacing: Pacing) -> GraphFactory {
    let config = fake.state().config().clone();
    let app =
        OAuthApp { client_id: config.client_id, client_secret: SecretString::from(config.client_secret) };
    GraphFactory::new(
        reqwest::Client::new(),
        Some(app),
        Login { base_url: fake.base_url(), tenant: "common".into() },
    )
    .with_pacing(pacing)
}

fn client(fake: &RunningFake, page_size: usize) -> GraphClient {
    factory(fake, Pacing { page_size, ..Pacing::default() })
        .graph_client(&connection(&fake.base_url(), static_credentials()))
        .expect("client")
}

fn token() -> SecretString {
    SecretString::from(TOKEN)
}

/// Pulls until `has_more` is false: every record pulled, the final cursor and the page count.
async fn pull_all(
    client: &dyn ProviderClient,
    token: &SecretString,
    mut cursor: Option<SyncCursor>,
) -> (Vec<RemoteRecord>, SyncCursor, usize) {
    let mut records = Vec::new();
    for pages in 1..=200 {
        let page = client.pull_page(token, ObjectType::Events, cursor.as_ref()).await.expect("page pulls");
        records.extend(page.records);
        cursor = Some(page.cursor);
        if !page.has_more {
            return (records, cursor.expect("cursor"), pages);
        }
    }
    panic!("the pull did not finish within 200 pages");
}

fn graph_time(v: &Value) -> DateTime<Utc> {
    let s = v["dateTime"].as_str().expect("dateTime");
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").expect("graph time").and_utc()
}

/// Ids of the fake's live events that overlap now .. now + 7 days, and which of them are cancelled.
fn in_window(fake: &RunningFake) -> (BTreeSet<String>, BTreeSet<String>) {
    let now = Utc::now();
    let end = now + chrono::Duration::days(7);
    let mut all = BTreeSet::new();
    let mut cancelled = BTreeSet::new();
    for e in fake.state().events() {
        if graph_time(&e["start"]) < end && graph_time(&e["end"]) > now {
            let id = e["id"].as_str().expect("id").to_owned();
            if e["isCancelled"] == true {
                cancelled.insert(id.clone());
            }
            all.insert(id);
        }
    }
    (all, cancelled)
}

/// The Graph id of a pulled record (external ids spell Graph's `=` padding as `.`).
fn gid(r: &RemoteRecord) -> String {
    graph_id_of(&r.external_id)
}

fn ids(records: &[RemoteRecord]) -> Vec<String> {
    records.iter().map(gid).collect()
}

/// A live, not cancelled event in the window that the seed gave an outside attendee.
fn an_event_with_an_outside_attendee(fake: &RunningFake) -> String {
    let (window, cancelled) = in_window(fake);
    fake.state()
        .events()
        .into_iter()
        .find(|e| {
            let id = e["id"].as_str().unwrap_or_default();
            window.contains(id)
                && !cancelled.contains(id)
                && e["isAllDay"] == false
                && e["attendees"].to_string().contains("Fabrikam")
        })
        .and_then(|e| e["id"].as_str().map(str::to_owned))
        .expect("the seed has such an event")
}

#[tokio::test]
async fn graph_full_pull_follows_next_links_then_an_incremental_pull_returns_only_changes_in_one_request() {
    let fake = start(40).await;
    let state = fake.state();
    let client = client(&fake, 10);
    let (expected, cancelled) = in_window(&fake);
    assert!(expected.len() >= 10, "the seed fills the window");
    let (records, cursor, pages) = pull_all(&client, &token(), None).await;
    let pulled = ids(&records);
    assert_eq!(pulled.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(pulled.len(), expected.len(), "no event twice");
    assert_eq!(pages, expected.len().div_ceil(10));
    assert_eq!(state.route_count(Route::Delta), pages as u64);
    for r in &records {
        assert_eq!(r.deleted, cancelled.contains(&gid(r)));
        assert!(r.etag.as_deref().is_some_and(|e| e.starts_with("W/\"")));
    }

    let outside = an_event_with_an_outside_attendee(&fake);
    let rec = records.iter().find(|r| gid(r) == outside).expect("pulled");
    let attendees: Vec<String> =
        serde_json::from_value(rec.fields["attendees"].clone()).expect("attendees are strings");
    assert!(attendees.iter().any(|a| a.ends_with("@fabrikam.com")));
    assert!(attendees.windows(2).all(|w| w[0] < w[1]), "sorted and deduplicated");
    assert!(attendees.iter().all(|a| *a == a.to_lowercase()));
    let start = rec.fields["start"].as_str().expect("start");
    assert!(DateTime::parse_from_rfc3339(start).is_ok() && start.ends_with('Z'));

    assert!(
        state.edit_event(
            &outside,
            EventEdit { subject: Some("Moved to Friday".into()), ..Default::default() }
        )
    );
    let other = expected.iter().find(|id| **id != outside && !cancelled.contains(*id)).expect("another");
    assert!(state.move_event(other, chrono::Duration::minutes(30)));
    let soon = Utc::now() + chrono::Duration::hours(2);
    let created = state.create_event(NewEvent {
        subject: "Walk-in".into(),
        body: "Booked by phone".into(),
        start: soon,
        end: soon + chrono::Duration::minutes(30),
        all_day: false,
        location: String::new(),
        attendees: vec!["Guest@Example.org".into()],
    });
    state.reset_stats();
    let (changes, _, pages) = pull_all(&client, &token(), Some(cursor)).await;
    assert_eq!(pages, 1);
    assert_eq!(state.stats().total, 1, "one request for the incremental pull");
    let changed: BTreeSet<String> = ids(&changes).into_iter().collect();
    assert_eq!(changed, BTreeSet::from([outside.clone(), other.clone(), created.clone()]));
    let renamed = changes.iter().find(|r| gid(r) == outside).expect("edited");
    assert_eq!(renamed.fields["title"], json!("Moved to Friday"));
    let walk_in = changes.iter().find(|r| gid(r) == created).expect("created");
    assert_eq!(walk_in.fields["attendees"], json!(["guest@example.org"]));
    assert_eq!(walk_in.fields["description"], json!("Booked by phone"));
    assert_eq!(walk_in.fields["organizer"], json!("adele.vance@contoso.com"));
}

#[tokio::test]
async fn graph_removed_and_cancelled_events_come_back_as_deletes() {
    let fake = start(30).await;
    let state = fake.state();
    let client = client(&fake, 50);
    let (records, cursor, _) = pull_all(&client, &token(), None).await;
    let live: Vec<String> = records.iter().filter(|r| !r.deleted).map(gid).collect();
    assert!(state.delete_event(&live[0]));
    assert!(state.cancel_event(&live[1]));
    let (changes, _, _) = pull_all(&client, &token(), Some(cursor)).await;
    assert_eq!(changes.len(), 2);
    assert!(changes.iter().all(|r| r.deleted));
    let removed = changes.iter().find(|r| gid(r) == live[0]).expect("removed");
    assert!(removed.fields.is_empty());
    let cancelled = changes.iter().find(|r| gid(r) == live[1]).expect("cancelled");
    assert_eq!(cancelled.fields["status"], json!("cancelled"));
}

#[tokio::test]
async fn graph_410_on_the_delta_link_resyncs_the_window_and_reports_deletions_made_meanwhile() {
    let fake = start(30).await;
    let state = fake.state();
    let client = client(&fake, 8);
    let (records, cursor, _) = pull_all(&client, &token(), None).await;
    let live: Vec<String> = records.iter().filter(|r| !r.deleted).map(gid).collect();
    // The delta state is lost, then an event is deleted: no delta link can tell about it.
    state.expire_sync_state();
    assert!(state.delete_event(&live[0]));
    assert!(state.edit_event(&live[1], EventEdit { subject: Some("Edited".into()), ..Default::default() }));
    let (resync, cursor, _) = pull_all(&client, &token(), Some(cursor)).await;
    let resync_ids = ids(&resync);
    assert_eq!(resync_ids.len(), resync_ids.iter().collect::<BTreeSet<_>>().len(), "no event twice");
    let (expected, _) = in_window(&fake);
    let mut expected_ids: BTreeSet<String> = expected;
    expected_ids.insert(live[0].clone());
    assert_eq!(resync_ids.into_iter().collect::<BTreeSet<_>>(), expected_ids);
    assert!(resync.iter().any(|r| gid(r) == live[0] && r.deleted));
    assert!(resync.iter().any(|r| gid(r) == live[1] && r.fields["title"] == json!("Edited")));

    // A one-off 410 (resyncRequired) on the next delta link: again a resync, nothing deleted.
    state.inject_fault(Fault {
        route: Route::Delta,
        kind: FaultKind::SyncStateGone { code: Some("resyncRequired".into()) },
        count: 1,
    });
    let (again, cursor, _) = pull_all(&client, &token(), Some(cursor)).await;
    assert_eq!(again.iter().filter(|r| r.deleted).count(), in_window(&fake).1.len());
    state.reset_stats();
    let (quiet, _, _) = pull_all(&client, &token(), Some(cursor)).await;
    assert!(quiet.is_empty());
    assert_eq!(state.stats().total, 1);
}

fn graph_deps(fake: &RunningFake, store: Arc<MemoryStore>) -> Deps {
    syncbridge::adapters::memory::TestDeps::new(store)
        .providers(Arc::new(factory(fake, Pacing { page_size: 7, ..Pacing::default() })))
        .build()
}

async fn sync_once(deps: &Deps, conn: &Connection) -> syncbridge::domain::RunCounts {
    match super::provider_support::sync_once(deps, conn).await {
        JobOutcome::Completed { counts, .. } => counts,
        other => panic!("the job did not complete: {other:?}"),
    }
}

#[tokio::test]
async fn worker_resyncs_after_graph_410_without_duplicating_records_and_deletes_what_was_missed() {
    let fake = start(30).await;
    let state = fake.state();
    let store = Arc::new(MemoryStore::new());
    let conn = connection(&fake.base_url(), static_credentials());
    store.put_connection(conn.clone());
    let deps = graph_deps(&fake, store.clone());
    let (expected, cancelled) = in_window(&fake);
    let first = sync_once(&deps, &conn).await;
    assert_eq!(first.created as usize, expected.len() - cancelled.len());
    let events_of = |store: &MemoryStore| {
        let all = store.records_of(&conn.tenant_id, &conn.connection_id);
        all.into_iter().filter(|r| r.object == ObjectType::Events).collect::<Vec<_>>()
    };
    let stored = events_of(&store);
    assert_eq!(stored.len(), expected.len() - cancelled.len());
    let victim_external = stored[0].external_id.clone();
    let victim = graph_id_of(&victim_external);

    state.expire_sync_state();
    assert!(state.delete_event(&victim));
    let second = sync_once(&deps, &conn).await;
    assert_eq!(second.created, 0);
    assert_eq!(second.deleted, 1);
    let after = events_of(&store);
    assert_eq!(after.len(), stored.len(), "the resync created no duplicate");
    let by_external: BTreeMap<&str, bool> =
        after.iter().map(|r| (r.external_id.as_str(), r.deleted)).collect();
    assert_eq!(by_external.get(victim_external.as_str()), Some(&true));
    assert_eq!(by_external.values().filter(|d| **d).count(), 1);
}

#[tokio::test]
async fn graph_update_with_a_stale_etag_or_an_older_stamp_is_a_conflict_and_changes_nothing() {
    let fake = start(6).await;
    let state = fake.state();
    let client = client(&fake, 50);
    let (records, _, _) = pull_all(&client, &token(), None).await;
    let rec = records.iter().find(|r| !r.deleted).expect("a live event");
    let id = rec.external_id.clone();
    let graph_id = graph_id_of(&id);
    let pulled_at = rec.remote_modified_at.expect("stamp");
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(
        state
            .edit_event(&graph_id, EventEdit { subject: Some("Person's edit".into()), ..Default::default() })
    );
    let fields: Fields = serde_json::from_value(json!({"title": "Our edit"})).expect("fields");
    let writes = [
        ProviderWrite::Update {
            object: ObjectType::Events,
            external_id: id.clone(),
            fields: fields.clone(),
            precondition: Precondition { etag: rec.etag.clone(), unmodified_since: None },
        },
        ProviderWrite::Update {
            object: ObjectType::Events,
            external_id: id.clone(),
            fields: fields.clone(),
            precondition: Precondition { etag: None, unmodified_since: Some(pulled_at) },
        },
    ];
    let results = client.write(&token(), &writes).await.expect("writes answered");
    assert!(matches!(results[0], Err(ProviderError::Conflict)), "{:?}", results[0]);
    assert!(matches!(results[1], Err(ProviderError::Conflict)), "{:?}", results[1]);
    assert_eq!(state.event(&graph_id).expect("event")["subject"], "Person's edit");

    let current = state.event(&graph_id).expect("event")["@odata.etag"].as_str().expect("etag").to_owned();
    let ok = client
        .write(
            &token(),
            &[ProviderWrite::Update {
                object: ObjectType::Events,
                external_id: id.clone(),
                fields,
                precondition: Precondition { etag: Some(current.clone()), unmodified_since: None },
            }],
        )
        .await
        .expect("answered");
    let ack = ok.into_iter().next().expect("one result").expect("update succeeds");
    assert_ne!(ack.etag.as_deref(), Some(current.as_str()));
    assert_eq!(ack.fields.expect("fields")["title"], json!("Our edit"));
    assert_eq!(state.event(&graph_id).expect("event")["subject"], "Our edit");
}

#[tokio::test]
async fn graph_creating_twice_with_one_idempotency_key_makes_one_event() {
    let fake = start(0).await;
    let state = fake.state();
    let client = client(&fake, 50);
    let key = IdempotencyKey::parse("push-item-42").expect("key");
    let fields: Fields = serde_json::from_value(json!({
        "title": "Suggested: intro with Fabrikam",
        "start": "2030-03-04T15:00:00Z",
        "end": "2030-03-04T15:30:00Z",
        "attendees": ["pat.lee@fabrikam.com"],
        "description": "Proposed by Syncbridge",
    }))
    .expect("fields");
    let create = ProviderWrite::Create { object: ObjectType::Events, fields, idempotency_key: key.clone() };
    let first = client.write(&token(), std::slice::from_ref(&create)).await.expect("answered");
    let second = client.write(&token(), std::slice::from_ref(&create)).await.expect("answered");
    let a = first.into_iter().next().expect("result").expect("created");
    let b = second.into_iter().next().expect("result").expect("found again");
    assert_eq!(a.external_id, b.external_id);
    assert_eq!(state.event_count(), 1);
    assert_eq!(state.events_with_transaction(&transaction_id(&key)), 1);
    assert_eq!(state.route_count(Route::CreateEvent), 2);
    assert_eq!(a.fields.expect("fields")["start"], json!("2030-03-04T15:00:00Z"));
}

#[tokio::test]
async fn graph_short_retry_after_is_waited_out_and_a_long_one_is_returned_as_rate_limited() {
    let fake = start(5).await;
    let state = fake.state();
    let client = client(&fake, 50);
    state.inject_fault(Fault {
        route: Route::Delta,
        kind: FaultKind::RateLimit { retry_after_secs: 1 },
        count: 1,
    });
    state.inject_fault(Fault {
        route: Route::Delta,
        kind: FaultKind::ServiceUnavailable { retry_after_secs: Some(1) },
        count: 1,
    });
    state.inject_fault(Fault {
        route: Route::Delta,
        kind: FaultKind::GatewayTimeout { retry_after_secs: Some(1) },
        count: 1,
    });
    let started = Instant::now();
    let page = client.pull_page(&token(), ObjectType::Events, None).await.expect("pulls after waiting");
    assert!(started.elapsed() >= Duration::from_secs(3), "every Retry-After wait honoured");
    assert!(!page.records.is_empty());
    assert_eq!(state.route_count(Route::Delta), 4);
    assert_eq!(client.stats().requests, 4);
    assert_eq!(client.stats().rate_limited, 1);

    state.inject_fault(Fault {
        route: Route::Delta,
        kind: FaultKind::RateLimit { retry_after_secs: 120 },
        count: 1,
    });
    let err =
        client.pull_page(&token(), ObjectType::Events, Some(&page.cursor)).await.expect_err("throttled");
    assert!(
        matches!(err, ProviderError::RateLimited { retry_after } if retry_after == Duration::from_secs(120))
    );
    assert_eq!(state.route_count(Route::Delta), 5, "a long wait is not retried inline");

    // A cut-off answer is retried in place; one that keeps coming is transient.
    state.inject_fault(Fault { route: Route::Delta, kind: FaultKind::MalformedJson, count: 1 });
    client.pull_page(&token(), ObjectType::Events, Some(&page.cursor)).await.expect("retried in place");
    state.inject_fault(Fault { route: Route::Delta, kind: FaultKind::MalformedJson, count: 10 });
    let err =
        client.pull_page(&token(), ObjectType::Events, Some(&page.cursor)).await.expect_err("malformed");
    assert!(matches!(err, ProviderError::Transient(_)));
}

#[tokio::test]
async fn graph_expired_token_is_unauthorized_and_a_refresh_at_the_identity_platform_fixes_it() {
    let fake = start(5).await;
    let state = fake.state();
    let issued = state.issue_token(None);
    let client = client(&fake, 50);
    let access = SecretString::from(issued.access_token.clone());
    assert!(client.pull_page(&access, ObjectType::Events, None).await.is_ok());
    assert!(state.expire_token(&issued.access_token));
    let err = client.pull_page(&access, ObjectType::Events, None).await.expect_err("expired");
    assert!(matches!(err, ProviderError::Unauthorized));

    let fresh = client.refresh(&SecretString::from(issued.refresh_token.clone())).await.expect("refreshed");
    assert!(fresh.expires_at.expect("expiry") > Utc::now() + chrono::Duration::minutes(50));
    assert!(fresh.refresh_token.is_some());
    assert!(client.pull_page(&fresh.access_token, ObjectType::Events, None).await.is_ok());
    assert_eq!(state.route_count(Route::Token), 1);

    assert!(state.revoke_refresh_token(&issued.refresh_token));
    let err = client.refresh(&SecretString::from(issued.refresh_token)).await.expect_err("revoked");
    assert!(matches!(err, ProviderError::Unauthorized));
}

#[tokio::test]
async fn worker_refreshes_a_graph_token_after_a_401_and_completes_the_sync() {
    let fake = start(12).await;
    let state = fake.state();
    let issued = state.issue_token(None);
    let store = Arc::new(MemoryStore::new());
    let conn = connection(
        &fake.base_url(),
        Credentials {
            access_token: SecretString::from(issued.access_token.clone()),
            refresh_token: Some(SecretString::from(issued.refresh_token.clone())),
            expires_at: Some(Utc::now() + chrono::Duration::hours(1)),
        },
    );
    store.put_connection(conn.clone());
    let deps = graph_deps(&fake, store.clone());
    state.inject_fault(Fault { route: Route::Delta, kind: FaultKind::ExpiredToken, count: 1 });
    let counts = sync_once(&deps, &conn).await;
    assert!(counts.created > 0);
    assert_eq!(state.route_count(Route::Token), 1);
}

/// A webhook receiver that echoes Graph's validation token (or not), counting validations.
async fn receiver(echo: bool) -> (String, Arc<std::sync::atomic::AtomicU32>) {
    let validations = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = validations.clone();
    let app = axum::Router::new().route(
        "/webhooks/graph",
        axum::routing::post(move |Query(q): Query<BTreeMap<String, String>>| {
            let counter = counter.clone();
            async move {
                match q.get("validationToken") {
                    Some(t) if echo => {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        (StatusCode::OK, [("content-type", "text/plain")], t.clone()).into_response()
                    }
                    Some(_) => (StatusCode::OK, "").into_response(),
                    None => StatusCode::ACCEPTED.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{addr}/webhooks/graph"), validations)
}

#[tokio::test]
async fn graph_subscriptions_pass_the_validation_handshake_and_renew_within_graphs_limit() {
    let fake = start(2).await;
    let state = fake.state();
    let client = client(&fake, 50);
    let (url, validations) = receiver(true).await;
    let request = SubscriptionRequest {
        notification_url: url.clone(),
        lifecycle_notification_url: Some(url.clone()),
        change_type: "created,updated,deleted".into(),
        client_state: SecretString::from("per-connection-secret"),
        expiration: Utc::now() + chrono::Duration::days(30),
    };
    let sub = client.create_subscription(&token(), &request).await.expect("subscribed");
    assert_eq!(validations.load(std::sync::atomic::Ordering::SeqCst), 2, "both URLs validated");
    assert!(sub.expiration_date_time <= max_expiration(Utc::now()));
    let held = state.subscription(&sub.id).expect("held by the fake");
    assert_eq!(held.client_state.as_deref(), Some("per-connection-secret"));
    assert_eq!(held.resource, "me/events");

    let renewed = client
        .renew_subscription(&token(), &sub.id, Utc::now() + chrono::Duration::days(30))
        .await
        .expect("renewed");
    assert!(renewed.expiration_date_time >= sub.expiration_date_time);
    assert_eq!(
        state.subscription(&sub.id).expect("held").expiration_date_time.timestamp(),
        renewed.expiration_date_time.timestamp()
    );
    assert_eq!(state.route_count(Route::UpdateSubscription), 1);

    client.delete_subscription(&token(), &sub.id).await.expect("deleted");
    assert!(state.subscription(&sub.id).is_none());
    client.delete_subscription(&token(), &sub.id).await.expect("already gone is fine");

    let (silent, _) = receiver(false).await;
    let refused = client
        .create_subscription(
            &token(),
            &SubscriptionRequest { notification_url: silent, lifecycle_notification_url: None, ..request },
        )
        .await
        .expect_err("validation fails");
    assert!(
        matches!(refused, ProviderError::Permanent(ref m) if m.mentions("ValidationError")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn graph_a_moved_window_relists_the_calendar_and_reports_only_real_deletions() {
    let fake = start(30).await;
    let state = fake.state();
    let client = factory(&fake, Pacing { page_size: 9, window_roll: Duration::ZERO, ..Pacing::default() })
        .graph_client(&connection(&fake.base_url(), static_credentials()))
        .expect("client");
    let (records, cursor, _) = pull_all(&client, &token(), None).await;
    let live: Vec<String> = records.iter().filter(|r| !r.deleted).map(gid).collect();
    assert!(state.delete_event(&live[0]));
    state.reset_stats();
    // The window is due to move: a new round over the new window, not the delta link.
    let (relisted, _, pages) = pull_all(&client, &token(), Some(cursor)).await;
    let (expected, cancelled) = in_window(&fake);
    assert_eq!(state.stats().total, pages as u64);
    assert_eq!(pages, expected.len().div_ceil(9));
    let deleted: BTreeSet<String> = relisted.iter().filter(|r| r.deleted).map(gid).collect();
    let mut want = cancelled;
    want.insert(live[0].clone());
    assert_eq!(deleted, want);
    assert_eq!(relisted.len(), expected.len() + 1);
}

#[tokio::test]
async fn an_approved_suggested_meeting_lands_once_in_outlook_and_later_pulls_keep_one_record() {
    use syncbridge::domain::{Priority, PushAction};
    use syncbridge::sync::push::{self, PushRequest};

    let fake = start(0).await;
    let state = fake.state();
    let store = Arc::new(MemoryStore::new());
    let conn = connection(&fake.base_url(), static_credentials());
    store.put_connection(conn.clone());
    let deps = graph_deps(&fake, store.clone());
    let start_at = (Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%dT10:00:00Z").to_string();
    let end_at = (Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%dT10:30:00Z").to_string();
    let fields: Fields = serde_json::from_value(json!({
        "title": "Intro with Fabrikam", "start": start_at, "end": end_at, "attendees": ["pat.lee@fabrikam.com"],
    }))
    .expect("fields");
    let request = PushRequest {
        action: PushAction::CreateEvent,
        object: None,
        priority: Priority::Normal,
        record_id: None,
        fields,
        idempotency_key: IdempotencyKey::parse("suggest-fabrikam-1").expect("key"),
        source: None,
    };
    let (item, _) = push::queue(&deps, &conn, request, "user:ann").await.expect("queued");
    let decided = push::decide(&deps, &conn.tenant_id, std::slice::from_ref(&item.push_id), true, "user:ann")
        .await
        .expect("decided");
    assert!(decided[0].1.is_ok(), "{:?}", decided[0].1);
    sync_once(&deps, &conn).await;
    sync_once(&deps, &conn).await;
    assert_eq!(state.event_count(), 1);
    assert_eq!(state.route_count(Route::CreateEvent), 1);
    let event = state.events().pop().expect("the event");
    assert_eq!(event["start"]["dateTime"], json!(format!("{}.0000000", start_at.trim_end_matches('Z'))));
    let records: Vec<_> = store
        .records_of(&conn.tenant_id, &conn.connection_id)
        .into_iter()
        .filter(|r| r.object == ObjectType::Events)
        .collect();
    assert_eq!(records.len(), 1, "the pull found the pushed event as the same record");
    assert_eq!(graph_id_of(&records[0].external_id), event["id"].as_str().expect("id"));
    assert_eq!(records[0].fields["title"], json!("Intro with Fabrikam"));
}

#[tokio::test]
async fn a_synced_graph_connection_keeps_one_subscription_extended_near_expiry_and_recreated_when_lost() {
    use secrecy::ExposeSecret;
    use syncbridge::adapters::memory::ManualClock;
    use syncbridge::ports::ConnectionStore;

    let fake = start(3).await;
    let state = fake.state();
    // The worker's webhook base: a receiver that passes Graph's validation handshake.
    let validations = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = validations.clone();
    let app = axum::Router::new().route(
        "/webhooks/microsoft",
        axum::routing::post(move |Query(q): Query<BTreeMap<String, String>>| {
            let counter = counter.clone();
            async move {
                match q.get("validationToken") {
                    Some(t) => {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        (StatusCode::OK, [("content-type", "text/plain")], t.clone()).into_response()
                    }
                    None => StatusCode::ACCEPTED.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });

    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let mut deps = syncbridge::adapters::memory::TestDeps::new(store.clone())
        .providers(Arc::new(factory(&fake, Pacing { page_size: 7, ..Pacing::default() })))
        .clock(clock.clone())
        .build();
    deps.settings.webhook_base_url = Some(base.clone());
    let conn = connection(&fake.base_url(), static_credentials());
    store.put_connection(conn.clone());
    let channel_of = |store: Arc<MemoryStore>, conn: Connection| async move {
        store
            .get(&conn.tenant_id, &conn.connection_id)
            .await
            .expect("get")
            .expect("connection")
            .push_channel
            .expect("the connection keeps its subscription")
    };

    sync_once(&deps, &conn).await;
    let subs = state.subscriptions();
    assert_eq!(subs.len(), 1, "one subscription after the first sync");
    let kept = channel_of(store.clone(), conn.clone()).await;
    assert_eq!(subs[0].id, kept.id);
    assert_eq!(subs[0].notification_url, format!("{base}/webhooks/microsoft"));
    assert_eq!(
        subs[0].client_state.as_deref(),
        Some(kept.secret.expose_secret()),
        "clientState is the secret"
    );
    assert_eq!(subs[0].resource, "me/events");
    assert!(kept.expires_at > Utc::now() + chrono::Duration::hours(70), "Graph's longest lifetime");
    assert_eq!(validations.load(std::sync::atomic::Ordering::SeqCst), 2, "notification and lifecycle URLs");
    assert_eq!(
        store.find_channel(&kept.id).await.expect("find"),
        Some((conn.tenant_id.clone(), conn.connection_id.clone(), Provider::Microsoft))
    );

    // Hours later: nothing to do.
    clock.advance(chrono::Duration::hours(3));
    sync_once(&deps, &conn).await;
    assert_eq!(state.route_count(Route::CreateSubscription), 1);
    assert_eq!(state.route_count(Route::UpdateSubscription), 0);

    // Within a day of expiry: extended in place (same id, same clientState).
    clock.set(kept.expires_at - chrono::Duration::hours(12));
    sync_once(&deps, &conn).await;
    assert_eq!(state.route_count(Route::UpdateSubscription), 1);
    let extended = channel_of(store.clone(), conn.clone()).await;
    assert_eq!(extended.id, kept.id);
    assert!(extended.expires_at >= kept.expires_at);
    assert_eq!(state.subscriptions().len(), 1);

    // Graph dropped it: the renewal's 404 leads to a new subscription with the same clientState.
    client(&fake, 50).delete_subscription(&token(), &kept.id).await.expect("deleted at Graph");
    clock.set(extended.expires_at - chrono::Duration::hours(1));
    sync_once(&deps, &conn).await;
    let subs = state.subscriptions();
    assert_eq!(subs.len(), 1);
    let recreated = channel_of(store.clone(), conn.clone()).await;
    assert_ne!(recreated.id, kept.id);
    assert_eq!(subs[0].id, recreated.id);
    assert_eq!(subs[0].client_state.as_deref(), Some(kept.secret.expose_secret()));
    assert!(store.find_channel(&recreated.id).await.expect("find").is_some());
}
