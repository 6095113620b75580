//! The fake org's records: Contact, Account, Opportunity, Task, Event and Note, seeded
//! deterministically, with `SystemModstamp` at second precision (as Salesforce stores it, so many
//! records share one stamp), a delete log, the org's clock, and the custom fields a client created
//! (a stock org has none: `Syncbridge_Key__c` exists only once someone creates it). Field-level
//! security applies to custom fields as in an org: a field created through the Tooling API is
//! invisible to the API user until a `FieldPermissions` record on one of the user's permission sets
//! grants it.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::soql::{Expr, Lit, Query, SoqlError, compare};

/// 2024-01-01T00:00:00Z in epoch milliseconds: seeded records are created from here on.
pub const SEED_BASE_MS: i64 = 1_704_067_200_000;
const THIRTY_DAYS_MS: i64 = 30 * 86_400_000;
/// Deleted records stay in the delete log and the Recycle Bin this long.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_getdeleted.htm>
pub const DELETE_LOG_MS: i64 = 15 * 86_400_000;
/// Seeded records share their `SystemModstamp` in groups of this size.
pub const SEED_STAMP_GROUP: u64 = 10;
/// The version the Rust-side helpers render URLs with.
pub const API_VERSION: &str = "v60.0";
/// The versions the org serves (`GET /services/data/`): 31.0 (Summer '14, the oldest not retired)
/// to the current release, 68.0 (Winter '27).
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_versions.htm>
pub const OLDEST_API_VERSION: u32 = 31;
pub const LATEST_API_VERSION: u32 = 68;
/// The external-id field our adapter creates for idempotent writes (absent from a stock org).
pub const KEY_FIELD: &str = "Syncbridge_Key__c";
/// The profile of the fake's one user and the permission set that profile owns.
pub const PROFILE_ID: &str = "00eFAKE00000001AAA";

/// The objects the fake serves, with their key prefix, fields and required fields on create.
pub struct SObjectDef {
    pub name: &'static str,
    pub prefix: &'static str,
    pub label_plural: &'static str,
    /// Standard fields besides the system ones (`Id`, `IsDeleted`, `CreatedDate`, ...).
    pub fields: &'static [&'static str],
    pub required: &'static [&'static str],
    /// Standard fields the API computes and never writes (`Contact.Name`).
    pub read_only: &'static [&'static str],
    /// Whether the org can add custom (`__c`) fields to it; the standard Note cannot.
    pub custom_fields: bool,
    /// Whether getUpdated/getDeleted serve it (setup objects are not replicated).
    pub replicateable: bool,
}

/// The longest string a Name/Title/Subject field stores.
const SHORT_TEXT_MAX: usize = 255;
const SHORT_TEXT_FIELDS: &[&str] = &["Title", "Subject", "Name"];

const SYSTEM_FIELDS: &[&str] = &[
    "Id",
    "IsDeleted",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
];
const DATETIME_FIELDS: &[&str] =
    &["CreatedDate", "LastModifiedDate", "SystemModstamp", "StartDateTime", "EndDateTime"];

pub const SOBJECTS: &[SObjectDef] = &[
    SObjectDef {
        name: "Contact",
        prefix: "003",
        label_plural: "Contacts",
        fields: &[
            "Name",
            "FirstName",
            "LastName",
            "Salutation",
            "Email",
            "Phone",
            "MobilePhone",
            "Title",
            "Department",
            "AccountId",
            "OwnerId",
            "MailingStreet",
            "MailingCity",
            "MailingState",
            "MailingPostalCode",
            "MailingCountry",
            "LeadSource",
            "Birthdate",
            "Description",
        ],
        required: &["LastName"],
        read_only: &["Name"],
        custom_fields: true,
        replicateable: true,
    },
    SObjectDef {
        name: "Account",
        prefix: "001",
        label_plural: "Accounts",
        fields: &[
            "Name",
            "Website",
            "Industry",
            "Type",
            "Phone",
            "BillingStreet",
            "BillingCity",
            "BillingState",
            "BillingPostalCode",
            "BillingCountry",
            "NumberOfEmployees",
            "AnnualRevenue",
            "Description",
            "OwnerId",
        ],
        required: &["Name"],
        read_only: &[],
        custom_fields: true,
        replicateable: true,
    },
    SObjectDef {
        name: "Opportunity",
        prefix: "006",
        label_plural: "Opportunities",
        fields: &[
            "Name",
            "Amount",
            "StageName",
            "CloseDate",
            "AccountId",
            "Probability",
            "Type",
            "NextStep",
            "LeadSource",
            "Description",
            "OwnerId",
        ],
        required: &["Name", "StageName", "CloseDate"],
        read_only: &[],
        custom_fields: true,
        replicateable: true,
    },
    SObjectDef {
        name: "Task",
        prefix: "00T",
        label_plural: "Tasks",
        fields: &[
            "Subject",
            "Status",
            "ActivityDate",
            "Description",
            "WhoId",
            "WhatId",
            "Priority",
            "OwnerId",
        ],
        required: &[],
        read_only: &[],
        custom_fields: true,
        replicateable: true,
    },
    SObjectDef {
        name: "Event",
        prefix: "00U",
        label_plural: "Events",
        fields: &[
            "Subject",
            "StartDateTime",
            "EndDateTime",
            "Description",
            "WhoId",
            "WhatId",
            "Location",
            "OwnerId",
        ],
        required: &["StartDateTime", "EndDateTime"],
        read_only: &[],
        custom_fields: true,
        replicateable: true,
    },
    SObjectDef {
        name: "Note",
        prefix: "002",
        label_plural: "Notes",
        fields: &["Title", "Body", "ParentId", "IsPrivate", "OwnerId"],
        required: &["Title", "ParentId"],
        read_only: &[],
        custom_fields: false,
        replicateable: true,
    },
    SObjectDef {
        name: "PermissionSet",
        prefix: "0PS",
        label_plural: "Permission Sets",
        fields: &["Name", "Label", "Description", "IsOwnedByProfile", "ProfileId"],
        required: &["Name", "Label"],
        read_only: &["IsOwnedByProfile", "ProfileId"],
        custom_fields: false,
        replicateable: false,
    },
    SObjectDef {
        name: "PermissionSetAssignment",
        prefix: "0Pa",
        label_plural: "Permission Set Assignments",
        fields: &["AssigneeId", "PermissionSetId"],
        required: &["AssigneeId", "PermissionSetId"],
        read_only: &[],
        custom_fields: false,
        replicateable: false,
    },
    SObjectDef {
        name: "FieldPermissions",
        prefix: "01k",
        label_plural: "Field Permissions",
        fields: &["ParentId", "SobjectType", "Field", "PermissionsRead", "PermissionsEdit"],
        required: &["ParentId", "SobjectType", "Field"],
        read_only: &[],
        custom_fields: false,
        replicateable: false,
    },
];

