//! Ports: the traits the engine and the HTTP layer call. Adapters implement them for DynamoDB, SQS,
//! EventBridge and each provider; in-memory versions serve unit tests of logic.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::domain::record::Fields;
use crate::domain::{
    AuditEntry, AuditOutcome, CanonicalRecord, Connection, ConnectionId, Credentials, DomainEvent,
    ExternalId, IdempotencyKey, Job, JobId, ObjectType, Operation, Provider, PushChannel, RecordId,
    RemoteRecord, SyncCursor, SyncRun, TenantId,
};
use crate::domain::{ConflictItem, ConflictStatus, PushItem, PushStatus};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors from the stores (DynamoDB).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: the item changed since it was read (or already exists).
    #[error("the item changed since it was read")]
    Conflict,
    /// Throttled or a passing service fault: retry later.
    #[error("store temporarily unavailable")]
    Unavailable(#[source] BoxError),
    /// An item that does not convert to a domain type (a bug or a hand edit): never retried.
    #[error("stored item is corrupt: {0}")]
    Corrupt(String),
    /// A page token this store did not issue (or one that was altered): the caller's mistake.
    #[error("the page token is not valid")]
    InvalidPageToken,
    #[error("store request failed")]
    Backend(#[source] BoxError),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Backend(_))
    }
}

/// A page of results and the opaque token for the next one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// A connection found in the due index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueConnection {
    pub tenant_id: TenantId,
    pub connection_id: ConnectionId,
    pub next_sync_at: DateTime<Utc>,
    pub interval_minutes: u32,
}

