//! Salesforce pulls: the cursor (one keyset position per sObject), the first pull's choice
//! between a Bulk API 2.0 export and REST, incremental SOQL on `(SystemModstamp, Id)`, the
//! `deleted` windows at the end of each pass, and the live ids a delete reconciliation diffs.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::objects::{parse_sf_datetime, sobjects};
use super::{QueryPage, SalesforceClient, soql_string};
use crate::domain::record::Fields;
use crate::domain::{ExternalId, ObjectType, RemoteRecord, SyncCursor};
use crate::ports::{IdPage, ProviderError, PulledPage};

/// Ids a page when listing live ids for a delete reconciliation.
const LIVE_IDS_PAGE: usize = 2_000;
const CURSOR_VERSION: u8 = 1;
/// Salesforce keeps deleted-record ids this long; older `start`s are refused.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api/resources_getdeleted.htm>
const DELETE_LOG_DAYS: i64 = 15;
/// The shortest `deleted` window we ask for. Salesforce wants `start` to precede `end` "by more
/// than one minute" and ignores the seconds of both, so the two minute-truncated values must be at
/// least two minutes apart; a shorter window is carried to the next sync, never sent.
/// <https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_getdeleted.htm>
const MIN_REPLICATION_WINDOW_MS: i64 = 120_000;

/// One step of a pull: records, the part's new state, whether the part has more, and whether
/// deletes were lost (the engine then reconciles ids).
type Step = (Vec<RemoteRecord>, Part, bool, bool);

