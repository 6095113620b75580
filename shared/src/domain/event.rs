//! Domain events announced on the EventBridge bus.

use serde::Serialize;

use super::ids::{ConnectionId, ExternalId, ObjectType, RecordId, RunId, TenantId};
use super::push::PushAction;
use super::run::RunCounts;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DomainEvent {
    RecordChanged {
        #[serde(skip)]
        change: RecordChange,
        tenant_id: TenantId,
        connection_id: ConnectionId,
        record_id: RecordId,
        object: ObjectType,
        external_id: ExternalId,
        /// Empty on a replayed announcement (see `sync::pull`): the record changed at `version`.
        changed_fields: Vec<String>,
        /// The record's version after the change: consumers drop announcements they have seen.
        version: u64,
    },
    SyncCompleted {
        tenant_id: TenantId,
        connection_id: ConnectionId,
        run_id: RunId,
        counts: RunCounts,
    },
    /// A field changed differently on both sides was parked for a person.
    ConflictDetected {
        tenant_id: TenantId,
        connection_id: ConnectionId,
        conflict_id: String,
        record_id: RecordId,
        object: ObjectType,
        field: String,
    },
    /// A push item went out to the provider.
    PushCompleted {
        tenant_id: TenantId,
        connection_id: ConnectionId,
        push_id: String,
        action: PushAction,
        object: ObjectType,
        external_id: Option<ExternalId>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordChange {
    Created,
    Updated,
    Deleted,
}

/// The `source` of every event Syncbridge puts on the bus.
pub const EVENT_SOURCE: &str = "syncbridge";

impl DomainEvent {
    /// EventBridge `DetailType`.
    pub fn detail_type(&self) -> &'static str {
        match self {
            DomainEvent::RecordChanged { change: RecordChange::Created, .. } => "record.created",
            DomainEvent::RecordChanged { change: RecordChange::Updated, .. } => "record.updated",
            DomainEvent::RecordChanged { change: RecordChange::Deleted, .. } => "record.deleted",
            DomainEvent::SyncCompleted { .. } => "sync.completed",
            DomainEvent::ConflictDetected { .. } => "conflict.detected",
            DomainEvent::PushCompleted { .. } => "push.completed",
        }
    }

    /// EventBridge `Detail` (JSON).
    pub fn detail(&self) -> String {
        serde_json::to_string(self).expect("events always serialize")
    }

    pub fn tenant_id(&self) -> &TenantId {
        match self {
            DomainEvent::RecordChanged { tenant_id, .. }
            | DomainEvent::SyncCompleted { tenant_id, .. }
            | DomainEvent::ConflictDetected { tenant_id, .. }
            | DomainEvent::PushCompleted { tenant_id, .. } => tenant_id,
        }
    }
}
