//! The fake HubSpot account's CRM records (contacts, companies, deals, and the activities notes,
//! calls, emails, meetings and tasks): seeded lazily from a
//! seed (only edits are stored), one table per object type indexed by id and by
//! `(hs_lastmodifieddate, id)`, associations between records, archiving (HubSpot's delete) and
//! restoring, and one clock whose timestamps only move forward (and can be advanced by tests).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// 2024-01-01T00:00:00Z in epoch milliseconds: seeded records are created from here on.
pub const SEED_BASE_MS: i64 = 1_704_067_200_000;

const THIRTY_DAYS_MS: i64 = 30 * 86_400_000;

/// Most unique-value properties one object type may hold: "the contact object type can only have a
/// maximum of 10 unique properties", like the other object types
/// (https://developers.hubspot.com/changelog/unique-properties-for-contacts).
pub const MAX_UNIQUE_PROPERTIES: usize = 10;

/// One property definition, as HubSpot's properties API answers it
/// (https://developers.hubspot.com/docs/api/crm/properties).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyDef {
    pub name: String,
    pub label: String,
    /// `string`, `number`, `date`, `datetime`, `enumeration` or `bool`.
    pub kind: String,
    pub field_type: String,
    pub group_name: String,
    pub description: String,
    pub has_unique_value: bool,
    /// A HubSpot default property (not one a client created).
    pub hubspot_defined: bool,
    /// Calculated by HubSpot (ids, timestamps): writes to it are ignored.
    pub read_only: bool,
    pub created_ms: i64,
}

impl PropertyDef {
    /// HubSpot's `Property` JSON.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "label": self.label,
            "type": self.kind,
            "fieldType": self.field_type,
            "description": self.description,
            "groupName": self.group_name,
            "options": [],
            "displayOrder": -1,
            "calculated": false,
            "externalOptions": false,
            "hasUniqueValue": self.has_unique_value,
            "hidden": false,
            "formField": !self.read_only,
            "archived": false,
            "createdAt": iso(self.created_ms),
            "updatedAt": iso(self.created_ms),
            "modificationMetadata": {
                "archivable": !self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": self.read_only,
            },
        });
        if self.hubspot_defined {
            v["hubspotDefined"] = Value::Bool(true);
        }
        v
    }
}

/// `(name, label, type, fieldType, read-only)` of a default property.
type PropertyRow = (&'static str, &'static str, &'static str, &'static str, bool);

const OWNER: PropertyRow = ("hubspot_owner_id", "Owner", "enumeration", "select", false);
const ID: PropertyRow = ("hs_object_id", "Record ID", "number", "number", true);
const CREATED: PropertyRow = ("createdate", "Create Date", "datetime", "date", true);
const MODIFIED: PropertyRow = ("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", true);
const TIMESTAMP: PropertyRow = ("hs_timestamp", "Activity date", "datetime", "date", false);

/// The default properties every activity (note, call, email, meeting, task) has besides its own.
const ACTIVITY_COMMON: &[PropertyRow] = &[
    ("hs_attachment_ids", "Attached file IDs", "enumeration", "checkbox", false),
    OWNER,
    ("hs_createdate", "Create date", "datetime", "date", true),
    CREATED,
    MODIFIED,
    ID,
];

/// The HubSpot default properties the fake's portal has, per object type (a stock portal: no
/// custom properties): the type's own, and for an activity [`ACTIVITY_COMMON`]. Enumeration
/// options are checked only where [`enumeration_options`] lists them.
fn standard_properties(kind: ObjectKind) -> impl Iterator<Item = &'static PropertyRow> {
    let common: &'static [PropertyRow] = if kind.is_activity() { ACTIVITY_COMMON } else { &[] };
    own_properties(kind).iter().chain(common)
}

/// A type's own default properties (see [`standard_properties`]).
fn own_properties(kind: ObjectKind) -> &'static [PropertyRow] {
    match kind {
        ObjectKind::Contacts => &[
            ("firstname", "First Name", "string", "text", false),
            ("lastname", "Last Name", "string", "text", false),
            ("email", "Email", "string", "text", false),
            ("phone", "Phone Number", "string", "phonenumber", false),
            ("mobilephone", "Mobile Phone Number", "string", "phonenumber", false),
            ("company", "Company Name", "string", "text", false),
            ("jobtitle", "Job Title", "string", "text", false),
            ("website", "Website URL", "string", "text", false),
            ("address", "Street Address", "string", "text", false),
            ("city", "City", "string", "text", false),
            ("state", "State/Region", "string", "text", false),
            ("zip", "Postal Code", "string", "text", false),
            ("country", "Country/Region", "string", "text", false),
            ("lifecyclestage", "Lifecycle Stage", "enumeration", "radio", false),
            ("hs_lead_status", "Lead Status", "enumeration", "radio", false),
            ("associatedcompanyid", "Primary Associated Company ID", "number", "number", true),
            OWNER,
            CREATED,
            ("lastmodifieddate", "Last Modified Date", "datetime", "date", true),
            MODIFIED,
            ID,
        ],
        ObjectKind::Companies => &[
            ("name", "Company name", "string", "text", false),
            ("domain", "Company Domain Name", "string", "text", false),
            ("website", "Website URL", "string", "text", false),
            ("industry", "Industry", "enumeration", "select", false),
            ("phone", "Phone Number", "string", "phonenumber", false),
            ("address", "Street Address", "string", "text", false),
            ("city", "City", "string", "text", false),
            ("state", "State/Region", "string", "text", false),
            ("zip", "Postal Code", "string", "text", false),
            ("country", "Country/Region", "string", "text", false),
            ("description", "Description", "string", "textarea", false),
            ("numberofemployees", "Number of Employees", "number", "number", false),
            ("annualrevenue", "Annual Revenue", "number", "number", false),
            ("lifecyclestage", "Lifecycle Stage", "enumeration", "radio", false),
            OWNER,
            CREATED,
            MODIFIED,
            ID,
        ],
        ObjectKind::Deals => &[
            ("dealname", "Deal Name", "string", "text", false),
            ("amount", "Amount", "number", "number", false),
            ("dealstage", "Deal Stage", "enumeration", "radio", false),
            ("pipeline", "Pipeline", "enumeration", "select", false),
            ("closedate", "Close Date", "datetime", "date", false),
            ("dealtype", "Deal Type", "enumeration", "radio", false),
            ("description", "Deal Description", "string", "textarea", false),
            OWNER,
            CREATED,
            MODIFIED,
            ID,
        ],
        ObjectKind::Notes => &[("hs_note_body", "Note body", "string", "html", false), TIMESTAMP],
        // The activities' default properties, as a stock portal lists them (each object's guide:
        // https://developers.hubspot.com/docs/api-reference/latest/crm/activities/calls/guide,
        // .../emails/guide, .../meetings/guide, .../tasks/guide). `hs_timestamp` is required on
        // create (see [`required_on_create`]). Every activity also has [`ACTIVITY_COMMON`].
        ObjectKind::Calls => &[
            TIMESTAMP,
            ("hs_call_title", "Call Title", "string", "text", false),
            ("hs_call_body", "Call notes", "string", "html", false),
            ("hs_call_direction", "Call direction", "enumeration", "select", false),
            ("hs_call_disposition", "Call outcome", "enumeration", "select", false),
            ("hs_call_duration", "Call duration", "number", "number", false),
            ("hs_call_from_number", "From number", "string", "text", false),
            ("hs_call_to_number", "To number", "string", "text", false),
            ("hs_call_recording_url", "Recording URL", "string", "text", false),
            ("hs_call_status", "Call status", "enumeration", "select", false),
        ],
        ObjectKind::Emails => &[
            TIMESTAMP,
            ("hs_email_subject", "Email subject", "string", "text", false),
            ("hs_email_text", "Email body", "string", "textarea", false),
            ("hs_email_html", "Email HTML body", "string", "html", false),
            ("hs_email_direction", "Email direction", "enumeration", "select", false),
            ("hs_email_status", "Email send status", "enumeration", "select", false),
            ("hs_email_headers", "Email headers", "string", "text", false),
        ],
        ObjectKind::Meetings => &[
            TIMESTAMP,
            ("hs_meeting_title", "Meeting name", "string", "text", false),
            ("hs_meeting_body", "Meeting description", "string", "html", false),
            ("hs_internal_meeting_notes", "Internal meeting notes", "string", "html", false),
            ("hs_meeting_external_url", "External URL", "string", "text", false),
            ("hs_meeting_location", "Location", "string", "text", false),
            ("hs_meeting_start_time", "Meeting start time", "datetime", "date", false),
            ("hs_meeting_end_time", "Meeting end time", "datetime", "date", false),
            ("hs_meeting_outcome", "Meeting outcome", "enumeration", "select", false),
            ("hs_activity_type", "Call and meeting type", "enumeration", "select", false),
        ],
        ObjectKind::Tasks => &[
            TIMESTAMP,
            ("hs_task_subject", "Task Title", "string", "text", false),
            ("hs_task_body", "Notes", "string", "html", false),
            ("hs_task_status", "Task Status", "enumeration", "select", false),
            ("hs_task_priority", "Priority", "enumeration", "select", false),
            ("hs_task_type", "Task Type", "enumeration", "select", false),
            ("hs_task_completion_date", "Completed at", "datetime", "date", true),
        ],
    }
}

