//! What the watch knows of the catalog, and which services an answer from Consul changed.
//!
//! Pure: answers from Consul go in, the names of the services to re-read or to recompute come
//! out. The rules:
//!
//! - The service list (`/v1/catalog/services`) names the services that appeared, left, or whose
//!   tags changed; those are re-read.
//! - A list whose index moved while no name or tag changed means an instance was added, removed
//!   or re-registered without changing the tags: [`State::take_summaries`] finds it from
//!   Consul's per-service summary, and failing that a full read compares every instance. The
//!   summary names every service of the catalog, but only what may disagree is compared: the
//!   entries that changed since the last summary (see [`SummaryIndex`]), the services read since,
//!   and those that disagreed last time.
//! - The failing checks (`/v1/health/state/any` without the passing ones) name the instances
//!   whose health changed: their services are recomputed, not re-read (the instances did not
//!   change). A node check concerns every service with an instance on that node.
//!
//! Health is computed here too: an instance is healthy when none of its checks, nor its node's,
//! is failing with a status the operator does not accept.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use berth_consul::catalog::{
    FailingCheck, Instance, ListedService, NodeName, ServiceSummary, Summaries, TagsDigest,
};
use berth_consul::summaries::{SummaryChanges, SummaryIndex};

/// The health of one instance, from its checks and its node's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Health {
    Passing,
    Warning,
    Critical,
}

impl Health {
    fn of_status(status: &str) -> Health {
        match status {
            "passing" => Health::Passing,
            "warning" => Health::Warning,
            // critical, maintenance, and anything Consul may add: not healthy.
            _ => Health::Critical,
        }
    }
}

/// One instance as the compiler sees it: where it is and whether it may receive traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ViewInstance {
    pub instance: Instance,
    pub health: Health,
}

/// One service as the compiler sees it. Instances are sorted by (node, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceView {
    pub name: String,
    pub instances: Vec<ViewInstance>,
}

/// The catalog as last read.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Every service's instances, sorted by (node, id).
    services: BTreeMap<String, Vec<Instance>>,
    /// The last service list: names, sorted, each with the digest of its tags.
    listed: Vec<(Box<str>, TagsDigest)>,
    /// Every check that is not passing.
    failing: BTreeSet<FailingCheck>,
    /// Which services have instances on each node (for node checks).
    by_node: BTreeMap<String, BTreeSet<String>>,
    /// The views last handed to the compiler.
    views: BTreeMap<String, Arc<ServiceView>>,
    /// Consul's last summary.
    summary: SummaryIndex,
    /// The services that may disagree with the last summary without its entry having changed:
    /// those read since it was compared, and those that disagreed with it.
    unsummarized: BTreeSet<String>,
}

impl State {
    /// Number of services known.
    pub(crate) fn len(&self) -> usize {
        self.services.len()
    }

