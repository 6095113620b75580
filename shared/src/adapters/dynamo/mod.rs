//! DynamoDB stores: connections, records (keyed by ids derived from their external ids), runs and
//! the job ledger in the main table (single-table design, keys `pk`/`sk`), and the append-only
//! audit log in its own table.
//!
//! Main table: GSI [`DUE_INDEX`] on `due_shard` (S) / `next_sync_at` (N, epoch seconds), projecting
//! keys and `interval_minutes`, sparse (only scheduled connections carry `due_shard`); GSI
//! [`PUSH_QUEUE_INDEX`] on `pk` / `push_order` (S), all attributes, sparse (only push items carry
//! `push_order`); GSI [`MEETING_UID_INDEX`] on `meeting_key` (S) = `T#{tenant}#ICAL#{uid}` / `sk`,
//! keys only, sparse (only live `events` records whose `ical_uid` is a string carry
//! `meeting_key`); TTL attribute `expires_at`. Audit table: keys `pk` = `T#{tenant}`, `sk` = `{RFC 3339 millis}#{entry_id}`, GSI
//! [`AUDIT_CONNECTION_INDEX`] on `conn_pk` / `sk`, GSI [`AUDIT_RECORD_INDEX`] on `rec_pk` / `sk`.
//! Item formats are in `item`.

mod audit;
mod item;
mod oauth;
mod queues;
mod records;

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};

use crate::adapters::crypto::{CryptoError, TokenCipher};
use crate::domain::{Connection, ConnectionId, JobId, Provider, PushChannel, SyncRun, TenantId};
use crate::ports::{ConnectionStore, DeliveryLedger, DueConnection, RunStore, StoreError};

use item::Item;
pub use item::due_shard;

/// Name of the main table's sparse due-connections index.
pub const DUE_INDEX: &str = "due";
/// Name of the audit table's index by connection.
pub const AUDIT_CONNECTION_INDEX: &str = "by_connection";
/// Name of the audit table's index by record (sparse: entries naming a record).
pub const AUDIT_RECORD_INDEX: &str = "by_record";
/// Name of the main table's push queue index (sparse: push items), on `pk` / `push_order`.
pub const PUSH_QUEUE_INDEX: &str = "push_queue";
/// Name of the main table's index of calendar events by iCalendar UID (sparse: live `events`
/// records with an `ical_uid`), on `meeting_key` / `sk`, keys only.
pub const MEETING_UID_INDEX: &str = "meeting_uid";

/// Most items one query page returns, whatever the caller asks.
const MAX_PAGE: usize = 1000;
/// Pages one filtered query call reads at most, and the smallest `Limit` each asks for.
const FILTERED_READS: usize = 8;
const FILTERED_PAGE: usize = 100;
/// Concurrent requests one `write` or `append` call keeps in flight.
const CONCURRENCY: usize = 16;
/// Attempts to drain `UnprocessedKeys` of a `BatchGetItem` before giving up as `Unavailable`.
const BATCH_ATTEMPTS: u32 = 6;

/// The DynamoDB implementation of `ConnectionStore`, `RecordStore`, `RunStore` and `AuditLog`.
/// Cheap to clone; build once per process.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    audit_table: String,
    cipher: TokenCipher,
    due_shards: u16,
}

impl fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .field("audit_table", &self.audit_table)
            .field("due_shards", &self.due_shards)
            .finish_non_exhaustive()
    }
}

impl DynamoStore {
    /// `due_shards` must match what the dispatcher scans (`Config::due_shards`); 0 is taken as 1.
    pub fn new(
        client: Client,
        table_name: impl Into<String>,
        audit_table_name: impl Into<String>,
        cipher: TokenCipher,
        due_shards: u16,
    ) -> Self {
        Self {
            client,
            table: table_name.into(),
            audit_table: audit_table_name.into(),
            cipher,
            due_shards: due_shards.max(1),
        }
    }

