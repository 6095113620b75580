//! The local stack: moto as a child process, and the tables, queues and bus of template.yaml
//! created in it exactly as the template declares them.

use std::net::TcpStream;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use syncbridge_local::stack::sdk::dynamodb::types::{KeyType, ProjectionType, TimeToLiveStatus};
use syncbridge_local::stack::sdk::sqs::types::QueueAttributeName;
use syncbridge_local::stack::sdk::{SdkConfig, dynamodb, eventbridge, sqs};
use syncbridge_local::stack::{self, LocalResources, Moto};

struct Stack {
    moto: Moto,
    config: SdkConfig,
    created: LocalResources,
}

async fn start_stack(prefix: &str) -> Result<Stack> {
    let moto = Moto::start(Moto::locate()?).await?;
    let config = stack::sdk_config(moto.endpoint());
    let created = stack::create_from_template(&stack::template_path()?, &config, prefix).await?;
    Ok(Stack { moto, config, created })
}

/// The table's global secondary index `name`.
fn index<'a>(
    table: &'a dynamodb::types::TableDescription,
    name: &str,
) -> Result<&'a dynamodb::types::GlobalSecondaryIndexDescription> {
    let found = table.global_secondary_indexes().iter().find(|i| i.index_name() == Some(name));
    found.with_context(|| format!("table {:?} has no `{name}` index", table.table_name()))
}

fn key_schema(keys: &[dynamodb::types::KeySchemaElement]) -> Vec<(String, KeyType)> {
    keys.iter().map(|k| (k.attribute_name().to_owned(), k.key_type().clone())).collect()
}

async fn queue_attributes(
    config: &SdkConfig,
    url: &str,
) -> Result<std::collections::HashMap<QueueAttributeName, String>> {
    Ok(sqs::Client::new(config)
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await?
        .attributes
        .unwrap_or_default())
}

#[tokio::test]
async fn main_table_from_the_template_has_the_sharded_due_index_the_push_queue_and_meeting_uid_indexes_ttl_and_pitr()
-> Result<()> {
    let stack = start_stack("main").await?;
    let client = dynamodb::Client::new(&stack.config);
    let table_name = &stack.created.resources.table_name;

    let table = client.describe_table().table_name(table_name).send().await?;
    let table = table.table().context("DescribeTable returned no table")?;
    assert_eq!(
        key_schema(table.key_schema()),
        vec![("pk".to_owned(), KeyType::Hash), ("sk".to_owned(), KeyType::Range)]
    );
    let due = index(table, "due")?;
    assert_eq!(
        key_schema(due.key_schema()),
        vec![("due_shard".to_owned(), KeyType::Hash), ("next_sync_at".to_owned(), KeyType::Range)]
    );
    let projection = due.projection().context("`due` has no projection")?;
    assert_eq!(projection.projection_type(), Some(&ProjectionType::Include));
    assert_eq!(projection.non_key_attributes(), ["interval_minutes".to_owned()]);
    let push_queue = index(table, "push_queue")?;
    assert_eq!(
        key_schema(push_queue.key_schema()),
        vec![("pk".to_owned(), KeyType::Hash), ("push_order".to_owned(), KeyType::Range)]
    );
    assert_eq!(push_queue.projection().and_then(|p| p.projection_type()), Some(&ProjectionType::All));
    let meeting_uid = index(table, "meeting_uid")?;
    assert_eq!(
        key_schema(meeting_uid.key_schema()),
        vec![("meeting_key".to_owned(), KeyType::Hash), ("sk".to_owned(), KeyType::Range)]
    );
    assert_eq!(meeting_uid.projection().and_then(|p| p.projection_type()), Some(&ProjectionType::KeysOnly));

    let ttl = client.describe_time_to_live().table_name(table_name).send().await?;
    let ttl = ttl.time_to_live_description().context("no TTL description")?;
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    assert_eq!(ttl.attribute_name(), Some("expires_at"));

    let backups = client.describe_continuous_backups().table_name(table_name).send().await?;
    let pitr = backups
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status())
        .context("no point-in-time recovery status")?;
    assert_eq!(pitr.as_str(), "ENABLED");
    Ok(())
}

