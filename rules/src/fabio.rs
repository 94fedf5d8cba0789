//! Fabio's `urlprefix-` tags: `urlprefix-host/path opts`, `urlprefix-/path opts`, with
//! wildcard hosts (`*.example.com`) and the options `strip=`, `prepend=`, `proto=`, `host=dst`,
//! `redirect=CODE,URL`, `allow=` and `deny=`.
//!
//! Fabio picks, for a request, the most specific host (an exact host before wildcards, a longer
//! wildcard before a shorter one, host routes before routes without host), and within it the
//! longest path prefix. Berth gives each route a priority that orders them the same way:
//! `2000000 + len(path)` for an exact host, `1000000 + 1000 × len(suffix) + len(path)` for a
//! wildcard, `len(path)` without host (lengths capped at 999).
//!
//! Instances whose tags give the same route and options share a route and cluster, named
//! `<service>/fabio/<n>` (n counts distinct routes in the order of their tags' text). Fabio has no
//! `enable` tag: every `urlprefix-` tag is routed, whatever the Traefik tags say.
//!
//! Not for: Fabio's `route add` commands from its KV store, TCP and gRPC routes (refused).

use berth_proto::v1::{
    middleware::Kind, AddPrefix, Balancing, Cluster, HostHeader, IpAllowList, Matcher, Middleware,
    RedirectRegex, Route, SourceCriterion, StripPrefix,
};

use crate::construct::{self, middleware};
use crate::error::{Fault, Output};
use crate::values;
use crate::{Instance, Settings};

/// A route one tag asks for.
#[derive(Debug, Clone, PartialEq)]
struct FabioRoute {
    /// `host/path` as written (lower-cased host), for naming and ordering.
    source: String,
    matcher: Matcher,
    priority: i64,
    middlewares: Vec<Middleware>,
    scheme: String,
    host_header: HostHeader,
}

/// Why a tag cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FabioError {
    #[error("TCP routes (urlprefix-:port) are not supported by Berth")]
    Tcp,
    #[error("{0:?}: environment variables ($...) in Fabio tags are not supported by Berth")]
    Variable(String),
    #[error("host {host:?}: {reason}")]
    BadHost { host: String, reason: String },
    #[error("option {0:?} is not implemented by Berth; the route is rejected rather than served without it")]
    NotImplemented(String),
    #[error("proto={0}: only http and https upstreams are supported by Berth")]
    Proto(String),
    #[error("redirect={0:?}: expected redirect=CODE,URL with CODE 301, 302, 307 or 308")]
    Redirect(String),
    #[error("{option}: {problem}")]
    Access { option: &'static str, problem: String },
    #[error("allow and deny on the same route: Fabio refuses that too (and would leave the route open)")]
    AllowAndDeny,
}

/// Capped length used in priorities.
fn capped(len: usize) -> i64 {
    len.min(999) as i64
}

