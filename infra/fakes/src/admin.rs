//! The test-control plumbing every fake shares: a queue of injected faults, the common request
//! counters, and the `/_admin/` routes that drive them (`faults`, `stats`, `oauth`).
//!
//! Each fake keeps its own fault kinds (its provider's error shapes are the point of a fake), its
//! own extra counters (the `E` of [`Stats`]) and its own seeding routes. It holds a [`Control`]
//! field, implements [`FaultRoute`] for its route enum and [`FaultKind`] for its fault kinds,
//! implements [`Admin`] on its router's state, merges [`router`] into its own, calls
//! [`Admin::count_and_take`] on each request and (inside its state's `impl`) `control_methods!()`
//! for the Rust handle's `stats`/`reset_stats`/`inject_fault`/`clear_faults`:
//!
//! ```ignore
//! impl admin::Admin for MyState {
//!     type Route = Route; type Kind = FaultKind; type Extra = admin::NoExtra;
//!     fn control(&self) -> &admin::Control<Route, FaultKind> { &self.control }
//!     fn bad_body(e: &serde_json::Error) -> Response { my_400(&e.to_string()) }
//! }
//! type App = Arc<MyState>; // or a wider state with `impl FromRef<Wider> for Arc<MyState>`
//! Router::new().route("/v1/things", get(list)).merge(admin::router::<App, App>()).with_state(state)
//! ```
//!
//! Routes mounted: `POST /_admin/faults` (a [`Fault`] as JSON: `{"route", "kind", ..., "count"}`),
//! `DELETE /_admin/faults`, `GET /_admin/stats`, `POST /_admin/stats/reset` and, when
//! [`Admin::oauth`] answers, `POST /_admin/oauth` `{"deny": bool}`.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::oauth::CodeGrants;

/// A fault route: a request matches a fault for its own route or for the catch-all one.
pub trait FaultRoute: PartialEq {
    /// Whether this is the route that matches every request (`any`).
    fn is_any(&self) -> bool;
}

impl FaultRoute for String {
    fn is_any(&self) -> bool {
        self == "any"
    }
}

/// A provider's fault kind: whether it answers as a rate limit (counted in `rate_limited`).
pub trait FaultKind: Clone {
    fn is_rate_limit(&self) -> bool;
}

/// A fault for the next `count` requests to `route` (a fake's own `Route`; Gmail's method name,
/// sent as `method`). The kind's fields sit beside these: `{"route": "list", "kind":
/// "rate_limit", "retry_after_secs": 2, "count": 3}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault<R, K> {
    #[serde(alias = "method")]
    pub route: R,
    #[serde(flatten)]
    pub kind: K,
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The pending faults of one fake, first injected first used.
#[derive(Debug)]
pub struct Faults<R, K> {
    queue: Mutex<Vec<Fault<R, K>>>,
}

impl<R, K> Default for Faults<R, K> {
    fn default() -> Self {
        Self { queue: Mutex::new(Vec::new()) }
    }
}

impl<R: FaultRoute, K: FaultKind> Faults<R, K> {
    pub fn push(&self, fault: Fault<R, K>) {
        lock(&self.queue).push(fault);
    }

    pub fn clear(&self) {
        lock(&self.queue).clear();
    }

    /// Uses up one count of the first fault for `route` (or for `any`) and returns its kind.
    pub fn take(&self, route: &R) -> Option<K> {
        self.take_where(route, |_| true)
    }

    /// As [`Faults::take`], skipping faults whose kind `applies` rejects for this request (a
    /// "sync token gone" fault waits for a request that carries a sync token).
    pub fn take_where(&self, route: &R, applies: impl Fn(&K) -> bool) -> Option<K> {
        let mut queue = lock(&self.queue);
        let idx = queue.iter().position(|f| (f.route == *route || f.route.is_any()) && applies(&f.kind))?;
        let kind = queue[idx].kind.clone();
        queue[idx].count = queue[idx].count.saturating_sub(1);
        if queue[idx].count == 0 {
            queue.remove(idx);
        }
        Some(kind)
    }
}

/// No counters beyond the common ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoExtra {}

/// Request counters (`GET /_admin/stats`): the common ones, and a fake's own `extra` ones
/// flattened beside them (reachable as fields of `Stats` through `Deref`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats<E = NoExtra> {
    pub total: u64,
    /// Rate-limit answers sent (injected or from the fake's limiter).
    pub rate_limited: u64,
    /// Requests per route name.
    pub routes: BTreeMap<String, u64>,
    #[serde(flatten)]
    pub extra: E,
}

