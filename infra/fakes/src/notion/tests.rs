//! The Notion fake over HTTP: the version header, auth and error bodies, databases and data
//! sources, queries with timestamp filters and cursors, page writes with Notion's validation and
//! size limits, trash, block children, minute-rounded stamps and the rate limit.

use serde_json::{Value, json};

use super::*;

const TOKEN: &str = "ntn_fake_notion";

async fn start(crm: bool, deals: usize) -> RunningFake {
    NotionFake::start(FakeConfig { crm, deals, contacts: if crm { 3 } else { 0 }, ..FakeConfig::default() })
        .await
        .expect("fake starts")
}

async fn call(fake: &RunningFake, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", fake.base_url()))
        .bearer_auth(TOKEN)
        .header("Notion-Version", API_VERSION);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn post(fake: &RunningFake, path: &str, body: Value) -> (u16, Value) {
    call(fake, reqwest::Method::POST, path, Some(body)).await
}

async fn patch(fake: &RunningFake, path: &str, body: Value) -> (u16, Value) {
    call(fake, reqwest::Method::PATCH, path, Some(body)).await
}

async fn get(fake: &RunningFake, path: &str) -> (u16, Value) {
    call(fake, reqwest::Method::GET, path, None).await
}

fn title(s: &str) -> Value {
    json!({ "title": [{ "text": { "content": s } }] })
}

fn assert_error(body: &Value, status: u16, code: &str) {
    assert_eq!(body["object"], "error", "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[tokio::test]
async fn requests_without_the_version_header_or_a_known_token_get_notions_error_bodies() {
    let fake = start(false, 0).await;
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/users/me", fake.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_error(&resp.json().await.unwrap(), 400, "missing_version");
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/users/me", fake.base_url()))
        .bearer_auth("ntn_wrong")
        .header("Notion-Version", API_VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_error(&resp.json().await.unwrap(), 401, "unauthorized");
    let (status, me) = get(&fake, "/v1/users/me").await;
    assert_eq!(status, 200);
    assert_eq!(me["type"], "bot");
    let (status, body) = get(&fake, "/v1/nothing/here").await;
    assert_eq!(status, 400);
    assert_error(&body, 400, "invalid_request_url");
}

#[tokio::test]
async fn a_database_created_through_the_api_lists_its_data_source_and_schema() {
    let fake = start(false, 0).await;
    let root = fake.state().root_page();
    let (status, db) = post(
        &fake,
        "/v1/databases",
        json!({
            "parent": { "type": "page_id", "page_id": root },
            "title": [{ "text": { "content": "Deals" } }],
            "initial_data_source": { "properties": { "Name": { "title": {} }, "Value": { "number": {} } } },
        }),
    )
    .await;
    assert_eq!(status, 200, "{db}");
    let ds = db["data_sources"][0]["id"].as_str().expect("a data source").to_owned();
    let (_, again) =
        get(&fake, &format!("/v1/databases/{}", db["id"].as_str().unwrap().replace('-', ""))).await;
    assert_eq!(again["data_sources"][0]["id"], ds.as_str(), "ids without dashes resolve too");
    let (status, source) = get(&fake, &format!("/v1/data_sources/{ds}")).await;
    assert_eq!(status, 200);
    assert_eq!(source["properties"]["Name"]["type"], "title");
    assert_eq!(source["properties"]["Value"]["number"]["format"], "number");
    let (status, body) = post(
        &fake,
        "/v1/databases",
        json!({ "parent": { "page_id": root }, "initial_data_source": { "properties": { "Value": { "number": {} } } } }),
    )
    .await;
    assert_eq!(status, 400);
    assert_error(&body, 400, "validation_error");
}

#[tokio::test]
async fn pages_are_written_by_property_type_and_bad_values_are_validation_errors() {
    let fake = start(true, 0).await;
    let crm = fake.state().crm().unwrap();
    let (status, page) = post(
        &fake,
        "/v1/pages",
        json!({
            "parent": { "data_source_id": crm.deals_data_source },
            "properties": {
                "Name": title("Acme renewal"),
                "Stage": { "status": { "name": "Proposal" } },
                "Value": { "number": 1200.5 },
                "Source": { "select": { "name": "Webinar" } },
                "Close date": { "date": { "start": "2027-01-31" } },
                "Owner": { "people": [{ "id": fake.state().person_id }] },
            },
        }),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["properties"]["Name"]["title"][0]["plain_text"], "Acme renewal");
    assert_eq!(page["properties"]["Stage"]["status"]["name"], "Proposal");
    assert_eq!(page["properties"]["Source"]["select"]["name"], "Webinar", "a new select option is created");
    assert_eq!(page["properties"]["Contact"]["relation"], json!([]));
    assert_eq!(page["parent"]["data_source_id"], crm.deals_data_source.as_str());
    let stamp = page["last_edited_time"].as_str().unwrap();
    assert!(stamp.ends_with(":00.000Z"), "rounded to the minute: {stamp}");

    let id = page["id"].as_str().unwrap();
    for (props, why) in [
        (json!({ "Stage": { "status": { "name": "Nope" } } }), "an unknown status"),
        (json!({ "Value": { "number": "12" } }), "a string for a number"),
        (json!({ "Missing": { "number": 1 } }), "an unknown property"),
        (json!({ "Name": title(&"x".repeat(2001)) }), "text past 2000 characters"),
        (json!({ "Value": { "rich_text": [] } }), "the wrong type's value"),
    ] {
        let (status, body) = patch(&fake, &format!("/v1/pages/{id}"), json!({ "properties": props })).await;
        assert_eq!(status, 400, "{why}: {body}");
        assert_error(&body, 400, "validation_error");
    }
    let many: Vec<Value> = (0..101).map(|_| json!({ "text": { "content": "a" } })).collect();
    let (status, body) =
        patch(&fake, &format!("/v1/pages/{id}"), json!({ "properties": { "Name": { "title": many } } }))
            .await;
    assert_eq!(status, 400, "more than 100 rich text elements: {body}");
    let (status, body) = get(&fake, "/v1/pages/00000000-0000-4000-8000-000000000000").await;
    assert_eq!(status, 404);
    assert_error(&body, 404, "object_not_found");
}

#[tokio::test]
async fn queries_filter_on_last_edited_time_page_with_cursors_and_separate_trashed_pages() {
    let fake = start(true, 250).await;
    let state = fake.state();
    let crm = state.crm().unwrap();
    let path = format!("/v1/data_sources/{}/query", crm.deals_data_source);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (status, body) = post(
            &fake,
            &path,
            json!({ "page_size": 100, "start_cursor": cursor, "sorts": [{ "timestamp": "last_edited_time", "direction": "ascending" }] }),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        seen.extend(body["results"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()));
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 250);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 250, "no page twice");

    state.advance_clock(chrono::Duration::minutes(5));
    let since = store::iso(store::to_minute(state.now()));
    let edited = state.edit_page(&seen[3], json!({ "Value": { "number": 7 } })).unwrap();
    assert_eq!(edited["last_edited_time"], since.as_str());
    state.trash_page(&seen[4], true).unwrap();
    let filter = json!({ "timestamp": "last_edited_time", "last_edited_time": { "on_or_after": since } });
    let (_, live) = post(&fake, &path, json!({ "filter": filter })).await;
    let ids: Vec<&str> =
        live["results"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![seen[3].as_str()]);
    let (_, trashed) = post(&fake, &path, json!({ "filter": filter, "in_trash": true })).await;
    assert_eq!(trashed["results"][0]["id"], seen[4].as_str());
    assert_eq!(trashed["results"][0]["in_trash"], true);

    let (status, body) = post(&fake, &path, json!({ "page_size": 101 })).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(&fake, &path, json!({ "start_cursor": "not-a-cursor" })).await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, 400, "validation_error");
    let (status, body) =
        post(&fake, &path, json!({ "filter": { "property": "Value", "rich_text": { "equals": "x" } } }))
            .await;
    assert_eq!(status, 400, "a filter type that does not match the property: {body}");
}

#[tokio::test]
async fn blocks_append_up_to_a_hundred_and_list_in_order_and_the_page_counts_as_edited() {
    let fake = start(true, 1).await;
    let state = fake.state();
    let crm = state.crm().unwrap();
    let page = state.page_ids(&crm.deals_data_source)[0].clone();
    state.advance_clock(chrono::Duration::minutes(3));
    let para = |s: &str| json!({ "type": "paragraph", "paragraph": { "rich_text": [{ "text": { "content": s } }] } });
    let (status, body) = patch(
        &fake,
        &format!("/v1/blocks/{page}/children"),
        json!({ "children": [para("one"), para("two")] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 2);
    assert_eq!(body["results"][0]["parent"]["page_id"], page.as_str());
    let (_, listed) = get(&fake, &format!("/v1/blocks/{page}/children?page_size=1")).await;
    assert_eq!(listed["results"][0]["paragraph"]["rich_text"][0]["plain_text"], "one");
    let next = listed["next_cursor"].as_str().unwrap();
    let (_, rest) = get(&fake, &format!("/v1/blocks/{page}/children?start_cursor={next}")).await;
    assert_eq!(rest["results"][0]["paragraph"]["rich_text"][0]["plain_text"], "two");
    assert_eq!(rest["has_more"], false);
    let edited = state.page(&page).unwrap();
    assert_eq!(edited["last_edited_time"], store::iso(store::to_minute(state.now())).as_str());
    let too_many: Vec<Value> = (0..101).map(|i| para(&i.to_string())).collect();
    let (status, body) =
        patch(&fake, &format!("/v1/blocks/{page}/children"), json!({ "children": too_many })).await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, 400, "validation_error");
}

#[tokio::test]
async fn the_rate_limit_answers_429_rate_limited_with_retry_after_when_switched_on() {
    let fake = start(false, 0).await;
    let state = fake.state();
    state.set_rate_limits(true);
    let mut limited = None;
    for _ in 0..(BURST as usize + 5) {
        let resp = reqwest::Client::new()
            .get(format!("{}/v1/users/me", fake.base_url()))
            .bearer_auth(TOKEN)
            .header("Notion-Version", API_VERSION)
            .send()
            .await
            .unwrap();
        if resp.status().as_u16() == 429 {
            limited = Some(resp);
            break;
        }
    }
    let resp = limited.expect("a burst past the bucket is limited");
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_error(&resp.json().await.unwrap(), 429, "rate_limited");
    assert!(state.stats().rate_limited >= 1);
    state.set_rate_limits(false);
    let (status, _) = get(&fake, "/v1/users/me").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn injected_faults_answer_notions_codes_once() {
    let fake = start(false, 0).await;
    fake.state().inject_fault(Fault {
        route: Route::Me,
        kind: FaultKind::ServerError { status: Some(503) },
        count: 1,
    });
    let (status, body) = get(&fake, "/v1/users/me").await;
    assert_eq!(status, 503);
    assert_error(&body, 503, "service_unavailable");
    let (status, _) = get(&fake, "/v1/users/me").await;
    assert_eq!(status, 200);
}

/// `POST /v1/oauth/token` with the integration's Basic credentials.
async fn oauth_token(fake: &RunningFake, secret: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/oauth/token", fake.base_url()))
        .basic_auth("fake-notion-client-id", Some(secret))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The code the authorize endpoint redirects with (a program consents at once).
async fn authorize(fake: &RunningFake, query: &str) -> (u16, Option<String>) {
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/v1/oauth/authorize?{query}", fake.base_url()))
        .send()
        .await
        .expect("request");
    let code = resp
        .headers()
        .get("location")
        .and_then(|l| url::Url::parse(l.to_str().ok()?).ok())
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()));
    (resp.status().as_u16(), code)
}

#[tokio::test]
async fn a_public_integration_exchanges_a_code_once_for_a_workspace_token_and_refreshes_it() {
    let fake = start(false, 0).await;
    let query = "client_id=fake-notion-client-id&response_type=code&owner=user&redirect_uri=http%3A%2F%2Fapp.test%2Fcb&state=st";
    let (status, code) = authorize(&fake, &query.replace("&owner=user", "")).await;
    assert_eq!((status, code), (400, None), "owner=user is required");
    let (status, code) = authorize(&fake, query).await;
    assert_eq!(status, 302);
    let code = code.expect("a code");

    let exchange =
        json!({ "grant_type": "authorization_code", "code": code, "redirect_uri": "http://app.test/cb" });
    let (status, body) = oauth_token(&fake, "wrong-secret", exchange.clone()).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
    let (status, grant) = oauth_token(&fake, "fake-notion-client-secret", exchange.clone()).await;
    assert_eq!(status, 200, "{grant}");
    assert_eq!(grant["workspace_id"], fake.state().workspace_id.as_str());
    assert_eq!(
        (grant["token_type"].as_str(), grant["bot_id"].as_str()),
        (Some("bearer"), Some(fake.state().bot_id.as_str()))
    );
    let (status, again) = oauth_token(&fake, "fake-notion-client-secret", exchange).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant")),
        "a code is single use: {again}"
    );

    // The access token opens the API; a refresh answers a new pair and spends the old refresh token.
    let me = |token: String| {
        let url = format!("{}/v1/users/me", fake.base_url());
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .header("Notion-Version", API_VERSION)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(me(grant["access_token"].as_str().unwrap().to_owned()).await, 200);
    fake.state().expire_access_tokens();
    assert_eq!(me(grant["access_token"].as_str().unwrap().to_owned()).await, 401);
    let refresh = json!({ "grant_type": "refresh_token", "refresh_token": grant["refresh_token"] });
    let (status, fresh) = oauth_token(&fake, "fake-notion-client-secret", refresh.clone()).await;
    assert_eq!(status, 200, "{fresh}");
    assert_ne!(fresh["refresh_token"], grant["refresh_token"]);
    assert_eq!(me(fresh["access_token"].as_str().unwrap().to_owned()).await, 200);
    let (status, spent) = oauth_token(&fake, "fake-notion-client-secret", refresh).await;
    assert_eq!((status, spent["error"].as_str()), (400, Some("invalid_grant")), "{spent}");
    let (status, other) =
        oauth_token(&fake, "fake-notion-client-secret", json!({ "grant_type": "password" })).await;
    assert_eq!((status, other["error"].as_str()), (400, Some("unsupported_grant_type")));
}

#[tokio::test]
async fn a_query_stops_at_ten_thousand_results_and_says_so_on_every_page_while_a_narrower_one_does_not() {
    let fake = start(true, store::QUERY_RESULT_CAP + 50).await;
    let ds = fake.state().crm().unwrap().deals_data_source;
    let (mut read, mut cursor, mut pages) = (0, None::<String>, 0);
    loop {
        let mut body = json!({ "page_size": 100 });
        if let Some(c) = &cursor {
            body["start_cursor"] = json!(c);
        }
        let (status, listed) = post(&fake, &format!("/v1/data_sources/{ds}/query"), body).await;
        assert_eq!(status, 200, "{listed}");
        assert_eq!(listed["request_status"]["type"], "incomplete", "page {pages}");
        assert_eq!(listed["request_status"]["incomplete_reason"], "query_result_limit_reached");
        read += listed["results"].as_array().unwrap().len();
        pages += 1;
        match listed["next_cursor"].as_str() {
            Some(c) if listed["has_more"] == true => cursor = Some(c.to_owned()),
            _ => break,
        }
    }
    assert_eq!((read, pages), (store::QUERY_RESULT_CAP, 100), "pagination stops at the cap");
    // A query matching fewer pages than the cap is complete.
    let narrow =
        json!({ "page_size": 10, "filter": { "property": "Value", "number": { "less_than": 5000 } } });
    let (status, listed) = post(&fake, &format!("/v1/data_sources/{ds}/query"), narrow).await;
    assert_eq!(status, 200, "{listed}");
    assert!(listed.get("request_status").is_none(), "{}", listed["request_status"]);
}

#[tokio::test]
async fn a_revoked_token_and_its_grants_refresh_token_stop_working() {
    let fake = start(false, 0).await;
    let grant = fake.state().grant();
    let revoke = |token: Value, version: bool| {
        let mut req = reqwest::Client::new()
            .post(format!("{}/v1/oauth/revoke", fake.base_url()))
            .basic_auth("fake-notion-client-id", Some("fake-notion-client-secret"))
            .json(&json!({ "token": token }));
        if version {
            req = req.header("Notion-Version", API_VERSION);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(revoke(grant["access_token"].clone(), false).await, 400, "Notion-Version is required");
    let token = grant["access_token"].as_str().unwrap();
    let me = reqwest::Client::new()
        .get(format!("{}/v1/users/me", fake.base_url()))
        .bearer_auth(token)
        .header("Notion-Version", API_VERSION);
    assert_eq!(me.try_clone().unwrap().send().await.unwrap().status().as_u16(), 200);
    assert_eq!(revoke(grant["access_token"].clone(), true).await, 200);
    assert_eq!(me.send().await.unwrap().status().as_u16(), 401);
    let refresh = json!({ "grant_type": "refresh_token", "refresh_token": grant["refresh_token"] });
    let (status, body) = oauth_token(&fake, "fake-notion-client-secret", refresh).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
}
