//! Salesforce writes through sObject Collections (200 a request, a result per record): the
//! `SystemModstamp` read that stands in for preconditions, idempotent creates keyed by
//! `Syncbridge_Key__c` (provisioned on a stock org through the Tooling API and field-level
//! security) or, for Notes, by a key tag at the end of the Title.

use std::collections::{BTreeMap, HashMap};

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::objects::{sobject_of_id, sobjects};
use super::{KEY_FIELD, SalesforceClient, soql_string};
use crate::domain::{ExternalId, ObjectType, RemoteRecord};
use crate::ports::{ProviderError, ProviderWrite, WriteAck};

const COLLECTION_MAX: usize = 200;
/// The longest Note Title Salesforce stores.
const TITLE_MAX_CHARS: usize = 255;

/// True for objects that take no custom fields in a real org, so no `Syncbridge_Key__c` either.
fn takes_no_custom_fields(sobject: &str) -> bool {
    sobject.eq_ignore_ascii_case("Note")
}

/// A Note Title carrying its create's idempotency key as a short tag: one line, at most
/// [`TITLE_MAX_CHARS`], the same for the same title and key.
fn tagged_title(title: &str, key: &str) -> String {
    let tag = crate::domain::key_tag(key);
    let room = TITLE_MAX_CHARS - tag.len() - 1;
    let line: String = title.chars().map(|c| if c.is_control() { ' ' } else { c }).take(room).collect();
    let line = line.trim();
    if line.is_empty() { tag } else { format!("{line} {tag}") }
}

#[derive(Debug, Deserialize)]
struct SaveResult {
    id: Option<String>,
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<SaveError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SaveError {
    #[serde(default)]
    status_code: String,
    #[serde(default)]
    message: String,
}

impl SaveResult {
    fn error(&self) -> ProviderError {
        let Some(e) = self.errors.first() else {
            return ProviderError::permanent("Salesforce refused the record without saying why");
        };
        let text = format!("{}: {}", e.status_code, e.message.chars().take(200).collect::<String>());
        match e.status_code.as_str() {
            "ENTITY_IS_DELETED" | "INVALID_CROSS_REFERENCE_KEY" | "NOT_FOUND" => ProviderError::NotFound,
            "UNABLE_TO_LOCK_ROW" | "ALL_OR_NONE_OPERATION_ROLLED_BACK" | "SERVER_UNAVAILABLE" => {
                ProviderError::transient(text)
            }
            _ => ProviderError::permanent(text),
        }
    }

    fn is_duplicate_key(&self) -> bool {
        self.errors.iter().any(|e| e.status_code == "DUPLICATE_VALUE" && e.message.contains(KEY_FIELD))
    }
}

/// Whether creates of one sObject can be made idempotent by `Syncbridge_Key__c`.
#[derive(Debug, Clone)]
pub(super) enum KeyField {
    /// The field is a unique external id the API user can read and write.
    Ready,
    /// It is missing or unfit and the org refused to set it up: why, and what an admin can do.
    Refused(String),
}

/// What describe says of `Syncbridge_Key__c` on one sObject.
enum Described {
    Usable,
    /// Not listed: absent, or invisible to the API user (no field-level security).
    Absent,
    /// Listed, but not a unique external id the user can write.
    Unfit(String),
}

#[derive(Deserialize)]
struct Describe {
    #[serde(default)]
    fields: Vec<DescribedField>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribedField {
    name: String,
    #[serde(default)]
    unique: bool,
    #[serde(default)]
    external_id: bool,
    #[serde(default)]
    createable: bool,
}

/// The permanent error of a create that cannot be keyed: the cause and what an admin can do.
pub(super) fn key_field_refusal(sobject: &str, cause: &str) -> String {
    format!(
        "{sobject} records are not created: creates need a unique external-id field {KEY_FIELD} the \
         integration user can edit, to be idempotent, and it could not be set up ({cause}). An admin can grant \
         the integration user Customize Application and Manage Profiles and Permission Sets, or create on \
         {sobject} a unique external-id Text(255) field {KEY_FIELD} and give the integration user read and \
         edit access to it; then retry the push"
    )
}

type Slot = Option<Result<WriteAck, ProviderError>>;
/// A write that passed its precondition: its index, record id and mapped fields (none: a delete).
type Pending = (usize, String, Option<Map<String, Value>>);

/// Writes by kind, object type and sObject, each with its index in the batch.
type Groups<'a> = BTreeMap<(WriteKind, ObjectType, &'static str), Vec<(usize, &'a ProviderWrite)>>;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum WriteKind {
    Create,
    Update,
    Delete,
}

impl SalesforceClient {
    /// [`ProviderClient::write`](crate::ports::ProviderClient::write): groups by kind and sObject,
    /// then [`COLLECTION_MAX`] a request.
    pub(super) async fn write_all(
        &self,
        token: &SecretString,
        writes: &[ProviderWrite],
    ) -> Result<Vec<Result<WriteAck, ProviderError>>, ProviderError> {
        let mut slots: Vec<Slot> = (0..writes.len()).map(|_| None).collect();
        let mut groups: Groups<'_> = BTreeMap::new();
        for (i, w) in writes.iter().enumerate() {
            let (kind, object, sobject) = match w {
                ProviderWrite::Create { object, fields, .. } => {
                    let sobject = match (*object, fields.get("kind").and_then(Value::as_str)) {
                        (ObjectType::Activities, Some("event")) => Some("Event"),
                        (o, _) => sobjects(o).and_then(|s| s.first().copied()),
                    };
                    (WriteKind::Create, *object, sobject)
                }
                ProviderWrite::Update { object, external_id, .. } => {
                    (WriteKind::Update, *object, sobject_of_id(external_id.as_str()))
                }
                ProviderWrite::Delete { object, external_id, .. } => {
                    (WriteKind::Delete, *object, sobject_of_id(external_id.as_str()))
                }
            };
            let fits = sobject.is_some_and(|s| sobjects(object).is_some_and(|names| names.contains(&s)));
            match sobject.filter(|_| fits) {
                Some(s) => groups.entry((kind, object, s)).or_default().push((i, w)),
                None => {
                    slots[i] = Some(Err(ProviderError::permanent(format!(
                        "the Salesforce adapter cannot write this {object} record"
                    ))));
                }
            }
        }
        for ((kind, object, sobject), items) in &groups {
            for chunk in items.chunks(COLLECTION_MAX) {
                self.write_group(token, *kind, *object, sobject, chunk, &mut slots).await?;
            }
        }
        Ok(slots
            .into_iter()
            .map(|s| s.unwrap_or_else(|| Err(ProviderError::transient("no result for this write"))))
            .collect())
    }

