//! Item layout of the main and audit tables: keys, and conversions between DynamoDB items and domain
//! types. Every conversion back to a domain type checks each attribute and reports `Corrupt` naming
//! the item kind and attribute (never its value, which may be a token).
//!
//! Formats: timestamps are RFC 3339 strings in UTC with full precision, except `next_sync_at`
//! (number, epoch seconds, the due index's sort key) and `expires_at` (number, epoch seconds, the TTL
//! attribute). Record `fields` and `base`, run `counts` and `objects`, connection `object_errors`
//! (absent when none), and audit `detail`/`before`/`after` are JSON
//! strings: exact for every JSON value and opaque to DynamoDB, which never queries inside them.
//! Cursors and record counts are maps keyed by object type.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use secrecy::SecretString;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::adapters::crypto::TokenCipher;
use crate::domain::record::Fields;
use crate::domain::{
    AuditEntry, CanonicalRecord, Connection, ConnectionId, ConnectionStatus, Credentials, ExternalId, JobId,
    ObjectType, Provider, PushChannel, RecordId, RunId, SyncCursor, SyncRun, TenantId,
};
use crate::ports::{DueConnection, StoreError};

pub(super) type Item = HashMap<String, AttributeValue>;

/// How long a run record is kept after it finished.
pub(super) const RUN_TTL_DAYS: i64 = 90;
/// How long the job ledger remembers a finished job (longer than any SQS redelivery).
pub(super) const JOB_TTL_DAYS: i64 = 14;

// ---- keys ----

pub(super) fn tenant_pk(tenant: &TenantId) -> String {
    format!("T#{tenant}")
}

pub(super) fn connection_pk(tenant: &TenantId, connection: &ConnectionId) -> String {
    format!("T#{tenant}#C#{connection}")
}

pub(super) fn connection_sk(connection: &ConnectionId) -> String {
    format!("CONN#{connection}")
}

pub(super) fn record_sk(object: ObjectType, record: &RecordId) -> String {
    format!("REC#{object}#{record}")
}

/// UIDs longer than this are keyed by their SHA-256 (an index key attribute holds at most 2,048
/// bytes; iCalendar UIDs are rarely a tenth of that).
const MEETING_KEY_UID_BYTES: usize = 1024;

