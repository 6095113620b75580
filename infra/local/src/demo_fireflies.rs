//! The demo's Fireflies step: acme connects its Fireflies account with an API key (no base URL:
//! `FIREFLIES_API_BASE_URL` sends it to the fake); the first sync pulls every transcript and turns
//! the action items into follow-up tasks, one linked to the Google Calendar event of its meeting
//! and to the HubSpot contact who attended;
//! a meeting processed a day after it started arrives by Fireflies' signed webhook; a meeting its
//! owner deletes goes away, with its task, at "sync now".

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use syncbridge_fakes::fireflies::{Attendee, DEFAULT_API_KEY, FakeConfig, NewTranscript, Summary};

use crate::cli::ApiClient;
use crate::local::LocalStack;

/// What the demo starts the Fireflies fake with: 8 processed meetings, Business rate limits on.
pub fn fake_config() -> FakeConfig {
    FakeConfig { transcripts: 8, rate_limits: true, ..FakeConfig::default() }
}

/// Runs the step for `tenant`, whose calendar connection `calendar` already holds events;
/// returns the new connection's id.
pub async fn run(stack: &LocalStack, api: &ApiClient, tenant: &str, calendar: &str) -> Result<String> {
    let fake = stack.fireflies.as_ref().context("the Fireflies fake")?;
    let state = fake.state();
    state.reset_stats();
    // One meeting of this morning was on the tenant's calendar: its transcript names the event.
    let events = api
        .call(
            reqwest::Method::GET,
            &format!("/v1/connections/{calendar}/records?object=events&limit=1"),
            None,
        )
        .await?;
    let event = events.pointer("/items/0").context("a calendar event")?;
    let event_id = event.get("external_id").and_then(Value::as_str).context("event id")?.to_owned();
    let event_record = event.get("record_id").cloned().unwrap_or(Value::Null);
    // A contact of the tenant's HubSpot attended that meeting too.
    let connections = api.call(reqwest::Method::GET, "/v1/connections", None).await?;
    let hubspot = connections
        .get("items")
        .and_then(Value::as_array)
        .and_then(|items| items.iter().find(|c| c.get("provider") == Some(&json!("hubspot"))))
        .and_then(|c| c.get("id").and_then(Value::as_str))
        .context("the tenant's HubSpot connection")?
        .to_owned();
    let contacts = api
        .call(
            reqwest::Method::GET,
            &format!("/v1/connections/{hubspot}/records?object=contacts&limit=1"),
            None,
        )
        .await?;
    let contact = contacts.pointer("/items/0").context("a HubSpot contact")?;
    let contact_email =
        contact.pointer("/fields/email").and_then(Value::as_str).context("the contact's email")?.to_owned();
    let contact_record = contact.get("record_id").cloned().unwrap_or(Value::Null);
    let meeting =
        |title: &str, hours_ago: i64, calendar_id: Option<String>, processing: bool| NewTranscript {
            title: title.into(),
            date: state.now() - chrono::Duration::hours(hours_ago),
            duration: 40.0,
            attendees: std::iter::once(Attendee {
                display_name: Some("Bo Buyer".into()),
                email: "bo@globex.example".into(),
            })
            .chain(
                calendar_id.as_ref().map(|_| Attendee { display_name: None, email: contact_email.clone() }),
            )
            .collect(),
            calendar_id,
            summary: Summary {
                overview: Some("Pricing and rollout.".into()),
                action_items: Some(
                    "**Ada Lovelace**\nSend the order form (12:40)\nBook the rollout call (31:05)".into(),
                ),
                ..Summary::default()
            },
            processing,
            ..NewTranscript::default()
        };
    state.add(meeting("Pricing call", 3, Some(event_id.clone()), false));
    let body = json!({
        "provider": "fireflies",
        "access_token": DEFAULT_API_KEY,
        "interval_minutes": 30,
    });
    let created = api.call(reqwest::Method::POST, "/v1/connections", Some(body)).await?;
    let id = created.get("id").and_then(Value::as_str).context("connection id")?.to_owned();
    // The key is proven at connect and names its owner, whom the webhooks below name.
    if created.get("account_id").and_then(Value::as_str) != Some(state.owner_email.as_str()) {
        bail!("connecting Fireflies did not learn the key owner's account: {created}");
    }
    api.call(reqwest::Method::POST, &format!("/v1/connections/{id}/sync"), Some(json!({}))).await?;
    stack.runner.drain(Duration::from_secs(600)).await?;
    let full = last_run(api, &id).await?;
    let tasks = follow_ups(api, &id).await?;
    let linked =
        tasks.iter().filter(|t| t.pointer("/fields/meeting_record_id") == Some(&event_record)).count();
    let with_contact = tasks
        .iter()
        .filter(|t| t.pointer("/fields/linked_contacts") == Some(&json!([contact_record.clone()])))
        .count();
    println!(
        "   {tenant} connected Fireflies with an API key (checked at connect: account {}): full sync pulled {} transcript(s) in {} request(s), \
         {} follow-up task(s) from their action items, {linked} linked to its Google Calendar event and \
         {with_contact} to the HubSpot contact who attended",
        state.owner_email,
        count(&full, "pulled"),
        count(&full, "requests"),
        count(&full, "tasks_opened"),
    );
    if count(&full, "pulled") != 9 || tasks.len() != 9 || linked != 1 || with_contact != 1 {
        bail!("the full Fireflies sync did not bring 9 transcripts and 9 tasks with one linked: {full}");
    }

    // Fireflies finishes a long recording of yesterday only now, and says so by webhook.
    let late = state.add(meeting("Quarterly review", 20, None, true));
    state.complete(&late);
    let status = state.send_webhook(&late, None).await?;
    let webhook = webhook_run(stack, api, &id).await?;
    println!(
        "   a transcript processed 20 h after its meeting: Fireflies' signed webhook answered {status}, \
         the job it enqueued pulled {} transcript(s) ({} new, {} task opened)",
        count(&webhook, "pulled"),
        count(&webhook, "created"),
        count(&webhook, "tasks_opened"),
    );
    if status != 200 || count(&webhook, "created") != 1 || count(&webhook, "tasks_opened") != 1 {
        bail!("the webhook did not bring exactly the late transcript: {webhook}");
    }

    // The owner deletes a meeting in Fireflies; "sync now" reconciles deletes.
    let gone = tasks
        .iter()
        .filter_map(|t| t.get("external_id").and_then(Value::as_str))
        .find(|e| *e != late)
        .context("a transcript")?
        .to_owned();
    state.delete(&gone);
    api.call(reqwest::Method::POST, &format!("/v1/connections/{id}/sync"), Some(json!({}))).await?;
    stack.runner.drain(Duration::from_secs(600)).await?;
    let manual = last_run(api, &id).await?;
    println!(
        "   its owner deletes a meeting; sync now: {} deleted, {} task cancelled",
        count(&manual, "deleted"),
        count(&manual, "tasks_cancelled"),
    );
    if count(&manual, "deleted") != 1 || count(&manual, "tasks_cancelled") != 1 {
        bail!("the deleted Fireflies meeting did not go away with its task: {manual}");
    }
    let stats = state.stats();
    println!("   Fireflies requests in this step: {} ({} answered 429)", stats.total, stats.rate_limited);
    Ok(id)
}

