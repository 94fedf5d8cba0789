//! Passive health (outlier detection) and the retry budget: what the proxy learns about a
//! cluster's endpoints from the requests it forwards, kept in atomics.
//!
//! For: per-endpoint state ([`EndpointHealth`]: consecutive failures, when an ejection ends, how
//! many ejections in a row, requests in flight for least-request balancing) and per-cluster retry
//! accounting ([`RetryBudget`]), with the policies that read them ([`HealthPolicy`],
//! [`RetryPolicy`]) compiled from a snapshot's `Cluster` with Berth's defaults.
//!
//! An endpoint that refuses a connection (or cannot be connected to at all) is ejected at once;
//! one that fails `consecutive_failures` requests in a row (resets, timeouts, 502/503/504) is
//! ejected too. An ejection lasts `base`, doubling with each ejection in a row, up to `max`; then
//! the endpoint is readmitted and a success forgives its past. At most `max_ejected_percent` of a
//! cluster's endpoints are ejected at once, and when every candidate is ejected the balancer
//! still tries them (see `table::cluster`). The state lives in the route table's cluster and is
//! handed to the next table for endpoints with the same address and port, as the round-robin
//! position is. Nothing here locks or allocates on the request path.
//!
//! Hook points for metrics: [`on_ejection`] and [`on_retry`] are called once per ejection and
//! per retry.
//! Not for: choosing endpoints (see `balance`, `table::cluster`) or sending (see `proxy::upstream`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use http::Method;

/// Defaults when a snapshot leaves a field at 0.
pub(crate) const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
pub(crate) const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);
pub(crate) const DEFAULT_MAX_EJECTED_PERCENT: u32 = 50;
pub(crate) const DEFAULT_ATTEMPTS: u32 = 3;
pub(crate) const DEFAULT_BUDGET_PERCENT: u32 = 20;
/// Retries always allowed per budget window, so a quiet cluster can still retry.
const MIN_RETRIES_PER_WINDOW: u32 = 10;
/// The retry budget counts requests and retries over windows of this many milliseconds.
const BUDGET_WINDOW_MS: u64 = 10_000;
/// Attempts in all are capped, whatever a snapshot says.
pub(crate) const MAX_ATTEMPTS: u32 = 10;

/// Milliseconds since the first call in this process (a monotonic clock that fits an atomic).
pub(crate) fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    // Never 0, so 0 can mean "not ejected".
    start.elapsed().as_millis() as u64 + 1
}

/// Called once each time an endpoint is ejected (hook for metrics).
pub(crate) fn on_ejection(cluster: &str, endpoint: &str, duration: Duration) {
    crate::metrics::ejection(cluster);
    tracing::warn!(cluster, endpoint, ?duration, "endpoint ejected after failures");
}

/// Called once for each retry, before it is sent (hook for metrics).
pub(crate) fn on_retry(cluster: &str, attempt: u32) {
    crate::metrics::retry(cluster);
    tracing::debug!(cluster, attempt, "retrying request on another endpoint");
}

/// How an attempt at an endpoint went, as passive health counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Response headers arrived with a status other than 502, 503, 504.
    Success,
    /// The endpoint refused or could not be connected to: ejected at once.
    ConnectFailure,
    /// A reset, a timeout, a 502/503/504: counts towards `consecutive_failures`.
    Failure,
}

/// When endpoints are ejected; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HealthPolicy {
    pub enabled: bool,
    pub consecutive_failures: u32,
    pub base: Duration,
    pub max: Duration,
    pub max_ejected_percent: u32,
}

impl HealthPolicy {
    pub(crate) fn from_proto(p: Option<&berth_proto::v1::PassiveHealth>) -> Self {
        let p = p.cloned().unwrap_or_default();
        let or = |v: u64, d: Duration| if v == 0 { d } else { Duration::from_millis(v) };
        let base = or(p.base_ejection_ms, DEFAULT_BASE_EJECTION);
        Self {
            enabled: !p.disabled,
            consecutive_failures: if p.consecutive_failures == 0 {
                DEFAULT_CONSECUTIVE_FAILURES
            } else {
                p.consecutive_failures
            },
            base,
            max: or(p.max_ejection_ms, DEFAULT_MAX_EJECTION).max(base),
            max_ejected_percent: if p.max_ejected_percent == 0 {
                DEFAULT_MAX_EJECTED_PERCENT
            } else {
                p.max_ejected_percent.min(100)
            },
        }
    }

