//! Drive File resources -> canonical `files` records: the properties we keep (name, type,
//! folders, modification time, owners, who it is shared with and how, the link to open it,
//! trash), removed files as deletes, and the `fields` selection that asks Drive for exactly those.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::domain::record::Fields;
use crate::domain::{ExternalId, ObjectType, RemoteRecord};
use crate::ports::ProviderError;

/// The File properties the adapter reads (a `fields` selection; Drive returns only what is asked).
pub const FILE_FIELDS: &str = "id,name,mimeType,parents,modifiedTime,version,trashed,webViewLink,\
owners(emailAddress),permissions(type,role,emailAddress,domain)";
pub const FOLDER_MIME: &str = "application/vnd.google-apps.folder";

fn text(v: Option<&Value>) -> Value {
    match v.and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Value::String(s.to_owned()),
        _ => Value::Null,
    }
}

fn time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    v.and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn lower_email(v: &Value) -> Option<String> {
    v.get("emailAddress").and_then(Value::as_str).map(|e| e.trim().to_lowercase()).filter(|e| e.contains('@'))
}

fn external_id(id: &str) -> Result<ExternalId, ProviderError> {
    ExternalId::parse(id.to_owned())
        .map_err(|e| ProviderError::permanent(format!("Drive returned an unusable file id: {e}")))
}

/// A File resource as a record. Trashed files are deletes (the file is gone from the user's
/// Drive unless restored, which brings it back as a change).
pub fn map_file(file: &Value) -> Result<RemoteRecord, ProviderError> {
    let id = file.get("id").and_then(Value::as_str).unwrap_or_default();
    let trashed = file.get("trashed").and_then(Value::as_bool).unwrap_or(false);
    let mut fields = Fields::new();
    let mime = text(file.get("mimeType"));
    fields.insert("is_folder".into(), json!(mime.as_str() == Some(FOLDER_MIME)));
    fields.insert("name".into(), text(file.get("name")));
    fields.insert("mime_type".into(), mime);
    fields.insert("parents".into(), file.get("parents").cloned().unwrap_or_else(|| json!([])));
    fields.insert("modified_at".into(), text(file.get("modifiedTime")));
    fields.insert("web_view_link".into(), text(file.get("webViewLink")));
    fields.insert("trashed".into(), json!(trashed));
    let mut owners: Vec<String> = file
        .get("owners")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(lower_email).collect())
        .unwrap_or_default();
    owners.sort();
    owners.dedup();
    // Each grant as `type:role:who` (who: the email, the domain, or nothing for `anyone`), sorted
    // so the field compares equal whatever order Drive lists them in.
    let perms: Vec<&Value> =
        file.get("permissions").and_then(Value::as_array).map(|l| l.iter().collect()).unwrap_or_default();
    let mut grants: Vec<String> = perms
        .iter()
        .map(|p| {
            let who =
                lower_email(p).or_else(|| p.get("domain").and_then(Value::as_str).map(str::to_lowercase));
            format!(
                "{}:{}:{}",
                p.get("type").and_then(Value::as_str).unwrap_or("user"),
                p.get("role").and_then(Value::as_str).unwrap_or("reader"),
                who.unwrap_or_default()
            )
        })
        .collect();
    grants.sort();
    grants.dedup();
    let mut shared_with: Vec<String> = perms
        .iter()
        .filter(|p| p.get("role").and_then(Value::as_str) != Some("owner"))
        .filter_map(|p| lower_email(p))
        .collect();
    shared_with.sort();
    shared_with.dedup();
    fields.insert("owners".into(), json!(owners));
    fields.insert("permissions".into(), json!(grants));
    fields.insert("shared_with".into(), json!(shared_with));
    Ok(RemoteRecord {
        external_id: external_id(id)?,
        object: ObjectType::Files,
        fields: if trashed { Fields::new() } else { fields },
        remote_modified_at: time(file.get("modifiedTime")),
        deleted: trashed,
        // Drive's `version` moves with every change, sharing included (which leaves
        // `modifiedTime` alone): the record's version tag.
        etag: file.get("version").and_then(Value::as_str).map(str::to_owned),
    })
}

/// One `changes.list` entry as a record: the file, or a delete when it was removed (deleted for
/// good, or access lost).
pub fn map_change(change: &Value) -> Result<RemoteRecord, ProviderError> {
    let removed = change.get("removed").and_then(Value::as_bool).unwrap_or(false);
    match change.get("file") {
        Some(file) if !removed => map_file(file),
        _ => {
            let id = change.get("fileId").and_then(Value::as_str).unwrap_or_default();
            Ok(RemoteRecord {
                external_id: external_id(id)?,
                object: ObjectType::Files,
                fields: Fields::new(),
                remote_modified_at: time(change.get("time")),
                deleted: true,
                etag: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_keeps_its_sharing_sorted_and_a_trashed_or_removed_one_is_a_delete() {
        let file = json!({
            "id": "1abc", "name": "Globex proposal", "mimeType": "application/pdf", "parents": ["0Aroot"],
            "modifiedTime": "2026-12-01T10:00:00.000Z", "version": "7", "trashed": false,
            "webViewLink": "https://drive.google.com/file/d/1abc/view",
            "owners": [{ "emailAddress": "Owner@Acme.example" }],
            "permissions": [
                { "type": "user", "role": "reader", "emailAddress": "Jane.Doe@Globex.example" },
                { "type": "user", "role": "owner", "emailAddress": "owner@acme.example" },
                { "type": "anyone", "role": "reader" },
            ],
        });
        let r = map_file(&file).expect("maps");
        assert!(!r.deleted);
        assert_eq!(r.etag.as_deref(), Some("7"));
        assert_eq!(r.fields["shared_with"], json!(["jane.doe@globex.example"]));
        assert_eq!(r.fields["owners"], json!(["owner@acme.example"]));
        assert_eq!(
            r.fields["permissions"],
            json!(["anyone:reader:", "user:owner:owner@acme.example", "user:reader:jane.doe@globex.example"])
        );
        assert_eq!(r.fields["is_folder"], json!(false));
        let mut trashed = file.clone();
        trashed["trashed"] = json!(true);
        assert!(map_file(&trashed).expect("maps").deleted);
        let removed =
            map_change(&json!({ "fileId": "1abc", "removed": true, "time": "2026-12-02T00:00:00Z" }))
                .expect("maps");
        assert!(removed.deleted && removed.fields.is_empty());
        assert!(map_file(&json!({ "id": "a#b" })).is_err(), "an id that is no key segment is refused");
    }
}
