//! The route table: an immutable, validated index built from one snapshot.
//!
//! For: turning a [`Snapshot`] into the structure the request path reads (per entrypoint: host →
//! routes, longest path prefix first), rejecting snapshots that cannot be served, and answering
//! "which route serves this host and path on this entrypoint" without locks or allocation.
//! Not for: swapping tables (see `state`) or anything per request beyond the lookup.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use berth_proto::v1::Snapshot;
use http::uri::Authority;
use thiserror::Error;

use crate::balance::Balancer;

/// One applied snapshot, indexed for lookup. Never mutated after [`RouteTable::build`].
#[derive(Debug)]
pub(crate) struct RouteTable {
    version: String,
    /// Every route of the snapshot, sorted by name (for the admin API).
    routes: Vec<Arc<Route>>,
    /// Clusters by name, so the next build can keep round-robin positions.
    clusters: HashMap<String, Arc<Cluster>>,
    /// Indexed like the proxy's entrypoints: host (normalized) → routes, longest prefix first.
    by_entrypoint: Box<[HostIndex]>,
}

/// Host (normalized) → the routes naming it, longest path prefix first.
type HostIndex = HashMap<Box<str>, Box<[Arc<Route>]>>;

/// A validated route.
#[derive(Debug)]
pub(crate) struct Route {
    pub name: String,
    pub service: String,
    /// Normalized (lowercase, no trailing dot).
    pub hosts: Vec<String>,
    pub path_prefix: String,
    /// As in the snapshot: empty means every entrypoint.
    pub entrypoints: Vec<String>,
    pub cluster: Arc<Cluster>,
}

/// A validated cluster with its balancer.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub name: String,
    pub endpoints: Box<[Endpoint]>,
    pub balancer: Balancer,
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
}

impl Cluster {
    /// The endpoint to send the next request to, or `None` if the cluster is empty.
    #[inline]
    pub(crate) fn pick(&self) -> Option<&Endpoint> {
        self.balancer.pick().and_then(|i| self.endpoints.get(i))
    }
}

/// The result of [`RouteTable::lookup`].
#[derive(Debug)]
pub(crate) enum Lookup<'a> {
    Found(&'a Arc<Route>),
    /// No route on this entrypoint names the host.
    UnknownHost,
    /// Routes name the host, but none of their path prefixes matches.
    NoPathMatch,
}

/// One reason a snapshot cannot be applied. The text is sent to the control plane in a NACK.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum SnapshotError {
    #[error("a route has an empty name")]
    RouteWithoutName,
    #[error("route {0:?} appears more than once")]
    DuplicateRoute(String),
    #[error("route {0:?} has no hosts")]
    RouteWithoutHosts(String),
    #[error("route {route:?}: host {host:?} is not a valid host name")]
    BadHost { route: String, host: String },
    #[error("route {route:?}: path prefix {prefix:?} must be empty or start with '/'")]
    BadPathPrefix { route: String, prefix: String },
    #[error("route {route:?} refers to cluster {cluster:?}, which is not in the snapshot")]
    UnknownCluster { route: String, cluster: String },
    #[error("a cluster has an empty name")]
    ClusterWithoutName,
    #[error("cluster {0:?} appears more than once")]
    DuplicateCluster(String),
    #[error("cluster {cluster:?}, endpoint {endpoint:?}: address {address:?} is neither an IP address nor a valid host name")]
    BadAddress {
        cluster: String,
        endpoint: String,
        address: String,
    },
    #[error("cluster {cluster:?}, endpoint {endpoint:?}: port {port} is outside 1..65535")]
    BadPort {
        cluster: String,
        endpoint: String,
        port: u32,
    },
}

/// Every reason a snapshot was rejected (at least one).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SnapshotErrors(pub Vec<SnapshotError>);

impl fmt::Display for SnapshotErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() > 1 {
            write!(f, "{} problems: ", self.0.len())?;
        }
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SnapshotErrors {}

