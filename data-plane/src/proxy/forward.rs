//! Phase 5, forward: send the request to the backend and wait for its response headers.
//!
//! For: the pooled HTTP/1.1 client (hyper-util legacy `Client`; plain TCP for `http` clusters,
//! rustls for `https` ones, one pool), the connect and response-header timeouts, and telling the
//! client *why* a backend failed (refused → 502, timed out → 504, TLS failure → 502 naming it).
//! Request and response bodies stream through; nothing is buffered.
//! Not for: deciding where to send (see `route`, `endpoint`) or header changes (see `forwarded`).

use std::io;
use std::time::Duration;

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::ProxyError;

/// How long an idle pooled backend connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug)]
pub(crate) struct Forwarder {
    client: Client<HttpsConnector<HttpConnector>, Incoming>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl Forwarder {
    pub(crate) fn new(
        connect_timeout: Duration,
        request_timeout: Duration,
        tls: rustls::ClientConfig,
    ) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(connect_timeout));
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            // `forwarded::request` always sets Host.
            .set_host(false)
            .build(connector);
        Self {
            client,
            connect_timeout,
            request_timeout,
        }
    }

    /// Sends `req` (whose URI already points at `endpoint`) and returns the response once its
    /// headers arrived; the body streams afterwards.
    pub(crate) async fn send(
        &self,
        req: Request<Incoming>,
        endpoint: &Authority,
    ) -> Result<Response<Incoming>, ProxyError> {
        match tokio::time::timeout(self.request_timeout, self.client.request(req)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(self.classify(&error, endpoint)),
            Err(_) => Err(ProxyError::ResponseTimeout {
                endpoint: endpoint.clone(),
                timeout: self.request_timeout,
            }),
        }
    }

    fn classify(&self, error: &hyper_util::client::legacy::Error, endpoint: &Authority) -> ProxyError {
        let endpoint = endpoint.clone();
        if error.is_connect() {
            match io_error_kind(error) {
                Some(io::ErrorKind::TimedOut) => ProxyError::ConnectTimeout {
                    endpoint,
                    timeout: self.connect_timeout,
                },
                Some(io::ErrorKind::ConnectionRefused) => ProxyError::Refused { endpoint },
                _ => ProxyError::ConnectFailed {
                    endpoint,
                    reason: describe(error),
                },
            }
        } else {
            ProxyError::Backend {
                endpoint,
                reason: describe(error),
            }
        }
    }
}

/// The kind of the first I/O error in the error's source chain.
fn io_error_kind(error: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        current = e.source();
    }
    None
}

/// The innermost useful message of an error chain (hyper-util's outer messages are generic).
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        text = e.to_string();
        current = e.source();
    }
    text
}
