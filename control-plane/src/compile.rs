//! Compiling the catalog into a route snapshot.
//!
//! For every service, each instance's tags are compiled (see `berth_rules`); instances asking
//! for the same frontend (hosts, path prefix, entrypoints) form one route whose cluster holds the
//! instances whose health checks all pass. An instance whose tags are wrong is left out and
//! reported, naming the service, the instance and the tag: one bad tag costs one route, never
//! the snapshot. A route whose host and path are already claimed by another service is rejected
//! the same way, so which service answers a host never depends on registration order.
//!
//! This module is pure (catalog in, snapshot out); publishing and streaming live elsewhere.

use std::collections::BTreeMap;

use berth_proto::v1::{Cluster, Endpoint, Route, Snapshot};
use berth_rules::{Frontend, Settings};
use serde::Serialize;

use crate::watch::Catalog;

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

/// The result of one compile.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Compiled {
    /// Canonical (see `berth_proto::canonicalize`).
    pub snapshot: Snapshot,
    pub version: String,
    pub errors: Vec<RouteError>,
}

struct Group {
    frontend: Frontend,
    endpoints: Vec<Endpoint>,
}

/// Compiles `catalog` into a canonical snapshot and its version.
pub(crate) fn compile(catalog: &Catalog, settings: &Settings) -> Compiled {
    let mut routes = Vec::new();
    let mut clusters = Vec::new();
    let mut errors = Vec::new();

    for (service, instances) in &catalog.services {
        let mut groups: BTreeMap<Frontend, Group> = BTreeMap::new();
        for instance in instances {
            let exposure = match berth_rules::compile(service, &instance.service.tags, settings) {
                Ok(Some(exposure)) => exposure,
                Ok(None) => continue,
                Err(e) => {
                    errors.push(RouteError {
                        service: service.clone(),
                        instance: Some(instance.service.id.clone()),
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
            if !instance.is_passing() {
                continue;
            }
            if instance.service.port == 0 || instance.address().is_empty() {
                errors.push(RouteError {
                    service: service.clone(),
                    instance: Some(instance.service.id.clone()),
                    tag: None,
                    error: format!(
                        "registered without a usable address and port ({:?}:{}); not routed",
                        instance.address(),
                        instance.service.port
                    ),
                });
                continue;
            }
            group.endpoints.push(Endpoint {
                address: instance.address().to_string(),
                port: u32::from(instance.service.port),
                weight: exposure.weight,
                id: instance.service.id.clone(),
            });
        }
        let several = groups.len() > 1;
        for (i, group) in groups.into_values().enumerate() {
            // The first group of a service is named after it; further groups (instances of one
            // service asking for different frontends) get a numbered suffix.
            let name = if several && i > 0 {
                format!("{service}#{}", i + 1)
            } else {
                service.clone()
            };
            routes.push(Route {
                name: name.clone(),
                hosts: group.frontend.hosts,
                path_prefix: group.frontend.path_prefix,
                entrypoints: group.frontend.entrypoints,
                cluster: name.clone(),
                service: service.clone(),
            });
            clusters.push(Cluster {
                name,
                endpoints: group.endpoints,
            });
        }
    }

    reject_conflicts(&mut routes, &mut clusters, &mut errors);
    let mut snapshot = Snapshot { routes, clusters };
    berth_proto::canonicalize(&mut snapshot);
    let version = berth_proto::version_of(&snapshot);
    Compiled {
        snapshot,
        version,
        errors,
    }
}

/// Two routes that claim the same host and path prefix on a shared entrypoint cannot both be
/// served. The route whose name sorts first keeps the claim (a stable, order-independent choice);
/// the other is dropped and reported.
fn reject_conflicts(routes: &mut Vec<Route>, clusters: &mut Vec<Cluster>, errors: &mut Vec<RouteError>) {
    routes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut kept: Vec<Route> = Vec::with_capacity(routes.len());
    for route in routes.drain(..) {
        let clash = kept.iter().find(|k| {
            k.path_prefix == route.path_prefix
                && k.hosts.iter().any(|h| route.hosts.contains(h))
                && (k.entrypoints.is_empty()
                    || route.entrypoints.is_empty()
                    || k.entrypoints.iter().any(|e| route.entrypoints.contains(e)))
        });
        match clash {
            Some(owner) => {
                let host = owner
                    .hosts
                    .iter()
                    .find(|h| route.hosts.contains(h))
                    .cloned()
                    .unwrap_or_default();
                errors.push(RouteError {
                    service: route.service.clone(),
                    instance: None,
                    tag: None,
                    error: format!(
                        "host {host:?} (path prefix {:?}) is already routed to service {:?}; route {:?} not served",
                        route.path_prefix, owner.service, route.name
                    ),
                });
                clusters.retain(|c| c.name != route.cluster);
            }
            None => kept.push(route),
        }
    }
    *routes = kept;
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_consul::catalog::{Check, Node, Service, ServiceEntry};

    fn instance(service: &str, id: &str, port: u16, tags: &[&str], passing: bool) -> ServiceEntry {
        ServiceEntry {
            node: Node {
                node: "n1".into(),
                address: "127.0.0.1".into(),
            },
            service: Service {
                id: id.into(),
                service: service.into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                address: String::new(),
                port,
                meta: Default::default(),
            },
            checks: vec![Check {
                check_id: format!("service:{id}"),
                name: String::new(),
                status: if passing { "passing" } else { "critical" }.into(),
                service_id: id.into(),
                output: String::new(),
            }],
        }
    }

    const GO: [&str; 3] = [
        "traefik.enable=true",
        "traefik.frontend.entryPoints=http",
        "traefik.frontend.rule=Host:go.traefix.example.localhost",
    ];

    fn catalog(entries: Vec<ServiceEntry>) -> Catalog {
        let mut services: BTreeMap<String, Vec<ServiceEntry>> = BTreeMap::new();
        for e in entries {
            services.entry(e.service.service.clone()).or_default().push(e);
        }
        Catalog { services }
    }

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
}
