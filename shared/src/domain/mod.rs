//! Domain types: everything here is parsed once at the edge and valid by construction.

pub mod audit;
pub mod channel;
pub mod connection;
pub mod event;
pub mod health;
pub mod ids;
pub mod job;
pub mod mapping;
pub mod oauth;
pub mod policy;
pub mod push;
pub mod record;
pub mod run;

pub use audit::{AuditEntry, AuditOutcome, Operation};
pub use channel::PushChannel;
pub use connection::{
    Connection, ConnectionSettings, ConnectionStatus, Credentials, DocumentLinks, NewConnection, ObjectError,
    ObjectErrorClass,
};
pub use event::{DomainEvent, RecordChange};
pub use ids::{
    ConnectionId, ExternalId, IdempotencyKey, JobId, ObjectType, ParseError, Provider, RecordId, RunId,
    SyncCursor, TenantId, key_tag, strip_key_tag,
};
pub use job::{Job, JobKind, JobReason};
pub use mapping::{FieldMap, StageMap};
pub use policy::{ConflictPolicy, Ownership, Source};
pub use push::{ConflictItem, ConflictStatus, Priority, PushAction, PushItem, PushStatus, Resolution};
pub use record::{CanonicalRecord, RemoteRecord, UpsertOutcome};
pub use run::{ObjectOutcome, ObjectRun, RunCounts, RunStatus, SyncRun};
