//! Proxies in front of a provider fake, on 127.0.0.1 and OS-picked ports, stopping when dropped.
//!
//! [`RefusingProxy`] answers chosen requests with a provider's permanent refusal (HubSpot's 403
//! `MISSING_SCOPES` on the notes routes, Google's 403 `insufficientPermissions`, ...) and passes
//! everything else through. It shows the engine what an account without one permission looks like
//! while the fake serves the rest, without teaching each fake about every refusal.
//!
//! [`FaultProxy`] injects the faults of a network and of a provider's front end on a schedule
//! (one request in N, seeded at random or in rotation, or the next few): 5xx and 429 answers of
//! its own, a connection closed without an answer (before or after the fake did the work), an
//! answer cut short (the full `Content-Length` and half the body, or half the body with a length
//! that matches it) and a stall. It serves HTTP/1.1 connections itself (hyper) so that it can
//! close one instead of answering. Used by tests and available to local experiments.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One refusal: requests whose decoded path and query contain `contains` get `status` and `body`.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub contains: String,
    pub status: u16,
    pub body: Value,
}

#[derive(Default)]
struct Rules {
    refusals: Vec<Refusal>,
    refused: u64,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    rules: Arc<Mutex<Rules>>,
}

/// A running proxy on 127.0.0.1; stops when dropped.
pub struct RefusingProxy {
    base_url: String,
    rules: Arc<Mutex<Rules>>,
    task: tokio::task::JoinHandle<()>,
}

impl RefusingProxy {
    /// Starts a proxy to `upstream` (a base URL without a trailing slash) on an OS-picked port.
    pub async fn start(upstream: &str) -> Result<Self> {
        let rules = Arc::new(Mutex::new(Rules::default()));
        let state = ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            rules: rules.clone(),
        };
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("binding the refusing proxy")?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(forward).with_state(state);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "refusing proxy stopped");
            }
        });
        Ok(Self { base_url: format!("http://{addr}"), rules, task })
    }

    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Rules> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on, refuses requests whose decoded path and query contain `contains`.
    pub fn refuse(&self, contains: &str, status: u16, body: Value) {
        self.lock().refusals.push(Refusal { contains: contains.to_owned(), status, body });
    }

    /// Passes every request through again.
    pub fn allow_all(&self) {
        self.lock().refusals.clear();
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.lock().refused
    }
}

