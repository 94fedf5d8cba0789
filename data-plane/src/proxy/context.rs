//! The per-request context every phase of the request path reads and writes.
//!
//! For: what the proxy knows about one request beyond its head — where it came from, the host
//! and path it will be forwarded with (middlewares rewrite both), the route and endpoint once
//! chosen, and what the response must carry or hold (a sticky cookie, in-flight slots). One value
//! per request, owned by [`super::Proxy::handle`] and lent to each phase in turn.
//! Not for: the request's headers, method and body (they stay in the request) or any decision.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Method, Uri};

use super::accept::LateHeaders;
use super::middleware::InFlightSlot;
use super::path::{BadEscape, UrlPath};
use super::Entrypoint;
use crate::http1::RawFields;
use crate::table::Route;

/// Whether the forward phase appends the client to `X-Forwarded-For` (a `headers` middleware
/// setting it to "" asks for no `X-Forwarded-For` at all, as in Traefik).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ForwardedFor {
    Append,
    Omit,
}

/// One request's context; see the module documentation.
#[derive(Debug)]
pub(crate) struct RequestContext {
    pub entrypoint: Entrypoint,
    /// The client end of the connection the request came on.
    pub peer: Peer,
    pub started: Instant,
    /// As the client sent them, for the log.
    pub method: Method,
    pub uri: Uri,
    /// The Host the backend gets when the cluster passes the client's host (a `headers`
    /// middleware may replace it). Empty until the match phase read it.
    pub host: HeaderValue,
    /// The request's `X-Request-Id` (the client's, or one the accept phase made up), as the
    /// backend gets it; empty until the accept phase ran.
    pub request_id: HeaderValue,
    /// The client's path and query, as received.
    original: PathAndQuery,
    /// The path to forward, once the entrypoint's normalization or a middleware changed it, with
    /// its wire form (may be empty after a `strip_prefix`, which then goes out as "/").
    rewritten: Option<(UrlPath, String)>,
    /// Whether a middleware rewrote the path: Traefik then recomputes the request URI the
    /// redirect middlewares read, with the query's `;` turned into `&`.
    rewritten_by_middleware: bool,
    pub forwarded_for: ForwardedFor,
    /// The forwarded headers the accept phase set late, while they are not in the header map.
    pub late: Option<LateHeaders>,
    /// The client's fields kept as they came, while they are not in the header map (see
    /// `http1::RawFields`).
    pub raw: Option<RawFields>,
    /// The matched route, once known.
    pub route: Option<Arc<Route>>,
    /// The endpoint the request was sent to, once chosen.
    pub endpoint: Option<Authority>,
    /// A `Set-Cookie` the response gets (the sticky cookie).
    pub set_cookie: Option<HeaderValue>,
    /// In-flight slots, given back when the response body is done.
    pub holds: Vec<InFlightSlot>,
}

/// The client end of one connection, worked out once for all of its requests.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The TCP peer.
    pub addr: SocketAddr,
    /// The peer's address, IPv4-mapped IPv6 shown as IPv4 (what `ClientIP` and source criteria use).
    pub ip: IpAddr,
    /// `ip` as a header value (for `X-Real-IP` and `X-Forwarded-For`): each request takes a
    /// reference to it rather than a copy of its own.
    pub ip_value: HeaderValue,
    /// Responses on this connection are written by Berth's own HTTP/1.1 server loop, which can
    /// send a backend's head as it came (see `upstream::keeps_head`).
    pub writes_kept_heads: bool,
}

impl Peer {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        let ip = addr.ip().to_canonical();
        Self {
            addr,
            ip,
            ip_value: ip_value(ip),
            writes_kept_heads: false,
        }
    }

    /// The client of a connection served by Berth's own HTTP/1.1 server loop (see
    /// [`Peer::writes_kept_heads`]).
    pub(crate) fn served_by_own_loop(mut self) -> Self {
        self.writes_kept_heads = true;
        self
    }
}