/// The options of the activities' enumeration properties, as HubSpot documents them in each
/// activity's guide (https://developers.hubspot.com/docs/api-reference/latest/crm/activities/calls/guide:
/// `hs_call_direction`, `hs_call_status`; .../emails/guide: `hs_email_direction`,
/// `hs_email_status`; .../meetings/guide: `hs_meeting_outcome`; .../tasks/guide:
/// `hs_task_status`, `hs_task_priority`, `hs_task_type`). A value outside them is refused with
/// `INVALID_OPTION`; enumerations not listed here (owners, dispositions, the older objects') are
/// not checked.
pub fn enumeration_options(kind: ObjectKind, name: &str) -> Option<&'static [&'static str]> {
    match (kind, name) {
        (ObjectKind::Calls, "hs_call_direction") => Some(&["INBOUND", "OUTBOUND"]),
        (ObjectKind::Calls, "hs_call_status") => Some(&[
            "BUSY",
            "CALLING_CRM_USER",
            "CANCELED",
            "COMPLETED",
            "CONNECTING",
            "FAILED",
            "IN_PROGRESS",
            "MISSED",
            "NO_ANSWER",
            "QUEUED",
            "RINGING",
        ]),
        (ObjectKind::Emails, "hs_email_direction") => Some(&["EMAIL", "INCOMING_EMAIL", "FORWARDED_EMAIL"]),
        (ObjectKind::Emails, "hs_email_status") => {
            Some(&["BOUNCED", "FAILED", "SCHEDULED", "SENDING", "SENT"])
        }
        (ObjectKind::Meetings, "hs_meeting_outcome") => {
            Some(&["SCHEDULED", "COMPLETED", "RESCHEDULED", "NO_SHOW", "CANCELED"])
        }
        (ObjectKind::Tasks, "hs_task_status") => {
            Some(&["NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"])
        }
        (ObjectKind::Tasks, "hs_task_priority") => Some(&["NONE", "LOW", "MEDIUM", "HIGH"]),
        (ObjectKind::Tasks, "hs_task_type") => Some(&["EMAIL", "CALL", "TODO", "LINKED_IN"]),
        _ => None,
    }
}

/// Properties a create must carry: every activity's `hs_timestamp` ("Required. This field marks
/// the ... time of creation and determines where the ... sits on the record timeline": the calls,
/// emails, meetings and tasks guides, as above).
pub fn required_on_create(kind: ObjectKind) -> &'static [&'static str] {
    match kind {
        ObjectKind::Calls | ObjectKind::Emails | ObjectKind::Meetings | ObjectKind::Tasks => {
            &["hs_timestamp"]
        }
        _ => &[],
    }
}

/// The property group HubSpot files an object type's default properties under.
fn standard_group(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Contacts => "contactinformation",
        ObjectKind::Companies => "companyinformation",
        ObjectKind::Deals => "dealinformation",
        ObjectKind::Notes => "engagement",
        ObjectKind::Calls => "call",
        ObjectKind::Emails => "email",
        ObjectKind::Meetings => "meeting",
        ObjectKind::Tasks => "task",
    }
}

/// Why the properties API refused a definition: HTTP status, category, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyError {
    pub status: u16,
    pub category: &'static str,
    pub message: String,
}

/// The CRM object types the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Contacts,
    Companies,
    Deals,
    Notes,
    Calls,
    Emails,
    Meetings,
    Tasks,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 8] = [
        ObjectKind::Contacts,
        ObjectKind::Companies,
        ObjectKind::Deals,
        ObjectKind::Notes,
        ObjectKind::Calls,
        ObjectKind::Emails,
        ObjectKind::Meetings,
        ObjectKind::Tasks,
    ];

    /// Activities (engagements): notes, calls, emails, meetings, tasks. They share the notes'
    /// scopes, webhooks (`object.*`) and associations to contacts, companies and deals.
    pub fn is_activity(self) -> bool {
        matches!(self, Self::Notes | Self::Calls | Self::Emails | Self::Meetings | Self::Tasks)
    }

    /// The path segment (`contacts`) or HubSpot's object type id (`0-1`).
    pub fn parse(segment: &str) -> Option<Self> {
        match segment.to_ascii_lowercase().as_str() {
            "contacts" | "contact" | "0-1" => Some(Self::Contacts),
            "companies" | "company" | "0-2" => Some(Self::Companies),
            "deals" | "deal" | "0-3" => Some(Self::Deals),
            "notes" | "note" | "0-46" => Some(Self::Notes),
            "calls" | "call" | "0-48" => Some(Self::Calls),
            "emails" | "email" | "0-49" => Some(Self::Emails),
            "meetings" | "meeting" | "0-47" => Some(Self::Meetings),
            "tasks" | "task" | "0-27" => Some(Self::Tasks),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Contacts => "contacts",
            Self::Companies => "companies",
            Self::Deals => "deals",
            Self::Notes => "notes",
            Self::Calls => "calls",
            Self::Emails => "emails",
            Self::Meetings => "meetings",
            Self::Tasks => "tasks",
        }
    }

    /// HubSpot's object type id (`0-1` contacts), as v4 association answers and errors carry it.
    pub fn object_type_id(self) -> &'static str {
        match self {
            Self::Contacts => "0-1",
            Self::Companies => "0-2",
            Self::Deals => "0-3",
            Self::Notes => "0-46",
            // https://developers.hubspot.com/docs/api-reference/latest/crm/understanding-the-crm
            // ("Object type IDs").
            Self::Calls => "0-48",
            Self::Emails => "0-49",
            Self::Meetings => "0-47",
            Self::Tasks => "0-27",
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            Self::Contacts => "contact",
            Self::Companies => "company",
            Self::Deals => "deal",
            Self::Notes => "note",
            Self::Calls => "call",
            Self::Emails => "email",
            Self::Meetings => "meeting",
            Self::Tasks => "task",
        }
    }

    /// Properties every record of this type answers (seeded ones are derived from the seed and id).
    pub fn known_properties(self) -> &'static [&'static str] {
        match self {
            Self::Contacts => &[
                "firstname",
                "lastname",
                "email",
                "phone",
                "company",
                "jobtitle",
                "lifecyclestage",
                "hs_lead_status",
                "associatedcompanyid",
                "createdate",
                "lastmodifieddate",
                "hs_lastmodifieddate",
                "hs_object_id",
            ],
            Self::Companies => &[
                "name",
                "domain",
                "industry",
                "phone",
                "city",
                "country",
                "createdate",
                "hs_lastmodifieddate",
                "hs_object_id",
            ],
            Self::Deals => &[
                "dealname",
                "amount",
                "dealstage",
                "pipeline",
                "closedate",
                "createdate",
                "hs_lastmodifieddate",
                "hs_object_id",
            ],
            Self::Notes => {
                &["hs_note_body", "hs_timestamp", "createdate", "hs_lastmodifieddate", "hs_object_id"]
            }
            Self::Calls => &[
                "hs_timestamp",
                "hs_call_title",
                "hs_call_body",
                "hs_call_direction",
                "hs_call_status",
                "createdate",
                "hs_lastmodifieddate",
                "hs_object_id",
            ],
            Self::Emails => &[
                "hs_timestamp",
                "hs_email_subject",
                "hs_email_text",
                "hs_email_direction",
                "hs_email_status",
                "createdate",
                "hs_lastmodifieddate",
                "hs_object_id",
            ],
            Self::Meetings => &[
                "hs_timestamp",
                "hs_meeting_title",
                "hs_meeting_body",
                "hs_meeting_start_time",
                "hs_meeting_end_time",
                "hs_meeting_outcome",
                "createdate",
                "hs_lastmodifieddate",
                "hs_object_id",
            ],
            Self::Tasks => &[
                "hs_timestamp",
                "hs_task_subject",
                "hs_task_body",
                "hs_task_status",
                "hs_task_priority",
                "createdate",
                "hs_lastmodifieddate",
                "hs_object_id",
            ],
        }
    }

    /// HubSpot's default properties in list and search answers when none are asked for.
    pub fn default_properties(self) -> &'static [&'static str] {
        match self {
            Self::Contacts => {
                &["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"]
            }
            Self::Companies => &["createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"],
            Self::Deals => &[
                "amount",
                "closedate",
                "createdate",
                "dealname",
                "dealstage",
                "hs_lastmodifieddate",
                "hs_object_id",
                "pipeline",
            ],
            Self::Notes | Self::Calls | Self::Emails | Self::Meetings | Self::Tasks => {
                &["hs_createdate", "hs_lastmodifieddate", "hs_object_id"]
            }
        }
    }
}

