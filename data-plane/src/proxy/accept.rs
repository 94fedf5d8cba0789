//! Phase 1, accept: what Traefik's entrypoint does to every request before routing.
//!
//! For: reading the host the client asked for (`Host`, or `:authority` for HTTP/2); bringing the
//! path to the form Traefik routes and forwards (escapes normalized, `.`/`..`/`//` removed: see
//! `path::entry_path`); and the forwarded headers, as Traefik's entrypoint `forwardedHeaders`
//! step does. A peer outside `--trusted-ips` (by default, everyone) may not set any of them: its
//! `X-Forwarded-*` and `X-Real-Ip` (underscore spellings too) are dropped, `X-Forwarded-For`
//! included, and set anew (`-Proto`, `-Host`, `-Port`, `-Server`, `X-Real-Ip`). A trusted peer's
//! are kept, several `X-Forwarded-For` lines joined into one, and only those it left unset or
//! empty are filled in (`X-Forwarded-Server` is always this proxy's). Headers named in
//! `Connection` go (but not the forwarded ones).
//! Not for: choosing a route (see `route`); appending the peer to `X-Forwarded-For` and the
//! hop-by-hop clean-up of the forwarded request (see `forwarded`).

use http::header::{CONNECTION, HOST, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Version};

use super::context::RequestContext;
use super::forwarded::X_FORWARDED_FOR;
use super::hostport::split_host_port;
use super::middleware::IpRanges;
use super::path::{entry_path, UrlPath};
use super::ProxyError;

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_SERVER: HeaderName = HeaderName::from_static("x-forwarded-server");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The forwarded headers Traefik manages, which only a trusted peer may set.
const MANAGED: [&str; 13] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-forwarded-prefix",
    "x-forwarded-tls-client-cert",
    "x-forwarded-tls-client-cert-info",
    "x-scheme",
    "x-real-ip",
];

/// What the accept phase takes from the proxy's settings.
#[derive(Debug)]
pub(crate) struct EntrySettings {
    /// This machine's host name, sent in `X-Forwarded-Server`.
    pub server: HeaderValue,
    /// Peers whose forwarded headers are kept (`--trusted-ips`).
    pub trusted_ips: IpRanges,
}

/// Runs the accept phase on a request.
pub(crate) fn accept(
    ctx: &mut RequestContext,
    head: &mut Parts,
    settings: &EntrySettings,
) -> Result<(), ProxyError> {
    ctx.host = request_host(head).ok_or(ProxyError::NoHost)?;
    match entry_path(ctx.path()) {
        Ok(None) => {}
        Ok(Some(path)) => match UrlPath::parse(&path) {
            Ok(url) => ctx.set_entry_path(url),
            Err(e) => return Err(ProxyError::BadPath(e.to_string())),
        },
        Err(e) => return Err(ProxyError::BadPath(e.to_string())),
    }
    let trusted = settings.trusted_ips.contains(ctx.client_ip);
    forwarded_headers(ctx, &mut head.headers, &settings.server, trusted);
    Ok(())
}

/// The host the client asked for, as a header value. HTTP/2 carries it in `:authority` (the
/// URI's authority); HTTP/1.1 in `Host`. Each falls back to the other.
fn request_host(head: &Parts) -> Option<HeaderValue> {
    let from_header = || head.headers.get(HOST).filter(|v| !v.is_empty()).cloned();
    let from_uri = || {
        head.uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    };
    if head.version == Version::HTTP_2 {
        from_uri().or_else(from_header)
    } else {
        from_header().or_else(from_uri)
    }
}

/// Whether a header is one of the managed forwarded headers, or an underscore spelling of one
/// (`X_Forwarded_For` would pass for it at some backends).
fn is_managed(name: &HeaderName) -> bool {
    let name = name.as_str();
    if !name.starts_with('x') {
        return false;
    }
    if MANAGED.contains(&name) {
        return true;
    }
    name.contains('_') && MANAGED.contains(&name.replace('_', "-").as_str())
}

