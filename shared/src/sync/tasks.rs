//! Pre-meeting research tasks, derived from calendar events: an upcoming meeting with an attendee
//! outside the tenant's own email domains gets one task, due 24 hours before the meeting. A moved
//! meeting moves its task; a cancelled meeting, or one left with no outside attendee, cancels it.
//!
//! Tasks are records of object `research_tasks` keyed by their event's external id, so they go
//! through the same merge as pulled records: a person's edit to a task (say, marking it done) is a
//! local change that the next derivation does not overwrite.
//!
//! Follow-up tasks come the same way from meeting transcripts (Fireflies): a transcript with action
//! items gets one task (`kind: follow_up`) keyed by the transcript's id, listing the items, due a
//! day after the meeting, linked to the calendar event (`meeting_external_id`) and to the people
//! who attended by email (`attendees`, `external_attendees`: how CRM contacts are matched). A
//! deleted transcript, or one whose items are gone, cancels it.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::domain::record::Fields;
use crate::domain::{Connection, ConnectionSettings, ExternalId, ObjectType, Provider, RemoteRecord};
use crate::ports::{ConnectionStore, RecordStore, StoreError};

/// How long before the meeting its research task is due.
pub const DUE_BEFORE_MEETING: Duration = Duration::hours(24);
/// How long after the meeting's start its follow-up task is due.
pub const FOLLOW_UP_AFTER_MEETING: Duration = Duration::hours(24);

/// The follow-up task records implied by one page of pulled `transcripts`: an open task for each
/// transcript with action items, a deletion for each deleted transcript or one without items.
pub fn follow_up_tasks(settings: &ConnectionSettings, transcripts: &[RemoteRecord]) -> Vec<RemoteRecord> {
    transcripts
        .iter()
        .filter(|t| t.object == ObjectType::Transcripts)
        .map(|t| {
            let items = t.fields.get("action_items").and_then(Value::as_array).filter(|a| !a.is_empty());
            let fields = match (t.deleted, items) {
                (false, Some(items)) => follow_up_fields(settings, t, items),
                _ => Fields::new(),
            };
            RemoteRecord {
                external_id: t.external_id.clone(),
                object: ObjectType::ResearchTasks,
                deleted: fields.is_empty(),
                fields,
                remote_modified_at: t.remote_modified_at,
                etag: None,
            }
        })
        .collect()
}

/// Links follow-up tasks to their meeting's calendar event: for a task whose
/// `meeting_external_id` names an event stored by one of the tenant's calendar connections,
/// `meeting_record_id` (and `meeting_connection_id`) name that record. One lookup per calendar
/// connection per page.
pub async fn link_meetings(
    connections: &dyn ConnectionStore,
    records: &dyn RecordStore,
    conn: &Connection,
    tasks: &mut [RemoteRecord],
) -> Result<(), StoreError> {
    let ids: Vec<ExternalId> = tasks
        .iter()
        .filter_map(|t| t.fields.get("meeting_external_id")?.as_str())
        .filter_map(|id| ExternalId::parse(id).ok())
        .take(100)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    for calendar in connections.list(&conn.tenant_id).await? {
        if !matches!(calendar.provider, Provider::Google | Provider::Microsoft) {
            continue;
        }
        let found = records
            .get_by_external(
                &conn.tenant_id,
                &calendar.connection_id,
                calendar.provider,
                ObjectType::Events,
                &ids,
            )
            .await?;
        for task in tasks.iter_mut() {
            let event = task.fields.get("meeting_external_id").and_then(Value::as_str);
            if let Some(record) =
                event.and_then(|e| found.iter().find(|(id, _)| id.as_str() == e)).map(|(_, r)| r)
            {
                task.fields.insert("meeting_record_id".into(), json!(record.record_id));
                task.fields.insert("meeting_connection_id".into(), json!(calendar.connection_id));
            }
        }
    }
    Ok(())
}

