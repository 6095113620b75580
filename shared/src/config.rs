//! Typed configuration, read once from the environment that template.yaml (or the local runner) sets.

use std::env;

use secrecy::SecretString;

use crate::adapters::{drive, google, graph, hubspot, salesforce};
use crate::domain::Provider;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Names of the AWS resources the functions use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub table_name: String,
    pub audit_table_name: String,
    pub jobs_queue_url: String,
    pub event_bus_name: String,
}

/// An OAuth app's client credentials at one provider (needed to refresh tokens).
#[derive(Debug, Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: SecretString,
}

/// Where each provider's OAuth 2.0 authorization-code flow happens, and what it asks for. Every URL
/// is configuration (the defaults are the real providers; the local stack points them at the
/// fakes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthEndpoints {
    /// `OAUTH_REDIRECT_URIS`: the redirect URIs registered with the providers' apps (comma
    /// separated); `authorize` accepts only these. Empty: the OAuth connect flow is off.
    pub redirect_uris: Vec<String>,
    /// `HUBSPOT_AUTHORIZE_URL` (default `https://app.hubspot.com/oauth/authorize`).
    pub hubspot_authorize_url: String,
    /// `HUBSPOT_API_BASE_URL` (default `https://api.hubapi.com`): token exchange, token info,
    /// revocation, and the connection's `base_url`.
    pub hubspot_api_base_url: String,
    /// `HUBSPOT_OAUTH_SCOPES` (space separated).
    pub hubspot_scopes: String,
    /// `SALESFORCE_LOGIN_URL` (default `https://login.salesforce.com`): production orgs.
    pub salesforce_login_url: String,
    /// `SALESFORCE_SANDBOX_LOGIN_URL` (default `https://test.salesforce.com`): sandboxes.
    pub salesforce_sandbox_login_url: String,
    pub salesforce_scopes: String,
    /// `GOOGLE_AUTHORIZE_URL` (default `https://accounts.google.com/o/oauth2/v2/auth`).
    pub google_authorize_url: String,
    /// `GOOGLE_REVOKE_URL` (default `https://oauth2.googleapis.com/revoke`).
    pub google_revoke_url: String,
    /// `GOOGLE_API_BASE_URL` (default `https://www.googleapis.com/calendar/v3`): the connection's
    /// `base_url`, and where the calendar owner is read.
    pub google_api_base_url: String,
    pub google_scopes: String,
    /// Google Drive connections use Google's OAuth app with their own scopes
    /// (`DRIVE_OAUTH_SCOPES`, default `drive.metadata.readonly`). `DRIVE_AUTHORIZE_URL` and
    /// `DRIVE_REVOKE_URL` default to Google's (the same endpoints as Calendar's; the local stack
    /// points them at the Drive fake).
    pub drive_authorize_url: String,
    pub drive_revoke_url: String,
    /// `DRIVE_API_BASE_URL` (default `https://www.googleapis.com/drive/v3`): the connection's
    /// `base_url`, and where the account (`about.get`) is read.
    pub drive_api_base_url: String,
    pub drive_scopes: String,
    /// `MICROSOFT_GRAPH_BASE_URL` (default `https://graph.microsoft.com`): the connection's
    /// `base_url`, and where `/me` is read. (Authorize and token are on `microsoft_login_base_url`.)
    pub microsoft_graph_base_url: String,
    pub microsoft_scopes: String,
    /// Gmail's endpoints and scopes (`GMAIL_*`; see [`crate::adapters::gmail::GmailConfig`]).
    pub gmail: crate::adapters::gmail::GmailConfig,
    /// `NOTION_API_BASE_URL` (default `https://api.notion.com`): Notion's OAuth authorize and
    /// token endpoints (`/v1/oauth/...`), and an OAuth connection's `base_url`.
    pub notion_api_base_url: String,
}

