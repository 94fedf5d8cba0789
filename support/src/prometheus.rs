//! Prometheus text exposition (format 0.0.4) and a lock-free histogram, for the binaries'
//! `GET /metrics`.
//!
//! For: writing families and samples with correctly escaped labels ([`Text`]), and histograms of
//! durations with fixed buckets of atomics ([`Histogram`]) that a hot path can observe into without
//! a lock or an allocation; rendering happens on scrape only.
//! Not for: deciding what a binary counts or serving HTTP; each binary keeps its own counters and
//! names (`berth_control_*`, `berth_proxy_*`).

use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A histogram's bucket bounds, as a type so a histogram can be `Default`.
pub trait Buckets {
    /// Upper bounds in seconds, ascending; `+Inf` is implied.
    const BOUNDS: &'static [f64];
}

/// A lock-free histogram of durations: per-bucket counts (not cumulative; summed when rendered),
/// the sum in microseconds and the count.
#[derive(Debug)]
pub struct Histogram<B: Buckets> {
    /// One per bound of `B::BOUNDS`, then one for larger observations.
    buckets: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
    count: AtomicU64,
    bounds: PhantomData<B>,
}

impl<B: Buckets> Default for Histogram<B> {
    fn default() -> Self {
        Self {
            buckets: (0..=B::BOUNDS.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
            bounds: PhantomData,
        }
    }
}

impl<B: Buckets> Histogram<B> {
    /// Counts one observation. Lock-free, no allocation.
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = B::BOUNDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(B::BOUNDS.len());
        if let Some(b) = self.buckets.get(bucket) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes the whole family (`# HELP`, `# TYPE`, the buckets, `_sum`, `_count`).
    pub fn render(&self, out: &mut Text, name: &str, help: &str) {
        out.family(name, "histogram", help);
        self.render_samples(out, name, &[]);
    }

    /// Writes the samples only, with `labels` before `le`: for a family with one histogram per
    /// label set (declare the family once with [`Text::family`]).
    pub fn render_samples(&self, out: &mut Text, name: &str, labels: &[(&str, &str)]) {
        let bucket_name = format!("{name}_bucket");
        let bounds: Vec<String> = B::BOUNDS.iter().map(f64::to_string).collect();
        let mut with_le: Vec<(&str, &str)> = Vec::with_capacity(labels.len() + 1);
        with_le.extend_from_slice(labels);
        with_le.push(("le", ""));
        let last = with_le.len() - 1;
        let mut cumulative = 0;
        for (i, le) in bounds.iter().enumerate() {
            cumulative += self.buckets.get(i).map_or(0, load);
            with_le[last].1 = le;
            out.sample(&bucket_name, &with_le, cumulative);
        }
        cumulative += self.buckets.get(B::BOUNDS.len()).map_or(0, load);
        // +Inf is the count of every observation the buckets saw, so it never disagrees with
        // the buckets even while an observation is being recorded.
        with_le[last].1 = "+Inf";
        out.sample(&bucket_name, &with_le, cumulative);
        out.sample_f64(
            &format!("{name}_sum"),
            labels,
            load(&self.sum_micros) as f64 / 1e6,
        );
        out.sample(&format!("{name}_count"), labels, load(&self.count));
    }
}

/// A counter's current value.
pub fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Prometheus text exposition being written.
#[derive(Debug, Default)]
pub struct Text {
    text: String,
}

impl Text {
    /// Declares a family: its `# HELP` and `# TYPE` (`counter`, `gauge`, `histogram`).
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample of an integer value.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.labels(name, labels);
        let _ = writeln!(self.text, " {value}");
    }

    /// One sample of a signed integer value (a gauge that may go below zero).
    pub fn sample_i64(&mut self, name: &str, labels: &[(&str, &str)], value: i64) {
        self.labels(name, labels);
        let _ = writeln!(self.text, " {value}");
    }

    /// One sample of a float value.
    pub fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
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

    /// The exposition written so far.
    pub fn into_string(self) -> String {
        self.text
    }
}

/// The content type of the text exposition, for the `Content-Type` header.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value as the text format writes it: backslash, double quote and line feed escaped.
pub fn escape_label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

/// A HELP text as the text format writes it: backslash and line feed escaped.
pub fn escape_help(value: &str) -> String {
    value.replace('\\', r"\\").replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Three;
    impl Buckets for Three {
        const BOUNDS: &'static [f64] = &[0.01, 0.1, 1.0];
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_inf_equal_to_count() {
        let h = Histogram::<Three>::default();
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(10)); // on a bound: counted in it
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_secs(3));
        let mut out = Text::default();
        out.family("x_seconds", "histogram", "Help.");
        h.render_samples(&mut out, "x_seconds", &[("route", "web")]);
        let text = out.into_string();
        let expected = "# HELP x_seconds Help.\n# TYPE x_seconds histogram\n\
            x_seconds_bucket{route=\"web\",le=\"0.01\"} 2\n\
            x_seconds_bucket{route=\"web\",le=\"0.1\"} 3\n\
            x_seconds_bucket{route=\"web\",le=\"1\"} 3\n\
            x_seconds_bucket{route=\"web\",le=\"+Inf\"} 4\n\
            x_seconds_sum{route=\"web\"} 3.065\n\
            x_seconds_count{route=\"web\"} 4\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn unlabelled_histogram_renders_its_family() {
        let h = Histogram::<Three>::default();
        let mut out = Text::default();
        h.render(&mut out, "y_seconds", "Y.");
        let text = out.into_string();
        assert!(
            text.starts_with("# HELP y_seconds Y.\n# TYPE y_seconds histogram\n"),
            "{text}"
        );
        assert!(text.contains("y_seconds_bucket{le=\"+Inf\"} 0\n"), "{text}");
        assert!(text.ends_with("y_seconds_sum 0\ny_seconds_count 0\n"), "{text}");
    }

    #[test]
    fn labels_and_help_are_escaped() {
        let mut out = Text::default();
        out.family("z", "gauge", "Line\\one\ntwo");
        out.sample("z", &[("a", "q\"b\\s\nn"), ("b", "plain")], 1);
        out.sample_i64("z", &[], -2);
        out.sample_f64("z", &[], 0.5);
        assert_eq!(
            out.into_string(),
            "# HELP z Line\\\\one\\ntwo\n# TYPE z gauge\nz{a=\"q\\\"b\\\\s\\nn\",b=\"plain\"} 1\nz -2\nz 0.5\n"
        );
    }
}
