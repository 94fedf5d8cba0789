//! What a service compiled to, collected while a dialect runs: its routes, its clusters, the
//! middlewares of other services it used, and every problem found, each as a [`RouteError`]
//! naming the service and, where it applies, the instance, the router, the tag and the position
//! in the rule.
//!
//! A problem either rejects the router it belongs to (its route is left out) or is reported
//! while the route is kept (a tag Berth ignores on purpose); the error text says which.
//!
//! Not for: deciding which problems reject what; the dialects do.

use std::collections::BTreeSet;
use std::fmt;

use berth_proto::v1::{Cluster, Route};

use crate::ServiceRoutes;

/// A problem with a service's tags: what it is and where.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteError {
    /// The Consul service.
    pub service: String,
    /// The Consul service ID of the instance concerned, when only one instance is.
    pub instance: Option<String>,
    /// The router (Traefik v2/v3), frontend (Traefik v1) or route (Fabio) concerned.
    pub router: Option<String>,
    /// The tag at fault, as registered.
    pub tag: Option<String>,
    /// Byte offset in the rule (the tag's value) where it went wrong.
    pub position: Option<usize>,
    /// What is wrong, and whether the route was rejected or the tag ignored.
    pub error: String,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "service {:?}", self.service)?;
        if let Some(instance) = &self.instance {
            write!(f, ", instance {instance:?}")?;
        }
        if let Some(router) = &self.router {
            write!(f, ", router {router:?}")?;
        }
        if let Some(tag) = &self.tag {
            write!(f, ", tag {tag:?}")?;
        }
        if let Some(position) = self.position {
            write!(f, ", at position {position}")?;
        }
        write!(f, ": {}", self.error)
    }
}

impl std::error::Error for RouteError {}

/// A problem before it is tied to a service: the parts a dialect knows where it is found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Fault {
    pub instance: Option<String>,
    pub router: Option<String>,
    pub tag: Option<String>,
    pub position: Option<usize>,
    pub error: String,
}

impl Fault {
    pub fn new(error: impl fmt::Display) -> Self {
        Fault {
            error: error.to_string(),
            ..Fault::default()
        }
    }

    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        let tag = tag.into();
        self.tag = (!tag.is_empty()).then_some(tag);
        self
    }

    pub fn router(mut self, router: impl Into<String>) -> Self {
        self.router = Some(router.into());
        self
    }

    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    pub fn position(mut self, position: usize) -> Self {
        self.position = Some(position);
        self
    }
}

/// Everything one service compiles to, filled in by the dialects.
#[derive(Debug)]
pub(crate) struct Output {
    pub service: String,
    pub routes: Vec<Route>,
    pub clusters: Vec<Cluster>,
    pub uses: BTreeSet<String>,
    /// Problems with the instances they were found on (several instances may report the same).
    faults: Vec<Fault>,
}

impl Output {
    pub fn new(service: &str) -> Self {
        Output {
            service: service.to_string(),
            routes: Vec::new(),
            clusters: Vec::new(),
            uses: BTreeSet::new(),
            faults: Vec::new(),
        }
    }

