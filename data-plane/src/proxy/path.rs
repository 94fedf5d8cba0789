//! Request paths the way Traefik (through Go's `net/url`) sees and rewrites them.
//!
//! For: the few path operations the request path and the path middlewares share, each following
//! Go's `net/url` so that a rewritten path reaches the backend byte for byte as it would through
//! Traefik:
//! - [`entry_path`]: what Traefik's entrypoint does to every request path before routing
//!   (`normalizePath`: unreserved `%XX` decoded, other escapes upper-cased; `sanitizePath`:
//!   `.`/`..` segments and repeated slashes removed).
//! - [`UrlPath`]: a path as Go's `url.URL` holds it (decoded bytes, plus the raw form when it is
//!   not the default encoding), which is what the path middlewares rewrite; its
//!   [`UrlPath::escaped`] is the form that goes out (`URL.EscapedPath`).
//! - [`decode`], [`cleaned`], [`encoded_prefix_len`]: the pieces the path middlewares use.
//!
//! Every function borrows its input when there is nothing to change, so a plain path costs one
//! scan and no allocation.
//! Not for: the path matchers compare (`berth_model::routing_path`, from [`entry_path`]'s
//! result), queries (left as sent), hosts, or deciding what to do with a request.

use std::borrow::Cow;

use thiserror::Error;

/// A `%` not followed by two hex digits. The text is Go's (`url.EscapeError`), which Traefik
/// puts in the body of the 500 a `replacePath` with such a path answers.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid URL escape {0:?}")]
pub(crate) struct BadEscape(pub String);

/// Percent-decodes a path (Go's `unescape` in path mode: `+` stays `+`). The result may not be
/// UTF-8 (`%FF`).
pub(crate) fn decode(raw: &str) -> Result<Cow<'_, [u8]>, BadEscape> {
    let bytes = raw.as_bytes();
    let mut escapes = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if i + 2 >= bytes.len() || !bytes[i + 1].is_ascii_hexdigit() || !bytes[i + 2].is_ascii_hexdigit()
            {
                let end = (i + 3).min(bytes.len());
                return Err(BadEscape(String::from_utf8_lossy(&bytes[i..end]).into_owned()));
            }
            escapes += 1;
            i += 3;
        } else {
            i += 1;
        }
    }
    if escapes == 0 {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::with_capacity(bytes.len() - 2 * escapes);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(hex_value(bytes[i + 1]) << 4 | hex_value(bytes[i + 2]));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(Cow::Owned(out))
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Whether Go escapes this byte in a path (`shouldEscape` in path mode).
fn must_escape(b: u8) -> bool {
    !(b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'~' | b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'@'
        ))
}

/// Whether `raw` may be sent as it is (Go's `validEncoded` in path mode).
fn valid_encoded(raw: &str) -> bool {
    raw.bytes().all(|b| {
        matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'['
                | b']'
                | b'%'
        ) || !must_escape(b)
    })
}

/// Percent-encodes a decoded path as Go does (`escape` in path mode, upper-case hex).
pub(crate) fn escape(path: &[u8]) -> String {
    escaped_form(path).into_owned()
}

/// [`escape`], borrowing `path` when no byte of it needs escaping (all are then ASCII).
fn escaped_form(path: &[u8]) -> Cow<'_, str> {
    // The bytes before the first to escape are ASCII, so always text.
    let ascii = |bytes| std::str::from_utf8(bytes).unwrap_or_default();
    let Some(first) = path.iter().position(|&b| must_escape(b)) else {
        return Cow::Borrowed(ascii(path));
    };
    let mut out = String::with_capacity(path.len() + 8);
    out.push_str(ascii(&path[..first]));
    for &b in &path[first..] {
        if must_escape(b) {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(b & 15)]));
        } else {
            out.push(char::from(b));
        }
    }
    Cow::Owned(out)
}

/// Whether `escape(path) == wire`, without writing it out.
fn escapes_to(path: &[u8], wire: &str) -> bool {
    let mut wire = wire.as_bytes();
    for &b in path {
        let rest = if must_escape(b) {
            match wire {
                [b'%', hi, lo, rest @ ..]
                    if *hi == HEX_UPPER[usize::from(b >> 4)] && *lo == HEX_UPPER[usize::from(b & 15)] =>
                {
                    rest
                }
                _ => return false,
            }
        } else {
            match wire {
                [first, rest @ ..] if *first == b => rest,
                _ => return false,
            }
        };
        wire = rest;
    }
    wire.is_empty()
}