/// The partition key of the sparse `meeting_uid` index for a calendar event's iCalendar UID:
/// `T#{tenant}#ICAL#{uid}` (`T#{tenant}#ICALH#{sha256 hex}` for a UID over 1,024 bytes).
pub(super) fn meeting_key(tenant: &TenantId, uid: &str) -> String {
    if uid.len() <= MEETING_KEY_UID_BYTES {
        return format!("T#{tenant}#ICAL#{uid}");
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(uid.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("T#{tenant}#ICALH#{hex}")
}

/// How long a channel registry entry outlives its channel (notifications in flight at expiry).
pub(super) const CHANNEL_TTL_GRACE_DAYS: i64 = 1;

pub(super) fn channel_key(channel_id: &str) -> Item {
    key(format!("CHAN#{channel_id}"), "CHAN".to_owned())
}

/// The account registry entry of a connection: `ACCT#{provider}#{account}` / `T#{tenant}#C#{id}`
/// (a query on the partition finds every connection of one provider account).
pub(super) fn account_pk(provider: Provider, account: &str) -> String {
    format!("ACCT#{provider}#{account}")
}

pub(super) fn account_to_item(c: &Connection, account: &str) -> Item {
    let mut item = key(account_pk(c.provider, account), connection_pk(&c.tenant_id, &c.connection_id));
    item.insert("tenant_id".into(), s(c.tenant_id.as_str()));
    item.insert("connection_id".into(), s(c.connection_id.as_str()));
    item
}

pub(super) fn account_from_item(item: &Item) -> Result<(TenantId, ConnectionId), StoreError> {
    let r = Reader::new(item, "account registry entry");
    Ok((r.parse("tenant_id", TenantId::parse)?, r.parse("connection_id", ConnectionId::parse)?))
}

/// A webhook delivery marker (`DeliveryLedger`): `DLV#{key}` / `DLV`, with the TTL attribute.
pub(super) fn delivery_key(delivery: &str) -> Item {
    key(format!("DLV#{delivery}"), "DLV".to_owned())
}

pub(super) fn delivery_to_item(delivery: &str, expires_at: DateTime<Utc>) -> Item {
    let mut item = delivery_key(delivery);
    item.insert("expires_at".into(), epoch(expires_at));
    item
}

pub(super) fn run_sk(run: &RunId) -> String {
    format!("RUN#{run}")
}

pub(super) fn job_sk(job: &JobId) -> String {
    format!("JOB#{job}")
}

pub(super) fn audit_sk(at: DateTime<Utc>, entry_id: &str) -> String {
    format!("{}#{entry_id}", audit_time(at))
}

/// The time prefix of an audit sort key: RFC 3339, milliseconds, `Z` (sorts as text).
pub(super) fn audit_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(super) fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

pub use crate::domain::connection::due_shard;

pub(super) fn due_shard_key(shard: u16) -> String {
    format!("DUE#{shard}")
}

// ---- attribute values ----

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn time(t: DateTime<Utc>) -> AttributeValue {
    s(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

pub(super) fn epoch(t: DateTime<Utc>) -> AttributeValue {
    n(t.timestamp())
}

pub(super) fn json(v: &impl Serialize) -> AttributeValue {
    s(serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned()))
}

/// The wire name of a unit enum that serializes as a string (`snake_case`).
fn enum_name(v: &impl Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

/// Reads typed attributes out of one item; every failure is `Corrupt("<kind>: <attribute> ...")`.
pub(super) struct Reader<'a> {
    item: &'a Item,
    kind: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn new(item: &'a Item, kind: &'static str) -> Self {
        Self { item, kind }
    }

    pub(super) fn corrupt(&self, name: &str, why: &str) -> StoreError {
        StoreError::Corrupt(format!("{} item: attribute {name} {why}", self.kind))
    }

    fn get(&self, name: &str) -> Option<&'a AttributeValue> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => None,
            Some(v) => Some(v),
        }
    }

    pub(super) fn opt_s(&self, name: &str) -> Result<Option<&'a str>, StoreError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v)),
            Some(_) => Err(self.corrupt(name, "is not a string")),
        }
    }

    pub(super) fn s(&self, name: &str) -> Result<&'a str, StoreError> {
        self.opt_s(name)?.ok_or_else(|| self.corrupt(name, "is missing"))
    }

    fn opt_n<T: FromStr>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttributeValue::N(v)) => {
                v.parse().map(Some).map_err(|_| self.corrupt(name, "is out of range"))
            }
            Some(_) => Err(self.corrupt(name, "is not a number")),
        }
    }

    pub(super) fn n<T: FromStr>(&self, name: &str) -> Result<T, StoreError> {
        self.opt_n(name)?.ok_or_else(|| self.corrupt(name, "is missing"))
    }

    fn bool(&self, name: &str) -> Result<bool, StoreError> {
        match self.get(name) {
            Some(AttributeValue::Bool(v)) => Ok(*v),
            None => Err(self.corrupt(name, "is missing")),
            Some(_) => Err(self.corrupt(name, "is not a boolean")),
        }
    }

    fn opt_map(&self, name: &str) -> Result<Option<&'a HashMap<String, AttributeValue>>, StoreError> {
        match self.get(name) {
            None => Ok(None),
            Some(AttributeValue::M(m)) => Ok(Some(m)),
            Some(_) => Err(self.corrupt(name, "is not a map")),
        }
    }

    pub(super) fn parse<T, E>(
        &self,
        name: &str,
        f: impl FnOnce(&'a str) -> Result<T, E>,
    ) -> Result<T, StoreError> {
        f(self.s(name)?).map_err(|_| self.corrupt(name, "is invalid"))
    }

    fn opt_parse<T, E>(
        &self,
        name: &str,
        f: impl FnOnce(&'a str) -> Result<T, E>,
    ) -> Result<Option<T>, StoreError> {
        self.opt_s(name)?.map(|v| f(v).map_err(|_| self.corrupt(name, "is invalid"))).transpose()
    }

    fn time(&self, name: &str) -> Result<DateTime<Utc>, StoreError> {
        self.parse(name, parse_time)
    }

    fn opt_time(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_parse(name, parse_time)
    }

    fn opt_epoch(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.opt_n::<i64>(name)?
            .map(|secs| {
                DateTime::from_timestamp(secs, 0).ok_or_else(|| self.corrupt(name, "is out of range"))
            })
            .transpose()
    }

    pub(super) fn epoch(&self, name: &str) -> Result<DateTime<Utc>, StoreError> {
        self.opt_epoch(name)?.ok_or_else(|| self.corrupt(name, "is missing"))
    }

    pub(super) fn json<T: DeserializeOwned>(&self, name: &str) -> Result<T, StoreError> {
        self.parse(name, serde_json::from_str)
    }

    fn opt_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        self.opt_parse(name, serde_json::from_str)
    }

    fn enum_value<T: DeserializeOwned>(&self, name: &str) -> Result<T, StoreError> {
        self.parse(name, |v| serde_json::from_value(serde_json::Value::String(v.to_owned())))
    }

    fn cipher_text(&self, name: &str, cipher: &TokenCipher) -> Result<Option<SecretString>, StoreError> {
        self.opt_s(name)?
            .map(|v| cipher.decrypt(v).map_err(|e| self.corrupt(name, &format!("does not decrypt ({e})"))))
            .transpose()
    }
}

fn parse_time(v: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(v).map(|t| t.with_timezone(&Utc))
}

/// Splits `T#{tenant}#C#{connection}` or `T#{tenant}`-prefixed keys into their ids.
fn ids_from_keys(pk: &str, sk: &str) -> Option<(TenantId, ConnectionId)> {
    let tenant = TenantId::parse(pk.strip_prefix("T#")?).ok()?;
    let connection = ConnectionId::parse(sk.strip_prefix("CONN#")?).ok()?;
    Some((tenant, connection))
}

// ---- connections ----

/// The user-owned attributes of a connection (what `save_settings` writes besides
/// `settings_version`): `None` removes one. Without `next_sync_at` the connection also leaves the
/// sparse due index (`due_shard` goes).
pub(super) fn connection_settings(
    c: &Connection,
    due_shards: u16,
) -> Vec<(&'static str, Option<AttributeValue>)> {
    let shard = due_shard(&c.tenant_id, &c.connection_id, due_shards);
    vec![
        ("interval_minutes", Some(n(c.interval_minutes))),
        ("settings", Some(json(&c.settings))),
        ("paused_at", c.paused_at.map(time)),
        ("next_sync_at", c.next_sync_at.map(epoch)),
        ("due_shard", c.next_sync_at.map(|_| s(due_shard_key(shard)))),
    ]
}

