//! The DynamoDB, SQS and EventBridge adapters against a real moto server.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use chrono::{DateTime, Duration, TimeZone, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use syncbridge::adapters::eventbridge::EventBridgeBus;
use syncbridge::adapters::sqs::SqsJobQueue;
use syncbridge::domain::{
    AuditEntry, AuditOutcome, CanonicalRecord, Connection, ConnectionId, ConnectionStatus, Credentials,
    DomainEvent, ExternalId, Job, JobId, JobReason, NewConnection, ObjectType, Operation, Provider,
    RecordChange, RecordId, RunCounts, RunId, RunStatus, SyncCursor, SyncRun, TenantId,
};
use syncbridge::ports::{
    AuditLog, AuditQuery, ConnectionStore, EventBus, JobQueue, RecordStore, RecordWrite, RunStore, StoreError,
};

use crate::aws_support::{Moto, dynamo_store, sqs_queue, unique};

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

/// A whole-second time (what `next_sync_at` keeps), `secs` after a fixed start.
fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000 + secs, 0).unwrap()
}

fn connection(t: &TenantId, next_sync_at: Option<DateTime<Utc>>) -> Connection {
    let mut c = Connection::new(
        t.clone(),
        NewConnection {
            provider: Provider::Hubspot,
            base_url: "http://127.0.0.1:9".into(),
            credentials: Credentials {
                access_token: SecretString::from("access-1"),
                refresh_token: Some(SecretString::from("refresh-1")),
                expires_at: Some(at(3600)),
            },
            interval_minutes: 15,
            settings: Default::default(),
        },
        at(0),
    );
    c.next_sync_at = next_sync_at;
    c
}

fn record(c: &Connection, object: ObjectType, external: &str, email: &str) -> CanonicalRecord {
    let external_id = ExternalId::parse(external).unwrap();
    let fields: BTreeMap<String, serde_json::Value> = [("email".to_owned(), json!(email))].into();
    CanonicalRecord {
        record_id: RecordId::derive(&c.tenant_id, &c.connection_id, object, &external_id),
        tenant_id: c.tenant_id.clone(),
        connection_id: c.connection_id.clone(),
        object,
        external_id,
        base: fields.clone(),
        fields,
        remote_modified_at: Some(at(5)),
        etag: None,
        local_modified_at: None,
        sources: Default::default(),
        pending_push: Default::default(),
        deleted: false,
        created_at: at(10),
        updated_at: at(10),
        version: 1,
    }
}

fn run(c: &Connection, run_id: &str, job: &str, finished: DateTime<Utc>) -> SyncRun {
    SyncRun {
        tenant_id: c.tenant_id.clone(),
        connection_id: c.connection_id.clone(),
        run_id: RunId::parse(run_id).unwrap(),
        job_id: JobId::parse(job).unwrap(),
        reason: JobReason::Schedule,
        status: RunStatus::Succeeded,
        started_at: finished - Duration::seconds(3),
        finished_at: finished,
        duration_ms: 3000,
        counts: RunCounts { pulled: 4, created: 4, requests: 2, pages: 1, ..RunCounts::default() },
        error: None,
        objects: Default::default(),
    }
}

#[tokio::test]
async fn connections_are_created_read_and_listed_per_tenant_and_never_created_twice() -> Result<()> {
    let moto = Moto::start().await?;
    let store = dynamo_store(&moto.config().await, 4).await?;
    let (acme, other) = (tenant("acme"), tenant("other"));
    let a = connection(&acme, Some(at(0)));
    let b = connection(&acme, None);
    let elsewhere = connection(&other, Some(at(0)));
    for c in [&a, &b, &elsewhere] {
        store.create(c).await?;
    }
    assert!(matches!(store.create(&a).await, Err(StoreError::Conflict)));

    let got = ConnectionStore::get(&store, &acme, &a.connection_id).await?.expect("stored connection");
    assert_eq!(got.provider, Provider::Hubspot);
    assert_eq!(got.status, ConnectionStatus::Pending);
    assert_eq!(got.next_sync_at, Some(at(0)));
    assert_eq!(got.credentials.access_token.expose_secret(), "access-1");
    assert_eq!(
        got.credentials.refresh_token.as_ref().map(|t| t.expose_secret().to_owned()),
        Some("refresh-1".into())
    );
    assert_eq!(got.version, 0);
    assert!(ConnectionStore::get(&store, &other, &a.connection_id).await?.is_none());

    let listed: BTreeSet<ConnectionId> =
        ConnectionStore::list(&store, &acme).await?.into_iter().map(|c| c.connection_id).collect();
    assert_eq!(listed, BTreeSet::from([a.connection_id.clone(), b.connection_id.clone()]));
    Ok(())
}

