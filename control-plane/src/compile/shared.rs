//! Middlewares that one service defines and others use (`name@consulcatalog`).
//!
//! Traefik lets a router use a middleware declared on any service's tags. The registry keeps
//! every definition by name and by the service that made it, answers a router's lookup, and
//! remembers who looked up what, so that a change to a definition recompiles exactly the
//! services that use it (or were waiting for it to exist).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use berth_proto::v1::Middleware;

/// A definition as the dialect produced it: the middlewares it expands to, or why it is unusable.
pub(crate) type Definition = Result<Vec<Middleware>, String>;

#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// Name → defining service → definition.
    defined: BTreeMap<String, BTreeMap<String, Definition>>,
    /// Name → services that looked it up.
    users: BTreeMap<String, BTreeSet<String>>,
    /// Service → names it looked up (to forget them when it is recompiled).
    uses: BTreeMap<String, BTreeSet<String>>,
}

impl Registry {
    /// Replaces what `service` defines; returns the names whose definition changed.
    pub(crate) fn define(
        &mut self,
        service: &str,
        definitions: BTreeMap<String, Definition>,
    ) -> BTreeSet<String> {
        let mut changed = BTreeSet::new();
        let old: Vec<String> = self
            .defined
            .iter()
            .filter(|(_, by)| by.contains_key(service))
            .map(|(name, _)| name.clone())
            .collect();
        for name in old {
            if definitions.contains_key(&name) {
                continue;
            }
            if let Some(by) = self.defined.get_mut(&name) {
                by.remove(service);
                if by.is_empty() {
                    self.defined.remove(&name);
                }
            }
            changed.insert(name);
        }
        for (name, definition) in definitions {
            let by = self.defined.entry(name.clone()).or_default();
            if by.get(service) != Some(&definition) {
                by.insert(service.to_string(), definition);
                changed.insert(name);
            }
        }
        changed
    }

    /// The services that looked up any of `names`.
    pub(crate) fn users_of(&self, names: &BTreeSet<String>) -> BTreeSet<String> {
        names
            .iter()
            .filter_map(|name| self.users.get(name))
            .flatten()
            .cloned()
            .collect()
    }

    /// What `name` resolves to for a router: `None` when no service defines it.
    pub(crate) fn resolve(&self, name: &str) -> Option<Definition> {
        let by = self.defined.get(name)?;
        let mut definitions = by.iter();
        let (first_service, first) = definitions.next()?;
        for (service, other) in definitions {
            if other != first {
                return Some(Err(format!(
                    "middleware {name:?} is defined differently by services {first_service:?} and {service:?}"
                )));
            }
        }
        Some(first.clone())
    }

    /// Records the names `service` looked up in its last compile.
    pub(crate) fn set_uses(&mut self, service: &str, names: BTreeSet<String>) {
        if let Some(old) = self.uses.remove(service) {
            for name in old {
                if let Some(users) = self.users.get_mut(&name) {
                    users.remove(service);
                    if users.is_empty() {
                        self.users.remove(&name);
                    }
                }
            }
        }
        for name in &names {
            self.users
                .entry(name.clone())
                .or_default()
                .insert(service.to_string());
        }
        if !names.is_empty() {
            self.uses.insert(service.to_string(), names);
        }
    }
}

/// A lookup function for one compile that also records what was looked up.
pub(crate) struct Lookups<'a> {
    registry: &'a Registry,
    asked: RefCell<BTreeSet<String>>,
}

impl<'a> Lookups<'a> {
    pub(crate) fn new(registry: &'a Registry) -> Lookups<'a> {
        Lookups {
            registry,
            asked: RefCell::new(BTreeSet::new()),
        }
    }

    pub(crate) fn resolve(&self, name: &str) -> Option<Definition> {
        self.asked.borrow_mut().insert(name.to_string());
        self.registry.resolve(name)
    }

    pub(crate) fn asked(self) -> BTreeSet<String> {
        self.asked.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Definition {
        Ok(vec![Middleware {
            name: name.into(),
            kind: None,
        }])
    }

    #[test]
    fn definitions_changes_and_users() {
        let mut registry = Registry::default();
        assert_eq!(
            registry.define("auth-svc", [("auth".to_string(), named("auth"))].into()),
            ["auth".to_string()].into()
        );
        assert!(registry
            .define("auth-svc", [("auth".to_string(), named("auth"))].into())
            .is_empty());
        registry.set_uses("web", ["auth".to_string(), "missing".to_string()].into());
        assert_eq!(
            registry.users_of(&["missing".to_string()].into()),
            ["web".to_string()].into()
        );
        assert!(registry.resolve("missing").is_none());
        assert_eq!(registry.resolve("auth"), Some(named("auth")));
        // A second, different definition makes the name unusable until one goes.
        registry.define("other", [("auth".to_string(), named("other"))].into());
        assert!(matches!(registry.resolve("auth"), Some(Err(_))));
        assert_eq!(
            registry.define("other", BTreeMap::new()),
            ["auth".to_string()].into()
        );
        assert_eq!(registry.resolve("auth"), Some(named("auth")));
        registry.set_uses("web", BTreeSet::new());
        assert!(registry.users_of(&["auth".to_string()].into()).is_empty());
    }
}
