//! Applying one pulled page: look the records up, merge, write only what changed, and say what
//! happened (events to announce, audit entries to append).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::merge::{Decided, FieldOutcome, Merged, merge_with};
use crate::domain::policy::{ConflictContext, Decision, Fallback, Source};
use crate::domain::push::{
    ConflictItem, ConflictStatus, Priority, PushAction, PushItem, Resolution, conflict_id, new_push_item,
    push_id,
};
use crate::domain::record::Fields;
use crate::domain::{
    AuditEntry, AuditOutcome, CanonicalRecord, Connection, DomainEvent, ExternalId, IdempotencyKey,
    ObjectType, Operation, Provider, RecordChange, RecordId, RemoteRecord, UpsertOutcome,
};
use crate::ports::{AuditLog, RecordStore, RecordWrite, StoreError};

/// Lookups of the record store take at most this many ids a call.
const LOOKUP_CHUNK: usize = 100;
/// Rounds of re-reading records whose conditional write lost to a concurrent writer.
const CONFLICT_ROUNDS: usize = 3;

/// What applying a page did, and what the caller still has to store.
#[derive(Debug, Default)]
pub struct Applied {
    pub outcome: UpsertOutcome,
    pub events: Vec<DomainEvent>,
    pub audit: Vec<AuditEntry>,
    /// Conflicts the policy decided (each audited).
    pub conflicts: u64,
    /// Conflicts parked for a person: to store in the conflict queue (and announce if new).
    pub parked: Vec<ConflictItem>,
    /// Pushes the policy decided (local values that won), approved, each with the audit entries
    /// of the decisions behind it (appended only if the item is new: a repeat pull decides the
    /// same thing again).
    pub pushes: Vec<(PushItem, Vec<AuditEntry>)>,
    /// Records as written whose merge took fields over from the push items named (a remote value
    /// or a policy's decision replaced the local value those items carry): each item is
    /// superseded if none of its fields is still its own ([`super::push::supersede_if_overtaken`]).
    pub overtaken: Vec<(CanonicalRecord, Vec<String>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} record(s) kept changing while being written")]
    Contended(usize),
}

/// Applies `records` (one provider page of `object`) to the store for `connection`.
/// Unchanged records cause no write; a record written concurrently is re-read and merged again.
pub async fn apply_page(
    store: &dyn RecordStore,
    connection: &Connection,
    object: ObjectType,
    records: Vec<RemoteRecord>,
    now: DateTime<Utc>,
) -> Result<Applied, ApplyError> {
    apply_page_audited(store, None, connection, object, records, now).await
}

/// As [`apply_page`], and when `audit` is given, the policy decisions a record write carries out
/// are appended to it before the write: a crash between the two repeats the entry on redelivery
/// rather than losing it (the redelivered merge no longer sees the conflict it already decided).
pub async fn apply_page_audited(
    store: &dyn RecordStore,
    audit: Option<&dyn AuditLog>,
    connection: &Connection,
    object: ObjectType,
    records: Vec<RemoteRecord>,
    now: DateTime<Utc>,
) -> Result<Applied, ApplyError> {
    let mut pending: BTreeMap<ExternalId, RemoteRecord> = BTreeMap::new();
    for r in records {
        pending.insert(r.external_id.clone(), r);
    }
    let mut applied = Applied::default();
    for _ in 0..CONFLICT_ROUNDS {
        if pending.is_empty() {
            break;
        }
        let ids: Vec<ExternalId> = pending.keys().cloned().collect();
        let mut existing = HashMap::new();
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            existing.extend(
                store
                    .get_by_external(
                        &connection.tenant_id,
                        &connection.connection_id,
                        connection.provider,
                        object,
                        chunk,
                    )
                    .await?,
            );
        }
        let mut planned = Vec::new();
        for (ext, remote) in &pending {
            match plan(connection, object, existing.get(ext), remote, now) {
                Plan::Unchanged(side) => {
                    applied.outcome.unchanged += 1;
                    if let Some(stored) = existing.get(ext) {
                        replay_announcement(&mut applied, connection, stored);
                        if let Some(side) = side {
                            record_side(&mut applied, connection, stored, side, false, now);
                        }
                    }
                }
                Plan::Write(write, change) => planned.push((ext.clone(), *write, change)),
            }
        }
        let writes: Vec<RecordWrite> = planned.iter().map(|(_, w, _)| w.clone()).collect();
        if let Some(log) = audit {
            let decisions: Vec<AuditEntry> = planned
                .iter()
                .filter_map(|(_, w, change)| {
                    let r = match w {
                        RecordWrite::Create(r) | RecordWrite::Update(r) => r,
                    };
                    change.side.as_ref().map(|side| decision_entries(r, side, now).0)
                })
                .flatten()
                .collect();
            if !decisions.is_empty() {
                log.append(&decisions).await?;
            }
        }
        let results = store.write(connection.provider, writes).await?;
        let mut retry = BTreeMap::new();
        for ((ext, write, change), result) in planned.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    let side = change.side.clone();
                    if let (false, RecordWrite::Update(r)) = (change.overtaken.is_empty(), &write) {
                        applied.overtaken.push((r.clone(), change.overtaken.clone()));
                    }
                    record_success(&mut applied, connection, &write, change, existing.get(&ext), now);
                    if let (Some(side), RecordWrite::Update(r) | RecordWrite::Create(r)) = (side, &write) {
                        let audit_decisions = audit.is_none();
                        record_side(&mut applied, connection, r, side, audit_decisions, now);
                    }
                }
                Err(StoreError::Conflict) => {
                    if let Some(r) = pending.get(&ext) {
                        retry.insert(ext, r.clone());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        pending = retry;
    }
    if !pending.is_empty() {
        return Err(ApplyError::Contended(pending.len()));
    }
    Ok(applied)
}

