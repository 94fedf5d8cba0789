//! The reconcile loop: when to reconcile, and what to do when Docker or Consul is away.
//!
//! A round reads every container from Docker, maps them to registrations
//! ([`crate::conventions`]), reads Consul, diffs ([`crate::reconcile`]) and applies the difference
//! ([`crate::registry`]). Rounds run at start, shortly after relevant Docker events (a burst of
//! events makes one round), every `-resync` seconds, and often enough to keep the TTL checks the
//! agent drives alive. A round that fails because Docker or Consul is unreachable is retried every
//! `-retry-interval` until `-retry-attempts` consecutive failures, then the agent exits. Since each
//! round is a full comparison, the first one that succeeds catches up with everything missed.
//! See agent/RECONCILE.md.
//!
//! This module holds no mapping or diff logic of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use tokio::time::{sleep, sleep_until, Instant, MissedTickBehavior};

use crate::cli::RetryPolicy;
use crate::conventions::{self, MappingSettings};
use crate::docker::{DockerError, Engine};
use crate::reconcile::{self, Action, Ownership, Retained};
use crate::registry::Registry;

/// How long a burst of Docker events may last before the round they trigger runs.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    #[error(
        "gave up waiting for {what} after {attempts} failed attempts (-retry-attempts={allowed}): {last}"
    )]
    GaveUp {
        what: String,
        attempts: u64,
        allowed: u64,
        last: String,
    },
}

/// The loop's own settings.
#[derive(Debug, Clone)]
pub(crate) struct LoopSettings {
    pub retry: RetryPolicy,
    pub resync: Option<Duration>,
    /// How often driven TTL checks are refreshed (when there are any).
    pub heartbeat: Duration,
    /// List stopped containers too (`-deregister=on-success`).
    pub include_stopped: bool,
}

/// The agent: its settings, its Consul, and what it already reported.
pub(crate) struct Runner {
    pub settings: LoopSettings,
    pub mapping: MappingSettings,
    pub ownership: Ownership,
    pub registry: Registry,
    /// Problems logged already, so a resync does not repeat them.
    reported: BTreeSet<String>,
    /// Whether the last round's registrations have TTL checks to keep alive.
    has_driven: bool,
}

enum Failure {
    Docker(DockerError),
    Consul(berth_consul::Error),
}

/// Consecutive failed attempts, and what they were waiting for.
#[derive(Default)]
struct Failures {
    streak: u64,
    waiting_for: String,
}

impl Failures {
    fn fail(
        &mut self,
        what: String,
        error: &dyn std::fmt::Display,
        policy: RetryPolicy,
    ) -> Result<(), RunError> {
        self.streak += 1;
        self.waiting_for = what;
        if let Some(allowed) = policy.attempts {
            if self.streak > allowed {
                return Err(RunError::GaveUp {
                    what: self.waiting_for.clone(),
                    attempts: self.streak,
                    allowed,
                    last: error.to_string(),
                });
            }
        }
        let left = match policy.attempts {
            None => "retrying forever".to_string(),
            Some(allowed) => format!("{} attempts left", allowed + 1 - self.streak),
        };
        tracing::warn!(
            "waiting for {}: {error} (failed attempt {}; next in {:?}, {left})",
            self.waiting_for,
            self.streak,
            policy.interval
        );
        Ok(())
    }

    fn recovered(&mut self) {
        if self.streak > 0 {
            tracing::info!(
                "{} is back after {} failed attempts; caught up",
                self.waiting_for,
                self.streak
            );
        }
        self.streak = 0;
    }
}

/// Sleeps `interval`; false when `shutdown` completed first.
async fn pause(shutdown: std::pin::Pin<&mut impl Future<Output = ()>>, interval: Duration) -> bool {
    tokio::select! {
        _ = shutdown => false,
        _ = sleep(interval) => true,
    }
}

impl Runner {
    pub fn new(
        settings: LoopSettings,
        mapping: MappingSettings,
        ownership: Ownership,
        registry: Registry,
    ) -> Runner {
        Runner {
            settings,
            mapping,
            ownership,
            registry,
            reported: BTreeSet::new(),
            has_driven: false,
        }
    }

