//! The CRM search endpoint's query language (filter groups, one sort, offset paging) and its limits.

use serde::Deserialize;
use serde_json::Value;

use super::store::{ObjectKind, Record, Store, parse_instant};

/// HubSpot's search limits (https://developers.hubspot.com/docs/api/crm/search, "Limitations"):
/// one query pages at most 10,000 results deep, at most 200 a page, at most 5 filter groups of at
/// most 6 filters and 18 filters in all; past any of them HubSpot answers 400 `VALIDATION_ERROR`.
pub const SEARCH_RESULT_CAP: usize = 10_000;
pub const SEARCH_MAX_LIMIT: usize = 200;
const MAX_GROUPS: usize = 5;
const MAX_FILTERS_PER_GROUP: usize = 6;
const MAX_FILTERS: usize = 18;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    #[serde(default)]
    pub filter_groups: Vec<FilterGroup>,
    #[serde(default)]
    pub sorts: Vec<Sort>,
    #[serde(default)]
    pub properties: Vec<String>,
    pub limit: Option<usize>,
    pub after: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct FilterGroup {
    #[serde(default)]
    pub filters: Vec<Filter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    pub property_name: String,
    pub operator: String,
    pub value: Option<Value>,
    #[serde(default)]
    pub values: Vec<Value>,
}

