//! `make demo`: the main job end to end on a fresh private stack. Two tenants connect the HubSpot
//! fake through OAuth; the schedule enqueues the first (full) sync and the worker drains the queue;
//! a HubSpot user edits contacts and HubSpot's signed webhooks bring an incremental sync; then one
//! tenant also connects Salesforce, Google Calendar and Outlook (research tasks from outside
//! meetings), and pushes a note and an edit to HubSpot through the approval queue, whose webhooks
//! come back as recognised echoes; then creates a HubSpot contact and a Salesforce account and
//! deletes a HubSpot contact through the queue with every message delivered twice (one record each,
//! and a delete of a record changed since its approval ends as a conflict); a third tenant connects
//! HubSpot with a token lacking the contacts scopes, whose sync ends partial with health saying
//! why; acme connects Gmail through OAuth (the Google app, Gmail scopes), a CRM contact's mail is
//! linked to the contact by address and a label change goes back to Gmail through the approval
//! queue; globex connects a Notion CRM (full and incremental pulls, a trashed deal, an activity as
//! a block); acme connects Google Drive
//! through OAuth (files linked to its deals and contacts, then a person's edits arrive through
//! Drive's change feed after a push notification); acme connects Fireflies with an API key
//! (transcripts, their action items as follow-up tasks linked to the calendar event, a late
//! transcript by signed webhook, a deleted meeting); and it prints what happened.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use serde_json::{Value, json};
use syncbridge_fakes::hubspot::FakeConfig;
use syncbridge_fakes::hubspot::store::ObjectKind;
use syncbridge_fakes::salesforce::{self, SeedCounts};
use syncbridge_fakes::{drive, google, graph};

use crate::cli::{ApiClient, DemoArgs};
use crate::local::{LocalStack, StackOptions};

const TENANTS: [&str; 2] = ["acme", "globex"];
const HUBSPOT_TOKEN: &str = "pat-demo-hubspot";

/// Connects `provider` the way a user's browser does: the API hands out the provider's consent
/// page, the provider sends the browser back to the callback with a code, the callback stores the
/// connection. The new connection's id.
async fn oauth_connect(stack: &LocalStack, api: &ApiClient, provider: &str, extra: Value) -> Result<String> {
    let mut body = json!({ "redirect_uri": format!("{}/v1/oauth/callback", stack.gateway.base_url()) });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let path = format!("/v1/connections/oauth/{provider}/authorize");
    let started = api.call(reqwest::Method::POST, &path, Some(body)).await?;
    let consent_page = started.get("authorize_url").and_then(Value::as_str).context("authorize_url")?;
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let consented = browser.get(consent_page).send().await?;
    let back = consented
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .context("the consent page did not send the browser back")?
        .to_owned();
    let reply = browser.get(&back).send().await?;
    let status = reply.status();
    let connection: Value = reply.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("the OAuth callback answered {status}: {connection}");
    }
    Ok(connection.get("id").and_then(Value::as_str).context("connection id")?.to_owned())
}

