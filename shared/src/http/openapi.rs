//! The OpenAPI 3.1 document of the API, generated from the code: every route is registered with
//! `utoipa_axum`'s `routes!`, which takes the handler's `#[utoipa::path]` (path, parameters, body,
//! responses) with it, so a route cannot exist without its documentation. [`finish`] then adds what
//! follows from an operation's shape (the bearer security requirement and the 401/500/503 problems
//! of every authenticated route, 404 with path parameters, 422 with query parameters, 400/413/415/422
//! with a body). Served at `GET /v1/openapi.json` without a token; kept in the repository as
//! `docs/openapi.json`, which a test compares with the code (`make openapi` rewrites it).

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi as _;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi, Ref, RefOr};

use super::problem;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

/// Routes served without a token: `(method, path)`. In AWS these are API Gateway routes with
/// `Authorizer: NONE` (template.yaml); the local gateway passes them to the router unverified.
/// Every other operation of the document requires a bearer JWT.
pub const PUBLIC_ROUTES: &[(&str, &str)] = &[("GET", OPENAPI_PATH), ("GET", super::oauth::CALLBACK_PATH)];

/// The name of the bearer JWT security scheme.
pub const BEARER_SCHEME: &str = "bearer";

/// Whether `method path` (a concrete request path) is served without a token.
pub fn is_public(method: &str, path: &str) -> bool {
    PUBLIC_ROUTES.iter().any(|(m, p)| m.eq_ignore_ascii_case(method) && *p == path)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Syncbridge API",
        description = "Two-way sync of CRM and calendar data: connections, their runs and records, \
            the push queue with approvals, the conflict queue, pause/resume, settings, health, the audit log. The tenant comes only from the verified \
            JWT; another tenant's ids are answered 404. Every error is an RFC 9457 problem \
            (`application/problem+json`) with a stable `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "meta", description = "Health and this document"),
        (name = "connections", description = "Connections to providers, sync now, retry, runs"),
        (name = "records", description = "Canonical records and their local edits"),
        (name = "push", description = "The push queue and its approvals"),
        (name = "conflicts", description = "The conflict queue"),
        (name = "audit", description = "The audit log: queries and CSV/JSON exports"),
    ),
    components(schemas(problem::Problem))
)]
pub(super) struct ApiDoc;

/// The document the routers start from: info, tags and the problem schema.
pub(super) fn base() -> OpenApi {
    ApiDoc::openapi()
}

/// The complete document of [`super::router`], built once.
pub fn document() -> &'static OpenApi {
    static DOCUMENT: OnceLock<OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| finish(super::routes().into_openapi()))
}

/// [`document`] as pretty JSON with a final newline: the bytes of `docs/openapi.json`.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut json = serde_json::to_string_pretty(document()).unwrap_or_else(|_| "{}".to_owned());
        json.push('\n');
        json
    })
}

/// The operations of a path item with their (upper-case) methods.
pub fn operations_mut(item: &mut utoipa::openapi::PathItem) -> Vec<(&'static str, &mut Operation)> {
    let slots = [
        ("GET", &mut item.get),
        ("PUT", &mut item.put),
        ("POST", &mut item.post),
        ("DELETE", &mut item.delete),
        ("PATCH", &mut item.patch),
        ("HEAD", &mut item.head),
        ("OPTIONS", &mut item.options),
    ];
    slots.into_iter().filter_map(|(method, op)| op.as_mut().map(|op| (method, op))).collect()
}

/// Adds the security scheme, the problem response components, and to each operation what its
/// shape implies (responses a handler declared itself are kept).
pub(super) fn finish(mut doc: OpenApi) -> OpenApi {
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, _, response) in problem::problem_responses() {
        components.responses.insert(name.to_owned(), response);
    }
    components.security_schemes.insert(
        BEARER_SCHEME.to_owned(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A JWT verified by API Gateway's JWT authorizer (locally: HS256 signed by the dev \
                     key, issuer `syncbridge-local`, audience `syncbridge`); the tenant is its \
                     `tenant_id` claim (TENANT_CLAIM), the actor its `sub`.",
                ))
                .build(),
        ),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in operations_mut(item) {
            let public = is_public(method, path);
            let (has_path, has_query) = params_of(op);
            let has_body = op.request_body.is_some();
            let mut extra: Vec<(u16, &str)> = Vec::new();
            if !public {
                extra.extend([(401, "Unauthorized"), (500, "Internal"), (503, "Unavailable")]);
            }
            if has_path {
                extra.push((404, "NotFound"));
            }
            if has_query {
                extra.push((422, "InvalidRequest"));
            }
            if has_body {
                extra.extend([
                    (400, "MalformedJson"),
                    (413, "PayloadTooLarge"),
                    (415, "UnsupportedMediaType"),
                    (422, "InvalidRequest"),
                ]);
            }
            for (status, response) in op.responses.responses.iter_mut() {
                let RefOr::T(declared) = response else { continue };
                // A problem status declared with a description only is the problem response.
                if declared.content.is_empty()
                    && let Some(name) = problem_component(status)
                {
                    *response = RefOr::Ref(Ref::from_response_name(name));
                    continue;
                }
                let response = declared;
                if response.description.is_empty() {
                    let reason = status.parse().ok().and_then(|s| http::StatusCode::from_u16(s).ok());
                    response.description =
                        reason.and_then(|r| r.canonical_reason()).unwrap_or("Success").to_owned();
                }
            }
            for (status, name) in extra {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
            }
            if !public {
                op.security = Some(vec![SecurityRequirement::new(BEARER_SCHEME, Vec::<String>::new())]);
            }
        }
    }
    doc
}