/// The worker-owned attributes of a connection (what `save_state` writes): `None` removes one.
pub(super) fn connection_state(
    c: &Connection,
    cipher: &TokenCipher,
) -> Result<Vec<(&'static str, Option<AttributeValue>)>, StoreError> {
    let seal = |v: &SecretString| cipher.encrypt(v).map(s).map_err(super::crypto_error);
    let cursors: HashMap<String, AttributeValue> =
        c.cursors.iter().map(|(o, cur)| (o.as_str().to_owned(), s(cur.as_str()))).collect();
    let counts: HashMap<String, AttributeValue> =
        c.record_counts.iter().map(|(o, k)| (o.as_str().to_owned(), n(k))).collect();
    Ok(vec![
        ("status", Some(s(c.status.as_str()))),
        ("account_id", c.account_id.as_deref().map(s)),
        ("cursors", Some(AttributeValue::M(cursors))),
        ("access_token_enc", Some(seal(&c.credentials.access_token)?)),
        ("refresh_token_enc", c.credentials.refresh_token.as_ref().map(seal).transpose()?),
        ("token_expires_at", c.credentials.expires_at.map(time)),
        ("last_sync_at", c.last_sync_at.map(time)),
        ("last_error", c.last_error.as_deref().map(s)),
        ("last_run_id", c.last_run_id.as_ref().map(|r| s(r.as_str()))),
        ("record_counts", Some(AttributeValue::M(counts))),
        ("inflight_since", c.inflight_since.map(time)),
        ("channel_id", c.push_channel.as_ref().map(|p| s(&p.id))),
        ("channel_resource_id", c.push_channel.as_ref().and_then(|p| p.resource_id.as_deref().map(s))),
        ("channel_secret_enc", c.push_channel.as_ref().map(|p| seal(&p.secret)).transpose()?),
        ("channel_expires_at", c.push_channel.as_ref().map(|p| time(p.expires_at))),
        ("object_errors", (!c.object_errors.is_empty()).then(|| json(&c.object_errors))),
        ("provider_setup", (!c.provider_setup.is_empty()).then(|| json(&c.provider_setup))),
    ])
}

/// The push channel attributes of a connection item: all present or none.
fn push_channel_from(r: &Reader<'_>, cipher: &TokenCipher) -> Result<Option<PushChannel>, StoreError> {
    let Some(id) = r.opt_s("channel_id")? else {
        return Ok(None);
    };
    Ok(Some(PushChannel {
        id: id.to_owned(),
        resource_id: r.opt_s("channel_resource_id")?.map(str::to_owned),
        secret: r
            .cipher_text("channel_secret_enc", cipher)?
            .ok_or_else(|| r.corrupt("channel_secret_enc", "is missing"))?,
        expires_at: r
            .opt_time("channel_expires_at")?
            .ok_or_else(|| r.corrupt("channel_expires_at", "is missing"))?,
    }))
}

/// The channel registry entry: channel id -> connection (no secret), expiring with its channel.
pub(super) fn channel_to_item(
    channel: &PushChannel,
    tenant: &TenantId,
    connection: &ConnectionId,
    provider: Provider,
) -> Item {
    let mut item = channel_key(&channel.id);
    item.insert("tenant_id".into(), s(tenant.as_str()));
    item.insert("connection_id".into(), s(connection.as_str()));
    item.insert("provider".into(), s(provider.as_str()));
    item.insert("expires_at".into(), epoch(channel.expires_at + Duration::days(CHANNEL_TTL_GRACE_DAYS)));
    item
}

pub(super) fn channel_from_item(item: &Item) -> Result<(TenantId, ConnectionId, Provider), StoreError> {
    let r = Reader::new(item, "channel");
    Ok((
        r.parse("tenant_id", TenantId::parse)?,
        r.parse("connection_id", ConnectionId::parse)?,
        r.parse("provider", Provider::parse)?,
    ))
}

/// The whole connection item. `next_sync_at` is stored at second precision; with it comes
/// `due_shard`, and without it neither (the due index is sparse).
pub(super) fn connection_to_item(
    c: &Connection,
    cipher: &TokenCipher,
    due_shards: u16,
) -> Result<Item, StoreError> {
    let mut item = key(tenant_pk(&c.tenant_id), connection_sk(&c.connection_id));
    let settings = [
        ("tenant_id", s(c.tenant_id.as_str())),
        ("connection_id", s(c.connection_id.as_str())),
        ("provider", s(c.provider.as_str())),
        ("base_url", s(&c.base_url)),
        ("interval_minutes", n(c.interval_minutes)),
        ("settings", json(&c.settings)),
        ("created_at", time(c.created_at)),
        ("version", n(c.version)),
        ("settings_version", n(c.settings_version)),
    ];
    item.extend(settings.into_iter().map(|(k, v)| (k.to_owned(), v)));
    for (name, value) in connection_settings(c, due_shards) {
        if let Some(v) = value {
            item.insert(name.to_owned(), v);
        }
    }
    for (name, value) in connection_state(c, cipher)? {
        if let Some(v) = value {
            item.insert(name.to_owned(), v);
        }
    }
    Ok(item)
}

/// The encrypted values of an item (attributes named `*_enc`), for `TokenCipher::prepare`.
pub(super) fn encrypted_values(item: &Item) -> Vec<String> {
    item.iter()
        .filter(|(name, _)| name.ends_with("_enc"))
        .filter_map(|(_, v)| v.as_s().ok().cloned())
        .collect()
}

