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

use berth_proto::v1::{Cluster, Route};
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

/// A snapshot as assembled from the compiler's state. Its items are shared with the compiler
/// (and with the snapshots published before it): assembling one copies pointers, not routes.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    /// Canonical: routes and clusters sorted by name, each item canonical.
    pub snapshot: Items,
    pub version: String,
    pub errors: Vec<RouteError>,
    /// The names of the routes and clusters that may differ from the previous snapshot the
    /// compiler assembled (added, changed, removed, served or no longer served); `None` when not
    /// known (the store then compares every item with the current snapshot's).
    pub changed: Option<Changed>,
}

/// Equal when the snapshots, versions and errors are: `changed` says how a snapshot was reached,
/// not what it is.
impl PartialEq for Compiled {
    fn eq(&self, other: &Compiled) -> bool {
        self.snapshot == other.snapshot && self.version == other.version && self.errors == other.errors
    }
}

/// A snapshot's routes and clusters, each sorted by name. Persistent vectors: a clone shares
/// everything with the original, and changing a few items copies only the chunks that hold
/// them, so a snapshot after one change costs the same whatever the catalog's size.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Items {
    pub routes: imbl::Vector<Arc<Route>>,
    pub clusters: imbl::Vector<Arc<Cluster>>,
}

impl Items {
    /// The route named `name` (the routes are sorted by name).
    pub(crate) fn route(&self, name: &str) -> Option<&Arc<Route>> {
        let at = self.routes.binary_search_by(|r| r.name.as_str().cmp(name)).ok()?;
        self.routes.get(at)
    }

    /// The cluster named `name` (the clusters are sorted by name).
    pub(crate) fn cluster(&self, name: &str) -> Option<&Arc<Cluster>> {
        let at = self
            .clusters
            .binary_search_by(|c| c.name.as_str().cmp(name))
            .ok()?;
        self.clusters.get(at)
    }

    /// Serves `route` under `name`, or stops serving `name` (`None`), keeping the order.
    fn set_route(&mut self, name: &str, route: Option<&Arc<Route>>) {
        set_sorted(&mut self.routes, name, route, |r| r.name.as_str());
    }

    /// Serves `cluster` under `name`, or stops serving `name` (`None`), keeping the order.
    fn set_cluster(&mut self, name: &str, cluster: Option<&Arc<Cluster>>) {
        set_sorted(&mut self.clusters, name, cluster, |c| c.name.as_str());
    }
}

/// Puts `item` at `name`'s place in `items` (sorted by `key`), or removes what is there.
fn set_sorted<T>(items: &mut imbl::Vector<Arc<T>>, name: &str, item: Option<&Arc<T>>, key: fn(&T) -> &str) {
    match (items.binary_search_by(|i| key(i).cmp(name)), item) {
        (Ok(at), Some(item)) => {
            items.set(at, Arc::clone(item));
        }
        (Ok(at), None) => {
            items.remove(at);
        }
        (Err(at), Some(item)) => items.insert(at, Arc::clone(item)),
        (Err(_), None) => {}
    }
}

/// Names of routes and clusters touched by a change.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Changed {
    pub routes: BTreeSet<String>,
    pub clusters: BTreeSet<String>,
}

impl Changed {
    pub(crate) fn extend(&mut self, other: &Changed) {
        self.routes.extend(other.routes.iter().cloned());
        self.clusters.extend(other.clusters.iter().cloned());
    }
}

/// Items touched since the last snapshot, with the digest each was served with before.
#[derive(Debug, Default)]
struct Touched {
    routes: BTreeMap<String, Option<ItemDigest>>,
    clusters: BTreeMap<String, Option<ItemDigest>>,
}

#[derive(Debug)]
struct RouteEntry {
    route: Arc<Route>,
    digest: ItemDigest,
}

#[derive(Debug)]
struct ClusterEntry {
    cluster: Arc<Cluster>,
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
    /// The routes and clusters touched since the last [`Compiler::compiled`], each with the
    /// digest it was served with before (`None`: not served).
    touched: Touched,
    /// What is served, as of the last [`Compiler::compiled`]: brought up to date there from
    /// `touched`, and handed out as a clone.
    served: Items,
    /// Every error, as of the last [`Compiler::compiled`]; `None` when one may have changed since.
    errors: Option<Vec<RouteError>>,
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
            touched: Touched::default(),
            served: Items::default(),
            errors: None,
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

