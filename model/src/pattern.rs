//! The one regular-expression dialect of the route model: how a regexp in a snapshot (a matcher,
//! a middleware) is compiled, so that what [`crate::validate`] accepts is exactly what the proxy
//! runs. Middlewares in the proxy compile their regexps with [`compile_regex`].
//!
//! The syntax is the `regex` crate's, as the contract says, with its default limits. Traefik's
//! regexps are Go's (RE2), which differ in places (`{` literals, ASCII `\d`, octal escapes...):
//! the Traefik dialect rewrites them into this syntax before they enter a snapshot. Matching is
//! unanchored (`is_match` finds the pattern anywhere, as Go's `MatchString`), so a writer anchors
//! with `^...$`.
//!
//! Not for: translating Go syntax (the dialect's), or templates.

/// A regexp that does not compile, with the reason in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("regexp {pattern:?} does not compile: {reason}")]
pub struct RegexError {
    /// The regexp as given.
    pub pattern: String,
    /// Why not, from the `regex` crate, on one line.
    pub reason: String,
}

/// Compiles a regexp over text (a host, a path in a middleware, a URL).
pub fn compile_regex(pattern: &str) -> Result<regex::Regex, RegexError> {
    regex::Regex::new(pattern).map_err(|e| error(pattern, &e))
}

/// Compiles a regexp over bytes (a routing path, a header value, a decoded query value: they may
/// hold bytes that are not UTF-8, which Go compares as they are). The pattern must also compile
/// over text, so the two forms accept the same patterns.
pub(crate) fn compile_bytes_regex(pattern: &str) -> Result<regex::bytes::Regex, RegexError> {
    compile_regex(pattern)?;
    regex::bytes::Regex::new(pattern).map_err(|e| error(pattern, &e))
}

/// The `regex` crate's error on one line: the "error: ..." line of a syntax error (its other
/// lines repeat the pattern and point at the column), or the whole text otherwise.
fn error(pattern: &str, e: &regex::Error) -> RegexError {
    let text = e.to_string();
    let reason = text
        .lines()
        .find_map(|line| line.strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "));
    RegexError {
        pattern: pattern.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_and_matches_unanchored() {
        let re = compile_regex("^/(css|js)").unwrap();
        assert!(re.is_match("/css/main.css"));
        assert!(!re.is_match("/html"));
        let re = compile_bytes_regex("a.c").unwrap();
        assert!(re.is_match(b"xxabcxx"));
    }

    #[test]
    fn syntax_errors_are_one_line() {
        let e = compile_regex("/(css").unwrap_err();
        assert_eq!(e.pattern, "/(css");
        assert_eq!(e.reason, "unclosed group");
        assert_eq!(
            e.to_string(),
            r#"regexp "/(css" does not compile: unclosed group"#
        );
        assert!(!compile_bytes_regex("(?<=a)b").unwrap_err().reason.contains('\n'));
    }

    #[test]
    fn huge_regexps_are_refused() {
        let e = compile_regex(r"\pL{1000}{100}").unwrap_err();
        assert!(!e.reason.contains('\n'), "{}", e.reason);
    }

    #[test]
    fn bytes_form_accepts_only_what_text_form_accepts() {
        assert!(compile_bytes_regex(r"(?-u:\xFF)").is_err());
    }
}
