//! `RecordStore` on the main table: canonical records (`REC#{object}#{record_id}`) under the
//! connection's partition. A record's id is derived from its external id (`RecordId::derive`), so
//! its key is found from the external id alone: no registry item to write or read.

use std::collections::HashMap;

use async_trait::async_trait;
use futures::{StreamExt, stream};

use super::item;
use super::{CONCURRENCY, DynamoStore, Query, decode_token, encode_token, sdk_error};
use crate::domain::{CanonicalRecord, ConnectionId, ExternalId, ObjectType, Provider, RecordId, TenantId};
use crate::ports::{Page, RecordStore, RecordWrite, StoreError};

const ALL_OBJECTS: [ObjectType; 10] = [
    ObjectType::Contacts,
    ObjectType::Companies,
    ObjectType::Deals,
    ObjectType::Notes,
    ObjectType::Activities,
    ObjectType::Events,
    ObjectType::ResearchTasks,
    ObjectType::Messages,
    ObjectType::Transcripts,
    ObjectType::Files,
];

/// Every object type is in [`ALL_OBJECTS`]: this match stops compiling when one is added, as a
/// reminder to list it there too (a record of an unlisted type cannot be read by its id).
const _: fn(ObjectType) = |o| match o {
    ObjectType::Contacts
    | ObjectType::Companies
    | ObjectType::Deals
    | ObjectType::Notes
    | ObjectType::Activities
    | ObjectType::Events
    | ObjectType::ResearchTasks
    | ObjectType::Messages
    | ObjectType::Transcripts
    | ObjectType::Files => {}
};

impl DynamoStore {
    /// Stores a new record: one put, conditional on the record not existing (`Conflict` if it
    /// does). The id must be the one derived from the external id, which is what makes the
    /// record's own key the external id registry: two racing creators of one external id write
    /// the same key and exactly one wins, and a crash leaves nothing half-written.
    async fn create_record(&self, record: &CanonicalRecord, provider: Provider) -> Result<(), StoreError> {
        let derived =
            RecordId::derive(&record.tenant_id, &record.connection_id, record.object, &record.external_id);
        if record.record_id != derived {
            return Err(StoreError::Corrupt(format!(
                "record {} is not the id derived from its external id",
                record.record_id
            )));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item::record_to_item(record, provider)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Replaces the record if the stored version is still `record.version - 1`.
    async fn update_record(&self, record: &CanonicalRecord, provider: Provider) -> Result<(), StoreError> {
        let Some(expected) = record.version.checked_sub(1) else {
            return Err(StoreError::Conflict);
        };
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item::record_to_item(record, provider)))
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
    /// One `BatchGetItem` per 100 ids, of the records' derived keys.
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
        let keys = unique
            .iter()
            .map(|x| {
                item::key(
                    pk.clone(),
                    item::record_sk(object, &RecordId::derive(tenant, connection, object, x)),
                )
            })
            .collect();
        let mut out = HashMap::new();
        for found in self.batch_get(&self.table, keys).await? {
            if item::record_provider(&found)?.is_some_and(|p| p != provider) {
                continue;
            }
            let record = item::record_from_item(&found)?;
            out.insert(record.external_id.clone(), record);
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
                    RecordWrite::Update(r) => self.update_record(&r, provider).await,
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
