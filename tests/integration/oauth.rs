//! OAuth connect and disconnect, black box through the local gateway against the provider fakes
//! over HTTP (authorize -> the fake's consent redirect -> callback), with tokens in moto's
//! DynamoDB; and KMS envelope encryption of tokens against moto's KMS.

use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use syncbridge::adapters::crypto::TokenCipher;
use syncbridge::adapters::dynamo::DynamoStore;
use syncbridge::domain::{
    Connection, ConnectionId, Credentials, NewConnection, Operation, Provider, TenantId,
};
use syncbridge::ports::{AuditQuery, ConnectionStore};
use syncbridge_fakes::hubspot::FakeConfig;
use syncbridge_fakes::salesforce;
use syncbridge_local::{LocalStack, StackOptions};

use crate::aws_support::{Moto, unique};

const DRAIN: Duration = Duration::from_secs(120);

/// A client that does not follow redirects (the test plays the browser step by step).
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn callback_url(stack: &LocalStack) -> String {
    format!("{}/v1/oauth/callback", stack.gateway.base_url())
}

/// `POST /v1/connections/oauth/{provider}/authorize` as `tenant`: status and body.
async fn authorize(stack: &LocalStack, tenant: &str, provider: &str, body: Value) -> Result<(u16, Value)> {
    let response = browser()
        .post(format!("{}/v1/connections/oauth/{provider}/authorize", stack.gateway.base_url()))
        .bearer_auth(stack.token(tenant)?)
        .json(&body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// The browser at the provider's consent page: where it is sent back to.
async fn consent(authorize_url: &str) -> Result<String> {
    let response = browser().get(authorize_url).send().await?;
    anyhow::ensure!(response.status().as_u16() == 302, "consent page answered {}", response.status());
    Ok(response.headers()["location"].to_str()?.to_owned())
}

/// The browser back at the callback (no token): status and body.
async fn back(url: &str) -> Result<(u16, Value)> {
    let response = browser().get(url).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// The whole flow for `tenant`: the callback's status and body.
async fn connect(stack: &LocalStack, tenant: &str, provider: &str, extra: Value) -> Result<(u16, Value)> {
    let mut body = json!({ "redirect_uri": callback_url(stack) });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let (status, started) = authorize(stack, tenant, provider, body).await?;
    anyhow::ensure!(status == 200, "authorize answered {status}: {started}");
    let url = started["authorize_url"].as_str().context("authorize_url")?;
    back(&consent(url).await?).await
}

async fn call(stack: &LocalStack, tenant: &str, method: reqwest::Method, path: &str) -> Result<(u16, Value)> {
    let response = browser()
        .request(method, format!("{}{path}", stack.gateway.base_url()))
        .bearer_auth(stack.token(tenant)?)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// The connection item as stored in moto's DynamoDB.
async fn raw_item(
    stack: &LocalStack,
    tenant: &str,
    sk: &str,
) -> Result<Option<std::collections::HashMap<String, AttributeValue>>> {
    let out = aws_sdk_dynamodb::Client::new(&stack.sdk)
        .get_item()
        .table_name(&stack.config.resources.table_name)
        .key("pk", AttributeValue::S(format!("T#{tenant}")))
        .key("sk", AttributeValue::S(sk.to_owned()))
        .send()
        .await?;
    Ok(out.item)
}

fn s<'a>(item: &'a std::collections::HashMap<String, AttributeValue>, name: &str) -> &'a str {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str).unwrap_or("")
}

async fn operations(stack: &LocalStack, tenant: &str) -> Result<Vec<(Operation, String)>> {
    let page = stack
        .deps
        .audit
        .query(&TenantId::parse(tenant)?, &AuditQuery { limit: 100, ..AuditQuery::default() })
        .await?;
    Ok(page.items.iter().map(|e| (e.operation, e.outcome.as_str().to_owned())).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_connect_flow_creates_one_connection_per_portal_with_kms_encrypted_tokens_and_disconnect_revokes()
-> Result<()> {
    let stack = LocalStack::start(StackOptions {
        hubspot: FakeConfig { contacts: 3, private_app_token: None, ..FakeConfig::default() },
        kms: true,
        ..StackOptions::default()
    })
    .await?;

    let (status, started) =
        authorize(&stack, "acme", "hubspot", json!({ "redirect_uri": callback_url(&stack) })).await?;
    assert_eq!(status, 200, "{started}");
    let authorize_url = started["authorize_url"].as_str().context("authorize_url")?;
    assert!(authorize_url.starts_with(&format!("{}/oauth/authorize?", stack.hubspot.base_url())));
    assert!(!authorize_url.contains("client_secret") && !authorize_url.contains("fake-client-secret"));
    let back_to = consent(authorize_url).await?;
    assert!(back_to.starts_with(&callback_url(&stack)), "{back_to}");
    let (status, created) = back(&back_to).await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().context("id")?.to_owned();
    assert_eq!(created["account_id"], syncbridge_fakes::hubspot::PORTAL_ID.to_string());
    assert_eq!(created["base_url"], stack.hubspot.base_url());
    assert!(created.get("access_token").is_none() && !created.to_string().contains("oauth-"));

    // Replaying the callback (same code and state) is refused and creates nothing.
    let (status, replay) = back(&back_to).await?;
    assert_eq!((status, replay["code"].as_str()), (400, Some("invalid_state")), "{replay}");

    // Tokens are envelope-encrypted in moto's DynamoDB, never plain.
    let item = raw_item(&stack, "acme", &format!("CONN#{id}")).await?.context("connection item")?;
    for name in ["access_token_enc", "refresh_token_enc"] {
        let value = s(&item, name);
        assert!(value.starts_with("kms1:"), "{name}: {value}");
        assert!(
            !value.contains("oauth-access") && !value.contains("oauth-refresh"),
            "{name} holds plain text"
        );
    }

    // The stored tokens work: a sync pulls the portal's contacts with them.
    let (status, _) =
        call(&stack, "acme", reqwest::Method::POST, &format!("/v1/connections/{id}/sync")).await?;
    assert_eq!(status, 202);
    let drained = stack.runner.drain(DRAIN).await?;
    assert_eq!(drained.failures, 0);
    let (_, conn) = call(&stack, "acme", reqwest::Method::GET, &format!("/v1/connections/{id}")).await?;
    assert_eq!(
        (conn["status"].as_str(), conn["record_counts"]["contacts"].as_u64()),
        (Some("synced"), Some(3))
    );

    // Another tenant sees nothing of it.
    let (status, _) = call(&stack, "globex", reqwest::Method::GET, &format!("/v1/connections/{id}")).await?;
    assert_eq!(status, 404);
    let (_, listed) = call(&stack, "globex", reqwest::Method::GET, "/v1/connections").await?;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(0));
    let (status, _) =
        call(&stack, "globex", reqwest::Method::DELETE, &format!("/v1/connections/{id}")).await?;
    assert_eq!(status, 404);

    // Connecting the same portal again reconnects the connection instead of adding one.
    let (status, again) = connect(&stack, "acme", "hubspot", json!({})).await?;
    assert_eq!((status, again["id"].as_str()), (200, Some(id.as_str())), "{again}");
    let (_, listed) = call(&stack, "acme", reqwest::Method::GET, "/v1/connections").await?;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));

    // Disconnect: the grant is revoked at HubSpot, the connection and its tokens are gone.
    let revokes =
        |stack: &LocalStack| stack.hubspot.state().stats().routes.get("revoke").copied().unwrap_or(0);
    let (status, _) = call(&stack, "acme", reqwest::Method::DELETE, &format!("/v1/connections/{id}")).await?;
    assert_eq!(status, 204);
    assert_eq!(revokes(&stack), 1);
    assert!(raw_item(&stack, "acme", &format!("CONN#{id}")).await?.is_none(), "credentials erased");
    assert!(raw_item(&stack, "acme", &format!("GONE#{id}")).await?.is_some(), "tombstone kept");
    let (status, _) = call(&stack, "acme", reqwest::Method::GET, &format!("/v1/connections/{id}")).await?;
    assert_eq!(status, 404);
    let (status, _) =
        call(&stack, "acme", reqwest::Method::POST, &format!("/v1/connections/{id}/sync")).await?;
    assert_eq!(status, 404);
    // A second DELETE is harmless: 204, and nothing is revoked again.
    let (status, _) = call(&stack, "acme", reqwest::Method::DELETE, &format!("/v1/connections/{id}")).await?;
    assert_eq!(status, 204);
    assert_eq!(revokes(&stack), 1);

    let ops = operations(&stack, "acme").await?;
    for expected in [
        (Operation::ConnectionCreated, "success"),
        (Operation::ConnectionReconnected, "success"),
        (Operation::TokenRevoked, "success"),
        (Operation::ConnectionDisconnected, "success"),
    ] {
        assert!(ops.contains(&(expected.0, expected.1.to_owned())), "{expected:?} not in {ops:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_sandbox_connect_flow_logs_in_at_the_sandbox_host_and_learns_org_and_instance()
-> Result<()> {
    let stack = LocalStack::start(StackOptions {
        salesforce: Some(salesforce::FakeConfig { session_token: None, ..salesforce::FakeConfig::default() }),
        salesforce_sandbox: true,
        ..StackOptions::default()
    })
    .await?;
    let sf = stack.salesforce.as_ref().context("salesforce fake")?;

    // Production goes to the real login host (never reached here); a sandbox to the fake.
    let (status, prod) =
        authorize(&stack, "acme", "salesforce", json!({ "redirect_uri": callback_url(&stack) })).await?;
    assert_eq!(status, 200);
    assert!(
        prod["authorize_url"]
            .as_str()
            .unwrap_or("")
            .starts_with("https://login.salesforce.com/services/oauth2/authorize?")
    );
    let (status, sandbox) = authorize(
        &stack,
        "acme",
        "salesforce",
        json!({ "redirect_uri": callback_url(&stack), "sandbox": true, "interval_minutes": 30 }),
    )
    .await?;
    assert_eq!(status, 200);
    let url = sandbox["authorize_url"].as_str().context("authorize_url")?;
    assert!(url.starts_with(&format!("{}/services/oauth2/authorize?", sf.base_url())), "{url}");
    assert!(url.contains("code_challenge=") && url.contains("code_challenge_method=S256"), "PKCE: {url}");

    let (status, created) = back(&consent(url).await?).await?;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["provider"], "salesforce");
    assert_eq!(created["account_id"], salesforce::ORG_ID);
    assert_eq!(created["base_url"], sf.base_url(), "base_url is the token response's instance_url");
    assert_eq!(created["interval_minutes"], 30);
    let id = created["id"].as_str().context("id")?.to_owned();
    let item = raw_item(&stack, "acme", &format!("CONN#{id}")).await?.context("item")?;
    let access = s(&item, "access_token_enc");
    assert!(access.starts_with("lk1:") && !access.contains("00DFAKE"), "{access}");

    // Disconnect revokes the refresh token at Salesforce.
    let (status, _) = call(&stack, "acme", reqwest::Method::DELETE, &format!("/v1/connections/{id}")).await?;
    assert_eq!(status, 204);
    assert_eq!(sf.state().route_count(salesforce::Route::Revoke), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_denied_and_rejected_authorizations_are_problems_and_create_no_connection()
-> Result<()> {
    let stack = LocalStack::start(StackOptions {
        hubspot: FakeConfig { private_app_token: None, ..FakeConfig::default() },
        ..StackOptions::default()
    })
    .await?;
    let callback = callback_url(&stack);
    let problem = |v: &Value| v["code"].as_str().unwrap_or("").to_owned();

    // A state we never issued, and one that is not even shaped like ours.
    let forged = "A".repeat(43);
    let (status, body) = back(&format!("{callback}?code=abc&state={forged}")).await?;
    assert_eq!((status, problem(&body)), (400, "invalid_state".into()));
    let (status, body) = back(&format!("{callback}?code=abc&state=../../etc")).await?;
    assert_eq!((status, problem(&body)), (400, "invalid_state".into()));
    let (status, body) = back(&format!("{callback}?code=abc")).await?;
    assert_eq!((status, problem(&body)), (400, "invalid_state".into()));

    // The user declines at HubSpot: a clear problem, and the state is used up.
    stack.hubspot.state().oauth.set_deny(true);
    let (status, started) = authorize(&stack, "acme", "hubspot", json!({ "redirect_uri": callback })).await?;
    assert_eq!(status, 200);
    let url = started["authorize_url"].as_str().context("authorize_url")?.to_owned();
    let denied = consent(&url).await?;
    assert!(denied.contains("error=access_denied"), "{denied}");
    let (status, body) = back(&denied).await?;
    assert_eq!((status, problem(&body)), (400, "authorization_denied".into()), "{body}");
    stack.hubspot.state().oauth.set_deny(false);
    let (status, body) = back(&consent(&url).await?).await?;
    assert_eq!((status, problem(&body)), (400, "invalid_state".into()), "a declined state cannot be reused");

    // A code HubSpot does not know (valid state): the exchange is rejected.
    let (_, started) = authorize(&stack, "acme", "hubspot", json!({ "redirect_uri": callback })).await?;
    let state = started["state"].as_str().context("state")?;
    let (status, body) = back(&format!("{callback}?code=not-a-code&state={state}")).await?;
    assert_eq!((status, problem(&body)), (400, "authorization_rejected".into()), "{body}");

    // Bad authorize requests.
    let (status, body) =
        authorize(&stack, "acme", "hubspot", json!({ "redirect_uri": "https://evil.example/cb" })).await?;
    assert_eq!((status, problem(&body)), (422, "invalid_request".into()));
    let (status, _) = authorize(&stack, "acme", "myspace", json!({ "redirect_uri": callback })).await?;
    assert_eq!(status, 422);
    let (status, _) =
        authorize(&stack, "acme", "hubspot", json!({ "redirect_uri": callback, "sandbox": true })).await?;
    assert_eq!(status, 422);
    let response = browser()
        .post(format!("{}/v1/connections/oauth/hubspot/authorize", stack.gateway.base_url()))
        .json(&json!({ "redirect_uri": callback }))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 401, "authorize needs a verified identity");

    let (_, listed) = call(&stack, "acme", reqwest::Method::GET, "/v1/connections").await?;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(0));
    // The declined and the rejected connect are in the tenant's audit log, without the code.
    let refused = operations(&stack, "acme").await?;
    let rejected =
        refused.iter().filter(|(op, outcome)| *op == Operation::ConnectionCreated && outcome == "rejected");
    assert_eq!(rejected.count(), 2, "{refused:?}");
    Ok(())
}

#[tokio::test]
async fn kms_envelope_encryption_round_trips_through_moto_and_values_under_the_old_local_key_still_decrypt()
-> Result<()> {
    let moto = Moto::start().await?;
    let sdk = moto.config().await;
    let key_id = syncbridge_local::stack::create_kms_key(&sdk).await?;
    let legacy_key = SecretString::from(TokenCipher::generate_key());
    let kms = || TokenCipher::kms(aws_sdk_kms::Client::new(&sdk), key_id.clone(), Some(&legacy_key));

    let writer = kms()?;
    assert_eq!(
        writer.encrypt(&SecretString::from("x")).unwrap_err().to_string(),
        "the data key has not been resolved from KMS yet"
    );
    writer.ready().await?;
    let sealed = writer.encrypt(&SecretString::from("refresh-token-plaintext"))?;
    assert!(sealed.starts_with("kms1:") && !sealed.contains("plaintext"), "{sealed}");
    assert_eq!(writer.decrypt(&sealed)?.expose_secret(), "refresh-token-plaintext");

    // Another process (an empty data key cache) decrypts after asking KMS for the data key.
    let reader = kms()?;
    assert!(reader.decrypt(&sealed).is_err(), "nothing cached yet");
    reader.prepare(std::slice::from_ref(&sealed)).await?;
    assert_eq!(reader.decrypt(&sealed)?.expose_secret(), "refresh-token-plaintext");

    // Values written with the local key before (tagged and untagged) still decrypt.
    let local = TokenCipher::from_base64_key(&legacy_key)?;
    let old = local.encrypt(&SecretString::from("old-token"))?;
    assert_eq!(reader.decrypt(&old)?.expose_secret(), "old-token");

    // Through the DynamoDB store: another store instance reads what one wrote.
    let res = syncbridge_local::stack::create_from_template(
        &syncbridge_local::stack::template_path()?,
        &sdk,
        &unique("kms"),
    )
    .await?
    .resources;
    let store = |cipher| {
        DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            res.table_name.clone(),
            res.audit_table_name.clone(),
            cipher,
            4,
        )
    };
    let tenant = TenantId::parse("acme")?;
    let connection = Connection::new(
        tenant.clone(),
        NewConnection {
            provider: Provider::Hubspot,
            base_url: "http://127.0.0.1:9".into(),
            credentials: Credentials {
                access_token: SecretString::from("access-plaintext"),
                refresh_token: Some(SecretString::from("refresh-plaintext")),
                expires_at: None,
            },
            interval_minutes: 15,
            settings: Default::default(),
        },
        chrono::Utc::now(),
    );
    store(kms()?).create(&connection).await?;
    let read: ConnectionId = connection.connection_id.clone();
    let back = store(kms()?).get(&tenant, &read).await?.context("stored")?;
    assert_eq!(back.credentials.access_token.expose_secret(), "access-plaintext");
    assert_eq!(
        back.credentials.refresh_token.as_ref().map(|t| t.expose_secret().to_owned()).as_deref(),
        Some("refresh-plaintext")
    );
    // A store with only the local key cannot read envelope values (and says so, not garbage).
    assert!(store(TokenCipher::from_base64_key(&legacy_key)?).get(&tenant, &read).await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_and_microsoft_connect_flows_learn_the_calendar_owner_and_the_user_and_disconnect()
-> Result<()> {
    let stack = LocalStack::start(StackOptions::default()).await?;

    let (status, google) = connect(&stack, "acme", "google", json!({})).await?;
    assert_eq!(status, 201, "{google}");
    assert_eq!(google["account_id"], "owner@acme.example");
    assert_eq!(google["base_url"], format!("{}/calendar/v3", stack.google.base_url()));

    let (status, microsoft) = connect(&stack, "acme", "microsoft", json!({})).await?;
    assert_eq!(status, 201, "{microsoft}");
    assert_eq!(microsoft["account_id"], syncbridge_fakes::graph::USER_ID);
    assert_eq!(microsoft["base_url"], stack.graph.base_url());

    let route =
        |stats: &syncbridge_fakes::google::Stats, name: &str| stats.routes.get(name).copied().unwrap_or(0);
    for c in [&google, &microsoft] {
        let path = format!("/v1/connections/{}", c["id"].as_str().context("id")?);
        let (status, _) = call(&stack, "acme", reqwest::Method::DELETE, &path).await?;
        assert_eq!(status, 204);
    }
    assert_eq!(route(&stack.google.state().stats(), "revoke"), 1, "Google's grant is revoked");
    // Microsoft has no revocation endpoint: audited as such, the connection is gone all the same.
    let page = stack
        .deps
        .audit
        .query(&TenantId::parse("acme")?, &AuditQuery { limit: 100, ..AuditQuery::default() })
        .await?;
    let results: Vec<String> = page
        .items
        .iter()
        .filter(|e| e.operation == Operation::TokenRevoked)
        .map(|e| e.detail["result"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        results.contains(&"revoked".to_owned()) && results.contains(&"not_supported".to_owned()),
        "{results:?}"
    );
    let (_, listed) = call(&stack, "acme", reqwest::Method::GET, "/v1/connections").await?;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(0));
    Ok(())
}

#[tokio::test]
async fn a_browser_connects_hubspot_from_the_dashboard_through_the_consent_page_and_lands_back_on_it()
-> Result<()> {
    let stack = LocalStack::start(StackOptions {
        hubspot: FakeConfig { contacts: 2, private_app_token: None, ..FakeConfig::default() },
        ..StackOptions::default()
    })
    .await?;
    let base = stack.gateway.base_url();
    // The dashboard's page and its start-up configuration come from the gateway's origin.
    let page = browser().get(format!("{base}/connections")).send().await?;
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers()["content-type"].to_str()?.starts_with("text/html"));
    let config: Value = browser().get(format!("{base}/config.json")).send().await?.json().await?;
    assert_eq!(config["auth"]["mode"], "dev");

    let body = json!({ "redirect_uri": callback_url(&stack), "return_to": "/connections" });
    let (status, started) = authorize(&stack, "acme", "hubspot", body).await?;
    assert_eq!(status, 200, "{started}");
    let authorize_url = started["authorize_url"].as_str().context("authorize_url")?;
    // A browser sees HubSpot's consent page first, and its "Connect app" button sends it on.
    let html = browser().get(authorize_url).header("accept", "text/html").send().await?;
    assert_eq!(html.status().as_u16(), 200);
    let text = html.text().await?;
    assert!(text.contains("Connect app") && text.contains("Cancel"), "{text}");
    let allow = format!("{authorize_url}&consent=allow");
    let back_to = browser().get(&allow).header("accept", "text/html").send().await?;
    assert_eq!(back_to.status().as_u16(), 302);
    let callback = back_to.headers()["location"].to_str()?.to_owned();
    let landed = browser().get(&callback).header("accept", "text/html").send().await?;
    assert_eq!(landed.status().as_u16(), 303);
    let location = landed.headers()["location"].to_str()?.to_owned();
    let id = location.strip_prefix("/connections?connected=").context("back on the dashboard")?;
    let (status, connection) =
        call(&stack, "acme", reqwest::Method::GET, &format!("/v1/connections/{id}")).await?;
    assert_eq!((status, connection["provider"].as_str()), (200, Some("hubspot")), "{connection}");

    // Declining on the same page brings the browser back with the reason.
    let body = json!({ "redirect_uri": callback_url(&stack), "return_to": "/connections" });
    let (_, started) = authorize(&stack, "acme", "hubspot", body).await?;
    let deny = format!("{}&consent=deny", started["authorize_url"].as_str().context("authorize_url")?);
    let back_to = browser().get(&deny).header("accept", "text/html").send().await?;
    let callback = back_to.headers()["location"].to_str()?.to_owned();
    let landed = browser().get(&callback).send().await?;
    let location = landed.headers()["location"].to_str()?.to_owned();
    assert!(location.starts_with("/connections?oauth_error=authorization_denied&"), "{location}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drive_connect_flow_uses_googles_app_with_drive_scopes_then_syncs_files_and_disconnects()
-> Result<()> {
    let stack = LocalStack::start(StackOptions {
        drive: syncbridge_fakes::drive::FakeConfig { files: 12, ..Default::default() },
        ..StackOptions::default()
    })
    .await?;
    let (status, drive) = connect(&stack, "acme", "google_drive", json!({})).await?;
    assert_eq!(status, 201, "{drive}");
    assert_eq!(drive["account_id"], syncbridge_fakes::drive::OWNER);
    assert_eq!(drive["base_url"], stack.drive.api_url());
    let id = drive["id"].as_str().context("id")?.to_owned();
    let (status, _) =
        call(&stack, "acme", reqwest::Method::POST, &format!("/v1/connections/{id}/sync")).await?;
    assert_eq!(status, 202);
    let drained = stack.runner.drain(DRAIN).await?;
    assert_eq!(drained.failures, 0);
    let (_, conn) = call(&stack, "acme", reqwest::Method::GET, &format!("/v1/connections/{id}")).await?;
    assert_eq!(
        (conn["status"].as_str(), conn["record_counts"]["files"].as_u64()),
        (Some("synced"), Some(12)),
        "the grant's drive.metadata.readonly token lists every file: {conn}"
    );
    assert_eq!(stack.drive.state().active_channels().len(), 1, "a change-feed channel to the gateway");
    let (status, _) = call(&stack, "acme", reqwest::Method::DELETE, &format!("/v1/connections/{id}")).await?;
    assert_eq!(status, 204);
    assert!(stack.drive.state().active_channels().is_empty(), "the channel is stopped on disconnect");
    assert_eq!(stack.drive.state().stats().routes.get("revoke"), Some(&1), "the grant is revoked");
    Ok(())
}