impl<E> Deref for Stats<E> {
    type Target = E;
    fn deref(&self) -> &E {
        &self.extra
    }
}

impl<E> DerefMut for Stats<E> {
    fn deref_mut(&mut self) -> &mut E {
        &mut self.extra
    }
}

/// The live counters of one fake.
#[derive(Debug, Default)]
pub struct Counters<E = NoExtra> {
    stats: Mutex<Stats<E>>,
}

impl<E: Clone + Default> Counters<E> {
    /// Counts a request to the route named `route`.
    pub fn count(&self, route: &str) {
        let mut stats = lock(&self.stats);
        stats.total += 1;
        *stats.routes.entry(route.to_owned()).or_default() += 1;
    }

    /// Counts a rate-limit answer.
    pub fn rate_limited(&self) {
        lock(&self.stats).rate_limited += 1;
    }

    /// Edits the counters (a fake's own ones) under the lock.
    pub fn update<T>(&self, f: impl FnOnce(&mut Stats<E>) -> T) -> T {
        f(&mut lock(&self.stats))
    }

    /// Requests counted for the route named `route`.
    pub fn route(&self, route: &str) -> u64 {
        lock(&self.stats).routes.get(route).copied().unwrap_or(0)
    }

    pub fn snapshot(&self) -> Stats<E> {
        lock(&self.stats).clone()
    }

    pub fn reset(&self) {
        *lock(&self.stats) = Stats::default();
    }
}

/// A fake's pending faults and request counters: one field of its state.
#[derive(Debug)]
pub struct Control<R, K, E = NoExtra> {
    pub faults: Faults<R, K>,
    pub counters: Counters<E>,
}

impl<R, K, E: Default> Default for Control<R, K, E> {
    fn default() -> Self {
        Self { faults: Faults::default(), counters: Counters::default() }
    }
}

impl<R: FaultRoute, K: FaultKind, E: Clone + Default> Control<R, K, E> {
    pub fn stats(&self) -> Stats<E> {
        self.counters.snapshot()
    }

    pub fn reset_stats(&self) {
        self.counters.reset();
    }

    pub fn inject_fault(&self, fault: Fault<R, K>) {
        self.faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.faults.clear();
    }
}

/// The handle methods a fake's state offers tests and the demo (`stats`, `reset_stats`,
/// `inject_fault`, `clear_faults`), delegating to its `control` field ([`Control`]); expanded
/// inside the state's `impl` block, where `Stats` and `Fault` name the fake's own aliases.
macro_rules! control_methods {
    () => {
        /// Request counters so far (`GET /_admin/stats`).
        pub fn stats(&self) -> Stats {
            self.control.stats()
        }

        pub fn reset_stats(&self) {
            self.control.reset_stats();
        }

        /// Queues a fault (`POST /_admin/faults`).
        pub fn inject_fault(&self, fault: Fault) {
            self.control.inject_fault(fault);
        }

        pub fn clear_faults(&self) {
            self.control.clear_faults();
        }
    };
}
pub(crate) use control_methods;

/// What a fake's router state gives the shared admin routes.
pub trait Admin: Send + Sync + 'static {
    type Route: FaultRoute + DeserializeOwned + Send + 'static;
    type Kind: FaultKind + DeserializeOwned + Send + 'static;
    type Extra: Clone + Default + Serialize + Send + 'static;

    fn control(&self) -> &Control<Self::Route, Self::Kind, Self::Extra>;

    /// The fake's authorization codes, when it has an OAuth consent flow (`/_admin/oauth`).
    fn oauth(&self) -> Option<&CodeGrants> {
        None
    }

    /// The fake's answer to an admin body it cannot read (its provider's 400 shape).
    fn bad_body(error: &serde_json::Error) -> Response;

    /// `GET /_admin/stats`'s body; a fake whose JSON names differ renames them here.
    fn stats_json(stats: Stats<Self::Extra>) -> Value {
        serde_json::to_value(stats).unwrap_or_default()
    }

    /// Counts a request to `route` (named `name`) and takes its first pending fault, counting a
    /// rate-limit answer.
    fn count_and_take(&self, route: &Self::Route, name: &str) -> Option<Self::Kind> {
        self.count_and_take_where(route, name, |_| true)
    }

    /// As [`Admin::count_and_take`], with [`Faults::take_where`]'s filter.
    fn count_and_take_where(
        &self,
        route: &Self::Route,
        name: &str,
        applies: impl Fn(&Self::Kind) -> bool,
    ) -> Option<Self::Kind> {
        let control = self.control();
        control.counters.count(name);
        let kind = control.faults.take_where(route, applies)?;
        if kind.is_rate_limit() {
            control.counters.rate_limited();
        }
        Some(kind)
    }
}

