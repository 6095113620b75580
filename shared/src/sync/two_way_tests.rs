//! The two-way engine end to end on in-memory stores and an in-memory provider account: pushes
//! with approvals, conflicts by policy and by a person, echo suppression, exactly-once effects.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::push::{self, PushRequest};
use super::worker::{JobOutcome, run_job};
use super::{Deadline, Deps};
use crate::adapters::memory::{ManualClock, MemoryBus, MemoryStore};
use crate::adapters::memory_provider::MemoryProvider;
use crate::domain::policy::ConflictPolicy;
use crate::domain::record::Fields;
use crate::domain::{
    CanonicalRecord, ConflictStatus, Connection, ConnectionSettings, ConnectionStatus, Credentials,
    DomainEvent, IdempotencyKey, Job, JobId, JobReason, NewConnection, ObjectType, Priority, Provider,
    PushAction, PushStatus, Resolution, RunCounts, TenantId,
};
use crate::ports::{ConflictQuery, PushQuery};

struct World {
    deps: Deps,
    store: Arc<MemoryStore>,
    bus: Arc<MemoryBus>,
    crm: MemoryProvider,
    clock: Arc<ManualClock>,
    conn: Connection,
    /// The source local edits are queued with.
    source: Option<crate::domain::Source>,
    jobs: u32,
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2027-01-15T09:00:00Z").unwrap().with_timezone(&Utc)
}

impl World {
    fn new(settings: ConnectionSettings) -> Self {
        let crm = MemoryProvider::new();
        let store = Arc::new(MemoryStore::new());
        let bus = Arc::new(MemoryBus::new());
        let clock = Arc::new(ManualClock::new(now()));
        let deps = crate::adapters::memory::TestDeps::new(store.clone())
            .bus(bus.clone())
            .providers(Arc::new(crm.clone()))
            .clock(clock.clone())
            .build();
        let conn = Connection::new(
            TenantId::parse("acme").unwrap(),
            NewConnection {
                provider: Provider::Hubspot,
                base_url: "http://127.0.0.1:1".into(),
                credentials: Credentials {
                    access_token: SecretString::from("t"),
                    refresh_token: None,
                    expires_at: None,
                },
                interval_minutes: 15,
                settings,
            },
            now(),
        );
        store.put_connection(conn.clone());
        Self { deps, store, bus, crm, clock, conn, source: None, jobs: 0 }
    }

    async fn sync(&mut self) -> RunCounts {
        self.clock.advance(chrono::Duration::minutes(15));
        self.jobs += 1;
        let job = Job::sync(
            self.conn.tenant_id.clone(),
            self.conn.connection_id.clone(),
            JobId::parse(format!("job-{}", self.jobs)).unwrap(),
            JobReason::Schedule,
            now(),
        );
        match run_job(&self.deps, &job, Deadline::after(std::time::Duration::from_secs(60))).await {
            Ok(JobOutcome::Completed { counts, .. }) => counts,
            other => panic!("job did not complete: {other:?}"),
        }
    }

    fn record(&self, external: &str) -> CanonicalRecord {
        self.store
            .records_of(&self.conn.tenant_id, &self.conn.connection_id)
            .into_iter()
            .find(|r| r.external_id.as_str() == external)
            .expect("record pulled")
    }

    async fn status(&self) -> ConnectionStatus {
        self.deps
            .connections
            .get(&self.conn.tenant_id, &self.conn.connection_id)
            .await
            .unwrap()
            .unwrap()
            .status
    }

    async fn queue(&self, action: PushAction, record: Option<&str>, fields: Fields, key: &str) -> String {
        let request = PushRequest {
            action,
            priority: Priority::Normal,
            record_id: record.map(|e| self.record(e).record_id),
            fields,
            idempotency_key: IdempotencyKey::parse(key).unwrap(),
            source: self.source,
        };
        let (item, _) = push::queue(&self.deps, &self.conn, request, "user:ann").await.unwrap();
        item.push_id
    }

    async fn approve(&self, id: &str) {
        let out =
            push::decide(&self.deps, &self.conn.tenant_id, &[id.to_owned()], true, "user:ann").await.unwrap();
        assert!(out[0].1.is_ok(), "{:?}", out[0].1);
    }