    /// How long the `n`th ejection in a row (from 0) lasts.
    pub(crate) fn ejection(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// Whether one more of `total` endpoints may be ejected while `ejected` are.
    pub(crate) fn may_eject(&self, ejected: usize, total: usize) -> bool {
        (ejected + 1) * 100 <= self.max_ejected_percent as usize * total
    }
}

/// One endpoint's passive-health state and load; shared between tables while it stays.
#[derive(Debug, Default)]
pub(crate) struct EndpointHealth {
    failures: AtomicU32,
    /// Ejections in a row (the backoff exponent); reset by a success after readmission.
    ejections: AtomicU32,
    /// `now_ms()` when the current ejection ends; 0 when never ejected.
    ejected_until: AtomicU64,
    /// Requests sent and not yet answered (response headers), for least-request balancing.
    in_flight: AtomicU32,
}

impl EndpointHealth {
    #[inline]
    pub(crate) fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    #[inline]
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard is dropped.
    #[inline]
    pub(crate) fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Counts an attempt's outcome. `may_eject` says whether the cluster can spare one more
    /// ejected endpoint; it is asked only when this one would be ejected. Returns the length
    /// of the ejection that started, if one did.
    pub(crate) fn record(
        &self,
        outcome: Outcome,
        now: u64,
        policy: &HealthPolicy,
        may_eject: impl FnOnce() -> bool,
    ) -> Option<Duration> {
        match outcome {
            Outcome::Success => {
                // Plain loads first: the common case writes nothing.
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
                if self.ejections.load(Ordering::Relaxed) != 0 && !self.is_ejected(now) {
                    self.ejections.store(0, Ordering::Relaxed);
                }
                None
            }
            Outcome::ConnectFailure | Outcome::Failure => {
                if !policy.enabled || self.is_ejected(now) {
                    return None;
                }
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if outcome == Outcome::Failure && failures < policy.consecutive_failures {
                    return None;
                }
                if !may_eject() {
                    return None;
                }
                let n = self.ejections.fetch_add(1, Ordering::Relaxed);
                let duration = policy.ejection(n);
                self.ejected_until
                    .store(now + duration.as_millis() as u64, Ordering::Relaxed);
                self.failures.store(0, Ordering::Relaxed);
                Some(duration)
            }
        }
    }
}

/// A request counted in flight at an endpoint.
#[derive(Debug)]
pub(crate) struct InFlight<'a>(&'a EndpointHealth);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Which failed requests are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Attempts in all (1: no retry).
    pub attempts: u32,
    /// `None`: the idempotent methods.
    pub methods: Option<Box<[Method]>>,
    pub budget_percent: u32,
    /// Wait before the first retry (Traefik's retry middleware); zero: none.
    pub interval: Duration,
    /// Traefik's retry middleware: a request that was never sent (connect failure) is retried
    /// whatever its method, outside the budget.
    pub any_method_unsent: bool,
}

impl RetryPolicy {
    pub(crate) fn from_proto(p: Option<&berth_proto::v1::RetryPolicy>) -> Self {
        let p = p.cloned().unwrap_or_default();
        let attempts = match (p.disabled, p.attempts) {
            (true, _) => 1,
            (false, 0) => DEFAULT_ATTEMPTS,
            (false, n) => n.min(MAX_ATTEMPTS),
        };
        let methods = (!p.methods.is_empty()).then(|| {
            p.methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
                .collect()
        });
        Self {
            attempts,
            methods,
            budget_percent: if p.budget_percent == 0 {
                DEFAULT_BUDGET_PERCENT
            } else {
                p.budget_percent.min(100)
            },
            interval: Duration::ZERO,
            any_method_unsent: false,
        }
    }

    /// Whether a request with this method may be retried at all.
    pub(crate) fn allows(&self, method: &Method) -> bool {
        if self.attempts < 2 {
            return false;
        }
        match &self.methods {
            Some(methods) => methods.contains(method),
            None => is_idempotent(method),
        }
    }
}

/// The idempotent methods (RFC 9110 §9.2.2), retried by default.
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Retries allowed as a share of a cluster's requests, counted over 10-second windows.
#[derive(Debug, Default)]
pub(crate) struct RetryBudget {
    window: AtomicU64,
    requests: AtomicU32,
    retries: AtomicU32,
}

