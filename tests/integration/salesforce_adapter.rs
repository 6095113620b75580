//! The Salesforce adapter against the Salesforce fake over HTTP: full and incremental SOQL pulls,
//! ties on `SystemModstamp`, deletes, sObject Collections writes, idempotent creates (and the key
//! field they provision on a stock org), the Bulk API 2.0 path, API limits, errors, session expiry
//! and token refresh.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use syncbridge::adapters::salesforce::{SalesforceClient, SalesforceFactory, Tuning};
use syncbridge::config::OAuthApp;
use syncbridge::domain::record::Fields;
use syncbridge::domain::{
    Connection, Credentials, ExternalId, IdempotencyKey, NewConnection, ObjectType, Provider, RemoteRecord,
    SyncCursor, TenantId,
};
use syncbridge::ports::{Precondition, ProviderClient, ProviderError, ProviderFactory, ProviderWrite};
use syncbridge_fakes::salesforce::{
    FakeConfig, Fault, FaultKind, Route, RunningFake, SalesforceFake, SalesforceState, SeedCounts, make_id,
};

const TOKEN: &str = "00DFAKE!session";

async fn start(seed_counts: SeedCounts) -> RunningFake {
    SalesforceFake::start(FakeConfig { seed_counts, ..FakeConfig::default() }).await.expect("fake starts")
}

fn contacts(n: usize) -> SeedCounts {
    SeedCounts { accounts: 5, contacts: n, ..SeedCounts::default() }
}

fn connection(base_url: &str) -> Connection {
    Connection::new(
        TenantId::parse("t1").expect("tenant"),
        NewConnection {
            provider: Provider::Salesforce,
            base_url: base_url.to_owned(),
            credentials: Credentials {
                access_token: SecretString::from(TOKEN),
                refresh_token: None,
                expires_at: None,
            },
            interval_minutes: 15,
            settings: Default::default(),
        },
        Utc::now(),
    )
}

fn app(fake: &RunningFake) -> OAuthApp {
    OAuthApp {
        client_id: fake.state().config().client_id.clone(),
        client_secret: SecretString::from(fake.state().config().client_secret.clone()),
    }
}

/// Small pages, no lookback (so re-pulls are exact), fast bulk polling.
fn tuning() -> Tuning {
    Tuning {
        batch_size: 200,
        lookback: Duration::ZERO,
        bulk_poll_interval: Duration::from_millis(10),
        ..Tuning::default()
    }
}

fn client(fake: &RunningFake, tuning: Tuning) -> Box<dyn ProviderClient> {
    SalesforceFactory::new(reqwest::Client::new(), Some(app(fake)))
        .with_tuning(tuning)
        .client(&connection(&fake.base_url()))
        .expect("client")
}

fn token() -> SecretString {
    SecretString::from(TOKEN)
}

/// Pulls until `has_more` is false; returns every record (with repeats), the final cursor and the
/// number of pages. Fails instead of looping forever.
async fn pull_all(
    client: &dyn ProviderClient,
    token: &SecretString,
    object: ObjectType,
    mut cursor: Option<SyncCursor>,
) -> (Vec<RemoteRecord>, Option<SyncCursor>, usize) {
    let mut records = Vec::new();
    for pages in 1..=500 {
        let page = client.pull_page(token, object, cursor.as_ref()).await.expect("page pulls");
        records.extend(page.records);
        cursor = Some(page.cursor);
        if !page.has_more {
            return (records, cursor, pages);
        }
    }
    panic!("the pull did not finish within 500 pages");
}

fn ids(records: &[RemoteRecord]) -> Vec<String> {
    records.iter().map(|r| r.external_id.as_str().to_owned()).collect()
}

