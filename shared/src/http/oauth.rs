//! Connecting a provider with OAuth 2.0 (authorization code), and disconnecting.
//!
//! - `POST /v1/connections/oauth/{provider}/authorize` (JWT): stores a pending authorization under
//!   a fresh random `state` (10 minutes, single use, bound to tenant, provider, redirect URI,
//!   settings and a PKCE verifier where the provider supports PKCE) and answers the provider's
//!   consent URL.
//! - `GET /v1/oauth/callback?code=&state=` (no JWT: the browser comes back from the provider, the
//!   state proves who started it): takes the state (a replay finds nothing), exchanges the code,
//!   learns the account, and creates the connection, or gives the tenant's existing connection
//!   to the same account the new credentials.
//! - `DELETE /v1/connections/{id}`: stops the push channel, revokes the grant at the provider
//!   (best effort, audited), then removes the connection (credentials included) leaving a
//!   tombstone; 204, and 204 again for a connection already disconnected.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiState;
use super::auth::Caller;
use super::common::{actor, invalid};
use super::connections::ConnectionView;
use super::problem::{ApiError, ApiJson, ApiPath, ApiQuery, Problem};
use crate::domain::connection::{DEFAULT_INTERVAL_MINUTES, MAX_INTERVAL_MINUTES, MIN_INTERVAL_MINUTES};
use crate::domain::oauth::{PendingAuthorization, is_well_formed_state, pkce_challenge, random_token};
use crate::domain::{
    AuditEntry, AuditOutcome, Connection, ConnectionId, ConnectionSettings, ConnectionStatus, Job, JobReason,
    NewConnection, Operation, Provider,
};
use crate::ports::{OAuthConnector, OAuthError};
use crate::ports::{OAuthStateStore, StoreError};

/// What the OAuth routes need beyond the API's state: the providers' apps and endpoints, and the
/// pending authorizations.
#[derive(Clone)]
pub struct OAuthService {
    pub providers: Arc<dyn OAuthConnector>,
    pub states: Arc<dyn OAuthStateStore>,
}

/// Where providers send the browser back; the one API route without a token.
pub const CALLBACK_PATH: &str = "/v1/oauth/callback";

/// The OAuth connect and disconnect routes with their OpenAPI operations, merged into the API
/// router.
pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(authorize)).routes(routes!(callback)).routes(routes!(disconnect))
}

/// The body of `POST /v1/connections/oauth/{provider}/authorize`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// Where the provider sends the browser back: one of the deployment's registered redirect
    /// URIs (`OAUTH_REDIRECT_URIS`), normally this API's `/v1/oauth/callback`.
    pub redirect_uri: String,
    /// Salesforce only: the org is a sandbox (`test.salesforce.com`).
    #[serde(default)]
    pub sandbox: bool,
    /// 5..=1440, default 15.
    pub interval_minutes: Option<u32>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<ConnectionSettings>,
    /// A path of this deployment (`/connections`) where the callback sends the browser when it is
    /// done, instead of answering JSON: with `?connected=<connection id>`, or with
    /// `?oauth_error=<code>&oauth_error_detail=<text>`. For the dashboard; a path only (no scheme
    /// or host), so the callback never redirects off this origin.
    pub return_to: Option<String>,
}

/// The answer to an authorize request: send the browser to `authorize_url`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuthorizeResponse {
    pub authorize_url: String,
    /// Single use; the callback must bring it back before `expires_at`.
    pub state: String,
    pub expires_at: DateTime<Utc>,
}

/// The callback's query string, as the provider sends it.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    /// The provider's error (`access_denied` when the user declined).
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Errors of the OAuth routes: the API's own, or a problem specific to the flow.
#[derive(Debug)]
pub enum Failure {
    Api(ApiError),
    Problem(Problem),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Api(e.into())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Api(e) => e.into_response(),
            Failure::Problem(p) => p.into_response(),
        }
    }
}

fn invalid_state(detail: &str) -> Failure {
    Failure::Problem(
        Problem::new(StatusCode::BAD_REQUEST, "invalid_state", "Invalid or expired state")
            .with_detail(detail),
    )
}

