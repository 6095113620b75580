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

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use std::time::{Duration, Instant};

use async_trait::async_trait;

use chrono::{DateTime, SecondsFormat, Utc};
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::provider_http::{Call, Dialect, ProviderHttp, Reply, RetryPolicy};
use crate::config::OAuthApp;
use crate::domain::mapping::{FieldMap, StageMap};
use crate::domain::record::Fields;
use crate::domain::{Connection, Credentials, ExternalId, ObjectType, Provider, RemoteRecord, SyncCursor};
use crate::ports::{
    ErrorClass, IdPage, ProviderClient, ProviderError, ProviderFactory, ProviderWrite, PulledPage,
    RequestStats, WriteAck,
};

pub const API_VERSION: &str = "v60.0";
/// The unique external-id field that makes creates idempotent.
pub const KEY_FIELD: &str = "Syncbridge_Key__c";
const COLLECTION_MAX: usize = 200;
/// Ids a page when listing live ids for a delete reconciliation.
const LIVE_IDS_PAGE: usize = 2_000;
const CURSOR_VERSION: u8 = 1;
/// The longest Note Title Salesforce stores.
const TITLE_MAX_CHARS: usize = 255;
/// Salesforce keeps deleted-record ids this long; older `start`s are refused.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api/resources_getdeleted.htm>
const DELETE_LOG_DAYS: i64 = 15;
/// The shortest `deleted` window we ask for. Salesforce wants `start` to precede `end` "by more
/// than one minute" and ignores the seconds of both, so the two minute-truncated values must be at
/// least two minutes apart; a shorter window is carried to the next sync, never sent.
/// <https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_getdeleted.htm>
const MIN_REPLICATION_WINDOW_MS: i64 = 120_000;

/// Default field mappings, `(Salesforce field, canonical field)`.
pub const CONTACT_FIELDS: &[(&str, &str)] = &[
    ("Email", "email"),
    ("FirstName", "first_name"),
    ("LastName", "last_name"),
    ("Phone", "phone"),
    ("Title", "job_title"),
    ("AccountId", "company_ids"),
];
pub const ACCOUNT_FIELDS: &[(&str, &str)] = &[
    ("Name", "name"),
    ("Website", "domain"),
    ("Industry", "industry"),
    ("Phone", "phone"),
    ("BillingCity", "city"),
    ("BillingCountry", "country"),
];
pub const OPPORTUNITY_FIELDS: &[(&str, &str)] = &[
    ("Name", "name"),
    ("Amount", "amount"),
    ("StageName", "stage"),
    ("CloseDate", "close_date"),
    ("AccountId", "company_ids"),
];
pub const TASK_FIELDS: &[(&str, &str)] = &[
    ("Subject", "subject"),
    ("Status", "status"),
    ("ActivityDate", "due_date"),
    ("Description", "description"),
    ("WhoId", "who_id"),
    ("WhatId", "what_id"),
];
pub const EVENT_FIELDS: &[(&str, &str)] = &[
    ("Subject", "subject"),
    ("StartDateTime", "start"),
    ("EndDateTime", "end"),
    ("Description", "description"),
    ("WhoId", "who_id"),
    ("WhatId", "what_id"),
];
/// `ParentId` feeds `contact_ids`, `company_ids` or `deal_ids` by the parent's key prefix; it is
/// mapped under the pseudo-field `parent_ids`.
pub const NOTE_FIELDS: &[(&str, &str)] =
    &[("Body", "body"), ("CreatedDate", "timestamp"), ("ParentId", "parent_ids")];
const PARENT: &str = "parent_ids";

/// Salesforce's default opportunity stages -> canonical lifecycle stage.
pub const STAGES: &[(&str, &str)] = &[
    ("Prospecting", "lead"),
    ("Qualification", "lead"),
    ("Needs Analysis", "opportunity"),
    ("Value Proposition", "opportunity"),
    ("Id. Decision Makers", "opportunity"),
    ("Perception Analysis", "opportunity"),
    ("Proposal/Price Quote", "opportunity"),
    ("Negotiation/Review", "opportunity"),
    ("Closed Won", "account"),
    ("Closed Lost", "lost"),
];

/// The sObjects behind a canonical object type, in pull order.
fn sobjects(object: ObjectType) -> Option<&'static [&'static str]> {
    match object {
        ObjectType::Contacts => Some(&["Contact"]),
        ObjectType::Companies => Some(&["Account"]),
        ObjectType::Deals => Some(&["Opportunity"]),
        ObjectType::Activities => Some(&["Task", "Event"]),
        ObjectType::Notes => Some(&["Note"]),
        _ => None,
    }
}

fn defaults(sobject: &str) -> &'static [(&'static str, &'static str)] {
    match sobject {
        "Contact" => CONTACT_FIELDS,
        "Account" => ACCOUNT_FIELDS,
        "Opportunity" => OPPORTUNITY_FIELDS,
        "Task" => TASK_FIELDS,
        "Event" => EVENT_FIELDS,
        _ => NOTE_FIELDS,
    }
}

/// The object of a record id, by its key prefix.
fn sobject_of_id(id: &str) -> Option<&'static str> {
    match id.get(..3)? {
        "003" => Some("Contact"),
        "001" => Some("Account"),
        "006" => Some("Opportunity"),
        "00T" => Some("Task"),
        "00U" => Some("Event"),
        "002" => Some("Note"),
        _ => None,
    }
}

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

/// One step of a pull: records, the part's new state, whether the part has more, and whether
/// deletes were lost (the engine then reconciles ids).
type Step = (Vec<RemoteRecord>, Part, bool, bool);

