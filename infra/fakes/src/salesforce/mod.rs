//! A fake Salesforce org, new and stock (no custom fields), speaking REST API v31.0 to v68.0 (the
//! versions resource lists them): SOQL queries with `nextRecordsUrl` paging
//! (`Sforce-Query-Options: batchSize=`), sObject rows and upserts by external id, describe,
//! getUpdated/getDeleted (`sobjects/{type}/updated`, `/deleted`) under Salesforce's replication
//! rules, sObject Collections writes, the Tooling API's `CustomField` create with field-level
//! security, Bulk API 2.0 query jobs with CSV results, the OAuth refresh-token flow on
//! `/services/oauth2/token`, Salesforce's error bodies (`[{"message","errorCode"}]`) and its daily
//! API request allocation reported in `Sforce-Limit-Info: api-usage=N/M` (403
//! `REQUEST_LIMIT_EXCEEDED` past it). Plus `/_admin/` routes and a Rust handle
//! ([`SalesforceState`]) to edit data as a person would, move the org's clock, create fields as an
//! admin in Setup would, switch permissions, inject faults and count requests. The `Date` header
//! of every response follows the org's clock.
//!
//! The fake's base URL serves both the login host (token endpoint) and the instance (API).

mod server;
pub mod soql;
pub mod store;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::admin;
use store::Store;
pub use store::{
    API_VERSION, CustomField, KEY_FIELD, LATEST_API_VERSION, OLDEST_API_VERSION, SeedCounts, make_id,
};

/// Default and largest `batchSize` of a query page.
pub const DEFAULT_BATCH_SIZE: usize = 2000;
pub const MIN_BATCH_SIZE: usize = 200;
/// Records per sObject Collections request.
pub const COLLECTION_MAX: usize = 200;
/// getUpdated/getDeleted answer `EXCEEDED_ID_LIMIT` past this many ids.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_getupdated.htm>
pub const REPLICATION_ID_LIMIT: usize = 600_000;
/// Open query locators kept per org; older ones become `INVALID_QUERY_LOCATOR`.
const MAX_LOCATORS: usize = 50;

/// How to start a fake.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Port on 127.0.0.1; 0 lets the OS pick.
    pub port: u16,
    pub seed_counts: SeedCounts,
    pub seed: u64,
    /// A session token that works from the start (`None`: only issued tokens work).
    pub session_token: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    /// The org's daily API request allocation (`Sforce-Limit-Info` and `REQUEST_LIMIT_EXCEEDED`).
    pub daily_api_requests: u64,
    /// Status polls a Bulk API 2.0 query job answers `InProgress` before `JobComplete`.
    pub bulk_polls_until_complete: u32,
    /// Records per Bulk result set when the client sends no `maxRecords`.
    pub bulk_default_max_records: usize,
    /// Ids getUpdated/getDeleted answer at most before `EXCEEDED_ID_LIMIT` (Salesforce: 600,000).
    pub replication_id_limit: usize,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            port: 0,
            seed_counts: SeedCounts::default(),
            seed: 42,
            session_token: Some("00DFAKE!session".into()),
            client_id: "fake-sf-client-id".into(),
            client_secret: "fake-sf-client-secret".into(),
            daily_api_requests: 100_000,
            bulk_polls_until_complete: 1,
            bulk_default_max_records: 50_000,
            replication_id_limit: REPLICATION_ID_LIMIT,
        }
    }
}

