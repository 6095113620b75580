//! The Google Calendar adapter against the Google fake over HTTP: windowed full pulls and
//! `syncToken` increments, cancellations as deletes, 410 resyncs (through the worker too),
//! conditional and idempotent writes, rate limits, token refresh and push channels.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use syncbridge::adapters::google::{Backoff, GoogleClient, GoogleFactory, event_id_for};
use syncbridge::adapters::memory::MemoryStore;
use syncbridge::config::OAuthApp;
use syncbridge::domain::{
    Connection, ExternalId, IdempotencyKey, ObjectType, Provider, RemoteRecord, SyncCursor,
};
use syncbridge::ports::{Precondition, ProviderClient, ProviderError, ProviderFactory, ProviderWrite};
use syncbridge::sync::Deps;
use syncbridge::sync::worker::JobOutcome;

use super::provider_support::sync_once;
use syncbridge_fakes::google::{FakeConfig, Fault, FaultKind, GoogleFake, Route, RunningFake};

const TOKEN: &str = "ya29.fake-google";

async fn start(events: usize, weekly_instances: usize) -> RunningFake {
    GoogleFake::start(FakeConfig { events, weekly_instances, ..FakeConfig::default() })
        .await
        .expect("fake starts")
}

fn connection(fake: &RunningFake, token: &str, refresh: Option<&str>) -> Connection {
    crate::provider_support::connection_to(Provider::Google, fake.api_url(), token, refresh)
}

fn factory(fake: &RunningFake) -> GoogleFactory {
    let config = fake.state().config().clone();
    let app =
        OAuthApp { client_id: config.client_id, client_secret: SecretString::from(config.client_secret) };
    let backoff =
        Backoff { base: Duration::from_millis(20), max_wait: Duration::from_secs(1), ..Backoff::default() };
    GoogleFactory::new(reqwest::Client::new(), Some(app), fake.token_url()).with_backoff(backoff)
}

fn client(fake: &RunningFake) -> GoogleClient {
    factory(fake).concrete(&connection(fake, TOKEN, None)).expect("client")
}

/// Pulls until `has_more` is false; returns the records, the final cursor and the page count.
async fn pull_all(
    client: &dyn ProviderClient,
    mut cursor: Option<SyncCursor>,
) -> (Vec<RemoteRecord>, Option<SyncCursor>, usize) {
    let token = SecretString::from(TOKEN);
    let mut records = Vec::new();
    for pages in 1..=100 {
        let page = client.pull_page(&token, ObjectType::Events, cursor.as_ref()).await.expect("page pulls");
        records.extend(page.records);
        cursor = Some(page.cursor);
        if !page.has_more {
            return (records, cursor, pages);
        }
    }
    panic!("the pull did not finish within 100 pages");
}

fn ids(records: &[RemoteRecord]) -> BTreeSet<String> {
    records.iter().map(|r| r.external_id.as_str().to_owned()).collect()
}

