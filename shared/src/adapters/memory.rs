//! In-memory implementations of the ports, with the semantics the DynamoDB, SQS and EventBridge
//! adapters have (conditional writes, sparse sharded due index, opaque page tokens, append-only
//! audit, FIFO deduplication). For unit tests of the engine and the API; never used in production.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::config::DEFAULT_DUE_SHARDS;
use crate::domain::{
    AuditEntry, CanonicalRecord, ConflictItem, ConflictStatus, Connection, ConnectionId, DomainEvent,
    ExternalId, Job, JobId, ObjectType, Provider, PushChannel, PushItem, RecordId, SyncRun, TenantId,
};
use crate::ports::{
    AuditLog, AuditQuery, BusError, Clock, ConflictQuery, ConflictStore, ConnectionStore, DeliveryLedger,
    DueConnection, EventBus, JobQueue, Page, PushQuery, PushStore, QueueError, RecordStore, RecordWrite,
    RunStore, StoreError,
};

/// The engine's dependencies over in-memory doubles, for tests of logic: one store for every
/// store port, and by default an in-memory queue, bus and provider and the system clock. The one
/// way tests build a [`crate::sync::Deps`]:
/// `TestDeps::new(store).providers(Arc::new(fake)).clock(clock.clone()).build()`.
pub struct TestDeps {
    store: Arc<MemoryStore>,
    queue: Arc<dyn JobQueue>,
    bus: Arc<dyn EventBus>,
    providers: Arc<dyn crate::ports::ProviderFactory>,
    clock: Arc<dyn Clock>,
    settings: crate::sync::EngineSettings,
}

impl TestDeps {
    pub fn new(store: Arc<MemoryStore>) -> Self {
        Self {
            store,
            queue: Arc::new(MemoryQueue::new()),
            bus: Arc::new(MemoryBus::new()),
            providers: Arc::new(crate::adapters::memory_provider::MemoryProvider::new()),
            clock: Arc::new(crate::ports::SystemClock),
            settings: crate::sync::EngineSettings::default(),
        }
    }

    pub fn queue(mut self, queue: Arc<dyn JobQueue>) -> Self {
        self.queue = queue;
        self
    }

    pub fn bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.bus = bus;
        self
    }

    pub fn providers(mut self, providers: Arc<dyn crate::ports::ProviderFactory>) -> Self {
        self.providers = providers;
        self
    }

    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn settings(mut self, settings: crate::sync::EngineSettings) -> Self {
        self.settings = settings;
        self
    }

    pub fn build(self) -> crate::sync::Deps {
        let store = self.store;
        crate::sync::Deps {
            connections: store.clone(),
            records: store.clone(),
            runs: store.clone(),
            audit: store.clone(),
            pushes: store.clone(),
            conflicts: store.clone(),
            oauth_states: store,
            queue: self.queue,
            bus: self.bus,
            providers: self.providers,
            clock: self.clock,
            settings: self.settings,
        }
    }
}

/// The page size used when a caller passes a limit of 0.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The due-index shard of a connection: a stable hash of its key, modulo `shards` (at least 1).
pub use crate::domain::connection::due_shard;

fn page_size(limit: usize) -> usize {
    if limit == 0 { DEFAULT_PAGE_SIZE } else { limit }
}

fn encode_token<T: Serialize>(position: &T) -> Result<String, StoreError> {
    let json = serde_json::to_vec(position).map_err(|e| StoreError::Backend(Box::new(e)))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

fn decode_token<T: DeserializeOwned>(token: &str) -> Result<T, StoreError> {
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| StoreError::InvalidPageToken)?;
    serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidPageToken)
}

#[derive(Serialize, Deserialize)]
struct RecordPosition {
    after: RecordId,
}

#[derive(Serialize, Deserialize)]
struct AuditPosition {
    at: DateTime<Utc>,
    entry_id: String,
}

type ConnKey = (TenantId, ConnectionId);
type RegistryKey = (TenantId, ConnectionId, ObjectType, ExternalId);

