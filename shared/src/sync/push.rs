//! The outbound half of the sync: queueing what our users produce (notes, field updates, suggested
//! meetings, local edits, new CRM records and deletes), deciding push items and conflicts, and
//! executing approved pushes through the provider adapters.
//!
//! Field ownership holds for every approved write: an agent's edit or create
//! ([`PushItem::is_agents`]) never writes a field the connection's policy gives to people in the
//! CRM (`human`); such fields are withheld from the write, audited, and named on the item (an
//! edit's local value goes back to the agreed one). A delete goes out only if the record is as it
//! was when the delete was approved (its stamp then is the precondition); otherwise it ends as a
//! conflict, not a deleted record.
//!
//! Exactly once: every push item carries an idempotency key the adapters use for creates (a
//! redelivered job, or a worker that died after the provider accepted a write, finds what the first
//! attempt created). Updates only send fields whose local value still differs from the base, so a
//! repeat after a crash sends nothing once the pull has seen our write. After a push, the pushed
//! values become the base and the provider's new stamp is stored: the next pull sees no change
//! (echo suppression), and webhooks caused by our writes lead to syncs that change nothing.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{Value, json};
use tracing::warn;

use super::Deps;
use super::pull::content_key;
use crate::domain::policy::Source;
use crate::domain::push::{MAX_PUSH_ATTEMPTS, new_push_item};
use crate::domain::record::Fields;
use crate::domain::{
    AuditEntry, AuditOutcome, CanonicalRecord, ConflictItem, ConflictStatus, Connection, ConnectionStatus,
    DomainEvent, IdempotencyKey, ObjectType, Operation, Priority, Provider, PushAction, PushItem, PushStatus,
    RecordId, Resolution, TenantId,
};
use crate::ports::{
    ConflictQuery, Precondition, ProviderClient, ProviderError, ProviderWrite, PushQuery, RecordWrite,
    StoreError,
};

/// Approved items one job pushes at most (the rest go with the next job).
pub const PUSHES_PER_JOB: usize = 200;

/// Why a queue or decision request was refused.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    State(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a caller asks to push.
#[derive(Debug, Clone)]
pub struct PushRequest {
    pub action: PushAction,
    /// For `create_record`: the object type created (contacts, companies or deals).
    pub object: Option<ObjectType>,
    pub priority: Priority,
    /// The CRM record a note goes on, or the record an update changes.
    pub record_id: Option<RecordId>,
    /// For notes: `body` (and optionally `timestamp`); for field updates: one field; for events:
    /// the event's canonical fields; for record updates: the edited fields.
    pub fields: Fields,
    pub idempotency_key: IdempotencyKey,
    /// Where the values come from (for the source hierarchy); `None`: unknown.
    pub source: Option<Source>,
}

