//! The Gmail adapter against the Gmail fake over HTTP: full pulls (list, then paced metadata
//! reads), `history.list` increments with deletes, the 404 resync (through the worker too, deletes
//! reconciled), label pushes through the approval queue with their precondition and echo, quota
//! pacing and 429s, scopes, token refresh and the mailbox watch.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use serde_json::json;
use syncbridge::adapters::gmail::{GmailClient, GmailConfig, GmailFactory};
use syncbridge::adapters::memory::MemoryStore;
use syncbridge::adapters::provider_http::RetryPolicy;
use syncbridge::config::OAuthApp;
use syncbridge::domain::{
    CanonicalRecord, Connection, ExternalId, ObjectType, Provider, RemoteRecord, SyncCursor,
};
use syncbridge::ports::{Precondition, ProviderClient, ProviderError, ProviderWrite};
use syncbridge::sync::Deps;
use syncbridge::sync::worker::JobOutcome;

use super::provider_support::sync_once;
use syncbridge_fakes::gmail::{FakeConfig, Fault, FaultKind, GmailFake, Mail, RunningFake, scopes};

const TOKEN: &str = "ya29.fake-gmail";

async fn start(messages: usize) -> RunningFake {
    GmailFake::start(FakeConfig { messages, ..FakeConfig::default() }).await.expect("fake starts")
}

fn connection(fake: &RunningFake, token: &str, refresh: Option<&str>) -> Connection {
    crate::provider_support::connection_to(Provider::Gmail, fake.api_url(), token, refresh)
}

fn factory(fake: &RunningFake) -> GmailFactory {
    let config = fake.state().config().clone();
    let app =
        OAuthApp { client_id: config.client_id, client_secret: SecretString::from(config.client_secret) };
    let gmail = GmailConfig {
        api_base_url: fake.api_url(),
        token_url: fake.token_url(),
        pubsub_topic: Some("projects/acme/topics/gmail".into()),
        ..GmailConfig::default()
    };
    let policy = RetryPolicy {
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(200),
        max_inline_wait: Duration::from_secs(2),
        ..RetryPolicy::default()
    };
    GmailFactory::new(reqwest::Client::new(), Some(app), gmail).with_policy(policy)
}

fn client(fake: &RunningFake) -> GmailClient {
    factory(fake).gmail_client(&connection(fake, TOKEN, None)).expect("client")
}

fn token() -> SecretString {
    SecretString::from(TOKEN)
}

async fn pull_all(
    client: &dyn ProviderClient,
    mut cursor: Option<SyncCursor>,
) -> (Vec<RemoteRecord>, SyncCursor, usize) {
    let mut records = Vec::new();
    for pages in 1..=100 {
        let page =
            client.pull_page(&token(), ObjectType::Messages, cursor.as_ref()).await.expect("page pulls");
        records.extend(page.records);
        let done = !page.has_more;
        cursor = Some(page.cursor);
        if done {
            return (records, cursor.expect("cursor"), pages);
        }
    }
    panic!("the pull did not finish within 100 pages");
}

fn ids(records: &[RemoteRecord]) -> BTreeSet<String> {
    records.iter().map(|r| r.external_id.as_str().to_owned()).collect()
}

fn mail(subject: &str) -> Mail {
    Mail {
        from: "Raj Patel <Raj@Initech.example>".into(),
        to: vec!["owner@acme.example".into()],
        cc: vec!["ann@acme.example".into()],
        subject: subject.into(),
        body: "Can we talk pricing?".into(),
        ..Mail::default()
    }
}

