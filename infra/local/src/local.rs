//! `LocalStack`: one complete Syncbridge on this machine: moto with the resources of template.yaml,
//! the HubSpot, Google Calendar and Gmail fakes (and optionally the Salesforce and Notion fakes), the engine wired
//! exactly as in Lambda (only the endpoint differs), the runner
//! and the gateway. Tests, `syncbridge` and `make demo` all start this same thing.

use std::sync::Arc;

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use secrecy::SecretString;
use syncbridge::adapters::crypto::TokenCipher;
use syncbridge::config::{Config, OAuthApp, OAuthEndpoints};
use syncbridge::http::auth::DevKey;
use syncbridge::http::{self as api, webhooks};
use syncbridge::ports::SystemClock;
use syncbridge::sync::Deps;
use syncbridge::wiring;
use syncbridge_fakes::drive;
use syncbridge_fakes::gmail::{self, GmailFake};
use syncbridge_fakes::google::{self, GoogleFake};
use syncbridge_fakes::graph;
use syncbridge_fakes::hubspot::{FakeConfig, HubspotFake, RunningFake};
use syncbridge_fakes::salesforce;
use syncbridge_fakes::{fireflies, notion};

use crate::counting::AwsCounter;
use crate::gateway::{self, Gateway};
use crate::runner::Runner;
use crate::stack::{self, LocalResources, Moto};

/// How to start a local stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Prefix of every resource name (unique per test); a random one when `None`.
    pub prefix: Option<String>,
    pub hubspot: FakeConfig,
    /// Also start a Salesforce fake (its connected app becomes the stack's Salesforce app).
    pub salesforce: Option<salesforce::FakeConfig>,
    /// The Google Calendar fake (its token endpoint is the stack's `GOOGLE_TOKEN_URL`).
    pub google: google::FakeConfig,
    /// The Google Drive fake (Google's OAuth app too; its endpoints are the stack's `DRIVE_*`).
    pub drive: drive::FakeConfig,
    /// The Microsoft Graph fake (it also serves the login host's token endpoint).
    pub graph: graph::FakeConfig,
    /// The Gmail fake (its OAuth endpoints are the stack's `GMAIL_*` ones; same Google app).
    pub gmail: gmail::FakeConfig,
    /// Also start a Notion fake (connections name its base URL and databases).
    pub notion: Option<notion::FakeConfig>,
    /// Also start a Fireflies fake: `FIREFLIES_API_BASE_URL` points at it, and its webhook (signed
    /// with the stack's `FIREFLIES_WEBHOOK_SECRET`) at the gateway for the account's owner.
    pub fireflies: Option<fireflies::FakeConfig>,
    /// Gateway port on 127.0.0.1; 0 picks one.
    pub gateway_port: u16,
    /// Also route the bus's events to a queue the caller can read (for tests and the demo).
    pub tap_events: bool,
    /// The key that signs local tokens; a fresh one when `None`.
    pub dev_key: Option<DevKey>,
    /// Our HubSpot app id (`HUBSPOT_APP_ID`): webhook events from it are echoes.
    pub hubspot_app_id: String,
    /// `WEBHOOK_COALESCE_SECONDS` of the stack (short by default, so tests wait little).
    pub webhook_coalesce_secs: u32,
    /// The Salesforce fake plays a sandbox's login host (`SALESFORCE_SANDBOX_LOGIN_URL`); the
    /// production login host stays the real one, which the stack never reaches.
    pub salesforce_sandbox: bool,
    /// Encrypt tokens with KMS envelope encryption (a key created in moto's KMS) instead of the
    /// local key.
    pub kms: bool,
    /// Count the engine's DynamoDB, SQS and EventBridge requests (benchmarks, request budgets).
    pub counter: Option<AwsCounter>,
}

/// The Pub/Sub topic the local stack's Gmail connections are watched on (the Gmail fake delivers
/// its pushes to the gateway's `/webhooks/gmail`).
pub const LOCAL_GMAIL_TOPIC: &str = "projects/syncbridge-local/topics/gmail";
/// The service account the local push subscription signs its OIDC tokens as (production's
/// `GmailPushServiceAccount`); the webhooks check it as they do in Lambda.
pub const LOCAL_GMAIL_PUSH_ACCOUNT: &str = "gmail-push@syncbridge-local.iam.gserviceaccount.com";

