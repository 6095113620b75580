//! A connection: one tenant's link to one provider account, with its sync state machine.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::ids::{ConnectionId, ObjectType, Provider, RunId, SyncCursor, TenantId};
use super::policy::ConflictPolicy;
use super::push::{AutoPush, DEFAULT_NOTE_PREFIX, PushAction};

/// Where a connection's sync stands: `synced -> pending -> synced | conflict | error`,
/// `error -> pending` on retry, `conflict -> synced` on resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Synced,
    Pending,
    Conflict,
    Error,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Synced => "synced",
            ConnectionStatus::Pending => "pending",
            ConnectionStatus::Conflict => "conflict",
            ConnectionStatus::Error => "error",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "synced" => Some(ConnectionStatus::Synced),
            "pending" => Some(ConnectionStatus::Pending),
            "conflict" => Some(ConnectionStatus::Conflict),
            "error" => Some(ConnectionStatus::Error),
            _ => None,
        }
    }
}

/// OAuth credentials. Tokens are secrets: they never reach a log, an error or an API response.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    /// `None` for tokens that do not expire (HubSpot private-app tokens).
    pub expires_at: Option<DateTime<Utc>>,
}

impl Credentials {
    /// What a refresh grant answered: the new access token, the refresh token (the one just used
    /// when the provider did not rotate it) and the expiry.
    pub fn refreshed(
        access_token: String,
        rotated: Option<String>,
        used: &SecretString,
        expires_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            access_token: SecretString::from(access_token),
            refresh_token: Some(rotated.map(SecretString::from).unwrap_or_else(|| used.clone())),
            expires_at,
        }
    }

    /// True when the access token expires within `margin` of `now` and can be refreshed.
    pub fn needs_refresh(&self, now: DateTime<Utc>, margin: Duration) -> bool {
        match (self.expires_at, &self.refresh_token) {
            (Some(at), Some(_)) => at - margin <= now,
            _ => false,
        }
    }
}

/// A connection's user-editable sync settings (beyond the interval).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionSettings {
    /// Per object type: canonical field -> provider property, overriding the adapter's defaults
    /// (custom properties allowed; an empty property drops the field).
    pub field_mapping: BTreeMap<ObjectType, BTreeMap<String, String>>,
    /// Provider deal/opportunity stage -> canonical lifecycle stage, overriding the defaults.
    pub stage_mapping: BTreeMap<String, String>,
    /// The tenant's own email domains: calendar attendees outside them are "outside" attendees.
    pub own_domains: Vec<String>,
    /// How many days ahead calendar pulls look (1 to [`MAX_CALENDAR_WINDOW_DAYS`]).
    #[schema(minimum = 1, maximum = 365)]
    pub calendar_window_days: u32,
    /// How fields changed differently on both sides are decided.
    pub conflict_policy: ConflictPolicy,
    /// Push actions approved without a person.
    #[schema(value_type = BTreeMap<PushAction, bool>)]
    pub auto_push: AutoPush,
    /// The tag in front of every note Syncbridge writes.
    pub note_prefix: String,
    /// How documents pulled from a document store (Google Drive files) are linked to the
    /// tenant's CRM deals and contacts.
    pub document_links: DocumentLinks,
    /// The Notion databases a Notion connection syncs (required for Notion, refused for the
    /// others); fixed at connect (reconnect to sync other databases).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notion: Option<NotionDatabases>,
}

/// The rule that links a document to CRM records of the same tenant (see `sync::links`). Both
/// parts are on by default; a tenant turns either off in the Drive connection's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DocumentLinks {
    /// Link a file to every deal whose name its name contains (case-insensitive; deal names of
    /// at least 3 characters).
    pub by_deal_name: bool,
    /// Link a file to every contact whose email address it is shared with.
    pub by_shared_contact: bool,
}

impl Default for DocumentLinks {
    fn default() -> Self {
        Self { by_deal_name: true, by_shared_contact: true }
    }
}

impl DocumentLinks {
    pub fn any(self) -> bool {
        self.by_deal_name || self.by_shared_contact
    }
}

/// Which Notion databases serve as the CRM: a deals database and, optionally, a contacts one.
/// Ids as in the database's URL, with or without dashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotionDatabases {
    #[schema(example = "1f2e3d4c5b6a47988796a5b4c3d2e1f0")]
    pub deals_database_id: String,
    pub contacts_database_id: Option<String>,
}

