//! Notion adapter (API version 2025-09-03): Notion databases as a CRM. A connection names a
//! deals database and optionally a contacts database (`settings.notion`); each resolves to its
//! data source (`GET /v1/databases/{id}`), whose pages are the records.
//!
//! - **Pulls** query the data source sorted by `last_edited_time`, a full listing first, then
//!   incrementally from the cursor with a lookback (see [`pull`]): Notion's stamps have minute
//!   precision, so each traversal re-reads from one minute before the minute it started in, and
//!   skips pages it already delivered whose stamp lies in a minute that had closed. Trashed pages
//!   (`in_trash`) are queried the same way and come back as deletes.
//! - **Properties** are mapped by type through the connection's field mapping over defaults
//!   ([`properties`]).
//! - **Writes** ([`write`]): updates check `last_edited_time` against the precondition first,
//!   several updates of one page go out as one `PATCH`; creates are idempotent through a
//!   `Syncbridge key` rich-text property the adapter adds to the data source (Notion has no unique
//!   properties: the key is found again with a query before any create); activities (canonical
//!   notes) are paragraphs appended to the deal's page, tagged with the key's tag, and found again
//!   by listing the page's blocks.
//! - **Limits**: one pacer per connection at Notion's average of three requests a second
//!   (<https://developers.notion.com/reference/request-limits>), through the shared send path,
//!   which also waits out a 429's `Retry-After`.
//!
//! Internal integration tokens do not expire. A public integration's OAuth grant carries a refresh
//! token: after a 401 the worker refreshes it once through `POST /v1/oauth/token`
//! (<https://developers.notion.com/reference/refresh-a-token>), which answers a new access token
//! and a new refresh token.

mod properties;
mod pull;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::provider_http::{Call, Dialect, ProviderHttp, Reply, RetryPolicy};
use crate::config::OAuthApp;
use crate::domain::connection::notion_id;
use crate::domain::mapping::FieldMap;
use crate::domain::{Connection, Credentials, ObjectType, Provider, SyncCursor};
use crate::ports::{
    ErrorClass, ProviderClient, ProviderError, ProviderFactory, ProviderWrite, PulledPage, RequestStats,
    WriteAck,
};
pub use properties::{CONTACT_FIELDS, DEAL_FIELDS};

/// Notion's API origin (a connection's default `base_url`).
pub const DEFAULT_API_BASE_URL: &str = "https://api.notion.com";
/// The API version every request names (`Notion-Version`).
pub const API_VERSION: &str = "2025-09-03";
/// The rich-text property that carries a create's idempotency key.
pub const KEY_PROPERTY: &str = "Syncbridge key";

/// How a client paces and retries.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Requests a second on average (Notion: three per integration).
    pub per_second: f64,
    /// Requests that may go at once before the average applies.
    pub burst: f64,
    /// A wait longer than this (a 429's `Retry-After`, the pacer) is returned as `RateLimited`.
    pub max_inline_wait: Duration,
    pub max_retries: u32,
    pub request_timeout: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            per_second: 3.0,
            burst: 3.0,
            max_inline_wait: Duration::from_secs(15),
            max_retries: 4,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl Pacing {
    pub(crate) fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            request_timeout: self.request_timeout,
            max_retries: self.max_retries,
            max_inline_wait: self.max_inline_wait,
            ..RetryPolicy::default()
        }
    }
}

/// A token bucket: `burst` requests at once, refilled at `per_second`. A request that finds it
/// empty reserves its turn (the bucket goes below zero) and waits for it.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    pub(crate) fn take(&mut self, now: Instant, pacing: &Pacing) -> Duration {
        let tokens = match self.at {
            None => pacing.burst,
            Some(at) => {
                (self.tokens + now.duration_since(at).as_secs_f64() * pacing.per_second).min(pacing.burst)
            }
        };
        self.at = Some(now);
        self.tokens = tokens - 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / pacing.per_second)
        }
    }
}

/// One pacer [`Bucket`] per connection, shared by the clients a factory builds for it (the
/// limit is the account's, not one client's).
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectionBuckets(Arc<Mutex<HashMap<String, Arc<Mutex<Bucket>>>>>);

impl ConnectionBuckets {
    /// The bucket of `connection`, made on first use.
    pub(crate) fn of(&self, connection: &Connection) -> Arc<Mutex<Bucket>> {
        let key = format!("{}/{}", connection.tenant_id, connection.connection_id);
        let mut buckets = self.0.lock().unwrap_or_else(|p| p.into_inner());
        buckets.entry(key).or_default().clone()
    }
}

