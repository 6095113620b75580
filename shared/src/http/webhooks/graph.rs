//! `POST /webhooks/microsoft`: Microsoft Graph. With a `validationToken` query parameter it is the
//! subscription validation handshake (the token echoed as `text/plain`). Otherwise the body is
//! `{"value": [notification, ...]}`: change notifications (`changeType`, `resource`, ...) and
//! lifecycle notifications (`lifecycleEvent`). Every notification's `subscriptionId` must lead to a
//! connection (`ConnectionStore::find_channel`) whose subscription secret equals the `clientState`
//! (constant time; kept when a subscription is recreated); one mismatch refuses the whole request (401)
//! and nothing is enqueued. Then one coalesced job per connection: a sync for changes and
//! `missed`, a sync that also renews the subscription for `reauthorizationRequired` and
//! `subscriptionRemoved` (the worker renews it even though it is not due; Graph's adapter creates it
//! again when Graph no longer knows it). Answered with 202.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{
    Ask, Summary, WebhookError, WebhookState, answer, enqueue, load, log_failure, read_body, secret_matches,
};
use crate::domain::{ConnectionId, Provider, TenantId};
use crate::http::problem::{self, ApiError};

/// Longest validation token echoed (Graph's are far shorter).
const MAX_VALIDATION_TOKEN: usize = 1024;
/// Most notifications accepted in one request.
const MAX_NOTIFICATIONS: usize = 1000;

/// A lifecycle notification's event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleEvent {
    ReauthorizationRequired,
    SubscriptionRemoved,
    Missed,
    /// An event this version does not know: treated like `missed` (a sync).
    Other(String),
}

impl LifecycleEvent {
    fn parse(v: &str) -> Self {
        match v {
            "reauthorizationRequired" => Self::ReauthorizationRequired,
            "subscriptionRemoved" => Self::SubscriptionRemoved,
            "missed" => Self::Missed,
            other => Self::Other(other.to_owned()),
        }
    }

    /// True when the subscription itself needs renewing (or recreating).
    pub fn renews_subscription(&self) -> bool {
        matches!(self, Self::ReauthorizationRequired | Self::SubscriptionRemoved)
    }
}

/// One notification of a Graph request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphNotification {
    pub subscription_id: String,
    pub client_state: Option<String>,
    pub change_type: Option<String>,
    pub resource: Option<String>,
    pub tenant_id: Option<String>,
    pub lifecycle_event: Option<LifecycleEvent>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNotification {
    subscription_id: String,
    #[serde(default)]
    client_state: Option<String>,
    #[serde(default)]
    change_type: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    lifecycle_event: Option<String>,
}

#[derive(Deserialize)]
struct RawBody {
    value: Vec<RawNotification>,
}

