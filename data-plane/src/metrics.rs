//! The proxy's Prometheus metrics: counters the request path bumps, and the text exposition the
//! admin address serves at `GET /metrics`.
//!
//! For: process-wide counters ([`global`]) that the request path, the listeners, the passive health
//! checks and the cache writer touch through atomics only — no lock, no allocation per request —
//! and [`render`], which reads them (and the applied table, from [`State`]) at scrape time.
//!
//! - Per route ([`RouteStats`]): requests by status class, a latency histogram, body bytes. The
//!   route table holds each route's `Arc<RouteStats>`, taken from a registry keyed by route name
//!   and service when the table is built, so an unchanged route keeps its counters across
//!   snapshots (counters never go backwards for a series that stays). The registry holds them
//!   weakly: a route gone from every live table leaves the exposition, which keeps the label
//!   cardinality bounded by the routes of the tables in use.
//! - Per cluster ([`ClusterStats`]): upstream connect errors, retries, endpoint ejections —
//!   rare events, counted through [`connect_error`], [`retry`], [`ejection`] by cluster name;
//!   clusters no longer in the applied table are forgotten when a table is built.
//! - Per entrypoint: requests by status class (matched or not), open connections.
//! - The snapshot (version, age, whether it came from the cache), cache writes, access-log drops.
//!
//! Names follow Prometheus' conventions: `berth_proxy_` prefix, units in the name, `_total` on
//! counters. Not for: serving HTTP (see `admin`), the access log's lines (see `proxy::record`) or
//! deciding anything.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::Duration;

use berth_support::prometheus::{load, Buckets, Histogram, Text};
use dashmap::DashMap;

use crate::state::State;

/// Upper bounds (seconds) of the request duration histogram's buckets.
#[derive(Debug)]
pub(crate) struct LatencyBuckets;

impl Buckets for LatencyBuckets {
    const BOUNDS: &'static [f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
}

/// The status classes a request is counted under, in order.
const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Counters by status class (`1xx` … `5xx`; a status above 599 counts as `5xx`).
#[derive(Debug, Default)]
pub(crate) struct ByClass([AtomicU64; 5]);

impl ByClass {
    pub(crate) fn count(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.0[class].fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, class: usize) -> u64 {
        self.0.get(class).map_or(0, load)
    }
}

/// One route's counters; see the module documentation.
#[derive(Debug)]
pub(crate) struct RouteStats {
    route: String,
    service: String,
    requests: ByClass,
    duration: Histogram<LatencyBuckets>,
    request_bytes: AtomicU64,
    response_bytes: AtomicU64,
}

impl RouteStats {
    fn new(route: &str, service: &str) -> Self {
        Self {
            route: route.to_owned(),
            service: service.to_owned(),
            requests: ByClass::default(),
            duration: Histogram::default(),
            request_bytes: AtomicU64::new(0),
            response_bytes: AtomicU64::new(0),
        }
    }

    /// One request of this route finished: its status, how long it took until its response body
    /// was sent (or abandoned), its body bytes in and out.
    pub(crate) fn finished(&self, status: u16, took: Duration, request_bytes: u64, response_bytes: u64) {
        self.requests.count(status);
        self.duration.observe(took);
        self.request_bytes.fetch_add(request_bytes, Ordering::Relaxed);
        self.response_bytes.fetch_add(response_bytes, Ordering::Relaxed);
    }
}

/// One cluster's counters of rare events.
#[derive(Debug, Default)]
pub(crate) struct ClusterStats {
    connect_errors: AtomicU64,
    retries: AtomicU64,
    ejections: AtomicU64,
}

/// One entrypoint's counters.
#[derive(Debug)]
pub(crate) struct EntrypointStats {
    name: String,
    requests: ByClass,
    active_connections: AtomicI64,
    connections: AtomicU64,
}

/// Every counter of the process; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Touched when a table is built and on scrape, never per request.
    routes: Mutex<HashMap<(String, String), Weak<RouteStats>>>,
    clusters: DashMap<Box<str>, ClusterStats>,
    /// Set once at start, in listener order.
    entrypoints: OnceLock<Box<[EntrypointStats]>>,
    access_log_lines: AtomicU64,
    access_log_dropped: AtomicU64,
    cache_writes: AtomicU64,
    cache_write_errors: AtomicU64,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// The process's counters.
pub(crate) fn global() -> &'static Metrics {
    &METRICS
}

/// An upstream connection to an endpoint of `cluster` failed (refused, timed out, TLS).
pub(crate) fn connect_error(cluster: &str) {
    global().cluster(cluster, |c| &c.connect_errors);
}

/// A request to `cluster` was sent again to another attempt.
pub(crate) fn retry(cluster: &str) {
    global().cluster(cluster, |c| &c.retries);
}

/// An endpoint of `cluster` was ejected by passive health checking.
pub(crate) fn ejection(cluster: &str) {
    global().cluster(cluster, |c| &c.ejections);
}

