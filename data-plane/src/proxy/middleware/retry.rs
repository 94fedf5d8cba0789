//! Traefik's `retry` middleware
//! (<https://doc.traefik.io/traefik/reference/routing-configuration/http/middlewares/retry/>):
//! a request that fails on the network is sent again, up to `attempts` tries in all, waiting
//! between tries as Traefik's exponential backoff does (`initialInterval`, growing by
//! 2^(1/(attempts-1)) each time, each wait randomized by ±50%).
//!
//! For: compiling the middleware into the retry policy the forward loop (`proxy::upstream`) uses
//! instead of the cluster's for the routes that have it. Its request half does nothing.
//! As in Traefik, a request that could not be sent at all (connection refused, unreachable,
//! connect timeout) is retried whatever its method, and the retries are not limited by the
//! cluster's retry budget; a request that failed after it was sent (a reset, a connection closed
//! before the response) is retried only when its method is idempotent. Unlike Traefik, a request
//! with a body is never retried (Berth streams bodies and keeps no copy).
//! Not for: Traefik's retries on response status codes (`status`), which the control plane refuses.

use std::time::Duration;

use berth_proto::v1::Retry as ProtoRetry;

use crate::health::{RetryPolicy, DEFAULT_BUDGET_PERCENT, MAX_ATTEMPTS};

#[derive(Debug)]
pub(crate) struct Retry {
    pub policy: RetryPolicy,
}

impl Retry {
    pub(crate) fn compile(proto: &ProtoRetry) -> Result<Self, String> {
        if proto.attempts == 0 {
            return Err("attempts must be at least 1".into());
        }
        if proto.attempts > MAX_ATTEMPTS {
            return Err(format!("attempts {} is over {MAX_ATTEMPTS}", proto.attempts));
        }
        Ok(Self {
            policy: RetryPolicy {
                attempts: proto.attempts,
                methods: None,
                budget_percent: DEFAULT_BUDGET_PERCENT,
                interval: Duration::from_millis(proto.initial_interval_ms),
                any_method_unsent: true,
            },
        })
    }
}

/// The wait before retry `n` (1 for the first) of `attempts` tries, from `initial`: Traefik's
/// exponential backoff, whose multiplier is 2^(1/(attempts-1)), times `jitter` (in 0.5..1.5,
/// Traefik's randomization).
pub(crate) fn backoff(initial: Duration, attempts: u32, n: u32, jitter: f64) -> Duration {
    if initial.is_zero() || attempts < 2 {
        return Duration::ZERO;
    }
    let multiplier = 2f64.powf(1.0 / f64::from(attempts - 1));
    let wait = initial.as_secs_f64() * multiplier.powi(n.saturating_sub(1) as i32) * jitter;
    Duration::from_secs_f64(wait.min(60.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_and_refuses() {
        let r = Retry::compile(&ProtoRetry {
            attempts: 4,
            initial_interval_ms: 100,
        })
        .expect("valid");
        assert_eq!(r.policy.attempts, 4);
        assert!(r.policy.any_method_unsent);
        assert!(Retry::compile(&ProtoRetry::default()).is_err());
        assert!(Retry::compile(&ProtoRetry {
            attempts: 11,
            initial_interval_ms: 0,
        })
        .is_err());
    }

    #[test]
    fn backoff_grows_as_traefiks() {
        let initial = Duration::from_millis(100);
        assert_eq!(backoff(Duration::ZERO, 3, 1, 1.0), Duration::ZERO);
        assert_eq!(backoff(initial, 3, 1, 1.0), initial);
        let second = backoff(initial, 3, 2, 1.0);
        assert!(
            (second.as_secs_f64() - 0.1 * 2f64.sqrt()).abs() < 1e-9,
            "{second:?}"
        );
        assert_eq!(backoff(initial, 3, 1, 0.5), Duration::from_millis(50));
    }
}
