//! Conflict policies: how a field changed differently on both sides since the last agreed value is
//! decided. The steps run in a fixed order and the first that decides wins: field ownership, source
//! hierarchy, CRM-wins for structured fields, merge for notes, then the fallback (last write wins,
//! or manual: parked in the conflict queue for a person).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who owns a field when both sides changed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ownership {
    /// Our agents own it: the local value wins.
    Agent,
    /// People in the provider own it: the remote value wins.
    Human,
    /// Nobody owns it: the next step decides.
    Shared,
}

/// Where a value came from, weakest first: a stronger source wins over a weaker one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Inferred,
    Web,
    Document,
    Crm,
    UserStated,
}

/// What decides a conflict that no earlier step decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// The side written last wins (ties: the remote side).
    LastWriteWins,
    /// Parked in the conflict queue for a person.
    Manual,
}

/// The step that decided a conflict (recorded in the audit log and on parked conflicts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    FieldOwnership,
    SourceHierarchy,
    CrmWinsStructured,
    MergeNotes,
    LastWriteWins,
    Manual,
}

/// A connection's conflict policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ConflictPolicy {
    /// Canonical field -> owner. Fields not listed are shared.
    pub ownership: BTreeMap<String, Ownership>,
    pub source_hierarchy: bool,
    /// For CRM connections, the CRM's value of these fields wins.
    pub crm_wins_structured: bool,
    pub structured_fields: Vec<String>,
    /// Free-text fields whose two versions are merged rather than one dropped.
    pub merge_notes: bool,
    pub note_fields: Vec<String>,
    pub fallback: Fallback,
}

impl Default for ConflictPolicy {
    /// Every step on, and a person decides what they leave open.
    fn default() -> Self {
        Self {
            ownership: BTreeMap::new(),
            source_hierarchy: true,
            crm_wins_structured: true,
            structured_fields: ["stage", "lifecycle_stage", "amount", "close_date", "status"]
                .map(String::from)
                .to_vec(),
            merge_notes: true,
            note_fields: ["body", "description", "notes"].map(String::from).to_vec(),
            fallback: Fallback::Manual,
        }
    }
}

impl ConflictPolicy {
    /// Only a person decides.
    pub fn manual() -> Self {
        Self {
            source_hierarchy: false,
            crm_wins_structured: false,
            merge_notes: false,
            fallback: Fallback::Manual,
            ..Self::default()
        }
    }

    /// Only timestamps decide.
    pub fn last_write_wins() -> Self {
        Self { fallback: Fallback::LastWriteWins, ..Self::manual() }
    }
}

/// What is known about the two values besides themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConflictContext {
    /// The connection is a CRM (HubSpot, Salesforce), not a calendar.
    pub crm: bool,
    /// Where the local value came from, when recorded.
    pub local_source: Option<Source>,
    /// Where the remote value came from (the provider: `crm` for a CRM).
    pub remote_source: Source,
    pub local_modified_at: Option<DateTime<Utc>>,
    pub remote_modified_at: Option<DateTime<Utc>>,
}

/// How a conflict came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The local value wins: it stays and goes to the provider.
    Local,
    /// The remote value wins: it replaces the local one.
    Remote,
    /// A new value made of both (notes): it replaces the local one and goes to the provider.
    Merged(Value),
    /// Parked for a person.
    Manual,
}

impl ConflictPolicy {
    /// Decides a conflict on `field` (both sides changed it, to different values).
    pub fn decide(
        &self,
        field: &str,
        local: Option<&Value>,
        remote: Option<&Value>,
        ctx: &ConflictContext,
    ) -> (Decision, Strategy) {
        match self.ownership.get(field) {
            Some(Ownership::Agent) => return (Decision::Local, Strategy::FieldOwnership),
            Some(Ownership::Human) => return (Decision::Remote, Strategy::FieldOwnership),
            Some(Ownership::Shared) | None => {}
        }
        if self.source_hierarchy
            && let Some(local_source) = ctx.local_source
            && local_source != ctx.remote_source
        {
            let winner = if local_source > ctx.remote_source { Decision::Local } else { Decision::Remote };
            return (winner, Strategy::SourceHierarchy);
        }
        if self.crm_wins_structured && ctx.crm && self.structured_fields.iter().any(|f| f == field) {
            return (Decision::Remote, Strategy::CrmWinsStructured);
        }
        if self.merge_notes
            && self.note_fields.iter().any(|f| f == field)
            && let Some(merged) = merge_text(local, remote)
        {
            return (merged, Strategy::MergeNotes);
        }
        match self.fallback {
            Fallback::LastWriteWins => {
                let local_newer = match (ctx.local_modified_at, ctx.remote_modified_at) {
                    (Some(l), Some(r)) => l > r,
                    (Some(_), None) => true,
                    _ => false,
                };
                let winner = if local_newer { Decision::Local } else { Decision::Remote };
                (winner, Strategy::LastWriteWins)
            }
            Fallback::Manual => (Decision::Manual, Strategy::Manual),
        }
    }
}

