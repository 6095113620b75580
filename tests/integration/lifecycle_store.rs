//! The DynamoDB side of the lifecycle and audit routes against a real moto server: settings and
//! pause state under their own version (and in or out of the due index), and audit queries by
//! record, operation and outcome whose filtered pages lose and repeat nothing.

use anyhow::Result;
use chrono::{DateTime, TimeZone, Utc};
use secrecy::SecretString;
use serde_json::json;
use syncbridge::domain::{
    AuditEntry, AuditOutcome, Connection, ConnectionId, ConnectionStatus, Credentials, NewConnection,
    Operation, Provider, RecordId, TenantId,
};
use syncbridge::ports::{AuditLog, AuditQuery, ConnectionStore, StoreError};

use crate::aws_support::{Moto, dynamo_store};

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_760_000_000 + secs, 0).unwrap()
}

fn connection(t: &str) -> Connection {
    let mut c = Connection::new(
        TenantId::parse(t).unwrap(),
        NewConnection {
            provider: Provider::Hubspot,
            base_url: "http://127.0.0.1:9".into(),
            credentials: Credentials {
                access_token: SecretString::from("access-1"),
                refresh_token: None,
                expires_at: None,
            },
            interval_minutes: 15,
            settings: Default::default(),
        },
        at(0),
    );
    c.next_sync_at = Some(at(0));
    c
}

#[tokio::test]
async fn settings_and_pause_are_saved_under_their_own_version_and_pausing_leaves_the_due_index() -> Result<()>
{
    let moto = Moto::start().await?;
    let store = dynamo_store(&moto.config().await, 1).await?;
    let c = connection("acme");
    store.create(&c).await?;
    assert_eq!(store.due(0, at(10), 10).await?.len(), 1);

    let mut paused = c.clone();
    paused.paused_at = Some(at(5));
    paused.next_sync_at = None;
    paused.settings.note_prefix = "[BOT]".into();
    paused.interval_minutes = 60;
    assert_eq!(store.save_settings(&paused).await?, 1);
    assert!(store.due(0, at(100_000), 10).await?.is_empty(), "a paused connection is not due");
    assert!(
        matches!(store.save_settings(&paused).await, Err(StoreError::Conflict)),
        "a stale settings version"
    );
    assert!(!store.claim_slot(&c.tenant_id, &c.connection_id, at(0), at(900)).await?, "its slot is gone");

    // The worker's copy (read before the pause) still saves its state: the versions are separate.
    let mut worker = c.clone();
    worker.status = ConnectionStatus::Synced;
    worker.last_sync_at = Some(at(20));
    assert_eq!(store.save_state(&worker).await?, 1);
    let stored = store.get(&c.tenant_id, &c.connection_id).await?.expect("stored");
    assert_eq!(
        (
            stored.paused_at,
            stored.next_sync_at,
            stored.interval_minutes,
            stored.settings.note_prefix.as_str()
        ),
        (Some(at(5)), None, 60, "[BOT]")
    );
    assert_eq!((stored.status, stored.version, stored.settings_version), (ConnectionStatus::Synced, 1, 1));

    let mut resumed = stored.clone();
    resumed.paused_at = None;
    resumed.next_sync_at = Some(at(30));
    assert_eq!(store.save_settings(&resumed).await?, 2);
    let due = store.due(0, at(30), 10).await?;
    assert_eq!(
        due.iter().map(|d| (d.next_sync_at, d.interval_minutes)).collect::<Vec<_>>(),
        vec![(at(30), 60)]
    );
    let gone = Connection { connection_id: ConnectionId::parse("nope")?, ..resumed };
    assert!(matches!(store.save_settings(&gone).await, Err(StoreError::Conflict)), "never creates an item");
    Ok(())
}