impl RouteTable {
    /// Validates `snapshot` and indexes it for the proxy's `entrypoints` (in the order the listeners
    /// use). Routes limited to entrypoints this proxy does not have are kept for the admin API but
    /// served nowhere. `previous`, if any, lends round-robin positions to unchanged clusters.
    pub(crate) fn build<S: AsRef<str>>(
        version: &str,
        snapshot: &Snapshot,
        entrypoints: &[S],
        previous: Option<&RouteTable>,
    ) -> Result<Self, SnapshotErrors> {
        let mut errors = Vec::new();

        let mut clusters: HashMap<String, Arc<Cluster>> = HashMap::with_capacity(snapshot.clusters.len());
        for c in &snapshot.clusters {
            if c.name.is_empty() {
                errors.push(SnapshotError::ClusterWithoutName);
                continue;
            }
            if clusters.contains_key(&c.name) {
                errors.push(SnapshotError::DuplicateCluster(c.name.clone()));
                continue;
            }
            let mut endpoints = Vec::with_capacity(c.endpoints.len());
            for e in &c.endpoints {
                let label = if e.id.is_empty() {
                    format!("{}:{}", e.address, e.port)
                } else {
                    e.id.clone()
                };
                let port = match u16::try_from(e.port) {
                    Ok(p) if p != 0 => p,
                    _ => {
                        errors.push(SnapshotError::BadPort {
                            cluster: c.name.clone(),
                            endpoint: label,
                            port: e.port,
                        });
                        continue;
                    }
                };
                let Some(authority) = endpoint_authority(&e.address, port) else {
                    errors.push(SnapshotError::BadAddress {
                        cluster: c.name.clone(),
                        endpoint: label,
                        address: e.address.clone(),
                    });
                    continue;
                };
                endpoints.push(Endpoint {
                    address: e.address.clone(),
                    port,
                    weight: e.weight.max(1),
                    id: e.id.clone(),
                    authority,
                });
            }
            let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
            let counter = previous
                .and_then(|p| p.clusters.get(&c.name))
                .filter(|old| same_endpoints(&old.endpoints, &endpoints))
                .map(|old| old.balancer.counter().clone())
                .unwrap_or_else(Balancer::fresh_counter);
            clusters.insert(
                c.name.clone(),
                Arc::new(Cluster {
                    name: c.name.clone(),
                    endpoints: endpoints.into_boxed_slice(),
                    balancer: Balancer::new(&weights, counter),
                }),
            );
        }

        let mut routes: Vec<Arc<Route>> = Vec::with_capacity(snapshot.routes.len());
        let mut seen = std::collections::HashSet::with_capacity(snapshot.routes.len());
        for r in &snapshot.routes {
            if r.name.is_empty() {
                errors.push(SnapshotError::RouteWithoutName);
                continue;
            }
            if !seen.insert(r.name.as_str()) {
                errors.push(SnapshotError::DuplicateRoute(r.name.clone()));
                continue;
            }
            let mut ok = true;
            if r.hosts.is_empty() {
                errors.push(SnapshotError::RouteWithoutHosts(r.name.clone()));
                ok = false;
            }
            let mut hosts = Vec::with_capacity(r.hosts.len());
            for h in &r.hosts {
                match normalize_route_host(h) {
                    Some(n) => {
                        if !hosts.contains(&n) {
                            hosts.push(n);
                        }
                    }
                    None => {
                        errors.push(SnapshotError::BadHost {
                            route: r.name.clone(),
                            host: h.clone(),
                        });
                        ok = false;
                    }
                }
            }
            if !r.path_prefix.is_empty() && !r.path_prefix.starts_with('/') {
                errors.push(SnapshotError::BadPathPrefix {
                    route: r.name.clone(),
                    prefix: r.path_prefix.clone(),
                });
                ok = false;
            }
            // A cluster with a bad endpoint is still indexed (its endpoint error is reported), so a
            // miss here really means the snapshot lacks the cluster.
            let cluster = clusters.get(&r.cluster).cloned();
            if cluster.is_none() {
                errors.push(SnapshotError::UnknownCluster {
                    route: r.name.clone(),
                    cluster: r.cluster.clone(),
                });
                ok = false;
            }
            if let (true, Some(cluster)) = (ok, cluster) {
                routes.push(Arc::new(Route {
                    name: r.name.clone(),
                    service: r.service.clone(),
                    hosts,
                    path_prefix: r.path_prefix.clone(),
                    entrypoints: r.entrypoints.clone(),
                    cluster,
                }));
            }
        }
        if !errors.is_empty() {
            return Err(SnapshotErrors(errors));
        }
        routes.sort_by(|a, b| a.name.cmp(&b.name));

        let mut by_entrypoint = Vec::with_capacity(entrypoints.len());
        for ep in entrypoints {
            let ep = ep.as_ref();
            let mut hosts: HashMap<Box<str>, Vec<Arc<Route>>> = HashMap::new();
            for route in routes
                .iter()
                .filter(|r| r.entrypoints.is_empty() || r.entrypoints.iter().any(|e| e == ep))
            {
                for host in &route.hosts {
                    hosts.entry(host.as_str().into()).or_default().push(route.clone());
                }
            }
            let index = hosts
                .into_iter()
                .map(|(host, mut routes)| {
                    // Longest prefix first; equal prefixes in name order, so the result is deterministic.
                    routes.sort_by(|a, b| {
                        b.path_prefix
                            .len()
                            .cmp(&a.path_prefix.len())
                            .then_with(|| a.name.cmp(&b.name))
                    });
                    (host, routes.into_boxed_slice())
                })
                .collect();
            by_entrypoint.push(index);
        }

        Ok(Self {
            version: version.to_owned(),
            routes,
            clusters,
            by_entrypoint: by_entrypoint.into_boxed_slice(),
        })
    }

