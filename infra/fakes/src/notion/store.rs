//! The fake workspace's data: pages, databases with their data sources (API version 2025-09-03),
//! blocks and users, with Notion's validation of property values and its size limits, the query
//! filter and sort evaluation, and cursors. Pure logic; the server maps [`Invalid`] to 400
//! `validation_error` and [`Missing`] to 404 `object_not_found`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, SubsecRound, Timelike, Utc};
use rand::Rng;
use serde_json::{Map, Value, json};

/// Characters in one rich text object's `text.content`, and elements in any array of a request
/// (rich text, relation, people, multi-select, appended blocks):
/// <https://developers.notion.com/reference/request-limits#limits-for-property-values>.
pub const MAX_TEXT: usize = 2000;
pub const MAX_ARRAY: usize = 100;
/// Emails and phone numbers: 200 characters; URLs: 2000 (same page).
pub const MAX_EMAIL: usize = 200;
/// Page size of every paginated endpoint: <https://developers.notion.com/reference/intro#pagination>.
pub const MAX_PAGE_SIZE: usize = 100;

/// A request the API refuses with 400 `validation_error` (the message says why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

/// An object the token cannot see: 404 `object_not_found`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("validation_error: {}", .0.0)]
    Invalid(Invalid),
    #[error("object_not_found: {}", .0.0)]
    Missing(Missing),
}

impl From<Invalid> for StoreError {
    fn from(e: Invalid) -> Self {
        StoreError::Invalid(e)
    }
}

impl From<Missing> for StoreError {
    fn from(e: Missing) -> Self {
        StoreError::Missing(e)
    }
}

fn invalid<T>(message: impl Into<String>) -> Result<T, StoreError> {
    Err(StoreError::Invalid(Invalid(message.into())))
}

/// A fresh Notion id: a UUID (v4) in its dashed form.
pub fn new_id() -> String {
    let v: u128 = rand::rng().random::<u128>() & !(0xf << 76) | (0x4 << 76);
    let h = format!("{v:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// An id from a path or body: Notion takes UUIDs with or without dashes; `None` when it is not one.
pub fn parse_id(raw: &str) -> Option<String> {
    let hex: String = raw.chars().filter(|c| *c != '-').collect::<String>().to_ascii_lowercase();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
}

/// Notion rounds `created_time` and `last_edited_time` down to the minute
/// (<https://developers.notion.com/changelog/last-edited-time-is-now-rounded-to-the-nearest-minute>).
pub fn to_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(0).with_second(0).unwrap_or(t)
}

pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Where a page lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parent {
    Workspace,
    Page(String),
    DataSource { data_source: String, database: String },
}

impl Parent {
    fn render(&self) -> Value {
        match self {
            Parent::Workspace => json!({ "type": "workspace", "workspace": true }),
            Parent::Page(id) => json!({ "type": "page_id", "page_id": id }),
            Parent::DataSource { data_source, database } => {
                json!({ "type": "data_source_id", "data_source_id": data_source, "database_id": database })
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Page {
    pub id: String,
    pub parent: Parent,
    /// Property name -> its value (the type's part only: a rich-text array, a number, ...).
    pub values: BTreeMap<String, Value>,
    pub created_time: DateTime<Utc>,
    pub last_edited_time: DateTime<Utc>,
    pub created_by: String,
    pub last_edited_by: String,
    pub in_trash: bool,
    seq: u64,
}

/// One property of a data source's schema.
#[derive(Debug, Clone)]
pub struct PropDef {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub config: Value,
}

impl PropDef {
    fn render(&self) -> Value {
        let mut v = json!({ "id": self.id, "name": self.name, "type": self.kind, "description": null });
        v[self.kind.as_str()] = self.config.clone();
        v
    }
}

#[derive(Debug, Clone)]
pub struct Database {
    pub id: String,
    pub parent_page: String,
    pub title: Value,
    pub sources: Vec<String>,
    pub created_time: DateTime<Utc>,
    pub last_edited_time: DateTime<Utc>,
    pub in_trash: bool,
}

#[derive(Debug, Clone)]
pub struct DataSource {
    pub id: String,
    pub database: String,
    pub title: Value,
    pub props: Vec<PropDef>,
    pub created_time: DateTime<Utc>,
    pub last_edited_time: DateTime<Utc>,
}

impl DataSource {
    fn prop(&self, key: &str) -> Option<&PropDef> {
        self.props.iter().find(|p| p.name == key).or_else(|| self.props.iter().find(|p| p.id == key))
    }
}

#[derive(Debug, Clone)]
pub struct Block {
    pub id: String,
    pub parent: String,
    pub parent_is_page: bool,
    pub kind: String,
    pub content: Value,
    pub created_time: DateTime<Utc>,
    pub created_by: String,
}

/// Where a paginated listing continues: the sort key and id of the next result.
#[derive(Debug, Clone)]
struct CursorPos {
    key: Vec<KeyPart>,
    id: String,
}

#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum KeyPart {
    Null,
    Num(f64),
    Text(String),
    Time(DateTime<Utc>),
}

fn cmp_part(a: &KeyPart, b: &KeyPart) -> Ordering {
    a.partial_cmp(b).unwrap_or(Ordering::Equal)
}

/// A page of results and the cursor of the next one.
#[derive(Debug)]
pub struct Listing<T> {
    pub results: Vec<T>,
    pub next_cursor: Option<String>,
    /// The query matched more than [`QUERY_RESULT_CAP`] pages: its listing stops at the cap.
    pub incomplete: bool,
}

/// A single data source query returns at most this many results; past it pagination stops
/// (`has_more: false`) and every page of the answer carries `request_status: incomplete`
/// (<https://developers.notion.com/guides/data-apis/query-large-data-sources>).
pub const QUERY_RESULT_CAP: usize = 10_000;

/// The workspace.
#[derive(Debug, Default)]
pub struct Store {
    pub pages: HashMap<String, Page>,
    pub databases: HashMap<String, Database>,
    pub sources: HashMap<String, DataSource>,
    pub blocks: HashMap<String, Block>,
    children: HashMap<String, Vec<String>>,
    /// Known user ids (the integration's bot and the workspace's people) -> their user object.
    pub users: BTreeMap<String, Value>,
    cursors: HashMap<String, CursorPos>,
    seq: u64,
}

fn rich_text_plain(items: &Value) -> String {
    items
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.get("plain_text").and_then(Value::as_str)).collect::<String>())
        .unwrap_or_default()
}

/// Normalises a rich-text array of a request into what Notion returns.
pub fn rich_text(input: &Value, path: &str) -> Result<Value, StoreError> {
    let Some(items) = input.as_array() else {
        return invalid(format!("body failed validation: {path} should be an array, instead was `{input}`."));
    };
    if items.len() > MAX_ARRAY {
        return invalid(format!(
            "body failed validation: {path}.length should be ≤ `{MAX_ARRAY}`, instead was `{}`.",
            items.len()
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("text");
        let text = item.get("text").filter(|_| kind == "text");
        let Some(content) = text.and_then(|t| t.get("content")).and_then(Value::as_str) else {
            return invalid(format!("body failed validation: {path}[{i}].text should be defined."));
        };
        let len = content.chars().count();
        if len > MAX_TEXT {
            return invalid(format!(
                "body failed validation: {path}[{i}].text.content.length should be ≤ `{MAX_TEXT}`, instead was `{len}`."
            ));
        }
        let link = text.and_then(|t| t.get("link")).filter(|l| !l.is_null()).cloned();
        let href = link.as_ref().and_then(|l| l.get("url")).cloned().unwrap_or(Value::Null);
        let mut annotations = json!({
            "bold": false, "italic": false, "strikethrough": false, "underline": false,
            "code": false, "color": "default",
        });
        if let Some(Value::Object(a)) = item.get("annotations") {
            for (k, v) in a {
                annotations[k] = v.clone();
            }
        }
        out.push(json!({
            "type": "text",
            "text": { "content": content, "link": link },
            "annotations": annotations,
            "plain_text": content,
            "href": href,
        }));
    }
    Ok(Value::Array(out))
}

/// A property's empty value, as pages without one show it.
fn empty_value(def: &PropDef) -> Value {
    match def.kind.as_str() {
        "title" | "rich_text" | "people" | "relation" | "multi_select" => json!([]),
        "checkbox" => json!(false),
        "status" => def.config.pointer("/options/0").map(option_value).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn option_value(o: &Value) -> Value {
    json!({ "id": o.get("id"), "name": o.get("name"), "color": o.get("color") })
}

fn random_prop_id() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..4).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect()
}

fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).map(|d| d.to_utc()).ok().or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc())
    })
}

