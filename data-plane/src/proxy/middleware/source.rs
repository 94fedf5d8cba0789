//! Who a request comes from, for the per-source middlewares (`rate_limit`, `in_flight_req`,
//! `ip_allow_list`), and address ranges to check it against.
//!
//! For: Traefik's source criteria and IP strategies: the peer's address by default;
//! `depth` N: the N-th address of `X-Forwarded-For` counted from the right (none if there are
//! fewer); `excluded`: the right-most `X-Forwarded-For` address not in the excluded ranges (none
//! if all are); or the value of a request header, or the request's host. `X-Forwarded-For` is the
//! header as the accept phase left it, as Traefik's middlewares see it after its entrypoint's
//! forwarded-headers step: from a trusted peer (`--trusted-ips`) the client's, lines joined; from
//! anyone else none at all (so `depth` and `excluded` find no address). The peer is appended only
//! when forwarding, after the middlewares.
//! Not for: deciding anything about the source (each middleware does).

use std::net::IpAddr;
use std::str::FromStr;

use http::request::Parts;
use http::HeaderName;
use ipnet::IpNet;

use crate::proxy::context::RequestContext;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Addresses and networks (Traefik's `ip.Checker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IpRanges {
    addresses: Box<[IpAddr]>,
    networks: Box<[IpNet]>,
}

impl IpRanges {
    pub(crate) fn parse(ranges: &[String]) -> Result<Self, String> {
        let (mut addresses, mut networks) = (Vec::new(), Vec::new());
        for range in ranges {
            let text = range.trim();
            if let Ok(ip) = IpAddr::from_str(text) {
                addresses.push(ip.to_canonical());
            } else {
                let net = IpNet::from_str(text)
                    .map_err(|_| format!("{range:?} is neither an IP address nor a CIDR range"))?;
                networks.push(net.trunc());
            }
        }
        Ok(Self {
            addresses: addresses.into_boxed_slice(),
            networks: networks.into_boxed_slice(),
        })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.addresses.contains(&ip) || self.networks.iter().any(|n| n.contains(&ip))
    }

    /// Whether `text` is an address (optionally `host:port`) in the ranges, as Traefik's
    /// `Checker.IsAuthorized`: text that is no address is never in.
    pub(crate) fn contains_text(&self, text: &str) -> bool {
        parse_ip(text).is_some_and(|ip| self.contains(ip))
    }
}

/// An address as Traefik reads one from a header: `host:port` or a bare address, an IPv6 zone
/// allowed.
fn parse_ip(text: &str) -> Option<IpAddr> {
    let host = crate::proxy::hostport::split_host_port(text).map_or(text, |(host, _)| host);
    let host = host.split_once('%').map_or(host, |(addr, _zone)| addr);
    IpAddr::from_str(host).ok()
}

/// How a middleware tells sources apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Peer,
    Depth(usize),
    Excluding(IpRanges),
    Header(HeaderName),
    Host,
}

/// A source, as a map key. Addresses are compared as addresses, anything else as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum SourceKey {
    Ip(IpAddr),
    Text(Box<str>),
}

impl Source {
    /// The criterion of a middleware; `ip_only`: only the address strategies apply (the allow
    /// list), a header or host criterion then means the peer.
    pub(crate) fn compile(
        criterion: Option<&berth_proto::v1::SourceCriterion>,
        ip_only: bool,
    ) -> Result<Self, String> {
        let Some(c) = criterion else {
            return Ok(Self::Peer);
        };
        if c.depth > 0 {
            return Ok(Self::Depth(c.depth as usize));
        }
        if !c.excluded.is_empty() {
            return Ok(Self::Excluding(IpRanges::parse(&c.excluded)?));
        }
        if ip_only {
            return Ok(Self::Peer);
        }
        if !c.request_header.is_empty() {
            let name = HeaderName::from_bytes(c.request_header.as_bytes())
                .map_err(|_| format!("request_header {:?} is not a header name", c.request_header))?;
            return Ok(Self::Header(name));
        }
        if c.request_host {
            return Ok(Self::Host);
        }
        Ok(Self::Peer)
    }

