//! What the agent knows about one container: the facts the conventions need, in plain types.
//!
//! [`crate::docker`] fills these from `docker inspect`; [`crate::conventions`] reads them. Keeping
//! the Docker API's types out of the mapping makes the mapping pure and easy to test. This module
//! holds no logic beyond small accessors.

use std::collections::BTreeMap;

/// One container, as inspected.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ContainerInfo {
    /// The full container ID.
    pub id: String,
    /// The name, without Docker's leading `/`.
    pub name: String,
    /// The image as the container was created from it (`registry:5000/team/app:1.2`).
    pub image: String,
    /// `KEY=VALUE` entries of the container's environment.
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub state: RunState,
    /// The Docker HEALTHCHECK state, when the container has one.
    pub health: Option<DockerHealth>,
    /// `HostConfig.NetworkMode`: `bridge`, `default`, `host`, `none`, `container:<id>` or a
    /// network's name.
    pub network_mode: String,
    /// `Config.ExposedPorts` keys: `80/tcp`, `53/udp`.
    pub exposed_ports: Vec<String>,
    /// `NetworkSettings.Ports`: each exposed port with its host bindings (none when unpublished).
    pub ports: BTreeMap<String, Vec<HostBinding>>,
    /// The networks the container is attached to, by name, with its IP address on each.
    pub networks: BTreeMap<String, String>,
    /// For `container:<id>` network mode: the IP address of the container whose network this one
    /// shares, when known.
    pub shared_ip: Option<String>,
}

/// Where Docker runs a container, as far as registration is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum RunState {
    #[default]
    Running,
    Paused,
    Restarting,
    /// Stopped, with the exit code of its main process.
    Exited {
        code: i64,
    },
    /// created, removing, dead, or a state this agent does not know.
    Other(String),
}

/// The state of a container's Docker HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DockerHealth {
    pub status: HealthStatus,
    pub failing_streak: i64,
    /// Output of the most recent probe, if any ran.
    pub last_output: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

/// One host binding of a published port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostBinding {
    /// `0.0.0.0`, `::`, a specific address, or empty.
    pub host_ip: String,
    pub host_port: String,
}

impl ContainerInfo {
    /// The first 12 characters of the ID, as `docker ps` shows it.
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunState::Running => f.write_str("running"),
            RunState::Paused => f.write_str("paused"),
            RunState::Restarting => f.write_str("restarting"),
            RunState::Exited { code } => write!(f, "exited with code {code}"),
            RunState::Other(state) => f.write_str(state),
        }
    }
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}