fn start_of(event: &Value) -> DateTime<Utc> {
    let s = &event["start"];
    if let Some(dt) = s["dateTime"].as_str() {
        return DateTime::parse_from_rfc3339(dt).expect("dateTime").with_timezone(&Utc);
    }
    let d = chrono::NaiveDate::parse_from_str(s["date"].as_str().expect("date"), "%Y-%m-%d").expect("date");
    d.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

/// Live seeded events that overlap now .. now + 7 days (the adapter's default window).
fn in_window(fake: &RunningFake) -> BTreeSet<String> {
    let state = fake.state();
    let now = Utc::now();
    state
        .live_event_ids()
        .into_iter()
        .filter(|id| {
            let ev = state.event(id).expect("event");
            let end = start_of(&json!({ "start": ev["end"] }));
            end > now && start_of(&ev) < now + chrono::Duration::days(7)
        })
        .collect()
}

#[tokio::test]
async fn google_full_pull_pages_the_window_then_an_incremental_pull_returns_only_a_persons_changes_in_one_request()
 {
    let fake = start(600, 4).await;
    let client = client(&fake);
    let (records, cursor, pages) = pull_all(&client, None).await;
    assert!(pages >= 2, "more than 250 events in the window take several pages, took {pages}");
    assert_eq!(ids(&records), in_window(&fake), "exactly the window's live events");
    assert_eq!(records.len(), ids(&records).len(), "no event twice");
    assert!(records.iter().any(|r| r.external_id.as_str().starts_with("weekly0sync_")), "instances");
    assert!(
        records.iter().any(|r| r.fields["all_day"] == json!(true)
            && r.fields["start"].as_str().is_some_and(|s| s.len() == 10))
    );
    let outside = records.iter().find(|r| {
        r.fields["attendees"].as_array().is_some_and(|a| a.iter().any(|e| e == "jane.doe@globex.example"))
    });
    assert!(outside.is_some(), "outside attendees arrive lowercased");
    assert!(records.iter().all(|r| r.etag.is_some() && r.remote_modified_at.is_some()));
    // Each event's iCalendar UID as Google serves it; a recurring meeting's occurrences share one.
    for r in &records {
        let served = fake.state().event(r.external_id.as_str()).expect("event");
        assert_eq!(r.fields["ical_uid"], served["iCalUID"], "{}", r.external_id.as_str());
    }
    let weekly: BTreeSet<&str> = records
        .iter()
        .filter(|r| r.external_id.as_str().starts_with("weekly0sync_"))
        .filter_map(|r| r.fields["ical_uid"].as_str())
        .collect();
    assert_eq!(weekly.len(), 1, "{weekly:?}");

    let state = fake.state();
    let mut window: Vec<String> = in_window(&fake).into_iter().filter(|i| i.starts_with("seed")).collect();
    window.sort();
    let (edited, moved, cancelled) = (window[0].clone(), window[1].clone(), window[2].clone());
    state.edit_event(&edited, json!({ "summary": "Renamed by a person", "location": "" })).expect("edit");
    let later = Utc::now() + chrono::Duration::days(3);
    state.move_event(&moved, later, later + chrono::Duration::hours(1)).expect("move");
    state.cancel_event(&cancelled).expect("cancel");
    state.reset_stats();

    let (changes, _, pages) = pull_all(&client, cursor).await;
    assert_eq!(pages, 1);
    assert_eq!(state.stats().total, 1, "one request for the increment");
    assert_eq!(state.stats().incremental_lists, 1);
    assert_eq!(ids(&changes), BTreeSet::from([edited.clone(), moved.clone(), cancelled.clone()]));
    let by_id: BTreeMap<&str, &RemoteRecord> = changes.iter().map(|r| (r.external_id.as_str(), r)).collect();
    assert_eq!(by_id[edited.as_str()].fields["title"], json!("Renamed by a person"));
    assert_eq!(by_id[edited.as_str()].fields["location"], Value::Null);
    assert_eq!(
        by_id[moved.as_str()].fields["start"],
        json!(later.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    );
    assert!(by_id[cancelled.as_str()].deleted, "cancelled events are deletes");
    assert!(!by_id[edited.as_str()].deleted);
}

#[tokio::test]
async fn google_incremental_pulls_keep_changes_to_events_outside_the_window() {
    let fake = start(20, 0).await;
    let client = client(&fake);
    let (_, cursor, _) = pull_all(&client, None).await;
    let far = Utc::now() + chrono::Duration::days(40);
    let created = fake
        .state()
        .create_event(json!({ "summary": "Offsite", "start": { "dateTime": far.to_rfc3339() }, "end": { "dateTime": (far + chrono::Duration::hours(2)).to_rfc3339() } }))
        .expect("create");
    let (changes, _, _) = pull_all(&client, cursor).await;
    assert_eq!(ids(&changes), BTreeSet::from([created["id"].as_str().expect("id").to_owned()]));
}

#[tokio::test]
async fn google_410_restarts_a_full_pull_whose_gap_listing_catches_events_moved_out_of_the_window() {
    let fake = start(40, 2).await;
    let client = client(&fake);
    let (first, cursor, _) = pull_all(&client, None).await;
    let state = fake.state();
    let mut window: Vec<String> = ids(&first).into_iter().filter(|i| i.starts_with("seed")).collect();
    window.sort();
    let (moved_out, cancelled, edited) = (window[0].clone(), window[1].clone(), window[2].clone());
    let far = Utc::now() + chrono::Duration::days(45);
    state.move_event(&moved_out, far, far + chrono::Duration::hours(1)).expect("move");
    state.cancel_event(&cancelled).expect("cancel");
    state.edit_event(&edited, json!({ "summary": "Edited while the token was dead" })).expect("edit");
    state.invalidate_sync_tokens();
    state.reset_stats();

    let (resync, cursor, _) = pull_all(&client, cursor).await;
    let stats = state.stats();
    assert_eq!(stats.incremental_lists, 1, "the sync token was tried once, then the full listing");
    assert!(stats.routes["list"] >= 3, "410, window and gap listings: {stats:?}");
    let latest: BTreeMap<&str, &RemoteRecord> = resync.iter().map(|r| (r.external_id.as_str(), r)).collect();
    assert!(
        latest[moved_out.as_str()].fields["start"]
            .as_str()
            .is_some_and(|s| s.starts_with(&far.format("%Y-%m-%d").to_string()))
    );
    assert!(latest[cancelled.as_str()].deleted, "a cancellation during the gap still arrives");
    assert_eq!(latest[edited.as_str()].fields["title"], json!("Edited while the token was dead"));
    let survivors: BTreeSet<String> =
        ids(&first).into_iter().filter(|i| *i != cancelled && *i != moved_out).collect();
    assert!(survivors.is_subset(&ids(&resync)), "every event still in the window is listed again");

    state.reset_stats();
    let (after, _, _) = pull_all(&client, cursor).await;
    assert!(after.is_empty(), "the new sync token is current: {:?}", ids(&after));
    assert_eq!(state.stats().total, 1);
}

fn engine(fake: &RunningFake) -> (Deps, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let deps =
        syncbridge::adapters::memory::TestDeps::new(store.clone()).providers(Arc::new(factory(fake))).build();
    (deps, store)
}

/// The connection's stored calendar events (the engine also derives research tasks from them).
fn events_of(store: &MemoryStore, conn: &Connection) -> Vec<syncbridge::domain::CanonicalRecord> {
    let mut records = store.records_of(&conn.tenant_id, &conn.connection_id);
    records.retain(|r| r.object == ObjectType::Events);
    records
}

#[tokio::test]
async fn a_410_during_a_worker_run_resyncs_without_losing_or_duplicating_records() {
    let fake = start(40, 3).await;
    let (deps, store) = engine(&fake);
    let conn = connection(&fake, TOKEN, None);
    store.put_connection(conn.clone());
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    let records = events_of(&store, &conn);
    let stored: BTreeSet<String> = records.iter().map(|r| r.external_id.as_str().to_owned()).collect();
    assert_eq!(stored, in_window(&fake));
    assert_eq!(records.len(), stored.len());

    let state = fake.state();
    let mut seeded: Vec<String> = stored.iter().filter(|i| i.starts_with("seed")).cloned().collect();
    seeded.sort();
    let far = Utc::now() + chrono::Duration::days(30);
    state.move_event(&seeded[0], far, far + chrono::Duration::hours(1)).expect("move");
    state.cancel_event(&seeded[1]).expect("cancel");
    let soon = Utc::now() + chrono::Duration::days(1);
    let added = state
        .create_event(json!({ "summary": "New", "start": { "dateTime": soon.to_rfc3339() }, "end": { "dateTime": (soon + chrono::Duration::hours(1)).to_rfc3339() } }))
        .expect("create");
    state.inject_fault(Fault { route: Route::List, kind: FaultKind::SyncTokenGone, count: 1 });
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));

    let after = events_of(&store, &conn);
    let after_ids: BTreeSet<String> = after.iter().map(|r| r.external_id.as_str().to_owned()).collect();
    assert_eq!(after.len(), after_ids.len(), "no record twice");
    let mut expected = stored.clone();
    expected.insert(added["id"].as_str().expect("id").to_owned());
    assert_eq!(after_ids, expected, "nothing lost, the new event added");
    let by_id: BTreeMap<&str, _> = after.iter().map(|r| (r.external_id.as_str(), r)).collect();
    assert!(by_id[seeded[1].as_str()].deleted, "cancelled during the gap -> deleted");
    assert!(
        by_id[seeded[0].as_str()].fields["start"]
            .as_str()
            .is_some_and(|s| s.starts_with(&far.format("%Y-%m-%d").to_string())),
        "moved out of the window during the gap -> updated"
    );
    assert_eq!(state.stats().incremental_lists, 1, "the second sync tried its token once, then resynced");

    // A cursor the adapter cannot read is `CursorExpired`: the worker drops it and pulls in full.
    let mut current =
        deps.connections.get(&conn.tenant_id, &conn.connection_id).await.expect("get").expect("conn");
    current.cursors.insert(ObjectType::Events, SyncCursor::new("not a cursor"));
    store.put_connection(current);
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    let again = events_of(&store, &conn);
    assert_eq!(again.len(), after.len(), "a full pull over stored records adds none");
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).expect("key")
}

