//! A fake HubSpot account speaking the CRM v3 objects API for contacts, companies, deals and the
//! activities (notes, calls, emails, meetings, tasks)
//! (list with `associations=`, archived listing, search, batch read/create/update/archive, single
//! read/create/update/archive), the v4 associations batch read/create/archive, the properties API
//! (list, get, create), the OAuth v1 token endpoint, scopes (403 `MISSING_SCOPES`), HubSpot's error
//! bodies and its rate limits (190 requests per 10 s per token, search 5 per second), plus
//! `/_admin/` routes and a Rust handle ([`HubspotState`]) to edit data, archive and restore records,
//! advance the account's clock, inject faults, issue tokens with only some scopes and count
//! requests.
//!
//! The portal starts stock: HubSpot's default properties only, no custom (so no unique-value)
//! property. A client creates one with `POST /crm/v3/properties/{objectType}` (`hasUniqueValue:
//! true`, refused on notes); a write naming a property the type lacks answers 400
//! `VALIDATION_ERROR` with `PROPERTY_DOESNT_EXIST`.
//!
//! Rate limiting follows HubSpot's documented contract: `X-HubSpot-RateLimit-*` headers and a 429
//! with `errorType: RATE_LIMIT` and a `policyName`. HubSpot's usage guidelines document no
//! `Retry-After` header, so the fake sends one only on injected 429 faults that ask for it.

pub mod search;
mod server;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::admin;
pub use store::{ObjectKind, PropertyDef, PropertyError};
use store::{SeedCounts, Store};

/// The scopes HubSpot checks on the routes the fake serves
/// (https://developers.hubspot.com/docs/api-reference/error-handling: a token without them gets 403
/// `MISSING_SCOPES`). Notes have no scope of their own: HubSpot's notes API requires the contacts
/// scopes (https://developers.hubspot.com/docs/api-reference/latest/crm/activities/notes/guide).
/// The properties API needs `crm.schemas.{type}.read/write`
/// (https://developers.hubspot.com/docs/api/crm/properties). The default private-app token and
/// every OAuth token the fake issues carry all of them.
pub const ALL_SCOPES: &[&str] = &[
    "oauth",
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.objects.companies.read",
    "crm.objects.companies.write",
    "crm.objects.deals.read",
    "crm.objects.deals.write",
    "crm.schemas.contacts.read",
    "crm.schemas.contacts.write",
    "crm.schemas.companies.read",
    "crm.schemas.companies.write",
    "crm.schemas.deals.read",
    "crm.schemas.deals.write",
];

/// The scope a request on `kind`'s records (`schema`: its properties) needs to read or write.
pub fn required_scope(kind: ObjectKind, schema: bool, write: bool) -> String {
    let owner = match kind {
        // Every activity's guide lists the contacts scopes
        // (https://developers.hubspot.com/docs/api-reference/latest/crm/activities/calls/guide,
        // "Scope requirements"; the same on emails, meetings and tasks).
        ObjectKind::Contacts
        | ObjectKind::Notes
        | ObjectKind::Calls
        | ObjectKind::Emails
        | ObjectKind::Meetings
        | ObjectKind::Tasks => "contacts",
        ObjectKind::Companies => "companies",
        ObjectKind::Deals => "deals",
    };
    let family = if schema { "schemas" } else { "objects" };
    let access = if write { "write" } else { "read" };
    format!("crm.{family}.{owner}.{access}")
}

fn all_scopes() -> BTreeSet<String> {
    ALL_SCOPES.iter().map(|s| (*s).to_owned()).collect()
}

/// Requests one token may make per rolling window.
pub const TEN_SECONDLY_MAX: u32 = 190;
pub const TEN_SECONDLY_INTERVAL: Duration = Duration::from_secs(10);
/// Search requests one token may make per second.
pub const SEARCH_PER_SECOND: u32 = 5;
pub const DAILY_MAX: u64 = 500_000;

