//! `PushStore` and `ConflictStore` on the main table, in the tenant's partition: push items at
//! `PUSH#{push_id}`, conflicts at `CONFLICT#{conflict_id}`. The item itself is a JSON document
//! (`doc`); `connection_id`, `status` and `version` are top-level attributes for conditions and
//! filters, and `version` is authoritative. Finished push items carry the TTL attribute
//! `expires_at` (30 days after they finished, or after a pending item expired).
//!
//! Push items are listed through the sparse GSI [`PUSH_QUEUE_INDEX`]: partition `pk` (the tenant),
//! sort key `push_order` = [`PushItem::queue_order`] (status group, urgency, creation time, id), so
//! DynamoDB returns a tenant's items in queue order across pages: a status is a `begins_with` key
//! condition, highest priority first then oldest first within it. The connection and expiry
//! (`decide_by`, epoch milliseconds of `expires_at`) are filter expressions. The worker's read of its
//! connection's approved items is therefore bounded by the tenant's approved items, which exist
//! only between an approval and the next sync of their connection (longer for a paused one).

use async_trait::async_trait;
use chrono::Duration;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::item::{self, Item};
use super::{DynamoStore, PUSH_QUEUE_INDEX, Query, decode_token, encode_token, sdk_error};
use crate::domain::push::queue_prefix;
use crate::domain::{ConflictItem, ConflictStatus, PushItem, PushStatus, TenantId};
use crate::ports::{ConflictQuery, ConflictStore, Page, PushQuery, PushStore, StoreError};

/// How long finished push items stay before DynamoDB's TTL removes them.
const FINISHED_TTL_DAYS: i64 = 30;

fn push_sk(push_id: &str) -> String {
    format!("PUSH#{push_id}")
}

fn conflict_sk(conflict_id: &str) -> String {
    format!("CONFLICT#{conflict_id}")
}

fn status_name(v: &impl Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn doc_from_item<T: DeserializeOwned>(found: &Item, kind: &'static str) -> Result<(T, u64), StoreError> {
    let r = item::Reader::new(found, kind);
    let doc: T = r.json("doc")?;
    Ok((doc, r.n("version")?))
}

fn push_item(p: &PushItem, version: u64) -> Item {
    let mut it = item::key(item::tenant_pk(&p.tenant_id), push_sk(&p.push_id));
    it.insert("connection_id".into(), item::s(p.connection_id.as_str()));
    it.insert("status".into(), item::s(p.status.as_str()));
    it.insert("push_order".into(), item::s(p.queue_order()));
    it.insert("decide_by".into(), item::n(p.expires_at.timestamp_millis()));
    it.insert("version".into(), item::n(version));
    it.insert("doc".into(), item::json(p));
    let finished = match p.status {
        PushStatus::Pending => Some(p.expires_at),
        PushStatus::Approved => None,
        _ => Some(p.completed_at.or(p.decided_at).unwrap_or(p.created_at)),
    };
    if let Some(at) = finished {
        it.insert("expires_at".into(), item::epoch(at + Duration::days(FINISHED_TTL_DAYS)));
    }
    it
}

fn conflict_item(c: &ConflictItem, version: u64) -> Item {
    let mut it = item::key(item::tenant_pk(&c.tenant_id), conflict_sk(&c.conflict_id));
    it.insert("connection_id".into(), item::s(c.connection_id.as_str()));
    it.insert("status".into(), item::s(status_name(&c.status)));
    it.insert("field".into(), item::s(c.field.as_str()));
    it.insert("local_json".into(), item::json(&c.local));
    it.insert("remote_json".into(), item::json(&c.remote));
    it.insert("version".into(), item::n(version));
    it.insert("doc".into(), item::json(c));
    it
}

impl DynamoStore {
    async fn put_versioned(&self, it: Item, version: u64) -> Result<u64, StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(it))
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", item::n(version))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(version + 1)
    }

    async fn query_docs<T: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        prefix: &str,
        filters: &[(&str, String)],
        limit: usize,
        page_token: Option<&str>,
        kind: &'static str,
    ) -> Result<Page<(T, u64)>, StoreError> {
        let pk = item::tenant_pk(tenant);
        let start = page_token.map(|t| decode_token(t, ("pk", &pk), Some(prefix))).transpose()?;
        let mut q = Query::new(&self.table, "pk = :pk AND begins_with(sk, :prefix)")
            .value(":pk", item::s(pk.clone()))
            .value(":prefix", item::s(prefix));
        for (i, (attribute, value)) in filters.iter().enumerate() {
            q = q
                .name(&format!("#f{i}"), attribute)
                .value(&format!(":f{i}"), item::s(value.clone()))
                .filter(&format!("#f{i} = :f{i}"));
        }
        let (items, next) = self.query_page(&q, Some(limit.max(1)), start).await?;
        Ok(Page {
            items: items.iter().map(|i| doc_from_item(i, kind)).collect::<Result<_, _>>()?,
            next: next.as_ref().map(encode_token).transpose()?,
        })
    }
}

