//! Request counting at the AWS SDK: an interceptor that tallies every operation a client sends
//! (DynamoDB, SQS, EventBridge) and, for DynamoDB, the items written and read and the capacity
//! units they cost by DynamoDB's published sizing rules. Benchmarks and tests read the tally to
//! hold the engine to a budget of requests per record or per sync.
//!
//! Units are computed from the items themselves, not from `ConsumedCapacity`: moto answers a
//! constant there (1.0 a call), while DynamoDB bills by size. The interceptor still asks for
//! `ReturnConsumedCapacity::Total` and keeps what comes back (`reported_units`), so a run against
//! real DynamoDB can be compared with the computed figure. Rules applied (on-demand mode):
//! a write costs one write unit per started KB of the item (for an `UpdateItem` or `DeleteItem`,
//! whose stored size the request does not show, the key and the values it sends: a lower bound),
//! transactional writes twice that; a strongly consistent read one read unit per started 4 KB of
//! each item (a `Query` rounds the sum of the items it returns; a read that finds nothing still
//! costs one), eventually consistent reads half. Index writes follow this project's tables: an
//! item with `conn_pk` or `rec_pk` (the audit table's indexes, all attributes projected) costs its
//! size again per index; a `due_shard` item (the main table's due index: keys and
//! `interval_minutes`) costs one more unit, and an update that moves `next_sync_at` two (the index
//! entry is deleted and put again).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextMut, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation::batch_get_item::{BatchGetItemInput, BatchGetItemOutput};
use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemInput;
use aws_sdk_dynamodb::operation::get_item::{GetItemInput, GetItemOutput};
use aws_sdk_dynamodb::operation::put_item::{PutItemInput, PutItemOutput};
use aws_sdk_dynamodb::operation::query::{QueryInput, QueryOutput};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemInput, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use serde::Serialize;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Item = HashMap<String, AttributeValue>;

const KB: usize = 1024;
const READ_UNIT_BYTES: usize = 4 * KB;

/// What one operation (`DynamoDB.PutItem`, `SQS.SendMessageBatch`, ...) cost so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OpTally {
    /// Operations sent (an SDK retry of the same operation is not another one).
    pub requests: u64,
    /// Items the operations asked to write (puts, updates, deletes, condition checks).
    pub items_written: u64,
    /// Items read: keys asked for by gets, items returned by queries.
    pub items_read: u64,
    /// Write units by DynamoDB's sizing rules, indexes included.
    pub write_units: f64,
    /// Bytes of the items written by puts (DynamoDB's item size; what a put adds to storage when
    /// the item is new, indexes not included).
    pub bytes_put: u64,
    /// Read units by DynamoDB's sizing rules.
    pub read_units: f64,
    /// `ConsumedCapacity` as the server reported it (moto: a constant).
    pub reported_units: f64,
    /// Time from sending to the answer, summed (milliseconds).
    pub time_ms: f64,
}

impl OpTally {
    fn add(&mut self, other: &OpTally) {
        self.requests += other.requests;
        self.items_written += other.items_written;
        self.items_read += other.items_read;
        self.write_units += other.write_units;
        self.bytes_put += other.bytes_put;
        self.read_units += other.read_units;
        self.reported_units += other.reported_units;
        self.time_ms += other.time_ms;
    }
}

/// Every operation's tally, by `Service.Operation`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    pub by_op: BTreeMap<String, OpTally>,
}

impl Tally {
    /// The sum over one service's operations (`DynamoDB`, `SQS`, `EventBridge`).
    pub fn service(&self, service: &str) -> OpTally {
        let mut sum = OpTally::default();
        for (_, t) in self.by_op.iter().filter(|(k, _)| k.split('.').next() == Some(service)) {
            sum.add(t);
        }
        sum
    }

    /// DynamoDB operations that write (their requests, items and units).
    pub fn dynamo_writes(&self) -> OpTally {
        self.filtered(|op| WRITE_OPS.contains(&op))
    }

