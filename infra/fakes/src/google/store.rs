//! The fake calendar's events: Google's Event resources kept as JSON objects with a change
//! sequence, deterministic seeding, and the list semantics of `events.list` (time window,
//! `singleEvents`, `showDeleted`, page tokens and sync tokens that encode a change-sequence position).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value, json};

/// The calendar owner's address; the fake serves one calendar (`primary` or this address).
pub const OWNER: &str = "owner@acme.example";
/// The owner's own domain (internal attendees).
pub const OWN_DOMAIN: &str = "acme.example";
const INTERNAL: &[&str] = &["ann@acme.example", "bob@acme.example", "cho@acme.example", "dev@acme.example"];
const OUTSIDE: &[&str] =
    &["Jane.Doe@Globex.example", "raj@initech.example", "li@umbrella.example", "sam@hooli.example"];
const TITLES: &[&str] = &["Intro call", "Pipeline review", "Demo", "1:1", "Planning", "Contract review"];

/// Top-level Event properties a client may write (everything else in a request body is ignored).
const WRITABLE: &[&str] = &[
    "summary",
    "description",
    "location",
    "start",
    "end",
    "attendees",
    "status",
    "extendedProperties",
    "transparency",
    "visibility",
    "colorId",
    "reminders",
];

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A moment of an `EventDateTime`: an instant, or a whole day (all-day events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum When {
    Day(NaiveDate),
    At(DateTime<Utc>),
}

impl When {
    /// Parses `{"dateTime": ...}` or `{"date": ...}`.
    pub fn parse(v: &Value) -> Result<When, String> {
        if let Some(dt) = v.get("dateTime").and_then(Value::as_str) {
            return DateTime::parse_from_rfc3339(dt)
                .map(|d| When::At(d.with_timezone(&Utc)))
                .map_err(|_| format!("Invalid date-time value: {dt}"));
        }
        if let Some(d) = v.get("date").and_then(Value::as_str) {
            return NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map(When::Day)
                .map_err(|_| format!("Invalid date value: {d}"));
        }
        Err("Missing time: an EventDateTime needs date or dateTime".into())
    }

    /// The instant (all-day: midnight UTC, the fake calendar's time zone).
    pub fn instant(self) -> DateTime<Utc> {
        match self {
            When::At(t) => t,
            When::Day(d) => Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default()),
        }
    }

    fn to_json(self) -> Value {
        match self {
            When::Day(d) => json!({ "date": d.format("%Y-%m-%d").to_string() }),
            When::At(t) => json!({ "dateTime": rfc3339(t), "timeZone": "UTC" }),
        }
    }
}

/// One event (or a recurring event's parent) with its change sequence.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// The writable properties plus `id`, `status`, and for instances `recurringEventId` and
    /// `originalStartTime`.
    pub body: Map<String, Value>,
    /// Change sequence of the last change (also the etag's source).
    pub seq: u64,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// iCalendar sequence, bumped when the time changes.
    pub ical_sequence: i64,
    /// A recurring event's parent (listed only without `singleEvents`).
    pub parent: bool,
}

impl StoredEvent {
    pub fn id(&self) -> &str {
        self.body.get("id").and_then(Value::as_str).unwrap_or("")
    }

    pub fn cancelled(&self) -> bool {
        self.body.get("status").and_then(Value::as_str) == Some("cancelled")
    }

    pub fn is_instance(&self) -> bool {
        self.body.contains_key("recurringEventId")
    }

    pub fn etag(&self) -> String {
        format!("\"{}\"", 3_181_161_784_000_000u64 + self.seq * 1_000)
    }

    pub fn start(&self) -> Option<When> {
        self.body.get("start").and_then(|v| When::parse(v).ok())
    }

    pub fn end(&self) -> Option<When> {
        self.body.get("end").and_then(|v| When::parse(v).ok())
    }

