//! Stores that keep nothing, for the worker process of the benchmark: DynamoDB on moto manages about
//! 30 writes a second locally (one thread), so a pull of 100,000 records through it would measure
//! moto, not the engine. Lookups find nothing, writes are counted and dropped, and the external id of
//! every written record goes to a file so that the parent can check what the worker saw.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use syncbridge::domain::{
    AuditEntry, CanonicalRecord, ConnectionId, DomainEvent, ExternalId, ObjectType, Provider, RecordId,
    TenantId,
};
use syncbridge::ports::{
    AuditLog, AuditQuery, BusError, EventBus, Page, RecordStore, RecordWrite, StoreError,
};

/// What the discarding stores were asked to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discarded {
    /// External ids looked up (every one answered "not found").
    pub lookups: u64,
    pub record_writes: u64,
    pub events: u64,
    pub audit_entries: u64,
}

/// A [`RecordStore`], [`AuditLog`] and [`EventBus`] that keep nothing. Each written record's
/// `object external_id` is appended to the id log (buffered; the parent reads it after exit).
pub struct NullStores {
    lookups: AtomicU64,
    record_writes: AtomicU64,
    events: AtomicU64,
    audit_entries: AtomicU64,
    id_log: Mutex<BufWriter<File>>,
}

fn backend(e: std::io::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

impl NullStores {
    pub fn new(id_log: &Path) -> std::io::Result<Self> {
        Ok(Self {
            lookups: AtomicU64::new(0),
            record_writes: AtomicU64::new(0),
            events: AtomicU64::new(0),
            audit_entries: AtomicU64::new(0),
            id_log: Mutex::new(BufWriter::new(File::create(id_log)?)),
        })
    }

    /// Flushes the id log and returns the counts.
    pub fn finish(&self) -> std::io::Result<Discarded> {
        self.id_log.lock().unwrap_or_else(|p| p.into_inner()).flush()?;
        Ok(Discarded {
            lookups: self.lookups.load(Ordering::Relaxed),
            record_writes: self.record_writes.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            audit_entries: self.audit_entries.load(Ordering::Relaxed),
        })
    }
}

#[async_trait]
impl RecordStore for NullStores {
    async fn get_by_external(
        &self,
        _tenant: &TenantId,
        _connection: &ConnectionId,
        _provider: Provider,
        _object: ObjectType,
        ids: &[ExternalId],
    ) -> Result<HashMap<ExternalId, CanonicalRecord>, StoreError> {
        self.lookups.fetch_add(ids.len() as u64, Ordering::Relaxed);
        Ok(HashMap::new())
    }

    async fn events_by_ical_uid(
        &self,
        _tenant: &TenantId,
        uids: &[String],
    ) -> Result<Vec<CanonicalRecord>, StoreError> {
        self.lookups.fetch_add(uids.len() as u64, Ordering::Relaxed);
        Ok(Vec::new())
    }

    async fn write(
        &self,
        _provider: Provider,
        writes: Vec<RecordWrite>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut log = self.id_log.lock().unwrap_or_else(|p| p.into_inner());
        for w in &writes {
            let (RecordWrite::Create(r) | RecordWrite::Update(r)) = w;
            writeln!(log, "{} {}", r.object, r.external_id.as_str()).map_err(backend)?;
        }
        self.record_writes.fetch_add(writes.len() as u64, Ordering::Relaxed);
        Ok(writes.iter().map(|_| Ok(())).collect())
    }

    async fn get(
        &self,
        _tenant: &TenantId,
        _connection: &ConnectionId,
        _record: &RecordId,
    ) -> Result<Option<CanonicalRecord>, StoreError> {
        Ok(None)
    }

    async fn list(
        &self,
        _tenant: &TenantId,
        _connection: &ConnectionId,
        _object: Option<ObjectType>,
        _limit: usize,
        _page_token: Option<&str>,
    ) -> Result<Page<CanonicalRecord>, StoreError> {
        Ok(Page { items: Vec::new(), next: None })
    }
}

#[async_trait]
impl AuditLog for NullStores {
    async fn append(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.audit_entries.fetch_add(entries.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn query(&self, _tenant: &TenantId, _query: &AuditQuery) -> Result<Page<AuditEntry>, StoreError> {
        Ok(Page { items: Vec::new(), next: None })
    }
}

#[async_trait]
impl EventBus for NullStores {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), BusError> {
        self.events.fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use secrecy::SecretString;
    use syncbridge::domain::{Connection, Credentials, NewConnection, RemoteRecord};
    use syncbridge::sync::pull::apply_page;

    use super::*;

    fn connection() -> Connection {
        let new = NewConnection {
            provider: Provider::Hubspot,
            base_url: "http://127.0.0.1:9".into(),
            credentials: Credentials {
                access_token: SecretString::from("t"),
                refresh_token: None,
                expires_at: None,
            },
            interval_minutes: 15,
            settings: Default::default(),
        };
        Connection::new(TenantId::parse("t1").unwrap(), new, Utc::now())
    }

    fn remote(id: &str) -> RemoteRecord {
        RemoteRecord {
            external_id: ExternalId::parse(id).unwrap(),
            object: ObjectType::Contacts,
            fields: Default::default(),
            remote_modified_at: None,
            etag: None,
            deleted: false,
        }
    }

    #[tokio::test]
    async fn every_page_applied_is_created_counted_and_logged_but_nothing_is_kept() {
        let dir = std::env::temp_dir().join(format!("null-store-test-{}.ids", std::process::id()));
        let store = NullStores::new(&dir).unwrap();
        let conn = connection();
        for page in [["1", "2"], ["2", "3"]] {
            let records = page.iter().map(|id| remote(id)).collect();
            let applied = apply_page(&store, &conn, ObjectType::Contacts, records, Utc::now()).await.unwrap();
            assert_eq!(applied.outcome.created.len(), 2, "a store that keeps nothing finds nothing");
        }
        let counts = store.finish().unwrap();
        assert_eq!(counts.lookups, 4);
        assert_eq!(counts.record_writes, 4);
        let log = std::fs::read_to_string(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(log.lines().collect::<Vec<_>>(), ["contacts 1", "contacts 2", "contacts 2", "contacts 3"]);
    }
}
