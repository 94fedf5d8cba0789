//! The diff: given the registrations the running containers call for and what Consul holds, the
//! actions that make Consul match. Pure: no I/O.
//!
//! - A desired registration that Consul lacks, or holds with a different definition (its
//!   [`META_SPEC`] fingerprint differs, or one of its checks is missing), is registered. One that
//!   matches is left alone, so reconciling twice registers nothing twice.
//! - A registration this agent owns ([`META_AGENT`] is its ID) that nothing calls for any more is
//!   deregistered, unless its container is [`Retained`]: it could not be inspected this round
//!   (kept until we know), or it failed under `-deregister=on-success` (kept, with its Docker
//!   health check set critical). With `-cleanup`, services without any agent mark whose ID starts
//!   with `<hostname>:` (Registrator's, or left from before the marks) are treated as owned too.
//! - Every TTL check the agent drives (Docker health mirror, `-ttl`) whose status or output in
//!   Consul differs from the wanted one is updated; all of them when `refresh` is set, to restart
//!   their TTL.
//!
//! Actions come in the order to apply them: deregistrations, registrations, check updates.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use berth_consul::agent::{AgentCheck, AgentService};

use crate::conventions::{Registration, META_AGENT, META_CONTAINER, META_SPEC};

/// What Consul's agent holds now.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Actual {
    pub services: BTreeMap<String, AgentService>,
    pub checks: BTreeMap<String, AgentCheck>,
}

/// Which of Consul's services this agent may remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ownership {
    pub agent_id: String,
    /// With `-cleanup`: unmarked services whose ID starts with this (`<hostname>:`) are ours too.
    pub legacy_prefix: Option<String>,
}

impl Ownership {
    pub fn owns(&self, service: &AgentService) -> bool {
        match service.meta.get(META_AGENT) {
            Some(agent) => *agent == self.agent_id,
            None => self
                .legacy_prefix
                .as_deref()
                .is_some_and(|prefix| service.id.starts_with(prefix)),
        }
    }
}

/// Why a container's registrations are kept although it calls for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retained {
    /// It could not be inspected this round.
    Unknown,
    /// It exited with this failure code under `-deregister=on-success`.
    Failed { code: i64 },
}

/// Suffix of the check IDs mirroring Docker health (see [`crate::conventions`]).
const DOCKER_HEALTH_SUFFIX: &str = ":docker-health";

/// One change to make in Consul.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    Register {
        registration: Box<Registration>,
        reason: &'static str,
    },
    Deregister {
        service_id: String,
        service_name: String,
        container_id: Option<String>,
    },
    UpdateCheck {
        check_id: String,
        service_id: String,
        status: &'static str,
        output: String,
    },
}

