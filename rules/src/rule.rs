//! Traefik v1 frontend rules: `Matcher:value[,value...]` joined by `;`.
//!
//! Berth routes by host, so a rule must have a `Host` matcher; it may add one `PathPrefix`.
//! Traefik's other v1 matchers are recognised and rejected with a message saying they are not
//! supported yet, so an operator learns why a route is missing instead of getting a silently
//! broader one.

/// A parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Lowercase, sorted, de-duplicated, non-empty.
    pub hosts: Vec<String>,
    /// `""` or starts with `/`.
    pub path_prefix: String,
}

/// Why a rule could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("rule is empty")]
    Empty,
    #[error("{part:?} is not of the form Matcher:value")]
    NotAMatcher { part: String },
    #[error("unknown matcher {matcher:?} (supported: Host, PathPrefix)")]
    UnknownMatcher { matcher: String },
    #[error("matcher {matcher:?} is not supported by Berth yet (supported: Host, PathPrefix)")]
    Unsupported { matcher: String },
    #[error("{matcher}: needs at least one value")]
    NoValue { matcher: &'static str },
    #[error("{host:?} is not a valid host name")]
    BadHost { host: String },
    #[error("path prefix {path:?} must start with '/'")]
    BadPath { path: String },
    #[error("only one path prefix per rule is supported (got {count})")]
    SeveralPaths { count: usize },
    #[error("{matcher} given twice")]
    Repeated { matcher: &'static str },
    #[error("rule has no Host matcher; Berth routes by host name")]
    NoHost,
}

const UNSUPPORTED: &[&str] = &[
    "HostRegexp",
    "Method",
    "Path",
    "PathStrip",
    "PathPrefixStrip",
    "Headers",
    "HeadersRegexp",
    "Query",
    "AddPrefix",
    "ReplacePath",
    "ReplacePathRegex",
];

/// Parses a Traefik v1 rule such as `Host:a.example,b.example;PathPrefix:/api`.
pub fn parse_rule(text: &str) -> Result<Rule, RuleError> {
    let mut hosts: Option<Vec<String>> = None;
    let mut path: Option<String> = None;
    if text.trim().is_empty() {
        return Err(RuleError::Empty);
    }
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (matcher, values) = part.split_once(':').ok_or_else(|| RuleError::NotAMatcher {
            part: part.to_string(),
        })?;
        let matcher = matcher.trim();
        let values: Vec<&str> = values
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if matcher.eq_ignore_ascii_case("Host") {
            if hosts.is_some() {
                return Err(RuleError::Repeated { matcher: "Host" });
            }
            if values.is_empty() {
                return Err(RuleError::NoValue { matcher: "Host" });
            }
            let mut list = Vec::with_capacity(values.len());
            for v in values {
                let host = v.to_ascii_lowercase();
                if !is_host_name(&host) {
                    return Err(RuleError::BadHost { host: v.to_string() });
                }
                list.push(host);
            }
            list.sort();
            list.dedup();
            hosts = Some(list);
        } else if matcher.eq_ignore_ascii_case("PathPrefix") {
            if path.is_some() {
                return Err(RuleError::Repeated {
                    matcher: "PathPrefix",
                });
            }
            match values.as_slice() {
                [] => {
                    return Err(RuleError::NoValue {
                        matcher: "PathPrefix",
                    })
                }
                [one] if one.starts_with('/') => path = Some(one.to_string()),
                [one] => {
                    return Err(RuleError::BadPath {
                        path: one.to_string(),
                    })
                }
                many => return Err(RuleError::SeveralPaths { count: many.len() }),
            }
        } else if let Some(known) = UNSUPPORTED.iter().find(|m| m.eq_ignore_ascii_case(matcher)) {
            return Err(RuleError::Unsupported {
                matcher: known.to_string(),
            });
        } else {
            return Err(RuleError::UnknownMatcher {
                matcher: matcher.to_string(),
            });
        }
    }
    let hosts = hosts.ok_or(RuleError::NoHost)?;
    Ok(Rule {
        hosts,
        path_prefix: path.unwrap_or_default(),
    })
}

/// A DNS host name: dot-separated labels of letters, digits and `-`, not starting or ending with
/// `-`, at most 253 characters. Lowercase is expected (callers lowercase first).
pub(crate) fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_lowercased_sorted_and_deduplicated() {
        let rule = parse_rule("Host:B.example, a.example,b.example").unwrap();
        assert_eq!(rule.hosts, vec!["a.example", "b.example"]);
        assert_eq!(rule.path_prefix, "");
    }

    #[test]
    fn host_and_path_prefix() {
        let rule = parse_rule("Host:a.example;PathPrefix:/api").unwrap();
        assert_eq!(rule.path_prefix, "/api");
        let rule = parse_rule("pathprefix:/v1; host:a.example").unwrap();
        assert_eq!(
            (rule.hosts[0].as_str(), rule.path_prefix.as_str()),
            ("a.example", "/v1")
        );
    }

    #[test]
    fn errors() {
        assert_eq!(parse_rule(""), Err(RuleError::Empty));
        assert_eq!(parse_rule("Host:"), Err(RuleError::NoValue { matcher: "Host" }));
        assert_eq!(
            parse_rule("Host: , "),
            Err(RuleError::NoValue { matcher: "Host" })
        );
        assert_eq!(
            parse_rule("Hots:a.example"),
            Err(RuleError::UnknownMatcher {
                matcher: "Hots".into()
            })
        );
        assert_eq!(
            parse_rule("Host:a.example;Method:GET"),
            Err(RuleError::Unsupported {
                matcher: "Method".into()
            })
        );
        assert_eq!(
            parse_rule("a.example"),
            Err(RuleError::NotAMatcher {
                part: "a.example".into()
            })
        );
        assert_eq!(
            parse_rule("Host:a_b.example"),
            Err(RuleError::BadHost {
                host: "a_b.example".into()
            })
        );
        assert_eq!(
            parse_rule("Host:a..example"),
            Err(RuleError::BadHost {
                host: "a..example".into()
            })
        );
        assert_eq!(parse_rule("PathPrefix:/x"), Err(RuleError::NoHost));
        assert_eq!(
            parse_rule("Host:a.example;PathPrefix:x"),
            Err(RuleError::BadPath { path: "x".into() })
        );
        assert_eq!(
            parse_rule("Host:a.example;PathPrefix:/x,/y"),
            Err(RuleError::SeveralPaths { count: 2 })
        );
        assert_eq!(
            parse_rule("Host:a.example;Host:b.example"),
            Err(RuleError::Repeated { matcher: "Host" })
        );
    }

    #[test]
    fn host_names() {
        assert!(is_host_name("go.traefix.example.localhost"));
        assert!(is_host_name("localhost"));
        assert!(is_host_name("a-1.b2"));
        assert!(!is_host_name("-a.example"));
        assert!(!is_host_name("a.example:80"));
        assert!(!is_host_name(""));
    }
}
