//! The fake My Drive's files: Drive's File resources with their permissions, a change sequence
//! (every create, edit, trash and removal takes the next position; a change-feed page token is a
//! position, as Drive's numeric tokens are), removed files kept as tombstones for the feed, and
//! deterministic seeding.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

/// The account's owner.
pub const OWNER: &str = "owner@acme.example";
pub const OWNER_NAME: &str = "Olive Owner";
/// The owner's permission id (Drive's are numeric strings for users).
pub const OWNER_PERMISSION_ID: &str = "04837264519283746152";
/// The id of the root folder of the stock My Drive (`'root'` is its alias).
pub const ROOT_ID: &str = "0AFakeRootFolderUk9PVA";
pub const FOLDER_MIME: &str = "application/vnd.google-apps.folder";

const OUTSIDE: &[&str] =
    &["jane.doe@globex.example", "raj@initech.example", "li@umbrella.example", "sam@hooli.example"];
const INTERNAL: &[&str] = &["ann@acme.example", "bob@acme.example"];
const COMPANIES: &[&str] = &["Globex", "Initech", "Umbrella", "Hooli", "Acme internal"];
const KINDS: &[(&str, &str)] = &[
    ("Proposal", "application/vnd.google-apps.document"),
    ("Pricing", "application/vnd.google-apps.spreadsheet"),
    ("Contract.pdf", "application/pdf"),
    ("Kickoff deck", "application/vnd.google-apps.presentation"),
];

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One permission on a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Perm {
    pub id: String,
    /// `user`, `group`, `domain` or `anyone`.
    pub kind: String,
    /// `owner`, `writer`, `commenter` or `reader`.
    pub role: String,
    pub email: Option<String>,
    pub domain: Option<String>,
}

impl Perm {
    pub fn owner() -> Self {
        Perm {
            id: OWNER_PERMISSION_ID.into(),
            kind: "user".into(),
            role: "owner".into(),
            email: Some(OWNER.into()),
            domain: None,
        }
    }

    fn render(&self) -> Value {
        let mut p =
            json!({ "kind": "drive#permission", "id": self.id, "type": self.kind, "role": self.role });
        if let Some(e) = &self.email {
            p["emailAddress"] = json!(e);
            p["displayName"] = json!(display_name(e));
            p["deleted"] = json!(false);
        }
        if let Some(d) = &self.domain {
            p["domain"] = json!(d);
            p["allowFileDiscovery"] = json!(false);
        }
        if self.kind == "anyone" {
            p["allowFileDiscovery"] = json!(false);
        }
        p
    }
}

fn display_name(email: &str) -> String {
    if email == OWNER {
        return OWNER_NAME.into();
    }
    let local = email.split('@').next().unwrap_or(email);
    local
        .split(['.', '_'])
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A permission id for an email: stable, numeric, as Drive's are.
pub fn permission_id(email: &str) -> String {
    let mut h: u64 = 1_469_598_103_934_665_603;
    for b in email.to_ascii_lowercase().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211);
    }
    format!("{h:020}")
}

#[derive(Debug, Clone)]
pub struct StoredFile {
    pub id: String,
    pub name: String,
    pub mime_type: String,
    pub parents: Vec<String>,
    pub description: Option<String>,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub trashed: bool,
    pub permissions: Vec<Perm>,
    /// Drive's `version`: bumped by every change.
    pub version: u64,
    /// Position of the last change in the feed.
    pub seq: u64,
    /// When the last change happened (the change's `time`).
    pub changed: DateTime<Utc>,
    /// Deleted for good: listed nowhere but in the change feed (`removed: true`).
    pub removed: bool,
}

impl StoredFile {
    pub fn is_folder(&self) -> bool {
        self.mime_type == FOLDER_MIME
    }

    fn web_view_link(&self) -> String {
        match self.mime_type.as_str() {
            FOLDER_MIME => format!("https://drive.google.com/drive/folders/{}", self.id),
            "application/vnd.google-apps.document" => {
                format!("https://docs.google.com/document/d/{}/edit?usp=drivesdk", self.id)
            }
            "application/vnd.google-apps.spreadsheet" => {
                format!("https://docs.google.com/spreadsheets/d/{}/edit?usp=drivesdk", self.id)
            }
            "application/vnd.google-apps.presentation" => {
                format!("https://docs.google.com/presentation/d/{}/edit?usp=drivesdk", self.id)
            }
            _ => format!("https://drive.google.com/file/d/{}/view?usp=drivesdk", self.id),
        }
    }

