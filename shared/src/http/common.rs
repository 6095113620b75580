//! What the API's resource modules share: request limits, the path parameter of a connection,
//! list and page bodies, and the helpers that turn requests into domain values or problems.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Caller;
use super::problem::ApiError;
use crate::domain::{Connection, ConnectionId, TenantId};
use crate::ports::StoreError;

/// The largest request body accepted; larger ones get a 413 problem.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;
/// Page size bounds of the list routes.
pub const DEFAULT_PAGE_LIMIT: usize = 50;
pub const MAX_PAGE_LIMIT: usize = 200;
/// Read-modify-write attempts of a settings-guarded update before answering 409.
pub(super) const SAVE_ATTEMPTS: usize = 5;

/// The `connection_id` path parameter, as every route describes it.
pub(super) const CONNECTION_ID: &str = "A connection id of the caller's tenant (another tenant's: 404)";

/// A list.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Items<T> {
    pub(super) items: Vec<T>,
}

/// One page of a list; `next_page_token` is opaque, `null` on the last page.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PageView<T> {
    pub(super) items: Vec<T>,
    pub(super) next_page_token: Option<String>,
}

pub(super) fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::InvalidRequest(detail.into())
}

pub(super) fn actor(caller: &Caller) -> String {
    format!("user:{}", caller.subject)
}

/// A connection id from the path; one that cannot exist is simply not found.
pub(super) fn connection_id(raw: &str) -> Result<ConnectionId, ApiError> {
    ConnectionId::parse(raw).map_err(|_| ApiError::NotFound)
}

pub(super) async fn load_connection(
    state: &ApiState,
    tenant: &TenantId,
    raw_id: &str,
) -> Result<Connection, ApiError> {
    let id = connection_id(raw_id)?;
    state.connections.get(tenant, &id).await?.ok_or(ApiError::NotFound)
}

/// A `limit` query parameter: 1..=[`MAX_PAGE_LIMIT`], [`DEFAULT_PAGE_LIMIT`] when absent.
pub(super) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    page_limit_or(limit, DEFAULT_PAGE_LIMIT)
}

/// A `limit` query parameter: 1..=[`MAX_PAGE_LIMIT`], `default` when absent.
pub(super) fn page_limit_or(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(invalid(format!("limit must be between 1 and {MAX_PAGE_LIMIT}"))),
    }
}

/// Applies `change` to the stored connection and saves it with `save_settings`, re-reading and
/// re-applying on a lost condition. `change` returns `None` when there is nothing to do. Returns
/// the connection before and after (equal when nothing changed).
pub(super) async fn update_settings<F>(
    state: &ApiState,
    tenant: &TenantId,
    raw_id: &str,
    change: F,
) -> Result<(Connection, Connection), ApiError>
where
    F: Fn(&Connection, DateTime<Utc>) -> Result<Option<Connection>, ApiError>,
{
    for _ in 0..SAVE_ATTEMPTS {
        let current = load_connection(state, tenant, raw_id).await?;
        let Some(mut next) = change(&current, state.clock.now())? else {
            return Ok((current.clone(), current));
        };
        match state.connections.save_settings(&next).await {
            Ok(version) => {
                next.settings_version = version;
                return Ok((current, next));
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict)
}
