//! A refusing proxy: a reverse proxy in front of a provider fake that answers chosen requests with
//! a provider's permanent refusal (HubSpot's 403 `MISSING_SCOPES` on the notes routes, Google's
//! 403 `insufficientPermissions`, ...) and passes everything else through. It shows the engine
//! what an account without one permission looks like while the fake serves the rest, without
//! teaching each fake about every refusal. Used by tests and available to local experiments.

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

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn paths_and_queries_are_decoded_for_matching() {
        assert_eq!(decode("/query?q=SELECT+Id+FROM+Note%20WHERE"), "/query?q=SELECT Id FROM Note WHERE");
        assert_eq!(decode("/a%2"), "/a%2", "a cut escape stays");
        assert_eq!(decode("/a%zz"), "/a%zz");
    }
}
