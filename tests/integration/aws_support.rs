//! Temporary AWS harness for the adapter tests: a moto server per test and the tables and queues
//! the adapters expect, created directly through the SDK.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use secrecy::SecretString;
use syncbridge::adapters::crypto::TokenCipher;
use syncbridge::adapters::dynamo::{AUDIT_CONNECTION_INDEX, DUE_INDEX, DynamoStore};

const SINGLE_THREADED_MOTO: &str = "
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
run_simple('127.0.0.1', 0, DomainDispatcherApplication(create_backend_app), threaded=False,
           request_handler=MotoRequestHandler)
";

/// A moto server on an OS-picked port; killed when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto from the virtualenv of `MOTO_SERVER` (default
    /// `/tmp/venvtest/.venv/bin/moto_server`). It runs single-threaded: moto does not serialize
    /// concurrent conditional writes on one item, which DynamoDB does, so a threaded moto lets two
    /// racing conditional writes both succeed.
    pub async fn start() -> Result<Self> {
        let bin = std::env::var("MOTO_SERVER")
            .unwrap_or_else(|_| "/tmp/venvtest/.venv/bin/moto_server".to_owned());
        let python = std::path::Path::new(&bin).with_file_name("python");
        let mut child = Command::new(&python)
            .args(["-c", SINGLE_THREADED_MOTO])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting moto with {}", python.display()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("moto stderr not captured"))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                if let Some(rest) = line.split("http://127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    if let (Some(tx), Ok(port)) = (tx.take(), port.parse::<u16>()) {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        let mut moto = Self {
            child,
            endpoint: String::new(),
        };
        let port = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .context("moto did not report its port")??;
        moto.endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http
                .get(format!("{}/moto-api/", moto.endpoint))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(moto);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("moto at {} never answered", moto.endpoint)
    }

    pub async fn config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::from_keys("test", "test", None))
            .endpoint_url(&self.endpoint)
            .load()
            .await
    }
}

/// A name no other test in this process uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn attr(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition> {
    Ok(AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()?)
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement> {
    Ok(KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()?)
}

/// Creates the main and audit tables (with their indexes and TTL) and a store over them.
pub async fn dynamo_store(config: &SdkConfig, due_shards: u16) -> Result<DynamoStore> {
    let client = aws_sdk_dynamodb::Client::new(config);
    let (table, audit) = (unique("main"), unique("audit"));
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("sk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("due_shard", ScalarAttributeType::S)?)
        .attribute_definitions(attr("next_sync_at", ScalarAttributeType::N)?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(DUE_INDEX)
                .key_schema(key("due_shard", KeyType::Hash)?)
                .key_schema(key("next_sync_at", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .non_key_attributes("interval_minutes")
                        .build(),
                )
                .build()?,
        )
        .send()
        .await?;
    client
        .update_time_to_live()
        .table_name(&table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_at")
                .build()?,
        )
        .send()
        .await?;
    client
        .create_table()
        .table_name(&audit)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("sk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("conn_pk", ScalarAttributeType::S)?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(AUDIT_CONNECTION_INDEX)
                .key_schema(key("conn_pk", KeyType::Hash)?)
                .key_schema(key("sk", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()?,
        )
        .send()
        .await?;
    let cipher = TokenCipher::from_base64_key(&SecretString::from(TokenCipher::generate_key()))?;
    Ok(DynamoStore::new(client, table, audit, cipher, due_shards))
}

/// Creates an SQS queue (FIFO when `fifo`) and returns its URL.
pub async fn sqs_queue(config: &SdkConfig, fifo: bool) -> Result<String> {
    let client = aws_sdk_sqs::Client::new(config);
    let mut req = client.create_queue();
    if fifo {
        req = req
            .queue_name(format!("{}.fifo", unique("jobs")))
            .attributes(QueueAttributeName::FifoQueue, "true");
    } else {
        req = req.queue_name(unique("events"));
    }
    let out = req.send().await?;
    out.queue_url
        .ok_or_else(|| anyhow!("CreateQueue returned no URL"))
}