/// HubSpot's HUBSPOT_DEFINED (unlabeled) association type id from one object type to another
/// (https://developers.hubspot.com/docs/api-reference/latest/crm/associations/guide, "Association
/// type ID values": the activities' rows).
pub fn association_type_id(from: ObjectKind, to: ObjectKind) -> Option<u32> {
    use ObjectKind::*;
    match (from, to) {
        (Contacts, Calls) => Some(193),
        (Calls, Contacts) => Some(194),
        (Companies, Calls) => Some(181),
        (Calls, Companies) => Some(182),
        (Deals, Calls) => Some(205),
        (Calls, Deals) => Some(206),
        (Contacts, Emails) => Some(197),
        (Emails, Contacts) => Some(198),
        (Companies, Emails) => Some(185),
        (Emails, Companies) => Some(186),
        (Deals, Emails) => Some(209),
        (Emails, Deals) => Some(210),
        (Contacts, Meetings) => Some(199),
        (Meetings, Contacts) => Some(200),
        (Companies, Meetings) => Some(187),
        (Meetings, Companies) => Some(188),
        (Deals, Meetings) => Some(211),
        (Meetings, Deals) => Some(212),
        (Contacts, Tasks) => Some(203),
        (Tasks, Contacts) => Some(204),
        (Companies, Tasks) => Some(191),
        (Tasks, Companies) => Some(192),
        (Deals, Tasks) => Some(215),
        (Tasks, Deals) => Some(216),
        (Contacts, Companies) => Some(279),
        (Companies, Contacts) => Some(280),
        (Deals, Contacts) => Some(3),
        (Contacts, Deals) => Some(4),
        (Deals, Companies) => Some(341),
        (Companies, Deals) => Some(342),
        (Contacts, Notes) => Some(201),
        (Notes, Contacts) => Some(202),
        (Companies, Notes) => Some(189),
        (Notes, Companies) => Some(190),
        (Deals, Notes) => Some(213),
        (Notes, Deals) => Some(214),
        _ => None,
    }
}

/// The object type an association type id points to, seen from `from`.
pub fn association_target(from: ObjectKind, type_id: u32) -> Option<ObjectKind> {
    ObjectKind::ALL.into_iter().find(|to| association_type_id(from, *to) == Some(type_id))
}

const FIRST: &[&str] = &[
    "Ada", "Brian", "Chloe", "Diego", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kira", "Liam",
    "Maya", "Noah", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wen", "Ximena",
    "Yusuf", "Zoe",
];
const LAST: &[&str] = &[
    "Andersen", "Baker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hansen", "Ito", "Jensen",
    "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Petrov", "Quispe", "Rossi", "Schmidt", "Tanaka",
    "Ueda", "Varga", "Weber", "Xu", "Yilmaz", "Zhang",
];
const COMPANIES: &[&str] = &[
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark Industries",
    "Wayne Enterprises",
    "Tyrell",
    "Soylent",
    "Vandelay Industries",
    "Aperture",
    "Cyberdyne",
];
const TITLES: &[&str] = &[
    "CEO",
    "CTO",
    "Head of Sales",
    "Account Executive",
    "Engineer",
    "Marketing Manager",
    "Operations Lead",
    "Designer",
    "Analyst",
    "Consultant",
];
const STAGES: &[&str] =
    &["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer"];
const LEAD_STATUS: &[&str] = &[
    "NEW",
    "OPEN",
    "IN_PROGRESS",
    "OPEN_DEAL",
    "UNQUALIFIED",
    "ATTEMPTED_TO_CONTACT",
    "CONNECTED",
    "BAD_TIMING",
];

