//! `POST /webhooks/gmail`: Gmail push notifications, as a Pub/Sub push subscription delivers them
//! (<https://developers.google.com/gmail/api/guides/push#receiving_notifications>): a JSON body
//! `{"message": {"data": base64 of {"emailAddress", "historyId"}, "messageId", ...},
//! "subscription"}`. The subscription is the deployment's (one topic for every mailbox), so the
//! proof is the deployment's too: its OIDC token (`Authorization: Bearer`, checked by
//! [`super::pubsub_auth`], in AWS and locally alike); nothing configured: every push is refused. The proof is checked before the body is read as a push. Pub/Sub delivers at
//! least once, so `messageId` is deduplicated on the delivery ledger. The mailbox address leads to
//! the Gmail connections of that account (`find_by_account`), each getting one coalesced job.

use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use chrono::Duration;
use serde_json::Value;

use super::pubsub_auth::Refused;
use super::{Ask, Summary, WebhookError, WebhookState, answer, enqueue, load, log_failure, read_body};
use crate::domain::Provider;
use crate::http::problem::ApiError;

/// How long a Pub/Sub message id is remembered (Pub/Sub retries for up to 7 days).
const DELIVERY_TTL_DAYS: i64 = 7;
/// Longest mailbox address or message id accepted.
const MAX_FIELD_LEN: usize = 320;

/// One Gmail push notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GmailPush {
    /// Pub/Sub's id of the message (unique per publish; a redelivery repeats it).
    pub message_id: String,
    /// The mailbox that changed, lowercase.
    pub email: String,
    pub history_id: u64,
}

/// Why a body is not a Gmail push.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Gmail push notification: {0}")]
pub struct PushError(&'static str);

fn bounded(v: Option<&Value>, what: &'static str) -> Result<String, PushError> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= MAX_FIELD_LEN)
        .map(str::to_owned)
        .ok_or(PushError(what))
}

/// Reads a Pub/Sub push body. Pure, for unit tests and the fuzz target.
pub fn parse_push(body: &[u8]) -> Result<GmailPush, PushError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| PushError("the body is not JSON"))?;
    let message = v.get("message").ok_or(PushError("no message"))?;
    let message_id = bounded(message.get("messageId").or_else(|| message.get("message_id")), "no messageId")?;
    let data = bounded(message.get("data"), "no data")?;
    let decoded = STANDARD
        .decode(&data)
        .or_else(|_| URL_SAFE.decode(&data))
        .map_err(|_| PushError("data is not base64"))?;
    let inner: Value = serde_json::from_slice(&decoded).map_err(|_| PushError("data is not JSON"))?;
    let email = bounded(inner.get("emailAddress"), "no emailAddress")?.to_lowercase();
    if !email.contains('@') {
        return Err(PushError("emailAddress is not an address"));
    }
    let history_id = match inner.get("historyId") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or(PushError("no historyId"))?;
    Ok(GmailPush { message_id, email, history_id })
}

pub(super) async fn handle(State(state): State<WebhookState>, req: Request) -> Response {
    let result = handle_inner(&state, req).await;
    if let Err(WebhookError::Api(api @ (ApiError::Store(_) | ApiError::Queue(_)))) = &result {
        log_failure("gmail", api);
    }
    answer(Provider::Gmail, http::StatusCode::OK, result)
}

async fn handle_inner(state: &WebhookState, req: Request) -> Result<Summary, WebhookError> {
    let (parts, body) = req.into_parts();
    state.settings.gmail_push.verify(&parts).await.map_err(|refused| match refused {
        Refused::Unverified(reason) => WebhookError::Unverified(reason),
        Refused::KeysUnavailable => WebhookError::Unavailable("the push token keys could not be read"),
    })?;
    let body = read_body(body).await?;
    let push = parse_push(&body).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let now = state.clock.now();
    let key = format!("gmail#{}", push.message_id);
    let mut summary = Summary { received: 1, ..Summary::default() };
    if !state.deliveries.first_delivery(&key, now, now + Duration::days(DELIVERY_TTL_DAYS)).await? {
        summary.duplicates = 1;
        return Ok(summary);
    }
    let result = targets(state, &push.email).await;
    let targets = match result {
        Ok(t) => t,
        Err(e) => {
            // Pub/Sub retries what was not acknowledged: that retry must not count as a duplicate.
            if let Err(forget) = state.deliveries.forget_delivery(&key).await {
                log_failure("gmail", &forget);
            }
            return Err(e);
        }
    };
    if targets.is_empty() {
        summary.unmatched = 1;
        return Ok(summary);
    }
    match enqueue(state, targets).await {
        Ok(jobs) => summary.jobs = jobs,
        Err(e) => {
            if let Err(forget) = state.deliveries.forget_delivery(&key).await {
                log_failure("gmail", &forget);
            }
            return Err(e.into());
        }
    }
    Ok(summary)
}

