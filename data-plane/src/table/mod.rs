//! The route table: an immutable, validated index built from one snapshot.
//!
//! For: turning a [`Snapshot`] into what the request path reads, once per snapshot — checked by
//! `berth_model::validate` (whose text, naming each route or cluster and the place in it, is the
//! NACK; an unknown feature in `requires` is one of its findings, so a route is never served
//! without a part it needs), matchers compiled, middlewares compiled, clusters built, routes put
//! in Traefik's order (priority descending, then `order` ascending, then name) and filed per
//! entrypoint in a host index (see `index`) — and answering "which route serves this request on
//! this entrypoint" without locks.
//! Not for: swapping tables (see `state`) or anything per request beyond the lookup.

mod cluster;
mod index;
mod render;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use berth_model::{CompiledMatcher, HostKeys, RequestView};
use berth_proto::v1::Snapshot;
use thiserror::Error;

pub(crate) use cluster::{Cluster, Endpoint, HostHeader, Scheme, Timeouts, Tried};
pub(crate) use index::Found;
use index::HostIndex;

use crate::metrics::{self, RouteStats};
use crate::proxy::middleware::{Chain, CompileError, Middleware};

/// One applied snapshot, indexed for lookup. Never mutated after `RouteTable::build`.
#[derive(Debug)]
pub(crate) struct RouteTable {
    version: String,
    /// Every route of the snapshot, in the order they are tried.
    routes: Vec<Arc<Route>>,
    /// Clusters by name, so the next build can keep round-robin positions.
    clusters: HashMap<String, Arc<Cluster>>,
    /// Indexed like the proxy's entrypoints.
    by_entrypoint: Box<[HostIndex]>,
    /// When this table was built (applied), for `berth_proxy_snapshot_age_seconds`.
    built_at: Instant,
    /// Some route's matcher reads a header: the request's map is then filled before matching (see
    /// `proxy::accept::fill_headers`).
    reads_headers: bool,
}

/// A validated, compiled route.
#[derive(Debug)]
pub(crate) struct Route {
    pub name: String,
    pub service: String,
    pub origin: String,
    pub priority: i64,
    pub order: u64,
    /// As in the snapshot: empty means every entrypoint.
    pub entrypoints: Vec<String>,
    /// Served only on TLS entrypoints (Traefik's TLS router).
    pub tls: bool,
    /// The matcher in rule syntax, for operators.
    pub rule: String,
    /// The hosts the route is filed under in the host index (`*.suffix` for a wildcard); empty
    /// when it is tried for every host.
    pub hosts: Vec<String>,
    pub matcher: CompiledMatcher,
    pub middlewares: Chain,
    pub cluster: Arc<Cluster>,
    /// The route's request counters, kept across tables while name and service stay.
    pub stats: Arc<RouteStats>,
}

/// One reason a snapshot cannot be applied, beyond what `berth_model::validate` reports.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum BuildError {
    #[error("route {route:?}: {source}")]
    Middleware { route: String, source: CompileError },
    #[error("cluster {cluster:?}, endpoints[{index}]: {reason}")]
    Endpoint {
        cluster: String,
        index: usize,
        reason: String,
    },
    #[error("cluster {cluster:?}: {reason}")]
    Cluster { cluster: String, reason: String },
    #[error("route {route:?} has no matcher")]
    NoMatcher { route: String },
}

/// Why a snapshot was rejected: the model's validation, or what building found. The text is sent
/// to the control plane in the NACK.
#[derive(Debug)]
pub(crate) enum SnapshotRejected {
    Invalid(berth_model::SnapshotError),
    Unbuildable(Vec<BuildError>),
}

