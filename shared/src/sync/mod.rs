//! The sync engine: the dispatcher and worker handlers and the pull logic they share. Handlers are
//! plain `async fn`s over [`Deps`], so tests call them without a Lambda runtime.

pub mod dispatcher;
#[cfg(test)]
mod interleavings;
pub mod links;
pub mod merge;
#[cfg(test)]
mod partial_tests;
pub mod pull;
pub mod push;
pub mod tasks;
#[cfg(test)]
mod two_way_tests;
pub mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ports::{
    AuditLog, Clock, ConflictStore, ConnectionStore, EventBus, JobQueue, ProviderFactory, PushStore,
    RecordStore, RunStore,
};

/// Everything the handlers call, built once per Lambda instance.
#[derive(Clone)]
pub struct Deps {
    pub connections: Arc<dyn ConnectionStore>,
    pub records: Arc<dyn RecordStore>,
    pub runs: Arc<dyn RunStore>,
    pub audit: Arc<dyn AuditLog>,
    pub pushes: Arc<dyn PushStore>,
    pub conflicts: Arc<dyn ConflictStore>,
    pub queue: Arc<dyn JobQueue>,
    pub bus: Arc<dyn EventBus>,
    pub providers: Arc<dyn ProviderFactory>,
    pub clock: Arc<dyn Clock>,
    pub settings: EngineSettings,
    /// Pending OAuth authorizations (the API's connect flow; the engine does not use them).
    pub oauth_states: Arc<dyn crate::ports::OAuthStateStore>,
}

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Shards of the due-connections index (must match what the store writes).
    pub due_shards: u16,
    /// Time left before the Lambda deadline at which the worker checkpoints and hands on.
    pub deadline_margin: Duration,
    /// Refresh an OAuth token this long before it expires.
    pub refresh_margin: chrono::Duration,
    /// Receives after which a failing job marks its connection `error` (the queue's maxReceiveCount).
    pub max_receives: u32,
    /// First retry delay of a failed job; doubles with each receive, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Public base URL of the webhooks (`WEBHOOK_BASE_URL`): calendar connections get push
    /// channels notifying `{base}/webhooks/{provider}`. `None`: no channels, pull-only.
    pub webhook_base_url: Option<String>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            due_shards: crate::config::DEFAULT_DUE_SHARDS,
            deadline_margin: Duration::from_secs(20),
            refresh_margin: chrono::Duration::minutes(5),
            max_receives: 5,
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(600),
            webhook_base_url: None,
        }
    }
}

/// The delay before a failed job's next attempt: `base * 2^(receives-1)`, capped at `max`, with
/// "equal jitter" (half fixed, half random by `jitter` in `[0, 1)`) so failing connections do not
/// retry in lockstep.
pub fn retry_delay(base: Duration, max: Duration, receives: u32, jitter: f64) -> Duration {
    crate::retry::backoff_with(base, max, receives.saturating_sub(1), jitter)
}

/// When the current invocation must be done by.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    /// From the Lambda context's deadline (milliseconds since the Unix epoch). `cargo lambda
    /// watch`'s emulator sends the time allowed (600,000) rather than an instant; a value below
    /// 10^12 (an instant before September 2001) is taken as such a duration from now, where it
    /// would otherwise leave no time at all and every job would hand on at once.
    pub fn from_epoch_millis(deadline_ms: u64) -> Self {
        const NOT_AN_INSTANT_BELOW: u64 = 1_000_000_000_000;
        if deadline_ms < NOT_AN_INSTANT_BELOW {
            return Self::after(Duration::from_millis(deadline_ms));
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self(Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
    }

    pub fn after(duration: Duration) -> Self {
        Self(Instant::now() + duration)
    }

    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

#[cfg(test)]
mod deadline_tests {
    use super::*;

    #[test]
    fn a_lambda_deadline_is_an_instant_and_cargo_lambdas_duration_is_taken_as_one() {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let real = Deadline::from_epoch_millis(now_ms + 90_000).remaining();
        assert!(real > Duration::from_secs(85) && real <= Duration::from_secs(90), "{real:?}");
        let past = Deadline::from_epoch_millis(now_ms - 5_000).remaining();
        assert_eq!(past, Duration::ZERO);
        let emulated = Deadline::from_epoch_millis(600_000).remaining();
        assert!(emulated > Duration::from_secs(595) && emulated <= Duration::from_secs(600), "{emulated:?}");
    }
}
