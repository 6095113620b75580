//! HTTP: the API and webhook routers (axum), served by `lambda_http` in AWS and by the local gateway.
//!
//! This module holds the API's state and merges its routes; [`common`] holds what the resource
//! modules share; each resource is a module of its own (`connections`, `lifecycle`, `settings`,
//! `queues`, `audit`, `oauth`), importing only from here, `common` and the leaf modules (`auth`,
//! `problem`), never from each other's routes.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::auth::TenantClaim;
use self::common::BODY_LIMIT_BYTES;
use crate::ports::{AuditLog, Clock, ConnectionStore, JobQueue, RecordStore, RunStore};

pub mod audit;
pub mod auth;
pub mod common;
pub mod connections;
pub mod dashboard;
pub mod lifecycle;
pub mod oauth;
pub mod openapi;
pub mod problem;
pub mod queues;
pub mod settings;
pub mod trace;
pub mod webhooks;

#[cfg(test)]
mod routes_tests;
#[cfg(test)]
pub(crate) mod test_harness;

/// What the API handlers use. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub connections: Arc<dyn ConnectionStore>,
    pub records: Arc<dyn RecordStore>,
    pub runs: Arc<dyn RunStore>,
    pub audit: Arc<dyn AuditLog>,
    pub queue: Arc<dyn JobQueue>,
    pub clock: Arc<dyn Clock>,
    /// The engine, for the push and conflict queues (which act on records and enqueue jobs).
    pub engine: crate::sync::Deps,
    /// The JWT claim naming the caller's tenant (`Config::tenant_claim`).
    pub tenant_claim: String,
    /// The OAuth connect flow (`None`: its routes answer `oauth_not_configured`, and disconnect
    /// revokes nothing).
    pub oauth: Option<Arc<oauth::OAuthService>>,
}

impl FromRef<ApiState> for TenantClaim {
    fn from_ref(state: &ApiState) -> Self {
        TenantClaim(state.tenant_claim.clone())
    }
}

/// The API router. Unknown routes answer a 404 problem, known routes with another method a 405
/// problem, bodies over [`BODY_LIMIT_BYTES`] a 413 problem.
pub fn router(state: ApiState) -> Router {
    let (routes, _document) = routes().split_for_parts();
    routes
        .fallback(problem::not_found)
        .method_not_allowed_fallback(problem::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(trace::layer())
        .with_state(state)
}

/// Every route of the API with its OpenAPI operation. A module adding routes exposes its own
/// `routes() -> OpenApiRouter<ApiState>` (one `.routes(routes!(handler))` per path, handlers
/// annotated with `#[utoipa::path]`) and is merged here; [`openapi::document`] is built from this.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(openapi::health))
        .routes(routes!(openapi::openapi_json))
        .merge(connections::routes())
        .merge(queues::routes())
        .merge(lifecycle::routes())
        .merge(settings::routes())
        .merge(audit::routes())
        .merge(oauth::routes())
}

#[cfg(test)]
mod tree_tests {
    use std::collections::{BTreeMap, BTreeSet};

    /// Every file under a folder module, with the paths that leave it for `http/` written as a
    /// file of `http/` would write them: at `depth` folders down, `http`'s own modules are
    /// `super::` repeated `depth + 1` times.
    fn folder_text(dir: &std::path::Path, depth: usize) -> String {
        let mut all = String::new();
        for f in std::fs::read_dir(dir).unwrap() {
            let path = f.unwrap().path();
            if path.is_dir() {
                all += &folder_text(&path, depth + 1);
            } else {
                all +=
                    &std::fs::read_to_string(&path).unwrap().replace(&"super::".repeat(depth + 1), "super::");
            }
        }
        all
    }

    /// The modules of `http/` (a file or a folder) and the siblings each names through `super::`.
    fn sibling_imports() -> BTreeMap<String, BTreeSet<String>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
        let mut sources = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if name == "mod" {
                continue;
            }
            let text =
                if path.is_dir() { folder_text(&path, 1) } else { std::fs::read_to_string(&path).unwrap() };
            sources.insert(name, text);
        }
        let names: BTreeSet<String> = sources.keys().cloned().collect();
        sources
            .iter()
            .map(|(name, text)| {
                let used = names
                    .iter()
                    .filter(|other| *other != name)
                    .filter(|other| {
                        text.lines().filter(|l| !l.trim_start().starts_with("//")).any(|l| {
                            l.contains(&format!("super::{other}::"))
                                || l.contains(&format!("super::{other};"))
                        })
                    })
                    .cloned()
                    .collect();
                (name.clone(), used)
            })
            .collect()
    }

    #[test]
    fn no_module_of_http_imports_from_a_sibling_that_imports_it_back() {
        let imports = sibling_imports();
        assert!(imports.len() > 10, "{imports:?}");
        for (a, uses) in &imports {
            for b in uses {
                assert!(!imports[b].contains(a), "http::{a} and http::{b} import from each other");
            }
        }
        // The resource modules share helpers through `common`, never through each other's routes.
        assert!(imports["queues"].contains("common") && !imports["queues"].contains("connections"));
    }
}
