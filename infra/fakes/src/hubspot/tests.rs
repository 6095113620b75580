//! HTTP-level tests of the fake, through reqwest.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;

async fn fake(contacts: usize, rate_limits: bool) -> RunningFake {
    HubspotFake::start(FakeConfig { contacts, rate_limits, ..FakeConfig::default() }).await.unwrap()
}

fn token() -> &'static str {
    "pat-na1-fake"
}

#[tokio::test]
async fn list_pages_through_every_contact_with_after_tokens() {
    let f = fake(250, false).await;
    let http = reqwest::Client::new();
    let mut after: Option<String> = None;
    let mut seen = BTreeSet::new();
    let mut pages = 0;
    loop {
        let mut url = format!("{}/crm/v3/objects/contacts?limit=100&properties=email,phone", f.base_url());
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let body: Value = http.get(&url).bearer_auth(token()).send().await.unwrap().json().await.unwrap();
        pages += 1;
        for r in body["results"].as_array().unwrap() {
            assert!(r["properties"]["email"].as_str().unwrap().contains('@'));
            assert_eq!(r["archived"], json!(false));
            assert!(seen.insert(r["id"].as_str().unwrap().to_owned()));
        }
        match body["paging"]["next"]["after"].as_str() {
            Some(a) => after = Some(a.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250);
    assert_eq!(f.state().stats().routes.get("list"), Some(&3));
}

#[tokio::test]
async fn list_rejects_limits_above_one_hundred() {
    let f = fake(5, false).await;
    let resp = reqwest::Client::new()
        .get(format!("{}/crm/v3/objects/contacts?limit=101", f.base_url()))
        .bearer_auth(token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["category"], "VALIDATION_ERROR");
}

#[tokio::test]
async fn search_returns_edited_contacts_and_refuses_to_page_past_ten_thousand() {
    let f = fake(300, false).await;
    let state = f.state();
    let before = state.contact("1").unwrap()["updatedAt"].clone();
    let edited = state.edit_contact("120", &[("firstname", "Edited")]).unwrap();
    assert_eq!(edited["properties"]["firstname"], "Edited");
    assert_ne!(edited["updatedAt"], before);
    let since = edited["properties"]["lastmodifieddate"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let url = format!("{}/crm/v3/objects/contacts/search", f.base_url());
    let body: Value = http
        .post(&url)
        .bearer_auth(token())
        .json(&json!({
            "filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": since}]}],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            "properties": ["firstname"],
            "limit": 200
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["total"], 1);
    assert_eq!(body["results"][0]["id"], "120");
    assert!(body.get("paging").is_none());

    let deep = http
        .post(&url)
        .bearer_auth(token())
        .json(&json!({"limit": 200, "after": "9900"}))
        .send()
        .await
        .unwrap();
    assert_eq!(deep.status(), 400);
    let err: Value = deep.json().await.unwrap();
    assert_eq!(err["status"], "error");
    assert!(err["correlationId"].is_string());
}

#[tokio::test]
async fn rate_limits_answer_429_with_hubspot_body_and_headers() {
    let f = fake(10, true).await;
    let http = reqwest::Client::new();
    let url = format!("{}/crm/v3/objects/contacts/search", f.base_url());
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..6 {
        let resp = http.post(&url).bearer_auth(token()).json(&json!({"limit": 1})).send().await.unwrap();
        statuses.push(resp.status().as_u16());
        last = Some(resp);
    }
    assert_eq!(&statuses[..5], &[200; 5]);
    assert_eq!(statuses[5], 429);
    let resp = last.unwrap();
    assert_eq!(resp.headers()["x-hubspot-ratelimit-max"], "190");
    assert_eq!(resp.headers()["x-hubspot-ratelimit-interval-milliseconds"], "10000");
    assert!(resp.headers().get("retry-after").is_none());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(body["policyName"], "SECONDLY");
    assert_eq!(f.state().stats().rate_limited, 1);

    let list = http
        .get(format!("{}/crm/v3/objects/contacts", f.base_url()))
        .bearer_auth(token())
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    assert_eq!(list.headers()["x-hubspot-ratelimit-remaining"], "184");
    assert!(list.headers().contains_key("x-hubspot-ratelimit-daily-remaining"));
}

#[tokio::test]
async fn ten_secondly_window_refuses_the_191st_request() {
    let f = fake(1, true).await;
    let http = reqwest::Client::new();
    let url = format!("{}/crm/v3/objects/contacts?limit=1", f.base_url());
    for _ in 0..TEN_SECONDLY_MAX {
        assert_eq!(http.get(&url).bearer_auth(token()).send().await.unwrap().status(), 200);
    }
    let resp = http.get(&url).bearer_auth(token()).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
}

#[tokio::test]
async fn expired_and_unknown_tokens_get_hubspot_401_bodies_and_refresh_issues_a_new_one() {
    let f = fake(3, false).await;
    let state = f.state();
    let issued = state.issue_token(None);
    let http = reqwest::Client::new();
    let url = format!("{}/crm/v3/objects/contacts", f.base_url());
    assert_eq!(http.get(&url).bearer_auth(&issued.access_token).send().await.unwrap().status(), 200);
    assert!(state.expire_token(&issued.access_token));
    let resp = http.get(&url).bearer_auth(&issued.access_token).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["category"], "EXPIRED_AUTHENTICATION");
    let unknown: Value = http.get(&url).bearer_auth("nope").send().await.unwrap().json().await.unwrap();
    assert_eq!(unknown["category"], "INVALID_AUTHENTICATION");

    let token_url = format!("{}/oauth/v1/token", f.base_url());
    let form = |refresh: &str| {
        vec![
            ("grant_type", "refresh_token".to_owned()),
            ("client_id", "fake-client-id".to_owned()),
            ("client_secret", "fake-client-secret".to_owned()),
            ("refresh_token", refresh.to_owned()),
        ]
    };
    let fresh: Value =
        http.post(&token_url).form(&form(&issued.refresh_token)).send().await.unwrap().json().await.unwrap();
    assert_eq!(fresh["expires_in"], 1800);
    let access = fresh["access_token"].as_str().unwrap();
    assert_eq!(http.get(&url).bearer_auth(access).send().await.unwrap().status(), 200);
    let bad = http.post(&token_url).form(&form("wrong")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["status"], "BAD_REFRESH_TOKEN");
}

