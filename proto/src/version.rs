//! Content-derived snapshot versions.
//!
//! A version is the hash of a snapshot's canonical encoding, so every control-plane replica (and
//! every restart) that sees the same catalog names the resulting state the same way. Canonical
//! means: routes sorted by name, clusters sorted by name, endpoints sorted by (address, port, id),
//! hosts and entrypoints sorted and de-duplicated.

use prost::Message;
use sha2::{Digest, Sha256};

use crate::v1::Snapshot;

/// Puts a snapshot in canonical order, in place. Idempotent.
pub fn canonicalize(snapshot: &mut Snapshot) {
    for route in &mut snapshot.routes {
        route.hosts.sort();
        route.hosts.dedup();
        route.entrypoints.sort();
        route.entrypoints.dedup();
    }
    snapshot.routes.sort_by(|a, b| a.name.cmp(&b.name));
    for cluster in &mut snapshot.clusters {
        cluster.endpoints.sort_by(|a, b| {
            (a.address.as_str(), a.port, a.id.as_str()).cmp(&(b.address.as_str(), b.port, b.id.as_str()))
        });
    }
    snapshot.clusters.sort_by(|a, b| a.name.cmp(&b.name));
}

/// The version of a snapshot that is already canonical (see [`canonicalize`]): the first 16 hex
/// digits of the SHA-256 of its protobuf encoding. Protobuf encoding of these messages (no maps)
/// is deterministic for a given field order, which canonical order fixes.
pub fn version_of(canonical: &Snapshot) -> String {
    let digest = Sha256::digest(canonical.encode_to_vec());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Cluster, Endpoint, Route};

    fn endpoint(address: &str, port: u32) -> Endpoint {
        Endpoint {
            address: address.into(),
            port,
            weight: 1,
            id: format!("{address}:{port}"),
        }
    }

    fn sample(reversed: bool) -> Snapshot {
        let mut routes = vec![
            Route {
                name: "a".into(),
                hosts: vec!["x.example".into(), "a.example".into()],
                cluster: "a".into(),
                ..Default::default()
            },
            Route {
                name: "b".into(),
                hosts: vec!["b.example".into()],
                cluster: "b".into(),
                ..Default::default()
            },
        ];
        let mut endpoints = vec![endpoint("127.0.0.1", 2), endpoint("127.0.0.1", 1)];
        if reversed {
            routes.reverse();
            endpoints.reverse();
            routes[1].hosts.reverse();
        }
        Snapshot {
            routes,
            clusters: vec![
                Cluster {
                    name: "a".into(),
                    endpoints,
                },
                Cluster {
                    name: "b".into(),
                    endpoints: vec![],
                },
            ],
        }
    }

    #[test]
    fn order_does_not_change_the_version() {
        let (mut a, mut b) = (sample(false), sample(true));
        canonicalize(&mut a);
        canonicalize(&mut b);
        assert_eq!(a, b);
        assert_eq!(version_of(&a), version_of(&b));
        assert_eq!(version_of(&a).len(), 16);
    }

    #[test]
    fn content_changes_the_version() {
        let mut a = sample(false);
        canonicalize(&mut a);
        let mut b = a.clone();
        b.clusters[0].endpoints[0].weight = 2;
        assert_ne!(version_of(&a), version_of(&b));
    }
}
