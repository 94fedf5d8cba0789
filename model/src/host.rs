//! The one host-name rule of Berth: what a host in a route or an endpoint address may be, and how
//! a request's `Host` is brought to the form routes are matched against.
//!
//! - [`normalize_host`] checks a host written in configuration (a `Host` matcher, a wildcard
//!   suffix) and gives its canonical form: lower case, no trailing dot, no brackets around an IPv6
//!   address. The control plane writes hosts in this form; [`crate::validate`] insists on it.
//! - [`request_host`] brings a request's `Host` (or `:authority`) to the same form, the way
//!   Traefik does before routing: port removed, brackets removed, surrounding spaces trimmed,
//!   lower case; and, unlike Traefik, one trailing dot removed (Traefik tries both forms in its
//!   `Host` matcher; removing it once gives the same answer, see [`crate::matcher`]).
//! - [`parse_address`] checks an endpoint's address: an IP address or a host name.
//!
//! Not for: resolving names, or wildcard patterns (`*.example.com` is a dialect's spelling; the
//! model carries the suffix, checked by [`normalize_host`]).

use std::borrow::Cow;
use std::net::IpAddr;

/// Longest host name, in bytes (RFC 1035, without the trailing dot).
const MAX_HOST_LEN: usize = 253;
/// Longest label of a host name, in bytes.
const MAX_LABEL_LEN: usize = 63;

/// A host or address that Berth does not accept, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host {host:?}: {problem}")]
pub struct HostError {
    /// The text as given.
    pub host: String,
    /// What is wrong with it.
    pub problem: HostProblem,
}

/// What is wrong with a host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostProblem {
    /// Nothing was given.
    #[error("is empty")]
    Empty,
    /// Longer than a DNS name may be.
    #[error("is {len} bytes long, more than {MAX_HOST_LEN}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Two dots in a row, or a dot at the start.
    #[error("has an empty label")]
    EmptyLabel,
    /// One label longer than DNS allows.
    #[error("label {label:?} is longer than {MAX_LABEL_LEN} bytes")]
    LabelTooLong {
        /// The label.
        label: String,
    },
    /// A label starting or ending with '-'.
    #[error("label {label:?} starts or ends with '-'")]
    HyphenAtEdge {
        /// The label.
        label: String,
    },
    /// A character that is not a letter, digit, '-' or '_' (non-ASCII hosts must be written in
    /// punycode, `xn--...`, as Traefik requires).
    #[error("has the character {0:?}, only ASCII letters, digits, '-' and '_' are allowed")]
    BadCharacter(char),
}

/// Checks a host written in configuration and returns its canonical form: a host name (labels of
/// ASCII letters, digits, '-' and '_', 1 to 63 bytes each, '-' not at either end, 253 bytes at
/// most) or an IP address, lower case, without a trailing dot; an IPv6 address may be given in
/// brackets, which are removed. An IP address keeps its text (lower-cased), since a request's
/// host is compared as text.
pub fn normalize_host(raw: &str) -> Result<String, HostError> {
    let fail = |problem| HostError {
        host: raw.to_string(),
        problem,
    };
    let unbracketed = raw
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .filter(|inner| inner.parse::<std::net::Ipv6Addr>().is_ok());
    if let Some(inner) = unbracketed {
        return Ok(inner.to_ascii_lowercase());
    }
    if raw.parse::<IpAddr>().is_ok() {
        return Ok(raw.to_ascii_lowercase());
    }
    let name = raw.strip_suffix('.').unwrap_or(raw);
    check_host_name(name).map_err(fail)?;
    Ok(name.to_ascii_lowercase())
}

/// An endpoint's address, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address<'a> {
    /// An IPv4 or IPv6 address (IPv6 without brackets).
    Ip(IpAddr),
    /// A host name, as given (a trailing dot is kept: it is the resolver's business).
    Name(&'a str),
}

/// Checks an endpoint's address: an IP address (IPv6 without brackets) or a host name by the rule
/// of [`normalize_host`] (any letter case, an optional trailing dot).
pub fn parse_address(raw: &str) -> Result<Address<'_>, HostError> {
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Ok(Address::Ip(ip));
    }
    check_host_name(raw.strip_suffix('.').unwrap_or(raw)).map_err(|problem| HostError {
        host: raw.to_string(),
        problem,
    })?;
    Ok(Address::Name(raw))
}

