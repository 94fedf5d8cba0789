//! A backend's response, read as hyper's client reads it.
//!
//! For: the response head (at most [`MAX_HEADERS`] fields and [`MAX_HEAD`] bytes; interim 1xx
//! responses skipped, as hyper does unless asked for them; a reason phrase other than the
//! status's usual one kept in hyper's `ReasonPhrase` extension, so the client gets it too) and
//! the body's framing by RFC 9112 §6.3 as hyper applies it: none for `HEAD`, 101, 204 and 304;
//! `Transfer-Encoding` ending in `chunked` is chunked (its trailers passed on as a trailers
//! frame), any other `Transfer-Encoding` runs until the connection closes (an error over
//! HTTP/1.0); else `Content-Length` (repeated values must agree, anything but digits is an
//! error); else until the connection closes. Keep-alive as hyper decides it: HTTP/1.1 unless a
//! `Connection` field says `close`, HTTP/1.0 only if one says `keep-alive`; never after a
//! close-delimited body or a 101.
//!
//! When the caller will write the response as it came (Berth's own server loop, with nothing on
//! the way that changes the response but a route's `headers` middleware setting or removing
//! fields the writer does not decide itself: see `middleware::Chain::keeps_heads`), the common
//! head — HTTP/1.1, one `Content-Length`, no
//! hop-by-hop field but a plain `Connection` — is kept as its bytes and the places of its fields
//! ([`KeptHead`]) instead of a header map: building the map, and the clean-up that takes
//! `Connection` out of it again, were a tenth of the request path's work (bench/RESULTS.md).
//! Not for: sending the request or pooling (see the parent module).

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use hyper::body::{Frame, SizeHint};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::pool;
use super::Conn;
use crate::http1::wire::is_hop_by_hop_name;
use crate::http1::wire::{self, has_token, Field, KeptHead};

/// The most header fields a response head (or its trailers) may have, as hyper's default.
pub(super) const MAX_HEADERS: usize = 100;
/// The largest response head, as hyper's default read buffer limit (8 KiB + 100 × 4 KiB).
pub(super) const MAX_HEAD: usize = 8192 + 4096 * 100;
/// The longest chunk-size line (with its extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// The largest trailer section.
const MAX_TRAILERS: usize = 16 * 1024;
/// The longest field name a header map takes.
const MAX_NAME: usize = u16::MAX as usize;
/// How much room a read asks for.
const READ_SIZE: usize = 16 * 1024;

/// Why a response could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("connection closed before the response headers")]
    ClosedBeforeHead,
    #[error("connection closed before the response body ended")]
    ClosedInBody,
    #[error("the response head is longer than {MAX_HEAD} bytes")]
    HeadTooLong,
    #[error("invalid response head: {0}")]
    Head(httparse::Error),
    #[error("invalid response: {0}")]
    Invalid(&'static str),
    #[error("invalid chunked response body: {0}")]
    Chunked(&'static str),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// How the body after a head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decoding {
    /// Nothing (left) to read.
    Done,
    /// This many bytes.
    Length(u64),
    Chunked(Chunk),
    /// Until the backend closes the connection.
    Eof,
}

/// Where a chunked body's reading is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    /// At a chunk-size line.
    Size,
    /// In a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data, at its CRLF.
    DataEnd,
    /// After the last chunk, at the trailers (or the blank line ending the body).
    Trailers,
}

/// A response head, read.
#[derive(Debug)]
pub(super) struct Head {
    /// Without header fields when they are `kept`.
    pub response: Response<()>,
    pub decoding: Decoding,
    pub keep_alive: bool,
    /// The common response's head as it came (see [`keep`]), when the caller asked for it; its
    /// fields are then not in `response`.
    pub kept: Option<Box<KeptHead>>,
}

/// Reads the head of the response to a `method` request from `stream` (into `read`); `keep`: the
/// common head may be kept as it came (see [`keep`]).
pub(super) async fn read_head(
    stream: &mut TcpStream,
    read: &mut BytesMut,
    method: &Method,
    keep: bool,
) -> Result<Head, Error> {
    loop {
        if !read.is_empty() {
            match parse_head(read, method, keep)? {
                Parsed::Final(head) => return Ok(head),
                Parsed::Interim => continue,
                Parsed::Partial => {}
            }
        }
        if read.len() >= MAX_HEAD {
            return Err(Error::HeadTooLong);
        }
        read.reserve(READ_SIZE);
        if stream.read_buf(read).await? == 0 {
            return Err(Error::ClosedBeforeHead);
        }
    }
}