/// The app id the local stack's HubSpot app has.
pub const LOCAL_HUBSPOT_APP_ID: &str = "424242";
/// The portal id of the local stack's HubSpot fake (connect with this `account_id` to get its
/// webhooks).
pub const LOCAL_HUBSPOT_PORTAL_ID: u64 = 62515;

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            prefix: None,
            hubspot: FakeConfig::default(),
            salesforce: None,
            google: google::FakeConfig::default(),
            drive: drive::FakeConfig::default(),
            graph: graph::FakeConfig::default(),
            gmail: gmail::FakeConfig { messages: 20, ..gmail::FakeConfig::default() },
            notion: None,
            fireflies: None,
            gateway_port: 0,
            tap_events: true,
            dev_key: None,
            hubspot_app_id: LOCAL_HUBSPOT_APP_ID.to_owned(),
            webhook_coalesce_secs: 1,
            salesforce_sandbox: false,
            kms: false,
            counter: None,
        }
    }
}

pub struct LocalStack {
    pub config: Config,
    pub sdk: SdkConfig,
    pub resources: LocalResources,
    pub deps: Deps,
    pub runner: Runner,
    pub gateway: Gateway,
    pub hubspot: RunningFake,
    pub salesforce: Option<salesforce::RunningFake>,
    pub google: google::RunningFake,
    pub drive: drive::RunningFake,
    pub graph: graph::RunningFake,
    pub gmail: gmail::RunningFake,
    pub notion: Option<notion::RunningFake>,
    pub fireflies: Option<fireflies::RunningFake>,
    pub dev_key: DevKey,
    pub events_queue_url: Option<String>,
    events: Option<EventCollector>,
    /// Last, so it stops after everything that talks to it.
    pub moto: Moto,
}