    async fn open_conflicts(&self) -> Vec<crate::domain::ConflictItem> {
        let q = ConflictQuery { status: Some(ConflictStatus::Open), ..ConflictQuery::default() };
        self.deps.conflicts.list(&self.conn.tenant_id, &q).await.unwrap().items
    }
}

fn f(pairs: &[(&str, Value)]) -> Fields {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

#[tokio::test]
async fn an_approved_local_edit_is_pushed_once_and_never_bounces_back() {
    let mut w = World::new(ConnectionSettings::default());
    w.crm.edit(ObjectType::Contacts, "c1", &[("email", json!("a@x.io")), ("phone", json!("1"))]);
    assert_eq!(w.sync().await.created, 1);

    let id = w.queue(PushAction::UpdateRecord, Some("c1"), f(&[("phone", json!("2"))]), "edit-1").await;
    assert_eq!(w.record("c1").fields["phone"], json!("2"), "a local edit changes the local side at once");
    let pending = w.deps.pushes.get(&w.conn.tenant_id, &id).await.unwrap().unwrap();
    assert_eq!(pending.status, PushStatus::Pending);
    assert_eq!(w.sync().await.pushed, 0, "nothing goes out before approval");
    assert_eq!(w.crm.fields("c1").unwrap()["phone"], json!("1"));

    w.approve(&id).await;
    let pushed = w.sync().await;
    assert_eq!(pushed.pushed, 1);
    assert_eq!(w.crm.fields("c1").unwrap()["phone"], json!("2"));
    assert_eq!(w.record("c1").base["phone"], json!("2"), "the pushed value is the new base");

    // Ping-pong: many more syncs write nothing anywhere.
    for _ in 0..5 {
        let c = w.sync().await;
        assert_eq!((c.updated, c.pushed, c.conflicts_parked), (0, 0, 0), "{c:?}");
    }
    assert_eq!(w.crm.writes(), (0, 1, 0));
    let done = w.deps.pushes.get(&w.conn.tenant_id, &id).await.unwrap().unwrap();
    assert_eq!(done.status, PushStatus::Completed);
    let completed = w.bus.events().iter().filter(|e| matches!(e, DomainEvent::PushCompleted { .. })).count();
    assert_eq!(completed, 1);
}

#[tokio::test]
async fn manual_conflicts_are_parked_and_a_resolution_applies_to_both_sides() {
    let mut w =
        World::new(ConnectionSettings { conflict_policy: ConflictPolicy::manual(), ..Default::default() });
    w.crm.edit(ObjectType::Contacts, "c1", &[("phone", json!("1")), ("email", json!("a@x.io"))]);
    w.sync().await;
    w.queue(PushAction::UpdateRecord, Some("c1"), f(&[("phone", json!("local"))]), "edit-1").await;
    w.crm.edit(ObjectType::Contacts, "c1", &[("phone", json!("remote")), ("email", json!("b@x.io"))]);

    let c = w.sync().await;
    assert_eq!((c.updated, c.conflicts_parked), (1, 1));
    let record = w.record("c1");
    assert_eq!(record.fields["email"], json!("b@x.io"), "the one-sided change flows in");
    assert_eq!(record.fields["phone"], json!("local"), "the conflict keeps the local value");
    assert_eq!(w.status().await, ConnectionStatus::Conflict);
    let open = w.open_conflicts().await;
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].local.clone(), open[0].remote.clone()),
        (Some(json!("local")), Some(json!("remote")))
    );
    assert_eq!(open[0].base, Some(json!("1")));

    // Detected again by the next pull: still one conflict, announced once.
    w.crm.edit(ObjectType::Contacts, "c1", &[("email", json!("c@x.io"))]);
    assert_eq!(w.sync().await.conflicts_parked, 0);
    let announced =
        w.bus.events().iter().filter(|e| matches!(e, DomainEvent::ConflictDetected { .. })).count();
    assert_eq!(announced, 1);

    let ids: Vec<String> = open.iter().map(|c| c.conflict_id.clone()).collect();
    let out =
        push::resolve(&w.deps, &w.conn.tenant_id, &ids, Resolution::UseLocal, "user:ann").await.unwrap();
    assert!(out[0].1.is_ok());
    assert_eq!(w.status().await, ConnectionStatus::Synced);
    let c = w.sync().await;
    assert_eq!(c.pushed, 1);
    assert_eq!(w.crm.fields("c1").unwrap()["phone"], json!("local"));
    assert!(w.open_conflicts().await.is_empty());
    let again = w.sync().await;
    assert_eq!((again.updated, again.pushed, again.conflicts_parked), (0, 0, 0));
}

