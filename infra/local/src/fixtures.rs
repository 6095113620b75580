//! The Lambda event fixtures of `tests/fixtures/` (an EventBridge scheduled event, an SQS batch
//! holding one sync job, an API Gateway HTTP API request), the connection they name, and the
//! environment that lets `cargo lambda watch` run the four functions against the local stack. A
//! test hands the same files to the same handlers.

use std::path::PathBuf;

use anyhow::{Context, Result};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use syncbridge::config::Config;
use syncbridge::domain::connection::DEFAULT_INTERVAL_MINUTES;
use syncbridge::domain::{
    Connection, ConnectionId, ConnectionSettings, Credentials, NewConnection, Provider, TenantId,
};
use syncbridge::ports::{ConnectionStore, StoreError};

/// The tenant the fixtures act for (the API request's `tenant_id` claim, the job's tenant).
pub const TENANT: &str = "local";
/// The HubSpot connection the SQS fixture's job syncs.
pub const CONNECTION: &str = "fixture-hubspot";
/// The scheduled event (`cargo lambda invoke dispatcher`).
pub const SCHEDULED_EVENT: &str = "eventbridge-scheduled.json";
/// One SQS batch with one sync job (`cargo lambda invoke worker`).
pub const SQS_BATCH: &str = "sqs-batch-job.json";
/// `GET /v1/connections` through API Gateway with the JWT authorizer's claims
/// (`cargo lambda invoke api`).
pub const HTTP_REQUEST: &str = "apigw-http-request.json";

/// Where a fixture lives.
pub fn path(name: &str) -> Result<PathBuf> {
    Ok(crate::stack::repo_root()?.join("tests").join("fixtures").join(name))
}

fn read(name: &str) -> Result<String> {
    let p = path(name)?;
    std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
}

/// The EventBridge scheduled event, as the dispatcher's handler takes it.
pub fn scheduled_event() -> Result<EventBridgeEvent<Value>> {
    serde_json::from_str(&read(SCHEDULED_EVENT)?).context("parsing the scheduled event")
}

/// The SQS batch, as the worker's handler takes it.
pub fn sqs_batch() -> Result<SqsEvent> {
    serde_json::from_str(&read(SQS_BATCH)?).context("parsing the SQS batch")
}

/// The API Gateway HTTP API request, converted as `lambda_http` converts it in Lambda (the
/// request context with the authorizer's claims becomes a request extension).
pub fn http_request() -> Result<lambda_http::Request> {
    lambda_http::request::from_str(&read(HTTP_REQUEST)?).context("parsing the API Gateway request")
}

/// Creates the fixtures' connection (tenant [`TENANT`], id [`CONNECTION`]) at the HubSpot server
/// `base_url` with a private-app `token`, due at once; leaves one that exists as it is.
pub async fn ensure_connection(
    connections: &dyn ConnectionStore,
    base_url: &str,
    token: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let new = NewConnection {
        provider: Provider::Hubspot,
        base_url: base_url.trim_end_matches('/').to_owned(),
        credentials: Credentials {
            access_token: SecretString::from(token.to_owned()),
            refresh_token: None,
            expires_at: None,
        },
        interval_minutes: DEFAULT_INTERVAL_MINUTES,
        settings: ConnectionSettings::default(),
    };
    let mut connection = Connection::new(TenantId::parse(TENANT)?, new, now);
    connection.connection_id = ConnectionId::parse(CONNECTION)?;
    match connections.create(&connection).await {
        Ok(()) | Err(StoreError::Conflict) => Ok(()),
        Err(e) => Err(e).context("creating the fixtures' connection"),
    }
}

