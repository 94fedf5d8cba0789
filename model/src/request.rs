//! What a matcher sees of a request ([`RequestView`]), and the two decodings Traefik applies
//! before it routes: the routing path ([`routing_path`]) and the query parameters.
//!
//! Not for: reading a request off the wire; the proxy fills a [`RequestView`] from its own types.

use std::borrow::Cow;
use std::net::IpAddr;

/// The parts of a request that matchers look at, borrowed from the proxy's request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The host, as [`crate::request_host`] gives it: lower case, without port, brackets or a
    /// trailing dot. Empty when the request named none.
    pub host: &'a str,
    /// The routing path, as [`routing_path`] gives it from the request's raw path (not the raw
    /// path itself).
    pub path: &'a [u8],
    /// The request method, as sent.
    pub method: &'a http::Method,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
    /// The raw query string (after `?`, percent-encoded), if the request has one.
    pub query: Option<&'a str>,
    /// The address of the connection's peer. As in Traefik v3, `ClientIP` looks at this, never
    /// at `X-Forwarded-For`.
    pub client_ip: IpAddr,
}

/// A request path with a broken percent-encoding. Traefik (Go's server, really) answers such a
/// request with 400 Bad Request before routing; so should the proxy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request path {path:?}: invalid percent-encoding at byte {at}")]
pub struct PathError {
    /// The raw path.
    pub path: String,
    /// Where the bad '%' is.
    pub at: usize,
}

/// Percent-encodings that stay encoded in the routing path: RFC 3986's reserved characters and
/// '%' itself, whose decoding would change the path's meaning. Upper-case hex, as Traefik's
/// entrypoint writes every escape before routing.
const KEPT_ENCODED: [&[u8; 3]; 19] = [
    b"%3A", b"%2F", b"%3F", b"%23", b"%5B", b"%5D", b"%40", b"%21", b"%24", b"%26", b"%27", b"%28", b"%29",
    b"%2A", b"%2B", b"%2C", b"%3B", b"%3D", b"%25",
];

/// The path Traefik v3 matches `Path`, `PathPrefix` and `PathRegexp` against, from a request's
/// path (as sent, without the query).
///
/// Traefik's entrypoint first normalizes the path (`normalizePath`: escapes of unreserved
/// characters decoded, every other escape upper-cased); its router then takes Go's
/// `URL.EscapedPath()` and decodes every escape except those of reserved characters
/// (`%3A %2F %3F %23 %5B %5D %40 %21 %24 %26 %27 %28 %29 %2A %2B %2C %3B %3D %25`). Together:
/// every escape is decoded but those, which stay, in upper case. So `/foo%20bar` routes as
/// `/foo bar`, while `/a%2Fb` and `/a%2fb` both route as `/a%2Fb` and do not match
/// ``PathPrefix(`/a/`)``.
///
/// `EscapedPath()` is the path as sent when that is a valid encoding. When the path holds a byte
/// Go would have encoded (a space, `"`, `{`, a non-ASCII byte...), Go encodes the decoded path
/// afresh instead; then every escape was decoded first, and only `? # [ ] ! ' ( ) * %` come back
/// encoded. This does the same.
///
/// Traefik's entrypoint also removes `.`/`..` segments and repeated slashes (`sanitizePath`, on by
/// default) before routing; that changes what is forwarded too, so it is the proxy's to do first
/// and pass the result here. Given a path that is already normalized, the result is the same.
///
/// The result may hold bytes that are not UTF-8 (`%FF`), as Go's string does. Borrows when the
/// path has no `%` and needs no re-encoding.
pub fn routing_path(raw: &str) -> Result<Cow<'_, [u8]>, PathError> {
    let bytes = raw.as_bytes();
    check_escapes(raw)?;
    if bytes.iter().all(|&b| valid_in_escaped_path(b)) {
        if !bytes.contains(&b'%') {
            return Ok(Cow::Borrowed(bytes));
        }
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes.get(i..i + 3) {
                Some(triple) if triple[0] == b'%' => {
                    let upper = triple.to_ascii_uppercase();
                    if KEPT_ENCODED
                        .iter()
                        .any(|kept| kept.as_slice() == upper.as_slice())
                    {
                        out.extend_from_slice(&upper);
                    } else {
                        out.push(hex_pair(triple[1], triple[2]));
                    }
                    i += 3;
                }
                _ => {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
        }
        return Ok(Cow::Owned(out));
    }
    // Go re-encodes the decoded path; decoding that again leaves these few encoded.
    let mut out = Vec::with_capacity(bytes.len() + 8);
    for b in percent_decode(bytes, false) {
        if matches!(
            b,
            b'?' | b'#' | b'[' | b']' | b'!' | b'\'' | b'(' | b')' | b'*' | b'%'
        ) {
            out.extend_from_slice(&[
                b'%',
                HEX_UPPER[usize::from(b >> 4)],
                HEX_UPPER[usize::from(b & 15)],
            ]);
        } else {
            out.push(b);
        }
    }
    Ok(Cow::Owned(out))
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Every '%' is followed by two hex digits (Go refuses the request otherwise).
fn check_escapes(raw: &str) -> Result<(), PathError> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = matches!(bytes.get(i + 1..i + 3), Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit());
            if !ok {
                return Err(PathError {
                    path: raw.to_string(),
                    at: i,
                });
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Go's `validEncoded(s, encodePath)`, one byte at a time: the bytes a raw path may hold for Go
/// to use it as it is.
fn valid_in_escaped_path(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:@[]%/".contains(&b)
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

fn hex_pair(hi: u8, lo: u8) -> u8 {
    (hex_value(hi) << 4) | hex_value(lo)
}

/// Decodes `%XX` (and, for a query component, '+' as a space) in bytes whose escapes were
/// checked.
fn percent_decode(bytes: &[u8], plus_is_space: bool) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *bytes.get(i)?;
        if b == b'%' {
            if let Some([hi, lo]) = bytes.get(i + 1..i + 3).and_then(|s| <[u8; 2]>::try_from(s).ok()) {
                i += 3;
                return Some(hex_pair(hi, lo));
            }
        }
        i += 1;
        Some(if plus_is_space && b == b'+' { b' ' } else { b })
    })
}