pub(super) fn connection_from_item(item: &Item, cipher: &TokenCipher) -> Result<Connection, StoreError> {
    let r = Reader::new(item, "connection");
    let tenant_id = r.parse("tenant_id", TenantId::parse)?;
    let connection_id = r.parse("connection_id", ConnectionId::parse)?;
    let mut cursors = BTreeMap::new();
    for (object, value) in r.opt_map("cursors")?.into_iter().flatten() {
        let object =
            ObjectType::parse(object).map_err(|_| r.corrupt("cursors", "has an unknown object type"))?;
        let AttributeValue::S(cursor) = value else {
            return Err(r.corrupt("cursors", "holds a value that is not a string"));
        };
        cursors.insert(object, SyncCursor::new(cursor.clone()));
    }
    let mut record_counts = BTreeMap::new();
    for (object, value) in r.opt_map("record_counts")?.into_iter().flatten() {
        let object = ObjectType::parse(object)
            .map_err(|_| r.corrupt("record_counts", "has an unknown object type"))?;
        let count = match value {
            AttributeValue::N(v) => v.parse::<u64>().ok(),
            _ => None,
        };
        record_counts.insert(object, count.ok_or_else(|| r.corrupt("record_counts", "holds a bad count"))?);
    }
    let access_token = r
        .cipher_text("access_token_enc", cipher)?
        .ok_or_else(|| r.corrupt("access_token_enc", "is missing"))?;
    Ok(Connection {
        tenant_id,
        connection_id,
        provider: r.parse("provider", Provider::parse)?,
        base_url: r.s("base_url")?.to_owned(),
        account_id: r.opt_s("account_id")?.map(str::to_owned),
        status: r.parse("status", |v| ConnectionStatus::parse(v).ok_or(()))?,
        interval_minutes: r.n("interval_minutes")?,
        next_sync_at: r.opt_epoch("next_sync_at")?,
        cursors,
        credentials: Credentials {
            access_token,
            refresh_token: r.cipher_text("refresh_token_enc", cipher)?,
            expires_at: r.opt_time("token_expires_at")?,
        },
        last_sync_at: r.opt_time("last_sync_at")?,
        last_error: r.opt_s("last_error")?.map(str::to_owned),
        last_run_id: r.opt_parse("last_run_id", RunId::parse)?,
        record_counts,
        inflight_since: r.opt_time("inflight_since")?,
        push_channel: push_channel_from(&r, cipher)?,
        object_errors: r.opt_json("object_errors")?.unwrap_or_default(),
        provider_setup: r.opt_json("provider_setup")?.unwrap_or_default(),
        settings: r.opt_json("settings")?.unwrap_or_default(),
        paused_at: r.opt_time("paused_at")?,
        created_at: r.time("created_at")?,
        version: r.n("version")?,
        settings_version: r.opt_n("settings_version")?.unwrap_or(0),
    })
}

/// A row of the due index (keys plus the projected `interval_minutes`).
pub(super) fn due_from_item(item: &Item) -> Result<DueConnection, StoreError> {
    let r = Reader::new(item, "due index");
    let (tenant_id, connection_id) = ids_from_keys(r.s("pk")?, r.s("sk")?)
        .ok_or_else(|| r.corrupt("pk/sk", "do not name a connection"))?;
    Ok(DueConnection {
        tenant_id,
        connection_id,
        next_sync_at: r.epoch("next_sync_at")?,
        interval_minutes: r.n("interval_minutes")?,
    })
}

// ---- records ----

/// A record item; `provider` is the connection's (a lookup by external id at another provider
/// does not find it).
pub(super) fn record_to_item(rec: &CanonicalRecord, provider: Provider) -> Item {
    let mut item =
        key(connection_pk(&rec.tenant_id, &rec.connection_id), record_sk(rec.object, &rec.record_id));
    let attrs = [
        ("provider", s(provider.as_str())),
        ("tenant_id", s(rec.tenant_id.as_str())),
        ("connection_id", s(rec.connection_id.as_str())),
        ("record_id", s(rec.record_id.as_str())),
        ("object", s(rec.object.as_str())),
        ("external_id", s(rec.external_id.as_str())),
        ("fields", json(&rec.fields)),
        ("base", json(&rec.base)),
        ("deleted", AttributeValue::Bool(rec.deleted)),
        ("created_at", time(rec.created_at)),
        ("updated_at", time(rec.updated_at)),
        ("version", n(rec.version)),
    ];
    item.extend(attrs.into_iter().map(|(k, v)| (k.to_owned(), v)));
    if let Some(at) = rec.remote_modified_at {
        item.insert("remote_modified_at".into(), time(at));
    }
    if let Some(etag) = &rec.etag {
        item.insert("etag".into(), s(etag));
    }
    if let Some(at) = rec.local_modified_at {
        item.insert("local_modified_at".into(), time(at));
    }
    if !rec.sources.is_empty() {
        item.insert("sources".into(), json(&rec.sources));
    }
    if !rec.pending_push.is_empty() {
        item.insert("pending_push".into(), json(&rec.pending_push));
    }
    if let Some(uid) = meeting_uid(rec) {
        item.insert("meeting_key".into(), s(meeting_key(&rec.tenant_id, uid)));
    }
    item
}

/// The iCalendar UID a record is found by through the `meeting_uid` index: a live `events`
/// record's `ical_uid`, when it is a non-empty string. Deleted events stay out of the index.
fn meeting_uid(rec: &CanonicalRecord) -> Option<&str> {
    if rec.object != ObjectType::Events || rec.deleted {
        return None;
    }
    rec.fields.get("ical_uid")?.as_str().filter(|uid| !uid.is_empty())
}

pub(super) fn record_from_item(item: &Item) -> Result<CanonicalRecord, StoreError> {
    let r = Reader::new(item, "record");
    Ok(CanonicalRecord {
        tenant_id: r.parse("tenant_id", TenantId::parse)?,
        connection_id: r.parse("connection_id", ConnectionId::parse)?,
        record_id: r.parse("record_id", RecordId::parse)?,
        object: r.parse("object", ObjectType::parse)?,
        external_id: r.parse("external_id", ExternalId::parse)?,
        fields: r.json::<Fields>("fields")?,
        base: r.json::<Fields>("base")?,
        remote_modified_at: r.opt_time("remote_modified_at")?,
        etag: r.opt_s("etag")?.map(str::to_owned),
        local_modified_at: r.opt_time("local_modified_at")?,
        sources: r.opt_json("sources")?.unwrap_or_default(),
        pending_push: r.opt_json("pending_push")?.unwrap_or_default(),
        deleted: r.bool("deleted")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        version: r.n("version")?,
    })
}

