//! Pulls: `transcripts` newest first, 50 a page with `skip`, inside a window fixed when a
//! traversal starts (<https://docs.fireflies.ai/graphql-api/query/transcripts>).
//!
//! A traversal lists `[fromDate, toDate]`: `toDate` is the time it started (plus a few minutes
//! of slack for clocks), so meetings processed meanwhile do not push the pages down; `fromDate`
//! is absent on the first (full) traversal, and afterwards [`LOOKBACK`] before the newest meeting
//! date seen. The lookback is there because a transcript becomes visible only once Fireflies has
//! processed it, minutes to hours after the meeting started (its `date`): two days covers a long
//! recording finished late, and re-reading two days of meetings costs one or two requests.
//! Once every [`RECONCILE_EVERY`] (and when a webhook or a manual sync asks,
//! [`ProviderClient::check_deletes_now`]) the traversal widens to [`WIDE_LOOKBACK`], which also
//! catches a transcript that appeared later still, and its last page asks the worker to
//! reconcile deletes against [`FirefliesClient::ids_page`]'s listing of every live id.
//!
//! [`ProviderClient::check_deletes_now`]: crate::ports::ProviderClient::check_deletes_now

use std::sync::atomic::Ordering;

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::FirefliesClient;
use crate::domain::record::Fields;
use crate::domain::{ExternalId, ObjectType, RemoteRecord, SyncCursor};
use crate::ports::{IdPage, ProviderError, PulledPage};

/// How far before the newest meeting seen an incremental traversal starts.
pub const LOOKBACK: Duration = Duration::hours(48);
/// The window of the daily wide traversal (late transcripts, and the delete reconciliation).
pub const WIDE_LOOKBACK: Duration = Duration::days(30);
/// How often a traversal widens and reconciles deletes.
pub const RECONCILE_EVERY: Duration = Duration::hours(24);
/// `limit`'s maximum.
const PAGE: u32 = 50;
/// Slack on `toDate` for the distance between our clock and Fireflies'.
const CLOCK_SLACK: Duration = Duration::minutes(5);

const LIST: &str = "query Transcripts($limit: Int, $skip: Int, $fromDate: DateTime, $toDate: DateTime) {
  transcripts(limit: $limit, skip: $skip, fromDate: $fromDate, toDate: $toDate) {
    id title date dateString duration organizer_email host_email participants
    calendar_id cal_id calendar_type meeting_link transcript_url
    meeting_attendees { displayName email name }
    summary { overview action_items keywords short_summary }
  }
}";

const IDS: &str = "query TranscriptIds($limit: Int, $skip: Int) {
  transcripts(limit: $limit, skip: $skip) { id }
}";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Cursor {
    v: u8,
    /// Window of the traversal in progress (epoch ms); `to == None`: none in progress.
    from: Option<i64>,
    to: Option<i64>,
    skip: u32,
    /// The newest meeting date seen (epoch ms).
    high: Option<i64>,
    /// When deletes were last reconciled (epoch ms).
    reconciled: Option<i64>,
    /// The traversal in progress is the wide one: its last page reconciles deletes.
    wide: bool,
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

    /// Fixes the window of a new traversal.
    fn start(&mut self, now: DateTime<Utc>, asked: bool) {
        let due =
            self.reconciled.is_none_or(|r| now.timestamp_millis() - r >= RECONCILE_EVERY.num_milliseconds());
        // The first traversal is a full listing: nothing to reconcile yet.
        self.wide = self.high.is_some() && (asked || due);
        let back = if self.wide { WIDE_LOOKBACK } else { LOOKBACK };
        self.from = self.high.map(|h| h - back.num_milliseconds());
        self.to = Some((now + CLOCK_SLACK).timestamp_millis());
        self.skip = 0;
        if self.high.is_none() {
            self.reconciled = Some(now.timestamp_millis());
        }
    }
}

