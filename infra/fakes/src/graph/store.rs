//! The fake mailbox's calendar: events with a global change sequence (every create, edit, cancel
//! and delete takes the next sequence number), tombstones for deleted events, and the rendering of
//! an event in Graph's v1.0 JSON shape (times as `{dateTime, timeZone: "UTC"}`).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use serde_json::{Value, json};

/// The mailbox owner.
pub const OWNER_NAME: &str = "Adele Vance";
pub const OWNER_EMAIL: &str = "adele.vance@contoso.com";

const INTERNAL: &[(&str, &str)] = &[
    ("Megan Bowen", "Megan.Bowen@contoso.com"),
    ("Lee Gu", "lee.gu@contoso.com"),
    ("Nestor Wilke", "Nestor.Wilke@Contoso.com"),
];
const OUTSIDE: &[(&str, &str)] = &[
    ("Pat Lee", "Pat.Lee@Fabrikam.com"),
    ("Jordan Diaz", "jordan.diaz@northwind.example"),
    ("Sam Okafor", "sam@tailspintoys.example"),
    ("Ines Moreau", "Ines.Moreau@WoodgroveBank.example"),
];
const SUBJECTS: &[&str] = &[
    "Quarterly review",
    "Intro call",
    "Pipeline sync",
    "Product demo",
    "1:1",
    "Contract negotiation",
    "Onboarding kickoff",
    "Roadmap planning",
];
const ROOMS: &[&str] = &["Conf Room Adams", "Conf Room Baker", "Microsoft Teams Meeting", ""];

/// An attendee as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attendee {
    pub name: String,
    pub address: String,
    /// `required`, `optional` or `resource`.
    pub kind: String,
    /// `none`, `accepted`, `tentativelyAccepted`, `declined`, `notResponded`, `organizer`.
    pub response: String,
}

/// When an event happens: timed (UTC instants) or all-day (dates, end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Timed { start: NaiveDateTime, end: NaiveDateTime },
    AllDay { start: NaiveDate, end: NaiveDate },
}

impl When {
    /// The UTC span, for window overlap.
    pub fn span(&self) -> (NaiveDateTime, NaiveDateTime) {
        match *self {
            When::Timed { start, end } => (start, end),
            When::AllDay { start, end } => (start.and_time(NaiveTime::MIN), end.and_time(NaiveTime::MIN)),
        }
    }

    pub fn overlaps(&self, from: NaiveDateTime, to: NaiveDateTime) -> bool {
        let (s, e) = self.span();
        s < to && e > from
    }

    pub fn shifted(&self, by: Duration) -> When {
        match *self {
            When::Timed { start, end } => When::Timed { start: start + by, end: end + by },
            When::AllDay { start, end } => {
                let days = by.num_days();
                When::AllDay { start: start + Duration::days(days), end: end + Duration::days(days) }
            }
        }
    }
}

/// One stored event (a tombstone when `deleted`).
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub subject: String,
    pub body: String,
    pub when: When,
    pub location: String,
    pub show_as: String,
    /// The owner's own response (`organizer` when the owner organises).
    pub response: String,
    pub organizer: (String, String),
    pub attendees: Vec<Attendee>,
    pub is_cancelled: bool,
    pub transaction_id: Option<String>,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    /// Bumped on every change; part of the change key.
    pub version: u64,
    /// The change sequence number of the last change.
    pub seq: u64,
    pub deleted: bool,
}

impl Event {
    /// Outlook's `changeKey`: a new opaque value on every change.
    pub fn change_key(&self) -> String {
        let h = mix(fnv(&self.id) ^ mix(self.version));
        format!("DwAAABYAAAB{h:016x}")
    }

    /// `@odata.etag`, a weak ETag around the change key (what `If-Match` must carry).
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.change_key())
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Graph's `dateTime` shape: `2024-01-01T10:00:00.0000000`.
pub fn graph_local(t: NaiveDateTime) -> String {
    format!("{}.{:07}", t.format("%Y-%m-%dT%H:%M:%S"), t.nanosecond() / 100)
}

/// Graph's timestamp shape: `2024-01-01T10:00:00.1234567Z`.
pub fn graph_instant(t: DateTime<Utc>) -> String {
    format!("{}Z", graph_local(t.naive_utc()))
}

/// The calendar and its change sequence.
#[derive(Debug)]
pub struct Store {
    pub events: BTreeMap<String, Event>,
    pub seq: u64,
    next_id: u64,
    seed: u64,
}