    /// The Event resource as the API returns it. Cancelled events carry only what Google keeps.
    pub fn render(&self) -> Value {
        let mut out = Map::new();
        out.insert("kind".into(), json!("calendar#event"));
        out.insert("etag".into(), json!(self.etag()));
        out.insert("id".into(), json!(self.id()));
        if self.cancelled() {
            out.insert("status".into(), json!("cancelled"));
            out.insert("updated".into(), json!(rfc3339(self.updated)));
            for key in ["recurringEventId", "originalStartTime"] {
                if let Some(v) = self.body.get(key) {
                    out.insert(key.into(), v.clone());
                }
            }
            return Value::Object(out);
        }
        for (k, v) in &self.body {
            if k != "id" {
                out.insert(k.clone(), v.clone());
            }
        }
        out.entry("status").or_insert(json!("confirmed"));
        out.insert(
            "htmlLink".into(),
            json!(format!("https://www.google.com/calendar/event?eid={}", self.id())),
        );
        out.insert("created".into(), json!(rfc3339(self.created)));
        out.insert("updated".into(), json!(rfc3339(self.updated)));
        out.insert("creator".into(), json!({ "email": OWNER, "self": true }));
        out.insert(
            "organizer".into(),
            self.body.get("organizer").cloned().unwrap_or(json!({ "email": OWNER, "self": true })),
        );
        let uid = self.body.get("recurringEventId").and_then(Value::as_str).unwrap_or(self.id()).to_owned();
        out.insert("iCalUID".into(), json!(format!("{uid}@google.com")));
        out.insert("sequence".into(), json!(self.ical_sequence));
        out.insert("eventType".into(), json!("default"));
        out.insert(
            "reminders".into(),
            self.body.get("reminders").cloned().unwrap_or(json!({ "useDefault": true })),
        );
        Value::Object(out)
    }
}

/// True for a client-chosen event id Google accepts: base32hex characters, 5 to 1024 of them.
pub fn valid_event_id(id: &str) -> bool {
    (5..=1024).contains(&id.len()) && id.bytes().all(|b| matches!(b, b'a'..=b'v' | b'0'..=b'9'))
}

/// Checks and copies the writable properties of a request body. `full`: an insert or update,
/// which needs `start` and `end`.
pub fn writable_properties(body: &Value, full: bool) -> Result<Map<String, Value>, String> {
    let Some(obj) = body.as_object() else {
        return Err("The request body must be an Event object.".into());
    };
    let mut out = Map::new();
    for key in WRITABLE {
        if let Some(v) = obj.get(*key) {
            out.insert((*key).to_owned(), v.clone());
        }
    }
    for key in ["start", "end"] {
        match out.get(key) {
            Some(v) => {
                When::parse(v)?;
            }
            None if full => return Err(format!("Missing {key} time.")),
            None => {}
        }
    }
    if let Some(a) = out.get("attendees") {
        let ok = a.as_array().is_some_and(|list| {
            list.iter().all(|x| x.get("email").and_then(Value::as_str).is_some_and(|e| e.contains('@')))
        });
        if !ok {
            return Err("Invalid attendee email.".into());
        }
    }
    if let Some(s) = out.get("status").and_then(Value::as_str)
        && !matches!(s, "confirmed" | "tentative" | "cancelled")
    {
        return Err(format!("Invalid value for status: {s}"));
    }
    if let Some(Value::Array(list)) = out.get("attendees") {
        for a in list {
            if let Some(r) = a.get("responseStatus").and_then(Value::as_str)
                && !RESPONSE_STATUSES.contains(&r)
            {
                return Err(format!("Invalid value for responseStatus: {r}"));
            }
        }
    }
    Ok(out)
}

/// `EventAttendee.responseStatus` values (the discovery document's "Possible values").
const RESPONSE_STATUSES: &[&str] = &["needsAction", "declined", "tentative", "accepted"];

