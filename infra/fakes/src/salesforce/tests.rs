//! HTTP-level tests of the fake, through reqwest.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::*;

async fn fake(contacts: usize) -> RunningFake {
    let seed_counts = SeedCounts { accounts: 3, contacts, ..SeedCounts::default() };
    SalesforceFake::start(FakeConfig { seed_counts, ..FakeConfig::default() }).await.unwrap()
}

const TOKEN: &str = "00DFAKE!session";

fn api(f: &RunningFake, path: &str) -> String {
    format!("{}/services/data/v60.0{path}", f.base_url())
}

#[tokio::test]
async fn queries_page_with_next_records_url_at_the_requested_batch_size() {
    let f = fake(450).await;
    let http = reqwest::Client::new();
    let resp = http
        .get(api(&f, "/query"))
        .query(&[("q", "SELECT Id, Email FROM Contact ORDER BY SystemModstamp, Id")])
        .header("Sforce-Query-Options", "batchSize=200")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["sforce-limit-info"], "api-usage=1/100000");
    let mut body: Value = resp.json().await.unwrap();
    let mut seen = BTreeSet::new();
    let mut pages = 1;
    loop {
        assert_eq!(body["totalSize"], 450);
        for r in body["records"].as_array().unwrap() {
            assert_eq!(r["attributes"]["type"], "Contact");
            assert!(seen.insert(r["Id"].as_str().unwrap().to_owned()));
        }
        let Some(next) = body["nextRecordsUrl"].as_str() else { break };
        assert_eq!(body["done"], false);
        body = http
            .get(format!("{}{next}", f.base_url()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
    }
    assert_eq!((pages, seen.len()), (3, 450));
    assert_eq!(f.state().route_count(Route::QueryMore), 2);
}

#[tokio::test]
async fn errors_use_salesforce_bodies_and_the_daily_allocation_is_enforced() {
    let f = fake(5).await;
    let http = reqwest::Client::new();
    let q = [("q", "SELECT Id FROM Contact")];
    let resp = http.get(api(&f, "/query")).query(&q).bearer_auth("nope").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "INVALID_SESSION_ID");
    let resp = http
        .get(api(&f, "/query"))
        .query(&[("q", "SELECT Nope FROM Contact")])
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()[0]["errorCode"], "INVALID_FIELD");
    f.state().set_api_usage(10, Some(10));
    let resp = http.get(api(&f, "/query")).query(&q).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["sforce-limit-info"], "api-usage=10/10");
    assert_eq!(resp.json::<Value>().await.unwrap()[0]["errorCode"], "REQUEST_LIMIT_EXCEEDED");
    assert_eq!(f.state().stats().rate_limited, 1);
}