impl<T: Admin> Admin for Arc<T> {
    type Route = T::Route;
    type Kind = T::Kind;
    type Extra = T::Extra;

    fn control(&self) -> &Control<T::Route, T::Kind, T::Extra> {
        (**self).control()
    }
    fn oauth(&self) -> Option<&CodeGrants> {
        (**self).oauth()
    }
    fn bad_body(error: &serde_json::Error) -> Response {
        T::bad_body(error)
    }
    fn stats_json(stats: Stats<T::Extra>) -> Value {
        T::stats_json(stats)
    }
}

/// The shared `/_admin/` routes, to merge into a fake's router (state `S`) before its
/// `with_state`; `A` is the part of `S` that implements [`Admin`] (`S` itself, or a field
/// reached through `FromRef`).
pub fn router<S, A>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    A: Admin + Clone + FromRef<S>,
{
    Router::new()
        .route("/_admin/faults", post(inject::<A>).delete(clear::<A>))
        .route("/_admin/stats", get(stats::<A>))
        .route("/_admin/stats/reset", post(reset::<A>))
        .route("/_admin/oauth", post(oauth::<A>))
}

async fn inject<A: Admin>(State(s): State<A>, body: Bytes) -> Response {
    match serde_json::from_slice::<Fault<A::Route, A::Kind>>(&body) {
        Ok(f) => {
            s.control().faults.push(f);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => A::bad_body(&e),
    }
}

async fn clear<A: Admin>(State(s): State<A>) -> StatusCode {
    s.control().faults.clear();
    StatusCode::NO_CONTENT
}

async fn stats<A: Admin>(State(s): State<A>) -> Json<Value> {
    Json(A::stats_json(s.control().stats()))
}

async fn reset<A: Admin>(State(s): State<A>) -> StatusCode {
    s.control().counters.reset();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Deny {
    /// The user declines the next authorizations (`error=access_denied`) until set back.
    deny: bool,
}

async fn oauth<A: Admin>(State(s): State<A>, body: Bytes) -> Response {
    let Some(grants) = s.oauth() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match serde_json::from_slice::<Deny>(&body) {
        Ok(d) => {
            grants.set_deny(d.deny);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => A::bad_body(&e),
    }
}

/// Renames top-level keys of a stats body (`("rate_limited", "limit_exceeded")`).
pub fn rename_keys(mut stats: Value, renames: &[(&str, &str)]) -> Value {
    if let Some(map) = stats.as_object_mut() {
        for (from, to) in renames {
            if let Some(v) = map.remove(*from) {
                map.insert((*to).to_owned(), v);
            }
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Route {
        List,
        Get,
        Any,
    }

    impl FaultRoute for Route {
        fn is_any(&self) -> bool {
            *self == Route::Any
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Kind {
        RateLimit,
        Gone,
    }

    impl FaultKind for Kind {
        fn is_rate_limit(&self) -> bool {
            *self == Kind::RateLimit
        }
    }

    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    struct Extra {
        widgets: u64,
    }

    #[derive(Default)]
    struct Fake {
        control: Control<Route, Kind, Extra>,
        grants: CodeGrants,
    }

    impl Admin for Fake {
        type Route = Route;
        type Kind = Kind;
        type Extra = Extra;
        fn control(&self) -> &Control<Route, Kind, Extra> {
            &self.control
        }
        fn oauth(&self) -> Option<&CodeGrants> {
            Some(&self.grants)
        }
        fn bad_body(error: &serde_json::Error) -> Response {
            (StatusCode::BAD_REQUEST, format!("bad: {error}")).into_response()
        }
    }

    fn fault(route: Route, kind: Kind, count: u32) -> Fault<Route, Kind> {
        Fault { route, kind, count }
    }

    #[test]
    fn a_fault_is_used_for_its_count_by_its_route_or_any_then_gone() {
        let faults = Faults::default();
        faults.push(fault(Route::List, Kind::Gone, 2));
        assert_eq!(faults.take(&Route::Get), None);
        assert_eq!(faults.take(&Route::List), Some(Kind::Gone));
        assert_eq!(faults.take(&Route::List), Some(Kind::Gone));
        assert_eq!(faults.take(&Route::List), None);
        faults.push(fault(Route::Any, Kind::RateLimit, 1));
        assert_eq!(faults.take(&Route::Get), Some(Kind::RateLimit));
        assert_eq!(faults.take(&Route::Get), None);
    }

    #[test]
    fn a_filtered_take_leaves_the_faults_it_skips_for_later_requests() {
        let faults = Faults::default();
        faults.push(fault(Route::List, Kind::Gone, 1));
        faults.push(fault(Route::List, Kind::RateLimit, 1));
        assert_eq!(faults.take_where(&Route::List, |k| *k != Kind::Gone), Some(Kind::RateLimit));
        assert_eq!(faults.take(&Route::List), Some(Kind::Gone));
    }

    #[test]
    fn counting_a_request_that_meets_a_rate_limit_counts_both() {
        let fake = Fake::default();
        fake.control.faults.push(fault(Route::List, Kind::RateLimit, 1));
        assert_eq!(fake.count_and_take(&Route::List, "list"), Some(Kind::RateLimit));
        assert_eq!(fake.count_and_take(&Route::List, "list"), None);
        fake.control.counters.update(|s| s.extra.widgets += 3);
        let stats = fake.control.counters.snapshot();
        assert_eq!((stats.total, stats.rate_limited, stats.widgets), (2, 1, 3));
        assert_eq!(fake.control.counters.route("list"), 2);
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"total": 2, "rate_limited": 1, "routes": {"list": 2}, "widgets": 3})
        );
        fake.control.counters.reset();
        assert_eq!(fake.control.counters.snapshot(), Stats::default());
    }

    #[test]
    fn a_gmail_style_fault_names_its_route_method() {
        let f: Fault<String, Kind> =
            serde_json::from_str(r#"{"method": "messages.get", "kind": "gone"}"#).unwrap();
        assert_eq!(f, Fault { route: "messages.get".to_owned(), kind: Kind::Gone, count: 1 });
    }

    #[test]
    fn renaming_keys_keeps_their_values() {
        let v = rename_keys(
            serde_json::json!({"rate_limited": 2, "total": 5}),
            &[("rate_limited", "limit_exceeded")],
        );
        assert_eq!(v, serde_json::json!({"limit_exceeded": 2, "total": 5}));
    }

    async fn call(app: Router, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
        let req = Request::builder().method(method).uri(uri).body(Body::from(body.to_owned())).unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn the_admin_routes_inject_and_clear_faults_read_and_reset_stats_and_set_consent() {
        let fake = Arc::new(Fake::default());
        let app = router::<Arc<Fake>, Arc<Fake>>().with_state(fake.clone());
        let (status, _) =
            call(app.clone(), "POST", "/_admin/faults", r#"{"route":"get","kind":"gone","count":2}"#).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(fake.count_and_take(&Route::Get, "get"), Some(Kind::Gone));
        let (status, body) = call(app.clone(), "GET", "/_admin/stats", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            serde_json::json!({"total": 1, "rate_limited": 0, "routes": {"get": 1}, "widgets": 0})
        );
        assert_eq!(call(app.clone(), "DELETE", "/_admin/faults", "").await.0, StatusCode::NO_CONTENT);
        assert_eq!(fake.count_and_take(&Route::Get, "get"), None, "the second count was cleared");
        assert_eq!(call(app.clone(), "POST", "/_admin/stats/reset", "").await.0, StatusCode::NO_CONTENT);
        assert_eq!(fake.control.counters.snapshot().total, 0);
        assert_eq!(
            call(app.clone(), "POST", "/_admin/oauth", r#"{"deny":true}"#).await.0,
            StatusCode::NO_CONTENT
        );
        let params = crate::oauth::AuthorizeParams {
            client_id: Some("cid".into()),
            redirect_uri: Some("http://app.test/cb".into()),
            ..Default::default()
        };
        let location =
            fake.grants.authorize(&params, "cid").headers()["location"].to_str().unwrap().to_owned();
        assert!(location.contains("error=access_denied"), "{location}");
        let (status, body) =
            call(app, "POST", "/_admin/faults", r#"{"route":"nowhere","kind":"gone"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.starts_with("bad: "), "the fake's own 400 shape: {body}");
    }
}