#[tokio::test]
async fn save_state_writes_worker_state_only_and_rejects_a_stale_version() -> Result<()> {
    let moto = Moto::start().await?;
    let store = dynamo_store(&moto.config().await, 4).await?;
    let c = connection(&tenant("acme"), Some(at(0)));
    store.create(&c).await?;

    let mut changed = ConnectionStore::get(&store, &c.tenant_id, &c.connection_id).await?.expect("stored");
    changed.status = ConnectionStatus::Synced;
    changed.cursors.insert(ObjectType::Contacts, SyncCursor::new("{\"after\":\"9\"}"));
    changed.credentials.access_token = SecretString::from("access-2");
    changed.credentials.refresh_token = None;
    changed.last_sync_at = Some(at(60));
    changed.record_counts.insert(ObjectType::Contacts, 12);
    changed.next_sync_at = None;
    changed.interval_minutes = 999;
    assert_eq!(store.save_state(&changed).await?, 1);

    let stored = ConnectionStore::get(&store, &c.tenant_id, &c.connection_id).await?.expect("stored");
    assert_eq!(stored.version, 1);
    assert_eq!(stored.status, ConnectionStatus::Synced);
    assert_eq!(stored.cursors, changed.cursors);
    assert_eq!(stored.credentials.access_token.expose_secret(), "access-2");
    assert!(stored.credentials.refresh_token.is_none());
    assert_eq!(stored.record_counts[&ObjectType::Contacts], 12);
    assert_eq!(stored.next_sync_at, Some(at(0)), "save_state leaves the schedule alone");
    assert_eq!(stored.interval_minutes, 15, "save_state leaves settings alone");

    assert!(matches!(store.save_state(&changed).await, Err(StoreError::Conflict)));
    assert_eq!(
        ConnectionStore::get(&store, &c.tenant_id, &c.connection_id).await?.expect("stored").version,
        1
    );
    Ok(())
}