/// The schema of a new property from a request (`{"number": {"format": ...}}`, ...).
fn prop_def(name: &str, spec: &Value, sources: &HashMap<String, DataSource>) -> Result<PropDef, StoreError> {
    const KINDS: &[&str] = &[
        "title",
        "rich_text",
        "number",
        "select",
        "multi_select",
        "status",
        "date",
        "email",
        "phone_number",
        "people",
        "relation",
        "checkbox",
        "url",
    ];
    let Some(kind) = KINDS.iter().find(|k| spec.get(**k).is_some()) else {
        return invalid(format!("body failed validation: the property `{name}` has no known type."));
    };
    let given = spec.get(*kind).cloned().unwrap_or(json!({}));
    let options = |list: Option<&Value>| -> Value {
        Value::Array(
            list.and_then(Value::as_array)
                .map(|a| a.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|o| {
                    json!({
                        "id": random_prop_id(),
                        "name": o.get("name").and_then(Value::as_str).unwrap_or_default(),
                        "color": o.get("color").and_then(Value::as_str).unwrap_or("default"),
                        "description": null,
                    })
                })
                .collect(),
        )
    };
    let config = match *kind {
        "number" => json!({ "format": given.get("format").and_then(Value::as_str).unwrap_or("number") }),
        "select" | "multi_select" => json!({ "options": options(given.get("options")) }),
        "status" => {
            let mut opts = options(given.get("options"));
            if opts.as_array().is_none_or(Vec::is_empty) {
                opts = options(Some(&json!([
                    { "name": "Not started", "color": "default" },
                    { "name": "In progress", "color": "blue" },
                    { "name": "Done", "color": "green" },
                ])));
            }
            json!({ "options": opts, "groups": [] })
        }
        "relation" => {
            let Some(target) = given.get("data_source_id").and_then(Value::as_str).and_then(parse_id) else {
                return invalid(format!(
                    "body failed validation: body.properties.{name}.relation.data_source_id should be defined."
                ));
            };
            let Some(ds) = sources.get(&target) else {
                return Err(Missing(format!("Could not find data source with ID: {target}.")).into());
            };
            json!({
                "data_source_id": target,
                "database_id": ds.database,
                "type": "single_property",
                "single_property": {},
            })
        }
        _ => json!({}),
    };
    let id = if *kind == "title" { "title".to_owned() } else { random_prop_id() };
    Ok(PropDef { id, name: name.to_owned(), kind: (*kind).to_owned(), config })
}

impl Store {
    pub fn now_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn add_user(&mut self, user: Value) {
        if let Some(id) = user.get("id").and_then(Value::as_str) {
            self.users.insert(id.to_owned(), user);
        }
    }

    /// A page outside any database (the pages a person shares with the integration).
    pub fn create_plain_page(&mut self, parent: Parent, title: &str, by: &str, now: DateTime<Utc>) -> String {
        let id = new_id();
        let seq = self.now_seq();
        let title = rich_text(&json!([{ "text": { "content": title } }]), "title").unwrap_or(json!([]));
        let now = to_minute(now);
        self.pages.insert(
            id.clone(),
            Page {
                id: id.clone(),
                parent,
                values: [("title".to_owned(), title)].into(),
                created_time: now,
                last_edited_time: now,
                created_by: by.to_owned(),
                last_edited_by: by.to_owned(),
                in_trash: false,
                seq,
            },
        );
        id
    }

