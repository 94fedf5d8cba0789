//! Phase 4, pick endpoint: which backend of the route's cluster gets this request.
//!
//! For: the sticky cookie first, when the cluster has one and the request's cookie names a current
//! endpoint (Traefik's sticky handler); else the cluster's weighted round robin, and then a cookie
//! for the response that names the chosen endpoint. An empty cluster is a 503.
//! Not for: building the rotation or the cookie values (see `balance`, `table::cluster`) or
//! connecting (see `forward`).

use http::header::COOKIE;
use http::request::Parts;

use super::context::RequestContext;
use super::ProxyError;
use crate::table::{Endpoint, Route};

#[inline]
pub(crate) fn pick<'r>(
    route: &'r Route,
    ctx: &mut RequestContext,
    head: &Parts,
) -> Result<&'r Endpoint, ProxyError> {
    let cluster = &route.cluster;
    if let Some(sticky) = &cluster.sticky {
        if let Some(choice) = cookie(head, &sticky.cookie).and_then(|value| sticky.find(value)) {
            if let Some(endpoint) = cluster.endpoints.get(choice.endpoint) {
                if choice.rewrite {
                    ctx.set_cookie = sticky.set_cookie(choice.endpoint).cloned();
                }
                return Ok(endpoint);
            }
        }
    }
    let no_endpoints = || ProxyError::NoEndpoints {
        route: route.name.clone(),
        cluster: cluster.name.clone(),
    };
    let index = cluster.pick().ok_or_else(no_endpoints)?;
    if let Some(sticky) = &cluster.sticky {
        ctx.set_cookie = sticky.set_cookie(index).cloned();
    }
    cluster.endpoints.get(index).ok_or_else(no_endpoints)
}

/// The value of the first cookie called `name` in the request's `Cookie` headers (Go's
/// `Request.Cookie`: pairs split on `;`, spaces trimmed, double quotes around a value removed,
/// values with bytes a cookie may not hold skipped).
fn cookie<'h>(head: &'h Parts, name: &str) -> Option<&'h str> {
    for line in head.headers.get_all(COOKIE) {
        let Ok(line) = line.to_str() else { continue };
        for pair in line.split(';') {
            let Some((n, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if n != name {
                continue;
            }
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            if v.bytes()
                .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'"' | b';' | b'\\'))
            {
                return Some(v);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::middleware::testing::head;
    use http::HeaderValue;

    #[test]
    fn cookie_parsing() {
        let mut h = head("GET", "/");
        h.headers
            .append(COOKIE, HeaderValue::from_static("a=1; lb=\"xyz\"; b=2"));
        h.headers.append(COOKIE, HeaderValue::from_static("lb=later"));
        assert_eq!(cookie(&h, "lb"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "none"), None);
        let mut h = head("GET", "/");
        h.headers
            .append(COOKIE, HeaderValue::from_static("lb=a\\b; lb=ok"));
        assert_eq!(cookie(&h, "lb"), Some("ok"));
    }
}
