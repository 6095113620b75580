//! Gmail writes: label changes of one message with `messages.modify`, after checking that the
//! message did not change since the record's last pull (its `historyId` against the record's etag).

use std::collections::BTreeSet;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::messages::map_message;
use super::{Call, GmailClient};
use crate::domain::record::Fields;
use crate::domain::{ExternalId, ObjectType};
use crate::ports::{Precondition, ProviderError, ProviderWrite, WriteAck};

/// Labels Gmail sets itself and refuses to apply
/// (<https://developers.google.com/gmail/api/guides/labels>): a push that would add or remove one
/// is refused as a whole rather than half applied.
const SYSTEM_SET: &[&str] = &["SENT", "DRAFT", "CHAT"];

pub(super) fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

/// The label ids a `labels` value names.
fn label_set(value: &Value) -> Result<BTreeSet<String>, ProviderError> {
    match value {
        Value::Null => Ok(BTreeSet::new()),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| ProviderError::permanent("labels must be a list of label ids"))
            })
            .collect(),
        _ => Err(ProviderError::permanent("labels must be a list of label ids")),
    }
}

/// `(add, remove)` turning `current` into `desired`; `Err` when that touches a label Gmail sets.
fn difference(
    current: &BTreeSet<String>,
    desired: &BTreeSet<String>,
) -> Result<(Vec<String>, Vec<String>), ProviderError> {
    let add: Vec<String> = desired.difference(current).cloned().collect();
    let remove: Vec<String> = current.difference(desired).cloned().collect();
    if let Some(l) = add.iter().chain(&remove).find(|l| SYSTEM_SET.contains(&l.as_str())) {
        return Err(ProviderError::permanent(format!(
            "Gmail sets the {l} label itself; a push cannot change it"
        )));
    }
    Ok((add, remove))
}

impl GmailClient {
    /// [`ProviderClient::write`](crate::ports::ProviderClient::write): one message at a time, in
    /// order; a rate limit or a rejected token stops the rest.
    pub(super) async fn write_all(
        &self,
        token: &SecretString,
        writes: &[ProviderWrite],
    ) -> Result<Vec<Result<WriteAck, ProviderError>>, ProviderError> {
        let mut out = Vec::with_capacity(writes.len());
        let mut stop: Option<ProviderError> = None;
        for write in writes {
            if let Some(e) = &stop {
                out.push(Err(e.clone()));
                continue;
            }
            let result = match write {
                ProviderWrite::Update { object: ObjectType::Messages, external_id, fields, precondition } => {
                    self.relabel(token, external_id, fields, precondition).await
                }
                ProviderWrite::Update { object, .. } => {
                    Err(ProviderError::permanent(format!("the Gmail adapter does not write {object}")))
                }
                ProviderWrite::Create { .. } | ProviderWrite::Delete { .. } => Err(ProviderError::permanent(
                    "Gmail messages are not created or deleted by Syncbridge; only their labels change",
                )),
            };
            match &result {
                Err(ProviderError::Unauthorized) => stop = Some(ProviderError::Unauthorized),
                Err(ProviderError::RateLimited { .. }) => {
                    stop = Some(ProviderError::RateLimited { retry_after: Duration::from_secs(60) })
                }
                _ => {}
            }
            out.push(result);
        }
        Ok(out)
    }

    async fn message(&self, token: &SecretString, id: &str, format: &str) -> Result<Value, ProviderError> {
        let path = format!("messages/{}", encode(id));
        let mut query = vec![("format", format.to_owned())];
        if format == "metadata" {
            query.extend(
                super::messages::METADATA_HEADERS.iter().map(|h| ("metadataHeaders", (*h).to_owned())),
            );
        }
        self.get_json(token, "messages.get", &path, &query).await?.check()?.json()
    }

    async fn relabel(
        &self,
        token: &SecretString,
        id: &ExternalId,
        fields: &Fields,
        precondition: &Precondition,
    ) -> Result<WriteAck, ProviderError> {
        let label_field = self.fields.canonical_of("labelIds").unwrap_or("labels");
        if let Some(other) = fields.keys().find(|k| k.as_str() != label_field) {
            return Err(ProviderError::permanent(format!(
                "only the labels of a Gmail message can change, not {other}"
            )));
        }
        let Some(desired) = fields.get(label_field) else {
            return Err(ProviderError::permanent("nothing to write: the update has no labels"));
        };
        let desired = label_set(desired)?;
        let current = self.message(token, id.as_str(), "minimal").await?;
        if let (Some(expected), Some(now)) =
            (precondition.etag.as_deref(), current.get("historyId").and_then(Value::as_str))
            && expected != now
        {
            return Err(ProviderError::Conflict);
        }
        let have = label_set(current.get("labelIds").unwrap_or(&Value::Null))?;
        let (add, remove) = difference(&have, &desired)?;
        if !add.is_empty() || !remove.is_empty() {
            let url = format!("{}/messages/{}/modify", self.base, encode(id.as_str()));
            let body = json!({ "addLabelIds": add, "removeLabelIds": remove });
            // Adding a label a message has, or removing one it lacks, changes nothing: repeatable.
            self.send(Call::idempotent_write("messages.modify"), || {
                self.http.post(&url).bearer_auth(token.expose_secret()).json(&body)
            })
            .await?
            .check()?;
        }
        let record = map_message(&self.message(token, id.as_str(), "metadata").await?, &self.fields)?;
        Ok(WriteAck {
            external_id: record.external_id,
            remote_modified_at: None,
            etag: record.etag,
            fields: Some(record.fields),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_difference_adds_and_removes_and_refuses_to_touch_labels_gmail_sets() {
        let (add, remove) =
            difference(&set(&["INBOX", "SENT", "UNREAD"]), &set(&["INBOX", "STARRED", "SENT"])).unwrap();
        assert_eq!(add, vec!["STARRED"]);
        assert_eq!(remove, vec!["UNREAD"]);
        assert!(difference(&set(&["INBOX"]), &set(&["INBOX", "DRAFT"])).is_err());
        assert!(difference(&set(&["SENT"]), &set(&[])).is_err());
        assert!(label_set(&json!("INBOX")).is_err());
    }
}