/// A URL path as Go's `net/url` holds it: `path` decoded, and `raw` the form it was written in when
/// that is not the default encoding of `path` (else empty). Traefik's path middlewares read and
/// set the two separately; [`UrlPath::escaped`] is what is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlPath {
    pub path: Vec<u8>,
    pub raw: String,
}

impl UrlPath {
    /// The path written as `wire` (Go's `URL.setPath`).
    pub(crate) fn parse(wire: &str) -> Result<Self, BadEscape> {
        let path = decode(wire)?.into_owned();
        let raw = if escapes_to(&path, wire) {
            String::new()
        } else {
            wire.to_owned()
        };
        Ok(Self { path, raw })
    }

    /// The form the path goes out in (Go's `URL.EscapedPath`): `raw` when it is a valid spelling
    /// of `path`, else `path` escaped.
    pub(crate) fn escaped(&self) -> Cow<'_, str> {
        if !self.raw.is_empty() && valid_encoded(&self.raw) {
            if let Ok(decoded) = decode(&self.raw) {
                if decoded.as_ref() == self.path.as_slice() {
                    return Cow::Borrowed(&self.raw);
                }
            }
        }
        if self.path == b"*" {
            return Cow::Borrowed("*");
        }
        escaped_form(&self.path)
    }

    /// `raw` if set, else [`UrlPath::escaped`]: what Traefik's `replacePath` middlewares read as
    /// "the current path".
    pub(crate) fn current(&self) -> Cow<'_, str> {
        if self.raw.is_empty() {
            self.escaped()
        } else {
            Cow::Borrowed(&self.raw)
        }
    }

    /// The path sanitized (Go's `URL.JoinPath()` with no elements). Not for an empty path.
    pub(crate) fn joined(&self) -> Result<Self, BadEscape> {
        let escaped = self.escaped();
        Self::parse(&cleaned(&escaped))
    }

    /// The path as Traefik leaves it after a rewrite: sanitized ([`UrlPath::joined`]) unless
    /// empty, or `None` when sanitizing would change the decoded path (Traefik answers such a
    /// rewrite with 400 rather than forward a path with `.`, `..` or `//` segments in it).
    pub(crate) fn sanitized(self) -> Option<Self> {
        // Without a raw form, the path goes out escaped, and escaping leaves `/` and `.` as they
        // are: a clean path is its own sanitized form (`*` aside, which joining gives a raw form).
        if self.path.is_empty() || (self.raw.is_empty() && self.path != b"*" && is_clean(&self.path)) {
            return Some(self);
        }
        match self.joined() {
            Ok(joined) if joined.path == self.path => Some(joined),
            _ => None,
        }
    }
}

/// `/` in front of a non-empty path that lacks one (Traefik's `ensureLeadingSlash`), on bytes.
pub(crate) fn leading_slash_bytes(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 1);
    if !path.is_empty() && path[0] != b'/' {
        out.push(b'/');
    }
    out.extend_from_slice(path);
    out
}

/// The form a (raw) path goes out in: itself when every byte may appear in a path, else its
/// decoded form escaped again (Go's `URL.EscapedPath` after `setPath`).
pub(crate) fn wire(raw: &str) -> Result<Cow<'_, str>, BadEscape> {
    if valid_encoded(raw) {
        decode(raw)?;
        return Ok(Cow::Borrowed(raw));
    }
    if raw == "*" {
        return Ok(Cow::Borrowed(raw));
    }
    Ok(Cow::Owned(escape(&decode(raw)?)))
}

/// How many bytes of `raw` spell the first `decoded_len` bytes of its decoded form (a `%XX` is
/// three bytes spelling one). Traefik's `encodedPrefixLen`.
pub(crate) fn encoded_prefix_len(raw: &str, decoded_len: usize) -> usize {
    let bytes = raw.as_bytes();
    let (mut i, mut decoded) = (0, 0);
    while i < bytes.len() && decoded < decoded_len {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            i += 3;
        } else {
            i += 1;
        }
        decoded += 1;
    }
    i
}

/// The path with `.` and `..` segments resolved and repeated slashes collapsed, keeping a
/// trailing slash: Go's `URL.JoinPath()` with no elements, which Traefik uses both to sanitize
/// every path and to refuse a rewritten path that sanitizing would change. Borrows when clean.
pub(crate) fn cleaned(path: &str) -> Cow<'_, str> {
    if is_clean(path.as_bytes()) {
        return Cow::Borrowed(path);
    }
    // Go resolves a relative path as if rooted, then drops the root again; so a ".." never
    // climbs above the start, rooted or not.
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out.push('/');
    }
    out.push_str(&segments.join("/"));
    if path.ends_with('/') && !out.ends_with('/') {
        out.push('/');
    }
    Cow::Owned(out)
}

