//! The request as the backend gets it, and the response as the client gets it.
//!
//! For: the last touches before forwarding — hop-by-hop headers removed (those `Connection`
//! names and the standard set, `Proxy-Authorization` included, as Go's reverse proxy does) except
//! `TE: trailers`, which Go's reverse proxy sends on when the client's `TE` lists `trailers`, and
//! `Trailer`, the list of trailer fields to come, which Go strips and announces again (hyper
//! sends HTTP/1.1 trailers only when they were announced), so trailers pass both ways;
//! `Content-Length: 0` for a request known to have no body, as Go's HTTP client writes it (for
//! every method but GET and HEAD, which then carry none); the peer appended to `X-Forwarded-For`
//! (unless a `headers` middleware asked for none), `Host` set (the client's, or the endpoint's
//! address for a cluster that does not pass it), the URI pointed
//! at the endpoint with the path the middlewares left, over HTTP/2 for an `h2c` cluster and
//! HTTP/1.1 otherwise (an `https` cluster may still get HTTP/2 by ALPN) — and on the way back the
//! backend's hop-by-hop headers removed and the sticky cookie put first among `Set-Cookie`s. An
//! upgrade request (see `upgrade`) keeps `Connection: upgrade` and its `Upgrade`, and so does the
//! backend's `101 Switching Protocols`. A head made ready once can be made ready again for
//! another endpoint (a retry) after [`Original::restore`]: everything but `X-Forwarded-For` is
//! set anew.
//! Not for: the forwarded headers set on entry (see `accept`) or sending (see `forward`).

use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, SET_COOKIE, TE,
    TRANSFER_ENCODING, UPGRADE,
};
use http::request::Parts;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri, Version};

