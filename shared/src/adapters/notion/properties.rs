//! Notion property values <-> canonical field values, by property type, and the default field
//! maps of the two object types (a tenant's `field_mapping` overrides them).
//!
//! Reading: `title`/`rich_text` become their plain text (`null` when empty), `number` and
//! `checkbox` stay, `select`/`status` become the option's name, `date` its `start`,
//! `email`/`phone_number`/`url` their string, `people` and `relation` lists of ids,
//! `multi_select` a list of names. Writing does the reverse against the data source's schema
//! (the type of each property), within Notion's request limits
//! (<https://developers.notion.com/reference/request-limits>): text is cut into rich-text objects
//! of at most 2000 characters, at most 100 of them; lists hold at most 100 items.

use serde_json::{Value, json};

use crate::ports::ProviderError;

/// Notion property -> canonical field of deals: the columns of a CRM deals database.
pub const DEAL_FIELDS: &[(&str, &str)] = &[
    ("Name", "name"),
    ("Stage", "stage"),
    ("Value", "amount"),
    ("Close date", "close_date"),
    ("Probability", "probability"),
    ("Source", "source"),
    ("Contact", "contact_ids"),
];

/// Notion property -> canonical field of contacts.
pub const CONTACT_FIELDS: &[(&str, &str)] =
    &[("Name", "name"), ("Email", "email"), ("Phone", "phone"), ("Company", "company")];

/// Characters of one rich-text object, and items of any list, that Notion accepts in a request.
pub const MAX_TEXT: usize = 2000;
pub const MAX_ITEMS: usize = 100;

fn plain_text(items: &Value) -> String {
    items
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.get("plain_text").and_then(Value::as_str)).collect())
        .unwrap_or_default()
}

/// The canonical value of a page's property value object (`{"type": "number", "number": 3}`);
/// `None` for types that are not synced (formulas, rollups, files, ...).
pub fn to_canonical(property: &Value) -> Option<Value> {
    let kind = property.get("type")?.as_str()?;
    let v = property.get(kind).unwrap_or(&Value::Null);
    Some(match kind {
        "title" | "rich_text" => {
            let text = plain_text(v);
            if text.is_empty() { Value::Null } else { Value::String(text) }
        }
        "number" | "checkbox" | "email" | "phone_number" | "url" => v.clone(),
        "select" | "status" => v.get("name").cloned().unwrap_or(Value::Null),
        "date" => v.get("start").cloned().unwrap_or(Value::Null),
        "people" | "relation" => {
            Value::Array(v.as_array().into_iter().flatten().filter_map(|x| x.get("id").cloned()).collect())
        }
        "multi_select" => {
            Value::Array(v.as_array().into_iter().flatten().filter_map(|x| x.get("name").cloned()).collect())
        }
        _ => return None,
    })
}

fn refuse(property: &str, why: impl std::fmt::Display) -> ProviderError {
    ProviderError::permanent(format!("Notion property `{property}`: {why}"))
}

