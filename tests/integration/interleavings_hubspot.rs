//! The interleaving property test again, with the remote side being the HubSpot fake over HTTP
//! through the real HubSpot adapter (the stores stay in memory, so many cases run quickly): local
//! edits, edits by a person in HubSpot, syncs, redeliveries, crashes at any store call and HubSpot
//! outages on writes, for each conflict policy. Afterwards both sides agree on every field the
//! policy decides, every manual conflict is queued, and each note exists once at HubSpot.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Value, json};
use syncbridge::adapters::hubspot::{HubspotFactory, Pacing};
use syncbridge::adapters::memory::MemoryStore;
use syncbridge::domain::policy::{ConflictPolicy, Fallback, Ownership};
use syncbridge::domain::{
    ConflictStatus, Connection, ConnectionSettings, Credentials, IdempotencyKey, Job, JobId, JobReason,
    NewConnection, ObjectType, Operation, Priority, Provider, PushAction, TenantId,
};
use syncbridge::ports::ConflictQuery;
use syncbridge::sync::push::{self, PushRequest};
use syncbridge::sync::worker::run_job;
use syncbridge::sync::{Deadline, Deps};
use syncbridge_fakes::hubspot::store::ObjectKind;
use syncbridge_fakes::hubspot::{FakeConfig, Fault, FaultKind, HubspotFake, Route, RunningFake};

const TOKEN: &str = "pat-na1-fake";
const CONTACTS: [&str; 2] = ["1", "2"];
/// (canonical field, HubSpot property)
const FIELDS: [(&str, &str); 2] = [("phone", "phone"), ("job_title", "jobtitle")];

#[derive(Debug, Clone)]
enum Op {
    Local {
        record: usize,
        field: usize,
        value: u8,
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
    Redeliver,
    CrashingSync {
        calls: u8,
    },
    /// A sync during which HubSpot answers 500 to the first write batch.
    WriteOutage,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, 0..2usize, 0..3u8).prop_map(|(record, field, value)| Op::Local { record, field, value }),
        3 => (0..2usize, 0..2usize, 0..3u8).prop_map(|(record, field, value)| Op::Remote { record, field, value }),
        1 => (0..2u8).prop_map(|key| Op::Note { key }),
        3 => Just(Op::Sync),
        1 => Just(Op::Redeliver),
        2 => (0..30u8).prop_map(|calls| Op::CrashingSync { calls }),
        1 => Just(Op::WriteOutage),
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

struct World {
    deps: Deps,
    store: Arc<MemoryStore>,
    hubspot: RunningFake,
    conn: Connection,
    jobs: u32,
    last_job: Option<Job>,
}

impl World {
    async fn new(policy: ConflictPolicy) -> Self {
        let hubspot =
            HubspotFake::start(FakeConfig { contacts: 2, ..FakeConfig::default() }).await.expect("fake");
        let store = Arc::new(MemoryStore::new());
        let factory = HubspotFactory::new(reqwest::Client::new(), None)
            .with_pacing(Pacing { search_per_second: 1_000, ..Pacing::default() });
        let deps =
            syncbridge::adapters::memory::TestDeps::new(store.clone()).providers(Arc::new(factory)).build();
        let settings = ConnectionSettings {
            conflict_policy: policy,
            auto_push: [(PushAction::UpdateRecord, true), (PushAction::CreateNote, true)].into(),
            ..ConnectionSettings::default()
        };
        let conn = Connection::new(
            TenantId::parse("acme").unwrap(),
            NewConnection {
                provider: Provider::Hubspot,
                base_url: hubspot.base_url(),
                credentials: Credentials {
                    access_token: SecretString::from(TOKEN),
                    refresh_token: None,
                    expires_at: None,
                },
                interval_minutes: 15,
                settings,
            },
            chrono::Utc::now(),
        );
        store.put_connection(conn.clone());
        Self { deps, store, hubspot, conn, jobs: 0, last_job: None }
    }

    fn next_job(&mut self) -> Job {
        self.jobs += 1;
        Job::sync(
            self.conn.tenant_id.clone(),
            self.conn.connection_id.clone(),
            JobId::parse(format!("job-{}", self.jobs)).unwrap(),
            JobReason::Schedule,
            chrono::Utc::now(),
        )
    }

    async fn run(&mut self, job: Job) -> bool {
        self.last_job = Some(job.clone());
        run_job(&self.deps, &job, Deadline::after(std::time::Duration::from_secs(60))).await.is_ok()
    }

    fn record_id(&self, external: &str) -> Option<syncbridge::domain::RecordId> {
        self.store
            .records_of(&self.conn.tenant_id, &self.conn.connection_id)
            .into_iter()
            .find(|r| r.external_id.as_str() == external && r.object == ObjectType::Contacts)
            .map(|r| r.record_id)
    }

