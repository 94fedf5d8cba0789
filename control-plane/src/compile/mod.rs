//! Compiling the catalog into a route snapshot, one service at a time.
//!
//! Each service's instances and tags go through the tag dialects (`berth_rules`: Traefik v3/v2
//! routers and middlewares, Traefik v1 frontends, Fabio's `urlprefix-`), which turn them into
//! routes and clusters of the route model; only instances whose health the operator accepts
//! become endpoints. A bad tag costs the router it belongs to, never the snapshot: the dialects
//! report it, naming the service, the router, the tag and the position in the rule.
//!
//! The [`Compiler`] keeps every service's output, so a change to one service recompiles that
//! service only (plus the services that use a middleware it defines: see [`shared`]). Routes
//! that take exactly the same requests are settled by [`claims`]: the older claim is served and
//! the other reported. The snapshot's version follows the digests of the routes and clusters
//! that came and went (see `berth_proto::VersionSum`), so the result, version included, is the
//! same as compiling the whole catalog from scratch, in any order.
//!
//! This module is pure (service views in, snapshot out); publishing and streaming live elsewhere.

mod claims;
mod shared;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use berth_proto::v1::{Cluster, Route, Snapshot};
use berth_proto::{ItemDigest, VersionSum};
use berth_rules::Settings;
use serde::Serialize;

use crate::watch::{Health, ServiceView};
use claims::{ClaimKey, Claims};
use shared::{Lookups, Registry};

/// A problem that kept (part of) a service out of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RouteError {
    pub service: String,
    /// The Consul service ID of the instance concerned, if the problem is an instance's.
    pub instance: Option<String>,
    /// The router (or frontend) concerned, if one is.
    pub router: Option<String>,
    /// The tag at fault, if one is.
    pub tag: Option<String>,
    /// Where in the tag's value (a rule) the problem is, counted in bytes from 0.
    pub position: Option<usize>,
    pub error: String,
}

impl From<berth_rules::RouteError> for RouteError {
    fn from(e: berth_rules::RouteError) -> RouteError {
        RouteError {
            service: e.service,
            instance: e.instance,
            router: e.router,
            tag: e.tag,
            position: e.position,
            error: e.error,
        }
    }
}

/// A snapshot as assembled from the compiler's state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Compiled {
    /// Canonical: routes and clusters sorted by name, each item canonical.
    pub snapshot: Snapshot,
    pub version: String,
    pub errors: Vec<RouteError>,
    /// The digest of each route and cluster of `snapshot`, in the same order (empty when not
    /// known: the store then computes them).
    pub digests: Digests,
}

/// Digests of a snapshot's items, parallel to its `routes` and `clusters`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Digests {
    pub routes: Vec<ItemDigest>,
    pub clusters: Vec<ItemDigest>,
}

#[derive(Debug)]
struct RouteEntry {
    route: Route,
    digest: ItemDigest,
}

#[derive(Debug)]
struct ClusterEntry {
    cluster: Cluster,
    digest: ItemDigest,
}

/// What one service compiled to.
#[derive(Debug, Default)]
struct ServiceOutput {
    routes: Vec<String>,
    clusters: Vec<String>,
    errors: Vec<RouteError>,
}

/// The compiled catalog, updated one service at a time.
pub(crate) struct Compiler {
    settings: Settings,
    /// The worst health that still receives traffic.
    accept: Health,
    views: BTreeMap<String, Arc<ServiceView>>,
    services: BTreeMap<String, ServiceOutput>,
    routes: BTreeMap<String, RouteEntry>,
    clusters: BTreeMap<String, ClusterEntry>,
    claims: Claims,
    /// Routes not served because an older route takes the same requests, with the reason.
    rejected: BTreeMap<String, RouteError>,
    shared: Registry,
    version: VersionSum,
}

impl Compiler {
    /// A compiler with nothing compiled yet. Instances whose health is `accept` or better
    /// receive traffic.
    pub(crate) fn new(settings: Settings, accept: Health) -> Compiler {
        Compiler {
            settings,
            accept,
            views: BTreeMap::new(),
            services: BTreeMap::new(),
            routes: BTreeMap::new(),
            clusters: BTreeMap::new(),
            claims: Claims::default(),
            rejected: BTreeMap::new(),
            shared: Registry::default(),
            version: VersionSum::default(),
        }
    }

    /// Takes the services in `changed` (`None`: the service is gone) and recompiles them and the
    /// services that use a middleware whose definition changed; returns how many were compiled.
    pub(crate) fn apply(&mut self, changed: &BTreeMap<String, Option<Arc<ServiceView>>>) -> usize {
        let mut redefined = BTreeSet::new();
        for (name, view) in changed {
            let definitions = match view {
                Some(view) => {
                    self.views.insert(name.clone(), view.clone());
                    let instances = self.instances(view);
                    berth_rules::middlewares_defined(name, &instances, &self.settings)
                        .into_iter()
                        .map(|(middleware, definition)| (middleware, definition.map_err(|e| e.error)))
                        .collect()
                }
                None => {
                    self.views.remove(name);
                    BTreeMap::new()
                }
            };
            redefined.extend(self.shared.define(name, definitions));
        }
        let mut todo: BTreeSet<String> = changed.keys().cloned().collect();
        todo.extend(self.shared.users_of(&redefined));

        let mut keys = BTreeSet::new();
        for name in &todo {
            self.remove_service(name, &mut keys);
            if let Some(view) = self.views.get(name).cloned() {
                self.add_service(&view, &mut keys);
            }
        }
        self.settle(&keys);
        todo.len()
    }

