//! Faults of the network and of providers' front ends, injected by a [`FaultProxy`] in front of the
//! fakes: a chaos pull through the whole local path (each pull must complete in one job, writing
//! every record once), and a table of faults through each adapter (each fault must come out as
//! exactly one error class; single transient faults must be absorbed by the in-place retries).
//!
//! moto is the chaos pull's bottleneck: 2,500 records took 101 s to sync (about 25 records a
//! second into DynamoDB and the bus) and 37 s to read back from the event tap on 2 cores, so the
//! issue's 5,000 HubSpot and 20,000 Salesforce contacts (about 17 minutes, and the Salesforce
//! Bulk API path) run with `SYNCBRIDGE_CHAOS=full`; CI pulls 300 and 700.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use syncbridge_fakes::hubspot::FakeConfig as HubspotConfig;
use syncbridge_fakes::salesforce::{FakeConfig as SalesforceConfig, SeedCounts};
use syncbridge_local::proxy::{Fault, FaultProxy, Schedule};
use syncbridge_tests::*;

const DRAIN: Duration = Duration::from_secs(600);

/// The `(scheme://host:port, path)` of a base URL.
fn split_origin(url: &str) -> (String, String) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => (url[..after_scheme + i].to_owned(), url[after_scheme + i..].to_owned()),
        None => (url.to_owned(), String::new()),
    }
}

fn n(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(u64::MAX)
}

/// The faults of the chaos pull, in rotation: every one is transient (retried in place).
/// `error` is the provider's 500 body, `rate` its 429 body.
fn chaos_faults(error: Value, rate: Value) -> Vec<Fault> {
    vec![
        Fault::json(500, error),
        Fault::bad_gateway_html(),
        Fault::unavailable_empty(),
        Fault::json(429, rate.clone()).with_retry_after(1),
        Fault::json(429, rate),
        Fault::Reset,
        Fault::ResetAfterForward,
        Fault::ShortBody,
        Fault::CutBody,
    ]
}

const CHAOS_KINDS: [&str; 9] =
    ["500", "502", "503", "429+retry-after", "429", "reset", "reset_after_forward", "short_body", "cut_body"];

