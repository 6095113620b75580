//! Partial responses: the `fields` parameter (<https://developers.google.com/workspace/drive/api/guides/fields-parameter>).
//! `a,b(c,d),e/f` and `*` select properties; a name the resource's schema (the Drive discovery
//! document) does not have is refused as Drive refuses it: 400 `invalidParameter`, "Invalid field
//! selection NAME", location `fields`.

use serde_json::{Map, Value};

/// Which properties of a resource to return.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    All,
    Some(Vec<(String, Selection)>),
}

/// The resources the fake returns, with their properties from the discovery document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    File,
    FileList,
    Permission,
    PermissionList,
    User,
    Change,
    ChangeList,
    StartPageToken,
    About,
    /// Leaf values and objects the fake does not model further.
    Opaque,
}

const FILE: &[&str] = &[
    "appProperties",
    "capabilities",
    "clientEncryptionDetails",
    "contentHints",
    "contentRestrictions",
    "copyRequiresWriterPermission",
    "createdTime",
    "description",
    "downloadRestrictions",
    "driveId",
    "explicitlyTrashed",
    "exportLinks",
    "fileExtension",
    "folderColorRgb",
    "fullFileExtension",
    "hasAugmentedPermissions",
    "hasThumbnail",
    "headRevisionId",
    "iconLink",
    "id",
    "imageMediaMetadata",
    "inheritedPermissionsDisabled",
    "isAppAuthorized",
    "kind",
    "labelInfo",
    "lastModifyingUser",
    "linkShareMetadata",
    "md5Checksum",
    "mimeType",
    "modifiedByMe",
    "modifiedByMeTime",
    "modifiedTime",
    "name",
    "originalFilename",
    "ownedByMe",
    "owners",
    "parents",
    "permissionIds",
    "permissions",
    "properties",
    "quotaBytesUsed",
    "resourceKey",
    "sha1Checksum",
    "sha256Checksum",
    "shared",
    "sharedWithMeTime",
    "sharingUser",
    "shortcutDetails",
    "size",
    "spaces",
    "starred",
    "teamDriveId",
    "thumbnailLink",
    "thumbnailVersion",
    "trashed",
    "trashedTime",
    "trashingUser",
    "version",
    "videoMediaMetadata",
    "viewedByMe",
    "viewedByMeTime",
    "viewersCanCopyContent",
    "webContentLink",
    "webViewLink",
    "writersCanShare",
];
const PERMISSION: &[&str] = &[
    "allowFileDiscovery",
    "deleted",
    "displayName",
    "domain",
    "emailAddress",
    "expirationTime",
    "id",
    "inheritedPermissionsDisabled",
    "kind",
    "pendingOwner",
    "permissionDetails",
    "photoLink",
    "role",
    "teamDrivePermissionDetails",
    "type",
    "view",
];
const USER: &[&str] = &["displayName", "emailAddress", "kind", "me", "permissionId", "photoLink"];
const CHANGE: &[&str] = &[
    "changeType",
    "drive",
    "driveId",
    "file",
    "fileId",
    "kind",
    "removed",
    "teamDrive",
    "teamDriveId",
    "time",
    "type",
];
const ABOUT: &[&str] = &[
    "appInstalled",
    "canCreateDrives",
    "canCreateTeamDrives",
    "driveThemes",
    "exportFormats",
    "folderColorPalette",
    "importFormats",
    "kind",
    "maxImportSizes",
    "maxUploadSize",
    "storageQuota",
    "teamDriveThemes",
    "user",
];

impl Schema {
    /// The schema of property `name`, or `None` when the schema has no such property.
    fn child(self, name: &str) -> Option<Schema> {
        let (names, child): (&[&str], Schema) = match (self, name) {
            (Schema::FileList, "files") | (Schema::Change, "file") => return Some(Schema::File),
            (Schema::FileList, "kind" | "nextPageToken" | "incompleteSearch") => return Some(Schema::Opaque),
            (Schema::FileList, _) => return None,
            (Schema::ChangeList, "changes") => return Some(Schema::Change),
            (Schema::ChangeList, "kind" | "nextPageToken" | "newStartPageToken") => {
                return Some(Schema::Opaque);
            }
            (Schema::ChangeList, _) => return None,
            (Schema::PermissionList, "permissions") => return Some(Schema::Permission),
            (Schema::PermissionList, "kind" | "nextPageToken") => return Some(Schema::Opaque),
            (Schema::PermissionList, _) => return None,
            (Schema::StartPageToken, "kind" | "startPageToken") => return Some(Schema::Opaque),
            (Schema::StartPageToken, _) => return None,
            (Schema::File, "owners" | "lastModifyingUser" | "sharingUser" | "trashingUser") => {
                return Some(Schema::User);
            }
            (Schema::File, "permissions") => return Some(Schema::Permission),
            (Schema::About, "user") => return Some(Schema::User),
            (Schema::File, _) => (FILE, Schema::Opaque),
            (Schema::Permission, _) => (PERMISSION, Schema::Opaque),
            (Schema::User, _) => (USER, Schema::Opaque),
            (Schema::Change, _) => (CHANGE, Schema::Opaque),
            (Schema::About, _) => (ABOUT, Schema::Opaque),
            (Schema::Opaque, _) => return Some(Schema::Opaque),
        };
        names.contains(&name).then_some(child)
    }
}

