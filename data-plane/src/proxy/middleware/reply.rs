//! The responses middlewares answer with, shaped byte for byte as Traefik's.
//!
//! For: the two ways Traefik writes a response of its own — `http.Error` (a text body with a
//! newline, `Content-Type: text/plain; charset=utf-8`, `X-Content-Type-Options: nosniff`) and a
//! bare status with its reason phrase as body and no `Content-Type` at all (Traefik turns Go's
//! content sniffing off) — and Go's reason phrases, which differ from the `http` crate's for a
//! few codes.
//! Not for: the proxy's own errors (no route, backend down: see `proxy::error`), which say more.

use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Response, StatusCode};

use crate::proxy::Body;

const X_CONTENT_TYPE_OPTIONS: HeaderName = HeaderName::from_static("x-content-type-options");

/// Go's `http.Error(w, message, status)`.
pub(crate) fn http_error(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Body::text(format!("{message}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// `status` with `body` and no `Content-Type`.
pub(crate) fn bare(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::text(body));
    *response.status_mut() = status;
    response
}

/// `status` with its reason phrase as the body (Traefik's redirects, allow list, rate limit).
pub(crate) fn status_text(status: StatusCode) -> Response<Body> {
    bare(status, reason(status))
}

/// Go's `http.StatusText`: the reason phrase Traefik writes, "" for a code Go does not name.
pub(crate) fn reason(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::middleware::testing::body_text;

    #[tokio::test]
    async fn shapes() {
        let r = http_error(StatusCode::BAD_REQUEST, "Bad Request");
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(body_text(r).await, "Bad Request\n");

        let r = status_text(StatusCode::PERMANENT_REDIRECT);
        assert!(r.headers().get("content-type").is_none());
        assert_eq!(body_text(r).await, "Permanent Redirect");
        assert_eq!(reason(StatusCode::PAYLOAD_TOO_LARGE), "Request Entity Too Large");
        assert_eq!(reason(StatusCode::from_u16(599).unwrap()), "");
    }
}
