//! Phase 1, accept: what Traefik's entrypoint does to every request before routing.
//!
//! For: reading the host the client asked for, the one host a request is both routed by and
//! delivered with (`:authority` for HTTP/2, the request target's authority for an absolute-form
//! HTTP/1.1 request, else `Host`); refusing with 400 the requests that name two hosts (several
//! `Host` lines, or an HTTP/2 `host` that differs from `:authority`, as RFC 9112 §3.2 and
//! RFC 9113 §8.3.1 ask); the request's `X-Request-Id` (the client's if it sent one plausible id,
//! else a new random one), kept in the context for the log and sent to the backend; bringing the
//! path to the form Traefik routes and forwards (escapes normalized, `.`/`..`/`//` removed: see
//! `path::entry_path`); and the forwarded headers, as Traefik's entrypoint `forwardedHeaders`
//! step does. A peer outside `--trusted-ips` (by default, everyone) may not set any of them: its
//! `X-Forwarded-*` and `X-Real-Ip` (underscore spellings too) are dropped, `X-Forwarded-For`
//! included, and set anew (`-Proto`, `-Host`, `-Port`, `-Server`, `X-Real-Ip`). A trusted peer's
//! are kept, several `X-Forwarded-For` lines joined into one, and only those it left unset or
//! empty are filled in (`X-Forwarded-Server` is always this proxy's). Headers named in
//! `Connection` go (but not the forwarded ones).
//!
//! An untrusted peer's forwarded headers, and a made-up `X-Request-Id`, are set *late* (see
//! [`LateHeaders`]): kept in the context and written by Berth's own backend client after the
//! request's own fields, and put in the header map only where something else may read it first.
//! Not for: choosing a route (see `route`); appending the peer to `X-Forwarded-For` and the
//! hop-by-hop clean-up of the forwarded request (see `forwarded`).

use http::header::{CONNECTION, HOST, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Version};

use super::backend_h1::ExtraFields;
use super::context::RequestContext;
use super::forwarded::X_FORWARDED_FOR;
use super::hostport::split_host_port;
use super::middleware::IpRanges;
use super::path::{entry_path, UrlPath};
use super::ProxyError;
use crate::http1::wire::{has_token, tokens};

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_SERVER: HeaderName = HeaderName::from_static("x-forwarded-server");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The headers the accept phase may set late (see [`LateHeaders`]), `X-Forwarded-For` (which the
/// forward phase sets) included: a `Connection` naming one of them has them set at once.
const LATE: [HeaderName; 7] = [
    X_REAL_IP,
    X_FORWARDED_PROTO,
    X_FORWARDED_PORT,
    X_FORWARDED_HOST,
    X_FORWARDED_SERVER,
    X_REQUEST_ID,
    X_FORWARDED_FOR,
];

/// The forwarded headers of an untrusted peer's request (the default: `--trusted-ips` empty), and
/// the `X-Request-Id` the accept phase made up, set on the request *late*. Putting half a dozen
/// fields in a header map (hashing each name) only to write them out again was a tenth of the
/// common request's work; instead they stay here, in the context, and:
/// - Berth's own backend client writes them after the request's own fields ([`extra_fields`]);
/// - [`fill_headers`] puts them in the header map first wherever anything else may read it:
///   before matching when a route's matcher reads a header, before a route's middlewares unless
///   they name the fields they touch (`middleware::Chain::request_fields`; none of these
///   headers among them), before a sticky cookie is looked for (`upstream`), and before a
///   request goes by hyper's client (`forwarded::request`).
///
/// The client's own fields may wait in the context the same way (`http1::RawFields`), and go in
/// the map at the same places.
///
/// Either way the backend gets the same fields (written late, they come last, where the map's
/// removals may have moved them up: an order HTTP gives no meaning between different names).
/// They are set at once, in the map, when the peer's `Connection` names one of them (the forward
/// phase then removes it from the map).
#[derive(Debug)]
pub(crate) struct LateHeaders {
    /// `X-Forwarded-Proto`.
    proto: &'static str,
    /// `X-Forwarded-Port`.
    port: HeaderValue,
    /// `X-Forwarded-Server`.
    server: HeaderValue,
    /// `X-Forwarded-Host` is the routed host (not set when it is empty).
    host: bool,
    /// `X-Request-Id` is the context's (made up by the accept phase).
    request_id: bool,
    /// `X-Forwarded-For` is the peer's address: decided by the forward phase for each attempt,
    /// and never put in the map by [`fill_headers`] (that phase appends to the map's itself).
    pub forwarded_for: bool,
}

/// Puts in the request's map what the context holds for it, as it would have been had it been
/// there from the start: the client's fields kept as they came (`http1::RawFields`), then the late
/// headers (see [`LateHeaders`]), `X-Forwarded-For` excepted. Once filled, the map is the request's
/// only header fields.
pub(crate) fn fill_headers(ctx: &mut RequestContext, headers: &mut HeaderMap) {
    if let Some(raw) = ctx.raw.take() {
        raw.append_to(headers, true);
    }
    let Some(late) = ctx.late.take() else {
        return;
    };
    headers.insert(X_REAL_IP, ctx.peer.ip_value.clone());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(late.proto));
    headers.insert(X_FORWARDED_PORT, late.port);
    if late.host {
        headers.insert(X_FORWARDED_HOST, ctx.host.clone());
    }
    headers.insert(X_FORWARDED_SERVER, late.server);
    if late.request_id {
        headers.insert(X_REQUEST_ID, ctx.request_id.clone());
    }
}

