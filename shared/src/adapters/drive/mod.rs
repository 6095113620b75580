//! Google Drive v3 adapter (pull only): the metadata of the files and folders in the user's
//! Drive, with owners and permissions, as `files` records; a full listing, then the change feed
//! (`changes.list` page tokens); deletes from `removed` and trashed files; push channels on the
//! change feed (`changes.watch`, `channels.stop`) kept like Calendar's; token refresh on the
//! same Google OAuth app as Calendar. See [`pull`] for the cursor.
//!
//! - **Scope.** `drive.metadata.readonly` is all it needs: it lists metadata and permissions and
//!   writes nothing (`ProviderClient::write` keeps its default refusal).
//! - **Errors.** Drive's error bodies are Google's, so the Calendar dialect classifies them
//!   (403/429 `userRateLimitExceeded` / `rateLimitExceeded` are rate limits, waited out in place
//!   with backoff); only the metrics label differs.
//! - **Channels.** `ensure_channel` opens a `changes.watch` channel from the current start page
//!   token asking for 7 days (Drive's cap for the change feed), and renews it once less than a day
//!   is left: the new channel first, then `channels.stop` on the old one, with the same channel
//!   token, so a notification in flight from the old one still verifies.

mod files;
mod pull;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::google::{
    Backoff, GoogleAppClient, GoogleAppFactory, GoogleDialect, api_root_at, check_urls, random_channel_id,
    refresh_at_google,
};
use super::provider_http::{Call, Dialect, ProviderHttp, Reply};
use crate::config::OAuthApp;
use crate::domain::{Connection, Credentials, ObjectType, Provider, PushChannel, SyncCursor};
use crate::ports::{ErrorClass, ProviderClient, ProviderError, PulledPage, RequestStats};
pub use files::FILE_FIELDS;

/// Drive's API root (a connection's `base_url`; configurable: `DRIVE_API_BASE_URL`).
pub const DEFAULT_API_ROOT: &str = "https://www.googleapis.com/drive/v3";
/// What a Drive connection asks for at authorization: file metadata and permissions, read only.
pub const DEFAULT_SCOPES: &str = "https://www.googleapis.com/auth/drive.metadata.readonly";
/// The channel lifetime `ensure_channel` asks for: Drive's longest for the change feed
/// (<https://developers.google.com/workspace/drive/api/guides/push#optional-properties>).
pub const CHANNEL_TTL: chrono::Duration = chrono::Duration::days(7);

/// Google's dialect under Drive's metrics label.
#[derive(Debug, Clone, Copy, Default)]
pub struct DriveDialect;

impl Dialect for DriveDialect {
    fn name(&self) -> &'static str {
        "Google Drive"
    }

    fn metric_label(&self) -> &'static str {
        Provider::GoogleDrive.as_str()
    }

    fn error_detail(&self, reply: &Reply) -> (Option<String>, Option<String>) {
        GoogleDialect.error_detail(reply)
    }

    fn classify(&self, status: StatusCode, code: Option<&str>) -> Option<ErrorClass> {
        GoogleDialect.classify(status, code)
    }

    fn rate_limit_wait(&self, reply: &Reply) -> Option<std::time::Duration> {
        GoogleDialect.rate_limit_wait(reply)
    }
}

/// Builds [`DriveClient`]s.
pub type DriveFactory = GoogleAppFactory<DriveClient>;

/// One user's Drive seen through its API.
pub struct DriveClient {
    http: reqwest::Client,
    net: ProviderHttp<DriveDialect>,
    base: String,
    token_url: String,
    app: Option<OAuthApp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelReply {
    id: String,
    resource_id: String,
    expiration: Option<String>,
}

/// The API root of a base URL: an origin alone gets Drive's `/drive/v3`.
fn api_root(base_url: &str) -> String {
    api_root_at(base_url, "drive/v3")
}

impl GoogleAppClient for DriveClient {
    const PROVIDER: Provider = Provider::GoogleDrive;