    /// Takes a new service list (sorted by name, as [`ServiceList::services`] gives it); returns
    /// the services that appeared, left or changed tags. An empty answer with a moved index
    /// means the change is not visible in the list. The list and what is known are walked side
    /// by side, comparing digests of the tag sets, so only what changed is copied.
    ///
    /// [`ServiceList::services`]: berth_consul::catalog::ServiceList::services
    pub(crate) fn take_service_list(&mut self, list: &[ListedService<'_>]) -> BTreeSet<String> {
        let mut changed = BTreeSet::new();
        let mut listed = Vec::with_capacity(list.len());
        let mut known = std::mem::take(&mut self.listed).into_iter().peekable();
        let mut read = self.services.keys().peekable();
        for (name, digest) in list {
            let name = name.as_ref();
            // Known services before this one in order have left the list.
            while let Some((left, _)) = known.next_if(|(known, _)| &**known < name) {
                changed.insert(left.into_string());
            }
            match known.next_if(|(known, _)| &**known == name) {
                Some((same, old)) => {
                    if old != *digest {
                        changed.insert(name.to_string());
                    }
                    listed.push((same, *digest));
                }
                None => {
                    changed.insert(name.to_string());
                    listed.push((name.into(), *digest));
                }
            }
            // A service in the list that was never read (its read failed, or the list raced
            // ahead of a full read) is read too.
            while read.next_if(|read| read.as_str() < name).is_some() {}
            if read.next_if(|read| read.as_str() == name).is_none() {
                changed.insert(name.to_string());
            }
        }
        changed.extend(known.map(|(left, _)| left.into_string()));
        self.listed = listed;
        changed
    }

    /// Takes a new list of failing checks; returns the services whose health may have changed.
    pub(crate) fn take_failing_checks(&mut self, checks: Vec<FailingCheck>) -> BTreeSet<String> {
        let new: BTreeSet<FailingCheck> = checks.into_iter().collect();
        let mut affected = BTreeSet::new();
        for check in self.failing.symmetric_difference(&new) {
            if check.service_id.is_empty() {
                if let Some(services) = self.by_node.get(&check.node) {
                    affected.extend(services.iter().cloned());
                }
            } else if !check.service_name.is_empty() {
                affected.insert(check.service_name.clone());
            }
        }
        self.failing = new;
        affected
    }

    /// Takes Consul's summary; returns the services whose instance count or nodes differ from
    /// what is known (read them to agree again). Only the services that may disagree are
    /// compared (see [`State::unsummarized`](State)); the first summary, or one that could not be
    /// compared with the last, is compared whole.
    pub(crate) fn take_summaries(
        &mut self,
        answer: &Summaries,
    ) -> Result<BTreeSet<String>, serde_json::Error> {
        let candidates: BTreeSet<String> = match self.summary.update(answer)? {
            SummaryChanges::All => self
                .summary
                .names()
                .map(str::to_string)
                .chain(self.services.keys().cloned())
                .collect(),
            SummaryChanges::Services(mut changed) => {
                changed.extend(self.unsummarized.iter().cloned());
                changed
            }
        };
        let mut differing = BTreeSet::new();
        for name in candidates {
            let summary = match self.summary.get(&name).transpose() {
                Ok(summary) => summary,
                Err(e) => {
                    // An entry that cannot be read is never trusted later: start over.
                    self.summary.clear();
                    return Err(e);
                }
            };
            if !agrees(self.services.get(&name), summary.as_ref()) {
                differing.insert(name);
            }
        }
        self.unsummarized.clone_from(&differing);
        Ok(differing)
    }

    /// The services whose instances differ from `full` (a read of every instance); services
    /// missing from `full` are included.
    pub(crate) fn differing_instances(&self, full: &BTreeMap<String, Vec<Instance>>) -> BTreeSet<String> {
        let mut differing: BTreeSet<String> = full
            .iter()
            .filter(|(name, instances)| self.services.get(*name) != Some(*instances))
            .map(|(name, _)| name.clone())
            .collect();
        differing.extend(self.services.keys().filter(|n| !full.contains_key(*n)).cloned());
        differing
    }

    /// The services whose instances on `node` differ from `instances` (a read of that node):
    /// one added, removed or changed in place there.
    pub(crate) fn differing_on_node(&self, node: &str, instances: &[Instance]) -> BTreeSet<String> {
        let mut theirs: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
        for instance in instances {
            theirs.entry(&instance.service).or_default().push(instance);
        }
        for listed in theirs.values_mut() {
            listed.sort_by(|a, b| a.id.cmp(&b.id));
        }
        let mut names: BTreeSet<&str> = theirs.keys().copied().collect();
        if let Some(ours) = self.by_node.get(node) {
            names.extend(ours.iter().map(String::as_str));
        }
        names
            .into_iter()
            .filter(|name| {
                // Ours are sorted by (node, id): those on this node are in id order.
                let ours: Vec<&Instance> = self
                    .services
                    .get(*name)
                    .map(|all| all.iter().filter(|i| i.node == node).collect())
                    .unwrap_or_default();
                theirs.get(name).map(Vec::as_slice).unwrap_or_default() != ours.as_slice()
            })
            .map(str::to_string)
            .collect()
    }

    /// The services with an instance on a node whose address differs from the one they were
    /// read with, or on a node that is gone (`nodes`: every node of the catalog). An instance
    /// without an address of its own is reached at its node's, and a node's new address moves
    /// neither the service list nor any check.
    pub(crate) fn moved_nodes(&self, nodes: &[NodeName]) -> BTreeSet<String> {
        let addresses: BTreeMap<&str, &str> = nodes
            .iter()
            .map(|n| (n.node.as_str(), n.address.as_str()))
            .collect();
        let mut moved = BTreeSet::new();
        for (node, services) in &self.by_node {
            let address = addresses.get(node.as_str()).copied();
            for service in services {
                let stale = self.services.get(service).is_some_and(|all| {
                    all.iter()
                        .any(|i| &i.node == node && Some(i.node_address.as_str()) != address)
                });
                if stale {
                    moved.insert(service.clone());
                }
            }
        }
        moved
    }

    /// The services with an instance on `node`.
    pub(crate) fn services_on(&self, node: &str) -> BTreeSet<String> {
        self.by_node.get(node).cloned().unwrap_or_default()
    }

    /// Records what a read found for `service` (no instances: the service is gone).
    pub(crate) fn set_instances(&mut self, service: &str, mut instances: Vec<Instance>) {
        instances.sort_by(|a, b| (&a.node, &a.id).cmp(&(&b.node, &b.id)));
        if !self.unsummarized.contains(service) {
            self.unsummarized.insert(service.to_string());
        }
        if let Some(old) = self.services.get(service) {
            for instance in old {
                if let Some(on_node) = self.by_node.get_mut(&instance.node) {
                    on_node.remove(service);
                    if on_node.is_empty() {
                        self.by_node.remove(&instance.node);
                    }
                }
            }
        }
        if instances.is_empty() {
            self.services.remove(service);
            return;
        }
        for instance in &instances {
            self.by_node
                .entry(instance.node.clone())
                .or_default()
                .insert(service.to_string());
        }
        self.services.insert(service.to_string(), instances);
    }

    /// Recomputes the views of `services`; returns those that changed since last handed out
    /// (`None` for a service that is gone).
    pub(crate) fn refresh_views<'a>(
        &mut self,
        services: impl IntoIterator<Item = &'a String>,
    ) -> BTreeMap<String, Option<Arc<ServiceView>>> {
        let mut changed = BTreeMap::new();
        for name in services {
            match self.view_of(name) {
                None => {
                    if self.views.remove(name).is_some() {
                        changed.insert(name.clone(), None);
                    }
                }
                Some(view) => {
                    if self.views.get(name).map(|v| v.as_ref()) != Some(&view) {
                        let view = Arc::new(view);
                        self.views.insert(name.clone(), view.clone());
                        changed.insert(name.clone(), Some(view));
                    }
                }
            }
        }
        changed
    }

