//! The Docker Engine side: connecting where `DOCKER_HOST` says, reading every container into a
//! [`ContainerInfo`], and watching the events that can change what should be registered.
//!
//! Docker's API types stay in this module; the rest of the agent sees plain [`ContainerInfo`]s.
//! It reads only (list, inspect, events) and never changes a container. Retrying is the caller's
//! business: every failure comes back as a [`DockerError`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, EventMessage, EventMessageTypeEnum, HealthStatusEnum,
};
use bollard::query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions};
use bollard::Docker;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::container::{ContainerInfo, DockerHealth, HealthStatus, HostBinding, RunState};

/// Requests other than the event stream give up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong with the Docker Engine. Each names the engine's address.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DockerError {
    /// `DOCKER_HOST` is not something this agent can connect to.
    #[error(
        "cannot use DOCKER_HOST={host:?}: {source} (use unix:///path/to/docker.sock or tcp://host:port)"
    )]
    Config {
        host: String,
        #[source]
        source: BollardError,
    },
    /// The engine did not answer, or answered with an error.
    #[error("the Docker Engine at {host} did not answer {what}: {source}")]
    Request {
        host: String,
        what: String,
        #[source]
        source: BollardError,
    },
    /// The event stream closed (the engine stopped or restarted).
    #[error("the Docker Engine at {host} closed its event stream")]
    StreamEnded { host: String },
}

/// A connection to one Docker Engine.
#[derive(Clone)]
pub(crate) struct Engine {
    docker: Docker,
    host: String,
}

/// Every container the agent should consider, as inspected now.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub containers: Vec<ContainerInfo>,
    /// Containers that exist but could not be inspected: their registrations are left alone.
    pub unknown: BTreeSet<String>,
}

/// How far back a new subscription replays events.
const REPLAY: Duration = Duration::from_secs(2);

/// Docker events being read in the background; the reading stops when this is dropped.
pub(crate) struct Subscription {
    receiver: mpsc::Receiver<Result<Change, DockerError>>,
    task: JoinHandle<()>,
}

impl Subscription {
    /// The next relevant event; an error (the last item) when the engine went away.
    pub async fn next(&mut self) -> Option<Result<Change, DockerError>> {
        self.receiver.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An event that may change the registrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// `container` or `network`.
    pub kind: &'static str,
    pub action: String,
    /// The container concerned (for network events, the container connected or disconnected).
    pub container: String,
}

/// The engine address in use: `DOCKER_HOST`, else Docker's default socket.
pub(crate) fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
}

/// Checks that `DOCKER_HOST` has a scheme this agent can connect with, without connecting (the
/// socket may not exist yet: that is retried like any absence of the engine).
pub(crate) fn check_host() -> Result<String, DockerError> {
    let host = docker_host();
    if ["unix://", "tcp://", "http://"]
        .iter()
        .any(|scheme| host.starts_with(scheme))
    {
        return Ok(host);
    }
    match Docker::connect_with_host(&host) {
        Err(source) => Err(DockerError::Config { host, source }),
        Ok(_) => Ok(host),
    }
}

