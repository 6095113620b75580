//! The Google fake over HTTP: listing and sync tokens, writes with etags, faults, OAuth, push
//! channels, and its responses checked against Google's discovery document.

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use chrono::{Duration as ChronoDuration, Utc};
use serde_json::{Value, json};

use super::*;

const TOKEN: &str = "ya29.fake-google";

async fn start(events: usize, weeks: usize) -> RunningFake {
    GoogleFake::start(FakeConfig { events, weekly_instances: weeks, ..FakeConfig::default() })
        .await
        .expect("fake starts")
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn list(fake: &RunningFake, query: &[(&str, String)]) -> (u16, Value) {
    let resp = http()
        .get(format!("{}/calendars/primary/events", fake.api_url()))
        .bearer_auth(TOKEN)
        .query(query)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Pages through a listing; returns every item and the final sync token.
async fn list_all(fake: &RunningFake, base: &[(&str, String)]) -> (Vec<Value>, String, usize) {
    let mut items = Vec::new();
    let mut page_token: Option<String> = None;
    for pages in 1..=100 {
        let mut q = base.to_vec();
        if let Some(p) = &page_token {
            q.push(("pageToken", p.clone()));
        }
        let (status, body) = list(fake, &q).await;
        assert_eq!(status, 200, "{body}");
        items.extend(body["items"].as_array().cloned().unwrap_or_default());
        match body["nextPageToken"].as_str() {
            Some(p) => {
                assert!(body.get("nextSyncToken").is_none(), "a sync token only on the last page");
                page_token = Some(p.to_owned());
            }
            None => {
                return (
                    items,
                    body["nextSyncToken"].as_str().expect("sync token on last page").to_owned(),
                    pages,
                );
            }
        }
    }
    panic!("listing did not end");
}

fn window() -> Vec<(&'static str, String)> {
    let now = Utc::now();
    vec![
        ("singleEvents", "true".into()),
        ("timeMin", (now - ChronoDuration::days(1)).to_rfc3339()),
        ("timeMax", (now + ChronoDuration::days(7)).to_rfc3339()),
        ("maxResults", "7".into()),
    ]
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().filter_map(|i| i["id"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn a_full_listing_pages_then_ends_with_a_sync_token_and_flattens_recurring_instances() {
    let fake = start(30, 4).await;
    let (items, _sync, pages) = list_all(&fake, &window()).await;
    assert!(pages >= 3, "7 a page should take several pages, took {pages}");
    let listed = ids(&items);
    let mut unique = listed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), listed.len(), "no event repeats across pages");
    assert!(listed.iter().any(|id| id.starts_with("weekly0sync_")), "instances are listed");
    assert!(!listed.iter().any(|id| id == "weekly0sync"), "the recurring parent is not");
    assert!(items.iter().any(|i| i["start"].get("date").is_some()), "some all-day events");
    let now = Utc::now();
    for i in &items {
        let end = store::When::parse(&i["end"]).expect("end").instant();
        let start = store::When::parse(&i["start"]).expect("start").instant();
        assert!(end > now - ChronoDuration::days(1) && start < now + ChronoDuration::days(7), "{i}");
    }
    let (all, _, _) = list_all(&fake, &[("maxResults", "250".into())]).await;
    assert!(all.iter().any(|i| i["id"] == "weekly0sync" && i["recurrence"].is_array()));
    assert!(!ids(&all).iter().any(|id| id.starts_with("weekly0sync_")));
}

#[tokio::test]
async fn a_sync_token_returns_only_changes_including_cancellations_outside_the_window() {
    let fake = start(30, 2).await;
    let (_, sync, _) = list_all(&fake, &window()).await;
    let state = fake.state();
    state.edit_event("seed00001", json!({ "summary": "Renamed" })).expect("edit");
    let far = Utc::now() + ChronoDuration::days(60);
    state.move_event("seed00002", far, far + ChronoDuration::hours(1)).expect("move");
    state.cancel_event("seed00003").expect("cancel");
    let (status, body) = list(&fake, &[("singleEvents", "true".into()), ("syncToken", sync.clone())]).await;
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(ids(&items), vec!["seed00001", "seed00002", "seed00003"]);
    assert_eq!(items[0]["summary"], "Renamed");
    assert_eq!(items[2]["status"], "cancelled");
    assert!(items[2].get("summary").is_none(), "cancelled events carry only what Google keeps");
    let next = body["nextSyncToken"].as_str().expect("next sync token");
    let (_, again) = list(&fake, &[("singleEvents", "true".into()), ("syncToken", next.to_owned())]).await;
    assert_eq!(again["items"].as_array().map(Vec::len), Some(0), "nothing changed since");
    assert_eq!(state.stats().incremental_lists, 2);
}

#[tokio::test]
async fn a_sync_token_with_time_bounds_or_a_bad_ordering_is_refused() {
    let fake = start(5, 0).await;
    let (_, sync, _) = list_all(&fake, &window()).await;
    let (status, body) = list(&fake, &[("syncToken", sync), ("timeMin", Utc::now().to_rfc3339())]).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = list(&fake, &[("orderBy", "startTime".into())]).await;
    assert_eq!(status, 400, "orderBy=startTime needs singleEvents");
    let (status, _) = list(&fake, &[("orderBy", "startTime".into()), ("singleEvents", "true".into())]).await;
    assert_eq!(status, 200);
    let (status, _) = list(&fake, &[("pageToken", "garbage".into())]).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn an_expired_sync_token_answers_410_full_sync_required() {
    let fake = start(5, 0).await;
    let (_, sync, _) = list_all(&fake, &window()).await;
    let state = fake.state();
    state.inject_fault(Fault { route: Route::List, kind: FaultKind::SyncTokenGone, count: 1 });
    let (status, _) = list(&fake, &window()).await;
    assert_eq!(status, 200, "a full listing does not use up the fault");
    let (status, body) = list(&fake, &[("syncToken", sync.clone())]).await;
    assert_eq!(status, 410);
    assert_eq!(body["error"]["errors"][0]["reason"], "fullSyncRequired");
    let (status, _) = list(&fake, &[("syncToken", sync.clone())]).await;
    assert_eq!(status, 200, "the fault was for one use");
    state.invalidate_sync_tokens();
    let (status, _) = list(&fake, &[("syncToken", sync)]).await;
    assert_eq!(status, 410);
}

async fn insert(fake: &RunningFake, body: &Value) -> (u16, Value) {
    let resp = http()
        .post(format!("{}/calendars/primary/events", fake.api_url()))
        .bearer_auth(TOKEN)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn new_event(id: Option<&str>) -> Value {
    let start = Utc::now() + ChronoDuration::days(2);
    let mut e = json!({
        "summary": "Suggested meeting",
        "start": { "dateTime": start.to_rfc3339() },
        "end": { "dateTime": (start + ChronoDuration::minutes(30)).to_rfc3339() },
        "attendees": [{ "email": "raj@initech.example" }],
    });
    if let Some(id) = id {
        e["id"] = json!(id);
    }
    e
}

#[tokio::test]
async fn inserting_a_client_chosen_id_twice_is_a_409_duplicate_and_bad_ids_are_refused() {
    let fake = start(0, 0).await;
    let (status, created) = insert(&fake, &new_event(Some("sb0abc123"))).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["id"], "sb0abc123");
    let (status, body) = insert(&fake, &new_event(Some("sb0abc123"))).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["errors"][0]["reason"], "duplicate");
    assert_eq!(fake.state().event_count(), 1);
    let (status, _) = insert(&fake, &new_event(Some("Not_Base32"))).await;
    assert_eq!(status, 400);
    let (status, _) = insert(&fake, &json!({ "summary": "no times" })).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn patch_and_delete_honour_if_match_and_a_second_delete_is_gone() {
    let fake = start(3, 0).await;
    let url = format!("{}/calendars/primary/events/seed00000", fake.api_url());
    let etag = fake.state().event("seed00000").expect("event")["etag"].as_str().expect("etag").to_owned();
    let stale = http()
        .patch(&url)
        .bearer_auth(TOKEN)
        .header("If-Match", "\"1\"")
        .json(&json!({"summary": "x"}))
        .send()
        .await
        .expect("req");
    assert_eq!(stale.status().as_u16(), 412);
    let ok = http()
        .patch(&url)
        .bearer_auth(TOKEN)
        .header("If-Match", &etag)
        .json(&json!({"summary": "x"}))
        .send()
        .await
        .expect("req");
    assert_eq!(ok.status().as_u16(), 200);
    let patched: Value = ok.json().await.expect("json");
    assert_eq!(patched["summary"], "x");
    assert_ne!(patched["etag"].as_str(), Some(etag.as_str()), "a change makes a new etag");
    assert_eq!(patched["description"], "Seeded event 0", "patch keeps other fields");
    let del = http().delete(&url).bearer_auth(TOKEN).header("If-Match", &etag).send().await.expect("req");
    assert_eq!(del.status().as_u16(), 412, "the old etag no longer matches");
    let del = http().delete(&url).bearer_auth(TOKEN).send().await.expect("req");
    assert_eq!(del.status().as_u16(), 204);
    let again = http().delete(&url).bearer_auth(TOKEN).send().await.expect("req");
    assert_eq!(again.status().as_u16(), 410);
}

#[tokio::test]
async fn faults_answer_googles_rate_limit_and_auth_errors_and_are_counted() {
    let fake = start(2, 0).await;
    let state = fake.state();
    state.inject_fault(Fault {
        route: Route::List,
        kind: FaultKind::RateLimit {
            status: Some(403),
            reason: Some("userRateLimitExceeded".into()),
            retry_after_secs: None,
        },
        count: 1,
    });
    state.inject_fault(Fault {
        route: Route::List,
        kind: FaultKind::ServerError { status: Some(503) },
        count: 1,
    });
    let (status, body) = list(&fake, &[]).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["errors"][0]["reason"], "userRateLimitExceeded");
    let (status, _) = list(&fake, &[]).await;
    assert_eq!(status, 503);
    let (status, _) = list(&fake, &[]).await;
    assert_eq!(status, 200);
    let resp = http()
        .get(format!("{}/calendars/primary/events", fake.api_url()))
        .bearer_auth("nope")
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status().as_u16(), 401);
    let stats = state.stats();
    assert_eq!(stats.routes.get("list"), Some(&4));
    assert_eq!(stats.rate_limited, 1);
}

#[tokio::test]
async fn the_token_endpoint_refreshes_with_client_credentials_for_3599_seconds() {
    let fake = start(1, 0).await;
    let state = fake.state();
    let issued = state.issue_token(Some(std::time::Duration::from_secs(0)));
    let (status, _) = {
        let r = http()
            .get(format!("{}/calendars/primary/events", fake.api_url()))
            .bearer_auth(&issued.access_token)
            .send()
            .await
            .expect("req");
        (r.status().as_u16(), ())
    };
    assert_eq!(status, 401, "an expired token is refused");
    let form = |secret: &str, refresh: &str| {
        vec![
            ("grant_type", "refresh_token".to_owned()),
            ("client_id", state.config().client_id.clone()),
            ("client_secret", secret.to_owned()),
            ("refresh_token", refresh.to_owned()),
        ]
    };
    let resp = http()
        .post(fake.token_url())
        .form(&form(&state.config().client_secret, &issued.refresh_token))
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["token_type"], "Bearer");
    let fresh = body["access_token"].as_str().expect("token");
    let r = http()
        .get(format!("{}/calendars/primary/events", fake.api_url()))
        .bearer_auth(fresh)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 200);
    let bad =
        http().post(fake.token_url()).form(&form("wrong", &issued.refresh_token)).send().await.expect("req");
    assert_eq!(bad.status().as_u16(), 401);
    let bad = http()
        .post(fake.token_url())
        .form(&form(&state.config().client_secret, "1//unknown"))
        .send()
        .await
        .expect("req");
    assert_eq!(bad.status().as_u16(), 400);
    assert_eq!(bad.json::<Value>().await.expect("json")["error"], "invalid_grant");
}

