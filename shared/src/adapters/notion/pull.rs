//! Pulls: pages of a data source in `last_edited_time` order, a traversal at a time.
//!
//! A traversal lists the live pages edited on or after `since` (all of them on a full pull), then,
//! when incremental, the trashed ones edited since (Notion's `in_trash: true` query), which come
//! back as deletes. Each request is one page of at most 100, continued with Notion's
//! `start_cursor`; the cursor is checkpointed after every page.
//!
//! Notion rounds `last_edited_time` down to the minute, so an edit later in a minute already read
//! does not move the stamp. A traversal therefore notes Notion's clock (the `Date` of its first
//! answer), rounded to the minute, as `started`; the next traversal starts one minute before it
//! (`since = started - 1 min`), which also covers a page whose edit was still being indexed. Pages
//! re-read from a minute that had closed before `started` cannot have changed without a new stamp:
//! the previous traversal remembers them (`seen`, id and stamp) and the next one skips them, so a
//! quiet connection's pull delivers nothing again and never loops; a page re-read from the minute
//! that was still open is delivered again (an edit may hide in it).
//! <https://developers.notion.com/reference/query-a-data-source>
//!
//! One query returns at most 10,000 results: pagination then stops and the answer carries
//! `request_status: incomplete` (<https://developers.notion.com/guides/data-apis/query-large-data-sources>).
//! A listing whose query was capped goes on in the same traversal with a new query from the
//! last stamp it read (`window`, `on_or_after` that stamp; the pages of that minute come again,
//! which changes nothing), so a data source of any size is read whole. More than 10,000 pages
//! in one minute (a bulk edit in Notion's table view) cannot be windowed by that stamp: that
//! minute is then listed on its own, by `created_time` (`split`; a compound filter of the minute
//! and `created_time` on or after a bound, sorted by creation), its capped queries windowed by the
//! last creation stamp read, and the listing goes on after the minute. Only more than 10,000
//! pages both created and edited in one minute fail the pull, saying so, rather than skip pages.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Timelike, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::properties::to_canonical;
use super::{Call, NotionClient};
use crate::domain::record::Fields;
use crate::domain::{ExternalId, ObjectType, RemoteRecord, SyncCursor};
use crate::ports::{ProviderError, PulledPage};

