//! One Traefik v2/v3 service from its labels (`<prefix>.http.services.<name>.loadbalancer...`):
//! what the cluster shares (pass-host-header, sticky cookie, balancing, service middlewares), and
//! what each instance says about its own server (port, scheme, weight).
//!
//! `strategy` maps to the cluster's balancing (`wrr`: weighted round robin, `p2c`: least request
//! with two random choices; `hrw` and `leasttime` are reported and balanced by weighted round
//! robin) and `passiveHealthCheck` to its passive health. Options Berth handles otherwise (active
//! health checks: Consul's health decides; response forwarding; servers transports) are reported
//! as ignored; a server given by URL is refused.
//!
//! Not for: endpoints (the module root adds the instances) or routers.

use berth_proto::v1::{Balancing, PassiveHealth, StickyCookie};

use crate::labels::{Fields, Leaf, Node};
use crate::values::{self, ValueError};

/// What all instances of a Traefik service share.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Service {
    /// `passHostHeader` (Traefik's default: true).
    pub pass_host_header: bool,
    pub sticky: Option<StickyCookie>,
    /// Middlewares of the service, as written, run after the router's.
    pub middlewares: Vec<(String, Option<String>)>,
    /// `strategy`: `wrr` (default) is weighted round robin, `p2c` least request.
    pub balancing: Balancing,
    /// `passiveHealthCheck`: `maxFailedAttempts` failures eject a server for `failureWindow`.
    pub passive_health: Option<PassiveHealth>,
}

/// What one instance says about its server in a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Server {
    /// `server.port`; the instance's port when absent.
    pub port: Option<u16>,
    /// `server.scheme`, lower case: "http" (default), "https" or "h2c" (cleartext HTTP/2, for
    /// gRPC backends).
    pub scheme: String,
    /// `server.weight` (default 1; 0 takes no traffic).
    pub weight: u32,
}

pub(crate) use crate::labels::Note;

