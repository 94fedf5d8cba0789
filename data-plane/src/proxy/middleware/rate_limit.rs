//! `rate_limit`: a token bucket per source; requests over the rate wait a little or get a 429.
//!
//! For: Traefik's RateLimit with its in-memory limiter (golang.org/x/time/rate semantics): a
//! bucket of `burst` tokens (at least 1) refilled at `average` per `period` (1 s when 0);
//! `average` 0 means no limit. Each request takes a token; if that leaves the bucket short, the
//! request waits until the token would exist — if that wait is at most Traefik's maximum delay
//! (half the interval between tokens, 500 ms below one token a second), else it is refused (the
//! token given back) with 429, `Retry-After` (seconds, rounded up), `X-Retry-In` (Go's duration
//! text) and body `Too Many Requests`. Buckets are per middleware of a route, per source (see
//! `source`), kept across snapshots while the settings stay the same, and forgotten after being
//! idle for Traefik's time-to-live, so memory stays bounded.
//! Not for: concurrency limits (see `in_flight_req`) or limits shared between proxies.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use http::header::RETRY_AFTER;
use http::request::Parts;
use http::{HeaderName, HeaderValue, StatusCode};

use super::source::{Source, SourceKey};
use super::{reply, Flow};
use crate::proxy::context::RequestContext;

const X_RETRY_IN: HeaderName = HeaderName::from_static("x-retry-in");
/// At most this many sources are remembered per middleware (Traefik's `maxSources`).
const MAX_SOURCES: usize = 65_536;
/// Sweeping idle buckets starts once this many are held.
const FIRST_SWEEP: usize = 1024;

/// The bucket parameters, derived from the settings as Traefik derives them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Limits {
    /// Tokens per second; infinite means no limit.
    rate: f64,
    burst: f64,
    max_delay: Duration,
    /// A bucket idle this long is forgotten.
    ttl: Duration,
}

