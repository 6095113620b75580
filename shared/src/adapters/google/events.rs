//! Google Calendar events <-> canonical event records: the default property map, times as UTC
//! RFC 3339 or dates for all-day events, attendees as sorted lowercase emails, custom fields in
//! `extendedProperties.private`, and the event id a create derives from its idempotency key.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::domain::mapping::FieldMap;
use crate::domain::record::Fields;
use crate::domain::{ExternalId, IdempotencyKey, ObjectType, RemoteRecord};
use crate::ports::ProviderError;

/// Google event property -> canonical field. `start` also yields `all_day`. Any other property
/// named in a connection's overrides is read from and written to `extendedProperties.private`.
/// `iCalUID` (the RFC 5545 UID, shared by the occurrences of a recurring event:
/// <https://developers.google.com/calendar/api/v3/reference/events#iCalUID>) is pulled into
/// `ical_uid` and never sent: a create names the event by `id` (Google takes one of the two at
/// creation, not both) and the UID is not ours to change afterwards.
pub const DEFAULT_FIELDS: &[(&str, &str)] = &[
    ("summary", "title"),
    ("start", "start"),
    ("end", "end"),
    ("status", "status"),
    ("organizer", "organizer"),
    ("attendees", "attendees"),
    ("location", "location"),
    ("description", "description"),
    ("iCalUID", "ical_uid"),
];
const STANDARD: &[&str] =
    &["summary", "start", "end", "status", "organizer", "attendees", "location", "description", "iCalUID"];

pub(super) fn utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An `EventDateTime` as canonical: `(value, all_day)`; `dateTime` converted to UTC.
fn event_time(v: &Value) -> Result<(Value, bool), ProviderError> {
    if let Some(dt) = v.get("dateTime").and_then(Value::as_str) {
        let t = DateTime::parse_from_rfc3339(dt)
            .map_err(|_| ProviderError::permanent(format!("Google returned an invalid dateTime {dt:?}")))?;
        return Ok((Value::String(utc(t.with_timezone(&Utc))), false));
    }
    if let Some(d) = v.get("date").and_then(Value::as_str) {
        let day = NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map_err(|_| ProviderError::permanent(format!("Google returned an invalid date {d:?}")))?;
        return Ok((Value::String(day.format("%Y-%m-%d").to_string()), true));
    }
    Ok((Value::Null, false))
}

fn text(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Value::String(s.clone()),
        Some(Value::Number(n)) => Value::String(n.to_string()),
        Some(Value::Bool(b)) => Value::String(b.to_string()),
        _ => Value::Null,
    }
}

fn lower_email(v: &Value) -> Option<String> {
    v.get("email").and_then(Value::as_str).map(|e| e.trim().to_lowercase()).filter(|e| !e.is_empty())
}

/// Maps a Google event to a remote record with canonical field names.
pub(super) fn map_event(ev: &Value, fields: &FieldMap) -> Result<RemoteRecord, ProviderError> {
    let id = ev.get("id").and_then(Value::as_str).unwrap_or_default();
    let external_id = ExternalId::parse(id.to_owned())
        .map_err(|e| ProviderError::permanent(format!("Google returned an unusable event id: {e}")))?;
    let status = ev.get("status").and_then(Value::as_str).unwrap_or("confirmed");
    let deleted = status == "cancelled";
    let mut out = Fields::new();
    for (property, canonical) in fields.pairs() {
        if deleted && property != "status" {
            continue;
        }
        let value = match property {
            "start" | "end" => {
                let (value, all_day) = match ev.get(property) {
                    Some(t) => event_time(t)?,
                    None => (Value::Null, false),
                };
                if property == "start" {
                    out.insert("all_day".into(), Value::Bool(all_day));
                }
                value
            }
            "status" => Value::String(status.to_owned()),
            "organizer" => ev.get("organizer").and_then(lower_email).map_or(Value::Null, Value::String),
            "attendees" => {
                let mut emails: Vec<String> = ev
                    .get("attendees")
                    .and_then(Value::as_array)
                    .map(|list| list.iter().filter_map(lower_email).collect())
                    .unwrap_or_default();
                emails.sort();
                emails.dedup();
                json!(emails)
            }
            p if STANDARD.contains(&p) => text(ev.get(p)),
            custom => {
                let ext = ev.get("extendedProperties");
                let found = ext
                    .and_then(|x| x.pointer(&format!("/private/{custom}")))
                    .or_else(|| ext.and_then(|x| x.pointer(&format!("/shared/{custom}"))));
                text(found)
            }
        };
        out.insert(canonical.to_owned(), value);
    }
    let updated = ev
        .get("updated")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    Ok(RemoteRecord {
        external_id,
        object: ObjectType::Events,
        fields: out,
        remote_modified_at: updated,
        deleted,
        etag: ev.get("etag").and_then(Value::as_str).map(str::to_owned),
    })
}