    /// `POST /v1/databases`: a database under a page, with its initial data source.
    /// <https://developers.notion.com/reference/create-a-database>
    pub fn create_database(&mut self, body: &Value, now: DateTime<Utc>) -> Result<String, StoreError> {
        let Some(parent) = body.pointer("/parent/page_id").and_then(Value::as_str) else {
            return invalid(
                "body failed validation: body.parent.page_id should be defined, instead was `undefined`.",
            );
        };
        let parent =
            parse_id(parent).ok_or_else(|| Invalid("body.parent.page_id should be a valid uuid".into()))?;
        if self.pages.get(&parent).is_none_or(|p| p.in_trash) {
            return Err(Missing(format!(
                "Could not find page with ID: {parent}. Make sure the relevant pages and databases are shared with your integration."
            ))
            .into());
        }
        let title = rich_text(body.get("title").unwrap_or(&json!([])), "body.title")?;
        let props = body.pointer("/initial_data_source/properties").cloned().unwrap_or(json!({}));
        let Some(props) = props.as_object() else {
            return invalid(
                "body failed validation: body.initial_data_source.properties should be an object.",
            );
        };
        let mut defs = Vec::new();
        for (name, spec) in props {
            defs.push(prop_def(name, spec, &self.sources)?);
        }
        match defs.iter().filter(|d| d.kind == "title").count() {
            1 => {}
            0 => return invalid("Title property must be present in a data source schema."),
            _ => return invalid("A data source can have only one title property."),
        }
        let now = to_minute(now);
        let (db_id, ds_id) = (new_id(), new_id());
        self.sources.insert(
            ds_id.clone(),
            DataSource {
                id: ds_id.clone(),
                database: db_id.clone(),
                title: title.clone(),
                props: defs,
                created_time: now,
                last_edited_time: now,
            },
        );
        self.databases.insert(
            db_id.clone(),
            Database {
                id: db_id.clone(),
                parent_page: parent,
                title,
                sources: vec![ds_id],
                created_time: now,
                last_edited_time: now,
                in_trash: false,
            },
        );
        Ok(db_id)
    }

    pub fn render_database(&self, id: &str) -> Result<Value, StoreError> {
        let db = self.databases.get(id).ok_or_else(|| not_shared("database", id))?;
        let sources: Vec<Value> = db
            .sources
            .iter()
            .filter_map(|s| self.sources.get(s))
            .map(|s| json!({ "id": s.id, "name": rich_text_plain(&s.title) }))
            .collect();
        Ok(json!({
            "object": "database",
            "id": db.id,
            "title": db.title,
            "description": [],
            "parent": { "type": "page_id", "page_id": db.parent_page },
            "is_inline": false,
            "in_trash": db.in_trash,
            "archived": db.in_trash,
            "is_locked": false,
            "created_time": iso(db.created_time),
            "last_edited_time": iso(db.last_edited_time),
            "data_sources": sources,
            "icon": null,
            "cover": null,
            "url": format!("https://www.notion.so/{}", db.id.replace('-', "")),
            "public_url": null,
        }))
    }

    pub fn render_data_source(&self, id: &str) -> Result<Value, StoreError> {
        let ds = self.sources.get(id).ok_or_else(|| not_shared("data source", id))?;
        let parent_page = self.databases.get(&ds.database).map(|d| d.parent_page.clone());
        let props: Map<String, Value> = ds.props.iter().map(|p| (p.name.clone(), p.render())).collect();
        Ok(json!({
            "object": "data_source",
            "id": ds.id,
            "created_time": iso(ds.created_time),
            "last_edited_time": iso(ds.last_edited_time),
            "properties": props,
            "parent": { "type": "database_id", "database_id": ds.database },
            "database_parent": { "type": "page_id", "page_id": parent_page },
            "title": ds.title,
            "description": [],
            "icon": null,
            "archived": false,
            "in_trash": false,
        }))
    }

    /// `PATCH /v1/data_sources/{id}`: adds properties, renames them (`name`) or removes them (`null`).
    /// <https://developers.notion.com/reference/update-a-data-source>
    pub fn update_data_source(
        &mut self,
        id: &str,
        body: &Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if !self.sources.contains_key(id) {
            return Err(not_shared("data source", id).into());
        }
        let changes = body.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
        for (key, spec) in changes {
            let existing = self.sources.get(id).and_then(|ds| ds.prop(&key)).map(|p| p.name.clone());
            let def = if spec.is_null() {
                None
            } else if let (Some(name), true) =
                (&existing, spec.as_object().is_some_and(|o| o.len() == 1 && o.contains_key("name")))
            {
                let new_name = spec.get("name").and_then(Value::as_str).unwrap_or(name).to_owned();
                self.sources.get(id).and_then(|ds| ds.prop(name)).cloned().map(|mut d| {
                    d.name = new_name;
                    d
                })
            } else {
                Some(prop_def(
                    spec.get("name").and_then(Value::as_str).unwrap_or(&key),
                    &spec,
                    &self.sources,
                )?)
            };
            let Some(ds) = self.sources.get_mut(id) else { continue };
            match (existing, def) {
                (Some(name), None) => {
                    if ds.prop(&name).is_some_and(|p| p.kind == "title") {
                        return invalid("Cannot delete the title property.");
                    }
                    ds.props.retain(|p| p.name != name);
                }
                (Some(name), Some(def)) => {
                    if let Some(slot) = ds.props.iter_mut().find(|p| p.name == name) {
                        let old = slot.id.clone();
                        *slot = def;
                        slot.id = old;
                    }
                }
                (None, Some(def)) => {
                    if def.kind == "title" {
                        return invalid("A data source can have only one title property.");
                    }
                    ds.props.push(def);
                }
                (None, None) => return invalid(format!("{key} is not a property that exists.")),
            }
            ds.last_edited_time = to_minute(now);
        }
        Ok(())
    }

