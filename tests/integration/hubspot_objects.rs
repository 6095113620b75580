//! The HubSpot adapter's companies, deals and notes, deletes and batch writes, against the HubSpot
//! fake over HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use serde_json::{Value, json};
use syncbridge::adapters::hubspot::{HubspotFactory, Pacing};
use syncbridge::domain::record::Fields;
use syncbridge::domain::{
    Connection, ConnectionSettings, Credentials, ExternalId, IdempotencyKey, NewConnection, ObjectType,
    Provider, RemoteRecord, SyncCursor, TenantId,
};
use syncbridge::ports::{Precondition, ProviderClient, ProviderError, ProviderFactory, ProviderWrite};
use syncbridge_fakes::hubspot::{
    FakeConfig, Fault, FaultKind, HubspotFake, HubspotState, ObjectKind, Route, RunningFake,
};

const TOKEN: &str = "pat-na1-fake";

pub(crate) fn token() -> SecretString {
    SecretString::from(TOKEN)
}

pub(crate) async fn start(config: FakeConfig) -> RunningFake {
    HubspotFake::start(config).await.expect("fake starts")
}

pub(crate) fn client_with(
    fake: &RunningFake,
    pacing: Pacing,
    settings: ConnectionSettings,
) -> Box<dyn ProviderClient> {
    let connection = Connection::new(
        TenantId::parse("t1").expect("tenant"),
        NewConnection {
            provider: Provider::Hubspot,
            base_url: fake.base_url(),
            credentials: Credentials { access_token: token(), refresh_token: None, expires_at: None },
            interval_minutes: 15,
            settings,
        },
        Utc::now(),
    );
    HubspotFactory::new(reqwest::Client::new(), None).with_pacing(pacing).client(&connection).expect("client")
}

pub(crate) fn client(fake: &RunningFake) -> Box<dyn ProviderClient> {
    client_with(fake, fast(), ConnectionSettings::default())
}

pub(crate) fn fast() -> Pacing {
    Pacing { search_per_second: 1_000, ..Pacing::default() }
}

/// Pulls one object type until `has_more` is false; every record pulled and the final cursor.
pub(crate) async fn pull_all(
    client: &dyn ProviderClient,
    object: ObjectType,
    mut cursor: Option<SyncCursor>,
) -> (Vec<RemoteRecord>, Option<SyncCursor>) {
    let mut records = Vec::new();
    for _ in 0..2_000 {
        let page = client.pull_page(&token(), object, cursor.as_ref()).await.expect("page pulls");
        records.extend(page.records);
        cursor = Some(page.cursor);
        if !page.has_more {
            return (records, cursor);
        }
    }
    panic!("the pull did not finish within 2,000 pages");
}

fn ids(records: &[RemoteRecord]) -> BTreeSet<String> {
    records.iter().map(|r| r.external_id.as_str().to_owned()).collect()
}

pub(crate) fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn id_array(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect()
}

pub(crate) fn by_object(state: &HubspotState, key: &str) -> u64 {
    state.stats().by_object.get(key).copied().unwrap_or(0)
}

fn seeded() -> FakeConfig {
    FakeConfig { contacts: 40, companies: 12, deals: 230, notes: 130, ..FakeConfig::default() }
}

#[tokio::test]
async fn hubspot_companies_deals_and_notes_pull_in_full_then_only_their_edits() {
    let fake = start(seeded()).await;
    let state = fake.state();
    let client = client(&fake);
    for (object, kind, count, edited, property, value) in [
        (ObjectType::Companies, ObjectKind::Companies, 12, ["3", "11"], "industry", "AIRLINES_AVIATION"),
        (ObjectType::Deals, ObjectKind::Deals, 230, ["7", "201"], "dealname", "Renewal"),
        (ObjectType::Notes, ObjectKind::Notes, 130, ["1", "129"], "hs_note_body", "Edited body"),
    ] {
        let (records, cursor) = pull_all(client.as_ref(), object, None).await;
        assert_eq!(ids(&records).len(), count, "{object} full pull");
        assert!(records.iter().all(|r| r.object == object && !r.deleted));
        for id in edited {
            assert!(state.edit(kind, id, &[(property, value)]).is_some());
        }
        state.reset_stats();
        let (changed, _) = pull_all(client.as_ref(), object, cursor).await;
        assert_eq!(ids(&changed), edited.iter().map(|s| (*s).to_owned()).collect(), "{object} incremental");
        assert_eq!(by_object(&state, &format!("{}.search", kind.as_str())), 1);
        assert_eq!(by_object(&state, &format!("{}.list", kind.as_str())), 0);
    }
}

