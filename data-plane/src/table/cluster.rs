//! Clusters as the request path uses them: endpoints ready to connect to, the balancer, how the
//! backend is spoken to (scheme, `Host`), and sticky sessions.
//!
//! For: turning a snapshot's `Cluster` into a [`Cluster`] (authorities and `Host` values computed
//! once, round-robin position carried over from the previous table when the endpoints are the
//! same) and the sticky-cookie lookup. Sticky cookies follow Traefik: the cookie's value is the
//! first 16 hex digits of SHA-256 over the endpoint's URL (`http://10.0.0.1:8080`), so a client
//! keeps its endpoint when moving from Traefik to Berth; values of Traefik's older formats (the URL
//! itself, its FNV-64 hash, FNV of that) are accepted and answered with a cookie in the current
//! form; a cookie naming no current endpoint is replaced.
//!
//! Each cluster also carries its upstream-health state: one [`EndpointHealth`] per endpoint
//! (ejection, load), its retry budget, and the policies and timeouts of its snapshot. The state of
//! an endpoint with the same address and port in the previous table is kept, so a table swap
//! neither readmits an ejected endpoint nor forgets its failures. [`Cluster::choose`] applies
//! the balancer while skipping ejected endpoints and those a retry already tried.
//! Not for: choosing per request (see `proxy::endpoint`) or connecting (see `proxy::forward`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::{Balancing, Cluster as ProtoCluster, HostHeader as ProtoHostHeader};
use http::uri::Authority;
use http::HeaderValue;
use sha2::{Digest, Sha256};

use super::BuildError;
use crate::balance::{Balancer, Policy};
use crate::health::{self, EndpointHealth, HealthPolicy, Outcome, RetryBudget, RetryPolicy};

/// How the proxy talks to a cluster's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
    /// Cleartext HTTP/2 with prior knowledge (Traefik's `h2c`), for gRPC backends.
    H2c,
}

impl Scheme {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::H2c => "h2c",
        }
    }
}

/// Which `Host` an endpoint receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostHeader {
    /// The client's (Traefik's `passHostHeader=true`).
    Pass,
    /// The endpoint's `address:port`.
    Endpoint,
}

/// A validated cluster with its balancer.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub name: String,
    pub endpoints: Box<[Endpoint]>,
    pub balancer: Balancer,
    pub scheme: Scheme,
    pub host_header: HostHeader,
    pub sticky: Option<Sticky>,
    /// Passive-health state, one per endpoint, in the same order.
    pub health: Box<[Arc<EndpointHealth>]>,
    pub health_policy: HealthPolicy,
    pub retry: RetryPolicy,
    pub budget: Arc<RetryBudget>,
    pub timeouts: Timeouts,
}

/// A cluster's own timeouts; `None`: the proxy's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct Timeouts {
    pub connect: Option<Duration>,
    pub first_byte: Option<Duration>,
    pub idle: Option<Duration>,
}

/// Endpoints a request was already sent to (indices below 64; others are not remembered).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tried(u64);

impl Tried {
    pub(crate) fn add(&mut self, index: usize) {
        if index < 64 {
            self.0 |= 1 << index;
        }
    }

    pub(crate) fn contains(self, index: usize) -> bool {
        index < 64 && self.0 & (1 << index) != 0
    }
}

/// A validated endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub address: String,
    pub port: u16,
    /// At least 1.
    pub weight: u32,
    pub id: String,
    /// `address:port` (IPv6 in brackets), ready to put into a request URI.
    pub authority: Authority,
    /// The same, as a `Host` value.
    pub host: HeaderValue,
    /// The socket address, when the address is an IP address (not a host name to resolve).
    pub socket: Option<std::net::SocketAddr>,
}

impl Cluster {
    /// The index of the endpoint the next request goes to by round robin, or `None` if empty.
    #[cfg(test)]
    pub(crate) fn pick(&self) -> Option<usize> {
        self.balancer.pick().filter(|&i| i < self.endpoints.len())
    }

