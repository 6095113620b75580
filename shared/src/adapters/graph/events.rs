//! Outlook events <-> canonical event records: the default property map, `{dateTime, timeZone}`
//! to UTC (IANA, Windows and fixed-offset zones), statuses from `showAs` and the owner's response,
//! attendees as sorted lowercase emails, and Graph ids as external ids.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value, json};

use super::GraphClient;
use crate::domain::record::Fields;
use crate::domain::{ExternalId, ObjectType, RemoteRecord};
use crate::ports::ProviderError;

/// Graph event property -> canonical field (events). Connections may override or add custom ones.
/// `iCalUId` (the meeting's iCalendar UID across calendars, read-only, one per occurrence:
/// <https://learn.microsoft.com/en-us/graph/api/resources/event?view=graph-rest-1.0#properties>)
/// is pulled into `ical_uid` and never written back.
pub const EVENT_FIELDS: &[(&str, &str)] = &[
    ("subject", "title"),
    ("start", "start"),
    ("end", "end"),
    ("isAllDay", "all_day"),
    ("showAs", "status"),
    ("organizer", "organizer"),
    ("attendees", "attendees"),
    ("location", "location"),
    ("bodyPreview", "description"),
    ("iCalUId", "ical_uid"),
];

/// A Graph event id as an [`ExternalId`]. Graph ids are base64url with `=` padding, which
/// `ExternalId` does not allow; `=` becomes `.` (which base64url never contains), reversibly.
pub fn external_id_of(graph_id: &str) -> Result<ExternalId, ProviderError> {
    ExternalId::parse(graph_id.replace('=', "."))
        .map_err(|e| ProviderError::permanent(format!("Graph returned an unusable event id: {e}")))
}

/// The Graph event id behind an [`ExternalId`] made by [`external_id_of`].
pub fn graph_id_of(external_id: &ExternalId) -> String {
    external_id.as_str().replace('.', "=")
}

/// `{dateTime, timeZone}` -> UTC. Knows UTC, IANA names, fixed offsets (`UTC+02:00`) and the
/// common Windows zone names Outlook uses.
pub fn to_utc(date_time: &str, time_zone: Option<&str>) -> Option<DateTime<Utc>> {
    let trimmed = date_time.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(trimmed) {
        return Some(d.with_timezone(&Utc));
    }
    let local = NaiveDateTime::parse_from_str(trimmed.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    let zone = time_zone.map(str::trim).filter(|z| !z.is_empty()).unwrap_or("UTC");
    let lower = zone.to_ascii_lowercase();
    if ["utc", "etc/utc", "gmt", "etc/gmt", "z", "coordinated universal time", "tzone://microsoft/utc"]
        .contains(&lower.as_str())
    {
        return Some(local.and_utc());
    }
    if let Some(offset) = fixed_offset(&lower) {
        return offset.from_local_datetime(&local).single().map(|d| d.with_timezone(&Utc));
    }
    let iana = windows_zone(zone).unwrap_or(zone);
    let tz: chrono_tz::Tz = iana.parse().ok()?;
    tz.from_local_datetime(&local).earliest().map(|d| d.with_timezone(&Utc))
}

/// `utc+02:00`, `+0530`, `gmt-8` -> a fixed offset.
fn fixed_offset(zone: &str) -> Option<chrono::FixedOffset> {
    let rest = zone.strip_prefix("utc").or_else(|| zone.strip_prefix("gmt")).unwrap_or(zone);
    let (sign, digits) = match rest.as_bytes().first()? {
        b'+' => (1, &rest[1..]),
        b'-' => (-1, &rest[1..]),
        _ => return None,
    };
    let digits = digits.replace(':', "");
    let (h, m) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().ok()?, 0),
        4 => (digits[..2].parse::<i32>().ok()?, digits[2..].parse::<i32>().ok()?),
        _ => return None,
    };
    chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// The Windows time zone names Outlook most often sends, as IANA names.
