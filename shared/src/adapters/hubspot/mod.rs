//! HubSpot CRM v3 adapter: pulls contacts, companies, deals, notes and activities (calls, emails,
//! meetings and tasks under the one canonical type `activities`: see [`objects`]; a full listing first, then
//! incremental search on the modified stamp with a lookback window, then deletes from the archived
//! listing), writes them in batches of 100, paces itself on HubSpot's rate limits, and refreshes
//! OAuth tokens through `/oauth/v1/token`. Property names come from the connection's field maps.
//!
//! The cursor is this adapter's own JSON, one per object type (`activities` holds one per HubSpot
//! activity type and pulls them in turn, [`ActivitiesCursor`]). An incremental pull first asks for
//! one page of records modified since the cursor (the probe, sorted by the modified stamp). When
//! more match, it returns none of them and pages the window `since ..= upper` (`upper`: HubSpot's
//! clock at the probe) by `hs_object_id` instead, then probes after `upper`: each changed record is
//! read once whatever the stamps (12,000 sharing one millisecond: 62 searches), and no search pages
//! past 200 results, so the search API's 10,000-result cap does not apply.
//!
//! Associations: the full listing asks for them with `associations=` (no extra request); a search
//! page cannot, so deals and notes read them with one v4 batch read per associated type per page.
//!
//! Deletes: HubSpot's archived listing (`archived=true`) cannot be filtered or sorted by time, so
//! seeing a delete means paging every archived record of the type (HubSpot keeps them 90 days):
//! `ceil(archived / 100)` requests. An incremental pull that has caught up does this scan only when
//! the last one is at least [`Pacing::archived_check_interval`] old (15 minutes by default, the
//! default sync interval), and emits the records archived since the last scan (less the lookback)
//! as deleted. So a delete shows up within one interval, at a bounded cost per interval. A client
//! asked to [`ProviderClient::check_deletes_now`] (a deletion webhook, a manual sync) scans each
//! type at its next caught-up pull whatever the interval.

mod objects;
mod write;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::adapters::provider_http::{Call, Dialect, ProviderHttp, Reply, RetryPolicy};
use crate::config::OAuthApp;
use crate::domain::record::Fields;
use crate::domain::{
    Connection, ConnectionSettings, Credentials, ExternalId, ObjectType, Provider, RemoteRecord, SyncCursor,
};
use crate::ports::{
    ProviderClient, ProviderError, ProviderFactory, ProviderWrite, PulledPage, RequestStats, WriteAck,
};
use objects::{Mappings, ObjectSpec, parse_instant};

/// HubSpot's OAuth authorization page (configurable: `HUBSPOT_AUTHORIZE_URL`).
pub const DEFAULT_AUTHORIZE_URL: &str = "https://app.hubspot.com/oauth/authorize";
/// HubSpot's API root (configurable: `HUBSPOT_API_BASE_URL`): token exchange, token info,
/// revocation, and a connection's `base_url`.
pub const DEFAULT_API_BASE_URL: &str = "https://api.hubapi.com";
/// The OAuth scopes asked for at authorization (configurable: `HUBSPOT_OAUTH_SCOPES`).
pub const DEFAULT_SCOPES: &str = "oauth crm.objects.contacts.read crm.objects.contacts.write \
crm.objects.companies.read crm.objects.companies.write crm.objects.deals.read crm.objects.deals.write \
crm.schemas.contacts.write crm.schemas.companies.write crm.schemas.deals.write";

const LIST_PAGE: usize = 100;
/// Search results per page (HubSpot's most). Searches never page with `after`, so HubSpot's
/// 400 for `after + limit` past 10,000 results cannot happen.
const SEARCH_PAGE: usize = 200;
const CURSOR_VERSION: u8 = 1;

/// How a client paces and retries. The defaults match HubSpot's documented limits.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// How far back each incremental window reaches before the last point known complete, for
    /// records HubSpot indexes late.
    pub lookback: Duration,
    /// Search requests per second (HubSpot: 5 per token).
    pub search_per_second: u32,
    /// A wait longer than this (from a 429 or the pacer) is returned as `RateLimited`.
    pub max_inline_wait: Duration,
    /// Retries after a 429 before giving up with `RateLimited`.
    pub max_retries: u32,
    pub request_timeout: Duration,
    /// How long an incremental pull goes without scanning the archived listing for deletes.
    pub archived_check_interval: Duration,
}

impl Pacing {
    /// As the shared send path's policy.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            request_timeout: self.request_timeout,
            max_retries: self.max_retries,
            max_inline_wait: self.max_inline_wait,
            ..RetryPolicy::default()
        }
    }
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            lookback: Duration::from_secs(300),
            search_per_second: 5,
            max_inline_wait: Duration::from_secs(15),
            max_retries: 3,
            request_timeout: Duration::from_secs(30),
            archived_check_interval: Duration::from_secs(15 * 60),
        }
    }
}

/// Builds [`HubspotClient`]s; holds the shared HTTP client and the OAuth app.
#[derive(Clone)]
pub struct HubspotFactory {
    http: reqwest::Client,
    app: Option<OAuthApp>,
    pacing: Pacing,
    /// One pacer per connection, kept across jobs (a warm Lambda's next job for the connection
    /// remembers the searches of the last one, which HubSpot still counts for a second).
    limiters: Arc<std::sync::Mutex<HashMap<String, Arc<std::sync::Mutex<Limiter>>>>>,
}

impl HubspotFactory {
    /// `app` is needed only to refresh OAuth tokens (private-app tokens never expire).
    pub fn new(http: reqwest::Client, app: Option<OAuthApp>) -> Self {
        Self { http, app, pacing: Pacing::default(), limiters: Arc::default() }
    }

    /// Replaces the pacing (for example a faster search pace against a fake without limits).
    pub fn with_pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }
}

