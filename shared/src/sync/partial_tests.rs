//! Partial failure per object type, on in-memory stores and a scripted CRM whose object types can
//! each be made to fail: the others sync, the failed one keeps its cursor and backs off, a manual
//! sync retries it at once, and a connection none of whose object types syncs is in `error`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use serde_json::json;

use super::worker::{JobOutcome, run_job};
use super::{Deadline, Deps};
use crate::adapters::memory::{ManualClock, MemoryQueue, MemoryStore};
use crate::domain::connection::sample_connection;
use crate::domain::record::Fields;
use crate::domain::{
    AuditOutcome, Connection, ConnectionStatus, Credentials, ExternalId, Job, JobId, JobReason,
    ObjectErrorClass, ObjectOutcome, ObjectType, Operation, Provider, RemoteRecord, RunStatus, SyncCursor,
    SyncRun,
};
use crate::ports::{
    ConnectionStore, ProviderClient, ProviderError, ProviderFactory, PulledPage, RequestStats, RunStore,
};

/// How a scripted object type fails.
#[derive(Clone, Debug)]
enum Failure {
    Permanent(&'static str),
    NotFound,
    Transient,
    RateLimited(u64),
    Unauthorized,
}

/// A CRM with two records per object type; every pull returns them and a cursor counting the
/// successful pulls of that type, unless the type is set to fail.
#[derive(Clone, Default)]
struct Scripted {
    failing: Arc<Mutex<HashMap<ObjectType, Failure>>>,
    pulls: Arc<Mutex<BTreeMap<ObjectType, u32>>>,
}

impl Scripted {
    fn fail(&self, object: ObjectType, failure: Failure) {
        self.failing.lock().unwrap().insert(object, failure);
    }
    fn heal(&self, object: ObjectType) {
        self.failing.lock().unwrap().remove(&object);
    }
    fn pulls(&self, object: ObjectType) -> u32 {
        self.pulls.lock().unwrap().get(&object).copied().unwrap_or(0)
    }
}

#[async_trait]
impl ProviderClient for Scripted {
    async fn pull_page(
        &self,
        _token: &SecretString,
        object: ObjectType,
        _cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        let failure = self.failing.lock().unwrap().get(&object).cloned();
        if let Some(f) = failure {
            return Err(match f {
                Failure::Permanent(text) => ProviderError::permanent(text.to_owned()),
                Failure::NotFound => ProviderError::NotFound,
                Failure::Transient => ProviderError::Transient("HTTP 503".into()),
                Failure::Unauthorized => ProviderError::Unauthorized,
                Failure::RateLimited(secs) => {
                    ProviderError::RateLimited { retry_after: std::time::Duration::from_secs(secs) }
                }
            });
        }
        let n = {
            let mut pulls = self.pulls.lock().unwrap();
            let n = pulls.entry(object).or_default();
            *n += 1;
            *n
        };
        let records = (1..=2)
            .map(|i| RemoteRecord {
                external_id: ExternalId::parse(format!("{object}-{i}")).unwrap(),
                object,
                fields: Fields::from([("name".to_owned(), json!(format!("{object} {i}")))]),
                remote_modified_at: None,
                deleted: false,
                etag: None,
            })
            .collect();
        Ok(PulledPage {
            records,
            cursor: SyncCursor::new(format!("{object}@{n}")),
            has_more: false,
            reconcile_deletes: false,
        })
    }
    async fn refresh(&self, _refresh_token: &SecretString) -> Result<Credentials, ProviderError> {
        Err(ProviderError::Unauthorized)
    }
    fn stats(&self) -> RequestStats {
        RequestStats::default()
    }
}

impl ProviderFactory for Scripted {
    fn client(&self, _connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError> {
        Ok(Box::new(self.clone()))
    }
}

const MISSING_SCOPES: &str = "HTTP 403 MISSING_SCOPES: This app hasn't been granted all required scopes";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2027-02-01T09:00:00Z").unwrap().with_timezone(&Utc)
}

struct World {
    deps: Deps,
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    crm: Scripted,
    conn: Connection,
    jobs: u32,
    queue: Arc<MemoryQueue>,
}

impl World {
    fn new(provider: Provider) -> Self {
        let crm = Scripted::default();
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(t0()));
        let queue = Arc::new(MemoryQueue::new());
        let deps = crate::adapters::memory::TestDeps::new(store.clone())
            .queue(queue.clone())
            .providers(Arc::new(crm.clone()))
            .clock(clock.clone())
            .build();
        let conn = sample_connection("acme", provider, "http://127.0.0.1:1", t0());
        store.put_connection(conn.clone());
        Self { deps, store, clock, crm, conn, jobs: 0, queue }
    }