#[tokio::test]
async fn hubspot_deals_carry_their_associations_typed_fields_and_lifecycle_in_both_pull_phases() {
    let fake = start(seeded()).await;
    let state = fake.state();
    let client = client(&fake);
    let (deals, cursor) = pull_all(client.as_ref(), ObjectType::Deals, None).await;
    let stats = state.stats();
    assert_eq!(stats.routes.get("associations"), None, "the listing carries associations inline");
    for deal in deals.iter().filter(|d| !d.deleted) {
        let id = deal.external_id.as_str();
        let contacts = sorted(state.associated(ObjectKind::Deals, id, ObjectKind::Contacts));
        assert!(!contacts.is_empty());
        assert_eq!(id_array(&deal.fields["contact_ids"]), contacts, "deal {id}");
        let companies = sorted(state.associated(ObjectKind::Deals, id, ObjectKind::Companies));
        assert_eq!(id_array(&deal.fields["company_ids"]), companies);
        assert!(deal.fields["amount"].is_number(), "{}", deal.fields["amount"]);
        let close = deal.fields["close_date"].as_str().expect("close date");
        assert!(chrono::NaiveDate::parse_from_str(close, "%Y-%m-%d").is_ok());
        assert_eq!(deal.fields["pipeline"], "default");
    }
    let stage_of = |d: &RemoteRecord| (d.fields["stage"].clone(), d.fields["lifecycle_stage"].clone());
    let stages: BTreeMap<String, Value> =
        deals.iter().map(stage_of).filter_map(|(s, l)| s.as_str().map(|s| (s.to_owned(), l))).collect();
    assert_eq!(stages["closedwon"], "account");
    assert_eq!(stages["closedlost"], "lost");
    assert_eq!(stages["contractsent"], "opportunity");
    assert_eq!(stages["qualifiedtobuy"], "lead");

    assert!(state.associate(ObjectKind::Deals, "5", ObjectKind::Contacts, "40"));
    state.edit(ObjectKind::Deals, "5", &[("amount", "1250.75"), ("dealstage", "closedwon")]).expect("edit");
    state.reset_stats();
    let (changed, _) = pull_all(client.as_ref(), ObjectType::Deals, cursor).await;
    assert_eq!(changed.len(), 1);
    let deal = &changed[0];
    assert_eq!(deal.fields["amount"], json!(1250.75));
    assert_eq!(deal.fields["lifecycle_stage"], "account");
    assert!(id_array(&deal.fields["contact_ids"]).contains(&"40".to_owned()));
    assert_eq!(
        id_array(&deal.fields["contact_ids"]),
        sorted(state.associated(ObjectKind::Deals, "5", ObjectKind::Contacts))
    );
    assert_eq!(state.stats().routes.get("associations"), Some(&2), "one v4 read per associated type");
}

#[tokio::test]
async fn hubspot_notes_and_contacts_map_through_the_connections_field_and_stage_overrides() {
    let fake = start(seeded()).await;
    let state = fake.state();
    assert!(state.edit(ObjectKind::Contacts, "2", &[("syncbridge_lead_score", "87")]).is_some());
    let mut settings = ConnectionSettings::default();
    settings.field_mapping.insert(
        ObjectType::Contacts,
        [("lead_score".to_owned(), "syncbridge_lead_score".to_owned()), ("phone".to_owned(), String::new())]
            .into(),
    );
    settings.stage_mapping.insert("closedwon".into(), "customer".into());
    let client = client_with(&fake, fast(), settings);
    let (contacts, _) = pull_all(client.as_ref(), ObjectType::Contacts, None).await;
    let two = contacts.iter().find(|r| r.external_id.as_str() == "2").expect("contact 2");
    assert_eq!(two.fields["lead_score"], "87");
    assert!(!two.fields.contains_key("phone"));
    let company = state.associated(ObjectKind::Contacts, "2", ObjectKind::Companies);
    assert_eq!(id_array(&two.fields["company_ids"]), company);

    let (deals, _) = pull_all(client.as_ref(), ObjectType::Deals, None).await;
    let won = deals.iter().find(|d| d.fields["stage"] == "closedwon").expect("a won deal");
    assert_eq!(won.fields["lifecycle_stage"], "customer");

    let (notes, _) = pull_all(client.as_ref(), ObjectType::Notes, None).await;
    let note = notes.iter().find(|n| n.external_id.as_str() == "3").expect("note 3");
    assert!(note.fields["body"].as_str().is_some_and(|b| b.contains("renewal")));
    let ts = note.fields["timestamp"].as_str().expect("timestamp");
    assert!(ts.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(ts).is_ok());
    assert_eq!(
        id_array(&note.fields["contact_ids"]),
        sorted(state.associated(ObjectKind::Notes, "3", ObjectKind::Contacts))
    );
    assert_eq!(id_array(&note.fields["deal_ids"]).len(), 1);
}

