//! OAuth and disconnect items of the main table: pending authorizations (`state`) and connection
//! tombstones.
//!
//! - Pending authorization: pk `OAUTH#{sha256(state) hex}`, sk `OAUTH`; TTL `expires_at`. Taken
//!   with one conditional `DeleteItem` returning the old item, so a state is used once.
//! - Tombstone: pk `T#{tenant}`, sk `GONE#{connection}`: `provider`, `account_id`,
//!   `disconnected_at`. Written in the transaction that deletes the connection item.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, ReturnValue, TransactWriteItem};
use chrono::{DateTime, Utc};

use super::item::{self, Item, Reader, n, s};
use super::{DynamoStore, build_error, crypto_error, sdk_error, transact_error};
use crate::domain::oauth::{PendingAuthorization, state_key};
use crate::domain::{Connection, ConnectionId, Provider, TenantId};
use crate::ports::{OAuthStateStore, StoreError};

fn state_item_key(state: &str) -> Item {
    item::key(format!("OAUTH#{}", state_key(state)), "OAUTH".to_owned())
}

fn tombstone_sk(connection: &ConnectionId) -> String {
    format!("GONE#{connection}")
}

impl DynamoStore {
    pub(super) async fn disconnect_connection(
        &self,
        connection: &Connection,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let pk = item::tenant_pk(&connection.tenant_id);
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(item::key(pk.clone(), item::connection_sk(&connection.connection_id))))
            .condition_expression("#version = :v")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":v", n(connection.version))
            .build()
            .map_err(build_error)?;
        let mut tomb = item::key(pk, tombstone_sk(&connection.connection_id));
        tomb.insert("tenant_id".into(), s(connection.tenant_id.as_str()));
        tomb.insert("connection_id".into(), s(connection.connection_id.as_str()));
        tomb.insert("provider".into(), s(connection.provider.as_str()));
        if let Some(account) = &connection.account_id {
            tomb.insert("account_id".into(), s(account));
        }
        tomb.insert("disconnected_at".into(), item::time(at));
        let put = Put::builder().table_name(&self.table).set_item(Some(tomb)).build().map_err(build_error)?;
        let mut transaction = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(TransactWriteItem::builder().put(put).build());
        // The account registry entry goes with the connection: webhooks for the account stop finding it.
        if let Some(account) = &connection.account_id {
            let registry = item::key(
                item::account_pk(connection.provider, account),
                item::connection_pk(&connection.tenant_id, &connection.connection_id),
            );
            let unregister = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(registry))
                .build()
                .map_err(build_error)?;
            transaction = transaction.transact_items(TransactWriteItem::builder().delete(unregister).build());
        }
        transaction.send().await.map_err(transact_error)?;
        Ok(())
    }

    pub(super) async fn tombstone_exists(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
    ) -> Result<bool, StoreError> {
        let key = item::key(item::tenant_pk(tenant), tombstone_sk(connection));
        Ok(self.get_item(&self.table, key).await?.is_some())
    }
}

#[async_trait]
impl OAuthStateStore for DynamoStore {
    async fn put_state(&self, state: &str, p: &PendingAuthorization) -> Result<(), StoreError> {
        self.cipher.ready().await.map_err(crypto_error)?;
        let mut it = state_item_key(state);
        it.insert("tenant_id".into(), s(p.tenant_id.as_str()));
        it.insert("subject".into(), s(&p.subject));
        it.insert("provider".into(), s(p.provider.as_str()));
        it.insert("sandbox".into(), aws_sdk_dynamodb::types::AttributeValue::Bool(p.sandbox));
        it.insert("redirect_uri".into(), s(&p.redirect_uri));
        if let Some(v) = &p.code_verifier {
            it.insert("code_verifier_enc".into(), s(self.cipher.encrypt(v).map_err(crypto_error)?));
        }
        if let Some(i) = p.interval_minutes {
            it.insert("interval_minutes".into(), n(i));
        }
        if let Some(settings) = &p.settings {
            it.insert("settings".into(), item::json(settings));
        }
        if let Some(path) = &p.return_to {
            it.insert("return_to".into(), s(path));
        }
        it.insert("expires_at".into(), item::epoch(p.expires_at));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(it))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn take_state(&self, state: &str) -> Result<Option<PendingAuthorization>, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(state_item_key(state)))
            .condition_expression("attribute_exists(pk)")
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk_error);
        let old = match result {
            Ok(out) => out.attributes.unwrap_or_default(),
            Err(StoreError::Conflict) => return Ok(None),
            Err(e) => return Err(e),
        };
        if old.is_empty() {
            return Ok(None);
        }
        self.cipher.prepare(&item::encrypted_values(&old)).await.map_err(crypto_error)?;
        let r = Reader::new(&old, "oauth state");
        let code_verifier = r
            .opt_s("code_verifier_enc")?
            .map(|v| self.cipher.decrypt(v).map_err(|e| r.corrupt("code_verifier_enc", &e.to_string())))
            .transpose()?;
        let sandbox = matches!(old.get("sandbox"), Some(aws_sdk_dynamodb::types::AttributeValue::Bool(true)));
        Ok(Some(PendingAuthorization {
            tenant_id: r.parse("tenant_id", TenantId::parse)?,
            subject: r.s("subject")?.to_owned(),
            provider: r.parse("provider", Provider::parse)?,
            sandbox,
            redirect_uri: r.s("redirect_uri")?.to_owned(),
            code_verifier,
            interval_minutes: match old.get("interval_minutes") {
                Some(_) => Some(r.n("interval_minutes")?),
                None => None,
            },
            settings: match old.get("settings") {
                Some(_) => Some(r.json("settings")?),
                None => None,
            },
            return_to: r.opt_s("return_to")?.map(str::to_owned),
            expires_at: r.epoch("expires_at")?,
        }))
    }
}
