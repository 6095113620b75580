//! The `syncbridge` subcommands. The background stack's whereabouts live in `.syncbridge/` at the
//! repository root (or `$SYNCBRIDGE_HOME`): `stack.json` (pid and URLs) and `dev-key` (the local
//! token signing key, mode 0600).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use syncbridge::http::auth::DevKey;
use syncbridge_fakes::hubspot::FakeConfig;

use crate::local::{LocalStack, StackOptions};
use crate::stack;

#[derive(clap::Args, Clone, Debug)]
pub struct UpArgs {
    /// Contacts the HubSpot fake is seeded with.
    #[arg(long, default_value_t = 500)]
    pub contacts: usize,
    /// Seconds between schedule ticks (EventBridge fires every 60).
    #[arg(long, default_value_t = 60)]
    pub tick_seconds: u64,
}

#[derive(clap::Args, Clone, Debug)]
pub struct TenantArgs {
    #[arg(long, default_value = "local")]
    pub tenant: String,
}

#[derive(clap::Args, Clone, Debug)]
pub struct SyncArgs {
    #[arg(long, value_parser = ["hubspot"])]
    pub provider: String,
    /// The provider's API base URL (the local fake, or https://api.hubapi.com).
    #[arg(long)]
    pub base_url: String,
    /// An access token (a HubSpot private-app token works). Also read from SYNCBRIDGE_TOKEN.
    #[arg(long, env = "SYNCBRIDGE_TOKEN", hide_env_values = true)]
    pub token: String,
    #[arg(long, default_value = "local")]
    pub tenant: String,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_seconds: u64,
}

#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    /// Contacts the HubSpot fake is seeded with (each of the two tenants syncs them all).
    #[arg(long, default_value_t = 300)]
    pub contacts: usize,
    /// Contacts edited in HubSpot between the first and the second sync.
    #[arg(long, default_value_t = 15)]
    pub edits: usize,
    /// After the summary, keep the demo's stack running (schedule and worker included) and print
    /// the dashboard's URL for each tenant, until Ctrl-C.
    #[arg(long)]
    pub serve: bool,
}

/// What `up` leaves in `stack.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackInfo {
    pub pid: u32,
    pub api_url: String,
    pub hubspot_url: String,
    pub hubspot_token: String,
    pub moto_endpoint: String,
    pub table_name: String,
    pub jobs_queue_url: String,
    #[serde(default)]
    pub dlq_url: String,
    /// The Fireflies fake's API key (connections without a base URL reach the fake).
    #[serde(default)]
    pub fireflies_api_key: String,
}