/// How to start a fake.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Port on 127.0.0.1; 0 lets the OS pick.
    pub port: u16,
    /// Contacts seeded with ids `"1"..="N"`.
    pub contacts: usize,
    /// Companies seeded with ids `"1"..="N"` (each contact is associated with one when there are any).
    pub companies: usize,
    /// Deals seeded with ids `"1"..="N"`, each associated with one contact and one company.
    pub deals: usize,
    /// Notes seeded with ids `"1"..="N"`, each associated with one contact and one deal.
    pub notes: usize,
    /// Calls, emails, meetings and tasks seeded with ids `"1"..="N"` each, associated like notes.
    pub calls: usize,
    pub emails: usize,
    pub meetings: usize,
    pub tasks: usize,
    pub seed: u64,
    /// Enforce HubSpot's rate limits and send the `X-HubSpot-RateLimit-*` headers.
    pub rate_limits: bool,
    /// A private-app token that never expires (`None`: only issued OAuth tokens work).
    pub private_app_token: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    /// Lifetime of OAuth access tokens issued by `/oauth/v1/token` and [`HubspotState::issue_token`].
    pub access_token_ttl: Duration,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            port: 0,
            contacts: 0,
            companies: 0,
            deals: 0,
            notes: 0,
            calls: 0,
            emails: 0,
            meetings: 0,
            tasks: 0,
            seed: 42,
            rate_limits: false,
            private_app_token: Some("pat-na1-fake".into()),
            client_id: "fake-client-id".into(),
            client_secret: "fake-client-secret".into(),
            access_token_ttl: Duration::from_secs(1800),
        }
    }
}

/// The routes the fake counts and can inject faults into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    List,
    Get,
    Search,
    BatchRead,
    BatchUpdate,
    BatchCreate,
    BatchArchive,
    Create,
    Update,
    Archive,
    /// `POST /crm/v4/associations/{from}/{to}/batch/read`.
    Associations,
    /// `POST /crm/v4/associations/{from}/{to}/batch/create`.
    AssociationsCreate,
    /// `POST /crm/v4/associations/{from}/{to}/batch/archive`.
    AssociationsArchive,
    Token,
    /// `GET /oauth/authorize` (app.hubspot.com's consent page).
    Authorize,
    /// `GET /oauth/v1/access-tokens/{token}`.
    TokenInfo,
    /// `DELETE /oauth/v1/refresh-tokens/{token}`.
    Revoke,
    /// `GET /crm/v3/properties/{objectType}` and `GET .../{propertyName}`.
    Properties,
    /// `POST /crm/v3/properties/{objectType}`.
    PropertyCreate,
    /// Matches every route (faults only).
    Any,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::List => "list",
            Route::Get => "get",
            Route::Search => "search",
            Route::BatchRead => "batch_read",
            Route::BatchUpdate => "batch_update",
            Route::BatchCreate => "batch_create",
            Route::BatchArchive => "batch_archive",
            Route::Create => "create",
            Route::Update => "update",
            Route::Archive => "archive",
            Route::Associations => "associations",
            Route::AssociationsCreate => "associations_create",
            Route::AssociationsArchive => "associations_archive",
            Route::Token => "token",
            Route::Authorize => "authorize",
            Route::TokenInfo => "token_info",
            Route::Revoke => "revoke",
            Route::Properties => "properties",
            Route::PropertyCreate => "property_create",
            Route::Any => "any",
        }
    }
}

/// What an injected fault does to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// 429 with HubSpot's body; `policy` defaults to `TEN_SECONDLY_ROLLING`. `retry_after_secs`
    /// adds a `Retry-After` header (HubSpot does not document one).
    RateLimit {
        #[serde(default)]
        policy: Option<String>,
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// 500 with HubSpot's error body.
    ServerError,
    /// 401 `EXPIRED_AUTHENTICATION`, whatever the token.
    ExpiredToken,
    /// 200 with a truncated JSON body.
    MalformedJson,
    /// Waits this long, then answers normally.
    Delay { ms: u64 },
}

