//! The request path: what happens to one HTTP request, from the listener to the backend and back.
//!
//! For: assembling the per-request steps, each in its own module, in [`Proxy::handle`]:
//! match route → pick endpoint → rewrite headers → forward → record. Read `handle` and `serve`
//! top to bottom to follow a request.
//! Not for: accepting connections (see `listener`) or changing the route table (see `state`).

mod endpoint;
mod error;
mod forward;
mod headers;
mod record;
mod route;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::state::State;
pub(crate) use error::ProxyError;

/// A response body: the backend's, streamed through, or a short error text made by the proxy.
pub(crate) type Body = Either<Incoming, Full<Bytes>>;

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
}

impl Proxy {
    pub(crate) fn new(state: Arc<State>, connect_timeout: Duration, request_timeout: Duration) -> Self {
        Self {
            state,
            forwarder: forward::Forwarder::new(connect_timeout, request_timeout),
        }
    }

    /// Serves one request. Never fails: every error becomes a short plain-text response.
    pub(crate) async fn handle(
        &self,
        entrypoint: &Entrypoint,
        client: SocketAddr,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let started = Instant::now();
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let mut served_by = None;
        let response = match self.serve(entrypoint, client, req, &mut served_by).await {
            Ok(response) => response.map(Either::Left),
            Err(error) => {
                record::error(entrypoint, &method, &uri, served_by.as_ref(), &error);
                error.into_response()
            }
        };
        record::request(
            entrypoint,
            &method,
            &uri,
            served_by.as_ref(),
            response.status(),
            started.elapsed(),
        );
        Ok(response)
    }

    async fn serve(
        &self,
        entrypoint: &Entrypoint,
        client: SocketAddr,
        req: Request<Incoming>,
        served_by: &mut Option<record::ServedBy>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let matched = route::match_route(&self.state, entrypoint, &req)?;
        let endpoint = endpoint::pick(&matched.route)?;
        let authority = endpoint.authority.clone();
        *served_by = Some(record::ServedBy {
            route: matched.route.clone(),
            endpoint: authority.clone(),
        });
        let req = headers::rewrite_request(req, matched.host, client.ip(), &authority)?;
        let response = self.forwarder.send(req, &authority).await?;
        Ok(headers::rewrite_response(response))
    }
}
