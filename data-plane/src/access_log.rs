//! The access log: one line per request, written off the request path.
//!
//! For: the `--access-log` target (standard output, standard error or a file, appended to) and
//! the `--access-log-format` (`text`, one Common-Log-Format-like line, or `json`, one object per
//! line with Traefik's access-log field names), and the writer thread. The request path only
//! [`AccessLog::push`]es an [`Entry`] into a bounded queue: when the writer is behind and the queue
//! is full the line is dropped and counted (`berth_proxy_access_log_dropped_total`), so a slow disk
//! or a blocked pipe never holds up a request. The writer formats, writes through a buffer and
//! flushes whenever the queue runs empty.
//! Not for: deciding what a request's fields are (see `proxy::record`) or diagnostics (the
//! tracing log on standard error, `--log-level`).

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::uri::Authority;
use http::{HeaderValue, Method, Uri, Version};
use serde::Serialize;

use crate::metrics;
use crate::table::Route;

/// Lines waiting for the writer before new ones are dropped.
const QUEUE: usize = 8192;

/// Where lines go (`--access-log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Off,
    Stdout,
    Stderr,
    File(PathBuf),
}

impl Target {
    /// `off`, `stdout`, `stderr` or a file path.
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        match value.trim() {
            "" => Err("empty: give off, stdout, stderr or a file path".into()),
            "off" | "none" => Ok(Self::Off),
            "stdout" | "-" => Ok(Self::Stdout),
            "stderr" => Ok(Self::Stderr),
            path => Ok(Self::File(path.into())),
        }
    }
}

/// How lines are written (`--access-log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// `client - - [time] "METHOD path PROTO" status bytes "host" "route" "service" "endpoint" "request-id" Nms`.
    Text,
    /// One JSON object per line with Traefik's field names (ClientAddr, RequestHost, DownstreamStatus…).
    Json,
}

/// What one request's line says.
#[derive(Debug)]
pub(crate) struct Entry {
    pub start: SystemTime,
    pub duration: Duration,
    pub client: SocketAddr,
    pub host: HeaderValue,
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub status: u16,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub entrypoint: Arc<str>,
    pub route: Option<Arc<Route>>,
    pub endpoint: Option<Authority>,
    pub request_id: Option<HeaderValue>,
}

/// The request path's handle on the writer; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AccessLog {
    queue: SyncSender<Entry>,
}

