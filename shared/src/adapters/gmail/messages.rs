//! Gmail messages <-> canonical `messages` records: the default property map, addresses as sorted
//! lowercase emails (the key that links a message to CRM contacts), labels as sorted label ids, the
//! receive date as UTC RFC 3339, and the text body only when a connection's field mapping names
//! `body`.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use chrono::{DateTime, SecondsFormat};
use serde_json::{Value, json};

use crate::domain::mapping::FieldMap;
use crate::domain::record::Fields;
use crate::domain::{ExternalId, ObjectType, RemoteRecord};
use crate::ports::ProviderError;

/// Gmail property -> canonical field. `from`, `to`, `cc` and `subject` are headers; `participants`
/// is every address of `from`, `to` and `cc` (sorted, unique, lowercase), the field a message is
/// linked to CRM contacts by (a contact whose `email` is one of them). `body` (the `text/plain`
/// text) is not in the defaults: a connection's field mapping adds it (`{"messages": {"body":
/// "body"}}`), and only then are messages read with `format=full`.
pub const DEFAULT_FIELDS: &[(&str, &str)] = &[
    ("threadId", "thread_id"),
    ("from", "from"),
    ("to", "to"),
    ("cc", "cc"),
    ("subject", "subject"),
    ("snippet", "snippet"),
    ("labelIds", "labels"),
    ("internalDate", "date"),
    ("participants", "participants"),
];

/// The headers a `format=metadata` read asks for.
pub const METADATA_HEADERS: &[&str] = &["From", "To", "Cc", "Subject"];

/// The addresses in an address-list header (`Jane <jane@x.example>, bob@y.example`), lowercase.
pub fn addresses(header: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut angle = false;
    for c in header.chars().chain(std::iter::once(',')) {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                let item = std::mem::take(&mut current);
                let addr = match (item.rfind('<'), item.rfind('>')) {
                    (Some(a), Some(b)) if a < b => item[a + 1..b].to_owned(),
                    _ => item.clone(),
                };
                let addr = addr.trim().trim_matches('"').to_lowercase();
                if addr.contains('@') && !addr.contains(char::is_whitespace) {
                    out.push(addr);
                }
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out
}

fn header<'a>(message: &'a Value, name: &str) -> Option<&'a str> {
    message.pointer("/payload/headers")?.as_array()?.iter().find_map(|h| {
        let n = h.get("name")?.as_str()?;
        n.eq_ignore_ascii_case(name).then(|| h.get("value").and_then(Value::as_str)).flatten()
    })
}

/// The `text/plain` text of a `format=full` message: the first such part, depth first.
fn plain_text(part: &Value) -> Option<String> {
    let mime = part.get("mimeType").and_then(Value::as_str).unwrap_or("");
    if mime.starts_with("text/plain")
        && let Some(data) = part.pointer("/body/data").and_then(Value::as_str)
    {
        let bytes =
            URL_SAFE.decode(data).or_else(|_| URL_SAFE_NO_PAD.decode(data.trim_end_matches('='))).ok()?;
        return Some(String::from_utf8_lossy(&bytes).into_owned());
    }
    part.get("parts")?.as_array()?.iter().find_map(plain_text)
}

