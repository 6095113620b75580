//! The fake mailbox: labels (a new account's system labels, then the user's own), messages parsed
//! from the RFC 822 text `messages.insert` takes, and the history log that `history.list` reads
//! (ids that grow with gaps, records of added and deleted messages and of label changes, and a
//! horizon before which history is gone).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

/// The mailbox owner's address (`users.getProfile`, `userId` besides `me`).
pub const OWNER: &str = "owner@acme.example";

/// The system labels of a new Gmail account, as `labels.list` returns them
/// (<https://developers.google.com/gmail/api/guides/labels#manage_labels_on_messages_threads>).
pub const SYSTEM_LABELS: &[&str] = &[
    "CHAT",
    "SENT",
    "INBOX",
    "IMPORTANT",
    "TRASH",
    "DRAFT",
    "SPAM",
    "CATEGORY_FORUMS",
    "CATEGORY_UPDATES",
    "CATEGORY_PERSONAL",
    "CATEGORY_PROMOTIONS",
    "CATEGORY_SOCIAL",
    "STARRED",
    "UNREAD",
];

/// Labels a client may not add or remove: Gmail sets them itself
/// (<https://developers.google.com/gmail/api/guides/labels>: "DRAFT and SENT ... cannot be applied").
pub const NOT_APPLICABLE: &[&str] = &["DRAFT", "SENT", "CHAT"];

/// The first history id of a new mailbox.
const FIRST_HISTORY_ID: u64 = 1_000;

/// A label of the mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub id: String,
    pub name: String,
    pub system: bool,
    pub message_list_visibility: Option<String>,
    pub label_list_visibility: Option<String>,
}

/// One message: its headers and text as inserted, its labels, and when it last changed.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub thread_id: String,
    pub labels: BTreeSet<String>,
    /// Epoch milliseconds (`internalDate`).
    pub internal_date: i64,
    /// The history id of the last change to this message.
    pub history_id: u64,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub raw: Vec<u8>,
}

impl Message {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// About the first 200 characters of the text, on one line (Gmail's `snippet`).
    pub fn snippet(&self) -> String {
        let flat: String = self.body.split_whitespace().collect::<Vec<_>>().join(" ");
        flat.chars().take(200).collect()
    }

    pub fn size_estimate(&self) -> usize {
        self.raw.len()
    }

    fn base(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("threadId".into(), json!(self.thread_id));
        if !self.labels.is_empty() {
            m.insert("labelIds".into(), json!(self.labels.iter().collect::<Vec<_>>()));
        }
        m
    }

    /// The message as `history.list` names it: id, thread and labels.
    pub fn reference(&self) -> Value {
        Value::Object(self.base())
    }

    /// The Message resource in `format` (`minimal`, `metadata`, `full`, `raw`); `metadata` keeps
    /// only the headers named in `metadata_headers` when there are any.
    pub fn render(&self, format: Format, metadata_headers: &[String]) -> Value {
        let mut m = self.base();
        m.insert("snippet".into(), json!(self.snippet()));
        m.insert("sizeEstimate".into(), json!(self.size_estimate()));
        m.insert("historyId".into(), json!(self.history_id.to_string()));
        m.insert("internalDate".into(), json!(self.internal_date.to_string()));
        let headers = |keep: &dyn Fn(&str) -> bool| -> Vec<Value> {
            self.headers
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| json!({ "name": k, "value": v }))
                .collect()
        };
        match format {
            Format::Minimal => {}
            Format::Metadata => {
                let wanted = |k: &str| {
                    metadata_headers.is_empty() || metadata_headers.iter().any(|w| w.eq_ignore_ascii_case(k))
                };
                m.insert(
                    "payload".into(),
                    json!({ "partId": "", "mimeType": "text/plain", "filename": "", "headers": headers(&wanted), "body": { "size": self.body.len() } }),
                );
            }
            Format::Full => {
                m.insert(
                    "payload".into(),
                    json!({
                        "partId": "",
                        "mimeType": "text/plain",
                        "filename": "",
                        "headers": headers(&|_| true),
                        "body": { "size": self.body.len(), "data": URL_SAFE.encode(self.body.as_bytes()) },
                    }),
                );
            }
            Format::Raw => {
                m.insert("raw".into(), json!(URL_SAFE.encode(&self.raw)));
            }
        }
        Value::Object(m)
    }
}