#[tokio::test]
async fn audit_queries_by_record_operation_and_outcome_page_through_filters_without_loss() -> Result<()> {
    let moto = Moto::start().await?;
    let store = dynamo_store(&moto.config().await, 4).await?;
    let (acme, globex) = (TenantId::parse("acme")?, TenantId::parse("globex")?);
    let (ca, cb) = (ConnectionId::parse("conn-a")?, ConnectionId::parse("conn-b")?);
    let r1 = RecordId::parse("r_one")?;
    let mut entries = Vec::new();
    for i in 0..300i64 {
        let (op, outcome) = match i % 10 {
            0 => (Operation::Retry, AuditOutcome::Failure),
            5 => (Operation::Error, AuditOutcome::Rejected),
            _ => (Operation::Pull, AuditOutcome::Success),
        };
        let mut e = AuditEntry::new(acme.clone(), op, outcome, "worker", at(i))
            .connection(if i % 2 == 0 { &ca } else { &cb })
            .detail(json!({ "i": i }));
        if i % 7 == 0 {
            e = e.record(syncbridge::domain::ObjectType::Contacts, &r1);
        }
        entries.push(e);
    }
    entries.push(
        AuditEntry::new(globex.clone(), Operation::Retry, AuditOutcome::Failure, "worker", at(5))
            .connection(&ca)
            .record(syncbridge::domain::ObjectType::Contacts, &r1),
    );
    store.append(&entries).await?;
    let expected = |f: &dyn Fn(&AuditEntry) -> bool| -> Vec<String> {
        let mut v: Vec<&AuditEntry> = entries.iter().filter(|e| e.tenant_id == acme && f(e)).collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.at));
        v.into_iter().map(|e| e.entry_id.clone()).collect()
    };
    let all_pages = |query: AuditQuery| {
        let store = &store;
        let acme = &acme;
        async move {
            let mut q = query;
            let (mut ids, mut calls) = (Vec::new(), 0);
            loop {
                let page = store.query(acme, &q).await?;
                calls += 1;
                assert!(page.items.len() <= q.limit, "never more than the limit");
                ids.extend(page.items.into_iter().map(|e| e.entry_id));
                match page.next {
                    Some(t) => q.page_token = Some(t),
                    None => return Ok::<_, anyhow::Error>((ids, calls)),
                }
            }
        }
    };

    let failures = AuditQuery {
        operations: vec![Operation::Retry, Operation::Error],
        outcomes: vec![AuditOutcome::Failure, AuditOutcome::Rejected],
        limit: 7,
        ..AuditQuery::default()
    };
    let (ids, calls) = all_pages(failures).await?;
    assert_eq!(ids, expected(&|e| e.outcome != AuditOutcome::Success));
    assert_eq!((ids.len(), calls), (60, 9), "60 failures in pages of 7 (the last one short)");

    let by_record = AuditQuery { record: Some(r1.clone()), limit: 5, ..AuditQuery::default() };
    let (ids, _) = all_pages(by_record).await?;
    assert_eq!(ids, expected(&|e| e.record_id.as_ref() == Some(&r1)), "the record index; globex's stays out");
    assert_eq!(ids.len(), 43);

    let record_and_connection = AuditQuery {
        record: Some(r1.clone()),
        connection: Some(ca.clone()),
        operations: vec![Operation::Pull],
        from: Some(at(100)),
        to: Some(at(200)),
        limit: 3,
        ..AuditQuery::default()
    };
    let (ids, _) = all_pages(record_and_connection).await?;
    assert_eq!(
        ids,
        expected(&|e| {
            e.record_id.as_ref() == Some(&r1)
                && e.connection_id.as_ref() == Some(&ca)
                && e.operation == Operation::Pull
                && (at(100)..=at(200)).contains(&e.at)
        })
    );
    assert!(!ids.is_empty());

    let connection_outcome = AuditQuery {
        connection: Some(cb.clone()),
        outcomes: vec![AuditOutcome::Rejected],
        limit: 50,
        ..AuditQuery::default()
    };
    let (ids, _) = all_pages(connection_outcome).await?;
    assert_eq!(
        ids,
        expected(&|e| e.connection_id.as_ref() == Some(&cb) && e.outcome == AuditOutcome::Rejected)
    );
    assert_eq!(ids.len(), 30);

    // Tokens are bound to the tenant and the partition queried.
    let first = store
        .query(&acme, &AuditQuery { record: Some(r1.clone()), limit: 1, ..AuditQuery::default() })
        .await?;
    let token = first.next.expect("more entries");
    let stolen = AuditQuery {
        record: Some(r1.clone()),
        limit: 1,
        page_token: Some(token.clone()),
        ..AuditQuery::default()
    };
    assert!(matches!(store.query(&globex, &stolen).await, Err(StoreError::InvalidPageToken)));
    let elsewhere = AuditQuery {
        connection: Some(ca.clone()),
        limit: 1,
        page_token: Some(token),
        ..AuditQuery::default()
    };
    assert!(matches!(store.query(&acme, &elsewhere).await, Err(StoreError::InvalidPageToken)));
    let forged =
        AuditQuery { limit: 1, page_token: Some("eyJwayI6IlQjZ2xvYmV4In0".into()), ..AuditQuery::default() };
    assert!(matches!(store.query(&acme, &forged).await, Err(StoreError::InvalidPageToken)));
    Ok(())
}
