//! The audit log over HTTP: `GET /v1/audit` (filtered, newest first, paged with the store's opaque
//! page token) and `GET /v1/audit/export` (the same filters as a CSV or JSON attachment of bounded
//! size, continued with its `next_page_token`). Only the caller's tenant is ever read.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use super::auth::Caller;
use super::common::{PageView, invalid, page_limit};
use super::problem::{ApiError, ApiQuery};
use crate::domain::{AuditEntry, AuditOutcome, ConnectionId, Operation, RecordId};
use crate::ports::AuditQuery;

/// Most entries one export returns (its `limit`), and the default.
pub const MAX_EXPORT_ENTRIES: usize = 5000;
pub const DEFAULT_EXPORT_ENTRIES: usize = 1000;
/// An export stops adding entries past this many bytes (Lambda responses are at most 6 MB).
pub const MAX_EXPORT_BYTES: usize = 4 * 1024 * 1024;
/// Entries read from the store per call while exporting.
const EXPORT_PAGE: usize = 500;
/// The response header carrying an export's continuation token.
pub const NEXT_PAGE_HEADER: &str = "x-next-page-token";

/// The audit routes, with their OpenAPI operations.
pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(query_audit)).routes(routes!(export_audit))
}

/// One audit entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntryView {
    pub entry_id: String,
    pub at: DateTime<Utc>,
    pub connection_id: Option<String>,
    pub record_id: Option<String>,
    pub object: Option<String>,
    pub operation: String,
    /// `success`, `failure` or `rejected`.
    pub outcome: String,
    /// `worker`, `dispatcher`, `user:<sub>`, ...
    pub actor: String,
    /// Any JSON (`null` when the entry has none).
    #[schema(value_type = Value)]
    pub detail: Value,
    /// Any JSON: the changed values before, when the entry records a change.
    #[schema(value_type = Value)]
    pub before: Option<Value>,
    #[schema(value_type = Value)]
    pub after: Option<Value>,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(e: AuditEntry) -> Self {
        Self {
            entry_id: e.entry_id,
            at: e.at,
            connection_id: e.connection_id.map(|c| c.to_string()),
            record_id: e.record_id.map(|r| r.to_string()),
            object: e.object.map(|o| o.as_str().to_owned()),
            operation: e.operation.as_str().to_owned(),
            outcome: e.outcome.as_str().to_owned(),
            actor: e.actor,
            detail: e.detail,
            before: e.before,
            after: e.after,
        }
    }
}

/// Filters of both audit routes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only entries of this connection.
    connection_id: Option<String>,
    /// Only entries about this record.
    record_id: Option<String>,
    /// Operations, comma-separated (any of them): pull, push, conflict_detected, ...
    operation: Option<String>,
    /// Outcomes, comma-separated: success, failure, rejected.
    outcome: Option<String>,
    /// Inclusive lower time bound, RFC 3339.
    from: Option<String>,
    /// Inclusive upper time bound, RFC 3339.
    to: Option<String>,
    /// Page size: 1..=200 (default 50); export: 1..=5000 (default 1000).
    limit: Option<usize>,
    /// `next_page_token` of the previous page, unchanged.
    page_token: Option<String>,
    /// Export only: `csv` or `json` (default `json`).
    format: Option<String>,
}

fn parse_time(name: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| invalid(format!("{name} must be an RFC 3339 time (like 2026-01-31T09:00:00Z)")))
}

fn parse_list<T>(
    name: &str,
    raw: Option<&str>,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, ApiError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    raw.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| parse(v).ok_or_else(|| invalid(format!("{name}: unknown value"))))
        .collect()
}

impl AuditParams {
    /// The store query, or a 422 naming the parameter.
    fn query(&self, limit: usize) -> Result<AuditQuery, ApiError> {
        let connection = self
            .connection_id
            .as_deref()
            .map(ConnectionId::parse)
            .transpose()
            .map_err(|_| invalid("connection_id is not a valid id"))?;
        let record = self
            .record_id
            .as_deref()
            .map(RecordId::parse)
            .transpose()
            .map_err(|_| invalid("record_id is not a valid id"))?;
        let from = self.from.as_deref().map(|t| parse_time("from", t)).transpose()?;
        let to = self.to.as_deref().map(|t| parse_time("to", t)).transpose()?;
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(invalid("from must not be after to"));
        }
        Ok(AuditQuery {
            connection,
            record,
            operations: parse_list("operation", self.operation.as_deref(), Operation::parse)?,
            outcomes: parse_list("outcome", self.outcome.as_deref(), AuditOutcome::parse)?,
            from,
            to,
            limit,
            page_token: self.page_token.clone(),
        })
    }
}

