//! Salesforce REST API v60.0 adapter: Contact -> contacts, Account -> companies, Opportunity ->
//! deals, Task and Event -> activities, Note -> notes.
//!
//! Pulls. A first pull counts the object (`SELECT COUNT()`); above [`Tuning::bulk_threshold`] it
//! exports with a Bulk API 2.0 query job (CSV results paged by `Sforce-Locator`), else it queries
//! over REST. Incremental pulls run `SELECT ... WHERE SystemModstamp ... ORDER BY SystemModstamp,
//! Id` and follow `nextRecordsUrl`. The cursor (this adapter's JSON) keeps the exact keyset position
//! of the last record emitted, `(SystemModstamp, Id)`, and the `nextRecordsUrl` in progress; a
//! restarted query asks for `SystemModstamp > ts OR (SystemModstamp = ts AND Id > id)`, so nothing
//! is skipped or repeated however many records share one (second-precision) stamp. This replaces a
//! list of "ids seen at the last stamp", which grows without bound when thousands of records share
//! one stamp (a mass update) and would not fit a DynamoDB item. When a pass reaches the present,
//! the position moves back to the provider's clock less [`Tuning::lookback`] if it is more recent
//! than that, for records whose transaction committed late: those few are pulled twice. Deletes
//! come from `sobjects/{type}/deleted` at the end of each pass. Salesforce keeps 15 days of them;
//! a window reaching further back sets [`PulledPage::reconcile_deletes`] and the engine diffs the
//! stored records against [`ProviderClient::live_ids`] (`SELECT Id`, keyset on `Id`).
//!
//! Writes use sObject Collections (200 a request, `allOrNone=false`, a result per record).
//! Salesforce has no conditional write on collections, so updates and deletes first read the
//! targets' `SystemModstamp` (one `WHERE Id IN (...)` query) and answer `Conflict` for those
//! modified after the precondition; a change between that read and the write is not detected.
//! Creates are idempotent through the unique external-id field `Syncbridge_Key__c`: the keys are
//! queried first and found records are acked instead of created again; a `DUPLICATE_VALUE` on the
//! key (a race) is resolved the same way. A stock org has no such field: the first create of an
//! sObject by a client describes it and, when it is missing, creates it through the Tooling API and
//! grants the API user read and edit on it through its profile's permission set (field-level
//! security). Where the org refuses (no "Customize Application"), creates of that sObject fail
//! permanently with what an admin can do; nothing is created without its key.
//! The standard Note object takes no custom fields, so a note carries its key as a short tag at
//! the end of its Title instead (`[sb:` + 12 hex digits of the key's SHA-256 + `]`), and is found
//! again by that exact Title. A person who retitles a note before our retry lands defeats this
//! (the retry creates a second note); the window is the few seconds of a redelivery.
//!
//! Connection and OAuth. `Connection::base_url` is the login host chosen per connection
//! (`https://login.salesforce.com`, `https://test.salesforce.com` for sandboxes, or the org's My
//! Domain URL); the token endpoint is `{base_url}/services/oauth2/token`. API calls go to the
//! instance named by the token response's `instance_url`; a client that has no token response yet
//! asks `{base_url}/services/oauth2/userinfo` once (`urls.custom_domain`). A refreshed token may
//! name a new instance, which the client then uses. Salesforce tokens carry no `expires_in`: the
//! credentials get no expiry and a 401 `INVALID_SESSION_ID` is the signal to refresh (the worker
//! refreshes once on `Unauthorized` and retries).
//!
//! Limits. Every response's `Sforce-Limit-Info: api-usage=N/M` is read: above
//! [`Tuning::slow_ratio`] of the daily allocation requests are spaced by [`Tuning::slow_delay`],
//! above [`Tuning::stop_ratio`] the client sends nothing more and answers `RateLimited` with
//! [`Tuning::limit_retry_after`] (as for a 403 `REQUEST_LIMIT_EXCEEDED`).