/// Puts in the request's map the client's fields kept as they came (`http1::RawFields`) with one
/// of `names`, for a step that reads or changes only those; the rest stay where they are. None of
/// `names` is a late header (see [`is_set_late`]).
pub(crate) fn fill_named(ctx: &mut RequestContext, headers: &mut HeaderMap, names: &[HeaderName]) {
    debug_assert!(!names.iter().any(is_set_late), "{names:?}");
    if let (Some(raw), false) = (&mut ctx.raw, names.is_empty()) {
        raw.move_named(headers, names);
    }
}

/// Whether the accept phase may keep header `name` out of the map until it is written (one of
/// [`LATE`]).
pub(crate) fn is_set_late(name: &HeaderName) -> bool {
    LATE.contains(name)
}

/// What the context holds for the request's map (see [`fill_headers`]) as Berth's own backend
/// client writes it after the map's fields: the client's fields kept as they came, then the late
/// headers with lower-case names, in the order they would have been put in the map.
pub(crate) fn extra_fields(ctx: &RequestContext) -> ExtraFields<'_> {
    let mut fields = ExtraFields::new(ctx.raw.as_ref());
    let Some(late) = &ctx.late else {
        return fields;
    };
    fields.push("x-real-ip", ctx.peer.ip_value.as_bytes());
    fields.push("x-forwarded-proto", late.proto.as_bytes());
    fields.push("x-forwarded-port", late.port.as_bytes());
    if late.host {
        fields.push("x-forwarded-host", ctx.host.as_bytes());
    }
    fields.push("x-forwarded-server", late.server.as_bytes());
    if late.request_id {
        fields.push("x-request-id", ctx.request_id.as_bytes());
    }
    if late.forwarded_for {
        fields.push("x-forwarded-for", ctx.peer.ip_value.as_bytes());
    }
    fields
}