#[tokio::test]
async fn hubspot_company_pull_past_ten_thousand_records_sharing_one_timestamp_misses_none() {
    let fake = start(FakeConfig { companies: 10_300, ..FakeConfig::default() }).await;
    let state = fake.state();
    let client = client(&fake);
    let (_, cursor) = pull_all(client.as_ref(), ObjectType::Companies, None).await;
    let all: BTreeSet<String> = state.ids(ObjectKind::Companies).into_iter().collect();
    assert_eq!(state.touch(ObjectKind::Companies, all.iter().map(String::as_str), true), 10_300);
    let (records, _) = pull_all(client.as_ref(), ObjectType::Companies, cursor).await;
    assert_eq!(ids(&records), all);
}

#[tokio::test]
async fn hubspot_archived_records_become_deletes_on_the_next_incremental_pull() {
    let fake = start(seeded()).await;
    let state = fake.state();
    let pacing = Pacing { archived_check_interval: Duration::ZERO, ..fast() };
    let client = client_with(&fake, pacing, ConnectionSettings::default());
    let (_, contacts_cursor) = pull_all(client.as_ref(), ObjectType::Contacts, None).await;
    let (_, deals_cursor) = pull_all(client.as_ref(), ObjectType::Deals, None).await;
    assert!(state.archive(ObjectKind::Contacts, "4"));
    assert!(state.archive(ObjectKind::Contacts, "31"));
    assert!(state.archive(ObjectKind::Deals, "150"));
    assert!(state.edit(ObjectKind::Contacts, "5", &[("jobtitle", "Pilot")]).is_some());

    state.reset_stats();
    let (records, _) = pull_all(client.as_ref(), ObjectType::Contacts, contacts_cursor).await;
    let deleted: BTreeSet<String> =
        records.iter().filter(|r| r.deleted).map(|r| r.external_id.as_str().to_owned()).collect();
    assert_eq!(deleted, ["31".to_owned(), "4".to_owned()].into());
    assert!(records.iter().any(|r| r.external_id.as_str() == "5" && !r.deleted));
    assert_eq!(by_object(&state, "contacts.list"), 1, "two archived contacts fit one page");

    let (records, _) = pull_all(client.as_ref(), ObjectType::Deals, deals_cursor).await;
    let deleted: Vec<&str> = records.iter().filter(|r| r.deleted).map(|r| r.external_id.as_str()).collect();
    assert_eq!(deleted, vec!["150"]);
    assert!(records.iter().filter(|r| r.deleted).all(|r| r.remote_modified_at.is_some()));
}

#[tokio::test]
async fn hubspot_archived_scan_waits_for_its_interval_and_pages_every_archived_record() {
    let fake = start(FakeConfig { contacts: 400, ..FakeConfig::default() }).await;
    let state = fake.state();
    let client = client(&fake);
    let (_, cursor) = pull_all(client.as_ref(), ObjectType::Contacts, None).await;
    for id in 1..=250 {
        assert!(state.archive(ObjectKind::Contacts, &id.to_string()));
    }
    state.reset_stats();
    let (records, cursor) = pull_all(client.as_ref(), ObjectType::Contacts, cursor).await;
    assert!(records.iter().all(|r| !r.deleted), "no scan within 15 minutes of the last one");
    assert_eq!(state.stats().routes.get("list"), None);

    state.advance_clock(Duration::from_secs(16 * 60));
    state.reset_stats();
    let (records, cursor) = pull_all(client.as_ref(), ObjectType::Contacts, cursor).await;
    assert_eq!(records.iter().filter(|r| r.deleted).count(), 250);
    assert_eq!(state.stats().routes.get("list"), Some(&3), "250 archived records: 3 pages");

    assert!(state.restore(ObjectKind::Contacts, "7"));
    state.reset_stats();
    let (records, _) = pull_all(client.as_ref(), ObjectType::Contacts, cursor).await;
    assert!(records.iter().any(|r| r.external_id.as_str() == "7" && !r.deleted));
    assert_eq!(state.stats().routes.get("list"), None);
}

