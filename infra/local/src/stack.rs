//! The local AWS stack: a moto server, and the tables, queues and bus of `template.yaml` created in
//! it, so local runs and tests use exactly the resources the real deployment declares.
//!
//! Nothing about the schema lives here: key schemas, indexes, TTL, queue attributes and redrive
//! policies are all read from the template. Resources are named after the template's own name
//! property resolved with `AWS::StackName` = the prefix (`{prefix}-jobs.fifo`, `{prefix}-events`)
//! or, where the template leaves the name to CloudFormation, `{prefix}-{LogicalId}`.

mod moto;
pub mod template;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, LocalSecondaryIndex,
    PointInTimeRecoverySpecification, Projection, ProjectionType, ProvisionedThroughput, ScalarAttributeType,
    SseSpecification, StreamSpecification, StreamViewType, TableClass, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};
use syncbridge::config::Resources;
use syncbridge::domain::event::EVENT_SOURCE;

pub use moto::Moto;
pub use template::{Physical, Template, TemplateError};

/// The AWS SDK crates, re-exported so tests and tools drive moto with the very same versions.
pub mod sdk {
    pub use aws_config::SdkConfig;
    pub use aws_sdk_dynamodb as dynamodb;
    pub use aws_sdk_eventbridge as eventbridge;
    pub use aws_sdk_sqs as sqs;
}

/// The region everything local runs in.
pub const REGION: &str = "us-east-1";
/// The account moto reports for every resource.
pub const ACCOUNT_ID: &str = "123456789012";

const TABLE: &str = "AWS::DynamoDB::Table";
const QUEUE: &str = "AWS::SQS::Queue";
const EVENT_BUS: &str = "AWS::Events::EventBus";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the local stack could not be started or built.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("moto_server not found: {0}")]
    MotoNotFound(String),
    #[error("could not start {}", path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("moto_server at {endpoint} did not become ready (exited: {exited}); its last log lines:\n{log}")]
    NotReady { endpoint: String, exited: bool, log: String },
    #[error("request to moto failed")]
    Moto(#[source] reqwest::Error),
    #[error("repository root (the folder holding template.yaml) not found above {}", .0.display())]
    RepoRoot(PathBuf),
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("template {}", path.display())]
    Template {
        path: PathBuf,
        #[source]
        source: TemplateError,
    },
    #[error("resource {logical_id} in the template")]
    Resource {
        logical_id: String,
        #[source]
        source: BoxError,
    },
    #[error("AWS call {op} failed")]
    Aws {
        op: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("{0}")]
    Unexpected(String),
}

fn aws<E: std::error::Error + Send + Sync + 'static>(op: &'static str) -> impl FnOnce(E) -> StackError {
    move |e| StackError::Aws { op, source: Box::new(e) }
}

/// The resources created from the template, by the names the functions read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResources {
    /// TABLE_NAME, AUDIT_TABLE_NAME, JOBS_QUEUE_URL, EVENT_BUS_NAME.
    pub resources: Resources,
    /// The dead-letter queue the jobs queue's `RedrivePolicy` points at.
    pub dlq_url: String,
    /// Every variable of the template's `Globals.Function.Environment` that resolves locally
    /// (resource names, `DUE_SHARDS` and other parameter defaults, constants); variables that need
    /// a deploy-time value (secrets, parameters without a default) are absent.
    pub environment: BTreeMap<String, String>,
    /// What `Ref` gives for each created resource (table and bus names, queue URLs), by logical id.
    pub physical_ids: BTreeMap<String, String>,
}

/// The repository root: the nearest folder holding `template.yaml`, searched upwards from
/// `$CARGO_MANIFEST_DIR`, this crate's source folder, then the current directory.
pub fn repo_root() -> Result<PathBuf, StackError> {
    let starts = [
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
        std::env::current_dir().ok(),
    ];
    let starts: Vec<PathBuf> = starts.into_iter().flatten().collect();
    starts
        .iter()
        .find_map(|start| {
            start.ancestors().find(|dir| dir.join("template.yaml").is_file()).map(Path::to_path_buf)
        })
        .ok_or_else(|| StackError::RepoRoot(starts.into_iter().next().unwrap_or_default()))
}

/// `<repo>/template.yaml`.
pub fn template_path() -> Result<PathBuf, StackError> {
    Ok(repo_root()?.join("template.yaml"))
}

/// SDK configuration for a local endpoint: region us-east-1, static test credentials.
pub fn sdk_config(endpoint: &str) -> SdkConfig {
    let credentials = Credentials::new("testing", "testing", None, None, "syncbridge-local");
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build()
}

