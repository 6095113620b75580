//! `POST /webhooks/fireflies?account={email}`: Fireflies' "Transcription completed" webhook
//! (<https://docs.fireflies.ai/graphql-api/webhooks>): a JSON body `{"meetingId", "eventType",
//! "clientReferenceId"}` signed in `x-hub-signature` with the hex HMAC-SHA256 of the raw body
//! under the secret saved beside the webhook URL in Fireflies' Developer settings.
//!
//! The body names no account, so the URL each Fireflies user saves names it: `account` is the
//! connection's `account_id` (the API key owner's email). The secret is the deployment's
//! (`FIREFLIES_WEBHOOK_SECRET`; unset: every webhook is refused), as Gmail's push token is: a
//! forged call could only start a sync, which reads. `meetingId` is deduplicated on the delivery
//! ledger; each unpaused Fireflies connection of the account gets one coalesced job that also
//! reconciles deletes.

use axum::extract::{Request, State};
use axum::response::Response;
use chrono::Duration;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::Sha256;

use super::{Ask, Summary, WebhookError, WebhookState, answer, enqueue, load, log_failure, read_body};
use crate::domain::Provider;
use crate::http::problem::ApiError;

/// How long a meeting id is remembered (a redelivery comes within hours).
const DELIVERY_TTL_DAYS: i64 = 2;
/// Longest meeting id or account accepted.
const MAX_FIELD_LEN: usize = 320;

/// One Fireflies webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirefliesEvent {
    pub meeting_id: String,
    pub event_type: String,
}

/// Why a body is not a Fireflies webhook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Fireflies webhook: {0}")]
pub struct EventError(&'static str);

/// Reads a webhook body. Pure, for unit tests and fuzzing.
pub fn parse_event(body: &[u8]) -> Result<FirefliesEvent, EventError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| EventError("the body is not JSON"))?;
    let field = |name: &str, what: &'static str| {
        v.get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_FIELD_LEN)
            .map(str::to_owned)
            .ok_or(EventError(what))
    };
    Ok(FirefliesEvent {
        meeting_id: field("meetingId", "no meetingId")?,
        event_type: field("eventType", "no eventType")?,
    })
}