fn follow_up_fields(settings: &ConnectionSettings, t: &RemoteRecord, items: &[Value]) -> Fields {
    let title = t.fields.get("title").and_then(Value::as_str).unwrap_or("(untitled meeting)");
    let start = field_time(&t.fields, "start");
    let mut fields = Fields::new();
    fields.insert("title".into(), json!(format!("Follow up: {title}")));
    fields.insert("kind".into(), json!("follow_up"));
    fields.insert("status".into(), json!("open"));
    if let Some(start) = start {
        fields.insert("due_at".into(), json!(rfc3339(start + FOLLOW_UP_AFTER_MEETING)));
        fields.insert("meeting_start".into(), json!(rfc3339(start)));
    }
    fields.insert("meeting_title".into(), json!(title));
    fields.insert("action_items".into(), json!(items));
    fields.insert("transcript_external_id".into(), json!(t.external_id));
    if let Some(event) = t.fields.get("calendar_event_id").filter(|v| v.is_string()) {
        fields.insert("meeting_external_id".into(), event.clone());
    }
    let mut everyone: Vec<String> = ["participants", "attendees"]
        .iter()
        .filter_map(|k| t.fields.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    everyone.sort();
    everyone.dedup();
    let mut people = t.fields.clone();
    people.insert("attendees".into(), json!(everyone));
    fields.insert("external_attendees".into(), json!(outside_attendees(settings, &people)));
    fields.insert("attendees".into(), json!(everyone));
    fields
}

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

    fn transcript(id: &str, items: serde_json::Value, deleted: bool) -> RemoteRecord {
        let mut fields = Fields::new();
        fields.insert("title".into(), json!("Proposal review"));
        fields.insert("start".into(), json!("2026-11-28T15:00:00Z"));
        fields.insert("organizer".into(), json!("ann@acme.com"));
        fields.insert("participants".into(), json!(["ann@acme.com", "bo@globex.example"]));
        fields.insert("attendees".into(), json!(["cy@initech.example"]));
        fields.insert("calendar_event_id".into(), json!("gcal42"));
        fields.insert("action_items".into(), items);
        RemoteRecord {
            external_id: ExternalId::parse(id).unwrap(),
            object: ObjectType::Transcripts,
            fields: if deleted { Fields::new() } else { fields },
            remote_modified_at: None,
            deleted,
            etag: None,
        }
    }

    #[test]
    fn a_transcript_with_action_items_gets_one_follow_up_task_linked_to_its_event_and_people() {
        let items = json!([{ "text": "Send the proposal", "assignee": "Ann" }]);
        let tasks = follow_up_tasks(&acme(), &[transcript("t1", items.clone(), false)]);
        assert_eq!(tasks.len(), 1);
        let t = &tasks[0];
        assert_eq!((t.object, t.external_id.as_str(), t.deleted), (ObjectType::ResearchTasks, "t1", false));
        assert_eq!(t.fields["kind"], "follow_up");
        assert_eq!(t.fields["title"], "Follow up: Proposal review");
        assert_eq!(t.fields["due_at"], "2026-11-29T15:00:00Z");
        assert_eq!(t.fields["action_items"], items);
        assert_eq!(t.fields["meeting_external_id"], "gcal42");
        assert_eq!(t.fields["attendees"], json!(["ann@acme.com", "bo@globex.example", "cy@initech.example"]));
        assert_eq!(t.fields["external_attendees"], json!(["bo@globex.example", "cy@initech.example"]));
    }

    #[test]
    fn a_deleted_transcript_or_one_without_items_cancels_its_follow_up() {
        let tasks = follow_up_tasks(
            &acme(),
            &[transcript("gone", json!(null), true), transcript("empty", json!([]), false)],
        );
        assert!(tasks.iter().all(|t| t.deleted && t.fields.is_empty()), "{tasks:?}");
        assert_eq!(tasks.len(), 2);
    }
}