/// Creates every DynamoDB table, SQS queue and EventBridge bus the template declares, in
/// dependency order (a dead-letter queue before the queue that redrives to it), and returns
/// their names. `prefix` makes the names unique (one prefix per test).
pub async fn create_from_template(
    template_path: &Path,
    config: &SdkConfig,
    prefix: &str,
) -> Result<LocalResources, StackError> {
    let text = std::fs::read_to_string(template_path)
        .map_err(|source| StackError::Read { path: template_path.to_path_buf(), source })?;
    let in_template = |source| StackError::Template { path: template_path.to_path_buf(), source };
    let template = Template::parse(&text).map_err(in_template)?;
    let order = template.creation_order(&[TABLE, QUEUE, EVENT_BUS]).map_err(in_template)?;

    let region = config.region().map_or(REGION, Region::as_ref);
    let mut scope = template::Scope::new(prefix, region, ACCOUNT_ID, template.parameters.clone());
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    let sqs = aws_sdk_sqs::Client::new(config);
    let events = aws_sdk_eventbridge::Client::new(config);
    let mut resolved: BTreeMap<String, Value> = BTreeMap::new();

    for id in order {
        let Some(resource) = template.resources.get(&id) else { continue };
        let in_resource = |source: BoxError| StackError::Resource { logical_id: id.clone(), source };
        let properties = scope.resolve(&resource.properties).map_err(|e| in_resource(e.into()))?;
        let default_name = format!("{prefix}-{id}");
        let physical = match resource.kind.as_str() {
            TABLE => {
                let props: TableProperties =
                    serde_json::from_value(properties.clone()).map_err(|e| in_resource(e.into()))?;
                create_table(&dynamodb, props, &default_name, &in_resource).await?
            }
            QUEUE => {
                let props: QueueProperties =
                    serde_json::from_value(properties.clone()).map_err(|e| in_resource(e.into()))?;
                create_queue(&sqs, props, &default_name, &in_resource).await?
            }
            EVENT_BUS => {
                let props: EventBusProperties =
                    serde_json::from_value(properties.clone()).map_err(|e| in_resource(e.into()))?;
                create_event_bus(&events, props).await?
            }
            _ => continue,
        };
        resolved.insert(id.clone(), properties);
        scope.created.insert(id, physical);
    }

    let environment = function_environment(&template, &scope);
    let by_env = |name: &str| {
        let Some(Value::String(id)) =
            template.globals.pointer(&format!("/Function/Environment/Variables/{name}/Ref"))
        else {
            return Err(StackError::Unexpected(format!(
                "template: Globals.Function.Environment.Variables.{name} must be a Ref to a resource"
            )));
        };
        scope.created.get(id).map(|p| (id.clone(), p.reference.clone())).ok_or_else(|| {
            StackError::Unexpected(format!(
                "template: {name} refers to {id}, which is not a table, queue or bus"
            ))
        })
    };
    let (jobs_queue_id, jobs_queue_url) = by_env("JOBS_QUEUE_URL")?;
    let resources = Resources {
        table_name: by_env("TABLE_NAME")?.1,
        audit_table_name: by_env("AUDIT_TABLE_NAME")?.1,
        jobs_queue_url,
        event_bus_name: by_env("EVENT_BUS_NAME")?.1,
    };
    let dlq_arn = resolved
        .get(&jobs_queue_id)
        .and_then(|p| p.pointer("/RedrivePolicy/deadLetterTargetArn"))
        .and_then(Value::as_str)
        .ok_or_else(|| StackError::Unexpected(format!("template: {jobs_queue_id} has no RedrivePolicy")))?;
    let dlq_url = scope
        .created
        .values()
        .find(|p| p.attributes.get("Arn").is_some_and(|arn| arn == dlq_arn))
        .map(|p| p.reference.clone())
        .ok_or_else(|| StackError::Unexpected(format!("dead-letter queue {dlq_arn} was not created")))?;
    let physical_ids = scope.created.iter().map(|(id, p)| (id.clone(), p.reference.clone())).collect();
    Ok(LocalResources { resources, dlq_url, environment, physical_ids })
}

fn function_environment(template: &Template, scope: &template::Scope) -> BTreeMap<String, String> {
    let Some(Value::Object(vars)) = template.globals.pointer("/Function/Environment/Variables") else {
        return BTreeMap::new();
    };
    vars.iter()
        .filter_map(|(name, value)| {
            let value = scope.resolve(value).ok()?;
            template::scalar_string(&value).map(|v| (name.clone(), v))
        })
        .collect()
}

