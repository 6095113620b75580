//! The Notion adapter against the Notion fake over HTTP: full pulls, incremental pulls by
//! `last_edited_time` with minute-precision stamps (an edit later in a minute already read is not
//! lost, a quiet connection reads nothing again), trashed pages as deletes, writes with
//! preconditions, idempotent creates and activities, pacing, 429s and Notion's errors, and a sync
//! through the worker.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Utc;
use secrecy::SecretString;
use serde_json::{Value, json};
use syncbridge::adapters::memory::MemoryStore;
use syncbridge::adapters::notion::{KEY_PROPERTY, NotionFactory, Pacing};
use syncbridge::domain::connection::NotionDatabases;
use syncbridge::domain::{
    CanonicalRecord, Connection, ConnectionSettings, Credentials, ExternalId, IdempotencyKey, NewConnection,
    ObjectType, Provider, RemoteRecord, SyncCursor, TenantId,
};
use syncbridge::ports::{Precondition, ProviderClient, ProviderError, ProviderFactory, ProviderWrite};
use syncbridge::sync::Deps;
use syncbridge::sync::worker::JobOutcome;

use super::provider_support::sync_once;
use syncbridge_fakes::notion::{Crm, FakeConfig, Fault, FaultKind, NotionFake, Route, RunningFake};

const TOKEN: &str = "ntn_fake_notion";

async fn start(deals: usize, contacts: usize) -> (RunningFake, Crm) {
    let fake = NotionFake::start(FakeConfig { crm: true, deals, contacts, ..FakeConfig::default() })
        .await
        .expect("fake starts");
    let crm = fake.state().crm().expect("a seeded CRM");
    // The seed is older than the first sync, as a real CRM's records are.
    fake.state().advance_clock(chrono::Duration::minutes(10));
    (fake, crm)
}

fn connection(fake: &RunningFake, crm: &Crm, token: &str) -> Connection {
    let settings = ConnectionSettings {
        notion: Some(NotionDatabases {
            deals_database_id: crm.deals_database.replace('-', ""),
            contacts_database_id: Some(crm.contacts_database.clone()),
        }),
        ..ConnectionSettings::default()
    };
    Connection::new(
        TenantId::parse("t1").expect("tenant"),
        NewConnection {
            provider: Provider::Notion,
            base_url: fake.base_url(),
            credentials: Credentials {
                access_token: SecretString::from(token),
                refresh_token: None,
                expires_at: None,
            },
            interval_minutes: 15,
            settings,
        },
        Utc::now(),
    )
}

fn factory() -> NotionFactory {
    NotionFactory::new(reqwest::Client::new()).with_pacing(Pacing {
        per_second: 50.0,
        burst: 50.0,
        ..Pacing::default()
    })
}

fn client(fake: &RunningFake, crm: &Crm) -> Box<dyn ProviderClient> {
    factory().client(&connection(fake, crm, TOKEN)).expect("client")
}

fn token() -> SecretString {
    SecretString::from(TOKEN)
}

async fn pull_all(
    client: &dyn ProviderClient,
    object: ObjectType,
    mut cursor: Option<SyncCursor>,
) -> (Vec<RemoteRecord>, SyncCursor, usize) {
    let mut records = Vec::new();
    for pages in 1..=50 {
        let page = client.pull_page(&token(), object, cursor.as_ref()).await.expect("page pulls");
        records.extend(page.records);
        cursor = Some(page.cursor);
        if !page.has_more {
            return (records, cursor.expect("a cursor"), pages);
        }
    }
    panic!("the pull did not finish within 50 pages");
}

fn ids(records: &[RemoteRecord]) -> BTreeSet<String> {
    records.iter().map(|r| r.external_id.as_str().to_owned()).collect()
}