/// Connections and their sync state.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Stores a new connection; `Conflict` if its id exists.
    async fn create(&self, connection: &Connection) -> Result<(), StoreError>;
    async fn get(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
    ) -> Result<Option<Connection>, StoreError>;
    /// All of one tenant's connections (a tenant has few).
    async fn list(&self, tenant: &TenantId) -> Result<Vec<Connection>, StoreError>;
    /// Connections in due-index shard `shard` whose `next_sync_at <= now`, oldest first, at most
    /// `limit`. The index is sparse: paused connections are not in it.
    async fn due(
        &self,
        shard: u16,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueConnection>, StoreError>;
    /// Moves `next_sync_at` from `slot` to `next` only if it still is `slot`. `Ok(false)` means
    /// another dispatcher claimed the slot first. Does not touch `version`.
    async fn claim_slot(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        slot: DateTime<Utc>,
        next: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Writes the worker-owned state (status, cursors, credentials, last sync, error, counts, last
    /// run) if `version` is still `connection.version`; returns the new version. Leaves settings and
    /// `next_sync_at` alone.
    async fn save_state(&self, connection: &Connection) -> Result<u64, StoreError>;

    /// Writes the user-owned part (interval, settings, `paused_at`, and `next_sync_at` with the
    /// due-index entry: `None` removes the connection from the index) if `settings_version` is
    /// still `connection.settings_version`; returns the new settings version. Leaves the
    /// worker-owned state and `version` alone, so it never conflicts with a running job.
    async fn save_settings(&self, connection: &Connection) -> Result<u64, StoreError>;

    /// Registers a push channel (or subscription) id as belonging to a connection, so a webhook can
    /// find the connection from the id alone. Overwrites an entry of the same id (a Graph renewal
    /// keeps the id and moves the expiry). The entry holds no secret and lapses a day after
    /// `channel.expires_at` (DynamoDB TTL), so a replaced channel's entry needs no delete.
    async fn put_channel(
        &self,
        channel: &PushChannel,
        tenant: &TenantId,
        connection: &ConnectionId,
        provider: Provider,
    ) -> Result<(), StoreError>;

    /// The connection a channel id was registered for; `None` for an unknown id.
    async fn find_channel(
        &self,
        channel_id: &str,
    ) -> Result<Option<(TenantId, ConnectionId, Provider)>, StoreError>;

    /// The connections whose `account_id` at `provider` is `account` (a HubSpot portal id, ...),
    /// from the account registry that `create` writes with every connection that has one. Several
    /// tenants may connect the same account. An entry may outlive its connection, so callers load
    /// each connection and skip what is gone. At most 100 are returned.
    async fn find_by_account(
        &self,
        provider: Provider,
        account: &str,
    ) -> Result<Vec<(TenantId, ConnectionId)>, StoreError>;
    /// Disconnects, in one transaction conditional on `connection.version` (`Conflict` if it
    /// changed): removes the connection (with its credentials, and so from the due index; `get`
    /// and `list` no longer find it, so a queued job finds nothing to sync) and leaves a
    /// tombstone (provider, account, when) that [`Self::was_disconnected`] finds. Its records are
    /// left where they are.
    async fn disconnect(&self, connection: &Connection, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// True when the tenant's connection of this id was disconnected.
    async fn was_disconnected(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
    ) -> Result<bool, StoreError>;
}

/// Which webhook deliveries were already handled: a provider that redelivers (HubSpot retries up
/// to 10 times over a day) or replays an event must not cause a second job.
#[async_trait]
pub trait DeliveryLedger: Send + Sync {
    /// Marks delivery `key` (e.g. `hubspot#{eventId}`) as seen with a conditional put; `Ok(true)`
    /// the first time, `Ok(false)` while an unexpired marker exists. The marker lapses at
    /// `expires_at` (a marker past it counts as absent even before DynamoDB's TTL removes it).
    async fn first_delivery(
        &self,
        key: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Removes a marker: the job its delivery asked for could not be enqueued, so the provider's
    /// retry must get through.
    async fn forget_delivery(&self, key: &str) -> Result<(), StoreError>;
}

/// Pending OAuth authorizations, by `state` (stored as its hash, see `domain::oauth::state_key`).
#[async_trait]
pub trait OAuthStateStore: Send + Sync {
    /// Stores a pending authorization; it lapses at `pending.expires_at` (DynamoDB TTL, and
    /// `take_state` callers check the time: TTL deletes late).
    async fn put_state(
        &self,
        state: &str,
        pending: &crate::domain::oauth::PendingAuthorization,
    ) -> Result<(), StoreError>;
    /// Removes and returns the pending authorization of `state`; `None` when unknown or already
    /// taken. Single use: of two concurrent takes of one state, exactly one gets it.
    async fn take_state(
        &self,
        state: &str,
    ) -> Result<Option<crate::domain::oauth::PendingAuthorization>, StoreError>;
}

/// One write of a canonical record.
#[derive(Debug, Clone)]
pub enum RecordWrite {
    /// A record seen for the first time, under the id derived from its external id
    /// (`RecordId::derive`): `Conflict` if a record of that external id exists.
    Create(CanonicalRecord),
    /// A changed record: written only if the stored version is still `record.version - 1`.
    Update(CanonicalRecord),
}

/// Canonical records, found by id or by external id (a record's id is derived from its external
/// id, so an external id names one record of a connection and object type).
#[async_trait]
pub trait RecordStore: Send + Sync {
    /// The stored records for these external ids at `provider`. Ids with no record are absent
    /// from the map. At most 100 ids a call.
    async fn get_by_external(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        provider: Provider,
        object: ObjectType,
        ids: &[ExternalId],
    ) -> Result<HashMap<ExternalId, CanonicalRecord>, StoreError>;
    /// Applies the writes of records of one connection at `provider` (creates register their
    /// external id under it); one result per write, in order. A lost condition is
    /// `Err(Conflict)` for that write only.
    async fn write(
        &self,
        provider: Provider,
        writes: Vec<RecordWrite>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError>;
    async fn get(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        record: &RecordId,
    ) -> Result<Option<CanonicalRecord>, StoreError>;
    async fn list(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        object: Option<ObjectType>,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<Page<CanonicalRecord>, StoreError>;
    /// The tenant's live (not deleted) `events` records, in any of its connections, whose
    /// `ical_uid` field is one of `uids` (empty UIDs are ignored), in no particular order. A UID
    /// names one meeting across calendars (each attendee's copy of it; at Google, every
    /// occurrence of a recurring event), so one UID may find several records: at most
    /// [`MAX_EVENTS_PER_UID`] each. At most [`MAX_UIDS_PER_LOOKUP`] distinct UIDs a call. An event
    /// stored a moment ago may not be found yet (the DynamoDB index is eventually consistent).
    async fn events_by_ical_uid(
        &self,
        tenant: &TenantId,
        uids: &[String],
    ) -> Result<Vec<CanonicalRecord>, StoreError>;
}

/// Records one [`RecordStore::events_by_ical_uid`] returns for one UID, at most.
pub const MAX_EVENTS_PER_UID: usize = 25;
/// Distinct UIDs one [`RecordStore::events_by_ical_uid`] call takes, at most.
pub const MAX_UIDS_PER_LOOKUP: usize = 100;

/// Sync runs and the job ledger that makes a redelivered job a no-op.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// True when `job` already finished (its run was recorded by `finish`).
    async fn job_done(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        job: &JobId,
    ) -> Result<bool, StoreError>;
    /// Atomically: saves the connection's state (as `ConnectionStore::save_state`, conditional on
    /// its version), stores the run, and marks the run's job done. Returns the new version.
    async fn finish(&self, connection: &Connection, run: &SyncRun) -> Result<u64, StoreError>;
    /// Runs of one connection, newest first.
    async fn list_runs(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        limit: usize,
    ) -> Result<Vec<SyncRun>, StoreError>;
}

/// Push queue filters.
#[derive(Debug, Clone, Default)]
pub struct PushQuery {
    pub connection: Option<ConnectionId>,
    /// A stored status; with `as_of`, `Pending` means pending and not yet expired then, and
    /// `Expired` pending and expired then (without it, `Expired` is `Pending`: expiry is computed).
    pub status: Option<PushStatus>,
    pub as_of: Option<DateTime<Utc>>,
    pub limit: usize,
    pub page_token: Option<String>,
}

impl PushQuery {
    /// Whether `item` passes the filters (the in-memory store's and the tests' reading of them).
    pub fn matches(&self, item: &PushItem) -> bool {
        let status = match (self.status, self.as_of) {
            (None, _) => true,
            (Some(s), Some(at)) if s.stored() == PushStatus::Pending => {
                item.status == PushStatus::Pending && (s == PushStatus::Pending) == (item.expires_at > at)
            }
            (Some(s), _) => item.status == s.stored(),
        };
        status && self.connection.as_ref().is_none_or(|c| *c == item.connection_id)
    }
}

/// The push queue (main table, tenant partition).
#[async_trait]
pub trait PushStore: Send + Sync {
    /// Stores a new item; `Ok(false)` when an item with its id (its idempotency key) exists, which
    /// is left as it was.
    async fn create(&self, item: &PushItem) -> Result<bool, StoreError>;
    async fn get(&self, tenant: &TenantId, push_id: &str) -> Result<Option<PushItem>, StoreError>;
    /// Items of one tenant in queue order ([`PushItem::queue_order`]: pending, approved, failed,
    /// completed, superseded, rejected; within each, the most urgent first, then the oldest), across
    /// pages: a page continues where the previous one stopped in that order. Filters apply before
    /// the limit, though a page may hold fewer than `limit` items when matches are sparse (its
    /// token then goes on).
    async fn list(&self, tenant: &TenantId, query: &PushQuery) -> Result<Page<PushItem>, StoreError>;
    /// Writes the item if its stored version is still `item.version`; returns the new version.
    async fn save(&self, item: &PushItem) -> Result<u64, StoreError>;
}

/// Conflict queue filters.
#[derive(Debug, Clone, Default)]
pub struct ConflictQuery {
    pub connection: Option<ConnectionId>,
    pub status: Option<ConflictStatus>,
    pub field: Option<String>,
    pub limit: usize,
    pub page_token: Option<String>,
}

/// The conflict queue (main table, tenant partition). One item per record and field.
#[async_trait]
pub trait ConflictStore: Send + Sync {
    /// Stores a newly detected conflict, replacing the item of the same record and field when it
    /// is open or its values differ from what was resolved; returns false when it was left alone
    /// (a skipped conflict detected again with the same values).
    async fn detected(&self, item: &ConflictItem) -> Result<bool, StoreError>;
    async fn get(&self, tenant: &TenantId, conflict_id: &str) -> Result<Option<ConflictItem>, StoreError>;
    async fn list(&self, tenant: &TenantId, query: &ConflictQuery) -> Result<Page<ConflictItem>, StoreError>;
    /// Writes the item if its stored version is still `item.version`; returns the new version.
    async fn save(&self, item: &ConflictItem) -> Result<u64, StoreError>;
}

/// Audit query filters (all optional but the tenant).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub connection: Option<ConnectionId>,
    /// Entries about one record (a key condition on the record index; combined with
    /// `connection`, the connection is a filter).
    pub record: Option<RecordId>,
    /// Any of these operations (empty: all).
    pub operations: Vec<Operation>,
    /// Any of these outcomes (empty: all).
    pub outcomes: Vec<AuditOutcome>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: usize,
    pub page_token: Option<String>,
}

/// The append-only audit log. Writers can only add entries (PutItem), never change one.
#[async_trait]
pub trait AuditLog: Send + Sync {
    async fn append(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;
    /// Entries of one tenant matching every filter, newest first, at most `limit`. Time bounds
    /// are inclusive. A page may hold fewer than `limit` entries while `next` is set (the store
    /// bounds the work of one call); only `next == None` means the end.
    async fn query(&self, tenant: &TenantId, query: &AuditQuery) -> Result<Page<AuditEntry>, StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Some jobs could not be enqueued after retries; their ids.
    #[error("{} job(s) could not be enqueued", .0.len())]
    Partial(Vec<JobId>),
    #[error("queue request failed")]
    Backend(#[source] BoxError),
}

/// The SQS FIFO jobs queue.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Enqueues with SendMessageBatch (10 a call), `MessageGroupId` = the job's connection and
    /// `MessageDeduplicationId` = its job id, retrying `Failed` entries that SQS marks retryable.
    async fn enqueue(&self, jobs: &[Job]) -> Result<(), QueueError>;

    /// Makes a received message that failed visible again only after `delay` (SQS
    /// `ChangeMessageVisibility`): the retry backoff. In a FIFO queue this also holds back the rest
    /// of the message's group, so one connection's jobs stay in order.
    async fn retry_later(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        let _ = (receipt_handle, delay);
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("{0} event(s) were not accepted by the bus")]
    Partial(usize),
    #[error("event bus request failed")]
    Backend(#[source] BoxError),
}

/// The EventBridge bus.
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes with PutEvents (10 a call), retrying entries counted in `FailedEntryCount`.
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), BusError>;
}

/// Errors from a provider, classified for retry decisions. One table decides the class of an
/// answer (`adapters::provider_http::classify` and each adapter's dialect); the two open-ended
/// classes carry the answer's status, the provider's own error code and the cause.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("rate limited by the provider; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    #[error("the provider rejected the credentials")]
    Unauthorized,
    #[error("not found at the provider")]
    NotFound,
    /// The cursor is no longer valid (Google 410, Graph 410): the caller starts a full pull.
    #[error("the sync cursor expired at the provider")]
    CursorExpired,
    /// A conditional write found the record changed at the provider since it was read (HTTP 412,
    /// or a modified stamp newer than the precondition): nothing was written.
    #[error("the record changed at the provider since it was read")]
    Conflict,
    /// Worth trying again (5xx, a dropped connection, a timeout, a truncated body).
    #[error("provider temporarily failed: {0}")]
    Transient(#[source] Fault),
    /// Trying again changes nothing (a validation error, a missing scope, an unusable answer).
    #[error("provider request failed permanently: {0}")]
    Permanent(#[source] Fault),
}

/// The class of a provider error: what the engine does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Transient,
    RateLimited,
    Unauthorized,
    Conflict,
    NotFound,
    CursorExpired,
    Permanent,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Unauthorized => "unauthorized",
            ErrorClass::Conflict => "conflict",
            ErrorClass::NotFound => "not_found",
            ErrorClass::CursorExpired => "cursor_expired",
            ErrorClass::Permanent => "permanent",
        }
    }
}

/// What went wrong at a provider, for the open-ended classes: the HTTP status (none for a
/// transport failure), the provider's own error code (HubSpot `category`, Salesforce `errorCode`,
/// Google `reason`, Graph `error.code`; or ours for transport faults: `timeout`, `connection`,
/// `truncated_body`), a bounded message with no secret in it, and the cause.
#[derive(Debug, Clone, Default)]
pub struct Fault {
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
    pub source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl Fault {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), ..Self::default() }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(std::sync::Arc::new(source));
        self
    }

    /// True when the message or the provider's code contains `needle`.
    pub fn mentions(&self, needle: &str) -> bool {
        self.message.contains(needle) || self.code.as_deref().is_some_and(|c| c.contains(needle))
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.status, self.code.as_deref()) {
            (Some(s), Some(c)) if !self.message.starts_with("HTTP ") => {
                write!(f, "HTTP {s} {c}: {}", self.message)
            }
            (Some(s), None) if !self.message.starts_with("HTTP ") => write!(f, "HTTP {s}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Fault {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<String> for Fault {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for Fault {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl ProviderError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProviderError::RateLimited { .. } | ProviderError::Transient(_))
    }

    pub fn transient(fault: impl Into<Fault>) -> Self {
        ProviderError::Transient(fault.into())
    }

    pub fn permanent(fault: impl Into<Fault>) -> Self {
        ProviderError::Permanent(fault.into())
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            ProviderError::RateLimited { .. } => ErrorClass::RateLimited,
            ProviderError::Unauthorized => ErrorClass::Unauthorized,
            ProviderError::NotFound => ErrorClass::NotFound,
            ProviderError::CursorExpired => ErrorClass::CursorExpired,
            ProviderError::Conflict => ErrorClass::Conflict,
            ProviderError::Transient(_) => ErrorClass::Transient,
            ProviderError::Permanent(_) => ErrorClass::Permanent,
        }
    }

    /// The answer's details, for the open-ended classes.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            ProviderError::Transient(f) | ProviderError::Permanent(f) => Some(f),
            _ => None,
        }
    }

    /// The provider's own error code, when it sent one.
    pub fn provider_code(&self) -> Option<&str> {
        self.fault().and_then(|f| f.code.as_deref())
    }
}

