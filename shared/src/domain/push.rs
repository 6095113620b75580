//! The push queue and the conflict queue: what waits for a person before it goes out (or is decided).
//!
//! A push item moves `pending -> approved | rejected`, then `approved -> completed | failed`; a
//! pending item not decided within [`PUSH_EXPIRY_DAYS`] is `expired`. A conflict item is `open` until
//! a person (or a strategy they chose) resolves it.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::{ConnectionId, ExternalId, IdempotencyKey, ObjectType, RecordId, TenantId};
use super::policy::Strategy;
use super::record::Fields;

/// Days a pending push item waits for a decision.
pub const PUSH_EXPIRY_DAYS: i64 = 7;
/// Failed attempts after which an approved push item is `failed`.
pub const MAX_PUSH_ATTEMPTS: u32 = 5;
/// The tag put in front of notes Syncbridge writes, unless the tenant chose another.
pub const DEFAULT_NOTE_PREFIX: &str = "[ARIA]";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PushAction {
    /// A note (e.g. a meeting summary) on a CRM record.
    CreateNote,
    /// One field of a CRM record (e.g. a lead score).
    UpdateField,
    /// A suggested meeting on the calendar.
    CreateEvent,
    /// Local edits of a record's fields.
    UpdateRecord,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PushStatus {
    Pending,
    Approved,
    Rejected,
    Completed,
    Failed,
    Expired,
}

impl PushStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PushStatus::Pending => "pending",
            PushStatus::Approved => "approved",
            PushStatus::Rejected => "rejected",
            PushStatus::Completed => "completed",
            PushStatus::Failed => "failed",
            PushStatus::Expired => "expired",
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Normal,
    High,
    Critical,
}

/// Why a push item cannot move as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("the item is {0:?}, not pending")]
    NotPending(PushStatus),
    #[error("the item expired before it was decided")]
    Expired,
    #[error("the item is {0:?}, not approved")]
    NotApproved(PushStatus),
}

/// One item of the push queue. Its id is derived from its idempotency key, so queueing the same
/// thing twice yields one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushItem {
    pub tenant_id: TenantId,
    pub connection_id: ConnectionId,
    pub push_id: String,
    pub action: PushAction,
    pub status: PushStatus,
    pub priority: Priority,
    /// What is written: for a note or an event, the new record's object; for updates, the record's.
    pub object: ObjectType,
    /// The local record an update (or a note's association) is about.
    pub record_id: Option<RecordId>,
    /// Canonical fields to write.
    pub fields: Fields,
    pub idempotency_key: IdempotencyKey,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The provider's id of what the push created or changed.
    pub result_external_id: Option<ExternalId>,
    pub completed_at: Option<DateTime<Utc>>,
    pub version: u64,
}

impl PushItem {
    /// The status as of `now`: a pending item past its expiry is expired.
    pub fn status_at(&self, now: DateTime<Utc>) -> PushStatus {
        if self.status == PushStatus::Pending && self.expires_at <= now {
            PushStatus::Expired
        } else {
            self.status
        }
    }

    /// Approves or rejects a pending item.
    pub fn decide(&mut self, approve: bool, actor: &str, now: DateTime<Utc>) -> Result<(), TransitionError> {
        match self.status_at(now) {
            PushStatus::Pending => {}
            PushStatus::Expired => return Err(TransitionError::Expired),
            other => return Err(TransitionError::NotPending(other)),
        }
        self.status = if approve { PushStatus::Approved } else { PushStatus::Rejected };
        self.decided_by = Some(actor.to_owned());
        self.decided_at = Some(now);
        Ok(())
    }

    /// Records a failed attempt: the item stays approved until its attempts run out.
    pub fn attempt_failed(&mut self, error: &str, permanent: bool) -> Result<(), TransitionError> {
        if self.status != PushStatus::Approved {
            return Err(TransitionError::NotApproved(self.status));
        }
        self.attempts += 1;
        self.last_error = Some(error.to_owned());
        if permanent || self.attempts >= MAX_PUSH_ATTEMPTS {
            self.status = PushStatus::Failed;
        }
        Ok(())
    }

    pub fn complete(
        &mut self,
        external: Option<ExternalId>,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        if self.status != PushStatus::Approved {
            return Err(TransitionError::NotApproved(self.status));
        }
        self.status = PushStatus::Completed;
        self.result_external_id = external;
        self.completed_at = Some(now);
        self.attempts += 1;
        self.last_error = None;
        Ok(())
    }
}

/// The id of a push item with this idempotency key (stable, so a repeat finds the first).
pub fn push_id(tenant: &TenantId, connection: &ConnectionId, key: &IdempotencyKey) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [tenant.as_str(), connection.as_str(), key.as_str()] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let hex: String = h.finalize()[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("p_{hex}")
}

