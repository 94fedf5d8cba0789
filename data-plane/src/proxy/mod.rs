//! The request path: what happens to one HTTP request, from the listener to the backend and back.
//!
//! For: the life of a request as named phases over one [`RequestContext`], assembled in
//! [`Proxy::serve`] — read it top to bottom to follow a request:
//!
//! 1. **accept** (`accept`): the entrypoint's normalization — host, path, forwarded headers.
//! 2. **match** (`route`): the route, from the current table.
//! 3. **request middlewares** (`middleware`): the route's chain, in order; any may answer.
//! 4. **pick endpoint** (`endpoint`): sticky cookie or the cluster's balancer, ejected endpoints
//!    skipped.
//! 5. **forward** (`upstream`, `forwarded`, `forward`): the request made ready for the endpoint and
//!    sent; a failed attempt retried on another endpoint where the policy allows.
//! 6. **response middlewares** (`middleware`): the chain's response halves, in reverse order.
//! 7. **record** (`record`): metrics and the access log, when the response body is done.
//!
//! Where a phase fails, the request ends with a [`ProxyError`] response (still passing back
//! through the response middlewares once a route was matched).
//! Not for: accepting connections (see `listener`) or changing the route table (see `state`).

mod accept;
mod backend_h1;
pub(crate) mod backend_tls;
mod body;
mod context;
mod endpoint;
mod error;
mod forward;
mod forwarded;
mod hostport;
pub(crate) mod middleware;
pub(crate) mod outgoing;
mod path;
mod record;
mod route;
mod upgrade;
mod upstream;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response};

use crate::access_log::AccessLog;
use crate::http1::RawFields;
use crate::state::State;
pub(crate) use body::Body;
pub(crate) use context::Peer;
use context::RequestContext;
pub(crate) use error::ProxyError;
pub(crate) use forward::RequestBody;

/// The entrypoint a request arrived on.
#[derive(Debug, Clone)]
pub(crate) struct Entrypoint {
    /// Position in the proxy's entrypoint list, which is how the route table is indexed.
    pub index: usize,
    pub name: Arc<str>,
    /// A `--tls` entrypoint: requests came over TLS (`X-Forwarded-Proto: https`).
    pub tls: bool,
}

/// Everything the request path needs, shared by every connection of every entrypoint.
#[derive(Debug)]
pub(crate) struct Proxy {
    state: Arc<State>,
    forwarder: forward::Forwarder,
    /// What the accept phase needs: the host name, the trusted peers.
    entry: accept::EntrySettings,
    /// Where the record phase queues access-log lines (`--access-log`), if anywhere.
    access_log: Option<AccessLog>,
}

/// Settings of the request path.
#[derive(Debug)]
pub(crate) struct ProxySettings {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// How long an idle pooled backend connection is kept (`--backend-idle-timeout`).
    pub idle_timeout: Duration,
    /// TLS to `https` clusters.
    pub backend_tls: rustls::ClientConfig,
    /// This machine's host name.
    pub server_name: String,
    /// Peers whose forwarded headers are kept (`--trusted-ips`).
    pub trusted_ips: middleware::IpRanges,
    /// The access log's writer, when `--access-log` is on.
    pub access_log: Option<AccessLog>,
}

impl Proxy {
    pub(crate) fn new(state: Arc<State>, settings: ProxySettings) -> Self {
        Self {
            state,
            forwarder: forward::Forwarder::new(
                settings.connect_timeout,
                settings.request_timeout,
                settings.idle_timeout,
                settings.backend_tls,
            ),
            entry: accept::EntrySettings {
                server: HeaderValue::from_str(&settings.server_name)
                    .unwrap_or_else(|_| HeaderValue::from_static("berth-proxy")),
                trusted_ips: settings.trusted_ips,
            },
            access_log: settings.access_log,
        }
    }

    /// Serves one request. Never fails: every error becomes a response. `raw`: the request's
    /// fields kept as they came (see `http1::RawFields`; its map then holds `Host` alone).
    pub(crate) async fn handle(
        &self,
        entrypoint: &Entrypoint,
        peer: &Peer,
        req: Request<RequestBody>,
        raw: Option<RawFields>,
    ) -> Result<Response<Body>, Infallible> {
        let mut ctx = RequestContext::new(entrypoint, peer, req.method(), req.uri());
        ctx.raw = raw;
        let version = req.version();
        let request_bytes = declared_length(req.headers());
        let mut response = self.serve(&mut ctx, req).await;
        // In-flight slots are given back once the response body has been sent.
        response.body_mut().hold(std::mem::take(&mut ctx.holds));
        // Phase 7: record, once the response body is done.
        let done = record::start(
            &ctx,
            response.status(),
            version,
            request_bytes,
            self.access_log.as_ref(),
        );
        response.body_mut().on_done(done);
        Ok(response)
    }

    /// Phases 1 to 6.
    async fn serve(&self, ctx: &mut RequestContext, req: Request<RequestBody>) -> Response<Body> {
        let (mut head, body) = req.into_parts();

        // 1. accept
        if let Err(error) = accept::accept(ctx, &mut head, &self.entry) {
            return fail(ctx, error);
        }

        // 2. match
        let route = match route::match_route(&self.state, ctx, &mut head) {
            Ok(route) => route,
            Err(error) => return fail(ctx, error),
        };
        ctx.route = Some(route.clone());
        let chain = &route.middlewares;
        if !chain.is_empty() {
            // Middlewares see, and may change, the fields they name, or every field and the
            // headers Traefik's entrypoint set.
            match chain.request_fields() {
                middleware::Fields::Named(names) => accept::fill_named(ctx, &mut head.headers, names),
                middleware::Fields::Any => accept::fill_headers(ctx, &mut head.headers),
            }
        }

        // 3. request middlewares
        if let Some((answered_at, answer)) = middleware::run_request(chain, ctx, &mut head).await {
            return middleware::run_response(&chain[..answered_at], ctx, answer);
        }

        // 4 and 5. pick endpoint and forward (`upstream`: retried on another endpoint where allowed)
        let client_upgrade = upgrade::take_client(&mut head);
        let response = upstream::send(&self.forwarder, ctx, &route, head, body)
            .await
            .and_then(|(mut response, endpoint)| {
                if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                    let Some(client) = client_upgrade else {
                        return Err(ProxyError::Backend {
                            endpoint: endpoint.authority.clone(),
                            reason: "101 Switching Protocols to a request that asked for no upgrade".into(),
                        });
                    };
                    upgrade::tunnel(client, &mut response);
                }
                forwarded::response(ctx, &mut response);
                Ok(response.map(Body::backend))
            });
        let response = response.unwrap_or_else(|error| {
            let mut response = fail(ctx, error);
            forwarded::set_cookie(ctx, response.headers_mut());
            response
        });

        // 6. response middlewares
        middleware::run_response(chain, ctx, response)
    }
}

/// The request body's length as its Content-Length declares it (0 without one).
fn declared_length(headers: &http::HeaderMap) -> u64 {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The response for a phase that failed, logged.
fn fail(ctx: &RequestContext, error: ProxyError) -> Response<Body> {
    record::error(ctx, &error);
    error.into_response()
}