/// The routes the fake counts and can inject faults into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// `GET /query?q=` (including `SELECT COUNT()`).
    Query,
    /// `GET /query/{locator}` (`nextRecordsUrl`).
    QueryMore,
    Deleted,
    CollectionCreate,
    CollectionUpdate,
    CollectionDelete,
    BulkCreate,
    BulkStatus,
    BulkResults,
    Token,
    UserInfo,
    /// `GET /services/oauth2/authorize`.
    Authorize,
    /// `POST /services/oauth2/revoke`.
    Revoke,
    /// `GET /sobjects/{type}/updated`.
    Updated,
    /// sObject rows: `POST /sobjects/{type}`, `GET|PATCH|DELETE /sobjects/{type}/{id}`, and by
    /// external id `GET|PATCH /sobjects/{type}/{field}/{value}`.
    SObjectRow,
    /// `GET /sobjects`, `/sobjects/{type}`, `/sobjects/{type}/describe`.
    Describe,
    /// `POST /tooling/sobjects/CustomField`.
    Tooling,
    /// Matches every route (faults only).
    Any,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Query => "query",
            Route::QueryMore => "query_more",
            Route::Deleted => "deleted",
            Route::CollectionCreate => "collection_create",
            Route::CollectionUpdate => "collection_update",
            Route::CollectionDelete => "collection_delete",
            Route::BulkCreate => "bulk_create",
            Route::BulkStatus => "bulk_status",
            Route::BulkResults => "bulk_results",
            Route::Token => "token",
            Route::UserInfo => "userinfo",
            Route::Authorize => "authorize",
            Route::Revoke => "revoke",
            Route::Updated => "updated",
            Route::SObjectRow => "sobject_row",
            Route::Describe => "describe",
            Route::Tooling => "tooling",
            Route::Any => "any",
        }
    }
}

/// What an injected fault does to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// 403 `REQUEST_LIMIT_EXCEEDED` (Salesforce sends no 429), with the org's real usage in
    /// `Sforce-Limit-Info` (as for its concurrent-request limit).
    RequestLimit,
    /// A 5xx (default 500 `UNKNOWN_EXCEPTION`; 503 `SERVER_UNAVAILABLE`).
    ServerError {
        #[serde(default)]
        status: Option<u16>,
    },
    /// 401 `INVALID_SESSION_ID`, whatever the token.
    ExpiredSession,
    /// 200 with a truncated JSON body.
    MalformedJson,
    /// Waits this long, then answers normally.
    Delay { ms: u64 },
}

/// A fault for the next `count` requests to `route` (`POST /_admin/faults`).
pub type Fault = admin::Fault<Route, FaultKind>;

/// Request counters: the common ones, `rate_limited` counting 403 `REQUEST_LIMIT_EXCEEDED`
/// answers (allocation used up and injected faults); `GET /_admin/stats` names it
/// `limit_exceeded`, Salesforce's word.
pub type Stats = admin::Stats;

impl admin::FaultRoute for Route {
    fn is_any(&self) -> bool {
        *self == Route::Any
    }
}

impl admin::FaultKind for FaultKind {
    fn is_rate_limit(&self) -> bool {
        matches!(self, FaultKind::RequestLimit)
    }
}

/// What the token endpoint answered (Salesforce sends no `expires_in` and, on refresh, no new
/// refresh token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedToken {
    pub access_token: String,
    pub refresh_token: String,
    pub instance_url: String,
}

/// A query cursor: the result set as rendered at query time, served in batches.
#[derive(Debug)]
pub(crate) struct Locator {
    rows: Vec<Value>,
    batch: usize,
}

/// A Bulk API 2.0 query job.
#[derive(Debug)]
pub(crate) struct BulkJob {
    pub(crate) object: String,
    pub(crate) header: Vec<String>,
    pub(crate) rows: Vec<Vec<String>>,
    pub(crate) polls: u32,
    pub(crate) created_ms: i64,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    tokens: HashMap<String, bool>,
    refresh_tokens: HashMap<String, ()>,
    locators: HashMap<String, Locator>,
    locator_order: VecDeque<String>,
    jobs: HashMap<String, BulkJob>,
    api_usage: u64,
    daily_api_requests: u64,
    instance_url: Option<String>,
    next_serial: u64,
    /// The user's profile has "Customize Application" (creates custom fields).
    customize_application: bool,
}

/// The fake org's state. Every admin operation is also a method here.
#[derive(Debug)]
pub struct SalesforceState {
    inner: Mutex<Inner>,
    config: FakeConfig,
    /// Authorization codes of the web-server flow.
    pub oauth: crate::oauth::CodeGrants,
    control: admin::Control<Route, FaultKind>,
}

/// The fake org's id (18 characters, as Salesforce's) and its one user's.
pub const ORG_ID: &str = "00DFAKE00000001AAA";
pub const USER_ID: &str = "005FAKE00000001AAA";

fn random_token(prefix: &str) -> String {
    let mut rng = rand::rng();
    let a: u64 = rng.random();
    let b: u64 = rng.random();
    format!("{prefix}!{a:016x}{b:016x}")
}

