//! Per-connection mappings: which provider property feeds which canonical field, and which provider
//! deal stage means which canonical lifecycle stage. Each adapter supplies sensible defaults; a
//! connection's settings override them (custom properties included).

use std::collections::BTreeMap;

/// Provider property <-> canonical field, for one object type of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldMap {
    /// `(provider property, canonical field)`, in a stable order; both sides unique.
    pairs: Vec<(String, String)>,
}

impl FieldMap {
    /// The adapter's defaults, as `(provider property, canonical field)` pairs.
    pub fn new(defaults: &[(&str, &str)]) -> Self {
        let mut map = Self::default();
        for (property, canonical) in defaults {
            map.set(canonical, property);
        }
        map
    }

    /// Applies a connection's overrides: canonical field -> provider property. A new canonical name
    /// adds a field (a custom property); an empty property removes the field from the mapping.
    pub fn with_overrides(mut self, overrides: Option<&BTreeMap<String, String>>) -> Self {
        for (canonical, property) in overrides.into_iter().flatten() {
            self.set(canonical, property);
        }
        self
    }

    fn set(&mut self, canonical: &str, property: &str) {
        self.pairs.retain(|(p, c)| c != canonical && p != property);
        if !property.trim().is_empty() {
            self.pairs.push((property.to_owned(), canonical.to_owned()));
        }
    }

    /// Provider property names to request.
    pub fn properties(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(p, _)| p.as_str())
    }

    pub fn canonical_of(&self, property: &str) -> Option<&str> {
        self.pairs.iter().find(|(p, _)| p == property).map(|(_, c)| c.as_str())
    }

    pub fn property_of(&self, canonical: &str) -> Option<&str> {
        self.pairs.iter().find(|(_, c)| c == canonical).map(|(p, _)| p.as_str())
    }

    /// `(provider property, canonical field)` pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(p, c)| (p.as_str(), c.as_str()))
    }
}

/// Provider deal/opportunity stage -> canonical lifecycle stage (`lead`, `opportunity`, `account`,
/// `lost`, ...). Matching ignores case and surrounding spaces, since stage labels are typed by people.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StageMap {
    stages: BTreeMap<String, String>,
}

impl StageMap {
    /// The adapter's defaults, as `(provider stage, lifecycle stage)` pairs.
    pub fn new(defaults: &[(&str, &str)]) -> Self {
        Self { stages: defaults.iter().map(|(s, l)| (Self::key(s), (*l).to_owned())).collect() }
    }

    /// A connection's overrides (provider stage -> lifecycle stage); an empty value removes a stage.
    pub fn with_overrides(mut self, overrides: &BTreeMap<String, String>) -> Self {
        for (stage, lifecycle) in overrides {
            if lifecycle.trim().is_empty() {
                self.stages.remove(&Self::key(stage));
            } else {
                self.stages.insert(Self::key(stage), lifecycle.clone());
            }
        }
        self
    }

    pub fn lifecycle(&self, stage: &str) -> Option<&str> {
        self.stages.get(&Self::key(stage)).map(String::as_str)
    }

    fn key(stage: &str) -> String {
        stage.trim().to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: &[(&str, &str)] = &[("email", "email"), ("firstname", "first_name"), ("phone", "phone")];

    #[test]
    fn overrides_rename_add_custom_properties_and_remove_fields() {
        let overrides: BTreeMap<String, String> = [
            ("first_name".to_owned(), "given_name".to_owned()),
            ("lead_score".to_owned(), "syncbridge_lead_score".to_owned()),
            ("phone".to_owned(), String::new()),
        ]
        .into();
        let map = FieldMap::new(DEFAULTS).with_overrides(Some(&overrides));
        assert_eq!(map.canonical_of("given_name"), Some("first_name"));
        assert_eq!(map.canonical_of("firstname"), None);
        assert_eq!(map.property_of("lead_score"), Some("syncbridge_lead_score"));
        assert_eq!(map.property_of("phone"), None);
        let props: Vec<&str> = map.properties().collect();
        assert_eq!(props, vec!["email", "given_name", "syncbridge_lead_score"]);
    }

    #[test]
    fn one_property_never_feeds_two_canonical_fields() {
        let overrides: BTreeMap<String, String> = [("work_email".to_owned(), "email".to_owned())].into();
        let map = FieldMap::new(DEFAULTS).with_overrides(Some(&overrides));
        assert_eq!(map.canonical_of("email"), Some("work_email"));
        assert_eq!(map.property_of("email"), None);
    }

    #[test]
    fn stage_map_matches_labels_loosely_and_takes_overrides() {
        let stages = StageMap::new(&[("Prospecting", "lead"), ("Closed Won", "account")])
            .with_overrides(&[("closed won".to_owned(), "customer".to_owned())].into());
        assert_eq!(stages.lifecycle(" prospecting "), Some("lead"));
        assert_eq!(stages.lifecycle("Closed Won"), Some("customer"));
        assert_eq!(stages.lifecycle("Negotiation"), None);
    }
}
