//! The Fireflies adapter against the Fireflies fake over HTTP: full pulls paged by `skip` in a
//! fixed window, incremental pulls with the two-day lookback (a transcript processed late is not
//! lost), the daily wide traversal and delete reconciliation, the rate limit (paced, waited out,
//! or handed back), Fireflies' errors, and syncs through the worker whose action items become
//! follow-up tasks linked to the calendar event: a Google one by its event id, an Outlook one
//! (pulled from the Graph fake) by its iCalUId.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use serde_json::json;
use syncbridge::adapters::fireflies::FirefliesFactory;
use syncbridge::adapters::graph::{self, GraphFactory, Login};
use syncbridge::adapters::memory::MemoryStore;
use syncbridge::adapters::notion::Pacing;
use syncbridge::config::OAuthApp;
use syncbridge::domain::{
    Connection, Credentials, ExternalId, NewConnection, ObjectType, Provider, RemoteRecord, SyncCursor,
    TenantId,
};
use syncbridge::ports::{ProviderClient, ProviderError, ProviderFactory};
use syncbridge::sync::Deps;
use syncbridge::sync::worker::JobOutcome;
use syncbridge_fakes::fireflies::{
    Attendee, DEFAULT_API_KEY, FakeConfig, Fault, FaultKind, FirefliesFake, NewTranscript, Route,
    RunningFake, Summary,
};

async fn start(transcripts: usize) -> RunningFake {
    FirefliesFake::start(FakeConfig { transcripts, ..FakeConfig::default() }).await.expect("fake starts")
}

fn connection(fake: &RunningFake) -> Connection {
    Connection::new(
        TenantId::parse("t1").expect("tenant"),
        NewConnection {
            provider: Provider::Fireflies,
            base_url: fake.base_url(),
            credentials: Credentials {
                access_token: SecretString::from(DEFAULT_API_KEY),
                refresh_token: None,
                expires_at: None,
            },
            interval_minutes: 30,
            settings: Default::default(),
        },
        Utc::now(),
    )
}

fn fast() -> Pacing {
    Pacing { per_second: 100.0, burst: 100.0, ..Pacing::default() }
}

fn client(fake: &RunningFake, pacing: Pacing) -> Box<dyn ProviderClient> {
    FirefliesFactory::new(reqwest::Client::new())
        .with_pacing(pacing)
        .client(&connection(fake))
        .expect("client")
}

fn key() -> SecretString {
    SecretString::from(DEFAULT_API_KEY)
}

/// Pulls to the present: the records, the cursor, the pages, and whether a page asked for a
/// delete reconciliation.
async fn pull_all(
    client: &dyn ProviderClient,
    mut cursor: Option<SyncCursor>,
) -> (Vec<RemoteRecord>, SyncCursor, usize, bool) {
    let mut records = Vec::new();
    let mut reconcile = false;
    for pages in 1..=100 {
        let page =
            client.pull_page(&key(), ObjectType::Transcripts, cursor.as_ref()).await.expect("page pulls");
        records.extend(page.records);
        reconcile |= page.reconcile_deletes;
        cursor = Some(page.cursor);
        if !page.has_more {
            return (records, cursor.expect("a cursor"), pages, reconcile);
        }
    }
    panic!("the pull did not finish within 100 pages");
}

fn ids(records: &[RemoteRecord]) -> BTreeSet<String> {
    records.iter().map(|r| r.external_id.as_str().to_owned()).collect()
}

fn meeting(title: &str, hours_ago: i64, processing: bool) -> NewTranscript {
    NewTranscript {
        title: title.into(),
        date: Utc::now() - chrono::Duration::hours(hours_ago),
        duration: 45.0,
        attendees: vec![Attendee { display_name: Some("Bo".into()), email: "bo@globex.example".into() }],
        calendar_id: Some(format!("cal-{title}")),
        summary: Summary {
            overview: Some("Talked.".into()),
            action_items: Some("**Ada Lovelace**\nSend the proposal (01:00)".into()),
            ..Summary::default()
        },
        processing,
        ..NewTranscript::default()
    }
}