    /// DynamoDB operations that read.
    pub fn dynamo_reads(&self) -> OpTally {
        self.filtered(|op| READ_OPS.contains(&op))
    }

    /// DynamoDB operations on one table (by its alias, see [`AwsCounter::name_table`]).
    pub fn on_table(&self, table: &str) -> Tally {
        let by_op = self
            .by_op
            .iter()
            .filter(|(k, _)| k.starts_with("DynamoDB.") && k.split(' ').nth(1) == Some(table))
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        Tally { by_op }
    }

    /// The tally of one operation on one table (`op("PutItem", "main")`).
    pub fn op(&self, op: &str, table: &str) -> OpTally {
        self.by_op.get(&format!("DynamoDB.{op} {table}")).cloned().unwrap_or_default()
    }

    fn filtered(&self, keep: impl Fn(&str) -> bool) -> OpTally {
        let mut sum = OpTally::default();
        for (k, t) in &self.by_op {
            let op = k.strip_prefix("DynamoDB.").and_then(|rest| rest.split(' ').next());
            if op.is_some_and(&keep) {
                sum.add(t);
            }
        }
        sum
    }

    /// What happened since `earlier` (a snapshot of the same counter).
    pub fn since(&self, earlier: &Tally) -> Tally {
        let mut out = Tally::default();
        for (k, t) in &self.by_op {
            let before = earlier.by_op.get(k).cloned().unwrap_or_default();
            let d = OpTally {
                requests: t.requests - before.requests,
                items_written: t.items_written - before.items_written,
                items_read: t.items_read - before.items_read,
                write_units: t.write_units - before.write_units,
                bytes_put: t.bytes_put - before.bytes_put,
                read_units: t.read_units - before.read_units,
                reported_units: t.reported_units - before.reported_units,
                time_ms: t.time_ms - before.time_ms,
            };
            if d.requests > 0 {
                out.by_op.insert(k.clone(), d);
            }
        }
        out
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (op, t) in &self.by_op {
            writeln!(
                f,
                "  {op:<34} {:>7} requests {:>7} written {:>7} read {:>9.1} WRU {:>9.1} RRU {:>9.0} ms",
                t.requests, t.items_written, t.items_read, t.write_units, t.read_units, t.time_ms
            )?;
        }
        Ok(())
    }
}

const WRITE_OPS: &[&str] = &["PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"];
const READ_OPS: &[&str] = &["GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"];

/// The counter: attach it to any number of SDK clients; they share one tally. Cheap to clone.
#[derive(Clone, Default)]
pub struct AwsCounter {
    tally: Arc<Mutex<Tally>>,
    tables: Arc<Mutex<HashMap<String, String>>>,
}

impl fmt::Debug for AwsCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCounter").finish_non_exhaustive()
    }
}

impl AwsCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tallies DynamoDB operations on `table` under `alias` (`DynamoDB.PutItem main`) rather than
    /// under the table's (per-run) name.
    pub fn name_table(&self, table: &str, alias: &str) {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner).insert(table.to_owned(), alias.to_owned());
    }

    /// A copy of the tally so far.
    pub fn snapshot(&self) -> Tally {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A DynamoDB client on `sdk` that this counter watches.
    pub fn dynamodb(&self, sdk: &SdkConfig) -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::config::Builder::from(sdk).interceptor(self.clone()).build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }

    /// An SQS client on `sdk` that this counter watches.
    pub fn sqs(&self, sdk: &SdkConfig) -> aws_sdk_sqs::Client {
        let conf = aws_sdk_sqs::config::Builder::from(sdk).interceptor(self.clone()).build();
        aws_sdk_sqs::Client::from_conf(conf)
    }

    /// An EventBridge client on `sdk` that this counter watches.
    pub fn eventbridge(&self, sdk: &SdkConfig) -> aws_sdk_eventbridge::Client {
        let conf = aws_sdk_eventbridge::config::Builder::from(sdk).interceptor(self.clone()).build();
        aws_sdk_eventbridge::Client::from_conf(conf)
    }

    fn record(&self, flight: &InFlight, t: &OpTally) {
        let key = match &flight.table {
            Some(table) => {
                let tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
                format!("{} {}", flight.op, tables.get(table).unwrap_or(table))
            }
            None => flight.op.clone(),
        };
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        tally.by_op.entry(key).or_default().add(t);
    }
}

