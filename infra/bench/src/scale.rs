//! Scale scenarios on the local AWS stack, with every DynamoDB, SQS and EventBridge request the
//! engine sends counted at the SDK (`syncbridge_local::counting`): the dispatcher with 100,000
//! connections of 10,000 tenants due in one tick, and scheduled syncs through the worker handler
//! (first syncs, syncs after edits, syncs that find nothing new), per record and per sync.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use secrecy::SecretString;
use serde::Serialize;
use syncbridge::adapters::dynamo::DynamoStore;
use syncbridge::adapters::sqs::SqsJobQueue;
use syncbridge::domain::connection::DEFAULT_INTERVAL_MINUTES;
use syncbridge::domain::{
    Connection, ConnectionId, ConnectionSettings, Credentials, NewConnection, Provider, TenantId,
};
use syncbridge::ports::ConnectionStore;
use syncbridge::sync::dispatcher;
use syncbridge::wiring;
use syncbridge_fakes::hubspot::FakeConfig;
use syncbridge_local::counting::{AwsCounter, OpTally, Tally};
use syncbridge_local::runner::{Drained, Runner};
use syncbridge_local::{LocalStack, StackOptions};

use crate::report::{Check, Target};
use crate::sqs_sink::SqsSink;

/// The worker's memory in template.yaml (`Globals.Function.MemorySize`), for GB-seconds.
pub const WORKER_MEMORY_MB: f64 = 256.0;

/// One named figure of a scale scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
}

/// What a scale scenario measured: its figures in order, the requests behind them by operation,
/// the targets and the checks.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleFigures {
    pub scenario: String,
    pub wall_s: f64,
    pub figures: Vec<Figure>,
    /// Requests by operation (and table), per phase.
    pub requests: BTreeMap<String, Tally>,
    pub targets: Vec<Target>,
    pub checks: Vec<Check>,
}

impl ScaleFigures {
    fn new(scenario: &str) -> Self {
        Self {
            scenario: scenario.to_owned(),
            wall_s: 0.0,
            figures: Vec::new(),
            requests: BTreeMap::new(),
            targets: Vec::new(),
            checks: Vec::new(),
        }
    }

    fn figure(&mut self, name: impl Into<String>, value: f64, unit: &'static str) {
        self.figures.push(Figure { name: name.into(), value, unit });
    }

    fn target(&mut self, goal: impl Into<String>, met: bool) {
        self.targets.push(Target { goal: goal.into(), met });
    }

    fn check(&mut self, what: impl Into<String>, passed: bool) {
        self.checks.push(Check { what: what.into(), passed });
    }