/// The definition of an object, by name (case-insensitive).
pub fn sobject(name: &str) -> Option<&'static SObjectDef> {
    SOBJECTS.iter().find(|d| d.name.eq_ignore_ascii_case(name))
}

impl SObjectDef {
    /// The standard field's proper spelling, if the object has it.
    pub fn standard_field(&self, name: &str) -> Option<&'static str> {
        SYSTEM_FIELDS.iter().chain(self.fields.iter()).find(|f| f.eq_ignore_ascii_case(name)).copied()
    }

    /// Every standard field, system fields first, in describe order.
    pub fn standard_fields(&self) -> impl Iterator<Item = &'static str> + '_ {
        SYSTEM_FIELDS.iter().chain(self.fields.iter()).copied()
    }

    /// Whether the API may write the standard field.
    pub fn writable(&self, field: &str) -> bool {
        !SYSTEM_FIELDS.contains(&field) && !self.read_only.contains(&field)
    }
}

/// A standard field's describe type and length.
pub fn standard_type(sobject: &str, field: &str) -> (&'static str, u32) {
    match field {
        "Id" => ("id", 18),
        "Name" if sobject == "Contact" => ("string", 121),
        f if f.ends_with("Id") => ("reference", 18),
        "CreatedDate" | "LastModifiedDate" | "SystemModstamp" | "StartDateTime" | "EndDateTime" => {
            ("datetime", 0)
        }
        "CloseDate" | "ActivityDate" | "Birthdate" => ("date", 0),
        "Amount" | "AnnualRevenue" => ("currency", 0),
        "Probability" => ("percent", 0),
        "NumberOfEmployees" => ("int", 0),
        f if f.starts_with("Is") || f.starts_with("Permissions") => ("boolean", 0),
        "Email" => ("email", 80),
        "Phone" | "MobilePhone" => ("phone", 40),
        "Website" => ("url", 255),
        "Description" | "Body" | "MailingStreet" | "BillingStreet" => ("textarea", 32_000),
        "StageName" | "Industry" | "Status" | "Priority" | "Salutation" | "Type" | "LeadSource" => {
            ("picklist", 255)
        }
        "FirstName" => ("string", 40),
        "LastName" => ("string", 80),
        "Title" if sobject == "Contact" => ("string", 128),
        _ => ("string", 255),
    }
}

/// `LastName` -> `Last Name`, `AccountId` -> `Account ID`.
pub fn field_label(field: &str) -> String {
    let base = field.strip_suffix("__c").unwrap_or(field);
    let mut out = String::new();
    for (i, c) in base.chars().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            out.push(' ');
        }
        out.push(if c == '_' { ' ' } else { c });
    }
    match out.strip_suffix(" Id") {
        Some(stem) if field != "Id" => format!("{stem} ID"),
        _ => out,
    }
}

/// A custom field created in the org (Tooling API `CustomField`, or Setup).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomField {
    /// `00N...`, the Tooling API record id.
    pub id: String,
    pub sobject: &'static str,
    /// API name with the `__c` suffix.
    pub name: String,
    pub label: String,
    /// Metadata type: `Text`, `Number`, `Checkbox`, `Email`, `Date`, `DateTime`, ...
    pub field_type: String,
    pub length: Option<u32>,
    pub external_id: bool,
    pub unique: bool,
    pub case_sensitive: bool,
    pub required: bool,
}

impl CustomField {
    /// The describe type (`Text` is `string`).
    pub fn describe_type(&self) -> &'static str {
        match self.field_type.as_str() {
            "Number" => "double",
            "Checkbox" => "boolean",
            "Email" => "email",
            "Date" => "date",
            "DateTime" => "datetime",
            "Phone" => "phone",
            "Url" => "url",
            "Currency" => "currency",
            "LongTextArea" | "TextArea" => "textarea",
            _ => "string",
        }
    }
}

/// Formats epoch milliseconds as the REST API does (`2024-01-01T00:00:00.000+0000`).
pub fn sf_datetime(ms: i64) -> String {
    let d = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    d.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// Formats epoch milliseconds as Bulk API CSV results do (`2024-01-01T00:00:00.000Z`).
pub fn csv_datetime(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Epoch milliseconds truncated to the minute.
pub fn floor_minute(ms: i64) -> i64 {
    ms - ms.rem_euclid(60_000)
}

/// One record.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub sobject: &'static str,
    pub fields: BTreeMap<String, Value>,
    pub created_ms: i64,
    pub modstamp_ms: i64,
    pub deleted_ms: Option<i64>,
}

impl Record {
    /// A field as a SOQL literal.
    pub fn lit(&self, field: &str) -> Lit {
        match field {
            "CreatedDate" => Lit::DateTime(self.created_ms),
            "LastModifiedDate" | "SystemModstamp" => Lit::DateTime(self.modstamp_ms),
            f => match self.json(f) {
                Value::Null => Lit::Null,
                Value::String(s) if DATETIME_FIELDS.contains(&f) => {
                    super::soql::parse_datetime(&s).map(Lit::DateTime).unwrap_or(Lit::Null)
                }
                Value::String(s) => Lit::Str(s),
                Value::Number(n) => Lit::Num(n.as_f64().unwrap_or_default()),
                Value::Bool(b) => Lit::Bool(b),
                other => Lit::Str(other.to_string()),
            },
        }
    }

    /// A field as JSON, as the REST API renders it (computed fields included).
    pub fn json(&self, field: &str) -> Value {
        match field {
            "Id" => Value::String(self.id.clone()),
            "IsDeleted" => Value::Bool(self.deleted_ms.is_some()),
            "CreatedDate" => Value::String(sf_datetime(self.created_ms)),
            "LastModifiedDate" | "SystemModstamp" => Value::String(sf_datetime(self.modstamp_ms)),
            "CreatedById" | "LastModifiedById" => Value::String(super::USER_ID.to_owned()),
            "OwnerId" => self.fields.get("OwnerId").cloned().unwrap_or_else(|| json!(super::USER_ID)),
            "Name" if self.sobject == "Contact" => {
                let part = |k: &str| self.fields.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
                let name: Vec<&str> =
                    [part("Salutation"), part("FirstName"), part("LastName")].into_iter().flatten().collect();
                Value::String(name.join(" "))
            }
            f => self.fields.get(f).cloned().unwrap_or(Value::Null),
        }
    }

    /// A field as a CSV cell (Bulk API 2.0: empty for null, datetimes in UTC with `Z`).
    pub fn csv(&self, field: &str) -> String {
        match self.lit(field) {
            Lit::Null => String::new(),
            Lit::DateTime(ms) => csv_datetime(ms),
            Lit::Str(s) => s,
            Lit::Bool(b) => b.to_string(),
            Lit::Num(_) => match self.json(field) {
                Value::Number(n) => n.to_string(),
                other => other.to_string(),
            },
        }
    }

    /// The record's REST URL path in an API version (`v60.0`).
    pub fn url(&self, version: &str) -> String {
        format!("/services/data/{version}/sobjects/{}/{}", self.sobject, self.id)
    }

    /// The REST JSON of the record with `fields` (proper spellings), `attributes` first.
    pub fn render(&self, fields: &[String]) -> Value {
        self.render_in(fields, API_VERSION)
    }

    /// As [`Record::render`], with URLs in the API version the client asked for.
    pub fn render_in(&self, fields: &[String], version: &str) -> Value {
        let mut obj = Map::new();
        obj.insert("attributes".into(), json!({ "type": self.sobject, "url": self.url(version) }));
        for f in fields {
            obj.insert(f.clone(), self.json(f));
        }
        Value::Object(obj)
    }
}

/// Why one record of a write was refused (a Salesforce `errors[]` element).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub status_code: &'static str,
    pub message: String,
    pub fields: Vec<String>,
}

