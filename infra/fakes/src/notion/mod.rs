//! A fake Notion workspace speaking the public API at version 2025-09-03 (databases resolve to
//! data sources): databases (`POST /v1/databases` with `initial_data_source`, `GET`), data
//! sources (`GET`, `PATCH` of the schema, `POST .../query` with filters, sorts and cursors),
//! pages (`POST`, `GET`, `PATCH` with properties and `in_trash`), block children (`PATCH`
//! append, `GET`), `GET /v1/users/me`, bearer auth, the `Notion-Version` header, Notion's error
//! body (`{"object":"error","status","code","message","request_id"}`), its size limits and its
//! rate limit (an average of 3 requests a second with bursts, 429 `rate_limited` with
//! `Retry-After`; switchable), plus `/_admin/` routes and a Rust handle ([`NotionState`]) to seed
//! a CRM, edit and trash pages as a person would, move the workspace clock, inject faults and
//! count requests.
//!
//! The workspace starts as a new one: a bot user (the integration), one person, and one page
//! shared with the integration (the root under which databases are created). `created_time` and
//! `last_edited_time` are rounded down to the minute, as Notion's are.

mod oauth;
mod server;
pub mod store;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::admin;
use axum::response::IntoResponse as _;
pub use store::StoreError;
use store::{Parent, Store};

/// The only API version the fake serves (<https://developers.notion.com/reference/versioning>).
pub const API_VERSION: &str = "2025-09-03";
/// Notion's rate limit: an average of three requests a second per integration, some bursts
/// allowed (<https://developers.notion.com/reference/request-limits#rate-limits>). The fake
/// allows a burst of [`BURST`] and refills at [`PER_SECOND`].
pub const PER_SECOND: f64 = 3.0;
pub const BURST: f64 = 10.0;

/// How to start a fake.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Port on 127.0.0.1; 0 lets the OS pick.
    pub port: u16,
    /// The internal integration token the fake accepts (`None`: only tokens added later).
    pub token: Option<String>,
    /// Enforce the rate limit.
    pub rate_limits: bool,
    /// Seed a CRM under the root page: a Deals and a Contacts database with [`deals_schema`] and
    /// [`contacts_schema`], `deals` deals and `contacts` contacts.
    pub crm: bool,
    pub deals: usize,
    pub contacts: usize,
    /// The public integration's OAuth client (`/v1/oauth/authorize`, `/v1/oauth/token`).
    pub client_id: String,
    pub client_secret: String,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            port: 0,
            token: Some("ntn_fake_notion".into()),
            rate_limits: false,
            crm: false,
            deals: 0,
            contacts: 0,
            client_id: "fake-notion-client-id".into(),
            client_secret: "fake-notion-client-secret".into(),
        }
    }
}

/// The routes the fake counts and can inject faults into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    CreateDatabase,
    GetDatabase,
    GetDataSource,
    UpdateDataSource,
    Query,
    CreatePage,
    GetPage,
    UpdatePage,
    AppendBlocks,
    ListBlocks,
    Me,
    OauthToken,
    OauthRevoke,
    /// Matches every route (faults only).
    Any,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::CreateDatabase => "create_database",
            Route::GetDatabase => "get_database",
            Route::GetDataSource => "get_data_source",
            Route::UpdateDataSource => "update_data_source",
            Route::Query => "query",
            Route::CreatePage => "create_page",
            Route::GetPage => "get_page",
            Route::UpdatePage => "update_page",
            Route::AppendBlocks => "append_blocks",
            Route::ListBlocks => "list_blocks",
            Route::Me => "me",
            Route::OauthToken => "oauth_token",
            Route::OauthRevoke => "oauth_revoke",
            Route::Any => "any",
        }
    }
}

/// What an injected fault answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// 429 `rate_limited` with `Retry-After: retry_after_secs` (default 1).
    RateLimit {
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// 500 `internal_server_error`, 502 `bad_gateway`, 503 `service_unavailable` or 504
    /// `gateway_timeout` (`status`, default 500).
    ServerError {
        #[serde(default)]
        status: Option<u16>,
    },
    /// 409 `conflict_error` (Notion's answer to a write that collided with another).
    Conflict,
    /// 401 `unauthorized` whatever the token.
    Unauthorized,
}

/// A fault for the next `count` requests to `route` (`POST /_admin/faults`).
pub type Fault = admin::Fault<Route, FaultKind>;

/// Request counters (`GET /_admin/stats`).
pub type Stats = admin::Stats;

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crm {
    pub deals_database: String,
    pub deals_data_source: String,
    pub contacts_database: String,
    pub contacts_data_source: String,
}

