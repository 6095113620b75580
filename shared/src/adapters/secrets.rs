//! Secrets read once at init from AWS Secrets Manager, the Lambda path: the OAuth apps' client
//! secrets (one secret per provider, named `{OAUTH_SECRETS_PREFIX}/{provider}`, its SecretString
//! the client secret) and the local token key (`TOKEN_KEY_SECRET_ARN`). Each function reads only
//! what it uses ([`Needs`]) and template.yaml grants it read access to exactly that: the
//! dispatcher nothing, the webhooks HubSpot's secret and Fireflies' webhook secret (their
//! signatures, the latter named `{OAUTH_SECRETS_PREFIX}/fireflies-webhook`) and the token key,
//! the api and the worker the OAuth apps and the token key. Nothing is read here when those variables are unset: the local
//! stack hands secrets to config directly.

use futures::future::join_all;
use secrecy::SecretString;

use crate::config::{Config, OAuthApp, client_id_var};
use crate::domain::Provider;

/// `OAUTH_SECRETS_PREFIX`: the name prefix of the client-secret secrets.
pub const OAUTH_SECRETS_PREFIX_ENV: &str = "OAUTH_SECRETS_PREFIX";
/// The secret (under the OAuth prefix) holding the secret Fireflies signs its webhooks with.
pub const FIREFLIES_WEBHOOK_SECRET_NAME: &str = "fireflies-webhook";
/// `TOKEN_KEY_SECRET_ARN`: the secret holding the base64 local token key.
pub const TOKEN_KEY_SECRET_ENV: &str = "TOKEN_KEY_SECRET_ARN";

/// Where the secrets are, and the OAuth apps' client ids (not secret; from the environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretSources {
    pub oauth_prefix: Option<String>,
    pub token_key_secret: Option<String>,
    pub client_ids: Vec<(Provider, String)>,
}

impl SecretSources {
    pub fn from_env() -> Self {
        let var =
            |name: &str| std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        Self {
            oauth_prefix: var(OAUTH_SECRETS_PREFIX_ENV).map(|p| p.trim_end_matches('/').to_owned()),
            token_key_secret: var(TOKEN_KEY_SECRET_ENV),
            // Drive connections use Google's app (its secret is read once, as Google's).
            client_ids: Provider::ALL
                .iter()
                .filter(|&&p| p != Provider::GoogleDrive)
                .filter_map(|&p| Some((p, var(client_id_var(p))?)))
                .collect(),
        }
    }

    /// The secret holding `provider`'s client secret.
    pub fn client_secret_name(&self, provider: Provider) -> Option<String> {
        self.oauth_prefix.as_ref().map(|prefix| format!("{prefix}/{}", provider.as_str()))
    }
}

/// What a function reads at init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// The local token key (it decrypts tokens or channel secrets written before KMS).
    pub token_key: bool,
    /// The providers whose OAuth app (client secret) it uses.
    pub oauth_apps: &'static [Provider],
    /// The secret Fireflies signs its webhooks with.
    pub fireflies_webhook: bool,
}

impl Needs {
    pub const NOTHING: Needs = Needs { token_key: false, oauth_apps: &[], fireflies_webhook: false };
    /// Token exchange (api) and refresh (worker) at every provider.
    pub const ALL: Needs = Needs { token_key: true, oauth_apps: Provider::ALL, fireflies_webhook: false };
    /// HubSpot's client secret and Fireflies' webhook secret key their webhook signatures;
    /// channel secrets need the token key.
    pub const WEBHOOKS: Needs =
        Needs { token_key: true, oauth_apps: &[Provider::Hubspot], fireflies_webhook: true };
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("could not read the secret {name}")]
    Read {
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the secret {0} holds no text")]
    NotText(String),
    #[error("the secret {0} does not exist")]
    Missing(String),
}

/// Reads one secret's text; `None` when no such secret exists.
async fn read(
    client: &aws_sdk_secretsmanager::Client,
    name: &str,
) -> Result<Option<SecretString>, SecretsError> {
    match client.get_secret_value().secret_id(name).send().await {
        Ok(out) => match out.secret_string {
            Some(text) if !text.trim().is_empty() => Ok(Some(SecretString::from(text.trim().to_owned()))),
            _ => Err(SecretsError::NotText(name.to_owned())),
        },
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(None),
        Err(e) => Err(SecretsError::Read { name: name.to_owned(), source: Box::new(e) }),
    }
}

/// Fills `config` with the secrets `needs` asks for from Secrets Manager, concurrently. A
/// provider without a client id, or whose secret does not exist, keeps its OAuth app off (as an
/// empty client secret did before); any other failure (access denied, an outage) is an error, so
/// a function never starts half-configured without saying so.
pub async fn resolve(
    config: &mut Config,
    sources: &SecretSources,
    needs: Needs,
    client: &aws_sdk_secretsmanager::Client,
) -> Result<(), SecretsError> {
    let apps = needs.oauth_apps.iter().filter_map(|&provider| {
        let (_, client_id) = sources.client_ids.iter().find(|(p, _)| *p == provider)?;
        let name = sources.client_secret_name(provider)?;
        Some(async move { (provider, client_id.clone(), read(client, &name).await, name) })
    });
    for (provider, client_id, secret, name) in join_all(apps).await {
        match secret? {
            Some(client_secret) => config.set_oauth_app(provider, OAuthApp { client_id, client_secret }),
            None => {
                tracing::warn!(provider = provider.as_str(), secret = %name, "no client secret: the OAuth app is off")
            }
        }
    }
    if needs.fireflies_webhook
        && let Some(prefix) = &sources.oauth_prefix
    {
        let name = format!("{prefix}/{FIREFLIES_WEBHOOK_SECRET_NAME}");
        match read(client, &name).await? {
            Some(secret) => config.fireflies_webhook_secret = Some(secret),
            None => tracing::warn!(secret = %name, "no Fireflies webhook secret: its webhooks are refused"),
        }
    }
    if needs.token_key
        && let Some(name) = &sources.token_key_secret
    {
        config.token_key =
            Some(read(client, name).await?.ok_or_else(|| SecretsError::Missing(name.clone()))?);
    }
    Ok(())
}