/// How far before the minute a traversal started in the next one begins.
pub const LOOKBACK: chrono::Duration = chrono::Duration::minutes(1);
/// Notion's timestamp precision.
const ONE_MINUTE: chrono::Duration = chrono::Duration::minutes(1);
/// Pages remembered as delivered from a closed minute (a bound on the cursor's size; past it
/// pages are simply delivered again, which changes nothing).
const MAX_SEEN: usize = 500;
const PAGE_SIZE: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Cursor {
    v: u8,
    /// Lower bound (`on_or_after`) of the traversal in progress; `None` on a full listing.
    since: Option<DateTime<Utc>>,
    /// Notion's clock, to the minute, at this traversal's first answer.
    started: Option<DateTime<Utc>>,
    /// Listing the trash (the second half of an incremental traversal).
    trash: bool,
    /// Notion's `start_cursor` within the current listing.
    next: Option<String>,
    /// Delivered by the previous traversal from a closed minute: id -> stamp (epoch ms).
    seen: BTreeMap<String, i64>,
    /// What this traversal delivers from a closed minute, for the next one's `seen`.
    fresh: BTreeMap<String, i64>,
    /// After a capped query: the lower bound of the current listing's query instead of `since`.
    #[serde(default)]
    window: Option<DateTime<Utc>>,
    /// The current query said `request_status: incomplete` (it stops at Notion's cap).
    #[serde(default)]
    capped: bool,
    /// The first stamp the current query listed.
    #[serde(default)]
    first: Option<DateTime<Utc>>,
    /// The last stamp the current query listed.
    #[serde(default)]
    last: Option<DateTime<Utc>>,
    /// Listing one minute of over 10,000 edits by creation time: that minute's stamp.
    #[serde(default)]
    split: Option<DateTime<Utc>>,
    /// In a split, after a capped query: the current query's lower bound of `created_time`.
    #[serde(default)]
    created_from: Option<DateTime<Utc>>,
    /// In a split: the last `created_time` the current query listed.
    #[serde(default)]
    last_created: Option<DateTime<Utc>>,
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Cursor {
    pub(super) fn parse(cursor: Option<&SyncCursor>) -> Result<Self, ProviderError> {
        match cursor {
            None => Ok(Self { v: 1, ..Self::default() }),
            Some(c) => c.json::<Cursor>().filter(|c| c.v == 1).ok_or(ProviderError::CursorExpired),
        }
    }

    fn encode(&self) -> SyncCursor {
        SyncCursor::of_json(self)
    }

    fn body(&self) -> Value {
        let mut body = json!({
            "page_size": PAGE_SIZE,
            "sorts": [{ "timestamp": "last_edited_time", "direction": "ascending" }],
        });
        if let Some(minute) = self.split {
            // <https://developers.notion.com/reference/post-database-query-filter#compound-filter-conditions>
            let mut all = vec![
                json!({ "timestamp": "last_edited_time", "last_edited_time": { "on_or_after": iso(minute) } }),
                json!({ "timestamp": "last_edited_time", "last_edited_time": { "before": iso(minute + ONE_MINUTE) } }),
            ];
            if let Some(from) = self.created_from {
                all.push(
                    json!({ "timestamp": "created_time", "created_time": { "on_or_after": iso(from) } }),
                );
            }
            body["filter"] = json!({ "and": all });
            body["sorts"] = json!([{ "timestamp": "created_time", "direction": "ascending" }]);
        } else if let Some(since) = self.window.or(self.since) {
            body["filter"] = json!({
                "timestamp": "last_edited_time",
                "last_edited_time": { "on_or_after": iso(since) },
            });
        }
        if self.trash {
            body["in_trash"] = json!(true);
        }
        if let Some(next) = &self.next {
            body["start_cursor"] = json!(next);
        }
        body
    }

    /// After the last page of a capped query: the same listing goes on with a query from the last
    /// stamp read; when that would not move (over 10,000 pages share one minute's stamp), that
    /// minute is listed by creation time. In such a split the query goes on from the last
    /// creation stamp read, and fails when that would not move either.
    fn next_window(&mut self) -> Result<(), ProviderError> {
        let nothing = || ProviderError::permanent("Notion capped a query that listed nothing");
        if let Some(minute) = self.split {
            let from = self.last_created.ok_or_else(nothing)?;
            if self.created_from.is_some_and(|bound| from <= bound) {
                return Err(ProviderError::permanent(format!(
                    "more than 10,000 pages of a Notion data source were both created in the minute of \
                     {from} and edited in the minute of {minute}: Notion's 10,000-result query cap \
                     cannot be passed by last_edited_time nor by created_time"
                )));
            }
            (self.created_from, self.next, self.capped, self.last, self.last_created) =
                (Some(from), None, false, None, None);
            return Ok(());
        }
        let from = self.last.ok_or_else(nothing)?;
        // Every result of the capped query shares one stamp: a new query by stamp would list the
        // same 10,000 again.
        let one_minute = self.first.take().is_some_and(|first| first >= from)
            || self.window.or(self.since).is_some_and(|bound| from <= bound);
        if one_minute {
            (self.split, self.created_from, self.next, self.capped, self.last, self.last_created) =
                (Some(from), None, None, false, None, None);
            return Ok(());
        }
        (self.window, self.next, self.capped, self.last) = (Some(from), None, false, None);
        Ok(())
    }

    /// After the last page of a minute listed by creation time: the listing goes on after it.
    fn split_done(&mut self, minute: DateTime<Utc>) {
        (self.split, self.created_from, self.last_created, self.first) = (None, None, None, None);
        (self.window, self.next, self.capped, self.last) = (Some(minute + ONE_MINUTE), None, false, None);
    }

    /// Whether a page of this stamp is delivered, and remembered for the next traversal.
    fn admit(&mut self, id: &str, stamp: DateTime<Utc>) -> bool {
        let ms = stamp.timestamp_millis();
        if self.seen.get(id) == Some(&ms) {
            return false;
        }
        if let Some(started) = self.started
            && stamp < started
            && stamp >= started - LOOKBACK
            && self.fresh.len() < MAX_SEEN
        {
            self.fresh.insert(id.to_owned(), ms);
        }
        true
    }

    /// After the last page of a listing: the trash next (incremental), or the next traversal.
    /// Returns whether this traversal has more to list.
    fn listing_done(&mut self, now: DateTime<Utc>) -> bool {
        self.next = None;
        (self.window, self.capped, self.first, self.last) = (None, false, None, None);
        (self.split, self.created_from, self.last_created) = (None, None, None);
        if !self.trash && self.since.is_some() {
            self.trash = true;
            return true;
        }
        let started = self.started.unwrap_or_else(|| minute(now));
        *self = Cursor {
            v: 1,
            since: Some(started - LOOKBACK),
            seen: std::mem::take(&mut self.fresh),
            ..Cursor::default()
        };
        false
    }
}

fn minute(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(0).with_second(0).unwrap_or(t)
}

fn parse_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v?.as_str()?).ok().map(|t| t.to_utc())
}

