//! The one check of a snapshot ([`validate`]): run by the control plane before it publishes and
//! by the proxy before it applies, whose error text the proxy sends back in its NACK.
//!
//! It checks that names are given and unique and that every route's cluster exists; that every
//! matcher compiles ([`crate::CompiledMatcher::compile`]); that every middleware and cluster
//! setting is in range ([`middleware`], [`cluster`]); and the FEATURES rule of the contract:
//! every name in `requires` is one this build knows, and every feature a route or cluster uses is
//! listed there. It reports every problem it finds (the first [`MAX_REPORTED`], and how many in
//! all), each naming the route or cluster, the place inside it and what is wrong.
//!
//! Not for: deciding between routes (conflicts, priorities) or anything about tags; the
//! dialects and the control plane do that before a snapshot exists.

mod cluster;
mod htpasswd;
mod middleware;

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use berth_proto::v1::{Route, Snapshot};

use crate::features::{is_known_feature, required_features};
use crate::matcher::CompiledMatcher;
use crate::problem::Problem;

/// How many problems a [`SnapshotError`] lists; the rest are only counted.
pub const MAX_REPORTED: usize = 20;

/// Why a snapshot was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SnapshotError {
    /// The first [`MAX_REPORTED`] problems, routes first, then clusters, each in snapshot order.
    pub problems: Vec<SnapshotProblem>,
    /// How many problems were found in all.
    pub total: usize,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.total != 1 {
            write!(f, "{} problems: ", self.total)?;
        }
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        if self.total > self.problems.len() {
            write!(f, "; and {} more", self.total - self.problems.len())?;
        }
        Ok(())
    }
}

/// One problem of a snapshot: in which route or cluster, where inside it, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{item}: {}{problem}", if at.is_empty() { String::new() } else { format!("{at}: ") })]
pub struct SnapshotProblem {
    /// The route or cluster.
    pub item: Item,
    /// The place inside it, e.g. `matcher.all[1].path.regexp` or `endpoints[0].port`.
    pub at: String,
    /// What is wrong.
    pub problem: Problem,
}

/// A route or cluster of a snapshot, by name (and by position, for one without a name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The route at this index of `routes`, with its name.
    Route {
        /// Its index in `Snapshot.routes`.
        index: usize,
        /// Its name (may be empty).
        name: String,
    },
    /// The cluster at this index of `clusters`, with its name.
    Cluster {
        /// Its index in `Snapshot.clusters`.
        index: usize,
        /// Its name (may be empty).
        name: String,
    },
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, index, name) = match self {
            Item::Route { index, name } => ("route", index, name),
            Item::Cluster { index, name } => ("cluster", index, name),
        };
        if name.is_empty() {
            write!(f, "{what} #{index} (no name)")
        } else {
            write!(f, "{what} {name:?}")
        }
    }
}

/// Checks a snapshot: the one check both sides run. See the module documentation.
pub fn validate(snapshot: &Snapshot) -> Result<(), SnapshotError> {
    validate_and_compile(snapshot).map(drop)
}

/// Checks a snapshot as [`validate`] does and hands over the compiled matcher of every route, in
/// the order of `Snapshot.routes`, so that the proxy does not compile them twice.
pub fn validate_and_compile(snapshot: &Snapshot) -> Result<Vec<CompiledMatcher>, SnapshotError> {
    let mut report = Report::default();
    let clusters: HashSet<&str> = snapshot.clusters.iter().map(|c| c.name.as_str()).collect();
    let mut route_names = HashSet::new();
    let mut compiled = Vec::with_capacity(snapshot.routes.len());
    for (index, route) in snapshot.routes.iter().enumerate() {
        let mut scope = report.scope(Item::Route {
            index,
            name: route.name.clone(),
        });
        scope.name(&route.name, &mut route_names);
        if let Some(m) = check_route(&mut scope, route, &clusters) {
            compiled.push(m);
        }
    }
    let mut cluster_names = HashSet::new();
    for (index, c) in snapshot.clusters.iter().enumerate() {
        let mut scope = report.scope(Item::Cluster {
            index,
            name: c.name.clone(),
        });
        scope.name(&c.name, &mut cluster_names);
        cluster::check(&mut scope, c);
    }
    if report.total == 0 {
        Ok(compiled)
    } else {
        Err(SnapshotError {
            problems: report.problems,
            total: report.total,
        })
    }
}

/// Checks one route; its compiled matcher when that part is sound.
fn check_route(scope: &mut Scope<'_>, route: &Route, clusters: &HashSet<&str>) -> Option<CompiledMatcher> {
    if route.cluster.is_empty() {
        scope.add("cluster", Problem::Empty);
    } else if !clusters.contains(route.cluster.as_str()) {
        scope.add("cluster", Problem::UnknownCluster(route.cluster.clone()));
    }
    for (i, entrypoint) in route.entrypoints.iter().enumerate() {
        if entrypoint.is_empty() {
            scope.add(format!("entrypoints[{i}]"), Problem::Empty);
        }
    }
    for (i, m) in route.middlewares.iter().enumerate() {
        middleware::check(scope, i, m);
    }
    scope.requires(&route.requires, required_features(route));
    let Some(matcher) = &route.matcher else {
        scope.add("matcher", Problem::NotSet);
        return None;
    };
    match CompiledMatcher::compile(matcher) {
        Ok(m) => Some(m),
        Err(e) => {
            for p in e.problems {
                scope.add(format!("matcher.{}", p.at), p.problem);
            }
            None
        }
    }
}

/// Problems found so far: the first [`MAX_REPORTED`] kept, all counted.
#[derive(Default)]
struct Report {
    problems: Vec<SnapshotProblem>,
    total: usize,
}

impl Report {
    fn scope(&mut self, item: Item) -> Scope<'_> {
        Scope { report: self, item }
    }
}

/// The problems of one route or cluster.
struct Scope<'r> {
    report: &'r mut Report,
    item: Item,
}

impl Scope<'_> {
    fn add(&mut self, at: impl Into<String>, problem: Problem) {
        self.report.total += 1;
        if self.report.problems.len() < MAX_REPORTED {
            self.report.problems.push(SnapshotProblem {
                item: self.item.clone(),
                at: at.into(),
                problem,
            });
        }
    }

    /// The item's name: given, and not given to another item of its kind.
    fn name<'a>(&mut self, name: &'a str, seen: &mut HashSet<&'a str>) {
        if name.is_empty() {
            self.add("name", Problem::Empty);
        } else if !seen.insert(name) {
            self.add("name", Problem::DuplicateName);
        }
    }

    /// The FEATURES rule: `requires` lists only known names, and every feature used.
    fn requires(&mut self, requires: &[String], used: BTreeSet<&'static str>) {
        for (i, name) in requires.iter().enumerate() {
            if !is_known_feature(name) {
                self.add(format!("requires[{i}]"), Problem::UnknownFeature(name.clone()));
            }
        }
        for feature in used {
            if !requires.iter().any(|r| r == feature) {
                self.add("requires", Problem::MissingFeature(feature));
            }
        }
    }
}

/// Whether a text holds a control character (C0, DEL or C1).
fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

#[cfg(test)]
mod tests;