#[tokio::test]
async fn salesforce_full_pull_then_incremental_pulls_only_edited_records_in_two_requests() {
    let fake = start(contacts(450)).await;
    let state = fake.state();
    let client = client(&fake, tuning());
    let (records, cursor, pages) = pull_all(client.as_ref(), &token(), ObjectType::Contacts, None).await;
    let unique: BTreeSet<String> = ids(&records).into_iter().collect();
    assert_eq!((records.len(), unique.len(), pages), (450, 450, 3));
    assert_eq!(state.route_count(Route::QueryMore), 2);
    let first = records.iter().find(|r| r.external_id.as_str() == make_id("003", 1)).expect("contact 1");
    let stored = state.record(&make_id("003", 1)).expect("stored");
    assert_eq!(first.fields["email"], stored["Email"]);
    assert_eq!(first.fields["job_title"], stored["Title"]);
    assert_eq!(first.fields["company_ids"], json!([stored["AccountId"]]));
    assert!(first.remote_modified_at.is_some() && !first.deleted && first.etag.is_none());

    let edited = [make_id("003", 7), make_id("003", 200), make_id("003", 451 - 1)];
    // Two minutes later (Salesforce answers no delete window of a minute or less).
    state.advance_clock(120_000);
    for id in &edited {
        state.edit(id, &[("Title", json!("Chief Edited Officer"))]).expect("edit");
    }
    state.reset_stats();
    let (records, _, pages) = pull_all(client.as_ref(), &token(), ObjectType::Contacts, cursor).await;
    let got: BTreeSet<String> = ids(&records).into_iter().collect();
    assert_eq!(got, edited.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.fields["job_title"] == json!("Chief Edited Officer")));
    assert_eq!(pages, 1);
    let stats = state.stats();
    assert_eq!(stats.total, 2, "one query and one deleted call: {stats:?}");
    assert_eq!(stats.routes.get("deleted"), Some(&1));
}