    /// The main table's name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    async fn get_item(&self, table: &str, key: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.item)
    }

    /// One query page: items and the key to continue from.
    async fn query_page(
        &self,
        q: &Query<'_>,
        limit: Option<usize>,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let out = self
            .client
            .query()
            .table_name(q.table)
            .set_index_name(q.index.map(str::to_owned))
            .key_condition_expression(&q.condition)
            .set_filter_expression(q.filter.clone())
            .set_expression_attribute_names(Some(q.names.clone()))
            .set_expression_attribute_values(Some(q.values.clone()))
            .scan_index_forward(q.forward)
            .set_limit(limit.map(page_limit))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key.filter(|k| !k.is_empty())))
    }

    /// Up to `limit` items of `q` from `start`, and the key to continue from. With a filter
    /// expression (which DynamoDB applies after `Limit`), it reads pages of at least
    /// [`FILTERED_PAGE`], cuts at `limit`, and continues after the last item returned (its
    /// `key_attributes`: the table's keys and the index's), not the last one read; after
    /// [`FILTERED_READS`] reads without enough matches it returns what it found with a key.
    async fn query_limited(
        &self,
        q: &Query<'_>,
        limit: usize,
        mut start: Option<Item>,
        key_attributes: &[&str],
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let limit = limit.max(1);
        if q.filter.is_none() {
            return self.query_page(q, Some(limit), start).await;
        }
        let mut found: Vec<Item> = Vec::new();
        let mut next = None;
        for _ in 0..FILTERED_READS {
            let want = (limit - found.len()).max(FILTERED_PAGE);
            let (items, last) = self.query_page(q, Some(want), start.take()).await?;
            found.extend(items);
            if found.len() >= limit {
                found.truncate(limit);
                // The cut item may be the very last one that exists; the next call then finds nothing.
                next = found.last().map(|i| {
                    key_attributes
                        .iter()
                        .filter_map(|name| i.get(*name).map(|v| ((*name).to_owned(), v.clone())))
                        .collect()
                });
                break;
            }
            match last {
                Some(key) => {
                    start = Some(key.clone());
                    next = Some(key);
                }
                None => {
                    next = None;
                    break;
                }
            }
        }
        Ok((found, next))
    }

    /// Every item the query matches, up to `max`.
    async fn query_all(&self, q: &Query<'_>, max: Option<usize>) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let remaining = match max {
                Some(m) if items.len() >= m => break,
                Some(m) => Some(m - items.len()),
                None => None,
            };
            let (page, next) = self.query_page(q, remaining, start).await?;
            items.extend(page);
            match next {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        if let Some(m) = max {
            items.truncate(m);
        }
        Ok(items)
    }

    /// `BatchGetItem` in chunks of 100 keys, retrying `UnprocessedKeys` with backoff.
    async fn batch_get(&self, table: &str, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut found = Vec::new();
        for chunk in keys.chunks(100) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                if attempt >= BATCH_ATTEMPTS {
                    return Err(StoreError::Unavailable("BatchGetItem left keys unprocessed".into()));
                }
                if attempt > 0 {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                attempt += 1;
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Backend(Box::new(e)))?;
                let mut out = self
                    .client
                    .batch_get_item()
                    .request_items(table, request)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                found.extend(out.responses.as_mut().and_then(|r| r.remove(table)).unwrap_or_default());
                pending = out
                    .unprocessed_keys
                    .as_mut()
                    .and_then(|u| u.remove(table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
        }
        Ok(found)
    }

    /// `BatchWriteItem` of puts in chunks of 25, retrying `UnprocessedItems` with backoff. No
    /// condition: for items no one else writes yet (a bulk import).
    async fn batch_put(&self, table: &str, items: Vec<Item>) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
        for chunk in items.chunks(25) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|i| {
                    let put = PutRequest::builder().set_item(Some(i.clone())).build().map_err(build_error)?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<_, StoreError>>()?;
            let mut attempt = 0;
            while !pending.is_empty() {
                if attempt >= BATCH_ATTEMPTS {
                    return Err(StoreError::Unavailable("BatchWriteItem left items unprocessed".into()));
                }
                if attempt > 0 {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                attempt += 1;
                let mut out = self
                    .client
                    .batch_write_item()
                    .request_items(table, pending)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                pending = out.unprocessed_items.as_mut().and_then(|u| u.remove(table)).unwrap_or_default();
            }
        }
        Ok(())
    }

    /// Imports connections in bulk (25 a request) into a table that does not hold them yet: what
    /// `create` writes for each (an account registry entry included), without its condition, so a
    /// connection that exists is overwritten. For loading data (benchmarks, migrations), never for
    /// connections a worker or the API may be writing.
    pub async fn import_connections(&self, connections: &[Connection]) -> Result<(), StoreError> {
        self.cipher.ready().await.map_err(crypto_error)?;
        let mut items = Vec::with_capacity(connections.len());
        for c in connections {
            items.push(item::connection_to_item(c, &self.cipher, self.due_shards)?);
            if let Some(account) = c.account_id.as_deref() {
                items.push(item::account_to_item(c, account));
            }
        }
        self.batch_put(&self.table, items).await
    }

    /// Connections from their items: resolves the items' data keys (KMS) first, then converts.
    async fn connections_from(&self, items: &[Item]) -> Result<Vec<Connection>, StoreError> {
        let sealed: Vec<String> = items.iter().flat_map(item::encrypted_values).collect();
        self.cipher.prepare(&sealed).await.map_err(crypto_error)?;
        items.iter().map(|i| item::connection_from_item(i, &self.cipher)).collect()
    }

    /// The connection's worker-owned state as an update conditional on its version (after
    /// `cipher.ready()`).
    fn state_update(&self, c: &Connection) -> Result<Update, StoreError> {
        let u = StateUpdate::new(item::connection_state(c, &self.cipher)?, c.version);
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(item::key(item::tenant_pk(&c.tenant_id), item::connection_sk(&c.connection_id))))
            .update_expression(u.expression)
            .condition_expression(u.condition)
            .set_expression_attribute_names(Some(u.names))
            .set_expression_attribute_values(Some(u.values))
            .build()
            .map_err(|e| StoreError::Backend(Box::new(e)))
    }
}

