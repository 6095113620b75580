//! An in-memory provider account for unit tests of the engine's logic (merge, policies, pushes,
//! exactly-once): records with a logical modification clock, incremental pulls by that clock,
//! conditional updates and deletes (a deleted record is not found again), creates deduplicated by idempotency key, and counters of what was written.
//! Provider wire formats are tested against the HTTP fakes in `infra/fakes`, not here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;

use crate::domain::record::Fields;
use crate::domain::{Connection, Credentials, ExternalId, ObjectType, RemoteRecord, SyncCursor};
use crate::ports::{
    Precondition, ProviderClient, ProviderError, ProviderFactory, ProviderWrite, PulledPage, RequestStats,
    WriteAck,
};

#[derive(Debug, Clone)]
struct Stored {
    object: ObjectType,
    fields: Fields,
    /// Logical clock value of the last change.
    seq: u64,
    deleted: bool,
}

#[derive(Debug, Default)]
struct Account {
    /// Every value each (record, field) has had, in order.
    history: HashMap<(String, String), Vec<serde_json::Value>>,
    records: BTreeMap<String, Stored>,
    seq: u64,
    created_by_key: HashMap<String, String>,
    next_id: u64,
    creates: u64,
    updates: u64,
    conflicts: u64,
    requests: u64,
    /// Fail the next `n` write calls before applying anything (a provider outage).
    fail_writes: u32,
    /// Apply the next write call, then report it failed (the provider accepted it but the answer
    /// never arrived).
    lose_write_answers: u32,
}

/// A shared handle to one in-memory provider account.
#[derive(Clone, Default)]
pub struct MemoryProvider {
    account: Arc<Mutex<Account>>,
}

/// The stamp a logical clock value maps to (one second per change, from a fixed epoch).
pub fn stamp(seq: u64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default() + Duration::seconds(seq as i64)
}

impl MemoryProvider {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Account> {
        self.account.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A person creates or edits a record at the provider.
    pub fn edit(&self, object: ObjectType, id: &str, fields: &[(&str, serde_json::Value)]) {
        let mut a = self.lock();
        a.seq += 1;
        let seq = a.seq;
        let entry = a.records.entry(id.to_owned()).or_insert(Stored {
            object,
            fields: Fields::new(),
            seq,
            deleted: false,
        });
        for (k, v) in fields {
            entry.fields.insert((*k).to_owned(), v.clone());
        }
        entry.seq = seq;
        for (k, v) in fields {
            a.history.entry((id.to_owned(), (*k).to_owned())).or_default().push(v.clone());
        }
    }

    /// Every value `field` of record `id` has had at the provider.
    pub fn history(&self, id: &str, field: &str) -> Vec<serde_json::Value> {
        self.lock().history.get(&(id.to_owned(), field.to_owned())).cloned().unwrap_or_default()
    }

    /// A person deletes a record at the provider.
    pub fn delete(&self, id: &str) {
        let mut a = self.lock();
        a.seq += 1;
        let seq = a.seq;
        if let Some(r) = a.records.get_mut(id) {
            r.deleted = true;
            r.seq = seq;
        }
    }

    pub fn fields(&self, id: &str) -> Option<Fields> {
        self.lock().records.get(id).map(|r| r.fields.clone())
    }

    /// Records of `object` that exist (not deleted).
    pub fn live(&self, object: ObjectType) -> Vec<(String, Fields)> {
        self.lock()
            .records
            .iter()
            .filter(|(_, r)| r.object == object && !r.deleted)
            .map(|(id, r)| (id.clone(), r.fields.clone()))
            .collect()
    }

    /// (creates, updates, precondition conflicts) applied so far.
    pub fn writes(&self) -> (u64, u64, u64) {
        let a = self.lock();
        (a.creates, a.updates, a.conflicts)
    }

    pub fn fail_next_writes(&self, n: u32) {
        self.lock().fail_writes = n;
    }

    pub fn lose_next_write_answers(&self, n: u32) {
        self.lock().lose_write_answers = n;
    }

    /// A live record not changed since the precondition's stamp: `NotFound` for a missing or
    /// deleted one, `Conflict` (counted) for a changed one.
    fn check(a: &mut Account, id: &ExternalId, precondition: &Precondition) -> Result<(), ProviderError> {
        let current = a.records.get(id.as_str()).ok_or(ProviderError::NotFound)?;
        if current.deleted {
            return Err(ProviderError::NotFound);
        }
        if precondition.unmodified_since.is_some_and(|since| stamp(current.seq) > since) {
            a.conflicts += 1;
            return Err(ProviderError::Conflict);
        }
        Ok(())
    }

