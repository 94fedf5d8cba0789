//! Step 1, match route: which route serves this request.
//!
//! For: reading the request's host (Host header, or the URI authority for HTTP/2), normalizing it
//! without allocating when it is already lowercase, and looking it up with the path in the current
//! route table. Holds the table only for the lookup; the route is kept by `Arc`, so a table swap
//! while the request is in flight changes nothing for it.
//! Not for: choosing an endpoint (see `endpoint`).

use std::borrow::Cow;
use std::sync::Arc;

use http::header::HOST;
use http::{HeaderValue, Request, Version};

use super::{Entrypoint, ProxyError};
use crate::state::State;
use crate::table::{normalize_host, Lookup, Route};

/// The route for a request, and the host as the client sent it (for `Host`/`X-Forwarded-Host`).
#[derive(Debug)]
pub(crate) struct Matched {
    pub route: Arc<Route>,
    pub host: HeaderValue,
}

pub(crate) fn match_route<B>(
    state: &State,
    entrypoint: &Entrypoint,
    req: &Request<B>,
) -> Result<Matched, ProxyError> {
    let table = state.table();
    let Some(table) = table.as_ref() else {
        return Err(ProxyError::NoSnapshot);
    };
    let (raw, host_value) = request_host(req).ok_or(ProxyError::NoHost)?;
    let host = normalize_host(&raw);
    let path = req.uri().path();
    match table.lookup(entrypoint.index, &host, path) {
        Lookup::Found(route) => Ok(Matched {
            route: route.clone(),
            host: host_value,
        }),
        Lookup::UnknownHost => Err(ProxyError::NoRoute {
            host: host.into_owned(),
            entrypoint: entrypoint.name.clone(),
        }),
        Lookup::NoPathMatch => Err(ProxyError::NoPathRoute {
            host: host.into_owned(),
            path: path.to_owned(),
            entrypoint: entrypoint.name.clone(),
        }),
    }
}

/// The host the client asked for, as text and as a header value. HTTP/2 carries it in the
/// `:authority` pseudo-header (the URI's authority); HTTP/1.1 in `Host`. Each falls back to the other.
fn request_host<B>(req: &Request<B>) -> Option<(Cow<'_, str>, HeaderValue)> {
    let from_header = || {
        let value = req.headers().get(HOST)?;
        let text = value.to_str().ok().filter(|t| !t.is_empty())?;
        Some((Cow::Borrowed(text), value.clone()))
    };
    let from_uri = || {
        let authority = req.uri().authority()?.as_str();
        let value = HeaderValue::from_str(authority).ok()?;
        Some((Cow::Borrowed(authority), value))
    };
    if req.version() == Version::HTTP_2 {
        from_uri().or_else(from_header)
    } else {
        from_header().or_else(from_uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{route_update, Cluster, Route as PRoute, RouteUpdate, Snapshot};

    fn state() -> State {
        let state = State::new("n".into(), vec!["http".into(), "other".into()]);
        let snapshot = Snapshot {
            routes: vec![PRoute {
                name: "go".into(),
                hosts: vec!["go.example".into()],
                path_prefix: "/app".into(),
                entrypoints: vec!["http".into()],
                cluster: "go".into(),
                service: "go".into(),
            }],
            clusters: vec![Cluster {
                name: "go".into(),
                endpoints: vec![],
            }],
        };
        state.apply(&RouteUpdate {
            version: "v".into(),
            nonce: "1".into(),
            body: Some(route_update::Body::Snapshot(snapshot)),
        });
        state
    }

    fn ep(index: usize, name: &str) -> Entrypoint {
        Entrypoint {
            index,
            name: name.into(),
        }
    }

    #[test]
    fn matches_by_host_header_and_by_authority() {
        let state = state();
        let req = Request::get("/app/x")
            .header(HOST, "Go.Example:8080")
            .body(())
            .unwrap();
        let m = match_route(&state, &ep(0, "http"), &req).expect("matches");
        assert_eq!(m.route.name, "go");
        assert_eq!(m.host, "Go.Example:8080", "the original host is kept");

        let req = Request::get("http://GO.example/app")
            .version(Version::HTTP_2)
            .body(())
            .unwrap();
        assert_eq!(
            match_route(&state, &ep(0, "http"), &req)
                .expect("matches")
                .route
                .name,
            "go"
        );
    }

    #[test]
    fn errors() {
        let state = state();
        let req = Request::get("/app").header(HOST, "x.example").body(()).unwrap();
        let err = match_route(&state, &ep(0, "http"), &req).expect_err("unknown host");
        assert_eq!(
            err.to_string(),
            r#"no route for host "x.example" on entrypoint "http""#
        );

        let req = Request::get("/app").header(HOST, "go.example").body(()).unwrap();
        let err = match_route(&state, &ep(1, "other"), &req).expect_err("other entrypoint");
        assert!(matches!(err, ProxyError::NoRoute { .. }));

        let req = Request::get("/else").header(HOST, "go.example").body(()).unwrap();
        let err = match_route(&state, &ep(0, "http"), &req).expect_err("no prefix");
        assert_eq!(
            err.to_string(),
            r#"no route for path "/else" on host "go.example" (entrypoint "http")"#
        );

        let req = Request::get("/").body(()).unwrap();
        assert!(matches!(
            match_route(&state, &ep(0, "http"), &req),
            Err(ProxyError::NoHost)
        ));

        let empty = State::new("n".into(), vec!["http".into()]);
        let req = Request::get("/").header(HOST, "go.example").body(()).unwrap();
        assert!(matches!(
            match_route(&empty, &ep(0, "http"), &req),
            Err(ProxyError::NoSnapshot)
        ));
    }
}