const INDUSTRIES: &[&str] = &[
    "COMPUTER_SOFTWARE",
    "FINANCIAL_SERVICES",
    "HOSPITAL_HEALTH_CARE",
    "RETAIL",
    "MACHINERY",
    "MARKETING_AND_ADVERTISING",
];
const CITIES: &[(&str, &str)] = &[
    ("Oslo", "Norway"),
    ("Berlin", "Germany"),
    ("Lyon", "France"),
    ("Austin", "United States"),
    ("Osaka", "Japan"),
    ("Toronto", "Canada"),
    ("Porto", "Portugal"),
];
/// The stages of HubSpot's default sales pipeline.
pub const DEAL_STAGES: &[&str] = &[
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
];

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick(seed: u64, id: u64, salt: u64, list: &[&'static str]) -> &'static str {
    let h = mix(seed ^ mix(id.wrapping_mul(31).wrapping_add(salt)));
    list[(h % list.len() as u64) as usize]
}

/// Formats epoch milliseconds the way HubSpot does (`2024-01-01T00:00:00.000Z`).
pub fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a HubSpot date filter value: epoch milliseconds or an ISO 8601 instant.
pub fn parse_instant(value: &str) -> Option<i64> {
    if let Ok(ms) = value.trim().parse::<i64>() {
        return Some(ms);
    }
    DateTime::parse_from_rfc3339(value.trim()).ok().map(|d| d.timestamp_millis())
}

/// One stored record. Seeded records store only their edits in `overrides`.
#[derive(Debug, Clone)]
pub struct Record {
    pub created_ms: i64,
    pub modified_ms: i64,
    pub archived_at: Option<i64>,
    seeded: bool,
    overrides: BTreeMap<String, String>,
}

/// One object type's records and their modification index.
#[derive(Debug, Default)]
struct Table {
    records: BTreeMap<u64, Record>,
    by_modified: BTreeSet<(i64, u64)>,
    next_id: u64,
    /// `(unique-value property, value)` -> id, live records only.
    unique: BTreeMap<(String, String), u64>,
}

/// How many records of each type to seed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeedCounts {
    pub contacts: usize,
    pub companies: usize,
    pub deals: usize,
    pub notes: usize,
    pub calls: usize,
    pub emails: usize,
    pub meetings: usize,
    pub tasks: usize,
}

impl SeedCounts {
    fn of(&self, kind: ObjectKind) -> usize {
        match kind {
            ObjectKind::Contacts => self.contacts,
            ObjectKind::Companies => self.companies,
            ObjectKind::Deals => self.deals,
            ObjectKind::Notes => self.notes,
            ObjectKind::Calls => self.calls,
            ObjectKind::Emails => self.emails,
            ObjectKind::Meetings => self.meetings,
            ObjectKind::Tasks => self.tasks,
        }
    }
}

/// Why a write was refused: HubSpot's 400 `VALIDATION_ERROR` whose message lists each invalid
/// property, `Property values were not valid: [{"isValid":false,"message":...,"error":...,"name":...}]`
/// (https://developers.hubspot.com/changelog/upcoming-property-validations-rules-will-be-enforced-for-apis-and-integrations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteError {
    pub category: &'static str,
    pub message: String,
    /// The `error` code of each invalid property (`PROPERTY_DOESNT_EXIST`, `INVALID_FLOAT`, ...).
    pub codes: Vec<&'static str>,
}

impl WriteError {
    fn invalid(entries: Vec<(&'static str, String, String)>) -> Self {
        let list: Vec<Value> = entries
            .iter()
            .map(|(code, name, message)| {
                json!({
                    "isValid": false,
                    "message": message,
                    "error": code,
                    "name": name,
                    "localizedErrorMessage": message,
                })
            })
            .collect();
        Self {
            category: "VALIDATION_ERROR",
            message: format!("Property values were not valid: {}", Value::Array(list)),
            codes: entries.iter().map(|(code, _, _)| *code).collect(),
        }
    }
}

/// Every table, the associations between records and the account's clock.
#[derive(Debug)]
pub struct Store {
    seed: u64,
    tables: BTreeMap<ObjectKind, Table>,
    /// `(from type, from id, to type, to id)`, kept in both directions.
    associations: BTreeSet<(ObjectKind, u64, ObjectKind, u64)>,
    last_stamp: i64,
    clock_offset_ms: i64,
    /// Property definitions per object type: HubSpot's defaults, then those clients created.
    properties: BTreeMap<ObjectKind, BTreeMap<String, PropertyDef>>,
    /// Changes since the fake last took them (only while `record_changes`), for its webhooks.
    pub(crate) changes: Vec<Change>,
    pub(crate) record_changes: bool,
}

/// What happened to a record, as a HubSpot webhook subscription type names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    Creation,
    PropertyChange { name: String, value: String },
    Deletion,
    Restore,
}

/// One change of a record, at the account's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ObjectKind,
    pub id: u64,
    pub what: ChangeKind,
    pub at_ms: i64,
}

fn seeded_times(i: u64) -> (i64, i64) {
    let created_ms = SEED_BASE_MS + (i as i64) * 100;
    let modified_ms = created_ms.max(SEED_BASE_MS + THIRTY_DAYS_MS + ((i / 3) as i64) * 1_000);
    (created_ms, modified_ms)
}

impl Store {
    /// `count` contacts and nothing else (see [`Store::seeded_with`]).
    pub fn seeded(count: usize, seed: u64) -> Self {
        Self::seeded_with(SeedCounts { contacts: count, ..SeedCounts::default() }, seed)
    }

    /// Records with ids `1..=count` per type, created 100 ms apart from [`SEED_BASE_MS`] and last
    /// modified from 30 days later on, in groups of three sharing one instant. Contact `i` is
    /// associated with one company, deal `i` with one contact and one company, note `i` with one
    /// contact and (when there are deals) one deal.
    pub fn seeded_with(counts: SeedCounts, seed: u64) -> Self {
        let mut tables = BTreeMap::new();
        let mut last_stamp = SEED_BASE_MS;
        for kind in ObjectKind::ALL {
            let count = counts.of(kind);
            let mut table = Table { next_id: count as u64 + 1, ..Table::default() };
            for i in 1..=count as u64 {
                let (created_ms, modified_ms) = seeded_times(i);
                last_stamp = last_stamp.max(modified_ms);
                let record = Record {
                    created_ms,
                    modified_ms,
                    archived_at: None,
                    seeded: true,
                    overrides: BTreeMap::new(),
                };
                table.records.insert(i, record);
                table.by_modified.insert((modified_ms, i));
            }
            tables.insert(kind, table);
        }
        let mut store = Self {
            seed,
            tables,
            associations: BTreeSet::new(),
            last_stamp,
            clock_offset_ms: 0,
            properties: ObjectKind::ALL
                .into_iter()
                .map(|kind| {
                    let defs = standard_properties(kind)
                        .map(|(name, label, ty, field, read_only)| {
                            let def = PropertyDef {
                                name: (*name).to_owned(),
                                label: (*label).to_owned(),
                                kind: (*ty).to_owned(),
                                field_type: (*field).to_owned(),
                                group_name: standard_group(kind).to_owned(),
                                description: String::new(),
                                has_unique_value: false,
                                hubspot_defined: true,
                                read_only: *read_only,
                                created_ms: SEED_BASE_MS,
                            };
                            ((*name).to_owned(), def)
                        })
                        .collect();
                    (kind, defs)
                })
                .collect(),
            changes: Vec::new(),
            record_changes: false,
        };
        let pick_id =
            |n: usize, i: u64, salt: u64| (n > 0).then(|| (mix(seed ^ i.wrapping_mul(salt)) % n as u64) + 1);
        for i in 1..=counts.contacts as u64 {
            if let Some(c) = pick_id(counts.companies, i, 11) {
                store.link(ObjectKind::Contacts, i, ObjectKind::Companies, c);
            }
        }
        for i in 1..=counts.deals as u64 {
            if let Some(c) = pick_id(counts.contacts, i, 13) {
                store.link(ObjectKind::Deals, i, ObjectKind::Contacts, c);
            }
            if let Some(c) = pick_id(counts.companies, i, 17) {
                store.link(ObjectKind::Deals, i, ObjectKind::Companies, c);
            }
        }
        for kind in [
            ObjectKind::Notes,
            ObjectKind::Calls,
            ObjectKind::Emails,
            ObjectKind::Meetings,
            ObjectKind::Tasks,
        ] {
            let salt = kind as u64 * 100;
            for i in 1..=counts.of(kind) as u64 {
                if let Some(c) = pick_id(counts.contacts, i, 19 + salt) {
                    store.link(kind, i, ObjectKind::Contacts, c);
                }
                if let Some(d) = pick_id(counts.deals, i, 23 + salt) {
                    store.link(kind, i, ObjectKind::Deals, d);
                }
            }
        }
        store
    }

    fn table(&self, kind: ObjectKind) -> Option<&Table> {
        self.tables.get(&kind)
    }

    fn table_mut(&mut self, kind: ObjectKind) -> &mut Table {
        self.tables.entry(kind).or_default()
    }