/// An address as header text; IPv4 (nearly every client) written by hand, without `fmt`.
fn ip_value(ip: IpAddr) -> HeaderValue {
    let value = match ip {
        IpAddr::V4(v4) => {
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    text[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    text[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                text[len] = b'0' + octet % 10;
                len += 1;
            }
            HeaderValue::from_bytes(&text[..len])
        }
        IpAddr::V6(v6) => HeaderValue::from_str(&v6.to_string()),
    };
    value.unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl RequestContext {
    pub(crate) fn new(entrypoint: &Entrypoint, peer: &Peer, method: &Method, uri: &Uri) -> Self {
        Self {
            entrypoint: entrypoint.clone(),
            peer: peer.clone(),
            started: Instant::now(),
            method: method.clone(),
            uri: uri.clone(),
            host: HeaderValue::from_static(""),
            request_id: HeaderValue::from_static(""),
            original: uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            rewritten: None,
            rewritten_by_middleware: false,
            forwarded_for: ForwardedFor::Append,
            late: None,
            raw: None,
            route: None,
            endpoint: None,
            set_cookie: None,
            holds: Vec::new(),
        }
    }

    /// The path as it will be forwarded (wire form; "" after stripping a whole path).
    pub(crate) fn path(&self) -> &str {
        match &self.rewritten {
            Some((_, wire)) => wire,
            None => self.original.path(),
        }
    }

    /// The path as Go's `url.URL` would hold it, for the path middlewares.
    pub(crate) fn url_path(&self) -> Result<Cow<'_, UrlPath>, BadEscape> {
        match &self.rewritten {
            Some((url, _)) => Ok(Cow::Borrowed(url)),
            None => UrlPath::parse(self.original.path()).map(Cow::Owned),
        }
    }

    /// Replaces the path, as the entrypoint's normalization does.
    pub(crate) fn set_entry_path(&mut self, url: UrlPath) {
        let wire = url.escaped().into_owned();
        self.rewritten = Some((url, wire));
    }

    /// Replaces the path, as a middleware does.
    pub(crate) fn set_url_path(&mut self, url: UrlPath) {
        self.set_entry_path(url);
        self.rewritten_by_middleware = true;
    }

    /// The query as sent, without `?`.
    pub(crate) fn query(&self) -> Option<&str> {
        self.original.query()
    }

    /// The host as text (what the client sent, or what a `headers` middleware set).
    pub(crate) fn host_text(&self) -> &str {
        self.host.to_str().unwrap_or("")
    }

    /// Traefik's `RequestURI` of the request as it stands: the path ("/" when empty) and the
    /// query. What the redirect middlewares see.
    pub(crate) fn request_uri(&self) -> String {
        let path = match self.path() {
            "" => "/",
            p => p,
        };
        match self.query() {
            Some(q) if self.rewritten_by_middleware => format!("{path}?{}", q.replace(';', "&")),
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        }
    }

    /// The path and query to forward: the original (no allocation) unless the path changed or the
    /// query has `;` (Traefik's proxy turns every `;` of a query into `&`).
    pub(crate) fn forward_path_and_query(&self) -> Result<PathAndQuery, http::uri::InvalidUri> {
        let query = self.query();
        let semicolons = query.is_some_and(|q| q.contains(';'));
        if self.rewritten.is_none() && !semicolons {
            return Ok(self.original.clone());
        }
        let path = match self.path() {
            "" => "/",
            p => p,
        };
        let text = match query {
            Some(q) if semicolons => format!("{path}?{}", q.replace(';', "&")),
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        PathAndQuery::try_from(text)
    }
}

#[cfg(test)]
impl RequestContext {
    /// A context for a request to `uri` from `peer`, on entrypoint 0 "http", with `host`.
    pub(crate) fn for_test(method: &str, uri: &str, host: &str, peer: &str) -> Self {
        let uri: Uri = uri.parse().expect("test URI");
        let method: Method = method.parse().expect("test method");
        let entrypoint = Entrypoint {
            index: 0,
            name: "http".into(),
            tls: false,
        };
        let peer = Peer::new(peer.parse().expect("test peer"));
        let mut ctx = Self::new(&entrypoint, &peer, &method, &uri);
        ctx.host = HeaderValue::from_str(host).expect("test host");
        ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_query() {
        let mut ctx = RequestContext::for_test("GET", "/a/b?x=1;y=2", "h", "10.0.0.1:5");
        assert_eq!(ctx.path(), "/a/b");
        assert_eq!(ctx.query(), Some("x=1;y=2"));
        assert_eq!(ctx.forward_path_and_query().unwrap(), "/a/b?x=1&y=2");
        ctx.set_entry_path(UrlPath::parse("/a%2fb").unwrap());
        assert_eq!(ctx.path(), "/a%2fb");
        assert_eq!(ctx.request_uri(), "/a%2fb?x=1;y=2");
        ctx.set_url_path(UrlPath::parse("").unwrap());
        assert_eq!(ctx.path(), "");
        assert_eq!(ctx.request_uri(), "/?x=1&y=2");
        assert_eq!(ctx.forward_path_and_query().unwrap(), "/?x=1&y=2");
        let ctx = RequestContext::for_test("GET", "/plain?q", "h", "[::ffff:10.1.2.3]:5");
        assert_eq!(ctx.forward_path_and_query().unwrap(), "/plain?q");
        assert_eq!(ctx.peer.ip.to_string(), "10.1.2.3");
    }

    #[test]
    fn client_ip_value_is_the_address_as_text() {
        for peer in [
            "10.1.2.3:5",
            "0.0.0.0:1",
            "255.255.255.255:1",
            "127.0.10.99:1",
            "[::1]:5",
            "[2001:db8::7]:5",
        ] {
            let addr: SocketAddr = peer.parse().unwrap();
            let ctx = RequestContext::for_test("GET", "/", "h", peer);
            assert_eq!(
                ctx.peer.ip_value.to_str().unwrap(),
                addr.ip().to_string(),
                "{peer}"
            );
        }
    }
}