impl NotionClient {
    pub(super) async fn pull(
        &self,
        token: &SecretString,
        object: ObjectType,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        let map = self.field_map(object)?;
        let mut state = Cursor::parse(cursor)?;
        if !self.databases.contains_key(&object) {
            // The contacts database is optional: without one there is nothing to pull.
            return Ok(PulledPage {
                records: Vec::new(),
                cursor: state.encode(),
                has_more: false,
                reconcile_deletes: false,
            });
        }
        let ds = self.data_source(token, object).await?;
        let path = format!("/data_sources/{ds}/query");
        let mut reply = self.query(token, &path, &state.body()).await?;
        if state.next.is_some() && is_bad_cursor(&reply) {
            // Notion no longer takes the listing's cursor: list again from `since` (pages are
            // delivered again, never skipped).
            state.next = None;
            reply = self.query(token, &path, &state.body()).await?;
        }
        let now = reply.provider_now().and_then(DateTime::from_timestamp_millis).unwrap_or_else(Utc::now);
        if state.started.is_none() {
            state.started = Some(minute(now));
        }
        let body: Value = reply.check()?.json()?;
        if body.pointer("/request_status/type").and_then(Value::as_str) == Some("incomplete") {
            state.capped = true;
        }
        let mut records = Vec::new();
        for page in body.get("results").and_then(Value::as_array).into_iter().flatten() {
            let (Some(id), Some(stamp)) =
                (page.get("id").and_then(Value::as_str), parse_time(page.get("last_edited_time")))
            else {
                continue;
            };
            state.first = state.first.or(Some(stamp));
            state.last = Some(stamp);
            if state.split.is_some() {
                state.last_created = parse_time(page.get("created_time")).or(state.last_created);
            }
            if !state.admit(id, stamp) {
                continue;
            }
            let in_trash = page
                .get("in_trash")
                .or_else(|| page.get("archived"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let mut fields = Fields::new();
            for (property, canonical) in map.pairs() {
                if let Some(v) = page
                    .pointer(&format!("/properties/{}", property.replace('~', "~0").replace('/', "~1")))
                    .and_then(to_canonical)
                {
                    fields.insert(canonical.to_owned(), v);
                }
            }
            let external_id = ExternalId::parse(id)
                .map_err(|e| ProviderError::permanent(format!("Notion page id: {e}")))?;
            records.push(RemoteRecord {
                external_id,
                object,
                fields,
                remote_modified_at: Some(stamp),
                deleted: in_trash,
                etag: None,
            });
        }
        let has_more = match body.get("next_cursor").and_then(Value::as_str) {
            Some(next) if body.get("has_more").and_then(Value::as_bool).unwrap_or(false) => {
                state.next = Some(next.to_owned());
                true
            }
            _ if state.capped => {
                state.next_window()?;
                true
            }
            _ => match state.split {
                Some(minute) => {
                    state.split_done(minute);
                    true
                }
                None => state.listing_done(now),
            },
        };
        Ok(PulledPage { records, cursor: state.encode(), has_more, reconcile_deletes: false })
    }

    async fn query(
        &self,
        token: &SecretString,
        path: &str,
        body: &Value,
    ) -> Result<super::Reply, ProviderError> {
        self.send(Call::read("data_sources.query"), || {
            self.request(http::Method::POST, path, token).json(body)
        })
        .await
    }
}

/// Notion's 400 for a `start_cursor` it no longer takes.
fn is_bad_cursor(reply: &super::Reply) -> bool {
    reply.status == http::StatusCode::BAD_REQUEST
        && reply
            .json_value()
            .and_then(|b| b.get("message")?.as_str().map(|m| m.contains("start_cursor")))
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2027-01-01T{h:02}:{m:02}:{s:02}Z")).unwrap().to_utc()
    }

    #[test]
    fn a_traversal_starts_one_minute_before_the_minute_the_last_one_started_in() {
        let mut c = Cursor::parse(None).unwrap();
        c.started = Some(at(10, 5, 0));
        assert!(!c.listing_done(at(10, 5, 30)), "a full listing has no trash half");
        assert_eq!(c.since, Some(at(10, 4, 0)));
        assert!(
            c.body()["filter"]["last_edited_time"]["on_or_after"]
                .as_str()
                .unwrap()
                .starts_with("2027-01-01T10:04:00")
        );
        c.started = Some(at(10, 20, 0));
        assert!(c.listing_done(at(10, 20, 0)), "then the trash");
        assert_eq!(c.body()["in_trash"], true);
        assert!(!c.listing_done(at(10, 20, 0)));
        assert_eq!(c.since, Some(at(10, 19, 0)));
    }

    #[test]
    fn pages_from_a_closed_minute_are_not_delivered_twice_but_the_open_minute_is_read_again() {
        let mut c =
            Cursor { v: 1, started: Some(at(10, 5, 0)), since: Some(at(10, 3, 0)), ..Cursor::default() };
        assert!(c.admit("closed", at(10, 4, 0)));
        assert!(c.admit("open", at(10, 5, 0)));
        assert!(c.admit("old", at(10, 3, 0)));
        c.listing_done(at(10, 5, 0));
        c.listing_done(at(10, 5, 0));
        c.started = Some(at(10, 6, 0));
        assert!(!c.admit("closed", at(10, 4, 0)), "same stamp from a closed minute: skipped");
        assert!(c.admit("open", at(10, 5, 0)), "the minute that was open may hide a later edit");
        let mut d = Cursor {
            v: 1,
            started: Some(at(10, 6, 0)),
            seen: [("p".into(), at(10, 4, 0).timestamp_millis())].into(),
            ..Cursor::default()
        };
        assert!(d.admit("p", at(10, 5, 0)), "a moved stamp is a new edit");
    }

    #[test]
    fn a_capped_query_goes_on_from_its_last_stamp_and_a_minute_over_the_cap_is_split_by_creation() {
        let mut c = Cursor {
            v: 1,
            started: Some(at(10, 5, 0)),
            capped: true,
            last: Some(at(9, 0, 0)),
            ..Cursor::default()
        };
        c.next_window().unwrap();
        assert_eq!((c.window, c.capped, c.last), (Some(at(9, 0, 0)), false, None));
        assert!(
            c.body()["filter"]["last_edited_time"]["on_or_after"]
                .as_str()
                .unwrap()
                .starts_with("2027-01-01T09:00:00")
        );
        c.capped = true;
        c.last = Some(at(9, 0, 0));
        c.next_window().unwrap();
        assert_eq!(c.split, Some(at(9, 0, 0)), "no progress by stamp: that minute by creation time");
        let body = c.body();
        assert_eq!(body["sorts"], json!([{ "timestamp": "created_time", "direction": "ascending" }]));
        let all = body["filter"]["and"].as_array().unwrap();
        assert_eq!(all.len(), 2, "{body}");
        assert!(
            all[0]["last_edited_time"]["on_or_after"].as_str().unwrap().starts_with("2027-01-01T09:00:00")
        );
        assert!(all[1]["last_edited_time"]["before"].as_str().unwrap().starts_with("2027-01-01T09:01:00"));
        c.capped = true;
        c.last_created = Some(at(8, 0, 0));
        c.next_window().unwrap();
        assert_eq!((c.created_from, c.capped, c.next.as_deref()), (Some(at(8, 0, 0)), false, None));
        let body = c.body();
        assert!(
            body["filter"]["and"][2]["created_time"]["on_or_after"]
                .as_str()
                .unwrap()
                .starts_with("2027-01-01T08:00:00")
        );
        c.capped = true;
        c.last_created = Some(at(8, 0, 0));
        assert!(
            matches!(c.next_window(), Err(ProviderError::Permanent(_))),
            "no progress by creation either: over 10,000 created and edited in one minute"
        );
        c.split_done(at(9, 0, 0));
        assert_eq!(
            (c.split, c.created_from, c.window),
            (None, None, Some(at(9, 1, 0))),
            "then after the minute"
        );
        assert!(body_is_by_edit(&c));
        c.capped = true;
        c.last = Some(at(9, 30, 0));
        c.next_window().unwrap();
        assert!(!c.listing_done(at(10, 5, 0)));
        assert_eq!(
            (c.window, c.since),
            (None, Some(at(10, 4, 0))),
            "the next traversal starts from its own bound"
        );
        let old = r#"{"v":1,"since":null,"started":null,"trash":false,"next":null,"seen":{},"fresh":{}}"#;
        assert!(
            Cursor::parse(Some(&SyncCursor::new(old))).is_ok(),
            "cursors from before the windows still read"
        );
    }

    fn body_is_by_edit(c: &Cursor) -> bool {
        let body = c.body();
        body["sorts"][0]["timestamp"] == "last_edited_time"
            && body["filter"]["timestamp"] == "last_edited_time"
    }

    #[test]
    fn an_unreadable_cursor_asks_for_a_full_pull() {
        assert!(matches!(
            Cursor::parse(Some(&SyncCursor::new("not json"))),
            Err(ProviderError::CursorExpired)
        ));
        let c = Cursor::parse(None).unwrap();
        assert_eq!(Cursor::parse(Some(&c.encode())).unwrap(), c);
    }
}
