//! Google pulls: the cursor's phases (a windowed full listing, the gap listing after a lost sync
//! token, `syncToken` increments) and one `events.list` page of each.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::events::{map_event, utc};
use super::{Call, GoogleClient};
use crate::domain::{RemoteRecord, SyncCursor};
use crate::ports::{ProviderError, PulledPage};

const PAGE_SIZE: usize = 250;
const CURSOR_VERSION: u8 = 1;
/// How far before a lost sync token's issue time the gap listing reaches (clock skew, late writes).
const GAP_MARGIN: chrono::Duration = chrono::Duration::minutes(10);

/// Where a pull stands (the JSON inside [`SyncCursor`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    /// Listing the window; `gap_since` set when this restarts after a lost sync token.
    Window {
        page_token: Option<String>,
        time_min: DateTime<Utc>,
        time_max: DateTime<Utc>,
        started_at: DateTime<Utc>,
        gap_since: Option<DateTime<Utc>>,
    },
    /// After a restart: events updated since the lost token, without time bounds.
    Gap { page_token: Option<String>, since: DateTime<Utc>, sync_token: String, started_at: DateTime<Utc> },
    /// Following `syncToken`s; `synced_at` is when the token's listing began. While paging,
    /// `paging_since` is when the current listing began (it becomes the next `synced_at`).
    Incremental {
        sync_token: String,
        page_token: Option<String>,
        synced_at: DateTime<Utc>,
        #[serde(default)]
        paging_since: Option<DateTime<Utc>>,
    },
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventsPage {
    #[serde(default)]
    items: Vec<Value>,
    next_page_token: Option<String>,
    next_sync_token: Option<String>,
}

impl GoogleClient {
    /// [`ProviderClient::pull_page`](crate::ports::ProviderClient::pull_page) for events: a `None`
    /// cursor starts the window listing.
    pub(super) async fn pull_events(
        &self,
        token: &SecretString,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        let phase = match cursor {
            None => self.window_phase(None),
            Some(c) => Phase::parse(c)?,
        };
        self.pull(token, phase).await
    }

    async fn list(
        &self,
        token: &SecretString,
        query: &[(&str, String)],
    ) -> Result<EventsPage, ProviderError> {
        let url = self.events_url();
        let mut q: Vec<(&str, String)> = vec![
            ("singleEvents", "true".into()),
            ("showDeleted", "true".into()),
            ("maxResults", PAGE_SIZE.to_string()),
        ];
        q.extend(query.iter().cloned());
        self.send(Call::read("events.list"), || {
            self.http.get(&url).bearer_auth(token.expose_secret()).query(&q)
        })
        .await?
        .check()?
        .json()
    }

    fn records(&self, page: &EventsPage) -> Result<Vec<RemoteRecord>, ProviderError> {
        page.items.iter().map(|ev| map_event(ev, &self.fields)).collect()
    }

    fn window_phase(&self, gap_since: Option<DateTime<Utc>>) -> Phase {
        let now = Utc::now();
        Phase::Window {
            page_token: None,
            time_min: now,
            time_max: now + chrono::Duration::days(i64::from(self.window_days)),
            started_at: now,
            gap_since,
        }
    }