impl Drop for RefusingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `%XX` and (in queries) `+` decoded; invalid escapes are kept as they are.
fn decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn forward(
    State(state): State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let decoded = decode(&target);
    let refusal = {
        let mut rules = state.rules.lock().unwrap_or_else(|p| p.into_inner());
        let found = rules.refusals.iter().find(|r| decoded.contains(&r.contains)).cloned();
        if found.is_some() {
            rules.refused += 1;
        }
        found
    };
    if let Some(r) = refusal {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
        return (status, [("content-type", "application/json")], r.body.to_string()).into_response();
    }
    let mut request = state.http.request(method, format!("{}{target}", state.upstream)).body(body);
    for (name, value) in &headers {
        if !matches!(name.as_str(), "host" | "content-length" | "connection" | "transfer-encoding") {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(reply) => {
            let status = reply.status();
            let mut out = HeaderMap::new();
            for (name, value) in reply.headers() {
                if !matches!(name.as_str(), "content-length" | "connection" | "transfer-encoding") {
                    out.append(name, value.clone());
                }
            }
            let body = reply.bytes().await.unwrap_or_default();
            (status, out, body).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// The fault proxy.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use rand::{Rng, SeedableRng};

/// One fault: what the proxy does instead of (or to) one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// An answer of the proxy's own; the request does not reach the fake. `retry_after` adds a
    /// `Retry-After` header (seconds).
    Answer { status: u16, content_type: Option<String>, body: String, retry_after: Option<u64> },
    /// The connection closes without an answer; the request does not reach the fake.
    Reset,
    /// The request reaches the fake, then the connection closes without its answer.
    ResetAfterForward,
    /// The fake's answer with its full `Content-Length` but only the first half of its body, then
    /// the connection closes (a connection lost mid-answer).
    ShortBody,
    /// The first half of the fake's answer, with a `Content-Length` that matches it (an answer
    /// cut by a buffering front end): complete as HTTP, cut as JSON.
    CutBody,
    /// Waits this long, then forwards (a client with a shorter timeout has given up by then).
    Stall(Duration),
}

impl Fault {
    /// `status` with a JSON body (a provider's error shape).
    pub fn json(status: u16, body: Value) -> Fault {
        Fault::Answer {
            status,
            content_type: Some("application/json".to_owned()),
            body: body.to_string(),
            retry_after: None,
        }
    }

    /// 502 with an HTML page, as a load balancer answers when the service behind it is gone.
    pub fn bad_gateway_html() -> Fault {
        Fault::Answer {
            status: 502,
            content_type: Some("text/html".to_owned()),
            body: "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>".to_owned(),
            retry_after: None,
        }
    }

    /// 503 with an empty body.
    pub fn unavailable_empty() -> Fault {
        Fault::Answer { status: 503, content_type: None, body: String::new(), retry_after: None }
    }

    /// The same answer with a `Retry-After` of `secs` seconds.
    pub fn with_retry_after(self, secs: u64) -> Fault {
        match self {
            Fault::Answer { status, content_type, body, .. } => {
                Fault::Answer { status, content_type, body, retry_after: Some(secs) }
            }
            other => other,
        }
    }

    /// The name this fault is counted under: the status (with `+retry-after` when it has one) or
    /// the kind of connection fault.
    pub fn kind(&self) -> String {
        match self {
            Fault::Answer { status, retry_after: Some(_), .. } => format!("{status}+retry-after"),
            Fault::Answer { status, .. } => status.to_string(),
            Fault::Reset => "reset".to_owned(),
            Fault::ResetAfterForward => "reset_after_forward".to_owned(),
            Fault::ShortBody => "short_body".to_owned(),
            Fault::CutBody => "cut_body".to_owned(),
            Fault::Stall(_) => "stall".to_owned(),
        }
    }
}

/// When the proxy injects faults. Only requests that no [`FaultProxy::spare`] rule matches count.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every request passes.
    Off,
    /// Every `every`-th request gets the next fault of `faults`, in rotation.
    Rotation { every: u64, faults: Vec<Fault> },
    /// Each request, with probability `1 / one_in` (a generator seeded with `seed`), gets one of
    /// `faults`, chosen at random.
    Random { one_in: u32, seed: u64, faults: Vec<Fault> },
    /// The next requests get these faults, one each, in order; then every request passes.
    Next(VecDeque<Fault>),
    /// Every request gets this fault.
    Always(Fault),
}

struct FaultState {
    schedule: Schedule,
    rng: rand::rngs::StdRng,
    /// Requests the schedule saw (spared ones not counted).
    seen: u64,
    /// Faults injected so far, by [`Fault::kind`].
    injected: BTreeMap<String, u64>,
    /// Requests whose method (any when `None`) and decoded path and query match are never faulted.
    spared: Vec<(Option<Method>, String)>,
    forwarded: u64,
}

impl FaultState {
    fn next_fault(&mut self, method: &Method, target: &str) -> Option<Fault> {
        if self.spared.iter().any(|(m, s)| m.as_ref().is_none_or(|m| m == method) && target.contains(s)) {
            return None;
        }
        self.seen += 1;
        let fault = match &mut self.schedule {
            Schedule::Off => None,
            Schedule::Rotation { every, faults } => {
                let every = (*every).max(1);
                (self.seen.is_multiple_of(every) && !faults.is_empty())
                    .then(|| faults[((self.seen / every - 1) % faults.len() as u64) as usize].clone())
            }
            Schedule::Random { one_in, faults, .. } => {
                if !faults.is_empty() && self.rng.random_ratio(1, (*one_in).max(1)) {
                    Some(faults[self.rng.random_range(0..faults.len())].clone())
                } else {
                    None
                }
            }
            Schedule::Next(queue) => queue.pop_front(),
            Schedule::Always(f) => Some(f.clone()),
        };
        if let Some(f) = &fault {
            *self.injected.entry(f.kind()).or_default() += 1;
        }
        fault
    }
}

type ProxyBody = BoxBody<Bytes, std::io::Error>;

/// The proxy closed the connection on purpose (hyper closes a connection whose service fails).
#[derive(Debug, thiserror::Error)]
#[error("the fault proxy dropped the connection")]
struct Dropped;

#[derive(Clone)]
struct FaultShared {
    upstream: String,
    http: reqwest::Client,
    state: Arc<Mutex<FaultState>>,
}

impl FaultShared {
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fault-injecting proxy on 127.0.0.1; stops (with every open connection) when dropped.
pub struct FaultProxy {
    base_url: String,
    shared: FaultShared,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (a base URL; a path is kept in front of every request's path)
    /// on an OS-picked port, injecting faults on `schedule`.
    pub async fn start(upstream: &str, schedule: Schedule) -> Result<Self> {
        let seed = match &schedule {
            Schedule::Random { seed, .. } => *seed,
            _ => 0,
        };
        let shared = FaultShared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            state: Arc::new(Mutex::new(FaultState {
                schedule,
                rng: rand::rngs::StdRng::seed_from_u64(seed),
                seen: 0,
                injected: BTreeMap::new(),
                spared: Vec::new(),
                forwarded: 0,
            })),
        };
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("binding the fault proxy")?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept(listener, shared.clone()));
        Ok(Self { base_url: format!("http://{addr}"), shared, task })
    }

    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Replaces the schedule (the count of requests seen starts again).
    pub fn set_schedule(&self, schedule: Schedule) {
        let mut s = self.shared.lock();
        s.schedule = schedule;
        s.seen = 0;
    }

    /// Never faults requests with this method (any when `None`) whose decoded path and query
    /// contain `contains`; they do not count towards the schedule either.
    pub fn spare(&self, method: Option<Method>, contains: &str) {
        self.shared.lock().spared.push((method, contains.to_owned()));
    }

    /// Faults injected so far, by [`Fault::kind`].
    pub fn injected(&self) -> BTreeMap<String, u64> {
        self.shared.lock().injected.clone()
    }

    /// Requests that reached the fake (including those whose answer a fault then spoiled).
    pub fn forwarded(&self) -> u64 {
        self.shared.lock().forwarded
    }

    /// Requests the schedule saw (spared ones not counted).
    pub fn seen(&self) -> u64 {
        self.shared.lock().seen
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections and serves each on its own task; aborting this task drops the `JoinSet`,
/// which aborts every connection.
async fn accept(listener: tokio::net::TcpListener, shared: FaultShared) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "fault proxy could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| serve(shared.clone(), req));
            // An error here is a connection the proxy dropped on purpose, or one the client closed.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into()).map_err(|never: Infallible| match never {}).boxed()
}

fn response(status: StatusCode, headers: HeaderMap, body: ProxyBody) -> http::Response<ProxyBody> {
    let mut out = http::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// The first half of `body`, cut on a character boundary when it is text.
fn first_half(body: &Bytes) -> Bytes {
    let mut cut = body.len() / 2;
    if let Ok(text) = std::str::from_utf8(body) {
        while cut > 0 && !text.is_char_boundary(cut) {
            cut -= 1;
        }
    }
    body.slice(..cut)
}

async fn serve(
    shared: FaultShared,
    req: http::Request<Incoming>,
) -> Result<http::Response<ProxyBody>, Dropped> {
    let (parts, body) = req.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let fault = shared.lock().next_fault(&parts.method, &decode(&target));
    match &fault {
        Some(Fault::Answer { status, content_type, body, retry_after }) => {
            let mut headers = HeaderMap::new();
            if let Some(ct) = content_type.as_deref().and_then(|v| http::HeaderValue::from_str(v).ok()) {
                headers.insert(http::header::CONTENT_TYPE, ct);
            }
            if let Some(secs) = retry_after {
                headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(*secs));
            }
            headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(body.len()));
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(response(status, headers, full(body.clone())));
        }
        Some(Fault::Reset) => return Err(Dropped),
        Some(Fault::Stall(d)) => tokio::time::sleep(*d).await,
        _ => {}
    }
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(Dropped),
    };
    let mut request = shared.http.request(parts.method, format!("{}{target}", shared.upstream)).body(body);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "content-length" | "connection" | "transfer-encoding") {
            request = request.header(name, value);
        }
    }
    let reply = request.send().await;
    shared.lock().forwarded += 1;
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "fault proxy could not reach its upstream");
            return Ok(response(StatusCode::BAD_GATEWAY, HeaderMap::new(), full(e.to_string())));
        }
    };
    let status = reply.status();
    let mut headers = HeaderMap::new();
    for (name, value) in reply.headers() {
        if !matches!(name.as_str(), "content-length" | "connection" | "transfer-encoding") {
            headers.append(name, value.clone());
        }
    }
    let body = match reply.bytes().await {
        Ok(b) => b,
        Err(_) => return Err(Dropped),
    };
    let length = |n: usize| http::HeaderValue::from(n);
    match fault {
        Some(Fault::ResetAfterForward) => Err(Dropped),
        Some(Fault::ShortBody) => {
            headers.insert(http::header::CONTENT_LENGTH, length(body.len()));
            // The pause lets hyper flush the head and the half before the error closes the
            // connection (it writes nothing when the error comes at once).
            let half = futures::stream::iter([Ok::<_, std::io::Error>(Frame::data(first_half(&body)))]);
            let cut = futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut short by the fault proxy"))
            });
            Ok(response(status, headers, StreamBody::new(futures::StreamExt::chain(half, cut)).boxed()))
        }
        Some(Fault::CutBody) => {
            let half = first_half(&body);
            headers.insert(http::header::CONTENT_LENGTH, length(half.len()));
            Ok(response(status, headers, full(half)))
        }
        _ => {
            headers.insert(http::header::CONTENT_LENGTH, length(body.len()));
            Ok(response(status, headers, full(body)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries_are_decoded_for_matching() {
        assert_eq!(decode("/query?q=SELECT+Id+FROM+Note%20WHERE"), "/query?q=SELECT Id FROM Note WHERE");
        assert_eq!(decode("/a%2"), "/a%2", "a cut escape stays");
        assert_eq!(decode("/a%zz"), "/a%zz");
    }

    fn state(schedule: Schedule) -> FaultState {
        FaultState {
            schedule,
            rng: rand::rngs::StdRng::seed_from_u64(7),
            seen: 0,
            injected: BTreeMap::new(),
            spared: Vec::new(),
            forwarded: 0,
        }
    }

    #[test]
    fn a_rotation_faults_every_nth_request_with_the_next_kind_and_counts_it() {
        let mut s = state(Schedule::Rotation { every: 3, faults: vec![Fault::Reset, Fault::ShortBody] });
        let kinds: Vec<Option<String>> =
            (0..9).map(|_| s.next_fault(&Method::GET, "/x").map(|f| f.kind())).collect();
        let r = |k: &str| Some(k.to_owned());
        assert_eq!(kinds, vec![None, None, r("reset"), None, None, r("short_body"), None, None, r("reset")]);
        assert_eq!(s.injected.get("reset"), Some(&2));
    }

    #[test]
    fn spared_requests_are_never_faulted_and_do_not_count() {
        let mut s = state(Schedule::Always(Fault::Reset));
        s.spared.push((Some(Method::POST), "/jobs/query".to_owned()));
        assert_eq!(s.next_fault(&Method::POST, "/services/data/v60.0/jobs/query"), None);
        assert_eq!(s.seen, 0);
        assert_eq!(s.next_fault(&Method::GET, "/services/data/v60.0/jobs/query/1"), Some(Fault::Reset));
    }

    #[test]
    fn a_seeded_random_schedule_faults_about_one_request_in_n() {
        let mut s = state(Schedule::Random { one_in: 10, seed: 7, faults: vec![Fault::CutBody] });
        let n = (0..10_000).filter(|_| s.next_fault(&Method::GET, "/").is_some()).count();
        assert!((800..1_200).contains(&n), "{n}");
    }

    #[test]
    fn kinds_name_the_status_and_a_retry_after() {
        assert_eq!(Fault::json(500, serde_json::json!({})).kind(), "500");
        assert_eq!(Fault::json(429, serde_json::json!({})).with_retry_after(1).kind(), "429+retry-after");
        assert_eq!(Fault::bad_gateway_html().kind(), "502");
        assert_eq!(Fault::Stall(Duration::from_secs(1)).kind(), "stall");
    }

    /// An upstream answering `{"items":[1,2,3,...]}` (JSON) on every path.
    async fn upstream() -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().fallback(|| async {
            let items: Vec<u32> = (0..200).collect();
            axum::Json(serde_json::json!({ "items": items }))
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}"), task)
    }

    #[tokio::test]
    async fn each_connection_fault_reaches_the_client_as_its_real_world_shape() {
        let (up, _task) = upstream().await;
        let faults = vec![
            Fault::Reset,
            Fault::ResetAfterForward,
            Fault::ShortBody,
            Fault::CutBody,
            Fault::unavailable_empty().with_retry_after(2),
        ];
        let proxy = FaultProxy::start(&up, Schedule::Next(faults.into())).await.expect("proxy");
        let http = reqwest::Client::new();
        let get = || http.get(format!("{}/a", proxy.base_url())).send();

        let reset = get().await;
        assert!(reset.as_ref().is_err_and(|e| !e.is_timeout()), "{reset:?}");
        assert!(get().await.is_err(), "closed after forwarding");
        let short = get().await.expect("the head arrives");
        assert_eq!(short.status(), 200);
        assert!(short.bytes().await.is_err(), "the body ends before its Content-Length");
        let cut = get().await.expect("a complete HTTP answer").bytes().await.expect("body");
        let parsed = serde_json::from_slice::<Value>(&cut);
        assert!(parsed.is_err_and(|e| e.is_eof()), "cut JSON");
        let unavailable = get().await.expect("an answer");
        assert_eq!(
            (unavailable.status().as_u16(), unavailable.headers().get("retry-after").cloned()),
            (503, Some(http::HeaderValue::from(2)))
        );
        let whole = get().await.expect("passes").json::<Value>().await.expect("whole JSON");
        assert_eq!(whole["items"].as_array().map(Vec::len), Some(200));

        assert_eq!(proxy.forwarded(), 4, "reset_after_forward, short_body, cut_body and the pass");
        let injected = proxy.injected();
        for kind in ["reset", "reset_after_forward", "short_body", "cut_body", "503+retry-after"] {
            assert_eq!(injected.get(kind), Some(&1), "{kind}: {injected:?}");
        }
    }

    #[tokio::test]
    async fn a_stall_outlasts_a_client_with_a_shorter_timeout() {
        let (up, _task) = upstream().await;
        let proxy = FaultProxy::start(&up, Schedule::Always(Fault::Stall(Duration::from_secs(5))))
            .await
            .expect("proxy");
        let res =
            reqwest::Client::new().get(proxy.base_url()).timeout(Duration::from_millis(200)).send().await;
        assert!(res.is_err_and(|e| e.is_timeout()));
    }
}
