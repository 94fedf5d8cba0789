//! The control plane's Prometheus metrics: counters the hot paths bump, and the text exposition
//! `GET /metrics` serves.
//!
//! The stream sessions and the compile loop only touch atomics here (no lock, no allocation);
//! everything else a scrape shows (the current snapshot, the watch's counters, the connected
//! proxies) is read at scrape time from where it already lives. Names follow Prometheus'
//! conventions: `berth_control_` prefix, units in the name, `_total` on counters.
//!
//! This module does not serve HTTP (see `admin`) and decides nothing: it only counts and renders.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use berth_support::prometheus::{load, Buckets, Histogram, Text};

use crate::server::Proxies;
use crate::store::{Kind, Published};
use crate::watch::WatchStatus;

/// Upper bounds (seconds) of the compile duration histogram's buckets.
#[derive(Debug)]
struct CompileBuckets;

impl Buckets for CompileBuckets {
    const BOUNDS: &'static [f64] = &[
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
}

/// What the stream sessions and the compile loop count. Cumulative since start.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pushes_full: AtomicU64,
    pushes_delta: AtomicU64,
    pushes_up_to_date: AtomicU64,
    pushed_bytes_full: AtomicU64,
    pushed_bytes_delta: AtomicU64,
    pushed_bytes_up_to_date: AtomicU64,
    streams_timed_out: AtomicU64,
    acks: AtomicU64,
    nacks: AtomicU64,
    hellos_refused: AtomicU64,
    compile: Histogram<CompileBuckets>,
}

