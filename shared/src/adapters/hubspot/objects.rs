//! The HubSpot object types Syncbridge syncs (contacts, companies, deals, notes, and the activities
//! calls, emails, meetings and tasks): their API paths, default property <-> canonical field maps,
//! associations, and the conversion of property values to canonical values and back (amount as a
//! number, dates, the deal stage's lifecycle stage).
//!
//! The four activity types are one canonical type, `activities` (as Salesforce's Tasks and Events
//! are), told apart by the field `kind` (`call`, `email`, `meeting`, `task`), with the same
//! canonical field names whatever the kind (`subject`, `body`, `status`, `timestamp`, ...): a
//! consumer reads a person's activity timeline from one type on either CRM. HubSpot numbers each
//! activity type's records on its own, so an activity's external id carries its kind
//! (`call:123`), and updates and deletes find their HubSpot type from it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::{Number, Value};

use crate::domain::mapping::{FieldMap, StageMap};
use crate::domain::record::Fields;
use crate::domain::{ConnectionSettings, ObjectType};

/// An association Syncbridge reads and writes as a canonical `*_ids` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Association {
    /// HubSpot's object type on the other side (`contacts`).
    pub to: &'static str,
    /// The canonical field holding the associated ids (`contact_ids`).
    pub field: &'static str,
    /// HubSpot's HUBSPOT_DEFINED (unlabeled) association type id from this object to `to`.
    pub type_id: u32,
}

/// How one object type looks in HubSpot's API.
#[derive(Debug)]
pub(super) struct ObjectSpec {
    pub object: ObjectType,
    /// The path segment under `/crm/v3/objects/`.
    pub path: &'static str,
    /// The property searched and sorted on for incremental pulls.
    pub modified: &'static str,
    /// `(HubSpot property, canonical field)` defaults; connections override them.
    pub defaults: &'static [(&'static str, &'static str)],
    /// Associations read on pulls (listing `associations=`, v4 batch read after a search page).
    pub pulled: &'static [Association],
    /// Associations writes set from `*_ids` fields (`associations` in a create body, v4 association
    /// batch create/archive on updates).
    pub writable: &'static [Association],
    /// An activity's kind (`call`): the canonical `kind` field and its external ids' prefix.
    pub kind: Option<&'static str>,
    /// The body property that carries a create's key tag, for types HubSpot allows no unique-value
    /// property on (notes and the other activities).
    pub tag_property: Option<&'static str>,
}

impl ObjectSpec {
    /// Our external id of a HubSpot record id (`call:123` for an activity, else the id).
    pub fn external_id(&self, hub_id: &str) -> String {
        match self.kind {
            Some(kind) => format!("{kind}:{hub_id}"),
            None => hub_id.to_owned(),
        }
    }

    /// HubSpot's record id inside our external id.
    pub fn hub_id<'a>(&self, external_id: &'a str) -> &'a str {
        match self.kind {
            Some(kind) => {
                external_id.strip_prefix(kind).and_then(|rest| rest.strip_prefix(':')).unwrap_or(external_id)
            }
            None => external_id,
        }
    }
}

const CONTACT_COMPANY: Association = Association { to: "companies", field: "company_ids", type_id: 279 };
const DEAL_CONTACT: Association = Association { to: "contacts", field: "contact_ids", type_id: 3 };
const DEAL_COMPANY: Association = Association { to: "companies", field: "company_ids", type_id: 341 };
const NOTE_CONTACT: Association = Association { to: "contacts", field: "contact_ids", type_id: 202 };
const NOTE_COMPANY: Association = Association { to: "companies", field: "company_ids", type_id: 190 };
const NOTE_DEAL: Association = Association { to: "deals", field: "deal_ids", type_id: 214 };
/// HUBSPOT_DEFINED activity -> contact, company, deal type ids
/// (<https://developers.hubspot.com/docs/api-reference/latest/crm/associations/guide>).
const CALL_ASSOCIATIONS: &[Association] = &[
    Association { to: "contacts", field: "contact_ids", type_id: 194 },
    Association { to: "companies", field: "company_ids", type_id: 182 },
    Association { to: "deals", field: "deal_ids", type_id: 206 },
];
const EMAIL_ASSOCIATIONS: &[Association] = &[
    Association { to: "contacts", field: "contact_ids", type_id: 198 },
    Association { to: "companies", field: "company_ids", type_id: 186 },
    Association { to: "deals", field: "deal_ids", type_id: 210 },
];
const MEETING_ASSOCIATIONS: &[Association] = &[
    Association { to: "contacts", field: "contact_ids", type_id: 200 },
    Association { to: "companies", field: "company_ids", type_id: 188 },
    Association { to: "deals", field: "deal_ids", type_id: 212 },
];
const TASK_ASSOCIATIONS: &[Association] = &[
    Association { to: "contacts", field: "contact_ids", type_id: 204 },
    Association { to: "companies", field: "company_ids", type_id: 192 },
    Association { to: "deals", field: "deal_ids", type_id: 216 },
];

