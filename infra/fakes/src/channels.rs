//! Google's push channels, shared by the Calendar fake (`events.watch`) and the Drive fake
//! (`changes.watch`): the watch request's rules, the registry with `channels.stop`, and the
//! notifications (an empty POST with the `X-Goog-*` headers).
//! <https://developers.google.com/calendar/api/guides/push>,
//! <https://developers.google.com/workspace/drive/api/guides/push>

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A push channel registered by a watch request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub id: String,
    pub resource_id: String,
    /// What the channel watches (`X-Goog-Resource-URI`).
    pub resource_uri: String,
    pub address: String,
    pub token: Option<String>,
    /// Epoch milliseconds.
    pub expiration: i64,
    pub stopped: bool,
    /// Messages sent so far (the next `X-Goog-Message-Number` is this + 1).
    pub messages: u64,
}

/// One notification the fake sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub channel_id: String,
    pub state: String,
    pub message_number: u64,
    /// The receiver's HTTP status, or `None` if it could not be reached.
    pub status: Option<u16>,
}

/// A watch request refused as Google refuses it: a 400 with this `reason` and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchRefusal {
    pub reason: &'static str,
    pub message: String,
}

/// A watch request's channel, before the fake names what it watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub id: String,
    pub address: String,
    pub token: Option<String>,
    /// Epoch milliseconds: the requested one (in the future) capped at `max_ttl`, or `default_ttl`
    /// from now.
    pub expiration: i64,
}

impl Watch {
    /// Checks a watch body: `id`, `type` (`web_hook`) and `address` required; the address HTTPS
    /// (<https://developers.google.com/calendar/api/guides/push#making-watch-requests>; plain
    /// `http` only to loopback: the local stack and tests receive there, and Google could not
    /// reach such an address anyway); `expiration` optional, capped by the API's maximum
    /// (<https://developers.google.com/workspace/drive/api/guides/push#optional-properties>).
    pub fn parse(body: &Value, default_ttl: Duration, max_ttl: Duration) -> Result<Self, WatchRefusal> {
        let text = |name: &str| body.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
        let refuse = |reason, message: String| Err(WatchRefusal { reason, message });
        let (Some(id), Some(kind), Some(address)) = (text("id"), text("type"), text("address")) else {
            return refuse("required", "Required: id, type and address.".into());
        };
        if !matches!(kind, "web_hook" | "webhook") {
            return refuse("invalid", format!("Invalid value for type: {kind}"));
        }
        if !(address.starts_with("https://") || is_loopback_http(address)) {
            return refuse("push.webhookUrlNotHttps", "WebHook callback must be HTTPS".into());
        }
        let now = Utc::now().timestamp_millis();
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let requested = match body.get("expiration") {
            Some(Value::String(s)) => s.parse::<i64>().ok(),
            Some(Value::Number(n)) => n.as_i64(),
            _ => None,
        };
        let expiration =
            requested.filter(|e| *e > now).map_or(now + ms(default_ttl), |e| e.min(now + ms(max_ttl)));
        Ok(Self {
            id: id.to_owned(),
            address: address.to_owned(),
            token: text("token").map(str::to_owned),
            expiration,
        })
    }

    /// The channel watching `resource_uri` as `resource_id`.
    pub fn channel(self, resource_id: String, resource_uri: String) -> Channel {
        Channel {
            id: self.id,
            resource_id,
            resource_uri,
            address: self.address,
            token: self.token,
            expiration: self.expiration,
            stopped: false,
            messages: 0,
        }
    }
}

fn is_loopback_http(address: &str) -> bool {
    url::Url::parse(address).is_ok_and(|u| {
        u.scheme() == "http"
            && match u.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            }
    })
}

impl Channel {
    /// The watch answer (`api#channel`).
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "kind": "api#channel",
            "id": self.id,
            "resourceId": self.resource_id,
            "resourceUri": self.resource_uri,
            "expiration": self.expiration.to_string(),
        });
        if let Some(t) = &self.token {
            out["token"] = json!(t);
        }
        out
    }
}

/// The channels of one fake account, stopped ones included, in creation order.
#[derive(Debug, Default)]
pub struct Channels {
    list: Mutex<Vec<Channel>>,
}

impl Channels {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Channel>> {
        self.list.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every channel registered, stopped ones included, in creation order.
    pub fn all(&self) -> Vec<Channel> {
        self.lock().clone()
    }

    /// Active (not stopped, not expired) channels.
    pub fn active(&self) -> Vec<Channel> {
        let now = Utc::now().timestamp_millis();
        self.lock().iter().filter(|c| !c.stopped && c.expiration > now).cloned().collect()
    }

    /// Registers a channel; `Err` (Google's `channelIdNotUnique`) if its id is in use by an
    /// active channel (a channel id is unique per channel,
    /// <https://developers.google.com/calendar/api/guides/push#required-properties>).
    pub fn add(&self, channel: Channel) -> Result<Channel, WatchRefusal> {
        let mut list = self.lock();
        if list.iter().any(|c| c.id == channel.id && !c.stopped) {
            return Err(WatchRefusal {
                reason: "channelIdNotUnique",
                message: format!("Channel id {} not unique", channel.id),
            });
        }
        list.push(channel.clone());
        Ok(channel)
    }

