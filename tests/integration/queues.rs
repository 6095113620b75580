//! The push queue and conflict queue stores against a real moto server: idempotent creation,
//! conditional saves, filters and paging in queue order (through the `push_queue` index), tenant
//! isolation.

use anyhow::Result;
use chrono::{TimeZone, Utc};
use serde_json::json;
use syncbridge::domain::policy::Strategy;
use syncbridge::domain::push::{ConflictItem, conflict_id, new_push_item};
use syncbridge::domain::{
    ConflictStatus, ConnectionId, ExternalId, IdempotencyKey, ObjectType, Priority, PushAction, PushItem,
    PushStatus, RecordId, Resolution, TenantId,
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

/// Every item the query lists, following its page tokens.
async fn all_pages(store: &dyn PushStore, tenant: &TenantId, query: PushQuery) -> Result<Vec<PushItem>> {
    let mut items = Vec::new();
    let mut token = None;
    loop {
        let page = store.list(tenant, &PushQuery { page_token: token.take(), ..query.clone() }).await?;
        assert!(page.items.len() <= query.limit, "a page holds at most its limit");
        items.extend(page.items);
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok(items),
        }
    }
}

fn ids(items: &[PushItem]) -> Vec<String> {
    items.iter().map(|p| p.push_id.clone()).collect()
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

#[tokio::test]
async fn the_push_queue_reads_highest_priority_first_then_oldest_across_pages_and_filters() -> Result<()> {
    let moto = Moto::start().await?;
    let dynamo = dynamo_store(&moto.config().await, 4).await?;
    let store: &dyn PushStore = &dynamo;
    let tenant = TenantId::parse("acme")?;
    let priorities = [Priority::Low, Priority::Normal, Priority::High, Priority::Critical];
    let mut made = Vec::new();
    for i in 0..12i64 {
        let mut p = push("acme", if i % 3 == 0 { "c2" } else { "c1" }, &format!("k-{i}"));
        p.priority = priorities[(i as usize * 7) % 4];
        p.created_at = now() + chrono::Duration::seconds(i);
        p.expires_at = p.created_at + chrono::Duration::days(7);
        assert!(store.create(&p).await?);
        made.push(p);
    }
    store.create(&push("globex", "c1", "k-0")).await?;
    let in_queue_order = |keep: &dyn Fn(&PushItem) -> bool| {
        let mut v: Vec<PushItem> = made.iter().filter(|p| keep(p)).cloned().collect();
        v.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.created_at.cmp(&b.created_at)));
        ids(&v)
    };

    let pending =
        PushQuery { status: Some(PushStatus::Pending), as_of: Some(now()), limit: 2, ..PushQuery::default() };
    let listed = all_pages(store, &tenant, pending.clone()).await?;
    assert_eq!(ids(&listed), in_queue_order(&|_| true), "one order across six pages of two");
    assert_eq!(listed[0].priority, Priority::Critical);

    // The connection is a filter: pages are cut at the limit and go on after the last item given.
    let c1 = ConnectionId::parse("c1")?;
    let query = PushQuery { connection: Some(c1.clone()), limit: 3, ..pending.clone() };
    assert_eq!(ids(&all_pages(store, &tenant, query).await?), in_queue_order(&|p| p.connection_id == c1));

    // Approved items of one connection, in the order the worker pushes them.
    let mut approved = Vec::new();
    for p in made.iter().filter(|p| p.connection_id == c1).take(4) {
        let mut stored = store.get(&tenant, &p.push_id).await?.expect("stored");
        stored.decide(true, "user:ann", now())?;
        store.save(&stored).await?;
        approved.push(p.push_id.clone());
    }
    let worker = PushQuery {
        connection: Some(c1.clone()),
        status: Some(PushStatus::Approved),
        limit: 200,
        ..PushQuery::default()
    };
    assert_eq!(
        ids(&all_pages(store, &tenant, worker).await?),
        in_queue_order(&|p| approved.contains(&p.push_id))
    );
    let still = all_pages(store, &tenant, pending.clone()).await?;
    assert_eq!(ids(&still), in_queue_order(&|p| !approved.contains(&p.push_id)));

    // Expiry is computed from the time asked about: items created in the first 5.5 s have expired.
    let later = now() + chrono::Duration::days(7) + chrono::Duration::milliseconds(5_500);
    let open = all_pages(store, &tenant, PushQuery { as_of: Some(later), ..pending.clone() }).await?;
    let expired = all_pages(
        store,
        &tenant,
        PushQuery { status: Some(PushStatus::Expired), as_of: Some(later), ..pending.clone() },
    )
    .await?;
    let young = |p: &PushItem| p.created_at >= now() + chrono::Duration::seconds(6);
    assert_eq!(ids(&open), in_queue_order(&|p| young(p) && !approved.contains(&p.push_id)));
    assert_eq!(ids(&expired), in_queue_order(&|p| !young(p) && !approved.contains(&p.push_id)));

    // A superseded item leaves the pending group for its own; without a status, groups in order.
    let gone = &still[0].push_id;
    let mut stored = store.get(&tenant, gone).await?.expect("stored");
    stored.supersede("p_newer", now())?;
    store.save(&stored).await?;
    let superseded = PushQuery { status: Some(PushStatus::Superseded), limit: 50, ..PushQuery::default() };
    assert_eq!(ids(&all_pages(store, &tenant, superseded).await?), vec![gone.clone()]);
    let everything = all_pages(store, &tenant, PushQuery { limit: 5, ..PushQuery::default() }).await?;
    let statuses: Vec<PushStatus> = everything.iter().map(|p| p.status).collect();
    let mut grouped = statuses.clone();
    grouped.dedup();
    assert_eq!(grouped, vec![PushStatus::Pending, PushStatus::Approved, PushStatus::Superseded]);
    assert_eq!(everything.len(), 12, "another tenant's item never shows");

    // A page token names its tenant: another tenant cannot continue with it.
    let page = store.list(&tenant, &PushQuery { limit: 2, ..PushQuery::default() }).await?;
    let token = page.next.expect("more pages");
    let globex = PushQuery { page_token: Some(token), limit: 2, ..PushQuery::default() };
    assert!(matches!(
        store.list(&TenantId::parse("globex")?, &globex).await,
        Err(StoreError::InvalidPageToken)
    ));
    Ok(())
}