pub(crate) fn update(
    object: ObjectType,
    id: &str,
    fields: Value,
    since: Option<chrono::DateTime<Utc>>,
) -> ProviderWrite {
    ProviderWrite::Update {
        object,
        external_id: ExternalId::parse(id).expect("id"),
        fields: serde_json::from_value::<Fields>(fields).expect("fields"),
        precondition: Precondition { etag: None, unmodified_since: since },
    }
}

pub(crate) fn create(object: ObjectType, key: &str, fields: Value) -> ProviderWrite {
    ProviderWrite::Create {
        object,
        fields: serde_json::from_value::<Fields>(fields).expect("fields"),
        idempotency_key: IdempotencyKey::parse(key).expect("key"),
    }
}

#[tokio::test]
async fn hubspot_batch_update_of_150_contacts_takes_two_requests() {
    let fake = start(FakeConfig { contacts: 200, ..FakeConfig::default() }).await;
    let state = fake.state();
    let client = client(&fake);
    let writes: Vec<ProviderWrite> = (1..=150)
        .map(|i| {
            update(ObjectType::Contacts, &i.to_string(), json!({"job_title": format!("Role {i}")}), None)
        })
        .collect();
    let results = client.write(&token(), &writes).await.expect("batch");
    assert_eq!(results.len(), 150);
    for (i, r) in results.iter().enumerate() {
        let ack = r.as_ref().expect("written");
        assert_eq!(ack.external_id.as_str(), (i + 1).to_string());
        assert!(ack.remote_modified_at.is_some());
    }
    let stats = state.stats();
    assert_eq!(stats.total, 2);
    assert_eq!(stats.by_object.get("contacts.batch_update"), Some(&2));
    assert_eq!(state.contact("150").expect("contact")["properties"]["jobtitle"], "Role 150");
    assert_ne!(state.contact("151").expect("contact")["properties"]["jobtitle"], "Role 151");
}

#[tokio::test]
async fn hubspot_batch_write_fails_only_the_records_hubspot_rejects() {
    let fake = start(seeded()).await;
    let state = fake.state();
    let client = client(&fake);
    let writes = vec![
        update(ObjectType::Deals, "1", json!({"amount": 500}), None),
        update(ObjectType::Deals, "2", json!({"amount": "a lot"}), None),
        update(ObjectType::Deals, "999", json!({"amount": 1}), None),
        update(ObjectType::Deals, "3", json!({"close_date": "2025-02-03", "name": "Q1"}), None),
    ];
    let results = client.write(&token(), &writes).await.expect("batch");
    assert!(results[0].is_ok());
    assert!(matches!(&results[1], Err(ProviderError::Permanent(m)) if m.mentions("VALIDATION_ERROR")));
    assert!(matches!(results[2], Err(ProviderError::NotFound)));
    assert!(results[3].is_ok());
    let deal = |id| state.object(ObjectKind::Deals, id).expect("deal");
    assert_eq!(deal("1")["properties"]["amount"], "500");
    assert_ne!(deal("2")["properties"]["amount"], "a lot");
    assert_eq!(deal("3")["properties"]["closedate"], "2025-02-03T00:00:00.000Z");
    assert_eq!(deal("3")["properties"]["dealname"], "Q1");
    assert_eq!(state.stats().total, 1);
}

