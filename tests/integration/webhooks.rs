//! Webhooks, black-box: the account registry and the delivery ledger against moto, and signed,
//! forged, stale, replayed and echoed notifications sent over HTTP to the local gateway, checking
//! what reached the SQS FIFO jobs queue in moto (and, drained, what the worker did with it). Google
//! and Graph notifications come from their fakes, which call the webhook address the worker gave
//! them when it opened the channel or subscription.

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use serde_json::{Value, json};
use syncbridge::domain::{ConnectionId, Provider, TenantId};
use syncbridge::http::webhooks::hubspot::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use syncbridge::ports::{ConnectionStore, DeliveryLedger};
use syncbridge_fakes::hubspot::FakeConfig;
use syncbridge_local::local::{LOCAL_HUBSPOT_APP_ID, LOCAL_HUBSPOT_PORTAL_ID};
use syncbridge_tests::*;

use crate::aws_support::{Moto, dynamo_store};

const DRAIN: Duration = Duration::from_secs(120);
const PORTAL: &str = "62515";
const _: () = assert!(LOCAL_HUBSPOT_PORTAL_ID == 62515);

// ---- stores against moto ----

#[tokio::test]
async fn connections_with_an_account_id_are_found_by_their_provider_account() -> Result<()> {
    let moto = Moto::start().await?;
    let store = dynamo_store(&moto.config().await, 4).await?;
    let make = |tenant: &str, provider: Provider, account: Option<&str>| -> Result<_> {
        let mut c = syncbridge::domain::Connection::new(
            TenantId::parse(tenant)?,
            syncbridge::domain::NewConnection {
                provider,
                base_url: "http://127.0.0.1:9".into(),
                credentials: syncbridge::domain::Credentials {
                    access_token: secrecy::SecretString::from("access"),
                    refresh_token: None,
                    expires_at: None,
                },
                interval_minutes: 15,
                settings: Default::default(),
            },
            Utc::now(),
        );
        c.account_id = account.map(str::to_owned);
        Ok(c)
    };
    let acme = make("acme", Provider::Hubspot, Some(PORTAL))?;
    let globex = make("globex", Provider::Hubspot, Some(PORTAL))?;
    let other_provider = make("acme", Provider::Salesforce, Some(PORTAL))?;
    let no_account = make("initech", Provider::Hubspot, None)?;
    for c in [&acme, &globex, &other_provider, &no_account] {
        store.create(c).await?;
    }
    let mut found = store.find_by_account(Provider::Hubspot, PORTAL).await?;
    found.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    assert_eq!(
        found,
        vec![
            (acme.tenant_id.clone(), acme.connection_id.clone()),
            (globex.tenant_id.clone(), globex.connection_id.clone())
        ]
    );
    assert_eq!(
        store.find_by_account(Provider::Salesforce, PORTAL).await?,
        vec![(other_provider.tenant_id.clone(), other_provider.connection_id.clone())]
    );
    assert!(store.find_by_account(Provider::Hubspot, "999").await?.is_empty());
    // A second create of the same id still fails as a whole (the registry entry is transactional).
    assert!(matches!(store.create(&acme).await, Err(syncbridge::ports::StoreError::Conflict)));
    // A disconnected connection leaves the registry with its item.
    store.disconnect(&globex, Utc::now()).await?;
    assert_eq!(
        store.find_by_account(Provider::Hubspot, PORTAL).await?,
        vec![(acme.tenant_id.clone(), acme.connection_id.clone())]
    );
    Ok(())
}

#[tokio::test]
async fn a_delivery_is_first_once_until_its_marker_expires_or_is_forgotten() -> Result<()> {
    let moto = Moto::start().await?;
    let store = dynamo_store(&moto.config().await, 4).await?;
    let now = Utc::now();
    let later = now + chrono::Duration::hours(72);
    assert!(store.first_delivery("hubspot#1", now, later).await?);
    assert!(!store.first_delivery("hubspot#1", now, later).await?);
    assert!(store.first_delivery("hubspot#2", now, later).await?);
    // Past its expiry the marker counts as absent even before DynamoDB's TTL removes it.
    assert!(store.first_delivery("hubspot#1", later + chrono::Duration::seconds(1), later).await?);
    store.forget_delivery("hubspot#2").await?;
    assert!(store.first_delivery("hubspot#2", now, later).await?);
    Ok(())
}

// ---- HubSpot through the gateway ----

