//! Gmail's Pub/Sub pushes through the local gateway, proven as in Lambda: the Gmail fake's push
//! subscription signs each push with an OIDC token, and the webhooks check it against the fake's
//! JWKS (RS256, audience = the push endpoint's URL, Google's issuer, the service account).
//! Tokens from another key, for another audience or expired are 401 problems that enqueue nothing.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use base64::Engine as _;
use chrono::Utc;
use serde_json::{Value, json};
use syncbridge_fakes::gmail::oidc::{OidcToken, PushSigner};
use syncbridge_fakes::gmail::{Mail, store::OWNER};
use syncbridge_local::local::LOCAL_GMAIL_PUSH_ACCOUNT;
use syncbridge_tests::*;

const DRAIN: Duration = Duration::from_secs(120);

/// Connects acme to the stack's Gmail fake for the mailbox [`OWNER`] and runs the first sync,
/// which opens the mailbox watch on the stack's topic; returns the connection id.
async fn connect_gmail(stack: &LocalStack) -> Result<String> {
    let c = api(stack, "acme")?
        .call(
            reqwest::Method::POST,
            "/v1/connections",
            Some(json!({ "provider": "gmail", "base_url": stack.gmail.api_url(),
                         "access_token": "ya29.fake-gmail", "account_id": OWNER })),
        )
        .await?;
    let id = c["id"].as_str().context("connection id")?.to_owned();
    stack.runner.fire_schedule(Utc::now()).await?;
    let drained = stack.runner.drain(DRAIN).await?;
    ensure!(drained.failures == 0, "the first sync failed: {drained:?}");
    ensure!(stack.gmail.state().watch().is_some(), "the first sync watches the mailbox");
    Ok(id)
}

async fn messages(stack: &LocalStack, id: &str) -> Result<usize> {
    Ok(all_records(stack, "acme", id).await?.iter().filter(|r| r["object"] == "messages").count())
}

/// Pub/Sub's push body announcing a change of [`OWNER`]'s mailbox.
fn push_body(message_id: &str) -> Value {
    let data = json!({ "emailAddress": OWNER, "historyId": 1 }).to_string();
    json!({
        "message": { "data": base64::engine::general_purpose::STANDARD.encode(data), "messageId": message_id },
        "subscription": "projects/syncbridge-local/subscriptions/sub-1",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_signed_by_the_gmail_fake_passes_the_oidc_check_and_syncs_the_new_message() -> Result<()> {
    let stack = stack(0, false).await?;
    let id = connect_gmail(&stack).await?;
    let before = messages(&stack, &id).await?;
    let gmail = stack.gmail.state();
    let mail =
        Mail { from: "Jane <jane@globex.example>".into(), subject: "Contract".into(), ..Mail::default() };
    gmail.deliver(&mail).map_err(|e| anyhow::anyhow!("{e:?}"))?;

    let sent = gmail.publish().await;
    assert_eq!(sent.iter().map(|d| d.status).collect::<Vec<_>>(), [Some(200)], "the signed push is accepted");
    assert_eq!(stack.runner.queue_depth().await?, 1, "one job for the mailbox's connection");
    let drained = stack.runner.drain(DRAIN).await?;
    // The coalesced webhook job is handed back once until its window passes (as in the other
    // webhook tests): one job done in the end.
    assert_eq!(drained.messages - drained.failures, 1, "{drained:?}");
    assert_eq!(messages(&stack, &id).await?, before + 1, "the incremental pull brought the new message");
    let runs = get(&stack, "acme", &format!("/v1/connections/{id}/runs")).await?;
    assert_eq!(runs["items"][0]["reason"], "webhook", "{runs}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_token_from_another_key_for_another_audience_or_expired_is_a_401_problem_that_enqueues_nothing()
-> Result<()> {
    let stack = stack(0, false).await?;
    connect_gmail(&stack).await?;
    let endpoint = format!("{}/webhooks/gmail", stack.gateway.base_url());
    let subscription = OidcToken { service_account_email: LOCAL_GMAIL_PUSH_ACCOUNT.into(), audience: None };
    let now = Utc::now().timestamp();
    let claims = subscription.claims(&endpoint, now);
    let with = |key: &str, value: Value| {
        let mut c = claims.clone();
        c[key] = value;
        c
    };
    let fake = stack.gmail.state();
    let signer = fake.push_signer();
    let stranger = PushSigner::generate();
    let expired = {
        let mut c = with("iat", json!(now - 7200));
        c["exp"] = json!(now - 3600);
        c
    };
    let cases = [
        ("no token", None),
        ("another key", Some(stranger.sign(&claims)?)),
        (
            "another audience",
            Some(signer.sign(&with("aud", json!("https://hooks.example.com/webhooks/gmail")))?),
        ),
        ("expired", Some(signer.sign(&expired)?)),
        ("another service account", Some(signer.sign(&with("email", json!("intruder@evil.example")))?)),
    ];
    let http = reqwest::Client::new();
    for (i, (what, token)) in cases.iter().enumerate() {
        let mut request = http.post(&endpoint).json(&push_body(&format!("forged-{i}")));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let reply = request.send().await?;
        let status = reply.status().as_u16();
        let content_type =
            reply.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let problem: Value = reply.json().await?;
        assert_eq!((status, problem["code"].as_str()), (401, Some("unauthorized")), "{what}: {problem}");
        assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{what}");
    }
    assert_eq!(stack.runner.queue_depth().await?, 0, "no refused push enqueued a job");

    // The same request with the subscription's own token is accepted: the refusals were the proof's.
    let genuine =
        http.post(&endpoint).json(&push_body("genuine")).bearer_auth(signer.sign(&claims)?).send().await?;
    assert_eq!(genuine.status(), 200);
    assert_eq!(stack.runner.queue_depth().await?, 1);
    Ok(())
}
