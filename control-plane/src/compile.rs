//! Compiling the catalog into a route snapshot, one service at a time.
//!
//! For every service, each instance's tags are compiled (see `berth_rules`); instances asking
//! for the same frontend (hosts, path prefix, entrypoints) form one route whose cluster holds the
//! instances whose health the operator accepts. An instance whose tags are wrong is left out and
//! reported, naming the service, the instance and the tag: one bad tag costs one route, never
//! the snapshot. A route whose host and path are already claimed by another service is rejected
//! the same way, so which service answers a host never depends on registration order.
//!
//! The [`Compiler`] keeps every service's output, so a change to one service recompiles that
//! service only: its routes leave and join an index by host, conflicts are settled again among
//! the routes that share a host with them, and the snapshot's version is updated by the digests
//! of the routes and clusters that came and went (see `berth_proto::VersionSum`). The result is
//! the same as compiling the whole catalog from scratch, in any order.
//!
//! This module is pure (service views in, snapshot out); publishing and streaming live elsewhere.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use berth_proto::v1::{Cluster, Endpoint, Route, Snapshot};
use berth_proto::{ItemDigest, VersionSum};
use berth_rules::{Frontend, Settings};
use serde::Serialize;

use crate::watch::{Health, ServiceView};

/// A problem that kept (part of) a service out of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RouteError {
    pub service: String,
    /// The Consul service ID of the instance concerned, if the problem is an instance's.
    pub instance: Option<String>,
    /// The tag at fault, if one is.
    pub tag: Option<String>,
    pub error: String,
}

/// A snapshot as assembled from the compiler's state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Compiled {
    /// Canonical: routes and clusters sorted by name, each item canonical.
    pub snapshot: Snapshot,
    pub version: String,
    pub errors: Vec<RouteError>,
}

/// One route and the cluster that serves it (they share a name), with their digests.
#[derive(Debug)]
struct Entry {
    route: Route,
    cluster: Cluster,
    route_digest: ItemDigest,
    cluster_digest: ItemDigest,
}

/// What one service compiled to.
#[derive(Debug, Default)]
struct ServiceOutput {
    routes: Vec<String>,
    errors: Vec<RouteError>,
}

/// The compiled catalog, updated one service at a time.
pub(crate) struct Compiler {
    settings: Settings,
    /// The worst health that still receives traffic.
    accept: Health,
    services: BTreeMap<String, ServiceOutput>,
    /// Every route compiled, served or not, by name.
    entries: BTreeMap<String, Entry>,
    /// Route names by the hosts they claim.
    by_host: HashMap<String, BTreeSet<String>>,
    /// Routes not served because another route holds their claim, with the reason.
    rejected: BTreeMap<String, RouteError>,
    version: VersionSum,
}

impl Compiler {
    /// A compiler with nothing compiled yet. Instances whose health is `accept` or better
    /// receive traffic.
    pub(crate) fn new(settings: Settings, accept: Health) -> Compiler {
        Compiler {
            settings,
            accept,
            services: BTreeMap::new(),
            entries: BTreeMap::new(),
            by_host: HashMap::new(),
            rejected: BTreeMap::new(),
            version: VersionSum::default(),
        }
    }

    /// Recompiles the services in `changed` (`None`: the service is gone); returns how many.
    pub(crate) fn apply(&mut self, changed: &BTreeMap<String, Option<Arc<ServiceView>>>) -> usize {
        let mut hosts = BTreeSet::new();
        for (name, view) in changed {
            self.remove_service(name, &mut hosts);
            if let Some(view) = view {
                self.add_service(view, &mut hosts);
            }
        }
        self.settle(&hosts);
        changed.len()
    }

    /// The errors of one service (its own, and its routes' conflicts), for the log.
    pub(crate) fn errors_of(&self, service: &str) -> Vec<&RouteError> {
        let Some(output) = self.services.get(service) else {
            return Vec::new();
        };
        output
            .errors
            .iter()
            .chain(output.routes.iter().filter_map(|r| self.rejected.get(r)))
            .collect()
    }