    /// Every service known, for a full refresh of the views.
    pub(crate) fn all_names(&self) -> BTreeSet<String> {
        self.services.keys().chain(self.views.keys()).cloned().collect()
    }

    fn view_of(&self, service: &str) -> Option<ServiceView> {
        let instances = self.services.get(service)?;
        Some(ServiceView {
            name: service.to_string(),
            instances: instances
                .iter()
                .map(|instance| ViewInstance {
                    health: self.health_of(instance),
                    instance: instance.clone(),
                })
                .collect(),
        })
    }

    fn health_of(&self, instance: &Instance) -> Health {
        // Failing checks are ordered by node first: look at this node's only.
        self.failing
            .iter()
            .skip_while(|c| c.node < instance.node)
            .take_while(|c| c.node == instance.node)
            .filter(|c| c.service_id.is_empty() || c.service_id == instance.id)
            .map(|c| Health::of_status(&c.status))
            .max()
            .unwrap_or(Health::Passing)
    }
}

/// Whether what is known of a service agrees with its summary: as many instances, on the same
/// nodes (a service missing on either side agrees only if missing on both).
fn agrees(ours: Option<&Vec<Instance>>, summary: Option<&ServiceSummary<'_>>) -> bool {
    match (ours, summary) {
        (None, None) => true,
        // Instances are sorted by node first, so their nodes are in order.
        (Some(ours), Some(summary)) => {
            ours.len() == summary.instance_count
                && ours.len() == summary.nodes.len()
                && ours.iter().zip(&summary.nodes).all(|(i, n)| i.node == n.as_ref())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn instance(service: &str, node: &str, id: &str, port: u16) -> Instance {
        Instance {
            node: node.into(),
            node_address: "127.0.0.1".into(),
            id: id.into(),
            service: service.into(),
            tags: vec!["t".into()],
            address: String::new(),
            port,
            meta: Default::default(),
            create_index: 1,
            modify_index: 1,
        }
    }

    fn check(node: &str, id: &str, service_id: &str, service: &str, status: &str) -> FailingCheck {
        FailingCheck {
            node: node.into(),
            check_id: id.into(),
            status: status.into(),
            service_id: service_id.into(),
            service_name: service.into(),
        }
    }

    /// A service list as [`ServiceList::services`](berth_consul::catalog::ServiceList::services)
    /// gives it: sorted by name.
    fn tags<'a>(list: &[(&'a str, &[&'a str])]) -> Vec<ListedService<'a>> {
        let mut services: Vec<ListedService<'a>> = list
            .iter()
            .map(|(n, t)| (Cow::Borrowed(*n), TagsDigest::of(t.iter().copied())))
            .collect();
        services.sort_by(|a, b| a.0.cmp(&b.0));
        services
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn seeded() -> State {
        let mut state = State::default();
        state.take_service_list(&tags(&[("web", &["t"]), ("api", &["t"])]));
        state.set_instances(
            "web",
            vec![instance("web", "n2", "w2", 2), instance("web", "n1", "w1", 1)],
        );
        state.set_instances("api", vec![instance("api", "n1", "a1", 3)]);
        state.refresh_views(&names(&["web", "api"]));
        state
    }

    #[test]
    fn the_service_list_names_what_appeared_left_or_changed_tags() {
        let mut state = seeded();
        let changed = state.take_service_list(&tags(&[("web", &["t", "u"]), ("new", &[])]));
        assert_eq!(changed, names(&["web", "api", "new"]));
        // The same list again changes nothing, even though "new" has not been read yet... except
        // that an unread service is always asked for.
        let same = tags(&[("web", &["t", "u"]), ("new", &[])]);
        assert_eq!(state.take_service_list(&same), names(&["new"]));
        // Consul writes tags in any order: the same set in another order is no change...
        assert_eq!(
            state.take_service_list(&tags(&[("web", &["u", "t"]), ("new", &[])])),
            names(&["new"])
        );
        // ...while another set is, even of the same size.
        assert_eq!(
            state.take_service_list(&tags(&[("web", &["u", "v"]), ("new", &["t"])])),
            names(&["web", "new"])
        );
    }

    #[test]
    fn an_unchanged_list_attributes_nothing() {
        let mut state = seeded();
        assert!(state
            .take_service_list(&tags(&[("web", &["t"]), ("api", &["t"])]))
            .is_empty());
    }

    #[test]
    fn failing_checks_name_their_service_and_node_checks_every_service_on_the_node() {
        let mut state = seeded();
        let affected = state.take_failing_checks(vec![check("n2", "service:w2", "w2", "web", "critical")]);
        assert_eq!(affected, names(&["web"]));
        let affected = state.take_failing_checks(vec![
            check("n2", "service:w2", "w2", "web", "critical"),
            check("n1", "serfHealth", "", "", "critical"),
        ]);
        assert_eq!(affected, names(&["web", "api"]));
        // Recovering is a change too.
        assert_eq!(state.take_failing_checks(vec![]), names(&["web", "api"]));
    }

    #[test]
    fn health_follows_the_instance_and_node_checks() {
        let mut state = seeded();
        state.take_failing_checks(vec![
            check("n2", "service:w2", "w2", "web", "warning"),
            check("n1", "other", "a1", "api", "critical"),
        ]);
        let views = state.refresh_views(&names(&["web", "api"]));
        let web = views["web"].as_ref().expect("web view");
        let health: Vec<(&str, Health)> = web
            .instances
            .iter()
            .map(|v| (v.instance.id.as_str(), v.health))
            .collect();
        assert_eq!(health, vec![("w1", Health::Passing), ("w2", Health::Warning)]);
        let api = views["api"].as_ref().expect("api view");
        assert_eq!(api.instances[0].health, Health::Critical);
    }

    #[test]
    fn views_are_handed_out_only_when_they_change() {
        let mut state = seeded();
        assert!(state.refresh_views(&names(&["web", "api"])).is_empty());
        state.set_instances("web", vec![instance("web", "n1", "w1", 9)]);
        let changed = state.refresh_views(&names(&["web", "api"]));
        assert_eq!(changed.keys().cloned().collect::<BTreeSet<_>>(), names(&["web"]));
        state.set_instances("web", vec![]);
        let changed = state.refresh_views(&names(&["web"]));
        assert_eq!(changed.get("web"), Some(&None));
    }

    #[test]
    fn summaries_find_added_and_moved_instances() {
        let mut state = seeded();
        let summary = |services: &[(&str, &[&str])]| {
            let entries: Vec<String> = services
                .iter()
                .map(|(name, nodes)| {
                    format!(
                        r#"{{"Name":"{name}","InstanceCount":{},"Nodes":{}}}"#,
                        nodes.len(),
                        serde_json::json!(nodes)
                    )
                })
                .collect();
            Summaries::from_json(format!("[{}]", entries.join(",")))
        };
        let take = |state: &mut State, answer: &Summaries| state.take_summaries(answer).expect("readable");
        let agreeing = summary(&[("api", &["n1"]), ("web", &["n2", "n1"])]);
        assert!(take(&mut state, &agreeing).is_empty());
        // Unchanged, and nothing read since: nothing to compare, nothing differs.
        assert!(take(&mut state, &agreeing).is_empty());

        let moved = summary(&[("api", &["n3"]), ("web", &["n1", "n2", "n2"])]);
        assert_eq!(take(&mut state, &moved), names(&["web", "api"]));
        // Still disagreeing with the same answer until read.
        assert_eq!(take(&mut state, &moved), names(&["web", "api"]));
        state.set_instances("api", vec![instance("api", "n3", "a1", 3)]);
        state.set_instances(
            "web",
            vec![
                instance("web", "n1", "w1", 1),
                instance("web", "n2", "w2", 2),
                instance("web", "n2", "w3", 3),
            ],
        );
        assert!(take(&mut state, &moved).is_empty());

        // A read that saw an instance the summary no longer shows (it came and went between two
        // summaries, so the summary's entry did not change): compared all the same.
        state.set_instances(
            "api",
            vec![instance("api", "n3", "a1", 3), instance("api", "n4", "a2", 3)],
        );
        assert_eq!(take(&mut state, &moved), names(&["api"]));

        // A service the summary no longer names, and one the watch never read.
        let gone = summary(&[("new", &["n1"]), ("web", &["n1", "n2", "n2"])]);
        assert_eq!(take(&mut state, &gone), names(&["api", "new"]));
    }

    #[test]
    fn a_node_read_finds_what_changed_on_that_node_only() {
        let state = seeded();
        // n1 holds w1 (web) and a1 (api); n2 holds w2 (web).
        let n1 = [instance("web", "n1", "w1", 1), instance("api", "n1", "a1", 3)];
        assert!(state.differing_on_node("n1", &n1).is_empty());
        assert!(state
            .differing_on_node("n2", &[instance("web", "n2", "w2", 2)])
            .is_empty());
        // In place: a1's port.
        let moved = [instance("web", "n1", "w1", 1), instance("api", "n1", "a1", 4)];
        assert_eq!(state.differing_on_node("n1", &moved), names(&["api"]));
        // Added there, and a service new to the catalog.
        let added = [
            instance("web", "n1", "w1", 1),
            instance("web", "n1", "w9", 9),
            instance("api", "n1", "a1", 3),
            instance("db", "n1", "d1", 5),
        ];
        assert_eq!(state.differing_on_node("n1", &added), names(&["web", "db"]));
        // Removed: the node is empty, or gone.
        assert_eq!(state.differing_on_node("n1", &[]), names(&["web", "api"]));
        assert_eq!(state.services_on("n2"), names(&["web"]));
        assert!(state.services_on("n9").is_empty());
    }

    #[test]
    fn a_node_with_a_new_address_or_gone_names_its_services() {
        let state = seeded();
        let node = |name: &str, address: &str| NodeName {
            node: name.into(),
            address: address.into(),
        };
        // seeded(): instances read with node address 127.0.0.1; n1 holds web and api, n2 web.
        let same = [node("n1", "127.0.0.1"), node("n2", "127.0.0.1")];
        assert!(state.moved_nodes(&same).is_empty());
        let n2_moved = [node("n1", "127.0.0.1"), node("n2", "10.0.0.2")];
        assert_eq!(state.moved_nodes(&n2_moved), names(&["web"]));
        let n1_gone = [node("n2", "127.0.0.1"), node("n3", "10.0.0.3")];
        assert_eq!(state.moved_nodes(&n1_gone), names(&["web", "api"]));
    }

    #[test]
    fn a_full_read_finds_instances_changed_in_place() {
        let state = seeded();
        let mut full = BTreeMap::new();
        full.insert(
            "web".to_string(),
            vec![instance("web", "n1", "w1", 1), instance("web", "n2", "w2", 2)],
        );
        full.insert("api".to_string(), vec![instance("api", "n1", "a1", 4)]);
        assert_eq!(state.differing_instances(&full), names(&["api"]));
        full.remove("api");
        assert_eq!(state.differing_instances(&full), names(&["api"]));
    }
}