use super::context::{ForwardedFor, RequestContext};
use super::ProxyError;
use crate::http1::wire::{has_token, is_hop_by_hop_name, tokens};
use crate::table::{Cluster, Endpoint, HostHeader, Scheme as ClusterScheme};

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Makes the client's request head ready for `endpoint` of `cluster`.
pub(crate) fn request(
    ctx: &mut RequestContext,
    head: &mut Parts,
    empty_body: bool,
    cluster: &Cluster,
    endpoint: &Endpoint,
) -> Result<(), ProxyError> {
    let seen = Seen::scan(&head.headers);
    let trailers = seen.te && accepts_trailers(&head.headers);
    let upgrade = if seen.upgrade {
        super::upgrade::requested(head.version, &head.headers)
    } else {
        None
    };
    strip_seen(&mut head.headers, seen);
    if trailers {
        head.headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    // HTTP/2 has no `Upgrade` (an `h2c` backend gets the request without it).
    if let Some(protocol) = upgrade.filter(|_| cluster.scheme != ClusterScheme::H2c) {
        keep_upgrade(&mut head.headers, protocol);
    }
    if empty_body {
        if head.method == Method::GET || head.method == Method::HEAD {
            if seen.content_length {
                head.headers.remove(CONTENT_LENGTH);
            }
        } else {
            head.headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
    }
    let host = match cluster.host_header {
        HostHeader::Pass => ctx.host.clone(),
        HostHeader::Endpoint => endpoint.host.clone(),
    };
    head.headers.insert(HOST, host);
    head.uri = backend_uri(ctx, cluster.scheme.as_str(), &endpoint.authority)?;
    head.version = match cluster.scheme {
        ClusterScheme::H2c => Version::HTTP_2,
        ClusterScheme::Http | ClusterScheme::Https => Version::HTTP_11,
    };
    // Only Berth's own client writes the fields the context holds for the map (the client's kept
    // as they came, the accept phase's late headers); for hyper's they go in the map (before
    // `X-Forwarded-For`, where they would have been).
    let pending = ctx.late.is_some() || ctx.raw.is_some();
    if pending && super::backend_h1::eligible(head, empty_body, endpoint.socket).is_none() {
        let raw = ctx.raw.is_some();
        super::accept::fill_headers(ctx, &mut head.headers);
        if raw {
            // The kept fields missed the clean-up above: their `Connection` (naming nothing but
            // `close` or `keep-alive`) goes as it would have.
            head.headers.remove(CONNECTION);
        }
    }
    let append = ctx.forwarded_for == ForwardedFor::Append;
    match ctx.late.as_mut() {
        // The map has none: the accept phase removed the untrusted peer's.
        Some(late) => late.forwarded_for = append,
        None if append => append_forwarded_for(&mut head.headers, &ctx.peer.ip_value),
        None => {}
    }
    Ok(())
}

/// What [`request`] changes in a head that running it again would not put back: the client's
/// `X-Forwarded-For`, which it appends to. A retry restores it before the head is made ready for
/// the next endpoint; everything else `request` sets it sets anew (`Host`, the URI, the version,
/// `Content-Length`, `TE`, an upgrade's headers) or has already removed (hop-by-hop headers).
#[derive(Debug)]
pub(crate) enum Original {
    /// `request` does not append (a `headers` middleware asked for none).
    Untouched,
    /// The client's request had no `X-Forwarded-For`.
    Absent,
    /// The client's `X-Forwarded-For`, as the accept phase left it.
    Was(HeaderValue),
}

impl Original {
    /// Taken from `head` before the first [`request`].
    pub(crate) fn of(ctx: &RequestContext, head: &Parts) -> Self {
        if ctx.forwarded_for != ForwardedFor::Append {
            return Self::Untouched;
        }
        match head.headers.get(&X_FORWARDED_FOR) {
            Some(value) => Self::Was(value.clone()),
            None => Self::Absent,
        }
    }

    /// Puts `head` back as [`request`] found it, where running it again would not.
    pub(crate) fn restore(&self, head: &mut Parts) {
        match self {
            Self::Untouched => {}
            Self::Absent => {
                head.headers.remove(&X_FORWARDED_FOR);
            }
            Self::Was(value) => {
                head.headers.insert(X_FORWARDED_FOR, value.clone());
            }
        }
    }
}

/// Makes the backend's response ready for the client.
pub(crate) fn response<B>(ctx: &RequestContext, response: &mut Response<B>) {
    let upgrade = match response.status() {
        StatusCode::SWITCHING_PROTOCOLS => response.headers().get(UPGRADE).cloned(),
        _ => None,
    };
    strip_hop_by_hop(response.headers_mut());
    if let Some(protocol) = upgrade {
        keep_upgrade(response.headers_mut(), protocol);
    }
    set_cookie(ctx, response.headers_mut());
}

/// Puts back what an upgrade needs after the hop-by-hop headers went.
fn keep_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, protocol);
}

/// Puts the sticky cookie, if any, first among the `Set-Cookie`s (Traefik writes it before the
/// backend's headers are copied).
pub(crate) fn set_cookie(ctx: &RequestContext, headers: &mut HeaderMap) {
    let Some(cookie) = &ctx.set_cookie else {
        return;
    };
    let backend: Vec<HeaderValue> = headers.get_all(SET_COOKIE).iter().cloned().collect();
    // `insert` replaces every value.
    headers.insert(SET_COOKIE, cookie.clone());
    for value in backend {
        headers.append(SET_COOKIE, value);
    }
}

/// Whether the client's `TE` lists `trailers` (Go's `HeaderValuesContainsToken`: comma-separated
/// tokens, spaces trimmed, case ignored).
fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(TE)
        .iter()
        .any(|v| has_token(v.as_bytes(), b"trailers"))
}

/// Which of the names a request's last touches care about a header map holds, from one pass over
/// its names (standard names compare as small integers): most messages carry none of the
/// hop-by-hop ones but `Connection`, and then need no hashed look-up or removal for them.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    connection: bool,
    /// A hop-by-hop name other than `Connection` (`TE` and `Upgrade` included).
    others: bool,
    te: bool,
    upgrade: bool,
    content_length: bool,
}

