//! The Traefik v2/v3 Consul Catalog dialect, as Traefik 3.7 reads it: `<prefix>.http.routers.*`,
//! `<prefix>.http.services.*` and `<prefix>.http.middlewares.*`.
//!
//! As Traefik, each instance's tags are read on their own, with Traefik's defaults applied per
//! instance (a service named after the Consul service when the tags define none; a router of
//! that name with the default rule when they define no router and at most one service; a router
//! without `service` linked to the only service), and then merged: a router or middleware that
//! instances define differently is dropped (Traefik logs "defined multiple times with different
//! configurations"); a service merges when everything but its servers agrees, and its servers are
//! the instances.
//!
//! Unlike Traefik, a bad tag costs only what it belongs to: the router (or the middleware or
//! service, and the routers that use them), never the whole instance. Routers and services are
//! scoped to their Consul service (route `<service>/<router>`, cluster `<service>/<name>`);
//! middlewares are shared across services as in Traefik (`name` or `name@consulcatalog`).
//!
//! Files: [`router`], [`service`], [`middleware`] read one object each; [`template`] evaluates the
//! default rule. Not for: Traefik v1 tags (see `traefik_v1`), Fabio's (see `fabio`).

mod middleware;
mod router;
mod service;
pub(crate) mod template;

use std::collections::{BTreeMap, BTreeSet};

use berth_proto::v1::{Cluster, HostHeader, Middleware, Route};

use crate::dialect::Tagged;
use crate::error::{Fault, Output};
use crate::labels::{Labels, Node};
use crate::traefik_rule::RuleSyntax;
use crate::{RouteError, Settings, SharedMiddlewares};

use middleware::Definition;

/// The provider name Traefik gives Consul Catalog objects (`name@consulcatalog`).
const PROVIDER: &str = "consulcatalog";

/// What one instance's tags define, with Traefik's per-instance defaults applied.
struct View<'a> {
    tagged: &'a Tagged<'a>,
    routers: BTreeMap<String, (Option<&'a Node>, router::Defaults)>,
    services: BTreeMap<String, Option<&'a Node>>,
    middlewares: BTreeMap<String, &'a Node>,
}

/// Whether a service's tags use this dialect: any `<prefix>.http.`, `.tcp.` or `.udp.` label.
pub(crate) fn is_used_by(labels: &Labels) -> bool {
    labels.has("http") || labels.has("tcp") || labels.has("udp")
}

/// Traefik's name for the default router and service of an instance: the normalized service
/// name, or, for a canary instance (`<prefix>.consulcatalog.canary=true`), the name and a hash
/// of its tags.
fn default_name(service: &str, tagged: &Tagged<'_>) -> String {
    if !tagged.canary {
        return template::normalize(service);
    }
    let mut tags = tagged.instance.tags.clone();
    tags.sort();
    // Go's hash/fnv New64: FNV-1, 64 bits.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tags.concat().bytes() {
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        hash ^= u64::from(byte);
    }
    template::normalize(&format!("{service}-{hash}"))
}