#[tokio::test]
async fn due_index_returns_only_due_scheduled_connections_oldest_first() -> Result<()> {
    let moto = Moto::start().await?;
    let store = dynamo_store(&moto.config().await, 1).await?;
    let t = tenant("acme");
    let now = at(1000);
    let older = connection(&t, Some(now - Duration::minutes(10)));
    let newer = connection(&t, Some(now - Duration::minutes(5)));
    let exactly_now = connection(&t, Some(now));
    let future = connection(&t, Some(now + Duration::minutes(10)));
    let paused = connection(&t, None);
    for c in [&newer, &future, &paused, &exactly_now, &older] {
        store.create(c).await?;
    }

    let due = store.due(0, now, 10).await?;
    let ids: Vec<&ConnectionId> = due.iter().map(|d| &d.connection_id).collect();
    assert_eq!(ids, vec![&older.connection_id, &newer.connection_id, &exactly_now.connection_id]);
    assert_eq!(due[0].next_sync_at, now - Duration::minutes(10));
    assert_eq!(due[0].interval_minutes, 15);
    assert_eq!(due[0].tenant_id, t);

    let first = store.due(0, now, 1).await?;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].connection_id, older.connection_id);
    assert!(store.due(1, now, 10).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn exactly_one_of_two_concurrent_claims_wins_a_slot() -> Result<()> {
    let moto = Moto::start().await?;
    let store = dynamo_store(&moto.config().await, 1).await?;
    let slot = at(0);
    let next = at(900);
    let c = connection(&tenant("acme"), Some(slot));
    store.create(&c).await?;

    let (first, second) = tokio::join!(
        store.claim_slot(&c.tenant_id, &c.connection_id, slot, next),
        store.claim_slot(&c.tenant_id, &c.connection_id, slot, next),
    );
    assert_eq!([first?, second?].iter().filter(|won| **won).count(), 1);

    let stored = ConnectionStore::get(&store, &c.tenant_id, &c.connection_id).await?.expect("stored");
    assert_eq!(stored.next_sync_at, Some(next));
    assert_eq!(stored.version, 0, "claiming does not touch the version");
    assert!(store.due(0, at(1), 10).await?.is_empty());
    assert!(!store.claim_slot(&c.tenant_id, &c.connection_id, slot, next).await?);
    Ok(())
}

#[tokio::test]
async fn records_are_created_found_by_external_id_and_updated_only_from_the_expected_version() -> Result<()> {
    let moto = Moto::start().await?;
    let store = dynamo_store(&moto.config().await, 4).await?;
    let c = connection(&tenant("acme"), Some(at(0)));
    store.create(&c).await?;
    let r1 = record(&c, ObjectType::Contacts, "101", "a@x.io");
    let r2 = record(&c, ObjectType::Contacts, "102", "b@x.io");

    let results = store
        .write(Provider::Hubspot, vec![RecordWrite::Create(r1.clone()), RecordWrite::Create(r2.clone())])
        .await?;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    let ids: Vec<ExternalId> =
        ["101", "102", "999", "101"].iter().map(|x| ExternalId::parse(*x).unwrap()).collect();
    let found = store
        .get_by_external(&c.tenant_id, &c.connection_id, Provider::Hubspot, ObjectType::Contacts, &ids)
        .await?;
    assert_eq!(found.len(), 2);
    assert_eq!(found[&ids[0]], r1);
    assert_eq!(found[&ids[1]], r2);
    let other_provider = store
        .get_by_external(&c.tenant_id, &c.connection_id, Provider::Salesforce, ObjectType::Contacts, &ids)
        .await?;
    assert!(other_provider.is_empty());

    let mut edited = r1.clone();
    edited.fields.insert("email".into(), json!("new@x.io"));
    edited.version = 2;
    let mut stale = r2.clone();
    stale.version = 5;
    let never_created = record(&c, ObjectType::Contacts, "103", "c@x.io");
    let mut never_created_update = never_created.clone();
    never_created_update.version = 2;
    let results = store
        .write(
            Provider::Hubspot,
            vec![
                RecordWrite::Update(edited.clone()),
                RecordWrite::Update(stale),
                RecordWrite::Create(r1.clone()),
                RecordWrite::Update(never_created_update),
            ],
        )
        .await?;
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(StoreError::Conflict)));
    assert!(matches!(results[2], Err(StoreError::Conflict)));
    assert!(matches!(results[3], Err(StoreError::Conflict)));

    assert_eq!(
        RecordStore::get(&store, &c.tenant_id, &c.connection_id, &r1.record_id).await?,
        Some(edited.clone())
    );
    assert_eq!(RecordStore::get(&store, &c.tenant_id, &c.connection_id, &r2.record_id).await?, Some(r2));
    assert_eq!(
        RecordStore::get(&store, &c.tenant_id, &c.connection_id, &never_created.record_id).await?,
        None
    );
    let again = store.write(Provider::Hubspot, vec![RecordWrite::Update(edited)]).await?;
    assert!(matches!(again[0], Err(StoreError::Conflict)), "an unchanged version is not written twice");
    Ok(())
}

fn event(c: &Connection, external: &str, uid: serde_json::Value) -> CanonicalRecord {
    let mut r = record(c, ObjectType::Events, external, "");
    r.fields = [("ical_uid".to_owned(), uid), ("title".to_owned(), json!("Kickoff"))].into();
    r.base = r.fields.clone();
    r
}

