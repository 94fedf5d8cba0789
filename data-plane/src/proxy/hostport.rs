//! Go's `net.SplitHostPort`, which Traefik uses on `Host` in several places (the forwarded port,
//! the redirect middlewares, reading an address from a header).
//!
//! For: splitting `host:port` and `[v6]:port` exactly where Go does, and failing where Go fails,
//! since Traefik's behaviour hangs on both.
//! Not for: normalizing hosts for routing (`berth_model::request_host`).

/// Go's `net.SplitHostPort`: `Some((host, port))` for `host:port` or `[v6]:port` (port may be
/// empty), `None` where Go fails (no port, too many colons, stray brackets).
pub(crate) fn split_host_port(hostport: &str) -> Option<(&str, &str)> {
    let colon = hostport.rfind(':')?;
    let (host, after_host) = if let Some(rest) = hostport.strip_prefix('[') {
        let end = rest.find(']')? + 1;
        if end + 1 != colon {
            return None;
        }
        (&hostport[1..end], end + 1)
    } else {
        let host = &hostport[..colon];
        if host.contains(':') {
            return None;
        }
        (host, colon)
    };
    if hostport[after_host..].contains('[') || hostport[after_host..].contains(']') {
        return None;
    }
    if !hostport.starts_with('[') && host.contains(['[', ']']) {
        return None;
    }
    Some((host, &hostport[colon + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_host_port_as_go() {
        assert_eq!(split_host_port("a.com:80"), Some(("a.com", "80")));
        assert_eq!(split_host_port("a.com:"), Some(("a.com", "")));
        assert_eq!(split_host_port("[::1]:80"), Some(("::1", "80")));
        assert_eq!(split_host_port("a.com"), None);
        assert_eq!(split_host_port("[::1]"), None);
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(split_host_port("a:b:c"), None);
    }
}