mod objects;
mod pull;
mod write;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::provider_http::{Call, Dialect, ProviderHttp, Reply, RetryPolicy};
use crate::config::OAuthApp;
use crate::domain::mapping::{FieldMap, StageMap};
use crate::domain::{Connection, Credentials, ObjectType, Provider, SyncCursor};
use crate::ports::{
    ErrorClass, IdPage, ProviderClient, ProviderError, ProviderFactory, ProviderWrite, PulledPage,
    RequestStats, WriteAck,
};
use objects::defaults;
pub use objects::{
    ACCOUNT_FIELDS, CONTACT_FIELDS, EVENT_FIELDS, NOTE_FIELDS, OPPORTUNITY_FIELDS, STAGES, TASK_FIELDS,
};
use write::KeyField;

/// The production login host (a connection's `base_url` unless it is a sandbox or a My Domain).
pub const DEFAULT_LOGIN_URL: &str = "https://login.salesforce.com";
/// The sandbox login host.
pub const DEFAULT_SANDBOX_LOGIN_URL: &str = "https://test.salesforce.com";
/// The OAuth scopes asked for at authorization.
pub const DEFAULT_SCOPES: &str = "api refresh_token";

pub const API_VERSION: &str = "v60.0";
/// The unique external-id field that makes creates idempotent.
pub const KEY_FIELD: &str = "Syncbridge_Key__c";

/// How a client pages, paces and chooses the bulk path. Defaults suit a production org.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// `Sforce-Query-Options: batchSize=` (200..=2000).
    pub batch_size: usize,
    /// A first pull of more records than this uses Bulk API 2.0.
    pub bulk_threshold: u64,
    /// `maxRecords` of one Bulk result set (one pulled page). The worker holds a page and its
    /// merge plan at once: `make bench` measured a peak RSS of 83 MiB at 10,000 a page and 26 MiB
    /// at 2,000 (100,000 records either way).
    pub bulk_page: usize,
    pub bulk_poll_interval: Duration,
    /// How long one `pull_page` polls a bulk job before returning an empty page to come back.
    pub bulk_max_wait: Duration,
    /// How far behind the provider's clock a caught-up cursor stays, for late commits.
    pub lookback: Duration,
    pub slow_ratio: f64,
    pub slow_delay: Duration,
    pub stop_ratio: f64,
    /// The wait reported when the daily allocation is (nearly) used up.
    pub limit_retry_after: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            batch_size: 2000,
            bulk_threshold: 10_000,
            bulk_page: 2_000,
            bulk_poll_interval: Duration::from_secs(2),
            bulk_max_wait: Duration::from_secs(60),
            lookback: Duration::from_secs(300),
            slow_ratio: 0.8,
            slow_delay: Duration::from_millis(250),
            stop_ratio: 0.95,
            limit_retry_after: Duration::from_secs(3_600),
        }
    }
}

/// Builds [`SalesforceClient`]s; holds the shared HTTP client and the OAuth app.
#[derive(Clone)]
pub struct SalesforceFactory {
    http: reqwest::Client,
    app: Option<OAuthApp>,
    tuning: Tuning,
}

impl SalesforceFactory {
    pub fn new(http: reqwest::Client, app: Option<OAuthApp>) -> Self {
        Self { http, app, tuning: Tuning::default() }
    }

    pub fn with_tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }
}

impl ProviderFactory for SalesforceFactory {
    /// A client for the connection's login host, with the connection's field and stage mappings.
    fn client(&self, connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError> {
        if connection.provider != Provider::Salesforce {
            return Err(ProviderError::permanent(format!(
                "the Salesforce adapter cannot serve a {} connection",
                connection.provider
            )));
        }
        Ok(Box::new(SalesforceClient::new(self.http.clone(), connection, self.app.clone(), self.tuning)?))
    }
}

/// One Salesforce org seen through its API. Use it from one task at a time (one connection's job).
pub struct SalesforceClient {
    http: reqwest::Client,
    login: String,
    app: Option<OAuthApp>,
    tuning: Tuning,
    instance: Mutex<Option<String>>,
    maps: HashMap<&'static str, FieldMap>,
    stages: StageMap,
    net: ProviderHttp<SalesforceDialect>,
    /// Per sObject: can creates be keyed by `Syncbridge_Key__c` (see [`SalesforceClient::key_field`]).
    key_fields: Mutex<HashMap<String, KeyField>>,
}

/// The first `errorCode` (and `message`) of Salesforce's error array (or object; the OAuth
/// endpoints answer `error` and `error_description`).
fn error_detail(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return (None, None) };
    let first = if v.is_array() { v.get(0) } else { Some(&v) };
    let field = |name: &str| first.and_then(|f| f.get(name)).and_then(Value::as_str).map(str::to_owned);
    (field("errorCode").or_else(|| field("error")), field("message").or_else(|| field("error_description")))
}