/// Reads one instance's tags, reporting what this dialect does not read.
fn view<'a>(service: &str, tagged: &'a Tagged<'a>, settings: &Settings, out: &mut Output) -> View<'a> {
    let id = tagged.instance.id.as_str();
    let mut view = View {
        tagged,
        routers: BTreeMap::new(),
        services: BTreeMap::new(),
        middlewares: BTreeMap::new(),
    };
    let mut tcp_or_udp = false;
    for child in &tagged.labels.root.children {
        match child.name.to_ascii_lowercase().as_str() {
            "enable" | "consulcatalog" => {}
            "http" => read_http(child, &mut view, out, id),
            "tcp" | "udp" => {
                tcp_or_udp |= child.child("routers").is_some() || child.child("services").is_some();
                for leaf in child.leaves() {
                    out.fault(
                        Fault::new("ignored: TCP and UDP routers and services are not supported by Berth")
                            .tag(&leaf.tag)
                            .instance(id),
                    );
                }
            }
            "tls" => {
                for leaf in child.leaves() {
                    out.fault(
                        Fault::new(
                            "ignored: TLS stores, options and certificates are not read from tags; the proxy serves the certificates of its --cert-dir",
                        )
                            .tag(&leaf.tag)
                            .instance(id),
                    );
                }
            }
            _ => {
                for leaf in child.leaves() {
                    out.fault(
                        Fault::new(
                            "ignored: this service uses Traefik v2/v3 tags, which read only enable, http, tcp, udp, tls and consulcatalog (Traefik v1 tags are ignored on such a service)",
                        )
                        .tag(&leaf.tag)
                        .instance(id),
                    );
                }
            }
        }
    }
    if tcp_or_udp && view.routers.is_empty() && view.services.is_empty() && view.middlewares.is_empty() {
        return view;
    }
    let name = default_name(service, tagged);
    if view.services.is_empty() {
        view.services.insert(name.clone(), None);
    }
    if view.routers.is_empty() {
        if view.services.len() > 1 {
            out.fault(
                Fault::new(
                    "no router: the tags define several services and no router, so Traefik creates no default router",
                )
                .instance(id),
            );
        } else {
            view.routers.insert(
                name,
                (
                    None,
                    router::Defaults {
                        rule: None,
                        service: None,
                    },
                ),
            );
        }
    }
    let only_service = (view.services.len() == 1)
        .then(|| view.services.keys().next().cloned())
        .flatten();
    let several: Vec<String> = view.services.keys().cloned().collect();
    let model = template::Model {
        name: service,
        labels: &tagged.labels.flat,
    };
    // As Traefik, a router this instance cannot complete (its default rule fails, or it names
    // no service among several) is dropped from this instance's configuration.
    view.routers.retain(|name, (node, defaults)| {
        let given = |option: &str| {
            node.and_then(|n| n.child(option))
                .and_then(|r| r.leaf.as_ref())
                .is_some_and(|l| !l.value.is_empty())
        };
        let mut problem = None;
        if !given("rule") {
            match template::render(&settings.default_rule, &model) {
                Ok(rule) if !rule.is_empty() => defaults.rule = Some(Ok(rule)),
                Ok(_) => problem = Some("the default rule template gives an empty rule".to_string()),
                Err(e) => problem = Some(e.to_string()),
            }
        }
        if !given("service") {
            match &only_service {
                Some(service) => defaults.service = Some(Ok(service.clone())),
                None => {
                    problem = problem.or_else(|| {
                        Some(format!(
                            "the router names no service and cannot be linked automatically with several services ({})",
                            several.join(", ")
                        ))
                    })
                }
            }
        }
        match problem {
            None => true,
            Some(problem) => {
                out.fault(Fault::new(format!("router rejected: {problem}")).router(name.clone()).instance(id));
                false
            }
        }
    });
    view
}

fn read_http<'a>(http: &'a Node, view: &mut View<'a>, out: &mut Output, id: &str) {
    for group in &http.children {
        let target = match group.name.to_ascii_lowercase().as_str() {
            "routers" => 0,
            "services" => 1,
            "middlewares" => 2,
            _ => {
                for leaf in group.leaves() {
                    out.fault(
                        Fault::new(format!(
                            "ignored: http.{} cannot be set with tags (only routers, services and middlewares)",
                            group.name
                        ))
                        .tag(&leaf.tag)
                        .instance(id),
                    );
                }
                continue;
            }
        };
        for item in &group.children {
            let name = item.name.clone();
            match target {
                0 => {
                    view.routers.insert(
                        name,
                        (
                            Some(item),
                            router::Defaults {
                                rule: None,
                                service: None,
                            },
                        ),
                    );
                }
                1 => {
                    view.services.insert(name, Some(item));
                }
                _ => {
                    view.middlewares.insert(name, item);
                }
            }
        }
    }
}

/// One object as the instances that define it agree on it, or the instances that disagree.
enum Merged<T> {
    Agreed(T),
    /// The IDs of the instances that define it.
    Conflict(Vec<String>),
}