    /// The account's clock in epoch milliseconds (the host clock plus any advance).
    pub fn now_ms(&self) -> i64 {
        Utc::now().timestamp_millis() + self.clock_offset_ms
    }

    /// Moves the account's clock forward.
    pub fn advance_clock(&mut self, ms: i64) {
        self.clock_offset_ms += ms.max(0);
    }

    /// A timestamp strictly greater than every one handed out so far (and not before now).
    pub fn next_stamp(&mut self) -> i64 {
        let stamp = self.now_ms().max(self.last_stamp + 1);
        self.last_stamp = stamp;
        stamp
    }

    pub fn len(&self, kind: ObjectKind) -> usize {
        self.table(kind).map_or(0, |t| t.records.len())
    }

    pub fn get(&self, kind: ObjectKind, id: u64) -> Option<&Record> {
        self.table(kind)?.records.get(&id)
    }

    /// A live (not archived) record.
    pub fn live(&self, kind: ObjectKind, id: u64) -> Option<&Record> {
        self.get(kind, id).filter(|r| r.archived_at.is_none())
    }

    /// The live record holding `value` in the unique-value property `name`.
    pub fn find_unique(&self, kind: ObjectKind, name: &str, value: &str) -> Option<u64> {
        self.table(kind)?.unique.get(&(name.to_owned(), value.to_owned())).copied()
    }

    /// The live contact with this email (HubSpot compares emails case-insensitively).
    pub fn find_by_email(&self, email: &str) -> Option<u64> {
        let wanted = email.trim().to_lowercase();
        self.all_ids(ObjectKind::Contacts).into_iter().find(|id| {
            self.live(ObjectKind::Contacts, *id).is_some_and(|r| {
                self.property(ObjectKind::Contacts, *id, r, "email")
                    .is_some_and(|e| e.to_lowercase() == wanted)
            })
        })
    }

    /// One property definition of an object type.
    pub fn property_def(&self, kind: ObjectKind, name: &str) -> Option<&PropertyDef> {
        self.properties.get(&kind)?.get(name)
    }

    /// Every property definition of an object type, by name.
    pub fn property_defs(&self, kind: ObjectKind) -> Vec<&PropertyDef> {
        self.properties.get(&kind).map(|m| m.values().collect()).unwrap_or_default()
    }

    /// True when `name` is a unique-value property of the type (usable as `idProperty`).
    pub fn is_unique(&self, kind: ObjectKind, name: &str) -> bool {
        self.property_def(kind, name).is_some_and(|d| d.has_unique_value)
    }

