//! The push queue and the conflict queue: what waits for a person before it goes out (or is decided).
//!
//! A push item moves `pending -> approved | rejected`, then `approved -> completed | failed`; a
//! pending item not decided within [`PUSH_EXPIRY_DAYS`] is `expired`. An expired or failed item
//! can still be rejected (a person discards it). A pending or approved local edit that something
//! newer made obsolete (a conflict resolution, a newer edit of the same fields, a local value that
//! moved on) is `superseded` and never pushed. `rejected`, `completed` and `superseded` are final.
//! A conflict item is `open` until a person (or a strategy they chose) resolves it.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::{ConnectionId, ExternalId, IdempotencyKey, ObjectType, RecordId, TenantId};
use super::policy::{ConflictPolicy, Ownership, Source, Strategy};
use super::record::{CanonicalRecord, Fields};

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
    /// A new CRM record (a contact, company or deal; Salesforce: Contact, Account, Opportunity).
    CreateRecord,
    /// Deleting a CRM record (HubSpot archives it). Never deletes a record edited at the provider
    /// since the delete was approved: that ends as a conflict instead.
    DeleteRecord,
}

impl PushAction {
    /// The canonical object types a `create_record` item may create.
    pub const CREATABLE: [ObjectType; 3] = [ObjectType::Contacts, ObjectType::Companies, ObjectType::Deals];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PushStatus {
    Pending,
    Approved,
    Rejected,
    Completed,
    Failed,
    /// Computed, never stored: a pending item past its `expires_at`.
    Expired,
    /// Made obsolete before it was pushed (see `superseded_by`); never pushed.
    Superseded,
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
            PushStatus::Superseded => "superseded",
        }
    }

    /// The status as stored: expiry is computed, so an expired item is stored as pending.
    pub fn stored(self) -> PushStatus {
        match self {
            PushStatus::Expired => PushStatus::Pending,
            other => other,
        }
    }

    /// Where items of this (stored) status come in queue order: the open ones (pending, then
    /// approved) first, then failed, then the final ones.
    fn queue_rank(self) -> u8 {
        match self.stored() {
            PushStatus::Pending | PushStatus::Expired => 0,
            PushStatus::Approved => 1,
            PushStatus::Failed => 2,
            PushStatus::Completed => 3,
            PushStatus::Superseded => 4,
            PushStatus::Rejected => 5,
        }
    }
}

/// The queue order key of every item with this (stored) status starts with this; see
/// [`PushItem::queue_order`].
pub fn queue_prefix(status: PushStatus) -> String {
    format!("{}{}#", status.queue_rank(), status.stored().as_str())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    /// `medium`, the seeds' name for it, is accepted on input; output always says `normal`.
    #[serde(alias = "medium")]
    Normal,
    High,
    Critical,
}

impl Priority {
    /// 0 for the most urgent, so that queue order keys ascend from critical to low.
    fn urgency_rank(self) -> u8 {
        match self {
            Priority::Critical => 0,
            Priority::High => 1,
            Priority::Normal => 2,
            Priority::Low => 3,
        }
    }
}