    pub(crate) fn version(&self) -> &str {
        &self.version
    }

    /// Every route of the snapshot, sorted by name.
    pub(crate) fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The route serving `host` (already normalized, see [`normalize_host`]) and `path` on the
    /// entrypoint with index `entrypoint`.
    #[inline]
    pub(crate) fn lookup(&self, entrypoint: usize, host: &str, path: &str) -> Lookup<'_> {
        let Some(routes) = self
            .by_entrypoint
            .get(entrypoint)
            .and_then(|hosts| hosts.get(host))
        else {
            return Lookup::UnknownHost;
        };
        match routes.iter().find(|r| path.starts_with(r.path_prefix.as_str())) {
            Some(route) => Lookup::Found(route),
            None => Lookup::NoPathMatch,
        }
    }
}

fn same_endpoints(a: &[Endpoint], b: &[Endpoint]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.address == y.address && x.port == y.port && x.weight == y.weight)
}

/// Normalizes a request's host for lookup: drops the port, brackets around an IPv6 address and a
/// trailing dot, and lowercases. Borrows (no allocation) when the host is already lowercase.
#[inline]
pub(crate) fn normalize_host(raw: &str) -> Cow<'_, str> {
    let host = if let Some(rest) = raw.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(inner, _)| inner)
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// Normalizes and validates a route's host: a host name or an IP address, without port.
fn normalize_route_host(raw: &str) -> Option<String> {
    let trimmed = raw
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(raw);
    if trimmed.parse::<IpAddr>().is_ok() {
        return Some(trimmed.to_ascii_lowercase());
    }
    let host = trimmed.strip_suffix('.').unwrap_or(trimmed);
    is_host_name(host).then(|| host.to_ascii_lowercase())
}

/// `address:port` as a URI authority, if the address is an IP address or a valid host name.
fn endpoint_authority(address: &str, port: u16) -> Option<Authority> {
    let text = match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        Ok(IpAddr::V4(ip)) => format!("{ip}:{port}"),
        Err(_) if is_host_name(address.strip_suffix('.').unwrap_or(address)) => format!("{address}:{port}"),
        Err(_) => return None,
    };
    Authority::try_from(text).ok()
}