/// A failed exchange or account lookup as a problem, logged once without secrets.
fn oauth_failure(provider: Provider, e: &OAuthError) -> Failure {
    tracing::warn!(%provider, error = %e, "OAuth connect failed");
    let p = match e {
        OAuthError::NotConfigured(_) => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "oauth_not_configured", "OAuth not configured")
                .with_detail(format!("this deployment has no OAuth app for {provider}"))
        }
        OAuthError::Rejected(_) => {
            Problem::new(StatusCode::BAD_REQUEST, "authorization_rejected", "Authorization rejected")
                .with_detail("the provider did not accept the authorization code; start again")
        }
        OAuthError::Unavailable(_) | OAuthError::Invalid(_) => {
            Problem::new(StatusCode::BAD_GATEWAY, "provider_unavailable", "Provider unavailable")
                .with_detail(format!("{provider} could not complete the authorization; start again"))
        }
    };
    Failure::Problem(p)
}

fn service(state: &ApiState, provider: Provider) -> Result<&OAuthService, Failure> {
    state.oauth.as_deref().ok_or_else(|| oauth_failure(provider, &OAuthError::NotConfigured(provider)))
}

/// Starts connecting a provider: answers the consent URL the browser goes to.
#[utoipa::path(
    post,
    path = "/v1/connections/oauth/{provider}/authorize",
    tag = "connections",
    params(("provider" = String, Path, description = "hubspot, salesforce, google or microsoft")),
    request_body = AuthorizeRequest,
    responses(
        (status = 200, body = AuthorizeResponse, description = "Send the browser to authorize_url"),
        (status = 503, body = Problem, content_type = "application/problem+json",
            description = "`oauth_not_configured`: no OAuth app for this provider or no registered redirect URI \
                (or `unavailable`: the store is failing; retry)"),
    )
)]
pub async fn authorize(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(provider): ApiPath<String>,
    ApiJson(body): ApiJson<AuthorizeRequest>,
) -> Result<Response, Failure> {
    let provider = Provider::parse(&provider).map_err(|_| invalid("unknown provider"))?;
    let oauth = service(&state, provider)?;
    if oauth.providers.redirect_uris().is_empty() {
        return Err(oauth_failure(provider, &OAuthError::NotConfigured(provider)));
    }
    let redirect_uri = body.redirect_uri.trim().trim_end_matches('/').to_owned();
    if !oauth.providers.redirect_uris().contains(&redirect_uri) {
        return Err(invalid("redirect_uri is not a registered redirect URI of this deployment").into());
    }
    if body.sandbox && provider != Provider::Salesforce {
        return Err(invalid("sandbox applies to salesforce only").into());
    }
    if body.interval_minutes.is_some_and(|i| !(MIN_INTERVAL_MINUTES..=MAX_INTERVAL_MINUTES).contains(&i)) {
        return Err(invalid(format!(
            "interval_minutes must be between {MIN_INTERVAL_MINUTES} and {MAX_INTERVAL_MINUTES}"
        ))
        .into());
    }
    // Validated even when absent: a Notion connection must name its deals database.
    body.settings.clone().unwrap_or_default().validate_for(provider).map_err(invalid)?;
    if body.return_to.as_deref().is_some_and(|path| !is_local_path(path)) {
        return Err(invalid("return_to must be a path of this deployment, such as /connections").into());
    }
    oauth.providers.check_configured(provider).map_err(|e| oauth_failure(provider, &e))?;
    let now = state.clock.now();
    let state_token = random_token();
    let verifier = oauth.providers.supports_pkce(provider).then(random_token);
    let challenge = verifier.as_ref().map(pkce_challenge);
    let authorize_url = oauth
        .providers
        .authorize_url(
            provider,
            body.sandbox,
            &redirect_uri,
            state_token.expose_secret(),
            challenge.as_deref(),
        )
        .map_err(|e| oauth_failure(provider, &e))?;
    let pending = PendingAuthorization {
        tenant_id: caller.tenant.clone(),
        subject: caller.subject.clone(),
        provider,
        sandbox: body.sandbox,
        redirect_uri,
        code_verifier: verifier,
        interval_minutes: body.interval_minutes,
        settings: body.settings,
        return_to: body.return_to,
        expires_at: PendingAuthorization::expires_at_from(now),
    };
    oauth.states.put_state(state_token.expose_secret(), &pending).await?;
    Ok(axum::Json(AuthorizeResponse {
        authorize_url,
        state: state_token.expose_secret().to_owned(),
        expires_at: pending.expires_at,
    })
    .into_response())
}

