//! The checks of one cluster: scheme, host-header and balancing values this build knows,
//! endpoints (address by the one address rule, port, weight), the sticky cookie, and `requires`.

use berth_proto::v1::{Balancing, Cluster, Endpoint, HostHeader, StickyCookie};

use super::{has_control, Scope};
use crate::features::cluster_required_features;
use crate::host::parse_address;
use crate::problem::Problem;

pub(super) fn check(scope: &mut Scope<'_>, cluster: &Cluster) {
    if !matches!(cluster.scheme.as_str(), "" | "http" | "https" | "h2c") {
        scope.add("scheme", Problem::ClusterScheme(cluster.scheme.clone()));
    }
    if HostHeader::try_from(cluster.host_header).is_err() {
        scope.add(
            "host_header",
            Problem::UnknownEnum {
                value: cluster.host_header,
                name: "HostHeader",
            },
        );
    }
    if Balancing::try_from(cluster.balancing).is_err() {
        scope.add(
            "balancing",
            Problem::UnknownEnum {
                value: cluster.balancing,
                name: "Balancing",
            },
        );
    }
    for (i, endpoint) in cluster.endpoints.iter().enumerate() {
        check_endpoint(scope, i, endpoint);
    }
    if let Some(sticky) = &cluster.sticky {
        check_sticky(scope, sticky);
    }
    check_upstream(scope, cluster);
    scope.requires(&cluster.requires, cluster_required_features(cluster));
}

fn check_endpoint(scope: &mut Scope<'_>, i: usize, endpoint: &Endpoint) {
    if let Err(e) = parse_address(&endpoint.address) {
        scope.add(format!("endpoints[{i}].address"), Problem::Host(e));
    }
    if !(1..=65535).contains(&endpoint.port) {
        scope.add(
            format!("endpoints[{i}].port"),
            Problem::OutOfRange {
                value: endpoint.port.into(),
                allowed: "1 to 65535",
            },
        );
    }
    if endpoint.weight < 1 {
        scope.add(
            format!("endpoints[{i}].weight"),
            Problem::OutOfRange {
                value: endpoint.weight.into(),
                allowed: "at least 1",
            },
        );
    }
}

/// A day, in milliseconds: the longest timeout or ejection a cluster may ask for.
const DAY_MS: u64 = 86_400_000;

/// Timeouts, passive health and retry policy: in range, and ejections no longer than their cap.
fn check_upstream(scope: &mut Scope<'_>, cluster: &Cluster) {
    const A_DAY: &str = "at most a day";
    let mut limits: Vec<(&str, u64, u64, &'static str)> = Vec::new();
    if let Some(t) = &cluster.timeouts {
        limits.push(("timeouts.connect_ms", t.connect_ms, DAY_MS, A_DAY));
        limits.push(("timeouts.first_byte_ms", t.first_byte_ms, DAY_MS, A_DAY));
        limits.push(("timeouts.idle_ms", t.idle_ms, DAY_MS, A_DAY));
    }
    if let Some(h) = &cluster.passive_health {
        limits.push((
            "passive_health.base_ejection_ms",
            h.base_ejection_ms,
            DAY_MS,
            A_DAY,
        ));
        limits.push(("passive_health.max_ejection_ms", h.max_ejection_ms, DAY_MS, A_DAY));
        let percent = h.max_ejected_percent.into();
        limits.push(("passive_health.max_ejected_percent", percent, 100, "0 to 100"));
    }
    if let Some(r) = &cluster.retry {
        limits.push(("retry.attempts", r.attempts.into(), 10, "0 to 10"));
        limits.push(("retry.budget_percent", r.budget_percent.into(), 100, "0 to 100"));
    }
    for (place, value, max, allowed) in limits {
        if value > max {
            let value = value.into();
            scope.add(place, Problem::OutOfRange { value, allowed });
        }
    }
    if let Some(h) = &cluster.passive_health {
        if h.max_ejection_ms != 0 && h.max_ejection_ms < h.base_ejection_ms {
            let (value, allowed) = (h.max_ejection_ms.into(), "0 or at least base_ejection_ms");
            scope.add(
                "passive_health.max_ejection_ms",
                Problem::OutOfRange { value, allowed },
            );
        }
    }
    if let Some(r) = &cluster.retry {
        for (i, method) in r.methods.iter().enumerate() {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase() || b == b'-') {
                scope.add(format!("retry.methods[{i}]"), Problem::Method(method.clone()));
            }
        }
    }
}

fn check_sticky(scope: &mut Scope<'_>, sticky: &StickyCookie) {
    if sticky.name.is_empty() {
        scope.add("sticky.name", Problem::Empty);
    } else if !is_cookie_token(&sticky.name) {
        scope.add("sticky.name", Problem::CookieName(sticky.name.clone()));
    }
    if !matches!(sticky.same_site.as_str(), "" | "none" | "lax" | "strict") {
        scope.add("sticky.same_site", Problem::SameSite(sticky.same_site.clone()));
    }
    if !sticky.path.is_empty() {
        if !sticky.path.starts_with('/') {
            scope.add("sticky.path", Problem::NotAbsolute(sticky.path.clone()));
        } else if has_control(&sticky.path) || sticky.path.contains(';') {
            scope.add("sticky.path", Problem::ControlCharacter(sticky.path.clone()));
        }
    }
}