/// The unpaused Gmail connections of the mailbox.
async fn targets(
    state: &WebhookState,
    email: &str,
) -> Result<Vec<(crate::domain::TenantId, crate::domain::ConnectionId, Ask)>, WebhookError> {
    let mut out = Vec::new();
    for (tenant, connection) in state.connections.find_by_account(Provider::Gmail, email).await? {
        if let Some(c) = load(state, &tenant, &connection).await?
            && c.provider == Provider::Gmail
            && c.paused_at.is_none()
        {
            out.push((tenant, connection, Ask::default()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::pubsub_auth::PushAuth;
    use super::super::pubsub_auth::tests::{Jwks, Signer, claims};
    use super::super::test_support::gmail_push_body as body;
    use super::super::test_support::*;
    use super::*;

    /// A push with `Authorization: Bearer <token>` when a token is given.
    fn post(token: Option<&str>, body: String) -> http::Request<axum::body::Body> {
        let mut req = http::Request::post("/webhooks/gmail").header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        req.body(axum::body::Body::from(body)).unwrap()
    }

    #[test]
    fn pushes_parse_and_anything_else_is_refused() {
        let p = parse_push(body("Owner@Acme.example", "42").as_bytes()).unwrap();
        assert_eq!(
            p,
            GmailPush { message_id: "42".into(), email: "owner@acme.example".into(), history_id: 1234 }
        );
        for bad in [
            "",
            "{}",
            r#"{"message":{"messageId":"1","data":"!!"}}"#,
            r#"{"message":{"messageId":"1","data":"e30="}}"#,
        ] {
            assert!(parse_push(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_verified_push_enqueues_one_job_for_the_mailboxs_connection_and_a_redelivery_none() {
        let google = Signer::new("google-key");
        let jwks = Jwks::serve(&[&google], "max-age=3600").await;
        let h = harness_with(PushAuth::Oidc(Arc::new(jwks.verifier(std::time::Duration::ZERO))));
        let c = gmail_connection(&h, "owner@acme.example").await;
        let token = google.sign(&claims());

        let (status, _) = send(&h.app, post(Some("not-a-jwt"), body("owner@acme.example", "1"))).await;
        assert_eq!(status, 401);
        let (status, _) = send(&h.app, post(None, body("owner@acme.example", "1"))).await;
        assert_eq!(status, 401);
        assert!(h.queue.jobs().is_empty());

        let (status, summary) = send(&h.app, post(Some(&token), body("owner@acme.example", "1"))).await;
        assert_eq!(status, 200, "{summary}");
        assert_eq!(summary["jobs"], 1);
        assert_eq!(h.queue.jobs()[0].connection_id, c.connection_id);
        let (_, again) = send(&h.app, post(Some(&token), body("owner@acme.example", "1"))).await;
        assert_eq!(again["duplicates"], 1, "Pub/Sub's redelivery of the same message");
        let (_, other) = send(&h.app, post(Some(&token), body("nobody@else.example", "2"))).await;
        assert_eq!(other["unmatched"], 1);
        assert_eq!(h.queue.jobs().len(), 1);
        let (status, problem) = send(&h.app, post(Some(&token), "{not json".into())).await;
        assert_eq!(status, 422, "a malformed body is the API's invalid-request problem: {problem}");
    }

    #[tokio::test]
    async fn with_nothing_configured_every_push_is_a_401_problem() {
        let h = harness();
        gmail_connection(&h, "owner@acme.example").await;
        let (status, problem) =
            send(&h.app, post(Some(&Signer::new("k").sign(&claims())), body("owner@acme.example", "1")))
                .await;
        assert_eq!((status, problem["code"].as_str()), (401, Some("unauthorized")), "{problem}");
        assert!(h.queue.jobs().is_empty());
    }
}