    pub fn fault(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    /// Adds a route, unless one of that name is already there (then it is reported).
    pub fn route(&mut self, route: Route) {
        if self.routes.iter().any(|r| r.name == route.name) {
            self.fault(
                Fault::new(format!(
                    "route name {:?} is already taken by another route of this service; rejected",
                    route.name
                ))
                .router(route.name.clone()),
            );
            return;
        }
        self.routes.push(route);
    }

    /// Adds a cluster unless one of that name is already there.
    pub fn cluster(&mut self, cluster: Cluster) {
        if !self.clusters.iter().any(|c| c.name == cluster.name) {
            self.clusters.push(cluster);
        }
    }

    /// The result: routes and clusters sorted by name, clusters no route uses dropped, and each
    /// problem once (a problem several instances share names no instance).
    pub fn finish(mut self) -> ServiceRoutes {
        self.routes.sort_by(|a, b| a.name.cmp(&b.name));
        let used: BTreeSet<&str> = self.routes.iter().map(|r| r.cluster.as_str()).collect();
        self.clusters.retain(|c| used.contains(c.name.as_str()));
        self.clusters.sort_by(|a, b| a.name.cmp(&b.name));
        berth_model::fill_requires(&mut self.routes, &mut self.clusters);

        // The proxies' own check, route by route: what it refuses costs that route only (a
        // rule Traefik accepts but that names a host no request can carry, say), never the
        // service or the snapshot.
        let (routes, clusters) = (std::mem::take(&mut self.routes), &self.clusters);
        let mut refused = Vec::new();
        self.routes = routes
            .into_iter()
            .filter(|route| {
                let check = berth_proto::v1::Snapshot {
                    routes: vec![route.clone()],
                    clusters: clusters
                        .iter()
                        .filter(|c| c.name == route.cluster)
                        .cloned()
                        .collect(),
                };
                match berth_model::validate(&check) {
                    Ok(()) => true,
                    Err(e) => {
                        refused.push(Fault::new(format!("route rejected: {e}")).router(route.name.clone()));
                        false
                    }
                }
            })
            .collect();
        self.faults.extend(refused);
        let used: BTreeSet<&str> = self.routes.iter().map(|r| r.cluster.as_str()).collect();
        self.clusters.retain(|c| used.contains(c.name.as_str()));

        let mut errors: Vec<RouteError> = Vec::new();
        for fault in self.faults {
            let same = errors.iter_mut().find(|e| {
                e.router == fault.router
                    && e.tag == fault.tag
                    && e.position == fault.position
                    && e.error == fault.error
            });
            match same {
                Some(existing) => {
                    if existing.instance != fault.instance {
                        existing.instance = None;
                    }
                }
                None => errors.push(RouteError {
                    service: self.service.clone(),
                    instance: fault.instance,
                    router: fault.router,
                    tag: fault.tag,
                    position: fault.position,
                    error: fault.error,
                }),
            }
        }
        ServiceRoutes {
            routes: self.routes,
            clusters: self.clusters,
            errors,
            uses: self.uses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_every_part_given() {
        let e = RouteError {
            service: "web".into(),
            instance: Some("web-1".into()),
            router: Some("api".into()),
            tag: Some("traefik.http.routers.api.rule=Host(".into()),
            position: Some(5),
            error: "unbalanced parenthesis".into(),
        };
        assert_eq!(
            e.to_string(),
            "service \"web\", instance \"web-1\", router \"api\", tag \"traefik.http.routers.api.rule=Host(\", at position 5: unbalanced parenthesis"
        );
    }

    #[test]
    fn a_problem_shared_by_instances_is_reported_once_without_an_instance() {
        let mut out = Output::new("web");
        out.fault(Fault::new("bad").tag("t").instance("a"));
        out.fault(Fault::new("bad").tag("t").instance("b"));
        out.fault(Fault::new("other").instance("a"));
        let result = out.finish();
        assert_eq!(result.errors.len(), 2);
        assert_eq!(result.errors[0].instance, None);
        assert_eq!(result.errors[1].instance.as_deref(), Some("a"));
    }

    #[test]
    fn duplicate_route_names_are_rejected_and_unused_clusters_dropped() {
        let mut out = Output::new("web");
        let route = Route {
            name: "web/a".into(),
            cluster: "web/c".into(),
            matcher: crate::traefik_rule::parse("Host(`web.example`)", crate::RuleSyntax::V3).ok(),
            ..Route::default()
        };
        out.route(route.clone());
        out.route(route);
        out.cluster(Cluster {
            name: "web/c".into(),
            ..Cluster::default()
        });
        out.cluster(Cluster {
            name: "web/unused".into(),
            ..Cluster::default()
        });
        let result = out.finish();
        assert_eq!(result.routes.len(), 1);
        assert_eq!(result.clusters.len(), 1);
        assert_eq!(result.errors.len(), 1, "{:?}", result.errors);
    }

    #[test]
    fn a_route_the_proxies_would_refuse_is_rejected_alone() {
        let mut out = Output::new("web");
        for (name, host) in [("web/good", "web.example"), ("web/bad", "a.|xample")] {
            out.route(Route {
                name: name.into(),
                cluster: "web/c".into(),
                matcher: crate::traefik_rule::parse(&format!("Host(`{host}`)"), crate::RuleSyntax::V3).ok(),
                ..Route::default()
            });
        }
        out.cluster(Cluster {
            name: "web/c".into(),
            ..Cluster::default()
        });
        let result = out.finish();
        let names: Vec<&str> = result.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["web/good"]);
        assert_eq!(result.errors.len(), 1);
        assert_eq!(result.errors[0].router.as_deref(), Some("web/bad"));
        assert!(
            result.errors[0].error.contains("a.|xample"),
            "{:?}",
            result.errors
        );
    }
}