/// A key-condition query on one table or index.
struct Query<'a> {
    table: &'a str,
    index: Option<&'a str>,
    condition: String,
    names: HashMap<String, String>,
    values: Item,
    forward: bool,
    filter: Option<String>,
}

impl<'a> Query<'a> {
    fn new(table: &'a str, condition: impl Into<String>) -> Self {
        Self {
            table,
            index: None,
            condition: condition.into(),
            names: HashMap::new(),
            values: HashMap::new(),
            forward: true,
            filter: None,
        }
    }
    /// Adds `clause` to the filter expression (`AND`ed); filters apply after the page limit.
    fn filter(mut self, clause: &str) -> Self {
        self.filter = Some(match self.filter.take() {
            Some(f) => format!("{f} AND {clause}"),
            None => clause.to_owned(),
        });
        self
    }
    fn index(mut self, index: &'a str) -> Self {
        self.index = Some(index);
        self
    }
    fn name(mut self, placeholder: &str, attribute: &str) -> Self {
        self.names.insert(placeholder.to_owned(), attribute.to_owned());
        self
    }
    fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.insert(placeholder.to_owned(), value);
        self
    }
    fn backward(mut self) -> Self {
        self.forward = false;
        self
    }
}

fn page_limit(limit: usize) -> i32 {
    limit.clamp(1, MAX_PAGE) as i32
}

fn backoff(attempt: u32) -> Duration {
    crate::retry::backoff(Duration::from_millis(50), Duration::from_millis(3200), attempt)
}

/// `SET` of present attributes and `version = :v+1`, `REMOVE` of absent ones, conditional on
/// `version = :v`.
struct StateUpdate {
    expression: String,
    condition: String,
    names: HashMap<String, String>,
    values: Item,
}

impl StateUpdate {
    fn new(attrs: Vec<(&'static str, Option<AttributeValue>)>, version: u64) -> Self {
        let mut names = HashMap::from([("#version".to_owned(), "version".to_owned())]);
        let mut values =
            HashMap::from([(":v0".to_owned(), item::n(version)), (":v1".to_owned(), item::n(version + 1))]);
        let mut sets = Vec::new();
        let mut removes = Vec::new();
        for (i, (name, value)) in attrs.into_iter().enumerate() {
            names.insert(format!("#a{i}"), name.to_owned());
            match value {
                Some(v) => {
                    values.insert(format!(":a{i}"), v);
                    sets.push(format!("#a{i} = :a{i}"));
                }
                None => removes.push(format!("#a{i}")),
            }
        }
        sets.push("#version = :v1".to_owned());
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        Self { expression, condition: "#version = :v0".to_owned(), names, values }
    }
}

// ---- errors ----

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Maps an SDK error: lost conditions are `Conflict`, throttling, service faults and transport
/// failures are `Unavailable`, the rest `Backend`.
fn sdk_error<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(Box::new(err))
        }
        SdkError::ServiceError(_) => match err.code() {
            Some("ConditionalCheckFailedException") => StoreError::Conflict,
            Some(code) if is_transient_code(code) => StoreError::Unavailable(Box::new(err)),
            _ => StoreError::Backend(Box::new(err)),
        },
        _ => StoreError::Backend(Box::new(err)),
    }
}

fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "TransactionConflictException"
            | "TransactionInProgressException"
    )
}

/// Maps a `TransactWriteItems` error: a cancellation with any lost condition is `Conflict`; one
/// cancelled by a concurrent transaction or throttling is `Unavailable`.
fn transact_error<R>(err: SdkError<TransactWriteItemsError, R>) -> StoreError
where
    R: fmt::Debug + Send + Sync + 'static,
{
    if let Some(TransactWriteItemsError::TransactionCanceledException(e)) = err.as_service_error() {
        let codes: Vec<&str> = e.cancellation_reasons().iter().filter_map(|r| r.code()).collect();
        if let Some(mapped) = cancellation_error(&codes) {
            return mapped;
        }
    }
    sdk_error(err)
}

fn cancellation_error(codes: &[&str]) -> Option<StoreError> {
    if codes.contains(&"ConditionalCheckFailed") {
        return Some(StoreError::Conflict);
    }
    let transient = ["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"];
    codes
        .iter()
        .find(|c| transient.contains(c))
        .map(|c| StoreError::Unavailable(format!("transaction cancelled: {c}").into()))
}

/// A token encryption failure as a store error: KMS throttling and outages are retryable.
pub(crate) fn crypto_error(e: CryptoError) -> StoreError {
    if e.is_retryable() { StoreError::Unavailable(Box::new(e)) } else { StoreError::Backend(Box::new(e)) }
}

fn build_error(e: impl StdError + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e) as BoxError)
}

// ---- page tokens ----

/// An opaque page token: base64url of the `LastEvaluatedKey` as a JSON object of strings.
fn encode_token(key: &Item) -> Result<String, StoreError> {
    let mut plain = serde_json::Map::new();
    for (name, value) in key {
        let AttributeValue::S(v) = value else {
            return Err(StoreError::Corrupt(format!("last evaluated key attribute {name} is not a string")));
        };
        plain.insert(name.clone(), serde_json::Value::String(v.clone()));
    }
    let json = serde_json::to_vec(&plain).map_err(|e| StoreError::Backend(Box::new(e)))?;
    Ok(B64.encode(json))
}

/// Decodes a page token, accepting it only for the partition (`attribute`, `value`) being queried
/// and, when given, sort keys with `sk_prefix`: a token cannot reach another tenant's items. A
/// malformed token is `InvalidPageToken`.
fn decode_token(token: &str, partition: (&str, &str), sk_prefix: Option<&str>) -> Result<Item, StoreError> {
    let bad = || StoreError::InvalidPageToken;
    let bytes = B64.decode(token).map_err(|_| bad())?;
    let plain: HashMap<String, String> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if plain.get(partition.0).map(String::as_str) != Some(partition.1) {
        return Err(bad());
    }
    match (plain.get("sk"), sk_prefix) {
        (None, _) => return Err(bad()),
        (Some(sk), Some(prefix)) if !sk.starts_with(prefix) => return Err(bad()),
        _ => {}
    }
    Ok(plain.into_iter().map(|(k, v)| (k, AttributeValue::S(v))).collect())
}

// ---- connections ----