    /// The endpoint the next request goes to: the balancer's choice, skipping ejected endpoints
    /// and those in `tried`; when every endpoint is ejected (or tried), an untried one, else any,
    /// so a cluster never refuses for want of a healthy endpoint. `None` if empty.
    pub(crate) fn choose(&self, tried: Tried, now: u64) -> Option<usize> {
        let len = self.endpoints.len();
        let load = |i: usize| self.health.get(i).map_or(0, |h| h.in_flight());
        let usable = |i: usize| {
            i < len && !tried.contains(i) && !self.health.get(i).is_some_and(|h| h.is_ejected(now))
        };
        let first = self.balancer.pick_by(load).filter(|&i| i < len)?;
        if usable(first) {
            return Some(first);
        }
        for _ in 1..len.max(2) * 2 {
            if let Some(i) = self.balancer.pick_by(load).filter(|&i| usable(i)) {
                return Some(i);
            }
        }
        // Everything is ejected or tried: an untried endpoint if there is one.
        (0..len)
            .map(|k| (first + k) % len)
            .find(|&i| !tried.contains(i))
            .or(Some(first))
    }

    /// Whether endpoint `index` is ejected now.
    pub(crate) fn is_ejected(&self, index: usize, now: u64) -> bool {
        self.health.get(index).is_some_and(|h| h.is_ejected(now))
    }

    /// Counts how an attempt at endpoint `index` went (see `health`).
    pub(crate) fn record(&self, index: usize, outcome: Outcome, now: u64) {
        let Some(state) = self.health.get(index) else {
            return;
        };
        let may_eject = || {
            let ejected = self.health.iter().filter(|h| h.is_ejected(now)).count();
            self.health_policy.may_eject(ejected, self.health.len())
        };
        if let Some(duration) = state.record(outcome, now, &self.health_policy, may_eject) {
            if let Some(endpoint) = self.endpoints.get(index) {
                health::on_ejection(&self.name, endpoint.authority.as_str(), duration);
            }
        }
    }

    /// Builds a cluster. `previous` is the cluster of the same name in the table being replaced.
    pub(crate) fn build(proto: &ProtoCluster, previous: Option<&Cluster>) -> Result<Self, Vec<BuildError>> {
        let mut errors = Vec::new();
        let mut endpoints = Vec::with_capacity(proto.endpoints.len());
        for (i, e) in proto.endpoints.iter().enumerate() {
            let fail = |reason: String| BuildError::Endpoint {
                cluster: proto.name.clone(),
                index: i,
                reason,
            };
            let Ok(port) = u16::try_from(e.port) else {
                errors.push(fail(format!("port {} is outside 1..65535", e.port)));
                continue;
            };
            let address = berth_model::parse_address(&e.address);
            let socket = match &address {
                Ok(berth_model::Address::Ip(ip)) => Some(std::net::SocketAddr::new(*ip, port)),
                _ => None,
            };
            let text = match address {
                Ok(berth_model::Address::Ip(std::net::IpAddr::V6(ip))) => format!("[{ip}]:{port}"),
                Ok(berth_model::Address::Ip(ip)) => format!("{ip}:{port}"),
                Ok(berth_model::Address::Name(name)) => format!("{name}:{port}"),
                Err(e) => {
                    errors.push(fail(e.to_string()));
                    continue;
                }
            };
            let (Ok(authority), Ok(host)) =
                (Authority::try_from(text.as_str()), HeaderValue::from_str(&text))
            else {
                errors.push(fail(format!("{text:?} is not a URI authority")));
                continue;
            };
            endpoints.push(Endpoint {
                address: e.address.clone(),
                port,
                weight: e.weight.max(1),
                id: e.id.clone(),
                authority,
                host,
                socket,
            });
        }
        let scheme = match proto.scheme.as_str() {
            "" | "http" => Scheme::Http,
            "https" => Scheme::Https,
            "h2c" => Scheme::H2c,
            other => {
                errors.push(BuildError::Cluster {
                    cluster: proto.name.clone(),
                    reason: format!("scheme {other:?} is not http, https or h2c"),
                });
                Scheme::Http
            }
        };
        let host_header = match ProtoHostHeader::try_from(proto.host_header) {
            Ok(ProtoHostHeader::Pass) => HostHeader::Pass,
            Ok(ProtoHostHeader::Endpoint) => HostHeader::Endpoint,
            Err(_) => {
                errors.push(BuildError::Cluster {
                    cluster: proto.name.clone(),
                    reason: format!("host_header {} is not one this proxy knows", proto.host_header),
                });
                HostHeader::Pass
            }
        };
        let sticky = match &proto.sticky {
            Some(cookie) => match Sticky::build(cookie, scheme, &endpoints) {
                Ok(sticky) => Some(sticky),
                Err(reason) => {
                    errors.push(BuildError::Cluster {
                        cluster: proto.name.clone(),
                        reason,
                    });
                    None
                }
            },
            None => None,
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let policy = match Balancing::try_from(proto.balancing) {
            Ok(Balancing::WeightedRoundRobin) => Policy::WeightedRoundRobin,
            Ok(Balancing::RoundRobin) => Policy::RoundRobin,
            Ok(Balancing::LeastRequest) => Policy::LeastRequest,
            Err(_) => {
                return Err(vec![BuildError::Cluster {
                    cluster: proto.name.clone(),
                    reason: format!("balancing {} is not one this proxy knows", proto.balancing),
                }])
            }
        };
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        let counter = previous
            .filter(|old| same_endpoints(&old.endpoints, &endpoints))
            .map(|old| old.balancer.counter().clone())
            .unwrap_or_else(Balancer::fresh_counter);
        let health = endpoints
            .iter()
            .map(|e| {
                previous
                    .and_then(|old| {
                        old.endpoints
                            .iter()
                            .position(|o| o.address == e.address && o.port == e.port)
                            .and_then(|i| old.health.get(i).cloned())
                    })
                    .unwrap_or_default()
            })
            .collect();
        let budget = previous.map(|old| old.budget.clone()).unwrap_or_default();
        let ms = |v: u64| (v > 0).then(|| Duration::from_millis(v));
        let timeouts = proto.timeouts.as_ref().map_or(Timeouts::default(), |t| Timeouts {
            connect: ms(t.connect_ms),
            first_byte: ms(t.first_byte_ms),
            idle: ms(t.idle_ms),
        });
        Ok(Self {
            name: proto.name.clone(),
            endpoints: endpoints.into_boxed_slice(),
            balancer: Balancer::with_policy(policy, &weights, counter),
            scheme,
            host_header,
            sticky,
            health,
            health_policy: HealthPolicy::from_proto(proto.passive_health.as_ref()),
            retry: RetryPolicy::from_proto(proto.retry.as_ref()),
            budget,
            timeouts,
        })
    }
}

fn same_endpoints(a: &[Endpoint], b: &[Endpoint]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.address == y.address && x.port == y.port && x.weight == y.weight)
}

