//! Wiring: builds the engine's [`Deps`] and the API's state from typed config and one AWS SDK
//! config. Lambda mains call it once per instance; the local stack calls it with moto's endpoint.

use std::sync::Arc;

use aws_config::SdkConfig;

use crate::adapters::crypto::{CryptoError, TokenCipher};
use crate::adapters::drive::DriveFactory;
use crate::adapters::dynamo::DynamoStore;
use crate::adapters::eventbridge::EventBridgeBus;
use crate::adapters::fireflies::FirefliesFactory;
use crate::adapters::gmail::GmailFactory;
use crate::adapters::google::GoogleFactory;
use crate::adapters::graph::{GraphFactory, Login};
use crate::adapters::hubspot::HubspotFactory;
use crate::adapters::notion::NotionFactory;
use crate::adapters::oauth::OAuthProviders;
use crate::adapters::salesforce::SalesforceFactory;
use crate::adapters::secrets::{self, Needs, SecretSources};
use crate::adapters::sqs::SqsJobQueue;
use crate::config::Config;
use crate::domain::{Connection, Provider};
use crate::http::ApiState;
use crate::http::oauth::OAuthService;
use crate::http::webhooks::{WebhookSettings, WebhookState};
use crate::ports::{Clock, ProviderClient, ProviderError, ProviderFactory, SystemClock};
use crate::sync::{Deps, EngineSettings};

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("TOKEN_KEY is not a usable key")]
    TokenKey(#[source] CryptoError),
    #[error("neither TOKEN_KMS_KEY_ID nor TOKEN_KEY is set")]
    NoTokenKey,
    #[error("could not build the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// Routes each connection to its provider's adapter.
pub struct Providers {
    hubspot: HubspotFactory,
    microsoft: GraphFactory,
    salesforce: SalesforceFactory,
    google: GoogleFactory,
    gmail: GmailFactory,
    drive: DriveFactory,
    notion: NotionFactory,
    fireflies: FirefliesFactory,
}

impl Providers {
    /// The Google factory, for what the port does not cover (push channels).
    pub fn google(&self) -> &GoogleFactory {
        &self.google
    }

    /// The Graph factory, for what the port does not cover (subscriptions).
    pub fn microsoft(&self) -> &GraphFactory {
        &self.microsoft
    }
}

impl ProviderFactory for Providers {
    fn client(&self, connection: &Connection) -> Result<Box<dyn ProviderClient>, ProviderError> {
        match connection.provider {
            Provider::Hubspot => self.hubspot.client(connection),
            Provider::Microsoft => self.microsoft.client(connection),
            Provider::Salesforce => self.salesforce.client(connection),
            Provider::Google => self.google.client(connection),
            Provider::Gmail => self.gmail.client(connection),
            Provider::GoogleDrive => self.drive.client(connection),
            Provider::Notion => self.notion.client(connection),
            Provider::Fireflies => self.fireflies.client(connection),
        }
    }
}

/// The HTTP client every provider adapter shares (connection pooling across invocations).
pub fn http_client() -> Result<reqwest::Client, WiringError> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(30))
        .user_agent(concat!("syncbridge/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(WiringError::Http)
}

/// The token cipher: KMS envelope encryption with `TOKEN_KMS_KEY_ID` (the local key, if set, still
/// reads older values), else the local key. No KMS call happens here (the data key is fetched on
/// first use).
pub fn token_cipher(config: &Config, sdk: &SdkConfig) -> Result<TokenCipher, WiringError> {
    match (&config.token_kms_key_id, &config.token_key) {
        (Some(key_id), legacy) => {
            TokenCipher::kms(aws_sdk_kms::Client::new(sdk), key_id.clone(), legacy.as_ref())
                .map_err(WiringError::TokenKey)
        }
        (None, Some(key)) => TokenCipher::from_base64_key(key).map_err(WiringError::TokenKey),
        (None, None) => Err(WiringError::NoTokenKey),
    }
}

/// The AWS clients the engine's adapters use.
#[derive(Debug, Clone)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
}

impl AwsClients {
    /// Each client built from `sdk` as it is.
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            eventbridge: aws_sdk_eventbridge::Client::new(sdk),
        }
    }
}

/// Everything the handlers need, from config.
pub fn deps(config: &Config, sdk: &SdkConfig, clock: Arc<dyn Clock>) -> Result<Deps, WiringError> {
    deps_with(config, sdk, AwsClients::new(sdk), clock)
}