    /// Creates a custom property as HubSpot's properties API does
    /// (https://developers.hubspot.com/docs/api/crm/properties): 409 `OBJECT_ALREADY_EXISTS` when the
    /// name is taken (https://legacydocs.hubspot.com/docs/methods/contacts/v2/create_contacts_property),
    /// `hasUniqueValue` only on types that support it (contacts, companies, deals, tickets, custom
    /// objects; not notes or other activities) and at most [`MAX_UNIQUE_PROPERTIES`] per type
    /// (https://developers.hubspot.com/changelog/unique-properties-for-contacts), both 400
    /// `VALIDATION_ERROR`.
    pub fn define_property(
        &mut self,
        kind: ObjectKind,
        mut def: PropertyDef,
    ) -> Result<PropertyDef, PropertyError> {
        let bad = |message: String| PropertyError { status: 400, category: "VALIDATION_ERROR", message };
        if def.name.is_empty()
            || !def.name.starts_with(|c: char| c.is_ascii_lowercase())
            || !def.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(bad(format!(
                "Property name '{}' is invalid: use lowercase letters, digits and underscores, starting with a letter.",
                def.name
            )));
        }
        if self.property_def(kind, &def.name).is_some() {
            return Err(PropertyError {
                status: 409,
                category: "OBJECT_ALREADY_EXISTS",
                message: format!("Property named '{}' already exists.", def.name),
            });
        }
        if def.has_unique_value {
            if kind.is_activity() {
                return Err(bad(format!(
                    "Unique value properties are not supported for object type {}.",
                    kind.object_type_id()
                )));
            }
            let held = self.property_defs(kind).iter().filter(|d| d.has_unique_value).count();
            if held >= MAX_UNIQUE_PROPERTIES {
                return Err(bad(format!(
                    "Cannot create property '{}': object type {} already has the maximum of {MAX_UNIQUE_PROPERTIES} unique value properties.",
                    def.name,
                    kind.object_type_id()
                )));
            }
        }
        if def.group_name.is_empty() {
            def.group_name = standard_group(kind).to_owned();
        }
        def.hubspot_defined = false;
        def.read_only = false;
        def.created_ms = self.now_ms();
        self.properties.entry(kind).or_default().insert(def.name.clone(), def.clone());
        Ok(def)
    }

    /// Ids of live `to` records associated with `(kind, id)`, ascending.
    pub fn associated(&self, kind: ObjectKind, id: u64, to: ObjectKind) -> Vec<u64> {
        self.associations
            .range((kind, id, to, 0)..=(kind, id, to, u64::MAX))
            .map(|(_, _, _, to_id)| *to_id)
            .filter(|to_id| self.live(to, *to_id).is_some())
            .collect()
    }

    /// Associates two records (both directions); `false` if either is missing or archived or the
    /// pair of types has no association.
    pub fn associate(&mut self, kind: ObjectKind, id: u64, to: ObjectKind, to_id: u64) -> bool {
        if association_type_id(kind, to).is_none()
            || self.live(kind, id).is_none()
            || self.live(to, to_id).is_none()
        {
            return false;
        }
        self.link(kind, id, to, to_id);
        true
    }

    /// Removes the association between two records (both directions); `false` if there was none.
    pub fn unlink(&mut self, kind: ObjectKind, id: u64, to: ObjectKind, to_id: u64) -> bool {
        let had = self.associations.remove(&(kind, id, to, to_id));
        self.associations.remove(&(to, to_id, kind, id)) || had
    }

    fn link(&mut self, kind: ObjectKind, id: u64, to: ObjectKind, to_id: u64) {
        self.associations.insert((kind, id, to, to_id));
        self.associations.insert((to, to_id, kind, id));
    }

    /// The value of `name` on record `(kind, id)` (`None` when unset or empty).
    pub fn property(&self, kind: ObjectKind, id: u64, r: &Record, name: &str) -> Option<String> {
        if let Some(v) = r.overrides.get(name) {
            return (!v.is_empty()).then(|| v.clone());
        }
        let s = self.seed;
        let seeded = |salt: u64, list: &[&'static str]| r.seeded.then(|| pick(s, id, salt, list).to_owned());
        let h = mix(s ^ mix(id.wrapping_add((kind as u64) << 40)));
        match (kind, name) {
            (_, "hs_object_id") => Some(id.to_string()),
            (_, "createdate" | "hs_createdate") => Some(iso(r.created_ms)),
            (_, "hs_lastmodifieddate") | (ObjectKind::Contacts, "lastmodifieddate") => {
                Some(iso(r.modified_ms))
            }
            (ObjectKind::Contacts, "associatedcompanyid") => {
                self.associated(kind, id, ObjectKind::Companies).first().map(u64::to_string)
            }
            (ObjectKind::Contacts, "firstname") => seeded(1, FIRST),
            (ObjectKind::Contacts, "lastname") => seeded(2, LAST),
            (ObjectKind::Contacts, "company") => seeded(3, COMPANIES),
            (ObjectKind::Contacts, "jobtitle") => seeded(4, TITLES),
            (ObjectKind::Contacts, "lifecyclestage") => seeded(5, STAGES),
            (ObjectKind::Contacts, "hs_lead_status") => seeded(6, LEAD_STATUS),
            (ObjectKind::Contacts, "email") => r.seeded.then(|| {
                format!("{}.{}.{id}@example.com", pick(s, id, 1, FIRST), pick(s, id, 2, LAST)).to_lowercase()
            }),
            (ObjectKind::Contacts | ObjectKind::Companies, "phone") => {
                r.seeded.then(|| format!("+1-555-{:04}", mix(s ^ id ^ ((kind as u64) << 32)) % 10_000))
            }
            (ObjectKind::Companies, "name") => {
                r.seeded.then(|| format!("{} {id}", pick(s, id, 7, COMPANIES)))
            }
            (ObjectKind::Companies, "domain") => r.seeded.then(|| {
                let slug: String =
                    pick(s, id, 7, COMPANIES).chars().filter(char::is_ascii_alphanumeric).collect();
                format!("{}{id}.example.com", slug.to_lowercase())
            }),
            (ObjectKind::Companies, "industry") => seeded(8, INDUSTRIES),
            (ObjectKind::Companies, "city") => {
                r.seeded.then(|| CITIES[(h % CITIES.len() as u64) as usize].0.to_owned())
            }
            (ObjectKind::Companies, "country") => {
                r.seeded.then(|| CITIES[(h % CITIES.len() as u64) as usize].1.to_owned())
            }
            (ObjectKind::Deals, "dealname") => {
                r.seeded.then(|| format!("{} deal {id}", pick(s, id, 9, COMPANIES)))
            }
            (ObjectKind::Deals, "amount") => r.seeded.then(|| {
                let cents = h % 10_000_000;
                if cents.is_multiple_of(4) {
                    (cents / 100).to_string()
                } else {
                    format!("{}.{:02}", cents / 100, cents % 100)
                }
            }),
            (ObjectKind::Deals, "dealstage") => seeded(10, DEAL_STAGES),
            (ObjectKind::Deals, "pipeline") => r.seeded.then(|| "default".to_owned()),
            (ObjectKind::Deals, "closedate") => {
                r.seeded.then(|| iso(r.created_ms + 86_400_000 * (30 + (h % 120) as i64)))
            }
            (ObjectKind::Notes, "hs_note_body") => {
                r.seeded.then(|| format!("<p>Call with {} about renewal ({id})</p>", pick(s, id, 1, FIRST)))
            }
            (ObjectKind::Notes, "hs_timestamp") => r.seeded.then(|| iso(r.created_ms)),
            (k, "hs_timestamp") if k.is_activity() => r.seeded.then(|| iso(r.created_ms)),
            (ObjectKind::Calls, "hs_call_title") => {
                r.seeded.then(|| format!("Call with {} ({id})", pick(s, id, 1, FIRST)))
            }
            (ObjectKind::Calls, "hs_call_body") => {
                r.seeded.then(|| format!("<p>Discussed the {} renewal</p>", pick(s, id, 7, COMPANIES)))
            }
            (ObjectKind::Calls, "hs_call_direction") => seeded(11, &["INBOUND", "OUTBOUND"]),
            (ObjectKind::Calls, "hs_call_status") => r.seeded.then(|| "COMPLETED".to_owned()),
            (ObjectKind::Emails, "hs_email_subject") => {
                r.seeded.then(|| format!("Re: {} proposal ({id})", pick(s, id, 7, COMPANIES)))
            }
            (ObjectKind::Emails, "hs_email_text") => {
                r.seeded.then(|| format!("Hi {}, thanks for the call.", pick(s, id, 1, FIRST)))
            }
            (ObjectKind::Emails, "hs_email_direction") => seeded(12, &["EMAIL", "INCOMING_EMAIL"]),
            (ObjectKind::Emails, "hs_email_status") => r.seeded.then(|| "SENT".to_owned()),
            (ObjectKind::Meetings, "hs_meeting_title") => {
                r.seeded.then(|| format!("{} kickoff ({id})", pick(s, id, 7, COMPANIES)))
            }
            (ObjectKind::Meetings, "hs_meeting_body") => {
                r.seeded.then(|| "<p>Agenda: scope, timeline</p>".to_owned())
            }
            (ObjectKind::Meetings, "hs_meeting_start_time") => r.seeded.then(|| iso(r.created_ms)),
            (ObjectKind::Meetings, "hs_meeting_end_time") => r.seeded.then(|| iso(r.created_ms + 1_800_000)),
            (ObjectKind::Meetings, "hs_meeting_outcome") => seeded(13, &["SCHEDULED", "COMPLETED"]),
            (ObjectKind::Tasks, "hs_task_subject") => {
                r.seeded.then(|| format!("Follow up with {} ({id})", pick(s, id, 1, FIRST)))
            }
            (ObjectKind::Tasks, "hs_task_body") => {
                r.seeded.then(|| "<p>Send the pricing sheet</p>".to_owned())
            }
            (ObjectKind::Tasks, "hs_task_status") => seeded(14, &["NOT_STARTED", "COMPLETED"]),
            (ObjectKind::Tasks, "hs_task_priority") => seeded(15, &["LOW", "MEDIUM", "HIGH"]),
            _ => None,
        }
    }

    /// The numeric value of a date or id property, for comparisons and sorting.
    pub fn numeric(&self, kind: ObjectKind, id: u64, r: &Record, name: &str) -> Option<i64> {
        match (kind, name) {
            (_, "hs_object_id") => i64::try_from(id).ok(),
            (_, "createdate" | "hs_createdate") => Some(r.created_ms),
            (_, "hs_lastmodifieddate") | (ObjectKind::Contacts, "lastmodifieddate") => Some(r.modified_ms),
            // The activities' own instants (`hs_timestamp`, a meeting's start and end) compare as
            // instants too.
            (k, "hs_timestamp" | "hs_meeting_start_time" | "hs_meeting_end_time") if k.is_activity() => {
                self.property(kind, id, r, name).as_deref().and_then(parse_instant)
            }
            _ => None,
        }
    }

    /// The record as HubSpot's `SimplePublicObject` JSON with the requested properties, and the
    /// requested associations (HubSpot's v3 `associations` block, only types that have some).
    pub fn render(
        &self,
        kind: ObjectKind,
        id: u64,
        r: &Record,
        properties: &[String],
        associations: &[ObjectKind],
    ) -> Value {
        let mut props = Map::new();
        let defaults = kind.default_properties().iter().map(|p| (*p).to_owned());
        let names: BTreeSet<String> = if properties.is_empty() {
            defaults.collect()
        } else {
            properties.iter().cloned().chain(std::iter::once("hs_object_id".to_owned())).collect()
        };
        // HubSpot leaves out requested properties the type does not have.
        let known = |name: &str| self.property_def(kind, name).is_some() || r.overrides.contains_key(name);
        for name in names.into_iter().filter(|n| known(n)) {
            let v = self.property(kind, id, r, &name).map(Value::String).unwrap_or(Value::Null);
            props.insert(name, v);
        }
        let mut obj = json!({
            "id": id.to_string(),
            "properties": props,
            "createdAt": iso(r.created_ms),
            "updatedAt": iso(r.modified_ms),
            "archived": r.archived_at.is_some(),
        });
        let Some(map) = obj.as_object_mut() else { return obj };
        if let Some(at) = r.archived_at {
            map.insert("archivedAt".into(), Value::String(iso(at)));
        }
        let mut assoc = Map::new();
        for to in associations {
            let ids = self.associated(kind, id, *to);
            if ids.is_empty() {
                continue;
            }
            let kind_name = format!("{}_to_{}", kind.singular(), to.singular());
            let results: Vec<Value> =
                ids.iter().map(|i| json!({ "id": i.to_string(), "type": kind_name })).collect();
            assoc.insert(to.as_str().to_owned(), json!({ "results": results }));
        }
        if !assoc.is_empty() {
            map.insert("associations".into(), Value::Object(assoc));
        }
        obj
    }

    /// The record with every known property and any custom one set on it, and every association.
    pub fn render_all(&self, kind: ObjectKind, id: u64) -> Option<Value> {
        let r = self.get(kind, id)?;
        let props: Vec<String> = kind
            .known_properties()
            .iter()
            .map(|p| (*p).to_owned())
            .chain(r.overrides.keys().cloned())
            .collect();
        Some(self.render(kind, id, r, &props, &ObjectKind::ALL))
    }

    /// Ids from `from` on, archived or not as asked, at most `limit`.
    pub fn ids_from(&self, kind: ObjectKind, from: u64, archived: bool, limit: usize) -> Vec<u64> {
        let Some(t) = self.table(kind) else { return Vec::new() };
        t.records
            .range(from..)
            .filter(|(_, r)| r.archived_at.is_some() == archived)
            .map(|(id, _)| *id)
            .take(limit)
            .collect()
    }

    /// Ids of live records whose `hs_lastmodifieddate` is within `[lo, hi]`, in `(modified, id)` order.
    pub fn modified_between(&self, kind: ObjectKind, lo: i64, hi: i64) -> Vec<u64> {
        let Some(t) = self.table(kind) else { return Vec::new() };
        t.by_modified
            .range((lo, 0)..=(hi, u64::MAX))
            .map(|(_, id)| *id)
            .filter(|id| t.records.get(id).is_some_and(|r| r.archived_at.is_none()))
            .collect()
    }

    /// Checks property values as HubSpot would: every property must be defined on the type
    /// (`PROPERTY_DOESNT_EXIST`; a person's edits through the admin routes skip this, `lenient`),
    /// numbers and dates must parse, and a unique-value property's value must not be held by another
    /// live record. Every invalid property is listed in one error.
    pub fn check(
        &self,
        kind: ObjectKind,
        id: Option<u64>,
        properties: &BTreeMap<String, String>,
        lenient: bool,
    ) -> Result<(), WriteError> {
        // HubSpot keeps one contact per email: a create (or an update) with another contact's
        // email is a 409 CONFLICT "Contact already exists. Existing ID: N"
        // (https://developers.hubspot.com/docs/api/crm/contacts, "Create contacts").
        if kind == ObjectKind::Contacts
            && let Some(email) = properties.get("email").filter(|e| !e.trim().is_empty())
            && let Some(holder) = self.find_by_email(email).filter(|h| Some(*h) != id)
        {
            return Err(WriteError {
                category: "CONFLICT",
                message: format!("Contact already exists. Existing ID: {holder}"),
                codes: Vec::new(),
            });
        }
        let mut invalid = Vec::new();
        if id.is_none() {
            for name in required_on_create(kind) {
                if properties.get(*name).is_none_or(|v| v.trim().is_empty()) {
                    invalid.push(("REQUIRED_PROPERTY", (*name).to_owned(), format!("{name} is required")));
                }
            }
        }
        for (name, value) in properties {
            let Some(def) = self.property_def(kind, name) else {
                if !lenient {
                    invalid.push((
                        "PROPERTY_DOESNT_EXIST",
                        name.clone(),
                        format!("Property \"{name}\" does not exist"),
                    ));
                }
                continue;
            };
            if value.is_empty() || def.read_only {
                continue;
            }
            let is_date = |v: &str| {
                parse_instant(v).is_some() || chrono::NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d").is_ok()
            };
            match def.kind.as_str() {
                "number" if value.trim().parse::<f64>().is_err() => {
                    invalid.push(("INVALID_FLOAT", name.clone(), format!("{value} was not a valid number.")))
                }
                "date" | "datetime" if !is_date(value) => invalid.push((
                    "INVALID_DATE",
                    name.clone(),
                    format!("{value} was not a valid long (epoch millis) or ISO 8601 date."),
                )),
                "enumeration" => {
                    if let Some(options) = enumeration_options(kind, name)
                        && !options.contains(&value.as_str())
                    {
                        invalid.push((
                            "INVALID_OPTION",
                            name.clone(),
                            format!("{value} was not one of the allowed options: {options:?}"),
                        ));
                    }
                }
                _ => {}
            }
            // The duplicate answer of a unique-value property: HubSpot does not document it; this is
            // the 400 "<value> already has that value." integrators observe.
            if def.has_unique_value && self.find_unique(kind, name, value).is_some_and(|h| Some(h) != id) {
                invalid.push(("DUPLICATE_VALUE", name.clone(), format!("{value} already has that value.")));
            }
        }
        if invalid.is_empty() { Ok(()) } else { Err(WriteError::invalid(invalid)) }
    }

    /// The unique-value properties among these, with their non-empty values.
    fn unique_values(
        &self,
        kind: ObjectKind,
        properties: &BTreeMap<String, String>,
    ) -> Vec<(String, String)> {
        properties
            .iter()
            .filter(|(k, v)| !v.is_empty() && self.is_unique(kind, k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Creates a record with these properties; returns its id.
    pub fn create(
        &mut self,
        kind: ObjectKind,
        properties: BTreeMap<String, String>,
    ) -> Result<u64, WriteError> {
        self.create_as(kind, properties, false)
    }

    /// [`Store::create`]; `lenient` lets a person's admin edit set properties the type does not define.
    pub fn create_as(
        &mut self,
        kind: ObjectKind,
        properties: BTreeMap<String, String>,
        lenient: bool,
    ) -> Result<u64, WriteError> {
        self.check(kind, None, &properties, lenient)?;
        let uniques = self.unique_values(kind, &properties);
        let stamp = self.next_stamp();
        let table = self.table_mut(kind);
        let id = table.next_id.max(1);
        table.next_id = id + 1;
        let overrides: BTreeMap<String, String> =
            properties.into_iter().filter(|(k, _)| writable(k)).collect();
        for key in uniques {
            table.unique.insert(key, id);
        }
        table.records.insert(
            id,
            Record { created_ms: stamp, modified_ms: stamp, archived_at: None, seeded: false, overrides },
        );
        table.by_modified.insert((stamp, id));
        self.log(kind, id, ChangeKind::Creation, stamp);
        Ok(id)
    }

    fn log(&mut self, kind: ObjectKind, id: u64, what: ChangeKind, at_ms: i64) {
        if self.record_changes {
            self.changes.push(Change { kind, id, what, at_ms });
        }
    }

    /// Sets properties on a live record at `stamp` (or a fresh one). `Ok(false)` if it is not there.
    pub fn update(
        &mut self,
        kind: ObjectKind,
        id: u64,
        properties: &BTreeMap<String, String>,
        stamp: Option<i64>,
    ) -> Result<bool, WriteError> {
        self.update_as(kind, id, properties, stamp, false)
    }

    /// [`Store::update`]; `lenient` lets a person's admin edit set properties the type does not define.
    pub fn update_as(
        &mut self,
        kind: ObjectKind,
        id: u64,
        properties: &BTreeMap<String, String>,
        stamp: Option<i64>,
        lenient: bool,
    ) -> Result<bool, WriteError> {
        if self.live(kind, id).is_none() {
            return Ok(false);
        }
        self.check(kind, Some(id), properties, lenient)?;
        let unique: BTreeSet<String> =
            properties.keys().filter(|k| self.is_unique(kind, k)).cloned().collect();
        let stamp = stamp.unwrap_or_else(|| self.next_stamp());
        let table = self.table_mut(kind);
        let Some(r) = table.records.get_mut(&id) else { return Ok(false) };
        for (k, v) in properties.iter().filter(|(k, _)| writable(k)) {
            if unique.contains(k) {
                if let Some(old) = r.overrides.get(k) {
                    table.unique.remove(&(k.clone(), old.clone()));
                }
                if !v.is_empty() {
                    table.unique.insert((k.clone(), v.clone()), id);
                }
            }
            r.overrides.insert(k.clone(), v.clone());
        }
        table.by_modified.remove(&(r.modified_ms, id));
        r.modified_ms = stamp;
        table.by_modified.insert((stamp, id));
        for (name, value) in properties.iter().filter(|(k, _)| writable(k)) {
            let what = ChangeKind::PropertyChange { name: name.clone(), value: value.clone() };
            self.log(kind, id, what, stamp);
        }
        Ok(true)
    }

    /// Archives a live record (it leaves search and the default listing); `false` if absent.
    pub fn archive(&mut self, kind: ObjectKind, id: u64) -> bool {
        if self.live(kind, id).is_none() {
            return false;
        }
        let stamp = self.next_stamp();
        let table = self.table_mut(kind);
        let Some(r) = table.records.get_mut(&id) else { return false };
        r.archived_at = Some(stamp);
        table.unique.retain(|_, holder| *holder != id);
        table.by_modified.remove(&(r.modified_ms, id));
        r.modified_ms = stamp;
        table.by_modified.insert((stamp, id));
        self.log(kind, id, ChangeKind::Deletion, stamp);
        true
    }

    /// Restores an archived record (HubSpot's "restore" from the recycle bin) with a new modified
    /// stamp; `false` if it is absent or live.
    pub fn restore(&mut self, kind: ObjectKind, id: u64) -> bool {
        if self.get(kind, id).is_none_or(|r| r.archived_at.is_none()) {
            return false;
        }
        let uniques = self
            .get(kind, id)
            .map(|r| self.unique_values(kind, &r.overrides))
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, v)| self.find_unique(kind, k, v).is_none())
            .collect::<Vec<_>>();
        let stamp = self.next_stamp();
        let table = self.table_mut(kind);
        let Some(r) = table.records.get_mut(&id) else { return false };
        r.archived_at = None;
        for key in uniques {
            table.unique.insert(key, id);
        }
        table.by_modified.remove(&(r.modified_ms, id));
        r.modified_ms = stamp;
        table.by_modified.insert((stamp, id));
        self.log(kind, id, ChangeKind::Restore, stamp);
        true
    }

    /// All ids of one type, archived or not.
    pub fn all_ids(&self, kind: ObjectKind) -> Vec<u64> {
        self.table(kind).map(|t| t.records.keys().copied().collect()).unwrap_or_default()
    }

    pub fn max_modified(&self, kind: ObjectKind) -> Option<i64> {
        self.table(kind)?.by_modified.last().map(|(m, _)| *m)
    }
}

fn writable(name: &str) -> bool {
    !matches!(
        name,
        "hs_object_id"
            | "createdate"
            | "hs_createdate"
            | "lastmodifieddate"
            | "hs_lastmodifieddate"
            | "associatedcompanyid"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: ObjectKind = ObjectKind::Contacts;

    #[test]
    fn seeding_is_deterministic_and_shares_some_timestamps() {
        let a = Store::seeded(30, 7);
        let b = Store::seeded(30, 7);
        let c = Store::seeded(30, 8);
        let name = |s: &Store, id| s.property(C, id, s.get(C, id).unwrap(), "email");
        assert_eq!(name(&a, 5), name(&b, 5));
        assert!((1..=30).any(|id| name(&a, id) != name(&c, id)));
        let stamps: BTreeSet<i64> = (1..=30).map(|id| a.get(C, id).unwrap().modified_ms).collect();
        assert!(stamps.len() < 30);
    }

    #[test]
    fn edits_get_a_timestamp_above_every_existing_one() {
        let mut s = Store::seeded(10, 1);
        let before = s.max_modified(C).unwrap();
        let props = BTreeMap::from([("firstname".to_owned(), "Zed".to_owned())]);
        assert!(s.update(C, 3, &props, None).unwrap());
        let c = s.get(C, 3).unwrap();
        assert!(c.modified_ms > before);
        assert_eq!(s.property(C, 3, c, "firstname").as_deref(), Some("Zed"));
        let first = s.next_stamp();
        assert!(s.next_stamp() > first);
        assert!(!s.update(C, 99, &props, None).unwrap());
    }

    #[test]
    fn seeded_deals_are_associated_both_ways_and_archiving_hides_them() {
        let counts = SeedCounts { contacts: 20, companies: 5, deals: 10, notes: 10, ..SeedCounts::default() };
        let mut s = Store::seeded_with(counts, 3);
        let contacts = s.associated(ObjectKind::Deals, 4, C);
        assert_eq!(contacts.len(), 1);
        assert!(s.associated(C, contacts[0], ObjectKind::Deals).contains(&4));
        assert_eq!(s.associated(ObjectKind::Deals, 4, ObjectKind::Companies).len(), 1);
        let company = s.associated(C, 1, ObjectKind::Companies)[0];
        let r = s.get(C, 1).unwrap();
        assert_eq!(s.property(C, 1, r, "associatedcompanyid"), Some(company.to_string()));
        assert!(s.archive(C, contacts[0]));
        assert!(s.associated(ObjectKind::Deals, 4, C).is_empty());
        assert!(s.restore(C, contacts[0]));
        assert_eq!(s.associated(ObjectKind::Deals, 4, C), contacts);
    }

    #[test]
    fn a_stock_portal_has_no_unique_property_until_one_is_defined_and_then_refuses_duplicates() {
        let mut s = Store::seeded(0, 1);
        let key = BTreeMap::from([("syncbridge_key".to_owned(), "k-1".to_owned())]);
        let err = s.create(ObjectKind::Deals, key.clone()).unwrap_err();
        assert_eq!(err.codes, ["PROPERTY_DOESNT_EXIST"]);
        let def = |unique| PropertyDef {
            name: "syncbridge_key".into(),
            label: "Key".into(),
            kind: "string".into(),
            field_type: "text".into(),
            group_name: "dealinformation".into(),
            description: String::new(),
            has_unique_value: unique,
            hubspot_defined: true,
            read_only: true,
            created_ms: 0,
        };
        assert_eq!(s.define_property(ObjectKind::Notes, def(true)).unwrap_err().status, 400);
        let made = s.define_property(ObjectKind::Deals, def(true)).unwrap();
        assert!(!made.hubspot_defined && !made.read_only);
        assert_eq!(s.define_property(ObjectKind::Deals, def(true)).unwrap_err().status, 409);
        let id = s.create(ObjectKind::Deals, key.clone()).unwrap();
        assert_eq!(s.find_unique(ObjectKind::Deals, "syncbridge_key", "k-1"), Some(id));
        let dup = s.create(ObjectKind::Deals, key.clone()).unwrap_err();
        assert_eq!((dup.category, dup.codes.as_slice()), ("VALIDATION_ERROR", &["DUPLICATE_VALUE"][..]));
        assert!(s.archive(ObjectKind::Deals, id));
        let second = s.create(ObjectKind::Deals, key.clone()).unwrap();
        assert!(!s.restore(ObjectKind::Deals, second) && s.restore(ObjectKind::Deals, id));
        assert_eq!(s.find_unique(ObjectKind::Deals, "syncbridge_key", "k-1"), Some(second));
        let bad = BTreeMap::from([("amount".to_owned(), "lots".to_owned())]);
        assert_eq!(s.create(ObjectKind::Deals, bad).unwrap_err().codes, ["INVALID_FLOAT"]);
    }
}
