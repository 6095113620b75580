//! A connection's health (healthy / degraded / failed, with reasons), its retry state after failed
//! jobs, and the summary of a window of runs: pure rules over what the stores hold, so the API
//! only gathers the inputs.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::Value;

use super::audit::{AuditEntry, AuditOutcome};
use super::connection::{Connection, ConnectionStatus, ObjectError, ObjectErrorClass};
use super::ids::Provider;
use super::run::{RunStatus, SyncRun};

/// How bad one finding is. Ordered: the worst finding decides the overall status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing, not a problem (for example: paused).
    Info,
    /// Syncing works but needs attention.
    Degraded,
    /// Syncing does not work until something is done.
    Failed,
}

/// The overall health of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Failed,
}

/// One finding: a stable `code` for programs, a `message` for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HealthReason {
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
}

/// What the health rules look at.
#[derive(Debug, Clone)]
pub struct HealthInput<'a> {
    pub connection: &'a Connection,
    pub now: DateTime<Utc>,
    /// The newest run, if any.
    pub last_run: Option<&'a SyncRun>,
    pub retry: &'a RetryState,
    /// Open conflicts of the connection (counted up to some bound).
    pub open_conflicts: usize,
    /// Push items that failed for good.
    pub failed_pushes: usize,
    /// `WEBHOOK_BASE_URL`: when set, calendar connections are expected to hold a push channel.
    pub webhook_base_url: Option<&'a str>,
}

/// A token without a refresh token that expires within this is `token_expiring`.
pub const TOKEN_WARNING_HOURS: i64 = 24;
/// A connection whose last sync is older than this many intervals is `stale`.
pub const STALE_INTERVALS: i32 = 3;

/// The health rules, worst first:
/// - failed: `sync_error` (status `error`: the worker gave up; the retry action applies),
///   `last_run_failed`, `token_expired` (expired and no refresh token);
/// - degraded: `object_failed` (one per object type whose pull failed for good: the others
///   sync; it is retried from its `retry_at`, or at once by a manual sync),
///   `retrying` (the last job attempt failed and SQS will retry it),
///   `token_expiring` (within 24 h, no refresh token), `open_conflicts`, `push_failed`,
///   `channel_missing` / `channel_expired` (Google and Microsoft connections that have synced,
///   only when `WEBHOOK_BASE_URL` is set), `stale` (the last sync, or the creation of a connection
///   that never synced, is older than 3 intervals);
/// - info: `paused` (a paused connection is never `stale` and needs no channel).
pub fn assess(input: &HealthInput<'_>) -> (HealthStatus, Vec<HealthReason>) {
    let c = input.connection;
    let now = input.now;
    let mut reasons = Vec::new();
    let mut add = |code: &'static str, severity: Severity, message: String| {
        reasons.push(HealthReason { code, severity, message });
    };
    if c.status == ConnectionStatus::Error {
        let why = c.last_error.as_deref().unwrap_or("the last sync failed");
        add("sync_error", Severity::Failed, format!("syncing stopped: {why}; use the retry action"));
    }
    if input.last_run.is_some_and(|r| r.status == RunStatus::Failed) {
        add("last_run_failed", Severity::Failed, "the last run failed".to_owned());
    }
    let creds = &c.credentials;
    if creds.refresh_token.is_none()
        && let Some(expires) = creds.expires_at
    {
        if expires <= now {
            add(
                "token_expired",
                Severity::Failed,
                "the access token expired and there is no refresh token: reconnect".to_owned(),
            );
        } else if expires <= now + Duration::hours(TOKEN_WARNING_HOURS) {
            add(
                "token_expiring",
                Severity::Degraded,
                format!("the access token expires at {expires} and there is no refresh token"),
            );
        }
    }
    for (object, e) in &c.object_errors {
        let times = if e.attempts == 1 { "attempt" } else { "attempts" };
        add(
            "object_failed",
            Severity::Degraded,
            format!(
                "{object} does not sync: {} ({} {times} since {}); the other object types sync; {}; next automatic attempt at {}, or sync now",
                e.message,
                e.attempts,
                e.first_failed_at,
                object_error_advice(e),
                e.retry_at
            ),
        );
    }
    if let RetryState { state: RetryPhase::Retrying, attempts, next_attempt_at, .. } = input.retry {
        let when = next_attempt_at.map(|t| format!(", next attempt at {t}")).unwrap_or_default();
        add("retrying", Severity::Degraded, format!("the last job failed (attempt {attempts}){when}"));
    }
    if input.open_conflicts > 0 {
        add(
            "open_conflicts",
            Severity::Degraded,
            format!("{} open conflict(s) wait for a decision", input.open_conflicts),
        );
    }
    if input.failed_pushes > 0 {
        add("push_failed", Severity::Degraded, format!("{} push item(s) failed", input.failed_pushes));
    }
    if c.is_paused() {
        add("paused", Severity::Info, "the connection is paused: nothing is synced".to_owned());
    } else {
        let has_channels =
            matches!(c.provider, Provider::Google | Provider::Microsoft | Provider::GoogleDrive);
        if input.webhook_base_url.is_some() && has_channels && c.last_sync_at.is_some() {
            match &c.push_channel {
                None => add(
                    "channel_missing",
                    Severity::Degraded,
                    "no push channel is open: changes arrive only with scheduled syncs".to_owned(),
                ),
                Some(ch) if ch.expires_at <= now => add(
                    "channel_expired",
                    Severity::Degraded,
                    format!("the push channel expired at {}", ch.expires_at),
                ),
                Some(_) => {}
            }
        }
        let since = c.last_sync_at.unwrap_or(c.created_at);
        let limit = Duration::minutes(i64::from(c.interval_minutes) * i64::from(STALE_INTERVALS));
        if now - since > limit {
            let what = match c.last_sync_at {
                Some(at) => format!("the last sync finished at {at}"),
                None => "the connection has never synced".to_owned(),
            };
            add("stale", Severity::Degraded, format!("{what}, more than {STALE_INTERVALS} intervals ago"));
        }
    }
    let status = match reasons.iter().map(|r| r.severity).max() {
        Some(Severity::Failed) => HealthStatus::Failed,
        Some(Severity::Degraded) => HealthStatus::Degraded,
        _ => HealthStatus::Healthy,
    };
    (status, reasons)
}

