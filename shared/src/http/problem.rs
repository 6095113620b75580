//! HTTP errors as RFC 9457 problem bodies (`application/problem+json`) with a stable machine
//! `code`, plus extractors and fallbacks that turn every rejection into such a body.

use std::error::Error as StdError;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::Provider;
use crate::ports::{ErrorClass, ProviderError, QueueError, StoreError};

/// The media type of every error body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem document. `code` is stable and meant for programs; `title` and `detail`
/// are for people. `detail` never carries internal causes or secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "urn:syncbridge:problem:not_found", "title": "Not found", "status": 404, "code": "not_found"
}))]
pub struct Problem {
    /// `urn:syncbridge:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    /// The HTTP status, repeated.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// For people; never the submitted values or internal causes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Stable, for programs: see the list in docs/api.md.
    pub code: String,
}

impl Problem {
    /// A problem of type `urn:syncbridge:problem:<code>`.
    pub fn new(status: StatusCode, code: &str, title: &str) -> Self {
        Self {
            kind: format!("urn:syncbridge:problem:{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
            code: code.to_owned(),
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let mut response = (status, axum::Json(self)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        response
    }
}

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything an API handler can fail with. Client errors carry a safe `detail`; server errors
/// keep their cause chain, which is logged once (when the response is built) and never sent.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No verified identity, or one without a usable tenant or subject.
    #[error("unauthorized")]
    Unauthorized,
    /// The resource does not exist for this tenant (another tenant's ids land here too).
    #[error("not found")]
    NotFound,
    /// Syntactically broken JSON (detail is safe to show).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// Well-formed input that is not acceptable: wrong types, unknown values, out of range.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The resource changed concurrently or already exists.
    #[error("conflict")]
    Conflict,
    /// The connection is paused: it takes no sync or retry until resumed.
    #[error("connection paused")]
    Paused,
    /// Asking the provider which account a connection's token belongs to failed: it refused the
    /// token (422 `token_rejected`) or could not be asked now (502 `provider_unavailable`).
    #[error("{0} account lookup failed")]
    TokenCheck(Provider, #[source] ProviderError),
    #[error("store failure")]
    Store(#[source] StoreError),
    #[error("queue failure")]
    Queue(#[source] QueueError),
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => ApiError::Conflict,
            StoreError::InvalidPageToken => ApiError::InvalidRequest("page_token is not valid".into()),
            other => ApiError::Store(other),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        ApiError::Queue(e)
    }
}

/// The error and its sources, `: `-separated.
pub fn error_chain(error: &dyn StdError) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl ApiError {
    /// The problem body this error is answered with (no internal detail).
    pub fn problem(&self) -> Problem {
        use StatusCode as S;
        match self {
            ApiError::Unauthorized => Problem::new(S::UNAUTHORIZED, "unauthorized", "Unauthorized")
                .with_detail("a valid identity with a tenant is required"),
            ApiError::NotFound => Problem::new(S::NOT_FOUND, "not_found", "Not found"),
            ApiError::MalformedJson(d) => {
                Problem::new(S::BAD_REQUEST, "malformed_json", "Malformed JSON").with_detail(d.clone())
            }
            ApiError::InvalidRequest(d) => {
                Problem::new(S::UNPROCESSABLE_ENTITY, "invalid_request", "Invalid request")
                    .with_detail(d.clone())
            }
            ApiError::UnsupportedMediaType => {
                Problem::new(S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Unsupported media type")
                    .with_detail("send a JSON body with content-type application/json")
            }
            ApiError::PayloadTooLarge => {
                Problem::new(S::PAYLOAD_TOO_LARGE, "payload_too_large", "Payload too large")
            }
            ApiError::MethodNotAllowed => {
                Problem::new(S::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed")
            }
            ApiError::Conflict => Problem::new(S::CONFLICT, "conflict", "Conflict")
                .with_detail("the resource changed or already exists; retry"),
            ApiError::Paused => Problem::new(S::CONFLICT, "connection_paused", "Connection paused")
                .with_detail("the connection is paused; resume it first (POST /v1/connections/{id}/resume)"),
            ApiError::TokenCheck(provider, e)
                if matches!(e.class(), ErrorClass::Transient | ErrorClass::RateLimited) =>
            {
                Problem::new(S::BAD_GATEWAY, "provider_unavailable", "Provider unavailable").with_detail(
                    format!("{provider} could not be asked whose this token is; try again shortly"),
                )
            }
            ApiError::TokenCheck(provider, e) => {
                Problem::new(S::UNPROCESSABLE_ENTITY, "token_rejected", "Token rejected").with_detail(
                    format!(
                        "{provider} did not accept this access token ({}); check the token and base_url",
                        e.class().as_str()
                    ),
                )
            }
            ApiError::Store(e) if e.is_retryable() => {
                Problem::new(S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable")
                    .with_detail("try again shortly")
            }
            ApiError::Queue(_) => Problem::new(S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable")
                .with_detail("try again shortly"),
            ApiError::Store(_) | ApiError::Internal(_) => {
                Problem::new(S::INTERNAL_SERVER_ERROR, "internal", "Internal server error")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        if problem.status >= 500 {
            tracing::error!(code = %problem.code, status = problem.status, error = %error_chain(&self), "request failed");
        }
        problem.into_response()
    }
}

/// A serde_json error as a message safe to return: position and expectation, never the offending
/// value (which could be a token put in the wrong field). Unknown enum variants are named.
pub(crate) fn describe_json_error(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let message = match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message.as_str(),
    };
    let position = format!("line {} column {}", e.line(), e.column());
    if message.starts_with("unknown variant")
        || message.starts_with("unknown field")
        || message.starts_with("missing field")
    {
        return format!("{message} at {position}");
    }
    match message.find(", expected ") {
        Some(i) if message.starts_with("invalid ") => {
            format!("invalid value at {position}: expected {}", &message[i + ", expected ".len()..])
        }
        _ if e.is_data() => format!("invalid value at {position}"),
        _ => format!("{message} at {position}"),
    }
}

fn is_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A JSON request body. Rejections are problems: no or wrong content type (415), a body over the
/// router's limit (413), broken JSON (400 `malformed_json`), and wrong types, unknown enum values,
/// unknown or missing fields (422 `invalid_request`).
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::MalformedJson("the body could not be read".into())
            }
        })?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            if e.is_data() {
                ApiError::InvalidRequest(describe_json_error(&e))
            } else if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() {
                // Well-formed JSON that serde_json reports as a syntax error: a value of the wrong
                // type where an enum is expected (`"provider": 42`).
                ApiError::InvalidRequest(format!("invalid value at line {} column {}", e.line(), e.column()))
            } else {
                ApiError::MalformedJson(describe_json_error(&e))
            }
        })
    }
}

/// Query parameters; a rejection is a 422 `invalid_request` problem.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state).await.map(|q| ApiQuery(q.0)).map_err(
            |r: QueryRejection| {
                let text = r.body_text();
                let reason = text.rsplit(": ").next().unwrap_or("invalid query string");
                ApiError::InvalidRequest(format!("query: {reason}"))
            },
        )
    }
}