fn meeting(title: &str) -> BTreeMap<String, Value> {
    let start = Utc::now() + chrono::Duration::days(2);
    BTreeMap::from([
        ("title".to_owned(), json!(title)),
        ("start".to_owned(), json!(start.to_rfc3339())),
        ("end".to_owned(), json!((start + chrono::Duration::minutes(30)).to_rfc3339())),
        ("attendees".to_owned(), json!(["raj@initech.example", "owner@acme.example"])),
        ("description".to_owned(), json!("Suggested by Syncbridge")),
    ])
}

#[tokio::test]
async fn creating_the_same_suggested_meeting_twice_leaves_one_event_at_google() {
    let fake = start(0, 0).await;
    let client = client(&fake);
    let token = SecretString::from(TOKEN);
    let write = ProviderWrite::Create {
        object: ObjectType::Events,
        fields: meeting("Intro"),
        idempotency_key: key("push-1"),
    };
    let first = client.write(&token, std::slice::from_ref(&write)).await.expect("write");
    let second = client.write(&token, &[write]).await.expect("write");
    let (a, b) = (first[0].as_ref().expect("created"), second[0].as_ref().expect("acked"));
    assert_eq!(a.external_id, b.external_id);
    assert_eq!(a.external_id.as_str(), event_id_for(&key("push-1")));
    assert_eq!(a.etag, b.etag);
    assert_eq!(fake.state().event_count(), 1, "one event at the fake");
    assert_eq!(
        b.fields.as_ref().expect("fields")["attendees"],
        json!(["owner@acme.example", "raj@initech.example"])
    );
    let stats = fake.state().stats();
    assert_eq!((stats.routes["insert"], stats.routes["get"]), (2, 1), "the 409 was answered by a fetch");
}