#[tokio::test]
async fn gmail_full_pull_reads_every_message_then_history_returns_only_what_changed() {
    let fake = start(130).await;
    let client = client(&fake);
    let (records, cursor, pages) = pull_all(&client, None).await;
    assert_eq!(pages, 2, "130 messages are two list pages of 100");
    assert_eq!(ids(&records), fake.state().message_ids().into_iter().collect());
    assert_eq!(records.len(), 130, "no message twice");
    let one = &records[0];
    assert!(one.fields["participants"].as_array().is_some_and(|p| p.contains(&json!("owner@acme.example"))));
    assert!(one.fields["labels"] == json!(["INBOX", "UNREAD"]));
    assert!(one.etag.is_some(), "the message's historyId is its version");
    let stats = fake.state().stats();
    assert_eq!(stats.routes["messages.list"], 2);
    assert_eq!(stats.routes["messages.get"], 130);

    let state = fake.state();
    let new_id = state.deliver(&mail("Pricing")).expect("delivered");
    let relabeled = records[5].external_id.as_str().to_owned();
    state.relabel(&relabeled, &["STARRED"], &["UNREAD"]).expect("relabel");
    let gone = records[7].external_id.as_str().to_owned();
    state.delete_message(&gone).expect("delete");
    state.reset_stats();
    let (changes, _, pages) = pull_all(&client, Some(cursor)).await;
    assert_eq!(pages, 1);
    let by_id = |id: &str| changes.iter().find(|r| r.external_id.as_str() == id).expect("in the changes");
    assert_eq!(changes.len(), 3, "exactly the three messages that changed");
    assert_eq!(by_id(&new_id).fields["from"], json!("raj@initech.example"));
    assert_eq!(by_id(&new_id).fields["subject"], json!("Pricing"));
    assert_eq!(by_id(&relabeled).fields["labels"], json!(["INBOX", "STARRED"]));
    assert!(by_id(&gone).deleted);
    let stats = fake.state().stats();
    assert_eq!(stats.routes.get("messages.list"), None, "no listing in an incremental pull");
    assert_eq!(stats.routes["history.list"], 1);
    assert_eq!(stats.routes["messages.get"], 2, "only the changed messages are read");
}

#[tokio::test]
async fn a_lost_history_resyncs_in_full_and_asks_for_deletes_to_be_reconciled() {
    let fake = start(3).await;
    let client = client(&fake);
    let (_, cursor, _) = pull_all(&client, None).await;
    let state = fake.state();
    let gone = state.message_ids()[0].clone();
    state.delete_message(&gone).expect("delete");
    state.deliver(&mail("During the gap")).expect("delivered");
    state.expire_history();
    let page = client.pull_page(&token(), ObjectType::Messages, Some(&cursor)).await.expect("resync");
    assert!(!page.has_more);
    assert!(page.reconcile_deletes, "messages deleted while history was lost are found by the live ids");
    assert_eq!(ids(&page.records), state.message_ids().into_iter().collect(), "the whole mailbox again");
    let live = client.live_ids(&token(), ObjectType::Messages, None).await.expect("live ids");
    assert!(!live.ids.contains(&ExternalId::parse(gone).expect("id")));
    assert_eq!(live.ids.len(), 3);
    let (after, _, _) = pull_all(&client, Some(page.cursor)).await;
    assert!(after.is_empty(), "the resync's history id is current");
}

fn engine(fake: &RunningFake) -> (Deps, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let deps =
        syncbridge::adapters::memory::TestDeps::new(store.clone()).providers(Arc::new(factory(fake))).build();
    (deps, store)
}

fn messages_of(store: &MemoryStore, conn: &Connection) -> Vec<CanonicalRecord> {
    let mut records = store.records_of(&conn.tenant_id, &conn.connection_id);
    records.retain(|r| r.object == ObjectType::Messages);
    records
}

#[tokio::test]
async fn through_the_worker_a_404_resync_deletes_what_went_while_history_was_lost_and_duplicates_nothing() {
    let fake = start(12).await;
    let (deps, store) = engine(&fake);
    let conn = connection(&fake, TOKEN, None);
    store.put_connection(conn.clone());
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    assert_eq!(messages_of(&store, &conn).len(), 12);

    let state = fake.state();
    let gone = state.message_ids()[3].clone();
    state.delete_message(&gone).expect("delete");
    let added = state.deliver(&mail("New while history was lost")).expect("delivered");
    state.expire_history();
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    let records = messages_of(&store, &conn);
    let live: BTreeSet<String> =
        records.iter().filter(|r| !r.deleted).map(|r| r.external_id.as_str().to_owned()).collect();
    assert_eq!(live, state.message_ids().into_iter().collect::<BTreeSet<_>>());
    assert!(live.contains(&added));
    assert!(
        records.iter().any(|r| r.external_id.as_str() == gone && r.deleted),
        "the lost delete is applied"
    );
    assert_eq!(records.len(), 13, "one record per message ever seen");
}