    /// Stops the channel with this id and resource id; `false` if there is none active.
    pub fn stop(&self, id: &str, resource_id: &str) -> bool {
        let mut list = self.lock();
        match list.iter_mut().find(|c| c.id == id && c.resource_id == resource_id && !c.stopped) {
            Some(c) => {
                c.stopped = true;
                true
            }
            None => false,
        }
    }

    /// Sends `X-Goog-Resource-State: state` to every active channel (or only `channel_id`), as
    /// Google does: an empty POST with the `X-Goog-*` headers. Returns what each receiver
    /// answered.
    pub async fn notify(
        &self,
        http: &reqwest::Client,
        state: &str,
        channel_id: Option<&str>,
    ) -> Vec<Delivery> {
        let now = Utc::now().timestamp_millis();
        let targets: Vec<(Channel, u64)> = self
            .lock()
            .iter_mut()
            .filter(|c| !c.stopped && c.expiration > now && channel_id.is_none_or(|id| c.id == id))
            .map(|c| {
                c.messages += 1;
                (c.clone(), c.messages)
            })
            .collect();
        let mut out = Vec::new();
        for (c, number) in targets {
            let expiration = DateTime::from_timestamp_millis(c.expiration)
                .map(|t| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
                .unwrap_or_default();
            let mut req = http
                .post(&c.address)
                .header("X-Goog-Channel-ID", &c.id)
                .header("X-Goog-Channel-Expiration", expiration)
                .header("X-Goog-Resource-State", state)
                .header("X-Goog-Resource-ID", &c.resource_id)
                .header("X-Goog-Resource-URI", &c.resource_uri)
                .header("X-Goog-Message-Number", number.to_string());
            if let Some(t) = &c.token {
                req = req.header("X-Goog-Channel-Token", t);
            }
            let status = req.send().await.ok().map(|r| r.status().as_u16());
            out.push(Delivery { channel_id: c.id, state: state.to_owned(), message_number: number, status });
        }
        out
    }
}

/// The body of the fakes' `POST /_admin/channels/notify`.
#[derive(Debug, Deserialize, Default)]
pub struct NotifyBody {
    pub state: Option<String>,
    pub channel_id: Option<String>,
}

impl NotifyBody {
    /// An empty body is all defaults.
    pub fn parse(body: &[u8]) -> Result<Self, serde_json::Error> {
        if body.is_empty() { Ok(Self::default()) } else { serde_json::from_slice(body) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

    #[test]
    fn a_watch_needs_an_id_a_web_hook_type_and_an_https_or_loopback_address() {
        let ok = json!({ "id": "c1", "type": "web_hook", "address": "https://x.example/h", "token": "t" });
        let w = Watch::parse(&ok, HOUR, WEEK).expect("valid");
        assert_eq!((w.id.as_str(), w.token.as_deref()), ("c1", Some("t")));
        let local = json!({ "id": "c1", "type": "web_hook", "address": "http://127.0.0.1:9/h" });
        assert!(Watch::parse(&local, HOUR, WEEK).is_ok());
        for (body, reason) in [
            (json!({ "type": "web_hook", "address": "https://x.example" }), "required"),
            (json!({ "id": "c", "type": "email", "address": "https://x.example" }), "invalid"),
            (
                json!({ "id": "c", "type": "web_hook", "address": "http://x.example" }),
                "push.webhookUrlNotHttps",
            ),
        ] {
            assert_eq!(Watch::parse(&body, HOUR, WEEK).unwrap_err().reason, reason, "{body}");
        }
    }

    #[test]
    fn an_expiration_defaults_to_the_default_ttl_and_is_capped_at_the_maximum() {
        let now = Utc::now().timestamp_millis();
        let body = |e: Value| json!({ "id": "c", "type": "web_hook", "address": "https://x.example", "expiration": e });
        let default = Watch::parse(&body(Value::Null), HOUR, WEEK).unwrap().expiration;
        assert!((now + 3_590_000..=now + 3_610_000).contains(&default), "{default}");
        let far = Watch::parse(&body(json!((now + 30 * 86_400_000).to_string())), HOUR, WEEK).unwrap();
        assert!(far.expiration <= Utc::now().timestamp_millis() + 7 * 86_400_000);
        let soon = Watch::parse(&body(json!(now + 60_000)), HOUR, WEEK).unwrap();
        assert_eq!(soon.expiration, now + 60_000);
    }

    #[test]
    fn a_channel_id_is_unique_among_active_channels_and_stops_once() {
        let channels = Channels::default();
        let watch = || {
            Watch::parse(
                &json!({ "id": "c", "type": "web_hook", "address": "https://x.example" }),
                HOUR,
                WEEK,
            )
            .unwrap()
        };
        channels.add(watch().channel("r".into(), "u".into())).expect("added");
        assert_eq!(
            channels.add(watch().channel("r2".into(), "u".into())).unwrap_err().reason,
            "channelIdNotUnique"
        );
        assert!(!channels.stop("c", "other"), "the resource id must match");
        assert!(channels.stop("c", "r"));
        assert!(!channels.stop("c", "r"), "stopped already");
        assert!(channels.active().is_empty());
        channels.add(watch().channel("r3".into(), "u".into())).expect("the id is free again");
        assert_eq!(channels.all().len(), 2);
    }
}
