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
    /// Field -> the push item that carries its local value to the provider (the newest edit of
    /// it). Kept only while the local value differs from the base: it says why the record differs
    /// from the provider, and lets a newer edit or a conflict resolution find the item it makes
    /// obsolete.
    #[serde(default)]
    pub pending_push: BTreeMap<String, String>,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl CanonicalRecord {
    /// Forgets the push items of fields whose local value is agreed again (equal to the base);
    /// returns the items forgotten.
    pub fn settle_pending(&mut self) -> Vec<String> {
        let (fields, base) = (&self.fields, &self.base);
        let mut settled = Vec::new();
        self.pending_push.retain(|k, id| {
            let keep = fields.get(k) != base.get(k);
            if !keep {
                settled.push(id.clone());
            }
            keep
        });
        settled.sort();
        settled.dedup();
        settled
    }
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

    #[test]
    fn settling_forgets_the_push_items_of_fields_agreed_again() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut r = CanonicalRecord {
            tenant_id: TenantId::parse("t").unwrap(),
            connection_id: ConnectionId::parse("c").unwrap(),
            record_id: RecordId::parse("r1").unwrap(),
            object: ObjectType::Contacts,
            external_id: ExternalId::parse("101").unwrap(),
            fields: [("email".into(), json!("b@x")), ("phone".into(), json!("1"))].into(),
            base: [("email".into(), json!("a@x")), ("phone".into(), json!("1"))].into(),
            remote_modified_at: None,
            etag: None,
            local_modified_at: None,
            sources: Default::default(),
            pending_push: [("email".into(), "p_1".into()), ("phone".into(), "p_2".into())].into(),
            deleted: false,
            created_at: at,
            updated_at: at,
            version: 1,
        };
        assert_eq!(r.settle_pending(), vec!["p_2"]);
        assert_eq!(r.pending_push, BTreeMap::from([("email".to_owned(), "p_1".to_owned())]));
        assert!(r.settle_pending().is_empty(), "settling twice changes nothing");
    }
}
