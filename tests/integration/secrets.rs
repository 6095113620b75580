//! The Lambda path of secrets against moto's Secrets Manager: each function reads at init the
//! OAuth client secrets and the local token key it uses, and nothing else.

use anyhow::{Context, Result};
use secrecy::ExposeSecret;
use syncbridge::adapters::crypto::TokenCipher;
use syncbridge::adapters::secrets::{self, Needs, SecretSources, SecretsError};
use syncbridge::config::{Config, OAuthApp, OAuthEndpoints, Resources};
use syncbridge::domain::Provider;
use syncbridge::wiring::Function;

use crate::aws_support::{Moto, unique};

/// Config as the environment of a Lambda gives it: client ids but no secret.
fn lambda_config() -> Config {
    Config {
        resources: Resources {
            table_name: "t".into(),
            audit_table_name: "a".into(),
            jobs_queue_url: "http://127.0.0.1:1/q".into(),
            event_bus_name: "b".into(),
        },
        due_shards: 4,
        token_key: None,
        token_kms_key_id: Some("alias/tokens".into()),
        oauth: OAuthEndpoints::default(),
        hubspot_app: None,
        microsoft_app: None,
        microsoft_login_base_url: "http://127.0.0.1:1".into(),
        microsoft_tenant: "common".into(),
        salesforce_app: None,
        google_app: None,
        google_token_url: "http://127.0.0.1:1/token".into(),
        drive_token_url: "http://127.0.0.1:1/token".into(),
        notion_app: None,
        tenant_claim: "tenant_id".into(),
        webhook_base_url: None,
        hubspot_app_id: None,
        webhook_coalesce_secs: 10,
        fireflies_api_base_url: None,
        fireflies_webhook_secret: None,
    }
}

fn app(app: &Option<OAuthApp>) -> Option<(String, String)> {
    app.as_ref().map(|a| (a.client_id.clone(), a.client_secret.expose_secret().to_owned()))
}

fn pair(id: &str, secret: &str) -> Option<(String, String)> {
    Some((id.to_owned(), secret.to_owned()))
}

#[tokio::test]
async fn each_function_reads_only_its_secrets_and_a_provider_without_one_keeps_its_app_off() -> Result<()> {
    let moto = Moto::start().await?;
    let sm = aws_sdk_secretsmanager::Client::new(&moto.config().await);
    let prefix = unique("syncbridge/oauth-");
    for (provider, secret) in [
        ("hubspot", "hs-secret"),
        ("google", "g-secret"),
        ("microsoft", "ms-secret"),
        ("fireflies-webhook", "ff-webhook-secret"),
    ] {
        sm.create_secret().name(format!("{prefix}/{provider}")).secret_string(secret).send().await?;
    }
    let key = TokenCipher::generate_key();
    let key_arn = sm
        .create_secret()
        .name(unique("token-key-"))
        .secret_string(key.clone())
        .send()
        .await?
        .arn
        .context("CreateSecret returned an ARN")?;
    // Microsoft has a secret but no client id; Salesforce a client id but no secret.
    let sources = SecretSources {
        oauth_prefix: Some(prefix.clone()),
        token_key_secret: Some(key_arn),
        client_ids: vec![
            (Provider::Hubspot, "hs-id".into()),
            (Provider::Salesforce, "sf-id".into()),
            (Provider::Google, "g-id".into()),
        ],
    };

    // The api and the worker: every provider's app, and the token key.
    for function in [Function::Api, Function::Worker] {
        let mut config = lambda_config();
        secrets::resolve(&mut config, &sources, function.secrets(), &sm).await?;
        assert_eq!(app(&config.hubspot_app), pair("hs-id", "hs-secret"), "{function:?}");
        assert_eq!(app(&config.google_app), pair("g-id", "g-secret"), "{function:?}");
        assert_eq!(app(&config.salesforce_app), None, "no secret: the app stays off");
        assert_eq!(app(&config.microsoft_app), None, "no client id: the app stays off");
        assert_eq!(config.token_key.as_ref().map(|k| k.expose_secret().to_owned()), Some(key.clone()));
        assert!(config.fireflies_webhook_secret.is_none(), "only the webhooks read Fireflies' secret");
        // The key read is a usable token key.
        TokenCipher::from_base64_key(config.token_key.as_ref().context("a key")?)?;
    }

    // The webhooks: HubSpot's and Fireflies' signing secrets and the token key, nothing else.
    let mut config = lambda_config();
    secrets::resolve(&mut config, &sources, Function::Webhooks.secrets(), &sm).await?;
    assert_eq!(app(&config.hubspot_app), pair("hs-id", "hs-secret"));
    assert_eq!(
        config.fireflies_webhook_secret.as_ref().map(|s| s.expose_secret().to_owned()).as_deref(),
        Some("ff-webhook-secret")
    );
    assert_eq!(app(&config.google_app), None);
    assert!(config.token_key.is_some());

    // The dispatcher: nothing.
    assert_eq!(Function::Dispatcher.secrets(), Needs::NOTHING);
    let mut config = lambda_config();
    secrets::resolve(&mut config, &sources, Function::Dispatcher.secrets(), &sm).await?;
    assert!(config.hubspot_app.is_none() && config.google_app.is_none() && config.token_key.is_none());
    Ok(())
}