fn windows_zone(zone: &str) -> Option<&'static str> {
    const MAP: &[(&str, &str)] = &[
        ("Pacific Standard Time", "America/Los_Angeles"),
        ("Mountain Standard Time", "America/Denver"),
        ("Central Standard Time", "America/Chicago"),
        ("Eastern Standard Time", "America/New_York"),
        ("GMT Standard Time", "Europe/London"),
        ("W. Europe Standard Time", "Europe/Berlin"),
        ("Romance Standard Time", "Europe/Paris"),
        ("Central Europe Standard Time", "Europe/Budapest"),
        ("E. Europe Standard Time", "Europe/Chisinau"),
        ("India Standard Time", "Asia/Kolkata"),
        ("China Standard Time", "Asia/Shanghai"),
        ("Tokyo Standard Time", "Asia/Tokyo"),
        ("AUS Eastern Standard Time", "Australia/Sydney"),
    ];
    MAP.iter().find(|(w, _)| w.eq_ignore_ascii_case(zone)).map(|(_, i)| *i)
}

pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn text_or_null(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Value::String(s.clone()),
        Some(Value::String(_)) | Some(Value::Null) | None => Value::Null,
        Some(other) => other.clone(),
    }
}

fn email_of(recipient: &Value) -> Option<String> {
    recipient
        .pointer("/emailAddress/address")
        .and_then(Value::as_str)
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty())
}

/// A `{dateTime, timeZone}` as a canonical time: RFC 3339 UTC, or the date for all-day events.
fn canonical_time(v: Option<&Value>, all_day: bool, what: &str, id: &str) -> Result<Value, ProviderError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Value::Null);
    };
    let date_time = v
        .get("dateTime")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::permanent(format!("Graph event {id} has a {what} without dateTime")))?;
    if all_day {
        let date = date_time.get(..10).and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        return date.map(|d| Value::String(d.format("%Y-%m-%d").to_string())).ok_or_else(|| {
            ProviderError::permanent(format!("Graph event {id} has an unreadable {what} date"))
        });
    }
    let zone = v.get("timeZone").and_then(Value::as_str);
    to_utc(date_time, zone).map(|t| Value::String(rfc3339(t))).ok_or_else(|| {
        ProviderError::permanent(format!(
            "Graph event {id} has a {what} in an unknown time zone or format ({date_time}, {zone:?})"
        ))
    })
}

/// Graph's `showAs` and the owner's response -> `confirmed` | `tentative` | `cancelled`.
fn canonical_status(event: &Value) -> Value {
    if event.get("isCancelled") == Some(&Value::Bool(true)) {
        return json!("cancelled");
    }
    let show_as = event.get("showAs").and_then(Value::as_str);
    let response = event.pointer("/responseStatus/response").and_then(Value::as_str);
    if show_as == Some("tentative") || response == Some("tentativelyAccepted") {
        json!("tentative")
    } else {
        json!("confirmed")
    }
}