    /// The File resource with every property the fake models (`fields=*`).
    pub fn render(&self) -> Value {
        let owner = json!({
            "kind": "drive#user",
            "displayName": OWNER_NAME,
            "emailAddress": OWNER,
            "me": true,
            "permissionId": OWNER_PERMISSION_ID,
        });
        let mut f = json!({
            "kind": "drive#file",
            "id": self.id,
            "name": self.name,
            "mimeType": self.mime_type,
            "starred": false,
            "trashed": self.trashed,
            "explicitlyTrashed": self.trashed,
            "spaces": ["drive"],
            "version": self.version.to_string(),
            "webViewLink": self.web_view_link(),
            "createdTime": rfc3339(self.created),
            "modifiedTime": rfc3339(self.modified),
            "modifiedByMe": true,
            "modifiedByMeTime": rfc3339(self.modified),
            "owners": [owner.clone()],
            "lastModifyingUser": owner,
            "shared": self.permissions.iter().any(|p| p.role != "owner"),
            "ownedByMe": true,
            "permissions": self.permissions.iter().map(Perm::render).collect::<Vec<_>>(),
            "permissionIds": self.permissions.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        });
        if !self.parents.is_empty() {
            f["parents"] = json!(self.parents);
        }
        if let Some(d) = &self.description {
            f["description"] = json!(d);
        }
        if self.trashed {
            f["trashedTime"] = json!(rfc3339(self.changed));
        }
        f
    }
}

/// What a new file is made of.
#[derive(Debug, Clone, Default)]
pub struct NewFile {
    pub name: String,
    pub mime_type: Option<String>,
    pub parent: Option<String>,
    pub description: Option<String>,
    /// (email, role) shared with at creation.
    pub shared_with: Vec<(String, String)>,
}

/// Why a store operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    NotFound(String),
    Invalid(String),
}

#[derive(Debug)]
pub struct Store {
    files: BTreeMap<String, StoredFile>,
    /// The last position handed out.
    pub seq: u64,
    next_id: u64,
    pub root_created: DateTime<Utc>,
}