/// The attendees as Google stores them: every attendee has a `responseStatus` — the one the
/// request gave, else the one the same address already had on the event, else `needsAction`
/// (<https://developers.google.com/calendar/api/v3/reference/events#attendees.responseStatus>);
/// the calendar owner is marked `organizer` and `self` and has accepted.
fn with_attendee_defaults(attendees: &Value, previous: Option<&Value>) -> Value {
    let Some(list) = attendees.as_array() else { return attendees.clone() };
    let earlier = |email: &str| -> Option<Value> {
        previous?.as_array()?.iter().find_map(|p| {
            let same = p.get("email").and_then(Value::as_str).is_some_and(|e| e.eq_ignore_ascii_case(email));
            if same { p.get("responseStatus").cloned() } else { None }
        })
    };
    let out: Vec<Value> = list
        .iter()
        .map(|a| {
            let mut a = a.as_object().cloned().unwrap_or_default();
            let email = a.get("email").and_then(Value::as_str).unwrap_or_default().to_owned();
            let owner = email.eq_ignore_ascii_case(OWNER);
            if owner {
                a.insert("organizer".into(), json!(true));
                a.insert("self".into(), json!(true));
            }
            if !a.contains_key("responseStatus") {
                let status =
                    earlier(&email).unwrap_or_else(|| json!(if owner { "accepted" } else { "needsAction" }));
                a.insert("responseStatus".into(), status);
            }
            Value::Object(a)
        })
        .collect();
    Value::Array(out)
}

/// False when an event's end comes before its start, or an all-day event ends on (or before) the
/// day it starts: Google refuses both with 400 `timeRangeEmpty`. A timed event may last 0 s.
pub fn time_range_ok(start: Option<&Value>, end: Option<&Value>) -> bool {
    match (start.map(When::parse), end.map(When::parse)) {
        (Some(Ok(When::Day(s))), Some(Ok(When::Day(e)))) => e > s,
        (Some(Ok(s)), Some(Ok(e))) => e.instant() >= s.instant(),
        _ => true,
    }
}

/// An insert asked for an id that is taken (cancelled events keep theirs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateId;

/// What a listing asks for.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub single_events: bool,
    pub show_deleted: bool,
    pub time_min: Option<DateTime<Utc>>,
    pub time_max: Option<DateTime<Utc>>,
    pub updated_min: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub struct Store {
    events: BTreeMap<String, StoredEvent>,
    /// The last change sequence handed out.
    pub seq: u64,
    /// Sync tokens below this position answer 410.
    pub min_sync_seq: u64,
    next_id: u64,
}