/// What is Notion's own: its error body (`{"object": "error", "code", "message"}`,
/// <https://developers.notion.com/reference/status-codes>), its pace, and that a 409
/// `conflict_error` ("try again") is transient.
#[derive(Debug)]
pub struct NotionDialect {
    bucket: Arc<Mutex<Bucket>>,
    pacing: Pacing,
}

impl Dialect for NotionDialect {
    fn name(&self) -> &'static str {
        "Notion"
    }

    fn metric_label(&self) -> &'static str {
        Provider::Notion.as_str()
    }

    fn error_detail(&self, reply: &Reply) -> (Option<String>, Option<String>) {
        let body = reply.json_value();
        let field =
            |name: &str| body.as_ref().and_then(|b| b.get(name)).and_then(Value::as_str).map(str::to_owned);
        (field("code"), field("message"))
    }

    fn classify(&self, status: StatusCode, code: Option<&str>) -> Option<ErrorClass> {
        match (status.as_u16(), code) {
            (409, _) | (_, Some("conflict_error")) => Some(ErrorClass::Transient),
            (_, Some("rate_limited")) => Some(ErrorClass::RateLimited),
            (_, Some("unauthorized")) => Some(ErrorClass::Unauthorized),
            _ => None,
        }
    }

    fn pace(&self, _route: &'static str) -> Result<Duration, ProviderError> {
        let mut bucket = self.bucket.lock().map_err(|_| ProviderError::transient("Notion pacer poisoned"))?;
        Ok(bucket.take(Instant::now(), &self.pacing))
    }

    fn observe(&self, _route: &'static str, reply: &Reply) {
        // After a 429 the average was passed: start the next second empty.
        if reply.status == StatusCode::TOO_MANY_REQUESTS
            && let Ok(mut bucket) = self.bucket.lock()
        {
            bucket.tokens = bucket.tokens.min(0.0);
        }
    }
}

/// Builds [`NotionClient`]s; holds the shared HTTP client and one pacer per connection.
#[derive(Clone)]
pub struct NotionFactory {
    http: reqwest::Client,
    app: Option<OAuthApp>,
    pacing: Pacing,
    buckets: ConnectionBuckets,
}

impl NotionFactory {
    pub fn new(http: reqwest::Client) -> Self {
        Self { http, app: None, pacing: Pacing::default(), buckets: ConnectionBuckets::default() }
    }

    /// The public integration whose client credentials refresh OAuth grants.
    pub fn with_app(mut self, app: Option<OAuthApp>) -> Self {
        self.app = app;
        self
    }

    pub fn with_pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }

    /// The concrete client.
    pub fn notion_client(&self, connection: &Connection) -> Result<NotionClient, ProviderError> {
        if connection.provider != Provider::Notion {
            return Err(ProviderError::permanent(format!(
                "the Notion adapter cannot serve a {} connection",
                connection.provider
            )));
        }
        let bucket = self.buckets.of(connection);
        let mut client = NotionClient::new(self.http.clone(), connection, bucket, self.pacing)?;
        client.app = self.app.clone();
        Ok(client)
    }
}

