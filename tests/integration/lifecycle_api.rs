//! The lifecycle, settings, health and audit routes as a client meets them: over HTTP through the
//! local gateway (dev-signed JWTs), on the local stack (moto, the HubSpot fake, the runner).

use std::time::Duration;

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use syncbridge_tests::{LocalStack, api, connect, job, stack};

const DRAIN: Duration = Duration::from_secs(120);

struct Reply {
    status: StatusCode,
    content_type: String,
    disposition: String,
    next_page: Option<String>,
    text: String,
    json: Value,
}

/// One request through the gateway, as `tenant` (or anonymous), with a raw body.
async fn send(
    stack: &LocalStack,
    tenant: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> Reply {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", stack.gateway.base_url()));
    if let Some(t) = tenant {
        req = req.bearer_auth(stack.token(t).unwrap());
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/merge-patch+json").body(b.to_owned());
    }
    let res = req.send().await.unwrap();
    let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (status, content_type, disposition, next_page) = (
        res.status(),
        header("content-type").unwrap_or_default(),
        header("content-disposition").unwrap_or_default(),
        header("x-next-page-token"),
    );
    let text = res.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, content_type, disposition, next_page, text, json }
}

fn assert_problem(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.content_type, "application/problem+json", "{}", reply.text);
    assert_eq!(reply.json["code"], code, "{}", reply.text);
}