/// The provider a record item was written for; `None` for items written before it was kept.
pub(super) fn record_provider(item: &Item) -> Result<Option<Provider>, StoreError> {
    let r = Reader::new(item, "record");
    r.opt_s("provider")?
        .map(|p| Provider::parse(p).map_err(|_| r.corrupt("provider", "is not a provider")))
        .transpose()
}

// ---- runs and the job ledger ----

pub(super) fn run_to_item(run: &SyncRun) -> Item {
    let mut item = key(connection_pk(&run.tenant_id, &run.connection_id), run_sk(&run.run_id));
    let attrs = [
        ("tenant_id", s(run.tenant_id.as_str())),
        ("connection_id", s(run.connection_id.as_str())),
        ("run_id", s(run.run_id.as_str())),
        ("job_id", s(run.job_id.as_str())),
        ("reason", s(enum_name(&run.reason))),
        ("status", s(enum_name(&run.status))),
        ("started_at", time(run.started_at)),
        ("finished_at", time(run.finished_at)),
        ("duration_ms", n(run.duration_ms)),
        ("counts", json(&run.counts)),
        ("objects", json(&run.objects)),
        ("expires_at", epoch(run.finished_at + Duration::days(RUN_TTL_DAYS))),
    ];
    item.extend(attrs.into_iter().map(|(k, v)| (k.to_owned(), v)));
    if let Some(error) = &run.error {
        item.insert("error".into(), s(error));
    }
    item
}

pub(super) fn run_from_item(item: &Item) -> Result<SyncRun, StoreError> {
    let r = Reader::new(item, "run");
    Ok(SyncRun {
        tenant_id: r.parse("tenant_id", TenantId::parse)?,
        connection_id: r.parse("connection_id", ConnectionId::parse)?,
        run_id: r.parse("run_id", RunId::parse)?,
        job_id: r.parse("job_id", JobId::parse)?,
        reason: r.enum_value("reason")?,
        status: r.enum_value("status")?,
        started_at: r.time("started_at")?,
        finished_at: r.time("finished_at")?,
        duration_ms: r.n("duration_ms")?,
        counts: r.json("counts")?,
        error: r.opt_s("error")?.map(str::to_owned),
        objects: r.opt_json("objects")?.unwrap_or_default(),
    })
}

pub(super) fn job_to_item(run: &SyncRun) -> Item {
    let mut item = key(connection_pk(&run.tenant_id, &run.connection_id), job_sk(&run.job_id));
    item.insert("run_id".into(), s(run.run_id.as_str()));
    item.insert("finished_at".into(), time(run.finished_at));
    item.insert("expires_at".into(), epoch(run.finished_at + Duration::days(JOB_TTL_DAYS)));
    item
}

// ---- audit entries ----

/// The partition of the audit table's record index: `T#{tenant}#R#{record}`.
pub(super) fn audit_record_pk(tenant: &TenantId, record: &RecordId) -> String {
    format!("T#{tenant}#R#{record}")
}

pub(super) fn audit_to_item(e: &AuditEntry) -> Item {
    let mut item = key(tenant_pk(&e.tenant_id), audit_sk(e.at, &e.entry_id));
    let attrs = [
        ("entry_id", s(&e.entry_id)),
        ("tenant_id", s(e.tenant_id.as_str())),
        ("operation", s(e.operation.as_str())),
        ("outcome", s(e.outcome.as_str())),
        ("actor", s(&e.actor)),
        ("at", time(e.at)),
        ("detail", json(&e.detail)),
    ];
    item.extend(attrs.into_iter().map(|(k, v)| (k.to_owned(), v)));
    if let Some(c) = &e.connection_id {
        item.insert("connection_id".into(), s(c.as_str()));
        item.insert("conn_pk".into(), s(connection_pk(&e.tenant_id, c)));
    }
    if let Some(r) = &e.record_id {
        item.insert("record_id".into(), s(r.as_str()));
        item.insert("rec_pk".into(), s(audit_record_pk(&e.tenant_id, r)));
    }
    if let Some(o) = e.object {
        item.insert("object".into(), s(o.as_str()));
    }
    if let Some(b) = &e.before {
        item.insert("before".into(), json(b));
    }
    if let Some(a) = &e.after {
        item.insert("after".into(), json(a));
    }
    item
}

