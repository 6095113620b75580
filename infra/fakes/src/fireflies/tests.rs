//! The Fireflies fake over HTTP: keys and error bodies, GraphQL validation, the documented
//! argument limits, paging and date windows, processing and deletes, the rate limit, the signed
//! webhook, and the schema file we hold.

use serde_json::{Value, json};

use super::*;

async fn start() -> RunningFake {
    FirefliesFake::start(FakeConfig::default()).await.expect("fake starts")
}

async fn gql_with(fake: &RunningFake, key: &str, query: &str, variables: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/graphql", fake.base_url()))
        .bearer_auth(key)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn gql(fake: &RunningFake, query: &str, variables: Value) -> (u16, Value) {
    gql_with(fake, DEFAULT_API_KEY, query, variables).await
}

fn assert_error(body: &Value, code: &str, status: u16) {
    let e = &body["errors"][0];
    assert_eq!(e["code"], code, "{body}");
    assert_eq!(e["extensions"]["code"], code, "{body}");
    assert_eq!(e["extensions"]["status"], status, "{body}");
    assert_eq!(e["friendly"], true, "{body}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

const LIST: &str = "query L($limit: Int, $skip: Int, $fromDate: DateTime, $toDate: DateTime) {
  transcripts(limit: $limit, skip: $skip, fromDate: $fromDate, toDate: $toDate) { id title date } }";

fn ids(body: &Value) -> Vec<String> {
    body["data"]["transcripts"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_new_account_has_its_owner_and_no_transcripts() {
    let fake = start().await;
    let (status, body) = gql(&fake, "{ user { user_id email name } transcripts { id } }", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["user"]["email"], "ada@acme.example");
    assert_eq!(body["data"]["transcripts"], json!([]));
}

#[tokio::test]
async fn a_wrong_or_missing_key_is_a_401_auth_failed_in_fireflies_shape() {
    let fake = start().await;
    let (status, body) = gql_with(&fake, "nope", "{ user { email } }", json!({})).await;
    assert_eq!(status, 401);
    assert_error(&body, "auth_failed", 401);
    assert_eq!(body["data"], Value::Null);
}

#[tokio::test]
async fn a_query_naming_an_unknown_field_fails_graphql_validation_with_400() {
    let fake = start().await;
    let (status, body) = gql(&fake, "{ transcripts { id no_such_field } }", json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, "GRAPHQL_VALIDATION_FAILED", 400);
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("no_such_field"), "{body}");
}

#[tokio::test]
async fn limit_above_fifty_and_a_bad_date_are_invalid_arguments_naming_the_field() {
    let fake = start().await;
    let (status, body) = gql(&fake, LIST, json!({ "limit": 51 })).await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, "invalid_arguments", 400);
    assert_eq!(body["errors"][0]["extensions"]["metadata"]["fields"][0]["name"], "limit");
    let (_, body) = gql(&fake, LIST, json!({ "fromDate": "yesterday" })).await;
    assert_error(&body, "invalid_arguments", 400);
    assert_eq!(body["errors"][0]["extensions"]["metadata"]["fields"][0]["constraints"][0]["type"], "isDate");
    let (_, body) =
        gql(&fake, "{ transcripts(mine: true, organizer_email: \"a@b.c\") { id } }", json!({})).await;
    assert_error(&body, "invalid_arguments", 400);
    let (status, body) = gql(&fake, LIST, json!({ "limit": 50 })).await;
    assert_eq!(status, 200, "fifty is allowed: {body}");
}

#[tokio::test]
async fn transcripts_come_newest_first_paged_by_skip_and_windowed_by_date() {
    let fake = start().await;
    let seeded = fake.state().seed(5); // two hours apart, Meeting 1 newest
    let (_, body) = gql(&fake, LIST, json!({ "limit": 2 })).await;
    assert_eq!(ids(&body), seeded[..2]);
    let (_, body) = gql(&fake, LIST, json!({ "limit": 2, "skip": 4 })).await;
    assert_eq!(ids(&body), seeded[4..]);
    let now = fake.state().now();
    let from = (now - chrono::Duration::hours(7)).to_rfc3339();
    let to = (now - chrono::Duration::hours(3)).to_rfc3339();
    let (_, body) = gql(&fake, LIST, json!({ "fromDate": from, "toDate": to })).await;
    assert_eq!(ids(&body), seeded[1..3], "meetings 2 and 3 (4 and 6 hours ago)");
    let date = body["data"]["transcripts"][0]["date"].as_f64().unwrap();
    assert!((date - (now - chrono::Duration::hours(4)).timestamp_millis() as f64).abs() < 5_000.0);
}

#[tokio::test]
async fn a_meeting_in_processing_is_invisible_until_completed_and_a_deleted_one_is_gone() {
    let fake = start().await;
    let state = fake.state();
    let id = state.add(NewTranscript {
        title: "Late".into(),
        date: state.now() - chrono::Duration::hours(30),
        processing: true,
        ..NewTranscript::default()
    });
    let one = "query T($id: String!) { transcript(id: $id) { id title summary { action_items } } }";
    let (status, body) = gql(&fake, one, json!({ "id": id })).await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "object_not_found", 404);
    assert!(ids(&gql(&fake, LIST, json!({})).await.1).is_empty());
    assert!(state.complete(&id));
    let (status, body) = gql(&fake, one, json!({ "id": id })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["transcript"]["title"], "Late");
    assert!(state.delete(&id));
    assert!(ids(&gql(&fake, LIST, json!({})).await.1).is_empty());
}

#[tokio::test]
async fn past_the_rate_limit_requests_get_429_too_many_requests_with_retry_after() {
    let fake = start().await;
    fake.state().set_rate_limit(Some((3, chrono::Duration::minutes(1))));
    for _ in 0..3 {
        assert_eq!(gql(&fake, "{ user { email } }", json!({})).await.0, 200);
    }
    let (status, body) = gql(&fake, "{ user { email } }", json!({})).await;
    assert_eq!(status, 429);
    assert_error(&body, "too_many_requests", 429);
    let retry = body["errors"][0]["extensions"]["metadata"]["retryAfter"].as_i64().unwrap();
    assert!(retry > fake.state().now().timestamp_millis(), "a time to come back: {retry}");
    assert_eq!(fake.state().stats().rate_limited, 1);
    fake.state().advance_clock(chrono::Duration::minutes(1));
    assert_eq!(gql(&fake, "{ user { email } }", json!({})).await.0, 200, "a new window");
}

#[tokio::test]
async fn completing_a_meeting_sends_a_webhook_signed_with_the_secret() {
    use axum::routing::post;
    use std::sync::Mutex;
    type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let seen = seen2.clone();
            async move {
                let sig =
                    headers.get("x-hub-signature").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                seen.lock().unwrap().push((sig, body.to_vec()));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let fake = start().await;
    let state = fake.state();
    state.set_webhook(Some(WebhookTarget {
        url: format!("http://{addr}/hook"),
        secret: "0123456789abcdef".into(),
    }));
    let id = state.add(NewTranscript {
        title: "Call".into(),
        date: state.now(),
        processing: true,
        ..NewTranscript::default()
    });
    let resp = reqwest::Client::new()
        .post(format!("{}/_admin/transcripts/{id}/complete", fake.base_url()))
        .send()
        .await
        .unwrap();
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["webhook_status"], 200, "{answer}");
    let (sig, body) = seen.lock().unwrap()[0].clone();
    assert_eq!(sig, sign("0123456789abcdef", &body));
    assert_ne!(sig, sign("another-secret-16", &body));
    let payload: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        payload,
        json!({ "meetingId": id, "eventType": TRANSCRIPTION_COMPLETED, "clientReferenceId": null })
    );
    server.abort();
}

