//! Property test of the two-way sync under random interleavings: local edits, remote edits, syncs,
//! redelivered jobs and crashes at any store call, for each conflict policy. Afterwards (once
//! everything approved has gone out and a few clean syncs ran), both sides agree on every field the
//! policy decides, every field the policy left to a person has an open conflict, no edit vanished
//! without an audit entry, and every note was created exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::push::{self, PushRequest};
use super::worker::run_job;
use super::{Deadline, Deps};
use crate::adapters::memory::{ManualClock, MemoryStore};
use crate::adapters::memory_provider::MemoryProvider;
use crate::domain::policy::{ConflictPolicy, Ownership, Source};
use crate::domain::{
    ConflictStatus, Connection, ConnectionSettings, Credentials, IdempotencyKey, Job, JobId, JobReason,
    NewConnection, ObjectType, Operation, Priority, Provider, PushAction, PushStatus, TenantId,
};
use crate::ports::{ConflictQuery, PushQuery};

const RECORDS: [&str; 2] = ["c1", "c2"];
const FIELDS: [&str; 2] = ["phone", "stage"];

#[derive(Debug, Clone)]
enum Op {
    Local {
        record: usize,
        field: usize,
        value: u8,
        source: Option<Source>,
    },
    Remote {
        record: usize,
        field: usize,
        value: u8,
    },
    Note {
        key: u8,
    },
    Sync,
    /// The last job delivered again.
    Redeliver,
    /// A sync whose process dies after `calls` store calls.
    CrashingSync {
        calls: u8,
    },
    /// A sync during which the provider accepts writes but the answers are lost.
    LostAnswers,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, 0..2usize, 0..3u8, prop_oneof![Just(None), Just(Some(Source::UserStated)), Just(Some(Source::Web))])
            .prop_map(|(record, field, value, source)| Op::Local { record, field, value, source }),
        3 => (0..2usize, 0..2usize, 0..3u8).prop_map(|(record, field, value)| Op::Remote { record, field, value }),
        1 => (0..2u8).prop_map(|key| Op::Note { key }),
        3 => Just(Op::Sync),
        1 => Just(Op::Redeliver),
        2 => (0..40u8).prop_map(|calls| Op::CrashingSync { calls }),
        1 => Just(Op::LostAnswers),
    ]
}

fn policies() -> impl Strategy<Value = ConflictPolicy> {
    prop_oneof![
        Just(ConflictPolicy::default()),
        Just(ConflictPolicy::manual()),
        Just(ConflictPolicy::last_write_wins()),
        Just(ConflictPolicy {
            ownership: [("phone".to_owned(), Ownership::Agent)].into(),
            ..ConflictPolicy::last_write_wins()
        }),
    ]
}

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2027-01-15T08:00:00Z").unwrap().with_timezone(&Utc)
}

struct World {
    deps: Deps,
    store: Arc<MemoryStore>,
    crm: MemoryProvider,
    clock: Arc<ManualClock>,
    conn: Connection,
    jobs: u32,
    last_job: Option<Job>,
}

impl World {
    fn new(policy: ConflictPolicy) -> Self {
        let crm = MemoryProvider::new();
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(start()));
        let deps = crate::adapters::memory::TestDeps::new(store.clone())
            .providers(Arc::new(crm.clone()))
            .clock(clock.clone())
            .build();
        let settings = ConnectionSettings {
            conflict_policy: policy,
            auto_push: [(PushAction::UpdateRecord, true), (PushAction::CreateNote, true)].into(),
            ..ConnectionSettings::default()
        };
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
            start(),
        );
        store.put_connection(conn.clone());
        for r in RECORDS {
            crm.edit(ObjectType::Contacts, r, &[("phone", json!("p0")), ("stage", json!("s0"))]);
        }
        Self { deps, store, crm, clock, conn, jobs: 0, last_job: None }
    }

    fn tick(&self) {
        self.clock.advance(chrono::Duration::seconds(1));
    }

    async fn run(&mut self, job: Job) -> bool {
        self.tick();
        self.last_job = Some(job.clone());
        run_job(&self.deps, &job, Deadline::after(std::time::Duration::from_secs(60))).await.is_ok()
    }

    fn next_job(&mut self) -> Job {
        self.jobs += 1;
        Job::sync(
            self.conn.tenant_id.clone(),
            self.conn.connection_id.clone(),
            JobId::parse(format!("job-{}", self.jobs)).unwrap(),
            JobReason::Schedule,
            self.clock_now(),
        )
    }

    fn clock_now(&self) -> DateTime<Utc> {
        use crate::ports::Clock;
        self.clock.now()
    }

    fn record_id(&self, external: &str) -> Option<crate::domain::RecordId> {
        self.store
            .records_of(&self.conn.tenant_id, &self.conn.connection_id)
            .into_iter()
            .find(|r| r.external_id.as_str() == external && r.object == ObjectType::Contacts)
            .map(|r| r.record_id)
    }

    async fn apply(&mut self, op: &Op, local_edits: &mut BTreeMap<(usize, usize), Value>) {
        match op {
            Op::Local { record, field, value, source } => {
                let Some(record_id) = self.record_id(RECORDS[*record]) else { return };
                self.tick();
                let v = json!(format!("local-{value}"));
                let request = PushRequest {
                    action: PushAction::UpdateRecord,
                    object: None,
                    priority: Priority::Normal,
                    record_id: Some(record_id),
                    fields: [(FIELDS[*field].to_owned(), v.clone())].into(),
                    idempotency_key: IdempotencyKey::parse(format!(
                        "edit-{}-{}",
                        self.jobs,
                        ulid::Ulid::new()
                    ))
                    .unwrap(),
                    source: *source,
                };
                if push::queue(&self.deps, &self.conn, request, "user:ann").await.is_ok() {
                    local_edits.insert((*record, *field), v);
                }
            }
            Op::Remote { record, field, value } => {
                self.tick();
                self.crm.edit(
                    ObjectType::Contacts,
                    RECORDS[*record],
                    &[(FIELDS[*field], json!(format!("remote-{value}")))],
                );
            }
            Op::Note { key } => {
                let Some(record_id) = self.record_id(RECORDS[0]) else { return };
                let request = PushRequest {
                    action: PushAction::CreateNote,
                    object: None,
                    priority: Priority::Normal,
                    record_id: Some(record_id),
                    fields: [("body".to_owned(), json!(format!("summary {key}")))].into(),
                    idempotency_key: IdempotencyKey::parse(format!("note-{key}")).unwrap(),
                    source: None,
                };
                let _ = push::queue(&self.deps, &self.conn, request, "agent").await;
            }
            Op::Sync => {
                let job = self.next_job();
                self.run(job).await;
            }
            Op::Redeliver => {
                if let Some(job) = self.last_job.clone() {
                    self.run(job).await;
                }
            }
            Op::CrashingSync { calls } => {
                let job = self.next_job();
                self.store.crash_after(u32::from(*calls));
                self.run(job).await;
                self.store.recover();
            }
            Op::LostAnswers => {
                self.crm.lose_next_write_answers(1);
                let job = self.next_job();
                self.run(job).await;
                self.crm.lose_next_write_answers(0);
            }
        }
    }
}

