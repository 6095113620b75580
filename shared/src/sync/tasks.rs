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
//! day after the meeting, linked to the calendar event (`meeting_external_id`, found as a Google
//! event id or an iCalendar UID: [`link_meetings`]) and to the people who attended by email
//! (`attendees`, `external_attendees`: how CRM contacts are matched). A deleted transcript, or one
//! whose items are gone, cancels it.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::domain::record::Fields;
use crate::domain::{
    CanonicalRecord, Connection, ConnectionId, ConnectionSettings, ExternalId, ObjectType, Provider,
    RemoteRecord,
};
use crate::ports::{ConnectionStore, MAX_UIDS_PER_LOOKUP, RecordStore, StoreError};

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

/// Links follow-up tasks to their meeting's calendar event among the live (not deleted) `events`
/// of the tenant's Google and Microsoft calendar connections: `meeting_record_id` and
/// `meeting_connection_id` name the record. A task's `meeting_external_id` (Fireflies'
/// `calendar_id`) is looked up first as an event's external id (for Google meetings Fireflies
/// gives the Google event id: one `get_by_external` per calendar connection), and, for tasks
/// that found none, as an event's iCalendar UID (for Outlook meetings Fireflies gives the
/// `iCalUId`: one `events_by_ical_uid` for the page). So a page costs one connection listing, one
/// lookup per calendar connection and at most one UID lookup. Deleted events never link.
///
/// One id may find several events: one meeting's copies in several connected calendars, or the
/// occurrences of a recurring meeting (at Google they share the UID). The choice is
/// deterministic: the event whose `start` is nearest the task's `meeting_start` (a missing or
/// unreadable time counts as farthest), then the lowest connection id, then the lowest record id.
pub async fn link_meetings(
    connections: &dyn ConnectionStore,
    records: &dyn RecordStore,
    conn: &Connection,
    tasks: &mut [RemoteRecord],
) -> Result<(), StoreError> {
    let wanted: BTreeSet<String> = tasks.iter().filter_map(meeting_id).map(str::to_owned).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let calendars: Vec<Connection> = connections
        .list(&conn.tenant_id)
        .await?
        .into_iter()
        .filter(|c| matches!(c.provider, Provider::Google | Provider::Microsoft))
        .collect();
    let ids: Vec<ExternalId> =
        wanted.iter().filter_map(|id| ExternalId::parse(id.as_str()).ok()).take(100).collect();
    let mut found: HashMap<String, Vec<CanonicalRecord>> = HashMap::new();
    let by_external_id = if ids.is_empty() { &[][..] } else { &calendars[..] };
    for calendar in by_external_id {
        let events = records
            .get_by_external(
                &conn.tenant_id,
                &calendar.connection_id,
                calendar.provider,
                ObjectType::Events,
                &ids,
            )
            .await?;
        for (id, event) in events.into_iter().filter(|(_, e)| !e.deleted) {
            found.entry(id.as_str().to_owned()).or_default().push(event);
        }
    }
    let uids: Vec<String> =
        wanted.into_iter().filter(|id| !found.contains_key(id)).take(MAX_UIDS_PER_LOOKUP).collect();
    if !uids.is_empty() && !calendars.is_empty() {
        let calendar_ids: HashSet<&ConnectionId> = calendars.iter().map(|c| &c.connection_id).collect();
        for event in records.events_by_ical_uid(&conn.tenant_id, &uids).await? {
            if event.deleted || !calendar_ids.contains(&event.connection_id) {
                continue;
            }
            if let Some(uid) = event.fields.get("ical_uid").and_then(Value::as_str) {
                found.entry(uid.to_owned()).or_default().push(event);
            }
        }
    }
    for task in tasks.iter_mut() {
        let start = field_time(&task.fields, "meeting_start");
        let Some(event) = meeting_id(task).and_then(|id| found.get(id)).and_then(|c| nearest(c, start))
        else {
            continue;
        };
        task.fields.insert("meeting_record_id".into(), json!(event.record_id));
        task.fields.insert("meeting_connection_id".into(), json!(event.connection_id));
    }
    Ok(())
}

/// The calendar event a task names (`meeting_external_id`), when it names one.
fn meeting_id(task: &RemoteRecord) -> Option<&str> {
    task.fields.get("meeting_external_id")?.as_str().filter(|id| !id.is_empty())
}

