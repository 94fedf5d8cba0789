//! The per-entrypoint host index: which routes to try for a request, in which order.
//!
//! For: filing each route under the hosts its matcher can take (`berth_model::host_keys`): exact
//! hosts in a hash map, wildcard suffixes in another, and routes that may take any host (a host
//! regexp, or no host condition) in one list; and finding the route for a request by walking
//! the candidates of its host — the exact list, the lists of each suffix of the host (longest
//! first), and the any-host list — merged in the global route order, so the first candidate whose
//! matcher takes the request is exactly the first route Traefik's ordering would pick. The cost
//! grows with the routes filed under the request's host and the any-host routes, not with the
//! table; the walk allocates nothing unless a host matches more than a few wildcard suffixes.
//! Not for: ordering routes (the rank comes from `table`) or evaluating matchers (the model).

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;

use berth_model::{HostKeys, RequestView};

use super::Route;

/// A route with its position in the global order (lower tries first).
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub rank: u32,
    pub route: Arc<Route>,
}

/// Lists by host name. foldhash rather than SipHash: a look-up hashes the request's host on every
/// request, and the keys come from the control plane's snapshot (a client's host is only looked
/// up, never inserted, so it cannot fill a bucket).
type ByHost<V> = HashMap<Box<str>, V, RandomState>;

/// The routes of one entrypoint, by host.
#[derive(Debug, Default)]
pub(crate) struct HostIndex {
    exact: ByHost<Box<[Candidate]>>,
    /// By suffix: `example.com` for `*.example.com`.
    wildcard: ByHost<Box<[Candidate]>>,
    /// Routes that may take a request whatever its host.
    any_host: Box<[Candidate]>,
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Found<'a> {
    Route(&'a Arc<Route>),
    /// No route could take this host at all.
    NoRouteForHost,
    /// Some could, but none of their matchers took the request.
    NoMatch,
}

/// Lists walked at once without allocating; more spill into a vector.
const INLINE_LISTS: usize = 8;

impl HostIndex {
    /// Builds the index from routes already sorted in the global order, each with its keys.
    pub(crate) fn build<'a>(routes: impl Iterator<Item = (u32, &'a Arc<Route>, &'a HostKeys)>) -> Self {
        let mut exact: ByHost<Vec<Candidate>> = ByHost::default();
        let mut wildcard: ByHost<Vec<Candidate>> = ByHost::default();
        let mut any_host = Vec::new();
        for (rank, route, keys) in routes {
            let candidate = Candidate {
                rank,
                route: route.clone(),
            };
            match keys {
                HostKeys::Any | HostKeys::Hosts { regexp: true, .. } => any_host.push(candidate),
                HostKeys::Hosts {
                    exact: hosts,
                    wildcard: suffixes,
                    regexp: false,
                } => {
                    for host in hosts {
                        exact
                            .entry(host.to_ascii_lowercase().into())
                            .or_default()
                            .push(candidate.clone());
                    }
                    for suffix in suffixes {
                        wildcard
                            .entry(suffix.to_ascii_lowercase().into())
                            .or_default()
                            .push(candidate.clone());
                    }
                }
            }
        }
        // Routes arrive in rank order, so every list is sorted already.
        let freeze =
            |map: ByHost<Vec<Candidate>>| map.into_iter().map(|(k, v)| (k, v.into_boxed_slice())).collect();
        Self {
            exact: freeze(exact),
            wildcard: freeze(wildcard),
            any_host: any_host.into_boxed_slice(),
        }
    }

    /// The first route, in the global order, whose matcher takes `request`.
    pub(crate) fn lookup(&self, request: &RequestView<'_>) -> Found<'_> {
        let mut lists = Lists::default();
        if let Some(list) = self.exact.get(request.host) {
            lists.push(list);
        }
        if !self.wildcard.is_empty() {
            // Every proper suffix after a dot, longest first: a.b.example.com → b.example.com,
            // example.com, com.
            let host = request.host;
            for (i, _) in host.match_indices('.') {
                if let Some(list) = self.wildcard.get(&host[i + 1..]) {
                    lists.push(list);
                }
            }
        }
        let candidates = lists.len() > 0;
        lists.push(&self.any_host);
        let mut last_rank = None;
        while let Some(candidate) = lists.next() {
            // A route filed under two suffixes of this host comes twice, adjacently.
            if last_rank == Some(candidate.rank) {
                continue;
            }
            last_rank = Some(candidate.rank);
            if candidate.route.matcher.matches(request) {
                return Found::Route(&candidate.route);
            }
        }
        if candidates || !self.any_host.is_empty() {
            Found::NoMatch
        } else {
            Found::NoRouteForHost
        }
    }
}

#[cfg(test)]
impl HostIndex {
    /// The names of the routes a lookup for `host` would try, in order.
    pub(crate) fn candidates_for(&self, host: &str) -> Vec<String> {
        let mut lists = Lists::default();
        if let Some(list) = self.exact.get(host) {
            lists.push(list);
        }
        for (i, _) in host.match_indices('.') {
            if let Some(list) = self.wildcard.get(&host[i + 1..]) {
                lists.push(list);
            }
        }
        lists.push(&self.any_host);
        let mut names: Vec<String> = Vec::new();
        let mut last = None;
        while let Some(c) = lists.next() {
            if last != Some(c.rank) {
                names.push(c.route.name.clone());
            }
            last = Some(c.rank);
        }
        names
    }
}

/// Sorted candidate lists, merged by rank.
#[derive(Default)]
struct Lists<'a> {
    inline: [&'a [Candidate]; INLINE_LISTS],
    count: usize,
    spill: Vec<&'a [Candidate]>,
}

impl<'a> Lists<'a> {
    fn len(&self) -> usize {
        self.count + self.spill.len()
    }

    fn push(&mut self, list: &'a [Candidate]) {
        if list.is_empty() {
            return;
        }
        if self.count < INLINE_LISTS {
            self.inline[self.count] = list;
            self.count += 1;
        } else {
            self.spill.push(list);
        }
    }

    /// The candidate with the lowest rank among the lists' heads, removed from its list.
    fn next(&mut self) -> Option<&'a Candidate> {
        let mut best: Option<(u32, bool, usize)> = None;
        for (i, list) in self.inline[..self.count].iter().enumerate() {
            if let Some(head) = list.first() {
                if best.is_none_or(|(rank, _, _)| head.rank < rank) {
                    best = Some((head.rank, false, i));
                }
            }
        }
        for (i, list) in self.spill.iter().enumerate() {
            if let Some(head) = list.first() {
                if best.is_none_or(|(rank, _, _)| head.rank < rank) {
                    best = Some((head.rank, true, i));
                }
            }
        }
        let (_, spilled, i) = best?;
        let list = if spilled {
            &mut self.spill[i]
        } else {
            &mut self.inline[i]
        };
        let (head, rest) = list.split_first()?;
        *list = rest;
        Some(head)
    }
}