fn forwarded_headers(ctx: &RequestContext, headers: &mut HeaderMap, server: &HeaderValue, trusted: bool) {
    if !trusted {
        let forged: Vec<HeaderName> = headers.keys().filter(|k| is_managed(k)).cloned().collect();
        for name in forged {
            headers.remove(name);
        }
    }

    if unset(headers, &X_REAL_IP) {
        if let Ok(ip) = HeaderValue::from_str(&ctx.client_ip.to_string()) {
            headers.insert(X_REAL_IP, ip);
        }
    }
    if unset(headers, &X_FORWARDED_PROTO) {
        let proto = if is_websocket(headers) { "ws" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if unset(headers, &X_FORWARDED_PORT) {
        let port = forwarded_port(ctx.host_text(), headers);
        headers.insert(X_FORWARDED_PORT, port);
    }
    if unset(headers, &X_FORWARDED_HOST) && !ctx.host.is_empty() {
        headers.insert(X_FORWARDED_HOST, ctx.host.clone());
    }
    join_forwarded_for(headers);
    headers.insert(X_FORWARDED_SERVER, server.clone());
    remove_connection_headers(headers);
}

/// Whether a header is absent or empty (Go's `Header.Get` gives "" for both).
fn unset(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers.get(name).is_none_or(|v| v.is_empty())
}

/// The `Host`'s port; else 443 when `X-Forwarded-Proto` (a trusted peer's) says https or wss;
/// else 80.
fn forwarded_port(host: &str, headers: &HeaderMap) -> HeaderValue {
    if let Some((_, port)) = split_host_port(host) {
        if !port.is_empty() {
            if let Ok(port) = HeaderValue::from_str(port) {
                return port;
            }
        }
    }
    match headers.get(&X_FORWARDED_PROTO).map(HeaderValue::as_bytes) {
        Some(b"https" | b"wss") => HeaderValue::from_static("443"),
        _ => HeaderValue::from_static("80"),
    }
}

/// Several `X-Forwarded-For` lines become one, `, `-joined (Traefik's forwarded-headers step).
fn join_forwarded_for(headers: &mut HeaderMap) {
    let mut lines = headers.get_all(&X_FORWARDED_FOR).iter();
    if lines.next().is_none() || lines.next().is_none() {
        return;
    }
    let joined = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(value) = HeaderValue::from_str(&joined) {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

/// `Connection: upgrade` with `Upgrade: websocket` (tokens compared without case).
fn is_websocket(headers: &HeaderMap) -> bool {
    let has_token = |name, token: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    has_token(CONNECTION, "upgrade") && has_token(UPGRADE, "websocket")
}

/// Removes the headers `Connection` names, except the forwarded ones this phase just set.
fn remove_connection_headers(headers: &mut HeaderMap) {
    if !headers.contains_key(CONNECTION) {
        return;
    }
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let Ok(name) = HeaderName::from_bytes(token.as_bytes()) else {
                continue;
            };
            if is_managed(&name) {
                continue;
            }
            named.push(name);
        }
    }
    for name in named {
        if name != UPGRADE && name != CONNECTION {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::middleware::testing::head;

    fn run(uri: &str, headers: &[(&str, &str)]) -> (Result<(), ProxyError>, RequestContext, Parts) {
        run_trusting(&[], uri, headers)
    }

    /// The accept phase for a request from 192.0.2.9, trusting `trusted`.
    fn run_trusting(
        trusted: &[&str],
        uri: &str,
        headers: &[(&str, &str)],
    ) -> (Result<(), ProxyError>, RequestContext, Parts) {
        let mut head = head("GET", uri);
        for (n, v) in headers {
            head.headers.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let settings = EntrySettings {
            server: HeaderValue::from_static("edge-1"),
            trusted_ips: IpRanges::parse(&trusted.iter().map(|t| t.to_string()).collect::<Vec<_>>()).unwrap(),
        };
        let mut ctx = RequestContext::for_test("GET", uri, "", "192.0.2.9:4567");
        let result = accept(&mut ctx, &mut head, &settings);
        (result, ctx, head)
    }

    const FORGED: [(&str, &str); 11] = [
        ("host", "Web.Example:8080"),
        ("x-forwarded-for", "1.1.1.1"),
        ("x-forwarded-for", "2.2.2.2"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil"),
        ("x-forwarded-prefix", "/evil"),
        ("x-real-ip", "6.6.6.6"),
        ("x_forwarded_proto", "https"),
        ("connection", "x-drop, x-forwarded-host"),
        ("x-drop", "1"),
        ("x-keep", "1"),
    ];

    #[test]
    fn forwarded_headers_as_traefik_for_an_untrusted_client() {
        let (result, ctx, head) = run("/a", &FORGED);
        result.expect("accepted");
        assert_eq!(ctx.host, "Web.Example:8080");
        let h = &head.headers;
        assert!(
            !h.contains_key("x-forwarded-for"),
            "the peer is appended when forwarding"
        );
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "Web.Example:8080");
        assert_eq!(h["x-forwarded-port"], "8080");
        assert_eq!(h["x-forwarded-server"], "edge-1");
        assert_eq!(h["x-real-ip"], "192.0.2.9");
        assert!(!h.contains_key("x-forwarded-prefix"));
        assert!(!h.contains_key("x_forwarded_proto"));
        assert!(!h.contains_key("x-drop"));
        assert_eq!(h["x-keep"], "1");

        let (_, _, head) = run_trusting(&["10.0.0.0/8", "192.0.2.10"], "/a", &FORGED);
        assert!(
            !head.headers.contains_key("x-forwarded-for"),
            "a peer outside the trusted ranges is not trusted"
        );
    }

    #[test]
    fn forwarded_headers_as_traefik_for_a_trusted_client() {
        let (result, _, head) = run_trusting(&["192.0.2.0/24"], "/a", &FORGED);
        result.expect("accepted");
        let h = &head.headers;
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "evil");
        assert_eq!(h["x-forwarded-port"], "8080", "from Host");
        assert_eq!(h["x-forwarded-server"], "edge-1", "always this proxy's");
        assert_eq!(h["x-real-ip"], "6.6.6.6");
        assert_eq!(h["x-forwarded-prefix"], "/evil");
        assert_eq!(h["x_forwarded_proto"], "https");
        assert!(!h.contains_key("x-drop"));

        // Unset or empty ones are filled in; no port in Host and https: 443.
        let (_, _, head) = run_trusting(
            &["192.0.2.9"],
            "/",
            &[
                ("host", "a.example"),
                ("x-forwarded-proto", "https"),
                ("x-real-ip", ""),
            ],
        );
        let h = &head.headers;
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(h["x-real-ip"], "192.0.2.9");
        assert_eq!(h["x-forwarded-host"], "a.example");
        assert!(!h.contains_key("x-forwarded-for"));
    }

    #[test]
    fn port_defaults_and_websocket() {
        let (_, _, head) = run(
            "/",
            &[
                ("host", "a.example"),
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
            ],
        );
        assert_eq!(head.headers["x-forwarded-port"], "80");
        assert_eq!(head.headers["x-forwarded-proto"], "ws");
        let (_, _, head) = run("/", &[("host", "a.example:")]);
        assert_eq!(
            head.headers["x-forwarded-port"], "80",
            "an empty port counts as none"
        );
    }

    #[test]
    fn paths_are_normalized_and_bad_ones_refused() {
        let (result, ctx, _) = run("/a//b/../c/%7e", &[("host", "a")]);
        result.expect("accepted");
        assert_eq!(ctx.path(), "/a/c/~");
        let (result, _, _) = run("/a%zz", &[("host", "a")]);
        assert!(matches!(result, Err(ProxyError::BadPath(_))), "{result:?}");
        let (result, _, _) = run("/", &[]);
        assert!(matches!(result, Err(ProxyError::NoHost)));
    }

    #[test]
    fn http2_authority() {
        let mut head = http::Request::get("http://GO.example:8443/x")
            .version(Version::HTTP_2)
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let mut ctx = RequestContext::for_test("GET", "/x", "", "10.0.0.1:1");
        let settings = EntrySettings {
            server: HeaderValue::from_static("s"),
            trusted_ips: IpRanges::parse(&[]).unwrap(),
        };
        accept(&mut ctx, &mut head, &settings).expect("accepted");
        assert_eq!(ctx.host, "GO.example:8443");
        assert_eq!(head.headers["x-forwarded-port"], "8443");
    }
}
