//! Step 3, rewrite headers: turn the client's request into the backend's, and back.
//!
//! For: removing hop-by-hop headers both ways, adding `X-Forwarded-For/-Proto/-Host`, keeping the
//! `Host` the client sent (filling it from `:authority` for HTTP/2 clients), and pointing the URI at
//! the chosen endpoint over HTTP/1.1.
//! Not for: sending anything (see `forward`). Bodies are never touched here.

use std::fmt::Write;
use std::net::IpAddr;

use http::header::{CONNECTION, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Uri, Version};

use super::ProxyError;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The client's request, made ready for `backend`. `host` is the host the client asked for.
pub(crate) fn rewrite_request<B>(
    req: Request<B>,
    host: HeaderValue,
    client: IpAddr,
    backend: &Authority,
) -> Result<Request<B>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    append_forwarded_for(&mut parts.headers, client);
    parts
        .headers
        .insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    parts.headers.insert(X_FORWARDED_HOST, host.clone());
    if !parts.headers.contains_key(HOST) {
        parts.headers.insert(HOST, host);
    }
    parts.uri = backend_uri(&parts.uri, backend)?;
    parts.version = Version::HTTP_11;
    Ok(Request::from_parts(parts, body))
}

/// The backend's response, made ready for the client.
pub(crate) fn rewrite_response<B>(mut response: Response<B>) -> Response<B> {
    strip_hop_by_hop(response.headers_mut());
    response
}

/// Removes the headers that describe one connection rather than the message: those named by
/// `Connection`, and the standard hop-by-hop set.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(CONNECTION) {
        // Allocates only when Connection names headers beyond the usual close/keep-alive.
        let mut named: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(CONNECTION) {
            let Ok(value) = value.to_str() else { continue };
            for token in value.split(',').map(str::trim) {
                if token.is_empty()
                    || token.eq_ignore_ascii_case("close")
                    || token.eq_ignore_ascii_case("keep-alive")
                {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    named.push(name);
                }
            }
        }
        for name in named {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    for name in [
        KEEP_ALIVE,
        PROXY_CONNECTION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// Appends the client's address to `X-Forwarded-For` (joining several existing lines into one).
fn append_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let client = client.to_canonical();
    let mut value = String::new();
    for existing in headers.get_all(&X_FORWARDED_FOR) {
        if let Ok(text) = existing.to_str().map(str::trim) {
            if !text.is_empty() {
                value.push_str(text);
                value.push_str(", ");
            }
        }
    }
    let _ = write!(value, "{client}");
    let value = HeaderValue::try_from(value).unwrap_or_else(|_| {
        // Unreachable in practice: existing values were valid header text and an IP is ASCII.
        HeaderValue::from_static("unknown")
    });
    headers.insert(X_FORWARDED_FOR, value);
}

/// `http://<backend><path?query>`, reusing the buffers of the original URI (no allocation).
fn backend_uri(original: &Uri, backend: &Authority) -> Result<Uri, ProxyError> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(backend.clone());
    parts.path_and_query = Some(
        original
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    Uri::from_parts(parts).map_err(|e| ProxyError::BadRequest(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> Authority {
        Authority::from_static("10.0.0.7:8080")
    }

    #[test]
    fn request_rewrite() {
        let req = Request::get("/a/b?c=d")
            .header(HOST, "Go.Example:8080")
            .header("x-forwarded-for", "1.1.1.1")
            .header("x-forwarded-for", "2.2.2.2, 3.3.3.3")
            .header("x-forwarded-proto", "https")
            .header(CONNECTION, "keep-alive, X-Secret, Upgrade")
            .header("x-secret", "s")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header(TE, "trailers")
            .header(TRAILER, "x-t")
            .header(UPGRADE, "websocket")
            .header("x-kept", "yes")
            .body(())
            .unwrap();
        let host = req.headers()[HOST].clone();
        let out = rewrite_request(req, host, "192.0.2.9".parse().unwrap(), &backend()).expect("rewrites");
        assert_eq!(out.uri(), "http://10.0.0.7:8080/a/b?c=d");
        assert_eq!(out.version(), Version::HTTP_11);
        let h = out.headers();
        assert_eq!(h[HOST], "Go.Example:8080");
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 3.3.3.3, 192.0.2.9");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "Go.Example:8080");
        assert_eq!(h["x-kept"], "yes");
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "upgrade",
        ] {
            assert!(!h.contains_key(gone), "{gone} must be stripped");
        }
    }

    #[test]
    fn http2_request_gets_a_host_header() {
        let req = Request::get("http://go.example/x")
            .version(Version::HTTP_2)
            .body(())
            .unwrap();
        let out = rewrite_request(
            req,
            HeaderValue::from_static("go.example"),
            "::ffff:10.1.2.3".parse().unwrap(),
            &backend(),
        )
        .expect("rewrites");
        assert_eq!(out.headers()[HOST], "go.example");
        assert_eq!(
            out.headers()["x-forwarded-for"],
            "10.1.2.3",
            "IPv4-mapped addresses are shown as IPv4"
        );
        assert_eq!(out.uri(), "http://10.0.0.7:8080/x");
        assert_eq!(out.version(), Version::HTTP_11);
    }

    #[test]
    fn response_rewrite() {
        let resp = Response::builder()
            .header(CONNECTION, "close, x-hop")
            .header("x-hop", "1")
            .header(TRANSFER_ENCODING, "chunked")
            .header("content-type", "text/plain")
            .body(())
            .unwrap();
        let out = rewrite_response(resp);
        assert_eq!(out.headers().len(), 1);
        assert_eq!(out.headers()["content-type"], "text/plain");
    }
}