/// Whether [`cleaned`] would return the path unchanged: no empty, `.` or `..` segment between
/// the optional leading and trailing slash.
fn is_clean(path: &[u8]) -> bool {
    if path.is_empty() || path == b"/" {
        return true;
    }
    let inner = path.strip_prefix(b"/").unwrap_or(path);
    let inner = inner.strip_suffix(b"/").unwrap_or(inner);
    inner
        .split(|&b| b == b'/')
        .all(|s| !s.is_empty() && s != b"." && s != b"..")
}

/// Traefik's `normalizePath`: `%XX` escapes of unreserved characters (letters, digits, `-._~`)
/// decoded, every other escape upper-cased.
fn normalize_escapes(raw: &str) -> Result<Cow<'_, str>, BadEscape> {
    let bytes = raw.as_bytes();
    let Some(first) = bytes.iter().position(|&b| b == b'%') else {
        return Ok(Cow::Borrowed(raw));
    };
    let mut out = String::with_capacity(raw.len());
    out.push_str(&raw[..first]);
    let mut i = first;
    let mut changed = false;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            // Copy a run of plain bytes at once (keeps multi-byte characters whole).
            let end = bytes[i..]
                .iter()
                .position(|&c| c == b'%')
                .map_or(bytes.len(), |p| i + p);
            out.push_str(&raw[i..end]);
            i = end;
            continue;
        }
        if i + 2 >= bytes.len() || !bytes[i + 1].is_ascii_hexdigit() || !bytes[i + 2].is_ascii_hexdigit() {
            let end = (i + 3).min(bytes.len());
            return Err(BadEscape(raw[i..end].to_owned()));
        }
        let value = hex_value(bytes[i + 1]) << 4 | hex_value(bytes[i + 2]);
        if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(value));
            changed = true;
        } else {
            let upper = [
                b'%',
                bytes[i + 1].to_ascii_uppercase(),
                bytes[i + 2].to_ascii_uppercase(),
            ];
            changed |= upper[1] != bytes[i + 1] || upper[2] != bytes[i + 2];
            out.push_str(std::str::from_utf8(&upper).unwrap_or("%"));
        }
        i += 3;
    }
    Ok(if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(raw)
    })
}

