//! A response written to the client as hyper's HTTP/1.1 server writes it.
//!
//! For: the status line (`HTTP/1.1 200 OK` or the version, code and reason: a `ReasonPhrase`
//! the backend sent, else the canonical one), the header fields in the map's order with the
//! lines of one name that hyper joins (`Connection`, `Trailer`, `Transfer-Encoding`) joined, the
//! framing hyper chooses (the response's own `Content-Length`; else the body's exact size; else
//! chunked, or until close for an HTTP/1.0 response; no body for `HEAD`, 1xx, 204 and 304, and no
//! implicit `Content-Length: 0` for `HEAD`, 204 and 304), `Connection: close` added when the
//! connection will close, `Date` when the response has none (cached per second), and the body:
//! as it comes, chunk-framed (size in upper-case hex), or cut at its declared length. Trailers go
//! out when the client sent `TE: trailers` and the response announced them in `Trailer`. A
//! backend's head kept as it came (`wire::KeptHead`) is written from its bytes, as the same fields
//! in a map would have been ([`kept_head`]).
//! Small frames are gathered and written together; a frame the body does not have ready yet
//! flushes what is gathered first.
//! Not for: 1xx responses (Berth's loop never has one to send: upgrades are hyper's).

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    DATE, HOST, MAX_FORWARDS, SET_COOKIE, TE, TRAILER, TRANSFER_ENCODING,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use hyper::body::Body;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::wire::{ends_chunked, has_token, KeptHead};

/// Gathered bytes are written once there are this many.
const FLUSH_AT: usize = 64 * 1024;

/// The body's length as hyper's dispatcher tells its encoder: `None` for a body already ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Length {
    Known(u64),
    Unknown,
}

/// How the body is framed on the wire.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    /// This many bytes (left).
    Length(u64),
    /// Chunked; the trailer fields the response announced.
    Chunked(Option<Vec<HeaderName>>),
    /// Until the connection closes.
    Close,
}

/// Writes `response`, the answer to a `method` request, to `io` (with `out` as the buffer it
/// gathers in). `keep_alive`: the connection may serve another request after this one (else the
/// response says `Connection: close`); `trailers`: the client accepts trailers. Returns whether
/// the connection may serve another request.
pub(super) async fn write<IO, B>(
    io: &mut IO,
    out: &mut Vec<u8>,
    response: Response<B>,
    method: &Method,
    keep_alive: bool,
    trailers: bool,
) -> io::Result<bool>
where
    IO: AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin + KeptHeadSource,
    B::Error: std::fmt::Display,
{
    let (mut parts, mut body) = response.into_parts();
    out.clear();
    let encoded = match body.take_kept() {
        Some(kept) => Some(kept_head(&parts, &kept, !keep_alive, out)),
        None => {
            let length = if body.is_end_stream() {
                None
            } else {
                Some(body.size_hint().exact().map_or(Length::Unknown, Length::Known))
            };
            if !keep_alive {
                close_header(&mut parts.headers);
            }
            head(&mut parts, length, method, !keep_alive, out)
        }
    };
    crate::header_maps::give(std::mem::take(&mut parts.headers));
    let Some((mut framing, is_last)) = encoded else {
        // hyper refuses such a response and closes the connection without one.
        return Ok(false);
    };
    if framing == Framing::Length(0) {
        // HEAD, 204, 304 or an empty body: the body is not read.
        io.write_all(out).await?;
        return Ok(!is_last);
    }
    loop {
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                // Not ready: what is gathered goes out first.
                flush(io, out).await?;
                poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        let frame = match frame {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                tracing::debug!(%error, "response body failed; closing the client connection");
                flush(io, out).await?;
                return Ok(false);
            }
        };
        match frame.into_data() {
            Ok(data) if data.is_empty() => {}
            Ok(data) => {
                let end = body.is_end_stream();
                data_frame(&mut framing, data, out);
                if end {
                    break;
                }
            }
            Err(frame) => {
                if let (Ok(fields), Framing::Chunked(Some(allowed)), true) =
                    (frame.into_trailers(), &framing, trailers)
                {
                    if trailer_section(&fields, allowed, out) {
                        io.write_all(out).await?;
                        return Ok(!is_last);
                    }
                }
            }
        }
        if out.len() >= FLUSH_AT {
            flush(io, out).await?;
        }
    }
    match framing {
        Framing::Chunked(_) => out.extend_from_slice(b"0\r\n\r\n"),
        Framing::Length(0) => {}
        // Shorter than it said: hyper aborts the connection.
        Framing::Length(_) => {
            flush(io, out).await?;
            return Ok(false);
        }
        Framing::Close => {
            flush(io, out).await?;
            return Ok(false);
        }
    }
    io.write_all(out).await?;
    Ok(!is_last)
}

