//! Metrics in CloudWatch Embedded Metric Format (EMF): every metric's name, unit and dimensions.
//!
//! Values are recorded through the `metrics` facade; `metrics_cloudwatch_embedded` keeps them per
//! dimension set and writes one JSON document per set (an `_aws` member naming the namespace,
//! dimensions and metrics, then the values) when the function flushes, once per invocation.
//! Lambda's log stream hands those lines to CloudWatch, which extracts the metrics.
//!
//! Dimensions are bounded by construction: the recording functions below take provider, object
//! type and run status enums or a closed set of constants, never a string from outside, so no
//! tenant, connection, job or record id can become a dimension (those stay in the spans of the
//! logs). Every metric also carries `Function` (dispatcher, worker, api or webhooks).
//!
//! Without [`install`] (the local stack, tests) recording does nothing.

use std::io::Write;
use std::sync::OnceLock;

use metrics::{Unit, counter, histogram};
use metrics_cloudwatch_embedded::Collector;

use crate::domain::{Provider, SyncRun};

/// `METRICS_NAMESPACE`: the CloudWatch namespace (template.yaml: `Syncbridge/{stack name}`).
pub const NAMESPACE_ENV: &str = "METRICS_NAMESPACE";
pub const DEFAULT_NAMESPACE: &str = "Syncbridge";

/// Records read from a provider, per `Provider` and `Object`.
pub const RECORDS_PULLED: &str = "RecordsPulled";
/// Records created, updated or deleted in our store by a pull, per `Provider` and `Object`.
pub const RECORDS_WRITTEN: &str = "RecordsWritten";
/// Records pulled that changed nothing (no write), per `Provider` and `Object`.
pub const RECORDS_UNCHANGED: &str = "RecordsUnchanged";
/// Runs by `Provider` and `Outcome` (`succeeded`, `partial`, `failed`, `continued`).
pub const RUNS: &str = "Runs";
/// Duration of each run in milliseconds, per `Provider`.
pub const RUN_DURATION: &str = "RunDuration";
/// Push items by `Provider` and `Outcome` (`completed`, `failed`, `retrying`).
pub const PUSHES: &str = "Pushes";
/// Conflicts parked for a person, per `Provider`.
pub const CONFLICTS_OPENED: &str = "ConflictsOpened";
/// Jobs that failed before finishing a run, by `Outcome`: `retried` (SQS delivers them again)
/// or `rejected` (permanent: recorded and acknowledged).
pub const JOBS_FAILED: &str = "JobsFailed";
/// HTTP requests sent to a provider (every attempt), per `Provider` (`oauth` for the connect
/// flow's token and account endpoints).
pub const PROVIDER_REQUESTS: &str = "ProviderRequests";
/// Provider answers that asked us to slow down (429, or a dialect's rate-limit answer such as
/// Google's 403 `rateLimitExceeded`), per `Provider`.
pub const PROVIDER_RATE_LIMITED: &str = "ProviderRateLimited";
/// Dispatcher: due connections read from the index, slots claimed, jobs enqueued, and slots
/// another dispatcher claimed first.
pub const DISPATCHER_DUE: &str = "DispatcherDue";
pub const DISPATCHER_CLAIMED: &str = "DispatcherClaimed";
pub const DISPATCHER_ENQUEUED: &str = "DispatcherEnqueued";
pub const DISPATCHER_LOST_RACES: &str = "DispatcherLostRaces";
/// Notifications in verified webhook requests, by `Provider` and `Result` (`accepted`,
/// `duplicate`, `echo`, `unmatched`).
pub const WEBHOOK_NOTIFICATIONS: &str = "WebhookNotifications";
/// Jobs the webhooks handed to the queue, per `Provider`.
pub const WEBHOOK_JOBS: &str = "WebhookJobs";
/// Webhook requests refused, by `Provider` and `Reason` (`unverified`, `invalid`, `unavailable`).
pub const WEBHOOK_REFUSED: &str = "WebhookRefused";
/// Jobs moved from the dead-letter queue back to the jobs queue.
pub const DLQ_REDRIVEN: &str = "DlqRedriven";

const COUNTS: &[&str] = &[
    RECORDS_PULLED,
    RECORDS_WRITTEN,
    RECORDS_UNCHANGED,
    RUNS,
    PUSHES,
    CONFLICTS_OPENED,
    JOBS_FAILED,
    PROVIDER_REQUESTS,
    PROVIDER_RATE_LIMITED,
    DISPATCHER_DUE,
    DISPATCHER_CLAIMED,
    DISPATCHER_ENQUEUED,
    DISPATCHER_LOST_RACES,
    WEBHOOK_NOTIFICATIONS,
    WEBHOOK_JOBS,
    WEBHOOK_REFUSED,
    DLQ_REDRIVEN,
];

static COLLECTOR: OnceLock<&'static Collector> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
#[error("the EMF metrics recorder could not be installed: {0}")]
pub struct InstallError(String);

/// Installs the EMF recorder as the process's metrics recorder, once: `namespace` and the
/// `Function` dimension of every metric. A second call keeps the first recorder.
pub fn install(namespace: &str, function: &'static str) -> Result<(), InstallError> {
    if COLLECTOR.get().is_some() {
        return Ok(());
    }
    let collector = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(namespace.to_owned())
        .with_dimension("Function", function)
        .init()
        .map_err(|e| InstallError(e.to_string()))?;
    let _ = COLLECTOR.set(collector);
    for name in COUNTS {
        metrics::describe_counter!(*name, Unit::Count, "");
    }
    metrics::describe_histogram!(RUN_DURATION, Unit::Milliseconds, "");
    Ok(())
}

