//! The Drive fake over HTTP: listing with queries, fields and pages; the change feed; scopes,
//! rate limits and Google's error bodies; push channels.

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::*;

const TOKEN: &str = "ya29.fake-drive";

async fn start(files: usize) -> RunningFake {
    DriveFake::start(FakeConfig { files, ..FakeConfig::default() }).await.expect("fake starts")
}

async fn get(fake: &RunningFake, path: &str, query: &[(&str, &str)], token: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", fake.api_url()))
        .bearer_auth(token)
        .query(query)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn reason(body: &Value) -> &str {
    body["error"]["errors"][0]["reason"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_stock_drive_lists_nothing_but_has_its_root_folder() {
    let fake = start(0).await;
    let (status, body) = get(&fake, "/files", &[], TOKEN).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["files"], json!([]));
    let (status, root) = get(&fake, "/files/root", &[("fields", "id,name,mimeType")], TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(root, json!({ "id": ROOT_ID, "name": "My Drive", "mimeType": FOLDER_MIME }));
}

#[tokio::test]
async fn a_listing_pages_by_page_size_with_the_selected_fields_and_a_query() {
    let fake = start(25).await;
    let fields = "nextPageToken,files(id,name,trashed,permissions(emailAddress,role))";
    let (mut seen, mut token, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let mut q = vec![("pageSize", "7"), ("fields", fields), ("q", "trashed = false")];
        if let Some(t) = &token {
            q.push(("pageToken", t));
        }
        let (status, body) = get(&fake, "/files", &q, TOKEN).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        for f in body["files"].as_array().expect("files") {
            assert_eq!(f.as_object().map(|o| o.len()), Some(4), "only the selected fields: {f}");
            seen.push(f["id"].as_str().expect("id").to_owned());
        }
        match body["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 4, "25 files, 7 a page");
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique.len(), 25);
    let (_, folders) =
        get(&fake, "/files", &[("q", "mimeType = 'application/vnd.google-apps.folder'")], TOKEN).await;
    assert_eq!(folders["files"].as_array().map(Vec::len), Some(5), "a folder per company");
    let (_, shared) = get(&fake, "/files", &[("q", "'jane.doe@globex.example' in readers")], TOKEN).await;
    assert!(!shared["files"].as_array().expect("files").is_empty());
}

#[tokio::test]
async fn bad_queries_fields_and_page_tokens_are_400s_in_googles_shape() {
    let fake = start(3).await;
    let (status, body) = get(&fake, "/files", &[("q", "title = 'x'")], TOKEN).await;
    assert_eq!((status, reason(&body)), (400, "invalid"));
    assert_eq!(body["error"]["errors"][0]["location"], "q");
    assert_eq!(body["error"]["code"], 400);
    let (status, body) = get(&fake, "/files", &[("fields", "files(title)")], TOKEN).await;
    assert_eq!((status, reason(&body)), (400, "invalidParameter"));
    let (status, body) = get(&fake, "/files", &[("pageToken", "nope")], TOKEN).await;
    assert_eq!((status, reason(&body)), (400, "invalid"));
    let (status, body) = get(&fake, "/changes", &[], TOKEN).await;
    assert_eq!((status, reason(&body)), (400, "required"));
    let (status, body) = get(&fake, "/files/1nothing", &[], TOKEN).await;
    assert_eq!((status, reason(&body)), (404, "notFound"));
    let (status, body) = get(&fake, "/about", &[], TOKEN).await;
    assert_eq!((status, reason(&body)), (400, "required"), "about.get needs fields");
}

#[tokio::test]
async fn the_change_feed_delivers_each_changed_file_once_with_trash_and_removals_then_a_new_start_token() {
    let fake = start(10).await;
    let (_, start_token) = get(&fake, "/changes/startPageToken", &[], TOKEN).await;
    let start_token = start_token["startPageToken"].as_str().expect("token").to_owned();
    let state = fake.state();
    let ids = state.live_file_ids();
    state.rename(&ids[6], "Renamed").expect("rename");
    state.rename(&ids[6], "Renamed again").expect("rename");
    state.trash(&ids[7], true).expect("trash");
    state.delete(&ids[8]).expect("delete");
    state.share(&ids[9], "li@umbrella.example", "commenter").expect("share");
    let q = [("pageToken", start_token.as_str()), ("pageSize", "3"), ("fields", "*")];
    let (status, first) = get(&fake, "/changes", &q, TOKEN).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["changes"].as_array().map(Vec::len), Some(3));
    assert!(first.get("newStartPageToken").is_none());
    let next = first["nextPageToken"].as_str().expect("next page");
    let (_, second) = get(&fake, "/changes", &[("pageToken", next), ("fields", "*")], TOKEN).await;
    let all: Vec<Value> = first["changes"]
        .as_array()
        .into_iter()
        .chain(second["changes"].as_array())
        .flatten()
        .cloned()
        .collect();
    let order: Vec<&str> = all.iter().filter_map(|c| c["fileId"].as_str()).collect();
    assert_eq!(order, vec![ids[6].as_str(), ids[7].as_str(), ids[8].as_str(), ids[9].as_str()]);
    assert_eq!(all[0]["file"]["name"], "Renamed again");
    assert_eq!(all[1]["file"]["trashed"], true);
    assert_eq!(all[2]["removed"], true);
    assert!(all[2].get("file").is_none());
    let new_start = second["newStartPageToken"].as_str().expect("new start token");
    let (_, quiet) = get(&fake, "/changes", &[("pageToken", new_start)], TOKEN).await;
    assert_eq!(quiet["changes"], json!([]));
    let (_, no_removed) =
        get(&fake, "/changes", &[("pageToken", start_token.as_str()), ("includeRemoved", "false")], TOKEN)
            .await;
    assert_eq!(no_removed["changes"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn a_token_without_a_drive_scope_is_403_and_the_rate_limit_answers_user_rate_limit_exceeded() {
    let fake = start(1).await;
    let state = fake.state();
    let calendar_only =
        state.issue_token(None, Some(vec!["https://www.googleapis.com/auth/calendar.readonly".into()]));
    let (status, body) = get(&fake, "/files", &[], &calendar_only.access_token).await;
    assert_eq!((status, reason(&body)), (403, "insufficientPermissions"));
    let metadata = state.issue_token(None, None);
    let (status, _) = get(&fake, "/files", &[], &metadata.access_token).await;
    assert_eq!(status, 200, "drive.metadata.readonly reads metadata");
    let create = reqwest::Client::new()
        .post(format!("{}/files", fake.api_url()))
        .bearer_auth(&metadata.access_token)
        .json(&json!({ "name": "x" }))
        .send()
        .await
        .expect("request");
    assert_eq!(create.status().as_u16(), 403, "but cannot create");
    state.set_rate_limit(Some(RateLimit { requests: 2, window_secs: 60, status: 403 }));
    assert_eq!(get(&fake, "/files", &[], TOKEN).await.0, 200);
    assert_eq!(get(&fake, "/files", &[], TOKEN).await.0, 200);
    let (status, body) = get(&fake, "/files", &[], TOKEN).await;
    assert_eq!((status, reason(&body)), (403, "userRateLimitExceeded"));
    assert_eq!(body["error"]["errors"][0]["domain"], "usageLimits");
    assert_eq!(state.stats().rate_limited, 1);
    let (status, _) = get(&fake, "/files", &[], "ya29.unknown").await;
    assert_eq!(status, 401);
}

type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

async fn receiver() -> (String, Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let sink = sink.clone();
            async move {
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                sink.lock().expect("lock").push((
                    h("X-Goog-Channel-ID"),
                    h("X-Goog-Resource-State"),
                    h("X-Goog-Channel-Token"),
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
    (format!("http://{addr}/hook"), seen, task)
}

#[tokio::test]
async fn a_changes_channel_gets_a_sync_then_a_change_per_edit_until_it_is_stopped() {
    let fake = start(2).await;
    let (address, seen, _task) = receiver().await;
    let (_, start_token) = get(&fake, "/changes/startPageToken", &[], TOKEN).await;
    let http = reqwest::Client::new();
    let watch = http
        .post(format!("{}/changes/watch", fake.api_url()))
        .query(&[("pageToken", start_token["startPageToken"].as_str().unwrap_or("1"))])
        .bearer_auth(TOKEN)
        .json(&json!({ "id": "chan-1", "type": "web_hook", "address": address, "token": "secret-1" }))
        .send()
        .await
        .expect("watch");
    assert_eq!(watch.status().as_u16(), 200);
    let channel: Value = watch.json().await.expect("json");
    let expires = channel["expiration"].as_str().and_then(|e| e.parse::<i64>().ok()).expect("expiration");
    let hour = chrono::Utc::now().timestamp_millis() + 3_600_000;
    assert!((hour - 5_000..=hour).contains(&expires), "an hour by default");
    let state = fake.state();
    let id = state.live_file_ids()[1].clone();
    let resp = http
        .patch(format!("{}/_admin/files/{id}", fake.base_url()))
        .json(&json!({ "name": "N" }))
        .send()
        .await;
    assert_eq!(resp.expect("edit").status().as_u16(), 200);
    for _ in 0..50 {
        if seen.lock().expect("lock").len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let got = seen.lock().expect("lock").clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|(c, _, t)| c == "chan-1" && t == "secret-1"));
    let mut states: Vec<&str> = got.iter().map(|(_, s, _)| s.as_str()).collect();
    states.sort();
    assert_eq!(states, vec!["change", "sync"]);
    let stop = |rid: Value| {
        http.post(format!("{}/channels/stop", fake.api_url()))
            .bearer_auth(TOKEN)
            .json(&json!({ "id": "chan-1", "resourceId": rid }))
            .send()
    };
    assert_eq!(stop(channel["resourceId"].clone()).await.expect("stop").status().as_u16(), 204);
    assert_eq!(stop(channel["resourceId"].clone()).await.expect("stop").status().as_u16(), 404);
    assert!(state.active_channels().is_empty());
}