#[tokio::test]
async fn hubspot_update_of_a_record_modified_since_the_precondition_is_a_conflict() {
    let fake = start(FakeConfig { contacts: 10, ..FakeConfig::default() }).await;
    let state = fake.state();
    let client = client(&fake);
    let (records, _) = pull_all(client.as_ref(), ObjectType::Contacts, None).await;
    let stamp = |id: &str| {
        records
            .iter()
            .find(|r| r.external_id.as_str() == id)
            .and_then(|r| r.remote_modified_at)
            .expect("stamp")
    };
    state.edit_contact("2", &[("jobtitle", "Changed in HubSpot")]).expect("edit");
    state.reset_stats();
    let writes = vec![
        update(ObjectType::Contacts, "1", json!({"job_title": "Ours"}), Some(stamp("1"))),
        update(ObjectType::Contacts, "2", json!({"job_title": "Ours"}), Some(stamp("2"))),
        ProviderWrite::Delete {
            object: ObjectType::Contacts,
            external_id: ExternalId::parse("2").expect("id"),
            precondition: Precondition { etag: None, unmodified_since: Some(stamp("2")) },
        },
        ProviderWrite::Delete {
            object: ObjectType::Contacts,
            external_id: ExternalId::parse("3").expect("id"),
            precondition: Precondition { etag: None, unmodified_since: Some(stamp("3")) },
        },
    ];
    let results = client.write(&token(), &writes).await.expect("batch");
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(ProviderError::Conflict)));
    assert!(matches!(results[2], Err(ProviderError::Conflict)));
    assert!(results[3].is_ok());
    assert_eq!(state.contact("1").expect("c")["properties"]["jobtitle"], "Ours");
    assert_eq!(state.contact("2").expect("c")["properties"]["jobtitle"], "Changed in HubSpot");
    assert_eq!(state.contact("2").expect("c")["archived"], false);
    assert_eq!(state.contact("3").expect("c")["archived"], true);
    let stats = state.stats();
    assert_eq!(stats.routes.get("batch_read"), Some(&2), "one precondition read per batch");
    assert_eq!(stats.routes.get("batch_update"), Some(&1));
    assert_eq!(stats.routes.get("batch_archive"), Some(&1));
}

#[tokio::test]
async fn hubspot_create_repeated_with_the_same_key_makes_one_record() {
    let fake = start(FakeConfig { contacts: 3, companies: 2, ..FakeConfig::default() }).await;
    let state = fake.state();
    let client = client(&fake);
    let write = create(
        ObjectType::Contacts,
        "push-item-1",
        json!({"email": "new@x.io", "first_name": "Nia", "company_ids": ["2"]}),
    );
    assert!(state.property(ObjectKind::Contacts, "syncbridge_key").is_none(), "a stock portal");
    let first = client.write(&token(), std::slice::from_ref(&write)).await.expect("first");
    let id = first[0].as_ref().expect("created").external_id.clone();
    let key =
        state.property(ObjectKind::Contacts, "syncbridge_key").expect("created through the properties API");
    assert!(key.has_unique_value && !key.hubspot_defined);
    state.reset_stats();
    let again = client.write(&token(), &[write.clone(), write]).await.expect("retry");
    assert!(again.iter().all(|r| r.as_ref().is_ok_and(|a| a.external_id == id)));
    assert_eq!(state.stats().total, 1, "the retry only reads by key");
    assert_eq!(
        state.find(ObjectKind::Contacts, "syncbridge_key", "push-item-1"),
        vec![id.as_str().to_owned()]
    );
    assert_eq!(state.count(ObjectKind::Contacts), 4);
    assert_eq!(state.associated(ObjectKind::Contacts, id.as_str(), ObjectKind::Companies), vec!["2"]);
}

#[tokio::test]
async fn hubspot_note_is_created_with_its_timestamp_and_associations_to_the_crm_records() {
    let fake = start(seeded()).await;
    let state = fake.state();
    let client = client(&fake);
    let writes = vec![
        create(
            ObjectType::Notes,
            "note-1",
            json!({"body": "[ARIA] Call summary", "timestamp": "2024-05-01T10:00:00Z",
                   "contact_ids": ["7"], "company_ids": ["3"], "deal_ids": ["12"]}),
        ),
        create(ObjectType::Notes, "note-2", json!({"body": "to a missing deal", "deal_ids": ["99999"]})),
    ];
    let results = client.write(&token(), &writes).await.expect("batch");
    let id = results[0].as_ref().expect("created").external_id.as_str().to_owned();
    assert!(matches!(&results[1], Err(ProviderError::Permanent(_))));
    let note = state.object(ObjectKind::Notes, &id).expect("note");
    assert_eq!(
        note["properties"]["hs_note_body"],
        format!("[ARIA] Call summary\n{}", syncbridge::domain::key_tag("note-1")),
        "the body ends with the create's key tag"
    );
    assert_eq!(note["properties"]["hs_timestamp"], "2024-05-01T10:00:00Z");
    assert_eq!(state.associated(ObjectKind::Notes, &id, ObjectKind::Contacts), vec!["7"]);
    assert_eq!(state.associated(ObjectKind::Notes, &id, ObjectKind::Companies), vec!["3"]);
    assert_eq!(state.associated(ObjectKind::Notes, &id, ObjectKind::Deals), vec!["12"]);
    assert!(state.associated(ObjectKind::Contacts, "7", ObjectKind::Notes).contains(&id));
    assert!(state.property(ObjectKind::Notes, "syncbridge_key").is_none(), "notes take no unique property");
    assert_eq!(state.count(ObjectKind::Notes), 130 + 1, "the refused note was not made");
}

