//! The OAuth 2.0 authorization-code flow at each provider: the authorize URL, the code exchange
//! (`authorization_code` grant), the account behind the new token, and token revocation.
//!
//! - HubSpot: authorize at `app.hubspot.com/oauth/authorize` (no PKCE), token at
//!   `{api}/oauth/v1/token`, account = `hub_id` of `GET {api}/oauth/v1/access-tokens/{token}`,
//!   revoke `DELETE {api}/oauth/v1/refresh-tokens/{refresh_token}`.
//! - Salesforce: `{login}/services/oauth2/authorize` and `/token` with PKCE, at the production or
//!   sandbox login host; account = the org id in the token response's `id` URL
//!   (`.../id/{org}/{user}`); the connection's `base_url` = `instance_url`; revoke
//!   `POST {base_url}/services/oauth2/revoke`.
//! - Google: `accounts.google.com/o/oauth2/v2/auth` (offline access, PKCE), token at
//!   `GOOGLE_TOKEN_URL`, account = the id of `calendars/primary` (the owner's email), revoke
//!   `POST oauth2.googleapis.com/revoke`.
//! - Microsoft: `{login}/{tenant}/oauth2/v2.0/authorize` and `/token` (PKCE), account = `id` of
//!   `GET /v1.0/me`; Microsoft has no revocation endpoint for a token.
//! - Notion (a public integration): `{api}/v1/oauth/authorize` with `owner=user` (no scopes, no
//!   PKCE), token at `POST {api}/v1/oauth/token` with HTTP Basic client credentials and a JSON
//!   body (<https://developers.notion.com/reference/create-a-token>); account = the answer's
//!   `workspace_id`; the connection's `base_url` = `NOTION_API_BASE_URL`; revoke `POST
//!   {api}/v1/oauth/revoke` (<https://developers.notion.com/reference/revoke-token>).

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use super::provider_http::{Call, Dialect, ProviderHttp, Reply, RetryPolicy};
use crate::config::{OAuthApp, OAuthEndpoints};
use crate::domain::{Connection, Credentials, Provider};
use crate::ports::ProviderError;

/// How long one provider call may take before the flow gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

pub use crate::ports::{Grant, OAuthError, Revocation};

/// The OAuth apps and endpoints of every provider. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OAuthProviders {
    http: reqwest::Client,
    net: ProviderHttp<OAuthDialect>,
    pub endpoints: OAuthEndpoints,
    pub hubspot: Option<OAuthApp>,
    pub salesforce: Option<OAuthApp>,
    pub google: Option<OAuthApp>,
    pub microsoft: Option<OAuthApp>,
    pub notion: Option<OAuthApp>,
    /// Google's token endpoint (`GOOGLE_TOKEN_URL`).
    pub google_token_url: String,
    /// The token endpoint of Drive connections (`DRIVE_TOKEN_URL`; Google's by default).
    pub drive_token_url: String,
    /// Microsoft's identity platform (`MICROSOFT_LOGIN_BASE_URL`) and directory (`MICROSOFT_TENANT`).
    pub microsoft_login_base_url: String,
    pub microsoft_tenant: String,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
    /// Notion: the workspace the integration was added to (the connection's account).
    #[serde(default)]
    workspace_id: Option<String>,
    /// Salesforce: the org's API host.
    #[serde(default)]
    instance_url: Option<String>,
    /// Salesforce: `https://login.salesforce.com/id/{org id}/{user id}`.
    #[serde(default)]
    id: Option<String>,
}

fn enc(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// The OAuth endpoints' answers: RFC 6749's `error` (HubSpot's `status`) and description. The
/// connect flow's requests go through the shared send path like every provider request.
#[derive(Debug, Clone, Copy, Default)]
pub struct OAuthDialect;

impl Dialect for OAuthDialect {
    fn name(&self) -> &'static str {
        "the provider's OAuth endpoint"
    }

    fn metric_label(&self) -> &'static str {
        "oauth"
    }

    fn error_detail(&self, reply: &Reply) -> (Option<String>, Option<String>) {
        let body = reply.json_value();
        let field =
            |name: &str| body.as_ref().and_then(|b| b.get(name)).and_then(Value::as_str).map(str::to_owned);
        (field("error").or_else(|| field("status")), field("error_description").or_else(|| field("message")))
    }
}

