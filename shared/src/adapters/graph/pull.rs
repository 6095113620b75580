//! Graph pulls: the cursor (the delta or next link, the round's window and the events known in
//! it) and one `me/calendarView/delta` page, with the resync that reports events a new round did
//! not list again as deleted.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::events::rfc3339;
use super::{Call, GraphClient, Reply, error_code};
use crate::domain::record::Fields;
use crate::domain::{ExternalId, ObjectType, RemoteRecord, SyncCursor};
use crate::ports::{ProviderError, PulledPage};

/// 2: events carry `ical_uid` (the iCalUId Fireflies names Outlook meetings by). A cursor of an
/// older version is expired: that connection resyncs its window once, so the events it stored
/// before gain the field (and their `meeting_uid` index entry) instead of waiting for an edit.
const CURSOR_VERSION: u8 = 2;
/// Known events the cursor keeps at most (about 200 bytes each with Graph's ids): the connection
/// item must stay well under DynamoDB's 400 KB. Past it, deletions made while a delta link was
/// invalid cannot be found (logged), everything else works.
const MAX_KNOWN: usize = 1_000;

/// Where a pull stands (the JSON inside [`SyncCursor`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cursor {
    v: u8,
    /// The next link to call: an `@odata.nextLink` while `in_round`, else the last round's
    /// `@odata.deltaLink`. `None`: start a round for the window.
    link: Option<String>,
    in_round: bool,
    /// The round's window, epoch seconds.
    window_start: i64,
    window_end: i64,
    /// Events of the window known to the store: id -> end (epoch seconds).
    known: BTreeMap<String, i64>,
    /// During a resync: known events the round has not listed yet (deleted at its end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unseen: Option<BTreeSet<String>>,
    /// More than [`MAX_KNOWN`] events were in the window: `known` is not kept this round.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    overflow: bool,
}

impl Cursor {
    fn fresh(now: DateTime<Utc>, days: u32) -> Cursor {
        let start = now.timestamp();
        Cursor {
            v: CURSOR_VERSION,
            link: None,
            in_round: false,
            window_start: start,
            window_end: start + i64::from(days) * 86_400,
            known: BTreeMap::new(),
            unseen: None,
            overflow: false,
        }
    }

    fn parse(cursor: &SyncCursor) -> Result<Cursor, ProviderError> {
        cursor.json::<Cursor>().filter(|c| c.v == CURSOR_VERSION).ok_or(ProviderError::CursorExpired)
    }

    fn to_cursor(&self) -> SyncCursor {
        SyncCursor::of_json(self)
    }

    /// A new round over a new window from `now`; known events still expected in it must be
    /// listed again or are reported deleted when the round ends.
    fn restart(&mut self, now: DateTime<Utc>, days: u32) {
        let fresh = Cursor::fresh(now, days);
        if self.overflow {
            tracing::warn!(
                "over {MAX_KNOWN} events in the calendar window; deletions made while the delta link was invalid cannot be found"
            );
            *self = fresh;
            return;
        }
        self.known.retain(|_, end| *end > fresh.window_start);
        let mut unseen = self.unseen.take().unwrap_or_default();
        unseen.extend(self.known.keys().cloned());
        unseen.retain(|id| self.known.contains_key(id));
        *self = Cursor { known: std::mem::take(&mut self.known), unseen: Some(unseen), ..fresh };
    }
}

#[derive(Debug, Deserialize)]
struct DeltaPage {
    #[serde(default)]
    value: Vec<Value>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    delta_link: Option<String>,
}

impl GraphClient {
    fn get_link(&self, token: &SecretString, url: &str) -> reqwest::RequestBuilder {
        self.http
            .get(url)
            .bearer_auth(token.expose_secret())
            .header("Prefer", format!("odata.maxpagesize={}", self.pacing.page_size))
            .header("Prefer", "outlook.timezone=\"UTC\"")
    }

    /// One delta request for the cursor's position.
    async fn delta_request(&self, token: &SecretString, cursor: &Cursor) -> Result<Reply, ProviderError> {
        match &cursor.link {
            Some(link) => {
                if !link.starts_with(&format!("{}/", self.base)) {
                    return Err(ProviderError::permanent(
                        "a Graph paging link points outside the connection's base URL",
                    ));
                }
                self.send(Call::read("delta"), || self.get_link(token, link)).await
            }
            None => {
                let at = |s: i64| DateTime::from_timestamp(s, 0).map(rfc3339).unwrap_or_default();
                let query =
                    [("startDateTime", at(cursor.window_start)), ("endDateTime", at(cursor.window_end))];
                let url = self.url("me/calendarView/delta");
                self.send(Call::read("delta"), || self.get_link(token, &url).query(&query)).await
            }
        }
    }