pub(super) fn audit_from_item(item: &Item) -> Result<AuditEntry, StoreError> {
    let r = Reader::new(item, "audit");
    Ok(AuditEntry {
        entry_id: r.s("entry_id")?.to_owned(),
        tenant_id: r.parse("tenant_id", TenantId::parse)?,
        connection_id: r.opt_parse("connection_id", ConnectionId::parse)?,
        record_id: r.opt_parse("record_id", RecordId::parse)?,
        object: r.opt_parse("object", ObjectType::parse)?,
        operation: r.enum_value("operation")?,
        outcome: r.enum_value("outcome")?,
        actor: r.s("actor")?.to_owned(),
        at: r.time("at")?,
        detail: r.json("detail")?,
        before: r.opt_json("before")?,
        after: r.opt_json("after")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AuditOutcome, JobReason, NewConnection, Operation, RunCounts, RunStatus};
    use chrono::TimeZone;
    use secrecy::ExposeSecret;
    use serde_json::json;

    fn cipher() -> TokenCipher {
        TokenCipher::from_base64_key(&SecretString::from(TokenCipher::generate_key())).unwrap()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    fn connection() -> Connection {
        let mut c = Connection::new(
            TenantId::parse("acme").unwrap(),
            NewConnection {
                provider: Provider::Hubspot,
                base_url: "http://127.0.0.1:9".into(),
                credentials: Credentials {
                    access_token: SecretString::from("access-plaintext"),
                    refresh_token: Some(SecretString::from("refresh-plaintext")),
                    expires_at: Some(at(3600) + Duration::milliseconds(250)),
                },
                interval_minutes: 15,
                settings: Default::default(),
            },
            at(0),
        );
        c.cursors.insert(ObjectType::Contacts, SyncCursor::new(r#"{"after":"17"}"#));
        c.record_counts.insert(ObjectType::Contacts, 42);
        c.last_sync_at = Some(at(10) + Duration::microseconds(7));
        c.last_error = Some("rate limited".into());
        c.last_run_id = Some(RunId::parse("01hrun").unwrap());
        c.version = 3;
        c.account_id = Some("portal-62515".into());
        c
    }

    fn assert_same_connection(a: &Connection, b: &Connection) {
        assert_eq!(a.tenant_id, b.tenant_id);
        assert_eq!(a.connection_id, b.connection_id);
        assert_eq!(a.provider, b.provider);
        assert_eq!(a.base_url, b.base_url);
        assert_eq!(a.account_id, b.account_id);
        assert_eq!(a.status, b.status);
        assert_eq!(a.interval_minutes, b.interval_minutes);
        assert_eq!(a.next_sync_at, b.next_sync_at);
        assert_eq!(a.cursors, b.cursors);
        assert_eq!(a.credentials.access_token.expose_secret(), b.credentials.access_token.expose_secret());
        assert_eq!(
            a.credentials.refresh_token.as_ref().map(|t| t.expose_secret().to_owned()),
            b.credentials.refresh_token.as_ref().map(|t| t.expose_secret().to_owned())
        );
        assert_eq!(a.credentials.expires_at, b.credentials.expires_at);
        assert_eq!(a.last_sync_at, b.last_sync_at);
        assert_eq!(a.last_error, b.last_error);
        assert_eq!(a.last_run_id, b.last_run_id);
        assert_eq!(a.record_counts, b.record_counts);
        assert_eq!(a.object_errors, b.object_errors);
        assert_eq!(a.created_at, b.created_at);
        assert_eq!(a.version, b.version);
    }

    #[test]
    fn connection_round_trips_through_its_item_with_tokens_encrypted() {
        let k = cipher();
        let c = connection();
        let item = connection_to_item(&c, &k, 4).unwrap();
        assert_same_connection(&connection_from_item(&item, &k).unwrap(), &c);
        let text = format!("{item:?}");
        assert!(!text.contains("access-plaintext") && !text.contains("refresh-plaintext"));
        assert_eq!(item["pk"], s("T#acme"));
        assert_eq!(item["sk"], s(format!("CONN#{}", c.connection_id)));
        assert_eq!(item["next_sync_at"], n(at(0).timestamp()));
        let shard = due_shard(&c.tenant_id, &c.connection_id, 4);
        assert_eq!(item["due_shard"], s(format!("DUE#{shard}")));
        assert!(!item.contains_key("object_errors"), "absent while every object type syncs");
    }

    #[test]
    fn what_the_adapter_set_up_in_the_provider_round_trips_on_the_connection() {
        let k = cipher();
        let mut c = connection();
        c.provider_setup.insert("hubspot.contacts.create_proof".into(), "key_property".into());
        let item = connection_to_item(&c, &k, 4).unwrap();
        let back = connection_from_item(&item, &k).unwrap();
        assert_eq!(back.provider_setup, c.provider_setup);
        c.provider_setup.clear();
        let state = connection_state(&c, &k).unwrap();
        assert!(state.iter().any(|(name, v)| *name == "provider_setup" && v.is_none()), "None removes it");
    }

    #[test]
    fn object_errors_round_trip_and_an_empty_set_removes_the_attribute() {
        use crate::domain::{ObjectError, ObjectErrorClass};
        let k = cipher();
        let mut c = connection();
        let text = "HTTP 403 MISSING_SCOPES: missing crm.objects.notes.read";
        c.object_errors
            .insert(ObjectType::Notes, ObjectError::failed(None, ObjectErrorClass::Permanent, text, at(5)));
        let item = connection_to_item(&c, &k, 4).unwrap();
        let back = connection_from_item(&item, &k).unwrap();
        assert_same_connection(&back, &c);
        assert_eq!(back.object_errors[&ObjectType::Notes].code.as_deref(), Some("MISSING_SCOPES"));
        c.object_errors.clear();
        let state = connection_state(&c, &k).unwrap();
        assert!(state.iter().any(|(name, v)| *name == "object_errors" && v.is_none()), "None removes it");
        let mut bad = item;
        bad.insert("object_errors".into(), s(r#"{"widgets":{}}"#));
        assert!(
            matches!(connection_from_item(&bad, &k), Err(StoreError::Corrupt(m)) if m.contains("object_errors"))
        );
    }

    #[test]
    fn a_push_channel_round_trips_with_its_secret_encrypted_and_its_registry_entry_expires_after_it() {
        let k = cipher();
        let mut c = connection();
        let channel = PushChannel {
            id: "chan-1".into(),
            resource_id: Some("res-1".into()),
            secret: SecretString::from("channel-secret-plaintext"),
            expires_at: at(7 * 86_400) + Duration::milliseconds(5),
        };
        c.push_channel = Some(channel.clone());
        let item = connection_to_item(&c, &k, 4).unwrap();
        assert!(!format!("{item:?}").contains("channel-secret-plaintext"));
        let back = connection_from_item(&item, &k).unwrap().push_channel.expect("channel kept");
        assert_eq!((back.id.as_str(), back.resource_id.as_deref()), ("chan-1", Some("res-1")));
        assert_eq!(back.expires_at, channel.expires_at);
        assert_eq!(back.secret.expose_secret(), "channel-secret-plaintext");

        let mut no_secret = item.clone();
        no_secret.remove("channel_secret_enc");
        assert!(matches!(connection_from_item(&no_secret, &k), Err(StoreError::Corrupt(_))));

        let entry = channel_to_item(&channel, &c.tenant_id, &c.connection_id, c.provider);
        assert_eq!((entry["pk"].clone(), entry["sk"].clone()), (s("CHAN#chan-1"), s("CHAN")));
        assert_eq!(entry["expires_at"], n((at(8 * 86_400)).timestamp()));
        assert!(!format!("{entry:?}").contains("channel-secret-plaintext"));
        assert_eq!(
            channel_from_item(&entry).unwrap(),
            (c.tenant_id.clone(), c.connection_id.clone(), Provider::Hubspot)
        );
    }

    #[test]
    fn paused_connection_leaves_the_due_index_and_optional_fields_stay_absent() {
        let k = cipher();
        let mut c = connection();
        c.next_sync_at = None;
        c.credentials.refresh_token = None;
        c.credentials.expires_at = None;
        c.last_error = None;
        let item = connection_to_item(&c, &k, 4).unwrap();
        for absent in ["next_sync_at", "due_shard", "refresh_token_enc", "token_expires_at", "last_error"] {
            assert!(!item.contains_key(absent), "{absent} should be absent");
        }
        assert_same_connection(&connection_from_item(&item, &k).unwrap(), &c);
    }

    #[test]
    fn next_sync_at_is_kept_to_the_second() {
        let k = cipher();
        let mut c = connection();
        c.next_sync_at = Some(at(5) + Duration::milliseconds(900));
        let back = connection_from_item(&connection_to_item(&c, &k, 4).unwrap(), &k).unwrap();
        assert_eq!(back.next_sync_at, Some(at(5)));
    }

    #[test]
    fn corrupt_connection_items_are_reported_without_their_values() {
        let k = cipher();
        let good = connection_to_item(&connection(), &k, 4).unwrap();

        let mut bad = good.clone();
        bad.insert("status".into(), s("exploded"));
        assert!(
            matches!(connection_from_item(&bad, &k), Err(StoreError::Corrupt(m)) if m.contains("status"))
        );

        let mut bad = good.clone();
        bad.insert("version".into(), s("3"));
        assert!(
            matches!(connection_from_item(&bad, &k), Err(StoreError::Corrupt(m)) if m.contains("version"))
        );

        let mut bad = good.clone();
        bad.remove("access_token_enc");
        assert!(matches!(connection_from_item(&bad, &k), Err(StoreError::Corrupt(_))));

        let err = connection_from_item(&good, &cipher()).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("access_token_enc"));
        let AttributeValue::S(sealed) = &good["access_token_enc"] else { panic!("not a string") };
        assert!(!shown.contains(sealed.as_str()));

        let mut bad = good;
        bad.insert("cursors".into(), AttributeValue::M(HashMap::from([("widgets".into(), s("x"))])));
        assert!(
            matches!(connection_from_item(&bad, &k), Err(StoreError::Corrupt(m)) if m.contains("cursors"))
        );
    }

    #[test]
    fn due_rows_name_their_connection_from_the_keys() {
        let c = connection();
        let mut row = key(tenant_pk(&c.tenant_id), connection_sk(&c.connection_id));
        row.insert("next_sync_at".into(), n(at(0).timestamp()));
        row.insert("interval_minutes".into(), n(15));
        let due = due_from_item(&row).unwrap();
        assert_eq!((due.tenant_id, due.connection_id), (c.tenant_id, c.connection_id));
        assert_eq!((due.next_sync_at, due.interval_minutes), (at(0), 15));
        row.insert("sk".into(), s("REC#contacts#r1"));
        assert!(matches!(due_from_item(&row), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn due_shards_are_stable_and_within_range() {
        let t = TenantId::parse("acme").unwrap();
        let c = ConnectionId::parse("c1").unwrap();
        assert_eq!(due_shard(&t, &c, 8), due_shard(&t, &c, 8));
        assert_eq!(due_shard(&t, &c, 0), 0);
        let spread: std::collections::HashSet<u16> =
            (0..64).map(|i| due_shard(&t, &ConnectionId::parse(format!("c{i}")).unwrap(), 4)).collect();
        assert_eq!(spread.len(), 4);
    }

    fn record() -> CanonicalRecord {
        let t = TenantId::parse("acme").unwrap();
        let c = ConnectionId::parse("c1").unwrap();
        let x = ExternalId::parse("101").unwrap();
        CanonicalRecord {
            record_id: RecordId::derive(&t, &c, ObjectType::Contacts, &x),
            tenant_id: t,
            connection_id: c,
            object: ObjectType::Contacts,
            external_id: x,
            fields: [
                ("email".into(), json!("a@x.io")),
                ("score".into(), json!(12.5)),
                ("tags".into(), json!(["a"])),
            ]
            .into(),
            base: [("email".into(), json!("a@x.io")), ("empty".into(), json!(""))].into(),
            remote_modified_at: Some(at(1) + Duration::milliseconds(3)),
            etag: Some("\"3181161234\"".into()),
            local_modified_at: Some(at(2)),
            sources: Default::default(),
            pending_push: [("score".into(), "p_1".into())].into(),
            deleted: false,
            created_at: at(2),
            updated_at: at(3),
            version: 1,
        }
    }

    #[test]
    fn records_round_trip_under_their_derived_key_with_their_provider() {
        let rec = record();
        let item = record_to_item(&rec, Provider::Hubspot);
        assert_eq!(record_from_item(&item).unwrap(), rec);
        assert_eq!(item["pk"], s("T#acme#C#c1"));
        assert_eq!(item["sk"], s(format!("REC#contacts#{}", rec.record_id)));
        assert_eq!(record_provider(&item).unwrap(), Some(Provider::Hubspot));
        let mut older = item.clone();
        older.remove("provider");
        assert_eq!(record_provider(&older).unwrap(), None);
        older.insert("provider".into(), s("myspace"));
        assert!(matches!(record_provider(&older), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn live_events_with_a_string_ical_uid_and_only_they_carry_the_meeting_key() {
        let mut event = record();
        event.object = ObjectType::Events;
        event.fields = [("ical_uid".into(), json!("040000008200E00074C5B7101A82E008"))].into();
        let item = record_to_item(&event, Provider::Microsoft);
        assert_eq!(item["meeting_key"], s("T#acme#ICAL#040000008200E00074C5B7101A82E008"));
        assert_eq!(record_from_item(&item).unwrap(), event, "the key is not part of the record");

        let mut deleted = event.clone();
        deleted.deleted = true;
        let mut contact = event.clone();
        contact.object = ObjectType::Contacts;
        let mut number = event.clone();
        number.fields.insert("ical_uid".into(), json!(42));
        let mut empty = event.clone();
        empty.fields.insert("ical_uid".into(), json!(""));
        for rec in [deleted, contact, number, empty, record()] {
            assert!(!record_to_item(&rec, Provider::Google).contains_key("meeting_key"), "{rec:?}");
        }

        let long = "u".repeat(1025);
        let key = meeting_key(&event.tenant_id, &long);
        assert!(key.starts_with("T#acme#ICALH#") && key.len() == "T#acme#ICALH#".len() + 64, "{key}");
        assert_eq!(key, meeting_key(&event.tenant_id, &long), "the same UID, the same key");
    }

    #[test]
    fn corrupt_record_items_are_reported() {
        let mut item = record_to_item(&record(), Provider::Hubspot);
        item.insert("fields".into(), s("{not json"));
        assert!(matches!(record_from_item(&item), Err(StoreError::Corrupt(m)) if m.contains("fields")));
        let mut item = record_to_item(&record(), Provider::Hubspot);
        item.insert("deleted".into(), s("no"));
        assert!(matches!(record_from_item(&item), Err(StoreError::Corrupt(m)) if m.contains("deleted")));
        let mut item = record_to_item(&record(), Provider::Hubspot);
        item.insert("external_id".into(), s("a#b"));
        assert!(matches!(record_from_item(&item), Err(StoreError::Corrupt(_))));
    }

    fn run() -> SyncRun {
        SyncRun {
            tenant_id: TenantId::parse("acme").unwrap(),
            connection_id: ConnectionId::parse("c1").unwrap(),
            run_id: RunId::parse("01hrun").unwrap(),
            job_id: JobId::parse("c1:s:1700000000").unwrap(),
            reason: JobReason::Continuation,
            status: RunStatus::Continued,
            started_at: at(0),
            finished_at: at(30) + Duration::milliseconds(5),
            duration_ms: 30_005,
            counts: RunCounts { pulled: 7, created: 2, requests: 3, ..RunCounts::default() },
            error: Some("timed out".into()),
            objects: BTreeMap::from([(
                ObjectType::Contacts,
                crate::domain::ObjectRun {
                    pulled: 7,
                    created: 2,
                    ..crate::domain::ObjectRun::new(crate::domain::ObjectOutcome::Continued)
                },
            )]),
        }
    }

    #[test]
    fn run_and_job_ledger_items_carry_their_ttls() {
        let r = run();
        let item = run_to_item(&r);
        assert_eq!(run_from_item(&item).unwrap(), r);
        assert_eq!(item["status"], s("continued"));
        let mut older = item.clone();
        older.remove("objects");
        assert!(
            run_from_item(&older).unwrap().objects.is_empty(),
            "runs from before per-object results read"
        );
        assert_eq!(item["expires_at"], n((at(30) + Duration::days(90)).timestamp()));
        let job = job_to_item(&r);
        assert_eq!(job["sk"], s("JOB#c1:s:1700000000"));
        assert_eq!(job["expires_at"], n((at(30) + Duration::days(14)).timestamp()));
        let mut bad = item;
        bad.insert("reason".into(), s("whim"));
        assert!(matches!(run_from_item(&bad), Err(StoreError::Corrupt(m)) if m.contains("reason")));
    }

    #[test]
    fn audit_entry_round_trips_and_is_keyed_by_time() {
        let t = TenantId::parse("acme").unwrap();
        let c = ConnectionId::parse("c1").unwrap();
        let e =
            AuditEntry::new(t.clone(), Operation::ConflictDetected, AuditOutcome::Success, "worker", at(0))
                .connection(&c)
                .record(ObjectType::Contacts, &RecordId::parse("r1").unwrap())
                .detail(json!({"field": "email"}))
                .change(Some(json!("a")), None);
        let item = audit_to_item(&e);
        assert_eq!(audit_from_item(&item).unwrap(), e);
        assert_eq!(item["sk"], s(format!("2023-11-14T22:13:20.000Z#{}", e.entry_id)));
        assert_eq!(item["conn_pk"], s("T#acme#C#c1"));
        assert!(!item.contains_key("after"));

        let bare = AuditEntry::new(t, Operation::Pull, AuditOutcome::Rejected, "dispatcher", at(1));
        let item = audit_to_item(&bare);
        assert!(!item.contains_key("conn_pk"));
        assert_eq!(audit_from_item(&item).unwrap(), bare);
        let mut bad = item;
        bad.insert("operation".into(), s("teleport"));
        assert!(matches!(audit_from_item(&bad), Err(StoreError::Corrupt(_))));
    }
}
