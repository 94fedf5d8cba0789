//! The control plane's Prometheus metrics: counters the hot paths bump, and the text exposition
//! `GET /metrics` serves.
//!
//! The stream sessions and the compile loop only touch atomics here (no lock, no allocation);
//! everything else a scrape shows (the current snapshot, the watch's counters, the connected
//! proxies) is read at scrape time from where it already lives. Names follow Prometheus'
//! conventions: `berth_control_` prefix, units in the name, `_total` on counters.
//!
//! This module does not serve HTTP (see `admin`) and decides nothing: it only counts and renders.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use crate::server::Proxies;
use crate::store::Published;
use crate::watch::WatchStatus;

/// Upper bounds (seconds) of the compile duration histogram's buckets.
const COMPILE_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What the stream sessions and the compile loop count. Cumulative since start.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pushes_full: AtomicU64,
    pushes_up_to_date: AtomicU64,
    pushed_bytes: AtomicU64,
    acks: AtomicU64,
    nacks: AtomicU64,
    hellos_refused: AtomicU64,
    compile: Histogram,
}

impl Metrics {
    /// A snapshot was pushed whole (`full`) or as `up_to_date`, `bytes` long on the wire.
    pub(crate) fn pushed(&self, full: bool, bytes: usize) {
        let counter = if full {
            &self.pushes_full
        } else {
            &self.pushes_up_to_date
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.pushed_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
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
            "Updates pushed to proxies, by kind: a full snapshot, or up_to_date for a proxy that already held the version.",
        );
        out.sample(
            "berth_control_pushes_total",
            &[("kind", "full")],
            load(&self.pushes_full),
        );
        out.sample(
            "berth_control_pushes_total",
            &[("kind", "up_to_date")],
            load(&self.pushes_up_to_date),
        );
        out.family(
            "berth_control_pushed_bytes_total",
            "counter",
            "Bytes of the updates pushed to proxies (encoded messages).",
        );
        out.sample("berth_control_pushed_bytes_total", &[], load(&self.pushed_bytes));
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
        out.text
    }
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// A lock-free histogram of durations: per-bucket counts (not cumulative; summed when rendered),
/// the sum in microseconds and the count.
#[derive(Debug, Default)]
struct Histogram {
    /// One per bound of [`COMPILE_BUCKETS`], then one for larger observations.
    buckets: [AtomicU64; COMPILE_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = COMPILE_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(COMPILE_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut Text, name: &str, help: &str) {
        out.family(name, "histogram", help);
        let bucket_name = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, bound) in COMPILE_BUCKETS.iter().enumerate() {
            cumulative += load(&self.buckets[i]);
            out.sample(&bucket_name, &[("le", &bound.to_string())], cumulative);
        }
        cumulative += load(&self.buckets[COMPILE_BUCKETS.len()]);
        // +Inf is the count of every observation the buckets saw, so it never disagrees with
        // the buckets even while an observation is being recorded.
        out.sample(&bucket_name, &[("le", "+Inf")], cumulative);
        out.sample_f64(&format!("{name}_sum"), &[], load(&self.sum_micros) as f64 / 1e6);
        out.sample(&format!("{name}_count"), &[], load(&self.count));
    }
}

/// Prometheus text exposition being written.
#[derive(Default)]
struct Text {
    text: String,
}

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.labels(name, labels);
        let _ = writeln!(self.text, " {value}");
    }

    fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.labels(name, labels);
        let _ = writeln!(self.text, " {value}");
    }

    fn labels(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.text.push_str(name);
        if labels.is_empty() {
            return;
        }
        self.text.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
        }
        self.text.push('}');
    }
}

/// A label value as the text format writes it: backslash, double quote and line feed escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

/// A HELP text as the text format writes it: backslash and line feed escaped.
fn escape_help(value: &str) -> String {
    value.replace('\\', r"\\").replace('\n', r"\n")
}

#[cfg(test)]
mod tests;
