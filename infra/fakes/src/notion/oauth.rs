//! The fake's OAuth for a public integration
//! (<https://developers.notion.com/docs/authorization#public-integration-auth-flow-set-up>):
//! `GET /v1/oauth/authorize` (the consent page; `owner=user` and `response_type=code` required)
//! and `POST /v1/oauth/token` with HTTP Basic client credentials and a JSON body: the
//! `authorization_code` grant (<https://developers.notion.com/reference/create-a-token>) and the
//! `refresh_token` grant, which answers a new access token and a new refresh token
//! (<https://developers.notion.com/reference/refresh-a-token>), and `POST /v1/oauth/revoke`
//! (Basic credentials, `Notion-Version` required, `{"token"}`;
//! <https://developers.notion.com/reference/revoke-token>). Failures carry OAuth's error body,
//! `{"error": "invalid_grant", "error_description": ..., "request_id": ...}`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::server::App;
use super::{NotionState, Route, store};
use crate::oauth::AuthorizeParams;

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({ "error": error, "error_description": description, "request_id": store::new_id() });
    (status, Json(body)).into_response()
}

/// `GET /v1/oauth/authorize`: Notion's consent page for the integration (a browser), or an
/// immediate consent (a program). Without `owner=user` Notion shows an error page, no redirect.
pub(super) async fn authorize(
    State(app): State<App>,
    headers: HeaderMap,
    Query(params): Query<AuthorizeParams>,
    Query(all): Query<HashMap<String, String>>,
) -> Response {
    if all.get("owner").map(String::as_str) != Some("user") {
        return (StatusCode::BAD_REQUEST, "Missing or invalid owner: expected owner=user").into_response();
    }
    app.oauth.consent(&headers, &params, &app.client_id, "Notion")
}

/// The client id of an HTTP Basic `Authorization` header that names the integration's secret.
fn basic_client(app: &NotionState, headers: &HeaderMap) -> Option<String> {
    let encoded = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    (id == app.client_id && secret == app.client_secret).then(|| id.to_owned())
}

/// `POST /v1/oauth/token`.
pub(super) async fn token(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(kind) = app.count_and_take_fault(Route::OauthToken) {
        return super::server::apply_fault(kind);
    }
    let Some(client_id) = basic_client(&app, &headers) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Client authentication failed.");
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Request body is not valid JSON.");
    };
    let field = |name: &str| body.get(name).and_then(Value::as_str);
    match field("grant_type") {
        Some("authorization_code") => {
            let (Some(code), redirect_uri) = (field("code"), field("redirect_uri").unwrap_or_default())
            else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "body.code should be defined.",
                );
            };
            if app.oauth.redeem(code, &client_id, redirect_uri, None).is_err() {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid code.");
            }
            Json(app.grant()).into_response()
        }
        Some("refresh_token") => match field("refresh_token").and_then(|r| app.refresh_grant(r)) {
            Some(answer) => Json(answer).into_response(),
            None => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid refresh token."),
        },
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type should be authorization_code or refresh_token.",
        ),
    }
}

/// `POST /v1/oauth/revoke`: the access token (and its grant's refresh token) stops working. An
/// unknown token is answered like a known one (RFC 7009 section 2.2).
pub(super) async fn revoke(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(kind) = app.count_and_take_fault(Route::OauthRevoke) {
        return super::server::apply_fault(kind);
    }
    if basic_client(&app, &headers).is_none() {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Client authentication failed.");
    }
    if let Err(r) = super::server::check_version(&headers) {
        return r;
    }
    match serde_json::from_slice::<Value>(&body).ok().as_ref().and_then(|b| b.get("token")?.as_str()) {
        Some(token) => {
            app.revoke(token);
            Json(json!({ "request_id": store::new_id() })).into_response()
        }
        None => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "body.token should be defined."),
    }
}