#[tokio::test]
async fn an_update_or_delete_with_a_stale_etag_is_a_conflict_and_changes_nothing() {
    let fake = start(5, 0).await;
    let client = client(&fake);
    let token = SecretString::from(TOKEN);
    let id = ExternalId::parse("seed00000").expect("id");
    let old_etag = fake.state().event("seed00000").expect("event")["etag"].as_str().expect("etag").to_owned();
    fake.state().edit_event("seed00000", json!({ "summary": "A person got there first" })).expect("edit");
    let fields = BTreeMap::from([("title".to_owned(), json!("Ours"))]);
    let stale = Precondition { etag: Some(old_etag.clone()), unmodified_since: None };
    let results = client
        .write(
            &token,
            &[
                ProviderWrite::Update {
                    object: ObjectType::Events,
                    external_id: id.clone(),
                    fields: fields.clone(),
                    precondition: stale.clone(),
                },
                ProviderWrite::Delete {
                    object: ObjectType::Events,
                    external_id: id.clone(),
                    precondition: stale,
                },
                ProviderWrite::Update {
                    object: ObjectType::Events,
                    external_id: id.clone(),
                    fields: fields.clone(),
                    precondition: Precondition {
                        etag: None,
                        unmodified_since: Some(Utc::now() - chrono::Duration::hours(1)),
                    },
                },
            ],
        )
        .await
        .expect("write");
    assert!(matches!(results[0], Err(ProviderError::Conflict)));
    assert!(matches!(results[1], Err(ProviderError::Conflict)));
    assert!(matches!(results[2], Err(ProviderError::Conflict)), "modified after unmodified_since");
    assert_eq!(fake.state().event("seed00000").expect("event")["summary"], "A person got there first");

    let fresh = fake.state().event("seed00000").expect("event")["etag"].as_str().expect("etag").to_owned();
    let ok = client
        .write(
            &token,
            &[ProviderWrite::Update {
                object: ObjectType::Events,
                external_id: id.clone(),
                fields,
                precondition: Precondition { etag: Some(fresh.clone()), unmodified_since: None },
            }],
        )
        .await
        .expect("write");
    let ack = ok[0].as_ref().expect("updated");
    assert_ne!(ack.etag.as_deref(), Some(fresh.as_str()));
    assert_eq!(ack.fields.as_ref().expect("fields")["title"], json!("Ours"));
    let del = client
        .write(
            &token,
            &[ProviderWrite::Delete {
                object: ObjectType::Events,
                external_id: id,
                precondition: Precondition { etag: ack.etag.clone(), unmodified_since: None },
            }],
        )
        .await
        .expect("write");
    assert!(del[0].is_ok());
    assert_eq!(fake.state().event("seed00000").expect("event")["status"], "cancelled");
}