    /// Normalises one property value of a write against its schema (creating a select option
    /// named for the first time, as Notion does); returns the stored value.
    fn value(&mut self, ds_id: &str, key: &str, input: &Value) -> Result<(String, Value), StoreError> {
        let Some(def) = self.sources.get(ds_id).and_then(|ds| ds.prop(key)).cloned() else {
            return invalid(format!("{key} is not a property that exists."));
        };
        let kind = def.kind.as_str();
        let path = format!("body.properties.{}.{kind}", def.name);
        let Some(raw) = input.get(kind) else {
            return invalid(format!(
                "body failed validation: {path} should be defined, instead was `undefined`."
            ));
        };
        let too_long = |s: &str, max: usize| -> Result<(), StoreError> {
            let n = s.chars().count();
            if n > max {
                return invalid(format!(
                    "body failed validation: {path}.length should be ≤ `{max}`, instead was `{n}`."
                ));
            }
            Ok(())
        };
        let array = |raw: &Value| -> Result<Vec<Value>, StoreError> {
            let a = raw
                .as_array()
                .cloned()
                .ok_or_else(|| Invalid(format!("body failed validation: {path} should be an array.")))?;
            if a.len() > MAX_ARRAY {
                return invalid(format!(
                    "body failed validation: {path}.length should be ≤ `{MAX_ARRAY}`, instead was `{}`.",
                    a.len()
                ));
            }
            Ok(a)
        };
        let value = match kind {
            "title" | "rich_text" => rich_text(raw, &path)?,
            "number" => match raw {
                Value::Null | Value::Number(_) => raw.clone(),
                _ => {
                    return invalid(format!(
                        "body failed validation: {path} should be a number or `null`, instead was `{raw}`."
                    ));
                }
            },
            "checkbox" => match raw {
                Value::Bool(_) => raw.clone(),
                _ => {
                    return invalid(format!(
                        "body failed validation: {path} should be a boolean, instead was `{raw}`."
                    ));
                }
            },
            "email" | "phone_number" | "url" => match raw {
                Value::Null => Value::Null,
                Value::String(s) => {
                    too_long(s, if kind == "url" { MAX_TEXT } else { MAX_EMAIL })?;
                    raw.clone()
                }
                _ => {
                    return invalid(format!(
                        "body failed validation: {path} should be a string or `null`, instead was `{raw}`."
                    ));
                }
            },
            "date" => match raw {
                Value::Null => Value::Null,
                Value::Object(o) => {
                    let start = o.get("start").and_then(Value::as_str).filter(|s| parse_date(s).is_some());
                    let Some(start) = start else {
                        return invalid(format!(
                            "body failed validation: {path}.start should be a valid ISO 8601 date string."
                        ));
                    };
                    let end = o.get("end").cloned().unwrap_or(Value::Null);
                    if end.as_str().is_some_and(|e| parse_date(e).is_none()) {
                        return invalid(format!(
                            "body failed validation: {path}.end should be a valid ISO 8601 date string."
                        ));
                    }
                    json!({ "start": start, "end": end, "time_zone": o.get("time_zone").cloned().unwrap_or(Value::Null) })
                }
                _ => {
                    return invalid(format!("body failed validation: {path} should be an object or `null`."));
                }
            },
            "select" | "status" => match raw {
                Value::Null if kind == "select" => Value::Null,
                Value::Object(o) => {
                    let name = o.get("name").and_then(Value::as_str);
                    let id = o.get("id").and_then(Value::as_str);
                    if let Some(n) = name {
                        too_long(n, MAX_EMAIL)?;
                        if n.contains(',') {
                            return invalid(format!(
                                "body failed validation: {path}.name should not contain commas."
                            ));
                        }
                    }
                    let found = def
                        .config
                        .get("options")
                        .and_then(Value::as_array)
                        .and_then(|opts| {
                            opts.iter().find(|op| {
                                name.is_some_and(|n| op.get("name").and_then(Value::as_str) == Some(n))
                                    || id.is_some_and(|i| op.get("id").and_then(Value::as_str) == Some(i))
                            })
                        })
                        .cloned();
                    match (found, name) {
                        (Some(op), _) => option_value(&op),
                        (None, Some(n)) if kind == "select" => {
                            let op = json!({ "id": random_prop_id(), "name": n, "color": "default", "description": null });
                            if let Some(Value::Array(opts)) = self
                                .sources
                                .get_mut(ds_id)
                                .and_then(|ds| ds.props.iter_mut().find(|p| p.name == def.name))
                                .and_then(|p| p.config.get_mut("options"))
                            {
                                opts.push(op.clone());
                            }
                            option_value(&op)
                        }
                        (None, _) => {
                            return invalid(format!(
                                "Invalid {kind} option. {} option \"{}\" does not exist.",
                                if kind == "status" { "Status" } else { "Select" },
                                name.or(id).unwrap_or_default()
                            ));
                        }
                    }
                }
                _ => return invalid(format!("body failed validation: {path} should be an object.")),
            },
            "multi_select" => {
                let mut out = Vec::new();
                for item in array(raw)? {
                    let Some(name) = item.get("name").and_then(Value::as_str) else {
                        return invalid(format!("body failed validation: {path}[].name should be defined."));
                    };
                    out.push(json!({ "id": random_prop_id(), "name": name, "color": "default" }));
                }
                Value::Array(out)
            }
            "people" => {
                let mut out = Vec::new();
                for item in array(raw)? {
                    let id = item.get("id").and_then(Value::as_str).and_then(parse_id);
                    match id.filter(|i| self.users.contains_key(i)) {
                        Some(i) => out.push(json!({ "object": "user", "id": i })),
                        None => {
                            return invalid(format!(
                                "body failed validation: {path}[].id should be a valid user id."
                            ));
                        }
                    }
                }
                Value::Array(out)
            }
            "relation" => {
                let mut out = Vec::new();
                for item in array(raw)? {
                    let id = item.get("id").and_then(Value::as_str).and_then(parse_id);
                    match id.filter(|i| self.pages.contains_key(i)) {
                        Some(i) => out.push(json!({ "id": i })),
                        None => {
                            return invalid(format!(
                                "body failed validation: {path}[].id should be a page the integration can access."
                            ));
                        }
                    }
                }
                Value::Array(out)
            }
            other => return invalid(format!("Property type {other} cannot be written.")),
        };
        Ok((def.name, value))
    }

    fn values(&mut self, ds_id: &str, props: &Value) -> Result<Vec<(String, Value)>, StoreError> {
        let Some(props) = props.as_object() else {
            return invalid("body failed validation: body.properties should be an object.");
        };
        let mut out = Vec::new();
        for (key, input) in props {
            out.push(self.value(ds_id, key, input)?);
        }
        Ok(out)
    }