enum Parsed {
    Final(Head),
    /// An interim (1xx) response was consumed.
    Interim,
    /// More bytes are needed.
    Partial,
}

fn parse_head(buf: &mut BytesMut, method: &Method, keep_common: bool) -> Result<Parsed, Error> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut fields: [Field; MAX_HEADERS] = [[0; 4]; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let base = buf.as_ptr() as usize;
    let (len, code, reason, version, count) = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut response, buf, &mut headers)
    {
        Ok(httparse::Status::Complete(len)) => {
            wire::record(base, response.headers, &mut fields);
            let reason = response.reason.unwrap_or("");
            let code = response.code.unwrap_or(0);
            let reason = (StatusCode::from_u16(code).ok().and_then(|s| s.canonical_reason()) != Some(reason))
                .then(|| Bytes::copy_from_slice(reason.as_bytes()));
            (len, code, reason, response.version, response.headers.len())
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(e) => return Err(Error::Head(e)),
    };
    if len > MAX_HEAD {
        return Err(Error::HeadTooLong);
    }
    let head = buf.split_to(len).freeze();
    let status = StatusCode::from_u16(code).map_err(|_| Error::Invalid("status code out of range"))?;
    let version = if version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    if matches!(code, 100 | 102..=199) {
        return Ok(Parsed::Interim);
    }
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    if keep_common && version == Version::HTTP_11 && reason.is_none() && method != Method::HEAD {
        if let Some((kept, keep_alive)) = keep(status, &head, &fields[..count]) {
            return Ok(Parsed::Final(Head {
                response,
                decoding: Decoding::Length(kept.length),
                keep_alive,
                kept: Some(Box::new(kept)),
            }));
        }
    }
    // Given back by the server loop (`http1::response`) once written.
    let headers = response.headers_mut();
    *headers = crate::header_maps::take(count);
    let keep_alive = map_fields(&head, &fields[..count], version, headers)?;
    if let Some(reason) = reason {
        if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason) {
            response.extensions_mut().insert(reason);
        }
    }
    let decoding = decoding(&response, method)?;
    let keep_alive = keep_alive && decoding != Decoding::Eof && status != StatusCode::SWITCHING_PROTOCOLS;
    Ok(Parsed::Final(Head {
        response,
        decoding,
        keep_alive,
        kept: None,
    }))
}

/// Appends the `fields` of `head` to `headers`; whether they let the connection be kept alive
/// (HTTP/1.1 unless a `Connection` says `close`, HTTP/1.0 only if one says `keep-alive`).
fn map_fields(
    head: &Bytes,
    fields: &[Field],
    version: Version,
    headers: &mut HeaderMap,
) -> Result<bool, Error> {
    let mut keep_alive = version == Version::HTTP_11;
    let mut close = false;
    for &[n0, n1, v0, v1] in fields {
        let name = HeaderName::from_bytes(&head[n0 as usize..n1 as usize])
            .map_err(|_| Error::Invalid("bad header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(v0 as usize..v1 as usize))
            .map_err(|_| Error::Invalid("bad header value"))?;
        if name == CONNECTION {
            if close || has_token(value.as_bytes(), b"close") {
                close = true;
                keep_alive = false;
            } else if !keep_alive {
                keep_alive = has_token(value.as_bytes(), b"keep-alive");
            }
        }
        headers.append(name, value);
    }
    Ok(keep_alive)
}

/// The head of an HTTP/1.1 response with the canonical reason phrase, to a request other than
/// `HEAD`, kept as it came when it is the common kind, which the forwarded response would pass on
/// unchanged but for its `Connection` field: a status other than 101, 204 and 304; one
/// `Content-Length` of digits, not 0; no other hop-by-hop field (nor `Trailer`), and a
/// `Connection` that lists nothing but `close` and `keep-alive`. Also whether the connection may
/// be kept alive. `None`: the head goes into a header map, as any other.
fn keep(status: StatusCode, head: &Bytes, fields: &[Field]) -> Option<(KeptHead, bool)> {
    if matches!(status.as_u16(), 101 | 204 | 304) {
        return None;
    }
    let (mut length, mut date, mut keep_alive) = (None, false, true);
    for &[n0, n1, v0, v1] in fields {
        let name = &head[n0 as usize..n1 as usize];
        let value = &head[v0 as usize..v1 as usize];
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"date") => date = true,
            7 if name.eq_ignore_ascii_case(b"trailer") => return None,
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in wire::tokens(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                        return None;
                    }
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                if length.is_some()
                    || value.is_empty()
                    || value.len() > 19
                    || !value.iter().all(u8::is_ascii_digit)
                {
                    return None;
                }
                length = value
                    .iter()
                    .try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')));
            }
            // Longer names than a header map takes go the map's way (and are refused there).
            n if n > MAX_NAME => return None,
            _ if is_hop_by_hop_name(name) => return None,
            _ => {}
        }
    }
    let length = length.filter(|&n| n > 0)?;
    let kept = KeptHead {
        bytes: head.clone(),
        fields: fields.to_vec(),
        length,
        date,
    };
    Some((kept, keep_alive))
}