#[tokio::test]
async fn salesforce_pull_skips_nothing_when_many_records_share_one_modstamp_across_pages() {
    let fake = start(contacts(1_000)).await;
    let state = fake.state();
    let client = client(&fake, tuning());
    let (_, cursor, _) = pull_all(client.as_ref(), &token(), ObjectType::Contacts, None).await;
    let touched: Vec<String> = (300..=999).map(|n| make_id("003", n)).collect();
    assert_eq!(state.touch(&touched, None), touched.len());
    // One page, then every query locator expires: the adapter must resume by keyset.
    let page = client.pull_page(&token(), ObjectType::Contacts, cursor.as_ref()).await.expect("first page");
    assert_eq!(page.records.len(), 200);
    assert!(page.has_more);
    state.expire_query_locators();
    let (rest, _, _) = pull_all(client.as_ref(), &token(), ObjectType::Contacts, Some(page.cursor)).await;
    let all: Vec<String> = ids(&page.records).into_iter().chain(ids(&rest)).collect();
    let unique: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(unique, touched.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(all.len(), touched.len(), "no record pulled twice");
    let stamps: BTreeSet<_> = page.records.iter().chain(&rest).map(|r| r.remote_modified_at).collect();
    assert_eq!(stamps.len(), 1, "all touched records share one SystemModstamp");
}

#[tokio::test]
async fn salesforce_deletes_are_pulled_as_deleted_records() {
    let fake = start(contacts(30)).await;
    let state = fake.state();
    let client = client(&fake, tuning());
    let (_, cursor, _) = pull_all(client.as_ref(), &token(), ObjectType::Contacts, None).await;
    let gone = [make_id("003", 4), make_id("003", 9)];
    for id in &gone {
        assert!(state.delete(id));
    }
    // Salesforce reads whole minutes: a delete shows once a later minute closes the window.
    state.advance_clock(120_000);
    let (records, cursor, _) = pull_all(client.as_ref(), &token(), ObjectType::Contacts, cursor).await;
    let deleted: BTreeSet<String> =
        records.iter().filter(|r| r.deleted).map(|r| r.external_id.as_str().to_owned()).collect();
    assert_eq!(deleted, gone.iter().cloned().collect::<BTreeSet<_>>());
    assert!(
        records.iter().filter(|r| r.deleted).all(|r| r.fields.is_empty() && r.remote_modified_at.is_some())
    );
    let (again, _, _) = pull_all(client.as_ref(), &token(), ObjectType::Contacts, cursor).await;
    assert!(again.iter().all(|r| !r.deleted), "a delete is reported once");
}

/// Pulls to the end like [`pull_all`]; also whether a page asked the engine to reconcile ids.
async fn pull_all_reconciling(
    client: &dyn ProviderClient,
    object: ObjectType,
    mut cursor: Option<SyncCursor>,
) -> (Vec<RemoteRecord>, Option<SyncCursor>, bool) {
    let (mut records, mut reconcile) = (Vec::new(), false);
    for _ in 1..=500 {
        let page = client.pull_page(&token(), object, cursor.as_ref()).await.expect("page pulls");
        records.extend(page.records);
        reconcile |= page.reconcile_deletes;
        cursor = Some(page.cursor);
        if !page.has_more {
            return (records, cursor, reconcile);
        }
    }
    panic!("the pull did not finish within 500 pages");
}

fn deleted_ids(records: &[RemoteRecord]) -> BTreeSet<String> {
    records.iter().filter(|r| r.deleted).map(|r| r.external_id.as_str().to_owned()).collect()
}

#[tokio::test]
async fn salesforce_syncs_succeed_whatever_the_gap_and_deletes_arrive_once_salesforce_can_be_asked() {
    let fake = start(contacts(30)).await;
    let state = fake.state();
    let client = client(&fake, tuning());
    let (_, cursor, _) = pull_all_reconciling(client.as_ref(), ObjectType::Contacts, None).await;
    // 0 s: a sync right after the last one (Sync Now twice) asks nothing Salesforce refuses.
    let (again, cursor, reconcile) =
        pull_all_reconciling(client.as_ref(), ObjectType::Contacts, cursor).await;
    assert!(deleted_ids(&again).is_empty() && !reconcile);
    // 59 s later, with a delete in between: the window is too short to ask; it is carried over.
    let first = make_id("003", 4);
    assert!(state.delete(&first));
    state.advance_clock(59_000);
    state.reset_stats();
    let (early, cursor, _) = pull_all_reconciling(client.as_ref(), ObjectType::Contacts, cursor).await;
    assert!(deleted_ids(&early).is_empty());
    assert_eq!(state.stats().routes.get("deleted"), None, "no deleted call for a window under two minutes");
    // Two minutes on, the carried window is asked and the delete arrives, once.
    state.advance_clock(120_000);
    let (later, cursor, _) = pull_all_reconciling(client.as_ref(), ObjectType::Contacts, cursor).await;
    assert_eq!(deleted_ids(&later), BTreeSet::from([first]));
    // 16 and 31 days away: the delete log has forgotten what was deleted meanwhile; the pull
    // succeeds and asks the engine to reconcile ids instead.
    let mut cursor = cursor;
    for (n, days) in [(9, 16), (17, 31)] {
        assert!(state.delete(&make_id("003", n)));
        state.advance_clock(days * 86_400_000);
        let (records, next, reconcile) =
            pull_all_reconciling(client.as_ref(), ObjectType::Contacts, cursor).await;
        assert!(reconcile, "{days} days away: reconcile ids");
        assert!(deleted_ids(&records).is_empty(), "{days} days: the log no longer has it");
        cursor = next;
    }
    // And the sync after a long gap is an ordinary one again.
    state.advance_clock(180_000);
    let (_, _, reconcile) = pull_all_reconciling(client.as_ref(), ObjectType::Contacts, cursor).await;
    assert!(!reconcile);
}

fn fields(v: Value) -> Fields {
    v.as_object().expect("object").clone().into_iter().collect()
}

fn xid(s: &str) -> ExternalId {
    ExternalId::parse(s.to_owned()).expect("id")
}

#[tokio::test]
async fn salesforce_collection_writes_report_partial_failures_and_conflicts() {
    let fake =
        start(SeedCounts { accounts: 3, contacts: 10, opportunities: 4, ..SeedCounts::default() }).await;
    let state = fake.state();
    let client = client(&fake, tuning());
    let read_at = Utc::now();
    let (ok, conflicted, deleted) = (make_id("003", 1), make_id("003", 2), make_id("003", 3));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    state.edit(&conflicted, &[("Phone", json!("+1-555-HUMAN"))]).expect("human edit");
    assert!(state.delete(&deleted));
    let pre = Precondition { etag: None, unmodified_since: Some(read_at) };
    let writes = vec![
        ProviderWrite::Update {
            object: ObjectType::Contacts,
            external_id: xid(&ok),
            fields: fields(json!({"phone": "+1-555-0001", "job_title": "CFO"})),
            precondition: pre.clone(),
        },
        ProviderWrite::Update {
            object: ObjectType::Contacts,
            external_id: xid(&conflicted),
            fields: fields(json!({"phone": "+1-555-OURS"})),
            precondition: pre.clone(),
        },
        ProviderWrite::Update {
            object: ObjectType::Contacts,
            external_id: xid(&deleted),
            fields: fields(json!({"phone": "+1-555-0003"})),
            precondition: pre.clone(),
        },
        ProviderWrite::Create {
            object: ObjectType::Contacts,
            fields: fields(json!({"first_name": "No", "email": "no.last@example.com"})),
            idempotency_key: IdempotencyKey::parse("missing-last-name".to_owned()).expect("key"),
        },
        ProviderWrite::Update {
            object: ObjectType::Deals,
            external_id: xid(&make_id("006", 1)),
            fields: fields(json!({"stage": "Closed Won", "amount": 1234.5})),
            precondition: Precondition::default(),
        },
    ];
    let results = client.write(&token(), &writes).await.expect("write call");
    assert_eq!(results.len(), 5);
    let ack = results[0].as_ref().expect("first update applied");
    assert_eq!(ack.external_id.as_str(), ok);
    assert_eq!(ack.fields.as_ref().expect("fields")["phone"], json!("+1-555-0001"));
    assert!(ack.remote_modified_at.expect("stamp") >= read_at - chrono::Duration::seconds(1));
    assert!(matches!(results[1], Err(ProviderError::Conflict)), "{:?}", results[1]);
    assert!(matches!(results[2], Err(ProviderError::NotFound)), "{:?}", results[2]);
    match &results[3] {
        Err(ProviderError::Permanent(m)) => assert!(m.mentions("REQUIRED_FIELD_MISSING"), "{m}"),
        other => panic!("expected a permanent error, got {other:?}"),
    }
    let deal = results[4].as_ref().expect("deal updated");
    assert_eq!(deal.fields.as_ref().expect("fields")["lifecycle_stage"], json!("account"));
    assert_eq!(state.record(&ok).expect("ok")["Title"], json!("CFO"));
    assert_eq!(state.record(&conflicted).expect("conflicted")["Phone"], json!("+1-555-HUMAN"));
    assert_eq!(state.record(&make_id("006", 1)).expect("deal")["Amount"], json!(1234.5));
    assert_eq!(state.route_count(Route::CollectionUpdate), 2, "one collection call per sObject");
}

#[tokio::test]
async fn salesforce_repeated_create_with_the_same_key_yields_one_record() {
    let fake = start(contacts(3)).await;
    let state = fake.state();
    let client = client(&fake, tuning());
    let create = ProviderWrite::Create {
        object: ObjectType::Notes,
        fields: fields(json!({"body": "[ARIA] Summary of the call", "company_ids": [make_id("001", 2)]})),
        idempotency_key: IdempotencyKey::parse("note-run-42".to_owned()).expect("key"),
    };
    let first = client.write(&token(), std::slice::from_ref(&create)).await.expect("first");
    let second = client.write(&token(), &[create.clone(), create]).await.expect("retry");
    let id = first[0].as_ref().expect("created").external_id.clone();
    assert!(id.as_str().starts_with("002"));
    for r in &second {
        assert_eq!(r.as_ref().expect("acked").external_id, id);
    }
    assert_eq!(state.count("Note"), 1);
    let title = state.record(id.as_str()).expect("note")["Title"].as_str().expect("title").to_owned();
    assert!(title.starts_with("[ARIA] Summary of the call [sb:"), "the key rides in the Title: {title}");
    assert!(!title.contains("note-run-42"), "the tag is a digest, not the key: {title}");
    let another = ProviderWrite::Create {
        object: ObjectType::Notes,
        fields: fields(json!({"body": "[ARIA] Summary of the call", "company_ids": [make_id("001", 2)]})),
        idempotency_key: IdempotencyKey::parse("note-run-43".to_owned()).expect("key"),
    };
    let third = client.write(&token(), &[another]).await.expect("another key");
    assert_ne!(third[0].as_ref().expect("created").external_id, id, "same text, new key: a new note");
    assert_eq!(state.count("Note"), 2);
    assert_eq!(state.route_count(Route::CollectionCreate), 2, "the retry created nothing");
    let note = state.record(id.as_str()).expect("note");
    assert_eq!(note["ParentId"], json!(make_id("001", 2)));
    assert_eq!(
        first[0].as_ref().expect("ack").fields.as_ref().expect("fields")["company_ids"],
        json!([make_id("001", 2)])
    );
}

#[tokio::test]
async fn salesforce_first_pull_above_threshold_uses_bulk_and_matches_the_rest_path() {
    let fake =
        start(SeedCounts { accounts: 20, contacts: 300, opportunities: 150, ..SeedCounts::default() }).await;
    let state = fake.state();
    let bulk = client(&fake, Tuning { bulk_threshold: 100, bulk_page: 120, ..tuning() });
    let rest = client(&fake, Tuning { bulk_threshold: 1_000_000, ..tuning() });
    for (object, n, results_pages) in [(ObjectType::Contacts, 300, 3), (ObjectType::Deals, 150, 2)] {
        state.reset_stats();
        let (by_bulk, _, _) = pull_all(bulk.as_ref(), &token(), object, None).await;
        let stats = state.stats();
        assert_eq!(stats.routes.get("bulk_create"), Some(&1), "{stats:?}");
        assert_eq!(stats.routes.get("bulk_results"), Some(&results_pages), "{stats:?}");
        assert_eq!(stats.routes.get("query_more"), None, "{stats:?}");
        state.reset_stats();
        let (by_rest, _, _) = pull_all(rest.as_ref(), &token(), object, None).await;
        assert_eq!(state.stats().routes.get("bulk_create"), None);
        let as_map = |rs: &[RemoteRecord]| -> BTreeMap<String, (Fields, Option<chrono::DateTime<Utc>>)> {
            rs.iter()
                .map(|r| (r.external_id.as_str().to_owned(), (r.fields.clone(), r.remote_modified_at)))
                .collect()
        };
        let (b, r) = (as_map(&by_bulk), as_map(&by_rest));
        assert_eq!(b.len(), n);
        assert_eq!(b, r, "{object}: the bulk and REST paths disagree");
    }
    let (deals, _, _) = pull_all(rest.as_ref(), &token(), ObjectType::Deals, None).await;
    let deal = &deals[0].fields;
    assert!(deal["amount"].is_number());
    assert!(
        deal.contains_key("lifecycle_stage") && deal.contains_key("stage") && deal.contains_key("close_date")
    );
}

#[tokio::test]
async fn salesforce_activities_pull_tasks_then_events_with_their_kind() {
    let fake =
        start(SeedCounts { accounts: 2, contacts: 4, tasks: 3, events: 2, ..SeedCounts::default() }).await;
    let client = client(&fake, tuning());
    let (records, _, pages) = pull_all(client.as_ref(), &token(), ObjectType::Activities, None).await;
    let kinds: Vec<&str> = records.iter().map(|r| r.fields["kind"].as_str().unwrap_or("?")).collect();
    assert_eq!(kinds, vec!["task", "task", "task", "event", "event"]);
    assert_eq!(pages, 2);
    let event = &records[3].fields;
    assert!(event["start"].as_str().is_some_and(|s| s.ends_with('Z')));
    assert!(records[0].fields.contains_key("due_date") && !records[0].fields.contains_key("start"));
}

#[tokio::test]
async fn salesforce_request_limit_exceeded_and_server_errors_are_classified() {
    let fake = start(contacts(450)).await;
    let state = fake.state();
    let client = client(&fake, tuning());
    state.inject_fault(Fault { route: Route::Query, kind: FaultKind::RequestLimit, count: 1 });
    match client.pull_page(&token(), ObjectType::Contacts, None).await {
        Err(ProviderError::RateLimited { retry_after }) => assert!(retry_after >= Duration::from_secs(3_600)),
        other => panic!("expected RateLimited, got {other:?}"),
    }
    // Faults that outlast the retries in place.
    state.inject_fault(Fault {
        route: Route::Query,
        kind: FaultKind::ServerError { status: Some(503) },
        count: 10,
    });
    let err = client.pull_page(&token(), ObjectType::Contacts, None).await.expect_err("503");
    assert!(matches!(err, ProviderError::Transient(_)) && err.is_retryable(), "{err:?}");
    state.clear_faults();
    state.inject_fault(Fault { route: Route::Query, kind: FaultKind::MalformedJson, count: 10 });
    let err = client.pull_page(&token(), ObjectType::Contacts, None).await.expect_err("malformed");
    state.clear_faults();
    assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
    assert_eq!(client.stats().rate_limited, 1);

    // Near the daily allocation the client stops on its own before Salesforce refuses.
    state.set_api_usage(90, Some(100));
    let fresh = client_for_limits(&fake);
    let mut cursor = None;
    let stopped = loop {
        match fresh.pull_page(&token(), ObjectType::Contacts, cursor.as_ref()).await {
            Ok(page) => cursor = Some(page.cursor),
            Err(e) => break e,
        }
    };
    assert!(matches!(stopped, ProviderError::RateLimited { .. }), "{stopped:?}");
    let (used, max) = state.api_usage();
    assert!(used < max, "the client stopped at {used}/{max}");
    assert_eq!(state.stats().rate_limited, 1, "only the injected fault was a 403");
}

fn client_for_limits(fake: &RunningFake) -> Box<dyn ProviderClient> {
    client(fake, Tuning { slow_delay: Duration::from_millis(1), ..tuning() })
}

#[tokio::test]
async fn salesforce_session_expiry_refreshes_then_the_pull_continues_on_the_instance() {
    let fake = start(contacts(450)).await;
    let state = fake.state();
    let issued = fake.issue_token();
    let http = reqwest::Client::new();
    let conn = connection(&fake.base_url());
    let client = SalesforceClient::new(http, &conn, Some(app(&fake)), tuning()).expect("client");
    assert_eq!(client.instance_url(), None);
    let access = SecretString::from(issued.access_token.clone());
    let first = client.pull_page(&access, ObjectType::Contacts, None).await.expect("first page");
    assert_eq!(client.instance_url(), Some(fake.base_url()), "learnt from userinfo");
    assert_eq!(state.route_count(Route::UserInfo), 1);
    assert!(state.expire_token(&issued.access_token));
    let err =
        client.pull_page(&access, ObjectType::Contacts, Some(&first.cursor)).await.expect_err("expired");
    assert!(matches!(err, ProviderError::Unauthorized), "{err:?}");
    let fresh = client.refresh(&SecretString::from(issued.refresh_token.clone())).await.expect("refresh");
    assert!(fresh.expires_at.is_none(), "Salesforce says no expiry");
    assert_eq!(
        fresh.refresh_token.as_ref().map(|t| t.expose_secret().to_owned()),
        Some(issued.refresh_token.clone())
    );
    let (rest, _, _) = pull_all(&client, &fresh.access_token, ObjectType::Contacts, Some(first.cursor)).await;
    let all: BTreeSet<String> = ids(&first.records).into_iter().chain(ids(&rest)).collect();
    assert_eq!(all.len(), 450);
    assert!(state.revoke_refresh_token(&issued.refresh_token));
    let err = client.refresh(&SecretString::from(issued.refresh_token.clone())).await.expect_err("revoked");
    assert!(matches!(err, ProviderError::Unauthorized), "{err:?}");
}

#[tokio::test]
async fn salesforce_tokens_never_appear_in_error_display() {
    let fake = start(contacts(5)).await;
    let state = fake.state();
    let issued = fake.issue_token();
    let client = client(&fake, tuning());
    let access = SecretString::from(issued.access_token.clone());
    let refresh = SecretString::from(issued.refresh_token.clone());
    let mut errors = Vec::new();
    for kind in [
        FaultKind::RequestLimit,
        FaultKind::ServerError { status: None },
        FaultKind::ExpiredSession,
        FaultKind::MalformedJson,
    ] {
        // Enough to outlast the retries in place of the transient ones.
        state.inject_fault(Fault { route: Route::Any, kind, count: 10 });
        errors.push(client.pull_page(&access, ObjectType::Contacts, None).await.expect_err("fault"));
        state.clear_faults();
    }
    state.inject_fault(Fault {
        route: Route::Token,
        kind: FaultKind::ServerError { status: None },
        count: 1,
    });
    errors.push(client.refresh(&refresh).await.expect_err("token 500"));
    assert!(state.revoke_refresh_token(&issued.refresh_token));
    errors.push(client.refresh(&refresh).await.expect_err("revoked"));
    let bogus = SecretString::from("00DFAKE!not-a-session-token-123");
    errors.push(client.pull_page(&bogus, ObjectType::Contacts, None).await.expect_err("bogus"));
    assert_eq!(errors.len(), 7);
    for e in &errors {
        for text in [e.to_string(), format!("{e:?}")] {
            for secret in [issued.access_token.as_str(), issued.refresh_token.as_str(), bogus.expose_secret()]
            {
                assert!(!text.contains(secret), "a token leaked into {text}");
            }
        }
    }
}

fn contact_create(key: &str, last_name: &str) -> ProviderWrite {
    ProviderWrite::Create {
        object: ObjectType::Contacts,
        fields: fields(
            json!({"first_name": "Ada", "last_name": last_name, "email": format!("{key}@example.com")}),
        ),
        idempotency_key: IdempotencyKey::parse(key.to_owned()).expect("key"),
    }
}

fn note_create(key: &str, body: &str) -> ProviderWrite {
    ProviderWrite::Create {
        object: ObjectType::Notes,
        fields: fields(json!({"body": body, "company_ids": [make_id("001", 1)]})),
        idempotency_key: IdempotencyKey::parse(key.to_owned()).expect("key"),
    }
}

/// The `FieldPermissions` records granting something on `Contact.Syncbridge_Key__c`.
fn key_field_grants(state: &SalesforceState) -> Vec<Value> {
    state
        .ids("FieldPermissions")
        .iter()
        .filter_map(|id| state.record(id))
        .filter(|r| r["Field"] == json!("Contact.Syncbridge_Key__c"))
        .collect()
}

#[tokio::test]
async fn salesforce_first_contact_create_on_a_stock_org_provisions_the_key_field_then_later_creates_cost_three_requests()
 {
    let fake = start(contacts(3)).await;
    let state = fake.state();
    assert!(state.custom_fields().is_empty(), "a stock org has no custom fields");
    let client = client(&fake, tuning());
    let results =
        client.write(&token(), &[contact_create("contact-run-1", "Lovelace")]).await.expect("write");
    let ack = results[0].as_ref().expect("created");
    let stored = state.record_by_key("Contact", "contact-run-1").expect("the record carries its key");
    assert_eq!(ack.external_id.as_str(), stored["Id"].as_str().expect("id"));
    assert_eq!(stored["LastName"], json!("Lovelace"));

    let custom = state.custom_fields();
    assert_eq!(custom.len(), 1, "{custom:?}");
    let key = &custom[0];
    assert_eq!((key.sobject, key.name.as_str()), ("Contact", "Syncbridge_Key__c"));
    assert!(key.unique && key.external_id && key.case_sensitive && key.length == Some(255), "{key:?}");
    let grants = key_field_grants(&state);
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0]["ParentId"], json!(make_id("0PS", 1)), "the profile's permission set");
    assert_eq!((&grants[0]["PermissionsRead"], &grants[0]["PermissionsEdit"]), (&json!(true), &json!(true)));
    let routes = state.stats().routes;
    let count = |r: Route| routes.get(r.as_str()).copied().unwrap_or(0);
    // userinfo for the instance and for the user id; describe before and after; the permission
    // set query, the lookup by key and the re-read; one FieldPermissions row; one create.
    assert_eq!(
        [
            Route::UserInfo,
            Route::Describe,
            Route::Tooling,
            Route::Query,
            Route::SObjectRow,
            Route::CollectionCreate
        ]
        .map(count),
        [2, 2, 1, 3, 1, 1],
        "{routes:?}"
    );
    assert_eq!(client.stats().requests, 10);
    let visible = reqwest::Client::new()
        .get(format!("{}/services/data/v60.0/query", fake.base_url()))
        .query(&[("q", "SELECT Id FROM Contact WHERE Syncbridge_Key__c = 'contact-run-1'")])
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("query");
    assert_eq!(visible.status(), 200, "the API user sees the field");

    let before = client.stats().requests;
    state.reset_stats();
    let more = client.write(&token(), &[contact_create("contact-run-2", "Byron")]).await.expect("write");
    assert!(more[0].is_ok(), "{:?}", more[0]);
    assert_eq!(client.stats().requests - before, 3, "lookup, create, re-read: {:?}", state.stats());
    assert_eq!(state.route_count(Route::Describe), 0, "the answer is cached for the client");
    assert_eq!(state.count("Contact"), 5);
}