#[tokio::test]
async fn notion_full_pull_pages_every_deal_with_its_properties_mapped_by_type() {
    let (fake, crm) = start(250, 5).await;
    let client = client(&fake, &crm);
    let (deals, _, pages) = pull_all(client.as_ref(), ObjectType::Deals, None).await;
    assert_eq!(pages, 3, "100 a page");
    assert_eq!(ids(&deals), fake.state().page_ids(&crm.deals_data_source).into_iter().collect());
    assert_eq!(deals.len(), 250, "no deal twice");
    let d = deals.iter().find(|r| r.fields["name"] == json!("Deal 7")).expect("deal 7");
    assert_eq!(d.fields["amount"], json!(7000));
    assert_eq!(d.fields["stage"], json!("Qualified"));
    assert_eq!(d.fields["source"], json!("Referral"));
    assert_eq!(d.fields["close_date"], json!("2027-03-31"));
    assert_eq!(d.fields["probability"], json!(0.7));
    assert_eq!(d.fields["contact_ids"].as_array().map(Vec::len), Some(1), "the contact relation");
    assert!(!d.deleted && d.remote_modified_at.is_some());
    let (contacts, _, _) = pull_all(client.as_ref(), ObjectType::Contacts, None).await;
    assert_eq!(contacts.len(), 5);
    assert!(contacts.iter().all(|c| c.fields["email"].as_str().is_some_and(|e| e.ends_with("@example.com"))));
}

#[tokio::test]
async fn incremental_pulls_return_edits_and_trashed_pages_and_an_edit_later_in_the_same_minute_is_not_lost() {
    let (fake, crm) = start(30, 0).await;
    let state = fake.state();
    let client = client(&fake, &crm);
    let (_, cursor, _) = pull_all(client.as_ref(), ObjectType::Deals, None).await;
    state.reset_stats();
    let (quiet, cursor, _) = pull_all(client.as_ref(), ObjectType::Deals, Some(cursor)).await;
    assert!(quiet.is_empty(), "nothing changed: {:?}", ids(&quiet));
    assert_eq!(state.stats().routes.get("query"), Some(&2), "one query of live pages, one of the trash");

    let all = state.page_ids(&crm.deals_data_source);
    state.edit_page(&all[0], json!({ "Value": { "number": 1 } })).unwrap();
    state.trash_page(&all[1], true).unwrap();
    let (changed, cursor, _) = pull_all(client.as_ref(), ObjectType::Deals, Some(cursor)).await;
    assert_eq!(ids(&changed), [all[0].clone(), all[1].clone()].into());
    assert!(
        changed.iter().any(|r| r.external_id.as_str() == all[1] && r.deleted),
        "a trashed page is a delete"
    );
    assert!(changed.iter().any(|r| r.external_id.as_str() == all[0] && r.fields["amount"] == json!(1)));

    // Same minute, so the same rounded stamp: the next pull still reads it.
    state.edit_page(&all[0], json!({ "Value": { "number": 2 } })).unwrap();
    let (again, cursor, _) = pull_all(client.as_ref(), ObjectType::Deals, Some(cursor)).await;
    let latest =
        again.iter().find(|r| r.external_id.as_str() == all[0]).expect("the edit in the same minute");
    assert_eq!(latest.fields["amount"], json!(2));

    // Once that minute has closed and been read again, a quiet connection reads nothing more.
    state.advance_clock(chrono::Duration::minutes(2));
    let (_, cursor, _) = pull_all(client.as_ref(), ObjectType::Deals, Some(cursor)).await;
    state.advance_clock(chrono::Duration::minutes(2));
    let (settled, _, pages) = pull_all(client.as_ref(), ObjectType::Deals, Some(cursor)).await;
    assert!(settled.is_empty(), "{:?}", ids(&settled));
    assert_eq!(pages, 2);
}

#[tokio::test]
async fn a_page_edited_in_the_closed_minute_before_the_last_pull_started_is_not_delivered_twice() {
    let (fake, crm) = start(3, 0).await;
    let state = fake.state();
    let client = client(&fake, &crm);
    let all = state.page_ids(&crm.deals_data_source);
    let (_, cursor, _) = pull_all(client.as_ref(), ObjectType::Deals, None).await;
    state.advance_clock(chrono::Duration::minutes(1));
    state.edit_page(&all[2], json!({ "Value": { "number": 5 } })).unwrap();
    state.advance_clock(chrono::Duration::minutes(1));
    let (first, cursor, _) = pull_all(client.as_ref(), ObjectType::Deals, Some(cursor)).await;
    assert_eq!(ids(&first), [all[2].clone()].into(), "edited in the minute before this pull started");
    let (second, _, _) = pull_all(client.as_ref(), ObjectType::Deals, Some(cursor)).await;
    assert!(second.is_empty(), "re-read by the lookback but known: {:?}", ids(&second));
}