fn home() -> Result<PathBuf> {
    let dir = match std::env::var_os("SYNCBRIDGE_HOME") {
        Some(d) => PathBuf::from(d),
        None => stack::repo_root()?.join(".syncbridge"),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn read_info() -> Result<Option<StackInfo>> {
    let path = home()?.join("stack.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    let info: StackInfo = serde_json::from_str(&text).context("reading stack.json")?;
    Ok(alive(info.pid).then_some(info))
}

#[allow(unsafe_code)]
fn alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

fn dev_key() -> Result<DevKey> {
    let text =
        std::fs::read_to_string(home()?.join("dev-key")).context("reading the dev key (is the stack up?)")?;
    Ok(DevKey::new(&SecretString::from(text.trim().to_owned()))?)
}

fn print_info(info: &StackInfo) {
    println!("Syncbridge local stack is up (pid {}).", info.pid);
    println!("  API (gateway):  {}/v1/...", info.api_url);
    println!("  Webhooks:       {}/webhooks/...", info.api_url);
    println!("  HubSpot fake:   {}  (token: {})", info.hubspot_url, info.hubspot_token);
    if !info.fireflies_api_key.is_empty() {
        println!("  Fireflies fake: connect without a base URL, API key {}", info.fireflies_api_key);
    }
    println!("  moto (AWS):     {}", info.moto_endpoint);
    println!("  Token for curl: syncbridge token --tenant local");
    match dashboard_url(info, "local") {
        Ok(url) => println!(
            "  Dashboard:      {url}\n                  (signed in as tenant `local` for 12 h; another tenant: syncbridge dashboard --tenant T)"
        ),
        Err(e) => println!("  Dashboard:      unavailable ({e})"),
    }
}

/// The local dashboard's URL, signing in as `tenant`: the token rides in the fragment, which the
/// browser never sends to a server; the dashboard moves it to session storage and drops it from
/// the address bar.
fn dashboard_url(info: &StackInfo, tenant: &str) -> Result<String> {
    let tenant = syncbridge::domain::TenantId::parse_external(tenant)?;
    let token = dev_key()?.sign(&tenant, &format!("dashboard-{tenant}"), DASHBOARD_TOKEN_TTL);
    Ok(format!("{}/#token={token}", info.api_url))
}

/// How long a dashboard link signs in for: a working day.
const DASHBOARD_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// Prints the dashboard's URL for `tenant` on the local stack (starting it if needed).
pub async fn dashboard(args: &TenantArgs) -> Result<()> {
    let info = ensure_up(&default_up()).await?;
    println!("{}", dashboard_url(&info, &args.tenant)?);
    Ok(())
}

/// Starts the background stack unless one runs; returns its info.
#[allow(unsafe_code)]
pub async fn ensure_up(args: &UpArgs) -> Result<StackInfo> {
    if let Some(info) = read_info()? {
        return Ok(info);
    }
    let home = home()?;
    let _ = std::fs::remove_file(home.join("stack.json"));
    let log = std::fs::File::create(home.join("daemon.log"))?;
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("daemon")
        .arg("--contacts")
        .arg(args.contacts.to_string())
        .arg("--tick-seconds")
        .arg(args.tick_seconds.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from our terminal session.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn().context("starting the stack daemon")?;
    for _ in 0..600 {
        if let Some(info) = read_info()? {
            return Ok(info);
        }
        if !alive(child.id()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(home.join("daemon.log")).unwrap_or_default();
    bail!("the local stack did not start; its log:\n{log}")
}

pub async fn up(args: &UpArgs) -> Result<()> {
    let info = ensure_up(args).await?;
    print_info(&info);
    Ok(())
}

#[allow(unsafe_code)]
pub async fn down() -> Result<()> {
    let home = home()?;
    let Some(info) = read_info()? else {
        println!("No local stack is running.");
        let _ = std::fs::remove_file(home.join("stack.json"));
        return Ok(());
    };
    // SAFETY: sending SIGTERM to the daemon we started.
    unsafe { libc::kill(info.pid as libc::pid_t, libc::SIGTERM) };
    for _ in 0..100 {
        if !alive(info.pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::fs::remove_file(home.join("stack.json"));
    println!("Stopped the local stack (pid {}).", info.pid);
    Ok(())
}

/// The background stack itself: runs until SIGTERM or Ctrl-C.
pub async fn daemon(args: &UpArgs) -> Result<()> {
    syncbridge::telemetry::init();
    let home = home()?;
    let secret = crate::local::random_secret();
    write_private(&home.join("dev-key"), secret.expose_secret())?;
    let token = "pat-local-hubspot".to_owned();
    let options = StackOptions {
        hubspot: FakeConfig {
            contacts: args.contacts,
            rate_limits: true,
            private_app_token: Some(token.clone()),
            ..FakeConfig::default()
        },
        fireflies: Some(syncbridge_fakes::fireflies::FakeConfig { transcripts: 3, ..Default::default() }),
        dev_key: Some(DevKey::new(&secret)?),
        // Nothing here reads the bus's events: a tap would only keep moto busy.
        tap_events: false,
        ..StackOptions::default()
    };
    let stack = LocalStack::start(options).await?;
    let info = StackInfo {
        pid: std::process::id(),
        api_url: stack.gateway.base_url(),
        hubspot_url: stack.hubspot.base_url(),
        hubspot_token: token,
        moto_endpoint: stack.moto.endpoint().to_owned(),
        table_name: stack.config.resources.table_name.clone(),
        jobs_queue_url: stack.config.resources.jobs_queue_url.clone(),
        dlq_url: stack.resources.dlq_url.clone(),
        fireflies_api_key: syncbridge_fakes::fireflies::DEFAULT_API_KEY.to_owned(),
    };
    let env = crate::fixtures::lambda_env(&stack.config, stack.moto.endpoint());
    write_private(&home.join(LAMBDA_ENV), &crate::fixtures::env_file(&env))?;
    std::fs::write(home.join("stack.json"), serde_json::to_vec_pretty(&info)?)?;
    tracing::info!(api = %info.api_url, "local stack up");

    run_until_stopped(&stack, Duration::from_secs(args.tick_seconds.max(1))).await?;
    let _ = std::fs::remove_file(home.join("stack.json"));
    drop(stack);
    Ok(())
}

/// Fires the schedule every `tick` and delivers queued jobs to the worker, as EventBridge and
/// Lambda's SQS poller would, until SIGTERM or Ctrl-C.
pub async fn run_until_stopped(stack: &LocalStack, tick: Duration) -> Result<()> {
    let runner = stack.runner.clone();
    let schedule = tokio::spawn({
        let runner = runner.clone();
        async move {
            let mut interval = tokio::time::interval(tick);
            loop {
                interval.tick().await;
                if let Err(e) = runner.fire_schedule(chrono::Utc::now()).await {
                    tracing::warn!(error = %e, "schedule tick failed");
                }
            }
        }
    });
    let deliver = tokio::spawn(async move {
        loop {
            match runner.deliver_once(Duration::ZERO).await {
                Ok(d) if d.received > 0 => {}
                Ok(_) => tokio::time::sleep(crate::runner::IDLE_POLL).await,
                Err(e) => {
                    tracing::warn!(error = %e, "delivery failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    schedule.abort();
    deliver.abort();
    Ok(())
}

/// The functions' environment for `cargo lambda watch --env-file`, written by the daemon.
const LAMBDA_ENV: &str = "lambda.env";

/// `syncbridge lambda`: the fixtures' connection in the running stack (created once), and the
/// `cargo lambda` commands that run the four functions against the stack.
pub async fn lambda() -> Result<()> {
    let info = ensure_up(&default_up()).await?;
    let env_path = home()?.join(LAMBDA_ENV);
    let text = std::fs::read_to_string(&env_path)
        .with_context(|| format!("reading {} (restart the stack: `syncbridge down`)", env_path.display()))?;
    let env: std::collections::HashMap<String, String> =
        crate::fixtures::parse_env_file(&text).into_iter().collect();
    let var =
        |k: &str| env.get(k).map(String::as_str).ok_or_else(|| anyhow!("{} lacks {k}", env_path.display()));
    let cipher = syncbridge::adapters::crypto::TokenCipher::from_base64_key(&SecretString::from(
        var("TOKEN_KEY")?.to_owned(),
    ))?;
    let sdk = stack::sdk_config(&info.moto_endpoint);
    let store = syncbridge::adapters::dynamo::DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        var("TABLE_NAME")?,
        var("AUDIT_TABLE_NAME")?,
        cipher,
        var("DUE_SHARDS")?.parse().context("DUE_SHARDS")?,
    );
    crate::fixtures::ensure_connection(&store, &info.hubspot_url, &info.hubspot_token, chrono::Utc::now())
        .await?;
    let fixture = |name: &str| format!("tests/fixtures/{name}");
    println!(
        "The fixtures' connection ({}, tenant {}) is in the local stack.",
        crate::fixtures::CONNECTION,
        crate::fixtures::TENANT
    );
    println!("Run the functions against the stack (cargo-lambda and zig from .venv):");
    println!("  export PATH=$PWD/.venv/bin:$PATH");
    // Loopback only: `watch` listens on every interface (`::`) unless told, and `invoke` asks `::1`.
    println!("  cargo lambda watch -A 127.0.0.1 --env-file {}", env_path.display());
    println!("then, from another shell:");
    for (function, event) in [
        ("dispatcher", crate::fixtures::SCHEDULED_EVENT),
        ("worker", crate::fixtures::SQS_BATCH),
        ("api", crate::fixtures::HTTP_REQUEST),
    ] {
        println!("  cargo lambda invoke -A 127.0.0.1 {function} --data-file {}", fixture(event));
    }
    println!("  curl http://127.0.0.1:9000/lambda-url/api/v1/openapi.json");
    Ok(())
}

fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// A small client of the local API.
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: SecretString,
}

impl ApiClient {
    pub fn new(base: String, token: String) -> Self {
        Self { http: reqwest::Client::new(), base, token: SecretString::from(token) }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{}", self.base, path))
            .bearer_auth(self.token.expose_secret());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.with_context(|| format!("{method} {path}"))?;
        let status = res.status();
        let value: Value = res.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {value}");
        }
        Ok(value)
    }
}

fn api_for(info: &StackInfo, tenant: &str) -> Result<ApiClient> {
    let token = sign(tenant)?;
    Ok(ApiClient::new(info.api_url.clone(), token))
}

fn sign(tenant: &str) -> Result<String> {
    let tenant = syncbridge::domain::TenantId::parse_external(tenant)?;
    Ok(dev_key()?.sign(&tenant, &format!("cli-{tenant}"), Duration::from_secs(3600)))
}

#[derive(clap::Args, Clone, Debug)]
pub struct RedriveArgs {
    /// The dead-letter queue (with --queue-url: in AWS, with the default credentials chain;
    /// without both: the local stack's).
    #[arg(long, requires = "queue_url")]
    pub dlq_url: Option<String>,
    /// The jobs queue the messages go back to.
    #[arg(long, requires = "dlq_url")]
    pub queue_url: Option<String>,
    /// Move at most this many messages.
    #[arg(long, default_value_t = 1000)]
    pub max: usize,
}

/// Moves dead-lettered jobs back into the jobs queue (same message group, fresh dedup id).
pub async fn redrive(args: &RedriveArgs) -> Result<()> {
    let (sdk, dlq, queue) = match (&args.dlq_url, &args.queue_url) {
        (Some(dlq), Some(queue)) => (aws_config::load_from_env().await, dlq.clone(), queue.clone()),
        _ => {
            let info = ensure_up(&default_up()).await?;
            (stack::sdk_config(&info.moto_endpoint), info.dlq_url.clone(), info.jobs_queue_url.clone())
        }
    };
    if dlq.is_empty() {
        bail!("this stack predates redrive; restart it with `syncbridge down` and `syncbridge up`");
    }
    let moved =
        syncbridge::adapters::sqs::redrive(&aws_sdk_sqs::Client::new(&sdk), &dlq, &queue, args.max).await?;
    println!("moved {moved} message(s) from the dead-letter queue back to the jobs queue");
    Ok(())
}

pub async fn token(args: &TenantArgs) -> Result<()> {
    ensure_up(&default_up()).await?;
    println!("{}", sign(&args.tenant)?);
    Ok(())
}

fn default_up() -> UpArgs {
    UpArgs { contacts: 500, tick_seconds: 60 }
}

pub async fn status(args: &TenantArgs) -> Result<()> {
    let info = ensure_up(&default_up()).await?;
    let api = api_for(&info, &args.tenant)?;
    let list = api.call(reqwest::Method::GET, "/v1/connections", None).await?;
    let items = list.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    if items.is_empty() {
        println!(
            "Tenant '{}' has no connections yet. Try: syncbridge sync --provider hubspot --base-url {} --token {}",
            args.tenant, info.hubspot_url, info.hubspot_token
        );
        return Ok(());
    }
    println!(
        "{:<28} {:<9} {:<8} {:<20} {:<20} {:>8}  ERROR",
        "CONNECTION", "PROVIDER", "STATUS", "LAST SYNC", "NEXT SYNC", "RECORDS"
    );
    for c in items {
        let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
        let when = |k: &str| {
            c.get(k)
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        };
        let records: u64 = c
            .get("record_counts")
            .and_then(Value::as_object)
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        println!(
            "{:<28} {:<9} {:<8} {:<20} {:<20} {:>8}  {}",
            s("id"),
            s("provider"),
            s("status"),
            when("last_sync_at"),
            when("next_sync_at"),
            records,
            s("last_error")
        );
    }
    Ok(())
}

pub async fn sync(args: &SyncArgs) -> Result<()> {
    let info = ensure_up(&default_up()).await?;
    let api = api_for(&info, &args.tenant)?;
    let list = api.call(reqwest::Method::GET, "/v1/connections", None).await?;
    let existing = list
        .get("items")
        .and_then(Value::as_array)
        .and_then(|items| {
            items.iter().find(|c| {
                c.get("provider").and_then(Value::as_str) == Some(args.provider.as_str())
                    && c.get("base_url").and_then(Value::as_str) == Some(args.base_url.trim_end_matches('/'))
            })
        })
        .cloned();
    let connection = match existing {
        Some(c) => c,
        None => {
            api.call(
                reqwest::Method::POST,
                "/v1/connections",
                Some(json!({ "provider": args.provider, "base_url": args.base_url.trim_end_matches('/'), "access_token": args.token })),
            )
            .await?
        }
    };
    let id = connection
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("connection has no id"))?
        .to_owned();
    let requested_at = chrono::Utc::now() - chrono::Duration::seconds(1);
    let started = api.call(reqwest::Method::POST, &format!("/v1/connections/{id}/sync"), None).await?;
    let job_id = started.get("job_id").and_then(Value::as_str).unwrap_or_default().to_owned();
    println!("Syncing connection {id} (job {job_id}) ...");
    let deadline = std::time::Instant::now() + Duration::from_secs(args.timeout_seconds);
    let mut reported_attempt = 0;
    // The connection itself (one read) is polled; runs and errors (queries, which moto answers by
    // scanning the table, so they slow a large sync down) only when its last run or status moved,
    // and errors every few seconds for retry notices.
    let mut last_seen: (Value, Value) = (Value::Null, Value::Null);
    let mut polls: u64 = 0;
    let runs = loop {
        if std::time::Instant::now() > deadline {
            bail!("the sync did not finish within {} s; see `syncbridge status`", args.timeout_seconds);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        polls += 1;
        let current = api.call(reqwest::Method::GET, &format!("/v1/connections/{id}"), None).await?;
        let seen = (
            current.get("last_run_id").cloned().unwrap_or(Value::Null),
            current.get("status").cloned().unwrap_or(Value::Null),
        );
        let moved = seen != last_seen;
        last_seen = seen;
        if moved {
            let runs =
                api.call(reqwest::Method::GET, &format!("/v1/connections/{id}/runs?limit=100"), None).await?;
            let runs = runs.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
            if let Some(done) = runs_since_job(&runs, &job_id) {
                break done;
            }
        }
        if !moved && !polls.is_multiple_of(10) {
            continue;
        }
        // A job can fail without a run (credentials rejected, retries used up): the connection
        // then shows `error`, and its errors name the job.
        let errors =
            api.call(reqwest::Method::GET, &format!("/v1/connections/{id}/errors?limit=20"), None).await?;
        match job_failure(&errors, &job_id, requested_at) {
            Some(JobFailure::GaveUp(why)) => {
                let help = api_info(&info.api_url, &id);
                bail!("the sync failed: {why}\n{}", advice_for_connection_error(&why, &help));
            }
            Some(JobFailure::Retrying { attempt, error, next_attempt_at }) if attempt > reported_attempt => {
                reported_attempt = attempt;
                println!("Attempt {attempt} failed ({error}); the worker retries at {next_attempt_at} ...");
            }
            _ => {}
        }
    };
    let sum = |k: &str| -> u64 {
        runs.iter().filter_map(|r| r.pointer(&format!("/counts/{k}")).and_then(Value::as_u64)).sum()
    };
    let duration: u64 = runs.iter().filter_map(|r| r.get("duration_ms").and_then(Value::as_u64)).sum();
    let last = runs.last().cloned().unwrap_or(Value::Null);
    let status = last.get("status").and_then(Value::as_str).unwrap_or("succeeded");
    let summary = format!(
        "in {} run(s), {:.1} s: {} records pulled ({} created, {} updated, {} deleted, {} unchanged); {} requests to {} ({} answered 429).",
        runs.len(),
        duration as f64 / 1000.0,
        sum("pulled"),
        sum("created"),
        sum("updated"),
        sum("deleted"),
        sum("unchanged"),
        sum("requests"),
        args.provider,
        sum("rate_limited")
    );
    match status {
        "partial" | "failed" => {
            let health =
                api.call(reqwest::Method::GET, &format!("/v1/connections/{id}/health"), None).await.ok();
            let report = object_report(&runs, health.as_ref());
            if status == "failed" {
                let why = last.get("error").and_then(Value::as_str).unwrap_or("no object type synced");
                bail!(
                    "the sync failed: no object type synced ({why})\n{report}\nOnce fixed, run `syncbridge sync` again (it retries at once)."
                );
            }
            println!("Partial sync {summary}\n{report}");
            println!(
                "The other object types synced. Once fixed, run `syncbridge sync` again: a manual sync retries failed object types at once (scheduled syncs retry them with backoff)."
            );
        }
        _ => {
            println!("Done {summary}");
            if let Some(err) = last.get("error").and_then(Value::as_str) {
                println!("Last run failed: {err}");
            }
        }
    }
    Ok(())
}

/// How to reach a connection through the API, for advice printed to a person.
struct ApiInfo {
    delete: String,
}

fn api_info(api_url: &str, id: &str) -> ApiInfo {
    ApiInfo {
        delete: format!(
            "curl -X DELETE -H \"Authorization: Bearer $(syncbridge token)\" {api_url}/v1/connections/{id}"
        ),
    }
}

/// What a person can do about a connection-level failure.
fn advice_for_connection_error(why: &str, api: &ApiInfo) -> String {
    if why.contains("rejected the credentials") {
        format!(
            "What to do: check the token. The connection keeps the token it was created with, so remove it first ({}) and run `syncbridge sync --token ...` again.",
            api.delete
        )
    } else {
        "What to do: see `syncbridge status`; once the cause is fixed, run `syncbridge sync` again."
            .to_owned()
    }
}

/// A failure of the job (or of any job started after `requested_at`, such as its continuation)
/// in `GET .../errors`.
#[derive(Debug, PartialEq)]
enum JobFailure {
    /// The worker gave up: the connection shows `error`.
    GaveUp(String),
    /// An attempt failed and SQS delivers the job again.
    Retrying { attempt: u64, error: String, next_attempt_at: String },
}

fn job_failure(
    errors: &Value,
    job_id: &str,
    requested_at: chrono::DateTime<chrono::Utc>,
) -> Option<JobFailure> {
    let items = errors.get("items").and_then(Value::as_array)?;
    let ours = items.iter().find(|e| {
        let at = e
            .get("at")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t >= requested_at);
        e.get("job_id").and_then(Value::as_str) == Some(job_id) || at
    })?;
    let error = ours.get("error").and_then(Value::as_str).unwrap_or("unknown error").to_owned();
    let next = ours.get("next_attempt_at").and_then(Value::as_str);
    let gave_up = errors.get("status").and_then(Value::as_str) == Some("error");
    match next {
        Some(next) if !gave_up => Some(JobFailure::Retrying {
            attempt: ours.get("attempt").and_then(Value::as_u64).unwrap_or(1),
            error,
            next_attempt_at: next.to_owned(),
        }),
        _ if gave_up => Some(JobFailure::GaveUp(
            errors.get("current_error").and_then(Value::as_str).map_or(error, str::to_owned),
        )),
        _ => None,
    }
}

/// One line per object type over the job's runs (counts summed, the last outcome and error), and
/// the health reasons that say what to do.
fn object_report(runs: &[Value], health: Option<&Value>) -> String {
    #[derive(Default)]
    struct Line {
        counts: [u64; 4],
        outcome: String,
        error: Option<String>,
    }
    let mut objects: std::collections::BTreeMap<String, Line> = std::collections::BTreeMap::new();
    for run in runs {
        for (name, o) in run.get("objects").and_then(Value::as_object).into_iter().flatten() {
            let line = objects.entry(name.clone()).or_default();
            for (n, k) in line.counts.iter_mut().zip(["pulled", "created", "updated", "deleted"]) {
                *n += o.get(k).and_then(Value::as_u64).unwrap_or(0);
            }
            line.outcome = o.get("outcome").and_then(Value::as_str).unwrap_or("-").to_owned();
            line.error = o.pointer("/error/message").and_then(Value::as_str).map(|m| {
                let attempts = o.pointer("/error/attempts").and_then(Value::as_u64).unwrap_or(1);
                let retry = o.pointer("/error/retry_at").and_then(Value::as_str).unwrap_or("-");
                format!("{m} ({attempts} attempt(s); next automatic attempt at {retry})")
            });
        }
    }
    let mut out = String::new();
    for (name, line) in objects {
        let [pulled, created, updated, deleted] = line.counts;
        match line.error {
            Some(error) => out.push_str(&format!("  {name:<12} {:<9} {error}\n", line.outcome.to_uppercase())),
            None => out.push_str(&format!(
                "  {name:<12} {:<9} {pulled} pulled ({created} created, {updated} updated, {deleted} deleted)\n",
                line.outcome
            )),
        }
    }
    let reasons =
        health.and_then(|h| h.get("reasons")).and_then(Value::as_array).cloned().unwrap_or_default();
    let fixes: Vec<String> = reasons
        .iter()
        .filter(|r| r.get("code").and_then(Value::as_str) == Some("object_failed"))
        .filter_map(|r| r.get("message").and_then(Value::as_str).map(|m| format!("  - {m}")))
        .collect();
    if !fixes.is_empty() {
        out.push_str("What to do:\n");
        out.push_str(&fixes.join("\n"));
        out.push('\n');
    }
    out.trim_end().to_owned()
}

/// The runs of the job `job_id` and its continuations, oldest first, once the last one finished
/// (`None` while it is still running).
fn runs_since_job(runs_newest_first: &[Value], job_id: &str) -> Option<Vec<Value>> {
    let pos =
        runs_newest_first.iter().position(|r| r.get("job_id").and_then(Value::as_str) == Some(job_id))?;
    let mine: Vec<Value> = runs_newest_first[..=pos].iter().rev().cloned().collect();
    let finished = mine.last().and_then(|r| r.get("status")).and_then(Value::as_str) != Some("continued");
    finished.then_some(mine)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(t).map(|t| t.with_timezone(&chrono::Utc)).unwrap_or_default()
    }

    #[test]
    fn a_rejected_job_of_an_errored_connection_is_a_failure_with_the_connection_error() {
        let errors = json!({
            "status": "error",
            "current_error": "the provider rejected the credentials",
            "items": [{ "job_id": "c1:m:1", "at": "2026-01-01T00:00:05Z", "error": "the provider rejected the credentials", "attempt": 1, "next_attempt_at": null }],
        });
        let failure = job_failure(&errors, "c1:m:1", at("2026-01-01T00:00:00Z"));
        assert_eq!(failure, Some(JobFailure::GaveUp("the provider rejected the credentials".into())));
        let advice =
            advice_for_connection_error("the provider rejected the credentials", &api_info("http://x", "c1"));
        assert!(advice.contains("DELETE") && advice.contains("--token"), "{advice}");
    }

    #[test]
    fn an_older_failure_or_an_error_status_without_one_is_not_this_jobs_failure() {
        let errors = json!({
            "status": "error",
            "current_error": "old",
            "items": [{ "job_id": "c1:m:0", "at": "2025-12-31T00:00:00Z", "error": "old", "next_attempt_at": null }],
        });
        assert_eq!(job_failure(&errors, "c1:m:1", at("2026-01-01T00:00:00Z")), None);
        let retrying = json!({
            "status": "pending",
            "items": [{ "job_id": "c1:m:1", "at": "2026-01-01T00:00:05Z", "error": "HTTP 503", "attempt": 2, "next_attempt_at": "2026-01-01T00:01:00Z" }],
        });
        assert!(matches!(
            job_failure(&retrying, "c1:m:1", at("2026-01-01T00:00:00Z")),
            Some(JobFailure::Retrying { attempt: 2, .. })
        ));
    }

    #[test]
    fn the_object_report_names_each_type_its_counts_the_failure_and_what_to_do() {
        let runs = [json!({ "status": "partial", "objects": {
            "contacts": { "outcome": "synced", "pulled": 3, "created": 3, "updated": 0, "deleted": 0 },
            "notes": { "outcome": "failed", "error": { "message": "HTTP 403 MISSING_SCOPES: no", "attempts": 1, "retry_at": "2026-01-01T00:05:00Z" } },
        }})];
        let health = json!({ "reasons": [{ "code": "object_failed", "message": "notes does not sync: grant it" }, { "code": "stale", "message": "x" }] });
        let report = object_report(&runs, Some(&health));
        assert!(report.contains("contacts     synced    3 pulled (3 created"), "{report}");
        assert!(
            report.contains("notes        FAILED    HTTP 403 MISSING_SCOPES: no (1 attempt(s)"),
            "{report}"
        );
        assert!(
            report.contains("What to do:\n  - notes does not sync: grant it") && !report.contains("- x"),
            "{report}"
        );
    }
}
