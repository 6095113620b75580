//! HTTP-level tests of the Graph fake, through reqwest, including a check of the fake's event JSON
//! against the event schema of Microsoft's OpenAPI description (`specs/`, a v1.0 subset).

use std::collections::BTreeSet;
use std::sync::Mutex;

use axum::extract::{Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::{Duration as ChronoDuration, NaiveDate, Utc};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::*;

const TOKEN: &str = "graph-fake-token";

fn anchor() -> NaiveDate {
    Utc::now().date_naive()
}

async fn fake(events: usize) -> RunningFake {
    GraphFake::start(FakeConfig { events, anchor: Some(anchor()), ..FakeConfig::default() }).await.unwrap()
}

fn window_query() -> [(String, String); 2] {
    let start = anchor().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let end = start + ChronoDuration::days(7);
    [
        ("startDateTime".into(), start.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        ("endDateTime".into(), end.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    ]
}

/// Follows one delta round from `first` (a URL with query) to its delta link.
async fn round(
    http: &reqwest::Client,
    first: reqwest::RequestBuilder,
    page: usize,
) -> (Vec<Value>, String, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut req = first;
    loop {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["preference-applied"], format!("odata.maxpagesize={page}").as_str());
        let body: Value = resp.json().await.unwrap();
        pages += 1;
        let value = body["value"].as_array().unwrap();
        assert!(value.len() <= page);
        items.extend(value.iter().cloned());
        if let Some(next) = body["@odata.nextLink"].as_str() {
            req = http.get(next).bearer_auth(TOKEN).header("Prefer", format!("odata.maxpagesize={page}"));
            continue;
        }
        return (items, body["@odata.deltaLink"].as_str().unwrap().to_owned(), pages);
    }
}

fn first_delta(http: &reqwest::Client, base: &str, page: usize) -> reqwest::RequestBuilder {
    http.get(format!("{base}/v1.0/me/calendarView/delta"))
        .query(&window_query())
        .bearer_auth(TOKEN)
        .header("Prefer", format!("odata.maxpagesize={page}"))
}

#[tokio::test]
async fn delta_pages_by_maxpagesize_through_next_links_to_a_delta_link_within_the_window() {
    let f = fake(33).await;
    let http = reqwest::Client::new();
    let (items, delta_link, pages) = round(&http, first_delta(&http, &f.base_url(), 7), 7).await;
    // Seeded events 11, 22 and 33 lie two weeks out.
    assert_eq!(items.len(), 30);
    assert_eq!(pages, 5);
    let ids: BTreeSet<&str> = items.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 30);
    assert!(delta_link.contains("$deltatoken="));
    assert!(items.iter().any(|e| e["isAllDay"] == true));
    assert!(items.iter().any(|e| e["isCancelled"] == true));
    assert!(items.iter().all(|e| e["@odata.etag"].as_str().unwrap().starts_with("W/\"")));
    assert_eq!(f.state().route_count(Route::Delta), 5);

    let (again, _, pages) =
        round(&http, http.get(&delta_link).bearer_auth(TOKEN).header("Prefer", "odata.maxpagesize=7"), 7)
            .await;
    assert!(again.is_empty());
    assert_eq!(pages, 1);
}

#[tokio::test]
async fn the_delta_link_reports_edits_cancellations_and_removals_since_the_round() {
    let f = fake(12).await;
    let state = f.state();
    let http = reqwest::Client::new();
    let (items, delta_link, _) = round(&http, first_delta(&http, &f.base_url(), 50), 50).await;
    let ids: Vec<String> = items.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert!(state.edit_event(&ids[0], EventEdit { subject: Some("Renamed".into()), ..EventEdit::default() }));
    assert!(state.cancel_event(&ids[1]));
    assert!(state.delete_event(&ids[2]));
    let start = Utc::now() + ChronoDuration::hours(30);
    let created = state.create_event(NewEvent {
        subject: "Fresh".into(),
        body: String::new(),
        start,
        end: start + ChronoDuration::hours(1),
        all_day: false,
        location: String::new(),
        attendees: vec!["x@fabrikam.com".into()],
    });
    let (changes, next_link, pages) =
        round(&http, http.get(&delta_link).bearer_auth(TOKEN).header("Prefer", "odata.maxpagesize=50"), 50)
            .await;
    assert_eq!(pages, 1);
    assert_eq!(changes.len(), 4);
    let by_id = |id: &str| changes.iter().find(|c| c["id"] == id).unwrap().clone();
    assert_eq!(by_id(&ids[0])["subject"], "Renamed");
    assert_eq!(by_id(&ids[1])["isCancelled"], true);
    assert_eq!(by_id(&ids[2])["@removed"], json!({"reason": "deleted"}));
    assert_eq!(by_id(&created)["subject"], "Fresh");
    assert_ne!(next_link, delta_link);
}

#[tokio::test]
async fn a_gone_fault_and_expired_sync_state_answer_410_only_to_delta_links() {
    let f = fake(5).await;
    let state = f.state();
    let http = reqwest::Client::new();
    state.inject_fault(Fault {
        route: Route::Delta,
        kind: FaultKind::SyncStateGone { code: None },
        count: 1,
    });
    // The initial request carries no delta token: the fault waits.
    let (_, delta_link, _) = round(&http, first_delta(&http, &f.base_url(), 10), 10).await;
    let gone = http.get(&delta_link).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(gone.status(), 410);
    let body: Value = gone.json().await.unwrap();
    assert_eq!(body["error"]["code"], "syncStateNotFound");
    assert!(body["error"]["innerError"]["request-id"].is_string());
    assert_eq!(http.get(&delta_link).bearer_auth(TOKEN).send().await.unwrap().status(), 200);
    state.expire_sync_state();
    assert_eq!(http.get(&delta_link).bearer_auth(TOKEN).send().await.unwrap().status(), 410);
}

#[tokio::test]
async fn patch_with_a_stale_etag_answers_412_and_a_current_one_succeeds() {
    let f = fake(3).await;
    let state = f.state();
    let id = state.event_ids()[0].clone();
    let etag = state.event(&id).unwrap()["@odata.etag"].as_str().unwrap().to_owned();
    state.edit_event(&id, EventEdit { location: Some("Elsewhere".into()), ..EventEdit::default() });
    let http = reqwest::Client::new();
    let url = format!("{}/v1.0/me/events/{id}", f.base_url());
    let stale = http
        .patch(&url)
        .bearer_auth(TOKEN)
        .header("If-Match", &etag)
        .json(&json!({"subject": "Mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let body: Value = stale.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ErrorIrresolvableConflict");
    let current = state.event(&id).unwrap()["@odata.etag"].as_str().unwrap().to_owned();
    let ok = http
        .patch(&url)
        .bearer_auth(TOKEN)
        .header("If-Match", &current)
        .json(&json!({"subject": "Mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["subject"], "Mine");
    assert_ne!(body["@odata.etag"], json!(current));
}

#[tokio::test]
async fn a_second_create_with_the_same_transaction_id_returns_the_first_event() {
    let f = fake(0).await;
    let http = reqwest::Client::new();
    let body = json!({
        "subject": "Suggested meeting",
        "start": {"dateTime": "2030-01-02T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2030-01-02T10:30:00", "timeZone": "UTC"},
        "attendees": [{"emailAddress": {"address": "pat@fabrikam.com"}, "type": "required"}],
        "transactionId": "sb-7f3a",
    });
    let url = format!("{}/v1.0/me/events", f.base_url());
    let a: Value = http.post(&url).bearer_auth(TOKEN).json(&body).send().await.unwrap().json().await.unwrap();
    let second = http.post(&url).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    assert_eq!(second.status(), 201);
    let b: Value = second.json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
    assert_eq!(f.state().event_count(), 1);
    assert_eq!(f.state().events_with_transaction("sb-7f3a"), 1);
    assert_eq!(a["start"], json!({"dateTime": "2030-01-02T10:00:00.0000000", "timeZone": "UTC"}));
}

#[tokio::test]
async fn throttling_and_outage_faults_carry_retry_after_and_graph_error_codes() {
    let f = fake(1).await;
    let state = f.state();
    state.inject_fault(Fault {
        route: Route::Delta,
        kind: FaultKind::RateLimit { retry_after_secs: 3 },
        count: 1,
    });
    state.inject_fault(Fault {
        route: Route::Delta,
        kind: FaultKind::ServiceUnavailable { retry_after_secs: Some(5) },
        count: 1,
    });
    let http = reqwest::Client::new();
    let r1 = first_delta(&http, &f.base_url(), 10).send().await.unwrap();
    assert_eq!(r1.status(), 429);
    assert_eq!(r1.headers()["retry-after"], "3");
    assert_eq!(r1.json::<Value>().await.unwrap()["error"]["code"], "TooManyRequests");
    let r2 = first_delta(&http, &f.base_url(), 10).send().await.unwrap();
    assert_eq!(r2.status(), 503);
    assert_eq!(r2.headers()["retry-after"], "5");
    assert_eq!(first_delta(&http, &f.base_url(), 10).send().await.unwrap().status(), 200);
    let stats = state.stats();
    assert_eq!(stats.rate_limited, 1);
    assert_eq!(stats.routes["delta"], 3);
}

#[tokio::test]
async fn the_token_endpoint_rotates_refresh_tokens_and_expired_access_tokens_get_401() {
    let f = fake(1).await;
    let state = f.state();
    let issued = state.issue_token(None);
    let http = reqwest::Client::new();
    let url = format!("{}/common/oauth2/v2.0/token", f.base_url());
    let form = |refresh: &str| {
        vec![
            ("grant_type", "refresh_token".to_owned()),
            ("client_id", "fake-graph-client-id".to_owned()),
            ("client_secret", "fake-graph-client-secret".to_owned()),
            ("refresh_token", refresh.to_owned()),
            ("scope", "offline_access Calendars.ReadWrite".to_owned()),
        ]
    };
    let ok: Value =
        http.post(&url).form(&form(&issued.refresh_token)).send().await.unwrap().json().await.unwrap();
    assert_eq!(ok["token_type"], "Bearer");
    assert!(ok["expires_in"].as_u64().unwrap() > 3000);
    assert_ne!(ok["refresh_token"], json!(issued.refresh_token));
    let bad = http.post(&url).form(&form("nope")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await.unwrap()["error"], "invalid_grant");

    assert!(state.expire_token(&issued.access_token));
    let resp = http
        .get(format!("{}/v1.0/me/events/{}", f.base_url(), state.event_ids()[0]))
        .bearer_auth(&issued.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "InvalidAuthenticationToken");
    let fresh = ok["access_token"].as_str().unwrap();
    let resp = http
        .get(format!("{}/v1.0/me/events/{}", f.base_url(), state.event_ids()[0]))
        .bearer_auth(fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// A notification receiver: echoes validation tokens (unless `echo` is false) and records bodies.
#[derive(Clone)]
struct Receiver {
    echo: bool,
    seen: Arc<Mutex<Vec<Value>>>,
}

async fn receive(
    AxumState(r): AxumState<Receiver>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    _headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    if let Some(token) = q.get("validationToken") {
        if !r.echo {
            return (StatusCode::OK, "nope").into_response();
        }
        return (StatusCode::OK, [("content-type", "text/plain")], token.clone()).into_response();
    }
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        r.seen.lock().unwrap().push(v);
    }
    StatusCode::ACCEPTED.into_response()
}

async fn receiver(echo: bool) -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .route("/lifecycle", axum::routing::post(receive))
        .with_state(Receiver { echo, seen: seen.clone() });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn subscriptions_are_validated_renewed_within_4230_minutes_and_deliver_notifications() {
    let f = fake(2).await;
    let state = f.state();
    let http = reqwest::Client::new();
    let (hook, seen) = receiver(true).await;
    let url = format!("{}/v1.0/subscriptions", f.base_url());
    let expiry = |minutes: i64| (Utc::now() + ChronoDuration::minutes(minutes)).to_rfc3339();
    let body = json!({
        "changeType": "created,updated,deleted",
        "notificationUrl": format!("{hook}/hook"),
        "lifecycleNotificationUrl": format!("{hook}/lifecycle"),
        "resource": "me/events",
        "expirationDateTime": expiry(4000),
        "clientState": "secret-state",
    });
    let created = http.post(&url).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let sub: Value = created.json().await.unwrap();
    let id = sub["id"].as_str().unwrap().to_owned();
    assert_eq!(sub["clientState"], "secret-state");
    assert_eq!(state.stats().notifications_sent, 2);

    let too_far = http
        .patch(format!("{url}/{id}"))
        .bearer_auth(TOKEN)
        .json(&json!({"expirationDateTime": expiry(4300)}))
        .send()
        .await
        .unwrap();
    assert_eq!(too_far.status(), 400);
    let renewed = http
        .patch(format!("{url}/{id}"))
        .bearer_auth(TOKEN)
        .json(&json!({"expirationDateTime": expiry(4200)}))
        .send()
        .await
        .unwrap();
    assert_eq!(renewed.status(), 200);
    assert!(
        state.subscription(&id).unwrap().expiration_date_time > Utc::now() + ChronoDuration::minutes(4100)
    );

    let event = state.event_ids()[0].clone();
    assert_eq!(state.notify_change(&id, "updated", &event).await.unwrap(), 202);
    assert_eq!(state.notify_lifecycle(&id, "reauthorizationRequired").await.unwrap(), 202);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0]["value"][0]["clientState"], "secret-state");
    assert_eq!(seen[0]["value"][0]["resourceData"]["id"], json!(event));
    assert_eq!(seen[1]["value"][0]["lifecycleEvent"], "reauthorizationRequired");

    let (silent, _) = receiver(false).await;
    let refused = http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&json!({
            "changeType": "updated", "notificationUrl": format!("{silent}/hook"), "resource": "me/events",
            "expirationDateTime": expiry(60),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "ValidationError");
    assert_eq!(state.subscriptions().len(), 1);
}

// ---- the fake's JSON against Microsoft's OpenAPI description ----

struct Spec(Value);

impl Spec {
    fn load() -> Spec {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/specs/graph-v1.0-calendar-subset.json");
        Spec(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.trim_start_matches("#/components/schemas/");
                self.resolve(&self.0["components"]["schemas"][name])
            }
            None => schema,
        }
    }

    /// The concrete schema behind `anyOf: [{$ref}, {nullable object}]`, and whether null is allowed.
    fn concrete<'a>(&'a self, schema: &'a Value) -> (&'a Value, bool) {
        let schema = self.resolve(schema);
        let mut nullable = schema.get("nullable") == Some(&json!(true));
        if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
            nullable |= any.iter().any(|s| s.get("nullable") == Some(&json!(true)));
            if let Some(r) = any.iter().find(|s| s.get("$ref").is_some()) {
                return (self.resolve(r), nullable);
            }
        }
        (schema, nullable)
    }

    /// Properties of an object schema, following `allOf`.
    fn properties(&self, schema: &Value, out: &mut serde_json::Map<String, Value>) {
        let schema = self.resolve(schema);
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            out.extend(props.clone());
        }
        for part in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            self.properties(part, out);
        }
    }

    fn check(&self, value: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
        let (schema, nullable) = self.concrete(schema);
        if value.is_null() {
            if !nullable {
                errors.push(format!("{path}: null but not nullable"));
            }
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                errors.push(format!("{path}: {value} not in {allowed:?}"));
            }
            return;
        }
        let mut props = serde_json::Map::new();
        self.properties(schema, &mut props);
        let ty = schema.get("type").and_then(Value::as_str).unwrap_or(if props.is_empty() {
            ""
        } else {
            "object"
        });
        match (ty, value) {
            ("string", Value::String(s)) => {
                if schema.get("format") == Some(&json!("date-time"))
                    && chrono::DateTime::parse_from_rfc3339(s).is_err()
                {
                    errors.push(format!("{path}: {s} is not a date-time"));
                }
            }
            ("boolean", Value::Bool(_)) => {}
            ("integer", Value::Number(n)) if n.is_i64() => {}
            ("number", Value::Number(_)) => {}
            ("array", Value::Array(items)) => {
                let item = schema.get("items").cloned().unwrap_or(Value::Null);
                for (i, v) in items.iter().enumerate() {
                    self.check(v, &item, &format!("{path}[{i}]"), errors);
                }
            }
            ("object", Value::Object(map)) => {
                for (k, v) in map {
                    let p = format!("{path}.{k}");
                    match props.get(k) {
                        Some(s) => self.check(v, s, &p, errors),
                        None if ANNOTATIONS.contains(&k.as_str()) => {}
                        None => errors.push(format!("{p}: not in the schema")),
                    }
                }
            }
            (ty, v) => errors.push(format!("{path}: expected {ty}, got {v}")),
        }
    }
}