impl Default for OAuthEndpoints {
    fn default() -> Self {
        Self {
            redirect_uris: Vec::new(),
            hubspot_authorize_url: hubspot::DEFAULT_AUTHORIZE_URL.into(),
            hubspot_api_base_url: hubspot::DEFAULT_API_BASE_URL.into(),
            hubspot_scopes: hubspot::DEFAULT_SCOPES.into(),
            salesforce_login_url: salesforce::DEFAULT_LOGIN_URL.into(),
            salesforce_sandbox_login_url: salesforce::DEFAULT_SANDBOX_LOGIN_URL.into(),
            salesforce_scopes: salesforce::DEFAULT_SCOPES.into(),
            google_authorize_url: google::DEFAULT_AUTHORIZE_URL.into(),
            google_revoke_url: google::DEFAULT_REVOKE_URL.into(),
            google_api_base_url: google::DEFAULT_API_ROOT.into(),
            google_scopes: google::DEFAULT_SCOPES.into(),
            drive_authorize_url: google::DEFAULT_AUTHORIZE_URL.into(),
            drive_revoke_url: google::DEFAULT_REVOKE_URL.into(),
            drive_api_base_url: drive::DEFAULT_API_ROOT.into(),
            drive_scopes: drive::DEFAULT_SCOPES.into(),
            microsoft_graph_base_url: graph::DEFAULT_GRAPH_BASE.into(),
            microsoft_scopes: graph::DEFAULT_SCOPES.into(),
            gmail: Default::default(),
            notion_api_base_url: crate::adapters::notion::DEFAULT_API_BASE_URL.into(),
        }
    }
}

impl OAuthEndpoints {
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let url = |name: &'static str, default: String| -> Result<String, ConfigError> {
            match optional(name) {
                None => Ok(default),
                Some(v) => http_url(name, &v),
            }
        };
        let redirect_uris = optional("OAUTH_REDIRECT_URIS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(|u| http_url("OAUTH_REDIRECT_URIS", u))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        Ok(Self {
            redirect_uris,
            hubspot_authorize_url: url("HUBSPOT_AUTHORIZE_URL", d.hubspot_authorize_url)?,
            hubspot_api_base_url: url("HUBSPOT_API_BASE_URL", d.hubspot_api_base_url)?,
            hubspot_scopes: optional("HUBSPOT_OAUTH_SCOPES").unwrap_or(d.hubspot_scopes),
            salesforce_login_url: url("SALESFORCE_LOGIN_URL", d.salesforce_login_url)?,
            salesforce_sandbox_login_url: url(
                "SALESFORCE_SANDBOX_LOGIN_URL",
                d.salesforce_sandbox_login_url,
            )?,
            salesforce_scopes: optional("SALESFORCE_OAUTH_SCOPES").unwrap_or(d.salesforce_scopes),
            google_authorize_url: url("GOOGLE_AUTHORIZE_URL", d.google_authorize_url)?,
            google_revoke_url: url("GOOGLE_REVOKE_URL", d.google_revoke_url)?,
            google_api_base_url: url("GOOGLE_API_BASE_URL", d.google_api_base_url)?,
            google_scopes: optional("GOOGLE_OAUTH_SCOPES").unwrap_or(d.google_scopes),
            drive_authorize_url: url("DRIVE_AUTHORIZE_URL", d.drive_authorize_url)?,
            drive_revoke_url: url("DRIVE_REVOKE_URL", d.drive_revoke_url)?,
            drive_api_base_url: url("DRIVE_API_BASE_URL", d.drive_api_base_url)?,
            drive_scopes: optional("DRIVE_OAUTH_SCOPES").unwrap_or(d.drive_scopes),
            microsoft_graph_base_url: url("MICROSOFT_GRAPH_BASE_URL", d.microsoft_graph_base_url)?,
            microsoft_scopes: optional("MICROSOFT_OAUTH_SCOPES").unwrap_or(d.microsoft_scopes),
            gmail: crate::adapters::gmail::GmailConfig::from_env()?,
            notion_api_base_url: url("NOTION_API_BASE_URL", d.notion_api_base_url)?,
        })
    }
}