impl RetryBudget {
    fn roll(&self, now: u64) {
        let window = now / BUDGET_WINDOW_MS;
        let seen = self.window.load(Ordering::Relaxed);
        if seen != window
            && self
                .window
                .compare_exchange(seen, window, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.requests.store(0, Ordering::Relaxed);
            self.retries.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a request (its first attempt).
    #[inline]
    pub(crate) fn request(&self, now: u64) {
        self.roll(now);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget, if `percent` of this window's requests (and a few more)
    /// allow it.
    pub(crate) fn try_retry(&self, now: u64, percent: u32) -> bool {
        self.roll(now);
        let requests = u64::from(self.requests.load(Ordering::Relaxed));
        let allowed = u64::from(MIN_RETRIES_PER_WINDOW) + requests * u64::from(percent) / 100;
        let taken = self.retries.fetch_add(1, Ordering::Relaxed);
        if u64::from(taken) < allowed {
            true
        } else {
            self.retries.fetch_sub(1, Ordering::Relaxed);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::PassiveHealth;

    fn policy() -> HealthPolicy {
        HealthPolicy::from_proto(Some(&PassiveHealth {
            consecutive_failures: 3,
            base_ejection_ms: 1000,
            max_ejection_ms: 5000,
            ..Default::default()
        }))
    }

    #[test]
    fn defaults() {
        let p = HealthPolicy::from_proto(None);
        assert!(p.enabled);
        assert_eq!(p.consecutive_failures, 5);
        assert_eq!((p.base, p.max), (DEFAULT_BASE_EJECTION, DEFAULT_MAX_EJECTION));
        assert_eq!(p.max_ejected_percent, 50);
        let r = RetryPolicy::from_proto(None);
        assert_eq!((r.attempts, r.budget_percent), (3, 20));
        assert!(r.allows(&Method::GET) && r.allows(&Method::PUT) && !r.allows(&Method::POST));
        let off = RetryPolicy::from_proto(Some(&berth_proto::v1::RetryPolicy {
            disabled: true,
            ..Default::default()
        }));
        assert!(!off.allows(&Method::GET));
        let only_get = RetryPolicy::from_proto(Some(&berth_proto::v1::RetryPolicy {
            methods: vec!["get".into()],
            ..Default::default()
        }));
        assert!(only_get.allows(&Method::GET) && !only_get.allows(&Method::HEAD));
    }

    #[test]
    fn consecutive_failures_eject_with_growing_backoff_and_readmit() {
        let p = policy();
        let e = EndpointHealth::default();
        let mut now = 10;
        assert_eq!(e.record(Outcome::Failure, now, &p, || true), None);
        assert_eq!(
            e.record(Outcome::Success, now, &p, || true),
            None,
            "a success resets the count"
        );
        assert_eq!(e.record(Outcome::Failure, now, &p, || true), None);
        assert_eq!(e.record(Outcome::Failure, now, &p, || true), None);
        assert_eq!(
            e.record(Outcome::Failure, now, &p, || true),
            Some(Duration::from_secs(1))
        );
        assert!(e.is_ejected(now) && e.is_ejected(now + 999) && !e.is_ejected(now + 1000));
        // Failures while ejected do not count.
        assert_eq!(e.record(Outcome::ConnectFailure, now + 5, &p, || true), None);
        // Readmitted, it fails at once again: twice as long, then four times, capped at max.
        now += 1000;
        assert_eq!(
            e.record(Outcome::ConnectFailure, now, &p, || true),
            Some(Duration::from_secs(2))
        );
        now += 2000;
        assert_eq!(
            e.record(Outcome::ConnectFailure, now, &p, || true),
            Some(Duration::from_secs(4))
        );
        now += 4000;
        assert_eq!(
            e.record(Outcome::ConnectFailure, now, &p, || true),
            Some(Duration::from_secs(5))
        );
        // Readmitted and healthy: the next ejection starts from base again.
        now += 5000;
        e.record(Outcome::Success, now, &p, || true);
        assert_eq!(
            e.record(Outcome::ConnectFailure, now, &p, || true),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn ejection_respects_the_cluster_and_the_switch() {
        let p = policy();
        let e = EndpointHealth::default();
        assert_eq!(e.record(Outcome::ConnectFailure, 1, &p, || false), None);
        assert!(!e.is_ejected(1));
        let off = HealthPolicy { enabled: false, ..p };
        assert_eq!(e.record(Outcome::ConnectFailure, 1, &off, || true), None);
        assert!(p.may_eject(0, 2) && !p.may_eject(1, 2) && !p.may_eject(0, 1));
        assert!(p.may_eject(0, 3) && !p.may_eject(1, 3));
    }

    #[test]
    fn in_flight_is_counted_by_guard() {
        let e = EndpointHealth::default();
        let a = e.start();
        let b = e.start();
        assert_eq!(e.in_flight(), 2);
        drop(a);
        drop(b);
        assert_eq!(e.in_flight(), 0);
    }

    #[test]
    fn budget_allows_a_share_of_requests() {
        let b = RetryBudget::default();
        let now = 5;
        for _ in 0..100 {
            b.request(now);
        }
        // 10 always, plus 20% of 100.
        let granted = (0..100).filter(|_| b.try_retry(now, 20)).count();
        assert_eq!(granted, 30);
        // A new window starts afresh.
        let later = now + BUDGET_WINDOW_MS;
        assert!(b.try_retry(later, 20));
        assert_eq!(b.requests.load(Ordering::Relaxed), 0);
    }
}