impl RecordError {
    pub fn json(&self) -> Value {
        json!({ "statusCode": self.status_code, "message": self.message, "fields": self.fields })
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<'a>(seed: u64, n: u64, salt: u64, list: &[&'a str]) -> &'a str {
    let h = mix(seed ^ mix(n.wrapping_mul(31).wrapping_add(salt)));
    list[(h % list.len() as u64) as usize]
}

const FIRST: &[&str] =
    &["Ada", "Brian", "Chloe", "Diego", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kira", "Liam"];
const LAST: &[&str] =
    &["Andersen", "Baker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hansen", "Ito", "Jensen"];
const COMPANIES: &[&str] =
    &["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell", "Soylent", "Aperture"];
const INDUSTRIES: &[&str] = &["Technology", "Manufacturing", "Finance", "Retail", "Healthcare", "Energy"];
const CITIES: &[(&str, &str)] = &[
    ("Berlin", "Germany"),
    ("Paris", "France"),
    ("Austin", "United States"),
    ("Osaka", "Japan"),
    ("Lagos", "Nigeria"),
    ("Lima", "Peru"),
];
const TITLES: &[&str] = &["CEO", "CTO", "VP Sales", "Engineer", "Buyer", "Analyst"];
/// Salesforce's default opportunity stages.
pub const STAGES: &[&str] = &[
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
];

/// How many records of each object to seed.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeedCounts {
    pub accounts: usize,
    pub contacts: usize,
    pub opportunities: usize,
    pub tasks: usize,
    pub events: usize,
    pub notes: usize,
}

