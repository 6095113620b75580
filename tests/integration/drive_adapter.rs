//! The Google Drive adapter against the Drive fake over HTTP: a full pull (start token first),
//! incremental pulls from the change feed, deletes from removed and trashed files, Drive's page
//! limit, rate limits and other errors, token refresh, push channels, and the engine's links
//! from files to deals and contacts.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use serde_json::json;
use syncbridge::adapters::drive::{DriveClient, DriveFactory};
use syncbridge::adapters::google::Backoff;
use syncbridge::adapters::memory::MemoryStore;
use syncbridge::config::OAuthApp;
use syncbridge::domain::{
    CanonicalRecord, Connection, ConnectionSettings, Credentials, NewConnection, ObjectType, Provider,
    RemoteRecord, SyncCursor, TenantId,
};
use syncbridge::ports::{ProviderClient, ProviderError, ProviderFactory};
use syncbridge::sync::Deps;
use syncbridge::sync::worker::JobOutcome;

use super::provider_support::sync_once;
use syncbridge_fakes::drive::{
    DriveFake, FakeConfig, Fault, FaultKind, NewFile, RateLimit, Route, RunningFake,
};

const TOKEN: &str = "ya29.fake-drive";

async fn start(files: usize) -> RunningFake {
    DriveFake::start(FakeConfig { files, ..FakeConfig::default() }).await.expect("fake starts")
}

fn connection(fake: &RunningFake, token: &str, refresh: Option<&str>) -> Connection {
    crate::provider_support::connection_to(Provider::GoogleDrive, fake.api_url(), token, refresh)
}

fn factory(fake: &RunningFake) -> DriveFactory {
    let config = fake.state().config().clone();
    let app =
        OAuthApp { client_id: config.client_id, client_secret: SecretString::from(config.client_secret) };
    let backoff =
        Backoff { base: Duration::from_millis(20), max_wait: Duration::from_secs(1), ..Backoff::default() };
    DriveFactory::new(reqwest::Client::new(), Some(app), fake.token_url()).with_backoff(backoff)
}

fn client(fake: &RunningFake) -> DriveClient {
    factory(fake).concrete(&connection(fake, TOKEN, None)).expect("client")
}

/// Pulls until `has_more` is false; returns the records, the final cursor and the page count.
async fn pull_all(
    client: &dyn ProviderClient,
    mut cursor: Option<SyncCursor>,
) -> (Vec<RemoteRecord>, SyncCursor, usize) {
    let token = SecretString::from(TOKEN);
    let mut records = Vec::new();
    for pages in 1..=200 {
        let page = client.pull_page(&token, ObjectType::Files, cursor.as_ref()).await.expect("page pulls");
        records.extend(page.records);
        cursor = Some(page.cursor.clone());
        if !page.has_more {
            return (records, page.cursor, pages);
        }
    }
    panic!("the pull did not finish within 200 pages");
}

fn ids(records: &[RemoteRecord]) -> BTreeSet<String> {
    records.iter().map(|r| r.external_id.as_str().to_owned()).collect()
}

fn live(fake: &RunningFake) -> BTreeSet<String> {
    fake.state().live_file_ids().into_iter().collect()
}