#[tokio::test]
async fn a_token_key_secret_that_is_missing_or_not_text_fails_init_instead_of_running_without_it()
-> Result<()> {
    let moto = Moto::start().await?;
    let sm = aws_sdk_secretsmanager::Client::new(&moto.config().await);
    let binary = sm
        .create_secret()
        .name(unique("binary-"))
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(vec![1u8, 2, 3]))
        .send()
        .await?
        .arn
        .context("an ARN")?;
    let needs = Needs { token_key: true, oauth_apps: &[], fireflies_webhook: false };
    let mut config = lambda_config();
    let sources = SecretSources { token_key_secret: Some(binary), ..SecretSources::default() };
    let err = secrets::resolve(&mut config, &sources, needs, &sm).await.expect_err("a binary secret");
    assert!(matches!(err, SecretsError::NotText(_)), "{err}");
    let sources = SecretSources { token_key_secret: Some(unique("absent-")), ..SecretSources::default() };
    let err = secrets::resolve(&mut config, &sources, needs, &sm).await.expect_err("an absent secret");
    assert!(matches!(err, SecretsError::Missing(_)), "{err}");
    assert!(config.token_key.is_none());
    Ok(())
}

/// template.yaml and `Function::secrets` agree: a function gets the secret locations and
/// `secretsmanager:GetSecretValue` exactly when it reads secrets (the webhooks only HubSpot's
/// client secret), and no environment, global or per function, holds a secret.
#[test]
fn the_template_grants_secret_reads_to_exactly_the_functions_that_read_secrets() -> Result<()> {
    let text = std::fs::read_to_string(syncbridge_local::stack::template_path()?)?;
    let template = syncbridge_local::stack::Template::parse(&text)?;
    let globals = &template.globals["Function"]["Environment"]["Variables"];
    for (logical_id, function) in [
        ("DispatcherFunction", Function::Dispatcher),
        ("WorkerFunction", Function::Worker),
        ("ApiFunction", Function::Api),
        ("WebhooksFunction", Function::Webhooks),
    ] {
        let props = &template.resources.get(logical_id).context(logical_id)?.properties;
        let own = &props["Environment"]["Variables"];
        for vars in [globals, own] {
            for (name, value) in vars.as_object().into_iter().flatten() {
                assert!(
                    !name.ends_with("_SECRET") && name != "TOKEN_KEY",
                    "{logical_id}: {name} in the environment"
                );
                assert!(
                    !value.to_string().contains("resolve:secretsmanager"),
                    "{logical_id}: {name} resolves a secret"
                );
            }
        }
        let needs = function.secrets();
        assert_eq!(own.get("OAUTH_SECRETS_PREFIX").is_some(), !needs.oauth_apps.is_empty(), "{logical_id}");
        assert_eq!(own.get("TOKEN_KEY_SECRET_ARN").is_some(), needs.token_key, "{logical_id}");
        let reads: Vec<String> = props["Policies"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| p["Statement"].as_array().cloned().unwrap_or_default())
            .filter(|s| s["Action"].to_string().contains("secretsmanager:"))
            .map(|s| s["Resource"].to_string())
            .collect();
        assert_eq!(reads.is_empty(), needs == Needs::NOTHING, "{logical_id}: {reads:?}");
        let client_secrets: Vec<&String> =
            reads.iter().filter(|r| r.contains("OAuthSecretsPrefix")).collect();
        if needs.oauth_apps == [Provider::Hubspot] {
            assert!(
                client_secrets.iter().all(|r| r.contains("/hubspot-") || r.contains("/fireflies-webhook-")),
                "{logical_id}: {client_secrets:?}"
            );
        }
        assert_eq!(client_secrets.is_empty(), needs.oauth_apps.is_empty(), "{logical_id}");
    }
    Ok(())
}
