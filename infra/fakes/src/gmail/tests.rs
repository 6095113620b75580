//! The Gmail fake over HTTP: listing, history with its 404 horizon, label writes and their limits,
//! scopes, quota and Google's error body.

use serde_json::{Value, json};

use super::*;

const TOKEN: &str = "ya29.fake-gmail";

async fn start() -> RunningFake {
    GmailFake::start(FakeConfig::default()).await.expect("fake starts")
}

async fn call(
    fake: &RunningFake,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}/users/me/{path}", fake.api_url()))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(fake: &RunningFake, path: &str) -> (u16, Value) {
    call(fake, reqwest::Method::GET, path, TOKEN, None).await
}

fn mail(subject: &str) -> Mail {
    Mail {
        from: "Jane Doe <jane@globex.example>".into(),
        to: vec![store::OWNER.into()],
        subject: subject.into(),
        body: "Hello".into(),
        ..Mail::default()
    }
}

#[tokio::test]
async fn a_new_account_has_the_system_labels_and_no_mail() {
    let fake = start().await;
    let (status, labels) = get(&fake, "labels").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> =
        labels["labels"].as_array().unwrap().iter().filter_map(|l| l["id"].as_str()).collect();
    for l in ["INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT", "CATEGORY_SOCIAL"]
    {
        assert!(ids.contains(&l), "{l} missing from {ids:?}");
    }
    let (_, list) = get(&fake, "messages").await;
    assert_eq!(list["resultSizeEstimate"], 0);
    assert!(list.get("messages").is_none());
}

#[tokio::test]
async fn listing_pages_newest_first_without_repeats() {
    let fake = GmailFake::start(FakeConfig { messages: 7, ..FakeConfig::default() }).await.unwrap();
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let path = match &token {
            Some(t) => format!("messages?maxResults=3&pageToken={t}"),
            None => "messages?maxResults=3".into(),
        };
        let (status, page) = get(&fake, &path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()),
        );
        match page["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 7);
}

#[tokio::test]
async fn history_lists_changes_after_the_start_id_and_answers_404_past_the_horizon() {
    let fake = start().await;
    let state = fake.state();
    let (_, profile) = get(&fake, "profile").await;
    let start_id = profile["historyId"].as_str().unwrap().to_owned();
    let id = state.deliver(&mail("Hi")).unwrap();
    state.relabel(&id, &["STARRED"], &["UNREAD"]).unwrap();
    let (status, h) = get(&fake, &format!("history?startHistoryId={start_id}")).await;
    assert_eq!(status, 200, "{h}");
    let records = h["history"].as_array().unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["messagesAdded"][0]["message"]["id"], id.as_str());
    assert_eq!(records[1]["labelsAdded"][0]["labelIds"], json!(["STARRED"]));
    assert_eq!(h["historyId"].as_str().unwrap(), state.history_id().to_string());
    let (_, only) = get(&fake, &format!("history?startHistoryId={start_id}&historyTypes=labelRemoved")).await;
    assert_eq!(only["history"].as_array().unwrap().len(), 1);
    state.expire_history();
    let (status, gone) = get(&fake, &format!("history?startHistoryId={start_id}")).await;
    assert_eq!(status, 404);
    assert_eq!(gone["error"]["errors"][0]["reason"], "notFound");
    assert_eq!(gone["error"]["status"], "NOT_FOUND");
}

