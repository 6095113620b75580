//! `create_record` and `delete_record` through the API, the approval queue and the worker on the
//! local stack, against the HubSpot and Salesforce fakes over HTTP, with every SQS message
//! delivered twice: one record per create, deletes only of records nobody changed since the
//! approval, and field ownership held at push time.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use syncbridge_fakes::hubspot::FakeConfig as HubspotConfig;
use syncbridge_fakes::hubspot::store::ObjectKind;
use syncbridge_fakes::salesforce::{FakeConfig as SalesforceConfig, SeedCounts, make_id};
use syncbridge_tests::{HUBSPOT_TOKEN, LocalStack, StackOptions, all_records, api, connect, get};

const DRAIN: Duration = Duration::from_secs(120);

async fn post(stack: &LocalStack, path: &str, body: Value) -> Value {
    api(stack, "acme").unwrap().call(reqwest::Method::POST, path, Some(body)).await.unwrap()
}

async fn approve(stack: &LocalStack, items: &[&Value]) {
    let ids: Vec<&Value> = items.iter().map(|i| &i["push_id"]).collect();
    let approved = post(stack, "/v1/push/approve", json!({ "ids": ids })).await;
    assert!(approved["items"].as_array().unwrap().iter().all(|i| i["ok"] == true), "{approved}");
}

async fn push_item(stack: &LocalStack, item: &Value) -> Value {
    get(stack, "acme", &format!("/v1/push/{}", item["push_id"].as_str().unwrap())).await.unwrap()
}

