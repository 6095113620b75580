//! A stand-in for the SQS FIFO jobs queue in the dispatcher benchmark: an HTTP server that speaks
//! SQS's JSON protocol for `SendMessageBatch`, keeps what a FIFO queue needs to check (each
//! deduplication id once, a message group on every entry, at most 10 entries a call) and counts.
//!
//! moto's FIFO queue compares every new message with every queued one for deduplication, so
//! 100,000 messages would cost it some 5 billion comparisons: the benchmark would measure moto.
//! The dispatcher still sends through the real adapter and SDK; only the server differs.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// What the sink received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkStats {
    pub batches: u64,
    pub messages: u64,
    /// Entries whose deduplication id had been sent before (a FIFO queue drops them).
    pub duplicates: u64,
    /// Entries without a message group, or calls with more than 10 entries (SQS refuses them).
    pub refused: u64,
    pub largest_batch: u64,
}

#[derive(Default)]
struct Inner {
    stats: SinkStats,
    dedup: HashSet<String>,
}

/// A running sink; stops when dropped.
pub struct SqsSink {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    stop: Option<oneshot::Sender<()>>,
}

impl SqsSink {
    pub async fn start() -> anyhow::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, _) = syncbridge_local::gateway::serve_in_background(listener, app);
        Ok(Self { addr, inner, stop: Some(stop) })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A queue URL on this sink (the adapter sends it with every call).
    pub fn queue_url(&self) -> String {
        format!("{}/123456789012/bench-jobs.fifo", self.endpoint())
    }

    pub fn stats(&self) -> SinkStats {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).stats.clone()
    }
}

impl Drop for SqsSink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, [("content-type", "application/x-amz-json-1.0")], body.to_string()).into_response()
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: String) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if target != "AmazonSQS.SendMessageBatch" {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({ "__type": "com.amazonaws.sqs#InvalidAction", "message": format!("not served here: {target}") }),
        );
    }
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({ "__type": "com.amazonaws.sqs#InvalidParameterValue" }),
        );
    };
    let entries = request.get("Entries").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut guard = inner.lock().unwrap_or_else(PoisonError::into_inner);
    let Inner { stats, dedup } = &mut *guard;
    stats.batches += 1;
    stats.largest_batch = stats.largest_batch.max(entries.len() as u64);
    if entries.is_empty() || entries.len() > 10 {
        stats.refused += entries.len() as u64;
        return answer(
            StatusCode::BAD_REQUEST,
            json!({ "__type": "com.amazonaws.sqs#TooManyEntriesInBatchRequest", "message": "1 to 10 entries" }),
        );
    }
    let mut successful = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let id = e.get("Id").and_then(Value::as_str).unwrap_or_default();
        let group = e.get("MessageGroupId").and_then(Value::as_str).unwrap_or_default();
        let dedup_id = e.get("MessageDeduplicationId").and_then(Value::as_str).unwrap_or_default();
        if group.is_empty() || dedup_id.is_empty() {
            stats.refused += 1;
            continue;
        }
        if !dedup.insert(dedup_id.to_owned()) {
            stats.duplicates += 1;
        } else {
            stats.messages += 1;
        }
        successful.push(json!({
            "Id": id,
            "MessageId": format!("{:08}-0000-4000-8000-{:012}", stats.batches, i),
            "SequenceNumber": format!("{:020}", stats.messages),
        }));
    }
    answer(StatusCode::OK, json!({ "Successful": successful, "Failed": [] }))
}