/// The longest client-sent `X-Request-Id` kept; a longer one is replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

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
    let (host, in_header) = request_host(head)?;
    ctx.host = host;
    // The backend gets the host the request is routed by, whatever `Host` said (when that one
    // `Host` line is where it came from, it is there already).
    if !in_header {
        head.headers.insert(HOST, ctx.host.clone());
    }
    match entry_path(ctx.path()) {
        Ok(None) => {}
        Ok(Some(path)) => match UrlPath::parse(&path) {
            Ok(url) => ctx.set_entry_path(url),
            Err(e) => return Err(ProxyError::BadPath(e.to_string())),
        },
        Err(e) => return Err(ProxyError::BadPath(e.to_string())),
    }
    let trusted = settings.trusted_ips.contains(ctx.peer.ip);
    let names = Names::scan(&head.headers);
    forwarded_headers(ctx, &mut head.headers, names, &settings.server, trusted);
    // After `Connection`'s clean-up, which may not remove the id.
    let (id, made_up) = if names.request_id {
        request_id(&head.headers)
    } else {
        (new_request_id(), Id::MadeUp { replacing: false })
    };
    ctx.request_id = id;
    match (made_up, ctx.late.as_mut()) {
        (Id::Sent, _) => {}
        (Id::MadeUp { replacing }, Some(late)) => {
            if replacing {
                head.headers.remove(X_REQUEST_ID);
            }
            late.request_id = true;
        }
        (Id::MadeUp { .. }, None) => {
            head.headers.insert(X_REQUEST_ID, ctx.request_id.clone());
        }
    }
    Ok(())
}

/// The host the client asked for, as a header value: the URI's authority when there is one
/// (HTTP/2's `:authority`, or an absolute-form HTTP/1.1 target, which RFC 9112 §3.2.2 says wins
/// over `Host`), else the `Host` header (then `true`: the request's one `Host` line holds it). Two
/// hosts are refused: several `Host` lines, or an HTTP/2 `host` that names another host than
/// `:authority`.
fn request_host(head: &Parts) -> Result<(HeaderValue, bool), ProxyError> {
    let mut lines = head.headers.get_all(HOST).iter();
    let header = lines.next();
    if lines.next().is_some() {
        return Err(ProxyError::BadHost("the request has several Host headers"));
    }
    let authority = head.uri.authority();
    if let Some(authority) = authority {
        if authority.as_str().contains('@') {
            return Err(ProxyError::BadHost("the request target has user information"));
        }
    }
    let from_uri = authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    match (from_uri, header) {
        (Some(uri), Some(header)) if head.version == Version::HTTP_2 && !same_host(&uri, header) => {
            Err(ProxyError::BadHost("the host header differs from :authority"))
        }
        (Some(uri), _) => Ok((uri, false)),
        (None, Some(header)) if !header.is_empty() => Ok((header.clone(), true)),
        _ => Err(ProxyError::NoHost),
    }
}

/// Whether two authorities are the same (case ignored).
fn same_host(a: &HeaderValue, b: &HeaderValue) -> bool {
    a.as_bytes().eq_ignore_ascii_case(b.as_bytes())
}

/// Where a request's id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Id {
    /// The client sent it; the header stands.
    Sent,
    /// Made up: the caller sets the header to it, `replacing` what the client sent.
    MadeUp { replacing: bool },
}

/// The request's id: the client's `X-Request-Id` when it sent exactly one of at most 128
/// visible characters (letters, digits and `-_.:/+=`), else a new random 128-bit one in hex.
fn request_id(headers: &HeaderMap) -> (HeaderValue, Id) {
    let mut sent = headers.get_all(&X_REQUEST_ID).iter();
    let first = sent.next();
    if let (Some(id), None) = (first, sent.next()) {
        let plausible = !id.is_empty()
            && id.len() <= MAX_REQUEST_ID_LEN
            && id
                .as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b));
        if plausible {
            return (id.clone(), Id::Sent);
        }
    }
    let replacing = first.is_some();
    (new_request_id(), Id::MadeUp { replacing })
}

/// Each byte's two lower-case hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    pairs
};

/// How many request ids share one allocation (see [`new_request_id`]).
const IDS_PER_BLOCK: usize = 64;