#[tokio::test]
async fn a_delete_trashes_the_page_only_if_no_one_edited_it_since_and_a_repeat_finds_it_gone() {
    let (fake, crm) = start(2, 0).await;
    let state = fake.state();
    let client = client(&fake, &crm);
    let (deals, cursor, _) = pull_all(client.as_ref(), ObjectType::Deals, None).await;
    let delete = |r: &RemoteRecord| ProviderWrite::Delete {
        object: ObjectType::Deals,
        external_id: r.external_id.clone(),
        precondition: Precondition { etag: None, unmodified_since: r.remote_modified_at },
    };
    // A person edits the second deal after the delete was approved: it stays.
    state.advance_clock(chrono::Duration::minutes(3));
    state.edit_page(deals[1].external_id.as_str(), json!({ "Value": { "number": 5 } })).unwrap();
    let results = client.write(&token(), &[delete(&deals[0]), delete(&deals[1])]).await.unwrap();
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(matches!(results[1], Err(ProviderError::Conflict)), "{:?}", results[1]);
    assert_eq!(state.page(deals[0].external_id.as_str()).unwrap()["in_trash"], true);
    assert_eq!(state.page(deals[1].external_id.as_str()).unwrap()["in_trash"], false);
    // The same delete again (a retry after a lost answer): the page is gone already.
    let again = client.write(&token(), &[delete(&deals[0])]).await.unwrap();
    assert!(matches!(again[0], Err(ProviderError::NotFound)), "{:?}", again[0]);
    // And the next pull sees the trashed page as a delete.
    let (changed, _, _) = pull_all(client.as_ref(), ObjectType::Deals, Some(cursor)).await;
    assert!(changed.iter().any(|r| r.external_id == deals[0].external_id && r.deleted), "{changed:?}");
}