#[tokio::test]
async fn collections_report_per_record_results_and_deletes_reach_the_delete_log() {
    let f = fake(2).await;
    let http = reqwest::Client::new();
    let body: Value = http
        .post(api(&f, "/composite/sobjects"))
        .bearer_auth(TOKEN)
        .json(&json!({"allOrNone": false, "records": [
            {"attributes": {"type": "Contact"}, "LastName": "Ok"},
            {"attributes": {"type": "Contact"}, "FirstName": "NoLastName"},
        ]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body[0]["success"], true);
    assert_eq!(body[1]["errors"][0]["statusCode"], "REQUIRED_FIELD_MISSING");
    let id = body[0]["id"].as_str().unwrap().to_owned();
    let del: Value = http
        .delete(api(&f, "/composite/sobjects"))
        .query(&[("ids", id.as_str()), ("allOrNone", "false")])
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(del[0]["success"], true);
    // A delete is listed once the window's end (truncated to the minute) has passed it.
    f.state().advance_clock(120_000);
    let now = chrono::DateTime::from_timestamp_millis(f.state().now_ms()).unwrap();
    let start = (now - chrono::Duration::hours(1)).to_rfc3339();
    let end = now.to_rfc3339();
    let deleted: Value = http
        .get(api(&f, "/sobjects/Contact/deleted/"))
        .query(&[("start", start.as_str()), ("end", end.as_str())])
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted["deletedRecords"][0]["id"], id.as_str());
    assert!(deleted["latestDateCovered"].as_str().unwrap().ends_with("+0000"));
}

#[tokio::test]
async fn bulk_query_jobs_complete_after_polling_and_page_csv_by_locator() {
    let f = fake(25).await;
    let http = reqwest::Client::new();
    let job: Value = http
        .post(api(&f, "/jobs/query"))
        .bearer_auth(TOKEN)
        .json(&json!({"operation": "query", "query": "SELECT Id, LastName FROM Contact"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["state"], "UploadComplete");
    let id = job["id"].as_str().unwrap();
    let status = |n: u32| {
        let http = http.clone();
        let url = api(&f, &format!("/jobs/query/{id}"));
        async move {
            let v: Value = http.get(url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
            (n, v["state"].as_str().unwrap().to_owned())
        }
    };
    assert_eq!(status(1).await.1, "InProgress");
    assert_eq!(status(2).await.1, "JobComplete");
    let mut locator: Option<String> = None;
    let mut rows = 0;
    loop {
        let mut q = vec![("maxRecords", "10".to_owned())];
        if let Some(l) = &locator {
            q.push(("locator", l.clone()));
        }
        let resp = http
            .get(api(&f, &format!("/jobs/query/{id}/results")))
            .query(&q)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let next = resp.headers()["sforce-locator"].to_str().unwrap().to_owned();
        let text = resp.text().await.unwrap();
        assert!(text.starts_with("\"Id\",\"LastName\"\n"));
        rows += text.lines().count() - 1;
        if next == "null" {
            break;
        }
        locator = Some(next);
    }
    assert_eq!(rows, 25);
}

#[tokio::test]
async fn the_token_endpoint_refreshes_and_returns_the_instance_url() {
    let f = fake(1).await;
    let issued = f.issue_token();
    let http = reqwest::Client::new();
    let body: Value = http
        .post(format!("{}/services/oauth2/token", f.base_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "fake-sf-client-id"),
            ("client_secret", "fake-sf-client-secret"),
            ("refresh_token", issued.refresh_token.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["instance_url"], f.base_url());
    assert!(body.get("expires_in").is_none());
    assert!(f.state().revoke_refresh_token(&issued.refresh_token));
    let resp = http
        .post(format!("{}/services/oauth2/token", f.base_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "fake-sf-client-id"),
            ("client_secret", "fake-sf-client-secret"),
            ("refresh_token", issued.refresh_token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

#[tokio::test]
async fn notes_take_no_custom_fields_and_titles_are_capped_like_a_real_org() {
    let f = fake(0).await;
    let http = reqwest::Client::new();
    let account = make_id("001", 1);
    let body = json!({"allOrNone": false, "records": [
        {"attributes": {"type": "Note"}, "Title": "t", "ParentId": account, "Syncbridge_Key__c": "k"},
        {"attributes": {"type": "Note"}, "Title": "x".repeat(256), "ParentId": account},
        {"attributes": {"type": "Note"}, "Title": "ok", "ParentId": account},
    ]});
    let res = http.post(api(&f, "/composite/sobjects")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let results: Value = res.json().await.unwrap();
    assert_eq!(results[0]["success"], json!(false));
    assert_eq!(results[0]["errors"][0]["statusCode"], json!("INVALID_FIELD"));
    assert_eq!(results[1]["errors"][0]["statusCode"], json!("STRING_TOO_LONG"));
    assert_eq!(results[2]["success"], json!(true));
    let q = http
        .get(api(&f, "/query"))
        .query(&[("q", "SELECT Id, Syncbridge_Key__c FROM Note")])
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(q.status(), 400, "SOQL cannot select a custom field Note does not have");
}

#[tokio::test]
async fn a_stock_org_gains_the_key_field_from_setup_and_enforces_it_unique() {
    let f = fake(0).await;
    let state = f.state();
    let http = reqwest::Client::new();
    let create = |key: &str| json!({"allOrNone": false, "records": [{"attributes": {"type": "Contact"}, "LastName": "K", KEY_FIELD: key}]});
    let results: Value = http
        .post(api(&f, "/composite/sobjects"))
        .bearer_auth(TOKEN)
        .json(&create("k1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(results[0]["errors"][0]["statusCode"], "INVALID_FIELD", "a stock org has no {KEY_FIELD}");
    state.create_key_field("Contact").unwrap();
    assert!(state.create_key_field("Contact").is_err(), "the field exists once");
    assert!(state.create_key_field("Note").is_err(), "Note takes no custom fields");
    for (key, ok) in [("k1", true), ("K1", false)] {
        let results: Value = http
            .post(api(&f, "/composite/sobjects"))
            .bearer_auth(TOKEN)
            .json(&create(key))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(results[0]["success"], ok, "{results}");
    }
    assert_eq!(state.count_with_key("Contact", "k1"), 1);
    assert!(state.record_by_key("Contact", "k1").is_some());
}

#[tokio::test]
async fn the_tooling_api_creates_a_field_invisible_until_field_permissions_grant_it() {
    let f = fake(0).await;
    let http = reqwest::Client::new();
    let body = json!({"FullName": "Account.Syncbridge_Key__c", "Metadata": {
        "label": "Syncbridge Key", "type": "Text", "length": 80, "externalId": true, "unique": true}});
    let resp = http
        .post(api(&f, "/tooling/sobjects/CustomField"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    assert!(created["id"].as_str().unwrap().starts_with("00N"));
    let resp = http
        .post(api(&f, "/tooling/sobjects/CustomField"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let dup: Value = resp.json().await.unwrap();
    assert_eq!(dup[0]["errorCode"], "DUPLICATE_DEVELOPER_NAME");
    let q = [("q", "SELECT Id, Syncbridge_Key__c FROM Account")];
    let resp = http.get(api(&f, "/query")).query(&q).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 400, "no field-level security yet");
    f.state().grant_field_access("Account", KEY_FIELD, true).unwrap();
    let resp = http.get(api(&f, "/query")).query(&q).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    f.state().set_customize_application(false);
    let body = json!({"FullName": "Opportunity.Other__c", "Metadata": {"label": "Other", "type": "Text", "length": 10}});
    let resp = http
        .post(api(&f, "/tooling/sobjects/CustomField"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.json::<Value>().await.unwrap()[0]["errorCode"], "INSUFFICIENT_ACCESS");
}

#[tokio::test]
async fn the_org_clock_stamps_deletes_and_replication_windows_follow_its_rules() {
    let f = fake(3).await;
    let state = f.state();
    let http = reqwest::Client::new();
    let now = state.now_ms();
    let sixteen_days_ago = now - 16 * 86_400_000;
    assert!(state.delete_at(&make_id("003", 1), sixteen_days_ago));
    assert!(state.delete_at(&make_id("003", 2), now - 3_600_000));
    let window = |start: i64, end: i64| {
        let fmt = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339();
        [("start", fmt(start)), ("end", fmt(end))]
    };
    let get = |q: [(&'static str, String); 2]| {
        let http = http.clone();
        let url = api(&f, "/sobjects/Contact/deleted");
        async move { http.get(url).query(&q).bearer_auth(TOKEN).send().await.unwrap() }
    };
    let ok: Value = get(window(now - 14 * 86_400_000, now)).await.json().await.unwrap();
    let listed: Vec<&str> =
        ok["deletedRecords"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![make_id("003", 2).as_str()]);
    assert!(ok["latestDateCovered"].as_str().unwrap().ends_with(":00.000+0000"));
    let too_old = get(window(sixteen_days_ago, now)).await;
    assert_eq!(too_old.status(), 400);
    assert_eq!(too_old.json::<Value>().await.unwrap()[0]["errorCode"], "INVALID_REPLICATION_DATE");
    let too_short = get(window(now - 60_000, now)).await;
    assert_eq!(too_short.json::<Value>().await.unwrap()[0]["errorCode"], "INVALID_REPLICATION_DATE");
    state.set_now(sixteen_days_ago + 120_000);
    let then: Value = get(window(sixteen_days_ago - 60_000, state.now_ms())).await.json().await.unwrap();
    assert_eq!(then["deletedRecords"][0]["id"], make_id("003", 1));
    let resp = http.get(format!("{}/services/data/", f.base_url())).send().await.unwrap();
    let date = resp.headers()[reqwest::header::DATE].to_str().unwrap().to_owned();
    let expected =
        chrono::DateTime::from_timestamp_millis(sixteen_days_ago).unwrap().format("%d %b %Y").to_string();
    assert!(date.contains(&expected), "{date} follows the org clock");
}

#[tokio::test]
async fn every_served_version_and_trailing_slashes_reach_the_same_routes() {
    let f = fake(2).await;
    let http = reqwest::Client::new();
    for path in ["/services/data/v31.0/query/", "/services/data/v68.0/query", "/services/data/v50.0/query/"] {
        let resp = http
            .get(format!("{}{path}", f.base_url()))
            .query(&[("q", "SELECT COUNT() FROM Contact")])
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let resp = http
        .get(format!("{}/services/data/v69.0/query", f.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()[0]["errorCode"], "NOT_FOUND");
}

#[tokio::test]
async fn the_admin_stats_name_the_limit_answers_limit_exceeded_and_faults_come_from_admin_json() {
    let f = fake(1).await;
    let http = reqwest::Client::new();
    let admin = |p: &str| format!("{}/_admin{p}", f.base_url());
    let resp =
        http.post(admin("/faults")).json(&json!({"route": "query", "kind": "request_limit"})).send().await;
    assert_eq!(resp.unwrap().status(), 204);
    let q = [("q", "SELECT Id FROM Contact")];
    let resp = http.get(api(&f, "/query")).query(&q).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let stats: Value = http.get(admin("/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["limit_exceeded"], 1, "{stats}");
    assert_eq!(stats["routes"]["query"], 1, "{stats}");
    assert!(stats.get("rate_limited").is_none(), "Salesforce's word only: {stats}");
    let resp = http.post(admin("/faults")).body("{").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()[0]["errorCode"], "JSON_PARSER_ERROR");
}
