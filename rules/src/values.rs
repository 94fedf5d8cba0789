//! Reading tag values the way the Go programs that defined them read them: booleans as
//! `strconv.ParseBool`, integers as `strconv.ParseInt`, durations as Traefik's `types.Duration`
//! (a bare number is seconds, otherwise Go's `time.ParseDuration`), lists as Traefik's label
//! parser splits them, IP ranges as Traefik's `ip.NewChecker` accepts them, htpasswd lines as the
//! route model's basic auth accepts them, and header names as HTTP allows them.
//!
//! Each function answers with a [`ValueError`] that says what the value should have been; the
//! caller adds which tag it came from. Not for: deciding what a value means in a dialect.

use std::net::IpAddr;

/// A tag value that does not read as what its key expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ValueError {
    #[error("{value:?} is not a boolean (use true or false)")]
    NotABoolean { value: String },
    #[error("{value:?} is not a whole number")]
    NotAnInteger { value: String },
    #[error("{value} is out of range ({min} to {max})")]
    OutOfRange { value: String, min: i64, max: i64 },
    #[error("{value:?} is not a duration (a number of seconds, or Go's form such as 10s, 1m30s, 500ms)")]
    NotADuration { value: String },
    #[error("{value:?} is neither an IP address nor a CIDR network")]
    NotAnIpRange { value: String },
    #[error("{value:?} is not a valid HTTP header name")]
    BadHeaderName { value: String },
    #[error("user {line:?} is not of the form name:hash")]
    NotAUserLine { line: String },
    #[error(
        "the hash of user {user:?} is not a bcrypt ($2y$, $2a$, $2b$), Apache MD5 ($apr1$) or SHA-1 ({{SHA}}) hash"
    )]
    BadHash { user: String },
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_bool(value: &str) -> Result<bool, ValueError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(ValueError::NotABoolean { value: value.into() }),
    }
}

/// Go's `strconv.ParseInt(value, 10, 64)`, then checked against `min..=max`.
pub(crate) fn parse_int(value: &str, min: i128, max: i128) -> Result<i128, ValueError> {
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValueError::NotAnInteger { value: value.into() });
    }
    let clamp = |n: i128| n.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    let out_of_range = || ValueError::OutOfRange {
        value: value.into(),
        min: clamp(min),
        max: clamp(max),
    };
    let parsed: i128 = value.parse().map_err(|_| out_of_range())?;
    if parsed < i128::from(i64::MIN) || parsed > i128::from(i64::MAX) || parsed < min || parsed > max {
        return Err(out_of_range());
    }
    Ok(parsed)
}

/// Traefik's `types.Duration` from a label: a bare integer is a number of seconds, anything else
/// goes through Go's `time.ParseDuration`. The result is in nanoseconds.
pub(crate) fn parse_duration(value: &str) -> Result<i128, ValueError> {
    if let Ok(seconds) = parse_int(value, i128::from(i64::MIN), i128::from(i64::MAX)) {
        return Ok(seconds * 1_000_000_000);
    }
    go_duration(value).ok_or_else(|| ValueError::NotADuration { value: value.into() })
}