impl Store {
    /// Deterministic events around `anchor` (a day start): `n` single events spread over the days
    /// from yesterday to anchor + 9 days (some outside attendees, some internal only, every fifth
    /// all-day), plus a weekly series with `weeks` instances flattened as `singleEvents` does.
    pub fn seeded(n: usize, weeks: usize, seed: u64, anchor: DateTime<Utc>) -> Self {
        let mut store = Store { events: BTreeMap::new(), seq: 0, min_sync_seq: 0, next_id: 0 };
        let pick =
            |i: usize, k: u64, len: usize| ((i as u64 * 2_654_435_761 + seed * 97 + k) % len as u64) as usize;
        for i in 0..n {
            let day = (i % 11) as i64 - 1;
            let hour = 8 + (i % 9) as i64;
            let start = anchor + Duration::days(day) + Duration::hours(hour);
            let mut attendees = vec![
                json!({ "email": OWNER, "organizer": true, "self": true, "responseStatus": "accepted" }),
            ];
            attendees
                .push(json!({ "email": INTERNAL[pick(i, 1, INTERNAL.len())], "responseStatus": "accepted" }));
            if i % 3 != 1 {
                attendees.push(
                    json!({ "email": OUTSIDE[pick(i, 2, OUTSIDE.len())], "responseStatus": "needsAction" }),
                );
            }
            let (start_v, end_v) = if i % 5 == 4 {
                let d = (anchor + Duration::days(day)).date_naive();
                (When::Day(d), When::Day(d + Duration::days(1)))
            } else {
                (When::At(start), When::At(start + Duration::minutes(30 + 15 * (i % 3) as i64)))
            };
            let mut body = Map::new();
            body.insert("summary".into(), json!(format!("{} #{i}", TITLES[pick(i, 3, TITLES.len())])));
            body.insert("description".into(), json!(format!("Seeded event {i}")));
            if i % 2 == 0 {
                body.insert("location".into(), json!("Room 4"));
            }
            body.insert("start".into(), start_v.to_json());
            body.insert("end".into(), end_v.to_json());
            body.insert("attendees".into(), Value::Array(attendees));
            let id = format!("seed{i:05}");
            store.put_new(id, body, anchor - Duration::days(30), false);
        }
        if weeks > 0 {
            let series = "weekly0sync".to_owned();
            let first = anchor + Duration::hours(15);
            let attendees = json!([{ "email": OWNER, "organizer": true, "self": true }, { "email": INTERNAL[0] }, { "email": OUTSIDE[1] }]);
            let mut parent = Map::new();
            parent.insert("summary".into(), json!("Weekly sync"));
            parent.insert("start".into(), When::At(first).to_json());
            parent.insert("end".into(), When::At(first + Duration::minutes(30)).to_json());
            parent.insert("recurrence".into(), json!([format!("RRULE:FREQ=WEEKLY;COUNT={weeks}")]));
            parent.insert("attendees".into(), attendees.clone());
            store.put_new(series.clone(), parent, anchor - Duration::days(30), true);
            for w in 0..weeks {
                let start = first + Duration::weeks(w as i64);
                let id = format!("{series}_{}", start.format("%Y%m%dT%H%M%SZ"));
                let mut body = Map::new();
                body.insert("summary".into(), json!("Weekly sync"));
                body.insert("start".into(), When::At(start).to_json());
                body.insert("end".into(), When::At(start + Duration::minutes(30)).to_json());
                body.insert("attendees".into(), attendees.clone());
                body.insert("recurringEventId".into(), json!(series));
                body.insert("originalStartTime".into(), When::At(start).to_json());
                store.put_new(id, body, anchor - Duration::days(30), false);
            }
        }
        store
    }

    fn put_new(&mut self, id: String, mut body: Map<String, Value>, at: DateTime<Utc>, parent: bool) {
        self.seq += 1;
        // A property sent as null is simply not set.
        body.retain(|_, v| !v.is_null());
        if let Some(a) = body.get("attendees") {
            let a = with_attendee_defaults(a, None);
            body.insert("attendees".into(), a);
        }
        body.insert("id".into(), json!(id));
        body.entry("status").or_insert(json!("confirmed"));
        let ev = StoredEvent { body, seq: self.seq, created: at, updated: at, ical_sequence: 0, parent };
        self.events.insert(id, ev);
    }

