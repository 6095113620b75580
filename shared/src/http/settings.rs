//! A connection's sync settings as one document: `GET` it, change it with a JSON merge patch
//! (RFC 7396: keys given replace, objects merge, `null` resets a key to its default). The result
//! is validated as a whole (422 naming the field), saved under the connection's settings
//! version (re-read and re-applied when a concurrent change wins), audited with the changed keys
//! before and after, and a changed interval reschedules the next sync.

use std::collections::BTreeMap;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use super::auth::Caller;
use super::common::{CONNECTION_ID, actor, invalid, load_connection, update_settings};
use super::problem::{ApiError, ApiJson, ApiPath};
use crate::domain::connection::{DEFAULT_INTERVAL_MINUTES, MAX_INTERVAL_MINUTES, MIN_INTERVAL_MINUTES};
use crate::domain::push::AutoPush;
use crate::domain::{
    AuditEntry, AuditOutcome, ConflictPolicy, Connection, ConnectionSettings, ObjectType, Operation,
};

/// Bounds of the settings a person can choose.
pub const MAX_CALENDAR_WINDOW_DAYS: u32 = 365;
pub const MAX_NOTE_PREFIX_CHARS: usize = 40;
pub const MAX_OWN_DOMAINS: usize = 100;
pub const MAX_MAPPING_ENTRIES: usize = 200;
const MAX_NAME_CHARS: usize = 200;

/// `GET` and `PATCH .../settings`, with their OpenAPI operations.
pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(get_settings, patch_settings))
}

/// Everything about how a connection syncs that a person may change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncSettings {
    /// Minutes between scheduled syncs, 5..=1440 (default 15).
    pub interval_minutes: u32,
    /// Push action (`create_note`, `update_field`, `create_event`, `update_record`,
    /// `create_record`, `delete_record`) -> approved without a person.
    #[schema(value_type = Object)]
    pub auto_push: AutoPush,
    /// A preset name (`default`, `manual`, `last_write_wins`) in a patch, or the policy object.
    #[schema(value_type = Object)]
    pub conflict_policy: ConflictPolicy,
    /// Object type -> canonical field -> provider property ("" drops the field).
    #[schema(value_type = Object)]
    pub field_mapping: BTreeMap<ObjectType, BTreeMap<String, String>>,
    /// Provider stage -> canonical lifecycle stage.
    pub stage_mapping: BTreeMap<String, String>,
    /// The tenant's own email domains (lower-cased, without `@`).
    pub own_domains: Vec<String>,
    /// Days ahead a calendar's first pull looks, 1..=365.
    pub calendar_window_days: u32,
    /// The tag in front of notes Syncbridge writes, 1..=40 characters.
    pub note_prefix: String,
    /// Drive connections: how files are linked to the tenant's deals and contacts.
    #[serde(default)]
    pub document_links: crate::domain::DocumentLinks,
}

impl SyncSettings {
    pub fn of(c: &Connection) -> Self {
        let s = c.settings.clone();
        Self {
            interval_minutes: c.interval_minutes,
            auto_push: s.auto_push,
            conflict_policy: s.conflict_policy,
            field_mapping: s.field_mapping,
            stage_mapping: s.stage_mapping,
            own_domains: s.own_domains,
            calendar_window_days: s.calendar_window_days,
            note_prefix: s.note_prefix,
            document_links: s.document_links,
        }
    }

    fn defaults() -> Self {
        let s = ConnectionSettings::default();
        Self {
            interval_minutes: DEFAULT_INTERVAL_MINUTES,
            auto_push: s.auto_push,
            conflict_policy: s.conflict_policy,
            field_mapping: s.field_mapping,
            stage_mapping: s.stage_mapping,
            own_domains: s.own_domains,
            calendar_window_days: s.calendar_window_days,
            note_prefix: s.note_prefix,
            document_links: s.document_links,
        }
    }

    /// Writes these settings into `c` (interval and settings only).
    fn apply_to(self, c: &mut Connection) {
        c.interval_minutes = self.interval_minutes;
        c.settings = ConnectionSettings {
            field_mapping: self.field_mapping,
            stage_mapping: self.stage_mapping,
            own_domains: self.own_domains,
            calendar_window_days: self.calendar_window_days,
            conflict_policy: self.conflict_policy,
            auto_push: self.auto_push,
            note_prefix: self.note_prefix,
            document_links: self.document_links,
            // Fixed at connect: records pulled from one database would be orphaned by another.
            notion: c.settings.notion.take(),
        };
    }
}