enum Plan {
    /// Nothing to write; there may still be decisions to act on (a push the policy wants).
    Unchanged(Option<Side>),
    Write(Box<RecordWrite>, Change),
}

struct Change {
    kind: RecordChange,
    fields: Vec<String>,
    side: Option<Side>,
    /// Push items whose fields the merge took over.
    overtaken: Vec<String>,
}

/// What a merge decided besides the record itself.
#[derive(Clone)]
struct Side {
    decided: Vec<Decided>,
    parked: Vec<(String, FieldOutcome)>,
    /// Fields whose local value won a conflict and must go to the provider.
    push: Fields,
}

impl Side {
    /// The merge's decisions; a record that stays local (a research task) pushes nothing.
    fn from_merge(merged: &Merged, object: ObjectType) -> Option<Self> {
        let decided_fields: Vec<&str> = merged
            .decided
            .iter()
            .filter(|d| matches!(d.decision, Decision::Local | Decision::Merged(_)))
            .map(|d| d.field.as_str())
            .collect();
        let push: Fields = merged
            .to_push
            .iter()
            .filter(|f| !object.stays_local() && decided_fields.contains(&f.as_str()))
            .map(|f| (f.clone(), merged.fields.get(f).cloned().unwrap_or(Value::Null)))
            .collect();
        let side = Side { decided: merged.decided.clone(), parked: merged.conflicts.clone(), push };
        (!side.decided.is_empty() || !side.parked.is_empty()).then_some(side)
    }
}

/// What the policy knows about a conflict on this connection besides the values.
pub fn conflict_context(
    connection: &Connection,
    stored: &CanonicalRecord,
    remote: &RemoteRecord,
) -> ConflictContext {
    let crm = matches!(connection.provider, Provider::Hubspot | Provider::Salesforce);
    ConflictContext {
        crm,
        local_source: None,
        remote_source: if crm { Source::Crm } else { Source::UserStated },
        local_modified_at: stored.local_modified_at,
        remote_modified_at: remote.remote_modified_at,
    }
}