/// What the request side of one operation tells, kept until its response is read.
#[derive(Debug, Clone, Default)]
struct InFlight {
    op: String,
    /// The DynamoDB table (the first, for a batch over several).
    table: Option<String>,
    written: u64,
    write_units: f64,
    bytes_put: u64,
    /// Keys asked for by gets (each costs at least one read).
    keys: u64,
    /// Read units per started 4 KB: 1 for strongly consistent reads, 0.5 for eventually.
    read_factor: f64,
    sent_at: Option<Instant>,
}

impl Storable for InFlight {
    type Storer = StoreReplace<Self>;
}

impl Intercept for AwsCounter {
    fn name(&self) -> &'static str {
        "AwsCounter"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, name) = match cfg.load::<Metadata>() {
            Some(m) => (m.service().to_owned(), m.name().to_owned()),
            None => ("unknown".to_owned(), "unknown".to_owned()),
        };
        let mut flight = InFlight {
            op: format!("{service}.{name}"),
            read_factor: 0.5,
            sent_at: Some(Instant::now()),
            ..InFlight::default()
        };
        let input = context.input_mut();
        if let Some(i) = input.downcast_mut::<PutItemInput>() {
            i.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
            let item = i.item.as_ref();
            flight.table = i.table_name.clone();
            flight.written = 1;
            flight.write_units = item.map_or(1.0, |it| write_units(it) + index_units(it));
            flight.bytes_put = item.map_or(0, |it| item_size(it) as u64);
        } else if let Some(i) = input.downcast_mut::<UpdateItemInput>() {
            i.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
            flight.table = i.table_name.clone();
            flight.written = 1;
            flight.write_units = update_units(
                i.key.as_ref(),
                i.expression_attribute_values.as_ref(),
                i.update_expression.as_deref(),
                i.expression_attribute_names.as_ref(),
            );
        } else if let Some(i) = input.downcast_mut::<DeleteItemInput>() {
            i.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
            flight.table = i.table_name.clone();
            flight.written = 1;
            flight.write_units = i.key.as_ref().map_or(1.0, write_units);
        } else if let Some(i) = input.downcast_mut::<BatchWriteItemInput>() {
            i.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
            flight.table = i.request_items.as_ref().and_then(|m| m.keys().min().cloned());
            for request in i.request_items.iter().flat_map(|m| m.values()).flatten() {
                flight.written += 1;
                flight.bytes_put += request.put_request.as_ref().map_or(0, |p| item_size(&p.item) as u64);
                flight.write_units += match (&request.put_request, &request.delete_request) {
                    (Some(p), _) => write_units(&p.item) + index_units(&p.item),
                    (None, Some(d)) => write_units(&d.key),
                    (None, None) => 0.0,
                };
            }
        } else if let Some(i) = input.downcast_mut::<TransactWriteItemsInput>() {
            i.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
            flight.table = i.transact_items.iter().flatten().find_map(|t| {
                let names = [
                    t.put.as_ref().map(|p| &p.table_name),
                    t.update.as_ref().map(|u| &u.table_name),
                    t.delete.as_ref().map(|d| &d.table_name),
                    t.condition_check.as_ref().map(|c| &c.table_name),
                ];
                names.into_iter().flatten().next().cloned()
            });
            for t in i.transact_items.iter().flatten() {
                flight.written += 1;
                flight.bytes_put += t.put.as_ref().map_or(0, |p| item_size(&p.item) as u64);
                let units = if let Some(p) = &t.put {
                    write_units(&p.item) + index_units(&p.item)
                } else if let Some(u) = &t.update {
                    update_units(
                        Some(&u.key),
                        u.expression_attribute_values.as_ref(),
                        Some(&u.update_expression),
                        u.expression_attribute_names.as_ref(),
                    )
                } else if let Some(d) = &t.delete {
                    write_units(&d.key)
                } else if let Some(c) = &t.condition_check {
                    write_units(&c.key)
                } else {
                    0.0
                };
                flight.write_units += 2.0 * units;
            }
        } else if let Some(i) = input.downcast_mut::<GetItemInput>() {
            i.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
            flight.table = i.table_name.clone();
            flight.keys = 1;
            flight.read_factor = if i.consistent_read == Some(true) { 1.0 } else { 0.5 };
        } else if let Some(i) = input.downcast_mut::<BatchGetItemInput>() {
            i.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
            flight.table = i.request_items.as_ref().and_then(|m| m.keys().min().cloned());
            let requests: Vec<_> = i.request_items.iter().flat_map(|m| m.values()).collect();
            flight.keys = requests.iter().map(|r| r.keys.len() as u64).sum();
            flight.read_factor =
                if requests.iter().all(|r| r.consistent_read == Some(true)) { 1.0 } else { 0.5 };
        } else if let Some(i) = input.downcast_mut::<QueryInput>() {
            i.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
            flight.table = i.table_name.clone();
            flight.read_factor = if i.consistent_read == Some(true) { 1.0 } else { 0.5 };
        }
        cfg.interceptor_state().store_put(flight);
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(flight) = cfg.load::<InFlight>().cloned() else { return Ok(()) };
        let mut t = OpTally {
            requests: 1,
            items_written: flight.written,
            write_units: flight.write_units,
            bytes_put: flight.bytes_put,
            time_ms: flight.sent_at.map_or(0.0, |at| at.elapsed().as_secs_f64() * 1000.0),
            ..OpTally::default()
        };
        let output = context.output_or_error().and_then(Result::ok);
        let reported =
            |c: Option<&ConsumedCapacity>| c.and_then(ConsumedCapacity::capacity_units).unwrap_or(0.0);
        if let Some(o) = output.and_then(|o| o.downcast_ref::<GetItemOutput>()) {
            t.items_read = 1;
            let size = o.item.as_ref().map_or(0, item_size);
            t.read_units = flight.read_factor * size.div_ceil(READ_UNIT_BYTES).max(1) as f64;
            t.reported_units = reported(o.consumed_capacity.as_ref());
        } else if let Some(o) = output.and_then(|o| o.downcast_ref::<BatchGetItemOutput>()) {
            t.items_read = flight.keys;
            let found: Vec<usize> =
                o.responses.iter().flat_map(|r| r.values()).flatten().map(item_size).collect();
            let missing = flight.keys.saturating_sub(found.len() as u64) as f64;
            let units: usize = found.iter().map(|s| s.div_ceil(READ_UNIT_BYTES).max(1)).sum();
            t.read_units = flight.read_factor * (units as f64 + missing);
            t.reported_units = o.consumed_capacity.iter().flatten().map(|c| reported(Some(c))).sum();
        } else if let Some(o) = output.and_then(|o| o.downcast_ref::<QueryOutput>()) {
            let items = o.items.as_deref().unwrap_or_default();
            t.items_read = items.len() as u64;
            let total: usize = items.iter().map(item_size).sum();
            t.read_units = flight.read_factor * total.div_ceil(READ_UNIT_BYTES).max(1) as f64;
            t.reported_units = reported(o.consumed_capacity.as_ref());
        } else if let Some(o) = output.and_then(|o| o.downcast_ref::<PutItemOutput>()) {
            t.reported_units = reported(o.consumed_capacity.as_ref());
        } else if let Some(o) = output.and_then(|o| o.downcast_ref::<UpdateItemOutput>()) {
            t.reported_units = reported(o.consumed_capacity.as_ref());
        }
        self.record(&flight, &t);
        Ok(())
    }
}