/// Counts an open connection on the entrypoint at `index` until the guard is dropped.
pub(crate) fn connection(index: usize) -> ConnectionGuard {
    if let Some(e) = global().entrypoint(index) {
        e.active_connections.fetch_add(1, Ordering::Relaxed);
        e.connections.fetch_add(1, Ordering::Relaxed);
    }
    ConnectionGuard { index }
}

/// See [`connection`].
#[derive(Debug)]
pub(crate) struct ConnectionGuard {
    index: usize,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Some(e) = global().entrypoint(self.index) {
            e.active_connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Metrics {
    /// Names the entrypoints, in listener order. Only the first call counts.
    pub(crate) fn init_entrypoints<S: AsRef<str>>(&self, names: &[S]) {
        let _ = self.entrypoints.set(
            names
                .iter()
                .map(|n| EntrypointStats {
                    name: n.as_ref().to_owned(),
                    requests: ByClass::default(),
                    active_connections: AtomicI64::new(0),
                    connections: AtomicU64::new(0),
                })
                .collect(),
        );
    }

    fn entrypoint(&self, index: usize) -> Option<&EntrypointStats> {
        self.entrypoints.get().and_then(|e| e.get(index))
    }

    /// A request on the entrypoint at `index` was answered with `status`.
    pub(crate) fn entrypoint_request(&self, index: usize, status: u16) {
        if let Some(e) = self.entrypoint(index) {
            e.requests.count(status);
        }
    }

    /// The counters of route `name` (serving `service`): the ones a live table already uses for
    /// it, else new ones. Called when a table is built.
    pub(crate) fn route(&self, name: &str, service: &str) -> Arc<RouteStats> {
        let mut routes = self
            .routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (name.to_owned(), service.to_owned());
        if let Some(stats) = routes.get(&key).and_then(Weak::upgrade) {
            return stats;
        }
        routes.retain(|_, weak| weak.strong_count() > 0);
        let stats = Arc::new(RouteStats::new(name, service));
        routes.insert(key, Arc::downgrade(&stats));
        stats
    }

    /// Forgets the counters of clusters not in `names` (the clusters of the table just built).
    pub(crate) fn keep_clusters(&self, mut has: impl FnMut(&str) -> bool) {
        self.clusters.retain(|name, _| has(name));
    }

    fn cluster(&self, name: &str, counter: impl Fn(&ClusterStats) -> &AtomicU64) {
        if let Some(stats) = self.clusters.get(name) {
            counter(&stats).fetch_add(1, Ordering::Relaxed);
            return;
        }
        let stats = self.clusters.entry(name.into()).or_default();
        counter(&stats).fetch_add(1, Ordering::Relaxed);
    }

    /// An access-log line was handed to the writer.
    pub(crate) fn access_log_line(&self) {
        self.access_log_lines.fetch_add(1, Ordering::Relaxed);
    }

    /// An access-log line was dropped: the writer is behind and its queue is full.
    pub(crate) fn access_log_dropped(&self) {
        self.access_log_dropped.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn access_log_dropped_count(&self) -> u64 {
        load(&self.access_log_dropped)
    }

    /// The snapshot cache file was written (`ok`) or could not be.
    pub(crate) fn cache_written(&self, ok: bool) {
        let counter = if ok {
            &self.cache_writes
        } else {
            &self.cache_write_errors
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The whole exposition, in Prometheus' text format (version 0.0.4).
pub(crate) fn render(metrics: &Metrics, state: &State) -> String {
    let mut out = Text::default();
    snapshot(&mut out, state);
    routes(&mut out, metrics);
    clusters(&mut out, metrics);
    entrypoints(&mut out, metrics);

    out.family(
        "berth_proxy_access_log_lines_total",
        "counter",
        "Access-log lines handed to the writer.",
    );
    out.sample(
        "berth_proxy_access_log_lines_total",
        &[],
        load(&metrics.access_log_lines),
    );
    out.family(
        "berth_proxy_access_log_dropped_total",
        "counter",
        "Access-log lines dropped because the writer was behind (requests never wait for the log).",
    );
    out.sample(
        "berth_proxy_access_log_dropped_total",
        &[],
        load(&metrics.access_log_dropped),
    );
    out.family(
        "berth_proxy_cache_writes_total",
        "counter",
        "Snapshots written to the --cache-dir file.",
    );
    out.sample("berth_proxy_cache_writes_total", &[], load(&metrics.cache_writes));
    out.family(
        "berth_proxy_cache_write_errors_total",
        "counter",
        "Snapshots that could not be written to the --cache-dir file.",
    );
    out.sample(
        "berth_proxy_cache_write_errors_total",
        &[],
        load(&metrics.cache_write_errors),
    );
    out.into_string()
}

fn snapshot(out: &mut Text, state: &State) {
    let table = state.table();
    out.family(
        "berth_proxy_snapshot_info",
        "gauge",
        "The applied snapshot; its version is the label (absent before the first).",
    );
    if let Some(t) = table.as_ref() {
        out.sample("berth_proxy_snapshot_info", &[("version", t.version())], 1);
    }
    out.family(
        "berth_proxy_snapshot_age_seconds",
        "gauge",
        "Seconds since the applied snapshot was applied (absent before the first).",
    );
    if let Some(t) = table.as_ref() {
        out.sample_f64(
            "berth_proxy_snapshot_age_seconds",
            &[],
            t.built_at().elapsed().as_secs_f64(),
        );
    }
    out.family(
        "berth_proxy_snapshot_from_cache",
        "gauge",
        "1 while the snapshot served was read from --cache-dir at start and no control plane has answered since, else 0.",
    );
    out.sample(
        "berth_proxy_snapshot_from_cache",
        &[],
        u64::from(state.cached_from().is_some()),
    );
    out.family("berth_proxy_routes", "gauge", "Routes in the applied snapshot.");
    out.sample(
        "berth_proxy_routes",
        &[],
        table.as_ref().map_or(0, |t| t.routes().len()) as u64,
    );
}

fn routes(out: &mut Text, metrics: &Metrics) {
    let mut live: Vec<Arc<RouteStats>> = metrics
        .routes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .values()
        .filter_map(Weak::upgrade)
        .collect();
    live.sort_by(|a, b| (&a.route, &a.service).cmp(&(&b.route, &b.service)));

    out.family(
        "berth_proxy_requests_total",
        "counter",
        "Requests matched to a route, by route, service and status class of the response.",
    );
    for r in &live {
        for (i, class) in CODE_CLASSES.iter().enumerate() {
            out.sample(
                "berth_proxy_requests_total",
                &[
                    ("route", &r.route),
                    ("service", &r.service),
                    ("code_class", class),
                ],
                r.requests.get(i),
            );
        }
    }
    out.family(
        "berth_proxy_request_duration_seconds",
        "histogram",
        "Time from receiving a matched request to the end of its response body, by route and service.",
    );
    for r in &live {
        r.duration.render_samples(
            out,
            "berth_proxy_request_duration_seconds",
            &[("route", &r.route), ("service", &r.service)],
        );
    }
    out.family(
        "berth_proxy_request_bytes_total",
        "counter",
        "Request body bytes received for matched requests (as declared by Content-Length), by route and service.",
    );
    for r in &live {
        out.sample(
            "berth_proxy_request_bytes_total",
            &[("route", &r.route), ("service", &r.service)],
            load(&r.request_bytes),
        );
    }
    out.family(
        "berth_proxy_response_bytes_total",
        "counter",
        "Response body bytes sent for matched requests, by route and service.",
    );
    for r in &live {
        out.sample(
            "berth_proxy_response_bytes_total",
            &[("route", &r.route), ("service", &r.service)],
            load(&r.response_bytes),
        );
    }
}

fn clusters(out: &mut Text, metrics: &Metrics) {
    let mut clusters: Vec<(String, [u64; 3])> = metrics
        .clusters
        .iter()
        .map(|e| {
            let c = e.value();
            (
                e.key().to_string(),
                [load(&c.connect_errors), load(&c.retries), load(&c.ejections)],
            )
        })
        .collect();
    clusters.sort();
    let families = [
        (
            "berth_proxy_upstream_connect_errors_total",
            "Connections to an endpoint that failed (refused, timed out, TLS), by cluster.",
        ),
        (
            "berth_proxy_retries_total",
            "Requests sent again after a failed attempt, by cluster.",
        ),
        (
            "berth_proxy_endpoint_ejections_total",
            "Endpoints ejected by passive health checking, by cluster.",
        ),
    ];
    for (i, (name, help)) in families.iter().enumerate() {
        out.family(name, "counter", help);
        for (cluster, values) in &clusters {
            out.sample(name, &[("cluster", cluster)], values[i]);
        }
    }
}

fn entrypoints(out: &mut Text, metrics: &Metrics) {
    let entrypoints = metrics.entrypoints.get().map_or(&[][..], |e| &e[..]);
    out.family(
        "berth_proxy_entrypoint_requests_total",
        "counter",
        "Every request answered (matched or not), by entrypoint and status class.",
    );
    for e in entrypoints {
        for (i, class) in CODE_CLASSES.iter().enumerate() {
            out.sample(
                "berth_proxy_entrypoint_requests_total",
                &[("entrypoint", &e.name), ("code_class", class)],
                e.requests.get(i),
            );
        }
    }
    out.family(
        "berth_proxy_active_connections",
        "gauge",
        "Client connections open now, by entrypoint.",
    );
    for e in entrypoints {
        out.sample_i64(
            "berth_proxy_active_connections",
            &[("entrypoint", &e.name)],
            e.active_connections.load(Ordering::Relaxed),
        );
    }
    out.family(
        "berth_proxy_connections_total",
        "counter",
        "Client connections accepted, by entrypoint.",
    );
    for e in entrypoints {
        out.sample(
            "berth_proxy_connections_total",
            &[("entrypoint", &e.name)],
            load(&e.connections),
        );
    }
}

#[cfg(test)]
mod tests;