/// A canonical time as an `EventDateTime`: a `YYYY-MM-DD` (or `all_day`) is a `date`.
fn to_event_time(v: &Value, all_day: bool) -> Result<Value, ProviderError> {
    let Some(s) = v.as_str() else {
        return Err(ProviderError::permanent("event start and end must be strings"));
    };
    if let Ok(day) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(json!({ "date": day.format("%Y-%m-%d").to_string() }));
    }
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|_| ProviderError::permanent(format!("not an RFC 3339 time: {s:?}")))?;
    if all_day {
        return Ok(json!({ "date": t.date_naive().format("%Y-%m-%d").to_string() }));
    }
    Ok(json!({ "dateTime": utc(t.with_timezone(&Utc)), "timeZone": "UTC" }))
}

/// Canonical fields as a Google Event body (only the mapped fields present in `fields`).
pub(super) fn event_body(fields: &Fields, map: &FieldMap) -> Result<Map<String, Value>, ProviderError> {
    let all_day = fields.get("all_day").and_then(Value::as_bool).unwrap_or(false);
    let mut body = Map::new();
    let mut private = Map::new();
    for (property, canonical) in map.pairs() {
        let Some(value) = fields.get(canonical) else { continue };
        match property {
            "start" | "end" => {
                body.insert(property.to_owned(), to_event_time(value, all_day)?);
            }
            // Read-only for our writes (see DEFAULT_FIELDS).
            "organizer" | "iCalUID" => {}
            "attendees" => {
                let emails = value.as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>());
                let list: Vec<Value> =
                    emails.unwrap_or_default().into_iter().map(|e| json!({ "email": e })).collect();
                body.insert("attendees".into(), Value::Array(list));
            }
            p if STANDARD.contains(&p) => {
                body.insert(p.to_owned(), if value.is_null() { Value::Null } else { text(Some(value)) });
            }
            custom => {
                private.insert(custom.to_owned(), text(Some(value)));
            }
        }
    }
    if !private.is_empty() {
        body.insert("extendedProperties".into(), json!({ "private": private }));
    }
    Ok(body)
}