/// Parses one tag (already known to start with the prefix). Options that change nothing Berth
/// does are returned as notes.
fn parse(tag: &str, prefix: &str) -> Result<(FabioRoute, Vec<String>), FabioError> {
    let body = tag.trim().strip_prefix(prefix).unwrap_or_default().trim();
    let (route, opts) = body.split_once(' ').unwrap_or((body, ""));
    if route.starts_with(':') {
        return Err(FabioError::Tcp);
    }
    if route.contains('$') {
        return Err(FabioError::Variable(route.to_string()));
    }
    let (host, path) = match route.split_once('/') {
        Some((host, path)) => (host.to_ascii_lowercase(), format!("/{path}")),
        None => (route.to_ascii_lowercase(), String::new()),
    };
    let mut matchers = Vec::new();
    let priority = if host.is_empty() {
        capped(path.len())
    } else if let Some(suffix) = host
        .strip_prefix("*.")
        .filter(|s| !s.contains(['*', '?', '[', '{']))
    {
        let suffix = berth_model::normalize_host(suffix).map_err(|e| FabioError::BadHost {
            host: host.clone(),
            reason: e.problem.to_string(),
        })?;
        matchers.push(construct::host_wildcard(&suffix));
        1_000_000 + 1000 * capped(suffix.len()) + capped(path.len())
    } else if host.contains(['*', '?']) {
        if host.contains(['[', '{']) {
            return Err(FabioError::BadHost {
                host: host.clone(),
                reason: "glob classes and alternatives are not supported (only * and ?)".into(),
            });
        }
        let mut regexp = String::from("^");
        for c in host.chars() {
            match c {
                '*' => regexp.push_str(".*"),
                '?' => regexp.push('.'),
                c => regexp.push_str(&regex::escape(&c.to_string())),
            }
        }
        regexp.push('$');
        matchers.push(construct::host_regexp(&regexp));
        let literal = host.chars().filter(|c| *c != '*' && *c != '?').count();
        1_000_000 + 1000 * capped(literal) + capped(path.len())
    } else {
        let host = berth_model::normalize_host(&host).map_err(|e| FabioError::BadHost {
            host: host.clone(),
            reason: e.problem.to_string(),
        })?;
        matchers.push(construct::host_exact(&host));
        2_000_000 + capped(path.len())
    };
    if !path.is_empty() {
        matchers.push(construct::path_prefix(&path));
    }

    let mut notes = Vec::new();
    let mut strip = None;
    let mut prepend = None;
    let mut scheme = "http".to_string();
    let mut host_header = HostHeader::Pass;
    let mut redirect = None;
    let mut allow = None;
    let mut deny = None;
    for option in opts.split_whitespace() {
        let (key, value) = option.split_once('=').unwrap_or((option, ""));
        match key {
            "strip" => strip = Some(value.to_string()),
            "prepend" => prepend = Some(value.to_string()),
            "proto" => match value {
                "http" | "https" => scheme = value.to_string(),
                other => return Err(FabioError::Proto(other.to_string())),
            },
            "host" if value == "dst" => host_header = HostHeader::Endpoint,
            "host" => return Err(FabioError::NotImplemented(format!("host={value} (a fixed Host header)"))),
            "redirect" => redirect = Some(value.to_string()),
            "allow" => allow = Some(ranges("allow", value)?),
            "deny" => deny = Some(ranges("deny", value)?),
            "auth" | "pxyproto" => return Err(FabioError::NotImplemented(option.to_string())),
            "weight" => notes.push(format!(
                "{option}: Fabio's share of traffic across services is not implemented; the route gets all of its requests"
            )),
            "tlsskipverify" => notes.push(format!("{option}: not implemented; upstream certificates are checked as usual")),
            "register" => notes.push(format!("{option}: Berth registers no service in Consul")),
            _ => notes.push(format!("{option}: not a Fabio option Berth knows")),
        }
    }
    if allow.is_some() && deny.is_some() {
        return Err(FabioError::AllowAndDeny);
    }
    if let Some(ranges) = deny {
        // A denied client does not reach this route (it gets the next route that matches, or
        // 404, where Fabio answers 403).
        matchers.push(construct::not(construct::client_ip(ranges)));
    }

    let mut middlewares = Vec::new();
    if let Some(ranges) = allow {
        middlewares.push(middleware(
            "fabio:allow",
            Kind::IpAllowList(IpAllowList {
                ranges,
                reject_status: 403,
                source: Some(SourceCriterion::default()),
            }),
        ));
    }
    if let Some(value) = redirect {
        middlewares.push(redirect_middleware(&value, strip.as_deref(), prepend.as_deref())?);
    }
    if let Some(prefix) = strip.filter(|s| !s.is_empty()) {
        middlewares.push(middleware(
            "fabio:strip",
            Kind::StripPrefix(StripPrefix {
                prefixes: vec![prefix],
                force_slash: true,
            }),
        ));
    }
    if let Some(prefix) = prepend.filter(|p| !p.is_empty()) {
        middlewares.push(middleware("fabio:prepend", Kind::AddPrefix(AddPrefix { prefix })));
    }
    Ok((
        FabioRoute {
            source: route.to_string(),
            matcher: construct::all(matchers),
            priority,
            middlewares,
            scheme,
            host_header,
        },
        notes,
    ))
}

