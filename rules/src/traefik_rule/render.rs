//! A matcher tree written as a canonical v3 rule, for showing routes (the admin API) and for
//! checking the parser: a tree this crate's v3 parser produced prints as a rule that parses back
//! to the same tree.
//!
//! Lists of two or more print as `a && b` / `a || b`, a nested list in parentheses; `not` prints
//! as `!`. Strings are quoted with backquotes, or with Go double quotes and escapes when they hold
//! a backquote, a carriage return, NUL or a byte-order mark. Regexps are shown in Go syntax.
//!
//! Trees no v3 rule produces print as an equivalent rule rather than the same tree: an empty
//! `all` is `Host(`*`)` (everything), an empty `any` is `!Host(`*`)` (nothing), a one-element
//! list is its element, `host.wildcard` and `path.segment_prefix` become regexps,
//! `query.present` is `QueryRegexp(`k`, `^`)`, and a matcher with no kind set is `Unset()`, which
//! does not parse.
//!
//! Not for: v2 output or reproducing the rule a route was written with (keep the original text
//! for that).

use berth_proto::v1::{header_matcher, host_matcher, matcher, path_matcher, query_matcher, Matcher};

use super::go_regexp::{quote_meta, to_go_syntax};

/// A canonical v3 rule for `matcher`.
pub fn render(matcher: &Matcher) -> String {
    node(matcher).0
}

/// How tightly a piece of rule text binds: a list of `||`, a list of `&&`, or a single operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Or,
    And,
    Operand,
}

const EVERYTHING: &str = "Host(`*`)";
const NOTHING: &str = "!Host(`*`)";

fn node(m: &Matcher) -> (String, Level) {
    let Some(kind) = &m.kind else {
        return ("Unset()".into(), Level::Operand);
    };
    match kind {
        matcher::Kind::All(list) => join(&list.matchers, " && ", Level::And, EVERYTHING),
        matcher::Kind::Any(list) => join(&list.matchers, " || ", Level::Or, NOTHING),
        matcher::Kind::Not(inner) => {
            let (text, level) = node(inner);
            let text = if level == Level::Operand {
                format!("!{text}")
            } else {
                format!("!({text})")
            };
            (text, Level::Operand)
        }
        matcher::Kind::Method(m) => (call("Method", &[m]), Level::Operand),
        matcher::Kind::Host(h) => (host(h.kind.as_ref()), Level::Operand),
        matcher::Kind::Path(p) => (path(p.kind.as_ref()), Level::Operand),
        matcher::Kind::Header(h) => {
            let text = match &h.value {
                Some(header_matcher::Value::Exact(v)) if !v.is_empty() => call("Header", &[&h.name, v]),
                Some(header_matcher::Value::Exact(_)) => call("HeaderRegexp", &[&h.name, "^$"]),
                Some(header_matcher::Value::Regexp(r)) => call("HeaderRegexp", &[&h.name, &regexp(r)]),
                None => "Unset()".into(),
            };
            (text, Level::Operand)
        }
        matcher::Kind::Query(q) => {
            let text = match &q.value {
                Some(query_matcher::Value::Present(_)) => call("QueryRegexp", &[&q.name, "^"]),
                Some(query_matcher::Value::Exact(v)) if v.is_empty() => call("Query", &[&q.name]),
                Some(query_matcher::Value::Exact(v)) => call("Query", &[&q.name, v]),
                Some(query_matcher::Value::Regexp(r)) => call("QueryRegexp", &[&q.name, &regexp(r)]),
                None => "Unset()".into(),
            };
            (text, Level::Operand)
        }
        matcher::Kind::ClientIp(c) => match c.ranges.as_slice() {
            [] => (NOTHING.into(), Level::Operand),
            [one] => (call("ClientIP", &[one]), Level::Operand),
            many => {
                let parts: Vec<String> = many.iter().map(|r| call("ClientIP", &[r])).collect();
                (parts.join(" || "), Level::Or)
            }
        },
    }
}

fn join(children: &[Matcher], separator: &str, level: Level, empty: &str) -> (String, Level) {
    match children {
        [] => (empty.into(), Level::Operand),
        [one] => node(one),
        many => {
            let parts: Vec<String> = many
                .iter()
                .map(|child| {
                    let (text, child_level) = node(child);
                    if child_level == Level::Operand {
                        text
                    } else {
                        format!("({text})")
                    }
                })
                .collect();
            (parts.join(separator), level)
        }
    }
}