#[tokio::test]
async fn hubspot_note_create_retried_after_a_lost_answer_finds_its_note_by_the_tag_and_pulls_show_the_plain_body()
 {
    let fake = start(seeded()).await;
    let state = fake.state();
    let note = create(
        ObjectType::Notes,
        "push:summary-7",
        json!({"body": "[ARIA] Met Ann; wants a demo", "timestamp": "2024-05-01T10:00:00Z", "contact_ids": ["7"]}),
    );
    // The first attempt's answer is lost: the note exists at HubSpot, the worker never learned it.
    let first = client(&fake).write(&token(), std::slice::from_ref(&note)).await.expect("first");
    let id = first[0].as_ref().expect("created").external_id.clone();
    let notes_before = state.count(ObjectKind::Notes);
    state.reset_stats();
    // The redelivered job builds a new client, which knows nothing of the first attempt.
    let retried = client(&fake).write(&token(), std::slice::from_ref(&note)).await.expect("retry");
    assert_eq!(retried[0].as_ref().expect("acknowledged").external_id, id, "the same note");
    assert_eq!(state.count(ObjectKind::Notes), notes_before, "no second note");
    let stats = state.stats();
    assert_eq!(stats.routes.get("batch_create"), None);
    assert_eq!((stats.routes.get("associations"), stats.routes.get("batch_read")), (Some(&1), Some(&1)));
    // Another summary with the same text but another key is another note.
    let other = create(
        ObjectType::Notes,
        "push:summary-8",
        json!({"body": "[ARIA] Met Ann; wants a demo", "timestamp": "2024-05-01T10:00:00Z", "contact_ids": ["7"]}),
    );
    let second = client(&fake).write(&token(), &[other]).await.expect("other");
    assert_ne!(second[0].as_ref().expect("created").external_id, id);
    // Pulled back, the tag is not part of the person's text (no echo of our own write).
    let (records, _) = pull_all(client(&fake).as_ref(), ObjectType::Notes, None).await;
    let pulled = records.iter().find(|r| r.external_id == id).expect("pulled");
    assert_eq!(pulled.fields.get("body"), Some(&json!("[ARIA] Met Ann; wants a demo")));
}

#[tokio::test]
async fn hubspot_creates_without_the_schema_scope_find_contacts_by_email_and_refuse_companies_with_what_to_do()
 {
    let fake = start(FakeConfig { contacts: 3, ..FakeConfig::default() }).await;
    let state = fake.state();
    let scopes: Vec<&str> = syncbridge_fakes::hubspot::ALL_SCOPES
        .iter()
        .copied()
        .filter(|s| !s.starts_with("crm.schemas."))
        .collect();
    let issued = state.issue_token_with_scopes(None, &scopes);
    let limited = SecretString::from(issued.access_token);
    let contact = create(ObjectType::Contacts, "push:c-1", json!({"email": "Nia@x.io", "first_name": "Nia"}));
    let first = client(&fake).write(&limited, std::slice::from_ref(&contact)).await.expect("first");
    let id = first[0].as_ref().expect("created").external_id.clone();
    let again = client(&fake).write(&limited, std::slice::from_ref(&contact)).await.expect("retry");
    assert_eq!(again[0].as_ref().expect("found by email").external_id, id);
    assert_eq!(state.count(ObjectKind::Contacts), 4, "one contact made");
    assert!(state.property(ObjectKind::Contacts, "syncbridge_key").is_none());
    let company = create(ObjectType::Companies, "push:co-1", json!({"name": "Acme"}));
    let refused = client(&fake).write(&limited, &[company]).await.expect("answered");
    match &refused[0] {
        Err(ProviderError::Permanent(m)) => assert!(m.mentions("crm.schemas.companies.write"), "{m}"),
        other => panic!("expected a permanent refusal, got {other:?}"),
    }
    assert_eq!(state.count(ObjectKind::Companies), 0, "nothing created without a proof");
}