    /// `POST /v1/pages`. <https://developers.notion.com/reference/post-page>
    pub fn create_page(&mut self, body: &Value, by: &str, now: DateTime<Utc>) -> Result<String, StoreError> {
        let parent = body.get("parent").cloned().unwrap_or(Value::Null);
        let parent = if let Some(ds) = parent.get("data_source_id").and_then(Value::as_str) {
            let ds = parse_id(ds)
                .ok_or_else(|| Invalid("body.parent.data_source_id should be a valid uuid".into()))?;
            let db = self.sources.get(&ds).ok_or_else(|| not_shared("data source", &ds))?.database.clone();
            Parent::DataSource { data_source: ds, database: db }
        } else if let Some(db) = parent.get("database_id").and_then(Value::as_str) {
            let db = parse_id(db)
                .ok_or_else(|| Invalid("body.parent.database_id should be a valid uuid".into()))?;
            let found = self.databases.get(&db).ok_or_else(|| not_shared("database", &db))?;
            // 2025-09-03: a database parent works only for a database with one data source.
            if found.sources.len() != 1 {
                return invalid(
                    "Databases with multiple data sources are not supported in this API version.",
                );
            }
            Parent::DataSource { data_source: found.sources[0].clone(), database: db }
        } else if let Some(page) = parent.get("page_id").and_then(Value::as_str) {
            let page =
                parse_id(page).ok_or_else(|| Invalid("body.parent.page_id should be a valid uuid".into()))?;
            if !self.pages.contains_key(&page) {
                return Err(not_shared("page", &page).into());
            }
            Parent::Page(page)
        } else {
            return invalid(
                "body failed validation: body.parent should be defined, instead was `undefined`.",
            );
        };
        let children = body.get("children").cloned().unwrap_or(json!([]));
        let blocks = parse_blocks(&children, "body.children")?;
        let props = body.get("properties").cloned().unwrap_or(json!({}));
        let values = match &parent {
            Parent::DataSource { data_source, .. } => self.values(&data_source.clone(), &props)?,
            _ => {
                let title = props.get("title").and_then(|t| t.get("title")).cloned().unwrap_or(json!([]));
                vec![("title".to_owned(), rich_text(&title, "body.properties.title.title")?)]
            }
        };
        let id = new_id();
        let seq = self.now_seq();
        let minute = to_minute(now);
        self.pages.insert(
            id.clone(),
            Page {
                id: id.clone(),
                parent,
                values: values.into_iter().collect(),
                created_time: minute,
                last_edited_time: minute,
                created_by: by.to_owned(),
                last_edited_by: by.to_owned(),
                in_trash: false,
                seq,
            },
        );
        self.insert_blocks(&id, true, blocks, by, now);
        Ok(id)
    }

    /// `PATCH /v1/pages/{id}`: properties and `in_trash` (or its older alias `archived`).
    /// <https://developers.notion.com/reference/patch-page>
    pub fn update_page(
        &mut self,
        id: &str,
        body: &Value,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let page = self.pages.get(id).ok_or_else(|| not_shared("page", id))?.clone();
        let trash = body.get("in_trash").or_else(|| body.get("archived"));
        if trash.is_some_and(|t| !t.is_null() && !t.is_boolean()) {
            return invalid("body failed validation: body.in_trash should be a boolean.");
        }
        if page.in_trash && trash.and_then(Value::as_bool) != Some(false) {
            return invalid(
                "Can't edit block that is archived. You must unarchive the block before editing.",
            );
        }
        let values = match (&page.parent, body.get("properties")) {
            (_, None) => Vec::new(),
            (Parent::DataSource { data_source, .. }, Some(props)) => {
                self.values(&data_source.clone(), props)?
            }
            (_, Some(props)) => match props.get("title").and_then(|t| t.get("title")) {
                Some(t) => vec![("title".to_owned(), rich_text(t, "body.properties.title.title")?)],
                None => Vec::new(),
            },
        };
        let Some(page) = self.pages.get_mut(id) else { return Err(not_shared("page", id).into()) };
        for (k, v) in values {
            page.values.insert(k, v);
        }
        if let Some(t) = trash.and_then(Value::as_bool) {
            page.in_trash = t;
        }
        page.last_edited_time = to_minute(now);
        page.last_edited_by = by.to_owned();
        Ok(())
    }

    pub fn render_page(&self, id: &str) -> Result<Value, StoreError> {
        let page = self.pages.get(id).ok_or_else(|| not_shared("page", id))?;
        let mut props = Map::new();
        match &page.parent {
            Parent::DataSource { data_source, .. } => {
                let defs = self.sources.get(data_source).map(|d| d.props.clone()).unwrap_or_default();
                for def in defs {
                    let value = page.values.get(&def.name).cloned().unwrap_or_else(|| empty_value(&def));
                    let mut v = json!({ "id": def.id, "type": def.kind });
                    v[def.kind.as_str()] = value;
                    if def.kind == "relation" {
                        v["has_more"] = json!(false);
                    }
                    props.insert(def.name.clone(), v);
                }
            }
            _ => {
                let title = page.values.get("title").cloned().unwrap_or(json!([]));
                props.insert("title".into(), json!({ "id": "title", "type": "title", "title": title }));
            }
        }
        Ok(json!({
            "object": "page",
            "id": page.id,
            "created_time": iso(page.created_time),
            "last_edited_time": iso(page.last_edited_time),
            "created_by": { "object": "user", "id": page.created_by },
            "last_edited_by": { "object": "user", "id": page.last_edited_by },
            "cover": null,
            "icon": null,
            "parent": page.parent.render(),
            "archived": page.in_trash,
            "in_trash": page.in_trash,
            "is_locked": false,
            "properties": props,
            "url": format!("https://www.notion.so/{}", page.id.replace('-', "")),
            "public_url": null,
        }))
    }

    /// `POST /v1/data_sources/{id}/query`: the data source's pages matching `filter` in `sorts`
    /// order (trashed pages only with `in_trash: true`), a page of `page_size` from `start_cursor`.
    /// <https://developers.notion.com/reference/query-a-data-source>
    pub fn query(&mut self, ds_id: &str, body: &Value) -> Result<Listing<String>, StoreError> {
        let ds = self.sources.get(ds_id).ok_or_else(|| not_shared("data source", ds_id))?.clone();
        let page_size = page_size(body.get("page_size"), "body.page_size")?;
        let trash =
            body.get("in_trash").or_else(|| body.get("archived")).and_then(Value::as_bool).unwrap_or(false);
        let filter = body.get("filter").filter(|f| !f.is_null());
        if let Some(f) = filter {
            check_filter(f, &ds, 0)?;
        }
        let sorts = parse_sorts(body.get("sorts"), &ds)?;
        let mut rows: Vec<(Vec<KeyPart>, &Page)> = self
            .pages
            .values()
            .filter(|p| matches!(&p.parent, Parent::DataSource { data_source, .. } if data_source == ds_id))
            .filter(|p| p.in_trash == trash)
            .filter(|p| filter.is_none_or(|f| matches(f, p, &ds)))
            .map(|p| (sort_key(p, &sorts), p))
            .collect();
        let order = |a: &(Vec<KeyPart>, &Page), b: &(Vec<KeyPart>, &Page)| {
            compare(&a.0, &a.1.seq, &a.1.id, &b.0, &b.1.seq, &b.1.id, &sorts)
        };
        let skipped = match body.get("start_cursor").filter(|c| !c.is_null()) {
            None => 0,
            Some(c) => {
                let pos = c
                    .as_str()
                    .and_then(|c| self.cursors.get(c))
                    .cloned()
                    .ok_or_else(|| Invalid(format!("The start_cursor provided is invalid: {c}")))?;
                let seq = self.pages.get(&pos.id).map(|p| p.seq).unwrap_or(0);
                let before = rows.len();
                rows.retain(|(k, p)| {
                    compare(k, &p.seq, &p.id, &pos.key, &seq, &pos.id, &sorts) != Ordering::Less
                });
                before - rows.len()
            }
        };
        // Only the next page (and the row after it, for the cursor) needs ordering: select those
        // instead of sorting a large data source on every request.
        let (wanted, remaining) = (page_size + 1, rows.len());
        if remaining > wanted {
            rows.select_nth_unstable_by(wanted - 1, order);
            rows.truncate(wanted);
        }
        rows.sort_by(order);
        // The cap counts the query's results from its first page: a cursor's position is how many
        // rows came before it.
        let incomplete = skipped + remaining > QUERY_RESULT_CAP;
        let room = QUERY_RESULT_CAP.saturating_sub(skipped);
        let end = page_size.min(remaining).min(room);
        let results: Vec<String> = rows[..end].iter().map(|(_, p)| p.id.clone()).collect();
        let next =
            rows.get(end).filter(|_| end < room).map(|(k, p)| CursorPos { key: k.clone(), id: p.id.clone() });
        let next_cursor = next.map(|pos| {
            let token = new_id();
            self.cursors.insert(token.clone(), pos);
            token
        });
        Ok(Listing { results, next_cursor, incomplete })
    }