/// Writes what was recorded since the last flush to stdout (one EMF line per dimension set) and
/// starts over. Each function calls it once per invocation; without [`install`] it does nothing.
pub fn flush() {
    let stdout = std::io::stdout();
    if let Err(e) = flush_to(stdout.lock()) {
        tracing::warn!(error = %e, "could not write the metrics");
    }
}

/// [`flush`] into `out`.
pub fn flush_to(mut out: impl Write) -> std::io::Result<()> {
    match COLLECTOR.get() {
        Some(collector) => collector.flush(&mut out),
        None => Ok(()),
    }
}

/// An axum router whose every response flushes the metrics (the API and webhooks Lambdas: one
/// request per invocation).
pub fn flush_after_each_response(
    router: axum::Router,
) -> tower::util::MapResponse<axum::Router, fn(axum::response::Response) -> axum::response::Response> {
    fn flushed(response: axum::response::Response) -> axum::response::Response {
        flush();
        response
    }
    tower::util::MapResponse::new(router, flushed)
}

fn add(name: &'static str, labels: &[(&'static str, &'static str)], value: u64) {
    if value > 0 {
        counter!(name, labels).increment(value);
    }
}

/// A run the worker recorded: records per object type, the run's outcome and duration, pushes
/// and conflicts opened.
pub fn run_finished(provider: Provider, run: &SyncRun) {
    let p = provider.as_str();
    for (object, o) in &run.objects {
        let labels = [("Provider", p), ("Object", object.as_str())];
        add(RECORDS_PULLED, &labels, o.pulled);
        add(RECORDS_WRITTEN, &labels, o.created + o.updated + o.deleted);
        add(RECORDS_UNCHANGED, &labels, o.unchanged);
    }
    add(RUNS, &[("Provider", p), ("Outcome", run.status.as_str())], 1);
    histogram!(RUN_DURATION, "Provider" => p).record(run.duration_ms as f64);
    let c = &run.counts;
    add(PUSHES, &[("Provider", p), ("Outcome", "completed")], c.pushed);
    add(PUSHES, &[("Provider", p), ("Outcome", "failed")], c.push_failed);
    add(PUSHES, &[("Provider", p), ("Outcome", "retrying")], c.push_retrying);
    add(CONFLICTS_OPENED, &[("Provider", p)], c.conflicts_parked);
}

/// A job that failed before finishing a run: `retried` by SQS, or not.
pub fn job_failed(retried: bool) {
    add(JOBS_FAILED, &[("Outcome", if retried { "retried" } else { "rejected" })], 1);
}

/// One attempt of a provider request (`provider`: a dialect's fixed label).
pub fn provider_request(provider: &'static str) {
    add(PROVIDER_REQUESTS, &[("Provider", provider)], 1);
}

/// A provider answer that asked us to slow down.
pub fn provider_rate_limited(provider: &'static str) {
    add(PROVIDER_RATE_LIMITED, &[("Provider", provider)], 1);
}

/// What one dispatcher tick found, claimed and enqueued.
pub fn dispatched(due: u64, claimed: u64, enqueued: u64, lost_races: u64) {
    add(DISPATCHER_DUE, &[], due);
    add(DISPATCHER_CLAIMED, &[], claimed);
    add(DISPATCHER_ENQUEUED, &[], enqueued);
    add(DISPATCHER_LOST_RACES, &[], lost_races);
}

/// The notifications of one verified webhook request, by what became of them.
pub fn webhook_handled(
    provider: Provider,
    accepted: u64,
    duplicates: u64,
    echoes: u64,
    unmatched: u64,
    jobs: u64,
) {
    let p = provider.as_str();
    add(WEBHOOK_NOTIFICATIONS, &[("Provider", p), ("Result", "accepted")], accepted);
    add(WEBHOOK_NOTIFICATIONS, &[("Provider", p), ("Result", "duplicate")], duplicates);
    add(WEBHOOK_NOTIFICATIONS, &[("Provider", p), ("Result", "echo")], echoes);
    add(WEBHOOK_NOTIFICATIONS, &[("Provider", p), ("Result", "unmatched")], unmatched);
    add(WEBHOOK_JOBS, &[("Provider", p)], jobs);
}

/// Why a webhook request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its proof did not verify (401).
    Unverified,
    /// Malformed, too large or not configured (4xx).
    Invalid,
    /// Our store or queue failed (5xx; the provider retries).
    Unavailable,
}

/// A refused webhook request.
pub fn webhook_refused(provider: Provider, refusal: Refusal) {
    let reason = match refusal {
        Refusal::Unverified => "unverified",
        Refusal::Invalid => "invalid",
        Refusal::Unavailable => "unavailable",
    };
    add(WEBHOOK_REFUSED, &[("Provider", provider.as_str()), ("Reason", reason)], 1);
}

/// Jobs moved from the dead-letter queue back to the jobs queue.
pub fn redriven(moved: u64) {
    add(DLQ_REDRIVEN, &[], moved);
}