/// Where the provider sends the browser back: completes the connection.
#[utoipa::path(
    get,
    path = "/v1/oauth/callback",
    tag = "connections",
    params(CallbackQuery),
    responses(
        (status = 201, body = ConnectionView, description = "Connected",
            headers(("Location" = String, description = "The new connection's URL path"))),
        (status = 200, body = ConnectionView,
            description = "The tenant's connection to this provider account got the new credentials"),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "`invalid_state` (missing, unknown, used or expired state), `authorization_denied` \
                (the user declined), `authorization_failed` (another provider error), \
                `authorization_rejected` (the provider refused the code)"),
        (status = 502, body = Problem, content_type = "application/problem+json",
            description = "`provider_unavailable`: the provider failed; start again"),
        (status = 303, description = "The authorize request named `return_to`: the browser goes there with \
            `connected=<connection id>`, or with `oauth_error=<code>&oauth_error_detail=<text>` (the codes above)",
            headers(("Location" = String, description = "`return_to` with the outcome in its query string"))),
    )
)]
pub async fn callback(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<CallbackQuery>,
) -> Result<Response, Failure> {
    let oauth = state.oauth.as_deref().ok_or(Failure::Api(ApiError::NotFound))?;
    // Whatever happens next, a state that arrived is used up.
    let pending = match query.state.as_deref().filter(|s| is_well_formed_state(s)) {
        Some(s) => oauth.states.take_state(s).await?,
        None => None,
    };
    // Only a state we issued names where the browser goes back to; without one the answer is JSON.
    let return_to = pending.as_ref().and_then(|p| p.return_to.clone());
    let outcome = complete(&state, oauth, pending, query).await;
    let Some(return_to) = return_to else {
        return outcome.map(|c| c.into_response());
    };
    let query = match &outcome {
        Ok(connected) => vec![("connected", connected.view.id.to_string())],
        Err(failure) => {
            let (code, detail) = failure.code_and_detail();
            vec![("oauth_error", code), ("oauth_error_detail", detail)]
        }
    };
    let sep = if return_to.contains('?') { '&' } else { '?' };
    let location = format!(
        "{return_to}{sep}{}",
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(query).finish()
    );
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location), (header::CACHE_CONTROL, "no-store".to_owned())],
    )
        .into_response())
}

/// A path on this origin: starts with one `/` (not `//host` nor `/\\host`, which browsers take for
/// another host), printable, short.
fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.len() <= 512
        && path.chars().all(|c| c.is_ascii_graphic())
        && !path.contains('#')
}

/// The connection a callback made or gave new credentials.
struct Connected {
    view: ConnectionView,
    created: bool,
}

impl IntoResponse for Connected {
    fn into_response(self) -> Response {
        if self.created {
            let location = format!("/v1/connections/{}", self.view.id);
            (StatusCode::CREATED, [(header::LOCATION, location)], axum::Json(self.view)).into_response()
        } else {
            axum::Json(self.view).into_response()
        }
    }
}

impl Failure {
    /// The stable code and the detail of this failure, for a redirect's query string.
    fn code_and_detail(&self) -> (String, String) {
        let problem = match self {
            Failure::Problem(p) => p.clone(),
            Failure::Api(e) => {
                let problem = e.problem();
                if problem.status >= 500 {
                    tracing::error!(code = %problem.code, error = %super::problem::error_chain(e), "OAuth callback failed");
                }
                problem
            }
        };
        (problem.code.clone(), problem.detail.clone().unwrap_or_else(|| problem.title.clone()))
    }
}