fn plan(
    connection: &Connection,
    object: ObjectType,
    existing: Option<&CanonicalRecord>,
    remote: &RemoteRecord,
    now: DateTime<Utc>,
) -> Plan {
    match existing {
        None if remote.deleted => Plan::Unchanged(None),
        None => {
            let record = CanonicalRecord {
                tenant_id: connection.tenant_id.clone(),
                connection_id: connection.connection_id.clone(),
                record_id: RecordId::derive(
                    &connection.tenant_id,
                    &connection.connection_id,
                    object,
                    &remote.external_id,
                ),
                object,
                external_id: remote.external_id.clone(),
                fields: remote.fields.clone(),
                base: remote.fields.clone(),
                remote_modified_at: remote.remote_modified_at,
                etag: remote.etag.clone(),
                local_modified_at: None,
                sources: Default::default(),
                pending_push: Default::default(),
                deleted: false,
                created_at: now,
                updated_at: now,
                version: 1,
            };
            let fields = remote.fields.keys().cloned().collect();
            Plan::Write(
                Box::new(RecordWrite::Create(record)),
                Change { kind: RecordChange::Created, fields, side: None, overtaken: Vec::new() },
            )
        }
        Some(stored) if remote.deleted => {
            if stored.deleted {
                return Plan::Unchanged(None);
            }
            let mut record = stored.clone();
            record.deleted = true;
            record.remote_modified_at = remote.remote_modified_at.or(stored.remote_modified_at);
            record.etag = remote.etag.clone().or_else(|| stored.etag.clone());
            record.updated_at = now;
            record.version = stored.version + 1;
            Plan::Write(
                Box::new(RecordWrite::Update(record)),
                Change { kind: RecordChange::Deleted, fields: vec![], side: None, overtaken: Vec::new() },
            )
        }
        Some(stored) => {
            let ctx = conflict_context(connection, stored, remote);
            let policy = &connection.settings.conflict_policy;
            let merged =
                merge_with(&stored.base, &stored.fields, &remote.fields, policy, &ctx, &stored.sources);
            let side = Side::from_merge(&merged, stored.object);
            // A moved stamp or etag is written even without field changes: pushes use them as
            // preconditions. (Repeats of the same version, as a lookback brings, write nothing.)
            let stamp_moved = remote.remote_modified_at.is_some_and(|r| Some(r) != stored.remote_modified_at)
                || (remote.etag.is_some() && remote.etag != stored.etag);
            if merged.changed.is_empty() && merged.base == stored.base && !stored.deleted && !stamp_moved {
                return Plan::Unchanged(side);
            }
            let mut record = stored.clone();
            record.fields = merged.fields;
            record.base = merged.base;
            let (fields, base) = (&record.fields, &record.base);
            record.sources.retain(|k, _| fields.get(k) != base.get(k));
            let overtaken = take_over_markers(connection, stored, &mut record, side.as_ref());
            record.deleted = false;
            record.remote_modified_at = remote.remote_modified_at;
            record.etag = remote.etag.clone();
            record.updated_at = now;
            record.version = stored.version + 1;
            let kind = if stored.deleted { RecordChange::Created } else { RecordChange::Updated };
            // The very version we hold (same stamp or etag; after a push, the version our write
            // made): field differences are the provider's representation of what we wrote (a
            // normalized timestamp, empty association lists), adopted without announcing a change.
            let same_version = (remote.remote_modified_at.is_some()
                && remote.remote_modified_at == stored.remote_modified_at)
                || (remote.etag.is_some() && remote.etag == stored.etag);
            let fields =
                if same_version && kind == RecordChange::Updated { Vec::new() } else { merged.changed };
            Plan::Write(Box::new(RecordWrite::Update(record)), Change { kind, fields, side, overtaken })
        }
    }
}

/// Moves the merged record's push markers (`pending_push`): a field the policy decided for the
/// local side is carried by the policy's push item from now on, and fields agreed again lose
/// theirs. Returns the items whose fields the merge took over (their marker replaced or dropped,
/// or their local value changed), to be checked for superseding once the record is written.
fn take_over_markers(
    connection: &Connection,
    stored: &CanonicalRecord,
    record: &mut CanonicalRecord,
    side: Option<&Side>,
) -> Vec<String> {
    let mut overtaken: Vec<String> = stored
        .pending_push
        .iter()
        .filter(|(f, _)| record.fields.get(*f) != stored.fields.get(*f))
        .map(|(_, id)| id.clone())
        .collect();
    if let Some(side) = side.filter(|s| !s.push.is_empty()) {
        let key = content_key("policy", &record.record_id, &side.push);
        let carrier = push_id(&connection.tenant_id, &connection.connection_id, &key);
        for field in side.push.keys() {
            if let Some(old) = record.pending_push.insert(field.clone(), carrier.clone())
                && old != carrier
            {
                overtaken.push(old);
            }
        }
    }
    overtaken.extend(record.settle_pending());
    overtaken.sort();
    overtaken.dedup();
    overtaken
}

