//! Phase 4, pick endpoint: which backend of the route's cluster gets this request.
//!
//! For: the sticky cookie first, when the cluster has one and the request's cookie names a current
//! endpoint that is not ejected (Traefik's sticky handler); else the cluster's balancer, skipping
//! ejected endpoints (and, for a retry, those already tried), and then a cookie for the response
//! that names the chosen endpoint. An empty cluster is a 503.
//! Not for: building the rotation or the cookie values (see `balance`, `table::cluster`) or
//! connecting (see `forward`).

use http::header::COOKIE;
use http::request::Parts;

use super::context::RequestContext;
use super::ProxyError;
use crate::table::{Endpoint, Route, Tried};

/// The endpoint for the first attempt, with its index in the cluster.
#[inline]
pub(crate) fn pick<'r>(
    route: &'r Route,
    ctx: &mut RequestContext,
    head: &Parts,
    now: u64,
) -> Result<(usize, &'r Endpoint), ProxyError> {
    let cluster = &route.cluster;
    if let Some(sticky) = &cluster.sticky {
        if let Some(choice) = cookie(head, &sticky.cookie).and_then(|value| sticky.find(value)) {
            // An ejected endpoint loses its sticky clients to the balancer, as an unhealthy
            // server does in Traefik.
            if let Some(endpoint) = cluster.endpoints.get(choice.endpoint) {
                if !cluster.is_ejected(choice.endpoint, now) {
                    if choice.rewrite {
                        ctx.set_cookie = sticky.set_cookie(choice.endpoint).cloned();
                    }
                    return Ok((choice.endpoint, endpoint));
                }
            }
        }
    }
    next(route, ctx, Tried::default(), now)
}

/// The endpoint for another attempt (or the first without a sticky cookie): the balancer's
/// choice among the endpoints not ejected and not `tried`; the sticky cookie then names it.
pub(crate) fn next<'r>(
    route: &'r Route,
    ctx: &mut RequestContext,
    tried: Tried,
    now: u64,
) -> Result<(usize, &'r Endpoint), ProxyError> {
    let cluster = &route.cluster;
    let no_endpoints = || ProxyError::NoEndpoints {
        route: route.name.clone(),
        cluster: cluster.name.clone(),
    };
    let index = cluster.choose(tried, now).ok_or_else(no_endpoints)?;
    if let Some(sticky) = &cluster.sticky {
        ctx.set_cookie = sticky.set_cookie(index).cloned();
    }
    let endpoint = cluster.endpoints.get(index).ok_or_else(no_endpoints)?;
    Ok((index, endpoint))
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
    fn a_sticky_client_of_an_ejected_endpoint_is_balanced_elsewhere() {
        use crate::health::Outcome;
        use crate::table::testing::{cluster, endpoint, host, route, snapshot};
        use crate::table::RouteTable;
        let mut c = cluster(
            "c",
            vec![endpoint("10.0.0.1", 80, 1), endpoint("10.0.0.2", 80, 1)],
        );
        c.sticky = Some(berth_proto::v1::StickyCookie {
            name: "lb".into(),
            ..Default::default()
        });
        let s = snapshot(vec![route("r", host("h"), "c")], vec![c]);
        let table = RouteTable::build("v1", &s, &["http"], None).expect("valid");
        let r = table.routes()[0].clone();
        let first = r.cluster.sticky.as_ref().unwrap().set_cookie(0).unwrap();
        let value = first.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut h = head("GET", "/");
        h.headers.insert(COOKIE, HeaderValue::from_str(&value).unwrap());
        let mut ctx = RequestContext::for_test("GET", "/", "h", "10.0.0.9:1");
        assert_eq!(pick(&r, &mut ctx, &h, 10).unwrap().0, 0, "the cookie's endpoint");
        assert!(ctx.set_cookie.is_none());
        r.cluster.record(0, Outcome::ConnectFailure, 10);
        let (index, _) = pick(&r, &mut ctx, &h, 10).unwrap();
        assert_eq!(index, 1, "ejected: another endpoint");
        assert_eq!(
            ctx.set_cookie.as_ref(),
            r.cluster.sticky.as_ref().unwrap().set_cookie(1)
        );
    }

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