#[async_trait]
impl PushStore for DynamoStore {
    async fn create(&self, p: &PushItem) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(push_item(p, 1)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(sdk_error);
        match result {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn get(&self, tenant: &TenantId, push_id: &str) -> Result<Option<PushItem>, StoreError> {
        let found = self.get_item(&self.table, item::key(item::tenant_pk(tenant), push_sk(push_id))).await?;
        found
            .map(|i| {
                doc_from_item::<PushItem>(&i, "push item").map(|(mut p, v)| {
                    p.version = v;
                    p
                })
            })
            .transpose()
    }

    async fn list(&self, tenant: &TenantId, query: &PushQuery) -> Result<Page<PushItem>, StoreError> {
        let pk = item::tenant_pk(tenant);
        let start =
            query.page_token.as_deref().map(|t| decode_token(t, ("pk", &pk), Some("PUSH#"))).transpose()?;
        let mut q = match query.status {
            Some(status) => Query::new(&self.table, "pk = :pk AND begins_with(push_order, :group)")
                .value(":group", item::s(queue_prefix(status))),
            None => Query::new(&self.table, "pk = :pk"),
        }
        .index(PUSH_QUEUE_INDEX)
        .value(":pk", item::s(pk.clone()));
        if let Some(c) = &query.connection {
            q = q.filter("connection_id = :conn").value(":conn", item::s(c.as_str()));
        }
        if let (Some(status), Some(at)) = (query.status, query.as_of)
            && status.stored() == PushStatus::Pending
        {
            let clause = if status == PushStatus::Pending { "decide_by > :at" } else { "decide_by <= :at" };
            q = q.filter(clause).value(":at", item::n(at.timestamp_millis()));
        }
        let (items, next) = self.query_limited(&q, query.limit, start, &["pk", "sk", "push_order"]).await?;
        Ok(Page {
            items: items
                .iter()
                .map(|i| {
                    doc_from_item::<PushItem>(i, "push item").map(|(mut p, v)| {
                        p.version = v;
                        p
                    })
                })
                .collect::<Result<_, _>>()?,
            next: next.as_ref().map(encode_token).transpose()?,
        })
    }

    async fn save(&self, p: &PushItem) -> Result<u64, StoreError> {
        self.put_versioned(push_item(p, p.version + 1), p.version).await
    }
}

#[async_trait]
impl ConflictStore for DynamoStore {
    async fn detected(&self, c: &ConflictItem) -> Result<bool, StoreError> {
        // Replaces an open item, or a resolved one whose values moved on; a new item starts at 1.
        let existing = ConflictStore::get(self, &c.tenant_id, &c.conflict_id).await?;
        let version = match &existing {
            Some(old)
                if old.status == ConflictStatus::Resolved
                    && old.local == c.local
                    && old.remote == c.remote =>
            {
                return Ok(false);
            }
            Some(old)
                if old.status == ConflictStatus::Open && old.local == c.local && old.remote == c.remote =>
            {
                return Ok(false);
            }
            Some(old) => old.version,
            None => 0,
        };
        let it = conflict_item(&ConflictItem { version: version + 1, ..c.clone() }, version + 1);
        let request = self.client.put_item().table_name(&self.table).set_item(Some(it));
        let request = if existing.is_some() {
            request
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":v", item::n(version))
        } else {
            request.condition_expression("attribute_not_exists(pk)")
        };
        request.send().await.map_err(sdk_error)?;
        Ok(true)
    }

    async fn get(&self, tenant: &TenantId, conflict_id: &str) -> Result<Option<ConflictItem>, StoreError> {
        let found =
            self.get_item(&self.table, item::key(item::tenant_pk(tenant), conflict_sk(conflict_id))).await?;
        found
            .map(|i| {
                doc_from_item::<ConflictItem>(&i, "conflict").map(|(mut c, v)| {
                    c.version = v;
                    c
                })
            })
            .transpose()
    }

    async fn list(&self, tenant: &TenantId, query: &ConflictQuery) -> Result<Page<ConflictItem>, StoreError> {
        let mut filters = Vec::new();
        if let Some(c) = &query.connection {
            filters.push(("connection_id", c.to_string()));
        }
        if let Some(s) = query.status {
            filters.push(("status", status_name(&s)));
        }
        if let Some(f) = &query.field {
            filters.push(("field", f.clone()));
        }
        let page = self
            .query_docs::<ConflictItem>(
                tenant,
                "CONFLICT#",
                &filters,
                query.limit,
                query.page_token.as_deref(),
                "conflict",
            )
            .await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|(mut c, v)| {
                    c.version = v;
                    c
                })
                .collect(),
            next: page.next,
        })
    }

    async fn save(&self, c: &ConflictItem) -> Result<u64, StoreError> {
        self.put_versioned(conflict_item(c, c.version + 1), c.version).await
    }
}