/// Queues a push for `connection`. A local edit (`update_record`, `update_field`) changes the local
/// record at once (it is the local side of the next merge); the provider gets it when the item is
/// approved. Queueing the same idempotency key again returns the first item.
pub async fn queue(
    deps: &Deps,
    connection: &Connection,
    request: PushRequest,
    actor: &str,
) -> Result<(PushItem, bool), PushError> {
    let now = deps.clock.now();
    let (tenant, conn_id) = (&connection.tenant_id, &connection.connection_id);
    let crm = connection
        .provider
        .object_types()
        .iter()
        .any(|o| !matches!(o, ObjectType::Events | ObjectType::Files));
    // The CRMs whose records create_record and delete_record write (not a mailbox or a calendar).
    let crm_records = matches!(connection.provider, Provider::Hubspot | Provider::Salesforce);
    let target = match &request.record_id {
        Some(id) => Some(deps.records.get(tenant, conn_id, id).await?.ok_or(PushError::NotFound)?),
        None => None,
    };
    if request.object.is_some() && request.action != PushAction::CreateRecord {
        return Err(PushError::Invalid("object is given only with create_record".into()));
    }
    let (object, fields) = match request.action {
        PushAction::CreateRecord => {
            if !crm_records {
                return Err(PushError::Invalid("records are created on a CRM connection".into()));
            }
            let object = request.object.ok_or_else(|| {
                PushError::Invalid("create_record needs an object: contacts, companies or deals".into())
            })?;
            if !PushAction::CREATABLE.contains(&object) {
                return Err(PushError::Invalid(format!(
                    "create_record creates contacts, companies or deals, not {object}"
                )));
            }
            if request.record_id.is_some() {
                return Err(PushError::Invalid("create_record takes no record_id".into()));
            }
            if request.fields.values().all(Value::is_null) {
                return Err(PushError::Invalid("a new record needs at least one field".into()));
            }
            (object, request.fields.clone())
        }
        PushAction::DeleteRecord => {
            if !crm_records {
                return Err(PushError::Invalid("delete_record deletes CRM records".into()));
            }
            let target =
                target.as_ref().ok_or_else(|| PushError::Invalid("a delete needs a record_id".into()))?;
            if !request.fields.is_empty() {
                return Err(PushError::Invalid("delete_record takes no fields".into()));
            }
            if target.object.stays_local() {
                return Err(PushError::Invalid(format!(
                    "{} are Syncbridge's own: nothing to delete",
                    target.object
                )));
            }
            if target.deleted {
                return Err(PushError::State("the record is deleted already".into()));
            }
            (target.object, Fields::new())
        }
        PushAction::CreateNote => {
            if !crm {
                return Err(PushError::Invalid("notes go to a CRM connection".into()));
            }
            let target =
                target.as_ref().ok_or_else(|| PushError::Invalid("a note needs a record_id".into()))?;
            let body = request.fields.get("body").and_then(Value::as_str).unwrap_or_default();
            if body.trim().is_empty() {
                return Err(PushError::Invalid("a note needs a non-empty body".into()));
            }
            let mut fields = Fields::new();
            let prefix = connection.settings.note_prefix.trim();
            let body = if prefix.is_empty() || body.starts_with(prefix) {
                body.to_owned()
            } else {
                format!("{prefix} {body}")
            };
            fields.insert("body".into(), json!(body));
            let at = request
                .fields
                .get("timestamp")
                .cloned()
                .unwrap_or_else(|| json!(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)));
            fields.insert("timestamp".into(), at);
            let association = match target.object {
                ObjectType::Contacts => "contact_ids",
                ObjectType::Companies => "company_ids",
                ObjectType::Deals => "deal_ids",
                other => return Err(PushError::Invalid(format!("a note cannot go on a {other} record"))),
            };
            fields.insert(association.into(), json!([target.external_id]));
            (ObjectType::Notes, fields)
        }
        PushAction::CreateEvent => {
            if crm {
                return Err(PushError::Invalid("suggested meetings go to a calendar connection".into()));
            }
            for required in ["title", "start", "end"] {
                if !request.fields.get(required).is_some_and(Value::is_string) {
                    return Err(PushError::Invalid(format!("an event needs a string '{required}'")));
                }
            }
            (ObjectType::Events, request.fields.clone())
        }
        PushAction::UpdateField | PushAction::UpdateRecord => {
            let target =
                target.as_ref().ok_or_else(|| PushError::Invalid("an update needs a record_id".into()))?;
            if request.fields.is_empty() {
                return Err(PushError::Invalid("an update needs at least one field".into()));
            }
            if request.action == PushAction::UpdateField && request.fields.len() != 1 {
                return Err(PushError::Invalid("update_field changes exactly one field".into()));
            }
            if target.deleted {
                return Err(PushError::State("the record was deleted at the provider".into()));
            }
            if target.object.stays_local() {
                return Err(PushError::Invalid(format!(
                    "{} are Syncbridge's own and never go to the provider: edit them with POST \
                     /v1/connections/{{id}}/records/{{record_id}}/edit",
                    target.object
                )));
            }
            (target.object, request.fields.clone())
        }
    };
    let auto = connection.settings.auto_pushes(request.action);
    let mut item = new_push_item(
        tenant.clone(),
        conn_id.clone(),
        request.action,
        request.priority,
        object,
        request.record_id.clone(),
        fields,
        request.idempotency_key,
        actor,
        auto,
        now,
    );
    item.source = request.source;
    if let (PushAction::DeleteRecord, true, Some(target)) = (item.action, auto, &target) {
        item.approved_remote_modified_at = target.remote_modified_at;
        item.approved_etag = target.etag.clone();
    }
    if let Some(existing) = deps.pushes.get(tenant, &item.push_id).await? {
        return Ok((existing, false));
    }
    // The edit takes its fields' markers: older items carrying them are checked once it exists.
    let mut edited = None;
    if let (Some(target), true) = (target, item.is_edit()) {
        let carrier = Some(item.push_id.as_str());
        edited = Some(
            apply_local_edit(deps, connection.provider, target, &item.fields, request.source, carrier, now)
                .await?,
        );
    }
    let created = deps.pushes.create(&item).await?;
    let entry = AuditEntry::new(tenant.clone(), Operation::Push, AuditOutcome::Success, actor, now)
        .connection(conn_id)
        .detail(
            json!({ "push_id": item.push_id, "action": item.action, "status": item.status, "queued": true }),
        )
        .change(None, Some(json!(item.fields)));
    deps.audit.append(&[entry]).await?;
    if let Some((record, replaced)) = edited {
        for old in replaced.iter().filter(|id| **id != item.push_id) {
            supersede_if_overtaken(deps, &record, old, &item.push_id, actor).await?;
        }
    }
    let stored = deps.pushes.get(tenant, &item.push_id).await?.unwrap_or(item);
    Ok((stored, created))
}

/// What a local edit did: a push item queued for the provider, or (for a record that stays
/// local, a research task) the record as edited, with nothing to push.
#[derive(Debug)]
pub enum Edited {
    Queued(Box<PushItem>, bool),
    Local(Box<CanonicalRecord>),
}

/// A person's edit of a record's fields: an `update_record` push through [`queue`], except for
/// records that stay local ([`ObjectType::stays_local`]: research tasks), which are edited in
/// place and audited (`local_edit`) without a push item, since no provider takes them. The edit
/// stays a local change: the next derivation of the task does not overwrite it.
pub async fn edit(
    deps: &Deps,
    connection: &Connection,
    request: PushRequest,
    actor: &str,
) -> Result<Edited, PushError> {
    let (tenant, conn_id) = (&connection.tenant_id, &connection.connection_id);
    let record_id =
        request.record_id.clone().ok_or_else(|| PushError::Invalid("an edit needs a record_id".into()))?;
    let record = deps.records.get(tenant, conn_id, &record_id).await?.ok_or(PushError::NotFound)?;
    if !record.object.stays_local() {
        let (item, created) =
            queue(deps, connection, PushRequest { action: PushAction::UpdateRecord, ..request }, actor)
                .await?;
        return Ok(Edited::Queued(Box::new(item), created));
    }
    if request.fields.is_empty() {
        return Err(PushError::Invalid("an update needs at least one field".into()));
    }
    if record.deleted {
        return Err(PushError::State("the record was cancelled".into()));
    }
    let now = deps.clock.now();
    let pick = |r: &CanonicalRecord| -> Value {
        request.fields.keys().map(|k| (k.clone(), r.fields.get(k).cloned().unwrap_or(Value::Null))).collect()
    };
    let before = pick(&record);
    let version = record.version;
    let (after, _) =
        apply_local_edit(deps, connection.provider, record, &request.fields, request.source, None, now)
            .await?;
    if after.version != version {
        let entry = AuditEntry::new(tenant.clone(), Operation::LocalEdit, AuditOutcome::Success, actor, now)
            .connection(conn_id)
            .record(after.object, &after.record_id)
            .detail(json!({ "idempotency_key": request.idempotency_key, "pushed": false }))
            .change(Some(before), Some(pick(&after)));
        deps.audit.append(&[entry]).await?;
    }
    Ok(Edited::Local(Box::new(after)))
}

