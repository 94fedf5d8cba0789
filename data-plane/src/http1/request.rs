//! A request head from a client connection, taken by Berth's HTTP/1.1 loop only when it is the
//! common kind (see the parent module); anything else is left for hyper.
//!
//! For: parsing with httparse in the connection's read buffer and building the `http` request
//! head as hyper's server builds it (the same method, URI and header map, names lower-case, values
//! sharing the read buffer), and what the loop needs besides: whether the client asked to close,
//! and whether it accepts trailers.
//! Not for: answering malformed or oversized heads: those are hyper's, which answers them.

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TE, TRANSFER_ENCODING, UPGRADE};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Request, Uri, Version};

use super::wire::{self, has_token, Field};

/// The most header fields this parser takes; a request with more goes to hyper, which applies
/// `--max-headers`.
pub(super) const MAX_FIELDS: usize = 128;
/// How many fields the proxy adds to a request on its way (see `build`).
const ADDED_FIELDS: usize = 8;
/// hyper's longest request target.
const MAX_TARGET: usize = u16::MAX as usize - 1;

/// A request head taken.
#[derive(Debug)]
pub(super) struct Head {
    pub parts: Parts,
    /// The client asked to close the connection after this request (`Connection: close`).
    pub close: bool,
    /// The client accepts trailers (`TE: trailers`).
    pub trailers: bool,
}

#[derive(Debug)]
// Returned by value once per request and taken apart at once: boxing the head would cost an
// allocation per request.
#[allow(clippy::large_enum_variant)]
pub(super) enum Parsed {
    Taken(Head),
    /// The head is not complete yet.
    Partial,
    /// Not the common kind, or not valid: hyper's.
    Other,
}

/// Takes the request head at the front of `buf` if it is complete, within `max_bytes` and
/// `max_fields`, and of the common kind; otherwise leaves `buf` as it was.
pub(super) fn parse(buf: &mut BytesMut, max_bytes: usize, max_fields: usize) -> Parsed {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut fields: [Field; MAX_FIELDS] = [[0; 4]; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut []);
    let base = buf.as_ptr() as usize;
    let headers = &mut headers[..max_fields.min(MAX_FIELDS)];
    let (len, method, target, count) = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut request, buf, headers)
    {
        Ok(httparse::Status::Complete(len)) => {
            if request.version != Some(1) {
                return Parsed::Other;
            }
            wire::record(base, request.headers, &mut fields);
            let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
            let (Some(method), Some(target)) = (request.method, request.path) else {
                return Parsed::Other;
            };
            let Ok(method) = Method::from_bytes(method.as_bytes()) else {
                return Parsed::Other;
            };
            let start = offset(target.as_bytes()) as usize;
            (len, method, start..start + target.len(), request.headers.len())
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    if len > max_bytes || target.len() > MAX_TARGET || method == Method::CONNECT {
        return Parsed::Other;
    }
    // Checked before anything is taken from `buf`.
    let head = &buf[..len];
    let mut close = false;
    let mut trailers = false;
    let mut content_length = false;
    for &[n0, n1, v0, v1] in &fields[..count] {
        let name = &head[n0 as usize..n1 as usize];
        let value = &head[v0 as usize..v1 as usize];
        if name.eq_ignore_ascii_case(CONTENT_LENGTH.as_str().as_bytes()) {
            // A body, or several lengths: hyper's.
            if content_length || value != b"0" {
                return Parsed::Other;
            }
            content_length = true;
        } else if [TRANSFER_ENCODING, EXPECT, UPGRADE]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_str().as_bytes()))
        {
            return Parsed::Other;
        } else if name.eq_ignore_ascii_case(CONNECTION.as_str().as_bytes()) {
            close = close || has_token(value, b"close");
        } else if name.eq_ignore_ascii_case(TE.as_str().as_bytes()) {
            trailers = trailers || has_token(value, b"trailers");
        }
    }
    let head = buf.split_to(len).freeze();
    match build(&head, method, target, &fields[..count]) {
        Some(parts) => Parsed::Taken(Head {
            parts,
            close,
            trailers,
        }),
        None => {
            // A target `http` refuses (hyper answers 400): the bytes go back for hyper.
            let mut back = BytesMut::from(&head[..]);
            back.unsplit(std::mem::take(buf));
            *buf = back;
            Parsed::Other
        }
    }
}

/// The request head from its bytes; `None` if the target or a field is refused.
fn build(head: &Bytes, method: Method, target: Range<usize>, fields: &[Field]) -> Option<Parts> {
    let mut parts = Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = Uri::from_maybe_shared(head.slice(target)).ok()?;
    parts.version = Version::HTTP_11;
    // Room for the fields the accept phase adds (`X-Forwarded-*`, `X-Real-Ip`, `X-Request-Id`):
    // growing the map later rehashes every field. Given back once sent (`proxy::forward`, or
    // `proxy::upstream` for a request that may be retried).
    parts.headers = crate::header_maps::take(fields.len() + ADDED_FIELDS);
    for &[n0, n1, v0, v1] in fields {
        let name = HeaderName::from_bytes(&head[n0 as usize..n1 as usize]).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice(v0 as usize..v1 as usize)).ok()?;
        parts.headers.append(name, value);
    }
    Some(parts)
}