/// `format` of `messages.get` and `threads.get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Minimal,
    Metadata,
    Full,
    Raw,
}

impl Format {
    pub fn parse(v: &str) -> Option<Format> {
        match v {
            "minimal" => Some(Format::Minimal),
            "metadata" => Some(Format::Metadata),
            "full" => Some(Format::Full),
            "raw" => Some(Format::Raw),
            _ => None,
        }
    }
}

/// What one history record says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added,
    Deleted,
    LabelsAdded(Vec<String>),
    LabelsRemoved(Vec<String>),
}

impl Change {
    /// The `historyTypes` value that selects it.
    pub fn history_type(&self) -> &'static str {
        match self {
            Change::Added => "messageAdded",
            Change::Deleted => "messageDeleted",
            Change::LabelsAdded(_) => "labelAdded",
            Change::LabelsRemoved(_) => "labelRemoved",
        }
    }
}

/// One history record: one change to one message.
#[derive(Debug, Clone)]
pub struct HistoryRecord {
    pub id: u64,
    /// The message as it was right after the change (its labels then).
    pub message: Value,
    pub labels_after: BTreeSet<String>,
    pub change: Change,
}

impl HistoryRecord {
    /// The History resource.
    pub fn render(&self) -> Value {
        let mut h = json!({ "id": self.id.to_string(), "messages": [self.message.clone()] });
        match &self.change {
            Change::Added => h["messagesAdded"] = json!([{ "message": self.message }]),
            Change::Deleted => h["messagesDeleted"] = json!([{ "message": self.message }]),
            Change::LabelsAdded(l) => h["labelsAdded"] = json!([{ "message": self.message, "labelIds": l }]),
            Change::LabelsRemoved(l) => {
                h["labelsRemoved"] = json!([{ "message": self.message, "labelIds": l }])
            }
        }
        h
    }
}

/// Why a mailbox change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailError {
    NotFound,
    /// 400 `invalidArgument` with this message.
    Invalid(String),
    /// 409 `aborted`: a label name taken.
    Conflict(String),
}

/// The mailbox.
#[derive(Debug)]
pub struct Mailbox {
    pub labels: Vec<Label>,
    pub messages: BTreeMap<String, Message>,
    pub history: Vec<HistoryRecord>,
    /// The mailbox's current history id.
    pub history_id: u64,
    /// History records with ids below this are gone: a `startHistoryId` below it answers 404.
    pub horizon: u64,
    next_message: u64,
    next_label: u64,
    /// Gap between history ids (Google's grow "with random gaps"; the fake's are deterministic).
    gaps: u64,
}

impl Default for Mailbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Mailbox {
    /// A new account's mailbox: the system labels, no message.
    pub fn new() -> Self {
        let labels = SYSTEM_LABELS
            .iter()
            .map(|id| Label {
                id: (*id).to_owned(),
                name: (*id).to_owned(),
                system: true,
                message_list_visibility: None,
                label_list_visibility: None,
            })
            .collect();
        Self {
            labels,
            messages: BTreeMap::new(),
            history: Vec::new(),
            history_id: FIRST_HISTORY_ID,
            horizon: FIRST_HISTORY_ID,
            next_message: 0x18c0_0000_0000_0000,
            next_label: 1,
            gaps: 0,
        }
    }

    fn bump(&mut self) -> u64 {
        self.gaps += 1;
        self.history_id += 1 + self.gaps % 3;
        self.history_id
    }

    pub fn label(&self, id: &str) -> Option<&Label> {
        self.labels.iter().find(|l| l.id == id)
    }

