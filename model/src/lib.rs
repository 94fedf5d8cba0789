//! Berth's route model, shared by the control plane and the proxy: the one place that says what a
//! snapshot may hold and what a route's matcher means.
//!
//! - [`validate`]: the one check of a snapshot, before the control plane publishes it and before
//!   a proxy applies it (its error text is the NACK's).
//! - [`features`](KNOWN_FEATURES): the FEATURES rule of the contract; [`required_features`] and
//!   [`cluster_required_features`] say what a route or cluster must list in `requires`.
//! - [`host`](normalize_host): the one host-name rule ([`normalize_host`] for configuration,
//!   [`request_host`] for requests, [`parse_address`] for endpoints).
//! - [`CompiledMatcher`]: a route's matcher compiled once per snapshot and evaluated per request
//!   against a [`RequestView`], with Traefik v3's semantics; [`routing_path`] gives the path it
//!   compares.
//! - [`host_keys`]: under which hosts the proxy's route table may file a route.
//! - [`compile_regex`]: the one regexp dialect, and [`IpRanges`]: the one address-range rule,
//!   for the proxy's middlewares too.
//! - [`circuit_breaker`]: the circuit breaker's expression language, parsed the same way on both
//!   sides.
//!
//! Not for: parsing tags (the dialects), choosing among routes or running middlewares (the
//! proxy), or the wire protocol (`berth-proto`).

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod circuit_breaker;
mod features;
mod host;
mod ip;
mod keys;
mod matcher;
mod pattern;
mod problem;
mod request;
#[cfg(test)]
mod testing;
mod validate;

pub use features::{
    cluster_required_features, fill_requires, is_known_feature, required_features, KNOWN_FEATURES,
};
pub use host::{normalize_host, parse_address, request_host, Address, HostError, HostProblem};
pub use ip::{IpRangeError, IpRanges};
pub use keys::{host_keys, HostKeys};
pub use matcher::{CompiledMatcher, MatcherError, MatcherProblem};
pub use pattern::{compile_regex, RegexError};
pub use problem::Problem;
pub use request::{routing_path, PathError, RequestView};
pub use validate::{validate, validate_and_compile, Item, SnapshotError, SnapshotProblem, MAX_REPORTED};