#[tokio::test]
async fn updates_send_one_patch_per_page_and_refuse_a_page_a_person_edited_since() {
    let (fake, crm) = start(2, 0).await;
    let state = fake.state();
    let client = client(&fake, &crm);
    let (deals, _, _) = pull_all(client.as_ref(), ObjectType::Deals, None).await;
    let target = deals.iter().find(|r| r.fields["name"] == json!("Deal 1")).unwrap();
    let since = target.remote_modified_at;
    let update = |fields: Value| ProviderWrite::Update {
        object: ObjectType::Deals,
        external_id: target.external_id.clone(),
        fields: serde_json::from_value(fields).unwrap(),
        precondition: Precondition { etag: None, unmodified_since: since },
    };
    state.reset_stats();
    let results = client
        .write(
            &token(),
            &[update(json!({ "stage": "Won" })), update(json!({ "amount": 99, "close_date": "2027-06-30" }))],
        )
        .await
        .unwrap();
    assert_eq!(state.stats().routes.get("update_page"), Some(&1), "two writes of one page, one PATCH");
    let ack = results[1].as_ref().expect("written");
    assert_eq!(ack.fields.as_ref().unwrap()["amount"], json!(99));
    let page = state.page(target.external_id.as_str()).unwrap();
    assert_eq!(page["properties"]["Stage"]["status"]["name"], "Won");
    assert_eq!(page["properties"]["Close date"]["date"]["start"], "2027-06-30");

    state.advance_clock(chrono::Duration::minutes(3));
    state.edit_page(target.external_id.as_str(), json!({ "Value": { "number": 5 } })).unwrap();
    let stale = ProviderWrite::Update {
        object: ObjectType::Deals,
        external_id: target.external_id.clone(),
        fields: [("amount".to_owned(), json!(7))].into(),
        precondition: Precondition { etag: None, unmodified_since: ack.remote_modified_at },
    };
    let results = client.write(&token(), &[stale]).await.unwrap();
    assert!(matches!(results[0], Err(ProviderError::Conflict)), "{:?}", results[0]);
    assert_eq!(state.page(target.external_id.as_str()).unwrap()["properties"]["Value"]["number"], 5);
    let bad = ProviderWrite::Update {
        object: ObjectType::Deals,
        external_id: target.external_id.clone(),
        fields: [("stage".to_owned(), json!("No such stage"))].into(),
        precondition: Precondition::default(),
    };
    let results = client.write(&token(), &[bad]).await.unwrap();
    let err = results[0].as_ref().expect_err("refused");
    assert_eq!(err.provider_code(), Some("validation_error"), "{err:?}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn creates_are_idempotent_through_the_key_property_the_adapter_adds_once() {
    let (fake, crm) = start(0, 0).await;
    let state = fake.state();
    let client = client(&fake, &crm);
    let create = ProviderWrite::Create {
        object: ObjectType::Deals,
        fields: [
            ("name".to_owned(), json!("New deal")),
            ("amount".to_owned(), json!(10)),
            ("stage".to_owned(), json!("Lead")),
        ]
        .into(),
        idempotency_key: IdempotencyKey::parse("push-42").unwrap(),
    };
    let first =
        client.write(&token(), std::slice::from_ref(&create)).await.unwrap().remove(0).expect("created");
    let again = client.write(&token(), &[create]).await.unwrap().remove(0).expect("found again");
    assert_eq!(first.external_id, again.external_id);
    assert_eq!(state.page_ids(&crm.deals_data_source).len(), 1, "one page, not two");
    assert_eq!(state.stats().routes.get("update_data_source"), Some(&1), "the key property is added once");
    let page = state.page(first.external_id.as_str()).unwrap();
    assert_eq!(page["properties"][KEY_PROPERTY]["rich_text"][0]["plain_text"], "push-42");
    assert_eq!(
        client.provider_setup().get("notion.deals.create_proof").map(String::as_str),
        Some("key_property"),
        "remembered for later jobs"
    );
}

#[tokio::test]
async fn activities_are_appended_as_blocks_once_whatever_the_retries() {
    let (fake, crm) = start(1, 0).await;
    let state = fake.state();
    let client = client(&fake, &crm);
    let deal = state.page_ids(&crm.deals_data_source)[0].clone();
    let note = |key: &str, body: &str| ProviderWrite::Create {
        object: ObjectType::Notes,
        fields: [("body".to_owned(), json!(body)), ("deal_ids".to_owned(), json!([deal]))].into(),
        idempotency_key: IdempotencyKey::parse(key).unwrap(),
    };
    state.reset_stats();
    let results = client
        .write(&token(), &[note("n1", "[ARIA] Call went well"), note("n2", &"long ".repeat(600))])
        .await
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(state.stats().routes.get("append_blocks"), Some(&1), "two notes for one page, one append");
    let retried = client.write(&token(), &[note("n1", "[ARIA] Call went well")]).await.unwrap();
    assert_eq!(retried[0].as_ref().unwrap().external_id, results[0].as_ref().unwrap().external_id);
    let blocks = state.blocks(&deal);
    assert_eq!(blocks.len(), 3, "one paragraph, then two for the 3000-character note");
    assert!(
        blocks[0]["paragraph"]["rich_text"][0]["plain_text"]
            .as_str()
            .unwrap()
            .starts_with("[ARIA] Call went well [sb:")
    );
}

#[tokio::test]
async fn a_429_is_waited_out_and_the_pacer_keeps_a_sync_under_notions_limit() {
    // 1,200 deals: 13 requests, more than the fake's burst of 10.
    let (fake, crm) = start(1200, 0).await;
    let state = fake.state();
    state.set_rate_limits(true);
    let paced = NotionFactory::new(reqwest::Client::new()).client(&connection(&fake, &crm, TOKEN)).unwrap();
    let (deals, _, _) = pull_all(paced.as_ref(), ObjectType::Deals, None).await;
    assert_eq!(deals.len(), 1200);
    assert_eq!(state.stats().rate_limited, 0, "paced at three a second: never limited");

    state.reset_stats();
    let unpaced = factory().client(&connection(&fake, &crm, TOKEN)).unwrap();
    let (deals, _, _) = pull_all(unpaced.as_ref(), ObjectType::Deals, None).await;
    assert_eq!(deals.len(), 1200, "every 429 waited out (Retry-After) and retried in place");
    assert!(unpaced.stats().rate_limited > 0, "fifty a second is limited");
    assert_eq!(unpaced.stats().rate_limited, state.stats().rate_limited);

    state.set_rate_limits(false);
    state.inject_fault(Fault {
        route: Route::Query,
        kind: FaultKind::RateLimit { retry_after_secs: Some(1) },
        count: 1,
    });
    let once = factory().client(&connection(&fake, &crm, TOKEN)).unwrap();
    let page = once.pull_page(&token(), ObjectType::Deals, None).await.expect("waited out in place");
    assert_eq!(page.records.len(), 100);
    assert_eq!(once.stats().rate_limited, 1);
}

#[tokio::test]
async fn notions_errors_keep_their_class() {
    let (fake, crm) = start(1, 0).await;
    let wrong = factory().client(&connection(&fake, &crm, "ntn_wrong")).unwrap();
    let err = wrong.pull_page(&SecretString::from("ntn_wrong"), ObjectType::Deals, None).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unauthorized), "{err:?}");

    let client = client(&fake, &crm);
    fake.state().inject_fault(Fault {
        route: Route::Query,
        kind: FaultKind::ServerError { status: Some(503) },
        count: 1,
    });
    let page = client.pull_page(&token(), ObjectType::Deals, None).await.expect("a 503 is retried in place");
    assert_eq!(page.records.len(), 1);

    let mut conn = connection(&fake, &crm, TOKEN);
    conn.settings.notion =
        Some(NotionDatabases { deals_database_id: "0".repeat(32), contacts_database_id: None });
    let missing = factory().client(&conn).unwrap();
    let err = missing.pull_page(&token(), ObjectType::Deals, None).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound), "{err:?}");
    let err =
        client.pull_page(&token(), ObjectType::Deals, Some(&SyncCursor::new("garbage"))).await.unwrap_err();
    assert!(matches!(err, ProviderError::CursorExpired));
    assert!(matches!(
        client
            .write(
                &token(),
                &[ProviderWrite::Delete {
                    object: ObjectType::Deals,
                    external_id: ExternalId::parse("00000000-0000-4000-8000-000000000000").unwrap(),
                    precondition: Precondition::default(),
                }]
            )
            .await
            .unwrap()[0],
        Err(ProviderError::NotFound)
    ));
}

