//! Why the proxy could not serve a request, and the response the client gets for it.
//!
//! For: one error type for every phase of the request path, its status code, a short plain-text
//! body naming the cause, and a machine-readable `x-berth-error` header. The error's `Display`
//! (for the log) has the details, backend addresses included; what the client gets
//! ([`ProxyError::client_text`]) never names an address, a port or a reason from the network
//! stack — only what the client sent and names of the routing state. Where Traefik answers the
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
    /// The request names two hosts (RFC 9112 §3.2, RFC 9113 §8.3.1).
    #[error("{0}")]
    BadHost(&'static str),
    /// More header fields than `--max-headers` (HTTP/2; hyper refuses HTTP/1.1 ones itself).
    #[error("the request has {count} header fields, more than the {max} allowed")]
    TooManyHeaders { count: usize, max: usize },
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
            Self::NoHost | Self::BadHost(_) | Self::BadPath(_) | Self::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::TooManyHeaders { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
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
            Self::BadHost(_) => "bad-host",
            Self::TooManyHeaders { .. } => "headers-too-large",
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

    /// The body's text: the cause, without the addresses and low-level reasons the log gets.
    pub(crate) fn client_text(&self) -> String {
        match self {
            // What the client sent, or names of the routing state: as logged.
            Self::NoSnapshot
            | Self::NoHost
            | Self::BadHost(_)
            | Self::TooManyHeaders { .. }
            | Self::BadPath(_)
            | Self::NoRoute { .. }
            | Self::NoMatch { .. }
            | Self::NoEndpoints { .. } => self.to_string(),
            Self::BadRequest(_) => "cannot forward the request".to_owned(),
            Self::Refused { .. } => "the backend refused the connection".to_owned(),
            Self::ConnectFailed { .. } => "cannot connect to the backend".to_owned(),
            Self::ConnectTimeout { timeout, .. } => {
                format!("the backend did not accept the connection within {timeout:?}")
            }
            Self::ResponseTimeout { timeout, .. } => {
                format!("the backend sent no response headers within {timeout:?}")
            }
            Self::Backend { .. } => "the backend failed to answer".to_owned(),
        }
    }

    pub(crate) fn into_response(self) -> Response<Body> {
        let mut response = Response::new(Body::text(format!("{}\n", self.client_text())));
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

    /// Every variant a backend can cause: the log names the endpoint, the client never does.
    #[test]
    fn no_internal_address_reaches_the_client() {
        let endpoint = || Authority::from_static("10.1.2.3:8081");
        let reason = "tcp connect error: Connection refused (os error 111) 10.1.2.3:8081".to_owned();
        let errors = [
            ProxyError::Refused { endpoint: endpoint() },
            ProxyError::ConnectFailed {
                endpoint: endpoint(),
                reason: reason.clone(),
            },
            ProxyError::ConnectTimeout {
                endpoint: endpoint(),
                timeout: Duration::from_millis(100),
            },
            ProxyError::ResponseTimeout {
                endpoint: endpoint(),
                timeout: Duration::from_secs(1),
            },
            ProxyError::Backend {
                endpoint: endpoint(),
                reason: reason.clone(),
            },
            ProxyError::BadRequest("invalid authority 10.1.2.3:8081".into()),
        ];
        for error in errors {
            assert!(
                error.to_string().contains("10.1.2.3"),
                "the log has the details: {error}"
            );
            let code = error.code();
            let text = error.client_text();
            let response = error.into_response();
            assert!(
                !text.contains("10.1.2.3") && !text.contains("8081"),
                "{code}: {text}"
            );
            assert!(!text.contains("os error"), "{code}: {text}");
            for (name, value) in response.headers() {
                let value = value.to_str().unwrap();
                assert!(!value.contains("10.1.2.3"), "{code}: {name}: {value}");
            }
            assert_eq!(response.headers()[X_BERTH_ERROR], code);
        }
        let error = ProxyError::TooManyHeaders { count: 101, max: 100 };
        assert_eq!(error.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(ProxyError::BadHost("x").status(), StatusCode::BAD_REQUEST);
    }

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