/// Sticky sessions by cookie; see the module documentation.
#[derive(Debug)]
pub(crate) struct Sticky {
    pub cookie: String,
    /// The current cookie value of each endpoint → its index.
    by_value: HashMap<Box<str>, usize>,
    /// Values in Traefik's older formats → index.
    legacy: HashMap<Box<str>, usize>,
    /// The `Set-Cookie` that sends a client to each endpoint.
    set_cookie: Box<[HeaderValue]>,
}

/// Where a sticky cookie sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StickyChoice {
    pub endpoint: usize,
    /// The cookie is in an older format and must be set again.
    pub rewrite: bool,
}

impl Sticky {
    fn build(
        cookie: &berth_proto::v1::StickyCookie,
        scheme: Scheme,
        endpoints: &[Endpoint],
    ) -> Result<Self, String> {
        if cookie.name.is_empty() || !cookie.name.bytes().all(is_cookie_name_byte) {
            return Err(format!(
                "sticky cookie name {:?} is not a cookie name",
                cookie.name
            ));
        }
        let path = if cookie.path.is_empty() {
            "/"
        } else {
            cookie.path.as_str()
        };
        let same_site = match cookie.same_site.to_ascii_lowercase().as_str() {
            "" => "",
            "none" => "; SameSite=None",
            "lax" => "; SameSite=Lax",
            "strict" => "; SameSite=Strict",
            other => {
                return Err(format!(
                    "sticky cookie SameSite {other:?} is not none, lax or strict"
                ))
            }
        };
        let mut by_value = HashMap::with_capacity(endpoints.len());
        let mut legacy = HashMap::with_capacity(endpoints.len() * 3);
        let mut set_cookie = Vec::with_capacity(endpoints.len());
        for (i, e) in endpoints.iter().enumerate() {
            let url = format!("{}://{}", scheme.as_str(), e.authority);
            let value = sha256_16(&url);
            // Go's http.Cookie.String() order: Path, Max-Age, HttpOnly, Secure, SameSite.
            let mut text = format!("{}={value}; Path={}", cookie.name, sanitize_path(path));
            if cookie.max_age > 0 {
                let _ = write!(text, "; Max-Age={}", cookie.max_age);
            } else if cookie.max_age < 0 {
                text.push_str("; Max-Age=0");
            }
            if cookie.http_only {
                text.push_str("; HttpOnly");
            }
            if cookie.secure {
                text.push_str("; Secure");
            }
            text.push_str(same_site);
            set_cookie.push(
                HeaderValue::from_str(&text)
                    .map_err(|_| format!("sticky cookie {text:?} is not a header value"))?,
            );
            let fnv = fnv64(url.as_bytes());
            legacy.insert(fnv64(fnv.as_bytes()).into(), i);
            legacy.insert(fnv.into(), i);
            legacy.insert(url.into(), i);
            by_value.insert(value.into(), i);
        }
        Ok(Self {
            cookie: cookie.name.clone(),
            by_value,
            legacy,
            set_cookie: set_cookie.into_boxed_slice(),
        })
    }

