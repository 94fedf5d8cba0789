//! Exponential backoff with full jitter, for reconnecting to the control plane.
//!
//! For: deciding how long to wait before the next connection attempt: a random delay between zero
//! and `base * 2^attempt` (capped), so many proxies that lost the same control plane do not all
//! come back at the same instant.
//! Not for: deciding *whether* to retry or where (see `stream`).

use std::time::Duration;

#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// The upper bound of the next delay, without advancing.
    pub(crate) fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A random delay in `[0, ceiling]`, then doubles the ceiling (up to the maximum).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(fastrand::u64(0..=millis))
    }

    /// Starts over from the base delay, after a connection that worked.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
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
        for _ in 0..1000 {
            b.next_delay();
        }
        assert_eq!(
            b.ceiling(),
            Duration::from_secs(5),
            "no overflow after many attempts"
        );
    }

    #[test]
    fn delays_are_jittered_within_the_ceiling() {
        let delays: Vec<_> = (0..200)
            .map(|_| Backoff::new(Duration::from_millis(1000), Duration::from_secs(5)).next_delay())
            .collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(1000)));
        assert!(
            delays.iter().any(|d| *d != delays[0]),
            "full jitter varies the delay"
        );
    }
}