/// A Notion id (a UUID, with or without dashes) in its dashed, lower-case form.
pub fn notion_id(raw: &str) -> Option<String> {
    let hex: String = raw.trim().chars().filter(|c| *c != '-').collect::<String>().to_ascii_lowercase();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
}

pub const DEFAULT_CALENDAR_WINDOW_DAYS: u32 = 7;
/// The longest calendar window: a year (a larger one would put the window's end past what a
/// timestamp can hold).
pub const MAX_CALENDAR_WINDOW_DAYS: u32 = 365;

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            field_mapping: BTreeMap::new(),
            stage_mapping: BTreeMap::new(),
            own_domains: Vec::new(),
            calendar_window_days: DEFAULT_CALENDAR_WINDOW_DAYS,
            conflict_policy: ConflictPolicy::default(),
            auto_push: AutoPush::new(),
            note_prefix: DEFAULT_NOTE_PREFIX.to_owned(),
            document_links: DocumentLinks::default(),
            notion: None,
        }
    }
}

impl ConnectionSettings {
    /// Checks what serde cannot: the ranges of numeric settings. The message is safe to show.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_CALENDAR_WINDOW_DAYS).contains(&self.calendar_window_days) {
            return Err(format!(
                "settings.calendar_window_days must be between 1 and {MAX_CALENDAR_WINDOW_DAYS}"
            ));
        }
        Ok(())
    }

    /// [`Self::validate`], and what only some providers take: a Notion connection names its deals
    /// database (and maybe a contacts one) by id; no other provider takes Notion databases.
    pub fn validate_for(&self, provider: Provider) -> Result<(), String> {
        self.validate()?;
        match (&self.notion, provider) {
            (None, Provider::Notion) => {
                Err("settings.notion.deals_database_id is required for a Notion connection".into())
            }
            (Some(_), p) if p != Provider::Notion => {
                Err("settings.notion is only for Notion connections".into())
            }
            (Some(n), _) => {
                let ids = [
                    ("deals_database_id", Some(&n.deals_database_id)),
                    ("contacts_database_id", n.contacts_database_id.as_ref()),
                ];
                for (name, id) in ids {
                    if id.is_some_and(|id| notion_id(id).is_none()) {
                        return Err(format!("settings.notion.{name} is not a Notion id (32 hex digits)"));
                    }
                }
                Ok(())
            }
            (None, _) => Ok(()),
        }
    }

    /// True when items of `action` skip approval on this connection.
    pub fn auto_pushes(&self, action: PushAction) -> bool {
        self.auto_push.get(&action).copied().unwrap_or(false)
    }

    /// True when `email`'s domain is one of the tenant's own (case-insensitive; subdomains count).
    pub fn is_own_email(&self, email: &str) -> bool {
        let Some((_, domain)) = email.trim().rsplit_once('@') else {
            return false;
        };
        let domain = domain.to_ascii_lowercase();
        self.own_domains.iter().any(|own| {
            let own = own.trim().trim_start_matches('@').to_ascii_lowercase();
            !own.is_empty() && (domain == own || domain.ends_with(&format!(".{own}")))
        })
    }
}

/// What a caller supplies to create a connection.
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub provider: Provider,
    pub base_url: String,
    pub credentials: Credentials,
    pub interval_minutes: u32,
    pub settings: ConnectionSettings,
}

