//! Follow-up tasks linked to their Outlook meeting end to end on the local stack (moto, the Graph
//! and Fireflies fakes over HTTP, the worker through SQS): the Outlook connection stores the event
//! with its `iCalUId`, and the Fireflies transcript that names the meeting by that UID becomes a
//! task linked to the Graph record through the `meeting_uid` index.

use std::time::Duration;

use chrono::{Timelike, Utc};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fireflies_transcript_naming_an_outlook_meeting_by_its_ical_uid_links_its_task_to_the_graph_record()
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
    // A meeting under way (inside the calendar's window), pulled by the Outlook connection.
    let start = (Utc::now() - chrono::Duration::minutes(30)).with_nanosecond(0).unwrap();
    let graph = stack.graph.state();
    let graph_id = graph.create_event(NewEvent {
        subject: "Renewal with Globex".into(),
        body: String::new(),
        start,
        end: start + chrono::Duration::hours(1),
        all_day: false,
        location: String::new(),
        attendees: vec!["ada@acme.example".into(), "bo@globex.example".into()],
    });
    let ical_uid = graph.event(&graph_id).unwrap()["iCalUId"].as_str().unwrap().to_owned();
    let outlook = connect(
        &stack,
        json!({ "provider": "microsoft", "base_url": stack.graph.base_url(), "access_token": "graph-fake-token" }),
    )
    .await;
    stack.runner.fire_schedule(Utc::now()).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let events = all_records(&stack, "acme", &outlook).await.unwrap();
    let event = events.iter().find(|r| r["object"] == "events").expect("the Outlook event is stored");
    assert_eq!(event["fields"]["ical_uid"], json!(ical_uid));

    // Fireflies recorded it and names it by the UID (`calendar_type: outlook`).
    let ff = stack.fireflies.as_ref().unwrap();
    let meeting = ff.state().add(NewTranscript {
        title: "Renewal with Globex".into(),
        date: start,
        duration: 60.0,
        calendar_id: Some(ical_uid.clone()),
        calendar_type: Some("outlook".into()),
        summary: Summary {
            action_items: Some("**Ada Lovelace**\nSend the renewal quote (04:10)".into()),
            ..Summary::default()
        },
        ..NewTranscript::default()
    });
    let owner = ff.state().owner_email.clone();
    let transcripts = connect(
        &stack,
        json!({ "provider": "fireflies", "access_token": fireflies::DEFAULT_API_KEY, "account_id": owner }),
    )
    .await;
    stack.runner.fire_schedule(Utc::now()).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let records = all_records(&stack, "acme", &transcripts).await.unwrap();
    let task = records
        .iter()
        .find(|r| r["object"] == "research_tasks" && r["external_id"] == json!(meeting))
        .expect("the transcript's follow-up task");
    assert_eq!(task["fields"]["kind"], "follow_up");
    assert_eq!(task["fields"]["meeting_external_id"], json!(ical_uid));
    assert_eq!(task["fields"]["meeting_record_id"], event["record_id"], "linked to the Graph record");
    assert_eq!(task["fields"]["meeting_connection_id"], json!(outlook));
}