    /// Creates a user label; `Err` with Google's message when the name is taken (system names
    /// included, case-insensitive).
    pub fn create_label(
        &mut self,
        name: &str,
        message_list_visibility: Option<String>,
        label_list_visibility: Option<String>,
    ) -> Result<Label, MailError> {
        let trimmed = name.trim();
        if trimmed.is_empty() {
            return Err(MailError::Invalid("Invalid label name".into()));
        }
        if self.labels.iter().any(|l| l.name.eq_ignore_ascii_case(trimmed)) {
            // 409 `aborted` (Google's answer as clients report it, e.g.
            // <https://github.com/gauteh/lieer/issues/207>).
            return Err(MailError::Conflict("Label name exists or conflicts".into()));
        }
        let label = Label {
            id: format!("Label_{}", self.next_label),
            name: trimmed.to_owned(),
            system: false,
            message_list_visibility: message_list_visibility.or_else(|| Some("show".into())),
            label_list_visibility: label_list_visibility.or_else(|| Some("labelShow".into())),
        };
        self.next_label += 1;
        self.labels.push(label.clone());
        Ok(label)
    }

    /// Inserts a message from its RFC 822 text (`messages.insert`); `thread_id` joins a thread
    /// that exists, else the message starts its own.
    pub fn insert(
        &mut self,
        raw: Vec<u8>,
        label_ids: &[String],
        thread_id: Option<&str>,
        now_ms: i64,
    ) -> Result<Message, MailError> {
        for l in label_ids {
            if self.label(l).is_none() {
                return Err(MailError::Invalid(format!("Invalid label: {l}")));
            }
        }
        let (headers, body) = parse_rfc822(&raw)?;
        self.next_message += 0x1_3579;
        let id = format!("{:x}", self.next_message);
        let thread_id = thread_id
            .filter(|t| self.messages.values().any(|m| m.thread_id == *t))
            .map(str::to_owned)
            .unwrap_or_else(|| id.clone());
        let history_id = self.bump();
        let message = Message {
            id: id.clone(),
            thread_id,
            labels: label_ids.iter().cloned().collect(),
            internal_date: now_ms,
            history_id,
            headers,
            body,
            raw,
        };
        self.record(history_id, &message, Change::Added);
        self.messages.insert(id, message.clone());
        Ok(message)
    }

    fn record(&mut self, id: u64, message: &Message, change: Change) {
        self.history.push(HistoryRecord {
            id,
            message: message.reference(),
            labels_after: message.labels.clone(),
            change,
        });
    }

    /// Adds and removes labels; one history record per direction that changed something, and no
    /// history at all when nothing changed.
    pub fn modify(&mut self, id: &str, add: &[String], remove: &[String]) -> Result<Message, MailError> {
        for l in add.iter().chain(remove) {
            if self.label(l).is_none() {
                return Err(MailError::Invalid(format!("Invalid label: {l}")));
            }
        }
        if let Some(l) = add.iter().find(|l| NOT_APPLICABLE.contains(&l.as_str())) {
            return Err(MailError::Invalid(format!("Invalid label: {l}")));
        }
        let Some(current) = self.messages.get(id) else { return Err(MailError::NotFound) };
        let added: Vec<String> = add.iter().filter(|l| !current.labels.contains(*l)).cloned().collect();
        let removed: Vec<String> =
            remove.iter().filter(|l| current.labels.contains(*l) && !add.contains(l)).cloned().collect();
        let mut added = dedup(added);
        let removed = dedup(removed);
        added.retain(|l| !removed.contains(l));
        if !added.is_empty() {
            let h = self.bump();
            let Some(m) = self.messages.get_mut(id) else { return Err(MailError::NotFound) };
            m.labels.extend(added.iter().cloned());
            m.history_id = h;
            let snapshot = m.clone();
            self.record(h, &snapshot, Change::LabelsAdded(added));
        }
        if !removed.is_empty() {
            let h = self.bump();
            let Some(m) = self.messages.get_mut(id) else { return Err(MailError::NotFound) };
            for l in &removed {
                m.labels.remove(l);
            }
            m.history_id = h;
            let snapshot = m.clone();
            self.record(h, &snapshot, Change::LabelsRemoved(removed));
        }
        self.messages.get(id).cloned().ok_or(MailError::NotFound)
    }