#[tokio::test]
async fn salesforce_a_redelivered_create_finds_its_record_by_key_and_creates_nothing() {
    let fake = start(contacts(3)).await;
    let state = fake.state();
    let create = contact_create("contact-run-7", "Hopper");
    let first = client(&fake, tuning()).write(&token(), std::slice::from_ref(&create)).await.expect("first");
    let id = first[0].as_ref().expect("created").external_id.clone();
    state.reset_stats();

    let redelivered = client(&fake, tuning());
    let again = redelivered.write(&token(), &[create]).await.expect("redelivered");
    assert_eq!(again[0].as_ref().expect("acked").external_id, id);
    assert_eq!(state.count("Contact"), 4);
    assert_eq!(state.count_with_key("Contact", "contact-run-7"), 1);
    let stats = state.stats();
    assert_eq!(stats.total, 3, "instance, describe, lookup by key: {stats:?}");
    assert_eq!(state.route_count(Route::Describe), 1);
    assert_eq!(state.route_count(Route::Tooling) + state.route_count(Route::CollectionCreate), 0);
    assert_eq!(key_field_grants(&state).len(), 1, "the field is granted once");
}

#[tokio::test]
async fn salesforce_a_create_whose_answer_was_lost_is_acked_by_a_fresh_client_without_a_second_record() {
    let fake = start(contacts(3)).await;
    let state = fake.state();
    let lost = contact_create("contact-run-9", "Turing");
    // The first attempt's queries: the permission set, the lookup (both pass), then the re-read
    // after the create fails: Salesforce created the record but the caller sees an error.
    state.inject_fault(Fault { route: Route::Query, kind: FaultKind::Delay { ms: 0 }, count: 2 });
    // (More 500s than the read is retried in place.)
    state.inject_fault(Fault {
        route: Route::Query,
        kind: FaultKind::ServerError { status: None },
        count: 10,
    });
    let err = client(&fake, tuning()).write(&token(), std::slice::from_ref(&lost)).await.expect_err("lost");
    assert!(err.is_retryable(), "{err:?}");
    state.clear_faults();
    let created = state.record_by_key("Contact", "contact-run-9").expect("created despite the error");

    let retry = client(&fake, tuning());
    let results =
        retry.write(&token(), &[lost, contact_create("contact-run-10", "Church")]).await.expect("retry");
    assert_eq!(results[0].as_ref().expect("acked").external_id.as_str(), created["Id"].as_str().expect("id"));
    assert!(results[1].is_ok(), "{:?}", results[1]);
    assert_eq!(state.count_with_key("Contact", "contact-run-9"), 1);
    assert_eq!(state.count("Contact"), 5);
    assert_eq!(state.route_count(Route::CollectionCreate), 2, "the retry created only the new contact");
    assert_eq!(state.route_count(Route::Tooling), 1);
}