/// Written by hand to document the `medium` alias, which the derive would leave out.
impl utoipa::PartialSchema for Priority {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["low", "normal", "medium", "high", "critical"]))
            .description(Some(
                "`medium` is accepted on input as another name of `normal` (the name seed data uses); \
                 responses always say `normal`.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Priority {}

/// Why a push item cannot move as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("the item is {0:?}, not pending")]
    NotPending(PushStatus),
    #[error("the item expired before it was decided")]
    Expired,
    #[error("the item is {0:?}, not approved")]
    NotApproved(PushStatus),
    #[error("the item is {0:?}: it is no longer waiting to be pushed")]
    NotOpen(PushStatus),
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
    /// What made the item obsolete: the push id of a newer item carrying its fields, a conflict
    /// id, `local_change` (the record's local value moved on) or `policy` (a merge decision).
    #[serde(default)]
    pub superseded_by: Option<String>,
    #[serde(default)]
    pub superseded_at: Option<DateTime<Utc>>,
    /// Where the item's values come from (`inferred`, `web`, `document`: an agent's), as queued.
    #[serde(default)]
    pub source: Option<Source>,
    /// Fields left out of the write because people in the CRM own them and the item is an
    /// agent's ([`PushItem::is_agents`]); set when it was pushed.
    #[serde(default)]
    pub withheld_fields: Vec<String>,
    /// A `delete_record`'s precondition, taken from the record when the delete was approved: the
    /// provider's modified stamp and etag then. A record changed since is not deleted.
    #[serde(default)]
    pub approved_remote_modified_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub approved_etag: Option<String>,
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

    /// Approves or rejects a pending item. An expired or failed item can only be rejected: a person
    /// discards it (and with it, for a local edit, the local value the provider never took).
    pub fn decide(&mut self, approve: bool, actor: &str, now: DateTime<Utc>) -> Result<(), TransitionError> {
        match (self.status_at(now), approve) {
            (PushStatus::Pending, _) | (PushStatus::Expired | PushStatus::Failed, false) => {}
            (PushStatus::Expired, true) => return Err(TransitionError::Expired),
            (other, _) => return Err(TransitionError::NotPending(other)),
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

    /// Marks a pending (or expired) or approved item obsolete: it will never be pushed.
    pub fn supersede(&mut self, by: &str, now: DateTime<Utc>) -> Result<(), TransitionError> {
        if !matches!(self.status, PushStatus::Pending | PushStatus::Approved) {
            return Err(TransitionError::NotOpen(self.status));
        }
        self.status = PushStatus::Superseded;
        self.superseded_by = Some(by.to_owned());
        self.superseded_at = Some(now);
        Ok(())
    }

    /// The item's sort key in the queue: its status group, then the most urgent first, then the
    /// oldest first (the push id breaks ties). Zero-padded so that byte order is this order.
    pub fn queue_order(&self) -> String {
        format!(
            "{}{}#{:015}#{}",
            queue_prefix(self.status),
            self.priority.urgency_rank(),
            self.created_at.timestamp_millis().max(0),
            self.push_id
        )
    }

    /// Whether the item changes a record's fields (its fields are the record's local values).
    pub fn is_edit(&self) -> bool {
        matches!(self.action, PushAction::UpdateField | PushAction::UpdateRecord)
    }

    /// Whether an agent made the item: its values come from a source agents produce (`inferred`,
    /// `web`, `document`) or its author is an agent (`agent` or `agent:<name>`). A person's edit
    /// (`user_stated`, or no source, through the dashboard) is not.
    pub fn is_agents(&self) -> bool {
        matches!(self.source, Some(Source::Inferred | Source::Web | Source::Document))
            || self.created_by == "agent"
            || self.created_by.starts_with("agent:")
            || self.created_by.starts_with("user:agent:")
    }

    /// The fields this item may not write under `policy`: for an agent's edit or create, those
    /// people in the CRM own (`human`). Field ownership holds for every approved write, not only
    /// when both sides changed a field.
    pub fn human_owned_fields(&self, policy: &ConflictPolicy) -> Vec<String> {
        let writes_fields = self.is_edit() || self.action == PushAction::CreateRecord;
        if !writes_fields || !self.is_agents() {
            return Vec::new();
        }
        self.fields.keys().filter(|k| policy.ownership.get(*k) == Some(&Ownership::Human)).cloned().collect()
    }

    /// The fields of this edit that it no longer carries: the record's local value moved on, or a
    /// newer item carries the field now (the record's `pending_push` names another item).
    pub fn overtaken_fields(&self, record: &CanonicalRecord) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(k, v)| {
                record.fields.get(*k) != Some(*v)
                    || record.pending_push.get(*k).is_some_and(|id| *id != self.push_id)
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Whether every field of this edit is overtaken (so pushing it would send nothing of its own).
    pub fn is_overtaken(&self, record: &CanonicalRecord) -> bool {
        self.is_edit() && !self.fields.is_empty() && self.overtaken_fields(record).len() == self.fields.len()
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
        superseded_by: None,
        superseded_at: None,
        source: None,
        withheld_fields: Vec::new(),
        approved_remote_modified_at: None,
        approved_etag: None,
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
    fn medium_is_read_as_normal_and_normal_is_what_is_written() {
        assert_eq!(serde_json::from_str::<Priority>("\"medium\"").unwrap(), Priority::Normal);
        assert_eq!(serde_json::from_str::<Priority>("\"normal\"").unwrap(), Priority::Normal);
        assert_eq!(serde_json::to_string(&Priority::Normal).unwrap(), "\"normal\"");
        assert!(serde_json::from_str::<Priority>("\"urgent\"").is_err());
        let schema = serde_json::to_value(<Priority as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(schema["enum"], serde_json::json!(["low", "normal", "medium", "high", "critical"]));
    }

    #[test]
    fn queue_order_is_status_group_then_most_urgent_then_oldest() {
        let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap();
        let mk = |key: &str, priority: Priority, status: PushStatus, created: DateTime<Utc>| {
            let mut p = item(false);
            p.push_id = key.to_owned();
            p.priority = priority;
            p.status = status;
            p.created_at = created;
            p
        };
        let mut items = vec![
            mk("a", Priority::Low, PushStatus::Pending, at(1_000)),
            mk("b", Priority::Critical, PushStatus::Pending, at(99_999_999_999)),
            mk("c", Priority::Normal, PushStatus::Pending, at(999)),
            mk("d", Priority::Normal, PushStatus::Pending, at(1_000)),
            mk("e", Priority::Critical, PushStatus::Approved, at(5)),
            mk("f", Priority::High, PushStatus::Completed, at(5)),
            mk("g", Priority::High, PushStatus::Superseded, at(5)),
            mk("h", Priority::Critical, PushStatus::Rejected, at(5)),
            mk("i", Priority::Low, PushStatus::Failed, at(5)),
        ];
        items.reverse();
        items.sort_by_key(PushItem::queue_order);
        let order: String = items.iter().map(|p| p.push_id.as_str()).collect();
        assert_eq!(order, "bcdaeifgh", "999 ms sorts before 1000 ms: the time is zero-padded");
        assert!(items[0].queue_order().starts_with(&queue_prefix(PushStatus::Pending)));
        assert_eq!(
            queue_prefix(PushStatus::Expired),
            queue_prefix(PushStatus::Pending),
            "expiry is computed"
        );
    }

    #[test]
    fn an_expired_or_failed_item_can_be_discarded_by_rejecting_it_but_not_approved() {
        let mut expired = item(false);
        let later = expired.created_at + Duration::days(PUSH_EXPIRY_DAYS);
        assert_eq!(expired.decide(true, "user:ann", later), Err(TransitionError::Expired));
        expired.decide(false, "user:ann", later).unwrap();
        assert_eq!(expired.status, PushStatus::Rejected);

        let mut failed = item(true);
        failed.attempt_failed("400 INVALID_EMAIL", true).unwrap();
        assert_eq!(failed.status, PushStatus::Failed);
        let now = failed.created_at;
        assert_eq!(
            failed.decide(true, "user:ann", now),
            Err(TransitionError::NotPending(PushStatus::Failed))
        );
        failed.decide(false, "user:ann", now).unwrap();
        assert_eq!(failed.status, PushStatus::Rejected);
        assert!(failed.decide(false, "user:ann", now).is_err(), "rejected is final");
    }

    #[test]
    fn only_waiting_items_are_superseded_and_superseded_is_final() {
        let now = item(false).created_at;
        for mut waiting in [item(false), item(true)] {
            waiting.supersede("p_newer", now).unwrap();
            assert_eq!(waiting.status, PushStatus::Superseded);
            assert_eq!(waiting.superseded_by.as_deref(), Some("p_newer"));
            assert_eq!(waiting.status_at(now + Duration::days(30)), PushStatus::Superseded);
            assert!(waiting.decide(true, "user:ann", now).is_err());
            assert!(waiting.complete(None, now).is_err(), "a superseded item is never pushed");
        }
        let mut done = item(true);
        done.complete(None, now).unwrap();
        assert_eq!(done.supersede("p_newer", now), Err(TransitionError::NotOpen(PushStatus::Completed)));
        let mut expired = item(false);
        expired.supersede("k_conflict", now + Duration::days(8)).unwrap();
        assert_eq!(expired.status, PushStatus::Superseded, "an expired edit can still be overtaken");
    }

    #[test]
    fn an_edit_is_overtaken_field_by_field_by_a_moved_value_or_a_newer_item() {
        let now = item(false).created_at;
        let (t, c) = (TenantId::parse("t").unwrap(), ConnectionId::parse("c").unwrap());
        let fields: Fields =
            [("email".into(), serde_json::json!("b@x")), ("phone".into(), serde_json::json!("2"))].into();
        let mut edit = new_push_item(
            t.clone(),
            c.clone(),
            PushAction::UpdateRecord,
            Priority::Normal,
            ObjectType::Contacts,
            Some(RecordId::parse("r1").unwrap()),
            fields.clone(),
            IdempotencyKey::parse("edit-1").unwrap(),
            "user:ann",
            false,
            now,
        );
        edit.push_id = "p_1".into();
        let mut record = CanonicalRecord {
            tenant_id: t,
            connection_id: c,
            record_id: RecordId::parse("r1").unwrap(),
            object: ObjectType::Contacts,
            external_id: ExternalId::parse("101").unwrap(),
            fields: fields.clone(),
            base: [("email".into(), serde_json::json!("a@x")), ("phone".into(), serde_json::json!("1"))]
                .into(),
            remote_modified_at: None,
            etag: None,
            local_modified_at: None,
            sources: Default::default(),
            pending_push: [("email".into(), "p_1".into()), ("phone".into(), "p_1".into())].into(),
            deleted: false,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        assert!(edit.overtaken_fields(&record).is_empty());
        record.pending_push.insert("phone".into(), "p_2".into());
        assert_eq!(edit.overtaken_fields(&record), vec!["phone"], "a newer item carries the phone");
        assert!(!edit.is_overtaken(&record), "the email is still this edit's");
        record.fields.insert("email".into(), serde_json::json!("remote@x"));
        assert!(edit.is_overtaken(&record));
        let mut note = item(false);
        note.record_id = Some(record.record_id.clone());
        assert!(!note.is_overtaken(&record), "only edits are overtaken");
    }

    #[test]
    fn only_an_agents_edit_or_create_is_kept_from_human_owned_fields() {
        let mut policy = ConflictPolicy::default();
        policy.ownership.insert("lead_status".into(), Ownership::Human);
        policy.ownership.insert("score".into(), Ownership::Agent);
        let mut edit = item(false);
        edit.action = PushAction::UpdateRecord;
        edit.fields =
            [("lead_status".into(), serde_json::json!("OPEN")), ("score".into(), serde_json::json!(80))]
                .into();
        assert!(edit.human_owned_fields(&policy).is_empty(), "a person's edit writes every field");
        edit.source = Some(Source::Inferred);
        assert_eq!(edit.human_owned_fields(&policy), vec!["lead_status"]);
        edit.source = Some(Source::UserStated);
        edit.created_by = "agent:aria".into();
        assert_eq!(edit.human_owned_fields(&policy), vec!["lead_status"], "an agent author");
        edit.action = PushAction::CreateRecord;
        assert_eq!(edit.human_owned_fields(&policy), vec!["lead_status"], "creates too");
        edit.action = PushAction::CreateNote;
        assert!(edit.human_owned_fields(&policy).is_empty(), "a note sets no record field");
        let old: PushItem = serde_json::from_value({
            let mut v = serde_json::to_value(item(false)).unwrap();
            let doc = v.as_object_mut().unwrap();
            for k in ["source", "withheld_fields", "approved_remote_modified_at", "approved_etag"] {
                doc.remove(k);
            }
            v
        })
        .unwrap();
        assert_eq!((old.source, old.withheld_fields.len()), (None, 0), "items stored before read");
    }

    #[test]
    fn the_same_idempotency_key_names_the_same_item() {
        assert_eq!(item(false).push_id, item(true).push_id);
        let r = RecordId::parse("r1").unwrap();
        assert_eq!(conflict_id(&r, "email"), conflict_id(&r, "email"));
        assert_ne!(conflict_id(&r, "email"), conflict_id(&r, "phone"));
    }
}
