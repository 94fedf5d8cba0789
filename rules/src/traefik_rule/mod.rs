//! Traefik's router rule grammar (`Host(`a`) && PathPrefix(`/api`)`), both syntaxes a router can
//! choose with `ruleSyntax`: v3 (Traefik 3's default) and v2. A rule becomes the route model's
//! [`Matcher`] tree, with the answers Traefik 3.7 gives for the same requests; a rule Traefik
//! rejects is rejected here with the byte position of the offending matcher or argument.
//!
//! | piece        | file           | what it follows in Traefik                                    |
//! |--------------|----------------|---------------------------------------------------------------|
//! | expression   | `syntax.rs`    | Go's expression parser as `vulcand/predicate` drives it        |
//! | v3 matchers  | `v3.rs`        | `pkg/muxer/http/matcher.go`                                    |
//! | v2 matchers  | `v2.rs`        | `pkg/muxer/http/matcher_v2.go` and gorilla/mux templates (`template.rs`) |
//! | regexps      | `go_regexp.rs` | Go's `regexp/syntax`, rewritten as equivalent Rust patterns    |
//! | rule text    | `render.rs`    | a canonical v3 rule for a matcher tree                         |
//!
//! How the tree maps the text: `&&` chains become `all`, `||` chains become `any`, `!` becomes
//! `not`; parentheses that group a list keep it as a nested list, so a tree prints back as the
//! same structure ([`render`]). `&&` binds tighter than `||`; matcher names may be written as
//! Traefik allows (`PathPrefix`, `pathprefix`, `PATHPREFIX`, `Pathprefix`).
//!
//! Traefik behaviours kept, that may surprise: v3 `Query(`k`)` matches `?k` and `?k=` but not
//! `?k=v` (Traefik compares the value with ""; it is not a presence test, v2 `Query(`k=`)` is);
//! a v3 `HostRegexp` whose pattern matches the empty string takes every request (Traefik also
//! tries it on the CNAME-flattened host, which is empty by default); v3 `Host(`*.a.com`)` matches
//! exactly one label before `.a.com`; v2 `HostRegexp(`(example.com`)` is literal text.
//!
//! Where Berth differs from Traefik on purpose (each is rejected with a reason, never routed
//! differently, unless said otherwise):
//! - strings whose escapes are not UTF-8, nesting deeper than 100 (expression) or 32 (matcher
//!   tree; the proxy's protobuf decoder has a recursion limit), and a few regexp constructs (see
//!   `go_regexp.rs`);
//! - v2 `Query` with an empty parameter name, a variable in the name, or `^` / `\A` in a
//!   variable's pattern;
//! - not rejected, but routed as the proxy sees requests: hosts are compared without a trailing
//!   dot (Traefik's v2 `HostRegexp` and v3 `HostRegexp` see it), paths as the proxy presents
//!   them (Traefik decodes percent-encoded unreserved characters first), and v2 `Query(`k=v`)`
//!   is satisfied by any value of `k` (gorilla/mux looks at the first value only).
//!
//! Tests: Traefik's own tables (`traefik_tables.rs`), verdicts and regexp answers recorded from
//! Go (`go_parity.rs`), property tests (`proptests.rs`), and a smoke run of the fuzz target
//! (`smoke.rs`; the target itself is `rules/fuzz`).
//!
//! Not for: tags, routers, priorities between routes or middlewares (the dialect modules), or
//! matching requests (the proxy).

mod go_regexp;
mod matchers;
mod render;
mod syntax;
mod template;
mod v2;
mod v3;

#[cfg(test)]
mod go_parity;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod smoke;
#[cfg(test)]
mod traefik_tables;

use berth_proto::v1::Matcher;

pub use render::render;

/// Which of Traefik's two rule grammars a rule is written in (`ruleSyntax` on a router, or the
/// `core.defaultRuleSyntax` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuleSyntax {
    /// Traefik 3's grammar: one value per matcher, Go regular expressions.
    #[default]
    V3,
    /// Traefik 2's grammar: several values per matcher (any of them), gorilla/mux templates.
    V2,
}

/// Parses a router rule into the route model's matcher tree.
pub fn parse(rule: &str, syntax: RuleSyntax) -> Result<Matcher, RuleError> {
    let expr = syntax::parse(rule)?;
    matchers::build(&expr, syntax)
}

