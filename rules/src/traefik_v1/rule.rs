//! Traefik v1 frontend rules, `Matcher:value[,value...]` joined by `;`, into a matcher tree and
//! the path modifiers some matchers carry (`PathPrefixStrip:/api` matches `/api...` and strips
//! `/api`).
//!
//! Semantics are Traefik v1's (gorilla/mux underneath): `;` joins matchers that must all match;
//! the values of one matcher are alternatives (`Host:a,b` takes either host), except `Headers`,
//! `HeadersRegexp` and `Query`, whose values are pairs that must all match. `{name}` and
//! `{name:regexp}` in `Host​Regexp`, `Path*` and `Query` values are mux templates: a host
//! variable matches `[^.]+` by default, a path variable `[^/]+`, a query variable `.*`. A plain
//! `PathPrefix` is a plain string prefix (`/api` takes `/apis`), as in v1.
//!
//! Matcher names are accepted in any case (v1 wanted them exact). Positions in errors are byte
//! offsets in the rule.
//!
//! Not for: frontend options other than the rule (see `frontend`).

use berth_proto::v1::{
    middleware::Kind, AddPrefix, Matcher, Middleware, ReplacePath, ReplacePathRegex, StripPrefix,
    StripPrefixRegex,
};

use crate::construct::{self, middleware};

/// A parsed rule: what it matches, and the path modifiers it carries, in the order Traefik v1
/// applies them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    pub matcher: Matcher,
    pub modifiers: Vec<Middleware>,
}