    async fn run(&mut self, reason: JobReason) -> Result<JobOutcome, super::worker::JobError> {
        self.jobs += 1;
        let job = Job::sync(
            self.conn.tenant_id.clone(),
            self.conn.connection_id.clone(),
            JobId::parse(format!("job-{}", self.jobs)).unwrap(),
            reason,
            crate::ports::Clock::now(self.clock.as_ref()),
        );
        run_job(&self.deps, &job, Deadline::after(std::time::Duration::from_secs(60))).await
    }

    async fn stored(&self) -> Connection {
        ConnectionStore::get(&*self.store, &self.conn.tenant_id, &self.conn.connection_id)
            .await
            .unwrap()
            .unwrap()
    }

    async fn last_run(&self) -> SyncRun {
        let runs = RunStore::list_runs(&*self.store, &self.conn.tenant_id, &self.conn.connection_id, 1);
        runs.await.unwrap().into_iter().next().expect("a run")
    }

    fn records(&self, object: ObjectType) -> usize {
        let all = self.store.records_of(&self.conn.tenant_id, &self.conn.connection_id);
        all.into_iter().filter(|r| r.object == object).count()
    }
}

#[tokio::test]
async fn a_permanent_failure_of_one_object_type_leaves_the_others_synced_and_the_run_partial() {
    let mut w = World::new(Provider::Hubspot);
    w.crm.fail(ObjectType::Notes, Failure::Permanent(MISSING_SCOPES));
    let outcome = w.run(JobReason::Schedule).await.unwrap();
    assert!(matches!(outcome, JobOutcome::Partial { counts, .. } if counts.created == 8), "{outcome:?}");
    for object in [ObjectType::Contacts, ObjectType::Companies, ObjectType::Deals, ObjectType::Activities] {
        assert_eq!(w.records(object), 2, "{object} stored");
    }
    assert_eq!(w.records(ObjectType::Notes), 0);

    let run = w.last_run().await;
    assert_eq!(run.status, RunStatus::Partial);
    assert_eq!(run.objects[&ObjectType::Contacts].outcome, ObjectOutcome::Synced);
    assert_eq!(run.objects[&ObjectType::Deals].created, 2);
    let notes = &run.objects[&ObjectType::Notes];
    assert_eq!(notes.outcome, ObjectOutcome::Failed);
    let error = notes.error.as_ref().expect("the notes error");
    assert_eq!(
        (error.class, error.http_status, error.code.as_deref()),
        (ObjectErrorClass::Permanent, Some(403), Some("MISSING_SCOPES"))
    );
    assert_eq!(error.attempts, 1);
    assert!(
        run.error.as_deref().is_some_and(|e| e.starts_with("notes: HTTP 403 MISSING_SCOPES")),
        "{:?}",
        run.error
    );

    let conn = w.stored().await;
    assert_eq!(conn.status, ConnectionStatus::Synced, "a partial sync is no connection error");
    assert_eq!((conn.last_error, conn.last_sync_at), (None, Some(t0())));
    assert!(!conn.cursors.contains_key(&ObjectType::Notes), "the failed cursor stays where it was");
    assert_eq!(conn.cursors[&ObjectType::Contacts].as_str(), "contacts@1");
    assert_eq!(conn.object_errors[&ObjectType::Notes].retry_at, t0() + Duration::minutes(5));

    let audited = w.store.audit_entries().into_iter().find(|e| {
        e.operation == Operation::Pull && e.outcome == AuditOutcome::Failure && e.detail["object"] == "notes"
    });
    let audited = audited.expect("the object failure is audited");
    assert_eq!(
        (audited.detail["code"].clone(), audited.detail["attempts"].clone()),
        (json!("MISSING_SCOPES"), json!(1))
    );
}