/// A request's `Host` header (or `:authority`) in the form routes are matched against, as
/// Traefik's request decorator computes it: the port is removed when the value splits as
/// `host:port` or `[v6]:port`; `[v6]` loses its brackets; an IPv6 address without brackets is
/// kept whole; surrounding white space is trimmed; letters are lowered. One trailing dot is
/// removed as well. Never fails: a value that is no host name simply matches no `Host` matcher.
/// Borrows when nothing needs lowering.
pub fn request_host(raw: &str) -> Cow<'_, str> {
    let host = split_port(raw).trim();
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// The host part of `host[:port]`, following Go's `net.SplitHostPort` where Traefik uses it.
fn split_port(raw: &str) -> &str {
    if !raw.contains(':') {
        return raw;
    }
    if let Some(rest) = raw.strip_prefix('[') {
        // "[v6]:port" splits; "[v6]" alone does not (no port) and loses its brackets.
        return match rest.split_once(']') {
            Some((inner, "")) => inner,
            Some((inner, after)) if after.starts_with(':') && !after[1..].contains(':') => inner,
            _ => raw,
        };
    }
    match raw.split_once(':') {
        // Exactly one colon: "host:port" (Go accepts any port text, even an empty one).
        Some((host, port)) if !port.contains(':') => host,
        // Several colons without brackets: an IPv6 address, kept whole.
        _ => raw,
    }
}

/// The host-name rule, on a name without its trailing dot.
pub(crate) fn check_host_name(name: &str) -> Result<(), HostProblem> {
    if name.is_empty() {
        return Err(HostProblem::Empty);
    }
    if name.len() > MAX_HOST_LEN {
        return Err(HostProblem::TooLong { len: name.len() });
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(HostProblem::EmptyLabel);
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(HostProblem::BadCharacter(c));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(HostProblem::LabelTooLong {
                label: label.to_string(),
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostProblem::HyphenAtEdge {
                label: label.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(raw: &str) -> HostProblem {
        normalize_host(raw).unwrap_err().problem
    }

    #[test]
    fn config_hosts_are_lowered_and_lose_trailing_dot_and_brackets() {
        assert_eq!(normalize_host("Go.Example").unwrap(), "go.example");
        assert_eq!(normalize_host("go.example.").unwrap(), "go.example");
        assert_eq!(normalize_host("x_y.example").unwrap(), "x_y.example");
        assert_eq!(normalize_host("xn--9t9h.com").unwrap(), "xn--9t9h.com");
        assert_eq!(normalize_host("localhost").unwrap(), "localhost");
        assert_eq!(normalize_host("10.0.0.1").unwrap(), "10.0.0.1");
        assert_eq!(normalize_host("[::1]").unwrap(), "::1");
        assert_eq!(normalize_host("FE80::1").unwrap(), "fe80::1");
    }

    #[test]
    fn config_hosts_that_are_refused() {
        assert_eq!(problem(""), HostProblem::Empty);
        assert_eq!(problem("."), HostProblem::Empty);
        assert_eq!(problem("a..b"), HostProblem::EmptyLabel);
        assert_eq!(problem(".a"), HostProblem::EmptyLabel);
        assert_eq!(problem("a.b.."), HostProblem::EmptyLabel);
        assert_eq!(problem("a b"), HostProblem::BadCharacter(' '));
        assert_eq!(problem("a:80"), HostProblem::BadCharacter(':'));
        assert_eq!(problem("*.example"), HostProblem::BadCharacter('*'));
        assert_eq!(problem("🦭.com"), HostProblem::BadCharacter('🦭'));
        assert_eq!(problem("[a.b]"), HostProblem::BadCharacter('['));
        assert!(matches!(problem("-a.example"), HostProblem::HyphenAtEdge { .. }));
        assert!(matches!(problem("a-.example"), HostProblem::HyphenAtEdge { .. }));
        assert!(matches!(
            problem(&"x".repeat(64)),
            HostProblem::LabelTooLong { .. }
        ));
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(matches!(problem(&long), HostProblem::TooLong { len: 259 }));
    }

    #[test]
    fn errors_name_the_host() {
        let e = normalize_host("a..b").unwrap_err();
        assert_eq!(e.to_string(), r#"host "a..b": has an empty label"#);
    }

    #[test]
    fn endpoint_addresses() {
        assert_eq!(
            parse_address("127.0.0.1").unwrap(),
            Address::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(parse_address("::1").unwrap(), Address::Ip("::1".parse().unwrap()));
        assert_eq!(
            parse_address("Db.Service.Consul.").unwrap(),
            Address::Name("Db.Service.Consul.")
        );
        assert!(parse_address("").is_err());
        assert!(parse_address("[::1]").is_err());
        assert!(parse_address("a:80").is_err());
        assert!(parse_address("-bad-").is_err());
    }

    #[test]
    fn request_hosts_as_traefik_reads_them() {
        assert_eq!(request_host("example.com"), "example.com");
        assert_eq!(request_host("EXAMPLE.com:8080"), "example.com");
        assert_eq!(request_host("example.com."), "example.com");
        assert_eq!(request_host("example.com.:80"), "example.com");
        assert_eq!(request_host("[::1]:8080"), "::1");
        assert_eq!(request_host("[::1]"), "::1");
        assert_eq!(request_host("::1"), "::1");
        assert_eq!(request_host("host:"), "host");
        assert_eq!(request_host("host:abc"), "host");
        assert_eq!(request_host(" a.b "), "a.b");
        assert_eq!(request_host(""), "");
        assert!(matches!(request_host("a.b:1"), Cow::Borrowed(_)));
    }
}