impl Metrics {
    /// An update of this kind was pushed, `bytes` long on the wire.
    pub(crate) fn pushed(&self, kind: Kind, bytes: usize) {
        let (count, total) = match kind {
            Kind::Full => (&self.pushes_full, &self.pushed_bytes_full),
            Kind::Delta => (&self.pushes_delta, &self.pushed_bytes_delta),
            Kind::UpToDate => (&self.pushes_up_to_date, &self.pushed_bytes_up_to_date),
        };
        count.fetch_add(1, Ordering::Relaxed);
        total.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A stream was dropped because its proxy did not answer a push in time.
    pub(crate) fn stream_timed_out(&self) {
        self.streams_timed_out.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn acked(&self) {
        self.acks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn nacked(&self) {
        self.nacks.fetch_add(1, Ordering::Relaxed);
    }

    /// A stream was refused because of its Hello (missing, malformed or oversized).
    pub(crate) fn hello_refused(&self) {
        self.hellos_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// One compile (apply the watch's changes and assemble the snapshot) took `took`.
    pub(crate) fn compiled(&self, took: Duration) {
        self.compile.observe(took);
    }

    /// The whole exposition, in Prometheus' text format (version 0.0.4).
    pub(crate) fn render(
        &self,
        current: Option<&Published>,
        watch: &WatchStatus,
        proxies: &Proxies,
    ) -> String {
        let mut out = Text::default();

        out.family(
            "berth_control_snapshot_info",
            "gauge",
            "The snapshot currently served; its version is the label (absent before the first).",
        );
        if let Some(current) = current {
            out.sample(
                "berth_control_snapshot_info",
                &[("version", &current.compiled.version)],
                1,
            );
        }
        out.family(
            "berth_control_snapshot_build_time_seconds",
            "gauge",
            "When the current snapshot was built, in unix seconds.",
        );
        if let Some(current) = current {
            let at = current.built_at.duration_since(UNIX_EPOCH).unwrap_or_default();
            out.sample_f64("berth_control_snapshot_build_time_seconds", &[], at.as_secs_f64());
        }
        self.compile.render(
            &mut out,
            "berth_control_compile_duration_seconds",
            "How long compiling the watch's changes into a snapshot took.",
        );

        out.family(
            "berth_control_services",
            "gauge",
            "Services in the Consul catalog as last read.",
        );
        out.sample("berth_control_services", &[], watch.services() as u64);
        out.family(
            "berth_control_routes",
            "gauge",
            "Routes of the current snapshot by state: served, or rejected (each naming its service and tag in /api/snapshot).",
        );
        let (served, rejected) = current.map_or((0, 0), |c| {
            (c.compiled.snapshot.routes.len(), c.compiled.errors.len())
        });
        out.sample("berth_control_routes", &[("state", "served")], served as u64);
        out.sample("berth_control_routes", &[("state", "rejected")], rejected as u64);

        out.family(
            "berth_control_consul_requests_total",
            "counter",
            "Requests made to Consul, by kind.",
        );
        for (kind, n) in watch.requests() {
            out.sample("berth_control_consul_requests_total", &[("kind", kind)], n);
        }
        out.family(
            "berth_control_consul_errors_total",
            "counter",
            "Consul requests that failed, by the part of the watch that made them.",
        );
        for (part, n) in watch.errors() {
            out.sample("berth_control_consul_errors_total", &[("part", part)], n);
        }
        out.family(
            "berth_control_consul_blocking_query_seconds",
            "summary",
            "How long Consul held the watch's blocking queries (asked with an index) before answering, by query: up to the wait (5m) when nothing changes, short when the catalog moves.",
        );
        let blocking: Vec<_> = watch.blocking().collect();
        for (query, count, sum, _) in &blocking {
            out.sample_f64(
                "berth_control_consul_blocking_query_seconds_sum",
                &[("query", query)],
                *sum,
            );
            out.sample(
                "berth_control_consul_blocking_query_seconds_count",
                &[("query", query)],
                *count,
            );
        }
        out.family(
            "berth_control_consul_blocking_query_last_seconds",
            "gauge",
            "How long the last answered blocking query was held, by query.",
        );
        for (query, _, _, last) in &blocking {
            out.sample_f64(
                "berth_control_consul_blocking_query_last_seconds",
                &[("query", query)],
                *last,
            );
        }
        out.family(
            "berth_control_consul_service_reads_total",
            "counter",
            "Services read again from Consul after a change.",
        );
        out.sample(
            "berth_control_consul_service_reads_total",
            &[],
            watch.service_reads_total(),
        );
        out.family(
            "berth_control_consul_full_reads_total",
            "counter",
            "Reads of the whole catalog (at start, after an index reset, and each resync).",
        );
        out.sample(
            "berth_control_consul_full_reads_total",
            &[],
            watch.full_reads_total(),
        );
        out.family(
            "berth_control_compiled_services_total",
            "counter",
            "Services compiled again after a change.",
        );
        out.sample(
            "berth_control_compiled_services_total",
            &[],
            watch.compiled_services_total(),
        );

        let version = current.map(|c| c.compiled.version.as_str());
        let (mut connected, mut behind) = (0u64, 0u64);
        for entry in proxies.iter() {
            connected += 1;
            if entry.value().acked_version.as_deref() != version {
                behind += 1;
            }
        }
        out.family(
            "berth_control_proxies_connected",
            "gauge",
            "Proxies with an open route discovery stream.",
        );
        out.sample("berth_control_proxies_connected", &[], connected);
        out.family(
            "berth_control_proxies_behind",
            "gauge",
            "Connected proxies that have not ACKed the current snapshot.",
        );
        out.sample("berth_control_proxies_behind", &[], behind);
        out.family(
            "berth_control_pushes_total",
            "counter",
            "Updates pushed to proxies, by kind: a full snapshot, a delta against the version the proxy held, or up_to_date for a proxy that already held the version.",
        );
        let kinds = [
            (Kind::Full, &self.pushes_full, &self.pushed_bytes_full),
            (Kind::Delta, &self.pushes_delta, &self.pushed_bytes_delta),
            (
                Kind::UpToDate,
                &self.pushes_up_to_date,
                &self.pushed_bytes_up_to_date,
            ),
        ];
        for (kind, count, _) in kinds {
            out.sample(
                "berth_control_pushes_total",
                &[("kind", kind.as_str())],
                load(count),
            );
        }
        out.family(
            "berth_control_pushed_bytes_total",
            "counter",
            "Bytes of the updates pushed to proxies (encoded messages), by kind.",
        );
        for (kind, _, bytes) in kinds {
            out.sample(
                "berth_control_pushed_bytes_total",
                &[("kind", kind.as_str())],
                load(bytes),
            );
        }
        out.family(
            "berth_control_streams_timed_out_total",
            "counter",
            "Streams dropped because the proxy did not answer a push within --stream-ack-timeout.",
        );
        out.sample(
            "berth_control_streams_timed_out_total",
            &[],
            load(&self.streams_timed_out),
        );
        out.family(
            "berth_control_acks_total",
            "counter",
            "ACKs of the last push received from proxies.",
        );
        out.sample("berth_control_acks_total", &[], load(&self.acks));
        out.family(
            "berth_control_nacks_total",
            "counter",
            "NACKs received from proxies (a snapshot a proxy refused to apply).",
        );
        out.sample("berth_control_nacks_total", &[], load(&self.nacks));
        out.family(
            "berth_control_hellos_refused_total",
            "counter",
            "Streams refused for their Hello (missing, malformed or over a size limit).",
        );
        out.sample(
            "berth_control_hellos_refused_total",
            &[],
            load(&self.hellos_refused),
        );
        out.into_string()
    }
}

#[cfg(test)]
mod tests;