#[tokio::test]
async fn modify_changes_labels_and_batch_modify_refuses_more_than_1000_ids() {
    let fake = start().await;
    let id = fake.state().deliver(&mail("Hi")).unwrap();
    let (status, m) = call(
        &fake,
        reqwest::Method::POST,
        &format!("messages/{id}/modify"),
        TOKEN,
        Some(json!({"addLabelIds": ["STARRED"], "removeLabelIds": ["UNREAD"]})),
    )
    .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["labelIds"], json!(["INBOX", "STARRED"]));
    let (status, bad) = call(
        &fake,
        reqwest::Method::POST,
        &format!("messages/{id}/modify"),
        TOKEN,
        Some(json!({"addLabelIds": ["Label_99"]})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["errors"][0]["reason"], "invalidArgument");
    let ids: Vec<String> = (0..1001).map(|i| format!("{i:x}")).collect();
    let (status, _) = call(
        &fake,
        reqwest::Method::POST,
        "messages/batchModify",
        TOKEN,
        Some(json!({"ids": ids, "addLabelIds": ["STARRED"]})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(
        &fake,
        reqwest::Method::POST,
        "messages/batchModify",
        TOKEN,
        Some(json!({"ids": [id], "removeLabelIds": ["STARRED"]})),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(fake.state().labels_of(&id).unwrap(), vec!["INBOX"]);
}

#[tokio::test]
async fn a_metadata_token_gets_headers_but_no_body_and_a_readonly_token_cannot_modify() {
    let fake = start().await;
    let state = fake.state();
    let id = state.deliver(&mail("Quarterly numbers")).unwrap();
    let meta = state.issue_token(&[scopes::METADATA.into()], None).access_token;
    let (status, m) = call(
        &fake,
        reqwest::Method::GET,
        &format!("messages/{id}?format=metadata&metadataHeaders=Subject"),
        &meta,
        None,
    )
    .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["payload"]["headers"], json!([{ "name": "Subject", "value": "Quarterly numbers" }]));
    let (status, e) =
        call(&fake, reqwest::Method::GET, &format!("messages/{id}?format=full"), &meta, None).await;
    assert_eq!(status, 403);
    assert_eq!(e["error"]["message"], "Metadata scope doesn't allow format FULL");
    let readonly = state.issue_token(&[scopes::READONLY.into()], None).access_token;
    let (status, e) = call(
        &fake,
        reqwest::Method::POST,
        &format!("messages/{id}/modify"),
        &readonly,
        Some(json!({"addLabelIds": ["STARRED"]})),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(e["error"]["errors"][0]["reason"], "insufficientPermissions");
    let (status, _) = call(&fake, reqwest::Method::GET, "messages", "ya29.unknown", None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_per_user_quota_answers_429_rate_limit_exceeded_once_spent() {
    let fake =
        GmailFake::start(FakeConfig { units_per_minute: Some(12), ..FakeConfig::default() }).await.unwrap();
    assert_eq!(get(&fake, "messages").await.0, 200);
    assert_eq!(get(&fake, "messages").await.0, 200);
    let (status, e) = get(&fake, "messages").await;
    assert_eq!(status, 429);
    assert_eq!(e["error"]["errors"][0]["reason"], "rateLimitExceeded");
    assert!(e["error"]["message"].as_str().unwrap().starts_with("User-rate limit exceeded."));
    assert_eq!(get(&fake, "profile").await.0, 200, "one unit still fits");
    assert_eq!(fake.state().stats().rate_limited, 1);
}

#[tokio::test]
async fn watch_needs_a_pubsub_topic_and_publishes_the_history_id_to_its_subscribers() {
    let fake = start().await;
    let (status, e) =
        call(&fake, reqwest::Method::POST, "watch", TOKEN, Some(json!({"labelIds": ["INBOX"]}))).await;
    assert_eq!(status, 400, "{e}");
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/push",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(v);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let topic = "projects/acme/topics/gmail";
    fake.state().subscribe(topic, &format!("http://{addr}/push"), None);
    let (status, w) =
        call(&fake, reqwest::Method::POST, "watch", TOKEN, Some(json!({"topicName": topic}))).await;
    assert_eq!(status, 200, "{w}");
    assert!(
        w["expiration"].as_str().unwrap().parse::<i64>().unwrap() > chrono::Utc::now().timestamp_millis()
    );
    fake.state().deliver(&mail("Ping")).unwrap();
    let sent = fake.state().publish().await;
    assert_eq!(sent[0].status, Some(204));
    let body = received.lock().unwrap()[0].clone();
    let data =
        base64::engine::general_purpose::STANDARD.decode(body["message"]["data"].as_str().unwrap()).unwrap();
    let data: Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(data["emailAddress"], store::OWNER);
    assert_eq!(data["historyId"], fake.state().history_id());
    assert_eq!(call(&fake, reqwest::Method::POST, "stop", TOKEN, None).await.0, 204);
    assert!(fake.state().publish().await.is_empty(), "no watch, no push");
    server.abort();
}

#[tokio::test]
async fn the_admin_routes_take_faults_by_method_and_count_requests_per_method() {
    let fake = start().await;
    let http = reqwest::Client::new();
    let admin = |p: &str| format!("{}/_admin{p}", fake.base_url());
    let fault = json!({"method": "labels.list", "kind": "rate_limit", "count": 1});
    assert_eq!(http.post(admin("/faults")).json(&fault).send().await.unwrap().status(), 204);
    assert_eq!(get(&fake, "labels").await.0, 429);
    assert_eq!(get(&fake, "labels").await.0, 200);
    let stats: Value = http.get(admin("/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["methods"]["labels.list"], 2, "{stats}");
    assert_eq!(stats["rate_limited"], 1, "{stats}");
    assert!(stats.get("routes").is_none(), "Gmail's stats name methods: {stats}");
    assert_eq!(http.post(admin("/stats/reset")).send().await.unwrap().status(), 204);
    assert_eq!(fake.state().stats().total, 0);
}