/// Every object's records, by id (ids sort in creation order within an object), the org's custom
/// fields and its clock.
#[derive(Debug, Default)]
pub struct Store {
    records: HashMap<&'static str, BTreeMap<String, Record>>,
    next_num: HashMap<&'static str, u64>,
    /// `(object, unique field, normalized value)` -> the id that last took the value.
    uniques: HashMap<(&'static str, String, String), String>,
    last_stamp: i64,
    pub custom_fields: Vec<CustomField>,
    /// The org's clock: real time plus this offset (tests move it).
    clock_offset_ms: i64,
    /// When the delete log was last emptied (`purge_deleted`), if ever.
    purged_through_ms: Option<i64>,
}

/// The id of the `n`th record of an object: prefix, zero padding, a fixed 3-character suffix.
pub fn make_id(prefix: &str, n: u64) -> String {
    format!("{prefix}{n:012}AAA")
}

fn no_such_column(k: &str, sobject: &str) -> RecordError {
    RecordError {
        status_code: "INVALID_FIELD",
        message: format!("No such column '{k}' on sobject of type {sobject}"),
        fields: vec![],
    }
}

impl Store {
    /// Seeds records with ids `{prefix}000000000001AAA`.. created 1 s apart from
    /// [`SEED_BASE_MS`], last modified 30 days later in groups of [`SEED_STAMP_GROUP`] sharing
    /// one `SystemModstamp`; plus the user's profile permission set and its assignment.
    pub fn seeded(counts: SeedCounts, seed: u64) -> Self {
        let mut s = Store { last_stamp: SEED_BASE_MS, ..Store::default() };
        let account = |n: u64| make_id("001", (n % counts.accounts.max(1) as u64) + 1);
        let plan: [(&'static str, usize); 6] = [
            ("Account", counts.accounts),
            ("Contact", counts.contacts),
            ("Opportunity", counts.opportunities),
            ("Task", counts.tasks),
            ("Event", counts.events),
            ("Note", counts.notes),
        ];
        for (name, count) in plan {
            for n in 1..=count as u64 {
                let mut f = BTreeMap::new();
                let mut put = |k: &str, v: Value| {
                    f.insert(k.to_owned(), v);
                };
                let has_accounts = counts.accounts > 0;
                match name {
                    "Account" => {
                        let company = pick(seed, n, 1, COMPANIES);
                        let (city, country) = CITIES[(mix(seed ^ n ^ 7) % CITIES.len() as u64) as usize];
                        put("Name", json!(format!("{company} {n}")));
                        put(
                            "Website",
                            json!(format!("https://www.{}{n}.example.com", company.to_lowercase())),
                        );
                        put("Industry", json!(pick(seed, n, 2, INDUSTRIES)));
                        put("Phone", json!(format!("+1-555-{:04}", mix(seed ^ n) % 10_000)));
                        put("BillingCity", json!(city));
                        put("BillingCountry", json!(country));
                    }
                    "Contact" => {
                        let (first, last) = (pick(seed, n, 3, FIRST), pick(seed, n, 4, LAST));
                        put("FirstName", json!(first));
                        put("LastName", json!(last));
                        put("Email", json!(format!("{first}.{last}.{n}@example.com").to_lowercase()));
                        put("Phone", json!(format!("+1-555-{:04}", mix(seed ^ n ^ 3) % 10_000)));
                        put("Title", json!(pick(seed, n, 5, TITLES)));
                        put("AccountId", if has_accounts { json!(account(n)) } else { Value::Null });
                    }
                    "Opportunity" => {
                        put("Name", json!(format!("Deal {n}")));
                        put("Amount", json!((mix(seed ^ n ^ 11) % 100_000) as f64 + 0.5));
                        put("StageName", json!(pick(seed, n, 6, STAGES)));
                        put("CloseDate", json!(format!("2024-{:02}-{:02}", 1 + n % 12, 1 + n % 28)));
                        put("AccountId", if has_accounts { json!(account(n)) } else { Value::Null });
                    }
                    "Task" => {
                        put("Subject", json!(format!("Call {n}")));
                        put("Status", json!(if n % 2 == 0 { "Completed" } else { "Not Started" }));
                        put("ActivityDate", json!(format!("2024-03-{:02}", 1 + n % 28)));
                        put("Description", json!(format!("Follow up #{n}")));
                        put(
                            "WhoId",
                            if counts.contacts > 0 {
                                json!(make_id("003", 1 + n % counts.contacts as u64))
                            } else {
                                Value::Null
                            },
                        );
                        put("WhatId", if has_accounts { json!(account(n)) } else { Value::Null });
                        put("Priority", json!("Normal"));
                    }
                    "Event" => {
                        let start = SEED_BASE_MS + (n as i64) * 3_600_000;
                        put("Subject", json!(format!("Meeting {n}")));
                        put("StartDateTime", json!(sf_datetime(start)));
                        put("EndDateTime", json!(sf_datetime(start + 1_800_000)));
                        put("Description", Value::Null);
                        put(
                            "WhoId",
                            if counts.contacts > 0 {
                                json!(make_id("003", 1 + n % counts.contacts as u64))
                            } else {
                                Value::Null
                            },
                        );
                        put("WhatId", if has_accounts { json!(account(n)) } else { Value::Null });
                        put("Location", json!("Zoom"));
                    }
                    _ => {
                        put("Title", json!(format!("Note {n}")));
                        put("Body", json!(format!("Discussed pricing, round {n}.")));
                        put(
                            "ParentId",
                            if has_accounts { json!(account(n)) } else { json!(make_id("003", 1)) },
                        );
                        put("IsPrivate", json!(false));
                    }
                }
                let created_ms = SEED_BASE_MS + (n as i64) * 1_000;
                let modstamp_ms = SEED_BASE_MS + THIRTY_DAYS_MS + ((n / SEED_STAMP_GROUP) as i64) * 1_000;
                s.insert_raw(name, n, f, created_ms, modstamp_ms);
            }
        }
        let mut ps = BTreeMap::new();
        ps.insert("Name".to_owned(), json!("X00eFAKE00000001AAA"));
        ps.insert("Label".to_owned(), json!(PROFILE_ID));
        ps.insert("IsOwnedByProfile".to_owned(), json!(true));
        ps.insert("ProfileId".to_owned(), json!(PROFILE_ID));
        let ps_id = s.insert_raw("PermissionSet", 1, ps, SEED_BASE_MS, SEED_BASE_MS);
        let mut psa = BTreeMap::new();
        psa.insert("AssigneeId".to_owned(), json!(super::USER_ID));
        psa.insert("PermissionSetId".to_owned(), json!(ps_id));
        s.insert_raw("PermissionSetAssignment", 1, psa, SEED_BASE_MS, SEED_BASE_MS);
        s
    }

    fn insert_raw(
        &mut self,
        sobject: &'static str,
        n: u64,
        fields: BTreeMap<String, Value>,
        created: i64,
        stamp: i64,
    ) -> String {
        let prefix = sobject_prefix(sobject);
        let id = make_id(prefix, n);
        self.remember_uniques(sobject, &id, &fields);
        let rec = Record {
            id: id.clone(),
            sobject,
            fields,
            created_ms: created,
            modstamp_ms: stamp,
            deleted_ms: None,
        };
        self.records.entry(sobject).or_default().insert(id.clone(), rec);
        let next = self.next_num.entry(sobject).or_insert(1);
        *next = (*next).max(n + 1);
        self.last_stamp = self.last_stamp.max(stamp);
        id
    }

    /// The org's clock in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        Utc::now().timestamp_millis() + self.clock_offset_ms
    }

    /// Puts the org's clock at `ms` (it runs on from there). Writes after it are stamped from
    /// there, even when that is earlier than earlier stamps.
    pub fn set_now(&mut self, ms: i64) {
        self.clock_offset_ms = ms - Utc::now().timestamp_millis();
        self.last_stamp = self.last_stamp.min(ms - ms.rem_euclid(1_000));
    }

    /// Back to real time.
    pub fn reset_clock(&mut self) {
        let now = Utc::now().timestamp_millis();
        self.set_now(now);
        self.clock_offset_ms = 0;
    }

    /// Now at second precision, never before a stamp already handed out (several writes in one
    /// second share it, as in Salesforce).
    pub fn next_stamp(&mut self) -> i64 {
        let now = self.now_ms();
        let stamp = (now - now.rem_euclid(1_000)).max(self.last_stamp);
        self.last_stamp = stamp;
        stamp
    }

    pub fn get(&self, id: &str) -> Option<&Record> {
        let sobject = sobject_of_id(id)?;
        self.records.get(sobject)?.get(id)
    }

    /// A live (not deleted) record.
    pub fn live(&self, id: &str) -> Option<&Record> {
        self.get(id).filter(|r| r.deleted_ms.is_none())
    }

    /// Live records of one object, in id order.
    pub fn live_of(&self, sobject: &str) -> impl Iterator<Item = &Record> {
        self.records.get(sobject).into_iter().flat_map(|m| m.values()).filter(|r| r.deleted_ms.is_none())
    }

    /// Live records plus those in the Recycle Bin (deleted within the last 15 days).
    fn all_of(&self, sobject: &str) -> impl Iterator<Item = &Record> {
        let oldest = self.earliest_deleted_available();
        self.records
            .get(sobject)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(move |r| r.deleted_ms.is_none_or(|d| d >= oldest))
    }

    pub fn count(&self, sobject: &str) -> usize {
        self.live_of(sobject).count()
    }

    /// A custom field of an object, whether or not the user may see it.
    pub fn custom_field(&self, sobject: &str, name: &str) -> Option<&CustomField> {
        self.custom_fields
            .iter()
            .find(|f| f.sobject.eq_ignore_ascii_case(sobject) && f.name.eq_ignore_ascii_case(name))
    }