/// A webhook receiver recording the `X-Goog-*` headers of each notification.
async fn receiver() -> (String, Arc<Mutex<Vec<HeaderMap>>>, tokio::task::JoinHandle<()>) {
    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let store = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let store = store.clone();
            async move {
                store.lock().expect("lock").push(headers);
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

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn watch_registers_a_channel_that_gets_sync_then_exists_notifications_until_stopped() {
    let fake = start(1, 0).await;
    let (address, seen, _task) = receiver().await;
    let resp = http()
        .post(format!("{}/calendars/primary/events/watch", fake.api_url()))
        .bearer_auth(TOKEN)
        .json(&json!({ "id": "chan-1", "type": "web_hook", "address": address, "token": "secret-proof" }))
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status().as_u16(), 200);
    let channel: Value = resp.json().await.expect("json");
    let resource_id = channel["resourceId"].as_str().expect("resource id").to_owned();
    let expiration: i64 = channel["expiration"].as_str().and_then(|s| s.parse().ok()).expect("expiration");
    assert!(expiration > Utc::now().timestamp_millis());
    for _ in 0..50 {
        if !seen.lock().expect("lock").is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let deliveries = fake.state().notify("exists", None).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, Some(200));
    {
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 2, "a sync message, then the change");
        assert_eq!(header(&seen[0], "x-goog-resource-state"), "sync");
        assert_eq!(header(&seen[0], "x-goog-message-number"), "1");
        assert_eq!(header(&seen[1], "x-goog-resource-state"), "exists");
        assert_eq!(header(&seen[1], "x-goog-message-number"), "2");
        assert_eq!(header(&seen[1], "x-goog-channel-id"), "chan-1");
        assert_eq!(header(&seen[1], "x-goog-channel-token"), "secret-proof");
        assert_eq!(header(&seen[1], "x-goog-resource-id"), resource_id);
    }
    let stop = |id: &str| {
        http()
            .post(format!("{}/channels/stop", fake.api_url()))
            .bearer_auth(TOKEN)
            .json(&json!({ "id": id, "resourceId": resource_id }))
            .send()
    };
    assert_eq!(stop("chan-1").await.expect("req").status().as_u16(), 204);
    assert_eq!(stop("chan-1").await.expect("req").status().as_u16(), 404);
    assert!(fake.state().notify("exists", None).await.is_empty(), "a stopped channel gets nothing");
    let missing = http()
        .post(format!("{}/calendars/primary/events/watch", fake.api_url()))
        .bearer_auth(TOKEN)
        .json(&json!({ "id": "chan-2", "type": "web_hook" }))
        .send()
        .await
        .expect("req");
    assert_eq!(missing.status().as_u16(), 400, "address is required");
}