/// The callback's work once the state is taken: the provider's answer, the code exchange, the
/// connection created or given the new credentials.
async fn complete(
    state: &ApiState,
    oauth: &OAuthService,
    pending: Option<PendingAuthorization>,
    query: CallbackQuery,
) -> Result<Connected, Failure> {
    if let Some(error) = query.error.as_deref() {
        let code = if error == "access_denied" { "authorization_denied" } else { "authorization_failed" };
        let safe = error.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && error.len() <= 64;
        let error = if safe { error } else { "an error" };
        let detail = if error == "access_denied" {
            "the user declined the authorization at the provider".to_owned()
        } else {
            format!("the provider answered {error}")
        };
        if let Some(p) = &pending {
            let now = state.clock.now();
            audit_refused(state, p, now, json!({ "provider": p.provider, "error": error })).await;
        }
        return Err(Failure::Problem(
            Problem::new(StatusCode::BAD_REQUEST, code, "Authorization not granted").with_detail(detail),
        ));
    }
    let Some(pending) = pending else {
        return Err(invalid_state("the state is unknown or was used already; start again"));
    };
    let now = state.clock.now();
    if pending.is_expired(now) {
        return Err(invalid_state("the state expired; start again"));
    }
    let code = query
        .code
        .filter(|c| !c.trim().is_empty() && c.len() <= 4096)
        .map(SecretString::from)
        .ok_or_else(|| Failure::Api(invalid("code is missing")))?;
    let provider = pending.provider;
    let grant = oauth
        .providers
        .exchange(provider, pending.sandbox, &pending.redirect_uri, &code, pending.code_verifier.as_ref())
        .await;
    let grant = match grant {
        Ok(grant) => grant,
        Err(e) => {
            audit_refused(state, &pending, now, json!({ "provider": provider, "error": e.to_string() }))
                .await;
            return Err(oauth_failure(provider, &e));
        }
    };
    let actor = format!("user:{}", pending.subject);

    let existing = state
        .connections
        .list(&pending.tenant_id)
        .await?
        .into_iter()
        .find(|c| c.provider == provider && c.account_id.as_deref() == Some(grant.account_id.as_str()));
    if let Some(mut connection) = existing {
        let previous_error = connection.last_error.take();
        connection.credentials = grant.credentials;
        let was_error = connection.status == ConnectionStatus::Error;
        if was_error {
            connection.status = ConnectionStatus::Pending;
        }
        connection.version = state.connections.save_state(&connection).await?;
        if was_error {
            let job_id = Job::requested_id(&connection.connection_id, JobReason::Manual);
            let job = Job::sync(
                pending.tenant_id.clone(),
                connection.connection_id.clone(),
                job_id,
                JobReason::Manual,
                now,
            );
            state.queue.enqueue(std::slice::from_ref(&job)).await.map_err(ApiError::from)?;
        }
        let entry = AuditEntry::new(
            pending.tenant_id.clone(),
            Operation::ConnectionReconnected,
            AuditOutcome::Success,
            actor,
            now,
        )
        .connection(&connection.connection_id)
        .detail(json!({
            "provider": provider,
            "account_id": grant.account_id,
            "sandbox": pending.sandbox,
            "previous_error": previous_error,
        }));
        state.audit.append(&[entry]).await?;
        return Ok(Connected { view: ConnectionView::from(&connection), created: false });
    }

    let new = NewConnection {
        provider,
        base_url: grant.base_url,
        credentials: grant.credentials,
        interval_minutes: pending.interval_minutes.unwrap_or(DEFAULT_INTERVAL_MINUTES),
        settings: pending.settings.unwrap_or_default(),
    };
    let mut connection = Connection::new(pending.tenant_id.clone(), new, now);
    connection.account_id = Some(grant.account_id);
    state.connections.create(&connection).await?;
    let entry = AuditEntry::new(
        pending.tenant_id.clone(),
        Operation::ConnectionCreated,
        AuditOutcome::Success,
        actor,
        now,
    )
    .connection(&connection.connection_id)
    .detail(json!({
        "provider": provider,
        "base_url": connection.base_url,
        "account_id": connection.account_id,
        "interval_minutes": connection.interval_minutes,
        "via": "oauth",
        "sandbox": pending.sandbox,
    }));
    state.audit.append(&[entry]).await?;
    Ok(Connected { view: ConnectionView::from(&connection), created: true })
}