async fn follow_ups(api: &ApiClient, id: &str) -> Result<Vec<Value>> {
    let records = api
        .call(
            reqwest::Method::GET,
            &format!("/v1/connections/{id}/records?object=research_tasks&limit=100"),
            None,
        )
        .await?;
    Ok(records
        .get("items")
        .and_then(Value::as_array)
        .map(|items| {
            items.iter().filter(|r| r.pointer("/fields/kind") == Some(&json!("follow_up"))).cloned().collect()
        })
        .unwrap_or_default())
}

/// The run of the webhook's job. The job waits for its coalescing window to close, during which
/// the queue can look empty to a drain: drain until the run is there (at most 30 s).
async fn webhook_run(stack: &LocalStack, api: &ApiClient, id: &str) -> Result<Value> {
    for _ in 0..30 {
        stack.runner.drain(Duration::from_secs(600)).await?;
        let run = last_run(api, id).await?;
        if run.get("reason").and_then(Value::as_str) == Some("webhook") {
            return Ok(run);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("the Fireflies webhook's job did not run within 30 s")
}

async fn last_run(api: &ApiClient, id: &str) -> Result<Value> {
    let runs = api.call(reqwest::Method::GET, &format!("/v1/connections/{id}/runs?limit=1"), None).await?;
    runs.pointer("/items/0").cloned().context("a run")
}

fn count(run: &Value, key: &str) -> u64 {
    run.pointer(&format!("/counts/{key}")).and_then(Value::as_u64).unwrap_or(0)
}