    pub fn trustworthy(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

fn per(n: f64, d: usize) -> f64 {
    if d == 0 { 0.0 } else { n / d as f64 }
}

/// A stack on moto whose engine's AWS clients are counted, with the two tables named `main` and
/// `audit` in the tally.
async fn counted_stack(contacts: usize) -> anyhow::Result<(LocalStack, AwsCounter)> {
    let counter = AwsCounter::new();
    let stack = LocalStack::start(StackOptions {
        hubspot: FakeConfig { contacts, private_app_token: Some(TOKEN.into()), ..FakeConfig::default() },
        tap_events: false,
        counter: Some(counter.clone()),
        ..StackOptions::default()
    })
    .await?;
    counter.name_table(&stack.config.resources.table_name, "main");
    counter.name_table(&stack.config.resources.audit_table_name, "audit");
    Ok((stack, counter))
}

const TOKEN: &str = "pat-bench-hubspot";

/// A HubSpot connection of `tenant` to `base_url`, due at `due`.
fn connection(
    tenant: &str,
    id: &str,
    base_url: &str,
    due: chrono::DateTime<Utc>,
) -> anyhow::Result<Connection> {
    let new = NewConnection {
        provider: Provider::Hubspot,
        base_url: base_url.to_owned(),
        credentials: Credentials {
            access_token: SecretString::from(TOKEN.to_owned()),
            refresh_token: None,
            expires_at: None,
        },
        interval_minutes: DEFAULT_INTERVAL_MINUTES,
        settings: ConnectionSettings::default(),
    };
    let mut c = Connection::new(TenantId::parse(tenant)?, new, due - chrono::Duration::minutes(30));
    c.connection_id = ConnectionId::parse(id)?;
    c.next_sync_at = Some(due);
    Ok(c)
}

/// A clock that stands still: the dispatcher scenario's ticks happen at set instants.
struct Frozen(chrono::DateTime<Utc>);

impl syncbridge::ports::Clock for Frozen {
    fn now(&self) -> chrono::DateTime<Utc> {
        self.0
    }
}

/// `connections` connections of `tenants` tenants, all due in one tick: the dispatcher's time to
/// claim and enqueue them all, with its DynamoDB requests counted against moto and its
/// `SendMessageBatch` calls sent through the real adapter to [`SqsSink`].
pub async fn dispatcher(name: &str, connections: usize, tenants: usize) -> anyhow::Result<ScaleFigures> {
    let (stack, counter) = counted_stack(0).await?;
    let sink = SqsSink::start().await?;
    let sink_sdk = syncbridge_local::stack::sdk_config(&sink.endpoint());
    let mut deps = stack.deps.clone();
    deps.queue = Arc::new(SqsJobQueue::new(counter.sqs(&sink_sdk), sink.queue_url()));

    let now = Utc::now();
    // The tick happens at `now` however long moto takes (the dispatcher takes the later of the
    // event's time and the clock, and on a loaded machine a tick of 100,000 claims outlasts the
    // interval); the next tick is a minute later.
    deps.clock = Arc::new(Frozen(now));
    let slot = now - chrono::Duration::minutes(1);
    let seeded = Instant::now();
    let cipher = wiring::token_cipher(&stack.config, &stack.sdk)?;
    let res = &stack.config.resources;
    let loader = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        res.table_name.clone(),
        res.audit_table_name.clone(),
        cipher,
        stack.config.due_shards,
    );
    let base_url = stack.hubspot.base_url();
    let mut all = Vec::with_capacity(connections);
    for i in 0..connections {
        all.push(connection(&format!("t{:05}", i % tenants), &format!("c{i:06}"), &base_url, slot)?);
    }
    for chunk in all.chunks(5_000) {
        loader.import_connections(chunk).await.context("seeding connections")?;
    }
    let seed_s = seeded.elapsed().as_secs_f64();
    let sample =
        loader.get(&all[0].tenant_id, &all[0].connection_id).await?.context("a seeded connection")?;
    drop(all);

    let before = counter.snapshot();
    let started = Instant::now();
    let summary = dispatcher::dispatch(&deps, Some(now)).await?;
    let wall = started.elapsed().as_secs_f64();
    let tick = counter.snapshot().since(&before);
    let sent = sink.stats();

    let before_idle = counter.snapshot();
    let next_tick = now + chrono::Duration::minutes(1);
    deps.clock = Arc::new(Frozen(next_tick));
    let idle = dispatcher::dispatch(&deps, Some(next_tick)).await?;
    let idle_tally = counter.snapshot().since(&before_idle);

    let mut f = ScaleFigures::new(name);
    f.wall_s = wall;
    let reads = tick.dynamo_reads();
    let writes = tick.dynamo_writes();
    let sqs = tick.service("SQS");
    f.figure("connections", connections as f64, "");
    f.figure("tenants", tenants as f64, "");
    f.figure("due-index shards", f64::from(stack.config.due_shards), "");
    f.figure("dispatch wall time (moto)", wall, "s");
    f.figure("claimed", summary.claimed as f64, "");
    f.figure("enqueued", summary.enqueued as f64, "");
    f.figure("messages sent", sent.messages as f64, "");
    f.figure("SendMessageBatch calls", sqs.requests as f64, "");
    f.figure("DynamoDB Query calls", reads.requests as f64, "");
    f.figure("DynamoDB UpdateItem calls", writes.requests as f64, "");
    f.figure("DynamoDB reads per connection", per(reads.read_units, connections), "RRU");
    f.figure("DynamoDB writes per connection", per(writes.write_units, connections), "WRU");
    f.figure(
        "DynamoDB requests per connection",
        per((reads.requests + writes.requests) as f64, connections),
        "",
    );
    f.figure("SQS requests per connection", per(sqs.requests as f64, connections), "");
    f.figure(
        "mean moto time per DynamoDB request",
        per(wall * 1000.0, (reads.requests + writes.requests) as usize),
        "ms",
    );
    f.figure("idle tick: DynamoDB requests", idle_tally.service("DynamoDB").requests as f64, "");
    f.figure("seeding (BatchWriteItem, not measured)", seed_s, "s");
    f.figure(
        "connection item size",
        syncbridge_local::counting::item_size(&connection_item(&stack, &sample).await?) as f64,
        "bytes",
    );
    f.requests.insert("tick".into(), tick.clone());
    f.requests.insert("idle tick".into(), idle_tally);

    f.check(
        format!("every connection claimed and enqueued once: {} of {connections}", summary.enqueued),
        summary.claimed == connections as u64 && summary.enqueued == connections as u64,
    );
    f.check(
        format!("the queue received {connections} distinct jobs and no repeat",),
        sent.messages == connections as u64 && sent.duplicates == 0 && sent.refused == 0,
    );
    f.check("no SendMessageBatch carried more than 10 entries", sent.largest_batch <= 10);
    f.check(
        format!("one conditional update per connection: {}", writes.requests),
        writes.requests == connections as u64,
    );
    f.check("the next tick finds nothing due", idle.due == 0 && idle.enqueued == 0);
    f.figure("jobs per SendMessageBatch", per(sent.messages as f64, sqs.requests as usize), "");
    f.target(
        format!(
            "SendMessageBatch of 10: {} calls for {connections} jobs (at most one short batch per page of {} pages)",
            sqs.requests, reads.requests
        ),
        sqs.requests <= connections.div_ceil(10) as u64 + reads.requests,
    );
    Ok(f)
}

/// The stored item of `c` (for its size).
async fn connection_item(
    stack: &LocalStack,
    c: &Connection,
) -> anyhow::Result<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let out = aws_sdk_dynamodb::Client::new(&stack.sdk)
        .get_item()
        .table_name(&stack.config.resources.table_name)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("T#{}", c.tenant_id)))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(format!("CONN#{}", c.connection_id)))
        .send()
        .await?;
    out.item.context("the connection item")
}