#[async_trait]
impl ConnectionStore for DynamoStore {
    /// With an `account_id`, the connection and its account registry entry are written in one
    /// transaction, so a webhook finds every connection that exists.
    async fn create(&self, connection: &Connection) -> Result<(), StoreError> {
        self.cipher.ready().await.map_err(crypto_error)?;
        let item = item::connection_to_item(connection, &self.cipher, self.due_shards)?;
        let Some(account) = connection.account_id.as_deref() else {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await
                .map_err(sdk_error)?;
            return Ok(());
        };
        let put_connection = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        let put_account = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item::account_to_item(connection, account)))
            .build()
            .map_err(build_error)?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_connection).build())
            .transact_items(TransactWriteItem::builder().put(put_account).build())
            .send()
            .await
            .map_err(transact_error)?;
        Ok(())
    }

    async fn get(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
    ) -> Result<Option<Connection>, StoreError> {
        let key = item::key(item::tenant_pk(tenant), item::connection_sk(connection));
        match self.get_item(&self.table, key).await? {
            Some(i) => Ok(self.connections_from(&[i]).await?.pop()),
            None => Ok(None),
        }
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<Connection>, StoreError> {
        let q = Query::new(&self.table, "pk = :pk AND begins_with(sk, :prefix)")
            .value(":pk", item::s(item::tenant_pk(tenant)))
            .value(":prefix", item::s("CONN#"));
        let items = self.query_all(&q, None).await?;
        self.connections_from(&items).await
    }

    async fn due(
        &self,
        shard: u16,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueConnection>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let q = Query::new(&self.table, "due_shard = :shard AND next_sync_at <= :now")
            .index(DUE_INDEX)
            .value(":shard", item::s(item::due_shard_key(shard)))
            .value(":now", item::epoch(now));
        self.query_all(&q, Some(limit)).await?.iter().map(item::due_from_item).collect()
    }

    async fn claim_slot(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        slot: DateTime<Utc>,
        next: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item::key(item::tenant_pk(tenant), item::connection_sk(connection))))
            .update_expression("SET next_sync_at = :next")
            .condition_expression("next_sync_at = :slot")
            .expression_attribute_values(":next", item::epoch(next))
            .expression_attribute_values(":slot", item::epoch(slot))
            .send()
            .await;
        match result.map_err(sdk_error) {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn save_state(&self, connection: &Connection) -> Result<u64, StoreError> {
        self.cipher.ready().await.map_err(crypto_error)?;
        let u = StateUpdate::new(item::connection_state(connection, &self.cipher)?, connection.version);
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item::key(
                item::tenant_pk(&connection.tenant_id),
                item::connection_sk(&connection.connection_id),
            )))
            .update_expression(u.expression)
            .condition_expression(u.condition)
            .set_expression_attribute_names(Some(u.names))
            .set_expression_attribute_values(Some(u.values))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(connection.version + 1)
    }

    /// An item written before settings had their own version has none: that counts as 0.
    async fn save_settings(&self, connection: &Connection) -> Result<u64, StoreError> {
        let v = connection.settings_version;
        let mut u = StateUpdate::new(item::connection_settings(connection, self.due_shards), v);
        u.names.insert("#version".to_owned(), "settings_version".to_owned());
        u.condition = if v == 0 {
            "attribute_exists(pk) AND (#version = :v0 OR attribute_not_exists(#version))".to_owned()
        } else {
            "attribute_exists(pk) AND #version = :v0".to_owned()
        };
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(item::key(
                item::tenant_pk(&connection.tenant_id),
                item::connection_sk(&connection.connection_id),
            )))
            .update_expression(u.expression)
            .condition_expression(u.condition)
            .set_expression_attribute_names(Some(u.names))
            .set_expression_attribute_values(Some(u.values))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(v + 1)
    }

    async fn put_channel(
        &self,
        channel: &PushChannel,
        tenant: &TenantId,
        connection: &ConnectionId,
        provider: Provider,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item::channel_to_item(channel, tenant, connection, provider)))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn find_channel(
        &self,
        channel_id: &str,
    ) -> Result<Option<(TenantId, ConnectionId, Provider)>, StoreError> {
        self.get_item(&self.table, item::channel_key(channel_id))
            .await?
            .map(|i| item::channel_from_item(&i))
            .transpose()
    }

    async fn find_by_account(
        &self,
        provider: Provider,
        account: &str,
    ) -> Result<Vec<(TenantId, ConnectionId)>, StoreError> {
        let q =
            Query::new(&self.table, "pk = :pk").value(":pk", item::s(item::account_pk(provider, account)));
        self.query_all(&q, Some(100)).await?.iter().map(item::account_from_item).collect()
    }

    async fn disconnect(&self, connection: &Connection, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.disconnect_connection(connection, at).await
    }

    async fn was_disconnected(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
    ) -> Result<bool, StoreError> {
        self.tombstone_exists(tenant, connection).await
    }
}