impl ProviderFactory for HubspotFactory {
    /// A client for the connection's `base_url`, with its own counters and the connection's pacer.
    fn client(&self, connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError> {
        if connection.provider != Provider::Hubspot {
            return Err(ProviderError::permanent(format!(
                "the HubSpot adapter cannot serve a {} connection",
                connection.provider
            )));
        }
        let client =
            HubspotClient::new(self.http.clone(), &connection.base_url, self.app.clone(), self.pacing)?;
        let key = format!("{}/{}", connection.tenant_id, connection.connection_id);
        let limiter = {
            let mut limiters = self.limiters.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            limiters.entry(key).or_default().clone()
        };
        let mut client = client.with_settings(&connection.settings);
        client.net.dialect.limiter = limiter;
        // What earlier jobs learned of the portal (the key property exists, or the app may not
        // create one) is not asked again.
        let known: HashMap<ObjectType, write::CreateProof> = [
            ObjectType::Contacts,
            ObjectType::Companies,
            ObjectType::Deals,
            ObjectType::Notes,
            ObjectType::Activities,
        ]
        .into_iter()
        .filter_map(|o| {
            let proof = connection.provider_setup.get(&write::setup_key(o))?;
            write::CreateProof::parse(proof).map(|p| (o, p))
        })
        .collect();
        client.proofs = std::sync::Mutex::new(known);
        Ok(Box::new(client))
    }
}

/// One HubSpot account seen through its API. Use it from one task at a time (one connection's
/// job): its pacer assumes it is the token's only user, corrected by HubSpot's headers.
pub struct HubspotClient {
    http: reqwest::Client,
    base: String,
    app: Option<OAuthApp>,
    pacing: Pacing,
    mappings: Mappings,
    net: ProviderHttp<HubspotDialect>,
    /// How creates prove themselves, per object type (learned at the first create of the type).
    proofs: std::sync::Mutex<HashMap<ObjectType, write::CreateProof>>,
    /// The caller asked for deletes now ([`ProviderClient::check_deletes_now`]).
    deletes_asked: AtomicBool,
    /// HubSpot types (paths) whose archived scan this client has started (or restarted) since it
    /// was asked.
    deletes_checked: std::sync::Mutex<BTreeSet<&'static str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Search,
    Other,
}

impl Kind {
    fn of(route: &str) -> Kind {
        if route == "search" { Kind::Search } else { Kind::Other }
    }
}

/// What is HubSpot's own: its error body (`category`, `message`), its rate limits (paced by the
/// `X-HubSpot-RateLimit-*` headers, 190 per 10 s and search 5 per second for a private app:
/// <https://developers.hubspot.com/docs/api/usage-details>) and how long a 429 asks to wait.
#[derive(Debug)]
pub struct HubspotDialect {
    limiter: Arc<std::sync::Mutex<Limiter>>,
    search_per_second: u32,
}

impl Dialect for HubspotDialect {
    fn name(&self) -> &'static str {
        "HubSpot"
    }

    fn metric_label(&self) -> &'static str {
        crate::domain::Provider::Hubspot.as_str()
    }

    fn error_detail(&self, reply: &Reply) -> (Option<String>, Option<String>) {
        let parsed = reply.json_value();
        let field =
            |name: &str| parsed.as_ref().and_then(|v| v.get(name)).and_then(Value::as_str).map(str::to_owned);
        (field("category").or_else(|| field("errorType")).or_else(|| field("status")), field("message"))
    }

    fn rate_limit_wait(&self, reply: &Reply) -> Option<Duration> {
        Some(retry_wait(&reply.headers, &reply.body))
    }

    fn pace(&self, route: &'static str) -> Result<Duration, ProviderError> {
        let mut limiter =
            self.limiter.lock().map_err(|_| ProviderError::transient("HubSpot pacer poisoned"))?;
        Ok(limiter.wait(Kind::of(route), Instant::now(), self.search_per_second))
    }

    fn observe(&self, route: &'static str, reply: &Reply) {
        if let Ok(mut limiter) = self.limiter.lock() {
            limiter.record(Kind::of(route), Instant::now(), &reply.headers);
        }
    }
}

/// Response instants of recent requests, and what HubSpot's headers said.
#[derive(Debug, Default)]
struct Limiter {
    general: VecDeque<Instant>,
    search: VecDeque<Instant>,
    max: Option<u32>,
    interval: Option<Duration>,
    remaining: Option<u32>,
}

fn header_num<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

impl Limiter {
    /// How long to wait before the next request so that no limit is passed.
    fn wait(&mut self, kind: Kind, now: Instant, search_per_second: u32) -> Duration {
        let interval = self.interval.unwrap_or(Duration::from_secs(10));
        while self.general.front().is_some_and(|t| now.duration_since(*t) >= interval) {
            self.general.pop_front();
        }
        while self.search.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
            self.search.pop_front();
        }
        let until = |t: Instant, span: Duration| (t + span).saturating_duration_since(now);
        let mut wait = Duration::ZERO;
        if let Some(max) = self.max.map(|m| m as usize).filter(|m| *m > 0)
            && self.general.len() >= max
        {
            wait = wait.max(until(self.general[self.general.len() - max], interval));
        }
        if self.remaining == Some(0)
            && let Some(oldest) = self.general.front()
        {
            wait = wait.max(until(*oldest, interval));
        }
        let per_second = search_per_second.max(1) as usize;
        if kind == Kind::Search && self.search.len() >= per_second {
            let t = self.search[self.search.len() - per_second];
            wait = wait.max(until(t, Duration::from_millis(1_010)));
        }
        wait
    }

    fn record(&mut self, kind: Kind, at: Instant, headers: &HeaderMap) {
        self.general.push_back(at);
        if kind == Kind::Search {
            self.search.push_back(at);
        }
        if let Some(max) = header_num(headers, "x-hubspot-ratelimit-max") {
            self.max = Some(max);
        }
        if let Some(ms) = header_num::<u64>(headers, "x-hubspot-ratelimit-interval-milliseconds") {
            self.interval = Some(Duration::from_millis(ms));
        }
        self.remaining = header_num(headers, "x-hubspot-ratelimit-remaining");
    }
}

/// How long a 429 asks us to wait: `Retry-After` if sent, else by the policy that was hit.
fn retry_wait(headers: &HeaderMap, body: &[u8]) -> Duration {
    if let Some(secs) = header_num::<u64>(headers, "retry-after") {
        return Duration::from_secs(secs);
    }
    let policy = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("policyName").and_then(Value::as_str).map(str::to_owned));
    match policy.as_deref() {
        Some("DAILY") => Duration::from_secs(3_600),
        Some("SECONDLY") => Duration::from_millis(1_100),
        _ => header_num::<u64>(headers, "x-hubspot-ratelimit-interval-milliseconds")
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(10)),
    }
}

