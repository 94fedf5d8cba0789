//! Traefik's v3 matchers (`pkg/muxer/http/matcher.go`) as route-model matchers.
//!
//! | matcher                  | arguments | becomes                                                        |
//! |--------------------------|-----------|----------------------------------------------------------------|
//! | `Host(h)`                | 1         | `host.exact` (lower case, one trailing dot dropped); `*` matches everything (`all` of nothing); `*.rest` matches one label then `.rest` (`host.regexp` `^[^.]*\.rest$`) |
//! | `HostRegexp(re)`         | 1, ASCII  | `host.regexp`, unanchored, case-sensitive on the lower-cased host; a pattern that matches the empty string matches every request (Traefik also tries it on the empty CNAME-flattened host) |
//! | `Path(p)`, `PathPrefix(p)` | 1, `/…` | `path.exact`, `path.prefix`                                    |
//! | `PathRegexp(re)`         | 1         | `path.regexp`, unanchored                                      |
//! | `Method(m)`              | 1         | `method`, upper-cased                                          |
//! | `Header(k, v)`           | 2         | `header.exact`                                                 |
//! | `HeaderRegexp(k, re)`    | 2         | `header.regexp`, unanchored                                    |
//! | `Query(k)`, `QueryRegexp(k)` | 1     | `query.exact` with the empty value: `?k` and `?k=` match, `?k=v` does not (Traefik compares the value with "") |
//! | `Query(k, v)`            | 2         | `query.exact`                                                  |
//! | `QueryRegexp(k, re)`     | 2         | `query.regexp`, unanchored                                     |
//! | `ClientIP(ip)`           | 1         | `client_ip` with one address or CIDR range                     |
//!
//! Every argument must be non-empty (Traefik's `CheckRule`). Not for: the boolean structure
//! (`matchers.rs`).

use berth_proto::v1::Matcher;

use super::go_regexp;
use super::matchers::{
    all, any, arity, check_values, client_ip, client_ip_ranges, fail, go_to_upper, header_exact,
    header_regexp, host_exact, host_regexp, method, normalize_host, path_exact, path_prefix, path_regexp,
    query_exact, query_regexp, regexp, require_ascii, require_slash, resolve,
};
use super::syntax::Call;
use super::{RuleError, RuleErrorKind};

pub(crate) const NAMES: &[&str] = &[
    "ClientIP",
    "Method",
    "Host",
    "HostRegexp",
    "Path",
    "PathRegexp",
    "PathPrefix",
    "Header",
    "HeaderRegexp",
    "Query",
    "QueryRegexp",
];

pub(crate) fn build(call: &Call) -> Result<Matcher, RuleError> {
    let Some(name) = resolve(&call.name, NAMES) else {
        return Err(fail(
            call.position,
            RuleErrorKind::UnknownMatcher {
                name: call.name.clone(),
                syntax: "v3",
            },
        ));
    };
    check_values(call)?;
    let args = &call.args;
    let value = |i: usize| args[i].value.clone();
    match name {
        "ClientIP" => {
            arity(call, &[1], "exactly 1 argument")?;
            Ok(client_ip(client_ip_ranges(call)?))
        }
        "Method" => {
            arity(call, &[1], "exactly 1 argument")?;
            Ok(method(go_to_upper(&args[0].value)))
        }
        "Host" => {
            arity(call, &[1], "exactly 1 argument")?;
            host(call)
        }
        "HostRegexp" => {
            arity(call, &[1], "exactly 1 argument")?;
            require_ascii(call, &args[0])?;
            let (pattern, compiled) = regexp(call, &args[0], &args[0].value)?;
            if compiled.is_match("") {
                // Traefik also tries the pattern on the CNAME-flattened host, which is empty
                // unless CNAME flattening is on: such a pattern takes every request.
                return Ok(all(Vec::new()));
            }
            Ok(host_regexp(pattern))
        }
        "Path" => {
            arity(call, &[1], "exactly 1 argument")?;
            require_slash(call, &args[0])?;
            Ok(path_exact(value(0)))
        }
        "PathPrefix" => {
            arity(call, &[1], "exactly 1 argument")?;
            require_slash(call, &args[0])?;
            Ok(path_prefix(value(0)))
        }
        "PathRegexp" => {
            arity(call, &[1], "exactly 1 argument")?;
            let (pattern, _) = regexp(call, &args[0], &args[0].value)?;
            Ok(path_regexp(pattern))
        }
        "Header" => {
            arity(call, &[2], "exactly 2 arguments (name, value)")?;
            Ok(header_exact(value(0), value(1)))
        }
        "HeaderRegexp" => {
            arity(call, &[2], "exactly 2 arguments (name, regexp)")?;
            let (pattern, _) = regexp(call, &args[1], &args[1].value)?;
            Ok(header_regexp(value(0), pattern))
        }
        "Query" => {
            arity(call, &[1, 2], "1 or 2 arguments (name, value)")?;
            Ok(query_exact(
                value(0),
                args.get(1).map(|a| a.value.clone()).unwrap_or_default(),
            ))
        }
        "QueryRegexp" => {
            arity(call, &[1, 2], "1 or 2 arguments (name, regexp)")?;
            match args.get(1) {
                None => Ok(query_exact(value(0), String::new())),
                Some(arg) => {
                    let (pattern, _) = regexp(call, arg, &arg.value)?;
                    Ok(query_regexp(value(0), pattern))
                }
            }
        }
        _ => Err(fail(
            call.position,
            RuleErrorKind::UnknownMatcher {
                name: call.name.clone(),
                syntax: "v3",
            },
        )),
    }
}