/// Sets local field values on a record (its local side). With a `carrier`, that push item takes
/// the fields' markers (`pending_push`). Returns the record as written and the items whose
/// markers it replaced or settled (candidates for [`supersede_if_overtaken`]).
async fn apply_local_edit(
    deps: &Deps,
    provider: crate::domain::Provider,
    record: CanonicalRecord,
    fields: &Fields,
    source: Option<Source>,
    carrier: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(CanonicalRecord, Vec<String>), PushError> {
    write_record(deps, provider, record, now, |next| {
        let mut out = Vec::new();
        if fields.iter().any(|(k, v)| next.fields.get(k) != Some(v)) {
            next.fields.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            next.local_modified_at = Some(now);
        }
        for k in fields.keys() {
            match source {
                Some(s) if next.fields.get(k) != next.base.get(k) => next.sources.insert(k.clone(), s),
                _ => next.sources.remove(k),
            };
            if let Some(id) = carrier
                && let Some(old) = next.pending_push.insert(k.clone(), id.to_owned())
                && old != id
            {
                out.push(old);
            }
        }
        out.extend(next.settle_pending());
        out
    })
    .await
}

/// Writes `change` applied to `record`, conditional on its version; when the record changed
/// meanwhile, re-reads it and applies `change` again (3 attempts). A change that leaves the record
/// as it was writes nothing. Returns the record as stored and what `change` returned (the push
/// items whose markers it replaced or settled), sorted and without repeats.
async fn write_record(
    deps: &Deps,
    provider: crate::domain::Provider,
    mut record: CanonicalRecord,
    now: DateTime<Utc>,
    change: impl Fn(&mut CanonicalRecord) -> Vec<String>,
) -> Result<(CanonicalRecord, Vec<String>), PushError> {
    for _ in 0..3 {
        let mut next = record.clone();
        let mut replaced = change(&mut next);
        replaced.sort();
        replaced.dedup();
        if next == record {
            return Ok((record, replaced));
        }
        next.updated_at = now;
        next.version = record.version + 1;
        match deps.records.write(provider, vec![RecordWrite::Update(next.clone())]).await?.pop() {
            Some(Ok(())) => return Ok((next, replaced)),
            Some(Err(StoreError::Conflict)) => {
                record = deps
                    .records
                    .get(&record.tenant_id, &record.connection_id, &record.record_id)
                    .await?
                    .ok_or(PushError::NotFound)?;
            }
            Some(Err(e)) => return Err(e.into()),
            None => return Err(PushError::State("the store returned no result".into())),
        }
    }
    Err(PushError::State("the record kept changing; try again".into()))
}

async fn provider_of(deps: &Deps, record: &CanonicalRecord) -> Result<crate::domain::Provider, PushError> {
    Ok(deps
        .connections
        .get(&record.tenant_id, &record.connection_id)
        .await?
        .ok_or(PushError::NotFound)?
        .provider)
}

/// Approves or rejects pending items. Rejecting a local edit puts the record's fields back to the
/// last agreed values (where nobody changed them since). Returns each item's outcome.
pub async fn decide(
    deps: &Deps,
    tenant: &TenantId,
    push_ids: &[String],
    approve: bool,
    actor: &str,
) -> Result<Vec<(String, Result<PushItem, PushError>)>, StoreError> {
    let now = deps.clock.now();
    let mut out = Vec::new();
    let mut to_sync = Vec::new();
    for id in push_ids {
        let result = decide_one(deps, tenant, id, approve, actor, now).await;
        if let Ok(item) = &result
            && approve
        {
            to_sync.push(item.connection_id.clone());
        }
        out.push((id.clone(), result));
    }
    to_sync.sort();
    to_sync.dedup();
    let jobs: Vec<_> = to_sync
        .into_iter()
        .map(|c| {
            let id = crate::domain::Job::requested_id(&c, crate::domain::JobReason::Push);
            crate::domain::Job::sync(tenant.clone(), c, id, crate::domain::JobReason::Push, now)
        })
        .collect();
    if !jobs.is_empty()
        && let Err(e) = deps.queue.enqueue(&jobs).await
    {
        // The items are approved; the next scheduled sync pushes them.
        warn!(error = %e, "could not enqueue push jobs");
    }
    Ok(out)
}

async fn decide_one(
    deps: &Deps,
    tenant: &TenantId,
    push_id: &str,
    approve: bool,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<PushItem, PushError> {
    let mut item = deps.pushes.get(tenant, push_id).await?.ok_or(PushError::NotFound)?;
    let was = item.status_at(now);
    item.decide(approve, actor, now).map_err(|e| PushError::State(e.to_string()))?;
    // A delete is approved for the record as it is now: a later change at the provider stops it.
    if approve
        && item.action == PushAction::DeleteRecord
        && let Some(record_id) = &item.record_id
        && let Some(record) = deps.records.get(tenant, &item.connection_id, record_id).await?
    {
        item.approved_remote_modified_at = record.remote_modified_at;
        item.approved_etag = record.etag.clone();
    }
    item.version = deps.pushes.save(&item).await.map_err(|e| match e {
        StoreError::Conflict => PushError::State("the item changed meanwhile; try again".into()),
        e => PushError::Store(e),
    })?;
    let mut entry = AuditEntry::new(tenant.clone(), Operation::Approval, AuditOutcome::Success, actor, now)
        .connection(&item.connection_id)
        .detail(
            json!({ "push_id": item.push_id, "action": item.action, "decision": item.status, "was": was }),
        );
    // A rejected (or discarded expired or failed) edit takes its local values back to the agreed
    // ones, where they are still this item's: a newer edit or a resolution keeps what it set.
    if !approve && item.is_edit() {
        let fields: Vec<String> = item.fields.keys().cloned().collect();
        if let Some(r) = revert_to_agreed(deps, &item, &fields, now).await? {
            entry = entry.record(r.object, &r.record_id);
            entry.detail["reverted"] = json!(r.fields);
            entry = entry.change(Some(r.before), Some(r.after));
        }
    }
    deps.audit.append(&[entry]).await?;
    Ok(item)
}

/// What pushing a connection's approved items did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushCounts {
    pub completed: u64,
    pub failed: u64,
    pub retrying: u64,
    /// Items found obsolete (their local values moved on): never pushed.
    pub superseded: u64,
}

/// The connection's approved items, highest priority first and oldest first within a priority,
/// across the whole queue (the store lists in that order across pages), at most
/// [`PUSHES_PER_JOB`]; each read again from the item itself, since the listing may lag a
/// decision made a moment ago.
async fn approved_items(deps: &Deps, conn: &Connection) -> Result<Vec<PushItem>, StoreError> {
    let mut listed = Vec::new();
    let mut token = None;
    loop {
        let query = PushQuery {
            connection: Some(conn.connection_id.clone()),
            status: Some(PushStatus::Approved),
            limit: PUSHES_PER_JOB - listed.len(),
            page_token: token,
            ..PushQuery::default()
        };
        let page = deps.pushes.list(&conn.tenant_id, &query).await?;
        listed.extend(page.items);
        token = page.next;
        if token.is_none() || listed.len() >= PUSHES_PER_JOB {
            break;
        }
    }
    listed.truncate(PUSHES_PER_JOB);
    let fresh: Vec<Result<Option<PushItem>, StoreError>> = futures::stream::iter(listed)
        .map(|p| async move { deps.pushes.get(&p.tenant_id, &p.push_id).await })
        .buffered(16)
        .collect()
        .await;
    let mut items = Vec::new();
    for item in fresh {
        if let Some(item) = item?
            && item.status == PushStatus::Approved
        {
            items.push(item);
        }
    }
    Ok(items)
}

/// Pushes the connection's approved items, highest priority first across the whole queue.
pub async fn push_approved(
    deps: &Deps,
    conn: &Connection,
    client: &dyn ProviderClient,
) -> Result<PushCounts, ProviderOrStore> {
    let items = approved_items(deps, conn).await?;
    let mut counts = PushCounts::default();
    // One provider write per record: updates of the same record (several approved edits) are
    // combined, and every item behind a write shares its result.
    let mut planned: Vec<(Vec<PushItem>, ProviderWrite)> = Vec::new();
    for mut item in items {
        let writable = withhold_human_owned(deps, conn, &mut item).await?;
        if writable.fields.is_empty() && !item.withheld_fields.is_empty() {
            let why = format!(
                "not written: every field ({}) is owned by people in the CRM, and this is an agent's item",
                item.withheld_fields.join(", ")
            );
            fail(deps, conn, item, &why, true, &mut counts).await?;
            continue;
        }
        match plan_write(deps, &writable).await? {
            Planned::Write(write) => {
                match (&*write, planned.iter_mut().find(|(_, w)| same_record(w, &write))) {
                    (
                        ProviderWrite::Update { fields, .. },
                        Some((group, ProviderWrite::Update { fields: combined, .. })),
                    ) => {
                        combined.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                        group.push(item);
                    }
                    _ => planned.push((vec![item], *write)),
                }
            }
            Planned::Nothing(record) => {
                let external = Some(record.external_id.clone());
                finish_as(deps, conn, item, external, Some(*record), "already_applied", &mut counts).await?
            }
            Planned::Obsolete(record) => {
                if supersede_if_overtaken(deps, &record, &item.push_id, "local_change", "worker").await? {
                    counts.superseded += 1;
                }
            }
            Planned::Fail(why) => fail(deps, conn, item, &why, true, &mut counts).await?,
            Planned::Conflict(record) => delete_conflict(deps, conn, item, &record, &mut counts).await?,
        }
    }
    if planned.is_empty() {
        return Ok(counts);
    }
    let writes: Vec<ProviderWrite> = planned.iter().map(|(_, w)| w.clone()).collect();
    let results = match client.write(&conn.credentials.access_token, &writes).await {
        Ok(results) => results,
        Err(e) if e.is_retryable() => return Err(e.into()),
        Err(e) => planned.iter().map(|_| Err(ProviderError::permanent(e.to_string()))).collect(),
    };
    for ((group, write), result) in planned.into_iter().zip(results) {
        let deleting = matches!(write, ProviderWrite::Delete { .. });
        match result {
            // A delete whose record is gone already (an earlier attempt's, or a person's): done.
            Err(ProviderError::NotFound) if deleting => {
                let record = mark_deleted(deps, conn, &write, None).await?;
                for item in group {
                    let external = record.as_ref().map(|r| r.external_id.clone());
                    finish_as(deps, conn, item, external, record.clone(), "already_applied", &mut counts)
                        .await?;
                }
            }
            Err(ProviderError::Conflict) if deleting => {
                let record = match &write {
                    ProviderWrite::Delete { object, external_id, .. } => {
                        stored_by_external(deps, conn, *object, external_id).await?
                    }
                    _ => None,
                };
                for item in group {
                    match &record {
                        Some(r) => delete_conflict(deps, conn, item, r, &mut counts).await?,
                        None => fail(deps, conn, item, DELETE_CONFLICT, true, &mut counts).await?,
                    }
                }
            }
            Ok(ack) => {
                let stored = remember_push(deps, conn, &write, &ack).await?;
                for item in group {
                    finish(deps, conn, item, Some(ack.external_id.clone()), stored.clone(), &mut counts)
                        .await?;
                }
            }
            Err(ProviderError::Conflict) => {
                let why = "the record changed at the provider; the next pull merges it, then this retries";
                for item in group {
                    fail(deps, conn, item, why, false, &mut counts).await?;
                }
            }
            Err(e) => {
                let permanent = !e.is_retryable() && !matches!(e, ProviderError::Unauthorized);
                for item in group {
                    fail(deps, conn, item, &e.to_string(), permanent, &mut counts).await?;
                }
            }
        }
    }
    Ok(counts)
}

/// A store or provider failure while pushing.
#[derive(Debug, thiserror::Error)]
pub enum ProviderOrStore {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

fn same_record(a: &ProviderWrite, b: &ProviderWrite) -> bool {
    match (a, b) {
        (
            ProviderWrite::Update { object: oa, external_id: ea, .. },
            ProviderWrite::Update { object: ob, external_id: eb, .. },
        ) => oa == ob && ea == eb,
        _ => false,
    }
}

enum Planned {
    Write(Box<ProviderWrite>),
    /// Nothing left to send, because the provider has the values still the item's own (e.g.
    /// after a crash between its write and our record of it): completes it as `already_applied`.
    Nothing(Box<CanonicalRecord>),
    /// Nothing left to send, because none of its values is the record's own any more (a later
    /// edit, a decided conflict): the item is superseded, never pushed.
    Obsolete(Box<CanonicalRecord>),
    Fail(String),
    /// A delete of a record changed at the provider since the delete was approved.
    Conflict(Box<CanonicalRecord>),
}

const DELETE_CONFLICT: &str = "not deleted: the record changed at the provider since the delete was approved; approve a new delete to delete it as it is now";

/// The record an edit or a delete names, or the plan that it cannot be written.
async fn named_record(deps: &Deps, item: &PushItem) -> Result<Result<CanonicalRecord, Planned>, StoreError> {
    let Some(record_id) = &item.record_id else {
        return Ok(Err(Planned::Fail("the item names no record".into())));
    };
    Ok(deps
        .records
        .get(&item.tenant_id, &item.connection_id, record_id)
        .await?
        .ok_or_else(|| Planned::Fail("the record no longer exists".into())))
}

async fn plan_write(deps: &Deps, item: &PushItem) -> Result<Planned, StoreError> {
    match item.action {
        PushAction::DeleteRecord => {
            let record = match named_record(deps, item).await? {
                Ok(record) => record,
                Err(planned) => return Ok(planned),
            };
            if record.deleted {
                return Ok(Planned::Nothing(Box::new(record)));
            }
            let approved_at = item.approved_remote_modified_at.or(record.remote_modified_at);
            let approved_etag = item.approved_etag.clone().or_else(|| record.etag.clone());
            // A pull since the approval brought a newer version: the person approved another one.
            let moved = record.remote_modified_at.is_some_and(|r| approved_at.is_some_and(|a| r > a))
                || (record.etag.is_some() && approved_etag.is_some() && record.etag != approved_etag);
            if moved {
                return Ok(Planned::Conflict(Box::new(record)));
            }
            Ok(Planned::Write(Box::new(ProviderWrite::Delete {
                object: record.object,
                external_id: record.external_id.clone(),
                precondition: Precondition { etag: approved_etag, unmodified_since: approved_at },
            })))
        }
        PushAction::CreateNote | PushAction::CreateEvent | PushAction::CreateRecord => {
            Ok(Planned::Write(Box::new(ProviderWrite::Create {
                object: item.object,
                fields: item.fields.clone(),
                idempotency_key: item.idempotency_key.clone(),
            })))
        }
        PushAction::UpdateField | PushAction::UpdateRecord => {
            let record = match named_record(deps, item).await? {
                Ok(record) => record,
                Err(planned) => return Ok(planned),
            };
            if record.deleted {
                return Ok(Planned::Fail("the record was deleted at the provider".into()));
            }
            if record.object.stays_local() {
                return Ok(Planned::Fail(format!("{} stay local: no provider takes them", record.object)));
            }
            // Only what is still this item's local value and not yet agreed: a repeat after a
            // crash, or an edit a conflict resolution or a newer edit took over, sends nothing.
            let overtaken = item.overtaken_fields(&record);
            let fields: Fields = item
                .fields
                .iter()
                .filter(|(k, v)| !overtaken.contains(*k) && record.base.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if fields.is_empty() {
                // Every field is either overtaken or at the provider already.
                let obsolete = item.is_overtaken(&record);
                let record = Box::new(record);
                return Ok(if obsolete { Planned::Obsolete(record) } else { Planned::Nothing(record) });
            }
            let write = ProviderWrite::Update {
                object: record.object,
                external_id: record.external_id.clone(),
                fields,
                precondition: Precondition {
                    etag: record.etag.clone(),
                    unmodified_since: record.remote_modified_at,
                },
            };
            Ok(Planned::Write(Box::new(write)))
        }
    }
}

/// Makes the pushed values the base of the record, with the provider's new stamp, so the next pull
/// sees nothing new; the local value too, unless someone edited it locally since (that edit stays a
/// local change, with its own push). Re-reads and retries when the record changed meanwhile.
/// Creates register the new record.
async fn remember_push(
    deps: &Deps,
    conn: &Connection,
    write: &ProviderWrite,
    ack: &crate::ports::WriteAck,
) -> Result<Option<CanonicalRecord>, StoreError> {
    let now = deps.clock.now();
    match write {
        ProviderWrite::Update { object, external_id, fields, .. } => {
            for _ in 0..3 {
                let Some(mut record) = stored_by_external(deps, conn, *object, external_id).await? else {
                    return Ok(None);
                };
                for (k, v) in fields {
                    if record.fields.get(k) == record.base.get(k) || record.fields.get(k) == Some(v) {
                        record.fields.insert(k.clone(), v.clone());
                        record.sources.remove(k);
                    }
                    record.base.insert(k.clone(), v.clone());
                }
                record.settle_pending();
                if ack.remote_modified_at.is_some_and(|at| record.remote_modified_at.is_none_or(|r| at >= r))
                {
                    record.remote_modified_at = ack.remote_modified_at;
                    record.etag = ack.etag.clone().or(record.etag);
                } else if ack.remote_modified_at.is_none() && ack.etag.is_some() {
                    // A provider with versions but no stamps (Gmail's `historyId`): the ack's
                    // version was read after the write, so it is the one the echo will carry.
                    record.etag = ack.etag.clone();
                }
                record.updated_at = now;
                record.version += 1;
                match deps
                    .records
                    .write(conn.provider, vec![RecordWrite::Update(record.clone())])
                    .await?
                    .pop()
                {
                    Some(Ok(())) => return Ok(Some(record)),
                    Some(Err(StoreError::Conflict)) => continue,
                    Some(Err(e)) => return Err(e),
                    None => return Ok(None),
                }
            }
            // Still contended: the next pull converges the values (the provider has ours).
            Ok(None)
        }
        ProviderWrite::Create { object, fields, .. } => {
            let fields = ack.fields.clone().unwrap_or_else(|| fields.clone());
            let record = CanonicalRecord {
                tenant_id: conn.tenant_id.clone(),
                connection_id: conn.connection_id.clone(),
                record_id: RecordId::derive(&conn.tenant_id, &conn.connection_id, *object, &ack.external_id),
                object: *object,
                external_id: ack.external_id.clone(),
                base: fields.clone(),
                fields,
                remote_modified_at: ack.remote_modified_at,
                etag: ack.etag.clone(),
                local_modified_at: None,
                sources: Default::default(),
                pending_push: Default::default(),
                deleted: false,
                created_at: now,
                updated_at: now,
                version: 1,
            };
            match deps.records.write(conn.provider, vec![RecordWrite::Create(record.clone())]).await?.pop() {
                Some(Ok(())) => Ok(Some(record)),
                // A pull registered it first: the merge converges it.
                Some(Err(StoreError::Conflict)) | None => Ok(None),
                Some(Err(e)) => Err(e),
            }
        }
        ProviderWrite::Delete { .. } => mark_deleted(deps, conn, write, Some(ack)).await,
    }
}

/// The connection's stored record of `object` with this external id.
async fn stored_by_external(
    deps: &Deps,
    conn: &Connection,
    object: ObjectType,
    external_id: &crate::domain::ExternalId,
) -> Result<Option<CanonicalRecord>, StoreError> {
    let found = deps
        .records
        .get_by_external(
            &conn.tenant_id,
            &conn.connection_id,
            conn.provider,
            object,
            std::slice::from_ref(external_id),
        )
        .await?;
    Ok(found.into_values().next())
}

/// Marks the record a delete went out for as deleted (with the provider's stamp of the delete, when
/// it said), so the next pull's delete of it changes nothing. Re-reads on a lost race (3 tries).
async fn mark_deleted(
    deps: &Deps,
    conn: &Connection,
    write: &ProviderWrite,
    ack: Option<&crate::ports::WriteAck>,
) -> Result<Option<CanonicalRecord>, StoreError> {
    let ProviderWrite::Delete { object, external_id, .. } = write else { return Ok(None) };
    for _ in 0..3 {
        let Some(mut record) = stored_by_external(deps, conn, *object, external_id).await? else {
            return Ok(None);
        };
        if record.deleted {
            return Ok(Some(record));
        }
        record.deleted = true;
        if let Some(at) = ack.and_then(|a| a.remote_modified_at) {
            record.remote_modified_at = Some(at);
        }
        record.updated_at = deps.clock.now();
        record.version += 1;
        match deps.records.write(conn.provider, vec![RecordWrite::Update(record.clone())]).await?.pop() {
            Some(Ok(())) => return Ok(Some(record)),
            Some(Err(StoreError::Conflict)) => continue,
            Some(Err(e)) => return Err(e),
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// A delete that would remove a record changed at the provider since it was approved: not sent
/// (or refused by the provider's precondition). The item fails for good and the conflict is
/// audited with the stamps; a person approves a new delete if they still want it.
async fn delete_conflict(
    deps: &Deps,
    conn: &Connection,
    item: PushItem,
    record: &CanonicalRecord,
    counts: &mut PushCounts,
) -> Result<(), StoreError> {
    let now = deps.clock.now();
    let entry = AuditEntry::new(
        conn.tenant_id.clone(),
        Operation::ConflictDetected,
        AuditOutcome::Rejected,
        "worker",
        now,
    )
    .connection(&conn.connection_id)
    .record(record.object, &record.record_id)
    .detail(json!({
        "push_id": item.push_id,
        "action": item.action,
        "approved_remote_modified_at": item.approved_remote_modified_at,
        "remote_modified_at": record.remote_modified_at,
        "reason": "changed_since_approval",
    }));
    deps.audit.append(&[entry]).await?;
    fail(deps, conn, item, DELETE_CONFLICT, true, counts).await
}

/// Keeps an agent's item from writing fields people in the CRM own (the connection's policy's
/// `ownership`, checked when the item is pushed, so a policy changed after the approval counts).
/// The item names them (`withheld_fields`), an audit entry records them, and an edit's local
/// values of them go back to the agreed ones (where still the item's). Returns the item as it
/// may be written: its fields less the withheld ones.
async fn withhold_human_owned(
    deps: &Deps,
    conn: &Connection,
    item: &mut PushItem,
) -> Result<PushItem, StoreError> {
    let withheld = item.human_owned_fields(&conn.settings.conflict_policy);
    let mut writable = item.clone();
    if withheld.is_empty() {
        return Ok(writable);
    }
    writable.fields.retain(|k, _| !withheld.contains(k));
    let now = deps.clock.now();
    let asked: Value =
        withheld.iter().map(|k| (k.clone(), item.fields.get(k).cloned().unwrap_or(Value::Null))).collect();
    let mut entry =
        AuditEntry::new(conn.tenant_id.clone(), Operation::Push, AuditOutcome::Rejected, "worker", now)
            .connection(&conn.connection_id)
            .detail(json!({
                "push_id": item.push_id,
                "action": item.action,
                "withheld": withheld,
                "reason": "human_owned",
                "created_by": item.created_by,
                "source": item.source,
            }))
            .change(Some(asked), None);
    if item.is_edit() {
        match revert_to_agreed(deps, item, &withheld, now).await {
            Ok(Some(reverted)) => {
                entry = entry.record(reverted.object, &reverted.record_id);
                entry.detail["reverted"] = json!(reverted.fields);
            }
            Ok(None) => {}
            Err(PushError::Store(e)) => return Err(e),
            // The record is gone or keeps changing: the withheld value stays a local change.
            Err(e) => warn!(error = %e, push_id = %item.push_id, "withheld fields not reverted"),
        }
    }
    deps.audit.append(&[entry]).await?;
    item.withheld_fields = withheld;
    Ok(writable)
}

/// What [`revert_to_agreed`] put back.
struct Reverted {
    object: ObjectType,
    record_id: RecordId,
    fields: Vec<String>,
    before: Value,
    after: Value,
}

/// Puts `fields` of an edit's record back to the agreed (base) values, where they are still the
/// edit's own (a newer edit or a resolution keeps what it set). `None` when nothing was its own.
async fn revert_to_agreed(
    deps: &Deps,
    item: &PushItem,
    fields: &[String],
    now: DateTime<Utc>,
) -> Result<Option<Reverted>, PushError> {
    let Some(record_id) = &item.record_id else { return Ok(None) };
    let Some(record) = deps.records.get(&item.tenant_id, &item.connection_id, record_id).await? else {
        return Ok(None);
    };
    let overtaken = item.overtaken_fields(&record);
    let revert: Vec<String> = fields.iter().filter(|k| !overtaken.contains(k)).cloned().collect();
    if revert.is_empty() {
        return Ok(None);
    }
    let pick = |r: &CanonicalRecord| -> Value {
        revert.iter().map(|k| (k.clone(), r.fields.get(k).cloned().unwrap_or(Value::Null))).collect()
    };
    let before = pick(&record);
    let (object, record_id) = (record.object, record.record_id.clone());
    let provider = provider_of(deps, &record).await?;
    let (after, _) = write_record(deps, provider, record, now, |next| {
        for k in &revert {
            match next.base.get(k).cloned() {
                Some(agreed) => next.fields.insert(k.clone(), agreed),
                None => next.fields.remove(k),
            };
            next.sources.remove(k);
        }
        next.settle_pending()
    })
    .await?;
    let after = pick(&after);
    Ok(Some(Reverted { object, record_id, fields: revert, before, after }))
}

async fn finish(
    deps: &Deps,
    conn: &Connection,
    item: PushItem,
    external: Option<crate::domain::ExternalId>,
    record: Option<CanonicalRecord>,
    counts: &mut PushCounts,
) -> Result<(), StoreError> {
    finish_as(deps, conn, item, external, record, "written", counts).await
}

async fn finish_as(
    deps: &Deps,
    conn: &Connection,
    mut item: PushItem,
    external: Option<crate::domain::ExternalId>,
    record: Option<CanonicalRecord>,
    outcome: &str,
    counts: &mut PushCounts,
) -> Result<(), StoreError> {
    let now = deps.clock.now();
    if item.complete(external.clone(), now).is_err() {
        return Ok(());
    }
    match deps.pushes.save(&item).await {
        Ok(_) | Err(StoreError::Conflict) => {}
        Err(e) => return Err(e),
    }
    counts.completed += 1;
    let mut entry =
        AuditEntry::new(conn.tenant_id.clone(), Operation::Push, AuditOutcome::Success, "worker", now)
            .connection(&conn.connection_id)
            .detail(json!({
                "push_id": item.push_id,
                "action": item.action,
                "external_id": external,
                "outcome": outcome,
            }))
            .change(None, Some(json!(item.fields)));
    if let Some(r) = &record {
        entry = entry.record(r.object, &r.record_id);
    }
    deps.audit.append(&[entry]).await?;
    let event = DomainEvent::PushCompleted {
        tenant_id: conn.tenant_id.clone(),
        connection_id: conn.connection_id.clone(),
        push_id: item.push_id.clone(),
        action: item.action,
        object: item.object,
        external_id: external,
    };
    if let Err(e) = deps.bus.publish(&[event]).await {
        warn!(error = %e, "push.completed could not be announced");
    }
    Ok(())
}

async fn fail(
    deps: &Deps,
    conn: &Connection,
    mut item: PushItem,
    why: &str,
    permanent: bool,
    counts: &mut PushCounts,
) -> Result<(), StoreError> {
    let now = deps.clock.now();
    if item.attempt_failed(why, permanent).is_err() {
        return Ok(());
    }
    match deps.pushes.save(&item).await {
        Ok(_) | Err(StoreError::Conflict) => {}
        Err(e) => return Err(e),
    }
    let failed = item.status == PushStatus::Failed;
    if failed {
        counts.failed += 1;
    } else {
        counts.retrying += 1;
    }
    let outcome = if failed { AuditOutcome::Failure } else { AuditOutcome::Rejected };
    let op = if failed { Operation::Push } else { Operation::Retry };
    let entry = AuditEntry::new(conn.tenant_id.clone(), op, outcome, "worker", now)
        .connection(&conn.connection_id)
        .detail(json!({
            "push_id": item.push_id,
            "action": item.action,
            "error": why,
            "attempts": item.attempts,
            "max_attempts": MAX_PUSH_ATTEMPTS,
        }));
    deps.audit.append(&[entry]).await?;
    Ok(())
}

/// Marks item `push_id` superseded by `by` when it is still waiting (pending, expired or approved)
/// and `record` (as just written) carries none of its fields as its own any more (see
/// [`PushItem::is_overtaken`]); audits it (`push`, outcome `rejected`, status `superseded`).
/// Returns whether it did. Used by a newer edit, a conflict resolution, a pull's merge and the
/// worker's push step; an item left waiting by a crash in between is found by the push step.
pub async fn supersede_if_overtaken(
    deps: &Deps,
    record: &CanonicalRecord,
    push_id: &str,
    by: &str,
    actor: &str,
) -> Result<bool, StoreError> {
    let now = deps.clock.now();
    for _ in 0..3 {
        let Some(mut item) = deps.pushes.get(&record.tenant_id, push_id).await? else { return Ok(false) };
        if item.record_id.as_ref() != Some(&record.record_id)
            || !item.is_overtaken(record)
            || item.supersede(by, now).is_err()
        {
            return Ok(false);
        }
        match deps.pushes.save(&item).await {
            Ok(_) => {}
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e),
        }
        let entry =
            AuditEntry::new(record.tenant_id.clone(), Operation::Push, AuditOutcome::Rejected, actor, now)
                .connection(&record.connection_id)
                .record(record.object, &record.record_id)
                .detail(json!({
                    "push_id": item.push_id,
                    "action": item.action,
                    "status": item.status,
                    "superseded_by": by,
                }))
                .change(Some(json!(item.fields)), None);
        deps.audit.append(&[entry]).await?;
        return Ok(true);
    }
    Ok(false)
}

/// Resolves conflicts: `UseRemote` takes the provider's value; `UseLocal` keeps ours and pushes it
/// (approved: a person decided); `Skip` leaves both and stops asking until either side changes.
/// When a connection has no open conflict left, its status goes back to `synced`.
pub async fn resolve(
    deps: &Deps,
    tenant: &TenantId,
    conflict_ids: &[String],
    resolution: Resolution,
    actor: &str,
) -> Result<Vec<(String, Result<ConflictItem, PushError>)>, StoreError> {
    let mut out = Vec::new();
    let mut touched = Vec::new();
    for id in conflict_ids {
        let result = resolve_one(deps, tenant, id, resolution, actor).await;
        if let Ok(c) = &result {
            touched.push(c.connection_id.clone());
        }
        out.push((id.clone(), result));
    }
    touched.sort();
    touched.dedup();
    for connection in touched {
        settle_status(deps, tenant, &connection).await?;
    }
    Ok(out)
}

async fn resolve_one(
    deps: &Deps,
    tenant: &TenantId,
    conflict_id: &str,
    resolution: Resolution,
    actor: &str,
) -> Result<ConflictItem, PushError> {
    let now = deps.clock.now();
    let mut conflict = deps.conflicts.get(tenant, conflict_id).await?.ok_or(PushError::NotFound)?;
    if conflict.status != ConflictStatus::Open {
        return Err(PushError::State("the conflict is already resolved".into()));
    }
    let connection =
        deps.connections.get(tenant, &conflict.connection_id).await?.ok_or(PushError::NotFound)?;
    let record = deps
        .records
        .get(tenant, &conflict.connection_id, &conflict.record_id)
        .await?
        .ok_or(PushError::NotFound)?;
    let field = conflict.field.clone();
    let remote = conflict.remote.clone().unwrap_or(Value::Null);
    let provider = connection.provider;
    let by = conflict.conflict_id.clone();
    let (written, replaced) = match resolution {
        Resolution::UseRemote => {
            // Local takes the remote value; both agree, so it is the base too.
            set_field(deps, provider, record, &field, &remote, &remote, None, now).await?
        }
        Resolution::UseLocal if record.object.stays_local() => {
            // Ours alone (a research task): the local value stays, nothing goes out.
            let local = conflict.local.clone().unwrap_or(Value::Null);
            set_field(deps, provider, record, &field, &local, &remote, None, now).await?
        }
        Resolution::UseLocal => {
            // The remote value becomes the base: our value is then a plain local change, pushed
            // by a new approved item that carries the field from now on.
            let local = conflict.local.clone().unwrap_or(Value::Null);
            let fields: Fields = [(field.clone(), local.clone())].into();
            let key = content_key("resolve", &record.record_id, &fields);
            let item = new_push_item(
                tenant.clone(),
                conflict.connection_id.clone(),
                PushAction::UpdateRecord,
                Priority::High,
                record.object,
                Some(record.record_id.clone()),
                fields,
                key,
                actor,
                true,
                now,
            );
            let carrier = Some(item.push_id.as_str());
            let out = set_field(deps, provider, record, &field, &local, &remote, carrier, now).await?;
            deps.pushes.create(&item).await?;
            out
        }
        Resolution::Skip => (record, Vec::new()),
    };
    for old in &replaced {
        supersede_if_overtaken(deps, &written, old, &by, actor).await?;
    }
    conflict.status = ConflictStatus::Resolved;
    conflict.resolution = Some(resolution);
    conflict.resolved_by = Some(actor.to_owned());
    conflict.resolved_at = Some(now);
    conflict.version = deps.conflicts.save(&conflict).await.map_err(|e| match e {
        StoreError::Conflict => PushError::State("the conflict changed meanwhile; try again".into()),
        e => PushError::Store(e),
    })?;
    let entry = AuditEntry::new(tenant.clone(), Operation::ConflictResolved, AuditOutcome::Success, actor, now)
        .connection(&conflict.connection_id)
        .record(conflict.object, &conflict.record_id)
        .detail(json!({ "conflict_id": conflict.conflict_id, "field": field, "resolution": resolution, "base": conflict.base }))
        .change(
            Some(json!({ "local": conflict.local, "remote": conflict.remote })),
            Some(match resolution {
                Resolution::UseRemote => json!(conflict.remote),
                Resolution::UseLocal => json!(conflict.local),
                Resolution::Skip => Value::Null,
            }),
        );
    deps.audit.append(&[entry]).await?;
    Ok(conflict)
}

/// Sets one field's local value and base, and (with a `carrier`) the push item that carries it.
/// Returns the record as written and the items whose markers it replaced or settled.
#[allow(clippy::too_many_arguments)]
async fn set_field(
    deps: &Deps,
    provider: crate::domain::Provider,
    record: CanonicalRecord,
    field: &str,
    local: &Value,
    base: &Value,
    carrier: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(CanonicalRecord, Vec<String>), PushError> {
    write_record(deps, provider, record, now, |next| {
        let mut out: Vec<String> = next.pending_push.get(field).cloned().into_iter().collect();
        next.fields.insert(field.to_owned(), local.clone());
        next.base.insert(field.to_owned(), base.clone());
        match carrier {
            Some(id) => next.pending_push.insert(field.to_owned(), id.to_owned()),
            None => next.pending_push.remove(field),
        };
        out.extend(next.settle_pending());
        out.retain(|id| Some(id.as_str()) != carrier);
        out
    })
    .await
}

/// `conflict` while the connection has open conflicts, `synced` once it has none (only from those
/// two states: a failing or running sync keeps its own status).
pub async fn settle_status(
    deps: &Deps,
    tenant: &TenantId,
    connection: &crate::domain::ConnectionId,
) -> Result<(), StoreError> {
    let open = deps
        .conflicts
        .list(
            tenant,
            &ConflictQuery {
                connection: Some(connection.clone()),
                status: Some(ConflictStatus::Open),
                limit: 1000,
                ..ConflictQuery::default()
            },
        )
        .await?;
    let any_open = !open.items.is_empty() || open.next.is_some();
    for _ in 0..3 {
        let Some(mut c) = deps.connections.get(tenant, connection).await? else { return Ok(()) };
        let next = match (c.status, any_open) {
            (ConnectionStatus::Synced, true) => ConnectionStatus::Conflict,
            (ConnectionStatus::Conflict, false) => ConnectionStatus::Synced,
            _ => return Ok(()),
        };
        c.status = next;
        match deps.connections.save_state(&c).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