// ---- webhook deliveries ----

#[async_trait]
impl DeliveryLedger for DynamoStore {
    async fn first_delivery(
        &self,
        key: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item::delivery_to_item(key, expires_at)))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", item::epoch(now))
            .send()
            .await;
        match put.map_err(sdk_error) {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn forget_delivery(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(item::delivery_key(key)))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }
}

// ---- runs ----

#[async_trait]
impl RunStore for DynamoStore {
    async fn job_done(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        job: &JobId,
    ) -> Result<bool, StoreError> {
        let key = item::key(item::connection_pk(tenant, connection), item::job_sk(job));
        Ok(self.get_item(&self.table, key).await?.is_some())
    }

    async fn finish(&self, connection: &Connection, run: &SyncRun) -> Result<u64, StoreError> {
        self.cipher.ready().await.map_err(crypto_error)?;
        let put_run = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item::run_to_item(run)))
            .build()
            .map_err(build_error)?;
        let put_job = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item::job_to_item(run)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_error)?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(self.state_update(connection)?).build())
            .transact_items(TransactWriteItem::builder().put(put_run).build())
            .transact_items(TransactWriteItem::builder().put(put_job).build())
            .send()
            .await
            .map_err(transact_error)?;
        Ok(connection.version + 1)
    }

    async fn list_runs(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        limit: usize,
    ) -> Result<Vec<SyncRun>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let q = Query::new(&self.table, "pk = :pk AND begins_with(sk, :prefix)")
            .value(":pk", item::s(item::connection_pk(tenant, connection)))
            .value(":prefix", item::s("RUN#"))
            .backward();
        self.query_all(&q, Some(limit)).await?.iter().map(item::run_from_item).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_update_sets_present_and_removes_absent_attributes_under_a_version_condition() {
        let u = StateUpdate::new(vec![("status", Some(item::s("synced"))), ("last_error", None)], 4);
        assert_eq!(u.expression, "SET #a0 = :a0, #version = :v1 REMOVE #a1");
        assert_eq!(u.condition, "#version = :v0");
        assert_eq!(u.names["#a1"], "last_error");
        assert_eq!(u.values[":v0"], item::n(4));
        assert_eq!(u.values[":v1"], item::n(5));
        assert!(!u.values.contains_key(":a1"));
    }

    #[test]
    fn page_tokens_round_trip_and_are_bound_to_their_partition() {
        let key = item::key("T#a#C#c".into(), "REC#contacts#r1".into());
        let token = encode_token(&key).unwrap();
        assert_eq!(decode_token(&token, ("pk", "T#a#C#c"), Some("REC#contacts#")).unwrap(), key);
        for bad in [
            decode_token(&token, ("pk", "T#b#C#c"), None),
            decode_token(&token, ("pk", "T#a#C#c"), Some("REC#events#")),
            decode_token("%%%", ("pk", "T#a#C#c"), None),
            decode_token(&B64.encode("[1,2]"), ("pk", "T#a#C#c"), None),
            decode_token(&B64.encode(r#"{"pk":"T#a#C#c"}"#), ("pk", "T#a#C#c"), None),
        ] {
            assert!(matches!(bad, Err(StoreError::InvalidPageToken)));
        }
    }

    #[test]
    fn cancelled_transactions_map_lost_conditions_to_conflict_and_contention_to_unavailable() {
        assert!(matches!(
            cancellation_error(&["None", "ConditionalCheckFailed"]),
            Some(StoreError::Conflict)
        ));
        assert!(matches!(
            cancellation_error(&["TransactionConflict", "None"]),
            Some(StoreError::Unavailable(_))
        ));
        assert!(cancellation_error(&["None", "ValidationError"]).is_none());
    }

    #[test]
    fn store_debug_shows_tables_but_not_the_cipher() {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build();
        let key = TokenCipher::generate_key();
        let cipher = TokenCipher::from_base64_key(&secrecy::SecretString::from(key.clone())).unwrap();
        let store = DynamoStore::new(Client::from_conf(conf), "main", "audit", cipher, 0);
        let shown = format!("{store:?}");
        assert!(shown.contains("main") && !shown.contains(&key));
        assert_eq!(store.due_shards, 1);
    }
}
