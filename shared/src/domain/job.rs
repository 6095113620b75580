//! Jobs: what the dispatcher, the API and webhooks put on the SQS FIFO queue for the worker.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::connection::message_group;
use super::ids::{ConnectionId, JobId, TenantId};

/// Why a job was enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobReason {
    Schedule,
    Manual,
    Webhook,
    /// The previous invocation ran low on time and handed the rest of the work on.
    Continuation,
    /// Push items were approved: push them now rather than at the next scheduled sync.
    Push,
}

/// What the job asks the worker to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Pull every object type from its cursor, merge, push approved items.
    Sync,
}

/// One job message. The wire format is versioned (`v`), so a worker rejects what it does not know
/// as a permanent failure instead of guessing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub v: u8,
    pub job_id: JobId,
    pub tenant_id: TenantId,
    pub connection_id: ConnectionId,
    pub kind: JobKind,
    pub reason: JobReason,
    pub enqueued_at: DateTime<Utc>,
    /// Not to be started before this instant: a coalesced webhook job waits for the end of its
    /// window, so every notification the window's single job stands for happened before the sync
    /// starts (the worker hands an early job back to SQS until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    /// Renew the connection's push channel (subscription) in this job even if it is not due yet:
    /// Graph asked for reauthorization or removed the subscription.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub renew_channel: bool,
    /// Look for deleted records in this job rather than when the adapter's own schedule says
    /// (HubSpot's archived scan, otherwise every 15 minutes): a deletion webhook or a manual sync.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub check_deletes: bool,
}

/// Why a job message could not be read. Always permanent: redelivering it cannot help.
#[derive(Debug, thiserror::Error)]
pub enum JobParseError {
    #[error("job message is not valid JSON for a job: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("job message has unsupported version {0}")]
    UnsupportedVersion(u8),
}

pub const JOB_WIRE_VERSION: u8 = 1;