impl ProviderFactory for NotionFactory {
    fn client(&self, connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError> {
        Ok(Box::new(self.notion_client(connection)?))
    }
}

/// A data source's id and, once read, its schema (property name -> type).
#[derive(Debug, Clone, Default)]
struct Source {
    id: String,
    schema: Option<BTreeMap<String, String>>,
}

/// One Notion workspace's CRM databases seen through the API.
pub struct NotionClient {
    http: reqwest::Client,
    net: ProviderHttp<NotionDialect>,
    /// `{base_url}/v1`.
    api: String,
    databases: BTreeMap<ObjectType, String>,
    fields: BTreeMap<ObjectType, FieldMap>,
    sources: Mutex<HashMap<ObjectType, Source>>,
    /// What this client learned (data source ids, create proofs), for `Connection::provider_setup`.
    setup: Mutex<BTreeMap<String, String>>,
    /// The public integration (OAuth connections' refresh).
    app: Option<OAuthApp>,
}

fn setup_key(object: ObjectType, what: &str) -> String {
    format!("notion.{object}.{what}")
}

impl NotionClient {
    fn new(
        http: reqwest::Client,
        connection: &Connection,
        bucket: Arc<Mutex<Bucket>>,
        pacing: Pacing,
    ) -> Result<Self, ProviderError> {
        let parsed = url::Url::parse(&connection.base_url)
            .map_err(|e| ProviderError::permanent(format!("invalid Notion base URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ProviderError::permanent("the Notion base URL must be http(s)"));
        }
        let Some(dbs) = &connection.settings.notion else {
            return Err(ProviderError::permanent(
                "the connection names no Notion deals database (settings.notion.deals_database_id)",
            ));
        };
        let mut databases = BTreeMap::new();
        for (object, raw) in [
            (ObjectType::Deals, Some(&dbs.deals_database_id)),
            (ObjectType::Contacts, dbs.contacts_database_id.as_ref()),
        ] {
            if let Some(raw) = raw {
                let id = notion_id(raw).ok_or_else(|| {
                    ProviderError::permanent(format!("`{raw}` is not a Notion database id"))
                })?;
                databases.insert(object, id);
            }
        }
        let mapping = &connection.settings.field_mapping;
        let fields = [(ObjectType::Deals, DEAL_FIELDS), (ObjectType::Contacts, CONTACT_FIELDS)]
            .into_iter()
            .map(|(o, d)| (o, FieldMap::new(d).with_overrides(mapping.get(&o))))
            .collect();
        let setup: BTreeMap<String, String> = connection
            .provider_setup
            .iter()
            .filter(|(k, _)| k.starts_with("notion."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let sources = databases
            .keys()
            .filter_map(|o| {
                let id = setup.get(&setup_key(*o, "data_source"))?;
                Some((*o, Source { id: id.clone(), schema: None }))
            })
            .collect();
        let base = connection.base_url.trim_end_matches('/');
        let api = if base.ends_with("/v1") { base.to_owned() } else { format!("{base}/v1") };
        Ok(Self {
            net: ProviderHttp::new(http.clone(), NotionDialect { bucket, pacing }, pacing.policy()),
            http,
            api,
            databases,
            fields,
            sources: Mutex::new(sources),
            setup: Mutex::new(setup),
            app: None,
        })
    }

    /// A request with Notion's headers.
    fn request(&self, method: http::Method, path: &str, token: &SecretString) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(token.expose_secret())
            .header("Notion-Version", API_VERSION)
    }

    async fn send(
        &self,
        call: Call,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply, ProviderError> {
        self.net.send(call, make).await
    }

    fn field_map(&self, object: ObjectType) -> Result<&FieldMap, ProviderError> {
        self.fields
            .get(&object)
            .ok_or_else(|| ProviderError::permanent(format!("Notion does not sync {object}")))
    }

    fn remember(&self, key: String, value: String) {
        if let Ok(mut setup) = self.setup.lock() {
            setup.insert(key, value);
        }
    }

    /// The data source behind `object`'s database: from what earlier jobs learned, else
    /// `GET /v1/databases/{id}` (its first data source; a CRM database has one).
    async fn data_source(&self, token: &SecretString, object: ObjectType) -> Result<String, ProviderError> {
        if let Some(s) = self.sources.lock().ok().and_then(|s| s.get(&object).cloned()) {
            return Ok(s.id);
        }
        let Some(db) = self.databases.get(&object) else {
            return Err(ProviderError::permanent(format!(
                "the connection names no Notion {object} database"
            )));
        };
        let path = format!("/databases/{db}");
        let reply = self
            .send(Call::read("databases.retrieve"), || self.request(http::Method::GET, &path, token))
            .await?;
        let body: Value = reply.check()?.json()?;
        let id = body
            .pointer("/data_sources/0/id")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ProviderError::permanent(format!("the Notion {object} database has no data source"))
            })?
            .to_owned();
        if let Ok(mut sources) = self.sources.lock() {
            sources.insert(object, Source { id: id.clone(), schema: None });
        }
        self.remember(setup_key(object, "data_source"), id.clone());
        Ok(id)
    }

    /// The data source's schema (property name -> type), read once per client.
    async fn schema(
        &self,
        token: &SecretString,
        object: ObjectType,
    ) -> Result<(String, BTreeMap<String, String>), ProviderError> {
        let id = self.data_source(token, object).await?;
        if let Some(schema) =
            self.sources.lock().ok().and_then(|s| s.get(&object).and_then(|s| s.schema.clone()))
        {
            return Ok((id, schema));
        }
        let path = format!("/data_sources/{id}");
        let reply = self
            .send(Call::read("data_sources.retrieve"), || self.request(http::Method::GET, &path, token))
            .await?;
        let body: Value = reply.check()?.json()?;
        let schema = parse_schema(&body);
        if let Ok(mut sources) = self.sources.lock() {
            sources.insert(object, Source { id: id.clone(), schema: Some(schema.clone()) });
        }
        Ok((id, schema))
    }

    fn forget_schema(&self, object: ObjectType) {
        if let Ok(mut sources) = self.sources.lock()
            && let Some(s) = sources.get_mut(&object)
        {
            s.schema = None;
        }
    }
}

/// Property name -> type, from a data source object.
fn parse_schema(body: &Value) -> BTreeMap<String, String> {
    body.get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, p)| Some((name.clone(), p.get("type")?.as_str()?.to_owned())))
        .collect()
}

#[async_trait]
impl ProviderClient for NotionClient {
    /// Deals and contacts (the pages of their data sources); see [`pull`].
    async fn pull_page(
        &self,
        token: &SecretString,
        object: ObjectType,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        self.pull(token, object, cursor).await
    }

