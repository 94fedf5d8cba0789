//! Phases 4 and 5 together: pick an endpoint, send, and where the request failed before any
//! response byte arrived, count it against the endpoint and send it again to another one.
//!
//! For: the attempt loop. Each attempt picks an endpoint (`endpoint`: sticky cookie, balancer,
//! ejected and already-tried endpoints skipped), makes the head ready for it (`forwarded`), sends
//! it (`forward`) and tells passive health how it went (`table::Cluster::record`). A failed
//! attempt is retried when all of these hold:
//! - the request has no body (`is_end_stream`): Berth streams bodies and keeps no copy, so only
//!   the head is kept to send again (`forwarded::Original` puts back what making it ready
//!   for an endpoint changed);
//! - the policy allows it: the route's `retry` middleware if it has one (Traefik's: any method
//!   when nothing was sent, outside the budget), else the cluster's retry policy (its methods,
//!   idempotent by default, and its budget, a share of the cluster's requests);
//! - the failure is one where no response byte arrived: connection refused or failed, connect
//!   timeout (nothing sent), or a reset or close of the connection before the response headers
//!   (a pooled keep-alive connection whose backend died), for idempotent methods only. A
//!   first-byte timeout is not retried: the backend may be working on it, and retrying would
//!   multiply the wait. Under the cluster's policy, an endpoint that could not be connected to is
//!   not tried again by the same request when no other endpoint is left.
//!
//! Not for: the response's processing (`forwarded::response`, upgrades: the caller) or the
//! transport (`forward`).

use http::request::Parts;
use http::{Method, Response, StatusCode};
use hyper::body::Body as _;

use super::forward::{BackendBody, RequestBody};

use super::context::RequestContext;
use super::forward::Forwarder;
use super::{accept, endpoint, forwarded, middleware, ProxyError};
use crate::health::{self, is_idempotent, Outcome, RetryPolicy};
use crate::table::{Endpoint, Route, Tried};

/// Sends the request to an endpoint of the route's cluster, retrying as the module documentation
/// says. The response (headers received) and the endpoint that sent it.
pub(crate) async fn send<'r>(
    forwarder: &Forwarder,
    ctx: &mut RequestContext,
    route: &'r Route,
    mut head: Parts,
    body: RequestBody,
) -> Result<(Response<BackendBody>, &'r Endpoint), ProxyError> {
    let cluster = &route.cluster;
    let now = health::now_ms();
    if cluster.sticky.is_some() {
        // The sticky cookie is looked for among the request's every field.
        accept::fill_headers(ctx, &mut head.headers);
    }
    let (index, endpoint) = endpoint::pick(route, ctx, &head, now)?;
    ctx.endpoint = Some(endpoint.authority.clone());
    let empty_body = body.is_end_stream();
    let middleware_policy = middleware::retry_policy(&route.middlewares);
    let policy = middleware_policy.unwrap_or(&cluster.retry);
    let retryable =
        empty_body && policy.attempts > 1 && (policy.allows(&head.method) || policy.any_method_unsent);
    if middleware_policy.is_none() {
        cluster.budget.request(now);
    }
    if !retryable {
        forwarded::request(ctx, &mut head, empty_body, cluster, endpoint)?;
        let keep = keeps_head(ctx, route);
        let result = {
            let _in_flight = in_flight(route, index);
            let extra = accept::extra_fields(ctx);
            forwarder
                .send(head, &extra, body, endpoint, &cluster.timeouts, keep)
                .await
        };
        record(route, index, &result);
        return result.map(|response| (response, endpoint));
    }
    // The body is empty: every attempt sends the same head (made ready for its endpoint again),
    // which stays here, with an empty body.
    drop(body);
    let sent = again(
        forwarder,
        ctx,
        route,
        policy,
        middleware_policy.is_some(),
        &mut head,
        (index, endpoint),
    )
    .await;
    crate::header_maps::give(std::mem::take(&mut head.headers));
    sent
}

/// Whether the backend's response head may be kept as it came and written so (see
/// `backend_h1::response`): only where nothing would change it on its way to the client, that is
/// where Berth's own server loop writes it, no sticky cookie is added (asked again at each
/// attempt: a retry may pick another endpoint) and the route's middlewares change no field the
/// kept head's writer decides (`middleware::Chain::keeps_heads`).
fn keeps_head(ctx: &RequestContext, route: &Route) -> bool {
    ctx.peer.writes_kept_heads && ctx.set_cookie.is_none() && route.middlewares.keeps_heads()
}

