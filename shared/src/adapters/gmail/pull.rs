//! Gmail pulls: the cursor's phases (a full listing from a history id taken first, then
//! `history.list` increments, a resync after a 404) and the message reads each page needs.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt, TryStreamExt};
use http::StatusCode;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::GmailClient;
use super::messages::{METADATA_HEADERS, deleted, map_message};
use crate::domain::{ExternalId, RemoteRecord, SyncCursor};
use crate::ports::{IdPage, ProviderError, PulledPage};

/// Messages listed (and read) per full-pull page.
const LIST_PAGE: usize = 100;
/// History records per incremental page.
const HISTORY_PAGE: usize = 100;
/// Ids per `live_ids` page (`messages.list`'s maximum).
const IDS_PAGE: usize = 500;
/// Message reads in flight at once (each still paced by its quota units).
const CONCURRENT_GETS: usize = 8;
const CURSOR_VERSION: u8 = 1;

/// Where a pull stands (the JSON inside [`SyncCursor`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    /// Listing every message; `history_id` was the mailbox's when the listing began. `resync`:
    /// this listing replaces history Gmail no longer had, so its end reconciles deletes.
    Full { page_token: Option<String>, history_id: String, resync: bool },
    /// Following history from `history_id`.
    History { history_id: String, page_token: Option<String> },
}

#[derive(Debug, Serialize, Deserialize)]
struct CursorDoc {
    v: u8,
    #[serde(flatten)]
    phase: Phase,
}

impl Phase {
    fn parse(cursor: &SyncCursor) -> Result<Phase, ProviderError> {
        cursor
            .json::<CursorDoc>()
            .filter(|doc| doc.v == CURSOR_VERSION)
            .map(|doc| doc.phase)
            .ok_or(ProviderError::CursorExpired)
    }

    fn to_cursor(&self) -> SyncCursor {
        let doc = CursorDoc { v: CURSOR_VERSION, phase: self.clone() };
        SyncCursor::of_json(&doc)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListPage {
    #[serde(default)]
    messages: Vec<MessageRef>,
    next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MessageRef {
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryPage {
    #[serde(default)]
    history: Vec<Value>,
    history_id: Option<String>,
    next_page_token: Option<String>,
}

/// What the history says of one message, the last word winning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Changed,
    Deleted,
}

/// The messages a page of history records touches, in first-seen order.
fn fates(history: &[Value]) -> Vec<(String, Fate)> {
    let mut order: Vec<String> = Vec::new();
    let mut fate: BTreeMap<String, Fate> = BTreeMap::new();
    let ids = |record: &Value, key: &str| -> Vec<String> {
        record
            .get(key)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.pointer("/message/id").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    for record in history {
        for key in ["messagesAdded", "labelsAdded", "labelsRemoved", "messagesDeleted"] {
            let what = if key == "messagesDeleted" { Fate::Deleted } else { Fate::Changed };
            for id in ids(record, key) {
                if !fate.contains_key(&id) {
                    order.push(id.clone());
                }
                // A deleted message stays deleted (Gmail never reuses an id).
                let entry = fate.entry(id).or_insert(what);
                if what == Fate::Deleted {
                    *entry = Fate::Deleted;
                }
            }
        }
    }
    order.into_iter().filter_map(|id| fate.get(&id).map(|f| (id.clone(), *f))).collect()
}

impl GmailClient {
    /// [`ProviderClient::pull_page`](crate::ports::ProviderClient::pull_page) for messages: a
    /// `None` cursor starts a full listing.
    pub(super) async fn pull_messages(
        &self,
        token: &SecretString,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        let phase = match cursor {
            None => self.start_full(token, false).await?,
            Some(c) => Phase::parse(c)?,
        };
        self.pull(token, phase).await
    }

    async fn start_full(&self, token: &SecretString, resync: bool) -> Result<Phase, ProviderError> {
        let history_id = self.profile_history_id(token).await?;
        Ok(Phase::Full { page_token: None, history_id, resync })
    }

    fn wants_body(&self) -> bool {
        self.fields.properties().any(|p| p == "body")
    }

    /// Reads one message (`format=metadata`, or `full` when the mapping wants the text); a
    /// message gone since it was listed is a delete.
    async fn read(&self, token: &SecretString, id: &str) -> Result<RemoteRecord, ProviderError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if self.wants_body() {
            query.push(("format", "full".into()));
        } else {
            query.push(("format", "metadata".into()));
            query.extend(METADATA_HEADERS.iter().map(|h| ("metadataHeaders", (*h).to_owned())));
        }
        let path = format!("messages/{}", super::write::encode(id));
        let reply = self.get_json(token, "messages.get", &path, &query).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return deleted(id);
        }
        map_message(&reply.check()?.json()?, &self.fields)
    }

    /// Reads `ids` a few at a time, keeping their order.
    async fn read_all(
        &self,
        token: &SecretString,
        ids: Vec<String>,
    ) -> Result<Vec<RemoteRecord>, ProviderError> {
        stream::iter(ids.into_iter().map(|id| async move { self.read(token, &id).await }))
            .buffered(CONCURRENT_GETS)
            .try_collect()
            .await
    }

    async fn list_page(
        &self,
        token: &SecretString,
        page_token: Option<&str>,
        max: usize,
    ) -> Result<ListPage, ProviderError> {
        let mut q: Vec<(&str, String)> =
            vec![("maxResults", max.to_string()), ("includeSpamTrash", "true".into())];
        q.extend(page_token.map(|p| ("pageToken", p.to_owned())));
        self.get_json(token, "messages.list", "messages", &q).await?.check()?.json()
    }

    /// Every message id of the mailbox (SPAM and TRASH included), a page at a time.
    pub(super) async fn list_ids(
        &self,
        token: &SecretString,
        after: Option<&str>,
    ) -> Result<IdPage, ProviderError> {
        let page = self.list_page(token, after, IDS_PAGE).await?;
        let ids = page
            .messages
            .into_iter()
            .map(|m| ExternalId::parse(m.id))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
            ProviderError::permanent(format!("Gmail returned an unusable message id: {e}"))
        })?;
        Ok(IdPage { ids, next: page.next_page_token })
    }