/// A connection as stored. `version` guards every read-modify-write.
#[derive(Debug, Clone)]
pub struct Connection {
    pub tenant_id: TenantId,
    pub connection_id: ConnectionId,
    pub provider: Provider,
    /// The provider's API base URL: configuration, never a constant, so a real account or a fake works.
    pub base_url: String,
    /// The provider account behind the connection, as the provider's notifications name it (HubSpot
    /// portal id, Salesforce organization id, Google calendar owner, Microsoft user id); learned at
    /// OAuth connect, `None` when unknown. Webhooks find their connections by it.
    pub account_id: Option<String>,
    pub status: ConnectionStatus,
    pub interval_minutes: u32,
    /// When the dispatcher next enqueues a scheduled sync; `None` takes it out of the due index.
    pub next_sync_at: Option<DateTime<Utc>>,
    pub cursors: BTreeMap<ObjectType, SyncCursor>,
    pub credentials: Credentials,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_run_id: Option<RunId>,
    pub record_counts: BTreeMap<ObjectType, u64>,
    /// When the job now running first started (kept across its redeliveries, cleared when it
    /// finishes): records written since then are announced again if their page is replayed.
    pub inflight_since: Option<DateTime<Utc>>,
    /// The push channel (Google) or subscription (Graph) the worker keeps open for this connection.
    pub push_channel: Option<super::channel::PushChannel>,
    /// Object types whose last pull failed with a permanent provider error (worker-owned): the
    /// others sync on; these keep their cursor and are retried from their `retry_at`.
    pub object_errors: BTreeMap<ObjectType, ObjectError>,
    /// What the adapter set up or learned in the provider account (worker-owned), so later jobs
    /// need not find it out again: e.g. `hubspot.contacts.create_proof` = `key_property` once the
    /// unique `syncbridge_key` property exists in the portal, or `email` where the app may not
    /// create properties.
    pub provider_setup: BTreeMap<String, String>,
    pub settings: ConnectionSettings,
    /// Set while a person has paused the connection: it is out of the due index
    /// (`next_sync_at` is `None`), manual syncs are refused and queued jobs are dropped.
    pub paused_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Guards the worker-owned state (`save_state`, `finish`).
    pub version: u64,
    /// Guards the user-owned part (`save_settings`: interval, settings, pause, schedule), so a
    /// settings change never makes a running job's checkpoint lose its condition, and vice versa.
    pub settings_version: u64,
}

pub const DEFAULT_INTERVAL_MINUTES: u32 = 15;
pub const MIN_INTERVAL_MINUTES: u32 = 5;
pub const MAX_INTERVAL_MINUTES: u32 = 1440;

impl Connection {
    /// A new connection, due for its first (full) sync right away.
    pub fn new(tenant_id: TenantId, new: NewConnection, now: DateTime<Utc>) -> Self {
        Self {
            tenant_id,
            connection_id: ConnectionId::generate(),
            provider: new.provider,
            base_url: new.base_url,
            account_id: None,
            status: ConnectionStatus::Pending,
            interval_minutes: new.interval_minutes,
            next_sync_at: Some(now),
            cursors: BTreeMap::new(),
            credentials: new.credentials,
            last_sync_at: None,
            last_error: None,
            last_run_id: None,
            record_counts: BTreeMap::new(),
            inflight_since: None,
            push_channel: None,
            object_errors: BTreeMap::new(),
            provider_setup: BTreeMap::new(),
            settings: new.settings,
            paused_at: None,
            created_at: now,
            version: 0,
            settings_version: 0,
        }
    }

    /// The slot after `current`: one interval later, but never in the past (a dispatcher that was
    /// down for an hour enqueues one catch-up sync, not four).
    pub fn next_slot_after(&self, current: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        let interval = Duration::minutes(i64::from(self.interval_minutes));
        let next = current + interval;
        if next > now { next } else { now + interval }
    }

    /// True while paused by a person.
    pub fn is_paused(&self) -> bool {
        self.paused_at.is_some()
    }

    /// Where `next_sync_at` goes when the interval changes from `old` to the current one: a due
    /// slot stays due; otherwise the pending slot moves by the difference, never into the past.
    /// A paused connection stays unscheduled.
    pub fn rescheduled(&self, old_interval_minutes: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let current = self.next_sync_at?;
        if current <= now {
            return Some(current);
        }
        let delta = i64::from(self.interval_minutes) - i64::from(old_interval_minutes);
        Some((current + Duration::minutes(delta)).max(now))
    }

    /// The SQS message group: one connection is never synced by two workers at once.
    pub fn message_group(&self) -> String {
        message_group(&self.tenant_id, &self.connection_id)
    }
}

/// What kind of provider error stopped an object type's pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectErrorClass {
    /// The provider refused the request for good (403 missing scope, 400 bad query, ...).
    Permanent,
    /// The provider does not know what was asked for (404).
    NotFound,
}

/// Why an object type's pull failed, how often in a row, and when it is tried again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectError {
    pub class: ObjectErrorClass,
    /// The provider's HTTP status, when the error came from one of its answers.
    #[serde(default)]
    pub http_status: Option<u16>,
    /// The provider's error code when it gave one (HubSpot `category`, Salesforce `errorCode`,
    /// Google `reason`, Graph `code`), e.g. `MISSING_SCOPES`.
    #[serde(default)]
    pub code: Option<String>,
    /// The error as the adapter reported it (no credentials; at most a few hundred characters).
    pub message: String,
    /// Consecutive failed attempts.
    pub attempts: u32,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    /// Scheduled syncs skip the object type until then; a manual sync tries it at once.
    pub retry_at: DateTime<Utc>,
}

