//! Choosing the next endpoint of a cluster: smooth weighted round robin, plain round robin, or
//! least request with two random choices.
//!
//! For: picking in O(1) with no lock. Weighted round robin's order is precomputed when a route
//! table is built (smooth, as in nginx), so picking is one atomic increment and an index into a
//! slot sequence; plain round robin is the increment alone; least request draws two distinct
//! endpoints at random (a thread-local generator) and takes the one with fewer requests in flight
//! for its weight (Traefik's `p2c`, Envoy's `LEAST_REQUEST`).
//! Not for: skipping ejected endpoints or those a retry already tried (see `table::cluster`),
//! or counting the load (see `health`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Upper bound on the length of a slot sequence. Weights whose (reduced) sum exceeds it are scaled
/// down proportionally, so a cluster with absurd weights cannot blow up memory.
const MAX_SLOTS: u64 = 4096;

/// How the next endpoint is chosen (the proto's `Balancing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    WeightedRoundRobin,
    RoundRobin,
    LeastRequest,
}

/// A cluster's balancer: its policy's precomputed state plus the shared position.
#[derive(Debug)]
pub(crate) struct Balancer {
    kind: Kind,
    /// Position in the rotation; shared with the balancer of the previous table when the endpoints
    /// did not change, so a table swap does not restart the rotation.
    next: Arc<AtomicUsize>,
}

#[derive(Debug)]
enum Kind {
    /// Endpoint indices in the order they are picked; one full cycle honours every weight exactly.
    Weighted(Box<[u32]>),
    RoundRobin(usize),
    /// The endpoints' weights (at least 1).
    LeastRequest(Box<[u32]>),
}

impl Balancer {
    /// Builds the weighted balancer for endpoints with these weights (a weight of 0 counts as 1).
    #[cfg(test)]
    pub(crate) fn new(weights: &[u32], next: Arc<AtomicUsize>) -> Self {
        Self::with_policy(Policy::WeightedRoundRobin, weights, next)
    }

    /// Builds the balancer of `policy` for endpoints with these weights.
    pub(crate) fn with_policy(policy: Policy, weights: &[u32], next: Arc<AtomicUsize>) -> Self {
        let kind = match policy {
            Policy::WeightedRoundRobin => Kind::Weighted(smooth_weighted_slots(weights).into_boxed_slice()),
            Policy::RoundRobin => Kind::RoundRobin(weights.len()),
            Policy::LeastRequest => Kind::LeastRequest(weights.iter().map(|w| (*w).max(1)).collect()),
        };
        Self { kind, next }
    }

    /// A fresh position counter, for a balancer that shares nothing with a previous table.
    pub(crate) fn fresh_counter() -> Arc<AtomicUsize> {
        Arc::new(AtomicUsize::new(0))
    }

    /// The position counter, to hand to the next table's balancer for the same endpoints.
    pub(crate) fn counter(&self) -> &Arc<AtomicUsize> {
        &self.next
    }

    /// The index of the endpoint to use next, or `None` if there are no endpoints. `load` gives
    /// an endpoint's requests in flight (read by least request only).
    #[inline]
    pub(crate) fn pick_by(&self, load: impl Fn(usize) -> u32) -> Option<usize> {
        match &self.kind {
            Kind::Weighted(slots) => {
                if slots.is_empty() {
                    return None;
                }
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                Some(slots[n % slots.len()] as usize)
            }
            Kind::RoundRobin(len) => {
                if *len == 0 {
                    return None;
                }
                Some(self.next.fetch_add(1, Ordering::Relaxed) % len)
            }
            Kind::LeastRequest(weights) => {
                let len = weights.len();
                match len {
                    0 => None,
                    1 => Some(0),
                    _ => {
                        let a = fastrand::usize(..len);
                        let b = (a + 1 + fastrand::usize(..len - 1)) % len;
                        // Fewer in flight per unit of weight wins: (load+1)/weight compared
                        // without division.
                        let cost = |i: usize, other: usize| {
                            u64::from(load(i)).saturating_add(1) * u64::from(weights[other])
                        };
                        Some(if cost(b, a) < cost(a, b) { b } else { a })
                    }
                }
            }
        }
    }