/// OData instance annotations Graph adds to entities (not schema properties).
const ANNOTATIONS: &[&str] = &["@odata.etag", "@odata.context", "@removed"];

#[tokio::test]
async fn every_event_property_the_fake_emits_exists_in_the_openapi_event_schema_with_its_type() {
    let spec = Spec::load();
    let event_schema = json!({"$ref": "#/components/schemas/microsoft.graph.event"});
    let f = fake(22).await;
    let http = reqwest::Client::new();
    let (items, _, _) = round(&http, first_delta(&http, &f.base_url(), 100), 100).await;
    let created: Value = http
        .post(format!("{}/v1.0/me/events", f.base_url()))
        .bearer_auth(TOKEN)
        .json(&json!({
            "subject": "All day", "isAllDay": true, "transactionId": "t-1", "showAs": "oof",
            "start": {"dateTime": "2030-01-02T00:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2030-01-03T00:00:00", "timeZone": "UTC"},
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut errors = Vec::new();
    let mut checked = 0;
    for (i, event) in items.iter().chain([&created]).enumerate() {
        spec.check(event, &event_schema, &format!("event[{i}]"), &mut errors);
        checked += 1;
    }
    assert_eq!(checked, 21);
    assert!(errors.is_empty(), "{errors:#?}");

    // The checker itself rejects what the schema does not allow.
    let mut bad = created.clone();
    bad["showAs"] = json!("busyish");
    bad["isAllDay"] = json!("yes");
    bad["subjectLine"] = json!("x");
    bad["start"]["dateTime"] = json!(5);
    let mut errors = Vec::new();
    spec.check(&bad, &event_schema, "bad", &mut errors);
    assert_eq!(errors.len(), 4, "{errors:#?}");
}

#[tokio::test]
async fn the_same_seed_and_anchor_give_the_same_calendar_and_another_seed_does_not() {
    let config =
        FakeConfig { events: 15, anchor: NaiveDate::from_ymd_opt(2030, 5, 6), ..FakeConfig::default() };
    let a = GraphFake::start(config.clone()).await.unwrap();
    let b = GraphFake::start(config.clone()).await.unwrap();
    let c = GraphFake::start(FakeConfig { seed: 7, ..config }).await.unwrap();
    assert_eq!(a.state().events(), b.state().events());
    assert_ne!(a.state().events(), c.state().events());
    let events = a.state().events();
    assert!(events.iter().any(|e| e["attendees"].to_string().contains("contoso.com")));
    assert!(events.iter().any(|e| e["organizer"]["emailAddress"]["address"] != store::OWNER_EMAIL));
    assert_eq!(events[0]["createdDateTime"], "2030-05-05T00:00:00.0000000Z");
}
