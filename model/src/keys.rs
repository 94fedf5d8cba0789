//! Host index keys: under which hosts the proxy's route table may file a route so that looking up
//! a request's host finds every route that could take it ([`host_keys`]).
//!
//! The answer is sound, never complete: a route filed under hosts is one that takes no request
//! whose host is outside them. When that cannot be shown simply, the answer is [`HostKeys::Any`]
//! and the proxy tries the route for every host. The matcher itself still decides; the keys only
//! narrow which routes are tried.
//!
//! Not for: ordering routes or evaluating matchers.

use berth_proto::v1::{host_matcher, matcher, Matcher};

/// Where a route belongs in a host index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeys {
    /// Every request the route takes has a host equal to one of `exact`, or ending with
    /// `.<suffix>` for one of `wildcard`, or (when `regexp` is true) matching a host regexp of the
    /// route. The proxy files it under each exact host and each suffix, and, when `regexp` is
    /// true, in the bucket of routes tried for every host. All empty and `regexp` false: the
    /// route takes no request at all (an empty `any`).
    Hosts {
        /// Exact hosts, canonical, sorted, without duplicates.
        exact: Vec<String>,
        /// Wildcard suffixes (without the leading "*."), sorted, without duplicates.
        wildcard: Vec<String>,
        /// A host regexp may admit hosts not listed above.
        regexp: bool,
    },
    /// The route may take a request whatever its host.
    Any,
}

/// The host index keys of a matcher tree:
/// - a host matcher gives its host, suffix or regexp;
/// - `all` gives the keys of one of its members that has some (every member must hold, so any
///   one of them bounds the hosts; the narrowest is taken: fewest keys, no regexp if possible);
/// - `any` gives the union of its members' keys, or `Any` if one of them has none;
/// - `not(not(m))` gives the keys of `m`; any other `not`, and every other kind, gives `Any`.
pub fn host_keys(matcher: &Matcher) -> HostKeys {
    match bound(matcher) {
        Some(mut b) => {
            b.exact.sort();
            b.exact.dedup();
            b.wildcard.sort();
            b.wildcard.dedup();
            HostKeys::Hosts {
                exact: b.exact,
                wildcard: b.wildcard,
                regexp: b.regexp,
            }
        }
        None => HostKeys::Any,
    }
}

/// Hosts that bound a matcher; `None` when nothing is known.
#[derive(Default)]
struct Bound {
    exact: Vec<String>,
    wildcard: Vec<String>,
    regexp: bool,
}

impl Bound {
    /// Narrower is better: a regexp forces a scan, then fewer keys mean fewer table entries.
    fn cost(&self) -> (bool, usize) {
        (self.regexp, self.exact.len() + self.wildcard.len())
    }
}