struct Inner {
    connections: BTreeMap<ConnKey, Connection>,
    records: BTreeMap<ConnKey, BTreeMap<RecordId, CanonicalRecord>>,
    registry: HashMap<RegistryKey, RecordId>,
    runs: HashMap<ConnKey, Vec<SyncRun>>,
    jobs_done: HashSet<(TenantId, ConnectionId, JobId)>,
    audit: Vec<AuditEntry>,
    pushes: BTreeMap<(TenantId, String), PushItem>,
    conflicts: BTreeMap<(TenantId, String), ConflictItem>,
    channels: BTreeMap<String, (TenantId, ConnectionId, Provider)>,
    deliveries: HashMap<String, DateTime<Utc>>,
    /// Tombstones of disconnected connections.
    disconnected: HashSet<ConnKey>,
    /// Pending OAuth authorizations by state.
    oauth_states: HashMap<String, crate::domain::oauth::PendingAuthorization>,
    unavailable: bool,
    /// Calls left before the store "crashes" (fails every call); negative: no crash planned.
    crash_countdown: std::sync::atomic::AtomicI64,
    /// Store calls made so far.
    calls: std::sync::atomic::AtomicU64,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            connections: BTreeMap::new(),
            records: BTreeMap::new(),
            registry: HashMap::new(),
            runs: HashMap::new(),
            jobs_done: HashSet::new(),
            audit: Vec::new(),
            pushes: BTreeMap::new(),
            conflicts: BTreeMap::new(),
            channels: BTreeMap::new(),
            deliveries: HashMap::new(),
            disconnected: HashSet::new(),
            oauth_states: HashMap::new(),
            unavailable: false,
            crash_countdown: std::sync::atomic::AtomicI64::new(-1),
            calls: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Inner {
    fn check_available(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        self.calls.fetch_add(1, Ordering::SeqCst);
        let left = self.crash_countdown.load(Ordering::SeqCst);
        if left == 0 {
            return Err(StoreError::Unavailable("memory store crashed (injected)".into()));
        }
        if left > 0 {
            self.crash_countdown.store(left - 1, Ordering::SeqCst);
        }
        if self.unavailable {
            Err(StoreError::Unavailable("memory store set unavailable".into()))
        } else {
            Ok(())
        }
    }

    fn save_state(&mut self, c: &Connection) -> Result<u64, StoreError> {
        let key = (c.tenant_id.clone(), c.connection_id.clone());
        let stored = self.connections.get_mut(&key).ok_or(StoreError::Conflict)?;
        if stored.version != c.version {
            return Err(StoreError::Conflict);
        }
        stored.status = c.status;
        stored.cursors = c.cursors.clone();
        stored.credentials = c.credentials.clone();
        stored.last_sync_at = c.last_sync_at;
        stored.last_error = c.last_error.clone();
        stored.record_counts = c.record_counts.clone();
        stored.last_run_id = c.last_run_id.clone();
        stored.inflight_since = c.inflight_since;
        stored.push_channel = c.push_channel.clone();
        stored.object_errors = c.object_errors.clone();
        stored.provider_setup = c.provider_setup.clone();
        stored.version += 1;
        Ok(stored.version)
    }

    fn write_one(&mut self, write: RecordWrite) -> Result<(), StoreError> {
        match write {
            RecordWrite::Create(r) => {
                let conn = (r.tenant_id.clone(), r.connection_id.clone());
                let reg = (r.tenant_id.clone(), r.connection_id.clone(), r.object, r.external_id.clone());
                let records = self.records.entry(conn).or_default();
                if self.registry.contains_key(&reg) || records.contains_key(&r.record_id) {
                    return Err(StoreError::Conflict);
                }
                self.registry.insert(reg, r.record_id.clone());
                records.insert(r.record_id.clone(), r);
                Ok(())
            }
            RecordWrite::Update(r) => {
                let conn = (r.tenant_id.clone(), r.connection_id.clone());
                let stored = self
                    .records
                    .get_mut(&conn)
                    .and_then(|m| m.get_mut(&r.record_id))
                    .ok_or(StoreError::Conflict)?;
                if r.version == 0 || stored.version != r.version - 1 {
                    return Err(StoreError::Conflict);
                }
                *stored = r;
                Ok(())
            }
        }
    }
}

/// Every store port (connections, records, runs, audit) over one mutex-guarded state, so
/// `RunStore::finish` is atomic like a DynamoDB transaction.
///
/// Semantics kept from DynamoDB: version-conditioned writes return `StoreError::Conflict`;
/// `claim_slot` is conditional on the slot and `Ok(false)` when lost (or when the item is gone);
/// the due index holds only connections with `next_sync_at` set, spread over shards by
/// [`due_shard`]; a `Create` of a known external id (or record id) is a `Conflict`; the external id
/// registry is keyed by tenant, connection, object and external id (a connection has one
/// provider); `finish` fails with `Conflict` (changing nothing) if the job is already done or the
/// version moved; audit entries are never changed (re-appending an `entry_id` is a `Conflict`).
pub struct MemoryStore {
    inner: Mutex<Inner>,
    shards: u16,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("shards", &self.shards).finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store with [`DEFAULT_DUE_SHARDS`] due-index shards.
    pub fn new() -> Self {
        Self::with_shards(DEFAULT_DUE_SHARDS)
    }