#[test]
fn the_schema_file_we_hold_describes_the_fakes_schema() {
    let held = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/specs/fireflies.graphql"))
        .expect("infra/fakes/specs/fireflies.graphql");
    // Type definitions only: no comments, descriptions, built-in directives or schema block.
    let lines = |s: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut in_description = false;
        for l in s.lines().map(str::trim) {
            if l.starts_with("\"\"\"") {
                in_description = !(in_description || l.len() > 3 && l.ends_with("\"\"\""));
                continue;
            }
            if in_description || l.is_empty() || l.starts_with('#') || l.starts_with("directive") {
                continue;
            }
            if l.starts_with("schema") {
                break;
            }
            out.push(l.to_owned());
        }
        out
    };
    assert_eq!(lines(&sdl()), lines(&held));
}

#[tokio::test]
async fn the_shared_admin_routes_inject_faults_and_report_counts_with_the_fields_queried() {
    let fake = start().await;
    let http = reqwest::Client::new();
    let injected = http
        .post(format!("{}/_admin/faults", fake.base_url()))
        .json(&json!({ "route": "graphql", "kind": "rate_limit", "count": 1 }))
        .send()
        .await
        .unwrap();
    assert!(injected.status().is_success(), "{}", injected.status());
    let (status, body) = gql(&fake, "{ user { email } }", json!({})).await;
    assert_eq!(status, 429);
    assert_error(&body, "too_many_requests", 429);
    assert_eq!(gql(&fake, "{ user { email } transcripts { id } }", json!({})).await.0, 200);
    let stats: Value =
        http.get(format!("{}/_admin/stats", fake.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["total"], 2, "{stats}");
    assert_eq!(stats["rate_limited"], 1, "{stats}");
    assert_eq!(stats["fields"], json!({ "transcripts": 1, "user": 1 }), "{stats}");
}

#[tokio::test]
async fn a_meeting_names_its_calendar_event_and_the_calendar_it_came_from() {
    let fake = start().await;
    let state = fake.state();
    let date = state.now() - chrono::Duration::hours(2);
    let outlook = state.add(NewTranscript {
        title: "Outlook".into(),
        date,
        calendar_id: Some("040000008200E00074C5B7101A82E008".into()),
        calendar_type: Some("outlook".into()),
        ..NewTranscript::default()
    });
    let google = state.add(NewTranscript {
        title: "Google".into(),
        date,
        calendar_id: Some("gcal42".into()),
        ..NewTranscript::default()
    });
    let adhoc = state.add(NewTranscript { title: "Ad hoc".into(), date, ..NewTranscript::default() });
    let one = "query T($id: String!) { transcript(id: $id) { calendar_id cal_id calendar_type } }";
    let served = |body: serde_json::Value| body["data"]["transcript"].clone();
    let (_, body) = gql(&fake, one, json!({ "id": outlook })).await;
    assert_eq!(
        served(body),
        json!({ "calendar_id": "040000008200E00074C5B7101A82E008", "cal_id": "040000008200E00074C5B7101A82E008", "calendar_type": "outlook" })
    );
    let (_, body) = gql(&fake, one, json!({ "id": google })).await;
    assert_eq!(
        served(body),
        json!({ "calendar_id": "gcal42", "cal_id": "gcal42", "calendar_type": "google" })
    );
    let (_, body) = gql(&fake, one, json!({ "id": adhoc })).await;
    assert_eq!(served(body), json!({ "calendar_id": null, "cal_id": null, "calendar_type": null }));
}