    /// The source of a request as Traefik's strategy gives it: text, "" when there is none.
    pub(crate) fn text<'a>(&self, ctx: &'a RequestContext, head: &'a Parts) -> SourceText<'a> {
        match self {
            Self::Peer => SourceText::Ip(ctx.peer.ip),
            Self::Depth(depth) => {
                let Some(xff) = first_value(head) else {
                    return SourceText::Str("");
                };
                let nth = depth.checked_sub(1).and_then(|n| xff.rsplit(',').nth(n));
                SourceText::Str(nth.map_or("", str::trim))
            }
            Self::Excluding(excluded) => {
                let Some(xff) = first_value(head) else {
                    return SourceText::Str("");
                };
                let found = xff
                    .rsplit(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .find(|a| !excluded.contains_text(a));
                SourceText::Str(found.unwrap_or(""))
            }
            Self::Header(name) => {
                SourceText::Str(head.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or(""))
            }
            Self::Host => SourceText::Str(ctx.host_text()),
        }
    }

    /// The source as a map key.
    pub(crate) fn key(&self, ctx: &RequestContext, head: &Parts) -> SourceKey {
        match self.text(ctx, head) {
            SourceText::Ip(ip) => SourceKey::Ip(ip),
            SourceText::Str(text) => match IpAddr::from_str(text) {
                Ok(ip) if !matches!(self, Self::Header(_) | Self::Host) => SourceKey::Ip(ip.to_canonical()),
                _ => SourceKey::Text(text.into()),
            },
        }
    }
}

/// A source before it becomes a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceText<'a> {
    Ip(IpAddr),
    Str(&'a str),
}

/// `X-Forwarded-For`'s first line (Go's `Header.Get`); the accept phase joins several lines into
/// one (or drops them all for an untrusted peer), as Traefik does.
fn first_value(head: &Parts) -> Option<&str> {
    head.headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::middleware::testing::head;
    use http::HeaderValue;

    fn ranges(list: &[&str]) -> IpRanges {
        IpRanges::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("ranges")
    }

    #[test]
    fn ranges_match_as_traefik() {
        let r = ranges(&["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "172.16.5.5/16"]);
        assert!(r.contains_text("10.1.2.3"));
        assert!(r.contains_text("10.1.2.3:5555"));
        assert!(r.contains_text("192.168.1.7"));
        assert!(!r.contains_text("192.168.1.8"));
        assert!(r.contains_text("2001:db8::1"));
        assert!(r.contains_text("[2001:db8::1]:80"));
        assert!(r.contains_text("::ffff:10.0.0.1"), "IPv4-mapped");
        assert!(r.contains_text("172.16.200.1"), "host bits of a CIDR are ignored");
        assert!(!r.contains_text(""));
        assert!(!r.contains_text("not-an-ip"));
        assert!(IpRanges::parse(&["10.0.0.0/33".to_string()]).is_err());
    }

    fn text(source: &Source, xff: Option<&str>) -> String {
        let ctx = RequestContext::for_test("GET", "/", "host.example:8080", "10.9.9.9:1234");
        let mut head = head("GET", "/");
        if let Some(x) = xff {
            head.headers
                .insert(X_FORWARDED_FOR, HeaderValue::from_str(x).unwrap());
        }
        head.headers.insert("x-user", HeaderValue::from_static("alice"));
        match source.text(&ctx, &head) {
            SourceText::Ip(ip) => ip.to_string(),
            SourceText::Str(s) => s.to_owned(),
        }
    }

    #[test]
    fn strategies() {
        let xff = Some("1.1.1.1, 2.2.2.2,3.3.3.3");
        assert_eq!(text(&Source::Peer, xff), "10.9.9.9");
        assert_eq!(text(&Source::Depth(1), xff), "3.3.3.3");
        assert_eq!(text(&Source::Depth(3), xff), "1.1.1.1");
        assert_eq!(text(&Source::Depth(4), xff), "");
        assert_eq!(text(&Source::Depth(1), None), "");
        assert_eq!(
            text(&Source::Excluding(ranges(&["3.3.3.3", "2.2.2.0/24"])), xff),
            "1.1.1.1"
        );
        assert_eq!(text(&Source::Excluding(ranges(&["0.0.0.0/0"])), xff), "");
        assert_eq!(
            text(&Source::Header(HeaderName::from_static("x-user")), xff),
            "alice"
        );
        assert_eq!(text(&Source::Header(HeaderName::from_static("x-none")), xff), "");
        assert_eq!(text(&Source::Host, xff), "host.example:8080");
    }

    #[test]
    fn compile_precedence() {
        use berth_proto::v1::SourceCriterion as C;
        assert_eq!(Source::compile(None, false), Ok(Source::Peer));
        let c = C {
            depth: 2,
            excluded: vec!["1.1.1.1".into()],
            request_header: "x".into(),
            request_host: true,
        };
        assert_eq!(Source::compile(Some(&c), false), Ok(Source::Depth(2)));
        let c = C {
            request_host: true,
            ..Default::default()
        };
        assert_eq!(Source::compile(Some(&c), false), Ok(Source::Host));
        assert_eq!(Source::compile(Some(&c), true), Ok(Source::Peer));
    }
}
