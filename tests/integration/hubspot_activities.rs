//! The HubSpot adapter's activities (calls, emails, meetings and tasks as the canonical
//! `activities`), against the HubSpot fake over HTTP: full and incremental pulls, deletes, limits,
//! errors, and writes (creates with associations, idempotent like notes; updates and deletes).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use syncbridge::adapters::hubspot::Pacing;
use syncbridge::domain::{ConnectionSettings, ObjectType, SyncCursor};
use syncbridge::ports::{ProviderError, ProviderWrite};
use syncbridge_fakes::hubspot::{ALL_SCOPES, FakeConfig, Fault, FaultKind, ObjectKind, Route};

use super::hubspot_objects::{by_object, client, client_with, create, fast, pull_all, start, token, update};

fn activities() -> FakeConfig {
    FakeConfig {
        contacts: 20,
        companies: 4,
        deals: 6,
        calls: 130,
        emails: 12,
        meetings: 8,
        tasks: 5,
        ..FakeConfig::default()
    }
}

fn kinds_of(records: &[syncbridge::domain::RemoteRecord]) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for r in records {
        let kind = r.fields.get("kind").and_then(Value::as_str).unwrap_or("?").to_owned();
        *counts.entry(kind).or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

#[tokio::test]
async fn hubspot_activities_pull_all_four_types_in_full_then_only_their_edits_with_one_search_each() {
    let fake = start(activities()).await;
    let state = fake.state();
    let client = client(&fake);
    let (records, cursor) = pull_all(client.as_ref(), ObjectType::Activities, None).await;
    assert_eq!(
        kinds_of(&records),
        [
            ("call".to_owned(), 130),
            ("email".to_owned(), 12),
            ("meeting".to_owned(), 8),
            ("task".to_owned(), 5)
        ]
    );
    assert!(records.iter().all(|r| r.object == ObjectType::Activities && !r.deleted));
    let call = records.iter().find(|r| r.external_id.as_str() == "call:7").expect("call 7");
    assert!(call.fields["subject"].as_str().is_some_and(|s| s.starts_with("Call with")));
    assert!(call.fields["body"].as_str().is_some_and(|s| s.contains("renewal")));
    assert_eq!(call.fields["status"], json!("COMPLETED"));
    assert!(call.fields["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    let contacts = state.associated(ObjectKind::Calls, "7", ObjectKind::Contacts);
    assert_eq!(call.fields["contact_ids"], json!(contacts));
    let meeting = records.iter().find(|r| r.external_id.as_str() == "meeting:2").expect("meeting 2");
    assert!(meeting.fields["start"].is_string() && meeting.fields["end"].is_string());
    let ids: BTreeSet<&str> = records.iter().map(|r| r.external_id.as_str()).collect();
    assert_eq!(ids.len(), records.len(), "calls and tasks numbered alike stay apart: {:?}", ids.first());
    assert!(ids.contains("call:1") && ids.contains("task:1"));

    state.edit(ObjectKind::Calls, "7", &[("hs_call_status", "NO_ANSWER")]).expect("edit call");
    state.edit(ObjectKind::Tasks, "3", &[("hs_task_status", "COMPLETED")]).expect("edit task");
    state.reset_stats();
    let (records, _) = pull_all(client.as_ref(), ObjectType::Activities, cursor).await;
    let changed: BTreeSet<&str> = records.iter().map(|r| r.external_id.as_str()).collect();
    assert!(changed.contains("call:7") && changed.contains("task:3"), "{changed:?}");
    let task = records.iter().find(|r| r.external_id.as_str() == "task:3").expect("task 3");
    assert_eq!(task.fields["status"], json!("COMPLETED"));
    assert_eq!(task.fields["kind"], json!("task"));
    for path in ["calls", "emails", "meetings", "tasks"] {
        assert_eq!(by_object(&state, &format!("{path}.search")), 1, "one search for {path}");
    }
}

#[tokio::test]
async fn hubspot_archived_activities_become_deletes_with_their_kind_in_the_id() {
    let fake = start(activities()).await;
    let state = fake.state();
    let pacing = Pacing { archived_check_interval: Duration::ZERO, ..fast() };
    let client = client_with(&fake, pacing, ConnectionSettings::default());
    let (_, cursor) = pull_all(client.as_ref(), ObjectType::Activities, None).await;
    assert!(state.archive(ObjectKind::Meetings, "3"));
    assert!(state.archive(ObjectKind::Emails, "2"));
    let (records, _) = pull_all(client.as_ref(), ObjectType::Activities, cursor).await;
    let deleted: BTreeSet<&str> =
        records.iter().filter(|r| r.deleted).map(|r| r.external_id.as_str()).collect();
    assert_eq!(deleted, ["email:2", "meeting:3"].into());
}

#[tokio::test]
async fn hubspot_activities_wait_out_a_429_and_turn_a_missing_scope_and_a_dead_cursor_into_typed_errors() {
    let fake = start(activities()).await;
    let state = fake.state();
    let client = client(&fake);
    let (_, cursor) = pull_all(client.as_ref(), ObjectType::Activities, None).await;
    state.inject_fault(Fault {
        route: Route::Search,
        kind: FaultKind::RateLimit { policy: Some("SECONDLY".into()), retry_after_secs: None },
        count: 1,
    });
    let (_, _) = pull_all(client.as_ref(), ObjectType::Activities, cursor).await;
    assert_eq!(client.stats().rate_limited, 1, "waited out in place");

    state.inject_fault(Fault { route: Route::List, kind: FaultKind::ServerError, count: 10 });
    let err = client.pull_page(&token(), ObjectType::Activities, None).await.expect_err("500s");
    assert!(err.is_retryable(), "{err:?}");
    state.clear_faults();

    let dead = SyncCursor::new("{\"not\":\"ours\"}");
    let err = client.pull_page(&token(), ObjectType::Activities, Some(&dead)).await.expect_err("cursor");
    assert!(matches!(err, ProviderError::CursorExpired), "{err:?}");

    let scopes: Vec<&str> =
        ALL_SCOPES.iter().copied().filter(|s| !s.starts_with("crm.objects.contacts")).collect();
    let issued = state.issue_token_with_scopes(None, &scopes);
    let limited = secrecy::SecretString::from(issued.access_token);
    let err = client.pull_page(&limited, ObjectType::Activities, None).await.expect_err("no scope");
    assert!(
        matches!(&err, ProviderError::Permanent(f) if f.code.as_deref() == Some("MISSING_SCOPES")),
        "{err:?}"
    );
}

#[tokio::test]
async fn hubspot_activity_creates_carry_their_associations_and_a_retry_finds_the_first_by_its_tag() {
    let fake = start(activities()).await;
    let state = fake.state();
    let task = create(
        ObjectType::Activities,
        "push:task-1",
        json!({"kind": "task", "subject": "Send the pricing sheet", "body": "[ARIA] they asked for it",
               "status": "NOT_STARTED", "timestamp": "2026-01-09T09:00:00Z",
               "contact_ids": ["4"], "deal_ids": ["2"]}),
    );
    let first = client(&fake).write(&token(), std::slice::from_ref(&task)).await.expect("create");
    let id = first[0].as_ref().expect("created").external_id.clone();
    let hub_id = id.as_str().strip_prefix("task:").expect("a task id").to_owned();
    let made = state.object(ObjectKind::Tasks, &hub_id).expect("task");
    assert_eq!(made["properties"]["hs_task_subject"], "Send the pricing sheet");
    assert_eq!(made["properties"]["hs_task_status"], "NOT_STARTED");
    assert_eq!(
        made["properties"]["hs_task_body"],
        format!("[ARIA] they asked for it\n{}", syncbridge::domain::key_tag("push:task-1"))
    );
    assert_eq!(state.associated(ObjectKind::Tasks, &hub_id, ObjectKind::Contacts), ["4"]);
    assert_eq!(state.associated(ObjectKind::Tasks, &hub_id, ObjectKind::Deals), ["2"]);

    let tasks_before = state.count(ObjectKind::Tasks);
    state.reset_stats();
    let retried = client(&fake).write(&token(), std::slice::from_ref(&task)).await.expect("retry");
    assert_eq!(retried[0].as_ref().expect("acknowledged").external_id, id, "the same task");
    assert_eq!(state.count(ObjectKind::Tasks), tasks_before, "no second task");
    assert_eq!(state.stats().routes.get("batch_create"), None);

    let call = create(
        ObjectType::Activities,
        "push:call-1",
        json!({"kind": "call", "subject": "Intro", "direction": "OUTBOUND", "timestamp": "2026-01-09T10:00:00Z",
               "company_ids": ["1"]}),
    );
    let no_kind = create(ObjectType::Activities, "push:x", json!({"subject": "?"}));
    let results = client(&fake).write(&token(), &[call, no_kind]).await.expect("batch");
    let call_id = results[0].as_ref().expect("call").external_id.as_str().to_owned();
    assert!(call_id.starts_with("call:"));
    assert!(matches!(&results[1], Err(ProviderError::Permanent(_))), "an activity needs its kind");
    let hub_call = call_id.trim_start_matches("call:");
    assert_eq!(state.associated(ObjectKind::Calls, hub_call, ObjectKind::Companies), ["1"]);
}

#[tokio::test]
async fn hubspot_activity_updates_and_deletes_go_to_the_type_in_their_id_and_respect_preconditions() {
    let fake = start(activities()).await;
    let state = fake.state();
    let client = client(&fake);
    let (records, _) = pull_all(client.as_ref(), ObjectType::Activities, None).await;
    let stamp =
        |id: &str| records.iter().find(|r| r.external_id.as_str() == id).and_then(|r| r.remote_modified_at);
    let results = client
        .write(
            &token(),
            &[update(
                ObjectType::Activities,
                "meeting:2",
                json!({"status": "COMPLETED"}),
                stamp("meeting:2"),
            )],
        )
        .await
        .expect("update");
    assert_eq!(results[0].as_ref().expect("written").external_id.as_str(), "meeting:2");
    assert_eq!(
        state.object(ObjectKind::Meetings, "2").expect("m")["properties"]["hs_meeting_outcome"],
        "COMPLETED"
    );
    assert_eq!(
        state.object(ObjectKind::Calls, "2").expect("c")["properties"].get("hs_meeting_outcome"),
        None,
        "call 2, numbered like meeting 2, untouched"
    );

    state.edit(ObjectKind::Emails, "4", &[("hs_email_subject", "Edited at HubSpot")]).expect("edit");
    let delete = |id: &str| ProviderWrite::Delete {
        object: ObjectType::Activities,
        external_id: syncbridge::domain::ExternalId::parse(id).expect("id"),
        precondition: syncbridge::ports::Precondition { etag: None, unmodified_since: stamp(id) },
    };
    let results = client.write(&token(), &[delete("email:4"), delete("task:5")]).await.expect("deletes");
    assert!(matches!(results[0], Err(ProviderError::Conflict)), "edited since: {:?}", results[0]);
    assert!(results[1].is_ok());
    assert_eq!(state.object(ObjectKind::Emails, "4").expect("e")["archived"], false);
    assert_eq!(state.object(ObjectKind::Tasks, "5").expect("t")["archived"], true);
    let unknown = client
        .write(&token(), &[update(ObjectType::Activities, "fax:1", json!({"status": "x"}), None)])
        .await
        .expect("batch");
    assert!(matches!(unknown[0], Err(ProviderError::Permanent(_))));
}