/// Whether `signature` (hex, optionally `sha256=`-prefixed) is the HMAC-SHA256 of `body` under
/// `secret`; compared in constant time.
pub fn verify_signature(secret: &SecretString, body: &[u8], signature: &str) -> bool {
    let hex = signature.trim().strip_prefix("sha256=").unwrap_or(signature.trim());
    let Some(given) = decode_hex(hex) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

pub(super) async fn handle(State(state): State<WebhookState>, req: Request) -> Response {
    let result = handle_inner(&state, req).await;
    if let Err(WebhookError::Api(api @ (ApiError::Store(_) | ApiError::Queue(_)))) = &result {
        log_failure("fireflies", api);
    }
    answer(Provider::Fireflies, http::StatusCode::OK, result)
}

async fn handle_inner(state: &WebhookState, req: Request) -> Result<Summary, WebhookError> {
    let (parts, body) = req.into_parts();
    let body = read_body(body).await?;
    let signature = parts.headers.get("x-hub-signature").and_then(|v| v.to_str().ok());
    let verified = match (&state.settings.fireflies_webhook_secret, signature) {
        (Some(secret), Some(sig)) => verify_signature(secret, &body, sig),
        _ => false,
    };
    if !verified {
        return Err(WebhookError::Unverified("x-hub-signature mismatch"));
    }
    let event = parse_event(&body).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let account = parts
        .uri
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "account")
                .map(|(_, v)| v.into_owned())
        })
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty() && a.len() <= MAX_FIELD_LEN)
        .ok_or_else(|| ApiError::InvalidRequest("the webhook URL names no account (?account=)".into()))?;
    let now = state.clock.now();
    let key = format!("fireflies#{}#{}", account, event.meeting_id);
    let mut summary = Summary { received: 1, ..Summary::default() };
    if !state.deliveries.first_delivery(&key, now, now + Duration::days(DELIVERY_TTL_DAYS)).await? {
        summary.duplicates = 1;
        return Ok(summary);
    }
    let outcome = async {
        let mut targets = Vec::new();
        for (tenant, connection) in state.connections.find_by_account(Provider::Fireflies, &account).await? {
            if let Some(c) = load(state, &tenant, &connection).await?
                && c.provider == Provider::Fireflies
                && c.paused_at.is_none()
            {
                targets.push((tenant, connection, Ask { check_deletes: true, ..Ask::default() }));
            }
        }
        if targets.is_empty() {
            return Ok::<usize, WebhookError>(0);
        }
        Ok(enqueue(state, targets).await?)
    }
    .await;
    match outcome {
        Ok(0) => summary.unmatched = 1,
        Ok(jobs) => summary.jobs = jobs,
        Err(e) => {
            // Fireflies' retry must get through: it must not count as a duplicate.
            if let Err(forget) = state.deliveries.forget_delivery(&key).await {
                log_failure("fireflies", &forget);
            }
            return Err(e);
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::domain::{Connection, Credentials, NewConnection, TenantId};
    use serde_json::json;

    const SECRET: &str = FIREFLIES_SECRET;

    fn sign(body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(body);
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn post(query: &str, body: &str, signature: Option<String>) -> http::Request<axum::body::Body> {
        let mut req = http::Request::post(format!("/webhooks/fireflies{query}"))
            .header("content-type", "application/json");
        if let Some(s) = signature {
            req = req.header("x-hub-signature", s);
        }
        req.body(axum::body::Body::from(body.to_owned())).unwrap()
    }

    #[test]
    fn events_parse_signatures_verify_and_anything_else_is_refused() {
        let body = br#"{"meetingId":"01ABC","eventType":"Transcription completed","clientReferenceId":null}"#;
        assert_eq!(
            parse_event(body).unwrap(),
            FirefliesEvent { meeting_id: "01ABC".into(), event_type: "Transcription completed".into() }
        );
        for bad in ["", "{}", r#"{"meetingId":""}"#, r#"{"meetingId":1,"eventType":"x"}"#] {
            assert!(parse_event(bad.as_bytes()).is_err(), "{bad}");
        }
        let secret = SecretString::from(SECRET);
        assert!(verify_signature(&secret, body, &sign(body)));
        assert!(verify_signature(&secret, body, &format!("sha256={}", sign(body))));
        assert!(!verify_signature(&secret, b"{}", &sign(body)));
        assert!(!verify_signature(&secret, body, "zz"));
        assert!(!verify_signature(&SecretString::from("another-secret!!"), body, &sign(body)));
    }

    #[tokio::test]
    async fn a_signed_webhook_enqueues_one_job_for_the_accounts_connection_and_a_redelivery_none() {
        let h = harness();
        let mut c = Connection::new(
            TenantId::parse("acme").unwrap(),
            NewConnection {
                provider: Provider::Fireflies,
                base_url: "https://api.fireflies.ai".into(),
                credentials: Credentials {
                    access_token: SecretString::from("k"),
                    refresh_token: None,
                    expires_at: None,
                },
                interval_minutes: 30,
                settings: Default::default(),
            },
            now(),
        );
        c.account_id = Some("ada@acme.example".into());
        crate::ports::ConnectionStore::create(h.store.as_ref(), &c).await.unwrap();
        let app = &h.app;
        let body = r#"{"meetingId":"01ABC","eventType":"Transcription completed"}"#;
        let (status, answer) =
            send(app, post("?account=Ada@acme.example", body, Some(sign(body.as_bytes())))).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["jobs"], 1, "{answer}");
        let jobs = h.queue.take();
        assert_eq!(jobs.len(), 1);
        assert!(jobs[0].check_deletes, "a webhook also reconciles deletes");
        let (_, again) =
            send(app, post("?account=ada@acme.example", body, Some(sign(body.as_bytes())))).await;
        assert_eq!(again["duplicates"], 1, "{again}");
        assert!(h.queue.take().is_empty());
        let (status, _) = send(app, post("?account=ada@acme.example", body, Some(sign(b"other")))).await;
        assert_eq!(status, 401);
        let (status, _) = send(app, post("?account=ada@acme.example", body, None)).await;
        assert_eq!(status, 401);
        let other = r#"{"meetingId":"02DEF","eventType":"Transcription completed"}"#;
        let (status, _) = send(app, post("", other, Some(sign(other.as_bytes())))).await;
        assert_eq!(status, 422, "no account in the URL: an invalid request");
        let (_, unknown) =
            send(app, post("?account=nobody@x.example", other, Some(sign(other.as_bytes())))).await;
        assert_eq!(unknown["unmatched"], 1, "{unknown}");
        assert_eq!(json!(h.queue.take().len()), json!(0));
    }
}
