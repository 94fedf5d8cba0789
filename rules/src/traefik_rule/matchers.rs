//! From a parsed rule to the route model: the boolean structure, and what the two syntaxes share
//! (how a matcher name may be spelled, Traefik's checks on arguments, regexps, client addresses,
//! and the constructors of [`Matcher`] values).
//!
//! Errors come in Traefik's order: first a matcher name that does not exist anywhere in the rule
//! (Traefik finds those while parsing), then each matcher's own checks, left to right.
//!
//! Not for: what each matcher means (`v3.rs`, `v2.rs`).

use std::net::IpAddr;

use berth_proto::v1::{
    header_matcher, host_matcher, matcher, path_matcher, query_matcher, ClientIpMatcher, HeaderMatcher,
    HostMatcher, Matcher, MatcherList, PathMatcher, QueryMatcher,
};

use super::syntax::{Arg, Call, Expr};
use super::{go_regexp, v2, v3, RuleError, RuleErrorKind, RuleSyntax};

/// Deepest matcher tree accepted. The proxy decodes routes with prost, whose recursion limit
/// is 100 nested messages; a list costs two (`Matcher`, `MatcherList`).
pub(crate) const MAX_DEPTH: usize = 32;

pub(crate) fn build(expr: &Expr, syntax: RuleSyntax) -> Result<Matcher, RuleError> {
    check_names(expr, syntax)?;
    build_at(expr, syntax).map(|(matcher, _)| matcher)
}

fn syntax_name(syntax: RuleSyntax) -> &'static str {
    match syntax {
        RuleSyntax::V3 => "v3",
        RuleSyntax::V2 => "v2",
    }
}

fn check_names(expr: &Expr, syntax: RuleSyntax) -> Result<(), RuleError> {
    match expr {
        Expr::And(operands) | Expr::Or(operands) => operands
            .iter()
            .try_for_each(|operand| check_names(operand, syntax)),
        Expr::Not { operand, .. } => check_names(operand, syntax),
        Expr::Call(call) => {
            let names = match syntax {
                RuleSyntax::V3 => v3::NAMES,
                RuleSyntax::V2 => v2::NAMES,
            };
            match resolve(&call.name, names) {
                Some(_) => Ok(()),
                None => Err(RuleError {
                    position: call.position,
                    kind: RuleErrorKind::UnknownMatcher {
                        name: call.name.clone(),
                        syntax: syntax_name(syntax),
                    },
                }),
            }
        }
    }
}

fn first_position(expr: &Expr) -> usize {
    match expr {
        Expr::And(operands) | Expr::Or(operands) => operands.first().map_or(0, first_position),
        Expr::Not { position, .. } => *position,
        Expr::Call(call) => call.position,
    }
}

/// The matcher and its depth.
fn build_at(expr: &Expr, syntax: RuleSyntax) -> Result<(Matcher, usize), RuleError> {
    let (matcher, depth) = match expr {
        Expr::And(operands) | Expr::Or(operands) => {
            let mut built = Vec::with_capacity(operands.len());
            let mut deepest = 0;
            for operand in operands {
                let (matcher, depth) = build_at(operand, syntax)?;
                deepest = deepest.max(depth);
                built.push(matcher);
            }
            let list = if matches!(expr, Expr::And(_)) {
                all(built)
            } else {
                any(built)
            };
            (list, deepest + 1)
        }
        Expr::Not { operand, .. } => {
            let (matcher, depth) = build_at(operand, syntax)?;
            (not(matcher), depth + 1)
        }
        Expr::Call(call) => {
            let matcher = match syntax {
                RuleSyntax::V3 => v3::build(call)?,
                RuleSyntax::V2 => v2::build(call)?,
            };
            let depth = depth_of(&matcher);
            (matcher, depth)
        }
    };
    if depth > MAX_DEPTH {
        return Err(RuleError {
            position: first_position(expr),
            kind: RuleErrorKind::TooDeep { limit: MAX_DEPTH },
        });
    }
    Ok((matcher, depth))
}

/// Depth of a matcher built from one call (at most a list of leaves).
fn depth_of(matcher: &Matcher) -> usize {
    match &matcher.kind {
        Some(matcher::Kind::All(list) | matcher::Kind::Any(list)) => {
            1 + list.matchers.iter().map(depth_of).max().unwrap_or(0)
        }
        Some(matcher::Kind::Not(inner)) => 1 + depth_of(inner),
        _ => 1,
    }
}

// ----------------------------------------------------------------------------------------------
// Names and arguments