impl Limits {
    fn new(average: i64, period_ms: u64, burst: i64) -> Self {
        let period = if period_ms == 0 {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(period_ms)
        };
        let rate = if average > 0 {
            average as f64 / period.as_secs_f64()
        } else {
            f64::INFINITY
        };
        let max_delay = if !rate.is_finite() {
            Duration::ZERO
        } else if rate < 1.0 {
            Duration::from_millis(500)
        } else {
            // Go divides a second by the whole-number part of the rate, doubled.
            Duration::from_nanos(1_000_000_000 / (rate as u64 * 2))
        };
        let ttl_secs = if rate >= 1.0 {
            2
        } else if rate > 0.0 {
            1 + (1.0 / rate) as u64
        } else {
            1
        };
        Self {
            rate,
            burst: burst.max(1) as f64,
            max_delay,
            ttl: Duration::from_secs(ttl_secs),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The buckets of one middleware, shared with its successor in the next table.
#[derive(Debug)]
pub(crate) struct Buckets {
    map: DashMap<SourceKey, Bucket>,
    /// Sweep when the map reaches this size...
    next_sweep: AtomicUsize,
    /// ...or when a time-to-live has passed since the last sweep (nanoseconds after `epoch`).
    last_sweep: AtomicU64,
    epoch: Instant,
}

impl Default for Buckets {
    fn default() -> Self {
        Self {
            map: DashMap::new(),
            next_sweep: AtomicUsize::new(FIRST_SWEEP),
            last_sweep: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct RateLimit {
    limits: Limits,
    source: Source,
    buckets: Arc<Buckets>,
}

/// What the bucket said.
#[derive(Debug, PartialEq)]
enum Verdict {
    Go,
    Wait(Duration),
    Refuse(Duration),
}

impl RateLimit {
    pub(crate) fn compile(
        config: &berth_proto::v1::RateLimit,
        previous: Option<&RateLimit>,
    ) -> Result<Self, String> {
        let limits = Limits::new(config.average, config.period_ms, config.burst);
        let source = Source::compile(config.source.as_ref(), false)?;
        let buckets = previous
            .filter(|p| p.limits == limits && p.source == source)
            .map(|p| p.buckets.clone())
            .unwrap_or_default();
        Ok(Self {
            limits,
            source,
            buckets,
        })
    }

    pub(crate) async fn request(&self, ctx: &mut RequestContext, head: &mut Parts) -> Flow {
        if !self.limits.rate.is_finite() {
            return Flow::Next;
        }
        let key = self.source.key(ctx, head);
        match self.reserve(key, Instant::now()) {
            Verdict::Go => Flow::Next,
            Verdict::Wait(delay) => {
                tokio::time::sleep(delay).await;
                Flow::Next
            }
            Verdict::Refuse(delay) => {
                let mut response = reply::status_text(StatusCode::TOO_MANY_REQUESTS);
                let headers = response.headers_mut();
                headers.insert(RETRY_AFTER, HeaderValue::from(delay.as_secs_f64().ceil() as u64));
                if let Ok(value) = HeaderValue::from_str(&go_duration(delay)) {
                    headers.insert(X_RETRY_IN, value);
                }
                Flow::Answer(response)
            }
        }
    }

    /// Takes a token for `key` at `now`.
    fn reserve(&self, key: SourceKey, now: Instant) -> Verdict {
        let Limits {
            rate,
            burst,
            max_delay,
            ..
        } = self.limits;
        let verdict = {
            let mut is_new = false;
            let mut bucket = self.buckets.map.entry(key).or_insert_with(|| {
                is_new = true;
                Bucket {
                    tokens: burst,
                    last: now,
                }
            });
            let elapsed = now.saturating_duration_since(bucket.last);
            let available = (bucket.tokens + elapsed.as_secs_f64() * rate).min(burst);
            let left = available - 1.0;
            let wait = if left < 0.0 {
                Duration::from_nanos((-left / rate * 1e9) as u64)
            } else {
                Duration::ZERO
            };
            bucket.last = now;
            if wait > max_delay {
                bucket.tokens = available;
                (Verdict::Refuse(wait), is_new)
            } else {
                bucket.tokens = left;
                (
                    if wait.is_zero() {
                        Verdict::Go
                    } else {
                        Verdict::Wait(wait)
                    },
                    is_new,
                )
            }
        };
        if verdict.1 {
            self.sweep(now);
        }
        verdict.0
    }

    /// Forgets idle buckets once the map has doubled since the last sweep or a time-to-live has
    /// passed since it, and the least recently used ones if it is still over [`MAX_SOURCES`].
    /// Called when a new source arrives, so an idle middleware costs nothing.
    fn sweep(&self, now: Instant) {
        let buckets = &self.buckets;
        let map = &buckets.map;
        let ttl = self.limits.ttl;
        let now_nanos =
            u64::try_from(now.saturating_duration_since(buckets.epoch).as_nanos()).unwrap_or(u64::MAX);
        let last = buckets.last_sweep.load(Ordering::Relaxed);
        let due_by_time = now_nanos.saturating_sub(last) >= u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
        if map.len() < buckets.next_sweep.load(Ordering::Relaxed) && !due_by_time {
            return;
        }
        // One sweeper at a time.
        if buckets
            .last_sweep
            .compare_exchange(last, now_nanos, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        map.retain(|_, b| now.saturating_duration_since(b.last) < ttl);
        if map.len() > MAX_SOURCES {
            let mut ages: Vec<Instant> = map.iter().map(|e| e.last).collect();
            ages.sort_unstable();
            let cutoff = ages[map.len() - MAX_SOURCES];
            map.retain(|_, b| b.last >= cutoff);
        }
        self.buckets
            .next_sweep
            .store((map.len() * 2).max(FIRST_SWEEP), Ordering::Relaxed);
    }
}

/// Go's `time.Duration.String()`: `1.5s`, `1m1s`, `999.999µs`, `0s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fraction(nanos / scale, nanos % scale, scale));
    }
    let secs = nanos / 1_000_000_000;
    let sub = nanos % 1_000_000_000;
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    let seconds = format!("{}s", fraction(seconds, sub, 1_000_000_000));
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}")
    } else {
        seconds
    }
}

/// `whole.frac` with the fraction's trailing zeros dropped (and the dot, when it is zero).
fn fraction(whole: u128, frac: u128, scale: u128) -> String {
    if frac == 0 {
        return whole.to_string();
    }
    let digits = scale.to_string().len() - 1;
    let text = format!("{frac:0digits$}");
    format!("{whole}.{}", text.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::middleware::testing::{body_text, head};

    fn limiter(average: i64, period_ms: u64, burst: i64) -> RateLimit {
        RateLimit::compile(
            &berth_proto::v1::RateLimit {
                average,
                period_ms,
                burst,
                source: None,
            },
            None,
        )
        .expect("compiles")
    }

    fn key(n: u8) -> SourceKey {
        SourceKey::Ip(std::net::IpAddr::from([10, 0, 0, n]))
    }

    #[test]
    fn limits_as_traefik() {
        let l = Limits::new(100, 0, 0);
        assert_eq!((l.rate, l.burst), (100.0, 1.0));
        assert_eq!(l.max_delay, Duration::from_millis(5));
        assert_eq!(l.ttl, Duration::from_secs(2));
        let l = Limits::new(1, 60_000, 3);
        assert!((l.rate - 1.0 / 60.0).abs() < 1e-12);
        assert_eq!(l.max_delay, Duration::from_millis(500));
        assert_eq!(l.ttl, Duration::from_secs(61));
        let l = Limits::new(3, 2_000, 1);
        assert_eq!(l.max_delay, Duration::from_millis(500), "rate 1.5 counts as 1");
        assert!(!Limits::new(0, 0, 5).rate.is_finite());
    }

    #[test]
    fn burst_then_refill() {
        // 10 per second, burst 3: three at once, then one every 100 ms.
        let rl = limiter(10, 1000, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(rl.reserve(key(1), t0), Verdict::Go);
        }
        // The fourth needs 100 ms, more than the 50 ms Traefik waits.
        assert_eq!(
            rl.reserve(key(1), t0),
            Verdict::Refuse(Duration::from_millis(100))
        );
        // A refusal gives its token back: 60 ms later the wait is 40 ms, which is waited.
        match rl.reserve(key(1), t0 + Duration::from_millis(60)) {
            Verdict::Wait(d) => assert!(
                d.abs_diff(Duration::from_millis(40)) < Duration::from_micros(1),
                "{d:?}"
            ),
            other => panic!("expected a wait, got {other:?}"),
        }
        // Another source has its own bucket.
        assert_eq!(rl.reserve(key(2), t0), Verdict::Go);
        // After a full second the bucket is full again (capped at the burst).
        let t1 = t0 + Duration::from_secs(5);
        for _ in 0..3 {
            assert_eq!(rl.reserve(key(1), t1), Verdict::Go);
        }
        assert!(matches!(rl.reserve(key(1), t1), Verdict::Refuse(_)));
    }

    #[tokio::test]
    async fn refusal_response() {
        let rl = limiter(1, 10_000, 1);
        let mut ctx = RequestContext::for_test("GET", "/", "h", "10.0.0.1:1");
        assert!(matches!(
            rl.request(&mut ctx, &mut head("GET", "/")).await,
            Flow::Next
        ));
        let Flow::Answer(r) = rl.request(&mut ctx, &mut head("GET", "/")).await else {
            panic!("refused")
        };
        assert_eq!(r.status(), 429);
        let retry_after: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((9..=10).contains(&retry_after), "{retry_after}");
        assert!(r.headers()["x-retry-in"].to_str().unwrap().ends_with('s'));
        assert!(r.headers().get("content-type").is_none());
        assert_eq!(body_text(r).await, "Too Many Requests");
    }

    #[tokio::test]
    async fn zero_average_means_no_limit() {
        let rl = limiter(0, 0, 1);
        let mut ctx = RequestContext::for_test("GET", "/", "h", "10.0.0.1:1");
        for _ in 0..100 {
            assert!(matches!(
                rl.request(&mut ctx, &mut head("GET", "/")).await,
                Flow::Next
            ));
        }
    }

    #[test]
    fn buckets_survive_a_new_table_with_the_same_settings() {
        let first = limiter(1, 10_000, 1);
        let t0 = Instant::now();
        assert_eq!(first.reserve(key(1), t0), Verdict::Go);
        let config = berth_proto::v1::RateLimit {
            average: 1,
            period_ms: 10_000,
            burst: 1,
            source: None,
        };
        let second = RateLimit::compile(&config, Some(&first)).unwrap();
        assert!(matches!(second.reserve(key(1), t0), Verdict::Refuse(_)));
        let changed =
            RateLimit::compile(&berth_proto::v1::RateLimit { burst: 2, ..config }, Some(&second)).unwrap();
        assert_eq!(
            changed.reserve(key(1), t0),
            Verdict::Go,
            "new settings, new buckets"
        );
    }

    #[test]
    fn idle_sources_are_forgotten() {
        let rl = limiter(100, 1000, 1);
        let t0 = Instant::now();
        for i in 0..FIRST_SWEEP + 10 {
            let ip = std::net::IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]);
            rl.reserve(SourceKey::Ip(ip), t0);
        }
        assert!(rl.buckets.map.len() > FIRST_SWEEP);
        // Much later, one new source triggers a sweep of the idle ones.
        rl.reserve(key(9), t0 + Duration::from_secs(60));
        assert_eq!(rl.buckets.map.len(), 1);
    }

    #[test]
    fn go_durations() {
        for (nanos, text) in [
            (0u64, "0s"),
            (1, "1ns"),
            (999, "999ns"),
            (1000, "1µs"),
            (1500, "1.5µs"),
            (999_999, "999.999µs"),
            (1_000_000, "1ms"),
            (1_500_000, "1.5ms"),
            (999_999_999, "999.999999ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (61_000_000_000, "1m1s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_661_005_000_000, "1h1m1.005s"),
            (123_456_789, "123.456789ms"),
            (9_870_654_321, "9.870654321s"),
            (3_599_999_999_999, "59m59.999999999s"),
        ] {
            assert_eq!(go_duration(Duration::from_nanos(nanos)), text, "{nanos}");
        }
    }
}
