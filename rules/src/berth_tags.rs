//! Berth's own tags (`berth.*`): how a service's clusters balance, time out, retry and eject
//! failing endpoints, whatever dialect its routes are written in.
//!
//! For: reading these tags from every instance of a service and applying them to every cluster
//! the dialects made for it (Traefik v3, v1 and Fabio alike). A value given here overrides what a
//! dialect set (Traefik's `loadbalancer.strategy`, `passiveHealthCheck`). Keys are
//! case-insensitive; values are checked, and a key Berth does not know, a value that does not
//! read, or instances that disagree reject every route of the service with an error naming the
//! tag: a service is never served with settings other than those its tags ask for. The tags and
//! their meaning are listed in `rules/DIALECTS.md` and in the README.
//!
//! Not for: the dialects' own tags, or what the proxy does with the settings (see the proto's
//! `Cluster` and berth-proxy's `health` module).

use std::collections::BTreeMap;

use berth_proto::v1::{Balancing, Cluster, PassiveHealth, RetryPolicy, Timeouts};

use crate::error::{Fault, Output};
use crate::values;
use crate::Instance;

/// The prefix of Berth's own tags.
pub(crate) const PREFIX: &str = "berth.";

/// The keys Berth knows, after the prefix.
const KEYS: &[&str] = &[
    "lb.policy",
    "timeout.connect",
    "timeout.first_byte",
    "timeout.idle",
    "retry",
    "retry.attempts",
    "retry.methods",
    "retry.budget",
    "health",
    "health.failures",
    "health.ejection",
    "health.max_ejection",
    "health.max_ejected",
];

/// The settings a service's `berth.*` tags ask for; `None`: not given.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Settings {
    balancing: Option<Balancing>,
    connect_ms: Option<u64>,
    first_byte_ms: Option<u64>,
    idle_ms: Option<u64>,
    retry: Option<bool>,
    attempts: Option<u32>,
    methods: Option<Vec<String>>,
    budget: Option<u32>,
    health: Option<bool>,
    failures: Option<u32>,
    ejection_ms: Option<u64>,
    max_ejection_ms: Option<u64>,
    max_ejected: Option<u32>,
}

/// Reads the service's `berth.*` tags and applies them to `out`'s clusters; on any problem, every
/// route of the service is rejected and each problem reported. When the Traefik tag prefix is
/// itself `berth` (`--prefix berth`), a `berth.` key Berth does not know is left to the Traefik
/// dialect (`berth.enable`, `berth.http.routers...`) instead of being refused.
pub(crate) fn apply(instances: &[Instance], traefik_prefix: &str, out: &mut Output) {
    let shared_prefix = PREFIX
        .strip_suffix('.')
        .is_some_and(|p| p.eq_ignore_ascii_case(traefik_prefix));
    let (settings, faults) = read(instances, shared_prefix);
    if faults.is_empty() {
        for cluster in &mut out.clusters {
            settings.apply_to(cluster);
        }
        return;
    }
    let rejected: Vec<String> = out.routes.drain(..).map(|r| r.name).collect();
    let suffix = if rejected.is_empty() {
        String::new()
    } else {
        format!("; the service's routes are rejected ({})", rejected.join(", "))
    };
    for fault in faults {
        let error = format!("{}{suffix}", fault.error);
        out.fault(Fault { error, ..fault });
    }
}