/// v3 `Host`: exact, everything, or one-label wildcard.
fn host(call: &Call) -> Result<Matcher, RuleError> {
    let arg = &call.args[0];
    if arg.value == "*" {
        return Ok(all(Vec::new()));
    }
    require_ascii(call, arg)?;
    let host = normalize_host(&arg.value);
    let Some(rest) = host.strip_prefix('*') else {
        return Ok(host_exact(host));
    };
    // Traefik replaces the request's first label with `*` and compares: `*` then a dot and the
    // rest, or `*` alone for a one-label host. Anything else after `*` never matches.
    if !rest.is_empty() && !rest.starts_with('.') {
        return Ok(any(Vec::new()));
    }
    Ok(host_regexp(format!("^[^.]*{}$", go_regexp::quote_meta(rest))))
}

#[cfg(test)]
mod tests {
    use super::super::{parse, RuleSyntax};
    use super::*;
    use crate::traefik_rule::matchers::query_exact;

    fn v3(rule: &str) -> Matcher {
        match parse(rule, RuleSyntax::V3) {
            Ok(m) => m,
            Err(e) => panic!("{rule:?}: {e}"),
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(v3("Host(`Example.COM.`)"), host_exact("example.com".into()));
        assert_eq!(v3("Host(`*`)"), all(vec![]));
        assert_eq!(
            v3("Host(`*.Example.com`)"),
            host_regexp(r"^[^.]*\.example\.com$".into())
        );
        assert_eq!(v3("Host(`*.`)"), host_regexp("^[^.]*$".into()));
        assert_eq!(v3("Host(`*x`)"), any(vec![]));
        assert_eq!(v3("Host(`a.*.com`)"), host_exact("a.*.com".into()));
    }

    #[test]
    fn host_regexps() {
        assert_eq!(
            v3(r"HostRegexp(`^[a-z]+\.com$`)"),
            host_regexp(r"^[a-z]+\.com$".into())
        );
        assert_eq!(v3("HostRegexp(`^$`)"), all(vec![]));
        assert_eq!(v3("HostRegexp(`.*`)"), all(vec![]));
        assert_eq!(
            v3(r"HostRegexp(`{domain:[a-zA-Z-]+\.com}`)"),
            host_regexp(r"\{domain:[a-zA-Z\-]+\.com\}".into())
        );
    }

    #[test]
    fn queries() {
        assert_eq!(v3("Query(`mobile`)"), query_exact("mobile".into(), String::new()));
        assert_eq!(
            v3("QueryRegexp(`mobile`)"),
            query_exact("mobile".into(), String::new())
        );
        assert_eq!(
            v3("Query(`q`, `traefik`)"),
            query_exact("q".into(), "traefik".into())
        );
        assert_eq!(
            v3("QueryRegexp(`q`, `^a`)"),
            query_regexp("q".into(), "^a".into())
        );
    }

    #[test]
    fn methods_are_upper_cased() {
        assert_eq!(v3("Method(`get`)"), method("GET".into()));
    }
}
