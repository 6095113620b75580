//! Audit entries: the append-only record of every operation (who, what, when, before and after).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::{ConnectionId, ObjectType, RecordId, TenantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Pull,
    Push,
    ConflictDetected,
    ConflictResolved,
    Approval,
    Error,
    Retry,
    ConnectionCreated,
    SyncRequested,
    TokenRefreshed,
    /// A push channel or subscription was opened or renewed (or failed to be).
    ChannelRenewed,
    /// A person paused a connection's syncing.
    ConnectionPaused,
    /// A person resumed a paused connection.
    ConnectionResumed,
    /// A connection's sync settings changed (before and after hold the changed settings).
    SettingsChanged,
    /// An OAuth connect found the tenant's existing connection to the same account and gave it
    /// the new credentials.
    ConnectionReconnected,
    /// The connection was disconnected (credentials erased, no longer synced).
    ConnectionDisconnected,
    /// The connection's token was revoked at the provider (or that failed, or it has no revocation).
    TokenRevoked,
    /// A push channel or subscription was stopped at the provider (or that failed).
    ChannelStopped,
    /// A person edited a record that stays local (a research task): nothing goes to the provider.
    LocalEdit,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Pull => "pull",
            Operation::Push => "push",
            Operation::ConflictDetected => "conflict_detected",
            Operation::ConflictResolved => "conflict_resolved",
            Operation::Approval => "approval",
            Operation::Error => "error",
            Operation::Retry => "retry",
            Operation::ConnectionCreated => "connection_created",
            Operation::SyncRequested => "sync_requested",
            Operation::TokenRefreshed => "token_refreshed",
            Operation::ChannelRenewed => "channel_renewed",
            Operation::ConnectionPaused => "connection_paused",
            Operation::ConnectionResumed => "connection_resumed",
            Operation::SettingsChanged => "settings_changed",
            Operation::ConnectionReconnected => "connection_reconnected",
            Operation::ConnectionDisconnected => "connection_disconnected",
            Operation::TokenRevoked => "token_revoked",
            Operation::ChannelStopped => "channel_stopped",
            Operation::LocalEdit => "local_edit",
        }
    }

    /// The operation of its snake_case name (as serialized); `None` for an unknown one.
    pub fn parse(value: &str) -> Option<Self> {
        serde_json::from_value(Value::String(value.to_owned())).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Success,
    Failure,
    /// Recorded and acknowledged without effect (for example a malformed job: never retried).
    Rejected,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Failure => "failure",
            AuditOutcome::Rejected => "rejected",
        }
    }

    /// The outcome of its snake_case name; `None` for an unknown one.
    pub fn parse(value: &str) -> Option<Self> {
        serde_json::from_value(Value::String(value.to_owned())).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// A ULID: unique, and sorts by time.
    pub entry_id: String,
    pub tenant_id: TenantId,
    pub connection_id: Option<ConnectionId>,
    pub record_id: Option<RecordId>,
    pub object: Option<ObjectType>,
    pub operation: Operation,
    pub outcome: AuditOutcome,
    /// Who did it: `worker`, `dispatcher`, `user:<sub>`, `provider:hubspot`, ...
    pub actor: String,
    pub at: DateTime<Utc>,
    pub detail: Value,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl AuditEntry {
    pub fn new(
        tenant_id: TenantId,
        operation: Operation,
        outcome: AuditOutcome,
        actor: impl Into<String>,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            entry_id: ulid::Ulid::new().to_string(),
            tenant_id,
            connection_id: None,
            record_id: None,
            object: None,
            operation,
            outcome,
            actor: actor.into(),
            at,
            detail: Value::Null,
            before: None,
            after: None,
        }
    }

    pub fn connection(mut self, c: &ConnectionId) -> Self {
        self.connection_id = Some(c.clone());
        self
    }
    pub fn record(mut self, object: ObjectType, r: &RecordId) -> Self {
        self.object = Some(object);
        self.record_id = Some(r.clone());
        self
    }
    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
    pub fn change(mut self, before: Option<Value>, after: Option<Value>) -> Self {
        self.before = before;
        self.after = after;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_and_outcomes_parse_from_the_names_they_serialize_to() {
        for op in [Operation::Pull, Operation::ConnectionPaused, Operation::SettingsChanged] {
            assert_eq!(Operation::parse(op.as_str()), Some(op));
            assert_eq!(serde_json::to_value(op).unwrap(), Value::String(op.as_str().to_owned()));
        }
        assert_eq!(Operation::parse("Pull"), None);
        assert_eq!(AuditOutcome::parse("rejected"), Some(AuditOutcome::Rejected));
        assert_eq!(AuditOutcome::parse("ok"), None);
    }
}