/// The first retry of a failed object type waits this long; each further failure doubles it.
pub const OBJECT_RETRY_BASE_MINUTES: i64 = 5;
/// The longest wait between retries of a failed object type.
pub const OBJECT_RETRY_MAX_MINUTES: i64 = 4 * 60;

impl ObjectError {
    /// The error after one more failed attempt at `now` (`previous`: the object type's error
    /// before it, if it was failing already). `message` is the adapter's text; a leading
    /// `HTTP {status} {CODE}` (the adapters' format) gives the status and code.
    pub fn failed(
        previous: Option<&ObjectError>,
        class: ObjectErrorClass,
        message: &str,
        now: DateTime<Utc>,
    ) -> Self {
        let attempts = previous.map_or(0, |p| p.attempts).saturating_add(1);
        let (http_status, code) = http_status_and_code(message);
        Self {
            class,
            http_status,
            code,
            message: message.chars().take(500).collect(),
            attempts,
            first_failed_at: previous.map_or(now, |p| p.first_failed_at),
            last_failed_at: now,
            retry_at: now + object_retry_delay(attempts),
        }
    }

    /// True while scheduled syncs leave the object type alone.
    pub fn waiting(&self, now: DateTime<Utc>) -> bool {
        self.retry_at > now
    }

    /// One line for people: `notes: HTTP 403 MISSING_SCOPES: ... (2 attempts)`.
    pub fn describe(&self, object: ObjectType) -> String {
        let times = if self.attempts == 1 { "attempt" } else { "attempts" };
        format!("{object}: {} ({} {times})", self.message, self.attempts)
    }
}

/// The wait after the `attempts`-th consecutive failure: 5 min doubling, at most 4 h.
pub fn object_retry_delay(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    Duration::minutes((OBJECT_RETRY_BASE_MINUTES << doublings).min(OBJECT_RETRY_MAX_MINUTES))
}

/// `(Some(403), Some("MISSING_SCOPES"))` from `HTTP 403 MISSING_SCOPES: ...` (the adapters'
/// error text); `None`s for any other text.
fn http_status_and_code(message: &str) -> (Option<u16>, Option<String>) {
    let Some(rest) = message.strip_prefix("HTTP ") else {
        return (None, None);
    };
    let head = rest.split(':').next().unwrap_or_default();
    let mut words = head.split_whitespace();
    let status = words.next().and_then(|w| w.parse::<u16>().ok()).filter(|s| (100..=599).contains(s));
    let code = words
        .next()
        .filter(|w| w.len() <= 64 && w.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)))
        .map(str::to_owned);
    match status {
        Some(s) => (Some(s), code),
        None => (None, None),
    }
}

/// The due-index shard of a connection: a stable hash of tenant and connection, so a connection
/// stays in one shard across deployments, processes and store implementations.
pub fn due_shard(tenant: &TenantId, connection: &ConnectionId, shards: u16) -> u16 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(tenant.as_str().as_bytes());
    h.update([0u8]);
    h.update(connection.as_str().as_bytes());
    let d = h.finalize();
    u16::from_be_bytes([d[0], d[1]]) % shards.max(1)
}

pub fn message_group(tenant: &TenantId, connection: &ConnectionId) -> String {
    format!("{tenant}#{connection}")
}

