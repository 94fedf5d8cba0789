//! Why the proxy could not serve a request, and the response the client gets for it.
//!
//! For: one error type for every phase of the request path, its status code, a short plain-text
//! body naming the cause, and a machine-readable `x-berth-error` header. Where Traefik answers the
//! same situation with Go's `http.Error` (no route: 404; no server available: 503), the answer
//! also carries `X-Content-Type-Options: nosniff`, as Traefik's does; where Traefik's proxy writes
//! a bare status (502, 504) or Go's server refuses the request (400), it does not.
//! Not for: errors of the control-plane stream or of startup, or the answers of middlewares
//! (shaped as Traefik's: see `middleware::reply`).

use std::sync::Arc;
use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::uri::Authority;
use http::{HeaderName, HeaderValue, Response, StatusCode};
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
    #[error("{0}")]
    BadPath(String),
    #[error("no route for host {host:?} on entrypoint {entrypoint:?}")]
    NoRoute { host: String, entrypoint: Arc<str> },
    #[error("no route matches {method} {path:?} on host {host:?} (entrypoint {entrypoint:?})")]
    NoMatch {
        method: String,
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
            Self::NoHost | Self::BadPath(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NoRoute { .. } | Self::NoMatch { .. } => StatusCode::NOT_FOUND,
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
            Self::BadPath(_) | Self::BadRequest(_) => "bad-request",
            Self::NoRoute { .. } | Self::NoMatch { .. } => "no-route",
            Self::NoEndpoints { .. } => "no-endpoints",
            Self::Refused { .. } => "backend-refused",
            Self::ConnectFailed { .. } => "backend-unreachable",
            Self::ConnectTimeout { .. } => "backend-connect-timeout",
            Self::ResponseTimeout { .. } => "backend-timeout",
            Self::Backend { .. } => "backend-error",
        }
    }

    /// Whether Traefik answers this case with Go's `http.Error`, which sends
    /// `X-Content-Type-Options: nosniff`: its router's not-found handler, its load balancer
    /// without an available server (and, before any configuration, Berth's 503 in their stead).
    fn nosniff(&self) -> bool {
        matches!(
            self,
            Self::NoSnapshot | Self::NoRoute { .. } | Self::NoMatch { .. } | Self::NoEndpoints { .. }
        )
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
        let mut response = Response::new(Body::text(format!("{self}\n")));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(X_BERTH_ERROR, HeaderValue::from_static(self.code()));
        if self.nosniff() {
            headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nosniff_where_traefik_uses_http_error() {
        let endpoint = Authority::from_static("10.0.0.1:80");
        let cases = [
            (
                ProxyError::NoRoute {
                    host: "h".into(),
                    entrypoint: "web".into(),
                },
                true,
            ),
            (
                ProxyError::NoEndpoints {
                    route: "r".into(),
                    cluster: "c".into(),
                },
                true,
            ),
            (ProxyError::NoSnapshot, true),
            (ProxyError::NoHost, false),
            (
                ProxyError::Refused {
                    endpoint: endpoint.clone(),
                },
                false,
            ),
            (
                ProxyError::ResponseTimeout {
                    endpoint,
                    timeout: Duration::from_secs(1),
                },
                false,
            ),
        ];
        for (error, nosniff) in cases {
            let code = error.code();
            let response = error.into_response();
            assert_eq!(
                response.headers().get(X_CONTENT_TYPE_OPTIONS).is_some(),
                nosniff,
                "{code}"
            );
            assert_eq!(
                response.headers()[CONTENT_TYPE],
                "text/plain; charset=utf-8",
                "{code}"
            );
        }
    }
}