#[tokio::test]
async fn a_failed_object_type_is_skipped_until_its_retry_at_which_doubles_per_failure_then_recovers() {
    let mut w = World::new(Provider::Hubspot);
    w.crm.fail(ObjectType::Notes, Failure::Permanent(MISSING_SCOPES));
    w.run(JobReason::Schedule).await.unwrap();
    assert_eq!(w.crm.pulls(ObjectType::Contacts), 1);

    // Within the backoff: the others sync, notes is skipped (no request) and still reported.
    w.clock.advance(Duration::minutes(4));
    let outcome = w.run(JobReason::Schedule).await.unwrap();
    assert!(matches!(outcome, JobOutcome::Partial { .. }), "{outcome:?}");
    let run = w.last_run().await;
    assert_eq!(run.objects[&ObjectType::Notes].outcome, ObjectOutcome::Skipped);
    assert_eq!(run.objects[&ObjectType::Notes].error.as_ref().map(|e| e.attempts), Some(1));
    assert_eq!(w.crm.pulls(ObjectType::Contacts), 2);

    // After it: tried again, fails again, waits twice as long.
    w.clock.advance(Duration::minutes(2));
    let second_failure = crate::ports::Clock::now(w.clock.as_ref());
    w.run(JobReason::Schedule).await.unwrap();
    let error = w.stored().await.object_errors[&ObjectType::Notes].clone();
    assert_eq!((error.attempts, error.first_failed_at), (2, t0()));
    assert_eq!(error.retry_at, second_failure + Duration::minutes(10));

    // Fixed at the provider, and due: synced, its error gone, the run a success.
    w.crm.heal(ObjectType::Notes);
    w.clock.advance(Duration::minutes(10));
    let outcome = w.run(JobReason::Schedule).await.unwrap();
    assert!(matches!(outcome, JobOutcome::Completed { .. }), "{outcome:?}");
    let conn = w.stored().await;
    assert!(conn.object_errors.is_empty());
    assert_eq!(conn.cursors[&ObjectType::Notes].as_str(), "notes@1");
    assert_eq!(w.records(ObjectType::Notes), 2);
    assert_eq!(w.last_run().await.status, RunStatus::Succeeded);
    let recovered = w.store.audit_entries().into_iter().any(|e| e.detail["recovered"] == json!(true));
    assert!(recovered, "the recovery is audited");
}

#[tokio::test]
async fn a_manual_sync_retries_a_failed_object_type_at_once() {
    let mut w = World::new(Provider::Hubspot);
    w.crm.fail(ObjectType::Notes, Failure::Permanent(MISSING_SCOPES));
    w.run(JobReason::Schedule).await.unwrap();
    w.crm.heal(ObjectType::Notes);
    w.clock.advance(Duration::seconds(30));
    let outcome = w.run(JobReason::Manual).await.unwrap();
    assert!(matches!(outcome, JobOutcome::Completed { .. }), "{outcome:?}");
    assert!(w.stored().await.object_errors.is_empty());
    assert_eq!(w.records(ObjectType::Notes), 2);
}

#[tokio::test]
async fn a_connection_none_of_whose_object_types_syncs_is_in_error_and_scheduled_jobs_back_off() {
    let mut w = World::new(Provider::Google);
    w.crm.fail(
        ObjectType::Events,
        Failure::Permanent("HTTP 403 insufficientPermissions: Insufficient Permission"),
    );
    let outcome = w.run(JobReason::Schedule).await.unwrap();
    assert!(matches!(outcome, JobOutcome::Failed { .. }), "{outcome:?}");
    let conn = w.stored().await;
    assert_eq!(conn.status, ConnectionStatus::Error);
    let why = conn.last_error.unwrap_or_default();
    assert!(why.contains("events: HTTP 403 insufficientPermissions"), "{why}");
    let run = w.last_run().await;
    assert_eq!(
        (run.status, run.objects[&ObjectType::Events].outcome),
        (RunStatus::Failed, ObjectOutcome::Failed)
    );

    // Before its retry_at a scheduled job calls nobody and writes no run.
    w.clock.advance(Duration::minutes(1));
    assert!(matches!(w.run(JobReason::Schedule).await, Ok(JobOutcome::BackingOff)));
    assert_eq!(w.last_run().await.run_id, run.run_id);

    // The retry action (a manual job) tries at once; once it works the connection is synced.
    w.crm.heal(ObjectType::Events);
    assert!(matches!(w.run(JobReason::Manual).await, Ok(JobOutcome::Completed { .. })));
    assert_eq!(w.stored().await.status, ConnectionStatus::Synced);
}

