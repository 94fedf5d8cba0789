//! A route's matcher as one line of text, for operators (the admin API and logs).
//!
//! For: rendering a matcher tree in Traefik v3's rule syntax — ``Host(`a.example`) &&
//! PathPrefix(`/api`)`` — so an operator reads what a route takes the way they wrote it. Berth's
//! own spellings where Traefik v3 has none: ``Host(`*.example.com`)`` for a wildcard,
//! ``PathSegmentPrefix(`/api`)`` for a whole-segment prefix, `true`/`false` for an empty
//! `all`/`any`. Values are quoted with backticks, or with double quotes (escaped) when they hold
//! one.
//! Not for: parsing (the dialects do, in the control plane); the text is never read back.

use std::fmt::Write;

use berth_proto::v1::{header_matcher, host_matcher, matcher, path_matcher, query_matcher, Matcher};

/// The matcher in rule syntax.
pub(crate) fn render(matcher: &Matcher) -> String {
    let mut out = String::new();
    write_matcher(&mut out, matcher, Context::Top);
    out
}

/// Where a sub-expression sits, to know when it needs parentheses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Top,
    And,
    Or,
    Not,
}

fn write_matcher(out: &mut String, matcher: &Matcher, context: Context) {
    let Some(kind) = &matcher.kind else {
        out.push_str("<unknown>");
        return;
    };
    match kind {
        matcher::Kind::All(list) => write_list(out, &list.matchers, " && ", "true", Context::And, context),
        matcher::Kind::Any(list) => write_list(out, &list.matchers, " || ", "false", Context::Or, context),
        matcher::Kind::Not(inner) => {
            out.push('!');
            write_matcher(out, inner, Context::Not);
        }
        matcher::Kind::Host(h) => match &h.kind {
            Some(host_matcher::Kind::Exact(v)) => call(out, "Host", &[v]),
            Some(host_matcher::Kind::Wildcard(v)) => call(out, "Host", &[&format!("*.{v}")]),
            Some(host_matcher::Kind::Regexp(v)) => call(out, "HostRegexp", &[v]),
            None => out.push_str("Host(<unknown>)"),
        },
        matcher::Kind::Path(p) => match &p.kind {
            Some(path_matcher::Kind::Exact(v)) => call(out, "Path", &[v]),
            Some(path_matcher::Kind::Prefix(v)) => call(out, "PathPrefix", &[v]),
            Some(path_matcher::Kind::Regexp(v)) => call(out, "PathRegexp", &[v]),
            Some(path_matcher::Kind::SegmentPrefix(v)) => call(out, "PathSegmentPrefix", &[v]),
            None => out.push_str("Path(<unknown>)"),
        },
        matcher::Kind::Method(m) => call(out, "Method", &[m]),
        matcher::Kind::Header(h) => match &h.value {
            Some(header_matcher::Value::Exact(v)) => call(out, "Header", &[&h.name, v]),
            Some(header_matcher::Value::Regexp(v)) => call(out, "HeaderRegexp", &[&h.name, v]),
            None => call(out, "Header", &[&h.name]),
        },
        matcher::Kind::Query(q) => match &q.value {
            Some(query_matcher::Value::Exact(v)) => call(out, "Query", &[&q.name, v]),
            Some(query_matcher::Value::Regexp(v)) => call(out, "QueryRegexp", &[&q.name, v]),
            Some(query_matcher::Value::Present(_)) | None => call(out, "Query", &[&q.name]),
        },
        matcher::Kind::ClientIp(c) => {
            let ranges: Vec<&String> = c.ranges.iter().collect();
            call(out, "ClientIP", &ranges);
        }
    }
}