    /// Field-level security of a custom field for the fake's user: `(read, edit)`, from the
    /// `FieldPermissions` of the permission sets assigned to the user.
    pub fn field_access(&self, sobject: &str, field: &str) -> (bool, bool) {
        let assigned: HashSet<&str> = self
            .live_of("PermissionSetAssignment")
            .filter(|a| a.fields.get("AssigneeId").and_then(Value::as_str) == Some(super::USER_ID))
            .filter_map(|a| a.fields.get("PermissionSetId").and_then(Value::as_str))
            .collect();
        let full = format!("{sobject}.{field}");
        let mut access = (false, false);
        for fp in self.live_of("FieldPermissions") {
            let on_field =
                fp.fields.get("Field").and_then(Value::as_str).is_some_and(|f| f.eq_ignore_ascii_case(&full));
            let parent = fp.fields.get("ParentId").and_then(Value::as_str).unwrap_or("");
            if on_field && assigned.contains(parent) {
                let flag = |k: &str| fp.fields.get(k).and_then(Value::as_bool).unwrap_or(false);
                access.0 |= flag("PermissionsRead");
                access.1 |= flag("PermissionsEdit");
            }
        }
        access
    }

    /// The custom fields of an object the user can see.
    pub fn visible_custom_fields(&self, sobject: &str) -> Vec<&CustomField> {
        self.custom_fields
            .iter()
            .filter(|f| f.sobject == sobject && self.field_access(sobject, &f.name).0)
            .collect()
    }

    /// A field's proper spelling if the user can read it on this object (standard fields, and
    /// custom fields that exist and that field-level security lets the user see).
    pub fn resolve_field(&self, def: &SObjectDef, name: &str) -> Option<String> {
        if let Some(f) = def.standard_field(name) {
            return Some(f.to_owned());
        }
        let cf = self.custom_field(def.name, name)?;
        self.field_access(def.name, &cf.name).0.then(|| cf.name.clone())
    }

    /// Every field the user can read on an object, in describe order.
    pub fn readable_fields(&self, def: &SObjectDef) -> Vec<String> {
        let mut out: Vec<String> = def.standard_fields().map(str::to_owned).collect();
        out.extend(self.visible_custom_fields(def.name).into_iter().map(|f| f.name.clone()));
        out
    }

