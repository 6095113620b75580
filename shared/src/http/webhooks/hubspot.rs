//! `POST /webhooks/hubspot`: HubSpot's batched webhook events (a JSON array of up to 100), signed
//! with the v3 scheme: `X-HubSpot-Signature-v3` = base64(HMAC-SHA256(app client secret, method +
//! URI + body + `X-HubSpot-Request-Timestamp`)), the timestamp (epoch milliseconds) within five
//! minutes of our clock. The URI is the full URL HubSpot called, rebuilt from `WEBHOOK_BASE_URL`
//! plus the request's path and query, with the characters HubSpot decodes before signing decoded.
//!
//! Verified events are deduplicated on `eventId` (the `DeliveryLedger`), echoes of our own writes
//! (`sourceId` = our app id) are counted and dropped, and the rest lead to one coalesced sync job
//! per connection of their portal (`ConnectionStore::find_by_account`); a deletion event makes that
//! job check for deletes at once (`Job::checking_deletes`).

use std::collections::BTreeMap;

use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::Duration;
use futures::stream::{self, StreamExt};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde::{Deserialize, Deserializer};
use sha2::Sha256;

use super::{Ask, Summary, WebhookError, WebhookState, answer, enqueue, load, log_failure, read_body};
use crate::domain::{ConnectionId, Provider, TenantId};
use crate::http::problem::ApiError;

pub const SIGNATURE_HEADER: &str = "x-hubspot-signature-v3";
pub const TIMESTAMP_HEADER: &str = "x-hubspot-request-timestamp";
/// How far the request timestamp may be from our clock (either way).
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;
/// How long an `eventId` is remembered: longer than HubSpot's retries (10 attempts over 24 hours).
pub const DELIVERY_TTL_HOURS: i64 = 72;
/// Concurrent conditional puts of delivery markers per request.
const LEDGER_CONCURRENCY: usize = 16;
/// Longest id accepted in an event (ids become parts of DynamoDB keys).
const MAX_ID_LEN: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Why a v3 signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature or timestamp header is missing")]
    Missing,
    #[error("the timestamp is not epoch milliseconds")]
    BadTimestamp,
    #[error("the timestamp is more than five minutes away")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

impl SignatureError {
    fn reason(self) -> &'static str {
        match self {
            SignatureError::Missing => "signature or timestamp missing",
            SignatureError::BadTimestamp => "timestamp malformed",
            SignatureError::Stale => "timestamp stale",
            SignatureError::Mismatch => "signature mismatch",
        }
    }
}