#[tokio::test]
async fn rate_limits_are_backed_off_inline_then_reported_and_other_errors_are_classified() {
    let fake = start(3, 0).await;
    let client = client(&fake);
    let token = SecretString::from(TOKEN);
    let state = fake.state();
    let limit = |status: u16, reason: &str| FaultKind::RateLimit {
        status: Some(status),
        reason: Some(reason.into()),
        retry_after_secs: None,
    };
    state.inject_fault(Fault { route: Route::List, kind: limit(429, "rateLimitExceeded"), count: 1 });
    state.inject_fault(Fault { route: Route::List, kind: limit(403, "userRateLimitExceeded"), count: 1 });
    state.inject_fault(Fault { route: Route::List, kind: limit(403, "rateLimitExceeded"), count: 1 });
    let started = std::time::Instant::now();
    let page = client.pull_page(&token, ObjectType::Events, None).await.expect("succeeds after backoff");
    assert!(!page.records.is_empty());
    assert_eq!(client.stats().rate_limited, 3);
    assert!(started.elapsed() >= Duration::from_millis(10 + 20 + 40), "backed off: {:?}", started.elapsed());

    state.inject_fault(Fault { route: Route::List, kind: limit(429, "rateLimitExceeded"), count: 10 });
    let err = client.pull_page(&token, ObjectType::Events, None).await.expect_err("gives up");
    assert!(matches!(err, ProviderError::RateLimited { .. }), "{err:?}");
    assert_eq!(state.stats().rate_limited, 3 + 5, "the first try and four retries");
    state.clear_faults();

    // Faults that outlast the retries in place.
    let classify = |kind: FaultKind| Fault { route: Route::List, kind, count: 10 };
    state.inject_fault(classify(FaultKind::ServerError { status: Some(503) }));
    assert!(matches!(
        client.pull_page(&token, ObjectType::Events, None).await,
        Err(ProviderError::Transient(_))
    ));
    state.clear_faults();
    state.inject_fault(classify(FaultKind::ExpiredToken));
    assert!(matches!(
        client.pull_page(&token, ObjectType::Events, None).await,
        Err(ProviderError::Unauthorized)
    ));
    state.clear_faults();
    state.inject_fault(classify(FaultKind::MalformedJson));
    let err = client.pull_page(&token, ObjectType::Events, None).await.expect_err("malformed");
    assert!(matches!(err, ProviderError::Transient(_)), "a truncated body is retried later: {err:?}");
    assert!(!format!("{err}").contains(TOKEN));
}