/// What one phase of scheduled syncs cost.
struct Phase {
    tally: Tally,
    drained: Drained,
    wall: Duration,
}

/// Fires the schedule at `at` and drains the queue through the worker handler.
async fn scheduled_syncs(
    runner: &Runner,
    counter: &AwsCounter,
    at: chrono::DateTime<Utc>,
    expected: usize,
) -> anyhow::Result<Phase> {
    let before = counter.snapshot();
    let started = Instant::now();
    let tick = runner.fire_schedule(at).await?;
    anyhow::ensure!(tick.enqueued == expected as u64, "enqueued {} of {expected}", tick.enqueued);
    let drained = runner.drain(Duration::from_secs(600)).await?;
    Ok(Phase { tally: counter.snapshot().since(&before), drained, wall: started.elapsed() })
}

/// DynamoDB writes and reads of one phase that concern records: puts on the main table.
fn record_puts(t: &Tally) -> OpTally {
    t.op("PutItem", "main")
}

/// `connections` HubSpot connections of `contacts` contacts each, synced on schedule four times
/// through the worker handler: first syncs (every record created), after `edited` contacts
/// changed (those updated), the sync after that (HubSpot's lookback brings the edited ones again,
/// unchanged), and with nothing changed. Counts DynamoDB units, SQS requests and the
/// handler's time per sync, and record writes per created, updated and unchanged record.
pub async fn scheduled(
    name: &str,
    connections: usize,
    contacts: usize,
    edited: usize,
) -> anyhow::Result<ScaleFigures> {
    let (stack, counter) = counted_stack(contacts).await?;
    let runner = Runner::new(
        stack.deps.clone(),
        counter.sqs(&stack.sdk),
        stack.config.resources.jobs_queue_url.clone(),
    )
    .await?;
    let now = Utc::now();
    for i in 0..connections {
        let c = connection(&format!("t{i:03}"), &format!("c{i:03}"), &stack.hubspot.base_url(), now)?;
        stack.deps.connections.create(&c).await?;
    }
    let started = Instant::now();
    let first = scheduled_syncs(&runner, &counter, now, connections).await?;
    let hub = stack.hubspot.state();
    let step = contacts / edited.max(1);
    for i in 1..=edited {
        hub.edit_contact(&(i * step).to_string(), &[("jobtitle", "Benchmark edit")]).context("editing")?;
    }
    let interval = chrono::Duration::minutes(i64::from(DEFAULT_INTERVAL_MINUTES) + 1);
    let changed = scheduled_syncs(&runner, &counter, now + interval, connections).await?;
    // HubSpot's clock moves on an interval between syncs, as it would: the next sync's 5-minute
    // lookback brings the edited contacts once more (unchanged), the one after that nothing.
    let a_while = std::time::Duration::from_secs(60 * (u64::from(DEFAULT_INTERVAL_MINUTES) + 1));
    hub.advance_clock(a_while);
    let lookback = scheduled_syncs(&runner, &counter, now + interval * 2, connections).await?;
    hub.advance_clock(a_while);
    hub.reset_stats();
    let unchanged = scheduled_syncs(&runner, &counter, now + interval * 3, connections).await?;

    let mut f = ScaleFigures::new(name);
    f.wall_s = started.elapsed().as_secs_f64();
    let created = connections * contacts;
    let updated = connections * edited;
    let c_puts = record_puts(&first.tally);
    let u_puts = record_puts(&changed.tally);
    let n_puts = record_puts(&unchanged.tally);
    f.figure("connections", connections as f64, "");
    f.figure("contacts per connection", contacts as f64, "");
    f.figure("record writes per created record", per(c_puts.requests as f64, created), "");
    f.figure("record write units per created record", per(c_puts.write_units, created), "WRU");
    f.figure("record writes per updated record", per(u_puts.requests as f64, updated), "");
    f.figure(
        "audit entries per updated record (with each sync's summary)",
        per(changed.tally.op("PutItem", "audit").requests as f64, updated),
        "",
    );
    f.figure("record writes in a no-change sync", per(n_puts.requests as f64, connections), "");
    let l = &lookback.tally;
    f.figure(
        "sync that re-reads the edited records (lookback): record writes",
        per(record_puts(l).requests as f64, connections),
        "",
    );
    f.figure(
        "sync that re-reads the edited records: DynamoDB write units",
        per(l.dynamo_writes().write_units, connections),
        "WRU",
    );
    f.figure(
        "sync that re-reads the edited records: DynamoDB read units",
        per(l.dynamo_reads().read_units, connections),
        "RRU",
    );
    for (label, phase, records) in [("first sync", &first, created), ("sync after edits", &changed, updated)]
    {
        let all = phase.tally.dynamo_writes();
        f.figure(
            format!("{label}: DynamoDB write requests per record"),
            per(all.requests as f64, records),
            "",
        );
        f.figure(format!("{label}: DynamoDB write units per record"), per(all.write_units, records), "WRU");
    }
    let n = &unchanged.tally;
    let sqs_billed = sqs_billed_requests(n, &unchanged.drained);
    let handler_s = unchanged.drained.handler.as_secs_f64();
    f.figure(
        "no-change sync: DynamoDB write requests",
        per(n.dynamo_writes().requests as f64, connections),
        "",
    );
    f.figure("no-change sync: DynamoDB write units", per(n.dynamo_writes().write_units, connections), "WRU");
    f.figure(
        "no-change sync: DynamoDB read requests",
        per(n.dynamo_reads().requests as f64, connections),
        "",
    );
    f.figure("no-change sync: DynamoDB read units", per(n.dynamo_reads().read_units, connections), "RRU");
    f.figure("no-change sync: SQS requests (send, receive, delete)", per(sqs_billed as f64, connections), "");
    f.figure(
        "no-change sync: EventBridge PutEvents",
        per(n.service("EventBridge").requests as f64, connections),
        "",
    );
    f.figure("no-change sync: HubSpot requests", per(hubspot_requests(&stack), connections), "");
    f.figure("no-change sync: worker handler time (moto)", per(handler_s * 1000.0, connections), "ms");
    f.figure(
        "no-change sync: Lambda GB-seconds (local handler time)",
        per(handler_s * WORKER_MEMORY_MB / 1024.0, connections),
        "GB-s",
    );
    f.figure(
        "no-change sync: bytes put on the main table (run, job ledger)",
        per(n.op("TransactWriteItems", "main").bytes_put as f64, connections),
        "bytes",
    );
    f.figure(
        "no-change sync: bytes put on the audit table (run summary)",
        per(n.op("PutItem", "audit").bytes_put as f64, connections),
        "bytes",
    );
    f.figure("record item size (as created here)", per(c_puts.bytes_put as f64, created), "bytes");
    f.figure("no-change phase wall time", unchanged.wall.as_secs_f64(), "s");
    f.requests.insert("first syncs".into(), first.tally.clone());
    f.requests.insert("syncs after edits".into(), changed.tally.clone());
    f.requests.insert("lookback syncs".into(), l.clone());
    f.requests.insert("no-change syncs".into(), n.clone());

    f.check(
        "every phase's jobs succeeded",
        [&first, &changed, &lookback, &unchanged].iter().all(|p| p.drained.failures == 0),
    );
    f.check(
        format!("the lookback sync re-read the {updated} edited records and wrote none of them"),
        l.op("BatchGetItem", "main").items_read == updated as u64 && record_puts(l).requests == 0,
    );
    f.check(
        format!("the no-change sync read no record: {}", n.op("BatchGetItem", "main").items_read),
        n.op("BatchGetItem", "main").items_read == 0,
    );
    f.check(
        format!("{} records created ({created} expected)", c_puts.requests),
        c_puts.items_written == created as u64,
    );
    f.target(
        format!("at most 2 writes per created record: {:.2}", per(c_puts.requests as f64, created)),
        c_puts.requests as usize <= 2 * created,
    );
    f.target(
        format!("at most 1 record write per updated record: {:.2}", per(u_puts.requests as f64, updated)),
        u_puts.requests as usize <= updated,
    );
    f.target(format!("no record write for unchanged records: {}", n_puts.requests), n_puts.requests == 0);
    Ok(f)
}

/// SQS requests Lambda's event source mapping and our code make for the phase: sends, the
/// receives that returned messages (the local runner also polls an empty queue; the mapping
/// long-polls) and the deletes.
fn sqs_billed_requests(t: &Tally, drained: &Drained) -> u64 {
    let get = |op: &str| t.by_op.get(&format!("SQS.{op}")).map_or(0, |o| o.requests);
    get("SendMessageBatch") + get("SendMessage") + drained.batches as u64 + get("DeleteMessageBatch")
}

/// Requests the HubSpot fake served since its counters were last reset.
fn hubspot_requests(stack: &LocalStack) -> f64 {
    stack.hubspot.state().stats().total as f64
}