/// A request that could not be completed (transport, throttling, an outage): only its class and
/// our code are kept (no URL: HubSpot's token-info path carries the token).
fn unavailable(e: ProviderError) -> OAuthError {
    let kind = e.provider_code().unwrap_or(e.class().as_str()).to_owned();
    OAuthError::Unavailable(kind)
}

/// The JSON body of a successful answer.
fn json_body(response: &Reply, what: &str) -> Result<Value, OAuthError> {
    let status = response.status;
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(OAuthError::Unavailable(format!("{what} answered {status}")));
    }
    if !status.is_success() {
        return Err(OAuthError::Rejected(format!("{what} answered {status}")));
    }
    response.json_value().ok_or_else(|| OAuthError::Invalid(format!("{what} is not JSON")))
}

/// An http(s) URL with a host, as a base URL without its trailing slash.
fn base_url(raw: &str, what: &str) -> Result<String, OAuthError> {
    match url::Url::parse(raw.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() && u.query().is_none() => {
            Ok(raw.trim().trim_end_matches('/').to_owned())
        }
        _ => Err(OAuthError::Invalid(format!("{what} is not an http(s) URL"))),
    }
}

/// The org id in a Salesforce identity URL `.../id/{org}/{user}`.
pub fn salesforce_org_id(id_url: &str) -> Option<String> {
    let url = url::Url::parse(id_url).ok()?;
    let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., "id", org, _user]
            if (org.len() == 15 || org.len() == 18) && org.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            Some((*org).to_owned())
        }
        _ => None,
    }
}

impl OAuthProviders {
    pub fn new(http: reqwest::Client, endpoints: OAuthEndpoints) -> Self {
        let policy = RetryPolicy { request_timeout: CALL_TIMEOUT, max_retries: 2, ..RetryPolicy::default() };
        Self {
            net: ProviderHttp::new(http.clone(), OAuthDialect, policy),
            http,
            endpoints,
            hubspot: None,
            salesforce: None,
            google: None,
            microsoft: None,
            notion: None,
            google_token_url: crate::adapters::google::DEFAULT_TOKEN_URL.to_owned(),
            drive_token_url: crate::adapters::google::DEFAULT_TOKEN_URL.to_owned(),
            microsoft_login_base_url: crate::adapters::graph::DEFAULT_LOGIN_BASE.to_owned(),
            microsoft_tenant: "common".to_owned(),
        }
    }

    /// From the deployment's config.
    pub fn from_config(http: reqwest::Client, config: &crate::config::Config) -> Self {
        Self {
            hubspot: config.hubspot_app.clone(),
            salesforce: config.salesforce_app.clone(),
            google: config.google_app.clone(),
            microsoft: config.microsoft_app.clone(),
            notion: config.notion_app.clone(),
            google_token_url: config.google_token_url.clone(),
            drive_token_url: config.drive_token_url.clone(),
            microsoft_login_base_url: config.microsoft_login_base_url.clone(),
            microsoft_tenant: config.microsoft_tenant.clone(),
            ..Self::new(http, config.oauth.clone())
        }
    }

    pub fn app(&self, provider: Provider) -> Result<&OAuthApp, OAuthError> {
        match provider {
            Provider::Hubspot => self.hubspot.as_ref(),
            Provider::Salesforce => self.salesforce.as_ref(),
            Provider::Google | Provider::Gmail | Provider::GoogleDrive => self.google.as_ref(),
            Provider::Microsoft => self.microsoft.as_ref(),
            // Without a public integration, Notion connects with an integration token only.
            Provider::Notion => self.notion.as_ref(),
            // Fireflies connects with an API key (`POST /v1/connections`).
            Provider::Fireflies => None,
        }
        .ok_or(OAuthError::NotConfigured(provider))
    }