    async fn pull(&self, token: &SecretString, phase: Phase) -> Result<PulledPage, ProviderError> {
        match phase {
            Phase::Full { page_token, history_id, resync } => {
                let page = self.list_page(token, page_token.as_deref(), LIST_PAGE).await?;
                let records = self.read_all(token, page.messages.into_iter().map(|m| m.id).collect()).await?;
                let (next, has_more) = match page.next_page_token {
                    Some(p) => (Phase::Full { page_token: Some(p), history_id, resync }, true),
                    None => (Phase::History { history_id, page_token: None }, false),
                };
                let reconcile_deletes = resync && !has_more;
                Ok(PulledPage { records, cursor: next.to_cursor(), has_more, reconcile_deletes })
            }
            Phase::History { history_id, page_token } => {
                let mut q: Vec<(&str, String)> =
                    vec![("startHistoryId", history_id.clone()), ("maxResults", HISTORY_PAGE.to_string())];
                for t in ["messageAdded", "messageDeleted", "labelAdded", "labelRemoved"] {
                    q.push(("historyTypes", t.to_owned()));
                }
                q.extend(page_token.map(|p| ("pageToken", p)));
                let reply = self.get_json(token, "history.list", "history", &q).await?;
                if reply.status == StatusCode::NOT_FOUND {
                    // <https://developers.google.com/gmail/api/guides/sync#partial_synchronization>:
                    // a start id Gmail no longer has answers 404; a full sync is the remedy.
                    tracing::warn!("Gmail no longer has the history from the stored id; resyncing in full");
                    let restart = self.start_full(token, true).await?;
                    return Box::pin(self.pull(token, restart)).await;
                }
                let page: HistoryPage = reply.check()?.json()?;
                let mut records = Vec::new();
                let mut changed = Vec::new();
                for (id, fate) in fates(&page.history) {
                    match fate {
                        Fate::Deleted => records.push(deleted(&id)?),
                        Fate::Changed => changed.push(id),
                    }
                }
                records.extend(self.read_all(token, changed).await?);
                let (next, has_more) = match (page.next_page_token, page.history_id) {
                    (Some(p), _) => (Phase::History { history_id, page_token: Some(p) }, true),
                    (None, Some(h)) => (Phase::History { history_id: h, page_token: None }, false),
                    (None, None) => return Err(ProviderError::permanent("Gmail's history has no historyId")),
                };
                Ok(PulledPage { records, cursor: next.to_cursor(), has_more, reconcile_deletes: false })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cursors_round_trip_and_unreadable_ones_expire() {
        let phase = Phase::History { history_id: "1042".into(), page_token: Some("p".into()) };
        assert_eq!(Phase::parse(&phase.to_cursor()).unwrap(), phase);
        assert!(matches!(Phase::parse(&SyncCursor::new("nope")), Err(ProviderError::CursorExpired)));
    }

    #[test]
    fn a_message_added_then_deleted_in_one_page_is_a_delete_and_label_changes_read_it_once() {
        let history = vec![
            json!({ "id": "2", "messagesAdded": [{ "message": { "id": "a" } }] }),
            json!({ "id": "3", "labelsAdded": [{ "message": { "id": "b" }, "labelIds": ["STARRED"] }] }),
            json!({ "id": "4", "labelsRemoved": [{ "message": { "id": "b" }, "labelIds": ["UNREAD"] }] }),
            json!({ "id": "5", "messagesDeleted": [{ "message": { "id": "a" } }] }),
        ];
        assert_eq!(fates(&history), vec![("a".to_owned(), Fate::Deleted), ("b".to_owned(), Fate::Changed)]);
    }
}
