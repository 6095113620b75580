//! Canonical records: what Syncbridge stores for each provider object, with the base both sides
//! last agreed on.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::{ConnectionId, ExternalId, ObjectType, RecordId, TenantId};
use super::policy::Source;

/// Canonical field name -> value. A `BTreeMap` so hashing and diffs are deterministic.
pub type Fields = BTreeMap<String, Value>;

/// One record as a provider returned it, already mapped to canonical field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteRecord {
    pub external_id: ExternalId,
    pub object: ObjectType,
    pub fields: Fields,
    /// The provider's last-modified stamp, used for incremental cursors and echo suppression.
    pub remote_modified_at: Option<DateTime<Utc>>,
    /// True when the provider reports the record deleted (archived, cancelled, `@removed`).
    pub deleted: bool,
    /// The provider's version tag (Google `etag`, Graph `@odata.etag`), for conditional writes.
    #[serde(default)]
    pub etag: Option<String>,
}

/// A record as Syncbridge stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanonicalRecord {
    pub tenant_id: TenantId,
    pub connection_id: ConnectionId,
    pub record_id: RecordId,
    pub object: ObjectType,
    pub external_id: ExternalId,
    pub fields: Fields,
    /// Per field, the value both sides last agreed on (the three-way merge's base).
    pub base: Fields,
    pub remote_modified_at: Option<DateTime<Utc>>,
    /// The provider's version tag as last pulled (conditional pushes send it as `If-Match`).
    #[serde(default)]
    pub etag: Option<String>,
    /// When a local edit last changed `fields` (last-write-wins compares it with the remote stamp).
    #[serde(default)]
    pub local_modified_at: Option<DateTime<Utc>>,
    /// Where each local value that is not yet agreed came from (the source hierarchy's input).
    #[serde(default)]
    pub sources: BTreeMap<String, Source>,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

/// What applying one page of remote records did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpsertOutcome {
    pub created: Vec<RecordId>,
    pub updated: Vec<RecordId>,
    pub deleted: Vec<RecordId>,
    pub unchanged: u64,
}

/// The names of fields whose values differ between `a` and `b` (present in either).
pub fn changed_fields(a: &Fields, b: &Fields) -> Vec<String> {
    let mut names: Vec<String> =
        a.iter().filter(|(k, v)| b.get(*k) != Some(*v)).map(|(k, _)| k.clone()).collect();
    names.extend(b.keys().filter(|k| !a.contains_key(*k)).cloned());
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_fields_lists_edits_additions_and_removals() {
        let a: Fields = [("email".into(), json!("a@x")), ("phone".into(), json!("1"))].into();
        let b: Fields = [("email".into(), json!("b@x")), ("city".into(), json!("Oslo"))].into();
        assert_eq!(changed_fields(&a, &b), vec!["city", "email", "phone"]);
        assert!(changed_fields(&a, &a).is_empty());
    }
}