    /// True where the provider supports PKCE (RFC 7636, `S256`); HubSpot and Notion do not.
    pub fn supports_pkce(provider: Provider) -> bool {
        !matches!(provider, Provider::Hubspot | Provider::Notion)
    }

    fn notion_endpoint(&self, what: &str) -> String {
        format!("{}/v1/oauth/{what}", self.endpoints.notion_api_base_url.trim_end_matches('/'))
    }

    fn salesforce_login(&self, sandbox: bool) -> &str {
        if sandbox {
            &self.endpoints.salesforce_sandbox_login_url
        } else {
            &self.endpoints.salesforce_login_url
        }
    }

    fn microsoft_endpoint(&self, what: &str) -> String {
        format!(
            "{}/{}/oauth2/v2.0/{what}",
            self.microsoft_login_base_url.trim_end_matches('/'),
            enc(&self.microsoft_tenant)
        )
    }

    /// Where to send the browser: the provider's consent page for this app, coming back to
    /// `redirect_uri` with `code` and `state`.
    pub fn authorize_url(
        &self,
        provider: Provider,
        sandbox: bool,
        redirect_uri: &str,
        state: &str,
        code_challenge: Option<&str>,
    ) -> Result<String, OAuthError> {
        let app = self.app(provider)?;
        let e = &self.endpoints;
        let (base, scope) = match provider {
            Provider::Hubspot => (e.hubspot_authorize_url.clone(), e.hubspot_scopes.as_str()),
            Provider::Salesforce => (
                format!("{}/services/oauth2/authorize", self.salesforce_login(sandbox)),
                e.salesforce_scopes.as_str(),
            ),
            Provider::Google => (e.google_authorize_url.clone(), e.google_scopes.as_str()),
            Provider::Gmail => (e.gmail.authorize_url.clone(), e.gmail.scopes.as_str()),
            Provider::GoogleDrive => (e.drive_authorize_url.clone(), e.drive_scopes.as_str()),
            Provider::Microsoft => (self.microsoft_endpoint("authorize"), e.microsoft_scopes.as_str()),
            // Notion's capabilities are set on the integration, not asked for: no scope.
            Provider::Notion => (self.notion_endpoint("authorize"), ""),
            Provider::Fireflies => return Err(OAuthError::NotConfigured(provider)),
        };
        let mut url = url::Url::parse(&base).map_err(|_| OAuthError::Invalid("authorize URL".into()))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code");
            q.append_pair("client_id", &app.client_id);
            q.append_pair("redirect_uri", redirect_uri);
            if !scope.is_empty() {
                q.append_pair("scope", scope);
            }
            q.append_pair("state", state);
            if let Some(challenge) = code_challenge {
                q.append_pair("code_challenge", challenge);
                q.append_pair("code_challenge_method", "S256");
            }
            match provider {
                // A refresh token, and a consent screen every time so Google issues it again.
                Provider::Google | Provider::Gmail | Provider::GoogleDrive => {
                    q.append_pair("access_type", "offline");
                    q.append_pair("prompt", "consent");
                    q.append_pair("include_granted_scopes", "true");
                }
                Provider::Microsoft => {
                    q.append_pair("response_mode", "query");
                }
                // The user adds the integration to their own workspace (the only owner Notion takes).
                Provider::Notion => {
                    q.append_pair("owner", "user");
                }
                _ => {}
            }
        }
        Ok(url.into())
    }

    /// Exchanges `code` (authorization_code grant, with the same `redirect_uri` and the PKCE
    /// verifier), then asks the provider which account the token belongs to.
    pub async fn exchange(
        &self,
        provider: Provider,
        sandbox: bool,
        redirect_uri: &str,
        code: &SecretString,
        verifier: Option<&SecretString>,
    ) -> Result<Grant, OAuthError> {
        let app = self.app(provider)?;
        let token_url = match provider {
            Provider::Hubspot => format!("{}/oauth/v1/token", self.endpoints.hubspot_api_base_url),
            Provider::Salesforce => format!("{}/services/oauth2/token", self.salesforce_login(sandbox)),
            Provider::Google => self.google_token_url.clone(),
            Provider::Gmail => self.endpoints.gmail.token_url.clone(),
            Provider::GoogleDrive => self.drive_token_url.clone(),
            Provider::Microsoft => self.microsoft_endpoint("token"),
            Provider::Notion => self.notion_endpoint("token"),
            Provider::Fireflies => return Err(OAuthError::NotConfigured(provider)),
        };
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
            ("redirect_uri", redirect_uri),
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.expose_secret()),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v.expose_secret()));
        }
        if provider == Provider::Microsoft {
            form.push(("scope", self.endpoints.microsoft_scopes.as_str()));
        }
        // A code is single use: the exchange is never repeated in place.
        let response = self
            .net
            .send(Call::write("oauth.token"), || {
                let request = self.http.post(&token_url).header("Accept", "application/json");
                if provider == Provider::Notion {
                    // HTTP Basic client credentials and a JSON body.
                    let body = serde_json::json!({
                        "grant_type": "authorization_code",
                        "code": code.expose_secret(),
                        "redirect_uri": redirect_uri,
                    });
                    request
                        .basic_auth(&app.client_id, Some(app.client_secret.expose_secret()))
                        .header("Notion-Version", crate::adapters::notion::API_VERSION)
                        .json(&body)
                } else {
                    request.form(&form)
                }
            })
            .await
            .map_err(unavailable)?;
        let status = response.status;
        let body: Value = response.json_value().unwrap_or(Value::Null);
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(OAuthError::Unavailable(format!("token endpoint answered {status}")));
        }
        if !status.is_success() {
            // OAuth error codes (`invalid_grant`, ...) and HubSpot's `status`: safe to keep.
            let code = body
                .get("error")
                .or_else(|| body.get("status"))
                .and_then(Value::as_str)
                .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
                .unwrap_or("unknown");
            return Err(OAuthError::Rejected(format!("token endpoint answered {status} ({code})")));
        }
        let reply: TokenReply = serde_json::from_value(body)
            .map_err(|_| OAuthError::Invalid("the token response has no access_token".into()))?;
        let access_token = SecretString::from(reply.access_token.clone());
        let credentials = Credentials {
            access_token: access_token.clone(),
            refresh_token: reply.refresh_token.clone().map(SecretString::from),
            expires_at: reply
                .expires_in
                .filter(|s| *s > 0)
                .map(|s| Utc::now() + chrono::Duration::seconds(s)),
        };
        let (account_id, base) = match provider {
            Provider::Hubspot => {
                (self.hubspot_account(&access_token).await?, self.endpoints.hubspot_api_base_url.clone())
            }
            Provider::Salesforce => {
                let instance = reply
                    .instance_url
                    .as_deref()
                    .ok_or_else(|| OAuthError::Invalid("no instance_url in the token response".into()))?;
                let org =
                    reply.id.as_deref().and_then(salesforce_org_id).ok_or_else(|| {
                        OAuthError::Invalid("no org id in the token response's id URL".into())
                    })?;
                (org, base_url(instance, "instance_url")?)
            }
            Provider::Google => {
                let url = format!("{}/calendars/primary", self.endpoints.google_api_base_url);
                (
                    self.account_field(&url, &access_token, "id").await?,
                    self.endpoints.google_api_base_url.clone(),
                )
            }
            Provider::Gmail => {
                // The mailbox's address: the account Gmail's push notifications name.
                let base = self.endpoints.gmail.api_base_url.trim_end_matches('/').to_owned();
                let url = format!("{base}/users/me/profile");
                (self.account_field(&url, &access_token, "emailAddress").await?, base)
            }
            Provider::GoogleDrive => {
                // The Drive user's address (`about.get` wants `fields`).
                let base = self.endpoints.drive_api_base_url.trim_end_matches('/');
                let url = format!("{base}/about?fields=user(emailAddress)");
                let about = self.account_json(&url, &access_token).await?;
                let email = about
                    .pointer("/user/emailAddress")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty() && s.len() <= 256)
                    .ok_or_else(|| {
                        OAuthError::Invalid("the account lookup has no user.emailAddress".into())
                    })?;
                (email.to_owned(), base.to_owned())
            }
            Provider::Microsoft => {
                let graph = self.endpoints.microsoft_graph_base_url.trim_end_matches('/');
                let url = format!("{graph}/v1.0/me");
                (self.account_field(&url, &access_token, "id").await?, graph.to_owned())
            }
            Provider::Notion => {
                let workspace = reply
                    .workspace_id
                    .filter(|w| !w.is_empty() && w.len() <= 64)
                    .ok_or_else(|| OAuthError::Invalid("no workspace_id in the token response".into()))?;
                (workspace, self.endpoints.notion_api_base_url.trim_end_matches('/').to_owned())
            }
            Provider::Fireflies => return Err(OAuthError::NotConfigured(provider)),
        };
        Ok(Grant { credentials, account_id, base_url: base })
    }

    /// HubSpot's token info: the portal (`hub_id`) the token belongs to.
    async fn hubspot_account(&self, token: &SecretString) -> Result<String, OAuthError> {
        let url = format!(
            "{}/oauth/v1/access-tokens/{}",
            self.endpoints.hubspot_api_base_url,
            enc(token.expose_secret())
        );
        let response = self
            .net
            .send(Call::read("oauth.token_info"), || self.http.get(&url))
            .await
            .map_err(unavailable)?;
        let body = json_body(&response, "token info")?;
        match body.get("hub_id") {
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(OAuthError::Invalid("token info has no hub_id".into())),
        }
    }

    /// A JSON resource read with the new token.
    async fn account_json(&self, url: &str, token: &SecretString) -> Result<Value, OAuthError> {
        let response = self
            .net
            .send(Call::read("oauth.account"), || self.http.get(url).bearer_auth(token.expose_secret()))
            .await
            .map_err(unavailable)?;
        json_body(&response, "account lookup")
    }

    /// One string field of a JSON resource read with the new token.
    async fn account_field(
        &self,
        url: &str,
        token: &SecretString,
        field: &str,
    ) -> Result<String, OAuthError> {
        let body = self.account_json(url, token).await?;
        body.get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .map(str::to_owned)
            .ok_or_else(|| OAuthError::Invalid(format!("the account lookup has no {field}")))
    }

    /// Revokes the connection's grant at the provider: the refresh token where there is one (it
    /// takes its access tokens with it at Salesforce and Google), else the access token.
    pub async fn revoke(&self, connection: &Connection) -> Result<Revocation, OAuthError> {
        let creds = &connection.credentials;
        let base = connection.base_url.trim_end_matches('/');
        // (DELETE url) or (POST url, token form).
        let (delete, url, token) = match connection.provider {
            Provider::Hubspot => {
                // Only OAuth grants have a refresh token; a private-app token cannot be revoked.
                let Some(refresh) = &creds.refresh_token else {
                    return Ok(Revocation::NotSupported);
                };
                (true, format!("{base}/oauth/v1/refresh-tokens/{}", enc(refresh.expose_secret())), None)
            }
            Provider::Salesforce => {
                let token = creds.refresh_token.as_ref().unwrap_or(&creds.access_token);
                (false, format!("{base}/services/oauth2/revoke"), Some(token))
            }
            Provider::Google => {
                let token = creds.refresh_token.as_ref().unwrap_or(&creds.access_token);
                (false, self.endpoints.google_revoke_url.clone(), Some(token))
            }
            Provider::Gmail => {
                let token = creds.refresh_token.as_ref().unwrap_or(&creds.access_token);
                (false, self.endpoints.gmail.revoke_url.clone(), Some(token))
            }
            Provider::GoogleDrive => {
                let token = creds.refresh_token.as_ref().unwrap_or(&creds.access_token);
                (false, self.endpoints.drive_revoke_url.clone(), Some(token))
            }
            // Microsoft has no revocation endpoint; a Fireflies API key is revoked in its
            // Developer settings.
            Provider::Microsoft | Provider::Fireflies => return Ok(Revocation::NotSupported),
            Provider::Notion => return self.revoke_notion(connection).await,
        };
        let response = self
            .net
            .send(Call::idempotent_write("oauth.revoke"), || match token {
                Some(t) if !delete => self.http.post(&url).form(&[("token", t.expose_secret())]),
                _ => self.http.delete(&url),
            })
            .await
            .map_err(unavailable)?;
        revocation(response.status)
    }

    /// Notion: an OAuth grant (it has a refresh token) is revoked with the integration's Basic
    /// credentials; an internal integration token only by the workspace owner in Notion.
    async fn revoke_notion(&self, connection: &Connection) -> Result<Revocation, OAuthError> {
        let (Some(_), Ok(app)) = (&connection.credentials.refresh_token, self.app(Provider::Notion)) else {
            return Ok(Revocation::NotSupported);
        };
        let url = format!("{}/v1/oauth/revoke", connection.base_url.trim_end_matches('/'));
        let body = serde_json::json!({ "token": connection.credentials.access_token.expose_secret() });
        let response = self
            .net
            .send(Call::idempotent_write("oauth.revoke"), || {
                self.http
                    .post(&url)
                    .basic_auth(&app.client_id, Some(app.client_secret.expose_secret()))
                    .header("Notion-Version", crate::adapters::notion::API_VERSION)
                    .json(&body)
            })
            .await
            .map_err(unavailable)?;
        revocation(response.status)
    }
}