/// A random 128-bit id as 32 lower-case hex digits (from a per-thread generator: no lock).
///
/// Ids are cut from a per-thread block of [`IDS_PER_BLOCK`]: a header value with bytes of its
/// own costs an allocation, and another on its first clone (the id goes both to the backend and
/// to the log), where a slice of a shared block costs neither. A block is freed once the last
/// request holding one of its ids is done.
fn new_request_id() -> HeaderValue {
    const LEN: usize = 32;
    thread_local! {
        static BLOCK: std::cell::RefCell<bytes::BytesMut> = std::cell::RefCell::new(bytes::BytesMut::new());
    }
    let mut text = [0u8; LEN];
    for (pair, byte) in text.chunks_exact_mut(2).zip(fastrand::u128(..).to_be_bytes()) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    let id = BLOCK.with_borrow_mut(|block| {
        if block.capacity() < LEN {
            *block = bytes::BytesMut::with_capacity(LEN * IDS_PER_BLOCK);
        }
        block.extend_from_slice(&text);
        block.split().freeze()
    });
    HeaderValue::from_maybe_shared(id).unwrap_or_else(|_| HeaderValue::from_static("0"))
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

/// Which of the names the accept phase looks up a request has, from one walk over its names
/// (standard names compare as small integers): most requests have none of them, and then need no
/// hashed look-up.
#[derive(Debug, Clone, Copy, Default)]
struct Names {
    connection: bool,
    /// A managed forwarded header (see [`is_managed`]).
    managed: bool,
    request_id: bool,
}

impl Names {
    fn scan(headers: &HeaderMap) -> Self {
        let mut names = Names::default();
        for name in headers.keys() {
            if *name == CONNECTION {
                names.connection = true;
            } else if *name == X_REQUEST_ID {
                names.request_id = true;
            } else if is_managed(name) {
                names.managed = true;
            }
        }
        names
    }
}

fn forwarded_headers(
    ctx: &mut RequestContext,
    headers: &mut HeaderMap,
    names: Names,
    server: &HeaderValue,
    trusted: bool,
) {
    let websocket = names.connection && is_websocket(headers);
    if !trusted {
        if names.managed {
            let forged: Vec<HeaderName> = headers.keys().filter(|k| is_managed(k)).cloned().collect();
            for name in forged {
                headers.remove(name);
            }
        }
        if !(names.connection && connection_names_late(headers)) {
            let proto = forwarded_proto(websocket, ctx.entrypoint.tls);
            ctx.late = Some(LateHeaders {
                proto,
                port: forwarded_port(ctx.host_text(), Some(proto.as_bytes()), ctx.entrypoint.tls),
                server: server.clone(),
                host: !ctx.host.is_empty(),
                request_id: false,
                forwarded_for: false,
            });
            if names.connection {
                remove_connection_headers(headers);
            }
            return;
        }
    }

    // An untrusted peer's forwarded headers were all removed above: none needs looking up.
    let missing = |headers: &HeaderMap, name: &HeaderName| !trusted || unset(headers, name);
    if missing(headers, &X_REAL_IP) {
        headers.insert(X_REAL_IP, ctx.peer.ip_value.clone());
    }
    // The `X-Forwarded-Proto` this phase sets, if it sets one (else the trusted peer's stands).
    let mut set_proto = None;
    if missing(headers, &X_FORWARDED_PROTO) {
        let proto = forwarded_proto(websocket, ctx.entrypoint.tls);
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        set_proto = Some(proto.as_bytes());
    }
    if missing(headers, &X_FORWARDED_PORT) {
        let proto = set_proto.or_else(|| headers.get(&X_FORWARDED_PROTO).map(HeaderValue::as_bytes));
        let port = forwarded_port(ctx.host_text(), proto, ctx.entrypoint.tls);
        headers.insert(X_FORWARDED_PORT, port);
    }
    if missing(headers, &X_FORWARDED_HOST) && !ctx.host.is_empty() {
        headers.insert(X_FORWARDED_HOST, ctx.host.clone());
    }
    if trusted {
        join_forwarded_for(headers);
    }
    headers.insert(X_FORWARDED_SERVER, server.clone());
    remove_connection_headers(headers);
}

/// The `X-Forwarded-Proto` this proxy sets: `http` or `https` by the entrypoint, `ws` or `wss`
/// for a WebSocket upgrade.
fn forwarded_proto(websocket: bool, tls: bool) -> &'static str {
    match (websocket, tls) {
        (false, false) => "http",
        (false, true) => "https",
        (true, false) => "ws",
        (true, true) => "wss",
    }
}