fn engine() -> (Deps, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let deps =
        syncbridge::adapters::memory::TestDeps::new(store.clone()).providers(Arc::new(factory())).build();
    (deps, store)
}

#[tokio::test]
async fn the_worker_syncs_a_notion_crm_and_a_trashed_deal_becomes_a_deleted_record() {
    let (fake, crm) = start(12, 4).await;
    let (deps, store) = engine();
    let conn = connection(&fake, &crm, TOKEN);
    store.put_connection(conn.clone());
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    let records = store.records_of(&conn.tenant_id, &conn.connection_id);
    assert_eq!(records.iter().filter(|r| r.object == ObjectType::Deals).count(), 12);
    assert_eq!(records.iter().filter(|r| r.object == ObjectType::Contacts).count(), 4);
    let gone = fake.state().page_ids(&crm.deals_data_source)[0].clone();
    fake.state().trash_page(&gone, true).unwrap();
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    let records = store.records_of(&conn.tenant_id, &conn.connection_id);
    let deleted = records.iter().find(|r| r.external_id.as_str() == gone).expect("kept");
    assert!(deleted.deleted);
    let mut deals_only = connection(&fake, &crm, TOKEN);
    if let Some(n) = deals_only.settings.notion.as_mut() {
        n.contacts_database_id = None;
    }
    store.put_connection(deals_only.clone());
    assert!(
        matches!(sync_once(&deps, &deals_only).await, JobOutcome::Completed { .. }),
        "without a contacts database the sync is complete, not partial"
    );
    let stored =
        deps.connections.get(&conn.tenant_id, &conn.connection_id).await.unwrap().expect("connection");
    assert_eq!(
        stored.provider_setup.get("notion.deals.data_source").map(String::as_str),
        Some(crm.deals_data_source.as_str()),
        "the data source is resolved once and kept"
    );
}

