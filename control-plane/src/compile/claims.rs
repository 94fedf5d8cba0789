//! Settling claims: which of several routes that take exactly the same requests is served.
//!
//! Two routes with the same matcher and the same priority on a shared entrypoint cannot both be
//! reached: the proxy would always pick one. The control plane decides which, so that the choice
//! never depends on the order the proxy happened to receive routes in: the older claim wins
//! (the route whose `order`, the Consul index of its service's first registration, is lower; the
//! name settles exact ties), and the others are reported and left out of the snapshot. A service
//! registered later with a copy of a live rule therefore never takes that rule over.
//!
//! Pure bookkeeping: routes join and leave by name, and [`Claims::settle`] recomputes the
//! decisions of the claims that changed only.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prost::Message;

use berth_proto::v1::Route;

/// What makes two routes take the same requests: the encoded matcher, the priority, and whether
/// the route is served over TLS only (a TLS route and a plain one with the same matcher do not
/// take the same requests: only the plain one takes plain HTTP; on a TLS entrypoint the proxy
/// tries the TLS route first).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ClaimKey {
    matcher: Vec<u8>,
    priority: i64,
    tls: bool,
}

impl ClaimKey {
    pub(crate) fn of(route: &Route) -> ClaimKey {
        ClaimKey {
            matcher: route
                .matcher
                .as_ref()
                .map(Message::encode_to_vec)
                .unwrap_or_default(),
            priority: route.priority,
            tls: route.tls,
        }
    }
}

/// One route as far as claims go.
#[derive(Debug, Clone)]
struct Claimant {
    entrypoints: Vec<String>,
    service: String,
}

/// Every route's claim, and which routes lost theirs.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    by_key: HashMap<ClaimKey, BTreeMap<(u64, String), Claimant>>,
    keys: HashMap<String, (ClaimKey, u64)>,
}

/// A route that lost its claim: to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lost {
    pub route: String,
    pub winner: String,
    pub winner_service: String,
}

impl Claims {
    /// Adds a route's claim; returns its key, to settle.
    pub(crate) fn add(&mut self, route: &Route) -> ClaimKey {
        let key = ClaimKey::of(route);
        self.by_key.entry(key.clone()).or_default().insert(
            (route.order, route.name.clone()),
            Claimant {
                entrypoints: route.entrypoints.clone(),
                service: route.service.clone(),
            },
        );
        self.keys.insert(route.name.clone(), (key.clone(), route.order));
        key
    }

    /// Removes a route's claim; returns its key, to settle.
    pub(crate) fn remove(&mut self, name: &str) -> Option<ClaimKey> {
        let (key, order) = self.keys.remove(name)?;
        if let Some(group) = self.by_key.get_mut(&key) {
            group.remove(&(order, name.to_string()));
            if group.is_empty() {
                self.by_key.remove(&key);
            }
        }
        Some(key)
    }

    /// The decisions for every route of the given claims: `None` when served, else who holds
    /// the claim. Routes are taken oldest first; a route is served unless an earlier served one
    /// shares an entrypoint with it (no entrypoints: every entrypoint).
    pub(crate) fn settle(&self, keys: &BTreeSet<&ClaimKey>) -> Vec<(String, Option<Lost>)> {
        let mut decisions = Vec::new();
        for key in keys {
            let Some(group) = self.by_key.get(*key) else {
                continue;
            };
            let mut served: Vec<(&str, &Claimant)> = Vec::new();
            for ((_, name), claimant) in group {
                let winner = served
                    .iter()
                    .find(|(_, other)| overlap(&other.entrypoints, &claimant.entrypoints));
                match winner {
                    Some((winner, other)) => decisions.push((
                        name.clone(),
                        Some(Lost {
                            route: name.clone(),
                            winner: winner.to_string(),
                            winner_service: other.service.clone(),
                        }),
                    )),
                    None => {
                        served.push((name.as_str(), claimant));
                        decisions.push((name.clone(), None));
                    }
                }
            }
        }
        decisions
    }
}

fn overlap(a: &[String], b: &[String]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|e| b.contains(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{matcher, HostMatcher, Matcher};

    fn route(name: &str, host: &str, order: u64, entrypoints: &[&str]) -> Route {
        Route {
            name: name.into(),
            service: name.into(),
            order,
            entrypoints: entrypoints.iter().map(|e| e.to_string()).collect(),
            matcher: Some(Matcher {
                kind: Some(matcher::Kind::Host(HostMatcher {
                    kind: Some(berth_proto::v1::host_matcher::Kind::Exact(host.into())),
                })),
            }),
            ..Default::default()
        }
    }

    fn settle(claims: &Claims, keys: &[ClaimKey]) -> Vec<(String, Option<String>)> {
        let keys: BTreeSet<&ClaimKey> = keys.iter().collect();
        claims
            .settle(&keys)
            .into_iter()
            .map(|(name, lost)| (name, lost.map(|l| l.winner)))
            .collect()
    }

    #[test]
    fn the_older_claim_wins_whatever_the_names() {
        let mut claims = Claims::default();
        let key = claims.add(&route("zeta", "same.example", 10, &[]));
        claims.add(&route("alpha", "same.example", 20, &[]));
        claims.add(&route("other", "other.example", 1, &[]));
        assert_eq!(
            settle(&claims, std::slice::from_ref(&key)),
            vec![("zeta".into(), None), ("alpha".into(), Some("zeta".into()))]
        );
        claims.remove("zeta");
        assert_eq!(settle(&claims, &[key]), vec![("alpha".into(), None)]);
    }

    #[test]
    fn disjoint_entrypoints_do_not_clash() {
        let mut claims = Claims::default();
        let key = claims.add(&route("a", "same.example", 1, &["web"]));
        claims.add(&route("b", "same.example", 2, &["websecure"]));
        claims.add(&route("c", "same.example", 3, &[]));
        assert_eq!(
            settle(&claims, &[key]),
            vec![
                ("a".into(), None),
                ("b".into(), None),
                ("c".into(), Some("a".into()))
            ]
        );
    }

    #[test]
    fn a_tls_route_and_a_plain_one_do_not_clash() {
        // Traefik's pair: a plain router (a redirect to https) and a TLS router, same rule.
        let mut claims = Claims::default();
        let plain = claims.add(&route("app-http", "same.example", 1, &[]));
        let mut secure = route("app", "same.example", 1, &[]);
        secure.tls = true;
        let tls = claims.add(&secure);
        assert_ne!(plain, tls);
        assert_eq!(
            settle(&claims, &[plain, tls]),
            vec![("app-http".into(), None), ("app".into(), None)]
        );
    }
}