/// One page pulled from a provider.
#[derive(Debug, Clone)]
pub struct PulledPage {
    pub records: Vec<RemoteRecord>,
    /// Where the next pull starts: checkpointed after this page is stored.
    pub cursor: SyncCursor,
    /// False when this page reached the present: the pull is complete for now.
    pub has_more: bool,
    /// The provider could not list every delete since the last pull (Salesforce keeps deleted
    /// ids 15 days): before this page is checkpointed, the engine compares the provider's live ids
    /// ([`ProviderClient::live_ids`]) with the stored records and deletes the ones gone.
    pub reconcile_deletes: bool,
}

/// A page of a provider's live record ids, for a delete reconciliation.
#[derive(Debug, Clone, Default)]
pub struct IdPage {
    pub ids: Vec<ExternalId>,
    /// The token of the next page; `None` on the last.
    pub next: Option<String>,
}

/// When a write may go ahead: only if the provider's record is still the version we based it on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Precondition {
    /// Sent as `If-Match` where the provider supports it (Google, Graph).
    pub etag: Option<String>,
    /// The record must not have been modified after this (checked by reading it first where the
    /// provider has no conditional write: HubSpot, Salesforce).
    pub unmodified_since: Option<DateTime<Utc>>,
}

/// One change to make at a provider, in canonical field names.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderWrite {
    /// Creates a record. Idempotent on `idempotency_key`: repeating it (a retry after a crash) finds
    /// the record the first attempt created instead of creating a second one.
    Create {
        object: ObjectType,
        fields: Fields,
        idempotency_key: IdempotencyKey,
    },
    Update {
        object: ObjectType,
        external_id: ExternalId,
        fields: Fields,
        precondition: Precondition,
    },
    Delete {
        object: ObjectType,
        external_id: ExternalId,
        precondition: Precondition,
    },
}