/// What is Salesforce's own: its error array, the daily API allocation read from every answer's
/// `Sforce-Limit-Info` (above [`Tuning::slow_ratio`] requests are spaced, above
/// [`Tuning::stop_ratio`] refused as `RateLimited`) and `REQUEST_LIMIT_EXCEEDED`, a 403 that is a
/// rate limit. <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_api_usage.htm>
#[derive(Debug)]
pub struct SalesforceDialect {
    tuning: Tuning,
    usage: Mutex<Option<(u64, u64)>>,
}

impl Dialect for SalesforceDialect {
    fn name(&self) -> &'static str {
        "Salesforce"
    }

    fn metric_label(&self) -> &'static str {
        crate::domain::Provider::Salesforce.as_str()
    }

    fn error_detail(&self, reply: &Reply) -> (Option<String>, Option<String>) {
        error_detail(&reply.body)
    }

    fn classify(&self, status: StatusCode, code: Option<&str>) -> Option<ErrorClass> {
        match (status, code) {
            (StatusCode::FORBIDDEN, Some("REQUEST_LIMIT_EXCEEDED")) => Some(ErrorClass::RateLimited),
            // A record locked by another transaction: try again.
            (_, Some("UNABLE_TO_LOCK_ROW" | "SERVER_UNAVAILABLE")) => Some(ErrorClass::Transient),
            _ => None,
        }
    }

    fn rate_limit_wait(&self, reply: &Reply) -> Option<Duration> {
        match error_detail(&reply.body).0.as_deref() {
            Some("REQUEST_LIMIT_EXCEEDED") => Some(self.tuning.limit_retry_after),
            _ => reply.retry_after(),
        }
    }

    fn pace(&self, _route: &'static str) -> Result<Duration, ProviderError> {
        let usage = self.usage.lock().ok().and_then(|g| *g);
        let Some((used, max)) = usage.filter(|(_, max)| *max > 0) else { return Ok(Duration::ZERO) };
        let ratio = used as f64 / max as f64;
        if ratio >= self.tuning.stop_ratio {
            return Err(ProviderError::RateLimited { retry_after: self.tuning.limit_retry_after });
        }
        Ok(if ratio >= self.tuning.slow_ratio { self.tuning.slow_delay } else { Duration::ZERO })
    }

    fn observe(&self, _route: &'static str, reply: &Reply) {
        if let Some(info) = reply.header("sforce-limit-info").and_then(parse_limit_info)
            && let Ok(mut g) = self.usage.lock()
        {
            *g = Some(info);
        }
    }
}

/// `api-usage=N/M` from `Sforce-Limit-Info`.
fn parse_limit_info(value: &str) -> Option<(u64, u64)> {
    value.split(',').find_map(|part| {
        let usage = part.trim().strip_prefix("api-usage=")?;
        let (used, max) = usage.split_once('/')?;
        Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
    })
}