/// A connection for unit tests: `tenant` at `provider` with a plain, non-expiring token.
#[cfg(test)]
pub(crate) fn sample_connection(
    tenant: &str,
    provider: Provider,
    base_url: &str,
    now: DateTime<Utc>,
) -> Connection {
    Connection::new(
        TenantId::parse(tenant).expect("a valid tenant id"),
        NewConnection {
            provider,
            base_url: base_url.to_owned(),
            credentials: Credentials {
                access_token: SecretString::from("t"),
                refresh_token: None,
                expires_at: None,
            },
            interval_minutes: DEFAULT_INTERVAL_MINUTES,
            settings: ConnectionSettings::default(),
        },
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn conn(now: DateTime<Utc>) -> Connection {
        Connection::new(
            TenantId::parse("t").unwrap(),
            NewConnection {
                provider: Provider::Hubspot,
                base_url: "http://127.0.0.1:1".into(),
                credentials: Credentials {
                    access_token: SecretString::from("a"),
                    refresh_token: Some(SecretString::from("r")),
                    expires_at: Some(now + Duration::minutes(3)),
                },
                interval_minutes: 15,
                settings: ConnectionSettings::default(),
            },
            now,
        )
    }

    #[test]
    fn own_email_domains_match_case_insensitively_with_subdomains() {
        let s = ConnectionSettings { own_domains: vec!["Acme.com".into()], ..ConnectionSettings::default() };
        assert!(s.is_own_email("ann@acme.com"));
        assert!(s.is_own_email("bob@EU.acme.com"));
        assert!(!s.is_own_email("eve@notacme.com"));
        assert!(!s.is_own_email("no-at-sign"));
        assert!(!ConnectionSettings::default().is_own_email("ann@acme.com"));
    }

    #[test]
    fn a_changed_interval_moves_the_pending_slot_by_the_difference_but_never_into_the_past() {
        let now = Utc::now();
        let mut c = conn(now);
        c.next_sync_at = Some(now + Duration::minutes(10));
        c.interval_minutes = 60;
        assert_eq!(c.rescheduled(15, now), Some(now + Duration::minutes(55)));
        c.interval_minutes = 5;
        assert_eq!(c.rescheduled(15, now), Some(now), "shortened past now: due now");
        c.next_sync_at = Some(now - Duration::minutes(1));
        assert_eq!(c.rescheduled(15, now), Some(now - Duration::minutes(1)), "a due slot stays due");
        c.next_sync_at = None;
        assert_eq!(c.rescheduled(15, now), None, "paused stays unscheduled");
    }

    #[test]
    fn next_slot_skips_missed_slots_instead_of_piling_them_up() {
        let now = Utc::now();
        let c = conn(now);
        assert_eq!(c.next_slot_after(now, now), now + Duration::minutes(15));
        let long_ago = now - Duration::hours(2);
        assert_eq!(c.next_slot_after(long_ago, now), now + Duration::minutes(15));
    }

    #[test]
    fn object_retries_wait_five_minutes_doubling_per_failure_up_to_four_hours() {
        let waits: Vec<i64> = (1..=8).map(|n| object_retry_delay(n).num_minutes()).collect();
        assert_eq!(waits, vec![5, 10, 20, 40, 80, 160, 240, 240]);
        assert_eq!(object_retry_delay(u32::MAX).num_minutes(), 240);
    }

    #[test]
    fn a_repeated_object_failure_counts_attempts_keeps_its_first_time_and_reads_status_and_code() {
        let now = Utc::now();
        let text = "HTTP 403 MISSING_SCOPES: This app hasn't been granted all required scopes";
        let first = ObjectError::failed(None, ObjectErrorClass::Permanent, text, now);
        assert_eq!((first.http_status, first.code.as_deref()), (Some(403), Some("MISSING_SCOPES")));
        assert_eq!((first.attempts, first.retry_at), (1, now + Duration::minutes(5)));
        let later = now + Duration::minutes(20);
        let second = ObjectError::failed(Some(&first), ObjectErrorClass::Permanent, text, later);
        assert_eq!((second.attempts, second.first_failed_at), (2, now));
        assert_eq!(second.retry_at, later + Duration::minutes(10));
        assert!(second.waiting(later) && !second.waiting(second.retry_at));
        assert_eq!(second.describe(ObjectType::Notes), format!("notes: {text} (2 attempts)"));
        let plain = ObjectError::failed(None, ObjectErrorClass::NotFound, "not found at the provider", now);
        assert_eq!((plain.http_status, plain.code), (None, None));
        let bare = ObjectError::failed(None, ObjectErrorClass::Permanent, "HTTP 400", now);
        assert_eq!((bare.http_status, bare.code), (Some(400), None));
    }

    #[test]
    fn credentials_need_refresh_only_near_expiry_and_with_a_refresh_token() {
        let now = Utc::now();
        let mut c = conn(now).credentials;
        assert!(c.needs_refresh(now, Duration::minutes(5)));
        assert!(!c.needs_refresh(now, Duration::minutes(1)));
        c.refresh_token = None;
        assert!(!c.needs_refresh(now, Duration::minutes(5)));
    }
}