async fn hubspot_stack(coalesce_secs: u32) -> Result<LocalStack> {
    LocalStack::start(StackOptions {
        hubspot: FakeConfig {
            contacts: 3,
            private_app_token: Some(HUBSPOT_TOKEN.into()),
            ..FakeConfig::default()
        },
        webhook_coalesce_secs: coalesce_secs,
        ..StackOptions::default()
    })
    .await
}

/// Connects `tenant` to the HubSpot fake as portal [`PORTAL`]; returns the connection id.
async fn connect_portal(stack: &LocalStack, tenant: &str) -> Result<String> {
    let c = api(stack, tenant)?
        .call(
            reqwest::Method::POST,
            "/v1/connections",
            Some(json!({
                "provider": "hubspot",
                "base_url": stack.hubspot.base_url(),
                "access_token": HUBSPOT_TOKEN,
                "account_id": PORTAL,
            })),
        )
        .await?;
    Ok(c["id"].as_str().context("connection id")?.to_owned())
}

fn event(id: u64, source_id: Option<&str>) -> Value {
    json!({
        "eventId": id, "subscriptionId": 1001, "portalId": PORTAL.parse::<u64>().unwrap_or(0),
        "appId": LOCAL_HUBSPOT_APP_ID, "occurredAt": Utc::now().timestamp_millis(),
        "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": 1,
        "changeSource": if source_id.is_some() { "INTEGRATION" } else { "CRM_UI" },
        "sourceId": source_id.unwrap_or("userId:77"), "propertyName": "jobtitle", "propertyValue": "CTO"
    })
}