/// The actions that bring `actual` to `desired`. `retained` lists containers whose registrations
/// must not be removed this round; `refresh` updates every driven TTL check even when unchanged.
pub(crate) fn plan(
    desired: &[Registration],
    actual: &Actual,
    ownership: &Ownership,
    retained: &BTreeMap<String, Retained>,
    refresh: bool,
) -> Vec<Action> {
    let wanted: BTreeSet<&str> = desired.iter().map(|r| r.service.id.as_str()).collect();
    let mut actions = Vec::new();
    let mut updates = Vec::new();
    for service in actual.services.values() {
        if wanted.contains(service.id.as_str()) || !ownership.owns(service) {
            continue;
        }
        let container_id = service.meta.get(META_CONTAINER).cloned();
        match container_id.as_ref().and_then(|id| retained.get(id)) {
            Some(Retained::Unknown) => continue,
            Some(Retained::Failed { code }) => {
                let output = format!("container exited with code {code}");
                let health = actual
                    .checks
                    .values()
                    .filter(|c| c.service_id == service.id && c.check_id.ends_with(DOCKER_HEALTH_SUFFIX));
                for check in health {
                    if refresh || check.status != "critical" || check.output != output {
                        updates.push(Action::UpdateCheck {
                            check_id: check.check_id.clone(),
                            service_id: service.id.clone(),
                            status: "critical",
                            output: output.clone(),
                        });
                    }
                }
                continue;
            }
            None => {}
        }
        actions.push(Action::Deregister {
            service_id: service.id.clone(),
            service_name: service.service.clone(),
            container_id,
        });
    }
    for registration in desired {
        let id = &registration.service.id;
        let reason = match actual.services.get(id) {
            None => Some("new"),
            Some(existing) if existing.meta.get(META_SPEC) != registration.service.meta.get(META_SPEC) => {
                Some(if existing.meta.contains_key(META_AGENT) {
                    "changed"
                } else {
                    "taken over"
                })
            }
            Some(_)
                if registration
                    .service
                    .checks
                    .iter()
                    .any(|c| !actual.checks.contains_key(&c.check_id)) =>
            {
                Some("a check was missing")
            }
            Some(_) => None,
        };
        if let Some(reason) = reason {
            actions.push(Action::Register {
                registration: Box::new(registration.clone()),
                reason,
            });
        }
        for driven in &registration.driven {
            let current = actual.checks.get(&driven.check_id);
            let stale = current.is_none_or(|c| c.status != driven.status || c.output != driven.output);
            if refresh || reason.is_some() || stale {
                updates.push(Action::UpdateCheck {
                    check_id: driven.check_id.clone(),
                    service_id: id.clone(),
                    status: driven.status,
                    output: driven.output.clone(),
                });
            }
        }
    }
    actions.extend(updates);
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conventions::DrivenCheck;
    use berth_consul::agent::{CheckDefinition, ServiceRegistration};

    fn registration(id: &str, container: &str, spec: &str) -> Registration {
        Registration {
            service: ServiceRegistration {
                id: id.into(),
                name: "web".into(),
                port: 80,
                meta: BTreeMap::from([
                    (META_AGENT.to_string(), "me".to_string()),
                    (META_CONTAINER.to_string(), container.to_string()),
                    (META_SPEC.to_string(), spec.to_string()),
                ]),
                ..ServiceRegistration::default()
            },
            container_id: container.into(),
            container_name: container.into(),
            port_label: "80/tcp".into(),
            id_key: None,
            driven: vec![],
        }
    }

    fn with_health(mut r: Registration, status: &'static str) -> Registration {
        let check_id = format!("service:{}:docker-health", r.service.id);
        r.service.checks.push(CheckDefinition {
            check_id: check_id.clone(),
            ..CheckDefinition::default()
        });
        r.driven.push(DrivenCheck {
            check_id,
            status,
            output: format!("Docker health: {status}"),
        });
        r
    }

    fn service(id: &str, meta: &[(&str, &str)]) -> AgentService {
        AgentService {
            id: id.into(),
            service: "web".into(),
            tags: vec![],
            meta: meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            port: 80,
            address: String::new(),
        }
    }

    fn owned(id: &str, container: &str, spec: &str) -> AgentService {
        service(
            id,
            &[(META_AGENT, "me"), (META_CONTAINER, container), (META_SPEC, spec)],
        )
    }

    fn check(id: &str, service_id: &str, status: &str, output: &str) -> AgentCheck {
        AgentCheck {
            check_id: id.into(),
            name: String::new(),
            status: status.into(),
            output: output.into(),
            service_id: service_id.into(),
        }
    }

    fn actual(services: Vec<AgentService>, checks: Vec<AgentCheck>) -> Actual {
        Actual {
            services: services.into_iter().map(|s| (s.id.clone(), s)).collect(),
            checks: checks.into_iter().map(|c| (c.check_id.clone(), c)).collect(),
        }
    }

    fn me() -> Ownership {
        Ownership {
            agent_id: "me".into(),
            legacy_prefix: None,
        }
    }

    fn summary(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Register { registration, reason } => {
                    format!("register {} ({reason})", registration.service.id)
                }
                Action::Deregister { service_id, .. } => format!("deregister {service_id}"),
                Action::UpdateCheck { check_id, status, .. } => format!("update {check_id} {status}"),
            })
            .collect()
    }

    /// The plan for this agent, with nothing retained and no heartbeat, as one line per action.
    fn plan_of(desired: &[Registration], current: &Actual) -> Vec<String> {
        summary(&plan(desired, current, &me(), &BTreeMap::new(), false))
    }

    #[test]
    fn registers_what_is_missing_and_nothing_twice() {
        let desired = [registration("h:a:80", "a", "s1")];
        let empty = Actual::default();
        assert_eq!(plan_of(&desired, &empty), ["register h:a:80 (new)"]);
        let done = actual(vec![owned("h:a:80", "a", "s1")], vec![]);
        assert!(plan(&desired, &done, &me(), &BTreeMap::new(), false).is_empty());
    }

    #[test]
    fn registers_again_when_the_definition_changed() {
        let desired = [registration("h:a:80", "a", "s2")];
        let old = actual(vec![owned("h:a:80", "a", "s1")], vec![]);
        assert_eq!(plan_of(&desired, &old), ["register h:a:80 (changed)"]);
    }

    #[test]
    fn takes_over_an_unmarked_service_with_the_same_id() {
        let desired = [registration("h:a:80", "a", "s1")];
        let registrators = actual(vec![service("h:a:80", &[])], vec![]);
        assert_eq!(plan_of(&desired, &registrators), ["register h:a:80 (taken over)"]);
    }

    #[test]
    fn deregisters_only_its_own_stale_services() {
        let current = actual(
            vec![
                owned("h:gone:80", "gone", "s"),
                service("h:other-agent:80", &[(META_AGENT, "someone-else")]),
                service("h:registrator:80", &[]),
                service("consul", &[]),
            ],
            vec![],
        );
        assert_eq!(plan_of(&[], &current), ["deregister h:gone:80"]);
    }

    #[test]
    fn cleanup_also_removes_unmarked_services_of_this_host() {
        let current = actual(
            vec![
                service("h:registrator:80", &[]),
                service("other-host:x:80", &[]),
                service("h:marked:80", &[(META_AGENT, "x")]),
            ],
            vec![],
        );
        let cleanup = Ownership {
            agent_id: "me".into(),
            legacy_prefix: Some("h:".into()),
        };
        assert_eq!(
            summary(&plan(&[], &current, &cleanup, &BTreeMap::new(), false)),
            ["deregister h:registrator:80"]
        );
    }

    #[test]
    fn keeps_services_of_containers_in_an_unknown_state() {
        let current = actual(vec![owned("h:a:80", "a", "s"), owned("h:b:80", "b", "s")], vec![]);
        let retained = BTreeMap::from([("a".to_string(), Retained::Unknown)]);
        assert_eq!(
            summary(&plan(&[], &current, &me(), &retained, false)),
            ["deregister h:b:80"]
        );
    }

    #[test]
    fn keeps_services_of_failed_containers_with_their_health_critical() {
        let current = actual(
            vec![owned("h:a:80", "a", "s")],
            vec![
                check(
                    "service:h:a:80:docker-health",
                    "h:a:80",
                    "passing",
                    "Docker health: healthy",
                ),
                check("service:h:a:80", "h:a:80", "passing", "HTTP GET ..."),
            ],
        );
        let retained = BTreeMap::from([("a".to_string(), Retained::Failed { code: 2 })]);
        let actions = plan(&[], &current, &me(), &retained, false);
        assert_eq!(
            summary(&actions),
            ["update service:h:a:80:docker-health critical"]
        );
        assert!(
            matches!(&actions[0], Action::UpdateCheck { output, .. } if output == "container exited with code 2")
        );
        // Once critical with that output, nothing more to do.
        let current = actual(
            vec![owned("h:a:80", "a", "s")],
            vec![check(
                "service:h:a:80:docker-health",
                "h:a:80",
                "critical",
                "container exited with code 2",
            )],
        );
        assert!(plan(&[], &current, &me(), &retained, false).is_empty());
    }

    #[test]
    fn a_renamed_container_moves_its_registration() {
        let desired = [registration("h:new-name:80", "a", "s2")];
        let current = actual(vec![owned("h:old-name:80", "a", "s1")], vec![]);
        assert_eq!(
            plan_of(&desired, &current),
            ["deregister h:old-name:80", "register h:new-name:80 (new)"]
        );
    }

    #[test]
    fn health_changes_update_the_check_without_registering() {
        let desired = [with_health(registration("h:a:80", "a", "s"), "critical")];
        let current = actual(
            vec![owned("h:a:80", "a", "s")],
            vec![check(
                "service:h:a:80:docker-health",
                "h:a:80",
                "passing",
                "Docker health: passing",
            )],
        );
        assert_eq!(
            plan_of(&desired, &current),
            ["update service:h:a:80:docker-health critical"]
        );
    }

    #[test]
    fn unchanged_health_is_left_alone_unless_refreshing() {
        let desired = [with_health(registration("h:a:80", "a", "s"), "passing")];
        let current = actual(
            vec![owned("h:a:80", "a", "s")],
            vec![check(
                "service:h:a:80:docker-health",
                "h:a:80",
                "passing",
                "Docker health: passing",
            )],
        );
        assert!(plan(&desired, &current, &me(), &BTreeMap::new(), false).is_empty());
        assert_eq!(
            summary(&plan(&desired, &current, &me(), &BTreeMap::new(), true)),
            ["update service:h:a:80:docker-health passing"]
        );
    }

    #[test]
    fn a_new_registration_gets_its_driven_checks_set_after_it() {
        let desired = [with_health(registration("h:a:80", "a", "s"), "passing")];
        assert_eq!(
            plan_of(&desired, &Actual::default()),
            [
                "register h:a:80 (new)",
                "update service:h:a:80:docker-health passing"
            ]
        );
    }

    #[test]
    fn a_missing_check_registers_again() {
        let desired = [with_health(registration("h:a:80", "a", "s"), "passing")];
        let current = actual(vec![owned("h:a:80", "a", "s")], vec![]);
        assert_eq!(
            plan_of(&desired, &current),
            [
                "register h:a:80 (a check was missing)",
                "update service:h:a:80:docker-health passing"
            ]
        );
    }

    #[test]
    fn order_is_deregister_register_update() {
        let desired = [with_health(registration("h:b:80", "b", "s"), "passing")];
        let current = actual(vec![owned("h:a:80", "a", "s")], vec![]);
        assert_eq!(
            plan_of(&desired, &current),
            [
                "deregister h:a:80",
                "register h:b:80 (new)",
                "update service:h:b:80:docker-health passing"
            ]
        );
    }
}
