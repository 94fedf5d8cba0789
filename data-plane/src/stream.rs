//! The control-plane stream client: the only source of routing changes.
//!
//! For: keeping one RouteDiscovery.Stream open to a control plane — connect, send Hello, hand each
//! RouteUpdate to `state` and send back its ACK/NACK — and reconnecting with backoff, rotating
//! through the configured control planes, when the stream breaks. See `STREAM.md` beside this file
//! for the states and what routing does in each.
//! Not for: building or swapping tables (that is `state::State::apply`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::route_discovery_client::RouteDiscoveryClient;
use berth_proto::v1::{proxy_message, Hello, ProxyMessage};
use berth_support::backoff::Backoff;
use berth_support::error_chain;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::config::ControlPlaneUrl;
use crate::state::State;

/// How long a freshly opened stream may stay silent before the proxy gives up on it. The control
/// plane answers a Hello at once, so this only trips on a wedged control plane.
const FIRST_UPDATE_TIMEOUT: Duration = Duration::from_secs(15);
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// HTTP/2 pings detect a control plane that vanished without closing the connection.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why one stream ended.
#[derive(Debug, Error)]
enum SessionError {
    #[error("invalid control-plane URL: {0}")]
    Url(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("stream refused: {0}")]
    Refused(tonic::Status),
    #[error("stream failed: {0}")]
    Broken(tonic::Status),
    #[error("control plane closed the stream")]
    Closed,
    #[error("no update within {0:?} of opening the stream")]
    Silent(Duration),
    #[error("cannot send to the control plane: the stream is gone")]
    SendFailed,
}

/// TLS towards https:// control planes (`--control-plane-ca`, `--control-plane-cert`,
/// `--control-plane-key`). The files are read at every connect, so renewed certificates are used
/// from the next connection on, without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientTls {
    pub ca: PathBuf,
    /// Certificate and key presented to a control plane that requires client certificates.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTls {
    fn config(&self) -> Result<ClientTlsConfig, SessionError> {
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path)
                .map_err(|e| SessionError::Tls(format!("{flag} {}: cannot read: {e}", path.display())))
        };
        let ca = read("--control-plane-ca", &self.ca)?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some((cert, key)) = &self.identity {
            let cert = read("--control-plane-cert", cert)?;
            let key = read("--control-plane-key", key)?;
            config = config.identity(Identity::from_pem(cert, key));
        }
        Ok(config)
    }

    /// What to check when a TLS connection fails.
    fn hint(&self) -> String {
        let mut hint = format!(
            "the control plane's certificate must be signed by --control-plane-ca {} and name the URL's host",
            self.ca.display()
        );
        match &self.identity {
            Some((cert, _)) => hint.push_str(&format!(
                "; this proxy presents --control-plane-cert {}, which the control plane's --grpc-client-ca must have signed",
                cert.display()
            )),
            None => hint.push_str(
                "; a control plane with --grpc-client-ca also needs --control-plane-cert/--control-plane-key",
            ),
        }
        hint
    }
}

/// Connects to the control planes and applies what they send, forever.
#[derive(Debug)]
pub(crate) struct StreamClient {
    pub control_planes: Vec<ControlPlaneUrl>,
    pub tls: Option<ClientTls>,
    pub connect_timeout: Duration,
    pub state: Arc<State>,
}