    /// [`ProviderClient::pull_page`](crate::ports::ProviderClient::pull_page) for events: one
    /// delta page, starting or restarting a round when due.
    pub(super) async fn pull_events(
        &self,
        token: &SecretString,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        let now = Utc::now();
        let mut cur = match cursor {
            None => Cursor::fresh(now, self.window_days),
            Some(c) => Cursor::parse(c)?,
        };
        let roll = chrono::Duration::from_std(self.pacing.window_roll).unwrap_or(chrono::Duration::hours(6));
        if !cur.in_round && (cur.link.is_none() || cur.window_start + roll.num_seconds() <= now.timestamp()) {
            if cur.link.is_some() {
                cur.restart(now, self.window_days);
            } else {
                let known = std::mem::take(&mut cur.known);
                cur = Cursor { known, unseen: cur.unseen.take(), ..Cursor::fresh(now, self.window_days) };
            }
        }
        let mut reply = self.delta_request(token, &cur).await?;
        if reply.status == StatusCode::GONE {
            tracing::warn!(code = ?error_code(&reply.body), "Graph delta state is gone; resyncing the window");
            cur.restart(now, self.window_days);
            reply = self.delta_request(token, &cur).await?;
        }
        let reply = reply.check()?;
        let page: DeltaPage = reply.json()?;
        let mut records = Vec::with_capacity(page.value.len());
        for item in &page.value {
            let (record, end) = self.map_event(item)?;
            let id = record.external_id.as_str().to_owned();
            if let Some(unseen) = cur.unseen.as_mut() {
                unseen.remove(&id);
            }
            match (record.deleted, end) {
                (true, _) => {
                    cur.known.remove(&id);
                }
                (false, _) if cur.overflow => {}
                (false, end) => {
                    cur.known.insert(id, end.unwrap_or(cur.window_end));
                    if cur.known.len() > MAX_KNOWN {
                        cur.known.clear();
                        cur.overflow = true;
                    }
                }
            }
            records.push(record);
        }
        match (page.next_link, page.delta_link) {
            (Some(next), _) => {
                cur.link = Some(next);
                cur.in_round = true;
                Ok(PulledPage { records, cursor: cur.to_cursor(), has_more: true, reconcile_deletes: false })
            }
            (None, Some(delta)) => {
                for id in cur.unseen.take().into_iter().flatten() {
                    cur.known.remove(&id);
                    let external_id = ExternalId::parse(id).map_err(|e| {
                        ProviderError::permanent(format!("an unusable event id in the cursor: {e}"))
                    })?;
                    records.push(RemoteRecord {
                        external_id,
                        object: ObjectType::Events,
                        fields: Fields::new(),
                        remote_modified_at: None,
                        deleted: true,
                        etag: None,
                    });
                }
                cur.link = Some(delta);
                cur.in_round = false;
                Ok(PulledPage { records, cursor: cur.to_cursor(), has_more: false, reconcile_deletes: false })
            }
            (None, None) => Err(ProviderError::permanent(
                "a Graph delta page with neither @odata.nextLink nor @odata.deltaLink",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_expects_known_events_still_in_the_new_window_and_forgets_past_ones() {
        let now = Utc::now();
        let mut c = Cursor::fresh(now - chrono::Duration::days(1), 7);
        c.link = Some("http://graph.test/v1.0/me/calendarView/delta?$deltatoken=x".into());
        c.known.insert("past".into(), (now - chrono::Duration::hours(1)).timestamp());
        c.known.insert("future".into(), (now + chrono::Duration::hours(5)).timestamp());
        c.restart(now, 7);
        assert_eq!(c.link, None);
        assert_eq!(c.window_start, now.timestamp());
        assert_eq!(c.unseen, Some(BTreeSet::from(["future".to_owned()])));
        assert!(!c.known.contains_key("past"));
        assert_eq!(Cursor::parse(&c.to_cursor()).unwrap(), c);
        assert!(matches!(Cursor::parse(&SyncCursor::new("garbage")), Err(ProviderError::CursorExpired)));
        let mut before = Cursor::fresh(Utc::now(), 30);
        before.v = 1;
        assert!(
            matches!(Cursor::parse(&before.to_cursor()), Err(ProviderError::CursorExpired)),
            "a cursor from before ical_uid resyncs once"
        );

        let mut full = Cursor::fresh(now, 7);
        full.overflow = true;
        full.restart(now, 7);
        assert_eq!(full.unseen, None);
        assert!(!full.overflow);
    }
}