/// An RFC 6265 cookie name: an RFC 7230 token (visible ASCII except separators).
fn is_cookie_token(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::cluster;
    use crate::validate::validate;
    use berth_proto::v1::Snapshot;

    fn problems(c: Cluster) -> Vec<String> {
        let snapshot = Snapshot {
            routes: vec![],
            clusters: vec![c],
        };
        match validate(&snapshot) {
            Ok(()) => vec![],
            Err(e) => e.problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_plain_cluster_is_valid() {
        assert!(problems(cluster("c")).is_empty());
        let mut c = cluster("c");
        c.endpoints.clear();
        assert!(problems(c).is_empty(), "an empty cluster is valid (503)");
    }

    #[test]
    fn endpoints() {
        let mut c = cluster("c");
        c.endpoints[0].address = "-bad-".into();
        c.endpoints[0].port = 0;
        c.endpoints[0].weight = 0;
        c.endpoints.push(Endpoint {
            address: "db.service.consul".into(),
            port: 70000,
            weight: 3,
            id: String::new(),
        });
        c.endpoints.push(Endpoint {
            address: "::1".into(),
            port: 65535,
            weight: 1,
            id: String::new(),
        });
        assert_eq!(
            problems(c),
            vec![
                r#"cluster "c": endpoints[0].address: host "-bad-": label "-bad-" starts or ends with '-'"#,
                r#"cluster "c": endpoints[0].port: 0 is out of range (1 to 65535)"#,
                r#"cluster "c": endpoints[0].weight: 0 is out of range (at least 1)"#,
                r#"cluster "c": endpoints[1].port: 70000 is out of range (1 to 65535)"#,
            ]
        );
        let mut c = cluster("c");
        c.endpoints[0].address = String::new();
        assert_eq!(
            problems(c),
            vec![r#"cluster "c": endpoints[0].address: host "": is empty"#]
        );
    }

    #[test]
    fn upstream_settings() {
        use berth_proto::v1::{PassiveHealth, RetryPolicy, Timeouts};
        let mut c = cluster("c");
        c.timeouts = Some(Timeouts {
            connect_ms: 500,
            first_byte_ms: 0,
            idle_ms: 90_000,
        });
        c.passive_health = Some(PassiveHealth {
            base_ejection_ms: 1000,
            max_ejection_ms: 0,
            max_ejected_percent: 100,
            ..Default::default()
        });
        c.retry = Some(RetryPolicy {
            attempts: 3,
            methods: vec!["GET".into()],
            ..Default::default()
        });
        assert!(problems(c.clone()).is_empty());
        c.timeouts.as_mut().unwrap().idle_ms = DAY_MS + 1;
        c.passive_health = Some(PassiveHealth {
            base_ejection_ms: 2000,
            max_ejection_ms: 1000,
            max_ejected_percent: 101,
            ..Default::default()
        });
        c.retry = Some(RetryPolicy {
            attempts: 11,
            methods: vec!["get".into()],
            budget_percent: 200,
            ..Default::default()
        });
        assert_eq!(
            problems(c),
            vec![
                r#"cluster "c": timeouts.idle_ms: 86400001 is out of range (at most a day)"#,
                r#"cluster "c": passive_health.max_ejected_percent: 101 is out of range (0 to 100)"#,
                r#"cluster "c": retry.attempts: 11 is out of range (0 to 10)"#,
                r#"cluster "c": retry.budget_percent: 200 is out of range (0 to 100)"#,
                r#"cluster "c": passive_health.max_ejection_ms: 1000 is out of range (0 or at least base_ejection_ms)"#,
                r#"cluster "c": retry.methods[0]: "get" is not an HTTP method"#,
            ]
        );
    }

    #[test]
    fn scheme_and_enums() {
        let mut c = cluster("c");
        c.scheme = "h2".into();
        c.host_header = 7;
        c.balancing = -1;
        assert_eq!(
            problems(c),
            vec![
                r#"cluster "c": scheme: "h2" is not a backend scheme Berth knows (http, https or h2c)"#,
                r#"cluster "c": host_header: 7 is not a HostHeader this version of Berth knows"#,
                r#"cluster "c": balancing: -1 is not a Balancing this version of Berth knows"#,
            ]
        );
    }

    #[test]
    fn https_and_endpoint_host_need_their_features() {
        let mut c = cluster("c");
        c.scheme = "https".into();
        c.host_header = HostHeader::Endpoint as i32;
        assert_eq!(
            problems(c.clone()),
            vec![
                r#"cluster "c": requires: uses "cluster/endpoint_host" but does not list it in requires"#,
                r#"cluster "c": requires: uses "cluster/https" but does not list it in requires"#,
            ]
        );
        c.requires = vec!["cluster/https".into(), "cluster/endpoint_host".into()];
        assert!(problems(c).is_empty());
    }

    #[test]
    fn sticky_cookie() {
        let mut c = cluster("c");
        c.requires = vec!["cluster/sticky_cookie".into()];
        c.sticky = Some(StickyCookie {
            name: "srv_id".into(),
            same_site: "lax".into(),
            path: "/app".into(),
            ..StickyCookie::default()
        });
        assert!(problems(c.clone()).is_empty());
        c.sticky = Some(StickyCookie {
            name: "a b".into(),
            same_site: "Lax".into(),
            path: "app".into(),
            ..StickyCookie::default()
        });
        assert_eq!(
            problems(c.clone()),
            vec![
                r#"cluster "c": sticky.name: "a b" is not a valid cookie name"#,
                r#"cluster "c": sticky.same_site: "Lax" is not a SameSite value (none, lax, strict, or empty)"#,
                r#"cluster "c": sticky.path: "app" does not start with '/'"#,
            ]
        );
        c.sticky = Some(StickyCookie {
            path: "/a;b".into(),
            ..StickyCookie::default()
        });
        assert_eq!(problems(c).len(), 2, "empty name and a ';' in the path");
    }

    #[test]
    fn cookie_tokens() {
        assert!(is_cookie_token("_TRAEFIK_backend-1.x"));
        assert!(!is_cookie_token("a=b"));
        assert!(!is_cookie_token("a;b"));
        assert!(!is_cookie_token("é"));
    }
}