#[tokio::test]
async fn an_approved_label_change_reaches_gmail_once_and_its_echo_changes_nothing() {
    use syncbridge::domain::{Priority, PushAction};
    use syncbridge::sync::push::{PushRequest, edit};

    let fake = start(2).await;
    let (deps, store) = engine(&fake);
    let mut conn = connection(&fake, TOKEN, None);
    conn.settings.auto_push.insert(PushAction::UpdateRecord, true);
    store.put_connection(conn.clone());
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    let record = messages_of(&store, &conn).into_iter().next().expect("a message");
    let request = PushRequest {
        action: PushAction::UpdateRecord,
        object: None,
        priority: Priority::Normal,
        record_id: Some(record.record_id.clone()),
        fields: [("labels".to_owned(), json!(["INBOX", "STARRED"]))].into(),
        idempotency_key: syncbridge::domain::IdempotencyKey::parse("star-1").expect("key"),
        source: None,
    };
    edit(&deps, &conn, request, "person").await.expect("queued");
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    let labels = fake.state().labels_of(record.external_id.as_str()).expect("message");
    assert_eq!(labels, vec!["INBOX", "STARRED"], "UNREAD removed, STARRED added");
    assert_eq!(fake.state().stats().routes["messages.modify"], 1);

    let pushed = store.records_of(&conn.tenant_id, &conn.connection_id);
    let pushed = pushed.iter().find(|r| r.record_id == record.record_id).expect("record");
    let version = pushed.version;
    assert!(matches!(sync_once(&deps, &conn).await, JobOutcome::Completed { .. }));
    let after = store.records_of(&conn.tenant_id, &conn.connection_id);
    let after = after.iter().find(|r| r.record_id == record.record_id).expect("record");
    assert_eq!(after.version, version, "the history of our own modify is an echo: nothing changes");
    assert_eq!(fake.state().stats().routes["messages.modify"], 1, "never sent twice");
}

#[tokio::test]
async fn a_label_write_on_a_message_changed_since_the_pull_is_a_conflict_and_other_fields_are_refused() {
    let fake = start(1).await;
    let client = client(&fake);
    let (records, _, _) = pull_all(&client, None).await;
    let record = &records[0];
    fake.state().relabel(record.external_id.as_str(), &["IMPORTANT"], &[]).expect("a person relabels");
    let write = |fields: serde_json::Value| ProviderWrite::Update {
        object: ObjectType::Messages,
        external_id: record.external_id.clone(),
        fields: serde_json::from_value(fields).expect("fields"),
        precondition: Precondition { etag: record.etag.clone(), unmodified_since: None },
    };
    let results = client
        .write(
            &token(),
            &[
                write(json!({ "labels": ["STARRED"] })),
                write(json!({ "subject": "x" })),
                ProviderWrite::Update {
                    object: ObjectType::Messages,
                    external_id: record.external_id.clone(),
                    fields: serde_json::from_value(
                        json!({ "labels": ["IMPORTANT", "INBOX", "UNREAD", "SENT"] }),
                    )
                    .expect("fields"),
                    precondition: Precondition::default(),
                },
            ],
        )
        .await
        .expect("answers");
    assert!(matches!(results[0], Err(ProviderError::Conflict)));
    assert!(matches!(&results[1], Err(ProviderError::Permanent(f)) if f.message.contains("subject")));
    assert!(matches!(&results[2], Err(ProviderError::Permanent(f)) if f.message.contains("SENT")));
    assert_eq!(
        fake.state().labels_of(record.external_id.as_str()).expect("msg"),
        vec!["IMPORTANT", "INBOX", "UNREAD"]
    );
    assert_eq!(fake.state().stats().routes.get("messages.modify"), None);
}

#[tokio::test]
async fn a_spent_per_user_quota_answers_429_which_is_retried_then_reported_as_rate_limited() {
    // 20 units a minute; a first pull needs 1 + 5 + 5 x 5 = 31.
    let fake =
        GmailFake::start(FakeConfig { messages: 5, units_per_minute: Some(20), ..FakeConfig::default() })
            .await
            .expect("fake");
    let client = client(&fake);
    let err = client.pull_page(&token(), ObjectType::Messages, None).await.expect_err("quota spent");
    assert!(matches!(err, ProviderError::RateLimited { .. }), "{err:?}");
    assert!(fake.state().stats().rate_limited >= 2, "the 429 was retried in place before giving up");
    assert!(client.stats().rate_limited >= 2);
}

