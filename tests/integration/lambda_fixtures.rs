//! The Lambda event fixtures of `tests/fixtures/` (what `cargo lambda invoke` sends to the
//! functions `cargo lambda watch` serves) through the very handlers those functions wire, against
//! moto and the HubSpot fake.

use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::Value;
use syncbridge::domain::{ConnectionId, ConnectionStatus, JobId, ObjectType, TenantId};
use syncbridge::http as api;
use syncbridge::sync::{Deadline, dispatcher, worker};
use syncbridge::wiring;
use syncbridge_local::fixtures;
use syncbridge_tests::*;
use tower::ServiceExt;

const CONTACTS: usize = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_worker_and_api_handlers_take_the_committed_lambda_event_fixtures() {
    let stack = stack(CONTACTS, false).await.unwrap();
    let deps = &stack.deps;
    let now = chrono::Utc::now();
    fixtures::ensure_connection(deps.connections.as_ref(), &stack.hubspot.base_url(), HUBSPOT_TOKEN, now)
        .await
        .unwrap();
    let (tenant, connection) =
        (TenantId::parse(fixtures::TENANT).unwrap(), ConnectionId::parse(fixtures::CONNECTION).unwrap());

    // The scheduled event: the connection is due, its slot is claimed and one job enqueued.
    let summary = dispatcher::handle_schedule(deps, fixtures::scheduled_event().unwrap()).await.unwrap();
    assert_eq!((summary.due, summary.claimed, summary.enqueued), (1, 1, 1), "{summary:?}");
    let queued = stack
        .runner
        .sqs
        .receive_message()
        .queue_url(&stack.runner.queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let bodies: Vec<Value> = queued
        .messages()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap_or_default()).unwrap())
        .collect();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["connection_id"], fixtures::CONNECTION);
    assert_eq!(bodies[0]["reason"], "schedule");

    // The SQS batch: its job syncs the connection's contacts, and no message is reported failed.
    let batch = fixtures::sqs_batch().unwrap();
    let job_id = JobId::parse(
        serde_json::from_str::<Value>(batch.records[0].body.as_deref().unwrap()).unwrap()["job_id"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let answer = worker::handle_batch(deps, batch, Deadline::after(Duration::from_secs(120))).await;
    assert!(answer.batch_item_failures.is_empty(), "{:?}", answer.batch_item_failures);
    let synced = deps.connections.get(&tenant, &connection).await.unwrap().unwrap();
    assert_eq!(synced.status, ConnectionStatus::Synced);
    assert_eq!(synced.record_counts.get(&ObjectType::Contacts), Some(&(CONTACTS as u64)));
    assert!(deps.runs.job_done(&tenant, &connection, &job_id).await.unwrap());
    // The same batch again (SQS redelivers): acknowledged, and no second run.
    let again =
        worker::handle_batch(deps, fixtures::sqs_batch().unwrap(), Deadline::after(Duration::from_secs(120)))
            .await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(deps.runs.list_runs(&tenant, &connection, 10).await.unwrap().len(), 1);

    // The API Gateway request: the tenant comes from the authorizer's claims in the fixture.
    let router = api::router(wiring::api_state(deps, &stack.config));
    let response = router.oneshot(fixtures::http_request().unwrap().map(Body::new)).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!(items[0]["id"], fixtures::CONNECTION);
    assert_eq!(items[0]["status"], "synced");
    assert_eq!(items[0]["record_counts"]["contacts"], CONTACTS as u64);
}

#[test]
fn the_lambda_env_names_every_resource_and_the_local_endpoint_but_no_empty_value() {
    let stack_config = syncbridge::config::Config {
        resources: syncbridge::config::Resources {
            table_name: "t-main".into(),
            audit_table_name: "t-audit".into(),
            jobs_queue_url: "http://127.0.0.1:1/123456789012/t-jobs.fifo".into(),
            event_bus_name: "t-events".into(),
        },
        due_shards: 4,
        token_key: Some(secrecy::SecretString::from("a2V5".to_owned())),
        token_kms_key_id: None,
        oauth: syncbridge::config::OAuthEndpoints::default(),
        hubspot_app: None,
        microsoft_app: None,
        microsoft_login_base_url: "http://127.0.0.1:2".into(),
        microsoft_tenant: "common".into(),
        salesforce_app: None,
        google_app: None,
        google_token_url: "http://127.0.0.1:3/token".into(),
        drive_token_url: "http://127.0.0.1:3/token".into(),
        notion_app: None,
        tenant_claim: "tenant_id".into(),
        webhook_base_url: None,
        hubspot_app_id: None,
        webhook_coalesce_secs: 1,
        fireflies_api_base_url: None,
        fireflies_webhook_secret: None,
    };
    let env = fixtures::lambda_env(&stack_config, "http://127.0.0.1:5000");
    let get = |k: &str| env.iter().find(|(name, _)| name == k).map(|(_, v)| v.as_str());
    assert_eq!(get("AWS_ENDPOINT_URL"), Some("http://127.0.0.1:5000"));
    assert_eq!(get("TABLE_NAME"), Some("t-main"));
    assert_eq!(get("AUDIT_TABLE_NAME"), Some("t-audit"));
    assert_eq!(get("JOBS_QUEUE_URL"), Some("http://127.0.0.1:1/123456789012/t-jobs.fifo"));
    assert_eq!(get("EVENT_BUS_NAME"), Some("t-events"));
    assert_eq!(get("TOKEN_KEY"), Some("a2V5"));
    assert_eq!(get("OAUTH_REDIRECT_URIS"), None, "empty values are left out");
    assert_eq!(fixtures::parse_env_file(&fixtures::env_file(&env)), env);
    // A base64 key does not parse bare in dotenv syntax (cargo lambda refuses the file): quoted.
    let awkward: Vec<(String, String)> = [("TOKEN_KEY", "aTDh/N+q=="), ("ODD", "it's $HOME \\ \"x\"")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec();
    let file = fixtures::env_file(&awkward);
    assert!(file.starts_with("TOKEN_KEY='aTDh/N+q=='\n"), "{file}");
    assert_eq!(fixtures::parse_env_file(&file), awkward);
}