impl SalesforceState {
    pub fn new(config: FakeConfig) -> Self {
        let mut tokens = HashMap::new();
        if let Some(t) = &config.session_token {
            tokens.insert(t.clone(), true);
        }
        let inner = Inner {
            store: Store::seeded(config.seed_counts, config.seed),
            tokens,
            refresh_tokens: HashMap::new(),
            locators: HashMap::new(),
            locator_order: VecDeque::new(),
            jobs: HashMap::new(),
            api_usage: 0,
            daily_api_requests: config.daily_api_requests,
            instance_url: None,
            next_serial: 1,
            customize_application: true,
        };
        Self {
            inner: Mutex::new(inner),
            config,
            oauth: crate::oauth::CodeGrants::new(),
            control: admin::Control::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn config(&self) -> &FakeConfig {
        &self.config
    }

    /// Live records of an object.
    pub fn count(&self, sobject: &str) -> usize {
        self.lock().store.count(sobject)
    }

    /// Ids of the live records of an object, in id order.
    pub fn ids(&self, sobject: &str) -> Vec<String> {
        self.lock().store.live_of(sobject).map(|r| r.id.clone()).collect()
    }

    /// A live record with every field set on it plus the system fields, as REST JSON.
    pub fn record(&self, id: &str) -> Option<Value> {
        let inner = self.lock();
        let r = inner.store.live(id)?;
        let mut fields: Vec<String> =
            ["Id", "CreatedDate", "LastModifiedDate", "SystemModstamp"].iter().map(|s| (*s).into()).collect();
        fields.extend(r.fields.keys().cloned());
        if r.sobject == "Contact" {
            fields.push("Name".into());
        }
        Some(r.render(&fields))
    }

    /// The org's clock, epoch milliseconds (real time unless moved).
    pub fn now_ms(&self) -> i64 {
        self.lock().store.now_ms()
    }

    /// Puts the org's clock at `at_ms`; it runs on from there. Writes and deletes after it are
    /// stamped from there (move it back 16 days, delete, move it forward: a record deleted 16 days
    /// ago). The `Date` header, replication windows and token `issued_at` follow it.
    pub fn set_now(&self, at_ms: i64) {
        self.lock().store.set_now(at_ms);
    }

    /// Moves the org's clock by `by_ms` (negative: back).
    pub fn advance_clock(&self, by_ms: i64) {
        let mut inner = self.lock();
        let now = inner.store.now_ms();
        inner.store.set_now(now + by_ms);
    }

    /// Puts the org's clock back on real time.
    pub fn reset_clock(&self) {
        self.lock().store.reset_clock();
    }

    /// Deletes a record as if at `at_ms` (into the delete log with that `deletedDate`); `false`
    /// if it is absent or already deleted.
    pub fn delete_at(&self, id: &str, at_ms: i64) -> bool {
        self.lock().store.delete_at(id, Some(at_ms)).is_ok()
    }

    /// Creates a custom field as an admin does in Setup: the field, readable and editable by the
    /// API user (the wizard's field-level-security step). `field.id` is ignored; returns the new
    /// `00N` id, or `Err` when the object has the field already or takes no custom fields.
    pub fn create_custom_field(&self, field: CustomField) -> Result<String, String> {
        let mut inner = self.lock();
        let def = store::sobject(field.sobject)
            .filter(|d| d.custom_fields)
            .ok_or_else(|| format!("{} takes no custom fields", field.sobject))?;
        let name = field.name.clone();
        let id = inner.store.add_custom_field(CustomField { sobject: def.name, ..field })?;
        inner.store.grant_field(def.name, &name, true).map_err(|e| e.message)?;
        Ok(id)
    }

    /// Creates the unique, case-insensitive external-id Text(255) field `Syncbridge_Key__c` on
    /// `sobject` as an admin in Setup would (visible to the API user).
    pub fn create_key_field(&self, sobject: &'static str) -> Result<String, String> {
        self.create_custom_field(CustomField {
            id: String::new(),
            sobject,
            name: KEY_FIELD.into(),
            label: "Syncbridge Key".into(),
            field_type: "Text".into(),
            length: Some(255),
            external_id: true,
            unique: true,
            case_sensitive: false,
            required: false,
        })
    }

    /// [`SalesforceState::create_key_field`] on every object that takes custom fields (all but
    /// Note): the org our adapter expects after its setup.
    pub fn create_key_fields(&self) {
        for def in store::SOBJECTS.iter().filter(|d| d.custom_fields) {
            let _ = self.create_key_field(def.name);
        }
    }

    /// The custom fields the org has (visible or not).
    pub fn custom_fields(&self) -> Vec<CustomField> {
        self.lock().store.custom_fields.clone()
    }

    /// Grants (or, with both false, leaves without) field-level security on a custom field to
    /// the API user, as `FieldPermissions` on the profile's permission set.
    pub fn grant_field_access(&self, sobject: &str, field: &str, edit: bool) -> Result<String, String> {
        self.lock().store.grant_field(sobject, field, edit).map_err(|e| e.message)
    }

    /// Gives or takes the user's "Customize Application" permission (without it the Tooling API
    /// refuses to create fields).
    pub fn set_customize_application(&self, allowed: bool) {
        self.lock().customize_application = allowed;
    }

    pub fn customize_application(&self) -> bool {
        self.lock().customize_application
    }

    /// The live record holding this `Syncbridge_Key__c`.
    pub fn record_by_key(&self, sobject: &str, key: &str) -> Option<Value> {
        let id = self.lock().store.by_key(sobject, key)?.id.clone();
        self.record(&id)
    }

    /// How many live records of `sobject` carry this `Syncbridge_Key__c`.
    pub fn count_with_key(&self, sobject: &str, key: &str) -> usize {
        let inner = self.lock();
        inner
            .store
            .live_of(sobject)
            .filter(|r| r.fields.get(KEY_FIELD).and_then(Value::as_str) == Some(key))
            .count()
    }

    /// Edits a record as a person would (the `SystemModstamp` moves to now, second precision).
    pub fn edit(&self, id: &str, fields: &[(&str, Value)]) -> Result<Value, String> {
        let map: Map<String, Value> = fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        self.lock().store.update(id, &map, None).map_err(|e| e.message)?;
        self.record(id).ok_or_else(|| "record vanished".to_owned())
    }

    /// Sets the `SystemModstamp` of these records to one shared instant (now, or `at_ms`) without
    /// other changes. Returns how many were touched.
    pub fn touch(&self, ids: &[String], at_ms: Option<i64>) -> usize {
        let mut inner = self.lock();
        let stamp = at_ms.unwrap_or_else(|| inner.store.next_stamp());
        ids.iter().filter(|id| inner.store.update(id, &Map::new(), Some(stamp)).is_ok()).count()
    }

    /// Creates a record as a person would; returns its id.
    pub fn create(&self, sobject: &str, fields: &[(&str, Value)]) -> Result<String, String> {
        let map: Map<String, Value> = fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        self.lock().store.create(sobject, &map).map_err(|e| e.message)
    }

    /// Deletes a record (into the delete log); `false` if it is absent or already deleted.
    pub fn delete(&self, id: &str) -> bool {
        self.lock().store.delete(id).is_ok()
    }

    /// Empties the delete log and the recycle bin, as 15 days do: deleted records vanish without
    /// a trace (`/deleted` no longer lists them). Returns how many were purged.
    pub fn purge_deleted(&self) -> usize {
        self.lock().store.purge_deleted()
    }

    admin::control_methods!();

    /// Requests to one route so far.
    pub fn route_count(&self, route: Route) -> u64 {
        self.control.counters.route(route.as_str())
    }

    /// Sets the API requests used today and, optionally, the daily allocation.
    pub fn set_api_usage(&self, used: u64, allocation: Option<u64>) {
        let mut inner = self.lock();
        inner.api_usage = used;
        if let Some(a) = allocation {
            inner.daily_api_requests = a;
        }
    }

    /// `(used, allocation)` of the daily API requests.
    pub fn api_usage(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.api_usage, inner.daily_api_requests)
    }

    /// Makes every open query locator invalid (as after 15 minutes of inactivity).
    pub fn expire_query_locators(&self) {
        let mut inner = self.lock();
        inner.locators.clear();
        inner.locator_order.clear();
    }

    /// The `instance_url` the token endpoint answers from now on (default: the fake's base URL).
    pub fn set_instance_url(&self, url: Option<String>) {
        self.lock().instance_url = url;
    }

    /// Issues a session (access) token and a refresh token, as the authorization-code flow would.
    pub fn issue_token(&self, base_url: &str) -> IssuedToken {
        let access = random_token("00DFAKE");
        let refresh = random_token("5Aep861");
        let mut inner = self.lock();
        inner.tokens.insert(access.clone(), true);
        inner.refresh_tokens.insert(refresh.clone(), ());
        let instance_url = inner.instance_url.clone().unwrap_or_else(|| base_url.to_owned());
        IssuedToken { access_token: access, refresh_token: refresh, instance_url }
    }

    /// Ends a session (as a timeout or a logout does); `false` if unknown.
    pub fn expire_token(&self, access_token: &str) -> bool {
        match self.lock().tokens.get_mut(access_token) {
            Some(valid) => {
                *valid = false;
                true
            }
            None => false,
        }
    }

    /// Revokes a refresh token; `false` if unknown.
    pub fn revoke_refresh_token(&self, refresh_token: &str) -> bool {
        self.lock().refresh_tokens.remove(refresh_token).is_some()
    }

    /// `/services/oauth2/revoke`: a refresh token (it stops refreshing) or an access token (it stops
    /// working); `false` when the fake knows neither.
    pub fn revoke(&self, token: &str) -> bool {
        let mut inner = self.lock();
        if inner.refresh_tokens.remove(token).is_some() {
            return true;
        }
        match inner.tokens.get_mut(token) {
            Some(valid) => {
                *valid = false;
                true
            }
            None => false,
        }
    }

    /// True while `refresh_token` can refresh (it was issued and not revoked).
    pub fn refresh_token_is_valid(&self, refresh_token: &str) -> bool {
        self.lock().refresh_tokens.contains_key(refresh_token)
    }

    fn refresh(&self, refresh_token: &str, base_url: &str) -> Option<(String, String)> {
        let mut inner = self.lock();
        inner.refresh_tokens.get(refresh_token)?;
        let access = random_token("00DFAKE");
        inner.tokens.insert(access.clone(), true);
        let instance = inner.instance_url.clone().unwrap_or_else(|| base_url.to_owned());
        Some((access, instance))
    }

    /// Counts the request and takes the first pending fault for `route`.
    fn count_and_take_fault(&self, route: Route) -> Option<FaultKind> {
        admin::Admin::count_and_take(self, &route, route.as_str())
    }

    fn serial(&self) -> u64 {
        let mut inner = self.lock();
        let n = inner.next_serial;
        inner.next_serial += 1;
        n
    }
}

impl admin::Admin for SalesforceState {
    type Route = Route;
    type Kind = FaultKind;
    type Extra = admin::NoExtra;