/// Whether the request's `Connection` names a header the accept phase may set late (which the
/// forward phase would remove again: see [`LateHeaders`]).
fn connection_names_late(headers: &HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().any(|value| {
        tokens(value.as_bytes()).any(|token| {
            LATE.iter()
                .any(|name| token.eq_ignore_ascii_case(name.as_str().as_bytes()))
        })
    })
}

/// Whether a header is absent or empty (Go's `Header.Get` gives "" for both).
fn unset(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers.get(name).is_none_or(|v| v.is_empty())
}

/// The `Host`'s port; else 443 when `X-Forwarded-Proto` (`proto`) says https or wss, or the
/// request came over TLS; else 80.
fn forwarded_port(host: &str, proto: Option<&[u8]>, tls: bool) -> HeaderValue {
    if let Some((_, port)) = split_host_port(host) {
        if !port.is_empty() {
            if let Ok(port) = HeaderValue::from_str(port) {
                return port;
            }
        }
    }
    match proto {
        Some(b"https" | b"wss") => HeaderValue::from_static("443"),
        _ if tls => HeaderValue::from_static("443"),
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
    let lists = |name, token: &[u8]| headers.get(name).is_some_and(|v| has_token(v.as_bytes(), token));
    lists(CONNECTION, b"upgrade") && lists(UPGRADE, b"websocket")
}

/// Removes the headers `Connection` names, except the forwarded ones this phase just set.
fn remove_connection_headers(headers: &mut HeaderMap) {
    if !headers.contains_key(CONNECTION) {
        return;
    }
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        for token in tokens(value.as_bytes()) {
            let Ok(name) = HeaderName::from_bytes(token) else {
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
pub(super) mod tests {
    use super::*;
    use crate::proxy::middleware::testing::head;

    fn run(uri: &str, headers: &[(&str, &str)]) -> (Result<(), ProxyError>, RequestContext, Parts) {
        run_trusting(&[], uri, headers)
    }

    /// The accept phase for a request from 192.0.2.9, trusting `trusted`, with its late headers
    /// then set in the map (what every phase but Berth's own backend client sees).
    fn run_trusting(
        trusted: &[&str],
        uri: &str,
        headers: &[(&str, &str)],
    ) -> (Result<(), ProxyError>, RequestContext, Parts) {
        let (result, mut ctx, mut head) = accept_only(trusted, uri, headers);
        fill_headers(&mut ctx, &mut head.headers);
        (result, ctx, head)
    }

    /// The accept phase alone, late headers left pending.
    fn accept_only(
        trusted: &[&str],
        uri: &str,
        headers: &[(&str, &str)],
    ) -> (Result<(), ProxyError>, RequestContext, Parts) {
        accept_on(false, trusted, uri, headers)
    }

    /// The accept phase alone for a GET from 192.0.2.9 on a plain or a TLS (`tls`) entrypoint,
    /// trusting `trusted`, this proxy called `edge-1`.
    pub(in crate::proxy) fn accept_on(
        tls: bool,
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
        ctx.entrypoint.tls = tls;
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
    fn an_untrusted_peers_forwarded_headers_are_set_late() {
        let names = [
            "x-real-ip",
            "x-forwarded-proto",
            "x-forwarded-port",
            "x-forwarded-host",
            "x-forwarded-server",
            "x-request-id",
        ];
        let plain = [
            ("host", "web.example"),
            ("x-forwarded-proto", "https"),
            ("connection", "keep-alive, x-drop"),
        ];
        let (result, ctx, head) = accept_only(&[], "/", &plain);
        result.expect("accepted");
        assert!(ctx.late.is_some());
        for name in names {
            assert!(
                !head.headers.contains_key(name),
                "{name} is set late: {:?}",
                head.headers
            );
        }
        let fields = extra_fields(&ctx);
        let written: Vec<&str> = fields.as_slice().iter().map(|(name, _)| *name).collect();
        assert_eq!(written, names, "in the order they would have been put in the map");

        // Set at once: for a trusted peer, whose own may stand, and when `Connection` names one
        // (the forward phase removes what it names from the map).
        let (_, ctx, head) = accept_only(&["192.0.2.0/24"], "/", &plain);
        assert!(ctx.late.is_none());
        assert_eq!(head.headers["x-forwarded-proto"], "https");
        let named = [("host", "web.example"), ("connection", "X-Request-Id")];
        let (_, ctx, head) = accept_only(&[], "/", &named);
        assert!(ctx.late.is_none());
        for name in names {
            assert!(head.headers.contains_key(name), "{name}: {:?}", head.headers);
        }

        // A client's plausible id is its own, in the map; only a made-up one is late.
        let (_, ctx, head) = accept_only(&[], "/", &[("host", "w"), ("x-request-id", "abc")]);
        assert_eq!(head.headers["x-request-id"], "abc");
        let fields = extra_fields(&ctx);
        assert!(fields.as_slice().iter().all(|(name, _)| *name != "x-request-id"));
    }

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
    fn a_tls_entrypoint_says_https() {
        let tls_run = |headers: &[(&str, &str)]| {
            let (result, mut ctx, mut head) = accept_on(true, &[], "/", headers);
            result.expect("accepted");
            fill_headers(&mut ctx, &mut head.headers);
            head.headers
        };
        let h = tls_run(&[("host", "a.example"), ("x-forwarded-proto", "http")]);
        assert_eq!(h["x-forwarded-proto"], "https", "a forged value is replaced");
        assert_eq!(h["x-forwarded-port"], "443");
        let h = tls_run(&[("host", "a.example:8443")]);
        assert_eq!(h["x-forwarded-port"], "8443");
        let h = tls_run(&[
            ("host", "a.example"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(h["x-forwarded-proto"], "wss");
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
    fn one_host_per_request() {
        let (result, _, _) = run("/", &[("host", "a.example"), ("host", "b.example")]);
        assert!(matches!(result, Err(ProxyError::BadHost(_))), "{result:?}");
        let (result, _, _) = run("/", &[("host", "a.example"), ("host", "a.example")]);
        assert!(
            matches!(result, Err(ProxyError::BadHost(_))),
            "even the same one twice"
        );

        // Absolute form: the target's authority wins, and is what the backend gets.
        let (result, ctx, head) = run("http://b.example/x", &[("host", "a.example")]);
        result.expect("accepted");
        assert_eq!(ctx.host, "b.example");
        assert_eq!(head.headers["host"], "b.example");
        let (result, ctx, _) = run("http://b.example:81/x", &[]);
        result.expect("accepted without Host");
        assert_eq!(ctx.host, "b.example:81");
        let (result, _, _) = run("http://user@b.example/x", &[("host", "b.example")]);
        assert!(matches!(result, Err(ProxyError::BadHost(_))), "{result:?}");
    }

    fn run_h2(uri: &str, host: Option<&str>) -> (Result<(), ProxyError>, RequestContext, Parts) {
        let mut builder = http::Request::get(uri).version(Version::HTTP_2);
        if let Some(host) = host {
            builder = builder.header("host", host);
        }
        let mut head = builder.body(()).unwrap().into_parts().0;
        let mut ctx = RequestContext::for_test("GET", "/x", "", "10.0.0.1:1");
        let settings = EntrySettings {
            server: HeaderValue::from_static("s"),
            trusted_ips: IpRanges::parse(&[]).unwrap(),
        };
        let result = accept(&mut ctx, &mut head, &settings);
        (result, ctx, head)
    }

    #[test]
    fn http2_host_must_agree_with_authority() {
        let (result, _, _) = run_h2("http://a.example/x", Some("b.example"));
        assert!(matches!(result, Err(ProxyError::BadHost(_))), "{result:?}");
        let (result, _, _) = run_h2("http://a.example/x", Some("a.example:8080"));
        assert!(matches!(result, Err(ProxyError::BadHost(_))), "another port");
        let (result, ctx, head) = run_h2("http://A.example/x", Some("a.EXAMPLE"));
        result.expect("the same host, case aside");
        assert_eq!(ctx.host, "A.example");
        assert_eq!(head.headers["host"], "A.example");
        let (result, ctx, _) = run_h2("/x", Some("only.example"));
        result.expect("no :authority, Host is used");
        assert_eq!(ctx.host, "only.example");
    }

    #[test]
    fn request_ids() {
        let (result, ctx, head) = run("/", &[("host", "a")]);
        result.expect("accepted");
        let id = ctx.request_id.to_str().unwrap().to_owned();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert_eq!(head.headers["x-request-id"], id.as_str());
        let (_, other, _) = run("/", &[("host", "a")]);
        assert_ne!(other.request_id, ctx.request_id, "unique");

        let (_, ctx, head) = run(
            "/",
            &[
                ("host", "a"),
                ("connection", "x-request-id"),
                ("x-request-id", "x"),
            ],
        );
        assert_eq!(ctx.request_id.len(), 32, "named in Connection: a new one");
        assert_eq!(head.headers["x-request-id"], ctx.request_id);

        let (_, ctx, head) = run("/", &[("host", "a"), ("x-request-id", "client-id-1")]);
        assert_eq!(ctx.request_id, "client-id-1", "the client's is kept");
        assert_eq!(head.headers["x-request-id"], "client-id-1");
        for bad in ["has space", "quote\"", &"x".repeat(129)] {
            let (_, ctx, head) = run("/", &[("host", "a"), ("x-request-id", bad)]);
            assert_ne!(ctx.request_id, bad);
            assert_eq!(ctx.request_id.len(), 32);
            assert_eq!(head.headers["x-request-id"], ctx.request_id);
        }
        let two = [("host", "a"), ("x-request-id", "a"), ("x-request-id", "b")];
        let (_, ctx, head) = run("/", &two);
        assert_eq!(ctx.request_id.len(), 32, "two ids: a new one");
        assert_eq!(head.headers.get_all("x-request-id").iter().count(), 1);

        // Set late, a made-up id replaces the client's just the same.
        for sent in [&[("host", "a"), ("x-request-id", "has space")][..], &two] {
            let (_, ctx, head) = accept_only(&[], "/", sent);
            assert!(!head.headers.contains_key("x-request-id"), "{sent:?}");
            let fields = extra_fields(&ctx);
            let ids: Vec<_> = fields
                .as_slice()
                .iter()
                .filter(|(n, _)| *n == "x-request-id")
                .collect();
            assert_eq!(ids, [&("x-request-id", ctx.request_id.as_bytes())], "{sent:?}");
        }
    }

    #[test]
    fn request_ids_cut_from_shared_blocks_stay_distinct() {
        let ids: Vec<HeaderValue> = (0..3 * IDS_PER_BLOCK + 5).map(|_| new_request_id()).collect();
        let texts: std::collections::BTreeSet<String> =
            ids.iter().map(|id| id.to_str().unwrap().to_owned()).collect();
        assert_eq!(texts.len(), ids.len(), "every id is new, across blocks");
        for id in &texts {
            assert_eq!(id.len(), 32);
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
        // A clone (the log's copy) is the same id, and later ids do not write over earlier ones.
        let kept = ids[0].clone();
        let _more: Vec<HeaderValue> = (0..IDS_PER_BLOCK).map(|_| new_request_id()).collect();
        assert_eq!(kept, ids[0]);
        assert!(texts.contains(kept.to_str().unwrap()));
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
        fill_headers(&mut ctx, &mut head.headers);
        assert_eq!(ctx.host, "GO.example:8443");
        assert_eq!(head.headers["x-forwarded-port"], "8443");
    }
}