    /// Appends blocks under a page or block (`PATCH /v1/blocks/{id}/children`, at most 100);
    /// the page's `last_edited_time` moves. <https://developers.notion.com/reference/patch-block-children>
    pub fn append(
        &mut self,
        parent: &str,
        body: &Value,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let is_page = match (self.pages.get(parent), self.blocks.get(parent)) {
            (Some(p), _) if p.in_trash => {
                return invalid(
                    "Can't edit block that is archived. You must unarchive the block before editing.",
                );
            }
            (Some(_), _) => true,
            (None, Some(_)) => false,
            (None, None) => return Err(not_shared("block", parent).into()),
        };
        let Some(children) = body.get("children") else {
            return invalid(
                "body failed validation: body.children should be defined, instead was `undefined`.",
            );
        };
        let blocks = parse_blocks(children, "body.children")?;
        let ids = self.insert_blocks(parent, is_page, blocks, by, now);
        let page_id = if is_page { Some(parent.to_owned()) } else { self.page_of_block(parent) };
        if let Some(page) = page_id.and_then(|p| self.pages.get_mut(&p)) {
            page.last_edited_time = to_minute(now);
            page.last_edited_by = by.to_owned();
        }
        Ok(ids)
    }

    fn page_of_block(&self, block: &str) -> Option<String> {
        let mut at = self.blocks.get(block)?;
        for _ in 0..64 {
            if at.parent_is_page {
                return Some(at.parent.clone());
            }
            at = self.blocks.get(&at.parent)?;
        }
        None
    }

    fn insert_blocks(
        &mut self,
        parent: &str,
        is_page: bool,
        blocks: Vec<(String, Value)>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        for (kind, content) in blocks {
            let id = new_id();
            self.blocks.insert(
                id.clone(),
                Block {
                    id: id.clone(),
                    parent: parent.to_owned(),
                    parent_is_page: is_page,
                    kind,
                    content,
                    created_time: to_minute(now),
                    created_by: by.to_owned(),
                },
            );
            self.children.entry(parent.to_owned()).or_default().push(id.clone());
            ids.push(id);
        }
        ids
    }

    /// `GET /v1/blocks/{id}/children`. <https://developers.notion.com/reference/get-block-children>
    pub fn children(
        &mut self,
        parent: &str,
        start_cursor: Option<&str>,
        size: Option<&str>,
    ) -> Result<Listing<String>, StoreError> {
        if !self.pages.contains_key(parent) && !self.blocks.contains_key(parent) {
            return Err(not_shared("block", parent).into());
        }
        let size = match size {
            None => MAX_PAGE_SIZE,
            Some(s) => page_size(
                Some(&s.parse::<i64>().map(Value::from).unwrap_or(Value::from(s))),
                "query.page_size",
            )?,
        };
        let all = self.children.get(parent).cloned().unwrap_or_default();
        let start = match start_cursor {
            None => 0,
            Some(c) => all
                .iter()
                .position(|id| Some(id.as_str()) == parse_id(c).as_deref())
                .ok_or_else(|| Invalid(format!("The start_cursor provided is invalid: {c}")))?,
        };
        let end = (start + size).min(all.len());
        Ok(Listing {
            results: all[start..end].to_vec(),
            next_cursor: all.get(end).cloned(),
            incomplete: false,
        })
    }

    pub fn render_block(&self, id: &str) -> Option<Value> {
        let b = self.blocks.get(id)?;
        let parent = if b.parent_is_page {
            json!({ "type": "page_id", "page_id": b.parent })
        } else {
            json!({ "type": "block_id", "block_id": b.parent })
        };
        let mut v = json!({
            "object": "block",
            "id": b.id,
            "parent": parent,
            "created_time": iso(b.created_time),
            "last_edited_time": iso(b.created_time),
            "created_by": { "object": "user", "id": b.created_by },
            "last_edited_by": { "object": "user", "id": b.created_by },
            "has_children": self.children.get(id).is_some_and(|c| !c.is_empty()),
            "archived": false,
            "in_trash": false,
            "type": b.kind,
        });
        v[b.kind.as_str()] = b.content.clone();
        Some(v)
    }
}

/// 404 `object_not_found`, in Notion's words.
pub fn not_shared(what: &str, id: &str) -> Missing {
    Missing(format!(
        "Could not find {what} with ID: {id}. Make sure the relevant pages and databases are shared with your integration."
    ))
}

fn page_size(v: Option<&Value>, path: &str) -> Result<usize, StoreError> {
    match v {
        None | Some(Value::Null) => Ok(MAX_PAGE_SIZE),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(n) if (1..=MAX_PAGE_SIZE as i64).contains(&n) => Ok(n as usize),
            Some(n) if n > MAX_PAGE_SIZE as i64 => invalid(format!(
                "body failed validation: {path} should be ≤ `{MAX_PAGE_SIZE}`, instead was `{n}`."
            )),
            _ => invalid(format!("body failed validation: {path} should be ≥ `1`, instead was `{n}`.")),
        },
        Some(other) => {
            invalid(format!("body failed validation: {path} should be a number, instead was `{other}`."))
        }
    }
}