fn iso(ms: i64) -> Option<String> {
    DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

impl FirefliesClient {
    pub(super) async fn pull(
        &self,
        token: &SecretString,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        let mut state = Cursor::parse(cursor)?;
        let now = Utc::now();
        if state.to.is_none() {
            state.start(now, self.deletes_asked.swap(false, Ordering::Relaxed));
        }
        let variables = json!({
            "limit": PAGE,
            "skip": state.skip,
            "fromDate": state.from.and_then(iso),
            "toDate": state.to.and_then(iso),
        });
        let data = self.query(token, "transcripts", LIST, variables).await?;
        let items = data.get("transcripts").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut records = Vec::with_capacity(items.len());
        for item in &items {
            let record = to_record(item)?;
            if let Some(ms) = item.get("date").and_then(Value::as_f64) {
                state.high = Some(state.high.map_or(ms as i64, |h| h.max(ms as i64)));
            }
            records.push(record);
        }
        if items.len() as u32 >= PAGE {
            state.skip += PAGE;
            return Ok(PulledPage {
                records,
                cursor: state.encode(),
                has_more: true,
                reconcile_deletes: false,
            });
        }
        let reconcile = state.wide;
        if reconcile {
            state.reconciled = Some(now.timestamp_millis());
        }
        state.from = None;
        state.to = None;
        state.skip = 0;
        state.wide = false;
        Ok(PulledPage { records, cursor: state.encode(), has_more: false, reconcile_deletes: reconcile })
    }

    /// One page of every live transcript id; `after` is the `skip` the previous page named.
    pub(super) async fn ids_page(
        &self,
        token: &SecretString,
        after: Option<&str>,
    ) -> Result<IdPage, ProviderError> {
        let skip: u32 = match after {
            None => 0,
            Some(a) => a.parse().map_err(|_| ProviderError::permanent("not a Fireflies id page token"))?,
        };
        let data = self.query(token, "transcripts.ids", IDS, json!({ "limit": PAGE, "skip": skip })).await?;
        let items = data.get("transcripts").and_then(Value::as_array).cloned().unwrap_or_default();
        let ids = items
            .iter()
            .filter_map(|t| t.get("id").and_then(Value::as_str))
            .map(ExternalId::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ProviderError::permanent(format!("Fireflies sent an unusable id: {e}")))?;
        let next = (items.len() as u32 >= PAGE).then(|| (skip + PAGE).to_string());
        Ok(IdPage { ids, next })
    }
}

fn text(item: &Value, pointer: &str) -> Option<String> {
    item.pointer(pointer).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

fn emails<'a>(values: impl Iterator<Item = &'a Value>) -> Vec<String> {
    let mut out: Vec<String> = values
        .filter_map(Value::as_str)
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| e.contains('@'))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// One transcript as a canonical record: `title`, `start` and `end` (UTC), `duration_minutes`,
/// `organizer`, `participants` (every email Fireflies lists), `attendees` (the invite's),
/// `attendee_names`, `summary`, `keywords`, `action_items` (`{text, assignee}`),
/// `calendar_event_id` (the Google event id, or for `calendar_type` `outlook` the event's iCalUID),
/// `calendar_type`, `meeting_link`,
/// `transcript_url`.
pub(super) fn to_record(item: &Value) -> Result<RemoteRecord, ProviderError> {
    let id = item
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::permanent("a Fireflies transcript without an id"))?;
    let external_id = ExternalId::parse(id)
        .map_err(|e| ProviderError::permanent(format!("Fireflies sent an unusable id: {e}")))?;
    let start =
        item.get("date").and_then(Value::as_f64).and_then(|ms| DateTime::from_timestamp_millis(ms as i64));
    let minutes = item.get("duration").and_then(Value::as_f64);
    let mut fields = Fields::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            fields.insert(k.to_owned(), v);
        }
    };
    let rfc = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    put("title", json!(text(item, "/title")));
    put("start", json!(start.map(rfc)));
    put("end", json!(start.zip(minutes).map(|(s, m)| rfc(s + Duration::seconds((m * 60.0).round() as i64)))));
    put("duration_minutes", json!(minutes));
    put(
        "organizer",
        json!(
            text(item, "/organizer_email")
                .or_else(|| text(item, "/host_email"))
                .map(|e| e.to_ascii_lowercase())
        ),
    );
    put(
        "participants",
        json!(emails(item.get("participants").and_then(Value::as_array).into_iter().flatten())),
    );
    let attendees = item.get("meeting_attendees").and_then(Value::as_array).cloned().unwrap_or_default();
    put("attendees", json!(emails(attendees.iter().filter_map(|a| a.get("email")))));
    let names: Vec<String> =
        attendees.iter().filter_map(|a| text(a, "/displayName").or_else(|| text(a, "/name"))).collect();
    put("attendee_names", json!(names));
    put("summary", json!(text(item, "/summary/overview")));
    put("keywords", item.pointer("/summary/keywords").cloned().unwrap_or(Value::Null));
    let items =
        parse_action_items(item.pointer("/summary/action_items").and_then(Value::as_str).unwrap_or(""));
    put(
        "action_items",
        Value::Array(
            items.into_iter().map(|(text, assignee)| json!({ "text": text, "assignee": assignee })).collect(),
        ),
    );
    put("calendar_event_id", json!(text(item, "/calendar_id").or_else(|| text(item, "/cal_id"))));
    put("calendar_type", json!(text(item, "/calendar_type")));
    put("meeting_link", json!(text(item, "/meeting_link")));
    put("transcript_url", json!(text(item, "/transcript_url")));
    Ok(RemoteRecord {
        external_id,
        object: ObjectType::Transcripts,
        fields,
        remote_modified_at: start,
        deleted: false,
        etag: None,
    })
}

