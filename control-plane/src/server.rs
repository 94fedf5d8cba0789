//! The route discovery stream server: one task per connected proxy.
//!
//! Each stream follows the protocol documented in `routes.proto`: wait for the Hello, answer with
//! the current snapshot (or `up_to_date` when the proxy already has its version), then push every
//! new snapshot as the store publishes it, and record each Ack and Nack. Per-proxy state lives in
//! a shared [`Proxies`] registry read by the admin API; an entry exists exactly while its stream
//! is open. After the first answer a proxy receives deltas against the version it ACKed (full
//! snapshots when that version is unknown or after a NACK); a full snapshot a proxy NACKed is not
//! sent to it again, the next change is. One push is in flight per stream, chosen from the latest
//! state when the previous one is answered; a proxy that does not answer in time is dropped.
//! Bodies are encoded once for all streams (`store::Encoded`, sent through `wire`).
//!
//! A Hello over the bounds of `crate::hello` is refused before anything is registered or
//! logged of it. Pushes, their bytes, ACKs and NACKs are counted in [`Metrics`] (atomics only).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::v1::proxy_message::Kind;
use berth_proto::v1::{Hello, ProxyMessage};
use dashmap::DashMap;
use futures::Stream;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::store::{Encoded, Kind as PushKind, Published, Store};
use crate::wire::Push;

/// How long a new stream may take to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// How many ACK deadlines a push may wait in its stream's queue before the connection takes it
/// (a busy connection, say during a mass reconnect); a stream whose push is still not taken
/// after that is stuck and dropped.
const QUEUED_DEADLINES: u32 = 3;

/// What the admin API shows of one connected proxy.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProxyStatus {
    pub node_id: String,
    pub peer: Option<SocketAddr>,
    pub entrypoints: Vec<String>,
    pub build: String,
    #[serde(serialize_with = "rfc3339")]
    pub connected_since: SystemTime,
    /// The version the proxy last ACKed on this stream (or announced in its Hello).
    pub acked_version: Option<String>,
    /// The version last sent, ACKed or not.
    pub sent_version: Option<String>,
    pub last_nack: Option<NackRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct NackRecord {
    pub version: String,
    pub nonce: String,
    pub error: String,
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_rfc3339_seconds(*t).to_string())
}

/// Connected proxies by stream id.
pub(crate) type Proxies = Arc<DashMap<u64, ProxyStatus>>;

/// The gRPC service.
pub(crate) struct DiscoveryService {
    store: Store,
    proxies: Proxies,
    metrics: Arc<Metrics>,
    next_stream: AtomicU64,
    /// Becomes true when the control plane stops; every stream then ends with UNAVAILABLE.
    stop: watch::Receiver<bool>,
    /// A stream whose proxy does not answer a push within this long is dropped.
    ack_timeout: Duration,
}

impl DiscoveryService {
    pub(crate) fn new(
        store: Store,
        proxies: Proxies,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
        ack_timeout: Duration,
    ) -> DiscoveryService {
        DiscoveryService {
            store,
            proxies,
            metrics,
            next_stream: AtomicU64::new(1),
            stop,
            ack_timeout,
        }
    }

    /// The stream's first message, which must be a Hello within the bounds of `crate::hello`.
    async fn hello(&self, incoming: &mut Streaming<ProxyMessage>) -> Result<Hello, Status> {
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, incoming.next()).await {
            Err(_) => {
                return Err(Status::deadline_exceeded(
                    "no Hello within 30s of opening the stream",
                ))
            }
            Ok(None) => return Err(Status::cancelled("stream closed before its Hello")),
            Ok(Some(Err(status))) => return Err(status),
            Ok(Some(Ok(ProxyMessage {
                kind: Some(Kind::Hello(hello)),
            }))) => hello,
            Ok(Some(Ok(_))) => {
                return Err(Status::invalid_argument(
                    "the first message on a stream must be a Hello",
                ))
            }
        };
        crate::hello::validate(&hello).map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(hello)
    }
}

/// The updates one stream sends.
pub(crate) type PushStream = Pin<Box<dyn Stream<Item = Result<Push, Status>> + Send>>;

