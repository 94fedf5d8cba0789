//! Phase 7, record: what happened to a request, for operators.
//!
//! For: one access-log event per request (debug level, target `berth_proxy::access`) and a warning
//! for each request a backend failed. Cheap when the level is off: events are filtered before any
//! formatting.
//! Not for: metrics storage or anything that changes the response.

use http::StatusCode;

use super::context::RequestContext;
use super::ProxyError;

pub(crate) fn request(ctx: &RequestContext, status: StatusCode) {
    tracing::debug!(
        target: "berth_proxy::access",
        entrypoint = &*ctx.entrypoint.name,
        client = %ctx.peer,
        method = %ctx.method,
        path = ctx.uri.path(),
        status = status.as_u16(),
        route = ctx.route.as_ref().map(|r| r.name.as_str()),
        endpoint = ctx.endpoint.as_ref().map(|e| e.as_str()),
        elapsed_ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
    );
}

pub(crate) fn error(ctx: &RequestContext, error: &ProxyError) {
    if error.is_backend() {
        tracing::warn!(
            entrypoint = &*ctx.entrypoint.name,
            method = %ctx.method,
            path = ctx.uri.path(),
            route = ctx.route.as_ref().map(|r| r.name.as_str()),
            %error,
            "backend request failed"
        );
    } else {
        tracing::debug!(
            entrypoint = &*ctx.entrypoint.name,
            method = %ctx.method,
            path = ctx.uri.path(),
            %error,
            "request not served"
        );
    }
}