/// The event nearest `start`, ties (and events without a time) by connection id, then record id.
fn nearest(events: &[CanonicalRecord], start: Option<DateTime<Utc>>) -> Option<&CanonicalRecord> {
    events.iter().min_by_key(|e| {
        let distance = match (start, field_time(&e.fields, "start")) {
            (Some(a), Some(b)) => (a - b).num_seconds().unsigned_abs(),
            _ => u64::MAX,
        };
        (distance, e.connection_id.as_str(), e.record_id.as_str())
    })
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

    mod links {
        use super::*;
        use crate::adapters::memory::MemoryStore;
        use crate::domain::RecordId;
        use crate::domain::connection::sample_connection;

        fn calendar(provider: Provider, id: &str) -> Connection {
            let mut c = sample_connection("t1", provider, "http://127.0.0.1:1", now());
            c.connection_id = ConnectionId::parse(id).unwrap();
            c
        }

        fn event(id: &str, uid: &str, start: &str) -> RemoteRecord {
            let fields = [("ical_uid".to_owned(), json!(uid)), ("start".to_owned(), json!(start))];
            RemoteRecord {
                external_id: ExternalId::parse(id).unwrap(),
                object: ObjectType::Events,
                fields: fields.into_iter().collect(),
                remote_modified_at: None,
                deleted: false,
                etag: None,
            }
        }

        /// Stores the connection and its events; returns the events' record ids by external id.
        async fn holding(store: &MemoryStore, conn: &Connection, events: Vec<RemoteRecord>) -> Vec<RecordId> {
            store.put_connection(conn.clone());
            let ids: Vec<ExternalId> = events.iter().map(|e| e.external_id.clone()).collect();
            crate::sync::pull::apply_page(store, conn, ObjectType::Events, events, now()).await.unwrap();
            ids.iter()
                .map(|x| RecordId::derive(&conn.tenant_id, &conn.connection_id, ObjectType::Events, x))
                .collect()
        }

        fn task(meeting: &str) -> RemoteRecord {
            let fields = [
                ("kind".to_owned(), json!("follow_up")),
                ("meeting_external_id".to_owned(), json!(meeting)),
                ("meeting_start".to_owned(), json!("2026-11-28T15:00:00Z")),
            ];
            RemoteRecord {
                external_id: ExternalId::parse(format!("t-{}", meeting.len())).unwrap(),
                object: ObjectType::ResearchTasks,
                fields: fields.into_iter().collect(),
                remote_modified_at: None,
                deleted: false,
                etag: None,
            }
        }

        fn link(task: &RemoteRecord) -> Option<(String, String)> {
            let record = task.fields.get("meeting_record_id")?.as_str()?.to_owned();
            let connection = task.fields.get("meeting_connection_id")?.as_str()?.to_owned();
            Some((record, connection))
        }

        fn named(record: &RecordId, conn: &Connection) -> Option<(String, String)> {
            Some((record.as_str().to_owned(), conn.connection_id.as_str().to_owned()))
        }

        #[tokio::test]
        async fn an_outlook_meeting_links_by_its_ical_uid_and_a_google_one_by_its_event_id() {
            let store = MemoryStore::new();
            let outlook = calendar(Provider::Microsoft, "c-outlook");
            let google = calendar(Provider::Google, "c-google");
            let crm = calendar(Provider::Salesforce, "c-crm");
            let graph_ids =
                holding(&store, &outlook, vec![event("AAMk1", "0400UID1", "2026-11-28T15:00:00Z")]).await;
            let google_ids =
                holding(&store, &google, vec![event("gcal42", "gcal42@google.com", "2026-11-28T15:00:00Z")])
                    .await;
            holding(&store, &crm, vec![event("00U1", "0400UID2", "2026-11-28T15:00:00Z")]).await;

            let mut tasks = vec![task("0400UID1"), task("gcal42"), task("0400UID2-x"), task("nowhere")];
            tasks[2].fields.insert("meeting_external_id".into(), json!("0400UID2"));
            link_meetings(&store, &store, &outlook, &mut tasks).await.unwrap();
            assert_eq!(link(&tasks[0]), named(&graph_ids[0], &outlook), "by the Outlook iCalUId");
            assert_eq!(link(&tasks[1]), named(&google_ids[0], &google), "by the Google event id");
            assert_eq!(link(&tasks[2]), None, "a CRM's event is no calendar event");
            assert_eq!(link(&tasks[3]), None);
        }

        #[tokio::test]
        async fn deleted_events_never_link_by_event_id_or_by_uid() {
            let store = MemoryStore::new();
            let outlook = calendar(Provider::Microsoft, "c-outlook");
            let google = calendar(Provider::Google, "c-google");
            holding(&store, &outlook, vec![event("AAMk1", "0400UID1", "2026-11-28T15:00:00Z")]).await;
            holding(&store, &google, vec![event("gcal42", "gcal42@google.com", "2026-11-28T15:00:00Z")])
                .await;
            let mut gone = vec![event("AAMk1", "0400UID1", "2026-11-28T15:00:00Z")];
            gone[0].deleted = true;
            crate::sync::pull::apply_page(&store, &outlook, ObjectType::Events, gone, now()).await.unwrap();
            let mut gone = vec![event("gcal42", "gcal42@google.com", "2026-11-28T15:00:00Z")];
            gone[0].deleted = true;
            crate::sync::pull::apply_page(&store, &google, ObjectType::Events, gone, now()).await.unwrap();
            assert!(store.records_of(&outlook.tenant_id, &outlook.connection_id)[0].deleted);

            let mut tasks = vec![task("0400UID1"), task("gcal42"), task("gcal42@google.com")];
            link_meetings(&store, &store, &outlook, &mut tasks).await.unwrap();
            assert!(tasks.iter().all(|t| link(t).is_none()), "{tasks:?}");
        }

        #[tokio::test]
        async fn a_uid_found_several_times_links_the_event_nearest_the_meeting_then_the_lowest_connection() {
            let store = MemoryStore::new();
            let b = calendar(Provider::Microsoft, "c-b");
            let a = calendar(Provider::Google, "c-a");
            let b_ids = holding(&store, &b, vec![event("AAMk1", "UID-1", "2026-11-28T15:00:00Z")]).await;
            // A recurring Google meeting: its occurrences share the UID.
            let a_ids = holding(
                &store,
                &a,
                vec![
                    event("rec_20261121", "UID-1", "2026-11-21T15:00:00Z"),
                    event("rec_20261128", "UID-1", "2026-11-28T15:00:00Z"),
                    event("rec_20261205", "UID-1", "2026-12-05T15:00:00Z"),
                ],
            )
            .await;
            let mut tasks = vec![task("UID-1")];
            link_meetings(&store, &store, &b, &mut tasks).await.unwrap();
            assert_eq!(
                link(&tasks[0]),
                named(&a_ids[1], &a),
                "the same start in both: the lower connection id"
            );

            let mut later = vec![task("UID-1")];
            later[0].fields.insert("meeting_start".into(), json!("2026-12-05T14:00:00Z"));
            link_meetings(&store, &store, &b, &mut later).await.unwrap();
            assert_eq!(link(&later[0]), named(&a_ids[2], &a), "the occurrence nearest the meeting");

            // Without the Google calendar, the Outlook copy.
            let mut tasks = vec![task("UID-1")];
            let only_b = MemoryStore::new();
            let b_only = holding(&only_b, &b, vec![event("AAMk1", "UID-1", "2026-11-28T15:00:00Z")]).await;
            assert_eq!(b_only, b_ids);
            link_meetings(&only_b, &only_b, &b, &mut tasks).await.unwrap();
            assert_eq!(link(&tasks[0]), named(&b_ids[0], &b));
        }

        #[tokio::test]
        async fn a_page_of_fifty_tasks_costs_a_listing_one_lookup_per_calendar_and_one_uid_lookup() {
            let store = MemoryStore::new();
            let outlook = calendar(Provider::Microsoft, "c-outlook");
            let google = calendar(Provider::Google, "c-google");
            let events: Vec<RemoteRecord> = (0..50)
                .map(|i| event(&format!("AAMk{i}"), &format!("UID-{i}"), "2026-11-28T15:00:00Z"))
                .collect();
            holding(&store, &outlook, events).await;
            holding(&store, &google, Vec::new()).await;
            let mut tasks: Vec<RemoteRecord> = (0..50)
                .map(|i| {
                    let mut t = task(&format!("UID-{i}"));
                    t.external_id = ExternalId::parse(format!("t{i}")).unwrap();
                    t
                })
                .collect();
            let before = store.calls();
            link_meetings(&store, &store, &outlook, &mut tasks).await.unwrap();
            assert!(tasks.iter().all(|t| link(t).is_some()), "every task linked");
            assert_eq!(store.calls() - before, 1 + 2 + 1, "the listing, one per calendar, one by UID");

            // Tasks all found by event id make no UID lookup.
            let mut found = vec![task("AAMk3")];
            let before = store.calls();
            link_meetings(&store, &store, &outlook, &mut found).await.unwrap();
            assert!(link(&found[0]).is_some());
            assert_eq!(store.calls() - before, 1 + 2);
        }
    }
}
