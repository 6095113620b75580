//! `RecordStore` on the main table: canonical records (`REC#{object}#{record_id}`) under the
//! connection's partition. A record's id is derived from its external id (`RecordId::derive`), so
//! its key is found from the external id alone: no registry item to write or read. Live calendar
//! events are also found by their iCalendar UID, through the sparse index [`MEETING_UID_INDEX`].

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt, stream};

use super::item;
use super::{CONCURRENCY, DynamoStore, MEETING_UID_INDEX, Query, decode_token, encode_token, sdk_error};
use crate::domain::{CanonicalRecord, ConnectionId, ExternalId, ObjectType, Provider, RecordId, TenantId};
use crate::ports::{MAX_EVENTS_PER_UID, MAX_UIDS_PER_LOOKUP, Page, RecordStore, RecordWrite, StoreError};

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

    /// One `Query` of [`MEETING_UID_INDEX`] per distinct UID ([`CONCURRENCY`] at most at once,
    /// keys only, [`MAX_EVENTS_PER_UID`] keys each), then `BatchGetItem` of the keys found (one
    /// per 100, consistent reads). The index lags the table, so a record read back is kept only if
    /// it still is a live event with one of the UIDs.
    async fn events_by_ical_uid(
        &self,
        tenant: &TenantId,
        uids: &[String],
    ) -> Result<Vec<CanonicalRecord>, StoreError> {
        let wanted: BTreeSet<&str> = uids.iter().map(String::as_str).filter(|u| !u.is_empty()).collect();
        if wanted.len() > MAX_UIDS_PER_LOOKUP {
            return Err(StoreError::Backend("too many UIDs in one lookup".into()));
        }
        let partitions: Vec<String> = wanted.iter().map(|uid| item::meeting_key(tenant, uid)).collect();
        let found: Vec<Vec<item::Item>> = stream::iter(partitions)
            .map(|partition| async move {
                let q = Query::new(&self.table, "meeting_key = :k")
                    .index(MEETING_UID_INDEX)
                    .value(":k", item::s(partition));
                self.query_all(&q, Some(MAX_EVENTS_PER_UID)).await
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let keys: Vec<item::Item> = found
            .into_iter()
            .flatten()
            .map(|k| k.into_iter().filter(|(name, _)| name == "pk" || name == "sk").collect())
            .collect();
        let mut events = Vec::new();
        for found in self.batch_get(&self.table, keys).await? {
            let record = item::record_from_item(&found)?;
            let uid = record.fields.get("ical_uid").and_then(serde_json::Value::as_str);
            if record.object == ObjectType::Events
                && !record.deleted
                && uid.is_some_and(|u| wanted.contains(u))
            {
                events.push(record);
            }
        }
        Ok(events)
    }
}