/// What a revocation endpoint's status means.
fn revocation(status: StatusCode) -> Result<Revocation, OAuthError> {
    match status {
        s if s.is_success() => Ok(Revocation::Revoked),
        // HubSpot 404: unknown refresh token; Salesforce and Google 400 `invalid_token`.
        StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => Ok(Revocation::AlreadyInvalid),
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            Err(OAuthError::Unavailable(format!("revocation answered {s}")))
        }
        s => Err(OAuthError::Rejected(format!("revocation answered {s}"))),
    }
}

#[async_trait::async_trait]
impl crate::ports::OAuthConnector for OAuthProviders {
    fn redirect_uris(&self) -> &[String] {
        &self.endpoints.redirect_uris
    }

    fn check_configured(&self, provider: Provider) -> Result<(), OAuthError> {
        self.app(provider).map(|_| ())
    }

    fn supports_pkce(&self, provider: Provider) -> bool {
        OAuthProviders::supports_pkce(provider)
    }

    fn authorize_url(
        &self,
        provider: Provider,
        sandbox: bool,
        redirect_uri: &str,
        state: &str,
        code_challenge: Option<&str>,
    ) -> Result<String, OAuthError> {
        OAuthProviders::authorize_url(self, provider, sandbox, redirect_uri, state, code_challenge)
    }