    /// The endpoint a cookie value names, if it names a current one.
    pub(crate) fn find(&self, value: &str) -> Option<StickyChoice> {
        if let Some(&endpoint) = self.by_value.get(value) {
            return Some(StickyChoice {
                endpoint,
                rewrite: false,
            });
        }
        self.legacy.get(value).map(|&endpoint| StickyChoice {
            endpoint,
            rewrite: true,
        })
    }

    /// The `Set-Cookie` sending a client to endpoint `index`.
    pub(crate) fn set_cookie(&self, index: usize) -> Option<&HeaderValue> {
        self.set_cookie.get(index)
    }
}

/// A byte Go accepts in a cookie name (an HTTP token).
fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Go drops `;` and control bytes from a cookie path.
fn sanitize_path(path: &str) -> String {
    path.chars()
        .filter(|&c| (' '..='~').contains(&c) && c != ';')
        .collect()
}

/// The first 16 hex digits of SHA-256 (Traefik's `sha256Hash`).
fn sha256_16(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(16);
    for b in &digest[..8] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// FNV-1 64-bit, in lower-case hex without leading zeros (Go's `fnv.New64` and `FormatUint(_, 16)`).
fn fnv64(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        hash ^= u64::from(b);
    }
    format!("{hash:x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{Endpoint as ProtoEndpoint, StickyCookie};

    fn proto(endpoints: &[(&str, u32)], sticky: Option<StickyCookie>) -> ProtoCluster {
        ProtoCluster {
            name: "c".into(),
            endpoints: endpoints
                .iter()
                .map(|(a, p)| ProtoEndpoint {
                    address: a.to_string(),
                    port: *p,
                    weight: 1,
                    id: format!("{a}:{p}"),
                })
                .collect(),
            sticky,
            ..Default::default()
        }
    }

    #[test]
    fn hashes_as_traefik() {
        // Values computed with Go's crypto/sha256 and hash/fnv, as Traefik's sticky.go uses them.
        assert_eq!(sha256_16("http://127.0.0.1:8080"), "d30a576c03187167");
        assert_eq!(fnv64(b"http://127.0.0.1:8080"), "5a1cc52f3f46040c");
        assert_eq!(fnv64(b"5a1cc52f3f46040c"), "7d49894b220072d5");
        assert_eq!(fnv64(b""), "cbf29ce484222325");
        assert_eq!(fnv64(b"a"), "af63bd4c8601b7be");
    }

    #[test]
    fn cookies_as_go_writes_them() {
        let cookie = StickyCookie {
            name: "lb".into(),
            secure: true,
            http_only: true,
            same_site: "Lax".into(),
            max_age: 60,
            path: String::new(),
        };
        let c = Cluster::build(&proto(&[("10.0.0.1", 80), ("::1", 81)], Some(cookie)), None).expect("valid");
        let sticky = c.sticky.as_ref().expect("sticky");
        let value = sha256_16("http://10.0.0.1:80");
        assert_eq!(
            sticky.set_cookie(0).unwrap(),
            &format!("lb={value}; Path=/; Max-Age=60; HttpOnly; Secure; SameSite=Lax")
        );
        assert_eq!(
            sticky.find(&value),
            Some(StickyChoice {
                endpoint: 0,
                rewrite: false
            })
        );
        assert_eq!(
            sticky.find(&sha256_16("http://[::1]:81")).map(|c| c.endpoint),
            Some(1)
        );
        assert_eq!(
            sticky.find("http://[::1]:81"),
            Some(StickyChoice {
                endpoint: 1,
                rewrite: true
            })
        );
        let fnv = fnv64(b"http://10.0.0.1:80");
        assert_eq!(
            sticky.find(&fnv).map(|c| (c.endpoint, c.rewrite)),
            Some((0, true))
        );
        assert_eq!(sticky.find(&fnv64(fnv.as_bytes())).map(|c| c.endpoint), Some(0));
        assert_eq!(sticky.find("gone"), None);

        let plain = StickyCookie {
            name: "s".into(),
            path: "/app".into(),
            ..Default::default()
        };
        let c = Cluster::build(&proto(&[("10.0.0.1", 80)], Some(plain)), None).expect("valid");
        assert_eq!(
            c.sticky.unwrap().set_cookie(0).unwrap(),
            &format!("s={value}; Path=/app")
        );
        let odd = StickyCookie {
            name: "s".into(),
            path: "/a;b\u{1}c".into(),
            max_age: -1,
            same_site: "none".into(),
            ..Default::default()
        };
        let c = Cluster::build(&proto(&[("10.0.0.1", 80)], Some(odd)), None).expect("valid");
        assert_eq!(
            c.sticky.unwrap().set_cookie(0).unwrap(),
            &format!("s={value}; Path=/abc; Max-Age=0; SameSite=None")
        );
    }

    #[test]
    fn choose_skips_ejected_and_tried_endpoints() {
        let c = Cluster::build(
            &proto(&[("10.0.0.1", 80), ("10.0.0.2", 80), ("10.0.0.3", 80)], None),
            None,
        )
        .expect("valid");
        let now = 100;
        // Endpoint 1 refuses: ejected at once (1 of 3 is within the default 50%).
        c.record(1, Outcome::ConnectFailure, now);
        assert!(c.is_ejected(1, now));
        let picks: Vec<usize> = (0..6).map(|_| c.choose(Tried::default(), now).unwrap()).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        // A second ejection would pass 50%: refused, endpoint 2 stays in.
        c.record(2, Outcome::ConnectFailure, now);
        assert!(!c.is_ejected(2, now));
        let mut tried = Tried::default();
        tried.add(0);
        tried.add(2);
        assert_eq!(
            c.choose(tried, now),
            Some(1),
            "all else tried: the ejected one is still tried"
        );
        // Readmitted after the base ejection.
        let later = now + health::DEFAULT_BASE_EJECTION.as_millis() as u64;
        let picks: Vec<usize> = (0..6)
            .map(|_| c.choose(Tried::default(), later).unwrap())
            .collect();
        assert!(picks.contains(&1), "{picks:?}");
    }

    #[test]
    fn health_and_settings_carry_over_to_the_next_table() {
        let mut p = proto(&[("10.0.0.1", 80), ("10.0.0.2", 80)], None);
        p.balancing = Balancing::LeastRequest as i32;
        p.timeouts = Some(berth_proto::v1::Timeouts {
            connect_ms: 250,
            first_byte_ms: 0,
            idle_ms: 1000,
        });
        let old = Cluster::build(&p, None).expect("valid");
        old.record(1, Outcome::ConnectFailure, 10);
        assert_eq!(
            old.timeouts,
            Timeouts {
                connect: Some(Duration::from_millis(250)),
                first_byte: None,
                idle: Some(Duration::from_secs(1)),
            }
        );
        // 10.0.0.2 stays, 10.0.0.1 goes, 10.0.0.3 comes.
        let next =
            Cluster::build(&proto(&[("10.0.0.2", 80), ("10.0.0.3", 80)], None), Some(&old)).expect("valid");
        assert!(next.is_ejected(0, 10), "the ejection of 10.0.0.2 is kept");
        assert!(!next.is_ejected(1, 10));
        assert!(Arc::ptr_eq(&old.budget, &next.budget));
        let mut bad = p.clone();
        bad.balancing = 9;
        assert!(Cluster::build(&bad, None).is_err());
    }

    #[test]
    fn bad_clusters() {
        let bad_name = StickyCookie {
            name: "a b".into(),
            ..Default::default()
        };
        let errors =
            Cluster::build(&proto(&[("10.0.0.1", 80)], Some(bad_name)), None).expect_err("bad cookie");
        assert!(errors[0].to_string().contains("cookie name"), "{}", errors[0]);
        let errors = Cluster::build(&proto(&[("not a host!", 80), ("10.0.0.1", 70000)], None), None)
            .expect_err("bad endpoints");
        assert_eq!(errors.len(), 2);
        let mut https = proto(&[("10.0.0.1", 443)], None);
        https.scheme = "https".into();
        https.host_header = ProtoHostHeader::Endpoint as i32;
        let c = Cluster::build(&https, None).expect("valid");
        assert_eq!((c.scheme, c.host_header), (Scheme::Https, HostHeader::Endpoint));
        assert_eq!(c.endpoints[0].host, "10.0.0.1:443");
        https.scheme = "h2c".into();
        assert_eq!(Cluster::build(&https, None).expect("h2c").scheme, Scheme::H2c);
        https.scheme = "ftp".into();
        assert!(Cluster::build(&https, None).is_err());
    }
}