impl LocalStack {
    pub async fn start(options: StackOptions) -> Result<Self> {
        if std::env::var_os("SYNCBRIDGE_TRACE").is_some() {
            syncbridge::telemetry::init();
        }
        let moto = Moto::start(Moto::locate()?).await.context("starting moto")?;
        let sdk = stack::sdk_config(moto.endpoint());
        let prefix = options.prefix.clone().unwrap_or_else(|| {
            format!("sb{}", ulid::Ulid::new().to_string().to_lowercase()[20..].to_owned())
        });
        let resources = stack::create_from_template(&stack::template_path()?, &sdk, &prefix)
            .await
            .context("creating resources from template.yaml")?;
        let events_queue_url = if options.tap_events {
            Some(stack::tap_events(&sdk, &resources.resources.event_bus_name, &prefix).await?)
        } else {
            None
        };
        let hubspot =
            HubspotFake::start(options.hubspot.clone()).await.context("starting the HubSpot fake")?;
        let salesforce = match options.salesforce.clone() {
            Some(c) => {
                Some(salesforce::SalesforceFake::start(c).await.context("starting the Salesforce fake")?)
            }
            None => None,
        };
        let salesforce_app = options.salesforce.as_ref().map(|c| OAuthApp {
            client_id: c.client_id.clone(),
            client_secret: SecretString::from(c.client_secret.clone()),
        });
        let google = GoogleFake::start(options.google.clone()).await.context("starting the Google fake")?;
        let drive =
            drive::DriveFake::start(options.drive.clone()).await.context("starting the Drive fake")?;
        let graph =
            graph::GraphFake::start(options.graph.clone()).await.context("starting the Graph fake")?;
        let gmail = GmailFake::start(options.gmail.clone()).await.context("starting the Gmail fake")?;
        let notion = match options.notion.clone() {
            Some(c) => Some(notion::NotionFake::start(c).await.context("starting the Notion fake")?),
            None => None,
        };
        // Bound before the config: the worker opens push channels to this gateway's webhooks.
        let gateway_listener = gateway::bind(options.gateway_port).await?;
        let gateway_url = format!("http://{}", gateway_listener.local_addr()?);
        // The fake's app-level webhook subscription points at the gateway (sent on demand).
        hubspot.state().set_webhooks(Some(syncbridge_fakes::hubspot::WebhookTarget {
            url: format!("{gateway_url}/webhooks/hubspot"),
            app_id: options.hubspot_app_id.parse().context("the HubSpot app id is numeric")?,
            portal_id: LOCAL_HUBSPOT_PORTAL_ID,
        }));
        let fireflies = match options.fireflies.clone() {
            Some(c) => Some(fireflies::FirefliesFake::start(c).await.context("starting the Fireflies fake")?),
            None => None,
        };
        let fireflies_secret = format!("{:032x}", rand::random::<u128>());
        if let Some(ff) = &fireflies {
            let state = ff.state();
            state.set_webhook(Some(fireflies::WebhookTarget {
                url: format!("{gateway_url}/webhooks/fireflies?account={}", state.owner_email),
                secret: fireflies_secret.clone(),
            }));
        }
        // The deployment's Pub/Sub push subscription, authenticated as in production: each push
        // carries an OIDC token for the service account, its audience the endpoint's URL (Pub/Sub's
        // default), checked by the webhooks against the fake's keys as Lambda checks Google's.
        let push_endpoint = format!("{gateway_url}/webhooks/gmail");
        gmail.state().subscribe(
            LOCAL_GMAIL_TOPIC,
            &push_endpoint,
            Some(gmail::oidc::OidcToken {
                service_account_email: LOCAL_GMAIL_PUSH_ACCOUNT.to_owned(),
                audience: None,
            }),
        );
        let callback = format!("{gateway_url}{}", syncbridge::http::oauth::CALLBACK_PATH);
        let mut oauth = OAuthEndpoints {
            redirect_uris: vec![callback],
            hubspot_authorize_url: format!("{}/oauth/authorize", hubspot.base_url()),
            hubspot_api_base_url: hubspot.base_url(),
            google_authorize_url: format!("{}/o/oauth2/v2/auth", google.base_url()),
            google_revoke_url: format!("{}/revoke", google.base_url()),
            google_api_base_url: format!("{}/calendar/v3", google.base_url()),
            drive_authorize_url: format!("{}/o/oauth2/v2/auth", drive.base_url()),
            drive_revoke_url: format!("{}/revoke", drive.base_url()),
            drive_api_base_url: drive.api_url(),
            microsoft_graph_base_url: graph.base_url(),
            gmail: syncbridge::adapters::gmail::GmailConfig {
                api_base_url: gmail.api_url(),
                authorize_url: format!("{}/o/oauth2/v2/auth", gmail.base_url()),
                token_url: gmail.token_url(),
                revoke_url: format!("{}/revoke", gmail.base_url()),
                pubsub_topic: Some(LOCAL_GMAIL_TOPIC.to_owned()),
                push_audience: Some(push_endpoint),
                push_service_account: Some(LOCAL_GMAIL_PUSH_ACCOUNT.to_owned()),
                push_jwks_url: gmail.certs_url(),
                ..Default::default()
            },
            ..OAuthEndpoints::default()
        };
        if let Some(n) = &notion {
            oauth.notion_api_base_url = n.base_url();
        }
        if let Some(sf) = &salesforce {
            if options.salesforce_sandbox {
                oauth.salesforce_sandbox_login_url = sf.base_url();
            } else {
                oauth.salesforce_login_url = sf.base_url();
            }
        }
        let token_kms_key_id = if options.kms { Some(stack::create_kms_key(&sdk).await?) } else { None };
        let config = Config {
            resources: resources.resources.clone(),
            due_shards: resources
                .environment
                .get("DUE_SHARDS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(syncbridge::config::DEFAULT_DUE_SHARDS),
            token_key: Some(SecretString::from(TokenCipher::generate_key())),
            token_kms_key_id,
            oauth,
            hubspot_app: Some(OAuthApp {
                client_id: options.hubspot.client_id.clone(),
                client_secret: SecretString::from(options.hubspot.client_secret.clone()),
            }),
            microsoft_app: Some(OAuthApp {
                client_id: options.graph.client_id.clone(),
                client_secret: SecretString::from(options.graph.client_secret.clone()),
            }),
            microsoft_login_base_url: graph.base_url(),
            microsoft_tenant: "common".to_owned(),
            salesforce_app,
            google_app: Some(OAuthApp {
                client_id: options.google.client_id.clone(),
                client_secret: SecretString::from(options.google.client_secret.clone()),
            }),
            google_token_url: google.token_url(),
            drive_token_url: drive.token_url(),
            // The Notion fake's public integration, when the stack runs one.
            notion_app: options.notion.as_ref().map(|n| OAuthApp {
                client_id: n.client_id.clone(),
                client_secret: SecretString::from(n.client_secret.clone()),
            }),
            tenant_claim: "tenant_id".to_owned(),
            webhook_base_url: Some(gateway_url),
            hubspot_app_id: Some(options.hubspot_app_id.clone()),
            webhook_coalesce_secs: options.webhook_coalesce_secs,
            fireflies_api_base_url: fireflies.as_ref().map(|f| f.base_url()),
            fireflies_webhook_secret: Some(SecretString::from(fireflies_secret)),
        };
        let clients = match &options.counter {
            Some(c) => wiring::AwsClients {
                dynamodb: c.dynamodb(&sdk),
                sqs: c.sqs(&sdk),
                eventbridge: c.eventbridge(&sdk),
            },
            None => wiring::AwsClients::new(&sdk),
        };
        let deps = wiring::deps_with(&config, &sdk, clients, Arc::new(SystemClock))?;
        let runner = Runner::new(
            deps.clone(),
            aws_sdk_sqs::Client::new(&sdk),
            config.resources.jobs_queue_url.clone(),
        )
        .await?;
        let dev_key = match options.dev_key.clone() {
            Some(key) => key,
            None => DevKey::new(&random_secret())?,
        };
        let gateway = gateway::serve_on(
            gateway_listener,
            api::router(wiring::api_state(&deps, &config)),
            webhooks::router(wiring::webhook_state(&deps, &config, &sdk)?),
            dev_key.clone(),
        )?;
        let events =
            events_queue_url.clone().map(|url| EventCollector::spawn(aws_sdk_sqs::Client::new(&sdk), url));
        Ok(Self {
            config,
            sdk,
            resources,
            deps,
            runner,
            gateway,
            hubspot,
            salesforce,
            google,
            drive,
            graph,
            gmail,
            notion,
            fireflies,
            dev_key,
            events_queue_url,
            events,
            moto,
        })
    }

    /// A dev-signed token for `tenant`, as an identity provider would issue (valid one hour).
    pub fn token(&self, tenant: &str) -> Result<String> {
        let tenant = syncbridge::domain::TenantId::parse_external(tenant)?;
        Ok(self.dev_key.sign(&tenant, &format!("user-{tenant}"), std::time::Duration::from_secs(3600)))
    }

    /// Events published on the bus since the last call (read from the tap queue).
    pub async fn take_events(&self) -> Result<Vec<serde_json::Value>> {
        match &self.events {
            Some(collector) => collector.take().await,
            None => Ok(Vec::new()),
        }
    }
}

/// A fresh random secret (32 bytes, base64) for signing local tokens.
pub fn random_secret() -> SecretString {
    use base64::Engine;
    SecretString::from(base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()))
}