#[tokio::test]
async fn hubspot_writes_wait_out_a_429_and_a_first_batch_failure_is_the_callers_to_retry() {
    let fake = start(FakeConfig { contacts: 5, ..FakeConfig::default() }).await;
    let state = fake.state();
    let client = client(&fake);
    state.inject_fault(Fault {
        route: Route::BatchUpdate,
        kind: FaultKind::RateLimit { policy: Some("SECONDLY".into()), retry_after_secs: None },
        count: 1,
    });
    let writes = vec![update(ObjectType::Contacts, "1", json!({"phone": "+47 1"}), None)];
    let results = client.write(&token(), &writes).await.expect("after the 429");
    assert!(results[0].is_ok());
    assert_eq!(client.stats().rate_limited, 1);
    assert_eq!(state.stats().routes.get("batch_update"), Some(&2));

    // An update may be repeated: one 500 is retried in place; a provider that keeps failing is
    // the caller's to retry (nothing was written).
    state.inject_fault(Fault { route: Route::BatchUpdate, kind: FaultKind::ServerError, count: 1 });
    let results = client.write(&token(), &writes).await.expect("retried in place");
    assert!(results[0].is_ok());
    state.inject_fault(Fault { route: Route::BatchUpdate, kind: FaultKind::ServerError, count: 10 });
    let err = client.write(&token(), &writes).await.expect_err("500 before anything was written");
    assert!(err.is_retryable());
    state.clear_faults();
}

/// A contact of the seeded fake not associated with `deal`.
fn unassociated_contact(state: &HubspotState, deal: &str) -> String {
    let held = state.associated(ObjectKind::Deals, deal, ObjectKind::Contacts);
    (1..=40).map(|i| i.to_string()).find(|c| !held.contains(c)).expect("a free contact")
}

#[tokio::test]
async fn hubspot_deal_update_adding_one_contact_and_removing_another_changes_exactly_those_in_four_requests()
{
    let fake = start(seeded()).await;
    let state = fake.state();
    let client = client(&fake);
    let old = state.associated(ObjectKind::Deals, "5", ObjectKind::Contacts)[0].clone();
    let keep = unassociated_contact(&state, "5");
    assert!(state.associate(ObjectKind::Deals, "5", ObjectKind::Contacts, &keep));
    let new = unassociated_contact(&state, "5");
    let companies = state.associated(ObjectKind::Deals, "5", ObjectKind::Companies);
    state.reset_stats();

    let wanted = sorted(vec![keep.clone(), new.clone()]);
    let writes = vec![update(ObjectType::Deals, "5", json!({"amount": 750, "contact_ids": wanted}), None)];
    let results = client.write(&token(), &writes).await.expect("batch");
    assert_eq!(results[0].as_ref().expect("written").external_id.as_str(), "5");
    assert_eq!(state.associated(ObjectKind::Deals, "5", ObjectKind::Contacts), wanted);
    assert!(state.associated(ObjectKind::Contacts, &new, ObjectKind::Deals).contains(&"5".to_owned()));
    assert!(!state.associated(ObjectKind::Contacts, &old, ObjectKind::Deals).contains(&"5".to_owned()));
    assert!(state.associated(ObjectKind::Contacts, &keep, ObjectKind::Deals).contains(&"5".to_owned()));
    assert_eq!(state.associated(ObjectKind::Deals, "5", ObjectKind::Companies), companies);
    assert_eq!(state.object(ObjectKind::Deals, "5").expect("deal")["properties"]["amount"], "750");
    let stats = state.stats();
    assert_eq!(stats.total, 4);
    assert_eq!(by_object(&state, "deals.batch_update"), 1);
    assert_eq!(by_object(&state, "deals.associations"), 1);
    assert_eq!(by_object(&state, "deals.associations_create"), 1);
    assert_eq!(by_object(&state, "deals.associations_archive"), 1);

    state.reset_stats();
    let again = client.write(&token(), &writes).await.expect("repeat");
    assert!(again[0].is_ok());
    assert_eq!(state.associated(ObjectKind::Deals, "5", ObjectKind::Contacts), wanted);
    assert_eq!(state.stats().total, 2);
    assert_eq!(by_object(&state, "deals.associations_create"), 0);
    assert_eq!(by_object(&state, "deals.associations_archive"), 0);
}