/// Block types the fake stores (the text blocks; each holds `rich_text` and `color`).
const TEXT_BLOCKS: &[&str] = &[
    "paragraph",
    "heading_1",
    "heading_2",
    "heading_3",
    "bulleted_list_item",
    "numbered_list_item",
    "quote",
    "callout",
    "to_do",
    "toggle",
];

fn parse_blocks(children: &Value, path: &str) -> Result<Vec<(String, Value)>, StoreError> {
    let Some(items) = children.as_array() else {
        return invalid(format!("body failed validation: {path} should be an array."));
    };
    if items.len() > MAX_ARRAY {
        return invalid(format!(
            "body failed validation: {path}.length should be ≤ `{MAX_ARRAY}`, instead was `{}`.",
            items.len()
        ));
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let kind = item.get("type").and_then(Value::as_str).map(str::to_owned).or_else(|| {
            item.as_object().and_then(|o| {
                o.keys().find(|k| TEXT_BLOCKS.contains(&k.as_str()) || *k == "divider").cloned()
            })
        });
        let Some(kind) = kind else {
            return invalid(format!("body failed validation: {path}[{i}] should have a block type."));
        };
        if kind == "divider" {
            out.push((kind, json!({})));
            continue;
        }
        if !TEXT_BLOCKS.contains(&kind.as_str()) {
            return invalid(format!(
                "body failed validation: {path}[{i}].{kind} is not a supported block type."
            ));
        }
        let inner = item.get(&kind).cloned().unwrap_or(json!({}));
        let text = rich_text(
            inner.get("rich_text").unwrap_or(&json!([])),
            &format!("{path}[{i}].{kind}.rich_text"),
        )?;
        let mut content =
            json!({ "rich_text": text, "color": inner.get("color").cloned().unwrap_or(json!("default")) });
        if kind == "to_do" {
            content["checked"] = inner.get("checked").cloned().unwrap_or(json!(false));
        }
        out.push((kind, content));
    }
    Ok(out)
}

#[derive(Debug, Clone)]
enum SortBy {
    Timestamp(String),
    Property(PropDef),
}

fn parse_sorts(v: Option<&Value>, ds: &DataSource) -> Result<Vec<(SortBy, bool)>, StoreError> {
    let Some(list) = v.filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let Some(list) = list.as_array() else {
        return invalid("body failed validation: body.sorts should be an array.");
    };
    let mut out = Vec::new();
    for s in list {
        let desc = match s.get("direction").and_then(Value::as_str) {
            Some("ascending") => false,
            Some("descending") => true,
            _ => {
                return invalid(
                    "body failed validation: body.sorts[].direction should be `\"ascending\"` or `\"descending\"`.",
                );
            }
        };
        let by = if let Some(t) = s.get("timestamp").and_then(Value::as_str) {
            if !matches!(t, "created_time" | "last_edited_time") {
                return invalid(
                    "body failed validation: body.sorts[].timestamp should be `\"created_time\"` or `\"last_edited_time\"`.",
                );
            }
            SortBy::Timestamp(t.to_owned())
        } else if let Some(p) = s.get("property").and_then(Value::as_str) {
            SortBy::Property(
                ds.prop(p)
                    .cloned()
                    .ok_or_else(|| Invalid(format!("Could not find sort property with name or id: {p}")))?,
            )
        } else {
            return invalid("body failed validation: body.sorts[] should have a timestamp or a property.");
        };
        out.push((by, desc));
    }
    Ok(out)
}

fn value_key(v: Option<&Value>, kind: &str) -> KeyPart {
    match (kind, v) {
        (_, None | Some(Value::Null)) => KeyPart::Null,
        ("number", Some(Value::Number(n))) => KeyPart::Num(n.as_f64().unwrap_or(0.0)),
        ("title" | "rich_text", Some(t)) => KeyPart::Text(rich_text_plain(t)),
        ("select" | "status", Some(o)) => {
            KeyPart::Text(o.get("name").and_then(Value::as_str).unwrap_or_default().to_owned())
        }
        ("date", Some(d)) => d
            .get("start")
            .and_then(Value::as_str)
            .and_then(parse_date)
            .map(KeyPart::Time)
            .unwrap_or(KeyPart::Null),
        (_, Some(Value::String(s))) => KeyPart::Text(s.clone()),
        _ => KeyPart::Null,
    }
}

fn sort_key(p: &Page, sorts: &[(SortBy, bool)]) -> Vec<KeyPart> {
    sorts
        .iter()
        .map(|(by, _)| match by {
            SortBy::Timestamp(t) if t == "created_time" => KeyPart::Time(p.created_time),
            SortBy::Timestamp(_) => KeyPart::Time(p.last_edited_time),
            SortBy::Property(def) => value_key(p.values.get(&def.name), &def.kind),
        })
        .collect()
}

/// The listing order: the sorts, then creation order (Notion documents no order of ties; a
/// stable one keeps cursors meaningful).
fn compare(
    a: &[KeyPart],
    a_seq: &u64,
    a_id: &str,
    b: &[KeyPart],
    b_seq: &u64,
    b_id: &str,
    sorts: &[(SortBy, bool)],
) -> Ordering {
    for (i, (_, desc)) in sorts.iter().enumerate() {
        let (x, y) = (a.get(i).unwrap_or(&KeyPart::Null), b.get(i).unwrap_or(&KeyPart::Null));
        let o = cmp_part(x, y);
        if o != Ordering::Equal {
            return if *desc { o.reverse() } else { o };
        }
    }
    a_seq.cmp(b_seq).then_with(|| a_id.cmp(b_id))
}

const TIME_OPS: &[&str] =
    &["equals", "before", "after", "on_or_before", "on_or_after", "is_empty", "is_not_empty"];