    fn new(
        http: reqwest::Client,
        connection: &Connection,
        app: Option<OAuthApp>,
        token_url: &str,
        backoff: Backoff,
    ) -> Result<Self, ProviderError> {
        check_urls("Drive", &connection.base_url, token_url)?;
        Ok(Self {
            net: ProviderHttp::new(http.clone(), DriveDialect, backoff.policy()),
            http,
            base: api_root(&connection.base_url),
            token_url: token_url.to_owned(),
            app,
        })
    }
}

impl DriveClient {
    async fn send(
        &self,
        call: Call,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply, ProviderError> {
        self.net.send(call, make).await
    }

    /// Opens a channel on the change feed from the current start page token.
    async fn watch(
        &self,
        token: &SecretString,
        address: &str,
        secret: &SecretString,
    ) -> Result<PushChannel, ProviderError> {
        let start = self.start_page_token(token).await?;
        let body = json!({
            "id": random_channel_id(),
            "type": "web_hook",
            "address": address,
            "token": secret.expose_secret(),
            "expiration": (Utc::now() + CHANNEL_TTL).timestamp_millis().to_string(),
        });
        let url = format!("{}/changes/watch", self.base);
        let reply = self
            .send(Call::write("changes.watch"), || {
                self.http
                    .post(&url)
                    .bearer_auth(token.expose_secret())
                    .query(&[("pageToken", &start)])
                    .json(&body)
            })
            .await?;
        let channel: ChannelReply = reply.check()?.json()?;
        let expires_at = channel
            .expiration
            .and_then(|e| e.parse::<i64>().ok())
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| ProviderError::permanent("Drive's channel has no usable expiration"))?;
        Ok(PushChannel {
            id: channel.id,
            resource_id: Some(channel.resource_id),
            secret: secret.clone(),
            expires_at,
        })
    }
}

#[async_trait]
impl ProviderClient for DriveClient {
    /// Files only; see [`pull`].
    async fn pull_page(
        &self,
        token: &SecretString,
        object: ObjectType,
        cursor: Option<&SyncCursor>,
    ) -> Result<PulledPage, ProviderError> {
        if object != ObjectType::Files {
            return Err(ProviderError::permanent(format!("the Drive adapter does not sync {object}")));
        }
        self.pull_files(token, cursor).await
    }

    async fn ensure_channel(
        &self,
        token: &SecretString,
        address: &str,
        existing: Option<&PushChannel>,
        now: DateTime<Utc>,
    ) -> Result<Option<PushChannel>, ProviderError> {
        if let Some(current) = existing.filter(|c| !c.due_for_renewal(now)) {
            return Ok(Some(current.clone()));
        }
        let secret = existing.map(|c| c.secret.clone()).unwrap_or_else(PushChannel::new_secret);
        let fresh = self.watch(token, address, &secret).await?;
        if let Some(old) = existing
            && let Err(e) = self.stop_channel(token, old).await
        {
            // It expires by itself; its notifications still carry the valid token.
            tracing::warn!(error = %e, channel = %old.id, "could not stop the old Drive channel");
        }
        Ok(Some(fresh))
    }

    /// `channels.stop`; a channel Drive no longer knows counts as stopped.
    async fn stop_channel(&self, token: &SecretString, channel: &PushChannel) -> Result<(), ProviderError> {
        let Some(resource_id) = channel.resource_id.as_deref() else {
            return Err(ProviderError::permanent(
                "a Drive channel without its resource id cannot be stopped",
            ));
        };
        let url = format!("{}/channels/stop", self.base);
        let body = json!({ "id": channel.id, "resourceId": resource_id });
        let reply = self
            .send(Call::idempotent_write("channels.stop"), || {
                self.http.post(&url).bearer_auth(token.expose_secret()).json(&body)
            })
            .await?;
        match reply.status {
            StatusCode::NOT_FOUND => Ok(()),
            _ => reply.check().map(|_| ()),
        }
    }

    async fn refresh(&self, refresh_token: &SecretString) -> Result<Credentials, ProviderError> {
        refresh_at_google(&self.net, &self.token_url, self.app.as_ref(), refresh_token).await
    }

    fn stats(&self) -> RequestStats {
        self.net.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_alone_gets_drives_api_path_and_a_full_root_is_kept() {
        assert_eq!(api_root("https://www.googleapis.com"), DEFAULT_API_ROOT);
        assert_eq!(api_root("https://www.googleapis.com/drive/v3/"), DEFAULT_API_ROOT);
        assert_eq!(api_root("http://127.0.0.1:5/drive/v3"), "http://127.0.0.1:5/drive/v3");
    }

    #[test]
    fn drive_rate_limits_are_classified_as_googles_under_drives_label() {
        let d = DriveDialect;
        assert_eq!(
            d.classify(StatusCode::FORBIDDEN, Some("userRateLimitExceeded")),
            Some(ErrorClass::RateLimited)
        );
        assert_eq!(d.classify(StatusCode::FORBIDDEN, Some("insufficientPermissions")), None);
        assert_eq!(d.metric_label(), "google_drive");
    }
}
