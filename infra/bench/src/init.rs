//! Cold starts of the four function binaries, measured locally: each bootstrap is started the way
//! Lambda starts it (the runtime API's address in `AWS_LAMBDA_RUNTIME_API`, the function's
//! environment, here pointing at moto and the fakes) against a minimal emulator of the Lambda
//! runtime API, which serves it one event.
//!
//! Two times per start, from `exec`: **init**, to its first `GET .../invocation/next` (what Lambda
//! reports as Init Duration: the main function's wiring, before any event), and **first request**,
//! to the response it posts for that event (the cold start a caller sees, less Lambda's own
//! sandbox and download time, which no local measurement has).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;

/// What one start measured.
#[derive(Debug, Clone, Copy)]
struct Start {
    init: Duration,
    first_response: Duration,
}

/// A function's cold starts: medians over the runs, and each run.
#[derive(Debug, Clone, Serialize)]
pub struct ColdStart {
    pub function: String,
    pub runs: usize,
    pub init_ms: f64,
    pub first_response_ms: f64,
    pub init_ms_each: Vec<f64>,
    pub first_response_ms_each: Vec<f64>,
    /// The status or outcome of the first response (`statusCode`, or that a batch had no
    /// failure), so a start that answered with an error does not pass as a cold start.
    pub answer: String,
}

#[derive(Default)]
struct Timeline {
    next_at: Option<Instant>,
    response_at: Option<Instant>,
    response: Option<Value>,
    error: Option<String>,
}

#[derive(Clone)]
struct Emulator {
    event: Arc<Value>,
    timeline: Arc<Mutex<Timeline>>,
    answered: Arc<Notify>,
}

const REQUEST_ID: &str = "00000000-0000-4000-8000-000000000001";

async fn next(State(e): State<Emulator>) -> Response {
    let first = {
        let mut t = e.timeline.lock().unwrap_or_else(PoisonError::into_inner);
        let first = t.next_at.is_none();
        t.next_at.get_or_insert_with(Instant::now);
        first
    };
    if !first {
        // The function waits for its next event; the benchmark stops it instead.
        std::future::pending::<()>().await;
    }
    let deadline = chrono::Utc::now().timestamp_millis() + 120_000;
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", HeaderValue::from_static(REQUEST_ID));
    if let Ok(v) = HeaderValue::from_str(&deadline.to_string()) {
        headers.insert("lambda-runtime-deadline-ms", v);
    }
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:bench"),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        HeaderValue::from_static("Root=1-00000000-000000000000000000000000"),
    );
    (StatusCode::OK, headers, e.event.to_string()).into_response()
}

async fn response(State(e): State<Emulator>, body: String) -> StatusCode {
    {
        let mut t = e.timeline.lock().unwrap_or_else(PoisonError::into_inner);
        t.response_at.get_or_insert_with(Instant::now);
        t.response = serde_json::from_str(&body).ok();
    }
    e.answered.notify_one();
    StatusCode::ACCEPTED
}

async fn error(State(e): State<Emulator>, body: String) -> StatusCode {
    {
        let mut t = e.timeline.lock().unwrap_or_else(PoisonError::into_inner);
        t.response_at.get_or_insert_with(Instant::now);
        t.error = Some(body);
    }
    e.answered.notify_one();
    StatusCode::ACCEPTED
}