/// Path parameters; a value that does not deserialize is a 404 (no resource has such a name).
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state).await.map(|p| ApiPath(p.0)).map_err(
            |r: PathRejection| match r {
                PathRejection::FailedToDeserializePathParams(_) => ApiError::NotFound,
                other => ApiError::Internal(Box::new(other)),
            },
        )
    }
}

/// The problem responses of the OpenAPI document, each a reusable response component named after
/// the marker type (`#[utoipa::path(responses((status = 409, response = problem::Conflict)))]`).
/// [`crate::http::openapi`] adds the ones every operation of a kind has (401, 500, 503; 404 with
/// path parameters; 422 with query parameters; 400, 413, 415, 422 with a body), so a handler
/// declares only those particular to it.
macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident => $status:literal, $code:literal, $description:literal;)*) => {
        $(
            $(#[$doc])*
            pub struct $name;

            impl<'r> utoipa::ToResponse<'r> for $name {
                fn response() -> (&'r str, utoipa::openapi::RefOr<utoipa::openapi::response::Response>) {
                    (stringify!($name), problem_response($code, $description))
                }
            }
        )*

        /// Every problem response component: `(name, status, response)`.
        pub fn problem_responses(
        ) -> Vec<(&'static str, u16, utoipa::openapi::RefOr<utoipa::openapi::response::Response>)> {
            vec![$((stringify!($name), $status, problem_response($code, $description))),*]
        }
    };
}

problem_responses! {
    /// 400 `malformed_json`.
    MalformedJson => 400, "malformed_json", "The body is not JSON (`malformed_json`).";
    /// 401 `unauthorized`.
    Unauthorized => 401, "unauthorized", "No verified identity with a tenant (`unauthorized`).";
    /// 404 `not_found`.
    NotFound => 404, "not_found", "No such resource for this tenant; another tenant's ids are not found either (`not_found`).";
    /// 409 `conflict`.
    Conflict => 409, "conflict", "The resource changed concurrently, already exists, or is not in a state that allows this (`conflict`).";
    /// 409 `conflict`, or `connection_paused` for an action a paused connection does not take.
    ConflictOrPaused => 409, "conflict,connection_paused", "The resource changed concurrently or is not in a state that allows this (`conflict`), or the connection is paused (`connection_paused`).";
    /// 413 `payload_too_large`.
    PayloadTooLarge => 413, "payload_too_large", "The body is over 64 KiB (`payload_too_large`).";
    /// 415 `unsupported_media_type`.
    UnsupportedMediaType => 415, "unsupported_media_type", "The body is not sent as `application/json` (`unsupported_media_type`).";
    /// 422 `invalid_request`.
    InvalidRequest => 422, "invalid_request", "Wrong types, unknown enum values or fields, out-of-range values, a bad page token (`invalid_request`).";
    /// 422 `invalid_request`, or `token_rejected` when the provider refused the token.
    InvalidOrTokenRejected => 422, "invalid_request,token_rejected", "Wrong types, unknown enum values or fields, out-of-range values (`invalid_request`), or the provider did not accept the token when asked whose it is (`token_rejected`).";
    /// 502 `provider_unavailable`.
    ProviderUnavailable => 502, "provider_unavailable", "The provider could not be reached or asked now; retry (`provider_unavailable`).";
    /// 500 `internal`.
    Internal => 500, "internal", "A bug; the details are only in the logs (`internal`).";
    /// 503 `unavailable`.
    Unavailable => 503, "unavailable", "The store or the queue is failing for now; retry (`unavailable`).";
}