// ---- the fake against Google's discovery document ----

fn discovery() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/specs/calendar-v3.discovery.json");
    let text = std::fs::read_to_string(path).expect("discovery document is in the repository");
    serde_json::from_str(&text).expect("discovery document parses")
}

/// Checks `value` against a discovery schema: every property the fake emits is declared, with the
/// declared JSON type (int64 strings included). Returns the problems found.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    if let Some(name) = schema.get("$ref").and_then(Value::as_str) {
        return check(doc, &doc["schemas"][name], value, at, problems);
    }
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("any");
    let ok = match ty {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    };
    if !ok {
        problems.push(format!("{at}: expected {ty}, got {value}"));
        return;
    }
    if ty == "string"
        && let (Some(fmt), Some(s)) = (schema.get("format").and_then(Value::as_str), value.as_str())
    {
        let valid = match fmt {
            "date-time" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
            "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
            "int64" => s.parse::<i64>().is_ok(),
            _ => true,
        };
        if !valid {
            problems.push(format!("{at}: {s:?} is not a {fmt}"));
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), value.as_array()) {
        for (i, v) in list.iter().enumerate() {
            check(doc, items, v, &format!("{at}[{i}]"), problems);
        }
    }
    if let Some(obj) = value.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        let extra = schema.get("additionalProperties");
        for (k, v) in obj {
            match (props.and_then(|p| p.get(k)), extra) {
                (Some(s), _) | (None, Some(s)) => check(doc, s, v, &format!("{at}.{k}"), problems),
                (None, None) => problems.push(format!("{at}.{k}: not in the schema")),
            }
        }
    }
}