/// Where one sObject's pull stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Part {
    /// Nothing pulled yet: count, then choose bulk or REST.
    Start,
    /// A Bulk API 2.0 export.
    Bulk {
        job_id: Option<String>,
        locator: Option<String>,
        /// The provider's clock when the job was created: REST takes over from here.
        started_at: Option<i64>,
    },
    /// SOQL on `SystemModstamp`. The position is the last record emitted (`since`, `after_id`);
    /// no `after_id` means `SystemModstamp >= since`; no `since` means from the start.
    Rest {
        since: Option<i64>,
        after_id: Option<String>,
        next_url: Option<String>,
        /// Where the next `deleted` call starts (`None`: the first pass, which needs none).
        deletes_from: Option<i64>,
        /// The provider's clock when this pass began.
        pass_started: Option<i64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CursorDoc {
    v: u8,
    current: usize,
    parts: Vec<Part>,
}

impl CursorDoc {
    fn parse(cursor: Option<&SyncCursor>, n: usize) -> Result<CursorDoc, ProviderError> {
        let Some(cursor) = cursor else {
            return Ok(CursorDoc { v: CURSOR_VERSION, current: 0, parts: vec![Part::Start; n] });
        };
        cursor
            .json::<CursorDoc>()
            .filter(|doc| doc.v == CURSOR_VERSION && doc.parts.len() == n && doc.current < n)
            .ok_or(ProviderError::CursorExpired)
    }

    fn to_cursor(&self) -> SyncCursor {
        SyncCursor::of_json(self)
    }
}

/// A SOQL datetime literal (second precision, which is `SystemModstamp`'s).
fn soql_datetime(ms: i64) -> String {
    let secs = ms.div_euclid(1_000);
    DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The `[start, end]` of a `deleted` call covering `from .. now`, both truncated to the minute as
/// Salesforce reads them, with `start` no older than the delete log (less an hour's margin); `None`
/// while the window is too short to ask (see [`MIN_REPLICATION_WINDOW_MS`]).
fn replication_window(from: i64, now: i64) -> Option<(i64, i64)> {
    let oldest = now - (DELETE_LOG_DAYS * 86_400_000 - 3_600_000);
    let start = from.max(oldest).div_euclid(60_000) * 60_000;
    let end = now.div_euclid(60_000) * 60_000;
    (end - start >= MIN_REPLICATION_WINDOW_MS).then_some((start, end))
}

/// The `start`/`end` form of the deleted resource.
fn replication_datetime(ms: i64) -> String {
    let secs = ms.div_euclid(1_000);
    DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

/// The keyset condition for records after `(since, after_id)`.
fn position_filter(since: Option<i64>, after_id: Option<&str>) -> Option<String> {
    let since = since?;
    let ts = soql_datetime(since);
    Some(match after_id {
        None => format!("SystemModstamp >= {ts}"),
        Some(id) => {
            format!("(SystemModstamp > {ts} OR (SystemModstamp = {ts} AND Id > {}))", soql_string(id))
        }
    })
}

impl SalesforceClient {
    /// [`ProviderClient::pull_page`](crate::ports::ProviderClient::pull_page): one step of the
    /// cursor's current sObject.
    pub(super) async fn pull(
        &self,
        token: &SecretString,
        object: ObjectType,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        let Some(names) = sobjects(object) else {
            return Err(ProviderError::permanent(format!("the Salesforce adapter does not sync {object}")));
        };
        let mut doc = CursorDoc::parse(cursor, names.len())?;
        let i = doc.current;
        let part = doc.parts[i].clone();
        let (records, part, more, reconcile_deletes) = self.step(token, object, names[i], part).await?;
        doc.parts[i] = part;
        let has_more = if more {
            true
        } else if i + 1 < names.len() {
            doc.current = i + 1;
            true
        } else {
            doc.current = 0;
            false
        };
        Ok(PulledPage { records, cursor: doc.to_cursor(), has_more, reconcile_deletes })
    }

    /// [`ProviderClient::live_ids`](crate::ports::ProviderClient::live_ids): one page of ids.
    pub(super) async fn live_id_page(
        &self,
        token: &SecretString,
        object: ObjectType,
        after: Option<&str>,
    ) -> Result<IdPage, ProviderError> {
        let Some(names) = sobjects(object) else {
            return Err(ProviderError::permanent(format!("the Salesforce adapter does not sync {object}")));
        };
        let (mut i, mut last) = match after.map(|a| a.split_once(':')) {
            None => (0, None),
            Some(Some((i, id))) => match i.parse::<usize>() {
                Ok(i) if i < names.len() => (i, Some(id.to_owned()).filter(|id| !id.is_empty())),
                _ => return Err(ProviderError::CursorExpired),
            },
            Some(None) => return Err(ProviderError::CursorExpired),
        };
        loop {
            let filter =
                last.as_deref().map(|id| format!(" WHERE Id > {}", soql_string(id))).unwrap_or_default();
            let q = format!("SELECT Id FROM {}{filter} ORDER BY Id LIMIT {LIVE_IDS_PAGE}", names[i]);
            let page = self.soql(token, &q).await?;
            let mut ids = Vec::with_capacity(page.records.len());
            for row in &page.records {
                let id = row.get("Id").and_then(Value::as_str).unwrap_or_default();
                ids.push(
                    ExternalId::parse(id.to_owned())
                        .map_err(|_| ProviderError::permanent("Salesforce listed a record without an id"))?,
                );
            }
            let next = if ids.len() == LIVE_IDS_PAGE {
                ids.last().map(|id| format!("{i}:{}", id.as_str()))
            } else if i + 1 < names.len() {
                Some(format!("{}:", i + 1))
            } else {
                None
            };
            if !ids.is_empty() || next.is_none() {
                return Ok(IdPage { ids, next });
            }
            i += 1;
            last = None;
        }
    }

    async fn count(&self, token: &SecretString, sobject: &str) -> Result<u64, ProviderError> {
        let page = self.soql(token, &format!("SELECT COUNT() FROM {sobject}")).await?;
        Ok(page.total_size)
    }

    /// One step of one part: records, the part's new state, and whether the part has more.
    async fn step(
        &self,
        token: &SecretString,
        object: ObjectType,
        sobject: &str,
        part: Part,
    ) -> Result<Step, ProviderError> {
        match part {
            Part::Start => {
                let count = self.count(token, sobject).await?;
                let next = if count > self.tuning.bulk_threshold {
                    Part::Bulk { job_id: None, locator: None, started_at: None }
                } else {
                    Part::Rest {
                        since: None,
                        after_id: None,
                        next_url: None,
                        deletes_from: None,
                        pass_started: None,
                    }
                };
                Box::pin(self.step(token, object, sobject, next)).await
            }
            Part::Bulk { job_id, locator, started_at } => {
                self.bulk_step(token, object, sobject, job_id, locator, started_at).await
            }
            rest => self.rest_step(token, object, sobject, rest).await,
        }
    }

    async fn bulk_step(
        &self,
        token: &SecretString,
        object: ObjectType,
        sobject: &str,
        job_id: Option<String>,
        locator: Option<String>,
        started_at: Option<i64>,
    ) -> Result<Step, ProviderError> {
        let (job_id, started_at) = match job_id {
            Some(id) => (id, started_at),
            None => {
                let q = format!("SELECT {} FROM {sobject}", self.select_list(sobject)?.join(", "));
                let body = json!({ "operation": "query", "query": q });
                let reply = self.api(token, http::Method::POST, "/jobs/query", &[], Some(&body), &[]).await?;
                let job: Value = reply.json()?;
                let id = job
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ProviderError::transient("Salesforce created a bulk job without an id"))?;
                let now = reply.provider_now().unwrap_or_else(|| Utc::now().timestamp_millis());
                (id.to_owned(), Some(now))
            }
        };
        if locator.is_none() {
            let waited = Instant::now();
            loop {
                let reply = self
                    .api(token, http::Method::GET, &format!("/jobs/query/{job_id}"), &[], None, &[])
                    .await
                    .map_err(job_gone)?;
                let info: Value = reply.json()?;
                match info.get("state").and_then(Value::as_str) {
                    Some("JobComplete") => break,
                    Some("Failed") | Some("Aborted") => {
                        let msg = info.get("errorMessage").and_then(Value::as_str).unwrap_or("no message");
                        return Err(ProviderError::permanent(format!(
                            "Salesforce bulk query job {job_id} failed: {}",
                            msg.chars().take(200).collect::<String>()
                        )));
                    }
                    _ if waited.elapsed() >= self.tuning.bulk_max_wait => {
                        let part = Part::Bulk { job_id: Some(job_id), locator: None, started_at };
                        return Ok((Vec::new(), part, true, false));
                    }
                    _ => tokio::time::sleep(self.tuning.bulk_poll_interval).await,
                }
            }
        }
        let mut query = vec![("maxRecords", self.tuning.bulk_page.to_string())];
        if let Some(l) = locator.as_ref().filter(|l| l.as_str() != "start") {
            query.push(("locator", l.clone()));
        }
        // A CSV page cut short (even at a row boundary, with a matching length) would lose rows
        // silently: its rows are counted against `Sforce-NumberOfRecords`, and a page that does
        // not parse or count up is read again (a read: harmless), then left to the job's retry.
        let path = format!("/jobs/query/{job_id}/results");
        let mut attempt = 0;
        let (reply, rows) = loop {
            let reply =
                self.api(token, http::Method::GET, &path, &query, None, &[]).await.map_err(job_gone)?;
            match parse_csv(&reply.body)
                .and_then(|rows| counted(rows, reply.header("sforce-numberofrecords")))
            {
                Ok(rows) => break (reply, rows),
                Err(e) if attempt < 2 => {
                    tracing::warn!(error = %e, attempt, "a Bulk API result page did not arrive whole; reading it again");
                    tokio::time::sleep(crate::retry::backoff(
                        Duration::from_millis(250),
                        Duration::from_secs(2),
                        attempt,
                    ))
                    .await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let records = self.rows_to_records(object, sobject, &rows)?;
        let next = reply.header("sforce-locator").map(str::trim).filter(|l| !l.is_empty() && *l != "null");
        let part = match next {
            Some(l) => Part::Bulk { job_id: Some(job_id), locator: Some(l.to_owned()), started_at },
            None => {
                let from = started_at.unwrap_or_else(|| Utc::now().timestamp_millis());
                Part::Rest {
                    since: Some(from - ms(self.tuning.lookback)),
                    after_id: None,
                    next_url: None,
                    deletes_from: Some(from - ms(self.tuning.lookback)),
                    pass_started: None,
                }
            }
        };
        Ok((records, part, true, false))
    }

    async fn rest_step(
        &self,
        token: &SecretString,
        object: ObjectType,
        sobject: &str,
        part: Part,
    ) -> Result<Step, ProviderError> {
        let Part::Rest { since, after_id, next_url, deletes_from, pass_started } = part else {
            return Err(ProviderError::CursorExpired);
        };
        let fresh_query = || -> Result<String, ProviderError> {
            let mut q = format!("SELECT {} FROM {sobject}", self.select_list(sobject)?.join(", "));
            if let Some(cond) = position_filter(since, after_id.as_deref()) {
                q.push_str(&format!(" WHERE {cond}"));
            }
            q.push_str(" ORDER BY SystemModstamp, Id");
            Ok(q)
        };
        let opts = [("Sforce-Query-Options", format!("batchSize={}", self.tuning.batch_size))];
        let mut reply = None;
        if let Some(url) = next_url.as_deref() {
            if !url.starts_with("/services/data/") {
                return Err(ProviderError::CursorExpired);
            }
            match self.api(token, http::Method::GET, url, &[], None, &opts).await {
                Ok(r) => reply = Some(r),
                Err(ProviderError::Permanent(m)) if m.mentions("INVALID_QUERY_LOCATOR") => {}
                Err(e) => return Err(e),
            }
        }
        let reply = match reply {
            Some(r) => r,
            None => {
                let q = fresh_query()?;
                self.api(token, http::Method::GET, "/query", &[("q", q)], None, &opts).await?
            }
        };
        let provider_now = reply.provider_now().unwrap_or_else(|| Utc::now().timestamp_millis());
        let pass_started = pass_started.or(Some(provider_now));
        let page: QueryPage = reply.json()?;
        let mut records = self.rows_to_records(object, sobject, &page.records)?;
        let (mut since, mut after_id) = (since, after_id);
        if let Some(last) = records.last() {
            since = last.remote_modified_at.map(|t| t.timestamp_millis()).or(since);
            after_id = Some(last.external_id.as_str().to_owned());
        }
        if let Some(url) = page.next_records_url.filter(|_| !page.done) {
            let part = Part::Rest { since, after_id, next_url: Some(url), deletes_from, pass_started };
            return Ok((records, part, true, false));
        }
        let mut deletes_lost = false;
        let mut deletes_next = deletes_from.or(pass_started);
        if let Some(from) = deletes_from {
            let (deleted, covered, lost) = self.deleted(token, object, sobject, from, provider_now).await?;
            records.extend(deleted);
            deletes_next = Some(covered);
            deletes_lost = lost;
        }
        let floor = pass_started.unwrap_or(provider_now) - ms(self.tuning.lookback);
        if since.is_none_or(|s| s > floor) {
            since = Some(floor.min(since.unwrap_or(floor)));
            after_id = None;
        }
        let part =
            Part::Rest { since, after_id, next_url: None, deletes_from: deletes_next, pass_started: None };
        Ok((records, part, false, deletes_lost))
    }

    /// Records deleted in `[from, now]`, where the next call starts, and whether deletes before
    /// Salesforce's delete log are lost (`from` is older than it keeps).
    async fn deleted(
        &self,
        token: &SecretString,
        object: ObjectType,
        sobject: &str,
        from: i64,
        now: i64,
    ) -> Result<(Vec<RemoteRecord>, i64, bool), ProviderError> {
        let oldest = now - (DELETE_LOG_DAYS * 86_400_000 - 3_600_000);
        let lost = from < oldest;
        if lost {
            tracing::warn!(%object, "deleted-record window older than Salesforce keeps; reconciling ids");
        }
        let Some((start, end)) = replication_window(from, now) else {
            // Too short to ask: the same `from` is asked again at the next sync.
            return Ok((Vec::new(), from, lost));
        };
        let query = [("start", replication_datetime(start)), ("end", replication_datetime(end))];
        let path = format!("/sobjects/{sobject}/deleted/");
        let reply = match self.api(token, http::Method::GET, &path, &query, None, &[]).await {
            Ok(reply) => reply,
            // The window starts before the org's `earliestDateAvailable` (an administrator purged
            // the Recycle Bin, or the log was trimmed): the deletes in between are lost to the
            // log, so the engine reconciles ids instead; the next window starts at `end`.
            Err(ProviderError::Permanent(m)) if m.mentions("INVALID_REPLICATION_DATE") => {
                tracing::warn!(%object, "Salesforce's delete log no longer covers the window; reconciling ids");
                return Ok((Vec::new(), end, true));
            }
            Err(e) => return Err(e),
        };
        let body: DeletedPage = reply.json()?;
        let mut out = Vec::new();
        for d in &body.deleted_records {
            let external_id = ExternalId::parse(d.id.clone())
                .map_err(|_| ProviderError::permanent("Salesforce listed a deleted record without an id"))?;
            out.push(RemoteRecord {
                external_id,
                object,
                fields: Fields::new(),
                remote_modified_at: d.deleted_date.as_deref().and_then(parse_sf_datetime),
                deleted: true,
                etag: None,
            });
        }
        let covered = body
            .latest_date_covered
            .as_deref()
            .and_then(parse_sf_datetime)
            .map(|d| d.timestamp_millis())
            .unwrap_or(end);
        Ok((out, covered.min(end).max(start), lost))
    }
}

/// A bulk job Salesforce no longer has (jobs are deleted after 7 days) or a locator it rejects:
/// the export starts over.
fn job_gone(e: ProviderError) -> ProviderError {
    match e {
        ProviderError::NotFound => ProviderError::CursorExpired,
        ProviderError::Permanent(m) if m.mentions("INVALIDLOCATOR") => ProviderError::CursorExpired,
        other => other,
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The rows of a Bulk result page, if they are as many as `Sforce-NumberOfRecords` says.
/// <https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/get_job_results.htm>
fn counted(
    rows: Vec<Map<String, Value>>,
    announced: Option<&str>,
) -> Result<Vec<Map<String, Value>>, ProviderError> {
    match announced.and_then(|n| n.trim().parse::<usize>().ok()) {
        Some(n) if n != rows.len() => Err(ProviderError::Transient(
            crate::ports::Fault::new(format!(
                "a Bulk API result page has {} rows where Salesforce announced {n}",
                rows.len()
            ))
            .with_code("truncated_body"),
        )),
        _ => Ok(rows),
    }
}

/// Bulk API 2.0 CSV results as rows keyed by column name (empty cells are null).
fn parse_csv(body: &[u8]) -> Result<Vec<Map<String, Value>>, ProviderError> {
    let bad = |e: csv::Error| ProviderError::transient(format!("malformed CSV from Salesforce: {e}"));
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(body);
    let header: Vec<String> = reader.headers().map_err(bad)?.iter().map(str::to_owned).collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(bad)?;
        let row: Map<String, Value> = header
            .iter()
            .zip(record.iter())
            .map(|(h, v)| (h.clone(), if v.is_empty() { Value::Null } else { Value::String(v.to_owned()) }))
            .collect();
        rows.push(row);
    }
    Ok(rows)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeletedPage {
    #[serde(default)]
    deleted_records: Vec<DeletedRecord>,
    latest_date_covered: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeletedRecord {
    id: String,
    deleted_date: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_windows_shorter_than_salesforce_accepts_are_carried_to_the_next_sync() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).map(|d| d.timestamp_millis()).unwrap_or(-1);
        // The same minute, and 59 s across a minute boundary: nothing is asked.
        assert_eq!(replication_window(t("2026-12-05T10:00:05Z"), t("2026-12-05T10:00:50Z")), None);
        assert_eq!(replication_window(t("2026-12-05T10:00:30Z"), t("2026-12-05T10:01:29Z")), None);
        // One truncated minute apart is not "more than one minute".
        assert_eq!(replication_window(t("2026-12-05T10:00:00Z"), t("2026-12-05T10:01:59Z")), None);
        // Two minutes: asked, both ends truncated to the minute.
        assert_eq!(
            replication_window(t("2026-12-05T10:00:30Z"), t("2026-12-05T10:02:10Z")),
            Some((t("2026-12-05T10:00:00Z"), t("2026-12-05T10:02:00Z")))
        );
        // 16 and 31 days: the start is clamped into the delete log (the pull then reconciles ids).
        let now = t("2026-12-05T10:00:00Z");
        for days in [16, 31] {
            let (start, end) = replication_window(now - days * 86_400_000, now).unwrap_or_default();
            assert_eq!(end, now);
            assert!(
                now - start < DELETE_LOG_DAYS * 86_400_000 && now - start > 14 * 86_400_000,
                "{days} days"
            );
        }
    }

    #[test]
    fn keyset_filter_resumes_after_the_last_record_at_its_stamp() {
        let at = 1_704_067_200_500;
        assert_eq!(position_filter(None, None), None);
        assert_eq!(position_filter(Some(at), None).unwrap(), "SystemModstamp >= 2024-01-01T00:00:00Z");
        assert_eq!(
            position_filter(Some(at), Some("003x'1")).unwrap(),
            "(SystemModstamp > 2024-01-01T00:00:00Z OR (SystemModstamp = 2024-01-01T00:00:00Z AND Id > '003x\\'1'))"
        );
    }

    #[test]
    fn csv_rows_parse_with_quotes_and_empty_cells() {
        let rows = parse_csv(b"\"Id\",\"Name\",\"Amount\"\n\"006A\",\"Big, \"\"quoted\"\"\",\"\"\n").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["Name"], json!("Big, \"quoted\""));
        assert_eq!(rows[0]["Amount"], Value::Null);
        assert!(parse_csv(b"\"Id\",\"Name\"\n\"a\"\n").is_err());
        // A page cut at a row boundary parses, but does not count up.
        let cut = parse_csv(b"\"Id\"\n\"a\"\n\"b\"\n").unwrap();
        assert!(matches!(counted(cut.clone(), Some("3")), Err(ProviderError::Transient(_))));
        assert_eq!(counted(cut.clone(), Some("2")).map(|r| r.len()).ok(), Some(2));
        assert_eq!(counted(cut, None).map(|r| r.len()).ok(), Some(2), "no header: nothing to check");
    }

    #[test]
    fn cursor_round_trips_and_foreign_cursors_expire() {
        let doc = CursorDoc {
            v: CURSOR_VERSION,
            current: 1,
            parts: vec![
                Part::Start,
                Part::Rest {
                    since: Some(5),
                    after_id: Some("00T1".into()),
                    next_url: None,
                    deletes_from: Some(1),
                    pass_started: None,
                },
            ],
        };
        assert_eq!(CursorDoc::parse(Some(&doc.to_cursor()), 2).unwrap(), doc);
        assert!(matches!(CursorDoc::parse(Some(&doc.to_cursor()), 1), Err(ProviderError::CursorExpired)));
        assert!(matches!(
            CursorDoc::parse(Some(&SyncCursor::new("{}")), 1),
            Err(ProviderError::CursorExpired)
        ));
    }

    #[test]
    fn a_vanished_bulk_job_restarts_the_export() {
        assert!(matches!(job_gone(ProviderError::NotFound), ProviderError::CursorExpired));
        let bad = ProviderError::permanent("HTTP 400 INVALIDLOCATOR: invalid locator");
        assert!(matches!(job_gone(bad), ProviderError::CursorExpired));
        assert!(matches!(job_gone(ProviderError::Unauthorized), ProviderError::Unauthorized));
    }
}