impl GraphClient {
    /// One event of a delta page (or a write's answer) as a remote record.
    pub(super) fn map_event(&self, event: &Value) -> Result<(RemoteRecord, Option<i64>), ProviderError> {
        let id = event
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::permanent("a Graph event without an id"))?;
        let external_id = external_id_of(id)?;
        let etag = event
            .get("@odata.etag")
            .or_else(|| event.get("changeKey"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        if event.get("@removed").is_some() {
            let record = RemoteRecord {
                external_id,
                object: ObjectType::Events,
                fields: Fields::new(),
                remote_modified_at: None,
                deleted: true,
                etag,
            };
            return Ok((record, None));
        }
        let all_day = event.get("isAllDay").and_then(Value::as_bool).unwrap_or(false);
        let mut fields = Fields::new();
        for (property, canonical) in self.fields.pairs() {
            let Some(raw) = event.get(property) else { continue };
            let value = match property {
                "start" | "end" => canonical_time(Some(raw), all_day, property, id)?,
                "isAllDay" => Value::Bool(all_day),
                "showAs" => canonical_status(event),
                "organizer" => email_of(raw).map(Value::String).unwrap_or(Value::Null),
                "attendees" => {
                    let set: BTreeSet<String> =
                        raw.as_array().into_iter().flatten().filter_map(email_of).collect();
                    Value::Array(set.into_iter().map(Value::String).collect())
                }
                "location" => text_or_null(raw.get("displayName")),
                "body" => text_or_null(raw.get("content")),
                _ => text_or_null(Some(raw)),
            };
            fields.insert(canonical.to_owned(), value);
        }
        let end = match event.get("end") {
            Some(v) => v
                .get("dateTime")
                .and_then(Value::as_str)
                .and_then(|dt| to_utc(dt, v.get("timeZone").and_then(Value::as_str)))
                .map(|t| t.timestamp()),
            None => None,
        };
        let remote_modified_at = event
            .get("lastModifiedDateTime")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc));
        let deleted = event.get("isCancelled") == Some(&Value::Bool(true));
        let record = RemoteRecord {
            external_id,
            object: ObjectType::Events,
            fields,
            remote_modified_at,
            deleted,
            etag,
        };
        Ok((record, end))
    }

    /// Canonical fields -> a Graph event body (only the fields given).
    pub(super) fn event_body(&self, fields: &Fields) -> Result<Map<String, Value>, ProviderError> {
        let mut body = Map::new();
        let all_day = fields.get("all_day").and_then(Value::as_bool).unwrap_or(false);
        for (canonical, value) in fields {
            let Some(property) = self.fields.property_of(canonical) else { continue };
            let graph_value = match property {
                "start" | "end" => match value {
                    Value::Null => continue,
                    Value::String(s) => json!({ "dateTime": graph_time(s, all_day)?, "timeZone": "UTC" }),
                    other => {
                        return Err(ProviderError::permanent(format!(
                            "{canonical} must be a string, not {other}"
                        )));
                    }
                },
                "isAllDay" => Value::Bool(value.as_bool().unwrap_or(false)),
                "showAs" => match value.as_str() {
                    Some("tentative") => json!("tentative"),
                    Some("confirmed") => json!("busy"),
                    _ => continue,
                },
                // Read-only at Graph: set by Exchange, never part of a create or update body.
                "organizer" | "iCalUId" => continue,
                "attendees" => Value::Array(
                    value
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|a| json!({ "emailAddress": { "address": a }, "type": "required" }))
                        .collect(),
                ),
                "location" => json!({ "displayName": value.as_str().unwrap_or_default() }),
                "bodyPreview" | "body" => {
                    body.insert(
                        "body".into(),
                        json!({ "contentType": "text", "content": value.as_str().unwrap_or_default() }),
                    );
                    continue;
                }
                _ => value.clone(),
            };
            body.insert(property.to_owned(), graph_value);
        }
        Ok(body)
    }
}