/// The caller's audit entries matching every filter, newest first. A page may hold fewer than
/// `limit` entries while `next_page_token` is set; `null` marks the end.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, body = PageView<AuditEntryView>)
    )
)]
async fn query_audit(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<axum::Json<PageView<AuditEntryView>>, ApiError> {
    if params.format.is_some() {
        return Err(invalid("format applies to /v1/audit/export only"));
    }
    let query = params.query(page_limit(params.limit)?)?;
    let page = state.audit.query(&caller.tenant, &query).await?;
    Ok(axum::Json(PageView {
        items: page.items.into_iter().map(AuditEntryView::from).collect(),
        next_page_token: page.next,
    }))
}

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 11] = [
    "entry_id",
    "at",
    "connection_id",
    "record_id",
    "object",
    "operation",
    "outcome",
    "actor",
    "detail",
    "before",
    "after",
];

fn json_cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(v) => v.to_string(),
    }
}

/// One CSV row: ids and names as text, times RFC 3339 (UTC, as the JSON export writes them),
/// `detail`/`before`/`after` as compact JSON, absent values empty.
pub fn csv_row(e: &AuditEntryView) -> [String; 11] {
    [
        e.entry_id.clone(),
        e.at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        e.connection_id.clone().unwrap_or_default(),
        e.record_id.clone().unwrap_or_default(),
        e.object.clone().unwrap_or_default(),
        e.operation.clone(),
        e.outcome.clone(),
        e.actor.clone(),
        json_cell(Some(&e.detail)),
        json_cell(e.before.as_ref()),
        json_cell(e.after.as_ref()),
    ]
}

fn to_csv(entries: &[AuditEntryView]) -> Result<Vec<u8>, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let internal = |e: csv::Error| ApiError::Internal(Box::new(e));
    writer.write_record(CSV_HEADER).map_err(internal)?;
    for e in entries {
        writer.write_record(csv_row(e)).map_err(internal)?;
    }
    writer.into_inner().map_err(|e| ApiError::Internal(Box::new(e.into_error())))
}

/// The export's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
}

/// The caller's audit entries matching the filters as a download: `format=csv` (header row,
/// RFC 4180 quoting) or `format=json` (`{items, next_page_token}`), at most `limit` entries and
/// about 4 MiB. When more match, `next_page_token` (CSV: the `X-Next-Page-Token` header) continues
/// the export.
#[utoipa::path(
    get,
    path = "/v1/audit/export",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "An attachment (`Content-Disposition`); more to export: `X-Next-Page-Token`",
            content(
                (PageView<AuditEntryView> = "application/json"),
                (String = "text/csv", example = "entry_id,at,connection_id,record_id,object,operation,outcome,actor,detail,before,after\n")
            ),
            headers(("x-next-page-token" = String, description = "Continues the export (`page_token`)"))
        )
    )
)]
async fn export_audit(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Response, ApiError> {
    let format = match params.format.as_deref() {
        None | Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some(_) => return Err(invalid("format must be csv or json")),
    };
    let limit = match params.limit {
        None => DEFAULT_EXPORT_ENTRIES,
        Some(n) if (1..=MAX_EXPORT_ENTRIES).contains(&n) => n,
        Some(_) => return Err(invalid(format!("limit must be between 1 and {MAX_EXPORT_ENTRIES}"))),
    };
    let mut query = params.query(limit.min(EXPORT_PAGE))?;
    let mut entries: Vec<AuditEntryView> = Vec::new();
    let mut bytes = 0usize;
    let next = loop {
        query.limit = (limit - entries.len()).min(EXPORT_PAGE);
        let page = state.audit.query(&caller.tenant, &query).await?;
        for e in page.items {
            bytes += [Some(&e.detail), e.before.as_ref(), e.after.as_ref()]
                .into_iter()
                .flatten()
                .map(|v| serde_json::to_vec(v).map(|v| v.len()).unwrap_or(0))
                .sum::<usize>()
                + 256;
            entries.push(AuditEntryView::from(e));
        }
        match page.next {
            Some(token) if entries.len() < limit && bytes < MAX_EXPORT_BYTES => {
                query.page_token = Some(token);
            }
            other => break other,
        }
    };
    let stamp = state.clock.now().format("%Y%m%dT%H%M%SZ");
    let (content_type, extension, body) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv", to_csv(&entries)?),
        Format::Json => (
            "application/json",
            "json",
            serde_json::to_vec(&PageView { items: entries, next_page_token: next.clone() })
                .map_err(|e| ApiError::Internal(Box::new(e)))?,
        ),
    };
    let disposition = format!("attachment; filename=\"audit-{}-{stamp}.{extension}\"", caller.tenant);
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(v) = next.as_deref().and_then(|t| HeaderValue::from_str(t).ok()) {
        headers.insert(NEXT_PAGE_HEADER, v);
    }
    Ok(response)
}