#[tokio::test]
async fn a_full_pull_pages_every_transcript_fifty_at_a_time_with_its_summary_and_action_items() {
    let fake = start(120).await;
    let client = client(&fake, fast());
    let (records, _, pages, reconcile) = pull_all(client.as_ref(), None).await;
    assert_eq!(records.len(), 120);
    assert_eq!(ids(&records).len(), 120, "no transcript twice");
    assert_eq!(pages, 3, "50, 50, 20");
    assert!(!reconcile, "a first listing has nothing to reconcile");
    assert_eq!(fake.state().stats().fields.get("transcripts"), Some(&3));
    let one = records.iter().find(|r| r.fields["title"] == "Meeting 1").expect("Meeting 1");
    assert_eq!(
        one.fields["participants"],
        json!(["ada@acme.example", "buyer1@globex.example", "contact1@example.com"])
    );
    assert_eq!(one.fields["calendar_event_id"], "gcal000001");
    assert_eq!(one.fields["duration_minutes"], 30.0);
    assert_eq!(
        one.fields["action_items"],
        json!([
            { "text": "Send the revised proposal to contact1", "assignee": "Ada Lovelace" },
            { "text": "Share the security questionnaire", "assignee": "Contact 1" },
        ])
    );
}

#[tokio::test]
async fn an_incremental_pull_finds_a_transcript_processed_a_day_after_its_meeting() {
    let fake = start(3).await;
    let state = fake.state();
    let client = client(&fake, fast());
    let (_, cursor, _, _) = pull_all(client.as_ref(), None).await;
    let late = state.add(meeting("late", 30, true));
    let (records, cursor, pages, _) = pull_all(client.as_ref(), Some(cursor)).await;
    assert_eq!(pages, 1);
    assert!(!ids(&records).contains(&late), "still processing: invisible");
    assert!(state.complete(&late));
    let (records, cursor, _, reconcile) = pull_all(client.as_ref(), Some(cursor)).await;
    assert!(ids(&records).contains(&late), "30 hours back is inside the two-day lookback");
    assert!(!reconcile, "the daily reconciliation is not due yet");
    // A meeting of four days ago processed only now is outside the lookback: the next wide
    // traversal (asked for here, as a webhook or a manual sync asks) finds it and reconciles.
    let later = state.add(meeting("later", 96, false));
    let (records, cursor, _, _) = pull_all(client.as_ref(), Some(cursor)).await;
    assert!(!ids(&records).contains(&later));
    client.check_deletes_now();
    let (records, _, _, reconcile) = pull_all(client.as_ref(), Some(cursor)).await;
    assert!(ids(&records).contains(&later), "the wide traversal reaches 30 days back");
    assert!(reconcile, "and asks for the delete reconciliation");
}

#[tokio::test]
async fn live_ids_list_every_transcript_for_the_delete_reconciliation() {
    let fake = start(70).await;
    let client = client(&fake, fast());
    let first = client.live_ids(&key(), ObjectType::Transcripts, None).await.expect("ids");
    assert_eq!(first.ids.len(), 50);
    let second = client.live_ids(&key(), ObjectType::Transcripts, first.next.as_deref()).await.expect("ids");
    assert_eq!((second.ids.len(), second.next), (20, None));
    let all: BTreeSet<ExternalId> = first.ids.into_iter().chain(second.ids).collect();
    assert_eq!(all.len(), 70);
    let err = client.live_ids(&key(), ObjectType::Transcripts, Some("nope")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err:?}");
}

