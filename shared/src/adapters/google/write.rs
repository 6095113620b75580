//! Google writes, one request each: creates with an event id derived from the idempotency key
//! (409 `duplicate` acknowledges the first attempt's event), `events.patch` and `events.delete`
//! with `If-Match` for preconditions.

use std::time::Duration;

use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::events::{event_body, event_id_for, map_event};
use super::{Call, GoogleClient, error_reason};
use crate::domain::record::Fields;
use crate::domain::{ExternalId, IdempotencyKey, ObjectType};
use crate::ports::{Precondition, ProviderError, ProviderWrite, WriteAck};

impl GoogleClient {
    /// [`ProviderClient::write`](crate::ports::ProviderClient::write): one request per write,
    /// in order; a rate limit or a rejected token stops the rest.
    pub(super) async fn write_all(
        &self,
        token: &SecretString,
        writes: &[ProviderWrite],
    ) -> Result<Vec<Result<WriteAck, ProviderError>>, ProviderError> {
        let mut out = Vec::with_capacity(writes.len());
        let mut stop: Option<fn() -> ProviderError> = None;
        for write in writes {
            if let Some(make) = stop {
                out.push(Err(make()));
                continue;
            }
            let object = match write {
                ProviderWrite::Create { object, .. }
                | ProviderWrite::Update { object, .. }
                | ProviderWrite::Delete { object, .. } => *object,
            };
            let result = if object != ObjectType::Events {
                Err(ProviderError::permanent(format!("the Google adapter does not write {object}")))
            } else {
                match write {
                    ProviderWrite::Create { fields, idempotency_key, .. } => {
                        self.create(token, fields, idempotency_key).await
                    }
                    ProviderWrite::Update { external_id, fields, precondition, .. } => {
                        self.update(token, external_id, fields, precondition).await
                    }
                    ProviderWrite::Delete { external_id, precondition, .. } => {
                        self.delete(token, external_id, precondition).await
                    }
                }
            };
            match &result {
                Err(ProviderError::Unauthorized) => stop = Some(|| ProviderError::Unauthorized),
                Err(ProviderError::RateLimited { .. }) => {
                    stop = Some(|| ProviderError::RateLimited { retry_after: Duration::from_secs(60) })
                }
                _ => {}
            }
            out.push(result);
        }
        Ok(out)
    }

    async fn get_event(&self, token: &SecretString, id: &str) -> Result<Value, ProviderError> {
        let url = self.event_url(id);
        self.send(Call::read("events.get"), || self.http.get(&url).bearer_auth(token.expose_secret()))
            .await?
            .check()?
            .json()
    }

    fn ack(&self, ev: &Value) -> Result<WriteAck, ProviderError> {
        let record = map_event(ev, &self.fields)?;
        Ok(WriteAck {
            external_id: record.external_id,
            remote_modified_at: record.remote_modified_at,
            etag: record.etag,
            fields: Some(record.fields),
        })
    }

    async fn create(
        &self,
        token: &SecretString,
        fields: &Fields,
        key: &IdempotencyKey,
    ) -> Result<WriteAck, ProviderError> {
        let id = event_id_for(key);
        let mut body = event_body(fields, &self.fields)?;
        if !body.contains_key("start") || !body.contains_key("end") {
            return Err(ProviderError::permanent("an event needs start and end"));
        }
        body.insert("id".into(), Value::String(id.clone()));
        let url = self.events_url();
        let reply = self
            .send(Call::idempotent_write("events.insert"), || {
                self.http.post(&url).bearer_auth(token.expose_secret()).json(&body)
            })
            .await?;
        if reply.status == StatusCode::CONFLICT && error_reason(&reply.body).as_deref() == Some("duplicate") {
            tracing::info!(event_id = %id, "event already created by an earlier attempt");
            let existing = self.get_event(token, &id).await?;
            return self.ack(&existing);
        }
        self.ack(&reply.check()?.json()?)
    }

    /// The `If-Match` etag for a precondition: the given etag, or (with only `unmodified_since`)
    /// the current one after checking Google's `updated` stamp. `Err(Conflict)` if it moved on.
    async fn if_match(
        &self,
        token: &SecretString,
        id: &str,
        precondition: &Precondition,
    ) -> Result<Option<String>, ProviderError> {
        if let Some(etag) = &precondition.etag {
            return Ok(Some(etag.clone()));
        }
        let Some(since) = precondition.unmodified_since else { return Ok(None) };
        let current = self.get_event(token, id).await?;
        let record = map_event(&current, &self.fields)?;
        if record.remote_modified_at.is_some_and(|t| t > since) {
            return Err(ProviderError::Conflict);
        }
        Ok(record.etag)
    }

    async fn update(
        &self,
        token: &SecretString,
        id: &ExternalId,
        fields: &Fields,
        precondition: &Precondition,
    ) -> Result<WriteAck, ProviderError> {
        let body = event_body(fields, &self.fields)?;
        let etag = self.if_match(token, id.as_str(), precondition).await?;
        let url = self.event_url(id.as_str());
        let reply = self
            .send(Call::write("events.patch"), || {
                let req = self.http.patch(&url).bearer_auth(token.expose_secret()).json(&body);
                match &etag {
                    Some(e) => req.header(http::header::IF_MATCH, e),
                    None => req,
                }
            })
            .await?;
        self.ack(&reply.check()?.json()?)
    }

    async fn delete(
        &self,
        token: &SecretString,
        id: &ExternalId,
        precondition: &Precondition,
    ) -> Result<WriteAck, ProviderError> {
        let etag = self.if_match(token, id.as_str(), precondition).await?;
        let url = self.event_url(id.as_str());
        let reply = self
            .send(Call::idempotent_write("events.delete"), || {
                let req = self.http.delete(&url).bearer_auth(token.expose_secret());
                match &etag {
                    Some(e) => req.header(http::header::IF_MATCH, e),
                    None => req,
                }
            })
            .await?;
        let ack = WriteAck { external_id: id.clone(), remote_modified_at: None, etag: None, fields: None };
        match reply.status {
            // Already deleted: the delete's effect holds.
            StatusCode::GONE | StatusCode::NOT_FOUND => Ok(ack),
            _ => reply.check().map(|_| ack),
        }
    }
}
