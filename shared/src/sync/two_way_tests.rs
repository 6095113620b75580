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
    DomainEvent, IdempotencyKey, Job, JobId, JobReason, NewConnection, ObjectType, Operation, Priority,
    Provider, PushAction, PushItem, PushStatus, Resolution, RunCounts, TenantId,
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
        Self::of(Provider::Hubspot, settings)
    }

    fn of(provider: Provider, settings: ConnectionSettings) -> Self {
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
                provider,
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
        self.record_of(ObjectType::Contacts, external)
    }

    fn record_of(&self, object: ObjectType, external: &str) -> CanonicalRecord {
        self.store
            .records_of(&self.conn.tenant_id, &self.conn.connection_id)
            .into_iter()
            .find(|r| r.object == object && r.external_id.as_str() == external)
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
        self.queue_at(Priority::Normal, action, record, fields, key).await
    }

    async fn queue_at(
        &self,
        priority: Priority,
        action: PushAction,
        record: Option<&str>,
        fields: Fields,
        key: &str,
    ) -> String {
        let request = PushRequest {
            action,
            object: None,
            priority,
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

    async fn item(&self, id: &str) -> PushItem {
        self.deps.pushes.get(&self.conn.tenant_id, id).await.unwrap().unwrap()
    }

    /// Audit entries saying an item was superseded, as `(push_id, superseded_by)`.
    fn superseded_audits(&self) -> Vec<(String, String)> {
        self.store
            .audit_entries()
            .iter()
            .filter(|e| e.operation == Operation::Push && e.detail["status"] == "superseded")
            .map(|e| {
                (
                    e.detail["push_id"].as_str().unwrap().to_owned(),
                    e.detail["superseded_by"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
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

#[tokio::test]
async fn a_newer_edit_of_the_same_fields_supersedes_the_older_one_which_is_never_pushed() {
    let mut w = World::new(ConnectionSettings::default());
    w.crm.edit(ObjectType::Contacts, "c1", &[("phone", json!("1")), ("email", json!("a@x.io"))]);
    w.sync().await;
    let both = f(&[("phone", json!("2")), ("email", json!("b@x.io"))]);
    let first = w.queue(PushAction::UpdateRecord, Some("c1"), both, "edit-1").await;
    let second = w.queue(PushAction::UpdateRecord, Some("c1"), f(&[("phone", json!("3"))]), "edit-2").await;
    assert_eq!(w.item(&first).await.status, PushStatus::Pending, "its email is still its own");
    let carriers = w.record("c1").pending_push;
    assert_eq!((carriers["email"].as_str(), carriers["phone"].as_str()), (first.as_str(), second.as_str()));

    let third =
        w.queue(PushAction::UpdateRecord, Some("c1"), f(&[("email", json!("c@x.io"))]), "edit-3").await;
    let superseded = w.item(&first).await;
    assert_eq!(superseded.status, PushStatus::Superseded);
    assert_eq!(superseded.superseded_by.as_deref(), Some(third.as_str()));
    assert_eq!(w.superseded_audits(), vec![(first.clone(), third.clone())]);
    let late = push::decide(&w.deps, &w.conn.tenant_id, std::slice::from_ref(&first), true, "user:ann").await;
    assert!(late.unwrap()[0].1.is_err(), "a superseded item cannot be approved");

    w.approve(&second).await;
    w.approve(&third).await;
    assert_eq!(w.sync().await.pushed, 2);
    assert_eq!(w.crm.history("c1", "phone"), vec![json!("1"), json!("3")], "2 never went out");
    assert_eq!(w.crm.history("c1", "email"), vec![json!("a@x.io"), json!("c@x.io")]);
    assert_eq!(w.crm.writes(), (0, 1, 0), "the two edits of one record go out in one write");
    assert!(w.record("c1").pending_push.is_empty(), "pushed values need no carrier");
    assert_eq!(w.item(&first).await.status, PushStatus::Superseded);
}

#[tokio::test]
async fn a_conflict_resolution_supersedes_the_pending_edit_it_overtakes() {
    let mut w =
        World::new(ConnectionSettings { conflict_policy: ConflictPolicy::manual(), ..Default::default() });
    w.crm.edit(ObjectType::Contacts, "c1", &[("phone", json!("1"))]);
    w.crm.edit(ObjectType::Contacts, "c2", &[("phone", json!("1"))]);
    w.sync().await;
    let e1 = w.queue(PushAction::UpdateRecord, Some("c1"), f(&[("phone", json!("local1"))]), "edit-1").await;
    let e2 = w.queue(PushAction::UpdateRecord, Some("c2"), f(&[("phone", json!("local2"))]), "edit-2").await;
    w.crm.edit(ObjectType::Contacts, "c1", &[("phone", json!("remote1"))]);
    w.crm.edit(ObjectType::Contacts, "c2", &[("phone", json!("remote2"))]);
    assert_eq!(w.sync().await.conflicts_parked, 2);
    let open = w.open_conflicts().await;
    let on = |external: &str| {
        let record = w.record(external).record_id;
        open.iter().find(|c| c.record_id == record).unwrap().conflict_id.clone()
    };
    let (k1, k2) = (on("c1"), on("c2"));

    push::resolve(&w.deps, &w.conn.tenant_id, std::slice::from_ref(&k1), Resolution::UseRemote, "user:ann")
        .await
        .unwrap();
    let taken_back = w.item(&e1).await;
    assert_eq!(
        (taken_back.status, taken_back.superseded_by.as_deref()),
        (PushStatus::Superseded, Some(k1.as_str()))
    );
    assert_eq!(w.record("c1").fields["phone"], json!("remote1"));
    assert!(w.record("c1").pending_push.is_empty());

    push::resolve(&w.deps, &w.conn.tenant_id, std::slice::from_ref(&k2), Resolution::UseLocal, "user:ann")
        .await
        .unwrap();
    let resolving = w.record("c2").pending_push["phone"].clone();
    assert_ne!(resolving, e2, "the resolution's own approved item carries the value now");
    assert_eq!(w.item(&resolving).await.status, PushStatus::Approved);
    let kept = w.item(&e2).await;
    assert_eq!((kept.status, kept.superseded_by.as_deref()), (PushStatus::Superseded, Some(k2.as_str())));

    assert_eq!(w.sync().await.pushed, 1);
    assert_eq!(w.crm.fields("c2").unwrap()["phone"], json!("local2"));
    assert_eq!(w.crm.fields("c1").unwrap()["phone"], json!("remote1"));
    assert_eq!(w.item(&resolving).await.status, PushStatus::Completed);
    for id in [&e1, &e2] {
        assert_eq!(w.item(id).await.status, PushStatus::Superseded, "never completed");
    }
    assert_eq!(w.superseded_audits().len(), 2);
}

#[tokio::test]
async fn an_approved_edit_the_policy_decides_against_is_superseded_by_the_merge_and_never_sent() {
    use crate::domain::Source;
    let mut w = World::new(ConnectionSettings::default());
    w.crm.edit(ObjectType::Contacts, "c1", &[("job_title", json!("CTO"))]);
    w.sync().await;
    w.source = Some(Source::Web);
    let id = w.queue(PushAction::UpdateRecord, Some("c1"), f(&[("job_title", json!("VP"))]), "edit-1").await;
    w.approve(&id).await;
    w.crm.edit(ObjectType::Contacts, "c1", &[("job_title", json!("CEO"))]);
    let c = w.sync().await;
    assert_eq!((c.conflicts_decided, c.pushed), (1, 0), "web loses to the CRM");
    let item = w.item(&id).await;
    assert_eq!((item.status, item.superseded_by.as_deref()), (PushStatus::Superseded, Some("merge")));
    assert_eq!(w.crm.writes(), (0, 0, 0));
    assert_eq!(w.record("c1").fields["job_title"], json!("CEO"));
    assert!(w.record("c1").pending_push.is_empty());
}

#[tokio::test]
async fn an_approved_edit_whose_local_value_moved_on_unmarked_is_superseded_at_push_time_not_completed() {
    let mut w = World::new(ConnectionSettings::default());
    w.crm.edit(ObjectType::Contacts, "c1", &[("phone", json!("1"))]);
    w.sync().await;
    let id = w.queue(PushAction::UpdateRecord, Some("c1"), f(&[("phone", json!("2"))]), "edit-1").await;
    w.approve(&id).await;
    // A writer that names no push item (a record written before markers existed) moves the value.
    let mut moved = w.record("c1");
    moved.fields.insert("phone".into(), json!("9"));
    moved.pending_push.clear();
    moved.version += 1;
    let written =
        w.deps.records.write(Provider::Hubspot, vec![crate::ports::RecordWrite::Update(moved)]).await;
    assert!(written.unwrap()[0].is_ok());

    let c = w.sync().await;
    assert_eq!(c.pushed, 0, "superseded is not pushed");
    let item = w.item(&id).await;
    assert_eq!((item.status, item.superseded_by.as_deref()), (PushStatus::Superseded, Some("local_change")));
    assert_eq!(w.crm.writes(), (0, 0, 0));
    assert!(!w.bus.events().iter().any(|e| matches!(e, DomainEvent::PushCompleted { .. })));
}

#[tokio::test]
async fn an_expired_edit_stays_visibly_unpushed_until_rejected_which_puts_the_agreed_value_back() {
    let mut w = World::new(ConnectionSettings::default());
    w.crm.edit(ObjectType::Contacts, "c1", &[("phone", json!("1"))]);
    w.sync().await;
    let id = w.queue(PushAction::UpdateRecord, Some("c1"), f(&[("phone", json!("2"))]), "edit-1").await;
    w.clock.advance(chrono::Duration::days(8));
    assert_eq!(w.item(&id).await.status_at(crate::ports::Clock::now(&*w.clock)), PushStatus::Expired);
    assert_eq!(w.sync().await.pushed, 0);
    let record = w.record("c1");
    assert_eq!(record.fields["phone"], json!("2"), "the edit is kept, not silently dropped");
    assert_eq!(record.pending_push["phone"], id, "and says which item it waits for");
    let approve = push::decide(&w.deps, &w.conn.tenant_id, std::slice::from_ref(&id), true, "user:ann").await;
    assert!(approve.unwrap()[0].1.is_err(), "an expired item cannot be approved");

    let out = push::decide(&w.deps, &w.conn.tenant_id, std::slice::from_ref(&id), false, "user:ann").await;
    assert_eq!(out.unwrap()[0].1.as_ref().map(|i| i.status).ok(), Some(PushStatus::Rejected));
    let record = w.record("c1");
    assert_eq!(record.fields["phone"], json!("1"));
    assert!(record.pending_push.is_empty());
    let entry = w.store.audit_entries().into_iter().rfind(|e| e.operation == Operation::Approval).unwrap();
    assert_eq!(entry.detail["was"], "expired");
    assert_eq!(entry.detail["reverted"], json!(["phone"]));
    assert_eq!((entry.before, entry.after), (Some(json!({ "phone": "2" })), Some(json!({ "phone": "1" }))));
    assert_eq!(w.crm.writes(), (0, 0, 0));
}

#[tokio::test]
async fn rejecting_an_older_edit_leaves_the_value_a_newer_edit_carries() {
    let mut w = World::new(ConnectionSettings::default());
    w.crm.edit(ObjectType::Contacts, "c1", &[("phone", json!("1")), ("email", json!("a@x.io"))]);
    w.sync().await;
    let both = f(&[("phone", json!("2")), ("email", json!("b@x.io"))]);
    let older = w.queue(PushAction::UpdateRecord, Some("c1"), both, "edit-1").await;
    w.queue(PushAction::UpdateRecord, Some("c1"), f(&[("phone", json!("2"))]), "edit-2").await;
    let out = push::decide(&w.deps, &w.conn.tenant_id, &[older], false, "user:ann").await.unwrap();
    assert!(out[0].1.is_ok());
    let record = w.record("c1");
    assert_eq!(record.fields["email"], json!("a@x.io"), "the older edit's own field goes back");
    assert_eq!(record.fields["phone"], json!("2"), "the newer edit's field stays");
}

#[tokio::test]
async fn a_critical_push_queued_behind_more_than_a_job_of_normal_ones_goes_out_in_the_first_job() {
    use crate::domain::push::push_id;
    let mut w = World::new(ConnectionSettings {
        auto_push: [(PushAction::CreateNote, true)].into(),
        ..Default::default()
    });
    w.crm.edit(ObjectType::Contacts, "c1", &[("email", json!("a@x.io"))]);
    w.sync().await;
    let total = super::push::PUSHES_PER_JOB + 50;
    let mut last = String::new();
    for i in 0..total {
        w.clock.advance(chrono::Duration::seconds(1));
        let id = w
            .queue(
                PushAction::CreateNote,
                Some("c1"),
                f(&[("body", json!(format!("note {i}")))]),
                &format!("n-{i}"),
            )
            .await;
        last = last.max(id);
    }
    // Its id sorts after every other: a read in id order would reach it last.
    let key = (0..)
        .map(|n| format!("urgent-{n}"))
        .find(|k| {
            push_id(&w.conn.tenant_id, &w.conn.connection_id, &IdempotencyKey::parse(k.as_str()).unwrap())
                > last
        })
        .unwrap();
    w.queue_at(Priority::Critical, PushAction::CreateNote, Some("c1"), f(&[("body", json!("urgent"))]), &key)
        .await;

    assert_eq!(w.sync().await.pushed, super::push::PUSHES_PER_JOB as u64);
    let bodies: Vec<Value> =
        w.crm.live(ObjectType::Notes).into_iter().map(|(_, n)| n["body"].clone()).collect();
    assert!(bodies.contains(&json!("[ARIA] urgent")), "the critical note went first");
    assert!(bodies.contains(&json!("[ARIA] note 0")), "then the oldest normal ones");
    assert!(!bodies.contains(&json!(format!("[ARIA] note {}", total - 1))));
    assert_eq!(w.sync().await.pushed, 51);
}

#[tokio::test]
async fn an_edit_of_a_research_task_stays_local_and_never_queues_a_push_the_calendar_refuses() {
    let mut w = World::of(
        Provider::Google,
        ConnectionSettings { own_domains: vec!["acme.com".into()], ..Default::default() },
    );
    let meeting = [
        ("title", json!("Pricing")),
        ("start", json!("2027-02-01T15:00:00Z")),
        ("organizer", json!("ann@acme.com")),
        ("attendees", json!(["ann@acme.com", "zoe@client.io"])),
    ];
    w.crm.edit(ObjectType::Events, "e1", &meeting);
    assert_eq!(w.sync().await.tasks_opened, 1);
    let task = w.record_of(ObjectType::ResearchTasks, "e1");
    let request = |action| PushRequest {
        action,
        object: None,
        priority: Priority::Normal,
        record_id: Some(task.record_id.clone()),
        fields: f(&[("status", json!("done"))]),
        idempotency_key: IdempotencyKey::parse("done-1").unwrap(),
        source: None,
    };
    let refused = push::queue(&w.deps, &w.conn, request(PushAction::UpdateRecord), "user:ann").await;
    assert!(matches!(refused, Err(push::PushError::Invalid(_))), "a task is not pushed: {refused:?}");
    let edited = push::edit(&w.deps, &w.conn, request(PushAction::UpdateRecord), "user:ann").await.unwrap();
    assert!(matches!(edited, push::Edited::Local(ref r) if r.fields["status"] == json!("done")));
    let items = w.deps.pushes.list(&w.conn.tenant_id, &PushQuery::default()).await.unwrap().items;
    assert!(items.is_empty(), "nothing queued: {items:?}");
    let audited: Vec<_> =
        w.store.audit_entries().into_iter().filter(|e| e.operation == Operation::LocalEdit).collect();
    assert_eq!(audited.len(), 1);
    assert_eq!(
        (audited[0].before.clone(), audited[0].after.clone()),
        (Some(json!({ "status": "open" })), Some(json!({ "status": "done" })))
    );
    push::edit(&w.deps, &w.conn, request(PushAction::UpdateRecord), "user:ann").await.unwrap();
    assert_eq!(
        w.store.audit_entries().iter().filter(|e| e.operation == Operation::LocalEdit).count(),
        1,
        "the same edit again changes and audits nothing"
    );

    // The meeting moves: the task follows it and stays done; the calendar got no write.
    w.crm.edit(ObjectType::Events, "e1", &[("start", json!("2027-02-02T15:00:00Z"))]);
    let c = w.sync().await;
    assert_eq!((c.tasks_updated, c.pushed, c.push_failed), (1, 0, 0));
    let task = w.record_of(ObjectType::ResearchTasks, "e1");
    assert_eq!(
        (task.fields["status"].clone(), task.fields["due_at"].clone()),
        (json!("done"), json!("2027-02-01T15:00:00Z"))
    );
    assert_eq!(w.crm.writes(), (0, 0, 0));
}

// --- create_record, delete_record and field ownership at push time ---------------------------

impl World {
    /// Queues a `create_record` or `delete_record` (or any item) as `actor` with `source`.
    #[allow(clippy::too_many_arguments)]
    async fn queue_as(
        &self,
        action: PushAction,
        object: Option<ObjectType>,
        record: Option<&str>,
        fields: Fields,
        key: &str,
        actor: &str,
        source: Option<crate::domain::Source>,
    ) -> Result<PushItem, push::PushError> {
        let request = PushRequest {
            action,
            object,
            priority: Priority::Normal,
            record_id: record.map(|e| self.record(e).record_id),
            fields,
            idempotency_key: IdempotencyKey::parse(key).unwrap(),
            source,
        };
        push::queue(&self.deps, &self.conn, request, actor).await.map(|(item, _)| item)
    }

    /// Runs one push job; the same job id each time `again` is true (a redelivery).
    async fn push_job(&mut self, again: bool) -> Result<JobOutcome, crate::sync::worker::JobError> {
        if !again {
            self.jobs += 1;
        }
        let job = Job::sync(
            self.conn.tenant_id.clone(),
            self.conn.connection_id.clone(),
            JobId::parse(format!("job-{}", self.jobs)).unwrap(),
            JobReason::Push,
            now(),
        );
        run_job(&self.deps, &job, Deadline::after(std::time::Duration::from_secs(60))).await
    }
}

#[tokio::test]
async fn an_approved_create_record_makes_one_record_even_when_the_answer_is_lost_and_pulls_see_no_change() {
    let mut w = World::new(ConnectionSettings::default());
    let fields = f(&[("email", json!("new@x.io")), ("first_name", json!("Nia"))]);
    let item = w
        .queue_as(
            PushAction::CreateRecord,
            Some(ObjectType::Contacts),
            None,
            fields.clone(),
            "new-1",
            "user:ann",
            None,
        )
        .await
        .unwrap();
    assert_eq!((item.object, item.status), (ObjectType::Contacts, PushStatus::Pending));
    assert_eq!(w.sync().await.pushed, 0, "nothing goes out before approval");
    w.approve(&item.push_id).await;

    w.crm.lose_next_write_answers(1);
    assert!(w.push_job(false).await.is_err_and(|e| e.is_retryable()), "the answer was lost");
    let outcome = w.push_job(true).await.unwrap();
    assert!(matches!(outcome, JobOutcome::Completed { counts, .. } if counts.pushed == 1), "{outcome:?}");
    assert_eq!(w.crm.writes().0, 1, "one record at the provider, not two");
    let live = w.crm.live(ObjectType::Contacts);
    assert_eq!(live.len(), 1);
    let done = w.item(&item.push_id).await;
    assert_eq!(done.status, PushStatus::Completed);
    let external = done.result_external_id.clone().unwrap();
    assert_eq!(external.as_str(), live[0].0);
    let stored = w.record(external.as_str());
    assert_eq!(
        (stored.fields.clone(), stored.base.clone()),
        (fields.clone(), fields),
        "stored with its base"
    );
    for _ in 0..3 {
        let c = w.sync().await;
        assert_eq!((c.created, c.updated, c.pushed), (0, 0, 0), "no echo: {c:?}");
    }
}

#[tokio::test]
async fn create_record_takes_a_creatable_crm_object_and_nothing_else() {
    let w = World::new(ConnectionSettings::default());
    let queue = |action, object, fields| w.queue_as(action, object, None, fields, "k-1", "user:ann", None);
    let name = f(&[("name", json!("Acme"))]);
    for (object, why) in [
        (None, "needs an object"),
        (Some(ObjectType::Notes), "not notes"),
        (Some(ObjectType::Events), "not events"),
    ] {
        let r = queue(PushAction::CreateRecord, object, name.clone()).await;
        assert!(matches!(r, Err(push::PushError::Invalid(_))), "{why}: {r:?}");
    }
    let empty =
        queue(PushAction::CreateRecord, Some(ObjectType::Companies), f(&[("name", Value::Null)])).await;
    assert!(matches!(empty, Err(push::PushError::Invalid(_))), "no values");
    let stray = queue(PushAction::CreateNote, Some(ObjectType::Companies), name.clone()).await;
    assert!(matches!(stray, Err(push::PushError::Invalid(_))), "object only with create_record");
    let ok = queue(PushAction::CreateRecord, Some(ObjectType::Deals), f(&[("name", json!("Renewal"))])).await;
    assert_eq!(ok.unwrap().object, ObjectType::Deals);
    let calendar = World::of(Provider::Google, ConnectionSettings::default());
    let r = calendar
        .queue_as(PushAction::CreateRecord, Some(ObjectType::Contacts), None, name, "k-2", "user:ann", None)
        .await;
    assert!(matches!(r, Err(push::PushError::Invalid(_))), "a calendar has no CRM records");
}

#[tokio::test]
async fn an_approved_delete_removes_the_record_once_even_when_redelivered_and_the_pull_stays_quiet() {
    let mut w = World::new(ConnectionSettings::default());
    w.crm.edit(ObjectType::Contacts, "c1", &[("email", json!("a@x.io"))]);
    w.crm.edit(ObjectType::Contacts, "c2", &[("email", json!("b@x.io"))]);
    w.sync().await;
    let item = w
        .queue_as(PushAction::DeleteRecord, None, Some("c1"), Fields::new(), "del-1", "user:ann", None)
        .await
        .unwrap();
    assert_eq!(item.object, ObjectType::Contacts);
    w.approve(&item.push_id).await;
    assert_eq!(w.item(&item.push_id).await.approved_remote_modified_at, w.record("c1").remote_modified_at);

    w.crm.lose_next_write_answers(1);
    assert!(w.push_job(false).await.is_err(), "the answer was lost after the delete");
    w.push_job(true).await.unwrap();
    let done = w.item(&item.push_id).await;
    assert_eq!(done.status, PushStatus::Completed, "the redelivery finds the record gone: already applied");
    assert!(w.record("c1").deleted);
    assert_eq!(w.crm.live(ObjectType::Contacts).len(), 1, "only c1 was deleted");
    let outcomes: Vec<String> = w
        .store
        .audit_entries()
        .iter()
        .filter(|e| e.operation == Operation::Push && e.detail["push_id"] == json!(item.push_id))
        .filter_map(|e| e.detail["outcome"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(outcomes, vec!["already_applied"]);
    let c = w.sync().await;
    assert_eq!((c.deleted, c.updated), (0, 0), "our own delete comes back as nothing new: {c:?}");
    let again = w
        .queue_as(PushAction::DeleteRecord, None, Some("c1"), Fields::new(), "del-2", "user:ann", None)
        .await;
    assert!(matches!(again, Err(push::PushError::State(_))), "deleted already");
}

#[tokio::test]
async fn a_delete_of_a_record_edited_at_the_provider_since_its_approval_ends_as_a_conflict_not_a_delete() {
    let mut w = World::new(ConnectionSettings::default());
    w.crm.edit(ObjectType::Contacts, "c1", &[("email", json!("a@x.io"))]);
    w.crm.edit(ObjectType::Contacts, "c2", &[("email", json!("b@x.io"))]);
    w.sync().await;
    for (external, key) in [("c1", "del-1"), ("c2", "del-2")] {
        let item = w
            .queue_as(PushAction::DeleteRecord, None, Some(external), Fields::new(), key, "user:ann", None)
            .await
            .unwrap();
        w.approve(&item.push_id).await;
    }
    // c1 is edited at the provider after the approval; the sync pulls it before pushing.
    w.crm.edit(ObjectType::Contacts, "c1", &[("phone", json!("555"))]);
    let c = w.sync().await;
    assert_eq!(c.pushed, 1, "only c2's delete goes out");
    assert_eq!(c.push_failed, 1, "{c:?}");
    let live: Vec<String> = w.crm.live(ObjectType::Contacts).into_iter().map(|(id, _)| id).collect();
    assert_eq!(live, vec!["c1"], "the edited record stays");
    assert!(!w.record("c1").deleted);
    let items = w.deps.pushes.list(&w.conn.tenant_id, &PushQuery::default()).await.unwrap().items;
    let failed: Vec<&PushItem> = items.iter().filter(|i| i.status == PushStatus::Failed).collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].last_error.as_deref().is_some_and(|e| e.contains("changed at the provider")));
    let conflict = w.store.audit_entries().into_iter().find(|e| e.operation == Operation::ConflictDetected);
    assert_eq!(conflict.expect("the conflict is audited").detail["reason"], "changed_since_approval");

    // An edit between the pull and the delete is caught by the provider's precondition.
    w.crm.edit(ObjectType::Contacts, "c3", &[("email", json!("c@x.io"))]);
    w.sync().await;
    let late = w
        .queue_as(PushAction::DeleteRecord, None, Some("c3"), Fields::new(), "del-3", "user:ann", None)
        .await
        .unwrap();
    w.approve(&late.push_id).await;
    w.crm.edit(ObjectType::Contacts, "c3", &[("phone", json!("1"))]);
    w.push_job(false).await.unwrap();
    assert_eq!(w.item(&late.push_id).await.status, PushStatus::Failed);
    assert!(w.crm.live(ObjectType::Contacts).iter().any(|(id, _)| id == "c3"));
}

#[tokio::test]
async fn an_agents_edit_never_writes_a_human_owned_field_and_says_so_while_a_persons_edit_does() {
    let mut policy = ConflictPolicy::default();
    policy.ownership.insert("lead_status".into(), crate::domain::policy::Ownership::Human);
    let mut w = World::new(ConnectionSettings { conflict_policy: policy, ..Default::default() });
    w.crm.edit(ObjectType::Contacts, "c1", &[("lead_status", json!("OPEN")), ("score", json!(10))]);
    w.sync().await;
    let agent = w
        .queue_as(
            PushAction::UpdateRecord,
            None,
            Some("c1"),
            f(&[("lead_status", json!("QUALIFIED")), ("score", json!(80))]),
            "agent-edit-1",
            "user:agent:aria",
            Some(crate::domain::Source::Inferred),
        )
        .await
        .unwrap();
    w.approve(&agent.push_id).await;
    assert_eq!(w.sync().await.pushed, 1);
    let at_provider = w.crm.fields("c1").unwrap();
    assert_eq!(
        (at_provider["lead_status"].clone(), at_provider["score"].clone()),
        (json!("OPEN"), json!(80))
    );
    assert_eq!(w.crm.history("c1", "lead_status"), vec![json!("OPEN")], "never written");
    let done = w.item(&agent.push_id).await;
    assert_eq!(
        (done.status, done.withheld_fields.clone()),
        (PushStatus::Completed, vec!["lead_status".to_owned()])
    );
    assert_eq!(
        w.record("c1").fields["lead_status"],
        json!("OPEN"),
        "the local value is the agreed one again"
    );
    let audit = w
        .store
        .audit_entries()
        .into_iter()
        .find(|e| e.operation == Operation::Push && e.detail["reason"] == "human_owned")
        .expect("the withheld field is audited");
    assert_eq!(audit.detail["withheld"], json!(["lead_status"]));
    assert_eq!(audit.before, Some(json!({"lead_status": "QUALIFIED"})));

    // Only human-owned fields: nothing is written and the item fails, saying why.
    let only = w
        .queue_as(
            PushAction::UpdateField,
            None,
            Some("c1"),
            f(&[("lead_status", json!("LOST"))]),
            "agent-edit-2",
            "agent",
            None,
        )
        .await
        .unwrap();
    w.approve(&only.push_id).await;
    w.sync().await;
    let refused = w.item(&only.push_id).await;
    assert_eq!(refused.status, PushStatus::Failed);
    assert!(refused.last_error.as_deref().is_some_and(|e| e.contains("owned by people")), "{refused:?}");
    assert_eq!(w.crm.fields("c1").unwrap()["lead_status"], json!("OPEN"));

    // A person's edit of the same field is theirs to make.
    let person = w
        .queue_as(
            PushAction::UpdateRecord,
            None,
            Some("c1"),
            f(&[("lead_status", json!("WON"))]),
            "person-edit-1",
            "user:ann",
            Some(crate::domain::Source::UserStated),
        )
        .await
        .unwrap();
    w.approve(&person.push_id).await;
    w.sync().await;
    assert_eq!(w.crm.fields("c1").unwrap()["lead_status"], json!("WON"));
    assert!(w.item(&person.push_id).await.withheld_fields.is_empty());

    // An agent's create leaves the human-owned field out of the new record.
    let create = w
        .queue_as(
            PushAction::CreateRecord,
            Some(ObjectType::Contacts),
            None,
            f(&[("email", json!("z@x.io")), ("lead_status", json!("HOT"))]),
            "agent-create-1",
            "agent:aria",
            None,
        )
        .await
        .unwrap();
    w.approve(&create.push_id).await;
    w.sync().await;
    let made = w.item(&create.push_id).await;
    assert_eq!(made.withheld_fields, vec!["lead_status"]);
    let fields = w.crm.fields(made.result_external_id.unwrap().as_str()).unwrap();
    assert_eq!((fields.get("email"), fields.get("lead_status")), (Some(&json!("z@x.io")), None));
}