/// Merges per-instance objects by name: equal canonical forms agree.
fn merge<'a, T: Clone, C: PartialEq>(
    entries: Vec<(String, &'a Tagged<'a>, C, T)>,
) -> BTreeMap<String, Merged<T>> {
    let mut by_name: BTreeMap<String, Vec<(&'a Tagged<'a>, C, T)>> = BTreeMap::new();
    for (name, tagged, canon, value) in entries {
        by_name.entry(name).or_default().push((tagged, canon, value));
    }
    by_name
        .into_iter()
        .map(|(name, list)| {
            let agreed = list.windows(2).all(|w| w[0].1 == w[1].1);
            let merged = if agreed {
                Merged::Agreed(list[0].2.clone())
            } else {
                Merged::Conflict(list.iter().map(|(t, _, _)| t.instance.id.clone()).collect())
            };
            (name, merged)
        })
        .collect()
}

type Canon = BTreeMap<String, String>;

/// The merged configuration of one Consul service.
struct Config<'a> {
    routers: BTreeMap<String, Merged<(Option<&'a Node>, router::Defaults)>>,
    services: BTreeMap<String, Merged<Option<&'a Node>>>,
    /// For each service, every instance defining it and its node there (for servers).
    servers: BTreeMap<String, Vec<(&'a Tagged<'a>, Option<&'a Node>)>>,
    middlewares: BTreeMap<String, Merged<&'a Node>>,
}

fn config<'a>(views: &[View<'a>]) -> Config<'a> {
    let mut routers = Vec::new();
    let mut services = Vec::new();
    let mut middlewares = Vec::new();
    let mut servers: BTreeMap<String, Vec<(&'a Tagged<'a>, Option<&'a Node>)>> = BTreeMap::new();
    for view in views {
        for (name, (node, defaults)) in &view.routers {
            let canon = (
                node.map(|n| n.canonical(&[])).unwrap_or_default(),
                defaults.clone(),
            );
            routers.push((name.clone(), view.tagged, canon, (*node, defaults.clone())));
        }
        for (name, node) in &view.services {
            let canon: Canon = node
                .map(|n| n.canonical(&["loadbalancer.server"]))
                .unwrap_or_default();
            services.push((name.clone(), view.tagged, canon, *node));
            servers
                .entry(name.clone())
                .or_default()
                .push((view.tagged, *node));
        }
        for (name, node) in &view.middlewares {
            middlewares.push((name.clone(), view.tagged, node.canonical(&[]), *node));
        }
    }
    Config {
        routers: merge(routers),
        services: merge(services),
        servers,
        middlewares: merge(middlewares),
    }
}

/// Splits `name@provider`; a reference without provider is Consul Catalog's.
fn qualified(reference: &str) -> (&str, Option<&str>) {
    match reference.rsplit_once('@') {
        Some((name, provider)) => (name, Some(provider)),
        None => (reference, None),
    }
}

/// Why a middleware reference resolves to nothing usable.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unresolved {
    message: String,
    /// The tag at fault in the middleware's definition, when one is known.
    tag: Option<String>,
}

impl Unresolved {
    fn new(message: String) -> Self {
        Unresolved { message, tag: None }
    }
}

/// Resolves middleware names for one service, remembering answers.
struct Resolver<'c, 'a> {
    config: &'c Config<'a>,
    shared: Option<&'c SharedMiddlewares<'c>>,
    cache: BTreeMap<String, Result<Vec<Middleware>, Unresolved>>,
    /// Problems of the service's own middlewares, reported once each.
    faults: Vec<Unresolved>,
    uses: BTreeSet<String>,
}

impl<'c, 'a> Resolver<'c, 'a> {
    fn new(config: &'c Config<'a>, shared: Option<&'c SharedMiddlewares<'c>>) -> Self {
        Resolver {
            config,
            shared,
            cache: BTreeMap::new(),
            faults: Vec::new(),
            uses: BTreeSet::new(),
        }
    }