/// Creates a symmetric KMS key (in moto) for envelope encryption of tokens; returns its id. In AWS
/// the template's `TokenKmsKey` plays this part.
pub async fn create_kms_key(config: &SdkConfig) -> Result<String, StackError> {
    let out = aws_sdk_kms::Client::new(config)
        .create_key()
        .description("syncbridge local token key")
        .send()
        .await
        .map_err(aws("kms:CreateKey"))?;
    out.key_metadata
        .map(|m| m.key_id)
        .ok_or_else(|| StackError::Unexpected("CreateKey returned no key metadata".into()))
}

/// Creates a standard queue and a rule on `bus_name` that forwards every Syncbridge event
/// (source `syncbridge`) to it, so tests can read what was published. Returns the queue URL.
pub async fn tap_events(config: &SdkConfig, bus_name: &str, prefix: &str) -> Result<String, StackError> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let events = aws_sdk_eventbridge::Client::new(config);
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("{prefix}-events-tap"))
        .send()
        .await
        .map_err(aws("sqs:CreateQueue"))?
        .queue_url
        .ok_or_else(|| StackError::Unexpected("CreateQueue returned no QueueUrl".into()))?;
    let queue_arn = queue_arn(&sqs, &queue_url).await?;
    let rule = format!("{prefix}-tap");
    events
        .put_rule()
        .name(&rule)
        .event_bus_name(bus_name)
        .event_pattern(serde_json::json!({ "source": [EVENT_SOURCE] }).to_string())
        .send()
        .await
        .map_err(aws("events:PutRule"))?;
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("tap")
        .arn(queue_arn)
        .build()
        .map_err(aws("events:PutTargets"))?;
    let out = events
        .put_targets()
        .rule(&rule)
        .event_bus_name(bus_name)
        .targets(target)
        .send()
        .await
        .map_err(aws("events:PutTargets"))?;
    if out.failed_entry_count() > 0 {
        return Err(StackError::Unexpected(format!("PutTargets failed: {:?}", out.failed_entries())));
    }
    Ok(queue_url)
}

/// Receives and deletes every message now in `queue_url` and parses each body as JSON (for a
/// tap queue: whole EventBridge events, `detail` included as an object).
pub async fn drain_events(config: &SdkConfig, queue_url: &str) -> Result<Vec<Value>, StackError> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let mut events = Vec::new();
    loop {
        let batch = receive_events(&sqs, queue_url).await?;
        if batch.is_empty() {
            return Ok(events);
        }
        events.extend(batch);
    }
}

/// Receives up to 10 messages of `queue_url` (no wait), deletes them in one batch and returns
/// their bodies as JSON.
pub async fn receive_events(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<Vec<Value>, StackError> {
    use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(0)
        .send()
        .await
        .map_err(aws("sqs:ReceiveMessage"))?;
    let messages = out.messages.unwrap_or_default();
    let mut events = Vec::with_capacity(messages.len());
    let mut deletes = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let event = serde_json::from_str(m.body().unwrap_or_default())
            .map_err(|e| StackError::Unexpected(format!("tap message is not JSON: {e}")))?;
        events.push(event);
        if let Some(handle) = m.receipt_handle() {
            let entry = DeleteMessageBatchRequestEntry::builder()
                .id(format!("e{i}"))
                .receipt_handle(handle)
                .build()
                .map_err(|e| StackError::Unexpected(format!("delete entry: {e}")))?;
            deletes.push(entry);
        }
    }
    if !deletes.is_empty() {
        sqs.delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(deletes))
            .send()
            .await
            .map_err(aws("sqs:DeleteMessageBatch"))?;
    }
    Ok(events)
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<String, StackError> {
    sqs.get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(aws("sqs:GetQueueAttributes"))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| StackError::Unexpected(format!("queue {queue_url} has no QueueArn")))
}

// ------------------------------------------------------------------ DynamoDB

