//! Capped exponential backoff with full jitter.
//!
//! [`Backoff`] computes delays: a random delay between zero and `base * 2^attempt`, capped, so
//! many clients that lost the same server do not all come back at the same instant.
//! [`Retry`] wraps it for a loop that retries one thing ("the service list from Consul at
//! ..."): it sleeps the delay and keeps the log readable, one warning when a streak of failures
//! starts (and every 20th attempt), one info line when it ends.

use std::time::Duration;

use tracing::{debug, info, warn};

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// The upper bound of the next delay, without advancing.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A random delay in `[0, ceiling]`, then doubles the ceiling (up to the maximum).
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(fastrand::u64(0..=millis))
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over from the base delay, after an attempt that worked.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Retrying one named thing, with backoff and readable logs.
#[derive(Debug)]
pub struct Retry {
    what: String,
    backoff: Backoff,
}

impl Retry {
    /// Retries of `what` (a phrase for the log: "waiting for {what}"), from 100 ms up to 10 s.
    pub fn new(what: String) -> Retry {
        Retry {
            what,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(10)),
        }
    }

    /// Logs the failure and sleeps before the next attempt.
    pub async fn failed(&mut self, error: &(dyn std::fmt::Display + Sync)) {
        let delay = self.backoff.next_delay();
        let attempt = self.backoff.attempts();
        if attempt == 1 || attempt.is_multiple_of(20) {
            warn!(attempt, retry_in = ?delay, "waiting for {}: {error}", self.what);
        } else {
            debug!(attempt, retry_in = ?delay, "waiting for {}: {error}", self.what);
        }
        tokio::time::sleep(delay).await;
    }

    /// Records a success: logs the end of a streak of failures, and starts over.
    pub fn succeeded(&mut self) {
        if self.backoff.attempts() > 0 {
            info!(
                after_attempts = self.backoff.attempts(),
                "got {} again", self.what
            );
            self.backoff.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            ceilings.push(b.ceiling().as_millis());
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(5));
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_retry_sleeps_and_starts_over_after_a_success() {
        let mut retry = Retry::new("the test".into());
        retry.failed(&"boom").await;
        retry.failed(&"boom").await;
        assert_eq!(retry.backoff.attempts(), 2);
        retry.succeeded();
        assert_eq!(retry.backoff.attempts(), 0);
    }
}