/// Go's `url.QueryUnescape`: `None` when an escape is broken.
fn query_unescape(raw: &str) -> Option<Cow<'_, [u8]>> {
    if !raw.contains(['%', '+']) {
        return Some(Cow::Borrowed(raw.as_bytes()));
    }
    check_escapes(raw).ok()?;
    Some(Cow::Owned(percent_decode(raw.as_bytes(), true).collect()))
}

/// The query parameters as Traefik's router reads them, in order. Traefik's entrypoint (with its
/// default `encodeQuerySemicolons=false`) first turns every ';' into '&' (Go's
/// `AllowQuerySemicolons`); then Go's `URL.Query()` splits pairs on '&', skips empty ones, ends
/// the key at the first '=', and percent-decodes key and value with '+' as a space, dropping a
/// pair with a broken escape.
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, [u8]>, Cow<'_, [u8]>)> {
    query
        .split(['&', ';'])
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((query_unescape(key)?, query_unescape(value)?))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(raw: &str) -> Vec<u8> {
        routing_path(raw).unwrap().into_owned()
    }

    #[test]
    fn plain_paths_are_borrowed() {
        assert!(matches!(
            routing_path("/api/v1").unwrap(),
            Cow::Borrowed(b"/api/v1")
        ));
    }

    #[test]
    fn unreserved_escapes_are_decoded_reserved_kept() {
        assert_eq!(rp("/foo%20bar"), b"/foo bar");
        assert_eq!(rp("/%7Bpath:css%7D"), b"/{path:css}");
        assert_eq!(rp("/a%2Fb"), b"/a%2Fb");
        assert_eq!(rp("/a%25b"), b"/a%25b");
        assert_eq!(rp("/a%3fb%3F"), b"/a%3Fb%3F");
        assert_eq!(rp("/a%2fb"), b"/a%2Fb");
        assert_eq!(rp("/%41%7e%e2%82%ac"), "/A~€".as_bytes());
        assert_eq!(rp("/caf%C3%A9"), "/café".as_bytes());
        assert_eq!(rp("/%FF"), b"/\xFF");
    }

    #[test]
    fn paths_go_would_re_encode() {
        // '{' makes the raw path invalid for Go: the decoded path is encoded afresh.
        assert_eq!(rp("/a%2Fb{c"), b"/a/b{c");
        assert_eq!(rp("/x y%25%21"), b"/x y%25%21");
        assert_eq!(rp("/é"), "/é".as_bytes());
    }

    #[test]
    fn broken_escapes_are_errors() {
        assert_eq!(
            routing_path("/a%zz").unwrap_err(),
            PathError {
                path: "/a%zz".into(),
                at: 2
            }
        );
        assert!(routing_path("/a%2").is_err());
        assert!(routing_path("/a%").is_err());
    }

    fn pairs(q: &str) -> Vec<(String, String)> {
        query_pairs(q)
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn query_as_go_reads_it() {
        let p = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            pairs("q=traefik&rel=ddg"),
            vec![p("q", "traefik"), p("rel", "ddg")]
        );
        assert_eq!(pairs("mobile"), vec![p("mobile", "")]);
        assert_eq!(pairs("a=b=c"), vec![p("a", "b=c")]);
        assert_eq!(pairs("&&a=1&"), vec![p("a", "1")]);
        assert_eq!(pairs("a+b=c%20d+e"), vec![p("a b", "c d e")]);
        assert_eq!(pairs("a=1;b=2&c=3"), vec![p("a", "1"), p("b", "2"), p("c", "3")]);
        assert_eq!(pairs("a=%zz&b=%4"), Vec::<(String, String)>::new());
        assert_eq!(pairs("=x"), vec![p("", "x")]);
    }
}