fn sorted_unique(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// A message's value of one Gmail property, as canonical JSON.
fn property(message: &Value, name: &str) -> Value {
    let list = |h: &str| header(message, h).map(addresses).unwrap_or_default();
    match name {
        "from" => list("From").into_iter().next().map_or(Value::Null, Value::String),
        "to" => json!(sorted_unique(list("To"))),
        "cc" => json!(sorted_unique(list("Cc"))),
        "participants" => {
            let mut all = list("From");
            all.extend(list("To"));
            all.extend(list("Cc"));
            json!(sorted_unique(all))
        }
        "subject" => header(message, "Subject").map_or(Value::Null, |s| json!(s)),
        "labelIds" => {
            let labels: Vec<String> = message
                .get("labelIds")
                .and_then(Value::as_array)
                .map(|l| l.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            json!(sorted_unique(labels))
        }
        "internalDate" => message
            .get("internalDate")
            .and_then(|d| d.as_str().and_then(|s| s.parse::<i64>().ok()).or_else(|| d.as_i64()))
            .and_then(DateTime::from_timestamp_millis)
            .map_or(Value::Null, |t| json!(t.to_rfc3339_opts(SecondsFormat::Secs, true))),
        "body" => message.get("payload").and_then(plain_text).map_or(Value::Null, Value::String),
        other => match message.get(other) {
            Some(Value::String(s)) if !s.is_empty() => json!(s),
            _ => header(message, other).map_or(Value::Null, |s| json!(s)),
        },
    }
}

/// Maps a Gmail Message (`format=metadata` or `full`) to a remote record.
pub fn map_message(message: &Value, fields: &FieldMap) -> Result<RemoteRecord, ProviderError> {
    let id = message.get("id").and_then(Value::as_str).unwrap_or_default();
    let external_id = ExternalId::parse(id.to_owned())
        .map_err(|e| ProviderError::permanent(format!("Gmail returned an unusable message id: {e}")))?;
    let mut out = Fields::new();
    for (prop, canonical) in fields.pairs() {
        out.insert(canonical.to_owned(), property(message, prop));
    }
    Ok(RemoteRecord {
        external_id,
        object: ObjectType::Messages,
        fields: out,
        // Gmail has no modification stamp; the message's `historyId` (the last history record
        // that changed it) is its version.
        remote_modified_at: None,
        deleted: false,
        etag: message.get("historyId").and_then(Value::as_str).map(str::to_owned),
    })
}

/// A message Gmail says is gone.
pub fn deleted(id: &str) -> Result<RemoteRecord, ProviderError> {
    let external_id = ExternalId::parse(id.to_owned())
        .map_err(|e| ProviderError::permanent(format!("Gmail returned an unusable message id: {e}")))?;
    Ok(RemoteRecord {
        external_id,
        object: ObjectType::Messages,
        fields: Fields::new(),
        remote_modified_at: None,
        deleted: true,
        etag: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists_yield_lowercase_emails_with_display_names_and_quoted_commas_skipped() {
        assert_eq!(
            addresses(r#""Doe, Jane" <Jane.Doe@Globex.example>, bob@y.example, Not An Address"#),
            vec!["jane.doe@globex.example", "bob@y.example"]
        );
        assert!(addresses("").is_empty());
    }

    #[test]
    fn a_metadata_message_maps_to_sorted_participants_labels_and_a_utc_date() {
        let m = json!({
            "id": "18c", "threadId": "18a", "historyId": "1042", "internalDate": "1764928800000",
            "labelIds": ["UNREAD", "INBOX"], "snippet": "Hello",
            "payload": { "headers": [
                { "name": "From", "value": "Jane <jane@globex.example>" },
                { "name": "To", "value": "owner@acme.example" },
                { "name": "Cc", "value": "Ann <ann@acme.example>, jane@globex.example" },
                { "name": "Subject", "value": "Pricing" },
            ]},
        });
        let r = map_message(&m, &FieldMap::new(DEFAULT_FIELDS)).unwrap();
        assert_eq!(r.etag.as_deref(), Some("1042"));
        assert_eq!(r.fields["labels"], json!(["INBOX", "UNREAD"]));
        assert_eq!(r.fields["from"], json!("jane@globex.example"));
        assert_eq!(
            r.fields["participants"],
            json!(["ann@acme.example", "jane@globex.example", "owner@acme.example"])
        );
        assert_eq!(r.fields["date"], json!("2025-12-05T10:00:00Z"));
        assert_eq!(r.fields["thread_id"], json!("18a"));
        assert!(!r.fields.contains_key("body"), "no body unless the mapping asks");
    }

    #[test]
    fn the_body_is_the_first_plain_text_part_when_the_mapping_names_it() {
        let m = json!({
            "id": "1", "payload": { "mimeType": "multipart/alternative", "parts": [
                { "mimeType": "text/html", "body": { "data": URL_SAFE.encode("<p>x</p>") } },
                { "mimeType": "text/plain", "body": { "data": URL_SAFE.encode("plain words") } },
            ]},
        });
        let map =
            FieldMap::new(DEFAULT_FIELDS).with_overrides(Some(&[("body".into(), "body".into())].into()));
        assert_eq!(map_message(&m, &map).unwrap().fields["body"], json!("plain words"));
    }
}