    async fn apply(
        &mut self,
        op: &Op,
        local_edits: &mut BTreeMap<(usize, usize), Value>,
        notes: &mut BTreeSet<u8>,
    ) {
        match op {
            Op::Local { record, field, value } => {
                let Some(record_id) = self.record_id(CONTACTS[*record]) else { return };
                let v = json!(format!("local-{value}"));
                let request = PushRequest {
                    action: PushAction::UpdateRecord,
                    object: None,
                    priority: Priority::Normal,
                    record_id: Some(record_id),
                    fields: [(FIELDS[*field].0.to_owned(), v.clone())].into(),
                    idempotency_key: IdempotencyKey::parse(format!("edit-{}", ulid::Ulid::new())).unwrap(),
                    source: None,
                };
                if push::queue(&self.deps, &self.conn, request, "user:ann").await.is_ok() {
                    local_edits.insert((*record, *field), v);
                }
            }
            Op::Remote { record, field, value } => {
                let v = format!("remote-{value}");
                self.hubspot.state().edit_contact(CONTACTS[*record], &[(FIELDS[*field].1, v.as_str())]);
            }
            Op::Note { key } => {
                let Some(record_id) = self.record_id(CONTACTS[0]) else { return };
                let request = PushRequest {
                    action: PushAction::CreateNote,
                    object: None,
                    priority: Priority::Normal,
                    record_id: Some(record_id),
                    fields: [("body".to_owned(), json!(format!("summary {key}")))].into(),
                    idempotency_key: IdempotencyKey::parse(format!("note-{key}")).unwrap(),
                    source: None,
                };
                if push::queue(&self.deps, &self.conn, request, "agent").await.is_ok() {
                    notes.insert(*key);
                }
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
            Op::WriteOutage => {
                for route in [Route::BatchUpdate, Route::BatchCreate] {
                    self.hubspot.state().inject_fault(Fault {
                        route,
                        kind: FaultKind::ServerError,
                        count: 1,
                    });
                }
                let job = self.next_job();
                self.run(job).await;
                self.hubspot.state().clear_faults();
            }
        }
    }
}

fn check(ops: Vec<Op>, policy: ConflictPolicy) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let mut w = World::new(policy.clone()).await;
        let first = w.next_job();
        prop_assert!(w.run(first).await, "the first sync completes");
        let mut local_edits = BTreeMap::new();
        let mut notes = BTreeSet::new();
        for op in &ops {
            w.apply(op, &mut local_edits, &mut notes).await;
        }
        for _ in 0..4 {
            let job = w.next_job();
            prop_assert!(w.run(job).await, "a clean sync completes");
        }
        let open: BTreeSet<(String, String)> = w
            .deps
            .conflicts
            .list(
                &w.conn.tenant_id,
                &ConflictQuery { status: Some(ConflictStatus::Open), limit: 100, ..Default::default() },
            )
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|c| (c.external_id.to_string(), c.field))
            .collect();
        let audit = w.store.audit_entries();
        let records = w.store.records_of(&w.conn.tenant_id, &w.conn.connection_id);
        for (ri, external) in CONTACTS.iter().enumerate() {
            let local = records
                .iter()
                .find(|r| r.external_id.as_str() == *external && r.object == ObjectType::Contacts)
                .unwrap();
            let remote = w.hubspot.state().contact(external).unwrap();
            for (fi, (field, property)) in FIELDS.iter().enumerate() {
                let parked = open.contains(&((*external).to_owned(), (*field).to_owned()));
                let remote_value = remote["properties"].get(*property).cloned().unwrap_or(Value::Null);
                let local_value = local.fields.get(*field).cloned().unwrap_or(Value::Null);
                if parked {
                    prop_assert_eq!(policy.fallback, Fallback::Manual, "only a manual policy parks");
                } else {
                    prop_assert_eq!(&local_value, &remote_value, "{} {} disagree", external, field);
                }
                if let Some(edit) = local_edits.get(&(ri, fi))
                    && &remote_value != edit
                    && &local_value != edit
                    && !parked
                {
                    let audited = audit.iter().any(|e| {
                        e.operation == Operation::ConflictResolved
                            && e.record_id.as_ref() == Some(&local.record_id)
                            && e.detail.get("field").and_then(Value::as_str) == Some(*field)
                    });
                    let pushed = audit.iter().any(|e| {
                        e.operation == Operation::Push
                            && e.after.as_ref().and_then(|a| a.get(*field)) == Some(edit)
                            && e.detail.get("outcome").and_then(Value::as_str) != Some("superseded")
                    });
                    // Agreed with HubSpot, then changed there by a person: the pull's audit entry
                    // holds the edit as the value before.
                    let replaced_remotely = audit.iter().any(|e| {
                        e.operation == Operation::Pull
                            && e.record_id.as_ref() == Some(&local.record_id)
                            && e.before.as_ref().and_then(|b| b.get(*field)) == Some(edit)
                    });
                    prop_assert!(
                        audited || pushed || replaced_remotely,
                        "the local edit {} of {} {} vanished",
                        edit,
                        external,
                        field
                    );
                }
            }
        }
        for key in &notes {
            let found = w.hubspot.state().find_starting(
                ObjectKind::Notes,
                "hs_note_body",
                &format!("[ARIA] summary {key}\n"),
            );
            prop_assert_eq!(found.len(), 1, "note {} at HubSpot", key);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hubspot_and_syncbridge_converge_under_any_interleaving_for_every_policy(
        ops in proptest::collection::vec(op(), 1..12),
        policy in policies(),
    ) {
        check(ops, policy)?;
    }
}