/// Step 7: records created and deleted through the approval queue, every SQS message delivered
/// twice: a HubSpot contact and a Salesforce account are created once each, a HubSpot contact is
/// deleted, and the delete of a contact a HubSpot user edited after its approval ends as a
/// conflict, the contact kept.
async fn crm_records_step(
    stack: &LocalStack,
    acme: &ApiClient,
    hubspot_id: &str,
    salesforce_id: &str,
) -> Result<()> {
    println!(
        "\n7. acme creates a contact in HubSpot and an account in Salesforce, and deletes two HubSpot contacts, \
         through the queue; every SQS message is delivered twice"
    );
    let hubspot = stack.hubspot.state();
    let sf = stack.salesforce.as_ref().context("the Salesforce fake")?.state();
    let contacts_before = hubspot.count(ObjectKind::Contacts);
    let push = |connection: &str, body: Value| {
        let path = format!("/v1/connections/{connection}/push");
        async move { acme.call(reqwest::Method::POST, &path, Some(body)).await }
    };
    let contact = push(
        hubspot_id,
        json!({ "action": "create_record", "object": "contacts", "idempotency_key": "demo-new-contact",
                "fields": { "email": "nia@initech.example", "first_name": "Nia", "last_name": "Okafor" } }),
    )
    .await?;
    let account = push(
        salesforce_id,
        json!({ "action": "create_record", "object": "companies", "idempotency_key": "demo-new-account",
                "fields": { "name": "Initech", "industry": "Technology" } }),
    )
    .await?;
    let records = acme
        .call(
            reqwest::Method::GET,
            &format!("/v1/connections/{hubspot_id}/records?object=contacts&limit=3"),
            None,
        )
        .await?;
    let pick = |i: usize| -> Result<(String, String)> {
        let r = records.pointer(&format!("/items/{i}")).context("a contact")?;
        let id = r.get("record_id").and_then(Value::as_str).context("record id")?.to_owned();
        let ext = r.get("external_id").and_then(Value::as_str).context("external id")?.to_owned();
        Ok((id, ext))
    };
    let ((gone_rid, gone), (kept_rid, kept)) = (pick(1)?, pick(2)?);
    let delete =
        |rid: &str, key: &str| json!({ "action": "delete_record", "record_id": rid, "idempotency_key": key });
    let delete_gone = push(hubspot_id, delete(&gone_rid, "demo-delete-1")).await?;
    let delete_kept = push(hubspot_id, delete(&kept_rid, "demo-delete-2")).await?;
    let ids = json!({ "ids": [contact.get("push_id"), account.get("push_id"), delete_gone.get("push_id"), delete_kept.get("push_id")] });
    acme.call(reqwest::Method::POST, "/v1/push/approve", Some(ids)).await?;
    hubspot.edit_contact(&kept, &[("jobtitle", "Promoted after the delete was approved")]);
    stack.runner.deliver_twice.store(true, std::sync::atomic::Ordering::Relaxed);
    let drained = stack.runner.drain(Duration::from_secs(600)).await;
    stack.runner.deliver_twice.store(false, std::sync::atomic::Ordering::Relaxed);
    let drained = drained?;
    let item = |p: &Value| {
        let path = format!("/v1/push/{}", p.get("push_id").and_then(Value::as_str).unwrap_or_default());
        async move { acme.call(reqwest::Method::GET, &path, None).await }
    };
    let (kept_item, contact_item) = (item(&delete_kept).await?, item(&contact).await?);
    let archived =
        |ext: &str| hubspot.object(ObjectKind::Contacts, ext).and_then(|c| c.get("archived").cloned());
    let created = hubspot.count(ObjectKind::Contacts) - contacts_before;
    let accounts = sf.count_with_key("Account", "demo-new-account");
    println!(
        "   worker: {} message(s) (each twice); HubSpot contacts created: {created} ({}), Salesforce accounts: {accounts}",
        drained.messages,
        contact_item.get("result_external_id").and_then(Value::as_str).unwrap_or("-"),
    );
    println!(
        "   contact {gone} deleted: {}; contact {kept} (edited after approval) kept: {} ({})",
        archived(&gone) == Some(json!(true)),
        archived(&kept) == Some(json!(false)),
        kept_item.get("last_error").and_then(Value::as_str).unwrap_or("-")
    );
    if created != 1
        || accounts != 1
        || archived(&gone) != Some(json!(true))
        || archived(&kept) != Some(json!(false))
    {
        bail!("the records created and deleted through the queue did not arrive exactly once");
    }
    hubspot.send_webhooks().await?;
    stack.runner.drain(Duration::from_secs(600)).await?;
    Ok(())
}