/// The Deals schema a seeded CRM gets (what a person builds from Notion's CRM template), given
/// the contacts data source for the relation.
pub fn deals_schema(contacts_data_source: &str) -> Value {
    json!({
        "Name": { "title": {} },
        "Stage": { "status": { "options": [
            { "name": "Lead", "color": "gray" }, { "name": "Qualified", "color": "blue" },
            { "name": "Proposal", "color": "yellow" }, { "name": "Negotiation", "color": "orange" },
            { "name": "Won", "color": "green" }, { "name": "Lost", "color": "red" },
        ] } },
        "Value": { "number": { "format": "dollar" } },
        "Close date": { "date": {} },
        "Probability": { "number": { "format": "percent" } },
        "Source": { "select": { "options": [
            { "name": "Inbound", "color": "green" }, { "name": "Outbound", "color": "blue" },
            { "name": "Referral", "color": "purple" },
        ] } },
        "Contact": { "relation": { "data_source_id": contacts_data_source, "single_property": {} } },
        "Owner": { "people": {} },
    })
}

pub fn contacts_schema() -> Value {
    json!({
        "Name": { "title": {} },
        "Email": { "email": {} },
        "Phone": { "phone_number": {} },
        "Company": { "rich_text": {} },
    })
}

#[derive(Debug)]
struct Limiter {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    tokens: Vec<String>,
    rate_limits: bool,
    limiter: Limiter,
    /// How far the workspace clock is ahead of the wall clock.
    clock_offset: chrono::Duration,
    root_page: String,
    crm: Option<Crm>,
    /// Refresh tokens of OAuth grants with the access token issued beside each (a refresh token
    /// is used once: a refresh answers a new pair).
    refresh_tokens: Vec<(String, String)>,
}

/// The workspace's state. Every admin operation is also a method here.
#[derive(Debug)]
pub struct NotionState {
    inner: Mutex<Inner>,
    pub bot_id: String,
    pub person_id: String,
    control: admin::Control<Route, FaultKind>,
    /// The workspace's id and name, as the OAuth token answer gives them.
    pub workspace_id: String,
    pub workspace_name: String,
    pub client_id: String,
    pub client_secret: String,
    /// Authorization codes issued by `/v1/oauth/authorize`.
    pub oauth: crate::oauth::CodeGrants,
}

pub(crate) enum Gate {
    Unauthorized,
    RateLimited(u64),
}

fn text(s: &str) -> Value {
    json!([{ "text": { "content": s } }])
}