/// The event id for a create: base32hex (`a-v`, `0-9`) of SHA-256 of the idempotency key, so a
/// retried create asks for the same id and Google's 409 reveals the first attempt's event.
pub fn event_id_for(key: &IdempotencyKey) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let digest = Sha256::digest(key.as_str().as_bytes());
    let mut out = String::from("sb");
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in digest {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn map() -> FieldMap {
        FieldMap::new(DEFAULT_FIELDS)
    }

    #[test]
    fn events_map_to_canonical_fields_in_utc_with_sorted_lowercase_attendees() {
        let ev = json!({
            "id": "abc123", "etag": "\"33\"", "status": "confirmed", "summary": "Demo",
            "iCalUID": "abc123@google.com",
            "updated": "2026-03-01T10:00:00.000Z",
            "start": { "dateTime": "2026-03-02T09:00:00-05:00", "timeZone": "America/New_York" },
            "end": { "dateTime": "2026-03-02T09:30:00-05:00" },
            "organizer": { "email": "Owner@Acme.example" },
            "attendees": [{ "email": "Zed@x.example" }, { "email": "ann@acme.example" }, { "email": "zed@x.example" }],
        });
        let r = map_event(&ev, &map()).unwrap();
        assert_eq!(r.external_id.as_str(), "abc123");
        assert_eq!(r.etag.as_deref(), Some("\"33\""));
        assert!(!r.deleted);
        assert_eq!(r.fields["title"], json!("Demo"));
        assert_eq!(r.fields["start"], json!("2026-03-02T14:00:00Z"));
        assert_eq!(r.fields["end"], json!("2026-03-02T14:30:00Z"));
        assert_eq!(r.fields["all_day"], json!(false));
        assert_eq!(r.fields["organizer"], json!("owner@acme.example"));
        assert_eq!(r.fields["attendees"], json!(["ann@acme.example", "zed@x.example"]));
        assert_eq!(r.fields["location"], Value::Null);
        assert_eq!(r.fields["ical_uid"], json!("abc123@google.com"));
        assert_eq!(r.remote_modified_at.unwrap().to_rfc3339(), "2026-03-01T10:00:00+00:00");
    }

    #[test]
    fn the_ical_uid_is_pulled_but_never_written_in_a_create_or_an_update_body() {
        let ev = json!({
            "id": "abc123", "iCalUID": "abc123@google.com", "summary": "Demo",
            "start": { "dateTime": "2026-03-02T09:00:00Z" }, "end": { "dateTime": "2026-03-02T09:30:00Z" },
        });
        let pulled = map_event(&ev, &map()).unwrap();
        assert_eq!(pulled.fields["ical_uid"], json!("abc123@google.com"));
        let whole = event_body(&pulled.fields, &map()).unwrap();
        assert!(!whole.contains_key("iCalUID"), "{whole:?}");
        assert!(!whole.contains_key("extendedProperties"), "not a custom property either: {whole:?}");
        assert_eq!(whole["summary"], json!("Demo"));
        let lone: Fields = [("ical_uid".to_owned(), json!("changed@google.com"))].into();
        assert!(event_body(&lone, &map()).unwrap().is_empty());
    }

    #[test]
    fn all_day_and_cancelled_events_map_to_dates_and_deletes() {
        let ev = json!({ "id": "d1", "start": { "date": "2026-03-02" }, "end": { "date": "2026-03-03" } });
        let r = map_event(&ev, &map()).unwrap();
        assert_eq!(r.fields["start"], json!("2026-03-02"));
        assert_eq!(r.fields["all_day"], json!(true));
        assert_eq!(r.fields["status"], json!("confirmed"));
        let gone = map_event(&json!({ "id": "d1", "status": "cancelled" }), &map()).unwrap();
        assert!(gone.deleted);
        assert_eq!(gone.fields.len(), 1);
        assert!(map_event(&json!({ "id": "x1", "start": { "dateTime": "yesterday" } }), &map()).is_err());
        assert!(map_event(&json!({ "summary": "no id" }), &map()).is_err());
    }

    #[test]
    fn overrides_map_custom_fields_to_private_extended_properties_both_ways() {
        let overrides: BTreeMap<String, String> =
            [("deal_id".to_owned(), "sbDeal".to_owned()), ("location".to_owned(), String::new())].into();
        let m = map().with_overrides(Some(&overrides));
        let ev = json!({ "id": "e1", "location": "Room", "extendedProperties": { "private": { "sbDeal": "42" } } });
        let r = map_event(&ev, &m).unwrap();
        assert_eq!(r.fields["deal_id"], json!("42"));
        assert!(!r.fields.contains_key("location"));
        let fields: Fields = [("deal_id".to_owned(), json!("7")), ("title".to_owned(), json!("T"))].into();
        let body = event_body(&fields, &m).unwrap();
        assert_eq!(
            Value::Object(body),
            json!({ "summary": "T", "extendedProperties": { "private": { "sbDeal": "7" } } })
        );
    }

    #[test]
    fn canonical_times_become_event_date_times() {
        let fields: Fields = [
            ("start".to_owned(), json!("2026-03-02T14:00:00+01:00")),
            ("end".to_owned(), json!("2026-03-02")),
            ("attendees".to_owned(), json!(["a@x.example"])),
            ("organizer".to_owned(), json!("ignored@x.example")),
        ]
        .into();
        let body = Value::Object(event_body(&fields, &map()).unwrap());
        assert_eq!(body["start"], json!({ "dateTime": "2026-03-02T13:00:00Z", "timeZone": "UTC" }));
        assert_eq!(body["end"], json!({ "date": "2026-03-02" }));
        assert_eq!(body["attendees"], json!([{ "email": "a@x.example" }]));
        assert!(body.get("organizer").is_none(), "organizer is read-only at Google");
        let bad: Fields = [("start".to_owned(), json!("soon"))].into();
        assert!(event_body(&bad, &map()).is_err());
    }

    #[test]
    fn event_ids_from_keys_are_stable_base32hex_within_googles_limits() {
        let a = event_id_for(&IdempotencyKey::parse("push-item-1").unwrap());
        let b = event_id_for(&IdempotencyKey::parse("push-item-1").unwrap());
        let c = event_id_for(&IdempotencyKey::parse("push-item-2").unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!((5..=1024).contains(&a.len()));
        assert!(a.bytes().all(|x| matches!(x, b'a'..=b'v' | b'0'..=b'9')), "{a}");
    }
}