    /// Deletes a message for good (`messages.delete`, or a person emptying the trash).
    pub fn delete(&mut self, id: &str) -> Result<(), MailError> {
        let Some(message) = self.messages.remove(id) else { return Err(MailError::NotFound) };
        let h = self.bump();
        self.record(h, &message, Change::Deleted);
        Ok(())
    }

    /// Forgets every history record so far: a `startHistoryId` from before now answers 404, and
    /// the mailbox's history id moves on (what `getProfile` says from now on is valid).
    pub fn expire_history(&mut self) {
        self.history.clear();
        self.horizon = self.bump();
    }

    /// Messages in `messages.list` order (newest first, then by id descending).
    pub fn listed(&self) -> Vec<&Message> {
        let mut all: Vec<&Message> = self.messages.values().collect();
        all.sort_by(|a, b| b.internal_date.cmp(&a.internal_date).then_with(|| b.id.cmp(&a.id)));
        all
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    v.retain(|x| seen.insert(x.clone()));
    v
}

/// Decodes the `raw` of a request body: base64url as Google documents, or standard base64.
pub fn decode_raw(raw: &str) -> Option<Vec<u8>> {
    let trimmed = raw.trim();
    URL_SAFE
        .decode(trimmed)
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed.trim_end_matches('=')))
        .or_else(|_| STANDARD.decode(trimmed))
        .ok()
}

/// Splits an RFC 822 message into its headers (unfolded) and its text.
pub fn parse_rfc822(raw: &[u8]) -> Result<(Vec<(String, String)>, String), MailError> {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let (head, body) = match text.split_once("\n\n") {
        Some((h, b)) => (h.to_owned(), b.to_owned()),
        None => (text.clone(), String::new()),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(MailError::Invalid("Invalid RFC 822 message: a header line has no ':'".into()));
        };
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    if headers.is_empty() {
        return Err(MailError::Invalid("Invalid RFC 822 message: no headers".into()));
    }
    Ok((headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(subject: &str) -> Vec<u8> {
        format!("From: Jane <jane@globex.example>\r\nTo: owner@acme.example\r\nSubject: {subject}\r\n\r\nHello there").into_bytes()
    }

    #[test]
    fn history_ids_grow_with_gaps_and_only_real_label_changes_are_recorded() {
        let mut mb = Mailbox::new();
        let m = mb.insert(raw("Hi"), &["INBOX".into(), "UNREAD".into()], None, 1).unwrap();
        let after_insert = mb.history_id;
        mb.modify(&m.id, &["INBOX".into()], &[]).unwrap();
        assert_eq!(mb.history_id, after_insert, "adding a label it has changes nothing");
        mb.modify(&m.id, &["STARRED".into()], &["UNREAD".into()]).unwrap();
        assert_eq!(mb.history.len(), 3);
        let ids: Vec<u64> = mb.history.iter().map(|h| h.id).collect();
        assert!(ids.windows(2).all(|w| w[1] > w[0]));
        assert!(ids.windows(2).any(|w| w[1] > w[0] + 1), "gaps between ids: {ids:?}");
        assert_eq!(mb.history[2].change, Change::LabelsRemoved(vec!["UNREAD".into()]));
    }

    #[test]
    fn unknown_and_system_set_labels_are_refused() {
        let mut mb = Mailbox::new();
        assert!(matches!(mb.insert(raw("x"), &["Nope".into()], None, 1), Err(MailError::Invalid(_))));
        let m = mb.insert(raw("x"), &[], None, 1).unwrap();
        assert!(matches!(mb.modify(&m.id, &["SENT".into()], &[]), Err(MailError::Invalid(_))));
        assert_eq!(mb.modify("nope", &[], &[]).unwrap_err(), MailError::NotFound);
    }

    #[test]
    fn folded_headers_unfold_and_a_message_without_headers_is_refused() {
        let (h, body) = parse_rfc822(b"Subject: a\r\n  long one\r\nTo: x@y\r\n\r\nbody").unwrap();
        assert_eq!(h[0], ("Subject".into(), "a long one".into()));
        assert_eq!(body, "body");
        assert!(parse_rfc822(b"no header here").is_err());
    }
}