/// Why a rule does not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub(crate) struct RuleError {
    /// Byte offset in the rule.
    pub position: usize,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Problem {
    #[error("rule is empty")]
    Empty,
    #[error("{part:?} is not of the form Matcher:value")]
    NotAMatcher { part: String },
    #[error(
        "unknown matcher {matcher:?} (Traefik v1 has Host, HostRegexp, Path, PathStrip, PathStripRegex, PathPrefix, PathPrefixStrip, PathPrefixStripRegex, Method, Headers, HeadersRegexp, Query, AddPrefix, ReplacePath, ReplacePathRegex)"
    )]
    UnknownMatcher { matcher: String },
    #[error("{matcher}: needs at least one value")]
    NoValue { matcher: &'static str },
    #[error("{matcher}: {host:?} is not a valid host name: {reason}")]
    BadHost {
        matcher: &'static str,
        host: String,
        reason: String,
    },
    #[error("{matcher}: path {path:?} must start with '/'")]
    BadPath { matcher: &'static str, path: String },
    #[error("{matcher}: {problem}")]
    Template { matcher: &'static str, problem: String },
    #[error("{matcher}: {problem}")]
    BadRegexp { matcher: &'static str, problem: String },
    #[error("{matcher}: values are name,value pairs and {count} values were given")]
    OddPairs { matcher: &'static str, count: usize },
    #[error("Query: {value:?} is not of the form name=value")]
    BadQuery { value: String },
    #[error("{matcher}: {{...}} templates cannot be stripped literally; use {matcher}Regex")]
    TemplateStrip { matcher: &'static str },
    #[error("ReplacePathRegex: {value:?} is not a regexp and a replacement separated by one space")]
    BadReplacePathRegex { value: String },
    #[error("{matcher}: {value:?} is not an HTTP method")]
    BadMethod { matcher: &'static str, value: String },
}

/// The matchers Traefik v1 knows, by canonical name.
const MATCHERS: &[&str] = &[
    "Host",
    "HostRegexp",
    "Path",
    "PathStrip",
    "PathStripRegex",
    "PathPrefix",
    "PathPrefixStrip",
    "PathPrefixStripRegex",
    "Method",
    "Headers",
    "HeadersRegexp",
    "AddPrefix",
    "ReplacePath",
    "ReplacePathRegex",
    "Query",
];

/// What a template is matched against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Host,
    Path,
    Query,
}

/// Path modifiers collected from a rule, applied in Traefik v1's order.
#[derive(Default)]
struct Modifiers {
    strip_regex: Vec<String>,
    strip: Vec<String>,
    add_prefix: Option<String>,
    replace_regex: Option<(String, String)>,
    replace: Option<String>,
}

/// Parses a Traefik v1 rule such as `Host:a.example,b.example;PathPrefixStrip:/api`.
pub(crate) fn parse(rule: &str) -> Result<Rule, RuleError> {
    if rule.trim().is_empty() {
        return Err(RuleError {
            position: 0,
            problem: Problem::Empty,
        });
    }
    let mut matchers = Vec::new();
    let mut modifiers = Modifiers::default();
    let mut offset = 0;
    for part in rule.split(';') {
        let start = offset;
        offset += part.len() + 1;
        if part.is_empty() {
            continue;
        }
        let lead = part.len() - part.trim_start().len();
        let at = |extra: usize| start + lead + extra;
        let Some((name, args)) = part.split_once(':') else {
            return Err(RuleError {
                position: at(0),
                problem: Problem::NotAMatcher {
                    part: part.trim().to_string(),
                },
            });
        };
        let Some(canonical) = MATCHERS
            .iter()
            .copied()
            .find(|m| m.eq_ignore_ascii_case(name.trim()))
        else {
            return Err(RuleError {
                position: at(0),
                problem: Problem::UnknownMatcher {
                    matcher: name.trim().to_string(),
                },
            });
        };
        let args_at = start + name.len() + 1;
        // v1 splits the matcher on every ':' and joins the non-empty pieces again.
        let joined: String = args
            .split(':')
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(":");
        let values: Vec<String> = joined
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        let fail = |problem: Problem| RuleError {
            position: args_at,
            problem,
        };
        if values.is_empty() {
            return Err(RuleError {
                position: at(0),
                problem: Problem::NoValue { matcher: canonical },
            });
        }
        match canonical {
            "Host" => {
                let mut hosts = Vec::new();
                for value in &values {
                    let host = berth_model::normalize_host(value).map_err(|e| {
                        fail(Problem::BadHost {
                            matcher: canonical,
                            host: value.clone(),
                            reason: e.problem.to_string(),
                        })
                    })?;
                    if !hosts.contains(&host) {
                        hosts.push(host);
                    }
                }
                hosts.sort();
                matchers.push(construct::any(
                    hosts.iter().map(|h| construct::host_exact(h)).collect(),
                ));
            }
            "HostRegexp" => {
                let regexps = values
                    .iter()
                    .map(|v| {
                        template(v, Target::Host, false).map_err(|p| fail(template_problem(canonical, p)))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                matchers.push(construct::any(
                    regexps.iter().map(|r| construct::host_regexp(r)).collect(),
                ));
            }
            "Path"
            | "PathStrip"
            | "PathStripRegex"
            | "PathPrefix"
            | "PathPrefixStrip"
            | "PathPrefixStripRegex" => {
                let prefix = canonical.starts_with("PathPrefix");
                let mut alternatives = Vec::new();
                for value in &values {
                    if !value.starts_with('/') {
                        return Err(fail(Problem::BadPath {
                            matcher: canonical,
                            path: value.clone(),
                        }));
                    }
                    let templated = value.contains('{');
                    if templated && (canonical == "PathStrip" || canonical == "PathPrefixStrip") {
                        return Err(fail(Problem::TemplateStrip { matcher: canonical }));
                    }
                    alternatives.push(match (templated, prefix) {
                        (false, false) => construct::path_exact(value),
                        (false, true) => construct::path_prefix(value),
                        (true, _) => construct::path_regexp(
                            &template(value, Target::Path, prefix)
                                .map_err(|p| fail(template_problem(canonical, p)))?,
                        ),
                    });
                }
                matchers.push(construct::any(alternatives));
                // v1 strips the longest prefix first.
                let mut by_length = values.clone();
                by_length.sort_by_key(|v| std::cmp::Reverse(v.len()));
                if canonical.ends_with("StripRegex") {
                    for value in &by_length {
                        let regexp = template(value, Target::Path, true)
                            .map_err(|p| fail(template_problem(canonical, p)))?;
                        modifiers.strip_regex.push(regexp);
                    }
                } else if canonical.ends_with("Strip") {
                    modifiers.strip.extend(by_length);
                }
            }
            "Method" => {
                let mut methods = Vec::new();
                for value in &values {
                    if !value
                        .bytes()
                        .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_')
                    {
                        return Err(fail(Problem::BadMethod {
                            matcher: canonical,
                            value: value.clone(),
                        }));
                    }
                    methods.push(construct::method(&value.to_ascii_uppercase()));
                }
                matchers.push(construct::any(methods));
            }
            "Headers" | "HeadersRegexp" => {
                if !values.len().is_multiple_of(2) {
                    return Err(fail(Problem::OddPairs {
                        matcher: canonical,
                        count: values.len(),
                    }));
                }
                let mut pairs = Vec::new();
                for pair in values.chunks(2) {
                    let (name, value) = (&pair[0], &pair[1]);
                    if crate::values::header_name(name).is_err() {
                        return Err(fail(Problem::BadRegexp {
                            matcher: canonical,
                            problem: format!("{name:?} is not a header name"),
                        }));
                    }
                    pairs.push(if canonical == "Headers" {
                        construct::header_exact(name, value)
                    } else {
                        berth_model::compile_regex(value).map_err(|e| {
                            fail(Problem::BadRegexp {
                                matcher: canonical,
                                problem: e.to_string(),
                            })
                        })?;
                        construct::header_regexp(name, value)
                    });
                }
                matchers.push(construct::all(pairs));
            }
            "Query" => {
                let mut pairs = Vec::new();
                for value in &values {
                    let parts: Vec<&str> = value.split('=').collect();
                    let [name, wanted] = parts.as_slice() else {
                        return Err(fail(Problem::BadQuery { value: value.clone() }));
                    };
                    if name.is_empty() || name.contains('{') {
                        return Err(fail(Problem::BadQuery { value: value.clone() }));
                    }
                    pairs.push(if wanted.is_empty() {
                        construct::query_present(name)
                    } else if wanted.contains('{') {
                        construct::query_regexp(
                            name,
                            &template(wanted, Target::Query, false)
                                .map_err(|p| fail(template_problem(canonical, p)))?,
                        )
                    } else {
                        construct::query_exact(name, wanted)
                    });
                }
                matchers.push(construct::all(pairs));
            }
            "AddPrefix" => modifiers.add_prefix = values.last().cloned(),
            "ReplacePath" => modifiers.replace = values.last().cloned(),
            "ReplacePathRegex" => {
                let Some(value) = values.last() else { continue };
                let parts: Vec<&str> = value.split(' ').collect();
                let [regexp, replacement] = parts.as_slice() else {
                    return Err(fail(Problem::BadReplacePathRegex { value: value.clone() }));
                };
                berth_model::compile_regex(regexp).map_err(|e| {
                    fail(Problem::BadRegexp {
                        matcher: canonical,
                        problem: e.to_string(),
                    })
                })?;
                modifiers.replace_regex = Some((regexp.to_string(), replacement.to_string()));
            }
            _ => {}
        }
    }
    Ok(Rule {
        matcher: construct::all(matchers),
        modifiers: modifiers.build(),
    })
}

impl Modifiers {
    fn build(self) -> Vec<Middleware> {
        const NAME: &str = "frontend.rule";
        let mut out = Vec::new();
        if !self.strip_regex.is_empty() {
            out.push(middleware(
                NAME,
                Kind::StripPrefixRegex(StripPrefixRegex {
                    regexps: self.strip_regex,
                }),
            ));
        }
        if !self.strip.is_empty() {
            out.push(middleware(
                NAME,
                Kind::StripPrefix(StripPrefix {
                    prefixes: self.strip,
                    force_slash: true,
                }),
            ));
        }
        if let Some(prefix) = self.add_prefix {
            out.push(middleware(NAME, Kind::AddPrefix(AddPrefix { prefix })));
        }
        if let Some((regexp, replacement)) = self.replace_regex {
            out.push(middleware(
                NAME,
                Kind::ReplacePathRegex(ReplacePathRegex { regexp, replacement }),
            ));
        }
        if let Some(path) = self.replace {
            out.push(middleware(NAME, Kind::ReplacePath(ReplacePath { path })));
        }
        out
    }
}

fn template_problem(matcher: &'static str, problem: String) -> Problem {
    Problem::Template { matcher, problem }
}

/// A mux template as a regexp: literal text escaped, `{name}` the target's default pattern,
/// `{name:pattern}` the pattern; anchored at the start, and at the end unless `prefix`. Host
/// templates match without regard to case.
fn template(tpl: &str, target: Target, prefix: bool) -> Result<String, String> {
    let default = match target {
        Target::Host => "[^.]+",
        Target::Path => "[^/]+",
        Target::Query => ".*",
    };
    let mut out = String::from(if target == Target::Host { "(?i)^" } else { "^" });
    let mut depth = 0usize;
    let mut literal_start = 0;
    let mut var_start = 0;
    for (i, c) in tpl.char_indices() {
        match c {
            '{' => {
                if depth == 0 {
                    out.push_str(&regex::escape(&tpl[literal_start..i]));
                    var_start = i + 1;
                }
                depth += 1;
            }
            '}' => {
                if depth == 0 {
                    return Err(format!("unbalanced braces in {tpl:?}"));
                }
                depth -= 1;
                if depth == 0 {
                    let inner = &tpl[var_start..i];
                    let (name, pattern) = match inner.split_once(':') {
                        Some((name, pattern)) => (name, pattern),
                        None => (inner, default),
                    };
                    if name.is_empty() || pattern.is_empty() {
                        return Err(format!("missing name or pattern in {{{inner}}}"));
                    }
                    berth_model::compile_regex(&format!("^{pattern}$")).map_err(|e| e.to_string())?;
                    out.push_str(&format!("(?:{pattern})"));
                    literal_start = i + 1;
                }
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced braces in {tpl:?}"));
    }
    out.push_str(&regex::escape(&tpl[literal_start..]));
    if !prefix {
        out.push('$');
    }
    berth_model::compile_regex(&out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::construct::*;

    fn ok(rule: &str) -> Rule {
        parse(rule).unwrap_or_else(|e| panic!("{rule}: {e}"))
    }

    #[test]
    fn matchers_table() {
        let table: Vec<(&str, Matcher)> = vec![
            (
                "Host:go.traefix.example.localhost",
                host_exact("go.traefix.example.localhost"),
            ),
            (
                "Host:B.example, a.example,b.example",
                any(vec![host_exact("a.example"), host_exact("b.example")]),
            ),
            ("host:a.example", host_exact("a.example")),
            (
                "HostRegexp:{sub:[a-z]+}.example.com",
                host_regexp(r"(?i)^(?:[a-z]+)\.example\.com$"),
            ),
            (
                "HostRegexp:{sub}.example.com",
                host_regexp(r"(?i)^(?:[^.]+)\.example\.com$"),
            ),
            ("Path:/a", path_exact("/a")),
            ("Path:/a,/b", any(vec![path_exact("/a"), path_exact("/b")])),
            ("Path:/item/{id:[0-9]+}", path_regexp("^/item/(?:[0-9]+)$")),
            ("PathPrefix:/api", path_prefix("/api")),
            ("PathPrefix:/user/{name}", path_regexp("^/user/(?:[^/]+)")),
            ("Method:get,POST", any(vec![method("GET"), method("POST")])),
            (
                "Headers:Content-Type,application/json",
                header_exact("Content-Type", "application/json"),
            ),
            (
                "Headers:X-A,1,X-B,2",
                all(vec![header_exact("X-A", "1"), header_exact("X-B", "2")]),
            ),
            (
                "HeadersRegexp:Content-Type,application/(text|json)",
                header_regexp("Content-Type", "application/(text|json)"),
            ),
            ("Query:a=1", query_exact("a", "1")),
            ("Query:a=", query_present("a")),
            ("Query:id={id:[0-9]+}", query_regexp("id", "^(?:[0-9]+)$")),
            (
                "Host:a.example;PathPrefix:/api",
                all(vec![host_exact("a.example"), path_prefix("/api")]),
            ),
            (
                "Host:a.example;Host:b.example",
                all(vec![host_exact("a.example"), host_exact("b.example")]),
            ),
            ("Host:a.example;", host_exact("a.example")),
            ("Host:a.example:8080", host_exact("a.example:8080")),
        ];
        for (rule, expected) in table {
            if rule == "Host:a.example:8080" {
                assert!(parse(rule).is_err(), "a port is not part of a host");
                continue;
            }
            assert_eq!(ok(rule).matcher, expected, "{rule}");
        }
    }

    #[test]
    fn modifiers_in_v1_order() {
        let rule = ok("PathPrefixStrip:/api,/api/v1;AddPrefix:/x;ReplacePath:/y");
        assert_eq!(
            rule.matcher,
            any(vec![path_prefix("/api"), path_prefix("/api/v1")])
        );
        let kinds: Vec<Kind> = rule.modifiers.into_iter().filter_map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::StripPrefix(StripPrefix {
                    prefixes: vec!["/api/v1".into(), "/api".into()],
                    force_slash: true
                }),
                Kind::AddPrefix(AddPrefix { prefix: "/x".into() }),
                Kind::ReplacePath(ReplacePath { path: "/y".into() }),
            ]
        );
        let rule = ok("PathStrip:/a");
        assert_eq!(rule.matcher, path_exact("/a"));
        assert_eq!(rule.modifiers.len(), 1);
        let rule = ok("PathPrefixStripRegex:/user/{id:[0-9]+}");
        assert_eq!(rule.matcher, path_regexp("^/user/(?:[0-9]+)"));
        assert_eq!(
            rule.modifiers[0].kind,
            Some(Kind::StripPrefixRegex(StripPrefixRegex {
                regexps: vec!["^/user/(?:[0-9]+)".into()]
            }))
        );
        let rule = ok("Host:a;ReplacePathRegex:^/api/(.*) /$1");
        assert_eq!(
            rule.modifiers[0].kind,
            Some(Kind::ReplacePathRegex(ReplacePathRegex {
                regexp: "^/api/(.*)".into(),
                replacement: "/$1".into()
            }))
        );
        assert_eq!(
            ok("AddPrefix:/x").matcher,
            all(vec![]),
            "modifiers alone match everything"
        );
    }

    #[test]
    fn errors_with_positions() {
        let table: &[(&str, usize, &str)] = &[
            ("", 0, "empty"),
            ("Host:", 0, "at least one value"),
            ("Host: , ", 0, "at least one value"),
            ("Hots:a.example", 0, "unknown matcher \"Hots\""),
            ("Host:a.example;Bogus:x", 15, "unknown matcher"),
            ("a.example", 0, "not of the form"),
            ("Host:a.example; junk", 16, "not of the form"),
            ("Host:a_b..example", 5, "not a valid host name"),
            ("PathPrefix:api", 11, "must start with '/'"),
            ("Path:/a/{id", 5, "unbalanced braces"),
            ("Path:/a/{id:[}", 5, "does not compile"),
            ("Path:/a/{:x}", 5, "missing name"),
            ("Headers:X-A", 8, "pairs"),
            ("HeadersRegexp:X-A,(", 14, "does not compile"),
            ("Query:a", 6, "name=value"),
            ("PathPrefixStrip:/a/{id}", 16, "Regex"),
            ("ReplacePathRegex:onlyone", 17, "separated by one space"),
            ("Method:GET POST", 7, "not an HTTP method"),
        ];
        for (rule, position, text) in table {
            let err = parse(rule).expect_err(rule);
            assert_eq!(err.position, *position, "{rule}: {err}");
            assert!(err.to_string().contains(text), "{rule}: {err}");
        }
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::parse;

    /// One matcher that v1 accepts.
    fn part() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{1,10}(\\.[a-z]{1,5}){0,2}".prop_map(|h| format!("Host:{h}")),
            "(/[a-z0-9]{0,6}){1,3}".prop_map(|p| format!("PathPrefix:{p}")),
            "(/[a-z0-9]{1,6}){1,3}".prop_map(|p| format!("Path:{p},{p}/x")),
            prop_oneof![Just("GET"), Just("post"), Just("Put")].prop_map(|m| format!("Method:{m}")),
            "[A-Za-z][A-Za-z-]{0,8}".prop_map(|h| format!("Headers:{h},v")),
            "[a-z]{1,5}".prop_map(|q| format!("Query:{q}={q}")),
            "[a-z]{1,5}".prop_map(|p| format!("PathPrefixStrip:/{p}")),
            "[a-z]{1,5}".prop_map(|v| format!("HostRegexp:{{{v}:[a-z]+}}.example.com")),
        ]
    }

    proptest! {
        #[test]
        fn any_text_parses_or_fails_inside_the_rule(rule in "\\PC{0,80}") {
            if let Err(e) = parse(&rule) {
                prop_assert!(e.position <= rule.len(), "{} > {}", e.position, rule.len());
            }
        }

        #[test]
        fn rules_of_valid_matchers_parse(parts in prop::collection::vec(part(), 1..5)) {
            let rule = parts.join(";");
            prop_assert!(parse(&rule).is_ok(), "{rule}: {:?}", parse(&rule));
        }
    }
}