#[tokio::test]
async fn last_write_wins_takes_the_newer_side_and_pushes_when_it_is_ours() {
    let mut w = World::new(ConnectionSettings {
        conflict_policy: ConflictPolicy::last_write_wins(),
        ..Default::default()
    });
    w.crm.edit(ObjectType::Contacts, "c1", &[("phone", json!("1"))]);
    w.sync().await;
    // Remote edit first (its stamp is in 2027-01-15 + a few seconds), local edit later (clock 09:00
    // the same day, but the memory provider's stamps are from 2027-01-15T08:00Z + seq).
    w.crm.edit(ObjectType::Contacts, "c1", &[("phone", json!("remote"))]);
    w.queue(PushAction::UpdateRecord, Some("c1"), f(&[("phone", json!("local"))]), "edit-1").await;
    let c = w.sync().await;
    assert_eq!(c.conflicts_decided, 1);
    let winner = w.record("c1").fields["phone"].clone();
    let local_newer = w.record("c1").local_modified_at > w.record("c1").remote_modified_at;
    assert_eq!(winner, if local_newer { json!("local") } else { json!("remote") });
    if local_newer {
        assert_eq!(c.pushed, 1, "the policy's push goes out in the same job");
        assert_eq!(w.crm.fields("c1").unwrap()["phone"], json!("local"));
    }
    assert!(w.open_conflicts().await.is_empty());
}

#[tokio::test]
async fn a_note_whose_write_answer_was_lost_is_created_once() {
    let mut w = World::new(ConnectionSettings {
        auto_push: [(PushAction::CreateNote, true)].into(),
        ..Default::default()
    });
    w.crm.edit(ObjectType::Contacts, "c1", &[("email", json!("a@x.io"))]);
    w.sync().await;
    let id = w
        .queue(PushAction::CreateNote, Some("c1"), f(&[("body", json!("Met on Tuesday"))]), "summary-1")
        .await;
    // Queueing the same summary again is the same item.
    assert_eq!(
        w.queue(PushAction::CreateNote, Some("c1"), f(&[("body", json!("Met on Tuesday"))]), "summary-1")
            .await,
        id
    );

    w.crm.lose_next_write_answers(1);
    w.jobs += 1;
    let job = Job::sync(
        w.conn.tenant_id.clone(),
        w.conn.connection_id.clone(),
        JobId::parse(format!("job-{}", w.jobs)).unwrap(),
        JobReason::Push,
        now(),
    );
    let failed = run_job(&w.deps, &job, Deadline::after(std::time::Duration::from_secs(60))).await;
    assert!(failed.is_err_and(|e| e.is_retryable()), "the job is retried");
    // The redelivery pushes again with the same idempotency key.
    let c = run_job(&w.deps, &job, Deadline::after(std::time::Duration::from_secs(60))).await.unwrap();
    assert!(matches!(c, JobOutcome::Completed { counts, .. } if counts.pushed == 1));
    assert_eq!(w.crm.writes().0, 1, "one note at the provider");
    let notes = w.crm.live(ObjectType::Notes);
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].1["body"], json!("[ARIA] Met on Tuesday"));
    assert_eq!(notes[0].1["contact_ids"], json!(["c1"]));
    // A second redelivery of the finished job does nothing.
    assert_eq!(
        run_job(&w.deps, &job, Deadline::after(std::time::Duration::from_secs(60))).await.unwrap(),
        JobOutcome::AlreadyDone
    );
    let items = w.deps.pushes.list(&w.conn.tenant_id, &PushQuery::default()).await.unwrap().items;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].status, PushStatus::Completed);
}

#[tokio::test]
async fn rejecting_a_local_edit_puts_the_agreed_value_back() {
    let mut w = World::new(ConnectionSettings::default());
    w.crm.edit(ObjectType::Contacts, "c1", &[("phone", json!("1"))]);
    w.sync().await;
    let id = w.queue(PushAction::UpdateField, Some("c1"), f(&[("phone", json!("2"))]), "score-1").await;
    let out =
        push::decide(&w.deps, &w.conn.tenant_id, std::slice::from_ref(&id), false, "user:ann").await.unwrap();
    assert_eq!(out[0].1.as_ref().map(|i| i.status).ok(), Some(PushStatus::Rejected));
    assert_eq!(w.record("c1").fields["phone"], json!("1"));
    assert_eq!(w.sync().await.pushed, 0);
    assert_eq!(w.crm.writes(), (0, 0, 0));
    // A decided item cannot be decided again.
    let again = push::decide(&w.deps, &w.conn.tenant_id, &[id], true, "user:ann").await.unwrap();
    assert!(again[0].1.is_err());
}