/// What a person can do about an object type's error.
pub fn object_error_advice(e: &ObjectError) -> &'static str {
    match (e.class, e.http_status) {
        (_, Some(403)) => {
            "the token lacks a permission (scope) for it: grant it in the provider and reconnect"
        }
        (ObjectErrorClass::NotFound, _) | (_, Some(404)) => {
            "the provider does not offer it to this account: check the account's plan and settings"
        }
        (_, Some(400)) => "the provider refused the query: check the connection's field mapping",
        _ => "see the message",
    }
}

/// Where a connection stands after failed job attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryPhase {
    /// No failure since the last successful sync.
    None,
    /// The last attempt failed; SQS delivers the job again (at `next_attempt_at`).
    Retrying,
    /// The worker gave up (status `error`): only the retry action restarts syncing.
    Failed,
}

/// The retry state derived from the connection and its newest failure entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RetryState {
    pub state: RetryPhase,
    /// Attempts of the failing job so far (its SQS receive count), 0 without a failure.
    pub attempts: u32,
    /// After this many attempts the job goes to the dead-letter queue.
    pub max_attempts: Option<u32>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The earliest time of the next automatic attempt (the backoff has jitter: it is at most
    /// twice as far from the failure as this).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

fn detail_u32(detail: &Value, name: &str) -> Option<u32> {
    detail.get(name).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok())
}

/// Derives the retry state from the connection and its failure entries (newest first; entries
/// of operations `retry`/`error` with outcome `failure`/`rejected`). Failures from before the last
/// successful sync are history, not the current state.
pub fn retry_state(connection: &Connection, failures: &[AuditEntry]) -> RetryState {
    let current = failures
        .iter()
        .find(|e| e.outcome != AuditOutcome::Success)
        .filter(|e| connection.last_sync_at.is_none_or(|at| e.at > at));
    let Some(latest) = current else {
        let state =
            if connection.status == ConnectionStatus::Error { RetryPhase::Failed } else { RetryPhase::None };
        return RetryState {
            state,
            attempts: 0,
            max_attempts: None,
            last_attempt_at: None,
            next_attempt_at: None,
        };
    };
    let next_attempt_at = latest
        .detail
        .get("next_attempt_at")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let attempts = detail_u32(&latest.detail, "attempt").unwrap_or(1);
    let state = if connection.status == ConnectionStatus::Error {
        RetryPhase::Failed
    } else if latest.outcome == AuditOutcome::Failure && next_attempt_at.is_some() {
        RetryPhase::Retrying
    } else {
        RetryPhase::None
    };
    RetryState {
        state,
        attempts,
        max_attempts: detail_u32(&latest.detail, "max_attempts"),
        last_attempt_at: Some(latest.at),
        next_attempt_at: if state == RetryPhase::Retrying { next_attempt_at } else { None },
    }
}