fn host(kind: Option<&host_matcher::Kind>) -> String {
    match kind {
        Some(host_matcher::Kind::Exact(h)) => {
            let plain = !h.is_empty()
                && h.is_ascii()
                && !h.bytes().any(|b| b.is_ascii_uppercase())
                && !h.starts_with('*')
                && !h.ends_with('.');
            if plain {
                call("Host", &[h])
            } else {
                call("HostRegexp", &[&format!("^{}$", quote_meta(h))])
            }
        }
        Some(host_matcher::Kind::Wildcard(suffix)) => {
            call("HostRegexp", &[&format!("^.*\\.{}$", quote_meta(suffix))])
        }
        Some(host_matcher::Kind::Regexp(r)) => call("HostRegexp", &[&regexp(r)]),
        None => "Unset()".into(),
    }
}

fn path(kind: Option<&path_matcher::Kind>) -> String {
    match kind {
        Some(path_matcher::Kind::Exact(p)) if p.starts_with('/') => call("Path", &[p]),
        Some(path_matcher::Kind::Exact(p)) => call("PathRegexp", &[&format!("^{}$", quote_meta(p))]),
        Some(path_matcher::Kind::Prefix(p)) if p.starts_with('/') => call("PathPrefix", &[p]),
        Some(path_matcher::Kind::Prefix(p)) => call("PathRegexp", &[&format!("^{}", quote_meta(p))]),
        Some(path_matcher::Kind::Regexp(r)) => call("PathRegexp", &[&regexp(r)]),
        Some(path_matcher::Kind::SegmentPrefix(p)) => {
            let base = p.trim_end_matches('/');
            call("PathRegexp", &[&format!("^{}(?:/|$)", quote_meta(base))])
        }
        None => "Unset()".into(),
    }
}

/// A route-model regexp in Go syntax; the empty pattern (every string) as `^`, since Traefik
/// refuses empty arguments.
fn regexp(rust: &str) -> String {
    if rust.is_empty() {
        "^".into()
    } else {
        to_go_syntax(rust)
    }
}

fn call(name: &str, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
    format!("{name}({})", args.join(", "))
}

/// A Go string literal for `s`: raw when Go would read it back unchanged, else interpreted.
pub(crate) fn quote(s: &str) -> String {
    if !s.contains(['`', '\r', '\0', '\u{FEFF}']) {
        return format!("`{s}`");
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{FEFF}' => out.push_str("\\ufeff"),
            c if (c as u32) < 0x20 || c == '\u{7F}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::super::matchers::*;
    use super::super::{parse, RuleSyntax};
    use super::*;

    fn round_trip(rule: &str) -> String {
        let m = parse(rule, RuleSyntax::V3).unwrap_or_else(|e| panic!("{rule:?}: {e}"));
        let text = render(&m);
        let again = parse(&text, RuleSyntax::V3).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(m, again, "{rule:?} -> {text:?}");
        text
    }

    #[test]
    fn canonical_text() {
        assert_eq!(
            round_trip("host(`A.com`)&&(PathPrefix(\"/api\")||!Method(`get`))"),
            "Host(`a.com`) && (PathPrefix(`/api`) || !Method(`GET`))"
        );
        assert_eq!(
            round_trip("Host(`a`) || Host(`b`) && Path(`/`)"),
            "Host(`a`) || (Host(`b`) && Path(`/`))"
        );
        assert_eq!(
            round_trip("(Host(`a`) && Host(`b`)) && Path(`/`)"),
            "(Host(`a`) && Host(`b`)) && Path(`/`)"
        );
        assert_eq!(round_trip("!!Host(`a`)"), "!!Host(`a`)");
        assert_eq!(
            round_trip("!(Host(`a`) || Host(`b`))"),
            "!(Host(`a`) || Host(`b`))"
        );
        assert_eq!(round_trip("Host(`*`)"), "Host(`*`)");
        assert_eq!(round_trip(r"PathRegexp(`\bx\d`)"), r"PathRegexp(`\bx[0-9]`)");
        assert_eq!(round_trip("Header(`X`, \"a`b\\r\")"), "Header(`X`, \"a`b\\r\")");
        assert_eq!(round_trip("Query(`k`)"), "Query(`k`)");
    }

    #[test]
    fn foreign_trees_print_as_equivalent_rules() {
        assert_eq!(render(&all(vec![])), "Host(`*`)");
        assert_eq!(render(&any(vec![])), "!Host(`*`)");
        assert_eq!(render(&Matcher { kind: None }), "Unset()");
        assert_eq!(render(&query_present("k".into())), "QueryRegexp(`k`, `^`)");
        assert_eq!(render(&host_exact("*.a".into())), r"HostRegexp(`^\*\.a$`)");
        assert_eq!(
            render(&client_ip(vec!["1.2.3.4".into(), "::1".into()])),
            "ClientIP(`1.2.3.4`) || ClientIP(`::1`)"
        );
        assert_eq!(
            render(&all(vec![
                client_ip(vec!["1.2.3.4".into(), "::1".into()]),
                method("GET".into())
            ])),
            "(ClientIP(`1.2.3.4`) || ClientIP(`::1`)) && Method(`GET`)"
        );
    }
}
