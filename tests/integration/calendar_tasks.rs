//! Calendar events to pre-meeting research tasks, end to end on the local stack: an Outlook
//! calendar (the Graph fake over HTTP) synced through moto; a meeting with an outside attendee opens
//! one task due 24 hours before it, moving the meeting moves the task, cancelling it cancels the task.
//! A person's edit of a task stays local: no push item, no request to Graph (which takes events
//! only), and the task keeps it when its meeting moves.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use serde_json::{Value, json};
use syncbridge_fakes::graph::NewEvent;
use syncbridge_tests::{all_records, api, stack};

const DRAIN: Duration = Duration::from_secs(120);

fn tasks(records: &[Value]) -> Vec<&Value> {
    records.iter().filter(|r| r["object"] == "research_tasks").collect()
}

fn due(task: &Value) -> DateTime<Utc> {
    task["fields"]["due_at"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).unwrap().to_utc()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outlook_meeting_with_an_outside_attendee_opens_moves_and_cancels_its_research_task_whose_edits_stay_local()
 {
    let stack = stack(0, false).await.unwrap();
    let graph = stack.graph.state();
    let start = (Utc::now() + chrono::Duration::days(2)).with_nanosecond(0).unwrap();
    let external = graph.create_event(NewEvent {
        subject: "Pricing with Initech".into(),
        body: String::new(),
        start,
        end: start + chrono::Duration::hours(1),
        all_day: false,
        location: String::new(),
        attendees: vec!["ann@acme.example".into(), "peter@initech.example".into()],
    });
    graph.create_event(NewEvent {
        subject: "Team standup".into(),
        body: String::new(),
        start: start + chrono::Duration::hours(3),
        end: start + chrono::Duration::hours(4),
        all_day: false,
        location: String::new(),
        attendees: vec!["ann@acme.example".into(), "bob@acme.example".into()],
    });
    let created = api(&stack, "acme")
        .unwrap()
        .call(
            reqwest::Method::POST,
            "/v1/connections",
            Some(json!({
                "provider": "microsoft",
                "base_url": stack.graph.base_url(),
                "access_token": "graph-fake-token",
                "settings": { "own_domains": ["acme.example"] },
            })),
        )
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["settings"]["own_domains"], json!(["acme.example"]));

    stack.runner.fire_schedule(Utc::now()).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let records = all_records(&stack, "acme", &id).await.unwrap();
    assert_eq!(records.iter().filter(|r| r["object"] == "events").count(), 2);
    let open = tasks(&records);
    assert_eq!(open.len(), 1, "one task: the standup is internal");
    assert_eq!(due(open[0]), start - chrono::Duration::hours(24));
    assert_eq!(open[0]["fields"]["external_attendees"], json!(["peter@initech.example"]));
    assert_eq!(open[0]["deleted"], false);

    // Marking it done is a local edit: 204, nothing queued, nothing sent to Graph.
    let task_id = open[0]["record_id"].as_str().unwrap().to_owned();
    let edited = reqwest::Client::new()
        .post(format!("{}/v1/connections/{id}/records/{task_id}/edit", stack.gateway.base_url()))
        .bearer_auth(stack.token("acme").unwrap())
        .json(&json!({ "fields": { "status": "done" }, "idempotency_key": "done-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(edited.status(), reqwest::StatusCode::NO_CONTENT);
    let queue = syncbridge_tests::get(&stack, "acme", "/v1/push").await.unwrap();
    assert_eq!(queue["items"], json!([]), "a task edit queues no push");
    let audit = syncbridge_tests::get(&stack, "acme", "/v1/audit?operation=local_edit").await.unwrap();
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(audit["items"][0]["after"], json!({ "status": "done" }));

    assert!(graph.move_event(&external, chrono::Duration::days(1)));
    stack.runner.fire_schedule(Utc::now() + chrono::Duration::minutes(16)).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let records = all_records(&stack, "acme", &id).await.unwrap();
    let moved = tasks(&records);
    assert_eq!(moved.len(), 1);
    assert_eq!(due(moved[0]), start, "the task moved with its meeting");
    assert_eq!(moved[0]["fields"]["status"], "done", "and kept the person's edit");
    assert_eq!(moved[0]["pending_push"], json!({}));
    use syncbridge_fakes::graph::Route;
    let writes: u64 = [Route::CreateEvent, Route::UpdateEvent, Route::DeleteEvent]
        .into_iter()
        .map(|r| graph.route_count(r))
        .sum();
    assert_eq!(writes, 0, "Graph never saw a write");

    assert!(graph.cancel_event(&external));
    stack.runner.fire_schedule(Utc::now() + chrono::Duration::minutes(32)).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let records = all_records(&stack, "acme", &id).await.unwrap();
    assert_eq!(tasks(&records)[0]["deleted"], true, "the task is cancelled with its meeting");
    let runs = syncbridge_tests::get(&stack, "acme", &format!("/v1/connections/{id}/runs")).await.unwrap();
    let opened: u64 =
        runs["items"].as_array().unwrap().iter().filter_map(|r| r["counts"]["tasks_opened"].as_u64()).sum();
    let cancelled: u64 = runs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["counts"]["tasks_cancelled"].as_u64())
        .sum();
    assert_eq!((opened, cancelled), (1, 1));
}