/// POSTs `body` to the gateway's HubSpot route signed with `secret` at `timestamp_ms`.
async fn post_hubspot(
    stack: &LocalStack,
    secret: &str,
    body: &str,
    timestamp_ms: i64,
) -> Result<(u16, Value)> {
    let base = stack.config.webhook_base_url.clone().context("the stack has a webhook base")?;
    let uri = format!("{base}/webhooks/hubspot");
    let ts = timestamp_ms.to_string();
    let signature = hubspot::sign(secret.as_bytes(), "POST", &uri, body.as_bytes(), &ts);
    let resp = reqwest::Client::new()
        .post(format!("{}/webhooks/hubspot", stack.gateway.base_url()))
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, ts)
        .header(SIGNATURE_HEADER, signature)
        .body(body.to_owned())
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_replayed_hubspot_webhooks_enqueue_nothing_and_a_valid_one_exactly_one_job() {
    let stack = hubspot_stack(1).await.unwrap();
    let id = connect_portal(&stack, "acme").await.unwrap();
    let secret = FakeConfig::default().client_secret;
    let body = json!([event(1, None), event(2, None)]).to_string();
    let now = Utc::now().timestamp_millis();

    let (forged, problem) = post_hubspot(&stack, "not-the-secret", &body, now).await.unwrap();
    assert_eq!((forged, problem["code"].as_str()), (401, Some("unauthorized")));
    let (stale, _) = post_hubspot(&stack, &secret, &body, now - 6 * 60 * 1000).await.unwrap();
    assert_eq!(stale, 401);
    assert!(!problem.to_string().contains(&secret));
    assert_eq!(stack.runner.queue_depth().await.unwrap(), 0, "nothing reached SQS");

    let (ok, summary) = post_hubspot(&stack, &secret, &body, now).await.unwrap();
    assert_eq!((ok, summary["jobs"].as_u64(), summary["received"].as_u64()), (200, Some(1), Some(2)));
    assert_eq!(stack.runner.queue_depth().await.unwrap(), 1);

    // HubSpot retries the same events later: duplicates, no second job.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (again, summary) = post_hubspot(&stack, &secret, &body, Utc::now().timestamp_millis()).await.unwrap();
    assert_eq!((again, summary["duplicates"].as_u64(), summary["jobs"].as_u64()), (200, Some(2), Some(0)));
    assert_eq!(stack.runner.queue_depth().await.unwrap(), 1);

    // The job is a webhook sync of the connection; the worker runs it once its window closed.
    let drained = stack.runner.drain(DRAIN).await.unwrap();
    assert_eq!(drained.messages - drained.failures, 1, "{drained:?}");
    let runs = get(&stack, "acme", &format!("/v1/connections/{id}/runs")).await.unwrap();
    let runs = runs["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["reason"], "webhook");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_of_our_own_hubspot_writes_enqueue_nothing_and_a_burst_of_events_becomes_one_job() {
    // A long window, so the whole burst falls in one.
    let stack = hubspot_stack(300).await.unwrap();
    connect_portal(&stack, "acme").await.unwrap();
    let secret = FakeConfig::default().client_secret;
    let now = Utc::now().timestamp_millis();

    let echoes = json!([event(10, Some(LOCAL_HUBSPOT_APP_ID)), event(11, Some(LOCAL_HUBSPOT_APP_ID))]);
    let (status, summary) = post_hubspot(&stack, &secret, &echoes.to_string(), now).await.unwrap();
    assert_eq!((status, summary["echoes"].as_u64(), summary["jobs"].as_u64()), (200, Some(2), Some(0)));
    assert_eq!(stack.runner.queue_depth().await.unwrap(), 0);

    let mut jobs = 0;
    for batch in 0..3u64 {
        let events: Vec<Value> = (0..50).map(|i| event(1000 + batch * 50 + i, None)).collect();
        let (status, summary) =
            post_hubspot(&stack, &secret, &Value::Array(events).to_string(), now).await.unwrap();
        assert_eq!(status, 200);
        jobs += summary["jobs"].as_u64().unwrap_or(0);
    }
    assert_eq!(jobs, 3, "each request hands its connection's job to SQS");
    assert_eq!(stack.runner.queue_depth().await.unwrap(), 1, "SQS kept one: same deduplication id");
}

// ---- Google and Graph through the gateway, notified by their fakes ----

/// Connects `tenant` to a calendar fake and runs the first sync, which opens the push channel.
async fn connect_calendar(stack: &LocalStack, provider: &str, base_url: &str, token: &str) -> Result<String> {
    let c = api(stack, "acme")?
        .call(
            reqwest::Method::POST,
            "/v1/connections",
            Some(json!({ "provider": provider, "base_url": base_url, "access_token": token })),
        )
        .await?;
    let id = c["id"].as_str().context("connection id")?.to_owned();
    stack.runner.fire_schedule(Utc::now()).await?;
    let drained = stack.runner.drain(DRAIN).await?;
    anyhow::ensure!(drained.failures == 0, "the first sync failed: {drained:?}");
    Ok(id)
}

async fn stored(stack: &LocalStack, id: &str) -> Result<syncbridge::domain::Connection> {
    stack
        .deps
        .connections
        .get(&TenantId::parse("acme")?, &ConnectionId::parse(id)?)
        .await?
        .context("the connection is stored")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_notifications_with_the_channel_token_enqueue_a_sync_and_forged_ones_nothing() {
    let stack = stack(0, false).await.unwrap();
    let id = connect_calendar(&stack, "google", &stack.google.base_url(), "ya29.fake-google").await.unwrap();
    let channel = stored(&stack, &id).await.unwrap().push_channel.expect("the first sync opened a channel");

    let google = stack.google.state();
    let sync = google.notify("sync", Some(&channel.id)).await;
    assert_eq!(sync.iter().map(|d| d.status).collect::<Vec<_>>(), vec![Some(200)]);
    assert_eq!(stack.runner.queue_depth().await.unwrap(), 0, "the handshake enqueues nothing");

    let forged = reqwest::Client::new()
        .post(format!("{}/webhooks/google", stack.gateway.base_url()))
        .header("X-Goog-Channel-ID", &channel.id)
        .header("X-Goog-Channel-Token", "a-guessed-token")
        .header("X-Goog-Resource-State", "exists")
        .header("X-Goog-Message-Number", "9")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let unknown = reqwest::Client::new()
        .post(format!("{}/webhooks/google", stack.gateway.base_url()))
        .header("X-Goog-Channel-ID", "no-such-channel")
        .header("X-Goog-Resource-State", "exists")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401);
    assert_eq!(stack.runner.queue_depth().await.unwrap(), 0);

    let change = google.notify("exists", Some(&channel.id)).await;
    assert_eq!(change.iter().map(|d| d.status).collect::<Vec<_>>(), vec![Some(200)]);
    assert_eq!(stack.runner.queue_depth().await.unwrap(), 1);
    let drained = stack.runner.drain(DRAIN).await.unwrap();
    assert_eq!(drained.messages - drained.failures, 1);
    let runs = get(&stack, "acme", &format!("/v1/connections/{id}/runs")).await.unwrap();
    let reasons: Vec<&str> = runs["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["reason"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(reasons, ["webhook", "schedule"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_changes_with_the_client_state_enqueue_a_sync_and_a_removed_subscription_is_recreated() {
    let stack = stack(0, false).await.unwrap();
    let id =
        connect_calendar(&stack, "microsoft", &stack.graph.base_url(), "graph-fake-token").await.unwrap();
    let sub = stored(&stack, &id).await.unwrap().push_channel.expect("the first sync subscribed");
    let graph = stack.graph.state();

    let forged = reqwest::Client::new()
        .post(format!("{}/webhooks/microsoft", stack.gateway.base_url()))
        .json(&json!({"value": [{"subscriptionId": sub.id, "clientState": "guess", "changeType": "updated", "resource": "me/events/x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert_eq!(stack.runner.queue_depth().await.unwrap(), 0);

    assert_eq!(graph.notify_change(&sub.id, "updated", "no-such-event").await.unwrap(), 202);
    assert_eq!(stack.runner.queue_depth().await.unwrap(), 1);
    stack.runner.drain(DRAIN).await.unwrap();

    // Graph drops the subscription: the webhook asks the worker to renew, which finds it gone and
    // subscribes again (a new id, registered for the webhook, the old one no longer known).
    assert_eq!(graph.notify_lifecycle(&sub.id, "subscriptionRemoved").await.unwrap(), 202);
    assert_eq!(stack.runner.queue_depth().await.unwrap(), 1);
    let drained = stack.runner.drain(DRAIN).await.unwrap();
    assert_eq!(drained.messages - drained.failures, 1);
    let renewed = stored(&stack, &id).await.unwrap().push_channel.expect("subscribed again");
    assert_ne!(renewed.id, sub.id);
    assert!(graph.subscription(&renewed.id).is_some());
    assert_eq!(graph.notify_change(&renewed.id, "created", "no-such-event").await.unwrap(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_hubspot_edit_arrives_by_webhook_and_our_own_pushed_write_is_recognised_as_an_echo() {
    let stack = hubspot_stack(1).await.unwrap();
    let id = connect_portal(&stack, "acme").await.unwrap();
    stack.runner.fire_schedule(Utc::now()).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let hubspot = stack.hubspot.state();
    hubspot.send_webhooks().await.unwrap();
    stack.runner.drain(DRAIN).await.unwrap();

    // A person edits contact 2 in HubSpot; its signed webhook reaches the gateway; the job pulls it.
    let edited = reqwest::Client::new()
        .patch(format!("{}/_admin/contacts/2", stack.hubspot.base_url()))
        .json(&json!({ "properties": { "jobtitle": "Head of Webhooks" } }))
        .send()
        .await
        .unwrap();
    assert!(edited.status().is_success());
    assert_eq!(hubspot.send_webhooks().await.unwrap(), vec![200]);
    assert_eq!(stack.runner.queue_depth().await.unwrap(), 1);
    let drained = stack.runner.drain(DRAIN).await.unwrap();
    assert_eq!(drained.messages - drained.failures, 1, "run once (after waiting for its window)");
    let records = all_records(&stack, "acme", &id).await.unwrap();
    let contact = records.iter().find(|r| r["external_id"] == "2").expect("contact 2");
    assert_eq!(contact["fields"]["job_title"], "Head of Webhooks");
    let runs = get(&stack, "acme", &format!("/v1/connections/{id}/runs")).await.unwrap();
    assert_eq!(runs["items"][0]["reason"], "webhook");

    // We push an edit of contact 3 to HubSpot: the fake's webhook for it is our echo.
    let rid = records.iter().find(|r| r["external_id"] == "3").expect("contact 3")["record_id"].clone();
    let rid = rid.as_str().unwrap_or_default();
    let edit = api(&stack, "acme")
        .unwrap()
        .call(
            reqwest::Method::POST,
            &format!("/v1/connections/{id}/records/{rid}/edit"),
            Some(json!({ "fields": { "job_title": "Pushed by us" }, "idempotency_key": "echo-1" })),
        )
        .await
        .unwrap();
    api(&stack, "acme")
        .unwrap()
        .call(reqwest::Method::POST, "/v1/push/approve", Some(json!({ "ids": [edit["push_id"]] })))
        .await
        .unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let pending = hubspot.pending_webhooks();
    assert!(!pending.is_empty(), "our write made HubSpot events");
    assert!(
        pending.iter().all(|e| e["changeSource"] == "INTEGRATION" && e["sourceId"] == LOCAL_HUBSPOT_APP_ID)
    );
    assert_eq!(hubspot.send_webhooks().await.unwrap(), vec![200]);
    assert_eq!(stack.runner.queue_depth().await.unwrap(), 0, "an echo enqueues nothing");
}

/// Connects `acme` to portal [`PORTAL`], runs the first sync and delivers the webhooks it caused.
async fn synced_portal(stack: &LocalStack) -> Result<String> {
    let id = connect_portal(stack, "acme").await?;
    stack.runner.fire_schedule(Utc::now()).await?;
    anyhow::ensure!(stack.runner.drain(DRAIN).await?.failures == 0, "the first sync failed");
    stack.hubspot.state().send_webhooks().await?;
    stack.runner.drain(DRAIN).await?;
    Ok(id)
}

/// The external ids of the connection's records marked deleted.
async fn deleted_ids(stack: &LocalStack, id: &str) -> Result<Vec<String>> {
    let records = all_records(stack, "acme", id).await?;
    Ok(records
        .iter()
        .filter(|r| r["deleted"] == true)
        .filter_map(|r| r["external_id"].as_str().map(str::to_owned))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_hubspot_deletion_webhook_deletes_the_record_at_the_next_job_without_the_fifteen_minute_wait()
 {
    let stack = hubspot_stack(1).await.unwrap();
    let id = synced_portal(&stack).await.unwrap();
    let hubspot = stack.hubspot.state();

    // A person edits contact 1 (its job runs without a deletes check), then deletes contact 2.
    assert!(hubspot.edit_contact("1", &[("jobtitle", "Before the delete")]).is_some());
    assert_eq!(hubspot.send_webhooks().await.unwrap(), vec![200]);
    stack.runner.drain(DRAIN).await.unwrap();
    assert!(deleted_ids(&stack, &id).await.unwrap().is_empty());

    assert!(hubspot.archive_contact("2"));
    let pending = hubspot.pending_webhooks();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["subscriptionType"], "contact.deletion");
    hubspot.reset_stats();
    let sent_at = std::time::Instant::now();
    assert_eq!(hubspot.send_webhooks().await.unwrap(), vec![200]);
    assert_eq!(stack.runner.queue_depth().await.unwrap(), 1);
    let drained = stack.runner.drain(DRAIN).await.unwrap();
    assert_eq!(drained.messages - drained.failures, 1, "{drained:?}");
    assert!(sent_at.elapsed() < Duration::from_secs(60), "within the coalescing window, not 15 minutes");

    assert_eq!(deleted_ids(&stack, &id).await.unwrap(), ["2"]);
    let runs = get(&stack, "acme", &format!("/v1/connections/{id}/runs")).await.unwrap();
    assert_eq!(
        (&runs["items"][0]["reason"], &runs["items"][0]["counts"]["deleted"]),
        (&json!("webhook"), &json!(1))
    );
    // The job scanned the archived listing of each HubSpot type (the four activity types too):
    // one page each.
    assert_eq!(hubspot.stats().routes.get("list").copied(), Some(8), "{:?}", hubspot.stats().routes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_sync_deletes_a_record_archived_in_hubspot_at_once() {
    let stack = hubspot_stack(1).await.unwrap();
    let id = synced_portal(&stack).await.unwrap();
    let hubspot = stack.hubspot.state();
    hubspot.set_webhooks(None);
    assert!(hubspot.archive_contact("3"));

    // A scheduled sync now leaves the delete to the 15-minute scan ...
    stack.runner.fire_schedule(Utc::now() + chrono::Duration::minutes(16)).await.unwrap();
    stack.runner.drain(DRAIN).await.unwrap();
    assert!(deleted_ids(&stack, &id).await.unwrap().is_empty());

    // ... "sync now" does not wait for it.
    let accepted = api(&stack, "acme")
        .unwrap()
        .call(reqwest::Method::POST, &format!("/v1/connections/{id}/sync"), None)
        .await
        .unwrap();
    assert!(accepted["job_id"].is_string());
    let drained = stack.runner.drain(DRAIN).await.unwrap();
    assert_eq!(drained.messages - drained.failures, 1, "{drained:?}");
    assert_eq!(deleted_ids(&stack, &id).await.unwrap(), ["3"]);
}