#[tokio::test]
async fn live_calendar_events_are_found_by_ical_uid_through_the_sparse_index_across_connections() -> Result<()>
{
    let moto = Moto::start().await?;
    let store = dynamo_store(&moto.config().await, 4).await?;
    let acme = tenant("acme");
    let mut outlook = connection(&acme, None);
    outlook.provider = Provider::Microsoft;
    let mut google = connection(&acme, None);
    google.provider = Provider::Google;
    let crm = connection(&acme, None);
    let other = connection(&tenant("globex"), None);
    let long_uid = "L".repeat(1500);

    let in_outlook = [event(&outlook, "AAMk1", json!("UID-A")), event(&outlook, "AAMk2", json!("UID-B"))];
    let in_google = [event(&google, "g1", json!("UID-A")), event(&google, "g2", json!(long_uid))];
    let cancelled = event(&outlook, "AAMk3", json!("UID-C"));
    let no_uid = event(&outlook, "AAMk4", json!(null));
    let mut contact = record(&crm, ObjectType::Contacts, "501", "a@x.io");
    contact.fields.insert("ical_uid".into(), json!("UID-A"));
    let elsewhere = event(&other, "AAMk1", json!("UID-A"));
    let writes =
        |records: &[&CanonicalRecord]| records.iter().map(|r| RecordWrite::Create((*r).clone())).collect();
    let results = [
        store
            .write(Provider::Microsoft, writes(&[&in_outlook[0], &in_outlook[1], &cancelled, &no_uid]))
            .await?,
        store.write(Provider::Google, writes(&[&in_google[0], &in_google[1]])).await?,
        store.write(Provider::Hubspot, writes(&[&contact])).await?,
        store.write(Provider::Microsoft, writes(&[&elsewhere])).await?,
    ];
    assert!(results.iter().flatten().all(Result::is_ok), "{results:?}");
    // The meeting is cancelled: the event's new version is deleted and leaves the index.
    let mut deleted = cancelled.clone();
    deleted.deleted = true;
    deleted.version = 2;
    let results = store.write(Provider::Microsoft, vec![RecordWrite::Update(deleted)]).await?;
    assert!(results[0].is_ok(), "{results:?}");

    let uids: Vec<String> =
        ["UID-A", "UID-B", "UID-C", "UID-A", "", "nope", &long_uid].iter().map(|u| (*u).to_owned()).collect();
    let mut found = store.events_by_ical_uid(&acme, &uids).await?;
    found.sort_by(|a, b| (&a.connection_id, &a.external_id).cmp(&(&b.connection_id, &b.external_id)));
    let mut expected =
        vec![in_outlook[0].clone(), in_outlook[1].clone(), in_google[0].clone(), in_google[1].clone()];
    expected.sort_by(|a, b| (&a.connection_id, &a.external_id).cmp(&(&b.connection_id, &b.external_id)));
    assert_eq!(
        found, expected,
        "both copies of UID-A, UID-B, the long UID; not the cancelled, the contact or globex's"
    );
    assert!(store.events_by_ical_uid(&acme, &[]).await?.is_empty());
    assert!(store.events_by_ical_uid(&tenant("initech"), &uids).await?.is_empty());

    // A recurring Google meeting's occurrences share one UID: a bounded number come back.
    let series: Vec<RecordWrite> = (0..30)
        .map(|i| RecordWrite::Create(event(&google, &format!("series_{i}"), json!("UID-SERIES"))))
        .collect();
    assert!(store.write(Provider::Google, series).await?.iter().all(Result::is_ok));
    let found = store.events_by_ical_uid(&acme, &["UID-SERIES".to_owned()]).await?;
    assert_eq!(found.len(), syncbridge::ports::MAX_EVENTS_PER_UID);
    assert!(
        found.iter().all(|r| r.fields["ical_uid"] == "UID-SERIES" && r.connection_id == google.connection_id)
    );

    let too_many: Vec<String> =
        (0..=syncbridge::ports::MAX_UIDS_PER_LOOKUP).map(|i| format!("u{i}")).collect();
    assert!(store.events_by_ical_uid(&acme, &too_many).await.is_err());
    Ok(())
}

#[tokio::test]
async fn concurrent_creates_of_one_external_id_leave_exactly_one_conflict() -> Result<()> {
    let moto = Moto::start().await?;
    let store = dynamo_store(&moto.config().await, 4).await?;
    let c = connection(&tenant("acme"), Some(at(0)));
    store.create(&c).await?;
    let mut first = record(&c, ObjectType::Contacts, "555", "first@x.io");
    let mut second = first.clone();
    first.fields.insert("by".into(), json!("first"));
    second.fields.insert("by".into(), json!("second"));

    let (a, b) = tokio::join!(
        store.write(Provider::Hubspot, vec![RecordWrite::Create(first.clone())]),
        store.write(Provider::Hubspot, vec![RecordWrite::Create(second.clone())]),
    );
    let outcomes = [a?.remove(0), b?.remove(0)];
    assert_eq!(outcomes.iter().filter(|r| r.is_ok()).count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|r| matches!(r, Err(StoreError::Conflict))).count(), 1);

    let winner = if outcomes[0].is_ok() { first } else { second };
    assert_eq!(
        RecordStore::get(&store, &c.tenant_id, &c.connection_id, &winner.record_id).await?,
        Some(winner)
    );
    Ok(())
}

