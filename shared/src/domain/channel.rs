//! Push channels: a provider's promise to call our webhook when a connection's data changes
//! (Google `events.watch` channels, Microsoft Graph subscriptions). The worker keeps one per calendar
//! connection and renews it before it expires; the webhook finds the connection from its id.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;

/// A channel is renewed once it expires within this margin (Google channels last 7 days, Graph
/// event subscriptions at most 4230 minutes, so a sync every few hours renews well in time).
pub const CHANNEL_RENEWAL_MARGIN_HOURS: i64 = 24;

/// One live push channel or subscription of a connection.
#[derive(Debug, Clone)]
pub struct PushChannel {
    /// Google's channel id (chosen by us) or Graph's subscription id.
    pub id: String,
    /// Google's id of the watched resource (needed to stop the channel); Graph has none.
    pub resource_id: Option<String>,
    /// Google's channel token (`X-Goog-Channel-Token`) or Graph's `clientState`: a notification that
    /// does not carry it is forged. Never logged, audited or stored in plain text.
    pub secret: SecretString,
    pub expires_at: DateTime<Utc>,
}

impl PushChannel {
    /// A fresh channel secret: 32 random bytes, base64url without padding (43 characters, within
    /// Google's 256-character token and Graph's 128-character `clientState`).
    pub fn new_secret() -> SecretString {
        SecretString::from(URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()))
    }

    /// The renewal margin as a duration.
    pub fn renewal_margin() -> Duration {
        Duration::hours(CHANNEL_RENEWAL_MARGIN_HOURS)
    }

    /// True when the channel expires within the renewal margin of `now` (or already has).
    pub fn due_for_renewal(&self, now: DateTime<Utc>) -> bool {
        self.expires_at - Self::renewal_margin() <= now
    }

    /// Same channel, same expiry (the secret is not compared: it never changes without the id).
    pub fn same_as(&self, other: &PushChannel) -> bool {
        self.id == other.id && self.resource_id == other.resource_id && self.expires_at == other.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn channel(expires_in: Duration, now: DateTime<Utc>) -> PushChannel {
        PushChannel {
            id: "c1".into(),
            resource_id: None,
            secret: SecretString::from("s3cret-value"),
            expires_at: now + expires_in,
        }
    }

    #[test]
    fn channels_are_due_for_renewal_only_within_a_day_of_expiry() {
        let now = Utc::now();
        assert!(!channel(Duration::days(7), now).due_for_renewal(now));
        assert!(!channel(Duration::hours(25), now).due_for_renewal(now));
        assert!(channel(Duration::hours(23), now).due_for_renewal(now));
        assert!(channel(Duration::hours(-1), now).due_for_renewal(now));
    }

    #[test]
    fn secrets_are_random_url_safe_and_never_shown_by_debug() {
        let (a, b) = (PushChannel::new_secret(), PushChannel::new_secret());
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), 43);
        assert!(a.expose_secret().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        let shown = format!("{:?}", channel(Duration::days(1), Utc::now()));
        assert!(!shown.contains("s3cret-value"), "{shown}");
    }
}
