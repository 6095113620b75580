//! Handler tests of the lifecycle, settings and audit routes through the real router (`oneshot`)
//! over the in-memory stores: the rules a person meets (409s, 422s, audit entries, schedules).

use axum::http::{Method, StatusCode, header};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};

use super::audit::{AuditEntryView, CSV_HEADER};
use super::test_harness::{ApiHarness, Reply};
use crate::domain::{
    AuditEntry, AuditOutcome, ConnectionId, ConnectionStatus, Job, JobReason, Operation, RunCounts, RunId,
    RunStatus, SyncRun, TenantId,
};
use crate::ports::{AuditLog, ConnectionStore, RunStore};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).single().unwrap()
}

/// The API's harness, with these tests' helpers; bodies go as `application/merge-patch+json`.
struct Harness(ApiHarness);

impl std::ops::Deref for Harness {
    type Target = ApiHarness;
    fn deref(&self) -> &ApiHarness {
        &self.0
    }
}

fn harness() -> Harness {
    Harness(ApiHarness::new(t0()))
}

impl Harness {
    async fn send(&self, method: Method, uri: &str, tenant: Option<&str>, body: Option<&str>) -> Reply {
        let body = body.map(|b| ("application/merge-patch+json", b.to_owned()));
        self.send_request(self.request(method, uri, tenant, body)).await
    }

    async fn create(&self, tenant: &str) -> String {
        self.create_with(tenant, "tok", "ref").await
    }

    async fn connection(&self, tenant: &str, id: &str) -> crate::domain::Connection {
        let (t, c) = (TenantId::parse(tenant).unwrap(), ConnectionId::parse(id).unwrap());
        ConnectionStore::get(&*self.store, &t, &c).await.unwrap().unwrap()
    }

    fn audited(&self, op: Operation) -> Vec<AuditEntry> {
        self.store.audit_entries().into_iter().filter(|e| e.operation == op).collect()
    }
}

fn assert_problem(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.headers[header::CONTENT_TYPE], "application/problem+json", "{}", reply.text);
    assert_eq!(reply.json["code"], code, "{}", reply.text);
}

#[tokio::test]
async fn pausing_takes_a_connection_off_the_schedule_refuses_syncs_and_resume_makes_it_due_now() {
    let h = harness();
    let id = h.create("acme").await;
    let pause = format!("/v1/connections/{id}/pause");
    let paused = h.send(Method::POST, &pause, Some("acme"), None).await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.text);
    assert_eq!(
        (paused.json["paused"].clone(), paused.json["next_sync_at"].clone()),
        (json!(true), Value::Null)
    );
    for shard in 0..crate::config::DEFAULT_DUE_SHARDS {
        assert!(h.store.due(shard, t0() + Duration::days(1), 100).await.unwrap().is_empty());
    }
    let again = h.send(Method::POST, &pause, Some("acme"), None).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(h.audited(Operation::ConnectionPaused).len(), 1, "a second pause is a no-op");

    let sync = h.send(Method::POST, &format!("/v1/connections/{id}/sync"), Some("acme"), None).await;
    assert_problem(&sync, StatusCode::CONFLICT, "connection_paused");
    let retry = h.send(Method::POST, &format!("/v1/connections/{id}/retry"), Some("acme"), None).await;
    assert_problem(&retry, StatusCode::CONFLICT, "connection_paused");
    assert!(h.queue.jobs().is_empty());
    let view = h.send(Method::GET, &format!("/v1/connections/{id}"), Some("acme"), None).await;
    assert_eq!(view.json["paused"], true);

    h.clock.advance(Duration::minutes(90));
    let resume = format!("/v1/connections/{id}/resume");
    let resumed = h.send(Method::POST, &resume, Some("acme"), None).await;
    assert_eq!(resumed.json["paused"], false, "{}", resumed.text);
    let stored = h.connection("acme", &id).await;
    assert_eq!(
        stored.next_sync_at,
        Some(t0() + Duration::minutes(90) + Duration::seconds(1)),
        "due from the next whole second"
    );
    h.send(Method::POST, &resume, Some("acme"), None).await;
    assert_eq!(h.audited(Operation::ConnectionResumed).len(), 1);
    let entry = &h.audited(Operation::ConnectionPaused)[0];
    assert_eq!(entry.actor, "user:acme-user");
    assert_eq!(entry.after, Some(json!({ "paused": true, "next_sync_at": null })));
}