/// A fault for the next `count` requests to `route` (`POST /_admin/faults`).
pub type Fault = admin::Fault<Route, FaultKind>;

/// Request counters (`GET /_admin/stats`): the common ones (`rate_limited` counts 429s from
/// rate limiting and injected faults; `routes` counts every object type together) and
/// [`ObjectCounts`].
pub type Stats = admin::Stats<ObjectCounts>;

/// The HubSpot fake's own counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectCounts {
    /// Requests per object type and route (`deals.search`, `notes.batch_create`, ...).
    #[serde(default)]
    pub by_object: BTreeMap<String, u64>,
}

impl admin::FaultRoute for Route {
    fn is_any(&self) -> bool {
        *self == Route::Any
    }
}

impl admin::FaultKind for FaultKind {
    fn is_rate_limit(&self) -> bool {
        matches!(self, FaultKind::RateLimit { .. })
    }
}

/// An OAuth token pair issued by the fake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedToken {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

#[derive(Debug)]
struct TokenInfo {
    expires_at: Option<Instant>,
    scopes: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Window {
    general: VecDeque<Instant>,
    search: VecDeque<Instant>,
    daily: u64,
}

/// Rate-limit headers for one response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LimitHeaders {
    remaining: u32,
    daily_remaining: u64,
}

/// Why the gate refused a request before the handler ran.
#[derive(Debug)]
pub(crate) enum Refusal {
    Unauthenticated,
    Expired {
        ago: Duration,
    },
    /// The token lacks this scope (HubSpot's 403 `MISSING_SCOPES`).
    MissingScope(String),
    RateLimited {
        policy: &'static str,
        headers: LimitHeaders,
    },
}

/// Where and as whom the fake sends its webhooks (HubSpot's app-level webhook subscription).
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    /// The target URL, signed exactly as written here (HubSpot signs the URL it calls).
    pub url: String,
    /// The app the subscription belongs to: `appId` of every event, and `sourceId` of the changes
    /// made through the API (the app's own writes).
    pub app_id: u64,
    /// This account's portal id (`portalId`).
    pub portal_id: u64,
}

/// Who made the changes the fake is about to announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeSource {
    /// A person in HubSpot (the admin routes and the Rust handle): `CRM_UI`, `userId:...`.
    User,
    /// The connected app through the API: `INTEGRATION`, `sourceId` = the app id.
    Integration,
}

/// The user id people's changes are attributed to.
pub const WEBHOOK_USER_ID: u64 = 7001;

#[derive(Debug)]
struct Inner {
    store: Store,
    webhooks: Option<WebhookTarget>,
    outbox: Vec<Value>,
    next_event_id: u64,
    tokens: HashMap<String, TokenInfo>,
    /// Refresh token -> the scopes the install granted (its access tokens carry them).
    refresh_tokens: HashMap<String, BTreeSet<String>>,
    windows: HashMap<String, Window>,
    rate_limits: bool,
}

/// The fake account's state. Every admin operation is also a method here.
#[derive(Debug)]
pub struct HubspotState {
    inner: Mutex<Inner>,
    config: FakeConfig,
    /// Authorization codes of the OAuth install flow.
    pub oauth: crate::oauth::CodeGrants,
    control: admin::Control<Route, FaultKind, ObjectCounts>,
}

/// The fake portal's id (`hub_id`), and the app's.
pub const PORTAL_ID: u64 = 62_515;
pub const APP_ID: u64 = 456_789;

fn random_token(prefix: &str) -> String {
    let mut rng = rand::rng();
    let a: u64 = rng.random();
    let b: u64 = rng.random();
    format!("{prefix}-{a:016x}{b:016x}")
}