#[tokio::test]
async fn drive_full_pull_reads_every_file_with_its_sharing_in_pages_of_1000_then_the_feed_returns_only_changes()
 {
    let fake = start(2_500).await;
    let client = client(&fake);
    let (records, cursor, pages) = pull_all(&client, None).await;
    assert_eq!(pages, 3, "2,500 files at Drive's 1,000 a page");
    assert_eq!(ids(&records), live(&fake));
    assert_eq!(records.len(), 2_500, "no file twice");
    let shared = records.iter().find(|r| r.fields["shared_with"].as_array().is_some_and(|a| !a.is_empty()));
    let shared = shared.expect("some files are shared");
    assert!(shared.fields["permissions"].as_array().is_some_and(|p| p.len() >= 2), "{:?}", shared.fields);
    assert!(records.iter().any(|r| r.fields["is_folder"] == json!(true)));
    assert!(
        records.iter().all(|r| r.fields["web_view_link"].as_str().is_some_and(|l| l.starts_with("https://")))
    );
    let stats = fake.state().stats();
    assert_eq!(stats.routes.get("changes.getStartPageToken"), Some(&1));
    assert_eq!(stats.routes.get("files.list"), Some(&3));

    let state = fake.state();
    let all: Vec<String> = state.live_file_ids();
    state.rename(&all[10], "Renamed").expect("rename");
    state.share(&all[11], "raj@initech.example", "writer").expect("share");
    fake.state().reset_stats();
    let (changes, next, pages) = pull_all(&client, Some(cursor)).await;
    assert_eq!(pages, 1);
    assert_eq!(ids(&changes), BTreeSet::from([all[10].clone(), all[11].clone()]));
    assert_eq!(fake.state().stats().total, 1, "one changes.list request");
    let renamed = changes.iter().find(|r| r.external_id.as_str() == all[10]).expect("renamed");
    assert_eq!(renamed.fields["name"], "Renamed");
    let reshared = changes.iter().find(|r| r.external_id.as_str() == all[11]).expect("shared");
    assert!(
        reshared.fields["shared_with"].as_array().expect("array").contains(&json!("raj@initech.example"))
    );
    let (none, _, _) = pull_all(&client, Some(next)).await;
    assert!(none.is_empty(), "nothing changed since");
}

#[tokio::test]
async fn a_change_made_while_the_full_listing_pages_arrives_with_the_first_incremental_pull() {
    let fake = start(1_500).await;
    let client = client(&fake);
    let token = SecretString::from(TOKEN);
    let first = client.pull_page(&token, ObjectType::Files, None).await.expect("first page");
    assert!(first.has_more);
    let read: BTreeSet<String> = ids(&first.records);
    let state = fake.state();
    let already = read.iter().next().cloned().expect("a file");
    state.rename(&already, "Edited mid-listing").expect("rename");
    let (_, cursor, _) = pull_all(&client, Some(first.cursor)).await;
    let (changes, _, _) = pull_all(&client, Some(cursor)).await;
    let edited = changes.iter().find(|r| r.external_id.as_str() == already).expect("delivered by the feed");
    assert_eq!(edited.fields["name"], "Edited mid-listing");
}

#[tokio::test]
async fn trashed_and_removed_files_are_deletes_and_a_folder_removal_takes_its_files_along() {
    let fake = start(0).await;
    let state = fake.state();
    let folder = state
        .create_file(NewFile {
            name: "Globex".into(),
            mime_type: Some("application/vnd.google-apps.folder".into()),
            ..NewFile::default()
        })
        .expect("folder");
    let folder_id = folder["id"].as_str().expect("id").to_owned();
    let mut inside = Vec::new();
    for i in 0..3 {
        let f = state
            .create_file(NewFile {
                name: format!("Doc {i}"),
                parent: Some(folder_id.clone()),
                ..NewFile::default()
            })
            .expect("file");
        inside.push(f["id"].as_str().expect("id").to_owned());
    }
    let loose = state.create_file(NewFile { name: "Loose".into(), ..NewFile::default() }).expect("file");
    let loose = loose["id"].as_str().expect("id").to_owned();
    let client = client(&fake);
    let (records, cursor, _) = pull_all(&client, None).await;
    assert_eq!(records.len(), 5);
    state.trash(&loose, true).expect("trash");
    state.delete(&folder_id).expect("delete");
    let (changes, _, _) = pull_all(&client, Some(cursor)).await;
    assert_eq!(changes.len(), 5);
    assert!(changes.iter().all(|r| r.deleted), "{changes:?}");
    let mut expected: BTreeSet<String> = inside.into_iter().collect();
    expected.insert(folder_id);
    expected.insert(loose);
    assert_eq!(ids(&changes), expected);
}

#[tokio::test]
async fn user_rate_limit_answers_are_waited_out_in_place_and_counted() {
    let fake = start(5).await;
    fake.state().inject_fault(Fault {
        route: Route::FilesList,
        kind: FaultKind::RateLimit { status: None },
        count: 2,
    });
    let client = client(&fake);
    let (records, _, _) = pull_all(&client, None).await;
    assert_eq!(records.len(), 5);
    let stats = client.stats();
    assert_eq!(stats.rate_limited, 2);
    assert_eq!(stats.rate_limited, fake.state().stats().rate_limited);
    fake.state().set_rate_limit(Some(RateLimit { requests: 1, window_secs: 600, status: 429 }));
    let err = client
        .pull_page(&SecretString::from(TOKEN), ObjectType::Files, None)
        .await
        .err()
        .map(|e| e.class().as_str());
    assert_eq!(err, Some("rate_limited"), "a limit that outlasts the retries is RateLimited");
}

