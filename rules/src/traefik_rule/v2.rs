//! Traefik's v2 matchers (`pkg/muxer/http/matcher_v2.go`, on gorilla/mux) as route-model
//! matchers. A matcher given several values takes a request matching any of them, except
//! `Headers`, `HeadersRegexp` and `Query`, whose name/value pairs must all match.
//!
//! | matcher                         | becomes                                                           |
//! |---------------------------------|-------------------------------------------------------------------|
//! | `Host(h, ...)`, `HostHeader`    | `host.exact` per value (ASCII, lower case, one trailing dot dropped) |
//! | `HostRegexp(t, ...)`            | a gorilla host template: `host.exact` without variables, else `host.regexp` `(?i)^...$` |
//! | `Path(t, ...)`                  | a path template: `path.exact` without variables, else `path.regexp` `^...$` |
//! | `PathPrefix(t, ...)`            | `path.prefix` without variables, else `path.regexp` `^...`        |
//! | `Method(m, ...)`                | `method`, upper-cased                                            |
//! | `Headers(k, v, ...)`            | `header.exact` per pair; a repeated name keeps its last value, as gorilla's map does |
//! | `HeadersRegexp(k, re, ...)`     | `header.regexp` per pair, unanchored                              |
//! | `Query(`k=v`, ...)`             | `query.exact`; `k=` is `query.present`; a template value `k={id:[0-9]+}` is `query.regexp` `^...$` |
//! | `ClientIP(ip, ...)`             | one `client_ip` with every range                                 |
//!
//! `Query` splits each argument at its first `=` and pairs the pieces up in order, as Traefik
//! does, so `Query(`a`, `b`)` means `a=b` and an odd number of pieces is an error. gorilla/mux
//! looks at the first value of a parameter only; the route model takes any value (a documented
//! difference). Rejected here though Traefik accepts them: a variable in a query parameter's
//! name, and `^` or `\A` in a query variable's pattern (gorilla applies it after `name=`, where
//! it can never match; the route model's regexp sees the value alone).
//!
//! Not for: the boolean structure (`matchers.rs`), template syntax (`template.rs`).

use std::collections::HashSet;

use berth_proto::v1::Matcher;

use super::matchers::{
    all_of, any_of, check_values, client_ip, client_ip_ranges, fail, go_to_upper, header_exact,
    header_regexp, host_exact, host_regexp, method, normalize_host, path_exact, path_prefix, path_regexp,
    query_exact, query_present, query_regexp, regexp, require_ascii, require_slash, resolve,
};
use super::syntax::{Arg, Call};
use super::{go_regexp, template, RuleError, RuleErrorKind};

pub(crate) const NAMES: &[&str] = &[
    "Host",
    "HostHeader",
    "HostRegexp",
    "ClientIP",
    "Path",
    "PathPrefix",
    "Method",
    "Headers",
    "HeadersRegexp",
    "Query",
];

pub(crate) fn build(call: &Call) -> Result<Matcher, RuleError> {
    let Some(name) = resolve(&call.name, NAMES) else {
        return Err(fail(
            call.position,
            RuleErrorKind::UnknownMatcher {
                name: call.name.clone(),
                syntax: "v2",
            },
        ));
    };
    check_values(call)?;
    let each = |f: &dyn Fn(&Arg) -> Result<Matcher, RuleError>| -> Result<Matcher, RuleError> {
        Ok(any_of(call.args.iter().map(f).collect::<Result<Vec<_>, _>>()?))
    };
    match name {
        "Host" | "HostHeader" => each(&|arg| {
            require_ascii(call, arg)?;
            Ok(host_exact(normalize_host(&arg.value)))
        }),
        "HostRegexp" => each(&|arg| {
            require_ascii(call, arg)?;
            let tpl = parse_template(call, arg, "[^.]+")?;
            if !tpl.has_variables() {
                // `(?i)^text$` on a host the proxy has already lower-cased.
                return Ok(host_exact(tpl.literal().to_ascii_lowercase()));
            }
            let (pattern, _) = regexp(call, arg, &tpl.go_regexp("(?i)^", "$"))?;
            Ok(host_regexp(pattern))
        }),
        "Path" | "PathPrefix" => each(&|arg| {
            require_slash(call, arg)?;
            let tpl = parse_template(call, arg, "[^/]+")?;
            let prefix = name == "PathPrefix";
            if !tpl.has_variables() {
                let text = tpl.literal();
                return Ok(if prefix {
                    path_prefix(text)
                } else {
                    path_exact(text)
                });
            }
            let (pattern, _) = regexp(call, arg, &tpl.go_regexp("^", if prefix { "" } else { "$" }))?;
            Ok(path_regexp(pattern))
        }),
        "Method" => each(&|arg| Ok(method(go_to_upper(&arg.value)))),
        "ClientIP" => Ok(client_ip(client_ip_ranges(call)?)),
        "Headers" | "HeadersRegexp" => headers(call, name == "HeadersRegexp"),
        "Query" => query(call),
        _ => Err(fail(
            call.position,
            RuleErrorKind::UnknownMatcher {
                name: call.name.clone(),
                syntax: "v2",
            },
        )),
    }
}