#[tokio::test]
async fn the_pacer_keeps_a_sync_under_the_limit_and_429s_are_waited_out_or_handed_back() {
    let fake = start(400).await; // 8 pages
    let state = fake.state();
    state.set_rate_limit(Some((4, chrono::Duration::seconds(1))));
    let paced = client(&fake, Pacing { per_second: 3.0, burst: 1.0, ..Pacing::default() });
    let (records, _, _, _) = pull_all(paced.as_ref(), None).await;
    assert_eq!(records.len(), 400);
    assert_eq!(state.stats().rate_limited, 0, "three a second under four: never limited");

    state.reset_stats();
    let unpaced = client(&fake, fast());
    let (records, _, _, _) = pull_all(unpaced.as_ref(), None).await;
    assert_eq!(records.len(), 400, "every too_many_requests waited out until its retryAfter");
    assert!(unpaced.stats().rate_limited > 0);
    assert_eq!(unpaced.stats().rate_limited, state.stats().rate_limited);

    // Free and Pro: 50 a day. A wait that long goes back to the worker as RateLimited.
    state.set_rate_limit(Some((1, chrono::Duration::days(1))));
    let daily = client(&fake, fast());
    daily.pull_page(&key(), ObjectType::Transcripts, None).await.expect("the day's one request");
    let err = daily.pull_page(&key(), ObjectType::Transcripts, None).await.unwrap_err();
    match err {
        ProviderError::RateLimited { retry_after } => {
            assert!(retry_after > Duration::from_secs(3600), "until the window ends: {retry_after:?}")
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

#[tokio::test]
async fn fireflies_errors_keep_their_class() {
    let fake = start(2).await;
    let mut wrong = connection(&fake);
    wrong.credentials.access_token = SecretString::from("not-a-key");
    let client_wrong = FirefliesFactory::new(reqwest::Client::new()).client(&wrong).unwrap();
    let err = client_wrong
        .pull_page(&SecretString::from("not-a-key"), ObjectType::Transcripts, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Unauthorized), "{err:?}");

    let client = client(&fake, fast());
    fake.state().inject_fault(Fault {
        route: Route::Graphql,
        kind: FaultKind::ServerError { status: Some(502) },
        count: 2,
    });
    let page =
        client.pull_page(&key(), ObjectType::Transcripts, None).await.expect("502s are retried in place");
    assert_eq!(page.records.len(), 2);
    let err = client
        .pull_page(&key(), ObjectType::Transcripts, Some(&SyncCursor::new("garbage")))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::CursorExpired));
    let err = client.pull_page(&key(), ObjectType::Contacts, None).await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err:?}");
    let ff = FirefliesFactory::new(reqwest::Client::new()).fireflies_client(&connection(&fake)).unwrap();
    assert_eq!(ff.account_email(&key()).await.unwrap(), "ada@acme.example");
}

fn engine() -> (Deps, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let factory = FirefliesFactory::new(reqwest::Client::new()).with_pacing(fast());
    let deps =
        syncbridge::adapters::memory::TestDeps::new(store.clone()).providers(Arc::new(factory)).build();
    (deps, store)
}

async fn sync_once(deps: &Deps, conn: &Connection, deletes: bool) -> JobOutcome {
    let job = super::provider_support::manual_job(conn);
    let job = if deletes { job.checking_deletes() } else { job };
    super::provider_support::run(deps, &job).await
}

