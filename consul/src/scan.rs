//! Reading the two answers the watch reads on every catalog change without a JSON library's
//! general machinery.
//!
//! The service list (`/v1/catalog/services`, over a megabyte at 10,000 services) and the
//! summary (`/v1/internal/ui/services`) come again whole after every change, and most of what
//! they hold is the same as last time: the caller wants to find what moved, not to build values.
//! These are the small pieces both readers share: skipping whitespace, expecting a byte, finding
//! a string's extent (with `memchr`, a word at a time) and decoding it only when it holds
//! escapes. Every error is in serde_json's terms (the callers' error type) and says what was
//! expected at which byte.
//!
//! Not for: reading a value whole (serde_json does that), or checking every byte of a string that
//! is only hashed (Consul's encoder writes valid JSON; a string that is not would at worst
//! differ from itself, and the service's own read, with serde_json, would then say so).

use std::borrow::Cow;

/// A string of the answer: the bytes between its quotes, as written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Str<'a> {
    /// The bytes between the quotes, escapes and all.
    pub(crate) raw: &'a [u8],
    /// Whether `raw` holds a backslash (so it is not the text itself).
    pub(crate) escaped: bool,
    /// Where the string starts (its opening quote), for errors.
    at: usize,
}

impl<'a> Str<'a> {
    /// The text: borrowed when it holds no escape, decoded otherwise. Checks that it is UTF-8.
    pub(crate) fn text(&self, body: &'a [u8]) -> Result<Cow<'a, str>, serde_json::Error> {
        if !self.escaped {
            return std::str::from_utf8(self.raw)
                .map(Cow::Borrowed)
                .map_err(|_| unexpected(body, self.at, "a string of UTF-8 text"));
        }
        // With its quotes: the string as JSON, decoded by serde_json.
        let quoted = &body[self.at..self.at + self.raw.len() + 2];
        serde_json::from_slice::<String>(quoted).map(Cow::Owned)
    }
}

/// The string starting at `at` (its opening quote) and the position after its closing quote;
/// `wanted` names it in the error when there is none.
pub(crate) fn string<'a>(
    body: &'a [u8],
    at: usize,
    wanted: &str,
) -> Result<(Str<'a>, usize), serde_json::Error> {
    if body.get(at) != Some(&b'"') {
        return Err(unexpected(body, at, wanted));
    }
    let start = at + 1;
    let mut from = start;
    let mut escaped = false;
    while let Some(found) = body
        .get(from..)
        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
    {
        let end = from + found;
        if body[end] == b'"' {
            let raw = &body[start..end];
            return Ok((Str { raw, escaped, at }, end + 1));
        }
        // A backslash: the byte after it is part of the escape, even a quote.
        escaped = true;
        from = end + 2;
    }
    Err(unexpected(body, body.len(), "the end of a string"))
}

/// The position after `byte` at `at`; `wanted` names it in the error when it is not there.
pub(crate) fn expect(body: &[u8], at: usize, byte: u8, wanted: &str) -> Result<usize, serde_json::Error> {
    if body.get(at) == Some(&byte) {
        Ok(at + 1)
    } else {
        Err(unexpected(body, at, wanted))
    }
}

/// The first position from `at` that is not JSON whitespace.
pub(crate) fn skip_whitespace(body: &[u8], mut at: usize) -> usize {
    while body
        .get(at)
        .is_some_and(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
    {
        at += 1;
    }
    at
}

/// Whether `literal` (such as `null`) is at `at`.
pub(crate) fn is_at(body: &[u8], at: usize, literal: &[u8]) -> bool {
    body.get(at..).is_some_and(|rest| rest.starts_with(literal))
}

/// An error in serde_json's terms, saying what was expected at which byte.
pub(crate) fn unexpected(body: &[u8], at: usize, wanted: &str) -> serde_json::Error {
    let found = match body.get(at) {
        Some(b) => format!("{:?}", char::from(*b)),
        None => "the end of the answer".to_string(),
    };
    serde::de::Error::custom(format!("expected {wanted} at byte {at}, found {found}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_end_at_the_first_unescaped_quote() {
        let body = br#"  "plain" "a\"b\\" "\u00e9x" "open"#;
        let (plain, after) = string(body, 2, "a name").expect("a string");
        assert_eq!((plain.raw, plain.escaped, after), (&b"plain"[..], false, 9));
        assert_eq!(plain.text(body).expect("text"), "plain");
        let (quoted, after) = string(body, 10, "a name").expect("a string");
        assert_eq!((quoted.raw, quoted.escaped, after), (&br#"a\"b\\"#[..], true, 18));
        assert_eq!(quoted.text(body).expect("text"), r#"a"b\"#);
        let (unicode, after) = string(body, 19, "a name").expect("a string");
        assert_eq!(unicode.text(body).expect("text"), "éx");
        let error = string(body, after + 1, "a name").expect_err("never closed");
        assert!(error.to_string().contains("the end of a string"), "{error}");
        let error = string(body, 0, "a service's name").expect_err("not a string");
        assert!(
            error.to_string().contains("expected a service's name at byte 0"),
            "{error}"
        );
        // A backslash as the last byte, and bytes that are not UTF-8.
        assert!(string(br#""abc\"#, 0, "a").is_err());
        let (bad, _) = string(b"\"\xff\"", 0, "a").expect("its extent is found");
        assert!(bad.text(b"\"\xff\"").is_err());
    }

    #[test]
    fn whitespace_literals_and_expected_bytes() {
        let body = b" \n\t\r null:";
        assert_eq!(skip_whitespace(body, 0), 5);
        assert!(is_at(body, 5, b"null"));
        assert!(!is_at(body, 7, b"null"));
        assert_eq!(expect(body, 9, b':', "':'").expect("there"), 10);
        let error = expect(body, 10, b'}', "'}' at the end").expect_err("past the end");
        assert!(
            error.to_string().contains("found the end of the answer"),
            "{error}"
        );
    }
}