#[tokio::test]
async fn salesforce_without_customize_application_contact_creates_fail_permanently_and_notes_keep_the_title_tag()
 {
    let fake = start(contacts(3)).await;
    let state = fake.state();
    state.set_customize_application(false);
    let writes = [contact_create("contact-run-11", "Noether"), note_create("note-run-11", "Call summary")];
    let client = client(&fake, tuning());
    let results = client.write(&token(), &writes).await.expect("write");
    match &results[0] {
        Err(ProviderError::Permanent(m)) => {
            assert!(m.mentions("INSUFFICIENT_ACCESS"), "{m}");
            assert!(m.mentions("Customize Application") && m.mentions("Syncbridge_Key__c"), "{m}");
            assert!(m.mentions("read and edit access"), "{m}");
        }
        other => panic!("expected a permanent refusal, got {other:?}"),
    }
    let note = results[1].as_ref().expect("the note is created").external_id.clone();
    let title = state.record(note.as_str()).expect("note")["Title"].as_str().expect("title").to_owned();
    assert!(title.ends_with(']') && title.contains(" [sb:"), "{title}");
    assert!(state.custom_fields().is_empty());
    assert_eq!(state.count("Contact"), 3);
    assert_eq!(state.route_count(Route::Tooling), 1);

    // The same job asks again: the refusal is cached. A redelivered job asks Salesforce again.
    let again = client.write(&token(), &writes).await.expect("again");
    assert!(matches!(&again[0], Err(ProviderError::Permanent(_))), "{:?}", again[0]);
    assert_eq!(again[1].as_ref().expect("note acked").external_id, note);
    assert_eq!(state.route_count(Route::Tooling), 1);
    let redelivered = self::client(&fake, tuning());
    let third = redelivered.write(&token(), &writes).await.expect("redelivered");
    assert!(matches!(&third[0], Err(ProviderError::Permanent(_))), "{:?}", third[0]);
    assert_eq!(third[1].as_ref().expect("note acked").external_id, note);
    assert_eq!(state.route_count(Route::Tooling), 2);
    assert_eq!((state.count("Contact"), state.count("Note")), (3, 1), "nothing created twice");
    assert_eq!(state.route_count(Route::CollectionCreate), 1);
}

#[tokio::test]
async fn salesforce_server_errors_and_limits_while_provisioning_the_key_field_stay_retryable() {
    let fake = start(contacts(3)).await;
    let state = fake.state();
    let client = client(&fake, tuning());
    let create = contact_create("contact-run-12", "Hamilton");
    state.inject_fault(Fault {
        route: Route::Tooling,
        kind: FaultKind::ServerError { status: Some(503) },
        count: 1,
    });
    let err = client.write(&token(), std::slice::from_ref(&create)).await.expect_err("503");
    assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
    state.inject_fault(Fault { route: Route::SObjectRow, kind: FaultKind::RequestLimit, count: 1 });
    let err = client.write(&token(), std::slice::from_ref(&create)).await.expect_err("limit");
    assert!(matches!(err, ProviderError::RateLimited { .. }), "{err:?}");
    assert_eq!(state.count("Contact"), 3, "nothing created without a usable key");
    let results = client.write(&token(), &[create]).await.expect("third attempt");
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert_eq!(state.count_with_key("Contact", "contact-run-12"), 1);
    assert_eq!(state.route_count(Route::Tooling), 3, "503, created, then DUPLICATE_DEVELOPER_NAME");
    assert_eq!(key_field_grants(&state).len(), 1);
}
