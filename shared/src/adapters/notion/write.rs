//! Writes. Notion has no batch endpoint, so batching means fewer requests per change:
//!
//! - **Updates**: the writes of one page in a call go out as one `PATCH /v1/pages/{id}` (values
//!   by the data source's property types), after a `GET` that checks the precondition: a page
//!   edited after `unmodified_since`, or trashed, is `Conflict` / `NotFound` and nothing is sent.
//!   Notion's minute-precision stamp cannot tell an edit in the same minute as our last read;
//!   that edit is caught by the next pull's merge instead.
//! - **Creates** (deals, contacts): Notion has no unique property, so the adapter adds a
//!   rich-text property `Syncbridge key` to the data source (`PATCH /v1/data_sources/{id}`, once;
//!   kept in `provider_setup`), queries for the key before creating, and sets it on the new page.
//!   A retry after a lost answer finds the page instead of making a second one. An integration
//!   that may not change the schema gets a permanent error saying what to add.
//! - **Activities** (canonical notes: `body`, and the deal or contact in `deal_ids` /
//!   `contact_ids`): paragraphs appended to that page (`PATCH /v1/blocks/{id}/children`, at most
//!   2000 characters each), the last ending with the key's tag; before appending, the page's
//!   blocks are listed and a paragraph ending with the tag proves an earlier attempt. Several
//!   notes for one page go out in one append.
//! - **Deletes** move the page to the trash (`in_trash: true`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use super::properties::{MAX_TEXT, rich_text, to_canonical, to_notion};
use super::{Call, KEY_PROPERTY, NotionClient, setup_key};
use crate::domain::record::Fields;
use crate::domain::{ExternalId, IdempotencyKey, ObjectType, key_tag};
use crate::ports::{Precondition, ProviderError, ProviderWrite, WriteAck};

/// Blocks per append request (Notion's limit for one request's children array).
const MAX_BLOCKS: usize = 100;

fn stamp(page: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(page.get("last_edited_time")?.as_str()?).ok().map(|t| t.to_utc())
}

fn page_id(page: &Value) -> Result<ExternalId, ProviderError> {
    let id = page
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::permanent("Notion answered a page without an id"))?;
    ExternalId::parse(id).map_err(|e| ProviderError::permanent(format!("Notion page id: {e}")))
}

/// A note's paragraphs: the body in pieces of at most 2000 characters, the tag at the end.
fn note_blocks(body: &str, tag: &str) -> Result<Vec<Value>, ProviderError> {
    let text = format!("{} {tag}", body.trim_end());
    let chars: Vec<char> = text.chars().collect();
    let blocks: Vec<Value> = chars
        .chunks(MAX_TEXT)
        .map(|c| {
            json!({ "object": "block", "type": "paragraph", "paragraph": {
                "rich_text": [{ "type": "text", "text": { "content": c.iter().collect::<String>() } }],
            } })
        })
        .collect();
    if blocks.len() > MAX_BLOCKS {
        return Err(ProviderError::permanent("a note longer than 100 paragraphs of 2000 characters"));
    }
    Ok(blocks)
}

fn block_text(block: &Value) -> String {
    let kind = block.get("type").and_then(Value::as_str).unwrap_or_default();
    block
        .pointer(&format!("/{kind}/rich_text"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|t| t.get("plain_text").and_then(Value::as_str)).collect())
        .unwrap_or_default()
}