/// `ip:10.0.0.0/8,ip:fd00::/8` → the ranges.
fn ranges(option: &'static str, value: &str) -> Result<Vec<String>, FabioError> {
    let mut out = Vec::new();
    for item in value.split(',') {
        let Some((kind, data)) = item.split_once(':') else {
            return Err(FabioError::Access {
                option,
                problem: format!("{item:?} is not of the form ip:<address or network>"),
            });
        };
        if !kind.trim().eq_ignore_ascii_case("ip") {
            return Err(FabioError::Access {
                option,
                problem: format!("{:?} is not an access rule type (Fabio knows ip)", kind.trim()),
            });
        }
        let range = values::ip_range(data).map_err(|e| FabioError::Access {
            option,
            problem: e.to_string(),
        })?;
        out.push(range);
    }
    Ok(out)
}

/// `redirect=CODE,URL`: a redirect regexp over the whole request URL whose replacement is URL
/// with `$path` (the request path after `strip` and `prepend`, and its query) and `$host`.
fn redirect_middleware(
    value: &str,
    strip: Option<&str>,
    prepend: Option<&str>,
) -> Result<Middleware, FabioError> {
    let bad = || FabioError::Redirect(value.to_string());
    let (code, url) = value.split_once(',').ok_or_else(bad)?;
    let permanent = match code {
        "301" | "308" => true,
        "302" | "307" => false,
        _ => return Err(bad()),
    };
    if url.is_empty() || url.contains(',') {
        return Err(bad());
    }
    let strip = match strip.filter(|s| !s.is_empty()) {
        Some(strip) => format!("(?:{})?", regex::escape(strip)),
        None => String::new(),
    };
    let regexp = format!(r"^[a-zA-Z][a-zA-Z0-9+.-]*://([^/?#]*){strip}([^?#]*)(\?[^#]*)?");
    let literal = |text: &str| text.replace('$', "$$");
    let url = url.replace("/$path", "$path");
    let mut replacement = String::new();
    let mut rest = url.as_str();
    while let Some(at) = rest.find('$') {
        replacement.push_str(&literal(&rest[..at]));
        let after = &rest[at..];
        if let Some(tail) = after.strip_prefix("$path") {
            replacement.push_str(&literal(prepend.unwrap_or_default()));
            replacement.push_str("${2}${3}");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("$host") {
            replacement.push_str("${1}");
            rest = tail;
        } else {
            replacement.push_str("$$");
            rest = &after[1..];
        }
    }
    replacement.push_str(&literal(rest));
    Ok(middleware(
        "fabio:redirect",
        Kind::RedirectRegex(RedirectRegex {
            regexp,
            replacement,
            permanent,
        }),
    ))
}

struct Group<'a> {
    route: FabioRoute,
    /// The text after the prefix, for ordering.
    text: String,
    members: Vec<&'a Instance>,
}