#[tokio::test]
async fn a_429_is_retried_in_place_and_a_persistent_one_is_rate_limited() {
    let fake = start(2).await;
    let client = client(&fake);
    let state = fake.state();
    state.inject_fault(Fault {
        route: "messages.list".into(),
        kind: FaultKind::RateLimit { retry_after_secs: None },
        count: 1,
    });
    let (records, _, _) = pull_all(&client, None).await;
    assert_eq!(records.len(), 2, "one 429 waited out in place");
    state.inject_fault(Fault {
        route: "getProfile".into(),
        kind: FaultKind::RateLimit { retry_after_secs: None },
        count: 50,
    });
    let err = client.pull_page(&token(), ObjectType::Messages, None).await.expect_err("gives up");
    assert!(matches!(err, ProviderError::RateLimited { .. }), "{err:?}");
    state.clear_faults();
    state.inject_fault(Fault {
        route: "messages.get".into(),
        kind: FaultKind::ServerError { status: Some(503) },
        count: 2,
    });
    let (records, _, _) = pull_all(&client, None).await;
    assert_eq!(records.len(), 2, "503s on reads are retried");
}

#[tokio::test]
async fn scopes_decide_what_a_token_may_do_and_an_expired_token_is_refreshed() {
    let fake = start(1).await;
    let state = fake.state();
    // A token with the metadata scope cannot read bodies: a connection mapping `body` fails for good.
    let meta = state.issue_token(&[scopes::METADATA.into()], None);
    let mut conn = connection(&fake, &meta.access_token, None);
    conn.settings.field_mapping.insert(ObjectType::Messages, [("body".to_owned(), "body".to_owned())].into());
    let bodies = factory(&fake).gmail_client(&conn).expect("client");
    let err = bodies
        .pull_page(&SecretString::from(meta.access_token.clone()), ObjectType::Messages, None)
        .await
        .expect_err("refused");
    assert!(matches!(&err, ProviderError::Permanent(f) if f.code.as_deref() == Some("forbidden")), "{err:?}");
    // The default (gmail.modify) reads the body when the mapping asks.
    let (records, _, _) = pull_all(
        &factory(&fake)
            .gmail_client(&{
                let mut c = connection(&fake, TOKEN, None);
                c.settings.field_mapping = conn.settings.field_mapping.clone();
                c
            })
            .expect("client"),
        None,
    )
    .await;
    assert!(records[0].fields["body"].as_str().is_some_and(|b| b.starts_with("Message 0")));

    let issued = state.issue_token(&[scopes::MODIFY.into()], None);
    assert!(state.expire_token(&issued.access_token));
    let c = factory(&fake)
        .gmail_client(&connection(&fake, &issued.access_token, Some(&issued.refresh_token)))
        .expect("client");
    let err = c
        .pull_page(&SecretString::from(issued.access_token.clone()), ObjectType::Messages, None)
        .await
        .expect_err("401");
    assert!(matches!(err, ProviderError::Unauthorized));
    let fresh = c.refresh(&SecretString::from(issued.refresh_token.clone())).await.expect("refreshed");
    let page = c.pull_page(&fresh.access_token, ObjectType::Messages, None).await.expect("works again");
    assert_eq!(page.records.len(), 1);
}

#[tokio::test]
async fn the_mailbox_watch_is_opened_on_the_topic_renewed_near_expiry_and_stopped() {
    let fake = start(0).await;
    let client = client(&fake);
    let now = Utc::now();
    let channel =
        client.ensure_channel(&token(), "unused", None, now).await.expect("watch").expect("a channel");
    let watch = fake.state().watch().expect("watching");
    assert_eq!(watch.topic_name, "projects/acme/topics/gmail");
    assert!(channel.expires_at > now + chrono::Duration::days(6));
    let kept =
        client.ensure_channel(&token(), "unused", Some(&channel), now).await.expect("ok").expect("channel");
    assert!(kept.same_as(&channel), "not renewed a week before expiry");
    assert_eq!(fake.state().stats().routes["watch"], 1);
    let later = channel.expires_at - chrono::Duration::hours(2);
    let renewed =
        client.ensure_channel(&token(), "unused", Some(&channel), later).await.expect("ok").expect("channel");
    assert_eq!(renewed.id, channel.id, "one watch per mailbox: same channel, later expiry");
    assert_eq!(fake.state().stats().routes["watch"], 2);
    client.stop_channel(&token(), &renewed).await.expect("stopped");
    assert!(fake.state().watch().is_none());
}