/// The URI HubSpot signs: `base` + `path_and_query`, with the percent-escapes HubSpot decodes
/// before signing (`: / ? @ ! $ ' ( ) * , ;`) decoded; other escapes stay as sent.
pub fn signed_uri(base: &str, path_and_query: &str) -> String {
    const DECODED: [(&str, char); 12] = [
        ("3A", ':'),
        ("2F", '/'),
        ("3F", '?'),
        ("40", '@'),
        ("21", '!'),
        ("24", '$'),
        ("27", '\''),
        ("28", '('),
        ("29", ')'),
        ("2A", '*'),
        ("2C", ','),
        ("3B", ';'),
    ];
    let raw = format!("{}{}", base.trim_end_matches('/'), path_and_query);
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw.as_str();
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let escape = rest.get(i + 1..i + 3).map(str::to_ascii_uppercase);
        match escape.and_then(|e| DECODED.iter().find(|(code, _)| *code == e)) {
            Some((_, c)) => {
                out.push(*c);
                rest = &rest[i + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The v3 signature of a request: base64(HMAC-SHA256(secret, method + uri + body + timestamp)).
pub fn sign(secret: &[u8], method: &str, uri: &str, body: &[u8], timestamp: &str) -> String {
    STANDARD.encode(mac(secret, method, uri, body, timestamp).finalize().into_bytes())
}

fn mac(secret: &[u8], method: &str, uri: &str, body: &[u8], timestamp: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(method.as_bytes());
    mac.update(uri.as_bytes());
    mac.update(body);
    mac.update(timestamp.as_bytes());
    mac
}

/// Checks a v3 signature: the timestamp within [`MAX_SKEW_MS`] of `now_ms`, then the HMAC in
/// constant time (`verify_slice`). Pure, for unit tests and the fuzz target.
pub fn verify_signature(
    secret: &[u8],
    method: &str,
    uri: &str,
    body: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    now_ms: i64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let sent_ms: i64 = timestamp.trim().parse().map_err(|_| SignatureError::BadTimestamp)?;
    if now_ms.checked_sub(sent_ms).is_none_or(|skew| skew.checked_abs().is_none_or(|s| s > MAX_SKEW_MS)) {
        return Err(SignatureError::Stale);
    }
    let given = STANDARD.decode(signature.trim()).map_err(|_| SignatureError::Mismatch)?;
    mac(secret, method, uri, body, timestamp).verify_slice(&given).map_err(|_| SignatureError::Mismatch)
}

/// One webhook event as HubSpot sends it. Ids arrive as numbers (or strings) and are kept as
/// strings of at most 64 characters from `[A-Za-z0-9._:-]`; unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubspotEvent {
    #[serde(deserialize_with = "id")]
    pub event_id: String,
    #[serde(default, deserialize_with = "opt_id")]
    pub subscription_id: Option<String>,
    #[serde(deserialize_with = "id")]
    pub portal_id: String,
    #[serde(default, deserialize_with = "opt_id")]
    pub app_id: Option<String>,
    #[serde(default)]
    pub occurred_at: Option<i64>,
    /// `contact.creation`, `contact.propertyChange`, `contact.deletion`, `company.*`, `deal.*`, ...
    pub subscription_type: String,
    #[serde(default)]
    pub attempt_number: Option<u32>,
    #[serde(default, deserialize_with = "opt_id")]
    pub object_id: Option<String>,
    /// The object type of a generic `object.*` event: `0-1` contacts, `0-2` companies, `0-3`
    /// deals, `0-46` notes, ...
    #[serde(default, deserialize_with = "opt_id")]
    pub object_type_id: Option<String>,
    /// `CRM_UI`, `IMPORT`, `API`, `INTEGRATION`, `WORKFLOWS`, ...
    #[serde(default)]
    pub change_source: Option<String>,
    /// Who made the change: `userId:123`, or an app's id for `INTEGRATION` changes.
    #[serde(default, deserialize_with = "opt_text")]
    pub source_id: Option<String>,
    #[serde(default)]
    pub property_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub property_value: Option<String>,
}

impl HubspotEvent {
    /// True when our own app made the change: its `sourceId` is our app id (HubSpot's
    /// `changeSource` is then `INTEGRATION` or `API`). `appId` is not used: it names the app the
    /// subscription belongs to, which is ours for every event we receive.
    pub fn is_echo(&self, our_app_id: Option<&str>) -> bool {
        let (Some(ours), Some(source)) = (our_app_id, self.source_id.as_deref()) else {
            return false;
        };
        source.trim() == ours
    }
}

/// The object type ids of what Syncbridge syncs: contacts, companies, deals, notes, and the
/// activities calls (`0-48`), emails (`0-49`), meetings (`0-47`) and tasks (`0-27`).
const SYNCED_TYPE_IDS: [&str; 8] = ["0-1", "0-2", "0-3", "0-46", "0-48", "0-49", "0-47", "0-27"];

impl HubspotEvent {
    /// True when a record of a type Syncbridge syncs was deleted (archived): the legacy
    /// `contact.deletion`, `company.deletion`, `deal.deletion`, or the generic `object.deletion`
    /// of contacts, companies, deals or notes (notes have no legacy subscription type). A GDPR
    /// `contact.privacyDeletion` comes with a `contact.deletion` as well.
    pub fn is_deletion(&self) -> bool {
        match self.subscription_type.as_str() {
            "contact.deletion" | "company.deletion" | "deal.deletion" => true,
            "object.deletion" => self.object_type_id.as_deref().is_some_and(|t| SYNCED_TYPE_IDS.contains(&t)),
            _ => false,
        }
    }
}

fn valid_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= MAX_ID_LEN
        && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Uint(u64),
    Text(String),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn text(self) -> String {
        match self {
            Scalar::Int(v) => v.to_string(),
            Scalar::Uint(v) => v.to_string(),
            Scalar::Text(v) => v,
            Scalar::Float(v) => v.to_string(),
            Scalar::Bool(v) => v.to_string(),
        }
    }
}

fn id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value = match Scalar::deserialize(d)? {
        s @ (Scalar::Int(_) | Scalar::Uint(_) | Scalar::Text(_)) => s.text(),
        _ => return Err(serde::de::Error::custom("expected an id (number or string)")),
    };
    if valid_id(&value) {
        Ok(value)
    } else {
        Err(serde::de::Error::custom("an id must be 1 to 64 characters of [A-Za-z0-9._:-]"))
    }
}

fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "id")] String);
    Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
}

fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(d)?.map(Scalar::text))
}

/// Why an events body was refused.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("{0}")]
    Json(String),
}

/// Parses a webhook body: a JSON array of events. Pure, for unit tests and the fuzz target.
pub fn parse_events(body: &[u8]) -> Result<Vec<HubspotEvent>, EventsError> {
    serde_json::from_slice::<Vec<HubspotEvent>>(body)
        .map_err(|e| EventsError::Json(crate::http::problem::describe_json_error(&e)))
}

/// The route: verify, parse, dedup, drop echoes, enqueue one job per connection.
pub(super) async fn handle(State(state): State<WebhookState>, req: Request) -> Response {
    answer(Provider::Hubspot, http::StatusCode::OK, handle_inner(&state, req).await)
}

async fn handle_inner(state: &WebhookState, req: Request) -> Result<Summary, WebhookError> {
    let (Some(secret), Some(base)) =
        (state.settings.hubspot_client_secret.as_ref(), state.settings.public_base_url.as_deref())
    else {
        tracing::warn!("a HubSpot webhook arrived but HubSpot webhooks are not configured");
        return Err(ApiError::NotFound.into());
    };
    let (parts, body) = req.into_parts();
    let body = read_body(body).await?;
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let uri = signed_uri(base, path_and_query);
    let now = state.clock.now();
    verify_signature(
        secret.expose_secret().as_bytes(),
        parts.method.as_str(),
        &uri,
        &body,
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER),
        now.timestamp_millis(),
    )
    .map_err(|e| WebhookError::Unverified(e.reason()))?;
    let events = parse_events(&body).map_err(|EventsError::Json(d)| ApiError::MalformedJson(d))?;

    let mut summary = Summary { received: events.len(), ..Summary::default() };
    let app_id = state.settings.hubspot_app_id.as_deref();
    let (echoes, events): (Vec<_>, Vec<_>) = events.into_iter().partition(|e| e.is_echo(app_id));
    summary.echoes = echoes.len();

    // Each new eventId once: a conditional put per event, a few in flight at a time.
    let expires_at = now + Duration::hours(DELIVERY_TTL_HOURS);
    let marks: Vec<Result<(String, bool, HubspotEvent), crate::ports::StoreError>> =
        stream::iter(events.into_iter().map(|event| {
            let key = format!("hubspot#{}", event.event_id);
            async move {
                let first = state.deliveries.first_delivery(&key, now, expires_at).await?;
                Ok((key, first, event))
            }
        }))
        .buffer_unordered(LEDGER_CONCURRENCY)
        .collect()
        .await;
    let mut fresh: Vec<(String, HubspotEvent)> = Vec::new();
    let mut failure = None;
    for mark in marks {
        match mark {
            Ok((key, true, event)) => fresh.push((key, event)),
            Ok((_, false, _)) => summary.duplicates += 1,
            Err(e) => failure = Some(e),
        }
    }
    let result = match failure {
        Some(e) => Err(WebhookError::from(e)),
        None => route(state, &fresh, &mut summary).await,
    };
    if let Err(e) = result {
        // Forget what this request marked, so HubSpot's retry is not taken for a duplicate.
        for (key, _) in &fresh {
            if let Err(forget) = state.deliveries.forget_delivery(key).await {
                log_failure("hubspot", &forget);
            }
        }
        if let WebhookError::Api(api) = &e {
            log_failure("hubspot", api);
        }
        return Err(e);
    }
    Ok(summary)
}