/// A DNS host name: dot-separated labels of letters, digits, '-' (not at either end) and '_'
/// (tolerated, as container and Consul names use it), each 1 to 63 bytes, 253 bytes at most.
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{Cluster as PCluster, Endpoint as PEndpoint, Route as PRoute};

    fn ep(address: &str, port: u32, weight: u32) -> PEndpoint {
        PEndpoint {
            address: address.into(),
            port,
            weight,
            id: format!("{address}-{port}"),
        }
    }

    fn route(name: &str, hosts: &[&str], prefix: &str, entrypoints: &[&str], cluster: &str) -> PRoute {
        PRoute {
            name: name.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path_prefix: prefix.into(),
            entrypoints: entrypoints.iter().map(|e| e.to_string()).collect(),
            cluster: cluster.into(),
            service: format!("{name}-svc"),
        }
    }

    fn cluster(name: &str, endpoints: Vec<PEndpoint>) -> PCluster {
        PCluster {
            name: name.into(),
            endpoints,
        }
    }

    fn sample() -> Snapshot {
        Snapshot {
            routes: vec![
                route("go", &["Go.Example", "www.go.example"], "", &[], "go"),
                route("go-api", &["go.example"], "/api", &[], "api"),
                route("go-api-v2", &["go.example"], "/api/v2", &["http"], "api"),
                route("internal", &["internal.example"], "", &["internal"], "go"),
                route("elsewhere", &["other.example"], "", &["not-on-this-proxy"], "go"),
            ],
            clusters: vec![
                cluster("go", vec![ep("127.0.0.1", 9001, 1)]),
                cluster("api", vec![ep("127.0.0.1", 9002, 1), ep("::1", 9003, 0)]),
            ],
        }
    }

    fn build(snapshot: &Snapshot) -> RouteTable {
        RouteTable::build("v1", snapshot, &["http", "internal"], None).expect("valid snapshot")
    }

    fn found(table: &RouteTable, ep: usize, host: &str, path: &str) -> Option<String> {
        match table.lookup(ep, &normalize_host(host), path) {
            Lookup::Found(r) => Some(r.name.clone()),
            _ => None,
        }
    }

    #[test]
    fn host_matching_ignores_case_and_port() {
        let t = build(&sample());
        assert_eq!(found(&t, 0, "go.example", "/").as_deref(), Some("go"));
        assert_eq!(found(&t, 0, "Go.Example:8080", "/").as_deref(), Some("go"));
        assert_eq!(found(&t, 0, "GO.EXAMPLE.", "/").as_deref(), Some("go"));
        assert_eq!(found(&t, 0, "www.go.example", "/x").as_deref(), Some("go"));
        assert!(matches!(t.lookup(0, "nope.example", "/"), Lookup::UnknownHost));
    }

    #[test]
    fn longest_prefix_wins() {
        let t = build(&sample());
        assert_eq!(
            found(&t, 0, "go.example", "/api/v2/users").as_deref(),
            Some("go-api-v2")
        );
        assert_eq!(found(&t, 0, "go.example", "/api/v1").as_deref(), Some("go-api"));
        assert_eq!(found(&t, 0, "go.example", "/apix").as_deref(), Some("go-api"));
        assert_eq!(found(&t, 0, "go.example", "/ap").as_deref(), Some("go"));
    }

    #[test]
    fn entrypoint_filtering() {
        let t = build(&sample());
        // "go-api-v2" is limited to "http": on "internal" the shorter prefix serves.
        assert_eq!(
            found(&t, 1, "go.example", "/api/v2/users").as_deref(),
            Some("go-api")
        );
        // Empty entrypoints means every entrypoint.
        assert_eq!(found(&t, 1, "go.example", "/").as_deref(), Some("go"));
        assert_eq!(found(&t, 1, "internal.example", "/").as_deref(), Some("internal"));
        assert_eq!(found(&t, 0, "internal.example", "/"), None);
        // Routes for entrypoints this proxy lacks are listed but served nowhere.
        assert_eq!(found(&t, 0, "other.example", "/"), None);
        assert_eq!(found(&t, 1, "other.example", "/"), None);
        assert_eq!(t.routes().len(), 5);
        // An entrypoint index out of range finds nothing rather than panicking.
        assert!(matches!(t.lookup(7, "go.example", "/"), Lookup::UnknownHost));
    }

    #[test]
    fn no_path_match() {
        let mut s = sample();
        s.routes = vec![route("only-api", &["a.example"], "/api", &[], "go")];
        let t = build(&s);
        assert!(matches!(t.lookup(0, "a.example", "/"), Lookup::NoPathMatch));
    }

    #[test]
    fn normalize_host_borrows_when_lowercase() {
        assert!(matches!(
            normalize_host("go.example:80"),
            Cow::Borrowed("go.example")
        ));
        assert!(matches!(normalize_host("Go.Example"), Cow::Owned(ref s) if s == "go.example"));
        assert_eq!(normalize_host("[::1]:8080"), "::1");
        assert_eq!(normalize_host("[::1]"), "::1");
        assert_eq!(normalize_host("10.0.0.1:80"), "10.0.0.1");
        assert_eq!(normalize_host("host:notaport"), "host:notaport");
    }

    #[test]
    fn endpoints_and_weights() {
        let t = build(&sample());
        let api = &t.clusters["api"];
        assert_eq!(api.endpoints[0].authority.as_str(), "127.0.0.1:9002");
        assert_eq!(api.endpoints[1].authority.as_str(), "[::1]:9003");
        assert_eq!(api.endpoints[1].weight, 1, "weight 0 counts as 1");
        let mut counts = [0; 2];
        for _ in 0..10 {
            let e = api.pick().expect("endpoints");
            counts[usize::from(e.port != 9002)] += 1;
        }
        assert_eq!(counts, [5, 5]);
    }

    #[test]
    fn round_robin_position_survives_unchanged_swaps() {
        let s = sample();
        let first = build(&s);
        assert_eq!(first.clusters["api"].pick().map(|e| e.port), Some(9002));
        let second = RouteTable::build("v2", &s, &["http"], Some(&first)).expect("valid");
        assert_eq!(second.clusters["api"].pick().map(|e| e.port), Some(9003));
        let mut changed = s.clone();
        changed.clusters[1].endpoints.push(ep("127.0.0.1", 9004, 1));
        let third = RouteTable::build("v3", &changed, &["http"], Some(&second)).expect("valid");
        assert_eq!(
            third.clusters["api"].pick().map(|e| e.port),
            Some(9002),
            "changed cluster starts over"
        );
    }

    #[test]
    fn host_names_as_endpoints() {
        let mut s = sample();
        s.clusters[0].endpoints = vec![ep("web-1.service.consul", 80, 1), ep("my_container", 8080, 1)];
        let t = build(&s);
        assert_eq!(
            t.clusters["go"].endpoints[0].authority.as_str(),
            "web-1.service.consul:80"
        );
    }

    fn rejection(s: &Snapshot) -> String {
        RouteTable::build("bad", s, &["http"], None)
            .expect_err("must be rejected")
            .to_string()
    }

    #[test]
    fn validation_names_the_culprit() {
        let mut s = sample();
        s.clusters[1].endpoints.push(PEndpoint {
            address: "not a host!".into(),
            port: 80,
            weight: 1,
            id: "api-3".into(),
        });
        assert_eq!(
            rejection(&s),
            r#"cluster "api", endpoint "api-3": address "not a host!" is neither an IP address nor a valid host name"#
        );

        let mut s = sample();
        s.clusters[0].endpoints[0].port = 0;
        assert_eq!(
            rejection(&s),
            r#"cluster "go", endpoint "127.0.0.1-9001": port 0 is outside 1..65535"#
        );
        s.clusters[0].endpoints[0].port = 70000;
        assert!(rejection(&s).contains("port 70000 is outside 1..65535"));

        let mut s = sample();
        s.routes[0].cluster = "ghost".into();
        assert_eq!(
            rejection(&s),
            r#"route "go" refers to cluster "ghost", which is not in the snapshot"#
        );

        let mut s = sample();
        s.routes[0].hosts.clear();
        assert_eq!(rejection(&s), r#"route "go" has no hosts"#);

        let mut s = sample();
        s.routes[0].hosts.push("bad host".into());
        assert_eq!(
            rejection(&s),
            r#"route "go": host "bad host" is not a valid host name"#
        );

        let mut s = sample();
        s.routes[1].path_prefix = "api".into();
        assert!(
            rejection(&s).contains(r#"route "go-api": path prefix "api" must be empty or start with '/'"#)
        );

        let mut s = sample();
        s.routes.push(s.routes[0].clone());
        s.clusters.push(s.clusters[0].clone());
        let text = rejection(&s);
        assert!(text.starts_with("2 problems: "), "{text}");
        assert!(text.contains(r#"cluster "go" appears more than once"#), "{text}");
        assert!(text.contains(r#"route "go" appears more than once"#), "{text}");
    }

    #[test]
    fn rejected_cluster_is_not_reported_twice() {
        let mut s = sample();
        s.clusters[0].endpoints[0].address = "-bad-".into();
        let text = rejection(&s);
        assert!(!text.contains("not in the snapshot"), "{text}");
        assert!(text.contains(r#"address "-bad-""#), "{text}");
    }

    #[test]
    fn empty_cluster_is_valid() {
        let mut s = sample();
        s.clusters[0].endpoints.clear();
        let t = build(&s);
        assert!(t.clusters["go"].pick().is_none());
    }

    #[test]
    fn host_name_rules() {
        for ok in [
            "a",
            "go.example",
            "a-b.c",
            "x_y.example",
            "xn--bcher-kva.example",
            "1.2.3.4",
        ] {
            assert!(is_host_name(ok), "{ok}");
        }
        for bad in [
            "",
            "a..b",
            "-a.example",
            "a-.example",
            "a b",
            "a:80",
            &"x".repeat(64),
        ] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }
}