fn record_success(
    applied: &mut Applied,
    connection: &Connection,
    write: &RecordWrite,
    change: Change,
    before: Option<&CanonicalRecord>,
    now: DateTime<Utc>,
) {
    let record = match write {
        RecordWrite::Create(r) | RecordWrite::Update(r) => r,
    };
    if change.kind == RecordChange::Updated && change.fields.is_empty() {
        // Only the provider's stamp moved (or the base caught up): remembered, not announced.
        applied.outcome.unchanged += 1;
        return;
    }
    match change.kind {
        RecordChange::Created => applied.outcome.created.push(record.record_id.clone()),
        RecordChange::Updated => applied.outcome.updated.push(record.record_id.clone()),
        RecordChange::Deleted => applied.outcome.deleted.push(record.record_id.clone()),
    }
    applied.events.push(DomainEvent::RecordChanged {
        change: change.kind,
        tenant_id: record.tenant_id.clone(),
        connection_id: record.connection_id.clone(),
        record_id: record.record_id.clone(),
        object: record.object,
        external_id: record.external_id.clone(),
        changed_fields: change.fields.clone(),
        version: record.version,
    });
    let actor = format!("provider:{}", connection.provider);
    if before.is_some() {
        let pick = |fields: &crate::domain::record::Fields| -> Value {
            change.fields.iter().map(|f| (f.clone(), fields.get(f).cloned().unwrap_or(Value::Null))).collect()
        };
        let entry =
            AuditEntry::new(record.tenant_id.clone(), Operation::Pull, AuditOutcome::Success, &actor, now)
                .connection(&record.connection_id)
                .record(record.object, &record.record_id)
                .detail(json!({ "change": change_name(change.kind), "external_id": record.external_id }))
                .change(before.map(|b| pick(&b.fields)), Some(pick(&record.fields)));
        applied.audit.push(entry);
    }
}

fn change_name(kind: RecordChange) -> &'static str {
    match kind {
        RecordChange::Created => "created",
        RecordChange::Updated => "updated",
        RecordChange::Deleted => "deleted",
    }
}

/// Announces again a record this job's crashed attempt may have written without announcing it.
///
/// Records are written before their page's events are published and the cursor is checkpointed
/// after, so a crash in between re-pulls the page, finds the records already written, and would
/// announce nothing. The job's first attempt stamps `inflight_since` on the connection (cleared when
/// the job finishes); a record unchanged now but written since then is announced again. Events are
/// at-least-once either way; consumers drop repeats by `(record_id, version)`.
fn replay_announcement(applied: &mut Applied, connection: &Connection, stored: &CanonicalRecord) {
    let Some(since) = connection.inflight_since else { return };
    if stored.updated_at < since {
        return;
    }
    let change = if stored.deleted {
        RecordChange::Deleted
    } else if stored.version == 1 {
        RecordChange::Created
    } else {
        RecordChange::Updated
    };
    applied.events.push(DomainEvent::RecordChanged {
        change,
        tenant_id: stored.tenant_id.clone(),
        connection_id: stored.connection_id.clone(),
        record_id: stored.record_id.clone(),
        object: stored.object,
        external_id: stored.external_id.clone(),
        changed_fields: Vec::new(),
        version: stored.version,
    });
}

