//! Batch writes to HubSpot, 100 records a request, with HubSpot's multi-status answers (every
//! input carries an `objectWriteTraceId`, so one bad record fails alone and the rest are written).
//!
//! Requests per batch of up to 100 writes of one object type:
//! - creates: first a lookup of records an earlier attempt created (creates are idempotent on the
//!   push's key), then one `batch/create` for the rest, carrying `associations` (HUBSPOT_DEFINED
//!   types) for `*_ids` fields. A stock portal has no property of ours, so the proof depends on
//!   the type ([`CreateProof`]): contacts, companies and deals hold the key in `syncbridge_key`, a
//!   unique-value property the client creates through the properties API at the first create of
//!   the type (one `GET` per client and type, plus one `POST` the first time in a portal), found
//!   by one `batch/read` with `idProperty`; HubSpot allows no unique property on notes, so a note's
//!   body ends with the key's tag and is found through the record it is attached to (one v4
//!   association `batch/read` and one `batch/read` of those notes per 100); contacts in a portal
//!   where the app may not create properties are found by email. A key HubSpot reports as taken
//!   (a concurrent create) costs one more lookup.
//! - updates: one `batch/update`, plus one `batch/read` of `hs_lastmodifieddate` first when any
//!   write has `unmodified_since` (HubSpot has no conditional write); those modified since are
//!   `Err(Conflict)` and are not sent. Updates carrying `*_ids` fields then change associations:
//!   per association type named by any of them (deal -> contacts, deal -> companies, ...), one v4
//!   `batch/read` of what HubSpot holds, then one v4 `batch/create` (HUBSPOT_DEFINED type) of the
//!   added pairs and one v4 `batch/archive` of the removed ones, each only when there are some (100
//!   inputs a request). A deal update adding one contact and removing another is 4 requests; with
//!   unchanged ids it is 2 (no association write); without `*_ids` fields it is 1. The property
//!   update and the association changes are one write: when an association call fails after the
//!   properties were written, the write's result is that error (repeating it is harmless: HubSpot
//!   treats adding an existing association and archiving a missing one as no-ops).
//! - deletes: one `batch/archive`, plus the same `batch/read` for preconditions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use super::objects::{self, Association, ObjectSpec, parse_instant};
use super::{HubObject, HubspotClient, Reply};
use crate::adapters::provider_http::Call;
use crate::domain::record::Fields;
use crate::domain::{ExternalId, IdempotencyKey, ObjectType};
use crate::ports::{Precondition, ProviderError, ProviderWrite, WriteAck};

/// HubSpot's batch input limit.
const BATCH: usize = 100;
/// Pairs per v4 association `batch/create` or `batch/archive` request.
const ASSOCIATION_BATCH: usize = 100;
/// The unique-value custom property holding a create's idempotency key.
pub const KEY_PROPERTY: &str = "syncbridge_key";

/// How creates of one object type prove that an earlier attempt made the record already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CreateProof {
    /// `syncbridge_key`, a unique-value property, holds the key (`batch/read` by `idProperty`).
    KeyProperty,
    /// The body of a note (or another activity) ends with the key's tag; found through its first
    /// association.
    NoteTag,
    /// Contacts whose portal lacks the property: the email, which HubSpot keeps unique.
    Email,
}

impl CreateProof {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            CreateProof::KeyProperty => "key_property",
            CreateProof::NoteTag => "note_tag",
            CreateProof::Email => "email",
        }
    }

    pub(super) fn parse(value: &str) -> Option<Self> {
        match value {
            "key_property" => Some(CreateProof::KeyProperty),
            "note_tag" => Some(CreateProof::NoteTag),
            "email" => Some(CreateProof::Email),
            _ => None,
        }
    }
}

/// The key under which a type's proof is kept on the connection (`Connection::provider_setup`).
pub(super) fn setup_key(object: ObjectType) -> String {
    format!("hubspot.{object}.create_proof")
}