/// What the provider says a write produced.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteAck {
    pub external_id: ExternalId,
    pub remote_modified_at: Option<DateTime<Utc>>,
    pub etag: Option<String>,
    /// The record's canonical fields as the provider now holds them, when the response says.
    pub fields: Option<Fields>,
}

/// Request counters of one provider client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    pub requests: u64,
    pub rate_limited: u64,
}

/// One provider account, as seen through its API.
#[async_trait]
pub trait ProviderClient: Send + Sync {
    /// The next page of records of `object` changed since `cursor` (`None`: a full pull from the
    /// start). Pages are in modification order; a page may repeat records of the previous page
    /// (lookback) but never skips one. Honours rate limits: waits out short `Retry-After`s itself,
    /// returns `RateLimited` for long ones.
    async fn pull_page(
        &self,
        token: &SecretString,
        object: ObjectType,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError>;

    /// Applies `writes` (batched as the provider allows); one result per write, in order. A write
    /// whose precondition failed is `Err(Conflict)` and changed nothing. The outer error means no
    /// result is known for any write (the caller retries them all; creates are idempotent).
    async fn write(
        &self,
        token: &SecretString,
        writes: &[ProviderWrite],
    ) -> Result<Vec<Result<WriteAck, ProviderError>>, ProviderError> {
        let _ = (token, writes);
        Err(ProviderError::permanent("this provider adapter does not write yet"))
    }

    /// Keeps a push channel (Google `events.watch`) or subscription (Graph) open that notifies
    /// `address` of changes. Returns `existing` untouched (a clone) while it expires more than
    /// [`PushChannel::renewal_margin`] after `now`; otherwise opens a channel (no `existing`) or
    /// renews it (Google: opens a new channel, then stops the old one; Graph: extends the
    /// subscription, recreating it when Graph no longer knows it). The returned channel carries
    /// the secret notifications must present. `Ok(None)`: this provider has no per-connection
    /// channels (HubSpot and Salesforce webhooks are app-level), the default.
    async fn ensure_channel(
        &self,
        token: &SecretString,
        address: &str,
        existing: Option<&PushChannel>,
        now: DateTime<Utc>,
    ) -> Result<Option<PushChannel>, ProviderError> {
        let _ = (token, address, existing, now);
        Ok(None)
    }

    /// Stops `channel` (Google `channels.stop`, Graph subscription delete), for a connection that
    /// is going away. A channel the provider no longer knows is stopped already (`Ok`). The
    /// default (providers without per-connection channels) does nothing.
    async fn stop_channel(&self, token: &SecretString, channel: &PushChannel) -> Result<(), ProviderError> {
        let _ = (token, channel);
        Ok(())
    }

    /// Every live (not deleted) record id of `object`, a page at a time from `after` (the previous
    /// page's `next`). Only adapters that can ask for [`PulledPage::reconcile_deletes`] need it.
    async fn live_ids(
        &self,
        token: &SecretString,
        object: ObjectType,
        after: Option<&str>,
    ) -> Result<IdPage, ProviderError> {
        let _ = (token, object, after);
        Err(ProviderError::permanent("this provider adapter cannot list live ids"))
    }

    /// The provider account `token` belongs to, for a connection made with a token the caller
    /// brings (`POST /v1/connections`): asking for it also proves the token works. `Ok(None)`
    /// (the default): this adapter does not look the account up, and the caller's `account_id`
    /// stands. Fireflies answers its key owner's email, which its webhooks name.
    async fn token_account(&self, token: &SecretString) -> Result<Option<String>, ProviderError> {
        let _ = token;
        Ok(None)
    }

    /// What this client set up or learned in the provider account (see
    /// `Connection::provider_setup`), for the worker to keep on the connection. Factories give
    /// new clients what the connection already knows.
    fn provider_setup(&self) -> std::collections::BTreeMap<String, String> {
        std::collections::BTreeMap::new()
    }

    /// Exchanges a refresh token for new credentials.
    async fn refresh(&self, refresh_token: &SecretString) -> Result<Credentials, ProviderError>;

    /// Asks this client to look for deleted records in this job's pulls even when its own
    /// schedule for that is not due (a deletion webhook, a manual sync; see `Job::check_deletes`).
    /// Adapters whose pulls always see deletes ignore it (the default).
    fn check_deletes_now(&self) {}

    /// Requests made and 429s received so far by this client.
    fn stats(&self) -> RequestStats;
}

/// Builds a client for one connection (its base URL, its rate limiter).
pub trait ProviderFactory: Send + Sync {
    fn client(&self, connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError>;
}

/// The time source; tests and the local runner can move it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Why a step of the flow failed. Never carries a token, a code or a client secret.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// No client id/secret (or redirect URI) for this provider in this deployment.
    #[error("OAuth is not configured for {0}")]
    NotConfigured(Provider),
    /// The provider refused the grant (an invalid, expired or reused code, a wrong redirect URI
    /// or client): the user has to start again.
    #[error("the provider rejected the authorization: {0}")]
    Rejected(String),
    /// The provider could not be reached or failed (5xx, timeout): try again.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider answered something we cannot use (a missing field, a malformed URL).
    #[error("unexpected answer from the provider: {0}")]
    Invalid(String),
}

/// What a code exchange produced: the credentials, the provider account they belong to, and the
/// API base URL the connection uses.
#[derive(Debug)]
pub struct Grant {
    pub credentials: Credentials,
    pub account_id: String,
    pub base_url: String,
}

/// How a revocation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    Revoked,
    /// The provider no longer knew the token (revoked or expired already).
    AlreadyInvalid,
    /// The provider has no revocation endpoint (Microsoft), or the connection holds no token
    /// that can be revoked (a HubSpot private-app token).
    NotSupported,
}