/// One sort: HubSpot takes a property name (`"createdate"`, `"-createdate"` for descending; the
/// form HubSpot's SDKs send, `sorts: list[str]`) or `{"propertyName", "direction"}`
/// (https://developers.hubspot.com/docs/api/crm/search).
#[derive(Debug, Deserialize)]
#[serde(from = "SortInput")]
pub struct Sort {
    pub property_name: String,
    pub direction: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SortInput {
    Name(String),
    Object {
        #[serde(rename = "propertyName")]
        property_name: String,
        #[serde(default = "ascending")]
        direction: String,
    },
}

impl From<SortInput> for Sort {
    fn from(input: SortInput) -> Self {
        match input {
            SortInput::Name(name) => match name.strip_prefix('-') {
                Some(name) => Sort { property_name: name.to_owned(), direction: "DESCENDING".into() },
                None => Sort { property_name: name, direction: ascending() },
            },
            SortInput::Object { property_name, direction } => Sort { property_name, direction },
        }
    }
}

fn ascending() -> String {
    "ASCENDING".into()
}

/// One page of matching ids, the total match count and the next offset.
#[derive(Debug, PartialEq, Eq)]
pub struct SearchPage {
    pub ids: Vec<u64>,
    pub total: usize,
    pub next_after: Option<usize>,
}

/// Why a search request is rejected (HubSpot answers 400 `VALIDATION_ERROR`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SearchError(pub String);

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Filter {
    fn matches(&self, store: &Store, kind: ObjectKind, id: u64, c: &Record) -> bool {
        let name = self.property_name.as_str();
        let want = self.value.as_ref().map(text);
        if let Some(have) = store.numeric(kind, id, c, name) {
            let want = want.as_deref().and_then(parse_instant);
            let ints = || self.values.iter().filter_map(|v| parse_instant(&text(v)));
            return match (self.operator.as_str(), want) {
                ("EQ", Some(w)) => have == w,
                ("NEQ", Some(w)) => have != w,
                ("GT", Some(w)) => have > w,
                ("GTE", Some(w)) => have >= w,
                ("LT", Some(w)) => have < w,
                ("LTE", Some(w)) => have <= w,
                ("HAS_PROPERTY", _) => true,
                ("NOT_HAS_PROPERTY", _) => false,
                ("IN", _) => ints().any(|w| w == have),
                ("NOT_IN", _) => !ints().any(|w| w == have),
                _ => false,
            };
        }
        let have = store.property(kind, id, c, name).map(|s| s.to_lowercase());
        let want = want.map(|s| s.to_lowercase());
        let in_values = self.values.iter().any(|v| Some(text(v).to_lowercase()) == have);
        match (self.operator.as_str(), have, want) {
            ("HAS_PROPERTY", h, _) => h.is_some(),
            ("NOT_HAS_PROPERTY", h, _) => h.is_none(),
            ("EQ", Some(h), Some(w)) => h == w,
            ("NEQ", h, Some(w)) => h.as_ref() != Some(&w),
            ("GT", Some(h), Some(w)) => h > w,
            ("GTE", Some(h), Some(w)) => h >= w,
            ("LT", Some(h), Some(w)) => h < w,
            ("LTE", Some(h), Some(w)) => h <= w,
            ("CONTAINS_TOKEN", Some(h), Some(w)) => h.contains(w.trim_matches('*')),
            ("IN", _, _) => in_values,
            ("NOT_IN", _, _) => !in_values,
            _ => false,
        }
    }

    fn validate(&self) -> Result<(), SearchError> {
        const OPS: &[&str] = &[
            "EQ",
            "NEQ",
            "GT",
            "GTE",
            "LT",
            "LTE",
            "HAS_PROPERTY",
            "NOT_HAS_PROPERTY",
            "IN",
            "NOT_IN",
            "CONTAINS_TOKEN",
        ];
        if !OPS.contains(&self.operator.as_str()) {
            return Err(SearchError(format!("Unsupported operator {}", self.operator)));
        }
        let needs_value =
            !matches!(self.operator.as_str(), "HAS_PROPERTY" | "NOT_HAS_PROPERTY" | "IN" | "NOT_IN");
        if needs_value && self.value.is_none() {
            return Err(SearchError(format!(
                "Filter on {} with operator {} requires a value",
                self.property_name, self.operator
            )));
        }
        Ok(())
    }

    /// The bounds this filter puts on `lastmodifieddate`, if it is a range filter on it.
    fn modified_bounds(&self) -> Option<(i64, i64)> {
        if !matches!(self.property_name.as_str(), "lastmodifieddate" | "hs_lastmodifieddate") {
            return None;
        }
        let w = self.value.as_ref().map(text).as_deref().and_then(parse_instant)?;
        match self.operator.as_str() {
            "EQ" => Some((w, w)),
            "GT" => Some((w.saturating_add(1), i64::MAX)),
            "GTE" => Some((w, i64::MAX)),
            "LT" => Some((i64::MIN, w.saturating_sub(1))),
            "LTE" => Some((i64::MIN, w)),
            _ => None,
        }
    }
}

impl SearchRequest {
    /// Runs the search: validates HubSpot's limits (200 a page, 10,000 results deep, 5 groups of
    /// 6 filters, 18 filters in all), then filters, sorts and pages. Archived records never match.
    pub fn run(&self, store: &Store, kind: ObjectKind) -> Result<SearchPage, SearchError> {
        let limit = self.limit.unwrap_or(10);
        if limit > SEARCH_MAX_LIMIT {
            return Err(SearchError(format!(
                "limit must be less than or equal to {SEARCH_MAX_LIMIT}, got {limit}"
            )));
        }
        let after = match &self.after {
            None => 0,
            Some(v) => text(v)
                .parse::<usize>()
                .map_err(|_| SearchError(format!("Invalid after value {}", text(v))))?,
        };
        if after + limit > SEARCH_RESULT_CAP {
            return Err(SearchError(format!(
                "Cannot page beyond {SEARCH_RESULT_CAP} results: after ({after}) + limit ({limit}) exceeds the maximum"
            )));
        }
        if self.filter_groups.len() > MAX_GROUPS {
            return Err(SearchError(format!("At most {MAX_GROUPS} filter groups are allowed")));
        }
        let mut count = 0;
        for g in &self.filter_groups {
            if g.filters.len() > MAX_FILTERS_PER_GROUP {
                return Err(SearchError(format!(
                    "At most {MAX_FILTERS_PER_GROUP} filters are allowed in a filter group"
                )));
            }
            count += g.filters.len();
            for f in &g.filters {
                f.validate()?;
            }
        }
        if count > MAX_FILTERS {
            return Err(SearchError(format!("At most {MAX_FILTERS} filters are allowed in total")));
        }
        if self.sorts.len() > 1 {
            return Err(SearchError("Only one sort is supported".into()));
        }

        let (lo, hi) = match self.filter_groups.as_slice() {
            [only] => only
                .filters
                .iter()
                .filter_map(Filter::modified_bounds)
                .fold((i64::MIN, i64::MAX), |(lo, hi), (a, b)| (lo.max(a), hi.min(b))),
            _ => (i64::MIN, i64::MAX),
        };
        let mut ids: Vec<u64> = if lo > hi { Vec::new() } else { store.modified_between(kind, lo, hi) };
        ids.retain(|id| {
            let Some(c) = store.get(kind, *id) else { return false };
            self.filter_groups.is_empty()
                || self.filter_groups.iter().any(|g| g.filters.iter().all(|f| f.matches(store, kind, *id, c)))
        });

        match self.sorts.first() {
            None => ids.sort_unstable(),
            Some(sort) => {
                let descending = sort.direction.eq_ignore_ascii_case("DESCENDING");
                let name = sort.property_name.as_str();
                let key = |id: &u64| {
                    let c = store.get(kind, *id);
                    let n = c.and_then(|c| store.numeric(kind, *id, c, name));
                    let s =
                        if n.is_none() { c.and_then(|c| store.property(kind, *id, c, name)) } else { None };
                    (n, s)
                };
                let mut keyed: Vec<_> = ids.iter().map(|id| (key(id), *id)).collect();
                keyed.sort();
                if descending {
                    keyed.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                }
                ids = keyed.into_iter().map(|(_, id)| id).collect();
            }
        }

        let total = ids.len();
        let page: Vec<u64> = ids.into_iter().skip(after).take(limit).collect();
        let end = after + page.len();
        let next_after = (end < total && !page.is_empty()).then_some(end);
        Ok(SearchPage { ids: page, total, next_after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    const C: ObjectKind = ObjectKind::Contacts;

    fn req(body: Value) -> SearchRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn search_filters_on_lastmodifieddate_sort_ascending_and_page_by_offset() {
        let mut store = Store::seeded(50, 3);
        let props = BTreeMap::from([("jobtitle".to_owned(), "Pilot".to_owned())]);
        let stamp = store.next_stamp();
        for id in [40, 7, 21] {
            assert!(store.update(C, id, &props, None).unwrap());
        }
        let body = json!({
            "filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": stamp.to_string()}]}],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            "limit": 2
        });
        let first = req(body.clone()).run(&store, C).unwrap();
        assert_eq!(first, SearchPage { ids: vec![40, 7], total: 3, next_after: Some(2) });
        let mut second = body;
        second["after"] = json!("2");
        assert_eq!(req(second).run(&store, C).unwrap().ids, vec![21]);
    }