/// `AWS::DynamoDB::Table` properties. Unknown properties are rejected so a template change the
/// local stack cannot honour fails loudly instead of drifting.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct TableProperties {
    table_name: Option<String>,
    attribute_definitions: Vec<AttributeDefinitionP>,
    key_schema: Vec<KeyElementP>,
    #[serde(default)]
    global_secondary_indexes: Vec<IndexP>,
    #[serde(default)]
    local_secondary_indexes: Vec<IndexP>,
    billing_mode: Option<String>,
    provisioned_throughput: Option<ThroughputP>,
    time_to_live_specification: Option<TtlP>,
    point_in_time_recovery_specification: Option<PitrP>,
    #[serde(rename = "SSESpecification")]
    sse_specification: Option<SseP>,
    stream_specification: Option<StreamP>,
    table_class: Option<String>,
    #[serde(rename = "DeletionProtectionEnabled", default)]
    _deletion_protection_enabled: Option<IgnoredAny>,
    #[serde(rename = "Tags", default)]
    _tags: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct AttributeDefinitionP {
    attribute_name: String,
    attribute_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct KeyElementP {
    attribute_name: String,
    key_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct IndexP {
    index_name: String,
    key_schema: Vec<KeyElementP>,
    projection: ProjectionP,
    provisioned_throughput: Option<ThroughputP>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ProjectionP {
    projection_type: Option<String>,
    non_key_attributes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ThroughputP {
    read_capacity_units: Flex<i64>,
    write_capacity_units: Flex<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct TtlP {
    attribute_name: String,
    enabled: Flex<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PitrP {
    point_in_time_recovery_enabled: Flex<bool>,
    #[serde(rename = "RecoveryPeriodInDays", default)]
    _recovery_period_in_days: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SseP {
    #[serde(rename = "SSEEnabled")]
    enabled: Flex<bool>,
    #[serde(rename = "SSEType", default)]
    _sse_type: Option<IgnoredAny>,
    #[serde(rename = "KMSMasterKeyId", default)]
    _kms_master_key_id: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct StreamP {
    stream_view_type: String,
}

/// A CloudFormation scalar that may be written as its own type or as a string (`"true"`, `"5"`).
#[derive(Debug, Clone, Copy)]
struct Flex<T>(T);

impl<'de, T> Deserialize<'de> for Flex<T>
where
    T: Deserialize<'de> + std::str::FromStr,
{
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either<T> {
            Typed(T),
            Text(String),
        }
        match Either::<T>::deserialize(deserializer)? {
            Either::Typed(t) => Ok(Flex(t)),
            Either::Text(s) => {
                s.parse().map(Flex).map_err(|_| serde::de::Error::custom(format!("unexpected value {s:?}")))
            }
        }
    }
}

fn key_schema(elements: &[KeyElementP]) -> Result<Vec<KeySchemaElement>, BoxError> {
    elements
        .iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .map_err(Into::into)
        })
        .collect()
}

fn projection(p: &ProjectionP) -> Projection {
    Projection::builder()
        .set_projection_type(p.projection_type.as_deref().map(ProjectionType::from))
        .set_non_key_attributes(p.non_key_attributes.clone())
        .build()
}

fn throughput(t: &ThroughputP) -> Result<ProvisionedThroughput, BoxError> {
    Ok(ProvisionedThroughput::builder()
        .read_capacity_units(t.read_capacity_units.0)
        .write_capacity_units(t.write_capacity_units.0)
        .build()?)
}

async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    props: TableProperties,
    default_name: &str,
    in_resource: &impl Fn(BoxError) -> StackError,
) -> Result<Physical, StackError> {
    let name = props.table_name.clone().unwrap_or_else(|| default_name.to_owned());
    let request = table_request(client, &name, &props).map_err(in_resource)?;
    let created = request.send().await.map_err(aws("dynamodb:CreateTable"))?;
    let arn = created
        .table_description()
        .and_then(|d| d.table_arn())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"));
    if let Some(ttl) = &props.time_to_live_specification {
        let spec = TimeToLiveSpecification::builder()
            .attribute_name(&ttl.attribute_name)
            .enabled(ttl.enabled.0)
            .build()
            .map_err(|e| in_resource(e.into()))?;
        client
            .update_time_to_live()
            .table_name(&name)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(aws("dynamodb:UpdateTimeToLive"))?;
    }
    if let Some(pitr) = &props.point_in_time_recovery_specification {
        let spec = PointInTimeRecoverySpecification::builder()
            .point_in_time_recovery_enabled(pitr.point_in_time_recovery_enabled.0)
            .build()
            .map_err(|e| in_resource(e.into()))?;
        client
            .update_continuous_backups()
            .table_name(&name)
            .point_in_time_recovery_specification(spec)
            .send()
            .await
            .map_err(aws("dynamodb:UpdateContinuousBackups"))?;
    }
    Ok(Physical { reference: name.clone(), attributes: BTreeMap::from([("Arn".to_owned(), arn)]) })
}

fn table_request(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    props: &TableProperties,
) -> Result<aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder, BoxError> {
    let mut request =
        client.create_table().table_name(name).set_key_schema(Some(key_schema(&props.key_schema)?));
    for a in &props.attribute_definitions {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(&a.attribute_name)
                .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                .build()?,
        );
    }
    for index in &props.global_secondary_indexes {
        let throughput = index.provisioned_throughput.as_ref().map(throughput).transpose()?;
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&index.index_name)
                .set_key_schema(Some(key_schema(&index.key_schema)?))
                .projection(projection(&index.projection))
                .set_provisioned_throughput(throughput)
                .build()?,
        );
    }
    for index in &props.local_secondary_indexes {
        request = request.local_secondary_indexes(
            LocalSecondaryIndex::builder()
                .index_name(&index.index_name)
                .set_key_schema(Some(key_schema(&index.key_schema)?))
                .projection(projection(&index.projection))
                .build()?,
        );
    }
    if let Some(mode) = &props.billing_mode {
        request = request.billing_mode(BillingMode::from(mode.as_str()));
    }
    if let Some(t) = &props.provisioned_throughput {
        request = request.provisioned_throughput(throughput(t)?);
    }
    if let Some(sse) = &props.sse_specification {
        request = request.sse_specification(SseSpecification::builder().enabled(sse.enabled.0).build());
    }
    if let Some(stream) = &props.stream_specification {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(stream.stream_view_type.as_str()))
                .build()?,
        );
    }
    if let Some(class) = &props.table_class {
        request = request.table_class(TableClass::from(class.as_str()));
    }
    Ok(request)
}