/// What Traefik's entrypoint makes of a request path before routing: escapes normalized, the
/// path in Go's wire form, then sanitized. `None` when the path is already in that form (the
/// common case, checked without allocating).
pub(crate) fn entry_path(raw: &str) -> Result<Option<String>, BadEscape> {
    let normalized = normalize_escapes(raw)?;
    let wired = wire(&normalized)?;
    let clean = cleaned(&wired);
    Ok((clean.as_ref() != raw).then(|| clean.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert!(matches!(decode("/a/b"), Ok(Cow::Borrowed(_))));
        assert_eq!(decode("/a%2Fb%20c+").unwrap().as_ref(), b"/a/b c+");
        assert_eq!(decode("/%ff").unwrap().as_ref(), [b'/', 0xff]);
        assert_eq!(decode("/a%zz"), Err(BadEscape("%zz".into())));
        assert_eq!(decode("/a%4"), Err(BadEscape("%4".into())));
        assert_eq!(BadEscape("%zz".into()).to_string(), r#"invalid URL escape "%zz""#);
    }

    #[test]
    fn escaping_as_go() {
        // Vectors from Go's url.URL{Path: p}.EscapedPath().
        assert_eq!(escape(b"/a b/c?d"), "/a%20b/c%3Fd");
        assert_eq!(escape(b"/$&+,/:;=@-_.~"), "/$&+,/:;=@-_.~");
        assert_eq!(escape("/é\"{}|".as_bytes()), "/%C3%A9%22%7B%7D%7C");
        assert_eq!(escape(b"/!'()*[]"), "/%21%27%28%29%2A%5B%5D");
    }

    /// The shortcuts (comparing with an escaped form without writing it, a clean path without a
    /// raw form kept as it is) agree with the long way on paths of every kind.
    #[test]
    fn shortcuts_agree_with_the_long_way() {
        let paths: [&[u8]; 14] = [
            b"",
            b"/",
            b"*",
            b"/a/b",
            b"/a b/c?d",
            b"/a/./b",
            b"/a/../b/",
            b"//a",
            b"/a/",
            b"a/b",
            b"/..",
            b"/\xff/x",
            b"/%2F",
            "/é/…".as_bytes(),
        ];
        for path in paths {
            let escaped = escape(path);
            assert!(escapes_to(path, &escaped), "{path:?}");
            for wire in ["", "/", "/a/b", "/a%20b/c%3fd", "/a%20b/c%3Fd", "/%FF/x", "/%25"] {
                assert_eq!(escapes_to(path, wire), escaped == wire, "{path:?} {wire}");
            }
            let url = UrlPath {
                path: path.to_vec(),
                raw: String::new(),
            };
            let long_way = match url.joined() {
                Ok(joined) if path.is_empty() || joined.path == url.path => Some(joined),
                _ => None,
            };
            assert_eq!(url.clone().sanitized(), long_way, "{path:?}");
            if path != b"*" {
                assert_eq!(url.escaped(), escaped, "{path:?}");
            }
        }
    }

    #[test]
    fn wire_form() {
        assert!(matches!(wire("/a/b"), Ok(Cow::Borrowed("/a/b"))));
        assert_eq!(wire("/a%2Fb").unwrap(), "/a%2Fb");
        assert_eq!(wire("/(x)!'[y]").unwrap(), "/(x)!'[y]");
        // A byte Go must escape makes Go escape the decoded path, %2F included.
        assert_eq!(wire("/a b%2F").unwrap(), "/a%20b/");
        assert_eq!(wire("/{x}").unwrap(), "/%7Bx%7D");
        assert!(wire("/a%zz").is_err());
    }

    #[test]
    fn cleaning_as_go_join_path() {
        for (input, expected) in [
            ("/", "/"),
            ("", ""),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("//a", "/a"),
            ("/a//b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/a/b/..", "/a"),
            ("/a/b/../", "/a/"),
            ("/..", "/"),
            ("/../a", "/a"),
            ("/./", "/"),
            ("/a/.", "/a"),
            ("/a/%2E%2E/b", "/a/%2E%2E/b"),
            ("a/../../b", "b"),
        ] {
            assert_eq!(cleaned(input), expected, "{input:?}");
        }
        assert!(matches!(cleaned("/a/b/"), Cow::Borrowed(_)));
    }

    #[test]
    fn entry_normalization() {
        assert_eq!(entry_path("/a/b"), Ok(None));
        assert_eq!(entry_path("/%61%2f%7e"), Ok(Some("/a%2F~".into())));
        assert_eq!(entry_path("/a/%2e%2E/b"), Ok(Some("/b".into())));
        assert_eq!(entry_path("/a//b/./c/"), Ok(Some("/a/b/c/".into())));
        assert_eq!(entry_path("/a%20b"), Ok(None));
        assert_eq!(entry_path("/x%zz"), Err(BadEscape("%zz".into())));
    }

    #[test]
    fn url_path_as_go_holds_it() {
        let plain = UrlPath::parse("/a/b").unwrap();
        assert_eq!((plain.path.as_slice(), plain.raw.as_str()), (&b"/a/b"[..], ""));
        assert_eq!(plain.escaped(), "/a/b");
        let slash = UrlPath::parse("/a%2Fb").unwrap();
        assert_eq!(
            (slash.path.as_slice(), slash.raw.as_str()),
            (&b"/a/b"[..], "/a%2Fb")
        );
        assert_eq!(slash.escaped(), "/a%2Fb");
        assert_eq!(slash.current(), "/a%2Fb");
        // A raw form that no longer spells the path is ignored, as Go's EscapedPath does.
        let stale = UrlPath {
            path: b"/x y".to_vec(),
            raw: "/other".into(),
        };
        assert_eq!(stale.escaped(), "/x%20y");
        assert_eq!(stale.current(), "/other");
        assert_eq!(UrlPath::parse("/a/./b").unwrap().sanitized(), None);
        assert_eq!(
            UrlPath::parse("/a/b/").unwrap().sanitized(),
            Some(UrlPath::parse("/a/b/").unwrap())
        );
        assert_eq!(
            UrlPath::parse("").unwrap().sanitized(),
            Some(UrlPath::parse("").unwrap())
        );
    }

    #[test]
    fn encoded_prefix() {
        assert_eq!(encoded_prefix_len("/ap%69/a%2Fb", 5), 7);
        assert_eq!(encoded_prefix_len("/stat/a", 5), 5);
        assert_eq!(encoded_prefix_len("/a", 5), 2);
    }
}