async fn create(stack: &LocalStack, tenant: &str, body: Value) -> String {
    let created =
        api(stack, tenant).unwrap().call(Method::POST, "/v1/connections", Some(body)).await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

/// One run, succeeded, that created `count` contacts (pulled once each) and nothing else.
async fn assert_one_clean_run(stack: &LocalStack, tenant: &str, id: &str, count: u64) -> Value {
    let runs = get(stack, tenant, &format!("/v1/connections/{id}/runs")).await.unwrap();
    let items = runs["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "one job, one run: {runs}");
    let run = &items[0];
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["reason"], "schedule", "not a continuation or a retry: {run}");
    for (counter, expected) in [("pulled", count), ("created", count), ("updated", 0), ("unchanged", 0)] {
        assert_eq!(n(run, &format!("/counts/{counter}")), expected, "{counter}: {run}");
    }
    let conn = get(stack, tenant, &format!("/v1/connections/{id}")).await.unwrap();
    assert_eq!(conn["status"], "synced", "{conn}");
    assert_eq!(n(&conn, "/record_counts/contacts"), count, "{conn}");
    run.clone()
}

/// Contacts of the chaos pull in HubSpot and Salesforce: `SYNCBRIDGE_CHAOS=full` for the issue's
/// 5,000 and 20,000 (Salesforce then exports with the Bulk API), else a CI-sized pull (see the
/// module's note on moto's speed).
/// Also how often a request is faulted: one in ten at full size; at CI size (about 25 requests in
/// all) one in two, so that every kind is injected at least once.
fn chaos_counts() -> (usize, usize, u64) {
    match std::env::var("SYNCBRIDGE_CHAOS").as_deref() {
        Ok("full") => (5_000, 20_000, 10),
        _ => (300, 700, 2),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_and_salesforce_pulls_through_a_fault_injecting_proxy_each_complete_in_one_job_writing_every_record_once()
 {
    let started = Instant::now();
    let (hubspot_count, salesforce_count, every) = chaos_counts();
    let mut stack = LocalStack::start(StackOptions {
        hubspot: HubspotConfig {
            contacts: hubspot_count,
            rate_limits: false,
            private_app_token: Some(HUBSPOT_TOKEN.into()),
            ..HubspotConfig::default()
        },
        salesforce: Some(SalesforceConfig {
            seed_counts: SeedCounts { contacts: salesforce_count, ..SeedCounts::default() },
            session_token: None,
            ..SalesforceConfig::default()
        }),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    // What this test holds is that faults are absorbed in place (no continuation, no retry), not
    // how fast: a machine loaded by parallel builds can take more than the 120 s of one worker
    // invocation for these pulls, which would end the run in a continuation for want of time.
    // The deadline's own path is tested by the worker's tests (shared/src/sync/worker.rs).
    stack.runner.worker_timeout = Duration::from_secs(900);
    let hubspot = FaultProxy::start(&stack.hubspot.base_url(), Schedule::Off).await.unwrap();
    let fake = stack.salesforce.as_ref().unwrap();
    let salesforce = FaultProxy::start(&fake.base_url(), Schedule::Off).await.unwrap();
    fake.state().set_instance_url(Some(salesforce.base_url()));

    let hubspot_id = connect(&stack, "acme", Some(&hubspot.base_url())).await.unwrap();
    let issued = fake.issue_token();
    let salesforce_id = create(
        &stack,
        "globex",
        json!({ "provider": "salesforce", "base_url": salesforce.base_url(), "access_token": issued.access_token, "refresh_token": issued.refresh_token }),
    )
    .await;
    stack.take_events().await.unwrap();

    hubspot.set_schedule(Schedule::Rotation {
        every,
        faults: chaos_faults(
            json!({ "status": "error", "message": "internal error", "correlationId": "c0ffee", "category": "INTERNAL_ERROR" }),
            json!({ "status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT", "correlationId": "c0ffee", "policyName": "SECONDLY" }),
        ),
    });
    // Salesforce's rotation starts where HubSpot's is expected to end, so that the two pulls
    // together inject every kind.
    let mut salesforce_faults = chaos_faults(
        json!([{ "message": "An unexpected error occurred. Please include this ErrorId if you contact support: 1234-5678", "errorCode": "UNKNOWN_EXCEPTION" }]),
        json!([{ "message": "Too many requests", "errorCode": "REQUEST_LIMIT_EXCEEDED_EDGE" }]),
    );
    salesforce_faults.rotate_left(5);
    salesforce.set_schedule(Schedule::Rotation { every, faults: salesforce_faults });
    let setup = started.elapsed();

    let tick = stack.runner.fire_schedule(chrono::Utc::now()).await.unwrap();
    assert_eq!(tick.enqueued, 2);
    let drained = stack.runner.drain(DRAIN).await.unwrap();
    assert_eq!((drained.messages, drained.failures), (2, 0), "each job delivered once: {drained:?}");
    let synced = started.elapsed();

    let hubspot_run = assert_one_clean_run(&stack, "acme", &hubspot_id, hubspot_count as u64).await;
    let salesforce_run =
        assert_one_clean_run(&stack, "globex", &salesforce_id, salesforce_count as u64).await;

    let events = stack.take_events().await.unwrap();
    let mut created: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut announcements = 0;
    for e in events.iter().filter(|e| e["detail-type"] == "record.created") {
        announcements += 1;
        let detail = &e["detail"];
        let key = detail["record_id"].as_str().unwrap_or_default().to_owned();
        created
            .entry(detail["connection_id"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .insert(key);
    }
    assert_eq!(announcements, hubspot_count + salesforce_count, "one record.created per record");
    assert_eq!(created.get(&hubspot_id).map(BTreeSet::len), Some(hubspot_count));
    assert_eq!(created.get(&salesforce_id).map(BTreeSet::len), Some(salesforce_count));
    let checked = started.elapsed();

    let (hubspot_faults, salesforce_faults) = (hubspot.injected(), salesforce.injected());
    let mut all = hubspot_faults.clone();
    for (kind, count) in &salesforce_faults {
        *all.entry(kind.clone()).or_default() += count;
    }
    eprintln!(
        "chaos: setup {setup:?}, synced {:?}, checked {:?}; HubSpot {} requests seen, faults {hubspot_faults:?}; \
         Salesforce {} requests seen, faults {salesforce_faults:?}; runs: HubSpot {} requests in {} ms, Salesforce {} requests in {} ms",
        synced - setup,
        checked - synced,
        hubspot.seen(),
        salesforce.seen(),
        hubspot_run["counts"]["requests"],
        hubspot_run["duration_ms"],
        salesforce_run["counts"]["requests"],
        salesforce_run["duration_ms"],
    );
    for kind in CHAOS_KINDS {
        assert!(all.get(kind).is_some_and(|c| *c > 0), "no {kind} injected: {all:?}");
    }
    for (proxy, faults) in [(&hubspot, &hubspot_faults), (&salesforce, &salesforce_faults)] {
        assert_eq!(faults.values().sum::<u64>(), proxy.seen() / every, "one request in {every}: {faults:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The fault table: each fault through each adapter, as exactly one error class.

use chrono::Utc;
use secrecy::SecretString;
use syncbridge::adapters::google::{Backoff, GoogleFactory};
use syncbridge::adapters::graph::{GraphFactory, Login, Pacing as GraphPacing};
use syncbridge::adapters::hubspot::{HubspotFactory, Pacing as HubspotPacing};
use syncbridge::adapters::salesforce::{SalesforceFactory, Tuning};
use syncbridge::domain::{Connection, Credentials, NewConnection, ObjectType, Provider, TenantId};
use syncbridge::ports::{ErrorClass, ProviderClient, ProviderError, ProviderFactory};
use syncbridge_fakes::{google, graph, hubspot, salesforce};

/// Each attempt's limit where a test sets it, and how long a stall lasts (well past it).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
const STALL: Duration = Duration::from_secs(4);
/// Rows run at once (each with its own fake, proxy and client); more starve 2 cores.
const AT_ONCE: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Adapter {
    Hubspot,
    Salesforce,
    Google,
    Graph,
}

const ADAPTERS: [Adapter; 4] = [Adapter::Hubspot, Adapter::Salesforce, Adapter::Google, Adapter::Graph];

const TRANSIENT: Option<ErrorClass> = Some(ErrorClass::Transient);
const RATE: Option<ErrorClass> = Some(ErrorClass::RateLimited);
const AUTH: Option<ErrorClass> = Some(ErrorClass::Unauthorized);
const PERMANENT: Option<ErrorClass> = Some(ErrorClass::Permanent);
const NOT_FOUND: Option<ErrorClass> = Some(ErrorClass::NotFound);
const EXPIRED: Option<ErrorClass> = Some(ErrorClass::CursorExpired);

/// Fault -> the class each adapter must return when the fault lasts through every attempt, in
/// the order HubSpot, Salesforce, Google, Graph; `None`: the provider has no such answer.
const TABLE: &[(&str, [Option<ErrorClass>; 4])] = &[
    ("reset", [TRANSIENT; 4]),
    ("reset after forward", [TRANSIENT; 4]),
    ("timeout", [TRANSIENT; 4]),
    ("truncated body (short of Content-Length)", [TRANSIENT; 4]),
    ("truncated body (cut JSON, matching length)", [TRANSIENT; 4]),
    ("500", [TRANSIENT; 4]),
    ("502 html", [TRANSIENT; 4]),
    ("503 empty", [TRANSIENT; 4]),
    ("429 with Retry-After", [RATE; 4]),
    ("429 without Retry-After", [RATE; 4]),
    ("401 expired token", [AUTH; 4]),
    // HubSpot MISSING_SCOPES, Salesforce INSUFFICIENT_ACCESS, Google insufficientPermissions,
    // Graph ErrorAccessDenied: the account lacks a permission; retrying changes nothing.
    ("403 missing scope", [PERMANENT; 4]),
    // Google answers per-user/per-project rate limits with 403 rateLimitExceeded
    // (https://developers.google.com/calendar/api/guides/errors#403_rate_limit_exceeded),
    // Salesforce its API allocation with 403 REQUEST_LIMIT_EXCEEDED
    // (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm);
    // HubSpot and Graph rate-limit with 429 only.
    ("403 rate limit", [None, RATE, RATE, None]),
    ("403 daily limit", [None, None, RATE, None]),
    ("404", [NOT_FOUND; 4]),
    ("400 validation", [PERMANENT; 4]),
    // 410 means "start over" only for the calendar providers' sync tokens: Google's
    // fullSyncRequired (https://developers.google.com/calendar/api/guides/sync#full_sync_required_by_server)
    // and Graph's delta syncStateNotFound/resyncRequired
    // (https://learn.microsoft.com/graph/delta-query-overview#synchronization-reset). Salesforce's
    // 410 is a retired resource (errorcodes.htm above) and HubSpot documents none: permanent.
    ("410", [PERMANENT, PERMANENT, EXPIRED, EXPIRED]),
];

/// Where a table row's class differs today from the table (a finding in the report): the class
/// the adapter returns now. When one is fixed, its entry goes.
const TODAY: &[(&str, Adapter, ErrorClass)] = &[];

fn hubspot_body(category: &str, message: &str) -> Value {
    json!({ "status": "error", "message": message, "correlationId": "c0ffee", "category": category })
}

fn salesforce_body(code: &str, message: &str) -> Value {
    json!([{ "message": message, "errorCode": code }])
}

fn google_body(status: u16, reason: &str, message: &str) -> Value {
    json!({ "error": { "errors": [{ "domain": "global", "reason": reason, "message": message }], "code": status, "message": message } })
}

fn graph_body(code: &str, message: &str) -> Value {
    json!({ "error": { "code": code, "message": message, "innerError": { "request-id": "c0ffee" } } })
}

/// The provider's answer for a status row, in its own error shape.
fn provider_answer(adapter: Adapter, row: &str) -> Option<Fault> {
    use Adapter::*;
    let (status, body) = match (row, adapter) {
        ("500", Hubspot) => (500, hubspot_body("INTERNAL_ERROR", "internal error")),
        ("500", Salesforce) => (500, salesforce_body("UNKNOWN_EXCEPTION", "An unexpected error occurred.")),
        ("500", Google) => (500, google_body(500, "backendError", "Backend Error")),
        ("500", Graph) => (500, graph_body("InternalServerError", "An internal server error occurred.")),
        ("429 with Retry-After" | "429 without Retry-After", Hubspot) => (
            429,
            json!({ "status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT", "correlationId": "c0ffee", "policyName": "SECONDLY" }),
        ),
        ("429 with Retry-After" | "429 without Retry-After", Salesforce) => {
            (429, salesforce_body("REQUEST_LIMIT_EXCEEDED_EDGE", "Too many requests"))
        }
        ("429 with Retry-After" | "429 without Retry-After", Google) => {
            (429, google_body(429, "rateLimitExceeded", "Rate Limit Exceeded"))
        }
        ("429 with Retry-After" | "429 without Retry-After", Graph) => {
            (429, graph_body("TooManyRequests", "Too many requests."))
        }
        ("401 expired token", Hubspot) => (
            401,
            hubspot_body(
                "EXPIRED_AUTHENTICATION",
                "The OAuth token used to make this call expired 1 hour(s) ago.",
            ),
        ),
        ("401 expired token", Salesforce) => {
            (401, salesforce_body("INVALID_SESSION_ID", "Session expired or invalid"))
        }
        ("401 expired token", Google) => (401, google_body(401, "authError", "Invalid Credentials")),
        ("401 expired token", Graph) => {
            (401, graph_body("InvalidAuthenticationToken", "Access token has expired or is not yet valid."))
        }
        ("403 missing scope", Hubspot) => (
            403,
            hubspot_body(
                "MISSING_SCOPES",
                "This app hasn't been granted all required scopes to make this call.",
            ),
        ),
        ("403 missing scope", Salesforce) => {
            (403, salesforce_body("INSUFFICIENT_ACCESS", "insufficient access rights on object id"))
        }
        ("403 missing scope", Google) => {
            (403, google_body(403, "insufficientPermissions", "Insufficient Permission"))
        }
        ("403 missing scope", Graph) => {
            (403, graph_body("ErrorAccessDenied", "Access is denied. Check credentials and try again."))
        }
        ("403 rate limit", Salesforce) => {
            (403, salesforce_body("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."))
        }
        ("403 rate limit", Google) => (403, google_body(403, "rateLimitExceeded", "Rate Limit Exceeded")),
        ("403 daily limit", Google) => (403, google_body(403, "dailyLimitExceeded", "Daily Limit Exceeded")),
        ("404", Hubspot) => (404, hubspot_body("OBJECT_NOT_FOUND", "Object not found.")),
        ("404", Salesforce) => (404, salesforce_body("NOT_FOUND", "The requested resource does not exist")),
        ("404", Google) => (404, google_body(404, "notFound", "Not Found")),
        ("404", Graph) => {
            (404, graph_body("ErrorItemNotFound", "The specified object was not found in the store."))
        }
        ("400 validation", Hubspot) => {
            (400, hubspot_body("VALIDATION_ERROR", "Property values were not valid"))
        }
        ("400 validation", Salesforce) => {
            (400, salesforce_body("MALFORMED_QUERY", "unexpected token: 'FORM'"))
        }
        ("400 validation", Google) => (400, google_body(400, "invalid", "Invalid Value")),
        ("400 validation", Graph) => (400, graph_body("ErrorInvalidRequest", "The request is invalid.")),
        ("410", Hubspot) => (410, hubspot_body("GONE", "This API has been retired.")),
        ("410", Salesforce) => {
            (410, salesforce_body("GONE", "The requested resource has been retired or removed."))
        }
        ("410", Google) => (
            410,
            google_body(410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required."),
        ),
        ("410", Graph) => (410, graph_body("syncStateNotFound", "The sync state generation is not found.")),
        _ => return None,
    };
    let fault = Fault::json(status, body);
    Some(if row == "429 with Retry-After" { fault.with_retry_after(1) } else { fault })
}

/// The fault a row injects into every attempt, for `adapter`.
fn row_fault(adapter: Adapter, row: &str) -> Option<Fault> {
    Some(match row {
        "reset" => Fault::Reset,
        "reset after forward" => Fault::ResetAfterForward,
        "timeout" => Fault::Stall(STALL),
        "truncated body (short of Content-Length)" => Fault::ShortBody,
        "truncated body (cut JSON, matching length)" => Fault::CutBody,
        "502 html" => Fault::bad_gateway_html(),
        "503 empty" => Fault::unavailable_empty(),
        _ => return provider_answer(adapter, row),
    })
}

/// What one row needs: a fake, a proxy in front of it, and a client through the proxy.
struct Rig {
    adapter: Adapter,
    /// The running fake, kept until the row ends.
    _fake: Box<dyn std::any::Any + Send + Sync>,
    proxy: FaultProxy,
    client: Box<dyn ProviderClient>,
    token: SecretString,
    object: ObjectType,
    /// Attempts of one request the client makes before giving up (`max_retries + 1`).
    attempts: u64,
}

fn connection(provider: Provider, base_url: &str, token: &str) -> Connection {
    Connection::new(
        TenantId::parse("t1").expect("tenant"),
        NewConnection {
            provider,
            base_url: base_url.to_owned(),
            credentials: Credentials {
                access_token: SecretString::from(token.to_owned()),
                refresh_token: None,
                expires_at: None,
            },
            interval_minutes: 15,
            settings: Default::default(),
        },
        Utc::now(),
    )
}

/// A `reqwest` client whose reads give up after [`ATTEMPT_TIMEOUT`]: for the adapters whose
/// tuning sets no per-attempt timeout (Salesforce, Graph).
fn impatient_http() -> reqwest::Client {
    reqwest::Client::builder().read_timeout(ATTEMPT_TIMEOUT).build().expect("reqwest client")
}

impl Rig {
    async fn start(adapter: Adapter) -> Rig {
        match adapter {
            Adapter::Hubspot => {
                let token = "pat-na1-fake";
                let fake =
                    hubspot::HubspotFake::start(hubspot::FakeConfig { contacts: 30, ..Default::default() })
                        .await
                        .expect("fake");
                let proxy = FaultProxy::start(&fake.base_url(), Schedule::Off).await.expect("proxy");
                let pacing = HubspotPacing {
                    max_retries: 1,
                    request_timeout: ATTEMPT_TIMEOUT,
                    search_per_second: 1_000,
                    ..HubspotPacing::default()
                };
                let client = HubspotFactory::new(reqwest::Client::new(), None)
                    .with_pacing(pacing)
                    .client(&connection(Provider::Hubspot, &proxy.base_url(), token))
                    .expect("client");
                Rig {
                    adapter,
                    _fake: Box::new(fake),
                    proxy,
                    client,
                    token: SecretString::from(token),
                    object: ObjectType::Contacts,
                    attempts: 2,
                }
            }
            Adapter::Salesforce => {
                let token = "00DFAKE!session";
                let seed_counts = salesforce::SeedCounts { contacts: 30, ..Default::default() };
                let fake = salesforce::SalesforceFake::start(salesforce::FakeConfig {
                    seed_counts,
                    ..Default::default()
                })
                .await
                .expect("fake");
                let proxy = FaultProxy::start(&fake.base_url(), Schedule::Off).await.expect("proxy");
                fake.state().set_instance_url(Some(proxy.base_url()));
                let client = SalesforceFactory::new(impatient_http(), None)
                    .with_tuning(Tuning { lookback: Duration::ZERO, ..Tuning::default() })
                    .client(&connection(Provider::Salesforce, &proxy.base_url(), token))
                    .expect("client");
                // The send path's default policy: Salesforce's tuning sets no retries of its own.
                let attempts =
                    u64::from(syncbridge::adapters::provider_http::RetryPolicy::default().max_retries) + 1;
                Rig {
                    adapter,
                    _fake: Box::new(fake),
                    proxy,
                    client,
                    token: SecretString::from(token),
                    object: ObjectType::Contacts,
                    attempts,
                }
            }
            Adapter::Google => {
                let token = "ya29.fake-google";
                let fake = google::GoogleFake::start(google::FakeConfig { events: 5, ..Default::default() })
                    .await
                    .expect("fake");
                let (origin, path) = split_origin(&fake.api_url());
                let proxy = FaultProxy::start(&origin, Schedule::Off).await.expect("proxy");
                let backoff = Backoff {
                    max_retries: 1,
                    base: Duration::from_millis(20),
                    max_wait: Duration::from_secs(2),
                    request_timeout: ATTEMPT_TIMEOUT,
                };
                let client = GoogleFactory::new(reqwest::Client::new(), None, fake.token_url())
                    .with_backoff(backoff)
                    .client(&connection(Provider::Google, &format!("{}{path}", proxy.base_url()), token))
                    .expect("client");
                Rig {
                    adapter,
                    _fake: Box::new(fake),
                    proxy,
                    client,
                    token: SecretString::from(token),
                    object: ObjectType::Events,
                    attempts: 2,
                }
            }
            Adapter::Graph => {
                let token = "graph-fake-token";
                let fake = graph::GraphFake::start(graph::FakeConfig {
                    events: 5,
                    anchor: Some(Utc::now().date_naive()),
                    ..Default::default()
                })
                .await
                .expect("fake");
                let proxy = FaultProxy::start(&fake.base_url(), Schedule::Off).await.expect("proxy");
                let pacing = GraphPacing {
                    max_retries: 1,
                    transient_backoff: Duration::from_millis(20),
                    max_inline_wait: Duration::from_secs(2),
                    ..GraphPacing::default()
                };
                let login = Login { base_url: fake.base_url(), tenant: "common".into() };
                let client = GraphFactory::new(impatient_http(), None, login)
                    .with_pacing(pacing)
                    .client(&connection(Provider::Microsoft, &proxy.base_url(), token))
                    .expect("client");
                Rig {
                    adapter,
                    _fake: Box::new(fake),
                    proxy,
                    client,
                    token: SecretString::from(token),
                    object: ObjectType::Events,
                    attempts: 2,
                }
            }
        }
    }

    async fn pull(&self) -> Result<usize, ProviderError> {
        self.client.pull_page(&self.token, self.object, None).await.map(|p| p.records.len())
    }

    /// Pulls once with no fault (Salesforce learns its instance), then arms `schedule`; returns
    /// the requests a clean pull of the first page makes.
    async fn warm(&self, schedule: Schedule) -> u64 {
        let first = self.pull().await;
        assert!(first.as_ref().is_ok_and(|n| *n > 0), "{:?}: {first:?}", self.adapter);
        let before = self.proxy.seen();
        let again = self.pull().await;
        assert!(again.is_ok(), "{:?}: {again:?}", self.adapter);
        let clean = self.proxy.seen() - before;
        self.proxy.set_schedule(schedule);
        clean
    }
}

/// Runs every future on its own task; a panic in one is raised here, with its message.
async fn run_all<T: Send + 'static>(jobs: Vec<impl Future<Output = T> + Send + 'static>) -> Vec<T> {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    let mut set = tokio::task::JoinSet::new();
    for job in jobs {
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            job.await
        });
    }
    let mut out = Vec::new();
    while let Some(done) = set.join_next().await {
        match done {
            Ok(v) => out.push(v),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("{e}"),
        }
    }
    out
}

/// The error's display, debug and source chain: none may carry the token.
fn assert_no_token(rig: &Rig, row: &str, e: &ProviderError) {
    use secrecy::ExposeSecret;
    let mut text = format!("{e} {e:?}");
    let mut cur = std::error::Error::source(e);
    while let Some(inner) = cur {
        text.push_str(&format!(" {inner} {inner:?}"));
        cur = inner.source();
    }
    assert!(!text.contains(rig.token.expose_secret()), "{:?} {row}: the token leaked: {text}", rig.adapter);
}

/// What one row did through one adapter.
struct RowOutcome {
    class: ErrorClass,
    /// Requests the proxy saw (every attempt).
    attempts: u64,
    error: String,
    /// Set when the attempts do not fit the class: a retry that should not happen, or one missing.
    retry_problem: Option<String>,
}

/// Runs one row for one adapter; `None` when the provider has no such answer.
async fn run_row(adapter: Adapter, row: &'static str) -> Option<RowOutcome> {
    let fault = row_fault(adapter, row)?;
    let rig = Rig::start(adapter).await;
    rig.warm(Schedule::Always(fault)).await;
    let e = match rig.pull().await {
        Ok(n) => panic!("{adapter:?} {row}: the pull succeeded with {n} records through a lasting fault"),
        Err(e) => e,
    };
    assert_no_token(&rig, row, &e);
    let attempts = rig.proxy.seen();
    let class = e.class();
    // Transient faults are retried in place up to the policy, rate limits at most as often;
    // answers that retrying cannot change are not retried (an expired cursor may start over once).
    let fits = match class {
        ErrorClass::Transient => attempts == rig.attempts,
        ErrorClass::RateLimited => (1..=rig.attempts).contains(&attempts),
        ErrorClass::CursorExpired => (1..=2).contains(&attempts),
        _ => attempts == 1,
    };
    let mut retry_problem =
        (!fits).then(|| format!("{attempts} attempt(s) for {class:?} (policy: {})", rig.attempts));
    // Connection faults say which they were (the send path's codes).
    let code = match row {
        "reset" | "reset after forward" => Some("connection"),
        "timeout" => Some("timeout"),
        "truncated body (short of Content-Length)" | "truncated body (cut JSON, matching length)" => {
            Some("truncated_body")
        }
        _ => None,
    };
    if code.is_some() && e.provider_code() != code {
        retry_problem = Some(format!("code {:?}, expected {code:?}", e.provider_code()));
    }
    Some(RowOutcome { class, attempts, error: e.to_string(), retry_problem })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_comes_out_of_every_adapter_as_exactly_its_class_without_the_token() {
    let mut jobs = Vec::new();
    for (row, _) in TABLE {
        for adapter in ADAPTERS {
            jobs.push(async move { (*row, adapter, run_row(adapter, row).await) });
        }
    }
    let mut results = run_all(jobs).await;
    results.sort_by_key(|(row, adapter, _)| (TABLE.iter().position(|(r, _)| r == row), *adapter));
    let mut mismatches = Vec::new();
    for (row, adapter, outcome) in &results {
        let expected =
            TABLE.iter().find(|(r, _)| r == row).and_then(|(_, classes)| classes[*adapter as usize]);
        let today = TODAY.iter().find(|(r, a, _)| r == row && a == adapter).map(|(_, _, c)| *c);
        let actual = outcome.as_ref().map(|o| o.class);
        eprintln!(
            "fault table: {row:<44} {:<10} expected {:<13} got {:<13} attempts {} | {}",
            format!("{adapter:?}"),
            expected.map_or("-", ErrorClass::as_str),
            actual.map_or("-", ErrorClass::as_str),
            outcome.as_ref().map_or(0, |o| o.attempts),
            outcome.as_ref().map_or("", |o| o.error.as_str()),
        );
        if actual != today.or(expected) {
            mismatches.push(format!("{row} / {adapter:?}: expected {expected:?}, got {actual:?}"));
        }
        if let Some(problem) = outcome.as_ref().and_then(|o| o.retry_problem.as_ref()) {
            mismatches.push(format!("{row} / {adapter:?}: {problem}"));
        }
    }
    assert!(mismatches.is_empty(), "{} mismatch(es):\n{}", mismatches.len(), mismatches.join("\n"));
}

/// The transient faults a single occurrence of which the in-place retry absorbs.
const SINGLE: [&str; 10] = [
    "reset",
    "reset after forward",
    "timeout",
    "truncated body (short of Content-Length)",
    "truncated body (cut JSON, matching length)",
    "500",
    "502 html",
    "503 empty",
    "429 with Retry-After",
    "429 without Retry-After",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_transient_fault_is_absorbed_by_the_in_place_retry_of_every_adapter() {
    let mut jobs = Vec::new();
    for row in SINGLE {
        for adapter in ADAPTERS {
            jobs.push(async move {
                let fault = row_fault(adapter, row).expect("every adapter has the transient faults");
                let rig = Rig::start(adapter).await;
                let clean = rig.warm(Schedule::Next(vec![fault].into())).await;
                let pulled = rig.pull().await;
                let injected: u64 = rig.proxy.injected().values().sum();
                (row, adapter, pulled.map_err(|e| e.to_string()), injected, rig.proxy.seen() - clean)
            });
        }
    }
    let mut failures = Vec::new();
    // One more request than a clean pull: the faulted one, asked again once.
    for (row, adapter, pulled, injected, extra) in run_all(jobs).await {
        if !(pulled.as_ref().is_ok_and(|n| *n > 0) && injected == 1 && extra == 1) {
            failures.push(format!(
                "{row} / {adapter:?}: {pulled:?}, {injected} injected, {extra} extra request(s)"
            ));
        }
    }
    assert!(failures.is_empty(), "not absorbed:\n{}", failures.join("\n"));
}

/// The issue's scale, through the engine's own job handler with in-memory stores: moto serves
/// about 25 writes a second here, which would measure moto, not the provider path under faults.
mod at_scale {
    use std::sync::Arc;

    use syncbridge::adapters::hubspot::HubspotFactory;
    use syncbridge::adapters::memory::{ManualClock, MemoryQueue, MemoryStore};
    use syncbridge::adapters::salesforce::SalesforceFactory;
    use syncbridge::domain::{Job, JobId, JobReason, ObjectType, Provider, RunStatus};
    use syncbridge::ports::{ProviderFactory, RunStore};
    use syncbridge::sync::Deadline;
    use syncbridge::sync::worker::{JobOutcome, run_job};

    use super::*;

    /// Runs one scheduled job for `connection` and returns its outcome, the run, the records
    /// stored per object type and what the queue got (continuations).
    async fn one_job(
        providers: Arc<dyn ProviderFactory>,
        connection: Connection,
    ) -> (JobOutcome, syncbridge::domain::SyncRun, BTreeMap<ObjectType, usize>, usize) {
        let store = Arc::new(MemoryStore::new());
        let queue = Arc::new(MemoryQueue::new());
        let deps = syncbridge::adapters::memory::TestDeps::new(store.clone())
            .queue(queue.clone())
            .providers(providers)
            .clock(Arc::new(ManualClock::new(Utc::now())))
            .build();
        store.put_connection(connection.clone());
        let job = Job::sync(
            connection.tenant_id.clone(),
            connection.connection_id.clone(),
            JobId::parse("chaos-job-1").expect("job id"),
            JobReason::Schedule,
            Utc::now(),
        );
        let outcome = run_job(&deps, &job, Deadline::after(Duration::from_secs(600))).await.expect("one job");
        let runs = RunStore::list_runs(&*store, &connection.tenant_id, &connection.connection_id, 10).await;
        let runs = runs.expect("runs");
        assert_eq!(runs.len(), 1, "one run");
        let mut stored: BTreeMap<ObjectType, usize> = BTreeMap::new();
        for r in store.records_of(&connection.tenant_id, &connection.connection_id) {
            *stored.entry(r.object).or_default() += 1;
        }
        (outcome, runs.into_iter().next().expect("run"), stored, queue.take().len())
    }

    /// One request in ten got a fault, in rotation through the kinds: at least `kinds` of them.
    fn assert_one_in_ten(proxy: &FaultProxy, kinds: usize) {
        let injected = proxy.injected();
        let total: u64 = injected.values().sum();
        assert_eq!(total, proxy.seen() / 10, "one in ten: {injected:?} of {}", proxy.seen());
        let distinct = CHAOS_KINDS.iter().filter(|k| injected.get(**k).copied().unwrap_or(0) > 0).count();
        assert!(distinct >= kinds, "{distinct} kinds injected: {injected:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn five_thousand_hubspot_contacts_through_one_fault_in_ten_complete_in_one_job_each_stored_once() {
        let fake = hubspot::HubspotFake::start(HubspotConfig { contacts: 5_000, ..HubspotConfig::default() })
            .await
            .expect("fake");
        let faults = chaos_faults(
            json!({ "status": "error", "message": "internal error", "correlationId": "c0ffee", "category": "INTERNAL_ERROR" }),
            json!({ "status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT", "correlationId": "c0ffee", "policyName": "SECONDLY" }),
        );
        let proxy = FaultProxy::start(&fake.base_url(), Schedule::Rotation { every: 10, faults })
            .await
            .expect("proxy");
        let pacing = HubspotPacing { search_per_second: 1_000, ..HubspotPacing::default() };
        let factory = HubspotFactory::new(reqwest::Client::new(), None).with_pacing(pacing);
        let connection = connection(Provider::Hubspot, &proxy.base_url(), "pat-na1-fake");
        let (outcome, run, stored, continuations) = one_job(Arc::new(factory), connection).await;
        assert!(matches!(outcome, JobOutcome::Completed { .. }), "{outcome:?}");
        assert_eq!(run.status, RunStatus::Succeeded);
        assert_eq!(
            (run.counts.pulled, run.counts.created),
            (5_000, 5_000),
            "each contact pulled and written once"
        );
        assert_eq!(stored.get(&ObjectType::Contacts), Some(&5_000));
        assert_eq!(continuations, 0, "no continuation, no retry");
        assert_one_in_ten(&proxy, 5);
        eprintln!("hubspot at scale: {} requests seen, injected {:?}", proxy.seen(), proxy.injected());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn twenty_thousand_salesforce_contacts_through_one_fault_in_ten_complete_in_one_job_each_stored_once()
     {
        let fake = salesforce::SalesforceFake::start(SalesforceConfig {
            seed_counts: SeedCounts { contacts: 20_000, ..SeedCounts::default() },
            ..SalesforceConfig::default()
        })
        .await
        .expect("fake");
        let faults = chaos_faults(
            json!([{ "message": "An unexpected error occurred.", "errorCode": "UNKNOWN_EXCEPTION" }]),
            json!([{ "message": "Too many requests", "errorCode": "REQUEST_LIMIT_EXCEEDED_EDGE" }]),
        );
        let proxy = FaultProxy::start(&fake.base_url(), Schedule::Rotation { every: 10, faults })
            .await
            .expect("proxy");
        fake.state().set_instance_url(Some(proxy.base_url()));
        // REST pages of 200 (no Bulk API): 100 query pages, so ten faults of every kind in turn.
        let tuning = Tuning { batch_size: 200, bulk_threshold: u64::MAX, ..Tuning::default() };
        let factory = SalesforceFactory::new(reqwest::Client::new(), None).with_tuning(tuning);
        let token = salesforce::FakeConfig::default().session_token.unwrap_or_default();
        let connection = connection(Provider::Salesforce, &proxy.base_url(), &token);
        let (outcome, run, stored, continuations) = one_job(Arc::new(factory), connection).await;
        assert!(matches!(outcome, JobOutcome::Completed { .. }), "{outcome:?}");
        assert_eq!(run.status, RunStatus::Succeeded);
        assert_eq!(stored.get(&ObjectType::Contacts), Some(&20_000), "every contact stored once");
        assert_eq!(
            run.counts.created,
            20_000
                + stored
                    .iter()
                    .filter(|(o, _)| **o != ObjectType::Contacts)
                    .map(|(_, n)| *n as u64)
                    .sum::<u64>()
        );
        assert_eq!(continuations, 0, "no continuation, no retry");
        assert_one_in_ten(&proxy, CHAOS_KINDS.len());
        eprintln!("salesforce at scale: {} requests seen, injected {:?}", proxy.seen(), proxy.injected());
    }
}