impl Store {
    /// A stock My Drive (the root folder only), then `n` seeded files and folders: a folder per
    /// company, files named after the company, some shared with people outside the owner's domain.
    pub fn seeded(n: usize, now: DateTime<Utc>) -> Self {
        let created = now - Duration::days(30);
        let mut store = Store { files: BTreeMap::new(), seq: 0, next_id: 0, root_created: created };
        if n == 0 {
            return store;
        }
        let folders: Vec<String> = COMPANIES
            .iter()
            .take(n.min(COMPANIES.len()))
            .map(|c| {
                let f =
                    NewFile { name: (*c).into(), mime_type: Some(FOLDER_MIME.into()), ..NewFile::default() };
                store.create(f, created).map(|s| s.id.clone()).unwrap_or_default()
            })
            .collect();
        for i in folders.len()..n {
            let company = i % COMPANIES.len();
            let (kind, mime) = KINDS[i % KINDS.len()];
            let mut shared_with = vec![(INTERNAL[i % INTERNAL.len()].to_owned(), "writer".to_owned())];
            if company < OUTSIDE.len() && i % 3 != 2 {
                shared_with.push((OUTSIDE[company].to_owned(), "reader".to_owned()));
            }
            let f = NewFile {
                name: format!("{} {kind} {i}", COMPANIES[company]),
                mime_type: Some(mime.into()),
                parent: folders.get(company).cloned(),
                description: None,
                shared_with,
            };
            let _ = store.create(f, created + Duration::seconds(i as i64));
        }
        store
    }

    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("1sbFake{:026}", self.next_id)
    }

    /// The file (not removed); `root` and the root id give the root folder.
    pub fn get(&self, id: &str) -> Option<StoredFile> {
        if id == "root" || id == ROOT_ID {
            return Some(self.root());
        }
        self.files.get(id).filter(|f| !f.removed).cloned()
    }

    pub fn root(&self) -> StoredFile {
        StoredFile {
            id: ROOT_ID.into(),
            name: "My Drive".into(),
            mime_type: FOLDER_MIME.into(),
            parents: Vec::new(),
            description: None,
            created: self.root_created,
            modified: self.root_created,
            trashed: false,
            permissions: vec![Perm::owner()],
            version: 1,
            seq: 0,
            changed: self.root_created,
            removed: false,
        }
    }

    /// Live files (trashed ones included, the root folder not: Drive does not list it).
    pub fn live(&self) -> impl Iterator<Item = &StoredFile> {
        self.files.values().filter(|f| !f.removed)
    }

    pub fn live_count(&self) -> usize {
        self.live().count()
    }

    fn parent_ok(&self, id: &str) -> bool {
        id == ROOT_ID || self.files.get(id).is_some_and(|f| !f.removed && f.is_folder())
    }

    pub fn create(&mut self, new: NewFile, now: DateTime<Utc>) -> Result<&StoredFile, StoreError> {
        let parent = match new.parent.as_deref() {
            None | Some("root") => ROOT_ID.to_owned(),
            Some(p) if self.parent_ok(p) => p.to_owned(),
            Some(p) => return Err(StoreError::NotFound(p.to_owned())),
        };
        let mut permissions = vec![Perm::owner()];
        for (email, role) in &new.shared_with {
            permissions.push(share_perm(email, role)?);
        }
        let id = self.fresh_id();
        self.seq += 1;
        let file = StoredFile {
            id: id.clone(),
            name: if new.name.is_empty() { "Untitled".into() } else { new.name },
            mime_type: new.mime_type.unwrap_or_else(|| "application/octet-stream".into()),
            parents: vec![parent],
            description: new.description,
            created: now,
            modified: now,
            trashed: false,
            permissions,
            version: 1,
            seq: self.seq,
            changed: now,
            removed: false,
        };
        self.files.insert(id.clone(), file);
        self.files.get(&id).ok_or(StoreError::NotFound(id))
    }

    /// Applies `edit` to a live file as a change (new position, version, modified time).
    pub fn change(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
        edit: impl FnOnce(&mut StoredFile) -> Result<(), StoreError>,
    ) -> Result<StoredFile, StoreError> {
        let seq = self.seq + 1;
        let file = self.files.get_mut(id).filter(|f| !f.removed).ok_or(StoreError::NotFound(id.into()))?;
        edit(file)?;
        file.seq = seq;
        file.version += 1;
        file.changed = now.max(file.changed);
        self.seq = seq;
        Ok(file.clone())
    }

    pub fn rename(&mut self, id: &str, name: &str, now: DateTime<Utc>) -> Result<StoredFile, StoreError> {
        self.change(id, now, |f| {
            f.name = name.to_owned();
            f.modified = now.max(f.modified);
            Ok(())
        })
    }

    pub fn set_trashed(
        &mut self,
        id: &str,
        trashed: bool,
        now: DateTime<Utc>,
    ) -> Result<StoredFile, StoreError> {
        self.change(id, now, |f| {
            f.trashed = trashed;
            Ok(())
        })
    }

    pub fn share(
        &mut self,
        id: &str,
        email: &str,
        role: &str,
        now: DateTime<Utc>,
    ) -> Result<StoredFile, StoreError> {
        let perm = share_perm(email, role)?;
        self.change(id, now, |f| {
            f.permissions.retain(|p| p.id != perm.id);
            f.permissions.push(perm);
            Ok(())
        })
    }

    pub fn unshare(&mut self, id: &str, email: &str, now: DateTime<Utc>) -> Result<StoredFile, StoreError> {
        let pid = permission_id(email);
        self.change(id, now, |f| {
            f.permissions.retain(|p| p.id != pid || p.role == "owner");
            Ok(())
        })
    }

    /// Deletes a file for good (and a folder's descendants, as Drive does).
    pub fn remove(&mut self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut doomed = vec![id.to_owned()];
        let mut i = 0;
        while i < doomed.len() {
            let parent = doomed[i].clone();
            doomed.extend(self.live().filter(|f| f.parents.contains(&parent)).map(|f| f.id.clone()));
            i += 1;
        }
        self.change(id, now, |_| Ok(()))?;
        for d in doomed {
            self.seq += 1;
            let seq = self.seq;
            if let Some(f) = self.files.get_mut(&d) {
                f.removed = true;
                f.seq = seq;
                f.changed = now;
            }
        }
        Ok(())
    }

    /// Live files in id order after `after` (keyset paging).
    pub fn list_after<'a>(
        &'a self,
        after: Option<&'a str>,
        keep: impl Fn(&StoredFile) -> bool + 'a,
    ) -> impl Iterator<Item = &'a StoredFile> + 'a {
        self.live().filter(move |f| after.is_none_or(|a| f.id.as_str() > a)).filter(move |f| keep(f))
    }

    /// Files (removed ones included) whose last change is at `from` or later, in change order.
    pub fn changes_from(&self, from: u64) -> Vec<&StoredFile> {
        let mut out: Vec<&StoredFile> = self.files.values().filter(|f| f.seq >= from).collect();
        out.sort_by_key(|f| f.seq);
        out
    }
}

fn share_perm(email: &str, role: &str) -> Result<Perm, StoreError> {
    if !email.contains('@') {
        return Err(StoreError::Invalid(format!("not an email address: {email}")));
    }
    if !matches!(role, "writer" | "commenter" | "reader") {
        return Err(StoreError::Invalid(format!("role must be writer, commenter or reader: {role}")));
    }
    Ok(Perm {
        id: permission_id(email),
        kind: "user".into(),
        role: role.into(),
        email: Some(email.to_ascii_lowercase()),
        domain: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_takes_the_next_position_and_a_removal_keeps_a_tombstone_for_the_feed() {
        let now = Utc::now();
        let mut s = Store::seeded(0, now);
        let a = s.create(NewFile { name: "a".into(), ..NewFile::default() }, now).expect("create").id.clone();
        let b = s.create(NewFile { name: "b".into(), ..NewFile::default() }, now).expect("create").id.clone();
        let start = s.seq + 1;
        s.rename(&a, "a2", now).expect("rename");
        s.remove(&b, now).expect("remove");
        let ids: Vec<(&str, bool)> =
            s.changes_from(start).iter().map(|f| (f.id.as_str(), f.removed)).collect();
        assert_eq!(ids, vec![(a.as_str(), false), (b.as_str(), true)]);
        assert!(s.get(&b).is_none());
        assert_eq!(s.live_count(), 1);
        assert_eq!(s.get("root").map(|r| r.id), Some(ROOT_ID.to_owned()));
    }
}