fn routes(id: &str) -> Vec<(Method, String, Option<&'static str>)> {
    vec![
        (Method::POST, format!("/v1/connections/{id}/pause"), None),
        (Method::POST, format!("/v1/connections/{id}/resume"), None),
        (Method::GET, format!("/v1/connections/{id}/health"), None),
        (Method::GET, format!("/v1/connections/{id}/status"), None),
        (Method::GET, format!("/v1/connections/{id}/settings"), None),
        (Method::PATCH, format!("/v1/connections/{id}/settings"), Some(r#"{"interval_minutes":30}"#)),
        (Method::GET, format!("/v1/connections/{id}/runs/summary"), None),
        (Method::GET, format!("/v1/connections/{id}/errors"), None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_new_route_needs_a_token_and_another_tenants_connection_is_404() {
    let stack = stack(0, false).await.unwrap();
    let id = connect(&stack, "acme", None).await.unwrap();
    for (method, path, body) in routes(&id) {
        // The gateway's JWT authorizer answers before the API, as API Gateway does.
        let anonymous = send(&stack, None, method.clone(), &path, body).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{path}");
        let theirs = send(&stack, Some("globex"), method.clone(), &path, body).await;
        assert_problem(&theirs, StatusCode::NOT_FOUND, "not_found");
        assert!(!theirs.text.contains("hubspot"), "{path}: {}", theirs.text);
    }
    for path in ["/v1/audit", "/v1/audit/export?format=csv", "/v1/audit/export?format=json"] {
        assert_eq!(send(&stack, None, Method::GET, path, None).await.status, StatusCode::UNAUTHORIZED);
    }
    let mine = send(&stack, Some("acme"), Method::GET, &format!("/v1/connections/{id}/settings"), None).await;
    assert_eq!(mine.json["interval_minutes"], 15, "globex changed nothing: {}", mine.text);
    assert_eq!(mine.json["settings_version"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_connection_is_not_scheduled_refuses_syncs_drops_queued_jobs_and_resumes_due_at_once() {
    let stack = stack(5, false).await.unwrap();
    let id = connect(&stack, "acme", None).await.unwrap();
    stack.runner.fire_schedule(Utc::now()).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let status = send(&stack, Some("acme"), Method::GET, &format!("/v1/connections/{id}/status"), None).await;
    assert_eq!(status.json["status"], "synced", "{}", status.text);
    let contacts = &status.json["objects"][0];
    assert_eq!(
        (contacts["object"].clone(), contacts["state"].clone(), contacts["records"].clone()),
        (json!("contacts"), json!("synced"), json!(5))
    );
    assert!(contacts["last_synced_at"].is_string());
    let health = send(&stack, Some("acme"), Method::GET, &format!("/v1/connections/{id}/health"), None).await;
    assert_eq!(health.json["status"], "healthy", "{}", health.text);

    let paused = send(&stack, Some("acme"), Method::POST, &format!("/v1/connections/{id}/pause"), None).await;
    assert_eq!(
        (paused.status, paused.json["paused"].clone()),
        (StatusCode::OK, json!(true)),
        "{}",
        paused.text
    );
    let later = Utc::now() + chrono::Duration::days(2);
    assert_eq!(stack.runner.fire_schedule(later).await.unwrap().enqueued, 0, "not in the due index");
    let sync = send(&stack, Some("acme"), Method::POST, &format!("/v1/connections/{id}/sync"), None).await;
    assert_problem(&sync, StatusCode::CONFLICT, "connection_paused");
    // A job queued before the pause is dropped by the worker: no run.
    stack.deps.queue.enqueue(&[job("acme", &id).unwrap()]).await.unwrap();
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let runs = api(&stack, "acme")
        .unwrap()
        .call(Method::GET, &format!("/v1/connections/{id}/runs"), None)
        .await
        .unwrap();
    assert_eq!(runs["items"].as_array().map(Vec::len), Some(1), "{runs}");
    let health = send(&stack, Some("acme"), Method::GET, &format!("/v1/connections/{id}/health"), None).await;
    assert_eq!(health.json["reasons"][0]["code"], "paused", "{}", health.text);

    let resumed =
        send(&stack, Some("acme"), Method::POST, &format!("/v1/connections/{id}/resume"), None).await;
    assert_eq!(resumed.json["paused"], false);
    let next_second = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(stack.runner.fire_schedule(next_second).await.unwrap().enqueued, 1, "due at once");
    assert_eq!(stack.runner.drain(DRAIN).await.unwrap().failures, 0);
    let summary =
        send(&stack, Some("acme"), Method::GET, &format!("/v1/connections/{id}/runs/summary"), None).await;
    assert_eq!(
        (summary.json["runs"].clone(), summary.json["succeeded"].clone()),
        (json!(2), json!(2)),
        "{}",
        summary.text
    );
    assert_eq!(summary.json["success_rate"], 1.0);
    assert!(summary.json["mean_duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    let errors = send(&stack, Some("acme"), Method::GET, &format!("/v1/connections/{id}/errors"), None).await;
    assert_eq!(
        (errors.json["retry"]["state"].clone(), errors.json["items"].clone()),
        (json!("none"), json!([]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_patches_are_validated_as_problems_and_a_good_one_reschedules_and_is_audited() {
    let stack = stack(0, false).await.unwrap();
    let id = connect(&stack, "acme", None).await.unwrap();
    let path = format!("/v1/connections/{id}/settings");
    let cases: [(&str, StatusCode, &str); 7] = [
        (r#"{"interval_minutes":4}"#, StatusCode::UNPROCESSABLE_ENTITY, "interval_minutes"),
        (r#"{"interval_minutes":1441}"#, StatusCode::UNPROCESSABLE_ENTITY, "interval_minutes"),
        (r#"{"conflict_policy":"coin_flip"}"#, StatusCode::UNPROCESSABLE_ENTITY, "conflict_policy"),
        (r#"{"interval_minutes":"fifteen"}"#, StatusCode::UNPROCESSABLE_ENTITY, "interval_minutes"),
        (r#"{"auto_push":{"create_note":"yes"}}"#, StatusCode::UNPROCESSABLE_ENTITY, "auto_push"),
        (r#"{"own_domains":["not a domain"]}"#, StatusCode::UNPROCESSABLE_ENTITY, "own_domains"),
        (r#"{"interval_minutes":"#, StatusCode::BAD_REQUEST, ""),
    ];
    for (body, status, field) in cases {
        let reply = send(&stack, Some("acme"), Method::PATCH, &path, Some(body)).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.text);
        assert_eq!(reply.content_type, "application/problem+json");
        let detail = reply.json["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(field), "{body}: {detail}");
        assert!(
            !detail.contains("fifteen") && !detail.contains("coin_flip"),
            "values are not echoed: {detail}"
        );
    }
    let good = r#"{"interval_minutes":60,"conflict_policy":"manual","note_prefix":"[BOT]","calendar_window_days":14}"#;
    let reply = send(&stack, Some("acme"), Method::PATCH, &path, Some(good)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        (reply.json["interval_minutes"].clone(), reply.json["settings_version"].clone()),
        (json!(60), json!(1))
    );
    let view =
        api(&stack, "acme").unwrap().call(Method::GET, &format!("/v1/connections/{id}"), None).await.unwrap();
    assert_eq!(view["interval_minutes"], 60);
    assert_eq!(view["settings"]["note_prefix"], "[BOT]");
    let audit = send(
        &stack,
        Some("acme"),
        Method::GET,
        &format!("/v1/audit?connection_id={id}&operation=settings_changed"),
        None,
    )
    .await;
    let entries = audit.json["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{}", audit.text);
    assert_eq!(entries[0]["before"]["interval_minutes"], 15);
    assert_eq!(entries[0]["after"]["interval_minutes"], 60);
    assert_eq!(entries[0]["actor"], "user:user-acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_queried_and_exported_per_tenant_and_the_csv_matches_the_json() {
    let stack = stack(0, false).await.unwrap();
    let a = connect(&stack, "acme", None).await.unwrap();
    let b = connect(&stack, "globex", None).await.unwrap();
    for (tenant, id) in [("acme", &a), ("globex", &b)] {
        send(&stack, Some(tenant), Method::POST, &format!("/v1/connections/{id}/pause"), None).await;
        let patch = r#"{"note_prefix":"say \"hi\", ok","own_domains":["acme.com"]}"#;
        let r =
            send(&stack, Some(tenant), Method::PATCH, &format!("/v1/connections/{id}/settings"), Some(patch))
                .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        send(&stack, Some(tenant), Method::POST, &format!("/v1/connections/{id}/resume"), None).await;
    }

    let query = send(&stack, Some("acme"), Method::GET, "/v1/audit?limit=2", None).await;
    assert_eq!(query.json["items"].as_array().map(Vec::len), Some(2), "{}", query.text);
    let token = query.json["next_page_token"].as_str().expect("a next page").to_owned();
    let rest =
        send(&stack, Some("acme"), Method::GET, &format!("/v1/audit?limit=50&page_token={token}"), None)
            .await;
    assert_eq!(
        rest.json["items"].as_array().map(Vec::len),
        Some(2),
        "created, paused, changed, resumed: {}",
        rest.text
    );
    let stolen =
        send(&stack, Some("globex"), Method::GET, &format!("/v1/audit?page_token={token}"), None).await;
    assert_problem(&stolen, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let forged = send(&stack, Some("acme"), Method::GET, "/v1/audit?page_token=bm90LWEtdG9rZW4", None).await;
    assert_problem(&forged, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let filtered = send(
        &stack,
        Some("acme"),
        Method::GET,
        "/v1/audit?operation=connection_paused,connection_resumed&outcome=success",
        None,
    )
    .await;
    let ops: Vec<&str> =
        filtered.json["items"].as_array().unwrap().iter().filter_map(|e| e["operation"].as_str()).collect();
    assert_eq!(ops, vec!["connection_resumed", "connection_paused"]);
    let foreign =
        send(&stack, Some("acme"), Method::GET, &format!("/v1/audit?connection_id={b}"), None).await;
    assert_eq!(foreign.json["items"], json!([]), "globex's entries are not acme's");

    let json_export = send(&stack, Some("acme"), Method::GET, "/v1/audit/export?format=json", None).await;
    assert_eq!(json_export.status, StatusCode::OK, "{}", json_export.text);
    assert!(
        json_export.disposition.starts_with("attachment; filename=\"audit-acme-"),
        "{}",
        json_export.disposition
    );
    let items = json_export.json["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 4);
    assert!(!json_export.text.contains(&b));

    let csv_export = send(&stack, Some("acme"), Method::GET, "/v1/audit/export?format=csv", None).await;
    assert_eq!(csv_export.content_type, "text/csv; charset=utf-8");
    assert!(csv_export.disposition.ends_with(".csv\""), "{}", csv_export.disposition);
    let mut reader = csv::Reader::from_reader(csv_export.text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header[..3], ["entry_id", "at", "connection_id"]);
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().unwrap();
    assert_eq!(rows.len(), items.len());
    let cell = |row: &csv::StringRecord, name: &str| {
        row.get(header.iter().position(|h| h == name).unwrap()).unwrap().to_owned()
    };
    for (row, item) in rows.iter().zip(&items) {
        for name in ["entry_id", "connection_id", "operation", "outcome", "actor"] {
            assert_eq!(cell(row, name), item[name].as_str().unwrap_or_default(), "{name}");
        }
        let at = chrono::DateTime::parse_from_rfc3339(&cell(row, "at")).unwrap();
        assert_eq!(Some(at), item["at"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()));
        for name in ["detail", "before", "after"] {
            let text = cell(row, name);
            let parsed: Value =
                if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
            assert_eq!(parsed, item[name], "{name}");
        }
    }
    assert!(csv_export.text.contains(r#"""say \""hi\"", ok"""#), "quoted: {}", csv_export.text);

    let first = send(&stack, Some("acme"), Method::GET, "/v1/audit/export?format=csv&limit=3", None).await;
    let token = first.next_page.expect("more to export");
    let last = send(
        &stack,
        Some("acme"),
        Method::GET,
        &format!("/v1/audit/export?format=json&page_token={token}"),
        None,
    )
    .await;
    assert_eq!(last.json["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(last.json["next_page_token"], Value::Null);

    let theirs = send(&stack, Some("globex"), Method::GET, "/v1/audit/export?format=csv", None).await;
    assert!(!theirs.text.contains(&a) && theirs.text.contains(&b), "{}", theirs.text);
}