impl Job {
    pub fn sync(
        tenant_id: TenantId,
        connection_id: ConnectionId,
        job_id: JobId,
        reason: JobReason,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            v: JOB_WIRE_VERSION,
            job_id,
            tenant_id,
            connection_id,
            kind: JobKind::Sync,
            reason,
            enqueued_at: now,
            not_before: None,
            renew_channel: false,
            check_deletes: false,
        }
    }

    /// The one webhook job of a connection for the coalescing window that contains `now`
    /// (windows of `window_secs` seconds, aligned to the epoch): its id is the connection and the
    /// window, so every notification of the window maps to the same SQS deduplication id and SQS
    /// keeps one job. It starts after the window closes (`not_before`). `renew_channel` jobs get
    /// their own id, so a plain sync of the same window does not swallow them.
    pub fn webhook(
        tenant_id: TenantId,
        connection_id: ConnectionId,
        renew_channel: bool,
        now: DateTime<Utc>,
        window_secs: u32,
    ) -> Self {
        let window = i64::from(window_secs.max(1));
        let start = now.timestamp().div_euclid(window) * window;
        let tag = if renew_channel { "wr" } else { "w" };
        let id = JobId::parse(format!("{connection_id}:{tag}:{start}")).expect("valid job id");
        let mut job = Self::sync(tenant_id, connection_id, id, JobReason::Webhook, now);
        job.not_before = DateTime::from_timestamp(start + window, 0);
        job.renew_channel = renew_channel;
        job
    }

    /// This job also checks for deletes at once. A coalesced webhook job gets its own id (the
    /// window's id and `:d`), so SQS does not drop it as a duplicate of the window's plain job
    /// enqueued by an earlier request; both then run.
    pub fn checking_deletes(mut self) -> Self {
        if !self.check_deletes
            && self.reason == JobReason::Webhook
            && let Ok(id) = JobId::parse(format!("{}:d", self.job_id))
        {
            self.job_id = id;
        }
        self.check_deletes = true;
        self
    }

    /// A slot no scheduled job can have used yet: the first whole second after `now`. Slot ids
    /// are whole seconds ([`Self::scheduled_id`]), so a connection made due again within the
    /// second of a slot already run (resume) would get that slot's id and be dropped by SQS.
    pub fn fresh_slot(now: DateTime<Utc>) -> DateTime<Utc> {
        DateTime::from_timestamp(now.timestamp() + 1, 0).unwrap_or(now)
    }

    /// The job id of a scheduled sync: the connection and its due slot, so two dispatchers that
    /// both try to enqueue one slot produce one job (SQS deduplication).
    pub fn scheduled_id(connection: &ConnectionId, slot: DateTime<Utc>) -> JobId {
        JobId::parse(format!("{connection}:s:{}", slot.timestamp())).expect("valid job id")
    }

    /// A job id for a sync requested by a person or a webhook, unique per request.
    pub fn requested_id(connection: &ConnectionId, reason: JobReason) -> JobId {
        let tag = match reason {
            JobReason::Schedule => "s",
            JobReason::Manual => "m",
            JobReason::Webhook => "w",
            JobReason::Continuation => "c",
            JobReason::Push => "p",
        };
        JobId::parse(format!("{connection}:{tag}:{}", ulid::Ulid::new())).expect("valid job id")
    }

    pub fn parse(body: &str) -> Result<Self, JobParseError> {
        let job: Job = serde_json::from_str(body)?;
        if job.v != JOB_WIRE_VERSION {
            return Err(JobParseError::UnsupportedVersion(job.v));
        }
        Ok(job)
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("a job always serializes")
    }

    pub fn message_group(&self) -> String {
        message_group(&self.tenant_id, &self.connection_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        let c = ConnectionId::parse("c1").unwrap();
        Job::sync(
            TenantId::parse("t1").unwrap(),
            c.clone(),
            Job::scheduled_id(&c, Utc::now()),
            JobReason::Schedule,
            Utc::now(),
        )
    }

    #[test]
    fn job_round_trips_through_its_wire_format() {
        let j = job();
        assert_eq!(Job::parse(&j.to_body()).unwrap(), j);
        assert!(j.to_body().contains("\"kind\":\"sync\""));
    }

    #[test]
    fn malformed_unknown_and_future_jobs_are_rejected() {
        assert!(matches!(Job::parse("not json"), Err(JobParseError::Malformed(_))));
        let unknown_kind = job().to_body().replace("\"kind\":\"sync\"", "\"kind\":\"explode\"");
        assert!(Job::parse(&unknown_kind).is_err());
        let bad_tenant = job().to_body().replace("\"t1\"", "\"t#1\"");
        assert!(Job::parse(&bad_tenant).is_err());
        let future = job().to_body().replace("\"v\":1", "\"v\":9");
        assert!(matches!(Job::parse(&future), Err(JobParseError::UnsupportedVersion(9))));
    }

    #[test]
    fn webhook_jobs_of_one_connection_and_window_share_an_id_and_wait_for_the_window_to_close() {
        let (t, c) = (TenantId::parse("t1").unwrap(), ConnectionId::parse("c1").unwrap());
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let a = Job::webhook(t.clone(), c.clone(), false, at(1_790_000_001), 10);
        let b = Job::webhook(t.clone(), c.clone(), false, at(1_790_000_009), 10);
        let next = Job::webhook(t.clone(), c.clone(), false, at(1_790_000_010), 10);
        let renew = Job::webhook(t.clone(), c.clone(), true, at(1_790_000_001), 10);
        assert_eq!(a.job_id, b.job_id);
        assert_ne!(a.job_id, next.job_id);
        assert_ne!(a.job_id, renew.job_id);
        assert_eq!(a.not_before, Some(at(1_790_000_010)));
        assert_eq!((a.reason, a.renew_channel, renew.renew_channel), (JobReason::Webhook, false, true));
        assert_eq!(Job::parse(&renew.to_body()).unwrap(), renew);
        assert!(!job().to_body().contains("not_before"), "plain jobs keep their wire format");
    }

    #[test]
    fn a_deletes_checking_webhook_job_has_its_own_id_in_its_window_and_others_keep_theirs() {
        let (t, c) = (TenantId::parse("t1").unwrap(), ConnectionId::parse("c1").unwrap());
        let at = DateTime::from_timestamp(1_790_000_001, 0).unwrap();
        let plain = Job::webhook(t.clone(), c.clone(), false, at, 10);
        let deletes = Job::webhook(t.clone(), c.clone(), false, at, 10).checking_deletes();
        assert_eq!(deletes.job_id.as_str(), format!("{}:d", plain.job_id));
        assert_eq!(deletes.clone().checking_deletes().job_id, deletes.job_id, "tagged once");
        assert!(deletes.check_deletes && !plain.check_deletes);
        assert_eq!(Job::parse(&deletes.to_body()).unwrap(), deletes);
        assert!(!plain.to_body().contains("check_deletes"), "plain jobs keep their wire format");

        let manual = job().checking_deletes();
        assert!(manual.check_deletes);
        assert_eq!(manual.job_id, job().job_id, "only coalesced ids change");
    }

    #[test]
    fn scheduled_job_ids_are_the_same_for_the_same_slot() {
        let c = ConnectionId::parse("c1").unwrap();
        let t = Utc::now();
        assert_eq!(Job::scheduled_id(&c, t), Job::scheduled_id(&c, t));
        assert_ne!(Job::requested_id(&c, JobReason::Manual), Job::requested_id(&c, JobReason::Manual));
    }
}