/// Reads the event tap queue continuously in the background. moto's SQS grows slower with every
/// message a queue holds (each send and receive walks them all), so the tap is kept short rather
/// than left to fill up during a sync.
struct EventCollector {
    sqs: aws_sdk_sqs::Client,
    url: String,
    seen: Arc<tokio::sync::Mutex<Vec<serde_json::Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl EventCollector {
    fn spawn(sqs: aws_sdk_sqs::Client, url: String) -> Self {
        let seen = Arc::new(tokio::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (sqs, url, seen) = (sqs.clone(), url.clone(), seen.clone());
            async move {
                loop {
                    // Held across the receive, so `take` never returns while a batch is in hand.
                    let mut guard = seen.lock().await;
                    let received = crate::stack::receive_events(&sqs, &url).await;
                    let got = matches!(&received, Ok(batch) if !batch.is_empty());
                    if let Ok(batch) = &received {
                        guard.extend(batch.iter().cloned());
                    }
                    drop(guard);
                    match received {
                        Ok(_) if got => {}
                        Ok(_) => tokio::time::sleep(crate::runner::IDLE_POLL).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "reading the event tap failed");
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        });
        Self { sqs, url, seen, task }
    }

    /// Everything collected so far plus what is still in the queue.
    async fn take(&self) -> Result<Vec<serde_json::Value>> {
        let mut seen = self.seen.lock().await;
        loop {
            let batch = crate::stack::receive_events(&self.sqs, &self.url).await?;
            if batch.is_empty() {
                break;
            }
            seen.extend(batch);
        }
        Ok(std::mem::take(&mut *seen))
    }
}

impl Drop for EventCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}