    /// Pulls one page of `phase`.
    async fn pull(&self, token: &SecretString, phase: Phase) -> Result<PulledPage, ProviderError> {
        match phase {
            Phase::Window { page_token, time_min, time_max, started_at, gap_since } => {
                let mut q = vec![("timeMin", utc(time_min)), ("timeMax", utc(time_max))];
                q.extend(page_token.map(|p| ("pageToken", p)));
                let page = self.list(token, &q).await?;
                let records = self.records(&page)?;
                let (next, has_more) = match (page.next_page_token, page.next_sync_token, gap_since) {
                    (Some(p), _, _) => (
                        Phase::Window { page_token: Some(p), time_min, time_max, started_at, gap_since },
                        true,
                    ),
                    (None, Some(sync_token), Some(since)) => {
                        (Phase::Gap { page_token: None, since, sync_token, started_at }, true)
                    }
                    (None, Some(sync_token), None) => (
                        Phase::Incremental {
                            sync_token,
                            page_token: None,
                            synced_at: started_at,
                            paging_since: None,
                        },
                        false,
                    ),
                    (None, None, _) => return Err(missing_sync_token()),
                };
                Ok(PulledPage { records, cursor: next.to_cursor(), has_more, reconcile_deletes: false })
            }
            Phase::Gap { page_token, since, sync_token, started_at } => {
                let mut q = vec![("updatedMin", utc(since))];
                q.extend(page_token.map(|p| ("pageToken", p)));
                let page = match self.list(token, &q).await {
                    // 410 `updatedMinTooLongAgo`: Google no longer lists changes that far back.
                    // The window listing has every current event; only cancellations of events
                    // outside it while the token was dead are lost. Go on from the new token.
                    Err(ProviderError::CursorExpired) => {
                        tracing::warn!("Google no longer serves the gap listing; going on incrementally");
                        let next = Phase::Incremental {
                            sync_token,
                            page_token: None,
                            synced_at: started_at,
                            paging_since: None,
                        };
                        return Ok(PulledPage {
                            records: Vec::new(),
                            cursor: next.to_cursor(),
                            has_more: true,
                            reconcile_deletes: false,
                        });
                    }
                    other => other?,
                };
                let records = self.records(&page)?;
                let (next, has_more) = match page.next_page_token {
                    Some(p) => (Phase::Gap { page_token: Some(p), since, sync_token, started_at }, true),
                    None => (
                        Phase::Incremental {
                            sync_token,
                            page_token: None,
                            synced_at: started_at,
                            paging_since: None,
                        },
                        false,
                    ),
                };
                Ok(PulledPage { records, cursor: next.to_cursor(), has_more, reconcile_deletes: false })
            }
            Phase::Incremental { sync_token, page_token, synced_at, paging_since } => {
                let started = paging_since.filter(|_| page_token.is_some()).unwrap_or_else(Utc::now);
                let mut q = vec![("syncToken", sync_token.clone())];
                q.extend(page_token.map(|p| ("pageToken", p)));
                let page = match self.list(token, &q).await {
                    Err(ProviderError::CursorExpired) => {
                        tracing::warn!("Google sync token expired; restarting with a window and gap listing");
                        let restart = self.window_phase(Some(synced_at - GAP_MARGIN));
                        return Box::pin(self.pull(token, restart)).await;
                    }
                    other => other?,
                };
                let records = self.records(&page)?;
                let (next, has_more) = match (page.next_page_token, page.next_sync_token) {
                    (Some(p), _) => (
                        Phase::Incremental {
                            sync_token,
                            page_token: Some(p),
                            synced_at,
                            paging_since: Some(started),
                        },
                        true,
                    ),
                    (None, Some(s)) => (
                        Phase::Incremental {
                            sync_token: s,
                            page_token: None,
                            synced_at: started,
                            paging_since: None,
                        },
                        false,
                    ),
                    (None, None) => return Err(missing_sync_token()),
                };
                Ok(PulledPage { records, cursor: next.to_cursor(), has_more, reconcile_deletes: false })
            }
        }
    }
}

fn missing_sync_token() -> ProviderError {
    ProviderError::permanent("Google's last page had neither nextPageToken nor nextSyncToken")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_unreadable_ones_expire() {
        let phase = Phase::Incremental {
            sync_token: "abc".into(),
            page_token: Some("p".into()),
            synced_at: Utc::now(),
            paging_since: Some(Utc::now()),
        };
        assert_eq!(Phase::parse(&phase.to_cursor()).unwrap(), phase);
        assert!(matches!(Phase::parse(&SyncCursor::new("nope")), Err(ProviderError::CursorExpired)));
    }
}