#[tokio::test]
async fn a_settings_patch_is_validated_saved_audited_and_a_longer_interval_moves_the_next_sync() {
    let h = harness();
    let id = h.create("acme").await;
    let mut c = h.connection("acme", &id).await;
    c.next_sync_at = Some(t0() + Duration::minutes(10));
    h.store.save_settings(&c).await.unwrap();
    let uri = format!("/v1/connections/{id}/settings");
    let patch = json!({ "interval_minutes": 60, "conflict_policy": "last_write_wins", "own_domains": ["Acme.com"], "auto_push": { "create_note": true } });
    let reply = h.send(Method::PATCH, &uri, Some("acme"), Some(&patch.to_string())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json["interval_minutes"], 60);
    assert_eq!(reply.json["own_domains"], json!(["acme.com"]));
    assert_eq!(reply.json["conflict_policy"]["fallback"], "last_write_wins");
    assert_eq!(reply.json["settings_version"], 2);
    let stored = h.connection("acme", &id).await;
    assert_eq!(stored.next_sync_at, Some(t0() + Duration::minutes(55)));
    assert!(stored.settings.auto_pushes(crate::domain::PushAction::CreateNote));
    let audited = h.audited(Operation::SettingsChanged);
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].before.as_ref().map(|b| b["interval_minutes"].clone()), Some(json!(15)));
    assert_eq!(audited[0].after.as_ref().map(|a| a["interval_minutes"].clone()), Some(json!(60)));
    assert!(audited[0].after.as_ref().is_some_and(|a| a.get("note_prefix").is_none()), "only changed keys");

    let same = h.send(Method::PATCH, &uri, Some("acme"), Some(&patch.to_string())).await;
    assert_eq!(same.json["settings_version"], 2, "an empty change writes nothing");
    assert_eq!(h.audited(Operation::SettingsChanged).len(), 1);

    for bad in [
        r#"{"interval_minutes":4}"#,
        r#"{"interval_minutes":1441}"#,
        r#"{"conflict_policy":"yolo"}"#,
        r#"{"interval_minutes":"15"}"#,
        "[]",
    ] {
        let reply = h.send(Method::PATCH, &uri, Some("acme"), Some(bad)).await;
        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    let broken = h.send(Method::PATCH, &uri, Some("acme"), Some("{\"interval_minutes\":")).await;
    assert_problem(&broken, StatusCode::BAD_REQUEST, "malformed_json");
    let theirs = h.send(Method::PATCH, &uri, Some("globex"), Some(r#"{"interval_minutes":30}"#)).await;
    assert_problem(&theirs, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(h.connection("acme", &id).await.interval_minutes, 60);
}

#[tokio::test]
async fn a_settings_change_never_conflicts_with_the_workers_state_writes() {
    let h = harness();
    let id = h.create("acme").await;
    let worker_copy = h.connection("acme", &id).await;
    let reply = h
        .send(
            Method::PATCH,
            &format!("/v1/connections/{id}/settings"),
            Some("acme"),
            Some(r#"{"note_prefix":"[BOT]"}"#),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let mut w = worker_copy;
    w.status = ConnectionStatus::Synced;
    h.store.save_state(&w).await.expect("the worker's version is untouched by settings");
    let stored = h.connection("acme", &id).await;
    assert_eq!((stored.settings.note_prefix.as_str(), stored.status), ("[BOT]", ConnectionStatus::Synced));
}

#[tokio::test]
async fn errors_show_the_retry_state_and_the_retry_action_once_the_worker_gave_up() {
    let h = harness();
    let id = h.create("acme").await;
    let (t, c) = (TenantId::parse("acme").unwrap(), ConnectionId::parse(&id).unwrap());
    let failure = |attempt: u32, next: Option<DateTime<Utc>>, minutes: i64| {
        AuditEntry::new(t.clone(), Operation::Retry, AuditOutcome::Failure, "worker", t0() + Duration::minutes(minutes))
            .connection(&c)
            .detail(json!({ "job_id": "j1", "error": "provider temporarily failed: 503", "retryable": true, "attempt": attempt, "max_attempts": 5, "next_attempt_at": next }))
    };
    let next = t0() + Duration::minutes(3);
    h.store
        .append(&[failure(1, Some(t0() + Duration::minutes(2)), 1), failure(2, Some(next), 2)])
        .await
        .unwrap();
    let uri = format!("/v1/connections/{id}/errors");
    let reply = h.send(Method::GET, &uri, Some("acme"), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json["retry"]["state"], "retrying");
    assert_eq!(reply.json["retry"]["attempts"], 2);
    assert_eq!(reply.json["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(reply.json["items"][0]["error"], "provider temporarily failed: 503");
    assert_eq!(reply.json["retry_action"], Value::Null);
    let health = h.send(Method::GET, &format!("/v1/connections/{id}/health"), Some("acme"), None).await;
    assert_eq!(health.json["status"], "degraded", "{}", health.text);

    let mut conn = h.connection("acme", &id).await;
    conn.status = ConnectionStatus::Error;
    conn.last_error = Some("provider temporarily failed: 503".into());
    h.store.save_state(&conn).await.unwrap();
    let gave_up = h.send(Method::GET, &uri, Some("acme"), None).await;
    assert_eq!(gave_up.json["retry"]["state"], "failed");
    assert_eq!(gave_up.json["current_error"], "provider temporarily failed: 503");
    assert_eq!(
        gave_up.json["retry_action"],
        json!({ "method": "POST", "href": format!("/v1/connections/{id}/retry") })
    );
    let health = h.send(Method::GET, &format!("/v1/connections/{id}/health"), Some("acme"), None).await;
    assert_eq!(health.json["status"], "failed");
    assert_eq!(health.json["reasons"][0]["code"], "sync_error");
    let other = h.send(Method::GET, &uri, Some("globex"), None).await;
    assert_problem(&other, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn status_lists_each_object_type_of_the_provider() {
    let h = harness();
    let id = h.create("acme").await;
    let mut conn = h.connection("acme", &id).await;
    conn.cursors.insert(crate::domain::ObjectType::Contacts, crate::domain::SyncCursor::new("c1"));
    conn.record_counts.insert(crate::domain::ObjectType::Contacts, 7);
    conn.last_sync_at = Some(t0());
    conn.status = ConnectionStatus::Synced;
    h.store.save_state(&conn).await.unwrap();
    let reply = h.send(Method::GET, &format!("/v1/connections/{id}/status"), Some("acme"), None).await;
    let objects = reply.json["objects"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = objects.iter().filter_map(|o| o["object"].as_str()).collect();
    assert_eq!(names, vec!["contacts", "companies", "deals", "notes", "activities"], "{}", reply.text);
    assert_eq!(objects[0]["state"], "synced");
    assert_eq!(objects[0]["records"], 7);
    assert_eq!(objects[1]["state"], "not_started");
    assert_eq!(objects[1]["last_synced_at"], Value::Null);
}

#[tokio::test]
async fn the_audit_query_filters_pages_and_never_shows_another_tenants_entries() {
    let h = harness();
    let a = h.create("acme").await;
    let b = h.create("globex").await;
    for i in 0..5 {
        h.clock.advance(Duration::minutes(1));
        h.send(
            Method::PATCH,
            &format!("/v1/connections/{a}/settings"),
            Some("acme"),
            Some(&json!({ "interval_minutes": 20 + i }).to_string()),
        )
        .await;
    }
    h.send(
        Method::PATCH,
        &format!("/v1/connections/{b}/settings"),
        Some("globex"),
        Some(r#"{"interval_minutes":30}"#),
    )
    .await;

    let page = h.send(Method::GET, "/v1/audit?operation=settings_changed&limit=2", Some("acme"), None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.json["items"].as_array().map(Vec::len), Some(2));
    let token = page.json["next_page_token"].as_str().unwrap().to_owned();
    let rest = h
        .send(
            Method::GET,
            &format!("/v1/audit?operation=settings_changed&limit=10&page_token={token}"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(rest.json["items"].as_array().map(Vec::len), Some(3), "{}", rest.text);
    let all = h.send(Method::GET, "/v1/audit?limit=200", Some("acme"), None).await;
    assert!(!all.text.contains(&b), "globex's connection never shows up");
    let created = h.send(Method::GET, &format!("/v1/audit?connection_id={b}"), Some("acme"), None).await;
    assert_eq!(created.json["items"], json!([]));
    let window = format!(
        "/v1/audit?from={}&to={}",
        (t0() + Duration::minutes(2)).to_rfc3339(),
        (t0() + Duration::minutes(3)).to_rfc3339()
    );
    let windowed = h.send(Method::GET, &window.replace('+', "%2B"), Some("acme"), None).await;
    assert_eq!(windowed.json["items"].as_array().map(Vec::len), Some(2), "{}", windowed.text);

    for bad in [
        "/v1/audit?operation=launch",
        "/v1/audit?outcome=meh",
        "/v1/audit?from=yesterday",
        "/v1/audit?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z",
        "/v1/audit?page_token=%25%25forged",
        "/v1/audit?limit=0",
        "/v1/audit/export?format=xml",
        "/v1/audit/export?limit=5001",
    ] {
        assert_problem(
            &h.send(Method::GET, bad, Some("acme"), None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        );
    }
    for uri in ["/v1/audit", "/v1/audit/export"] {
        assert_problem(&h.send(Method::GET, uri, None, None).await, StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

#[tokio::test]
async fn the_csv_export_parses_back_to_the_json_export() {
    let h = harness();
    let a = h.create("acme").await;
    let refused = h
        .send(
            Method::PATCH,
            &format!("/v1/connections/{a}/settings"),
            Some("acme"),
            Some(r#"{"note_prefix":"say \"hi\", then\nleave"}"#),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a control character in the prefix is refused"
    );
    h.send(
        Method::PATCH,
        &format!("/v1/connections/{a}/settings"),
        Some("acme"),
        Some(r#"{"note_prefix":"say \"hi\", then"}"#),
    )
    .await;
    h.send(Method::POST, &format!("/v1/connections/{a}/pause"), Some("acme"), None).await;

    let json_export = h.send(Method::GET, "/v1/audit/export?format=json", Some("acme"), None).await;
    assert_eq!(json_export.status, StatusCode::OK, "{}", json_export.text);
    let disposition = json_export.headers[header::CONTENT_DISPOSITION].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"audit-acme-") && disposition.ends_with(".json\"")
    );
    let from_json: Vec<AuditEntryView> = serde_json::from_value(json_export.json["items"].clone()).unwrap();
    assert_eq!(from_json.len(), 3);

    let csv_export = h.send(Method::GET, "/v1/audit/export?format=csv", Some("acme"), None).await;
    assert_eq!(csv_export.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    let mut reader = csv::Reader::from_reader(csv_export.text.as_bytes());
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), CSV_HEADER.to_vec());
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().unwrap();
    assert_eq!(rows.len(), from_json.len());
    for (row, entry) in rows.iter().zip(&from_json) {
        assert_eq!(
            row.iter().collect::<Vec<_>>(),
            super::audit::csv_row(entry).iter().map(String::as_str).collect::<Vec<_>>()
        );
        let at = DateTime::parse_from_rfc3339(&row[1]).unwrap();
        assert_eq!(at, entry.at);
        let after: Value =
            if row[10].is_empty() { Value::Null } else { serde_json::from_str(&row[10]).unwrap() };
        assert_eq!(Some(after).filter(|v| !v.is_null()), entry.after);
    }
    let paged = h.send(Method::GET, "/v1/audit/export?format=csv&limit=1", Some("acme"), None).await;
    let token =
        paged.headers.get(super::audit::NEXT_PAGE_HEADER).and_then(|v| v.to_str().ok()).unwrap().to_owned();
    let next = h
        .send(
            Method::GET,
            &format!("/v1/audit/export?format=json&limit=5&page_token={token}"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(next.json["items"].as_array().map(Vec::len), Some(2), "{}", next.text);
    let theirs = h.send(Method::GET, "/v1/audit/export?format=csv", Some("globex"), None).await;
    assert_eq!(csv::Reader::from_reader(theirs.text.as_bytes()).records().count(), 0);
}

#[tokio::test]
async fn the_run_summary_reports_counts_and_the_success_rate() {
    let h = harness();
    let id = h.create("acme").await;
    let reply = h.send(Method::GET, &format!("/v1/connections/{id}/runs/summary"), Some("acme"), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!((reply.json["runs"].clone(), reply.json["success_rate"].clone()), (json!(0), Value::Null));
    let conn = h.connection("acme", &id).await;
    let c = conn.connection_id.clone();
    for (i, (status, ms)) in
        [(RunStatus::Succeeded, 1000), (RunStatus::Continued, 3000), (RunStatus::Succeeded, 2000)]
            .into_iter()
            .enumerate()
    {
        let conn = h.connection("acme", &id).await;
        let run = SyncRun {
            tenant_id: conn.tenant_id.clone(),
            connection_id: c.clone(),
            run_id: RunId::generate(),
            job_id: Job::requested_id(&c, JobReason::Manual),
            reason: JobReason::Manual,
            status,
            started_at: t0() + Duration::minutes(i as i64),
            finished_at: t0() + Duration::minutes(i as i64) + Duration::milliseconds(ms),
            duration_ms: ms as u64,
            counts: RunCounts::default(),
            error: None,
            objects: Default::default(),
        };
        h.store.finish(&conn, &run).await.unwrap();
    }
    let failed = AuditEntry::new(
        conn.tenant_id.clone(),
        Operation::Retry,
        AuditOutcome::Failure,
        "worker",
        t0() + Duration::minutes(1),
    )
    .connection(&c)
    .detail(
        json!({ "job_id": "j", "error": "503", "attempt": 1, "max_attempts": 5, "next_attempt_at": null }),
    );
    h.store.append(&[failed]).await.unwrap();
    let reply = h.send(Method::GET, &format!("/v1/connections/{id}/runs/summary"), Some("acme"), None).await;
    assert_eq!(
        (
            reply.json["runs"].clone(),
            reply.json["succeeded"].clone(),
            reply.json["continued"].clone(),
            reply.json["failed_attempts"].clone()
        ),
        (json!(3), json!(2), json!(1), json!(1)),
        "{}",
        reply.text
    );
    assert_eq!(reply.json["mean_duration_ms"], 2000.0);
    let rate = reply.json["success_rate"].as_f64().unwrap();
    assert!((rate - 2.0 / 3.0).abs() < 1e-9, "{rate}");
    let bad =
        h.send(Method::GET, &format!("/v1/connections/{id}/runs/summary?limit=0"), Some("acme"), None).await;
    assert_problem(&bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
}