impl StreamClient {
    /// Runs until the task is dropped. Never returns on its own: losing the control plane only
    /// means routing by the last snapshot until it comes back.
    pub(crate) async fn run(self) {
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
        let mut failures: u32 = 0;
        for url in self.control_planes.iter().cycle() {
            let mut delivered = false;
            let error = self.session(url, &mut delivered).await;
            self.state.set_control_plane(None);
            if delivered {
                backoff.reset();
                failures = 0;
            }
            failures += 1;
            let delay = backoff.next_delay();
            let routing = if self.state.version().is_empty() {
                "no snapshot yet, answering 503"
            } else {
                "routing by the last snapshot"
            };
            if failures == 1 {
                tracing::warn!(
                    control_plane = %url,
                    %error,
                    retry_in = ?delay,
                    routing,
                    "control plane unavailable; reconnecting, trying each configured control plane in turn \
                     (further failures are logged at debug level until a stream delivers again)"
                );
            } else {
                tracing::debug!(control_plane = %url, %error, retry_in = ?delay, attempt = failures, "reconnect failed");
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// One stream: connecting, waiting for the first update, streaming. Returns why it ended;
    /// sets `delivered` once an update arrived.
    async fn session(&self, url: &ControlPlaneUrl, delivered: &mut bool) -> SessionError {
        // Connecting.
        let endpoint = match Endpoint::from_shared(url.as_str().to_owned()) {
            Ok(e) => e,
            Err(e) => return SessionError::Url(error_chain(&e)),
        };
        let mut endpoint = endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let tls = self.tls.as_ref().filter(|_| url.as_str().starts_with("https://"));
        if let Some(tls) = tls {
            let config = match tls.config() {
                Ok(config) => config,
                Err(e) => return e,
            };
            endpoint = match endpoint.tls_config(config) {
                Ok(endpoint) => endpoint,
                Err(e) => return SessionError::Tls(format!("{} ({})", error_chain(&e), tls.hint())),
            };
        }
        // A TLS failure says which flag and file to check. A control plane that requires a
        // client certificate closes the connection of a client without one after the handshake,
        // so a connection closed or cancelled at once counts as one too.
        let hinted = |text: String| match tls {
            Some(tls)
                if ["certificate", "tls", "alert", "handshake", "closed", "cancel"]
                    .iter()
                    .any(|word| text.to_ascii_lowercase().contains(word)) =>
            {
                SessionError::Tls(format!("{text} ({})", tls.hint()))
            }
            _ => SessionError::Connect(text),
        };
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => return hinted(error_chain(&e)),
        };
        let mut client = RouteDiscoveryClient::new(channel);
        let (tx, rx) = mpsc::channel::<ProxyMessage>(4);
        let hello = Hello {
            node_id: self.state.node_id().to_owned(),
            entrypoints: self.state.entrypoints().to_vec(),
            // The table in use, whether pushed earlier on another stream or read from the
            // snapshot cache at start: an unchanged control plane answers `up_to_date`.
            version: self.state.version(),
            build: concat!("berth-proxy ", env!("CARGO_PKG_VERSION")).to_owned(),
        };
        tracing::debug!(control_plane = %url, version = %hello.version, "opening stream");
        if tx
            .send(ProxyMessage {
                kind: Some(proxy_message::Kind::Hello(hello)),
            })
            .await
            .is_err()
        {
            return SessionError::SendFailed;
        }
        let mut updates = match client.stream(ReceiverStream::new(rx)).await {
            Ok(response) => response.into_inner(),
            Err(status) if tls.is_some() => {
                return match hinted(format!("stream refused: {status}")) {
                    SessionError::Connect(_) => SessionError::Refused(status),
                    tls_error => tls_error,
                }
            }
            Err(status) => return SessionError::Refused(status),
        };
        self.state.set_control_plane(Some(url.as_str()));

        // Waiting for the first update, then streaming.
        loop {
            let next = if *delivered {
                updates.message().await
            } else {
                match tokio::time::timeout(FIRST_UPDATE_TIMEOUT, updates.message()).await {
                    Ok(next) => next,
                    Err(_) => return SessionError::Silent(FIRST_UPDATE_TIMEOUT),
                }
            };
            let update = match next {
                Ok(Some(update)) => update,
                Ok(None) => return SessionError::Closed,
                Err(status) => return SessionError::Broken(status),
            };
            if !*delivered {
                *delivered = true;
                tracing::info!(control_plane = %url, "streaming routes from control plane");
            }
            let reply = self.state.apply(&update);
            if tx.send(reply).await.is_err() {
                return SessionError::SendFailed;
            }
        }
    }
}
