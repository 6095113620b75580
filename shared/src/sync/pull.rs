//! Applying one pulled page: look the records up, merge, write only what changed, and say what
//! happened (events to announce, audit entries to append).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::merge::merge;
use crate::domain::{
    AuditEntry, AuditOutcome, CanonicalRecord, Connection, DomainEvent, ExternalId, ObjectType, Operation,
    RecordChange, RecordId, RemoteRecord, UpsertOutcome,
};
use crate::ports::{RecordStore, RecordWrite, StoreError};

/// Lookups of the record store take at most this many ids a call.
const LOOKUP_CHUNK: usize = 100;
/// Rounds of re-reading records whose conditional write lost to a concurrent writer.
const CONFLICT_ROUNDS: usize = 3;

/// What applying a page did.
#[derive(Debug, Default)]
pub struct Applied {
    pub outcome: UpsertOutcome,
    pub events: Vec<DomainEvent>,
    pub audit: Vec<AuditEntry>,
    pub conflicts: u64,
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
                Plan::Unchanged => applied.outcome.unchanged += 1,
                Plan::Write(write, change) => planned.push((ext.clone(), *write, change)),
            }
        }
        let writes: Vec<RecordWrite> = planned.iter().map(|(_, w, _)| w.clone()).collect();
        let results = store.write(connection.provider, writes).await?;
        let mut retry = BTreeMap::new();
        for ((ext, write, change), result) in planned.into_iter().zip(results) {
            match result {
                Ok(()) => record_success(&mut applied, connection, &write, change, existing.get(&ext), now),
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
    Unchanged,
    Write(Box<RecordWrite>, Change),
}

struct Change {
    kind: RecordChange,
    fields: Vec<String>,
    conflicts: Vec<(String, Value)>,
}

fn plan(
    connection: &Connection,
    object: ObjectType,
    existing: Option<&CanonicalRecord>,
    remote: &RemoteRecord,
    now: DateTime<Utc>,
) -> Plan {
    match existing {
        None if remote.deleted => Plan::Unchanged,
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
                deleted: false,
                created_at: now,
                updated_at: now,
                version: 1,
            };
            let fields = remote.fields.keys().cloned().collect();
            Plan::Write(
                Box::new(RecordWrite::Create(record)),
                Change { kind: RecordChange::Created, fields, conflicts: vec![] },
            )
        }
        Some(stored) if remote.deleted => {
            if stored.deleted {
                return Plan::Unchanged;
            }
            let mut record = stored.clone();
            record.deleted = true;
            record.remote_modified_at = remote.remote_modified_at.or(stored.remote_modified_at);
            record.etag = remote.etag.clone().or_else(|| stored.etag.clone());
            record.updated_at = now;
            record.version = stored.version + 1;
            Plan::Write(
                Box::new(RecordWrite::Update(record)),
                Change { kind: RecordChange::Deleted, fields: vec![], conflicts: vec![] },
            )
        }
        Some(stored) => {
            let merged = merge(&stored.base, &stored.fields, &remote.fields);
            if merged.changed.is_empty() && merged.base == stored.base && !stored.deleted {
                return Plan::Unchanged;
            }
            let conflicts = merged
                .conflicts
                .iter()
                .map(|(name, outcome)| (name.clone(), json!(format!("{outcome:?}"))))
                .collect();
            let mut record = stored.clone();
            record.fields = merged.fields;
            record.base = merged.base;
            record.deleted = false;
            record.remote_modified_at = remote.remote_modified_at;
            record.etag = remote.etag.clone();
            record.updated_at = now;
            record.version = stored.version + 1;
            let kind = if stored.deleted { RecordChange::Created } else { RecordChange::Updated };
            Plan::Write(
                Box::new(RecordWrite::Update(record)),
                Change { kind, fields: merged.changed, conflicts },
            )
        }
    }
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
    for (field, detail) in change.conflicts {
        applied.conflicts += 1;
        applied.audit.push(
            AuditEntry::new(
                record.tenant_id.clone(),
                Operation::ConflictDetected,
                AuditOutcome::Success,
                &actor,
                now,
            )
            .connection(&record.connection_id)
            .record(record.object, &record.record_id)
            .detail(
                json!({ "field": field, "merge": detail, "resolution": "kept local value pending policy" }),
            ),
        );
    }
}

fn change_name(kind: RecordChange) -> &'static str {
    match kind {
        RecordChange::Created => "created",
        RecordChange::Updated => "updated",
        RecordChange::Deleted => "deleted",
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
