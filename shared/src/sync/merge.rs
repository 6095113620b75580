//! Field-level three-way merge of a pulled record against the stored one and its base.

use crate::domain::record::Fields;
use serde_json::Value;

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
    pub conflicts: Vec<(String, FieldOutcome)>,
}

/// Merges `remote` into `local` against `base`, field by field. Conflicts keep the local value and
/// the old base (nothing is lost) and are reported for the connection's policy to decide.
pub fn merge(base: &Fields, local: &Fields, remote: &Fields) -> Merged {
    let mut names: Vec<&String> = base.keys().chain(local.keys()).chain(remote.keys()).collect();
    names.sort();
    names.dedup();
    let mut out = Merged::default();
    for name in names {
        let (b, l, r) = (base.get(name), local.get(name), remote.get(name));
        let outcome = classify(b, l, r);
        let (new_local, new_base) = match &outcome {
            FieldOutcome::Same => (l, b),
            FieldOutcome::TakeRemote | FieldOutcome::Converged => (r, r),
            FieldOutcome::KeepLocal => (l, b),
            FieldOutcome::Conflict { .. } => (l, b),
        };
        if let Some(v) = new_local {
            out.fields.insert(name.clone(), v.clone());
        }
        if let Some(v) = new_base {
            out.base.insert(name.clone(), v.clone());
        }
        if new_local != l {
            out.changed.push(name.clone());
        }
        match outcome {
            FieldOutcome::KeepLocal => out.local_only.push(name.clone()),
            FieldOutcome::Conflict { .. } => out.conflicts.push((name.clone(), outcome)),
            _ => {}
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

    fn fields() -> impl Strategy<Value = Fields> {
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
}