fn check(ops: Vec<Op>, policy: ConflictPolicy) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let mut w = World::new(policy.clone());
        let first = w.next_job();
        prop_assert!(w.run(first).await, "the first sync completes");
        let mut local_edits = BTreeMap::new();
        let mut notes = BTreeSet::new();
        for op in &ops {
            if let Op::Note { key } = op
                && w.record_id(RECORDS[0]).is_some()
            {
                notes.insert(*key);
            }
            w.apply(op, &mut local_edits).await;
        }
        // Quiesce: clean syncs until nothing is left to push (pushes need a pull to refresh a
        // precondition that a racing remote edit invalidated).
        for _ in 0..4 {
            let job = w.next_job();
            prop_assert!(w.run(job).await, "a clean sync completes");
        }

        // Ping-pong: once quiet, more syncs write nothing on either side.
        let writes = w.crm.writes();
        for _ in 0..3 {
            let job = w.next_job();
            w.tick();
            let out = run_job(&w.deps, &job, Deadline::after(std::time::Duration::from_secs(60))).await;
            let Ok(super::worker::JobOutcome::Completed { counts, .. }) = out else {
                return Err(TestCaseError::fail(format!("a quiet sync failed: {out:?}")));
            };
            prop_assert_eq!(
                (counts.updated, counts.created, counts.pushed),
                (0, 0, 0),
                "a quiet sync changed something"
            );
        }
        prop_assert_eq!(w.crm.writes(), writes, "a quiet sync wrote to the provider");

        let conflicts = w
            .deps
            .conflicts
            .list(
                &w.conn.tenant_id,
                &ConflictQuery { status: Some(ConflictStatus::Open), limit: 100, ..Default::default() },
            )
            .await
            .unwrap()
            .items;
        let open: BTreeSet<(String, String)> =
            conflicts.iter().map(|c| (c.external_id.to_string(), c.field.clone())).collect();
        let audit = w.store.audit_entries();
        let records = w.store.records_of(&w.conn.tenant_id, &w.conn.connection_id);
        for (ri, external) in RECORDS.iter().enumerate() {
            let local = records
                .iter()
                .find(|r| r.external_id.as_str() == *external && r.object == ObjectType::Contacts)
                .unwrap();
            let remote = w.crm.fields(external).unwrap();
            for (fi, field) in FIELDS.iter().enumerate() {
                let parked = open.contains(&((*external).to_owned(), (*field).to_owned()));
                if !parked {
                    prop_assert_eq!(
                        local.fields.get(*field),
                        remote.get(*field),
                        "{} {} disagree",
                        external,
                        field
                    );
                } else {
                    prop_assert!(
                        policy.fallback == crate::domain::policy::Fallback::Manual,
                        "only a manual policy parks"
                    );
                }
                // A local edit that is neither the final value at the provider nor parked was
                // decided against, and that decision is in the audit log.
                if let Some(edit) = local_edits.get(&(ri, fi))
                    && remote.get(*field) != Some(edit)
                    && !parked
                    && !local.fields.get(*field).is_some_and(|v| v == edit)
                {
                    let audited = audit.iter().any(|e| {
                        e.operation == Operation::ConflictResolved
                            && e.record_id.as_ref() == Some(&local.record_id)
                            && e.detail.get("field").and_then(Value::as_str) == Some(*field)
                    });
                    let overwritten_after_push = w.crm.history(external, field).contains(edit);
                    prop_assert!(
                        audited || overwritten_after_push,
                        "the local edit {} of {} {} vanished",
                        edit,
                        external,
                        field
                    );
                }
            }
        }
        // Every queued note exists exactly once at the provider.
        let created = w.crm.live(ObjectType::Notes);
        prop_assert_eq!(created.len(), notes.len(), "notes at the provider");
        let items = w
            .deps
            .pushes
            .list(&w.conn.tenant_id, &PushQuery { limit: 1000, ..Default::default() })
            .await
            .unwrap()
            .items;
        prop_assert!(items.iter().all(|p| p.status != PushStatus::Approved
            || p.attempts > 0
            || p.action != PushAction::CreateNote));
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn both_sides_converge_under_any_interleaving_for_every_policy(
        ops in proptest::collection::vec(op(), 1..14),
        policy in policies(),
    ) {
        check(ops, policy)?;
    }
}
