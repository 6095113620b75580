//! Graph writes, one request each: `POST me/events` made idempotent by a `transactionId` derived
//! from the idempotency key, `PATCH` and `DELETE` with `If-Match` for preconditions.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Call, GraphClient, graph_id_of, only_events};
use crate::domain::{ExternalId, IdempotencyKey};
use crate::ports::{Precondition, ProviderError, ProviderWrite, WriteAck};

impl GraphClient {
    /// [`ProviderClient::write`](crate::ports::ProviderClient::write): each write in order.
    pub(super) async fn write_all(
        &self,
        token: &SecretString,
        writes: &[ProviderWrite],
    ) -> Result<Vec<Result<WriteAck, ProviderError>>, ProviderError> {
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            results.push(self.write_one(token, write).await);
        }
        Ok(results)
    }

    /// The event's current etag, checking `unmodified_since` on the way (for preconditions
    /// without an etag).
    async fn current_etag(
        &self,
        token: &SecretString,
        id: &ExternalId,
        precondition: &Precondition,
    ) -> Result<Option<String>, ProviderError> {
        if let Some(etag) = &precondition.etag {
            return Ok(Some(etag.clone()));
        }
        let Some(since) = precondition.unmodified_since else {
            return Ok(None);
        };
        let url = self.url(&format!("me/events/{}", graph_id_of(id)));
        let reply = self
            .send(Call::read("events.get"), || self.http.get(&url).bearer_auth(token.expose_secret()))
            .await?
            .check()?;
        let event: Value = reply.json()?;
        let modified = event
            .get("lastModifiedDateTime")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc));
        if modified.is_some_and(|m| m > since) {
            return Err(ProviderError::Conflict);
        }
        Ok(event.get("@odata.etag").and_then(Value::as_str).map(str::to_owned))
    }

    fn ack(&self, event: &Value) -> Result<WriteAck, ProviderError> {
        let (record, _) = self.map_event(event)?;
        Ok(WriteAck {
            external_id: record.external_id,
            remote_modified_at: record.remote_modified_at,
            etag: record.etag,
            fields: Some(record.fields),
        })
    }

    async fn write_one(
        &self,
        token: &SecretString,
        write: &ProviderWrite,
    ) -> Result<WriteAck, ProviderError> {
        match write {
            ProviderWrite::Create { object, fields, idempotency_key } => {
                only_events(*object)?;
                let mut body = self.event_body(fields)?;
                body.insert("transactionId".into(), Value::String(transaction_id(idempotency_key)));
                let url = self.url("me/events");
                // `transactionId` makes a repeated create answer the first one's event.
                let reply = self
                    .send(Call::idempotent_write("events.create"), || {
                        self.http.post(&url).bearer_auth(token.expose_secret()).json(&body)
                    })
                    .await?
                    .check()?;
                self.ack(&reply.json()?)
            }
            ProviderWrite::Update { object, external_id, fields, precondition } => {
                only_events(*object)?;
                let body = self.event_body(fields)?;
                let etag = self.current_etag(token, external_id, precondition).await?;
                let url = self.url(&format!("me/events/{}", graph_id_of(external_id)));
                let reply = self
                    .send(Call::write("events.update"), || {
                        let req = self.http.patch(&url).bearer_auth(token.expose_secret()).json(&body);
                        match &etag {
                            Some(tag) => req.header(http::header::IF_MATCH, tag),
                            None => req,
                        }
                    })
                    .await?
                    .check()?;
                self.ack(&reply.json()?)
            }
            ProviderWrite::Delete { object, external_id, precondition } => {
                only_events(*object)?;
                let etag = self.current_etag(token, external_id, precondition).await?;
                let url = self.url(&format!("me/events/{}", graph_id_of(external_id)));
                let answer = self
                    .send(Call::idempotent_write("events.delete"), || {
                        let req = self.http.delete(&url).bearer_auth(token.expose_secret());
                        match &etag {
                            Some(tag) => req.header(http::header::IF_MATCH, tag),
                            None => req,
                        }
                    })
                    .await?
                    .check();
                // 404 `ErrorItemNotFound`: already deleted (a retry after a lost answer); the
                // delete's effect holds.
                match answer {
                    Ok(_) | Err(ProviderError::NotFound) => {}
                    Err(e) => return Err(e),
                }
                Ok(WriteAck {
                    external_id: external_id.clone(),
                    remote_modified_at: None,
                    etag: None,
                    fields: None,
                })
            }
        }
    }
}

/// Graph's `transactionId` for a create: derived from the idempotency key, so a retried create
/// finds the event the first attempt made.
pub fn transaction_id(key: &IdempotencyKey) -> String {
    let digest = Sha256::digest(key.as_str().as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("syncbridge-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_are_stable_per_key_and_differ_between_keys() {
        let a = IdempotencyKey::parse("push-1").unwrap();
        let b = IdempotencyKey::parse("push-2").unwrap();
        assert_eq!(transaction_id(&a), transaction_id(&a));
        assert_ne!(transaction_id(&a), transaction_id(&b));
    }
}