pub async fn run(args: &DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    println!(
        "Syncbridge demo: schedule -> dispatcher -> SQS FIFO -> worker -> DynamoDB -> API, all on 127.0.0.1\n"
    );
    let seed_counts =
        SeedCounts { accounts: 10, contacts: 40, opportunities: 15, tasks: 5, events: 5, notes: 4 };
    let stack = LocalStack::start(StackOptions {
        hubspot: FakeConfig {
            contacts: args.contacts,
            calls: 6,
            emails: 4,
            meetings: 3,
            tasks: 3,
            rate_limits: true,
            private_app_token: Some(HUBSPOT_TOKEN.into()),
            ..FakeConfig::default()
        },
        salesforce: Some(salesforce::FakeConfig { seed_counts, ..salesforce::FakeConfig::default() }),
        graph: graph::FakeConfig { events: 25, ..graph::FakeConfig::default() },
        drive: drive::FakeConfig { files: 40, ..drive::FakeConfig::default() },
        notion: Some(crate::demo_notion::fake_config()),
        fireflies: Some(crate::demo_fireflies::fake_config()),
        ..StackOptions::default()
    })
    .await?;
    println!("Local stack up in {:.1} s:", t0.elapsed().as_secs_f64());
    println!("  moto (DynamoDB, SQS FIFO, EventBridge)  {}", stack.moto.endpoint());
    println!("  HubSpot fake ({} contacts, rate limits on)  {}", args.contacts, stack.hubspot.base_url());
    println!("  API gateway  {}\n", stack.gateway.base_url());

    let mut connections = Vec::new();
    for tenant in TENANTS {
        let api = ApiClient::new(stack.gateway.base_url(), stack.token(tenant)?);
        // Each tenant connects through OAuth (authorize, the provider's consent page, the callback)
        // and gets its own token, so each has its own share of HubSpot's per-token rate limits (as
        // two real HubSpot accounts would).
        let id = oauth_connect(&stack, &api, "hubspot", json!({ "interval_minutes": 15 })).await?;
        println!("Tenant {tenant:<7} connected HubSpot through OAuth as connection {id}");
        connections.push((tenant, "hubspot", api, id));
    }

    let hubspot = stack.hubspot.state();
    hubspot.reset_stats();
    println!("\n1. Schedule fires (now): first sync of every connection is a full pull");
    let tick = stack.runner.fire_schedule(Utc::now()).await?;
    println!("   dispatcher: {} due, {} claimed, {} jobs enqueued", tick.due, tick.claimed, tick.enqueued);
    let drained = stack.runner.drain(Duration::from_secs(600)).await?;
    println!(
        "   worker: {} message(s) in {} batch(es), {} failure(s)",
        drained.messages, drained.batches, drained.failures
    );
    let first_requests = hubspot.stats().total;

    println!(
        "\n2. The same schedule tick again (a second, overlapping dispatcher): nothing is enqueued twice"
    );
    let again = stack.runner.fire_schedule(Utc::now()).await?;
    println!("   dispatcher: {} due, {} jobs enqueued", again.due, again.enqueued);

    let ids = hubspot.contact_ids();
    let edited: Vec<&str> = ids
        .iter()
        .step_by((ids.len() / args.edits.max(1)).max(1))
        .take(args.edits)
        .map(String::as_str)
        .collect();
    for (i, id) in edited.iter().enumerate() {
        hubspot.edit_contact(
            id,
            &[("jobtitle", &format!("VP of Demos #{i}")), ("lifecyclestage", "opportunity")],
        );
    }
    let events = hubspot.pending_webhooks().len();
    let answers = hubspot.send_webhooks().await?;
    let queued = stack.runner.queue_depth().await?;
    println!(
        "\n3. A HubSpot user edits {} contacts: HubSpot signs {events} webhook event(s) into {} request(s) to the \
         webhooks endpoint (answered {answers:?}); {queued} job(s) enqueued (a burst is one job per connection)",
        edited.len(),
        answers.len(),
    );
    if answers.iter().any(|a| *a != 200) || queued != connections.len() as u64 {
        bail!("the webhooks were not accepted as one job per connection");
    }
    hubspot.reset_stats();

    println!("\n4. The worker runs the webhook jobs: an incremental sync picks up only the changes");
    let drained = stack.runner.drain(Duration::from_secs(600)).await?;
    let mut webhook_runs = 0;
    for (_, _, api, id) in &connections {
        let runs =
            api.call(reqwest::Method::GET, &format!("/v1/connections/{id}/runs?limit=1"), None).await?;
        let last = runs.pointer("/items/0").cloned().unwrap_or(Value::Null);
        if last.get("reason") == Some(&json!("webhook")) && last.get("status") == Some(&json!("succeeded")) {
            webhook_runs += 1;
        }
    }
    println!(
        "   worker: {} deliveries, {} handed back (a webhook job waits for its 1 s coalescing window to close); \
         {webhook_runs} webhook run(s) succeeded",
        drained.messages, drained.failures
    );
    let second_requests = hubspot.stats().total;

    println!("\n5. acme also connects Salesforce, Google Calendar and Outlook (own domain: acme.example)");
    let acme = ApiClient::new(stack.gateway.base_url(), stack.token("acme")?);
    let sf = stack.salesforce.as_ref().context("the Salesforce fake")?;
    let sf_token = sf.issue_token();
    let calendar_settings = json!({ "own_domains": ["acme.example"] });
    let more = [
        (
            "salesforce",
            json!({ "provider": "salesforce", "base_url": sf.base_url(), "access_token": sf_token.access_token, "refresh_token": sf_token.refresh_token }),
        ),
        (
            "google",
            json!({ "provider": "google", "base_url": stack.google.base_url(), "access_token": google::FakeConfig::default().static_token, "settings": calendar_settings }),
        ),
        (
            "microsoft",
            json!({ "provider": "microsoft", "base_url": stack.graph.base_url(), "access_token": graph::FakeConfig::default().static_token, "settings": calendar_settings }),
        ),
    ];
    for (provider, body) in more {
        let c = acme.call(reqwest::Method::POST, "/v1/connections", Some(body)).await?;
        let id = c.get("id").and_then(Value::as_str).context("connection id")?.to_owned();
        connections.push((
            "acme",
            provider,
            ApiClient::new(stack.gateway.base_url(), stack.token("acme")?),
            id,
        ));
    }
    let tick = stack.runner.fire_schedule(Utc::now()).await?;
    let drained = stack.runner.drain(Duration::from_secs(600)).await?;
    println!(
        "   dispatcher: {} jobs enqueued; worker: {} message(s), {} failure(s)",
        tick.enqueued, drained.messages, drained.failures
    );

    println!("\n6. acme pushes a meeting summary and an edit to HubSpot through the approval queue");
    let hubspot_id = &connections[0].3;
    let records = acme
        .call(
            reqwest::Method::GET,
            &format!("/v1/connections/{hubspot_id}/records?object=contacts&limit=1"),
            None,
        )
        .await?;
    let contact = records.pointer("/items/0").cloned().context("a contact")?;
    let rid = contact.get("record_id").and_then(Value::as_str).context("record id")?;
    let ext = contact.get("external_id").and_then(Value::as_str).context("external id")?.to_owned();
    let note = acme
        .call(
            reqwest::Method::POST,
            &format!("/v1/connections/{hubspot_id}/push"),
            Some(json!({ "action": "create_note", "record_id": rid, "fields": { "body": "Call summary: wants a pilot in Q1" }, "idempotency_key": "demo-summary-1" })),
        )
        .await?;
    let edit = acme
        .call(
            reqwest::Method::POST,
            &format!("/v1/connections/{hubspot_id}/records/{rid}/edit"),
            Some(json!({ "fields": { "lead_status": "IN_PROGRESS" }, "idempotency_key": "demo-edit-1", "source": "user_stated" })),
        )
        .await?;
    let ids = json!({ "ids": [note.get("push_id"), edit.get("push_id")] });
    let pending = acme.call(reqwest::Method::GET, "/v1/push?status=pending", None).await?;
    println!(
        "   queued: {} item(s) pending approval",
        pending.get("items").and_then(Value::as_array).map_or(0, Vec::len)
    );
    acme.call(reqwest::Method::POST, "/v1/push/approve", Some(ids)).await?;
    let drained = stack.runner.drain(Duration::from_secs(600)).await?;
    let completed = acme.call(reqwest::Method::GET, "/v1/push?status=completed", None).await?;
    let notes = hubspot
        .find_starting(ObjectKind::Notes, "hs_note_body", "[ARIA] Call summary: wants a pilot in Q1\n")
        .len();
    let lead_status = hubspot
        .object(ObjectKind::Contacts, &ext)
        .and_then(|c| c.pointer("/properties/hs_lead_status").cloned())
        .unwrap_or(Value::Null);
    println!(
        "   approved; worker: {} message(s); {} push(es) completed; HubSpot now has {} such note(s) and lead status {}",
        drained.messages,
        completed.get("items").and_then(Value::as_array).map_or(0, Vec::len),
        notes,
        lead_status
    );
    if notes != 1 || lead_status != json!("IN_PROGRESS") {
        bail!("the pushes did not arrive at HubSpot exactly once");
    }
    let echoes = hubspot.pending_webhooks().len();
    let answers = hubspot.send_webhooks().await?;
    let queued = stack.runner.queue_depth().await?;
    println!(
        "   HubSpot's webhooks about our own writes ({echoes} event(s), answered {answers:?}) are recognised as \
         echoes: {queued} job(s) enqueued"
    );
    if queued != 0 {
        bail!("an echo of our own write enqueued a job");
    }

    crm_records_step(&stack, &acme, hubspot_id, &connections[2].3).await?;

    println!(
        "\n8. initech connects HubSpot with a token whose app lacks the contacts scopes (HubSpot's notes and \
         activities need them too): the other object types sync, the run ends partial, and health says why"
    );
    let initech = ApiClient::new(stack.gateway.base_url(), stack.token("initech")?);
    let scopes: Vec<&str> = syncbridge_fakes::hubspot::ALL_SCOPES
        .iter()
        .copied()
        .filter(|s| !s.starts_with("crm.objects.contacts"))
        .collect();
    let limited = hubspot.issue_token_with_scopes(None, &scopes);
    let created = initech
        .call(
            reqwest::Method::POST,
            "/v1/connections",
            Some(json!({ "provider": "hubspot", "base_url": stack.hubspot.base_url(), "access_token": limited.access_token, "refresh_token": limited.refresh_token })),
        )
        .await?;
    let initech_id = created.get("id").and_then(Value::as_str).context("connection id")?.to_owned();
    stack.runner.fire_schedule(Utc::now()).await?;
    stack.runner.drain(Duration::from_secs(600)).await?;
    let runs = initech
        .call(reqwest::Method::GET, &format!("/v1/connections/{initech_id}/runs?limit=1"), None)
        .await?;
    let run = runs.pointer("/items/0").cloned().unwrap_or(Value::Null);
    let health =
        initech.call(reqwest::Method::GET, &format!("/v1/connections/{initech_id}/health"), None).await?;
    let objects = run.get("objects").and_then(Value::as_object).cloned().unwrap_or_default();
    for (object, o) in &objects {
        println!(
            "   {object:<10} {:<7} pulled {:>4}{}",
            o.get("outcome").and_then(Value::as_str).unwrap_or("?"),
            o.get("pulled").and_then(Value::as_u64).unwrap_or(0),
            o.pointer("/error/code").and_then(Value::as_str).map(|c| format!("  ({c})")).unwrap_or_default()
        );
    }
    let reason = health
        .pointer("/reasons/0/message")
        .or_else(|| health.pointer("/reasons/0"))
        .cloned()
        .unwrap_or(Value::Null);
    println!(
        "   run: {}; health: {}; {}",
        run.get("status").and_then(Value::as_str).unwrap_or("?"),
        health.get("status").and_then(Value::as_str).unwrap_or("?"),
        reason
    );
    if run.get("status") != Some(&json!("partial")) || health.get("status") != Some(&json!("degraded")) {
        bail!("the connection without the contacts scopes did not end partial and degraded");
    }
    connections.push(("initech", "hubspot", initech, initech_id));

    println!(
        "\n9. acme connects Gmail through OAuth (the Google app, scope gmail.modify); a HubSpot contact writes, \
         the message is linked to the contact by address, and starring it goes back through the approval queue"
    );
    let contact_email =
        contact.pointer("/fields/email").and_then(Value::as_str).context("contact email")?.to_owned();
    let gmail = stack.gmail.state();
    gmail
        .deliver(&syncbridge_fakes::gmail::Mail {
            from: format!("A Contact <{contact_email}>"),
            to: vec![syncbridge_fakes::gmail::store::OWNER.to_owned()],
            subject: "Re: pilot in Q1".into(),
            body: "Sounds good, let's start in January.".into(),
            ..Default::default()
        })
        .map_err(|e| anyhow::anyhow!("delivering the demo mail: {e:?}"))?;
    let gmail_id = oauth_connect(&stack, &acme, "gmail", json!({ "interval_minutes": 15 })).await?;
    stack.runner.fire_schedule(Utc::now()).await?;
    stack.runner.drain(Duration::from_secs(600)).await?;
    let messages = acme
        .call(
            reqwest::Method::GET,
            &format!("/v1/connections/{gmail_id}/records?object=messages&limit=100"),
            None,
        )
        .await?;
    let messages = messages.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    let linked: Vec<&Value> = messages
        .iter()
        .filter(|m| {
            m.pointer("/fields/participants")
                .and_then(Value::as_array)
                .is_some_and(|p| p.iter().any(|a| a.as_str() == Some(contact_email.as_str())))
        })
        .collect();
    println!(
        "   pulled {} message(s) with their labels (metadata only: no body was read); {} linked to the HubSpot contact {contact_email}",
        messages.len(),
        linked.len()
    );
    let message = *linked.first().context("no message linked to the contact")?;
    let mid = message.get("record_id").and_then(Value::as_str).context("record id")?;
    let mext = message.get("external_id").and_then(Value::as_str).context("external id")?.to_owned();
    let edit = acme
        .call(
            reqwest::Method::POST,
            &format!("/v1/connections/{gmail_id}/records/{mid}/edit"),
            Some(json!({ "fields": { "labels": ["INBOX", "STARRED"] }, "idempotency_key": "demo-star-1" })),
        )
        .await?;
    acme.call(reqwest::Method::POST, "/v1/push/approve", Some(json!({ "ids": [edit.get("push_id")] })))
        .await?;
    stack.runner.drain(Duration::from_secs(600)).await?;
    let labels = gmail.labels_of(&mext).unwrap_or_default();
    let modifies = gmail.stats().routes.get("messages.modify").copied().unwrap_or(0);
    println!(
        "   approved; Gmail's labels of that message are now {labels:?} ({modifies} messages.modify call)"
    );
    if messages.len() != 21 || linked.len() != 1 || labels != ["INBOX", "STARRED"] || modifies != 1 {
        bail!("the Gmail step did not pull, link and relabel exactly once");
    }
    gmail
        .deliver(&syncbridge_fakes::gmail::Mail {
            from: format!("A Contact <{contact_email}>"),
            to: vec![syncbridge_fakes::gmail::store::OWNER.to_owned()],
            subject: "Contract attached".into(),
            ..Default::default()
        })
        .map_err(|e| anyhow::anyhow!("delivering the demo mail: {e:?}"))?;
    let pushed = gmail.publish().await;
    let queued = stack.runner.queue_depth().await?;
    stack.runner.drain(Duration::from_secs(600)).await?;
    let after = acme
        .call(
            reqwest::Method::GET,
            &format!("/v1/connections/{gmail_id}/records?object=messages&limit=100"),
            None,
        )
        .await?;
    let after = after.get("items").and_then(Value::as_array).map_or(0, Vec::len);
    let answers: Vec<Option<u16>> = pushed.iter().map(|d| d.status).collect();
    println!(
        "   a new mail: Gmail's Pub/Sub push, its OIDC token checked as in Lambda (answered {answers:?}), enqueued {queued} job; the incremental pull \
         (history.list) brought the mailbox to {after} message(s)"
    );
    if answers != [Some(200)] || queued != 1 || after != messages.len() + 1 {
        bail!("the Gmail push did not bring exactly the new message");
    }
    connections.push((
        "acme",
        "gmail",
        ApiClient::new(stack.gateway.base_url(), stack.token("acme")?),
        gmail_id,
    ));

    println!(
        "\n10. globex connects a Notion workspace used as a CRM (deals and contacts databases, Notion's 3 requests/s on)"
    );
    let globex = ApiClient::new(stack.gateway.base_url(), stack.token("globex")?);
    let notion_id = crate::demo_notion::run(&stack, &globex, "globex").await?;
    connections.push(("globex", "notion", globex, notion_id));

    drive_step(&stack, &acme, &mut connections).await?;

    println!(
        "\n12. acme connects Fireflies with an API key (Business plan's 60 requests/min on): transcripts, action items as follow-up tasks"
    );
    let acme = ApiClient::new(stack.gateway.base_url(), stack.token("acme")?);
    let calendar = connections
        .iter()
        .find(|(t, p, _, _)| *t == "acme" && *p == "google")
        .map(|(_, _, _, id)| id.clone())
        .context("acme's Google Calendar connection")?;
    let outlook = connections
        .iter()
        .find(|(t, p, _, _)| *t == "acme" && *p == "microsoft")
        .map(|(_, _, _, id)| id.clone())
        .context("acme's Outlook connection")?;
    let fireflies_id = crate::demo_fireflies::run(&stack, &acme, "acme", &calendar, &outlook).await?;
    connections.push(("acme", "fireflies", acme, fireflies_id));

    println!("\nSummary (read back through the API)");
    println!(
        "{:<8} {:<10} {:<4} {:<8} {:>7} {:>7} {:>7} {:>9} {:>6} {:>8} {:>5} {:>8}",
        "tenant",
        "provider",
        "run",
        "reason",
        "pulled",
        "created",
        "updated",
        "unchanged",
        "tasks",
        "requests",
        "429s",
        "ms"
    );
    let mut failures = 0;
    for (tenant, provider, api, id) in &connections {
        let runs =
            api.call(reqwest::Method::GET, &format!("/v1/connections/{id}/runs?limit=10"), None).await?;
        let mut runs: Vec<Value> = runs.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
        runs.reverse();
        for (i, r) in runs.iter().enumerate() {
            let n = |k: &str| r.pointer(&format!("/counts/{k}")).and_then(Value::as_u64).unwrap_or(0);
            if r.get("status").and_then(Value::as_str) == Some("failed") {
                failures += 1;
            }
            println!(
                "{:<8} {:<10} {:<4} {:<8} {:>7} {:>7} {:>7} {:>9} {:>6} {:>8} {:>5} {:>8}",
                tenant,
                provider,
                format!("#{}", i + 1),
                r.get("reason").and_then(Value::as_str).unwrap_or("?"),
                n("pulled"),
                n("created"),
                n("updated"),
                n("unchanged"),
                n("tasks_opened"),
                n("requests"),
                n("rate_limited"),
                r.get("duration_ms").and_then(Value::as_u64).unwrap_or(0)
            );
        }
    }
    println!();
    for (tenant, provider, api, id) in &connections {
        let c = api.call(reqwest::Method::GET, &format!("/v1/connections/{id}"), None).await?;
        let records: u64 = c
            .get("record_counts")
            .and_then(Value::as_object)
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        println!(
            "{tenant:<8} {provider:<10} status {:<7} records {:>6}  last sync {}  next sync {}",
            c.get("status").and_then(Value::as_str).unwrap_or("?"),
            records,
            c.get("last_sync_at").and_then(Value::as_str).unwrap_or("-"),
            c.get("next_sync_at").and_then(Value::as_str).unwrap_or("-"),
        );
        if c.get("status").and_then(Value::as_str) != Some("synced") {
            failures += 1;
        }
    }
    let events = stack.take_events().await?;
    let count =
        |t: &str| events.iter().filter(|e| e.get("detail-type").and_then(Value::as_str) == Some(t)).count();
    println!(
        "\nHubSpot API calls: {} for the full syncs, {} for the incremental ones. Events on the bus: {} record.created, {} record.updated, {} record.deleted, {} sync.completed, {} push.completed.",
        first_requests,
        second_requests,
        count("record.created"),
        count("record.updated"),
        count("record.deleted"),
        count("sync.completed"),
        count("push.completed")
    );
    println!("Demo finished in {:.1} s.", t0.elapsed().as_secs_f64());
    if failures > 0 {
        bail!("{failures} run(s) or connection(s) did not end synced");
    }
    if !args.serve {
        println!(
            "\nTo open the dashboard on this data: `make demo-dashboard` runs the same demo, keeps its stack up and prints a signed-in dashboard URL for each tenant (Ctrl-C stops it)."
        );
        return Ok(());
    }
    println!("\nThe dashboard on this data (each link signs in as its tenant; Ctrl-C stops the stack):");
    for tenant in TENANTS {
        println!("  {tenant:<8} {}/#token={}", stack.gateway.base_url(), stack.token(tenant)?);
    }
    crate::cli::run_until_stopped(&stack, Duration::from_secs(60)).await
}

