//! Identifier newtypes. Each is built by `parse`/`TryFrom` and rejects what does not fit a DynamoDB
//! key segment (no `#`, no control characters, bounded length).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an identifier or enum value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} characters")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} may contain only letters, digits, '-', '_', '.', '@' and ':'")]
    InvalidCharacter { kind: &'static str },
    #[error("unknown {kind} '{value}'")]
    Unknown { kind: &'static str, value: String },
}

fn check_segment(kind: &'static str, value: &str, max: usize) -> Result<(), ParseError> {
    if value.is_empty() {
        return Err(ParseError::Empty { kind });
    }
    if value.chars().count() > max {
        return Err(ParseError::TooLong { kind, max });
    }
    let ok = value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':'));
    if !ok {
        return Err(ParseError::InvalidCharacter { kind });
    }
    Ok(())
}

macro_rules! id_newtype {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: impl Into<String>) -> Result<Self, ParseError> {
                let value = value.into();
                check_segment($kind, &value, $max)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = ParseError;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Self::parse(value)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(serde::de::Error::custom)
            }
        }

        /// In the OpenAPI document: a string of what `parse` accepts.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                id_schema($kind, $max)
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// The schema of an identifier newtype: the characters and length [`check_segment`] accepts.
fn id_schema(kind: &str, max: usize) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!("A {kind}: letters, digits, '-', '_', '.', '@' and ':'.")))
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(ID_PATTERN))
        .into()
}

/// The characters [`check_segment`] accepts, as a JSON Schema pattern.
pub const ID_PATTERN: &str = "^[A-Za-z0-9._@:-]+$";

id_newtype!(
    /// The tenant (customer account) every key starts with. Comes only from a verified identity.
    TenantId, "tenant id", 64
);
id_newtype!(
    /// One tenant's link to one provider account.
    ConnectionId, "connection id", 64
);
id_newtype!(
    /// A provider's id for a record (HubSpot `hs_object_id`, Salesforce Id, Google event id, ...).
    ExternalId, "external id", 255
);
id_newtype!(
    /// Syncbridge's own id for a canonical record.
    RecordId, "record id", 64
);
id_newtype!(
    /// A sync job's id; also its SQS deduplication id (at most 128 characters there).
    JobId, "job id", 128
);
id_newtype!(
    /// One sync run's id (a ULID, so runs sort by start time).
    RunId, "run id", 64
);
id_newtype!(
    /// A key that makes a side effect happen at most once, however often its job is delivered.
    IdempotencyKey, "idempotency key", 128
);

/// The short tag a create carries in a text field where the provider holds no key of ours (a
/// Salesforce Note's Title, a HubSpot note's body): `[sb:` + 12 hex digits of the key's SHA-256 +
/// `]`. The same key always gives the same tag; finding it again proves the create happened.
pub fn key_tag(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("[sb:{hex}]")
}

/// `text` without a trailing [`key_tag`] (and the whitespace before it), as the person wrote it.
pub fn strip_key_tag(text: &str) -> &str {
    let trimmed = text.trim_end();
    let Some(start) = trimmed.len().checked_sub(17) else { return text };
    match trimmed.get(start..) {
        Some(tail)
            if tail.starts_with("[sb:")
                && tail.ends_with(']')
                && tail[4..16].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
        {
            trimmed[..start].trim_end()
        }
        _ => text,
    }
}

impl TenantId {
    /// The reserved tenant under which Syncbridge records what belongs to no tenant (a job message
    /// too malformed to name one). `parse` refuses it, so no caller can ever act as it.
    pub fn system() -> Self {
        Self("_system".to_owned())
    }

    /// Parses a tenant id from a verified identity or a stored key; refuses the reserved prefix `_`.
    pub fn parse_external(value: impl Into<String>) -> Result<Self, ParseError> {
        let t = Self::parse(value)?;
        if t.0.starts_with('_') {
            return Err(ParseError::InvalidCharacter { kind: "tenant id" });
        }
        Ok(t)
    }
}

impl ConnectionId {
    /// A new random connection id.
    pub fn generate() -> Self {
        Self(ulid::Ulid::new().to_string().to_lowercase())
    }
}

impl RunId {
    pub fn generate() -> Self {
        Self(ulid::Ulid::new().to_string())
    }
}

impl RecordId {
    /// The record id a pulled record gets when first seen: derived from where it came from, so two
    /// workers that see the same new remote record at once agree on its id.
    pub fn derive(
        tenant: &TenantId,
        connection: &ConnectionId,
        object: ObjectType,
        external: &ExternalId,
    ) -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [tenant.as_str(), connection.as_str(), object.as_str(), external.as_str()] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        let digest = h.finalize();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Self(format!("r_{hex}"))
    }
}