#[tokio::test]
async fn injected_faults_hit_only_their_route_and_only_count_times() {
    let f = fake(3, false).await;
    let state = f.state();
    state.inject_fault(Fault { route: Route::List, kind: FaultKind::ServerError, count: 2 });
    state.inject_fault(Fault { route: Route::Search, kind: FaultKind::MalformedJson, count: 1 });
    let http = reqwest::Client::new();
    let list = format!("{}/crm/v3/objects/contacts", f.base_url());
    let search = format!("{list}/search");
    let get = |u: String| http.get(u).bearer_auth(token()).send();
    assert_eq!(get(list.clone()).await.unwrap().status(), 500);
    assert_eq!(get(list.clone()).await.unwrap().status(), 500);
    assert_eq!(get(list.clone()).await.unwrap().status(), 200);
    let text =
        http.post(&search).bearer_auth(token()).json(&json!({})).send().await.unwrap().text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err());

    let admin = format!("{}/_admin/faults", f.base_url());
    let resp = http
        .post(&admin)
        .json(&json!({"route": "list", "kind": "rate_limit", "policy": "SECONDLY", "retry_after_secs": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let limited = get(list.clone()).await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");
    let stats: Value =
        http.get(format!("{}/_admin/stats", f.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["routes"]["list"], 4);
    assert_eq!(stats["rate_limited"], 1);
    assert_eq!(stats["total"], 5);
    http.post(format!("{}/_admin/stats/reset", f.base_url())).send().await.unwrap();
    assert_eq!(state.stats().total, 0);
}

#[tokio::test]
async fn delay_fault_holds_the_answer_back() {
    let f = fake(1, false).await;
    f.state().inject_fault(Fault { route: Route::Any, kind: FaultKind::Delay { ms: 300 }, count: 1 });
    let http = reqwest::Client::builder().timeout(Duration::from_millis(100)).build().unwrap();
    let err = http
        .get(format!("{}/crm/v3/objects/contacts", f.base_url()))
        .bearer_auth(token())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
}

#[tokio::test]
async fn batch_update_changes_contacts_and_batch_read_reports_missing_ids() {
    let f = fake(5, false).await;
    let http = reqwest::Client::new();
    let base = format!("{}/crm/v3/objects/contacts", f.base_url());
    let upd = http
        .post(format!("{base}/batch/update"))
        .bearer_auth(token())
        .json(&json!({"inputs": [{"id": "2", "properties": {"phone": "+47 1234"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(upd.status(), 200);
    let read = http
        .post(format!("{base}/batch/read"))
        .bearer_auth(token())
        .json(&json!({"properties": ["phone"], "inputs": [{"id": "2"}, {"id": "999"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 207);
    let body: Value = read.json().await.unwrap();
    assert_eq!(body["results"][0]["properties"]["phone"], "+47 1234");
    assert_eq!(body["errors"][0]["context"]["ids"][0], "999");
    let too_many: Vec<Value> = (0..101).map(|i| json!({"id": i.to_string()})).collect();
    let resp = http
        .post(format!("{base}/batch/read"))
        .bearer_auth(token())
        .json(&json!({"inputs": too_many}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn a_hundred_thousand_contacts_seed_and_search_quickly() {
    let started = std::time::Instant::now();
    let f = fake(100_000, false).await;
    let state = f.state();
    assert_eq!(state.contact_count(), 100_000);
    assert_eq!(state.touch_contacts(["5", "99999"], true), 2);
    let since = state.contact("5").unwrap()["properties"]["lastmodifieddate"].as_str().unwrap().to_owned();
    let body: Value = reqwest::Client::new()
        .post(format!("{}/crm/v3/objects/contacts/search", f.base_url()))
        .bearer_auth(token())
        .json(&json!({"filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": since}]}], "limit": 10}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["total"], 2);
    assert!(started.elapsed() < Duration::from_secs(20));
}

async fn crm_fake() -> RunningFake {
    HubspotFake::start(FakeConfig {
        contacts: 20,
        companies: 5,
        deals: 30,
        notes: 10,
        ..FakeConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn deals_list_with_associations_inline_and_the_v4_read_agrees() {
    let f = crm_fake().await;
    let http = reqwest::Client::new();
    let base = f.base_url();
    let body: Value = http
        .get(format!(
            "{base}/crm/v3/objects/deals?limit=5&properties=dealname,amount&associations=contacts,companies"
        ))
        .bearer_auth(token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = &body["results"][0];
    assert!(first["properties"]["amount"].is_string());
    let contact = first["associations"]["contacts"]["results"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(first["associations"]["contacts"]["results"][0]["type"], "deal_to_contact");
    assert!(body["paging"]["next"]["link"].as_str().unwrap().contains("/crm/v3/objects/deals?after="));

    let resp = http
        .post(format!("{base}/crm/v4/associations/deals/contacts/batch/read"))
        .bearer_auth(token())
        .json(&json!({"inputs": [{"id": first["id"]}, {"id": "9999"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 207);
    let v4: Value = resp.json().await.unwrap();
    assert_eq!(v4["results"][0]["to"][0]["toObjectId"].to_string(), contact);
    assert_eq!(v4["results"][0]["to"][0]["associationTypes"][0]["typeId"], 3);
    assert_eq!(v4["errors"][0]["context"]["fromObjectId"][0], "9999");
    let stats = f.state().stats();
    assert_eq!(stats.by_object.get("deals.list"), Some(&1));
    assert_eq!(stats.by_object.get("deals.associations"), Some(&1));

    let unknown =
        http.get(format!("{base}/crm/v3/objects/widgets")).bearer_auth(token()).send().await.unwrap();
    assert_eq!(unknown.status(), 400);
}

#[tokio::test]
async fn archiving_moves_a_record_to_the_archived_listing_and_restoring_brings_it_back() {
    let f = crm_fake().await;
    let state = f.state();
    let http = reqwest::Client::new();
    let base = f.base_url();
    let del =
        http.delete(format!("{base}/crm/v3/objects/companies/2")).bearer_auth(token()).send().await.unwrap();
    assert_eq!(del.status(), 204);
    let archived: Value = http
        .get(format!("{base}/crm/v3/objects/companies?archived=true"))
        .bearer_auth(token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(archived["results"].as_array().unwrap().len(), 1);
    assert_eq!(archived["results"][0]["id"], "2");
    assert_eq!(archived["results"][0]["archived"], true);
    assert!(archived["results"][0]["archivedAt"].is_string());
    let get =
        http.get(format!("{base}/crm/v3/objects/companies/2")).bearer_auth(token()).send().await.unwrap();
    assert_eq!(get.status(), 404);
    assert!(state.restore(ObjectKind::Companies, "2"));
    assert_eq!(state.object(ObjectKind::Companies, "2").unwrap()["archived"], false);
    assert!(!state.restore(ObjectKind::Companies, "2"));
}

#[tokio::test]
async fn batch_create_with_trace_ids_answers_207_per_record_and_enforces_a_created_unique_property() {
    let f = crm_fake().await;
    let state = f.state();
    let http = reqwest::Client::new();
    let property = |object: &str| {
        http.post(format!("{}/crm/v3/properties/{object}", f.base_url())).bearer_auth(token()).json(&json!({
            "name": "syncbridge_key", "label": "Syncbridge key", "type": "string", "fieldType": "text",
            "groupName": "dealinformation", "hasUniqueValue": true,
        }))
    };
    let notes = property("notes").send().await.unwrap();
    assert_eq!(notes.status(), 400);
    assert_eq!(notes.json::<Value>().await.unwrap()["category"], "VALIDATION_ERROR");
    assert_eq!(property("deals").send().await.unwrap().status(), 201);
    assert_eq!(property("deals").send().await.unwrap().status(), 409);

    let url = format!("{}/crm/v3/objects/deals/batch/create", f.base_url());
    let input = |trace: &str, key: &str, contact: &str| {
        json!({
            "properties": {"dealname": "hi", "closedate": "2024-01-01T00:00:00Z", "syncbridge_key": key},
            "associations": [{"to": {"id": contact}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]}],
            "objectWriteTraceId": trace,
        })
    };
    let resp = http
        .post(&url)
        .bearer_auth(token())
        .json(&json!({"inputs": [input("a", "k1", "3"), input("b", "k2", "404"), input("c", "k1", "4")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 207);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["results"].as_array().unwrap().len(), 1);
    assert_eq!(body["results"][0]["objectWriteTraceId"], "a");
    let categories: BTreeSet<String> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["context"]["objectWriteTraceId"][0].as_str().unwrap(),
                e["category"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(categories, ["b:VALIDATION_ERROR".to_owned(), "c:VALIDATION_ERROR".to_owned()].into());
    assert!(body["errors"].to_string().contains("already has that value"));
    let id = body["results"][0]["id"].as_str().unwrap();
    assert_eq!(state.associated(ObjectKind::Deals, id, ObjectKind::Contacts), vec!["3"]);
    assert_eq!(state.find(ObjectKind::Deals, "syncbridge_key", "k1"), vec![id.to_owned()]);

    let untraced = http
        .post(&url)
        .bearer_auth(token())
        .json(&json!({"inputs": [{"properties": {"closedate": "never"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(untraced.status(), 400);
    assert_eq!(state.count(ObjectKind::Deals), 31);
}

#[tokio::test]
async fn a_token_without_the_contacts_scopes_gets_missing_scopes_on_contacts_and_notes_only() {
    let f = crm_fake().await;
    let state = f.state();
    let scopes: Vec<&str> =
        ALL_SCOPES.iter().copied().filter(|s| !s.starts_with("crm.objects.contacts")).collect();
    let issued = state.issue_token_with_scopes(None, &scopes);
    let http = reqwest::Client::new();
    let get =
        |path: &str| http.get(format!("{}{path}", f.base_url())).bearer_auth(&issued.access_token).send();
    for path in ["/crm/v3/objects/contacts", "/crm/v3/objects/notes"] {
        let resp = get(path).await.unwrap();
        assert_eq!(resp.status(), 403);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["category"], "MISSING_SCOPES");
        assert_eq!(
            body["errors"][0]["context"]["requiredGranularScopes"],
            json!(["crm.objects.contacts.read"])
        );
    }
    assert_eq!(get("/crm/v3/objects/deals").await.unwrap().status(), 200);
    assert_eq!(state.token_scopes(&issued.access_token).unwrap().len(), scopes.len());
    let refreshed = state.refresh(&issued.refresh_token).unwrap();
    assert_eq!(state.token_scopes(&refreshed.access_token), state.token_scopes(&issued.access_token));
    let admin: IssuedToken = http
        .post(format!("{}/_admin/tokens", f.base_url()))
        .json(&json!({"scopes": ["crm.objects.deals.read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state.token_scopes(&admin.access_token).unwrap(), ["crm.objects.deals.read"]);
}

#[tokio::test]
async fn the_date_header_follows_the_accounts_clock_when_a_test_advances_it() {
    let f = crm_fake().await;
    let state = f.state();
    state.advance_clock(Duration::from_secs(3_600));
    let resp = reqwest::Client::new()
        .get(format!("{}/crm/v3/objects/notes?limit=1", f.base_url()))
        .bearer_auth(token())
        .send()
        .await
        .unwrap();
    let date = resp.headers()["date"].to_str().unwrap().to_owned();
    let at = chrono::DateTime::parse_from_rfc2822(&date).unwrap();
    let ahead = at.timestamp() - chrono::Utc::now().timestamp();
    assert!((3_590..=3_610).contains(&ahead), "{date}");
    let id = state.create(ObjectKind::Notes, &[("hs_note_body", "later")]).unwrap();
    let created = state.object(ObjectKind::Notes, &id).unwrap();
    let stamp = chrono::DateTime::parse_from_rfc3339(created["updatedAt"].as_str().unwrap()).unwrap();
    assert!(stamp.timestamp() - chrono::Utc::now().timestamp() >= 3_590);
}

#[tokio::test]
async fn v4_batch_create_and_archive_change_associations_both_ways_and_repeat_as_no_ops() {
    let f = crm_fake().await;
    let http = reqwest::Client::new();
    let base = f.base_url();
    let state = f.state();
    let before = state.associated(ObjectKind::Deals, "1", ObjectKind::Contacts);
    let old = before[0].clone();
    let new = if old == "7" { "8" } else { "7" };
    let create = json!({"inputs": [{
        "from": {"id": "1"}, "to": {"id": new},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}],
    }]});
    for _ in 0..2 {
        let resp = http
            .post(format!("{base}/crm/v4/associations/deals/contacts/batch/create"))
            .bearer_auth(token())
            .json(&create)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["results"][0]["toObjectId"].to_string(), new);
        assert_eq!(body["results"][0]["fromObjectTypeId"], "0-3");
    }
    assert!(state.associated(ObjectKind::Contacts, new, ObjectKind::Deals).contains(&"1".to_owned()));
    let archive = json!({"inputs": [{"from": {"id": "1"}, "to": [{"id": old}]}]});
    for _ in 0..2 {
        let resp = http
            .post(format!("{base}/crm/v4/associations/deals/contacts/batch/archive"))
            .bearer_auth(token())
            .json(&archive)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
    }
    assert_eq!(state.associated(ObjectKind::Deals, "1", ObjectKind::Contacts), vec![new.to_owned()]);
    assert!(!state.associated(ObjectKind::Contacts, &old, ObjectKind::Deals).contains(&"1".to_owned()));

    let wrong_type = json!({"inputs": [{
        "from": {"id": "1"}, "to": {"id": new},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}],
    }]});
    let resp = http
        .post(format!("{base}/crm/v4/associations/deals/contacts/batch/create"))
        .bearer_auth(token())
        .json(&wrong_type)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let missing = json!({"inputs": [{
        "from": {"id": "1"}, "to": {"id": "99999"},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}],
    }]});
    let resp = http
        .post(format!("{base}/crm/v4/associations/deals/contacts/batch/create"))
        .bearer_auth(token())
        .json(&missing)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 207);
    let stats = state.stats();
    assert_eq!(stats.routes.get("associations_create"), Some(&4));
    assert_eq!(stats.routes.get("associations_archive"), Some(&2));
    let denied = http
        .post(format!("{base}/crm/v4/associations/deals/contacts/batch/archive"))
        .json(&archive)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
}

/// A webhook receiver keeping `(signature, timestamp, body)` of each request.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<(String, String, String)>>>, tokio::task::JoinHandle<()>)
{
    let seen: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let store = seen.clone();
    let app = axum::Router::new().route(
        "/webhooks/hubspot",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let store = store.clone();
            async move {
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                store.lock().expect("lock").push((
                    h("x-hubspot-signature-v3"),
                    h("x-hubspot-request-timestamp"),
                    body,
                ));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/webhooks/hubspot"), seen, task)
}

#[tokio::test]
async fn changes_are_sent_as_signed_webhooks_attributed_to_a_person_or_to_the_app() {
    let f = fake(3, false).await;
    let (url, seen, _task) = webhook_receiver().await;
    f.state().set_webhooks(Some(WebhookTarget { url: url.clone(), app_id: 424242, portal_id: 62515 }));
    let http = reqwest::Client::new();
    // A person edits contact 1 (admin route); the app updates contact 2 through the API.
    let admin = http
        .patch(format!("{}/_admin/contacts/1", f.base_url()))
        .json(&json!({ "properties": { "jobtitle": "CTO" } }))
        .send()
        .await
        .unwrap();
    assert!(admin.status().is_success(), "{}", admin.status());
    let api = http
        .patch(format!("{}/crm/v3/objects/contacts/2", f.base_url()))
        .bearer_auth(token())
        .json(&json!({ "properties": { "jobtitle": "CFO" } }))
        .send()
        .await
        .unwrap();
    assert!(api.status().is_success(), "{}", api.status());
    let sent: Value = http
        .post(format!("{}/_admin/webhooks/send", f.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sent["statuses"], json!([200]));

    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    let (signature, timestamp, body) = &seen[0];
    assert_eq!(signature, &sign_v3(&FakeConfig::default().client_secret, "POST", &url, body, timestamp));
    let events: Vec<Value> = serde_json::from_str(body).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        (&events[0]["objectId"], &events[0]["changeSource"], &events[0]["sourceId"]),
        (&json!(1), &json!("CRM_UI"), &json!(format!("userId:{WEBHOOK_USER_ID}")))
    );
    assert_eq!(
        (&events[1]["objectId"], &events[1]["changeSource"], &events[1]["sourceId"]),
        (&json!(2), &json!("INTEGRATION"), &json!("424242"))
    );
    assert_eq!(events[0]["subscriptionType"], "contact.propertyChange");
    assert_eq!(
        (&events[0]["propertyName"], &events[0]["propertyValue"]),
        (&json!("jobtitle"), &json!("CTO"))
    );
    assert_eq!((&events[0]["portalId"], &events[0]["appId"]), (&json!(62515), &json!(424242)));
    assert_ne!(events[0]["eventId"], events[1]["eventId"]);
    assert!(f.state().pending_webhooks().is_empty(), "sent events are not sent again");
}

#[tokio::test]
async fn deletions_are_legacy_events_for_contacts_and_generic_object_events_for_notes() {
    let f = HubspotFake::start(FakeConfig { contacts: 2, notes: 2, ..FakeConfig::default() }).await.unwrap();
    let state = f.state();
    state.set_webhooks(Some(WebhookTarget { url: "http://127.0.0.1:9/".into(), app_id: 1, portal_id: 2 }));
    assert!(state.archive(ObjectKind::Contacts, "1"));
    assert!(state.archive(ObjectKind::Notes, "2"));
    let events = state.pending_webhooks();
    let kinds: Vec<(&Value, &Value, &Value)> =
        events.iter().map(|e| (&e["subscriptionType"], &e["objectId"], &e["objectTypeId"])).collect();
    assert_eq!(
        kinds,
        vec![
            (&json!("contact.deletion"), &json!(1), &Value::Null),
            (&json!("object.deletion"), &json!(2), &json!("0-46"))
        ]
    );
}

async fn activities_fake() -> RunningFake {
    HubspotFake::start(FakeConfig {
        contacts: 10,
        companies: 3,
        deals: 4,
        calls: 6,
        emails: 5,
        meetings: 4,
        tasks: 3,
        ..FakeConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_four_activity_types_list_with_their_associations_and_their_standard_properties() {
    let f = activities_fake().await;
    let http = reqwest::Client::new();
    let base = f.base_url();
    for (path, count, property, type_name, type_id) in [
        ("calls", 6, "hs_call_body", "call_to_contact", 194),
        ("emails", 5, "hs_email_subject", "email_to_contact", 198),
        ("meetings", 4, "hs_meeting_title", "meeting_to_contact", 200),
        ("tasks", 3, "hs_task_subject", "task_to_contact", 204),
    ] {
        let body: Value = http
            .get(format!(
                "{base}/crm/v3/objects/{path}?limit=100&properties=hs_timestamp,{property}&associations=contacts"
            ))
            .bearer_auth(token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), count, "{path}");
        assert!(results[0]["properties"][property].as_str().is_some_and(|s| !s.is_empty()), "{path}");
        assert!(results[0]["properties"]["hs_timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(results[0]["associations"]["contacts"]["results"][0]["type"], type_name);
        let from = results[0]["id"].clone();
        let v4: Value = http
            .post(format!("{base}/crm/v4/associations/{path}/contacts/batch/read"))
            .bearer_auth(token())
            .json(&json!({"inputs": [{"id": from}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v4["results"][0]["to"][0]["associationTypes"][0]["typeId"], type_id, "{path}");
        let props: Value = http
            .get(format!("{base}/crm/v3/properties/{path}/{property}"))
            .bearer_auth(token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(props["hubspotDefined"], true, "{path}");
    }
}

#[tokio::test]
async fn activity_creates_require_hs_timestamp_check_options_and_associate_with_default_type_ids() {
    let f = activities_fake().await;
    let http = reqwest::Client::new();
    let url = format!("{}/crm/v3/objects/tasks", f.base_url());
    let missing = http
        .post(&url)
        .bearer_auth(token())
        .json(&json!({"properties": {"hs_task_subject": "Call back"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["category"], "VALIDATION_ERROR");
    assert!(body["message"].as_str().unwrap().contains("REQUIRED_PROPERTY"), "{body}");
    let bad_option = http
        .post(&url)
        .bearer_auth(token())
        .json(&json!({"properties": {"hs_timestamp": "2026-01-05T10:00:00Z", "hs_task_status": "DONE"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_option.status(), 400);
    assert!(bad_option.text().await.unwrap().contains("INVALID_OPTION"));
    let wrong_type = http
        .post(&url)
        .bearer_auth(token())
        .json(&json!({
            "properties": {"hs_timestamp": "2026-01-05T10:00:00Z"},
            "associations": [{"to": {"id": "2"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}]}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 400, "194 is call -> contact, not task -> contact");
    let created = http
        .post(&url)
        .bearer_auth(token())
        .json(&json!({
            "properties": {"hs_timestamp": "2026-01-05T10:00:00Z", "hs_task_subject": "Call back", "hs_task_status": "NOT_STARTED"},
            "associations": [{"to": {"id": "2"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}]}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let task: Value = created.json().await.unwrap();
    let id = task["id"].as_str().unwrap();
    assert_eq!(f.state().associated(ObjectKind::Tasks, id, ObjectKind::Contacts), ["2"]);
    assert!(f.state().associated(ObjectKind::Contacts, "2", ObjectKind::Tasks).contains(&id.to_owned()));
    let unique = http
        .post(format!("{}/crm/v3/properties/calls", f.base_url()))
        .bearer_auth(token())
        .json(&json!({"name": "sb_key", "label": "k", "type": "string", "fieldType": "text", "groupName": "call", "hasUniqueValue": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(unique.status(), 400, "no unique-value properties on activities");
}

#[tokio::test]
async fn activities_are_searched_by_modified_stamp_and_hs_timestamp_and_need_the_contacts_scopes() {
    let f = activities_fake().await;
    let state = f.state();
    let edited = state.edit(ObjectKind::Meetings, "3", &[("hs_meeting_outcome", "COMPLETED")]).unwrap();
    let since = edited["properties"]["hs_lastmodifieddate"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let search = |body: Value| {
        http.post(format!("{}/crm/v3/objects/meetings/search", f.base_url()))
            .bearer_auth(token())
            .json(&body)
            .send()
    };
    let found: Value = search(json!({
        "filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": since}]}],
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
        "properties": ["hs_meeting_outcome"], "limit": 200
    }))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(found["total"], 1);
    assert_eq!(found["results"][0]["properties"]["hs_meeting_outcome"], "COMPLETED");
    let by_time: Value = search(json!({
        "filterGroups": [{"filters": [{"propertyName": "hs_timestamp", "operator": "LTE", "value": store::SEED_BASE_MS + 250}]}],
        "limit": 200
    }))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(by_time["total"], 2, "meetings 1 and 2 were seeded at +100 and +200 ms");
    let scopes: Vec<&str> =
        ALL_SCOPES.iter().copied().filter(|s| !s.starts_with("crm.objects.contacts")).collect();
    let issued = state.issue_token_with_scopes(None, &scopes);
    for path in ["calls", "emails", "meetings", "tasks"] {
        let resp = http
            .get(format!("{}/crm/v3/objects/{path}", f.base_url()))
            .bearer_auth(&issued.access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{path}");
    }
}