/// A response whose body is a [`Problem`] with `code`, served as [`PROBLEM_CONTENT_TYPE`].
fn problem_response(
    code: &str,
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::response::Response> {
    use utoipa::openapi::content::ContentBuilder;
    use utoipa::openapi::response::ResponseBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Ref, Schema, Type};
    use utoipa::openapi::{AllOfBuilder, RefOr};
    let code_is = ObjectBuilder::new()
        .property("code", ObjectBuilder::new().schema_type(Type::String).enum_values(Some(code.split(','))))
        .required("code");
    let schema: RefOr<Schema> =
        AllOfBuilder::new().item(Ref::from_schema_name("Problem")).item(code_is).into();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_CONTENT_TYPE, ContentBuilder::new().schema(Some(schema)).build());
    if code == "unauthorized" {
        // Without a valid token API Gateway's JWT authorizer answers itself, before the function.
        let gateway = ObjectBuilder::new()
            .description(Some("API Gateway's own answer to a missing or invalid token."))
            .property("message", ObjectBuilder::new().schema_type(Type::String))
            .required("message");
        response = response.content("application/json", ContentBuilder::new().schema(Some(gateway)).build());
    }
    response.build().into()
}

/// Fallback for unknown routes: a 404 problem.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// Fallback for a known route called with another method: a 405 problem.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn problems_are_served_as_problem_json_with_their_code() {
        let response = ApiError::NotFound.into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
        let body = body_json(response).await;
        assert_eq!(body["code"], "not_found");
        assert_eq!(body["status"], 404);
        assert_eq!(body["type"], "urn:syncbridge:problem:not_found");
    }

    #[tokio::test]
    async fn server_errors_never_reveal_their_cause() {
        let cause = StoreError::Corrupt("item T#acme has token sk-SECRET".into());
        let response = ApiError::from(cause).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let text = body_json(response).await.to_string();
        assert!(!text.contains("SECRET") && !text.contains("acme"), "{text}");
        assert!(text.contains("\"code\":\"internal\""));
    }

    #[tokio::test]
    async fn retryable_store_errors_are_503_and_conflicts_409() {
        let unavailable = ApiError::from(StoreError::Unavailable("throttled".into())).problem();
        assert_eq!((unavailable.status, unavailable.code.as_str()), (503, "unavailable"));
        let conflict = ApiError::from(StoreError::Conflict).problem();
        assert_eq!((conflict.status, conflict.code.as_str()), (409, "conflict"));
    }

    #[test]
    fn json_type_errors_describe_the_expectation_without_echoing_the_value() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Body {
            n: u32,
        }
        let e = serde_json::from_str::<Body>(r#"{"n": "sk-SECRET"}"#).unwrap_err();
        let d = describe_json_error(&e);
        assert!(!d.contains("SECRET"), "{d}");
        assert!(d.contains("expected u32"), "{d}");
    }

    #[tokio::test]
    async fn a_wrong_type_where_an_enum_is_expected_is_422_and_broken_json_400() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Body {
            provider: crate::domain::Provider,
        }
        let parse = |body: &'static str| async move {
            let request = Request::builder()
                .method("POST")
                .header(header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            ApiJson::<Body>::from_request(request, &()).await.map(|_| ()).map_err(|e| e.problem().code)
        };
        assert_eq!(parse(r#"{"provider": 42}"#).await, Err("invalid_request".to_owned()));
        assert_eq!(parse(r#"{"provider": ["hubspot"]}"#).await, Err("invalid_request".to_owned()));
        assert_eq!(parse(r#"{"provider": 4"#).await, Err("malformed_json".to_owned()));
        assert_eq!(parse(r#"{"provider": "hubspot"}"#).await, Ok(()));
    }

    #[test]
    fn error_chain_joins_every_source() {
        let e = ApiError::Store(StoreError::Backend("socket closed".into()));
        assert_eq!(error_chain(&e), "store failure: store request failed: socket closed");
    }
}