/// Why a body is not a Graph notification collection.
#[derive(Debug, thiserror::Error)]
pub enum NotificationsError {
    #[error("{0}")]
    Json(String),
    #[error("{0}")]
    Invalid(&'static str),
}

/// Parses a notification collection. Pure, for unit tests and the fuzz target.
pub fn parse_notifications(body: &[u8]) -> Result<Vec<GraphNotification>, NotificationsError> {
    let raw: RawBody = serde_json::from_slice(body)
        .map_err(|e| NotificationsError::Json(problem::describe_json_error(&e)))?;
    if raw.value.len() > MAX_NOTIFICATIONS {
        return Err(NotificationsError::Invalid("too many notifications in one request"));
    }
    raw.value
        .into_iter()
        .map(|n| {
            if n.subscription_id.is_empty() || n.subscription_id.len() > 256 {
                return Err(NotificationsError::Invalid("subscriptionId must be 1 to 256 characters"));
            }
            Ok(GraphNotification {
                subscription_id: n.subscription_id,
                client_state: n.client_state,
                change_type: n.change_type,
                resource: n.resource,
                tenant_id: n.tenant_id,
                lifecycle_event: n.lifecycle_event.as_deref().map(LifecycleEvent::parse),
            })
        })
        .collect()
}

#[derive(Deserialize)]
pub(super) struct GraphQuery {
    #[serde(rename = "validationToken")]
    validation_token: Option<String>,
}

pub(super) async fn handle(
    State(state): State<WebhookState>,
    query: Result<axum::extract::Query<GraphQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Response {
    let validation_token = query.ok().and_then(|q| q.0.validation_token);
    if let Some(token) = validation_token {
        return validation(token);
    }
    let result = handle_inner(&state, req).await;
    if let Err(WebhookError::Api(api @ (ApiError::Store(_) | ApiError::Queue(_)))) = &result {
        log_failure("microsoft", api);
    }
    answer(Provider::Microsoft, http::StatusCode::ACCEPTED, result)
}

/// Graph's validation handshake: the `validationToken` echoed as `text/plain` within 10 seconds.
fn validation(token: String) -> Response {
    if token.is_empty() || token.len() > MAX_VALIDATION_TOKEN {
        return ApiError::InvalidRequest("validationToken is empty or too long".into()).into_response();
    }
    (
        [
            (http::header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        token,
    )
        .into_response()
}

async fn handle_inner(state: &WebhookState, req: Request) -> Result<Summary, WebhookError> {
    let body = read_body(req.into_body()).await?;
    let notes = parse_notifications(&body).map_err(|e| match e {
        NotificationsError::Json(d) => ApiError::MalformedJson(d),
        NotificationsError::Invalid(d) => ApiError::InvalidRequest(d.to_owned()),
    })?;
    // Verify every notification before enqueueing anything.
    let mut targets: Vec<(TenantId, ConnectionId, Ask)> = Vec::new();
    let mut verified: Vec<(String, TenantId, ConnectionId)> = Vec::new();
    for note in &notes {
        let known = verified.iter().find(|(id, _, _)| *id == note.subscription_id).cloned();
        let (tenant, connection) = match known {
            Some((_, t, c)) => (t, c),
            None => {
                let Some((t, c, provider)) = state.connections.find_channel(&note.subscription_id).await?
                else {
                    return Err(WebhookError::Unverified("unknown subscription"));
                };
                if provider != Provider::Microsoft {
                    return Err(WebhookError::Unverified("subscription of another provider"));
                }
                verified.push((note.subscription_id.clone(), t.clone(), c.clone()));
                (t, c)
            }
        };
        // Every notification's clientState is checked, also of a subscription seen before.
        let paused = verify(state, note, &tenant, &connection).await?;
        let renew = note.lifecycle_event.as_ref().is_some_and(LifecycleEvent::renews_subscription);
        if !paused {
            targets.push((tenant, connection, Ask { renew_channel: renew, ..Ask::default() }));
        }
    }
    let mut summary = Summary { received: notes.len(), ..Summary::default() };
    summary.jobs = enqueue(state, targets).await?;
    Ok(summary)
}

/// The connection the subscription is registered to has a secret equal to the `clientState`.
/// Returns whether the connection is paused (then nothing is enqueued for it).
async fn verify(
    state: &WebhookState,
    note: &GraphNotification,
    tenant: &TenantId,
    connection: &ConnectionId,
) -> Result<bool, WebhookError> {
    let conn = load(state, tenant, connection).await?.ok_or(WebhookError::Unverified("connection gone"))?;
    // The registry maps the id to this connection; the secret (kept when a subscription is
    // recreated) is the connection's current one.
    let Some(channel) = conn.push_channel.as_ref().filter(|_| conn.provider == Provider::Microsoft) else {
        return Err(WebhookError::Unverified("the connection has no subscription"));
    };
    match note.client_state.as_deref() {
        Some(given) if secret_matches(&channel.secret, given) => Ok(conn.paused_at.is_some()),
        _ => Err(WebhookError::Unverified("clientState mismatch")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::domain::connection::sample_connection;
    use crate::domain::{Connection, PushChannel};
    use crate::ports::ConnectionStore;
    use secrecy::SecretString;
    use serde_json::{Value, json};

    const CLIENT_STATE: &str = "graph-client-state-value";

    async fn subscribed(h: &Harness, tenant: &str, sub: &str) -> Connection {
        let mut c = sample_connection(tenant, Provider::Microsoft, "https://graph.microsoft.com/v1.0", now());
        c.push_channel = Some(PushChannel {
            id: sub.into(),
            resource_id: None,
            secret: SecretString::from(CLIENT_STATE),
            expires_at: now() + chrono::Duration::days(2),
        });
        h.store.put_connection(c.clone());
        let channel = c.push_channel.clone().unwrap();
        h.store.put_channel(&channel, &c.tenant_id, &c.connection_id, Provider::Microsoft).await.unwrap();
        c
    }

    fn change(sub: &str, client_state: &str) -> Value {
        json!({
            "subscriptionId": sub, "clientState": client_state, "changeType": "updated",
            "resource": "Users/u1/Events/AAMk", "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "id": "AAMk"},
            "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95", "subscriptionExpirationDateTime": "2026-12-01T00:00:00Z"
        })
    }

    fn lifecycle(sub: &str, event: &str) -> Value {
        json!({"subscriptionId": sub, "clientState": CLIENT_STATE, "lifecycleEvent": event, "resource": "me/events"})
    }

    fn post(body: Value) -> http::Request<axum::body::Body> {
        http::Request::post("/webhooks/microsoft")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap()
    }

    #[tokio::test]
    async fn graph_validation_tokens_are_echoed_as_plain_text_and_enqueue_nothing() {
        use tower::ServiceExt;
        let h = harness();
        let req = http::Request::post("/webhooks/microsoft?validationToken=Validation%3A%20Testing%20client")
            .body(axum::body::Body::empty())
            .unwrap();
        let res = h.app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
        let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
        assert_eq!(&body[..], b"Validation: Testing client");
        let long = "x".repeat(MAX_VALIDATION_TOKEN + 1);
        let req = http::Request::post(format!("/webhooks/microsoft?validationToken={long}"))
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(send(&h.app, req).await.0, 422);
        assert!(h.queue.jobs().is_empty());
    }

    #[test]
    fn notification_collections_parse_and_malformed_ones_are_errors() {
        let body = json!({"value": [change("s1", "x"), lifecycle("s1", "reauthorizationRequired"), lifecycle("s1", "newThing")]});
        let notes = parse_notifications(body.to_string().as_bytes()).unwrap();
        assert_eq!(notes.len(), 3);
        assert_eq!(notes[0].change_type.as_deref(), Some("updated"));
        assert_eq!(notes[1].lifecycle_event, Some(LifecycleEvent::ReauthorizationRequired));
        assert_eq!(notes[2].lifecycle_event, Some(LifecycleEvent::Other("newThing".into())));
        for bad in
            ["", "[]", "{}", r#"{"value":[{}]}"#, r#"{"value":[{"subscriptionId":""}]}"#, r#"{"value":"#]
        {
            assert!(parse_notifications(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn change_notifications_with_the_client_state_enqueue_one_sync_per_connection_with_202() {
        let h = harness();
        let a = subscribed(&h, "acme", "sub-a").await;
        let b = subscribed(&h, "globex", "sub-b").await;
        let body = json!({"value": [change("sub-a", CLIENT_STATE), change("sub-a", CLIENT_STATE), change("sub-b", CLIENT_STATE)]});
        let (status, summary) = send(&h.app, post(body)).await;
        assert_eq!((status, summary["jobs"].as_u64()), (202, Some(2)));
        let mut connections: Vec<_> =
            h.queue.jobs().into_iter().map(|j| (j.connection_id, j.renew_channel)).collect();
        connections.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
        let mut expected = vec![(a.connection_id, false), (b.connection_id, false)];
        expected.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
        assert_eq!(connections, expected);
    }

    #[tokio::test]
    async fn any_wrong_client_state_or_unknown_subscription_refuses_the_whole_request() {
        let h = harness();
        subscribed(&h, "acme", "sub-a").await;
        for body in [
            json!({"value": [change("sub-a", CLIENT_STATE), change("sub-a", "guess")]}),
            json!({"value": [change("sub-a", CLIENT_STATE), change("sub-unknown", CLIENT_STATE)]}),
            json!({"value": [{"subscriptionId": "sub-a", "changeType": "updated"}]}),
        ] {
            let (status, problem) = send(&h.app, post(body)).await;
            assert_eq!((status, problem["code"].as_str()), (401, Some("unauthorized")));
            assert!(!problem.to_string().contains(CLIENT_STATE));
        }
        let (status, problem) = send(&h.app, post(json!({"value": 3}))).await;
        assert_eq!((status, problem["code"].as_str()), (400, Some("malformed_json")));
        assert!(h.queue.jobs().is_empty());
    }

    #[tokio::test]
    async fn lifecycle_notifications_renew_the_subscription_or_sync() {
        let h = harness();
        let a = subscribed(&h, "acme", "sub-a").await;
        subscribed(&h, "globex", "sub-b").await;
        subscribed(&h, "initech", "sub-c").await;
        let body = json!({"value": [
            lifecycle("sub-a", "reauthorizationRequired"),
            lifecycle("sub-b", "subscriptionRemoved"),
            lifecycle("sub-c", "missed"),
        ]});
        let (status, _) = send(&h.app, post(body)).await;
        assert_eq!(status, 202);
        let jobs = h.queue.jobs();
        assert_eq!(jobs.len(), 3);
        let renew_of = |t: &str| jobs.iter().find(|j| j.tenant_id.as_str() == t).map(|j| j.renew_channel);
        assert_eq!(
            (renew_of("acme"), renew_of("globex"), renew_of("initech")),
            (Some(true), Some(true), Some(false))
        );
        // A plain change in the same window still gets its own (renewing) job id, not swallowed.
        let (status, _) = send(&h.app, post(json!({"value": [change("sub-a", CLIENT_STATE)]}))).await;
        assert_eq!(status, 202);
        assert_eq!(h.queue.jobs().iter().filter(|j| j.connection_id == a.connection_id).count(), 2);
    }
}
