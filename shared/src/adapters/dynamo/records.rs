//! `RecordStore` on the main table: canonical records (`REC#{object}#{record_id}`) and the external
//! id registry (`XID#{provider}#{object}#{external_id}`), both under the connection's partition.

use std::collections::HashMap;

use async_trait::async_trait;
use futures::{StreamExt, stream};

use super::item;
use super::{CONCURRENCY, DynamoStore, Query, decode_token, encode_token, sdk_error};
use crate::domain::{CanonicalRecord, ConnectionId, ExternalId, ObjectType, Provider, RecordId, TenantId};
use crate::ports::{Page, RecordStore, RecordWrite, StoreError};

const ALL_OBJECTS: [ObjectType; 7] = [
    ObjectType::Contacts,
    ObjectType::Companies,
    ObjectType::Deals,
    ObjectType::Notes,
    ObjectType::Activities,
    ObjectType::Events,
    ObjectType::ResearchTasks,
];

impl DynamoStore {
    /// Registers the external id, then stores the record; `Conflict` when the external id is
    /// registered to another record or the record already exists.
    ///
    /// Two conditional puts rather than a transaction: the registry write is idempotent for the
    /// same record id (ids of pulled records are derived from their external id), so a crash
    /// between the two leaves a registry entry that the next attempt completes, and two racing
    /// creators both pass the first put while exactly one wins the second. (It is also half the
    /// write cost of a transaction, and moto copies every table on each transaction.)
    async fn create_record(&self, record: &CanonicalRecord, provider: Provider) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item::registry_to_item(record, provider)))
            .condition_expression("attribute_not_exists(pk) OR #rid = :rid")
            .expression_attribute_names("#rid", "record_id")
            .expression_attribute_values(":rid", item::s(record.record_id.as_str()))
            .send()
            .await
            .map_err(sdk_error)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item::record_to_item(record)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Replaces the record if the stored version is still `record.version - 1`.
    async fn update_record(&self, record: &CanonicalRecord) -> Result<(), StoreError> {
        let Some(expected) = record.version.checked_sub(1) else {
            return Err(StoreError::Conflict);
        };
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item::record_to_item(record)))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", item::n(expected))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }
}

#[async_trait]
impl RecordStore for DynamoStore {
    async fn get_by_external(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        provider: Provider,
        object: ObjectType,
        ids: &[ExternalId],
    ) -> Result<HashMap<ExternalId, CanonicalRecord>, StoreError> {
        let pk = item::connection_pk(tenant, connection);
        let mut unique: Vec<&ExternalId> = ids.iter().collect();
        unique.sort();
        unique.dedup();
        let keys =
            unique.iter().map(|x| item::key(pk.clone(), item::registry_sk(provider, object, x))).collect();
        let mut by_record: HashMap<RecordId, ExternalId> = HashMap::new();
        for found in self.batch_get(&self.table, keys).await? {
            let (external, record) = item::registry_from_item(&found)?;
            by_record.insert(record, external);
        }
        let keys = by_record.keys().map(|r| item::key(pk.clone(), item::record_sk(object, r))).collect();
        let mut out = HashMap::new();
        for found in self.batch_get(&self.table, keys).await? {
            let record = item::record_from_item(&found)?;
            if let Some(external) = by_record.get(&record.record_id) {
                out.insert(external.clone(), record);
            }
        }
        Ok(out)
    }

    async fn write(
        &self,
        provider: Provider,
        writes: Vec<RecordWrite>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let results = stream::iter(writes)
            .map(|w| async move {
                match w {
                    RecordWrite::Create(r) => self.create_record(&r, provider).await,
                    RecordWrite::Update(r) => self.update_record(&r).await,
                }
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        Ok(results)
    }

    /// The sort key holds the object type, which the caller does not give: one `BatchGetItem` looks
    /// under every object type.
    async fn get(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        record: &RecordId,
    ) -> Result<Option<CanonicalRecord>, StoreError> {
        let pk = item::connection_pk(tenant, connection);
        let keys = ALL_OBJECTS.iter().map(|o| item::key(pk.clone(), item::record_sk(*o, record))).collect();
        match self.batch_get(&self.table, keys).await?.first() {
            Some(found) => item::record_from_item(found).map(Some),
            None => Ok(None),
        }
    }

    async fn list(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        object: Option<ObjectType>,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<Page<CanonicalRecord>, StoreError> {
        let pk = item::connection_pk(tenant, connection);
        let prefix = match object {
            Some(o) => format!("REC#{o}#"),
            None => "REC#".to_owned(),
        };
        let start = page_token.map(|t| decode_token(t, ("pk", &pk), Some(&prefix))).transpose()?;
        let q = Query::new(&self.table, "pk = :pk AND begins_with(sk, :prefix)")
            .value(":pk", item::s(pk.clone()))
            .value(":prefix", item::s(prefix.clone()));
        let (items, next) = self.query_page(&q, Some(limit), start).await?;
        Ok(Page {
            items: items.iter().map(item::record_from_item).collect::<Result<_, _>>()?,
            next: next.as_ref().map(encode_token).transpose()?,
        })
    }
}