impl AccessLog {
    /// Opens `target` (a file is created if missing and appended to) and starts the writer
    /// thread. `None` for [`Target::Off`].
    pub(crate) fn start(target: &Target, format: Format) -> io::Result<Option<Self>> {
        let out: Box<dyn Write + Send> = match target {
            Target::Off => return Ok(None),
            Target::Stdout => Box::new(io::stdout()),
            Target::Stderr => Box::new(io::stderr()),
            Target::File(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
        };
        Ok(Some(Self::with_writer(out, format, QUEUE)?))
    }

    /// Starts the writer thread on `out` with a queue of `capacity` lines.
    pub(crate) fn with_writer(
        out: Box<dyn Write + Send>,
        format: Format,
        capacity: usize,
    ) -> io::Result<Self> {
        let (queue, lines) = mpsc::sync_channel(capacity);
        std::thread::Builder::new()
            .name("berth-access-log".into())
            .spawn(move || write_loop(lines, BufWriter::new(out), format))?;
        Ok(Self { queue })
    }

    /// Hands `entry` to the writer; never waits. A full queue drops the line (counted).
    pub(crate) fn push(&self, entry: Entry) {
        match self.queue.try_send(entry) {
            Ok(()) => metrics::global().access_log_line(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                metrics::global().access_log_dropped()
            }
        }
    }
}

fn write_loop(lines: Receiver<Entry>, mut out: BufWriter<Box<dyn Write + Send>>, format: Format) {
    let mut line = String::with_capacity(512);
    let mut failing = false;
    while let Ok(first) = lines.recv() {
        let mut next = Some(first);
        while let Some(entry) = next {
            line.clear();
            match format {
                Format::Text => text(&entry, &mut line),
                Format::Json => json(&entry, &mut line),
            }
            line.push('\n');
            let result = out.write_all(line.as_bytes());
            report(&mut failing, result);
            next = lines.try_recv().ok();
        }
        let result = out.flush();
        report(&mut failing, result);
    }
    let _ = out.flush();
}

/// Logs the first failure of a streak and the recovery, not every line.
fn report(failing: &mut bool, result: io::Result<()>) {
    match result {
        Err(error) if !*failing => {
            *failing = true;
            tracing::warn!(%error, "cannot write the access log; lines are lost until it works again");
        }
        Ok(()) if *failing => {
            *failing = false;
            tracing::info!("writing the access log again");
        }
        _ => {}
    }
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The request target as received: path and query.
fn request_path(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// The host header without its port (Traefik's `RequestHost`).
fn host_without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The text line; see [`Format::Text`]. Quoted fields have `"`, `\` and control characters
/// escaped; an absent field is `-`.
pub(crate) fn text(e: &Entry, out: &mut String) {
    let _ = write!(
        out,
        "{} - - [{}] \"{} ",
        e.client.ip().to_canonical(),
        clf_time(e.start),
        e.method
    );
    quoted_inner(out, request_path(&e.uri));
    let _ = write!(
        out,
        " {}\" {} {} ",
        protocol(e.version),
        e.status,
        e.response_bytes
    );
    quoted(out, e.host.to_str().ok());
    out.push(' ');
    quoted(out, e.route.as_ref().map(|r| r.name.as_str()));
    out.push(' ');
    quoted(out, e.route.as_ref().map(|r| r.service.as_str()));
    out.push(' ');
    quoted(out, e.endpoint.as_ref().map(Authority::as_str));
    out.push(' ');
    quoted(out, e.request_id.as_ref().and_then(|v| v.to_str().ok()));
    let _ = write!(out, " {}ms", e.duration.as_millis());
}

fn quoted(out: &mut String, value: Option<&str>) {
    match value {
        Some(v) => {
            out.push('"');
            quoted_inner(out, v);
            out.push('"');
        }
        None => out.push('-'),
    }
}

fn quoted_inner(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// The JSON line's fields, named as Traefik's access log names them.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct JsonLine<'a> {
    #[serde(rename = "StartUTC")]
    start_utc: String,
    client_addr: String,
    client_host: String,
    client_port: String,
    request_addr: &'a str,
    request_host: &'a str,
    request_method: &'a str,
    request_path: &'a str,
    request_protocol: &'static str,
    request_content_size: u64,
    downstream_status: u16,
    downstream_content_size: u64,
    /// Nanoseconds, as Traefik writes it.
    duration: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    router_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_addr: Option<&'a str>,
    #[serde(rename = "entryPointName")]
    entrypoint_name: &'a str,
    #[serde(rename = "request_X-Request-Id", skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

/// The JSON line; see [`Format::Json`].
pub(crate) fn json(e: &Entry, out: &mut String) {
    let host = e.host.to_str().unwrap_or("");
    let line = JsonLine {
        start_utc: rfc3339(e.start),
        client_addr: e.client.to_string(),
        client_host: e.client.ip().to_canonical().to_string(),
        client_port: e.client.port().to_string(),
        request_addr: host,
        request_host: host_without_port(host),
        request_method: e.method.as_str(),
        request_path: request_path(&e.uri),
        request_protocol: protocol(e.version),
        request_content_size: e.request_bytes,
        downstream_status: e.status,
        downstream_content_size: e.response_bytes,
        duration: u64::try_from(e.duration.as_nanos()).unwrap_or(u64::MAX),
        router_name: e.route.as_ref().map(|r| r.name.as_str()),
        service_name: e.route.as_ref().map(|r| r.service.as_str()),
        service_addr: e.endpoint.as_ref().map(Authority::as_str),
        entrypoint_name: &e.entrypoint,
        request_id: e.request_id.as_ref().and_then(|v| v.to_str().ok()),
    };
    match serde_json::to_string(&line) {
        Ok(text) => out.push_str(&text),
        Err(error) => {
            let _ = write!(
                out,
                "{{\"error\":\"cannot encode the access log line: {error}\"}}"
            );
        }
    }
}

/// Year, month (1-12), day, hour, minute, second, nanosecond of `t` in UTC.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
        since.subsec_nanos(),
    )
}

/// `2026-11-27T19:04:58.123456789Z`.
fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ns) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ns:09}Z")
}

/// `27/Nov/2026:19:04:58 +0000`, the Common Log Format's time.
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, _) = civil(t);
    let month = MONTHS.get(mo as usize - 1).copied().unwrap_or("Jan");
    format!("{d:02}/{month}/{y:04}:{h:02}:{mi:02}:{s:02} +0000")
}

#[cfg(test)]
mod tests;