#[tokio::test]
async fn a_missing_scope_is_permanent_a_rejected_token_unauthorized_and_a_5xx_retried() {
    let fake = start(3).await;
    let state = fake.state();
    let calendar =
        state.issue_token(None, Some(vec!["https://www.googleapis.com/auth/calendar.readonly".into()]));
    let client = client(&fake);
    let err =
        client.pull_page(&SecretString::from(calendar.access_token), ObjectType::Files, None).await.err();
    match err {
        Some(ProviderError::Permanent(f)) => {
            assert_eq!((f.status, f.code.as_deref()), (Some(403), Some("insufficientPermissions")))
        }
        other => panic!("expected a permanent insufficientPermissions, got {other:?}"),
    }
    let err = client.pull_page(&SecretString::from("ya29.unknown"), ObjectType::Files, None).await.err();
    assert!(matches!(err, Some(ProviderError::Unauthorized)), "{err:?}");
    state.inject_fault(Fault {
        route: Route::ChangesList,
        kind: FaultKind::ServerError { status: Some(503) },
        count: 1,
    });
    let (_, cursor, _) = pull_all(&client, None).await;
    state.rename(&state.live_file_ids()[0], "x").expect("rename");
    let (changes, _, _) = pull_all(&client, Some(cursor)).await;
    assert_eq!(changes.len(), 1, "the 503 was retried in place");
    let bad = client
        .pull_page(&SecretString::from(TOKEN), ObjectType::Files, Some(&SyncCursor::new("not json")))
        .await
        .err();
    assert!(matches!(bad, Some(ProviderError::CursorExpired)), "an unreadable cursor starts over");
}

#[tokio::test]
async fn a_drive_token_is_refreshed_on_googles_app_and_a_revoked_grant_is_unauthorized() {
    let fake = start(1).await;
    let issued = fake.state().issue_token(None, None);
    let client = client(&fake);
    let creds = client.refresh(&SecretString::from(issued.refresh_token.clone())).await.expect("refresh");
    let (records, _, _) = {
        let page =
            client.pull_page(&creds.access_token, ObjectType::Files, None).await.expect("new token works");
        (page.records, (), ())
    };
    assert_eq!(records.len(), 1);
    assert!(fake.state().revoke(&issued.refresh_token));
    let err = client.refresh(&SecretString::from(issued.refresh_token)).await.err();
    assert!(matches!(err, Some(ProviderError::Unauthorized)), "{err:?}");
}

fn engine(fake: &RunningFake) -> (Deps, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let deps =
        syncbridge::adapters::memory::TestDeps::new(store.clone()).providers(Arc::new(factory(fake))).build();
    (deps, store)
}

fn files_of(store: &MemoryStore, conn: &Connection) -> Vec<CanonicalRecord> {
    let mut records = store.records_of(&conn.tenant_id, &conn.connection_id);
    records.retain(|r| r.object == ObjectType::Files);
    records
}