/// Contacts read their company through `associatedcompanyid` (the primary company), which costs no
/// request: a v4 association read per search page would double the requests of every incremental
/// contacts pull. Creates associate the listed companies.
pub(super) const CONTACTS: ObjectSpec = ObjectSpec {
    object: ObjectType::Contacts,
    path: "contacts",
    modified: "lastmodifieddate",
    defaults: &[
        ("email", "email"),
        ("firstname", "first_name"),
        ("lastname", "last_name"),
        ("phone", "phone"),
        ("company", "company"),
        ("jobtitle", "job_title"),
        ("lifecyclestage", "lifecycle_stage"),
        ("hs_lead_status", "lead_status"),
        ("associatedcompanyid", "company_ids"),
    ],
    pulled: &[],
    writable: &[CONTACT_COMPANY],
    kind: None,
    tag_property: None,
};

pub(super) const COMPANIES: ObjectSpec = ObjectSpec {
    object: ObjectType::Companies,
    path: "companies",
    modified: "hs_lastmodifieddate",
    defaults: &[
        ("name", "name"),
        ("domain", "domain"),
        ("industry", "industry"),
        ("phone", "phone"),
        ("city", "city"),
        ("country", "country"),
    ],
    pulled: &[],
    writable: &[],
    kind: None,
    tag_property: None,
};

pub(super) const DEALS: ObjectSpec = ObjectSpec {
    object: ObjectType::Deals,
    path: "deals",
    modified: "hs_lastmodifieddate",
    defaults: &[
        ("dealname", "name"),
        ("amount", "amount"),
        ("dealstage", "stage"),
        ("closedate", "close_date"),
        ("pipeline", "pipeline"),
    ],
    pulled: &[DEAL_CONTACT, DEAL_COMPANY],
    writable: &[DEAL_CONTACT, DEAL_COMPANY],
    kind: None,
    tag_property: None,
};

pub(super) const NOTES: ObjectSpec = ObjectSpec {
    object: ObjectType::Notes,
    path: "notes",
    modified: "hs_lastmodifieddate",
    defaults: &[("hs_note_body", "body"), ("hs_timestamp", "timestamp")],
    pulled: &[NOTE_CONTACT, NOTE_COMPANY, NOTE_DEAL],
    writable: &[NOTE_CONTACT, NOTE_COMPANY, NOTE_DEAL],
    kind: None,
    tag_property: Some("hs_note_body"),
};

/// Calls (<https://developers.hubspot.com/docs/api-reference/latest/crm/activities/calls/guide>).
pub(super) const CALLS: ObjectSpec = ObjectSpec {
    object: ObjectType::Activities,
    path: "calls",
    modified: "hs_lastmodifieddate",
    defaults: &[
        ("hs_timestamp", "timestamp"),
        ("hs_call_title", "subject"),
        ("hs_call_body", "body"),
        ("hs_call_direction", "direction"),
        ("hs_call_status", "status"),
    ],
    pulled: CALL_ASSOCIATIONS,
    writable: CALL_ASSOCIATIONS,
    kind: Some("call"),
    tag_property: Some("hs_call_body"),
};

/// Emails (<https://developers.hubspot.com/docs/api-reference/latest/crm/activities/emails/guide>).
pub(super) const EMAILS: ObjectSpec = ObjectSpec {
    object: ObjectType::Activities,
    path: "emails",
    modified: "hs_lastmodifieddate",
    defaults: &[
        ("hs_timestamp", "timestamp"),
        ("hs_email_subject", "subject"),
        ("hs_email_text", "body"),
        ("hs_email_direction", "direction"),
        ("hs_email_status", "status"),
    ],
    pulled: EMAIL_ASSOCIATIONS,
    writable: EMAIL_ASSOCIATIONS,
    kind: Some("email"),
    tag_property: Some("hs_email_text"),
};