/// A fresh id in the shape of HubSpot's `correlationId` (a UUID).
pub fn correlation_id() -> String {
    let mut rng = rand::rng();
    let a: u128 = rng.random();
    let h = format!("{a:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

impl HubspotState {
    pub fn new(config: FakeConfig) -> Self {
        let mut tokens = HashMap::new();
        if let Some(t) = &config.private_app_token {
            tokens.insert(t.clone(), TokenInfo { expires_at: None, scopes: all_scopes() });
        }
        let inner = Inner {
            store: Store::seeded_with(
                SeedCounts {
                    contacts: config.contacts,
                    companies: config.companies,
                    deals: config.deals,
                    notes: config.notes,
                    calls: config.calls,
                    emails: config.emails,
                    meetings: config.meetings,
                    tasks: config.tasks,
                },
                config.seed,
            ),
            webhooks: None,
            outbox: Vec::new(),
            next_event_id: 1,
            tokens,
            refresh_tokens: HashMap::new(),
            windows: HashMap::new(),
            rate_limits: config.rate_limits,
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

    /// Sends webhooks for every later change to `target` (`None`: none, and nothing is kept).
    pub fn set_webhooks(&self, target: Option<WebhookTarget>) {
        let mut inner = self.lock();
        inner.store.record_changes = target.is_some();
        inner.store.changes.clear();
        inner.outbox.clear();
        inner.webhooks = target;
    }

    /// Turns the changes recorded so far into webhook events attributed to `source`.
    pub(crate) fn take_changes(&self, source: ChangeSource) {
        let mut inner = self.lock();
        let Some(target) = inner.webhooks.clone() else {
            return;
        };
        let changes = std::mem::take(&mut inner.store.changes);
        for change in changes {
            let event_id = inner.next_event_id;
            inner.next_event_id += 1;
            let (suffix, property) = match &change.what {
                store::ChangeKind::Creation => ("creation", None),
                store::ChangeKind::PropertyChange { name, value } => ("propertyChange", Some((name, value))),
                store::ChangeKind::Deletion => ("deletion", None),
                store::ChangeKind::Restore => ("restore", None),
            };
            // HubSpot's legacy subscription types (`contact.*`, `company.*`, `deal.*`) have no
            // notes: note events are the generic `object.*`, naming the type by `objectTypeId`.
            let prefix = match change.kind {
                kind if kind.is_activity() => "object",
                kind => kind.singular(),
            };
            let (change_source, source_id) = match source {
                ChangeSource::User => ("CRM_UI", format!("userId:{WEBHOOK_USER_ID}")),
                ChangeSource::Integration => ("INTEGRATION", target.app_id.to_string()),
            };
            let mut event = serde_json::json!({
                "eventId": event_id,
                "subscriptionId": 1000 + change.kind as u64,
                "portalId": target.portal_id,
                "appId": target.app_id,
                "occurredAt": change.at_ms,
                "subscriptionType": format!("{prefix}.{suffix}"),
                "attemptNumber": 0,
                "objectId": change.id,
                "changeSource": change_source,
                "sourceId": source_id,
            });
            if prefix == "object" {
                event["objectTypeId"] = Value::from(change.kind.object_type_id());
            }
            if let Some((name, value)) = property {
                event["propertyName"] = Value::from(name.clone());
                event["propertyValue"] = Value::from(value.clone());
            }
            inner.outbox.push(event);
        }
    }

    /// Webhook events waiting to be sent (people's changes made through the Rust handle are
    /// included, attributed to a user).
    pub fn pending_webhooks(&self) -> Vec<Value> {
        self.take_changes(ChangeSource::User);
        self.lock().outbox.clone()
    }

    /// Sends the waiting webhook events to the target as HubSpot does: POSTs of at most 100 events,
    /// signed with the v3 signature (the app's client secret). Returns each request's status.
    pub async fn send_webhooks(&self) -> anyhow::Result<Vec<u16>> {
        self.take_changes(ChangeSource::User);
        let (target, events) = {
            let mut inner = self.lock();
            let Some(target) = inner.webhooks.clone() else {
                return Ok(Vec::new());
            };
            (target, std::mem::take(&mut inner.outbox))
        };
        let http = reqwest::Client::new();
        let mut statuses = Vec::new();
        for chunk in events.chunks(100) {
            let body = serde_json::to_string(chunk)?;
            let timestamp = chrono::Utc::now().timestamp_millis().to_string();
            let signature = sign_v3(&self.config.client_secret, "POST", &target.url, &body, &timestamp);
            let resp = http
                .post(&target.url)
                .header("content-type", "application/json")
                .header("X-HubSpot-Signature-v3", signature)
                .header("X-HubSpot-Request-Timestamp", timestamp)
                .body(body)
                .send()
                .await
                .context("sending the webhook")?;
            statuses.push(resp.status().as_u16());
        }
        Ok(statuses)
    }

    /// Number of records of one type, archived included.
    pub fn count(&self, kind: ObjectKind) -> usize {
        self.lock().store.len(kind)
    }

    /// All ids of one type (as HubSpot's numeric strings), archived included.
    pub fn ids(&self, kind: ObjectKind) -> Vec<String> {
        self.lock().store.all_ids(kind).into_iter().map(|id| id.to_string()).collect()
    }

    /// The record as the API renders it (all known and custom properties, every association,
    /// `archived`/`archivedAt`), or `None`.
    pub fn object(&self, kind: ObjectKind, id: &str) -> Option<Value> {
        let id = id.parse::<u64>().ok()?;
        self.lock().store.render_all(kind, id)
    }

    /// Edits a record as a HubSpot user would: sets the properties and bumps its modified stamp
    /// above every existing timestamp. Returns the rendered record, or `None` if it is absent,
    /// archived or the values are invalid.
    pub fn edit(&self, kind: ObjectKind, id: &str, properties: &[(&str, &str)]) -> Option<Value> {
        let props: BTreeMap<String, String> =
            properties.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let num = id.parse::<u64>().ok()?;
        if !self.lock().store.update_as(kind, num, &props, None, true).ok()? {
            return None;
        }
        self.object(kind, id)
    }

    /// Bumps the modified stamp of these records without other changes. With `shared`, all of
    /// them get one new timestamp; otherwise each its own. Returns how many were touched.
    pub fn touch<'a>(&self, kind: ObjectKind, ids: impl IntoIterator<Item = &'a str>, shared: bool) -> usize {
        let mut inner = self.lock();
        let stamp = shared.then(|| inner.store.next_stamp());
        let empty = BTreeMap::new();
        ids.into_iter()
            .filter_map(|id| id.parse::<u64>().ok())
            .filter(|id| inner.store.update_as(kind, *id, &empty, stamp, true).unwrap_or(false))
            .count()
    }

    /// Creates a record as a HubSpot user would; returns its id, or `None` if the values are invalid
    /// (a person may set properties the type does not define; values and unique properties are
    /// checked).
    pub fn create(&self, kind: ObjectKind, properties: &[(&str, &str)]) -> Option<String> {
        let props = properties.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.lock().store.create_as(kind, props, true).ok().map(|id| id.to_string())
    }

    /// Creates a custom property on an object type, as a portal admin or a client of the
    /// properties API would (same rules: 409 when it exists, `unique` refused on notes and past 10 a
    /// type). A string/text property in the type's default group.
    pub fn define_property(
        &self,
        kind: ObjectKind,
        name: &str,
        unique: bool,
    ) -> Result<PropertyDef, PropertyError> {
        let def = PropertyDef {
            name: name.to_owned(),
            label: name.to_owned(),
            kind: "string".into(),
            field_type: "text".into(),
            group_name: String::new(),
            description: String::new(),
            has_unique_value: unique,
            hubspot_defined: false,
            read_only: false,
            created_ms: 0,
        };
        self.lock().store.define_property(kind, def)
    }

    /// The definition of a property of an object type (HubSpot's default ones included).
    pub fn property(&self, kind: ObjectKind, name: &str) -> Option<PropertyDef> {
        self.lock().store.property_def(kind, name).cloned()
    }

    /// Associates two live records (both directions); `false` if either is missing.
    pub fn associate(&self, kind: ObjectKind, id: &str, to: ObjectKind, to_id: &str) -> bool {
        match (id.parse::<u64>(), to_id.parse::<u64>()) {
            (Ok(a), Ok(b)) => self.lock().store.associate(kind, a, to, b),
            _ => false,
        }
    }

    /// Ids of the live `to` records associated with a record, ascending.
    pub fn associated(&self, kind: ObjectKind, id: &str, to: ObjectKind) -> Vec<String> {
        let Ok(id) = id.parse::<u64>() else { return Vec::new() };
        self.lock().store.associated(kind, id, to).into_iter().map(|i| i.to_string()).collect()
    }

    /// Ids of live records of `kind` whose property `name` starts with `prefix` (a note body
    /// followed by the tag an integration appended, for instance).
    pub fn find_starting(&self, kind: ObjectKind, name: &str, prefix: &str) -> Vec<String> {
        let inner = self.lock();
        let store = &inner.store;
        store
            .all_ids(kind)
            .into_iter()
            .filter(|id| {
                store.live(kind, *id).is_some_and(|r| {
                    store.property(kind, *id, r, name).is_some_and(|v| v.starts_with(prefix))
                })
            })
            .map(|id| id.to_string())
            .collect()
    }

    /// Live records of one type whose property `name` equals `value`.
    pub fn find(&self, kind: ObjectKind, name: &str, value: &str) -> Vec<String> {
        let inner = self.lock();
        let store = &inner.store;
        store
            .all_ids(kind)
            .into_iter()
            .filter(|id| {
                store
                    .live(kind, *id)
                    .is_some_and(|r| store.property(kind, *id, r, name).as_deref() == Some(value))
            })
            .map(|id| id.to_string())
            .collect()
    }

    /// Archives a record (HubSpot's delete); `false` if it is absent or already archived.
    pub fn archive(&self, kind: ObjectKind, id: &str) -> bool {
        id.parse::<u64>().is_ok_and(|id| self.lock().store.archive(kind, id))
    }

    /// Restores an archived record; `false` if it is absent or live.
    pub fn restore(&self, kind: ObjectKind, id: &str) -> bool {
        id.parse::<u64>().is_ok_and(|id| self.lock().store.restore(kind, id))
    }

    /// Moves the account's clock (its `Date` header and new timestamps) forward.
    pub fn advance_clock(&self, by: Duration) {
        self.lock().store.advance_clock(i64::try_from(by.as_millis()).unwrap_or(i64::MAX));
    }

    /// The account's clock in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.lock().store.now_ms()
    }

    /// Number of contacts, archived included.
    pub fn contact_count(&self) -> usize {
        self.count(ObjectKind::Contacts)
    }

    /// All contact ids (as HubSpot's numeric strings), archived included.
    pub fn contact_ids(&self) -> Vec<String> {
        self.ids(ObjectKind::Contacts)
    }

    /// The contact as the API renders it (all known properties), or `None`.
    pub fn contact(&self, id: &str) -> Option<Value> {
        self.object(ObjectKind::Contacts, id)
    }

    /// [`HubspotState::edit`] on a contact.
    pub fn edit_contact(&self, id: &str, properties: &[(&str, &str)]) -> Option<Value> {
        self.edit(ObjectKind::Contacts, id, properties)
    }

    /// [`HubspotState::touch`] on contacts.
    pub fn touch_contacts<'a>(&self, ids: impl IntoIterator<Item = &'a str>, shared: bool) -> usize {
        self.touch(ObjectKind::Contacts, ids, shared)
    }

    /// Creates a contact; returns its id (empty if the values are invalid).
    pub fn create_contact(&self, properties: &[(&str, &str)]) -> String {
        self.create(ObjectKind::Contacts, properties).unwrap_or_default()
    }

    /// Archives a contact (HubSpot's delete); `false` if it is absent or already archived.
    pub fn archive_contact(&self, id: &str) -> bool {
        self.archive(ObjectKind::Contacts, id)
    }

    admin::control_methods!();

    /// Turns rate limiting (and its headers) on or off; also forgets the request windows.
    pub fn set_rate_limits(&self, enabled: bool) {
        let mut inner = self.lock();
        inner.rate_limits = enabled;
        inner.windows.clear();
    }

    /// Issues an OAuth access token (lifetime `ttl`, default the config's) and a refresh token,
    /// with every scope ([`ALL_SCOPES`]).
    pub fn issue_token(&self, ttl: Option<Duration>) -> IssuedToken {
        self.issue_token_with_scopes(ttl, ALL_SCOPES)
    }

    /// [`HubspotState::issue_token`] for an install that granted only `scopes` (e.g. every scope
    /// but `crm.objects.contacts.*`: contacts and notes then answer 403 `MISSING_SCOPES`). Access
    /// tokens refreshed from its refresh token carry the same scopes.
    pub fn issue_token_with_scopes<S: AsRef<str>>(&self, ttl: Option<Duration>, scopes: &[S]) -> IssuedToken {
        let ttl = ttl.unwrap_or(self.config.access_token_ttl);
        let scopes: BTreeSet<String> = scopes.iter().map(|s| s.as_ref().to_owned()).collect();
        let access = random_token("oauth-access");
        let refresh = random_token("oauth-refresh");
        let mut inner = self.lock();
        let info = TokenInfo { expires_at: Some(Instant::now() + ttl), scopes: scopes.clone() };
        inner.tokens.insert(access.clone(), info);
        inner.refresh_tokens.insert(refresh.clone(), scopes);
        IssuedToken { access_token: access, refresh_token: refresh, expires_in: ttl.as_secs() }
    }

    /// The scopes an access token carries; `None` if unknown.
    pub fn token_scopes(&self, access_token: &str) -> Option<Vec<String>> {
        self.lock().tokens.get(access_token).map(|t| t.scopes.iter().cloned().collect())
    }

    /// Makes an access token expired now; `false` if unknown.
    pub fn expire_token(&self, access_token: &str) -> bool {
        match self.lock().tokens.get_mut(access_token) {
            Some(info) => {
                info.expires_at = Some(Instant::now());
                true
            }
            None => false,
        }
    }

    /// Seconds an access token has left (`Some(None)`: it never expires); `None` if unknown.
    pub fn token_expires_in(&self, access_token: &str) -> Option<Option<u64>> {
        let inner = self.lock();
        let info = inner.tokens.get(access_token)?;
        Some(info.expires_at.map(|at| at.saturating_duration_since(Instant::now()).as_secs()))
    }

    /// True while `refresh_token` can refresh (issued and not revoked).
    pub fn refresh_token_is_valid(&self, refresh_token: &str) -> bool {
        self.lock().refresh_tokens.contains_key(refresh_token)
    }

    /// Revokes a refresh token (the user uninstalled the app); `false` if unknown.
    pub fn revoke_refresh_token(&self, refresh_token: &str) -> bool {
        self.lock().refresh_tokens.remove(refresh_token).is_some()
    }

    /// Exchanges a refresh token for a new access token (the refresh token stays valid, as in
    /// HubSpot's v1 endpoint). `None` if the refresh token is unknown.
    fn refresh(&self, refresh_token: &str) -> Option<IssuedToken> {
        let ttl = self.config.access_token_ttl;
        let mut inner = self.lock();
        let scopes = inner.refresh_tokens.get(refresh_token)?.clone();
        let access = random_token("oauth-access");
        inner.tokens.insert(access.clone(), TokenInfo { expires_at: Some(Instant::now() + ttl), scopes });
        Some(IssuedToken {
            access_token: access,
            refresh_token: refresh_token.to_owned(),
            expires_in: ttl.as_secs(),
        })
    }

    /// Counts the request and takes the first pending fault for `route`.
    fn count_and_take_fault(&self, route: Route, object: Option<ObjectKind>) -> Option<FaultKind> {
        if let Some(kind) = object {
            let key = format!("{}.{}", kind.as_str(), route.as_str());
            self.control.counters.update(|s| *s.by_object.entry(key).or_default() += 1);
        }
        admin::Admin::count_and_take(self, &route, route.as_str())
    }

    /// Checks the bearer token, its scope and the rate limits; on success returns the headers to
    /// send.
    fn admit(
        &self,
        bearer: Option<&str>,
        route: Route,
        scope: Option<&str>,
    ) -> Result<Option<LimitHeaders>, Refusal> {
        let now = Instant::now();
        let mut inner = self.lock();
        let token = bearer.ok_or(Refusal::Unauthenticated)?;
        let info = inner.tokens.get(token).ok_or(Refusal::Unauthenticated)?;
        if let Some(at) = info.expires_at.filter(|at| *at <= now) {
            return Err(Refusal::Expired { ago: now - at });
        }
        if let Some(scope) = scope.filter(|s| !info.scopes.contains(*s)) {
            return Err(Refusal::MissingScope(scope.to_owned()));
        }
        if !inner.rate_limits {
            return Ok(None);
        }
        let window = inner.windows.entry(token.to_owned()).or_default();
        while window.general.front().is_some_and(|t| now.duration_since(*t) >= TEN_SECONDLY_INTERVAL) {
            window.general.pop_front();
        }
        while window.search.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
            window.search.pop_front();
        }
        let used = window.general.len() as u32;
        let headers = |used: u32, daily: u64| LimitHeaders {
            remaining: TEN_SECONDLY_MAX.saturating_sub(used),
            daily_remaining: DAILY_MAX.saturating_sub(daily),
        };
        let refused = if window.daily >= DAILY_MAX {
            Some("DAILY")
        } else if used >= TEN_SECONDLY_MAX {
            Some("TEN_SECONDLY_ROLLING")
        } else if route == Route::Search && window.search.len() as u32 >= SEARCH_PER_SECOND {
            Some("SECONDLY")
        } else {
            None
        };
        if let Some(policy) = refused {
            let h = headers(used, window.daily);
            self.control.counters.rate_limited();
            return Err(Refusal::RateLimited { policy, headers: h });
        }
        window.general.push_back(now);
        if route == Route::Search {
            window.search.push_back(now);
        }
        window.daily += 1;
        Ok(Some(headers(used + 1, window.daily)))
    }
}