/// Starts `bootstrap` once against a fresh emulator serving `event`; stops it after its answer.
async fn start_once(
    bootstrap: &Path,
    env: &[(String, String)],
    event: &Value,
) -> anyhow::Result<(Start, Value)> {
    let emulator = Emulator {
        event: Arc::new(event.clone()),
        timeline: Arc::new(Mutex::new(Timeline::default())),
        answered: Arc::new(Notify::new()),
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(emulator.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (stop, server) = syncbridge_local::gateway::serve_in_background(listener, app);
    let name = bootstrap.file_name().and_then(|n| n.to_str()).unwrap_or("bootstrap").to_owned();
    let mut cmd = tokio::process::Command::new(bootstrap);
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", format!("syncbridge-{name}"))
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/syncbridge-{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let spawned = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {}", bootstrap.display()))?;
    let waited = tokio::time::timeout(Duration::from_secs(120), emulator.answered.notified()).await;
    let _ = child.kill().await;
    let _ = stop.send(());
    let _ = server.await;
    waited.with_context(|| format!("{name} did not answer its first event within 120 s"))?;
    let t = emulator.timeline.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(e) = &t.error {
        anyhow::bail!("{name} answered its first event with an error: {e}");
    }
    let (Some(next_at), Some(response_at)) = (t.next_at, t.response_at) else {
        anyhow::bail!("{name} answered without asking for an event");
    };
    Ok((
        Start { init: next_at - spawned, first_response: response_at - spawned },
        t.response.clone().unwrap_or(Value::Null),
    ))
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// What an answer says in a word: an HTTP status, or whether an SQS batch reported failures.
fn describe(answer: &Value) -> String {
    if let Some(code) = answer.get("statusCode") {
        return format!("HTTP {code}");
    }
    if let Some(failures) = answer.get("batchItemFailures").and_then(Value::as_array) {
        return format!("{} batch item failure(s)", failures.len());
    }
    if answer.get("enqueued").is_some() {
        return format!("dispatched: {answer}");
    }
    answer.to_string()
}

/// Starts `bootstrap` once per event (each start gets its own), and keeps the medians.
pub async fn measure(
    function: &str,
    bootstrap: &Path,
    env: &[(String, String)],
    events: &[Value],
) -> anyhow::Result<ColdStart> {
    let mut init = Vec::new();
    let mut first = Vec::new();
    let mut answer = String::new();
    for event in events {
        let (s, a) = start_once(bootstrap, env, event).await?;
        init.push(s.init.as_secs_f64() * 1000.0);
        first.push(s.first_response.as_secs_f64() * 1000.0);
        answer = describe(&a);
    }
    Ok(ColdStart {
        function: function.to_owned(),
        runs: init.len(),
        init_ms: median(&init),
        first_response_ms: median(&first),
        init_ms_each: init,
        first_response_ms_each: first,
        answer,
    })
}

/// The release build of a function binary next to this benchmark's own binary (`make bench`
/// builds both).
pub fn bootstrap_path(function: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the benchmark's directory")?;
    let path = dir.join(function);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build it with `cargo build --release -p {function}`",
        path.display()
    );
    Ok(path)
}

/// Cold starts of `functions` (`runs` each), against a local stack holding the fixtures'
/// connection: the dispatcher gets the scheduled event, the worker the SQS batch (a fresh job id
/// each start, so each is a sync and not a redelivery), the API the API Gateway request, and the
/// webhooks function a HubSpot notification without a signature (answered 401).
pub async fn cold_starts(functions: &[&str], runs: usize) -> anyhow::Result<Vec<ColdStart>> {
    use syncbridge_local::fixtures;
    let stack = syncbridge_local::LocalStack::start(syncbridge_local::StackOptions {
        hubspot: syncbridge_fakes::hubspot::FakeConfig {
            contacts: 0,
            private_app_token: Some("pat-bench-hubspot".into()),
            ..Default::default()
        },
        tap_events: false,
        ..Default::default()
    })
    .await?;
    fixtures::ensure_connection(
        stack.deps.connections.as_ref(),
        &stack.hubspot.base_url(),
        "pat-bench-hubspot",
        chrono::Utc::now(),
    )
    .await?;
    let env = fixtures::lambda_env(&stack.config, stack.moto.endpoint());
    let read = |name: &str| -> anyhow::Result<Value> {
        let text = std::fs::read_to_string(fixtures::path(name)?)?;
        Ok(serde_json::from_str(&text)?)
    };
    let mut out = Vec::new();
    for &function in functions {
        let events: Vec<Value> = (0..runs.max(1))
            .map(|i| -> anyhow::Result<Value> {
                Ok(match function {
                    "dispatcher" => read(fixtures::SCHEDULED_EVENT)?,
                    "worker" => {
                        let mut e = read(fixtures::SQS_BATCH)?;
                        let job = format!(
                            r#"{{"v":1,"job_id":"{c}:m:bench{i}","tenant_id":"{t}","connection_id":"{c}","kind":"sync","reason":"manual","enqueued_at":"2026-12-05T12:00:00Z"}}"#,
                            c = fixtures::CONNECTION,
                            t = fixtures::TENANT
                        );
                        e["Records"][0]["body"] = Value::String(job);
                        e
                    }
                    "api" => read(fixtures::HTTP_REQUEST)?,
                    "webhooks" => {
                        let mut e = read(fixtures::HTTP_REQUEST)?;
                        e["rawPath"] = "/webhooks/hubspot".into();
                        e["routeKey"] = "POST /webhooks/{proxy+}".into();
                        e["requestContext"]["http"]["method"] = "POST".into();
                        e["requestContext"]["http"]["path"] = "/webhooks/hubspot".into();
                        e["requestContext"]["authorizer"] = Value::Null;
                        e["body"] = "[]".into();
                        e
                    }
                    other => anyhow::bail!("no event for {other}"),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        out.push(measure(function, &bootstrap_path(function)?, &env, &events).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_take_the_middle_value_or_the_mean_of_the_two_middle_ones() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn answers_are_described_by_status_or_by_failed_batch_items() {
        assert_eq!(describe(&serde_json::json!({"statusCode": 200, "body": ""})), "HTTP 200");
        assert_eq!(describe(&serde_json::json!({"batchItemFailures": []})), "0 batch item failure(s)");
    }
}