/// How the body of `response` (to a `method` request) is framed: see the module documentation.
fn decoding(response: &Response<()>, method: &Method) -> Result<Decoding, Error> {
    let status = response.status().as_u16();
    if matches!(status, 101 | 204 | 304) || method == Method::HEAD {
        return Ok(Decoding::Done);
    }
    let headers = response.headers();
    if headers.contains_key(TRANSFER_ENCODING) {
        if response.version() == Version::HTTP_10 {
            return Err(Error::Invalid("Transfer-Encoding in an HTTP/1.0 response"));
        }
        // The last `Transfer-Encoding` line decides.
        let chunked = headers
            .get_all(TRANSFER_ENCODING)
            .into_iter()
            .next_back()
            .is_some_and(wire::ends_chunked);
        return Ok(if chunked {
            Decoding::Chunked(Chunk::Size)
        } else {
            Decoding::Eof
        });
    }
    match content_length(headers)? {
        Some(0) => Ok(Decoding::Done),
        Some(n) => Ok(Decoding::Length(n)),
        None => Ok(Decoding::Eof),
    }
}

/// The body length `Content-Length` declares: every value of every line must be the same run of
/// digits.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Error> {
    let mut length = None;
    for line in headers.get_all(CONTENT_LENGTH) {
        let text = line
            .to_str()
            .map_err(|_| Error::Invalid("Content-Length is not a number"))?;
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::Invalid("Content-Length is not a number"));
            }
            let n: u64 = part
                .parse()
                .map_err(|_| Error::Invalid("Content-Length is too large"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::Invalid("Content-Length values differ"));
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// A response body streamed from its backend connection, which goes back to the pool once the
/// body has ended (if the response allowed keep-alive).
#[derive(Debug)]
pub(crate) struct ResponseBody {
    /// `None` once the body has ended.
    conn: Option<Box<Conn>>,
    decoding: Decoding,
    /// How long the connection is kept idle once the body has ended; `None`: it is closed.
    reuse: Option<Duration>,
    /// The head as it came, when its fields were kept out of the response (see [`keep`]).
    kept: Option<Box<KeptHead>>,
}

impl ResponseBody {
    pub(super) fn new(
        conn: Box<Conn>,
        decoding: Decoding,
        reuse: Option<Duration>,
        kept: Option<Box<KeptHead>>,
    ) -> Self {
        let mut body = Self {
            conn: Some(conn),
            decoding,
            reuse,
            kept,
        };
        if decoding == Decoding::Done {
            body.finish();
        }
        body
    }

    /// The head as it came, if its fields were kept out of the response, for a writer that sends
    /// it as it is; the response then has no fields of its own to send.
    pub(crate) fn take_kept(&mut self) -> Option<Box<KeptHead>> {
        self.kept.take()
    }

    /// The head kept as it came, to change before it is written.
    pub(crate) fn kept_mut(&mut self) -> Option<&mut KeptHead> {
        self.kept.as_deref_mut()
    }

    /// The body has ended: its connection goes back to the pool, or is closed.
    fn finish(&mut self) {
        self.decoding = Decoding::Done;
        if let (Some(conn), Some(keep)) = (self.conn.take(), self.reuse) {
            pool::checkin(conn, keep);
        }
    }

    /// The next frame of the body, read from its connection: `Ok(None)` once the body ended.
    fn decode(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Frame<Bytes>>, Error>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(Ok(None));
            };
            match &mut self.decoding {
                Decoding::Done => return Poll::Ready(Ok(None)),
                Decoding::Length(left) => {
                    if conn.read.is_empty() {
                        ready!(more(conn, cx))?;
                    }
                    let data = take(&mut conn.read, left);
                    if *left == 0 {
                        self.finish();
                    }
                    return Poll::Ready(Ok(Some(Frame::data(data))));
                }
                Decoding::Eof => {
                    if conn.read.is_empty() && ready!(fill(conn, cx))? == 0 {
                        self.finish();
                        return Poll::Ready(Ok(None));
                    }
                    return Poll::Ready(Ok(Some(Frame::data(conn.read.split().freeze()))));
                }
                Decoding::Chunked(Chunk::Size) => match httparse::parse_chunk_size(&conn.read) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        conn.read.advance(used);
                        let next = if size == 0 {
                            Chunk::Trailers
                        } else {
                            Chunk::Data(size)
                        };
                        self.decoding = Decoding::Chunked(next);
                    }
                    Ok(httparse::Status::Partial) if conn.read.len() > MAX_CHUNK_LINE => {
                        return Poll::Ready(Err(Error::Chunked("chunk-size line too long")));
                    }
                    Ok(httparse::Status::Partial) => ready!(more(conn, cx))?,
                    Err(_) => return Poll::Ready(Err(Error::Chunked("invalid chunk-size line"))),
                },
                Decoding::Chunked(Chunk::Data(left)) => {
                    if conn.read.is_empty() {
                        ready!(more(conn, cx))?;
                    }
                    let data = take(&mut conn.read, left);
                    if *left == 0 {
                        self.decoding = Decoding::Chunked(Chunk::DataEnd);
                    }
                    return Poll::Ready(Ok(Some(Frame::data(data))));
                }
                Decoding::Chunked(Chunk::DataEnd) => {
                    if conn.read.len() < 2 {
                        ready!(more(conn, cx))?;
                        continue;
                    }
                    if &conn.read[..2] != b"\r\n" {
                        return Poll::Ready(Err(Error::Chunked("no CRLF after a chunk's data")));
                    }
                    conn.read.advance(2);
                    self.decoding = Decoding::Chunked(Chunk::Size);
                }
                Decoding::Chunked(Chunk::Trailers) => {
                    if conn.read.starts_with(b"\r\n") {
                        conn.read.advance(2);
                        self.finish();
                        return Poll::Ready(Ok(None));
                    }
                    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    match httparse::parse_headers(&conn.read, &mut fields) {
                        Ok(httparse::Status::Complete((used, fields))) => {
                            let trailers = trailer_map(fields)?;
                            conn.read.advance(used);
                            self.finish();
                            return Poll::Ready(Ok(Some(Frame::trailers(trailers))));
                        }
                        Ok(httparse::Status::Partial) if conn.read.len() > MAX_TRAILERS => {
                            return Poll::Ready(Err(Error::Chunked("trailers too long")));
                        }
                        Ok(httparse::Status::Partial) => ready!(more(conn, cx))?,
                        Err(_) => return Poll::Ready(Err(Error::Chunked("invalid trailers"))),
                    }
                }
            }
        }
    }
}