/// The problem response component of an error status.
fn problem_component(status: &str) -> Option<&'static str> {
    let status: u16 = status.parse().ok()?;
    problem::problem_responses().into_iter().find(|(_, s, _)| *s == status).map(|(name, _, _)| name)
}

fn params_of(op: &Operation) -> (bool, bool) {
    let params = op.parameters.as_deref().unwrap_or_default();
    (
        params.iter().any(|p| matches!(p.parameter_in, ParameterIn::Path)),
        params.iter().any(|p| matches!(p.parameter_in, ParameterIn::Query)),
    )
}

/// This document, as JSON. Public: it describes the API, and holds no tenant data.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    operation_id = "openapi_document",
    responses((status = 200, description = "This OpenAPI document", body = Object, content_type = "application/json"))
)]
pub(super) async fn openapi_json() -> Response {
    let mut response = document_json().to_owned().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The answer of `GET /v1/health`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

/// The API is up and the caller's token is accepted.
#[utoipa::path(get, path = "/v1/health", tag = "meta", responses((status = 200, body = Health)))]
pub(super) async fn health(_caller: super::auth::Caller) -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
    }

    /// `UPDATE_OPENAPI=1` (or `make openapi`) rewrites docs/openapi.json from the code.
    #[test]
    fn the_committed_openapi_document_is_the_one_the_code_generates() {
        let path = committed_path();
        let generated = document_json();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, generated).expect("writing docs/openapi.json");
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json differs from the document the code generates; \
             run `make openapi` (UPDATE_OPENAPI=1 cargo test -p syncbridge --lib openapi) and commit it"
        );
    }

    fn operations() -> Vec<(String, String, serde_json::Value)> {
        let doc = serde_json::to_value(document()).unwrap();
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                out.push((method.to_uppercase(), path.clone(), op.clone()));
            }
        }
        out
    }

    #[test]
    fn every_operation_but_the_public_ones_requires_the_bearer_token_and_documents_401() {
        let ops = operations();
        assert!(ops.len() >= 17, "{} operations", ops.len());
        for (method, path, op) in ops {
            if is_public(&method, &path) {
                assert!(op.get("security").is_none(), "{method} {path}");
                continue;
            }
            assert_eq!(op["security"], serde_json::json!([{ "bearer": [] }]), "{method} {path}");
            assert_eq!(op["responses"]["401"]["$ref"], "#/components/responses/Unauthorized");
        }
    }

    #[test]
    fn every_operation_with_a_body_documents_the_body_problems_and_every_response_a_content_type() {
        for (method, path, op) in operations() {
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(op["responses"].get(status).is_some(), "{method} {path} lacks {status}");
                }
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                let has_content = response.get("$ref").is_some() || response.get("content").is_some();
                assert!(
                    has_content || status == "204" || status.starts_with('3'),
                    "{method} {path} {status} has no content"
                );
            }
        }
    }

    #[test]
    fn a_problem_status_declared_with_a_description_only_becomes_the_problem_response() {
        use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
        use utoipa::openapi::{PathsBuilder, ResponseBuilder};
        let op = OperationBuilder::new()
            .response("200", ResponseBuilder::new().description("").build())
            .response("409", ResponseBuilder::new().description("problem `conflict`").build())
            .build();
        let mut doc = base();
        doc.paths = PathsBuilder::new().path("/v1/x", PathItem::new(HttpMethod::Post, op)).build();
        let doc = serde_json::to_value(finish(doc)).unwrap();
        let responses = &doc["paths"]["/v1/x"]["post"]["responses"];
        assert_eq!(responses["409"]["$ref"], "#/components/responses/Conflict");
        assert_eq!(responses["401"]["$ref"], "#/components/responses/Unauthorized");
        assert_eq!(responses["200"]["description"], "OK");
    }

    #[test]
    fn the_document_names_every_route_of_the_router_and_the_problem_components_resolve() {
        let doc = serde_json::to_value(document()).unwrap();
        for path in ["/v1/connections", "/v1/push/approve", "/v1/conflicts/resolve", OPENAPI_PATH] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing");
        }
        let text = document_json();
        for (name, _, _) in problem::problem_responses() {
            assert!(doc["components"]["responses"].get(name).is_some());
        }
        let mut refs = text.match_indices("\"$ref\": \"#/components/").map(|(i, _)| i).collect::<Vec<_>>();
        refs.dedup();
        for i in refs {
            let rest = &text[i + "\"$ref\": \"#/".len()..];
            let pointer = &rest[..rest.find('"').unwrap()];
            assert!(doc.pointer(&format!("/{pointer}")).is_some(), "unresolved $ref {pointer}");
        }
    }
}