    /// The middlewares a reference stands for (a chain stands for its members, flattened).
    fn resolve(&mut self, reference: &str, stack: &mut Vec<String>) -> Result<Vec<Middleware>, Unresolved> {
        let (name, provider) = qualified(reference);
        if let Some(provider) = provider {
            if provider != PROVIDER {
                return Err(Unresolved::new(format!(
                    "middleware {reference:?} belongs to provider {provider:?}; Berth only knows middlewares defined in Consul Catalog tags"
                )));
            }
        }
        if stack.iter().any(|s| s == name) {
            return Err(Unresolved::new(format!(
                "middleware chain loops: {} -> {name}",
                stack.join(" -> ")
            )));
        }
        if let Some(answer) = self.cache.get(name) {
            return answer.clone();
        }
        let answer = match self.config.middlewares.get(name) {
            Some(Merged::Conflict(instances)) => {
                let problem = Unresolved::new(format!(
                    "middleware {name}@{PROVIDER} is defined differently by instances {} (Traefik drops it too)",
                    instances.join(", ")
                ));
                self.faults.push(problem.clone());
                Err(problem)
            }
            Some(Merged::Agreed(node)) => {
                let qualified_name = format!("{name}@{PROVIDER}");
                match middleware::define(name, node, &qualified_name) {
                    Err(e) => {
                        let problem = Unresolved {
                            message: format!("middleware {qualified_name}: {e}"),
                            tag: e.tag.clone(),
                        };
                        self.faults.push(problem.clone());
                        Err(problem)
                    }
                    Ok(Definition::One(m)) => Ok(m.into_iter().collect()),
                    Ok(Definition::Chain(members)) => {
                        stack.push(name.to_string());
                        let mut flat = Vec::new();
                        let mut failure = None;
                        for member in &members {
                            match self.resolve(member, stack) {
                                Ok(list) => flat.extend(list),
                                Err(e) => {
                                    failure = Some(Unresolved {
                                        message: format!("chain {qualified_name}: {}", e.message),
                                        tag: e.tag,
                                    });
                                    break;
                                }
                            }
                        }
                        stack.pop();
                        failure.map_or(Ok(flat), Err)
                    }
                }
            }
            None => match self.shared {
                None => Err(Unresolved::new(format!(
                    "middleware {name}@{PROVIDER} is not defined on this service (a chain is resolved where it is defined)"
                ))),
                Some(shared) => match shared(name) {
                    None => Err(Unresolved::new(format!(
                        "middleware {name}@{PROVIDER} is defined on no service"
                    ))),
                    Some(Ok(list)) => {
                        self.uses.insert(name.to_string());
                        Ok(list)
                    }
                    Some(Err(e)) => Err(Unresolved::new(format!(
                        "middleware {name}@{PROVIDER} (defined on another service): {e}"
                    ))),
                },
            },
        };
        self.cache.insert(name.to_string(), answer.clone());
        answer
    }
}

/// Reads the instances that the dialect applies to: enabled ones, in ID order.
fn views<'a>(
    service: &str,
    tagged: &'a [Tagged<'a>],
    settings: &Settings,
    out: &mut Output,
) -> Vec<View<'a>> {
    tagged
        .iter()
        .filter(|t| t.enabled)
        .map(|t| view(service, t, settings, out))
        .collect()
}