/// The proof for a type whose `syncbridge_key` property cannot be had: contacts fall back on
/// their email; for companies and deals no standard property is unique, so their creates are
/// refused (permanently, with what to do) rather than risk duplicates.
fn fallback_proof(spec: &ObjectSpec, why: &str) -> Result<CreateProof, ProviderError> {
    tracing::warn!(object = %spec.object, why, "no syncbridge_key property; falling back");
    if spec.object == ObjectType::Contacts {
        return Ok(CreateProof::Email);
    }
    Err(ProviderError::permanent(format!(
        "cannot create {} idempotently: {why}; grant the app the crm.schemas.{}.write scope (or create a \
         unique-value text property `syncbridge_key` on {}) and retry",
        spec.object, spec.path, spec.path
    )))
}

/// The property group a new property of `spec`'s type joins (each type's default group).
fn property_group(spec: &ObjectSpec) -> &'static str {
    match spec.object {
        ObjectType::Contacts => "contactinformation",
        ObjectType::Companies => "companyinformation",
        ObjectType::Deals => "dealinformation",
        _ => "engagement",
    }
}

/// One create as it goes out: its key, properties (with the proof) and associations.
struct Create {
    key: String,
    tag: String,
    props: serde_json::Map<String, Value>,
    assocs: Vec<(Association, String)>,
}

impl Create {
    fn new(
        spec: &ObjectSpec,
        key: String,
        mut props: serde_json::Map<String, Value>,
        assocs: Vec<(Association, String)>,
        proof: CreateProof,
    ) -> Self {
        let tag = crate::domain::key_tag(&key);
        match (proof, spec.tag_property) {
            (CreateProof::KeyProperty, _) => {
                props.insert(KEY_PROPERTY.to_owned(), Value::String(key.clone()));
            }
            (CreateProof::NoteTag, Some(body_property)) => {
                let body = props.get(body_property).and_then(Value::as_str).unwrap_or("");
                let tagged = if body.is_empty() { tag.clone() } else { format!("{body}\n{tag}") };
                props.insert(body_property.to_owned(), Value::String(tagged));
            }
            (CreateProof::NoteTag, None) | (CreateProof::Email, _) => {}
        }
        Self { key, tag, props, assocs }
    }

    /// The `batch/create` input.
    fn input(&self) -> Value {
        let associations: Vec<Value> = self
            .assocs
            .iter()
            .map(|(a, id)| {
                json!({
                    "to": { "id": id },
                    "types": [{ "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": a.type_id }],
                })
            })
            .collect();
        json!({ "properties": self.props, "associations": associations, "objectWriteTraceId": self.key })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Create,
    Update,
    Delete,
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

    /// A create refused because its unique value is held already: a contact's email (`CONFLICT`,
    /// "Contact already exists") or a unique-value property (`VALIDATION_ERROR`, "... already has
    /// that value.").
    fn is_taken(&self) -> bool {
        self.category == "CONFLICT"
            || (self.category == "VALIDATION_ERROR" && self.message.contains("already has that value"))
    }

    fn to_error(&self) -> ProviderError {
        match self.category.as_str() {
            "OBJECT_NOT_FOUND" => ProviderError::NotFound,
            "CONFLICT" => ProviderError::Conflict,
            _ => ProviderError::permanent(format!(
                "HubSpot refused the record: {} {}",
                self.category,
                self.message.chars().take(200).collect::<String>()
            )),
        }
    }
}

fn ack(spec: &ObjectSpec, obj: &HubObject) -> Result<WriteAck, ProviderError> {
    let external_id = ExternalId::parse(spec.external_id(&obj.id))
        .map_err(|e| ProviderError::permanent(format!("HubSpot returned an unusable id: {e}")))?;
    let modified = obj
        .properties
        .get(spec.modified)
        .and_then(Value::as_str)
        .and_then(parse_instant)
        .or_else(|| obj.updated_at.as_deref().and_then(parse_instant));
    Ok(WriteAck { external_id, remote_modified_at: modified, etag: None, fields: None })
}

type Outcomes = Vec<(usize, Result<WriteAck, ProviderError>)>;

/// The associations an update sets: per writable association named by a `*_ids` field, the ids
/// wanted (null: none). A value that is not an array of ids refuses the write.
type Wanted = Vec<(Association, BTreeSet<String>)>;

fn wanted_associations(spec: &ObjectSpec, fields: &Fields) -> Result<Wanted, ProviderError> {
    let mut out = Wanted::new();
    for a in spec.writable {
        let ids = match fields.get(a.field) {
            None => continue,
            Some(Value::Null) => BTreeSet::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| super::id_text(v).ok_or(()))
                .collect::<Result<BTreeSet<String>, ()>>()
                .map_err(|()| {
                    ProviderError::permanent(format!("{} must be an array of record ids", a.field))
                })?,
            Some(_) => {
                return Err(ProviderError::permanent(format!("{} must be an array of record ids", a.field)));
            }
        };
        out.push((*a, ids));
    }
    Ok(out)
}

