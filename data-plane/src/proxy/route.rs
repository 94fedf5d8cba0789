//! Phase 2, match: which route serves this request.
//!
//! For: presenting the request to the route table as the model's [`RequestView`] — host as
//! `berth_model::request_host` normalizes it (borrowed when already lower case), the routing path
//! (`berth_model::routing_path` of the path the accept phase left), the query with `;` read as
//! `&` (Go's `AllowQuerySemicolons`, which Traefik's entrypoint applies), the peer's address — and
//! looking it up (with the request's map filled first when a matcher reads a header). Holds the
//! table only for the lookup; the route is kept by `Arc`, so a table swap while the request is in
//! flight changes nothing for it.
//! Not for: choosing an endpoint (see `endpoint`).

use std::borrow::Cow;
use std::sync::Arc;

use berth_model::RequestView;
use http::request::Parts;

use super::context::RequestContext;
use super::ProxyError;
use crate::state::State;
use crate::table::{Found, Route};

pub(crate) fn match_route(
    state: &State,
    ctx: &mut RequestContext,
    head: &mut Parts,
) -> Result<Arc<Route>, ProxyError> {
    let table = state.table();
    let Some(table) = table.as_ref() else {
        return Err(ProxyError::NoSnapshot);
    };
    // A matcher that reads a header sees the request's every field, and the forwarded headers set
    // as Traefik's entrypoint would have.
    if table.reads_headers() {
        super::accept::fill_headers(ctx, &mut head.headers);
    }
    let host = berth_model::request_host(ctx.host_text());
    let path = berth_model::routing_path(ctx.path()).map_err(|e| ProxyError::BadPath(e.to_string()))?;
    let query = match ctx.query() {
        Some(q) if q.contains(';') => Some(Cow::Owned(q.replace(';', "&"))),
        Some(q) => Some(Cow::Borrowed(q)),
        None => None,
    };
    let view = RequestView {
        host: &host,
        path: &path,
        method: &head.method,
        headers: &head.headers,
        query: query.as_deref(),
        client_ip: ctx.peer.ip,
    };
    match table.lookup(ctx.entrypoint.index, &view) {
        Found::Route(route) => Ok(route.clone()),
        Found::NoRouteForHost => Err(ProxyError::NoRoute {
            host: host.into_owned(),
            entrypoint: ctx.entrypoint.name.clone(),
        }),
        Found::NoMatch => Err(ProxyError::NoMatch {
            method: head.method.to_string(),
            host: host.into_owned(),
            path: ctx.path().to_owned(),
            entrypoint: ctx.entrypoint.name.clone(),
        }),
    }
}