/// Fireflies' `action_items` text as `(item, assignee)` pairs: a `**Name**` line names whose items
/// follow, each other non-empty line is one item, its trailing `(mm:ss)` timestamp and list
/// markers dropped.
pub fn parse_action_items(raw: &str) -> Vec<(String, Option<String>)> {
    let mut assignee: Option<String> = None;
    let mut out = Vec::new();
    for line in raw.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(name) = line.strip_prefix("**").and_then(|l| l.strip_suffix("**")) {
            assignee = Some(name.trim().to_owned()).filter(|n| !n.is_empty());
            continue;
        }
        let mut item = line.trim_start_matches(['-', '*', '•']).trim();
        if let Some((head, tail)) = item.rsplit_once('(')
            && tail.ends_with(')')
            && tail[..tail.len() - 1].chars().all(|c| c.is_ascii_digit() || c == ':')
        {
            item = head.trim_end();
        }
        if !item.is_empty() {
            out.push((item.to_owned(), assignee.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_items_keep_their_assignee_and_lose_their_timestamps() {
        let raw = "**Ada Lovelace**\nSend the revised proposal (05:12)\n- Book the follow-up call\n\n**Contact 1**\nShare the questionnaire (1:02:03)\n";
        assert_eq!(
            parse_action_items(raw),
            vec![
                ("Send the revised proposal".into(), Some("Ada Lovelace".into())),
                ("Book the follow-up call".into(), Some("Ada Lovelace".into())),
                ("Share the questionnaire".into(), Some("Contact 1".into())),
            ]
        );
        assert_eq!(parse_action_items("Call back (maybe)"), vec![("Call back (maybe)".into(), None)]);
        assert!(parse_action_items("").is_empty());
    }

    #[test]
    fn a_transcript_maps_to_utc_times_sorted_emails_and_action_items() {
        let item = json!({
            "id": "01ABC", "title": " Intro ", "date": 1_796_000_000_000_i64, "duration": 30.5,
            "organizer_email": "Ada@Acme.example", "participants": ["b@x.example", "ada@acme.example", "B@x.example"],
            "calendar_id": "gcal1", "meeting_attendees": [{ "displayName": "Bo", "email": "b@x.example" }],
            "summary": { "overview": "Talked.", "action_items": "**Ada**\nSend it (00:10)", "keywords": ["k"] }
        });
        let r = to_record(&item).unwrap();
        assert_eq!(r.external_id.as_str(), "01ABC");
        assert_eq!(r.fields["title"], "Intro");
        assert_eq!(r.fields["start"], "2026-11-30T00:53:20Z");
        assert_eq!(r.fields["end"], "2026-11-30T01:23:50Z");
        assert_eq!(r.fields["organizer"], "ada@acme.example");
        assert_eq!(r.fields["participants"], json!(["ada@acme.example", "b@x.example"]));
        assert_eq!(r.fields["attendees"], json!(["b@x.example"]));
        assert_eq!(r.fields["calendar_event_id"], "gcal1");
        assert_eq!(r.fields["action_items"], json!([{ "text": "Send it", "assignee": "Ada" }]));
        assert!(to_record(&json!({ "title": "no id" })).is_err());
    }

    #[test]
    fn traversals_look_back_two_days_and_widen_once_a_day_or_when_asked() {
        let now = DateTime::parse_from_rfc3339("2026-12-05T12:00:00Z").unwrap().to_utc();
        let mut c = Cursor { v: 1, ..Cursor::default() };
        c.start(now, false);
        assert_eq!((c.from, c.wide), (None, false), "the first traversal lists everything");
        let high = (now - Duration::hours(1)).timestamp_millis();
        let mut c = Cursor {
            v: 1,
            high: Some(high),
            reconciled: Some(now.timestamp_millis() - 1000),
            ..Cursor::default()
        };
        c.start(now, false);
        assert_eq!(c.from, Some(high - LOOKBACK.num_milliseconds()));
        assert!(!c.wide);
        c.start(now, true);
        assert_eq!((c.from, c.wide), (Some(high - WIDE_LOOKBACK.num_milliseconds()), true), "asked");
        let mut stale = Cursor { reconciled: Some((now - RECONCILE_EVERY).timestamp_millis()), ..c.clone() };
        stale.start(now, false);
        assert!(stale.wide, "a day since the last reconciliation");
        assert!(matches!(
            Cursor::parse(Some(&SyncCursor::new("{\"v\":9}"))),
            Err(ProviderError::CursorExpired)
        ));
    }
}
