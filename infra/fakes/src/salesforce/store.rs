//! The fake org's records: Contact, Account, Opportunity, Task, Event and Note, seeded
//! deterministically, with `SystemModstamp` at second precision (as Salesforce stores it, so many
//! records share one stamp), a delete log, and a unique external-id field `Syncbridge_Key__c`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::soql::{Lit, Query, SoqlError, compare};

/// 2024-01-01T00:00:00Z in epoch milliseconds: seeded records are created from here on.
pub const SEED_BASE_MS: i64 = 1_704_067_200_000;
const THIRTY_DAYS_MS: i64 = 30 * 86_400_000;
/// Seeded records share their `SystemModstamp` in groups of this size.
pub const SEED_STAMP_GROUP: u64 = 10;
pub const API_VERSION: &str = "v60.0";
/// The external-id field the fake treats as unique on every object.
pub const KEY_FIELD: &str = "Syncbridge_Key__c";

/// The objects the fake serves, with their key prefix, fields and required fields on create.
pub struct SObjectDef {
    pub name: &'static str,
    pub prefix: &'static str,
    pub fields: &'static [&'static str],
    pub required: &'static [&'static str],
    /// Whether the org can add custom (`__c`) fields to it; the standard Note cannot.
    pub custom_fields: bool,
}

/// The longest string a Name/Title/Subject field stores.
const SHORT_TEXT_MAX: usize = 255;
const SHORT_TEXT_FIELDS: &[&str] = &["Title", "Subject", "Name"];

const SYSTEM_FIELDS: &[&str] = &["Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp"];
const DATETIME_FIELDS: &[&str] =
    &["CreatedDate", "LastModifiedDate", "SystemModstamp", "StartDateTime", "EndDateTime"];

pub const SOBJECTS: &[SObjectDef] = &[
    SObjectDef {
        name: "Contact",
        prefix: "003",
        fields: &["FirstName", "LastName", "Email", "Phone", "Title", "AccountId"],
        required: &["LastName"],
        custom_fields: true,
    },
    SObjectDef {
        name: "Account",
        prefix: "001",
        fields: &["Name", "Website", "Industry", "Phone", "BillingCity", "BillingCountry"],
        required: &["Name"],
        custom_fields: true,
    },
    SObjectDef {
        name: "Opportunity",
        prefix: "006",
        fields: &["Name", "Amount", "StageName", "CloseDate", "AccountId"],
        required: &["Name", "StageName", "CloseDate"],
        custom_fields: true,
    },
    SObjectDef {
        name: "Task",
        prefix: "00T",
        fields: &["Subject", "Status", "ActivityDate", "Description", "WhoId", "WhatId", "Priority"],
        required: &[],
        custom_fields: true,
    },
    SObjectDef {
        name: "Event",
        prefix: "00U",
        fields: &["Subject", "StartDateTime", "EndDateTime", "Description", "WhoId", "WhatId", "Location"],
        required: &["StartDateTime", "EndDateTime"],
        custom_fields: true,
    },
    SObjectDef {
        name: "Note",
        prefix: "002",
        fields: &["Title", "Body", "ParentId", "IsPrivate"],
        required: &["Title", "ParentId"],
        custom_fields: false,
    },
];

/// The definition of an object, by name (case-insensitive).
pub fn sobject(name: &str) -> Option<&'static SObjectDef> {
    SOBJECTS.iter().find(|d| d.name.eq_ignore_ascii_case(name))
}