/// The `errors` of a v4 association batch answer (its `results` are not needed).
#[derive(Debug, Default, Deserialize)]
struct AssociationWriteReply {
    #[serde(default)]
    errors: Vec<BatchError>,
}

/// Association changes for one type: the writes (by index) and their records' ids.
struct AssociationChange<'a> {
    index: usize,
    from: &'a str,
    add: Vec<String>,
    remove: Vec<String>,
}

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
        let mut groups: BTreeMap<(&'static str, Op), (&'static ObjectSpec, Vec<usize>)> = BTreeMap::new();
        for (i, w) in writes.iter().enumerate() {
            let (object, op, spec) = match w {
                ProviderWrite::Create { object, fields, .. } => {
                    let spec = match object {
                        ObjectType::Activities => {
                            fields.get("kind").and_then(Value::as_str).and_then(objects::activity_spec)
                        }
                        other => objects::spec(*other),
                    };
                    (*object, Op::Create, spec)
                }
                ProviderWrite::Update { object, external_id, .. } => {
                    (*object, Op::Update, objects::spec_of_record(*object, external_id.as_str()))
                }
                ProviderWrite::Delete { object, external_id, .. } => {
                    (*object, Op::Delete, objects::spec_of_record(*object, external_id.as_str()))
                }
            };
            match spec {
                Some(spec) => groups.entry((spec.path, op)).or_insert((spec, Vec::new())).1.push(i),
                None => {
                    let why = match object {
                        ObjectType::Activities => {
                            "the HubSpot adapter writes activities of kind call, email, meeting or task only"
                                .to_owned()
                        }
                        other => format!("the HubSpot adapter does not write {other}"),
                    };
                    results[i] = Some(Err(ProviderError::permanent(why)));
                }
            }
        }
        let mut any_sent = false;
        for ((_, op), (spec, indices)) in groups {
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
                            results[*i] = Some(Err(e.clone()));
                        }
                    }
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ProviderError::transient("HubSpot returned no result"))))
            .collect())
    }

    async fn post(
        &self,
        call: Call,
        token: &SecretString,
        url: &str,
        body: &Value,
    ) -> Result<Reply, ProviderError> {
        self.net.send(call, || self.http.post(url).bearer_auth(token.expose_secret()).json(body)).await
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
        let reply: BatchReply =
            self.post(Call::read("batch.read"), token, &url, &body).await?.check()?.json()?;
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
        let ids: Vec<String> = checked.iter().map(|(_, id, _)| spec.hub_id(id.as_str()).to_owned()).collect();
        let found = self.batch_read(spec, token, &ids, &[spec.modified.to_owned()], None).await?;
        let modified: HashMap<&str, Option<DateTime<Utc>>> = found
            .iter()
            .map(|o| (o.id.as_str(), ack(spec, o).ok().and_then(|a| a.remote_modified_at)))
            .collect();
        for (i, id, since) in checked {
            match modified.get(spec.hub_id(id.as_str())) {
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

    /// How creates of `spec`'s type prove they happened already, learned once per client: the
    /// unique-value property `syncbridge_key` (found, or created through the properties API), a
    /// tag at the end of a note's body (HubSpot allows no unique properties on notes), or, for
    /// contacts when the app may not create properties, the email HubSpot keeps unique.
    async fn create_proof(
        &self,
        spec: &ObjectSpec,
        token: &SecretString,
    ) -> Result<CreateProof, ProviderError> {
        let known = self.proofs.lock().ok().and_then(|p| p.get(&spec.object).copied());
        if let Some(proof) = known {
            return Ok(proof);
        }
        let proof = if spec.tag_property.is_some() {
            CreateProof::NoteTag
        } else {
            self.key_property(spec, token).await?
        };
        if let Ok(mut proofs) = self.proofs.lock() {
            proofs.insert(spec.object, proof);
        }
        Ok(proof)
    }

    /// Finds the unique-value `syncbridge_key` property of `spec`'s type, creating it when absent.
    /// Unique-value properties: <https://developers.hubspot.com/changelog/unique-properties-support-for-newly-created-contact-properties>;
    /// the properties API: <https://developers.hubspot.com/docs/api/crm/properties>.
    async fn key_property(
        &self,
        spec: &ObjectSpec,
        token: &SecretString,
    ) -> Result<CreateProof, ProviderError> {
        let url = format!("{}/crm/v3/properties/{}/{KEY_PROPERTY}", self.base, spec.path);
        let found = self
            .net
            .send(Call::read("properties.get"), || self.http.get(&url).bearer_auth(token.expose_secret()))
            .await?;
        match found.status {
            s if s.is_success() => {
                let unique =
                    found.json::<Value>()?.get("hasUniqueValue").and_then(Value::as_bool) == Some(true);
                if unique {
                    return Ok(CreateProof::KeyProperty);
                }
                return fallback_proof(spec, "the portal's syncbridge_key property is not unique-valued");
            }
            reqwest::StatusCode::NOT_FOUND => {}
            reqwest::StatusCode::FORBIDDEN => {
                return fallback_proof(spec, "the app may not read the object type's properties");
            }
            _ => {
                return Err(found
                    .check()
                    .err()
                    .unwrap_or_else(|| ProviderError::transient("HubSpot answered oddly")));
            }
        }
        let url = format!("{}/crm/v3/properties/{}", self.base, spec.path);
        let body = json!({
            "name": KEY_PROPERTY,
            "label": "Syncbridge key",
            "description": "Written by Syncbridge on the records it creates, so that a retried create finds its record instead of making a second one.",
            "groupName": property_group(spec),
            "type": "string",
            "fieldType": "text",
            "hasUniqueValue": true,
            "formField": false,
        });
        let created = self.post(Call::idempotent_write("properties.create"), token, &url, &body).await?;
        match created.status {
            // 409: another worker created it meanwhile.
            s if s.is_success() || s == reqwest::StatusCode::CONFLICT => {
                tracing::info!(object = %spec.object, "created the syncbridge_key property in the portal");
                Ok(CreateProof::KeyProperty)
            }
            reqwest::StatusCode::FORBIDDEN => {
                fallback_proof(spec, "the app may not create properties (no crm.schemas write scope)")
            }
            s if s.is_client_error()
                && s != reqwest::StatusCode::UNAUTHORIZED
                && s != reqwest::StatusCode::TOO_MANY_REQUESTS =>
            {
                let why = match created.error() {
                    Some(e) => format!("HubSpot refused the syncbridge_key property: {e}"),
                    None => "HubSpot refused the syncbridge_key property".to_owned(),
                };
                fallback_proof(spec, &why)
            }
            _ => Err(created
                .check()
                .err()
                .unwrap_or_else(|| ProviderError::transient("HubSpot answered oddly"))),
        }
    }

    /// The records that earlier attempts of these creates made, by idempotency key.
    async fn find_created(
        &self,
        spec: &ObjectSpec,
        token: &SecretString,
        proof: CreateProof,
        creates: &[&Create],
    ) -> Result<HashMap<String, Result<WriteAck, ProviderError>>, ProviderError> {
        let mut done = HashMap::new();
        if creates.is_empty() {
            return Ok(done);
        }
        match proof {
            CreateProof::KeyProperty => {
                let keys: Vec<String> = creates.iter().map(|c| c.key.clone()).collect();
                let props = vec![spec.modified.to_owned(), KEY_PROPERTY.to_owned()];
                for obj in self.batch_read(spec, token, &keys, &props, Some(KEY_PROPERTY)).await? {
                    if let Some(key) = obj.properties.get(KEY_PROPERTY).and_then(Value::as_str) {
                        done.insert(key.to_owned(), ack(spec, &obj));
                    }
                }
            }
            CreateProof::Email => {
                let mut keys_of: HashMap<String, Vec<&str>> = HashMap::new();
                for c in creates {
                    if let Some(email) =
                        c.props.get("email").and_then(Value::as_str).filter(|e| !e.is_empty())
                    {
                        keys_of.entry(email.to_lowercase()).or_default().push(&c.key);
                    }
                }
                let emails: Vec<String> = keys_of.keys().cloned().collect();
                if !emails.is_empty() {
                    let props = vec![spec.modified.to_owned(), "email".to_owned()];
                    for obj in self.batch_read(spec, token, &emails, &props, Some("email")).await? {
                        let email =
                            obj.properties.get("email").and_then(Value::as_str).map(str::to_lowercase);
                        for key in email.and_then(|e| keys_of.get(&e)).into_iter().flatten() {
                            done.insert((*key).to_owned(), ack(spec, &obj));
                        }
                    }
                }
            }
            CreateProof::NoteTag => {
                // A note is found again through the record it is attached to (an association read
                // is consistent at once, where search indexes with a delay): the notes of that
                // record whose body ends with the create's tag.
                let mut anchors: BTreeMap<&'static str, BTreeMap<String, Vec<&Create>>> = BTreeMap::new();
                for c in creates {
                    if let Some((a, id)) = c.assocs.first() {
                        anchors.entry(a.to).or_default().entry(id.clone()).or_default().push(c);
                    }
                }
                for (to, by_record) in anchors {
                    let records: Vec<String> = by_record.keys().cloned().collect();
                    let notes = self.associated_ids(token, to, spec.path, &records).await?;
                    let mut candidates: BTreeMap<String, Vec<&Create>> = BTreeMap::new();
                    for (record, wanted) in &by_record {
                        for note in notes.get(record).into_iter().flatten() {
                            candidates.entry(note.clone()).or_default().extend(wanted.iter().copied());
                        }
                    }
                    let ids: Vec<String> = candidates.keys().cloned().collect();
                    let body_property = spec.tag_property.unwrap_or_default();
                    let props = vec![spec.modified.to_owned(), body_property.to_owned()];
                    for chunk in ids.chunks(BATCH) {
                        for obj in self.batch_read(spec, token, chunk, &props, None).await? {
                            let body =
                                obj.properties.get(body_property).and_then(Value::as_str).unwrap_or("");
                            for c in candidates.get(&obj.id).into_iter().flatten() {
                                if body.trim_end().ends_with(&c.tag) {
                                    done.insert(c.key.clone(), ack(spec, &obj));
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(done)
    }

    /// The ids of `to`-type records associated with each of `ids` (of type `from`), by one v4
    /// association `batch/read` per 100 ids.
    async fn associated_ids(
        &self,
        token: &SecretString,
        from: &str,
        to: &str,
        ids: &[String],
    ) -> Result<HashMap<String, BTreeSet<String>>, ProviderError> {
        let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
        let url = format!("{}/crm/v4/associations/{from}/{to}/batch/read", self.base);
        for chunk in ids.chunks(ASSOCIATION_BATCH) {
            let body = json!({ "inputs": chunk.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>() });
            let reply: super::AssociationsReply =
                self.post(Call::read("associations.read"), token, &url, &body).await?.check()?.json()?;
            for r in reply.results {
                let Some(from) = super::id_text(&r.from.id) else { continue };
                out.entry(from)
                    .or_default()
                    .extend(r.to.iter().filter_map(|t| super::id_text(&t.to_object_id)));
            }
        }
        Ok(out)
    }

    async fn create_chunk(
        &self,
        spec: &ObjectSpec,
        token: &SecretString,
        writes: &[ProviderWrite],
        chunk: &[usize],
    ) -> Result<Outcomes, ProviderError> {
        let proof = self.create_proof(spec, token).await?;
        let map = self.mappings.fields(spec);
        let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut creates: Vec<Create> = Vec::new();
        for i in chunk {
            if let Some(ProviderWrite::Create { fields, idempotency_key, .. }) = writes.get(*i) {
                let key = key_value(idempotency_key);
                if !by_key.contains_key(&key) {
                    let (props, assocs) = objects::to_properties(spec, &map, fields);
                    creates.push(Create::new(spec, key.clone(), props, assocs, proof));
                }
                by_key.entry(key).or_default().push(*i);
            }
        }
        let all: Vec<&Create> = creates.iter().collect();
        let mut done = self.find_created(spec, token, proof, &all).await?;
        let missing: Vec<&Create> = creates.iter().filter(|c| !done.contains_key(&c.key)).collect();
        let mut taken: Vec<&Create> = Vec::new();
        if !missing.is_empty() {
            let inputs: Vec<Value> = missing.iter().map(|c| c.input()).collect();
            let url = format!("{}/crm/v3/objects/{}/batch/create", self.base, spec.path);
            let reply =
                self.post(Call::write("batch.create"), token, &url, &json!({ "inputs": inputs })).await?;
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
                            if e.is_taken() {
                                taken.extend(missing.iter().copied().filter(|c| c.key == key));
                            } else {
                                done.insert(key, Err(e.to_error()));
                            }
                        }
                    }
                }
                Err(e @ ProviderError::Permanent(_)) => {
                    for c in &missing {
                        done.insert(c.key.clone(), Err(e.clone()));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        // A key (or email) HubSpot reports as taken was created concurrently: read it.
        done.extend(self.find_created(spec, token, proof, &taken).await?);
        let mut out = Outcomes::new();
        for (key, indices) in &by_key {
            let r = done.remove(key).unwrap_or_else(|| {
                Err(ProviderError::transient("HubSpot reported no result for the create"))
            });
            for i in indices {
                out.push((*i, r.clone()));
            }
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
        let mut wanted: HashMap<usize, Wanted> = HashMap::new();
        for i in chunk {
            if let Some(ProviderWrite::Update { fields, .. }) = writes.get(*i)
                && !failed.contains_key(i)
            {
                match wanted_associations(spec, fields) {
                    Ok(w) if w.is_empty() => {}
                    Ok(w) => {
                        wanted.insert(*i, w);
                    }
                    Err(e) => {
                        failed.insert(*i, e);
                    }
                }
            }
        }
        let map = self.mappings.fields(spec);
        let inputs: Vec<Value> = chunk
            .iter()
            .filter(|i| !failed.contains_key(*i))
            .filter_map(|i| match writes.get(*i) {
                Some(ProviderWrite::Update { external_id, fields, .. }) => {
                    let (props, _) = objects::to_properties(spec, &map, fields);
                    Some(json!({ "id": spec.hub_id(external_id.as_str()), "properties": props, "objectWriteTraceId": i.to_string() }))
                }
                _ => None,
            })
            .collect();
        let mut done: HashMap<usize, Result<WriteAck, ProviderError>> = HashMap::new();
        if !inputs.is_empty() {
            let url = format!("{}/crm/v3/objects/{}/batch/update", self.base, spec.path);
            let sent: Vec<usize> = chunk.iter().copied().filter(|i| !failed.contains_key(i)).collect();
            let id_of = |i: usize| match writes.get(i) {
                Some(ProviderWrite::Update { external_id, .. }) => Some(spec.hub_id(external_id.as_str())),
                _ => None,
            };
            let reply = self
                .post(Call::idempotent_write("batch.update"), token, &url, &json!({ "inputs": inputs }))
                .await?;
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
                        done.insert(*i, Err(e.clone()));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let written: Vec<(usize, &str, &Wanted)> = chunk
            .iter()
            .filter(|i| matches!(done.get(*i), Some(Ok(_))))
            .filter_map(|i| match (writes.get(*i), wanted.get(i)) {
                (Some(ProviderWrite::Update { external_id, .. }), Some(w)) => {
                    Some((*i, spec.hub_id(external_id.as_str()), w))
                }
                _ => None,
            })
            .collect();
        for (i, e) in self.write_associations(spec, token, &written).await {
            done.insert(i, Err(e));
        }
        Ok(chunk
            .iter()
            .map(|i| {
                let r = failed.remove(i).map(Err).or_else(|| done.remove(i)).unwrap_or_else(|| {
                    Err(ProviderError::transient("HubSpot reported no result for the update"))
                });
                (*i, r)
            })
            .collect())
    }

    /// Brings the associations of updated records to what their writes want: per association type,
    /// reads what HubSpot holds, creates the missing pairs and archives the extra ones. Returns the
    /// writes whose association changes failed, with the error.
    async fn write_associations(
        &self,
        spec: &ObjectSpec,
        token: &SecretString,
        written: &[(usize, &str, &Wanted)],
    ) -> HashMap<usize, ProviderError> {
        let mut failed: HashMap<usize, ProviderError> = HashMap::new();
        for a in spec.writable {
            let users: Vec<(usize, &str, &BTreeSet<String>)> = written
                .iter()
                .filter_map(|(i, id, w)| w.iter().find(|(x, _)| x == a).map(|(_, ids)| (*i, *id, ids)))
                .collect();
            if users.is_empty() {
                continue;
            }
            let ids: Vec<String> = users
                .iter()
                .map(|(_, id, _)| (*id).to_owned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let held = match self.read_associations(spec, token, &ids, std::slice::from_ref(a)).await {
                Ok(mut read) => read.pop().map(|(_, by_id)| by_id).unwrap_or_default(),
                Err(e) => {
                    for (i, _, _) in &users {
                        failed.insert(*i, e.clone());
                    }
                    continue;
                }
            };
            let empty = BTreeSet::new();
            let changes: Vec<AssociationChange<'_>> = users
                .iter()
                .map(|(i, id, want)| {
                    let has = held.get(*id).unwrap_or(&empty);
                    AssociationChange {
                        index: *i,
                        from: id,
                        add: want.difference(has).cloned().collect(),
                        remove: has.difference(want).cloned().collect(),
                    }
                })
                .collect();
            let adds: Vec<(&AssociationChange<'_>, &String)> =
                changes.iter().flat_map(|c| c.add.iter().map(move |to| (c, to))).collect();
            let url = format!("{}/crm/v4/associations/{}/{}/batch/create", self.base, spec.path, a.to);
            for part in adds.chunks(ASSOCIATION_BATCH) {
                let inputs: Vec<Value> = part
                    .iter()
                    .map(|(c, to)| {
                        json!({
                            "from": { "id": c.from },
                            "to": { "id": to },
                            "types": [{ "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": a.type_id }],
                        })
                    })
                    .collect();
                let outcome = async {
                    let reply = self
                        .post(
                            Call::idempotent_write("associations.create"),
                            token,
                            &url,
                            &json!({ "inputs": inputs }),
                        )
                        .await?
                        .check()?;
                    let parsed: AssociationWriteReply = if reply.body.is_empty() {
                        AssociationWriteReply::default()
                    } else {
                        reply.json()?
                    };
                    Ok::<_, ProviderError>(parsed.errors)
                }
                .await;
                match outcome {
                    Ok(errors) => {
                        for e in errors {
                            let froms = e.context("fromObjectId");
                            let err = ProviderError::permanent(format!(
                                "HubSpot refused an association to {}: {} {}",
                                a.to,
                                e.category,
                                e.message.chars().take(200).collect::<String>()
                            ));
                            let hit: Vec<usize> = part
                                .iter()
                                .filter(|(c, _)| froms.is_empty() || froms.iter().any(|f| f == c.from))
                                .map(|(c, _)| c.index)
                                .collect();
                            for i in hit {
                                failed.insert(i, err.clone());
                            }
                        }
                    }
                    Err(e) => {
                        for (c, _) in part {
                            failed.insert(c.index, e.clone());
                        }
                    }
                }
            }
            let removes: Vec<&AssociationChange<'_>> =
                changes.iter().filter(|c| !c.remove.is_empty()).collect();
            let url = format!("{}/crm/v4/associations/{}/{}/batch/archive", self.base, spec.path, a.to);
            for part in removes.chunks(ASSOCIATION_BATCH) {
                let inputs: Vec<Value> = part
                    .iter()
                    .map(|c| {
                        let to: Vec<Value> = c.remove.iter().map(|id| json!({ "id": id })).collect();
                        json!({ "from": { "id": c.from }, "to": to })
                    })
                    .collect();
                let sent = self
                    .post(
                        Call::idempotent_write("associations.archive"),
                        token,
                        &url,
                        &json!({ "inputs": inputs }),
                    )
                    .await
                    .and_then(Reply::check);
                if let Err(e) = sent {
                    for c in part {
                        failed.insert(c.index, e.clone());
                    }
                }
            }
        }
        failed
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
            let inputs: Vec<Value> =
                send.iter().map(|(_, id)| json!({ "id": spec.hub_id(id.as_str()) })).collect();
            self.post(Call::idempotent_write("batch.archive"), token, &url, &json!({ "inputs": inputs }))
                .await?
                .check()?;
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
