//! The one address-range rule: how a list of client address ranges (the `client_ip` matcher, the
//! `ip_allow_list` middleware, a source criterion's `excluded`) is read and tested, as Traefik's
//! IP checker does it.
//!
//! Not for: choosing which address of a request to test (the peer or one from
//! `X-Forwarded-For`); that is the caller's.

use std::net::IpAddr;

use ipnet::IpNet;

/// Address ranges, parsed: single addresses and CIDR networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRanges {
    nets: Box<[IpNet]>,
}

/// A range that is neither an IP address nor a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("range {index} ({range:?}) is neither an IP address nor a CIDR network")]
pub struct IpRangeError {
    /// Its position in the list.
    pub index: usize,
    /// The text given.
    pub range: String,
}

impl IpRanges {
    /// Parses each range as Traefik does: a single address (IPv4, or IPv6 without brackets or
    /// zone), or a CIDR network whose host bits may be set (`10.0.0.5/8` is `10.0.0.0/8`). A single
    /// IPv4-mapped IPv6 address stands for its IPv4 address. Fails on the first bad range.
    pub fn parse<S: AsRef<str>>(ranges: &[S]) -> Result<IpRanges, IpRangeError> {
        let nets = ranges
            .iter()
            .enumerate()
            .map(|(index, range)| {
                parse_ip_range(range.as_ref()).ok_or_else(|| IpRangeError {
                    index,
                    range: range.as_ref().to_string(),
                })
            })
            .collect::<Result<Box<[IpNet]>, _>>()?;
        Ok(IpRanges { nets })
    }

    /// Whether the address is one of the addresses or in one of the networks. An IPv4-mapped IPv6
    /// address (`::ffff:10.0.0.1`) counts as its IPv4 address, and an IPv4 address is in an IPv6
    /// network that holds its mapped form, as with Go's `net.IP`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| match (net, ip) {
            (IpNet::V4(net), IpAddr::V4(ip)) => net.contains(&ip),
            (IpNet::V6(net), IpAddr::V6(ip)) => net.contains(&ip),
            (IpNet::V6(net), IpAddr::V4(ip)) => net.contains(&ip.to_ipv6_mapped()),
            (IpNet::V4(_), IpAddr::V6(_)) => false,
        })
    }
}

/// One range, or `None` when it is neither an address nor a CIDR network.
pub(crate) fn parse_ip_range(text: &str) -> Option<IpNet> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(IpNet::from(ip.to_canonical()));
    }
    text.parse::<IpNet>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &[&str]) -> IpRanges {
        IpRanges::parse(list).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_and_networks() {
        let r = ranges(&["127.0.0.1", "192.168.1.0/24", "2001:db8::/32", "10.0.0.5/8"]);
        for inside in [
            "127.0.0.1",
            "192.168.1.200",
            "2001:db8::1",
            "10.200.0.1",
            "::ffff:192.168.1.1",
        ] {
            assert!(r.contains(ip(inside)), "{inside}");
        }
        for outside in ["127.0.0.2", "192.168.2.1", "::1", "11.0.0.1"] {
            assert!(!r.contains(ip(outside)), "{outside}");
        }
    }

    #[test]
    fn mapped_forms_as_go() {
        assert!(ranges(&["::ffff:10.0.0.1"]).contains(ip("10.0.0.1")));
        assert!(ranges(&["::ffff:10.0.0.0/104"]).contains(ip("10.1.2.3")));
        assert!(!ranges(&["::ffff:10.0.0.0/104"]).contains(ip("11.1.2.3")));
        assert!(ranges(&["10.0.0.0/8"]).contains(ip("::ffff:10.9.9.9")));
    }

    #[test]
    fn bad_ranges_are_named() {
        let e = IpRanges::parse(&["10.0.0.0/8", "fe80::1%eth0"]).unwrap_err();
        assert_eq!(
            e,
            IpRangeError {
                index: 1,
                range: "fe80::1%eth0".into()
            }
        );
        for bad in ["", "x", "10.0.0.0/33", "[::1]", "1.2.3.4:80", "010.0.0.1"] {
            assert!(parse_ip_range(bad).is_none(), "{bad}");
        }
        assert!(IpRanges::parse::<&str>(&[]).unwrap().nets.is_empty());
    }
}