impl DiscoveryService {
    /// One proxy's stream: checks its Hello, then runs its session in a task of its own.
    pub(crate) async fn stream(
        &self,
        request: Request<Streaming<ProxyMessage>>,
    ) -> Result<Response<PushStream>, Status> {
        let peer = request.remote_addr();
        let mut incoming = request.into_inner();
        let hello = self.hello(&mut incoming).await.inspect_err(|status| {
            self.metrics.hello_refused();
            // The status names the field and its limit, never what the peer sent.
            warn!(?peer, "stream refused: {}", status.message());
        })?;
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        info!(stream = id, node = %hello.node_id, ?peer, version = %hello.version, "proxy connected");
        // One push is in flight at a time (the next waits for its answer), so the queue holds
        // at most that push and the final status.
        let (tx, rx) = mpsc::channel(2);
        let (taken_tx, taken) = mpsc::unbounded_channel();
        let session = Session {
            id,
            store: self.store.clone(),
            proxies: self.proxies.clone(),
            metrics: self.metrics.clone(),
            nonce: 0,
            tx,
            taken_tx,
            taken,
            stop: self.stop.clone(),
            ack_timeout: self.ack_timeout,
        };
        tokio::spawn(session.run(hello, peer, incoming));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

struct Session {
    id: u64,
    store: Store,
    proxies: Proxies,
    metrics: Arc<Metrics>,
    nonce: u64,
    tx: mpsc::Sender<Result<Push, Status>>,
    /// Each push tells, by its nonce, when the connection takes it from `tx`'s queue.
    taken_tx: mpsc::UnboundedSender<u64>,
    taken: mpsc::UnboundedReceiver<u64>,
    stop: watch::Receiver<bool>,
    ack_timeout: Duration,
}

/// The push a stream waits an answer for.
struct InFlight {
    nonce: String,
    version: String,
    kind: PushKind,
    /// While queued: `QUEUED_DEADLINES` ACK deadlines from when it was queued; once the
    /// connection has taken it, one ACK deadline from then.
    deadline: tokio::time::Instant,
    taken: bool,
}

impl Session {
    async fn run(mut self, hello: Hello, peer: Option<SocketAddr>, mut incoming: Streaming<ProxyMessage>) {
        let node = hello.node_id.clone();
        let held = (!hello.version.is_empty()).then(|| hello.version.clone());
        self.proxies.insert(
            self.id,
            ProxyStatus {
                node_id: hello.node_id,
                peer,
                entrypoints: hello.entrypoints,
                build: hello.build,
                connected_since: SystemTime::now(),
                acked_version: held.clone(),
                sent_version: None,
                last_nack: None,
            },
        );
        let end = self.serve(held, &mut incoming).await;
        self.proxies.remove(&self.id);
        info!(stream = self.id, %node, "proxy disconnected: {end}");
    }

    /// Runs the stream until it ends; returns why it ended.
    ///
    /// One push is in flight at a time: the next is chosen when the proxy has answered, from the
    /// latest state then (so a slow proxy skips the versions it was too slow for, and a delta
    /// always starts from the version the proxy ACKed). A proxy that does not answer within
    /// `ack_timeout` of the connection taking the push (or whose connection does not take it
    /// within `QUEUED_DEADLINES` of them) is dropped; it reconnects and says what it holds.
    async fn serve(&mut self, held: Option<String>, incoming: &mut Streaming<ProxyMessage>) -> String {
        let mut published = self.store.subscribe();
        let mut stop = self.stop.clone();
        // The version the proxy routes by, as far as this stream knows (Hello, then ACKs);
        // `None` after a NACK or for a proxy with nothing: it then receives full snapshots.
        let mut holds = held;
        // Nothing is sent before the answer to the Hello; after that only changes.
        let mut answered_hello = false;
        // A full snapshot the proxy NACKed is not sent to it again.
        let mut refused: Option<String> = None;
        let mut in_flight: Option<InFlight> = None;
        loop {
            if in_flight.is_none() {
                let current = published.borrow_and_update().clone();
                if let Some(current) = current {
                    let version = &current.compiled.version;
                    let needed = if holds.as_ref() == Some(version) {
                        !answered_hello
                    } else {
                        refused.as_ref() != Some(version)
                    };
                    if needed {
                        match self.send(&current, holds.as_deref()).await {
                            Ok(sent) => in_flight = Some(sent),
                            Err(e) => return e,
                        }
                        answered_hello = true;
                    }
                }
            }
            let deadline = in_flight.as_ref().map(|f| f.deadline);
            tokio::select! {
                () = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
                    let _ = self.tx.send(Err(Status::unavailable("control plane shutting down"))).await;
                    return "control plane shutting down".into();
                }
                changed = published.changed(), if in_flight.is_none() => {
                    if changed.is_err() {
                        return "control plane shutting down".into();
                    }
                }
                () = sleep_until(deadline) => {
                    self.metrics.stream_timed_out();
                    let why = if in_flight.as_ref().is_some_and(|f| f.taken) {
                        format!("no ACK or NACK within {:?} of a push (--stream-ack-timeout)", self.ack_timeout)
                    } else {
                        format!(
                            "a push waited {:?} for the connection to take it ({QUEUED_DEADLINES} x --stream-ack-timeout)",
                            self.ack_timeout * QUEUED_DEADLINES
                        )
                    };
                    let _ = self.tx.try_send(Err(Status::deadline_exceeded(why.clone())));
                    return format!("dropped: {why}");
                }
                Some(nonce) = self.taken.recv() => {
                    if let Some(f) = in_flight.as_mut().filter(|f| !f.taken && f.nonce == nonce.to_string()) {
                        f.taken = true;
                        f.deadline = tokio::time::Instant::now() + self.ack_timeout;
                    }
                }
                message = incoming.next() => match message {
                    None => return "stream closed by the proxy".into(),
                    Some(Err(status)) => return format!("stream error: {}", clip(status.message())),
                    Some(Ok(message)) => {
                        self.record(message, &mut in_flight, &mut holds, &mut refused)
                    }
                },
            }
        }
    }

    /// Sends the current state to a proxy that holds `holds`: `up_to_date`, a delta from it,
    /// or the full snapshot.
    async fn send(&mut self, current: &Published, holds: Option<&str>) -> Result<InFlight, String> {
        let version = current.compiled.version.clone();
        let encoded = match holds {
            Some(held) if held == version => Arc::new(Encoded::up_to_date()),
            Some(held) => self.store.delta(held, current).unwrap_or_else(|| current.full()),
            None => current.full(),
        };
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let push =
            Push::new(&version, &nonce, encoded.body.clone()).on_taken(self.taken_tx.clone(), self.nonce);
        let bytes = push.len();
        debug!(stream = self.id, %version, %nonce, kind = encoded.kind.as_str(), items = encoded.items, bytes, "sending update");
        self.tx
            .send(Ok(push))
            .await
            .map_err(|_| "stream closed by the proxy".to_string())?;
        self.metrics.pushed(encoded.kind, bytes);
        if let Some(mut status) = self.proxies.get_mut(&self.id) {
            status.sent_version = Some(version.clone());
        }
        Ok(InFlight {
            nonce,
            version,
            kind: encoded.kind,
            deadline: tokio::time::Instant::now() + self.ack_timeout * QUEUED_DEADLINES,
            taken: false,
        })
    }

    fn record(
        &mut self,
        message: ProxyMessage,
        in_flight: &mut Option<InFlight>,
        holds: &mut Option<String>,
        refused: &mut Option<String>,
    ) {
        let Some(mut status) = self.proxies.get_mut(&self.id) else {
            return;
        };
        let answers = |nonce: &str| in_flight.as_ref().is_some_and(|f| f.nonce == nonce);
        match message.kind {
            Some(Kind::Ack(ack)) => {
                // Only the answer to the push in flight says what the proxy routes by now.
                if !answers(&ack.nonce) {
                    debug!(stream = self.id, node = %status.node_id, nonce = %clip(&ack.nonce), last = self.nonce, "ignoring an ACK of no push in flight");
                    return;
                }
                let Some(sent) = in_flight.take() else { return };
                debug!(stream = self.id, node = %status.node_id, version = %sent.version, nonce = %sent.nonce, "ACK");
                status.acked_version = Some(sent.version.clone());
                *holds = Some(sent.version);
                self.metrics.acked();
            }
            Some(Kind::Nack(nack)) => {
                self.metrics.nacked();
                warn!(
                    stream = self.id, node = %status.node_id, version = %clip(&nack.version), nonce = %clip(&nack.nonce),
                    "proxy rejected update: {}", clip(&nack.error)
                );
                status.last_nack = Some(NackRecord {
                    version: clip(&nack.version).to_string(),
                    nonce: clip(&nack.nonce).to_string(),
                    error: clip(&nack.error).to_string(),
                    at: SystemTime::now(),
                });
                if !answers(&nack.nonce) {
                    return;
                }
                let Some(sent) = in_flight.take() else { return };
                // What the proxy holds is no longer certain: full snapshots from now on, until
                // it ACKs one. A refused delta is answered with the full snapshot at once; a
                // refused full snapshot is not sent again.
                *holds = None;
                if sent.kind == PushKind::Full {
                    *refused = Some(sent.version);
                }
            }
            Some(Kind::Hello(_)) => {
                warn!(stream = self.id, node = %status.node_id, "ignoring a second Hello")
            }
            None => warn!(stream = self.id, node = %status.node_id, "ignoring an empty message"),
        }
    }
}

/// Waits until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// At most 1024 bytes of a text a proxy sent, for the log and the admin API.
fn clip(text: &str) -> &str {
    match text.char_indices().nth(1024) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}