fn parse_template<'a>(
    call: &Call,
    arg: &'a Arg,
    default: &'a str,
) -> Result<template::Template<'a>, RuleError> {
    template::parse(&arg.value, default).map_err(|reason| {
        fail(
            arg.position,
            RuleErrorKind::InvalidTemplate {
                matcher: call.name.clone(),
                value: arg.value.clone(),
                reason,
            },
        )
    })
}

fn odd_pairs(call: &Call, got: usize) -> RuleError {
    fail(
        call.position,
        RuleErrorKind::OddPairs {
            matcher: call.name.clone(),
            got,
        },
    )
}

/// `Headers` and `HeadersRegexp`: name/value pairs, all of which must match.
fn headers(call: &Call, regexps: bool) -> Result<Matcher, RuleError> {
    if call.args.len() % 2 == 1 {
        return Err(odd_pairs(call, call.args.len()));
    }
    // gorilla/mux keeps the pairs in a map: a repeated name keeps its last value.
    let mut pairs: Vec<(String, Matcher)> = Vec::new();
    for pair in call.args.chunks(2) {
        let (name, value) = (&pair[0], &pair[1]);
        let matcher = if regexps {
            let (pattern, _) = regexp(call, value, &value.value)?;
            header_regexp(name.value.clone(), pattern)
        } else {
            header_exact(name.value.clone(), value.value.clone())
        };
        match pairs.iter_mut().find(|(n, _)| *n == name.value) {
            Some(slot) => slot.1 = matcher,
            None => pairs.push((name.value.clone(), matcher)),
        }
    }
    Ok(all_of(pairs.into_iter().map(|(_, m)| m).collect()))
}

/// `Query(`k=v`, ...)`, as Traefik splits and pairs the arguments for gorilla/mux.
fn query(call: &Call) -> Result<Matcher, RuleError> {
    let mut pieces: Vec<(&str, &Arg)> = Vec::new();
    for arg in &call.args {
        match arg.value.split_once('=') {
            Some((key, value)) => {
                pieces.push((key, arg));
                pieces.push((value, arg));
            }
            None => pieces.push((&arg.value, arg)),
        }
    }
    if pieces.len() % 2 == 1 {
        return Err(odd_pairs(call, pieces.len()));
    }
    let mut seen: HashSet<String> = HashSet::new();
    let mut matchers = Vec::new();
    for pair in pieces.chunks(2) {
        let arg = pair[1].1;
        let full = format!("{}={}", pair[0].0, pair[1].0);
        // gorilla/mux: the parameter name is the text before the first `=`.
        let (key, value) = full.split_once('=').unwrap_or((&full, ""));
        let unsupported = |reason: &'static str| {
            fail(
                arg.position,
                RuleErrorKind::Unsupported {
                    matcher: call.name.clone(),
                    reason,
                },
            )
        };
        if key.contains(['{', '}']) {
            return Err(unsupported(
                "a variable in a query parameter's name is not supported",
            ));
        }
        if key.is_empty() {
            return Err(unsupported(
                "a query parameter without a name is not supported (v3 rules cannot express it)",
            ));
        }
        let invalid_template = |reason: String| {
            fail(
                arg.position,
                RuleErrorKind::InvalidTemplate {
                    matcher: call.name.clone(),
                    value: full.clone(),
                    reason,
                },
            )
        };
        let tpl = template::parse(value, ".*").map_err(invalid_template)?;
        // gorilla/mux refuses a variable name another query template of the route already uses
        // (within one template, a repeated name is allowed).
        if let Some(name) = tpl.variable_names().find(|name| seen.contains(*name)) {
            return Err(fail(
                arg.position,
                RuleErrorKind::DuplicateVariable {
                    matcher: call.name.clone(),
                    name: name.to_string(),
                },
            ));
        }
        seen.extend(tpl.variable_names().map(str::to_string));
        if !tpl.has_variables() {
            matchers.push(if value.is_empty() {
                query_present(key.to_string())
            } else {
                query_exact(key.to_string(), value.to_string())
            });
            continue;
        }
        for pattern in tpl.patterns() {
            if go_regexp::parse(pattern).is_ok_and(|re| re.has_begin_assertion()) {
                return Err(unsupported(
                    "`^` or `\\A` in a query variable's pattern is not supported (gorilla/mux applies it \
                     after `name=`, where it never matches)",
                ));
            }
        }
        let go = tpl.go_regexp(&format!("^{}", go_regexp::quote_meta(&format!("{key}="))), "$");
        // Compile the whole `name=value` regexp as gorilla/mux does, then keep the value part.
        regexp(call, arg, &go)?;
        let (pattern, _) = regexp(call, arg, &tpl.go_regexp("^", "$"))?;
        matchers.push(query_regexp(key.to_string(), pattern));
    }
    Ok(all_of(matchers))
}

