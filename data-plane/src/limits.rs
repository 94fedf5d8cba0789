//! Limits on client connections, against slow, idle and greedy clients.
//!
//! For: the settings of the entrypoints' HTTP servers that bound what one client may hold
//! (`--max-header-bytes`, `--max-headers`, HTTP/2 pings), the cap on concurrent connections
//! (`--max-connections`, shared by every entrypoint), and the watchdog of one connection: it tells
//! the listener when a client took longer than `--header-read-timeout` to send a request's head
//! (HTTP/1.1) or when a connection has had no request in progress for `--client-idle-timeout`
//! (HTTP/1.1 and HTTP/2, a connection that never sent a byte included).
//! Not for: accepting and serving connections (see `listener`) or anything about requests once
//! their head is read (see `proxy`).
//!
//! How the watchdog knows: [`Watched`] wraps the client's stream and notes the first bytes read
//! while no request is in progress (the start of a request head); [`Tracked`] wraps each response
//! body and counts the request in progress from the moment hyper hands it to the proxy until its
//! response body is dropped (sent or abandoned). Both only touch atomics; the watchdog is one
//! timer per connection that wakes at most every `--header-read-timeout`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::proxy::outgoing::{Passthrough, Rider};

/// How often an idle HTTP/2 connection is pinged, and how long the client has to answer before the
/// connection is closed as dead.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a connection told to close (idle) may take to do so before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The HTTP/2 connection preface, which tells an HTTP/2 client from an HTTP/1.1 one.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The limits, as the flags set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientLimits {
    /// Request line and headers together (HTTP/1.1), or the header list (HTTP/2), in bytes.
    pub max_header_bytes: usize,
    /// Header fields per request.
    pub max_headers: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Concurrent client connections over all entrypoints; `None`: no cap.
    pub max_connections: Option<usize>,
}

/// What every entrypoint shares: the limits and the connection cap's permits.
#[derive(Debug)]
pub(crate) struct Limits {
    pub settings: ClientLimits,
    connections: Option<Arc<Semaphore>>,
    /// When the last "connection refused at the cap" warning was logged (seconds since start of
    /// the process's clock), so a flood logs once a second, not once per connection.
    last_warned: AtomicU64,
    clock: std::time::Instant,
}

impl Limits {
    pub(crate) fn new(settings: ClientLimits) -> Self {
        let connections = settings
            .max_connections
            .map(|n| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS))));
        Self {
            settings,
            connections,
            last_warned: AtomicU64::new(u64::MAX),
            clock: std::time::Instant::now(),
        }
    }

    /// A slot for a new connection, or `None` when `--max-connections` are open: the caller closes
    /// the connection at once (so the client learns at once, and can retry elsewhere, rather than
    /// waiting in the kernel's backlog).
    pub(crate) fn admit(&self) -> Option<Admitted> {
        match &self.connections {
            None => Some(Admitted(None)),
            Some(semaphore) => match semaphore.clone().try_acquire_owned() {
                Ok(permit) => Some(Admitted(Some(permit))),
                Err(_) => {
                    let now = self.clock.elapsed().as_secs();
                    let last = self.last_warned.swap(now, Ordering::Relaxed);
                    if last != now {
                        tracing::warn!(
                            max_connections = self.settings.max_connections.unwrap_or(0),
                            "refusing new client connections: --max-connections are open"
                        );
                    }
                    None
                }
            },
        }
    }

    /// Sets the limits hyper enforces on `builder`'s HTTP/1.1 and HTTP/2 connections.
    ///
    /// HTTP/1.1: a request head longer than `max_header_bytes` (request line included) or with
    /// more than `max_headers` fields gets a 431 from hyper, and the connection is closed. The
    /// read buffer is capped at the same size, which is what bounds the memory of a client that
    /// never finishes its head. hyper's own header timer is off: it would also close idle
    /// keep-alive connections, which the watchdog does by `--client-idle-timeout` instead.
    /// HTTP/2: the header list is capped at `max_header_bytes` (a larger one is answered 431 by
    /// the h2 library), and the client is pinged every 30s when quiet, closed if it does not
    /// answer within 20s.
    pub(crate) fn configure(&self, builder: &mut auto::Builder<hyper_util::rt::TokioExecutor>) {
        let s = &self.settings;
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_headers(s.max_headers)
            .max_buf_size(s.max_header_bytes.max(MIN_HEADER_BYTES));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_TIMEOUT);
    }
}

