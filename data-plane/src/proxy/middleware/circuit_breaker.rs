//! `circuit_breaker`: stops sending a route's requests to its backend while an expression over
//! the recent responses holds, then lets traffic back in gradually.
//!
//! For: Traefik's CircuitBreaker middleware, which is vulcand/oxy's `cbreaker`:
//! - **standby**: every request goes through; the response half records its status (502 and 504
//!   count as network errors, whether the proxy or the backend wrote them) and its latency, and
//!   at most once per `check_period` (100 ms by default) evaluates the expression (see
//!   `berth_model::circuit_breaker`). When it holds, the breaker trips and forgets its metrics.
//! - **tripped**: for `fallback_duration` (10 s by default) every request is answered with
//!   `response_code` (503 by default), its reason phrase as the body, as Traefik does, plus
//!   `x-berth-error: circuit-open`; nothing reaches the backend and nothing is recorded.
//! - **recovering**: for `recovery_duration` (10 s by default) a growing share of the requests
//!   goes through — as many as keep the share let through under `0.5 × elapsed / duration` — the
//!   others get the fallback; the expression is still checked, and trips the breaker again when
//!   it holds. After the recovery duration, the next request puts it back in standby.
//!
//! Metrics as oxy keeps them: counts over the last 10 seconds (ten 1 s buckets), latencies over
//! the last minute (six 10 s buckets), each bucket of atomics tagged with its period, so
//! recording never takes a lock. The latency histogram (about 1.5 % precision) exists only when
//! the expression asks for a latency. Latency is measured from the request's arrival until the
//! response headers come back (oxy measures until the body has been copied). State transitions
//! and checks take a mutex: on standby that is once per check period, not per request. A
//! breaker with unchanged settings keeps its state and metrics across route tables.
//! Not for: passive health of single endpoints (see `health`) or retries (see `retry`).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_model::circuit_breaker::{Expression, Metric, Metrics};
use http::{HeaderName, HeaderValue, StatusCode};

use super::{reply, Flow};

const X_BERTH_ERROR: HeaderName = HeaderName::from_static("x-berth-error");

const DEFAULT_CHECK_PERIOD: Duration = Duration::from_millis(100);
const DEFAULT_FALLBACK: Duration = Duration::from_secs(10);
const DEFAULT_RECOVERY: Duration = Duration::from_secs(10);

/// Count buckets: ten of one second.
const COUNT_BUCKETS: u64 = 10;
const COUNT_BUCKET_NANOS: u64 = 1_000_000_000;
/// Latency buckets: six of ten seconds.
const LATENCY_BUCKETS: u64 = 6;
const LATENCY_BUCKET_NANOS: u64 = 10_000_000_000;
/// Histogram layout: values below 2^SUB_BITS+1 µs exactly, then 2^SUB_BITS slots per octave.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Latencies are capped at one hour, in µs (below 2^32).
const MAX_MICROS: u64 = 3_600_000_000;
const HISTOGRAM_SLOTS: usize = slot_of(MAX_MICROS) + 1;

/// The settings; a breaker whose settings did not change keeps its state across tables.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    expression: String,
    check_period: u64,
    fallback: u64,
    recovery: u64,
    response_code: StatusCode,
}

#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    settings: Settings,
    expression: Expression,
    shared: Arc<Shared>,
}

/// State and metrics, shared with the breaker's successors in later tables.
#[derive(Debug)]
struct Shared {
    epoch: Instant,
    /// True while in standby: the request half's only read then.
    standby: AtomicBool,
    /// When the expression may be evaluated next (nanoseconds after `epoch`).
    next_check: AtomicU64,
    state: Mutex<Machine>,
    counts: Vec<CountBucket>,
    /// The `[from, to)` status ranges the expression's `ResponseCodeRatio`s read.
    ranges: Vec<(u32, u32)>,
    latency: Option<Vec<LatencyBucket>>,
}

#[derive(Debug)]
struct CountBucket {
    /// The period this bucket counts, plus one (0: never used).
    tag: AtomicU64,
    total: AtomicU64,
    network: AtomicU64,
    /// One per entry of `Shared::ranges`.
    ranges: Vec<AtomicU64>,
}