#[cfg(test)]
mod tests {
    use super::super::matchers::{all, any, client_ip};
    use super::super::{parse, RuleSyntax};
    use super::*;

    fn v2(rule: &str) -> Matcher {
        match parse(rule, RuleSyntax::V2) {
            Ok(m) => m,
            Err(e) => panic!("{rule:?}: {e}"),
        }
    }

    fn v2_err(rule: &str) -> RuleErrorKind {
        match parse(rule, RuleSyntax::V2) {
            Ok(m) => panic!("{rule:?} should fail, got {m:?}"),
            Err(e) => e.kind,
        }
    }

    #[test]
    fn several_values_are_alternatives() {
        assert_eq!(
            v2("Host(`a.com`, `B.com.`)"),
            any(vec![host_exact("a.com".into()), host_exact("b.com".into())])
        );
        assert_eq!(
            v2("Method(`get`,`POST`)"),
            any(vec![method("GET".into()), method("POST".into())])
        );
        assert_eq!(
            v2("ClientIP(`10.0.0.1`, `10.0.0.0/16`)"),
            client_ip(vec!["10.0.0.1".into(), "10.0.0.0/16".into()])
        );
    }

    #[test]
    fn templates() {
        assert_eq!(v2("HostRegexp(`Foo.bar.com`)"), host_exact("foo.bar.com".into()));
        assert_eq!(
            v2(r"HostRegexp(`{sub:[a-z]+}.example.com`)"),
            host_regexp(r"^(?P<v0>(?i-ms)[a-z]+)(?i-ms)\.example\.com$".into())
        );
        assert_eq!(
            v2("HostRegexp(`(example.com`)"),
            host_exact("(example.com".into())
        );
        assert_eq!(
            v2("Path(`/css{path:(/.*)?}`)"),
            path_regexp(r"^/css(?P<v0>(/.*)?)$".into())
        );
        assert_eq!(
            v2("PathPrefix(`/css-{name:[0-9]?}`)"),
            path_regexp(r"^/css\-(?P<v0>[0-9]?)".into())
        );
        assert_eq!(
            v2("Path(`/a`, `/b`)"),
            any(vec![path_exact("/a".into()), path_exact("/b".into())])
        );
        assert!(matches!(
            v2_err("HostRegexp(`{test`)"),
            RuleErrorKind::InvalidTemplate { .. }
        ));
        assert!(matches!(
            v2_err("Path(`/a}`)"),
            RuleErrorKind::InvalidTemplate { .. }
        ));
    }

    #[test]
    fn headers() {
        assert_eq!(
            v2("Headers(`A`, `1`, `B`, `2`, `A`, `3`)"),
            all(vec![
                header_exact("A".into(), "3".into()),
                header_exact("B".into(), "2".into())
            ])
        );
        assert!(matches!(v2_err("Headers(`A`)"), RuleErrorKind::OddPairs { .. }));
        assert!(matches!(
            v2_err("HeadersRegexp(`A`, `(`)"),
            RuleErrorKind::InvalidRegexp { .. }
        ));
    }

    #[test]
    fn queries() {
        assert_eq!(v2("Query(`foo=bar`)"), query_exact("foo".into(), "bar".into()));
        assert_eq!(v2("Query(`foo=b=ar`)"), query_exact("foo".into(), "b=ar".into()));
        assert_eq!(v2("Query(`foo=`)"), query_present("foo".into()));
        assert_eq!(v2("Query(`a`, `b`)"), query_exact("a".into(), "b".into()));
        assert_eq!(
            v2("Query(`foo=bar`, `bar=baz`)"),
            all(vec![
                query_exact("foo".into(), "bar".into()),
                query_exact("bar".into(), "baz".into())
            ])
        );
        assert_eq!(
            v2("Query(`id={id:[0-9]+}`)"),
            query_regexp("id".into(), "^(?P<v0>[0-9]+)$".into())
        );
        assert!(matches!(v2_err("Query(`titi`)"), RuleErrorKind::OddPairs { .. }));
        assert!(matches!(
            v2_err("Query(`titi={test`)"),
            RuleErrorKind::InvalidTemplate { .. }
        ));
        assert!(matches!(
            v2_err("Query(`a={x}`, `b={x}`)"),
            RuleErrorKind::DuplicateVariable { .. }
        ));
        assert_eq!(
            v2("Query(`a={x}{x}`)"),
            query_regexp("a".into(), "^(?P<v0>.*)(?P<v1>.*)$".into())
        );
        assert!(matches!(
            v2_err("Query(`{k}=v`)"),
            RuleErrorKind::Unsupported { .. }
        ));
        assert!(matches!(
            v2_err("Query(`k={v:^a}`)"),
            RuleErrorKind::Unsupported { .. }
        ));
    }
}
