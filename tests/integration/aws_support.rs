//! AWS harness for the adapter tests: a single-threaded moto per test, with the tables and the jobs
//! queue created from template.yaml (the one source of their schema).

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use secrecy::SecretString;
use syncbridge::adapters::crypto::TokenCipher;
use syncbridge::adapters::dynamo::DynamoStore;
use syncbridge_local::stack::{self, LocalResources};

/// A moto server on an OS-picked port; stopped when dropped.
pub struct Moto(stack::Moto);

impl Moto {
    pub async fn start() -> Result<Self> {
        Ok(Self(stack::Moto::start(stack::Moto::locate()?).await.context("starting moto")?))
    }

    pub async fn config(&self) -> SdkConfig {
        stack::sdk_config(self.0.endpoint())
    }
}

/// A name no other test in this process uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn resources(config: &SdkConfig) -> Result<LocalResources> {
    Ok(stack::create_from_template(&stack::template_path()?, config, &unique("t")).await?)
}

/// The template's main and audit tables, and a store over them.
pub async fn dynamo_store(config: &SdkConfig, due_shards: u16) -> Result<DynamoStore> {
    let res = resources(config).await?.resources;
    let cipher = TokenCipher::from_base64_key(&SecretString::from(TokenCipher::generate_key()))?;
    Ok(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(config),
        res.table_name,
        res.audit_table_name,
        cipher,
        due_shards,
    ))
}

/// The template's FIFO jobs queue when `fifo`, else a plain queue (a test's event tap).
pub async fn sqs_queue(config: &SdkConfig, fifo: bool) -> Result<String> {
    if fifo {
        return Ok(resources(config).await?.resources.jobs_queue_url);
    }
    let out = aws_sdk_sqs::Client::new(config).create_queue().queue_name(unique("events")).send().await?;
    out.queue_url.context("CreateQueue returned no URL")
}