    fn control(&self) -> &admin::Control<Route, FaultKind, admin::NoExtra> {
        &self.control
    }
    fn oauth(&self) -> Option<&crate::oauth::CodeGrants> {
        Some(&self.oauth)
    }
    fn bad_body(error: &serde_json::Error) -> axum::response::Response {
        server::bad_json(error, None)
    }
    fn stats_json(stats: Stats) -> serde_json::Value {
        admin::rename_keys(
            serde_json::to_value(stats).unwrap_or_default(),
            &[("rate_limited", "limit_exceeded")],
        )
    }
}

/// Starts fakes.
pub struct SalesforceFake;

impl SalesforceFake {
    /// Binds 127.0.0.1 on `config.port` (0: OS-picked) and serves until the [`RunningFake`] drops.
    pub async fn start(config: FakeConfig) -> anyhow::Result<RunningFake> {
        let bound = crate::serving::bind(config.port).await?;
        let base_url = bound.base_url.clone();
        let state = Arc::new(SalesforceState::new(config));
        let app = server::app(state.clone(), base_url.clone());
        let server = bound.serve("Salesforce", app);
        Ok(RunningFake::new(base_url, state, server))
    }
}

/// A running fake; the server stops when this is dropped.
pub type RunningFake = crate::serving::Running<SalesforceState>;

impl RunningFake {
    /// Issues a token pair whose `instance_url` is this fake.
    pub fn issue_token(&self) -> IssuedToken {
        self.state.issue_token(&self.base_url)
    }
}

#[cfg(test)]
mod tests;