/// An http(s) URL with a host, without its trailing slash.
pub(crate) fn http_url(name: &'static str, v: &str) -> Result<String, ConfigError> {
    let v = v.trim().trim_end_matches('/').to_owned();
    match url::Url::parse(&v) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(v),
        _ => Err(ConfigError::Invalid { name, reason: "expected an http(s) URL".into() }),
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub resources: Resources,
    /// How many shards the due-connections index is spread over.
    pub due_shards: u16,
    /// Base64 of the 32-byte key that encrypts tokens at rest (`TOKEN_KEY`). With a KMS key it
    /// only decrypts values written before envelope encryption, and may be absent.
    pub token_key: Option<SecretString>,
    /// `TOKEN_KMS_KEY_ID`: the KMS key (id, ARN or alias) of envelope encryption. Set: new values
    /// are encrypted with KMS data keys; unset: with `token_key` (dev).
    pub token_kms_key_id: Option<String>,
    /// The OAuth connect flow's endpoints and redirect URIs.
    pub oauth: OAuthEndpoints,
    pub hubspot_app: Option<OAuthApp>,
    /// The Microsoft (Entra ID) app registration: `MICROSOFT_CLIENT_ID` / `MICROSOFT_CLIENT_SECRET`.
    pub microsoft_app: Option<OAuthApp>,
    /// The identity platform's base URL (`MICROSOFT_LOGIN_BASE_URL`, default
    /// `https://login.microsoftonline.com`; a fake's URL locally).
    pub microsoft_login_base_url: String,
    /// `MICROSOFT_TENANT`: `common` (default), `organizations` or a directory id.
    pub microsoft_tenant: String,
    /// The Salesforce connected app (`SALESFORCE_CLIENT_ID` / `SALESFORCE_CLIENT_SECRET`).
    pub salesforce_app: Option<OAuthApp>,
    /// `GOOGLE_CLIENT_ID` / `GOOGLE_CLIENT_SECRET`: the Google OAuth app (token refresh).
    pub google_app: Option<OAuthApp>,
    /// `GOOGLE_TOKEN_URL`: Google's OAuth token endpoint (a fake's locally).
    pub google_token_url: String,
    /// `DRIVE_TOKEN_URL`: the token endpoint of Drive connections (default: `GOOGLE_TOKEN_URL`,
    /// the same app at Google; the Drive fake's locally).
    pub drive_token_url: String,
    /// `NOTION_CLIENT_ID` / `NOTION_CLIENT_SECRET`: the Notion public integration (OAuth connect
    /// and token refresh). Unset: Notion connects with integration tokens only.
    pub notion_app: Option<OAuthApp>,
    /// The JWT claim that names the caller's tenant.
    pub tenant_claim: String,
    /// `WEBHOOK_BASE_URL`: the public origin (and path prefix) under which `/webhooks/{provider}` is
    /// served; providers with per-connection push channels notify there. Unset: pull-only.
    pub webhook_base_url: Option<String>,
    /// `HUBSPOT_APP_ID`: our HubSpot app's id. A webhook event whose `sourceId` is this id was
    /// caused by our own write (an echo) and enqueues nothing. Unset: no event is taken for an echo.
    pub hubspot_app_id: Option<String>,
    /// `WEBHOOK_COALESCE_SECONDS` (1 to 300, default 10): notifications of one connection within
    /// one window of this length become one sync job, started when the window closes.
    pub webhook_coalesce_secs: u32,
    /// `FIREFLIES_API_BASE_URL`: where Fireflies connections made with the default origin
    /// (`https://api.fireflies.ai`) are sent instead (a fake's URL locally). Unset: Fireflies'.
    pub fireflies_api_base_url: Option<String>,
    /// The secret (16 to 32 characters) saved with the webhook URL in Fireflies' Developer
    /// settings, which signs its webhooks: in Lambda from Secrets Manager
    /// (`{OAUTH_SECRETS_PREFIX}/fireflies-webhook`, read by the webhooks function), locally
    /// `FIREFLIES_WEBHOOK_SECRET` (ignored in Lambda). Unset: Fireflies webhooks are refused.
    pub fireflies_webhook_secret: Option<SecretString>,
}