impl Engine {
    /// Connects to the engine and agrees on an API version with it (older engines, such as
    /// Debian's 20.10, speak an older version than this client's default).
    pub async fn connect() -> Result<Engine, DockerError> {
        let host = docker_host();
        let docker = Docker::connect_with_host(&host)
            .map_err(|source| match source {
                BollardError::UnsupportedURISchemeError { .. } => DockerError::Config {
                    host: host.clone(),
                    source,
                },
                source => DockerError::Request {
                    host: host.clone(),
                    what: "connect".into(),
                    source,
                },
            })?
            .with_timeout(REQUEST_TIMEOUT);
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|source| DockerError::Request {
                host: host.clone(),
                what: "GET /version".into(),
                source,
            })?;
        Ok(Engine { docker, host })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Lists and inspects the containers: running ones, or all of them when `all` (needed to see
    /// stopped containers that keep registrations under `-deregister=on-success`).
    pub async fn snapshot(&self, all: bool) -> Result<Snapshot, DockerError> {
        let options = ListContainersOptions {
            all,
            ..ListContainersOptions::default()
        };
        let listed = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|source| self.request_error("GET /containers/json", source))?;
        let mut snapshot = Snapshot::default();
        for summary in listed {
            let Some(id) = summary.id else { continue };
            match self
                .docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
            {
                Ok(inspected) => match container_info(inspected) {
                    Some(info) => snapshot.containers.push(info),
                    None => {
                        tracing::warn!(container = %id, "docker inspect gave no ID or name; leaving its registrations as they are");
                        snapshot.unknown.insert(id);
                    }
                },
                // Removed between the list and the inspect.
                Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => {}
                Err(BollardError::DockerResponseServerError { status_code, message }) => {
                    tracing::warn!(container = %id, status_code, %message, "docker inspect failed; leaving its registrations as they are");
                    snapshot.unknown.insert(id);
                }
                Err(source) => return Err(self.request_error(&format!("GET /containers/{id}/json"), source)),
            }
        }
        resolve_shared_networks(&mut snapshot.containers);
        Ok(snapshot)
    }

    /// Subscribes to the engine's container and network events, reduced to those that matter,
    /// from a moment before now on: a task reads them into a channel from now, so nothing is
    /// missed while the caller is busy (replaying the last seconds costs at most one more round).
    pub fn subscribe(&self) -> Subscription {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|now| now.saturating_sub(REPLAY).as_secs().to_string())
            .ok();
        let stream = self.changes(since);
        let (sender, receiver) = mpsc::channel(256);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                let last = item.is_err();
                if sender.send(item).await.is_err() || last {
                    break;
                }
            }
        });
        Subscription { receiver, task }
    }

    /// The event stream; it ends with [`DockerError::StreamEnded`] or a request error when the
    /// engine goes.
    fn changes(
        &self,
        since: Option<String>,
    ) -> impl Stream<Item = Result<Change, DockerError>> + Send + 'static {
        let filters = HashMap::from([(
            "type".to_string(),
            vec!["container".to_string(), "network".to_string()],
        )]);
        let options = EventsOptions {
            since,
            filters: Some(filters),
            ..EventsOptions::default()
        };
        let host = self.host.clone();
        let ended = futures::stream::once({
            let host = host.clone();
            async move { Err(DockerError::StreamEnded { host }) }
        });
        self.docker
            .events(Some(options))
            .filter_map(move |event| {
                let host = host.clone();
                async move {
                    match event {
                        Ok(event) => change(&event).map(Ok),
                        Err(source) => Some(Err(DockerError::Request {
                            host,
                            what: "GET /events".into(),
                            source,
                        })),
                    }
                }
            })
            .chain(ended)
    }

    fn request_error(&self, what: &str, source: BollardError) -> DockerError {
        DockerError::Request {
            host: self.host.clone(),
            what: what.to_string(),
            source,
        }
    }
}

/// The events that can change registrations: a container starting, stopping, pausing, being
/// renamed or removed, its health changing, or it joining or leaving a network. Exec events (one
/// per health probe) and the like are dropped.
fn change(event: &EventMessage) -> Option<Change> {
    let action = event.action.as_deref()?;
    let actor = event.actor.as_ref()?;
    let kind = match event.typ? {
        EventMessageTypeEnum::CONTAINER => "container",
        EventMessageTypeEnum::NETWORK => "network",
        _ => return None,
    };
    if !is_relevant(kind, action) {
        return None;
    }
    let container = if kind == "network" {
        actor.attributes.as_ref()?.get("container")?.clone()
    } else {
        actor.id.clone()?
    };
    Some(Change {
        kind,
        action: action.to_string(),
        container,
    })
}

pub(crate) fn is_relevant(kind: &str, action: &str) -> bool {
    match kind {
        "container" => {
            let verb = action.split(':').next().unwrap_or(action).trim();
            matches!(
                verb,
                "start"
                    | "restart"
                    | "die"
                    | "stop"
                    | "kill"
                    | "destroy"
                    | "pause"
                    | "unpause"
                    | "rename"
                    | "health_status"
            )
        }
        "network" => matches!(action, "connect" | "disconnect"),
        _ => false,
    }
}

