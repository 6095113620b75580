//! Typed configuration, read once from the environment that template.yaml (or the local runner) sets.

use std::env;

use secrecy::SecretString;

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

#[derive(Debug, Clone)]
pub struct Config {
    pub resources: Resources,
    /// How many shards the due-connections index is spread over.
    pub due_shards: u16,
    /// Base64 of the 32-byte key that encrypts tokens at rest.
    pub token_key: SecretString,
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
}

pub const DEFAULT_DUE_SHARDS: u16 = 4;
pub const DEFAULT_WEBHOOK_COALESCE_SECS: u32 = 10;
pub const DEFAULT_MICROSOFT_LOGIN_BASE_URL: &str = "https://login.microsoftonline.com";

fn required(name: &'static str) -> Result<String, ConfigError> {
    match env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError::Missing(name)),
    }
}

fn optional(name: &'static str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
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
    pub fn from_env() -> Result<Self, ConfigError> {
        let due_shards = match optional("DUE_SHARDS") {
            None => DEFAULT_DUE_SHARDS,
            Some(v) => v
                .parse::<u16>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or(ConfigError::Invalid { name: "DUE_SHARDS", reason: "expected 1 to 64".into() })?,
        };
        let hubspot_app = match (optional("HUBSPOT_CLIENT_ID"), optional("HUBSPOT_CLIENT_SECRET")) {
            (Some(client_id), Some(secret)) => {
                Some(OAuthApp { client_id, client_secret: SecretString::from(secret) })
            }
            _ => None,
        };
        let microsoft_app = match (optional("MICROSOFT_CLIENT_ID"), optional("MICROSOFT_CLIENT_SECRET")) {
            (Some(client_id), Some(secret)) => {
                Some(OAuthApp { client_id, client_secret: SecretString::from(secret) })
            }
            _ => None,
        };
        let salesforce_app = match (optional("SALESFORCE_CLIENT_ID"), optional("SALESFORCE_CLIENT_SECRET")) {
            (Some(client_id), Some(secret)) => {
                Some(OAuthApp { client_id, client_secret: SecretString::from(secret) })
            }
            _ => None,
        };
        let google_app = match (optional("GOOGLE_CLIENT_ID"), optional("GOOGLE_CLIENT_SECRET")) {
            (Some(client_id), Some(secret)) => {
                Some(OAuthApp { client_id, client_secret: SecretString::from(secret) })
            }
            _ => None,
        };
        Ok(Self {
            resources: Resources::from_env()?,
            due_shards,
            token_key: SecretString::from(required("TOKEN_KEY")?),
            hubspot_app,
            microsoft_app,
            microsoft_login_base_url: optional("MICROSOFT_LOGIN_BASE_URL")
                .unwrap_or_else(|| DEFAULT_MICROSOFT_LOGIN_BASE_URL.to_owned()),
            microsoft_tenant: optional("MICROSOFT_TENANT").unwrap_or_else(|| "common".to_owned()),
            salesforce_app,
            google_app,
            google_token_url: optional("GOOGLE_TOKEN_URL")
                .unwrap_or_else(|| crate::adapters::google::DEFAULT_TOKEN_URL.to_owned()),
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