    /// The current `SystemModstamp` and canonical fields of these records, by id.
    async fn read_by(
        &self,
        token: &SecretString,
        object: ObjectType,
        sobject: &str,
        field: &str,
        values: &[String],
    ) -> Result<HashMap<String, (Map<String, Value>, RemoteRecord)>, ProviderError> {
        let mut out = HashMap::new();
        if values.is_empty() {
            return Ok(out);
        }
        let mut fields = self.select_list(sobject)?;
        if !fields.iter().any(|f| f.eq_ignore_ascii_case(field)) {
            fields.push(field.to_owned());
        }
        let list = values.iter().map(|v| soql_string(v)).collect::<Vec<_>>().join(", ");
        let q = format!("SELECT {} FROM {sobject} WHERE {field} IN ({list})", fields.join(", "));
        let page = self.soql(token, &q).await?;
        for row in page.records {
            let remote = self.to_remote(object, sobject, &row)?;
            let key = row.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
            out.insert(key, (row, remote));
        }
        Ok(out)
    }

    /// Whether creates of `sobject` can be keyed by `Syncbridge_Key__c`, setting the field up the
    /// first time it is missing (see [`SalesforceClient::provision_key_field`]). The answer is
    /// cached per client and sObject (a client serves one job). A permanent refusal becomes
    /// [`KeyField::Refused`]; transient errors, rate limits and `Unauthorized` are returned and
    /// not cached, so a retry tries again.
    async fn key_field(&self, token: &SecretString, sobject: &str) -> Result<KeyField, ProviderError> {
        if let Some(known) = self.key_fields.lock().ok().and_then(|m| m.get(sobject).cloned()) {
            return Ok(known);
        }
        let state = match self.provision_key_field(token, sobject).await {
            Ok(()) => KeyField::Ready,
            Err(ProviderError::Permanent(cause)) => {
                KeyField::Refused(key_field_refusal(sobject, &cause.to_string()))
            }
            Err(ProviderError::NotFound) => {
                KeyField::Refused(key_field_refusal(sobject, "HTTP 404 NOT_FOUND"))
            }
            Err(e) => return Err(e),
        };
        if let Ok(mut m) = self.key_fields.lock() {
            m.insert(sobject.to_owned(), state.clone());
        }
        Ok(state)
    }