// ------------------------------------------------------------------ SQS

/// `AWS::SQS::Queue` properties: besides the name and tags, each property is a queue attribute of
/// the same name; objects (`RedrivePolicy`, `RedriveAllowPolicy`) are sent as JSON text.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueProperties {
    queue_name: Option<String>,
    #[serde(rename = "Tags", default)]
    _tags: Option<IgnoredAny>,
    #[serde(flatten)]
    attributes: Map<String, Value>,
}

async fn create_queue(
    client: &aws_sdk_sqs::Client,
    props: QueueProperties,
    default_name: &str,
    in_resource: &impl Fn(BoxError) -> StackError,
) -> Result<Physical, StackError> {
    let mut attributes = HashMap::new();
    for (key, value) in &props.attributes {
        if !QueueAttributeName::values().contains(&key.as_str()) {
            return Err(in_resource(format!("unsupported queue property {key}").into()));
        }
        let name = QueueAttributeName::from(key.as_str());
        let text = match value {
            Value::Object(_) | Value::Array(_) => value.to_string(),
            scalar => template::scalar_string(scalar)
                .ok_or_else(|| in_resource(format!("queue property {key} is null").into()))?,
        };
        attributes.insert(name, text);
    }
    let fifo = attributes.get(&QueueAttributeName::FifoQueue).is_some_and(|v| v == "true");
    let name = match props.queue_name {
        Some(name) => name,
        None if fifo => format!("{default_name}.fifo"),
        None => default_name.to_owned(),
    };
    let url = client
        .create_queue()
        .queue_name(&name)
        .set_attributes(Some(attributes))
        .send()
        .await
        .map_err(aws("sqs:CreateQueue"))?
        .queue_url
        .ok_or_else(|| StackError::Unexpected("CreateQueue returned no QueueUrl".into()))?;
    let arn = queue_arn(client, &url).await?;
    Ok(Physical {
        reference: url.clone(),
        attributes: BTreeMap::from([
            ("Arn".to_owned(), arn),
            ("QueueName".to_owned(), name),
            ("QueueUrl".to_owned(), url),
        ]),
    })
}

// ------------------------------------------------------------------ EventBridge

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct EventBusProperties {
    name: String,
    description: Option<String>,
    #[serde(rename = "Tags", default)]
    _tags: Option<IgnoredAny>,
}

async fn create_event_bus(
    client: &aws_sdk_eventbridge::Client,
    props: EventBusProperties,
) -> Result<Physical, StackError> {
    let arn = client
        .create_event_bus()
        .name(&props.name)
        .set_description(props.description)
        .send()
        .await
        .map_err(aws("events:CreateEventBus"))?
        .event_bus_arn
        .unwrap_or_else(|| format!("arn:aws:events:{REGION}:{ACCOUNT_ID}:event-bus/{}", props.name));
    Ok(Physical {
        reference: props.name.clone(),
        attributes: BTreeMap::from([("Arn".to_owned(), arn), ("Name".to_owned(), props.name)]),
    })
}