impl Revocation {
    pub fn as_str(self) -> &'static str {
        match self {
            Revocation::Revoked => "revoked",
            Revocation::AlreadyInvalid => "already_invalid",
            Revocation::NotSupported => "not_supported",
        }
    }
}

/// Connecting and disconnecting a provider account with OAuth 2.0 (authorization code): the
/// consent URL, the code exchange (with the account the grant belongs to) and the revocation.
/// Implemented over HTTP by `adapters::oauth::OAuthProviders` through the shared send path, like
/// every other provider call. Nothing it returns or logs carries a token, a code or a secret.
#[async_trait]
pub trait OAuthConnector: Send + Sync {
    /// The redirect URIs the providers' apps registered; authorize accepts only these.
    fn redirect_uris(&self) -> &[String];
    /// `NotConfigured` unless this deployment has an OAuth app for `provider`.
    fn check_configured(&self, provider: Provider) -> Result<(), OAuthError>;
    /// Whether the provider takes a PKCE (`S256`) challenge.
    fn supports_pkce(&self, provider: Provider) -> bool;
    /// The provider's consent page for this app, coming back to `redirect_uri` with `state`.
    fn authorize_url(
        &self,
        provider: Provider,
        sandbox: bool,
        redirect_uri: &str,
        state: &str,
        code_challenge: Option<&str>,
    ) -> Result<String, OAuthError>;
    /// Exchanges `code` (same `redirect_uri`, the PKCE verifier) and learns the account.
    async fn exchange(
        &self,
        provider: Provider,
        sandbox: bool,
        redirect_uri: &str,
        code: &SecretString,
        verifier: Option<&SecretString>,
    ) -> Result<Grant, OAuthError>;
    /// Revokes the connection's grant at the provider (best effort for the caller).
    async fn revoke(&self, connection: &Connection) -> Result<Revocation, OAuthError>;
}