pub const DEFAULT_DUE_SHARDS: u16 = 4;
pub const DEFAULT_WEBHOOK_COALESCE_SECS: u32 = 10;

fn required(name: &'static str) -> Result<String, ConfigError> {
    match env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError::Missing(name)),
    }
}

pub(crate) fn optional(name: &'static str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A secret that local use takes from the environment variable `name`: in Lambda it is ignored
/// (with a warning), so a deployment never holds that secret in its environment.
pub(crate) fn local_secret(
    name: &'static str,
    value: Option<String>,
    in_lambda: bool,
) -> Option<SecretString> {
    match value {
        Some(_) if in_lambda => {
            tracing::warn!(variable = name, "a local-only secret is ignored in Lambda");
            None
        }
        value => value.map(SecretString::from),
    }
}

/// `WEBHOOK_BASE_URL`, if set: an http(s) URL, kept without its trailing slash.
fn webhook_base_url(value: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(v) = value else {
        return Ok(None);
    };
    let v = v.trim().trim_end_matches('/').to_owned();
    match url::Url::parse(&v) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(Some(v)),
        _ => Err(ConfigError::Invalid { name: "WEBHOOK_BASE_URL", reason: "expected an http(s) URL".into() }),
    }
}

/// The environment variable of a provider's OAuth client id (`HUBSPOT_CLIENT_ID`, ...).
pub fn client_id_var(provider: Provider) -> &'static str {
    match provider {
        Provider::Hubspot => "HUBSPOT_CLIENT_ID",
        Provider::Salesforce => "SALESFORCE_CLIENT_ID",
        // Gmail connects through the Google OAuth app Calendar uses.
        Provider::Google | Provider::Gmail | Provider::GoogleDrive => "GOOGLE_CLIENT_ID",
        Provider::Microsoft => "MICROSOFT_CLIENT_ID",
        Provider::Notion => "NOTION_CLIENT_ID",
        Provider::Fireflies => "FIREFLIES_CLIENT_ID",
    }
}

/// A provider's OAuth app from `{PROVIDER}_CLIENT_ID` and `{PROVIDER}_CLIENT_SECRET`, when both
/// are set: the local path. In Lambda the client secrets come from Secrets Manager instead
/// (`adapters::secrets`), never from the environment.
fn app_from_env(provider: Provider) -> Option<OAuthApp> {
    let secret_var = match provider {
        Provider::Hubspot => "HUBSPOT_CLIENT_SECRET",
        Provider::Salesforce => "SALESFORCE_CLIENT_SECRET",
        Provider::Google | Provider::Gmail | Provider::GoogleDrive => "GOOGLE_CLIENT_SECRET",
        Provider::Microsoft => "MICROSOFT_CLIENT_SECRET",
        Provider::Notion => "NOTION_CLIENT_SECRET",
        Provider::Fireflies => "FIREFLIES_CLIENT_SECRET",
    };
    let client_id = optional(client_id_var(provider))?;
    let secret = optional(secret_var)?;
    Some(OAuthApp { client_id, client_secret: SecretString::from(secret) })
}

impl Resources {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: required("TABLE_NAME")?,
            audit_table_name: required("AUDIT_TABLE_NAME")?,
            jobs_queue_url: required("JOBS_QUEUE_URL")?,
            event_bus_name: required("EVENT_BUS_NAME")?,
        })
    }
}