/// Traefik's default router priority for a rule: the rule's length in bytes (Go's `len`, as
/// `GetRulePriority` in `pkg/muxer/http/mux.go` computes it, on the rule exactly as written).
pub fn default_priority(rule: &str) -> i64 {
    i64::try_from(rule.len()).unwrap_or(i64::MAX)
}

/// A rule that Traefik would not accept, or that Berth cannot route the same way.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
#[error("at position {position}: {kind}")]
pub struct RuleError {
    /// Byte offset in the rule (0-based) of the offending matcher, argument or character.
    pub position: usize,
    pub kind: RuleErrorKind,
}

/// What is wrong at [`RuleError::position`].
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RuleErrorKind {
    #[error("character {character:?} is not allowed in a rule")]
    IllegalCharacter { character: char },
    #[error("unexpected character {character:?}: a rule is matchers like Host(`a`) joined by &&, || and !")]
    UnexpectedCharacter { character: char },
    #[error("single quotes do not make a string; quote arguments with backquotes or double quotes")]
    SingleQuote,
    #[error("string is not terminated")]
    UnterminatedString,
    #[error("invalid escape {escape:?} in a double-quoted string")]
    InvalidEscape { escape: String },
    #[error("the escapes of this string do not make UTF-8 text")]
    NotUtf8,
    #[error("comment is not terminated")]
    UnterminatedComment,
    #[error(
        "a line break after a matcher, a string or `)` ends the rule; put && or || at the end of \
         the line instead"
    )]
    UnexpectedNewline,
    #[error("expected {expected}, found {found}")]
    Unexpected { found: String, expected: &'static str },
    #[error("expected a matcher, found the end of the rule")]
    EmptyOperand,
    #[error("`{name}` is not a matcher call; write {name}(`value`)")]
    NotACall { name: String },
    #[error("a string where a matcher was expected")]
    StringNotMatcher,
    #[error("the arguments of {matcher} must be quoted strings (`...` or \"...\")")]
    ArgumentNotString { matcher: String },
    #[error("the rule nests more than {limit} levels deep")]
    TooDeep { limit: usize },
    #[error("unknown matcher {name} in rule syntax {syntax}")]
    UnknownMatcher { name: String, syntax: &'static str },
    #[error("{matcher} has no arguments")]
    NoArguments { matcher: String },
    #[error("argument {index} of {matcher} is empty")]
    EmptyArgument { matcher: String, index: usize },
    #[error("{matcher} takes {expected}, got {got}")]
    Arity {
        matcher: String,
        expected: &'static str,
        got: usize,
    },
    #[error("{matcher}: {value:?} has non-ASCII characters; write the host name in its punycode form")]
    NonAscii { matcher: String, value: String },
    #[error("{matcher}: path {value:?} does not start with /")]
    PathWithoutSlash { matcher: String, value: String },
    #[error("{matcher}: invalid regular expression {value:?}: {reason}")]
    InvalidRegexp {
        matcher: String,
        value: String,
        reason: String,
    },
    #[error("{matcher}: invalid template {value:?}: {reason}")]
    InvalidTemplate {
        matcher: String,
        value: String,
        reason: String,
    },
    #[error("{matcher}: {value:?} is neither an IP address nor a CIDR range")]
    InvalidClientIp { matcher: String, value: String },
    #[error("{matcher} takes name/value pairs, got {got} values")]
    OddPairs { matcher: String, got: usize },
    #[error("{matcher}: variable {name:?} is used twice")]
    DuplicateVariable { matcher: String, name: String },
    #[error("{matcher}: {reason}")]
    Unsupported { matcher: String, reason: &'static str },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_priority_is_the_length_in_bytes() {
        assert_eq!(default_priority("Host(`example.org`)"), 19);
        assert_eq!(default_priority("Host(`é.org`)"), 14);
        assert_eq!(default_priority(""), 0);
    }

    #[test]
    fn errors_name_position_matcher_and_argument() {
        let e = parse("Host(`a`) && Path(`css`)", RuleSyntax::V3).unwrap_err();
        assert_eq!(e.position, 18);
        assert_eq!(
            e.to_string(),
            "at position 18: Path: path \"css\" does not start with /"
        );
        let e = parse("Host(`a`) && Nope(`b`)", RuleSyntax::V3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "at position 13: unknown matcher Nope in rule syntax v3"
        );
        let e = parse("Header(`a`, ``)", RuleSyntax::V3).unwrap_err();
        assert_eq!(e.to_string(), "at position 12: argument 2 of Header is empty");
    }
}
