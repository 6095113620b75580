//! Batch writes to HubSpot, 100 records a request, with HubSpot's multi-status answers (every
//! input carries an `objectWriteTraceId`, so one bad record fails alone and the rest are written).
//!
//! Requests per batch of up to 100 writes of one object type:
//! - creates: one `batch/read` by `idProperty=syncbridge_key` (finds records an earlier attempt
//!   created: creates are idempotent on the key, which the portal must hold as a unique-value
//!   custom property on each synced object type), then one `batch/create` for the rest, carrying
//!   `associations` (HUBSPOT_DEFINED types) for `*_ids` fields; a key HubSpot reports as taken
//!   (a concurrent create) costs one more `batch/read`.
//! - updates: one `batch/update`, plus one `batch/read` of `hs_lastmodifieddate` first when any
//!   write has `unmodified_since` (HubSpot has no conditional write); those modified since are
//!   `Err(Conflict)` and are not sent.
//! - deletes: one `batch/archive`, plus the same `batch/read` for preconditions.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use super::objects::{self, ObjectSpec, parse_instant};
use super::{HubObject, HubspotClient, Kind, Reply};
use crate::domain::record::Fields;
use crate::domain::{ExternalId, IdempotencyKey, ObjectType};
use crate::ports::{Precondition, ProviderError, ProviderWrite, WriteAck};

/// HubSpot's batch input limit.
const BATCH: usize = 100;
/// The unique-value custom property holding a create's idempotency key.
pub const KEY_PROPERTY: &str = "syncbridge_key";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Create,
    Update,
    Delete,
}

fn copy(e: &ProviderError) -> ProviderError {
    match e {
        ProviderError::RateLimited { retry_after } => {
            ProviderError::RateLimited { retry_after: *retry_after }
        }
        ProviderError::Unauthorized => ProviderError::Unauthorized,
        ProviderError::NotFound => ProviderError::NotFound,
        ProviderError::CursorExpired => ProviderError::CursorExpired,
        ProviderError::Conflict => ProviderError::Conflict,
        ProviderError::Transient(m) => ProviderError::Transient(m.clone()),
        ProviderError::Permanent(m) => ProviderError::Permanent(m.clone()),
    }
}

#[derive(Debug, Deserialize)]
struct BatchReply {
    #[serde(default)]
    results: Vec<HubObject>,
    #[serde(default)]
    errors: Vec<BatchError>,
}

#[derive(Debug, Deserialize)]
struct BatchError {
    #[serde(default)]
    category: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    context: HashMap<String, Value>,
}

impl BatchError {
    /// The values of one context key (`ids`, `objectWriteTraceId`) as strings.
    fn context(&self, key: &str) -> Vec<String> {
        match self.context.get(key) {
            Some(Value::Array(items)) => items.iter().filter_map(super::id_text).collect(),
            Some(v) => super::id_text(v).into_iter().collect(),
            None => Vec::new(),
        }
    }

    fn to_error(&self) -> ProviderError {
        match self.category.as_str() {
            "OBJECT_NOT_FOUND" => ProviderError::NotFound,
            "CONFLICT" => ProviderError::Conflict,
            _ => ProviderError::Permanent(format!(
                "HubSpot refused the record: {} {}",
                self.category,
                self.message.chars().take(200).collect::<String>()
            )),
        }
    }
}

fn ack(spec: &ObjectSpec, obj: &HubObject) -> Result<WriteAck, ProviderError> {
    let external_id = ExternalId::parse(obj.id.clone())
        .map_err(|e| ProviderError::Permanent(format!("HubSpot returned an unusable id: {e}")))?;
    let modified = obj
        .properties
        .get(spec.modified)
        .and_then(Value::as_str)
        .and_then(parse_instant)
        .or_else(|| obj.updated_at.as_deref().and_then(parse_instant));
    Ok(WriteAck { external_id, remote_modified_at: modified, etag: None, fields: None })
}

type Outcomes = Vec<(usize, Result<WriteAck, ProviderError>)>;