impl NotionClient {
    /// [`ProviderClient::write`](crate::ports::ProviderClient::write): one result per write, in
    /// order. After a rate limit or a rejected token the rest get the same error unsent.
    pub(super) async fn write_all(
        &self,
        token: &SecretString,
        writes: &[ProviderWrite],
    ) -> Result<Vec<Result<WriteAck, ProviderError>>, ProviderError> {
        let mut out: Vec<Option<Result<WriteAck, ProviderError>>> = vec![None; writes.len()];
        // Updates grouped by page, notes by the page they go on: one request each.
        let mut updates: BTreeMap<(ObjectType, String), Vec<usize>> = BTreeMap::new();
        let mut notes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, w) in writes.iter().enumerate() {
            match w {
                ProviderWrite::Update { object, external_id, .. } => {
                    updates.entry((*object, external_id.as_str().to_owned())).or_default().push(i);
                }
                ProviderWrite::Create { object: ObjectType::Notes, fields, .. } => {
                    match note_target(fields) {
                        Some(page) => notes.entry(page).or_default().push(i),
                        None => {
                            out[i] = Some(Err(ProviderError::permanent(
                                "a Notion activity needs the deal or contact it is about",
                            )))
                        }
                    }
                }
                _ => {}
            }
        }
        let mut stop: Option<ProviderError> = None;
        let stops = |r: &Result<WriteAck, ProviderError>| {
            matches!(r, Err(ProviderError::Unauthorized | ProviderError::RateLimited { .. }))
                .then(|| r.clone().err())
                .flatten()
        };
        for ((object, id), idx) in updates {
            if let Some(e) = &stop {
                idx.iter().for_each(|i| out[*i] = Some(Err(e.clone())));
                continue;
            }
            let result =
                self.update(token, object, &id, &idx.iter().map(|i| &writes[*i]).collect::<Vec<_>>()).await;
            stop = stops(&result);
            idx.iter().for_each(|i| out[*i] = Some(result.clone()));
        }
        for (page, idx) in notes {
            if let Some(e) = &stop {
                idx.iter().for_each(|i| out[*i] = Some(Err(e.clone())));
                continue;
            }
            let results =
                self.append_notes(token, &page, &idx.iter().map(|i| &writes[*i]).collect::<Vec<_>>()).await;
            for (i, r) in idx.iter().zip(results) {
                stop = stop.or_else(|| stops(&r));
                out[*i] = Some(r);
            }
        }
        for (i, w) in writes.iter().enumerate() {
            if out[i].is_some() {
                continue;
            }
            if let Some(e) = &stop {
                out[i] = Some(Err(e.clone()));
                continue;
            }
            let result = match w {
                ProviderWrite::Create { object, fields, idempotency_key } => {
                    self.create(token, *object, fields, idempotency_key).await
                }
                ProviderWrite::Delete { object, external_id, precondition } => {
                    self.trash(token, *object, external_id, precondition).await
                }
                ProviderWrite::Update { .. } => Err(ProviderError::permanent("an update was not planned")),
            };
            stop = stops(&result);
            out[i] = Some(result);
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ProviderError::permanent("a write was not sent"))))
            .collect())
    }

    async fn get_page(&self, token: &SecretString, id: &str) -> Result<Value, ProviderError> {
        let path = format!("/pages/{id}");
        let reply =
            self.send(Call::read("pages.retrieve"), || self.request(http::Method::GET, &path, token)).await?;
        reply.check()?.json()
    }

    /// Reads the page and checks `precondition` against its `last_edited_time` and trash.
    async fn checked_page(
        &self,
        token: &SecretString,
        id: &str,
        precondition: Option<&Precondition>,
    ) -> Result<Value, ProviderError> {
        let page = self.get_page(token, id).await?;
        if page.get("in_trash").and_then(Value::as_bool).unwrap_or(false) {
            return Err(ProviderError::NotFound);
        }
        let since = precondition.and_then(|p| p.unmodified_since);
        if let (Some(since), Some(at)) = (since, stamp(&page))
            && at > since
        {
            return Err(ProviderError::Conflict);
        }
        Ok(page)
    }

    /// The properties for `fields` by the data source's schema.
    async fn properties(
        &self,
        token: &SecretString,
        object: ObjectType,
        fields: &Fields,
    ) -> Result<Map<String, Value>, ProviderError> {
        let map = self.field_map(object)?;
        let (_, schema) = self.schema(token, object).await?;
        let mut props = Map::new();
        for (canonical, value) in fields {
            let Some(property) = map.property_of(canonical) else {
                return Err(ProviderError::permanent(format!(
                    "no Notion property is mapped to `{canonical}` of {object}"
                )));
            };
            let Some(kind) = schema.get(property) else {
                return Err(ProviderError::permanent(format!(
                    "the Notion {object} database has no property `{property}`"
                )));
            };
            props.insert(property.to_owned(), to_notion(kind, value, property)?);
        }
        Ok(props)
    }

    fn ack(&self, object: ObjectType, page: &Value) -> Result<WriteAck, ProviderError> {
        let map = self.field_map(object)?;
        let fields: Fields = map
            .pairs()
            .filter_map(|(p, c)| Some((c.to_owned(), to_canonical(page.get("properties")?.get(p)?)?)))
            .collect();
        Ok(WriteAck {
            external_id: page_id(page)?,
            remote_modified_at: stamp(page),
            etag: None,
            fields: Some(fields),
        })
    }

    /// One `PATCH` with every update of this page (later writes win a field both set); the
    /// precondition is the earliest of theirs.
    async fn update(
        &self,
        token: &SecretString,
        object: ObjectType,
        id: &str,
        writes: &[&ProviderWrite],
    ) -> Result<WriteAck, ProviderError> {
        let mut fields = Fields::new();
        let mut precondition: Option<Precondition> = None;
        for w in writes {
            if let ProviderWrite::Update { fields: f, precondition: p, .. } = w {
                fields.extend(f.iter().map(|(k, v)| (k.clone(), v.clone())));
                let earlier = match (&precondition, p.unmodified_since) {
                    (Some(q), Some(at)) => q.unmodified_since.is_none_or(|q| at < q),
                    (None, _) => true,
                    _ => false,
                };
                if earlier {
                    precondition = Some(p.clone());
                }
            }
        }
        self.checked_page(token, id, precondition.as_ref()).await?;
        let props = self.properties(token, object, &fields).await?;
        let page = self.patch_page(token, id, &json!({ "properties": props })).await?;
        self.ack(object, &page)
    }

    /// `PATCH /v1/pages/{id}`. Setting the same values (or the trash) again changes nothing, so it
    /// is repeated in place after a transient failure.
    async fn patch_page(&self, token: &SecretString, id: &str, body: &Value) -> Result<Value, ProviderError> {
        let path = format!("/pages/{id}");
        let reply = self
            .send(Call::idempotent_write("pages.update"), || {
                self.request(http::Method::PATCH, &path, token).json(body)
            })
            .await?;
        reply.check()?.json()
    }

    async fn trash(
        &self,
        token: &SecretString,
        object: ObjectType,
        id: &ExternalId,
        precondition: &Precondition,
    ) -> Result<WriteAck, ProviderError> {
        if object == ObjectType::Notes {
            return Err(ProviderError::permanent(
                "Notion activities are blocks and are not deleted by Syncbridge",
            ));
        }
        self.checked_page(token, id.as_str(), Some(precondition)).await?;
        let page = self.patch_page(token, id.as_str(), &json!({ "in_trash": true })).await?;
        Ok(WriteAck {
            external_id: page_id(&page)?,
            remote_modified_at: stamp(&page),
            etag: None,
            fields: None,
        })
    }

    /// Makes sure the data source has the key property (adding it once), per `provider_setup`.
    async fn ensure_key_property(
        &self,
        token: &SecretString,
        object: ObjectType,
    ) -> Result<String, ProviderError> {
        let proof = setup_key(object, "create_proof");
        let (ds, schema) = self.schema(token, object).await?;
        let known = self.setup.lock().map(|s| s.get(&proof).is_some()).unwrap_or(false);
        if known || schema.get(KEY_PROPERTY).is_some_and(|k| k == "rich_text") {
            self.remember(proof, "key_property".into());
            return Ok(ds);
        }
        let path = format!("/data_sources/{ds}");
        let body = json!({ "properties": { KEY_PROPERTY: { "rich_text": {} } } });
        let reply = self
            .send(Call::idempotent_write("data_sources.update"), || {
                self.request(http::Method::PATCH, &path, token).json(&body)
            })
            .await?;
        if let Some(e) = reply.error()
            && !e.is_retryable()
            && !matches!(e, ProviderError::Unauthorized)
        {
            return Err(ProviderError::permanent(format!(
                "cannot create {object} idempotently: the integration could not add the `{KEY_PROPERTY}` \
                 property ({e}); give it edit access to the database, or add a text property \
                 `{KEY_PROPERTY}` to it, and retry"
            )));
        }
        reply.check()?;
        self.forget_schema(object);
        self.remember(proof, "key_property".into());
        Ok(ds)
    }

    /// The page created with `key`, live or trashed.
    async fn find_by_key(
        &self,
        token: &SecretString,
        ds: &str,
        key: &str,
    ) -> Result<Option<Value>, ProviderError> {
        let path = format!("/data_sources/{ds}/query");
        for trash in [false, true] {
            let body = json!({
                "filter": { "property": KEY_PROPERTY, "rich_text": { "equals": key } },
                "page_size": 1,
                "in_trash": trash,
            });
            let reply = self
                .send(Call::read("data_sources.query"), || {
                    self.request(http::Method::POST, &path, token).json(&body)
                })
                .await?;
            let found: Value = reply.check()?.json()?;
            if let Some(page) = found.pointer("/results/0") {
                return Ok(Some(page.clone()));
            }
        }
        Ok(None)
    }

    async fn create(
        &self,
        token: &SecretString,
        object: ObjectType,
        fields: &Fields,
        key: &IdempotencyKey,
    ) -> Result<WriteAck, ProviderError> {
        if !matches!(object, ObjectType::Deals | ObjectType::Contacts) {
            return Err(ProviderError::permanent(format!("the Notion adapter does not create {object}")));
        }
        let ds = self.ensure_key_property(token, object).await?;
        if let Some(page) = self.find_by_key(token, &ds, key.as_str()).await? {
            return self.ack(object, &page);
        }
        let mut props = self.properties(token, object, fields).await?;
        props.insert(KEY_PROPERTY.to_owned(), json!({ "rich_text": rich_text(key.as_str(), KEY_PROPERTY)? }));
        let body =
            json!({ "parent": { "type": "data_source_id", "data_source_id": ds }, "properties": props });
        // Not repeated in place: a retry looks the key up first.
        let reply = self
            .send(Call::write("pages.create"), || {
                self.request(http::Method::POST, "/pages", token).json(&body)
            })
            .await?;
        let page: Value = reply.check()?.json()?;
        self.ack(object, &page)
    }

    /// Every block under `page` (its text and id), a listing of 100 a request.
    async fn blocks(&self, token: &SecretString, page: &str) -> Result<Vec<(String, String)>, ProviderError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/blocks/{page}/children?page_size=100");
            if let Some(c) = &cursor {
                path.push_str(&format!(
                    "&start_cursor={}",
                    url::form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()
                ));
            }
            let reply = self
                .send(Call::read("blocks.children.list"), || self.request(http::Method::GET, &path, token))
                .await?;
            let body: Value = reply.check()?.json()?;
            for b in body.get("results").and_then(Value::as_array).into_iter().flatten() {
                if let Some(id) = b.get("id").and_then(Value::as_str) {
                    out.push((id.to_owned(), block_text(b)));
                }
            }
            match body.get("next_cursor").and_then(Value::as_str) {
                Some(c) if body.get("has_more").and_then(Value::as_bool).unwrap_or(false) => {
                    cursor = Some(c.to_owned())
                }
                _ => return Ok(out),
            }
        }
    }

    /// Appends the notes for one page that are not there yet, in one request (or a few, at 100
    /// blocks each); one result per note.
    async fn append_notes(
        &self,
        token: &SecretString,
        page: &str,
        writes: &[&ProviderWrite],
    ) -> Vec<Result<WriteAck, ProviderError>> {
        let existing = match self.checked_page(token, page, None).await {
            Ok(_) => self.blocks(token, page).await,
            Err(e) => Err(e),
        };
        let existing = match existing {
            Ok(b) => b,
            Err(e) => return writes.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut results: Vec<Option<Result<WriteAck, ProviderError>>> = vec![None; writes.len()];
        let mut pending: Vec<(usize, Vec<Value>)> = Vec::new();
        for (i, w) in writes.iter().enumerate() {
            let ProviderWrite::Create { fields, idempotency_key, .. } = w else { continue };
            let tag = key_tag(idempotency_key.as_str());
            if let Some((id, _)) = existing.iter().find(|(_, text)| text.trim_end().ends_with(&tag)) {
                results[i] = Some(note_ack(id));
                continue;
            }
            let body = fields.get("body").and_then(Value::as_str).unwrap_or_default();
            match note_blocks(body, &tag) {
                Ok(blocks) => pending.push((i, blocks)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        // Whole notes per request, at most 100 blocks each.
        let mut batch: Vec<(usize, Vec<Value>)> = Vec::new();
        let mut size = 0;
        let mut batches = Vec::new();
        for (i, blocks) in pending {
            if size + blocks.len() > MAX_BLOCKS && !batch.is_empty() {
                batches.push(std::mem::take(&mut batch));
                size = 0;
            }
            size += blocks.len();
            batch.push((i, blocks));
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        for batch in batches {
            let children: Vec<Value> = batch.iter().flat_map(|(_, b)| b.iter().cloned()).collect();
            let path = format!("/blocks/{page}/children");
            let body = json!({ "children": children });
            let reply = self
                .send(Call::write("blocks.children.append"), || {
                    self.request(http::Method::PATCH, &path, token).json(&body)
                })
                .await;
            let appended: Result<Vec<String>, ProviderError> =
                reply.and_then(|r| r.check()).and_then(|r| r.json::<Value>()).map(|v| {
                    v.get("results")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|b| b.get("id").and_then(Value::as_str).map(str::to_owned))
                        .collect()
                });
            let mut at = 0;
            for (i, blocks) in &batch {
                results[*i] = Some(match &appended {
                    Ok(ids) => ids.get(at).map(|id| note_ack(id)).unwrap_or_else(|| {
                        Err(ProviderError::transient("Notion appended fewer blocks than sent"))
                    }),
                    Err(e) => Err(e.clone()),
                });
                at += blocks.len();
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ProviderError::permanent("a note was not sent"))))
            .collect()
    }
}

fn note_ack(block: &str) -> Result<WriteAck, ProviderError> {
    let external_id =
        ExternalId::parse(block).map_err(|e| ProviderError::permanent(format!("Notion block id: {e}")))?;
    Ok(WriteAck { external_id, remote_modified_at: None, etag: None, fields: None })
}

/// The page a note goes on: its deal, else its contact.
fn note_target(fields: &Fields) -> Option<String> {
    ["deal_ids", "contact_ids"].iter().find_map(|k| {
        let v = fields.get(*k)?;
        v.as_array().and_then(|a| a.first()).and_then(Value::as_str).or_else(|| v.as_str()).map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_cut_into_paragraphs_and_ends_with_its_tag() {
        let tag = key_tag("k1");
        let blocks = note_blocks(&"a".repeat(4100), &tag).unwrap();
        assert_eq!(blocks.len(), 3);
        let last = block_text(
            &json!({ "type": "paragraph", "paragraph": { "rich_text": [{ "plain_text": blocks[2]["paragraph"]["rich_text"][0]["text"]["content"] }] } }),
        );
        assert!(last.ends_with(&tag), "{last}");
        assert!(note_blocks(&"a".repeat(MAX_TEXT * MAX_BLOCKS), &tag).is_err());
    }

    #[test]
    fn a_note_goes_on_its_deal_else_its_contact() {
        let f: Fields =
            [("contact_ids".to_owned(), json!(["c1"])), ("deal_ids".to_owned(), json!(["d1"]))].into();
        assert_eq!(note_target(&f).as_deref(), Some("d1"));
        let f: Fields = [("contact_ids".to_owned(), json!(["c1"]))].into();
        assert_eq!(note_target(&f).as_deref(), Some("c1"));
        assert_eq!(note_target(&Fields::new()), None);
    }
}