/// Finds the connections of each portal with a new event and enqueues their jobs.
async fn route(
    state: &WebhookState,
    fresh: &[(String, HubspotEvent)],
    summary: &mut Summary,
) -> Result<(), WebhookError> {
    // Per portal: how many events, and whether one deleted a record (its job checks for deletes
    // at once instead of at the next archived scan).
    let mut by_portal: BTreeMap<&str, (usize, bool)> = BTreeMap::new();
    for (_, event) in fresh {
        let entry = by_portal.entry(event.portal_id.as_str()).or_default();
        entry.0 += 1;
        entry.1 |= event.is_deletion();
    }
    let mut targets: Vec<(TenantId, ConnectionId, Ask)> = Vec::new();
    for (portal, (count, deletes)) in by_portal {
        let mut matched = false;
        for (tenant, connection) in state.connections.find_by_account(Provider::Hubspot, portal).await? {
            match load(state, &tenant, &connection).await? {
                Some(c) if c.provider == Provider::Hubspot => {
                    matched = true;
                    // A paused connection syncs nothing (the worker would drop the job anyway).
                    if c.paused_at.is_none() {
                        targets.push((tenant, connection, Ask { check_deletes: deletes, ..Ask::default() }));
                    }
                }
                _ => {}
            }
        }
        if !matched {
            tracing::warn!(portal, events = count, "HubSpot events for a portal no connection has");
            summary.unmatched += count;
        }
    }
    summary.jobs = enqueue(state, targets).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::domain::connection::sample_connection;

    use crate::ports::ConnectionStore;

    use serde_json::{Value, json};

    const URI: &str = "https://hooks.example.com/prod/webhooks/hubspot";

    fn event(id: u64, portal: u64, source_id: Option<&str>) -> Value {
        let mut e = json!({
            "eventId": id, "subscriptionId": 12345, "portalId": portal, "appId": 54321,
            "occurredAt": 1_790_000_000_000u64, "subscriptionType": "contact.propertyChange",
            "attemptNumber": 0, "objectId": 123, "changeSource": "CRM_UI", "sourceId": "userId:77",
            "propertyName": "firstname", "propertyValue": "Ann"
        });
        if let Some(s) = source_id {
            e["changeSource"] = json!("INTEGRATION");
            e["sourceId"] = json!(s);
        }
        e
    }

    fn signed(body: &str, timestamp_ms: i64) -> http::Request<axum::body::Body> {
        let ts = timestamp_ms.to_string();
        let sig = sign(HUBSPOT_SECRET.as_bytes(), "POST", URI, body.as_bytes(), &ts);
        http::Request::post("/webhooks/hubspot")
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, ts)
            .header(SIGNATURE_HEADER, sig)
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap()
    }

    async fn hubspot_connection(store: &crate::adapters::memory::MemoryStore, tenant: &str, portal: &str) {
        let mut c = sample_connection(tenant, Provider::Hubspot, "https://api.hubapi.com", now());
        c.account_id = Some(portal.to_owned());
        store.create(&c).await.unwrap();
    }

    #[test]
    fn a_signature_made_with_the_secret_verifies_and_any_change_does_not() {
        let secret = b"yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
        let body = br#"[{"eventId":1}]"#;
        let now_ms = 1_790_000_000_000;
        let ts = now_ms.to_string();
        let sig = sign(secret, "POST", URI, body, &ts);
        let verify = |secret: &[u8], uri: &str, body: &[u8], ts: &str, sig: &str| {
            verify_signature(secret, "POST", uri, body, Some(ts), Some(sig), now_ms)
        };
        assert_eq!(verify(secret, URI, body, &ts, &sig), Ok(()));
        assert_eq!(verify(b"other-secret", URI, body, &ts, &sig), Err(SignatureError::Mismatch));
        assert_eq!(verify(secret, URI, br#"[{"eventId":2}]"#, &ts, &sig), Err(SignatureError::Mismatch));
        assert_eq!(
            verify(secret, "https://evil.example.com/webhooks/hubspot", body, &ts, &sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(secret, URI, body, &(now_ms - 1).to_string(), &sig), Err(SignatureError::Mismatch));
        assert_eq!(verify(secret, URI, body, &ts, "not base64!"), Err(SignatureError::Mismatch));
        assert_eq!(
            verify_signature(secret, "GET", URI, body, Some(&ts), Some(&sig), now_ms),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(secret, "POST", URI, body, None, Some(&sig), now_ms),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(secret, "POST", URI, body, Some(&ts), None, now_ms),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn timestamps_more_than_five_minutes_away_or_malformed_are_refused() {
        let secret = b"s";
        let now_ms: i64 = 1_790_000_000_000;
        let check = |sent: &str| {
            let sig = sign(secret, "POST", URI, b"[]", sent);
            verify_signature(secret, "POST", URI, b"[]", Some(sent), Some(&sig), now_ms)
        };
        assert_eq!(check(&(now_ms - MAX_SKEW_MS).to_string()), Ok(()));
        assert_eq!(check(&(now_ms - MAX_SKEW_MS - 1).to_string()), Err(SignatureError::Stale));
        assert_eq!(check(&(now_ms + MAX_SKEW_MS + 1).to_string()), Err(SignatureError::Stale));
        assert_eq!(check(&i64::MIN.to_string()), Err(SignatureError::Stale));
        assert_eq!(check("yesterday"), Err(SignatureError::BadTimestamp));
        assert_eq!(check(""), Err(SignatureError::BadTimestamp));
    }

    #[test]
    fn the_signed_uri_is_the_public_base_plus_path_and_query_with_hubspots_decodings() {
        assert_eq!(
            signed_uri("https://h.example.com/prod/", "/webhooks/hubspot"),
            URI.replace("hooks.", "h.")
        );
        assert_eq!(
            signed_uri("https://h.example.com", "/webhooks/hubspot?a=b%3Ac%2Fd%40e%20f%2a%"),
            "https://h.example.com/webhooks/hubspot?a=b:c/d@e%20f*%"
        );
    }

    #[test]
    fn events_parse_with_numeric_or_string_ids_and_bad_bodies_are_errors() {
        let body = json!([event(1, 62515, None), {"eventId": "2", "portalId": "62515", "subscriptionType": "deal.creation"}]);
        let events = parse_events(body.to_string().as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!((events[0].event_id.as_str(), events[0].portal_id.as_str()), ("1", "62515"));
        assert_eq!(events[0].object_id.as_deref(), Some("123"));
        assert_eq!(events[1].subscription_type, "deal.creation");
        for bad in [
            "",
            "{}",
            "[{]",
            r#"[{"eventId":1}]"#,
            r#"[{"eventId":"a#b","portalId":1,"subscriptionType":"x"}]"#,
            r#"[{"eventId":1.5,"portalId":1,"subscriptionType":"x"}]"#,
        ] {
            assert!(parse_events(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_events_whose_source_is_our_app_are_echoes() {
        let parse = |v: Value| parse_events(json!([v]).to_string().as_bytes()).unwrap().remove(0);
        assert!(parse(event(1, 1, Some(APP_ID))).is_echo(Some(APP_ID)));
        assert!(!parse(event(1, 1, Some("999"))).is_echo(Some(APP_ID)));
        assert!(!parse(event(1, 1, None)).is_echo(Some(APP_ID)), "appId is ours on every event");
        assert!(!parse(event(1, 1, Some(APP_ID))).is_echo(None));
    }

    fn of_type(id: u64, subscription_type: &str, object_type_id: Option<&str>) -> Value {
        let mut e = event(id, 62515, None);
        e["subscriptionType"] = json!(subscription_type);
        if let Some(t) = object_type_id {
            e["objectTypeId"] = json!(t);
        }
        e
    }

    #[test]
    fn deletions_of_contacts_companies_deals_and_notes_are_deletions_and_nothing_else_is() {
        let parse = |v: Value| parse_events(json!([v]).to_string().as_bytes()).unwrap().remove(0);
        for (kind, type_id) in [
            ("contact.deletion", None),
            ("company.deletion", None),
            ("deal.deletion", None),
            ("object.deletion", Some("0-1")),
            ("object.deletion", Some("0-46")),
            ("object.deletion", Some("0-48")),
            ("object.deletion", Some("0-49")),
            ("object.deletion", Some("0-47")),
            ("object.deletion", Some("0-27")),
        ] {
            assert!(parse(of_type(1, kind, type_id)).is_deletion(), "{kind} {type_id:?}");
        }
        for (kind, type_id) in [
            ("contact.propertyChange", None),
            ("contact.restore", None),
            ("ticket.deletion", None),
            ("object.deletion", Some("0-5")),
            ("object.deletion", None),
            ("object.creation", Some("0-46")),
        ] {
            assert!(!parse(of_type(1, kind, type_id)).is_deletion(), "{kind} {type_id:?}");
        }
    }

    #[tokio::test]
    async fn a_deletion_asks_for_a_deletes_check_in_a_job_of_its_own_beside_the_windows_plain_job() {
        let h = harness();
        hubspot_connection(&h.store, "acme", "62515").await;
        let send_one = |e: Value| {
            let body = json!([e]).to_string();
            let app = h.app.clone();
            async move { send(&app, signed(&body, now().timestamp_millis())).await }
        };
        assert_eq!(send_one(event(1, 62515, None)).await.1["jobs"], 1);
        assert_eq!(send_one(of_type(2, "contact.deletion", None)).await.1["jobs"], 1);
        assert_eq!(send_one(of_type(3, "object.deletion", Some("0-46"))).await.1["jobs"], 1);
        let jobs = h.queue.jobs();
        let asks: Vec<(String, bool)> =
            jobs.iter().map(|j| (j.job_id.to_string(), j.check_deletes)).collect();
        assert_eq!(asks.len(), 2, "one plain and one deletes-checking job for the window: {asks:?}");
        assert!(!asks[0].1 && asks[1].1);
        assert_eq!(asks[1].0, format!("{}:d", asks[0].0));
    }

    #[tokio::test]
    async fn a_valid_batch_enqueues_one_job_per_connection_of_its_portal() {
        let h = harness();
        hubspot_connection(&h.store, "acme", "62515").await;
        hubspot_connection(&h.store, "globex", "62515").await;
        hubspot_connection(&h.store, "initech", "999").await;
        let body = json!([event(1, 62515, None), event(2, 62515, None), event(3, 424242, None)]).to_string();
        let (status, summary) = send(&h.app, signed(&body, now().timestamp_millis())).await;
        assert_eq!(status, 200);
        assert_eq!(summary, json!({"received": 3, "duplicates": 0, "echoes": 0, "unmatched": 1, "jobs": 2}));
        let jobs = h.queue.jobs();
        let mut tenants: Vec<&str> = jobs.iter().map(|j| j.tenant_id.as_str()).collect();
        tenants.sort();
        assert_eq!(tenants, ["acme", "globex"]);
        assert!(jobs.iter().all(|j| j.reason == crate::domain::JobReason::Webhook && j.not_before.is_some()));
    }

    #[tokio::test]
    async fn forged_stale_and_unsigned_requests_are_401_and_enqueue_nothing() {
        let h = harness();
        hubspot_connection(&h.store, "acme", "62515").await;
        let body = json!([event(1, 62515, None)]).to_string();
        let mut forged = signed(&body, now().timestamp_millis());
        forged
            .headers_mut()
            .insert(SIGNATURE_HEADER, sign(b"guess", "POST", URI, body.as_bytes(), "1").parse().unwrap());
        let stale = signed(&body, now().timestamp_millis() - MAX_SKEW_MS - 1_000);
        let mut unsigned = signed(&body, now().timestamp_millis());
        unsigned.headers_mut().remove(SIGNATURE_HEADER);
        let tampered = {
            let mut r = signed(&body, now().timestamp_millis());
            *r.body_mut() =
                axum::body::Body::from(json!([event(1, 62515, None), event(9, 62515, None)]).to_string());
            r
        };
        for req in [forged, stale, unsigned, tampered] {
            let (status, problem) = send(&h.app, req).await;
            assert_eq!((status, problem["code"].as_str()), (401, Some("unauthorized")));
            assert!(!problem.to_string().contains(HUBSPOT_SECRET));
        }
        assert!(h.queue.jobs().is_empty());
    }

    #[tokio::test]
    async fn a_paused_connection_of_the_portal_gets_no_job() {
        let h = harness();
        hubspot_connection(&h.store, "acme", "62515").await;
        let mut c = ConnectionStore::list(h.store.as_ref(), &TenantId::parse("acme").unwrap())
            .await
            .unwrap()
            .remove(0);
        c.paused_at = Some(now());
        h.store.put_connection(c);
        let body = json!([event(1, 62515, None)]).to_string();
        let (status, summary) = send(&h.app, signed(&body, now().timestamp_millis())).await;
        assert_eq!(
            (status, summary["unmatched"].as_u64(), summary["jobs"].as_u64()),
            (200, Some(0), Some(0))
        );
        assert!(h.queue.jobs().is_empty());
    }

    #[tokio::test]
    async fn a_replayed_event_id_enqueues_nothing_the_second_time() {
        let h = harness();
        hubspot_connection(&h.store, "acme", "62515").await;
        let body = json!([event(7, 62515, None)]).to_string();
        let (_, first) = send(&h.app, signed(&body, now().timestamp_millis())).await;
        assert_eq!(first["jobs"], 1);
        h.queue.take();
        // The same event later (a new window, newly signed): a duplicate, no job.
        h.clock.set(now() + Duration::minutes(2));
        let (status, again) =
            send(&h.app, signed(&body, (now() + Duration::minutes(2)).timestamp_millis())).await;
        assert_eq!((status, again["duplicates"].as_u64(), again["jobs"].as_u64()), (200, Some(1), Some(0)));
        assert!(h.queue.jobs().is_empty());
    }

    #[tokio::test]
    async fn a_flood_of_ten_thousand_events_becomes_one_job() {
        let h = harness();
        hubspot_connection(&h.store, "acme", "62515").await;
        for batch in 0..100u64 {
            let events: Vec<Value> = (0..100).map(|i| event(batch * 100 + i, 62515, None)).collect();
            let body = Value::Array(events).to_string();
            let (status, _) = send(&h.app, signed(&body, now().timestamp_millis())).await;
            assert_eq!(status, 200);
        }
        assert_eq!(h.queue.jobs().len(), 1);
    }

    #[tokio::test]
    async fn echoes_of_our_own_writes_are_counted_and_enqueue_nothing_but_a_person_s_edit_does() {
        let h = harness();
        hubspot_connection(&h.store, "acme", "62515").await;
        let body = json!([event(1, 62515, Some(APP_ID)), event(2, 62515, Some(APP_ID))]).to_string();
        let (status, summary) = send(&h.app, signed(&body, now().timestamp_millis())).await;
        assert_eq!((status, summary["echoes"].as_u64(), summary["jobs"].as_u64()), (200, Some(2), Some(0)));
        assert!(h.queue.jobs().is_empty());
        let body = json!([event(3, 62515, Some(APP_ID)), event(4, 62515, None)]).to_string();
        let (_, summary) = send(&h.app, signed(&body, now().timestamp_millis())).await;
        assert_eq!((summary["echoes"].as_u64(), summary["jobs"].as_u64()), (Some(1), Some(1)));
        assert_eq!(h.queue.jobs().len(), 1);
    }

    #[tokio::test]
    async fn malformed_json_is_a_400_problem_and_a_failed_enqueue_lets_the_retry_through() {
        let h = harness();
        hubspot_connection(&h.store, "acme", "62515").await;
        let (status, problem) = send(&h.app, signed("[{\"eventId\":", now().timestamp_millis())).await;
        assert_eq!((status, problem["code"].as_str()), (400, Some("malformed_json")));

        let body = json!([event(5, 62515, None)]).to_string();
        h.queue.set_failing(true);
        let (status, problem) = send(&h.app, signed(&body, now().timestamp_millis())).await;
        assert_eq!((status, problem["code"].as_str()), (503, Some("unavailable")));
        h.queue.set_failing(false);
        let (status, summary) = send(&h.app, signed(&body, now().timestamp_millis())).await;
        assert_eq!(
            (status, summary["duplicates"].as_u64(), summary["jobs"].as_u64()),
            (200, Some(0), Some(1))
        );
    }

    #[tokio::test]
    async fn without_a_client_secret_hubspot_webhooks_are_refused() {
        let h = harness();
        let store = h.store.clone();
        let app = super::super::router(WebhookState {
            connections: store.clone(),
            deliveries: store,
            queue: h.queue.clone(),
            clock: h.clock.clone(),
            settings: super::super::WebhookSettings::default(),
        });
        let (status, _) = send(&app, signed("[]", now().timestamp_millis())).await;
        assert_eq!(status, 404);
    }
}