fn record_of<'a>(records: &'a [Value], object: &str, external: &str) -> &'a Value {
    records.iter().find(|r| r["object"] == object && r["external_id"] == external).expect("record")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_created_and_deleted_through_the_queue_reach_hubspot_and_salesforce_once_under_redelivery() {
    let stack = LocalStack::start(StackOptions {
        hubspot: HubspotConfig {
            contacts: 6,
            companies: 2,
            private_app_token: Some(HUBSPOT_TOKEN.into()),
            ..HubspotConfig::default()
        },
        salesforce: Some(SalesforceConfig {
            seed_counts: SeedCounts { accounts: 2, contacts: 4, ..SeedCounts::default() },
            session_token: None,
            ..SalesforceConfig::default()
        }),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    let hubspot_id = connect(&stack, "acme", None).await.unwrap();
    let fake = stack.salesforce.as_ref().unwrap();
    let org = fake.state();
    let issued = fake.issue_token();
    let salesforce = post(
        &stack,
        "/v1/connections",
        json!({ "provider": "salesforce", "base_url": fake.base_url(), "access_token": issued.access_token, "refresh_token": issued.refresh_token }),
    )
    .await;
    let salesforce_id = salesforce["id"].as_str().unwrap().to_owned();
    stack.runner.deliver_twice.store(true, Ordering::Relaxed);
    stack.runner.fire_schedule(Utc::now()).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);

    let hubspot = stack.hubspot.state();
    let contacts_before = hubspot.count(ObjectKind::Contacts);
    let new_contact = post(
        &stack,
        &format!("/v1/connections/{hubspot_id}/push"),
        json!({ "action": "create_record", "object": "contacts", "idempotency_key": "new-contact-1",
                "fields": { "email": "nia@initech.example", "first_name": "Nia", "job_title": "CTO" } }),
    )
    .await;
    assert_eq!((&new_contact["status"], &new_contact["object"]), (&json!("pending"), &json!("contacts")));
    let new_account = post(
        &stack,
        &format!("/v1/connections/{salesforce_id}/push"),
        json!({ "action": "create_record", "object": "companies", "idempotency_key": "new-account-1",
                "fields": { "name": "Initech", "industry": "Technology" } }),
    )
    .await;
    let hubspot_records = all_records(&stack, "acme", &hubspot_id).await.unwrap();
    let doomed = record_of(&hubspot_records, "contacts", "3");
    let kept = record_of(&hubspot_records, "contacts", "4");
    let delete = |record: &Value, key: &str| json!({ "action": "delete_record", "record_id": record["record_id"], "idempotency_key": key });
    let delete_3 = post(&stack, &format!("/v1/connections/{hubspot_id}/push"), delete(doomed, "del-3")).await;
    let delete_4 = post(&stack, &format!("/v1/connections/{hubspot_id}/push"), delete(kept, "del-4")).await;
    let salesforce_records = all_records(&stack, "acme", &salesforce_id).await.unwrap();
    let (sf_contact, sf_kept) = (make_id("003", 2), make_id("003", 3));
    let sf_push = format!("/v1/connections/{salesforce_id}/push");
    let sf_record = |id: &str| record_of(&salesforce_records, "contacts", id).clone();
    let delete_sf = post(&stack, &sf_push, delete(&sf_record(&sf_contact), "del-sf")).await;
    let delete_sf_kept = post(&stack, &sf_push, delete(&sf_record(&sf_kept), "del-sf-kept")).await;
    approve(&stack, &[&new_contact, &new_account, &delete_3, &delete_4, &delete_sf, &delete_sf_kept]).await;
    // Contact 4 at HubSpot and one contact at Salesforce change after their deletes were
    // approved: they must survive.
    hubspot.edit(ObjectKind::Contacts, "4", &[("jobtitle", "Promoted")]).unwrap();
    org.advance_clock(2_000);
    org.edit(&sf_kept, &[("Title", json!("Promoted"))]).unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);

    assert_eq!(hubspot.count(ObjectKind::Contacts), contacts_before + 1, "one contact created, none twice");
    assert_eq!(org.count_with_key("Account", "new-account-1"), 1, "one Account at Salesforce");
    assert!(hubspot.object(ObjectKind::Contacts, "3").unwrap()["archived"] == true, "contact 3 archived");
    assert!(hubspot.object(ObjectKind::Contacts, "4").unwrap()["archived"] == false, "contact 4 kept");
    assert!(org.record(&sf_contact).is_none(), "the Salesforce contact is deleted");
    assert!(org.record(&sf_kept).is_some(), "the Salesforce contact edited since its approval is kept");
    assert_eq!(push_item(&stack, &delete_sf_kept).await["status"], "failed");
    let created = push_item(&stack, &new_contact).await;
    assert_eq!(created["status"], "completed", "{created}");
    let conflicted = push_item(&stack, &delete_4).await;
    assert_eq!(conflicted["status"], "failed", "{conflicted}");
    assert!(conflicted["last_error"].as_str().unwrap().contains("changed at the provider"));
    assert!(conflicted["approved_remote_modified_at"].is_string());

    // The created records are stored with their external ids; the next sync changes nothing.
    let external = created["result_external_id"].as_str().unwrap().to_owned();
    let records = all_records(&stack, "acme", &hubspot_id).await.unwrap();
    assert_eq!(record_of(&records, "contacts", &external)["fields"]["first_name"], "Nia");
    assert_eq!(record_of(&records, "contacts", "3")["deleted"], true);
    let later = Utc::now() + chrono::Duration::minutes(16);
    stack.runner.fire_schedule(later).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let runs = get(&stack, "acme", &format!("/v1/connections/{hubspot_id}/runs")).await.unwrap();
    let latest = &runs["items"][0]["counts"];
    assert_eq!((&latest["created"], &latest["deleted"]), (&json!(0), &json!(0)), "no echo: {latest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_edit_of_a_human_owned_field_is_withheld_at_push_time_and_audited() {
    let stack = syncbridge_tests::stack(4, false).await.unwrap();
    let id = connect(&stack, "acme", None).await.unwrap();
    let settings = json!({ "conflict_policy": { "ownership": { "lead_status": "human" } } });
    api(&stack, "acme")
        .unwrap()
        .call(reqwest::Method::PATCH, &format!("/v1/connections/{id}/settings"), Some(settings))
        .await
        .unwrap();
    stack.runner.fire_schedule(Utc::now()).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let hubspot = stack.hubspot.state();
    let before = hubspot.object(ObjectKind::Contacts, "2").unwrap()["properties"]["hs_lead_status"].clone();
    let records = all_records(&stack, "acme", &id).await.unwrap();
    let contact = record_of(&records, "contacts", "2");
    let edit = post(
        &stack,
        &format!("/v1/connections/{id}/push"),
        json!({ "action": "update_record", "record_id": contact["record_id"], "idempotency_key": "aria-1",
                "source": "inferred", "fields": { "lead_status": "UNQUALIFIED", "job_title": "Buyer" } }),
    )
    .await;
    approve(&stack, &[&edit]).await;
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let props = hubspot.object(ObjectKind::Contacts, "2").unwrap()["properties"].clone();
    assert_eq!((&props["jobtitle"], &props["hs_lead_status"]), (&json!("Buyer"), &before));
    let done = push_item(&stack, &edit).await;
    assert_eq!((&done["status"], &done["withheld_fields"]), (&json!("completed"), &json!(["lead_status"])));
    let audit = get(&stack, "acme", &format!("/v1/audit?connection_id={id}&operation=push&outcome=rejected"))
        .await
        .unwrap();
    let entry = &audit["items"][0];
    assert_eq!(entry["detail"]["withheld"], json!(["lead_status"]), "{audit}");
}
