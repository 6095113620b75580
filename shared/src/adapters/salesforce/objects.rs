//! The Salesforce sObjects behind each canonical object type, their default field <-> canonical
//! field maps and stage map, and the conversion of raw values (REST JSON or Bulk CSV cells) to
//! canonical fields and back.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::SalesforceClient;
use crate::domain::mapping::FieldMap;
use crate::domain::record::Fields;
use crate::domain::{ExternalId, ObjectType, RemoteRecord};
use crate::ports::ProviderError;

/// Default field mappings, `(Salesforce field, canonical field)`.
pub const CONTACT_FIELDS: &[(&str, &str)] = &[
    ("Email", "email"),
    ("FirstName", "first_name"),
    ("LastName", "last_name"),
    ("Phone", "phone"),
    ("Title", "job_title"),
    ("AccountId", "company_ids"),
];
pub const ACCOUNT_FIELDS: &[(&str, &str)] = &[
    ("Name", "name"),
    ("Website", "domain"),
    ("Industry", "industry"),
    ("Phone", "phone"),
    ("BillingCity", "city"),
    ("BillingCountry", "country"),
];
pub const OPPORTUNITY_FIELDS: &[(&str, &str)] = &[
    ("Name", "name"),
    ("Amount", "amount"),
    ("StageName", "stage"),
    ("CloseDate", "close_date"),
    ("AccountId", "company_ids"),
];
pub const TASK_FIELDS: &[(&str, &str)] = &[
    ("Subject", "subject"),
    ("Status", "status"),
    ("ActivityDate", "due_date"),
    ("Description", "description"),
    ("WhoId", "who_id"),
    ("WhatId", "what_id"),
];
pub const EVENT_FIELDS: &[(&str, &str)] = &[
    ("Subject", "subject"),
    ("StartDateTime", "start"),
    ("EndDateTime", "end"),
    ("Description", "description"),
    ("WhoId", "who_id"),
    ("WhatId", "what_id"),
];
/// `ParentId` feeds `contact_ids`, `company_ids` or `deal_ids` by the parent's key prefix; it is
/// mapped under the pseudo-field `parent_ids`.
pub const NOTE_FIELDS: &[(&str, &str)] =
    &[("Body", "body"), ("CreatedDate", "timestamp"), ("ParentId", "parent_ids")];
const PARENT: &str = "parent_ids";

/// Salesforce's default opportunity stages -> canonical lifecycle stage.
pub const STAGES: &[(&str, &str)] = &[
    ("Prospecting", "lead"),
    ("Qualification", "lead"),
    ("Needs Analysis", "opportunity"),
    ("Value Proposition", "opportunity"),
    ("Id. Decision Makers", "opportunity"),
    ("Perception Analysis", "opportunity"),
    ("Proposal/Price Quote", "opportunity"),
    ("Negotiation/Review", "opportunity"),
    ("Closed Won", "account"),
    ("Closed Lost", "lost"),
];

/// The sObjects behind a canonical object type, in pull order.
pub(super) fn sobjects(object: ObjectType) -> Option<&'static [&'static str]> {
    match object {
        ObjectType::Contacts => Some(&["Contact"]),
        ObjectType::Companies => Some(&["Account"]),
        ObjectType::Deals => Some(&["Opportunity"]),
        ObjectType::Activities => Some(&["Task", "Event"]),
        ObjectType::Notes => Some(&["Note"]),
        _ => None,
    }
}

pub(super) fn defaults(sobject: &str) -> &'static [(&'static str, &'static str)] {
    match sobject {
        "Contact" => CONTACT_FIELDS,
        "Account" => ACCOUNT_FIELDS,
        "Opportunity" => OPPORTUNITY_FIELDS,
        "Task" => TASK_FIELDS,
        "Event" => EVENT_FIELDS,
        _ => NOTE_FIELDS,
    }
}

/// The object of a record id, by its key prefix.
pub(super) fn sobject_of_id(id: &str) -> Option<&'static str> {
    match id.get(..3)? {
        "003" => Some("Contact"),
        "001" => Some("Account"),
        "006" => Some("Opportunity"),
        "00T" => Some("Task"),
        "00U" => Some("Event"),
        "002" => Some("Note"),
        _ => None,
    }
}

pub(super) fn parse_sf_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn host_of_website(url: &str) -> String {
    let rest = url.trim().split_once("://").map(|(_, r)| r).unwrap_or(url.trim());
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    host.strip_prefix("www.").unwrap_or(host).to_lowercase()
}