fn write_list(
    out: &mut String,
    members: &[Matcher],
    separator: &str,
    empty: &str,
    own: Context,
    context: Context,
) {
    match members {
        [] => out.push_str(empty),
        [only] => write_matcher(out, only, context),
        _ => {
            let parens = !(context == Context::Top || context == own);
            if parens {
                out.push('(');
            }
            for (i, m) in members.iter().enumerate() {
                if i > 0 {
                    out.push_str(separator);
                }
                write_matcher(out, m, own);
            }
            if parens {
                out.push(')');
            }
        }
    }
}

fn call<S: AsRef<str>>(out: &mut String, name: &str, args: &[S]) {
    out.push_str(name);
    out.push('(');
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        quote(out, arg.as_ref());
    }
    out.push(')');
}

fn quote(out: &mut String, value: &str) {
    if !value.contains('`') {
        let _ = write!(out, "`{value}`");
    } else {
        out.push('"');
        for c in value.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{
        ClientIpMatcher, HeaderMatcher, HostMatcher, MatcherList, PathMatcher, QueryMatcher,
    };

    fn m(kind: matcher::Kind) -> Matcher {
        Matcher { kind: Some(kind) }
    }
    fn host(h: &str) -> Matcher {
        m(matcher::Kind::Host(HostMatcher {
            kind: Some(host_matcher::Kind::Exact(h.into())),
        }))
    }
    fn prefix(p: &str) -> Matcher {
        m(matcher::Kind::Path(PathMatcher {
            kind: Some(path_matcher::Kind::Prefix(p.into())),
        }))
    }
    fn all(ms: Vec<Matcher>) -> Matcher {
        m(matcher::Kind::All(MatcherList { matchers: ms }))
    }
    fn any(ms: Vec<Matcher>) -> Matcher {
        m(matcher::Kind::Any(MatcherList { matchers: ms }))
    }

    #[test]
    fn rule_syntax() {
        assert_eq!(render(&host("a.example")), "Host(`a.example`)");
        assert_eq!(
            render(&all(vec![host("a.example"), prefix("/api")])),
            "Host(`a.example`) && PathPrefix(`/api`)"
        );
        assert_eq!(
            render(&all(vec![any(vec![host("a"), host("b")]), prefix("/x")])),
            "(Host(`a`) || Host(`b`)) && PathPrefix(`/x`)"
        );
        assert_eq!(
            render(&any(vec![all(vec![host("a"), prefix("/x")]), host("b")])),
            "(Host(`a`) && PathPrefix(`/x`)) || Host(`b`)"
        );
        assert_eq!(
            render(&m(matcher::Kind::Not(Box::new(any(vec![host("a"), host("b")]))))),
            "!(Host(`a`) || Host(`b`))"
        );
        assert_eq!(render(&all(vec![])), "true");
        assert_eq!(render(&any(vec![])), "false");
        assert_eq!(
            render(&m(matcher::Kind::Host(HostMatcher {
                kind: Some(host_matcher::Kind::Wildcard("example.com".into())),
            }))),
            "Host(`*.example.com`)"
        );
        assert_eq!(
            render(&m(matcher::Kind::Header(HeaderMatcher {
                name: "X-A".into(),
                value: Some(header_matcher::Value::Regexp("^v[0-9]$".into())),
            }))),
            "HeaderRegexp(`X-A`, `^v[0-9]$`)"
        );
        assert_eq!(
            render(&m(matcher::Kind::Query(QueryMatcher {
                name: "debug".into(),
                value: Some(query_matcher::Value::Present(true)),
            }))),
            "Query(`debug`)"
        );
        assert_eq!(
            render(&m(matcher::Kind::ClientIp(ClientIpMatcher {
                ranges: vec!["10.0.0.0/8".into(), "::1".into()],
            }))),
            "ClientIP(`10.0.0.0/8`, `::1`)"
        );
        assert_eq!(
            render(&m(matcher::Kind::Path(PathMatcher {
                kind: Some(path_matcher::Kind::Exact("/a`b\"".into())),
            }))),
            "Path(\"/a`b\\\"\")"
        );
    }
}