/// Why a service cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("service {service:?}: {problem}")]
pub(crate) struct ServiceError {
    pub service: String,
    pub tag: Option<String>,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Problem {
    #[error("has no load balancer (Traefik needs loadbalancer options on a service it creates from labels)")]
    NoLoadBalancer,
    #[error("{option}: {error}")]
    Value { option: &'static str, error: ValueError },
    #[error("server.scheme {0:?} is not supported (http, https or h2c)")]
    Scheme(String),
    #[error("server.url is not implemented by Berth: the servers are the Consul instances")]
    Url,
    #[error("strategy {0:?} is not a Traefik load-balancing strategy")]
    Strategy(String),
    #[error("has no option {0:?}")]
    UnknownOption(String),
    #[error("middlewares has an empty name")]
    EmptyMiddleware,
    #[error("given twice with different values ({first:?} and {second:?})")]
    Clash { first: String, second: String },
}

fn fail<T>(service: &str, leaf: Option<&Leaf>, problem: Problem) -> Result<T, ServiceError> {
    Err(ServiceError {
        service: service.to_string(),
        tag: leaf.map(|l| l.tag.clone()),
        problem,
    })
}

/// Reads the shared options of service `name` (its node is absent for Traefik's default
/// service, which has the defaults).
pub(crate) fn read(name: &str, node: Option<&Node>) -> Result<(Service, Vec<Note>), ServiceError> {
    let mut service = Service {
        pass_host_header: true,
        sticky: None,
        middlewares: Vec::new(),
        balancing: Balancing::WeightedRoundRobin,
        passive_health: None,
    };
    let mut notes = Vec::new();
    let Some(node) = node else {
        return Ok((service, notes));
    };
    if let Some((leaf, first, second)) = node.clash_values() {
        return fail(name, Some(leaf), Problem::Clash { first, second });
    }
    let mut fields = Fields::new(node);
    if let Some(leaf) = fields.value("middlewares") {
        let list = values::split_list(&leaf.value);
        if list.iter().any(String::is_empty) {
            return fail(name, Some(leaf), Problem::EmptyMiddleware);
        }
        service.middlewares = list.into_iter().map(|m| (m, Some(leaf.tag.clone()))).collect();
    }
    let lb = fields.take("loadbalancer");
    if let Some(unknown) = fields.unknown().first().copied() {
        return fail(
            name,
            unknown.first_leaf(),
            Problem::UnknownOption(unknown.name.clone()),
        );
    }
    let Some(lb) = lb else {
        return fail(name, node.first_leaf(), Problem::NoLoadBalancer);
    };

    let mut fields = Fields::new(lb);
    let _server = fields.take("server");
    if let Some(leaf) = fields.value("passhostheader") {
        service.pass_host_header = values::parse_bool(&leaf.value).or_else(|error| {
            fail(
                name,
                Some(leaf),
                Problem::Value {
                    option: "passHostHeader",
                    error,
                },
            )
        })?;
    }
    if let Some(sticky) = fields.take("sticky") {
        service.sticky = read_sticky(name, sticky, &mut notes)?;
    }
    if let Some(leaf) = fields.value("strategy") {
        match leaf.value.as_str() {
            "" | "wrr" => {}
            "p2c" => service.balancing = Balancing::LeastRequest,
            "hrw" | "leasttime" => notes.push(Note {
                tag: leaf.tag.clone(),
                message: format!(
                    "strategy {:?} is not implemented by Berth; the service is balanced by weighted round robin",
                    leaf.value
                ),
            }),
            other => return fail(name, Some(leaf), Problem::Strategy(other.to_string())),
        }
    }
    if let Some(passive) = fields.take("passivehealthcheck") {
        service.passive_health = Some(read_passive_health(name, passive)?);
    }
    fields.note_ignored(
        &[
            (
                "healthcheck",
                "health checks are ignored: Berth routes to the instances Consul reports healthy",
            ),
            (
                "responseforwarding",
                "responseForwarding is ignored: Berth streams responses as they come",
            ),
            (
                "serverstransport",
                "serversTransport is ignored: Berth connects to servers with its own settings",
            ),
        ],
        &mut notes,
    );
    if let Some(unknown) = fields.unknown().first().copied() {
        return fail(
            name,
            unknown.first_leaf(),
            Problem::UnknownOption(format!("loadbalancer.{}", unknown.name)),
        );
    }
    Ok((service, notes))
}

/// `passiveHealthCheck` (Traefik 3.7): a server that fails `maxFailedAttempts` times (default 1)
/// is taken out for `failureWindow` (default 10s). Berth counts consecutive failures and ejects
/// for that long each time, without its usual doubling.
fn read_passive_health(name: &str, node: &Node) -> Result<PassiveHealth, ServiceError> {
    let mut fields = Fields::new(node);
    let mut health = PassiveHealth {
        consecutive_failures: 1,
        base_ejection_ms: 10_000,
        max_ejection_ms: 10_000,
        ..PassiveHealth::default()
    };
    if let Some(leaf) = fields.value("maxfailedattempts") {
        let n = values::parse_int(&leaf.value, 1, 1_000_000).or_else(|error| {
            fail(
                name,
                Some(leaf),
                Problem::Value {
                    option: "passiveHealthCheck.maxFailedAttempts",
                    error,
                },
            )
        })?;
        health.consecutive_failures = n as u32;
    }
    if let Some(leaf) = fields.value("failurewindow") {
        let ns = values::parse_duration(&leaf.value).or_else(|error| {
            fail(
                name,
                Some(leaf),
                Problem::Value {
                    option: "passiveHealthCheck.failureWindow",
                    error,
                },
            )
        })?;
        let ms = (ns / 1_000_000).clamp(1, i128::from(u32::MAX)) as u64;
        if ns > 0 {
            health.base_ejection_ms = ms;
            health.max_ejection_ms = ms;
        }
    }
    if let Some(unknown) = fields.unknown().first().copied() {
        return fail(
            name,
            unknown.first_leaf(),
            Problem::UnknownOption(format!("loadbalancer.passiveHealthCheck.{}", unknown.name)),
        );
    }
    Ok(health)
}

/// `sticky.cookie` (`=true` or with options) gives a cookie; `sticky.cookie=false` none.
fn read_sticky(
    name: &str,
    sticky: &Node,
    notes: &mut Vec<Note>,
) -> Result<Option<StickyCookie>, ServiceError> {
    let mut fields = Fields::new(sticky);
    let cookie = fields.take("cookie");
    if let Some(unknown) = fields.unknown().first().copied() {
        return fail(
            name,
            unknown.first_leaf(),
            Problem::UnknownOption(format!("loadbalancer.sticky.{}", unknown.name)),
        );
    }
    let Some(cookie) = cookie else {
        return Ok(None);
    };
    if let Some(leaf) = &cookie.leaf {
        if !leaf.value.is_empty() && !leaf.value.eq_ignore_ascii_case("true") {
            return Ok(None);
        }
    }
    let mut fields = Fields::new(cookie);
    let flag = |fields: &mut Fields<'_>, option: &'static str| -> Result<bool, ServiceError> {
        match fields.value(option) {
            None => Ok(false),
            Some(leaf) => values::parse_bool(&leaf.value)
                .or_else(|error| fail(name, Some(leaf), Problem::Value { option, error })),
        }
    };
    let cookie_name = fields.value("name").map(|l| l.value.clone()).unwrap_or_default();
    let secure = flag(&mut fields, "secure")?;
    let http_only = flag(&mut fields, "httponly")?;
    let same_site = match fields.value("samesite").map(|l| l.value.to_ascii_lowercase()) {
        Some(s) if s == "none" || s == "lax" || s == "strict" => s,
        // Traefik sends no SameSite attribute for any other value.
        _ => String::new(),
    };
    let max_age = match fields.value("maxage") {
        None => 0,
        Some(leaf) => values::parse_int(&leaf.value, i128::from(i64::MIN), i128::from(i64::MAX))
            .map(|n| n as i64)
            .or_else(|error| {
                fail(
                    name,
                    Some(leaf),
                    Problem::Value {
                        option: "maxAge",
                        error,
                    },
                )
            })?,
    };
    let path = fields
        .value("path")
        .map(|l| l.value.clone())
        .unwrap_or_else(|| "/".to_string());
    if let Some(leaf) = fields.value("domain") {
        notes.push(Note {
            tag: leaf.tag.clone(),
            message: "sticky.cookie.domain is not in Berth's route model; the cookie is sent without Domain (to the request's host only)".into(),
        });
    }
    if let Some(unknown) = fields.unknown().first().copied() {
        return fail(
            name,
            unknown.first_leaf(),
            Problem::UnknownOption(format!("loadbalancer.sticky.cookie.{}", unknown.name)),
        );
    }
    let name = crate::dialect::cookie_name(&cookie_name, &format!("{name}@consulcatalog"));
    Ok(Some(StickyCookie {
        name,
        secure,
        http_only,
        same_site,
        max_age,
        path,
    }))
}

/// Reads what one instance says about its server (`loadbalancer.server`), with notes.
pub(crate) fn read_server(name: &str, node: Option<&Node>) -> Result<(Server, Vec<Note>), ServiceError> {
    let mut server = Server {
        port: None,
        scheme: "http".to_string(),
        weight: 1,
    };
    let mut notes = Vec::new();
    let Some(node) = node
        .and_then(|n| n.child("loadbalancer"))
        .and_then(|lb| lb.child("server"))
    else {
        return Ok((server, notes));
    };
    let mut fields = Fields::new(node);
    if let Some(leaf) = fields.value("port").filter(|l| !l.value.is_empty()) {
        let port = values::parse_int(&leaf.value, 1, 65535).or_else(|error| {
            fail(
                name,
                Some(leaf),
                Problem::Value {
                    option: "server.port",
                    error,
                },
            )
        })?;
        server.port = Some(port as u16);
    }
    if let Some(leaf) = fields.value("scheme").filter(|l| !l.value.is_empty()) {
        let scheme = leaf.value.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https" | "h2c") {
            return fail(name, Some(leaf), Problem::Scheme(leaf.value.clone()));
        }
        server.scheme = scheme;
    }
    if let Some(leaf) = fields.value("weight") {
        let weight = values::parse_int(&leaf.value, 0, i128::from(u32::MAX)).or_else(|error| {
            fail(
                name,
                Some(leaf),
                Problem::Value {
                    option: "server.weight",
                    error,
                },
            )
        })?;
        server.weight = weight as u32;
    }
    if let Some(leaf) = fields.value("url") {
        return fail(name, Some(leaf), Problem::Url);
    }
    if let Some(leaf) = fields.value("preservepath") {
        notes.push(Note {
            tag: leaf.tag.clone(),
            message: "server.preservePath is ignored: it only applies with server.url".into(),
        });
    }
    if let Some(unknown) = fields.unknown().first().copied() {
        return fail(
            name,
            unknown.first_leaf(),
            Problem::UnknownOption(format!("loadbalancer.server.{}", unknown.name)),
        );
    }
    Ok((server, notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels;

    fn parse(tags: &[&str]) -> labels::Labels {
        let tags: Vec<String> = tags.iter().map(|t| format!("traefik.s.{t}")).collect();
        labels::parse(&tags, "traefik")
    }

    fn service(tags: &[&str]) -> Result<(Service, Vec<Note>), ServiceError> {
        let labels = parse(tags);
        read("s", labels.root.child("s"))
    }

    fn server(tags: &[&str]) -> Result<(Server, Vec<Note>), ServiceError> {
        let labels = parse(tags);
        read_server("s", labels.root.child("s"))
    }

    #[test]
    fn defaults() {
        let (s, notes) = read("s", None).expect("default");
        assert!(s.pass_host_header);
        assert_eq!(s.sticky, None);
        assert!(notes.is_empty());
        assert_eq!(
            server(&[]).expect("server").0,
            Server {
                port: None,
                scheme: "http".into(),
                weight: 1
            }
        );
    }

    #[test]
    fn shared_options() {
        let (s, _) = service(&[
            "loadbalancer.passhostheader=false",
            "loadbalancer.sticky.cookie.name=my cookie",
            "loadbalancer.sticky.cookie.secure=true",
            "loadbalancer.sticky.cookie.httpOnly=true",
            "loadbalancer.sticky.cookie.sameSite=Lax",
            "loadbalancer.sticky.cookie.maxAge=60",
            "loadbalancer.sticky.cookie.path=/app",
            "middlewares=a,b",
        ])
        .expect("service");
        assert!(!s.pass_host_header);
        assert_eq!(
            s.sticky,
            Some(StickyCookie {
                name: "my_cookie".into(),
                secure: true,
                http_only: true,
                same_site: "lax".into(),
                max_age: 60,
                path: "/app".into()
            })
        );
        assert_eq!(s.middlewares.len(), 2);
    }

    #[test]
    fn sticky_cookie_flag_and_generated_name() {
        let (s, _) = service(&["loadbalancer.sticky.cookie=true"]).expect("service");
        let cookie = s.sticky.expect("cookie");
        assert_eq!(cookie.name, crate::dialect::cookie_name("", "s@consulcatalog"));
        assert_eq!(cookie.name.len(), 6);
        assert_eq!(cookie.path, "/");
        let (s, _) = service(&["loadbalancer.sticky.cookie=false"]).expect("service");
        assert_eq!(s.sticky, None);
    }

    #[test]
    fn servers() {
        let (s, _) = server(&[
            "loadbalancer.server.port=8080",
            "loadbalancer.server.scheme=HTTPS",
            "loadbalancer.server.weight=3",
        ])
        .expect("server");
        assert_eq!(
            s,
            Server {
                port: Some(8080),
                scheme: "https".into(),
                weight: 3
            }
        );
        let (s, _) = server(&["loadbalancer.server.scheme=H2C"]).expect("h2c");
        assert_eq!(s.scheme, "h2c");
        let cases: [(&[&str], &str); 5] = [
            (&["loadbalancer.server.port=0"], "out of range"),
            (&["loadbalancer.server.port=http"], "not a whole number"),
            (&["loadbalancer.server.scheme=h2"], "not supported"),
            (&["loadbalancer.server.weight=-1"], "out of range"),
            (&["loadbalancer.server.url=http://x"], "not implemented"),
        ];
        for (tags, expected) in cases {
            let err = server(tags).expect_err(expected);
            assert!(err.to_string().contains(expected), "{tags:?}: {err}");
        }
    }

    #[test]
    fn reported_and_refused_options() {
        let (_, notes) = service(&[
            "loadbalancer.healthcheck.path=/health",
            "loadbalancer.healthcheck.interval=10s",
            "loadbalancer.strategy=hrw",
            "loadbalancer.sticky.cookie.domain=example.com",
        ])
        .expect("service");
        assert_eq!(notes.len(), 4);
        let cases: [(&[&str], &str); 4] = [
            (&["middlewares=a"], "no load balancer"),
            (
                &["loadbalancer.strategy=random"],
                "not a Traefik load-balancing strategy",
            ),
            (&["loadbalancer.passhostheader=maybe"], "not a boolean"),
            (&["loadbalancer.bogus=1"], "no option \"loadbalancer.bogus\""),
        ];
        for (tags, expected) in cases {
            let err = service(tags).expect_err(expected);
            assert!(err.to_string().contains(expected), "{tags:?}: {err}");
        }
    }
}
