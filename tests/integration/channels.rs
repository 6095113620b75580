//! Push channels against a real moto server: the channel registry that maps a channel id to its
//! connection, and a connection's channel kept through `save_state` with its secret encrypted.

use anyhow::Result;
use chrono::{Duration, TimeZone, Utc};
use secrecy::{ExposeSecret, SecretString};
use syncbridge::domain::{
    Connection, ConnectionSettings, Credentials, NewConnection, Provider, PushChannel, TenantId,
};
use syncbridge::ports::ConnectionStore;

use crate::aws_support::{Moto, dynamo_store};

fn now() -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_790_000_000, 0).unwrap()
}

fn channel(id: &str, secret: &str) -> PushChannel {
    PushChannel {
        id: id.to_owned(),
        resource_id: Some(format!("res-{id}")),
        secret: SecretString::from(secret),
        expires_at: now() + Duration::days(7),
    }
}

fn google_connection() -> Result<Connection> {
    Ok(Connection::new(
        TenantId::parse("acme")?,
        NewConnection {
            provider: Provider::Google,
            base_url: "http://127.0.0.1:9/calendar/v3".into(),
            credentials: Credentials {
                access_token: SecretString::from("access"),
                refresh_token: None,
                expires_at: None,
            },
            interval_minutes: 15,
            settings: ConnectionSettings::default(),
        },
        now(),
    ))
}

#[tokio::test]
async fn a_registered_channel_id_leads_to_its_connection_and_an_unknown_one_to_nothing() -> Result<()> {
    let moto = Moto::start().await?;
    let store = dynamo_store(&moto.config().await, 4).await?;
    let conn = google_connection()?;
    let first = channel("chan-1", "secret-1");
    store.put_channel(&first, &conn.tenant_id, &conn.connection_id, Provider::Google).await?;
    let expected = Some((conn.tenant_id.clone(), conn.connection_id.clone(), Provider::Google));
    assert_eq!(store.find_channel("chan-1").await?, expected);
    assert_eq!(store.find_channel("chan-unknown").await?, None);

    // A renewal that keeps the id (Graph) overwrites the entry; a new id gets its own entry and the
    // old one stays until its TTL.
    let mut extended = first.clone();
    extended.expires_at += Duration::days(2);
    store.put_channel(&extended, &conn.tenant_id, &conn.connection_id, Provider::Google).await?;
    store
        .put_channel(&channel("chan-2", "secret-1"), &conn.tenant_id, &conn.connection_id, Provider::Google)
        .await?;
    assert_eq!(store.find_channel("chan-1").await?, expected);
    assert_eq!(store.find_channel("chan-2").await?, expected);

    // The entry holds no secret and expires a day after its channel.
    let item = aws_sdk_dynamodb::Client::new(&moto.config().await)
        .get_item()
        .table_name(store.table_name())
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("CHAN#chan-1".into()))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("CHAN".into()))
        .send()
        .await?
        .item
        .expect("registry item");
    assert!(!format!("{item:?}").contains("secret-1"));
    assert_eq!(
        item["expires_at"],
        aws_sdk_dynamodb::types::AttributeValue::N(
            (extended.expires_at + Duration::days(1)).timestamp().to_string()
        )
    );
    Ok(())
}

#[tokio::test]
async fn a_connections_channel_is_saved_with_its_state_encrypted_and_removed_when_cleared() -> Result<()> {
    let moto = Moto::start().await?;
    let store = dynamo_store(&moto.config().await, 4).await?;
    let mut conn = google_connection()?;
    store.create(&conn).await?;
    conn.push_channel = Some(channel("chan-1", "channel-secret-plaintext"));
    conn.version = store.save_state(&conn).await?;

    let stored = store.get(&conn.tenant_id, &conn.connection_id).await?.expect("stored");
    let kept = stored.push_channel.expect("the channel is kept");
    assert_eq!((kept.id.as_str(), kept.resource_id.as_deref()), ("chan-1", Some("res-chan-1")));
    assert_eq!(kept.expires_at, now() + Duration::days(7));
    assert_eq!(kept.secret.expose_secret(), "channel-secret-plaintext");
    let raw = aws_sdk_dynamodb::Client::new(&moto.config().await)
        .get_item()
        .table_name(store.table_name())
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("T#acme".into()))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(format!("CONN#{}", conn.connection_id)))
        .send()
        .await?
        .item
        .expect("connection item");
    assert!(!format!("{raw:?}").contains("channel-secret-plaintext"), "the secret is encrypted at rest");

    conn.push_channel = None;
    store.save_state(&conn).await?;
    let cleared = store.get(&conn.tenant_id, &conn.connection_id).await?.expect("stored");
    assert!(cleared.push_channel.is_none());
    Ok(())
}