/// Checks a filter's shape: compound filters nest at most two levels, and every condition names
/// a property of the data source with the filter type of its property type.
/// <https://developers.notion.com/reference/filter-data-source-entries>
fn check_filter(f: &Value, ds: &DataSource, depth: usize) -> Result<(), StoreError> {
    for op in ["and", "or"] {
        if let Some(list) = f.get(op) {
            if depth >= 2 {
                return invalid(
                    "body failed validation: body.filter compound filters may be nested at most two levels deep.",
                );
            }
            let Some(list) = list.as_array() else {
                return invalid(format!("body failed validation: body.filter.{op} should be an array."));
            };
            if list.len() > MAX_ARRAY {
                return invalid(format!(
                    "body failed validation: body.filter.{op}.length should be ≤ `{MAX_ARRAY}`."
                ));
            }
            for sub in list {
                check_filter(sub, ds, depth + 1)?;
            }
            return Ok(());
        }
    }
    if let Some(t) = f.get("timestamp").and_then(Value::as_str) {
        if !matches!(t, "created_time" | "last_edited_time") {
            return invalid(
                "body failed validation: body.filter.timestamp should be `\"created_time\"` or `\"last_edited_time\"`.",
            );
        }
        let cond = f
            .get(t)
            .and_then(Value::as_object)
            .ok_or_else(|| Invalid(format!("body failed validation: body.filter.{t} should be defined.")))?;
        for (op, v) in cond {
            if !TIME_OPS.contains(&op.as_str()) {
                return invalid(format!(
                    "body failed validation: body.filter.{t}.{op} is not a valid condition."
                ));
            }
            if !op.starts_with("is_") && v.as_str().and_then(parse_date).is_none() {
                return invalid(format!(
                    "body failed validation: body.filter.{t}.{op} should be a valid ISO 8601 date string, instead was `{v}`."
                ));
            }
        }
        return Ok(());
    }
    let Some(name) = f.get("property").and_then(Value::as_str) else {
        return invalid(
            "body failed validation: body.filter should have a property, a timestamp, `and` or `or`.",
        );
    };
    let def =
        ds.prop(name).ok_or_else(|| Invalid(format!("Could not find property with name or id: {name}")))?;
    let text_like = matches!(def.kind.as_str(), "title" | "rich_text" | "email" | "phone_number" | "url");
    let accepted = |key: &str| key == def.kind || (text_like && matches!(key, "rich_text" | "title"));
    let key = f.as_object().and_then(|o| o.keys().find(|k| *k != "property" && *k != "type").cloned());
    match key {
        Some(k) if accepted(&k) => Ok(()),
        Some(k) => invalid(format!(
            "body failed validation: body.filter.{k} does not match the type of property {name} ({}).",
            def.kind
        )),
        None => invalid(format!("body failed validation: body.filter.{} should be defined.", def.kind)),
    }
}

/// [`parse_date`] with the last answer kept: a query's filter compares every page with the same
/// few dates.
fn filter_date(s: &str) -> Option<DateTime<Utc>> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(String, Option<DateTime<Utc>>)>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match last.as_ref() {
            Some((k, v)) if k == s => *v,
            _ => {
                let v = parse_date(s);
                *last = Some((s.to_owned(), v));
                v
            }
        }
    })
}

fn time_matches(at: DateTime<Utc>, cond: &Value) -> bool {
    cond.as_object().is_some_and(|c| {
        c.iter().all(|(op, v)| {
            let Some(t) = v.as_str().and_then(filter_date) else { return op == "is_not_empty" };
            match op.as_str() {
                "equals" => at == t,
                "before" => at < t,
                "after" => at > t,
                "on_or_before" => at <= t,
                "on_or_after" => at >= t,
                _ => true,
            }
        })
    })
}

fn matches(f: &Value, p: &Page, ds: &DataSource) -> bool {
    if let Some(list) = f.get("and").and_then(Value::as_array) {
        return list.iter().all(|s| matches(s, p, ds));
    }
    if let Some(list) = f.get("or").and_then(Value::as_array) {
        return list.iter().any(|s| matches(s, p, ds));
    }
    if let Some(t) = f.get("timestamp").and_then(Value::as_str) {
        let at = if t == "created_time" { p.created_time } else { p.last_edited_time };
        return f.get(t).is_some_and(|c| time_matches(at, c));
    }
    let Some(def) = f.get("property").and_then(Value::as_str).and_then(|n| ds.prop(n)) else { return false };
    let Some((_, cond)) =
        f.as_object().and_then(|o| o.iter().find(|(k, _)| *k != "property" && *k != "type"))
    else {
        return false;
    };
    let value = p.values.get(&def.name);
    let text = match value {
        Some(v) if matches!(def.kind.as_str(), "title" | "rich_text") => Some(rich_text_plain(v)),
        Some(Value::String(s)) => Some(s.clone()),
        Some(o) if matches!(def.kind.as_str(), "select" | "status") => {
            o.get("name").and_then(Value::as_str).map(str::to_owned)
        }
        _ => None,
    };
    cond.as_object().is_some_and(|c| {
        c.iter().all(|(op, v)| match (op.as_str(), def.kind.as_str()) {
            ("is_empty", _) => {
                text.as_deref().is_none_or(str::is_empty)
                    && value.is_none_or(|v| v.is_null() || v.as_array().is_some_and(Vec::is_empty))
            }
            ("is_not_empty", _) => {
                !(text.as_deref().is_none_or(str::is_empty)
                    && value.is_none_or(|v| v.is_null() || v.as_array().is_some_and(Vec::is_empty)))
            }
            ("contains", "relation" | "people") => value.and_then(Value::as_array).is_some_and(|a| {
                a.iter()
                    .any(|r| r.get("id").and_then(Value::as_str) == v.as_str().and_then(parse_id).as_deref())
            }),
            ("equals", "number") => value.and_then(Value::as_f64) == v.as_f64(),
            ("greater_than", "number") => {
                value.and_then(Value::as_f64).zip(v.as_f64()).is_some_and(|(a, b)| a > b)
            }
            ("less_than", "number") => {
                value.and_then(Value::as_f64).zip(v.as_f64()).is_some_and(|(a, b)| a < b)
            }
            ("equals", "checkbox") => {
                value.and_then(Value::as_bool).unwrap_or(false) == v.as_bool().unwrap_or(false)
            }
            ("equals", _) => text.as_deref() == v.as_str(),
            ("does_not_equal", _) => text.as_deref() != v.as_str(),
            ("contains", _) => v.as_str().is_some_and(|s| {
                text.as_deref().unwrap_or_default().to_lowercase().contains(&s.to_lowercase())
            }),
            ("does_not_contain", _) => !v.as_str().is_some_and(|s| {
                text.as_deref().unwrap_or_default().to_lowercase().contains(&s.to_lowercase())
            }),
            ("starts_with", _) => {
                v.as_str().is_some_and(|s| text.as_deref().unwrap_or_default().starts_with(s))
            }
            ("ends_with", _) => v.as_str().is_some_and(|s| text.as_deref().unwrap_or_default().ends_with(s)),
            (_, "date") => value
                .and_then(|d| d.get("start"))
                .and_then(Value::as_str)
                .and_then(parse_date)
                .is_some_and(|at| time_matches(at, &json!({ op: v }))),
            _ => false,
        })
    })
}