/// The canonical name `written` stands for: Traefik registers each matcher under its name, in
/// lower case, in upper case and title-cased (`Pathprefix`).
pub(crate) fn resolve(written: &str, names: &[&'static str]) -> Option<&'static str> {
    names.iter().copied().find(|name| {
        let lower = name.to_ascii_lowercase();
        let title = {
            let mut chars = lower.chars();
            chars.next().map_or(String::new(), |c| {
                c.to_ascii_uppercase().to_string() + chars.as_str()
            })
        };
        written == *name || written == lower || written == name.to_ascii_uppercase() || written == title
    })
}

/// Traefik's `CheckRule`: at least one argument, none empty.
pub(crate) fn check_values(call: &Call) -> Result<(), RuleError> {
    if call.args.is_empty() {
        return Err(RuleError {
            position: call.position,
            kind: RuleErrorKind::NoArguments {
                matcher: call.name.clone(),
            },
        });
    }
    for (i, arg) in call.args.iter().enumerate() {
        if arg.value.is_empty() {
            return Err(RuleError {
                position: arg.position,
                kind: RuleErrorKind::EmptyArgument {
                    matcher: call.name.clone(),
                    index: i + 1,
                },
            });
        }
    }
    Ok(())
}

pub(crate) fn arity(call: &Call, allowed: &[usize], expected: &'static str) -> Result<(), RuleError> {
    if allowed.contains(&call.args.len()) {
        Ok(())
    } else {
        Err(RuleError {
            position: call.position,
            kind: RuleErrorKind::Arity {
                matcher: call.name.clone(),
                expected,
                got: call.args.len(),
            },
        })
    }
}

pub(crate) fn fail(position: usize, kind: RuleErrorKind) -> RuleError {
    RuleError { position, kind }
}

pub(crate) fn require_ascii(call: &Call, arg: &Arg) -> Result<(), RuleError> {
    if arg.value.is_ascii() {
        Ok(())
    } else {
        Err(fail(
            arg.position,
            RuleErrorKind::NonAscii {
                matcher: call.name.clone(),
                value: arg.value.clone(),
            },
        ))
    }
}

pub(crate) fn require_slash(call: &Call, arg: &Arg) -> Result<(), RuleError> {
    if arg.value.starts_with('/') {
        Ok(())
    } else {
        Err(fail(
            arg.position,
            RuleErrorKind::PathWithoutSlash {
                matcher: call.name.clone(),
                value: arg.value.clone(),
            },
        ))
    }
}

/// A Go pattern given in `arg`, as a Rust pattern that compiles.
pub(crate) fn regexp(call: &Call, arg: &Arg, go_pattern: &str) -> Result<(String, regex::Regex), RuleError> {
    let invalid = |reason: String| {
        fail(
            arg.position,
            RuleErrorKind::InvalidRegexp {
                matcher: call.name.clone(),
                value: arg.value.clone(),
                reason,
            },
        )
    };
    let rust = go_regexp::translate(go_pattern).map_err(|e| invalid(e.message))?;
    let compiled =
        compile(&rust).map_err(|e| invalid(format!("Berth's regexp engine cannot compile it: {e}")))?;
    Ok((rust, compiled))
}

/// Compiles a Rust pattern as the proxy will, returning the last line of the error if any.
pub(crate) fn compile(rust: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(rust).map_err(|e| {
        e.to_string()
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string()
    })
}

/// Go's `net.ParseIP` or `net.ParseCIDR` accepts it.
pub(crate) fn is_ip_or_cidr(s: &str) -> bool {
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    let Some((addr, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return false;
    };
    if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) || bits.len() > 7 {
        return false;
    }
    let max = if addr.is_ipv4() { 32 } else { 128 };
    bits.parse::<u32>().is_ok_and(|n| n <= max)
}

pub(crate) fn client_ip_ranges(call: &Call) -> Result<Vec<String>, RuleError> {
    call.args
        .iter()
        .map(|arg| {
            if is_ip_or_cidr(&arg.value) {
                Ok(arg.value.clone())
            } else {
                Err(fail(
                    arg.position,
                    RuleErrorKind::InvalidClientIp {
                        matcher: call.name.clone(),
                        value: arg.value.clone(),
                    },
                ))
            }
        })
        .collect()
}

/// Go's `strings.ToUpper`: each character's simple upper-case mapping (so `ß` stays `ß`, where
/// Rust's full mapping would give `SS`).
pub(crate) fn go_to_upper(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut upper = c.to_uppercase();
            match (upper.next(), upper.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// A host as Traefik lower-cases it, without one trailing dot: the proxy compares hosts without
/// their trailing dot, and Traefik's `Host(`a.`)` takes `a` and `a.` alike.
pub(crate) fn normalize_host(value: &str) -> String {
    let lower = value.to_ascii_lowercase();
    match lower.strip_suffix('.') {
        Some(stripped) => stripped.to_string(),
        None => lower,
    }
}

// ----------------------------------------------------------------------------------------------
// Constructors

fn of(kind: matcher::Kind) -> Matcher {
    Matcher { kind: Some(kind) }
}

pub(crate) fn all(matchers: Vec<Matcher>) -> Matcher {
    of(matcher::Kind::All(MatcherList { matchers }))
}

pub(crate) fn any(matchers: Vec<Matcher>) -> Matcher {
    of(matcher::Kind::Any(MatcherList { matchers }))
}

/// One matcher as itself, several as `all`.
pub(crate) fn all_of(mut matchers: Vec<Matcher>) -> Matcher {
    if matchers.len() == 1 {
        matchers.remove(0)
    } else {
        all(matchers)
    }
}

/// One matcher as itself, several as `any`.
pub(crate) fn any_of(mut matchers: Vec<Matcher>) -> Matcher {
    if matchers.len() == 1 {
        matchers.remove(0)
    } else {
        any(matchers)
    }
}

pub(crate) fn not(inner: Matcher) -> Matcher {
    of(matcher::Kind::Not(Box::new(inner)))
}

pub(crate) fn host_exact(host: String) -> Matcher {
    of(matcher::Kind::Host(HostMatcher {
        kind: Some(host_matcher::Kind::Exact(host)),
    }))
}

pub(crate) fn host_regexp(pattern: String) -> Matcher {
    of(matcher::Kind::Host(HostMatcher {
        kind: Some(host_matcher::Kind::Regexp(pattern)),
    }))
}

pub(crate) fn path_exact(path: String) -> Matcher {
    of(matcher::Kind::Path(PathMatcher {
        kind: Some(path_matcher::Kind::Exact(path)),
    }))
}

pub(crate) fn path_prefix(prefix: String) -> Matcher {
    of(matcher::Kind::Path(PathMatcher {
        kind: Some(path_matcher::Kind::Prefix(prefix)),
    }))
}

pub(crate) fn path_regexp(pattern: String) -> Matcher {
    of(matcher::Kind::Path(PathMatcher {
        kind: Some(path_matcher::Kind::Regexp(pattern)),
    }))
}

pub(crate) fn method(method: String) -> Matcher {
    of(matcher::Kind::Method(method))
}

pub(crate) fn header_exact(name: String, value: String) -> Matcher {
    of(matcher::Kind::Header(HeaderMatcher {
        name,
        value: Some(header_matcher::Value::Exact(value)),
    }))
}

pub(crate) fn header_regexp(name: String, pattern: String) -> Matcher {
    of(matcher::Kind::Header(HeaderMatcher {
        name,
        value: Some(header_matcher::Value::Regexp(pattern)),
    }))
}

pub(crate) fn query_exact(name: String, value: String) -> Matcher {
    of(matcher::Kind::Query(QueryMatcher {
        name,
        value: Some(query_matcher::Value::Exact(value)),
    }))
}

pub(crate) fn query_present(name: String) -> Matcher {
    of(matcher::Kind::Query(QueryMatcher {
        name,
        value: Some(query_matcher::Value::Present(true)),
    }))
}

pub(crate) fn query_regexp(name: String, pattern: String) -> Matcher {
    of(matcher::Kind::Query(QueryMatcher {
        name,
        value: Some(query_matcher::Value::Regexp(pattern)),
    }))
}

pub(crate) fn client_ip(ranges: Vec<String>) -> Matcher {
    of(matcher::Kind::ClientIp(ClientIpMatcher { ranges }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_spelled_as_traefik_registers_them() {
        let names = &["PathPrefix", "Path"];
        for written in ["PathPrefix", "pathprefix", "PATHPREFIX", "Pathprefix"] {
            assert_eq!(resolve(written, names), Some("PathPrefix"), "{written}");
        }
        for written in ["pathPrefix", "PathPREFIX", "Path_Prefix", "prefix"] {
            assert_eq!(resolve(written, names), None, "{written}");
        }
    }

    #[test]
    fn client_addresses_as_go_parses_them() {
        for ok in [
            "127.0.0.1",
            "10::10",
            "::ffff:1.2.3.4",
            "192.168.1.0/24",
            "10.0.0.1/8",
            "11::/16",
            "1.2.3.4/08",
            "::/128",
        ] {
            assert!(is_ip_or_cidr(ok), "{ok}");
        }
        for bad in [
            "1",
            "invalid",
            "01.2.3.4",
            "1.2.3.4/33",
            "::/129",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "fe80::1%eth0",
            "1.2.3.4/8/8",
            "",
        ] {
            assert!(!is_ip_or_cidr(bad), "{bad}");
        }
    }

    #[test]
    fn upper_case_as_go() {
        assert_eq!(go_to_upper("get"), "GET");
        assert_eq!(go_to_upper("ßa"), "ßA");
        assert_eq!(go_to_upper("ı"), "I");
    }

    #[test]
    fn hosts_lose_one_trailing_dot() {
        assert_eq!(normalize_host("Example.COM."), "example.com");
        assert_eq!(normalize_host("a.."), "a.");
    }
}