/// Converts `docker inspect` output; `None` when it lacks an ID or a name.
fn container_info(inspected: ContainerInspectResponse) -> Option<ContainerInfo> {
    let id = inspected.id.filter(|id| !id.is_empty())?;
    let name = inspected.name?.trim_start_matches('/').to_string();
    let config = inspected.config.unwrap_or_default();
    let state = inspected.state.unwrap_or_default();
    let run_state = match state.status {
        Some(ContainerStateStatusEnum::RUNNING) if state.paused == Some(true) => RunState::Paused,
        Some(ContainerStateStatusEnum::RUNNING) if state.restarting == Some(true) => RunState::Restarting,
        Some(ContainerStateStatusEnum::RUNNING) => RunState::Running,
        Some(ContainerStateStatusEnum::PAUSED) => RunState::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => RunState::Restarting,
        Some(ContainerStateStatusEnum::EXITED) => RunState::Exited {
            code: state.exit_code.unwrap_or(0),
        },
        Some(other) => RunState::Other(other.to_string()),
        None => RunState::Other("unknown".into()),
    };
    let health = state.health.and_then(|health| {
        let status = match health.status? {
            HealthStatusEnum::STARTING => HealthStatus::Starting,
            HealthStatusEnum::HEALTHY => HealthStatus::Healthy,
            HealthStatusEnum::UNHEALTHY => HealthStatus::Unhealthy,
            HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => return None,
        };
        let last_output = health
            .log
            .unwrap_or_default()
            .pop()
            .and_then(|r| r.output)
            .unwrap_or_default();
        Some(DockerHealth {
            status,
            failing_streak: health.failing_streak.unwrap_or(0),
            last_output,
        })
    });
    let network_mode = inspected
        .host_config
        .and_then(|h| h.network_mode)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let settings = inspected.network_settings.unwrap_or_default();
    let ports = settings
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(|(port, bindings)| {
            let bindings = bindings
                .unwrap_or_default()
                .into_iter()
                .map(|b| HostBinding {
                    host_ip: b.host_ip.unwrap_or_default(),
                    host_port: b.host_port.unwrap_or_default(),
                })
                .collect();
            (port, bindings)
        })
        .collect();
    let networks = settings
        .networks
        .unwrap_or_default()
        .into_iter()
        .map(|(name, endpoint)| (name, endpoint.ip_address.unwrap_or_default()))
        .collect::<BTreeMap<_, _>>();
    let mut exposed_ports = config.exposed_ports.unwrap_or_default();
    exposed_ports.sort();
    Some(ContainerInfo {
        id,
        name,
        image: config.image.unwrap_or_default(),
        env: config.env.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        state: run_state,
        health,
        network_mode,
        exposed_ports,
        ports,
        networks,
        shared_ip: None,
    })
}

