//! Drive pulls: the cursor's two phases and one page of each.
//!
//! - **Full.** The change feed's start token is taken *before* the first `files.list` page and
//!   kept in the cursor, so a change made while the listing pages is delivered again by the feed
//!   rather than lost (re-delivered files are idempotent upserts by file id). The listing asks for
//!   `trashed = false` (what is in the trash is not in the user's Drive).
//! - **Changes.** `changes.list` from the kept token, 1,000 a page; `nextPageToken` while more
//!   remain (`has_more`), `newStartPageToken` on the last page, which becomes the cursor.
//!   Removed files and trashed files are deletes.
//!
//! A cursor the adapter cannot read is `CursorExpired`, which the worker answers with a full pull.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::files::{FILE_FIELDS, map_change, map_file};
use super::{Call, DriveClient};
use crate::domain::SyncCursor;
use crate::ports::{ProviderError, PulledPage};

/// Drive's largest page for `files.list` and `changes.list`.
pub const PAGE_SIZE: usize = 1000;
const CURSOR_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    /// Listing every file; `start_token` is where the feed takes over.
    Full { start_token: String, page_token: Option<String> },
    /// Following the change feed from `page_token`.
    Changes { page_token: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct CursorDoc {
    v: u8,
    #[serde(flatten)]
    phase: Phase,
}

impl Phase {
    fn parse(cursor: &SyncCursor) -> Result<Phase, ProviderError> {
        cursor
            .json::<CursorDoc>()
            .filter(|doc| doc.v == CURSOR_VERSION)
            .map(|doc| doc.phase)
            .ok_or(ProviderError::CursorExpired)
    }

    fn to_cursor(&self) -> SyncCursor {
        let doc = CursorDoc { v: CURSOR_VERSION, phase: self.clone() };
        SyncCursor::of_json(&doc)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartToken {
    start_page_token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileList {
    #[serde(default)]
    files: Vec<Value>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChangeList {
    #[serde(default)]
    changes: Vec<Value>,
    next_page_token: Option<String>,
    new_start_page_token: Option<String>,
}

impl DriveClient {
    /// [`ProviderClient::pull_page`](crate::ports::ProviderClient::pull_page) for files.
    pub(super) async fn pull_files(
        &self,
        token: &SecretString,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        let phase = match cursor {
            None => Phase::Full { start_token: self.start_page_token(token).await?, page_token: None },
            Some(c) => Phase::parse(c)?,
        };
        match phase {
            Phase::Full { start_token, page_token } => {
                let url = format!("{}/files", self.base);
                let mut q: Vec<(&str, String)> = vec![
                    ("q", "trashed = false".into()),
                    ("pageSize", PAGE_SIZE.to_string()),
                    ("fields", format!("nextPageToken,files({FILE_FIELDS})")),
                ];
                q.extend(page_token.map(|p| ("pageToken", p)));
                let page: FileList = self
                    .send(Call::read("files.list"), || {
                        self.http.get(&url).bearer_auth(token.expose_secret()).query(&q)
                    })
                    .await?
                    .check()?
                    .json()?;
                let records = page.files.iter().map(map_file).collect::<Result<Vec<_>, _>>()?;
                let (next, has_more) = match page.next_page_token {
                    Some(p) => (Phase::Full { start_token, page_token: Some(p) }, true),
                    None => (Phase::Changes { page_token: start_token }, false),
                };
                Ok(PulledPage { records, cursor: next.to_cursor(), has_more, reconcile_deletes: false })
            }
            Phase::Changes { page_token } => {
                let page = self.changes(token, &page_token).await?;
                let records = page.changes.iter().map(map_change).collect::<Result<Vec<_>, _>>()?;
                let (next, has_more) = match (page.next_page_token, page.new_start_page_token) {
                    (Some(p), _) => (Phase::Changes { page_token: p }, true),
                    (None, Some(s)) => (Phase::Changes { page_token: s }, false),
                    (None, None) => {
                        return Err(ProviderError::permanent(
                            "Drive's change page had neither nextPageToken nor newStartPageToken",
                        ));
                    }
                };
                Ok(PulledPage { records, cursor: next.to_cursor(), has_more, reconcile_deletes: false })
            }
        }
    }

    pub(super) async fn start_page_token(&self, token: &SecretString) -> Result<String, ProviderError> {
        let url = format!("{}/changes/startPageToken", self.base);
        let reply: StartToken = self
            .send(Call::read("changes.getStartPageToken"), || {
                self.http.get(&url).bearer_auth(token.expose_secret())
            })
            .await?
            .check()?
            .json()?;
        Ok(reply.start_page_token)
    }

    async fn changes(&self, token: &SecretString, page_token: &str) -> Result<ChangeList, ProviderError> {
        let url = format!("{}/changes", self.base);
        let q: Vec<(&str, String)> = vec![
            ("pageToken", page_token.to_owned()),
            ("pageSize", PAGE_SIZE.to_string()),
            ("includeRemoved", "true".into()),
            (
                "fields",
                format!("nextPageToken,newStartPageToken,changes(fileId,removed,time,file({FILE_FIELDS}))"),
            ),
        ];
        self.send(Call::read("changes.list"), || {
            self.http.get(&url).bearer_auth(token.expose_secret()).query(&q)
        })
        .await?
        .check()?
        .json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_unreadable_ones_expire() {
        let phase = Phase::Full { start_token: "42".into(), page_token: Some("p".into()) };
        assert_eq!(Phase::parse(&phase.to_cursor()).ok(), Some(phase));
        assert!(matches!(Phase::parse(&SyncCursor::new("{\"v\":9}")), Err(ProviderError::CursorExpired)));
    }
}
