//! The request path: what happens to one HTTP request, from the listener to the backend and back.
//!
//! For: the life of a request as named phases over one [`RequestContext`], assembled in
//! [`Proxy::serve`] — read it top to bottom to follow a request:
//!
//! 1. **accept** (`accept`): the entrypoint's normalization — host, path, forwarded headers.
//! 2. **match** (`route`): the route, from the current table.
//! 3. **request middlewares** (`middleware`): the route's chain, in order; any may answer.
//! 4. **pick endpoint** (`endpoint`): sticky cookie or weighted round robin.
//! 5. **forward** (`forwarded`, `forward`): the request made ready for the endpoint and sent.
//! 6. **response middlewares** (`middleware`): the chain's response halves, in reverse order.
//! 7. **record** (`record`): the access log, in [`Proxy::handle`].
//!
//! Where a phase fails, the request ends with a [`ProxyError`] response (still passing back
//! through the response middlewares once a route was matched).
//! Not for: accepting connections (see `listener`) or changing the route table (see `state`).

mod accept;
pub(crate) mod backend_tls;
mod body;
mod context;
mod endpoint;
mod error;
mod forward;
mod forwarded;
mod hostport;
pub(crate) mod middleware;
mod path;
mod record;
mod route;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use hyper::body::{Body as _, Incoming};

use crate::state::State;
pub(crate) use body::Body;
use context::RequestContext;
pub(crate) use error::ProxyError;

/// The entrypoint a request arrived on.
#[derive(Debug, Clone)]
pub(crate) struct Entrypoint {
    /// Position in the proxy's entrypoint list, which is how the route table is indexed.
    pub index: usize,
    pub name: Arc<str>,
}

/// Everything the request path needs, shared by every connection of every entrypoint.
#[derive(Debug)]
pub(crate) struct Proxy {
    state: Arc<State>,
    forwarder: forward::Forwarder,
    /// What the accept phase needs: the host name, the trusted peers.
    entry: accept::EntrySettings,
}

/// Settings of the request path.
#[derive(Debug)]
pub(crate) struct ProxySettings {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// TLS to `https` clusters.
    pub backend_tls: rustls::ClientConfig,
    /// This machine's host name.
    pub server_name: String,
    /// Peers whose forwarded headers are kept (`--trusted-ips`).
    pub trusted_ips: middleware::IpRanges,
}

impl Proxy {
    pub(crate) fn new(state: Arc<State>, settings: ProxySettings) -> Self {
        Self {
            state,
            forwarder: forward::Forwarder::new(
                settings.connect_timeout,
                settings.request_timeout,
                settings.backend_tls,
            ),
            entry: accept::EntrySettings {
                server: HeaderValue::from_str(&settings.server_name)
                    .unwrap_or_else(|_| HeaderValue::from_static("berth-proxy")),
                trusted_ips: settings.trusted_ips,
            },
        }
    }

    /// Serves one request. Never fails: every error becomes a response.
    pub(crate) async fn handle(
        &self,
        entrypoint: &Entrypoint,
        peer: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let mut ctx = RequestContext::new(entrypoint, peer, req.method(), req.uri());
        let mut response = self.serve(&mut ctx, req).await;
        // In-flight slots are given back once the response body has been sent.
        response.body_mut().hold(std::mem::take(&mut ctx.holds));
        // Phase 7: record.
        record::request(&ctx, response.status());
        Ok(response)
    }

    /// Phases 1 to 6.
    async fn serve(&self, ctx: &mut RequestContext, req: Request<Incoming>) -> Response<Body> {
        let (mut head, body) = req.into_parts();

        // 1. accept
        if let Err(error) = accept::accept(ctx, &mut head, &self.entry) {
            return fail(ctx, error);
        }

        // 2. match
        let route = match route::match_route(&self.state, ctx, &head) {
            Ok(route) => route,
            Err(error) => return fail(ctx, error),
        };
        ctx.route = Some(route.clone());
        let chain = &route.middlewares;

        // 3. request middlewares
        if let Some((answered_at, answer)) = middleware::run_request(chain, ctx, &mut head).await {
            return middleware::run_response(&chain[..answered_at], answer);
        }

        // 4. pick endpoint
        let endpoint = match endpoint::pick(&route, ctx, &head) {
            Ok(endpoint) => endpoint,
            Err(error) => return middleware::run_response(chain, fail(ctx, error)),
        };
        ctx.endpoint = Some(endpoint.authority.clone());

        // 5. forward
        let empty_body = body.is_end_stream();
        let response = match forwarded::request(ctx, &mut head, empty_body, &route.cluster, endpoint) {
            Ok(()) => self
                .forwarder
                .send(Request::from_parts(head, body), &endpoint.authority)
                .await
                .map(|mut response| {
                    forwarded::response(ctx, &mut response);
                    response.map(Body::backend)
                }),
            Err(error) => Err(error),
        };
        let response = response.unwrap_or_else(|error| {
            let mut response = fail(ctx, error);
            forwarded::set_cookie(ctx, response.headers_mut());
            response
        });

        // 6. response middlewares
        middleware::run_response(chain, response)
    }
}

/// The response for a phase that failed, logged.
fn fail(ctx: &RequestContext, error: ProxyError) -> Response<Body> {
    record::error(ctx, &error);
    error.into_response()
}