/// Text as rich-text objects of at most [`MAX_TEXT`] characters each.
pub fn rich_text(text: &str, property: &str) -> Result<Value, ProviderError> {
    let chars: Vec<char> = text.chars().collect();
    let parts: Vec<Value> = chars
        .chunks(MAX_TEXT)
        .map(|c| json!({ "type": "text", "text": { "content": c.iter().collect::<String>() } }))
        .collect();
    if parts.len() > MAX_ITEMS {
        return Err(refuse(property, format!("text longer than {} characters", MAX_TEXT * MAX_ITEMS)));
    }
    Ok(Value::Array(parts))
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn ids(v: &Value, property: &str) -> Result<Value, ProviderError> {
    let list: Vec<String> = match v {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(as_text).collect(),
        other => return Err(refuse(property, format!("expected a list of ids, got {other}"))),
    };
    if list.len() > MAX_ITEMS {
        return Err(refuse(property, format!("{} items (Notion takes at most {MAX_ITEMS})", list.len())));
    }
    Ok(Value::Array(list.into_iter().map(|id| json!({ "id": id })).collect()))
}

/// The property value object that writes canonical `value` to a property of type `kind`.
pub fn to_notion(kind: &str, value: &Value, property: &str) -> Result<Value, ProviderError> {
    let text = as_text(value);
    let inner = match (kind, value) {
        ("title" | "rich_text", Value::Null) => json!([]),
        ("title" | "rich_text", _) => rich_text(&text.unwrap_or_else(|| value.to_string()), property)?,
        ("number", Value::Null | Value::Number(_)) => value.clone(),
        ("number", Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| refuse(property, format!("`{s}` is not a number")))?,
        ("checkbox", Value::Bool(_)) => value.clone(),
        ("checkbox", Value::Null) => Value::Bool(false),
        ("email" | "phone_number", _) | ("url", _) if value.is_null() => Value::Null,
        ("email" | "phone_number", _) => {
            let s = text.ok_or_else(|| refuse(property, "expected text"))?;
            if s.chars().count() > 200 {
                return Err(refuse(property, "longer than 200 characters"));
            }
            Value::String(s)
        }
        ("url", _) => Value::String(text.ok_or_else(|| refuse(property, "expected text"))?),
        ("select", Value::Null) => Value::Null,
        ("select" | "status", _) => {
            let name = text.ok_or_else(|| refuse(property, "expected an option name"))?;
            if name.contains(',') {
                return Err(refuse(property, "option names cannot contain commas"));
            }
            json!({ "name": name })
        }
        ("date", Value::Null) => Value::Null,
        ("date", _) => json!({ "start": text.ok_or_else(|| refuse(property, "expected an ISO 8601 date"))? }),
        ("people" | "relation", _) => ids(value, property)?,
        ("multi_select", _) => {
            let names = ids(value, property)?;
            Value::Array(
                names.as_array().into_iter().flatten().map(|n| json!({ "name": n["id"].clone() })).collect(),
            )
        }
        (other, _) => return Err(refuse(property, format!("a {other} property cannot take {value}"))),
    };
    let mut out = json!({});
    out[kind] = inner;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_synced_type_reads_as_its_canonical_value() {
        let cases = [
            (
                json!({ "type": "title", "title": [{ "plain_text": "Acme " }, { "plain_text": "renewal" }] }),
                json!("Acme renewal"),
            ),
            (json!({ "type": "rich_text", "rich_text": [] }), Value::Null),
            (json!({ "type": "number", "number": 12.5 }), json!(12.5)),
            (
                json!({ "type": "select", "select": { "id": "x", "name": "Inbound", "color": "green" } }),
                json!("Inbound"),
            ),
            (json!({ "type": "status", "status": { "name": "Won" } }), json!("Won")),
            (json!({ "type": "select", "select": null }), Value::Null),
            (json!({ "type": "date", "date": { "start": "2027-01-31", "end": null } }), json!("2027-01-31")),
            (json!({ "type": "email", "email": "a@b.c" }), json!("a@b.c")),
            (json!({ "type": "phone_number", "phone_number": null }), Value::Null),
            (json!({ "type": "people", "people": [{ "object": "user", "id": "u1" }] }), json!(["u1"])),
            (
                json!({ "type": "relation", "relation": [{ "id": "p1" }, { "id": "p2" }], "has_more": false }),
                json!(["p1", "p2"]),
            ),
            (json!({ "type": "checkbox", "checkbox": true }), json!(true)),
        ];
        for (property, expected) in cases {
            assert_eq!(to_canonical(&property), Some(expected), "{property}");
        }
        assert_eq!(to_canonical(&json!({ "type": "formula", "formula": {} })), None);
    }

    #[test]
    fn writes_follow_the_property_type_and_notions_limits() {
        assert_eq!(to_notion("number", &json!("1200.5"), "Value").unwrap(), json!({ "number": 1200.5 }));
        assert_eq!(
            to_notion("status", &json!("Won"), "Stage").unwrap(),
            json!({ "status": { "name": "Won" } })
        );
        assert_eq!(to_notion("select", &Value::Null, "Source").unwrap(), json!({ "select": null }));
        assert_eq!(
            to_notion("date", &json!("2027-01-31"), "Close").unwrap(),
            json!({ "date": { "start": "2027-01-31" } })
        );
        assert_eq!(
            to_notion("relation", &json!(["p1"]), "Contact").unwrap(),
            json!({ "relation": [{ "id": "p1" }] })
        );
        assert_eq!(to_notion("rich_text", &Value::Null, "Notes").unwrap(), json!({ "rich_text": [] }));
        let long = to_notion("rich_text", &json!("x".repeat(4500)), "Notes").unwrap();
        let parts = long["rich_text"].as_array().unwrap();
        assert_eq!(parts.len(), 3, "cut into objects of at most 2000 characters");
        assert!(parts.iter().all(|p| p["text"]["content"].as_str().unwrap().chars().count() <= MAX_TEXT));
        assert!(to_notion("rich_text", &json!("x".repeat(MAX_TEXT * MAX_ITEMS + 1)), "Notes").is_err());
        assert!(to_notion("number", &json!("lots"), "Value").is_err());
        assert!(to_notion("select", &json!("a,b"), "Source").is_err());
        assert!(
            to_notion("relation", &json!((0..101).map(|i| i.to_string()).collect::<Vec<_>>()), "Contact")
                .is_err()
        );
        assert!(to_notion("formula", &json!(1), "F").is_err());
    }

    #[test]
    fn a_value_read_and_written_back_is_the_same_notion_value() {
        for (kind, canonical) in [
            ("title", json!("Deal")),
            ("number", json!(3)),
            ("status", json!("Lead")),
            ("date", json!("2027-02-01")),
        ] {
            let written = to_notion(kind, &canonical, "P").unwrap();
            let mut read = written.clone();
            read["type"] = json!(kind);
            if kind == "title" {
                read["title"][0]["plain_text"] = json!("Deal");
            }
            assert_eq!(to_canonical(&read), Some(canonical), "{kind}");
        }
    }
}
