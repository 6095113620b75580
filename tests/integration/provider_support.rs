//! What the provider adapters' tests share: a connection of one test tenant to a fake.

use chrono::Utc;
use secrecy::SecretString;
use syncbridge::domain::{Connection, ConnectionSettings, Credentials, NewConnection, Provider, TenantId};

/// Tenant `t1`'s connection to `provider` at `base_url` with `token` (and `refresh`, if any):
/// a 15-minute interval, default settings.
pub fn connection_to(provider: Provider, base_url: String, token: &str, refresh: Option<&str>) -> Connection {
    Connection::new(
        TenantId::parse("t1").expect("tenant"),
        NewConnection {
            provider,
            base_url,
            credentials: Credentials {
                access_token: SecretString::from(token),
                refresh_token: refresh.map(SecretString::from),
                expires_at: None,
            },
            interval_minutes: 15,
            settings: ConnectionSettings::default(),
        },
        Utc::now(),
    )
}