/// The trailer section's fields as a header map.
fn trailer_map(fields: &[httparse::Header<'_>]) -> Result<HeaderMap, Error> {
    let mut trailers = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(field.name.as_bytes()),
            HeaderValue::from_bytes(field.value),
        ) else {
            return Err(Error::Chunked("invalid trailer field"));
        };
        trailers.append(name, value);
    }
    Ok(trailers)
}

/// Up to `left` bytes from the front of `buf` (which is not empty), counted off `left`.
fn take(buf: &mut BytesMut, left: &mut u64) -> Bytes {
    let n = usize::try_from(*left).map_or(buf.len(), |left| left.min(buf.len()));
    *left -= n as u64;
    buf.split_to(n).freeze()
}

/// Reads more of a body that is not complete yet: its connection's end is an error.
fn more(conn: &mut Conn, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
    match ready!(fill(conn, cx))? {
        0 => Poll::Ready(Err(Error::ClosedInBody)),
        _ => Poll::Ready(Ok(())),
    }
}

/// Reads more from the connection; `Ok(0)` at its end.
fn fill(conn: &mut Conn, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    conn.read.reserve(READ_SIZE);
    tokio_util::io::poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.read)
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        match ready!(this.decode(cx)) {
            Ok(frame) => Poll::Ready(frame.map(Ok)),
            Err(error) => {
                // The connection's state is unknown: it is closed, not reused.
                this.conn = None;
                this.decoding = Decoding::Done;
                Poll::Ready(Some(Err(error)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoding == Decoding::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoding {
            Decoding::Done => SizeHint::with_exact(0),
            Decoding::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