/// A canonical time (RFC 3339, or a date for all-day events) as Graph's UTC `dateTime`.
fn graph_time(value: &str, all_day: bool) -> Result<String, ProviderError> {
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(format!("{}T00:00:00", date.format("%Y-%m-%d")));
    }
    let t = DateTime::parse_from_rfc3339(value)
        .map_err(|_| ProviderError::permanent(format!("'{value}' is neither a date nor an RFC 3339 time")))?
        .with_timezone(&Utc);
    if all_day {
        return Ok(format!("{}T00:00:00", t.format("%Y-%m-%d")));
    }
    Ok(t.format("%Y-%m-%dT%H:%M:%S").to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::adapters::graph::{GraphDialect, Login, Pacing};
    use crate::adapters::provider_http::ProviderHttp;
    use crate::domain::ConnectionSettings;
    use crate::domain::mapping::FieldMap;

    fn client(overrides: Option<BTreeMap<String, String>>) -> GraphClient {
        let mut settings = ConnectionSettings::default();
        if let Some(o) = overrides {
            settings.field_mapping.insert(ObjectType::Events, o);
        }
        GraphClient {
            http: reqwest::Client::new(),
            base: "http://graph.test".into(),
            app: None,
            login: Login::default(),
            pacing: Pacing::default(),
            fields: FieldMap::new(EVENT_FIELDS)
                .with_overrides(settings.field_mapping.get(&ObjectType::Events)),
            window_days: 7,
            net: ProviderHttp::new(reqwest::Client::new(), GraphDialect, Pacing::default().policy()),
        }
    }

    fn event() -> Value {
        json!({
            "@odata.etag": "W/\"DwAAABYAAAB1\"",
            "id": "AAMk-1",
            "changeKey": "DwAAABYAAAB1",
            "iCalUId": "040000008200E00074C5B7101A82E00800000000D0F2",
            "lastModifiedDateTime": "2030-01-01T08:00:00.1234567Z",
            "subject": "Pipeline sync",
            "bodyPreview": "",
            "isAllDay": false,
            "isCancelled": false,
            "showAs": "busy",
            "responseStatus": {"response": "tentativelyAccepted", "time": "0001-01-01T00:00:00Z"},
            "start": {"dateTime": "2030-01-02T10:00:00.0000000", "timeZone": "W. Europe Standard Time"},
            "end": {"dateTime": "2030-01-02T10:30:00.0000000", "timeZone": "UTC"},
            "location": {"displayName": "Room 1"},
            "organizer": {"emailAddress": {"name": "Pat", "address": "Pat.Lee@Fabrikam.com"}},
            "attendees": [
                {"emailAddress": {"address": "Zed@Contoso.com"}},
                {"emailAddress": {"address": "pat.lee@fabrikam.com"}},
                {"emailAddress": {"address": "ann@contoso.com"}},
                {"emailAddress": {"name": "no address"}}
            ],
        })
    }

    #[test]
    fn events_map_to_canonical_fields_in_utc_with_sorted_lowercase_attendees() {
        let (r, end) = client(None).map_event(&event()).unwrap();
        assert_eq!(r.external_id.as_str(), "AAMk-1");
        assert_eq!(r.fields["title"], json!("Pipeline sync"));
        assert_eq!(r.fields["start"], json!("2030-01-02T09:00:00Z"));
        assert_eq!(r.fields["end"], json!("2030-01-02T10:30:00Z"));
        assert_eq!(r.fields["all_day"], json!(false));
        assert_eq!(r.fields["status"], json!("tentative"));
        assert_eq!(r.fields["organizer"], json!("pat.lee@fabrikam.com"));
        assert_eq!(
            r.fields["attendees"],
            json!(["ann@contoso.com", "pat.lee@fabrikam.com", "zed@contoso.com"])
        );
        assert_eq!(r.fields["location"], json!("Room 1"));
        assert_eq!(r.fields["description"], Value::Null);
        assert_eq!(r.fields["ical_uid"], json!("040000008200E00074C5B7101A82E00800000000D0F2"));
        assert_eq!(r.fields.len(), EVENT_FIELDS.len());
        assert_eq!(r.etag.as_deref(), Some("W/\"DwAAABYAAAB1\""));
        assert_eq!(r.remote_modified_at.unwrap().timestamp(), 1_893_484_800);
        assert_eq!(end, Some(1_893_580_200));
        assert!(!r.deleted);
    }

    #[test]
    fn all_day_cancelled_and_removed_events_map_to_dates_and_deletes() {
        let mut e = event();
        e["isAllDay"] = json!(true);
        e["start"] = json!({"dateTime": "2030-01-02T00:00:00.0000000", "timeZone": "UTC"});
        e["end"] = json!({"dateTime": "2030-01-03T00:00:00.0000000", "timeZone": "UTC"});
        e["isCancelled"] = json!(true);
        let (r, _) = client(None).map_event(&e).unwrap();
        assert_eq!(r.fields["start"], json!("2030-01-02"));
        assert_eq!(r.fields["end"], json!("2030-01-03"));
        assert_eq!(r.fields["status"], json!("cancelled"));
        assert!(r.deleted);
        let removed =
            json!({"@odata.type": "#microsoft.graph.event", "id": "gone", "@removed": {"reason": "deleted"}});
        let (r, end) = client(None).map_event(&removed).unwrap();
        assert!(r.deleted && r.fields.is_empty() && end.is_none());
        assert!(client(None).map_event(&json!({"subject": "no id"})).is_err());
    }

    #[test]
    fn time_zones_convert_from_iana_windows_and_fixed_offsets_and_unknown_ones_fail() {
        let utc = |dt, tz| to_utc(dt, Some(tz)).map(rfc3339);
        assert_eq!(utc("2030-07-01T12:00:00.0000000", "UTC").as_deref(), Some("2030-07-01T12:00:00Z"));
        assert_eq!(utc("2030-07-01T12:00:00", "America/New_York").as_deref(), Some("2030-07-01T16:00:00Z"));
        assert_eq!(
            utc("2030-01-01T12:00:00", "Pacific Standard Time").as_deref(),
            Some("2030-01-01T20:00:00Z")
        );
        assert_eq!(utc("2030-01-01T12:00:00", "UTC+05:30").as_deref(), Some("2030-01-01T06:30:00Z"));
        assert_eq!(utc("2030-01-01T12:00:00", "Mars/Olympus"), None);
        let mut e = event();
        e["start"]["timeZone"] = json!("Mars/Olympus");
        assert!(matches!(client(None).map_event(&e), Err(ProviderError::Permanent(_))));
    }

    #[test]
    fn field_overrides_drop_fields_and_add_custom_properties() {
        let overrides = BTreeMap::from([
            ("description".to_owned(), String::new()),
            ("importance".to_owned(), "importance".to_owned()),
        ]);
        let mut e = event();
        e["importance"] = json!("high");
        let (r, _) = client(Some(overrides)).map_event(&e).unwrap();
        assert!(!r.fields.contains_key("description"));
        assert_eq!(r.fields["importance"], json!("high"));
    }

    #[test]
    fn canonical_fields_become_a_graph_body_in_utc() {
        let fields: Fields = serde_json::from_value(json!({
            "title": "Intro", "start": "2030-01-02T10:00:00+01:00", "end": "2030-01-02T10:30:00Z",
            "attendees": ["a@x.io"], "location": "Room", "description": "hi", "status": "confirmed",
            "organizer": "me@x.io"
        }))
        .unwrap();
        let body = client(None).event_body(&fields).unwrap();
        assert_eq!(body["subject"], json!("Intro"));
        assert_eq!(body["start"], json!({"dateTime": "2030-01-02T09:00:00", "timeZone": "UTC"}));
        assert_eq!(body["attendees"][0]["emailAddress"]["address"], json!("a@x.io"));
        assert_eq!(body["body"]["content"], json!("hi"));
        assert_eq!(body["showAs"], json!("busy"));
        assert!(!body.contains_key("organizer"));
    }

    #[test]
    fn the_ical_uid_is_pulled_but_never_written_in_a_create_or_an_update_body() {
        let graph = client(None);
        let (pulled, _) = graph.map_event(&event()).unwrap();
        assert!(pulled.fields["ical_uid"].is_string());
        // A whole pulled record (as a create would carry it) and a lone change of the UID.
        let whole = graph.event_body(&pulled.fields).unwrap();
        assert!(!whole.contains_key("iCalUId"), "{whole:?}");
        assert_eq!(whole["subject"], json!("Pipeline sync"));
        let lone: Fields = [("ical_uid".to_owned(), json!("changed"))].into();
        assert!(graph.event_body(&lone).unwrap().is_empty());
    }

    #[test]
    fn graph_ids_with_padding_round_trip_through_external_ids() {
        let id = external_id_of("AAMkAGI2TG93AAA=").unwrap();
        assert_eq!(id.as_str(), "AAMkAGI2TG93AAA.");
        assert_eq!(graph_id_of(&id), "AAMkAGI2TG93AAA=");
        assert!(external_id_of("has a space").is_err());
    }
}
