//! `POST /webhooks/google` and `POST /webhooks/google_drive`: Google Calendar and Drive push
//! notifications (Drive's change-feed channels speak the same headers). Everything is in the headers
//! (`X-Goog-Channel-ID`, `X-Goog-Channel-Token`, `X-Goog-Resource-State`, `X-Goog-Resource-ID`,
//! `X-Goog-Message-Number`); the body is empty. The channel id leads to the connection
//! (`ConnectionStore::find_channel`), whose channel secret must equal the token (constant time;
//! the secret is kept across renewals, so a replaced channel still verifies) and, for the current
//! channel, whose resource id must match: otherwise 401 and nothing is enqueued. `sync` (the
//! handshake after `events.watch` or `changes.watch`) is acknowledged; `exists` / `not_exists`
//! (Calendar) and `change` (Drive's change feed) enqueue one coalesced incremental sync.

use axum::extract::{Request, State};
use axum::response::Response;
use http::HeaderMap;

use super::{
    Ask, Summary, WebhookError, WebhookState, answer, enqueue, load, log_failure, read_body, secret_matches,
};
use crate::domain::Provider;
use crate::http::problem::ApiError;

pub const CHANNEL_ID_HEADER: &str = "x-goog-channel-id";
pub const CHANNEL_TOKEN_HEADER: &str = "x-goog-channel-token";
pub const RESOURCE_STATE_HEADER: &str = "x-goog-resource-state";
pub const RESOURCE_ID_HEADER: &str = "x-goog-resource-id";
pub const MESSAGE_NUMBER_HEADER: &str = "x-goog-message-number";
/// Longest header value accepted (Google's channel ids and tokens are at most 64 and 256).
const MAX_HEADER_LEN: usize = 512;

/// What a notification says about the watched resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceState {
    /// The channel was just opened: nothing changed.
    Sync,
    /// Something in the calendar changed.
    Exists,
    /// Something was deleted.
    NotExists,
    /// Drive: the change feed has new changes.
    Change,
}

/// The headers of one Google push notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleNotification {
    pub channel_id: String,
    /// The channel token we set (the channel's secret); `None` when absent (never verifies).
    pub token: Option<String>,
    pub state: ResourceState,
    pub resource_id: Option<String>,
    pub message_number: Option<u64>,
}

/// Why the headers are not a Google notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header {0} is missing")]
    Missing(&'static str),
    #[error("header {0} is not valid")]
    Invalid(&'static str),
}

fn header(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, HeaderError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => {
            let v = v.to_str().map_err(|_| HeaderError::Invalid(name))?.trim();
            if v.is_empty() || v.len() > MAX_HEADER_LEN {
                return Err(HeaderError::Invalid(name));
            }
            Ok(Some(v.to_owned()))
        }
    }
}

/// Reads a notification from its headers. Pure, for unit tests and the fuzz target.
pub fn parse_headers(headers: &HeaderMap) -> Result<GoogleNotification, HeaderError> {
    let channel_id = header(headers, CHANNEL_ID_HEADER)?.ok_or(HeaderError::Missing(CHANNEL_ID_HEADER))?;
    let state = match header(headers, RESOURCE_STATE_HEADER)?.as_deref() {
        None => return Err(HeaderError::Missing(RESOURCE_STATE_HEADER)),
        Some("sync") => ResourceState::Sync,
        Some("exists") => ResourceState::Exists,
        Some("not_exists") => ResourceState::NotExists,
        Some("change") => ResourceState::Change,
        Some(_) => return Err(HeaderError::Invalid(RESOURCE_STATE_HEADER)),
    };
    let message_number = header(headers, MESSAGE_NUMBER_HEADER)?
        .map(|v| v.parse::<u64>().map_err(|_| HeaderError::Invalid(MESSAGE_NUMBER_HEADER)))
        .transpose()?;
    Ok(GoogleNotification {
        channel_id,
        token: header(headers, CHANNEL_TOKEN_HEADER)?,
        state,
        resource_id: header(headers, RESOURCE_ID_HEADER)?,
        message_number,
    })
}

pub(super) async fn handle(State(state): State<WebhookState>, req: Request) -> Response {
    handle_for(&state, req, Provider::Google).await
}

pub(super) async fn handle_drive(State(state): State<WebhookState>, req: Request) -> Response {
    handle_for(&state, req, Provider::GoogleDrive).await
}