#[tokio::test]
async fn every_response_matches_the_discovery_documents_schemas() {
    let doc = discovery();
    let fake = start(12, 3).await;
    let state = fake.state();
    let (_, sync, _) = list_all(&fake, &window()).await;
    state.cancel_event("seed00004").expect("cancel");
    state
        .cancel_event(
            &state.live_event_ids().into_iter().find(|i| i.starts_with("weekly0sync_")).expect("instance"),
        )
        .expect("cancel");
    let mut problems = Vec::new();
    let events = json!({ "$ref": "Events" });
    let mut seen_kinds = (false, false, false, false);
    for query in [
        window(),
        vec![("maxResults", "250".into())],
        vec![("singleEvents", "true".into()), ("syncToken", sync)],
    ] {
        let (status, body) = list(&fake, &query).await;
        assert_eq!(status, 200, "{body}");
        check(&doc, &events, &body, "Events", &mut problems);
        for item in body["items"].as_array().into_iter().flatten() {
            seen_kinds.0 |= item["start"].get("date").is_some();
            seen_kinds.1 |= item.get("recurringEventId").is_some();
            seen_kinds.2 |= item["status"] == "cancelled";
            seen_kinds.3 |= item.get("recurrence").is_some();
        }
    }
    assert_eq!(
        seen_kinds,
        (true, true, true, true),
        "all-day, instance, cancelled and recurring events were checked"
    );
    let (_, created) = insert(&fake, &new_event(Some("sb0schema01"))).await;
    check(&doc, &json!({ "$ref": "Event" }), &created, "Event", &mut problems);
    let (address, _seen, _task) = receiver().await;
    let channel: Value = http()
        .post(format!("{}/calendars/primary/events/watch", fake.api_url()))
        .bearer_auth(TOKEN)
        .json(&json!({ "id": "c1", "type": "web_hook", "address": address, "token": "t", "expiration": (Utc::now().timestamp_millis() + 60_000).to_string() }))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    check(&doc, &json!({ "$ref": "Channel" }), &channel, "Channel", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");

    // The checker itself catches wrong types and unknown properties.
    let mut caught = Vec::new();
    check(
        &doc,
        &json!({ "$ref": "Event" }),
        &json!({ "sequence": "1", "colour": "red", "start": { "date": "2024-13-01" } }),
        "Event",
        &mut caught,
    );
    assert_eq!(caught.len(), 3, "{caught:#?}");
}

#[tokio::test]
async fn the_fakes_routes_and_parameters_are_the_discovery_documents() {
    let doc = discovery();
    let root =
        format!("{}{}", doc["rootUrl"].as_str().unwrap_or(""), doc["servicePath"].as_str().unwrap_or(""));
    assert_eq!(root, "https://www.googleapis.com/calendar/v3/");
    let fake = start(2, 0).await;
    let events = &doc["resources"]["events"]["methods"];
    let served = [
        ("list", "GET", "calendars/{calendarId}/events"),
        ("insert", "POST", "calendars/{calendarId}/events"),
        ("get", "GET", "calendars/{calendarId}/events/{eventId}"),
        ("patch", "PATCH", "calendars/{calendarId}/events/{eventId}"),
        ("update", "PUT", "calendars/{calendarId}/events/{eventId}"),
        ("delete", "DELETE", "calendars/{calendarId}/events/{eventId}"),
        ("watch", "POST", "calendars/{calendarId}/events/watch"),
    ];
    for (method, verb, path) in served {
        assert_eq!(events[method]["httpMethod"], verb, "{method}");
        assert_eq!(events[method]["path"], path, "{method}");
        assert_eq!(events[method]["parameters"]["calendarId"]["required"], true);
    }
    assert_eq!(doc["resources"]["channels"]["methods"]["stop"]["path"], "channels/stop");
    let understood = [
        "maxResults",
        "pageToken",
        "syncToken",
        "timeMin",
        "timeMax",
        "singleEvents",
        "showDeleted",
        "orderBy",
        "updatedMin",
    ];
    for p in understood {
        assert!(events["list"]["parameters"].get(p).is_some(), "{p} is a documented list parameter");
    }
    // Required path parameters are honoured: an unknown calendar is 404, not a listing.
    let r = http()
        .get(format!("{}/calendars/other@else.example/events", fake.api_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status().as_u16(), 404);
    // maxResults' documented minimum is enforced, its 2500 cap applied.
    let min =
        events["list"]["parameters"]["maxResults"]["minimum"].as_str().and_then(|m| m.parse::<i64>().ok());
    assert_eq!(min, Some(1));
    let (status, _) = list(&fake, &[("maxResults", "0".into())]).await;
    assert_eq!(status, 400);
    // Event ids the fake accepts are the documented base32hex ids of 5 to 1024 characters.
    let id_doc = doc["schemas"]["Event"]["properties"]["id"]["description"].as_str().unwrap_or("");
    assert!(id_doc.contains("base32hex") && id_doc.contains("between 5 and 1024"));
    assert!(store::valid_event_id(&"v".repeat(1024)) && !store::valid_event_id(&"v".repeat(1025)));
}

#[tokio::test]
async fn the_admin_routes_edit_events_inject_faults_and_notify_channels_over_http() {
    let fake = start(2, 0).await;
    let admin = |path: &str| format!("{}/_admin/{path}", fake.base_url());
    let start = Utc::now() + ChronoDuration::days(1);
    let created: Value = http()
        .post(admin("events"))
        .json(&json!({ "summary": "Made by hand", "start": { "dateTime": start.to_rfc3339() }, "end": { "dateTime": (start + ChronoDuration::hours(1)).to_rfc3339() } }))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    let edited = http()
        .patch(admin(&format!("events/{id}")))
        .json(&json!({ "summary": "Renamed" }))
        .send()
        .await
        .expect("req");
    assert_eq!(edited.status().as_u16(), 200);
    let moved = http()
        .post(admin(&format!("events/{id}/move")))
        .json(&json!({ "start": (start + ChronoDuration::days(2)).to_rfc3339(), "end": (start + ChronoDuration::days(2) + ChronoDuration::hours(1)).to_rfc3339() }))
        .send()
        .await
        .expect("req");
    assert_eq!(moved.status().as_u16(), 200);
    let cancelled = http().post(admin(&format!("events/{id}/cancel"))).send().await.expect("req");
    assert_eq!(cancelled.status().as_u16(), 200);
    assert_eq!(fake.state().event(&id).expect("event")["status"], "cancelled");
    let fault = http()
        .post(admin("faults"))
        .json(&json!({ "route": "list", "kind": "delay", "ms": 150 }))
        .send()
        .await
        .expect("req");
    assert_eq!(fault.status().as_u16(), 204);
    let before = std::time::Instant::now();
    let (status, _) = list(&fake, &[]).await;
    assert_eq!(status, 200);
    assert!(before.elapsed() >= std::time::Duration::from_millis(150), "the delay fault held the answer");
    let stats: Stats = http().get(admin("stats")).send().await.expect("req").json().await.expect("json");
    assert_eq!(stats.routes.get("list"), Some(&1));
    let (address, seen, _task) = receiver().await;
    fake.state()
        .add_channel(Channel {
            id: "c9".into(),
            resource_id: "r9".into(),
            resource_uri: "https://example.test/calendar".into(),
            address,
            token: None,
            expiration: Utc::now().timestamp_millis() + 60_000,
            stopped: false,
            messages: 0,
        })
        .expect("channel");
    let sent: Vec<Delivery> = http()
        .post(admin("channels/notify"))
        .json(&json!({ "state": "exists" }))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status, Some(200));
    assert_eq!(seen.lock().expect("lock").len(), 1);
    let invalid =
        http().post(admin("events")).json(&json!({ "summary": "no times" })).send().await.expect("req");
    assert_eq!(invalid.status().as_u16(), 400);
}
