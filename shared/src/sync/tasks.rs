//! Pre-meeting research tasks, derived from calendar events: an upcoming meeting with an attendee
//! outside the tenant's own email domains gets one task, due 24 hours before the meeting. A moved
//! meeting moves its task; a cancelled meeting, or one left with no outside attendee, cancels it.
//!
//! Tasks are records of object `research_tasks` keyed by their event's external id, so they go
//! through the same merge as pulled records: a person's edit to a task (say, marking it done) is a
//! local change that the next derivation does not overwrite.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::domain::record::Fields;
use crate::domain::{ConnectionSettings, ObjectType, RemoteRecord};

/// How long before the meeting its research task is due.
pub const DUE_BEFORE_MEETING: Duration = Duration::hours(24);

/// The task records implied by one page of pulled `events`: an open task for each upcoming meeting
/// with an outside attendee, a deletion (cancellation) for each cancelled or no-longer-external
/// meeting. Meetings already started are left alone, and so are their tasks.
pub fn research_tasks(
    settings: &ConnectionSettings,
    events: &[RemoteRecord],
    now: DateTime<Utc>,
) -> Vec<RemoteRecord> {
    events
        .iter()
        .filter(|e| e.object == ObjectType::Events)
        .filter_map(|event| {
            let start = field_time(&event.fields, "start");
            if !event.deleted && start.is_none_or(|s| s <= now) {
                return None;
            }
            let outside = outside_attendees(settings, &event.fields);
            let cancelled = event.deleted
                || event.fields.get("status").and_then(Value::as_str) == Some("cancelled")
                || outside.is_empty();
            let fields = match (cancelled, start) {
                (false, Some(start)) => task_fields(event, start, outside),
                _ => Fields::new(),
            };
            Some(RemoteRecord {
                external_id: event.external_id.clone(),
                object: ObjectType::ResearchTasks,
                fields,
                remote_modified_at: event.remote_modified_at,
                deleted: cancelled,
                etag: None,
            })
        })
        .collect()
}

fn task_fields(event: &RemoteRecord, start: DateTime<Utc>, outside: Vec<String>) -> Fields {
    let title = event.fields.get("title").and_then(Value::as_str).unwrap_or("(untitled meeting)");
    let mut fields = Fields::new();
    fields.insert("title".into(), json!(format!("Research before: {title}")));
    fields.insert("status".into(), json!("open"));
    fields.insert("due_at".into(), json!(rfc3339(start - DUE_BEFORE_MEETING)));
    fields.insert("meeting_title".into(), json!(title));
    fields.insert("meeting_start".into(), json!(rfc3339(start)));
    fields.insert("meeting_external_id".into(), json!(event.external_id));
    fields.insert("external_attendees".into(), json!(outside));
    fields
}

/// Attendees (and organizer) whose domain is not one of the tenant's own. With no own domains
/// configured, the organizer's domain counts as the tenant's own.
fn outside_attendees(settings: &ConnectionSettings, fields: &Fields) -> Vec<String> {
    let organizer = fields.get("organizer").and_then(Value::as_str).map(str::to_ascii_lowercase);
    let fallback;
    let settings = if settings.own_domains.is_empty() {
        let domain = organizer.as_deref().and_then(|o| o.rsplit_once('@')).map(|(_, d)| d.to_owned());
        fallback = ConnectionSettings { own_domains: domain.into_iter().collect(), ..settings.clone() };
        &fallback
    } else {
        settings
    };
    let mut outside: Vec<String> = fields
        .get("attendees")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| a.contains('@') && !settings.is_own_email(a))
        .collect();
    outside.sort();
    outside.dedup();
    outside
}

fn field_time(fields: &Fields, name: &str) -> Option<DateTime<Utc>> {
    let raw = fields.get(name)?.as_str()?;
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    // All-day events carry a date: the meeting "starts" at midnight UTC of that day.
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0).map(|t| t.and_utc())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ExternalId;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-29T09:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn event(id: &str, start: &str, attendees: &[&str], status: &str) -> RemoteRecord {
        let mut fields = Fields::new();
        fields.insert("title".into(), json!("Intro call"));
        fields.insert("start".into(), json!(start));
        fields.insert("status".into(), json!(status));
        fields.insert("organizer".into(), json!("ann@acme.com"));
        fields.insert("attendees".into(), json!(attendees));
        RemoteRecord {
            external_id: ExternalId::parse(id).unwrap(),
            object: ObjectType::Events,
            fields,
            remote_modified_at: None,
            deleted: false,
            etag: None,
        }
    }

    fn acme() -> ConnectionSettings {
        ConnectionSettings { own_domains: vec!["acme.com".into()], ..ConnectionSettings::default() }
    }

    #[test]
    fn an_upcoming_meeting_with_an_outside_attendee_gets_a_task_due_a_day_before() {
        let e = event("e1", "2026-12-01T15:00:00Z", &["ann@acme.com", "Zoe@Client.io"], "confirmed");
        let tasks = research_tasks(&acme(), &[e], now());
        assert_eq!(tasks.len(), 1);
        let t = &tasks[0];
        assert!(!t.deleted);
        assert_eq!(t.object, ObjectType::ResearchTasks);
        assert_eq!(t.external_id.as_str(), "e1");
        assert_eq!(t.fields["due_at"], json!("2026-11-30T15:00:00Z"));
        assert_eq!(t.fields["external_attendees"], json!(["zoe@client.io"]));
        assert_eq!(t.fields["status"], json!("open"));
    }

    #[test]
    fn internal_past_and_cancelled_meetings_get_no_open_task() {
        let internal = event("e1", "2026-12-01T15:00:00Z", &["bob@eu.acme.com"], "confirmed");
        let past = event("e2", "2026-11-28T15:00:00Z", &["zoe@client.io"], "confirmed");
        let cancelled = event("e3", "2026-12-01T15:00:00Z", &["zoe@client.io"], "cancelled");
        let mut deleted = event("e4", "2026-12-01T15:00:00Z", &["zoe@client.io"], "confirmed");
        deleted.deleted = true;
        let tasks = research_tasks(&acme(), &[internal, past, cancelled, deleted], now());
        let ids: Vec<(&str, bool)> = tasks.iter().map(|t| (t.external_id.as_str(), t.deleted)).collect();
        assert_eq!(ids, vec![("e1", true), ("e3", true), ("e4", true)]);
    }

    #[test]
    fn own_domains_are_a_setting_and_default_to_the_organizers_domain() {
        let e = event("e1", "2026-12-01T15:00:00Z", &["ann@acme.com", "zoe@client.io"], "confirmed");
        let client_is_ours =
            ConnectionSettings { own_domains: vec!["client.io".into()], ..ConnectionSettings::default() };
        assert_eq!(
            research_tasks(&client_is_ours, std::slice::from_ref(&e), now())[0].fields["external_attendees"],
            json!(["ann@acme.com"])
        );
        let unset = research_tasks(&ConnectionSettings::default(), &[e], now());
        assert_eq!(unset[0].fields["external_attendees"], json!(["zoe@client.io"]));
    }

    #[test]
    fn all_day_meetings_start_at_midnight_utc() {
        let e = event("e1", "2026-12-02", &["zoe@client.io"], "confirmed");
        let tasks = research_tasks(&acme(), &[e], now());
        assert_eq!(tasks[0].fields["due_at"], json!("2026-12-01T00:00:00Z"));
    }
}