    /// [`Self::pick_by`] with no load known.
    #[cfg(test)]
    pub(crate) fn pick(&self) -> Option<usize> {
        self.pick_by(|_| 0)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Smooth weighted round robin: each round, every endpoint gains its weight, the one with the most
/// credit is picked and pays the total. Weights are first reduced by their common divisor, so equal
/// weights give plain round robin `0, 1, 2, ...`.
fn smooth_weighted_slots(weights: &[u32]) -> Vec<u32> {
    if weights.is_empty() {
        return Vec::new();
    }
    let mut w: Vec<u64> = weights.iter().map(|&w| u64::from(w.max(1))).collect();
    let divisor = w.iter().copied().fold(0, gcd);
    w.iter_mut().for_each(|x| *x /= divisor);
    let mut total: u64 = w.iter().sum();
    if total > MAX_SLOTS {
        w.iter_mut().for_each(|x| *x = (*x * MAX_SLOTS / total).max(1));
        total = w.iter().sum();
    }
    let w: Vec<i64> = w.into_iter().map(|x| x as i64).collect();
    let total = total as i64;
    let mut credit = vec![0i64; w.len()];
    let mut slots = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            credit[i] += w[i];
            if credit[i] > credit[best] {
                best = i;
            }
        }
        credit[best] -= total;
        slots.push(best as u32);
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(weights: &[u32], picks: usize) -> Vec<usize> {
        let b = Balancer::new(weights, Balancer::fresh_counter());
        let mut counts = vec![0; weights.len()];
        for _ in 0..picks {
            counts[b.pick().expect("has endpoints")] += 1;
        }
        counts
    }

    #[test]
    fn equal_weights_are_plain_round_robin() {
        assert_eq!(counts(&[1, 1, 1], 300), [100, 100, 100]);
        assert_eq!(counts(&[5, 5, 5], 300), [100, 100, 100]);
        let b = Balancer::new(&[1, 1, 1], Balancer::fresh_counter());
        let order: Vec<_> = (0..6).map(|_| b.pick().unwrap()).collect();
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn zero_weight_counts_as_one() {
        assert_eq!(counts(&[0, 1], 100), [50, 50]);
    }

    #[test]
    fn weights_are_honoured_exactly_per_cycle() {
        assert_eq!(counts(&[1, 2, 3], 600), [100, 200, 300]);
        assert_eq!(counts(&[5, 1, 1], 700), [500, 100, 100]);
    }

    #[test]
    fn smooth_order_interleaves() {
        // nginx's classic example: weights 5, 1, 1 give a, a, b, a, c, a, a.
        assert_eq!(smooth_weighted_slots(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn huge_weights_are_bounded() {
        let slots = smooth_weighted_slots(&[u32::MAX, 1, u32::MAX - 1]);
        assert!(slots.len() as u64 <= MAX_SLOTS + 3);
        assert!(slots.contains(&1), "every endpoint keeps at least one slot");
    }

    #[test]
    fn no_endpoints() {
        assert_eq!(Balancer::new(&[], Balancer::fresh_counter()).pick(), None);
    }

    #[test]
    fn plain_round_robin_ignores_weights() {
        let b = Balancer::with_policy(Policy::RoundRobin, &[5, 1, 1], Balancer::fresh_counter());
        let order: Vec<_> = (0..6).map(|_| b.pick().unwrap()).collect();
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
        let none = Balancer::with_policy(Policy::RoundRobin, &[], Balancer::fresh_counter());
        assert_eq!(none.pick(), None);
    }

    #[test]
    fn least_request_prefers_the_less_loaded() {
        let b = Balancer::with_policy(Policy::LeastRequest, &[1, 1, 1], Balancer::fresh_counter());
        // Endpoint 0 is busy: it loses every draw it is part of, so it is never chosen.
        let load = |i: usize| if i == 0 { 10 } else { 0 };
        let mut counts = [0; 3];
        for _ in 0..3000 {
            counts[b.pick_by(load).unwrap()] += 1;
        }
        assert_eq!(counts[0], 0, "{counts:?}");
        assert!(counts[1] > 1200 && counts[2] > 1200, "{counts:?}");
        // Equal load: about even.
        let mut counts = [0; 3];
        for _ in 0..3000 {
            counts[b.pick_by(|_| 0).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| c > 700), "{counts:?}");
        // Weights count: with equal load, the heavier endpoint wins its draws.
        let w = Balancer::with_policy(Policy::LeastRequest, &[1, 4], Balancer::fresh_counter());
        assert!((0..100).all(|_| w.pick_by(|_| 1) == Some(1)));
        let one = Balancer::with_policy(Policy::LeastRequest, &[3], Balancer::fresh_counter());
        assert_eq!(one.pick(), Some(0));
        let none = Balancer::with_policy(Policy::LeastRequest, &[], Balancer::fresh_counter());
        assert_eq!(none.pick(), None);
    }

    #[test]
    fn shared_counter_continues_rotation() {
        let a = Balancer::new(&[1, 1, 1], Balancer::fresh_counter());
        assert_eq!(a.pick(), Some(0));
        let b = Balancer::new(&[1, 1, 1], a.counter().clone());
        assert_eq!(b.pick(), Some(1));
    }
}