/// Where one sObject's pull stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Part {
    /// Nothing pulled yet: count, then choose bulk or REST.
    Start,
    /// A Bulk API 2.0 export.
    Bulk {
        job_id: Option<String>,
        locator: Option<String>,
        /// The provider's clock when the job was created: REST takes over from here.
        started_at: Option<i64>,
    },
    /// SOQL on `SystemModstamp`. The position is the last record emitted (`since`, `after_id`);
    /// no `after_id` means `SystemModstamp >= since`; no `since` means from the start.
    Rest {
        since: Option<i64>,
        after_id: Option<String>,
        next_url: Option<String>,
        /// Where the next `deleted` call starts (`None`: the first pass, which needs none).
        deletes_from: Option<i64>,
        /// The provider's clock when this pass began.
        pass_started: Option<i64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CursorDoc {
    v: u8,
    current: usize,
    parts: Vec<Part>,
}

impl CursorDoc {
    fn parse(cursor: Option<&SyncCursor>, n: usize) -> Result<CursorDoc, ProviderError> {
        let Some(cursor) = cursor else {
            return Ok(CursorDoc { v: CURSOR_VERSION, current: 0, parts: vec![Part::Start; n] });
        };
        match serde_json::from_str::<CursorDoc>(cursor.as_str()) {
            Ok(doc) if doc.v == CURSOR_VERSION && doc.parts.len() == n && doc.current < n => Ok(doc),
            _ => Err(ProviderError::CursorExpired),
        }
    }

    fn to_cursor(&self) -> SyncCursor {
        SyncCursor::new(serde_json::to_string(self).unwrap_or_default())
    }
}

/// A SOQL datetime literal (second precision, which is `SystemModstamp`'s).
fn soql_datetime(ms: i64) -> String {
    let secs = ms.div_euclid(1_000);
    DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The `[start, end]` of a `deleted` call covering `from .. now`, both truncated to the minute as
/// Salesforce reads them, with `start` no older than the delete log (less an hour's margin); `None`
/// while the window is too short to ask (see [`MIN_REPLICATION_WINDOW_MS`]).
fn replication_window(from: i64, now: i64) -> Option<(i64, i64)> {
    let oldest = now - (DELETE_LOG_DAYS * 86_400_000 - 3_600_000);
    let start = from.max(oldest).div_euclid(60_000) * 60_000;
    let end = now.div_euclid(60_000) * 60_000;
    (end - start >= MIN_REPLICATION_WINDOW_MS).then_some((start, end))
}

/// The `start`/`end` form of the deleted resource.
fn replication_datetime(ms: i64) -> String {
    let secs = ms.div_euclid(1_000);
    DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

/// True for objects that take no custom fields in a real org, so no `Syncbridge_Key__c` either.
fn takes_no_custom_fields(sobject: &str) -> bool {
    sobject.eq_ignore_ascii_case("Note")
}

/// A Note Title carrying its create's idempotency key as a short tag: one line, at most
/// [`TITLE_MAX_CHARS`], the same for the same title and key.
fn tagged_title(title: &str, key: &str) -> String {
    let tag = crate::domain::key_tag(key);
    let room = TITLE_MAX_CHARS - tag.len() - 1;
    let line: String = title.chars().map(|c| if c.is_control() { ' ' } else { c }).take(room).collect();
    let line = line.trim();
    if line.is_empty() { tag } else { format!("{line} {tag}") }
}

fn soql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn parse_sf_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The keyset condition for records after `(since, after_id)`.
fn position_filter(since: Option<i64>, after_id: Option<&str>) -> Option<String> {
    let since = since?;
    let ts = soql_datetime(since);
    Some(match after_id {
        None => format!("SystemModstamp >= {ts}"),
        Some(id) => {
            format!("(SystemModstamp > {ts} OR (SystemModstamp = {ts} AND Id > {}))", soql_string(id))
        }
    })
}

fn host_of_website(url: &str) -> String {
    let rest = url.trim().split_once("://").map(|(_, r)| r).unwrap_or(url.trim());
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    host.strip_prefix("www.").unwrap_or(host).to_lowercase()
}

/// A raw Salesforce value (REST JSON or a CSV cell) as a canonical value.
fn canonical_value(canonical: &str, raw: &Value) -> Value {
    let text = match raw {
        Value::Null => return Value::Null,
        Value::String(s) if s.is_empty() => return Value::Null,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match canonical {
        c if c.ends_with("_ids") => json!([text]),
        "amount" => match raw {
            Value::Number(_) => raw.clone(),
            _ => text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or(Value::String(text)),
        },
        "timestamp" | "start" | "end" => match parse_sf_datetime(&text) {
            Some(d) => Value::String(d.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            None => Value::String(text),
        },
        "domain" => Value::String(host_of_website(&text)),
        _ => match raw {
            Value::String(_) => Value::String(text),
            other => other.clone(),
        },
    }
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

    fn map(&self, sobject: &str) -> Result<&FieldMap, ProviderError> {
        self.maps.get(sobject).ok_or_else(|| ProviderError::permanent(format!("no field map for {sobject}")))
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

    fn select_list(&self, sobject: &str) -> Result<Vec<String>, ProviderError> {
        let mut fields = vec!["Id".to_owned(), "SystemModstamp".to_owned()];
        for p in self.map(sobject)?.properties() {
            if !fields.iter().any(|f| f.eq_ignore_ascii_case(p)) {
                fields.push(p.to_owned());
            }
        }
        Ok(fields)
    }

    /// Maps one record (REST JSON or a CSV row as strings) to a remote record.
    fn to_remote(
        &self,
        object: ObjectType,
        sobject: &str,
        row: &Map<String, Value>,
    ) -> Result<RemoteRecord, ProviderError> {
        let id = row.get("Id").and_then(Value::as_str).unwrap_or_default();
        let external_id = ExternalId::parse(id.to_owned()).map_err(|_| {
            ProviderError::permanent(format!("Salesforce returned a {sobject} without an Id"))
        })?;
        let fields = self.canonical_fields(object, sobject, row)?;
        let modified = row.get("SystemModstamp").and_then(Value::as_str).and_then(parse_sf_datetime);
        Ok(RemoteRecord {
            external_id,
            object,
            fields,
            remote_modified_at: modified,
            deleted: false,
            etag: None,
        })
    }

    fn canonical_fields(
        &self,
        object: ObjectType,
        sobject: &str,
        row: &Map<String, Value>,
    ) -> Result<Fields, ProviderError> {
        let mut fields = Fields::new();
        for (property, canonical) in self.map(sobject)?.pairs() {
            let Some(raw) = row.get(property) else { continue };
            if canonical == PARENT {
                let target = match raw.as_str().and_then(sobject_of_id) {
                    Some("Contact") => "contact_ids",
                    Some("Opportunity") => "deal_ids",
                    _ => "company_ids",
                };
                fields.insert(target.to_owned(), canonical_value(target, raw));
                continue;
            }
            let value = canonical_value(canonical, raw);
            if canonical == "stage" {
                let lifecycle = value.as_str().and_then(|s| self.stages.lifecycle(s)).map(str::to_owned);
                fields.insert(
                    "lifecycle_stage".to_owned(),
                    lifecycle.map(Value::String).unwrap_or(Value::Null),
                );
            }
            fields.insert(canonical.to_owned(), value);
        }
        if object == ObjectType::Activities {
            fields.insert("kind".to_owned(), json!(if sobject == "Event" { "event" } else { "task" }));
        }
        Ok(fields)
    }

    /// Canonical fields -> Salesforce fields for a write.
    fn provider_fields(&self, sobject: &str, fields: &Fields) -> Result<Map<String, Value>, ProviderError> {
        let map = self.map(sobject)?;
        let mut out = Map::new();
        for (canonical, value) in fields {
            let ids_first = || value.as_array().and_then(|a| a.first()).cloned().unwrap_or(Value::Null);
            if sobject == "Note" && matches!(canonical.as_str(), "contact_ids" | "company_ids" | "deal_ids") {
                if let Some(p) = map.property_of(PARENT)
                    && (!out.contains_key(p) || canonical == "deal_ids")
                {
                    out.insert(p.to_owned(), ids_first());
                }
                continue;
            }
            let Some(property) = map.property_of(canonical) else { continue };
            if property.eq_ignore_ascii_case("CreatedDate") {
                continue;
            }
            let v = if canonical.ends_with("_ids") { ids_first() } else { value.clone() };
            out.insert(property.to_owned(), v);
        }
        if sobject == "Note" && !out.contains_key("Title") {
            let body = fields.get("body").and_then(Value::as_str).unwrap_or("Note");
            out.insert("Title".to_owned(), Value::String(body.chars().take(80).collect()));
        }
        Ok(out)
    }

    fn rows_to_records(
        &self,
        object: ObjectType,
        sobject: &str,
        rows: &[Map<String, Value>],
    ) -> Result<Vec<RemoteRecord>, ProviderError> {
        rows.iter().map(|r| self.to_remote(object, sobject, r)).collect()
    }

    async fn count(&self, token: &SecretString, sobject: &str) -> Result<u64, ProviderError> {
        let page = self.soql(token, &format!("SELECT COUNT() FROM {sobject}")).await?;
        Ok(page.total_size)
    }

    /// One step of one part: records, the part's new state, and whether the part has more.
    async fn step(
        &self,
        token: &SecretString,
        object: ObjectType,
        sobject: &str,
        part: Part,
    ) -> Result<Step, ProviderError> {
        match part {
            Part::Start => {
                let count = self.count(token, sobject).await?;
                let next = if count > self.tuning.bulk_threshold {
                    Part::Bulk { job_id: None, locator: None, started_at: None }
                } else {
                    Part::Rest {
                        since: None,
                        after_id: None,
                        next_url: None,
                        deletes_from: None,
                        pass_started: None,
                    }
                };
                Box::pin(self.step(token, object, sobject, next)).await
            }
            Part::Bulk { job_id, locator, started_at } => {
                self.bulk_step(token, object, sobject, job_id, locator, started_at).await
            }
            rest => self.rest_step(token, object, sobject, rest).await,
        }
    }

    async fn bulk_step(
        &self,
        token: &SecretString,
        object: ObjectType,
        sobject: &str,
        job_id: Option<String>,
        locator: Option<String>,
        started_at: Option<i64>,
    ) -> Result<Step, ProviderError> {
        let (job_id, started_at) = match job_id {
            Some(id) => (id, started_at),
            None => {
                let q = format!("SELECT {} FROM {sobject}", self.select_list(sobject)?.join(", "));
                let body = json!({ "operation": "query", "query": q });
                let reply = self.api(token, http::Method::POST, "/jobs/query", &[], Some(&body), &[]).await?;
                let job: Value = reply.json()?;
                let id = job
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ProviderError::transient("Salesforce created a bulk job without an id"))?;
                let now = reply.provider_now().unwrap_or_else(|| Utc::now().timestamp_millis());
                (id.to_owned(), Some(now))
            }
        };
        if locator.is_none() {
            let waited = Instant::now();
            loop {
                let reply = self
                    .api(token, http::Method::GET, &format!("/jobs/query/{job_id}"), &[], None, &[])
                    .await
                    .map_err(job_gone)?;
                let info: Value = reply.json()?;
                match info.get("state").and_then(Value::as_str) {
                    Some("JobComplete") => break,
                    Some("Failed") | Some("Aborted") => {
                        let msg = info.get("errorMessage").and_then(Value::as_str).unwrap_or("no message");
                        return Err(ProviderError::permanent(format!(
                            "Salesforce bulk query job {job_id} failed: {}",
                            msg.chars().take(200).collect::<String>()
                        )));
                    }
                    _ if waited.elapsed() >= self.tuning.bulk_max_wait => {
                        let part = Part::Bulk { job_id: Some(job_id), locator: None, started_at };
                        return Ok((Vec::new(), part, true, false));
                    }
                    _ => tokio::time::sleep(self.tuning.bulk_poll_interval).await,
                }
            }
        }
        let mut query = vec![("maxRecords", self.tuning.bulk_page.to_string())];
        if let Some(l) = locator.as_ref().filter(|l| l.as_str() != "start") {
            query.push(("locator", l.clone()));
        }
        let reply = self
            .api(token, http::Method::GET, &format!("/jobs/query/{job_id}/results"), &query, None, &[])
            .await
            .map_err(job_gone)?;
        let rows = parse_csv(&reply.body)?;
        let records = self.rows_to_records(object, sobject, &rows)?;
        let next = reply.header("sforce-locator").map(str::trim).filter(|l| !l.is_empty() && *l != "null");
        let part = match next {
            Some(l) => Part::Bulk { job_id: Some(job_id), locator: Some(l.to_owned()), started_at },
            None => {
                let from = started_at.unwrap_or_else(|| Utc::now().timestamp_millis());
                Part::Rest {
                    since: Some(from - ms(self.tuning.lookback)),
                    after_id: None,
                    next_url: None,
                    deletes_from: Some(from - ms(self.tuning.lookback)),
                    pass_started: None,
                }
            }
        };
        Ok((records, part, true, false))
    }

    async fn rest_step(
        &self,
        token: &SecretString,
        object: ObjectType,
        sobject: &str,
        part: Part,
    ) -> Result<Step, ProviderError> {
        let Part::Rest { since, after_id, next_url, deletes_from, pass_started } = part else {
            return Err(ProviderError::CursorExpired);
        };
        let fresh_query = || -> Result<String, ProviderError> {
            let mut q = format!("SELECT {} FROM {sobject}", self.select_list(sobject)?.join(", "));
            if let Some(cond) = position_filter(since, after_id.as_deref()) {
                q.push_str(&format!(" WHERE {cond}"));
            }
            q.push_str(" ORDER BY SystemModstamp, Id");
            Ok(q)
        };
        let opts = [("Sforce-Query-Options", format!("batchSize={}", self.tuning.batch_size))];
        let mut reply = None;
        if let Some(url) = next_url.as_deref() {
            if !url.starts_with("/services/data/") {
                return Err(ProviderError::CursorExpired);
            }
            match self.api(token, http::Method::GET, url, &[], None, &opts).await {
                Ok(r) => reply = Some(r),
                Err(ProviderError::Permanent(m)) if m.mentions("INVALID_QUERY_LOCATOR") => {}
                Err(e) => return Err(e),
            }
        }
        let reply = match reply {
            Some(r) => r,
            None => {
                let q = fresh_query()?;
                self.api(token, http::Method::GET, "/query", &[("q", q)], None, &opts).await?
            }
        };
        let provider_now = reply.provider_now().unwrap_or_else(|| Utc::now().timestamp_millis());
        let pass_started = pass_started.or(Some(provider_now));
        let page: QueryPage = reply.json()?;
        let mut records = self.rows_to_records(object, sobject, &page.records)?;
        let (mut since, mut after_id) = (since, after_id);
        if let Some(last) = records.last() {
            since = last.remote_modified_at.map(|t| t.timestamp_millis()).or(since);
            after_id = Some(last.external_id.as_str().to_owned());
        }
        if let Some(url) = page.next_records_url.filter(|_| !page.done) {
            let part = Part::Rest { since, after_id, next_url: Some(url), deletes_from, pass_started };
            return Ok((records, part, true, false));
        }
        let mut deletes_lost = false;
        let mut deletes_next = deletes_from.or(pass_started);
        if let Some(from) = deletes_from {
            let (deleted, covered, lost) = self.deleted(token, object, sobject, from, provider_now).await?;
            records.extend(deleted);
            deletes_next = Some(covered);
            deletes_lost = lost;
        }
        let floor = pass_started.unwrap_or(provider_now) - ms(self.tuning.lookback);
        if since.is_none_or(|s| s > floor) {
            since = Some(floor.min(since.unwrap_or(floor)));
            after_id = None;
        }
        let part =
            Part::Rest { since, after_id, next_url: None, deletes_from: deletes_next, pass_started: None };
        Ok((records, part, false, deletes_lost))
    }

    /// Records deleted in `[from, now]`, where the next call starts, and whether deletes before
    /// Salesforce's delete log are lost (`from` is older than it keeps).
    async fn deleted(
        &self,
        token: &SecretString,
        object: ObjectType,
        sobject: &str,
        from: i64,
        now: i64,
    ) -> Result<(Vec<RemoteRecord>, i64, bool), ProviderError> {
        let oldest = now - (DELETE_LOG_DAYS * 86_400_000 - 3_600_000);
        let lost = from < oldest;
        if lost {
            tracing::warn!(%object, "deleted-record window older than Salesforce keeps; reconciling ids");
        }
        let Some((start, end)) = replication_window(from, now) else {
            // Too short to ask: the same `from` is asked again at the next sync.
            return Ok((Vec::new(), from, lost));
        };
        let query = [("start", replication_datetime(start)), ("end", replication_datetime(end))];
        let path = format!("/sobjects/{sobject}/deleted/");
        let reply = match self.api(token, http::Method::GET, &path, &query, None, &[]).await {
            Ok(reply) => reply,
            // The window starts before the org's `earliestDateAvailable` (an administrator purged
            // the Recycle Bin, or the log was trimmed): the deletes in between are lost to the
            // log, so the engine reconciles ids instead; the next window starts at `end`.
            Err(ProviderError::Permanent(m)) if m.mentions("INVALID_REPLICATION_DATE") => {
                tracing::warn!(%object, "Salesforce's delete log no longer covers the window; reconciling ids");
                return Ok((Vec::new(), end, true));
            }
            Err(e) => return Err(e),
        };
        let body: DeletedPage = reply.json()?;
        let mut out = Vec::new();
        for d in &body.deleted_records {
            let external_id = ExternalId::parse(d.id.clone())
                .map_err(|_| ProviderError::permanent("Salesforce listed a deleted record without an id"))?;
            out.push(RemoteRecord {
                external_id,
                object,
                fields: Fields::new(),
                remote_modified_at: d.deleted_date.as_deref().and_then(parse_sf_datetime),
                deleted: true,
                etag: None,
            });
        }
        let covered = body
            .latest_date_covered
            .as_deref()
            .and_then(parse_sf_datetime)
            .map(|d| d.timestamp_millis())
            .unwrap_or(end);
        Ok((out, covered.min(end).max(start), lost))
    }
}

/// A bulk job Salesforce no longer has (jobs are deleted after 7 days) or a locator it rejects:
/// the export starts over.
fn job_gone(e: ProviderError) -> ProviderError {
    match e {
        ProviderError::NotFound => ProviderError::CursorExpired,
        ProviderError::Permanent(m) if m.mentions("INVALIDLOCATOR") => ProviderError::CursorExpired,
        other => other,
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Bulk API 2.0 CSV results as rows keyed by column name (empty cells are null).
fn parse_csv(body: &[u8]) -> Result<Vec<Map<String, Value>>, ProviderError> {
    let bad = |e: csv::Error| ProviderError::transient(format!("malformed CSV from Salesforce: {e}"));
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(body);
    let header: Vec<String> = reader.headers().map_err(bad)?.iter().map(str::to_owned).collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(bad)?;
        let row: Map<String, Value> = header
            .iter()
            .zip(record.iter())
            .map(|(h, v)| (h.clone(), if v.is_empty() { Value::Null } else { Value::String(v.to_owned()) }))
            .collect();
        rows.push(row);
    }
    Ok(rows)
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeletedPage {
    #[serde(default)]
    deleted_records: Vec<DeletedRecord>,
    latest_date_covered: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeletedRecord {
    id: String,
    deleted_date: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SaveResult {
    id: Option<String>,
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<SaveError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SaveError {
    #[serde(default)]
    status_code: String,
    #[serde(default)]
    message: String,
}

impl SaveResult {
    fn error(&self) -> ProviderError {
        let Some(e) = self.errors.first() else {
            return ProviderError::permanent("Salesforce refused the record without saying why");
        };
        let text = format!("{}: {}", e.status_code, e.message.chars().take(200).collect::<String>());
        match e.status_code.as_str() {
            "ENTITY_IS_DELETED" | "INVALID_CROSS_REFERENCE_KEY" | "NOT_FOUND" => ProviderError::NotFound,
            "UNABLE_TO_LOCK_ROW" | "ALL_OR_NONE_OPERATION_ROLLED_BACK" | "SERVER_UNAVAILABLE" => {
                ProviderError::transient(text)
            }
            _ => ProviderError::permanent(text),
        }
    }

    fn is_duplicate_key(&self) -> bool {
        self.errors.iter().any(|e| e.status_code == "DUPLICATE_VALUE" && e.message.contains(KEY_FIELD))
    }
}

/// Whether creates of one sObject can be made idempotent by `Syncbridge_Key__c`.
#[derive(Debug, Clone)]
enum KeyField {
    /// The field is a unique external id the API user can read and write.
    Ready,
    /// It is missing or unfit and the org refused to set it up: why, and what an admin can do.
    Refused(String),
}

/// What describe says of `Syncbridge_Key__c` on one sObject.
enum Described {
    Usable,
    /// Not listed: absent, or invisible to the API user (no field-level security).
    Absent,
    /// Listed, but not a unique external id the user can write.
    Unfit(String),
}

#[derive(Deserialize)]
struct Describe {
    #[serde(default)]
    fields: Vec<DescribedField>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribedField {
    name: String,
    #[serde(default)]
    unique: bool,
    #[serde(default)]
    external_id: bool,
    #[serde(default)]
    createable: bool,
}

/// The permanent error of a create that cannot be keyed: the cause and what an admin can do.
fn key_field_refusal(sobject: &str, cause: &str) -> String {
    format!(
        "{sobject} records are not created: creates need a unique external-id field {KEY_FIELD} the \
         integration user can edit, to be idempotent, and it could not be set up ({cause}). An admin can grant \
         the integration user Customize Application and Manage Profiles and Permission Sets, or create on \
         {sobject} a unique external-id Text(255) field {KEY_FIELD} and give the integration user read and \
         edit access to it; then retry the push"
    )
}

type Slot = Option<Result<WriteAck, ProviderError>>;
/// A write that passed its precondition: its index, record id and mapped fields (none: a delete).
type Pending = (usize, String, Option<Map<String, Value>>);

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum WriteKind {
    Create,
    Update,
    Delete,
}

impl SalesforceClient {
    /// The current `SystemModstamp` and canonical fields of these records, by id.
    async fn read_by(
        &self,
        token: &SecretString,
        object: ObjectType,
        sobject: &str,
        field: &str,
        values: &[String],
    ) -> Result<HashMap<String, (Map<String, Value>, RemoteRecord)>, ProviderError> {
        let mut out = HashMap::new();
        if values.is_empty() {
            return Ok(out);
        }
        let mut fields = self.select_list(sobject)?;
        if !fields.iter().any(|f| f.eq_ignore_ascii_case(field)) {
            fields.push(field.to_owned());
        }
        let list = values.iter().map(|v| soql_string(v)).collect::<Vec<_>>().join(", ");
        let q = format!("SELECT {} FROM {sobject} WHERE {field} IN ({list})", fields.join(", "));
        let page = self.soql(token, &q).await?;
        for row in page.records {
            let remote = self.to_remote(object, sobject, &row)?;
            let key = row.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
            out.insert(key, (row, remote));
        }
        Ok(out)
    }

    /// Whether creates of `sobject` can be keyed by `Syncbridge_Key__c`, setting the field up the
    /// first time it is missing (see [`SalesforceClient::provision_key_field`]). The answer is
    /// cached per client and sObject (a client serves one job). A permanent refusal becomes
    /// [`KeyField::Refused`]; transient errors, rate limits and `Unauthorized` are returned and
    /// not cached, so a retry tries again.
    async fn key_field(&self, token: &SecretString, sobject: &str) -> Result<KeyField, ProviderError> {
        if let Some(known) = self.key_fields.lock().ok().and_then(|m| m.get(sobject).cloned()) {
            return Ok(known);
        }
        let state = match self.provision_key_field(token, sobject).await {
            Ok(()) => KeyField::Ready,
            Err(ProviderError::Permanent(cause)) => {
                KeyField::Refused(key_field_refusal(sobject, &cause.to_string()))
            }
            Err(ProviderError::NotFound) => {
                KeyField::Refused(key_field_refusal(sobject, "HTTP 404 NOT_FOUND"))
            }
            Err(e) => return Err(e),
        };
        if let Ok(mut m) = self.key_fields.lock() {
            m.insert(sobject.to_owned(), state.clone());
        }
        Ok(state)
    }

    /// `Syncbridge_Key__c` on `sobject` as describe shows it to the API user.
    /// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_describe.htm>
    async fn describe_key_field(
        &self,
        token: &SecretString,
        sobject: &str,
    ) -> Result<Described, ProviderError> {
        let path = format!("/sobjects/{sobject}/describe");
        let described: Describe = self.api(token, http::Method::GET, &path, &[], None, &[]).await?.json()?;
        let Some(f) = described.fields.iter().find(|f| f.name.eq_ignore_ascii_case(KEY_FIELD)) else {
            return Ok(Described::Absent);
        };
        Ok(if !(f.unique && f.external_id) {
            Described::Unfit(format!("{sobject}.{KEY_FIELD} exists but is not a unique external id"))
        } else if !f.createable {
            Described::Unfit(format!("{sobject}.{KEY_FIELD} is read-only for the integration user"))
        } else {
            Described::Usable
        })
    }

    /// Makes `Syncbridge_Key__c` a usable unique external id on `sobject`: describe (1 request,
    /// done when the field is there); otherwise create it through the Tooling API, find the API
    /// user's profile permission set, grant read and edit on the field there, and describe again
    /// to prove it usable (5 more requests). Every step is safe to repeat: an existing field
    /// answers `DUPLICATE_DEVELOPER_NAME`, an existing grant `DUPLICATE_VALUE`.
    async fn provision_key_field(&self, token: &SecretString, sobject: &str) -> Result<(), ProviderError> {
        match self.describe_key_field(token, sobject).await? {
            Described::Usable => return Ok(()),
            Described::Unfit(why) => return Err(ProviderError::permanent(why)),
            Described::Absent => {}
        }
        // Needs "Customize Application" (else 403 INSUFFICIENT_ACCESS). A field created this way
        // has no field-level security: no one sees it until a permission set grants it.
        // <https://developer.salesforce.com/docs/atlas.en-us.api_tooling.meta/api_tooling/tooling_api_objects_customfield.htm>
        let field = json!({
            "FullName": format!("{sobject}.{KEY_FIELD}"),
            "Metadata": {
                "label": "Syncbridge Key",
                "type": "Text",
                "length": 255,
                "externalId": true,
                "unique": true,
                // Keys differing in case are different pushes.
                "caseSensitive": true,
            },
        });
        match self
            .api(token, http::Method::POST, "/tooling/sobjects/CustomField", &[], Some(&field), &[])
            .await
        {
            Ok(_) => {}
            Err(ProviderError::Permanent(m)) if m.mentions("DUPLICATE_DEVELOPER_NAME") => {}
            Err(e) => return Err(e),
        }
        // The API user, from the instance's OpenID Connect userinfo endpoint.
        // <https://help.salesforce.com/s/articleView?id=sf.remoteaccess_using_userinfo_endpoint.htm>
        let info: Value =
            self.api(token, http::Method::GET, "/services/oauth2/userinfo", &[], None, &[]).await?.json()?;
        let user = info
            .get("user_id")
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::permanent("Salesforce userinfo named no user"))?;
        // The permission set the user's profile owns, by a semi-join on the user's assignments.
        // <https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_permissionsetassignment.htm>
        // <https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_comparisonoperators.htm>
        let q = format!(
            "SELECT Id FROM PermissionSet WHERE IsOwnedByProfile = true AND Id IN \
             (SELECT PermissionSetId FROM PermissionSetAssignment WHERE AssigneeId = {})",
            soql_string(user)
        );
        let page = self.soql(token, &q).await?;
        let profile_set =
            page.records.first().and_then(|r| r.get("Id")).and_then(Value::as_str).ok_or_else(|| {
                ProviderError::permanent("the integration user's profile permission set was not found")
            })?;
        // Field-level security: read and edit on the field for that permission set.
        // <https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_fieldpermissions.htm>
        let grant = json!({
            "ParentId": profile_set,
            "SobjectType": sobject,
            "Field": format!("{sobject}.{KEY_FIELD}"),
            "PermissionsRead": true,
            "PermissionsEdit": true,
        });
        match self.api(token, http::Method::POST, "/sobjects/FieldPermissions", &[], Some(&grant), &[]).await
        {
            Ok(_) => {}
            Err(ProviderError::Permanent(m)) if m.mentions("DUPLICATE_VALUE") => {}
            Err(e) => return Err(e),
        }
        match self.describe_key_field(token, sobject).await? {
            Described::Usable => Ok(()),
            Described::Unfit(why) => Err(ProviderError::permanent(why)),
            Described::Absent => Err(ProviderError::permanent(format!(
                "{sobject}.{KEY_FIELD} is still invisible to the integration user after granting it"
            ))),
        }
    }

    fn ack(remote: &RemoteRecord) -> WriteAck {
        WriteAck {
            external_id: remote.external_id.clone(),
            remote_modified_at: remote.remote_modified_at,
            etag: None,
            fields: Some(remote.fields.clone()),
        }
    }

    async fn write_group(
        &self,
        token: &SecretString,
        kind: WriteKind,
        object: ObjectType,
        sobject: &str,
        items: &[(usize, &ProviderWrite)],
        slots: &mut [Slot],
    ) -> Result<(), ProviderError> {
        match kind {
            WriteKind::Create => self.create_group(token, object, sobject, items, slots).await,
            WriteKind::Update | WriteKind::Delete => {
                self.change_group(token, kind, object, sobject, items, slots).await
            }
        }
    }

    async fn create_group(
        &self,
        token: &SecretString,
        object: ObjectType,
        sobject: &str,
        items: &[(usize, &ProviderWrite)],
        slots: &mut [Slot],
    ) -> Result<(), ProviderError> {
        // Each create's lookup value: its key, or for objects without custom fields its tagged Title.
        let by_title = takes_no_custom_fields(sobject);
        let lookup_field = if by_title { "Title" } else { KEY_FIELD };
        // Without a proof of idempotency nothing is created: each create fails permanently,
        // saying what an admin can do.
        if !by_title && let KeyField::Refused(why) = self.key_field(token, sobject).await? {
            for (i, _) in items {
                slots[*i] = Some(Err(ProviderError::permanent(why.clone())));
            }
            return Ok(());
        }
        let mut keyed: Vec<(usize, String, Map<String, Value>)> = Vec::new();
        for (i, w) in items {
            let ProviderWrite::Create { fields, idempotency_key, .. } = w else { continue };
            let key = idempotency_key.as_str();
            let mut rec = self.provider_fields(sobject, fields)?;
            let lookup = if by_title {
                let title = rec.get("Title").and_then(Value::as_str).unwrap_or_default();
                let tagged = tagged_title(title, key);
                rec.insert("Title".to_owned(), Value::String(tagged.clone()));
                tagged
            } else {
                rec.insert(KEY_FIELD.to_owned(), Value::String(key.to_owned()));
                key.to_owned()
            };
            rec.insert("attributes".to_owned(), json!({ "type": sobject }));
            keyed.push((*i, lookup, rec));
        }
        let keys: Vec<String> = keyed.iter().map(|(_, k, _)| k.clone()).collect();
        let existing = self.read_by(token, object, sobject, lookup_field, &keys).await?;
        let mut to_create = Vec::new();
        let mut records = Vec::new();
        for (i, key, rec) in &keyed {
            if let Some((_, remote)) = existing.get(key) {
                slots[*i] = Some(Ok(Self::ack(remote)));
                continue;
            }
            if to_create.iter().any(|(_, k): &(usize, String)| k == key) {
                continue;
            }
            records.push(Value::Object(rec.clone()));
            to_create.push((*i, key.clone()));
        }
        let mut reread = Vec::new();
        if !records.is_empty() {
            let body = json!({ "allOrNone": false, "records": records });
            let results: Vec<SaveResult> = self
                .api(token, http::Method::POST, "/composite/sobjects", &[], Some(&body), &[])
                .await?
                .json()?;
            if results.len() != to_create.len() {
                return Err(ProviderError::transient("Salesforce answered a different number of results"));
            }
            for ((i, key), r) in to_create.iter().zip(&results) {
                if r.success || r.is_duplicate_key() {
                    reread.push(key.clone());
                } else {
                    slots[*i] = Some(Err(r.error()));
                }
            }
        }
        let fresh = self.read_by(token, object, sobject, lookup_field, &reread).await?;
        for (i, key, _) in &keyed {
            if slots[*i].is_some() {
                continue;
            }
            slots[*i] = Some(match fresh.get(key).or_else(|| existing.get(key)) {
                Some((_, remote)) => Ok(Self::ack(remote)),
                None => Err(ProviderError::transient(
                    "the created record was not found by its key yet; retry the create",
                )),
            });
        }
        Ok(())
    }

    async fn change_group(
        &self,
        token: &SecretString,
        kind: WriteKind,
        object: ObjectType,
        sobject: &str,
        items: &[(usize, &ProviderWrite)],
        slots: &mut [Slot],
    ) -> Result<(), ProviderError> {
        let ids: Vec<String> = items
            .iter()
            .filter_map(|(_, w)| match w {
                ProviderWrite::Update { external_id, .. } | ProviderWrite::Delete { external_id, .. } => {
                    Some(external_id.as_str().to_owned())
                }
                _ => None,
            })
            .collect();
        let current = self.read_by(token, object, sobject, "Id", &ids).await?;
        let mut go: Vec<Pending> = Vec::new();
        for (i, w) in items {
            let (id, precondition, fields) = match w {
                ProviderWrite::Update { external_id, precondition, fields, .. } => {
                    (external_id.as_str(), precondition, Some(fields))
                }
                ProviderWrite::Delete { external_id, precondition, .. } => {
                    (external_id.as_str(), precondition, None)
                }
                ProviderWrite::Create { .. } => continue,
            };
            let Some((_, remote)) = current.get(id) else {
                slots[*i] = Some(match kind {
                    WriteKind::Delete => Ok(WriteAck {
                        external_id: ExternalId::parse(id.to_owned())
                            .map_err(|_| ProviderError::permanent("empty external id"))?,
                        remote_modified_at: None,
                        etag: None,
                        fields: None,
                    }),
                    _ => Err(ProviderError::NotFound),
                });
                continue;
            };
            if let (Some(limit), Some(stamp)) = (precondition.unmodified_since, remote.remote_modified_at)
                && stamp > limit
            {
                slots[*i] = Some(Err(ProviderError::Conflict));
                continue;
            }
            let mapped = match fields {
                Some(f) => Some(self.provider_fields(sobject, f)?),
                None => None,
            };
            go.push((*i, id.to_owned(), mapped));
        }
        if go.is_empty() {
            return Ok(());
        }
        let results: Vec<SaveResult> = if kind == WriteKind::Delete {
            let list = go.iter().map(|(_, id, _)| id.as_str()).collect::<Vec<_>>().join(",");
            let query = [("ids", list), ("allOrNone", "false".to_owned())];
            self.api(token, http::Method::DELETE, "/composite/sobjects", &query, None, &[]).await?.json()?
        } else {
            let records: Vec<Value> = go
                .iter()
                .map(|(_, id, f)| {
                    let mut rec = f.clone().unwrap_or_default();
                    rec.insert("attributes".to_owned(), json!({ "type": sobject }));
                    rec.insert("id".to_owned(), Value::String(id.clone()));
                    Value::Object(rec)
                })
                .collect();
            let body = json!({ "allOrNone": false, "records": records });
            self.api(token, http::Method::PATCH, "/composite/sobjects", &[], Some(&body), &[])
                .await?
                .json()?
        };
        if results.len() != go.len() {
            return Err(ProviderError::transient("Salesforce answered a different number of results"));
        }
        let mut written = Vec::new();
        for ((i, id, _), r) in go.iter().zip(&results) {
            if !r.success {
                let deleted_already = kind == WriteKind::Delete
                    && r.errors.first().is_some_and(|e| e.status_code == "ENTITY_IS_DELETED");
                if !deleted_already {
                    slots[*i] = Some(Err(r.error()));
                    continue;
                }
            }
            if kind == WriteKind::Delete {
                let external_id = ExternalId::parse(r.id.clone().unwrap_or_else(|| id.clone()))
                    .map_err(|_| ProviderError::permanent("empty external id"))?;
                slots[*i] =
                    Some(Ok(WriteAck { external_id, remote_modified_at: None, etag: None, fields: None }));
            } else {
                written.push(id.clone());
            }
        }
        let fresh = self.read_by(token, object, sobject, "Id", &written).await?;
        for (i, id, _) in &go {
            if slots[*i].is_none() {
                slots[*i] = Some(match fresh.get(id) {
                    Some((_, remote)) => Ok(Self::ack(remote)),
                    None => Err(ProviderError::NotFound),
                });
            }
        }
        Ok(())
    }
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
        let Some(names) = sobjects(object) else {
            return Err(ProviderError::permanent(format!("the Salesforce adapter does not sync {object}")));
        };
        let mut doc = CursorDoc::parse(cursor, names.len())?;
        let i = doc.current;
        let part = doc.parts[i].clone();
        let (records, part, more, reconcile_deletes) = self.step(token, object, names[i], part).await?;
        doc.parts[i] = part;
        let has_more = if more {
            true
        } else if i + 1 < names.len() {
            doc.current = i + 1;
            true
        } else {
            doc.current = 0;
            false
        };
        Ok(PulledPage { records, cursor: doc.to_cursor(), has_more, reconcile_deletes })
    }

    /// Every live id of `object`, 2,000 a page, in id order (`SELECT Id ... WHERE Id > ...`), one
    /// sObject after another; the page token is `{sObject index}:{last id}`.
    async fn live_ids(
        &self,
        token: &SecretString,
        object: ObjectType,
        after: Option<&str>,
    ) -> Result<IdPage, ProviderError> {
        let Some(names) = sobjects(object) else {
            return Err(ProviderError::permanent(format!("the Salesforce adapter does not sync {object}")));
        };
        let (mut i, mut last) = match after.map(|a| a.split_once(':')) {
            None => (0, None),
            Some(Some((i, id))) => match i.parse::<usize>() {
                Ok(i) if i < names.len() => (i, Some(id.to_owned()).filter(|id| !id.is_empty())),
                _ => return Err(ProviderError::CursorExpired),
            },
            Some(None) => return Err(ProviderError::CursorExpired),
        };
        loop {
            let filter =
                last.as_deref().map(|id| format!(" WHERE Id > {}", soql_string(id))).unwrap_or_default();
            let q = format!("SELECT Id FROM {}{filter} ORDER BY Id LIMIT {LIVE_IDS_PAGE}", names[i]);
            let page = self.soql(token, &q).await?;
            let mut ids = Vec::with_capacity(page.records.len());
            for row in &page.records {
                let id = row.get("Id").and_then(Value::as_str).unwrap_or_default();
                ids.push(
                    ExternalId::parse(id.to_owned())
                        .map_err(|_| ProviderError::permanent("Salesforce listed a record without an id"))?,
                );
            }
            let next = if ids.len() == LIVE_IDS_PAGE {
                ids.last().map(|id| format!("{i}:{}", id.as_str()))
            } else if i + 1 < names.len() {
                Some(format!("{}:", i + 1))
            } else {
                None
            };
            if !ids.is_empty() || next.is_none() {
                return Ok(IdPage { ids, next });
            }
            i += 1;
            last = None;
        }
    }

    /// Creates, updates and deletes through sObject Collections, grouped by kind and sObject, 200
    /// a request. See the module documentation for preconditions and idempotent creates.
    async fn write(
        &self,
        token: &SecretString,
        writes: &[ProviderWrite],
    ) -> Result<Vec<Result<WriteAck, ProviderError>>, ProviderError> {
        let mut slots: Vec<Slot> = (0..writes.len()).map(|_| None).collect();
        let mut groups: BTreeMap<(WriteKind, ObjectType, &'static str), Vec<(usize, &ProviderWrite)>> =
            BTreeMap::new();
        for (i, w) in writes.iter().enumerate() {
            let (kind, object, sobject) = match w {
                ProviderWrite::Create { object, fields, .. } => {
                    let sobject = match (*object, fields.get("kind").and_then(Value::as_str)) {
                        (ObjectType::Activities, Some("event")) => Some("Event"),
                        (o, _) => sobjects(o).and_then(|s| s.first().copied()),
                    };
                    (WriteKind::Create, *object, sobject)
                }
                ProviderWrite::Update { object, external_id, .. } => {
                    (WriteKind::Update, *object, sobject_of_id(external_id.as_str()))
                }
                ProviderWrite::Delete { object, external_id, .. } => {
                    (WriteKind::Delete, *object, sobject_of_id(external_id.as_str()))
                }
            };
            let fits = sobject.is_some_and(|s| sobjects(object).is_some_and(|names| names.contains(&s)));
            match sobject.filter(|_| fits) {
                Some(s) => groups.entry((kind, object, s)).or_default().push((i, w)),
                None => {
                    slots[i] = Some(Err(ProviderError::permanent(format!(
                        "the Salesforce adapter cannot write this {object} record"
                    ))));
                }
            }
        }
        for ((kind, object, sobject), items) in &groups {
            for chunk in items.chunks(COLLECTION_MAX) {
                self.write_group(token, *kind, *object, sobject, chunk, &mut slots).await?;
            }
        }
        Ok(slots
            .into_iter()
            .map(|s| s.unwrap_or_else(|| Err(ProviderError::transient("no result for this write"))))
            .collect())
    }

    /// `POST {login}/services/oauth2/token` (refresh-token grant). The answer's `instance_url`
    /// becomes this client's instance. No expiry is set: Salesforce does not say one.
    async fn refresh(&self, refresh_token: &SecretString) -> Result<Credentials, ProviderError> {
        let Some(app) = &self.app else {
            return Err(ProviderError::permanent("no Salesforce OAuth app is configured"));
        };
        let url = format!("{}/services/oauth2/token", self.login);
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.expose_secret()),
            ("refresh_token", refresh_token.expose_secret()),
        ];
        let reply = self.net.send(Call::write("token"), || self.http.post(&url).form(&form)).await?;
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

    #[test]
    fn note_titles_carry_a_stable_key_tag_on_one_line_within_salesforce_limits() {
        let a = tagged_title("Summary\nof the call", "push:01J");
        assert_eq!(a, tagged_title("Summary\nof the call", "push:01J"), "stable across retries");
        assert!(a.starts_with("Summary of the call [sb:") && a.ends_with(']'), "{a}");
        assert_ne!(a, tagged_title("Summary\nof the call", "push:01K"), "another key, another tag");
        let long = tagged_title(&"é".repeat(400), "k");
        assert_eq!(long.chars().count(), TITLE_MAX_CHARS);
        assert!(tagged_title("  ", "k").starts_with("[sb:"));
    }

    #[test]
    fn deleted_windows_shorter_than_salesforce_accepts_are_carried_to_the_next_sync() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).map(|d| d.timestamp_millis()).unwrap_or(-1);
        // The same minute, and 59 s across a minute boundary: nothing is asked.
        assert_eq!(replication_window(t("2026-12-05T10:00:05Z"), t("2026-12-05T10:00:50Z")), None);
        assert_eq!(replication_window(t("2026-12-05T10:00:30Z"), t("2026-12-05T10:01:29Z")), None);
        // One truncated minute apart is not "more than one minute".
        assert_eq!(replication_window(t("2026-12-05T10:00:00Z"), t("2026-12-05T10:01:59Z")), None);
        // Two minutes: asked, both ends truncated to the minute.
        assert_eq!(
            replication_window(t("2026-12-05T10:00:30Z"), t("2026-12-05T10:02:10Z")),
            Some((t("2026-12-05T10:00:00Z"), t("2026-12-05T10:02:00Z")))
        );
        // 16 and 31 days: the start is clamped into the delete log (the pull then reconciles ids).
        let now = t("2026-12-05T10:00:00Z");
        for days in [16, 31] {
            let (start, end) = replication_window(now - days * 86_400_000, now).unwrap_or_default();
            assert_eq!(end, now);
            assert!(
                now - start < DELETE_LOG_DAYS * 86_400_000 && now - start > 14 * 86_400_000,
                "{days} days"
            );
        }
    }

    #[test]
    fn limit_info_is_parsed_and_garbage_ignored() {
        assert_eq!(parse_limit_info("api-usage=18/5000"), Some((18, 5000)));
        assert_eq!(parse_limit_info("per-app-api-usage=1/10, api-usage=7/100"), Some((7, 100)));
        assert_eq!(parse_limit_info("api-usage=x/100"), None);
    }

    #[test]
    fn keyset_filter_resumes_after_the_last_record_at_its_stamp() {
        let at = 1_704_067_200_500;
        assert_eq!(position_filter(None, None), None);
        assert_eq!(position_filter(Some(at), None).unwrap(), "SystemModstamp >= 2024-01-01T00:00:00Z");
        assert_eq!(
            position_filter(Some(at), Some("003x'1")).unwrap(),
            "(SystemModstamp > 2024-01-01T00:00:00Z OR (SystemModstamp = 2024-01-01T00:00:00Z AND Id > '003x\\'1'))"
        );
    }

    #[test]
    fn values_become_canonical_whatever_the_wire_format() {
        assert_eq!(canonical_value("company_ids", &json!("001A")), json!(["001A"]));
        assert_eq!(canonical_value("company_ids", &Value::Null), Value::Null);
        assert_eq!(canonical_value("amount", &json!("1200.5")), json!(1200.5));
        assert_eq!(canonical_value("amount", &json!(1200.5)), json!(1200.5));
        assert_eq!(
            canonical_value("start", &json!("2024-01-01T10:00:00.000+0000")),
            json!("2024-01-01T10:00:00Z")
        );
        assert_eq!(
            canonical_value("start", &json!("2024-01-01T10:00:00.000Z")),
            json!("2024-01-01T10:00:00Z")
        );
        assert_eq!(canonical_value("domain", &json!("https://www.Acme.com/about")), json!("acme.com"));
        assert_eq!(canonical_value("phone", &json!("")), Value::Null);
    }

    #[test]
    fn csv_rows_parse_with_quotes_and_empty_cells() {
        let rows = parse_csv(b"\"Id\",\"Name\",\"Amount\"\n\"006A\",\"Big, \"\"quoted\"\"\",\"\"\n").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["Name"], json!("Big, \"quoted\""));
        assert_eq!(rows[0]["Amount"], Value::Null);
        assert!(parse_csv(b"\"Id\",\"Name\"\n\"a\"\n").is_err());
    }

    #[test]
    fn cursor_round_trips_and_foreign_cursors_expire() {
        let doc = CursorDoc {
            v: CURSOR_VERSION,
            current: 1,
            parts: vec![
                Part::Start,
                Part::Rest {
                    since: Some(5),
                    after_id: Some("00T1".into()),
                    next_url: None,
                    deletes_from: Some(1),
                    pass_started: None,
                },
            ],
        };
        assert_eq!(CursorDoc::parse(Some(&doc.to_cursor()), 2).unwrap(), doc);
        assert!(matches!(CursorDoc::parse(Some(&doc.to_cursor()), 1), Err(ProviderError::CursorExpired)));
        assert!(matches!(
            CursorDoc::parse(Some(&SyncCursor::new("{}")), 1),
            Err(ProviderError::CursorExpired)
        ));
    }

    #[test]
    fn a_vanished_bulk_job_restarts_the_export() {
        assert!(matches!(job_gone(ProviderError::NotFound), ProviderError::CursorExpired));
        let bad = ProviderError::permanent("HTTP 400 INVALIDLOCATOR: invalid locator");
        assert!(matches!(job_gone(bad), ProviderError::CursorExpired));
        assert!(matches!(job_gone(ProviderError::Unauthorized), ProviderError::Unauthorized));
    }

    #[test]
    fn record_errors_are_classified() {
        let r = |code: &str| SaveResult {
            id: None,
            success: false,
            errors: vec![SaveError { status_code: code.into(), message: "m".into() }],
        };
        assert!(matches!(r("ENTITY_IS_DELETED").error(), ProviderError::NotFound));
        assert!(matches!(r("UNABLE_TO_LOCK_ROW").error(), ProviderError::Transient(_)));
        assert!(matches!(r("REQUIRED_FIELD_MISSING").error(), ProviderError::Permanent(_)));
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
