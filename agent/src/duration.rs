//! Validation of Go duration strings (`10s`, `1m30s`, `500ms`), the form Consul expects for check
//! intervals, timeouts and TTLs.
//!
//! The agent passes durations to Consul as the container wrote them; this module only checks
//! them first, so that a typo skips one registration with a clear error instead of making Consul
//! refuse it. It does not convert durations for the agent's own timers.

/// True when `value` is a non-negative duration Go's `time.ParseDuration` accepts, e.g. `10s`,
/// `1.5m`, `1h2m3s`, `250ms`, `0`.
pub(crate) fn is_go_duration(value: &str) -> bool {
    let s = value.strip_prefix('+').unwrap_or(value);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        // A number: digits, optionally a fraction; at least one digit overall.
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let mut len = int_len;
        let mut frac_len = 0;
        if rest[len..].starts_with('.') {
            frac_len = rest[len + 1..].bytes().take_while(u8::is_ascii_digit).count();
            len += 1 + frac_len;
        }
        if int_len + frac_len == 0 {
            return false;
        }
        rest = &rest[len..];
        // A unit.
        let Some(unit) = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u))
        else {
            return false;
        };
        // "m" must not swallow the "m" of "ms": the list tries "ms" first.
        rest = &rest[unit.len()..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::is_go_duration;

    #[test]
    fn accepts_go_durations() {
        for ok in [
            "10s", "0", "1m30s", "500ms", "1.5h", "2h45m", ".5s", "1.s", "300us", "5µs", "10ns", "+3s",
        ] {
            assert!(is_go_duration(ok), "{ok} should be accepted");
        }
    }

    #[test]
    fn refuses_what_go_refuses() {
        for bad in [
            "", "10", "abc", "10 s", "s", "1d", "-5s", "10sec", "1.5", ".s", "1m-3s", "5S",
        ] {
            assert!(!is_go_duration(bad), "{bad:?} should be refused");
        }
    }
}
