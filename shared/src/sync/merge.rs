//! Field-level three-way merge of a pulled record against the stored one and its base.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::domain::policy::{ConflictContext, ConflictPolicy, Decision, Source, Strategy};
use crate::domain::record::Fields;

/// How one field came out of the merge.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldOutcome {
    /// Neither side changed it.
    Same,
    /// Only the remote side changed it: the local value takes the remote one.
    TakeRemote,
    /// Only the local side changed it: it stays, and goes out as a push.
    KeepLocal,
    /// Both sides changed it to the same value.
    Converged,
    /// Both sides changed it differently: decided by policy, never silently.
    Conflict { base: Option<Value>, local: Option<Value>, remote: Option<Value> },
}

/// The merge of one record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Merged {
    /// The new local fields.
    pub fields: Fields,
    /// The new base: every field both sides now agree on.
    pub base: Fields,
    /// Fields that differ between the stored and the new local value.
    pub changed: Vec<String>,
    /// Fields changed locally only (to push).
    pub local_only: Vec<String>,
    /// Conflicts the policy decided: field, decision, deciding step, and the three values.
    pub decided: Vec<Decided>,
    /// Conflicts parked for a person (the policy said manual): the local value and the old base
    /// stay until someone resolves them.
    pub conflicts: Vec<(String, FieldOutcome)>,
    /// Fields whose new local value the provider does not have yet: local-only changes, conflicts
    /// the local side won and merged notes.
    pub to_push: Vec<String>,
}

/// A conflict decided by policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub field: String,
    pub decision: Decision,
    pub strategy: Strategy,
    pub base: Option<Value>,
    pub local: Option<Value>,
    pub remote: Option<Value>,
}

/// Merges `remote` into `local` against `base`, field by field, parking every conflict (the
/// `manual` policy).
pub fn merge(base: &Fields, local: &Fields, remote: &Fields) -> Merged {
    let ctx = ConflictContext {
        crm: false,
        local_source: None,
        remote_source: Source::Crm,
        local_modified_at: None,
        remote_modified_at: None,
    };
    merge_with(base, local, remote, &ConflictPolicy::manual(), &ctx, &BTreeMap::new())
}

/// Merges `remote` into `local` against `base`, field by field; conflicts are decided by `policy`,
/// and those it leaves to a person keep the local value and the old base (nothing is lost).
pub fn merge_with(
    base: &Fields,
    local: &Fields,
    remote: &Fields,
    policy: &ConflictPolicy,
    ctx: &ConflictContext,
    local_sources: &BTreeMap<String, Source>,
) -> Merged {
    let mut names: Vec<&String> = base.keys().chain(local.keys()).chain(remote.keys()).collect();
    names.sort();
    names.dedup();
    let mut out = Merged::default();
    for name in names {
        let (b, l, r) = (base.get(name), local.get(name), remote.get(name));
        let outcome = classify(b, l, r);
        let mut merged_value = None;
        let (new_local, new_base, push) = match &outcome {
            FieldOutcome::Same => (l, b, false),
            FieldOutcome::TakeRemote | FieldOutcome::Converged => (r, r, false),
            FieldOutcome::KeepLocal => {
                out.local_only.push(name.clone());
                (l, b, true)
            }
            FieldOutcome::Conflict { .. } => {
                let field_ctx = ConflictContext {
                    local_source: local_sources.get(name).copied().or(ctx.local_source),
                    ..*ctx
                };
                let (decision, strategy) = policy.decide(name, l, r, &field_ctx);
                let decided = match &decision {
                    Decision::Local => (l, b, true),
                    Decision::Remote => (r, r, false),
                    Decision::Merged(v) => {
                        merged_value = Some(v.clone());
                        (None, b, true)
                    }
                    Decision::Manual => {
                        out.conflicts.push((name.clone(), outcome.clone()));
                        (l, b, false)
                    }
                };
                if decision != Decision::Manual {
                    out.decided.push(Decided {
                        field: name.clone(),
                        decision,
                        strategy,
                        base: b.cloned(),
                        local: l.cloned(),
                        remote: r.cloned(),
                    });
                }
                decided
            }
        };
        let new_local = merged_value.as_ref().or(new_local);
        if let Some(v) = new_local {
            out.fields.insert(name.clone(), v.clone());
        }
        if let Some(v) = new_base {
            out.base.insert(name.clone(), v.clone());
        }
        if new_local != l {
            out.changed.push(name.clone());
        }
        if push {
            out.to_push.push(name.clone());
        }
    }
    out
}