#[tokio::test]
async fn an_expired_token_is_refreshed_at_the_token_endpoint_and_a_revoked_one_is_unauthorized() {
    let fake = start(3, 0).await;
    let state = fake.state();
    let issued = state.issue_token(None);
    let conn = connection(&fake, &issued.access_token, Some(&issued.refresh_token));
    let client = factory(&fake).client(&conn).expect("client");
    state.expire_token(&issued.access_token);
    let old = SecretString::from(issued.access_token.clone());
    assert!(matches!(
        client.pull_page(&old, ObjectType::Events, None).await,
        Err(ProviderError::Unauthorized)
    ));
    let fresh = client.refresh(&SecretString::from(issued.refresh_token.clone())).await.expect("refresh");
    let ttl = fresh.expires_at.expect("expiry") - Utc::now();
    assert!(ttl > chrono::Duration::seconds(3590) && ttl <= chrono::Duration::seconds(3599), "{ttl}");
    assert!(fresh.refresh_token.is_some(), "Google's reply has no refresh token; the old one is kept");
    client.pull_page(&fresh.access_token, ObjectType::Events, None).await.expect("the new token works");
    state.revoke_refresh_token(&issued.refresh_token);
    let err = client.refresh(&SecretString::from(issued.refresh_token)).await.expect_err("revoked");
    assert!(matches!(err, ProviderError::Unauthorized), "{err:?}");

    let no_app =
        GoogleFactory::new(reqwest::Client::new(), None, fake.token_url()).client(&conn).expect("client");
    assert!(matches!(no_app.refresh(&SecretString::from("x")).await, Err(ProviderError::Permanent(_))));
}

#[tokio::test]
async fn a_watch_channel_is_created_then_renewed_before_expiry_by_stopping_the_old_one() {
    let fake = start(1, 0).await;
    let client = client(&fake);
    let token = SecretString::from(TOKEN);
    let proof = SecretString::from("channel-proof");
    let address = "http://127.0.0.1:9/webhooks/google";
    let channel =
        client.watch(&token, address, &proof, Some(chrono::Duration::hours(2))).await.expect("watch");
    assert!(channel.expiration > Utc::now() + chrono::Duration::minutes(110));
    let registered = fake.state().channels();
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].id, channel.id);
    assert_eq!(registered[0].token.as_deref(), Some("channel-proof"));
    assert_eq!(registered[0].address, address);

    let not_yet = client
        .renew_channel(&token, &channel, address, &proof, chrono::Duration::minutes(30))
        .await
        .expect("renew");
    assert!(not_yet.is_none(), "two hours left, thirty-minute margin: nothing to do");
    let renewed = client
        .renew_channel(&token, &channel, address, &proof, chrono::Duration::hours(3))
        .await
        .expect("renew")
        .expect("a new channel");
    assert_ne!(renewed.id, channel.id);
    let active: Vec<String> = fake.state().active_channels().into_iter().map(|c| c.id).collect();
    assert_eq!(active, vec![renewed.id.clone()], "the old channel was stopped");
    client.stop_channel(&token, &renewed).await.expect("stop");
    assert!(fake.state().active_channels().is_empty());
    client.stop_channel(&token, &renewed).await.expect("stopping twice is fine");
}

