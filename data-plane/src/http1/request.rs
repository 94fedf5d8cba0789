//! A request head from a client connection, taken by Berth's HTTP/1.1 loop only when it is the
//! common kind (see the parent module); anything else is left for hyper.
//!
//! For: parsing with httparse in the connection's read buffer and building the `http` request
//! head as hyper's server builds it (the same method, URI and header map, names lower-case, values
//! sharing the read buffer), and what the loop needs besides: whether the client asked to close,
//! and whether it accepts trailers. A request whose fields are all ones the request path passes
//! on untouched keeps them as they came ([`RawFields`]) beside a map holding only its `Host`:
//! filling a header map with every field, only for Berth's own backend client to write them out
//! again, cost more than any other step of such a request with a browser's dozen fields.
//! Not for: answering malformed or oversized heads: those are hyper's, which answers them.

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TE, TRANSFER_ENCODING, UPGRADE};
use http::request::Parts;
use http::{Method, Request, Uri, Version};

use super::wire::{self, has_token, Field, RawFields};

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
    /// The fields but `Host`, kept as they came when no step of the request path reads or changes
    /// them (`parts.headers` then holds `Host` alone).
    pub raw: Option<RawFields>,
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
    // The fields can be kept as they came (see `RawFields`) while none is one the request path
    // reads or changes, and there is one `Host`, at `host`.
    let mut raw = true;
    let mut host = None;
    for (i, &[n0, n1, v0, v1]) in fields[..count].iter().enumerate() {
        let name = &head[n0 as usize..n1 as usize];
        let value = &head[v0 as usize..v1 as usize];
        if name.eq_ignore_ascii_case(HOST.as_str().as_bytes()) {
            raw &= host.is_none();
            host = Some(i);
        } else if name.eq_ignore_ascii_case(CONTENT_LENGTH.as_str().as_bytes()) {
            // A body, or several lengths: hyper's.
            if content_length || value != b"0" {
                return Parsed::Other;
            }
            content_length = true;
            raw = false;
        } else if [TRANSFER_ENCODING, EXPECT, UPGRADE]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_str().as_bytes()))
        {
            return Parsed::Other;
        } else if name.eq_ignore_ascii_case(CONNECTION.as_str().as_bytes()) {
            close = close || has_token(value, b"close");
            raw &= wire::tokens(value)
                .all(|t| t.eq_ignore_ascii_case(b"close") || t.eq_ignore_ascii_case(b"keep-alive"));
        } else if name.eq_ignore_ascii_case(TE.as_str().as_bytes()) {
            trailers = trailers || has_token(value, b"trailers");
            raw = false;
        } else if wire::is_hop_by_hop_name(name)
            || is_entry_managed(name)
            // A field a `Connection: close` names, which the accept phase removes.
            || name.eq_ignore_ascii_case(b"close")
        {
            raw = false;
        }
    }
    let host = host.filter(|_| raw);
    let head = buf.split_to(len).freeze();
    let built = match host {
        Some(host) => build_raw(&head, method, target, &fields[..count], host),
        None => build(&head, method, target, &fields[..count]).map(|parts| (parts, None)),
    };
    match built {
        Some((parts, raw)) => Parsed::Taken(Head {
            parts,
            close,
            trailers,
            raw,
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

/// Whether a field name (case ignored, `_` as `-`) is one the accept phase manages or reads: a
/// forwarded header (`X-Forwarded-*`, `X-Real-Ip`, `X-Scheme`) or `X-Request-Id`. A superset of
/// `proxy::accept`'s list is fine: such a request is only built the usual way.
fn is_entry_managed(name: &[u8]) -> bool {
    const PREFIXES: [&[u8]; 4] = [b"x-forwarded", b"x-real-ip", b"x-scheme", b"x-request-id"];
    if !matches!(name.first(), Some(b'x' | b'X')) {
        return false;
    }
    PREFIXES.iter().any(|prefix| {
        name.len() >= prefix.len()
            && name
                .iter()
                .zip(prefix.iter())
                .all(|(&a, &b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
    })
}

/// The request line's parts: the method, URI and version, and an empty header map with `room`
/// for fields; `None` if the target is refused.
fn request_line(head: &Bytes, method: Method, target: Range<usize>, room: usize) -> Option<Parts> {
    let mut parts = Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = Uri::from_maybe_shared(head.slice(target)).ok()?;
    parts.version = Version::HTTP_11;
    // Room for the fields the accept phase adds (`X-Forwarded-*`, `X-Real-Ip`, `X-Request-Id`):
    // growing the map later rehashes every field. Given back once sent (`proxy::forward`, or
    // `proxy::upstream` for a request that may be retried).
    parts.headers = crate::header_maps::take(room + ADDED_FIELDS);
    Some(parts)
}

/// The request head from its bytes; `None` if the target or a field is refused.
fn build(head: &Bytes, method: Method, target: Range<usize>, fields: &[Field]) -> Option<Parts> {
    let mut parts = request_line(head, method, target, fields.len())?;
    for &f in fields {
        let (name, value) = wire::to_header(head, f)?;
        parts.headers.append(name, value);
    }
    Some(parts)
}

/// The request head with `Host` (the field at `host`) alone in its map, the other fields kept as
/// they came; `None` if the target or `Host` is refused. The kept fields are not checked again:
/// httparse takes exactly the names and values `http` does (a test holds the two to it).
fn build_raw(
    head: &Bytes,
    method: Method,
    target: Range<usize>,
    fields: &[Field],
    host: usize,
) -> Option<(Parts, Option<RawFields>)> {
    let mut parts = request_line(head, method, target, 1)?;
    let mut kept = Vec::with_capacity(fields.len() - 1);
    for (i, &f) in fields.iter().enumerate() {
        if i == host {
            let (name, value) = wire::to_header(head, f)?;
            parts.headers.append(name, value);
        } else {
            kept.push(f);
        }
    }
    let raw = RawFields {
        bytes: head.clone(),
        fields: kept,
    };
    Some((parts, Some(raw)))
}

/// [`parse`] of a whole head, for tests elsewhere: the head's parts and its raw fields.
#[cfg(test)]
pub(crate) fn parse_for_test(bytes: &[u8]) -> (Parts, Option<RawFields>) {
    let mut buf = BytesMut::from(bytes);
    match parse(&mut buf, 64 * 1024, MAX_FIELDS) {
        Parsed::Taken(head) => (head.parts, head.raw),
        other => panic!("not taken: {other:?}"),
    }
}