impl HubspotClient {
    /// Applies the writes grouped by object type and kind, in batches of 100. An error before any
    /// batch went through (throttling, a transport failure, rejected credentials) is returned as
    /// the outer error; after that, a failed batch fails only its own writes.
    pub(super) async fn write_all(
        &self,
        token: &SecretString,
        writes: &[ProviderWrite],
    ) -> Result<Vec<Result<WriteAck, ProviderError>>, ProviderError> {
        let mut results: Vec<Option<Result<WriteAck, ProviderError>>> = writes.iter().map(|_| None).collect();
        let mut groups: BTreeMap<(ObjectType, Op), Vec<usize>> = BTreeMap::new();
        for (i, w) in writes.iter().enumerate() {
            let (object, op) = match w {
                ProviderWrite::Create { object, .. } => (*object, Op::Create),
                ProviderWrite::Update { object, .. } => (*object, Op::Update),
                ProviderWrite::Delete { object, .. } => (*object, Op::Delete),
            };
            groups.entry((object, op)).or_default().push(i);
        }
        let mut any_sent = false;
        for ((object, op), indices) in groups {
            let Some(spec) = objects::spec(object) else {
                for i in indices {
                    results[i] = Some(Err(ProviderError::Permanent(format!(
                        "the HubSpot adapter does not write {object}"
                    ))));
                }
                continue;
            };
            for chunk in indices.chunks(BATCH) {
                let outcome = match op {
                    Op::Create => self.create_chunk(spec, token, writes, chunk).await,
                    Op::Update => self.update_chunk(spec, token, writes, chunk).await,
                    Op::Delete => self.delete_chunk(spec, token, writes, chunk).await,
                };
                match outcome {
                    Ok(done) => {
                        any_sent = true;
                        for (i, r) in done {
                            results[i] = Some(r);
                        }
                    }
                    Err(e) if !any_sent && (e.is_retryable() || matches!(e, ProviderError::Unauthorized)) => {
                        return Err(e);
                    }
                    Err(e) => {
                        for i in chunk {
                            results[*i] = Some(Err(copy(&e)));
                        }
                    }
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ProviderError::Transient("HubSpot returned no result".into()))))
            .collect())
    }

    async fn post(&self, token: &SecretString, url: &str, body: &Value) -> Result<Reply, ProviderError> {
        self.send(Kind::Other, || self.http.post(url).bearer_auth(token.expose_secret()).json(body)).await
    }

    /// `batch/read` of ids (or of `idProperty` values) with `properties`; the records found.
    async fn batch_read(
        &self,
        spec: &ObjectSpec,
        token: &SecretString,
        ids: &[String],
        properties: &[String],
        id_property: Option<&str>,
    ) -> Result<Vec<HubObject>, ProviderError> {
        let url = format!("{}/crm/v3/objects/{}/batch/read", self.base, spec.path);
        let mut body = json!({
            "properties": properties,
            "inputs": ids.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>(),
        });
        if let Some(p) = id_property {
            body["idProperty"] = Value::String(p.to_owned());
        }
        let reply: BatchReply = self.post(token, &url, &body).await?.check()?.json()?;
        Ok(reply.results)
    }

    /// Reads the modified stamp of the targets that carry `unmodified_since`: those changed since
    /// are `Err(Conflict)`, those gone are `Err(NotFound)`.
    async fn preconditions(
        &self,
        spec: &ObjectSpec,
        token: &SecretString,
        targets: &[(usize, &ExternalId, &Precondition)],
    ) -> Result<HashMap<usize, ProviderError>, ProviderError> {
        let checked: Vec<(usize, &ExternalId, DateTime<Utc>)> = targets
            .iter()
            .filter_map(|(i, id, p)| p.unmodified_since.map(|since| (*i, *id, since)))
            .collect();
        let mut failed = HashMap::new();
        if checked.is_empty() {
            return Ok(failed);
        }
        let ids: Vec<String> = checked.iter().map(|(_, id, _)| id.as_str().to_owned()).collect();
        let found = self.batch_read(spec, token, &ids, &[spec.modified.to_owned()], None).await?;
        let modified: HashMap<&str, Option<DateTime<Utc>>> = found
            .iter()
            .map(|o| (o.id.as_str(), ack(spec, o).ok().and_then(|a| a.remote_modified_at)))
            .collect();
        for (i, id, since) in checked {
            match modified.get(id.as_str()) {
                None => {
                    failed.insert(i, ProviderError::NotFound);
                }
                Some(Some(at)) if at.timestamp_millis() > since.timestamp_millis() => {
                    failed.insert(i, ProviderError::Conflict);
                }
                Some(_) => {}
            }
        }
        Ok(failed)
    }

    async fn create_chunk(
        &self,
        spec: &ObjectSpec,
        token: &SecretString,
        writes: &[ProviderWrite],
        chunk: &[usize],
    ) -> Result<Outcomes, ProviderError> {
        let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut fields_of: HashMap<String, &Fields> = HashMap::new();
        for i in chunk {
            if let Some(ProviderWrite::Create { fields, idempotency_key, .. }) = writes.get(*i) {
                let key = key_value(idempotency_key);
                fields_of.entry(key.clone()).or_insert(fields);
                by_key.entry(key).or_default().push(*i);
            }
        }
        let keys: Vec<String> = by_key.keys().cloned().collect();
        let mut out = Outcomes::new();
        let settle = |out: &mut Outcomes, key: &str, r: Result<WriteAck, ProviderError>| {
            for i in by_key.get(key).into_iter().flatten() {
                let r = match &r {
                    Ok(a) => Ok(a.clone()),
                    Err(e) => Err(copy(e)),
                };
                out.push((*i, r));
            }
        };
        let key_props = vec![spec.modified.to_owned(), KEY_PROPERTY.to_owned()];
        let existing = self.batch_read(spec, token, &keys, &key_props, Some(KEY_PROPERTY)).await?;
        let mut done: HashMap<String, Result<WriteAck, ProviderError>> = HashMap::new();
        for obj in &existing {
            if let Some(key) = obj.properties.get(KEY_PROPERTY).and_then(Value::as_str) {
                done.insert(key.to_owned(), ack(spec, obj));
            }
        }
        let missing: Vec<&String> = keys.iter().filter(|k| !done.contains_key(*k)).collect();
        let mut taken = Vec::new();
        if !missing.is_empty() {
            let map = self.mappings.fields(spec.object);
            let inputs: Vec<Value> = missing
                .iter()
                .map(|key| {
                    let empty = Fields::new();
                    let fields = fields_of.get(*key).copied().unwrap_or(&empty);
                    let (mut props, assocs) = objects::to_properties(spec, &map, fields);
                    props.insert(KEY_PROPERTY.to_owned(), Value::String((*key).clone()));
                    let associations: Vec<Value> = assocs
                        .iter()
                        .map(|(a, id)| {
                            json!({
                                "to": { "id": id },
                                "types": [{ "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": a.type_id }],
                            })
                        })
                        .collect();
                    json!({ "properties": props, "associations": associations, "objectWriteTraceId": key })
                })
                .collect();
            let url = format!("{}/crm/v3/objects/{}/batch/create", self.base, spec.path);
            let reply = self.post(token, &url, &json!({ "inputs": inputs })).await?;
            match reply.check() {
                Ok(reply) => {
                    let parsed: BatchReply = reply.json()?;
                    for obj in &parsed.results {
                        let key = obj.object_write_trace_id.clone().or_else(|| {
                            obj.properties.get(KEY_PROPERTY).and_then(Value::as_str).map(str::to_owned)
                        });
                        if let Some(key) = key {
                            done.insert(key, ack(spec, obj));
                        }
                    }
                    for e in &parsed.errors {
                        for key in e.context("objectWriteTraceId") {
                            match e.to_error() {
                                ProviderError::Conflict => taken.push(key),
                                err => {
                                    done.insert(key, Err(err));
                                }
                            }
                        }
                    }
                }
                Err(e @ ProviderError::Permanent(_)) => {
                    for key in &missing {
                        done.insert((*key).clone(), Err(copy(&e)));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if !taken.is_empty() {
            for obj in self.batch_read(spec, token, &taken, &key_props, Some(KEY_PROPERTY)).await? {
                if let Some(key) = obj.properties.get(KEY_PROPERTY).and_then(Value::as_str) {
                    done.insert(key.to_owned(), ack(spec, &obj));
                }
            }
        }
        for key in &keys {
            let r = done.remove(key).unwrap_or_else(|| {
                Err(ProviderError::Transient("HubSpot reported no result for the create".into()))
            });
            settle(&mut out, key, r);
        }
        Ok(out)
    }

    async fn update_chunk(
        &self,
        spec: &ObjectSpec,
        token: &SecretString,
        writes: &[ProviderWrite],
        chunk: &[usize],
    ) -> Result<Outcomes, ProviderError> {
        let targets: Vec<(usize, &ExternalId, &Precondition)> = chunk
            .iter()
            .filter_map(|i| match writes.get(*i) {
                Some(ProviderWrite::Update { external_id, precondition, .. }) => {
                    Some((*i, external_id, precondition))
                }
                _ => None,
            })
            .collect();
        let mut failed = self.preconditions(spec, token, &targets).await?;
        let map = self.mappings.fields(spec.object);
        let inputs: Vec<Value> = chunk
            .iter()
            .filter(|i| !failed.contains_key(*i))
            .filter_map(|i| match writes.get(*i) {
                Some(ProviderWrite::Update { external_id, fields, .. }) => {
                    let (props, _) = objects::to_properties(spec, &map, fields);
                    Some(json!({ "id": external_id.as_str(), "properties": props, "objectWriteTraceId": i.to_string() }))
                }
                _ => None,
            })
            .collect();
        let mut done: HashMap<usize, Result<WriteAck, ProviderError>> = HashMap::new();
        if !inputs.is_empty() {
            let url = format!("{}/crm/v3/objects/{}/batch/update", self.base, spec.path);
            let sent: Vec<usize> = chunk.iter().copied().filter(|i| !failed.contains_key(i)).collect();
            let id_of = |i: usize| match writes.get(i) {
                Some(ProviderWrite::Update { external_id, .. }) => Some(external_id.as_str()),
                _ => None,
            };
            let reply = self.post(token, &url, &json!({ "inputs": inputs })).await?;
            match reply.check() {
                Ok(reply) => {
                    let parsed: BatchReply = reply.json()?;
                    for obj in &parsed.results {
                        let index = obj
                            .object_write_trace_id
                            .as_deref()
                            .and_then(|t| t.parse::<usize>().ok())
                            .or_else(|| sent.iter().copied().find(|i| id_of(*i) == Some(obj.id.as_str())));
                        if let Some(i) = index {
                            done.insert(i, ack(spec, obj));
                        }
                    }
                    for e in &parsed.errors {
                        let mut hit: Vec<usize> =
                            e.context("objectWriteTraceId").iter().filter_map(|t| t.parse().ok()).collect();
                        if hit.is_empty() {
                            let ids = e.context("ids");
                            hit = sent
                                .iter()
                                .copied()
                                .filter(|i| id_of(*i).is_some_and(|id| ids.iter().any(|x| x == id)))
                                .collect();
                        }
                        for i in hit {
                            done.insert(i, Err(e.to_error()));
                        }
                    }
                }
                Err(e @ ProviderError::Permanent(_)) => {
                    for i in &sent {
                        done.insert(*i, Err(copy(&e)));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(chunk
            .iter()
            .map(|i| {
                let r = failed.remove(i).map(Err).or_else(|| done.remove(i)).unwrap_or_else(|| {
                    Err(ProviderError::Transient("HubSpot reported no result for the update".into()))
                });
                (*i, r)
            })
            .collect())
    }

    async fn delete_chunk(
        &self,
        spec: &ObjectSpec,
        token: &SecretString,
        writes: &[ProviderWrite],
        chunk: &[usize],
    ) -> Result<Outcomes, ProviderError> {
        let targets: Vec<(usize, &ExternalId, &Precondition)> = chunk
            .iter()
            .filter_map(|i| match writes.get(*i) {
                Some(ProviderWrite::Delete { external_id, precondition, .. }) => {
                    Some((*i, external_id, precondition))
                }
                _ => None,
            })
            .collect();
        let mut failed = self.preconditions(spec, token, &targets).await?;
        let send: Vec<(usize, &ExternalId)> =
            targets.iter().filter(|(i, _, _)| !failed.contains_key(i)).map(|(i, id, _)| (*i, *id)).collect();
        if !send.is_empty() {
            let url = format!("{}/crm/v3/objects/{}/batch/archive", self.base, spec.path);
            let inputs: Vec<Value> = send.iter().map(|(_, id)| json!({ "id": id.as_str() })).collect();
            self.post(token, &url, &json!({ "inputs": inputs })).await?.check()?;
        }
        Ok(targets
            .iter()
            .map(|(i, id, _)| {
                let r = match failed.remove(i) {
                    Some(e) => Err(e),
                    None => Ok(WriteAck {
                        external_id: (*id).clone(),
                        remote_modified_at: None,
                        etag: None,
                        fields: None,
                    }),
                };
                (*i, r)
            })
            .collect())
    }
}

fn key_value(key: &IdempotencyKey) -> String {
    key.as_str().to_owned()
}