    /// `Syncbridge_Key__c` on `sobject` as describe shows it to the API user.
    /// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_describe.htm>
    async fn describe_key_field(
        &self,
        token: &SecretString,
        sobject: &str,
    ) -> Result<Described, ProviderError> {
        let path = format!("/sobjects/{sobject}/describe");
        let described: Describe = self.api(token, http::Method::GET, &path, &[], None, &[]).await?.json()?;
        let Some(f) = described.fields.iter().find(|f| f.name.eq_ignore_ascii_case(KEY_FIELD)) else {
            return Ok(Described::Absent);
        };
        Ok(if !(f.unique && f.external_id) {
            Described::Unfit(format!("{sobject}.{KEY_FIELD} exists but is not a unique external id"))
        } else if !f.createable {
            Described::Unfit(format!("{sobject}.{KEY_FIELD} is read-only for the integration user"))
        } else {
            Described::Usable
        })
    }

    /// Makes `Syncbridge_Key__c` a usable unique external id on `sobject`: describe (1 request,
    /// done when the field is there); otherwise create it through the Tooling API, find the API
    /// user's profile permission set, grant read and edit on the field there, and describe again
    /// to prove it usable (5 more requests). Every step is safe to repeat: an existing field
    /// answers `DUPLICATE_DEVELOPER_NAME`, an existing grant `DUPLICATE_VALUE`.
    async fn provision_key_field(&self, token: &SecretString, sobject: &str) -> Result<(), ProviderError> {
        match self.describe_key_field(token, sobject).await? {
            Described::Usable => return Ok(()),
            Described::Unfit(why) => return Err(ProviderError::permanent(why)),
            Described::Absent => {}
        }
        // Needs "Customize Application" (else 403 INSUFFICIENT_ACCESS). A field created this way
        // has no field-level security: no one sees it until a permission set grants it.
        // <https://developer.salesforce.com/docs/atlas.en-us.api_tooling.meta/api_tooling/tooling_api_objects_customfield.htm>
        let field = json!({
            "FullName": format!("{sobject}.{KEY_FIELD}"),
            "Metadata": {
                "label": "Syncbridge Key",
                "type": "Text",
                "length": 255,
                "externalId": true,
                "unique": true,
                // Keys differing in case are different pushes.
                "caseSensitive": true,
            },
        });
        match self
            .api(token, http::Method::POST, "/tooling/sobjects/CustomField", &[], Some(&field), &[])
            .await
        {
            Ok(_) => {}
            Err(ProviderError::Permanent(m)) if m.mentions("DUPLICATE_DEVELOPER_NAME") => {}
            Err(e) => return Err(e),
        }
        // The API user, from the instance's OpenID Connect userinfo endpoint.
        // <https://help.salesforce.com/s/articleView?id=sf.remoteaccess_using_userinfo_endpoint.htm>
        let info: Value =
            self.api(token, http::Method::GET, "/services/oauth2/userinfo", &[], None, &[]).await?.json()?;
        let user = info
            .get("user_id")
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::permanent("Salesforce userinfo named no user"))?;
        // The permission set the user's profile owns, by a semi-join on the user's assignments.
        // <https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_permissionsetassignment.htm>
        // <https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_comparisonoperators.htm>
        let q = format!(
            "SELECT Id FROM PermissionSet WHERE IsOwnedByProfile = true AND Id IN \
             (SELECT PermissionSetId FROM PermissionSetAssignment WHERE AssigneeId = {})",
            soql_string(user)
        );
        let page = self.soql(token, &q).await?;
        let profile_set =
            page.records.first().and_then(|r| r.get("Id")).and_then(Value::as_str).ok_or_else(|| {
                ProviderError::permanent("the integration user's profile permission set was not found")
            })?;
        // Field-level security: read and edit on the field for that permission set.
        // <https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_fieldpermissions.htm>
        let grant = json!({
            "ParentId": profile_set,
            "SobjectType": sobject,
            "Field": format!("{sobject}.{KEY_FIELD}"),
            "PermissionsRead": true,
            "PermissionsEdit": true,
        });
        match self.api(token, http::Method::POST, "/sobjects/FieldPermissions", &[], Some(&grant), &[]).await
        {
            Ok(_) => {}
            Err(ProviderError::Permanent(m)) if m.mentions("DUPLICATE_VALUE") => {}
            Err(e) => return Err(e),
        }
        match self.describe_key_field(token, sobject).await? {
            Described::Usable => Ok(()),
            Described::Unfit(why) => Err(ProviderError::permanent(why)),
            Described::Absent => Err(ProviderError::permanent(format!(
                "{sobject}.{KEY_FIELD} is still invisible to the integration user after granting it"
            ))),
        }
    }

    fn ack(remote: &RemoteRecord) -> WriteAck {
        WriteAck {
            external_id: remote.external_id.clone(),
            remote_modified_at: remote.remote_modified_at,
            etag: None,
            fields: Some(remote.fields.clone()),
        }
    }

