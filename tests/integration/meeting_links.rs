//! Follow-up tasks linked to their Outlook meeting end to end on the local stack (moto, the Graph
//! and Fireflies fakes over HTTP, the worker through SQS): the Outlook connection stores the events
//! with their `iCalUId`, and a Fireflies transcript that names a meeting by that UID becomes a
//! task linked to the Graph record through the `meeting_uid` index, unless the meeting was
//! cancelled.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use serde_json::{Value, json};
use syncbridge_fakes::fireflies::{self, NewTranscript, Summary};
use syncbridge_fakes::graph::NewEvent;
use syncbridge_tests::{HUBSPOT_TOKEN, LocalStack, StackOptions, all_records, api};

const DRAIN: Duration = Duration::from_secs(120);

async fn connect(stack: &LocalStack, body: Value) -> String {
    let created =
        api(stack, "acme").unwrap().call(reqwest::Method::POST, "/v1/connections", Some(body)).await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

async fn sync_due(stack: &LocalStack, at: DateTime<Utc>) {
    stack.runner.fire_schedule(at).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
}

fn meeting(subject: &str, start: DateTime<Utc>) -> NewEvent {
    NewEvent {
        subject: subject.into(),
        body: String::new(),
        start,
        end: start + chrono::Duration::hours(1),
        all_day: false,
        location: String::new(),
        attendees: vec!["ada@acme.example".into(), "bo@globex.example".into()],
    }
}

fn transcript(title: &str, start: DateTime<Utc>, ical_uid: &str) -> NewTranscript {
    NewTranscript {
        title: title.into(),
        date: start,
        duration: 60.0,
        calendar_id: Some(ical_uid.to_owned()),
        calendar_type: Some("outlook".into()),
        summary: Summary {
            action_items: Some("**Ada Lovelace**\nSend the renewal quote (04:10)".into()),
            ..Summary::default()
        },
        ..NewTranscript::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fireflies_transcript_naming_an_outlook_meeting_by_its_ical_uid_links_its_task_to_the_graph_record_unless_cancelled()
 {
    let stack = LocalStack::start(StackOptions {
        hubspot: syncbridge_fakes::hubspot::FakeConfig {
            private_app_token: Some(HUBSPOT_TOKEN.into()),
            ..Default::default()
        },
        fireflies: Some(fireflies::FakeConfig::default()),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    // Two meetings under way (inside the calendar's window), pulled by the Outlook connection.
    let start = (Utc::now() - chrono::Duration::minutes(30)).with_nanosecond(0).unwrap();
    let graph = stack.graph.state();
    let renewal = graph.create_event(meeting("Renewal with Globex", start));
    let sync_call = graph.create_event(meeting("Sync with Globex", start));
    let uid_of = |id: &str| graph.event(id).unwrap()["iCalUId"].as_str().unwrap().to_owned();
    let (renewal_uid, sync_uid) = (uid_of(&renewal), uid_of(&sync_call));
    assert_ne!(renewal_uid, sync_uid);
    let outlook = connect(
        &stack,
        json!({ "provider": "microsoft", "base_url": stack.graph.base_url(), "access_token": "graph-fake-token" }),
    )
    .await;
    sync_due(&stack, Utc::now()).await;
    // The second meeting is cancelled: the next sync marks its event deleted.
    assert!(graph.cancel_event(&sync_call));
    sync_due(&stack, Utc::now() + chrono::Duration::minutes(16)).await;
    let events = all_records(&stack, "acme", &outlook).await.unwrap();
    let event_of = |uid: &str| {
        events.iter().find(|r| r["object"] == "events" && r["fields"]["ical_uid"] == json!(uid)).cloned()
    };
    let event = event_of(&renewal_uid).expect("the Outlook event is stored with its UID");
    assert_eq!(event["deleted"], false);
    let cancelled = events.iter().filter(|r| r["object"] == "events" && r["deleted"] == true).count();
    assert_eq!(cancelled, 1, "the cancelled meeting's event is deleted");

    // Fireflies recorded both and names each by its UID (`calendar_type: outlook`).
    let ff = stack.fireflies.as_ref().unwrap();
    let renewal_meeting = ff.state().add(transcript("Renewal with Globex", start, &renewal_uid));
    let sync_meeting = ff.state().add(transcript("Sync with Globex", start, &sync_uid));
    let owner = ff.state().owner_email.clone();
    let transcripts = connect(
        &stack,
        json!({ "provider": "fireflies", "access_token": fireflies::DEFAULT_API_KEY, "account_id": owner }),
    )
    .await;
    sync_due(&stack, Utc::now() + chrono::Duration::minutes(17)).await;
    let records = all_records(&stack, "acme", &transcripts).await.unwrap();
    let task_of = |meeting: &str| {
        records
            .iter()
            .find(|r| r["object"] == "research_tasks" && r["external_id"] == json!(meeting))
            .cloned()
            .expect("the transcript's follow-up task")
    };
    let task = task_of(&renewal_meeting);
    assert_eq!(task["fields"]["kind"], "follow_up");
    assert_eq!(task["fields"]["meeting_external_id"], json!(renewal_uid));
    assert_eq!(task["fields"]["meeting_record_id"], event["record_id"], "linked to the Graph record");
    assert_eq!(task["fields"]["meeting_connection_id"], json!(outlook));
    let unlinked = task_of(&sync_meeting);
    assert_eq!(unlinked["fields"]["meeting_external_id"], json!(sync_uid));
    assert_eq!(unlinked["fields"].get("meeting_record_id"), None, "a cancelled meeting's event never links");
}