/// `n` deals created 100 a minute, as an import through the API spreads them; their ids.
fn import_deals(fake: &RunningFake, crm: &Crm, n: usize) -> Vec<String> {
    let state = fake.state();
    (0..n)
        .map(|i| {
            if i % 100 == 0 {
                state.advance_clock(chrono::Duration::minutes(1));
            }
            let page = state
                .create_page(
                    &crm.deals_data_source,
                    json!({ "Name": { "title": [{ "text": { "content": format!("Deal {i}") } }] } }),
                )
                .expect("created");
            page["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

/// One worker sync of the deals database alone, five minutes on: the live deals and the queries.
async fn sync_deals(fake: &RunningFake, crm: &Crm) -> (Vec<CanonicalRecord>, u64) {
    fake.state().advance_clock(chrono::Duration::minutes(5));
    fake.state().reset_stats();
    let (deps, store) = engine();
    let mut conn = connection(fake, crm, TOKEN);
    if let Some(n) = conn.settings.notion.as_mut() {
        n.contacts_database_id = None;
    }
    store.put_connection(conn.clone());
    let outcome = sync_once(&deps, &conn).await;
    assert!(matches!(outcome, JobOutcome::Completed { .. }), "{outcome:?}");
    let deals = store
        .records_of(&conn.tenant_id, &conn.connection_id)
        .into_iter()
        .filter(|r| r.object == ObjectType::Deals && !r.deleted)
        .collect();
    (deals, fake.state().stats().routes.get("query").copied().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_25000_page_database_syncs_whole_past_notions_10000_result_query_cap() {
    let (fake, crm) = start(0, 0).await;
    import_deals(&fake, &crm, 25_000);
    let (deals, queries) = sync_deals(&fake, &crm).await;
    assert_eq!(deals.len(), 25_000);
    assert!(
        (251..=260).contains(&queries),
        "250 pages, and one more per capped query's last minute: {queries}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_edit_of_12000_pages_in_one_minute_syncs_whole_listed_by_creation_time() {
    let (fake, crm) = start(0, 0).await;
    // Imported over 120 minutes, then all edited in one minute (a bulk edit of a property in
    // Notion's table view).
    let ids = import_deals(&fake, &crm, 12_000);
    fake.state().advance_clock(chrono::Duration::minutes(10));
    for id in &ids {
        fake.state().edit_page(id, json!({ "Value": { "number": 5 } })).expect("edited");
    }
    let (deals, queries) = sync_deals(&fake, &crm).await;
    assert_eq!(deals.len(), 12_000);
    assert!(
        deals.iter().all(|d| d.fields.get("amount").and_then(serde_json::Value::as_f64) == Some(5.0)),
        "every deal carries the bulk edit"
    );
    assert!(
        (221..=225).contains(&queries),
        "100 pages to the cap, 100 again by creation time, 21 past that, one after the minute: {queries}"
    );
}

#[tokio::test]
async fn more_than_10000_pages_created_and_edited_in_one_minute_fail_the_pull_instead_of_skipping_pages() {
    let (fake, crm) = start(10_050, 0).await;
    let client = client(&fake, &crm);
    let mut cursor = None;
    let err = loop {
        match client.pull_page(&token(), ObjectType::Deals, cursor.as_ref()).await {
            Ok(page) if page.has_more => cursor = Some(page.cursor),
            Ok(_) => panic!("the listing ended without the 50 pages past the cap"),
            Err(e) => break e,
        }
    };
    assert!(matches!(&err, ProviderError::Permanent(_)), "{err:?}");
    assert!(err.to_string().contains("10,000"), "{err}");
}