/// What a change-sequence range shows for one event in a window.
pub enum Delta<'a> {
    Changed(&'a Event),
    Removed(&'a str),
}

impl Store {
    /// `count` events from `anchor` (midnight UTC) over the next six days, derived from `seed`:
    /// every fifth all-day, every seventh cancelled by its organizer, every eleventh two weeks out
    /// (outside a 7-day window), with internal and outside attendees in mixed case.
    pub fn seeded(count: usize, seed: u64, anchor: NaiveDate, created: DateTime<Utc>) -> Self {
        let mut store = Store { events: BTreeMap::new(), seq: 0, next_id: 1, seed };
        for i in 0..count as u64 {
            let h = mix(seed ^ mix(i));
            let mut day = i % 6;
            if i % 11 == 10 {
                day = 14;
            }
            let date = anchor + Duration::days(day as i64);
            let when = if i % 5 == 4 {
                When::AllDay { start: date, end: date + Duration::days(1) }
            } else {
                let start = date.and_time(NaiveTime::MIN) + Duration::hours(8 + ((h >> 8) % 9) as i64);
                let minutes = [30, 45, 60, 90][((h >> 16) % 4) as usize];
                When::Timed { start, end: start + Duration::minutes(minutes) }
            };
            let owner_organises = i % 3 != 1;
            let organizer = if owner_organises {
                (OWNER_NAME.to_owned(), OWNER_EMAIL.to_owned())
            } else {
                let (n, a) = OUTSIDE[((h >> 20) % OUTSIDE.len() as u64) as usize];
                (n.to_owned(), a.to_owned())
            };
            let mut attendees = Vec::new();
            let internal = INTERNAL[((h >> 24) % INTERNAL.len() as u64) as usize];
            attendees.push(attendee(internal, "required", "accepted"));
            if i % 2 == 0 || !owner_organises {
                let outside = OUTSIDE[((h >> 28) % OUTSIDE.len() as u64) as usize];
                attendees.push(attendee(outside, "required", "none"));
            }
            if !owner_organises {
                attendees.push(attendee((OWNER_NAME, OWNER_EMAIL), "required", "accepted"));
            }
            let subject = SUBJECTS[((h >> 32) % SUBJECTS.len() as u64) as usize];
            let event = Event {
                id: String::new(),
                subject: format!("{subject} #{}", i + 1),
                body: format!("Agenda for {subject}."),
                when,
                location: ROOMS[((h >> 36) % ROOMS.len() as u64) as usize].to_owned(),
                show_as: if i % 4 == 3 { "tentative".into() } else { "busy".into() },
                response: if owner_organises {
                    "organizer".into()
                } else if i % 4 == 3 {
                    "tentativelyAccepted".into()
                } else {
                    "accepted".into()
                },
                organizer,
                attendees,
                is_cancelled: i % 7 == 6,
                transaction_id: None,
                created,
                modified: created,
                version: 0,
                seq: 0,
                deleted: false,
            };
            store.insert(event, created);
        }
        store
    }

    /// Stores a new event with a fresh id and the next sequence number; returns the id.
    pub fn insert(&mut self, mut event: Event, now: DateTime<Utc>) -> String {
        let n = self.next_id;
        self.next_id += 1;
        let h = mix(self.seed ^ mix(n.wrapping_mul(7919)));
        event.id = format!("AAMkAGZha2UtZ3JhcGgARgAAA{n:06}{:08x}AAA=", h as u32);
        event.created = now;
        self.seq += 1;
        event.seq = self.seq;
        event.modified = now;
        event.version = 1;
        let id = event.id.clone();
        self.events.insert(id.clone(), event);
        id
    }

    pub fn live(&self, id: &str) -> Option<&Event> {
        self.events.get(id).filter(|e| !e.deleted)
    }

    /// Applies `change` to a live event and gives it the next sequence number.
    pub fn change(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
        change: impl FnOnce(&mut Event),
    ) -> Option<&Event> {
        let seq = self.seq + 1;
        let event = self.events.get_mut(id).filter(|e| !e.deleted)?;
        change(event);
        event.seq = seq;
        event.version += 1;
        event.modified = now.max(event.modified);
        self.seq = seq;
        Some(event)
    }

    pub fn delete(&mut self, id: &str, now: DateTime<Utc>) -> bool {
        self.change(id, now, |e| e.deleted = true).is_some()
    }

    pub fn by_transaction(&self, transaction_id: &str) -> Option<&Event> {
        self.events.values().find(|e| !e.deleted && e.transaction_id.as_deref() == Some(transaction_id))
    }

    /// Events of the window changed in `(since, upto]`, by id after `after`, at most `limit + 1`
    /// (the extra one tells whether more follow). An initial round (`since == 0`) lists live
    /// events only; later rounds report deleted events and events that left the window as removed.
    pub fn delta(
        &self,
        window: (NaiveDateTime, NaiveDateTime),
        since: u64,
        upto: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<Delta<'_>> {
        let range = match after {
            Some(a) => {
                self.events.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
            }
            None => self.events.range::<str, _>(..),
        };
        range
            .map(|(_, e)| e)
            .filter(|e| e.seq > since && e.seq <= upto)
            .filter_map(|e| {
                let in_window = !e.deleted && e.when.overlaps(window.0, window.1);
                match (in_window, since) {
                    (true, _) => Some(Delta::Changed(e)),
                    (false, 0) => None,
                    (false, _) => Some(Delta::Removed(e.id.as_str())),
                }
            })
            .take(limit + 1)
            .collect()
    }

    /// The event in Graph's JSON shape, as `GET /me/events/{id}` and delta answer it.
    pub fn render(&self, e: &Event, base_url: &str) -> Value {
        let (start, end) = e.when.span();
        let (start, end) = (graph_local(start), graph_local(end));
        let never = "0001-01-01T00:00:00Z";
        let attendees: Vec<Value> = e
            .attendees
            .iter()
            .map(|a| {
                json!({
                    "type": a.kind,
                    "status": { "response": a.response, "time": never },
                    "emailAddress": { "name": a.name, "address": a.address },
                })
            })
            .collect();
        let location = if e.location.is_empty() {
            json!({ "displayName": "", "locationType": "default", "uniqueIdType": "unknown" })
        } else {
            json!({
                "displayName": e.location,
                "locationType": "default",
                "uniqueId": e.location,
                "uniqueIdType": "private",
            })
        };
        let locations = if e.location.is_empty() { json!([]) } else { json!([location.clone()]) };
        let is_organizer = e.organizer.1.eq_ignore_ascii_case(OWNER_EMAIL);
        let mut v = json!({
            "@odata.etag": e.etag(),
            "id": e.id,
            "createdDateTime": graph_instant(e.created),
            "lastModifiedDateTime": graph_instant(e.modified),
            "changeKey": e.change_key(),
            "categories": [],
            "transactionId": e.transaction_id,
            "originalStartTimeZone": "UTC",
            "originalEndTimeZone": "UTC",
            "iCalUId": format!("040000008200E00074C5B7101A82E008000000{:016x}", fnv(&e.id)),
            "reminderMinutesBeforeStart": 15,
            "isReminderOn": !e.is_cancelled,
            "hasAttachments": false,
            "subject": e.subject,
            "bodyPreview": e.body.chars().take(255).collect::<String>(),
            "importance": "normal",
            "sensitivity": "normal",
        });
        let rest = json!({
            "isAllDay": matches!(e.when, When::AllDay { .. }),
            "isCancelled": e.is_cancelled,
            "isOrganizer": is_organizer,
            "responseRequested": true,
            "seriesMasterId": null,
            "showAs": e.show_as,
            "type": "singleInstance",
            "webLink": format!("{base_url}/owa/?itemid={}&exvsurl=1&path=/calendar/item", e.id),
            "onlineMeetingUrl": null,
            "isOnlineMeeting": false,
            "onlineMeetingProvider": "unknown",
            "allowNewTimeProposals": true,
            "isDraft": false,
            "hideAttendees": false,
            "recurrence": null,
            "onlineMeeting": null,
            "responseStatus": { "response": e.response, "time": never },
            "body": { "contentType": "html", "content": format!("<html><body>{}</body></html>", e.body) },
            "start": { "dateTime": start, "timeZone": "UTC" },
            "end": { "dateTime": end, "timeZone": "UTC" },
            "location": location,
            "locations": locations,
            "attendees": attendees,
            "organizer": { "emailAddress": { "name": e.organizer.0, "address": e.organizer.1 } },

        });
        if let (Some(v), Value::Object(rest)) = (v.as_object_mut(), rest) {
            v.extend(rest);
        }
        v
    }
}

fn attendee((name, address): (&str, &str), kind: &str, response: &str) -> Attendee {
    Attendee { name: name.into(), address: address.into(), kind: kind.into(), response: response.into() }
}

/// A new attendee for events created through the API or the admin handle.
pub fn new_attendee(name: &str, address: &str) -> Attendee {
    attendee((name, address), "required", "none")
}