/// The environment the Lambda functions read (`Config::from_env` and the AWS SDK's), for the
/// local stack whose config is `config` and whose moto listens at `moto_endpoint`: what
/// `cargo lambda watch --env-file` needs to run them against that stack. Holds the local token
/// key (written with mode 0600).
pub fn lambda_env(config: &Config, moto_endpoint: &str) -> Vec<(String, String)> {
    let r = &config.resources;
    let o = &config.oauth;
    let mut env: Vec<(&str, String)> = vec![
        ("AWS_ENDPOINT_URL", moto_endpoint.to_owned()),
        ("AWS_REGION", crate::stack::REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("TABLE_NAME", r.table_name.clone()),
        ("AUDIT_TABLE_NAME", r.audit_table_name.clone()),
        ("JOBS_QUEUE_URL", r.jobs_queue_url.clone()),
        ("EVENT_BUS_NAME", r.event_bus_name.clone()),
        ("DUE_SHARDS", config.due_shards.to_string()),
        ("TENANT_CLAIM", config.tenant_claim.clone()),
        ("OAUTH_REDIRECT_URIS", o.redirect_uris.join(",")),
        ("HUBSPOT_AUTHORIZE_URL", o.hubspot_authorize_url.clone()),
        ("HUBSPOT_API_BASE_URL", o.hubspot_api_base_url.clone()),
        ("SALESFORCE_LOGIN_URL", o.salesforce_login_url.clone()),
        ("SALESFORCE_SANDBOX_LOGIN_URL", o.salesforce_sandbox_login_url.clone()),
        ("GOOGLE_AUTHORIZE_URL", o.google_authorize_url.clone()),
        ("GOOGLE_REVOKE_URL", o.google_revoke_url.clone()),
        ("GOOGLE_API_BASE_URL", o.google_api_base_url.clone()),
        ("GOOGLE_TOKEN_URL", config.google_token_url.clone()),
        ("DRIVE_AUTHORIZE_URL", o.drive_authorize_url.clone()),
        ("DRIVE_REVOKE_URL", o.drive_revoke_url.clone()),
        ("DRIVE_API_BASE_URL", o.drive_api_base_url.clone()),
        ("DRIVE_TOKEN_URL", config.drive_token_url.clone()),
        ("MICROSOFT_GRAPH_BASE_URL", o.microsoft_graph_base_url.clone()),
        ("MICROSOFT_LOGIN_BASE_URL", config.microsoft_login_base_url.clone()),
        ("MICROSOFT_TENANT", config.microsoft_tenant.clone()),
        ("WEBHOOK_COALESCE_SECONDS", config.webhook_coalesce_secs.to_string()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let secret = |s: &SecretString| s.expose_secret().to_owned();
    if let Some(key) = &config.token_key {
        env.push(("TOKEN_KEY", secret(key)));
    }
    if let Some(url) = &config.webhook_base_url {
        env.push(("WEBHOOK_BASE_URL", url.clone()));
    }
    if let Some(id) = &config.hubspot_app_id {
        env.push(("HUBSPOT_APP_ID", id.clone()));
    }
    let apps = [
        ("HUBSPOT", &config.hubspot_app),
        ("SALESFORCE", &config.salesforce_app),
        ("GOOGLE", &config.google_app),
        ("MICROSOFT", &config.microsoft_app),
    ];
    let mut out: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    for (name, app) in apps {
        if let Some(app) = app {
            out.push((format!("{name}_CLIENT_ID"), app.client_id.clone()));
            out.push((format!("{name}_CLIENT_SECRET"), secret(&app.client_secret)));
        }
    }
    out.retain(|(_, v)| !v.is_empty());
    out
}

/// `lambda_env` as an env file (what `cargo lambda watch --env-file` reads, dotenv syntax): one
/// `KEY='value'` a line. Values are quoted, since a base64 key's `=`, `+` and `/` do not parse
/// bare; single quotes take the value as it is, and a value holding one is double-quoted with
/// `\`, `"` and `$` escaped.
pub fn env_file(vars: &[(String, String)]) -> String {
    vars.iter()
        .map(|(k, v)| {
            if v.contains('\'') {
                let escaped = v.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$");
                format!("{k}=\"{escaped}\"\n")
            } else {
                format!("{k}='{v}'\n")
            }
        })
        .collect()
}

/// Reads back what [`env_file`] wrote.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| {
            let value = if let Some(inner) = v.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
                inner.to_owned()
            } else if let Some(inner) = v.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
                let mut out = String::with_capacity(inner.len());
                let mut chars = inner.chars();
                while let Some(c) = chars.next() {
                    out.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
                }
                out
            } else {
                v.to_owned()
            };
            (k.to_owned(), value)
        })
        .collect()
}