#[tokio::test]
async fn record_list_pages_through_each_record_once_and_rejects_foreign_or_malformed_tokens() -> Result<()> {
    let moto = Moto::start().await?;
    let store = dynamo_store(&moto.config().await, 4).await?;
    let c = connection(&tenant("acme"), Some(at(0)));
    let other = connection(&tenant("other"), Some(at(0)));
    store.create(&c).await?;
    store.create(&other).await?;
    let mut writes: Vec<RecordWrite> = (0..25)
        .map(|i| RecordWrite::Create(record(&c, ObjectType::Contacts, &format!("c{i}"), "x@x.io")))
        .collect();
    writes.extend(
        (0..3).map(|i| RecordWrite::Create(record(&c, ObjectType::Events, &format!("e{i}"), "x@x.io"))),
    );
    assert!(store.write(Provider::Hubspot, writes).await?.iter().all(Result::is_ok));

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = RecordStore::list(
            &store,
            &c.tenant_id,
            &c.connection_id,
            Some(ObjectType::Contacts),
            10,
            token.as_deref(),
        )
        .await?;
        assert!(page.items.len() <= 10);
        assert!(page.items.iter().all(|r| r.object == ObjectType::Contacts));
        seen.extend(page.items.into_iter().map(|r| r.record_id));
        pages += 1;
        match page.next {
            Some(next) if pages < 10 => token = Some(next),
            _ => break,
        }
    }
    let unique_seen: BTreeSet<&RecordId> = seen.iter().collect();
    assert_eq!((seen.len(), unique_seen.len()), (25, 25));
    assert!(pages >= 3);

    let all = RecordStore::list(&store, &c.tenant_id, &c.connection_id, None, 100, None).await?;
    assert_eq!(all.items.len(), 28);
    let events =
        RecordStore::list(&store, &c.tenant_id, &c.connection_id, Some(ObjectType::Events), 100, None)
            .await?;
    assert_eq!(events.items.len(), 3);

    let first = RecordStore::list(&store, &c.tenant_id, &c.connection_id, None, 5, None).await?;
    let token = first.next.expect("more pages");
    let foreign =
        RecordStore::list(&store, &other.tenant_id, &other.connection_id, None, 5, Some(&token)).await;
    assert!(matches!(foreign, Err(StoreError::InvalidPageToken)));
    let garbage =
        RecordStore::list(&store, &c.tenant_id, &c.connection_id, None, 5, Some("not a token")).await;
    assert!(matches!(garbage, Err(StoreError::InvalidPageToken)));
    Ok(())
}

#[tokio::test]
async fn finish_saves_state_run_and_job_together_and_a_stale_finish_writes_nothing() -> Result<()> {
    let moto = Moto::start().await?;
    let store = dynamo_store(&moto.config().await, 4).await?;
    let c = connection(&tenant("acme"), Some(at(0)));
    store.create(&c).await?;
    let job1 = JobId::parse("job-1")?;
    assert!(!store.job_done(&c.tenant_id, &c.connection_id, &job1).await?);

    let mut state = ConnectionStore::get(&store, &c.tenant_id, &c.connection_id).await?.expect("stored");
    let run1 = run(&c, "01aaaa", "job-1", at(100));
    state.status = ConnectionStatus::Synced;
    state.last_run_id = Some(run1.run_id.clone());
    assert_eq!(store.finish(&state, &run1).await?, 1);
    assert!(store.job_done(&c.tenant_id, &c.connection_id, &job1).await?);
    let stored = ConnectionStore::get(&store, &c.tenant_id, &c.connection_id).await?.expect("stored");
    assert_eq!((stored.version, stored.status), (1, ConnectionStatus::Synced));
    assert_eq!(stored.last_run_id, Some(run1.run_id.clone()));

    let run2 = run(&c, "01bbbb", "job-2", at(200));
    assert!(matches!(store.finish(&state, &run2).await, Err(StoreError::Conflict)), "stale version");
    assert!(!store.job_done(&c.tenant_id, &c.connection_id, &JobId::parse("job-2")?).await?);
    assert_eq!(store.list_runs(&c.tenant_id, &c.connection_id, 10).await?, vec![run1.clone()]);

    state.version = 1;
    let replay = run(&c, "01cccc", "job-1", at(300));
    assert!(matches!(store.finish(&state, &replay).await, Err(StoreError::Conflict)), "job already done");
    assert_eq!(
        ConnectionStore::get(&store, &c.tenant_id, &c.connection_id).await?.expect("stored").version,
        1
    );

    assert_eq!(store.finish(&state, &run2).await?, 2);
    let runs = store.list_runs(&c.tenant_id, &c.connection_id, 10).await?;
    assert_eq!(runs, vec![run2.clone(), run1]);
    assert_eq!(store.list_runs(&c.tenant_id, &c.connection_id, 1).await?, vec![run2]);
    Ok(())
}

