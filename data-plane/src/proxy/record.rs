//! Step 5, record: what happened to a request, for operators.
//!
//! For: one access-log event per request (debug level, target `berth_proxy::access`) and a warning
//! for each request a backend failed. Cheap when the level is off: events are filtered before any
//! formatting.
//! Not for: metrics storage or anything that changes the response.

use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use http::{Method, StatusCode, Uri};

use super::{Entrypoint, ProxyError};
use crate::table::Route;

/// The route and endpoint a request was sent to, once known.
#[derive(Debug)]
pub(crate) struct ServedBy {
    pub route: Arc<Route>,
    pub endpoint: Authority,
}

pub(crate) fn request(
    entrypoint: &Entrypoint,
    method: &Method,
    uri: &Uri,
    served_by: Option<&ServedBy>,
    status: StatusCode,
    elapsed: Duration,
) {
    tracing::debug!(
        target: "berth_proxy::access",
        entrypoint = &*entrypoint.name,
        %method,
        path = uri.path(),
        status = status.as_u16(),
        route = served_by.map(|s| s.route.name.as_str()),
        endpoint = served_by.map(|s| s.endpoint.as_str()),
        elapsed_ms = elapsed.as_secs_f64() * 1000.0,
    );
}

pub(crate) fn error(
    entrypoint: &Entrypoint,
    method: &Method,
    uri: &Uri,
    served_by: Option<&ServedBy>,
    error: &ProxyError,
) {
    if error.is_backend() {
        tracing::warn!(
            entrypoint = &*entrypoint.name,
            %method,
            path = uri.path(),
            route = served_by.map(|s| s.route.name.as_str()),
            %error,
            "backend request failed"
        );
    } else {
        tracing::debug!(entrypoint = &*entrypoint.name, %method, path = uri.path(), %error, "request not routed");
    }
}