/// Counts, duration and success rate over a window of runs.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunSummary {
    /// Runs in the window.
    pub runs: usize,
    pub succeeded: usize,
    /// Runs that ran out of time and handed over to a continuation (parts of one sync).
    pub continued: usize,
    /// Runs that finished with some object types failed (the others synced).
    pub partial: usize,
    pub failed: usize,
    /// Failed job attempts audited in the same time span (the worker records a failed attempt as
    /// an audit entry, not as a run).
    pub failed_attempts: usize,
    /// `succeeded / (succeeded + partial + failed + failed_attempts)`; `null` when nothing finished.
    pub success_rate: Option<f64>,
    /// Mean `duration_ms` of the runs; `null` without runs.
    pub mean_duration_ms: Option<f64>,
    pub max_duration_ms: Option<u64>,
    /// Records processed (pulled, pushed) by the runs.
    pub processed: u64,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Summarises `runs` (any order) and `failed_attempts` failures in their span.
pub fn summarize(runs: &[SyncRun], failed_attempts: usize) -> RunSummary {
    let count = |s: RunStatus| runs.iter().filter(|r| r.status == s).count();
    let (succeeded, continued, partial, failed) = (
        count(RunStatus::Succeeded),
        count(RunStatus::Continued),
        count(RunStatus::Partial),
        count(RunStatus::Failed),
    );
    let finished = succeeded + partial + failed + failed_attempts;
    let total_ms: u64 = runs.iter().map(|r| r.duration_ms).sum();
    RunSummary {
        runs: runs.len(),
        succeeded,
        continued,
        partial,
        failed,
        failed_attempts,
        success_rate: (finished > 0).then(|| succeeded as f64 / finished as f64),
        mean_duration_ms: (!runs.is_empty()).then(|| total_ms as f64 / runs.len() as f64),
        max_duration_ms: runs.iter().map(|r| r.duration_ms).max(),
        processed: runs.iter().map(|r| r.counts.processed()).sum(),
        from: runs.iter().map(|r| r.started_at).min(),
        to: runs.iter().map(|r| r.finished_at).max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::channel::PushChannel;
    use crate::domain::connection::{ConnectionSettings, Credentials, NewConnection};
    use crate::domain::{ConnectionId, JobId, JobReason, Operation, RunCounts, RunId, TenantId};
    use chrono::TimeZone;
    use secrecy::SecretString;
    use serde_json::json;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).single().unwrap()
    }

    fn conn(provider: Provider) -> Connection {
        let mut c = Connection::new(
            TenantId::parse("acme").unwrap(),
            NewConnection {
                provider,
                base_url: "http://127.0.0.1:1".into(),
                credentials: Credentials {
                    access_token: SecretString::from("a"),
                    refresh_token: Some(SecretString::from("r")),
                    expires_at: Some(t0() + Duration::hours(1)),
                },
                interval_minutes: 15,
                settings: ConnectionSettings::default(),
            },
            t0() - Duration::days(1),
        );
        c.status = ConnectionStatus::Synced;
        c.last_sync_at = Some(t0() - Duration::minutes(10));
        c
    }

    fn run(status: RunStatus, duration_ms: u64, minutes_ago: i64) -> SyncRun {
        SyncRun {
            tenant_id: TenantId::parse("acme").unwrap(),
            connection_id: ConnectionId::parse("c1").unwrap(),
            run_id: RunId::generate(),
            job_id: JobId::parse("j1").unwrap(),
            reason: JobReason::Schedule,
            status,
            started_at: t0() - Duration::minutes(minutes_ago),
            finished_at: t0() - Duration::minutes(minutes_ago) + Duration::milliseconds(duration_ms as i64),
            duration_ms,
            counts: RunCounts::default(),
            error: None,
            objects: Default::default(),
        }
    }

    const NO_RETRY: RetryState = RetryState {
        state: RetryPhase::None,
        attempts: 0,
        max_attempts: None,
        last_attempt_at: None,
        next_attempt_at: None,
    };

    fn input<'a>(c: &'a Connection, retry: &'a RetryState) -> HealthInput<'a> {
        HealthInput {
            connection: c,
            now: t0(),
            last_run: None,
            retry,
            open_conflicts: 0,
            failed_pushes: 0,
            webhook_base_url: None,
        }
    }

    fn codes(reasons: &[HealthReason]) -> Vec<&'static str> {
        reasons.iter().map(|r| r.code).collect()
    }

    #[test]
    fn a_recently_synced_connection_with_nothing_open_is_healthy() {
        let c = conn(Provider::Hubspot);
        let (status, reasons) = assess(&input(&c, &NO_RETRY));
        assert_eq!((status, reasons), (HealthStatus::Healthy, vec![]));
    }

    #[test]
    fn error_status_failed_run_and_expired_token_without_refresh_each_fail_the_connection() {
        let mut c = conn(Provider::Hubspot);
        c.status = ConnectionStatus::Error;
        let (status, reasons) = assess(&input(&c, &NO_RETRY));
        assert_eq!((status, codes(&reasons)), (HealthStatus::Failed, vec!["sync_error"]));

        let c = conn(Provider::Hubspot);
        let failed = run(RunStatus::Failed, 10, 5);
        let (status, reasons) = assess(&HealthInput { last_run: Some(&failed), ..input(&c, &NO_RETRY) });
        assert_eq!((status, codes(&reasons)), (HealthStatus::Failed, vec!["last_run_failed"]));

        let mut c = conn(Provider::Hubspot);
        c.credentials.refresh_token = None;
        c.credentials.expires_at = Some(t0() - Duration::seconds(1));
        let (status, reasons) = assess(&input(&c, &NO_RETRY));
        assert_eq!((status, codes(&reasons)), (HealthStatus::Failed, vec!["token_expired"]));
        c.credentials.expires_at = Some(t0() + Duration::hours(2));
        let (status, reasons) = assess(&input(&c, &NO_RETRY));
        assert_eq!((status, codes(&reasons)), (HealthStatus::Degraded, vec!["token_expiring"]));
        c.credentials.refresh_token = Some(SecretString::from("r"));
        c.credentials.expires_at = Some(t0() - Duration::hours(2));
        assert_eq!(assess(&input(&c, &NO_RETRY)).0, HealthStatus::Healthy, "a refresh token renews it");
    }

    #[test]
    fn conflicts_failed_pushes_and_retries_degrade_and_the_worst_reason_wins() {
        let c = conn(Provider::Hubspot);
        let retrying = RetryState {
            state: RetryPhase::Retrying,
            attempts: 2,
            max_attempts: Some(5),
            last_attempt_at: Some(t0()),
            next_attempt_at: Some(t0() + Duration::minutes(1)),
        };
        let i = HealthInput { open_conflicts: 3, failed_pushes: 1, ..input(&c, &retrying) };
        let (status, reasons) = assess(&i);
        assert_eq!(status, HealthStatus::Degraded);
        assert_eq!(codes(&reasons), vec!["retrying", "open_conflicts", "push_failed"]);
        let failed = run(RunStatus::Failed, 10, 5);
        assert_eq!(assess(&HealthInput { last_run: Some(&failed), ..i }).0, HealthStatus::Failed);
    }

    #[test]
    fn a_failed_object_type_degrades_the_connection_naming_the_type_the_error_and_the_next_attempt() {
        use crate::domain::{ObjectError, ObjectErrorClass, ObjectType};
        let mut c = conn(Provider::Hubspot);
        let text = "HTTP 403 MISSING_SCOPES: requires crm.objects.notes.read";
        let error = ObjectError::failed(None, ObjectErrorClass::Permanent, text, t0() - Duration::minutes(1));
        c.object_errors.insert(ObjectType::Notes, error.clone());
        let partial = run(RunStatus::Partial, 10, 1);
        let (status, reasons) = assess(&HealthInput { last_run: Some(&partial), ..input(&c, &NO_RETRY) });
        assert_eq!((status, codes(&reasons)), (HealthStatus::Degraded, vec!["object_failed"]));
        let message = &reasons[0].message;
        assert!(message.starts_with("notes does not sync: HTTP 403 MISSING_SCOPES"), "{message}");
        assert!(message.contains("grant it") && message.contains(&error.retry_at.to_string()), "{message}");
        c.status = ConnectionStatus::Error;
        assert_eq!(assess(&input(&c, &NO_RETRY)).0, HealthStatus::Failed, "no object type synced: error");
    }

    #[test]
    fn a_sync_older_than_three_intervals_is_stale_unless_paused() {
        let mut c = conn(Provider::Hubspot);
        c.last_sync_at = Some(t0() - Duration::minutes(45));
        assert_eq!(assess(&input(&c, &NO_RETRY)).0, HealthStatus::Healthy, "exactly 3 intervals is fine");
        c.last_sync_at = Some(t0() - Duration::minutes(46));
        let (status, reasons) = assess(&input(&c, &NO_RETRY));
        assert_eq!((status, codes(&reasons)), (HealthStatus::Degraded, vec!["stale"]));
        c.last_sync_at = None;
        assert_eq!(codes(&assess(&input(&c, &NO_RETRY)).1), vec!["stale"], "never synced in a day");
        c.paused_at = Some(t0() - Duration::hours(2));
        let (status, reasons) = assess(&input(&c, &NO_RETRY));
        assert_eq!((status, codes(&reasons)), (HealthStatus::Healthy, vec!["paused"]));
    }

    #[test]
    fn calendar_channels_are_checked_only_when_webhooks_are_configured() {
        let mut c = conn(Provider::Google);
        fn with_hooks(c: &Connection) -> HealthInput<'_> {
            HealthInput { webhook_base_url: Some("https://hooks.example"), ..input(c, &NO_RETRY) }
        }
        assert_eq!(assess(&input(&c, &NO_RETRY)).0, HealthStatus::Healthy);
        assert_eq!(codes(&assess(&with_hooks(&c)).1), vec!["channel_missing"]);
        c.push_channel = Some(PushChannel {
            id: "ch".into(),
            resource_id: None,
            secret: SecretString::from("s"),
            expires_at: t0() - Duration::minutes(1),
        });
        assert_eq!(codes(&assess(&with_hooks(&c)).1), vec!["channel_expired"]);
        if let Some(ch) = c.push_channel.as_mut() {
            ch.expires_at = t0() + Duration::days(3);
        }
        assert_eq!(assess(&with_hooks(&c)).0, HealthStatus::Healthy);
        let hubspot = conn(Provider::Hubspot);
        assert_eq!(assess(&with_hooks(&hubspot)).0, HealthStatus::Healthy, "HubSpot has no channels");
    }

    fn failure(minutes_ago: i64, attempt: u32, next: Option<DateTime<Utc>>) -> AuditEntry {
        AuditEntry::new(
            TenantId::parse("acme").unwrap(),
            Operation::Retry,
            AuditOutcome::Failure,
            "worker",
            t0() - Duration::minutes(minutes_ago),
        )
        .detail(json!({ "job_id": "j1", "error": "provider temporarily failed", "attempt": attempt, "max_attempts": 5, "next_attempt_at": next }))
    }

    #[test]
    fn retry_state_follows_the_newest_failure_since_the_last_successful_sync() {
        let mut c = conn(Provider::Hubspot);
        let next = t0() + Duration::minutes(1);
        let state = retry_state(&c, &[failure(1, 2, Some(next)), failure(3, 1, None)]);
        assert_eq!(
            (state.state, state.attempts, state.max_attempts, state.next_attempt_at),
            (RetryPhase::Retrying, 2, Some(5), Some(next))
        );
        let old = retry_state(&c, &[failure(60, 2, Some(next))]);
        assert_eq!((old.state, old.attempts), (RetryPhase::None, 0), "a sync succeeded since");
        c.status = ConnectionStatus::Error;
        let gave_up = retry_state(&c, &[failure(1, 5, None)]);
        assert_eq!((gave_up.state, gave_up.attempts, gave_up.next_attempt_at), (RetryPhase::Failed, 5, None));
        assert_eq!(retry_state(&c, &[]).state, RetryPhase::Failed);
    }

    #[test]
    fn run_summary_counts_statuses_and_rates_successes_over_finished_attempts() {
        let runs = [
            run(RunStatus::Succeeded, 100, 30),
            run(RunStatus::Continued, 300, 20),
            run(RunStatus::Succeeded, 200, 10),
            run(RunStatus::Failed, 400, 5),
        ];
        let s = summarize(&runs, 1);
        assert_eq!((s.runs, s.succeeded, s.continued, s.failed, s.failed_attempts), (4, 2, 1, 1, 1));
        assert_eq!(s.success_rate, Some(0.5));
        assert_eq!(s.mean_duration_ms, Some(250.0));
        let with_partial = summarize(&[runs[0].clone(), run(RunStatus::Partial, 100, 1)], 0);
        assert_eq!(
            (with_partial.partial, with_partial.success_rate),
            (1, Some(0.5)),
            "partial is no success"
        );
        assert_eq!(s.max_duration_ms, Some(400));
        assert_eq!(s.from, Some(t0() - Duration::minutes(30)));
        let empty = summarize(&[], 0);
        assert_eq!((empty.success_rate, empty.mean_duration_ms, empty.runs), (None, None, 0));
        assert_eq!(summarize(&[], 2).success_rate, Some(0.0), "only failures: 0 %");
    }
}