/// An item's size as DynamoDB bills it: each attribute's name plus its value.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(l) => 3 + l.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, e)| 1 + k.len() + value_size(e)).sum::<usize>(),
        _ => 0,
    }
}

/// A number takes about one byte per two significant digits, plus one.
fn number_size(n: &str) -> usize {
    let digits = n.trim_start_matches(['-', '0']).chars().filter(char::is_ascii_digit).count();
    digits.div_ceil(2) + 1
}

fn write_units(item: &Item) -> f64 {
    item_size(item).div_ceil(KB).max(1) as f64
}

/// The index writes an item written in full costs (this project's indexes, see the module
/// documentation).
fn index_units(item: &Item) -> f64 {
    let projected_all = ["conn_pk", "rec_pk"].iter().filter(|a| item.contains_key(**a)).count();
    let due = usize::from(item.contains_key("due_shard") && item.contains_key("next_sync_at"));
    (projected_all as f64) * write_units(item) + due as f64
}

/// An update's units: the key and the values it sends (a lower bound of the stored item), and two
/// index writes when it moves the due index's sort key.
fn update_units(
    key: Option<&Item>,
    values: Option<&Item>,
    expression: Option<&str>,
    names: Option<&HashMap<String, String>>,
) -> f64 {
    let size = key.map_or(0, item_size) + values.map_or(0, item_size);
    let base = size.div_ceil(KB).max(1) as f64;
    let expression = expression.unwrap_or_default();
    let names_due = names.is_some_and(|n| n.values().any(|v| v == "next_sync_at"));
    let moves_due = expression.contains("next_sync_at") || names_due;
    base + if moves_due { 2.0 } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    #[test]
    fn item_sizes_follow_dynamodbs_rules_for_names_strings_numbers_and_maps() {
        assert_eq!(item_size(&item(&[("pk", AttributeValue::S("abc".into()))])), 5);
        assert_eq!(number_size("12345"), 4);
        assert_eq!(number_size("-0.5"), 2);
        let nested = AttributeValue::M(item(&[("a", AttributeValue::Bool(true))]));
        assert_eq!(item_size(&item(&[("m", nested)])), 1 + 3 + 1 + 1 + 1);
    }

    #[test]
    fn write_units_round_up_per_kilobyte_and_count_the_audit_indexes() {
        let small = item(&[("pk", AttributeValue::S("x".into()))]);
        assert_eq!(write_units(&small), 1.0);
        let big = item(&[("pk", AttributeValue::S("x".repeat(1500)))]);
        assert_eq!(write_units(&big), 2.0);
        let audit = item(&[
            ("pk", AttributeValue::S("T#a".into())),
            ("conn_pk", AttributeValue::S("T#a#C#b".into())),
            ("rec_pk", AttributeValue::S("T#a#R#c".into())),
        ]);
        assert_eq!(write_units(&audit) + index_units(&audit), 3.0);
    }

    #[test]
    fn tallies_subtract_and_sum_by_service() {
        let mut a = Tally::default();
        a.by_op.insert(
            "DynamoDB.PutItem".into(),
            OpTally { requests: 3, items_written: 3, ..Default::default() },
        );
        a.by_op.insert("SQS.SendMessageBatch".into(), OpTally { requests: 2, ..Default::default() });
        let mut b = a.clone();
        b.by_op.get_mut("DynamoDB.PutItem").unwrap().requests = 5;
        let d = b.since(&a);
        assert_eq!(d.by_op.len(), 1);
        assert_eq!(d.service("DynamoDB").requests, 2);
        assert_eq!(b.dynamo_writes().requests, 5);
        assert_eq!(b.service("SQS").requests, 2);
    }
}