async fn handle_for(state: &WebhookState, req: Request, provider: Provider) -> Response {
    let result = handle_inner(state, req, provider).await;
    if let Err(WebhookError::Api(api @ (ApiError::Store(_) | ApiError::Queue(_)))) = &result {
        log_failure(provider.as_str(), api);
    }
    answer(provider, http::StatusCode::OK, result)
}

async fn handle_inner(
    state: &WebhookState,
    req: Request,
    expected: Provider,
) -> Result<Summary, WebhookError> {
    let (parts, body) = req.into_parts();
    read_body(body).await?;
    let note = parse_headers(&parts.headers).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let Some((tenant, connection, provider)) = state.connections.find_channel(&note.channel_id).await? else {
        return Err(WebhookError::Unverified("unknown channel"));
    };
    if provider != expected {
        return Err(WebhookError::Unverified("channel of another provider"));
    }
    let conn = load(state, &tenant, &connection).await?.ok_or(WebhookError::Unverified("connection gone"))?;
    // The secret is kept across renewals, so a replaced channel still in flight (registered to
    // this connection until its TTL) verifies against the connection's current secret.
    let Some(channel) = conn.push_channel.as_ref().filter(|_| conn.provider == expected) else {
        return Err(WebhookError::Unverified("the connection has no channel"));
    };
    let token_ok = note.token.as_deref().is_some_and(|t| secret_matches(&channel.secret, t));
    if !token_ok {
        return Err(WebhookError::Unverified("channel token mismatch"));
    }
    if let (true, Some(expected), Some(given)) =
        (channel.id == note.channel_id, channel.resource_id.as_deref(), note.resource_id.as_deref())
        && expected != given
    {
        return Err(WebhookError::Unverified("resource id mismatch"));
    }
    let mut summary = Summary { received: 1, ..Summary::default() };
    if note.state != ResourceState::Sync && conn.paused_at.is_none() {
        summary.jobs = enqueue(state, vec![(tenant, connection, Ask::default())]).await?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::domain::connection::sample_connection;
    use crate::domain::{Connection, PushChannel};
    use crate::ports::ConnectionStore;
    use secrecy::SecretString;

    const TOKEN: &str = "google-channel-token-value";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    async fn watched(h: &Harness) -> Connection {
        let mut c =
            sample_connection("acme", Provider::Google, "https://www.googleapis.com/calendar/v3", now());
        c.push_channel = Some(PushChannel {
            id: "ch-1".into(),
            resource_id: Some("res-1".into()),
            secret: SecretString::from(TOKEN),
            expires_at: now() + chrono::Duration::days(7),
        });
        h.store.put_connection(c.clone());
        let channel = c.push_channel.clone().unwrap();
        h.store.put_channel(&channel, &c.tenant_id, &c.connection_id, Provider::Google).await.unwrap();
        c
    }

    fn notification(channel: &str, token: Option<&str>, state: &str) -> http::Request<axum::body::Body> {
        let mut r = http::Request::post("/webhooks/google")
            .header(CHANNEL_ID_HEADER, channel)
            .header(RESOURCE_STATE_HEADER, state)
            .header(RESOURCE_ID_HEADER, "res-1")
            .header(MESSAGE_NUMBER_HEADER, "2");
        if let Some(t) = token {
            r = r.header(CHANNEL_TOKEN_HEADER, t);
        }
        r.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn headers_parse_into_a_notification_and_bad_ones_are_errors() {
        let n = parse_headers(&headers(&[
            (CHANNEL_ID_HEADER, "ch-1"),
            (CHANNEL_TOKEN_HEADER, "tok"),
            (RESOURCE_STATE_HEADER, "not_exists"),
            (RESOURCE_ID_HEADER, "res-1"),
            (MESSAGE_NUMBER_HEADER, "17"),
        ]))
        .unwrap();
        assert_eq!(n.state, ResourceState::NotExists);
        assert_eq!((n.token.as_deref(), n.message_number), (Some("tok"), Some(17)));
        assert_eq!(
            parse_headers(&headers(&[(RESOURCE_STATE_HEADER, "sync")])),
            Err(HeaderError::Missing(CHANNEL_ID_HEADER))
        );
        assert_eq!(
            parse_headers(&headers(&[(CHANNEL_ID_HEADER, "c"), (RESOURCE_STATE_HEADER, "gone")])),
            Err(HeaderError::Invalid(RESOURCE_STATE_HEADER))
        );
        assert_eq!(
            parse_headers(&headers(&[
                (CHANNEL_ID_HEADER, "c"),
                (RESOURCE_STATE_HEADER, "exists"),
                (MESSAGE_NUMBER_HEADER, "-1")
            ])),
            Err(HeaderError::Invalid(MESSAGE_NUMBER_HEADER))
        );
    }

    #[tokio::test]
    async fn a_change_on_a_known_channel_with_its_token_enqueues_one_sync_and_the_handshake_none() {
        let h = harness();
        let conn = watched(&h).await;
        let (status, _) = send(&h.app, notification("ch-1", Some(TOKEN), "sync")).await;
        assert_eq!(status, 200);
        assert!(h.queue.jobs().is_empty(), "the sync handshake enqueues nothing");
        for state in ["exists", "not_exists", "exists"] {
            let (status, _) = send(&h.app, notification("ch-1", Some(TOKEN), state)).await;
            assert_eq!(status, 200);
        }
        let jobs = h.queue.jobs();
        assert_eq!(jobs.len(), 1, "coalesced within the window");
        assert_eq!(jobs[0].connection_id, conn.connection_id);
        assert_eq!(jobs[0].reason, crate::domain::JobReason::Webhook);
    }

    #[tokio::test]
    async fn a_drive_change_notification_enqueues_one_sync_and_a_calendar_channel_is_refused_on_the_drive_route()
     {
        let h = harness();
        let mut c =
            sample_connection("acme", Provider::GoogleDrive, "https://www.googleapis.com/drive/v3", now());
        c.push_channel = Some(PushChannel {
            id: "drive-1".into(),
            resource_id: Some("res-1".into()),
            secret: SecretString::from(TOKEN),
            expires_at: now() + chrono::Duration::days(7),
        });
        h.store.put_connection(c.clone());
        let channel = c.push_channel.clone().unwrap();
        h.store.put_channel(&channel, &c.tenant_id, &c.connection_id, Provider::GoogleDrive).await.unwrap();
        watched(&h).await;
        let to_drive = |channel: &str, state: &str| {
            let mut r = notification(channel, Some(TOKEN), state);
            *r.uri_mut() = "/webhooks/google_drive".parse().unwrap();
            r
        };
        assert_eq!(send(&h.app, to_drive("drive-1", "sync")).await.0, 200);
        assert!(h.queue.jobs().is_empty(), "the handshake enqueues nothing");
        assert_eq!(send(&h.app, to_drive("drive-1", "change")).await.0, 200);
        let jobs = h.queue.jobs();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].connection_id, c.connection_id);
        let (status, _) = send(&h.app, to_drive("ch-1", "change")).await;
        assert_eq!(status, 401, "a Calendar channel on the Drive route");
        let (status, _) = send(&h.app, notification("drive-1", Some(TOKEN), "change")).await;
        assert_eq!(status, 401, "a Drive channel on the Calendar route");
        assert_eq!(h.queue.jobs().len(), 1);
    }

    #[tokio::test]
    async fn unknown_channels_and_wrong_or_missing_tokens_are_401_and_enqueue_nothing() {
        let h = harness();
        let c = watched(&h).await;
        for req in [
            notification("ch-unknown", Some(TOKEN), "exists"),
            notification("ch-1", Some("google-channel-token-valuX"), "exists"),
            notification("ch-1", None, "exists"),
        ] {
            let (status, problem) = send(&h.app, req).await;
            assert_eq!((status, problem["code"].as_str()), (401, Some("unauthorized")));
            assert!(!problem.to_string().contains(TOKEN));
        }
        // A replaced channel still registered to the connection verifies with the same secret.
        let mut old = c.push_channel.clone().unwrap();
        old.id = "ch-0".into();
        h.store.put_channel(&old, &c.tenant_id, &c.connection_id, Provider::Google).await.unwrap();
        let mut from_old = notification("ch-0", Some(TOKEN), "exists");
        from_old.headers_mut().insert(RESOURCE_ID_HEADER, "res-0".parse().unwrap());
        assert_eq!(send(&h.app, from_old).await.0, 200);
        assert_eq!(h.queue.take().len(), 1);
        let mut other_resource = notification("ch-1", Some(TOKEN), "exists");
        other_resource.headers_mut().insert(RESOURCE_ID_HEADER, "res-2".parse().unwrap());
        assert_eq!(send(&h.app, other_resource).await.0, 401);
        let (status, problem) = send(&h.app, notification("ch-1", Some(TOKEN), "weird")).await;
        assert_eq!((status, problem["code"].as_str()), (422, Some("invalid_request")));
        assert!(h.queue.jobs().is_empty());
    }
}
