//! `AuditLog` on the audit table: one `PutItem` per entry (never an update), queries by tenant or by
//! connection or record (GSIs), filtered by operation and outcome, newest first.

use async_trait::async_trait;
use futures::{StreamExt, stream};

use super::item;
use super::{
    AUDIT_CONNECTION_INDEX, AUDIT_RECORD_INDEX, CONCURRENCY, DynamoStore, Query, decode_token, encode_token,
    sdk_error,
};
use crate::domain::{AuditEntry, TenantId};
use crate::ports::{AuditLog, AuditQuery, Page, StoreError};

impl DynamoStore {
    async fn append_one(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.audit_table)
            .set_item(Some(item::audit_to_item(entry)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(sdk_error);
        match result {
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl AuditLog for DynamoStore {
    /// Writes entries concurrently. Entries are keyed by time and ULID, so an entry already present
    /// is this same entry appended again (a retry) and is left as it is; the first other failure is
    /// returned after every write has been tried.
    async fn append(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let writes: Vec<_> = entries.iter().map(|e| self.append_one(e)).collect();
        let results: Vec<Result<(), StoreError>> =
            stream::iter(writes).buffer_unordered(CONCURRENCY).collect().await;
        results.into_iter().collect()
    }

    /// Time bounds are inclusive and compared at millisecond precision (the sort key's). The
    /// partition is the narrowest the filters allow: the record index, else the connection index,
    /// else the tenant; the remaining filters (connection when a record is given, operations,
    /// outcomes) are filter expressions (see [`DynamoStore::query_limited`] for how a filtered
    /// page is read).
    async fn query(&self, tenant: &TenantId, query: &AuditQuery) -> Result<Page<AuditEntry>, StoreError> {
        if let (Some(from), Some(to)) = (query.from, query.to)
            && from > to
        {
            return Ok(Page { items: Vec::new(), next: None });
        }
        let tenant_pk = item::tenant_pk(tenant);
        let (attribute, partition, index) = match (&query.record, &query.connection) {
            (Some(r), _) => ("rec_pk", item::audit_record_pk(tenant, r), Some(AUDIT_RECORD_INDEX)),
            (None, Some(c)) => ("conn_pk", item::connection_pk(tenant, c), Some(AUDIT_CONNECTION_INDEX)),
            (None, None) => ("pk", tenant_pk.clone(), None),
        };
        let start = match query.page_token.as_deref() {
            Some(t) => {
                let key = decode_token(t, (attribute, &partition), None)?;
                if key.get("pk").and_then(|v| v.as_s().ok()) != Some(&tenant_pk) {
                    return Err(StoreError::InvalidPageToken);
                }
                Some(key)
            }
            None => None,
        };
        let lower = query.from.map(item::audit_time);
        let upper = query.to.map(|t| format!("{}#~", item::audit_time(t)));
        let range = match (&lower, &upper) {
            (Some(_), Some(_)) => " AND sk BETWEEN :lo AND :hi",
            (Some(_), None) => " AND sk >= :lo",
            (None, Some(_)) => " AND sk <= :hi",
            (None, None) => "",
        };
        let mut q = Query::new(&self.audit_table, format!("#p = :p{range}"))
            .name("#p", attribute)
            .value(":p", item::s(partition.clone()))
            .backward();
        if let Some(index) = index {
            q = q.index(index);
        }
        if let Some(lo) = lower {
            q = q.value(":lo", item::s(lo));
        }
        if let Some(hi) = upper {
            q = q.value(":hi", item::s(hi));
        }
        if let (Some(_), Some(c)) = (&query.record, &query.connection) {
            q = q.filter("connection_id = :conn").value(":conn", item::s(c.as_str()));
        }
        if !query.operations.is_empty() {
            let names: Vec<String> = (0..query.operations.len()).map(|i| format!(":op{i}")).collect();
            q = q.name("#op", "operation").filter(&format!("#op IN ({})", names.join(", ")));
            for (name, op) in names.iter().zip(&query.operations) {
                q = q.value(name, item::s(op.as_str()));
            }
        }
        if !query.outcomes.is_empty() {
            let names: Vec<String> = (0..query.outcomes.len()).map(|i| format!(":oc{i}")).collect();
            q = q.name("#oc", "outcome").filter(&format!("#oc IN ({})", names.join(", ")));
            for (name, outcome) in names.iter().zip(&query.outcomes) {
                q = q.value(name, item::s(outcome.as_str()));
            }
        }
        let (items, next) = self.query_limited(&q, query.limit, start, &["pk", "sk", attribute]).await?;
        Ok(Page {
            items: items.iter().map(item::audit_from_item).collect::<Result<_, _>>()?,
            next: next.as_ref().map(encode_token).transpose()?,
        })
    }
}