/// Where a pull stands (the JSON inside [`SyncCursor`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    /// Listing every contact by id.
    Full {
        after: Option<String>,
        /// The provider's clock when the listing began.
        started_at: Option<i64>,
        max_seen: Option<i64>,
    },
    /// Searching the modified stamp `>= since` (`> since` when `exclusive`): first one page sorted
    /// by the stamp (the probe); when more than a page matches, the window `since ..= upper` is
    /// paged by `hs_object_id` ([`IdRange`]), then the next probe starts after `upper`.
    Incremental {
        since: i64,
        #[serde(default)]
        exclusive: bool,
        /// The window being paged by id, after a full probe.
        #[serde(default)]
        range: Option<IdRange>,
        max_seen: Option<i64>,
        #[serde(default)]
        archive: ArchiveState,
    },
}

/// A window of modified stamps paged by id: `since <= stamp <= upper AND hs_object_id >
/// after_id`, sorted by `hs_object_id`. Each record of the window is on exactly one page whatever
/// its stamp (a run of 12,000 equal stamps as well), no query pages past 200 results (so the
/// search API's 10,000-result cap never applies), and a record modified while the window is paged
/// gets a stamp after `upper` and comes in a later window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct IdRange {
    upper: i64,
    after_id: u64,
}

/// When the archived listing was last scanned for deletes, and a scan in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ArchiveState {
    /// The provider's clock when the last complete scan began.
    checked_at: Option<i64>,
    scan: Option<ArchiveScan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ArchiveScan {
    started_at: i64,
    after: Option<String>,
}

/// The `activities` cursor: each HubSpot activity type's own cursor (a [`CursorDoc`]) by path,
/// and the type the pull is at. A pull goes through the types in turn, each until it has nothing
/// more, so an incremental pull costs one search per type.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ActivitiesCursor {
    v: u8,
    at: usize,
    parts: std::collections::BTreeMap<String, String>,
}

impl ActivitiesCursor {
    fn parse(cursor: Option<&SyncCursor>) -> Result<Self, ProviderError> {
        let Some(cursor) = cursor else {
            return Ok(Self { v: CURSOR_VERSION, ..Self::default() });
        };
        cursor.json::<Self>().filter(|doc| doc.v == CURSOR_VERSION).ok_or(ProviderError::CursorExpired)
    }

    fn to_cursor(&self) -> SyncCursor {
        SyncCursor::of_json(self)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CursorDoc {
    v: u8,
    #[serde(flatten)]
    phase: Phase,
}

impl Phase {
    fn parse(cursor: Option<&SyncCursor>) -> Result<Phase, ProviderError> {
        let Some(cursor) = cursor else {
            return Ok(Phase::Full { after: None, started_at: None, max_seen: None });
        };
        cursor
            .json::<CursorDoc>()
            .filter(|doc| doc.v == CURSOR_VERSION)
            .map(|doc| doc.phase)
            .ok_or(ProviderError::CursorExpired)
    }

    fn with_archive(self, state: ArchiveState) -> Phase {
        match self {
            Phase::Incremental { since, exclusive, range, max_seen, .. } => {
                Phase::Incremental { since, exclusive, range, max_seen, archive: state }
            }
            full => full,
        }
    }

    fn to_cursor(&self) -> SyncCursor {
        let doc = CursorDoc { v: CURSOR_VERSION, phase: self.clone() };
        SyncCursor::of_json(&doc)
    }
}

/// What one search page showed, for deciding the next step.
#[derive(Debug, Clone, Copy, Default)]
struct PageFacts {
    count: usize,
    /// The newest modified stamp on the page.
    max_ts: Option<i64>,
    /// The page's last id (the highest, on a page sorted by id).
    last_id: Option<u64>,
    /// HubSpot sent `paging.next`: more results match.
    more: bool,
    provider_now: Option<i64>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The step after an incremental page.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    phase: Phase,
    /// More pages follow right away.
    has_more: bool,
    /// The page's records are returned; a full probe's are not, since its window is read by id
    /// next and returns them then (each record once).
    keep_records: bool,
}

/// The cursor after an incremental page.
///
/// - A probe with no more results is the end: the next pull starts at the newest stamp seen, or
///   `lookback` behind the provider's clock when that stamp is more recent (records HubSpot
///   indexes late).
/// - A full probe opens the window `since ..= upper`, `upper` being the provider's clock (its
///   `Date`) or, if later or absent, the probe's newest stamp, and returns none of its records.
/// - A window page with more results moves `after_id` to its last id; the last one closes the
///   window and the next probe searches `> upper`.
fn next_incremental(current: &Phase, page: &PageFacts, lookback: Duration) -> Step {
    let Phase::Incremental { since, exclusive, range, max_seen, ref archive } = *current else {
        return Step { phase: current.clone(), has_more: false, keep_records: true };
    };
    let more = page.more && page.count > 0;
    let keep_records = range.is_some() || !more;
    let max_seen = if keep_records { page.max_ts.into_iter().chain(max_seen).max() } else { max_seen };
    let phase = |since, exclusive, range| Phase::Incremental {
        since,
        exclusive,
        range,
        max_seen,
        archive: archive.clone(),
    };
    match range {
        Some(r) => match page.last_id.filter(|_| more) {
            Some(last) => Step {
                phase: phase(since, exclusive, Some(IdRange { upper: r.upper, after_id: last })),
                has_more: true,
                keep_records,
            },
            None => Step { phase: phase(r.upper, true, None), has_more: true, keep_records },
        },
        None if more => {
            let upper = page.provider_now.into_iter().chain(page.max_ts).max().unwrap_or(since);
            let range = IdRange { upper, after_id: 0 };
            Step { phase: phase(since, exclusive, Some(range)), has_more: true, keep_records }
        }
        None => {
            let lookback = ms(lookback);
            let (since, exclusive) = match (max_seen, page.provider_now) {
                (Some(m), Some(now)) if m <= now - lookback => (m, true),
                (Some(_), Some(now)) => (now - lookback, false),
                (Some(m), None) => (m - lookback, false),
                (None, Some(now)) if now - lookback > since => (now - lookback, false),
                (None, _) => (since, exclusive),
            };
            Step { phase: phase(since, exclusive, None), has_more: false, keep_records }
        }
    }
}

#[derive(Debug, Deserialize)]
struct ObjectPage {
    #[serde(default)]
    results: Vec<HubObject>,
    paging: Option<Paging>,
}

#[derive(Debug, Deserialize)]
struct Paging {
    next: Option<NextPage>,
}

#[derive(Debug, Deserialize)]
struct NextPage {
    after: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HubObject {
    id: String,
    #[serde(default)]
    properties: HashMap<String, Value>,
    updated_at: Option<String>,
    #[serde(default)]
    archived: bool,
    archived_at: Option<String>,
    /// Echoed from a batch write's input.
    object_write_trace_id: Option<String>,
    /// HubSpot's v3 `associations` block: object type -> associated records.
    #[serde(default)]
    associations: HashMap<String, AssociationList>,
}

#[derive(Debug, Deserialize)]
struct AssociationList {
    #[serde(default)]
    results: Vec<AssociatedId>,
}

#[derive(Debug, Deserialize)]
struct AssociatedId {
    id: Value,
}

impl ObjectPage {
    fn next_after(&self) -> Option<&str> {
        self.paging.as_ref()?.next.as_ref().map(|n| n.after.as_str())
    }
}

/// An id HubSpot sent as a string or a number.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A record's modified stamp: the type's modified property, else `updatedAt`.
fn modified_at(spec: &ObjectSpec, obj: &HubObject) -> Option<DateTime<Utc>> {
    obj.properties
        .get(spec.modified)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .or(obj.updated_at.as_deref())
        .and_then(parse_instant)
}

/// Where a record's associations come from.
enum Associated<'a> {
    /// The record's own `associations` block (listing with `associations=`).
    Inline,
    /// A v4 batch read: (canonical field, record id -> associated ids).
    Read(&'a [(&'static str, HashMap<String, BTreeSet<String>>)]),
    /// Not read (archived records, whose fields are not used).
    None,
}