impl fmt::Display for SnapshotRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(e) => write!(f, "{e}"),
            Self::Unbuildable(errors) => {
                if errors.len() > 1 {
                    write!(f, "{} problems: ", errors.len())?;
                }
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for SnapshotRejected {}

/// The hosts a route is filed under, for operators.
fn indexed_hosts(keys: &HostKeys) -> Vec<String> {
    match keys {
        HostKeys::Hosts {
            exact,
            wildcard,
            regexp: false,
        } => exact
            .iter()
            .cloned()
            .chain(wildcard.iter().map(|w| format!("*.{w}")))
            .collect(),
        _ => Vec::new(),
    }
}

impl RouteTable {
    /// [`RouteTable::build_on`] for a proxy whose entrypoints are all plain HTTP.
    #[cfg(test)]
    pub(crate) fn build<S: AsRef<str>>(
        version: &str,
        snapshot: &Snapshot,
        entrypoints: &[S],
        previous: Option<&RouteTable>,
    ) -> Result<Self, SnapshotRejected> {
        Self::build_on(version, snapshot, entrypoints, &[] as &[&str], previous)
    }

    /// Validates `snapshot` and indexes it for the proxy's `entrypoints` (in the order the listeners
    /// use), of which those named in `tls_entrypoints` terminate TLS. Routes limited to entrypoints
    /// this proxy does not have are kept for the admin API but served nowhere; a TLS route
    /// (`Route.tls`) is filed only under TLS entrypoints, other routes under TLS and plain ones
    /// alike (as Traefik's entrypoint-level TLS makes every router on the entrypoint a TLS
    /// router). `previous`, if any, lends round-robin positions to unchanged clusters and counters
    /// to unchanged rate and in-flight limits.
    pub(crate) fn build_on<S: AsRef<str>, T: AsRef<str>>(
        version: &str,
        snapshot: &Snapshot,
        entrypoints: &[S],
        tls_entrypoints: &[T],
        previous: Option<&RouteTable>,
    ) -> Result<Self, SnapshotRejected> {
        let matchers = berth_model::validate_and_compile(snapshot).map_err(SnapshotRejected::Invalid)?;
        let mut errors = Vec::new();

        let mut clusters: HashMap<String, Arc<Cluster>> = HashMap::with_capacity(snapshot.clusters.len());
        for c in &snapshot.clusters {
            let old = previous.and_then(|p| p.clusters.get(&c.name)).map(Arc::as_ref);
            match Cluster::build(c, old) {
                Ok(cluster) => {
                    clusters.insert(c.name.clone(), Arc::new(cluster));
                }
                Err(mut e) => errors.append(&mut e),
            }
        }

        let old_routes: HashMap<&str, &Route> = previous
            .map(|p| p.routes.iter().map(|r| (r.name.as_str(), r.as_ref())).collect())
            .unwrap_or_default();
        let mut routes: Vec<(Arc<Route>, HostKeys)> = Vec::with_capacity(snapshot.routes.len());
        for (r, matcher) in snapshot.routes.iter().zip(matchers) {
            let Some(proto_matcher) = &r.matcher else {
                errors.push(BuildError::NoMatcher {
                    route: r.name.clone(),
                });
                continue;
            };
            let old = old_routes.get(r.name.as_str());
            let mut middlewares = Vec::with_capacity(r.middlewares.len());
            for (i, m) in r.middlewares.iter().enumerate() {
                let previous = old.and_then(|o| o.middlewares.get(i));
                match Middleware::compile(m, previous) {
                    Ok(m) => middlewares.push(m),
                    Err(source) => errors.push(BuildError::Middleware {
                        route: r.name.clone(),
                        source,
                    }),
                }
            }
            // Validation guarantees the cluster exists; a cluster that failed to build is
            // reported above.
            let Some(cluster) = clusters.get(&r.cluster) else {
                continue;
            };
            let keys = berth_model::host_keys(proto_matcher);
            routes.push((
                Arc::new(Route {
                    name: r.name.clone(),
                    service: r.service.clone(),
                    origin: r.origin.clone(),
                    priority: r.priority,
                    order: r.order,
                    entrypoints: r.entrypoints.clone(),
                    tls: r.tls,
                    rule: render::render(proto_matcher),
                    hosts: indexed_hosts(&keys),
                    matcher,
                    middlewares: Chain::from(middlewares),
                    cluster: cluster.clone(),
                    stats: metrics::global().route(&r.name, &r.service),
                }),
                keys,
            ));
        }
        if !errors.is_empty() {
            return Err(SnapshotRejected::Unbuildable(errors));
        }

        // Traefik's order: higher priority first; then TLS routes before plain ones (they meet
        // only on TLS entrypoints, where a router marked `tls` wins over one that is TLS only by
        // the entrypoint, so a plain router's redirect to https never shadows it); then the
        // control plane's order (older claims first); then the name, so the result never depends
        // on the snapshot's order.
        routes.sort_by(|(a, _), (b, _)| {
            b.priority
                .cmp(&a.priority)
                .then(b.tls.cmp(&a.tls))
                .then(a.order.cmp(&b.order))
                .then_with(|| a.name.cmp(&b.name))
        });

        let by_entrypoint = entrypoints
            .iter()
            .map(|ep| {
                let ep = ep.as_ref();
                let tls = tls_entrypoints.iter().any(|t| t.as_ref() == ep);
                HostIndex::build(
                    routes
                        .iter()
                        .enumerate()
                        .filter(|(_, (r, _))| {
                            (r.entrypoints.is_empty() || r.entrypoints.iter().any(|e| e == ep))
                                && (tls || !r.tls)
                        })
                        .map(|(rank, (route, keys))| (u32::try_from(rank).unwrap_or(u32::MAX), route, keys)),
                )
            })
            .collect();

        metrics::global().keep_clusters(|name| clusters.contains_key(name));
        let reads_headers = routes.iter().any(|(route, _)| route.matcher.reads_headers());
        Ok(Self {
            reads_headers,
            version: version.to_owned(),
            routes: routes.into_iter().map(|(r, _)| r).collect(),
            clusters,
            by_entrypoint,
            built_at: Instant::now(),
        })
    }

    pub(crate) fn version(&self) -> &str {
        &self.version
    }

    /// When this table was built.
    pub(crate) fn built_at(&self) -> Instant {
        self.built_at
    }

    /// Whether some route's matcher reads a header (the request's map must then be filled before
    /// matching: see `proxy::accept::fill_headers`).
    pub(crate) fn reads_headers(&self) -> bool {
        self.reads_headers
    }

    /// Every route of the snapshot, in the order they are tried.
    pub(crate) fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// Every cluster, by name.
    pub(crate) fn clusters(&self) -> &HashMap<String, Arc<Cluster>> {
        &self.clusters
    }

    /// The route serving `request` on the entrypoint with index `entrypoint`.
    #[inline]
    pub(crate) fn lookup(&self, entrypoint: usize, request: &RequestView<'_>) -> Found<'_> {
        match self.by_entrypoint.get(entrypoint) {
            Some(index) => index.lookup(request),
            None => Found::NoRouteForHost,
        }
    }
}