    /// An empty store whose due index has `shards` shards (at least 1).
    pub fn with_shards(shards: u16) -> Self {
        Self { inner: Mutex::new(Inner::default()), shards: shards.max(1) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes every store call fail with `StoreError::Unavailable` until set back to false.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// Lets the next `calls` store calls succeed, then fails every call (a process dying at that
    /// step) until [`MemoryStore::recover`].
    pub fn crash_after(&self, calls: u32) {
        self.lock().crash_countdown.store(i64::from(calls), std::sync::atomic::Ordering::SeqCst);
    }

    /// Store calls made so far (each is a step a crash can interrupt).
    pub fn calls(&self) -> u64 {
        self.lock().calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Ends an injected crash.
    pub fn recover(&self) {
        self.lock().crash_countdown.store(-1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The due-index shard of this connection in this store.
    pub fn shard_of(&self, tenant: &TenantId, connection: &ConnectionId) -> u16 {
        due_shard(tenant, connection, self.shards)
    }

    /// Overwrites a stored connection as is (settings and `next_sync_at` included), bypassing
    /// the version check: a test fixture, not a port operation.
    pub fn put_connection(&self, connection: Connection) {
        let key = (connection.tenant_id.clone(), connection.connection_id.clone());
        self.lock().connections.insert(key, connection);
    }

    /// Every audit entry, in append order.
    pub fn audit_entries(&self) -> Vec<AuditEntry> {
        self.lock().audit.clone()
    }

    /// Every stored record of one connection, by record id.
    pub fn records_of(&self, tenant: &TenantId, connection: &ConnectionId) -> Vec<CanonicalRecord> {
        let key = (tenant.clone(), connection.clone());
        self.lock().records.get(&key).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Every stored run of one connection, in the order they were finished.
    pub fn runs_of(&self, tenant: &TenantId, connection: &ConnectionId) -> Vec<SyncRun> {
        let key = (tenant.clone(), connection.clone());
        self.lock().runs.get(&key).cloned().unwrap_or_default()
    }
}

#[derive(Serialize, Deserialize)]
struct KeyPosition {
    after: String,
}

/// One page of `items` (already in key order) after the token's key.
fn page_after<T: Clone>(
    items: Vec<(String, T)>,
    limit: usize,
    page_token: Option<&str>,
) -> Result<Page<T>, StoreError> {
    let after = page_token.map(decode_token::<KeyPosition>).transpose()?.map(|p| p.after);
    let mut rest: Vec<(String, T)> =
        items.into_iter().filter(|(k, _)| after.as_ref().is_none_or(|a| k > a)).collect();
    let size = page_size(limit);
    let next = if rest.len() > size {
        rest.truncate(size);
        rest.last().map(|(k, _)| encode_token(&KeyPosition { after: k.clone() })).transpose()?
    } else {
        None
    };
    Ok(Page { items: rest.into_iter().map(|(_, v)| v).collect(), next })
}

#[async_trait]
impl PushStore for MemoryStore {
    async fn create(&self, item: &PushItem) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        inner.check_available()?;
        let key = (item.tenant_id.clone(), item.push_id.clone());
        if inner.pushes.contains_key(&key) {
            return Ok(false);
        }
        inner.pushes.insert(key, PushItem { version: 1, ..item.clone() });
        Ok(true)
    }

    async fn get(&self, tenant: &TenantId, push_id: &str) -> Result<Option<PushItem>, StoreError> {
        let inner = self.lock();
        inner.check_available()?;
        Ok(inner.pushes.get(&(tenant.clone(), push_id.to_owned())).cloned())
    }

    async fn list(&self, tenant: &TenantId, query: &PushQuery) -> Result<Page<PushItem>, StoreError> {
        let inner = self.lock();
        inner.check_available()?;
        let mut items: Vec<(String, PushItem)> = inner
            .pushes
            .iter()
            .filter(|((t, _), p)| t == tenant && query.matches(p))
            .map(|(_, p)| (p.queue_order(), p.clone()))
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        page_after(items, query.limit, query.page_token.as_deref())
    }

    async fn save(&self, item: &PushItem) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        inner.check_available()?;
        let key = (item.tenant_id.clone(), item.push_id.clone());
        match inner.pushes.get(&key) {
            Some(stored) if stored.version == item.version => {}
            _ => return Err(StoreError::Conflict),
        }
        let version = item.version + 1;
        inner.pushes.insert(key, PushItem { version, ..item.clone() });
        Ok(version)
    }
}

#[async_trait]
impl ConflictStore for MemoryStore {
    async fn detected(&self, item: &ConflictItem) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        inner.check_available()?;
        let key = (item.tenant_id.clone(), item.conflict_id.clone());
        let version = match inner.conflicts.get(&key) {
            Some(old) if old.local == item.local && old.remote == item.remote => return Ok(false),
            Some(old) => old.version,
            None => 0,
        };
        inner.conflicts.insert(key, ConflictItem { version: version + 1, ..item.clone() });
        Ok(true)
    }

    async fn get(&self, tenant: &TenantId, conflict_id: &str) -> Result<Option<ConflictItem>, StoreError> {
        let inner = self.lock();
        inner.check_available()?;
        Ok(inner.conflicts.get(&(tenant.clone(), conflict_id.to_owned())).cloned())
    }

    async fn list(&self, tenant: &TenantId, query: &ConflictQuery) -> Result<Page<ConflictItem>, StoreError> {
        let inner = self.lock();
        inner.check_available()?;
        let items = inner
            .conflicts
            .iter()
            .filter(|((t, _), c)| {
                t == tenant
                    && query.connection.as_ref().is_none_or(|x| x == &c.connection_id)
                    && query.status.is_none_or(|s: ConflictStatus| s == c.status)
                    && query.field.as_ref().is_none_or(|f| f == &c.field)
            })
            .map(|((_, id), c)| (id.clone(), c.clone()))
            .collect();
        page_after(items, query.limit, query.page_token.as_deref())
    }

    async fn save(&self, item: &ConflictItem) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        inner.check_available()?;
        let key = (item.tenant_id.clone(), item.conflict_id.clone());
        match inner.conflicts.get(&key) {
            Some(stored) if stored.version == item.version => {}
            _ => return Err(StoreError::Conflict),
        }
        let version = item.version + 1;
        inner.conflicts.insert(key, ConflictItem { version, ..item.clone() });
        Ok(version)
    }
}

#[async_trait]
impl ConnectionStore for MemoryStore {
    async fn create(&self, connection: &Connection) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.check_available()?;
        let key = (connection.tenant_id.clone(), connection.connection_id.clone());
        if inner.connections.contains_key(&key) {
            return Err(StoreError::Conflict);
        }
        inner.connections.insert(key, connection.clone());
        Ok(())
    }

    async fn get(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
    ) -> Result<Option<Connection>, StoreError> {
        let inner = self.lock();
        inner.check_available()?;
        Ok(inner.connections.get(&(tenant.clone(), connection.clone())).cloned())
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<Connection>, StoreError> {
        let inner = self.lock();
        inner.check_available()?;
        Ok(inner.connections.values().filter(|c| &c.tenant_id == tenant).cloned().collect())
    }

    async fn due(
        &self,
        shard: u16,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueConnection>, StoreError> {
        let inner = self.lock();
        inner.check_available()?;
        let mut due: Vec<DueConnection> = inner
            .connections
            .values()
            .filter(|c| due_shard(&c.tenant_id, &c.connection_id, self.shards) == shard)
            .filter_map(|c| {
                let at = c.next_sync_at?;
                (at <= now).then(|| DueConnection {
                    tenant_id: c.tenant_id.clone(),
                    connection_id: c.connection_id.clone(),
                    next_sync_at: at,
                    interval_minutes: c.interval_minutes,
                })
            })
            .collect();
        due.sort_by_key(|d| d.next_sync_at);
        due.truncate(page_size(limit));
        Ok(due)
    }

    async fn claim_slot(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        slot: DateTime<Utc>,
        next: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        inner.check_available()?;
        match inner.connections.get_mut(&(tenant.clone(), connection.clone())) {
            Some(c) if c.next_sync_at == Some(slot) => {
                c.next_sync_at = Some(next);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn save_state(&self, connection: &Connection) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        inner.check_available()?;
        inner.save_state(connection)
    }

    async fn save_settings(&self, connection: &Connection) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        inner.check_available()?;
        let key = (connection.tenant_id.clone(), connection.connection_id.clone());
        let stored = inner.connections.get_mut(&key).ok_or(StoreError::Conflict)?;
        if stored.settings_version != connection.settings_version {
            return Err(StoreError::Conflict);
        }
        stored.interval_minutes = connection.interval_minutes;
        stored.settings = connection.settings.clone();
        stored.paused_at = connection.paused_at;
        stored.next_sync_at = connection.next_sync_at;
        stored.settings_version += 1;
        Ok(stored.settings_version)
    }

    async fn put_channel(
        &self,
        channel: &PushChannel,
        tenant: &TenantId,
        connection: &ConnectionId,
        provider: Provider,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.check_available()?;
        inner.channels.insert(channel.id.clone(), (tenant.clone(), connection.clone(), provider));
        Ok(())
    }

    async fn find_channel(
        &self,
        channel_id: &str,
    ) -> Result<Option<(TenantId, ConnectionId, Provider)>, StoreError> {
        let inner = self.lock();
        inner.check_available()?;
        Ok(inner.channels.get(channel_id).cloned())
    }

    async fn find_by_account(
        &self,
        provider: Provider,
        account: &str,
    ) -> Result<Vec<(TenantId, ConnectionId)>, StoreError> {
        let inner = self.lock();
        inner.check_available()?;
        Ok(inner
            .connections
            .values()
            .filter(|c| c.provider == provider && c.account_id.as_deref() == Some(account))
            .map(|c| (c.tenant_id.clone(), c.connection_id.clone()))
            .take(100)
            .collect())
    }

    async fn disconnect(&self, connection: &Connection, _at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.check_available()?;
        let key = (connection.tenant_id.clone(), connection.connection_id.clone());
        match inner.connections.get(&key) {
            Some(c) if c.version == connection.version => {}
            _ => return Err(StoreError::Conflict),
        }
        inner.connections.remove(&key);
        inner.disconnected.insert(key);
        Ok(())
    }

    async fn was_disconnected(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
    ) -> Result<bool, StoreError> {
        let inner = self.lock();
        inner.check_available()?;
        Ok(inner.disconnected.contains(&(tenant.clone(), connection.clone())))
    }
}

#[async_trait]
impl DeliveryLedger for MemoryStore {
    async fn first_delivery(
        &self,
        key: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        inner.check_available()?;
        match inner.deliveries.get(key) {
            Some(until) if *until > now => Ok(false),
            _ => {
                inner.deliveries.insert(key.to_owned(), expires_at);
                Ok(true)
            }
        }
    }

    async fn forget_delivery(&self, key: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.check_available()?;
        inner.deliveries.remove(key);
        Ok(())
    }
}

#[async_trait]
impl crate::ports::OAuthStateStore for MemoryStore {
    async fn put_state(
        &self,
        state: &str,
        pending: &crate::domain::oauth::PendingAuthorization,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.check_available()?;
        inner.oauth_states.insert(state.to_owned(), pending.clone());
        Ok(())
    }

    async fn take_state(
        &self,
        state: &str,
    ) -> Result<Option<crate::domain::oauth::PendingAuthorization>, StoreError> {
        let mut inner = self.lock();
        inner.check_available()?;
        Ok(inner.oauth_states.remove(state))
    }
}

#[async_trait]
impl RecordStore for MemoryStore {
    async fn get_by_external(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        _provider: Provider,
        object: ObjectType,
        ids: &[ExternalId],
    ) -> Result<HashMap<ExternalId, CanonicalRecord>, StoreError> {
        let inner = self.lock();
        inner.check_available()?;
        if ids.len() > 100 {
            return Err(StoreError::Backend("at most 100 ids a call".into()));
        }
        let records = inner.records.get(&(tenant.clone(), connection.clone()));
        let mut found = HashMap::new();
        for id in ids {
            let reg = (tenant.clone(), connection.clone(), object, id.clone());
            if let Some(r) = inner.registry.get(&reg).and_then(|rid| records?.get(rid)) {
                found.insert(id.clone(), r.clone());
            }
        }
        Ok(found)
    }

    async fn write(
        &self,
        _provider: Provider,
        writes: Vec<RecordWrite>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut inner = self.lock();
        inner.check_available()?;
        Ok(writes.into_iter().map(|w| inner.write_one(w)).collect())
    }

    async fn get(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        record: &RecordId,
    ) -> Result<Option<CanonicalRecord>, StoreError> {
        let inner = self.lock();
        inner.check_available()?;
        Ok(inner.records.get(&(tenant.clone(), connection.clone())).and_then(|m| m.get(record)).cloned())
    }

    async fn list(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        object: Option<ObjectType>,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<Page<CanonicalRecord>, StoreError> {
        let after = page_token.map(decode_token::<RecordPosition>).transpose()?.map(|p| p.after);
        let inner = self.lock();
        inner.check_available()?;
        let limit = page_size(limit);
        let Some(records) = inner.records.get(&(tenant.clone(), connection.clone())) else {
            return Ok(Page { items: Vec::new(), next: None });
        };
        let mut matching = records
            .iter()
            .filter(|(id, _)| after.as_ref().is_none_or(|a| *id > a))
            .map(|(_, r)| r)
            .filter(|r| object.is_none_or(|o| r.object == o));
        let items: Vec<CanonicalRecord> = matching.by_ref().take(limit).cloned().collect();
        let next = match (matching.next(), items.last()) {
            (Some(_), Some(last)) => Some(encode_token(&RecordPosition { after: last.record_id.clone() })?),
            _ => None,
        };
        Ok(Page { items, next })
    }

    async fn events_by_ical_uid(
        &self,
        tenant: &TenantId,
        uids: &[String],
    ) -> Result<Vec<CanonicalRecord>, StoreError> {
        let inner = self.lock();
        inner.check_available()?;
        let wanted: std::collections::BTreeSet<&str> =
            uids.iter().map(String::as_str).filter(|u| !u.is_empty()).collect();
        if wanted.len() > crate::ports::MAX_UIDS_PER_LOOKUP {
            return Err(StoreError::Backend("too many UIDs in one lookup".into()));
        }
        let mut per_uid: HashMap<&str, usize> = HashMap::new();
        let mut found = Vec::new();
        let events = inner
            .records
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .flat_map(|(_, records)| records.values())
            .filter(|r| r.object == ObjectType::Events && !r.deleted);
        for record in events {
            let Some(uid) = record.fields.get("ical_uid").and_then(serde_json::Value::as_str) else {
                continue;
            };
            let Some(uid) = wanted.get(uid) else { continue };
            let count = per_uid.entry(uid).or_default();
            if *count < crate::ports::MAX_EVENTS_PER_UID {
                *count += 1;
                found.push(record.clone());
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl RunStore for MemoryStore {
    async fn job_done(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        job: &JobId,
    ) -> Result<bool, StoreError> {
        let inner = self.lock();
        inner.check_available()?;
        Ok(inner.jobs_done.contains(&(tenant.clone(), connection.clone(), job.clone())))
    }

    async fn finish(&self, connection: &Connection, run: &SyncRun) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        inner.check_available()?;
        let done = (run.tenant_id.clone(), run.connection_id.clone(), run.job_id.clone());
        if inner.jobs_done.contains(&done) {
            return Err(StoreError::Conflict);
        }
        let version = inner.save_state(connection)?;
        inner.runs.entry((run.tenant_id.clone(), run.connection_id.clone())).or_default().push(run.clone());
        inner.jobs_done.insert(done);
        Ok(version)
    }

    async fn list_runs(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        limit: usize,
    ) -> Result<Vec<SyncRun>, StoreError> {
        let inner = self.lock();
        inner.check_available()?;
        let mut runs = inner.runs.get(&(tenant.clone(), connection.clone())).cloned().unwrap_or_default();
        runs.sort_by(|a, b| (b.started_at, &b.run_id).cmp(&(a.started_at, &a.run_id)));
        runs.truncate(page_size(limit));
        Ok(runs)
    }
}

#[async_trait]
impl AuditLog for MemoryStore {
    async fn append(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.check_available()?;
        let mut ids: HashSet<&str> = inner.audit.iter().map(|e| e.entry_id.as_str()).collect();
        if !entries.iter().all(|e| ids.insert(e.entry_id.as_str())) {
            return Err(StoreError::Conflict);
        }
        inner.audit.extend(entries.iter().cloned());
        Ok(())
    }

    /// Newest first by (`at`, `entry_id`); `from` and `to` are inclusive.
    async fn query(&self, tenant: &TenantId, query: &AuditQuery) -> Result<Page<AuditEntry>, StoreError> {
        let after = query.page_token.as_deref().map(decode_token::<AuditPosition>).transpose()?;
        let inner = self.lock();
        inner.check_available()?;
        let mut matching: Vec<&AuditEntry> = inner
            .audit
            .iter()
            .filter(|e| &e.tenant_id == tenant)
            .filter(|e| query.connection.as_ref().is_none_or(|c| e.connection_id.as_ref() == Some(c)))
            .filter(|e| query.record.as_ref().is_none_or(|r| e.record_id.as_ref() == Some(r)))
            .filter(|e| query.operations.is_empty() || query.operations.contains(&e.operation))
            .filter(|e| query.outcomes.is_empty() || query.outcomes.contains(&e.outcome))
            .filter(|e| query.from.is_none_or(|from| e.at >= from))
            .filter(|e| query.to.is_none_or(|to| e.at <= to))
            .filter(|e| {
                after.as_ref().is_none_or(|p| (e.at, e.entry_id.as_str()) < (p.at, p.entry_id.as_str()))
            })
            .collect();
        matching.sort_by(|a, b| (b.at, &b.entry_id).cmp(&(a.at, &a.entry_id)));
        let limit = page_size(query.limit);
        let next = match (matching.len() > limit, matching.get(limit.saturating_sub(1))) {
            (true, Some(last)) => {
                Some(encode_token(&AuditPosition { at: last.at, entry_id: last.entry_id.clone() })?)
            }
            _ => None,
        };
        Ok(Page { items: matching.into_iter().take(limit).cloned().collect(), next })
    }
}

/// The jobs queue as SQS FIFO sees it: a job whose id was already accepted is dropped
/// (deduplication; the in-memory window never closes).
#[derive(Debug, Default)]
pub struct MemoryQueue {
    jobs: Mutex<Vec<Job>>,
    failing: Mutex<bool>,
    delays: Mutex<Vec<(String, std::time::Duration)>>,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// The accepted jobs, in enqueue order.
    pub fn jobs(&self) -> Vec<Job> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Removes and returns the accepted jobs (as a consumer would receive them).
    pub fn take(&self) -> Vec<Job> {
        std::mem::take(&mut *self.jobs.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The retry delays asked for, as `(receipt handle, delay)`.
    pub fn retry_delays(&self) -> Vec<(String, std::time::Duration)> {
        self.delays.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// While true, `enqueue` fails with `QueueError::Partial` naming every job and accepts none.
    pub fn set_failing(&self, failing: bool) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = failing;
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<(), QueueError> {
        if *self.failing.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(QueueError::Partial(jobs.iter().map(|j| j.job_id.clone()).collect()));
        }
        let mut stored = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        for job in jobs {
            if !stored.iter().any(|j| j.job_id == job.job_id) {
                stored.push(job.clone());
            }
        }
        Ok(())
    }

    async fn retry_later(&self, receipt_handle: &str, delay: std::time::Duration) -> Result<(), QueueError> {
        self.delays.lock().unwrap_or_else(|p| p.into_inner()).push((receipt_handle.to_owned(), delay));
        Ok(())
    }
}

/// The event bus: keeps what was published.
#[derive(Debug, Default)]
pub struct MemoryBus {
    events: Mutex<Vec<DomainEvent>>,
    failing: Mutex<bool>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// The published events, in order.
    pub fn events(&self) -> Vec<DomainEvent> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// While true, `publish` fails with `BusError::Partial` for every event and keeps none.
    pub fn set_failing(&self, failing: bool) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = failing;
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), BusError> {
        if *self.failing.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(BusError::Partial(events.len()));
        }
        self.events.lock().unwrap_or_else(|p| p.into_inner()).extend(events.iter().cloned());
        Ok(())
    }
}

/// A clock that stands still until a test moves it.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self { now: Mutex::new(now) }
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        AuditOutcome, ConnectionStatus, Credentials, JobReason, NewConnection, Operation, RunCounts, RunId,
        RunStatus,
    };
    use chrono::{Duration, TimeZone};
    use secrecy::SecretString;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).single().unwrap()
    }

    fn tenant(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    fn conn(t: &str, now: DateTime<Utc>) -> Connection {
        Connection::new(
            tenant(t),
            NewConnection {
                provider: Provider::Hubspot,
                base_url: "http://127.0.0.1:1".into(),
                credentials: Credentials {
                    access_token: SecretString::from("a"),
                    refresh_token: None,
                    expires_at: None,
                },
                interval_minutes: 15,
                settings: Default::default(),
            },
            now,
        )
    }

    fn record(c: &Connection, ext: &str, version: u64) -> CanonicalRecord {
        let external_id = ExternalId::parse(ext).unwrap();
        CanonicalRecord {
            tenant_id: c.tenant_id.clone(),
            connection_id: c.connection_id.clone(),
            record_id: RecordId::derive(&c.tenant_id, &c.connection_id, ObjectType::Contacts, &external_id),
            object: ObjectType::Contacts,
            external_id,
            fields: Default::default(),
            base: Default::default(),
            remote_modified_at: None,
            etag: None,
            local_modified_at: None,
            sources: Default::default(),
            pending_push: Default::default(),
            deleted: false,
            created_at: t0(),
            updated_at: t0(),
            version,
        }
    }

    fn run(c: &Connection, job: &str) -> SyncRun {
        SyncRun {
            tenant_id: c.tenant_id.clone(),
            connection_id: c.connection_id.clone(),
            run_id: RunId::generate(),
            job_id: JobId::parse(job).unwrap(),
            reason: JobReason::Schedule,
            status: RunStatus::Succeeded,
            started_at: t0(),
            finished_at: t0(),
            duration_ms: 0,
            counts: RunCounts::default(),
            error: None,
            objects: Default::default(),
        }
    }

    #[tokio::test]
    async fn save_state_with_a_stale_version_is_a_conflict_and_changes_nothing() {
        let store = MemoryStore::new();
        let mut c = conn("t", t0());
        ConnectionStore::create(&store, &c).await.unwrap();
        c.status = ConnectionStatus::Synced;
        assert_eq!(store.save_state(&c).await.unwrap(), 1);
        c.status = ConnectionStatus::Error;
        assert!(matches!(store.save_state(&c).await, Err(StoreError::Conflict)));
        let stored = ConnectionStore::get(&store, &c.tenant_id, &c.connection_id).await.unwrap().unwrap();
        assert_eq!((stored.status, stored.version), (ConnectionStatus::Synced, 1));
    }

    #[tokio::test]
    async fn creating_a_connection_twice_is_a_conflict() {
        let store = MemoryStore::new();
        let c = conn("t", t0());
        ConnectionStore::create(&store, &c).await.unwrap();
        assert!(matches!(ConnectionStore::create(&store, &c).await, Err(StoreError::Conflict)));
    }

    #[tokio::test]
    async fn due_lists_only_set_and_past_slots_of_the_shard_oldest_first() {
        let store = MemoryStore::with_shards(1);
        let mut late = conn("t", t0());
        late.next_sync_at = Some(t0() - Duration::minutes(1));
        let mut early = conn("t", t0());
        early.next_sync_at = Some(t0() - Duration::minutes(9));
        let mut future = conn("t", t0());
        future.next_sync_at = Some(t0() + Duration::minutes(1));
        let mut paused = conn("t", t0());
        paused.next_sync_at = None;
        for c in [&late, &early, &future, &paused] {
            store.put_connection((*c).clone());
        }
        let due = store.due(0, t0(), 10).await.unwrap();
        let ids: Vec<_> = due.iter().map(|d| d.connection_id.clone()).collect();
        assert_eq!(ids, vec![early.connection_id.clone(), late.connection_id.clone()]);
        assert!(store.due(1, t0(), 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn every_connection_is_in_exactly_one_shard() {
        let store = MemoryStore::with_shards(4);
        for _ in 0..20 {
            store.put_connection(conn("t", t0()));
        }
        let mut total = 0;
        for shard in 0..4 {
            total += store.due(shard, t0(), 100).await.unwrap().len();
        }
        assert_eq!(total, 20);
    }

    #[tokio::test]
    async fn claim_slot_succeeds_once_per_slot() {
        let store = MemoryStore::new();
        let c = conn("t", t0());
        ConnectionStore::create(&store, &c).await.unwrap();
        let next = t0() + Duration::minutes(15);
        assert!(store.claim_slot(&c.tenant_id, &c.connection_id, t0(), next).await.unwrap());
        assert!(!store.claim_slot(&c.tenant_id, &c.connection_id, t0(), next).await.unwrap());
        let stored = ConnectionStore::get(&store, &c.tenant_id, &c.connection_id).await.unwrap().unwrap();
        assert_eq!((stored.next_sync_at, stored.version), (Some(next), 0));
    }

    #[tokio::test]
    async fn record_create_of_a_known_external_id_and_stale_update_are_conflicts() {
        let store = MemoryStore::new();
        let c = conn("t", t0());
        let r = record(&c, "e1", 0);
        let results = store
            .write(Provider::Hubspot, vec![RecordWrite::Create(r.clone()), RecordWrite::Create(r.clone())])
            .await
            .unwrap();
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(StoreError::Conflict)));
        let mut next = r.clone();
        next.version = 1;
        let results = store
            .write(Provider::Hubspot, vec![RecordWrite::Update(next.clone()), RecordWrite::Update(next)])
            .await
            .unwrap();
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(StoreError::Conflict)));
        let found = store
            .get_by_external(
                &c.tenant_id,
                &c.connection_id,
                Provider::Hubspot,
                ObjectType::Contacts,
                &[r.external_id.clone(), ExternalId::parse("missing").unwrap()],
            )
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[&r.external_id].version, 1);
    }

    #[tokio::test]
    async fn record_pages_cover_every_record_once_and_reject_forged_tokens() {
        let store = MemoryStore::new();
        let c = conn("t", t0());
        let writes = (0..7).map(|i| RecordWrite::Create(record(&c, &format!("e{i}"), 0))).collect();
        store.write(Provider::Hubspot, writes).await.unwrap();
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = RecordStore::list(&store, &c.tenant_id, &c.connection_id, None, 3, token.as_deref())
                .await
                .unwrap();
            assert!(page.items.len() <= 3);
            seen.extend(page.items.into_iter().map(|r| r.record_id));
            match page.next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!((seen.len(), unique.len()), (7, 7));
        let forged = RecordStore::list(&store, &c.tenant_id, &c.connection_id, None, 3, Some("!!")).await;
        assert!(matches!(forged, Err(StoreError::InvalidPageToken)));
        let other =
            RecordStore::list(&store, &tenant("other"), &c.connection_id, None, 3, None).await.unwrap();
        assert!(other.items.is_empty());
    }

    #[tokio::test]
    async fn finish_saves_state_stores_the_run_and_marks_the_job_done_atomically() {
        let store = MemoryStore::new();
        let mut c = conn("t", t0());
        ConnectionStore::create(&store, &c).await.unwrap();
        let r = run(&c, "j1");
        assert!(!store.job_done(&c.tenant_id, &c.connection_id, &r.job_id).await.unwrap());
        c.status = ConnectionStatus::Synced;
        assert_eq!(store.finish(&c, &r).await.unwrap(), 1);
        assert!(store.job_done(&c.tenant_id, &c.connection_id, &r.job_id).await.unwrap());
        c.version = 1;
        assert!(matches!(store.finish(&c, &r).await, Err(StoreError::Conflict)));
        let stale = run(&c, "j2");
        c.version = 0;
        assert!(matches!(store.finish(&c, &stale).await, Err(StoreError::Conflict)));
        assert!(!store.job_done(&c.tenant_id, &c.connection_id, &stale.job_id).await.unwrap());
        assert_eq!(store.list_runs(&c.tenant_id, &c.connection_id, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn audit_is_append_only_and_pages_newest_first() {
        let store = MemoryStore::new();
        let entries: Vec<AuditEntry> = (0..5)
            .map(|i| {
                AuditEntry::new(
                    tenant("t"),
                    Operation::Pull,
                    AuditOutcome::Success,
                    "worker",
                    t0() + Duration::seconds(i),
                )
            })
            .collect();
        store.append(&entries).await.unwrap();
        assert!(matches!(store.append(&entries[..1]).await, Err(StoreError::Conflict)));
        let first = store.query(&tenant("t"), &AuditQuery { limit: 3, ..Default::default() }).await.unwrap();
        assert_eq!(first.items[0].at, t0() + Duration::seconds(4));
        let second = store
            .query(&tenant("t"), &AuditQuery { limit: 3, page_token: first.next, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(second.items.len(), 2);
        assert!(second.next.is_none());
        assert_eq!(second.items[1].at, t0());
        assert!(store.query(&tenant("u"), &AuditQuery::default()).await.unwrap().items.is_empty());
    }

    #[tokio::test]
    async fn queue_deduplicates_by_job_id_and_can_fail() {
        let q = MemoryQueue::new();
        let c = ConnectionId::parse("c").unwrap();
        let job = Job::sync(tenant("t"), c.clone(), Job::scheduled_id(&c, t0()), JobReason::Schedule, t0());
        q.enqueue(&[job.clone(), job.clone()]).await.unwrap();
        assert_eq!(q.jobs(), vec![job.clone()]);
        q.set_failing(true);
        assert!(matches!(q.enqueue(&[job]).await, Err(QueueError::Partial(ids)) if ids.len() == 1));
    }
}