fn bound(m: &Matcher) -> Option<Bound> {
    match m.kind.as_ref()? {
        matcher::Kind::Host(h) => match h.kind.as_ref()? {
            host_matcher::Kind::Exact(host) => Some(Bound {
                exact: vec![host.clone()],
                ..Bound::default()
            }),
            host_matcher::Kind::Wildcard(suffix) => Some(Bound {
                wildcard: vec![suffix.clone()],
                ..Bound::default()
            }),
            host_matcher::Kind::Regexp(_) => Some(Bound {
                regexp: true,
                ..Bound::default()
            }),
        },
        matcher::Kind::All(list) => list.matchers.iter().filter_map(bound).min_by_key(Bound::cost),
        matcher::Kind::Any(list) => {
            let mut union = Bound::default();
            for member in &list.matchers {
                let b = bound(member)?;
                union.exact.extend(b.exact);
                union.wildcard.extend(b.wildcard);
                union.regexp |= b.regexp;
            }
            Some(union)
        }
        matcher::Kind::Not(inner) => match inner.kind.as_ref()? {
            matcher::Kind::Not(twice) => bound(twice),
            _ => None,
        },
        matcher::Kind::Path(_)
        | matcher::Kind::Method(_)
        | matcher::Kind::Header(_)
        | matcher::Kind::Query(_)
        | matcher::Kind::ClientIp(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    fn hosts(exact: &[&str], wildcard: &[&str], regexp: bool) -> HostKeys {
        HostKeys::Hosts {
            exact: exact.iter().map(|s| s.to_string()).collect(),
            wildcard: wildcard.iter().map(|s| s.to_string()).collect(),
            regexp,
        }
    }

    #[test]
    fn single_host_matchers() {
        assert_eq!(host_keys(&host("a.example")), hosts(&["a.example"], &[], false));
        assert_eq!(
            host_keys(&wildcard("example.com")),
            hosts(&[], &["example.com"], false)
        );
        assert_eq!(host_keys(&host_re("^a")), hosts(&[], &[], true));
    }

    #[test]
    fn all_takes_its_narrowest_host_member() {
        let m = all_of(vec![path_prefix("/api"), host("a.example"), method("GET")]);
        assert_eq!(host_keys(&m), hosts(&["a.example"], &[], false));
        let m = all_of(vec![host_re("x"), any_of(vec![host("b"), host("a")])]);
        assert_eq!(host_keys(&m), hosts(&["a", "b"], &[], false));
        let m = all_of(vec![any_of(vec![host("b"), host("a")]), host("c")]);
        assert_eq!(host_keys(&m), hosts(&["c"], &[], false));
        assert_eq!(host_keys(&all_of(vec![path_prefix("/")])), HostKeys::Any);
        assert_eq!(host_keys(&all_of(vec![])), HostKeys::Any);
    }

    #[test]
    fn traefik_one_label_wildcard_is_filed_under_its_suffix() {
        let m = all_of(vec![wildcard("example.com"), host_re(r"^[^.]+\.example\.com$")]);
        assert_eq!(host_keys(&m), hosts(&[], &["example.com"], false));
    }

    #[test]
    fn any_is_the_union_or_nothing_known() {
        let m = any_of(vec![
            host("b"),
            wildcard("w.example"),
            all_of(vec![host("a"), path_exact("/x")]),
            host("b"),
        ]);
        assert_eq!(host_keys(&m), hosts(&["a", "b"], &["w.example"], false));
        let m = any_of(vec![host("a"), host_re("^x")]);
        assert_eq!(host_keys(&m), hosts(&["a"], &[], true));
        assert_eq!(
            host_keys(&any_of(vec![host("a"), path_prefix("/x")])),
            HostKeys::Any
        );
        assert_eq!(host_keys(&any_of(vec![])), hosts(&[], &[], false));
    }

    #[test]
    fn negation_is_not_a_bound() {
        assert_eq!(host_keys(&not(host("a"))), HostKeys::Any);
        assert_eq!(host_keys(&not(not(host("a")))), hosts(&["a"], &[], false));
        assert_eq!(
            host_keys(&all_of(vec![not(host("a")), host("b")])),
            hosts(&["b"], &[], false)
        );
    }

    #[test]
    fn other_kinds_and_malformed_trees_are_any() {
        for m in [
            path_prefix("/"),
            method("GET"),
            header("a", "b"),
            query("a", "b"),
            client_ip(&["1.2.3.4"]),
            Matcher { kind: None },
            any_of(vec![host("a"), Matcher { kind: None }]),
        ] {
            assert_eq!(host_keys(&m), HostKeys::Any, "{m:?}");
        }
    }
}

#[cfg(test)]
mod soundness {
    use super::*;
    use crate::testing::{small_request, valid_tree};
    use crate::CompiledMatcher;
    use proptest::prelude::*;

    proptest! {
        /// A route filed under hosts takes no request whose host is outside them.
        #[test]
        fn keys_cover_every_request_the_matcher_takes(m in valid_tree(), req in small_request()) {
            let compiled = CompiledMatcher::compile(&m).unwrap();
            if compiled.matches(&req.view()) {
                if let HostKeys::Hosts { exact, wildcard, regexp } = host_keys(&m) {
                    let host = req.view().host;
                    let covered = regexp
                        || exact.iter().any(|e| e == host)
                        || wildcard.iter().any(|s| host.ends_with(&format!(".{s}")));
                    prop_assert!(covered, "{host} taken by {m:?} but keys are {exact:?} {wildcard:?}");
                }
            }
        }
    }
}