/// The settings every instance agrees on, and the problems found.
fn read(instances: &[Instance], shared_prefix: bool) -> (Settings, Vec<Fault>) {
    let mut faults = Vec::new();
    // key → (value, tag, instance) as first seen.
    let mut seen: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    let mut sorted: Vec<&Instance> = instances.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    for instance in sorted {
        for tag in &instance.tags {
            let Some(rest) = tag
                .get(..PREFIX.len())
                .filter(|p| p.eq_ignore_ascii_case(PREFIX))
                .map(|_| &tag[PREFIX.len()..])
            else {
                continue;
            };
            let fault = |text: String| Fault::new(text).tag(tag.clone()).instance(&instance.id);
            let Some((key, value)) = rest.split_once('=') else {
                if !shared_prefix {
                    faults.push(fault("a berth.* tag must be key=value".into()));
                }
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            if !KEYS.contains(&key.as_str()) {
                if shared_prefix {
                    continue;
                }
                faults.push(fault(format!(
                    "berth.{key} is not a tag Berth knows (known: {})",
                    KEYS.iter()
                        .map(|k| format!("berth.{k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
                continue;
            }
            let value = value.trim().to_string();
            match seen.get(&key) {
                Some((first, first_tag, first_instance)) if *first != value => {
                    faults.push(fault(format!(
                        "berth.{key} is {value:?} here but {first:?} on instance {first_instance:?} ({first_tag:?}); instances of a service must agree"
                    )));
                }
                Some(_) => {}
                None => {
                    seen.insert(key, (value, tag.clone(), instance.id.clone()));
                }
            }
        }
    }
    let mut settings = Settings::default();
    for (key, (value, tag, instance)) in &seen {
        if let Err(problem) = settings.set(key, value) {
            faults.push(
                Fault::new(format!("berth.{key}: {problem}"))
                    .tag(tag.clone())
                    .instance(instance),
            );
        }
    }
    if let (Some(base), Some(max)) = (settings.ejection_ms, settings.max_ejection_ms) {
        if base > max {
            let (_, tag, instance) = &seen["health.max_ejection"];
            faults.push(
                Fault::new(format!(
                    "berth.health.max_ejection ({max} ms) is shorter than berth.health.ejection ({base} ms)"
                ))
                .tag(tag.clone())
                .instance(instance),
            );
        }
    }
    // A fault shared by all instances is reported once by `Output::finish`.
    (settings, faults)
}

impl Settings {
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "lb.policy" => {
                self.balancing = Some(match value.to_ascii_lowercase().as_str() {
                    "round_robin" => Balancing::RoundRobin,
                    "weighted_round_robin" => Balancing::WeightedRoundRobin,
                    "least_request" => Balancing::LeastRequest,
                    _ => {
                        return Err(format!(
                            "{value:?} is not round_robin, weighted_round_robin or least_request"
                        ))
                    }
                })
            }
            "timeout.connect" => self.connect_ms = Some(duration_ms(value)?),
            "timeout.first_byte" => self.first_byte_ms = Some(duration_ms(value)?),
            "timeout.idle" => self.idle_ms = Some(duration_ms(value)?),
            "retry" => self.retry = Some(boolean(value)?),
            "retry.attempts" => self.attempts = Some(number(value, 1, 10)?),
            "retry.methods" => self.methods = Some(methods(value)?),
            "retry.budget" => self.budget = Some(number(value, 1, 100)?),
            "health" => self.health = Some(boolean(value)?),
            "health.failures" => self.failures = Some(number(value, 1, 1_000_000)?),
            "health.ejection" => self.ejection_ms = Some(duration_ms(value)?),
            "health.max_ejection" => self.max_ejection_ms = Some(duration_ms(value)?),
            "health.max_ejected" => self.max_ejected = Some(number(value, 1, 100)?),
            _ => return Err("is not a tag Berth knows".into()),
        }
        Ok(())
    }

    fn apply_to(&self, cluster: &mut Cluster) {
        if let Some(balancing) = self.balancing {
            cluster.balancing = balancing as i32;
        }
        if self.connect_ms.is_some() || self.first_byte_ms.is_some() || self.idle_ms.is_some() {
            let t = cluster.timeouts.get_or_insert_with(Timeouts::default);
            t.connect_ms = self.connect_ms.unwrap_or(t.connect_ms);
            t.first_byte_ms = self.first_byte_ms.unwrap_or(t.first_byte_ms);
            t.idle_ms = self.idle_ms.unwrap_or(t.idle_ms);
        }
        if self.retry.is_some() || self.attempts.is_some() || self.methods.is_some() || self.budget.is_some()
        {
            let r = cluster.retry.get_or_insert_with(RetryPolicy::default);
            r.disabled = self.retry == Some(false);
            r.attempts = self.attempts.unwrap_or(r.attempts);
            if let Some(methods) = &self.methods {
                r.methods = methods.clone();
            }
            r.budget_percent = self.budget.unwrap_or(r.budget_percent);
        }
        if self.health.is_some()
            || self.failures.is_some()
            || self.ejection_ms.is_some()
            || self.max_ejection_ms.is_some()
            || self.max_ejected.is_some()
        {
            let h = cluster.passive_health.get_or_insert_with(PassiveHealth::default);
            h.disabled = self.health == Some(false);
            h.consecutive_failures = self.failures.unwrap_or(h.consecutive_failures);
            h.base_ejection_ms = self.ejection_ms.unwrap_or(h.base_ejection_ms);
            h.max_ejection_ms = self.max_ejection_ms.unwrap_or(h.max_ejection_ms);
            if h.max_ejection_ms != 0 && h.max_ejection_ms < h.base_ejection_ms {
                // Traefik's failureWindow set both; a longer berth.health.ejection wins.
                h.max_ejection_ms = h.base_ejection_ms;
            }
            h.max_ejected_percent = self.max_ejected.unwrap_or(h.max_ejected_percent);
        }
    }
}

fn boolean(value: &str) -> Result<bool, String> {
    values::parse_bool(value).map_err(|e| e.to_string())
}

fn number(value: &str, min: u32, max: u32) -> Result<u32, String> {
    values::parse_int(value, i128::from(min), i128::from(max))
        .map(|n| n as u32)
        .map_err(|e| e.to_string())
}

/// A positive duration (a number of seconds, or Go's form), in whole milliseconds, at most a day.
fn duration_ms(value: &str) -> Result<u64, String> {
    let ns = values::parse_duration(value).map_err(|e| e.to_string())?;
    let ms = ns / 1_000_000;
    if ns <= 0 || ms == 0 {
        return Err(format!("{value:?} is not a positive duration of at least 1ms"));
    }
    if ms > 86_400_000 {
        return Err(format!("{value:?} is longer than a day"));
    }
    Ok(ms as u64)
}

/// A comma-separated list of HTTP methods, upper-cased.
fn methods(value: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = value.split(',').map(|m| m.trim().to_ascii_uppercase()).collect();
    if list
        .iter()
        .any(|m| m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-'))
    {
        return Err(format!("{value:?} is not a comma-separated list of HTTP methods"));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{berth_prefix, instance};
    use crate::{compile_service, Settings as RuleSettings};

    fn compile(instances: &[Instance]) -> crate::ServiceRoutes {
        compile_service("app", instances, &RuleSettings::default(), &|_| None)
    }

    #[test]
    fn every_tag_applies_to_every_dialects_clusters() {
        let tags = [
            "traefik.enable=true",
            "traefik.http.routers.r.rule=Host(`a`)",
            "urlprefix-b.example/",
            "berth.lb.policy=least_request",
            "berth.timeout.connect=250ms",
            "berth.timeout.first_byte=30",
            "Berth.Timeout.Idle=1m30s",
            "berth.retry.attempts=4",
            "berth.retry.methods=get, head",
            "berth.retry.budget=50",
            "berth.health.failures=2",
            "berth.health.ejection=1s",
            "berth.health.max_ejection=1m",
            "berth.health.max_ejected=30",
        ];
        let result = compile(&[instance("a1", &tags)]);
        assert!(result.errors.is_empty(), "{:#?}", result.errors);
        assert_eq!(result.clusters.len(), 2, "Traefik's and Fabio's");
        for c in &result.clusters {
            assert_eq!(c.balancing, Balancing::LeastRequest as i32);
            assert_eq!(
                c.timeouts,
                Some(Timeouts {
                    connect_ms: 250,
                    first_byte_ms: 30_000,
                    idle_ms: 90_000,
                })
            );
            assert_eq!(
                c.retry,
                Some(RetryPolicy {
                    disabled: false,
                    attempts: 4,
                    methods: vec!["GET".into(), "HEAD".into()],
                    budget_percent: 50,
                })
            );
            assert_eq!(
                c.passive_health,
                Some(PassiveHealth {
                    disabled: false,
                    consecutive_failures: 2,
                    base_ejection_ms: 1000,
                    max_ejection_ms: 60_000,
                    max_ejected_percent: 30,
                })
            );
        }
    }

    #[test]
    fn switches_and_overrides() {
        let tags = [
            "traefik.enable=true",
            "traefik.http.routers.r.rule=Host(`a`)",
            "traefik.http.services.s.loadbalancer.strategy=p2c",
            "berth.lb.policy=round_robin",
            "berth.retry=false",
            "berth.health=false",
        ];
        let result = compile(&[instance("a1", &tags)]);
        assert!(result.errors.is_empty(), "{:#?}", result.errors);
        let c = &result.clusters[0];
        assert_eq!(c.balancing, Balancing::RoundRobin as i32);
        assert!(c.retry.as_ref().unwrap().disabled);
        assert!(c.passive_health.as_ref().unwrap().disabled);
        // No berth.* tag: nothing set.
        let result = compile(&[instance("a1", &tags[..2])]);
        assert_eq!(
            (result.clusters[0].retry.clone(), result.clusters[0].timeouts),
            (None, None)
        );
    }

    #[test]
    fn with_the_traefik_prefix_berth_other_keys_are_traefiks() {
        let settings = berth_prefix();
        let tags = [
            "berth.enable=true",
            "berth.http.routers.r.rule=Host(`a`)",
            "berth.lb.policy=round_robin",
        ];
        let result = compile_service("app", &[instance("a1", &tags)], &settings, &|_| None);
        assert_eq!(result.routes.len(), 1, "{:#?}", result.errors);
        assert_eq!(result.clusters[0].balancing, Balancing::RoundRobin as i32);
    }

    #[test]
    fn bad_values_reject_the_services_routes() {
        for (tag, text) in [
            ("berth.lb.policy=random", "is not round_robin"),
            ("berth.timeout.connect=soon", "not a duration"),
            ("berth.timeout.idle=0", "positive duration"),
            ("berth.retry.attempts=0", "out of range"),
            ("berth.retry.budget=101", "out of range"),
            ("berth.retry.methods=GET,,HEAD", "HTTP methods"),
            ("berth.retry=maybe", "not a boolean"),
            ("berth.health.failures=-1", "out of range"),
            ("berth.retries=3", "not a tag Berth knows"),
            ("berth.retry", "key=value"),
        ] {
            let tags = [
                "traefik.enable=true",
                "traefik.http.routers.r.rule=Host(`a`)",
                tag,
            ];
            let result = compile(&[instance("a1", &tags)]);
            assert!(result.routes.is_empty(), "{tag}: {:?}", result.routes);
            let e = result
                .errors
                .iter()
                .find(|e| e.tag.as_deref() == Some(tag))
                .unwrap_or_else(|| panic!("{tag}: {:#?}", result.errors));
            assert!(e.error.contains(text), "{tag}: {e}");
            assert!(e.error.contains("routes are rejected (app/r)"), "{e}");
        }
        let result = compile(&[
            instance("a1", &["traefik.enable=true", "berth.retry.attempts=2"]),
            instance("a2", &["traefik.enable=true", "berth.retry.attempts=3"]),
        ]);
        assert!(result.routes.is_empty());
        assert!(
            result.errors[0].error.contains("must agree"),
            "{:#?}",
            result.errors
        );
        let result = compile(&[instance(
            "a1",
            &[
                "traefik.enable=true",
                "berth.health.ejection=1m",
                "berth.health.max_ejection=1s",
            ],
        )]);
        assert!(result.routes.is_empty());
        assert!(result.errors[0].error.contains("shorter"), "{:#?}", result.errors);
    }
}