/// Audits a connect that did not happen (`connection_created`, outcome `rejected`): the user
/// declined, or the provider refused the code. Best effort: the answer is the problem either way.
async fn audit_refused(
    state: &ApiState,
    pending: &PendingAuthorization,
    now: DateTime<Utc>,
    detail: serde_json::Value,
) {
    let entry = AuditEntry::new(
        pending.tenant_id.clone(),
        Operation::ConnectionCreated,
        AuditOutcome::Rejected,
        format!("user:{}", pending.subject),
        now,
    )
    .detail(detail);
    if let Err(e) = state.audit.append(&[entry]).await {
        tracing::error!(error = %super::problem::error_chain(&e), "could not audit a refused OAuth connect");
    }
}

/// Disconnects: stops the push channel, revokes the grant (best effort), erases the credentials
/// and takes the connection out of the schedule and the API.
#[utoipa::path(
    delete,
    path = "/v1/connections/{connection_id}",
    tag = "connections",
    params(("connection_id" = ConnectionId, Path, description = "A connection id of the caller's tenant (another tenant's: 404)")),
    responses(
        (status = 204, description = "Disconnected (also when it was disconnected already)"),
        (status = 409, response = super::problem::Conflict),
    )
)]
pub async fn disconnect(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, Failure> {
    let id = ConnectionId::parse(&id).map_err(|_| ApiError::NotFound)?;
    let Some(mut connection) = state.connections.get(&caller.tenant, &id).await? else {
        return if state.connections.was_disconnected(&caller.tenant, &id).await? {
            Ok(StatusCode::NO_CONTENT.into_response())
        } else {
            Err(ApiError::NotFound.into())
        };
    };
    let now = state.clock.now();
    let mut entries = Vec::new();
    let entry = |operation, outcome, detail: serde_json::Value| {
        AuditEntry::new(caller.tenant.clone(), operation, outcome, actor(&caller), now)
            .connection(&id)
            .detail(detail)
    };

    if let Some(channel) = &connection.push_channel {
        let stopped = match state.engine.providers.client(&connection) {
            Ok(client) => client.stop_channel(&connection.credentials.access_token, channel).await,
            Err(e) => Err(e),
        };
        entries.push(match stopped {
            Ok(()) => entry(Operation::ChannelStopped, AuditOutcome::Success, json!({ "channel_id": channel.id })),
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "stopping the push channel failed; it will expire");
                entry(
                    Operation::ChannelStopped,
                    AuditOutcome::Failure,
                    json!({ "channel_id": channel.id, "error": e.to_string(), "expires_at": channel.expires_at }),
                )
            }
        });
    }

    let revoked = match state.oauth.as_deref() {
        Some(oauth) => oauth.providers.revoke(&connection).await,
        None => Err(OAuthError::NotConfigured(connection.provider)),
    };
    entries.push(match revoked {
        Ok(r) => entry(
            Operation::TokenRevoked,
            AuditOutcome::Success,
            json!({ "provider": connection.provider, "result": r.as_str() }),
        ),
        Err(e) => {
            tracing::warn!(connection = %id, error = %e, "revoking the token failed; erasing it anyway");
            entry(
                Operation::TokenRevoked,
                AuditOutcome::Failure,
                json!({ "provider": connection.provider, "error": e.to_string() }),
            )
        }
    });

    // The worker may save the connection meanwhile (a sync in flight): re-read and try again.
    let mut attempts = 0;
    loop {
        match state.connections.disconnect(&connection, now).await {
            Ok(()) => break,
            Err(StoreError::Conflict) if attempts < 4 => {
                attempts += 1;
                match state.connections.get(&caller.tenant, &id).await? {
                    Some(c) => connection = c,
                    None => break,
                }
            }
            Err(e) => {
                let _ = state.audit.append(&entries).await;
                return Err(e.into());
            }
        }
    }
    entries.push(entry(
        Operation::ConnectionDisconnected,
        AuditOutcome::Success,
        json!({ "provider": connection.provider, "account_id": connection.account_id, "records": "kept" }),
    ));
    state.audit.append(&entries).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OAuthApp, OAuthEndpoints};
    use crate::http::test_harness::ApiHarness;
    use crate::ports::ConnectionStore;
    use axum::body::Body;
    use axum::http::{Method, Request};
    use chrono::TimeZone;
    use serde_json::Value;
    use tower::ServiceExt as _;

    const CALLBACK: &str = "https://api.example/v1/oauth/callback";

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).single().unwrap()
    }

    /// The API's harness with the OAuth flow on; `send` answers (status, JSON).
    struct Harness(ApiHarness);

    impl std::ops::Deref for Harness {
        type Target = ApiHarness;
        fn deref(&self) -> &ApiHarness {
            &self.0
        }
    }

    fn harness() -> Harness {
        let mut providers = crate::adapters::oauth::OAuthProviders::new(
            reqwest::Client::new(),
            OAuthEndpoints { redirect_uris: vec![CALLBACK.into()], ..OAuthEndpoints::default() },
        );
        let app = || Some(OAuthApp { client_id: "cid".into(), client_secret: SecretString::from("csecret") });
        providers.hubspot = app();
        providers.salesforce = app();
        Harness(ApiHarness::new(t0()).with_oauth(providers))
    }

    impl Harness {
        async fn send(
            &self,
            method: Method,
            uri: &str,
            tenant: Option<&str>,
            body: Option<Value>,
        ) -> (u16, Value) {
            let body = body.map(|b| b.to_string());
            let reply = self.0.send(method, uri, tenant, body.as_deref()).await;
            (reply.status.as_u16(), reply.json)
        }
    }

    #[tokio::test]
    async fn authorize_binds_a_single_use_state_to_tenant_provider_and_pkce_verifier() {
        let h = harness();
        let body = json!({ "redirect_uri": CALLBACK, "sandbox": true, "interval_minutes": 60 });
        let (status, started) = h
            .send(Method::POST, "/v1/connections/oauth/salesforce/authorize", Some("acme"), Some(body))
            .await;
        assert_eq!(status, 200, "{started}");
        let state = started["state"].as_str().unwrap().to_owned();
        let url = url::Url::parse(started["authorize_url"].as_str().unwrap()).unwrap();
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["state"], state);
        assert_eq!(url.host_str(), Some("test.salesforce.com"));
        let pending = h.store.take_state(&state).await.unwrap().expect("stored under the state");
        assert_eq!((pending.tenant_id.as_str(), pending.subject.as_str()), ("acme", "acme-user"));
        assert_eq!(
            (pending.provider, pending.sandbox, pending.interval_minutes),
            (Provider::Salesforce, true, Some(60))
        );
        let verifier = pending.code_verifier.expect("salesforce uses PKCE");
        assert_eq!(q["code_challenge"], pkce_challenge(&verifier));
        assert!(!started.to_string().contains(verifier.expose_secret()), "the verifier stays server-side");
        assert_eq!(pending.expires_at, t0() + chrono::Duration::minutes(10));
        assert!(h.store.take_state(&state).await.unwrap().is_none(), "single use");

        let (_, hs) = h
            .send(
                Method::POST,
                "/v1/connections/oauth/hubspot/authorize",
                Some("acme"),
                Some(json!({ "redirect_uri": CALLBACK })),
            )
            .await;
        let pending = h.store.take_state(hs["state"].as_str().unwrap()).await.unwrap().unwrap();
        assert!(pending.code_verifier.is_none(), "HubSpot has no PKCE");
    }

    #[tokio::test]
    async fn with_return_to_the_callback_sends_the_browser_back_to_that_path_with_the_outcome() {
        let h = harness();
        let body = json!({ "redirect_uri": CALLBACK, "return_to": "/connections?tab=all" });
        let (status, started) =
            h.send(Method::POST, "/v1/connections/oauth/hubspot/authorize", Some("acme"), Some(body)).await;
        assert_eq!(status, 200, "{started}");
        let state = started["state"].as_str().unwrap();
        let uri = format!("/v1/oauth/callback?error=access_denied&state={state}");
        let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let response = h.app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let location = response.headers()[header::LOCATION].to_str().unwrap();
        assert!(
            location.starts_with(
                "/connections?tab=all&oauth_error=authorization_denied&oauth_error_detail=the+user+declined"
            ),
            "{location}"
        );

        // Without a state of ours there is no trusted place to go: the problem, as JSON.
        let (status, body) =
            h.send(Method::GET, "/v1/oauth/callback?error=access_denied&state=x", None, None).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("authorization_denied")), "{body}");
    }

    #[tokio::test]
    async fn return_to_must_be_a_path_of_this_origin() {
        let h = harness();
        for bad in
            ["https://evil.example/x", "//evil.example", "/\\evil.example", "connections", "/a b", "/x#y"]
        {
            let body = json!({ "redirect_uri": CALLBACK, "return_to": bad });
            let (status, problem) = h
                .send(Method::POST, "/v1/connections/oauth/hubspot/authorize", Some("acme"), Some(body))
                .await;
            assert_eq!(
                (status, problem["code"].as_str()),
                (422, Some("invalid_request")),
                "{bad}: {problem}"
            );
        }
    }

    #[tokio::test]
    async fn an_expired_state_is_refused_before_any_exchange_and_creates_nothing() {
        let h = harness();
        let (_, started) = h
            .send(
                Method::POST,
                "/v1/connections/oauth/hubspot/authorize",
                Some("acme"),
                Some(json!({ "redirect_uri": CALLBACK })),
            )
            .await;
        let state = started["state"].as_str().unwrap().to_owned();
        h.clock.advance(chrono::Duration::minutes(10));
        let (status, body) =
            h.send(Method::GET, &format!("/v1/oauth/callback?code=c&state={state}"), None, None).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_state")), "{body}");
        assert!(body["detail"].as_str().unwrap().contains("expired"));
        assert!(h.store.list(&crate::domain::TenantId::parse("acme").unwrap()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_provider_without_an_app_is_oauth_not_configured() {
        let h = harness();
        let (status, body) = h
            .send(
                Method::POST,
                "/v1/connections/oauth/google/authorize",
                Some("acme"),
                Some(json!({ "redirect_uri": CALLBACK })),
            )
            .await;
        assert_eq!((status, body["code"].as_str()), (503, Some("oauth_not_configured")), "{body}");
    }

    #[tokio::test]
    async fn deleting_a_connection_that_never_existed_is_404_and_one_disconnected_is_204() {
        let h = harness();
        let (status, _) = h.send(Method::DELETE, "/v1/connections/nope", Some("acme"), None).await;
        assert_eq!(status, 404);
        let connection = Connection::new(
            crate::domain::TenantId::parse("acme").unwrap(),
            NewConnection {
                provider: Provider::Microsoft,
                base_url: "http://127.0.0.1:9".into(),
                credentials: crate::domain::Credentials {
                    access_token: SecretString::from("a"),
                    refresh_token: None,
                    expires_at: None,
                },
                interval_minutes: 15,
                settings: ConnectionSettings::default(),
            },
            t0(),
        );
        h.store.create(&connection).await.unwrap();
        let path = format!("/v1/connections/{}", connection.connection_id);
        for _ in 0..2 {
            let (status, _) = h.send(Method::DELETE, &path, Some("acme"), None).await;
            assert_eq!(status, 204);
        }
        let (status, _) = h.send(Method::DELETE, &path, Some("globex"), None).await;
        assert_eq!(status, 404, "another tenant's id is not found");
        let (status, _) = h.send(Method::GET, &path, Some("acme"), None).await;
        assert_eq!(status, 404);
    }
}