#[tokio::test]
async fn audit_table_is_a_separate_table_indexed_by_connection_and_by_record() -> Result<()> {
    let stack = start_stack("audit").await?;
    let resources = &stack.created.resources;
    assert_ne!(resources.audit_table_name, resources.table_name);

    let table = dynamodb::Client::new(&stack.config)
        .describe_table()
        .table_name(&resources.audit_table_name)
        .send()
        .await?;
    let table = table.table().context("DescribeTable returned no table")?;
    let by_connection = index(table, "by_connection")?;
    assert_eq!(
        key_schema(by_connection.key_schema()),
        vec![("conn_pk".to_owned(), KeyType::Hash), ("sk".to_owned(), KeyType::Range)]
    );
    assert_eq!(by_connection.projection().and_then(|p| p.projection_type()), Some(&ProjectionType::All));
    let by_record = index(table, "by_record")?;
    assert_eq!(
        key_schema(by_record.key_schema()),
        vec![("rec_pk".to_owned(), KeyType::Hash), ("sk".to_owned(), KeyType::Range)]
    );
    assert_eq!(by_record.projection().and_then(|p| p.projection_type()), Some(&ProjectionType::All));
    Ok(())
}

#[tokio::test]
async fn function_environment_resolves_resource_names_and_parameter_defaults_but_no_secrets() -> Result<()> {
    let stack = start_stack("env").await?;
    let env = &stack.created.environment;
    let resources = &stack.created.resources;
    assert_eq!(env.get("TABLE_NAME"), Some(&resources.table_name));
    assert_eq!(env.get("JOBS_QUEUE_URL"), Some(&resources.jobs_queue_url));
    assert_eq!(env.get("EVENT_BUS_NAME"), Some(&resources.event_bus_name));
    assert_eq!(env.get("DUE_SHARDS").map(String::as_str), Some("4"));
    assert_eq!(env.get("TENANT_CLAIM").map(String::as_str), Some("tenant_id"));
    assert!(!env.contains_key("TOKEN_KEY"), "the token key must come from a secret, never a default");
    assert_eq!(resources.event_bus_name, "env-events");
    Ok(())
}

