//! Phase 7, record: what happened to a request, for operators.
//!
//! For: the request's metrics (per entrypoint and per route: status class, duration, bytes) and
//! its access-log line, both taken when the response body is done — sent to the end, or abandoned
//! by the client — so the duration covers the whole response and the bytes are the bytes sent.
//! [`start`] builds a [`Completion`] when the response head is ready; the response [`Body`]
//! counts the bytes through it and drops it when done, which records. The request path only bumps
//! atomics and, when `--access-log` is on, queues one entry (see `access_log`). Also a warning for
//! each request a backend failed.
//! Not for: metrics storage (see `metrics`), formatting or writing log lines (see `access_log`),
//! or anything that changes the response.
//!
//! [`Body`]: super::Body

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{StatusCode, Version};

use super::context::RequestContext;
use super::ProxyError;
use crate::access_log::{AccessLog, Entry};
use crate::metrics;
use crate::table::Route;

/// What is recorded of a request once its response body is done; records when dropped.
#[derive(Debug)]
pub(crate) struct Completion {
    started: Instant,
    status: u16,
    entrypoint: usize,
    route: Option<Arc<Route>>,
    request_bytes: u64,
    response_bytes: u64,
    /// Only with `--access-log`: the line's fields, boxed so that a proxy without an access log
    /// carries and copies none of them.
    log: Option<Box<(AccessLog, Entry)>>,
}

/// Starts recording `ctx`'s request, answered with `status`; `request_bytes` as its
/// Content-Length declared.
pub(crate) fn start(
    ctx: &RequestContext,
    status: StatusCode,
    version: Version,
    request_bytes: u64,
    access_log: Option<&AccessLog>,
) -> Completion {
    let log = access_log.map(|log| {
        Box::new((
            log.clone(),
            Entry {
                start: SystemTime::UNIX_EPOCH,
                duration: std::time::Duration::ZERO,
                client: ctx.peer.addr,
                host: ctx.host.clone(),
                method: ctx.method.clone(),
                uri: ctx.uri.clone(),
                version,
                status: status.as_u16(),
                request_bytes,
                response_bytes: 0,
                entrypoint: ctx.entrypoint.name.clone(),
                route: ctx.route.clone(),
                endpoint: ctx.endpoint.clone(),
                request_id: Some(ctx.request_id.clone()).filter(|id| !id.is_empty()),
            },
        ))
    });
    Completion {
        started: ctx.started,
        status: status.as_u16(),
        entrypoint: ctx.entrypoint.index,
        route: ctx.route.clone(),
        request_bytes,
        response_bytes: 0,
        log,
    }
}

impl Completion {
    /// `n` more response body bytes were handed to the connection.
    pub(crate) fn sent(&mut self, n: usize) {
        self.response_bytes += n as u64;
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        metrics::global().entrypoint_request(self.entrypoint, self.status);
        if let Some(route) = &self.route {
            route
                .stats
                .finished(self.status, took, self.request_bytes, self.response_bytes);
        }
        if let Some(log) = self.log.take() {
            let (log, mut entry) = *log;
            entry.duration = took;
            entry.start = SystemTime::now()
                .checked_sub(took)
                .unwrap_or_else(SystemTime::now);
            entry.response_bytes = self.response_bytes;
            log.push(entry);
        }
    }
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