async fn flush<IO: AsyncWrite + Unpin>(io: &mut IO, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// Appends a data frame as `framing` frames it.
fn data_frame(framing: &mut Framing, data: Bytes, out: &mut Vec<u8>) {
    match framing {
        Framing::Length(left) => {
            let n = usize::try_from(*left).map_or(data.len(), |left| left.min(data.len()));
            *left -= n as u64;
            out.extend_from_slice(&data[..n]);
        }
        Framing::Chunked(_) => {
            let mut size = [0u8; 16];
            let digits = hex_upper(data.len(), &mut size);
            out.extend_from_slice(digits);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Close => out.extend_from_slice(&data),
    }
}

/// `n` in upper-case hex digits, in `buf`.
fn hex_upper(mut n: usize, buf: &mut [u8; 16]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = DIGITS[n & 0xf];
        n >>= 4;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// Appends the last chunk with the trailer fields the response announced (`allowed`), as hyper
/// writes them; `false` (nothing appended) when none is left to send.
fn trailer_section(fields: &HeaderMap, allowed: &[HeaderName], out: &mut Vec<u8>) -> bool {
    let mut section = Vec::new();
    for (name, value) in fields {
        let forbidden = [
            AUTHORIZATION,
            CACHE_CONTROL,
            CONTENT_ENCODING,
            CONTENT_LENGTH,
            CONTENT_RANGE,
            CONTENT_TYPE,
            HOST,
            MAX_FORWARDS,
            SET_COOKIE,
            TRAILER,
            TRANSFER_ENCODING,
            TE,
        ];
        if allowed.contains(name) && !forbidden.contains(name) {
            field(&mut section, name, value);
        }
    }
    if section.is_empty() {
        return false;
    }
    out.extend_from_slice(b"0\r\n");
    out.extend_from_slice(&section);
    out.extend_from_slice(b"\r\n");
    true
}

fn field(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `Connection: close` in `headers`, unless a `Connection` line already says it.
fn close_header(headers: &mut HeaderMap) {
    let says_close = headers
        .get_all(CONNECTION)
        .iter()
        .any(|v| has_token(v.as_bytes(), b"close"));
    if !says_close {
        headers.append(CONNECTION, HeaderValue::from_static("close"));
    }
}

/// Appends the response head to `out` as hyper's server encodes it; the body's framing and
/// whether the connection closes after it, or `None` for a response hyper refuses (a 1xx, or
/// contradicting length fields).
fn head(
    parts: &mut http::response::Parts,
    length: Option<Length>,
    method: &Method,
    closing: bool,
    out: &mut Vec<u8>,
) -> Option<(Framing, bool)> {
    let status = parts.status;
    if status.is_informational() {
        return None;
    }
    let mut is_last = closing;
    status_line(parts, out);
    let http10 = parts.version == Version::HTTP_10;
    let head_request = method == Method::HEAD;
    let can_chunk = !head_request;
    let can_have_length = !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);

    let mut framing = Framing::Length(0);
    let mut allowed_trailers: Option<Vec<HeaderName>> = None;
    let mut wrote_len = false;
    let mut wrote_date = false;
    let mut previous_length = None;
    // A line of joined values is open (its CRLF not yet written), and whether `, chunked` must
    // end it (a `Transfer-Encoding` that does not end in chunked).
    let mut open = false;
    let mut must_chunk = false;
    let mut current: Option<HeaderName> = None;
    for (name, value) in parts.headers.drain() {
        if let Some(name) = name {
            if open {
                out.extend_from_slice(if must_chunk { b", chunked\r\n" } else { b"\r\n" });
            }
            open = false;
            current = Some(name);
        }
        let Some(name) = current.as_ref() else {
            continue;
        };
        if *name == CONTENT_LENGTH {
            if wrote_len && !open {
                return None;
            }
            match length {
                Some(Length::Known(known)) => {
                    if !open {
                        framing = Framing::Length(known);
                        out.extend_from_slice(b"content-length: ");
                        out.extend_from_slice(value.as_bytes());
                        wrote_len = true;
                        open = true;
                    }
                    continue;
                }
                Some(Length::Unknown) => {
                    let declared = std::str::from_utf8(value.as_bytes())
                        .ok()
                        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|v| v.parse::<u64>().ok())?;
                    match previous_length {
                        Some(previous) if previous != declared => return None,
                        Some(_) => continue,
                        None => {
                            framing = Framing::Length(declared);
                            out.extend_from_slice(b"content-length: ");
                            out.extend_from_slice(value.as_bytes());
                            wrote_len = true;
                            open = true;
                            previous_length = Some(declared);
                            continue;
                        }
                    }
                }
                None => {
                    if !head_request {
                        continue;
                    }
                }
            }
            wrote_len = true;
        } else if *name == TRANSFER_ENCODING {
            if wrote_len && !open {
                return None;
            }
            if http10 || !can_chunk {
                continue;
            }
            wrote_len = true;
            must_chunk = !ends_chunked(&value);
            if !open {
                framing = Framing::Chunked(None);
            }
            joined(out, &mut open, name, &value);
            continue;
        } else if *name == CONNECTION {
            if !is_last && has_token(value.as_bytes(), b"close") {
                is_last = true;
            }
            joined(out, &mut open, name, &value);
            continue;
        } else if *name == DATE {
            wrote_date = true;
        } else if *name == TRAILER {
            if http10 || !can_chunk {
                continue;
            }
            joined(out, &mut open, name, &value);
            if let Ok(text) = value.to_str() {
                let names = text
                    .split(',')
                    .filter_map(|s| HeaderName::from_bytes(s.trim().as_bytes()).ok());
                allowed_trailers.get_or_insert_with(Vec::new).extend(names);
            }
            continue;
        }
        field(out, name, &value);
    }
    if open {
        out.extend_from_slice(if must_chunk { b", chunked\r\n" } else { b"\r\n" });
    }
    if !wrote_len {
        framing = match length {
            Some(Length::Unknown) => {
                if http10 || !can_chunk {
                    Framing::Close
                } else {
                    out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    Framing::Chunked(None)
                }
            }
            None | Some(Length::Known(0)) => {
                if can_have_length && !head_request {
                    out.extend_from_slice(b"content-length: 0\r\n");
                }
                Framing::Length(0)
            }
            Some(Length::Known(n)) => {
                if can_have_length {
                    out.extend_from_slice(b"content-length: ");
                    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                    out.extend_from_slice(b"\r\n");
                    Framing::Length(n)
                } else {
                    Framing::Length(0)
                }
            }
        };
    }
    if head_request {
        framing = Framing::Length(0);
    }
    if !wrote_date {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if let (Framing::Chunked(fields), Some(allowed)) = (&mut framing, allowed_trailers) {
        if !allowed.is_empty() {
            *fields = Some(allowed);
        }
    }
    let is_last = is_last || framing == Framing::Close;
    Some((framing, is_last))
}

/// Appends the status line: `HTTP/1.1 200 OK`, or the version, the code and the reason (a
/// `ReasonPhrase` the backend sent, else the canonical one).
fn status_line(parts: &http::response::Parts, out: &mut Vec<u8>) {
    let status = parts.status;
    let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>();
    if parts.version == Version::HTTP_11 && status == StatusCode::OK && reason.is_none() {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    out.extend_from_slice(if parts.version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    match reason {
        Some(reason) => out.extend_from_slice(reason.as_bytes()),
        None => out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the head of a response whose fields are a backend's head as it came (`kept`, see
/// `proxy::backend_h1::response`): what [`head`] writes for the same response with those fields
/// in its map after the forwarded response's clean-up, which takes out the one hop-by-hop field a
/// kept head may have (`Connection`); names in lower case, as a map holds them. Fields the
/// response's own map holds (none on the request path) follow the backend's. The body is framed
/// by the kept `Content-Length`.
fn kept_head(
    parts: &http::response::Parts,
    kept: &KeptHead,
    closing: bool,
    out: &mut Vec<u8>,
) -> (Framing, bool) {
    status_line(parts, out);
    for (name, value) in kept.iter() {
        if name.eq_ignore_ascii_case(b"connection") {
            continue;
        }
        let start = out.len();
        out.extend_from_slice(name);
        out[start..].make_ascii_lowercase();
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &parts.headers {
        field(out, name, value);
    }
    if closing {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !kept.date {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (Framing::Length(kept.length), closing)
}

/// A response body that may carry a backend's head as it came, for [`write`] to send as it is.
pub(crate) trait KeptHeadSource {
    /// The head, taken (the response then has no fields of its own to send but those the proxy
    /// added).
    fn take_kept(&mut self) -> Option<Box<KeptHead>> {
        None
    }
}

impl KeptHeadSource for crate::proxy::Body {
    fn take_kept(&mut self) -> Option<Box<KeptHead>> {
        crate::proxy::Body::take_kept(self)
    }
}

/// Appends `value` to the line of `name` that hyper joins: `name: value` when no line is `open`
/// yet (its CRLF comes when the next name starts), else `, value`.
fn joined(out: &mut Vec<u8>, open: &mut bool, name: &HeaderName, value: &HeaderValue) {
    if *open {
        out.extend_from_slice(b", ");
    } else {
        *open = true;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
    }
    out.extend_from_slice(value.as_bytes());
}

/// Appends the current time as an HTTP date (IMF-fixdate), formatted once a second per thread.
fn date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHED: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            *cached = second;
            *text = httpdate::fmt_http_date(now).into_bytes();
        }
        out.extend_from_slice(text);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::wire;

    /// A head as the backend client keeps it, from its bytes.
    fn kept(head: &'static [u8], length: u64) -> KeptHead {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let parsed = response.parse(head).expect("a response head");
        assert!(parsed.is_complete());
        let mut fields = vec![[0; 4]; response.headers.len()];
        wire::record(head.as_ptr() as usize, response.headers, &mut fields);
        let date = response
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("date"));
        KeptHead {
            bytes: Bytes::from_static(head),
            fields,
            length,
            date,
        }
    }

    /// The `Date` the first head below sends.
    const BACKEND_DATE: &str = "date: Sat, 28 Nov 2026 17:00:00 GMT";

    /// `out` with a generated `Date` value, which may differ between two writes a second apart,
    /// as `<date>`.
    fn masked(out: &[u8]) -> String {
        String::from_utf8_lossy(out)
            .split("\r\n")
            .map(|line| {
                if line.starts_with("date: ") && line != BACKEND_DATE {
                    "date: <date>"
                } else {
                    line
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    #[test]
    fn a_kept_head_is_written_as_its_fields_would_be_from_a_map() {
        let heads: &[(&'static [u8], u16, u64)] = &[
            (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sat, 28 Nov 2026 17:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n", 200, 2),
            (b"HTTP/1.1 404 Not Found\r\ncontent-length: 10\r\nconnection: close\r\nx-a: 1\r\n\r\n", 404, 10),
            (b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Empty: \r\ncontent-length: 1\r\n\r\n", 200, 1),
        ];
        for &(bytes, status, length) in heads {
            for closing in [false, true] {
                let kept = kept(bytes, length);
                let mut parts = http::Response::new(()).into_parts().0;
                parts.status = StatusCode::from_u16(status).expect("status");
                let mut ours = Vec::new();
                let (framing, last) = kept_head(&parts, &kept, closing, &mut ours);
                assert_eq!(framing, Framing::Length(length));
                assert_eq!(last, closing);

                // The map the forwarded response would have held: every field but `Connection`.
                for (name, value) in kept.iter() {
                    if !name.eq_ignore_ascii_case(b"connection") {
                        parts.headers.append(
                            HeaderName::from_bytes(name).expect("name"),
                            HeaderValue::from_bytes(value).expect("value"),
                        );
                    }
                }
                if closing {
                    close_header(&mut parts.headers);
                }
                let mut theirs = Vec::new();
                let (framing, last) = head(
                    &mut parts,
                    Some(Length::Known(length)),
                    &Method::GET,
                    closing,
                    &mut theirs,
                )
                .expect("a head");
                assert_eq!(framing, Framing::Length(length));
                assert_eq!(last, closing);
                assert_eq!(
                    masked(&ours),
                    masked(&theirs),
                    "{}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }
}