/// Fills [`ContainerInfo::shared_ip`] for containers in `container:<ref>` network mode with an
/// IP of the container they share a network with, when it is among `containers`.
fn resolve_shared_networks(containers: &mut [ContainerInfo]) {
    let lookup: Vec<(String, String, Option<String>)> = containers
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                c.name.clone(),
                c.networks.values().find(|ip| !ip.is_empty()).cloned(),
            )
        })
        .collect();
    for container in containers.iter_mut() {
        let Some(reference) = container.network_mode.strip_prefix("container:") else {
            continue;
        };
        container.shared_ip = lookup
            .iter()
            .find(|(id, name, _)| id.starts_with(reference) || name == reference)
            .and_then(|(_, _, ip)| ip.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn event(typ: EventMessageTypeEnum, action: &str, id: &str, attributes: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            typ: Some(typ),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some(id.into()),
                attributes: Some(
                    attributes
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..EventMessage::default()
        }
    }

    #[test]
    fn keeps_the_events_that_matter() {
        for action in [
            "start",
            "die",
            "stop",
            "kill",
            "destroy",
            "pause",
            "unpause",
            "rename",
            "health_status: healthy",
        ] {
            let c = change(&event(EventMessageTypeEnum::CONTAINER, action, "abc", &[]));
            assert_eq!(c.map(|c| c.container), Some("abc".to_string()), "{action}");
        }
        for action in [
            "exec_start: /probe",
            "exec_die",
            "exec_create: x",
            "attach",
            "create",
            "top",
            "resize",
        ] {
            assert_eq!(
                change(&event(EventMessageTypeEnum::CONTAINER, action, "abc", &[])),
                None,
                "{action}"
            );
        }
    }

    #[test]
    fn network_events_name_the_container() {
        let c = change(&event(
            EventMessageTypeEnum::NETWORK,
            "connect",
            "net1",
            &[("container", "abc"), ("name", "backend")],
        ));
        assert_eq!(
            c,
            Some(Change {
                kind: "network",
                action: "connect".into(),
                container: "abc".into()
            })
        );
        assert_eq!(
            change(&event(EventMessageTypeEnum::NETWORK, "create", "net1", &[])),
            None
        );
        assert_eq!(
            change(&event(EventMessageTypeEnum::IMAGE, "pull", "img", &[])),
            None
        );
    }

    #[test]
    fn converts_an_inspected_container() {
        let json = serde_json::json!({
            "Id": "0123456789abcdef", "Name": "/web1",
            "State": {"Status": "running", "Running": true, "Paused": false, "Restarting": false, "ExitCode": 0,
                      "Health": {"Status": "unhealthy", "FailingStreak": 4,
                                 "Log": [{"ExitCode": 0, "Output": "ok"}, {"ExitCode": 1, "Output": "refused"}]}},
            "Config": {"Image": "web_go:latest", "Env": ["SERVICE_NAME=web"], "Labels": {"a": "b"},
                       "ExposedPorts": {"9090/tcp": {}, "53/udp": {}}},
            "HostConfig": {"NetworkMode": "bridge"},
            "NetworkSettings": {"Ports": {"9090/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}], "53/udp": null},
                                "Networks": {"bridge": {"IPAddress": "172.17.0.2"}}}
        });
        let inspected: ContainerInspectResponse = serde_json::from_value(json).expect("valid inspect JSON");
        let info = container_info(inspected).expect("has id and name");
        assert_eq!(info.name, "web1");
        assert_eq!(info.state, RunState::Running);
        let health = info.health.expect("has health");
        assert_eq!(
            (health.status, health.failing_streak, health.last_output.as_str()),
            (HealthStatus::Unhealthy, 4, "refused")
        );
        assert_eq!(info.exposed_ports, ["53/udp", "9090/tcp"]);
        assert_eq!(info.ports["9090/tcp"][0].host_port, "32768");
        assert!(info.ports["53/udp"].is_empty());
        assert_eq!(info.networks["bridge"], "172.17.0.2");
        assert_eq!(info.labels["a"], "b");
    }

    #[test]
    fn paused_and_exited_states() {
        let state = |status: &str, paused: bool, code: i64| {
            let json = serde_json::json!({"Id": "x", "Name": "/x",
                "State": {"Status": status, "Paused": paused, "ExitCode": code}});
            container_info(serde_json::from_value(json).expect("valid"))
                .expect("converts")
                .state
        };
        assert_eq!(state("paused", true, 0), RunState::Paused);
        assert_eq!(state("exited", false, 3), RunState::Exited { code: 3 });
        assert_eq!(state("created", false, 0), RunState::Other("created".into()));
    }

    #[test]
    fn shared_network_containers_get_the_other_containers_ip() {
        let mut containers = vec![
            ContainerInfo {
                id: "aaaa1111".into(),
                name: "pod".into(),
                networks: BTreeMap::from([("bridge".to_string(), "172.17.0.5".to_string())]),
                ..ContainerInfo::default()
            },
            ContainerInfo {
                id: "bbbb".into(),
                name: "app".into(),
                network_mode: "container:aaaa".into(),
                ..ContainerInfo::default()
            },
        ];
        resolve_shared_networks(&mut containers);
        assert_eq!(containers[1].shared_ip.as_deref(), Some("172.17.0.5"));
    }
}