impl HubspotClient {
    /// Replaces the field and stage maps with the connection's (defaults plus its overrides).
    pub fn with_settings(mut self, settings: &ConnectionSettings) -> Self {
        self.mappings = Mappings::new(settings);
        self
    }

    /// Property names to request for an object type: the mapped ones and the modified stamp.
    fn properties(&self, spec: &ObjectSpec) -> Vec<String> {
        let map = self.mappings.fields(spec);
        let mut props: Vec<String> = map.properties().map(str::to_owned).collect();
        if !props.iter().any(|p| p == spec.modified) {
            props.push(spec.modified.to_owned());
        }
        props
    }

    /// Maps a HubSpot object to a remote record with canonical field names.
    fn map_object(
        &self,
        spec: &ObjectSpec,
        obj: &HubObject,
        associated: &Associated<'_>,
    ) -> Result<RemoteRecord, ProviderError> {
        let external_id = ExternalId::parse(spec.external_id(&obj.id))
            .map_err(|e| ProviderError::permanent(format!("HubSpot returned an unusable id: {e}")))?;
        let mut fields = if matches!(associated, Associated::None) {
            Fields::new()
        } else {
            let map = self.mappings.fields(spec);
            objects::to_canonical(spec, &map, &self.mappings.stages, &obj.properties)
        };
        for a in spec.pulled {
            let ids: BTreeSet<String> = match associated {
                Associated::None => continue,
                Associated::Inline => obj
                    .associations
                    .get(a.to)
                    .map(|l| l.results.iter().filter_map(|r| id_text(&r.id)).collect())
                    .unwrap_or_default(),
                Associated::Read(read) => read
                    .iter()
                    .find(|(field, _)| *field == a.field)
                    .and_then(|(_, by_id)| by_id.get(&obj.id).cloned())
                    .unwrap_or_default(),
            };
            fields.insert(a.field.to_owned(), Value::Array(ids.into_iter().map(Value::String).collect()));
        }
        let modified = modified_at(spec, obj);
        let modified = if obj.archived {
            obj.archived_at.as_deref().and_then(parse_instant).or(modified)
        } else {
            modified
        };
        Ok(RemoteRecord {
            external_id,
            object: spec.object,
            fields,
            remote_modified_at: modified,
            etag: None,
            deleted: obj.archived,
        })
    }
}

#[derive(Debug, Deserialize)]
struct AssociationsReply {
    #[serde(default)]
    results: Vec<AssociationsResult>,
}