/// Both versions of a note, neither dropped: when one already contains the other it is kept as is
/// (so merging again changes nothing); otherwise the local text, a blank line, the remote text.
/// `None` when either side is not text.
fn merge_text(local: Option<&Value>, remote: Option<&Value>) -> Option<Decision> {
    let l = local.and_then(Value::as_str).unwrap_or_default();
    let r = remote.and_then(Value::as_str).unwrap_or_default();
    if local.is_some_and(|v| !v.is_string() && !v.is_null())
        || remote.is_some_and(|v| !v.is_string() && !v.is_null())
    {
        return None;
    }
    if l.contains(r) {
        return Some(Decision::Local);
    }
    if r.contains(l) {
        return Some(Decision::Remote);
    }
    Some(Decision::Merged(Value::String(format!("{l}\n\n{r}"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> ConflictContext {
        ConflictContext {
            crm: true,
            local_source: None,
            remote_source: Source::Crm,
            local_modified_at: None,
            remote_modified_at: None,
        }
    }

    #[test]
    fn ownership_decides_first() {
        let mut p = ConflictPolicy::default();
        p.ownership.insert("lead_score".into(), Ownership::Agent);
        p.ownership.insert("stage".into(), Ownership::Agent);
        p.ownership.insert("phone".into(), Ownership::Human);
        let (l, r) = (json!(1), json!(2));
        assert_eq!(
            p.decide("stage", Some(&l), Some(&r), &ctx()),
            (Decision::Local, Strategy::FieldOwnership)
        );
        assert_eq!(
            p.decide("phone", Some(&l), Some(&r), &ctx()),
            (Decision::Remote, Strategy::FieldOwnership)
        );
    }

    #[test]
    fn a_stronger_source_wins_over_a_weaker_one() {
        let p = ConflictPolicy::default();
        let (l, r) = (json!("a"), json!("b"));
        let stated = ConflictContext { local_source: Some(Source::UserStated), ..ctx() };
        assert_eq!(
            p.decide("email", Some(&l), Some(&r), &stated),
            (Decision::Local, Strategy::SourceHierarchy)
        );
        let web = ConflictContext { local_source: Some(Source::Web), ..ctx() };
        assert_eq!(
            p.decide("email", Some(&l), Some(&r), &web),
            (Decision::Remote, Strategy::SourceHierarchy)
        );
    }

    #[test]
    fn the_crm_wins_structured_fields_and_notes_are_merged() {
        let p = ConflictPolicy::default();
        let (l, r) = (json!("a"), json!("b"));
        assert_eq!(
            p.decide("stage", Some(&l), Some(&r), &ctx()),
            (Decision::Remote, Strategy::CrmWinsStructured)
        );
        let calendar = ConflictContext { crm: false, ..ctx() };
        assert_eq!(p.decide("status", Some(&l), Some(&r), &calendar), (Decision::Manual, Strategy::Manual));
        let (d, s) = p.decide("body", Some(&json!("ours")), Some(&json!("theirs")), &ctx());
        assert_eq!((d, s), (Decision::Merged(json!("ours\n\ntheirs")), Strategy::MergeNotes));
        // Merging the merged text with the same remote text again keeps it.
        let merged = json!("ours\n\ntheirs");
        assert_eq!(p.decide("body", Some(&merged), Some(&json!("theirs")), &ctx()).0, Decision::Local);
    }

    #[test]
    fn last_write_wins_compares_timestamps_and_ties_go_remote() {
        let p = ConflictPolicy::last_write_wins();
        let t = |s: i64| DateTime::from_timestamp(s, 0);
        let (l, r) = (json!(1), json!(2));
        let newer_local = ConflictContext { local_modified_at: t(20), remote_modified_at: t(10), ..ctx() };
        assert_eq!(p.decide("x", Some(&l), Some(&r), &newer_local).0, Decision::Local);
        let tie = ConflictContext { local_modified_at: t(10), remote_modified_at: t(10), ..ctx() };
        assert_eq!(p.decide("x", Some(&l), Some(&r), &tie).0, Decision::Remote);
        assert_eq!(ConflictPolicy::manual().decide("stage", Some(&l), Some(&r), &ctx()).0, Decision::Manual);
    }

    #[test]
    fn policy_json_rejects_unknown_fields_and_fills_defaults() {
        let p: ConflictPolicy = serde_json::from_value(json!({ "fallback": "last_write_wins" })).unwrap();
        assert_eq!(p.fallback, Fallback::LastWriteWins);
        assert!(p.crm_wins_structured);
        assert!(serde_json::from_value::<ConflictPolicy>(json!({ "falback": "manual" })).is_err());
    }
}
