//! DynamoDB requests per record and per sync, counted at the SDK against moto
//! (`syncbridge_local::counting`): the figures docs/cost.md rests on, held to their budget.

use std::time::Duration;

use chrono::{DateTime, Utc};
use syncbridge_fakes::hubspot::FakeConfig;
use syncbridge_local::counting::{AwsCounter, Tally};
use syncbridge_tests::*;

const CONTACTS: usize = 250;

/// Fires the schedule at `at`, drains the queue, and returns what the engine sent meanwhile.
async fn scheduled_sync(stack: &LocalStack, counter: &AwsCounter, at: DateTime<Utc>) -> Tally {
    let before = counter.snapshot();
    assert_eq!(stack.runner.fire_schedule(at).await.unwrap().enqueued, 1);
    let drained = stack.runner.drain(Duration::from_secs(120)).await.unwrap();
    assert_eq!((drained.messages, drained.failures), (1, 0));
    counter.snapshot().since(&before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_or_updated_record_costs_one_write_and_an_unchanged_one_none() {
    let counter = AwsCounter::new();
    let stack = LocalStack::start(StackOptions {
        hubspot: FakeConfig {
            contacts: CONTACTS,
            private_app_token: Some(HUBSPOT_TOKEN.into()),
            ..FakeConfig::default()
        },
        tap_events: false,
        counter: Some(counter.clone()),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    counter.name_table(&stack.config.resources.table_name, "main");
    counter.name_table(&stack.config.resources.audit_table_name, "audit");
    connect(&stack, "acme", None).await.unwrap();
    let now = Utc::now();

    let first = scheduled_sync(&stack, &counter, now).await;
    assert_eq!(
        first.op("PutItem", "main").requests,
        CONTACTS as u64,
        "one conditional put per created record:\n{first}"
    );
    assert_eq!(first.op("BatchGetItem", "main").requests, 3, "one lookup per page of 100:\n{first}");
    assert_eq!(first.op("BatchGetItem", "main").items_read, CONTACTS as u64, "one key per record:\n{first}");

    let hubspot = stack.hubspot.state();
    for contact in ["7", "70", "170"] {
        hubspot.edit_contact(contact, &[("jobtitle", "Chief Sync Officer")]).unwrap();
    }
    let second = scheduled_sync(&stack, &counter, now + chrono::Duration::minutes(16)).await;
    assert_eq!(second.op("PutItem", "main").requests, 3, "one conditional put per updated record:\n{second}");
    assert_eq!(
        second.op("PutItem", "audit").requests,
        3 + 1,
        "an audit entry per updated record and the run's summary:\n{second}"
    );

    // An interval later by HubSpot's clock too: the 5-minute lookback brings the edited contacts
    // once more, unchanged.
    let interval = std::time::Duration::from_secs(16 * 60);
    hubspot.advance_clock(interval);
    let third = scheduled_sync(&stack, &counter, now + chrono::Duration::minutes(32)).await;
    assert_eq!(third.op("BatchGetItem", "main").items_read, 3, "the lookback's records:\n{third}");
    assert_eq!(third.op("PutItem", "main").requests, 0, "no record write when nothing changed:\n{third}");

    hubspot.advance_clock(interval);
    let fourth = scheduled_sync(&stack, &counter, now + chrono::Duration::minutes(48)).await;
    assert_eq!(fourth.op("BatchGetItem", "main").requests, 0, "{fourth}");
    // The slot's claim, the job's start, its finish (one transaction) and the run's audit summary;
    // no checkpoint of pages that brought nothing.
    assert_eq!(fourth.op("UpdateItem", "main").requests, 2, "{fourth}");
    assert_eq!(fourth.op("TransactWriteItems", "main").requests, 1, "{fourth}");
    assert_eq!(fourth.op("PutItem", "audit").requests, 1, "{fourth}");
    assert_eq!(fourth.dynamo_writes().requests, 4, "{fourth}");
}
