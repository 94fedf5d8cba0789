//! Content-derived snapshot versions, computed incrementally.
//!
//! A version names the content of a snapshot, so every control-plane replica (and every restart)
//! that sees the same catalog names the resulting state the same way. It is built from one digest
//! per route and per cluster (SHA-256 of the item's canonical protobuf encoding, behind a byte
//! that says which kind of item it is), added together modulo 2^128. Addition does not care about
//! order, and it can be undone: changing one service subtracts its old items' digests and adds the
//! new ones, so a change costs the size of the change, never a re-hash of the whole catalog.
//!
//! Canonical means: entrypoints and required features sorted and de-duplicated, endpoints sorted
//! by (address, port, id). A matcher's and a middleware chain's order mean something and are kept. [`canonicalize_route`] and [`canonicalize_cluster`] put an item in that form.

use prost::Message;
use sha2::{Digest, Sha256};

use crate::v1::{Cluster, Route};

/// Puts a route in canonical order, in place. Idempotent.
pub fn canonicalize_route(route: &mut Route) {
    route.entrypoints.sort();
    route.entrypoints.dedup();
    route.requires.sort();
    route.requires.dedup();
}

/// Puts a cluster in canonical order, in place. Idempotent.
pub fn canonicalize_cluster(cluster: &mut Cluster) {
    cluster.requires.sort();
    cluster.requires.dedup();
    cluster.endpoints.sort_by(|a, b| {
        (a.address.as_str(), a.port, a.id.as_str()).cmp(&(b.address.as_str(), b.port, b.id.as_str()))
    });
}

/// The digest of one canonical route.
pub fn route_digest(route: &Route) -> ItemDigest {
    digest(b'r', route)
}

/// The digest of one canonical cluster.
pub fn cluster_digest(cluster: &Cluster) -> ItemDigest {
    digest(b'c', cluster)
}

fn digest(kind: u8, message: &impl Message) -> ItemDigest {
    let mut hasher = Sha256::new();
    hasher.update([kind]);
    hasher.update(message.encode_to_vec());
    let bytes = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&bytes[..16]);
    ItemDigest(u128::from_be_bytes(first))
}

/// The digest of one route or cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ItemDigest(u128);

/// The running sum of the digests of every item in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VersionSum(u128);

impl VersionSum {
    /// An item joined the snapshot.
    pub fn add(&mut self, item: ItemDigest) {
        self.0 = self.0.wrapping_add(item.0);
    }

    /// An item left the snapshot.
    pub fn remove(&mut self, item: ItemDigest) {
        self.0 = self.0.wrapping_sub(item.0);
    }

    /// The version string: 16 hex digits.
    pub fn version(&self) -> String {
        format!("{:016x}", (self.0 >> 64) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::Endpoint;

    fn endpoint(address: &str, port: u32) -> Endpoint {
        Endpoint {
            address: address.into(),
            port,
            weight: 1,
            id: format!("{address}:{port}"),
        }
    }

    fn route(name: &str, entrypoints: &[&str]) -> Route {
        let mut route = Route {
            name: name.into(),
            entrypoints: entrypoints.iter().map(|h| h.to_string()).collect(),
            cluster: name.into(),
            ..Default::default()
        };
        canonicalize_route(&mut route);
        route
    }

    fn cluster(name: &str, endpoints: Vec<Endpoint>) -> Cluster {
        let mut cluster = Cluster {
            name: name.into(),
            endpoints,
            ..Default::default()
        };
        canonicalize_cluster(&mut cluster);
        cluster
    }

    fn version(routes: &[Route], clusters: &[Cluster]) -> String {
        let mut sum = VersionSum::default();
        routes.iter().for_each(|r| sum.add(route_digest(r)));
        clusters.iter().for_each(|c| sum.add(cluster_digest(c)));
        sum.version()
    }

    #[test]
    fn order_does_not_change_the_version() {
        let a = [
            route("a", &["x.example", "a.example"]),
            route("b", &["b.example"]),
        ];
        let b = [
            route("b", &["b.example"]),
            route("a", &["a.example", "x.example", "a.example"]),
        ];
        let c1 = [cluster(
            "a",
            vec![endpoint("127.0.0.1", 2), endpoint("127.0.0.1", 1)],
        )];
        let c2 = [cluster(
            "a",
            vec![endpoint("127.0.0.1", 1), endpoint("127.0.0.1", 2)],
        )];
        assert_eq!(version(&a, &c1), version(&b, &c2));
        assert_eq!(version(&a, &c1).len(), 16);
    }

    #[test]
    fn content_changes_the_version_and_removal_undoes_addition() {
        let routes = [route("a", &["web"])];
        let one = [cluster("a", vec![endpoint("127.0.0.1", 1)])];
        let mut other = one.clone();
        other[0].endpoints[0].weight = 2;
        assert_ne!(version(&routes, &one), version(&routes, &other));

        let mut sum = VersionSum::default();
        sum.add(route_digest(&routes[0]));
        let before = sum.version();
        sum.add(cluster_digest(&one[0]));
        sum.remove(cluster_digest(&one[0]));
        assert_eq!(sum.version(), before);
    }

    #[test]
    fn a_route_and_a_cluster_with_the_same_bytes_differ() {
        // Both encode to an empty message.
        assert_ne!(
            route_digest(&Route::default()),
            cluster_digest(&Cluster::default())
        );
    }
}