/// Parses `fields` against `schema`; `Err(name)` names the first property it does not have (or
/// the text, when it does not parse).
pub fn parse(fields: &str, schema: Schema) -> Result<Selection, String> {
    let chars: Vec<char> = fields.chars().filter(|c| !c.is_whitespace()).collect();
    let mut pos = 0;
    let sel = list(&chars, &mut pos, schema)?;
    if pos != chars.len() {
        return Err(fields.to_owned());
    }
    Ok(sel)
}

fn list(chars: &[char], pos: &mut usize, schema: Schema) -> Result<Selection, String> {
    let mut items: Vec<(String, Selection)> = Vec::new();
    loop {
        if chars.get(*pos) == Some(&'*') {
            *pos += 1;
            items.push(("*".into(), Selection::All));
        } else {
            let (name, sel) = item(chars, pos, schema)?;
            merge(&mut items, name, sel);
        }
        if chars.get(*pos) == Some(&',') {
            *pos += 1;
            continue;
        }
        break;
    }
    if items.iter().any(|(n, _)| n == "*") {
        return Ok(Selection::All);
    }
    Ok(Selection::Some(items))
}

fn merge(items: &mut Vec<(String, Selection)>, name: String, sel: Selection) {
    match items.iter_mut().find(|(n, _)| *n == name) {
        Some((_, existing)) => {
            *existing = match (std::mem::replace(existing, Selection::All), sel) {
                (Selection::Some(mut a), Selection::Some(b)) => {
                    for (n, s) in b {
                        merge(&mut a, n, s);
                    }
                    Selection::Some(a)
                }
                _ => Selection::All,
            }
        }
        None => items.push((name, sel)),
    }
}

fn item(chars: &[char], pos: &mut usize, schema: Schema) -> Result<(String, Selection), String> {
    let start = *pos;
    while chars.get(*pos).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
        *pos += 1;
    }
    let name: String = chars[start..*pos].iter().collect();
    if name.is_empty() {
        return Err(chars.iter().collect());
    }
    let child = schema.child(&name).ok_or_else(|| name.clone())?;
    match chars.get(*pos) {
        Some('/') => {
            *pos += 1;
            let (inner, sel) = item(chars, pos, child)?;
            Ok((name, Selection::Some(vec![(inner, sel)])))
        }
        Some('(') => {
            *pos += 1;
            let sel = list(chars, pos, child)?;
            if chars.get(*pos) != Some(&')') {
                return Err(chars.iter().collect());
            }
            *pos += 1;
            Ok((name, sel))
        }
        _ => Ok((name, Selection::All)),
    }
}

/// `value` with only the selected properties (arrays: each element).
pub fn apply(value: &Value, sel: &Selection) -> Value {
    match (value, sel) {
        (_, Selection::All) => value.clone(),
        (Value::Array(items), _) => Value::Array(items.iter().map(|v| apply(v, sel)).collect()),
        (Value::Object(obj), Selection::Some(names)) => {
            let mut out = Map::new();
            for (name, inner) in names {
                if let Some(v) = obj.get(name) {
                    out.insert(name.clone(), apply(v, inner));
                }
            }
            Value::Object(out)
        }
        _ => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn selections_nest_and_slash_is_a_short_parenthesis_and_unknown_names_are_refused() {
        let sel = parse(
            "nextPageToken, files(id,name,permissions(emailAddress,role)),files/parents",
            Schema::FileList,
        )
        .expect("parses");
        let page = json!({
            "kind": "drive#fileList",
            "nextPageToken": "t",
            "files": [{ "id": "a", "name": "n", "mimeType": "m", "parents": ["r"],
                        "permissions": [{ "id": "p", "role": "reader", "emailAddress": "x@y" }] }],
        });
        assert_eq!(
            apply(&page, &sel),
            json!({ "nextPageToken": "t", "files": [{ "id": "a", "name": "n", "parents": ["r"],
                    "permissions": [{ "role": "reader", "emailAddress": "x@y" }] }] })
        );
        assert_eq!(parse("*", Schema::File), Ok(Selection::All));
        assert_eq!(parse("files(title)", Schema::FileList), Err("title".into()));
        assert_eq!(parse("items", Schema::FileList), Err("items".into()));
        assert!(parse("files(id", Schema::FileList).is_err());
    }
}
