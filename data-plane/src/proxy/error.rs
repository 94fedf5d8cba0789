//! Why the proxy could not serve a request, and the response the client gets for it.
//!
//! For: one error type for every step of the request path, its status code, a short plain-text
//! body naming the cause, and a machine-readable `x-berth-error` header.
//! Not for: errors of the control-plane stream or of startup.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::uri::Authority;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};
use thiserror::Error;

use super::Body;

/// Response header naming the proxy error, for clients and tests (for example `no-route`).
pub(crate) const X_BERTH_ERROR: HeaderName = HeaderName::from_static("x-berth-error");

#[derive(Debug, Error)]
pub(crate) enum ProxyError {
    #[error("no routing snapshot applied yet")]
    NoSnapshot,
    #[error("request has no Host header")]
    NoHost,
    #[error("no route for host {host:?} on entrypoint {entrypoint:?}")]
    NoRoute { host: String, entrypoint: Arc<str> },
    #[error("no route for path {path:?} on host {host:?} (entrypoint {entrypoint:?})")]
    NoPathRoute {
        host: String,
        path: String,
        entrypoint: Arc<str>,
    },
    #[error("route {route:?}: cluster {cluster:?} has no healthy endpoints")]
    NoEndpoints { route: String, cluster: String },
    #[error("cannot forward the request: {0}")]
    BadRequest(String),
    #[error("backend {endpoint} refused the connection")]
    Refused { endpoint: Authority },
    #[error("cannot connect to backend {endpoint}: {reason}")]
    ConnectFailed { endpoint: Authority, reason: String },
    #[error("backend {endpoint} did not accept the connection within {timeout:?}")]
    ConnectTimeout { endpoint: Authority, timeout: Duration },
    #[error("backend {endpoint} sent no response headers within {timeout:?}")]
    ResponseTimeout { endpoint: Authority, timeout: Duration },
    #[error("backend {endpoint} failed: {reason}")]
    Backend { endpoint: Authority, reason: String },
}

impl ProxyError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::NoSnapshot | Self::NoEndpoints { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::NoHost | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NoRoute { .. } | Self::NoPathRoute { .. } => StatusCode::NOT_FOUND,
            Self::Refused { .. } | Self::ConnectFailed { .. } | Self::Backend { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Self::ConnectTimeout { .. } | Self::ResponseTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Short, stable name of the cause, sent in `x-berth-error`.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::NoSnapshot => "no-snapshot",
            Self::NoHost => "no-host",
            Self::NoRoute { .. } | Self::NoPathRoute { .. } => "no-route",
            Self::NoEndpoints { .. } => "no-endpoints",
            Self::BadRequest(_) => "bad-request",
            Self::Refused { .. } => "backend-refused",
            Self::ConnectFailed { .. } => "backend-unreachable",
            Self::ConnectTimeout { .. } => "backend-connect-timeout",
            Self::ResponseTimeout { .. } => "backend-timeout",
            Self::Backend { .. } => "backend-error",
        }
    }

    /// Whether the backend (not the request or the routing state) is at fault.
    pub(crate) fn is_backend(&self) -> bool {
        matches!(
            self,
            Self::Refused { .. }
                | Self::ConnectFailed { .. }
                | Self::ConnectTimeout { .. }
                | Self::ResponseTimeout { .. }
                | Self::Backend { .. }
        )
    }

    pub(crate) fn into_response(self) -> Response<Body> {
        let mut response = Response::new(Either::Right(Full::new(Bytes::from(format!("{self}\n")))));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(X_BERTH_ERROR, HeaderValue::from_static(self.code()));
        response
    }
}