#[tokio::test]
async fn the_worker_turns_action_items_into_follow_up_tasks_linked_to_the_event_and_contacts_and_deletes_cancel_them()
 {
    let fake = start(0).await;
    let state = fake.state();
    let (deps, store) = engine();
    // The tenant's Google Calendar connection already holds the meeting's event.
    let mut calendar = connection(&fake);
    calendar.provider = Provider::Google;
    calendar.connection_id = syncbridge::domain::ConnectionId::generate();
    store.put_connection(calendar.clone());
    let event = RemoteRecord {
        external_id: ExternalId::parse("cal-kickoff").unwrap(),
        object: ObjectType::Events,
        fields: [("title".to_owned(), json!("Kickoff"))].into_iter().collect(),
        remote_modified_at: None,
        deleted: false,
        etag: None,
    };
    syncbridge::sync::pull::apply_page(
        store.as_ref(),
        &calendar,
        ObjectType::Events,
        vec![event],
        Utc::now(),
    )
    .await
    .expect("event stored");
    let event_record = store.records_of(&calendar.tenant_id, &calendar.connection_id)[0].record_id.clone();
    // And its HubSpot connection the contact who attended.
    let mut crm = connection(&fake);
    crm.provider = Provider::Hubspot;
    crm.connection_id = syncbridge::domain::ConnectionId::generate();
    store.put_connection(crm.clone());
    let contact = RemoteRecord {
        external_id: ExternalId::parse("501").unwrap(),
        object: ObjectType::Contacts,
        fields: [("email".to_owned(), json!("Bo@Globex.example"))].into_iter().collect(),
        remote_modified_at: None,
        deleted: false,
        etag: None,
    };
    syncbridge::sync::pull::apply_page(store.as_ref(), &crm, ObjectType::Contacts, vec![contact], Utc::now())
        .await
        .expect("contact stored");
    let contact_record = store.records_of(&crm.tenant_id, &crm.connection_id)[0].record_id.clone();

    let kickoff = state.add(meeting("kickoff", 3, false));
    let quiet =
        state.add(NewTranscript { title: "no items".into(), date: Utc::now(), ..NewTranscript::default() });
    let conn = connection(&fake);
    store.put_connection(conn.clone());
    assert!(matches!(sync_once(&deps, &conn, false).await, JobOutcome::Completed { .. }));
    let records = store.records_of(&conn.tenant_id, &conn.connection_id);
    assert_eq!(records.iter().filter(|r| r.object == ObjectType::Transcripts).count(), 2);
    let tasks: Vec<_> = records.iter().filter(|r| r.object == ObjectType::ResearchTasks).collect();
    assert_eq!(tasks.len(), 1, "only the meeting with action items: {tasks:?}");
    let task = tasks[0];
    assert_eq!(task.external_id.as_str(), kickoff);
    assert_eq!(task.fields["kind"], "follow_up");
    assert_eq!(
        task.fields["action_items"],
        json!([{ "text": "Send the proposal", "assignee": "Ada Lovelace" }])
    );
    assert_eq!(task.fields["meeting_record_id"], json!(event_record), "linked to the calendar's event");
    assert_eq!(task.fields["external_attendees"], json!(["bo@globex.example"]));
    assert_eq!(
        task.fields["linked_contacts"],
        json!([contact_record]),
        "linked to the CRM contact who attended"
    );

    // A quiet second sync writes nothing new.
    assert!(matches!(sync_once(&deps, &conn, false).await, JobOutcome::Completed { .. }));
    assert_eq!(store.records_of(&conn.tenant_id, &conn.connection_id), records);

    // The owner deletes the meeting: a sync that checks deletes (a webhook's, a manual one) marks
    // the transcript deleted and cancels its task.
    assert!(state.delete(&kickoff));
    assert!(matches!(sync_once(&deps, &conn, true).await, JobOutcome::Completed { .. }));
    let records = store.records_of(&conn.tenant_id, &conn.connection_id);
    let gone: Vec<_> = records.iter().filter(|r| r.external_id.as_str() == kickoff).collect();
    assert_eq!(gone.len(), 2, "the transcript and its task");
    assert!(gone.iter().all(|r| r.deleted), "{gone:?}");
    assert!(records.iter().any(|r| r.external_id.as_str() == quiet && !r.deleted));
}

/// Fireflies connections to the Fireflies fake, Microsoft ones to the Graph fake.
struct FirefliesAndGraph {
    fireflies: FirefliesFactory,
    graph: GraphFactory,
}