#[tokio::test]
async fn jobs_queue_is_high_throughput_fifo_dead_letters_after_five_receives_and_redrives_back() -> Result<()>
{
    let stack = start_stack("jobs").await?;
    let jobs_url = &stack.created.resources.jobs_queue_url;
    let dlq_url = &stack.created.dlq_url;
    ensure!(jobs_url.ends_with(".fifo"), "jobs queue {jobs_url} is not FIFO by name");

    let jobs = queue_attributes(&stack.config, jobs_url).await?;
    let dlq = queue_attributes(&stack.config, dlq_url).await?;
    let attr = |attrs: &std::collections::HashMap<QueueAttributeName, String>, name| {
        attrs.get(&name).cloned().unwrap_or_default()
    };
    assert_eq!(attr(&jobs, QueueAttributeName::FifoQueue), "true");
    assert_eq!(attr(&jobs, QueueAttributeName::ContentBasedDeduplication), "false");
    assert_eq!(attr(&jobs, QueueAttributeName::DeduplicationScope), "messageGroup");
    assert_eq!(attr(&jobs, QueueAttributeName::FifoThroughputLimit), "perMessageGroupId");
    assert_eq!(attr(&jobs, QueueAttributeName::VisibilityTimeout), "720");
    assert_eq!(attr(&dlq, QueueAttributeName::FifoQueue), "true");

    let redrive: Value = serde_json::from_str(&attr(&jobs, QueueAttributeName::RedrivePolicy))?;
    assert_eq!(
        redrive["deadLetterTargetArn"].as_str(),
        Some(attr(&dlq, QueueAttributeName::QueueArn).as_str())
    );
    assert_eq!(redrive["maxReceiveCount"].to_string().trim_matches('"'), "5");

    let client = sqs::Client::new(&stack.config);
    client
        .send_message()
        .queue_url(jobs_url)
        .message_body(r#"{"job":"sync"}"#)
        .message_group_id("tenant#conn")
        .message_deduplication_id("conn#slot-1")
        .send()
        .await?;
    for attempt in 1..=5 {
        let got = client
            .receive_message()
            .queue_url(jobs_url)
            .visibility_timeout(0)
            .send()
            .await?
            .messages
            .unwrap_or_default();
        ensure!(got.len() == 1, "receive {attempt} got {} messages", got.len());
    }
    let sixth = client.receive_message().queue_url(jobs_url).visibility_timeout(0).send().await?;
    assert!(sixth.messages.unwrap_or_default().is_empty(), "a sixth receive still got the message");
    let dead = client
        .receive_message()
        .queue_url(dlq_url)
        .visibility_timeout(0)
        .send()
        .await?
        .messages
        .unwrap_or_default();
    assert_eq!(dead.iter().filter_map(|m| m.body()).collect::<Vec<_>>(), [r#"{"job":"sync"}"#]);

    // Redrive: back into the jobs queue, in its message group, and out of the DLQ.
    let moved = syncbridge::adapters::sqs::redrive(&client, dlq_url, jobs_url, 100).await?;
    assert_eq!(moved, 1);
    let back = client
        .receive_message()
        .queue_url(jobs_url)
        .message_system_attribute_names(sqs::types::MessageSystemAttributeName::MessageGroupId)
        .send()
        .await?
        .messages
        .unwrap_or_default();
    assert_eq!(back.iter().filter_map(|m| m.body()).collect::<Vec<_>>(), [r#"{"job":"sync"}"#]);
    let group =
        back[0].attributes().and_then(|a| a.get(&sqs::types::MessageSystemAttributeName::MessageGroupId));
    assert_eq!(group.map(String::as_str), Some("tenant#conn"));
    let left = client.receive_message().queue_url(dlq_url).send().await?.messages.unwrap_or_default();
    assert!(left.is_empty(), "the DLQ is empty after the redrive");
    Ok(())
}

#[tokio::test]
async fn events_with_the_syncbridge_source_reach_the_tap_queue_and_others_do_not() -> Result<()> {
    let stack = start_stack("bus").await?;
    let bus = &stack.created.resources.event_bus_name;
    let tap = stack::tap_events(&stack.config, bus, "bus").await?;

    let entry = |source: &str, detail: Value| {
        eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(bus)
            .source(source)
            .detail_type("sync.completed")
            .detail(detail.to_string())
            .build()
    };
    let out = eventbridge::Client::new(&stack.config)
        .put_events()
        .entries(entry("syncbridge", json!({"tenant_id": "t1", "connection_id": "c1"})))
        .entries(entry("someone.else", json!({"tenant_id": "t2"})))
        .send()
        .await?;
    assert_eq!(out.failed_entry_count(), 0);

    let events = stack::drain_events(&stack.config, &tap).await?;
    assert_eq!(events.len(), 1, "events: {events:?}");
    assert_eq!(events[0]["source"], "syncbridge");
    assert_eq!(events[0]["detail-type"], "sync.completed");
    assert_eq!(events[0]["detail"], json!({"tenant_id": "t1", "connection_id": "c1"}));
    assert!(stack::drain_events(&stack.config, &tap).await?.is_empty(), "draining must delete what it read");
    Ok(())
}

#[tokio::test]
async fn reset_forgets_every_table_moto_holds() -> Result<()> {
    let stack = start_stack("reset").await?;
    let client = dynamodb::Client::new(&stack.config);
    assert_eq!(client.list_tables().send().await?.table_names().len(), 2);
    stack.moto.reset().await?;
    assert!(client.list_tables().send().await?.table_names().is_empty());
    Ok(())
}

#[tokio::test]
async fn moto_child_process_is_gone_after_drop() -> Result<()> {
    let moto = Moto::start(Moto::locate()?).await?;
    let proc_dir = format!("/proc/{}", moto.pid());
    let address = moto.endpoint().trim_start_matches("http://").to_owned();
    ensure!(Path::new(&proc_dir).exists(), "moto is not running before the drop");
    ensure!(TcpStream::connect(&address).is_ok(), "moto does not listen before the drop");

    drop(moto);

    if Path::new(&proc_dir).exists() {
        let status = std::fs::read_to_string(format!("{proc_dir}/status")).unwrap_or_default();
        bail!("moto still exists after drop: {}", status.lines().take(3).collect::<Vec<_>>().join("; "));
    }
    assert!(TcpStream::connect(&address).is_err(), "something still listens on moto's port");
    Ok(())
}

/// Every function logs to a log group of the template's own, with the retention the
/// `LogRetentionDays` parameter sets (Lambda's default group keeps logs forever).
#[test]
fn every_function_logs_to_a_log_group_of_the_template_with_a_retention() -> Result<()> {
    let text = std::fs::read_to_string(stack::template_path()?)?;
    let template = stack::Template::parse(&text)?;
    let functions: Vec<_> =
        template.resources.iter().filter(|(_, r)| r.kind == "AWS::Serverless::Function").collect();
    ensure!(functions.len() == 4, "expected the four functions, found {}", functions.len());
    for (id, function) in functions {
        let group = function.properties["LoggingConfig"]["LogGroup"]["Ref"]
            .as_str()
            .with_context(|| format!("{id} has no LoggingConfig.LogGroup !Ref"))?;
        let group = template.resources.get(group).with_context(|| format!("{id}: no resource {group}"))?;
        ensure!(group.kind == "AWS::Logs::LogGroup", "{id}: {} is not a log group", group.kind);
        ensure!(
            group.properties["RetentionInDays"] == json!({ "Ref": "LogRetentionDays" }),
            "{id}: its log group's retention is {}",
            group.properties["RetentionInDays"]
        );
    }
    Ok(())
}

/// The environment variables `shared/src` reads by name (`optional("…")`, `required("…")`, the
/// URL helpers' `url("…", "…")`, `var("…")`), found in its source.
fn env_vars_read_by_the_code() -> Result<std::collections::BTreeSet<String>> {
    fn scan(dir: &Path, found: &mut std::collections::BTreeSet<String>) -> Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                scan(&path, found)?;
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            for call in ["optional(", "required(", "url(", "var("] {
                for (at, _) in text.match_indices(call) {
                    // The literal arguments: one, or two for the URL helper's fallback variable.
                    let mut rest = &text[at + call.len()..];
                    for _ in 0..2 {
                        let Some(literal) = rest.trim_start().strip_prefix('"') else { break };
                        let Some(end) = literal.find('"') else { break };
                        let name = &literal[..end];
                        if name.len() < 3
                            || !name
                                .bytes()
                                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                        {
                            break;
                        }
                        found.insert(name.to_owned());
                        rest = literal[end + 1..].trim_start().strip_prefix(',').unwrap_or("");
                    }
                }
            }
        }
        Ok(())
    }
    let root = stack::template_path()?.parent().context("the template's directory")?.join("shared/src");
    let mut found = std::collections::BTreeSet::new();
    scan(&root, &mut found)?;
    ensure!(
        found.contains("TABLE_NAME") && found.contains("GMAIL_PUSH_AUDIENCE"),
        "the scan found {found:?}"
    );
    Ok(found)
}

/// Every variable the code reads is set by template.yaml, for every function or its own, unless it
/// is named here as local-only with its reason; and the Gmail and Notion settings reach exactly the
/// functions that use them (no secret among them).
#[test]
fn every_environment_variable_the_code_reads_is_set_by_the_template_or_is_local_only() -> Result<()> {
    // Each has a default that is right in AWS (the real providers' endpoints and scopes), or is
    // the local path of something Lambda reads elsewhere.
    const LOCAL_ONLY: &[(&str, &str)] = &[
        ("HUBSPOT_AUTHORIZE_URL", "endpoint; default the real provider's, a fake's locally"),
        ("HUBSPOT_API_BASE_URL", "endpoint"),
        ("SALESFORCE_LOGIN_URL", "endpoint"),
        ("SALESFORCE_SANDBOX_LOGIN_URL", "endpoint"),
        ("GOOGLE_AUTHORIZE_URL", "endpoint"),
        ("GOOGLE_REVOKE_URL", "endpoint"),
        ("GOOGLE_API_BASE_URL", "endpoint"),
        ("MICROSOFT_GRAPH_BASE_URL", "endpoint"),
        ("MICROSOFT_LOGIN_BASE_URL", "endpoint"),
        ("GMAIL_API_BASE_URL", "endpoint"),
        ("GMAIL_AUTHORIZE_URL", "endpoint"),
        ("GMAIL_TOKEN_URL", "endpoint"),
        ("GMAIL_REVOKE_URL", "endpoint"),
        ("GMAIL_PUSH_JWKS_URL", "endpoint: Google's signing keys"),
        ("NOTION_API_BASE_URL", "endpoint"),
        ("DRIVE_API_BASE_URL", "endpoint"),
        ("DRIVE_AUTHORIZE_URL", "endpoint"),
        ("DRIVE_TOKEN_URL", "endpoint; default GOOGLE_TOKEN_URL's value"),
        ("DRIVE_REVOKE_URL", "endpoint"),
        ("DRIVE_OAUTH_SCOPES", "scopes"),
        ("HUBSPOT_OAUTH_SCOPES", "scopes; the default is what the adapter needs"),
        ("SALESFORCE_OAUTH_SCOPES", "scopes"),
        ("GOOGLE_OAUTH_SCOPES", "scopes"),
        ("MICROSOFT_OAUTH_SCOPES", "scopes"),
        ("GMAIL_OAUTH_SCOPES", "scopes"),
        ("MICROSOFT_TENANT", "default `common`: any work or personal account"),
        ("DASHBOARD_OIDC_SCOPE", "default `openid email profile`"),
        ("TOKEN_KEY", "dev only: Lambda reads TOKEN_KEY_SECRET_ARN"),
        ("FIREFLIES_WEBHOOK_SECRET", "local only; in Lambda from Secrets Manager, the env var ignored"),
    ];
    let text = std::fs::read_to_string(stack::template_path()?)?;
    let template = stack::Template::parse(&text)?;
    let globals = &template.globals["Function"]["Environment"]["Variables"];
    let own = |id: &str| -> Result<Value> {
        Ok(template.resources.get(id).with_context(|| id.to_owned())?.properties["Environment"]["Variables"]
            .clone())
    };
    let functions = ["DispatcherFunction", "WorkerFunction", "ApiFunction", "WebhooksFunction"];
    let mut set = std::collections::BTreeSet::new();
    for vars in
        std::iter::once(globals.clone()).chain(functions.iter().map(|f| own(f)).collect::<Result<Vec<_>>>()?)
    {
        set.extend(vars.as_object().into_iter().flatten().map(|(k, _)| k.clone()));
    }
    for name in env_vars_read_by_the_code()? {
        let local = LOCAL_ONLY.iter().any(|(n, _)| *n == name);
        ensure!(
            set.contains(&name) != local,
            "{name}: set by the template: {}, named local-only: {local}",
            set.contains(&name)
        );
    }
    ensure!(
        globals.get("NOTION_CLIENT_ID") == Some(&json!({ "Ref": "NotionClientId" })),
        "NOTION_CLIENT_ID beside the other client ids"
    );
    let holders = |name: &str| -> Result<Vec<&str>> {
        Ok(functions.iter().copied().filter(|f| own(f).is_ok_and(|v| v.get(name).is_some())).collect())
    };
    ensure!(holders("GMAIL_PUBSUB_TOPIC")? == ["WorkerFunction"], "the worker keeps the watches");
    for name in ["GMAIL_PUSH_AUDIENCE", "GMAIL_PUSH_SERVICE_ACCOUNT"] {
        ensure!(holders(name)? == ["WebhooksFunction"], "{name}: only the webhooks verify pushes");
    }
    Ok(())
}