/// The attempts of a retryable request (see the module documentation), the first at `first`.
async fn again<'r>(
    forwarder: &Forwarder,
    ctx: &mut RequestContext,
    route: &'r Route,
    policy: &RetryPolicy,
    by_middleware: bool,
    head: &mut Parts,
    first: (usize, &'r Endpoint),
) -> Result<(Response<BackendBody>, &'r Endpoint), ProxyError> {
    let cluster = &route.cluster;
    let (mut index, mut endpoint) = first;
    let original = forwarded::Original::of(ctx, head);
    let mut tried = Tried::default();
    let mut n = 1;
    loop {
        forwarded::request(ctx, head, true, cluster, endpoint)?;
        let keep = keeps_head(ctx, route);
        let result = {
            let _in_flight = in_flight(route, index);
            let extra = accept::extra_fields(ctx);
            forwarder
                .send_head(head, &extra, endpoint, &cluster.timeouts, keep)
                .await
        };
        record(route, index, &result);
        let error = match result {
            Ok(response) => return Ok((response, endpoint)),
            Err(error) => error,
        };
        if n >= policy.attempts || !may_retry(policy, &head.method, &error, by_middleware) {
            return Err(error);
        }
        tried.add(index);
        let now = health::now_ms();
        let (next, next_endpoint) = endpoint::next(route, ctx, tried, now)?;
        if !by_middleware {
            if next == index && unsent(&error) {
                // Nowhere else to go, and this endpoint just refused: sending again is pointless
                // (a reset pooled connection, by contrast, is worth a fresh one). Traefik's retry
                // middleware does try its only server again, after its wait.
                return Err(error);
            }
            if !cluster.budget.try_retry(now, policy.budget_percent) {
                return Err(error);
            }
        }
        let wait = middleware::retry_backoff(policy, n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        (index, endpoint) = (next, next_endpoint);
        n += 1;
        ctx.endpoint = Some(endpoint.authority.clone());
        health::on_retry(&cluster.name, n);
        original.restore(head);
    }
}

/// Counts an attempt at endpoint `index` in flight (passive health) until dropped. The attempts
/// await the forwarder themselves, between this and [`record`], rather than through a wrapping
/// future: each layer of futures is copied whole when it moves.
fn in_flight(route: &Route, index: usize) -> Option<health::InFlight<'_>> {
    route.cluster.health.get(index).map(|h| h.start())
}

/// Records the outcome of an attempt at endpoint `index` for passive health.
fn record(route: &Route, index: usize, result: &Result<Response<BackendBody>, ProxyError>) {
    let cluster = &route.cluster;
    let outcome = match result {
        Ok(response) => match response.status() {
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
                Outcome::Failure
            }
            _ => Outcome::Success,
        },
        Err(error) if unsent(error) => {
            crate::metrics::connect_error(&cluster.name);
            Outcome::ConnectFailure
        }
        Err(_) => Outcome::Failure,
    };
    cluster.record(index, outcome, health::now_ms());
}

/// Whether the request surely never reached the endpoint.
fn unsent(error: &ProxyError) -> bool {
    matches!(
        error,
        ProxyError::Refused { .. } | ProxyError::ConnectFailed { .. } | ProxyError::ConnectTimeout { .. }
    )
}

/// Whether a failed attempt may be sent again (the policy's attempts and budget aside).
fn may_retry(policy: &RetryPolicy, method: &Method, error: &ProxyError, middleware: bool) -> bool {
    if unsent(error) {
        return policy.any_method_unsent || policy.allows(method);
    }
    match error {
        // Reset or closed before the response headers.
        ProxyError::Backend { .. } => {
            if middleware {
                is_idempotent(method)
            } else {
                policy.allows(method)
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::uri::Authority;

    #[test]
    fn which_failures_are_retried() {
        let endpoint = Authority::from_static("10.0.0.1:80");
        let refused = ProxyError::Refused {
            endpoint: endpoint.clone(),
        };
        let reset = ProxyError::Backend {
            endpoint: endpoint.clone(),
            reason: "connection reset".into(),
        };
        let timeout = ProxyError::ResponseTimeout {
            endpoint,
            timeout: std::time::Duration::from_secs(1),
        };
        let cluster = RetryPolicy::from_proto(None);
        assert!(may_retry(&cluster, &Method::GET, &refused, false));
        assert!(may_retry(&cluster, &Method::GET, &reset, false));
        assert!(!may_retry(&cluster, &Method::GET, &timeout, false));
        assert!(!may_retry(&cluster, &Method::POST, &refused, false));
        let traefik = RetryPolicy {
            any_method_unsent: true,
            ..cluster
        };
        assert!(may_retry(&traefik, &Method::POST, &refused, true));
        assert!(!may_retry(&traefik, &Method::POST, &reset, true));
        assert!(may_retry(&traefik, &Method::GET, &reset, true));
    }
}
