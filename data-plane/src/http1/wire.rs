//! What Berth's own HTTP/1.1 server (the parent module) and backend client (`proxy::backend_h1`)
//! share about the wire: where httparse found each header field, and token lists and transfer
//! codings read as hyper reads them (the request path's phases read `Connection`, `Upgrade` and
//! `TE` lists with the same [`has_token`]).

/// A header field's name and value as `[name start, name end, value start, value end]` offsets
/// into the parsed head.
pub(crate) type Field = [u32; 4];

/// A backend's response head kept as it came, for Berth's own server loop to write without a
/// header map between (the common response: see `proxy::backend_h1::response`). Its fields are
/// all of the head's, `Connection` included; the writer leaves that one out, as the forwarded
/// response's hop-by-hop clean-up would have.
#[derive(Debug)]
pub(crate) struct KeptHead {
    /// The head's bytes, from the status line to the blank line.
    pub bytes: bytes::Bytes,
    /// Where each field lies in `bytes`, in the backend's order.
    pub fields: Vec<Field>,
    /// The body's length, from its one `Content-Length` (never 0).
    pub length: u64,
    /// Whether a `Date` field is among the fields.
    pub date: bool,
}

impl KeptHead {
    /// The name and value of each field.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        slices(&self.bytes, &self.fields)
    }

    /// Takes every field named `name` out of the head (a response middleware sets or removes
    /// that header). Never one the writer manages itself: `Content-Length`, `Date`, `Connection`
    /// (see [`KeptHead::manages`]).
    pub(crate) fn remove(&mut self, name: &http::HeaderName) {
        debug_assert!(!Self::manages(name), "{name} is the kept head writer's");
        let bytes = &self.bytes;
        self.fields
            .retain(|&[n0, n1, ..]| !bytes[n0 as usize..n1 as usize].eq_ignore_ascii_case(name.as_ref()));
    }

    /// Whether the writer of a kept head decides field `name` itself (from the kept length and
    /// date, and the connection's state), so that a response middleware changing it needs the
    /// head in a map: `Content-Length`, `Transfer-Encoding`, `Date` and `Connection`.
    pub(crate) fn manages(name: &http::HeaderName) -> bool {
        use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
        [CONTENT_LENGTH, TRANSFER_ENCODING, DATE, CONNECTION].contains(name)
    }
}

/// A client request's header fields kept as they came, beside a header map that holds only the
/// request's `Host` (the common request: see the parent module's `request`): Berth's own backend
/// client writes them as they are, and a step that may read any field (a header matcher, a
/// middleware reading more than the fields it names, a sticky cookie, hyper's client) has them
/// put in the map first (`proxy::accept::fill_headers`); a route's middlewares that name the
/// fields they set or remove get those alone in the map (`proxy::accept::fill_named`). None of them is a field the request path itself reads or
/// changes (`Host`, `Content-Length`, hop-by-hop fields, the forwarded headers the entrypoint
/// manages, `X-Request-Id`, a field named `Close`) but a `Connection` listing only `close` or
/// `keep-alive`, which the writer leaves out as the hop-by-hop clean-up would have.
#[derive(Debug, Clone)]
pub(crate) struct RawFields {
    /// The request's head, from the request line to the blank line.
    pub bytes: bytes::Bytes,
    /// Where each field lies in `bytes`, in the client's order.
    pub fields: Vec<Field>,
}

impl RawFields {
    /// The name (as sent) and value of each field.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        slices(&self.bytes, &self.fields)
    }

    /// Moves every field named one of `names` (the same name in any case) to the end of
    /// `headers`, in the client's order: for a step that reads or changes only those.
    pub(crate) fn move_named(&mut self, headers: &mut http::HeaderMap, names: &[http::HeaderName]) {
        let bytes = &self.bytes;
        self.fields.retain(|&f @ [n0, n1, ..]| {
            let name = &bytes[n0 as usize..n1 as usize];
            if !names.iter().any(|n| name.eq_ignore_ascii_case(n.as_ref())) {
                return true;
            }
            if let Some((name, value)) = to_header(bytes, f) {
                headers.append(name, value);
            }
            false
        });
    }

    /// Appends every field to `headers` (`Connection` only if `connection`), values sharing the
    /// head's bytes (httparse took them, so `http` takes them too).
    pub(crate) fn append_to(&self, headers: &mut http::HeaderMap, connection: bool) {
        headers.reserve(self.fields.len());
        for &f @ [n0, n1, ..] in &self.fields {
            if !connection && self.bytes[n0 as usize..n1 as usize].eq_ignore_ascii_case(b"connection") {
                continue;
            }
            if let Some((name, value)) = to_header(&self.bytes, f) {
                headers.append(name, value);
            }
        }
    }
}

/// A field of `head` as a header map holds it (the value sharing `head`'s bytes); `None` if
/// `http` refuses it.
pub(crate) fn to_header(
    head: &bytes::Bytes,
    [n0, n1, v0, v1]: Field,
) -> Option<(http::HeaderName, http::HeaderValue)> {
    let name = http::HeaderName::from_bytes(&head[n0 as usize..n1 as usize]).ok()?;
    let value = http::HeaderValue::from_maybe_shared(head.slice(v0 as usize..v1 as usize)).ok()?;
    Some((name, value))
}

/// The name and value of each of `fields` in `bytes`.
fn slices<'a>(bytes: &'a [u8], fields: &'a [Field]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    fields
        .iter()
        .map(|&[n0, n1, v0, v1]| (&bytes[n0 as usize..n1 as usize], &bytes[v0 as usize..v1 as usize]))
}