#[derive(Debug)]
struct LatencyBucket {
    tag: AtomicU64,
    slots: Vec<AtomicU32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Standby,
    Tripped,
    Recovering,
}

#[derive(Debug)]
struct Machine {
    state: State,
    /// End of the tripped or recovering state (nanoseconds after `epoch`).
    until: u64,
    /// Recovery: when it began, and the requests let through and turned away since.
    recovery_start: u64,
    allowed: u64,
    denied: u64,
}

impl CircuitBreaker {
    pub(crate) fn compile(
        config: &berth_proto::v1::CircuitBreaker,
        previous: Option<&CircuitBreaker>,
    ) -> Result<Self, String> {
        let expression = Expression::parse(&config.expression)
            .map_err(|e| format!("expression {:?} {e}", config.expression))?;
        let nanos = |ms: u64, default: Duration| {
            if ms == 0 {
                default.as_nanos() as u64
            } else {
                ms.saturating_mul(1_000_000)
            }
        };
        let response_code = match config.response_code {
            0 => StatusCode::SERVICE_UNAVAILABLE,
            code => u16::try_from(code)
                .ok()
                .filter(|c| (200..=599).contains(c))
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| format!("response code {code} is not a status from 200 to 599"))?,
        };
        let settings = Settings {
            expression: config.expression.clone(),
            check_period: nanos(config.check_period_ms, DEFAULT_CHECK_PERIOD),
            fallback: nanos(config.fallback_duration_ms, DEFAULT_FALLBACK),
            recovery: nanos(config.recovery_duration_ms, DEFAULT_RECOVERY),
            response_code,
        };
        let shared = match previous.filter(|p| p.settings == settings) {
            Some(p) => p.shared.clone(),
            None => Arc::new(Shared::new(&expression)),
        };
        Ok(Self {
            settings,
            expression,
            shared,
        })
    }

    /// The request half: the fallback answer while tripped (or turned away while recovering).
    pub(crate) fn request(&self) -> Flow {
        if self.shared.standby.load(Ordering::Acquire) || self.allow(self.shared.now()) {
            return Flow::Next;
        }
        let mut response = reply::status_text(self.settings.response_code);
        response
            .headers_mut()
            .insert(X_BERTH_ERROR, HeaderValue::from_static("circuit-open"));
        Flow::Answer(response)
    }

    /// The response half: records the outcome of a request let through at `started`.
    pub(crate) fn response(&self, status: StatusCode, started: Instant) {
        let now = self.shared.now();
        let latency = started.elapsed();
        self.record(now, status.as_u16(), latency);
        self.check(now);
    }

    /// Whether a request at `now` goes through (the breaker is not in standby).
    fn allow(&self, now: u64) -> bool {
        let Ok(mut m) = self.shared.state.lock() else {
            return true;
        };
        loop {
            match m.state {
                State::Standby => return true,
                State::Tripped if now < m.until => return false,
                State::Tripped => {
                    m.state = State::Recovering;
                    m.until = now.saturating_add(self.settings.recovery);
                    m.recovery_start = now;
                    m.allowed = 0;
                    m.denied = 0;
                }
                State::Recovering if now > m.until => {
                    m.state = State::Standby;
                    self.shared.standby.store(true, Ordering::Release);
                    return true;
                }
                State::Recovering => {
                    let elapsed = now.saturating_sub(m.recovery_start) as f64;
                    let target = 0.5 * elapsed / self.settings.recovery.max(1) as f64;
                    let share = (m.allowed + 1) as f64 / (m.allowed + 1 + m.denied) as f64;
                    if share < target {
                        m.allowed += 1;
                        return true;
                    }
                    m.denied += 1;
                    return false;
                }
            }
        }
    }

    fn record(&self, now: u64, status: u16, latency: Duration) {
        let shared = &self.shared;
        let bucket = CountBucket::current(&shared.counts, now);
        bucket.total.fetch_add(1, Ordering::Relaxed);
        if matches!(status, 502 | 504) {
            bucket.network.fetch_add(1, Ordering::Relaxed);
        }
        let status = u32::from(status);
        for (counter, (from, to)) in bucket.ranges.iter().zip(&shared.ranges) {
            if (*from..*to).contains(&status) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(latency_buckets) = &shared.latency {
            let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
            LatencyBucket::current(latency_buckets, now).slots[slot_of(micros.clamp(1, MAX_MICROS))]
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Evaluates the expression if a check period has passed since the last evaluation.
    fn check(&self, now: u64) {
        let shared = &self.shared;
        if now < shared.next_check.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut m) = shared.state.lock() else {
            return;
        };
        // Another response may have checked while this one waited for the lock.
        if now < shared.next_check.load(Ordering::Acquire) {
            return;
        }
        shared
            .next_check
            .store(now.saturating_add(self.settings.check_period), Ordering::Release);
        if m.state == State::Tripped {
            return;
        }
        if !self.expression.holds(&View { shared, now }) {
            return;
        }
        m.state = State::Tripped;
        m.until = now.saturating_add(self.settings.fallback);
        shared.standby.store(false, Ordering::Release);
        shared.reset();
    }

    #[cfg(test)]
    fn state(&self) -> State {
        self.shared
            .state
            .lock()
            .map(|m| m.state)
            .unwrap_or(State::Standby)
    }
}

impl Shared {
    fn new(expression: &Expression) -> Self {
        let mut ranges = Vec::new();
        let mut latency = false;
        for metric in expression.metrics() {
            match metric {
                Metric::ResponseCodeRatio {
                    from,
                    to,
                    divided_from,
                    divided_to,
                } => {
                    for range in [(from, to), (divided_from, divided_to)] {
                        if !ranges.contains(&range) {
                            ranges.push(range);
                        }
                    }
                }
                Metric::LatencyAtQuantileMs(_) => latency = true,
                Metric::NetworkErrorRatio | Metric::RequestThreshold => {}
            }
        }
        let counts = (0..COUNT_BUCKETS)
            .map(|_| CountBucket {
                tag: AtomicU64::new(0),
                total: AtomicU64::new(0),
                network: AtomicU64::new(0),
                ranges: ranges.iter().map(|_| AtomicU64::new(0)).collect(),
            })
            .collect();
        let latency = latency.then(|| {
            (0..LATENCY_BUCKETS)
                .map(|_| LatencyBucket {
                    tag: AtomicU64::new(0),
                    slots: (0..HISTOGRAM_SLOTS).map(|_| AtomicU32::new(0)).collect(),
                })
                .collect()
        });
        Self {
            epoch: Instant::now(),
            standby: AtomicBool::new(true),
            next_check: AtomicU64::new(0),
            state: Mutex::new(Machine {
                state: State::Standby,
                until: 0,
                recovery_start: 0,
                allowed: 0,
                denied: 0,
            }),
            counts,
            ranges,
            latency,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Forgets every metric (on tripping, as oxy does).
    fn reset(&self) {
        for b in &self.counts {
            b.tag.store(0, Ordering::Relaxed);
            b.clear();
        }
        for b in self.latency.iter().flatten() {
            b.tag.store(0, Ordering::Relaxed);
            b.clear();
        }
    }

    /// The count buckets within the window at `now`.
    fn live_counts(&self, now: u64) -> impl Iterator<Item = &CountBucket> {
        self.counts.iter().filter(move |b| b.live(now))
    }
}

/// One bucket of a window of metrics (counts, latencies): a ring of [`Bucket::COUNT`] buckets of
/// [`Bucket::NANOS`] each, a bucket tagged with the period it counts and cleared when reused.
trait Bucket: Sized {
    /// How many buckets make the window.
    const COUNT: u64;
    /// How long one bucket's period is, in nanoseconds.
    const NANOS: u64;

    /// The period this bucket counts, plus one (0: never used).
    fn tag(&self) -> &AtomicU64;

    /// Zeroes its metrics.
    fn clear(&self);

    /// The bucket for `now`, cleared first if it last counted an older period.
    fn current(buckets: &[Self], now: u64) -> &Self {
        let period = now / Self::NANOS;
        let bucket = &buckets[(period % Self::COUNT) as usize];
        let tag = bucket.tag().load(Ordering::Acquire);
        if tag != period + 1
            && bucket
                .tag()
                .compare_exchange(tag, period + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            bucket.clear();
        }
        bucket
    }

    /// Whether its period is within the window at `now`.
    fn live(&self, now: u64) -> bool {
        let period = now / Self::NANOS + 1;
        let tag = self.tag().load(Ordering::Relaxed);
        tag != 0 && tag + Self::COUNT > period && tag <= period
    }
}

impl Bucket for CountBucket {
    const COUNT: u64 = COUNT_BUCKETS;
    const NANOS: u64 = COUNT_BUCKET_NANOS;

    fn tag(&self) -> &AtomicU64 {
        &self.tag
    }

    fn clear(&self) {
        self.total.store(0, Ordering::Relaxed);
        self.network.store(0, Ordering::Relaxed);
        for r in &self.ranges {
            r.store(0, Ordering::Relaxed);
        }
    }
}

impl Bucket for LatencyBucket {
    const COUNT: u64 = LATENCY_BUCKETS;
    const NANOS: u64 = LATENCY_BUCKET_NANOS;

    fn tag(&self) -> &AtomicU64 {
        &self.tag
    }

    fn clear(&self) {
        for s in &self.slots {
            s.store(0, Ordering::Relaxed);
        }
    }
}

/// The histogram slot of a latency in µs: exact below `2 * SUB`, then `SUB` slots per octave.
const fn slot_of(micros: u64) -> usize {
    if micros < 2 * SUB {
        return micros as usize;
    }
    let octave = 63 - micros.leading_zeros(); // >= SUB_BITS + 1
    let shift = octave - SUB_BITS;
    let sub = (micros >> shift) - SUB; // 0..SUB
    (2 * SUB + (octave - SUB_BITS - 1) as u64 * SUB + sub) as usize
}

/// The largest latency (µs) that falls in `slot`, as HDR histograms report a quantile.
fn slot_top(slot: usize) -> u64 {
    let slot = slot as u64;
    if slot < 2 * SUB {
        return slot;
    }
    let octave = (slot - 2 * SUB) / SUB + u64::from(SUB_BITS) + 1;
    let sub = (slot - 2 * SUB) % SUB;
    let shift = octave - u64::from(SUB_BITS);
    ((SUB + sub + 1) << shift) - 1
}

/// The metrics as the expression reads them at `now`.
struct View<'a> {
    shared: &'a Shared,
    now: u64,
}

impl View<'_> {
    fn range_count(&self, range: (u32, u32)) -> u64 {
        let Some(i) = self.shared.ranges.iter().position(|r| *r == range) else {
            return 0;
        };
        self.shared
            .live_counts(self.now)
            .map(|b| b.ranges[i].load(Ordering::Relaxed))
            .sum()
    }
}

impl Metrics for View<'_> {
    fn network_error_ratio(&self) -> f64 {
        let (mut total, mut network) = (0u64, 0u64);
        for b in self.shared.live_counts(self.now) {
            total += b.total.load(Ordering::Relaxed);
            network += b.network.load(Ordering::Relaxed);
        }
        if total == 0 {
            0.0
        } else {
            network as f64 / total as f64
        }
    }

    fn response_code_ratio(&self, from: u32, to: u32, divided_from: u32, divided_to: u32) -> f64 {
        let divisor = self.range_count((divided_from, divided_to));
        if divisor == 0 {
            return 0.0;
        }
        self.range_count((from, to)) as f64 / divisor as f64
    }

    fn latency_at_quantile_ms(&self, quantile: f64) -> i64 {
        let Some(buckets) = &self.shared.latency else {
            return 0;
        };
        let live: Vec<&LatencyBucket> = buckets.iter().filter(|b| b.live(self.now)).collect();
        let mut merged = vec![0u64; HISTOGRAM_SLOTS];
        for b in &live {
            for (m, s) in merged.iter_mut().zip(&b.slots) {
                *m += u64::from(s.load(Ordering::Relaxed));
            }
        }
        let total: u64 = merged.iter().sum();
        if total == 0 {
            return 0;
        }
        // HDR's rule: the value under which `quantile` percent of the counts fall (at least one).
        let q = quantile.clamp(0.0, 100.0);
        let target = ((q / 100.0) * total as f64 + 0.5) as u64;
        let target = target.max(1);
        let mut seen = 0;
        for (slot, count) in merged.iter().enumerate() {
            seen += count;
            if seen >= target {
                return (slot_top(slot) / 1000) as i64;
            }
        }
        (MAX_MICROS / 1000) as i64
    }

    fn request_count(&self) -> i64 {
        let total: u64 = self
            .shared
            .live_counts(self.now)
            .map(|b| b.total.load(Ordering::Relaxed))
            .sum();
        i64::try_from(total).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000 * MS;

    fn breaker(expression: &str, check_ms: u64, fallback_ms: u64, recovery_ms: u64) -> CircuitBreaker {
        CircuitBreaker::compile(
            &berth_proto::v1::CircuitBreaker {
                expression: expression.into(),
                check_period_ms: check_ms,
                fallback_duration_ms: fallback_ms,
                recovery_duration_ms: recovery_ms,
                response_code: 0,
            },
            None,
        )
        .expect("compiles")
    }

    /// One request at `now` through the breaker with the backend answering `status`: whether it
    /// went through.
    fn exchange(cb: &CircuitBreaker, now: u64, status: u16) -> bool {
        let through = cb.shared.standby.load(Ordering::Acquire) || cb.allow(now);
        if through {
            cb.record(now, status, Duration::from_millis(1));
            cb.check(now);
        }
        through
    }

    #[test]
    fn trips_on_the_first_check_then_falls_back_recovers_and_closes() {
        let cb = breaker("ResponseCodeRatio(500, 600, 0, 600) > 0.5", 100, 1_000, 1_000);
        let mut now = 5 * S;
        // The first response is checked at once (as oxy: its last check is at time zero).
        assert!(exchange(&cb, now, 500));
        assert_eq!(cb.state(), State::Tripped);
        // Tripped: nothing goes through for the fallback duration.
        for _ in 0..10 {
            now += 90 * MS;
            assert!(!exchange(&cb, now, 200), "at {now}");
        }
        // Recovering from 1 s after tripping, over 1 s: a growing share goes through.
        now = 5 * S + 1_000 * MS;
        let mut through = Vec::new();
        for _ in 0..100 {
            now += 10 * MS;
            through.push(exchange(&cb, now, 200));
        }
        assert_eq!(cb.state(), State::Recovering);
        let first: usize = through[..50].iter().filter(|t| **t).count();
        let last: usize = through[50..].iter().filter(|t| **t).count();
        assert!(first > 0 && last > first, "{first} then {last}");
        assert!(last <= 50, "at most half by the end: {last}");
        // After the recovery duration, the next request closes the breaker.
        now += 20 * MS;
        assert!(exchange(&cb, now, 200));
        assert_eq!(cb.state(), State::Standby);
        assert!(cb.shared.standby.load(Ordering::Acquire));
    }

    #[test]
    fn failing_during_recovery_trips_again() {
        let cb = breaker("NetworkErrorRatio() > 0.5", 100, 1_000, 10_000);
        let mut now = S;
        assert!(exchange(&cb, now, 502));
        assert_eq!(cb.state(), State::Tripped);
        now += 1_100 * MS;
        // Recovery lets the first requests through only once the target share grows.
        let mut let_through = 0;
        while let_through == 0 {
            now += 50 * MS;
            if exchange(&cb, now, 504) {
                let_through += 1;
            }
        }
        assert_eq!(
            cb.state(),
            State::Tripped,
            "a 504 while recovering trips it again"
        );
    }

    #[test]
    fn the_expression_is_checked_at_most_once_per_check_period() {
        let cb = breaker("ResponseCodeRatio(500, 600, 0, 600) > 0.5", 1_000, 10_000, 10_000);
        let mut now = S;
        assert!(exchange(&cb, now, 200)); // checked: 0 of 1
        for _ in 0..9 {
            now += 100 * MS;
            assert!(exchange(&cb, now, 500));
        }
        assert_eq!(cb.state(), State::Standby, "not checked again yet");
        now += 101 * MS;
        assert!(exchange(&cb, now, 500));
        assert_eq!(cb.state(), State::Tripped);
    }

    #[test]
    fn counts_roll_out_of_the_ten_second_window() {
        let cb = breaker(
            "RequestThreshold() >= 3 && NetworkErrorRatio() >= 1.0",
            1,
            10_000,
            10_000,
        );
        let view = |now| View {
            shared: &cb.shared,
            now,
        };
        cb.record(S, 502, Duration::ZERO);
        cb.record(2 * S, 502, Duration::ZERO);
        assert_eq!(view(2 * S).request_count(), 2);
        assert_eq!(view(10 * S).request_count(), 2);
        assert_eq!(view(11 * S).request_count(), 1, "the 1 s bucket left the window");
        assert_eq!(view(12 * S).request_count(), 0);
        // A new period in the same slot starts from zero.
        cb.record(11 * S, 200, Duration::ZERO);
        assert_eq!(view(11 * S).request_count(), 2);
        assert_eq!(view(11 * S).network_error_ratio(), 0.5);
    }

    #[test]
    fn response_code_ratio_counts_ranges() {
        let cb = breaker("ResponseCodeRatio(500, 600, 200, 600) > 0.5", 1, 10_000, 10_000);
        for status in [200, 201, 404, 500, 503, 101] {
            cb.record(S, status, Duration::ZERO);
        }
        let view = View {
            shared: &cb.shared,
            now: S,
        };
        assert_eq!(view.response_code_ratio(500, 600, 200, 600), 2.0 / 5.0);
        assert_eq!(view.request_count(), 6);
    }

    #[test]
    fn latency_quantiles() {
        let cb = breaker("LatencyAtQuantileMS(50.0) > 100", 1, 10_000, 10_000);
        for ms in [10, 20, 30, 200, 400] {
            cb.record(S, 200, Duration::from_millis(ms));
        }
        let view = |now| View {
            shared: &cb.shared,
            now,
        };
        let median = view(S).latency_at_quantile_ms(50.0);
        assert!((29..=31).contains(&median), "{median}");
        let top = view(S).latency_at_quantile_ms(100.0);
        assert!((396..=406).contains(&top), "{top}");
        assert_eq!(view(S).latency_at_quantile_ms(0.0), 10);
        // The latency window is a minute long.
        assert!(view(50 * S).latency_at_quantile_ms(50.0) > 0);
        assert_eq!(view(61 * S).latency_at_quantile_ms(50.0), 0);
    }

    #[test]
    fn histogram_slots_are_ordered_and_close() {
        let mut last = 0;
        for micros in (1..200_000u64).step_by(7).chain([MAX_MICROS]) {
            let slot = slot_of(micros);
            assert!(slot >= last && slot < HISTOGRAM_SLOTS, "{micros}");
            last = slot;
            let top = slot_top(slot);
            assert!(top >= micros, "{micros} -> {top}");
            assert!(
                (top - micros) as f64 <= micros as f64 / 60.0 + 1.0,
                "{micros} -> {top}"
            );
        }
    }

    #[test]
    fn unchanged_settings_keep_the_state_across_tables() {
        let config = berth_proto::v1::CircuitBreaker {
            expression: "NetworkErrorRatio() > 0.5".into(),
            ..Default::default()
        };
        let first = CircuitBreaker::compile(&config, None).unwrap();
        assert!(exchange(&first, first.shared.now(), 502));
        assert_eq!(first.state(), State::Tripped);
        let same = CircuitBreaker::compile(&config, Some(&first)).unwrap();
        assert!(matches!(same.request(), Flow::Answer(r) if r.status() == 503
            && r.headers()["x-berth-error"] == "circuit-open"));
        let changed = CircuitBreaker::compile(
            &berth_proto::v1::CircuitBreaker {
                response_code: 429,
                ..config
            },
            Some(&same),
        )
        .unwrap();
        assert!(matches!(changed.request(), Flow::Next));
    }

    #[test]
    fn bad_settings_are_refused() {
        let err = CircuitBreaker::compile(
            &berth_proto::v1::CircuitBreaker {
                expression: "NetworkErrorRatio() > 1".into(),
                ..Default::default()
            },
            None,
        )
        .unwrap_err();
        assert!(
            err.starts_with("expression \"NetworkErrorRatio() > 1\" at column 23"),
            "{err}"
        );
        let err = CircuitBreaker::compile(
            &berth_proto::v1::CircuitBreaker {
                expression: "NetworkErrorRatio() > 1.0".into(),
                response_code: 42,
                ..Default::default()
            },
            None,
        )
        .unwrap_err();
        assert_eq!(err, "response code 42 is not a status from 200 to 599");
    }
}