#[tokio::test]
async fn audit_entries_are_found_by_tenant_connection_and_time_newest_first() -> Result<()> {
    let moto = Moto::start().await?;
    let store = dynamo_store(&moto.config().await, 4).await?;
    let (acme, other) = (tenant("acme"), tenant("other"));
    let (ca, cb) = (ConnectionId::parse("conn-a")?, ConnectionId::parse("conn-b")?);
    let entry = |t: &TenantId, c: Option<&ConnectionId>, secs: i64| {
        let e = AuditEntry::new(t.clone(), Operation::Pull, AuditOutcome::Success, "worker", at(secs))
            .detail(json!({"n": secs}));
        match c {
            Some(c) => e.connection(c),
            None => e,
        }
    };
    let entries = vec![
        entry(&acme, Some(&ca), 10),
        entry(&acme, Some(&cb), 20),
        entry(&acme, Some(&ca), 30),
        entry(&acme, None, 40),
        entry(&acme, Some(&ca), 50),
        entry(&other, Some(&ca), 60),
    ];
    store.append(&entries).await?;
    store.append(&entries[..2]).await?;

    let all = store.query(&acme, &AuditQuery { limit: 100, ..AuditQuery::default() }).await?;
    let times: Vec<i64> = all.items.iter().map(|e| e.at.timestamp() - at(0).timestamp()).collect();
    assert_eq!(times, vec![50, 40, 30, 20, 10]);
    assert_eq!(all.items[0], entries[4]);
    assert!(all.next.is_none());

    let by_a = AuditQuery { connection: Some(ca.clone()), limit: 100, ..AuditQuery::default() };
    let a: Vec<i64> =
        store.query(&acme, &by_a).await?.items.iter().map(|e| e.at.timestamp() - at(0).timestamp()).collect();
    assert_eq!(a, vec![50, 30, 10]);

    let window = AuditQuery {
        connection: Some(ca.clone()),
        from: Some(at(30)),
        to: Some(at(50)),
        limit: 100,
        ..AuditQuery::default()
    };
    let w: Vec<i64> = store
        .query(&acme, &window)
        .await?
        .items
        .iter()
        .map(|e| e.at.timestamp() - at(0).timestamp())
        .collect();
    assert_eq!(w, vec![50, 30]);
    let until = AuditQuery { to: Some(at(20)), limit: 100, ..AuditQuery::default() };
    assert_eq!(store.query(&acme, &until).await?.items.len(), 2);

    let mut paged = Vec::new();
    let mut q = AuditQuery { limit: 2, ..AuditQuery::default() };
    for _ in 0..10 {
        let page = store.query(&acme, &q).await?;
        paged.extend(page.items);
        match page.next {
            Some(next) => q.page_token = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, all.items);

    let first = store.query(&acme, &AuditQuery { limit: 1, ..AuditQuery::default() }).await?;
    let stolen = AuditQuery { limit: 1, page_token: first.next, ..AuditQuery::default() };
    assert!(matches!(store.query(&other, &stolen).await, Err(StoreError::InvalidPageToken)));
    Ok(())
}

#[tokio::test]
async fn sqs_enqueue_delivers_every_job_with_its_group_and_drops_duplicates() -> Result<()> {
    let moto = Moto::start().await?;
    let config = moto.config().await;
    let url = sqs_queue(&config, true).await?;
    let client = aws_sdk_sqs::Client::new(&config);
    let queue = SqsJobQueue::new(client.clone(), url.clone());
    let t = tenant("acme");
    let connections: Vec<ConnectionId> =
        (0..3).map(|i| ConnectionId::parse(format!("c{i}")).unwrap()).collect();
    let mut jobs: Vec<Job> = (0..25)
        .map(|i| {
            let c = &connections[i % 3];
            Job::sync(
                t.clone(),
                c.clone(),
                Job::scheduled_id(c, at(i as i64 * 60)),
                JobReason::Schedule,
                at(0),
            )
        })
        .collect();
    jobs.push(jobs[0].clone());
    queue.enqueue(&jobs).await?;
    queue.enqueue(&jobs[1..2]).await?;
    queue.enqueue(&[]).await?;

    let mut received: Vec<(Job, String)> = Vec::new();
    let mut empty = 0;
    while received.len() < 30 && empty < 3 {
        let out = client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            empty += 1;
        }
        for m in messages {
            let job = Job::parse(m.body().unwrap_or_default())?;
            let group = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned()
                .unwrap_or_default();
            received.push((job, group));
            if let Some(handle) = m.receipt_handle() {
                client.delete_message().queue_url(&url).receipt_handle(handle).send().await?;
            }
        }
    }
    assert_eq!(received.len(), 25, "one message per distinct job");
    let ids: BTreeSet<&JobId> = received.iter().map(|(j, _)| &j.job_id).collect();
    assert_eq!(ids.len(), 25);
    for (job, group) in &received {
        assert_eq!(group, &format!("acme#{}", job.connection_id));
    }
    Ok(())
}