    /// The errors of one service (its own, and its routes' lost claims), for the log.
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
        let (routes, route_digests) = self
            .routes
            .iter()
            .filter(|(name, _)| !self.rejected.contains_key(*name))
            .map(|(_, entry)| (entry.route.clone(), entry.digest))
            .unzip();
        let (clusters, cluster_digests) = self
            .clusters
            .values()
            .map(|entry| (entry.cluster.clone(), entry.digest))
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
            digests: Digests {
                routes: route_digests,
                clusters: cluster_digests,
            },
        }
    }

    fn instances(&self, view: &ServiceView) -> Vec<berth_rules::Instance> {
        view.instances
            .iter()
            .map(|member| berth_rules::Instance {
                id: member.instance.id.clone(),
                address: member.instance.target_address().to_string(),
                port: member.instance.port,
                tags: member.instance.tags.clone(),
                meta: member.instance.meta.clone(),
                routable: member.health <= self.accept,
            })
            .collect()
    }

    fn remove_service(&mut self, service: &str, keys: &mut BTreeSet<ClaimKey>) {
        let Some(output) = self.services.remove(service) else {
            return;
        };
        for name in output.routes {
            let Some(entry) = self.routes.remove(&name) else {
                continue;
            };
            if self.rejected.remove(&name).is_none() {
                self.version.remove(entry.digest);
            }
            if let Some(key) = self.claims.remove(&name) {
                keys.insert(key);
            }
        }
        for name in output.clusters {
            if let Some(entry) = self.clusters.remove(&name) {
                self.version.remove(entry.digest);
            }
        }
    }

    fn add_service(&mut self, view: &ServiceView, keys: &mut BTreeSet<ClaimKey>) {
        let instances = self.instances(view);
        let lookups = Lookups::new(&self.shared);
        let compiled = berth_rules::compile_service(&view.name, &instances, &self.settings, &|name| {
            lookups.resolve(name)
        });
        let asked = lookups.asked();
        self.shared.set_uses(&view.name, asked);

        // The claim of every route of a service dates from its oldest instance.
        let order = view
            .instances
            .iter()
            .map(|member| member.instance.create_index)
            .min()
            .unwrap_or(0);
        let mut output = ServiceOutput {
            errors: compiled.errors.into_iter().map(RouteError::from).collect(),
            ..ServiceOutput::default()
        };
        let mut routes = compiled.routes;
        let mut clusters = compiled.clusters;
        for route in &mut routes {
            route.order = order;
            berth_proto::canonicalize_route(route);
        }
        clusters.iter_mut().for_each(berth_proto::canonicalize_cluster);
        // The dialects filled `requires` and already dropped and reported every route that fails
        // the proxies' check (berth_model::validate), route by route; `order` keeps it valid.
        for cluster in clusters {
            let digest = berth_proto::cluster_digest(&cluster);
            self.version.add(digest);
            output.clusters.push(cluster.name.clone());
            self.clusters
                .insert(cluster.name.clone(), ClusterEntry { cluster, digest });
        }
        for route in routes {
            let digest = berth_proto::route_digest(&route);
            // Served until `settle` says otherwise.
            self.version.add(digest);
            keys.insert(self.claims.add(&route));
            output.routes.push(route.name.clone());
            self.routes
                .insert(route.name.clone(), RouteEntry { route, digest });
        }
        self.services.insert(view.name.clone(), output);
    }

    /// Settles the claims in `keys` again and records the decisions, keeping the version in step.
    fn settle(&mut self, keys: &BTreeSet<ClaimKey>) {
        let keys: BTreeSet<&ClaimKey> = keys.iter().collect();
        for (name, lost) in self.claims.settle(&keys) {
            let Some(entry) = self.routes.get(&name) else {
                continue;
            };
            let was_served = !self.rejected.contains_key(&name);
            match lost {
                Some(lost) => {
                    if was_served {
                        self.version.remove(entry.digest);
                    }
                    let error = RouteError {
                        service: entry.route.service.clone(),
                        instance: None,
                        router: Some(name.clone()),
                        tag: None,
                        position: None,
                        error: format!(
                            "route {:?} takes exactly the requests of route {:?} of service {:?}, which was registered first; not served",
                            lost.route, lost.winner, lost.winner_service
                        ),
                    };
                    self.rejected.insert(name, error);
                }
                None => {
                    if !was_served {
                        self.version.add(entry.digest);
                        self.rejected.remove(&name);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