/// The body of `PATCH .../settings` as the document describes it: every key optional, `null`
/// resets one to its default. (Parsing is [`patched`]'s: a merge patch onto the current settings.)
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SettingsPatch {
    #[schema(minimum = 5, maximum = 1440)]
    interval_minutes: Option<u32>,
    /// Merged key by key: action -> approved without a person.
    #[schema(value_type = Option<BTreeMap<crate::domain::PushAction, bool>>)]
    auto_push: Option<AutoPush>,
    /// A preset, or a (partial) policy object merged onto the current one.
    conflict_policy: Option<PolicyPatch>,
    /// Merged: object -> canonical field -> provider property (`null` removes an entry).
    #[schema(value_type = Option<Object>)]
    field_mapping: Option<BTreeMap<ObjectType, BTreeMap<String, String>>>,
    #[schema(value_type = Option<Object>)]
    stage_mapping: Option<BTreeMap<String, String>>,
    #[schema(max_items = 100)]
    own_domains: Option<Vec<String>>,
    #[schema(minimum = 1, maximum = 365)]
    calendar_window_days: Option<u32>,
    #[schema(min_length = 1, max_length = 40)]
    note_prefix: Option<String>,
    /// Merged key by key (`by_deal_name`, `by_shared_contact`).
    document_links: Option<DocumentLinksPatch>,
}

/// The document-links rule in a settings patch: each key optional, `null` resets it.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct DocumentLinksPatch {
    by_deal_name: Option<bool>,
    by_shared_contact: Option<bool>,
}

/// A conflict policy in a settings patch.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum PolicyPatch {
    Preset(PolicyPreset),
    #[schema(value_type = Object)]
    Policy(ConflictPolicy),
}

/// The conflict policy presets.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum PolicyPreset {
    Default,
    Manual,
    LastWriteWins,
}

/// `GET`/`PATCH .../settings`: the settings with their version.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsView {
    pub connection_id: String,
    /// Increases with every change of settings or pause state.
    pub settings_version: u64,
    #[schema(minimum = 5, maximum = 1440)]
    pub interval_minutes: u32,
    #[schema(value_type = BTreeMap<crate::domain::PushAction, bool>)]
    pub auto_push: AutoPush,
    pub conflict_policy: ConflictPolicy,
    #[schema(value_type = BTreeMap<ObjectType, BTreeMap<String, String>>)]
    pub field_mapping: BTreeMap<ObjectType, BTreeMap<String, String>>,
    pub stage_mapping: BTreeMap<String, String>,
    pub own_domains: Vec<String>,
    #[schema(minimum = 1, maximum = 365)]
    pub calendar_window_days: u32,
    pub note_prefix: String,
    pub document_links: crate::domain::DocumentLinks,
}

fn view(c: &Connection) -> SettingsView {
    let s = SyncSettings::of(c);
    SettingsView {
        connection_id: c.connection_id.to_string(),
        settings_version: c.settings_version,
        interval_minutes: s.interval_minutes,
        auto_push: s.auto_push,
        conflict_policy: s.conflict_policy,
        field_mapping: s.field_mapping,
        stage_mapping: s.stage_mapping,
        own_domains: s.own_domains,
        calendar_window_days: s.calendar_window_days,
        note_prefix: s.note_prefix,
        document_links: s.document_links,
    }
}