/// Step 9: acme connects Google Drive through OAuth (Google's app, Drive's read-only metadata
/// scope). Two files are made to link: one named after a deal of acme's CRM connections, one
/// shared with a contact's address. The first sync lists every file and links them; then a
/// person renames one file and trashes another, Drive notifies the channel the worker opened, and
/// the webhook's job pulls just those changes from the change feed.
async fn drive_step(
    stack: &LocalStack,
    acme: &ApiClient,
    connections: &mut Vec<(&'static str, &'static str, ApiClient, String)>,
) -> Result<()> {
    println!("\n11. acme connects Google Drive through OAuth; files link to its deals and contacts");
    let mut deal = None;
    let mut email = None;
    for (_, provider, api, id) in connections.iter().filter(|c| c.0 == "acme") {
        if !matches!(*provider, "hubspot" | "salesforce") {
            continue;
        }
        let first = |object: &str, field: &str| {
            let path = format!("/v1/connections/{id}/records?object={object}&limit=1");
            let field = field.to_owned();
            async move {
                let page = api.call(reqwest::Method::GET, &path, None).await.ok()?;
                page.pointer(&format!("/items/0/fields/{field}")).and_then(Value::as_str).map(str::to_owned)
            }
        };
        deal = deal.or(first("deals", "name").await);
        email = email.or(first("contacts", "email").await);
    }
    let (deal, email) = (deal.context("a deal of acme's CRM")?, email.context("a contact of acme's CRM")?);
    let files = stack.drive.state();
    let proposal = files
        .create_file(drive::NewFile { name: format!("{deal} - proposal"), ..drive::NewFile::default() })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let brief = files
        .create_file(drive::NewFile {
            name: "Pilot brief".into(),
            shared_with: vec![(email.clone(), "reader".into())],
            ..drive::NewFile::default()
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = oauth_connect(stack, acme, "google_drive", json!({})).await?;
    stack.runner.fire_schedule(Utc::now()).await?;
    stack.runner.drain(Duration::from_secs(600)).await?;
    // 42 files: one page of 200.
    let page = acme
        .call(reqwest::Method::GET, &format!("/v1/connections/{id}/records?object=files&limit=200"), None)
        .await?;
    let items = page.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    let linked = |file: &Value, field: &str| {
        let ext = file.get("id").and_then(Value::as_str).unwrap_or_default();
        items
            .iter()
            .find(|r| r.get("external_id").and_then(Value::as_str) == Some(ext))
            .and_then(|r| r.pointer(&format!("/fields/{field}")).and_then(Value::as_array).map(Vec::len))
            .unwrap_or(0)
    };
    let (deals, contacts) = (linked(&proposal, "linked_deals"), linked(&brief, "linked_contacts"));
    let c = acme.call(reqwest::Method::GET, &format!("/v1/connections/{id}"), None).await?;
    let count = c.pointer("/record_counts/files").and_then(Value::as_u64).unwrap_or(0);
    println!(
        "   first sync: {count} files; \"{deal} - proposal\" linked to {deals} deal(s), \"Pilot brief\" (shared with {email}) to {contacts} contact(s)"
    );
    if count != 42 || deals == 0 || contacts == 0 {
        bail!("the Drive files did not sync or link as expected");
    }
    let ids = files.live_file_ids();
    files.rename(&ids[5], "Renamed by a person").map_err(|e| anyhow::anyhow!("{e}"))?;
    files.trash(&ids[6], true).map_err(|e| anyhow::anyhow!("{e}"))?;
    let sent = files.notify("change", None).await;
    let drained = stack.runner.drain(Duration::from_secs(600)).await?;
    let runs = acme.call(reqwest::Method::GET, &format!("/v1/connections/{id}/runs?limit=1"), None).await?;
    let run = runs.pointer("/items/0").cloned().unwrap_or(Value::Null);
    let n = |k: &str| run.pointer(&format!("/counts/{k}")).and_then(Value::as_u64).unwrap_or(0);
    println!(
        "   a rename and a trash; Drive notified {} channel(s) (answered {:?}); the webhook's run ({}) pulled {} change(s): {} updated, {} deleted, in {} request(s)",
        sent.len(),
        sent.iter().map(|d| d.status).collect::<Vec<_>>(),
        run.get("reason").and_then(Value::as_str).unwrap_or("?"),
        n("pulled"),
        n("updated"),
        n("deleted"),
        n("requests")
    );
    if drained.messages == 0 || n("pulled") != 2 || n("updated") != 1 || n("deleted") != 1 {
        bail!("the Drive change feed did not bring exactly the rename and the trash");
    }
    connections.push(("acme", "drive", ApiClient::new(stack.gateway.base_url(), stack.token("acme")?), id));
    Ok(())
}