fn classify(b: Option<&Value>, l: Option<&Value>, r: Option<&Value>) -> FieldOutcome {
    match (l == b, r == b) {
        (true, true) => FieldOutcome::Same,
        (true, false) => FieldOutcome::TakeRemote,
        (false, true) => FieldOutcome::KeepLocal,
        (false, false) if l == r => FieldOutcome::Converged,
        (false, false) => FieldOutcome::Conflict { base: b.cloned(), local: l.cloned(), remote: r.cloned() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn f(pairs: &[(&str, Value)]) -> Fields {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn remote_only_change_is_taken_and_becomes_the_base() {
        let base = f(&[("email", json!("a@x")), ("phone", json!("1"))]);
        let remote = f(&[("email", json!("b@x")), ("phone", json!("1"))]);
        let m = merge(&base, &base, &remote);
        assert_eq!(m.fields, remote);
        assert_eq!(m.base, remote);
        assert_eq!(m.changed, vec!["email"]);
        assert!(m.conflicts.is_empty());
    }

    #[test]
    fn local_only_change_is_kept_for_push() {
        let base = f(&[("email", json!("a@x"))]);
        let local = f(&[("email", json!("mine@x"))]);
        let m = merge(&base, &local, &base);
        assert_eq!(m.fields, local);
        assert_eq!(m.base, base);
        assert_eq!(m.local_only, vec!["email"]);
        assert!(m.changed.is_empty());
    }

    #[test]
    fn different_changes_on_both_sides_are_a_conflict_that_loses_nothing() {
        let base = f(&[("email", json!("a@x"))]);
        let local = f(&[("email", json!("l@x"))]);
        let remote = f(&[("email", json!("r@x"))]);
        let m = merge(&base, &local, &remote);
        assert_eq!(m.fields, local);
        assert_eq!(m.base, base);
        assert_eq!(m.conflicts.len(), 1);
        assert_eq!(
            m.conflicts[0].1,
            FieldOutcome::Conflict {
                base: Some(json!("a@x")),
                local: Some(json!("l@x")),
                remote: Some(json!("r@x"))
            }
        );
    }

    #[test]
    fn field_removed_remotely_is_removed_locally() {
        let base = f(&[("phone", json!("1"))]);
        let m = merge(&base, &base, &Fields::new());
        assert!(m.fields.is_empty());
        assert_eq!(m.changed, vec!["phone"]);
    }

    fn fields() -> impl proptest::strategy::Strategy<Value = Fields> {
        proptest::collection::btree_map(
            "[a-c]",
            prop_oneof![Just(json!(1)), Just(json!(2)), Just(json!(3))],
            0..3,
        )
    }

    proptest! {
        #[test]
        fn merge_never_loses_a_value_and_is_idempotent(base in fields(), local in fields(), remote in fields()) {
            let m = merge(&base, &local, &remote);
            for (name, v) in &m.fields {
                prop_assert!(local.get(name) == Some(v) || remote.get(name) == Some(v));
            }
            for (name, _) in &m.conflicts {
                prop_assert_eq!(m.fields.get(name), local.get(name));
            }
            // Merging the same remote again changes nothing more.
            let again = merge(&m.base, &m.fields, &remote);
            prop_assert!(again.changed.is_empty());
            if m.conflicts.is_empty() && m.local_only.is_empty() {
                prop_assert_eq!(&m.fields, &remote);
            }
        }
    }

    fn policies() -> impl proptest::strategy::Strategy<Value = ConflictPolicy> {
        prop_oneof![
            Just(ConflictPolicy::default()),
            Just(ConflictPolicy::manual()),
            Just(ConflictPolicy::last_write_wins()),
            Just(ConflictPolicy {
                ownership: [("a".to_owned(), crate::domain::Ownership::Agent)].into(),
                ..ConflictPolicy::last_write_wins()
            }),
        ]
    }

    fn text_fields() -> impl proptest::strategy::Strategy<Value = Fields> {
        proptest::collection::btree_map(
            prop_oneof![Just("a".to_owned()), Just("body".to_owned()), Just("stage".to_owned())],
            prop_oneof![Just(json!("x")), Just(json!("y")), Just(json!(3))],
            0..3,
        )
    }

    proptest! {
        #[test]
        fn every_policy_decision_is_stable_and_loses_no_edit_silently(
            base in text_fields(), local in text_fields(), remote in text_fields(),
            policy in policies(), local_newer in any::<bool>(), crm in any::<bool>(),
        ) {
            let t = |s| chrono::DateTime::from_timestamp(s, 0);
            let ctx = ConflictContext {
                crm,
                local_source: None,
                remote_source: Source::Crm,
                local_modified_at: if local_newer { t(20) } else { t(10) },
                remote_modified_at: t(15),
            };
            let m = merge_with(&base, &local, &remote, &policy, &ctx, &BTreeMap::new());
            for d in &m.decided {
                match &d.decision {
                    Decision::Remote => prop_assert_eq!(m.fields.get(&d.field), remote.get(&d.field)),
                    Decision::Local => {
                        prop_assert_eq!(m.fields.get(&d.field), local.get(&d.field));
                        prop_assert!(m.to_push.contains(&d.field));
                    }
                    Decision::Merged(v) => prop_assert_eq!(m.fields.get(&d.field), Some(v)),
                    Decision::Manual => prop_assert!(false, "manual decisions are parked, not decided"),
                }
            }
            // A local edit replaced by something else was either a decided conflict (audited) or
            // not an edit at all (local equal to base).
            for name in &m.changed {
                let edited = local.get(name) != base.get(name);
                prop_assert!(!edited || m.decided.iter().any(|d| &d.field == name));
            }
            // Parked conflicts keep the local value.
            for (name, _) in &m.conflicts {
                prop_assert_eq!(m.fields.get(name), local.get(name));
            }
            // The same remote again decides nothing new.
            let again = merge_with(&m.base, &m.fields, &remote, &policy, &ctx, &BTreeMap::new());
            prop_assert!(again.changed.is_empty(), "{:?}", again);
        }
    }
}