/// HubSpot's v3 request signature: base64(HMAC-SHA256(client secret, method + URI + body +
/// timestamp)).
pub fn sign_v3(client_secret: &str, method: &str, uri: &str, body: &str, timestamp: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(client_secret.as_bytes())
        .expect("HMAC takes any key length");
    for part in [method, uri, body, timestamp] {
        mac.update(part.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

impl admin::Admin for HubspotState {
    type Route = Route;
    type Kind = FaultKind;
    type Extra = ObjectCounts;

    fn control(&self) -> &admin::Control<Route, FaultKind, ObjectCounts> {
        &self.control
    }
    fn oauth(&self) -> Option<&crate::oauth::CodeGrants> {
        Some(&self.oauth)
    }
    fn bad_body(error: &serde_json::Error) -> axum::response::Response {
        server::bad_json(error, None)
    }
}

/// Starts fakes.
pub struct HubspotFake;

impl HubspotFake {
    /// Binds 127.0.0.1 on `config.port` (0: OS-picked) and serves until the [`RunningFake`] drops.
    pub async fn start(config: FakeConfig) -> anyhow::Result<RunningFake> {
        let bound = crate::serving::bind(config.port).await?;
        let base_url = bound.base_url.clone();
        let state = Arc::new(HubspotState::new(config));
        let app = server::router(state.clone(), base_url.clone());
        let server = bound.serve("HubSpot", app);
        Ok(RunningFake::new(base_url, state, server))
    }
}

/// A running fake; the server stops when this is dropped.
pub type RunningFake = crate::serving::Running<HubspotState>;

#[cfg(test)]
mod tests;
