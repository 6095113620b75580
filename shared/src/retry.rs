//! The one backoff policy of the crate: exponential from a base, capped, with "equal jitter" (half
//! the delay fixed, half random) so that many clients failing together do not retry in lockstep.
//! Provider requests retried in place, SQS/EventBridge/DynamoDB partial-failure loops and failed
//! jobs handed back to SQS all wait by it.

use std::time::Duration;

use rand::Rng;

/// The delay before retry `attempt` (0 for the first retry): `base * 2^attempt`, at most `cap`,
/// of which a random half.
pub fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    backoff_with(base, cap, attempt, rand::rng().random_range(0.0..1.0))
}

/// [`backoff`] with the random part given (`jitter` in `[0, 1)`), for deterministic tests.
pub fn backoff_with(base: Duration, cap: Duration, attempt: u32, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let half = exp / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_per_attempt_stay_under_the_cap_and_keep_half_fixed() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(backoff_with(base, cap, 0, 0.0), Duration::from_millis(50));
        assert_eq!(backoff_with(base, cap, 0, 1.0), Duration::from_millis(100));
        assert_eq!(backoff_with(base, cap, 2, 0.0), Duration::from_millis(200));
        assert_eq!(backoff_with(base, cap, 30, 1.0), cap, "capped, and no overflow");
        for attempt in 0..20 {
            let d = backoff(base, cap, attempt);
            assert!(d <= cap && d >= backoff_with(base, cap, attempt, 0.0), "{attempt}: {d:?}");
        }
    }
}