/// Whether a field name, as sent (case ignored), is one of the hop-by-hop fields the forwarded
/// request loses (`proxy::forwarded`) besides `Connection`: `TE`, `Upgrade`, `Keep-Alive`,
/// `Proxy-Connection`, `Transfer-Encoding`, `Proxy-Authenticate`, `Proxy-Authorization`. By its
/// length first, where comparing `HeaderName`s one by one costs a byte comparison for each custom
/// one.
#[inline]
pub(crate) fn is_hop_by_hop_name(name: &[u8]) -> bool {
    // Every hop-by-hop name starts with one of these letters; most others (the `X-Forwarded-*`
    // of the same lengths) end the check here.
    if !matches!(
        name.first().map(u8::to_ascii_lowercase),
        Some(b't' | b'u' | b'k' | b'p')
    ) {
        return false;
    }
    let known: &[u8] = match name.len() {
        2 => b"te",
        7 => b"upgrade",
        10 => b"keep-alive",
        16 => b"proxy-connection",
        17 => b"transfer-encoding",
        18 => b"proxy-authenticate",
        19 => b"proxy-authorization",
        _ => return false,
    };
    known.eq_ignore_ascii_case(name)
}

/// Records where each of `headers` (parsed from the buffer starting at address `base`) lies, in
/// `fields`.
pub(crate) fn record(base: usize, headers: &[httparse::Header<'_>], fields: &mut [Field]) {
    let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
    for (field, h) in fields.iter_mut().zip(headers) {
        let name = offset(h.name.as_bytes());
        let value = offset(h.value);
        *field = [
            name,
            name + h.name.len() as u32,
            value,
            value + h.value.len() as u32,
        ];
    }
}

/// Whether a comma-separated field value lists `token` (case ignored). As hyper reads them, a
/// value with bytes outside visible ASCII lists nothing.
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

/// The tokens a comma-separated field value lists, spaces around them trimmed, empty ones
/// skipped; none for a value with bytes outside visible ASCII (which `HeaderValue::to_str`
/// refuses too).
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let visible = value.iter().all(|&b| b == b'\t' || (32..127).contains(&b));
    value
        .split(|&b| b == b',')
        .filter(move |_| visible)
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Whether the last transfer coding a `Transfer-Encoding` value lists is `chunked`.
pub(crate) fn ends_chunked(value: &http::HeaderValue) -> bool {
    value
        .to_str()
        .ok()
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `head` parsed, every field kept as it came.
    fn raw(head: &'static [u8]) -> RawFields {
        let mut parsed = [httparse::EMPTY_HEADER; 16];
        let mut request = httparse::Request::new(&mut parsed);
        assert!(request.parse(head).expect("a request head").is_complete());
        let mut fields = vec![[0; 4]; request.headers.len()];
        record(head.as_ptr() as usize, request.headers, &mut fields);
        RawFields {
            bytes: bytes::Bytes::from_static(head),
            fields,
        }
    }

    #[test]
    fn named_fields_move_to_the_map_in_order_whatever_their_case() {
        let mut fields = raw(
            b"GET / HTTP/1.1\r\nX-Custom: a\r\nAccept: */*\r\nx-custom: b\r\nX-NEW: c\r\nX-Other: d\r\n\r\n",
        );
        let mut map = http::HeaderMap::new();
        map.insert("x-custom", http::HeaderValue::from_static("map"));
        let names = [
            http::HeaderName::from_static("x-custom"),
            http::HeaderName::from_static("x-new"),
        ];
        fields.move_named(&mut map, &names);
        let custom: Vec<_> = map.get_all("x-custom").iter().collect();
        assert_eq!(custom, ["map", "a", "b"]);
        assert_eq!(map["x-new"], "c");
        assert_eq!(map.len(), 4);
        let left: Vec<_> = fields.iter().collect();
        assert_eq!(left, [(&b"Accept"[..], &b"*/*"[..]), (b"X-Other", b"d")]);
    }

    #[test]
    fn a_kept_head_loses_a_name_in_any_case() {
        let head = b"HTTP/1.1 200 OK\r\nServer: a\r\nX-Keep: 1\r\nSERVER: b\r\nContent-Length: 1\r\n\r\n";
        let mut parsed = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut parsed);
        assert!(response.parse(head).expect("a response head").is_complete());
        let mut fields = vec![[0; 4]; response.headers.len()];
        record(head.as_ptr() as usize, response.headers, &mut fields);
        let mut kept = KeptHead {
            bytes: bytes::Bytes::from_static(head),
            fields,
            length: 1,
            date: false,
        };
        kept.remove(&http::header::SERVER);
        let left: Vec<_> = kept.iter().map(|(name, _)| name).collect();
        assert_eq!(left, [&b"X-Keep"[..], b"Content-Length"]);
        assert!(KeptHead::manages(&http::header::DATE));
        assert!(!KeptHead::manages(&http::header::SERVER));
    }

    #[test]
    fn token_lists() {
        assert!(has_token(b"keep-alive, Close", b"close"));
        assert!(has_token(b" trailers ", b"trailers"));
        assert!(!has_token(b"closed", b"close"));
        assert!(!has_token(b"close, \xff", b"close"));
        let listed: Vec<&[u8]> = tokens(b" a,,\tB , c").collect();
        assert_eq!(listed, [&b"a"[..], b"B", b"c"]);
        assert_eq!(tokens(b"a, \x80").count(), 0);
    }
}