/// Meetings (<https://developers.hubspot.com/docs/api-reference/latest/crm/activities/meetings/guide>).
pub(super) const MEETINGS: ObjectSpec = ObjectSpec {
    object: ObjectType::Activities,
    path: "meetings",
    modified: "hs_lastmodifieddate",
    defaults: &[
        ("hs_timestamp", "timestamp"),
        ("hs_meeting_title", "subject"),
        ("hs_meeting_body", "body"),
        ("hs_meeting_start_time", "start"),
        ("hs_meeting_end_time", "end"),
        ("hs_meeting_outcome", "status"),
    ],
    pulled: MEETING_ASSOCIATIONS,
    writable: MEETING_ASSOCIATIONS,
    kind: Some("meeting"),
    tag_property: Some("hs_meeting_body"),
};

/// Tasks (<https://developers.hubspot.com/docs/api-reference/latest/crm/activities/tasks/guide>):
/// `hs_timestamp` is the due date.
pub(super) const TASKS: ObjectSpec = ObjectSpec {
    object: ObjectType::Activities,
    path: "tasks",
    modified: "hs_lastmodifieddate",
    defaults: &[
        ("hs_timestamp", "timestamp"),
        ("hs_task_subject", "subject"),
        ("hs_task_body", "body"),
        ("hs_task_status", "status"),
        ("hs_task_priority", "priority"),
    ],
    pulled: TASK_ASSOCIATIONS,
    writable: TASK_ASSOCIATIONS,
    kind: Some("task"),
    tag_property: Some("hs_task_body"),
};

/// The HubSpot types behind the canonical `activities`, in pull order.
pub(super) const ACTIVITIES: [&ObjectSpec; 4] = [&CALLS, &EMAILS, &MEETINGS, &TASKS];

/// Every HubSpot type the adapter syncs.
const ALL: [&ObjectSpec; 8] = [&CONTACTS, &COMPANIES, &DEALS, &NOTES, &CALLS, &EMAILS, &MEETINGS, &TASKS];

/// HubSpot's default sales pipeline stages -> canonical lifecycle stages.
pub(super) const DEFAULT_STAGES: &[(&str, &str)] = &[
    ("appointmentscheduled", "lead"),
    ("qualifiedtobuy", "lead"),
    ("presentationscheduled", "opportunity"),
    ("decisionmakerboughtin", "opportunity"),
    ("contractsent", "opportunity"),
    ("closedwon", "account"),
    ("closedlost", "lost"),
];

/// The one HubSpot type behind a canonical type (`None` for `activities`, which has four: see
/// [`ACTIVITIES`], [`activity_spec`], [`spec_of_record`]).
pub(super) fn spec(object: ObjectType) -> Option<&'static ObjectSpec> {
    match object {
        ObjectType::Contacts => Some(&CONTACTS),
        ObjectType::Companies => Some(&COMPANIES),
        ObjectType::Deals => Some(&DEALS),
        ObjectType::Notes => Some(&NOTES),
        _ => None,
    }
}

/// The activity type of a `kind` (`call`, `email`, `meeting`, `task`).
pub(super) fn activity_spec(kind: &str) -> Option<&'static ObjectSpec> {
    ACTIVITIES.into_iter().find(|s| s.kind == Some(kind))
}

/// The HubSpot type of a stored record of `object`: an activity's from its external id's prefix.
pub(super) fn spec_of_record(object: ObjectType, external_id: &str) -> Option<&'static ObjectSpec> {
    match object {
        ObjectType::Activities => activity_spec(external_id.split_once(':')?.0),
        other => spec(other),
    }
}

/// One connection's mappings for every HubSpot type (an `activities` override applies to all four
/// activity types).
#[derive(Debug, Clone, Default)]
pub(super) struct Mappings {
    fields: BTreeMap<&'static str, FieldMap>,
    pub stages: StageMap,
}