impl ProviderFactory for FirefliesAndGraph {
    fn client(&self, connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError> {
        match connection.provider {
            Provider::Microsoft => self.graph.client(connection),
            _ => self.fireflies.client(connection),
        }
    }
}

#[tokio::test]
async fn an_outlook_meetings_follow_up_task_links_to_the_graph_event_fireflies_names_by_its_ical_uid() {
    let fireflies = start(0).await;
    let graph_fake =
        syncbridge_fakes::graph::GraphFake::start(syncbridge_fakes::graph::FakeConfig::default())
            .await
            .expect("Graph fake starts");
    let store = Arc::new(MemoryStore::new());
    let config = graph_fake.state().config().clone();
    let app =
        OAuthApp { client_id: config.client_id, client_secret: SecretString::from(config.client_secret) };
    let factory = FirefliesAndGraph {
        fireflies: FirefliesFactory::new(reqwest::Client::new()).with_pacing(fast()),
        graph: GraphFactory::new(
            reqwest::Client::new(),
            Some(app),
            Login { base_url: graph_fake.base_url(), tenant: "common".into() },
        ),
    };
    let deps =
        syncbridge::adapters::memory::TestDeps::new(store.clone()).providers(Arc::new(factory)).build();

    // The Outlook calendar pulls the meeting (under way: inside the calendar's window).
    let meeting_start = Utc::now() - chrono::Duration::minutes(30);
    let graph_id = graph_fake.state().create_event(syncbridge_fakes::graph::NewEvent {
        subject: "Renewal review".into(),
        body: String::new(),
        start: meeting_start,
        end: meeting_start + chrono::Duration::hours(1),
        all_day: false,
        location: String::new(),
        attendees: vec!["bo@globex.example".into()],
    });
    let served = graph_fake.state().event(&graph_id).expect("the fake holds the event");
    let ical_uid = served["iCalUId"].as_str().expect("Graph serves an iCalUId").to_owned();
    let mut outlook = connection(&fireflies);
    outlook.provider = Provider::Microsoft;
    outlook.base_url = graph_fake.base_url();
    outlook.credentials.access_token = SecretString::from("graph-fake-token");
    outlook.connection_id = syncbridge::domain::ConnectionId::generate();
    store.put_connection(outlook.clone());
    assert!(matches!(sync_once(&deps, &outlook, false).await, JobOutcome::Completed { .. }));
    let events = store.records_of(&outlook.tenant_id, &outlook.connection_id);
    let event = events
        .iter()
        .find(|r| {
            r.object == ObjectType::Events && r.external_id == graph::external_id_of(&graph_id).unwrap()
        })
        .expect("the Outlook event is stored");
    assert_eq!(event.fields["ical_uid"], json!(ical_uid), "pulled from Graph's iCalUId");

    // Fireflies recorded it and names the Outlook event by its iCalUID.
    let outlook_meeting = fireflies.state().add(NewTranscript {
        title: "Renewal review".into(),
        date: meeting_start,
        calendar_id: Some(ical_uid.clone()),
        calendar_type: Some("outlook".into()),
        ..meeting("renewal", 0, false)
    });
    let conn = connection(&fireflies);
    store.put_connection(conn.clone());
    assert!(matches!(sync_once(&deps, &conn, false).await, JobOutcome::Completed { .. }));
    let records = store.records_of(&conn.tenant_id, &conn.connection_id);
    let transcript = records
        .iter()
        .find(|r| r.object == ObjectType::Transcripts && r.external_id.as_str() == outlook_meeting)
        .expect("the transcript is stored");
    assert_eq!(transcript.fields["calendar_type"], "outlook");
    let task = records
        .iter()
        .find(|r| r.object == ObjectType::ResearchTasks && r.external_id.as_str() == outlook_meeting)
        .expect("a follow-up task");
    assert_eq!(task.fields["meeting_external_id"], json!(ical_uid));
    assert_eq!(task.fields["meeting_record_id"], json!(event.record_id), "linked to the Graph record");
    assert_eq!(task.fields["meeting_connection_id"], json!(outlook.connection_id));
}