fn soql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl SalesforceClient {
    pub fn new(
        http: reqwest::Client,
        connection: &Connection,
        app: Option<OAuthApp>,
        tuning: Tuning,
    ) -> Result<Self, ProviderError> {
        let login = connection.base_url.trim().trim_end_matches('/').to_owned();
        if !(login.starts_with("https://") || login.starts_with("http://")) {
            return Err(ProviderError::permanent("the Salesforce login URL must be http(s)"));
        }
        let settings = &connection.settings;
        let mut maps = HashMap::new();
        for (object, names) in [
            (ObjectType::Contacts, &["Contact"][..]),
            (ObjectType::Companies, &["Account"][..]),
            (ObjectType::Deals, &["Opportunity"][..]),
            (ObjectType::Activities, &["Task", "Event"][..]),
            (ObjectType::Notes, &["Note"][..]),
        ] {
            for name in names {
                let map = FieldMap::new(defaults(name)).with_overrides(settings.field_mapping.get(&object));
                maps.insert(*name, map);
            }
        }
        Ok(Self {
            http: http.clone(),
            login,
            app,
            tuning,
            instance: Mutex::new(None),
            maps,
            stages: StageMap::new(STAGES).with_overrides(&settings.stage_mapping),
            net: ProviderHttp::new(
                http.clone(),
                SalesforceDialect { tuning, usage: Mutex::new(None) },
                RetryPolicy::default(),
            ),
            key_fields: Mutex::new(HashMap::new()),
        })
    }

    /// The instance this client sends API calls to, once known.
    pub fn instance_url(&self) -> Option<String> {
        self.instance.lock().ok().and_then(|g| g.clone())
    }

    fn set_instance(&self, url: &str) {
        if let Ok(mut g) = self.instance.lock() {
            *g = Some(url.trim_end_matches('/').to_owned());
        }
    }

    /// The instance URL: cached, or asked of the login host's userinfo endpoint.
    async fn instance(&self, token: &SecretString) -> Result<String, ProviderError> {
        if let Some(url) = self.instance_url() {
            return Ok(url);
        }
        let url = format!("{}/services/oauth2/userinfo", self.login);
        let reply = self
            .net
            .send(Call::read("userinfo"), || self.http.get(&url).bearer_auth(token.expose_secret()))
            .await?;
        let limited = error_detail(&reply.body).0.as_deref() == Some("REQUEST_LIMIT_EXCEEDED");
        if reply.status == StatusCode::UNAUTHORIZED || (reply.status == StatusCode::FORBIDDEN && !limited) {
            return Err(ProviderError::Unauthorized);
        }
        let reply = reply.check()?;
        let info: Value = reply.json()?;
        let urls = info.get("urls");
        let from_rest = urls
            .and_then(|u| u.get("rest"))
            .and_then(Value::as_str)
            .and_then(|r| r.split_once("/services/").map(|(host, _)| host.to_owned()));
        let instance = urls
            .and_then(|u| u.get("custom_domain"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or(from_rest)
            .ok_or_else(|| ProviderError::permanent("Salesforce userinfo named no instance"))?;
        self.set_instance(&instance);
        Ok(instance.trim_end_matches('/').to_owned())
    }

    /// A checked API call (`path` after `/services/data/v60.0`, or a `/services/...` URL path).
    async fn api(
        &self,
        token: &SecretString,
        method: http::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Reply, ProviderError> {
        let instance = self.instance(token).await?;
        let url = if path.starts_with("/services/") {
            format!("{instance}{path}")
        } else {
            format!("{instance}/services/data/{API_VERSION}{path}")
        };
        // Reads, deletes and collection updates (the same values again) may be repeated in place,
        // and so may creating a Bulk query job (a repeat leaves an unused job, which Salesforce
        // deletes after 7 days); other POSTs (creates) may not.
        let call = match method {
            http::Method::POST if path != "/jobs/query" => Call::write("api"),
            _ => Call::idempotent_write("api"),
        };
        let make = || {
            let mut req = self.http.request(method.clone(), &url).bearer_auth(token.expose_secret());
            if !query.is_empty() {
                req = req.query(query);
            }
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            req
        };
        self.net.send(call, make).await?.check()
    }

    async fn soql(&self, token: &SecretString, q: &str) -> Result<QueryPage, ProviderError> {
        let opts = [("Sforce-Query-Options", format!("batchSize={}", self.tuning.batch_size))];
        self.api(token, http::Method::GET, "/query", &[("q", q.to_owned())], None, &opts).await?.json()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryPage {
    #[serde(default)]
    total_size: u64,
    #[serde(default = "yes")]
    done: bool,
    next_records_url: Option<String>,
    #[serde(default)]
    records: Vec<Map<String, Value>>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    refresh_token: Option<String>,
    instance_url: Option<String>,
}

#[async_trait]
impl ProviderClient for SalesforceClient {
    /// One page of one sObject (Task then Event for activities); `has_more` is false when the last
    /// sObject of the object type reached the present.
    async fn pull_page(
        &self,
        token: &SecretString,
        object: ObjectType,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        self.pull(token, object, cursor).await
    }

    /// Every live id of `object`, 2,000 a page, in id order (`SELECT Id ... WHERE Id > ...`), one
    /// sObject after another; the page token is `{sObject index}:{last id}`.
    async fn live_ids(
        &self,
        token: &SecretString,
        object: ObjectType,
        after: Option<&str>,
    ) -> Result<IdPage, ProviderError> {
        self.live_id_page(token, object, after).await
    }

    /// Creates, updates and deletes through sObject Collections, grouped by kind and sObject, 200
    /// a request. See the module documentation for preconditions and idempotent creates.
    async fn write(
        &self,
        token: &SecretString,
        writes: &[ProviderWrite],
    ) -> Result<Vec<Result<WriteAck, ProviderError>>, ProviderError> {
        self.write_all(token, writes).await
    }

    /// `POST {login}/services/oauth2/token` (refresh-token grant). The answer's `instance_url`
    /// becomes this client's instance. No expiry is set: Salesforce does not say one.
    async fn refresh(&self, refresh_token: &SecretString) -> Result<Credentials, ProviderError> {
        let Some(app) = &self.app else {
            return Err(ProviderError::permanent("no Salesforce OAuth app is configured"));
        };
        let url = format!("{}/services/oauth2/token", self.login);
        let reply = self.net.refresh_grant(&url, app, refresh_token, &[]).await?;
        if reply.status == StatusCode::BAD_REQUEST {
            return Err(match error_detail(&reply.body).0.as_deref() {
                Some("invalid_grant") => ProviderError::Unauthorized,
                Some(code) => {
                    ProviderError::permanent(format!("Salesforce refused the token request: {code}"))
                }
                None => ProviderError::permanent("Salesforce refused the token request"),
            });
        }
        let tokens: TokenReply = reply.check()?.json()?;
        if let Some(instance) = tokens.instance_url.as_deref().filter(|u| !u.is_empty()) {
            self.set_instance(instance);
        }
        Ok(Credentials::refreshed(tokens.access_token, tokens.refresh_token, refresh_token, None))
    }

    fn stats(&self) -> RequestStats {
        self.net.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use write::key_field_refusal;

    #[test]
    fn limit_info_is_parsed_and_garbage_ignored() {
        assert_eq!(parse_limit_info("api-usage=18/5000"), Some((18, 5000)));
        assert_eq!(parse_limit_info("per-app-api-usage=1/10, api-usage=7/100"), Some((7, 100)));
        assert_eq!(parse_limit_info("api-usage=x/100"), None);
    }

    #[test]
    fn refusals_are_permanent_and_429_and_5xx_stay_retryable() {
        use crate::adapters::provider_http::classify_status;
        let d = SalesforceDialect { tuning: Tuning::default(), usage: Mutex::new(None) };
        let class = |status: u16, code: Option<&str>| {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
            d.classify(status, code).or_else(|| classify_status(status))
        };
        assert_eq!(class(403, Some("INSUFFICIENT_ACCESS")), Some(ErrorClass::Permanent));
        assert_eq!(class(403, Some("REQUEST_LIMIT_EXCEEDED")), Some(ErrorClass::RateLimited));
        assert_eq!(class(400, Some("UNABLE_TO_LOCK_ROW")), Some(ErrorClass::Transient));
        assert_eq!(class(429, None), Some(ErrorClass::RateLimited));
        assert_eq!(class(503, None), Some(ErrorClass::Transient));
        assert_eq!(class(401, Some("INVALID_SESSION_ID")), Some(ErrorClass::Unauthorized));
        let message = key_field_refusal("Contact", "HTTP 403 INSUFFICIENT_ACCESS");
        for needed in ["Customize Application", KEY_FIELD, "read and edit access", "INSUFFICIENT_ACCESS"] {
            assert!(message.contains(needed), "{message}");
        }
    }
}