#[tokio::test]
async fn eventbridge_publish_delivers_every_event_to_a_rule_target() -> Result<()> {
    let moto = Moto::start().await?;
    let config = moto.config().await;
    let events_client = aws_sdk_eventbridge::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let bus_name = unique("bus");
    events_client.create_event_bus().name(&bus_name).send().await?;
    let url = sqs_queue(&config, false).await?;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
        .expect("queue arn");
    events_client
        .put_rule()
        .name("all-syncbridge")
        .event_bus_name(&bus_name)
        .event_pattern(r#"{"source":["syncbridge"]}"#)
        .send()
        .await?;
    events_client
        .put_targets()
        .rule("all-syncbridge")
        .event_bus_name(&bus_name)
        .targets(aws_sdk_eventbridge::types::Target::builder().id("q").arn(arn).build()?)
        .send()
        .await?;

    let t = tenant("acme");
    let c = ConnectionId::parse("c1")?;
    let mut events: Vec<DomainEvent> = (0..11)
        .map(|i| DomainEvent::RecordChanged {
            change: RecordChange::Updated,
            tenant_id: t.clone(),
            connection_id: c.clone(),
            record_id: RecordId::parse(format!("r{i}")).unwrap(),
            object: ObjectType::Contacts,
            external_id: ExternalId::parse(format!("{i}")).unwrap(),
            changed_fields: vec!["email".into()],
            version: 2,
        })
        .collect();
    events.push(DomainEvent::SyncCompleted {
        tenant_id: t.clone(),
        connection_id: c.clone(),
        run_id: RunId::parse("01run")?,
        counts: RunCounts::default(),
    });
    EventBridgeBus::new(events_client, bus_name).publish(&events).await?;

    let mut detail_types = Vec::new();
    let mut empty = 0;
    while detail_types.len() < 12 && empty < 3 {
        let out = sqs.receive_message().queue_url(&url).max_number_of_messages(10).send().await?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            empty += 1;
        }
        for m in messages {
            let envelope: serde_json::Value = serde_json::from_str(m.body().unwrap_or_default())?;
            assert_eq!(envelope["source"], "syncbridge");
            assert_eq!(envelope["detail"]["tenant_id"], "acme");
            detail_types.push(envelope["detail-type"].as_str().unwrap_or_default().to_owned());
        }
    }
    detail_types.sort();
    let mut expected = vec!["record.updated".to_owned(); 11];
    expected.push("sync.completed".to_owned());
    expected.sort();
    assert_eq!(detail_types, expected);
    Ok(())
}