    /// Runs a query: the matching records in order (`LIMIT` applied), or the count. `all`
    /// includes deleted records still in the Recycle Bin (`queryAll`).
    pub fn run(&self, q: &Query, all: bool) -> Result<(Vec<&Record>, Vec<String>), SoqlError> {
        let def = sobject(&q.from)
            .ok_or_else(|| SoqlError(format!("sObject type '{}' is not supported.", q.from)))?;
        let resolve = |f: &str| {
            self.resolve_field(def, f).ok_or_else(|| {
                SoqlError(format!(
                    "No such column '{f}' on entity '{}'. If you are attempting to use a custom field, be sure to \
                     append the '__c' after the custom field name. Please reference your WSDL or the describe call \
                     for the appropriate names.",
                    def.name
                ))
            })
        };
        let fields = match &q.fields {
            Some(fs) => fs.iter().map(|f| resolve(f)).collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let mut filter_fields = Vec::new();
        if let Some(f) = &q.filter {
            f.fields(&mut filter_fields);
        }
        let mut names: HashMap<String, String> = HashMap::new();
        for f in filter_fields.iter().chain(q.order.iter().map(|(f, _)| f)) {
            names.insert(f.clone(), resolve(f)?);
        }
        let get_name = |f: &str| names.get(f).cloned().unwrap_or_else(|| f.to_owned());
        let filter = match &q.filter {
            Some(e) => Some(
                e.map_semi_joins(&mut |f, sub, negated| self.semi_join(def, &get_name(f), sub, negated))?,
            ),
            None => None,
        };
        let rows: Box<dyn Iterator<Item = &Record>> =
            if all { Box::new(self.all_of(def.name)) } else { Box::new(self.live_of(def.name)) };
        let mut out: Vec<&Record> =
            rows.filter(|r| filter.as_ref().is_none_or(|e| e.eval(&|f: &str| r.lit(&get_name(f))))).collect();
        if !q.order.is_empty() {
            out.sort_by(|a, b| {
                for (f, asc) in &q.order {
                    let f = get_name(f);
                    let ord = compare(&a.lit(&f), &b.lit(&f));
                    let ord = if *asc { ord } else { ord.reverse() };
                    if ord.is_ne() {
                        return ord;
                    }
                }
                std::cmp::Ordering::Equal
            });
        }
        if let Some(limit) = q.limit {
            out.truncate(limit);
        }
        Ok((out, fields))
    }

    /// `field [NOT] IN (SELECT one_field FROM ...)` as an `IN` list of the sub-select's values.
    /// Both sides must be ids or references, as in Salesforce.
    fn semi_join(
        &self,
        def: &SObjectDef,
        field: &str,
        sub: &Query,
        negated: bool,
    ) -> Result<Expr, SoqlError> {
        let is_id = |object: &str, f: &str| matches!(standard_type(object, f).0, "id" | "reference");
        if !is_id(def.name, field) {
            return Err(SoqlError(format!(
                "semi join sub selects are only allowed on id or reference fields, cannot use: '{field}'"
            )));
        }
        let (rows, fields) = self.run(sub, false)?;
        let (Some(picked), Some(sub_def)) = (fields.first(), sobject(&sub.from)) else {
            return Err(SoqlError("a semi join sub-select must select exactly one field".into()));
        };
        if !is_id(sub_def.name, picked) {
            return Err(SoqlError(format!(
                "semi join sub selects can only query id fields, cannot use: '{picked}'"
            )));
        }
        let values = rows.iter().map(|r| r.lit(picked)).filter(|v| *v != Lit::Null).collect();
        Ok(Expr::In(field.to_owned(), values, negated))
    }

    fn check_fields(
        &self,
        def: &SObjectDef,
        fields: &Map<String, Value>,
    ) -> Result<BTreeMap<String, Value>, RecordError> {
        let mut out = BTreeMap::new();
        for (k, v) in fields {
            if k == "attributes" || k.eq_ignore_ascii_case("id") {
                continue;
            }
            let Some(name) = self.resolve_field(def, k) else {
                return Err(no_such_column(k, def.name));
            };
            let custom = self.custom_field(def.name, &name);
            let writable = match custom {
                Some(cf) => self.field_access(def.name, &cf.name).1,
                None => def.writable(&name),
            };
            if !writable {
                return Err(RecordError {
                    status_code: "INVALID_FIELD_FOR_INSERT_UPDATE",
                    message: format!(
                        "Unable to create/update fields: {name}. Please check the security settings of this field and verify that it is read/write for your profile or permission set."
                    ),
                    fields: vec![name],
                });
            }
            let max = match custom {
                Some(cf) if cf.describe_type() == "string" => cf.length.map(|n| n as usize),
                Some(_) => None,
                None => SHORT_TEXT_FIELDS.contains(&name.as_str()).then_some(SHORT_TEXT_MAX),
            };
            if let Some(max) = max
                && v.as_str().is_some_and(|t| t.chars().count() > max)
            {
                return Err(RecordError {
                    status_code: "STRING_TOO_LONG",
                    message: format!("{name}: data value too large (max length={max})"),
                    fields: vec![name],
                });
            }
            out.insert(name, v.clone());
        }
        Ok(out)
    }

    /// Unique custom fields of an object: `(name, case_sensitive)`.
    fn unique_fields(&self, sobject: &str) -> Vec<(String, bool)> {
        self.custom_fields
            .iter()
            .filter(|f| f.sobject == sobject && f.unique)
            .map(|f| (f.name.clone(), f.case_sensitive))
            .collect()
    }

    fn normalize(value: &str, case_sensitive: bool) -> String {
        if case_sensitive { value.to_owned() } else { value.to_lowercase() }
    }

    fn remember_uniques(&mut self, sobject: &'static str, id: &str, fields: &BTreeMap<String, Value>) {
        for (name, cs) in self.unique_fields(sobject) {
            if let Some(Value::String(v)) = fields.get(&name)
                && !v.is_empty()
            {
                self.uniques.insert((sobject, name, Self::normalize(v, cs)), id.to_owned());
            }
        }
    }

    /// `DUPLICATE_VALUE` if a unique field's value is held by another live record.
    fn duplicate(
        &self,
        sobject: &'static str,
        fields: &BTreeMap<String, Value>,
        except: Option<&str>,
    ) -> Option<RecordError> {
        for (name, cs) in self.unique_fields(sobject) {
            let Some(Value::String(v)) = fields.get(&name) else { continue };
            let norm = Self::normalize(v, cs);
            let Some(holder) = self.uniques.get(&(sobject, name.clone(), norm.clone())) else { continue };
            let holds = self
                .live(holder)
                .and_then(|r| r.fields.get(&name))
                .and_then(Value::as_str)
                .is_some_and(|cur| Self::normalize(cur, cs) == norm);
            if holds && Some(holder.as_str()) != except {
                return Some(RecordError {
                    status_code: "DUPLICATE_VALUE",
                    message: format!(
                        "duplicate value found: {name} duplicates value on record with id: {holder}"
                    ),
                    fields: vec![name],
                });
            }
        }
        None
    }

    /// Setup objects' own rules (the referenced field and permission set must exist).
    fn check_setup(&self, sobject: &str, f: &BTreeMap<String, Value>) -> Result<(), RecordError> {
        if sobject != "FieldPermissions" {
            return Ok(());
        }
        let field = f.get("Field").and_then(Value::as_str).unwrap_or("");
        let exists = field.split_once('.').is_some_and(|(o, n)| {
            sobject_of_name(o)
                .is_some_and(|d| d.standard_field(n).is_some() || self.custom_field(d.name, n).is_some())
        });
        if !exists {
            return Err(RecordError {
                status_code: "FIELD_INTEGRITY_EXCEPTION",
                message: format!("Field Name: bad value for restricted picklist field: {field}"),
                fields: vec!["Field".into()],
            });
        }
        let parent = f.get("ParentId").and_then(Value::as_str).unwrap_or("");
        if sobject_of_id(parent) != Some("PermissionSet") || self.live(parent).is_none() {
            return Err(RecordError {
                status_code: "INVALID_CROSS_REFERENCE_KEY",
                message: format!("invalid cross reference id: {parent}"),
                fields: vec!["ParentId".into()],
            });
        }
        Ok(())
    }

    /// Checks a create without applying it.
    pub fn validate_create(&self, sobject: &str, fields: &Map<String, Value>) -> Result<(), RecordError> {
        let def = sobject_def_or_err(sobject)?;
        let checked = self.check_fields(def, fields)?;
        let mut missing: Vec<String> = def
            .required
            .iter()
            .filter(|f| checked.get(**f).is_none_or(|v| v.is_null() || v.as_str() == Some("")))
            .map(|f| (*f).to_owned())
            .collect();
        missing.extend(
            self.custom_fields
                .iter()
                .filter(|c| c.sobject == def.name && c.required)
                .filter(|c| checked.get(&c.name).is_none_or(|v| v.is_null() || v.as_str() == Some("")))
                .map(|c| c.name.clone()),
        );
        if !missing.is_empty() {
            return Err(RecordError {
                status_code: "REQUIRED_FIELD_MISSING",
                message: format!("Required fields are missing: [{}]", missing.join(", ")),
                fields: missing,
            });
        }
        self.check_setup(def.name, &checked)?;
        match self.duplicate(def.name, &checked, None) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Creates a record; returns its id.
    pub fn create(&mut self, sobject: &str, fields: &Map<String, Value>) -> Result<String, RecordError> {
        self.validate_create(sobject, fields)?;
        let def = sobject_def_or_err(sobject)?;
        let checked = self.check_fields(def, fields)?;
        let stamp = self.next_stamp();
        let n = *self.next_num.get(def.name).unwrap_or(&1);
        Ok(self.insert_raw(def.name, n, checked, stamp, stamp))
    }

    /// Checks an update without applying it.
    pub fn validate_update(&self, id: &str, fields: &Map<String, Value>) -> Result<(), RecordError> {
        let rec = match self.get(id) {
            Some(r) if r.deleted_ms.is_some() => {
                return Err(RecordError {
                    status_code: "ENTITY_IS_DELETED",
                    message: "entity is deleted".into(),
                    fields: vec![],
                });
            }
            Some(r) => r,
            None => {
                return Err(RecordError {
                    status_code: "INVALID_CROSS_REFERENCE_KEY",
                    message: "invalid cross reference id".into(),
                    fields: vec![],
                });
            }
        };
        let def = sobject_def_or_err(rec.sobject)?;
        let checked = self.check_fields(def, fields)?;
        for f in def.required {
            if checked.get(*f).is_some_and(|v| v.is_null() || v.as_str() == Some("")) {
                return Err(RecordError {
                    status_code: "REQUIRED_FIELD_MISSING",
                    message: format!("Required fields are missing: [{f}]"),
                    fields: vec![(*f).to_owned()],
                });
            }
        }
        match self.duplicate(def.name, &checked, Some(id)) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Updates a record at `stamp` (or now).
    pub fn update(
        &mut self,
        id: &str,
        fields: &Map<String, Value>,
        stamp: Option<i64>,
    ) -> Result<(), RecordError> {
        self.validate_update(id, fields)?;
        let sobject = sobject_of_id(id).unwrap_or("Contact");
        let def = sobject_def_or_err(sobject)?;
        let checked = self.check_fields(def, fields)?;
        let stamp = match stamp {
            Some(s) => {
                self.last_stamp = self.last_stamp.max(s);
                s
            }
            None => self.next_stamp(),
        };
        self.remember_uniques(def.name, id, &checked);
        let Some(rec) = self.records.get_mut(def.name).and_then(|m| m.get_mut(id)) else {
            return Err(RecordError {
                status_code: "INVALID_CROSS_REFERENCE_KEY",
                message: "invalid cross reference id".into(),
                fields: vec![],
            });
        };
        rec.fields.extend(checked);
        rec.modstamp_ms = stamp;
        Ok(())
    }

    /// Deletes a record (it moves to the delete log) now, or at `at_ms`.
    pub fn delete_at(&mut self, id: &str, at_ms: Option<i64>) -> Result<(), RecordError> {
        if self.live(id).is_none() {
            let deleted = self.get(id).is_some();
            return Err(RecordError {
                status_code: if deleted { "ENTITY_IS_DELETED" } else { "INVALID_CROSS_REFERENCE_KEY" },
                message: if deleted {
                    "entity is deleted".into()
                } else {
                    "invalid cross reference id".into()
                },
                fields: vec![],
            });
        }
        let stamp = match at_ms {
            Some(at) => at - at.rem_euclid(1_000),
            None => self.next_stamp(),
        };
        let sobject = sobject_of_id(id).unwrap_or("Contact");
        if let Some(rec) = self.records.get_mut(sobject).and_then(|m| m.get_mut(id)) {
            rec.deleted_ms = Some(stamp);
            rec.modstamp_ms = stamp;
        }
        Ok(())
    }

    /// Deletes a record now (it moves to the delete log).
    pub fn delete(&mut self, id: &str) -> Result<(), RecordError> {
        self.delete_at(id, None)
    }

    /// Removes every deleted record (delete log and recycle bin); how many. `/deleted` then answers
    /// `INVALID_REPLICATION_DATE` for windows starting before now.
    pub fn purge_deleted(&mut self) -> usize {
        let mut purged = 0;
        for records in self.records.values_mut() {
            let before = records.len();
            records.retain(|_, r| r.deleted_ms.is_none());
            purged += before - records.len();
        }
        self.purged_through_ms = Some(self.now_ms());
        purged
    }

    /// The oldest instant the delete log still covers: 15 days back, or the last purge.
    pub fn earliest_deleted_available(&self) -> i64 {
        let retention = self.now_ms() - DELETE_LOG_MS;
        self.purged_through_ms.map_or(retention, |p| p.max(retention))
    }

    /// Records of `sobject` deleted within `[start, end)` and still in the delete log, oldest
    /// first: a record deleted in the minute the window ends at is reported by the next window,
    /// which starts there.
    pub fn deleted_between(&self, sobject: &str, start: i64, end: i64) -> Vec<(String, i64)> {
        let oldest = self.earliest_deleted_available();
        let mut out: Vec<(String, i64)> = self
            .records
            .get(sobject)
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|r| {
                r.deleted_ms.filter(|d| *d >= start && *d < end && *d >= oldest).map(|d| (r.id.clone(), d))
            })
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// Live records of `sobject` created or modified (`SystemModstamp`) within `[start, end)`.
    pub fn updated_between(&self, sobject: &str, start: i64, end: i64) -> Vec<String> {
        let mut out: Vec<(i64, &str)> = self
            .live_of(sobject)
            .filter(|r| r.modstamp_ms >= start && r.modstamp_ms < end)
            .map(|r| (r.modstamp_ms, r.id.as_str()))
            .collect();
        out.sort();
        out.into_iter().map(|(_, id)| id.to_owned()).collect()
    }

    /// The live record holding this external key (`Syncbridge_Key__c`), if any.
    pub fn by_key(&self, name: &str, key: &str) -> Option<&Record> {
        let def = sobject(name)?;
        self.by_field(def.name, KEY_FIELD, key)
    }

    /// Live records of an object whose `field` equals `value` (unique fields: case as the field
    /// says), in id order.
    pub fn find_by_field(&self, sobject: &str, field: &str, value: &str) -> Vec<&Record> {
        let cs = self.custom_field(sobject, field).is_none_or(|f| f.case_sensitive);
        let want = Self::normalize(value, cs);
        self.live_of(sobject)
            .filter(|r| {
                r.fields.get(field).and_then(Value::as_str).is_some_and(|v| Self::normalize(v, cs) == want)
            })
            .collect()
    }

    fn by_field(&self, sobject: &str, field: &str, value: &str) -> Option<&Record> {
        self.find_by_field(sobject, field, value).into_iter().next()
    }

    /// Adds a custom field (no field-level security yet). `Err` names an existing field.
    pub fn add_custom_field(&mut self, mut field: CustomField) -> Result<String, String> {
        if let Some(existing) = self.custom_field(field.sobject, &field.name) {
            return Err(existing.name.clone());
        }
        field.id = make_id("00N", self.custom_fields.len() as u64 + 1);
        let id = field.id.clone();
        let (sobject, name, cs) = (field.sobject, field.name.clone(), field.case_sensitive);
        let unique = field.unique;
        self.custom_fields.push(field);
        if unique {
            let held: Vec<(String, String)> = self
                .live_of(sobject)
                .filter_map(|r| {
                    r.fields.get(&name).and_then(Value::as_str).map(|v| (r.id.clone(), v.to_owned()))
                })
                .collect();
            for (rid, v) in held {
                self.uniques.insert((sobject, name.clone(), Self::normalize(&v, cs)), rid);
            }
        }
        Ok(id)
    }

    /// Grants the user read (and edit) on a custom field through the profile's permission set,
    /// as the Setup wizard's field-level-security step does.
    pub fn grant_field(&mut self, sobject: &str, field: &str, edit: bool) -> Result<String, RecordError> {
        let rec = json!({
            "ParentId": make_id("0PS", 1),
            "SobjectType": sobject,
            "Field": format!("{sobject}.{field}"),
            "PermissionsRead": true,
            "PermissionsEdit": edit,
        });
        let map = rec.as_object().cloned().unwrap_or_default();
        self.create("FieldPermissions", &map)
    }
}

fn sobject_def_or_err(name: &str) -> Result<&'static SObjectDef, RecordError> {
    sobject(name).ok_or_else(|| RecordError {
        status_code: "INVALID_TYPE",
        message: format!("sObject type '{name}' is not supported."),
        fields: vec![],
    })
}

fn sobject_of_name(name: &str) -> Option<&'static SObjectDef> {
    sobject(name)
}

fn sobject_prefix(name: &str) -> &'static str {
    sobject(name).map(|d| d.prefix).unwrap_or("000")
}

/// The object an id belongs to, by its key prefix.
pub fn sobject_of_id(id: &str) -> Option<&'static str> {
    let prefix = id.get(..3)?;
    SOBJECTS.iter().find(|d| d.prefix == prefix).map(|d| d.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::soql::parse;

    fn counts() -> SeedCounts {
        SeedCounts { accounts: 5, contacts: 30, opportunities: 12, tasks: 3, events: 3, notes: 2 }
    }

    fn key_field(sobject: &'static str) -> CustomField {
        CustomField {
            id: String::new(),
            sobject,
            name: KEY_FIELD.into(),
            label: "Syncbridge Key".into(),
            field_type: "Text".into(),
            length: Some(64),
            external_id: true,
            unique: true,
            case_sensitive: false,
            required: false,
        }
    }

    #[test]
    fn seeding_is_deterministic_and_groups_modstamps() {
        let a = Store::seeded(counts(), 7);
        let b = Store::seeded(counts(), 7);
        let id = make_id("003", 5);
        assert_eq!(a.get(&id).unwrap().fields, b.get(&id).unwrap().fields);
        assert_eq!(a.count("Contact"), 30);
        let stamps: std::collections::BTreeSet<i64> = a.live_of("Contact").map(|r| r.modstamp_ms).collect();
        assert_eq!(stamps.len(), 4);
        assert_eq!(a.get(&make_id("003", 1)).unwrap().fields["AccountId"], json!(make_id("001", 2)));
    }

    #[test]
    fn queries_filter_sort_and_reject_unknown_columns() {
        let s = Store::seeded(counts(), 7);
        let q = parse(
            "SELECT Id, Name FROM Opportunity WHERE Amount > 0 ORDER BY SystemModstamp DESC, Id LIMIT 3",
        )
        .unwrap();
        let (rows, fields) = s.run(&q, false).unwrap();
        assert_eq!(fields, vec!["Id", "Name"]);
        assert_eq!(rows.len(), 3);
        assert!(rows[0].modstamp_ms >= rows[2].modstamp_ms);
        assert!(s.run(&parse("SELECT Nope FROM Contact").unwrap(), false).is_err());
        assert!(s.run(&parse("SELECT Id FROM Lead").unwrap(), false).is_err());
    }

    #[test]
    fn semi_joins_find_the_profile_permission_set_of_the_user_as_salesforce_does() {
        let s = Store::seeded(counts(), 7);
        let user = crate::salesforce::USER_ID;
        let q = format!(
            "SELECT Id FROM PermissionSet WHERE IsOwnedByProfile = true AND Id IN \
             (SELECT PermissionSetId FROM PermissionSetAssignment WHERE AssigneeId = '{user}')"
        );
        let (rows, _) = s.run(&parse(&q).unwrap(), false).unwrap();
        assert_eq!(rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), vec![make_id("0PS", 1)]);
        let anti = q.replace("Id IN", "Id NOT IN");
        assert!(s.run(&parse(&anti).unwrap(), false).unwrap().0.is_empty());
        let nobody = q.replace(user, "005000000000000AAA");
        assert!(s.run(&parse(&nobody).unwrap(), false).unwrap().0.is_empty());
        let by_name = "SELECT Id FROM PermissionSet WHERE Name IN (SELECT PermissionSetId FROM PermissionSetAssignment)";
        assert!(s.run(&parse(by_name).unwrap(), false).is_err(), "only id and reference fields join");
        let or = "SELECT Id FROM Account WHERE Name = 'x' OR Id IN (SELECT AccountId FROM Contact)";
        assert!(parse(or).is_err(), "Salesforce refuses semi-joins under OR");
        let nested = "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE Id IN (SELECT WhoId FROM Task))";
        assert!(parse(nested).is_err(), "one level only");
        assert!(parse("SELECT Id FROM Account WHERE Id IN (SELECT Id, Name FROM Account)").is_err());
    }