/// RFC 7396 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (key, value) in patch {
            if value.is_null() {
                t.remove(key);
            } else {
                merge_patch(t.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn preset(name: &str) -> Option<ConflictPolicy> {
    match name {
        "default" => Some(ConflictPolicy::default()),
        "manual" => Some(ConflictPolicy::manual()),
        "last_write_wins" => Some(ConflictPolicy::last_write_wins()),
        _ => None,
    }
}

/// A serde error as `field: what was expected`, without the submitted value.
fn describe(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    // A map key that fails to parse shows as `?`: name the map.
    let path = e.path().to_string().replace(".?", "");
    let message = e.inner().to_string();
    let message = match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message.as_str(),
    };
    let what = if message.starts_with("unknown field") || message.starts_with("unknown variant") {
        message.to_owned()
    } else if let Some(i) = message.find(", expected ") {
        format!("expected {}", &message[i + ", expected ".len()..])
    } else {
        "invalid value".to_owned()
    };
    if path == "." { what } else { format!("{path}: {what}") }
}

/// The settings after applying `patch` (a merge patch) to `current`, validated and normalised.
pub fn patched(current: &SyncSettings, patch: &Value) -> Result<SyncSettings, ApiError> {
    let Value::Object(patch_map) = patch else {
        return Err(invalid("the body must be a JSON object (a merge patch of the settings)"));
    };
    let mut patch_map = patch_map.clone();
    if let Some(Value::String(name)) = patch_map.get("conflict_policy") {
        let policy = preset(name).ok_or_else(|| {
            invalid(
                "conflict_policy: unknown preset (expected default, manual, last_write_wins or an object)",
            )
        })?;
        patch_map.insert("conflict_policy".into(), json!(policy));
    }
    let to_value = |s: &SyncSettings| serde_json::to_value(s).map_err(|e| ApiError::Internal(Box::new(e)));
    let mut doc = to_value(current)?;
    merge_patch(&mut doc, &Value::Object(patch_map));
    if let (Value::Object(d), Value::Object(defaults)) = (&mut doc, to_value(&SyncSettings::defaults())?) {
        for (key, value) in defaults {
            d.entry(key).or_insert(value);
        }
    }
    let mut settings: SyncSettings =
        serde_path_to_error::deserialize(doc).map_err(|e| invalid(describe(&e)))?;
    validate(&mut settings)?;
    Ok(settings)
}

fn bad_name(name: &str, max: usize) -> bool {
    name.trim().is_empty() || name.chars().count() > max || name.chars().any(char::is_control)
}

fn valid_domain(d: &str) -> bool {
    let labels: Vec<&str> = d.split('.').collect();
    d.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// The rules beyond types: ranges, lengths, domain syntax. Normalises `own_domains` (trimmed,
/// lower-case, no `@`, no duplicates).
pub fn validate(s: &mut SyncSettings) -> Result<(), ApiError> {
    if !(MIN_INTERVAL_MINUTES..=MAX_INTERVAL_MINUTES).contains(&s.interval_minutes) {
        return Err(invalid(format!(
            "interval_minutes must be between {MIN_INTERVAL_MINUTES} and {MAX_INTERVAL_MINUTES}"
        )));
    }
    if !(1..=MAX_CALENDAR_WINDOW_DAYS).contains(&s.calendar_window_days) {
        return Err(invalid(format!(
            "calendar_window_days must be between 1 and {MAX_CALENDAR_WINDOW_DAYS}"
        )));
    }
    if bad_name(&s.note_prefix, MAX_NOTE_PREFIX_CHARS) {
        return Err(invalid(format!(
            "note_prefix must be 1 to {MAX_NOTE_PREFIX_CHARS} characters without control characters"
        )));
    }
    if s.own_domains.len() > MAX_OWN_DOMAINS {
        return Err(invalid(format!("own_domains: at most {MAX_OWN_DOMAINS} domains")));
    }
    let mut domains: Vec<String> = Vec::new();
    for (i, raw) in s.own_domains.iter().enumerate() {
        let d = raw.trim().trim_start_matches('@').to_ascii_lowercase();
        if !valid_domain(&d) {
            return Err(invalid(format!("own_domains[{i}]: not a domain name (like example.com)")));
        }
        if !domains.contains(&d) {
            domains.push(d);
        }
    }
    s.own_domains = domains;
    for (object, fields) in &s.field_mapping {
        if fields.len() > MAX_MAPPING_ENTRIES {
            return Err(invalid(format!("field_mapping.{object}: at most {MAX_MAPPING_ENTRIES} fields")));
        }
        for (field, property) in fields {
            if bad_name(field, MAX_NAME_CHARS) {
                return Err(invalid(format!(
                    "field_mapping.{object}: field names must be 1 to 200 characters"
                )));
            }
            if property.chars().count() > MAX_NAME_CHARS || property.chars().any(char::is_control) {
                return Err(invalid(format!(
                    "field_mapping.{object}.{field}: a property name of at most 200 characters"
                )));
            }
        }
    }
    if s.stage_mapping.len() > MAX_MAPPING_ENTRIES {
        return Err(invalid(format!("stage_mapping: at most {MAX_MAPPING_ENTRIES} stages")));
    }
    if s.stage_mapping.iter().any(|(k, v)| bad_name(k, MAX_NAME_CHARS) || bad_name(v, MAX_NAME_CHARS)) {
        return Err(invalid("stage_mapping: stages must be 1 to 200 characters"));
    }
    let p = &s.conflict_policy;
    if p.ownership.len() > MAX_MAPPING_ENTRIES || p.ownership.keys().any(|f| bad_name(f, MAX_NAME_CHARS)) {
        return Err(invalid("conflict_policy.ownership: at most 200 fields of 1 to 200 characters"));
    }
    for (name, list) in [("structured_fields", &p.structured_fields), ("note_fields", &p.note_fields)] {
        if list.len() > MAX_MAPPING_ENTRIES || list.iter().any(|f| bad_name(f, MAX_NAME_CHARS)) {
            return Err(invalid(format!(
                "conflict_policy.{name}: at most 200 fields of 1 to 200 characters"
            )));
        }
    }
    Ok(())
}

/// The top-level keys whose values differ, as `(before, after)` objects of just those keys.
fn changed_keys(before: &SyncSettings, after: &SyncSettings) -> Option<(Value, Value)> {
    let (Ok(Value::Object(b)), Ok(Value::Object(a))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return None;
    };
    let keys: Vec<&String> = a.keys().filter(|k| b.get(*k) != a.get(*k)).collect();
    if keys.is_empty() {
        return None;
    }
    let pick = |m: &Map<String, Value>| {
        Value::Object(
            keys.iter().map(|k| ((*k).clone(), m.get(*k).cloned().unwrap_or(Value::Null))).collect(),
        )
    };
    Some((pick(&b), pick(&a)))
}

/// The connection's sync settings.
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}/settings",
    tag = "connections",
    params(("connection_id" = String, Path, description = CONNECTION_ID)),
    responses(
        (status = 200, body = SettingsView)
    )
)]
async fn get_settings(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<SettingsView>, ApiError> {
    let c = load_connection(&state, &caller.tenant, &id).await?;
    Ok(axum::Json(view(&c)))
}

/// Changes the sync settings with a JSON merge patch (`application/merge-patch+json` or
/// `application/json`). Returns the new settings; a patch that changes nothing writes nothing.
#[utoipa::path(
    patch,
    path = "/v1/connections/{connection_id}/settings",
    tag = "connections",
    params(("connection_id" = String, Path, description = CONNECTION_ID)),
    request_body(content = SettingsPatch, description = "A JSON merge patch (RFC 7396) of the settings; also accepted as `application/merge-patch+json`"),
    responses(
        (status = 200, body = SettingsView),
        (status = 409, response = super::problem::Conflict)
    )
)]
async fn patch_settings(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<Value>,
) -> Result<axum::Json<SettingsView>, ApiError> {
    let (before, after) = update_settings(&state, &caller.tenant, &id, |c, now| {
        let current = SyncSettings::of(c);
        let next_settings = patched(&current, &patch)?;
        if next_settings == current {
            return Ok(None);
        }
        let mut next = c.clone();
        next_settings.apply_to(&mut next);
        if next.interval_minutes != c.interval_minutes {
            next.next_sync_at = next.rescheduled(c.interval_minutes, now);
        }
        Ok(Some(next))
    })
    .await?;
    if let Some((old, new)) = changed_keys(&SyncSettings::of(&before), &SyncSettings::of(&after)) {
        let entry = AuditEntry::new(
            caller.tenant.clone(),
            Operation::SettingsChanged,
            AuditOutcome::Success,
            actor(&caller),
            state.clock.now(),
        )
        .connection(&after.connection_id)
        .detail(json!({
            "settings_version": after.settings_version,
            "next_sync_at": after.next_sync_at,
        }))
        .change(Some(old), Some(new));
        state.audit.append(&[entry]).await?;
    }
    Ok(axum::Json(view(&after)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PushAction;
    use crate::domain::policy::Fallback;

    fn current() -> SyncSettings {
        SyncSettings::defaults()
    }

    fn detail(e: ApiError) -> String {
        match e {
            ApiError::InvalidRequest(d) => d,
            other => panic!("expected invalid_request, got {other:?}"),
        }
    }

    #[test]
    fn merge_patch_replaces_merges_objects_and_removes_nulls() {
        let mut doc = json!({ "a": 1, "m": { "x": 1, "y": 2 }, "l": [1, 2] });
        merge_patch(&mut doc, &json!({ "a": 2, "m": { "y": null, "z": 3 }, "l": [3] }));
        assert_eq!(doc, json!({ "a": 2, "m": { "x": 1, "z": 3 }, "l": [3] }));
    }

    #[test]
    fn a_patch_changes_only_the_keys_it_names_and_null_restores_the_default() {
        let mut start = current();
        start.note_prefix = "[BOT]".into();
        start.auto_push.insert(PushAction::CreateNote, true);
        let p = json!({ "interval_minutes": 60, "auto_push": { "update_field": true }, "note_prefix": null });
        let next = patched(&start, &p).unwrap();
        assert_eq!(next.interval_minutes, 60);
        assert_eq!(next.note_prefix, "[ARIA]");
        assert_eq!(next.auto_push.get(&PushAction::CreateNote), Some(&true), "objects merge");
        assert_eq!(next.auto_push.get(&PushAction::UpdateField), Some(&true));
        assert_eq!(next.calendar_window_days, start.calendar_window_days);
    }

    #[test]
    fn conflict_policy_takes_a_preset_name_or_a_partial_object() {
        let lww = patched(&current(), &json!({ "conflict_policy": "last_write_wins" })).unwrap();
        assert_eq!(lww.conflict_policy, ConflictPolicy::last_write_wins());
        let partial =
            patched(&current(), &json!({ "conflict_policy": { "fallback": "last_write_wins" } })).unwrap();
        assert_eq!(partial.conflict_policy.fallback, Fallback::LastWriteWins);
        assert!(partial.conflict_policy.merge_notes, "the rest of the policy is kept");
        let d = detail(patched(&current(), &json!({ "conflict_policy": "yolo" })).unwrap_err());
        assert!(d.starts_with("conflict_policy: unknown preset"), "{d}");
        let d = detail(
            patched(&current(), &json!({ "conflict_policy": { "fallback": "coin_flip" } })).unwrap_err(),
        );
        assert!(d.starts_with("conflict_policy.fallback: unknown variant"), "{d}");
    }

    #[test]
    fn out_of_range_wrong_typed_and_unknown_settings_are_named_without_echoing_values() {
        let cases = [
            (json!({ "interval_minutes": 4 }), "interval_minutes must be between 5 and 1440"),
            (json!({ "interval_minutes": 1441 }), "interval_minutes must be between 5 and 1440"),
            (json!({ "interval_minutes": "SECRET-ish" }), "interval_minutes: expected u32"),
            (json!({ "interval_minutes": -1 }), "interval_minutes: expected u32"),
            (json!({ "auto_push": { "launch_rocket": true } }), "auto_push: unknown variant"),
            (json!({ "auto_push": { "create_note": "yes" } }), "auto_push: expected a boolean"),
            (json!({ "own_domains": ["not a domain"] }), "own_domains[0]: not a domain name"),
            (json!({ "own_domains": "acme.com" }), "own_domains: expected a sequence"),
            (json!({ "calendar_window_days": 0 }), "calendar_window_days must be between 1 and 365"),
            (json!({ "note_prefix": "" }), "note_prefix must be 1 to 40 characters"),
            (json!({ "field_mapping": { "planets": {} } }), "field_mapping: unknown variant"),
            (json!({ "tenant_id": "globex" }), "tenant_id: unknown field `tenant_id`"),
        ];
        for (patch, expected) in cases {
            let d = detail(patched(&current(), &patch).unwrap_err());
            assert!(d.starts_with(expected), "{patch}: {d}");
            assert!(!d.contains("SECRET"), "{d}");
        }
        let d = detail(patched(&current(), &json!([1])).unwrap_err());
        assert!(d.contains("JSON object"), "{d}");
    }

    #[test]
    fn own_domains_are_normalised_and_deduplicated() {
        let next = patched(&current(), &json!({ "own_domains": [" @Acme.com", "acme.com", "eu.acme.com"] }))
            .unwrap();
        assert_eq!(next.own_domains, vec!["acme.com", "eu.acme.com"]);
    }

    #[test]
    fn only_changed_keys_are_reported_before_and_after() {
        let a = current();
        let b = patched(&a, &json!({ "interval_minutes": 30 })).unwrap();
        assert_eq!(
            changed_keys(&a, &b),
            Some((json!({ "interval_minutes": 15 }), json!({ "interval_minutes": 30 })))
        );
        assert_eq!(changed_keys(&a, &a), None);
    }
}
