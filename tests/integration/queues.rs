//! The push queue and conflict queue stores against a real moto server: idempotent creation,
//! conditional saves, filters and paging, tenant isolation.

use anyhow::Result;
use chrono::{TimeZone, Utc};
use serde_json::json;
use syncbridge::domain::policy::Strategy;
use syncbridge::domain::push::{ConflictItem, conflict_id, new_push_item};
use syncbridge::domain::{
    ConflictStatus, ConnectionId, ExternalId, IdempotencyKey, ObjectType, Priority, PushAction, PushStatus,
    RecordId, Resolution, TenantId,
};
use syncbridge::ports::{ConflictQuery, ConflictStore, PushQuery, PushStore, StoreError};

use crate::aws_support::{Moto, dynamo_store};

fn now() -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_790_000_000, 0).unwrap()
}

fn push(tenant: &str, connection: &str, key: &str) -> syncbridge::domain::PushItem {
    new_push_item(
        TenantId::parse(tenant).unwrap(),
        ConnectionId::parse(connection).unwrap(),
        PushAction::CreateNote,
        Priority::High,
        ObjectType::Notes,
        None,
        [("body".to_owned(), json!("[ARIA] summary"))].into(),
        IdempotencyKey::parse(key).unwrap(),
        "user:ann",
        false,
        now(),
    )
}

fn conflict(tenant: &str, record: &str, field: &str, local: &str, remote: &str) -> ConflictItem {
    let record_id = RecordId::parse(record).unwrap();
    ConflictItem {
        tenant_id: TenantId::parse(tenant).unwrap(),
        connection_id: ConnectionId::parse("c1").unwrap(),
        conflict_id: conflict_id(&record_id, field),
        record_id,
        object: ObjectType::Contacts,
        external_id: ExternalId::parse("101").unwrap(),
        field: field.to_owned(),
        base: Some(json!("base")),
        local: Some(json!(local)),
        remote: Some(json!(remote)),
        suggested: Resolution::UseRemote,
        suggested_by: Strategy::LastWriteWins,
        status: ConflictStatus::Open,
        detected_at: now(),
        resolution: None,
        resolved_by: None,
        resolved_at: None,
        version: 0,
    }
}

#[tokio::test]
async fn push_items_are_created_once_saved_conditionally_and_listed_per_tenant() -> Result<()> {
    let moto = Moto::start().await?;
    let dynamo = dynamo_store(&moto.config().await, 4).await?;
    let store: &dyn PushStore = &dynamo;
    let first = push("acme", "c1", "summary-1");
    assert!(store.create(&first).await?);
    assert!(!store.create(&push("acme", "c1", "summary-1")).await?, "the same key is the same item");
    for i in 2..=5 {
        store.create(&push("acme", if i % 2 == 0 { "c1" } else { "c2" }, &format!("summary-{i}"))).await?;
    }
    store.create(&push("globex", "c1", "summary-1")).await?;

    let tenant = TenantId::parse("acme")?;
    let mut stored = store.get(&tenant, &first.push_id).await?.expect("stored");
    assert_eq!(
        (stored.status, stored.version, stored.fields.clone()),
        (PushStatus::Pending, 1, first.fields.clone())
    );
    stored.decide(true, "user:ann", now())?;
    let stale = stored.clone();
    stored.version = store.save(&stored).await?;
    assert_eq!(stored.version, 2);
    assert!(matches!(store.save(&stale).await, Err(StoreError::Conflict)), "a stale version loses");

    let approved = store
        .list(&tenant, &PushQuery { status: Some(PushStatus::Approved), limit: 50, ..PushQuery::default() })
        .await?;
    assert_eq!(
        approved.items.iter().map(|p| p.push_id.clone()).collect::<Vec<_>>(),
        vec![first.push_id.clone()]
    );

    // Paging by connection: c1 holds three of acme's five items.
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let query = PushQuery {
            connection: Some(ConnectionId::parse("c1")?),
            limit: 2,
            page_token: token.take(),
            ..PushQuery::default()
        };
        let page = store.list(&tenant, &query).await?;
        seen.extend(page.items.into_iter().map(|p| p.push_id));
        match page.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3);
    let globex = TenantId::parse("globex")?;
    assert!(store.get(&globex, &first.push_id).await?.is_none(), "one tenant's id names nothing for another");
    let theirs = store.get(&globex, &push("globex", "c1", "summary-1").push_id).await?;
    assert!(theirs.is_some_and(|p| p.status == PushStatus::Pending), "the other tenant's item is its own");
    assert!(matches!(
        store.list(&tenant, &PushQuery { page_token: Some("forged".into()), ..PushQuery::default() }).await,
        Err(StoreError::InvalidPageToken)
    ));
    Ok(())
}

#[tokio::test]
async fn conflicts_are_stored_once_per_record_field_and_reopened_only_when_values_move() -> Result<()> {
    let moto = Moto::start().await?;
    let dynamo = dynamo_store(&moto.config().await, 4).await?;
    let store: &dyn ConflictStore = &dynamo;
    let tenant = TenantId::parse("acme")?;
    let c = conflict("acme", "r1", "phone", "l1", "r1");
    assert!(store.detected(&c).await?);
    assert!(!store.detected(&c).await?, "the same conflict again changes nothing");
    store.detected(&conflict("acme", "r1", "email", "a", "b")).await?;
    store.detected(&conflict("acme", "r2", "phone", "x", "y")).await?;

    let phone = store
        .list(&tenant, &ConflictQuery { field: Some("phone".into()), limit: 50, ..ConflictQuery::default() })
        .await?;
    assert_eq!(phone.items.len(), 2);

    let mut stored = store.get(&tenant, &c.conflict_id).await?.expect("stored");
    assert_eq!(stored.version, 1);
    stored.status = ConflictStatus::Resolved;
    stored.resolution = Some(Resolution::Skip);
    stored.version = store.save(&stored).await?;
    assert!(!store.detected(&c).await?, "a skipped conflict with the same values stays resolved");
    let moved = conflict("acme", "r1", "phone", "l1", "r2");
    assert!(store.detected(&moved).await?, "a new remote value reopens it");
    let reopened = store.get(&tenant, &c.conflict_id).await?.expect("stored");
    assert_eq!(
        (reopened.status, reopened.remote.clone(), reopened.version),
        (ConflictStatus::Open, Some(json!("r2")), 3)
    );
    let open = store
        .list(
            &tenant,
            &ConflictQuery { status: Some(ConflictStatus::Open), limit: 50, ..ConflictQuery::default() },
        )
        .await?;
    assert_eq!(open.items.len(), 3);
    assert!(store.get(&TenantId::parse("globex")?, &c.conflict_id).await?.is_none());
    Ok(())
}