impl Seen {
    fn scan(headers: &HeaderMap) -> Self {
        let mut seen = Seen::default();
        for name in headers.keys() {
            if *name == CONNECTION {
                seen.connection = true;
            } else if *name == CONTENT_LENGTH {
                seen.content_length = true;
            } else if is_hop_by_hop(name) {
                seen.others = true;
                seen.te |= *name == TE;
                seen.upgrade |= *name == UPGRADE;
            }
        }
        seen
    }
}

/// Removes the headers that describe one connection rather than the message: those named by
/// `Connection`, and the standard hop-by-hop set (less `Trailer`: see the module documentation).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip_seen(headers, Seen::scan(headers));
}

/// [`strip_hop_by_hop`] with the names already scanned: hashed removals only for those there.
fn strip_seen(headers: &mut HeaderMap, seen: Seen) {
    if seen.connection {
        let mut named: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(CONNECTION) {
            for token in tokens(value.as_bytes()) {
                if token.eq_ignore_ascii_case(b"close") || token.eq_ignore_ascii_case(b"keep-alive") {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token) {
                    named.push(name);
                }
            }
        }
        for name in named {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    if seen.others {
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
    }
}

/// Whether `name` is one of [`HOP_BY_HOP`].
fn is_hop_by_hop(name: &HeaderName) -> bool {
    is_hop_by_hop_name(name.as_str().as_bytes())
}

/// The standard hop-by-hop headers besides `Connection`.
const HOP_BY_HOP: [HeaderName; 7] = [
    KEEP_ALIVE,
    PROXY_CONNECTION,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Appends the client's address to `X-Forwarded-For` (one line, as the accept phase left it).
fn append_forwarded_for(headers: &mut HeaderMap, client: &HeaderValue) {
    let Some(existing) = headers.get(&X_FORWARDED_FOR) else {
        // The usual case: the address alone, shared with `X-Real-IP` (no copy).
        headers.insert(X_FORWARDED_FOR, client.clone());
        return;
    };
    let mut value = String::from_utf8_lossy(existing.as_bytes()).into_owned();
    value.push_str(", ");
    value.push_str(client.to_str().unwrap_or_default());
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

/// `<scheme>://<endpoint><path?query>`.
fn backend_uri(ctx: &RequestContext, scheme: &str, endpoint: &Authority) -> Result<Uri, ProxyError> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(if scheme == "https" {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    });
    parts.authority = Some(endpoint.clone());
    parts.path_and_query = Some(
        ctx.forward_path_and_query()
            .map_err(|e| ProxyError::BadRequest(e.to_string()))?,
    );
    Uri::from_parts(parts).map_err(|e| ProxyError::BadRequest(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::accept;
    use crate::proxy::middleware::testing::head;
    use berth_proto::v1::{Cluster as P, Endpoint as E, HostHeader as H};

    fn cluster(scheme: &str, host_header: H) -> Cluster {
        Cluster::build(
            &P {
                name: "c".into(),
                endpoints: vec![E {
                    address: "10.0.0.7".into(),
                    port: 8080,
                    weight: 1,
                    id: "e".into(),
                }],
                scheme: scheme.into(),
                host_header: host_header as i32,
                ..Default::default()
            },
            None,
        )
        .expect("cluster")
    }

    #[test]
    fn request_for_the_backend() {
        let mut ctx = RequestContext::for_test("GET", "/a/b?c=d;e", "Go.Example:8080", "192.0.2.9:1");
        let mut head = head("GET", "/a/b?c=d;e");
        for (n, v) in [
            ("x-forwarded-for", "1.1.1.1, 2.2.2.2"),
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "s"),
            ("proxy-authorization", "Basic x"),
            ("te", "trailers"),
            ("x-kept", "yes"),
        ] {
            head.headers
                .insert(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let c = cluster("", H::Pass);
        request(&mut ctx, &mut head, false, &c, &c.endpoints[0]).expect("rewrites");
        assert_eq!(head.uri, "http://10.0.0.7:8080/a/b?c=d&e");
        assert_eq!(head.version, Version::HTTP_11);
        assert_eq!(head.headers[HOST], "Go.Example:8080");
        assert_eq!(head.headers["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 192.0.2.9");
        assert_eq!(head.headers["x-kept"], "yes");
        assert_eq!(
            head.headers[TE], "trailers",
            "Go's reverse proxy keeps TE: trailers"
        );
        for gone in ["connection", "x-secret", "proxy-authorization"] {
            assert!(!head.headers.contains_key(gone), "{gone}");
        }

        ctx.forwarded_for = ForwardedFor::Omit;
        let mut head = crate::proxy::middleware::testing::head("GET", "/");
        let c = cluster("https", H::Endpoint);
        request(&mut ctx, &mut head, false, &c, &c.endpoints[0]).expect("rewrites");
        assert_eq!(head.uri, "https://10.0.0.7:8080/a/b?c=d&e");
        assert_eq!(head.headers[HOST], "10.0.0.7:8080");
        assert!(!head.headers.contains_key("x-forwarded-for"));
    }

    #[test]
    fn every_hop_by_hop_header_goes_alone_or_together() {
        let strip = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (n, v) in pairs {
                headers.append(HeaderName::from_static(n), HeaderValue::from_static(v));
            }
            strip_hop_by_hop(&mut headers);
            let mut left: Vec<String> = headers.keys().map(|k| k.to_string()).collect();
            left.sort();
            left
        };
        for name in [
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "transfer-encoding",
            "upgrade",
        ] {
            assert_eq!(strip(&[(name, "x"), ("x-kept", "1")]), ["x-kept"], "{name} alone");
            assert_eq!(
                strip(&[("connection", "keep-alive"), (name, "x"), ("x-kept", "1")]),
                ["x-kept"],
                "{name} beside Connection"
            );
        }
        assert_eq!(
            strip(&[
                ("connection", "close"),
                ("connection", "X-A"),
                ("x-a", "1"),
                ("x-kept", "1")
            ]),
            ["x-kept"],
            "every Connection line's names go"
        );
        assert_eq!(strip(&[("x-kept", "1"), ("host", "h")]), ["host", "x-kept"]);
    }

    /// The accept phase for `headers` from 192.0.2.9 (untrusted), with `request_id` as the id it
    /// makes up.
    fn accepted(headers: &[(&str, &str)], tls: bool, request_id: &HeaderValue) -> (RequestContext, Parts) {
        let (result, mut ctx, head) = accept::tests::accept_on(tls, &[], "/a?b", headers);
        result.expect("accepted");
        ctx.request_id = request_id.clone();
        (ctx, head)
    }

    /// The backend's request head as Berth's own client writes it, late headers included.
    fn written(ctx: &RequestContext, head: &Parts) -> String {
        let mut out = Vec::new();
        super::super::backend_h1::encode(head, &accept::extra_fields(ctx), &mut out);
        String::from_utf8(out).unwrap()
    }

    /// A written head's request line, then its field lines sorted (the order of fields of
    /// different names carries no meaning; a header map's changes with its removals).
    fn fields(text: &str) -> Vec<&str> {
        let mut lines: Vec<&str> = text.lines().collect();
        lines[1..].sort_unstable();
        lines
    }

    #[test]
    fn late_headers_reach_the_backend_as_if_set_at_once() {
        let c = cluster("", H::Pass);
        let id = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
        for tls in [false, true] {
            for headers in [
                &[("host", "web.example")][..],
                &[
                    ("host", "web.example:8080"),
                    ("x-request-id", "abc"),
                    ("accept", "*/*"),
                ][..],
                &[
                    ("host", "web.example"),
                    ("x-forwarded-for", "1.1.1.1"),
                    ("x-real-ip", "1.1.1.1"),
                    ("connection", "keep-alive, x-hop"),
                    ("x-hop", "1"),
                    ("content-length", "0"),
                ][..],
            ] {
                let (mut late, mut late_head) = accepted(headers, tls, &id);
                assert!(late.late.is_some(), "{headers:?}");
                let (mut early, mut early_head) = accepted(headers, tls, &id);
                accept::fill_headers(&mut early, &mut early_head.headers);
                request(&mut late, &mut late_head, true, &c, &c.endpoints[0]).expect("rewrites");
                request(&mut early, &mut early_head, true, &c, &c.endpoints[0]).expect("rewrites");
                assert!(!late_head.headers.contains_key(&X_FORWARDED_FOR), "{headers:?}");
                let sent = written(&late, &late_head);
                assert_eq!(
                    fields(&sent),
                    fields(&written(&early, &early_head)),
                    "{headers:?}"
                );
                assert!(sent.contains("\r\nx-forwarded-for: 192.0.2.9\r\n"), "{sent}");
            }
        }
    }

    #[test]
    fn fields_kept_as_they_came_reach_the_backend_as_from_the_map() {
        let c = cluster("", H::Pass);
        let settings = accept::EntrySettings {
            server: HeaderValue::from_static("edge-1"),
            trusted_ips: crate::proxy::middleware::IpRanges::parse(&[]).unwrap(),
        };
        let head = b"GET /a?b HTTP/1.1\r\nAccept: */*\r\nX-Multi: 1\r\nHost: Web.Example\r\nConnection: keep-alive\r\nuser-AGENT: t/1\r\nx-multi: 2\r\nCookie: a=1\r\nX-Tight:1\r\nX-Loose: \t 2 \r\n\r\n";
        let run = |fill_first: bool| {
            let (mut parts, raw) = crate::http1::parse_for_test(head);
            assert!(raw.is_some(), "kept as it came");
            let mut ctx = RequestContext::for_test("GET", "/a?b", "", "192.0.2.9:1");
            ctx.raw = raw;
            if fill_first {
                accept::fill_headers(&mut ctx, &mut parts.headers);
                assert!(ctx.raw.is_none());
            }
            accept::accept(&mut ctx, &mut parts, &settings).expect("accepted");
            ctx.request_id = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
            request(&mut ctx, &mut parts, true, &c, &c.endpoints[0]).expect("rewrites");
            written(&ctx, &parts)
        };
        let kept = run(false);
        assert_eq!(fields(&kept), fields(&run(true)));

        // For hyper's client (an endpoint named by host name), the kept fields go in the map,
        // less their `Connection`.
        let (mut parts, raw) = crate::http1::parse_for_test(head);
        let mut ctx = RequestContext::for_test("GET", "/a?b", "", "192.0.2.9:1");
        ctx.raw = raw;
        accept::accept(&mut ctx, &mut parts, &settings).expect("accepted");
        let named = Cluster::build(
            &P {
                name: "n".into(),
                endpoints: vec![E {
                    address: "backend.internal".into(),
                    port: 8080,
                    weight: 1,
                    id: "n".into(),
                }],
                ..Default::default()
            },
            None,
        )
        .expect("cluster");
        request(&mut ctx, &mut parts, true, &named, &named.endpoints[0]).expect("rewrites");
        assert!(ctx.raw.is_none() && ctx.late.is_none());
        assert_eq!(parts.headers["user-agent"], "t/1");
        assert_eq!(parts.headers.get_all("x-multi").iter().count(), 2);
        assert!(!parts.headers.contains_key(CONNECTION), "{:?}", parts.headers);
        assert!(
            kept.contains("\r\nuser-agent: t/1\r\n"),
            "names in lower case: {kept}"
        );
        assert!(
            kept.contains("\r\nx-tight: 1\r\nx-loose: 2\r\n"),
            "as `name: value`: {kept}"
        );
        assert!(!kept.contains("onnection"), "{kept}");
        let multi: Vec<&str> = kept.lines().filter(|l| l.starts_with("x-multi")).collect();
        assert_eq!(multi, ["x-multi: 1", "x-multi: 2"], "in the client's order");
    }

    #[test]
    fn late_headers_go_in_the_map_for_hyper_once() {
        // A retry from an endpoint Berth's own client takes to one named by host name (hyper's).
        let c = Cluster::build(
            &P {
                name: "c".into(),
                endpoints: vec![
                    E {
                        address: "10.0.0.7".into(),
                        port: 8080,
                        weight: 1,
                        id: "ip".into(),
                    },
                    E {
                        address: "backend.internal".into(),
                        port: 8080,
                        weight: 1,
                        id: "name".into(),
                    },
                ],
                ..Default::default()
            },
            None,
        )
        .expect("cluster");
        let id = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
        let (mut ctx, mut head) = accepted(&[("host", "web.example")], false, &id);
        let original = Original::of(&ctx, &head);
        request(&mut ctx, &mut head, true, &c, &c.endpoints[0]).expect("rewrites");
        let first = written(&ctx, &head);
        original.restore(&mut head);
        request(&mut ctx, &mut head, true, &c, &c.endpoints[1]).expect("rewrites");
        assert!(ctx.late.is_none());
        assert!(accept::extra_fields(&ctx).as_slice().is_empty());
        let second = written(&ctx, &head);
        assert_eq!(
            head.headers.get_all(&X_FORWARDED_FOR).iter().collect::<Vec<_>>(),
            ["192.0.2.9"]
        );
        assert_eq!(fields(&first), fields(&second));
    }

    #[test]
    fn a_head_made_ready_again_after_restore_is_the_same() {
        let mut ctx = RequestContext::for_test("GET", "/a?b", "h.example", "192.0.2.9:1");
        let c = cluster("", H::Pass);
        for headers in [
            &[][..],
            &[("x-forwarded-for", "1.1.1.1"), ("te", "trailers, gzip")][..],
            &[
                ("connection", "keep-alive, Upgrade, x-hop"),
                ("upgrade", "websocket"),
                ("x-hop", "1"),
                ("content-length", "0"),
            ][..],
        ] {
            let mut once = head("GET", "/a?b");
            for (n, v) in headers {
                once.headers
                    .append(HeaderName::from_static(n), HeaderValue::from_static(v));
            }
            let mut again = head("GET", "/a?b");
            again.headers = once.headers.clone();
            let original = Original::of(&ctx, &again);
            request(&mut ctx, &mut once, true, &c, &c.endpoints[0]).expect("rewrites");
            request(&mut ctx, &mut again, true, &c, &c.endpoints[0]).expect("rewrites");
            original.restore(&mut again);
            request(&mut ctx, &mut again, true, &c, &c.endpoints[0]).expect("rewrites");
            assert_eq!(
                (&again.uri, &again.version, &again.headers),
                (&once.uri, &once.version, &once.headers),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn the_text_match_knows_exactly_the_hop_by_hop_list() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in [
            "connection",
            "te-x",
            "upgrade-insecure-requests",
            "keep-alive2",
            "host",
            "trailer",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn upgrades_keep_their_headers_and_h2c_goes_out_as_http2() {
        let mut ctx = RequestContext::for_test("GET", "/ws", "h", "10.0.0.1:1");
        let c = cluster("", H::Pass);
        let mut ws = head("GET", "/ws");
        for (n, v) in [
            ("connection", "keep-alive, Upgrade, x-hop"),
            ("upgrade", "websocket"),
            ("x-hop", "1"),
            ("sec-websocket-key", "k"),
        ] {
            ws.headers
                .insert(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        request(&mut ctx, &mut ws, true, &c, &c.endpoints[0]).expect("rewrites");
        assert_eq!(ws.headers[CONNECTION], "Upgrade");
        assert_eq!(ws.headers[UPGRADE], "websocket");
        assert_eq!(ws.headers["sec-websocket-key"], "k");
        assert!(!ws.headers.contains_key("x-hop"));

        let mut switched = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(CONNECTION, "upgrade, x-hop")
            .header(UPGRADE, "websocket")
            .header("x-hop", "1")
            .body(())
            .unwrap();
        response(&ctx, &mut switched);
        assert_eq!(switched.headers()[CONNECTION], "Upgrade");
        assert_eq!(switched.headers()[UPGRADE], "websocket");
        assert!(!switched.headers().contains_key("x-hop"));
        let mut ok = Response::builder()
            .header(CONNECTION, "upgrade")
            .header(UPGRADE, "websocket")
            .body(())
            .unwrap();
        response(&ctx, &mut ok);
        assert!(!ok.headers().contains_key(UPGRADE) && !ok.headers().contains_key(CONNECTION));

        let c = cluster("h2c", H::Pass);
        let mut grpc = head("POST", "/pkg.Service/Call");
        grpc.headers.insert(TE, HeaderValue::from_static("trailers"));
        grpc.headers
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
        grpc.headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        request(&mut ctx, &mut grpc, false, &c, &c.endpoints[0]).expect("rewrites");
        assert_eq!(grpc.version, Version::HTTP_2);
        assert_eq!(grpc.uri, "http://10.0.0.7:8080/ws");
        assert_eq!(grpc.headers[TE], "trailers");
        assert!(!grpc.headers.contains_key(UPGRADE), "no upgrade over HTTP/2");
    }

    #[test]
    fn te_is_kept_only_as_trailers() {
        let mut ctx = RequestContext::for_test("GET", "/", "h", "10.0.0.1:1");
        let c = cluster("", H::Pass);
        for (te, kept) in [
            (Some("trailers"), true),
            (Some("gzip, Trailers"), true),
            (Some("gzip"), false),
            (Some("trailers;q=1"), false),
            (None, false),
        ] {
            let mut head = head("GET", "/");
            if let Some(te) = te {
                head.headers.insert(TE, HeaderValue::from_static(te));
            }
            request(&mut ctx, &mut head, false, &c, &c.endpoints[0]).expect("rewrites");
            assert_eq!(
                head.headers.get(TE).map(|v| v.to_str().unwrap()),
                kept.then_some("trailers"),
                "{te:?}"
            );
        }
    }

    #[test]
    fn content_length_of_an_empty_body_as_go() {
        let mut ctx = RequestContext::for_test("GET", "/", "h", "10.0.0.1:1");
        let c = cluster("", H::Pass);
        for (method, sent, empty, expect) in [
            ("POST", None, true, Some("0")),
            ("POST", Some("0"), true, Some("0")),
            ("PUT", None, true, Some("0")),
            ("DELETE", None, true, Some("0")),
            ("GET", Some("0"), true, None),
            ("HEAD", None, true, None),
            ("POST", Some("5"), false, Some("5")),
            ("POST", None, false, None),
        ] {
            let mut head = head(method, "/");
            if let Some(sent) = sent {
                head.headers
                    .insert(CONTENT_LENGTH, HeaderValue::from_static(sent));
            }
            request(&mut ctx, &mut head, empty, &c, &c.endpoints[0]).expect("rewrites");
            assert_eq!(
                head.headers.get(CONTENT_LENGTH).map(|v| v.to_str().unwrap()),
                expect,
                "{method} {sent:?} empty={empty}"
            );
        }
    }

    #[test]
    fn response_for_the_client() {
        let mut ctx = RequestContext::for_test("GET", "/", "h", "10.0.0.1:1");
        ctx.set_cookie = Some(HeaderValue::from_static("lb=abc; Path=/"));
        let mut response = Response::builder()
            .header(CONNECTION, "close, x-hop")
            .header("x-hop", "1")
            .header(TRANSFER_ENCODING, "chunked")
            .header(SET_COOKIE, "app=1")
            .header("content-type", "text/plain")
            .body(())
            .unwrap();
        super::response(&ctx, &mut response);
        let h = response.headers();
        assert!(
            !h.contains_key("x-hop") && !h.contains_key(CONNECTION) && !h.contains_key(TRANSFER_ENCODING)
        );
        assert_eq!(
            h.get_all(SET_COOKIE).iter().collect::<Vec<_>>(),
            ["lb=abc; Path=/", "app=1"]
        );
    }
}