#[tokio::test]
async fn records_written_before_a_crash_are_announced_when_the_job_is_redelivered() {
    let mut w = World::new(ConnectionSettings::default());
    for i in 0..3 {
        w.crm.edit(ObjectType::Contacts, &format!("c{i}"), &[("email", json!(format!("p{i}@x.io")))]);
    }
    // The bus fails after the records are written: the job fails and is redelivered.
    w.bus.set_failing(true);
    let job = Job::sync(
        w.conn.tenant_id.clone(),
        w.conn.connection_id.clone(),
        JobId::parse("job-crash").unwrap(),
        JobReason::Schedule,
        now(),
    );
    let deadline = || Deadline::after(std::time::Duration::from_secs(60));
    assert!(run_job(&w.deps, &job, deadline()).await.is_err_and(|e| e.is_retryable()));
    assert_eq!(
        w.store.records_of(&w.conn.tenant_id, &w.conn.connection_id).len(),
        3,
        "written before the crash"
    );
    assert!(w.bus.events().is_empty());

    w.bus.set_failing(false);
    let redelivered = run_job(&w.deps, &job, deadline()).await.unwrap();
    assert!(
        matches!(redelivered, JobOutcome::Completed { counts, .. } if counts.created == 0 && counts.unchanged == 3)
    );
    let announced: Vec<(String, u64)> = w
        .bus
        .events()
        .iter()
        .filter_map(|e| match e {
            DomainEvent::RecordChanged { change, external_id, version, .. } => {
                Some((format!("{}:{change:?}", external_id), *version))
            }
            _ => None,
        })
        .collect();
    assert_eq!(announced, vec![("c0:Created".into(), 1), ("c1:Created".into(), 1), ("c2:Created".into(), 1)]);

    // The finished job cleared the mark: a later sync of the same records announces nothing.
    let later = w.sync().await;
    assert_eq!(later.unchanged, 0, "the cursor moved past them");
    let record_events =
        w.bus.events().iter().filter(|e| matches!(e, DomainEvent::RecordChanged { .. })).count();
    assert_eq!(record_events, 3);
    let conn = w.deps.connections.get(&w.conn.tenant_id, &w.conn.connection_id).await.unwrap().unwrap();
    assert_eq!(conn.inflight_since, None);
}

/// The state a job leaves, for comparing runs: local records (fields and base), provider records,
/// push item statuses and open conflicts.
type Snapshot = (Vec<(String, Fields, Fields)>, Vec<(String, Fields)>, Vec<(String, PushStatus)>, usize);

async fn snapshot(w: &World) -> Snapshot {
    let mut records: Vec<_> = w
        .store
        .records_of(&w.conn.tenant_id, &w.conn.connection_id)
        .into_iter()
        .map(|r| (format!("{}:{}", r.object, r.external_id), r.fields, r.base))
        .collect();
    records.sort_by(|a, b| a.0.cmp(&b.0));
    let mut remote = w.crm.live(ObjectType::Contacts);
    remote.extend(w.crm.live(ObjectType::Notes));
    let mut pushes: Vec<_> = w
        .deps
        .pushes
        .list(&w.conn.tenant_id, &PushQuery { limit: 100, ..PushQuery::default() })
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| (p.idempotency_key.to_string(), p.status))
        .collect();
    pushes.sort_by(|a, b| a.0.cmp(&b.0));
    (records, remote, pushes, w.open_conflicts().await.len())
}