#[derive(Debug, Deserialize)]
struct AssociationsResult {
    from: AssociatedId,
    #[serde(default)]
    to: Vec<AssociationTarget>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssociationTarget {
    to_object_id: Value,
}

impl HubspotClient {
    /// A client for the account at `base_url` (`https://api.hubapi.com` or a fake).
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        app: Option<OAuthApp>,
        pacing: Pacing,
    ) -> Result<Self, ProviderError> {
        let parsed = url::Url::parse(base_url)
            .map_err(|e| ProviderError::permanent(format!("invalid HubSpot base URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ProviderError::permanent("HubSpot base URL must be http(s)"));
        }
        Ok(Self {
            http: http.clone(),
            base: base_url.trim_end_matches('/').to_owned(),
            app,
            pacing,
            mappings: Mappings::new(&ConnectionSettings::default()),
            net: ProviderHttp::new(
                http.clone(),
                HubspotDialect { limiter: Arc::default(), search_per_second: pacing.search_per_second },
                pacing.policy(),
            ),
            proofs: std::sync::Mutex::default(),
            deletes_asked: AtomicBool::new(false),
            deletes_checked: std::sync::Mutex::default(),
        })
    }

    /// Sends a read through the shared send path (paced by HubSpot's limits; searches also by
    /// the search limit).
    async fn send(
        &self,
        kind: Kind,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply, ProviderError> {
        let route = if kind == Kind::Search { "search" } else { "crm" };
        self.net.send(Call::read(route), make).await
    }

    async fn pull_full(
        &self,
        spec: &ObjectSpec,
        token: &SecretString,
        after: Option<String>,
        started_at: Option<i64>,
        max_seen: Option<i64>,
    ) -> Result<PulledPage, ProviderError> {
        let url = format!("{}/crm/v3/objects/{}", self.base, spec.path);
        let mut query = vec![
            ("limit", LIST_PAGE.to_string()),
            ("archived", "false".to_owned()),
            ("properties", self.properties(spec).join(",")),
        ];
        if !spec.pulled.is_empty() {
            let to: Vec<&str> = spec.pulled.iter().map(|a| a.to).collect();
            query.push(("associations", to.join(",")));
        }
        if let Some(a) = &after {
            query.push(("after", a.clone()));
        }
        let reply = self
            .send(Kind::Other, || self.http.get(&url).bearer_auth(token.expose_secret()).query(&query))
            .await?
            .check()?;
        let page: ObjectPage = reply.json()?;
        let records = page
            .results
            .iter()
            .map(|o| self.map_object(spec, o, &Associated::Inline))
            .collect::<Result<Vec<_>, _>>()?;
        let max_seen = records
            .iter()
            .filter_map(|r| r.remote_modified_at.map(|t| t.timestamp_millis()))
            .chain(max_seen)
            .max();
        let started_at = started_at.or_else(|| reply.provider_now());
        let phase = match page.next_after() {
            Some(next) => Phase::Full { after: Some(next.to_owned()), started_at, max_seen },
            None => {
                let from = started_at.or(max_seen).unwrap_or(0);
                Phase::Incremental {
                    since: from - ms(self.pacing.lookback),
                    exclusive: false,
                    range: None,
                    max_seen,
                    archive: ArchiveState { checked_at: started_at, scan: None },
                }
            }
        };
        Ok(PulledPage { records, cursor: phase.to_cursor(), has_more: true, reconcile_deletes: false })
    }

    /// Reads the associations of `ids` to each of `assocs` (one v4 batch read per type).
    async fn read_associations(
        &self,
        spec: &ObjectSpec,
        token: &SecretString,
        ids: &[String],
        assocs: &[objects::Association],
    ) -> Result<Vec<(&'static str, HashMap<String, BTreeSet<String>>)>, ProviderError> {
        let mut out = Vec::new();
        if ids.is_empty() {
            return Ok(out);
        }
        for a in assocs {
            let url = format!("{}/crm/v4/associations/{}/{}/batch/read", self.base, spec.path, a.to);
            let body = json!({ "inputs": ids.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>() });
            let reply = self
                .send(Kind::Other, || self.http.post(&url).bearer_auth(token.expose_secret()).json(&body))
                .await?
                .check()?;
            let parsed: AssociationsReply = reply.json()?;
            let mut by_id: HashMap<String, BTreeSet<String>> = HashMap::new();
            for r in parsed.results {
                let Some(from) = id_text(&r.from.id) else { continue };
                by_id.entry(from).or_default().extend(r.to.iter().filter_map(|t| id_text(&t.to_object_id)));
            }
            out.push((a.field, by_id));
        }
        Ok(out)
    }

    /// True once per HubSpot type after [`ProviderClient::check_deletes_now`]: that type's archived
    /// scan is due now, whatever its interval says.
    fn take_deletes_ask(&self, spec: &ObjectSpec) -> bool {
        if !self.deletes_asked.load(Ordering::Relaxed) {
            return false;
        }
        self.deletes_checked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(spec.path)
    }

    /// One page of one HubSpot type, from its own cursor.
    async fn pull_spec(
        &self,
        spec: &ObjectSpec,
        token: &SecretString,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        match Phase::parse(cursor)? {
            Phase::Full { after, started_at, max_seen } => {
                self.pull_full(spec, token, after, started_at, max_seen).await
            }
            phase => self.pull_incremental(spec, token, phase).await,
        }
    }

    /// One page of the activities: the HubSpot type the cursor is at, from its own cursor; when
    /// that type has nothing more, the next one, and after the last the pull is done.
    async fn pull_activities(
        &self,
        token: &SecretString,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        let mut doc = ActivitiesCursor::parse(cursor)?;
        let at = doc.at.min(objects::ACTIVITIES.len() - 1);
        let spec = objects::ACTIVITIES[at];
        let own = doc.parts.get(spec.path).map(|c| SyncCursor::new(c.clone()));
        let page = self.pull_spec(spec, token, own.as_ref()).await?;
        doc.parts.insert(spec.path.to_owned(), page.cursor.as_str().to_owned());
        let (next, has_more) = match (page.has_more, at + 1 < objects::ACTIVITIES.len()) {
            (true, _) => (at, true),
            (false, true) => (at + 1, true),
            (false, false) => (0, false),
        };
        doc.at = next;
        Ok(PulledPage { records: page.records, cursor: doc.to_cursor(), has_more, reconcile_deletes: false })
    }

    async fn pull_incremental(
        &self,
        spec: &ObjectSpec,
        token: &SecretString,
        current: Phase,
    ) -> Result<PulledPage, ProviderError> {
        let Phase::Incremental { since, exclusive, range, ref archive, .. } = current else {
            return Err(ProviderError::CursorExpired);
        };
        if let Some(scan) = &archive.scan {
            // A scan that began before the caller asked for a check may have passed the record
            // just archived: it starts over (its start time stays, so nothing is missed).
            let scan = match self.take_deletes_ask(spec) {
                true => ArchiveScan { started_at: scan.started_at, after: None },
                false => scan.clone(),
            };
            return self.pull_archived(spec, token, &current, scan).await;
        }
        let op = if exclusive { "GT" } else { "GTE" };
        let window = json!({"propertyName": spec.modified, "operator": op, "value": since.to_string()});
        let (filters, sort) = match range {
            None => (vec![window], spec.modified),
            Some(r) => (
                vec![
                    window,
                    json!({"propertyName": spec.modified, "operator": "LTE", "value": r.upper.to_string()}),
                    json!({"propertyName": "hs_object_id", "operator": "GT", "value": r.after_id.to_string()}),
                ],
                "hs_object_id",
            ),
        };
        let body = json!({
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": self.properties(spec),
            "limit": SEARCH_PAGE,
        });
        let url = format!("{}/crm/v3/objects/{}/search", self.base, spec.path);
        let reply = self
            .send(Kind::Search, || self.http.post(&url).bearer_auth(token.expose_secret()).json(&body))
            .await?
            .check()?;
        let page: ObjectPage = reply.json()?;
        let last_id =
            match page.results.last() {
                None => None,
                Some(o) => Some(o.id.parse::<u64>().map_err(|_| {
                    ProviderError::permanent("HubSpot search returned a non-numeric record id")
                })?),
            };
        let provider_now = reply.provider_now();
        let stamps = page.results.iter().filter_map(|o| modified_at(spec, o));
        let facts = PageFacts {
            count: page.results.len(),
            max_ts: stamps.map(|t| t.timestamp_millis()).max(),
            last_id,
            more: page.next_after().is_some(),
            provider_now,
        };
        let step = next_incremental(&current, &facts, self.pacing.lookback);
        let records = if step.keep_records {
            let ids: Vec<String> = page.results.iter().map(|o| o.id.clone()).collect();
            let read = self.read_associations(spec, token, &ids, spec.pulled).await?;
            page.results
                .iter()
                .map(|o| self.map_object(spec, o, &Associated::Read(&read)))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        let mut archive = archive.clone();
        let now = provider_now.unwrap_or_else(|| Utc::now().timestamp_millis());
        let due = archive.checked_at.is_none_or(|at| now - at >= ms(self.pacing.archived_check_interval));
        let scan_now = !step.has_more && (self.take_deletes_ask(spec) || due);
        if scan_now {
            archive.scan = Some(ArchiveScan { started_at: now, after: None });
        }
        Ok(PulledPage {
            records,
            cursor: step.phase.with_archive(archive).to_cursor(),
            has_more: step.has_more || scan_now,
            reconcile_deletes: false,
        })
    }

    /// One page of the archived listing: records archived since the last scan (less the lookback)
    /// come back as deleted. The last page ends the scan and the pull.
    async fn pull_archived(
        &self,
        spec: &ObjectSpec,
        token: &SecretString,
        current: &Phase,
        scan: ArchiveScan,
    ) -> Result<PulledPage, ProviderError> {
        let Phase::Incremental { archive, .. } = current else {
            return Err(ProviderError::CursorExpired);
        };
        let url = format!("{}/crm/v3/objects/{}", self.base, spec.path);
        let mut query = vec![
            ("limit", LIST_PAGE.to_string()),
            ("archived", "true".to_owned()),
            ("properties", spec.modified.to_owned()),
        ];
        if let Some(a) = &scan.after {
            query.push(("after", a.clone()));
        }
        let reply = self
            .send(Kind::Other, || self.http.get(&url).bearer_auth(token.expose_secret()).query(&query))
            .await?
            .check()?;
        let page: ObjectPage = reply.json()?;
        let from = archive.checked_at.map(|at| at - ms(self.pacing.lookback));
        let mut records = Vec::new();
        for obj in page.results.iter().filter(|o| o.archived) {
            let record = self.map_object(spec, obj, &Associated::None)?;
            let at = record.remote_modified_at.map(|t| t.timestamp_millis());
            if from.is_none_or(|from| at.is_none_or(|at| at >= from)) {
                records.push(record);
            }
        }
        let (next, has_more) = match page.next_after() {
            Some(after) => {
                let scan = ArchiveScan { started_at: scan.started_at, after: Some(after.to_owned()) };
                (ArchiveState { checked_at: archive.checked_at, scan: Some(scan) }, true)
            }
            None => (ArchiveState { checked_at: Some(scan.started_at), scan: None }, false),
        };
        Ok(PulledPage {
            records,
            cursor: current.clone().with_archive(next).to_cursor(),
            has_more,
            reconcile_deletes: false,
        })
    }
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: i64,
}

#[async_trait]
impl ProviderClient for HubspotClient {
    /// Contacts, companies, deals, notes and activities. A `None` cursor lists every record (100 a page); the
    /// page that ends the listing switches the cursor to incremental search (200 a page) from the
    /// listing's start less the lookback, with `has_more = true` so edits made during the listing
    /// are caught. A caught-up search is followed by an archived scan when one is due.
    async fn pull_page(
        &self,
        token: &SecretString,
        object: ObjectType,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        if object == ObjectType::Activities {
            return self.pull_activities(token, cursor).await;
        }
        let Some(spec) = objects::spec(object) else {
            return Err(ProviderError::permanent(format!("the HubSpot adapter does not sync {object}")));
        };
        self.pull_spec(spec, token, cursor).await
    }

    /// Batches of 100 per object type and kind; see [`write`] for the requests each costs.
    async fn write(
        &self,
        token: &SecretString,
        writes: &[ProviderWrite],
    ) -> Result<Vec<Result<WriteAck, ProviderError>>, ProviderError> {
        self.write_all(token, writes).await
    }

    /// `POST {base}/oauth/v1/token` with the app's client credentials. A refresh token HubSpot
    /// rejects is `Unauthorized`; no configured app is `Permanent`.
    async fn refresh(&self, refresh_token: &SecretString) -> Result<Credentials, ProviderError> {
        let Some(app) = &self.app else {
            return Err(ProviderError::permanent("no HubSpot OAuth app is configured"));
        };
        let url = format!("{}/oauth/v1/token", self.base);
        let reply = self.net.refresh_grant(&url, app, refresh_token, &[]).await?;
        if reply.status == StatusCode::BAD_REQUEST {
            let status = reply
                .json::<Value>()
                .ok()
                .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_owned));
            if status.as_deref() == Some("BAD_REFRESH_TOKEN") {
                return Err(ProviderError::Unauthorized);
            }
        }
        let reply = reply.check()?;
        let tokens: TokenReply = reply.json()?;
        let expires_at = Utc::now() + chrono::Duration::seconds(tokens.expires_in.max(0));
        Ok(Credentials::refreshed(tokens.access_token, tokens.refresh_token, refresh_token, Some(expires_at)))
    }

    /// The next caught-up incremental pull of each object type scans the archived listing, even
    /// when the last scan is less than [`Pacing::archived_check_interval`] old (once per type in
    /// this client; a scan already under way starts over).
    fn check_deletes_now(&self) {
        self.deletes_asked.store(true, Ordering::Relaxed);
    }

    fn provider_setup(&self) -> std::collections::BTreeMap<String, String> {
        let proofs = self.proofs.lock().map(|p| p.clone()).unwrap_or_default();
        proofs.into_iter().map(|(o, p)| (write::setup_key(o), p.as_str().to_owned())).collect()
    }

    fn stats(&self) -> RequestStats {
        self.net.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incremental(since: i64) -> Phase {
        Phase::Incremental {
            since,
            exclusive: false,
            range: None,
            max_seen: None,
            archive: ArchiveState::default(),
        }
    }

    const LOOKBACK: Duration = Duration::from_secs(300);

    fn client() -> HubspotClient {
        HubspotClient::new(reqwest::Client::new(), "http://127.0.0.1:9", None, Pacing::default()).unwrap()
    }

    #[test]
    fn contacts_map_to_canonical_fields_with_modified_time_and_archived_flag() {
        let obj: HubObject = serde_json::from_value(json!({
            "id": "42",
            "properties": {
                "email": "a@x.io", "firstname": "Ada", "lastname": null, "phone": "",
                "jobtitle": "CTO", "hs_lead_status": "OPEN", "lastmodifieddate": "2024-03-01T10:00:00.123Z",
                "associatedcompanyid": "77"
            },
            "updatedAt": "2020-01-01T00:00:00Z",
            "archived": false
        }))
        .unwrap();
        let r = client().map_object(&objects::CONTACTS, &obj, &Associated::Inline).unwrap();
        assert_eq!(r.external_id.as_str(), "42");
        assert_eq!(r.fields["email"], json!("a@x.io"));
        assert_eq!(r.fields["first_name"], json!("Ada"));
        assert_eq!(r.fields["last_name"], Value::Null);
        assert_eq!(r.fields["phone"], Value::Null);
        assert_eq!(r.fields["job_title"], json!("CTO"));
        assert_eq!(r.fields["lead_status"], json!("OPEN"));
        assert_eq!(r.fields["company_ids"], json!(["77"]));
        assert_eq!(r.fields.len(), objects::CONTACTS.defaults.len());
        assert_eq!(r.remote_modified_at.unwrap().timestamp_millis(), 1_709_287_200_123);
        assert!(!r.deleted);
    }

    #[test]
    fn archived_records_are_deletes_stamped_when_archived_and_deals_keep_sorted_association_ids() {
        let archived: HubObject = serde_json::from_value(json!({
            "id": "9", "properties": {"hs_lastmodifieddate": "2024-03-01T10:00:00Z"},
            "archived": true, "archivedAt": "2024-04-01T00:00:00Z"
        }))
        .unwrap();
        let r = client().map_object(&objects::DEALS, &archived, &Associated::None).unwrap();
        assert!(r.deleted && r.fields.is_empty());
        assert_eq!(r.remote_modified_at, parse_instant("2024-04-01T00:00:00Z"));

        let deal: HubObject = serde_json::from_value(json!({
            "id": "5", "properties": {"dealname": "Big", "dealstage": "closedwon"},
            "associations": {"contacts": {"results": [
                {"id": "30", "type": "deal_to_contact"}, {"id": "4", "type": "deal_to_contact"},
                {"id": "30", "type": "deal_to_contact_unlabeled"}
            ]}}
        }))
        .unwrap();
        let r = client().map_object(&objects::DEALS, &deal, &Associated::Inline).unwrap();
        assert_eq!(r.fields["contact_ids"], json!(["30", "4"]));
        assert_eq!(r.fields["company_ids"], json!([]));
        assert_eq!(r.fields["lifecycle_stage"], json!("account"));
    }

    #[test]
    fn cursor_round_trips_and_garbage_cursors_expire() {
        let phase = Phase::Incremental {
            since: 5,
            exclusive: true,
            range: Some(IdRange { upper: 8, after_id: 4_321 }),
            max_seen: Some(9),
            archive: ArchiveState {
                checked_at: Some(3),
                scan: Some(ArchiveScan { started_at: 4, after: Some("9".into()) }),
            },
        };
        assert_eq!(Phase::parse(Some(&phase.to_cursor())).unwrap(), phase);
        assert!(matches!(Phase::parse(Some(&SyncCursor::new("nope"))), Err(ProviderError::CursorExpired)));
        let future =
            SyncCursor::new(r#"{"v":9,"phase":"full","after":null,"started_at":null,"max_seen":null}"#);
        assert!(matches!(Phase::parse(Some(&future)), Err(ProviderError::CursorExpired)));
        assert!(matches!(Phase::parse(None).unwrap(), Phase::Full { after: None, .. }));
    }

    #[test]
    fn a_cursor_saved_mid_window_by_the_offset_paging_version_restarts_its_window() {
        let old = SyncCursor::new(
            r#"{"v":1,"phase":"incremental","since":700,"exclusive":false,"offset":9800,"first_ts":700,"tie_after":4321,"max_seen":700,"archive":{"checked_at":3,"scan":null}}"#,
        );
        let Phase::Incremental { since, exclusive, range, archive, .. } = Phase::parse(Some(&old)).unwrap()
        else {
            panic!("an incremental cursor");
        };
        assert_eq!((since, exclusive, range, archive.checked_at), (700, false, None, Some(3)));
    }

    #[test]
    fn a_probe_with_more_than_a_page_returns_none_of_it_and_opens_a_window_up_to_the_provider_clock() {
        let probe = PageFacts {
            count: 200,
            max_ts: Some(700),
            last_id: Some(9),
            more: true,
            provider_now: Some(1_000),
        };
        let step = next_incremental(&incremental(100), &probe, LOOKBACK);
        assert!(step.has_more && !step.keep_records);
        let want = Phase::Incremental {
            since: 100,
            exclusive: false,
            range: Some(IdRange { upper: 1_000, after_id: 0 }),
            max_seen: None,
            archive: ArchiveState::default(),
        };
        assert_eq!(step.phase, want);

        // Without the provider's clock, or with one behind the records, the window ends at the
        // probe's newest stamp, so it holds at least the probe's records.
        for provider_now in [None, Some(500)] {
            let step = next_incremental(&incremental(100), &PageFacts { provider_now, ..probe }, LOOKBACK);
            assert!(matches!(step.phase, Phase::Incremental { range: Some(IdRange { upper: 700, .. }), .. }));
        }
    }

    #[test]
    fn a_window_pages_by_id_and_its_last_page_hands_over_to_a_probe_after_its_upper_bound() {
        let window = Phase::Incremental {
            since: 100,
            exclusive: false,
            range: Some(IdRange { upper: 1_000, after_id: 0 }),
            max_seen: Some(50),
            archive: ArchiveState::default(),
        };
        let page = PageFacts {
            count: 200,
            max_ts: Some(900),
            last_id: Some(4_321),
            more: true,
            provider_now: Some(2_000),
        };
        let step = next_incremental(&window, &page, LOOKBACK);
        assert!(step.has_more && step.keep_records);
        assert!(matches!(
            step.phase,
            Phase::Incremental {
                since: 100,
                range: Some(IdRange { upper: 1_000, after_id: 4_321 }),
                max_seen: Some(900),
                ..
            }
        ));

        let last = PageFacts { count: 12, max_ts: Some(950), last_id: Some(9_999), more: false, ..page };
        let step = next_incremental(&step.phase, &last, LOOKBACK);
        assert!(step.has_more && step.keep_records, "a probe after the window follows");
        assert!(matches!(
            step.phase,
            Phase::Incremental { since: 1_000, exclusive: true, range: None, max_seen: Some(950), .. }
        ));
    }

    #[test]
    fn caught_up_cursor_keeps_a_lookback_behind_the_provider_clock() {
        let now = 10_000_000;
        let done = |max_ts| PageFacts {
            count: 3,
            max_ts: Some(max_ts),
            provider_now: Some(now),
            ..PageFacts::default()
        };
        let recent = next_incremental(&incremental(1), &done(now - 1_000), LOOKBACK);
        assert!(!recent.has_more && recent.keep_records);
        assert!(
            matches!(recent.phase, Phase::Incremental { since, exclusive: false, .. } if since == now - 300_000)
        );

        let old = next_incremental(&incremental(1), &done(5_000), LOOKBACK);
        assert!(matches!(old.phase, Phase::Incremental { since: 5_000, exclusive: true, .. }));

        let no_clock = PageFacts { count: 1, max_ts: Some(900_000), ..PageFacts::default() };
        let fallback = next_incremental(&incremental(1), &no_clock, LOOKBACK);
        assert!(matches!(fallback.phase, Phase::Incremental { since: 600_000, .. }));
    }

    /// HubSpot's search over `(id, stamp)` records as the adapter asks it: the probe sorted by
    /// stamp (ties in descending id order, since HubSpot promises none), a window sorted by id.
    fn search(records: &[(u64, i64)], phase: &Phase, now: i64) -> (Vec<(u64, i64)>, PageFacts) {
        let Phase::Incremental { since, exclusive, range, .. } = phase else { panic!("incremental") };
        let after_since = |t: i64| if *exclusive { t > *since } else { t >= *since };
        let mut hits: Vec<(u64, i64)> = records
            .iter()
            .copied()
            .filter(|(id, t)| after_since(*t) && range.is_none_or(|r| *t <= r.upper && *id > r.after_id))
            .collect();
        match range {
            None => hits.sort_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0))),
            Some(_) => hits.sort(),
        }
        let more = hits.len() > SEARCH_PAGE;
        hits.truncate(SEARCH_PAGE);
        let facts = PageFacts {
            count: hits.len(),
            max_ts: hits.iter().map(|h| h.1).max(),
            last_id: hits.last().map(|h| h.0),
            more,
            provider_now: Some(now),
        };
        (hits, facts)
    }

    /// Runs one incremental pull to its end; returns the ids returned (with repeats) and the
    /// number of searches.
    fn pull(records: &[(u64, i64)], from: Phase, now: i64) -> (Vec<u64>, usize, Phase) {
        let (mut phase, mut kept, mut searches) = (from, Vec::new(), 0);
        loop {
            searches += 1;
            assert!(searches < 10_000, "the pull does not end");
            let (hits, facts) = search(records, &phase, now);
            let step = next_incremental(&phase, &facts, LOOKBACK);
            if step.keep_records {
                kept.extend(hits.iter().map(|h| h.0));
            }
            phase = step.phase;
            if !step.has_more {
                return (kept, searches, phase);
            }
        }
    }

    #[test]
    fn twelve_thousand_of_twenty_thousand_records_sharing_one_stamp_come_back_once_in_sixty_two_searches() {
        let (before, at) = (1_000_000, 5_000_000);
        let records: Vec<(u64, i64)> =
            (1..=20_000u64).map(|id| (id, if id % 5 < 3 { at } else { before })).collect();
        let changed: Vec<u64> = records.iter().filter(|r| r.1 == at).map(|r| r.0).collect();
        assert_eq!(changed.len(), 12_000);

        let (kept, searches, end) = pull(&records, incremental(at - 300_000), at + 1_000);
        assert_eq!(kept, changed, "each changed record once, in id order");
        assert_eq!(searches, 62, "a probe, 60 pages of the window, the probe after it");
        assert!(matches!(end, Phase::Incremental { range: None, max_seen: Some(m), .. } if m == at));
    }

    proptest::proptest! {
        #[test]
        fn any_mix_of_shared_stamps_comes_back_once_in_about_one_search_per_two_hundred(
            stamps in proptest::collection::vec(0i64..40, 0..1_500),
            since in 0i64..20,
        ) {
            let records: Vec<(u64, i64)> =
                stamps.iter().enumerate().map(|(i, t)| (i as u64 + 1, 1_000_000 + t * 7)).collect();
            let since = 1_000_000 + since * 7;
            let mut changed: Vec<u64> = records.iter().filter(|r| r.1 >= since).map(|r| r.0).collect();
            let (mut kept, searches, _) = pull(&records, incremental(since), 2_000_000);
            kept.sort_unstable();
            proptest::prop_assert_eq!(&kept, { changed.sort_unstable(); &changed });
            proptest::prop_assert!(searches <= changed.len().div_ceil(SEARCH_PAGE) + 2);
        }
    }

    #[test]
    fn asking_for_deletes_makes_each_object_types_scan_due_once_in_this_client() {
        let c = client();
        assert!(!c.take_deletes_ask(&objects::CONTACTS), "nothing asked");
        c.check_deletes_now();
        assert!(c.take_deletes_ask(&objects::CONTACTS));
        assert!(!c.take_deletes_ask(&objects::CONTACTS), "once per type");
        assert!(c.take_deletes_ask(&objects::DEALS));
        assert!(
            c.take_deletes_ask(&objects::CALLS) && c.take_deletes_ask(&objects::TASKS),
            "per activity type"
        );
    }

    #[test]
    fn the_pacer_waits_for_the_window_and_the_search_rate() {
        let start = Instant::now();
        let mut l = Limiter::default();
        let mut headers = HeaderMap::new();
        headers.insert("x-hubspot-ratelimit-max", "3".parse().unwrap());
        headers.insert("x-hubspot-ratelimit-interval-milliseconds", "10000".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(l.wait(Kind::Other, start, 5), Duration::ZERO);
            l.record(Kind::Other, start, &headers);
        }
        assert_eq!(l.wait(Kind::Other, start, 5), Duration::from_secs(10));
        assert_eq!(l.wait(Kind::Other, start + Duration::from_secs(10), 5), Duration::ZERO);

        let mut s = Limiter::default();
        for _ in 0..5 {
            s.record(Kind::Search, start, &HeaderMap::new());
        }
        assert!(s.wait(Kind::Search, start, 5) >= Duration::from_secs(1));
        assert_eq!(s.wait(Kind::Other, start, 5), Duration::ZERO);
    }

    #[test]
    fn a_429_waits_by_retry_after_or_by_the_policy_hit() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_wait(&h, br#"{"policyName":"SECONDLY"}"#), Duration::from_millis(1_100));
        assert_eq!(retry_wait(&h, br#"{"policyName":"TEN_SECONDLY_ROLLING"}"#), Duration::from_secs(10));
        assert!(retry_wait(&h, br#"{"policyName":"DAILY"}"#) > Pacing::default().max_inline_wait);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_wait(&h, b"{}"), Duration::from_secs(2));
    }
}