/// Turns a merge's decisions into audit entries, conflict items and push items. `written` says
/// whether the record write happened (decisions that changed the local record are audited with it).
fn record_side(
    applied: &mut Applied,
    connection: &Connection,
    record: &CanonicalRecord,
    side: Side,
    written: bool,
    now: DateTime<Utc>,
) {
    let policy = &connection.settings.conflict_policy;
    applied.conflicts += side.decided.len() as u64;
    let (with_write, push_audit) = decision_entries(record, &side, now);
    if written {
        applied.audit.extend(with_write);
    }
    if !side.push.is_empty() {
        let key = content_key("policy", &record.record_id, &side.push);
        let item = new_push_item(
            record.tenant_id.clone(),
            record.connection_id.clone(),
            PushAction::UpdateRecord,
            Priority::Normal,
            record.object,
            Some(record.record_id.clone()),
            side.push.clone(),
            key,
            "policy",
            true,
            now,
        );
        applied.pushes.push((item, push_audit));
    }
    let suggest = crate::domain::ConflictPolicy { fallback: Fallback::LastWriteWins, ..policy.clone() };
    for (field, outcome) in side.parked {
        let FieldOutcome::Conflict { base, local, remote } = outcome else { continue };
        let ctx = ConflictContext {
            crm: matches!(connection.provider, Provider::Hubspot | Provider::Salesforce),
            local_source: None,
            remote_source: Source::Crm,
            local_modified_at: record.local_modified_at,
            remote_modified_at: record.remote_modified_at,
        };
        let (decision, strategy) = suggest.decide(&field, local.as_ref(), remote.as_ref(), &ctx);
        applied.parked.push(ConflictItem {
            tenant_id: record.tenant_id.clone(),
            connection_id: record.connection_id.clone(),
            conflict_id: conflict_id(&record.record_id, &field),
            record_id: record.record_id.clone(),
            object: record.object,
            external_id: record.external_id.clone(),
            field,
            base,
            local,
            remote,
            suggested: if decision == Decision::Remote {
                Resolution::UseRemote
            } else {
                Resolution::UseLocal
            },
            suggested_by: strategy,
            status: ConflictStatus::Open,
            detected_at: now,
            resolution: None,
            resolved_by: None,
            resolved_at: None,
            version: 0,
        });
    }
}

/// Audit entries of a merge's decisions: those carried out by the record write, and those carried
/// out by the push the decision queues (appended only when that push item is new).
fn decision_entries(
    record: &CanonicalRecord,
    side: &Side,
    now: DateTime<Utc>,
) -> (Vec<AuditEntry>, Vec<AuditEntry>) {
    let mut with_write = Vec::new();
    let mut with_push = Vec::new();
    for d in &side.decided {
        let entry = AuditEntry::new(
            record.tenant_id.clone(),
            Operation::ConflictResolved,
            AuditOutcome::Success,
            format!("policy:{}", enum_name(&d.strategy)),
            now,
        )
        .connection(&record.connection_id)
        .record(record.object, &record.record_id)
        .detail(json!({
            "field": d.field,
            "strategy": d.strategy,
            "decision": decision_name(&d.decision),
            "base": d.base,
        }))
        .change(Some(json!({ "local": d.local, "remote": d.remote })), record.fields.get(&d.field).cloned());
        match d.decision {
            Decision::Local | Decision::Merged(_) if !side.push.is_empty() => with_push.push(entry),
            _ => with_write.push(entry),
        }
    }
    (with_write, with_push)
}

/// An idempotency key derived from what is pushed: the same decision made again names the same item.
pub fn content_key(kind: &str, record: &RecordId, fields: &Fields) -> IdempotencyKey {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(record.as_str().as_bytes());
    h.update([0u8]);
    h.update(serde_json::to_vec(fields).unwrap_or_default());
    let hex: String = h.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect();
    IdempotencyKey::parse(format!("{kind}-{hex}"))
        .unwrap_or_else(|_| IdempotencyKey::parse("invalid").expect("a valid literal"))
}

fn decision_name(d: &Decision) -> &'static str {
    match d {
        Decision::Local => "local",
        Decision::Remote => "remote",
        Decision::Merged(_) => "merged",
        Decision::Manual => "manual",
    }
}

fn enum_name(v: &impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// One audit entry for the records a page created (the first sync creates many; one entry a page
/// names them all rather than one write each).
pub fn created_summary(
    connection: &Connection,
    object: ObjectType,
    created: &[RecordId],
    now: DateTime<Utc>,
) -> Option<AuditEntry> {
    if created.is_empty() {
        return None;
    }
    Some(
        AuditEntry::new(
            connection.tenant_id.clone(),
            Operation::Pull,
            AuditOutcome::Success,
            format!("provider:{}", connection.provider),
            now,
        )
        .connection(&connection.connection_id)
        .detail(json!({ "change": "created", "object": object, "record_ids": created })),
    )
}