    fn apply(a: &mut Account, write: &ProviderWrite) -> Result<WriteAck, ProviderError> {
        match write {
            ProviderWrite::Create { object, fields, idempotency_key } => {
                if let Some(id) = a.created_by_key.get(idempotency_key.as_str()).cloned() {
                    let r = &a.records[&id];
                    return Ok(ack(&id, r));
                }
                a.seq += 1;
                a.next_id += 1;
                let id = format!("new-{}", a.next_id);
                let seq = a.seq;
                a.records.insert(
                    id.clone(),
                    Stored { object: *object, fields: fields.clone(), seq, deleted: false },
                );
                a.created_by_key.insert(idempotency_key.as_str().to_owned(), id.clone());
                a.creates += 1;
                Ok(ack(&id, &a.records[&id]))
            }
            ProviderWrite::Update { external_id, fields, precondition, .. } => {
                Self::check(a, external_id, precondition)?;
                a.seq += 1;
                let seq = a.seq;
                let r = a.records.get_mut(external_id.as_str()).ok_or(ProviderError::NotFound)?;
                r.fields.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                r.seq = seq;
                a.updates += 1;
                for (k, v) in fields {
                    a.history
                        .entry((external_id.as_str().to_owned(), k.clone()))
                        .or_default()
                        .push(v.clone());
                }
                let r = r.clone();
                Ok(ack(external_id.as_str(), &r))
            }
            ProviderWrite::Delete { external_id, precondition, .. } => {
                Self::check(a, external_id, precondition)?;
                a.seq += 1;
                let seq = a.seq;
                let r = a.records.get_mut(external_id.as_str()).ok_or(ProviderError::NotFound)?;
                r.deleted = true;
                r.seq = seq;
                let r = r.clone();
                Ok(ack(external_id.as_str(), &r))
            }
        }
    }
}

fn ack(id: &str, r: &Stored) -> WriteAck {
    WriteAck {
        external_id: ExternalId::parse(id).unwrap_or_else(|_| ExternalId::parse("invalid").expect("literal")),
        remote_modified_at: Some(stamp(r.seq)),
        etag: None,
        fields: Some(r.fields.clone()),
    }
}

#[async_trait]
impl ProviderClient for MemoryProvider {
    /// Everything of `object` changed after the cursor's clock value, in one page.
    async fn pull_page(
        &self,
        _token: &SecretString,
        object: ObjectType,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        let mut a = self.lock();
        a.requests += 1;
        let since: u64 = cursor.and_then(|c| c.as_str().parse().ok()).unwrap_or(0);
        let records = a
            .records
            .iter()
            .filter(|(_, r)| r.object == object && r.seq > since)
            .filter_map(|(id, r)| {
                Some(RemoteRecord {
                    external_id: ExternalId::parse(id.clone()).ok()?,
                    object,
                    fields: r.fields.clone(),
                    remote_modified_at: Some(stamp(r.seq)),
                    deleted: r.deleted,
                    etag: None,
                })
            })
            .collect();
        Ok(PulledPage {
            records,
            cursor: SyncCursor::new(a.seq.to_string()),
            has_more: false,
            reconcile_deletes: false,
        })
    }

    async fn write(
        &self,
        _token: &SecretString,
        writes: &[ProviderWrite],
    ) -> Result<Vec<Result<WriteAck, ProviderError>>, ProviderError> {
        let mut a = self.lock();
        a.requests += 1;
        if a.fail_writes > 0 {
            a.fail_writes -= 1;
            return Err(ProviderError::transient("503 from the provider"));
        }
        let results = writes.iter().map(|w| Self::apply(&mut a, w)).collect();
        if a.lose_write_answers > 0 {
            a.lose_write_answers -= 1;
            return Err(ProviderError::transient("the connection dropped before the answer"));
        }
        Ok(results)
    }

    async fn refresh(&self, _refresh_token: &SecretString) -> Result<Credentials, ProviderError> {
        Err(ProviderError::Unauthorized)
    }

    fn stats(&self) -> RequestStats {
        RequestStats { requests: self.lock().requests, rate_limited: 0 }
    }
}

impl ProviderFactory for MemoryProvider {
    fn client(&self, _connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError> {
        Ok(Box::new(self.clone()))
    }
}