impl Config {
    /// Turns a provider's OAuth app on with these credentials.
    pub fn set_oauth_app(&mut self, provider: Provider, app: OAuthApp) {
        let slot = match provider {
            Provider::Hubspot => &mut self.hubspot_app,
            Provider::Salesforce => &mut self.salesforce_app,
            Provider::Google | Provider::Gmail | Provider::GoogleDrive => &mut self.google_app,
            Provider::Microsoft => &mut self.microsoft_app,
            Provider::Notion => &mut self.notion_app,
            Provider::Fireflies => {
                tracing::warn!(
                    provider = provider.as_str(),
                    "an OAuth app is configured, but this provider connects with an API token only"
                );
                return;
            }
        };
        *slot = Some(app);
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let due_shards = match optional("DUE_SHARDS") {
            None => DEFAULT_DUE_SHARDS,
            Some(v) => v
                .parse::<u16>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or(ConfigError::Invalid { name: "DUE_SHARDS", reason: "expected 1 to 64".into() })?,
        };
        let hubspot_app = app_from_env(Provider::Hubspot);
        let microsoft_app = app_from_env(Provider::Microsoft);
        let salesforce_app = app_from_env(Provider::Salesforce);
        let google_app = app_from_env(Provider::Google);
        let google_token_url =
            optional("GOOGLE_TOKEN_URL").unwrap_or_else(|| google::DEFAULT_TOKEN_URL.to_owned());
        let notion_app = app_from_env(Provider::Notion);
        let token_kms_key_id = optional("TOKEN_KMS_KEY_ID");
        let token_key = match optional("TOKEN_KEY") {
            Some(key) => Some(SecretString::from(key)),
            // In Lambda the key is read at init from Secrets Manager (`adapters::secrets`).
            None if token_kms_key_id.is_some()
                || optional(crate::adapters::secrets::TOKEN_KEY_SECRET_ENV).is_some() =>
            {
                None
            }
            None => return Err(ConfigError::Missing("TOKEN_KEY")),
        };
        Ok(Self {
            resources: Resources::from_env()?,
            due_shards,
            token_key,
            token_kms_key_id,
            oauth: OAuthEndpoints::from_env()?,
            hubspot_app,
            microsoft_app,
            microsoft_login_base_url: optional("MICROSOFT_LOGIN_BASE_URL")
                .unwrap_or_else(|| graph::DEFAULT_LOGIN_BASE.to_owned()),
            microsoft_tenant: optional("MICROSOFT_TENANT").unwrap_or_else(|| "common".to_owned()),
            salesforce_app,
            google_app,
            google_token_url: google_token_url.clone(),
            drive_token_url: optional("DRIVE_TOKEN_URL").unwrap_or(google_token_url),
            notion_app,
            tenant_claim: optional("TENANT_CLAIM").unwrap_or_else(|| "tenant_id".to_owned()),
            webhook_base_url: webhook_base_url(optional("WEBHOOK_BASE_URL"))?,
            hubspot_app_id: optional("HUBSPOT_APP_ID").map(|v| v.trim().to_owned()),
            webhook_coalesce_secs: match optional("WEBHOOK_COALESCE_SECONDS") {
                None => DEFAULT_WEBHOOK_COALESCE_SECS,
                Some(v) => v.trim().parse::<u32>().ok().filter(|n| (1..=300).contains(n)).ok_or(
                    ConfigError::Invalid {
                        name: "WEBHOOK_COALESCE_SECONDS",
                        reason: "expected 1 to 300".into(),
                    },
                )?,
            },
            fireflies_api_base_url: optional("FIREFLIES_API_BASE_URL")
                .map(|v| http_url("FIREFLIES_API_BASE_URL", &v))
                .transpose()?,
            fireflies_webhook_secret: local_secret(
                "FIREFLIES_WEBHOOK_SECRET",
                optional("FIREFLIES_WEBHOOK_SECRET"),
                crate::telemetry::in_lambda(),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_base_urls_are_http_urls_without_a_trailing_slash_and_unset_means_none() {
        assert_eq!(webhook_base_url(None).unwrap(), None);
        assert_eq!(
            webhook_base_url(Some("https://api.example.com/prod/".into())).unwrap().as_deref(),
            Some("https://api.example.com/prod")
        );
        for bad in ["not a url", "ftp://example.com", "mailto:ann@example.com"] {
            assert!(matches!(webhook_base_url(Some(bad.into())), Err(ConfigError::Invalid { .. })), "{bad}");
        }
    }
}