    /// The current snapshot, its version and every error.
    pub(crate) fn compiled(&self) -> Compiled {
        let served = self
            .entries
            .iter()
            .filter(|(name, _)| !self.rejected.contains_key(*name));
        let (routes, clusters) = served
            .map(|(_, entry)| (entry.route.clone(), entry.cluster.clone()))
            .unzip();
        let errors = self
            .services
            .values()
            .flat_map(|output| output.errors.iter().cloned())
            .chain(self.rejected.values().cloned())
            .collect();
        Compiled {
            snapshot: Snapshot { routes, clusters },
            version: self.version.version(),
            errors,
        }
    }

    fn remove_service(&mut self, service: &str, hosts: &mut BTreeSet<String>) {
        let Some(output) = self.services.remove(service) else {
            return;
        };
        for name in output.routes {
            let Some(entry) = self.entries.remove(&name) else {
                continue;
            };
            if self.rejected.remove(&name).is_none() {
                self.version.remove(entry.route_digest);
                self.version.remove(entry.cluster_digest);
            }
            for host in &entry.route.hosts {
                if let Some(names) = self.by_host.get_mut(host) {
                    names.remove(&name);
                    if names.is_empty() {
                        self.by_host.remove(host);
                    }
                }
                hosts.insert(host.clone());
            }
        }
    }

    fn add_service(&mut self, view: &ServiceView, hosts: &mut BTreeSet<String>) {
        let (entries, errors) = compile_service(view, &self.settings, self.accept);
        let mut output = ServiceOutput {
            routes: Vec::with_capacity(entries.len()),
            errors,
        };
        for entry in entries {
            let name = entry.route.name.clone();
            // Served until `settle` says otherwise.
            self.version.add(entry.route_digest);
            self.version.add(entry.cluster_digest);
            for host in &entry.route.hosts {
                self.by_host.entry(host.clone()).or_default().insert(name.clone());
                hosts.insert(host.clone());
            }
            output.routes.push(name.clone());
            self.entries.insert(name, entry);
        }
        self.services.insert(view.name.clone(), output);
    }

    /// Settles claims again among every route that shares a host, directly or through other
    /// routes, with `hosts`. Routes are taken in name order and a route is served unless an
    /// earlier served route holds the same host and path prefix on a shared entrypoint: the
    /// same answer as settling the whole catalog, since no other route can affect these.
    fn settle(&mut self, hosts: &BTreeSet<String>) {
        let mut group: BTreeSet<&str> = BTreeSet::new();
        let mut seen: BTreeSet<&str> = hosts.iter().map(String::as_str).collect();
        let mut queue: Vec<&str> = seen.iter().copied().collect();
        while let Some(host) = queue.pop() {
            for name in self.by_host.get(host).into_iter().flatten() {
                if group.insert(name.as_str()) {
                    if let Some(entry) = self.entries.get(name) {
                        for other in &entry.route.hosts {
                            if seen.insert(other.as_str()) {
                                queue.push(other.as_str());
                            }
                        }
                    }
                }
            }
        }

        let mut served_on: HashMap<&str, Vec<&Entry>> = HashMap::new();
        let mut decisions: Vec<(String, Option<RouteError>)> = Vec::with_capacity(group.len());
        for name in group {
            let Some(entry) = self.entries.get(name) else {
                continue;
            };
            let owner = entry.route.hosts.iter().find_map(|host| {
                served_on
                    .get(host.as_str())?
                    .iter()
                    .find(|owner| clashes(&owner.route, &entry.route))
                    .map(|owner| (host, *owner))
            });
            match owner {
                Some((host, owner)) => {
                    let error = RouteError {
                        service: entry.route.service.clone(),
                        instance: None,
                        tag: None,
                        error: format!(
                            "host {host:?} (path prefix {:?}) is already routed to service {:?}; route {:?} not served",
                            entry.route.path_prefix, owner.route.service, entry.route.name
                        ),
                    };
                    decisions.push((name.to_string(), Some(error)));
                }
                None => {
                    for host in &entry.route.hosts {
                        served_on.entry(host.as_str()).or_default().push(entry);
                    }
                    decisions.push((name.to_string(), None));
                }
            }
        }
        for (name, rejection) in decisions {
            self.decide(name, rejection);
        }
    }