/// As [`deps`], on the given clients (a benchmark's, with a request-counting interceptor). `sdk`
/// still serves KMS.
pub fn deps_with(
    config: &Config,
    sdk: &SdkConfig,
    clients: AwsClients,
    clock: Arc<dyn Clock>,
) -> Result<Deps, WiringError> {
    let cipher = token_cipher(config, sdk)?;
    let res = &config.resources;
    let store = Arc::new(DynamoStore::new(
        clients.dynamodb,
        res.table_name.clone(),
        res.audit_table_name.clone(),
        cipher,
        config.due_shards,
    ));
    let http = http_client()?;
    let login =
        Login { base_url: config.microsoft_login_base_url.clone(), tenant: config.microsoft_tenant.clone() };
    let providers = Providers {
        hubspot: HubspotFactory::new(http.clone(), config.hubspot_app.clone()),
        microsoft: GraphFactory::new(http.clone(), config.microsoft_app.clone(), login),
        salesforce: SalesforceFactory::new(http.clone(), config.salesforce_app.clone()),
        google: GoogleFactory::new(http.clone(), config.google_app.clone(), config.google_token_url.clone()),
        notion: NotionFactory::new(http.clone()).with_app(config.notion_app.clone()),
        fireflies: FirefliesFactory::new(http.clone())
            .with_api_base_url(config.fireflies_api_base_url.clone()),
        gmail: GmailFactory::new(http.clone(), config.google_app.clone(), config.oauth.gmail.clone()),
        drive: DriveFactory::new(http, config.google_app.clone(), config.drive_token_url.clone()),
    };
    Ok(Deps {
        connections: store.clone(),
        records: store.clone(),
        runs: store.clone(),
        audit: store.clone(),
        pushes: store.clone(),
        conflicts: store.clone(),
        oauth_states: store,
        queue: Arc::new(SqsJobQueue::new(clients.sqs, res.jobs_queue_url.clone())),
        bus: Arc::new(EventBridgeBus::new(clients.eventbridge, res.event_bus_name.clone())),
        providers: Arc::new(providers),
        clock,
        settings: EngineSettings {
            due_shards: config.due_shards,
            webhook_base_url: config.webhook_base_url.clone(),
            ..EngineSettings::default()
        },
    })
}

/// Which Lambda a main wires, and what it reads at init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Dispatcher,
    Worker,
    Api,
    Webhooks,
}

impl Function {
    /// Its `Function` dimension in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Function::Dispatcher => "dispatcher",
            Function::Worker => "worker",
            Function::Api => "api",
            Function::Webhooks => "webhooks",
        }
    }

    /// The secrets it reads (template.yaml grants it read access to exactly these).
    pub fn secrets(self) -> Needs {
        match self {
            Function::Dispatcher => Needs::NOTHING,
            Function::Worker | Function::Api => Needs::ALL,
            Function::Webhooks => Needs::WEBHOOKS,
        }
    }
}

/// Tracing and metrics, typed config from the environment with the function's secrets from
/// Secrets Manager, and the AWS SDK config.
async fn load(function: Function) -> Result<(Config, SdkConfig), Box<dyn std::error::Error + Send + Sync>> {
    crate::telemetry::init_function(function.name());
    let mut config = Config::from_env()?;
    let sdk = aws_config::load_from_env().await;
    let needs = function.secrets();
    if needs != Needs::NOTHING {
        let client = aws_sdk_secretsmanager::Client::new(&sdk);
        secrets::resolve(&mut config, &SecretSources::from_env(), needs, &client).await?;
    }
    Ok((config, sdk))
}

/// What every Lambda main does first: tracing and metrics, typed config and secrets, AWS clients
/// (once per instance), and the engine's deps on the wall clock.
pub async fn from_env(
    function: Function,
) -> Result<(Config, Deps), Box<dyn std::error::Error + Send + Sync>> {
    let (config, sdk) = load(function).await?;
    let deps = deps(&config, &sdk, Arc::new(SystemClock))?;
    Ok((config, deps))
}

/// The webhooks router's state: the engine's stores and queue, a delivery ledger on the main
/// table, and the webhook settings from config.
pub fn webhook_state(deps: &Deps, config: &Config, sdk: &SdkConfig) -> Result<WebhookState, WiringError> {
    let cipher = token_cipher(config, sdk)?;
    let res = &config.resources;
    let ledger = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(sdk),
        res.table_name.clone(),
        res.audit_table_name.clone(),
        cipher,
        config.due_shards,
    );
    Ok(WebhookState {
        connections: deps.connections.clone(),
        deliveries: Arc::new(ledger),
        queue: deps.queue.clone(),
        clock: deps.clock.clone(),
        settings: WebhookSettings {
            public_base_url: config.webhook_base_url.clone(),
            hubspot_client_secret: config.hubspot_app.as_ref().map(|a| a.client_secret.clone()),
            hubspot_app_id: config.hubspot_app_id.clone(),
            coalesce_secs: config.webhook_coalesce_secs,
            gmail_push: crate::http::webhooks::pubsub_auth::PushAuth::from_config(
                &config.oauth.gmail,
                http_client,
            )?,
            fireflies_webhook_secret: config.fireflies_webhook_secret.clone(),
        },
    })
}

/// What the webhooks Lambda main does: tracing and metrics, config and HubSpot's client secret,
/// AWS clients, the router's state.
pub async fn webhooks_from_env() -> Result<WebhookState, Box<dyn std::error::Error + Send + Sync>> {
    let (config, sdk) = load(Function::Webhooks).await?;
    let deps = deps(&config, &sdk, Arc::new(SystemClock))?;
    Ok(webhook_state(&deps, &config, &sdk)?)
}

/// The API router's state, sharing the engine's adapters.
pub fn api_state(deps: &Deps, config: &Config) -> ApiState {
    ApiState {
        connections: deps.connections.clone(),
        records: deps.records.clone(),
        runs: deps.runs.clone(),
        audit: deps.audit.clone(),
        queue: deps.queue.clone(),
        clock: deps.clock.clone(),
        engine: deps.clone(),
        tenant_claim: config.tenant_claim.clone(),
        oauth: Some(Arc::new(OAuthService {
            providers: Arc::new(OAuthProviders::from_config(http_client().unwrap_or_default(), config)),
            states: deps.oauth_states.clone(),
        })),
    }
}