/// The middlewares this service's tags define, by name (see [`crate::middlewares_defined`]).
pub(crate) fn middlewares_defined(
    service: &str,
    tagged: &[Tagged<'_>],
    settings: &Settings,
) -> BTreeMap<String, Result<Vec<Middleware>, RouteError>> {
    let mut scratch = Output::new(service);
    let views = views(service, tagged, settings, &mut scratch);
    let config = config(&views);
    let mut resolver = Resolver::new(&config, None);
    let mut defined = BTreeMap::new();
    for name in config.middlewares.keys() {
        let answer = resolver.resolve(name, &mut Vec::new()).map_err(|e| RouteError {
            service: service.to_string(),
            instance: None,
            router: None,
            tag: e.tag,
            position: None,
            error: e.message,
        });
        defined.insert(name.clone(), answer);
    }
    defined
}

/// Compiles this service's routers into routes and their services into clusters.
pub(crate) fn compile(
    service: &str,
    tagged: &[Tagged<'_>],
    settings: &Settings,
    shared: &SharedMiddlewares<'_>,
    out: &mut Output,
) {
    let views = views(service, tagged, settings, out);
    let config = config(&views);
    let mut resolver = Resolver::new(&config, Some(shared));
    let mut clusters: BTreeMap<String, Result<(Cluster, Vec<Middleware>), String>> = BTreeMap::new();

    for (name, merged) in &config.routers {
        let (node, defaults) = match merged {
            Merged::Conflict(instances) => {
                out.fault(
                    Fault::new(format!(
                        "router rejected: instances {} define it differently (Traefik drops it too)",
                        instances.join(", ")
                    ))
                    .router(name.clone()),
                );
                continue;
            }
            Merged::Agreed(value) => value,
        };
        let (router, notes) = match router::read(*node, defaults, settings.default_rule_syntax) {
            Ok(read) => read,
            Err(e) => {
                let mut fault = Fault::new(format!("router rejected: {e}")).router(name.clone());
                if let Some(tag) = &e.tag {
                    fault = fault.tag(tag.clone());
                }
                if let Some(position) = e.position {
                    fault = fault.position(position);
                }
                out.fault(fault);
                continue;
            }
        };
        for note in notes {
            out.fault(
                Fault::new(format!("ignored: {}", note.message))
                    .tag(note.tag)
                    .router(name.clone()),
            );
        }
        let reject = |out: &mut Output, tag: Option<&String>, message: String| {
            let mut fault = Fault::new(format!("router rejected: {message}")).router(name.clone());
            if let Some(tag) = tag {
                fault = fault.tag(tag.clone());
            }
            out.fault(fault);
        };

        let (service_name, service_tag) = &router.service;
        let target = match qualified(service_name) {
            (_, Some("internal")) => Err(format!(
                "service {service_name:?} is one of Traefik's own (api, dashboard, ping...); Berth has none"
            )),
            (_, Some(provider)) if provider != PROVIDER => Err(format!(
                "service {service_name:?} belongs to provider {provider:?}; Berth only knows services of this Consul service"
            )),
            (bare, _) => clusters
                .entry(bare.to_string())
                .or_insert_with(|| cluster(service, bare, &config, &mut resolver, out))
                .clone(),
        };
        let (cluster, service_middlewares) = match target {
            Ok(found) => found,
            Err(message) => {
                reject(out, service_tag.as_ref(), message);
                continue;
            }
        };

        let mut chain = Vec::new();
        let mut failed = false;
        for (reference, tag) in &router.middlewares {
            match resolver.resolve(reference, &mut Vec::new()) {
                Ok(list) => chain.extend(list),
                Err(e) => {
                    reject(out, tag.as_ref(), e.message);
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            continue;
        }
        chain.extend(service_middlewares);

        let syntax = match router.syntax {
            RuleSyntax::V2 => "v2",
            RuleSyntax::V3 => "v3",
        };
        out.cluster(cluster.clone());
        out.route(Route {
            name: format!("{service}/{name}"),
            entrypoints: router.entrypoints,
            cluster: cluster.name.clone(),
            service: service.to_string(),
            matcher: Some(router.matcher),
            priority: router.priority,
            order: 0,
            middlewares: chain,
            requires: Vec::new(),
            origin: format!("traefik/{syntax} router {name}@{PROVIDER}"),
            tls: router.tls,
        });
    }
    // Report problems of this service's own middlewares even when no router here uses them
    // (other services may); what they resolve to here is not kept.
    let mut check = Resolver::new(&config, Some(shared));
    for name in config.middlewares.keys() {
        let _ = check.resolve(name, &mut Vec::new());
    }
    resolver.faults.extend(check.faults);
    for problem in std::mem::take(&mut resolver.faults) {
        let mut fault = Fault::new(format!("{}; routers using it are rejected", problem.message));
        if let Some(tag) = problem.tag {
            fault = fault.tag(tag);
        }
        out.fault(fault);
    }
    out.uses.extend(resolver.uses);
}

/// The cluster of Traefik service `name` and the middlewares the service adds, or why there is
/// none. Problems of single instances leave those instances out and are reported.
fn cluster(
    consul_service: &str,
    name: &str,
    config: &Config<'_>,
    resolver: &mut Resolver<'_, '_>,
    out: &mut Output,
) -> Result<(Cluster, Vec<Middleware>), String> {
    let node = match config.services.get(name) {
        None => {
            return Err(format!(
                "service {name:?} is not defined by this Consul service's tags (Berth does not link routers to other Consul services' Traefik services)"
            ))
        }
        Some(Merged::Conflict(instances)) => {
            return Err(format!(
                "service {name:?} is defined differently by instances {} (Traefik drops it too)",
                instances.join(", ")
            ))
        }
        Some(Merged::Agreed(value)) => *value,
    };
    let (shared, notes) = service::read(name, node).map_err(|e| {
        let mut fault = Fault::new(format!("{e}; routers using it are rejected"));
        if let Some(tag) = &e.tag {
            fault = fault.tag(tag.clone());
        }
        out.fault(fault);
        e.to_string()
    })?;
    for note in notes {
        out.fault(Fault::new(format!("ignored: {}", note.message)).tag(note.tag));
    }
    let mut service_middlewares = Vec::new();
    for (reference, _) in &shared.middlewares {
        let list = resolver
            .resolve(reference, &mut Vec::new())
            .map_err(|e| format!("service {name:?}: {}", e.message))?;
        service_middlewares.extend(list);
    }

    let mut scheme: Option<(String, String)> = None;
    let mut endpoints = Vec::new();
    for (tagged, node) in config.servers.get(name).map(Vec::as_slice).unwrap_or_default() {
        let instance = tagged.instance;
        let (server, notes) = match service::read_server(name, *node) {
            Ok(read) => read,
            Err(e) => {
                let mut fault =
                    Fault::new(format!("{e}; instance left out of the service")).instance(&instance.id);
                if let Some(tag) = &e.tag {
                    fault = fault.tag(tag.clone());
                }
                out.fault(fault);
                continue;
            }
        };
        for note in notes {
            out.fault(
                Fault::new(format!("ignored: {}", note.message))
                    .tag(note.tag)
                    .instance(&instance.id),
            );
        }
        match &scheme {
            None => scheme = Some((server.scheme.clone(), instance.id.clone())),
            Some((first, first_id)) if *first != server.scheme => {
                out.fault(
                    Fault::new(format!(
                        "service {name:?}: server scheme {} differs from {first} (instance {first_id}); a Berth cluster has one scheme, instance left out",
                        server.scheme
                    ))
                    .instance(&instance.id),
                );
                continue;
            }
            Some(_) => {}
        }
        if let Some(endpoint) = crate::dialect::endpoint(instance, server.port, server.weight, out) {
            endpoints.push(endpoint);
        }
    }
    let cluster = Cluster {
        name: format!("{consul_service}/{name}"),
        endpoints,
        scheme: scheme.map(|(s, _)| s).unwrap_or_else(|| "http".to_string()),
        host_header: if shared.pass_host_header {
            HostHeader::Pass as i32
        } else {
            HostHeader::Endpoint as i32
        },
        sticky: shared.sticky,
        balancing: shared.balancing as i32,
        requires: Vec::new(),
        passive_health: shared.passive_health,
        ..Default::default()
    };
    Ok((cluster, service_middlewares))
}

/// The IDs of a cluster's endpoints, for tests.
#[cfg(test)]
fn endpoint_ids(cluster: &Cluster) -> Vec<&str> {
    cluster.endpoints.iter().map(|e| e.id.as_str()).collect()
}

#[cfg(test)]
mod tests;