    /// The current snapshot, its version and every error, with what changed since the last call.
    /// Only what was touched since that call is looked at again.
    pub(crate) fn compiled(&mut self) -> Compiled {
        let touched = std::mem::take(&mut self.touched);
        for name in touched.routes.keys() {
            let route = self
                .routes
                .get(name)
                .filter(|_| !self.rejected.contains_key(name));
            self.served.set_route(name, route.map(|e| &e.route));
        }
        for name in touched.clusters.keys() {
            self.served
                .set_cluster(name, self.clusters.get(name).map(|e| &e.cluster));
        }
        let errors = match &self.errors {
            Some(errors) => errors.clone(),
            None => {
                let errors: Vec<RouteError> = self
                    .services
                    .values()
                    .flat_map(|output| output.errors.iter().cloned())
                    .chain(self.rejected.values().cloned())
                    .collect();
                self.errors = Some(errors.clone());
                errors
            }
        };
        Compiled {
            snapshot: self.served.clone(),
            version: self.version.version(),
            errors,
            changed: Some(self.changed_since(touched)),
        }
    }

    /// What differs, among the items touched, from when they were first touched.
    fn changed_since(&self, touched: Touched) -> Changed {
        Changed {
            routes: touched
                .routes
                .into_iter()
                .filter(|(name, before)| self.served_route(name) != *before)
                .map(|(name, _)| name)
                .collect(),
            clusters: touched
                .clusters
                .into_iter()
                .filter(|(name, before)| self.clusters.get(name).map(|e| e.digest) != *before)
                .map(|(name, _)| name)
                .collect(),
        }
    }

    fn served_route(&self, name: &str) -> Option<ItemDigest> {
        self.routes
            .get(name)
            .filter(|_| !self.rejected.contains_key(name))
            .map(|e| e.digest)
    }

    /// Remembers how `name` was served, before it changes.
    fn touch_route(&mut self, name: &str) {
        if !self.touched.routes.contains_key(name) {
            let before = self.served_route(name);
            self.touched.routes.insert(name.to_owned(), before);
        }
    }

    fn touch_cluster(&mut self, name: &str) {
        if !self.touched.clusters.contains_key(name) {
            let before = self.clusters.get(name).map(|e| e.digest);
            self.touched.clusters.insert(name.to_owned(), before);
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
        if !output.errors.is_empty() {
            self.errors = None;
        }
        for name in output.routes {
            self.touch_route(&name);
            let Some(entry) = self.routes.remove(&name) else {
                continue;
            };
            if self.rejected.remove(&name).is_none() {
                self.version.remove(entry.digest);
            } else {
                self.errors = None;
            }
            if let Some(key) = self.claims.remove(&name) {
                keys.insert(key);
            }
        }
        for name in output.clusters {
            self.touch_cluster(&name);
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
        if !output.errors.is_empty() {
            self.errors = None;
        }
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
            self.touch_cluster(&cluster.name);
            self.clusters.insert(
                cluster.name.clone(),
                ClusterEntry {
                    cluster: Arc::new(cluster),
                    digest,
                },
            );
        }
        for route in routes {
            let digest = berth_proto::route_digest(&route);
            // Served until `settle` says otherwise.
            self.version.add(digest);
            keys.insert(self.claims.add(&route));
            output.routes.push(route.name.clone());
            self.touch_route(&route.name);
            self.routes.insert(
                route.name.clone(),
                RouteEntry {
                    route: Arc::new(route),
                    digest,
                },
            );
        }
        self.services.insert(view.name.clone(), output);
    }

    /// Settles the claims in `keys` again and records the decisions, keeping the version in step.
    fn settle(&mut self, keys: &BTreeSet<ClaimKey>) {
        let keys: BTreeSet<&ClaimKey> = keys.iter().collect();
        for (name, lost) in self.claims.settle(&keys) {
            self.touch_route(&name);
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
                    self.errors = None;
                }
                None => {
                    if !was_served {
                        self.version.add(entry.digest);
                        self.rejected.remove(&name);
                        self.errors = None;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