/// The smallest `--max-header-bytes` (hyper's smallest read buffer).
pub(crate) const MIN_HEADER_BYTES: usize = 8192;

/// A connection's slot under `--max-connections`; given back when dropped.
#[derive(Debug)]
pub(crate) struct Admitted(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

/// Why the watchdog ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// An HTTP/1.1 request head took longer than `--header-read-timeout`: close at once.
    HeaderRead,
    /// No request in progress for `--client-idle-timeout`: close gracefully (GOAWAY for HTTP/2).
    Idle,
}

/// Which protocol the client speaks, as far as its first bytes tell.
const PROTOCOL_UNKNOWN: u8 = 0;
const PROTOCOL_H1: u8 = 1;
const PROTOCOL_H2: u8 = 2;

/// One connection's activity, shared by its stream wrapper, its response bodies and its watchdog.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    /// Requests whose response body is not yet dropped.
    in_flight: AtomicU32,
    /// Milliseconds since `epoch` when the connection last became idle (no request in progress).
    idle_since: AtomicU64,
    /// Milliseconds since `epoch`, plus one, when the first byte of a request head arrived; 0: none
    /// is being read.
    head_started: AtomicU64,
    /// `PROTOCOL_*`.
    protocol: AtomicU8,
    /// How many bytes of the HTTP/2 preface the client's first bytes matched so far.
    preface_matched: AtomicU8,
}

impl Activity {
    pub(crate) fn new(settings: &ClientLimits) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            header_read_timeout: settings.header_read_timeout,
            idle_timeout: settings.idle_timeout,
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            protocol: AtomicU8::new(PROTOCOL_UNKNOWN),
            preface_matched: AtomicU8::new(0),
        })
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, millis: u64) -> Instant {
        self.epoch + Duration::from_millis(millis)
    }

    /// A request's head has been read and the proxy starts on it; the returned guard, kept with
    /// the response body, ends it.
    pub(crate) fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Release);
        RequestGuard(self.clone())
    }

    /// Notes bytes read from the client.
    fn read(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut protocol = self.protocol.load(Ordering::Relaxed);
        if protocol == PROTOCOL_UNKNOWN {
            protocol = self.sniff(bytes);
        }
        if protocol == PROTOCOL_H2 {
            // HTTP/2 frames (pings, settings) come and go between requests; only idleness counts.
            // (The preface's first bytes may have started the head timer before it was known.)
            self.head_started.store(0, Ordering::Release);
            return;
        }
        if self.in_flight.load(Ordering::Acquire) == 0 && self.head_started.load(Ordering::Acquire) == 0 {
            self.head_started.store(self.millis() + 1, Ordering::Release);
        }
    }

    /// Compares the client's first bytes with the HTTP/2 preface.
    fn sniff(&self, bytes: &[u8]) -> u8 {
        let matched = usize::from(self.preface_matched.load(Ordering::Relaxed));
        let expected = &H2_PREFACE[matched..];
        let n = bytes.len().min(expected.len());
        let protocol = if bytes[..n] != expected[..n] {
            PROTOCOL_H1
        } else if matched + n == H2_PREFACE.len() {
            PROTOCOL_H2
        } else {
            // `matched + n` < 24, so it fits.
            self.preface_matched.store((matched + n) as u8, Ordering::Relaxed);
            PROTOCOL_UNKNOWN
        };
        self.protocol.store(protocol, Ordering::Relaxed);
        protocol
    }

    /// Resolves when the connection should end, and why. Wakes at most every
    /// `--header-read-timeout` to look.
    pub(crate) async fn expired(&self) -> Expired {
        loop {
            let now = Instant::now();
            let tick = now + self.header_read_timeout.min(self.idle_timeout);
            let (deadline, why) = if self.in_flight.load(Ordering::Acquire) > 0 {
                (tick, None)
            } else {
                match self.head_started.load(Ordering::Acquire) {
                    0 => (
                        self.at(self.idle_since.load(Ordering::Acquire)) + self.idle_timeout,
                        Some(Expired::Idle),
                    ),
                    started => (
                        self.at(started - 1) + self.header_read_timeout,
                        Some(Expired::HeaderRead),
                    ),
                }
            };
            match why {
                Some(why) if deadline <= now => return why,
                _ => tokio::time::sleep_until(deadline.min(tick)).await,
            }
        }
    }

    /// How long a connection told to close may take before it is dropped.
    pub(crate) fn close_grace() -> Duration {
        CLOSE_GRACE
    }
}

