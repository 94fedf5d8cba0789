//! Compiles one Consul service's instances and tags into routes and clusters of Berth's route
//! model (`berth_proto::v1`), reading the tag dialects operators already write for Traefik and
//! Fabio, so their services move behind Berth unchanged:
//!
//! - Traefik v2/v3 Consul Catalog (`<prefix>.http.routers.*`, `.services.*`, `.middlewares.*`), as
//!   Traefik 3.7 reads it: `traefik_v3`;
//! - Traefik v1 (`<prefix>.frontend.*`, `<prefix>.backend.*`), the dialect of the 2019 article:
//!   `traefik_v1`;
//! - Fabio (`urlprefix-host/path opts`): `fabio`;
//!
//! and Berth's own `berth.*` tags (balancing, timeouts, retries, passive health), applied to the
//! clusters of every dialect: `berth_tags`.
//!
//! `rules/DIALECTS.md` is the reference: every tag, what it does, what is refused and why.
//!
//! Every tag under the Traefik prefix is either understood or reported in
//! [`ServiceRoutes::errors`]. A tag that would restrict access (authentication, allow lists,
//! redirects to HTTPS, TLS) and that Berth does not implement rejects its route: a route is never
//! served without a part of it. A malformed tag rejects only the router it belongs to; every
//! other route of the service keeps working.
//!
//! Layout: `dialect` decides which Traefik dialect a service is read in and what is shared
//! between them; `labels` turns tags into a key tree; `values` reads values as Go does;
//! `construct` builds model messages; `error` collects the output; [`traefik_rule`] is the
//! Traefik v2/v3 rule grammar.
//!
//! This crate is pure: it knows nothing of Consul's API, of snapshots or of proxies. Conflicts
//! between services (two claiming one rule) are the control plane's business.

mod berth_tags;
mod construct;
mod dialect;
mod error;
mod fabio;
mod labels;
pub mod traefik_rule;
mod traefik_v1;
mod traefik_v3;
mod values;

use std::collections::{BTreeMap, BTreeSet};

use berth_proto::v1::{Cluster, Middleware, Route};

pub use error::RouteError;
pub use traefik_rule::RuleSyntax;

/// How tags are read; mirrors the options of Traefik's and Fabio's Consul Catalog providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Traefik tag prefix, `traefik` by default.
    pub prefix: String,
    /// Whether an instance without an `enable` tag is exposed (Traefik: `exposedByDefault`).
    pub exposed_by_default: bool,
    /// Domain of Traefik v1's default rule `Host:{service}.{domain}`.
    pub domain: Option<String>,
    /// Traefik v2/v3 default rule template (Traefik's `defaultRule`).
    pub default_rule: String,
    /// Syntax of rules written on routers without `ruleSyntax` (Traefik's
    /// `core.defaultRuleSyntax`).
    pub default_rule_syntax: RuleSyntax,
    /// Fabio's tag prefix (Fabio's `registry.consul.tagprefix`), `urlprefix-` by default.
    pub fabio_prefix: String,
}

/// Traefik's default `defaultRule`.
pub const DEFAULT_RULE: &str = "Host(`{{ normalize .Name }}`)";

impl Default for Settings {
    fn default() -> Self {
        Settings {
            prefix: "traefik".into(),
            exposed_by_default: false,
            domain: None,
            default_rule: DEFAULT_RULE.into(),
            default_rule_syntax: RuleSyntax::V3,
            fabio_prefix: "urlprefix-".into(),
        }
    }
}

/// One registration of a Consul service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Instance {
    /// The Consul service ID.
    pub id: String,
    /// Where it listens (the service address, or the node's when the service has none).
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
    /// Service meta; no dialect reads it yet.
    pub meta: BTreeMap<String, String>,
    /// Whether its health lets it receive traffic. Instances that may not still define routes
    /// (a route whose instances are all unhealthy answers 503), they only add no endpoint.
    pub routable: bool,
}

/// What one service compiles to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceRoutes {
    /// Sorted by name: `<service>` (and `<service>#2`...) for Traefik v1, `<service>/<router>`
    /// for Traefik v2/v3, `<service>/fabio/<n>` for Fabio.
    pub routes: Vec<Route>,
    /// The clusters the routes use, sorted by name; several routes may share one.
    pub clusters: Vec<Cluster>,
    /// Every problem found: routers rejected and tags ignored.
    pub errors: Vec<RouteError>,
    /// Names of middlewares defined by other services that these routes use.
    pub uses: BTreeSet<String>,
}

/// Resolves a middleware defined on another service's tags, by name (without `@consulcatalog`):
/// `None` when no service defines it, `Err` when it cannot be used (the reason).
pub type SharedMiddlewares<'a> = dyn Fn(&str) -> Option<Result<Vec<Middleware>, String>> + 'a;

/// Middlewares that a service's tags define (Traefik v2/v3
/// `<prefix>.http.middlewares.<name>.<kind>.<option>=...`), by name (without `@consulcatalog`),
/// for services that refer to them as `name@consulcatalog`. A chain is resolved against the
/// middlewares of the same service only. Only enabled instances define middlewares, as in
/// Traefik; a middleware its instances define differently is an error.
pub fn middlewares_defined(
    service: &str,
    instances: &[Instance],
    settings: &Settings,
) -> BTreeMap<String, Result<Vec<Middleware>, RouteError>> {
    let mut scratch = error::Output::new(service);
    let tagged = dialect::tag(instances, settings, &mut scratch);
    if dialect::choose(&tagged, settings) != dialect::Dialect::V3 {
        return BTreeMap::new();
    }
    traefik_v3::middlewares_defined(service, &tagged, settings)
}

/// Compiles one service: its Traefik tags in one dialect (see `rules/DIALECTS.md`) and its Fabio
/// tags.
/// `shared` resolves middlewares defined on other services' tags.
pub fn compile_service(
    service: &str,
    instances: &[Instance],
    settings: &Settings,
    shared: &SharedMiddlewares<'_>,
) -> ServiceRoutes {
    let mut out = error::Output::new(service);
    let tagged = dialect::tag(instances, settings, &mut out);
    if tagged.iter().any(|t| t.enabled) {
        match dialect::choose(&tagged, settings) {
            dialect::Dialect::V3 => traefik_v3::compile(service, &tagged, settings, shared, &mut out),
            dialect::Dialect::V1 => traefik_v1::compile(service, &tagged, settings, &mut out),
        }
    }
    fabio::compile(service, instances, settings, &mut out);
    berth_tags::apply(instances, &settings.prefix, &mut out);
    out.finish()
}

#[cfg(test)]
mod tests;