impl NotionState {
    pub fn new(config: &FakeConfig) -> Self {
        let mut store = Store::default();
        let (bot_id, person_id) = (store::new_id(), store::new_id());
        store.add_user(json!({
            "object": "user", "id": bot_id, "type": "bot", "name": "Syncbridge", "avatar_url": null,
            "bot": { "owner": { "type": "workspace", "workspace": true }, "workspace_name": "Acme" },
        }));
        store.add_user(json!({
            "object": "user", "id": person_id, "type": "person", "name": "Ada Lovelace", "avatar_url": null,
            "person": { "email": "ada@acme.example" },
        }));
        let now = Utc::now();
        let root_page = store.create_plain_page(Parent::Workspace, "Acme CRM", &person_id, now);
        let inner = Inner {
            store,
            tokens: config.token.iter().cloned().collect(),
            rate_limits: config.rate_limits,
            limiter: Limiter { tokens: BURST, at: Instant::now() },
            clock_offset: chrono::Duration::zero(),
            root_page,
            crm: None,
            refresh_tokens: Vec::new(),
        };
        let state = Self {
            inner: Mutex::new(inner),
            bot_id,
            person_id,
            workspace_id: store::new_id(),
            workspace_name: "Acme".into(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            oauth: crate::oauth::CodeGrants::new(),
            control: admin::Control::default(),
        };
        if config.crm {
            state.seed_crm(config.deals, config.contacts);
        }
        state
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The workspace clock.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.lock().clock_offset
    }

    /// Moves the workspace clock forward (edits after it get later stamps).
    pub fn advance_clock(&self, by: chrono::Duration) {
        self.lock().clock_offset += by;
    }

    /// The page shared with the integration, under which databases are created.
    pub fn root_page(&self) -> String {
        self.lock().root_page.clone()
    }

    pub fn crm(&self) -> Option<Crm> {
        self.lock().crm.clone()
    }

    /// Creates the Deals and Contacts databases (as a person, from a template) with `deals` deals
    /// (each related to one contact when there are any) and `contacts` contacts.
    pub fn seed_crm(&self, deals: usize, contacts: usize) -> Crm {
        let now = self.now();
        let person = self.person_id.clone();
        let mut inner = self.lock();
        let root = inner.root_page.clone();
        let store = &mut inner.store;
        let contacts_db = store
            .create_database(
                &json!({ "parent": { "page_id": root }, "title": text("Contacts"),
                    "initial_data_source": { "properties": contacts_schema() } }),
                now,
            )
            .unwrap_or_default();
        let contacts_ds = store.databases.get(&contacts_db).map(|d| d.sources[0].clone()).unwrap_or_default();
        let deals_db = store
            .create_database(
                &json!({ "parent": { "page_id": root }, "title": text("Deals"),
                    "initial_data_source": { "properties": deals_schema(&contacts_ds) } }),
                now,
            )
            .unwrap_or_default();
        let deals_ds = store.databases.get(&deals_db).map(|d| d.sources[0].clone()).unwrap_or_default();
        let mut contact_ids = Vec::new();
        for i in 1..=contacts {
            let body = json!({ "parent": { "data_source_id": contacts_ds }, "properties": {
                "Name": { "title": text(&format!("Contact {i}")) },
                "Email": { "email": format!("contact{i}@example.com") },
                "Company": { "rich_text": text(&format!("Company {}", i % 7)) },
            } });
            if let Ok(id) = store.create_page(&body, &person, now) {
                contact_ids.push(id);
            }
        }
        const STAGES: &[&str] = &["Lead", "Qualified", "Proposal", "Negotiation", "Won", "Lost"];
        for i in 1..=deals {
            let mut props = json!({
                "Name": { "title": text(&format!("Deal {i}")) },
                "Stage": { "status": { "name": STAGES[i % STAGES.len()] } },
                "Value": { "number": 1000 * i },
                "Probability": { "number": (i % 10) as f64 / 10.0 },
                "Source": { "select": { "name": if i % 2 == 0 { "Inbound" } else { "Referral" } } },
                "Close date": { "date": { "start": "2027-03-31" } },
            });
            if !contact_ids.is_empty() {
                props["Contact"] = json!({ "relation": [{ "id": contact_ids[i % contact_ids.len()] }] });
            }
            let body = json!({ "parent": { "data_source_id": deals_ds }, "properties": props });
            let _ = store.create_page(&body, &person, now);
        }
        let crm = Crm {
            deals_database: deals_db,
            deals_data_source: deals_ds,
            contacts_database: contacts_db,
            contacts_data_source: contacts_ds,
        };
        inner.crm = Some(crm.clone());
        crm
    }

    /// The page as `GET /v1/pages/{id}` renders it.
    pub fn page(&self, id: &str) -> Option<Value> {
        self.lock().store.render_page(id).ok()
    }

    /// Ids of the pages of a data source (trashed ones too).
    pub fn page_ids(&self, data_source: &str) -> Vec<String> {
        let inner = self.lock();
        let mut pages: Vec<_> = inner
            .store
            .pages
            .values()
            .filter(|p| matches!(&p.parent, Parent::DataSource { data_source: d, .. } if d == data_source))
            .map(|p| p.id.clone())
            .collect();
        pages.sort();
        pages
    }

    /// The blocks under a page, rendered, in order.
    pub fn blocks(&self, parent: &str) -> Vec<Value> {
        let mut inner = self.lock();
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        while let Ok(page) = inner.store.children(parent, cursor.as_deref(), None) {
            all.extend(page.results);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        all.iter().filter_map(|id| inner.store.render_block(id)).collect()
    }

    /// Edits a page's properties (request format) as the workspace's person would.
    pub fn edit_page(&self, id: &str, properties: Value) -> Result<Value, StoreError> {
        let now = self.now();
        let mut inner = self.lock();
        inner.store.update_page(id, &json!({ "properties": properties }), &self.person_id, now)?;
        inner.store.render_page(id)
    }

    /// Creates a page in a data source as the person would.
    pub fn create_page(&self, data_source: &str, properties: Value) -> Result<Value, StoreError> {
        let now = self.now();
        let mut inner = self.lock();
        let body = json!({ "parent": { "data_source_id": data_source }, "properties": properties });
        let id = inner.store.create_page(&body, &self.person_id, now)?;
        inner.store.render_page(&id)
    }

    /// Moves a page to the trash (or back) as the person would.
    pub fn trash_page(&self, id: &str, in_trash: bool) -> Result<Value, StoreError> {
        let now = self.now();
        let mut inner = self.lock();
        inner.store.update_page(id, &json!({ "in_trash": in_trash }), &self.person_id, now)?;
        inner.store.render_page(id)
    }

    pub fn set_rate_limits(&self, enabled: bool) {
        let mut inner = self.lock();
        inner.rate_limits = enabled;
        inner.limiter = Limiter { tokens: BURST, at: Instant::now() };
    }

    pub fn add_token(&self, token: &str) {
        self.lock().tokens.push(token.to_owned());
    }

    admin::control_methods!();

    /// A new OAuth grant of this workspace to the integration: an access token the API accepts
    /// and a refresh token, in the token endpoint's answer
    /// (<https://developers.notion.com/reference/create-a-token>).
    pub fn grant(&self) -> Value {
        let (access, refresh) =
            (format!("ntn_oauth_{}", store::new_id()), format!("nrt_{}", store::new_id()));
        let mut inner = self.lock();
        inner.tokens.push(access.clone());
        inner.refresh_tokens.push((refresh.clone(), access.clone()));
        let person = inner.store.users.get(&self.person_id).cloned().unwrap_or(Value::Null);
        drop(inner);
        json!({
            "access_token": access, "token_type": "bearer", "refresh_token": refresh,
            "bot_id": self.bot_id, "workspace_id": self.workspace_id,
            "workspace_name": self.workspace_name, "workspace_icon": null,
            "owner": { "type": "user", "user": person },
            "duplicated_template_id": null, "request_id": store::new_id(),
        })
    }

    /// The refresh-token grant: a known refresh token is spent and a new grant answered
    /// (<https://developers.notion.com/reference/refresh-a-token>); `None` for any other.
    pub fn refresh_grant(&self, refresh_token: &str) -> Option<Value> {
        {
            let mut inner = self.lock();
            let at = inner.refresh_tokens.iter().position(|(t, _)| t == refresh_token)?;
            inner.refresh_tokens.remove(at);
        }
        Some(self.grant())
    }

    /// Revokes an access token and the grant's refresh token
    /// (<https://developers.notion.com/reference/revoke-token>); an unknown token changes nothing.
    pub fn revoke(&self, token: &str) {
        let mut inner = self.lock();
        inner.tokens.retain(|t| t != token);
        inner.refresh_tokens.retain(|(_, access)| access != token);
    }

    /// Makes every access token the fake has issued invalid (401 `unauthorized`), as when the
    /// tokens expire; refresh tokens keep working.
    pub fn expire_access_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// Counts the request and takes the first pending fault for `route`.
    fn count_and_take_fault(&self, route: Route) -> Option<FaultKind> {
        admin::Admin::count_and_take(self, &route, route.as_str())
    }

    /// Checks the bearer token, then spends one request of the rate limit.
    fn admit(&self, bearer: Option<&str>) -> Result<(), Gate> {
        let mut inner = self.lock();
        if !bearer.is_some_and(|b| inner.tokens.iter().any(|t| t == b)) {
            return Err(Gate::Unauthorized);
        }
        if inner.rate_limits {
            let now = Instant::now();
            let l = &mut inner.limiter;
            l.tokens = (l.tokens + now.duration_since(l.at).as_secs_f64() * PER_SECOND).min(BURST);
            l.at = now;
            if l.tokens < 1.0 {
                let wait = ((1.0 - l.tokens) / PER_SECOND).ceil().max(1.0) as u64;
                self.control.counters.rate_limited();
                return Err(Gate::RateLimited(wait));
            }
            l.tokens -= 1.0;
        }
        Ok(())
    }

    fn with_store<T>(&self, f: impl FnOnce(&mut Store, DateTime<Utc>) -> T) -> T {
        let now = self.now();
        f(&mut self.lock().store, now)
    }
}

impl admin::Admin for NotionState {
    type Route = Route;
    type Kind = FaultKind;
    type Extra = admin::NoExtra;

    fn control(&self) -> &admin::Control<Route, FaultKind, admin::NoExtra> {
        &self.control
    }
    fn bad_body(error: &serde_json::Error) -> axum::response::Response {
        (axum::http::StatusCode::BAD_REQUEST, error.to_string()).into_response()
    }
}

/// Starts fakes.
pub struct NotionFake;

impl NotionFake {
    /// Binds 127.0.0.1 on `config.port` (0: OS-picked) and serves until the [`RunningFake`] drops.
    pub async fn start(config: FakeConfig) -> anyhow::Result<RunningFake> {
        let bound = crate::serving::bind(config.port).await?;
        let base_url = bound.base_url.clone();
        let state = Arc::new(NotionState::new(&config));
        let app = server::router(state.clone());
        let server = bound.serve("Notion", app);
        Ok(RunningFake::new(base_url, state, server))
    }
}

/// A running fake; the server stops when this is dropped.
pub type RunningFake = crate::serving::Running<NotionState>;

#[cfg(test)]
mod tests;