#[tokio::test]
async fn the_worker_stores_files_deletes_trashed_ones_and_links_files_to_deals_and_shared_contacts() {
    use syncbridge::ports::{RecordStore, RecordWrite};
    let fake = start(0).await;
    let state = fake.state();
    let share = |email: &str| vec![(email.to_owned(), "reader".to_owned())];
    let proposal = state
        .create_file(NewFile {
            name: "Globex Renewal - proposal".into(),
            shared_with: share("Jane.Doe@globex.example"),
            ..NewFile::default()
        })
        .expect("file");
    let other =
        state.create_file(NewFile { name: "Team offsite".into(), ..NewFile::default() }).expect("file");
    let (deps, store) = engine(&fake);
    // A CRM connection of the same tenant with a deal and a contact.
    let crm = Connection::new(
        TenantId::parse("t1").expect("tenant"),
        NewConnection {
            provider: Provider::Hubspot,
            base_url: "http://127.0.0.1:1".into(),
            credentials: Credentials {
                access_token: SecretString::from("x"),
                refresh_token: None,
                expires_at: None,
            },
            interval_minutes: 15,
            settings: ConnectionSettings::default(),
        },
        Utc::now(),
    );
    store.put_connection(crm.clone());
    let crm_record = |object: ObjectType, ext: &str, fields: serde_json::Value| {
        let external = syncbridge::domain::ExternalId::parse(ext).expect("id");
        CanonicalRecord {
            tenant_id: crm.tenant_id.clone(),
            connection_id: crm.connection_id.clone(),
            record_id: syncbridge::domain::RecordId::derive(
                &crm.tenant_id,
                &crm.connection_id,
                object,
                &external,
            ),
            object,
            external_id: external,
            fields: serde_json::from_value(fields.clone()).expect("fields"),
            base: serde_json::from_value(fields).expect("fields"),
            remote_modified_at: None,
            etag: None,
            local_modified_at: None,
            sources: Default::default(),
            pending_push: Default::default(),
            deleted: false,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 1,
        }
    };
    let deal = crm_record(ObjectType::Deals, "d1", json!({ "name": "Globex Renewal" }));
    let contact = crm_record(ObjectType::Contacts, "c1", json!({ "email": "jane.doe@globex.example" }));
    let written = store
        .write(
            Provider::Hubspot,
            vec![RecordWrite::Create(deal.clone()), RecordWrite::Create(contact.clone())],
        )
        .await
        .expect("write");
    assert!(written.iter().all(Result::is_ok));

    let conn = connection(&fake, TOKEN, None);
    store.put_connection(conn.clone());
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    let files = files_of(&store, &conn);
    assert_eq!(files.len(), 2);
    let stored = |id: &str| {
        files_of(&store, &conn).into_iter().find(|r| r.external_id.as_str() == id).expect("stored")
    };
    let p = stored(proposal["id"].as_str().expect("id"));
    assert_eq!(p.fields["linked_deals"], json!([deal.record_id.as_str()]));
    assert_eq!(p.fields["linked_contacts"], json!([contact.record_id.as_str()]));
    let o = stored(other["id"].as_str().expect("id"));
    assert_eq!(
        (o.fields["linked_deals"].clone(), o.fields["linked_contacts"].clone()),
        (json!([]), json!([]))
    );

    state.trash(other["id"].as_str().expect("id"), true).expect("trash");
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    assert!(stored(other["id"].as_str().expect("id")).deleted, "a trashed file is deleted");
    assert!(!stored(proposal["id"].as_str().expect("id")).deleted);
}

#[tokio::test]
async fn a_synced_drive_connection_keeps_one_change_feed_channel_renewed_only_near_its_expiry() {
    use secrecy::ExposeSecret;
    use syncbridge::adapters::memory::ManualClock;
    use syncbridge::ports::ConnectionStore;

    let fake = start(2).await;
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
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].address, "http://127.0.0.1:9/prod/webhooks/google_drive");
    let kept = stored(store.clone(), conn.clone()).await.push_channel.expect("channel kept");
    assert_eq!(active[0].token.as_deref(), Some(kept.secret.expose_secret()));
    assert!(kept.expires_at > Utc::now() + chrono::Duration::days(6), "a week was asked for");
    assert_eq!(
        store.find_channel(&kept.id).await.expect("find"),
        Some((conn.tenant_id.clone(), conn.connection_id.clone(), Provider::GoogleDrive))
    );
    clock.advance(chrono::Duration::hours(3));
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    assert_eq!(fake.state().channels().len(), 1, "not due: no channel request");
    clock.set(kept.expires_at - chrono::Duration::hours(12));
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    let all = fake.state().channels();
    assert_eq!(all.len(), 2);
    assert!(all.iter().any(|c| c.id == kept.id && c.stopped), "the old channel was stopped");
    let renewed = stored(store.clone(), conn.clone()).await.push_channel.expect("channel");
    assert_ne!(renewed.id, kept.id);
    assert_eq!(renewed.secret.expose_secret(), kept.secret.expose_secret());
}

#[tokio::test]
async fn the_drive_factory_refuses_a_connection_of_another_provider() {
    let fake = start(0).await;
    let mut conn = connection(&fake, TOKEN, None);
    conn.provider = Provider::Google;
    assert!(matches!(factory(&fake).client(&conn).err(), Some(ProviderError::Permanent(_))));
}