#[tokio::test]
async fn a_synced_google_connection_keeps_one_channel_at_google_renewed_only_near_its_expiry() {
    use secrecy::ExposeSecret;
    use syncbridge::adapters::memory::ManualClock;
    use syncbridge::ports::ConnectionStore;

    let fake = start(2, 0).await;
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let mut deps = syncbridge::adapters::memory::TestDeps::new(store.clone())
        .providers(Arc::new(factory(&fake)))
        .clock(clock.clone())
        .build();
    deps.settings.webhook_base_url = Some("http://127.0.0.1:9/prod".into());
    let conn = connection(&fake, TOKEN, None);
    store.put_connection(conn.clone());
    let stored = |store: Arc<MemoryStore>, conn: Connection| async move {
        store.get(&conn.tenant_id, &conn.connection_id).await.expect("get").expect("connection")
    };

    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    let active = fake.state().active_channels();
    assert_eq!(active.len(), 1, "one channel after the first sync");
    assert_eq!(active[0].address, "http://127.0.0.1:9/prod/webhooks/google");
    let kept = stored(store.clone(), conn.clone()).await.push_channel.expect("channel kept");
    assert_eq!(kept.id, active[0].id);
    assert_eq!(active[0].token.as_deref(), Some(kept.secret.expose_secret()), "the token is the secret");
    assert!(kept.expires_at > Utc::now() + chrono::Duration::days(6), "a week was asked for");
    assert_eq!(
        store.find_channel(&kept.id).await.expect("find"),
        Some((conn.tenant_id.clone(), conn.connection_id.clone(), Provider::Google))
    );

    // Hours later, days before the margin: no channel request at all.
    clock.advance(chrono::Duration::hours(3));
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    assert_eq!(fake.state().channels().len(), 1);
    assert_eq!(fake.state().stats().routes.get("watch").copied().unwrap_or(0), 1);

    // Less than a day before expiry: a new channel, the old one stopped, the same token.
    clock.set(kept.expires_at - chrono::Duration::hours(12));
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    let all = fake.state().channels();
    assert_eq!(all.len(), 2);
    assert!(all.iter().any(|c| c.id == kept.id && c.stopped), "the old channel was stopped");
    let active = fake.state().active_channels();
    assert_eq!(active.len(), 1);
    let renewed = stored(store.clone(), conn.clone()).await.push_channel.expect("channel kept");
    assert_eq!(renewed.id, active[0].id);
    assert_ne!(renewed.id, kept.id);
    assert_eq!(renewed.secret.expose_secret(), kept.secret.expose_secret());
    assert!(store.find_channel(&renewed.id).await.expect("find").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_google_connection_syncs_through_the_local_stack_and_a_410_resyncs_without_losing_or_duplicating() {
    let stack = syncbridge_tests::stack(0, false).await.expect("stack");
    let created = syncbridge_tests::api(&stack, "acme")
        .expect("api")
        .call(
            reqwest::Method::POST,
            "/v1/connections",
            Some(json!({ "provider": "google", "base_url": stack.google.base_url(), "access_token": TOKEN })),
        )
        .await
        .expect("connect");
    let id = created["id"].as_str().expect("id").to_owned();
    let drain = Duration::from_secs(120);
    stack.runner.fire_schedule(Utc::now()).await.expect("tick");
    assert_eq!(stack.runner.drain(drain).await.expect("drain").failures, 0);
    let conn = syncbridge_tests::get(&stack, "acme", &format!("/v1/connections/{id}")).await.expect("conn");
    assert_eq!(conn["status"], "synced", "{conn}");
    let window = in_window(&stack.google);
    assert_eq!(conn["record_counts"]["events"], json!(window.len()));
    let channels = stack.google.state().active_channels();
    assert_eq!(channels.len(), 1, "the synced connection has one push channel");
    assert_eq!(channels[0].address, format!("{}/webhooks/google", stack.gateway.base_url()));

    let google = stack.google.state();
    let mut seeded: Vec<String> = window.iter().filter(|i| i.starts_with("seed")).cloned().collect();
    seeded.sort();
    let far = Utc::now() + chrono::Duration::days(20);
    google.move_event(&seeded[0], far, far + chrono::Duration::hours(1)).expect("move");
    google.cancel_event(&seeded[1]).expect("cancel");
    google.invalidate_sync_tokens();
    stack.runner.fire_schedule(Utc::now() + chrono::Duration::minutes(16)).await.expect("tick");
    assert_eq!(stack.runner.drain(drain).await.expect("drain").failures, 0);

    let mut records = syncbridge_tests::all_records(&stack, "acme", &id).await.expect("records");
    records.retain(|r| r["object"] == "events");
    let ids: BTreeSet<&str> = records.iter().filter_map(|r| r["external_id"].as_str()).collect();
    assert_eq!(records.len(), ids.len(), "no record twice");
    assert_eq!(ids, window.iter().map(String::as_str).collect(), "nothing lost");
    let find = |id: &str| records.iter().find(|r| r["external_id"] == id).expect("record");
    assert_eq!(find(&seeded[1])["deleted"], true);
    assert!(
        find(&seeded[0])["fields"]["start"]
            .as_str()
            .is_some_and(|s| s.starts_with(&far.format("%Y-%m-%d").to_string()))
    );
    assert_eq!(stack.google.state().channels().len(), 1, "a second sync opens no second channel");
    let conn = syncbridge_tests::get(&stack, "acme", &format!("/v1/connections/{id}")).await.expect("conn");
    assert_eq!(
        conn["record_counts"]["events"],
        json!(window.len() - 1),
        "the cancelled event is counted out"
    );
}

#[tokio::test]
async fn an_incremental_pull_of_more_than_a_page_of_changes_follows_page_tokens_to_the_next_sync_token() {
    let fake = start(320, 0).await;
    let client = client(&fake);
    let (_, cursor, _) = pull_all(&client, None).await;
    let state = fake.state();
    let edited: BTreeSet<String> = state.live_event_ids().into_iter().take(300).collect();
    for id in &edited {
        state.edit_event(id, json!({ "description": "bulk edit" })).expect("edit");
    }
    let (changes, cursor, pages) = pull_all(&client, cursor).await;
    assert_eq!(pages, 2, "300 changes at 250 a page");
    assert_eq!(ids(&changes), edited);
    assert!(changes.iter().all(|r| r.fields["description"] == json!("bulk edit")));
    let (after, _, _) = pull_all(&client, cursor).await;
    assert!(after.is_empty());
}

#[tokio::test]
async fn an_approved_suggested_meeting_is_created_once_at_google_and_its_echo_changes_nothing() {
    use syncbridge::domain::{Priority, PushAction};
    use syncbridge::sync::push::{PushRequest, queue};

    let fake = start(5, 0).await;
    let (deps, store) = engine(&fake);
    let mut conn = connection(&fake, TOKEN, None);
    conn.settings.auto_push.insert(PushAction::CreateEvent, true);
    store.put_connection(conn.clone());
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    let before = fake.state().event_count();

    let request = PushRequest {
        action: PushAction::CreateEvent,
        object: None,
        priority: Priority::Normal,
        record_id: None,
        fields: meeting("Intro with Initech"),
        idempotency_key: key("suggest-1"),
        source: None,
    };
    queue(&deps, &conn, request, "agent").await.expect("queued");
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    let id = event_id_for(&key("suggest-1"));
    let event = fake.state().event(&id).expect("the meeting is at Google");
    assert_eq!(event["summary"], "Intro with Initech");
    assert_eq!(fake.state().event_count(), before + 1);

    // A worker that died after Google accepted the create repeats it: still one event.
    let client = factory(&fake).client(&conn).expect("client");
    let repeat = ProviderWrite::Create {
        object: ObjectType::Events,
        fields: meeting("Intro with Initech"),
        idempotency_key: key("suggest-1"),
    };
    let acked = client.write(&SecretString::from(TOKEN), &[repeat]).await.expect("write");
    assert_eq!(acked[0].as_ref().expect("acked").external_id.as_str(), id);
    assert_eq!(fake.state().event_count(), before + 1);

    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    let records = events_of(&store, &conn);
    let ours: Vec<_> = records.iter().filter(|r| r.external_id.as_str() == id).collect();
    assert_eq!(ours.len(), 1, "one record for the meeting");
    assert_eq!(ours[0].version, 1, "the pulled echo of our own create changed nothing");
    assert_eq!(ours[0].fields["title"], json!("Intro with Initech"));
}