/// A world with pulled contacts, then a remote edit, an approved local edit, a conflict and a note
/// waiting: the next job has every kind of step to do.
async fn busy_world() -> World {
    let mut w = World::new(ConnectionSettings {
        conflict_policy: ConflictPolicy::manual(),
        auto_push: [(PushAction::CreateNote, true), (PushAction::UpdateRecord, true)].into(),
        ..Default::default()
    });
    for i in 0..3 {
        w.crm.edit(
            ObjectType::Contacts,
            &format!("c{i}"),
            &[("phone", json!("1")), ("email", json!(format!("{i}@x.io")))],
        );
    }
    w.sync().await;
    w.crm.edit(ObjectType::Contacts, "c0", &[("email", json!("new@x.io"))]);
    w.crm.edit(ObjectType::Contacts, "c1", &[("phone", json!("remote"))]);
    w.crm.edit(ObjectType::Contacts, "c3", &[("email", json!("3@x.io"))]);
    w.queue(PushAction::UpdateRecord, Some("c1"), f(&[("phone", json!("local"))]), "edit-c1").await;
    w.queue(PushAction::UpdateRecord, Some("c2"), f(&[("phone", json!("2"))]), "edit-c2").await;
    w.queue(PushAction::CreateNote, Some("c0"), f(&[("body", json!("summary"))]), "note-c0").await;
    w
}

#[tokio::test]
async fn a_crash_at_every_step_of_a_job_ends_in_the_same_state_as_an_uninterrupted_run() {
    let mut clean = busy_world().await;
    let calls_before = clean.store.calls();
    clean.sync().await;
    let steps = clean.store.calls() - calls_before;
    let expected = snapshot(&clean).await;
    assert!(steps > 10, "the job has many steps ({steps})");
    assert_eq!(expected.3, 1, "the job parks one conflict");
    assert!(expected.2.iter().all(|(_, s)| *s == PushStatus::Completed), "{:?}", expected.2);

    for crash_at in 0..steps {
        let mut w = busy_world().await;
        w.store.crash_after(crash_at as u32);
        w.jobs += 1;
        let job = Job::sync(
            w.conn.tenant_id.clone(),
            w.conn.connection_id.clone(),
            JobId::parse(format!("job-{}", w.jobs)).unwrap(),
            JobReason::Schedule,
            now(),
        );
        let deadline = || super::Deadline::after(std::time::Duration::from_secs(60));
        let crashed = run_job(&w.deps, &job, deadline()).await;
        w.store.recover();
        assert!(crashed.is_err(), "step {crash_at}: the injected crash fails the job");
        // SQS delivers the same job again.
        let again = run_job(&w.deps, &job, deadline()).await;
        assert!(again.is_ok(), "step {crash_at}: the redelivery completes: {again:?}");
        assert_eq!(snapshot(&w).await, expected, "step {crash_at}: a different end state");
        assert_eq!(w.crm.writes().0, 1, "step {crash_at}: one note");
    }
}

#[tokio::test]
async fn a_stronger_source_wins_a_conflict_and_a_weaker_one_loses_it() {
    use crate::domain::Source;
    let mut w = World::new(ConnectionSettings::default());
    w.crm.edit(ObjectType::Contacts, "c1", &[("phone", json!("1")), ("job_title", json!("CTO"))]);
    w.sync().await;
    w.source = Some(Source::UserStated);
    w.queue(PushAction::UpdateRecord, Some("c1"), f(&[("phone", json!("stated"))]), "edit-1").await;
    w.source = Some(Source::Web);
    w.queue(PushAction::UpdateRecord, Some("c1"), f(&[("job_title", json!("VP (from the web)"))]), "edit-2")
        .await;
    assert_eq!(w.record("c1").sources.len(), 2);
    w.crm.edit(ObjectType::Contacts, "c1", &[("phone", json!("crm")), ("job_title", json!("CEO"))]);
    let c = w.sync().await;
    assert_eq!(c.conflicts_decided, 2);
    assert_eq!(w.record("c1").fields["phone"], json!("stated"), "user_stated beats crm");
    assert_eq!(w.record("c1").fields["job_title"], json!("CEO"), "web loses to crm");
    assert_eq!(w.crm.fields("c1").unwrap()["phone"], json!("stated"));
    assert!(w.record("c1").sources.is_empty(), "agreed values carry no source");
    let decided: Vec<String> = w
        .store
        .audit_entries()
        .iter()
        .filter(|e| e.operation == crate::domain::Operation::ConflictResolved)
        .filter_map(|e| e.detail.get("strategy").and_then(Value::as_str).map(str::to_owned))
        .collect();
    assert_eq!(decided, vec!["source_hierarchy", "source_hierarchy"]);
}
