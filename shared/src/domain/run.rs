//! Sync runs: one record per worker invocation of a job, with its counts and duration, and what
//! happened to each object type.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::connection::ObjectError;
use super::ids::{ConnectionId, JobId, ObjectType, RunId, TenantId};
use super::job::JobReason;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    /// Ran out of time, checkpointed and enqueued a continuation job.
    Continued,
    /// Finished, but at least one object type failed (or waits for its retry after failing):
    /// the other object types synced. See the run's `objects`.
    Partial,
    Failed,
}

impl RunStatus {
    /// As serialized (and the `Outcome` of the `Runs` metric).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Continued => "continued",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
        }
    }
}

/// What one object type did in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectOutcome {
    /// Pulled up to the present.
    Synced,
    /// Stopped for the deadline; the continuation job carries on from its cursor.
    Continued,
    /// Its pull failed with a permanent provider error: its cursor stays, the others went on.
    Failed,
    /// Not pulled: it failed before and waits for its `retry_at`.
    Skipped,
}

/// One object type of a run: what it did, its counts and, when it failed or was skipped, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectRun {
    pub outcome: ObjectOutcome,
    #[serde(default)]
    pub pulled: u64,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub updated: u64,
    #[serde(default)]
    pub deleted: u64,
    #[serde(default)]
    pub unchanged: u64,
    #[serde(default)]
    pub pages: u64,
    /// The object type's error (outcome `failed` or `skipped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ObjectError>,
}

impl ObjectRun {
    pub fn new(outcome: ObjectOutcome) -> Self {
        Self { outcome, pulled: 0, created: 0, updated: 0, deleted: 0, unchanged: 0, pages: 0, error: None }
    }
}

/// What one run did. `processed = succeeded + failed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct RunCounts {
    pub pulled: u64,
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub failed: u64,
    /// HTTP requests made to the provider, and how many of them were answered 429.
    pub requests: u64,
    pub rate_limited: u64,
    pub pages: u64,
    /// Pre-meeting research tasks opened, moved and cancelled from calendar events.
    pub tasks_opened: u64,
    pub tasks_updated: u64,
    pub tasks_cancelled: u64,
    /// Conflicts decided by policy, and conflicts newly parked for a person.
    pub conflicts_decided: u64,
    pub conflicts_parked: u64,
    /// Push items completed, failed for good, and left to retry.
    pub pushed: u64,
    pub push_failed: u64,
    pub push_retrying: u64,
}

impl RunCounts {
    pub fn processed(&self) -> u64 {
        self.pulled
    }
    pub fn succeeded(&self) -> u64 {
        self.pulled.saturating_sub(self.failed)
    }
    pub fn add(&mut self, other: &RunCounts) {
        self.pulled += other.pulled;
        self.created += other.created;
        self.updated += other.updated;
        self.deleted += other.deleted;
        self.unchanged += other.unchanged;
        self.failed += other.failed;
        self.requests += other.requests;
        self.rate_limited += other.rate_limited;
        self.pages += other.pages;
        self.tasks_opened += other.tasks_opened;
        self.tasks_updated += other.tasks_updated;
        self.tasks_cancelled += other.tasks_cancelled;
        self.conflicts_decided += other.conflicts_decided;
        self.conflicts_parked += other.conflicts_parked;
        self.pushed += other.pushed;
        self.push_failed += other.push_failed;
        self.push_retrying += other.push_retrying;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRun {
    pub tenant_id: TenantId,
    pub connection_id: ConnectionId,
    pub run_id: RunId,
    pub job_id: JobId,
    pub reason: JobReason,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub counts: RunCounts,
    pub error: Option<String>,
    /// Per object type (absent in runs written before partial runs existed).
    #[serde(default)]
    pub objects: BTreeMap<ObjectType, ObjectRun>,
}