impl Mappings {
    pub fn new(settings: &ConnectionSettings) -> Self {
        let fields = ALL
            .into_iter()
            .map(|s| {
                (s.path, FieldMap::new(s.defaults).with_overrides(settings.field_mapping.get(&s.object)))
            })
            .collect();
        Self { fields, stages: StageMap::new(DEFAULT_STAGES).with_overrides(&settings.stage_mapping) }
    }

    pub fn fields(&self, spec: &ObjectSpec) -> FieldMap {
        self.fields.get(spec.path).cloned().unwrap_or_default()
    }
}

/// Epoch milliseconds or an RFC 3339 instant.
pub(super) fn parse_instant(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(ms) = value.trim().parse::<i64>() {
        return DateTime::from_timestamp_millis(ms);
    }
    DateTime::parse_from_rfc3339(value.trim()).ok().map(|d| d.with_timezone(&Utc))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A HubSpot number property (a string on the wire) as a JSON number; integers stay integers.
fn number(s: &str) -> Option<Value> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::Number(i.into()));
    }
    s.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number)
}

/// A property value as the canonical value of `field` (`None`: the value is unusable).
fn canonical_value(field: &str, raw: &str) -> Option<Value> {
    match field {
        "amount" => number(raw),
        "close_date" => parse_instant(raw)
            .map(|d| d.date_naive())
            .or_else(|| NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d").ok())
            .map(|d| Value::String(d.format("%Y-%m-%d").to_string())),
        "timestamp" | "start" | "end" => {
            parse_instant(raw).map(|d| Value::String(d.to_rfc3339_opts(SecondsFormat::Millis, true)))
        }
        f if f.ends_with("_ids") => {
            let ids: BTreeSet<String> =
                raw.split([';', ',']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
            Some(Value::Array(ids.into_iter().map(Value::String).collect()))
        }
        _ => Some(Value::String(raw.to_owned())),
    }
}

/// Maps HubSpot properties to canonical fields: every mapped field is present (null when HubSpot
/// returned it null or empty, or a value that does not parse), deals get `lifecycle_stage` from
/// their stage through the connection's stage map.
pub(super) fn to_canonical(
    spec: &ObjectSpec,
    map: &FieldMap,
    stages: &StageMap,
    properties: &std::collections::HashMap<String, Value>,
) -> Fields {
    let mut fields = Fields::new();
    for (property, field) in map.pairs() {
        let mut raw = properties.get(property).and_then(text);
        if spec.tag_property == Some(property) {
            // The key tag of a note or activity we created is ours, not the person's text.
            raw = raw.map(|r| crate::domain::strip_key_tag(&r).to_owned());
        }
        let value = raw.as_deref().and_then(|r| canonical_value(field, r));
        if raw.is_some() && value.is_none() {
            tracing::warn!(object = %spec.object, property, "HubSpot property value does not parse; mapped to null");
        }
        fields.insert(field.to_owned(), value.unwrap_or(Value::Null));
    }
    if spec.object == ObjectType::Deals
        && let Some(stage) = fields.get("stage")
    {
        let lifecycle = stage.as_str().and_then(|s| stages.lifecycle(s)).map(|l| Value::String(l.to_owned()));
        fields.insert("lifecycle_stage".to_owned(), lifecycle.unwrap_or(Value::Null));
    }
    if let Some(kind) = spec.kind {
        fields.insert("kind".to_owned(), Value::String(kind.to_owned()));
    }
    fields
}

/// A canonical value as the property value HubSpot takes (null clears the property).
fn property_value(field: &str, value: &Value) -> String {
    match (field, value) {
        (_, Value::Null) => String::new(),
        ("close_date", Value::String(s)) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc().to_rfc3339_opts(SecondsFormat::Millis, true))
            .unwrap_or_else(|| s.clone()),
        (_, Value::String(s)) => s.clone(),
        (_, other) => other.to_string(),
    }
}

/// Canonical fields as HubSpot properties for a write, and the associations they name. Fields the
/// mapping does not know, derived fields (`lifecycle_stage` of deals) and `*_ids` are not sent as
/// properties; `*_ids` of a writable association become associations (the create body's
/// `associations`; updates change them with the v4 association endpoints).
pub(super) fn to_properties(
    spec: &ObjectSpec,
    map: &FieldMap,
    fields: &Fields,
) -> (serde_json::Map<String, Value>, Vec<(Association, String)>) {
    let mut props = serde_json::Map::new();
    let mut assocs = Vec::new();
    for (field, value) in fields {
        if let Some(a) = spec.writable.iter().find(|a| a.field == field) {
            let ids = value.as_array().into_iter().flatten().filter_map(Value::as_str);
            assocs.extend(ids.map(|id| (*a, id.to_owned())));
            continue;
        }
        if field.ends_with("_ids") || (spec.object == ObjectType::Deals && field == "lifecycle_stage") {
            continue;
        }
        if let Some(property) = map.property_of(field) {
            props.insert(property.to_owned(), Value::String(property_value(field, value)));
        }
    }
    (props, assocs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn props(v: Value) -> HashMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn deals_map_amount_to_a_number_stage_to_a_lifecycle_and_close_date_to_a_day() {
        let m = Mappings::new(&ConnectionSettings::default());
        let f = to_canonical(
            &DEALS,
            &m.fields(&DEALS),
            &m.stages,
            &props(json!({"dealname": "Big", "amount": "1500.50", "dealstage": "contractsent",
                "closedate": "2024-06-30T22:10:00.000Z", "pipeline": "default"})),
        );
        assert_eq!(f["name"], json!("Big"));
        assert_eq!(f["amount"], json!(1500.5));
        assert_eq!(f["stage"], json!("contractsent"));
        assert_eq!(f["lifecycle_stage"], json!("opportunity"));
        assert_eq!(f["close_date"], json!("2024-06-30"));
        let whole = to_canonical(&DEALS, &m.fields(&DEALS), &m.stages, &props(json!({"amount": "7"})));
        assert_eq!(whole["amount"], json!(7));
        assert_eq!(whole["lifecycle_stage"], Value::Null);
        let junk = to_canonical(&DEALS, &m.fields(&DEALS), &m.stages, &props(json!({"amount": "lots"})));
        assert_eq!(junk["amount"], Value::Null);
    }

    #[test]
    fn connection_overrides_rename_add_custom_properties_and_remap_stages() {
        let mut settings = ConnectionSettings::default();
        settings.field_mapping.insert(
            ObjectType::Companies,
            [("name".to_owned(), "legal_name".to_owned()), ("tier".to_owned(), "account_tier".to_owned())]
                .into(),
        );
        settings.stage_mapping.insert("closedwon".into(), "customer".into());
        let m = Mappings::new(&settings);
        let f = to_canonical(
            &COMPANIES,
            &m.fields(&COMPANIES),
            &m.stages,
            &props(json!({"name": "ignored", "legal_name": "Acme AS", "account_tier": "gold"})),
        );
        assert_eq!(f["name"], json!("Acme AS"));
        assert_eq!(f["tier"], json!("gold"));
        assert_eq!(m.stages.lifecycle("closedwon"), Some("customer"));
    }

    #[test]
    fn writes_send_properties_and_turn_ids_into_associations() {
        let m = Mappings::new(&ConnectionSettings::default());
        let fields: Fields = serde_json::from_value(json!({
            "body": "[ARIA] summary", "timestamp": "2024-05-01T10:00:00Z",
            "contact_ids": ["12", "40"], "deal_ids": ["7"], "unknown": 1
        }))
        .unwrap();
        let (p, a) = to_properties(&NOTES, &m.fields(&NOTES), &fields);
        assert_eq!(p["hs_note_body"], json!("[ARIA] summary"));
        assert_eq!(p["hs_timestamp"], json!("2024-05-01T10:00:00Z"));
        assert_eq!(p.len(), 2);
        let pairs: Vec<(u32, &str)> = a.iter().map(|(a, id)| (a.type_id, id.as_str())).collect();
        assert_eq!(pairs, vec![(202, "12"), (202, "40"), (214, "7")]);

        let deal: Fields = serde_json::from_value(
            json!({"amount": 99.5, "close_date": "2024-07-01", "lifecycle_stage": "lead", "stage": null}),
        )
        .unwrap();
        let (p, _) = to_properties(&DEALS, &m.fields(&DEALS), &deal);
        assert_eq!(p["amount"], json!("99.5"));
        assert_eq!(p["closedate"], json!("2024-07-01T00:00:00.000Z"));
        assert_eq!(p["dealstage"], json!(""));
        assert!(!p.contains_key("lifecycle_stage"));
    }
}