    pub fn get(&self, id: &str) -> Option<&StoredEvent> {
        self.events.get(id)
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Ids of events that are not cancelled (instances and single events, not parents).
    pub fn live_ids(&self) -> Vec<String> {
        self.events.values().filter(|e| !e.cancelled() && !e.parent).map(|e| e.id().to_owned()).collect()
    }

    /// A server-chosen id (base32hex, like Google's).
    pub fn fresh_id(&mut self) -> String {
        loop {
            self.next_id += 1;
            let id = format!("gen{:08}", self.next_id);
            if !self.events.contains_key(&id) {
                return id;
            }
        }
    }

    /// Inserts an event; `Err(DuplicateId)` when the id is taken.
    pub fn insert(
        &mut self,
        id: String,
        props: Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<&StoredEvent, DuplicateId> {
        if self.events.contains_key(&id) {
            return Err(DuplicateId);
        }
        self.put_new(id.clone(), props, now, false);
        self.events.get(&id).ok_or(DuplicateId)
    }

    /// Applies `props` (top-level keys replace; `replace`: the whole writable set is replaced).
    /// Returns `None` if the event is unknown.
    pub fn modify(
        &mut self,
        id: &str,
        props: Map<String, Value>,
        replace: bool,
        now: DateTime<Utc>,
    ) -> Option<&StoredEvent> {
        self.seq += 1;
        let seq = self.seq;
        let ev = self.events.get_mut(id)?;
        let old_times = (ev.body.get("start").cloned(), ev.body.get("end").cloned());
        let old_attendees = ev.body.get("attendees").cloned();
        if replace {
            for key in WRITABLE {
                ev.body.remove(*key);
            }
            ev.body.insert("status".into(), json!("confirmed"));
        }
        for (k, v) in props {
            if v.is_null() {
                // Patch semantics: null clears the property, which Google then omits
                // (<https://developers.google.com/calendar/api/guides/performance#patch>).
                ev.body.remove(&k);
            } else if k == "attendees" {
                let a = with_attendee_defaults(&v, old_attendees.as_ref());
                ev.body.insert(k, a);
            } else {
                ev.body.insert(k, v);
            }
        }
        if (ev.body.get("start").cloned(), ev.body.get("end").cloned()) != old_times {
            ev.ical_sequence += 1;
        }
        ev.seq = seq;
        ev.updated = now.max(ev.updated);
        Some(ev)
    }

    /// Marks an event cancelled (Google's delete). `None` if unknown.
    pub fn cancel(&mut self, id: &str, now: DateTime<Utc>) -> Option<&StoredEvent> {
        let mut props = Map::new();
        props.insert("status".into(), json!("cancelled"));
        self.modify(id, props, false, now)
    }

    /// A full listing's matches in a stable order (start, then id).
    pub fn list_full(&self, f: &ListFilter) -> Vec<&StoredEvent> {
        let mut out: Vec<&StoredEvent> = self
            .events
            .values()
            .filter(|e| if f.single_events { !e.parent } else { !e.is_instance() })
            .filter(|e| f.show_deleted || !e.cancelled())
            .filter(|e| f.updated_min.is_none_or(|u| e.updated >= u))
            .filter(|e| {
                let (Some(s), Some(end)) = (e.start(), e.end()) else { return true };
                f.time_min.is_none_or(|min| end.instant() > min)
                    && f.time_max.is_none_or(|max| s.instant() < max)
            })
            .collect();
        out.sort_by(|a, b| (a.start(), a.id()).cmp(&(b.start(), b.id())));
        out
    }

    /// Changes after position `from` up to `to` (cancelled included, no time filter), in change order.
    pub fn list_changes(&self, from: u64, to: u64, single_events: bool) -> Vec<&StoredEvent> {
        let mut out: Vec<&StoredEvent> = self
            .events
            .values()
            .filter(|e| e.seq > from && e.seq <= to)
            .filter(|e| if single_events { !e.parent } else { !e.is_instance() })
            .collect();
        out.sort_by_key(|e| e.seq);
        out
    }
}

/// Opaque tokens: a tag and numbers, hex-encoded so clients treat them as opaque.
pub fn encode_token(tag: &str, parts: &[u64]) -> String {
    let text =
        std::iter::once(tag.to_owned()).chain(parts.iter().map(u64::to_string)).collect::<Vec<_>>().join(":");
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The numbers of a token made by [`encode_token`] with this tag, or `None`.
pub fn decode_token(tag: &str, token: &str) -> Option<Vec<u64>> {
    if !token.len().is_multiple_of(2) || token.len() > 512 {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..token.len()).step_by(2).map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok()).collect();
    let text = String::from_utf8(bytes?).ok()?;
    let mut parts = text.split(':');
    if parts.next()? != tag {
        return None;
    }
    parts.map(|p| p.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_other_tags() {
        let t = encode_token("sync", &[42, 7]);
        assert_eq!(decode_token("sync", &t), Some(vec![42, 7]));
        assert_eq!(decode_token("page", &t), None);
        assert_eq!(decode_token("sync", "zz"), None);
    }

    #[test]
    fn event_ids_follow_googles_base32hex_rule() {
        assert!(valid_event_id("abcde0123v"));
        assert!(!valid_event_id("abcd"));
        assert!(!valid_event_id("abcdew"));
        assert!(!valid_event_id("ABCDE"));
    }
}