    /// Records whether route `name` is served, keeping the version in step.
    fn decide(&mut self, name: String, rejection: Option<RouteError>) {
        let Some(entry) = self.entries.get(&name) else {
            return;
        };
        let (route, cluster) = (entry.route_digest, entry.cluster_digest);
        let was_served = !self.rejected.contains_key(&name);
        match rejection {
            Some(error) => {
                if was_served {
                    self.version.remove(route);
                    self.version.remove(cluster);
                }
                self.rejected.insert(name, error);
            }
            None => {
                if !was_served {
                    self.version.add(route);
                    self.version.add(cluster);
                    self.rejected.remove(&name);
                }
            }
        }
    }
}

/// Two routes that claim the same host and path prefix on a shared entrypoint cannot both be
/// served. `a` and `b` are known to share a host.
fn clashes(a: &Route, b: &Route) -> bool {
    a.path_prefix == b.path_prefix
        && (a.entrypoints.is_empty()
            || b.entrypoints.is_empty()
            || a.entrypoints.iter().any(|e| b.entrypoints.contains(e)))
}

struct Group {
    frontend: Frontend,
    endpoints: Vec<Endpoint>,
}

/// Compiles one service into its routes (each with its cluster) and its errors.
fn compile_service(view: &ServiceView, settings: &Settings, accept: Health) -> (Vec<Entry>, Vec<RouteError>) {
    let service = &view.name;
    let mut errors = Vec::new();
    let mut groups: BTreeMap<Frontend, Group> = BTreeMap::new();
    for member in &view.instances {
        let instance = &member.instance;
        let exposure = match berth_rules::compile(service, &instance.tags, settings) {
            Ok(Some(exposure)) => exposure,
            Ok(None) => continue,
            Err(e) => {
                errors.push(RouteError {
                    service: service.clone(),
                    instance: Some(instance.id.clone()),
                    tag: Some(e.tag.clone()),
                    error: e.problem.to_string(),
                });
                continue;
            }
        };
        let group = groups.entry(exposure.frontend.clone()).or_insert_with(|| Group {
            frontend: exposure.frontend,
            endpoints: Vec::new(),
        });
        if member.health > accept {
            continue;
        }
        if instance.port == 0 || instance.target_address().is_empty() {
            errors.push(RouteError {
                service: service.clone(),
                instance: Some(instance.id.clone()),
                tag: None,
                error: format!(
                    "registered without a usable address and port ({:?}:{}); not routed",
                    instance.target_address(),
                    instance.port
                ),
            });
            continue;
        }
        group.endpoints.push(Endpoint {
            address: instance.target_address().to_string(),
            port: u32::from(instance.port),
            weight: exposure.weight,
            id: instance.id.clone(),
        });
    }
    let several = groups.len() > 1;
    let entries = groups
        .into_values()
        .enumerate()
        .map(|(i, group)| {
            // The first group of a service is named after it; further groups (instances of one
            // service asking for different frontends) get a numbered suffix.
            let name = if several && i > 0 {
                format!("{service}#{}", i + 1)
            } else {
                service.clone()
            };
            let mut route = Route {
                name: name.clone(),
                hosts: group.frontend.hosts,
                path_prefix: group.frontend.path_prefix,
                entrypoints: group.frontend.entrypoints,
                cluster: name.clone(),
                service: service.clone(),
            };
            let mut cluster = Cluster {
                name,
                endpoints: group.endpoints,
            };
            berth_proto::canonicalize_route(&mut route);
            berth_proto::canonicalize_cluster(&mut cluster);
            Entry {
                route_digest: berth_proto::route_digest(&route),
                cluster_digest: berth_proto::cluster_digest(&cluster),
                route,
                cluster,
            }
        })
        .collect();
    (entries, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::state::ViewInstance;
    use berth_consul::catalog::Instance;

    type Catalog = BTreeMap<String, Option<Arc<ServiceView>>>;

    fn instance(service: &str, id: &str, port: u16, tags: &[&str], passing: bool) -> (String, ViewInstance) {
        let instance = Instance {
            node: "n1".into(),
            node_address: "127.0.0.1".into(),
            id: id.into(),
            service: service.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            address: String::new(),
            port,
            meta: Default::default(),
            modify_index: 1,
        };
        let health = if passing {
            Health::Passing
        } else {
            Health::Critical
        };
        (service.to_string(), ViewInstance { instance, health })
    }

    fn catalog(entries: Vec<(String, ViewInstance)>) -> Catalog {
        let mut services: BTreeMap<String, Vec<ViewInstance>> = BTreeMap::new();
        for (service, instance) in entries {
            services.entry(service).or_default().push(instance);
        }
        services
            .into_iter()
            .map(|(name, instances)| (name.clone(), Some(Arc::new(ServiceView { name, instances }))))
            .collect()
    }

    /// Compiles a whole catalog from scratch.
    fn compile(catalog: &Catalog, settings: &Settings) -> Compiled {
        let mut compiler = Compiler::new(settings.clone(), Health::Passing);
        compiler.apply(catalog);
        compiler.compiled()
    }

    const GO: [&str; 3] = [
        "traefik.enable=true",
        "traefik.frontend.entryPoints=http",
        "traefik.frontend.rule=Host:go.traefix.example.localhost",
    ];

    #[test]
    fn the_article_scenario() {
        let c = catalog(vec![
            instance("web_go", "go-1", 9001, &GO, true),
            instance("web_go", "go-2", 9002, &GO, true),
            instance("web_go", "go-3", 9003, &GO, false),
            instance(
                "hidden",
                "h-1",
                9100,
                &["traefik.frontend.rule=Host:hidden.example"],
                true,
            ),
        ]);
        let out = compile(&c, &Settings::default());
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.snapshot.routes.len(), 1);
        let route = &out.snapshot.routes[0];
        assert_eq!(
            (route.name.as_str(), route.hosts[0].as_str()),
            ("web_go", "go.traefix.example.localhost")
        );
        assert_eq!(route.entrypoints, vec!["http"]);
        let ports: Vec<u32> = out.snapshot.clusters[0]
            .endpoints
            .iter()
            .map(|e| e.port)
            .collect();
        assert_eq!(ports, vec![9001, 9002], "the failing instance is left out");
    }

    #[test]
    fn version_depends_only_on_content() {
        let a = catalog(vec![
            instance("web_go", "go-1", 9001, &GO, true),
            instance("web_go", "go-2", 9002, &GO, true),
        ]);
        let b = catalog(vec![
            instance("web_go", "go-2", 9002, &GO, true),
            instance("web_go", "go-1", 9001, &GO, true),
        ]);
        assert_eq!(
            compile(&a, &Settings::default()).version,
            compile(&b, &Settings::default()).version
        );
        let c = catalog(vec![instance("web_go", "go-1", 9001, &GO, true)]);
        assert_ne!(
            compile(&a, &Settings::default()).version,
            compile(&c, &Settings::default()).version
        );
    }

    #[test]
    fn a_bad_tag_rejects_one_route_only() {
        let c = catalog(vec![
            instance("web_go", "go-1", 9001, &GO, true),
            instance(
                "broken",
                "b-1",
                9200,
                &["traefik.enable=true", "traefik.frontend.rule=Host:"],
                true,
            ),
            instance(
                "odd",
                "o-1",
                9300,
                &["traefik.enable=true", "traefik.frontend.rule=Hots:odd.example"],
                true,
            ),
        ]);
        let out = compile(&c, &Settings::default());
        assert_eq!(out.snapshot.routes.len(), 1);
        assert_eq!(out.errors.len(), 2);
        assert_eq!(out.errors[0].service, "broken");
        assert_eq!(out.errors[0].tag.as_deref(), Some("traefik.frontend.rule=Host:"));
        assert!(
            out.errors[1].error.contains("unknown matcher"),
            "{:?}",
            out.errors[1]
        );
    }

    #[test]
    fn unhealthy_service_keeps_its_route_with_no_endpoints() {
        let out = compile(
            &catalog(vec![instance("web_go", "go-1", 9001, &GO, false)]),
            &Settings::default(),
        );
        assert_eq!(out.snapshot.routes.len(), 1);
        assert!(out.snapshot.clusters[0].endpoints.is_empty());
    }

    #[test]
    fn host_conflicts_are_settled_by_name_and_reported() {
        let tags = ["traefik.enable=true", "traefik.frontend.rule=Host:same.example"];
        let out = compile(
            &catalog(vec![
                instance("zeta", "z-1", 9001, &tags, true),
                instance("alpha", "a-1", 9002, &tags, true),
            ]),
            &Settings::default(),
        );
        assert_eq!(out.snapshot.routes.len(), 1);
        assert_eq!(out.snapshot.routes[0].service, "alpha");
        assert_eq!(out.snapshot.clusters.len(), 1);
        assert_eq!(out.errors[0].service, "zeta");
        // Disjoint entrypoints do not clash.
        let https = [
            "traefik.enable=true",
            "traefik.frontend.rule=Host:same.example",
            "traefik.frontend.entryPoints=https",
        ];
        let http = [
            "traefik.enable=true",
            "traefik.frontend.rule=Host:same.example",
            "traefik.frontend.entryPoints=http",
        ];
        let out = compile(
            &catalog(vec![
                instance("zeta", "z-1", 9001, &https, true),
                instance("alpha", "a-1", 9002, &http, true),
            ]),
            &Settings::default(),
        );
        assert_eq!(out.snapshot.routes.len(), 2, "{:?}", out.errors);
    }

    #[test]
    fn instances_with_different_frontends_get_separate_routes() {
        let other = ["traefik.enable=true", "traefik.frontend.rule=Host:canary.example"];
        let out = compile(
            &catalog(vec![
                instance("web_go", "go-1", 9001, &GO, true),
                instance("web_go", "go-2", 9002, &other, true),
            ]),
            &Settings::default(),
        );
        let names: Vec<&str> = out.snapshot.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["web_go", "web_go#2"]);
    }

    #[test]
    fn one_change_at_a_time_gives_what_a_full_compile_gives() {
        let same = ["traefik.enable=true", "traefik.frontend.rule=Host:same.example"];
        let full = catalog(vec![
            instance("web_go", "go-1", 9001, &GO, true),
            instance("alpha", "a-1", 9002, &same, true),
            instance("zeta", "z-1", 9003, &same, true),
        ]);
        let mut compiler = Compiler::new(Settings::default(), Health::Passing);
        // Services arrive one by one, in an order where the conflict's winner comes last.
        for name in ["zeta", "web_go", "alpha"] {
            let one: Catalog = [(name.to_string(), full[name].clone())].into();
            assert_eq!(compiler.apply(&one), 1);
        }
        assert_eq!(compiler.compiled(), compile(&full, &Settings::default()));

        // The winner leaves: the loser takes the host over, and the version matches a catalog
        // that never had the winner.
        compiler.apply(&[("alpha".to_string(), None)].into());
        let mut without = full.clone();
        without.remove("alpha");
        let expected = compile(&without, &Settings::default());
        assert_eq!(compiler.compiled(), expected);
        assert!(expected.snapshot.routes.iter().any(|r| r.service == "zeta"));
        assert!(expected.errors.is_empty());
    }

    #[test]
    fn warning_instances_are_routed_only_when_accepted() {
        let (service, mut warned) = instance("web_go", "go-1", 9001, &GO, true);
        warned.health = Health::Warning;
        let c = catalog(vec![(service, warned)]);
        let endpoints = |accept| {
            let mut compiler = Compiler::new(Settings::default(), accept);
            compiler.apply(&c);
            compiler.compiled().snapshot.clusters[0].endpoints.len()
        };
        assert_eq!(endpoints(Health::Passing), 0);
        assert_eq!(endpoints(Health::Warning), 1);
    }
}