/// The providers Syncbridge talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Hubspot,
    Salesforce,
    Google,
    Microsoft,
    /// Gmail: a connection of its own (Gmail scopes) on the same Google OAuth app as Calendar.
    Gmail,
    /// Google Drive: a connection of its own on the same Google OAuth app as Calendar, with
    /// Drive scopes (pull only).
    GoogleDrive,
    Notion,
    /// Fireflies.ai meeting transcripts (pull only), connected with an API key.
    Fireflies,
}

impl Provider {
    pub const ALL: &'static [Provider] = &[
        Provider::Hubspot,
        Provider::Salesforce,
        Provider::Google,
        Provider::Microsoft,
        Provider::Gmail,
        Provider::GoogleDrive,
        Provider::Notion,
        Provider::Fireflies,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Hubspot => "hubspot",
            Provider::Salesforce => "salesforce",
            Provider::Google => "google",
            Provider::Microsoft => "microsoft",
            Provider::Gmail => "gmail",
            Provider::GoogleDrive => "google_drive",
            Provider::Notion => "notion",
            Provider::Fireflies => "fireflies",
        }
    }

    pub fn parse(value: &str) -> Result<Self, ParseError> {
        match value {
            "hubspot" => Ok(Provider::Hubspot),
            "salesforce" => Ok(Provider::Salesforce),
            "google" => Ok(Provider::Google),
            "microsoft" => Ok(Provider::Microsoft),
            "gmail" => Ok(Provider::Gmail),
            "google_drive" => Ok(Provider::GoogleDrive),
            "notion" => Ok(Provider::Notion),
            "fireflies" => Ok(Provider::Fireflies),
            other => Err(ParseError::Unknown { kind: "provider", value: other.to_owned() }),
        }
    }

    /// The object types this provider syncs, in pull order.
    pub fn object_types(self) -> &'static [ObjectType] {
        match self {
            Provider::Hubspot => &[
                ObjectType::Contacts,
                ObjectType::Companies,
                ObjectType::Deals,
                ObjectType::Notes,
                ObjectType::Activities,
            ],
            Provider::Salesforce => &[
                ObjectType::Companies,
                ObjectType::Contacts,
                ObjectType::Deals,
                ObjectType::Activities,
                ObjectType::Notes,
            ],
            Provider::Google => &[ObjectType::Events],
            Provider::Microsoft => &[ObjectType::Events],
            Provider::Gmail => &[ObjectType::Messages],
            Provider::GoogleDrive => &[ObjectType::Files],
            // Contacts first, so a deal's contact relation names pages already pulled.
            Provider::Notion => &[ObjectType::Contacts, ObjectType::Deals],
            Provider::Fireflies => &[ObjectType::Transcripts],
        }
    }

    /// Whether a connection made with a token the caller brings learns its account from the
    /// provider (`ProviderClient::token_account`), proving the token on the way: Fireflies, whose
    /// API key names no account otherwise and whose webhooks name the key owner's email.
    pub fn token_names_account(self) -> bool {
        matches!(self, Provider::Fireflies)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Canonical object types.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ObjectType {
    Contacts,
    Companies,
    Deals,
    Notes,
    /// CRM activities, not calendar events: Salesforce Tasks and Events, HubSpot calls, emails,
    /// meetings and tasks; the field `kind` says which (`task`, `event`, `call`, `email`,
    /// `meeting`).
    Activities,
    Events,
    /// Pre-meeting research tasks: derived by the engine from calendar events, never pulled.
    ResearchTasks,
    /// Email messages (Gmail), one record per message with its thread id as a field.
    Messages,
    /// Meeting transcripts (Fireflies): title, date, participants, duration, summary and action
    /// items; their action items become follow-up tasks (records of `research_tasks`).
    Transcripts,
    /// Files and folders of a document store (Google Drive): metadata and sharing, pulled only.
    Files,
}

impl ObjectType {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Contacts => "contacts",
            ObjectType::Companies => "companies",
            ObjectType::Deals => "deals",
            ObjectType::Notes => "notes",
            ObjectType::Activities => "activities",
            ObjectType::Events => "events",
            ObjectType::ResearchTasks => "research_tasks",
            ObjectType::Messages => "messages",
            ObjectType::Transcripts => "transcripts",
            ObjectType::Files => "files",
        }
    }

    pub fn parse(value: &str) -> Result<Self, ParseError> {
        match value {
            "contacts" => Ok(ObjectType::Contacts),
            "companies" => Ok(ObjectType::Companies),
            "deals" => Ok(ObjectType::Deals),
            "notes" => Ok(ObjectType::Notes),
            "activities" => Ok(ObjectType::Activities),
            "events" => Ok(ObjectType::Events),
            "research_tasks" => Ok(ObjectType::ResearchTasks),
            "messages" => Ok(ObjectType::Messages),
            "transcripts" => Ok(ObjectType::Transcripts),
            "files" => Ok(ObjectType::Files),
            other => Err(ParseError::Unknown { kind: "object type", value: other.to_owned() }),
        }
    }

    /// Records that are Syncbridge's own and never written to a provider: research tasks are
    /// derived from calendar events, and no calendar API takes them (the Google and Graph adapters
    /// write events only), so edits of them stay local and queue no push. Drive files are pulled
    /// read-only (the connection holds a metadata scope), so edits of them stay local too.
    pub fn stays_local(self) -> bool {
        matches!(self, ObjectType::ResearchTasks | ObjectType::Files)
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a pull of one object type stands: opaque to the engine, meaningful to the provider adapter
/// that wrote it (JSON, so adapters can keep several fields). `None` in a connection means "never
/// synced: do a full pull".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SyncCursor(String);

impl SyncCursor {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A cursor holding `doc` as JSON: how the adapters keep their position.
    pub fn of_json<T: serde::Serialize>(doc: &T) -> Self {
        Self(serde_json::to_string(doc).unwrap_or_default())
    }

    /// The JSON document of type `T` this cursor holds; `None` if it holds something else (a
    /// cursor of another shape or version, which the adapters treat as expired).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(&self.0).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_tags_are_stable_per_key_and_strip_back_to_the_text() {
        let tag = key_tag("push:01J");
        assert_eq!(tag, key_tag("push:01J"));
        assert_ne!(tag, key_tag("push:01K"));
        assert_eq!(tag.len(), 17);
        let body = format!("[ARIA] Call summary\n{tag}");
        assert_eq!(strip_key_tag(&body), "[ARIA] Call summary");
        assert_eq!(strip_key_tag("[ARIA] no tag here"), "[ARIA] no tag here");
        assert_eq!(strip_key_tag("[sb:XYZ]"), "[sb:XYZ]");
        assert_eq!(strip_key_tag("é"), "é");
        assert_eq!(strip_key_tag(&tag), "");
    }
    use proptest::prelude::*;

    #[test]
    fn tenant_id_rejects_key_separator_and_empty() {
        assert!(TenantId::parse("acme").is_ok());
        assert_eq!(TenantId::parse(""), Err(ParseError::Empty { kind: "tenant id" }));
        assert!(matches!(TenantId::parse("a#b"), Err(ParseError::InvalidCharacter { .. })));
        assert!(matches!(TenantId::parse("x".repeat(65)), Err(ParseError::TooLong { .. })));
        assert!(TenantId::parse_external("_system").is_err());
        assert!(TenantId::parse_external("acme").is_ok());
    }

    #[test]
    fn ids_deserialize_through_parse() {
        let ok: Result<ConnectionId, _> = serde_json::from_str("\"c-1\"");
        assert!(ok.is_ok());
        let bad: Result<ConnectionId, _> = serde_json::from_str("\"c#1\"");
        assert!(bad.is_err());
    }

    #[test]
    fn provider_and_object_type_round_trip_and_reject_unknown() {
        for p in Provider::ALL.iter().copied() {
            assert_eq!(Provider::parse(p.as_str()), Ok(p));
        }
        assert!(Provider::parse("zoho").is_err());
        assert_eq!(ObjectType::parse("contacts"), Ok(ObjectType::Contacts));
        assert!(ObjectType::parse("widgets").is_err());
    }

    proptest! {
        #[test]
        fn derived_record_ids_are_stable_and_distinct(a in "[a-z0-9]{1,20}", b in "[a-z0-9]{1,20}") {
            let t = TenantId::parse("t").unwrap();
            let c = ConnectionId::parse("c").unwrap();
            let ea = ExternalId::parse(a.clone()).unwrap();
            let eb = ExternalId::parse(b.clone()).unwrap();
            let ra = RecordId::derive(&t, &c, ObjectType::Contacts, &ea);
            prop_assert_eq!(&ra, &RecordId::derive(&t, &c, ObjectType::Contacts, &ea));
            prop_assert!(RecordId::parse(ra.as_str().to_owned()).is_ok());
            if a != b {
                prop_assert_ne!(ra, RecordId::derive(&t, &c, ObjectType::Contacts, &eb));
            }
        }
    }
}
