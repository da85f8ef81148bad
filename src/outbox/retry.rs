//! Backoff for transient failures.

use std::time::Duration;

use crate::config::RetryPolicy;

/// Jitter applied to each backoff: the delay is multiplied by a random factor in
/// `[1 - JITTER, 1 + JITTER]`, so that deliveries that failed together do not retry together.
const JITTER: f64 = 0.2;

/// The delay before attempt `attempt + 1`, after attempt `attempt` failed transiently:
/// `initial_backoff * 2^(attempt-1)`, capped at `max_backoff`, with jitter. A `Retry-After`
/// from the provider is honoured when it asks for longer, up to `max_backoff`.
pub fn backoff(
    policy: &RetryPolicy,
    attempt: u32,
    retry_after: Option<Duration>,
    random: f64,
) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let base = policy
        .initial_backoff
        .saturating_mul(1u32 << exponent)
        .min(policy.max_backoff);
    let factor = 1.0 - JITTER + 2.0 * JITTER * random.clamp(0.0, 1.0);
    let jittered = base.mul_f64(factor).min(policy.max_backoff);
    match retry_after {
        Some(asked) if asked > jittered => asked.min(policy.max_backoff),
        _ => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(600),
            max_age: Duration::from_secs(86_400),
        }
    }

    #[test]
    fn doubles_without_jitter_at_midpoint() {
        assert_eq!(backoff(&policy(), 1, None, 0.5), Duration::from_secs(30));
        assert_eq!(backoff(&policy(), 2, None, 0.5), Duration::from_secs(60));
        assert_eq!(backoff(&policy(), 3, None, 0.5), Duration::from_secs(120));
    }

    #[test]
    fn capped_at_max_backoff() {
        assert_eq!(backoff(&policy(), 9, None, 1.0), Duration::from_secs(600));
        assert_eq!(backoff(&policy(), 40, None, 0.5), Duration::from_secs(600));
    }

    #[test]
    fn jitter_bounds() {
        assert_eq!(backoff(&policy(), 1, None, 0.0), Duration::from_secs(24));
        assert_eq!(backoff(&policy(), 1, None, 1.0), Duration::from_secs(36));
    }

    #[test]
    fn retry_after_honoured_when_longer() {
        assert_eq!(
            backoff(&policy(), 1, Some(Duration::from_secs(90)), 0.5),
            Duration::from_secs(90)
        );
        assert_eq!(
            backoff(&policy(), 1, Some(Duration::from_secs(5)), 0.5),
            Duration::from_secs(30)
        );
        assert_eq!(
            backoff(&policy(), 1, Some(Duration::from_secs(9_999)), 0.5),
            Duration::from_secs(600)
        );
    }
}