    /// Runs until `shutdown` completes (then returns `Ok`) or retries are exhausted.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        tokio::pin!(shutdown);
        let policy = self.settings.retry;
        let mut failures = Failures::default();
        'connect: loop {
            let engine = match Engine::connect().await {
                Ok(engine) => engine,
                Err(e) => {
                    failures.fail(
                        format!("the Docker Engine at {}", crate::docker::docker_host()),
                        &e,
                        policy,
                    )?;
                    if !pause(shutdown.as_mut(), policy.interval).await {
                        return Ok(());
                    }
                    continue 'connect;
                }
            };
            tracing::info!(docker = engine.host(), "watching Docker events");
            // Subscribe before the first round so that nothing happening during it is missed.
            let mut changes = engine.subscribe();
            let mut next_round = Some(Instant::now());
            let mut refresh = true;
            let mut resync = self.settings.resync.map(|period| {
                let mut timer = tokio::time::interval_at(Instant::now() + period, period);
                timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
                timer
            });
            let heartbeat_period = self.settings.heartbeat;
            let mut heartbeat = tokio::time::interval_at(Instant::now() + heartbeat_period, heartbeat_period);
            heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                let due = next_round;
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    change = changes.next() => match change {
                        Some(Ok(change)) => {
                            tracing::debug!(kind = change.kind, action = %change.action, container = %change.container, "docker event");
                            // While retrying, the retry timer decides; otherwise one round per burst.
                            if failures.streak == 0 && next_round.is_none() {
                                next_round = Some(Instant::now() + DEBOUNCE);
                            }
                        }
                        Some(Err(e)) => {
                            failures.fail(format!("the Docker Engine at {}", engine.host()), &e, policy)?;
                            if !pause(shutdown.as_mut(), policy.interval).await {
                                return Ok(());
                            }
                            continue 'connect;
                        }
                        None => continue 'connect,
                    },
                    _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                        match self.round(&engine, refresh).await {
                            Ok(again) => {
                                failures.recovered();
                                refresh = false;
                                next_round = again.then(|| Instant::now() + DEBOUNCE);
                            }
                            Err(Failure::Docker(e)) => {
                                failures.fail(format!("the Docker Engine at {}", engine.host()), &e, policy)?;
                                if !pause(shutdown.as_mut(), policy.interval).await {
                                    return Ok(());
                                }
                                continue 'connect;
                            }
                            Err(Failure::Consul(e)) => {
                                failures.fail(format!("Consul at {}", self.registry.address()), &e, policy)?;
                                next_round = Some(Instant::now() + policy.interval);
                            }
                        }
                    }
                    _ = async { match resync.as_mut() { Some(timer) => { timer.tick().await; } None => std::future::pending().await } } => {
                        if failures.streak == 0 {
                            tracing::debug!("resync");
                            next_round = Some(Instant::now());
                        }
                    }
                    _ = heartbeat.tick(), if self.has_driven => {
                        refresh = true;
                        if failures.streak == 0 {
                            next_round = Some(Instant::now());
                        }
                    }
                }
            }
        }
    }

    /// One reconcile round. Returns whether another round is needed soon (a check was missing).
    async fn round(&mut self, engine: &Engine, refresh: bool) -> Result<bool, Failure> {
        let snapshot = engine
            .snapshot(self.settings.include_stopped)
            .await
            .map_err(Failure::Docker)?;
        let desired = conventions::desired(&snapshot.containers, &self.mapping);
        let mut retained: BTreeMap<String, Retained> = snapshot
            .unknown
            .iter()
            .map(|id| (id.clone(), Retained::Unknown))
            .collect();
        for container in &snapshot.containers {
            if let Some(code) = conventions::retained_exit(&container.state, self.mapping.deregister) {
                retained.insert(container.id.clone(), Retained::Failed { code });
            }
        }
        let actual = self.registry.actual().await.map_err(Failure::Consul)?;
        let actions = reconcile::plan(
            &desired.registrations,
            &actual,
            &self.ownership,
            &retained,
            refresh,
        );
        let transitions: Vec<String> = actions
            .iter()
            .filter_map(|action| match action {
                Action::UpdateCheck {
                    check_id,
                    status,
                    output,
                    ..
                } => {
                    let before = actual.checks.get(check_id).map_or("new", |c| c.status.as_str());
                    (before != *status).then(|| format!("check {check_id}: {before} -> {status} ({output})"))
                }
                _ => None,
            })
            .collect();
        let applied = self.registry.apply(actions).await.map_err(Failure::Consul)?;
        for transition in transitions {
            tracing::info!("{transition}");
        }
        self.has_driven = desired.registrations.iter().any(|r| !r.driven.is_empty());

        let mut messages: Vec<(tracing::Level, String)> = Vec::new();
        messages.extend(
            desired
                .errors
                .iter()
                .map(|e| (tracing::Level::ERROR, e.to_string())),
        );
        messages.extend(applied.refused.iter().map(|m| (tracing::Level::ERROR, m.clone())));
        messages.extend(desired.warnings.iter().map(|w| (tracing::Level::WARN, w.clone())));
        messages.extend(desired.notes.iter().map(|n| (tracing::Level::DEBUG, n.clone())));
        self.report(messages);

        let changed = applied.registered + applied.deregistered;
        if changed > 0 {
            tracing::info!(
                containers = snapshot.containers.len(),
                services = desired.registrations.len(),
                registered = applied.registered,
                deregistered = applied.deregistered,
                checks_updated = applied.checks_updated,
                "reconciled"
            );
        } else {
            tracing::debug!(
                containers = snapshot.containers.len(),
                services = desired.registrations.len(),
                checks_updated = applied.checks_updated,
                "reconciled: nothing to change"
            );
        }
        Ok(applied.check_missing)
    }

    /// Logs each problem once, for as long as it lasts; a problem that goes away and comes back is
    /// logged again.
    fn report(&mut self, messages: Vec<(tracing::Level, String)>) {
        let current: BTreeSet<String> = messages.iter().map(|(_, m)| m.clone()).collect();
        for (level, message) in messages {
            if self.reported.contains(&message) {
                continue;
            }
            match level {
                tracing::Level::ERROR => tracing::error!("{message}"),
                tracing::Level::WARN => tracing::warn!("{message}"),
                _ => tracing::debug!("{message}"),
            }
        }
        self.reported = current;
    }
}