/// A new push item, pending (or approved at once when the connection auto-pushes this action).
#[allow(clippy::too_many_arguments)]
pub fn new_push_item(
    tenant_id: TenantId,
    connection_id: ConnectionId,
    action: PushAction,
    priority: Priority,
    object: ObjectType,
    record_id: Option<RecordId>,
    fields: Fields,
    idempotency_key: IdempotencyKey,
    created_by: &str,
    auto_approve: bool,
    now: DateTime<Utc>,
) -> PushItem {
    PushItem {
        push_id: push_id(&tenant_id, &connection_id, &idempotency_key),
        tenant_id,
        connection_id,
        action,
        status: if auto_approve { PushStatus::Approved } else { PushStatus::Pending },
        priority,
        object,
        record_id,
        fields,
        idempotency_key,
        created_by: created_by.to_owned(),
        created_at: now,
        expires_at: now + Duration::days(PUSH_EXPIRY_DAYS),
        decided_by: auto_approve.then(|| "auto_push".to_owned()),
        decided_at: auto_approve.then_some(now),
        attempts: 0,
        last_error: None,
        result_external_id: None,
        completed_at: None,
        version: 0,
    }
}

/// Per connection and action type: approved without a person.
pub type AutoPush = BTreeMap<PushAction, bool>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConflictStatus {
    Open,
    Resolved,
}

/// How a person resolves a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Keep our value and write it to the provider.
    UseLocal,
    /// Take the provider's value.
    UseRemote,
    /// Leave both sides as they are and stop asking (until either changes again).
    Skip,
}

/// A field both sides changed differently that the policy left to a person. One per record and
/// field: detecting it again updates the values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictItem {
    pub tenant_id: TenantId,
    pub connection_id: ConnectionId,
    pub conflict_id: String,
    pub record_id: RecordId,
    pub object: ObjectType,
    pub external_id: ExternalId,
    pub field: String,
    pub base: Option<Value>,
    pub local: Option<Value>,
    pub remote: Option<Value>,
    /// What the connection's policy, with a last-write-wins fallback, would pick.
    pub suggested: Resolution,
    pub suggested_by: Strategy,
    pub status: ConflictStatus,
    pub detected_at: DateTime<Utc>,
    pub resolution: Option<Resolution>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub version: u64,
}

/// The id of the conflict on `field` of `record`.
pub fn conflict_id(record: &RecordId, field: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(record.as_str().as_bytes());
    h.update([0u8]);
    h.update(field.as_bytes());
    let hex: String = h.finalize()[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("k_{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(auto: bool) -> PushItem {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        new_push_item(
            TenantId::parse("t").unwrap(),
            ConnectionId::parse("c").unwrap(),
            PushAction::CreateNote,
            Priority::Normal,
            ObjectType::Notes,
            None,
            Fields::new(),
            IdempotencyKey::parse("summary-1").unwrap(),
            "user:ann",
            auto,
            now,
        )
    }

    #[test]
    fn pending_items_are_decided_once_and_expire_after_seven_days() {
        let mut p = item(false);
        let now = p.created_at;
        assert_eq!(p.status, PushStatus::Pending);
        p.decide(true, "user:ann", now).unwrap();
        assert_eq!(p.status, PushStatus::Approved);
        assert_eq!(p.decide(false, "user:bob", now), Err(TransitionError::NotPending(PushStatus::Approved)));
        let mut late = item(false);
        let later = now + Duration::days(7);
        assert_eq!(late.status_at(later), PushStatus::Expired);
        assert_eq!(late.decide(true, "user:ann", later), Err(TransitionError::Expired));
    }

    #[test]
    fn auto_push_approves_at_once_and_attempts_run_out_into_failed() {
        let mut p = item(true);
        assert_eq!((p.status, p.decided_by.as_deref()), (PushStatus::Approved, Some("auto_push")));
        for _ in 0..MAX_PUSH_ATTEMPTS - 1 {
            p.attempt_failed("503", false).unwrap();
            assert_eq!(p.status, PushStatus::Approved);
        }
        p.attempt_failed("503", false).unwrap();
        assert_eq!(p.status, PushStatus::Failed);
        assert!(p.complete(None, p.created_at).is_err());
    }

    #[test]
    fn the_same_idempotency_key_names_the_same_item() {
        assert_eq!(item(false).push_id, item(true).push_id);
        let r = RecordId::parse("r1").unwrap();
        assert_eq!(conflict_id(&r, "email"), conflict_id(&r, "email"));
        assert_ne!(conflict_id(&r, "email"), conflict_id(&r, "phone"));
    }
}