    /// See [`write`]: updates (one `PATCH` per page), idempotent creates, activities as blocks.
    async fn write(
        &self,
        token: &SecretString,
        writes: &[ProviderWrite],
    ) -> Result<Vec<Result<WriteAck, ProviderError>>, ProviderError> {
        self.write_all(token, writes).await
    }

    fn provider_setup(&self) -> BTreeMap<String, String> {
        self.setup.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The refresh-token grant at `POST /v1/oauth/token` with the integration's Basic client
    /// credentials (<https://developers.notion.com/reference/refresh-a-token>). Never repeated
    /// in place: the answer rotates the refresh token. A refresh token Notion refuses
    /// (`invalid_grant`) is `Unauthorized` (the connection must be connected again).
    async fn refresh(&self, refresh_token: &SecretString) -> Result<Credentials, ProviderError> {
        let Some(app) = &self.app else {
            return Err(ProviderError::permanent(
                "no Notion public integration (NOTION_CLIENT_ID) is configured",
            ));
        };
        let url = format!("{}/oauth/token", self.api);
        let body = serde_json::json!({ "grant_type": "refresh_token", "refresh_token": refresh_token.expose_secret() });
        let reply = self
            .send(Call::write("oauth.refresh"), || {
                self.http
                    .post(&url)
                    .basic_auth(&app.client_id, Some(app.client_secret.expose_secret()))
                    .header("Notion-Version", API_VERSION)
                    .json(&body)
            })
            .await?;
        if let Some(refused) = reply.refresh_refusal("Notion") {
            return Err(refused);
        }
        let answer: Value = reply.check()?.json()?;
        let text = |name: &str| answer.get(name).and_then(Value::as_str).map(str::to_owned);
        let access = text("access_token")
            .ok_or_else(|| ProviderError::permanent("Notion's refresh answer has no access_token"))?;
        let expires_at = answer
            .get("expires_in")
            .and_then(Value::as_i64)
            .filter(|s| *s > 0)
            .map(|s| chrono::Utc::now() + chrono::Duration::seconds(s));
        Ok(Credentials::refreshed(access, text("refresh_token"), refresh_token, expires_at))
    }

    fn stats(&self) -> RequestStats {
        self.net.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_allows_a_burst_then_three_a_second() {
        let pacing = Pacing::default();
        let mut bucket = Bucket::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(bucket.take(t0, &pacing), Duration::ZERO);
        }
        let wait = bucket.take(t0, &pacing);
        assert!((wait.as_secs_f64() - 1.0 / 3.0).abs() < 1e-6, "{wait:?}");
        let wait = bucket.take(t0, &pacing);
        assert!((wait.as_secs_f64() - 2.0 / 3.0).abs() < 1e-6, "queued behind the last: {wait:?}");
        assert_eq!(bucket.take(t0 + Duration::from_secs(10), &pacing), Duration::ZERO, "refilled");
    }

    #[test]
    fn notions_codes_classify_conflicts_as_transient_and_rate_limits_as_such() {
        let d = NotionDialect { bucket: Arc::default(), pacing: Pacing::default() };
        assert_eq!(d.classify(StatusCode::CONFLICT, Some("conflict_error")), Some(ErrorClass::Transient));
        assert_eq!(
            d.classify(StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
            Some(ErrorClass::RateLimited)
        );
        assert_eq!(
            d.classify(StatusCode::BAD_REQUEST, Some("validation_error")),
            None,
            "the table: permanent"
        );
        assert_eq!(d.classify(StatusCode::NOT_FOUND, Some("object_not_found")), None, "the table: not found");
    }
}