/// Go's `time.ParseDuration`: an optional sign, then one or more decimal numbers each with a
/// unit (ns, us, µs, μs, ms, s, m, h); "0" alone is allowed. Nanoseconds.
fn go_duration(value: &str) -> Option<i128> {
    let (negative, mut rest) = match value.as_bytes().first() {
        Some(b'-') => (true, &value[1..]),
        Some(b'+') => (false, &value[1..]),
        _ => (false, value),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let amount: f64 = number.parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(rest.len(), |(i, _)| i);
        let scale: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += amount * scale;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let nanos = total.round() as i128;
    Some(if negative { -nanos } else { nanos })
}

/// A list as Traefik's label parser splits it: on ',' with each item trimmed. Empty items are
/// kept (the caller decides whether they are errors).
pub(crate) fn split_list(value: &str) -> Vec<String> {
    if value.is_empty() {
        return Vec::new();
    }
    value.split(',').map(|item| item.trim().to_string()).collect()
}

/// A list as Traefik v1 splits it: on `sep`, trimmed, empty items dropped.
pub(crate) fn split_and_trim(value: &str, sep: &str) -> Vec<String> {
    value
        .split(sep)
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// An IP range as Traefik's `ip.NewChecker` (and Fabio's access rules) accept it: an address, or
/// an address and a prefix length (`10.0.0.0/8`, `fd00::/8`). Returns it trimmed.
pub(crate) fn ip_range(value: &str) -> Result<String, ValueError> {
    let value = value.trim();
    let bad = || ValueError::NotAnIpRange { value: value.into() };
    match value.split_once('/') {
        None => value
            .parse::<IpAddr>()
            .map(|_| value.to_string())
            .map_err(|_| bad()),
        Some((addr, bits)) => {
            let addr: IpAddr = addr.parse().map_err(|_| bad())?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if bits.is_empty() || bits.len() > 3 || !bits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let bits: u32 = bits.parse().map_err(|_| bad())?;
            if bits > max {
                return Err(bad());
            }
            Ok(value.to_string())
        }
    }
}

/// An HTTP header name (RFC 9110 token).
pub(crate) fn header_name(value: &str) -> Result<String, ValueError> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if value.is_empty() || !value.bytes().all(token) {
        return Err(ValueError::BadHeaderName { value: value.into() });
    }
    Ok(value.to_string())
}

/// One htpasswd line, `name:hash`, with a hash the route model accepts: bcrypt (`$2y$`, `$2a$`,
/// `$2b$`, cost and 53 characters), Apache MD5 (`$apr1$salt$` and 22 characters) or SHA-1
/// (`{SHA}` and 28 characters of base64). Traefik splits on every ':' and wants two parts.
pub(crate) fn htpasswd_user(line: &str) -> Result<String, ValueError> {
    let parts: Vec<&str> = line.split(':').collect();
    let [user, hash] = parts.as_slice() else {
        return Err(ValueError::NotAUserLine { line: line.into() });
    };
    if user.is_empty() {
        return Err(ValueError::NotAUserLine { line: line.into() });
    }
    if !is_known_hash(hash) {
        return Err(ValueError::BadHash { user: (*user).into() });
    }
    Ok(line.to_string())
}

fn is_known_hash(hash: &str) -> bool {
    const BCRYPT64: &[u8] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const CRYPT64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
    if let Some(rest) = ["$2y$", "$2a$", "$2b$"].iter().find_map(|p| hash.strip_prefix(p)) {
        let Some((cost, body)) = rest.split_once('$') else {
            return false;
        };
        let cost_ok = cost.len() == 2 && cost.parse::<u32>().is_ok_and(|c| (4..=31).contains(&c));
        return cost_ok && body.len() == 53 && body.bytes().all(|b| BCRYPT64.contains(&b));
    }
    if let Some(rest) = hash.strip_prefix("$apr1$") {
        let Some((salt, body)) = rest.split_once('$') else {
            return false;
        };
        return !salt.is_empty()
            && salt.len() <= 8
            && !salt.contains('$')
            && body.len() == 22
            && body.bytes().all(|b| CRYPT64.contains(&b));
    }
    if let Some(body) = hash.strip_prefix("{SHA}") {
        return body.len() == 28 && body.ends_with('=') && body.bytes().all(|b| BASE64.contains(&b));
    }
    false
}

/// HTTP status codes Go's `http.StatusText` names (Traefik refuses any other as a reject code).
pub(crate) fn is_known_status(code: i128) -> bool {
    matches!(
        code,
        100..=103
            | 200..=208
            | 226
            | 300..=305
            | 307
            | 308
            | 400..=418
            | 421..=426
            | 428
            | 429
            | 431
            | 451
            | 500..=508
            | 510
            | 511
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_as_go_reads_them() {
        for yes in ["1", "t", "T", "true", "TRUE", "True"] {
            assert_eq!(parse_bool(yes), Ok(true), "{yes}");
        }
        for no in ["0", "f", "F", "false", "FALSE", "False"] {
            assert_eq!(parse_bool(no), Ok(false), "{no}");
        }
        for bad in ["yes", "", " true", "tRue"] {
            assert!(parse_bool(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn integers_with_ranges() {
        assert_eq!(parse_int("42", 0, 100), Ok(42));
        assert_eq!(parse_int("-5", -10, 10), Ok(-5));
        assert_eq!(parse_int("+5", -10, 10), Ok(5));
        assert!(matches!(
            parse_int("101", 0, 100),
            Err(ValueError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse_int("99999999999999999999", 0, i128::MAX),
            Err(ValueError::OutOfRange { .. })
        ));
        for bad in ["", "1.5", " 1", "0x10", "1_000", "-"] {
            assert!(
                matches!(parse_int(bad, 0, 100), Err(ValueError::NotAnInteger { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn durations_as_traefik_labels_read_them() {
        assert_eq!(parse_duration("10"), Ok(10_000_000_000));
        assert_eq!(parse_duration("10s"), Ok(10_000_000_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("-1s"), Ok(-1_000_000_000));
        assert_eq!(parse_duration("2us"), Ok(2_000));
        for bad in ["", "s", "10x", "1..5s", "ten"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists() {
        assert_eq!(split_list("a, b ,c"), ["a", "b", "c"]);
        assert_eq!(split_list("a,"), ["a", ""]);
        assert!(split_list("").is_empty());
        assert_eq!(split_and_trim(" a ,, b,", ","), ["a", "b"]);
        assert_eq!(split_and_trim("X:1||Y:2", "||"), ["X:1", "Y:2"]);
    }

    #[test]
    fn ip_ranges() {
        for good in ["10.0.0.1", "10.0.0.0/8", "::1", "fd00::/8", " 192.168.1.0/24 "] {
            assert!(ip_range(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0",
            "10.0.0.0/",
            "host",
            "10.0.0.0/8/8",
            "1.2.3.4/-1",
        ] {
            assert!(ip_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_names() {
        assert!(header_name("X-Forwarded-Proto").is_ok());
        assert!(header_name("").is_err());
        assert!(header_name("X Foo").is_err());
        assert!(header_name("X:Foo").is_err());
    }

    #[test]
    fn htpasswd_lines() {
        let good = [
            "test:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/",
            "test2:$apr1$d9hr9HBB$4HxwgUir3HP4EsggP/QNo0",
            "user:$2y$05$Ae0GnMuzmZLxY8lT8nQ0t.Gc6ThmCnwUn1BW4LXl4ZbLZfRrzP6Ja",
            "sha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
        ];
        for line in good {
            assert!(htpasswd_user(line).is_ok(), "{line}");
        }
        assert!(matches!(
            htpasswd_user("nohash"),
            Err(ValueError::NotAUserLine { .. })
        ));
        assert!(matches!(
            htpasswd_user("a:b:c"),
            Err(ValueError::NotAUserLine { .. })
        ));
        assert!(matches!(
            htpasswd_user(":{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="),
            Err(ValueError::NotAUserLine { .. })
        ));
        for bad in [
            "u:plain",
            "u:$1$salt$abc",
            "u:{SHA}short",
            "u:$2y$05$tooshort",
            "u:$apr1$$IgXLP6ewTrSuBkTrqE8wj/",
        ] {
            assert!(
                matches!(htpasswd_user(bad), Err(ValueError::BadHash { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn status_codes() {
        assert!(is_known_status(403));
        assert!(is_known_status(429));
        assert!(!is_known_status(299));
        assert!(!is_known_status(999));
    }
}
