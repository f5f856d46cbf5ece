//! Delivery rules for outbox messages: what to do with a claimed message, and when to retry.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::code::CodeState;
use crate::model::{ClaimedMessage, DeliveryOutcome};
use crate::random;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// How long a claimed message stays with its worker before others may take it.
    pub lease: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(15 * 60),
            lease: Duration::from_secs(60),
        }
    }
}

/// What a failed send was, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// 4xx replies, refused or dropped connections: the next try may work.
    Temporary,
    /// 5xx replies: the same message will fail again.
    Permanent,
}

impl RetryPolicy {
    /// Exponential backoff with full jitter in its upper half: `delay/2 + rand(delay/2)`.
    pub fn after_failure(
        &self,
        attempts: u32,
        kind: FailureKind,
        error: String,
        now: Timestamp,
    ) -> DeliveryOutcome {
        if kind == FailureKind::Permanent || attempts >= self.max_attempts {
            return DeliveryOutcome::Abandoned { error };
        }
        let exponent = attempts.saturating_sub(1).min(20);
        let delay = self
            .base_delay
            .saturating_mul(1 << exponent)
            .min(self.max_delay);
        let half = delay / 2;
        let jitter_millis = u64::from(u32::from_le_bytes(random::bytes::<4>()))
            % (u64::try_from(half.as_millis()).unwrap_or(u64::MAX).max(1));
        let at = now.plus(half + Duration::from_millis(jitter_millis));
        DeliveryOutcome::Retry { at, error }
    }
}

/// A message whose code is no longer the one to use is dropped, not sent.
pub fn should_send(message: &ClaimedMessage, now: Timestamp) -> bool {
    match message.code_state {
        None => true,
        Some(CodeState::Active) => message.code_expires_at.is_none_or(|expires| expires > now),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_bounded_and_attempts_run_out() {
        let policy = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(25),
            lease: Duration::from_secs(60),
        };
        let now = Timestamp::from_millis(0);
        let delay = |attempts| match policy.after_failure(
            attempts,
            FailureKind::Temporary,
            "x".into(),
            now,
        ) {
            DeliveryOutcome::Retry { at, .. } => now.until(at),
            other => panic!("expected a retry, got {other:?}"),
        };
        for _ in 0..50 {
            let first = delay(1);
            assert!(
                first >= Duration::from_secs(5) && first < Duration::from_secs(10),
                "{first:?}"
            );
            let second = delay(2);
            assert!(
                second >= Duration::from_secs(10) && second < Duration::from_secs(20),
                "{second:?}"
            );
            let capped = delay(3);
            assert!(
                capped >= Duration::from_millis(12_500) && capped < Duration::from_secs(25),
                "{capped:?}"
            );
        }
        assert!(matches!(
            policy.after_failure(4, FailureKind::Temporary, "x".into(), now),
            DeliveryOutcome::Abandoned { .. }
        ));
    }

    #[test]
    fn permanent_failures_are_abandoned_at_once() {
        let outcome = RetryPolicy::default().after_failure(
            1,
            FailureKind::Permanent,
            "550".into(),
            Timestamp::from_millis(0),
        );
        assert_eq!(
            outcome,
            DeliveryOutcome::Abandoned {
                error: "550".into()
            }
        );
    }
}