    #[test]
    fn creates_enforce_required_fields_and_a_unique_key() {
        let mut s = Store::seeded(counts(), 7);
        let ok = json!({"LastName": "Ng", KEY_FIELD: "k1"});
        let stock = s.create("Contact", ok.as_object().unwrap()).unwrap_err();
        assert_eq!(stock.status_code, "INVALID_FIELD", "a stock org has no {KEY_FIELD}");
        s.add_custom_field(key_field("Contact")).unwrap();
        assert_eq!(s.create("Contact", ok.as_object().unwrap()).unwrap_err().status_code, "INVALID_FIELD");
        s.grant_field("Contact", KEY_FIELD, true).unwrap();
        let id = s.create("Contact", ok.as_object().unwrap()).unwrap();
        assert!(id.starts_with("003"));
        assert_eq!(s.by_key("Contact", "k1").unwrap().id, id);
        let dup = s.create("Contact", ok.as_object().unwrap()).unwrap_err();
        assert_eq!(dup.status_code, "DUPLICATE_VALUE");
        let upper = json!({"LastName": "Ng", KEY_FIELD: "K1"});
        assert_eq!(
            s.create("Contact", upper.as_object().unwrap()).unwrap_err().status_code,
            "DUPLICATE_VALUE"
        );
        let missing = s.create("Contact", json!({"FirstName": "X"}).as_object().unwrap()).unwrap_err();
        assert_eq!(missing.status_code, "REQUIRED_FIELD_MISSING");
        s.delete(&id).unwrap();
        assert_eq!(s.update(&id, &Map::new(), None).unwrap_err().status_code, "ENTITY_IS_DELETED");
        assert_eq!(s.deleted_between("Contact", 0, i64::MAX).len(), 1);
    }
}