#[tokio::test]
async fn not_found_fails_only_its_object_type_while_rejected_credentials_and_outages_fail_the_job() {
    let mut w = World::new(Provider::Hubspot);
    w.crm.fail(ObjectType::Companies, Failure::NotFound);
    assert!(matches!(w.run(JobReason::Schedule).await, Ok(JobOutcome::Partial { .. })));
    let error = w.stored().await.object_errors[&ObjectType::Companies].clone();
    assert_eq!((error.class, error.http_status), (ObjectErrorClass::NotFound, None));

    let mut w = World::new(Provider::Hubspot);
    w.crm.fail(ObjectType::Contacts, Failure::Transient);
    let err = w.run(JobReason::Schedule).await.expect_err("an outage fails the job");
    assert!(err.is_retryable(), "SQS retries it: {err}");
    assert!(w.stored().await.object_errors.is_empty(), "a transient error is no object error");

    let mut w = World::new(Provider::Hubspot);
    w.crm.fail(ObjectType::Notes, Failure::Unauthorized);
    let err = w.run(JobReason::Schedule).await.expect_err("rejected credentials fail the job");
    assert!(
        !err.is_retryable() && matches!(err, super::worker::JobError::Provider(ProviderError::Unauthorized))
    );
    assert!(w.stored().await.object_errors.is_empty());
}

#[tokio::test]
async fn a_transient_failure_after_checkpointed_pages_continues_in_a_fresh_job_instead_of_spending_a_receive()
{
    let mut w = World::new(Provider::Hubspot);
    // Contacts and companies pull (and checkpoint); deals then meet an outage.
    w.crm.fail(ObjectType::Deals, Failure::Transient);
    let outcome = w.run(JobReason::Schedule).await.expect("acknowledged, not handed back to SQS");
    assert!(matches!(outcome, JobOutcome::Continued { .. }), "{outcome:?}");
    assert_eq!((w.records(ObjectType::Contacts), w.records(ObjectType::Companies)), (2, 2), "progress kept");
    let conn = w.stored().await;
    assert_eq!(conn.cursors[&ObjectType::Contacts].as_str(), "contacts@1");
    assert!(!conn.cursors.contains_key(&ObjectType::Deals));
    let run = w.last_run().await;
    assert_eq!(run.status, RunStatus::Continued);
    assert!(run.error.as_deref().is_some_and(|e| e.contains("503")), "{:?}", run.error);
    let jobs = w.queue.take();
    assert_eq!(jobs.len(), 1, "one fresh job continues");
    assert_eq!(jobs[0].reason, JobReason::Continuation);
    let resume = jobs[0].not_before.expect("after a backoff");
    assert!(resume > t0() && resume <= t0() + Duration::minutes(10), "{resume}");
    let retry = w.store.audit_entries().into_iter().find(|e| e.operation == Operation::Retry);
    let retry = retry.expect("the failure is audited");
    assert_eq!(retry.detail["continued_by"], json!(jobs[0].job_id));

    // The outage passes: the continuation finishes the sync from the checkpoints.
    w.crm.heal(ObjectType::Deals);
    w.clock.advance(Duration::minutes(10));
    let outcome = w.run(JobReason::Continuation).await.unwrap();
    assert!(matches!(outcome, JobOutcome::Completed { .. }), "{outcome:?}");
    assert_eq!(w.records(ObjectType::Deals), 2);
    assert_eq!(w.records(ObjectType::Contacts), 2, "nothing pulled twice into a second record");
}

#[tokio::test]
async fn a_transient_failure_before_any_progress_is_still_handed_back_to_sqs() {
    let mut w = World::new(Provider::Hubspot);
    w.crm.fail(ObjectType::Contacts, Failure::Transient);
    let err = w.run(JobReason::Schedule).await.expect_err("retryable");
    assert!(err.is_retryable());
    assert!(w.queue.take().is_empty(), "no continuation without progress");
}

#[tokio::test]
async fn a_rate_limit_after_checkpointed_pages_continues_no_sooner_than_the_provider_asked() {
    let mut w = World::new(Provider::Salesforce);
    w.crm.fail(ObjectType::Deals, Failure::RateLimited(3_600));
    let outcome = w.run(JobReason::Schedule).await.expect("acknowledged");
    assert!(matches!(outcome, JobOutcome::Continued { .. }), "{outcome:?}");
    let jobs = w.queue.take();
    let resume = jobs.first().and_then(|j| j.not_before).expect("a continuation after a wait");
    assert!(resume >= t0() + Duration::hours(1), "{resume}");
}