/// A raw Salesforce value (REST JSON or a CSV cell) as a canonical value.
fn canonical_value(canonical: &str, raw: &Value) -> Value {
    let text = match raw {
        Value::Null => return Value::Null,
        Value::String(s) if s.is_empty() => return Value::Null,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match canonical {
        c if c.ends_with("_ids") => json!([text]),
        "amount" => match raw {
            Value::Number(_) => raw.clone(),
            _ => text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or(Value::String(text)),
        },
        "timestamp" | "start" | "end" => match parse_sf_datetime(&text) {
            Some(d) => Value::String(d.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            None => Value::String(text),
        },
        "domain" => Value::String(host_of_website(&text)),
        _ => match raw {
            Value::String(_) => Value::String(text),
            other => other.clone(),
        },
    }
}

impl SalesforceClient {
    fn map(&self, sobject: &str) -> Result<&FieldMap, ProviderError> {
        self.maps.get(sobject).ok_or_else(|| ProviderError::permanent(format!("no field map for {sobject}")))
    }

    pub(super) fn select_list(&self, sobject: &str) -> Result<Vec<String>, ProviderError> {
        let mut fields = vec!["Id".to_owned(), "SystemModstamp".to_owned()];
        for p in self.map(sobject)?.properties() {
            if !fields.iter().any(|f| f.eq_ignore_ascii_case(p)) {
                fields.push(p.to_owned());
            }
        }
        Ok(fields)
    }

    /// Maps one record (REST JSON or a CSV row as strings) to a remote record.
    pub(super) fn to_remote(
        &self,
        object: ObjectType,
        sobject: &str,
        row: &Map<String, Value>,
    ) -> Result<RemoteRecord, ProviderError> {
        let id = row.get("Id").and_then(Value::as_str).unwrap_or_default();
        let external_id = ExternalId::parse(id.to_owned()).map_err(|_| {
            ProviderError::permanent(format!("Salesforce returned a {sobject} without an Id"))
        })?;
        let fields = self.canonical_fields(object, sobject, row)?;
        let modified = row.get("SystemModstamp").and_then(Value::as_str).and_then(parse_sf_datetime);
        Ok(RemoteRecord {
            external_id,
            object,
            fields,
            remote_modified_at: modified,
            deleted: false,
            etag: None,
        })
    }

    fn canonical_fields(
        &self,
        object: ObjectType,
        sobject: &str,
        row: &Map<String, Value>,
    ) -> Result<Fields, ProviderError> {
        let mut fields = Fields::new();
        for (property, canonical) in self.map(sobject)?.pairs() {
            let Some(raw) = row.get(property) else { continue };
            if canonical == PARENT {
                let target = match raw.as_str().and_then(sobject_of_id) {
                    Some("Contact") => "contact_ids",
                    Some("Opportunity") => "deal_ids",
                    _ => "company_ids",
                };
                fields.insert(target.to_owned(), canonical_value(target, raw));
                continue;
            }
            let value = canonical_value(canonical, raw);
            if canonical == "stage" {
                let lifecycle = value.as_str().and_then(|s| self.stages.lifecycle(s)).map(str::to_owned);
                fields.insert(
                    "lifecycle_stage".to_owned(),
                    lifecycle.map(Value::String).unwrap_or(Value::Null),
                );
            }
            fields.insert(canonical.to_owned(), value);
        }
        if object == ObjectType::Activities {
            fields.insert("kind".to_owned(), json!(if sobject == "Event" { "event" } else { "task" }));
        }
        Ok(fields)
    }

    /// Canonical fields -> Salesforce fields for a write.
    pub(super) fn provider_fields(
        &self,
        sobject: &str,
        fields: &Fields,
    ) -> Result<Map<String, Value>, ProviderError> {
        let map = self.map(sobject)?;
        let mut out = Map::new();
        for (canonical, value) in fields {
            let ids_first = || value.as_array().and_then(|a| a.first()).cloned().unwrap_or(Value::Null);
            if sobject == "Note" && matches!(canonical.as_str(), "contact_ids" | "company_ids" | "deal_ids") {
                if let Some(p) = map.property_of(PARENT)
                    && (!out.contains_key(p) || canonical == "deal_ids")
                {
                    out.insert(p.to_owned(), ids_first());
                }
                continue;
            }
            let Some(property) = map.property_of(canonical) else { continue };
            if property.eq_ignore_ascii_case("CreatedDate") {
                continue;
            }
            let v = if canonical.ends_with("_ids") { ids_first() } else { value.clone() };
            out.insert(property.to_owned(), v);
        }
        if sobject == "Note" && !out.contains_key("Title") {
            let body = fields.get("body").and_then(Value::as_str).unwrap_or("Note");
            out.insert("Title".to_owned(), Value::String(body.chars().take(80).collect()));
        }
        Ok(out)
    }

    pub(super) fn rows_to_records(
        &self,
        object: ObjectType,
        sobject: &str,
        rows: &[Map<String, Value>],
    ) -> Result<Vec<RemoteRecord>, ProviderError> {
        rows.iter().map(|r| self.to_remote(object, sobject, r)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_canonical_whatever_the_wire_format() {
        assert_eq!(canonical_value("company_ids", &json!("001A")), json!(["001A"]));
        assert_eq!(canonical_value("company_ids", &Value::Null), Value::Null);
        assert_eq!(canonical_value("amount", &json!("1200.5")), json!(1200.5));
        assert_eq!(canonical_value("amount", &json!(1200.5)), json!(1200.5));
        assert_eq!(
            canonical_value("start", &json!("2024-01-01T10:00:00.000+0000")),
            json!("2024-01-01T10:00:00Z")
        );
        assert_eq!(
            canonical_value("start", &json!("2024-01-01T10:00:00.000Z")),
            json!("2024-01-01T10:00:00Z")
        );
        assert_eq!(canonical_value("domain", &json!("https://www.Acme.com/about")), json!("acme.com"));
        assert_eq!(canonical_value("phone", &json!("")), Value::Null);
    }
}