    #[test]
    fn search_supports_each_comparison_operator_and_or_of_groups() {
        let store = Store::seeded(20, 3);
        let run = |op: &str, v: &str| {
            req(json!({"filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": op, "value": v}]}], "limit": 100}))
                .run(&store, C)
                .unwrap()
                .total
        };
        assert_eq!(run("EQ", "5"), 1);
        assert_eq!(run("NEQ", "5"), 19);
        assert_eq!(run("GT", "15"), 5);
        assert_eq!(run("GTE", "15"), 6);
        assert_eq!(run("LT", "3"), 2);
        assert_eq!(run("LTE", "3"), 3);
        let either = req(json!({"filterGroups": [
            {"filters": [{"propertyName": "hs_object_id", "operator": "LTE", "value": "2"}]},
            {"filters": [{"propertyName": "hs_object_id", "operator": "GTE", "value": "19"}]}
        ], "limit": 100}))
        .run(&store, C)
        .unwrap();
        assert_eq!(either.ids, vec![1, 2, 19, 20]);
    }

    #[test]
    fn search_rejects_paging_beyond_ten_thousand_and_oversized_pages() {
        let store = Store::seeded(10, 1);
        let deep = req(json!({"after": "9900", "limit": 200})).run(&store, C);
        assert!(deep.unwrap_err().0.contains("10000"));
        assert!(req(json!({"after": "9800", "limit": 200})).run(&store, C).is_ok());
        assert!(req(json!({"limit": 201})).run(&store, C).is_err());
        let bad_op = req(
            json!({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "LIKE", "value": "x"}]}]}),
        );
        assert!(bad_op.run(&store, C).is_err());
    }
}