#[tokio::test]
async fn hubspot_update_with_unchanged_ids_writes_no_association_and_one_without_ids_reads_none() {
    let fake = start(seeded()).await;
    let state = fake.state();
    let client = client(&fake);
    let contacts = state.associated(ObjectKind::Deals, "6", ObjectKind::Contacts);
    let companies = state.associated(ObjectKind::Deals, "6", ObjectKind::Companies);
    let same = update(
        ObjectType::Deals,
        "6",
        json!({"name": "Renewal", "contact_ids": contacts, "company_ids": companies}),
        None,
    );
    let results = client.write(&token(), &[same]).await.expect("batch");
    assert!(results[0].is_ok());
    assert_eq!(state.stats().total, 3);
    assert_eq!(by_object(&state, "deals.associations"), 2);
    assert_eq!(by_object(&state, "deals.associations_create"), 0);
    assert_eq!(by_object(&state, "deals.associations_archive"), 0);
    assert_eq!(state.associated(ObjectKind::Deals, "6", ObjectKind::Contacts), contacts);

    state.reset_stats();
    let plain = update(ObjectType::Deals, "6", json!({"name": "Renewal 2"}), None);
    assert!(client.write(&token(), &[plain]).await.expect("batch")[0].is_ok());
    assert_eq!(state.stats().total, 1);
    assert_eq!(state.associated(ObjectKind::Deals, "6", ObjectKind::Contacts), contacts);

    let bad = update(ObjectType::Deals, "6", json!({"name": "Never", "contact_ids": "7"}), None);
    let results = client.write(&token(), &[bad]).await.expect("batch");
    assert!(matches!(&results[0], Err(ProviderError::Permanent(m)) if m.mentions("contact_ids")));
    assert_eq!(state.object(ObjectKind::Deals, "6").expect("deal")["properties"]["dealname"], "Renewal 2");
}

#[tokio::test]
async fn hubspot_update_whose_association_call_fails_after_its_properties_is_an_error_and_a_retry_completes_it()
 {
    let fake = start(seeded()).await;
    let state = fake.state();
    let client = client(&fake);
    let new = unassociated_contact(&state, "8");
    let mut wanted = state.associated(ObjectKind::Deals, "8", ObjectKind::Contacts);
    wanted.push(new.clone());
    let wanted = sorted(wanted);
    let writes = vec![
        update(ObjectType::Deals, "8", json!({"amount": 42, "contact_ids": wanted}), None),
        update(ObjectType::Deals, "9", json!({"amount": 43}), None),
    ];
    state.inject_fault(Fault { route: Route::AssociationsCreate, kind: FaultKind::ServerError, count: 10 });
    let results = client.write(&token(), &writes).await.expect("properties went through");
    state.clear_faults();
    assert!(matches!(&results[0], Err(ProviderError::Transient(_))));
    assert!(results[1].is_ok());
    assert_eq!(state.object(ObjectKind::Deals, "8").expect("deal")["properties"]["amount"], "42");
    assert!(!state.associated(ObjectKind::Deals, "8", ObjectKind::Contacts).contains(&new));

    let retry = client.write(&token(), &writes[..1]).await.expect("retry");
    assert!(retry[0].is_ok());
    assert_eq!(state.associated(ObjectKind::Deals, "8", ObjectKind::Contacts), wanted);
}

#[tokio::test]
async fn hubspot_what_a_job_learned_of_the_portal_is_kept_on_the_connection_and_not_asked_again() {
    let fake = start(FakeConfig { contacts: 3, ..FakeConfig::default() }).await;
    let state = fake.state();
    let first = client(&fake);
    first
        .write(&token(), &[create(ObjectType::Contacts, "push:k-1", json!({"email": "k1@x.io"}))])
        .await
        .expect("first");
    let learned = first.provider_setup();
    assert_eq!(learned.get("hubspot.contacts.create_proof").map(String::as_str), Some("key_property"));

    // The next job's client is built from a connection that kept it: no property lookup.
    let mut connection = Connection::new(
        TenantId::parse("t1").expect("tenant"),
        NewConnection {
            provider: Provider::Hubspot,
            base_url: fake.base_url(),
            credentials: Credentials { access_token: token(), refresh_token: None, expires_at: None },
            interval_minutes: 15,
            settings: ConnectionSettings::default(),
        },
        Utc::now(),
    );
    connection.provider_setup = learned;
    let next = HubspotFactory::new(reqwest::Client::new(), None)
        .with_pacing(fast())
        .client(&connection)
        .expect("client");
    state.reset_stats();
    next.write(&token(), &[create(ObjectType::Contacts, "push:k-2", json!({"email": "k2@x.io"}))])
        .await
        .expect("next");
    let stats = state.stats();
    assert_eq!(stats.routes.get("properties"), None, "the key property is known: {stats:?}");
    assert_eq!(stats.routes.get("batch_create"), Some(&1));
}