    async fn write_group(
        &self,
        token: &SecretString,
        kind: WriteKind,
        object: ObjectType,
        sobject: &str,
        items: &[(usize, &ProviderWrite)],
        slots: &mut [Slot],
    ) -> Result<(), ProviderError> {
        match kind {
            WriteKind::Create => self.create_group(token, object, sobject, items, slots).await,
            WriteKind::Update | WriteKind::Delete => {
                self.change_group(token, kind, object, sobject, items, slots).await
            }
        }
    }

    async fn create_group(
        &self,
        token: &SecretString,
        object: ObjectType,
        sobject: &str,
        items: &[(usize, &ProviderWrite)],
        slots: &mut [Slot],
    ) -> Result<(), ProviderError> {
        // Each create's lookup value: its key, or for objects without custom fields its tagged Title.
        let by_title = takes_no_custom_fields(sobject);
        let lookup_field = if by_title { "Title" } else { KEY_FIELD };
        // Without a proof of idempotency nothing is created: each create fails permanently,
        // saying what an admin can do.
        if !by_title && let KeyField::Refused(why) = self.key_field(token, sobject).await? {
            for (i, _) in items {
                slots[*i] = Some(Err(ProviderError::permanent(why.clone())));
            }
            return Ok(());
        }
        let mut keyed: Vec<(usize, String, Map<String, Value>)> = Vec::new();
        for (i, w) in items {
            let ProviderWrite::Create { fields, idempotency_key, .. } = w else { continue };
            let key = idempotency_key.as_str();
            let mut rec = self.provider_fields(sobject, fields)?;
            let lookup = if by_title {
                let title = rec.get("Title").and_then(Value::as_str).unwrap_or_default();
                let tagged = tagged_title(title, key);
                rec.insert("Title".to_owned(), Value::String(tagged.clone()));
                tagged
            } else {
                rec.insert(KEY_FIELD.to_owned(), Value::String(key.to_owned()));
                key.to_owned()
            };
            rec.insert("attributes".to_owned(), json!({ "type": sobject }));
            keyed.push((*i, lookup, rec));
        }
        let keys: Vec<String> = keyed.iter().map(|(_, k, _)| k.clone()).collect();
        let existing = self.read_by(token, object, sobject, lookup_field, &keys).await?;
        let mut to_create = Vec::new();
        let mut records = Vec::new();
        for (i, key, rec) in &keyed {
            if let Some((_, remote)) = existing.get(key) {
                slots[*i] = Some(Ok(Self::ack(remote)));
                continue;
            }
            if to_create.iter().any(|(_, k): &(usize, String)| k == key) {
                continue;
            }
            records.push(Value::Object(rec.clone()));
            to_create.push((*i, key.clone()));
        }
        let mut reread = Vec::new();
        if !records.is_empty() {
            let body = json!({ "allOrNone": false, "records": records });
            let results: Vec<SaveResult> = self
                .api(token, http::Method::POST, "/composite/sobjects", &[], Some(&body), &[])
                .await?
                .json()?;
            if results.len() != to_create.len() {
                return Err(ProviderError::transient("Salesforce answered a different number of results"));
            }
            for ((i, key), r) in to_create.iter().zip(&results) {
                if r.success || r.is_duplicate_key() {
                    reread.push(key.clone());
                } else {
                    slots[*i] = Some(Err(r.error()));
                }
            }
        }
        let fresh = self.read_by(token, object, sobject, lookup_field, &reread).await?;
        for (i, key, _) in &keyed {
            if slots[*i].is_some() {
                continue;
            }
            slots[*i] = Some(match fresh.get(key).or_else(|| existing.get(key)) {
                Some((_, remote)) => Ok(Self::ack(remote)),
                None => Err(ProviderError::transient(
                    "the created record was not found by its key yet; retry the create",
                )),
            });
        }
        Ok(())
    }

