//! The route discovery stream server: one task per connected proxy.
//!
//! Each stream follows the protocol documented in `routes.proto`: wait for the Hello, answer with
//! the current snapshot (or `up_to_date` when the proxy already has its version), then push every
//! new snapshot as the store publishes it, and record each Ack and Nack. Per-proxy state lives in
//! a shared [`Proxies`] registry read by the admin API; an entry exists exactly while its stream
//! is open. A version a proxy NACKed is not sent to it again; the next change is.
//!
//! A Hello over the bounds of `crate::hello` is refused before anything is registered or
//! logged of it. Pushes, their bytes, ACKs and NACKs are counted in [`Metrics`] (atomics only).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::v1::proxy_message::Kind;
use berth_proto::v1::route_discovery_server::RouteDiscovery;
use berth_proto::v1::route_update::Body;
use berth_proto::v1::{Hello, ProxyMessage, RouteUpdate, UpToDate};
use dashmap::DashMap;
use futures::Stream;
use prost::Message as _;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::store::{Published, Store};

/// How long a new stream may take to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

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
}

impl DiscoveryService {
    pub(crate) fn new(
        store: Store,
        proxies: Proxies,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
    ) -> DiscoveryService {
        DiscoveryService {
            store,
            proxies,
            metrics,
            next_stream: AtomicU64::new(1),
            stop,
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

type UpdateStream = Pin<Box<dyn Stream<Item = Result<RouteUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl RouteDiscovery for DiscoveryService {
    type StreamStream = UpdateStream;

    async fn stream(
        &self,
        request: Request<Streaming<ProxyMessage>>,
    ) -> Result<Response<UpdateStream>, Status> {
        let peer = request.remote_addr();
        let mut incoming = request.into_inner();
        let hello = self.hello(&mut incoming).await.inspect_err(|status| {
            self.metrics.hello_refused();
            // The status names the field and its limit, never what the peer sent.
            warn!(?peer, "stream refused: {}", status.message());
        })?;
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        info!(stream = id, node = %hello.node_id, ?peer, version = %hello.version, "proxy connected");
        let (tx, rx) = mpsc::channel(4);
        let session = Session {
            id,
            store: self.store.clone(),
            proxies: self.proxies.clone(),
            metrics: self.metrics.clone(),
            nonce: 0,
            tx,
            stop: self.stop.clone(),
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
    tx: mpsc::Sender<Result<RouteUpdate, Status>>,
    stop: watch::Receiver<bool>,
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
    async fn serve(&mut self, held: Option<String>, incoming: &mut Streaming<ProxyMessage>) -> String {
        let mut published = self.store.subscribe();
        let mut stop = self.stop.clone();
        // What the proxy has (per its Hello) or was last sent: a version is never sent twice in a
        // row, and a NACKed one is not re-sent.
        let mut last_sent: Option<String> = None;
        let mut holds = held;
        loop {
            let current = published.borrow_and_update().clone();
            if let Some(current) = current {
                let version = &current.compiled.version;
                if last_sent.as_ref() != Some(version) {
                    let up_to_date = holds.as_ref() == Some(version);
                    if let Err(e) = self.send(&current, up_to_date).await {
                        return e;
                    }
                    last_sent = Some(version.clone());
                    holds = None;
                }
            }
            tokio::select! {
                () = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
                    let _ = self.tx.send(Err(Status::unavailable("control plane shutting down"))).await;
                    return "control plane shutting down".into();
                }
                changed = published.changed() => {
                    if changed.is_err() {
                        return "control plane shutting down".into();
                    }
                }
                message = incoming.next() => match message {
                    None => return "stream closed by the proxy".into(),
                    Some(Err(status)) => return format!("stream error: {}", status.message()),
                    Some(Ok(message)) => self.record(message),
                },
            }
        }
    }

    async fn send(&mut self, current: &Published, up_to_date: bool) -> Result<(), String> {
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let version = current.compiled.version.clone();
        let body = if up_to_date {
            Body::UpToDate(UpToDate {})
        } else {
            Body::Snapshot(current.compiled.snapshot.clone())
        };
        let update = RouteUpdate {
            version: version.clone(),
            nonce: nonce.clone(),
            body: Some(body),
        };
        debug!(stream = self.id, %version, %nonce, up_to_date, "sending update");
        let bytes = update.encoded_len();
        self.tx
            .send(Ok(update))
            .await
            .map_err(|_| "stream closed by the proxy".to_string())?;
        self.metrics.pushed(!up_to_date, bytes);
        if let Some(mut status) = self.proxies.get_mut(&self.id) {
            status.sent_version = Some(version);
        }
        Ok(())
    }

    fn record(&mut self, message: ProxyMessage) {
        let Some(mut status) = self.proxies.get_mut(&self.id) else {
            return;
        };
        match message.kind {
            Some(Kind::Ack(ack)) => {
                // Only the answer to the last push says what the proxy routes by now: an ACK of
                // an earlier push was overtaken by a newer version already on its way.
                if ack.nonce != self.nonce.to_string() {
                    debug!(stream = self.id, node = %status.node_id, nonce = %clip(&ack.nonce), last = self.nonce, "ignoring the ACK of an earlier push");
                    return;
                }
                debug!(stream = self.id, node = %status.node_id, version = %clip(&ack.version), nonce = %ack.nonce, "ACK");
                status.acked_version = Some(clip(&ack.version).to_string());
                self.metrics.acked();
            }
            Some(Kind::Nack(nack)) => {
                self.metrics.nacked();
                warn!(
                    stream = self.id, node = %status.node_id, version = %clip(&nack.version), nonce = %clip(&nack.nonce),
                    "proxy rejected snapshot: {}", clip(&nack.error)
                );
                status.last_nack = Some(NackRecord {
                    version: clip(&nack.version).to_string(),
                    nonce: clip(&nack.nonce).to_string(),
                    error: clip(&nack.error).to_string(),
                    at: SystemTime::now(),
                });
            }
            Some(Kind::Hello(_)) => {
                warn!(stream = self.id, node = %status.node_id, "ignoring a second Hello")
            }
            None => warn!(stream = self.id, node = %status.node_id, "ignoring an empty message"),
        }
    }
}

/// At most 1024 bytes of a text a proxy sent, for the log and the admin API.
fn clip(text: &str) -> &str {
    match text.char_indices().nth(1024) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}