/// Counts one request in progress until dropped.
#[derive(Debug)]
pub(crate) struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            activity.idle_since.store(activity.millis(), Ordering::Release);
        }
    }
}

/// A client stream whose reads the watchdog sees.
#[derive(Debug)]
pub(crate) struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.activity.read(&buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body that keeps its request counted as in progress until dropped.
pub(crate) type Tracked<B> = Passthrough<B, RequestGuard>;

impl Rider for RequestGuard {
    const WATCHES_END: bool = false;

    fn ended(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ClientLimits {
        ClientLimits {
            max_header_bytes: 65536,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(180),
            max_connections: Some(1),
        }
    }

    #[test]
    fn tells_http2_from_http1_by_the_preface() {
        let a = Activity::new(&settings());
        a.read(b"PRI * HT");
        assert_eq!(a.protocol.load(Ordering::Relaxed), PROTOCOL_UNKNOWN);
        a.read(b"TP/2.0\r\n\r\nSM\r\n\r\n\0\0");
        assert_eq!(a.protocol.load(Ordering::Relaxed), PROTOCOL_H2);
        assert_eq!(
            a.head_started.load(Ordering::Relaxed),
            0,
            "HTTP/2 has no head timer"
        );

        let b = Activity::new(&settings());
        b.read(b"P");
        b.read(b"OST / HTTP/1.1\r\n");
        assert_eq!(b.protocol.load(Ordering::Relaxed), PROTOCOL_H1);
        assert_ne!(b.head_started.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_request_in_progress_stops_the_head_timer() {
        let a = Activity::new(&settings());
        a.read(b"GET / HTTP/1.1\r\n");
        assert_ne!(a.head_started.load(Ordering::Relaxed), 0);
        let guard = a.begin();
        assert_eq!(a.head_started.load(Ordering::Relaxed), 0);
        a.read(b"body bytes");
        assert_eq!(a.head_started.load(Ordering::Relaxed), 0, "a body is not a head");
        drop(guard);
        assert_eq!(a.in_flight.load(Ordering::Relaxed), 0);
        a.read(b"GET /next");
        assert_ne!(a.head_started.load(Ordering::Relaxed), 0);
    }

    /// Real time, short timeouts: each wait is checked to end neither early nor much late.
    #[tokio::test]
    async fn expires_idle_and_slow_heads() {
        let quick = ClientLimits {
            header_read_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(300),
            ..settings()
        };
        let idle = Activity::new(&quick);
        let started = Instant::now();
        assert_eq!(idle.expired().await, Expired::Idle);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
            "{waited:?}"
        );

        let slow = Activity::new(&quick);
        slow.read(b"GET / HT");
        let started = Instant::now();
        assert_eq!(slow.expired().await, Expired::HeaderRead);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(90) && waited < Duration::from_secs(3),
            "{waited:?}"
        );

        let busy = Activity::new(&quick);
        let guard = busy.begin();
        let waited = tokio::time::timeout(Duration::from_millis(800), busy.expired()).await;
        assert!(waited.is_err(), "a request in progress keeps the connection");
        drop(guard);
        let started = Instant::now();
        assert_eq!(busy.expired().await, Expired::Idle);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
    }

    #[test]
    fn the_cap_refuses_then_admits_again() {
        let limits = Limits::new(settings());
        let first = limits.admit().expect("one slot");
        assert!(limits.admit().is_none(), "the cap is 1");
        drop(first);
        assert!(limits.admit().is_some());
        let unlimited = Limits::new(ClientLimits {
            max_connections: None,
            ..settings()
        });
        let held: Vec<_> = (0..100).filter_map(|_| unlimited.admit()).collect();
        assert_eq!(held.len(), 100);
    }
}