    async fn change_group(
        &self,
        token: &SecretString,
        kind: WriteKind,
        object: ObjectType,
        sobject: &str,
        items: &[(usize, &ProviderWrite)],
        slots: &mut [Slot],
    ) -> Result<(), ProviderError> {
        let ids: Vec<String> = items
            .iter()
            .filter_map(|(_, w)| match w {
                ProviderWrite::Update { external_id, .. } | ProviderWrite::Delete { external_id, .. } => {
                    Some(external_id.as_str().to_owned())
                }
                _ => None,
            })
            .collect();
        let current = self.read_by(token, object, sobject, "Id", &ids).await?;
        let mut go: Vec<Pending> = Vec::new();
        for (i, w) in items {
            let (id, precondition, fields) = match w {
                ProviderWrite::Update { external_id, precondition, fields, .. } => {
                    (external_id.as_str(), precondition, Some(fields))
                }
                ProviderWrite::Delete { external_id, precondition, .. } => {
                    (external_id.as_str(), precondition, None)
                }
                ProviderWrite::Create { .. } => continue,
            };
            let Some((_, remote)) = current.get(id) else {
                slots[*i] = Some(match kind {
                    WriteKind::Delete => Ok(WriteAck {
                        external_id: ExternalId::parse(id.to_owned())
                            .map_err(|_| ProviderError::permanent("empty external id"))?,
                        remote_modified_at: None,
                        etag: None,
                        fields: None,
                    }),
                    _ => Err(ProviderError::NotFound),
                });
                continue;
            };
            if let (Some(limit), Some(stamp)) = (precondition.unmodified_since, remote.remote_modified_at)
                && stamp > limit
            {
                slots[*i] = Some(Err(ProviderError::Conflict));
                continue;
            }
            let mapped = match fields {
                Some(f) => Some(self.provider_fields(sobject, f)?),
                None => None,
            };
            go.push((*i, id.to_owned(), mapped));
        }
        if go.is_empty() {
            return Ok(());
        }
        let results: Vec<SaveResult> = if kind == WriteKind::Delete {
            let list = go.iter().map(|(_, id, _)| id.as_str()).collect::<Vec<_>>().join(",");
            let query = [("ids", list), ("allOrNone", "false".to_owned())];
            self.api(token, http::Method::DELETE, "/composite/sobjects", &query, None, &[]).await?.json()?
        } else {
            let records: Vec<Value> = go
                .iter()
                .map(|(_, id, f)| {
                    let mut rec = f.clone().unwrap_or_default();
                    rec.insert("attributes".to_owned(), json!({ "type": sobject }));
                    rec.insert("id".to_owned(), Value::String(id.clone()));
                    Value::Object(rec)
                })
                .collect();
            let body = json!({ "allOrNone": false, "records": records });
            self.api(token, http::Method::PATCH, "/composite/sobjects", &[], Some(&body), &[])
                .await?
                .json()?
        };
        if results.len() != go.len() {
            return Err(ProviderError::transient("Salesforce answered a different number of results"));
        }
        let mut written = Vec::new();
        for ((i, id, _), r) in go.iter().zip(&results) {
            if !r.success {
                let deleted_already = kind == WriteKind::Delete
                    && r.errors.first().is_some_and(|e| e.status_code == "ENTITY_IS_DELETED");
                if !deleted_already {
                    slots[*i] = Some(Err(r.error()));
                    continue;
                }
            }
            if kind == WriteKind::Delete {
                let external_id = ExternalId::parse(r.id.clone().unwrap_or_else(|| id.clone()))
                    .map_err(|_| ProviderError::permanent("empty external id"))?;
                slots[*i] =
                    Some(Ok(WriteAck { external_id, remote_modified_at: None, etag: None, fields: None }));
            } else {
                written.push(id.clone());
            }
        }
        let fresh = self.read_by(token, object, sobject, "Id", &written).await?;
        for (i, id, _) in &go {
            if slots[*i].is_none() {
                slots[*i] = Some(match fresh.get(id) {
                    Some((_, remote)) => Ok(Self::ack(remote)),
                    None => Err(ProviderError::NotFound),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_titles_carry_a_stable_key_tag_on_one_line_within_salesforce_limits() {
        let a = tagged_title("Summary\nof the call", "push:01J");
        assert_eq!(a, tagged_title("Summary\nof the call", "push:01J"), "stable across retries");
        assert!(a.starts_with("Summary of the call [sb:") && a.ends_with(']'), "{a}");
        assert_ne!(a, tagged_title("Summary\nof the call", "push:01K"), "another key, another tag");
        let long = tagged_title(&"é".repeat(400), "k");
        assert_eq!(long.chars().count(), TITLE_MAX_CHARS);
        assert!(tagged_title("  ", "k").starts_with("[sb:"));
    }

    #[test]
    fn record_errors_are_classified() {
        let r = |code: &str| SaveResult {
            id: None,
            success: false,
            errors: vec![SaveError { status_code: code.into(), message: "m".into() }],
        };
        assert!(matches!(r("ENTITY_IS_DELETED").error(), ProviderError::NotFound));
        assert!(matches!(r("UNABLE_TO_LOCK_ROW").error(), ProviderError::Transient(_)));
        assert!(matches!(r("REQUIRED_FIELD_MISSING").error(), ProviderError::Permanent(_)));
    }
}