impl SObjectDef {
    /// The field's proper spelling, if the object has it (custom `__c` fields always exist).
    pub fn field(&self, name: &str) -> Option<String> {
        SYSTEM_FIELDS
            .iter()
            .chain(self.fields.iter())
            .find(|f| f.eq_ignore_ascii_case(name))
            .map(|f| (*f).to_owned())
            .or_else(|| {
                let custom = self.custom_fields
                    && name.len() > 3
                    && name[name.len() - 3..].eq_ignore_ascii_case("__c");
                custom.then(|| {
                    if name.eq_ignore_ascii_case(KEY_FIELD) { KEY_FIELD.to_owned() } else { name.to_owned() }
                })
            })
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
            "Id" => Lit::Str(self.id.clone()),
            "IsDeleted" => Lit::Bool(self.deleted_ms.is_some()),
            "CreatedDate" => Lit::DateTime(self.created_ms),
            "LastModifiedDate" | "SystemModstamp" => Lit::DateTime(self.modstamp_ms),
            f => match self.fields.get(f) {
                None | Some(Value::Null) => Lit::Null,
                Some(Value::String(s)) if DATETIME_FIELDS.contains(&f) => {
                    super::soql::parse_datetime(s).map(Lit::DateTime).unwrap_or(Lit::Null)
                }
                Some(Value::String(s)) => Lit::Str(s.clone()),
                Some(Value::Number(n)) => Lit::Num(n.as_f64().unwrap_or_default()),
                Some(Value::Bool(b)) => Lit::Bool(*b),
                Some(other) => Lit::Str(other.to_string()),
            },
        }
    }

    /// A field as JSON, as the REST API renders it.
    pub fn json(&self, field: &str) -> Value {
        match field {
            "Id" => Value::String(self.id.clone()),
            "IsDeleted" => Value::Bool(self.deleted_ms.is_some()),
            "CreatedDate" => Value::String(sf_datetime(self.created_ms)),
            "LastModifiedDate" | "SystemModstamp" => Value::String(sf_datetime(self.modstamp_ms)),
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

    /// The REST JSON of the record with `fields` (proper spellings), `attributes` first.
    pub fn render(&self, fields: &[String]) -> Value {
        let mut obj = Map::new();
        obj.insert(
            "attributes".into(),
            json!({
                "type": self.sobject,
                "url": format!("/services/data/{API_VERSION}/sobjects/{}/{}", self.sobject, self.id),
            }),
        );
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

/// Every object's records, by id (ids sort in creation order within an object).
#[derive(Debug, Default)]
pub struct Store {
    records: HashMap<&'static str, BTreeMap<String, Record>>,
    next_num: HashMap<&'static str, u64>,
    keys: HashMap<(&'static str, String), String>,
    last_stamp: i64,
}

/// The id of the `n`th record of an object: prefix, zero padding, a fixed 3-character suffix.
pub fn make_id(prefix: &str, n: u64) -> String {
    format!("{prefix}{n:012}AAA")
}

impl Store {
    /// Seeds records with ids `{prefix}000000000001AAA`.. created 1 s apart from
    /// [`SEED_BASE_MS`], last modified 30 days later in groups of [`SEED_STAMP_GROUP`] sharing
    /// one `SystemModstamp`.
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
        if let Some(Value::String(k)) = fields.get(KEY_FIELD) {
            self.keys.insert((sobject, k.clone()), id.clone());
        }
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

    /// Now at second precision, never before a stamp already handed out (several writes in one
    /// second share it, as in Salesforce).
    pub fn next_stamp(&mut self) -> i64 {
        let now = Utc::now().timestamp_millis();
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

    pub fn count(&self, sobject: &str) -> usize {
        self.live_of(sobject).count()
    }

    /// Runs a query: the matching live records in order (`LIMIT` applied), or the count.
    pub fn run(&self, q: &Query) -> Result<(Vec<&Record>, Vec<String>), SoqlError> {
        let def = sobject(&q.from)
            .ok_or_else(|| SoqlError(format!("sObject type '{}' is not supported.", q.from)))?;
        let resolve = |f: &str| {
            def.field(f).ok_or_else(|| SoqlError(format!("No such column '{f}' on entity '{}'.", def.name)))
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
        let mut out: Vec<&Record> = self
            .live_of(def.name)
            .filter(|r| q.filter.as_ref().is_none_or(|e| e.eval(&|f: &str| r.lit(&get_name(f)))))
            .collect();
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

    fn check_fields(
        def: &SObjectDef,
        fields: &Map<String, Value>,
    ) -> Result<BTreeMap<String, Value>, RecordError> {
        let mut out = BTreeMap::new();
        for (k, v) in fields {
            if k == "attributes" || k.eq_ignore_ascii_case("id") {
                continue;
            }
            let Some(name) = def.field(k) else {
                return Err(RecordError {
                    status_code: "INVALID_FIELD",
                    message: format!("No such column '{k}' on sobject of type {}", def.name),
                    fields: vec![k.clone()],
                });
            };
            if SYSTEM_FIELDS.contains(&name.as_str()) {
                return Err(RecordError {
                    status_code: "INVALID_FIELD_FOR_INSERT_UPDATE",
                    message: format!(
                        "Unable to create/update fields: {name}. Please check the security settings of this field."
                    ),
                    fields: vec![name],
                });
            }
            if SHORT_TEXT_FIELDS.contains(&name.as_str())
                && v.as_str().is_some_and(|t| t.chars().count() > SHORT_TEXT_MAX)
            {
                return Err(RecordError {
                    status_code: "STRING_TOO_LONG",
                    message: format!("{name}: data value too large (max length={SHORT_TEXT_MAX})"),
                    fields: vec![name],
                });
            }
            out.insert(name, v.clone());
        }
        Ok(out)
    }

    fn duplicate_key(
        &self,
        sobject: &'static str,
        fields: &BTreeMap<String, Value>,
        except: Option<&str>,
    ) -> Option<RecordError> {
        let Some(Value::String(k)) = fields.get(KEY_FIELD) else { return None };
        let holder = self.keys.get(&(sobject, k.clone()))?;
        if Some(holder.as_str()) == except || self.live(holder).is_none() {
            return None;
        }
        Some(RecordError {
            status_code: "DUPLICATE_VALUE",
            message: format!(
                "duplicate value found: {KEY_FIELD} duplicates value on record with id: {holder}"
            ),
            fields: vec![KEY_FIELD.to_owned()],
        })
    }

    /// Checks a create without applying it.
    pub fn validate_create(&self, sobject: &str, fields: &Map<String, Value>) -> Result<(), RecordError> {
        let def = sobject_def_or_err(sobject)?;
        let checked = Self::check_fields(def, fields)?;
        let missing: Vec<String> = def
            .required
            .iter()
            .filter(|f| checked.get(**f).is_none_or(|v| v.is_null() || v.as_str() == Some("")))
            .map(|f| (*f).to_owned())
            .collect();
        if !missing.is_empty() {
            return Err(RecordError {
                status_code: "REQUIRED_FIELD_MISSING",
                message: format!("Required fields are missing: [{}]", missing.join(", ")),
                fields: missing,
            });
        }
        match self.duplicate_key(def.name, &checked, None) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Creates a record; returns its id.
    pub fn create(&mut self, sobject: &str, fields: &Map<String, Value>) -> Result<String, RecordError> {
        self.validate_create(sobject, fields)?;
        let def = sobject_def_or_err(sobject)?;
        let checked = Self::check_fields(def, fields)?;
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
        let checked = Self::check_fields(def, fields)?;
        for f in def.required {
            if checked.get(*f).is_some_and(|v| v.is_null() || v.as_str() == Some("")) {
                return Err(RecordError {
                    status_code: "REQUIRED_FIELD_MISSING",
                    message: format!("Required fields are missing: [{f}]"),
                    fields: vec![(*f).to_owned()],
                });
            }
        }
        match self.duplicate_key(def.name, &checked, Some(id)) {
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
        let checked = Self::check_fields(def, fields)?;
        let stamp = match stamp {
            Some(s) => {
                self.last_stamp = self.last_stamp.max(s);
                s
            }
            None => self.next_stamp(),
        };
        if let Some(Value::String(k)) = checked.get(KEY_FIELD) {
            self.keys.insert((def.name, k.clone()), id.to_owned());
        }
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

    /// Deletes a record (it moves to the delete log).
    pub fn delete(&mut self, id: &str) -> Result<(), RecordError> {
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
        let stamp = self.next_stamp();
        let sobject = sobject_of_id(id).unwrap_or("Contact");
        if let Some(rec) = self.records.get_mut(sobject).and_then(|m| m.get_mut(id)) {
            rec.deleted_ms = Some(stamp);
            rec.modstamp_ms = stamp;
        }
        Ok(())
    }

    /// Records of `sobject` deleted within `[start, end)`, oldest first: a record deleted in the
    /// second the window ends at is reported by the next window, which starts there.
    /// Removes every deleted record (delete log and recycle bin); how many.
    pub fn purge_deleted(&mut self) -> usize {
        let mut purged = 0;
        for records in self.records.values_mut() {
            let before = records.len();
            records.retain(|_, r| r.deleted_ms.is_none());
            purged += before - records.len();
        }
        purged
    }

    pub fn deleted_between(&self, sobject: &str, start: i64, end: i64) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = self
            .records
            .get(sobject)
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|r| r.deleted_ms.filter(|d| *d >= start && *d < end).map(|d| (r.id.clone(), d)))
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// The live record holding this external key, if any.
    pub fn by_key(&self, name: &str, key: &str) -> Option<&Record> {
        let def = sobject(name)?;
        self.keys.get(&(def.name, key.to_owned())).and_then(|id| self.live(id))
    }
}

fn sobject_def_or_err(name: &str) -> Result<&'static SObjectDef, RecordError> {
    sobject(name).ok_or_else(|| RecordError {
        status_code: "INVALID_TYPE",
        message: format!("sObject type '{name}' is not supported."),
        fields: vec![],
    })
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
        let (rows, fields) = s.run(&q).unwrap();
        assert_eq!(fields, vec!["Id", "Name"]);
        assert_eq!(rows.len(), 3);
        assert!(rows[0].modstamp_ms >= rows[2].modstamp_ms);
        assert!(s.run(&parse("SELECT Nope FROM Contact").unwrap()).is_err());
        assert!(s.run(&parse("SELECT Id FROM Lead").unwrap()).is_err());
    }

    #[test]
    fn creates_enforce_required_fields_and_a_unique_key() {
        let mut s = Store::seeded(counts(), 7);
        let ok = json!({"LastName": "Ng", KEY_FIELD: "k1"});
        let id = s.create("Contact", ok.as_object().unwrap()).unwrap();
        assert!(id.starts_with("003"));
        assert_eq!(s.by_key("Contact", "k1").unwrap().id, id);
        let dup = s.create("Contact", ok.as_object().unwrap()).unwrap_err();
        assert_eq!(dup.status_code, "DUPLICATE_VALUE");
        let missing = s.create("Contact", json!({"FirstName": "X"}).as_object().unwrap()).unwrap_err();
        assert_eq!(missing.status_code, "REQUIRED_FIELD_MISSING");
        s.delete(&id).unwrap();
        assert_eq!(s.update(&id, &Map::new(), None).unwrap_err().status_code, "ENTITY_IS_DELETED");
        assert_eq!(s.deleted_between("Contact", 0, i64::MAX).len(), 1);
    }
}