    async fn exchange(
        &self,
        provider: Provider,
        sandbox: bool,
        redirect_uri: &str,
        code: &SecretString,
        verifier: Option<&SecretString>,
    ) -> Result<Grant, OAuthError> {
        OAuthProviders::exchange(self, provider, sandbox, redirect_uri, code, verifier).await
    }

    async fn revoke(&self, connection: &Connection) -> Result<Revocation, OAuthError> {
        OAuthProviders::revoke(self, connection).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn providers() -> OAuthProviders {
        let mut p = OAuthProviders::new(reqwest::Client::new(), OAuthEndpoints::default());
        for app in [&mut p.hubspot, &mut p.salesforce, &mut p.google, &mut p.microsoft, &mut p.notion] {
            *app = Some(OAuthApp { client_id: "cid".into(), client_secret: SecretString::from("csecret") });
        }
        p
    }

    fn query(url: &str) -> std::collections::HashMap<String, String> {
        url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
    }

    #[test]
    fn salesforce_org_ids_come_from_the_identity_url() {
        assert_eq!(
            salesforce_org_id("https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001SwiUAAS")
                .as_deref(),
            Some("00Dxx0000001gPLEAY")
        );
        for bad in
            ["https://login.salesforce.com/id/", "not a url", "https://x/id/00D!x/005", "https://x/other/a/b"]
        {
            assert_eq!(salesforce_org_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn authorize_urls_carry_client_redirect_state_scopes_and_pkce_where_supported() {
        let p = providers();
        let hs = p.authorize_url(Provider::Hubspot, false, "https://app.example/cb", "st", None).unwrap();
        assert!(hs.starts_with("https://app.hubspot.com/oauth/authorize?"), "{hs}");
        let q = query(&hs);
        assert_eq!(
            (q["client_id"].as_str(), q["redirect_uri"].as_str(), q["state"].as_str()),
            ("cid", "https://app.example/cb", "st")
        );
        assert!(q["scope"].contains("crm.objects.contacts.read"));
        assert!(!hs.contains("csecret"));

        let sf = p
            .authorize_url(Provider::Salesforce, true, "https://app.example/cb", "st", Some("chal"))
            .unwrap();
        assert!(sf.starts_with("https://test.salesforce.com/services/oauth2/authorize?"), "{sf}");
        assert_eq!(
            (query(&sf)["code_challenge"].as_str(), query(&sf)["code_challenge_method"].as_str()),
            ("chal", "S256")
        );
        let prod =
            p.authorize_url(Provider::Salesforce, false, "https://app.example/cb", "st", None).unwrap();
        assert!(prod.starts_with("https://login.salesforce.com/"), "{prod}");

        let g = p.authorize_url(Provider::Google, false, "https://app.example/cb", "st", Some("c")).unwrap();
        assert_eq!(query(&g)["access_type"], "offline");
        let m =
            p.authorize_url(Provider::Microsoft, false, "https://app.example/cb", "st", Some("c")).unwrap();
        assert!(m.starts_with("https://login.microsoftonline.com/common/oauth2/v2.0/authorize?"), "{m}");
        assert!(query(&m)["scope"].contains("offline_access"));
    }

    #[test]
    fn gmail_authorizes_on_the_google_app_with_gmail_scopes_and_offline_access() {
        let p = providers();
        let g = p.authorize_url(Provider::Gmail, false, "https://app.example/cb", "st", Some("c")).unwrap();
        assert!(g.starts_with("https://accounts.google.com/o/oauth2/v2/auth?"), "{g}");
        let q = query(&g);
        assert_eq!(q["client_id"], p.app(Provider::Google).unwrap().client_id);
        assert_eq!(q["scope"], "https://www.googleapis.com/auth/gmail.modify");
        assert_eq!((q["access_type"].as_str(), q["code_challenge_method"].as_str()), ("offline", "S256"));
    }

    #[test]
    fn notion_authorizes_for_the_users_workspace_without_scopes_or_pkce() {
        let p = providers();
        let n = p.authorize_url(Provider::Notion, false, "https://app.example/cb", "st", None).unwrap();
        assert!(n.starts_with("https://api.notion.com/v1/oauth/authorize?"), "{n}");
        let q = query(&n);
        assert_eq!(
            (q["client_id"].as_str(), q["response_type"].as_str(), q["owner"].as_str(), q["state"].as_str()),
            ("cid", "code", "user", "st")
        );
        assert!(!q.contains_key("scope") && !n.contains("csecret"));
        assert!(!OAuthProviders::supports_pkce(Provider::Notion));
        let none = OAuthProviders::new(reqwest::Client::new(), OAuthEndpoints::default());
        assert!(matches!(none.app(Provider::Notion), Err(OAuthError::NotConfigured(Provider::Notion))));
    }

    #[test]
    fn a_provider_without_an_app_is_not_configured() {
        let p = OAuthProviders::new(reqwest::Client::new(), OAuthEndpoints::default());
        assert!(matches!(
            p.authorize_url(Provider::Google, false, "https://a/cb", "s", None),
            Err(OAuthError::NotConfigured(Provider::Google))
        ));
    }
}