/// Compiles the Fabio tags of a service's instances.
pub(crate) fn compile(service: &str, instances: &[Instance], settings: &Settings, out: &mut Output) {
    let prefix = settings.fabio_prefix.as_str();
    if prefix.is_empty() {
        return;
    }
    let mut sorted: Vec<&Instance> = instances.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut groups: Vec<Group<'_>> = Vec::new();
    for instance in sorted {
        for tag in &instance.tags {
            if !tag.trim().starts_with(prefix) {
                continue;
            }
            match parse(tag, prefix) {
                Ok((route, notes)) => {
                    for note in notes {
                        out.fault(
                            Fault::new(format!("ignored: {note}"))
                                .tag(tag.clone())
                                .instance(&instance.id),
                        );
                    }
                    match groups.iter_mut().find(|g| g.route == route) {
                        Some(group) => {
                            if !group.members.iter().any(|m| m.id == instance.id) {
                                group.members.push(instance);
                            }
                        }
                        None => groups.push(Group {
                            route,
                            text: tag.trim()[prefix.len()..].trim().to_string(),
                            members: vec![instance],
                        }),
                    }
                }
                Err(e) => out.fault(
                    Fault::new(format!("route rejected: {e}"))
                        .tag(tag.clone())
                        .instance(&instance.id),
                ),
            }
        }
    }
    groups.sort_by(|a, b| {
        a.text
            .cmp(&b.text)
            .then_with(|| format!("{:?}", a.route).cmp(&format!("{:?}", b.route)))
    });
    for (index, group) in groups.into_iter().enumerate() {
        let name = format!("{service}/fabio/{}", index + 1);
        let endpoints = group
            .members
            .iter()
            .filter_map(|instance| crate::dialect::endpoint(instance, None, 1, out))
            .collect();
        out.cluster(Cluster {
            name: name.clone(),
            endpoints,
            scheme: group.route.scheme.clone(),
            host_header: group.route.host_header as i32,
            sticky: None,
            balancing: Balancing::WeightedRoundRobin as i32,
            requires: Vec::new(),
            ..Default::default()
        });
        out.route(Route {
            name: name.clone(),
            entrypoints: Vec::new(),
            cluster: name,
            service: service.to_string(),
            matcher: Some(group.route.matcher),
            priority: group.route.priority,
            order: 0,
            middlewares: group.route.middlewares,
            requires: Vec::new(),
            origin: format!("fabio {prefix}{}", group.text),
            tls: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::construct::*;

    fn route(tag: &str) -> FabioRoute {
        parse(tag, "urlprefix-")
            .unwrap_or_else(|e| panic!("{tag}: {e}"))
            .0
    }

    fn kinds(route: &FabioRoute) -> Vec<Kind> {
        route.middlewares.iter().filter_map(|m| m.kind.clone()).collect()
    }

    #[test]
    fn hosts_paths_and_priorities() {
        let r = route("urlprefix-example.com/api");
        assert_eq!(
            r.matcher,
            all(vec![host_exact("example.com"), path_prefix("/api")])
        );
        assert_eq!(r.priority, 2_000_004);
        let r = route("urlprefix-/api");
        assert_eq!(r.matcher, path_prefix("/api"));
        assert_eq!(r.priority, 4);
        let r = route("urlprefix-*.Example.com/");
        assert_eq!(
            r.matcher,
            all(vec![host_wildcard("example.com"), path_prefix("/")])
        );
        assert_eq!(r.priority, 1_000_000 + 11_000 + 1);
        let r = route("urlprefix-a*.example.com/");
        assert_eq!(
            r.matcher,
            all(vec![host_regexp(r"^a.*\.example\.com$"), path_prefix("/")])
        );
        let r = route("urlprefix-example.com");
        assert_eq!(r.matcher, host_exact("example.com"));
        // Ordering as Fabio: exact host, then longer wildcard, then shorter, then no host.
        let order = [
            route("urlprefix-x.a.example.com/").priority,
            route("urlprefix-*.a.example.com/long/path").priority,
            route("urlprefix-*.example.com/longer/path/still").priority,
            route("urlprefix-/a/very/long/path/without/host").priority,
        ];
        assert!(order.windows(2).all(|w| w[0] > w[1]), "{order:?}");
    }

    #[test]
    fn options() {
        let r = route("urlprefix-/api strip=/api prepend=/v2 proto=https host=dst");
        assert_eq!(r.scheme, "https");
        assert_eq!(r.host_header, HostHeader::Endpoint);
        assert_eq!(
            kinds(&r),
            vec![
                Kind::StripPrefix(StripPrefix {
                    prefixes: vec!["/api".into()],
                    force_slash: true
                }),
                Kind::AddPrefix(AddPrefix { prefix: "/v2".into() }),
            ]
        );
        let r = route("urlprefix-/ allow=ip:10.0.0.0/8,ip:192.168.1.1");
        assert_eq!(
            kinds(&r),
            vec![Kind::IpAllowList(IpAllowList {
                ranges: vec!["10.0.0.0/8".into(), "192.168.1.1".into()],
                reject_status: 403,
                source: Some(SourceCriterion::default())
            })]
        );
        let r = route("urlprefix-/ deny=ip:10.0.0.0/8");
        assert_eq!(
            r.matcher,
            all(vec![path_prefix("/"), not(client_ip(vec!["10.0.0.0/8".into()]))])
        );
        let (_, notes) = parse("urlprefix-/ weight=0.5 register=x", "urlprefix-").expect("notes");
        assert_eq!(notes.len(), 2);
    }

    #[test]
    fn redirects() {
        let r = route("urlprefix-/ redirect=301,https://www.example.com$path");
        assert_eq!(
            kinds(&r),
            vec![Kind::RedirectRegex(RedirectRegex {
                regexp: r"^[a-zA-Z][a-zA-Z0-9+.-]*://([^/?#]*)([^?#]*)(\?[^#]*)?".into(),
                replacement: "https://www.example.com${2}${3}".into(),
                permanent: true
            })]
        );
        let r = route("urlprefix-/old strip=/old redirect=302,https://$host/new/$path");
        let Some(Kind::RedirectRegex(redirect)) = kinds(&r).into_iter().next() else {
            panic!("redirect")
        };
        assert!(!redirect.permanent);
        assert_eq!(redirect.replacement, "https://${1}/new${2}${3}");
        assert!(redirect.regexp.contains("(?:/old)?"));
        let re = regex::Regex::new(&redirect.regexp).expect("regexp");
        assert_eq!(
            re.replace("http://a.example/old/x?q=1", redirect.replacement.as_str()),
            "https://a.example/new/x?q=1"
        );
    }

    #[test]
    fn refused_tags() {
        let table = [
            ("urlprefix-:3306 proto=tcp", "TCP"),
            ("urlprefix-/ proto=grpc", "proto=grpc"),
            ("urlprefix-$DC.example.com/", "environment variables"),
            ("urlprefix-/ auth=admins", "not implemented"),
            ("urlprefix-/ host=backend.local", "not implemented"),
            ("urlprefix-/ redirect=303,https://x", "CODE 301"),
            ("urlprefix-/ redirect=https://x", "CODE 301"),
            (
                "urlprefix-/ allow=ip:10.0.0.0/8 deny=ip:10.1.0.0/16",
                "allow and deny",
            ),
            ("urlprefix-/ allow=cidr:10.0.0.0/8", "not an access rule type"),
            ("urlprefix-/ allow=ip:10.0.0.0/99", "neither an IP"),
            ("urlprefix-a_b..c/", "host"),
            ("urlprefix-[ab].example.com/", "host"),
        ];
        for (tag, expected) in table {
            let err = parse(tag, "urlprefix-").expect_err(tag);
            assert!(err.to_string().contains(expected), "{tag}: {err}");
        }
    }

    #[test]
    fn instances_with_the_same_route_share_it() {
        let instance = |id: &str, tags: &[&str], routable: bool| Instance {
            id: id.into(),
            address: "10.0.0.1".into(),
            port: 8080,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            routable,
            ..Instance::default()
        };
        let instances = [
            instance("b", &["urlprefix-/api", "urlprefix-example.com/"], true),
            instance("a", &["urlprefix-/api"], true),
            instance("c", &["urlprefix-/api"], false),
        ];
        let mut out = Output::new("web");
        compile("web", &instances, &crate::Settings::default(), &mut out);
        let result = out.finish();
        let names: Vec<&str> = result.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["web/fabio/1", "web/fabio/2"]);
        assert_eq!(result.routes[0].origin, "fabio urlprefix-/api");
        let ids: Vec<&str> = result.clusters[0]
            .endpoints
            .iter()
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(result.clusters[1].endpoints.len(), 1);
        assert!(result.errors.is_empty(), "{:?}", result.errors);
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::parse;

    proptest! {
        #[test]
        fn any_tag_parses_or_fails_without_panicking(body in "\\PC{0,60}") {
            let _ = parse(&format!("urlprefix-{body}"), "urlprefix-");
        }

        #[test]
        fn host_path_tags_parse(host in "[a-z]{1,8}(\\.[a-z]{1,5}){0,2}", path in "(/[a-z0-9]{0,6}){0,3}") {
            let tag = format!("urlprefix-{host}{path} strip=/x");
            prop_assert!(parse(&tag, "urlprefix-").is_ok(), "{tag}");
        }
    }
}
